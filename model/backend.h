/* model/backend.h — the interface a compute backend fills in.
 *
 * The model (model/model.c) calls be->op(...) and never includes a device
 * header, so adding a device never touches model code. Pointers passed to ops
 * are device memory of the backend. Parameters and activations, and the
 * gradients of activations (dinp, dqkv, dlogits, ...), are in the backend's
 * compute type, act_size bytes per element (fp32 on the CPU, bf16 on CUDA):
 * the model treats those float* as opaque handles and offsets them in bytes.
 * The gradients of PARAMETERS are fp32 on every backend: the dweight, dbias,
 * dwte and dwpe outputs of the ops, the gradient adamw_update reads, and the
 * buffers sum_squares and scale_inplace work on. They are sums over the
 * micro-steps of gradient accumulation (the ops add into them), and a bf16
 * running sum would be rounded once per micro-step. Side buffers that must
 * stay exact (layernorm mean/rstd, attention and classifier log-sum-exp,
 * logp, per-token weights g, and the optimizer's moments and master weights)
 * are always fp32 too. Host data moves with to_device/to_host (raw bytes) or
 * upload_f32/download_f32 (converting host fp32 to and from the compute type).
 * The op fields are generated from the op list of kernels/ops.h, as are the
 * CPU and CUDA tables that fill them (model/backend_cpu.c,
 * model/backend_cuda.cu), so the two backends have one signature per op.
 */
#ifndef RETORT_BACKEND_H
#define RETORT_BACKEND_H

#include <stddef.h>
#include <stdio.h>

#include "model/model.h"

typedef struct Backend {
    const char *name;
    size_t act_size;                       /* bytes per compute-type element */

    void *(*alloc)(size_t bytes);          /* zeroed */
    void (*release)(void *p);
    void (*to_device)(void *dst, const void *src, size_t bytes);
    void (*to_host)(void *dst, const void *src, size_t bytes);
    void (*zero)(void *p, size_t bytes);
    void (*synchronize)(void);
    void (*upload_f32)(float *dst, const float *host, size_t n);   /* host fp32 -> compute */
    void (*download_f32)(float *host, const float *src, size_t n); /* compute -> host fp32 */

    /* The ops: one field per entry of the op list in kernels/ops.h, same name,
     * same signature, ret (*name)(params). Their contracts and shapes are
     * documented there. */
#define OP(ret, name, params) ret(*name) params;
#include "kernels/ops.h"
#undef OP

    /* 0 when this backend can run a model of this configuration, else -1 with
     * the error set naming the limit, the config field and the fix. gpt_create
     * calls it, so a configuration the kernels cannot run is refused when the
     * model is set up, not at its first launch. */
    int (*supports)(const GPTConfig *cfg);
    /* Frees everything the backend holds beyond what was allocated through it:
     * on CUDA the kernels' cached workspaces, the cuBLAS handle and the stream
     * (kernels/cuda/workspace.cuh); on the CPU there is nothing. Call it when
     * nothing on the backend is in use any more; the CUDA backend also runs it
     * at exit. To use the backend again, bring it up again (backend_by_name,
     * backend_cuda): the workspaces are then allocated afresh as ops need them. */
    void (*shutdown)(void);
    /* The memory a run can still take on this backend, in bytes, and the
     * whole: on the CPU MemAvailable and MemTotal of /proc/meminfo (the
     * physical pages otherwise), on CUDA cudaMemGetInfo of the selected GPU.
     * 0, or -1 with the error set. The trainer checks a run's plan against
     * it (train/plan.h). */
    int (*memory_info)(size_t *available, size_t *total);
} Backend;

const Backend *backend_cpu(void);
/* What the CPU backend holds: bytes of every live allocation (each rounded up
 * to 64 bytes, as reserved), and the most at any moment since the last
 * backend_cpu_reset_peak. For tests and measurements (train/plan.h is
 * checked against them). Thread-safe. */
size_t backend_cpu_bytes_live(void);
size_t backend_cpu_bytes_peak(void);
void backend_cpu_reset_peak(void);

/* What the CUDA kernels can run, as a pure function of the configuration and
 * the device's opt-in shared memory per block (bytes; cudaDevAttrMaxShared-
 * MemoryPerBlockOptin, e.g. 166912 on an A100, 232448 on an H100), so it is
 * built and tested without CUDA or a GPU. 0, or -1 with the error set naming
 * the limit (head size, context length, vocabulary) and the fix. The CUDA
 * backend's supports() is this with the selected device's shared memory. */
int backend_cuda_check(const GPTConfig *cfg, int smem_optin);
/* Built when nvcc was found (RETORT_CUDA); NULL with the error set when no
 * usable GPU is present. */
const Backend *backend_cuda(void);

/* The rest is CUDA builds only (RETORT_CUDA). */

/* The GPU backend_cuda() runs on. The backend reads no launcher variables:
 * dist_init sets this for a data-parallel rank from dist_device_index, the
 * same index its NCCL communicator uses; without a call it is device 0 (one
 * process, tests, benchmarks). Call before the first backend_cuda(). 0, or -1
 * with the error set when the backend already runs on another device. */
int backend_cuda_select_device(int device);
/* Visible CUDA devices, or -1 with the error set naming the CUDA version the
 * driver supports and the runtime's (and, for a driver older than the
 * toolkit, that it needs a newer one). */
int backend_cuda_device_count(void);
/* The stream every kernel of the backend runs on, as a cudaStream_t, for CUDA
 * events in C code (the kernel benchmark); NULL before backend_cuda(). */
void *backend_cuda_stream(void);
/* `retort device`: prints the runtime and driver versions, every visible GPU
 * and, after bringing the backend up, which kernel image ran on the selected
 * one. 0 when the backend works, or -1 with the error set (no device, a driver
 * too old for the toolkit, no kernel image for the GPU's architecture). */
int backend_cuda_probe(FILE *out);
/* Returns NULL and sets the error when the name is unknown or not built in. */
const Backend *backend_by_name(const char *name);

#endif
