/* kernels/cpu/layernorm.c — LayerNorm over the last dimension (C), as torch does it.
 *
 * Matches torch.nn.LayerNorm: biased variance (mean of squared deviations, two
 * passes, in double per row), rstd = 1/sqrt(var + eps). Forward saves mean and
 * rstd so backward does not redo the reductions.
 *
 * Backward, with xhat = (x - mean) * rstd and dnorm = dout * weight:
 *     dx = rstd * (dnorm - mean_c(dnorm) - xhat * mean_c(dnorm * xhat))
 * is row-local and runs in parallel over rows. dweight = sum_rows dout*xhat and
 * dbias = sum_rows dout are column sums over all N rows; the threads split the
 * columns into blocks (no shared accumulators, fixed summation order) and
 * recompute xhat for their block instead of storing it. */
#include <math.h>

#include "kernels/ops.h"

void layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                       const float *weight, const float *bias, int N, int C, float eps) {
    #pragma omp parallel for if ((long)N * C > 32768)
    for (int i = 0; i < N; i++) {
        const float *x = inp + (size_t)i * C; /* (C) */
        float *y = out + (size_t)i * C;       /* (C) */
        double sum = 0.0;
        for (int c = 0; c < C; c++) sum += x[c];
        double mu = sum / C;
        double sq = 0.0;
        for (int c = 0; c < C; c++) {
            double d = x[c] - mu;
            sq += d * d;
        }
        float m = (float)mu;
        float s = (float)(1.0 / sqrt(sq / C + (double)eps));
        for (int c = 0; c < C; c++) y[c] = (x[c] - m) * s * weight[c] + bias[c];
        mean[i] = m;
        rstd[i] = s;
    }
}

/* Columns per work item of the dweight/dbias column sums. */
#define LN_COL_BLOCK 64

void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, const float *mean,
                        const float *rstd, int N, int C) {
    int big = (long)N * C > 32768;
    if (dinp) {
        #pragma omp parallel for if (big)
        for (int i = 0; i < N; i++) {
            const float *x = inp + (size_t)i * C;   /* (C) */
            const float *dy = dout + (size_t)i * C; /* (C) */
            float *dx = dinp + (size_t)i * C;       /* (C) */
            float m = mean[i], s = rstd[i];
            double sum_dnorm = 0.0, sum_dnorm_xhat = 0.0;
            for (int c = 0; c < C; c++) {
                float xhat = (x[c] - m) * s;
                float dnorm = dy[c] * weight[c];
                sum_dnorm += dnorm;
                sum_dnorm_xhat += (double)dnorm * xhat;
            }
            float mean_dnorm = (float)(sum_dnorm / C);
            float mean_dnorm_xhat = (float)(sum_dnorm_xhat / C);
            for (int c = 0; c < C; c++) {
                float xhat = (x[c] - m) * s;
                float dnorm = dy[c] * weight[c];
                dx[c] += s * (dnorm - mean_dnorm - xhat * mean_dnorm_xhat);
            }
        }
    }
    if (!dweight && !dbias) return;
    int n_blocks = (C + LN_COL_BLOCK - 1) / LN_COL_BLOCK;
    #pragma omp parallel for if (big)
    for (int blk = 0; blk < n_blocks; blk++) {
        int c0 = blk * LN_COL_BLOCK;
        int width = c0 + LN_COL_BLOCK < C ? LN_COL_BLOCK : C - c0;
        double acc_w[LN_COL_BLOCK] = {0}, acc_b[LN_COL_BLOCK] = {0};
        for (int i = 0; i < N; i++) {
            const float *x = inp + (size_t)i * C + c0;   /* (width) */
            const float *dy = dout + (size_t)i * C + c0; /* (width) */
            float m = mean[i], s = rstd[i];
            for (int k = 0; k < width; k++) {
                acc_w[k] += dy[k] * ((x[k] - m) * s);
                acc_b[k] += dy[k];
            }
        }
        for (int k = 0; k < width; k++) {
            if (dweight) dweight[c0 + k] += (float)acc_w[k];
            if (dbias) dbias[c0 + k] += (float)acc_b[k];
        }
    }
}
