/* kernels/cuda/rmsnorm.cu — RMSNorm and the per-head q/k RMSNorm (Qwen3) on
 * bf16 tensors with fp32 statistics; the twin of kernels/cpu/rmsnorm.c.
 *
 *     rstd = 1 / sqrt(mean(x^2) + eps),   y = weight * (x * rstd)
 *
 * As on the CPU, both ops are one set of kernels over "rows" of HS values:
 * rmsnorm is one head per token with HS = C (NH = 1, KVH = 0); qk_norm sees a
 * token's qkv as NH + 2 KVH rows, the first NH normed with wq, the next KVH
 * with wk, the last KVH (v) copied forward and passed through backward.
 *
 * Forward and dinp: one warp per row, two passes over the row (the sum of
 * squares, then the output; the second read hits L1/L2). When HS % 8 == 0 and
 * the tensors are 16-byte aligned each lane moves 8 bf16 values per access;
 * otherwise one. rstd is saved fp32.
 * Backward, with xhat = x * rstd and dnorm = dout * weight:
 *     dx += rstd * (dnorm - xhat * mean(dnorm * xhat))
 * dweight += sum over the rows of the weight's group of dout * xhat, done
 * deterministically as layernorm.cu does: a fixed number of blocks (a function
 * of the row count only) each sum a contiguous range of rows in row order into
 * an fp32 scratch (n_blocks, HS); one thread per column then adds the block
 * partials in block order into the fp32 weight gradient. No atomics: every
 * run gives the same bits. No limit on HS or C beyond int sizes.
 */
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/cuda/reduce.cuh"
#include "kernels/cuda/workspace.cuh"

#define RMS_ROWS_BLOCK 256       /* threads of the warp-per-row kernels: 8 rows per block */
#define RMS_PARAM_MAX_BLOCKS 256 /* partial-sum blocks of the weight-gradient reduction */
#define RMS_PARAM_MIN_ROWS 32    /* rows per partial-sum block, at least */
#define RMS_PARAM_THREADS 256    /* most threads of a partial-sum block */
#define RMS_REDUCE_THREADS 256

/* N tokens of NH + 2 KVH heads of HS values; heads < NH + KVH are normed. */
struct RmsShape {
    int N, NH, KVH, HS;
};

static __host__ __device__ __forceinline__ int rms_heads(RmsShape s) { return s.NH + 2 * s.KVH; }
static __host__ __device__ __forceinline__ int rms_normed(RmsShape s) { return s.NH + s.KVH; }

/* ---- forward ---- */

template <bool VEC>
__global__ static void __launch_bounds__(RMS_ROWS_BLOCK)
    rms_forward_kernel(floatX *out, float *rstd, const floatX *inp, const floatX *wq,
                       const floatX *wk, RmsShape s, float eps) {
    const int width = VEC ? VEC_WIDTH : 1;
    int lane = threadIdx.x & 31;
    long r = (long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    int heads = rms_heads(s), normed = rms_normed(s), HS = s.HS;
    if (r >= (long)s.N * heads) return; /* whole warps leave together */
    long i = r / heads;
    int g = (int)(r % heads);
    const floatX *x = inp + (size_t)r * HS; /* (HS) */
    floatX *y = out + (size_t)r * HS;       /* (HS) */
    if (g >= normed) { /* a v head: copied */
        for (int c = lane * width; c < HS; c += 32 * width) {
            if constexpr (VEC)
                *reinterpret_cast<uint4 *>(y + c) = *reinterpret_cast<const uint4 *>(x + c);
            else
                y[c] = x[c];
        }
        return;
    }
    const floatX *w = g < s.NH ? wq : wk; /* (HS) */
    float sq = 0.0f;
    for (int c = lane * width; c < HS; c += 32 * width) {
        float xv[width];
        if constexpr (VEC) load8(x + c, xv);
        else xv[0] = bf16_to_float(x[c]);
#pragma unroll
        for (int e = 0; e < width; e++) sq += xv[e] * xv[e];
    }
    float rs = 1.0f / sqrtf(warp_sum(sq) / HS + eps);
    for (int c = lane * width; c < HS; c += 32 * width) {
        float xv[width], wv[width], yv[width];
        if constexpr (VEC) {
            load8(x + c, xv);
            load8(w + c, wv);
        } else {
            xv[0] = bf16_to_float(x[c]);
            wv[0] = bf16_to_float(w[c]);
        }
#pragma unroll
        for (int e = 0; e < width; e++) yv[e] = wv[e] * (xv[e] * rs);
        if constexpr (VEC) store8(y + c, yv);
        else y[c] = float_to_bf16(yv[0]);
    }
    if (lane == 0) rstd[i * normed + g] = rs;
}

/* Whole 16-byte vectors: HS % 8 == 0 (every row then starts 16-byte aligned)
 * and every given pointer aligned. */
static bool rms_vec_ok(int HS, const void *a, const void *b, const void *c, const void *d) {
    return HS % VEC_WIDTH == 0 && aligned16(a) && aligned16(b) && (!c || aligned16(c)) &&
           (!d || aligned16(d));
}

static void rms_forward(floatX *out, float *rstd, const floatX *inp, const floatX *wq,
                        const floatX *wk, RmsShape s, float eps) {
    long rows = (long)s.N * rms_heads(s);
    if (rows <= 0 || s.HS <= 0) return;
    int grid = ceil_div(rows, RMS_ROWS_BLOCK / 32);
    if (rms_vec_ok(s.HS, out, inp, wq, wk))
        rms_forward_kernel<true><<<grid, RMS_ROWS_BLOCK, 0, retort_stream>>>(out, rstd, inp, wq,
                                                                             wk, s, eps);
    else
        rms_forward_kernel<false><<<grid, RMS_ROWS_BLOCK, 0, retort_stream>>>(out, rstd, inp, wq,
                                                                              wk, s, eps);
    CUDA_LAUNCH_CHECK();
}

/* ---- backward: dinp ---- */

template <bool VEC>
__global__ static void __launch_bounds__(RMS_ROWS_BLOCK)
    rms_backward_dinp_kernel(floatX *dinp, const floatX *dout, const floatX *inp,
                             const floatX *wq, const floatX *wk, const float *rstd, RmsShape s) {
    const int width = VEC ? VEC_WIDTH : 1;
    int lane = threadIdx.x & 31;
    long r = (long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    int heads = rms_heads(s), normed = rms_normed(s), HS = s.HS;
    if (r >= (long)s.N * heads) return;
    long i = r / heads;
    int g = (int)(r % heads);
    const floatX *x = inp + (size_t)r * HS;   /* (HS) */
    const floatX *dy = dout + (size_t)r * HS; /* (HS) */
    floatX *dx = dinp + (size_t)r * HS;       /* (HS) += */
    if (g >= normed) { /* a v head: dx += dy */
        for (int c = lane * width; c < HS; c += 32 * width) {
            if constexpr (VEC) {
                float a[VEC_WIDTH], b[VEC_WIDTH];
                load8(dx + c, a);
                load8(dy + c, b);
#pragma unroll
                for (int e = 0; e < VEC_WIDTH; e++) a[e] += b[e];
                store8(dx + c, a);
            } else {
                dx[c] = float_to_bf16(bf16_to_float(dx[c]) + bf16_to_float(dy[c]));
            }
        }
        return;
    }
    const floatX *w = g < s.NH ? wq : wk; /* (HS) */
    float rs = rstd[i * normed + g];
    float sum_dnorm_xhat = 0.0f;
    for (int c = lane * width; c < HS; c += 32 * width) {
        float xv[width], dyv[width], wv[width];
        if constexpr (VEC) {
            load8(x + c, xv);
            load8(dy + c, dyv);
            load8(w + c, wv);
        } else {
            xv[0] = bf16_to_float(x[c]);
            dyv[0] = bf16_to_float(dy[c]);
            wv[0] = bf16_to_float(w[c]);
        }
#pragma unroll
        for (int e = 0; e < width; e++) sum_dnorm_xhat += (dyv[e] * wv[e]) * (xv[e] * rs);
    }
    float mean_dnorm_xhat = warp_sum(sum_dnorm_xhat) / HS;
    for (int c = lane * width; c < HS; c += 32 * width) {
        float xv[width], dyv[width], wv[width], dxv[width];
        if constexpr (VEC) {
            load8(x + c, xv);
            load8(dy + c, dyv);
            load8(w + c, wv);
            load8(dx + c, dxv);
        } else {
            xv[0] = bf16_to_float(x[c]);
            dyv[0] = bf16_to_float(dy[c]);
            wv[0] = bf16_to_float(w[c]);
            dxv[0] = bf16_to_float(dx[c]);
        }
#pragma unroll
        for (int e = 0; e < width; e++)
            dxv[e] += rs * (dyv[e] * wv[e] - (xv[e] * rs) * mean_dnorm_xhat);
        if constexpr (VEC) store8(dx + c, dxv);
        else dx[c] = float_to_bf16(dxv[0]);
    }
}

/* ---- backward: dweight ---- */

/* The rows of one weight's group: row q is head g0 + q % G of token q / G.
 * Block b sums rows [b*rows_per_block, min(rows, (b+1)*rows_per_block)) in
 * order: partial[b, c] = sum of dout * xhat. VEC: 8 adjacent columns a thread. */
template <bool VEC>
__global__ static void __launch_bounds__(RMS_PARAM_THREADS)
    rms_weight_partial_kernel(float *partial, const floatX *dout, const floatX *inp,
                              const float *rstd, RmsShape s, int g0, int G, long rows,
                              long rows_per_block) {
    const int width = VEC ? VEC_WIDTH : 1;
    int heads = rms_heads(s), normed = rms_normed(s), HS = s.HS;
    long q0 = (long)blockIdx.x * rows_per_block;
    long q1 = q0 + rows_per_block < rows ? q0 + rows_per_block : rows;
    float *pw = partial + (size_t)blockIdx.x * HS; /* (HS) */
    for (int c = threadIdx.x * width; c < HS; c += blockDim.x * width) {
        float acc[width];
#pragma unroll
        for (int e = 0; e < width; e++) acc[e] = 0.0f;
        for (long q = q0; q < q1; q++) {
            long i = q / G;
            int g = g0 + (int)(q % G);
            size_t at = ((size_t)i * heads + g) * HS + c;
            float rs = rstd[i * normed + g];
            float xv[width], dyv[width];
            if constexpr (VEC) {
                load8(inp + at, xv);
                load8(dout + at, dyv);
            } else {
                xv[0] = bf16_to_float(inp[at]);
                dyv[0] = bf16_to_float(dout[at]);
            }
#pragma unroll
            for (int e = 0; e < width; e++) acc[e] += dyv[e] * (xv[e] * rs);
        }
#pragma unroll
        for (int e = 0; e < width; e++) pw[c + e] = acc[e];
    }
}

/* dw[c] += sum_b partial[b, c] in b order; dw is fp32 */
__global__ static void rms_weight_reduce_kernel(float *dw, const float *partial, int n_blocks,
                                                int HS) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= HS) return;
    float sum = 0.0f;
    for (int k = 0; k < n_blocks; k++) sum += partial[(size_t)k * HS + c];
    dw[c] += sum;
}

/* dw (HS, fp32) += the column sums over heads g0 .. g0+G-1 of every token */
static void rms_backward_dweight(float *dw, const floatX *dout, const floatX *inp,
                                 const float *rstd, RmsShape s, int g0, int G) {
    long rows = (long)s.N * G;
    if (rows <= 0 || s.HS <= 0) return;
    /* fixed split of the rows: depends on the row count only, so the sum order never changes */
    long n_blocks = (rows + RMS_PARAM_MIN_ROWS - 1) / RMS_PARAM_MIN_ROWS;
    if (n_blocks > RMS_PARAM_MAX_BLOCKS) n_blocks = RMS_PARAM_MAX_BLOCKS;
    long rows_per_block = (rows + n_blocks - 1) / n_blocks;
    n_blocks = (rows + rows_per_block - 1) / rows_per_block; /* no empty trailing block */
    /* (n_blocks, HS) fp32 partial column sums; a later call of the same stream
     * reuses it only after these kernels have read it */
    float *partial = (float *)workspace_reserve(WS_RMSNORM_PARTIALS,
                                                (size_t)n_blocks * s.HS * sizeof(float));
    bool vec = rms_vec_ok(s.HS, dout, inp, NULL, NULL);
    int threads = block_for_columns(vec ? s.HS / VEC_WIDTH : s.HS, RMS_PARAM_THREADS);
    if (vec)
        rms_weight_partial_kernel<true><<<(int)n_blocks, threads, 0, retort_stream>>>(
            partial, dout, inp, rstd, s, g0, G, rows, rows_per_block);
    else
        rms_weight_partial_kernel<false><<<(int)n_blocks, threads, 0, retort_stream>>>(
            partial, dout, inp, rstd, s, g0, G, rows, rows_per_block);
    CUDA_LAUNCH_CHECK();
    rms_weight_reduce_kernel<<<ceil_div(s.HS, RMS_REDUCE_THREADS), RMS_REDUCE_THREADS, 0,
                               retort_stream>>>(dw, partial, (int)n_blocks, s.HS);
    CUDA_LAUNCH_CHECK();
}

static void rms_backward_dinp(floatX *dinp, const floatX *dout, const floatX *inp,
                              const floatX *wq, const floatX *wk, const float *rstd, RmsShape s) {
    long rows = (long)s.N * rms_heads(s);
    if (rows <= 0 || s.HS <= 0) return;
    int grid = ceil_div(rows, RMS_ROWS_BLOCK / 32);
    if (rms_vec_ok(s.HS, dinp, dout, inp, NULL) && (!wq || aligned16(wq)) &&
        (!wk || aligned16(wk)))
        rms_backward_dinp_kernel<true><<<grid, RMS_ROWS_BLOCK, 0, retort_stream>>>(
            dinp, dout, inp, wq, wk, rstd, s);
    else
        rms_backward_dinp_kernel<false><<<grid, RMS_ROWS_BLOCK, 0, retort_stream>>>(
            dinp, dout, inp, wq, wk, rstd, s);
    CUDA_LAUNCH_CHECK();
}

/* ---- the ops ---- */

extern "C" void rmsnorm_forward_cuda(float *out, float *rstd, const float *inp,
                                     const float *weight, int N, int C, float eps) {
    /* out (N,C), inp (N,C), weight (C) bf16; rstd (N) fp32 */
    rms_forward(reinterpret_cast<floatX *>(out), rstd, reinterpret_cast<const floatX *>(inp),
                reinterpret_cast<const floatX *>(weight), NULL, RmsShape{N, 1, 0, C}, eps);
}

extern "C" void rmsnorm_backward_cuda(float *dinp, float *dweight, const float *dout,
                                      const float *inp, const float *weight, const float *rstd,
                                      int N, int C) {
    /* dinp (N,C) += bf16; dweight (C) += fp32, may be NULL; dout, inp (N,C), weight (C) bf16 */
    RmsShape s = {N, 1, 0, C};
    const floatX *dout_x = reinterpret_cast<const floatX *>(dout);
    const floatX *inp_x = reinterpret_cast<const floatX *>(inp);
    if (dinp)
        rms_backward_dinp(reinterpret_cast<floatX *>(dinp), dout_x, inp_x,
                          reinterpret_cast<const floatX *>(weight), NULL, rstd, s);
    if (dweight) rms_backward_dweight(dweight, dout_x, inp_x, rstd, s, 0, 1);
}

extern "C" void qk_norm_forward_cuda(float *out, float *rstd, const float *inp, const float *wq,
                                     const float *wk, int N, int NH, int KVH, int HS, float eps) {
    /* out, inp (N,W) and wq, wk (HS) bf16; rstd (N,NH+KVH) fp32 */
    rms_forward(reinterpret_cast<floatX *>(out), rstd, reinterpret_cast<const floatX *>(inp),
                reinterpret_cast<const floatX *>(wq), reinterpret_cast<const floatX *>(wk),
                RmsShape{N, NH, KVH, HS}, eps);
}

extern "C" void qk_norm_backward_cuda(float *dinp, float *dwq, float *dwk, const float *dout,
                                      const float *inp, const float *wq, const float *wk,
                                      const float *rstd, int N, int NH, int KVH, int HS) {
    /* dinp (N,W) += bf16; dwq, dwk (HS) += fp32, may be NULL */
    RmsShape s = {N, NH, KVH, HS};
    const floatX *dout_x = reinterpret_cast<const floatX *>(dout);
    const floatX *inp_x = reinterpret_cast<const floatX *>(inp);
    if (dinp)
        rms_backward_dinp(reinterpret_cast<floatX *>(dinp), dout_x, inp_x,
                          reinterpret_cast<const floatX *>(wq),
                          reinterpret_cast<const floatX *>(wk), rstd, s);
    if (dwq) rms_backward_dweight(dwq, dout_x, inp_x, rstd, s, 0, NH);
    if (dwk) rms_backward_dweight(dwk, dout_x, inp_x, rstd, s, NH, KVH);
}
