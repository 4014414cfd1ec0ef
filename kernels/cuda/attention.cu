/* kernels/cuda/attention.cu — causal self-attention with grouped-query heads,
 * flash style, on tensor cores (bf16 operands, fp32 accumulation). The CUDA
 * twin of kernels/cpu/attention.c; it computes the same function:
 *     S = scale Q K^T (the caller's scale; GPT-2: 1/sqrt(HS)),  causal mask
 *     (key j > query i is -inf),  P = softmax_rows(S),  O = P V,
 *     lse_i = log sum_j exp(S_ij)  (natural log).
 * Per (b, h), Q is the (T,HS) slice of query head h and K, V those of kv head
 * g = h / (NH/KVH), all in qkv (B,T,W), row stride W = (NH + 2 KVH) HS
 * (q heads, then k heads, then v heads); out and dout are (B,T,NH HS).
 *
 * Forward (one block per (b*h, 64-query tile), heaviest tiles launched first):
 *   the query tile stays in shared memory; for every key tile kb <= qb (causal)
 *   the block loads K, V and each warp, for its own 16 query rows,
 *     1. computes S = Q K^T (wmma 16x16x16 bf16 -> fp32) into shared memory,
 *     2. runs the online softmax on its rows: m' = max(m, rowmax(scale S)),
 *        P = exp(scale S - m'), alpha = exp(m - m'), l' = alpha l + rowsum(P),
 *        and rescales its rows of the fp32 output accumulator O by alpha,
 *     3. adds P V into O (O lives in shared memory because the wmma accumulator
 *        layout is unspecified, so rows cannot be rescaled in registers).
 *   At the end O / l is written as bf16 and lse = m + log(l) as fp32.
 *   Only lse (B,NH,T) is kept; nothing of size (T,T) ever reaches global memory.
 *
 * Backward: D_i = sum_d dO_id O_id is precomputed by a small kernel (B,NH,T);
 * then two kernels, 8 warps each, both recomputing per (query tile, key tile)
 *     S = Q K^T and dP = dO V^T            (warps 0-3 and 4-7 in parallel)
 *     P = exp(scale S - lse), dS = scale P (dP - D)   (elementwise, masked)
 * with the same helpers (bwd_scores, bwd_probs), so both see the same dS:
 *   dK/dV (FlashAttention-2 order, one block per (b*g, 64-key tile), g a kv
 *     head): keeps K, V of its key tile in shared memory and dK, dV in wmma
 *     accumulators (warps 0-3: dV rows, warps 4-7: dK rows), loops over the
 *     NH/KVH query heads of the group in order and, for each, over the query
 *     tiles qb >= kb doing dV += P^T dO, dK += dS^T Q, and adds dK, dV into
 *     dqkv at the end (each key row of a kv head belongs to one block, so the
 *     group's sum needs no atomics; with KVH == NH it is plain multi-head).
 *     The price of summing inside the block: this kernel has B*KVH x T/64
 *     blocks, each NH/KVH times the work of a multi-head one, so few kv
 *     heads and a small batch (multi-query, B = 1) leave SMs idle. Splitting
 *     a group over blocks would need fp32 partials and an ordered reduction
 *     pass to stay deterministic.
 *   dQ (one block per (b*h, 64-query tile), heaviest first): keeps Q, dO of its
 *     query tile in shared memory and dQ in wmma accumulators, loops over the
 *     key tiles kb = 0, 1, ..., qb in that order doing dQ += dS K, and adds dQ
 *     into dqkv at the end (each query row belongs to one block).
 * dqkv is ACCUMULATED (+=) in all three thirds, like the CPU op.
 * Determinism: no atomics and no fp32 scratch for dQ; every element of dqkv is
 * read-modify-written once, by one thread, from sums taken in a fixed order,
 * so the backward is bitwise reproducible run to run. The price: both kernels
 * compute S and dP, so the backward does 7 (64 x 64 x HSP) products per tile
 * pair (dK/dV kernel 4, dQ kernel 3) where one kernel with atomics did 5.
 *
 * Head sizes: every HS <= 128 (the decode kernel takes up to 256). The tiles
 * are HSP wide, HSP the smallest of 16, 32, 64, 128 that holds HS (a template
 * parameter); columns HS..HSP-1 are zero-filled, which changes no product
 * (zero columns of Q, K add nothing to Q K^T; zero columns of V, dO, Q give
 * output columns that are never stored).
 * A model whose head size is larger, or whose tiles need more shared memory
 * than the device offers, is refused when it is created (backend_cuda_check,
 * with the figures of kernels/cuda/limits.h); the checks at launch remain for
 * direct callers of the op.
 *
 * Tiles: 64 queries x 64 keys. 64 keeps the fp32 score tile and the output
 * accumulator in shared memory within the A100's 163 KB per block at HS = 128,
 * and gives 4 (forward) or 8 (backward) warps whole 16-row wmma strips.
 * Shared memory per block (row strides padded by 16 bytes against bank
 * conflicts; every wmma pointer stays 32-byte aligned):
 *   forward : Q, K, V bf16 3 x 64 x (HSP+8) x 2 + S fp32 64 x 68 x 4
 *             + P bf16 64 x 72 x 2 + O fp32 64 x (HSP+4) x 4
 *             = 40,960 / 51,200 / 71,680 / 112,640 bytes for HSP 16/32/64/128
 *   dK/dV   : Q, dO, K, V bf16 4 x 64 x (HSP+8) x 2 + S, dP fp32 2 x 64 x 68 x 4
 *             + P, dS bf16 2 x 64 x 72 x 2 + lse, D fp32 2 x 64 x 4
 *             = 66,048 / 74,240 / 90,624 / 123,392 bytes
 *   dQ      : the same less P = 56,832 / 65,024 / 81,408 / 114,176 bytes
 *   (the fp32 64 x (HSP+4) output tile of both, used only after the loop,
 *   reuses the 34,816 bytes of S and dP)
 * What limits it: shared memory and registers (blocks per SM, A100 / H100:
 * forward at HS = 64 2 / 3; dK/dV 2 / 2 up to HSP 32, 1 / 2 at HSP 64, 1 / 1 at
 * HSP 128 (168 registers); dQ 2 / 2 up to HSP 64, 1 / 2 at HSP 128), and wmma keeps
 * fragments in a layout we may not touch, which costs the shared-memory round
 * trips of S and O. The upper triangle of a diagonal tile is computed and then
 * masked rather than skipped.
 *
 * Tail tiles (T not a multiple of 64): rows of Q, K, V, dO at t >= T are loaded
 * as zeros. Keys j >= T need no mask of their own: they sit only in the last
 * key tile, and for every real query i < T they have j > i, so the causal mask
 * already removes them (their V rows must still be zeros, not garbage: P = 0
 * times a NaN bit pattern would be NaN). Query rows i >= T are never stored in
 * forward; in backward their P and dS are set to zero so they add nothing to dK
 * and dV (with zero Q and dO rows they would add nothing anyway), and their dQ
 * rows are not stored.
 * Every visited (query tile, key tile) pair has kb <= qb, so key kb*64 <= i is
 * unmasked in every row: no row of a visited tile is fully masked and the
 * running max is finite after the first tile; -inf is still guarded.
 *
 * Packed rows (doc_start, kernels/ops.h): query i also masks keys j <
 * doc_start[b,i]. doc_start is non-decreasing along a row, so the first row
 * of a query tile has the smallest start: forward and dQ begin at key tile
 * doc_start[b,q0] / 64 instead of 0, and dK/dV stops at the first query tile
 * whose first row starts after its key tile, which skips the tiles wholly
 * outside every example. Inside a visited tile a row may now be fully masked
 * (its example starts in a later key tile): the -inf guard makes its P and
 * alpha 0, and from its first unmasked tile on it runs as before (every later
 * tile up to the diagonal holds one of its keys, since its keys are the
 * contiguous doc_start..i). doc_start is read from global memory per row
 * (cached; no shared-memory change, so the limits of limits.h still hold).
 * With doc_start NULL every start is 0: the plain causal kernels.
 */
#include <math.h>
#include <mma.h>
#include <stdint.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/limits.h"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/cuda/workspace.cuh"

using namespace nvcuda;

#define ATT_TILE CUDA_ATT_TILE     /* 64 queries per query tile = keys per key tile */
#define ATT_FWD_THREADS 128        /* 4 warps, one 16-row strip each */
#define ATT_BWD_THREADS 256        /* 8 warps */
#define ATT_MAX_HS CUDA_ATT_MAX_HS /* 128; kernels/cuda/limits.h, checked at model set-up */
#define FULL_MASK 0xffffffffu

typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, floatX, wmma::row_major> FragARow;
typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, floatX, wmma::col_major> FragACol;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, floatX, wmma::row_major> FragBRow;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, floatX, wmma::col_major> FragBCol;
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> FragAcc;

/* Shared-memory geometry for tiles HSP wide. Strides in elements. */
template <int HSP>
struct AttGeom {
    static_assert(HSP % 16 == 0 && HSP <= ATT_MAX_HS, "HSP must be 16, 32, 64 or 128");
    static constexpr int NF = HSP / 16;           /* 16-wide fragments across a head */
    static constexpr int LDH = HSP + 8;           /* bf16 (64, HSP) tiles: Q, K, V, dO */
    static constexpr int LDS = ATT_TILE + 4;      /* fp32 (64, 64) tiles: S, dP */
    static constexpr int LDP = ATT_TILE + 8;      /* bf16 (64, 64) tiles: P, dS */
    static constexpr int LDO = HSP + 4;           /* fp32 (64, HSP) tiles: O, dQ, dK, dV */
    static constexpr size_t H_BYTES = (size_t)ATT_TILE * LDH * sizeof(floatX);
    static constexpr size_t S_BYTES = (size_t)ATT_TILE * LDS * sizeof(float);
    static constexpr size_t P_BYTES = (size_t)ATT_TILE * LDP * sizeof(floatX);
    static constexpr size_t O_BYTES = (size_t)ATT_TILE * LDO * sizeof(float);
    static constexpr size_t ROW_BYTES = (size_t)ATT_TILE * sizeof(float);
    static constexpr size_t FWD_SMEM = 3 * H_BYTES + S_BYTES + P_BYTES + O_BYTES;
    /* backward: dK/dV (P and dS) and dQ (dS only) kernels; their fp32 (64, HSP)
     * output tile, needed only after the loop, reuses the S and dP tiles */
    static constexpr size_t BWD_SMEM = 4 * H_BYTES + 2 * S_BYTES + 2 * P_BYTES + 2 * ROW_BYTES;
    static constexpr size_t DQ_SMEM = 4 * H_BYTES + 2 * S_BYTES + P_BYTES + 2 * ROW_BYTES;
    static_assert(O_BYTES <= 2 * S_BYTES, "the backward output tile must fit over S and dP");
    /* every region starts 128-byte aligned, so every wmma pointer (rows at
     * multiples of 16, columns at multiples of 16 elements) is 32-byte aligned */
    static_assert(H_BYTES % 128 == 0 && S_BYTES % 128 == 0 && P_BYTES % 128 == 0 &&
                      O_BYTES % 128 == 0,
                  "shared-memory regions must keep 128-byte alignment");
    static_assert(LDH % 8 == 0 && LDP % 8 == 0 && LDS % 4 == 0 && LDO % 4 == 0,
                  "wmma strides: multiples of 16 bytes");
};

/* the figures backend_cuda_check refuses a configuration by (kernels/cuda/limits.h) */
#define ATT_LIMITS_MATCH(HSP)                                                              \
    static_assert(AttGeom<HSP>::FWD_SMEM == CUDA_ATT_FWD_SMEM(HSP) &&                      \
                      AttGeom<HSP>::BWD_SMEM == CUDA_ATT_BWD_SMEM(HSP) &&                  \
                      AttGeom<HSP>::DQ_SMEM == CUDA_ATT_DQ_SMEM(HSP),                      \
                  "kernels/cuda/limits.h must give the shared memory of AttGeom<" #HSP ">")
ATT_LIMITS_MATCH(16);
ATT_LIMITS_MATCH(32);
ATT_LIMITS_MATCH(64);
ATT_LIMITS_MATCH(128);

/* Copies rows row0..row0+63 of a (T, HS) head slice with row stride ld
 * (elements) into a (64, HSP) shared tile of stride LDH, zero-filling rows
 * t >= T and columns c >= HS. vec: HS % 8 == 0 and the slice base 16-byte
 * aligned, so 8-element chunks are whole and can move as one uint4. */
template <int HSP, int NTHREADS>
static __device__ __forceinline__ void load_head_tile(floatX *dst, const floatX *src, size_t ld,
                                                      int row0, int T, int HS, bool vec) {
    constexpr int LDH = AttGeom<HSP>::LDH;
    constexpr int CHUNKS = HSP / 8; /* 8 bf16 = 16 bytes */
    const floatX zero = __float2bfloat16_rn(0.0f);
    for (int idx = threadIdx.x; idx < ATT_TILE * CHUNKS; idx += NTHREADS) {
        int r = idx / CHUNKS, c = (idx % CHUNKS) * 8;
        int t = row0 + r;
        floatX *d = dst + r * LDH + c;
        if (vec) {
            uint4 v = make_uint4(0u, 0u, 0u, 0u);
            if (t < T && c < HS) v = *reinterpret_cast<const uint4 *>(src + (size_t)t * ld + c);
            *reinterpret_cast<uint4 *>(d) = v;
        } else {
#pragma unroll
            for (int e = 0; e < 8; e++)
                d[e] = (t < T && c + e < HS) ? src[(size_t)t * ld + c + e] : zero;
        }
    }
}

/* ------------------------------------------------------------------ forward */

/* grid (B*NH, ceil(T/64)), block 128. out (B,T,NH*HS) bf16, lse (B,NH,T) fp32,
 * qkv (B,T,W) bf16. */
template <int HSP>
__global__ void __launch_bounds__(ATT_FWD_THREADS)
    attention_forward_kernel(floatX *out, float *lse, const floatX *qkv, const int *doc_start,
                             int T, int NH, int KVH, int HS, float scale, bool vec) {
    typedef AttGeom<HSP> G;
    extern __shared__ __align__(128) unsigned char att_smem[];
    floatX *Qs = reinterpret_cast<floatX *>(att_smem);                /* (64, LDH) */
    floatX *Ks = Qs + ATT_TILE * G::LDH;                                /* (64, LDH) */
    floatX *Vs = Ks + ATT_TILE * G::LDH;                                /* (64, LDH) */
    float *Ss = reinterpret_cast<float *>(Vs + ATT_TILE * G::LDH);      /* (64, LDS) */
    floatX *Ps = reinterpret_cast<floatX *>(Ss + ATT_TILE * G::LDS);    /* (64, LDP) */
    float *Os = reinterpret_cast<float *>(Ps + ATT_TILE * G::LDP);      /* (64, LDO) */

    const int bh = blockIdx.x, b = bh / NH, h = bh % NH, g = h / (NH / KVH);
    const int qb = gridDim.y - 1 - blockIdx.y; /* last (heaviest) query tiles first */
    const int q0 = qb * ATT_TILE;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const size_t ld = (size_t)(NH + 2 * KVH) * HS, ldo = (size_t)NH * HS;
    const floatX *row0 = qkv + (size_t)b * T * ld;
    const floatX *q = row0 + (size_t)h * HS;             /* (T,HS), ld W */
    const floatX *k = row0 + (size_t)(NH + g) * HS;       /* (T,HS), ld W */
    const floatX *v = row0 + (size_t)(NH + KVH + g) * HS; /* (T,HS), ld W */
    const int *ds = doc_start ? doc_start + (size_t)b * T : nullptr; /* (T) or none */
    const int kb_first = ds ? ds[q0] / ATT_TILE : 0; /* the tile's smallest start */

    load_head_tile<HSP, ATT_FWD_THREADS>(Qs, q, ld, q0, T, HS, vec);
    for (int i = threadIdx.x; i < ATT_TILE * G::LDO; i += ATT_FWD_THREADS) Os[i] = 0.0f;

    /* online-softmax state of row warp*16 + r lives in lane r (r < 16) */
    float m_own = -INFINITY, l_own = 0.0f;
    const int strip = warp * 16; /* this warp's first row in the tile */

    for (int kb = kb_first; kb <= qb; kb++) {
        const int k0 = kb * ATT_TILE;
        __syncthreads(); /* all warps are done with the previous K, V */
        load_head_tile<HSP, ATT_FWD_THREADS>(Ks, k, ld, k0, T, HS, vec);
        load_head_tile<HSP, ATT_FWD_THREADS>(Vs, v, ld, k0, T, HS, vec);
        __syncthreads();

        /* S[strip:strip+16, 0:64] = Q[strip:strip+16, :] K^T (unscaled) */
        {
            FragAcc acc[ATT_TILE / 16];
#pragma unroll
            for (int n = 0; n < ATT_TILE / 16; n++) wmma::fill_fragment(acc[n], 0.0f);
#pragma unroll
            for (int kk = 0; kk < G::NF; kk++) {
                FragARow a;
                wmma::load_matrix_sync(a, Qs + strip * G::LDH + kk * 16, G::LDH);
#pragma unroll
                for (int n = 0; n < ATT_TILE / 16; n++) {
                    /* K^T as a col-major (HSP, 64) matrix: element (d, j) at Ks[j*LDH + d] */
                    FragBCol bk;
                    wmma::load_matrix_sync(bk, Ks + n * 16 * G::LDH + kk * 16, G::LDH);
                    wmma::mma_sync(acc[n], a, bk, acc[n]);
                }
            }
#pragma unroll
            for (int n = 0; n < ATT_TILE / 16; n++)
                wmma::store_matrix_sync(Ss + strip * G::LDS + n * 16, acc[n], G::LDS,
                                        wmma::mem_row_major);
        }
        __syncwarp();

        /* online softmax over this warp's 16 rows; lane covers keys lane, lane+32 */
        for (int r = 0; r < 16; r++) {
            const int row = strip + r, i = q0 + row;
            const int j0 = k0 + lane, j1 = j0 + 32;
            const int start = ds && i < T ? ds[i] : 0; /* the row's first visible key */
            const float *srow = Ss + row * G::LDS;
            float s0 = j0 <= i && j0 >= start ? srow[lane] * scale : -INFINITY;
            float s1 = j1 <= i && j1 >= start ? srow[lane + 32] * scale : -INFINITY;
            float m_old = __shfl_sync(FULL_MASK, m_own, r);
            float l_old = __shfl_sync(FULL_MASK, l_own, r);
            float m_new = fmaxf(m_old, warp_max(fmaxf(s0, s1)));
            /* m_new is -inf only for a row whose example starts in a later key
             * tile (packed rows, see the file comment): the guard makes its P and
             * alpha 0 instead of exp(-inf - -inf) = NaN */
            float m_ref = m_new == -INFINITY ? 0.0f : m_new;
            float p0 = expf(s0 - m_ref), p1 = expf(s1 - m_ref);
            float alpha = expf(m_old - m_ref); /* 0 on the first tile (m_old = -inf) */
            float rowsum = warp_sum(p0 + p1);
            floatX *prow = Ps + row * G::LDP;
            prow[lane] = __float2bfloat16_rn(p0);
            prow[lane + 32] = __float2bfloat16_rn(p1);
            float *orow = Os + row * G::LDO;
            for (int c = lane; c < HSP; c += 32) orow[c] *= alpha;
            if (lane == r) {
                m_own = m_new;
                l_own = alpha * l_old + rowsum;
            }
        }
        __syncwarp();

        /* O[strip:strip+16, :] += P[strip:strip+16, 0:64] V (64, HSP) */
#pragma unroll
        for (int d = 0; d < G::NF; d++) {
            FragAcc acc;
            wmma::load_matrix_sync(acc, Os + strip * G::LDO + d * 16, G::LDO, wmma::mem_row_major);
#pragma unroll
            for (int kk = 0; kk < ATT_TILE / 16; kk++) {
                FragARow a;
                FragBRow bv;
                wmma::load_matrix_sync(a, Ps + strip * G::LDP + kk * 16, G::LDP);
                wmma::load_matrix_sync(bv, Vs + kk * 16 * G::LDH + d * 16, G::LDH);
                wmma::mma_sync(acc, a, bv, acc);
            }
            wmma::store_matrix_sync(Os + strip * G::LDO + d * 16, acc, G::LDO,
                                    wmma::mem_row_major);
        }
    }
    __syncwarp();

    /* out rows = O / l (bf16), lse = m + log(l); rows i >= T are not stored */
    for (int r = 0; r < 16; r++) {
        const int row = strip + r, i = q0 + row;
        float m_row = __shfl_sync(FULL_MASK, m_own, r);
        float l_row = __shfl_sync(FULL_MASK, l_own, r);
        if (i >= T) continue; /* uniform across the warp */
        float inv_l = 1.0f / l_row;
        floatX *orow = out + ((size_t)b * T + i) * ldo + (size_t)h * HS; /* (HS) */
        for (int c = lane; c < HS; c += 32)
            orow[c] = __float2bfloat16_rn(Os[row * G::LDO + c] * inv_l);
        if (lane == 0) lse[(size_t)bh * T + i] = m_row + logf(l_row);
    }
}

/* ----------------------------------------------------------------- backward */

/* D[b,h,i] = sum_d dout[b,i,h*HS+d] * out[b,i,h*HS+d]; one warp per (b,h,i).
 * D (B,NH,T) fp32; dout, out (B,T,NH*HS) bf16. */
__global__ static void attention_row_dot_kernel(float *D, const floatX *dout, const floatX *out,
                                                int B, int T, int NH, int HS) {
    size_t row = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    if (row >= (size_t)B * NH * T) return; /* whole warps leave together */
    int i = (int)(row % T);
    size_t bh = row / T;
    int b = (int)(bh / NH), h = (int)(bh % NH);
    size_t base = ((size_t)b * T + i) * NH * HS + (size_t)h * HS;
    float s = 0.0f;
    for (int c = lane; c < HS; c += 32)
        s += __bfloat162float(dout[base + c]) * __bfloat162float(out[base + c]);
    s = warp_sum(s);
    if (lane == 0) D[row] = s;
}

/* Adds the (64, HS) fp32 tile src (stride LDO) into the rows r0.. of a (T, HS)
 * bf16 head slice dst with row stride ld, rows t >= T skipped. */
template <int HSP>
static __device__ __forceinline__ void add_tile_to_bf16(floatX *dst, size_t ld, const float *src,
                                                        int r0, int T, int HS) {
    for (int idx = threadIdx.x; idx < ATT_TILE * HS; idx += ATT_BWD_THREADS) {
        int r = idx / HS, c = idx % HS;
        if (r0 + r >= T) continue;
        floatX *p = dst + (size_t)(r0 + r) * ld + c;
        *p = __float2bfloat16_rn(__bfloat162float(*p) + src[r * AttGeom<HSP>::LDO + c]);
    }
}

/* lse_s, D_s (64) = lse, D of queries q0..q0+63 (zero for rows t >= T). */
static __device__ __forceinline__ void load_row_stats(float *lse_s, float *D_s, const float *lse_bh,
                                                      const float *D_bh, int q0, int T) {
    if (threadIdx.x < ATT_TILE) {
        int i = q0 + threadIdx.x;
        lse_s[threadIdx.x] = i < T ? lse_bh[i] : 0.0f;
        D_s[threadIdx.x] = i < T ? D_bh[i] : 0.0f;
    }
}

/* Both backward kernels, 8 warps: warps 0-3 compute S = Q K^T, warps 4-7
 * dP = dO V^T (fp32, unscaled), each warp rows strip..strip+15 of the 64 x 64
 * tile, strip = (warp % 4) * 16. */
template <int HSP>
static __device__ __forceinline__ void bwd_scores(float *Ss, float *dPs, const floatX *Qs,
                                                  const floatX *dOs, const floatX *Ks,
                                                  const floatX *Vs) {
    typedef AttGeom<HSP> G;
    const int warp = threadIdx.x / 32, strip = (warp & 3) * 16;
    const bool low = warp < 4;
    const floatX *A = low ? Qs : dOs;
    const floatX *Bm = low ? Ks : Vs;
    float *dst = low ? Ss : dPs;
    FragAcc acc[ATT_TILE / 16];
#pragma unroll
    for (int n = 0; n < ATT_TILE / 16; n++) wmma::fill_fragment(acc[n], 0.0f);
    /* not unrolled: unrolling hoists every fragment load and spills at 128
     * registers (the limit for 2 blocks of 256 threads per SM) */
#pragma unroll 1
    for (int kk = 0; kk < G::NF; kk++) {
        FragARow a;
        wmma::load_matrix_sync(a, A + strip * G::LDH + kk * 16, G::LDH);
#pragma unroll
        for (int n = 0; n < ATT_TILE / 16; n++) {
            FragBCol bt; /* K^T or V^T: element (d, j) at Bm[j*LDH + d] */
            wmma::load_matrix_sync(bt, Bm + n * 16 * G::LDH + kk * 16, G::LDH);
            wmma::mma_sync(acc[n], a, bt, acc[n]);
        }
    }
#pragma unroll
    for (int n = 0; n < ATT_TILE / 16; n++)
        wmma::store_matrix_sync(dst + strip * G::LDS + n * 16, acc[n], G::LDS,
                                wmma::mem_row_major);
}

/* Both backward kernels: P = exp(scale S - lse) and dS = scale P (dP - D) as
 * bf16, zero where masked (key j > query i, or j < ds[i] in a packed row; ds
 * is the row's doc_start or null) and on padding rows i >= T, for
 * the tile of queries q0.. and keys k0..; P is stored only when STORE_P (the
 * dQ kernel needs dS alone). Same code in both, so both see the same dS. */
template <int HSP, bool STORE_P>
static __device__ __forceinline__ void bwd_probs(floatX *Ps, floatX *dSs, const float *Ss,
                                                 const float *dPs, const float *lse_s,
                                                 const float *D_s, const int *ds, int q0, int k0,
                                                 int T, float scale) {
    typedef AttGeom<HSP> G;
    for (int idx = threadIdx.x; idx < ATT_TILE * ATT_TILE; idx += ATT_BWD_THREADS) {
        int r = idx / ATT_TILE, c = idx % ATT_TILE;
        int i = q0 + r, j = k0 + c;
        float p = 0.0f;
        if (i < T && j <= i && (!ds || j >= ds[i]))
            p = expf(Ss[r * G::LDS + c] * scale - lse_s[r]);
        float ds = scale * p * (dPs[r * G::LDS + c] - D_s[r]);
        if (STORE_P) Ps[r * G::LDP + c] = __float2bfloat16_rn(p);
        dSs[r * G::LDP + c] = __float2bfloat16_rn(ds);
    }
}

/* dK and dV. grid (B*KVH, ceil(T/64)), block 256. dqkv (B,T,W) bf16 (k and v
 * heads +=), dout (B,T,NH*HS) bf16, qkv (B,T,W) bf16, lse and D (B,NH,T) fp32.
 * The block sums the query heads of its kv head's group, in head order. */
template <int HSP>
/* HSP <= 64: at most 128 registers, so two blocks (16 warps) share an SM as
 * their shared memory allows on the H100 */
__global__ void __launch_bounds__(ATT_BWD_THREADS, HSP <= 64 ? 2 : 1)
    attention_backward_kernel(floatX *dqkv, const floatX *dout, const floatX *qkv,
                              const float *lse, const float *D, const int *doc_start, int T,
                              int NH, int KVH, int HS, float scale, bool vec) {
    typedef AttGeom<HSP> G;
    extern __shared__ __align__(128) unsigned char att_smem[];
    floatX *Ks = reinterpret_cast<floatX *>(att_smem);                /* (64, LDH) */
    floatX *Vs = Ks + ATT_TILE * G::LDH;                                /* (64, LDH) */
    floatX *Qs = Vs + ATT_TILE * G::LDH;                                /* (64, LDH) */
    floatX *dOs = Qs + ATT_TILE * G::LDH;                               /* (64, LDH) */
    float *Ss = reinterpret_cast<float *>(dOs + ATT_TILE * G::LDH);     /* (64, LDS) */
    float *dPs = Ss + ATT_TILE * G::LDS;                                /* (64, LDS) */
    floatX *Ps = reinterpret_cast<floatX *>(dPs + ATT_TILE * G::LDS);   /* (64, LDP) */
    floatX *dSs = Ps + ATT_TILE * G::LDP;                               /* (64, LDP) */
    float *lse_s = reinterpret_cast<float *>(dSs + ATT_TILE * G::LDP);  /* (64) */
    float *D_s = lse_s + ATT_TILE;                                      /* (64) */
    float *Xs = Ss; /* (64, LDO) dK/dV at the end, over S and dP (see AttGeom) */

    const int bg = blockIdx.x, b = bg / KVH, g = bg % KVH, group = NH / KVH;
    const int kb = blockIdx.y; /* key tile; low kb has the most query tiles, launched first */
    const int k0 = kb * ATT_TILE;
    const int n_tiles = (T + ATT_TILE - 1) / ATT_TILE;
    const int warp = threadIdx.x / 32;
    const int strip = (warp & 3) * 16; /* 16-row strip of a 64-row tile */
    const bool low = warp < 4;         /* warps 0-3: dV, warps 4-7: dK */
    const size_t ld = (size_t)(NH + 2 * KVH) * HS, ldo = (size_t)NH * HS;
    const floatX *row0 = qkv + (size_t)b * T * ld;
    const floatX *k = row0 + (size_t)(NH + g) * HS;       /* (T,HS), ld W */
    const floatX *v = row0 + (size_t)(NH + KVH + g) * HS; /* (T,HS), ld W */
    const int *ds = doc_start ? doc_start + (size_t)b * T : nullptr; /* (T) or none */

    load_head_tile<HSP, ATT_BWD_THREADS>(Ks, k, ld, k0, T, HS, vec);
    load_head_tile<HSP, ATT_BWD_THREADS>(Vs, v, ld, k0, T, HS, vec);

    /* warps 0-3: dV rows strip..strip+15; warps 4-7: dK rows strip..strip+15 */
    FragAcc acc_kv[G::NF];
#pragma unroll
    for (int d = 0; d < G::NF; d++) wmma::fill_fragment(acc_kv[d], 0.0f);

    /* the group's query heads in order, each over its query tiles qb >= kb */
    for (int h = g * group; h < (g + 1) * group; h++) {
        const floatX *q = row0 + (size_t)h * HS;                          /* (T,HS), ld W */
        const floatX *dO = dout + (size_t)b * T * ldo + (size_t)h * HS;   /* (T,HS), ld NH*HS */
        const float *lse_bh = lse + ((size_t)b * NH + h) * T;             /* (T) */
        const float *D_bh = D + ((size_t)b * NH + h) * T;                 /* (T) */
        for (int qb = kb; qb < n_tiles; qb++) {
            const int q0 = qb * ATT_TILE;
            /* every row of this and later query tiles starts after the key tile
             * (packed rows); the same value in every thread, so all leave */
            if (ds && ds[q0] >= k0 + ATT_TILE) break;
            __syncthreads(); /* the previous tile's Q, dO, P and dS are no longer read */
            load_head_tile<HSP, ATT_BWD_THREADS>(Qs, q, ld, q0, T, HS, vec);
            load_head_tile<HSP, ATT_BWD_THREADS>(dOs, dO, ldo, q0, T, HS, vec);
            load_row_stats(lse_s, D_s, lse_bh, D_bh, q0, T);
            __syncthreads();
            bwd_scores<HSP>(Ss, dPs, Qs, dOs, Ks, Vs);
            __syncthreads();
            bwd_probs<HSP, true>(Ps, dSs, Ss, dPs, lse_s, D_s, ds, q0, k0, T, scale);
            __syncthreads();

            /* warps 0-3: dV[strip rows] += P^T dO; warps 4-7: dK[strip rows] += dS^T Q.
             * P^T (keys, queries) read col-major from P (queries, keys): element
             * (j, i) at Ps[i*LDP + j]; the 16x16 block at (strip, kk*16) starts at
             * Ps + kk*16*LDP + strip. */
            const floatX *At = low ? Ps : dSs;
            const floatX *Bm = low ? dOs : Qs;
#pragma unroll 1 /* as in bwd_scores: register pressure */
            for (int kk = 0; kk < ATT_TILE / 16; kk++) {
                FragACol a;
                wmma::load_matrix_sync(a, At + kk * 16 * G::LDP + strip, G::LDP);
#pragma unroll
                for (int d = 0; d < G::NF; d++) {
                    FragBRow bm;
                    wmma::load_matrix_sync(bm, Bm + kk * 16 * G::LDH + d * 16, G::LDH);
                    wmma::mma_sync(acc_kv[d], a, bm, acc_kv[d]);
                }
            }
        }
    }

    /* dV then dK through Xs into dqkv (+=); each key row belongs to this block only */
    floatX *dk = dqkv + (size_t)b * T * ld + (size_t)(NH + g) * HS; /* (T,HS), ld W */
    floatX *dv = dk + (size_t)KVH * HS;                              /* (T,HS), ld W */
    for (int pass = 0; pass < 2; pass++) {
        __syncthreads(); /* Xs is free (S and dP of the loop, or the previous pass, are done) */
        if (low == (pass == 0)) {
#pragma unroll
            for (int d = 0; d < G::NF; d++)
                wmma::store_matrix_sync(Xs + strip * G::LDO + d * 16, acc_kv[d], G::LDO,
                                        wmma::mem_row_major);
        }
        __syncthreads();
        add_tile_to_bf16<HSP>(pass == 0 ? dv : dk, ld, Xs, k0, T, HS);
    }
}

/* dQ. grid (B*NH, ceil(T/64)), block 256; dqkv (B,T,W) bf16 (q heads +=), the
 * rest as above; query head h reads the K, V of its kv head. The block owns
 * the dQ rows of its query tile qb and sums the key tiles 0..qb in that fixed
 * order, in wmma accumulators: no atomics, so dQ is bitwise reproducible.
 * Warp w holds dQ rows strip..strip+15, column blocks (w/4) + 2u (u < NU); at
 * HSP = 16 warps 4-7 hold none. */
template <int HSP>
__global__ void __launch_bounds__(ATT_BWD_THREADS, 2)
    attention_backward_dq_kernel(floatX *dqkv, const floatX *dout, const floatX *qkv,
                                 const float *lse, const float *D, const int *doc_start, int T,
                                 int NH, int KVH, int HS, float scale, bool vec) {
    typedef AttGeom<HSP> G;
    constexpr int NU = (G::NF + 1) / 2;
    extern __shared__ __align__(128) unsigned char att_smem[];
    floatX *Qs = reinterpret_cast<floatX *>(att_smem);                /* (64, LDH) */
    floatX *dOs = Qs + ATT_TILE * G::LDH;                               /* (64, LDH) */
    floatX *Ks = dOs + ATT_TILE * G::LDH;                               /* (64, LDH) */
    floatX *Vs = Ks + ATT_TILE * G::LDH;                                /* (64, LDH) */
    float *Ss = reinterpret_cast<float *>(Vs + ATT_TILE * G::LDH);      /* (64, LDS) */
    float *dPs = Ss + ATT_TILE * G::LDS;                                /* (64, LDS) */
    floatX *dSs = reinterpret_cast<floatX *>(dPs + ATT_TILE * G::LDS);  /* (64, LDP) */
    float *lse_s = reinterpret_cast<float *>(dSs + ATT_TILE * G::LDP);  /* (64) */
    float *D_s = lse_s + ATT_TILE;                                      /* (64) */
    float *Xs = Ss; /* (64, LDO) dQ at the end, over S and dP (see AttGeom) */

    const int bh = blockIdx.x, b = bh / NH, h = bh % NH, g = h / (NH / KVH);
    const int qb = gridDim.y - 1 - blockIdx.y; /* last (heaviest) query tiles first */
    const int q0 = qb * ATT_TILE;
    const int warp = threadIdx.x / 32;
    const int strip = (warp & 3) * 16; /* 16-row strip of a 64-row tile */
    const size_t ld = (size_t)(NH + 2 * KVH) * HS, ldo = (size_t)NH * HS;
    const floatX *row0 = qkv + (size_t)b * T * ld;
    const floatX *q = row0 + (size_t)h * HS;                          /* (T,HS), ld W */
    const floatX *k = row0 + (size_t)(NH + g) * HS;                   /* (T,HS), ld W */
    const floatX *v = row0 + (size_t)(NH + KVH + g) * HS;             /* (T,HS), ld W */
    const floatX *dO = dout + (size_t)b * T * ldo + (size_t)h * HS;   /* (T,HS), ld NH*HS */
    const int *ds = doc_start ? doc_start + (size_t)b * T : nullptr; /* (T) or none */
    const int kb_first = ds ? ds[q0] / ATT_TILE : 0; /* the tile's smallest start */

    load_head_tile<HSP, ATT_BWD_THREADS>(Qs, q, ld, q0, T, HS, vec);
    load_head_tile<HSP, ATT_BWD_THREADS>(dOs, dO, ldo, q0, T, HS, vec);
    load_row_stats(lse_s, D_s, lse + (size_t)bh * T, D + (size_t)bh * T, q0, T);

    FragAcc acc_dq[NU];
#pragma unroll
    for (int u = 0; u < NU; u++) wmma::fill_fragment(acc_dq[u], 0.0f);

    for (int kb = kb_first; kb <= qb; kb++) {
        const int k0 = kb * ATT_TILE;
        __syncthreads(); /* the previous tile's K and dS are no longer read */
        load_head_tile<HSP, ATT_BWD_THREADS>(Ks, k, ld, k0, T, HS, vec);
        load_head_tile<HSP, ATT_BWD_THREADS>(Vs, v, ld, k0, T, HS, vec);
        __syncthreads();
        bwd_scores<HSP>(Ss, dPs, Qs, dOs, Ks, Vs);
        __syncthreads();
        bwd_probs<HSP, false>(nullptr, dSs, Ss, dPs, lse_s, D_s, ds, q0, k0, T, scale);
        __syncthreads();

        /* dQ[strip rows, column blocks of this warp] += dS[strip rows, 0:64] K (64, HSP) */
#pragma unroll
        for (int kk = 0; kk < ATT_TILE / 16; kk++) {
            FragARow a;
            wmma::load_matrix_sync(a, dSs + strip * G::LDP + kk * 16, G::LDP);
#pragma unroll
            for (int u = 0; u < NU; u++) {
                const int cf = ((warp >> 2) + 2 * u) * 16; /* warp-uniform */
                if (cf >= HSP) continue;
                FragBRow bk;
                wmma::load_matrix_sync(bk, Ks + kk * 16 * G::LDH + cf, G::LDH);
                wmma::mma_sync(acc_dq[u], a, bk, acc_dq[u]);
            }
        }
    }

    __syncthreads(); /* S and dP are no longer read: Xs takes their place */
#pragma unroll
    for (int u = 0; u < NU; u++) {
        const int cf = ((warp >> 2) + 2 * u) * 16;
        if (cf < HSP)
            wmma::store_matrix_sync(Xs + strip * G::LDO + cf, acc_dq[u], G::LDO,
                                    wmma::mem_row_major);
    }
    __syncthreads();
    add_tile_to_bf16<HSP>(dqkv + (size_t)b * T * ld + (size_t)h * HS, ld, Xs, q0, T, HS);
}

/* ------------------------------------------------------------------- host */

/* Checks the shapes and returns the padded tile width HSP for head size HS. */
static int attention_tile_width(const char *fn, int B, int T, int NH, int KVH, int HS) {
    if (B < 0 || T < 0 || NH <= 0 || KVH <= 0 || HS <= 0 || NH % KVH != 0) {
        fprintf(stderr,
                "retort: %s: bad shape B=%d T=%d NH=%d KVH=%d HS=%d (need positive head "
                "counts and size, and NH a multiple of KVH)\n",
                fn, B, T, NH, KVH, HS);
        exit(1);
    }
    if (HS > ATT_MAX_HS) {
        fprintf(stderr,
                "retort: %s: head size %d is not supported; the CUDA attention kernels "
                "handle head sizes up to %d — use a model with smaller heads, or the CPU\n",
                fn, HS, ATT_MAX_HS);
        exit(1);
    }
    if ((long)ceil_div(T, ATT_TILE) > CUDA_MAX_GRID_Y) {
        fprintf(stderr,
                "retort: %s: T=%d needs more than %d query tiles of %d (the grid's y limit); "
                "use shorter sequences\n",
                fn, T, CUDA_MAX_GRID_Y, ATT_TILE);
        exit(1);
    }
    return HS <= 16 ? 16 : HS <= 32 ? 32 : HS <= 64 ? 64 : 128;
}

/* Whole 16-byte chunks are safe when HS % 8 == 0 (then the row strides W and
 * NH*HS are too) and the buffers start 16-byte aligned (the model carves
 * 64-byte aligned slices). */
static bool attention_vec_ok(int HS, const void *a, const void *b) {
    return HS % 8 == 0 && (uintptr_t)a % 16 == 0 && (uintptr_t)b % 16 == 0;
}

/* Raises the kernel's dynamic shared-memory limit once per template instance,
 * after checking that the device offers that much per block. */
static void attention_set_smem(const void *kernel, size_t bytes, const char *fn, int HSP,
                               bool *done) {
    if (*done) return;
    int dev = 0, optin = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    if (bytes > (size_t)optin) {
        fprintf(stderr,
                "retort: %s: tile width %d needs %zu bytes of shared memory per block, the "
                "device offers %d; use a smaller head size\n",
                fn, HSP, bytes, optin);
        exit(1);
    }
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    (int)bytes));
    *done = true;
}

template <int HSP>
static void attention_forward_launch(floatX *out, float *lse, const floatX *qkv,
                                     const int *doc_start, int B, int T, int NH, int KVH, int HS,
                                     float scale, bool vec) {
    static bool smem_set = false;
    const size_t smem = AttGeom<HSP>::FWD_SMEM;
    attention_set_smem((const void *)attention_forward_kernel<HSP>, smem,
                       "attention_forward_cuda", HSP, &smem_set);
    dim3 grid((unsigned)(B * NH), (unsigned)ceil_div(T, ATT_TILE));
    attention_forward_kernel<HSP><<<grid, ATT_FWD_THREADS, smem, retort_stream>>>(
        out, lse, qkv, doc_start, T, NH, KVH, HS, scale, vec);
    CUDA_LAUNCH_CHECK();
}

template <int HSP>
static void attention_backward_launch(floatX *dqkv, const floatX *dout, const floatX *qkv,
                                      const float *lse, const float *D, const int *doc_start,
                                      int B, int T, int NH, int KVH, int HS, float scale,
                                      bool vec) {
    static bool smem_set = false, dq_smem_set = false;
    const size_t smem = AttGeom<HSP>::BWD_SMEM, dq_smem = AttGeom<HSP>::DQ_SMEM;
    attention_set_smem((const void *)attention_backward_kernel<HSP>, smem,
                       "attention_backward_cuda", HSP, &smem_set);
    attention_set_smem((const void *)attention_backward_dq_kernel<HSP>, dq_smem,
                       "attention_backward_cuda", HSP, &dq_smem_set);
    /* dK/dV: one block per kv head and key tile; dQ: one per query head and query tile */
    dim3 kv_grid((unsigned)(B * KVH), (unsigned)ceil_div(T, ATT_TILE));
    attention_backward_kernel<HSP><<<kv_grid, ATT_BWD_THREADS, smem, retort_stream>>>(
        dqkv, dout, qkv, lse, D, doc_start, T, NH, KVH, HS, scale, vec);
    CUDA_LAUNCH_CHECK();
    dim3 q_grid((unsigned)(B * NH), (unsigned)ceil_div(T, ATT_TILE));
    attention_backward_dq_kernel<HSP><<<q_grid, ATT_BWD_THREADS, dq_smem, retort_stream>>>(
        dqkv, dout, qkv, lse, D, doc_start, T, NH, KVH, HS, scale, vec);
    CUDA_LAUNCH_CHECK();
}

extern "C" void attention_forward_cuda(float *out, float *lse, const float *qkv,
                                       const int *doc_start, int B, int T, int NH, int KVH,
                                       int HS, float scale) {
    int HSP = attention_tile_width("attention_forward_cuda", B, T, NH, KVH, HS);
    if (B == 0 || T == 0) return;
    floatX *o = reinterpret_cast<floatX *>(out);
    const floatX *x = reinterpret_cast<const floatX *>(qkv);
    bool vec = attention_vec_ok(HS, qkv, qkv);
    switch (HSP) {
    case 16:
        attention_forward_launch<16>(o, lse, x, doc_start, B, T, NH, KVH, HS, scale, vec);
        break;
    case 32:
        attention_forward_launch<32>(o, lse, x, doc_start, B, T, NH, KVH, HS, scale, vec);
        break;
    case 64:
        attention_forward_launch<64>(o, lse, x, doc_start, B, T, NH, KVH, HS, scale, vec);
        break;
    default:
        attention_forward_launch<128>(o, lse, x, doc_start, B, T, NH, KVH, HS, scale, vec);
        break;
    }
}

extern "C" void attention_backward_cuda(float *dqkv, const float *dout, const float *qkv,
                                        const float *out, const float *lse, const int *doc_start,
                                        int B, int T, int NH, int KVH, int HS, float scale) {
    int HSP = attention_tile_width("attention_backward_cuda", B, T, NH, KVH, HS);
    if (B == 0 || T == 0) return;
    size_t N = (size_t)B * T;
    /* (B,NH,T) fp32, the backend's workspace: grown when a call needs more */
    float *D = (float *)workspace_reserve(WS_ATTENTION_ROW_DOT, N * NH * sizeof(float));
    floatX *dx = reinterpret_cast<floatX *>(dqkv);
    const floatX *dO = reinterpret_cast<const floatX *>(dout);
    const floatX *x = reinterpret_cast<const floatX *>(qkv);
    const floatX *o = reinterpret_cast<const floatX *>(out);

    {
        const int threads = 256; /* 8 rows per block, one warp each */
        size_t rows = N * NH;
        attention_row_dot_kernel<<<(unsigned)((rows * 32 + threads - 1) / threads), threads, 0,
                                   retort_stream>>>(D, dO, o, B, T, NH, HS);
        CUDA_LAUNCH_CHECK();
    }
    bool vec = attention_vec_ok(HS, qkv, dout);
    switch (HSP) {
    case 16:
        attention_backward_launch<16>(dx, dO, x, lse, D, doc_start, B, T, NH, KVH, HS,
                                        scale, vec);
        break;
    case 32:
        attention_backward_launch<32>(dx, dO, x, lse, D, doc_start, B, T, NH, KVH, HS,
                                        scale, vec);
        break;
    case 64:
        attention_backward_launch<64>(dx, dO, x, lse, D, doc_start, B, T, NH, KVH, HS,
                                        scale, vec);
        break;
    default:
        attention_backward_launch<128>(dx, dO, x, lse, D, doc_start, B, T, NH, KVH, HS, scale,
                                       vec);
        break;
    }
}
