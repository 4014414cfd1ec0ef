/* kernels/cpu/swiglu.c — the SwiGLU gate of the Llama-family MLP,
 * act_fn(gate_proj(x)) * up_proj(x) with act_fn = SiLU, on the fused output of
 * the one (2I, C) gate|up GEMM: each row of inp is [gate (I) | up (I)].
 *     out = silu(g) u,   silu(g) = g sigmoid(g) = g / (1 + exp(-g))
 * Backward, with sig = sigmoid(g):
 *     dg = dout u sig (1 + g (1 - sig)),   du = dout silu(g)
 * silu is evaluated as torch's kernel does, g / (1 + exp(-g)); it and the
 * sigmoid stay exact at both ends: for very negative g expf overflows to inf
 * and both are (-)0, for very positive g sig is 1. */
#include <math.h>

#include "kernels/ops.h"

#define ELEMENTWISE_PAR_MIN 65536

static inline float silu(float x) { return x / (1.0f + expf(-x)); }
static inline float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

void swiglu_forward(float *out, const float *inp, int N, int n_inner) {
    #pragma omp parallel for if ((long)N * n_inner > ELEMENTWISE_PAR_MIN)
    for (int i = 0; i < N; i++) {
        const float *gate = inp + (size_t)i * 2 * n_inner; /* (I) */
        const float *up = gate + n_inner;                  /* (I) */
        float *y = out + (size_t)i * n_inner;              /* (I) */
        for (int j = 0; j < n_inner; j++) y[j] = silu(gate[j]) * up[j];
    }
}

void swiglu_backward(float *dinp, const float *dout, const float *inp, int N,
                     int n_inner) {
    #pragma omp parallel for if ((long)N * n_inner > ELEMENTWISE_PAR_MIN)
    for (int i = 0; i < N; i++) {
        const float *gate = inp + (size_t)i * 2 * n_inner; /* (I) */
        const float *up = gate + n_inner;                  /* (I) */
        const float *dy = dout + (size_t)i * n_inner;      /* (I) */
        float *dgate = dinp + (size_t)i * 2 * n_inner;     /* (I) += */
        float *dup = dgate + n_inner;                      /* (I) += */
        for (int j = 0; j < n_inner; j++) {
            float g = gate[j], sig = sigmoid(g);
            dgate[j] += dy[j] * up[j] * sig * (1.0f + g * (1.0f - sig));
            dup[j] += dy[j] * silu(g);
        }
    }
}
