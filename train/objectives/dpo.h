/* train/objectives/dpo.h — DPO-family preference losses from per-pair sums of
 * completion-token log-probabilities, with the names, formulas and metrics of
 * TRL's DPOTrainer (trl/trainer/dpo_trainer.py, dpo_loss and
 * concatenated_forward in TRL 0.19; SimPO from CPOTrainer.cpo_loss).
 *
 * Per pair p, with policy sums pi_c, pi_r and reference sums ref_c, ref_r over
 * the completion tokens (n_c, n_r of them; a count of 0 is used as 1, as TRL
 * 1.x clamps it):
 *   x = (pi_c - pi_r) - (ref_c - ref_r)                DPO "logits"
 *   sigmoid : -(1-e) logsig(b x) - e logsig(-b x)      Eq. 7 of DPO (arXiv 2305.18290);
 *                                                     e = label_smoothing gives
 *                                                     conservative DPO (cDPO, Mitchell 2023, Eq. 3)
 *   robust  : (-(1-e) logsig(b x) + e logsig(-b x)) / (1 - 2e)   rDPO (arXiv 2403.00409)
 *   hinge   : max(0, 1 - b x)                          RSO (arXiv 2309.06657)
 *   ipo     : (x' - 1/(2b))^2, x' = (pi_c-ref_c)/n_c - (pi_r-ref_r)/n_r   IPO Eq. 17
 *             (arXiv 2310.12036); TRL divides the summed log-probs by the
 *             completion length for ipo only (concatenated_forward, 0.19;
 *             "ipo_delta" in 1.x) — both give this loss.
 *   simpo   : -(1-e) logsig(s) - e logsig(-s), s = b (pi_c/n_c - pi_r/n_r) - gamma
 *             reference-free (SimPO, arXiv 2405.14734; CPOTrainer with
 *             loss_type="simpo": logits - simpo_gamma/beta, times beta).
 * loss = mean over pairs of the above + rpo_alpha * NLL, where NLL is the mean
 * negative log-prob over all chosen completion tokens of the batch
 * (-sum_p pi_c / sum_p n_c, TRL's cross_entropy over the chosen half; RPO,
 * arXiv 2404.19733). TRL computes this per micro-batch, so does this file: a
 * gradient-accumulation window is the mean of its micro-batch losses.
 *
 * Because NLL depends on the token log-probs only through the chosen sums,
 * its gradient is folded into dlogp_c (-rpo_alpha / sum n_c for every pair):
 * the per-token weight of every completion token is exactly dL/d(its sum).
 *
 * Metrics, named as TRL logs them, are means over pairs:
 *   rewards/chosen   = b (pi_c - ref_c)     (simpo: b pi_c/n_c, as CPOTrainer)
 *   rewards/rejected = b (pi_r - ref_r)     (simpo: b pi_r/n_r)
 *   rewards/accuracies = [chosen reward > rejected reward] (strict)
 *   rewards/margins  = chosen - rejected reward
 *   logps/chosen, logps/rejected = pi_c, pi_r (simpo: pi/n, as CPOTrainer)
 *   nll_loss         = NLL above (logged by TRL when rpo_alpha is set)
 * For ipo the rewards and logps are on sums, as TRL 1.x logs them (0.19
 * logged them on per-token means).
 *
 * Differences from TRL, on purpose: a chosen-token count of 0 in the whole
 * batch gives NLL = 0 (TRL: NaN); TRL 0.19's cross_entropy(ignore_index=0)
 * also skipped chosen tokens whose id is 0 — here every completion token
 * counts. Label smoothing with hinge or ipo is refused (TRL warns and ignores).
 *
 * Batch layout shared with data/pref_batch.h: a batch of B pairs is 2B rows of
 * T; rows [0, B) are the chosen completions, rows [B, 2B) the rejected ones,
 * row b and row B + b the same pair.
 *
 * This header holds the pure functions; the method behind objective.type dpo
 * (its config checks, pairs, reference and step, train/objectives/objective.h)
 * is at the end of dpo.c and reached through the registry. */
#ifndef RETORT_OBJECTIVE_DPO_H
#define RETORT_OBJECTIVE_DPO_H

#include <stdint.h>

typedef enum { DPO_SIGMOID = 0, DPO_ROBUST, DPO_HINGE, DPO_IPO, DPO_SIMPO } DpoLossType;

/* "sigmoid", "robust", "hinge", "ipo", "simpo" (TRL's loss_type strings).
 * -1 with the error set (naming the accepted names) for anything else. */
int dpo_loss_type_from_name(const char *name, DpoLossType *out);
const char *dpo_loss_type_name(DpoLossType type);

typedef struct {
    DpoLossType type;
    double beta;             /* > 0; for ipo the tau of the IPO paper */
    double label_smoothing;  /* sigmoid, simpo: [0, 1]; robust: [0, 0.5); hinge, ipo: 0 */
    double rpo_alpha;        /* >= 0; 0 = no NLL term */
    double simpo_gamma;      /* simpo only: the target reward margin (TRL default 0.5) */
} DpoParams;

/* -1 with the error set when a parameter is out of its range above; the
 * message names the dpo.* config key and says what TRL does with the value. */
int dpo_params_validate(const DpoParams *p);

/* One preference pair: sums of log p over completion tokens (target tokens of
 * the row) and how many there are. ref_* are ignored by simpo. */
typedef struct {
    double logp_c, logp_r;   /* policy */
    double ref_c, ref_r;     /* reference */
    int64_t n_c, n_r;        /* completion tokens with a target */
} DpoPair;

typedef struct {
    double rewards_chosen;      /* rewards/chosen */
    double rewards_rejected;    /* rewards/rejected */
    double rewards_accuracies;  /* rewards/accuracies */
    double rewards_margins;     /* rewards/margins */
    double logps_chosen;        /* logps/chosen */
    double logps_rejected;      /* logps/rejected */
    double nll_loss;            /* nll_loss */
} DpoMetrics;

/* The loss (mean over n_pairs >= 1 pairs, plus rpo_alpha * NLL). When not
 * NULL, dlogp_c[p] and dlogp_r[p] (n_pairs) receive dloss/dlogp_c and
 * dloss/dlogp_r of each pair (the RPO term included), and *m the metrics. */
double dpo_batch_loss(const DpoParams *params, const DpoPair *pairs, int n_pairs,
                      double *dlogp_c, double *dlogp_r, DpoMetrics *m);

/* Assembles B pairs from per-row sums and counts of the 2B rows (layout
 * above): policy (2B), ref (2B, or NULL for zeros, as simpo needs none). */
void dpo_pairs_from_rows(const double *policy_sums, const double *ref_sums,
                         const int64_t *counts, int B, DpoPair *pairs);

/* Per-token weights g = dloss/dlogp for the 2B rows of T (layout above):
 * every token with targets >= 0 in row b gets dlogp_c[b], in row B + b gets
 * dlogp_r[b], times scale (e.g. 1 / accumulation steps); all else 0. */
void dpo_spread_weights(const double *dlogp_c, const double *dlogp_r, int B, int T,
                        const int *targets, double scale, float *g);

#endif
