/* kernels/adamw_scalars.h — the per-step AdamW scalars, shared by the CPU and
 * CUDA updates so both round exactly as torch.optim.AdamW does: every scalar
 * is derived in double (torch's Python floats) and rounded to float once (as
 * torch hands a Python scalar to a float kernel). */
#ifndef RETORT_ADAMW_SCALARS_H
#define RETORT_ADAMW_SCALARS_H

#include <math.h>

typedef struct {
    float decay;          /* 1 - lr*wd, applied to the parameter first */
    float w1;             /* 1 - beta1, torch's lerp weight */
    int lerp_small;       /* torch's lerp takes its first branch when |w1| < 0.5 */
    float b2, w2;         /* beta2 and 1 - beta2 */
    float neg_step_size;  /* -lr / (1 - beta1^step) */
    float bc2_sqrt;       /* sqrt(1 - beta2^step) */
    float eps;
} AdamWScalars;

static inline AdamWScalars adamw_scalars(double lr, double beta1, double beta2, double eps,
                                         double weight_decay, int step) {
    AdamWScalars s;
    s.decay = (float)(1.0 - lr * weight_decay);
    s.w1 = (float)(1.0 - beta1);
    s.lerp_small = fabsf(s.w1) < 0.5f;
    s.b2 = (float)beta2;
    s.w2 = (float)(1.0 - beta2);
    s.neg_step_size = (float)(-(lr / (1.0 - pow(beta1, step))));
    s.bc2_sqrt = (float)sqrt(1.0 - pow(beta2, step));
    s.eps = (float)eps;
    return s;
}

#endif
