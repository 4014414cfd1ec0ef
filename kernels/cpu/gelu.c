/* kernels/cpu/gelu.c — GELU (tanh approximation, HF "gelu_new") and the residual add.
 *
 *     gelu(x) = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
 * The forward evaluates in the same order as transformers' NewGELUActivation
 * ((0.5 x) * (1 + tanh(...)), x^3 as x*x*x) so fp32 results agree bit for bit
 * as far as tanhf does. Backward differentiates that formula analytically:
 *     gelu'(x) = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) sqrt(2/pi) (1 + 3*0.044715 x^2) */
#include <math.h>

#include "kernels/ops.h"

#define GELU_SCALE 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_CUBIC 0.044715f

/* Elementwise loops are memory bound: threads only pay above this size. */
#define ELEMENTWISE_PAR_MIN 65536

void gelu_forward(float *out, const float *inp, size_t n) {
    #pragma omp parallel for if (n > ELEMENTWISE_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float u = GELU_SCALE * (x + GELU_CUBIC * (x * x * x));
        out[i] = 0.5f * x * (1.0f + tanhf(u));
    }
}

void gelu_backward(float *dinp, const float *inp, const float *dout, size_t n) {
    #pragma omp parallel for if (n > ELEMENTWISE_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float u = GELU_SCALE * (x + GELU_CUBIC * (x * x * x));
        float th = tanhf(u);
        float du_dx = GELU_SCALE * (1.0f + 3.0f * GELU_CUBIC * x * x);
        float grad = 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du_dx;
        dinp[i] += grad * dout[i];
    }
}

void residual_forward(float *out, const float *a, const float *b, size_t n) {
    #pragma omp parallel for if (n > ELEMENTWISE_PAR_MIN)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}
