/* train/objectives/dpo.c — DPO-family losses on per-pair log-prob sums (the
 * formulas and their TRL sources are in dpo.h), and the method behind
 * objective.type dpo (at the end). Everything is in double: the sums come
 * from float per-token log-probs but a sum over hundreds of tokens and the
 * differences of such sums lose digits a float could not spare. */
#include "train/objectives/dpo.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/objectives/objective.h"
#include "train/objectives/pair_batches.h"
#include "util/util.h"

static const char *const loss_type_names[] = {"sigmoid", "robust", "hinge", "ipo", "simpo"};
#define N_LOSS_TYPES ((int)(sizeof loss_type_names / sizeof loss_type_names[0]))

int dpo_loss_type_from_name(const char *name, DpoLossType *out) {
    for (int i = 0; i < N_LOSS_TYPES; i++) {
        if (strcmp(name, loss_type_names[i]) == 0) {
            *out = (DpoLossType)i;
            return 0;
        }
    }
    return err_set("unknown DPO loss type '%s'; use one of sigmoid, robust, hinge, ipo, simpo",
                   name);
}

const char *dpo_loss_type_name(DpoLossType type) {
    assert((int)type >= 0 && (int)type < N_LOSS_TYPES);
    return loss_type_names[type];
}

/* Messages name the config keys (dpo.*), since that is where the values come
 * from, and say what TRL does with the same values. */
int dpo_params_validate(const DpoParams *p) {
    if ((int)p->type < 0 || (int)p->type >= N_LOSS_TYPES)
        return err_set("DPO loss type %d is not one of sigmoid, robust, hinge, ipo, simpo",
                       (int)p->type);
    const char *name = loss_type_names[p->type];
    if (!(p->beta > 0) || !isfinite(p->beta))
        return err_set("dpo.beta is %g; it must be a finite number > 0 (TRL's default is 0.1)",
                       p->beta);
    double e = p->label_smoothing;
    if (p->type == DPO_ROBUST && !(e >= 0 && e < 0.5))
        return err_set("dpo.label_smoothing is %g, but dpo.loss_type robust needs it in [0, 0.5) "
                       "(the probability that a preference label is flipped; the loss divides "
                       "by 1 - 2 label_smoothing, which is 0 at 0.5). TRL only logs a warning "
                       "for this and then trains on an infinite or NaN loss. Set "
                       "dpo.label_smoothing below 0.5 (the rDPO paper uses 0.1), or use "
                       "dpo.loss_type sigmoid for conservative DPO", e);
    if ((p->type == DPO_SIGMOID || p->type == DPO_SIMPO) && !(e >= 0 && e <= 1))
        return err_set("dpo.label_smoothing is %g; the %s loss needs it in [0, 1]", e, name);
    if ((p->type == DPO_HINGE || p->type == DPO_IPO) && e != 0)
        return err_set("dpo.label_smoothing is %g, but dpo.loss_type %s has no label smoothing. "
                       "TRL ignores it for %s (0.x with a warning, 1.x silently), so the run "
                       "would not train what the config says; set dpo.label_smoothing to 0, or "
                       "use dpo.loss_type sigmoid (conservative DPO) or robust", e, name, name);
    if (!(p->rpo_alpha >= 0) || !isfinite(p->rpo_alpha))
        return err_set("dpo.rpo_alpha is %g; it must be a finite number >= 0 (0 turns the NLL "
                       "term off)", p->rpo_alpha);
    if (!isfinite(p->simpo_gamma))
        return err_set("dpo.simpo_gamma is %g; it must be finite", p->simpo_gamma);
    return 0;
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

/* A count of 0 divides as 1 (TRL 1.x: mask.sum().clamp(min=1)). */
static double len_of(int64_t n) {
    return n > 0 ? (double)n : 1.0;
}

/* -(1-e) logsig(z) - e logsig(-z) and its derivative in z
 * (d logsig(z)/dz = sigmoid(-z)). */
static double smoothed_logistic(double z, double e, double *dz) {
    *dz = -(1 - e) * sigmoid(-z) + e * sigmoid(z);
    return -(1 - e) * log_sigmoid(z) - e * log_sigmoid(-z);
}

/* One pair's loss term (before the mean) and its derivatives in pi_c, pi_r. */
static double pair_loss(const DpoParams *p, const DpoPair *q, double *d_c, double *d_r) {
    double b = p->beta, e = p->label_smoothing, dz;
    double x = (q->logp_c - q->logp_r) - (q->ref_c - q->ref_r);
    double loss;
    switch (p->type) {
    case DPO_SIGMOID:
        loss = smoothed_logistic(b * x, e, &dz);
        *d_c = b * dz;
        *d_r = -b * dz;
        return loss;
    case DPO_ROBUST: {
        double z = b * x;
        loss = (-(1 - e) * log_sigmoid(z) + e * log_sigmoid(-z)) / (1 - 2 * e);
        dz = (-(1 - e) * sigmoid(-z) - e * sigmoid(z)) / (1 - 2 * e);
        *d_c = b * dz;
        *d_r = -b * dz;
        return loss;
    }
    case DPO_HINGE: {
        double h = 1 - b * x;
        dz = h > 0 ? -1.0 : 0.0; /* relu'(0) = 0, as torch */
        *d_c = b * dz;
        *d_r = -b * dz;
        return h > 0 ? h : 0.0;
    }
    case DPO_IPO: {
        double lc = len_of(q->n_c), lr = len_of(q->n_r);
        double xm = (q->logp_c - q->ref_c) / lc - (q->logp_r - q->ref_r) / lr;
        double u = xm - 1.0 / (2 * b);
        *d_c = 2 * u / lc;
        *d_r = -2 * u / lr;
        return u * u;
    }
    case DPO_SIMPO: {
        double lc = len_of(q->n_c), lr = len_of(q->n_r);
        double z = b * (q->logp_c / lc - q->logp_r / lr) - p->simpo_gamma;
        loss = smoothed_logistic(z, e, &dz);
        *d_c = b * dz / lc;
        *d_r = -b * dz / lr;
        return loss;
    }
    }
    assert(0 && "unknown DPO loss type");
    return 0;
}

double dpo_batch_loss(const DpoParams *params, const DpoPair *pairs, int n_pairs,
                      double *dlogp_c, double *dlogp_r, DpoMetrics *m) {
    assert(n_pairs >= 1);
    double inv_n = 1.0 / n_pairs;
    double loss = 0, sum_chosen = 0;
    int64_t chosen_tokens = 0;
    DpoMetrics acc = {0};
    for (int i = 0; i < n_pairs; i++) {
        const DpoPair *q = &pairs[i];
        double d_c, d_r;
        loss += pair_loss(params, q, &d_c, &d_r);
        if (dlogp_c) dlogp_c[i] = d_c * inv_n;
        if (dlogp_r) dlogp_r[i] = d_r * inv_n;
        sum_chosen += q->logp_c;
        chosen_tokens += q->n_c;

        double r_c, r_r, l_c, l_r;
        if (params->type == DPO_SIMPO) {
            l_c = q->logp_c / len_of(q->n_c);
            l_r = q->logp_r / len_of(q->n_r);
            r_c = params->beta * l_c;
            r_r = params->beta * l_r;
        } else {
            l_c = q->logp_c;
            l_r = q->logp_r;
            r_c = params->beta * (q->logp_c - q->ref_c);
            r_r = params->beta * (q->logp_r - q->ref_r);
        }
        acc.rewards_chosen += r_c;
        acc.rewards_rejected += r_r;
        acc.rewards_accuracies += r_c > r_r;
        acc.rewards_margins += r_c - r_r;
        acc.logps_chosen += l_c;
        acc.logps_rejected += l_r;
    }
    loss *= inv_n;

    /* RPO: alpha * (-sum pi_c / sum n_c); linear in the chosen sums. */
    double nll = chosen_tokens > 0 ? -sum_chosen / (double)chosen_tokens : 0.0;
    if (params->rpo_alpha != 0 && chosen_tokens > 0) {
        loss += params->rpo_alpha * nll;
        if (dlogp_c) {
            double w = -params->rpo_alpha / (double)chosen_tokens;
            for (int i = 0; i < n_pairs; i++) dlogp_c[i] += w;
        }
    }
    if (m) {
        m->rewards_chosen = acc.rewards_chosen * inv_n;
        m->rewards_rejected = acc.rewards_rejected * inv_n;
        m->rewards_accuracies = acc.rewards_accuracies * inv_n;
        m->rewards_margins = acc.rewards_margins * inv_n;
        m->logps_chosen = acc.logps_chosen * inv_n;
        m->logps_rejected = acc.logps_rejected * inv_n;
        m->nll_loss = nll;
    }
    return loss;
}

void dpo_pairs_from_rows(const double *policy_sums, const double *ref_sums,
                         const int64_t *counts, int B, DpoPair *pairs) {
    for (int b = 0; b < B; b++) {
        pairs[b] = (DpoPair){
            .logp_c = policy_sums[b],
            .logp_r = policy_sums[B + b],
            .ref_c = ref_sums ? ref_sums[b] : 0.0,
            .ref_r = ref_sums ? ref_sums[B + b] : 0.0,
            .n_c = counts[b],
            .n_r = counts[B + b],
        };
    }
}

void dpo_spread_weights(const double *dlogp_c, const double *dlogp_r, int B, int T,
                        const int *targets, double scale, float *g) {
    for (int row = 0; row < 2 * B; row++) {
        float w = (float)(scale * (row < B ? dlogp_c[row] : dlogp_r[row - B]));
        const int *tg = targets + (size_t)row * T; /* (T) */
        float *gr = g + (size_t)row * T;           /* (T) */
        for (int j = 0; j < T; j++) gr[j] = tg[j] >= 0 ? w : 0.0f;
    }
}

/* ------------------------------------------------------------ the method
 *
 * objective.type dpo: the losses above on per-pair sums of completion
 * log-probs. The reference is a frozen model run forward on the same rows
 * (dpo.reference, or model.init when it is empty), or the pref file's
 * precomputed ref_logp_* (dpo.reference "precomputed", `retort dpo
 * precompute-ref`); simpo needs none. */

typedef struct {
    PairBatches d;
    DpoParams p;
    GPT *ref;                  /* online reference, or NULL (precomputed, or simpo) */
    double *sums, *ref_sums;   /* (2B) policy and reference per-row sums */
    int64_t *counts;           /* (2B) completion tokens per row */
    DpoPair *pairs;            /* (B) */
    double *dlogp_c, *dlogp_r; /* (B) dLoss/d(pair sums) */
} Dpo;

enum {
    M_REWARDS_CHOSEN, M_REWARDS_REJECTED, M_REWARDS_ACCURACIES, M_REWARDS_MARGINS,
    M_LOGPS_CHOSEN, M_LOGPS_REJECTED, M_NLL_LOSS, DPO_N_METRICS
};

static const ObjectiveMetric dpo_metrics[DPO_N_METRICS] = {
    [M_REWARDS_CHOSEN] = {"rewards/chosen", "%.9g", NULL, 0},
    [M_REWARDS_REJECTED] = {"rewards/rejected", "%.9g", NULL, 0},
    [M_REWARDS_ACCURACIES] = {"rewards/accuracies", "%.6f", "acc", 3},
    [M_REWARDS_MARGINS] = {"rewards/margins", "%.9g", "margin", 3},
    [M_LOGPS_CHOSEN] = {"logps/chosen", "%.9g", NULL, 0},
    [M_LOGPS_REJECTED] = {"logps/rejected", "%.9g", NULL, 0},
    [M_NLL_LOSS] = {"nll_loss", "%.9g", NULL, 0},
};

/* The dpo section as DpoParams; -1 (error set) for an unknown loss type. */
static int params_from_config(const Config *c, DpoParams *p) {
    *p = (DpoParams){DPO_SIGMOID, c->dpo.beta, c->dpo.label_smoothing, c->dpo.rpo_alpha,
                     c->dpo.simpo_gamma};
    return dpo_loss_type_from_name(c->dpo.loss_type, &p->type);
}

static const char *reference_of(const Config *c) {
    return c->dpo.reference[0] ? c->dpo.reference : c->model.init;
}

static int dpo_validate(const Config *c) {
    DpoParams p;
    if (params_from_config(c, &p) != 0 || dpo_params_validate(&p) != 0) {
        char why[1024];
        snprintf(why, sizeof why, "%s", err_msg()); /* err_set overwrites err_msg() */
        return err_set("config: %s", why);
    }
    if (p.type != DPO_SIMPO && !reference_of(c)[0])
        return err_set("config: objective dpo needs a reference model: start from a checkpoint "
                       "(model.init, which is also the reference) or set dpo.reference "
                       "(dpo.loss_type simpo needs none)");
    return 0;
}

static void dpo_close(void *self) {
    Dpo *o = self;
    if (!o) return;
    gpt_free(o->ref);
    pair_batches_close(&o->d);
    free(o->sums);
    free(o->ref_sums);
    free(o->counts);
    free(o->pairs);
    free(o->dlogp_c);
    free(o->dlogp_r);
    free(o);
}

static void *dpo_open(const TrainEnv *env) {
    const Config *c = env->cfg;
    Dpo *o = xcalloc(1, sizeof *o);
    if (params_from_config(c, &o->p) != 0 ||
        pair_batches_open(&o->d, env, "dpo", c->dpo.max_prompt_len, c->dpo.max_completion_len) !=
            0) {
        dpo_close(o);
        return NULL;
    }
    size_t P = (size_t)o->d.max_pairs, rows = 2 * P; /* env->B, more with data.pack */
    o->sums = xmalloc(rows * sizeof(double));
    o->ref_sums = xcalloc(rows, sizeof(double));
    o->counts = xmalloc(rows * sizeof(int64_t));
    o->pairs = xmalloc(P * sizeof(DpoPair));
    o->dlogp_c = xmalloc(P * sizeof(double));
    o->dlogp_r = xmalloc(P * sizeof(double));
    return o;
}

static int64_t dpo_items(const void *self) {
    return ((const Dpo *)self)->d.dl.count;
}

static int dpo_has_val(const void *self) {
    return ((const Dpo *)self)->d.have_val;
}

/* The reference: none (simpo), the file's precomputed log-probs (checked
 * against this run's truncation), or a frozen model. */
static int dpo_prepare(void *self, const TrainEnv *env) {
    Dpo *o = self;
    const Config *c = env->cfg;
    const char *ref = reference_of(c);
    if (pair_batches_check_tokenizer(&o->d, env) != 0) return -1;
    if (o->p.type == DPO_ROBUST && c->dpo.label_smoothing == 0 && !env->quiet)
        printf("note: dpo.loss_type robust with dpo.label_smoothing 0 is exactly the sigmoid "
               "loss; set label_smoothing to the assumed label-noise rate\n");
    if (o->p.type == DPO_SIMPO) return 0; /* reference-free */
    if (strcmp(ref, "precomputed") != 0) {
        o->ref = objective_load_frozen(env, ref, "reference model");
        return o->ref ? 0 : -1;
    }
    const PrefDataset *pd = &o->d.train;
    if (!pd->ref_logp_chosen || !pd->ref_logp_rejected)
        return err_set("%s: dpo.reference is \"precomputed\" but the file has no "
                       "ref_logp_chosen / ref_logp_rejected; run `retort dpo precompute-ref` on "
                       "it first",
                       c->data.train);
    if (o->d.have_val_ds && !o->d.val.ref_logp_chosen)
        return err_set("%s: the validation file has no precomputed reference log-probs",
                       c->data.val);
    if (pd->ref_seq_len >= 0 &&
        (pd->ref_seq_len != env->T || pd->ref_max_prompt_len != c->dpo.max_prompt_len ||
         pd->ref_max_completion_len != c->dpo.max_completion_len))
        return err_set("%s: the reference log-probs were computed for seq_len %d, "
                       "max_prompt_len %d, max_completion_len %d, but this run uses %d, %d, %d; "
                       "rerun `retort dpo precompute-ref` with the run's values",
                       c->data.train, pd->ref_seq_len, pd->ref_max_prompt_len,
                       pd->ref_max_completion_len, env->T, c->dpo.max_prompt_len,
                       c->dpo.max_completion_len);
    return 0;
}

static void dpo_describe(const void *self, const TrainEnv *env) {
    const Dpo *o = self;
    pair_batches_describe(&o->d, env);
    if (o->ref) printf("reference model: %s (frozen)\n", reference_of(env->cfg));
}

static void dpo_seek(void *self, int64_t epoch, int64_t pos) {
    pair_batches_seek(&((Dpo *)self)->d, epoch, pos);
}

static void dpo_position(const void *self, int64_t *epoch, int64_t *pos) {
    pair_batches_position(&((const Dpo *)self)->d, epoch, pos);
}

/* Reference sums of the 2B rows: the reference model's forward, or the
 * precomputed per-pair values of pd (for simpo, zeros: it needs none). */
static void reference_sums(Dpo *o, const TrainEnv *env, const PrefDataset *pd, const int *in,
                           const int *tg, const int64_t *pair_ids, int B) {
    int rows = 2 * B;
    if (o->ref) {
        pair_batches_forward(&o->d, env, o->ref, in, tg, B, o->d.logp);
        int64_t *scratch = xmalloc((size_t)rows * sizeof(int64_t));
        pref_row_sums(o->d.logp, tg, rows, env->T, o->ref_sums, scratch);
        free(scratch);
    } else if (pd->ref_logp_chosen && o->p.type != DPO_SIMPO) {
        for (int b = 0; b < B; b++) {
            o->ref_sums[b] = pd->ref_logp_chosen[pair_ids[b]];
            o->ref_sums[B + b] = pd->ref_logp_rejected[pair_ids[b]];
        }
    } else {
        memset(o->ref_sums, 0, (size_t)rows * sizeof(double));
    }
}

/* One micro-batch (PairLossFn): the policy's forward, the pair sums, the
 * reference's, dpo_batch_loss, and the sums' gradients spread over their
 * tokens into the policy's backward. */
static double dpo_micro(void *self, const TrainEnv *env, const PrefDataset *pd, const int *in,
                        const int *tg, const int64_t *pair_ids, int B, double scale, int backward,
                        double *metrics) {
    Dpo *o = self;
    int T = env->T;
    DpoMetrics m;
    pair_batches_forward(&o->d, env, env->model, in, tg, B, o->d.logp);
    pref_row_sums(o->d.logp, tg, 2 * B, T, o->sums, o->counts);
    /* reuses logp: the policy's sums are taken */
    reference_sums(o, env, pd, in, tg, pair_ids, B);
    dpo_pairs_from_rows(o->sums, o->ref_sums, o->counts, B, o->pairs);
    double loss = dpo_batch_loss(&o->p, o->pairs, B, o->dlogp_c, o->dlogp_r, &m);
    if (backward) {
        dpo_spread_weights(o->dlogp_c, o->dlogp_r, B, T, tg, scale, o->d.g);
        pair_batches_backward(&o->d, env, env->model, o->d.g, B);
    }
    metrics[M_REWARDS_CHOSEN] = m.rewards_chosen;
    metrics[M_REWARDS_REJECTED] = m.rewards_rejected;
    metrics[M_REWARDS_ACCURACIES] = m.rewards_accuracies;
    metrics[M_REWARDS_MARGINS] = m.rewards_margins;
    metrics[M_LOGPS_CHOSEN] = m.logps_chosen;
    metrics[M_LOGPS_REJECTED] = m.logps_rejected;
    metrics[M_NLL_LOSS] = m.nll_loss;
    return loss;
}

static double dpo_step(void *self, const TrainEnv *env, double *metrics) {
    Dpo *o = self;
    return pair_batches_step(&o->d, env, dpo_micro, o, DPO_N_METRICS, metrics);
}

static double dpo_eval(void *self, const TrainEnv *env, double *metrics) {
    Dpo *o = self;
    return pair_batches_eval(&o->d, env, dpo_micro, o, DPO_N_METRICS, metrics);
}

const Objective objective_dpo = {
    .name = "dpo",
    .item_noun = "pairs",
    .batch_noun = "pairs",
    .rows_per_item = 2,
    .metrics = dpo_metrics,
    .n_metrics = DPO_N_METRICS,
    .n_eval_metrics = DPO_N_METRICS,
    .validate = dpo_validate,
    .open = dpo_open,
    .items = dpo_items,
    .has_val = dpo_has_val,
    .prepare = dpo_prepare,
    .describe = dpo_describe,
    .seek = dpo_seek,
    .step = dpo_step,
    .position = dpo_position,
    .eval = dpo_eval,
    .close = dpo_close,
};
