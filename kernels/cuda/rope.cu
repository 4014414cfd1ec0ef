/* kernels/cuda/rope.cu — rotary position embedding of the q and k heads, in
 * place in the bf16 fused qkv buffer; the twin of kernels/cpu/rope.c
 * (transformers' rotate_half convention).
 *
 * With h = HS/2, p = pos[b,t] (packed rows) or pos0 + t (pos NULL) and the
 * fp32 tables c = cos_tab[p,i], s = sin_tab[p,i]:
 *     forward   y[i] = x[i] c - x[i+h] s,   y[i+h] = x[i+h] c + x[i] s
 *     backward  the same with s negated (the rotation's transpose)
 * computed in fp32 from the bf16 values and rounded once. One thread owns a
 * pair of positions (i, i+h) of one head, or, when h % 8 == 0 and qkv is
 * 16-byte aligned, eight pairs (i..i+7, i+h..i+h+7) moved as two 16-byte
 * vectors. Each element is read and written by its one thread, so in place
 * is safe; the v heads are never touched. Grid-stride loops: any size fits.
 * HS must be even: the op stops with a message otherwise (the model refuses
 * an odd head_dim before it gets here).
 */
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/cuda/reduce.cuh"

#define ROPE_BLOCK 256

template <bool VEC>
__global__ static void rope_kernel(floatX *qkv, const float *cos_tab, const float *sin_tab,
                                   const int *pos_ids, int B, int T, int pos0, int NH, int KVH,
                                   int HS, float sign) {
    const int width = VEC ? VEC_WIDTH : 1;
    int h = HS / 2, chunks = h / width, rotated = NH + KVH;
    size_t W = (size_t)(NH + 2 * KVH) * HS;
    size_t n_items = (size_t)B * T * rotated * chunks;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t u = (size_t)blockIdx.x * blockDim.x + threadIdx.x; u < n_items; u += stride) {
        int i = (int)(u % chunks) * width;
        size_t rest = u / chunks;
        int g = (int)(rest % rotated);
        size_t bt = rest / rotated;
        int pos = pos_ids ? pos_ids[bt] : pos0 + (int)(bt % T);
        floatX *x = qkv + bt * W + (size_t)g * HS;    /* (HS) one head */
        const float *c = cos_tab + (size_t)pos * h + i; /* (width) */
        const float *s = sin_tab + (size_t)pos * h + i; /* (width) */
        float a[width], b[width];
        if constexpr (VEC) {
            load8(x + i, a);
            load8(x + i + h, b);
        } else {
            a[0] = bf16_to_float(x[i]);
            b[0] = bf16_to_float(x[i + h]);
        }
        float ya[width], yb[width];
#pragma unroll
        for (int e = 0; e < width; e++) {
            float si = sign * s[e];
            ya[e] = a[e] * c[e] - b[e] * si;
            yb[e] = b[e] * c[e] + a[e] * si;
        }
        if constexpr (VEC) {
            store8(x + i, ya);
            store8(x + i + h, yb);
        } else {
            x[i] = float_to_bf16(ya[0]);
            x[i + h] = float_to_bf16(yb[0]);
        }
    }
}

static void rope_launch(const char *fn, float *qkv_f, const float *cos_tab, const float *sin_tab,
                        const int *pos, int B, int T, int pos0, int NH, int KVH, int HS,
                        float sign) {
    if (HS % 2 != 0) {
        fprintf(stderr, "retort: %s: head size %d is odd; rotary embeddings rotate pairs "
                        "(i, i + HS/2), so the model must refuse an odd head_dim\n", fn, HS);
        exit(1);
    }
    if (B <= 0 || T <= 0 || NH + KVH <= 0 || HS <= 0) return;
    floatX *qkv = reinterpret_cast<floatX *>(qkv_f); /* (B,T,W) in place */
    /* cos_tab, sin_tab (maxT, HS/2) fp32 */
    int h = HS / 2;
    bool vec = h % VEC_WIDTH == 0 && aligned16(qkv);
    size_t n_items = (size_t)B * T * (NH + KVH) * (vec ? h / VEC_WIDTH : h);
    int grid = grid_for(n_items, ROPE_BLOCK);
    if (vec)
        rope_kernel<true><<<grid, ROPE_BLOCK, 0, retort_stream>>>(qkv, cos_tab, sin_tab, pos, B, T,
                                                                  pos0, NH, KVH, HS, sign);
    else
        rope_kernel<false><<<grid, ROPE_BLOCK, 0, retort_stream>>>(qkv, cos_tab, sin_tab, pos, B, T,
                                                                   pos0, NH, KVH, HS, sign);
    CUDA_LAUNCH_CHECK();
}

extern "C" void rope_forward_cuda(float *qkv, const float *cos_tab, const float *sin_tab,
                                  const int *pos, int B, int T, int pos0, int NH, int KVH,
                                  int HS) {
    rope_launch("rope_forward_cuda", qkv, cos_tab, sin_tab, pos, B, T, pos0, NH, KVH, HS, 1.0f);
}

extern "C" void rope_backward_cuda(float *dqkv, const float *cos_tab, const float *sin_tab,
                                   const int *pos, int B, int T, int pos0, int NH, int KVH,
                                   int HS) {
    rope_launch("rope_backward_cuda", dqkv, cos_tab, sin_tab, pos, B, T, pos0, NH, KVH, HS,
                -1.0f);
}
