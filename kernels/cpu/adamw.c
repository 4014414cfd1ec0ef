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

#include "kernels/ops.h"

#define ELEMENTWISE_PAR_MIN 65536

void adamw_update(float *param, const float *grad, float *m, float *v, size_t n, double lr,
                  double beta1, double beta2, double eps, double weight_decay, int step) {
    double lr_d = lr, beta1_d = beta1, beta2_d = beta2;
    float decay = (float)(1.0 - lr_d * weight_decay);
    float w1 = (float)(1.0 - beta1_d);                   /* lerp weight */
    float b2 = (float)beta2;
    float w2 = (float)(1.0 - beta2_d);
    double bias_correction1 = 1.0 - pow(beta1_d, step);
    double bias_correction2 = 1.0 - pow(beta2_d, step);
    float neg_step_size = (float)(-(lr_d / bias_correction1));
    float bc2_sqrt = (float)sqrt(bias_correction2);
    int lerp_small = fabsf(w1) < 0.5f;
    float eps_f = (float)eps;
    #pragma omp parallel for if (n > ELEMENTWISE_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float g = grad[i];
        float p = param[i] * decay;
        float mi = m[i];
        mi = lerp_small ? mi + w1 * (g - mi) : g - (g - mi) * (1.0f - w1);
        float vi = v[i] * b2 + w2 * g * g;
        float denom = sqrtf(vi) / bc2_sqrt + eps_f;
        param[i] = p + neg_step_size * mi / denom;
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
