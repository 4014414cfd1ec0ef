/* tests/mpi/dist_check.c — the MPI collectives of train/dist.c, run by
 * scripts/test_mpi.sh under `mpirun -np 2` and `-np 3` (a plain program: the
 * ranks must be separate processes started together, which Criterion cannot do).
 *
 * Every rank can regenerate every other rank's input (seeded by rank), so each
 * checks its result against the serial left-to-right sum over ranks — bit for
 * bit — and against rank 0's result. The inputs mix magnitudes from 1e-3 to
 * 1e6 so that a different summation order would show in the low bits.
 * A rank that comes late (but within dist.timeout_s, or with no timeout) is
 * waited for (scripts/test_dist_train.sh checks a rank that never comes).
 * The overlapped reduction (dist_reduce_start_f32, train/dist_async.c) must
 * give the blocking calls' bits for any cut of the buffer into ranges.
 * Rank 0 prints "checks: P passed, F failed" over all ranks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "train/dist.h"
#include "util/util.h"

static int n_pass, n_fail;

static void check(int ok, const char *what, size_t n, size_t round_elems) {
    if (ok) {
        n_pass++;
        return;
    }
    n_fail++;
    fprintf(stderr, "FAIL rank %d of %d: %s (n=%zu, round_elems=%zu)\n", dist_rank(),
            dist_size(), what, n, round_elems);
}

static void input_of(int rank, float *x, size_t n, unsigned seed) {
    Rng r;
    rng_seed(&r, 1000u * seed + (unsigned)rank);
    static const float scales[] = {1e-3f, 1.0f, 1e3f, 1e6f};
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(rng_uniform(&r) * 2 - 1) * scales[rng_below(&r, 4)];
}

/* The reference: ranks summed in order 0..W-1 in fp32, then divided for AVG. */
static void expected_sum(float *out, size_t n, unsigned seed, DistOp op) {
    int W = dist_size();
    float *x = xmalloc((n ? n : 1) * sizeof(float));
    for (int q = 0; q < W; q++) {
        input_of(q, x, n, seed);
        for (size_t i = 0; i < n; i++) out[i] = q == 0 ? x[i] : out[i] + x[i];
    }
    if (op == DIST_AVG)
        for (size_t i = 0; i < n; i++) out[i] = out[i] / (float)W;
    free(x);
}

/* 1 when buf is bitwise the same as rank 0's. */
static int same_as_rank0(const float *buf, size_t n) {
    float *copy = xmalloc((n ? n : 1) * sizeof(float));
    memcpy(copy, buf, n * sizeof(float));
    dist_broadcast(copy, n * sizeof(float));
    int same = memcmp(copy, buf, n * sizeof(float)) == 0;
    free(copy);
    return same;
}

static void check_allreduce(size_t n, size_t round_elems, DistOp op, unsigned seed) {
    dist_set_round_elems(round_elems);
    size_t cap = n ? n : 1;
    float *buf = xmalloc(cap * sizeof(float)), *want = xmalloc(cap * sizeof(float));
    input_of(dist_rank(), buf, n, seed);
    expected_sum(want, n, seed, op);
    dist_allreduce_f32(buf, n, op);
    check(memcmp(buf, want, n * sizeof(float)) == 0,
          op == DIST_AVG ? "all-reduce AVG differs from the rank-order mean"
                         : "all-reduce SUM differs from the rank-order sum",
          n, round_elems);
    check(same_as_rank0(buf, n), "all-reduce result differs from rank 0's", n, round_elems);

    /* ZeRO-1: the reduce-scatter gives this rank its shard of the same sums,
     * and the all-gather puts every shard back together. */
    size_t b, e;
    dist_shard_range(n, dist_rank(), dist_size(), &b, &e);
    input_of(dist_rank(), buf, n, seed);
    dist_reduce_scatter_f32(buf, n, op);
    check(memcmp(buf + b, want + b, (e - b) * sizeof(float)) == 0,
          "reduce-scatter shard differs from the rank-order sums", n, round_elems);
    for (size_t i = 0; i < n; i++)
        if (i < b || i >= e) buf[i] = -1.0f; /* what other ranks own must come from them */
    dist_all_gather_f32(buf, n);
    check(memcmp(buf, want, n * sizeof(float)) == 0, "all-gather did not rebuild the buffer", n,
          round_elems);
    free(buf);
    free(want);
}

/* ZeRO-2: ranges [lo, hi) of an n-element layout reduce-scattered and ADDED
 * into each rank's shard, which already holds something: the result must be
 * the old shard plus the rank-order sum, bit for bit, whether the range lies
 * inside one shard, spans several, or misses this rank's. */
static void check_reduce_scatter_add(size_t n, size_t round_elems, unsigned seed) {
    dist_set_round_elems(round_elems);
    size_t cap = n ? n : 1;
    float *x = xmalloc(cap * sizeof(float)), *want = xmalloc(cap * sizeof(float));
    input_of(dist_rank(), x, n, seed);
    expected_sum(want, n, seed, DIST_SUM);
    size_t b, e;
    dist_shard_range(n, dist_rank(), dist_size(), &b, &e);
    float *shard = xmalloc((e > b ? e - b : 1) * sizeof(float));
    size_t cuts[][2] = {{0, n}, {n / 3, n / 3 + n / 4}, {n / 2, n}, {n / 5, n / 5 + 1}, {0, 0}};
    for (size_t c = 0; c < sizeof cuts / sizeof *cuts; c++) {
        size_t lo = cuts[c][0] < n ? cuts[c][0] : n, hi = cuts[c][1] < n ? cuts[c][1] : n;
        if (hi < lo) hi = lo;
        for (size_t i = b; i < e; i++) shard[i - b] = 0.25f * (float)(i % 7); /* earlier sums */
        dist_reduce_scatter_add_f32(x + lo, lo, hi, n, shard);
        int ok = 1;
        for (size_t i = b; i < e; i++) {
            float w = 0.25f * (float)(i % 7);
            if (i >= lo && i < hi) w += want[i];
            ok &= memcmp(&shard[i - b], &w, sizeof w) == 0;
        }
        check(ok, "reduce-scatter-add differs from the shard plus the rank-order sum", hi - lo,
              round_elems);
    }
    free(x);
    free(want);
    free(shard);
}

/* ZeRO-3's parameter gather: every rank's shard of a layout known to all
 * (element i is a function of i), and ranges inside one shard, spanning
 * several, missing this rank's, empty, in rounds down to one element: dst
 * must be the layout's [lo, hi) bit for bit, and nothing past it written. */
static float layout_value(size_t i) { return (float)((double)i * 1.25 - 1e5) * 1e-3f; }

static void check_all_gather_range(size_t n, size_t round_elems) {
    dist_set_round_elems(round_elems);
    size_t b, e;
    dist_shard_range(n, dist_rank(), dist_size(), &b, &e);
    float *shard = xmalloc((e > b ? e - b : 1) * sizeof(float));
    for (size_t i = b; i < e; i++) shard[i - b] = layout_value(i);
    float *dst = xmalloc((n + 1) * sizeof(float));
    size_t cuts[][2] = {{0, n}, {n / 3, n / 3 + n / 4}, {n / 2, n}, {n / 5, n / 5 + 1}, {0, 0}};
    for (size_t c = 0; c < sizeof cuts / sizeof *cuts; c++) {
        size_t lo = cuts[c][0] < n ? cuts[c][0] : n, hi = cuts[c][1] < n ? cuts[c][1] : n;
        if (hi < lo) hi = lo;
        for (size_t i = 0; i <= n; i++) dst[i] = -7.0f;
        dist_all_gather_range_f32(shard, lo, hi, n, dst);
        int ok = dst[hi - lo] == -7.0f;
        for (size_t i = lo; i < hi; i++) {
            float w = layout_value(i);
            ok &= memcmp(&dst[i - lo], &w, sizeof w) == 0;
        }
        check(ok, "all-gather of a range differs from the layout", hi - lo, round_elems);
    }
    free(shard);
    free(dst);
}

/* dist.overlap: the buffer cut into ranges started one after another
 * (nonblocking, progressed between starts as between blocks, waited once)
 * must hold the bits of the blocking all-reduce, or on this rank's shard
 * those of the reduce-scatter, whatever the cut. The ranges are started from
 * the top of the buffer down, as backward hands blocks over; 64 pieces of
 * 7 elements leave some empty. */
static void check_overlapped(size_t n, unsigned seed) {
    size_t cap = n ? n : 1;
    float *buf = xmalloc(cap * sizeof(float)), *want = xmalloc(cap * sizeof(float));
    expected_sum(want, n, seed, DIST_SUM);
    size_t b, e;
    dist_shard_range(n, dist_rank(), dist_size(), &b, &e);
    size_t pieces[] = {1, 2, 3, 7, 64};
    for (size_t c = 0; c < sizeof pieces / sizeof *pieces; c++) {
        for (int scatter = 0; scatter < 2; scatter++) {
            input_of(dist_rank(), buf, n, seed);
            size_t k = pieces[c];
            for (size_t j = k; j-- > 0;) { /* piece j of k, from the last down */
                size_t lo, hi;
                dist_shard_range(n, (int)j, (int)k, &lo, &hi);
                dist_reduce_start_f32(buf, lo, hi, scatter ? n : 0);
                dist_reduce_progress();
            }
            dist_reduce_wait();
            check(dist_reduce_pending() == 0, "ranges still pending after the wait", n, k);
            if (scatter)
                check(memcmp(buf + b, want + b, (e - b) * sizeof(float)) == 0,
                      "overlapped reduce-scatter shard differs from the rank-order sums", n, k);
            else
                check(memcmp(buf, want, n * sizeof(float)) == 0,
                      "overlapped all-reduce differs from the rank-order sum", n, k);
        }
    }
    free(buf);
    free(want);
}

static void check_scalars(void) {
    int W = dist_size(), me = dist_rank();
    check(dist_any(0) == 0, "dist_any(0) is not 0", 0, 0);
    check(dist_any(me == W - 1) == 1, "the last rank's stop was not seen", 0, 0);
    check(dist_any(me == 0 ? 5 : 0) == 1, "rank 0's stop (flag 5) was not seen", 0, 0);

    double x = me == 0 ? 1e16 : 0.1 * (me + 1), want = 0;
    for (int q = 0; q < W; q++) want += q == 0 ? 1e16 : 0.1 * (q + 1);
    double got = dist_sum_f64(x);
    check(memcmp(&got, &want, sizeof got) == 0, "dist_sum_f64 differs from the rank-order sum", 0,
          0);
    int64_t big = (int64_t)me * 1000000000000LL + 7, want_i = 0;
    for (int q = 0; q < W; q++) want_i += (int64_t)q * 1000000000000LL + 7;
    check(dist_sum_i64(big) == want_i, "dist_sum_i64 is wrong", 0, 0);

    size_t sizes[] = {1, 1000003};
    for (size_t s = 0; s < 2; s++) {
        unsigned char *bytes = xmalloc(sizes[s]);
        for (size_t i = 0; i < sizes[s]; i++)
            bytes[i] = me == 0 ? (unsigned char)(i * 131 + 7) : 0;
        dist_broadcast(bytes, sizes[s]);
        int ok = 1;
        for (size_t i = 0; i < sizes[s]; i++) ok &= bytes[i] == (unsigned char)(i * 131 + 7);
        check(ok, "broadcast from rank 0 did not arrive", sizes[s], 0);
        free(bytes);
    }
    dist_barrier();
}

/* The last rank reaches each collective 0.3 s after the others: far past the
 * 10 ms the waiting ranks poll busily, far inside the timeout; once with a
 * timeout of 30 s and once with none (0). */
static void check_late_rank(void) {
    int late = dist_rank() == dist_size() - 1;
    for (int k = 0; k < 2; k++) {
        dist_set_timeout(k == 0 ? 30 : 0);
        struct timespec pause = {0, 300 * 1000 * 1000};
        if (late) nanosleep(&pause, NULL);
        check(dist_any(late) == 1, "the late rank's flag was lost", 0, (size_t)k);
        if (late) nanosleep(&pause, NULL);
        check_allreduce(1000, 5, DIST_SUM, 500u + (unsigned)k);
        if (late) nanosleep(&pause, NULL);
        dist_barrier();
    }
    dist_set_timeout(DIST_DEFAULT_TIMEOUT_S);
}

int main(void) {
    if (dist_init(0) != 0) {
        fprintf(stderr, "dist_check: %s\n", err_msg());
        dist_abort(1);
    }
    if (!dist_mpi_active()) {
        fprintf(stderr, "dist_check: not started by mpirun (world %d)\n", dist_size());
        return 1;
    }
    size_t sizes[] = {0, 1, 2, 3, 7, 1000, 100003};
    size_t rounds[] = {(size_t)8 << 20, 5, 1};
    unsigned seed = 1;
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
        for (size_t r = 0; r < sizeof rounds / sizeof *rounds; r++) {
            if (sizes[s] > 1000 && rounds[r] < 100) continue; /* slow and adds nothing */
            check_allreduce(sizes[s], rounds[r], DIST_SUM, seed++);
            check_allreduce(sizes[s], rounds[r], DIST_AVG, seed++);
            check_reduce_scatter_add(sizes[s], rounds[r], seed++);
            check_all_gather_range(sizes[s], rounds[r]);
        }
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) check_overlapped(sizes[s], seed++);
    check_scalars();
    check_late_rank();

    int64_t pass = dist_sum_i64(n_pass), fail = dist_sum_i64(n_fail);
    if (dist_is_main())
        printf("dist_check np=%d (%s): checks: %lld passed, %lld failed\n", dist_size(),
               dist_world()->launcher, (long long)pass, (long long)fail);
    dist_finalize();
    return fail ? 1 : 0;
}
