/* kernels/cuda/adamw.cu — AdamW on bf16 parameters with fp32 master weights and
 * fp32 gradients, the reductions gradient clipping needs, a scale for bf16
 * activations, and host fp32 <-> device bf16 conversion; the twin of
 * kernels/cpu/adamw.c.
 *
 * adamw_update_cuda runs the CPU file's update operation by operation on the fp32
 * master copy (torch.optim.AdamW's single-tensor order, scalars derived in
 * double on the host and rounded to float once), then writes the bf16 parameter
 * as the round-to-nearest of the new master value. The bf16 parameter is never
 * read: rounding errors do not accumulate across steps. nvcc would contract
 * a*b + c into one FMA (one rounding instead of two), so every operation is
 * written with the round-to-nearest intrinsics (__fmul_rn, __fadd_rn, ...),
 * which it never contracts; sqrt and division are IEEE (no fast-math). The CPU
 * twin is compiled with -std=c11, whose default is -ffp-contract=off. So, from
 * the same fp32 gradient and state, master, m and v are bit-identical to the
 * CPU update (tests/test_cuda.c checks it).
 *
 * sum_squares_cuda (fp32 gradients) is a deterministic two-pass reduction: a
 * grid whose size depends only on n (and the pointer's alignment) writes one
 * double partial per block, each block summing its grid-stride share in double
 * and combining the threads in a fixed tree; then one block sums the partials
 * in a fixed tree. The same input gives the same bits on every run. Each square
 * is formed in double, where the square of an fp32 value is exact, as the CPU
 * twin forms (double)x*x; only the order of the sum differs from the CPU.
 * scale_inplace_cuda scales fp32 gradients (clipping); scale_act_cuda scales a
 * bf16 activation buffer (the LoRA scale s).
 *
 * upload/download go through the backend's fp32 staging workspace in fixed-size
 * chunks (memcpy, then a conversion kernel, all on retort_stream), so converting
 * a whole model never needs a staging buffer the size of the model.
 */
#include <math.h>

#include "kernels/adamw_scalars.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/cuda/reduce.cuh"
#include "kernels/cuda/workspace.cuh"

#define ELEMENTWISE_BLOCK 256
#define SUM_SQUARES_BLOCK 256
#define SUM_SQUARES_MAX_GRID 1024 /* the final pass is one block of this many threads */
#define STAGING_CHUNK ((size_t)1 << 22) /* floats per upload/download chunk: 16 MiB */

/* One element per thread iteration: grad, m, v, master are fp32 and read once
 * each, so scalar access is already coalesced; n is any size. Each line is the
 * CPU twin's line (kernels/cpu/adamw.c) with its operations in C's evaluation
 * order, one rounding each. */
__global__ static void adamw_kernel(floatX *param, float *master, const float *grad, float *m,
                                    float *v, size_t n, float decay, float w1, int lerp_small,
                                    float b2, float w2, float neg_step_size, float bc2_sqrt,
                                    float eps) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        float g = grad[i];
        /* p = master * decay */
        float p = __fmul_rn(master[i], decay);
        /* mi = lerp_small ? mi + w1 * (g - mi) : g - (g - mi) * (1 - w1) */
        float mi = m[i];
        mi = lerp_small ? __fadd_rn(mi, __fmul_rn(w1, __fsub_rn(g, mi)))
                        : __fsub_rn(g, __fmul_rn(__fsub_rn(g, mi), __fsub_rn(1.0f, w1)));
        /* vi = v * b2 + w2 * g * g */
        float vi = __fadd_rn(__fmul_rn(v[i], b2), __fmul_rn(__fmul_rn(w2, g), g));
        /* denom = sqrt(vi) / bc2_sqrt + eps */
        float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), bc2_sqrt), eps);
        /* p = p + neg_step_size * mi / denom */
        p = __fadd_rn(p, __fdiv_rn(__fmul_rn(neg_step_size, mi), denom));
        master[i] = p;
        param[i] = __float2bfloat16_rn(p);
        m[i] = mi;
        v[i] = vi;
    }
}

extern "C" void adamw_update_cuda(float *param_f, float *master, const float *grad_f, float *m,
                                  float *v, size_t n, double lr, double beta1, double beta2,
                                  double eps, double weight_decay, int step) {
    if (n == 0) return;
    if (!master) {
        fprintf(stderr, "retort: adamw_update_cuda needs fp32 master weights (got NULL): the "
                        "CUDA backend keeps bf16 parameters, so the optimizer must allocate a "
                        "master copy (train/optim.c does when act_size != sizeof(float))\n");
        exit(1);
    }
    if (step < 1) {
        fprintf(stderr, "retort: adamw_update_cuda: step is %d, must be 1-based\n", step);
        exit(1);
    }
    floatX *param = reinterpret_cast<floatX *>(param_f); /* (n) bf16 */
    const float *grad = grad_f;                          /* (n) fp32 */
    /* the same scalars as the CPU twin, from the shared derivation */
    AdamWScalars k = adamw_scalars(lr, beta1, beta2, eps, weight_decay, step);
    int grid = grid_for(n, ELEMENTWISE_BLOCK);
    adamw_kernel<<<grid, ELEMENTWISE_BLOCK, 0, retort_stream>>>(param, master, grad, m, v, n,
                                                                  k.decay, k.w1, k.lerp_small, k.b2,
                                                                  k.w2, k.neg_step_size, k.bc2_sqrt,
                                                                  k.eps);
    CUDA_LAUNCH_CHECK();
}

/* partial[blockIdx.x] = sum of x[i]^2 over this block's grid-stride share (fp32 x).
 * VEC: float4 vectors over [0, 4*(n/4)), then the scalar tail. */
template <bool VEC>
__global__ static void __launch_bounds__(SUM_SQUARES_BLOCK)
    sum_squares_partial_kernel(double *partial, const float *x, size_t n) {
    size_t tid = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    size_t n_vec = VEC ? n / 4 : 0;
    double acc = 0.0;
    for (size_t k = tid; k < n_vec; k += stride) {
        float4 v = reinterpret_cast<const float4 *>(x)[k];
        double a = v.x, b = v.y, c = v.z, d = v.w;
        acc += a * a;
        acc += b * b;
        acc += c * c;
        acc += d * d;
    }
    for (size_t i = n_vec * 4 + tid; i < n; i += stride) {
        double xi = x[i];
        acc += xi * xi;
    }
    acc = block_sum_double(acc);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

/* *result = sum of partial[0..n_partial); one block of SUM_SQUARES_MAX_GRID threads */
__global__ static void __launch_bounds__(SUM_SQUARES_MAX_GRID)
    sum_partials_kernel(double *result, const double *partial, int n_partial) {
    double v = (int)threadIdx.x < n_partial ? partial[threadIdx.x] : 0.0;
    v = block_sum_double(v);
    if (threadIdx.x == 0) *result = v;
}

extern "C" double sum_squares_cuda(const float *x, size_t n) {
    if (n == 0) return 0.0;
    /* x (n) fp32 */
    /* (SUM_SQUARES_MAX_GRID + 1) doubles: the partials, then the result */
    double *partial = (double *)workspace_reserve(WS_SUM_SQUARES,
                                                  (SUM_SQUARES_MAX_GRID + 1) * sizeof(double));
    double *result = partial + SUM_SQUARES_MAX_GRID;
    bool vec = aligned16(x);
    size_t work = vec ? n / 4 + 1 : n;
    size_t blocks = (work + SUM_SQUARES_BLOCK - 1) / SUM_SQUARES_BLOCK;
    int grid = (int)(blocks < SUM_SQUARES_MAX_GRID ? blocks : SUM_SQUARES_MAX_GRID);
    if (vec)
        sum_squares_partial_kernel<true><<<grid, SUM_SQUARES_BLOCK, 0, retort_stream>>>(partial, x,
                                                                                       n);
    else
        sum_squares_partial_kernel<false><<<grid, SUM_SQUARES_BLOCK, 0, retort_stream>>>(partial, x,
                                                                                        n);
    CUDA_LAUNCH_CHECK();
    sum_partials_kernel<<<1, SUM_SQUARES_MAX_GRID, 0, retort_stream>>>(result, partial, grid);
    CUDA_LAUNCH_CHECK();
    double host = 0.0;
    CUDA_CHECK(cudaMemcpyAsync(&host, result, sizeof(double), cudaMemcpyDeviceToHost,
                               retort_stream));
    CUDA_CHECK(cudaStreamSynchronize(retort_stream));
    return host;
}

/* x *= s on fp32 x (gradients) */
__global__ static void scale_f32_kernel(float *x, float s, size_t n) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) x[i] *= s;
}

extern "C" void scale_inplace_cuda(float *x, float s, size_t n) {
    if (n == 0) return;
    /* x (n) fp32 */
    scale_f32_kernel<<<grid_for(n, ELEMENTWISE_BLOCK), ELEMENTWISE_BLOCK, 0, retort_stream>>>(x, s,
                                                                                           n);
    CUDA_LAUNCH_CHECK();
}

/* x *= s on bf16 x (activations), in fp32, rounded once */
template <bool VEC>
__global__ static void scale_kernel(floatX *x, float s, size_t n) {
    size_t tid = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    size_t n_vec = VEC ? n / VEC_WIDTH : 0;
    for (size_t k = tid; k < n_vec; k += stride) {
        float v[VEC_WIDTH];
        load8(x + k * VEC_WIDTH, v);
#pragma unroll
        for (int e = 0; e < VEC_WIDTH; e++) v[e] *= s;
        store8(x + k * VEC_WIDTH, v);
    }
    for (size_t i = n_vec * VEC_WIDTH + tid; i < n; i += stride)
        x[i] = float_to_bf16(bf16_to_float(x[i]) * s);
}

extern "C" void scale_act_cuda(float *x_f, float s, size_t n) {
    if (n == 0) return;
    floatX *x = reinterpret_cast<floatX *>(x_f); /* (n) bf16 */
    bool vec = aligned16(x);
    int grid = grid_for(vec ? n / VEC_WIDTH + 1 : n, ELEMENTWISE_BLOCK);
    if (vec) scale_kernel<true><<<grid, ELEMENTWISE_BLOCK, 0, retort_stream>>>(x, s, n);
    else scale_kernel<false><<<grid, ELEMENTWISE_BLOCK, 0, retort_stream>>>(x, s, n);
    CUDA_LAUNCH_CHECK();
}

__global__ static void f32_to_bf16_kernel(floatX *dst, const float *src, size_t n) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        dst[i] = __float2bfloat16_rn(src[i]);
}

__global__ static void bf16_to_f32_kernel(float *dst, const floatX *src, size_t n) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        dst[i] = bf16_to_float(src[i]);
}

/* Chunks reuse one staging buffer; stream order keeps each memcpy behind the
 * previous chunk's conversion. Synchronises at the end, so the caller may free or
 * reuse the host buffer even when it is pinned (uploads are rare: init, load). */
extern "C" void upload_f32_cuda(float *dst_f, const float *host, size_t n) {
    if (n == 0) return;
    floatX *dst = reinterpret_cast<floatX *>(dst_f); /* (n) */
    float *stage = (float *)workspace_reserve(WS_STAGING, STAGING_CHUNK * sizeof(float));
    for (size_t off = 0; off < n; off += STAGING_CHUNK) {
        size_t len = n - off < STAGING_CHUNK ? n - off : STAGING_CHUNK;
        CUDA_CHECK(cudaMemcpyAsync(stage, host + off, len * sizeof(float), cudaMemcpyHostToDevice,
                                   retort_stream));
        f32_to_bf16_kernel<<<grid_for(len, ELEMENTWISE_BLOCK), ELEMENTWISE_BLOCK, 0,
                             retort_stream>>>(dst + off, stage, len);
        CUDA_LAUNCH_CHECK();
    }
    CUDA_CHECK(cudaStreamSynchronize(retort_stream));
}

/* Synchronises: the host buffer holds the values when this returns. */
extern "C" void download_f32_cuda(float *host, const float *src_f, size_t n) {
    if (n == 0) return;
    const floatX *src = reinterpret_cast<const floatX *>(src_f); /* (n) */
    float *stage = (float *)workspace_reserve(WS_STAGING, STAGING_CHUNK * sizeof(float));
    for (size_t off = 0; off < n; off += STAGING_CHUNK) {
        size_t len = n - off < STAGING_CHUNK ? n - off : STAGING_CHUNK;
        bf16_to_f32_kernel<<<grid_for(len, ELEMENTWISE_BLOCK), ELEMENTWISE_BLOCK, 0,
                             retort_stream>>>(stage, src + off, len);
        CUDA_LAUNCH_CHECK();
        CUDA_CHECK(cudaMemcpyAsync(host + off, stage, len * sizeof(float), cudaMemcpyDeviceToHost,
                                   retort_stream));
    }
    CUDA_CHECK(cudaStreamSynchronize(retort_stream));
}
