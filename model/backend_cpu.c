/* model/backend_cpu.c — the CPU backend: host memory and the fp32 reference
 * ops of kernels/cpu, its table filled from the op list of kernels/ops.h.
 * "Device" memory is ordinary 64-byte aligned host memory, so the copies are
 * memcpy. */
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"
#include "model/backend.h"
#include "util/util.h"

static void *cpu_alloc(size_t bytes) {
    void *p = NULL;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (posix_memalign(&p, 64, rounded ? rounded : 64) != 0) {
        err_set("out of host memory allocating %zu bytes", bytes);
        return NULL;
    }
    memset(p, 0, rounded);
    return p;
}

static void cpu_release(void *p) { free(p); }
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
