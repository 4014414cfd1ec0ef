/* train/dist_nccl.cu — NCCL for train/dist.c: the communicator on this rank's
 * GPU, bucketed gradient all-reduce on a stream of its own, the sharded
 * collectives (ZeRO-1's and ZeRO-3's grouped broadcasts from the owners,
 * ZeRO-2's grouped reduces to the owners added into the gradient shard), and
 * host collectives staged through device memory for runs without MPI.
 *
 * Overlap: dist_nccl_allreduce_async records an event on the compute stream
 * (retort_stream) and makes the communication stream wait for it, so a bucket
 * is reduced as soon as the backward kernels that wrote it are done while the
 * compute stream runs on. dist_nccl_wait records the end of the communication
 * stream, polls it together with ncclCommGetAsyncError, and makes the compute
 * stream wait for it. Polling (not cudaStreamSynchronize) is what lets a hang
 * — a rank that died or stopped, a network that stalled — end in
 * ncclCommAbort and a message after dist.timeout_s (dist_set_timeout; at
 * start-up RETORT_NCCL_TIMEOUT_S), instead of forever; 0 waits forever. NCCL
 * does not say which rank it waits for; when MPI runs too, the host
 * collectives between steps name it (train/dist.c). After the first 10 ms the
 * poll naps, up to 1 ms, so a waiting rank does not hold a core busy.
 *
 * Every CUDA and NCCL call is checked; a failure after init is fatal for the
 * whole job (dist_abort), since the other ranks would wait for this one.
 */
#include <nccl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "kernels/cuda/common.cuh"

extern "C" {
#include "train/dist_nccl.h"
#include "util/util.h"
}

static_assert(NCCL_UNIQUE_ID_BYTES == DIST_NCCL_ID_BYTES, "ncclUniqueId size changed");

static ncclComm_t g_comm;
static cudaStream_t g_stream;             /* communication stream */
static cudaEvent_t g_ready, g_done;       /* compute -> comm, comm -> compute */
static void *g_scratch;                   /* staging for host collectives */
static const size_t SCRATCH_BYTES = (size_t)16 << 20;
static int g_rank, g_world, g_pending;
static double g_timeout_s = 600;

static void fatal(const char *what, const char *detail, const char *file, int line) {
    fprintf(stderr, "retort: rank %d: %s failed at %s:%d: %s; aborting the job\n", g_rank, what,
            file, line, detail);
    dist_abort(1);
}

#define DCUDA(call)                                                                        \
    do {                                                                                   \
        cudaError_t e_ = (call);                                                           \
        if (e_ != cudaSuccess) fatal(#call, cudaGetErrorString(e_), __FILE__, __LINE__);   \
    } while (0)

#define DNCCL(call)                                                                        \
    do {                                                                                   \
        ncclResult_t r_ = (call);                                                          \
        if (r_ != ncclSuccess) fatal(#call, ncclGetErrorString(r_), __FILE__, __LINE__);   \
    } while (0)

/* For init: errors are returned to dist_init, which prints them. */
#define INIT_CUDA(call)                                                                    \
    do {                                                                                   \
        cudaError_t e_ = (call);                                                           \
        if (e_ != cudaSuccess)                                                             \
            return err_set("rank %d: %s failed: %s", g_rank, #call, cudaGetErrorString(e_)); \
    } while (0)

#define INIT_NCCL(call)                                                                    \
    do {                                                                                   \
        ncclResult_t r_ = (call);                                                          \
        if (r_ != ncclSuccess)                                                             \
            return err_set("rank %d: %s failed: %s (set NCCL_DEBUG=INFO for details)",    \
                           g_rank, #call, ncclGetErrorString(r_));                         \
    } while (0)

extern "C" int dist_nccl_select_device(int device) {
    INIT_CUDA(cudaSetDevice(device));
    return 0;
}

extern "C" int dist_nccl_unique_id(unsigned char id[DIST_NCCL_ID_BYTES]) {
    ncclUniqueId uid;
    INIT_NCCL(ncclGetUniqueId(&uid));
    memcpy(id, uid.internal, DIST_NCCL_ID_BYTES);
    return 0;
}

extern "C" int dist_nccl_init(const unsigned char id[DIST_NCCL_ID_BYTES], int rank, int world,
                              double timeout_s) {
    g_rank = rank;
    g_world = world;
    g_timeout_s = timeout_s;
    ncclUniqueId uid;
    memcpy(uid.internal, id, DIST_NCCL_ID_BYTES);
    INIT_NCCL(ncclCommInitRank(&g_comm, world, uid, rank));
    INIT_CUDA(cudaStreamCreateWithFlags(&g_stream, cudaStreamNonBlocking));
    INIT_CUDA(cudaEventCreateWithFlags(&g_ready, cudaEventDisableTiming));
    INIT_CUDA(cudaEventCreateWithFlags(&g_done, cudaEventDisableTiming));
    return 0;
}

extern "C" void dist_nccl_set_timeout(double timeout_s) { g_timeout_s = timeout_s; }

extern "C" void dist_nccl_abort(void) {
    ncclComm_t c = g_comm;
    g_comm = NULL; /* abort once, even when called again on the way out */
    if (c) ncclCommAbort(c);
}

extern "C" void dist_nccl_finalize(void) {
    if (!g_comm) return;
    dist_nccl_wait();
    DNCCL(ncclCommFinalize(g_comm));
    DNCCL(ncclCommDestroy(g_comm));
    g_comm = NULL;
    if (g_scratch) DCUDA(cudaFree(g_scratch));
    g_scratch = NULL;
    DCUDA(cudaEventDestroy(g_ready));
    DCUDA(cudaEventDestroy(g_done));
    DCUDA(cudaStreamDestroy(g_stream));
}

/* Waits for ev, watching the communicator, for at most the timeout. */
static void wait_event(cudaEvent_t ev, const char *what) {
    double start = now_seconds();
    struct timespec pause = {0, 50 * 1000};
    for (;;) {
        cudaError_t e = cudaEventQuery(ev);
        if (e == cudaSuccess) return;
        if (e != cudaErrorNotReady) fatal(what, cudaGetErrorString(e), __FILE__, __LINE__);
        ncclResult_t async_err = ncclSuccess;
        DNCCL(ncclCommGetAsyncError(g_comm, &async_err));
        if (async_err != ncclSuccess) {
            char detail[512];
            snprintf(detail, sizeof detail, "NCCL reports %s (%s)",
                     ncclGetErrorString(async_err), ncclGetLastError(g_comm));
            fatal(what, detail, __FILE__, __LINE__);
        }
        double waited = now_seconds() - start;
        if (g_timeout_s > 0 && waited > g_timeout_s) {
            fprintf(stderr,
                    "retort: rank %d: %s made no progress for %.0f s (dist.timeout_s): another "
                    "rank of the %d stopped, died or stalls (NCCL does not say which); aborting "
                    "the NCCL communicator and the job. Raise dist.timeout_s if a rank only "
                    "needs longer (0 waits forever)\n",
                    g_rank, what, g_timeout_s, g_world);
            dist_abort(1);
        }
        if (waited > 0.01 && pause.tv_nsec < 1000 * 1000) pause.tv_nsec *= 2; /* nap longer */
        nanosleep(&pause, NULL);
    }
}

static ncclRedOp_t nccl_op(DistOp op) { return op == DIST_AVG ? ncclAvg : ncclSum; }

extern "C" void dist_nccl_allreduce_async(void *dev_ptr, size_t n, DistDtype dtype, DistOp op) {
    DCUDA(cudaEventRecord(g_ready, retort_stream));
    DCUDA(cudaStreamWaitEvent(g_stream, g_ready, 0));
    DNCCL(ncclAllReduce(dev_ptr, dev_ptr, n, dtype == DIST_BF16 ? ncclBfloat16 : ncclFloat32,
                        nccl_op(op), g_comm, g_stream));
    g_pending = 1;
}

extern "C" void dist_nccl_wait(void) {
    if (!g_pending || !g_comm) return;
    DCUDA(cudaEventRecord(g_done, g_stream));
    wait_event(g_done, "the gradient all-reduce");
    DCUDA(cudaStreamWaitEvent(retort_stream, g_done, 0));
    g_pending = 0;
}

/* Grouped broadcasts, each rooted at its piece's owner: NCCL runs them
 * together, as one all-gather of unequal, scattered pieces. */
extern "C" void dist_nccl_broadcast_pieces(const DistPiece *pieces, int n) {
    DCUDA(cudaEventRecord(g_ready, retort_stream));
    DCUDA(cudaStreamWaitEvent(g_stream, g_ready, 0));
    DNCCL(ncclGroupStart());
    for (int k = 0; k < n; k++)
        if (pieces[k].bytes)
            DNCCL(ncclBroadcast(pieces[k].dev_ptr, pieces[k].dev_ptr, pieces[k].bytes, ncclUint8,
                                pieces[k].owner, g_comm, g_stream));
    DNCCL(ncclGroupEnd());
    g_pending = 1;
    dist_nccl_wait();
}

/* ZeRO-3's gather: grouped broadcasts from each owner's shard (src) into
 * every rank's destination, src and dst apart (the owner's too). */
extern "C" void dist_nccl_gather_pieces(const DistGatherPiece *pieces, int n) {
    DCUDA(cudaEventRecord(g_ready, retort_stream));
    DCUDA(cudaStreamWaitEvent(g_stream, g_ready, 0));
    DNCCL(ncclGroupStart());
    for (int k = 0; k < n; k++)
        if (pieces[k].bytes)
            DNCCL(ncclBroadcast(pieces[k].owner == g_rank ? pieces[k].src : pieces[k].dst,
                                pieces[k].dst, pieces[k].bytes, ncclUint8, pieces[k].owner,
                                g_comm, g_stream));
    DNCCL(ncclGroupEnd());
    g_pending = 1;
    dist_nccl_wait();
}

/* shard[k] += part[k], k < n: the owner's share of a ZeRO-2 reduce-scatter. */
__global__ static void add_f32_kernel(float *shard, const float *part, size_t n) {
    size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (k < n) shard[k] += part[k];
}

/* ZeRO-2: each owner's part of [lo, hi) summed onto it in place (a group of
 * ncclReduce, one per owner whose shard meets the range; the split follows
 * dist_shard_range, so a range inside one shard is one reduce), then the
 * owner adds its sum into its gradient shard. Everything runs on the
 * communication stream after the compute stream's queued work (the backward
 * that wrote src), and the compute stream waits for it before it writes src
 * again: the next block's backward starts by zeroing the window. */
extern "C" void dist_nccl_reduce_scatter_add(float *src, size_t lo, size_t hi, size_t n,
                                             float *shard) {
    DCUDA(cudaEventRecord(g_ready, retort_stream));
    DCUDA(cudaStreamWaitEvent(g_stream, g_ready, 0));
    size_t my_b = 0, my_e = 0;
    DNCCL(ncclGroupStart());
    for (int q = 0; q < g_world; q++) {
        size_t b, e;
        dist_shard_range(n, q, g_world, &b, &e);
        if (q == g_rank) my_b = b, my_e = e;
        if (b < lo) b = lo;
        if (e > hi) e = hi;
        if (b >= e) continue; /* every rank skips the same owners */
        DNCCL(ncclReduce(src + (b - lo), src + (b - lo), e - b, ncclFloat32, ncclSum, q, g_comm,
                         g_stream));
    }
    DNCCL(ncclGroupEnd());
    size_t b = my_b > lo ? my_b : lo, e = my_e < hi ? my_e : hi;
    if (b < e) {
        size_t len = e - b;
        unsigned blocks = (unsigned)((len + 255) / 256);
        add_f32_kernel<<<blocks, 256, 0, g_stream>>>(shard + (b - my_b), src + (b - lo), len);
        DCUDA(cudaGetLastError());
    }
    DCUDA(cudaEventRecord(g_done, g_stream));
    DCUDA(cudaStreamWaitEvent(retort_stream, g_done, 0));
    g_pending = 1; /* dist_wait watches it with the timeout */
}

/* ---- host collectives staged through g_scratch ---- */

static void *scratch(void) {
    if (!g_scratch) DCUDA(cudaMalloc(&g_scratch, SCRATCH_BYTES));
    return g_scratch;
}

static void upload(void *dev, const void *host, size_t bytes) {
    DCUDA(cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, g_stream));
}

/* Waits for the collective with the timeout first, so that the blocking copy
 * from device to pageable host memory cannot hang. */
static void finish_and_download(void *host, const void *dev, size_t bytes, const char *what) {
    DCUDA(cudaEventRecord(g_done, g_stream));
    wait_event(g_done, what);
    DCUDA(cudaMemcpyAsync(host, dev, bytes, cudaMemcpyDeviceToHost, g_stream));
    DCUDA(cudaStreamSynchronize(g_stream));
}

extern "C" void dist_nccl_host_allreduce(void *buf, size_t count, DistHostKind kind, DistOp op) {
    dist_nccl_wait(); /* keep the order of collectives on the one stream */
    ncclDataType_t type = ncclFloat32;
    size_t size = 4;
    ncclRedOp_t rop = nccl_op(op);
    switch (kind) {
    case DIST_HOST_F32: type = ncclFloat32; size = 4; break;
    case DIST_HOST_F64: type = ncclFloat64; size = 8; break;
    case DIST_HOST_I64: type = ncclInt64; size = 8; rop = ncclSum; break;
    case DIST_HOST_I32_MAX: type = ncclInt32; size = 4; rop = ncclMax; break;
    }
    void *dev = scratch();
    size_t per = SCRATCH_BYTES / size;
    for (size_t off = 0; off < count; off += per) {
        size_t len = count - off < per ? count - off : per;
        char *host = (char *)buf + off * size;
        upload(dev, host, len * size);
        DNCCL(ncclAllReduce(dev, dev, len, type, rop, g_comm, g_stream));
        finish_and_download(host, dev, len * size, "a host all-reduce");
    }
}

extern "C" void dist_nccl_host_broadcast(void *buf, size_t bytes) {
    dist_nccl_wait();
    void *dev = scratch();
    for (size_t off = 0; off < bytes; off += SCRATCH_BYTES) {
        size_t len = bytes - off < SCRATCH_BYTES ? bytes - off : SCRATCH_BYTES;
        char *host = (char *)buf + off;
        if (g_rank == 0) upload(dev, host, len);
        DNCCL(ncclBroadcast(dev, dev, len, ncclUint8, 0, g_comm, g_stream));
        finish_and_download(host, dev, len, "a broadcast");
    }
}

/* Each rank's shard of the chunk goes out with a broadcast rooted at its owner;
 * grouped so NCCL runs them together. */
extern "C" void dist_nccl_host_all_gather_f32(float *buf, size_t n) {
    dist_nccl_wait();
    float *dev = (float *)scratch();
    size_t per = SCRATCH_BYTES / sizeof(float);
    for (size_t c0 = 0; c0 < n; c0 += per) {
        size_t c1 = n - c0 < per ? n : c0 + per;
        upload(dev, buf + c0, (c1 - c0) * sizeof(float));
        DNCCL(ncclGroupStart());
        for (int q = 0; q < g_world; q++) {
            size_t b, e;
            dist_shard_range(n, q, g_world, &b, &e);
            if (b < c0) b = c0;
            if (e > c1) e = c1;
            if (b >= e) continue; /* every rank skips the same (q, chunk) pairs */
            DNCCL(ncclBroadcast(dev + (b - c0), dev + (b - c0), e - b, ncclFloat32, q, g_comm,
                                g_stream));
        }
        DNCCL(ncclGroupEnd());
        finish_and_download(buf + c0, dev, (c1 - c0) * sizeof(float), "a host all-gather");
    }
}
