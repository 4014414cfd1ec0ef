/* kernels/cuda/gelu.cu — GELU (tanh approximation, HF "gelu_new"), its backward,
 * and the residual add, on bf16 tensors of n elements; the twin of kernels/cpu/gelu.c.
 *
 *     gelu(x) = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
 * evaluated as the CPU file does, through 0.5 (1 + tanh u) = sigmoid(2u) =
 * 1 / (1 + exp(-2u)), in fp32 in the same order with the accurate expf (not
 * __expf), and rounded to bf16 once. The sigmoid form also keeps its relative
 * accuracy for large negative x, where 1 + tanh(u) cancels to 0 or one ulp of
 * 1 while bf16 could still hold the small result. Backward, with s = sigmoid(2u):
 *     gelu'(x) = s + x * 2 s (1 - s) * sqrt(2/pi) (1 + 3*0.044715 x^2)
 *
 * The trick is only in the memory access: when every pointer is 16-byte aligned,
 * each thread moves eight bf16 values per load/store (uint4) and a scalar loop
 * picks up the n % 8 tail; otherwise everything runs scalar. Each element is read
 * and written by one thread, so out may alias an input (in-place use is fine).
 * Grid-stride loops, so any n fits any grid.
 */
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/cuda/reduce.cuh"

#define GELU_SCALE 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_CUBIC 0.044715f
#define ELEMENTWISE_BLOCK 256

static __device__ __forceinline__ float gelu_gate(float x) { /* sigmoid(2u) = 0.5 (1 + tanh u) */
    float u = GELU_SCALE * (x + GELU_CUBIC * (x * x * x));
    return 1.0f / (1.0f + expf(-2.0f * u));
}

static __device__ __forceinline__ float gelu_value(float x) { return x * gelu_gate(x); }

static __device__ __forceinline__ float gelu_grad(float x) {
    float s = gelu_gate(x);
    float du_dx = GELU_SCALE * (1.0f + 3.0f * GELU_CUBIC * x * x);
    return s + x * 2.0f * s * (1.0f - s) * du_dx;
}

/* VEC: elements [0, 8*(n/8)) in vectors of 8, then the scalar tail [8*(n/8), n).
 * Scalar: all of [0, n). */
template <bool VEC>
__global__ static void gelu_forward_kernel(floatX *out, const floatX *inp, size_t n) {
    size_t tid = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    size_t n_vec = VEC ? n / VEC_WIDTH : 0;
    for (size_t k = tid; k < n_vec; k += stride) {
        float x[VEC_WIDTH], y[VEC_WIDTH];
        load8(inp + k * VEC_WIDTH, x);
#pragma unroll
        for (int e = 0; e < VEC_WIDTH; e++) y[e] = gelu_value(x[e]);
        store8(out + k * VEC_WIDTH, y);
    }
    for (size_t i = n_vec * VEC_WIDTH + tid; i < n; i += stride)
        out[i] = float_to_bf16(gelu_value(bf16_to_float(inp[i])));
}

/* dinp += gelu'(inp) * dout */
template <bool VEC>
__global__ static void gelu_backward_kernel(floatX *dinp, const floatX *inp, const floatX *dout,
                                            size_t n) {
    size_t tid = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    size_t n_vec = VEC ? n / VEC_WIDTH : 0;
    for (size_t k = tid; k < n_vec; k += stride) {
        float x[VEC_WIDTH], dy[VEC_WIDTH], dx[VEC_WIDTH];
        load8(inp + k * VEC_WIDTH, x);
        load8(dout + k * VEC_WIDTH, dy);
        load8(dinp + k * VEC_WIDTH, dx);
#pragma unroll
        for (int e = 0; e < VEC_WIDTH; e++) dx[e] += gelu_grad(x[e]) * dy[e];
        store8(dinp + k * VEC_WIDTH, dx);
    }
    for (size_t i = n_vec * VEC_WIDTH + tid; i < n; i += stride) {
        float x = bf16_to_float(inp[i]), dy = bf16_to_float(dout[i]);
        dinp[i] = float_to_bf16(bf16_to_float(dinp[i]) + gelu_grad(x) * dy);
    }
}

/* out = a + b, summed in fp32 and rounded once */
template <bool VEC>
__global__ static void residual_forward_kernel(floatX *out, const floatX *a, const floatX *b,
                                               size_t n) {
    size_t tid = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    size_t n_vec = VEC ? n / VEC_WIDTH : 0;
    for (size_t k = tid; k < n_vec; k += stride) {
        float va[VEC_WIDTH], vb[VEC_WIDTH];
        load8(a + k * VEC_WIDTH, va);
        load8(b + k * VEC_WIDTH, vb);
#pragma unroll
        for (int e = 0; e < VEC_WIDTH; e++) va[e] += vb[e];
        store8(out + k * VEC_WIDTH, va);
    }
    for (size_t i = n_vec * VEC_WIDTH + tid; i < n; i += stride)
        out[i] = float_to_bf16(bf16_to_float(a[i]) + bf16_to_float(b[i]));
}

extern "C" void gelu_forward_cuda(float *out_f, const float *inp_f, size_t n) {
    if (n == 0) return;
    floatX *out = reinterpret_cast<floatX *>(out_f);         /* (n) */
    const floatX *inp = reinterpret_cast<const floatX *>(inp_f); /* (n) */
    bool vec = aligned16(out) && aligned16(inp);
    int grid = grid_for(vec ? n / VEC_WIDTH + 1 : n, ELEMENTWISE_BLOCK);
    if (vec) gelu_forward_kernel<true><<<grid, ELEMENTWISE_BLOCK, 0, retort_stream>>>(out, inp, n);
    else gelu_forward_kernel<false><<<grid, ELEMENTWISE_BLOCK, 0, retort_stream>>>(out, inp, n);
    CUDA_LAUNCH_CHECK();
}

extern "C" void gelu_backward_cuda(float *dinp_f, const float *inp_f, const float *dout_f,
                                   size_t n) {
    if (n == 0) return;
    floatX *dinp = reinterpret_cast<floatX *>(dinp_f);           /* (n) += */
    const floatX *inp = reinterpret_cast<const floatX *>(inp_f);   /* (n) */
    const floatX *dout = reinterpret_cast<const floatX *>(dout_f); /* (n) */
    bool vec = aligned16(dinp) && aligned16(inp) && aligned16(dout);
    int grid = grid_for(vec ? n / VEC_WIDTH + 1 : n, ELEMENTWISE_BLOCK);
    if (vec)
        gelu_backward_kernel<true><<<grid, ELEMENTWISE_BLOCK, 0, retort_stream>>>(dinp, inp, dout,
                                                                                 n);
    else
        gelu_backward_kernel<false><<<grid, ELEMENTWISE_BLOCK, 0, retort_stream>>>(dinp, inp, dout,
                                                                                  n);
    CUDA_LAUNCH_CHECK();
}

extern "C" void residual_forward_cuda(float *out_f, const float *a_f, const float *b_f, size_t n) {
    if (n == 0) return;
    floatX *out = reinterpret_cast<floatX *>(out_f);     /* (n) */
    const floatX *a = reinterpret_cast<const floatX *>(a_f); /* (n) */
    const floatX *b = reinterpret_cast<const floatX *>(b_f); /* (n) */
    bool vec = aligned16(out) && aligned16(a) && aligned16(b);
    int grid = grid_for(vec ? n / VEC_WIDTH + 1 : n, ELEMENTWISE_BLOCK);
    if (vec)
        residual_forward_kernel<true><<<grid, ELEMENTWISE_BLOCK, 0, retort_stream>>>(out, a, b, n);
    else
        residual_forward_kernel<false><<<grid, ELEMENTWISE_BLOCK, 0, retort_stream>>>(out, a, b, n);
    CUDA_LAUNCH_CHECK();
}
