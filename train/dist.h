/* train/dist.h — data parallelism: who am I, and the collectives the trainer
 * needs to keep W replicas of the model in step.
 *
 * Three layers, each usable on its own:
 *
 *  1. World discovery (dist_discover) reads the launcher's environment only:
 *     Open MPI's mpirun, MPICH/Hydra (PMI_*), Slurm's srun, or torchrun-style
 *     RANK/WORLD_SIZE. No variable at all means one process.
 *
 *  2. Host collectives on CPU memory (dist_allreduce_f32, dist_broadcast,
 *     dist_any, ...). Under an MPI launcher they go through MPI; on a GPU run
 *     without MPI (torchrun-style) through NCCL, staged via device memory; with
 *     one process they are no-ops. The fp32 reductions over MPI are
 *     deterministic: every element is summed by one owner rank in rank order
 *     0, 1, ..., W-1 and then copied to the others, so every rank holds the
 *     same bits, equal to a serial left-to-right sum over ranks, whatever the
 *     message size or MPI algorithm selection.
 *
 *  3. Device collectives (built with RETORT_CUDA): bucketed NCCL all-reduce
 *     of gradients on a stream of its own, so it overlaps the rest of the
 *     backward pass, and dist_wait() with a hang timeout.
 *
 * Collectives are called by every rank in the same order with the same sizes.
 * A failing collective (MPI or NCCL error, a timeout) is fatal: it prints
 * what failed on which rank and aborts the whole job, because the other ranks
 * could otherwise wait for it forever. A rank that does not reach a
 * collective within dist_set_timeout's seconds (dist.timeout_s) ends the job
 * the same way: over MPI the message names the missing rank; NCCL cannot
 * tell which rank it waits for, so its message says so. Errors in the environment or the launch
 * are returned (-1, err_msg() says what and how to fix it).
 */
#ifndef RETORT_DIST_H
#define RETORT_DIST_H

#include <stddef.h>
#include <stdint.h>

/* ---- world discovery ---- */

#define DIST_DEFAULT_PORT 29500

typedef struct DistWorld {
    int rank, world;             /* 0 <= rank < world */
    int local_rank, local_world; /* on this node; local_world 0 when the launcher
                                    does not say */
    char launcher[16];           /* "single", "openmpi", "mpich", "slurm", "torchrun" */
    char master_addr[256];       /* host of rank 0 for the TCP id exchange; "" when
                                    unknown (only needed for NCCL without MPI) */
    int master_port;             /* MASTER_PORT, default DIST_DEFAULT_PORT */
} DistWorld;

/* Fills *w from the environment. Precedence when several launchers' variables
 * are present: torchrun-style, Open MPI, MPICH/PMI, then Slurm. Slurm's
 * variables are those of the enclosing allocation when mpirun or torchrun runs
 * inside an sbatch script, so they never conflict with the others; the others
 * must agree on rank and world size when several are set. Returns -1 with the
 * error set on a conflict, a malformed value or a partial set. */
int dist_discover(DistWorld *w);

/* First host of a Slurm hostlist ("gpu[003-010,12],login1" -> "gpu003").
 * 0, or -1 with the error set when it is malformed or does not fit in cap. */
int dist_hostlist_first(const char *list, char *out, size_t cap);

/* The GPU index of this process among the n_devices CUDA devices it sees —
 * the one decision that both the NCCL communicator (dist_init) and the CUDA
 * backend (backend_cuda_select_device) follow, so they cannot disagree. It
 * uses only the launcher view dist_discover made (never LOCAL_RANK & co.
 * again, which a stale or inherited variable would get wrong):
 *  - one process (world 1): device 0;
 *  - one visible device: device 0 — the launcher or CUDA_VISIBLE_DEVICES gave
 *    each rank its own (if the ranks really share one GPU, NCCL refuses the
 *    duplicate at communicator creation);
 *  - otherwise device local_rank. More ranks on the node (local_world, or the
 *    local rank itself when the launcher does not say) than visible devices is
 *    refused: NCCL cannot put two ranks of one communicator on one GPU, so a
 *    modulo would only move the failure.
 * The index, or -1 with the error set. */
int dist_device_index(const DistWorld *w, int n_devices);

/* The shard [*begin, *end) of n elements that rank owns for ZeRO-1: contiguous,
 * in rank order, sizes differing by at most one (the first n % world ranks get
 * one more). */
void dist_shard_range(size_t n, int rank, int world, size_t *begin, size_t *end);

/* ---- lifetime ---- */

/* Discovers the world and brings up communication:
 *  - MPI_Init_thread (FUNNELED) when launched by mpirun/mpiexec or by srun with
 *    a PMI/PMIx plugin; a plain `retort` never touches MPI;
 *  - with use_cuda (RETORT_CUDA builds) and world > 1: picks this rank's GPU
 *    (dist_device_index), makes it current, hands it to the CUDA backend
 *    (backend_cuda_select_device) and creates the NCCL communicator on it; its
 *    unique id goes from rank 0 over MPI_Bcast when MPI is up, else over TCP to
 *    MASTER_ADDR:MASTER_PORT. With one process the backend keeps device 0.
 * A CPU run with world > 1 needs MPI. Call once, before creating the backend.
 * Returns 0, or -1 with the error set (the caller prints it and exits non-zero;
 * under MPI call dist_abort so the other ranks do not wait). */
int dist_init(int use_cuda);
/* Tears down NCCL and MPI (MPI_Finalize). Safe to call when not initialised. */
void dist_finalize(void);
/* Ends the whole job: aborts NCCL, MPI_Abort under MPI, else exit(code). */
void dist_abort(int code) __attribute__((noreturn));

/* How long a rank waits at a collective for the others (dist.timeout_s):
 * over MPI every collective first checks that every rank arrived (rank 0
 * collects the arrivals, names the ranks still missing after `seconds` and
 * aborts the job; the other ranks give it 5 s more before
 * naming rank 0), and NCCL's waits (dist_wait, the staged host collectives)
 * abort the communicator after `seconds` without progress. 0 waits forever.
 * Waiting ranks poll without holding a core busy after the first 10 ms.
 * Default DIST_DEFAULT_TIMEOUT_S; call it on every rank. */
#define DIST_DEFAULT_TIMEOUT_S 600.0
void dist_set_timeout(double seconds);
double dist_timeout(void);

/* The world of dist_init (a single process before it). */
const DistWorld *dist_world(void);
static inline int dist_rank(void) { return dist_world()->rank; }
static inline int dist_size(void) { return dist_world()->world; }
static inline int dist_is_main(void) { return dist_world()->rank == 0; }
int dist_mpi_active(void);

/* ---- host collectives (every rank calls, same n) ---- */

typedef enum { DIST_SUM = 0, DIST_AVG = 1 } DistOp;

/* buf (n) <- sum (or mean) over ranks, in place; identical bits on every rank. */
void dist_allreduce_f32(float *buf, size_t n, DistOp op);
/* ZeRO-1: afterwards buf[begin, end) of dist_shard_range(n, rank, world) holds
 * the reduced values of this rank's shard; the rest of buf is unspecified. */
void dist_reduce_scatter_f32(float *buf, size_t n, DistOp op);
/* ZeRO-2: src holds this rank's elements [lo, hi) of an n-element layout
 * (src[0] is element lo). Each rank receives, for the part of [lo, hi) inside
 * its shard [b, e) (dist_shard_range(n, rank, world)), the sum over ranks in
 * rank order 0..W-1 (the bits dist_reduce_scatter_f32 gives) and ADDS it into
 * shard[x - b]. With one process, shard[x] += src[x - lo]. Temporary memory
 * is bounded by the round size (dist_set_round_elems). */
void dist_reduce_scatter_add_f32(const float *src, size_t lo, size_t hi, size_t n, float *shard);
/* ZeRO-1: each rank's shard of buf is valid on entry; on return all of buf is,
 * on every rank. */
void dist_all_gather_f32(float *buf, size_t n);
/* ZeRO-3: dst[0, hi - lo) = elements [lo, hi) of a layout of n elements
 * sharded by dist_shard_range, on every rank; `shard` holds this rank's
 * range [b, e) (shard[x - b] is element x), and each rank sends the part of
 * [lo, hi) inside its range. With one process, dst = shard[lo, hi). The MPI
 * path only (CPU backend); temporary memory none, rounds of at most the round
 * size (dist_set_round_elems). */
void dist_all_gather_range_f32(const float *shard, size_t lo, size_t hi, size_t n, float *dst);
/* bytes of buf from rank 0 to every rank. */
void dist_broadcast(void *buf, size_t bytes);
void dist_barrier(void);
/* 1 on every rank when any rank passes a nonzero flag (stop signals, a NaN
 * loss, a failed save), else 0. */
int dist_any(int flag);
/* Sum over ranks of one scalar, the same on every rank (summed in rank order). */
double dist_sum_f64(double x);
int64_t dist_sum_i64(int64_t x);

/* ---- overlapped host reductions (train/dist_async.c; MPI) ---- */

/* Starts summing the fp32 range buf[lo, hi) (host memory) over the ranks, in
 * place, and returns at once; dist_reduce_wait finishes it. The sums are the
 * bits dist_allreduce_f32 (shard_n 0: the whole range on every rank) or
 * dist_reduce_scatter_f32 over a shard_n-element buffer (shard_n > 0: only
 * the part inside this rank's dist_shard_range(shard_n) is summed, the rest
 * of the range is left unspecified) would give, whatever the cut into
 * ranges. buf[lo, hi) must not change until dist_reduce_wait returns. Every
 * rank starts the same ranges in the same order. One process: nothing. */
void dist_reduce_start_f32(float *buf, size_t lo, size_t hi, size_t shard_n);
/* Moves the started reductions on without blocking (MPI moves their data
 * only inside MPI calls): call it between pieces of work. */
void dist_reduce_progress(void);
/* Waits for every reduction started so far (dist.timeout_s bounds the wait;
 * past it the job is aborted). */
void dist_reduce_wait(void);
/* Ranges started and not yet waited for. */
int dist_reduce_pending(void);

/* ---- device collectives (RETORT_CUDA builds with dist_init(1)) ---- */

typedef enum { DIST_F32 = 0, DIST_BF16 = 1 } DistDtype;

/* Starts an in-place all-reduce of n elements of device memory once the work
 * queued so far on the compute stream (retort_stream) is done — e.g. the
 * backward kernels that produced this bucket — on the communication stream.
 * Returns at once. With one process it does nothing (DIST_AVG over one rank is
 * the identity). */
void dist_allreduce_bucket_async(void *dev_ptr, size_t n, DistDtype dtype, DistOp op);
/* Waits for every bucket started so far, then makes the compute stream wait
 * for them too. An NCCL error, or no progress for RETORT_NCCL_TIMEOUT_S
 * seconds (default 600), aborts the communicator and the job, naming the rank. */
void dist_wait(void);

/* ZeRO-1 on GPUs: every rank's pieces of device memory to every rank. Piece
 * k (bytes at dev_ptr, in each rank's own buffer) holds what rank owner
 * computed; every rank passes the same list. One NCCL group of broadcasts
 * on the communication stream, after the work queued so far on the compute
 * stream; returns once the compute stream waits for them (as dist_wait).
 * With one process it does nothing. */
typedef struct {
    void *dev_ptr;
    size_t bytes;
    int owner;
} DistPiece;
void dist_broadcast_pieces(const DistPiece *pieces, int n);

/* ZeRO-2 on GPUs: dist_reduce_scatter_add_f32 on device memory. src (fp32,
 * this rank's elements [lo, hi) of an n-element layout) is scratch: each
 * owner's part of it is summed over the ranks in place (a group of
 * ncclReduce, one per rank whose dist_shard_range shard meets [lo, hi)),
 * and the owner adds that sum into shard[x - b]. It runs on the
 * communication stream after the work queued on the compute stream, which
 * waits for it before anything queued later (src may be overwritten then);
 * dist_wait watches it with the timeout (the optimizer's hook calls it
 * before the next unit's and after the backward's last). NCCL's summation order is not
 * rank order, so the bits may differ from dist_reduce_scatter_add_f32's and
 * from an all-reduce's. With one process it does nothing: the caller adds
 * its own share. Needs dist_init(1) on a CUDA build. */
void dist_reduce_scatter_add_device(float *src, size_t lo, size_t hi, size_t n, float *shard);

/* ZeRO-3 on GPUs: piece k's bytes go from src on rank owner (its own
 * memory; other ranks' src is not read) to dst on every rank, owner
 * included; every rank passes the same list. One NCCL group of broadcasts
 * on the communication stream, after the compute stream's queued work;
 * returns once the compute stream waits for them (as dist_broadcast_pieces).
 * With one process it does nothing: the caller copies. */
typedef struct {
    const void *src;
    void *dst;
    size_t bytes;
    int owner;
} DistGatherPiece;
void dist_gather_pieces(const DistGatherPiece *pieces, int n);

/* ---- building blocks, exposed for tests ---- */

/* Rank 0 listens on port (all interfaces) and sends the `bytes` of buf to each
 * of the world-1 other ranks as they connect; the others connect to addr:port,
 * retrying until timeout_s, and receive them into buf. Used for the 128-byte
 * ncclUniqueId when MPI is not running. 0, or -1 with the error set (naming
 * host, port and rank). */
int dist_tcp_share(void *buf, size_t bytes, int rank, int world, const char *addr, int port,
                   double timeout_s);

/* Largest number of fp32 elements one MPI call moves in the reduce-scatter and
 * all-gather (they work in rounds to bound temporary memory and keep counts in
 * int range). Tests make it small to exercise several rounds. */
void dist_set_round_elems(size_t n);

#endif
