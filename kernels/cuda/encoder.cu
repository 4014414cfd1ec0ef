/* kernels/cuda/encoder.cu — token + position embedding on bf16 tensors and its
 * deterministic backward; the twin of kernels/cpu/encoder.c.
 *
 * Forward is a gather, out[b,t,:] = wte[inp[b,t],:] + wpe[p,:] with p = pos[b,t]
 * (packed rows) or t (pos NULL), summed in fp32
 * and rounded once (wpe NULL, the Llama families: the wte row is copied);
 * 16-byte loads (8 channels per thread) when C % 8 == 0 and the tensors are
 * aligned, one channel per thread otherwise. The kernels do
 * not bound-check ids (they do not know V): the model checks every id against
 * [0, V) on the host before it uploads them (model/model.c stage_ids), so no
 * id read here lies outside wte.
 *
 * The weight gradients dwte and dwpe are fp32 (model/backend.h), dout is bf16.
 *
 * Backward, dwpe: one thread per (t, channel chunk) sums dout over b in order
 * and adds the sum into the fp32 dwpe row. With positions (packed rows) many
 * (b,t) share a position, so dwpe is then the same grouped scatter as dwte
 * below, grouped by position over the host copy pos_host.
 *
 * Backward, dwte: a scatter-add where many (b,t) share one token id. Atomics
 * would make the sum order (and so the bits) change from run to run, so
 * instead the positions are grouped by token id with a counting sort ON THE HOST:
 * one pass over the B*T ids builds, for every distinct id in increasing order,
 * the list of its positions in increasing order. That list goes up in one
 * asynchronous copy, and a kernel with one block per distinct id sums its
 * positions' dout rows in that fixed order in fp32 (threads split the
 * channels), then adds the sum to the fp32 dwte row.
 * The ids come from the caller's host copy (inp_host; the model keeps the ids
 * of its last forward) whenever it passes one: then there is no download and
 * no stream synchronisation, only O(B*T + max id) host work and a 4*(B*T + 2
 * n_ids + 1)-byte upload. Without it (inp_host NULL) the ids are first copied
 * down from inp and the stream synchronised: one host round trip per call.
 * Either way the gradients are bit-for-bit reproducible. A very frequent id
 * (padding) makes its block loop long; the loop issues four row loads at a
 * time to hide latency but keeps the add order.
 *
 * The host buffers (pinned) and the device list buffer are workspaces of the
 * backend (kernels/cuda/workspace.cuh), cached and grown only. The pinned list
 * buffer feeds an asynchronous upload, so the next call waits for that copy
 * before rewriting it (it finished long before in practice: a whole training
 * step lies in between).
 */
#include <string.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/cuda/reduce.cuh"
#include "kernels/cuda/workspace.cuh"

#define ELEMENTWISE_BLOCK 256
#define DWTE_THREADS 256 /* most threads of a per-id block */

/* ---- forward ---- */

/* VEC: item u = (bt, chunk of 8 channels); scalar: item u = (bt, channel). */
template <bool VEC>
__global__ static void encoder_forward_kernel(floatX *out, const int *inp, const floatX *wte,
                                              const floatX *wpe, const int *pos_ids, int B, int T,
                                              int C) {
    const int width = VEC ? VEC_WIDTH : 1;
    int chunks = C / width; /* per row */
    size_t n_items = (size_t)B * T * chunks;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t u = (size_t)blockIdx.x * blockDim.x + threadIdx.x; u < n_items; u += stride) {
        size_t bt = u / chunks;
        int c = (int)(u % chunks) * width;
        int t = pos_ids ? pos_ids[bt] : (int)(bt % T);
        const floatX *tok = wte + (size_t)inp[bt] * C + c; /* (width) */
        floatX *o = out + bt * C + c;                      /* (width) */
        if (!wpe) { /* no learned positions: a plain gather */
            if constexpr (VEC)
                *reinterpret_cast<uint4 *>(o) = *reinterpret_cast<const uint4 *>(tok);
            else
                *o = *tok;
            continue;
        }
        const floatX *pos = wpe + (size_t)t * C + c; /* (width) */
        if constexpr (VEC) {
            float a[VEC_WIDTH], b[VEC_WIDTH];
            load8(tok, a);
            load8(pos, b);
#pragma unroll
            for (int e = 0; e < VEC_WIDTH; e++) a[e] += b[e];
            store8(o, a);
        } else {
            *o = float_to_bf16(bf16_to_float(*tok) + bf16_to_float(*pos));
        }
    }
}

extern "C" void encoder_forward_cuda(float *out_f, const int *inp, const float *wte_f,
                                     const float *wpe_f, const int *pos, int B, int T, int C) {
    if (B <= 0 || T <= 0 || C <= 0) return;
    floatX *out = reinterpret_cast<floatX *>(out_f);           /* (B,T,C) */
    const floatX *wte = reinterpret_cast<const floatX *>(wte_f); /* (V,C) */
    const floatX *wpe = reinterpret_cast<const floatX *>(wpe_f); /* (maxT,C) or NULL */
    /* inp (B,T) int32 */
    bool vec = C % VEC_WIDTH == 0 && aligned16(out) && aligned16(wte) && aligned16(wpe);
    size_t n_items = (size_t)B * T * (vec ? C / VEC_WIDTH : C);
    int grid = grid_for(n_items, ELEMENTWISE_BLOCK);
    if (vec)
        encoder_forward_kernel<true><<<grid, ELEMENTWISE_BLOCK, 0, retort_stream>>>(
            out, inp, wte, wpe, pos, B, T, C);
    else
        encoder_forward_kernel<false><<<grid, ELEMENTWISE_BLOCK, 0, retort_stream>>>(
            out, inp, wte, wpe, pos, B, T, C);
    CUDA_LAUNCH_CHECK();
}

/* ---- backward: dwpe ---- */

/* p[0..7] += a[0..7] on fp32 memory; p must be 16-byte aligned */
static __device__ __forceinline__ void add8_f32(float *p, const float a[VEC_WIDTH]) {
    float4 *q = reinterpret_cast<float4 *>(p);
    float4 lo = q[0], hi = q[1];
    lo.x += a[0];
    lo.y += a[1];
    lo.z += a[2];
    lo.w += a[3];
    hi.x += a[4];
    hi.y += a[5];
    hi.z += a[6];
    hi.w += a[7];
    q[0] = lo;
    q[1] = hi;
}

/* dwpe[t, c..c+width) += sum over b of dout[b, t, c..c+width), b in order.
 * VEC: C % 8 == 0 and dwpe, dout 16-byte aligned, so every 8-channel chunk of
 * dwpe (fp32, offset a multiple of 8 floats) is 16-byte aligned too. */
template <bool VEC>
__global__ static void encoder_dwpe_kernel(float *dwpe, const floatX *dout, int B, int T, int C) {
    const int width = VEC ? VEC_WIDTH : 1;
    int chunks = C / width;
    size_t n_items = (size_t)T * chunks;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t u = (size_t)blockIdx.x * blockDim.x + threadIdx.x; u < n_items; u += stride) {
        int t = (int)(u / chunks);
        int c = (int)(u % chunks) * width;
        float acc[width];
#pragma unroll
        for (int e = 0; e < width; e++) acc[e] = 0.0f;
        for (int b = 0; b < B; b++) {
            const floatX *src = dout + ((size_t)b * T + t) * C + c; /* (width) */
            if constexpr (VEC) {
                float v[VEC_WIDTH];
                load8(src, v);
#pragma unroll
                for (int e = 0; e < VEC_WIDTH; e++) acc[e] += v[e];
            } else {
                acc[0] += bf16_to_float(*src);
            }
        }
        float *dst = dwpe + (size_t)t * C + c; /* (width) fp32 */
        if constexpr (VEC) add8_f32(dst, acc);
        else *dst += acc[0];
    }
}

/* ---- backward: dwte ---- */

/* The per-id position lists, as uploaded (int32):
 *   positions (N): all b*T+t, grouped by token id, each group in increasing order
 *   ids (n_ids):   the distinct token ids, increasing
 *   starts (n_ids + 1): group k is positions[starts[k] .. starts[k+1]) */

/* Block k: dwte[ids[k], :] += sum over p in group k of dout[p, :], p in order.
 * VEC: each thread owns 8 adjacent channels (C % 8 == 0, dwte and dout 16-byte
 * aligned); scalar: one channel. dwte is fp32. */
template <bool VEC>
__global__ static void __launch_bounds__(DWTE_THREADS)
    encoder_dwte_kernel(float *dwte, const floatX *dout, const int *lists, int N, int n_ids,
                        int C) {
    const int *positions = lists;            /* (N) */
    const int *ids = lists + N;              /* (n_ids) */
    const int *starts = lists + N + n_ids;   /* (n_ids + 1) */
    int k = blockIdx.x;
    int id = ids[k];
    int p0 = starts[k], p1 = starts[k + 1];
    float *dst = dwte + (size_t)id * C; /* (C) fp32 row of (V,C) */
    const int width = VEC ? VEC_WIDTH : 1;
    for (int c = threadIdx.x * width; c < C; c += blockDim.x * width) {
        float acc[width];
#pragma unroll
        for (int e = 0; e < width; e++) acc[e] = 0.0f;
        int p = p0;
        /* four rows in flight per iteration; the adds stay in position order */
        for (; p + 4 <= p1; p += 4) {
            float v[4][width];
#pragma unroll
            for (int q = 0; q < 4; q++) {
                const floatX *src = dout + (size_t)positions[p + q] * C + c; /* (width) */
                if constexpr (VEC) load8(src, v[q]);
                else v[q][0] = bf16_to_float(*src);
            }
#pragma unroll
            for (int q = 0; q < 4; q++)
#pragma unroll
                for (int e = 0; e < width; e++) acc[e] += v[q][e];
        }
        for (; p < p1; p++) {
            const floatX *src = dout + (size_t)positions[p] * C + c; /* (width) */
            float v[width];
            if constexpr (VEC) load8(src, v);
            else v[0] = bf16_to_float(*src);
#pragma unroll
            for (int e = 0; e < width; e++) acc[e] += v[e];
        }
        if constexpr (VEC) add8_f32(dst + c, acc);
        else dst[c] += acc[0];
    }
}

/* Builds the per-id position lists of ids_in[0..N) (host) into lists (host,
 * at least 3N + 1 ints); returns the number of distinct ids. Exits on a
 * negative id (the CPU twin asserts). */
static int build_position_lists(int *lists, const int *ids_in, long N) {
    int max_id = -1;
    for (long i = 0; i < N; i++) {
        int id = ids_in[i];
        if (id < 0) {
            fprintf(stderr, "retort: encoder_backward_cuda: token id %d at position %ld is "
                            "negative; inputs must be token ids in [0, vocab_size)\n", id, i);
            exit(1);
        }
        if (id > max_id) max_id = id;
    }
    size_t n_slots = (size_t)max_id + 1;
    /* (max id + 1): counts, then write cursors */
    int *cursor = (int *)workspace_reserve(WS_ENCODER_CURSOR, n_slots * sizeof(int));
    memset(cursor, 0, n_slots * sizeof(int));
    for (long i = 0; i < N; i++) cursor[ids_in[i]]++;
    int n_ids = 0;
    for (size_t id = 0; id < n_slots; id++) n_ids += cursor[id] > 0;
    int *positions = lists;             /* (N) */
    int *ids = lists + N;               /* (n_ids) */
    int *starts = lists + N + n_ids;    /* (n_ids + 1) */
    int k = 0, run = 0;
    for (size_t id = 0; id < n_slots; id++) {
        int count = cursor[id];
        if (count == 0) continue;
        ids[k] = (int)id;
        starts[k] = run;
        cursor[id] = run; /* from here on: where the next position of this id goes */
        run += count;
        k++;
    }
    starts[n_ids] = run; /* == N */
    /* positions in increasing order within each id: the order the kernel sums in */
    for (long i = 0; i < N; i++) positions[cursor[ids_in[i]]++] = (int)i;
    return n_ids;
}

/* dwte[id] += the dout rows of every position holding id; also dwpe by
 * position ids (packed rows), ids then positions in [0, maxT). */
static void encoder_dwte(float *dwte, const floatX *dout, const int *inp, const int *inp_host,
                         int N, int C) {
    const int *ids_in = inp_host;
    if (!ids_in) { /* no host copy: download the ids (one stream synchronisation) */
        int *ids_down = (int *)workspace_reserve(WS_ENCODER_IDS_HOST, (size_t)N * sizeof(int));
        CUDA_CHECK(cudaMemcpyAsync(ids_down, inp, (size_t)N * sizeof(int),
                                   cudaMemcpyDeviceToHost, retort_stream));
        CUDA_CHECK(cudaStreamSynchronize(retort_stream));
        ids_in = ids_down;
    }
    /* (N + 2*n_ids + 1) pinned; waits for the previous call's upload from it */
    int *lists_host =
        (int *)workspace_reserve(WS_ENCODER_LISTS_HOST, (3 * (size_t)N + 1) * sizeof(int));
    int n_ids = build_position_lists(lists_host, ids_in, N);
    size_t n_ints = (size_t)N + 2 * (size_t)n_ids + 1;
    int *lists = (int *)workspace_reserve(WS_ENCODER_LISTS, n_ints * sizeof(int));
    CUDA_CHECK(cudaMemcpyAsync(lists, lists_host, n_ints * sizeof(int), cudaMemcpyHostToDevice,
                               retort_stream));
    workspace_copy_queued(WS_ENCODER_LISTS_HOST);
    bool vec = C % VEC_WIDTH == 0 && aligned16(dwte) && aligned16(dout);
    int threads = block_for_columns(vec ? C / VEC_WIDTH : C, DWTE_THREADS);
    if (vec)
        encoder_dwte_kernel<true><<<n_ids, threads, 0, retort_stream>>>(dwte, dout, lists, N,
                                                                        n_ids, C);
    else
        encoder_dwte_kernel<false><<<n_ids, threads, 0, retort_stream>>>(dwte, dout, lists, N,
                                                                         n_ids, C);
    CUDA_LAUNCH_CHECK();
}

extern "C" void encoder_backward_cuda(float *dwte, float *dwpe, const float *dout_f,
                                      const int *inp, const int *inp_host, const int *pos,
                                      const int *pos_host, int B, int T, int C) {
    if (B <= 0 || T <= 0 || C <= 0) return;
    /* dwte (V,C) += fp32, may be NULL; dwpe (maxT,C) += fp32, may be NULL */
    const floatX *dout = reinterpret_cast<const floatX *>(dout_f); /* (B,T,C) */
    /* inp (B,T) int32 on the device; inp_host the same ids on the host, or NULL */
    /* positions (packed rows): the grouped scatter of dwte, by position */
    if (dwpe && pos) encoder_dwte(dwpe, dout, pos, pos_host, B * T, C);
    else if (dwpe) {
        bool vec = C % VEC_WIDTH == 0 && aligned16(dwpe) && aligned16(dout);
        size_t n_items = (size_t)T * (vec ? C / VEC_WIDTH : C);
        int grid = grid_for(n_items, ELEMENTWISE_BLOCK);
        if (vec)
            encoder_dwpe_kernel<true><<<grid, ELEMENTWISE_BLOCK, 0, retort_stream>>>(dwpe, dout, B,
                                                                                   T, C);
        else
            encoder_dwpe_kernel<false><<<grid, ELEMENTWISE_BLOCK, 0, retort_stream>>>(dwpe, dout, B,
                                                                                    T, C);
        CUDA_LAUNCH_CHECK();
    }
    if (dwte) encoder_dwte(dwte, dout, inp, inp_host, B * T, C);
}
