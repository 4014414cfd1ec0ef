/* model/backend_cuda.cu — the CUDA backend: device memory on one GPU, bf16
 * compute type, the hand-written kernels of kernels/cuda and cuBLAS matmuls.
 *
 * backend_cuda() makes the selected device current (backend_cuda_select_device:
 * dist_init's choice for a data-parallel rank, else device 0 — the backend
 * reads no launcher variables, so it cannot disagree with NCCL), creates the
 * stream every kernel runs on, launches one empty kernel so that a build with
 * no image for this GPU fails here and not in the first real kernel, and
 * returns the table, whose ops are the kernels/cuda twins of the op list of
 * kernels/ops.h. With no usable device it returns NULL with the reason
 * (the driver's and the runtime's CUDA versions included) in the error, so
 * `--device cuda` fails with a message and the GPU tests skip visibly.
 *
 * What the backend holds beyond the caller's allocations: the stream, the
 * kernels' cached workspaces and the cuBLAS handle (the registry of
 * kernels/cuda/workspace.cu). Its shutdown frees them all; it is registered
 * with atexit when the backend first comes up, so every program that used the
 * GPU leaves nothing of its own behind. The device choice, the limits read
 * from the device and the filled table stay (plain values, nothing to free).
 */
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/cuda/workspace.cuh"

extern "C" {
#include "model/backend.h"
#include "util/util.h"
}

#ifndef RETORT_CUDA_ARCHS /* the Makefile's CUDA_ARCHS */
#define RETORT_CUDA_ARCHS "?"
#endif

cudaStream_t retort_stream;
static int g_device;     /* backend_cuda_select_device; 0 unless dist_init says */
static int g_state = 0;  /* 0 untried (or shut down), 1 ready, -1 failed */
static int g_smem_optin; /* the device's opt-in shared memory per block, bytes */
static int g_ran_on = -1; /* the device the backend came up on; fixed from then on */

static void *cuda_alloc(size_t bytes) {
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        /* the runtime keeps the failure as its last error: clear it, or the
         * next launch check (cudaGetLastError) blames an innocent kernel */
        (void)cudaGetLastError();
        err_set("cannot allocate %zu bytes on the GPU (%s; %zu of %zu bytes free); lower "
                "data.batch_size or data.seq_len",
                bytes, cudaGetErrorString(e), free_b, total_b);
        return NULL;
    }
    CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, retort_stream));
    return p;
}

static void cuda_release(void *p) { CUDA_CHECK(cudaFree(p)); }

static void cuda_to_device(void *dst, const void *src, size_t bytes) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, retort_stream));
    /* the host buffer may be reused as soon as we return */
    CUDA_CHECK(cudaStreamSynchronize(retort_stream));
}

static void cuda_to_host(void *dst, const void *src, size_t bytes) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, retort_stream));
    CUDA_CHECK(cudaStreamSynchronize(retort_stream));
}

static void cuda_zero(void *p, size_t bytes) {
    CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, retort_stream));
}

static void cuda_synchronize(void) { CUDA_CHECK(cudaStreamSynchronize(retort_stream)); }

static Backend CUDA_BACKEND;

/* "13.0" for 13000: CUDA versions are 1000 * major + 10 * minor. */
static void version_str(char *out, size_t cap, int v) {
    snprintf(out, cap, "%d.%d", v / 1000, v % 1000 / 10);
}

/* The oldest driver branch a CUDA major version runs on (minor version
 * compatibility, CUDA release notes); 0 when not known here. */
static int min_driver_branch(int cuda_major) {
    switch (cuda_major) {
    case 13: return 580;
    case 12: return 525;
    case 11: return 450;
    default: return 0;
    }
}

/* "the driver supports CUDA 12.4, the runtime is CUDA 13.0" */
static void versions(char *out, size_t cap, int *driver, int *runtime) {
    char d[16], r[16];
    *driver = *runtime = 0;
    cudaDriverGetVersion(driver); /* 0 when no driver is loaded */
    cudaRuntimeGetVersion(runtime);
    version_str(d, sizeof d, *driver);
    version_str(r, sizeof r, *runtime);
    if (*driver) snprintf(out, cap, "the driver supports CUDA %s, the runtime is CUDA %s", d, r);
    else snprintf(out, cap, "no NVIDIA driver is loaded, the runtime is CUDA %s", r);
}

extern "C" int backend_cuda_device_count(void) {
    int count = 0, driver, runtime;
    cudaError_t e = cudaGetDeviceCount(&count);
    (void)cudaGetLastError(); /* a failed query is not the next kernel's fault */
    char v[160];
    versions(v, sizeof v, &driver, &runtime);
    const char *visible = getenv("CUDA_VISIBLE_DEVICES");
    if (e == cudaErrorInsufficientDriver && driver > 0) {
        char hint[96] = "";
        int branch = min_driver_branch(runtime / 1000);
        if (branch)
            snprintf(hint, sizeof hint, " (CUDA %d needs an R%d or newer driver)",
                     runtime / 1000, branch);
        return err_set("no usable CUDA device: %s, so the toolkit this retort was built with "
                       "needs a newer driver%s; update the driver, rebuild with an older CUDA "
                       "toolkit, or use --device cpu",
                       v, hint);
    }
    if (e == cudaErrorInsufficientDriver || e == cudaErrorNoDevice ||
        (e == cudaSuccess && count == 0))
        return err_set("no usable CUDA device: none is visible (%s%s%s); check nvidia-smi, or "
                       "use --device cpu",
                       v, visible ? ", CUDA_VISIBLE_DEVICES=" : "", visible ? visible : "");
    if (e != cudaSuccess)
        return err_set("no usable CUDA device: %s (%s); use --device cpu", cudaGetErrorString(e),
                       v);
    return count;
}

extern "C" int backend_cuda_select_device(int device) {
    if (device < 0) return err_set("CUDA device index %d is negative", device);
    /* after a shutdown too: the kernels set their shared-memory attributes once,
     * on the device they first ran on */
    if (g_ran_on >= 0 && device != g_ran_on)
        return err_set("the CUDA backend already ran on device %d; select device %d before "
                       "its first use",
                       g_ran_on, device);
    if (g_state == -1 && device != g_device) g_state = 0; /* try the new one afresh */
    g_device = device;
    return 0;
}

extern "C" void *backend_cuda_stream(void) { return g_state == 1 ? (void *)retort_stream : NULL; }

static int pick_device(void) {
    int count = backend_cuda_device_count();
    if (count < 0) return -1;
    if (g_device >= count)
        return err_set("CUDA device %d was selected but %d %s visible; check "
                       "CUDA_VISIBLE_DEVICES",
                       g_device, count, count == 1 ? "is" : "are");
    cudaError_t e = cudaSetDevice(g_device);
    if (e != cudaSuccess)
        return err_set("cannot use CUDA device %d: cudaSetDevice failed: %s", g_device,
                       cudaGetErrorString(e));
    return 0;
}

/* What backend_cuda_check needs to know of the device. */
static int query_limits(void) {
    cudaError_t e = cudaDeviceGetAttribute(&g_smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin,
                                           g_device);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return err_set("no usable CUDA device: cannot read the shared memory of device %d: %s",
                       g_device, cudaGetErrorString(e));
    }
    return 0;
}

__global__ static void probe_kernel(void) {}

/* Runs an empty kernel built like every other: without an image for this GPU
 * (an older architecture than CUDA_ARCHS, and no PTX it can JIT) the launch
 * fails with cudaErrorNoKernelImageForDevice, said here in words. */
static int probe_kernel_image(void) {
    probe_kernel<<<1, 1, 0, retort_stream>>>();
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess) e = cudaStreamSynchronize(retort_stream);
    if (e == cudaSuccess) return 0;
    cudaDeviceProp p;
    memset(&p, 0, sizeof p);
    cudaGetDeviceProperties(&p, g_device);
    if (e == cudaErrorNoKernelImageForDevice && p.major < 8)
        return err_set("no usable CUDA device: device %d, %s, has compute capability %d.%d, "
                       "and the kernels need 8.0 or newer (bf16 tensor cores); use --device "
                       "cpu",
                       g_device, p.name, p.major, p.minor);
    if (e == cudaErrorNoKernelImageForDevice)
        return err_set("no usable CUDA device: this retort has no kernel image for device %d, "
                       "%s (compute capability %d.%d); it was built for CUDA_ARCHS=\"%s\" "
                       "(SASS, plus PTX of the last that only newer GPUs can JIT); rebuild "
                       "with make CUDA_ARCHS=\"%d%d\"",
                       g_device, p.name, p.major, p.minor, RETORT_CUDA_ARCHS, p.major, p.minor);
    return err_set("no usable CUDA device: a test kernel on device %d (%s) failed: %s", g_device,
                   p.name, cudaGetErrorString(e));
}

/* The kernels' limits on this device (kernels/cuda/limits.h). */
static int cuda_supports(const GPTConfig *cfg) { return backend_cuda_check(cfg, g_smem_optin); }

/* Frees the workspaces and the cuBLAS handle (kernels/cuda/workspace.cu), then
 * the stream; the next backend_cuda() starts afresh. Nothing here exits: it
 * also runs at exit, possibly after a CUDA error stopped the program. */
static void cuda_shutdown(void) {
    if (g_state != 1) return;
    workspace_release_all();
    cudaError_t e = cudaStreamDestroy(retort_stream);
    if (e != cudaSuccess) (void)cudaGetLastError(); /* a failed context takes it along */
    retort_stream = NULL;
    g_state = 0;
}

static void cuda_shutdown_at_exit(void) { cuda_shutdown(); }

/* Free and total memory of the selected GPU, as the driver sees it now
 * (other processes on the GPU included). */
static int cuda_memory_info(size_t *available, size_t *total) {
    cudaError_t e = cudaMemGetInfo(available, total);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return err_set("cannot read the memory of GPU %d (cudaMemGetInfo: %s)", g_device,
                       cudaGetErrorString(e));
    }
    return 0;
}

static int start_stream(void) {
    cudaError_t e = cudaStreamCreateWithFlags(&retort_stream, cudaStreamNonBlocking);
    if (e != cudaSuccess)
        return err_set("no usable CUDA device: cannot create a stream on device %d: %s",
                       g_device, cudaGetErrorString(e));
    if (probe_kernel_image() == 0) return 0;
    cudaStreamDestroy(retort_stream);
    retort_stream = NULL;
    return -1;
}

extern "C" const Backend *backend_cuda(void) {
    static char failure[1024];
    if (g_state == 1) return &CUDA_BACKEND;
    if (g_state == -1) {
        err_set("%s", failure);
        return NULL;
    }
    if (pick_device() != 0 || query_limits() != 0 || start_stream() != 0) {
        snprintf(failure, sizeof failure, "%s", err_msg());
        g_state = -1;
        return NULL;
    }
    static bool at_exit = false;
    if (!at_exit && atexit(cuda_shutdown_at_exit) == 0) at_exit = true;
    Backend *b = &CUDA_BACKEND;
    b->name = "cuda";
    b->act_size = sizeof(floatX);
    b->alloc = cuda_alloc;
    b->release = cuda_release;
    b->to_device = cuda_to_device;
    b->to_host = cuda_to_host;
    b->zero = cuda_zero;
    b->synchronize = cuda_synchronize;
    b->upload_f32 = upload_f32_cuda;
    b->download_f32 = download_f32_cuda;
/* every op of kernels/ops.h: its CUDA twin, name_cuda */
#define OP(ret, name, params) b->name = name##_cuda;
#include "kernels/ops.h"
#undef OP
    b->supports = cuda_supports;
    b->shutdown = cuda_shutdown;
    b->memory_info = cuda_memory_info;
    g_state = 1;
    g_ran_on = g_device;
    return b;
}

extern "C" int backend_cuda_probe(FILE *out) {
    int driver, runtime;
    char v[160];
    versions(v, sizeof v, &driver, &runtime);
    fprintf(out, "cuda: %s; kernels built for CUDA_ARCHS=\"%s\"\n", v, RETORT_CUDA_ARCHS);
    int count = backend_cuda_device_count();
    if (count < 0) return -1;
    const char *visible = getenv("CUDA_VISIBLE_DEVICES");
    fprintf(out, "devices: %d visible%s%s%s\n", count, visible ? " (CUDA_VISIBLE_DEVICES=" : "",
            visible ? visible : "", visible ? ")" : "");
    for (int d = 0; d < count; d++) {
        cudaDeviceProp p;
        cudaError_t e = cudaGetDeviceProperties(&p, d);
        if (e != cudaSuccess)
            return err_set("cudaGetDeviceProperties(%d) failed: %s", d, cudaGetErrorString(e));
        fprintf(out, "  %d: %s, compute capability %d.%d, %.1f GiB, %d SMs\n", d, p.name, p.major,
                p.minor, (double)p.totalGlobalMem / (1 << 30), p.multiProcessorCount);
    }
    if (!backend_cuda()) return -1;
    /* binaryVersion is the image that ran: the SASS of CUDA_ARCHS, or what the
     * driver JIT-compiled from the PTX (ptxVersion) */
    cudaFuncAttributes a;
    cudaError_t e = cudaFuncGetAttributes(&a, probe_kernel);
    if (e != cudaSuccess)
        return err_set("cudaFuncGetAttributes failed: %s", cudaGetErrorString(e));
    fprintf(out, "selected: device %d; a test kernel ran (sm_%d code from compute_%d)\n", g_device,
            a.binaryVersion, a.ptxVersion);
    return 0;
}
