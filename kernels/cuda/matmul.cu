/* kernels/cuda/matmul.cu — linear layers and the tied output layer through
 * cuBLAS, bf16 operands with fp32 accumulation.
 *
 * cuBLAS is column-major; our tensors are row-major. A row-major (R, K) matrix
 * is, read column-major, its transpose (K, R) with leading dimension K, so
 * every product below is written for the transposed problem:
 *   out (N,OC) = inp (N,C) @ W (C,OC)        ->  out^T = W^T inp^T
 * with no data movement. Backward accumulates into the bf16 gradients with
 * beta = 1 (cuBLAS computes alpha*AB + beta*C in fp32 and rounds once).
 * Bias: forward writes the broadcast bias into out first and multiplies with
 * beta = 1; backward sums dout over rows in a deterministic two-pass reduction
 * (per-block partial column sums in fp32, then a fixed-order sum).
 */
#include <cublas_v2.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops_cuda.h"

#define CUBLAS_CHECK(call)                                                                \
    do {                                                                                  \
        cublasStatus_t st_ = (call);                                                      \
        if (st_ != CUBLAS_STATUS_SUCCESS) {                                               \
            fprintf(stderr, "retort: cuBLAS error %d (%s) in %s at %s:%d\n", (int)st_,    \
                    cublasGetStatusString(st_), #call, __FILE__, __LINE__);               \
            exit(1);                                                                      \
        }                                                                                 \
    } while (0)

static cublasHandle_t handle;

static cublasHandle_t cublas(void) {
    if (!handle) {
        CUBLAS_CHECK(cublasCreate(&handle));
        CUBLAS_CHECK(cublasSetStream(handle, retort_stream));
        CUBLAS_CHECK(cublasSetMathMode(handle, CUBLAS_DEFAULT_MATH));
    }
    return handle;
}

/* C (m,n) = alpha op(A) op(B) + beta C, all bf16, column-major, fp32 compute */
static void gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                 const floatX *A, int lda, const floatX *B, int ldb, float beta, floatX *C,
                 int ldc) {
    const float alpha = 1.0f;
    CUBLAS_CHECK(cublasGemmEx(cublas(), ta, tb, m, n, k, &alpha, A, CUDA_R_16BF, lda, B,
                              CUDA_R_16BF, ldb, &beta, C, CUDA_R_16BF, ldc, CUBLAS_COMPUTE_32F,
                              CUBLAS_GEMM_DEFAULT));
}

/* out[r, c] = bias[c] for every row r */
__global__ static void broadcast_rows_kernel(floatX *out, const floatX *bias, int N, int OC) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (size_t)N * OC) out[i] = bias[i % OC];
}

#define BIAS_ROWS_PER_BLOCK 256
/* partial[blockIdx.y, c] = sum of dout[r, c] over this block's rows (fp32) */
__global__ static void column_partial_sums_kernel(float *partial, const floatX *dout, int N,
                                                  int OC) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= OC) return;
    int r0 = blockIdx.y * BIAS_ROWS_PER_BLOCK;
    int r1 = min(N, r0 + BIAS_ROWS_PER_BLOCK);
    float s = 0.0f;
    for (int r = r0; r < r1; r++) s += __bfloat162float(dout[(size_t)r * OC + c]);
    partial[(size_t)blockIdx.y * OC + c] = s;
}

/* dbias[c] += sum of partial[:, c] in fixed order */
__global__ static void column_finish_kernel(floatX *dbias, const float *partial, int n_parts,
                                            int OC) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= OC) return;
    float s = 0.0f;
    for (int p = 0; p < n_parts; p++) s += partial[(size_t)p * OC + c];
    dbias[c] = __float2bfloat16_rn(__bfloat162float(dbias[c]) + s);
}

static float *bias_scratch;
static size_t bias_scratch_n;

static void bias_backward(floatX *dbias, const floatX *dout, int N, int OC) {
    int parts = ceil_div(N, BIAS_ROWS_PER_BLOCK);
    size_t need = (size_t)parts * OC;
    if (need > bias_scratch_n) {
        if (bias_scratch) CUDA_CHECK(cudaFree(bias_scratch));
        CUDA_CHECK(cudaMalloc(&bias_scratch, need * sizeof(float)));
        bias_scratch_n = need;
    }
    dim3 grid(ceil_div(OC, 128), parts);
    column_partial_sums_kernel<<<grid, 128, 0, retort_stream>>>(bias_scratch, dout, N, OC);
    CUDA_LAUNCH_CHECK();
    column_finish_kernel<<<ceil_div(OC, 128), 128, 0, retort_stream>>>(dbias, bias_scratch, parts,
                                                                        OC);
    CUDA_LAUNCH_CHECK();
}

extern "C" void matmul_forward_cuda(float *out_, const float *inp_, const float *weight_,
                                    const float *bias_, int N, int C, int OC) {
    floatX *out = (floatX *)out_;
    const floatX *inp = (const floatX *)inp_, *weight = (const floatX *)weight_;
    float beta = 0.0f;
    if (bias_) {
        size_t n = (size_t)N * OC;
        broadcast_rows_kernel<<<ceil_div((long)n, 256), 256, 0, retort_stream>>>(
            out, (const floatX *)bias_, N, OC);
        CUDA_LAUNCH_CHECK();
        beta = 1.0f;
    }
    /* out^T (OC,N) = W^T (OC,C) inp^T (C,N) */
    gemm(CUBLAS_OP_N, CUBLAS_OP_N, OC, N, C, weight, OC, inp, C, beta, out, OC);
}

extern "C" void matmul_backward_cuda(float *dinp_, float *dweight_, float *dbias_,
                                     const float *dout_, const float *inp_, const float *weight_,
                                     int N, int C, int OC) {
    const floatX *dout = (const floatX *)dout_, *inp = (const floatX *)inp_,
                 *weight = (const floatX *)weight_;
    if (dinp_) /* dinp^T (C,N) += W (C,OC) dout^T (OC,N) */
        gemm(CUBLAS_OP_T, CUBLAS_OP_N, C, N, OC, weight, OC, dout, OC, 1.0f, (floatX *)dinp_, C);
    if (dweight_) /* dW^T (OC,C) += dout^T (OC,N) inp (N,C) */
        gemm(CUBLAS_OP_N, CUBLAS_OP_T, OC, C, N, dout, OC, inp, C, 1.0f, (floatX *)dweight_, OC);
    if (dbias_) bias_backward((floatX *)dbias_, dout, N, OC);
}

extern "C" void lm_head_forward_cuda(float *logits_, const float *inp_, const float *wte_, int N,
                                     int C, int V) {
    /* logits^T (V,N) = wte (V,C) inp^T (C,N); wte read column-major is (C,V) */
    gemm(CUBLAS_OP_T, CUBLAS_OP_N, V, N, C, (const floatX *)wte_, C, (const floatX *)inp_, C,
         0.0f, (floatX *)logits_, V);
}

extern "C" void lm_head_backward_cuda(float *dinp_, float *dwte_, const float *dlogits_,
                                      const float *inp_, const float *wte_, int N, int C, int V) {
    const floatX *dlogits = (const floatX *)dlogits_;
    if (dinp_) /* dinp^T (C,N) += wte^T (C,V) dlogits^T (V,N) */
        gemm(CUBLAS_OP_N, CUBLAS_OP_N, C, N, V, (const floatX *)wte_, C, dlogits, V, 1.0f,
             (floatX *)dinp_, C);
    if (dwte_) /* dwte^T (C,V) += inp^T (C,N) dlogits (N,V) */
        gemm(CUBLAS_OP_N, CUBLAS_OP_T, C, V, N, (const floatX *)inp_, C, dlogits, V, 1.0f,
             (floatX *)dwte_, C);
}
