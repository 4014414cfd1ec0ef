/* tests/test_kd.c — the knowledge-distillation ops of the fused classifier
 * (classifier_kd_* and classifier_kd_topk_* in kernels/ops.h).
 *
 * Checks:
 *   - forward kd and agree, and backward dlogits, against torch autograd in
 *     float64 of the TRL-style generalized JSD written independently in
 *     tests/make_kd_fixtures.py (fixtures kd_online / kd_topk), for beta 0, 0.25, 0.5,
 *     1 and temperature tau 1, 2, 0.5;
 *   - backward against central finite differences of
 *     L = sum_i g_i logp_i + w_i kd_i, with logp from classifier_forward and kd
 *     from the forward op;
 *   - top-K with K == V (ids shuffled) equals the online op;
 *   - w == NULL is classifier_backward bit for bit, rows with w == 0 are too, and
 *     rows with target < 0 are zero;
 *   - a teacher equal to the student gives D = 0 and a pure cross-entropy gradient.
 *
 * Tolerances.
 *   Against torch: the C ops compute in double from the same float32 inputs,
 *   except the cross-entropy part of dlogits, which reuses classifier_backward's
 *   float expressions (expf, ~1e-7 relative), and the final cast to float. So
 *   kd must match to 2e-6 relative (plus 1e-7 absolute) per row and dlogits to
 *   1e-5 relative, norm-wise per case. A wrong sign, mixture weight or missing
 *   1/tau gives errors of order 1e-1..1.
 *   Finite differences: kd and logp are float outputs, so L carries a rounding
 *   error of ~1e-7 |L| with |L| ~ 1; with h = 1e-2 the noise is ~1e-5 per
 *   probe and the O(h^2) truncation error, for curvature up to 1/tau^2 = 4
 *   (tau = 0.5), is ~1e-4 relative. Accept 2e-3 norm-wise.
 *   K == V against online: teacher_logp rounded to float changes each log q by
 *   up to ~1e-7 |logp| / tau (|logp| < 15 here), so allow 2e-5 relative. */
#include <criterion/criterion.h>

#include "kernels/ops.h"
#include "tests/testutil.h"
#include "model/safetensors.h"

/* 0.25 as well: at 0.5 the mixture cannot tell beta from 1 - beta */
static const float BETAS[4] = {0.0f, 0.5f, 1.0f, 0.25f};
#define N_BETAS 4
static const float TEMPS[3] = {1.0f, 2.0f, 0.5f};

/* ---------------------------------------------------------------- helpers */

static float *copy_floats(const float *x, size_t n) {
    float *y = xmalloc(n * sizeof(float));
    memcpy(y, x, n * sizeof(float));
    return y;
}

static float *rand_floats(Rng *r, size_t n, float scale) {
    float *x = xmalloc(n * sizeof(float));
    fill_uniform(r, x, n, scale);
    return x;
}

/* a random permutation of 0 .. n-1 */
static void shuffle_ids(Rng *r, int *ids, int n) {
    for (int k = 0; k < n; k++) ids[k] = k;
    for (int k = n - 1; k > 0; k--) {
        int m = (int)rng_below(r, (uint64_t)k + 1);
        int tmp = ids[k];
        ids[k] = ids[m];
        ids[m] = tmp;
    }
}

static void expect_rows_zero(const char *what, const float *x, const int *targets, int N, int V) {
    for (int i = 0; i < N; i++) {
        if (targets[i] >= 0) continue;
        for (int j = 0; j < V; j++)
            cr_expect_eq(x[(size_t)i * V + j], 0.0f,
                         "%s: row %d has no target but dlogits[%d] = %g", what, i, j,
                         x[(size_t)i * V + j]);
    }
}

static void expect_identical(const char *what, const float *a, const float *b, size_t n) {
    double d = max_abs_diff(a, b, n);
    cr_expect(d == 0.0, "%s: expected identical results, max |diff| = %.3g", what, d);
}

/* ---------------------------------------------------------------- fixtures */

typedef struct {
    SafeTensorsFile *f;
    int N, V, K;
    float *logits, *teacher, *g, *w, *agree, *teacher_logp;
    int *targets, *teacher_ids;
} Fixture;

static float *read_f32(SafeTensorsFile *f, const char *name, size_t n) {
    const StTensor *t = safetensors_find(f, name);
    cr_assert(t, "fixture tensor %s missing (run tests/make_kd_fixtures.py)", name);
    float *x = xmalloc(n * sizeof(float));
    cr_assert_eq(safetensors_read_f32(f, t, x, n), 0, "%s: %s", name, err_msg());
    return x;
}

static int *read_i32(SafeTensorsFile *f, const char *name, size_t n) {
    const StTensor *t = safetensors_find(f, name);
    cr_assert(t && t->dtype == ST_I32 && (size_t)st_numel(t) == n, "fixture tensor %s", name);
    int *x = xmalloc(n * sizeof(int));
    memcpy(x, t->data, n * sizeof(int));
    return x;
}

static void fixture_open(Fixture *fx, const char *path, int topk) {
    memset(fx, 0, sizeof *fx);
    fx->f = safetensors_open(path);
    cr_assert(fx->f, "%s", err_msg());
    const StTensor *lt = safetensors_find(fx->f, "logits");
    cr_assert(lt && lt->ndim == 2);
    fx->N = (int)lt->shape[0];
    fx->V = (int)lt->shape[1];
    size_t NV = (size_t)fx->N * fx->V;
    fx->logits = read_f32(fx->f, "logits", NV);
    fx->teacher = read_f32(fx->f, "teacher_logits", NV);
    fx->g = read_f32(fx->f, "g", fx->N);
    fx->w = read_f32(fx->f, "w", fx->N);
    fx->agree = read_f32(fx->f, "agree", fx->N);
    fx->targets = read_i32(fx->f, "targets", fx->N);
    if (topk) {
        const StTensor *it = safetensors_find(fx->f, "teacher_ids");
        cr_assert(it && it->ndim == 2);
        fx->K = (int)it->shape[1];
        fx->teacher_ids = read_i32(fx->f, "teacher_ids", (size_t)fx->N * fx->K);
        fx->teacher_logp = read_f32(fx->f, "teacher_logp", (size_t)fx->N * fx->K);
    }
}

static void fixture_close(Fixture *fx) {
    free(fx->logits), free(fx->teacher), free(fx->g), free(fx->w), free(fx->agree);
    free(fx->targets), free(fx->teacher_ids), free(fx->teacher_logp);
    safetensors_close(fx->f);
}

/* Runs forward and backward of one (beta, temperature) case and compares with torch. */
static void check_fixture_case(Fixture *fx, float beta, float temperature, int topk) {
    int N = fx->N, V = fx->V, K = fx->K;
    size_t NV = (size_t)N * V;
    char tag[64], name[96];
    snprintf(tag, sizeof tag, "b%g_T%g", beta, temperature); /* the fixtures' names */
    snprintf(name, sizeof name, "kd.%s", tag);
    float *want_kd = read_f32(fx->f, name, N);
    snprintf(name, sizeof name, "dlogits.%s", tag);
    float *want_d = read_f32(fx->f, name, NV);

    float *kd = xmalloc(N * sizeof(float)), *agree = xmalloc(N * sizeof(float));
    float *logp = xmalloc(N * sizeof(float)), *lse = xmalloc(N * sizeof(float));
    if (topk)
        classifier_kd_topk_forward(kd, agree, fx->logits, fx->teacher_ids, fx->teacher_logp,
                                   fx->targets, N, V, V, K, temperature, beta);
    else
        classifier_kd_forward(kd, agree, fx->logits, fx->teacher, fx->targets, N, V, V, temperature,
                              beta);
    for (int i = 0; i < N; i++) {
        double tol = 1e-7 + 2e-6 * fabs(want_kd[i]);
        cr_expect(fabs(kd[i] - want_kd[i]) <= tol, "%s %s row %d: kd %.9g, torch %.9g",
                  topk ? "topk" : "online", tag, i, kd[i], want_kd[i]);
        cr_expect_eq(agree[i], fx->agree[i], "%s %s row %d: agree %g, want %g",
                     topk ? "topk" : "online", tag, i, agree[i], fx->agree[i]);
    }

    classifier_forward(logp, lse, fx->logits, fx->targets, N, V, V);
    float *d = copy_floats(fx->logits, NV);
    if (topk)
        classifier_kd_topk_backward(d, lse, fx->targets, fx->g, fx->teacher_ids, fx->teacher_logp,
                                    fx->w, N, V, V, K, temperature, beta);
    else
        classifier_kd_backward(d, lse, fx->targets, fx->g, fx->teacher, fx->w, N, V, V, temperature,
                               beta);
    double err = rel_err(d, want_d, NV);
    cr_expect(err < 1e-5, "%s %s: dlogits relative error %.3g vs torch", topk ? "topk" : "online",
              tag, err);
    expect_rows_zero(tag, d, fx->targets, N, V);
    free(want_kd), free(want_d), free(kd), free(agree), free(logp), free(lse), free(d);
}

Test(kd, online_matches_torch) {
    Fixture fx;
    fixture_open(&fx, "tests/fixtures/kd_online.safetensors", 0);
    for (int b = 0; b < N_BETAS; b++)
        for (int t = 0; t < 3; t++) check_fixture_case(&fx, BETAS[b], TEMPS[t], 0);
    fixture_close(&fx);
}

Test(kd, topk_matches_torch) {
    Fixture fx;
    fixture_open(&fx, "tests/fixtures/kd_topk.safetensors", 1);
    cr_assert(fx.K < fx.V, "the top-K fixture must have K < V");
    for (int b = 0; b < N_BETAS; b++)
        for (int t = 0; t < 3; t++) check_fixture_case(&fx, BETAS[b], TEMPS[t], 1);
    fixture_close(&fx);
}

/* ---------------------------------------------------------------- finite differences */

typedef struct {
    int N, V, K, topk;
    float temperature, beta;
    float *logits, *teacher, *teacher_logp, *g, *w;
    int *targets, *teacher_ids;
} KdCase;

/* L = sum_i g_i logp_i + w_i kd_i, in double over the float outputs */
static double kd_loss(const KdCase *c) {
    float *logp = xmalloc(c->N * sizeof(float)), *lse = xmalloc(c->N * sizeof(float));
    float *kd = xmalloc(c->N * sizeof(float)), *agree = xmalloc(c->N * sizeof(float));
    classifier_forward(logp, lse, c->logits, c->targets, c->N, c->V, c->V);
    if (c->topk)
        classifier_kd_topk_forward(kd, agree, c->logits, c->teacher_ids, c->teacher_logp,
                                   c->targets, c->N, c->V, c->V, c->K, c->temperature, c->beta);
    else
        classifier_kd_forward(kd, agree, c->logits, c->teacher, c->targets, c->N, c->V, c->V,
                              c->temperature, c->beta);
    double L = 0.0;
    for (int i = 0; i < c->N; i++) L += (double)c->g[i] * logp[i] + (double)c->w[i] * kd[i];
    free(logp), free(lse), free(kd), free(agree);
    return L;
}

static float *kd_analytic(const KdCase *c) {
    float *logp = xmalloc(c->N * sizeof(float)), *lse = xmalloc(c->N * sizeof(float));
    classifier_forward(logp, lse, c->logits, c->targets, c->N, c->V, c->V);
    float *d = copy_floats(c->logits, (size_t)c->N * c->V);
    if (c->topk)
        classifier_kd_topk_backward(d, lse, c->targets, c->g, c->teacher_ids, c->teacher_logp,
                                    c->w, c->N, c->V, c->V, c->K, c->temperature, c->beta);
    else
        classifier_kd_backward(d, lse, c->targets, c->g, c->teacher, c->w, c->N, c->V, c->V,
                               c->temperature, c->beta);
    free(logp), free(lse);
    return d;
}

/* Central differences over every logit, compared norm-wise with backward. */
static void check_kd_fd(KdCase *c, const char *what) {
    size_t NV = (size_t)c->N * c->V;
    float *ana = kd_analytic(c);
    const float h = 1e-2f;
    double num2 = 0.0, diff2 = 0.0, ana2 = 0.0;
    for (size_t idx = 0; idx < NV; idx++) {
        float x0 = c->logits[idx], xp = x0 + h, xm = x0 - h;
        c->logits[idx] = xp;
        double lp = kd_loss(c);
        c->logits[idx] = xm;
        double lm = kd_loss(c);
        c->logits[idx] = x0;
        double numeric = (lp - lm) / ((double)xp - (double)xm);
        num2 += numeric * numeric;
        ana2 += (double)ana[idx] * ana[idx];
        diff2 += (numeric - ana[idx]) * (numeric - ana[idx]);
    }
    cr_assert(sqrt(num2) > 1e-2, "%s: numeric gradient norm %.3g too small to test", what,
              sqrt(num2));
    double err = sqrt(diff2) / sqrt(ana2);
    cr_expect(err < 2e-3, "%s: finite-difference relative error %.3g", what, err);
    free(ana);
}

static void kd_case_init(KdCase *c, Rng *r, int N, int V, int K) {
    memset(c, 0, sizeof *c);
    c->N = N;
    c->V = V;
    c->K = K;
    c->topk = K > 0;
    size_t NV = (size_t)N * V;
    c->logits = rand_floats(r, NV, 3.0f);
    c->teacher = rand_floats(r, NV, 3.0f);
    for (size_t i = 0; i < NV; i++) c->teacher[i] += 0.7f * c->logits[i]; /* related, not equal */
    c->g = rand_floats(r, N, 1.0f);
    c->w = rand_floats(r, N, 1.0f);
    c->targets = xmalloc(N * sizeof(int));
    for (int i = 0; i < N; i++) {
        c->targets[i] = (int)rng_below(r, V);
        c->w[i] = 0.3f + fabsf(c->w[i]);
    }
    c->targets[1] = -1;
    c->g[1] = 0.0f;
    c->g[2] = 0.0f; /* KD only */
    c->w[3] = 0.0f; /* CE only */
    if (c->topk) {
        /* the teacher's top K by logit, in a shuffled order, with its log-probs */
        c->teacher_ids = xmalloc((size_t)N * K * sizeof(int));
        c->teacher_logp = xmalloc((size_t)N * K * sizeof(float));
        int *perm = xmalloc(V * sizeof(int));
        for (int i = 0; i < N; i++) {
            const float *zt = c->teacher + (size_t)i * V;
            double mx = -INFINITY, sum = 0.0;
            for (int j = 0; j < V; j++) mx = zt[j] > mx ? zt[j] : mx;
            for (int j = 0; j < V; j++) sum += exp(zt[j] - mx);
            shuffle_ids(r, perm, V); /* K distinct random ids: any support must work */
            for (int k = 0; k < K; k++) {
                int id = perm[k];
                c->teacher_ids[(size_t)i * K + k] = id;
                c->teacher_logp[(size_t)i * K + k] = (float)(zt[id] - mx - log(sum));
            }
        }
        free(perm);
    }
}

static void kd_case_free(KdCase *c) {
    free(c->logits), free(c->teacher), free(c->g), free(c->w), free(c->targets);
    free(c->teacher_ids), free(c->teacher_logp);
}

Test(kd, online_backward_finite_differences) {
    Rng r;
    rng_seed(&r, 901);
    KdCase c;
    kd_case_init(&c, &r, 5, 23, 0);
    char what[64];
    for (int b = 0; b < N_BETAS; b++)
        for (int t = 0; t < 3; t++) {
            c.beta = BETAS[b];
            c.temperature = TEMPS[t];
            snprintf(what, sizeof what, "online beta %g temperature %g", c.beta, c.temperature);
            check_kd_fd(&c, what);
        }
    kd_case_free(&c);
}

Test(kd, topk_backward_finite_differences) {
    Rng r;
    rng_seed(&r, 902);
    KdCase c;
    kd_case_init(&c, &r, 5, 23, 6);
    char what[64];
    for (int b = 0; b < N_BETAS; b++)
        for (int t = 0; t < 3; t++) {
            c.beta = BETAS[b];
            c.temperature = TEMPS[t];
            snprintf(what, sizeof what, "top-%d beta %g temperature %g", c.K, c.beta,
                     c.temperature);
            check_kd_fd(&c, what);
        }
    kd_case_free(&c);
}

/* ---------------------------------------------------------------- top-K == online */

Test(kd, topk_full_support_equals_online) {
    Rng r;
    rng_seed(&r, 903);
    int N = 6, V = 41;
    KdCase on, tk;
    kd_case_init(&on, &r, N, V, 0);
    kd_case_init(&tk, &r, N, V, V); /* K == V: every id, shuffled */
    /* same student and teacher in both; the top-K teacher is log_softmax(teacher) */
    size_t NV = (size_t)N * V;
    memcpy(tk.logits, on.logits, NV * sizeof(float));
    memcpy(tk.teacher, on.teacher, NV * sizeof(float));
    memcpy(tk.g, on.g, N * sizeof(float));
    memcpy(tk.w, on.w, N * sizeof(float));
    memcpy(tk.targets, on.targets, N * sizeof(int));
    for (int i = 0; i < N; i++) {
        const float *zt = on.teacher + (size_t)i * V;
        double mx = -INFINITY, sum = 0.0;
        for (int j = 0; j < V; j++) mx = zt[j] > mx ? zt[j] : mx;
        for (int j = 0; j < V; j++) sum += exp(zt[j] - mx);
        for (int k = 0; k < V; k++) {
            int id = tk.teacher_ids[(size_t)i * V + k];
            tk.teacher_logp[(size_t)i * V + k] = (float)(zt[id] - mx - log(sum));
        }
    }
    float *kd_on = xmalloc(N * sizeof(float)), *kd_tk = xmalloc(N * sizeof(float));
    float *ag_on = xmalloc(N * sizeof(float)), *ag_tk = xmalloc(N * sizeof(float));
    for (int b = 0; b < N_BETAS; b++)
        for (int t = 0; t < 3; t++) {
            on.beta = tk.beta = BETAS[b];
            on.temperature = tk.temperature = TEMPS[t];
            classifier_kd_forward(kd_on, ag_on, on.logits, on.teacher, on.targets, N, V, V,
                                  on.temperature, on.beta);
            classifier_kd_topk_forward(kd_tk, ag_tk, tk.logits, tk.teacher_ids, tk.teacher_logp,
                                       tk.targets, N, V, V, V, tk.temperature, tk.beta);
            for (int i = 0; i < N; i++) {
                cr_expect(fabs(kd_tk[i] - kd_on[i]) <= 1e-7 + 2e-5 * fabs(kd_on[i]),
                          "K == V, beta %g temperature %g row %d: top-K kd %.9g, online %.9g",
                          on.beta, on.temperature, i, kd_tk[i], kd_on[i]);
                cr_expect_eq(ag_tk[i], ag_on[i], "K == V row %d: agree differs", i);
            }
            float *d_on = kd_analytic(&on), *d_tk = kd_analytic(&tk);
            double err = rel_err(d_tk, d_on, NV);
            cr_expect(err < 2e-5, "K == V, beta %g temperature %g: dlogits differ by %.3g relative",
                      on.beta, on.temperature, err);
            free(d_on), free(d_tk);
        }
    free(kd_on), free(kd_tk), free(ag_on), free(ag_tk);
    kd_case_free(&on);
    kd_case_free(&tk);
}

/* ---------------------------------------------------------------- conventions */

Test(kd, null_or_zero_weight_is_classifier_backward) {
    Rng r;
    rng_seed(&r, 904);
    int N = 7, V = 53, K = 9;
    KdCase c;
    kd_case_init(&c, &r, N, V, K);
    size_t NV = (size_t)N * V;
    float *logp = xmalloc(N * sizeof(float)), *lse = xmalloc(N * sizeof(float));
    classifier_forward(logp, lse, c.logits, c.targets, N, V, V);
    float *want = copy_floats(c.logits, NV);
    classifier_backward(want, lse, c.targets, c.g, N, V, V);

    float *d = copy_floats(c.logits, NV);
    classifier_kd_backward(d, lse, c.targets, c.g, c.teacher, NULL, N, V, V, 2.0f, 0.5f);
    expect_identical("online, w NULL", d, want, NV);
    memcpy(d, c.logits, NV * sizeof(float));
    classifier_kd_topk_backward(d, lse, c.targets, c.g, c.teacher_ids, c.teacher_logp, NULL, N, V, V,
                                K, 2.0f, 0.5f);
    expect_identical("top-K, w NULL", d, want, NV);

    /* all-zero w: every row as classifier_backward, whatever beta */
    float *w0 = xcalloc(N, sizeof(float));
    for (int b = 0; b < N_BETAS; b++) {
        memcpy(d, c.logits, NV * sizeof(float));
        classifier_kd_backward(d, lse, c.targets, c.g, c.teacher, w0, N, V, V, 0.5f, BETAS[b]);
        expect_identical("online, w = 0", d, want, NV);
        memcpy(d, c.logits, NV * sizeof(float));
        classifier_kd_topk_backward(d, lse, c.targets, c.g, c.teacher_ids, c.teacher_logp, w0, N,
                                    V, V, K, 0.5f, BETAS[b]);
        expect_identical("top-K, w = 0", d, want, NV);
    }
    /* mixed w: the w = 0 row (3) is classifier_backward's, the rest differ, and
     * the row without target (1) is zero although its w is not */
    cr_assert(c.w[1] != 0.0f && c.w[3] == 0.0f);
    memcpy(d, c.logits, NV * sizeof(float));
    classifier_kd_backward(d, lse, c.targets, c.g, c.teacher, c.w, N, V, V, 1.0f, 0.5f);
    expect_identical("online, row with w = 0", d + 3 * V, want + 3 * V, V);
    expect_rows_zero("online, mixed w", d, c.targets, N, V);
    cr_expect(max_abs_diff(d + 4 * V, want + 4 * V, V) > 1e-4, "online: the KD term is missing");
    memcpy(d, c.logits, NV * sizeof(float));
    classifier_kd_topk_backward(d, lse, c.targets, c.g, c.teacher_ids, c.teacher_logp, c.w, N, V, V,
                                K, 1.0f, 0.5f);
    expect_identical("top-K, row with w = 0", d + 3 * V, want + 3 * V, V);
    expect_rows_zero("top-K, mixed w", d, c.targets, N, V);
    cr_expect(max_abs_diff(d + 4 * V, want + 4 * V, V) > 1e-4, "top-K: the KD term is missing");

    /* forward: no target, no divergence */
    float *kd = xmalloc(N * sizeof(float)), *agree = xmalloc(N * sizeof(float));
    classifier_kd_forward(kd, agree, c.logits, c.teacher, c.targets, N, V, V, 1.0f, 0.5f);
    cr_expect(kd[1] == 0.0f && agree[1] == 0.0f, "online: row without target kd %g", kd[1]);
    cr_expect(kd[0] > 0.0f, "online: kd[0] = %g should be positive", kd[0]);
    classifier_kd_topk_forward(kd, agree, c.logits, c.teacher_ids, c.teacher_logp, c.targets, N,
                               V, V, K, 1.0f, 0.5f);
    cr_expect(kd[1] == 0.0f && agree[1] == 0.0f, "top-K: row without target kd %g", kd[1]);
    cr_expect(kd[0] > 0.0f, "top-K: kd[0] = %g should be positive", kd[0]);

    free(logp), free(lse), free(want), free(d), free(w0), free(kd), free(agree);
    kd_case_free(&c);
}

Test(kd, teacher_equal_to_student_gives_zero) {
    Rng r;
    rng_seed(&r, 905);
    int N = 4, V = 300;
    KdCase c;
    kd_case_init(&c, &r, N, V, 0);
    size_t NV = (size_t)N * V;
    memcpy(c.teacher, c.logits, NV * sizeof(float));
    float *kd = xmalloc(N * sizeof(float)), *agree = xmalloc(N * sizeof(float));
    float *logp = xmalloc(N * sizeof(float)), *lse = xmalloc(N * sizeof(float));
    classifier_forward(logp, lse, c.logits, c.targets, N, V, V);
    float *want = copy_floats(c.logits, NV);
    classifier_backward(want, lse, c.targets, c.g, N, V, V);
    for (int b = 0; b < N_BETAS; b++)
        for (int t = 0; t < 3; t++) {
            classifier_kd_forward(kd, agree, c.logits, c.teacher, c.targets, N, V, V, TEMPS[t],
                                  BETAS[b]);
            for (int i = 0; i < N; i++) {
                /* each term is p (log p - log p) with both logs formed identically */
                cr_expect(fabs(kd[i]) < 1e-12, "beta %g temperature %g row %d: kd %.3g, want 0",
                          BETAS[b], TEMPS[t], i, kd[i]);
                if (c.targets[i] >= 0)
                    cr_expect_eq(agree[i], 1.0f, "row %d: identical rows must agree", i);
            }
            float *d = copy_floats(c.logits, NV);
            classifier_kd_backward(d, lse, c.targets, c.g, c.teacher, c.w, N, V, V, TEMPS[t],
                                   BETAS[b]);
            /* the KD gradient vanishes up to double rounding of s - t */
            double diff = max_abs_diff(d, want, NV);
            cr_expect(diff < 1e-6,
                      "beta %g temperature %g: identical teacher moves dlogits by %.3g",
                      BETAS[b], TEMPS[t], diff);
            free(d);
        }
    free(kd), free(agree), free(logp), free(lse), free(want);
    kd_case_free(&c);
}

/* Extreme logits (far from zero, a -1e4 entry, V = GPT-2's) stay finite. */
Test(kd, extreme_logits_stay_finite) {
    Rng r;
    rng_seed(&r, 906);
    int N = 2, V = 50257, K = 20;
    KdCase c;
    kd_case_init(&c, &r, N, V, K);
    size_t NV = (size_t)N * V;
    for (size_t i = 0; i < NV; i++) {
        c.logits[i] = 10.0f * c.logits[i] + 500.0f;
        c.teacher[i] = 10.0f * c.teacher[i] - 500.0f;
    }
    c.logits[7] = -1e4f;
    c.teacher[11] = -1e4f;
    float *kd = xmalloc(N * sizeof(float)), *agree = xmalloc(N * sizeof(float));
    float *logp = xmalloc(N * sizeof(float)), *lse = xmalloc(N * sizeof(float));
    classifier_forward(logp, lse, c.logits, c.targets, N, V, V);
    for (int b = 0; b < N_BETAS; b++) {
        classifier_kd_forward(kd, agree, c.logits, c.teacher, c.targets, N, V, V, 0.5f, BETAS[b]);
        cr_expect(isfinite(kd[0]) && kd[0] >= 0.0f, "beta %g: kd %g", BETAS[b], kd[0]);
        float *d = copy_floats(c.logits, NV);
        classifier_kd_backward(d, lse, c.targets, c.g, c.teacher, c.w, N, V, V, 0.5f, BETAS[b]);
        for (size_t i = 0; i < NV; i++)
            if (!isfinite(d[i])) {
                cr_expect(0, "beta %g: dlogits[%zu] = %g", BETAS[b], i, d[i]);
                break;
            }
        memcpy(d, c.logits, NV * sizeof(float));
        classifier_kd_topk_backward(d, lse, c.targets, c.g, c.teacher_ids, c.teacher_logp, c.w,
                                    N, V, V, K, 0.5f, BETAS[b]);
        for (size_t i = 0; i < NV; i++)
            if (!isfinite(d[i])) {
                cr_expect(0, "top-K beta %g: dlogits[%zu] = %g", BETAS[b], i, d[i]);
                break;
            }
        free(d);
    }
    free(kd), free(agree), free(logp), free(lse);
    kd_case_free(&c);
}

/* ---------------------------------------------------------------- padded vocabulary */

/* rows of V real values copied into rows Vp apart, the padding filled with a
 * value larger than every real logit: any padded column that leaked into a
 * max, a sum, a softmax or an argmax would change the results */
static float *pad_rows(const float *x, int N, int V, int Vp) {
    float *out = xmalloc((size_t)N * Vp * sizeof(float));
    for (int i = 0; i < N; i++) {
        memcpy(out + (size_t)i * Vp, x + (size_t)i * V, (size_t)V * sizeof(float));
        for (int j = V; j < Vp; j++) out[(size_t)i * Vp + j] = 50.0f;
    }
    return out;
}

/* the real columns of padded dlogits equal the unpadded ones bit for bit, and
 * the padded columns are zero */
static void expect_padded_equal(const char *what, const float *padded, const float *plain, int N,
                                int V, int Vp) {
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < V; j++)
            cr_expect_eq(padded[(size_t)i * Vp + j], plain[(size_t)i * V + j],
                         "%s: row %d column %d: %g vs %g", what, i, j, padded[(size_t)i * Vp + j],
                         plain[(size_t)i * V + j]);
        for (int j = V; j < Vp; j++)
            cr_expect_eq(padded[(size_t)i * Vp + j], 0.0f, "%s: padded column %d of row %d is %g",
                         what, j, i, padded[(size_t)i * Vp + j]);
    }
}

Test(kd, padded_rows_give_the_unpadded_results) {
    Rng r;
    rng_seed(&r, 907);
    int N = 6, V = 45, Vp = 64, K = 7;
    KdCase c;
    kd_case_init(&c, &r, N, V, K);
    size_t NV = (size_t)N * V;
    float *zp = pad_rows(c.logits, N, V, Vp), *tp = pad_rows(c.teacher, N, V, Vp);
    float logp[6], lse[6], logp_p[6], lse_p[6], kd[6], ag[6], kd_p[6], ag_p[6];
    classifier_forward(logp, lse, c.logits, c.targets, N, V, V);
    classifier_forward(logp_p, lse_p, zp, c.targets, N, V, Vp);
    for (int i = 0; i < N; i++) {
        cr_expect_eq(logp_p[i], logp[i], "row %d logp", i);
        cr_expect_eq(lse_p[i], lse[i], "row %d lse", i);
    }
    float *d = copy_floats(c.logits, NV), *dp = copy_floats(zp, (size_t)N * Vp);
    classifier_backward(d, lse, c.targets, c.g, N, V, V);
    classifier_backward(dp, lse, c.targets, c.g, N, V, Vp);
    expect_padded_equal("classifier_backward", dp, d, N, V, Vp);
    free(d), free(dp);
    for (int topk = 0; topk <= 1; topk++) {
        const char *what = topk ? "top-K KD" : "online KD";
        if (topk) {
            classifier_kd_topk_forward(kd, ag, c.logits, c.teacher_ids, c.teacher_logp, c.targets,
                                       N, V, V, K, 2.0f, 0.5f);
            classifier_kd_topk_forward(kd_p, ag_p, zp, c.teacher_ids, c.teacher_logp, c.targets,
                                       N, V, Vp, K, 2.0f, 0.5f);
        } else {
            classifier_kd_forward(kd, ag, c.logits, c.teacher, c.targets, N, V, V, 2.0f, 0.5f);
            classifier_kd_forward(kd_p, ag_p, zp, tp, c.targets, N, V, Vp, 2.0f, 0.5f);
        }
        for (int i = 0; i < N; i++) {
            cr_expect_eq(kd_p[i], kd[i], "%s: row %d kd %g vs %g", what, i, kd_p[i], kd[i]);
            cr_expect_eq(ag_p[i], ag[i], "%s: row %d agreement", what, i);
        }
        d = copy_floats(c.logits, NV);
        dp = copy_floats(zp, (size_t)N * Vp);
        if (topk) {
            classifier_kd_topk_backward(d, lse, c.targets, c.g, c.teacher_ids, c.teacher_logp, c.w,
                                        N, V, V, K, 2.0f, 0.5f);
            classifier_kd_topk_backward(dp, lse, c.targets, c.g, c.teacher_ids, c.teacher_logp,
                                        c.w, N, V, Vp, K, 2.0f, 0.5f);
        } else {
            classifier_kd_backward(d, lse, c.targets, c.g, c.teacher, c.w, N, V, V, 2.0f, 0.5f);
            classifier_kd_backward(dp, lse, c.targets, c.g, tp, c.w, N, V, Vp, 2.0f, 0.5f);
        }
        expect_padded_equal(what, dp, d, N, V, Vp);
        free(d), free(dp);
    }
    free(zp), free(tp);
    kd_case_free(&c);
}
