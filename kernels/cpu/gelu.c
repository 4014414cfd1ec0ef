/* kernels/cpu/gelu.c — GELU (tanh approximation, HF "gelu_new") and the residual add.
 *
 *     gelu(x) = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
 * The trick: 0.5 (1 + tanh u) = sigmoid(2u) = 1 / (1 + exp(-2u)), so one expf
 * replaces tanhf (which costs an expm1f and more: a third of a small model's
 * step went there), and nothing cancels for large negative x, where
 * 1 + tanh(u) would. The result differs from transformers' fp32 evaluation of
 * the tanh form only by rounding (the HF parity tests hold at 1e-5).
 * Backward, with s = sigmoid(2u):
 *     gelu'(x) = s + x * 2 s (1 - s) * sqrt(2/pi) (1 + 3*0.044715 x^2) */
#include <math.h>

#include "kernels/ops.h"

#define GELU_SCALE 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_CUBIC 0.044715f

/* Elementwise loops are memory bound: threads only pay above this size. */
#define ELEMENTWISE_PAR_MIN 65536

static inline float gelu_gate(float x) { /* sigmoid(2u) = 0.5 (1 + tanh u) */
    float u = GELU_SCALE * (x + GELU_CUBIC * (x * x * x));
    return 1.0f / (1.0f + expf(-2.0f * u));
}

void gelu_forward(float *out, const float *inp, size_t n) {
    #pragma omp parallel for if (n > ELEMENTWISE_PAR_MIN)
    for (size_t i = 0; i < n; i++) out[i] = inp[i] * gelu_gate(inp[i]);
}

void gelu_backward(float *dinp, const float *inp, const float *dout, size_t n) {
    #pragma omp parallel for if (n > ELEMENTWISE_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float s = gelu_gate(x);
        float du_dx = GELU_SCALE * (1.0f + 3.0f * GELU_CUBIC * x * x);
        dinp[i] += (s + x * 2.0f * s * (1.0f - s) * du_dx) * dout[i];
    }
}

void residual_forward(float *out, const float *a, const float *b, size_t n) {
    #pragma omp parallel for if (n > ELEMENTWISE_PAR_MIN)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}
