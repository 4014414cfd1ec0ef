/* kernels/cuda/classifier.cu — the fused classifier on bf16 logits: per-row
 * log-sum-exp and log p(target) forward, dlogits written in place backward; the
 * twin of kernels/cpu/classifier.c.
 *
 * One block per row of V logits. Forward reads the row once: each thread keeps
 * an online (max, sum of exp(x - max)) pair over its elements in fp32, and the
 * pairs are merged in a fixed tree (warp butterflies, then warp 0 over the warp
 * results), so lse is deterministic. Backward rebuilds softmax_j = exp(x_j - lse)
 * from the saved lse and overwrites the row with
 *     dlogits_j = g * (1[j == target] - softmax_j)
 * each element read and written by the same thread (the target included, so its
 * 1 - p is formed before the value is overwritten, as on the CPU).
 *
 * Rows are Vp apart (the padded vocabulary, kernels/ops.h): only the V real
 * columns are read, and backward writes zeros into the padded ones.
 *
 * Vector access for any stride: row i starts at logits + i*Vp, which for an
 * unpadded odd V (GPT-2's 50257) is not 16-byte aligned. Each row is split into a scalar head up to the
 * first 16-byte boundary, a body of 8-wide uint4 vectors, and a scalar tail, so
 * every row uses vector loads whatever V and the row's alignment are.
 *
 * Target ids: < 0 means no target (logp 0, dlogits row 0, as in ops.h). An id
 * >= V is a data bug the CPU twin asserts on; here it cannot read out of bounds:
 * logp is NaN and the dlogits row is NaN, so the loss and gradient norm show it.
 */
#include <float.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/cuda/reduce.cuh"

#define CLASSIFIER_BLOCK 512

/* Split of one row of V bf16 values at p into [0, head) scalar,
 * [head, head + 8*n_vec) vectors (16-byte aligned), [tail, V) scalar. */
struct RowSplit {
    int head, n_vec, tail;
};

static __device__ __forceinline__ RowSplit split_row(const floatX *p, int V) {
    int misaligned = (int)(((uintptr_t)p >> 1) & 7); /* bf16 elements past a 16-byte boundary */
    int head = (VEC_WIDTH - misaligned) & 7;
    if (head > V) head = V;
    RowSplit s;
    s.head = head;
    s.n_vec = (V - head) / VEC_WIDTH;
    s.tail = head + s.n_vec * VEC_WIDTH;
    return s;
}

/* lse[i] = log sum_j exp(logits[i,j]); logp[i] = logits[i,t] - lse[i] (0 if t < 0) */
__global__ static void __launch_bounds__(CLASSIFIER_BLOCK)
    classifier_forward_kernel(float *logp, float *lse, const floatX *logits, const int *targets,
                              int V, int Vp) {
    __shared__ float warp_m[32], warp_s[32];
    int i = blockIdx.x;
    const floatX *x = logits + (size_t)i * Vp; /* (V) real columns of a (Vp) row */
    RowSplit sp = split_row(x, V);
    float m = -FLT_MAX, s = 0.0f;
    for (int j = threadIdx.x; j < sp.head; j += blockDim.x)
        online_add(m, s, bf16_to_float(x[j]));
    for (int k = threadIdx.x; k < sp.n_vec; k += blockDim.x) {
        float v[VEC_WIDTH];
        load8(x + sp.head + k * VEC_WIDTH, v);
#pragma unroll
        for (int e = 0; e < VEC_WIDTH; e++) online_add(m, s, v[e]);
    }
    for (int j = sp.tail + threadIdx.x; j < V; j += blockDim.x)
        online_add(m, s, bf16_to_float(x[j]));

    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    warp_online_merge(m, s);
    if (lane == 0) {
        warp_m[warp] = m;
        warp_s[warp] = s;
    }
    __syncthreads();
    if (warp != 0) return;
    m = lane < n_warps ? warp_m[lane] : -FLT_MAX;
    s = lane < n_warps ? warp_s[lane] : 0.0f;
    warp_online_merge(m, s);
    if (lane == 0) {
        float row_lse = m + logf(s);
        lse[i] = row_lse;
        int t = targets[i];
        logp[i] = t < 0 ? 0.0f : t >= V ? NAN : bf16_to_float(x[t]) - row_lse;
    }
}

/* Row i in place: logits -> g * (1[j == t] - exp(logits - lse)); zeros where
 * t < 0 or g == 0; NaN where t >= V. The padded columns V..Vp-1 become 0. */
__global__ static void __launch_bounds__(CLASSIFIER_BLOCK)
    classifier_backward_kernel(floatX *logits, const float *lse, const int *targets,
                               const float *g, int V, int Vp) {
    int i = blockIdx.x;
    floatX *x = logits + (size_t)i * Vp; /* (Vp) */
    for (int j = V + threadIdx.x; j < Vp; j += blockDim.x) x[j] = float_to_bf16(0.0f);
    RowSplit sp = split_row(x, V);
    int t = targets[i];
    float gi = g[i];
    float l = lse[i];
    if (t < 0 || gi == 0.0f || t >= V) {
        /* no softmax needed: the row becomes a constant */
        float fill = t >= V ? NAN : 0.0f;
        float c[VEC_WIDTH];
#pragma unroll
        for (int e = 0; e < VEC_WIDTH; e++) c[e] = fill;
        for (int j = threadIdx.x; j < sp.head; j += blockDim.x) x[j] = float_to_bf16(fill);
        for (int k = threadIdx.x; k < sp.n_vec; k += blockDim.x)
            store8(x + sp.head + k * VEC_WIDTH, c);
        for (int j = sp.tail + threadIdx.x; j < V; j += blockDim.x) x[j] = float_to_bf16(fill);
        return;
    }
    /* same expressions as the CPU twin: -g p off target, g (1 - p) on it */
    for (int j = threadIdx.x; j < sp.head; j += blockDim.x) {
        float p = expf(bf16_to_float(x[j]) - l);
        x[j] = float_to_bf16(j == t ? gi * (1.0f - p) : -gi * p);
    }
    for (int k = threadIdx.x; k < sp.n_vec; k += blockDim.x) {
        int j0 = sp.head + k * VEC_WIDTH;
        float v[VEC_WIDTH];
        load8(x + j0, v);
#pragma unroll
        for (int e = 0; e < VEC_WIDTH; e++) {
            float p = expf(v[e] - l);
            v[e] = j0 + e == t ? gi * (1.0f - p) : -gi * p;
        }
        store8(x + j0, v);
    }
    for (int j = sp.tail + threadIdx.x; j < V; j += blockDim.x) {
        float p = expf(bf16_to_float(x[j]) - l);
        x[j] = float_to_bf16(j == t ? gi * (1.0f - p) : -gi * p);
    }
}

extern "C" void classifier_forward_cuda(float *logp, float *lse, const float *logits_f,
                                        const int *targets, int N, int V, int Vp) {
    if (N <= 0 || V <= 0) return;
    const floatX *logits = reinterpret_cast<const floatX *>(logits_f); /* (N,Vp) */
    /* logp (N), lse (N) fp32; targets (N) int32 */
    classifier_forward_kernel<<<N, CLASSIFIER_BLOCK, 0, retort_stream>>>(logp, lse, logits,
                                                                         targets, V, Vp);
    CUDA_LAUNCH_CHECK();
}

extern "C" void classifier_backward_cuda(float *logits_f, const float *lse, const int *targets,
                                         const float *g, int N, int V, int Vp) {
    if (N <= 0 || V <= 0) return;
    floatX *logits = reinterpret_cast<floatX *>(logits_f); /* (N,Vp) in: logits, out: dlogits */
    /* lse (N), g (N) fp32; targets (N) int32 */
    classifier_backward_kernel<<<N, CLASSIFIER_BLOCK, 0, retort_stream>>>(logits, lse, targets,
                                                                          g, V, Vp);
    CUDA_LAUNCH_CHECK();
}
