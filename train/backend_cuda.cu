/* train/backend_cuda.cu — the CUDA backend: device memory on one GPU, bf16
 * compute type, the hand-written kernels of kernels/cuda and cuBLAS matmuls.
 *
 * backend_cuda() picks the device (LOCAL_RANK-style variables pick among
 * several; the distributed issue sets them), creates the stream every kernel
 * runs on, and returns the table. With no usable device it returns NULL with
 * the reason in the error, so `--device cuda` fails with a message, and the
 * GPU tests skip visibly.
 */
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops_cuda.h"

extern "C" {
#include "train/backend.h"
#include "train/util.h"
}

cudaStream_t retort_stream;

static void *cuda_alloc(size_t bytes) {
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        err_set("cannot allocate %zu bytes on the GPU (%s; %zu of %zu bytes free); lower "
                "data.batch_size or data.seq_len",
                bytes, cudaGetErrorString(e), free_b, total_b);
        return NULL;
    }
    CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, retort_stream));
    return p;
}

static void cuda_release(void *p) { CUDA_CHECK(cudaFree(p)); }

static void cuda_to_device(void *dst, const void *src, size_t bytes) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, retort_stream));
    /* the host buffer may be reused as soon as we return */
    CUDA_CHECK(cudaStreamSynchronize(retort_stream));
}

static void cuda_to_host(void *dst, const void *src, size_t bytes) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, retort_stream));
    CUDA_CHECK(cudaStreamSynchronize(retort_stream));
}

static void cuda_zero(void *p, size_t bytes) {
    CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, retort_stream));
}

static void cuda_synchronize(void) { CUDA_CHECK(cudaStreamSynchronize(retort_stream)); }

static Backend CUDA_BACKEND;

static int pick_device(void) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0)
        return err_set("no usable CUDA device (%s); use --device cpu",
                       e != cudaSuccess ? cudaGetErrorString(e) : "0 devices found");
    const char *vars[] = {"LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID",
                          "MPI_LOCALRANKID"};
    int dev = 0;
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
        if (getenv(vars[i])) {
            dev = atoi(getenv(vars[i])) % count;
            break;
        }
    CUDA_CHECK(cudaSetDevice(dev));
    return 0;
}

extern "C" const Backend *backend_cuda(void) {
    static int state = 0; /* 0 untried, 1 ready, -1 failed */
    static char failure[1024];
    if (state == 1) return &CUDA_BACKEND;
    if (state == -1) {
        err_set("%s", failure);
        return NULL;
    }
    if (pick_device() != 0) {
        snprintf(failure, sizeof failure, "%s", err_msg());
        state = -1;
        return NULL;
    }
    CUDA_CHECK(cudaStreamCreateWithFlags(&retort_stream, cudaStreamNonBlocking));
    Backend *b = &CUDA_BACKEND;
    b->name = "cuda";
    b->act_size = sizeof(floatX);
    b->alloc = cuda_alloc;
    b->release = cuda_release;
    b->to_device = cuda_to_device;
    b->to_host = cuda_to_host;
    b->zero = cuda_zero;
    b->synchronize = cuda_synchronize;
    b->upload_f32 = upload_f32_cuda;
    b->download_f32 = download_f32_cuda;
    b->encoder_forward = encoder_forward_cuda;
    b->encoder_backward = encoder_backward_cuda;
    b->layernorm_forward = layernorm_forward_cuda;
    b->layernorm_backward = layernorm_backward_cuda;
    b->matmul_forward = matmul_forward_cuda;
    b->matmul_backward = matmul_backward_cuda;
    b->lm_head_forward = lm_head_forward_cuda;
    b->lm_head_backward = lm_head_backward_cuda;
    b->attention_forward = attention_forward_cuda;
    b->attention_backward = attention_backward_cuda;
    b->attention_decode = attention_decode_cuda;
    b->gelu_forward = gelu_forward_cuda;
    b->gelu_backward = gelu_backward_cuda;
    b->residual_forward = residual_forward_cuda;
    b->classifier_forward = classifier_forward_cuda;
    b->classifier_backward = classifier_backward_cuda;
    b->classifier_kd_forward = classifier_kd_forward_cuda;
    b->classifier_kd_backward = classifier_kd_backward_cuda;
    b->classifier_kd_topk_forward = classifier_kd_topk_forward_cuda;
    b->classifier_kd_topk_backward = classifier_kd_topk_backward_cuda;
    b->adamw_update = adamw_update_cuda;
    b->sum_squares = sum_squares_cuda;
    b->scale_inplace = scale_inplace_cuda;
    state = 1;
    return b;
}
