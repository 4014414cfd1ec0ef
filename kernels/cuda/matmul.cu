/* kernels/cuda/matmul.cu — linear layers (GPT-2's Conv1D W (C,OC) and the
 * Llama families' nn.Linear W (OC,C)) and the tied output layer through
 * cuBLAS, bf16 operands with fp32 accumulation.
 *
 * cuBLAS is column-major; our tensors are row-major. A row-major (R, K) matrix
 * is, read column-major, its transpose (K, R) with leading dimension K, so
 * every product below is written for the transposed problem:
 *   out (N,OC) = inp (N,C) @ W (C,OC)        ->  out^T = W^T inp^T
 *   out (N,OC) = inp (N,C) @ W^T, W (OC,C)   ->  out^T = W inp^T  (W read with op T)
 * with no data movement.
 *
 * Gradients: activation gradients (dinp) are bf16 like the activations, added
 * with beta = 1 (cuBLAS computes alpha*AB + beta*C in fp32 and rounds once).
 * Weight gradients (dweight, dbias, the tied dwte) are fp32 (model/backend.h):
 * their GEMMs take bf16 A and B and an fp32 C, so accumulating over micro-steps
 * never rounds the running sum to bf16.
 * Bias: forward writes the broadcast bias into out first and multiplies with
 * beta = 1; backward sums dout over rows in a deterministic two-pass reduction
 * (per-block partial column sums in fp32, then a fixed-order sum added into the
 * fp32 dbias).
 *
 * Empty shapes: N, C or OC == 0 launch nothing (a zero-size grid is a launch
 * error, and cuBLAS rejects a leading dimension of 0).
 */
#include <cublas_v2.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/cuda/workspace.cuh"

#define CUBLAS_CHECK(call)                                                                \
    do {                                                                                  \
        cublasStatus_t st_ = (call);                                                      \
        if (st_ != CUBLAS_STATUS_SUCCESS) {                                               \
            fprintf(stderr, "retort: cuBLAS error %d (%s) in %s at %s:%d\n", (int)st_,    \
                    cublasGetStatusString(st_), #call, __FILE__, __LINE__);               \
            exit(1);                                                                      \
        }                                                                                 \
    } while (0)

/* the handle lives in the backend's workspace registry, on retort_stream */
static cublasHandle_t cublas(void) { return workspace_cublas(); }

/* C (m,n) = alpha op(A) op(B) + beta C, all bf16, column-major, fp32 compute */
static void gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                 const floatX *A, int lda, const floatX *B, int ldb, float beta, floatX *C,
                 int ldc) {
    const float alpha = 1.0f;
    CUBLAS_CHECK(cublasGemmEx(cublas(), ta, tb, m, n, k, &alpha, A, CUDA_R_16BF, lda, B,
                              CUDA_R_16BF, ldb, &beta, C, CUDA_R_16BF, ldc, CUBLAS_COMPUTE_32F,
                              CUBLAS_GEMM_DEFAULT));
}

/* C (m,n) += op(A) op(B): bf16 A and B, fp32 C, fp32 compute (weight gradients) */
static void gemm_acc_f32(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                         const floatX *A, int lda, const floatX *B, int ldb, float *C, int ldc) {
    const float alpha = 1.0f, beta = 1.0f;
    CUBLAS_CHECK(cublasGemmEx(cublas(), ta, tb, m, n, k, &alpha, A, CUDA_R_16BF, lda, B,
                              CUDA_R_16BF, ldb, &beta, C, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F,
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

/* dbias[c] += sum of partial[:, c] in fixed order; dbias is fp32 */
__global__ static void column_finish_kernel(float *dbias, const float *partial, int n_parts,
                                            int OC) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= OC) return;
    float s = 0.0f;
    for (int p = 0; p < n_parts; p++) s += partial[(size_t)p * OC + c];
    dbias[c] += s;
}

static void bias_backward(float *dbias, const floatX *dout, int N, int OC) {
    if (N <= 0 || OC <= 0) return; /* nothing to add; a zero-size grid would not launch */
    int parts = ceil_div(N, BIAS_ROWS_PER_BLOCK);
    /* (parts, OC) fp32 partial column sums */
    float *partial =
        (float *)workspace_reserve(WS_BIAS_PARTIALS, (size_t)parts * OC * sizeof(float));
    dim3 grid(ceil_div(OC, 128), parts);
    column_partial_sums_kernel<<<grid, 128, 0, retort_stream>>>(partial, dout, N, OC);
    CUDA_LAUNCH_CHECK();
    column_finish_kernel<<<ceil_div(OC, 128), 128, 0, retort_stream>>>(dbias, partial, parts, OC);
    CUDA_LAUNCH_CHECK();
}

extern "C" void matmul_forward_cuda(float *out_, const float *inp_, const float *weight_,
                                    const float *bias_, int N, int C, int OC) {
    if (N <= 0 || OC <= 0) return; /* empty output */
    floatX *out = (floatX *)out_;
    const floatX *inp = (const floatX *)inp_, *weight = (const floatX *)weight_;
    float beta = 0.0f;
    if (C <= 0) { /* an empty sum: out = bias, or 0 */
        if (bias_) {
            broadcast_rows_kernel<<<ceil_div((long)N * OC, 256), 256, 0, retort_stream>>>(
                out, (const floatX *)bias_, N, OC);
            CUDA_LAUNCH_CHECK();
        } else {
            CUDA_CHECK(cudaMemsetAsync(out, 0, (size_t)N * OC * sizeof(floatX), retort_stream));
        }
        return;
    }
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
    /* N == 0 or OC == 0: every product is an empty sum, += 0; C == 0: dinp and
     * dweight are empty, dbias still gets its sum */
    if (N <= 0 || OC <= 0) return;
    const floatX *dout = (const floatX *)dout_, *inp = (const floatX *)inp_,
                 *weight = (const floatX *)weight_;
    if (dinp_ && C > 0) /* dinp^T (C,N) += W (C,OC) dout^T (OC,N); bf16 */
        gemm(CUBLAS_OP_T, CUBLAS_OP_N, C, N, OC, weight, OC, dout, OC, 1.0f, (floatX *)dinp_, C);
    if (dweight_ && C > 0) /* dW^T (OC,C) += dout^T (OC,N) inp (N,C); fp32 */
        gemm_acc_f32(CUBLAS_OP_N, CUBLAS_OP_T, OC, C, N, dout, OC, inp, C, dweight_, OC);
    if (dbias_) bias_backward(dbias_, dout, N, OC); /* fp32 */
}

/* ---- nn.Linear layout: W (OC,C), out = inp W^T + b ---- */

/* out = bias broadcast over the rows, or 0; returns the beta the GEMM adds with */
static float bias_prefill(floatX *out, const float *bias_, int N, int OC) {
    if (!bias_) return 0.0f;
    broadcast_rows_kernel<<<ceil_div((long)N * OC, 256), 256, 0, retort_stream>>>(
        out, (const floatX *)bias_, N, OC);
    CUDA_LAUNCH_CHECK();
    return 1.0f;
}

extern "C" void matmul_nt_forward_cuda(float *out_, const float *inp_, const float *weight_,
                                       const float *bias_, int N, int C, int OC) {
    if (N <= 0 || OC <= 0) return; /* empty output */
    floatX *out = (floatX *)out_;
    float beta = bias_prefill(out, bias_, N, OC);
    if (C <= 0) { /* an empty sum: out = bias, or 0 */
        if (!bias_)
            CUDA_CHECK(cudaMemsetAsync(out, 0, (size_t)N * OC * sizeof(floatX), retort_stream));
        return;
    }
    /* out^T (OC,N) = W (OC,C) inp^T (C,N); W read column-major is (C,OC) */
    gemm(CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, (const floatX *)weight_, C, (const floatX *)inp_, C,
         beta, out, OC);
}

extern "C" void matmul_nt_backward_cuda(float *dinp_, float *dweight_, float *dbias_,
                                        const float *dout_, const float *inp_,
                                        const float *weight_, int N, int C, int OC) {
    /* as matmul_backward_cuda: N or OC == 0 adds nothing; C == 0 leaves dbias */
    if (N <= 0 || OC <= 0) return;
    const floatX *dout = (const floatX *)dout_, *inp = (const floatX *)inp_,
                 *weight = (const floatX *)weight_;
    if (dinp_ && C > 0) /* dinp^T (C,N) += W^T (C,OC) dout^T (OC,N); bf16 */
        gemm(CUBLAS_OP_N, CUBLAS_OP_N, C, N, OC, weight, C, dout, OC, 1.0f, (floatX *)dinp_, C);
    if (dweight_ && C > 0) /* dW^T (C,OC) += inp^T (C,N) dout (N,OC); fp32 */
        gemm_acc_f32(CUBLAS_OP_N, CUBLAS_OP_T, C, OC, N, inp, C, dout, OC, dweight_, C);
    if (dbias_) bias_backward(dbias_, dout, N, OC); /* fp32 */
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
    if (dwte_) /* dwte^T (C,V) += inp^T (C,N) dlogits (N,V); fp32 */
        gemm_acc_f32(CUBLAS_OP_N, CUBLAS_OP_T, C, V, N, (const floatX *)inp_, C, dlogits, V,
                     dwte_, C);
}

/* The decoding GEMMs: cuBLAS, as the training ones (rows equal to rounding). */
extern "C" void matmul_rows_forward_cuda(float *out, const float *inp, const float *weight,
                                         const float *bias, int N, int C, int OC, int nt) {
    if (nt) matmul_nt_forward_cuda(out, inp, weight, bias, N, C, OC);
    else matmul_forward_cuda(out, inp, weight, bias, N, C, OC);
}
