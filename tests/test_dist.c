/* tests/test_dist.c — the parts of train/dist.c that need no second process
 * from a launcher: world discovery for every launcher (setenv/unsetenv; each
 * Criterion test runs in its own process), conflicts and malformed values,
 * Slurm host lists, ZeRO-1 shard ranges, the single-process collectives, and
 * the TCP rendezvous between forked processes on localhost.
 * The MPI collectives are checked under mpirun by tests/mpi/dist_check.c.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "tests/testutil.h"
#include "train/dist.h"

static const char *LAUNCH_VARS[] = {
    "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
    "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
    "OMPI_COMM_WORLD_LOCAL_SIZE", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS",
    "PMIX_RANK", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_STEP_NUM_TASKS", "SLURM_STEP_ID",
    "SLURM_STEPID", "SLURM_LOCALID", "SLURM_NODEID", "SLURM_STEP_TASKS_PER_NODE",
    "SLURM_TASKS_PER_NODE", "SLURM_NODELIST", "SLURM_STEP_NODELIST", "RETORT_NCCL_TIMEOUT_S"};

static void clear_env(void) {
    for (size_t i = 0; i < sizeof LAUNCH_VARS / sizeof *LAUNCH_VARS; i++) unsetenv(LAUNCH_VARS[i]);
}

static void set(const char *name, const char *value) { setenv(name, value, 1); }

static DistWorld discover_ok(void) {
    DistWorld w;
    int rc = dist_discover(&w);
    cr_assert_eq(rc, 0, "dist_discover failed: %s", err_msg());
    return w;
}

static void discover_fails(const char *needle) {
    DistWorld w;
    err_clear();
    cr_assert_eq(dist_discover(&w), -1, "expected an error containing \"%s\"", needle);
    cr_assert(strstr(err_msg(), needle), "error \"%s\" does not mention \"%s\"", err_msg(),
              needle);
}

TestSuite(dist, .init = clear_env);

/* ---------------------------------------------------------------- discovery */

Test(dist, no_launcher_is_one_process) {
    DistWorld w = discover_ok();
    cr_assert_eq(w.rank, 0);
    cr_assert_eq(w.world, 1);
    cr_assert_eq(w.local_rank, 0);
    cr_assert_eq(w.local_world, 1);
    cr_assert_str_eq(w.launcher, "single");
    cr_assert_eq(w.master_port, DIST_DEFAULT_PORT);
}

Test(dist, open_mpi) {
    set("OMPI_COMM_WORLD_RANK", "5");
    set("OMPI_COMM_WORLD_SIZE", "8");
    set("OMPI_COMM_WORLD_LOCAL_RANK", "1");
    set("OMPI_COMM_WORLD_LOCAL_SIZE", "4");
    DistWorld w = discover_ok();
    cr_assert_str_eq(w.launcher, "openmpi");
    cr_assert_eq(w.rank, 5);
    cr_assert_eq(w.world, 8);
    cr_assert_eq(w.local_rank, 1);
    cr_assert_eq(w.local_world, 4);
    cr_assert_str_eq(w.master_addr, ""); /* two nodes, nothing says which is rank 0's */
}

Test(dist, mpich_pmi) {
    set("PMI_RANK", "2");
    set("PMI_SIZE", "3");
    set("MPI_LOCALRANKID", "2");
    set("MPI_LOCALNRANKS", "3");
    DistWorld w = discover_ok();
    cr_assert_str_eq(w.launcher, "mpich");
    cr_assert_eq(w.rank, 2);
    cr_assert_eq(w.world, 3);
    cr_assert_eq(w.local_rank, 2);
    cr_assert_eq(w.local_world, 3);
    cr_assert_str_eq(w.master_addr, "127.0.0.1"); /* all ranks on one node */
}

Test(dist, slurm_srun_step) {
    set("SLURM_PROCID", "4");
    set("SLURM_NTASKS", "5");
    set("SLURM_STEP_ID", "0");
    set("SLURM_LOCALID", "0");
    set("SLURM_NODEID", "2");
    set("SLURM_STEP_TASKS_PER_NODE", "2(x2),1");
    set("SLURM_NODELIST", "other[1-9]");
    set("SLURM_STEP_NODELIST", "gpu[003-005,9],login1");
    DistWorld w = discover_ok();
    cr_assert_str_eq(w.launcher, "slurm");
    cr_assert_eq(w.rank, 4);
    cr_assert_eq(w.world, 5);
    cr_assert_eq(w.local_rank, 0);
    cr_assert_eq(w.local_world, 1); /* node 2 is the third entry of 2,2,1 */
    cr_assert_str_eq(w.master_addr, "gpu003");
    cr_assert_eq(w.master_port, DIST_DEFAULT_PORT);
}

Test(dist, slurm_step_tasks_override_ntasks_and_master_addr_wins) {
    set("SLURM_PROCID", "1");
    set("SLURM_NTASKS", "16");
    set("SLURM_STEP_NUM_TASKS", "2");
    set("SLURM_LOCALID", "1");
    set("SLURM_NODEID", "0");
    set("SLURM_TASKS_PER_NODE", "2");
    set("SLURM_NODELIST", "n[1-8]");
    set("MASTER_ADDR", "10.0.0.7");
    set("MASTER_PORT", "12345");
    DistWorld w = discover_ok();
    cr_assert_eq(w.world, 2);
    cr_assert_eq(w.local_world, 2);
    cr_assert_str_eq(w.master_addr, "10.0.0.7");
    cr_assert_eq(w.master_port, 12345);
}

Test(dist, sbatch_script_without_srun_is_one_process) {
    /* the batch script sees the allocation's task count but is one process */
    set("SLURM_PROCID", "0");
    set("SLURM_NTASKS", "8");
    set("SLURM_LOCALID", "0");
    set("SLURM_NODELIST", "n[1-2]");
    DistWorld w = discover_ok();
    cr_assert_str_eq(w.launcher, "single");
    cr_assert_eq(w.world, 1);
}

Test(dist, torchrun_style) {
    set("RANK", "3");
    set("WORLD_SIZE", "4");
    set("LOCAL_RANK", "1");
    set("LOCAL_WORLD_SIZE", "2");
    set("MASTER_ADDR", "node17.cluster");
    set("MASTER_PORT", "29999");
    DistWorld w = discover_ok();
    cr_assert_str_eq(w.launcher, "torchrun");
    cr_assert_eq(w.rank, 3);
    cr_assert_eq(w.world, 4);
    cr_assert_eq(w.local_rank, 1);
    cr_assert_eq(w.local_world, 2);
    cr_assert_str_eq(w.master_addr, "node17.cluster");
    cr_assert_eq(w.master_port, 29999);
}

Test(dist, mpirun_inside_sbatch_ignores_the_allocation) {
    set("SLURM_PROCID", "0");
    set("SLURM_NTASKS", "1");
    set("SLURM_STEP_ID", "0");
    set("SLURM_LOCALID", "0");
    set("OMPI_COMM_WORLD_RANK", "3");
    set("OMPI_COMM_WORLD_SIZE", "4");
    set("OMPI_COMM_WORLD_LOCAL_RANK", "3");
    set("OMPI_COMM_WORLD_LOCAL_SIZE", "4");
    DistWorld w = discover_ok();
    cr_assert_str_eq(w.launcher, "openmpi");
    cr_assert_eq(w.rank, 3);
    cr_assert_eq(w.world, 4);
}

Test(dist, agreeing_launchers_are_fine) {
    set("RANK", "1");
    set("WORLD_SIZE", "2");
    set("LOCAL_RANK", "1");
    set("OMPI_COMM_WORLD_RANK", "1");
    set("OMPI_COMM_WORLD_SIZE", "2");
    DistWorld w = discover_ok();
    cr_assert_str_eq(w.launcher, "torchrun");
    cr_assert_eq(w.rank, 1);
}

Test(dist, conflicting_launchers) {
    set("RANK", "0");
    set("WORLD_SIZE", "2");
    set("LOCAL_RANK", "0");
    set("OMPI_COMM_WORLD_RANK", "1");
    set("OMPI_COMM_WORLD_SIZE", "2");
    discover_fails("conflicting launch variables");
    discover_fails("OMPI_COMM_WORLD_RANK=1");
}

Test(dist, conflicting_mpi_launchers) {
    set("OMPI_COMM_WORLD_RANK", "0");
    set("OMPI_COMM_WORLD_SIZE", "2");
    set("PMI_RANK", "0");
    set("PMI_SIZE", "3");
    discover_fails("PMI_SIZE=3");
}

Test(dist, partial_and_malformed_variables) {
    set("RANK", "0");
    discover_fails("WORLD_SIZE is not");
    set("WORLD_SIZE", "two");
    discover_fails("WORLD_SIZE=\"two\" is not an integer");
    set("WORLD_SIZE", "2");
    set("RANK", "2");
    set("LOCAL_RANK", "0");
    discover_fails("RANK=2 is outside [0, WORLD_SIZE=2)");
    set("RANK", "1");
    unsetenv("LOCAL_RANK");
    discover_fails("LOCAL_RANK");
    set("LOCAL_RANK", "0");
    set("WORLD_SIZE", "0");
    discover_fails("at least 1");
    set("WORLD_SIZE", "2");
    set("MASTER_PORT", "70000");
    discover_fails("MASTER_PORT=70000");
    set("MASTER_PORT", "29500");
    set("LOCAL_WORLD_SIZE", "1");
    set("LOCAL_RANK", "1");
    discover_fails("local rank 1");
}

Test(dist, hostlists) {
    char h[64];
    struct {
        const char *list, *first;
    } cases[] = {{"node01", "node01"},
                 {"n[1-4]", "n1"},
                 {"gpu[007-010,12],login", "gpu007"},
                 {"rack[2-3]-n[09-10]", "rack2-n09"},
                 {"a,b[1-2]", "a"},
                 {"x[5]-ib", "x5-ib"}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        cr_assert_eq(dist_hostlist_first(cases[i].list, h, sizeof h), 0, "%s: %s", cases[i].list,
                     err_msg());
        cr_assert_str_eq(h, cases[i].first, "%s", cases[i].list);
    }
    cr_assert_eq(dist_hostlist_first("bad[1-2", h, sizeof h), -1);
    cr_assert_eq(dist_hostlist_first("x[]", h, sizeof h), -1);
    cr_assert_eq(dist_hostlist_first("", h, sizeof h), -1);
    cr_assert_eq(dist_hostlist_first("averyveryverylonghostname", h, 8), -1);
}

/* ---------------------------------------------------------------- device choice */

/* The GPU index dist_device_index gives this environment's launcher view when
 * n_devices are visible. */
static int device_of(int n_devices) {
    DistWorld w = discover_ok();
    err_clear();
    int dev = dist_device_index(&w, n_devices);
    cr_assert_geq(dev, 0, "dist_device_index(%d) failed: %s", n_devices, err_msg());
    return dev;
}

static void device_refused(int n_devices, const char *needle) {
    DistWorld w = discover_ok();
    err_clear();
    cr_assert_eq(dist_device_index(&w, n_devices), -1, "expected an error containing \"%s\"",
                 needle);
    cr_assert(strstr(err_msg(), needle), "error \"%s\" does not mention \"%s\"", err_msg(),
              needle);
}

Test(dist, device_one_process_is_device_0) {
    cr_assert_eq(device_of(1), 0);
    cr_assert_eq(device_of(8), 0);
}

Test(dist, device_stale_local_rank_alone_is_one_process) {
    set("LOCAL_RANK", "2"); /* exported by an earlier torchrun session, no RANK/WORLD_SIZE */
    cr_assert_eq(device_of(8), 0);
}

Test(dist, device_mpich_inside_sbatch_ignores_inherited_slurm_localid) {
    /* mpiexec in a batch script: every rank inherits the script's Slurm step
     * variables (SLURM_LOCALID=0); MPICH's MPI_LOCALRANKID is the real one */
    set("SLURM_PROCID", "0");
    set("SLURM_NTASKS", "1");
    set("SLURM_STEP_ID", "0");
    set("SLURM_LOCALID", "0");
    set("SLURM_NODEID", "0");
    set("PMI_RANK", "1");
    set("PMI_SIZE", "2");
    set("MPI_LOCALRANKID", "1");
    set("MPI_LOCALNRANKS", "2");
    cr_assert_eq(device_of(2), 1);
    cr_assert_eq(device_of(8), 1);
}

Test(dist, device_open_mpi_ignores_a_stale_local_rank) {
    set("LOCAL_RANK", "3"); /* stale: RANK and WORLD_SIZE are not set */
    set("OMPI_COMM_WORLD_RANK", "5");
    set("OMPI_COMM_WORLD_SIZE", "8");
    set("OMPI_COMM_WORLD_LOCAL_RANK", "1");
    set("OMPI_COMM_WORLD_LOCAL_SIZE", "4");
    cr_assert_eq(device_of(4), 1);
    cr_assert_eq(device_of(8), 1);
}

Test(dist, device_torchrun_over_an_inherited_slurm_localid) {
    set("SLURM_PROCID", "0");
    set("SLURM_NTASKS", "1");
    set("SLURM_STEP_ID", "0");
    set("SLURM_LOCALID", "0");
    set("RANK", "6");
    set("WORLD_SIZE", "8");
    set("LOCAL_RANK", "2");
    set("LOCAL_WORLD_SIZE", "4");
    cr_assert_eq(device_of(4), 2);
}

Test(dist, device_one_visible_per_rank_is_device_0) {
    /* CUDA_VISIBLE_DEVICES, or srun --gpus-per-task=1, shows each rank its own */
    set("RANK", "3");
    set("WORLD_SIZE", "4");
    set("LOCAL_RANK", "3");
    set("LOCAL_WORLD_SIZE", "4");
    cr_assert_eq(device_of(1), 0);
    cr_assert_eq(device_of(4), 3);
}

Test(dist, device_slurm_srun_uses_slurm_localid) {
    set("SLURM_PROCID", "3");
    set("SLURM_NTASKS", "4");
    set("SLURM_STEP_ID", "0");
    set("SLURM_LOCALID", "1");
    set("SLURM_NODEID", "1");
    set("SLURM_STEP_TASKS_PER_NODE", "2(x2)");
    cr_assert_eq(device_of(2), 1);
    cr_assert_eq(device_of(1), 0);
}

Test(dist, device_more_ranks_than_gpus_is_refused_on_every_rank) {
    set("OMPI_COMM_WORLD_RANK", "0");
    set("OMPI_COMM_WORLD_SIZE", "4");
    set("OMPI_COMM_WORLD_LOCAL_RANK", "0");
    set("OMPI_COMM_WORLD_LOCAL_SIZE", "4");
    /* local rank 0 would fit, but its peers would not: it refuses too */
    device_refused(2, "4 ranks on this node");
    device_refused(2, "2 GPUs are visible");
    cr_assert_eq(device_of(4), 0);
}

Test(dist, device_local_rank_beyond_the_gpus_is_refused) {
    set("RANK", "2"); /* torchrun-style without LOCAL_WORLD_SIZE */
    set("WORLD_SIZE", "4");
    set("LOCAL_RANK", "2");
    device_refused(2, "at least 3 ranks on this node (local rank 2, torchrun launch)");
    cr_assert_eq(device_of(3), 2);
}

Test(dist, device_none_visible_is_refused) {
    device_refused(0, "no CUDA device is visible");
    set("RANK", "1");
    set("WORLD_SIZE", "2");
    set("LOCAL_RANK", "1");
    device_refused(0, "rank 1 of 2 (torchrun launch)");
}

/* ---------------------------------------------------------------- shards */

Test(dist, shard_ranges) {
    size_t b, e;
    size_t want[3][2] = {{0, 4}, {4, 7}, {7, 10}};
    for (int r = 0; r < 3; r++) {
        dist_shard_range(10, r, 3, &b, &e);
        cr_assert(b == want[r][0] && e == want[r][1], "rank %d: [%zu, %zu)", r, b, e);
    }
    for (size_t n = 0; n < 40; n++)
        for (int W = 1; W <= 9; W++) {
            size_t next = 0, lo = n, hi = 0;
            for (int r = 0; r < W; r++) {
                dist_shard_range(n, r, W, &b, &e);
                cr_assert_eq(b, next, "n=%zu W=%d r=%d: not contiguous", n, W, r);
                cr_assert(e >= b);
                if (e - b < lo) lo = e - b;
                if (e - b > hi) hi = e - b;
                next = e;
            }
            cr_assert_eq(next, n, "n=%zu W=%d: shards do not cover", n, W);
            cr_assert(hi - lo <= 1, "n=%zu W=%d: unbalanced (%zu..%zu)", n, W, lo, hi);
        }
}

/* ---------------------------------------------------------------- single process */

Test(dist, single_process_collectives_are_identity) {
    cr_assert_eq(dist_init(0), 0, "%s", err_msg());
    cr_assert_eq(dist_size(), 1);
    cr_assert(dist_is_main());
    cr_assert_eq(dist_mpi_active(), 0, "a plain run must not start MPI");
    float x[5] = {1.5f, -2.0f, 3.25f, 0.0f, 7.0f}, y[5];
    memcpy(y, x, sizeof x);
    dist_allreduce_f32(y, 5, DIST_AVG);
    dist_reduce_scatter_f32(y, 5, DIST_SUM);
    dist_all_gather_f32(y, 5);
    cr_assert_eq(memcmp(x, y, sizeof x), 0);
    cr_assert_eq(dist_any(0), 0);
    cr_assert_eq(dist_any(7), 1);
    cr_assert_eq(dist_sum_f64(2.5), 2.5);
    cr_assert_eq(dist_sum_i64(-42), -42);
    char msg[8] = "hello";
    dist_broadcast(msg, sizeof msg);
    cr_assert_str_eq(msg, "hello");
    dist_barrier();
    dist_wait();
    dist_finalize();
}

Test(dist, cpu_world_without_mpi_is_refused) {
    set("RANK", "0");
    set("WORLD_SIZE", "2");
    set("LOCAL_RANK", "0");
    err_clear();
    cr_assert_eq(dist_init(0), -1);
    cr_assert(strstr(err_msg(), "needs MPI"), "%s", err_msg());
}

/* ---------------------------------------------------------------- TCP rendezvous */

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    cr_assert(bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
              getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void fill_id(unsigned char *id, size_t n) {
    for (size_t i = 0; i < n; i++) id[i] = (unsigned char)(i * 37 + 11);
}

/* A child that plays rank `rank`: exit 0 when it received the right bytes. */
static pid_t spawn_client(int rank, int world, int port) {
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        unsigned char got[128], want[128];
        memset(got, 0, sizeof got);
        fill_id(want, sizeof want);
        int rc = dist_tcp_share(got, sizeof got, rank, world, "localhost", port, 10.0);
        if (rc != 0) fprintf(stderr, "rank %d: %s\n", rank, err_msg());
        _exit(rc == 0 && memcmp(got, want, sizeof got) == 0 ? 0 : 1);
    }
    return pid;
}

static void expect_child_ok(pid_t pid, int rank) {
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "rank %d did not get the id", rank);
}

Test(dist, tcp_share_serves_every_rank, .timeout = 30) {
    const int world = 4, port = free_port();
    pid_t kids[4];
    for (int r = 1; r < world; r++) kids[r] = spawn_client(r, world, port);
    usleep(300 * 1000); /* the clients start first and must retry */
    /* a stray connection that speaks no rendezvous must not take a slot */
    pid_t stray = fork();
    if (stray == 0) {
        usleep(100 * 1000);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a;
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons((uint16_t)port);
        if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
            if (write(fd, "GET / HTTP/1.0\r\n\r\n", 18) < 0) _exit(2);
        }
        close(fd);
        _exit(0);
    }
    unsigned char id[128];
    fill_id(id, sizeof id);
    int rc = dist_tcp_share(id, sizeof id, 0, world, "localhost", port, 10.0);
    cr_assert_eq(rc, 0, "%s", err_msg());
    for (int r = 1; r < world; r++) expect_child_ok(kids[r], r);
    int status;
    waitpid(stray, &status, 0);
}

Test(dist, tcp_share_client_times_out_naming_host_and_port, .timeout = 30) {
    const int port = free_port(); /* nobody listens there */
    unsigned char buf[128];
    double t0 = now_seconds();
    err_clear();
    cr_assert_eq(dist_tcp_share(buf, sizeof buf, 2, 3, "127.0.0.1", port, 1.0), -1);
    double took = now_seconds() - t0;
    cr_assert(took >= 0.7 && took < 5.0, "gave up after %.2f s for a 1 s timeout", took);
    char where[64];
    snprintf(where, sizeof where, "127.0.0.1:%d", port);
    cr_assert(strstr(err_msg(), where), "%s", err_msg());
    cr_assert(strstr(err_msg(), "rank 2"), "%s", err_msg());
}

Test(dist, tcp_share_server_names_missing_ranks, .timeout = 30) {
    const int world = 3, port = free_port();
    pid_t kid = spawn_client(1, world, port);
    unsigned char id[128];
    fill_id(id, sizeof id);
    err_clear();
    cr_assert_eq(dist_tcp_share(id, sizeof id, 0, world, "localhost", port, 1.5), -1);
    cr_assert(strstr(err_msg(), "only 1 of 2 ranks"), "%s", err_msg());
    cr_assert(strstr(err_msg(), "missing: 2"), "%s", err_msg());
    expect_child_ok(kid, 1);
}

Test(dist, tcp_share_port_in_use, .timeout = 30) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    socklen_t len = sizeof a;
    cr_assert(bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && listen(fd, 1) == 0 &&
              getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    int port = ntohs(a.sin_port);
    unsigned char id[128] = {1};
    err_clear();
    cr_assert_eq(dist_tcp_share(id, sizeof id, 0, 2, "localhost", port, 1.0), -1);
    cr_assert(strstr(err_msg(), "MASTER_PORT"), "%s", err_msg());
    close(fd);
}
