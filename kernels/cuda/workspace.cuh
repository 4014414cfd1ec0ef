/* kernels/cuda/workspace.cuh — the scratch buffers of the CUDA kernels, in
 * one registry that the backend owns and frees.
 *
 * A kernel that needs memory beyond its arguments asks for its slot with
 * workspace_reserve(slot, bytes): the buffer is cached across calls and only
 * grows, so the steady state allocates nothing. No kernel file keeps a buffer
 * of its own. The backend's shutdown (model/backend_cuda.cu, also run at
 * exit) calls workspace_release_all, which frees every slot and the cuBLAS
 * handle; a later reserve allocates afresh.
 *
 * Kinds of slot:
 *   device  GPU memory. Growing synchronises retort_stream before freeing the
 *           old buffer, since kernels queued earlier may still read it.
 *   pinned  page-locked host memory, the source or target of asynchronous
 *           copies. After queueing a copy that reads or writes it, call
 *           workspace_copy_queued(slot): the next reserve of the slot waits
 *           for that copy first, so the buffer is never rewritten or freed
 *           under it.
 *   host    plain host memory (malloc) for host-side work.
 * Contents are not kept when a slot grows, and never zeroed. Failing to
 * allocate prints what and how much, and exits (an op has no error return).
 *
 * The cuBLAS handle is cached here too (it holds cuBLAS's own device
 * workspace): created on first use, bound to retort_stream.
 */
#ifndef RETORT_CUDA_WORKSPACE_CUH
#define RETORT_CUDA_WORKSPACE_CUH

#include <cublas_v2.h>
#include <stddef.h>

enum Workspace {
    /* device */
    WS_ATTENTION_ROW_DOT,  /* attention_backward_cuda: D (B,NH,T) fp32 */
    WS_DECODE_SPLITS,      /* attention_decode_cuda: (M, L) and O of each key split, fp32 */
    WS_LAYERNORM_PARTIALS, /* layernorm_backward_cuda: (n_blocks, 2, C) fp32 column sums */
    WS_RMSNORM_PARTIALS,   /* rmsnorm/qk_norm backward: (n_blocks, HS) fp32 column sums */
    WS_BIAS_PARTIALS,      /* matmul_backward_cuda: (parts, OC) fp32 dbias column sums */
    WS_SUM_SQUARES,        /* sum_squares_cuda: block partials and the result, double */
    WS_STAGING,            /* upload_f32_cuda / download_f32_cuda: fp32 chunk */
    WS_ENCODER_LISTS,      /* encoder_backward_cuda: per-id position lists, int32 */
    /* pinned host */
    WS_ENCODER_IDS_HOST,   /* encoder_backward_cuda: the ids copied down (no inp_host) */
    WS_ENCODER_LISTS_HOST, /* encoder_backward_cuda: the lists, built before upload */
    /* host */
    WS_ENCODER_CURSOR,     /* encoder_backward_cuda: per-id counts, then write cursors */
    WS_COUNT
};

/* The slot's buffer, at least bytes long (bytes > 0). */
void *workspace_reserve(Workspace slot, size_t bytes);
/* A pinned slot: an asynchronous copy from or to it was just queued on
 * retort_stream. */
void workspace_copy_queued(Workspace slot);
/* cuBLAS, on retort_stream. */
cublasHandle_t workspace_cublas(void);
/* Frees every slot and the cuBLAS handle (the backend's shutdown). */
void workspace_release_all(void);

#endif
