/* kernels/cuda/cols.cu — copies between a dense (N, n) bf16 matrix and a
 * slice of n columns of a wider row-major one; the twin of kernels/cpu/cols.c
 * (LoRA on one projection of a fused qkv or gate|up GEMM).
 *
 * cols_copy is a strided 2-D copy, cudaMemcpy2DAsync on the backend's stream
 * (bit exact). cols_add sums in fp32 and rounds once; one thread per element,
 * or per 8 (16-byte vectors) when n and ldo are multiples of 8 and both
 * tensors 16-byte aligned. Grid-stride loops.
 */
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/cuda/reduce.cuh"

#define COLS_BLOCK 256

template <bool VEC>
__global__ static void cols_add_kernel(floatX *out, int ldo, const floatX *src, int N, int n) {
    const int width = VEC ? VEC_WIDTH : 1;
    int chunks = n / width;
    size_t n_items = (size_t)N * chunks;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t u = (size_t)blockIdx.x * blockDim.x + threadIdx.x; u < n_items; u += stride) {
        size_t i = u / chunks;
        int j = (int)(u % chunks) * width;
        floatX *o = out + i * ldo + j;     /* (width) += */
        const floatX *s = src + i * n + j; /* (width) */
        if constexpr (VEC) {
            float a[VEC_WIDTH], b[VEC_WIDTH];
            load8(o, a);
            load8(s, b);
#pragma unroll
            for (int e = 0; e < VEC_WIDTH; e++) a[e] += b[e];
            store8(o, a);
        } else {
            *o = float_to_bf16(bf16_to_float(*o) + bf16_to_float(*s));
        }
    }
}

extern "C" void cols_add_cuda(float *out_f, int ldo, const float *src_f, int N, int n) {
    if (N <= 0 || n <= 0) return;
    floatX *out = reinterpret_cast<floatX *>(out_f);             /* (N, ldo): columns 0..n-1 */
    const floatX *src = reinterpret_cast<const floatX *>(src_f); /* (N,n) */
    bool vec = n % VEC_WIDTH == 0 && ldo % VEC_WIDTH == 0 && aligned16(out) && aligned16(src);
    int grid = grid_for((size_t)N * (vec ? n / VEC_WIDTH : n), COLS_BLOCK);
    if (vec) cols_add_kernel<true><<<grid, COLS_BLOCK, 0, retort_stream>>>(out, ldo, src, N, n);
    else cols_add_kernel<false><<<grid, COLS_BLOCK, 0, retort_stream>>>(out, ldo, src, N, n);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cols_copy_cuda(float *dst, const float *src, int lds, int N, int n) {
    if (N <= 0 || n <= 0) return;
    /* dst (N,n) <- src (N, lds) columns 0..n-1, both bf16: pitches in bytes */
    size_t X = sizeof(floatX);
    CUDA_CHECK(cudaMemcpy2DAsync(dst, (size_t)n * X, src, (size_t)lds * X, (size_t)n * X,
                                 (size_t)N, cudaMemcpyDeviceToDevice, retort_stream));
}
