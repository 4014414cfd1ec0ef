/* kernels/cuda/reduce.cuh — small helpers the elementwise and reduction kernels
 * share: 16-byte bf16 vector loads and stores, alignment tests, grid sizing,
 * deterministic block reductions and the classifiers' online softmax.
 *
 * Vector access: eight bf16 values are one 16-byte uint4. Converting bf16 to
 * fp32 is exact (the bf16 bits are the high half of the fp32 bits), so a load
 * is a shift or a mask per element; stores round each float to nearest even
 * with __float2bfloat16_rn. Element e of a vector is at address base + 2e
 * (little endian: element 0 is the low half of the first 32-bit word).
 *
 * Determinism: every reduction here combines values in a fixed tree that
 * depends only on blockDim, never on timing, so results repeat bit for bit.
 */
#ifndef RETORT_CUDA_REDUCE_CUH
#define RETORT_CUDA_REDUCE_CUH

#include <stdint.h>

#include "kernels/cuda/common.cuh"

/* Bf16 values per 16-byte vector. */
#define VEC_WIDTH 8

static __device__ __forceinline__ float bf16_to_float(floatX x) { return __bfloat162float(x); }
static __device__ __forceinline__ floatX float_to_bf16(float x) { return __float2bfloat16_rn(x); }

/* out[0..7] = p[0..7] as fp32; p must be 16-byte aligned */
static __device__ __forceinline__ void load8(const floatX *p, float out[VEC_WIDTH]) {
    uint4 raw = *reinterpret_cast<const uint4 *>(p);
    unsigned int w[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int k = 0; k < 4; k++) {
        out[2 * k] = __uint_as_float(w[k] << 16);
        out[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
    }
}

static __device__ __forceinline__ unsigned int pack_bf16x2(float lo, float hi) {
    unsigned int l = __bfloat16_as_ushort(__float2bfloat16_rn(lo));
    unsigned int h = __bfloat16_as_ushort(__float2bfloat16_rn(hi));
    return l | (h << 16);
}

/* p[0..7] = bf16(in[0..7]), rounded to nearest; p must be 16-byte aligned */
static __device__ __forceinline__ void store8(floatX *p, const float in[VEC_WIDTH]) {
    uint4 raw;
    raw.x = pack_bf16x2(in[0], in[1]);
    raw.y = pack_bf16x2(in[2], in[3]);
    raw.z = pack_bf16x2(in[4], in[5]);
    raw.w = pack_bf16x2(in[6], in[7]);
    *reinterpret_cast<uint4 *>(p) = raw;
}

static __device__ __forceinline__ double warp_sum_double(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Sum of v over the block, valid in thread 0. blockDim.x must be a multiple of
 * 32 (at most 1024) and every thread must call it; call at most once per kernel
 * (the shared slots are reused without a trailing barrier). Fixed tree: warp
 * butterflies, then warp 0 over the warp sums in warp order. */
static __device__ __forceinline__ double block_sum_double(double v) {
    __shared__ double warp_sums[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int n_warps = blockDim.x >> 5;
    v = warp_sum_double(v);
    if (lane == 0) warp_sums[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < n_warps ? warp_sums[lane] : 0.0;
        v = warp_sum_double(v);
    }
    return v;
}

/* Online softmax statistics of the classifier kernels (classifier.cu,
 * classifier_kd.cu): each thread keeps a running max m and s = sum exp(x - m)
 * over its elements, and pairs are merged in a fixed order, so a log-sum-exp
 * (m + log s) is deterministic. Start from m = -FLT_MAX, s = 0 (not -inf): then
 * x - m stays finite for -inf logits. */
static __device__ __forceinline__ void online_add(float &m, float &s, float x) {
    if (x > m) {
        s = s * expf(m - x) + 1.0f;
        m = x;
    } else {
        s += expf(x - m);
    }
}

static __device__ __forceinline__ void online_merge(float &m, float &s, float m2, float s2) {
    float mx = fmaxf(m, m2);
    s = s * expf(m - mx) + s2 * expf(m2 - mx);
    m = mx;
}

/* (m, s) merged over the warp by xor butterflies; every lane gets the result */
static __device__ __forceinline__ void warp_online_merge(float &m, float &s) {
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, o);
        float s2 = __shfl_xor_sync(0xffffffffu, s, o);
        online_merge(m, s, m2, s2);
    }
}

static inline bool aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

/* Blocks for a grid-stride loop over `work` items: enough to fill any GPU, capped
 * so huge tensors loop instead of launching millions of blocks. Never 0 for
 * work > 0; callers return early on work == 0. */
static inline int grid_for(size_t work, int block) {
    size_t blocks = (work + (size_t)block - 1) / (size_t)block;
    const size_t max_blocks = 16384;
    return (int)(blocks < max_blocks ? blocks : max_blocks);
}

/* Threads per block for `units` independent column chunks: a multiple of 32,
 * between 32 and max_threads. */
static inline int block_for_columns(int units, int max_threads) {
    int threads = (units + 31) / 32 * 32;
    if (threads < 32) threads = 32;
    return threads < max_threads ? threads : max_threads;
}

#endif
