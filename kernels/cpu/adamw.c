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
 * float sum over ~1e8 elements would lose digits. Its sum order depends on n
 * only (fixed chunks summed left to right, chunk sums added in chunk order),
 * never on the thread count or timing, so a norm repeats bit for bit; up to
 * SUM_SQUARES_CHUNK elements it is the plain left-to-right sum. scale_act is
 * scale_inplace, the compute type being fp32 here.
 * Built with -std=c11, which implies -ffp-contract=off: a*b + c is never fused
 * into an FMA, so the CUDA twin (kernels/cuda/adamw.cu), which forbids the
 * fusion too, gets the same bits from the same inputs. */
#include <math.h>
#include <string.h>

#include "kernels/adamw_scalars.h"
#include "kernels/ops.h"

#define ELEMENTWISE_PAR_MIN 65536
#define SUM_SQUARES_CHUNK 65536    /* fewest elements per chunk of sum_squares */
#define SUM_SQUARES_MAX_CHUNKS 256 /* most chunks: the partial sums live on the stack */

/* fp32 parameters are their own master weights: the CPU passes master NULL.
 * Given one anyway, the update runs on it and param gets the copy (an fp32
 * compute type rounds nothing), as the op list says. */
void adamw_update(float *param, float *master, const float *grad, float *m, float *v, size_t n,
                  double lr, double beta1, double beta2, double eps, double weight_decay,
                  int step) {
    const AdamWScalars k = adamw_scalars(lr, beta1, beta2, eps, weight_decay, step);
    float *w = master ? master : param; /* (n) the fp32 weights the update reads and writes */
    #pragma omp parallel for if (n > ELEMENTWISE_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float g = grad[i];
        float p = w[i] * k.decay;
        float mi = m[i];
        mi = k.lerp_small ? mi + k.w1 * (g - mi) : g - (g - mi) * (1.0f - k.w1);
        float vi = v[i] * k.b2 + k.w2 * g * g;
        float denom = sqrtf(vi) / k.bc2_sqrt + k.eps;
        w[i] = p + k.neg_step_size * mi / denom;
        m[i] = mi;
        v[i] = vi;
    }
    if (master && master != param) memcpy(param, master, n * sizeof(float));
}

double sum_squares(const float *x, size_t n) {
    size_t len = (n + SUM_SQUARES_MAX_CHUNKS - 1) / SUM_SQUARES_MAX_CHUNKS;
    if (len < SUM_SQUARES_CHUNK) len = SUM_SQUARES_CHUNK;
    size_t n_chunks = (n + len - 1) / len; /* <= SUM_SQUARES_MAX_CHUNKS */
    double part[SUM_SQUARES_MAX_CHUNKS];
    #pragma omp parallel for if (n_chunks > 1)
    for (size_t k = 0; k < n_chunks; k++) {
        size_t end = (k + 1) * len < n ? (k + 1) * len : n;
        double s = 0.0;
        for (size_t i = k * len; i < end; i++) s += (double)x[i] * x[i];
        part[k] = s;
    }
    double sum = 0.0;
    for (size_t k = 0; k < n_chunks; k++) sum += part[k];
    return sum;
}

void scale_inplace(float *x, float s, size_t n) {
    #pragma omp parallel for if (n > ELEMENTWISE_PAR_MIN)
    for (size_t i = 0; i < n; i++) x[i] *= s;
}

/* the compute type is fp32: activations scale like gradients */
void scale_act(float *x, float s, size_t n) { scale_inplace(x, s, n); }
