/* kernels/cuda/swiglu.cu — the SwiGLU gate of the Llama-family MLP on bf16
 * tensors; the twin of kernels/cpu/swiglu.c.
 *
 * inp rows are the fused [gate (I) | up (I)] GEMM output:
 *     out = silu(g) u,   silu(g) = g / (1 + exp(-g))     (torch's form)
 *     dg += dout u sig (1 + g (1 - sig)),   du += dout silu(g),   sig = sigmoid(g)
 * in fp32 with the accurate expf, rounded to bf16 once. One thread per
 * (row, column) item, or per 8 adjacent columns (16-byte vectors) when I % 8
 * == 0 and the tensors are 16-byte aligned. Grid-stride loops.
 */
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/cuda/reduce.cuh"

#define SWIGLU_BLOCK 256

static __device__ __forceinline__ float silu(float x) { return x / (1.0f + expf(-x)); }
static __device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

template <bool VEC>
__global__ static void swiglu_forward_kernel(floatX *out, const floatX *inp, int N,
                                             int n_inner) {
    const int width = VEC ? VEC_WIDTH : 1;
    int chunks = n_inner / width;
    size_t n_items = (size_t)N * chunks;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t u = (size_t)blockIdx.x * blockDim.x + threadIdx.x; u < n_items; u += stride) {
        size_t i = u / chunks;
        int j = (int)(u % chunks) * width;
        const floatX *gate = inp + i * 2 * n_inner + j; /* (width) */
        const floatX *up = gate + n_inner;              /* (width) */
        floatX *y = out + i * n_inner + j;              /* (width) */
        float g[width], v[width], o[width];
        if constexpr (VEC) {
            load8(gate, g);
            load8(up, v);
        } else {
            g[0] = bf16_to_float(*gate);
            v[0] = bf16_to_float(*up);
        }
#pragma unroll
        for (int e = 0; e < width; e++) o[e] = silu(g[e]) * v[e];
        if constexpr (VEC) store8(y, o);
        else *y = float_to_bf16(o[0]);
    }
}

template <bool VEC>
__global__ static void swiglu_backward_kernel(floatX *dinp, const floatX *dout, const floatX *inp,
                                              int N, int n_inner) {
    const int width = VEC ? VEC_WIDTH : 1;
    int chunks = n_inner / width;
    size_t n_items = (size_t)N * chunks;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t u = (size_t)blockIdx.x * blockDim.x + threadIdx.x; u < n_items; u += stride) {
        size_t i = u / chunks;
        int j = (int)(u % chunks) * width;
        const floatX *gate = inp + i * 2 * n_inner + j; /* (width) */
        const floatX *up = gate + n_inner;              /* (width) */
        const floatX *dy = dout + i * n_inner + j;      /* (width) */
        floatX *dgate = dinp + i * 2 * n_inner + j;     /* (width) += */
        floatX *dup = dgate + n_inner;                  /* (width) += */
        float g[width], v[width], d[width], dg[width], du[width];
        if constexpr (VEC) {
            load8(gate, g);
            load8(up, v);
            load8(dy, d);
            load8(dgate, dg);
            load8(dup, du);
        } else {
            g[0] = bf16_to_float(*gate);
            v[0] = bf16_to_float(*up);
            d[0] = bf16_to_float(*dy);
            dg[0] = bf16_to_float(*dgate);
            du[0] = bf16_to_float(*dup);
        }
#pragma unroll
        for (int e = 0; e < width; e++) {
            float sig = sigmoid(g[e]);
            dg[e] += d[e] * v[e] * sig * (1.0f + g[e] * (1.0f - sig));
            du[e] += d[e] * silu(g[e]);
        }
        if constexpr (VEC) {
            store8(dgate, dg);
            store8(dup, du);
        } else {
            *dgate = float_to_bf16(dg[0]);
            *dup = float_to_bf16(du[0]);
        }
    }
}

extern "C" void swiglu_forward_cuda(float *out_f, const float *inp_f, int N, int n_inner) {
    if (N <= 0 || n_inner <= 0) return;
    floatX *out = reinterpret_cast<floatX *>(out_f);             /* (N,I) */
    const floatX *inp = reinterpret_cast<const floatX *>(inp_f); /* (N,2I) */
    bool vec = n_inner % VEC_WIDTH == 0 && aligned16(out) && aligned16(inp);
    int grid = grid_for((size_t)N * (vec ? n_inner / VEC_WIDTH : n_inner), SWIGLU_BLOCK);
    if (vec)
        swiglu_forward_kernel<true>
            <<<grid, SWIGLU_BLOCK, 0, retort_stream>>>(out, inp, N, n_inner);
    else
        swiglu_forward_kernel<false>
            <<<grid, SWIGLU_BLOCK, 0, retort_stream>>>(out, inp, N, n_inner);
    CUDA_LAUNCH_CHECK();
}

extern "C" void swiglu_backward_cuda(float *dinp_f, const float *dout_f, const float *inp_f, int N,
                                     int n_inner) {
    if (N <= 0 || n_inner <= 0) return;
    floatX *dinp = reinterpret_cast<floatX *>(dinp_f);             /* (N,2I) += */
    const floatX *dout = reinterpret_cast<const floatX *>(dout_f); /* (N,I) */
    const floatX *inp = reinterpret_cast<const floatX *>(inp_f);   /* (N,2I) */
    bool vec =
        n_inner % VEC_WIDTH == 0 && aligned16(dinp) && aligned16(dout) && aligned16(inp);
    int grid = grid_for((size_t)N * (vec ? n_inner / VEC_WIDTH : n_inner), SWIGLU_BLOCK);
    if (vec)
        swiglu_backward_kernel<true>
            <<<grid, SWIGLU_BLOCK, 0, retort_stream>>>(dinp, dout, inp, N, n_inner);
    else
        swiglu_backward_kernel<false>
            <<<grid, SWIGLU_BLOCK, 0, retort_stream>>>(dinp, dout, inp, N, n_inner);
    CUDA_LAUNCH_CHECK();
}
