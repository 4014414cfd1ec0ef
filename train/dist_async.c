/* train/dist_async.c — the overlapped gradient reduction's MPI half
 * (dist.h dist_reduce_start_f32): fp32 sums over the ranks that start at
 * once and finish while the caller computes, with the bits of
 * dist_allreduce_f32 / dist_reduce_scatter_f32.
 *
 * The determinism trick is dist.c's: each element of a range has one owner
 * rank, every rank sends the owner its values (MPI_Ialltoallv), and the owner
 * adds them in rank order 0, 1, ..., W-1 starting from rank 0's value; an
 * MPI_Iallgatherv then copies the sums back (all-reduce) or nothing does
 * (ZeRO-1: the owner is the shard's, dist_shard_range of the whole layout).
 * Which rank owns an element does not change its sum, so any cut of the
 * layout into ranges gives the bits of one whole-buffer call.
 *
 * MPI wants the collectives of one communicator started in the same order on
 * every rank. The exchanges start in call order (every rank calls in the same
 * order), but a gather can only start once its exchange has finished here,
 * which happens at different moments on different ranks; so the exchanges and
 * the gathers run on two communicators of their own (duplicates of
 * MPI_COMM_WORLD, made at the first call), and the gathers start in call
 * order too (dist_reduce_progress never starts range k's gather before range
 * k-1's). Open MPI moves a nonblocking collective's data only inside MPI
 * calls (MPI_THREAD_FUNNELED, no progress thread), so the caller polls with
 * dist_reduce_progress between pieces of work (the model's blocks).
 *
 * These collectives skip dist.c's arrival phase (one would serialise them):
 * a rank that never arrives is caught by dist_reduce_wait's deadline
 * (dist.timeout_s), which aborts the job. */
#include "train/dist.h"

#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/util.h"

#define CHUNK_ELEMS ((size_t)1 << 28) /* one collective's range: counts stay in int */

typedef struct {
    float *buf;
    size_t lo, hi, shard_n;
    int gathering;             /* 0: exchange in flight; 1: summed, gather in flight */
    MPI_Request req;
    float *recv;               /* (W, mine) the ranks' values of this rank's piece */
    size_t mine;
    int *counts, *sdispls, *rcounts, *rdispls; /* (W) each, valid until completion */
} Pending;

/* The wait spins (each MPI_Test moves data) for 10 ms, then naps 50 us
 * between polls: a rank that waits because the other is still in backward
 * must not hold a core the other needs (on a machine with as many cores as
 * ranks, spinning for the whole wait made the overlapped step slower), and a
 * short nap still polls often enough to keep the transfer moving. */
static const double g_spin_s = 0.01;
static const long g_nap_ns = 50000;
static MPI_Comm g_exchange = MPI_COMM_NULL, g_gather = MPI_COMM_NULL;
static Pending *g_pending;
static int g_n_pending, g_cap_pending;

static void check(int rc, const char *call) {
    if (rc == MPI_SUCCESS) return;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    fprintf(stderr, "retort: rank %d: %s failed in the overlapped gradient reduction: %s; "
            "aborting the job\n", dist_rank(), call, msg);
    dist_abort(1);
}

static double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Rank q's piece [*off, *off + len) of [lo, hi): its shard's part (shard_n >
 * 0), or an even cut of the range (all-reduce). */
static size_t piece(const Pending *p, int q, size_t *off) {
    int W = dist_size();
    size_t b, e;
    if (p->shard_n) {
        dist_shard_range(p->shard_n, q, W, &b, &e);
        if (b < p->lo) b = p->lo;
        if (e > p->hi) e = p->hi;
    } else {
        dist_shard_range(p->hi - p->lo, q, W, &b, &e);
        b += p->lo;
        e += p->lo;
    }
    *off = b;
    return e > b ? e - b : 0;
}

static void start_one(float *buf, size_t lo, size_t hi, size_t shard_n) {
    int W = dist_size(), me = dist_rank();
    if (g_n_pending == g_cap_pending) {
        g_cap_pending = g_cap_pending ? 2 * g_cap_pending : 16;
        g_pending = xrealloc(g_pending, (size_t)g_cap_pending * sizeof(Pending));
    }
    Pending *p = &g_pending[g_n_pending++];
    memset(p, 0, sizeof *p);
    p->buf = buf;
    p->lo = lo;
    p->hi = hi;
    p->shard_n = shard_n;
    p->counts = xmalloc((size_t)W * sizeof(int));
    p->sdispls = xmalloc((size_t)W * sizeof(int));
    p->rcounts = xmalloc((size_t)W * sizeof(int));
    p->rdispls = xmalloc((size_t)W * sizeof(int));
    size_t my_off;
    p->mine = piece(p, me, &my_off);
    p->recv = xmalloc((size_t)W * (p->mine ? p->mine : 1) * sizeof(float));
    for (int q = 0; q < W; q++) {
        size_t off, len = piece(p, q, &off);
        p->counts[q] = (int)len;
        p->sdispls[q] = len ? (int)(off - lo) : 0;
        p->rcounts[q] = (int)p->mine;
        p->rdispls[q] = (int)((size_t)q * p->mine);
    }
    check(MPI_Ialltoallv(buf + lo, p->counts, p->sdispls, MPI_FLOAT, p->recv, p->rcounts,
                         p->rdispls, MPI_FLOAT, g_exchange, &p->req),
          "MPI_Ialltoallv");
}

void dist_reduce_start_f32(float *buf, size_t lo, size_t hi, size_t shard_n) {
    if (dist_size() == 1 || hi <= lo) return;
    if (!dist_mpi_active()) {
        fprintf(stderr, "retort: rank %d: dist_reduce_start_f32 needs MPI (a CPU run under "
                "mpirun)\n", dist_rank());
        dist_abort(1);
    }
    if (g_exchange == MPI_COMM_NULL) { /* every rank reaches its first call together */
        check(MPI_Comm_dup(MPI_COMM_WORLD, &g_exchange), "MPI_Comm_dup");
        check(MPI_Comm_dup(MPI_COMM_WORLD, &g_gather), "MPI_Comm_dup");
        MPI_Comm_set_errhandler(g_exchange, MPI_ERRORS_RETURN);
        MPI_Comm_set_errhandler(g_gather, MPI_ERRORS_RETURN);
    }
    for (size_t a = lo; a < hi; a += CHUNK_ELEMS)
        start_one(buf, a, hi - a < CHUNK_ELEMS ? hi : a + CHUNK_ELEMS, shard_n);
}

/* The owner's rank-order sums into buf, then (all-reduce) the gather of
 * every rank's piece back into the range, in place. */
static void sum_and_gather(Pending *p) {
    int W = dist_size(), me = dist_rank();
    size_t my_off;
    (void)piece(p, me, &my_off);
    for (size_t i = 0; i < p->mine; i++) {
        float s = p->recv[i];
        for (int q = 1; q < W; q++) s += p->recv[(size_t)q * p->mine + i];
        p->buf[my_off + i] = s;
    }
    free(p->recv);
    p->recv = NULL;
    p->gathering = 1;
    if (p->shard_n) { /* ZeRO-1: the owner's shard is all a rank needs */
        p->req = MPI_REQUEST_NULL;
        return;
    }
    for (int q = 0; q < W; q++) {
        size_t off, len = piece(p, q, &off);
        p->rcounts[q] = (int)len;
        p->rdispls[q] = (int)(off - p->lo);
    }
    check(MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, p->buf + p->lo, p->rcounts, p->rdispls,
                          MPI_FLOAT, g_gather, &p->req),
          "MPI_Iallgatherv");
}

static void pending_free(Pending *p) {
    free(p->recv);
    free(p->counts);
    free(p->sdispls);
    free(p->rcounts);
    free(p->rdispls);
}

/* One pass over the ranges in order; 1 when all are done. */
static int progress_pass(void) {
    int all_done = 1, exchanges_in_order = 1;
    for (int k = 0; k < g_n_pending; k++) {
        Pending *p = &g_pending[k];
        int flag = 0;
        if (!p->gathering) {
            all_done = 0;
            if (!exchanges_in_order) continue; /* its gather waits for the earlier ones' */
            check(MPI_Test(&p->req, &flag, MPI_STATUS_IGNORE), "MPI_Test");
            if (!flag) {
                exchanges_in_order = 0;
                continue;
            }
            sum_and_gather(p);
        }
        check(MPI_Test(&p->req, &flag, MPI_STATUS_IGNORE), "MPI_Test");
        if (!flag) all_done = 0;
    }
    return all_done;
}

void dist_reduce_progress(void) {
    if (g_n_pending) (void)progress_pass();
}

void dist_reduce_wait(void) {
    if (!g_n_pending) return;
    double timeout = dist_timeout(), start = seconds_now();
    while (!progress_pass()) {
        double waited = seconds_now() - start;
        if (timeout > 0 && waited > timeout) {
            fprintf(stderr, "retort: rank %d: the overlapped gradient reduction did not finish "
                    "within dist.timeout_s=%g s: a rank stopped or died during the backward "
                    "pass; aborting the job\n", dist_rank(), timeout);
            dist_abort(1);
        }
        if (waited > g_spin_s) { /* a rank is late (still in backward): give up the core */
            struct timespec nap = {0, g_nap_ns};
            nanosleep(&nap, NULL);
        }
    }
    for (int k = 0; k < g_n_pending; k++) pending_free(&g_pending[k]);
    g_n_pending = 0;
}

int dist_reduce_pending(void) { return g_n_pending; }
