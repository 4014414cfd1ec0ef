/* kernels/cpu/adamw.c — AdamW for one tensor, plus the reductions gradient clipping needs.
 *
 * adamw_update reproduces torch.optim.AdamW (single-tensor path) operation by
 * operation, so a run here and a run in PyTorch stay together step for step:
 *     p *= 1 - lr*wd                          (decoupled weight decay first)
 *     m  = lerp(m, g, 1 - beta1)              (torch's lerp, both of its branches)
 *     v  = beta2*v + (1 - beta2)*g*g
 *     p += -(lr / (1 - beta1^step)) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
 * The scalars (bias corrections, step size, sqrt of the second correction) are
 * computed in double, as torch does with Python floats, and then rounded to
 * float once, as torch does when it hands a Python scalar to a float kernel.
 * sum_squares accumulates in double: it feeds the global gradient norm, where a
 * float sum over ~1e8 elements would lose digits. */
#include <math.h>

#include "kernels/adamw_scalars.h"
#include "kernels/ops.h"

#define ELEMENTWISE_PAR_MIN 65536

void adamw_update(float *param, const float *grad, float *m, float *v, size_t n, double lr,
                  double beta1, double beta2, double eps, double weight_decay, int step) {
    const AdamWScalars k = adamw_scalars(lr, beta1, beta2, eps, weight_decay, step);
    #pragma omp parallel for if (n > ELEMENTWISE_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float g = grad[i];
        float p = param[i] * k.decay;
        float mi = m[i];
        mi = k.lerp_small ? mi + k.w1 * (g - mi) : g - (g - mi) * (1.0f - k.w1);
        float vi = v[i] * k.b2 + k.w2 * g * g;
        float denom = sqrtf(vi) / k.bc2_sqrt + k.eps;
        param[i] = p + k.neg_step_size * mi / denom;
        m[i] = mi;
        v[i] = vi;
    }
}

double sum_squares(const float *x, size_t n) {
    double sum = 0.0;
    #pragma omp parallel for reduction(+ : sum) if (n > ELEMENTWISE_PAR_MIN)
    for (size_t i = 0; i < n; i++) sum += (double)x[i] * x[i];
    return sum;
}

void scale_inplace(float *x, float s, size_t n) {
    #pragma omp parallel for if (n > ELEMENTWISE_PAR_MIN)
    for (size_t i = 0; i < n; i++) x[i] *= s;
}
