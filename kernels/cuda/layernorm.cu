/* kernels/cuda/layernorm.cu — LayerNorm over the last dimension (C) on bf16
 * tensors with fp32 statistics; the twin of kernels/cpu/layernorm.c.
 *
 * Forward: one warp per row. When C % 8 == 0, C <= 2048 and the pointers are
 * 16-byte aligned, the row is loaded once into registers (a template on the
 * number of 8-wide vectors per lane) and the two-pass mean / biased variance run
 * on the registers; otherwise a scalar path re-reads the row from global memory
 * (L1/L2 hits). rstd = 1/sqrt(var + eps), as torch. mean and rstd are saved fp32.
 *
 * Backward, with xhat = (x - mean) * rstd and dnorm = dout * weight:
 *     dx += rstd * (dnorm - mean_c(dnorm) - xhat * mean_c(dnorm * xhat))
 * one warp per row, two passes over the row (sums, then the update).
 * dweight += sum_rows dout*xhat and dbias += sum_rows dout are column sums over N
 * rows, done deterministically in two kernels: each of a fixed number of blocks
 * (a function of N only) sums a contiguous range of rows in row order into an
 * fp32 scratch (n_blocks, 2, C); a second kernel, one thread per column, adds the
 * block partials in block order and adds the result into the fp32 weight
 * gradients (model/backend.h: weight gradients are fp32 on every backend; dinp
 * is bf16).
 * No atomics anywhere, so every run gives the same bits.
 */
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/cuda/reduce.cuh"
#include "kernels/cuda/workspace.cuh"

#define LN_ROWS_BLOCK 256          /* threads of the warp-per-row kernels: 8 rows per block */
#define LN_MAX_VECS_PER_LANE 8     /* register path up to C = 32 * 8 * 8 = 2048 */
#define LN_PARAM_MAX_BLOCKS 256    /* partial-sum blocks of the dweight/dbias reduction */
#define LN_PARAM_MIN_ROWS 32       /* rows per partial-sum block, at least */
#define LN_PARAM_THREADS 256       /* most threads of a partial-sum block */
#define LN_REDUCE_THREADS 256

/* ---- forward ---- */

/* Register path: lane holds vectors lane, lane+32, ..., lane+32*(NV-1) of the row
 * (8 channels each); C8 = C/8 <= 32*NV. */
template <int NV>
__global__ static void __launch_bounds__(LN_ROWS_BLOCK)
    layernorm_forward_vec_kernel(floatX *out, float *mean, float *rstd, const floatX *inp,
                                 const floatX *weight, const floatX *bias, int N, int C,
                                 float eps) {
    int lane = threadIdx.x & 31;
    int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= N) return; /* whole warps leave together; no block barriers below */
    int C8 = C / VEC_WIDTH;
    const floatX *x = inp + (size_t)row * C; /* (C) */
    floatX *y = out + (size_t)row * C;       /* (C) */
    float v[NV][VEC_WIDTH];
    float sum = 0.0f;
#pragma unroll
    for (int k = 0; k < NV; k++) {
        int vi = lane + 32 * k;
        if (vi < C8) {
            load8(x + vi * VEC_WIDTH, v[k]);
#pragma unroll
            for (int e = 0; e < VEC_WIDTH; e++) sum += v[k][e];
        }
    }
    float mu = warp_sum(sum) / C;
    float sq = 0.0f;
#pragma unroll
    for (int k = 0; k < NV; k++) {
        if (lane + 32 * k < C8) {
#pragma unroll
            for (int e = 0; e < VEC_WIDTH; e++) {
                float d = v[k][e] - mu;
                sq += d * d;
            }
        }
    }
    float s = 1.0f / sqrtf(warp_sum(sq) / C + eps);
#pragma unroll
    for (int k = 0; k < NV; k++) {
        int vi = lane + 32 * k;
        if (vi < C8) {
            float w[VEC_WIDTH], b[VEC_WIDTH], o[VEC_WIDTH];
            load8(weight + vi * VEC_WIDTH, w);
            load8(bias + vi * VEC_WIDTH, b);
#pragma unroll
            for (int e = 0; e < VEC_WIDTH; e++) o[e] = (v[k][e] - mu) * s * w[e] + b[e];
            store8(y + vi * VEC_WIDTH, o);
        }
    }
    if (lane == 0) {
        mean[row] = mu;
        rstd[row] = s;
    }
}

/* Scalar path for any C and alignment: three reads of the row. */
__global__ static void __launch_bounds__(LN_ROWS_BLOCK)
    layernorm_forward_scalar_kernel(floatX *out, float *mean, float *rstd, const floatX *inp,
                                    const floatX *weight, const floatX *bias, int N, int C,
                                    float eps) {
    int lane = threadIdx.x & 31;
    int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= N) return;
    const floatX *x = inp + (size_t)row * C; /* (C) */
    floatX *y = out + (size_t)row * C;       /* (C) */
    float sum = 0.0f;
    for (int c = lane; c < C; c += 32) sum += bf16_to_float(x[c]);
    float mu = warp_sum(sum) / C;
    float sq = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float d = bf16_to_float(x[c]) - mu;
        sq += d * d;
    }
    float s = 1.0f / sqrtf(warp_sum(sq) / C + eps);
    for (int c = lane; c < C; c += 32)
        y[c] = float_to_bf16((bf16_to_float(x[c]) - mu) * s * bf16_to_float(weight[c]) +
                             bf16_to_float(bias[c]));
    if (lane == 0) {
        mean[row] = mu;
        rstd[row] = s;
    }
}

extern "C" void layernorm_forward_cuda(float *out_f, float *mean, float *rstd, const float *inp_f,
                                       const float *weight_f, const float *bias_f, int N, int C,
                                       float eps) {
    if (N <= 0 || C <= 0) return;
    floatX *out = reinterpret_cast<floatX *>(out_f);                /* (N,C) */
    const floatX *inp = reinterpret_cast<const floatX *>(inp_f);    /* (N,C) */
    const floatX *weight = reinterpret_cast<const floatX *>(weight_f); /* (C) */
    const floatX *bias = reinterpret_cast<const floatX *>(bias_f);  /* (C) */
    /* mean (N), rstd (N) fp32 */
    int grid = ceil_div(N, LN_ROWS_BLOCK / 32);
    int vecs_per_lane = ceil_div(C / VEC_WIDTH, 32);
    bool vec = C % VEC_WIDTH == 0 && vecs_per_lane <= LN_MAX_VECS_PER_LANE && aligned16(out) &&
               aligned16(inp) && aligned16(weight) && aligned16(bias);
    if (!vec) {
        layernorm_forward_scalar_kernel<<<grid, LN_ROWS_BLOCK, 0, retort_stream>>>(
            out, mean, rstd, inp, weight, bias, N, C, eps);
        CUDA_LAUNCH_CHECK();
        return;
    }
#define LN_FORWARD_VEC(NV)                                                                   \
    case NV:                                                                                 \
        layernorm_forward_vec_kernel<NV><<<grid, LN_ROWS_BLOCK, 0, retort_stream>>>(         \
            out, mean, rstd, inp, weight, bias, N, C, eps);                                  \
        break
    switch (vecs_per_lane) {
        LN_FORWARD_VEC(1);
        LN_FORWARD_VEC(2);
        LN_FORWARD_VEC(3);
        LN_FORWARD_VEC(4);
        LN_FORWARD_VEC(5);
        LN_FORWARD_VEC(6);
        LN_FORWARD_VEC(7);
        LN_FORWARD_VEC(8);
    default:
        fprintf(stderr, "retort: layernorm_forward_cuda: no kernel for C = %d\n", C);
        exit(1);
    }
#undef LN_FORWARD_VEC
    CUDA_LAUNCH_CHECK();
}

/* ---- backward: dinp ---- */

/* One warp per row; VEC needs C % 8 == 0 and 16-byte aligned pointers. */
template <bool VEC>
__global__ static void __launch_bounds__(LN_ROWS_BLOCK)
    layernorm_backward_dinp_kernel(floatX *dinp, const floatX *dout, const floatX *inp,
                                   const floatX *weight, const float *mean, const float *rstd,
                                   int N, int C) {
    int lane = threadIdx.x & 31;
    int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= N) return;
    const floatX *x = inp + (size_t)row * C;   /* (C) */
    const floatX *dy = dout + (size_t)row * C; /* (C) */
    floatX *dx = dinp + (size_t)row * C;       /* (C) += */
    float m = mean[row], s = rstd[row];
    float sum_dnorm = 0.0f, sum_dnorm_xhat = 0.0f;
    if constexpr (VEC) {
        for (int c = lane * VEC_WIDTH; c < C; c += 32 * VEC_WIDTH) {
            float xv[VEC_WIDTH], dyv[VEC_WIDTH], wv[VEC_WIDTH];
            load8(x + c, xv);
            load8(dy + c, dyv);
            load8(weight + c, wv);
#pragma unroll
            for (int e = 0; e < VEC_WIDTH; e++) {
                float xhat = (xv[e] - m) * s;
                float dnorm = dyv[e] * wv[e];
                sum_dnorm += dnorm;
                sum_dnorm_xhat += dnorm * xhat;
            }
        }
    } else {
        for (int c = lane; c < C; c += 32) {
            float xhat = (bf16_to_float(x[c]) - m) * s;
            float dnorm = bf16_to_float(dy[c]) * bf16_to_float(weight[c]);
            sum_dnorm += dnorm;
            sum_dnorm_xhat += dnorm * xhat;
        }
    }
    float mean_dnorm = warp_sum(sum_dnorm) / C;
    float mean_dnorm_xhat = warp_sum(sum_dnorm_xhat) / C;
    if constexpr (VEC) {
        for (int c = lane * VEC_WIDTH; c < C; c += 32 * VEC_WIDTH) {
            float xv[VEC_WIDTH], dyv[VEC_WIDTH], wv[VEC_WIDTH], dxv[VEC_WIDTH];
            load8(x + c, xv);
            load8(dy + c, dyv);
            load8(weight + c, wv);
            load8(dx + c, dxv);
#pragma unroll
            for (int e = 0; e < VEC_WIDTH; e++) {
                float xhat = (xv[e] - m) * s;
                float dnorm = dyv[e] * wv[e];
                dxv[e] += s * (dnorm - mean_dnorm - xhat * mean_dnorm_xhat);
            }
            store8(dx + c, dxv);
        }
    } else {
        for (int c = lane; c < C; c += 32) {
            float xhat = (bf16_to_float(x[c]) - m) * s;
            float dnorm = bf16_to_float(dy[c]) * bf16_to_float(weight[c]);
            float d = bf16_to_float(dx[c]) + s * (dnorm - mean_dnorm - xhat * mean_dnorm_xhat);
            dx[c] = float_to_bf16(d);
        }
    }
}

/* ---- backward: dweight, dbias ---- */

/* Block b sums rows [b*rows_per_block, min(N, (b+1)*rows_per_block)) in row
 * order: partial[b, 0, c] = sum dout*xhat, partial[b, 1, c] = sum dout.
 * VEC: each thread owns 8 adjacent columns; scalar: one column. */
template <bool VEC>
__global__ static void __launch_bounds__(LN_PARAM_THREADS)
    layernorm_param_partial_kernel(float *partial, const floatX *dout, const floatX *inp,
                                   const float *mean, const float *rstd, int N, int C,
                                   int rows_per_block) {
    int r0 = blockIdx.x * rows_per_block;
    int r1 = r0 + rows_per_block < N ? r0 + rows_per_block : N;
    float *pw = partial + (size_t)blockIdx.x * 2 * C; /* (C) */
    float *pb = pw + C;                               /* (C) */
    const int width = VEC ? VEC_WIDTH : 1;
    for (int c = threadIdx.x * width; c < C; c += blockDim.x * width) {
        float acc_w[width], acc_b[width];
#pragma unroll
        for (int e = 0; e < width; e++) acc_w[e] = acc_b[e] = 0.0f;
        for (int r = r0; r < r1; r++) {
            float m = mean[r], s = rstd[r];
            float xv[width], dyv[width];
            if constexpr (VEC) {
                load8(inp + (size_t)r * C + c, xv);
                load8(dout + (size_t)r * C + c, dyv);
            } else {
                xv[0] = bf16_to_float(inp[(size_t)r * C + c]);
                dyv[0] = bf16_to_float(dout[(size_t)r * C + c]);
            }
#pragma unroll
            for (int e = 0; e < width; e++) {
                acc_w[e] += dyv[e] * ((xv[e] - m) * s);
                acc_b[e] += dyv[e];
            }
        }
#pragma unroll
        for (int e = 0; e < width; e++) {
            pw[c + e] = acc_w[e];
            pb[c + e] = acc_b[e];
        }
    }
}

/* dweight[c] += sum_b partial[b, 0, c]; dbias[c] += sum_b partial[b, 1, c], in b order;
 * dweight and dbias are fp32 */
__global__ static void layernorm_param_reduce_kernel(float *dweight, float *dbias,
                                                     const float *partial, int n_blocks, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float w = 0.0f, b = 0.0f;
    for (int k = 0; k < n_blocks; k++) {
        w += partial[(size_t)k * 2 * C + c];
        b += partial[(size_t)k * 2 * C + C + c];
    }
    if (dweight) dweight[c] += w;
    if (dbias) dbias[c] += b;
}

extern "C" void layernorm_backward_cuda(float *dinp_f, float *dweight_f, float *dbias_f,
                                        const float *dout_f, const float *inp_f,
                                        const float *weight_f, const float *mean,
                                        const float *rstd, int N, int C) {
    if (N <= 0 || C <= 0) return;
    floatX *dinp = reinterpret_cast<floatX *>(dinp_f);               /* (N,C) += ; may be NULL */
    float *dweight = dweight_f;                                      /* (C) += fp32; may be NULL */
    float *dbias = dbias_f;                                          /* (C) += fp32; may be NULL */
    const floatX *dout = reinterpret_cast<const floatX *>(dout_f);   /* (N,C) */
    const floatX *inp = reinterpret_cast<const floatX *>(inp_f);     /* (N,C) */
    const floatX *weight = reinterpret_cast<const floatX *>(weight_f); /* (C) */
    /* mean (N), rstd (N) fp32 */
    bool c_vec = C % VEC_WIDTH == 0 && aligned16(dout) && aligned16(inp);

    if (dinp) {
        int grid = ceil_div(N, LN_ROWS_BLOCK / 32);
        if (c_vec && aligned16(dinp) && aligned16(weight))
            layernorm_backward_dinp_kernel<true><<<grid, LN_ROWS_BLOCK, 0, retort_stream>>>(
                dinp, dout, inp, weight, mean, rstd, N, C);
        else
            layernorm_backward_dinp_kernel<false><<<grid, LN_ROWS_BLOCK, 0, retort_stream>>>(
                dinp, dout, inp, weight, mean, rstd, N, C);
        CUDA_LAUNCH_CHECK();
    }

    if (!dweight && !dbias) return;
    /* fixed split of the rows: depends on N only, so the sum order never changes */
    int n_blocks = ceil_div(N, LN_PARAM_MIN_ROWS);
    if (n_blocks > LN_PARAM_MAX_BLOCKS) n_blocks = LN_PARAM_MAX_BLOCKS;
    int rows_per_block = ceil_div(N, n_blocks);
    n_blocks = ceil_div(N, rows_per_block); /* no empty trailing block */
    /* (n_blocks, 2, C) fp32 partial column sums */
    float *partial = (float *)workspace_reserve(WS_LAYERNORM_PARTIALS,
                                                (size_t)n_blocks * 2 * C * sizeof(float));
    int threads = block_for_columns(c_vec ? C / VEC_WIDTH : C, LN_PARAM_THREADS);
    if (c_vec)
        layernorm_param_partial_kernel<true><<<n_blocks, threads, 0, retort_stream>>>(
            partial, dout, inp, mean, rstd, N, C, rows_per_block);
    else
        layernorm_param_partial_kernel<false><<<n_blocks, threads, 0, retort_stream>>>(
            partial, dout, inp, mean, rstd, N, C, rows_per_block);
    CUDA_LAUNCH_CHECK();
    layernorm_param_reduce_kernel<<<ceil_div(C, LN_REDUCE_THREADS), LN_REDUCE_THREADS, 0,
                                    retort_stream>>>(dweight, dbias, partial, n_blocks, C);
    CUDA_LAUNCH_CHECK();
}
