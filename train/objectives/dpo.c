/* train/objectives/dpo.c — DPO-family losses on per-pair log-prob sums (the
 * formulas and their TRL sources are in dpo.h). Everything is in double: the
 * sums come from float per-token log-probs but a sum over hundreds of tokens
 * and the differences of such sums lose digits a float could not spare. */
#include "train/objectives/dpo.h"

#include <assert.h>
#include <math.h>
#include <string.h>

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

int dpo_params_validate(const DpoParams *p) {
    if ((int)p->type < 0 || (int)p->type >= N_LOSS_TYPES)
        return err_set("DPO loss type %d is not one of sigmoid, robust, hinge, ipo, simpo",
                       (int)p->type);
    const char *name = loss_type_names[p->type];
    if (!(p->beta > 0) || !isfinite(p->beta))
        return err_set("DPO beta is %g; it must be a finite number > 0 (TRL's default is 0.1)",
                       p->beta);
    double e = p->label_smoothing;
    if (p->type == DPO_ROBUST && !(e >= 0 && e < 0.5))
        return err_set("label_smoothing is %g; the robust loss needs it in [0, 0.5) (the "
                       "probability that a preference label is flipped)", e);
    if ((p->type == DPO_SIGMOID || p->type == DPO_SIMPO) && !(e >= 0 && e <= 1))
        return err_set("label_smoothing is %g; the %s loss needs it in [0, 1]", e, name);
    if ((p->type == DPO_HINGE || p->type == DPO_IPO) && e != 0)
        return err_set("label_smoothing is %g but the %s loss has no label smoothing; set it to 0 "
                       "or use sigmoid (conservative DPO) or robust", e, name);
    if (!(p->rpo_alpha >= 0) || !isfinite(p->rpo_alpha))
        return err_set("rpo_alpha is %g; it must be a finite number >= 0 (0 turns the NLL term "
                       "off)", p->rpo_alpha);
    if (!isfinite(p->simpo_gamma))
        return err_set("simpo_gamma is %g; it must be finite", p->simpo_gamma);
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
