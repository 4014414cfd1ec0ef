/* kernels/cpu/classifier_kd.c — word-level knowledge distillation inside the
 * fused classifier: per-row generalized JSD between the tempered student and a
 * teacher (full teacher logits, or K stored teacher log-probs plus a remainder
 * bucket), and its gradient added to the cross-entropy dlogits, in place.
 *
 * The divergence follows TRL's GKDTrainer.generalized_jsd_loss (see kernels/ops.h):
 * beta == 0 forward KL(t||s), beta == 1 reverse KL(s||t), otherwise
 * beta KL(t||m) + (1-beta) KL(s||m) with m = beta t + (1-beta) s.
 *
 * Gradient. With tau the temperature, u = z/tau and s = softmax(u),
 * dD/du_j = s_j (a_j - sum_k s_k a_k) for any D(s), where a_j = dD/ds_j. For
 * the three cases:
 *     forward KL:  a_j = -t_j / s_j, so dD/du_j = s_j - t_j
 *     reverse KL:  a_j = log s_j - log t_j (+1, which cancels)
 *     mixture:     a_j = (1-beta)(log s_j - log m_j) (the t/m and s/m terms
 *                  of d/ds_j sum to (1-beta)(beta t_j + (1-beta) s_j)/m_j = 1-beta
 *                  and cancel against the +1 of s log s)
 * and dD/dz = dD/du / tau. In the bucket (top-K) version the remainder bucket's a
 * applies to every token outside the support, since s_rem is their sum.
 *
 * Numerics: every log-probability is formed in double in log space
 * (u_j - lse), never as log(exp(.)), so a probability that underflows still
 * has a finite log and 0 log 0 terms are skipped explicitly. Row statistics are
 * recomputed in passes over the row; nothing V-wide is allocated. The
 * cross-entropy part of backward uses exactly classifier_backward's float
 * expressions, so a row with w == 0 is bit-identical to it. Rows are
 * independent; OpenMP splits them as in classifier.c. */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"

typedef enum { KD_FORWARD_KL, KD_REVERSE_KL, KD_MIXTURE } KdMode;

static KdMode kd_mode(float beta) {
    assert(beta >= 0.0f && beta <= 1.0f);
    return beta == 0.0f ? KD_FORWARD_KL : beta == 1.0f ? KD_REVERSE_KL : KD_MIXTURE;
}

/* log(exp(a) + exp(b)), exact for -inf arguments */
static double log_add_exp(double a, double b) {
    double m = a > b ? a : b;
    if (m == -INFINITY) return -INFINITY;
    return m + log1p(exp(-fabs(a - b)));
}

/* p (log p - log q) with 0 log 0 = 0 */
static double xlogx_ratio(double log_p, double log_q) {
    return log_p == -INFINITY ? 0.0 : exp(log_p) * (log_p - log_q);
}

/* log m for m = beta t + (1 - beta) s */
static double log_mixture(double log_s, double log_t, double beta) {
    return log_add_exp(log(beta) + log_t, log1p(-beta) + log_s);
}

/* One token's (or bucket's) share of D, from log s and log t. */
static double kd_term(KdMode mode, double beta, double log_s, double log_t) {
    switch (mode) {
    case KD_FORWARD_KL: return xlogx_ratio(log_t, log_s);
    case KD_REVERSE_KL: return xlogx_ratio(log_s, log_t);
    default: {
        double log_m = log_mixture(log_s, log_t, beta);
        return beta * xlogx_ratio(log_t, log_m) + (1.0 - beta) * xlogx_ratio(log_s, log_m);
    }
    }
}

/* a = dD/ds up to an additive constant, for the reverse KL and mixture cases. */
static double kd_score(KdMode mode, double beta, double log_s, double log_t) {
    if (mode == KD_REVERSE_KL) return log_s - log_t;
    return (1.0 - beta) * (log_s - log_mixture(log_s, log_t, beta));
}

/* s a, with s = 0 contributing 0 even where a is infinite */
static double weighted_score(KdMode mode, double beta, double log_s, double log_t) {
    return log_s == -INFINITY ? 0.0 : exp(log_s) * kd_score(mode, beta, log_s, log_t);
}

/* log sum_j exp(x_j / tau) over a row, the sum in double */
static double tempered_lse(const float *x, int V, double tau) {
    float mx = -INFINITY;
    for (int j = 0; j < V; j++) mx = x[j] > mx ? x[j] : mx;
    double sum = 0.0;
    for (int j = 0; j < V; j++) sum += exp(((double)x[j] - mx) / tau);
    return (double)mx / tau + log(sum);
}

static int argmax_row(const float *x, int V) {
    int best = 0;
    for (int j = 1; j < V; j++)
        if (x[j] > x[best]) best = j;
    return best;
}

/* classifier_backward's row, same float expressions */
static void ce_row(float *x, int t, float gi, float l, int V) {
    float p_target = expf(x[t] - l);
    for (int j = 0; j < V; j++) x[j] = -gi * expf(x[j] - l);
    x[t] = gi * (1.0f - p_target);
}

/* ---------------------------------------------------------------- online */

void classifier_kd_forward(float *kd, float *agree, const float *logits,
                           const float *teacher_logits, const int *targets, int N, int V,
                           int Vp, float temperature, float beta) {
    assert(temperature > 0.0f);
    KdMode mode = kd_mode(beta);
    #pragma omp parallel for if ((long)N * V > 32768)
    for (int i = 0; i < N; i++) {
        const float *z = logits + (size_t)i * Vp;          /* (V) of (Vp) */
        const float *zt = teacher_logits + (size_t)i * Vp; /* (V) of (Vp) */
        int target = targets[i];
        assert(target < V);
        if (target < 0) {
            kd[i] = 0.0f;
            agree[i] = 0.0f;
            continue;
        }
        double tau = temperature;
        double lse_s = tempered_lse(z, V, tau), lse_t = tempered_lse(zt, V, tau);
        double d = 0.0;
        for (int j = 0; j < V; j++)
            d += kd_term(mode, beta, z[j] / tau - lse_s, zt[j] / tau - lse_t);
        kd[i] = (float)d;
        agree[i] = argmax_row(z, V) == argmax_row(zt, V) ? 1.0f : 0.0f;
    }
}

void classifier_kd_backward(float *logits, const float *lse, const int *targets, const float *g,
                            const float *teacher_logits, const float *w, int N, int V, int Vp,
                            float temperature, float beta) {
    if (!w) {
        classifier_backward(logits, lse, targets, g, N, V, Vp);
        return;
    }
    assert(temperature > 0.0f);
    KdMode mode = kd_mode(beta);
    #pragma omp parallel for if ((long)N * V > 32768)
    for (int i = 0; i < N; i++) {
        float *x = logits + (size_t)i * Vp;                /* (Vp) in: logits, out: dlogits */
        const float *zt = teacher_logits + (size_t)i * Vp; /* (V) of (Vp) */
        int target = targets[i];
        assert(target < V);
        float gi = g[i], wi = w[i];
        memset(x + V, 0, (size_t)(Vp - V) * sizeof(float)); /* padded columns */
        if (target < 0 || (gi == 0.0f && wi == 0.0f)) {
            memset(x, 0, (size_t)V * sizeof(float));
            continue;
        }
        if (wi == 0.0f) {
            ce_row(x, target, gi, lse[i], V);
            continue;
        }
        double tau = temperature;
        double lse_s = tempered_lse(x, V, tau), lse_t = tempered_lse(zt, V, tau);
        double mean_score = 0.0; /* sum_j s_j a_j */
        if (mode != KD_FORWARD_KL)
            for (int j = 0; j < V; j++)
                mean_score += weighted_score(mode, beta, x[j] / tau - lse_s, zt[j] / tau - lse_t);
        double scale = (double)wi / tau;
        float l = lse[i];
        float p_target = expf(x[target] - l);
        for (int j = 0; j < V; j++) {
            double log_s = x[j] / tau - lse_s, log_t = zt[j] / tau - lse_t, s = exp(log_s);
            double dkd = mode == KD_FORWARD_KL
                             ? s - exp(log_t)
                             : s * (kd_score(mode, beta, log_s, log_t) - mean_score);
            float ce = j == target ? gi * (1.0f - p_target) : -gi * expf(x[j] - l);
            x[j] = ce + (float)(scale * dkd);
        }
    }
}

/* ---------------------------------------------------------------- top-K */

/* One row's support sorted by token id, so a walk over j = 0 .. V-1 meets the
 * stored tokens in order: order[n] is the position k of the n-th smallest id. */
typedef struct {
    int id, k;
} SupportEntry;

static int support_cmp(const void *a, const void *b) {
    int x = ((const SupportEntry *)a)->id, y = ((const SupportEntry *)b)->id;
    return (x > y) - (x < y);
}

static void sort_support(SupportEntry *sup, const int *ids, int K, int V) {
    for (int k = 0; k < K; k++) {
        assert(ids[k] >= 0 && ids[k] < V);
        sup[k].id = ids[k];
        sup[k].k = k;
    }
    qsort(sup, (size_t)K, sizeof *sup, support_cmp);
    for (int k = 1; k < K; k++) assert(sup[k].id != sup[k - 1].id); /* ids are distinct */
    (void)V;
}

/* Tempered statistics of one row over the buckets. */
typedef struct {
    double lse_s;    /* log sum_j exp(z_j / tau) over the whole row */
    double log_srem; /* log s_rem: the non-support tokens, -inf when K == V */
    double lse_rem;  /* log sum over the non-support of exp(z_j / tau) */
    double log_z_t;  /* log of the teacher's normaliser sum_k p_k^(1/tau) + r^(1/tau) */
    double log_qrem; /* log q_rem, -inf when r == 0 */
} BucketStats;

static BucketStats bucket_stats(const float *z, const SupportEntry *sup, const float *lp, int V,
                                int K, double tau) {
    BucketStats b;
    /* student: max over all and over the non-support, then the two sums */
    float mx = -INFINITY, mx_rem = -INFINITY;
    for (int j = 0, n = 0; j < V; j++) {
        if (n < K && sup[n].id == j) n++;
        else mx_rem = z[j] > mx_rem ? z[j] : mx_rem;
        mx = z[j] > mx ? z[j] : mx;
    }
    double sum = 0.0, sum_rem = 0.0;
    for (int j = 0, n = 0; j < V; j++) {
        double e = exp(((double)z[j] - mx) / tau);
        sum += e;
        if (n < K && sup[n].id == j) n++;
        else sum_rem += exp(((double)z[j] - mx_rem) / tau);
    }
    b.lse_s = (double)mx / tau + log(sum);
    b.lse_rem = K < V ? (double)mx_rem / tau + log(sum_rem) : -INFINITY;
    b.log_srem = b.lse_rem - b.lse_s;
    /* teacher: the remainder r = 1 - sum p_k is empty when the support is the
     * whole vocabulary, whatever rounding left in 1 - sum p_k */
    double mass = 0.0, mlp = -INFINITY;
    for (int k = 0; k < K; k++) {
        mass += exp((double)lp[k]);
        mlp = lp[k] > mlp ? lp[k] : mlp;
    }
    double r = K < V && mass < 1.0 ? 1.0 - mass : 0.0;
    double log_rem_t = r > 0.0 ? log(r) / tau : -INFINITY; /* log r^(1/tau) */
    double zsum = 0.0;
    for (int k = 0; k < K; k++) zsum += exp((lp[k] - mlp) / tau);
    b.log_z_t = log_add_exp(mlp / tau + log(zsum), log_rem_t);
    b.log_qrem = log_rem_t - b.log_z_t;
    return b;
}

/* sum over buckets of s_b a_b (reverse KL, mixture) */
static double bucket_mean_score(KdMode mode, double beta, const float *z, const int *ids,
                                const float *lp, int K, const BucketStats *b, double tau) {
    double acc = weighted_score(mode, beta, b->log_srem, b->log_qrem);
    for (int k = 0; k < K; k++)
        acc += weighted_score(mode, beta, z[ids[k]] / tau - b->lse_s, lp[k] / tau - b->log_z_t);
    return acc;
}

/* the teacher's top token: the largest log-prob, ties to the lowest id */
static int teacher_top_id(const int *ids, const float *lp, int K) {
    int best = 0;
    for (int k = 1; k < K; k++)
        if (lp[k] > lp[best] || (lp[k] == lp[best] && ids[k] < ids[best])) best = k;
    return ids[best];
}

void classifier_kd_topk_forward(float *kd, float *agree, const float *logits,
                                const int *teacher_ids, const float *teacher_logp,
                                const int *targets, int N, int V, int Vp, int K,
                                float temperature, float beta) {
    assert(temperature > 0.0f && K >= 1 && K <= V);
    KdMode mode = kd_mode(beta);
    double tau = temperature;
    #pragma omp parallel if ((long)N * V > 32768)
    {
        SupportEntry *sup = malloc((size_t)K * sizeof *sup);
        assert(sup);
        #pragma omp for
        for (int i = 0; i < N; i++) {
            const float *z = logits + (size_t)i * Vp;         /* (V) of (Vp) */
            const int *ids = teacher_ids + (size_t)i * K;     /* (K) */
            const float *lp = teacher_logp + (size_t)i * K;   /* (K) */
            int target = targets[i];
            assert(target < V);
            if (target < 0) {
                kd[i] = 0.0f;
                agree[i] = 0.0f;
                continue;
            }
            sort_support(sup, ids, K, V);
            BucketStats b = bucket_stats(z, sup, lp, V, K, tau);
            double d = kd_term(mode, beta, b.log_srem, b.log_qrem);
            for (int k = 0; k < K; k++)
                d += kd_term(mode, beta, z[ids[k]] / tau - b.lse_s, lp[k] / tau - b.log_z_t);
            kd[i] = (float)d;
            agree[i] = argmax_row(z, V) == teacher_top_id(ids, lp, K) ? 1.0f : 0.0f;
        }
        free(sup);
    }
}

void classifier_kd_topk_backward(float *logits, const float *lse, const int *targets,
                                 const float *g, const int *teacher_ids,
                                 const float *teacher_logp, const float *w, int N, int V, int Vp,
                                 int K, float temperature, float beta) {
    if (!w) {
        classifier_backward(logits, lse, targets, g, N, V, Vp);
        return;
    }
    assert(temperature > 0.0f && K >= 1 && K <= V);
    KdMode mode = kd_mode(beta);
    double tau = temperature;
    #pragma omp parallel if ((long)N * V > 32768)
    {
        SupportEntry *sup = malloc((size_t)K * sizeof *sup);
        assert(sup);
        #pragma omp for
        for (int i = 0; i < N; i++) {
            float *x = logits + (size_t)i * Vp;             /* (Vp) in: logits, out: dlogits */
            const int *ids = teacher_ids + (size_t)i * K;   /* (K) */
            const float *lp = teacher_logp + (size_t)i * K; /* (K) */
            int target = targets[i];
            assert(target < V);
            float gi = g[i], wi = w[i];
            memset(x + V, 0, (size_t)(Vp - V) * sizeof(float)); /* padded columns */
            if (target < 0 || (gi == 0.0f && wi == 0.0f)) {
                memset(x, 0, (size_t)V * sizeof(float));
                continue;
            }
            if (wi == 0.0f) {
                ce_row(x, target, gi, lse[i], V);
                continue;
            }
            sort_support(sup, ids, K, V);
            BucketStats b = bucket_stats(x, sup, lp, V, K, tau);
            double mean_score =
                mode == KD_FORWARD_KL ? 0.0 : bucket_mean_score(mode, beta, x, ids, lp, K, &b, tau);
            /* the remainder bucket's share, the same for every non-support token */
            double rem_score = mode == KD_FORWARD_KL
                                   ? 0.0
                                   : kd_score(mode, beta, b.log_srem, b.log_qrem) - mean_score;
            double scale = (double)wi / tau;
            float l = lse[i];
            float p_target = expf(x[target] - l);
            for (int j = 0, n = 0; j < V; j++) {
                double log_s = x[j] / tau - b.lse_s, s = exp(log_s), dkd;
                if (n < K && sup[n].id == j) {
                    double log_q = lp[sup[n].k] / tau - b.log_z_t;
                    dkd = mode == KD_FORWARD_KL
                              ? s - exp(log_q)
                              : s * (kd_score(mode, beta, log_s, log_q) - mean_score);
                    n++;
                } else if (mode == KD_FORWARD_KL) {
                    /* s_j - q_rem s_j / s_rem, the ratio formed in log space */
                    dkd = s - exp(b.log_qrem + x[j] / tau - b.lse_rem);
                } else {
                    dkd = s * rem_score;
                }
                float ce = j == target ? gi * (1.0f - p_target) : -gi * expf(x[j] - l);
                x[j] = ce + (float)(scale * dkd);
            }
        }
        free(sup);
    }
}
