/* kernels/cuda/common.cuh — what every CUDA kernel file shares: error checks
 * that name the call, file and line; the bf16 compute type; the backend's
 * stream; small warp reductions.
 *
 * Compute-type buffers (parameters, activations and activation gradients)
 * are bf16 on the GPU. The backend interface passes them as float* handles
 * (model/backend.h); each kernel file reinterprets them as floatX* at its
 * entry points. Parameter gradients (dweight, dbias, dwte, dwpe) and side
 * buffers (layernorm mean/rstd, log-sum-exps, logp, per-token weights, AdamW
 * moments and master weights) are real fp32.
 */
#ifndef RETORT_CUDA_COMMON_CUH
#define RETORT_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

typedef __nv_bfloat16 floatX;

/* The stream every kernel and library call of the backend runs on. */
extern cudaStream_t retort_stream;

#define CUDA_CHECK(call)                                                                  \
    do {                                                                                  \
        cudaError_t err_ = (call);                                                        \
        if (err_ != cudaSuccess) {                                                        \
            fprintf(stderr, "retort: CUDA error in %s at %s:%d: %s\n", #call, __FILE__,   \
                    __LINE__, cudaGetErrorString(err_));                                  \
            exit(1);                                                                      \
        }                                                                                 \
    } while (0)

/* After every launch: the launch error always; a full synchronize in debug
 * builds (-DRETORT_CUDA_DEBUG) so a faulting kernel is named where it ran. */
#ifdef RETORT_CUDA_DEBUG
#define CUDA_LAUNCH_CHECK()                                                               \
    do {                                                                                  \
        CUDA_CHECK(cudaGetLastError());                                                   \
        CUDA_CHECK(cudaStreamSynchronize(retort_stream));                                 \
    } while (0)
#else
#define CUDA_LAUNCH_CHECK() CUDA_CHECK(cudaGetLastError())
#endif

static inline int ceil_div(long a, long b) { return (int)((a + b - 1) / b); }

static __device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

#endif
