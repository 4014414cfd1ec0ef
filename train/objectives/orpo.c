/* train/objectives/orpo.c — ORPO, odds-ratio preference optimization (Hong,
 * Lee and Thorne 2024, "ORPO: Monolithic Preference Optimization without
 * Reference Model", arXiv 2403.07691), as TRL's ORPOTrainer computes it
 * (trl/experimental/orpo/orpo_trainer.py: concatenated_forward,
 * odds_ratio_loss, get_batch_loss_metrics). objective.type orpo, section
 * orpo (beta). Reference-free: one model, one forward of a micro-batch's 2B
 * rows (data/pref_batch.h: rows [0, B) chosen, [B, 2B) rejected).
 *
 * Per pair, with c and r the AVERAGE log-prob of the chosen and rejected
 * completion tokens (TRL's get_batch_logps(average_log_prob=True); a count of
 * 0 divides as 1):
 *   log_odds = (c - r) - (log(1 - e^c) - log(1 - e^r))     Eq. 4 and 7:
 *              log odds(y_w|x) - log odds(y_l|x), odds(y|x) = P / (1 - P)
 *   ratio    = logsigmoid(log_odds)
 * and over the B pairs of a micro-batch
 *   loss     = NLL - mean(beta * ratio)                      Eq. 6, beta = lambda
 * NLL is the mean -log p over every token of the chosen rows that has a
 * predecessor, prompt AND completion: TRL's cross_entropy over
 * concatenated_input_ids under the attention mask ("orpo chosen nll loss is
 * computed over the full prompt and response": TRL #2527 reverted a
 * completion-only NLL back to this), a token mean over the micro-batch. So
 * the chosen rows go through the model with their prompt tokens as targets
 * too; c, r and the odds use the completion tokens only. log(1 - e^x) is TRL's log1mexp (#4763):
 * log1p(-e^x) below -ln 2, log(-expm1 x) above, no cancellation near 0.
 *
 * Per-token weights g = dloss/dlogp (the seam), with s = sigmoid(-log_odds)
 * (= d ratio / d log_odds), d log_odds/dc = 1/(1 - e^c), d log_odds/dr =
 * -1/(1 - e^r), n_c and n_r the pair's completion tokens and N the NLL tokens:
 *   chosen completion token    -1/N - (beta/B) s / ((1 - e^c) n_c)
 *   chosen prompt token        -1/N
 *   rejected completion token  +(beta/B) s / ((1 - e^r) n_r)
 * When c is exactly 0 (every chosen token certain in fp32) the odds are
 * infinite, s = 0 and s / (1 - e^c) takes its limit, the rejected odds
 * e^r / (1 - e^r) (TRL's autograd gives NaN there); r exactly 0 makes the
 * loss +inf, which the trainer reports.
 *
 * Metrics, TRL's names, means over pairs: rewards/chosen = beta c,
 * rewards/rejected = beta r, rewards/accuracies = [beta c > beta r],
 * rewards/margins, logps/chosen = c, logps/rejected = r, nll_loss,
 * log_odds_ratio = mean ratio, log_odds_chosen = mean log_odds. TRL's
 * logits/chosen and logits/rejected (mean raw logits) need the V-wide logits,
 * which never reach the host here; they are not logged.
 *
 * Micro-batches, accumulation and ranks as dpo (pair_batches.h). Pairs are
 * cut to seq_len + 1 tokens keeping the start (TRL's max_length, whose
 * ORPOConfig has no prompt limit and no completion limit by default); the
 * dpo.max_* keys are DPO's and do not apply. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/objectives/objective.h"
#include "train/objectives/pair_batches.h"

enum {
    M_REWARDS_CHOSEN, M_REWARDS_REJECTED, M_REWARDS_ACCURACIES, M_REWARDS_MARGINS,
    M_LOGPS_CHOSEN, M_LOGPS_REJECTED, M_NLL_LOSS, M_LOG_ODDS_RATIO, M_LOG_ODDS_CHOSEN,
    ORPO_N_METRICS
};

static const ObjectiveMetric orpo_metrics[ORPO_N_METRICS] = {
    [M_REWARDS_CHOSEN] = {"rewards/chosen", "%.9g", NULL, 0},
    [M_REWARDS_REJECTED] = {"rewards/rejected", "%.9g", NULL, 0},
    [M_REWARDS_ACCURACIES] = {"rewards/accuracies", "%.6f", "acc", 3},
    [M_REWARDS_MARGINS] = {"rewards/margins", "%.9g", NULL, 0},
    [M_LOGPS_CHOSEN] = {"logps/chosen", "%.9g", NULL, 0},
    [M_LOGPS_REJECTED] = {"logps/rejected", "%.9g", NULL, 0},
    [M_NLL_LOSS] = {"nll_loss", "%.9g", "nll", 4},
    [M_LOG_ODDS_RATIO] = {"log_odds_ratio", "%.9g", "or", 4},
    [M_LOG_ODDS_CHOSEN] = {"log_odds_chosen", "%.9g", NULL, 0},
};

/* ------------------------------------------------------------ the loss */

/* log(1 - e^x) for x <= 0 (TRL's log1mexp). */
static double log1mexp(double x) {
    return x < -0.6931471805599453 ? log1p(-exp(x)) : log(-expm1(x));
}

/* log sigmoid(z) = -log(1 + exp(-z)), without overflow for either sign. */
static double log_sigmoid(double z) {
    return z >= 0 ? -log1p(exp(-z)) : z - log1p(exp(z));
}

static double sigmoid(double z) {
    if (z >= 0) return 1.0 / (1.0 + exp(-z));
    double t = exp(z);
    return t / (1.0 + t);
}

/* ORPO's loss on one micro-batch from per-token log-probs (the formulas
 * above). logp (2B, T): chosen rows [0, B) scored on their NLL tokens,
 * rejected rows [B, 2B) on their completion tokens. targets (2B, T): the
 * completion tokens (>= 0) of every row. nll_targets (B, T): the chosen rows'
 * NLL tokens, prompt and completion (a superset of their completion tokens).
 * When g is not NULL it receives the per-token weights times scale (2B, T; 0
 * off the scored tokens); metrics (ORPO_N_METRICS, may be NULL) the metrics.
 * Returns the loss. Not static: tests/test_orpo.c checks it against
 * tests/fixtures/orpo.json (a method is one file; it has no header). */
double orpo_batch_loss(double beta, const float *logp, const int *targets,
                       const int *nll_targets, int B, int T, double scale, float *g,
                       double *metrics);
double orpo_batch_loss(double beta, const float *logp, const int *targets,
                       const int *nll_targets, int B, int T, double scale, float *g,
                       double *metrics) {
    double nll_sum = 0;
    int64_t nll_n = 0;
    for (size_t i = 0; i < (size_t)B * T; i++)
        if (nll_targets[i] >= 0) {
            nll_sum -= logp[i];
            nll_n++;
        }
    double nll = nll_n > 0 ? nll_sum / (double)nll_n : 0.0;
    double nll_w = nll_n > 0 ? -1.0 / (double)nll_n : 0.0;
    double ratio_sum = 0, acc[ORPO_N_METRICS] = {0};
    for (int b = 0; b < B; b++) {
        double sum[2] = {0, 0};
        int64_t n[2] = {0, 0};
        for (int side = 0; side < 2; side++) {
            const float *lp = logp + (size_t)(side * B + b) * T;   /* (T) */
            const int *tg = targets + (size_t)(side * B + b) * T; /* (T) */
            for (int j = 0; j < T; j++)
                if (tg[j] >= 0) {
                    sum[side] += lp[j];
                    n[side]++;
                }
        }
        double len_c = n[0] > 0 ? (double)n[0] : 1.0, len_r = n[1] > 0 ? (double)n[1] : 1.0;
        double c = sum[0] / len_c, r = sum[1] / len_r;
        double lc = c - log1mexp(c), lr = r - log1mexp(r); /* log odds of each side */
        double log_odds = lc - lr, ratio = log_sigmoid(log_odds);
        ratio_sum += beta * ratio;
        acc[M_REWARDS_CHOSEN] += beta * c;
        acc[M_REWARDS_REJECTED] += beta * r;
        acc[M_REWARDS_ACCURACIES] += beta * c > beta * r;
        acc[M_REWARDS_MARGINS] += beta * c - beta * r;
        acc[M_LOGPS_CHOSEN] += c;
        acc[M_LOGPS_REJECTED] += r;
        acc[M_LOG_ODDS_RATIO] += ratio;
        acc[M_LOG_ODDS_CHOSEN] += log_odds;
        if (!g) continue;
        /* s / (1 - e^x) of each side; at c = 0 the chosen one's limit is e^lr */
        double s = sigmoid(-log_odds);
        double w_c = c < 0 ? s / -expm1(c) : exp(lr), w_r = r < 0 ? s / -expm1(r) : INFINITY;
        double d_c = -(beta / B) * w_c / len_c; /* per chosen completion token */
        double d_r = (beta / B) * w_r / len_r;  /* per rejected completion token */
        float *gc = g + (size_t)b * T, *gr = g + (size_t)(B + b) * T;
        const int *tc = targets + (size_t)b * T, *tr = targets + (size_t)(B + b) * T;
        const int *tn = nll_targets + (size_t)b * T;
        for (int j = 0; j < T; j++) {
            double w = (tn[j] >= 0 ? nll_w : 0.0) + (tc[j] >= 0 ? d_c : 0.0);
            gc[j] = (float)(scale * w);
            gr[j] = tr[j] >= 0 ? (float)(scale * d_r) : 0.0f;
        }
    }
    if (metrics) {
        for (int k = 0; k < ORPO_N_METRICS; k++) metrics[k] = acc[k] / B;
        metrics[M_NLL_LOSS] = nll;
    }
    return nll - ratio_sum / B;
}

/* ------------------------------------------------------------ the method */

typedef struct {
    PairBatches d;
    double beta;
    int *fw_tg;               /* (2B, T) forward targets: chosen rows' NLL tokens, rejected rows' completion */
} Orpo;

static int orpo_validate(const Config *c) {
    if (!(c->orpo.beta > 0) || !isfinite(c->orpo.beta))
        return err_set("config: orpo.beta is %g; it must be a finite number > 0 (TRL's default "
                       "is 0.1)", c->orpo.beta);
    return 0;
}

static void orpo_close(void *self) {
    Orpo *o = self;
    if (!o) return;
    pair_batches_close(&o->d);
    free(o->fw_tg);
    free(o);
}

static void *orpo_open(const TrainEnv *env) {
    Orpo *o = xcalloc(1, sizeof *o);
    o->beta = env->cfg->orpo.beta;
    if (pair_batches_open(&o->d, env, "orpo", 0, 0) != 0) {
        orpo_close(o);
        return NULL;
    }
    o->fw_tg = xmalloc((size_t)2 * o->d.max_pairs * env->T * sizeof(int));
    return o;
}

static int64_t orpo_items(const void *self) {
    return ((const Orpo *)self)->d.dl.count;
}

static int orpo_has_val(const void *self) {
    return ((const Orpo *)self)->d.have_val;
}

static int orpo_prepare(void *self, const TrainEnv *env) {
    return pair_batches_check_tokenizer(&((Orpo *)self)->d, env); /* no second model */
}

static void orpo_describe(const void *self, const TrainEnv *env) {
    pair_batches_describe(&((const Orpo *)self)->d, env);
}

static void orpo_seek(void *self, int64_t epoch, int64_t pos) {
    pair_batches_seek(&((Orpo *)self)->d, epoch, pos);
}

static void orpo_position(const void *self, int64_t *epoch, int64_t *pos) {
    pair_batches_position(&((const Orpo *)self)->d, epoch, pos);
}

/* One micro-batch (PairLossFn): the chosen rows' prompt tokens become
 * targets as well (the NLL's), one forward, orpo_batch_loss, one backward. */
static double orpo_micro(void *self, const TrainEnv *env, const PrefDataset *pd, const int *in,
                         const int *tg, const int64_t *pair_ids, int B, double scale,
                         int backward, double *metrics) {
    Orpo *o = self;
    int T = env->T;
    for (int b = 0; b < B; b++) {
        /* the prompt of row b: its first P inputs; position j predicts j + 1 */
        int P = pref_pair_span(pd, pair_ids[b], T, 0, 0).prompt_len;
        const int *ib = in + (size_t)b * T, *tb = tg + (size_t)b * T;
        int *fb = o->fw_tg + (size_t)b * T;
        for (int j = 0; j < T; j++) fb[j] = tb[j] >= 0 ? tb[j] : j + 1 < P ? ib[j + 1] : -1;
    }
    memcpy(o->fw_tg + (size_t)B * T, tg + (size_t)B * T, (size_t)B * T * sizeof(int));
    pair_batches_forward(&o->d, env, env->model, in, o->fw_tg, B, o->d.logp);
    double loss = orpo_batch_loss(o->beta, o->d.logp, tg, o->fw_tg, B, T, scale,
                                  backward ? o->d.g : NULL, metrics);
    if (backward) pair_batches_backward(&o->d, env, env->model, o->d.g, B);
    return loss;
}

static double orpo_step(void *self, const TrainEnv *env, double *metrics) {
    Orpo *o = self;
    return pair_batches_step(&o->d, env, orpo_micro, o, ORPO_N_METRICS, metrics);
}

static double orpo_eval(void *self, const TrainEnv *env, double *metrics) {
    Orpo *o = self;
    return pair_batches_eval(&o->d, env, orpo_micro, o, ORPO_N_METRICS, metrics);
}

const Objective objective_orpo = {
    .name = "orpo",
    .item_noun = "pairs",
    .batch_noun = "pairs",
    .rows_per_item = 2,
    .metrics = orpo_metrics,
    .n_metrics = ORPO_N_METRICS,
    .n_eval_metrics = ORPO_N_METRICS,
    .validate = orpo_validate,
    .open = orpo_open,
    .items = orpo_items,
    .has_val = orpo_has_val,
    .prepare = orpo_prepare,
    .describe = orpo_describe,
    .seek = orpo_seek,
    .step = orpo_step,
    .position = orpo_position,
    .eval = orpo_eval,
    .close = orpo_close,
};
