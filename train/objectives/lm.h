/* train/objectives/lm.h — the language-modelling / SFT objective.
 *
 * loss = -sum_i logp_i / D over tokens with a target (targets[i] >= 0), where
 * D is the number of such tokens in the whole optimizer step (all micro-batches
 * of a gradient-accumulation window), so accumulation gives exactly the loss of
 * one big batch. Per-token weight g_i = dloss/dlogp_i = -1/D (0 off target).
 *
 * With per-task weights (objective.task_weights, MT-CoT's
 * alpha L_answer + (1 - alpha) L_explanation):
 *   loss = sum_t w_t * (sum_{i in t} -logp_i) / D_t
 * D_t the target tokens of task t in the whole step (every micro-batch, every
 * rank), so each task's term is its mean over the step's tokens of that task
 * whatever the accumulation or world size; g_i = -w_t / D_t. A task without
 * tokens in a step adds nothing. The weights are used as given (not
 * renormalised).
 * The method behind objective.type lm is in lm.c (train/objectives/objective.h). */
#ifndef RETORT_OBJECTIVE_LM_H
#define RETORT_OBJECTIVE_LM_H

#include <stdint.h>

/* Tokens with a target among n. */
int64_t lm_count_targets(const int *targets, int64_t n);
/* Fills g (n) and returns this micro-batch's share of the loss (sum of -logp / D). */
double lm_loss_and_weights(const float *logp, const int *targets, int64_t n, double D, float *g);
/* The task-weighted form over B rows of T: row r's tokens have task task[r]
 * (< 0: trained on by no task, g 0) and factor coef[task] = w_t / D_t. Fills g
 * (B*T), adds each task's sum of -logp into task_nll[t], and returns this
 * micro-batch's share of the loss. */
double lm_task_loss_and_weights(const float *logp, const int *targets, const int *task, int B,
                                int T, const double *coef, float *g, double *task_nll);

#endif
