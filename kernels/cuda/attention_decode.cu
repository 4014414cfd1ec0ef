/* kernels/cuda/attention_decode.cu — causal attention over a key/value cache
 * of slots, for generation (the twin of kernels/cpu/attention_decode.c). Token
 * i belongs to cache slot slot[i] at position pos[i]; it computes
 *     keys 0 .. pos[i] of (slot[i], g) for token i's query of head h:
 *     s_j = scale q . k_j,  out = sum_j softmax(s)_j v_j,  fp32 accumulation,
 * with g = h / (NH/KVH) the kv head of query head h (grouped-query attention)
 * and scale the caller's (GPT-2: 1/sqrt(HS)), after storing every new token's
 * k and v at (slot[i], pos[i]). Caches are (slots,KVH,maxT,HS) bf16, qkv (N,W)
 * with W = (NH + 2 KVH) HS (q heads, k heads, v heads), out (N,NH HS); slot
 * and pos are (N) ints in device memory, read only by the kernels.
 *
 * Launches (all on retort_stream, so each sees the previous one's writes):
 *   1. store_kv_kernel writes the new k and v into the caches, so every query
 *      of launch 2 sees all of them, whichever block computes it;
 *   2. decode_kernel: one block of 128 threads per (token, query head,
 *      split), flash-decoding style: the block streams over its range of keys
 *      with an online softmax, so nothing grows with the context (the old
 *      kernel kept the whole score row in shared memory and stopped at 12,256
 *      tokens). The query heads of a group read the same kv head; their blocks
 *      are adjacent in launch order (h varies fastest after the split), so
 *      the group's reads of a cache chunk fall close together in time and the
 *      repeats are mostly served from L2;
 *   3. decode_combine_kernel, only when keys are split: merges a query's
 *      partial results in split order (a query whose keys fit in split 0 was
 *      written by that block; its combine block returns at once).
 *
 * Coalescing: a group of G lanes (G = 4, 8, 16 or 32, the smallest power of
 * two >= HS/8) reads one key row, lane l the 16-byte chunk of elements
 * 8l .. 8l+7, and reduces the dot product with G-wide xor shuffles. The 32/G
 * groups of a warp take consecutive keys, and consecutive key rows are
 * adjacent in the cache, so one load instruction of a warp reads 32 x 16 = 512
 * contiguous bytes (HS = 64: four 128-byte rows). V rows are read the same way,
 * and each lane accumulates p_j v_j for its own 8 output channels. (The old
 * kernel gave each thread a whole key row: 32 rows HS x 2 bytes apart per
 * warp load.) When HS % 8 != 0 or a buffer is not 16-byte aligned, lane l
 * reads elements l, l+G, .., l+7G one bf16 at a time instead (the scalar
 * path); still consecutive lanes on consecutive elements.
 *
 * Tile geometry: GROUPS = 128/G key groups per block, each doing UNROLL = 4
 * keys per step (all 8 loads of a step issued before any use, to keep bytes
 * in flight), so a block step covers 128/G x 4 keys: 128, 64, 32, 16 keys for
 * G = 4, 8, 16, 32. Group g of a step starting at key base takes keys
 * base + g + u GROUPS, u = 0..3. Each group keeps its own running state, in
 * the log2 domain (q is pre-multiplied by scale * log2(e), so exp is exp2):
 *     m' = max(m, s_u),  alpha = 2^(m - m'),  l' = alpha l + sum_u 2^(s_u - m'),
 *     acc' = alpha acc + sum_u 2^(s_u - m') v_u          (FlashAttention-2)
 * with no barrier inside the loop. At the end the groups are merged: block
 * max M, each group scaled by 2^(m - M), then summed (xor butterfly across the
 * groups of a warp, then the 4 warps through shared memory in warp order).
 *
 * Split-K: N NH blocks fill a GPU only when that product is large (prefill);
 * a single decoded token of a 12-head model would give 12 blocks each reading
 * the whole cache. So when N NH < DECODE_SPLIT_BLOCKS the keys are cut into
 * chunks of `chunk` keys (a multiple of the block step, at least
 * DECODE_MIN_SPLIT_KEYS): split s of token i covers keys [s chunk, (s+1) chunk)
 * clipped to pos[i]+1, writes its (M, L, unnormalised O) to an fp32 scratch
 * buffer, and decode_combine_kernel merges splits 0, 1, .. in order:
 *     M* = max_s M_s,  L* = sum_s 2^(M_s - M*) L_s,  out = sum_s 2^(M_s - M*) O_s / L*.
 * The positions live on the device, so the host cuts the split grid for the
 * largest possible context, maxT keys; each block reads pos[i] and a split
 * past token i's last key returns at once, writing nothing. The combine block
 * of token i reads the same pos[i] and merges exactly its live splits
 * ns = ceil((pos[i]+1) / chunk), so no dead split's scratch is ever read. When
 * ns = 1 split 0 writes the output itself, as in the unsplit case (the same
 * bits: the combine of one part would scale by 2^0 = 1). The grid has at most
 * DECODE_SPLIT_BLOCKS blocks, so the scratch stays under DECODE_SPLIT_BLOCKS
 * (HS + 2) fp32 = 1.06 MB at HS = 256. Cutting for maxT rather than the real
 * context costs parallelism when the cache is much longer than the context
 * (most splits of a short context are dead), never correctness.
 *
 * Determinism: no atomics; every sum has an order fixed by the shapes alone
 * (per-lane sequential over its keys, fixed xor trees, warps in order, splits
 * in order), and the split count and chunk depend only on (N, NH, maxT, HS),
 * the splits a query uses only on its pos[i], never on the device or timing;
 * so the same inputs give the same bits every run (and on every GPU that runs
 * the same code). (Unlike the CPU twin, a token's bits may change with N: N
 * picks the chunk.)
 *
 * Shared memory: 4 warps x 256 fp32 partial outputs + 2 x 4 floats = 4,128
 * bytes, static, whatever the context. Registers (ptxas -v, CUDA 13.0, no
 * spills, 0-byte stack frames, every G): decode_kernel 80 (sm_80 and sm_90)
 * on the vector path, 113 (sm_80) / 115 (sm_90) on the scalar path, under
 * __launch_bounds__(128, 4); so registers are the limit: 6 blocks (24 warps)
 * per SM on the vector path, 4 (16 warps) on the scalar one; combine 30 / 32,
 * store 20 / 22. The 8 K and V loads of a step are issued before any shuffle,
 * so each thread of the vector path keeps 128 bytes in flight: about 96 KB per
 * SM, more than the bandwidth-latency product of an A100 or H100 SM needs.
 *
 * Head sizes: HS <= 256 (32 lanes x 8 elements); larger is refused on the host
 * with a message. Slots and positions are in device memory, so the host cannot
 * check them: the caller guarantees 0 <= slot[i] < slots and 0 <= pos[i] <
 * maxT (the CPU twin checks them; model/model.c fills both arrays).
 * Decoding reads a token's whole context once per token: the kernel is
 * bandwidth-bound, and the work above is about reading it at full width. */
#include <limits.h>
#include <math.h>
#include <stdint.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/limits.h"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/cuda/reduce.cuh"
#include "kernels/cuda/workspace.cuh"

#define DECODE_THREADS 128
#define DECODE_WARPS (DECODE_THREADS / 32)
#define DECODE_UNROLL 4          /* keys per group per step */
#define DECODE_LANE_ELEMS 8      /* head-size elements each lane owns */
#define DECODE_MAX_HS CUDA_DECODE_MAX_HS /* 256: 32 lanes x 8 elements */
static_assert(DECODE_MAX_HS == 32 * DECODE_LANE_ELEMS, "one key row is one warp's 32 lanes");
#define DECODE_SPLIT_BLOCKS 1024 /* split keys only while the grid is smaller than this */
#define DECODE_MIN_SPLIT_KEYS 256
#define DECODE_FULL_MASK 0xffffffffu

/* One thread per element of the new tokens' k (and v) heads: (N,KVH*HS). */
__global__ static void store_kv_kernel(floatX *kc, floatX *vc, const floatX *qkv,
                                       const int *slot, const int *pos, int N, int NH, int KVH,
                                       int HS, int maxT) {
    size_t CK = (size_t)KVH * HS; /* k (and v) columns of a token */
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t total = (size_t)N * CK;
    if (idx >= total) return;
    int c = (int)(idx % CK), i = (int)(idx / CK);
    int g = c / HS, d = c % HS;
    const floatX *row = qkv + (size_t)i * (NH + 2 * KVH) * HS; /* (W) */
    size_t at = (((size_t)slot[i] * KVH + g) * maxT + pos[i]) * HS + d;
    kc[at] = row[(size_t)NH * HS + c];
    vc[at] = row[(size_t)(NH + KVH) * HS + c];
}

/* The 8 elements lane lg of a G-lane group owns in a head-size row, as fp32:
 * VEC: row[8 lg .. 8 lg + 7], one 16-byte load (HS % 8 == 0, row 16-byte
 * aligned); scalar: row[lg + G e], e = 0..7. Zeros past HS, and for a key
 * past the block's range (ok false: nothing is read). */
template <int G, bool VEC>
static __device__ __forceinline__ void load_lane(const floatX *row, int lg, int HS, bool ok,
                                                 float x[DECODE_LANE_ELEMS]) {
    if (VEC) {
        if (ok && DECODE_LANE_ELEMS * lg < HS) {
            load8(row + DECODE_LANE_ELEMS * lg, x);
        } else {
#pragma unroll
            for (int e = 0; e < DECODE_LANE_ELEMS; e++) x[e] = 0.0f;
        }
    } else {
#pragma unroll
        for (int e = 0; e < DECODE_LANE_ELEMS; e++) {
            int d = lg + G * e;
            x[e] = ok && d < HS ? bf16_to_float(row[d]) : 0.0f;
        }
    }
}

/* Head-size index of lane lg's element e (the layout load_lane reads). */
template <int G, bool VEC>
static __device__ __forceinline__ int lane_elem(int lg, int e) {
    return VEC ? DECODE_LANE_ELEMS * lg + e : lg + G * e;
}

/* Sum over the G lanes of a group; every lane of the group gets the same bits
 * (each butterfly stage adds the same two values, in either order). */
template <int G>
static __device__ __forceinline__ float group_sum(float v) {
#pragma unroll
    for (int o = G / 2; o > 0; o >>= 1) v += __shfl_xor_sync(DECODE_FULL_MASK, v, o);
    return v;
}

/* One block per (token i, query head h, split s); see the file comment.
 * When split 0 is the query's only live split (nsplit == 1, or pos[i] <
 * chunk) it writes out directly; otherwise it writes part_ml[row nsplit + s]
 * = (M, L) and part_o[(row nsplit + s) HS ..] = unnormalised O, row = i NH + h.
 * A split past pos[i] returns at once. */
template <int G, bool VEC>
__global__ static void __launch_bounds__(DECODE_THREADS, 4)
    decode_kernel(floatX *__restrict__ out, float *__restrict__ part_ml,
                  float *__restrict__ part_o, const floatX *__restrict__ kc,
                  const floatX *__restrict__ vc, const floatX *__restrict__ qkv,
                  const int *__restrict__ slot, const int *__restrict__ pos, int N, int NH,
                  int KVH, int HS, int maxT, int chunk, int nsplit, float qscale) {
    static_assert(G >= 4 && G <= 32 && (G & (G - 1)) == 0, "G: 4, 8, 16 or 32 lanes per key");
    constexpr int GROUPS = DECODE_THREADS / G; /* keys in flight per block, per u */
    constexpr int E = DECODE_LANE_ELEMS;
    __shared__ float red_o[DECODE_WARPS][DECODE_MAX_HS];
    __shared__ float red_m[DECODE_WARPS], red_l[DECODE_WARPS];

    /* last tokens first (a slot's tokens come in increasing positions, so
     * these are the heaviest); the splits of one query adjacent */
    int s = (int)(blockIdx.x % (unsigned)nsplit);
    int r = (int)(blockIdx.x / (unsigned)nsplit);
    int h = r % NH, i = N - 1 - r / NH, g = h / (NH / KVH);
    int keys = pos[i] + 1;
    int k0 = s * chunk;
    if (k0 >= keys) return; /* whole block, before any barrier; combine skips it */
    int k1 = min(keys, k0 + chunk);
    bool direct = nsplit == 1 || keys <= chunk; /* split 0 is the only live one */

    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int lg = lane & (G - 1), group = threadIdx.x / G;
    const floatX *q = qkv + (size_t)i * (NH + 2 * KVH) * HS + (size_t)h * HS;
    size_t kv = ((size_t)slot[i] * KVH + g) * maxT * HS;
    const floatX *K = kc + kv; /* (maxT,HS) */
    const floatX *V = vc + kv; /* (maxT,HS) */

    float qf[E];
    load_lane<G, VEC>(q, lg, HS, true, qf);
#pragma unroll
    for (int e = 0; e < E; e++) qf[e] *= qscale;

    float m = -INFINITY, l = 0.0f, acc[E];
#pragma unroll
    for (int e = 0; e < E; e++) acc[e] = 0.0f;

    /* k0, k1 and the trip count are the same for the whole block, so every
     * lane reaches every shuffle; per-group branches come after them */
    for (int base = k0; base < k1; base += GROUPS * DECODE_UNROLL) {
        float kx[DECODE_UNROLL][E], vx[DECODE_UNROLL][E];
#pragma unroll
        for (int u = 0; u < DECODE_UNROLL; u++) {
            int j = base + group + GROUPS * u;
            load_lane<G, VEC>(K + (size_t)j * HS, lg, HS, j < k1, kx[u]);
            load_lane<G, VEC>(V + (size_t)j * HS, lg, HS, j < k1, vx[u]);
        }
        float sc[DECODE_UNROLL];
#pragma unroll
        for (int u = 0; u < DECODE_UNROLL; u++) {
            float dot = 0.0f;
#pragma unroll
            for (int e = 0; e < E; e++) dot = fmaf(qf[e], kx[u][e], dot);
            sc[u] = group_sum<G>(dot);
        }
        if (base + group >= k1) continue; /* no key of this group in this step (nor later) */
        float m_new = m;
#pragma unroll
        for (int u = 0; u < DECODE_UNROLL; u++)
            if (base + group + GROUPS * u < k1) m_new = fmaxf(m_new, sc[u]);
        float alpha = exp2f(m - m_new); /* 0 on the group's first step (m = -inf) */
        l *= alpha;
#pragma unroll
        for (int e = 0; e < E; e++) acc[e] *= alpha;
#pragma unroll
        for (int u = 0; u < DECODE_UNROLL; u++) {
            float p = base + group + GROUPS * u < k1 ? exp2f(sc[u] - m_new) : 0.0f;
            l += p;
#pragma unroll
            for (int e = 0; e < E; e++) acc[e] = fmaf(p, vx[u][e], acc[e]);
        }
        m = m_new;
    }

    /* merge the groups: block max, rescale, then a fixed-order sum */
    float M = m;
#pragma unroll
    for (int o = G; o < 32; o <<= 1) M = fmaxf(M, __shfl_xor_sync(DECODE_FULL_MASK, M, o));
    if (lane == 0) red_m[warp] = M;
    __syncthreads();
    M = red_m[0];
#pragma unroll
    for (int w = 1; w < DECODE_WARPS; w++) M = fmaxf(M, red_m[w]);
    float f = m == -INFINITY ? 0.0f : exp2f(m - M); /* a group with no keys adds nothing */
    l *= f;
#pragma unroll
    for (int e = 0; e < E; e++) acc[e] *= f;
#pragma unroll
    for (int o = G; o < 32; o <<= 1) {
        l += __shfl_xor_sync(DECODE_FULL_MASK, l, o);
#pragma unroll
        for (int e = 0; e < E; e++) acc[e] += __shfl_xor_sync(DECODE_FULL_MASK, acc[e], o);
    }
    if (lane < G) { /* group 0 of each warp now holds the warp's sums */
#pragma unroll
        for (int e = 0; e < E; e++) {
            int d = lane_elem<G, VEC>(lg, e);
            if (d < HS) red_o[warp][d] = acc[e];
        }
        if (lane == 0) red_l[warp] = l;
    }
    __syncthreads();
    float L = red_l[0];
#pragma unroll
    for (int w = 1; w < DECODE_WARPS; w++) L += red_l[w];
    size_t row = (size_t)i * NH + h;
    for (int d = threadIdx.x; d < HS; d += DECODE_THREADS) {
        float o = red_o[0][d];
#pragma unroll
        for (int w = 1; w < DECODE_WARPS; w++) o += red_o[w][d];
        if (direct)
            out[row * HS + d] = float_to_bf16(o / L);
        else
            part_o[(row * nsplit + s) * HS + d] = o;
    }
    if (!direct && threadIdx.x == 0) {
        part_ml[2 * (row * nsplit + s)] = M;
        part_ml[2 * (row * nsplit + s) + 1] = L;
    }
}

/* One block per (token i, head h), row = i NH + h: merges the query's live
 * splits 0 .. ns-1 in order, ns from pos[i] as decode_kernel counted them (the
 * dead splits past pos[i] wrote nothing and are never read; ns = 1 was
 * written by decode_kernel already). Each thread owns output channels and
 * recomputes M* and L* (the same bits in every thread: same values, same
 * order). */
__global__ static void decode_combine_kernel(floatX *__restrict__ out,
                                             const float *__restrict__ part_ml,
                                             const float *__restrict__ part_o,
                                             const int *__restrict__ pos, int NH, int HS,
                                             int chunk, int nsplit) {
    size_t row = blockIdx.x;
    int i = (int)(row / NH);
    int ns = (pos[i] + 1 + chunk - 1) / chunk;
    if (ns <= 1) return;
    const float *ml = part_ml + 2 * row * nsplit;
    const float *po = part_o + row * nsplit * HS;
    float M = -INFINITY;
    for (int s = 0; s < ns; s++) M = fmaxf(M, ml[2 * s]);
    float L = 0.0f;
    for (int s = 0; s < ns; s++) L += exp2f(ml[2 * s] - M) * ml[2 * s + 1];
    for (int d = threadIdx.x; d < HS; d += blockDim.x) {
        float o = 0.0f;
        for (int s = 0; s < ns; s++) o += exp2f(ml[2 * s] - M) * po[(size_t)s * HS + d];
        out[row * HS + d] = float_to_bf16(o / L);
    }
}

template <int G, bool VEC>
static void decode_launch(floatX *out, const floatX *kc, const floatX *vc, const floatX *qkv,
                          const int *slot, const int *pos, int N, int NH, int KVH, int HS,
                          int maxT, float scale) {
    const char *fn = "attention_decode_cuda";
    const int step = DECODE_THREADS / G * DECODE_UNROLL; /* keys per block step */
    long rows = (long)N * NH;
    int keys_max = maxT; /* the positions are on the device: cut for the longest context */
    int nsplit = 1, chunk = keys_max;
    if (rows < DECODE_SPLIT_BLOCKS && keys_max > DECODE_MIN_SPLIT_KEYS) {
        long want = DECODE_SPLIT_BLOCKS / rows;
        long by_keys = ceil_div(keys_max, DECODE_MIN_SPLIT_KEYS);
        if ((want < by_keys ? want : by_keys) > 1) {
            int ns = (int)(want < by_keys ? want : by_keys);
            chunk = ceil_div(ceil_div(keys_max, ns), step) * step;
            nsplit = ceil_div(keys_max, chunk);
        }
    }
    if (rows * nsplit > INT_MAX) {
        fprintf(stderr,
                "retort: %s: N=%d tokens x NH=%d heads = %ld queries exceed one launch (%d "
                "blocks); decode fewer tokens per call\n",
                fn, N, NH, rows, INT_MAX);
        exit(1);
    }
    float *part_ml = NULL, *part_o = NULL;
    if (nsplit > 1) {
        size_t parts = (size_t)rows * nsplit;
        /* (M, L) pairs then O rows of every (row, split) */
        float *buf = (float *)workspace_reserve(WS_DECODE_SPLITS,
                                                parts * (HS + 2) * sizeof(float));
        part_ml = buf;
        part_o = buf + 2 * parts;
    }
    const float qscale = scale * 1.4426950408889634f; /* scale log2(e) */
    decode_kernel<G, VEC><<<(unsigned)(rows * nsplit), DECODE_THREADS, 0, retort_stream>>>(
        out, part_ml, part_o, kc, vc, qkv, slot, pos, N, NH, KVH, HS, maxT, chunk, nsplit,
        qscale);
    CUDA_LAUNCH_CHECK();
    if (nsplit > 1) {
        decode_combine_kernel<<<(unsigned)rows, block_for_columns(HS, DECODE_THREADS), 0,
                                retort_stream>>>(out, part_ml, part_o, pos, NH, HS, chunk,
                                                 nsplit);
        CUDA_LAUNCH_CHECK();
    }
}

template <bool VEC>
static void decode_dispatch(floatX *out, const floatX *kc, const floatX *vc, const floatX *qkv,
                            const int *slot, const int *pos, int N, int NH, int KVH, int HS,
                            int maxT, float scale) {
    int lanes = ceil_div(HS, DECODE_LANE_ELEMS); /* 1 .. 32 */
    if (lanes <= 4)
        decode_launch<4, VEC>(out, kc, vc, qkv, slot, pos, N, NH, KVH, HS, maxT, scale);
    else if (lanes <= 8)
        decode_launch<8, VEC>(out, kc, vc, qkv, slot, pos, N, NH, KVH, HS, maxT, scale);
    else if (lanes <= 16)
        decode_launch<16, VEC>(out, kc, vc, qkv, slot, pos, N, NH, KVH, HS, maxT, scale);
    else
        decode_launch<32, VEC>(out, kc, vc, qkv, slot, pos, N, NH, KVH, HS, maxT, scale);
}

extern "C" void attention_decode_cuda(float *out, float *kcache, float *vcache, const float *qkv,
                                      const int *slot, const int *pos, int N, int NH, int KVH,
                                      int HS, int maxT, float scale) {
    const char *fn = "attention_decode_cuda";
    if (N < 0 || NH <= 0 || KVH <= 0 || HS <= 0 || NH % KVH != 0) {
        fprintf(stderr,
                "retort: %s: bad shape N=%d NH=%d KVH=%d HS=%d (need N >= 0, positive head "
                "counts and size, and NH a multiple of KVH)\n",
                fn, N, NH, KVH, HS);
        exit(1);
    }
    if (maxT < 1) {
        fprintf(stderr,
                "retort: %s: a cache of %d positions holds no token (need maxT >= 1)\n", fn,
                maxT);
        exit(1);
    }
    if (HS > DECODE_MAX_HS) {
        fprintf(stderr,
                "retort: %s: head size %d is not supported; the CUDA decode attention handles "
                "head sizes up to %d — use a model with smaller heads, or the CPU\n",
                fn, HS, DECODE_MAX_HS);
        exit(1);
    }
    /* slot[i] and pos[i] are in device memory: the host cannot check them
     * without a copy and a sync per call, so the caller guarantees slot[i] in
     * [0, slots) and pos[i] in [0, maxT) (the CPU twin checks both) */
    if (N == 0) return;
    size_t total = (size_t)N * KVH * HS;
    store_kv_kernel<<<ceil_div((long)total, 256), 256, 0, retort_stream>>>(
        (floatX *)kcache, (floatX *)vcache, (const floatX *)qkv, slot, pos, N, NH, KVH, HS,
        maxT);
    CUDA_LAUNCH_CHECK();
    /* HS % 8 == 0 makes W and NH*HS multiples of 8 too, so with 16-byte aligned
     * bases every q, k and v row starts 16-byte aligned */
    bool vec = HS % DECODE_LANE_ELEMS == 0 && aligned16(qkv) && aligned16(kcache) &&
               aligned16(vcache);
    if (vec)
        decode_dispatch<true>((floatX *)out, (const floatX *)kcache, (const floatX *)vcache,
                              (const floatX *)qkv, slot, pos, N, NH, KVH, HS, maxT, scale);
    else
        decode_dispatch<false>((floatX *)out, (const floatX *)kcache, (const floatX *)vcache,
                               (const floatX *)qkv, slot, pos, N, NH, KVH, HS, maxT, scale);
}
