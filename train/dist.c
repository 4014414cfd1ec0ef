/* train/dist.c — see dist.h: world discovery, MPI bring-up, deterministic
 * host collectives, and the TCP rendezvous for NCCL's unique id.
 *
 * The trick that makes the fp32 reductions reproducible: instead of
 * MPI_Allreduce (whose summation order depends on the algorithm Open MPI picks
 * for a message size and rank count), every rank sends each owner its slice of
 * the owner's shard (MPI_Alltoallv), the owner adds the W slices in rank order,
 * and an MPI_Allgatherv copies the sums back. That is a reduce-scatter plus an
 * all-gather — the same bytes on the wire as a ring all-reduce — and gives the
 * ZeRO-1 helpers for free. Both work in rounds of at most round_elems elements
 * so temporary memory stays bounded and MPI's int counts never overflow.
 *
 * A stuck rank must not hang the others (dist.h, dist_set_timeout). Every MPI
 * collective is therefore two phases. Arrival: each rank tells rank 0 which
 * collective it reached (a small point-to-point message on a communicator of
 * its own), and rank 0 answers every rank once all have; rank 0 thus knows
 * which ranks are missing when the timeout passes, names them and aborts the
 * job, and the others wait a little longer (ARRIVE_GRACE_S, 5 s) before naming rank
 * 0 itself. Then the data moves through the non-blocking form of the
 * collective (MPI_Ialltoallv, ...), every rank being there. Both phases wait
 * by polling MPI_Test, busily at first and then napping between polls: the
 * arrival after 10 ms, so a rank that waits for a slow or stopped one idles
 * instead of holding a core at 100%; the data phase only after 1 s, since
 * there the wait is the transfer itself, which this rank's polls drive.
 *
 * MPI is initialised only when an MPI launcher started us (dist_init), so a
 * plain `retort` and the Criterion tests never start Open MPI's runtime.
 * The TCP rendezvous (dist_tcp_share) is in train/dist_tcp.c, the NCCL half in
 * train/dist_nccl.cu.
 */
#include "train/dist.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/util.h"
#ifdef RETORT_CUDA
#include "model/backend.h"
#include "train/dist_nccl.h"
#endif

static DistWorld g_world = {0, 1, 0, 1, "single", "", DIST_DEFAULT_PORT};
static int g_mpi_active, g_mpi_owned, g_nccl_active;
static size_t g_round_elems = (size_t)8 << 20; /* 32 MiB of fp32 per round */
static double g_timeout_s = DIST_DEFAULT_TIMEOUT_S; /* dist_set_timeout; 0 = forever */
static MPI_Comm g_arrive_comm = MPI_COMM_NULL;  /* the arrival messages (a dup of WORLD) */
static int64_t g_collectives;                   /* MPI collectives called so far */

/* ------------------------------------------------------------ environment */

/* 1 and *out when name is set to a whole decimal number, 0 when unset, -1 with
 * the error set when it is set to anything else. */
static int env_int(const char *name, int *out) {
    const char *s = getenv(name);
    if (!s) return 0;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || errno || v < INT_MIN || v > INT_MAX)
        return err_set("environment variable %s=\"%s\" is not an integer; unset it or fix the "
                       "launcher",
                       name, s);
    *out = (int)v;
    return 1;
}

/* What one launcher's variables say; present = 0 when none of them is set. */
typedef struct {
    const char *name;
    int present, rank, world, local_rank, local_world;
    const char *rank_var, *world_var;
} LauncherView;

/* Reads rank/world (both or neither) and the optional local rank/size. */
static int read_launcher(LauncherView *v, const char *name, const char *rank_var,
                         const char *world_var, const char *local_rank_var,
                         const char *local_world_var) {
    memset(v, 0, sizeof *v);
    v->name = name;
    v->rank_var = rank_var;
    v->world_var = world_var;
    v->local_rank = -1;
    int hr = env_int(rank_var, &v->rank), hw = env_int(world_var, &v->world);
    if (hr < 0 || hw < 0) return -1;
    if (hr != hw)
        return err_set("%s is set but %s is not (%s launch variables); set both or neither",
                       hr ? rank_var : world_var, hr ? world_var : rank_var, name);
    if (!hr) return 0;
    v->present = 1;
    if (local_rank_var && env_int(local_rank_var, &v->local_rank) < 0) return -1;
    if (local_world_var && env_int(local_world_var, &v->local_world) < 0) return -1;
    return 0;
}

/* Tasks on node `node` from a Slurm tasks-per-node list such as "4(x2),3":
 * the count, or 0 when the list is absent or does not reach that node. */
static int slurm_tasks_on_node(const char *list, int node) {
    if (!list || node < 0) return 0;
    const char *p = list;
    int index = 0;
    while (*p) {
        char *end;
        long count = strtol(p, &end, 10), repeat = 1;
        if (end == p || count < 0) return 0;
        p = end;
        if (strncmp(p, "(x", 2) == 0) {
            repeat = strtol(p + 2, &end, 10);
            if (end == p + 2 || *end != ')' || repeat < 1) return 0;
            p = end + 1;
        }
        if (node < index + repeat) return (int)count;
        index += (int)repeat;
        if (*p == ',') p++;
        else if (*p) return 0;
    }
    return 0;
}

static int read_slurm(LauncherView *v) {
    memset(v, 0, sizeof *v);
    v->name = "slurm";
    v->rank_var = "SLURM_PROCID";
    v->local_rank = -1;
    /* Only an srun step counts: a batch script's SLURM_NTASKS is the
     * allocation's, while only one process (the script) is running. */
    if (!getenv("SLURM_STEP_NUM_TASKS") && !getenv("SLURM_STEP_ID") && !getenv("SLURM_STEPID"))
        return 0;
    int hr = env_int("SLURM_PROCID", &v->rank);
    v->world_var = getenv("SLURM_STEP_NUM_TASKS") ? "SLURM_STEP_NUM_TASKS" : "SLURM_NTASKS";
    int hw = env_int(v->world_var, &v->world);
    if (hr < 0 || hw < 0) return -1;
    if (!hr || !hw) return 0;
    v->present = 1;
    if (env_int("SLURM_LOCALID", &v->local_rank) < 0) return -1;
    int node = -1;
    if (env_int("SLURM_NODEID", &node) < 0) return -1;
    const char *tpn = getenv("SLURM_STEP_TASKS_PER_NODE");
    v->local_world = slurm_tasks_on_node(tpn ? tpn : getenv("SLURM_TASKS_PER_NODE"), node);
    return 0;
}

int dist_hostlist_first(const char *list, char *out, size_t cap) {
    size_t n = 0;
    const char *p = list;
    if (!list || !*list) return err_set("empty Slurm node list");
    while (*p && *p != ',') {
        if (*p == '[') {
            /* keep the first number of the range as written (zero padding included) */
            p++;
            if (!(*p >= '0' && *p <= '9'))
                return err_set("malformed Slurm node list \"%s\"; set MASTER_ADDR", list);
            while (*p >= '0' && *p <= '9') {
                if (n + 1 >= cap) return err_set("host name in \"%s\" is too long", list);
                out[n++] = *p++;
            }
            while (*p && *p != ']') p++;
            if (*p != ']')
                return err_set("malformed Slurm node list \"%s\" (no ']'); set MASTER_ADDR",
                               list);
            p++;
            continue;
        }
        if (n + 1 >= cap) return err_set("host name in \"%s\" is too long", list);
        out[n++] = *p++;
    }
    if (n == 0) return err_set("malformed Slurm node list \"%s\"; set MASTER_ADDR", list);
    out[n] = '\0';
    return 0;
}

static int check_view(const LauncherView *v) {
    if (v->world < 1)
        return err_set("%s=%d: the world size must be at least 1 (%s launch)", v->world_var,
                       v->world, v->name);
    if (v->rank < 0 || v->rank >= v->world)
        return err_set("%s=%d is outside [0, %s=%d) (%s launch)", v->rank_var, v->rank,
                       v->world_var, v->world, v->name);
    if (v->local_world < 0 || v->local_world > v->world)
        return err_set("local world size %d of the %s launch is outside [0, %d]",
                       v->local_world, v->name, v->world);
    if (v->local_rank < 0 || (v->local_world > 0 && v->local_rank >= v->local_world))
        return err_set("local rank %d of the %s launch is outside [0, %d)", v->local_rank,
                       v->name, v->local_world);
    return 0;
}

int dist_discover(DistWorld *w) {
    LauncherView views[4];
    if (read_launcher(&views[0], "torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK",
                      "LOCAL_WORLD_SIZE") < 0 ||
        read_launcher(&views[1], "openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
                      "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE") < 0 ||
        read_launcher(&views[2], "mpich", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID",
                      "MPI_LOCALNRANKS") < 0 ||
        read_slurm(&views[3]) < 0)
        return -1;

    const LauncherView *chosen = NULL;
    for (int i = 0; i < 4; i++) {
        if (!views[i].present) continue;
        if (!chosen) {
            chosen = &views[i];
            continue;
        }
        if (i == 3) break; /* Slurm may describe the enclosing allocation */
        if (views[i].rank != chosen->rank || views[i].world != chosen->world)
            return err_set("conflicting launch variables: %s=%d %s=%d (%s) but %s=%d %s=%d (%s); "
                           "unset the stale ones (e.g. an exported RANK in the shell)",
                           chosen->rank_var, chosen->rank, chosen->world_var, chosen->world,
                           chosen->name, views[i].rank_var, views[i].rank, views[i].world_var,
                           views[i].world, views[i].name);
    }

    memset(w, 0, sizeof *w);
    if (!chosen) {
        *w = (DistWorld){0, 1, 0, 1, "single", "127.0.0.1", DIST_DEFAULT_PORT};
    } else {
        LauncherView v = *chosen;
        if (v.local_rank < 0) {
            if (v.world > 1)
                return err_set("%s=%d and %s=%d are set but not the local rank (%s launch); "
                               "set it (LOCAL_RANK for torchrun-style variables)",
                               v.rank_var, v.rank, v.world_var, v.world, v.name);
            v.local_rank = 0;
        }
        if (check_view(&v) < 0) return -1;
        w->rank = v.rank;
        w->world = v.world;
        w->local_rank = v.local_rank;
        w->local_world = v.local_world;
        snprintf(w->launcher, sizeof w->launcher, "%s", v.name);
    }

    w->master_port = DIST_DEFAULT_PORT;
    int port = 0, has_port = env_int("MASTER_PORT", &port);
    if (has_port < 0) return -1;
    if (has_port) {
        if (port < 1 || port > 65535)
            return err_set("MASTER_PORT=%d is not a TCP port (1..65535)", port);
        w->master_port = port;
    }
    const char *addr = getenv("MASTER_ADDR");
    const char *nodes = getenv("SLURM_STEP_NODELIST");
    if (!nodes) nodes = getenv("SLURM_NODELIST");
    if (addr && *addr) {
        if (strlen(addr) >= sizeof w->master_addr)
            return err_set("MASTER_ADDR is longer than %zu characters",
                           sizeof w->master_addr - 1);
        snprintf(w->master_addr, sizeof w->master_addr, "%s", addr);
    } else if (nodes && *nodes) {
        if (dist_hostlist_first(nodes, w->master_addr, sizeof w->master_addr) < 0) return -1;
    } else if (w->world == 1 || w->local_world == w->world) {
        snprintf(w->master_addr, sizeof w->master_addr, "127.0.0.1"); /* one node */
    }
    return 0;
}

int dist_device_index(const DistWorld *w, int n_devices) {
    if (n_devices < 1)
        return err_set("rank %d of %d (%s launch): no CUDA device is visible; check nvidia-smi "
                       "and CUDA_VISIBLE_DEVICES, or use --device cpu",
                       w->rank, w->world, w->launcher);
    if (w->world == 1 || n_devices == 1) return 0;
    int ranks_here = w->local_world > 0 ? w->local_world : w->local_rank + 1;
    if (ranks_here > n_devices)
        return err_set("%s%d ranks on this node (local rank %d, %s launch) but %d GPUs are "
                       "visible; start at most %d ranks per node, or give each rank one GPU "
                       "with CUDA_VISIBLE_DEVICES",
                       w->local_world > 0 ? "" : "at least ", ranks_here, w->local_rank,
                       w->launcher, n_devices, n_devices);
    return w->local_rank;
}

void dist_shard_range(size_t n, int rank, int world, size_t *begin, size_t *end) {
    size_t W = (size_t)world, r = (size_t)rank, base = n / W, extra = n % W;
    *begin = r * base + (r < extra ? r : extra);
    *end = *begin + base + (r < extra ? 1 : 0);
}

/* ------------------------------------------------------------ lifetime */

const DistWorld *dist_world(void) { return &g_world; }

void dist_set_timeout(double seconds) {
    g_timeout_s = seconds > 0 ? seconds : 0;
#ifdef RETORT_CUDA
    dist_nccl_set_timeout(g_timeout_s);
#endif
}

double dist_timeout(void) { return g_timeout_s; }
int dist_mpi_active(void) { return g_mpi_active; }
void dist_set_round_elems(size_t n) { g_round_elems = n ? n : 1; }

static int launched_by_mpi(const DistWorld *w) {
    if (!strcmp(w->launcher, "openmpi") || !strcmp(w->launcher, "mpich")) return 1;
    /* srun --mpi=pmix / pmi2 lets MPI_Init find its peers through Slurm */
    return !strcmp(w->launcher, "slurm") && (getenv("PMIX_RANK") || getenv("PMI_RANK"));
}

static int mpi_start(const DistWorld *w) {
    int already = 0;
    MPI_Initialized(&already);
    if (!already) {
        int provided = 0;
        if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
            return err_set("MPI_Init_thread failed (%s launch, rank %d of %d)", w->launcher,
                           w->rank, w->world);
        g_mpi_owned = 1;
    }
    g_mpi_active = 1;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    int rank = -1, size = -1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (rank != w->rank || size != w->world)
        return err_set("MPI sees rank %d of %d but the %s launch variables say rank %d of %d; "
                       "the launcher and the MPI library (Open MPI) do not match — start with "
                       "Open MPI's mpirun or srun --mpi=pmix",
                       rank, size, w->launcher, w->rank, w->world);
    if (MPI_Comm_dup(MPI_COMM_WORLD, &g_arrive_comm) != MPI_SUCCESS)
        return err_set("rank %d: MPI_Comm_dup failed", w->rank);
    MPI_Comm_set_errhandler(g_arrive_comm, MPI_ERRORS_RETURN);
    return 0;
}

#ifdef RETORT_CUDA
/* RETORT_NCCL_TIMEOUT_S: seconds without progress before the rendezvous or a
 * collective is declared hung, until the trainer sets dist.timeout_s
 * (dist_set_timeout) for the run itself. */
static int nccl_timeout(double *out) {
    const char *s = getenv("RETORT_NCCL_TIMEOUT_S");
    *out = 600;
    if (!s) return 0;
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || !(v > 0))
        return err_set("RETORT_NCCL_TIMEOUT_S=\"%s\" is not a positive number of seconds", s);
    *out = v;
    return 0;
}

static int nccl_start(const DistWorld *w) {
    double timeout_s;
    unsigned char id[DIST_NCCL_ID_BYTES];
    memset(id, 0, sizeof id);
    if (nccl_timeout(&timeout_s) < 0) return -1;
    /* one decision for the communicator and the backend (see dist_device_index) */
    int n_devices = backend_cuda_device_count();
    if (n_devices < 0) return err_set("rank %d: %s", w->rank, err_msg());
    int device = dist_device_index(w, n_devices);
    if (device < 0 || dist_nccl_select_device(device) < 0 ||
        backend_cuda_select_device(device) < 0)
        return -1;
    /* every rank takes part in the exchange even if rank 0 failed, so nobody
     * waits for an id that will not come: a zero id means "rank 0 failed" */
    int failed = w->rank == 0 && dist_nccl_unique_id(id) < 0;
    if (g_mpi_active) {
        if (MPI_Bcast(id, DIST_NCCL_ID_BYTES, MPI_BYTE, 0, MPI_COMM_WORLD) != MPI_SUCCESS)
            return err_set("rank %d: MPI_Bcast of the NCCL unique id failed", w->rank);
    } else if (!failed) {
        if (!w->master_addr[0])
            return err_set("rank %d: MASTER_ADDR is not set; the ranks span several nodes and "
                           "need rank 0's host name for the NCCL rendezvous",
                           w->rank);
        if (dist_tcp_share(id, DIST_NCCL_ID_BYTES, w->rank, w->world, w->master_addr,
                           w->master_port, timeout_s) < 0)
            return -1;
    }
    if (failed) return -1;
    int nonzero = 0;
    for (int i = 0; i < DIST_NCCL_ID_BYTES; i++) nonzero |= id[i];
    if (!nonzero) return err_set("rank %d: rank 0 could not create the NCCL id", w->rank);
    if (dist_nccl_init(id, w->rank, w->world, timeout_s) < 0) return -1;
    g_nccl_active = 1;
    return 0;
}
#endif

int dist_init(int use_cuda) {
    DistWorld w;
    if (dist_discover(&w) < 0) return -1;
    g_world = w;
    if (launched_by_mpi(&w) && mpi_start(&w) < 0) return -1;
    if (w.world == 1) return 0;
    if (use_cuda) {
#ifdef RETORT_CUDA
        return nccl_start(&w);
#else
        return err_set("this retort was built without CUDA, so it cannot use NCCL");
#endif
    }
    if (!g_mpi_active)
        return err_set("rank %d of %d (%s launch): data parallelism on the CPU needs MPI; "
                       "start with mpirun -np N, or srun --mpi=pmix",
                       w.rank, w.world, w.launcher);
    return 0;
}

void dist_finalize(void) {
#ifdef RETORT_CUDA
    if (g_nccl_active) dist_nccl_finalize();
#endif
    g_nccl_active = 0;
    if (g_arrive_comm != MPI_COMM_NULL) MPI_Comm_free(&g_arrive_comm);
    if (g_mpi_owned) {
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (!finalized) MPI_Finalize();
    }
    g_mpi_active = g_mpi_owned = 0;
}

void dist_abort(int code) {
    fflush(stdout);
    fflush(stderr);
#ifdef RETORT_CUDA
    if (g_nccl_active) dist_nccl_abort();
#endif
    if (g_mpi_active) MPI_Abort(MPI_COMM_WORLD, code ? code : 1);
    exit(code ? code : 1);
}

/* ------------------------------------------------------------ MPI collectives */

static void mpi_check(int rc, const char *call, const char *where) {
    if (rc == MPI_SUCCESS) return;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    fprintf(stderr, "retort: rank %d: %s failed in %s: %s; aborting the job\n", g_world.rank,
            call, where, msg);
    dist_abort(1);
}

/* ------------------------------------------------------------ waiting with a deadline */

#define ARRIVE_SPIN_S 0.01  /* arrivals: busy polling first, then naps (ranks in step
                               arrive well within it; a late one is waited for idly) */
#define DATA_SPIN_S 1.0     /* data: every rank is there, so the wait is the transfer
                               itself, which needs this rank to poll: busy for a second
                               (a round of at most 32 MiB takes milliseconds) */
#define MAX_NAP_NS 2000000L /* naps double up to 2 ms between polls */
#define ARRIVE_GRACE_S 5.0  /* ranks > 0 wait this much longer than rank 0, which names
                               the missing ranks first */
enum { TAG_ARRIVE = 1, TAG_GO = 2 };

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Polls the n requests until all are done (0) or the deadline passes (-1;
 * deadline 0: none): busily for spin_s, then napping between polls. done[i]
 * says which finished (may be NULL). */
static int mpi_wait_all(int n, MPI_Request *reqs, int *done, double spin_s, double deadline,
                        const char *call, const char *where) {
    double start = now_seconds();
    long nap_ns = 0;
    for (unsigned long poll = 0;; poll++) {
        int all = 1;
        for (int i = 0; i < n; i++) {
            if (reqs[i] == MPI_REQUEST_NULL) continue;
            int flag = 0;
            mpi_check(MPI_Test(&reqs[i], &flag, MPI_STATUS_IGNORE), call, where);
            if (flag && done) done[i] = 1;
            all &= flag;
        }
        if (all) return 0;
        if (nap_ns == 0 && poll % 64 != 63) continue; /* spinning: read the clock now and then */
        double now = now_seconds();
        if (deadline > 0 && now > deadline) return -1;
        if (now - start < spin_s) continue;
        nap_ns = nap_ns ? (nap_ns * 2 < MAX_NAP_NS ? nap_ns * 2 : MAX_NAP_NS) : 20000;
        struct timespec nap = {0, nap_ns};
        nanosleep(&nap, NULL);
    }
}

/* Names the ranks that are missing and ends the job. */
static void __attribute__((noreturn))
arrival_timeout(const char *who, const char *where, double start, double cpu0) {
    fprintf(stderr,
            "retort: rank %d: %s did not reach %s (collective #%lld) within dist.timeout_s=%g "
            "s: it is stopped, hung, dead or far slower than the others (this rank waited "
            "%.1f s, %.2f s of CPU). Aborting the job; raise dist.timeout_s if that rank "
            "only needs longer (0 waits forever)\n",
            g_world.rank, who, where, (long long)g_collectives, g_timeout_s,
            now_seconds() - start, cpu_seconds() - cpu0);
    dist_abort(1);
}

/* Phase one of every MPI collective (see the top of this file): returns once
 * every rank has reached collective number g_collectives, or aborts the job
 * naming the missing ranks after dist.timeout_s. */
static void mpi_arrive(const char *where) {
    int64_t me = ++g_collectives;
    const int W = g_world.world;
    double start = now_seconds(), cpu0 = cpu_seconds();
    double deadline = g_timeout_s > 0 ? start + g_timeout_s : 0;
    if (g_world.rank == 0) {
        int64_t *seen = xcalloc((size_t)W, sizeof(int64_t));
        MPI_Request *reqs = xmalloc((size_t)W * sizeof(MPI_Request));
        int *done = xcalloc((size_t)W, sizeof(int));
        reqs[0] = MPI_REQUEST_NULL;
        done[0] = 1;
        for (int q = 1; q < W; q++)
            mpi_check(MPI_Irecv(&seen[q], 1, MPI_INT64_T, q, TAG_ARRIVE, g_arrive_comm, &reqs[q]),
                      "MPI_Irecv", where);
        if (mpi_wait_all(W, reqs, done, ARRIVE_SPIN_S, deadline, "MPI_Irecv", where) != 0) {
            char who[512];
            size_t len = 0;
            int missing = 0;
            for (int q = 1; q < W; q++)
                if (!done[q] && len < sizeof who)
                    len += (size_t)snprintf(who + len, sizeof who - len, "%s%d",
                                            missing++ ? ", " : "", q);
            char label[560];
            snprintf(label, sizeof label, "rank%s %s", missing > 1 ? "s" : "", who);
            arrival_timeout(label, where, start, cpu0);
        }
        for (int q = 1; q < W; q++)
            if (seen[q] != me) {
                fprintf(stderr, "retort: rank 0: rank %d reached its collective #%lld while rank "
                        "0 is at #%lld (%s): the ranks call collectives in different orders, a "
                        "bug in retort; aborting the job\n",
                        q, (long long)seen[q], (long long)me, where);
                dist_abort(1);
            }
        for (int q = 1; q < W; q++)
            mpi_check(MPI_Isend(&me, 1, MPI_INT64_T, q, TAG_GO, g_arrive_comm, &reqs[q]),
                      "MPI_Isend", where);
        if (mpi_wait_all(W, reqs, NULL, ARRIVE_SPIN_S, deadline, "MPI_Isend", where) != 0)
            arrival_timeout("a rank", where, start, cpu0);
        free(done);
        free(reqs);
        free(seen);
        return;
    }
    int64_t go = 0;
    MPI_Request reqs[2];
    mpi_check(MPI_Isend(&me, 1, MPI_INT64_T, 0, TAG_ARRIVE, g_arrive_comm, &reqs[0]), "MPI_Isend",
              where);
    mpi_check(MPI_Irecv(&go, 1, MPI_INT64_T, 0, TAG_GO, g_arrive_comm, &reqs[1]), "MPI_Irecv",
              where);
    if (mpi_wait_all(2, reqs, NULL, ARRIVE_SPIN_S, deadline > 0 ? deadline + ARRIVE_GRACE_S : 0,
                     "MPI_Irecv", where) != 0)
        arrival_timeout("rank 0 (which gathers every rank's arrival, so it may itself wait for "
                        "another)",
                        where, start, cpu0);
}

/* Phase two: waits for a non-blocking collective that every rank reached. */
static void mpi_finish(MPI_Request *req, const char *call, const char *where) {
    double deadline = g_timeout_s > 0 ? now_seconds() + g_timeout_s : 0;
    if (mpi_wait_all(1, req, NULL, DATA_SPIN_S, deadline, call, where) == 0) return;
    fprintf(stderr, "retort: rank %d: %s in %s did not finish within dist.timeout_s=%g s "
            "although every rank had reached it: a rank stopped or died during it; aborting "
            "the job\n", g_world.rank, call, where, g_timeout_s);
    dist_abort(1);
}

/* The shard of every rank and, for round k, its slice [off, off+len). */
typedef struct {
    int W;
    size_t per_round;   /* slice length per rank per round */
    size_t *begin, *end;
    int *counts, *displs;
} Rounds;

static Rounds rounds_make(size_t n) {
    Rounds r;
    r.W = g_world.world;
    r.begin = xmalloc((size_t)r.W * sizeof(size_t));
    r.end = xmalloc((size_t)r.W * sizeof(size_t));
    r.counts = xmalloc((size_t)r.W * sizeof(int));
    r.displs = xmalloc((size_t)r.W * sizeof(int));
    for (int q = 0; q < r.W; q++) dist_shard_range(n, q, r.W, &r.begin[q], &r.end[q]);
    size_t longest = r.end[0] - r.begin[0]; /* rank 0's shard is never shorter */
    r.per_round = g_round_elems / (size_t)r.W;
    if (r.per_round < 1) r.per_round = 1;
    if (r.per_round > longest) r.per_round = longest ? longest : 1;
    if (r.per_round > (size_t)INT_MAX / (size_t)r.W) r.per_round = (size_t)INT_MAX / (size_t)r.W;
    return r;
}

static size_t rounds_count(const Rounds *r) {
    size_t longest = r->end[0] - r->begin[0];
    return (longest + r->per_round - 1) / r->per_round;
}

/* Slice of rank q's shard in round k: offset into the buffer and length. */
static size_t slice(const Rounds *r, int q, size_t k, size_t *off) {
    size_t o = r->begin[q] + k * r->per_round;
    *off = o;
    return o < r->end[q] ? (r->end[q] - o < r->per_round ? r->end[q] - o : r->per_round) : 0;
}

static void rounds_free(Rounds *r) {
    free(r->begin);
    free(r->end);
    free(r->counts);
    free(r->displs);
}

static void mpi_reduce_scatter_f32(float *buf, size_t n, DistOp op) {
    Rounds r = rounds_make(n);
    const int W = r.W, me = g_world.rank;
    const size_t R = r.per_round;
    float *send = xmalloc((size_t)W * R * sizeof(float));
    float *recv = xmalloc((size_t)W * R * sizeof(float));
    int *rcounts = xmalloc((size_t)W * sizeof(int));
    size_t n_rounds = rounds_count(&r);
    for (size_t k = 0; k < n_rounds; k++) {
        size_t off, my_off, my_len = slice(&r, me, k, &my_off);
        for (int q = 0; q < W; q++) {
            size_t len = slice(&r, q, k, &off);
            if (len) memcpy(send + (size_t)q * R, buf + off, len * sizeof(float));
            r.counts[q] = (int)len;
            r.displs[q] = (int)((size_t)q * R);
            rcounts[q] = (int)my_len;
        }
        MPI_Request req;
        mpi_check(MPI_Ialltoallv(send, r.counts, r.displs, MPI_FLOAT, recv, rcounts, r.displs,
                                 MPI_FLOAT, MPI_COMM_WORLD, &req),
                  "MPI_Ialltoallv", "dist_reduce_scatter_f32");
        mpi_finish(&req, "MPI_Ialltoallv", "dist_reduce_scatter_f32");
        /* the owner sums in rank order: the result does not depend on MPI */
        for (size_t i = 0; i < my_len; i++) {
            float s = recv[i];
            for (int q = 1; q < W; q++) s += recv[(size_t)q * R + i];
            buf[my_off + i] = op == DIST_AVG ? s / (float)W : s;
        }
    }
    free(send);
    free(recv);
    free(rcounts);
    rounds_free(&r);
}

static void mpi_all_gather_f32(float *buf, size_t n) {
    Rounds r = rounds_make(n);
    const int W = r.W, me = g_world.rank;
    const size_t R = r.per_round;
    float *recv = xmalloc((size_t)W * R * sizeof(float));
    size_t n_rounds = rounds_count(&r);
    for (size_t k = 0; k < n_rounds; k++) {
        size_t off, my_off, my_len = slice(&r, me, k, &my_off);
        for (int q = 0; q < W; q++) {
            r.counts[q] = (int)slice(&r, q, k, &off);
            r.displs[q] = (int)((size_t)q * R);
        }
        MPI_Request req;
        mpi_check(MPI_Iallgatherv(my_len ? buf + my_off : buf, (int)my_len, MPI_FLOAT, recv,
                                  r.counts, r.displs, MPI_FLOAT, MPI_COMM_WORLD, &req),
                  "MPI_Iallgatherv", "dist_all_gather_f32");
        mpi_finish(&req, "MPI_Iallgatherv", "dist_all_gather_f32");
        for (int q = 0; q < W; q++) {
            size_t len = slice(&r, q, k, &off);
            if (q != me && len) memcpy(buf + off, recv + (size_t)q * R, len * sizeof(float));
        }
    }
    free(recv);
    rounds_free(&r);
}

/* The part [*o, *o + len) of [lo, hi) inside [b, e); len 0 when none. */
static size_t clip_range(size_t lo, size_t hi, size_t b, size_t e, size_t *o) {
    size_t a = lo > b ? lo : b, z = hi < e ? hi : e;
    *o = a;
    return z > a ? z - a : 0;
}

/* Rank q's piece of [lo, hi) is the part inside its shard; the pieces are in
 * rank order, so each rank sends straight out of src. Round k moves at most
 * R elements of each piece. */
static void mpi_reduce_scatter_add_f32(const float *src, size_t lo, size_t hi, size_t n,
                                       float *shard) {
    Rounds r = rounds_make(n);
    const int W = r.W, me = g_world.rank;
    size_t R = g_round_elems / (size_t)W;
    if (R < 1) R = 1;
    if (R > (size_t)INT_MAX / (size_t)W) R = (size_t)INT_MAX / (size_t)W;
    size_t *po = xmalloc((size_t)W * sizeof(size_t)), *pl = xmalloc((size_t)W * sizeof(size_t));
    size_t longest = 0;
    for (int q = 0; q < W; q++) {
        pl[q] = clip_range(lo, hi, r.begin[q], r.end[q], &po[q]);
        if (pl[q] > longest) longest = pl[q];
    }
    size_t mine = pl[me] < R ? pl[me] : R;
    float *recv = xmalloc((size_t)W * (mine ? mine : 1) * sizeof(float));
    int *sdispls = xmalloc((size_t)W * sizeof(int)), *rcounts = xmalloc((size_t)W * sizeof(int));
    float *send_base = (float *)src; /* MPI's send buffer is not const in older headers */
    size_t n_rounds = (longest + R - 1) / R;
    for (size_t k = 0; k < n_rounds; k++) {
        size_t my_len = pl[me] > k * R ? (pl[me] - k * R < R ? pl[me] - k * R : R) : 0;
        for (int q = 0; q < W; q++) {
            size_t len = pl[q] > k * R ? (pl[q] - k * R < R ? pl[q] - k * R : R) : 0;
            r.counts[q] = (int)len;
            /* offsets into src stay below INT_MAX: src is one unit, under 2^31 floats */
            sdispls[q] = len ? (int)(po[q] + k * R - lo) : 0;
            rcounts[q] = (int)my_len;
            r.displs[q] = (int)((size_t)q * (mine ? mine : 1));
        }
        MPI_Request req;
        mpi_check(MPI_Ialltoallv(send_base, r.counts, sdispls, MPI_FLOAT, recv, rcounts, r.displs,
                                 MPI_FLOAT, MPI_COMM_WORLD, &req),
                  "MPI_Ialltoallv", "dist_reduce_scatter_add_f32");
        mpi_finish(&req, "MPI_Ialltoallv", "dist_reduce_scatter_add_f32");
        /* the owner sums in rank order, as mpi_reduce_scatter_f32, then adds */
        float *dst = shard + (po[me] + k * R - r.begin[me]);
        for (size_t i = 0; i < my_len; i++) {
            float s = recv[i];
            for (int q = 1; q < W; q++) s += recv[(size_t)q * mine + i];
            dst[i] += s;
        }
    }
    free(po);
    free(pl);
    free(recv);
    free(sdispls);
    free(rcounts);
    rounds_free(&r);
}

/* Which transport the host collectives use right now. */
enum { VIA_NONE, VIA_MPI, VIA_NCCL };
static int host_via(void) {
    if (g_world.world == 1) return VIA_NONE;
    if (g_mpi_active) return VIA_MPI;
    if (g_nccl_active) return VIA_NCCL;
    fprintf(stderr, "retort: rank %d: a collective was called before dist_init succeeded\n",
            g_world.rank);
    dist_abort(1);
}

void dist_reduce_scatter_f32(float *buf, size_t n, DistOp op) {
    switch (host_via()) {
    case VIA_MPI:
        mpi_arrive("dist_reduce_scatter_f32");
        mpi_reduce_scatter_f32(buf, n, op);
        break;
#ifdef RETORT_CUDA
    case VIA_NCCL: dist_nccl_host_allreduce(buf, n, DIST_HOST_F32, op); break;
#endif
    default: break;
    }
}

void dist_reduce_scatter_add_f32(const float *src, size_t lo, size_t hi, size_t n, float *shard) {
    switch (host_via()) {
    case VIA_MPI:
        mpi_arrive("dist_reduce_scatter_add_f32");
        mpi_reduce_scatter_add_f32(src, lo, hi, n, shard);
        break;
#ifdef RETORT_CUDA
    case VIA_NCCL: { /* the summed range, then this rank's part of it */
        float *tmp = xmalloc((hi > lo ? hi - lo : 1) * sizeof(float));
        memcpy(tmp, src, (hi - lo) * sizeof(float));
        dist_nccl_host_allreduce(tmp, hi - lo, DIST_HOST_F32, DIST_SUM);
        size_t b, e, o;
        dist_shard_range(n, g_world.rank, g_world.world, &b, &e);
        size_t len = clip_range(lo, hi, b, e, &o);
        for (size_t i = 0; i < len; i++) shard[o - b + i] += tmp[o - lo + i];
        free(tmp);
        break;
    }
#endif
    default:
        for (size_t i = lo; i < hi; i++) shard[i] += src[i - lo];
        break;
    }
}

void dist_all_gather_f32(float *buf, size_t n) {
    switch (host_via()) {
    case VIA_MPI:
        mpi_arrive("dist_all_gather_f32");
        mpi_all_gather_f32(buf, n);
        break;
#ifdef RETORT_CUDA
    case VIA_NCCL: dist_nccl_host_all_gather_f32(buf, n); break;
#endif
    default: break;
    }
}

void dist_allreduce_f32(float *buf, size_t n, DistOp op) {
    switch (host_via()) {
    case VIA_MPI:
        mpi_arrive("dist_allreduce_f32");
        mpi_reduce_scatter_f32(buf, n, op);
        mpi_all_gather_f32(buf, n);
        break;
#ifdef RETORT_CUDA
    case VIA_NCCL: dist_nccl_host_allreduce(buf, n, DIST_HOST_F32, op); break;
#endif
    default: break;
    }
}

void dist_broadcast(void *buf, size_t bytes) {
    switch (host_via()) {
    case VIA_MPI:
        mpi_arrive("dist_broadcast");
        for (size_t off = 0; off < bytes; off += (size_t)1 << 30) {
            size_t len = bytes - off < ((size_t)1 << 30) ? bytes - off : (size_t)1 << 30;
            MPI_Request req;
            mpi_check(MPI_Ibcast((char *)buf + off, (int)len, MPI_BYTE, 0, MPI_COMM_WORLD, &req),
                      "MPI_Ibcast", "dist_broadcast");
            mpi_finish(&req, "MPI_Ibcast", "dist_broadcast");
        }
        break;
#ifdef RETORT_CUDA
    case VIA_NCCL: dist_nccl_host_broadcast(buf, bytes); break;
#endif
    default: break;
    }
}

void dist_barrier(void) {
    switch (host_via()) {
    case VIA_MPI: mpi_arrive("dist_barrier"); break; /* the arrival phase is a barrier */
    case VIA_NCCL: (void)dist_any(0); break; /* a collective every rank must reach */
    default: break;
    }
}

int dist_any(int flag) {
    int v = flag != 0, out = v;
    switch (host_via()) {
    case VIA_MPI: {
        MPI_Request req;
        mpi_arrive("dist_any");
        mpi_check(MPI_Iallreduce(&v, &out, 1, MPI_INT, MPI_LOR, MPI_COMM_WORLD, &req),
                  "MPI_Iallreduce", "dist_any");
        mpi_finish(&req, "MPI_Iallreduce", "dist_any");
        break;
    }
#ifdef RETORT_CUDA
    case VIA_NCCL: dist_nccl_host_allreduce(&out, 1, DIST_HOST_I32_MAX, DIST_SUM); break;
#endif
    default: break;
    }
    return out != 0;
}

double dist_sum_f64(double x) {
    switch (host_via()) {
    case VIA_MPI: {
        /* gather all and add in rank order, so every rank gets the same bits */
        double *all = xmalloc((size_t)g_world.world * sizeof(double)), s = 0;
        MPI_Request req;
        mpi_arrive("dist_sum_f64");
        mpi_check(MPI_Iallgather(&x, 1, MPI_DOUBLE, all, 1, MPI_DOUBLE, MPI_COMM_WORLD, &req),
                  "MPI_Iallgather", "dist_sum_f64");
        mpi_finish(&req, "MPI_Iallgather", "dist_sum_f64");
        for (int q = 0; q < g_world.world; q++) s += all[q];
        free(all);
        return s;
    }
#ifdef RETORT_CUDA
    case VIA_NCCL: dist_nccl_host_allreduce(&x, 1, DIST_HOST_F64, DIST_SUM); return x;
#endif
    default: return x;
    }
}

int64_t dist_sum_i64(int64_t x) {
    int64_t out = x;
    switch (host_via()) {
    case VIA_MPI: {
        MPI_Request req;
        mpi_arrive("dist_sum_i64");
        mpi_check(MPI_Iallreduce(&x, &out, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD, &req),
                  "MPI_Iallreduce", "dist_sum_i64");
        mpi_finish(&req, "MPI_Iallreduce", "dist_sum_i64");
        break;
    }
#ifdef RETORT_CUDA
    case VIA_NCCL: dist_nccl_host_allreduce(&out, 1, DIST_HOST_I64, DIST_SUM); break;
#endif
    default: break;
    }
    return out;
}

/* ------------------------------------------------------------ device collectives */

void dist_allreduce_bucket_async(void *dev_ptr, size_t n, DistDtype dtype, DistOp op) {
    if (g_world.world == 1) return;
#ifdef RETORT_CUDA
    if (g_nccl_active) {
        dist_nccl_allreduce_async(dev_ptr, n, dtype, op);
        return;
    }
#endif
    (void)dev_ptr, (void)n, (void)dtype, (void)op;
    fprintf(stderr, "retort: rank %d: dist_allreduce_bucket_async needs dist_init(1) on a CUDA "
            "build\n", g_world.rank);
    dist_abort(1);
}

void dist_broadcast_pieces(const DistPiece *pieces, int n) {
    if (g_world.world == 1) return;
#ifdef RETORT_CUDA
    if (g_nccl_active) {
        dist_nccl_broadcast_pieces(pieces, n);
        return;
    }
#endif
    (void)pieces, (void)n;
    fprintf(stderr, "retort: rank %d: dist_broadcast_pieces needs dist_init(1) on a CUDA build\n",
            g_world.rank);
    dist_abort(1);
}

void dist_reduce_scatter_add_device(float *src, size_t lo, size_t hi, size_t n, float *shard) {
    if (g_world.world == 1 || lo >= hi) return;
#ifdef RETORT_CUDA
    if (g_nccl_active) {
        dist_nccl_reduce_scatter_add(src, lo, hi, n, shard);
        return;
    }
#endif
    (void)src, (void)n, (void)shard;
    fprintf(stderr, "retort: rank %d: dist_reduce_scatter_add_device needs dist_init(1) on a CUDA "
            "build\n", g_world.rank);
    dist_abort(1);
}

void dist_gather_pieces(const DistGatherPiece *pieces, int n) {
    if (g_world.world == 1) return;
#ifdef RETORT_CUDA
    if (g_nccl_active) {
        dist_nccl_gather_pieces(pieces, n);
        return;
    }
#endif
    (void)pieces, (void)n;
    fprintf(stderr, "retort: rank %d: dist_gather_pieces needs dist_init(1) on a CUDA build\n",
            g_world.rank);
    dist_abort(1);
}

void dist_wait(void) {
#ifdef RETORT_CUDA
    if (g_nccl_active) dist_nccl_wait();
#endif
}

/* ------------------------------------------------ ZeRO-3 parameter gather */

/* Round by round over [lo, hi): rank q's piece of [c, c + len) goes to its
 * place in dst (MPI_Iallgatherv in place: this rank's own piece is in dst
 * already). */
static void mpi_all_gather_range_f32(size_t lo, size_t hi, size_t n, float *dst) {
    const int W = g_world.world;
    size_t *b = xmalloc((size_t)W * sizeof(size_t)), *e = xmalloc((size_t)W * sizeof(size_t));
    int *counts = xmalloc((size_t)W * sizeof(int)), *displs = xmalloc((size_t)W * sizeof(int));
    for (int q = 0; q < W; q++) dist_shard_range(n, q, W, &b[q], &e[q]);
    size_t R = g_round_elems < (size_t)INT_MAX ? g_round_elems : (size_t)INT_MAX;
    for (size_t c = lo; c < hi; c += R) {
        size_t z = hi - c < R ? hi : c + R, o;
        for (int q = 0; q < W; q++) {
            counts[q] = (int)clip_range(c, z, b[q], e[q], &o);
            displs[q] = (int)(o - c);
        }
        MPI_Request req;
        mpi_check(MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, dst + (c - lo), counts, displs,
                                  MPI_FLOAT, MPI_COMM_WORLD, &req),
                  "MPI_Iallgatherv", "dist_all_gather_range_f32");
        mpi_finish(&req, "MPI_Iallgatherv", "dist_all_gather_range_f32");
    }
    free(b);
    free(e);
    free(counts);
    free(displs);
}

void dist_all_gather_range_f32(const float *shard, size_t lo, size_t hi, size_t n, float *dst) {
    size_t b, e, o;
    dist_shard_range(n, g_world.rank, g_world.world, &b, &e);
    /* this rank's own piece first: MPI_IN_PLACE sends it from dst */
    size_t mine = clip_range(lo, hi, b, e, &o);
    if (mine) memcpy(dst + (o - lo), shard + (o - b), mine * sizeof(float));
    switch (host_via()) {
    case VIA_MPI:
        mpi_arrive("dist_all_gather_range_f32");
        mpi_all_gather_range_f32(lo, hi, n, dst);
        break;
    case VIA_NONE: break; /* one process: its range is everything */
    default:
        fprintf(stderr, "retort: dist_all_gather_range_f32 (ZeRO-3) runs over MPI only; the "
                        "parameters are not sharded on GPUs yet\n");
        dist_abort(1);
    }
}
