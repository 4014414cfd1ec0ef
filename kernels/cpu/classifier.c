/* kernels/cpu/classifier.c — the fused classifier: logits -> per-token log p(target),
 * and per-token weights -> dlogits, in place.
 *
 * Forward keeps only two numbers per row: lse = log sum_j exp(logits_j) (max
 * subtracted, the sum of exponentials accumulated in double) and
 * logp = logits[target] - lse. Backward rebuilds softmax_j = exp(logits_j - lse)
 * from the saved lse, so the (N,V) probability matrix is never stored: the
 * logits buffer itself is overwritten with
 *     dlogits_j = g * (1[j == target] - softmax_j).
 * Rows are independent; OpenMP splits them. Rows are Vp apart (the padded
 * vocabulary, kernels/ops.h); only the V real columns are read, and backward
 * zeroes the padded ones. */
#include <assert.h>
#include <math.h>
#include <string.h>

#include "kernels/ops.h"

void classifier_forward(float *logp, float *lse, const float *logits, const int *targets, int N,
                        int V, int Vp) {
    #pragma omp parallel for if ((long)N * V > 32768)
    for (int i = 0; i < N; i++) {
        const float *x = logits + (size_t)i * Vp; /* (V) real columns of a (Vp) row */
        float mx = -INFINITY;
        for (int j = 0; j < V; j++) mx = x[j] > mx ? x[j] : mx;
        double sum = 0.0;
        for (int j = 0; j < V; j++) sum += expf(x[j] - mx);
        double row_lse = (double)mx + log(sum);
        lse[i] = (float)row_lse;
        int t = targets[i];
        assert(t < V);
        logp[i] = t < 0 ? 0.0f : (float)((double)x[t] - row_lse);
    }
}

void classifier_backward(float *logits, const float *lse, const int *targets, const float *g,
                         int N, int V, int Vp) {
    #pragma omp parallel for if ((long)N * V > 32768)
    for (int i = 0; i < N; i++) {
        float *x = logits + (size_t)i * Vp; /* (Vp) in: logits, out: dlogits */
        int t = targets[i];
        assert(t < V);
        float gi = g[i];
        memset(x + V, 0, (size_t)(Vp - V) * sizeof(float)); /* padded columns */
        if (t < 0 || gi == 0.0f) {
            memset(x, 0, (size_t)V * sizeof(float));
            continue;
        }
        float l = lse[i];
        float p_target = expf(x[t] - l);
        for (int j = 0; j < V; j++) x[j] = -gi * expf(x[j] - l);
        x[t] = gi * (1.0f - p_target); /* 1 - p is exact for p >= 0.5; g - g p is not */
    }
}
