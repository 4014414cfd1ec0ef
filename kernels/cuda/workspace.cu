/* kernels/cuda/workspace.cu — the registry of the kernels' scratch buffers
 * (kernels/cuda/workspace.cuh): one table of slots, grown on demand and freed
 * all at once by the backend's shutdown.
 *
 * Release runs at exit too, possibly after a CUDA error stopped the program:
 * a context that has failed refuses every call, and the driver frees its
 * memory with it, so then only the plain host buffers are freed and the rest
 * is forgotten. Nothing here exits during release.
 */
#include <stdio.h>
#include <stdlib.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/workspace.cuh"

enum WorkspaceKind { WS_DEVICE, WS_PINNED, WS_HOST };

struct Slot {
    void *ptr;
    size_t cap;           /* bytes */
    cudaEvent_t copied;   /* pinned: recorded after the last queued copy */
    bool copy_pending;    /* copied was recorded and not yet waited for */
};

/* The registry: every cached buffer of the kernels, and the cuBLAS handle. */
static struct {
    Slot slot[WS_COUNT];
    cublasHandle_t cublas;
} g_ws;

static WorkspaceKind slot_kind(Workspace s) {
    switch (s) {
    case WS_ENCODER_IDS_HOST:
    case WS_ENCODER_LISTS_HOST: return WS_PINNED;
    case WS_ENCODER_CURSOR: return WS_HOST;
    default: return WS_DEVICE;
    }
}

static const char *slot_name(Workspace s) {
    switch (s) {
    case WS_ATTENTION_ROW_DOT: return "attention backward row dot";
    case WS_DECODE_SPLITS: return "decode attention split";
    case WS_LAYERNORM_PARTIALS: return "layernorm backward partial sum";
    case WS_RMSNORM_PARTIALS: return "rmsnorm backward partial sum";
    case WS_BIAS_PARTIALS: return "matmul bias-gradient partial sum";
    case WS_SUM_SQUARES: return "sum of squares";
    case WS_STAGING: return "fp32 staging";
    case WS_ENCODER_LISTS: return "embedding backward position list";
    case WS_ENCODER_IDS_HOST: return "embedding backward host id";
    case WS_ENCODER_LISTS_HOST: return "embedding backward host list";
    case WS_ENCODER_CURSOR: return "embedding backward id cursor";
    default: return "?";
    }
}

static void no_memory(Workspace s, const char *where, size_t bytes, const char *why) {
    fprintf(stderr,
            "retort: cannot allocate %zu bytes of %s memory for the %s workspace (%s); lower "
            "data.batch_size or data.seq_len\n",
            bytes, where, slot_name(s), why);
    exit(1);
}

void *workspace_reserve(Workspace s, size_t bytes) {
    Slot *w = &g_ws.slot[s];
    WorkspaceKind kind = slot_kind(s);
    if (kind == WS_PINNED && w->copy_pending) {
        CUDA_CHECK(cudaEventSynchronize(w->copied));
        w->copy_pending = false;
    }
    if (bytes <= w->cap) return w->ptr;
    cudaError_t e = cudaSuccess;
    switch (kind) {
    case WS_DEVICE:
        if (w->ptr) {
            CUDA_CHECK(cudaStreamSynchronize(retort_stream));
            CUDA_CHECK(cudaFree(w->ptr));
        }
        w->ptr = NULL;
        w->cap = 0;
        e = cudaMalloc(&w->ptr, bytes);
        if (e != cudaSuccess) {
            (void)cudaGetLastError(); /* not the next kernel's fault */
            no_memory(s, "GPU", bytes, cudaGetErrorString(e));
        }
        break;
    case WS_PINNED:
        if (w->ptr) CUDA_CHECK(cudaFreeHost(w->ptr));
        w->ptr = NULL;
        w->cap = 0;
        e = cudaMallocHost(&w->ptr, bytes);
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            no_memory(s, "pinned host", bytes, cudaGetErrorString(e));
        }
        break;
    case WS_HOST:
        free(w->ptr);
        w->cap = 0;
        w->ptr = malloc(bytes);
        if (!w->ptr) no_memory(s, "host", bytes, "malloc failed");
        break;
    }
    w->cap = bytes;
    return w->ptr;
}

void workspace_copy_queued(Workspace s) {
    Slot *w = &g_ws.slot[s];
    if (!w->copied) CUDA_CHECK(cudaEventCreateWithFlags(&w->copied, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventRecord(w->copied, retort_stream));
    w->copy_pending = true;
}

cublasHandle_t workspace_cublas(void) {
    if (g_ws.cublas) return g_ws.cublas;
    cublasHandle_t h = NULL;
    cublasStatus_t st = cublasCreate(&h);
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasSetStream(h, retort_stream);
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasSetMathMode(h, CUBLAS_DEFAULT_MATH);
    if (st != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "retort: cannot set up cuBLAS: error %d (%s)\n", (int)st,
                cublasGetStatusString(st));
        exit(1);
    }
    g_ws.cublas = h;
    return h;
}

/* One failed release is reported and the rest still freed. */
static void release_warn(const char *what, const char *why) {
    fprintf(stderr, "retort: warning: releasing the %s failed: %s\n", what, why);
}

void workspace_release_all(void) {
    /* every queued kernel and copy that may use a slot is done after this; if
     * it fails, the context is gone and takes its memory with it */
    cudaError_t e = cudaStreamSynchronize(retort_stream);
    bool live = e == cudaSuccess;
    if (!live) (void)cudaGetLastError();
    for (int i = 0; i < WS_COUNT; i++) {
        Slot *w = &g_ws.slot[i];
        WorkspaceKind kind = slot_kind((Workspace)i);
        if (kind == WS_HOST) {
            free(w->ptr);
        } else if (live && w->ptr) {
            e = kind == WS_DEVICE ? cudaFree(w->ptr) : cudaFreeHost(w->ptr);
            if (e != cudaSuccess) release_warn(slot_name((Workspace)i), cudaGetErrorString(e));
        }
        if (live && w->copied) {
            e = cudaEventDestroy(w->copied);
            if (e != cudaSuccess) release_warn("copy event", cudaGetErrorString(e));
        }
        w->ptr = NULL;
        w->cap = 0;
        w->copied = NULL;
        w->copy_pending = false;
    }
    if (live && g_ws.cublas) {
        cublasStatus_t st = cublasDestroy(g_ws.cublas);
        if (st != CUBLAS_STATUS_SUCCESS)
            release_warn("cuBLAS handle", cublasGetStatusString(st));
    }
    g_ws.cublas = NULL;
}
