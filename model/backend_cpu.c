/* model/backend_cpu.c — the CPU backend: host memory and the fp32 reference
 * ops of kernels/cpu, its table filled from the op list of kernels/ops.h.
 * "Device" memory is ordinary 64-byte aligned host memory, so the copies are
 * memcpy. Every allocation carries a 64-byte header holding its size, so the
 * backend counts the bytes it holds (backend_cpu_bytes_live) without a table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/ops.h"
#include "model/backend.h"
#include "util/util.h"

#define HEADER 64 /* keeps the caller's pointer 64-byte aligned */

static size_t bytes_live, bytes_peak;

size_t backend_cpu_bytes_live(void) { return __atomic_load_n(&bytes_live, __ATOMIC_RELAXED); }
size_t backend_cpu_bytes_peak(void) { return __atomic_load_n(&bytes_peak, __ATOMIC_RELAXED); }
void backend_cpu_reset_peak(void) {
    __atomic_store_n(&bytes_peak, backend_cpu_bytes_live(), __ATOMIC_RELAXED);
}

static void *cpu_alloc(size_t bytes) {
    void *p = NULL;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (!rounded) rounded = 64;
    if (rounded < bytes || posix_memalign(&p, 64, HEADER + rounded) != 0) {
        err_set("out of host memory allocating %zu bytes", bytes);
        return NULL;
    }
    *(size_t *)p = rounded;
    memset((char *)p + HEADER, 0, rounded);
    size_t now = __atomic_add_fetch(&bytes_live, rounded, __ATOMIC_RELAXED);
    size_t peak = __atomic_load_n(&bytes_peak, __ATOMIC_RELAXED);
    while (now > peak &&
           !__atomic_compare_exchange_n(&bytes_peak, &peak, now, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
    return (char *)p + HEADER;
}

static void cpu_release(void *p) {
    if (!p) return;
    char *base = (char *)p - HEADER;
    __atomic_sub_fetch(&bytes_live, *(size_t *)base, __ATOMIC_RELAXED);
    free(base);
}

/* MemAvailable: what the kernel estimates can be allocated without swapping. */
static int cpu_memory_info(size_t *available, size_t *total) {
    FILE *f = fopen("/proc/meminfo", "r");
    unsigned long long avail_kb = 0, total_kb = 0;
    int have_avail = 0, have_total = 0;
    char line[256];
    while (f && fgets(line, sizeof line, f)) {
        have_avail |= sscanf(line, "MemAvailable: %llu kB", &avail_kb) == 1;
        have_total |= sscanf(line, "MemTotal: %llu kB", &total_kb) == 1;
    }
    if (f) fclose(f);
    if (have_avail && have_total) {
        *available = (size_t)avail_kb * 1024;
        *total = (size_t)total_kb * 1024;
        return 0;
    }
    long page = sysconf(_SC_PAGESIZE), avail = sysconf(_SC_AVPHYS_PAGES),
         all = sysconf(_SC_PHYS_PAGES);
    if (page <= 0 || avail < 0 || all <= 0)
        return err_set("cannot tell the host's memory: /proc/meminfo has no MemAvailable and "
                       "sysconf gives no page counts");
    *available = (size_t)avail * (size_t)page;
    *total = (size_t)all * (size_t)page;
    return 0;
}
static void cpu_copy(void *dst, const void *src, size_t bytes) { memcpy(dst, src, bytes); }
static void cpu_zero(void *p, size_t bytes) { memset(p, 0, bytes); }
static void cpu_synchronize(void) {}
static void cpu_upload_f32(float *dst, const float *host, size_t n) {
    memcpy(dst, host, n * sizeof(float));
}
static void cpu_download_f32(float *host, const float *src, size_t n) {
    memcpy(host, src, n * sizeof(float));
}
/* The fp32 reference kernels run any configuration gpt_config_check accepts. */
static int cpu_supports(const GPTConfig *cfg) {
    (void)cfg;
    return 0;
}

/* Nothing is cached: the CPU ops allocate no workspace that outlives a call. */
static void cpu_shutdown(void) {}

static const Backend CPU = {
    .name = "cpu",
    .act_size = sizeof(float),
    .alloc = cpu_alloc,
    .release = cpu_release,
    .to_device = cpu_copy,
    .to_host = cpu_copy,
    .zero = cpu_zero,
    .synchronize = cpu_synchronize,
    .upload_f32 = cpu_upload_f32,
    .download_f32 = cpu_download_f32,
/* every op of kernels/ops.h: its fp32 reference implementation in kernels/cpu */
#define OP(ret, name, params) .name = name,
#include "kernels/ops.h"
#undef OP
    .supports = cpu_supports,
    .shutdown = cpu_shutdown,
    .memory_info = cpu_memory_info,
};

const Backend *backend_cpu(void) { return &CPU; }

const Backend *backend_by_name(const char *name) {
    if (!strcmp(name, "cpu")) return &CPU;
    if (!strcmp(name, "cuda")) {
#ifdef RETORT_CUDA
        return backend_cuda();
#else
        err_set("device 'cuda' is not built into this binary (nvcc was not found when it was "
                "built); rebuild on a machine with the CUDA toolkit, or use --device cpu");
        return NULL;
#endif
    }
    err_set("unknown device '%s'; choose cpu or cuda", name);
    return NULL;
}
