/* train/objectives/lm.h — the language-modelling / SFT objective.
 *
 * loss = -sum_i logp_i / D over tokens with a target (targets[i] >= 0), where
 * D is the number of such tokens in the whole optimizer step (all micro-batches
 * of a gradient-accumulation window), so accumulation gives exactly the loss of
 * one big batch. Per-token weight g_i = dloss/dlogp_i = -1/D (0 off target).
 * The method behind objective.type lm is in lm.c (train/objectives/objective.h). */
#ifndef RETORT_OBJECTIVE_LM_H
#define RETORT_OBJECTIVE_LM_H

#include <stdint.h>

/* Tokens with a target among n. */
int64_t lm_count_targets(const int *targets, int64_t n);
/* Fills g (n) and returns this micro-batch's share of the loss (sum of -logp / D). */
double lm_loss_and_weights(const float *logp, const int *targets, int64_t n, double D, float *g);

#endif
