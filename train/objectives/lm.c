/* train/objectives/lm.c — LM/SFT loss from per-token log-probabilities. */
#include "train/objectives/lm.h"

int64_t lm_count_targets(const int *targets, int64_t n) {
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) k += targets[i] >= 0;
    return k;
}

double lm_loss_and_weights(const float *logp, const int *targets, int64_t n, double D, float *g) {
    double loss = 0;
    float w = D > 0 ? (float)(-1.0 / D) : 0.0f;
    for (int64_t i = 0; i < n; i++) {
        if (targets[i] >= 0) {
            loss -= logp[i];
            g[i] = w;
        } else {
            g[i] = 0.0f;
        }
    }
    return D > 0 ? loss / D : 0.0;
}
