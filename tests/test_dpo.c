/* tests/test_dpo.c — the DPO objective (train/objectives/dpo.c) and preference
 * batching (data/pref_batch.c).
 *
 * Losses, per-pair gradients and metrics are checked against
 * tests/fixtures/dpo.json (tests/make_dpo_fixtures.py: TRL's formulas written
 * out in float64 torch, gradients by autograd with respect to per-token
 * log-probs) for every loss type at three betas, with label smoothing and
 * rpo_alpha variants. Both sides compute in double with the same formulas up
 * to evaluation order and the logsigmoid/sigmoid implementations, so they
 * agree to a few ulps; 1e-9 relative (plus 1e-14 absolute for values that are
 * 0 up to rounding, e.g. saturated sigmoid gradients) is far above that noise
 * and far below any real mistake (a wrong factor, sign, length or smoothing
 * term changes results in the first digits). The gradients are also checked
 * by central finite differences of dpo_batch_loss, and the per-token spreading
 * against the autograd per-token gradients.
 *
 * Pref batching writes small pref files with pref_writer_* and checks rows
 * and targets exactly against hand-computed expectations for each truncation
 * rule, the 2B-row layout, shuffling determinism, seeking and item ranges.
 *
 * The dpo section at set-up: label-smoothing values a loss type cannot take
 * (robust at 0.5, hinge and ipo at any) are refused by config_validate and
 * train_run before a step runs, with a message naming the keys; so are
 * precomputed reference log-prob sums that are not finite and <= 0, naming
 * the dataset and the pair. */
#include <criterion/criterion.h>
#include <hdf5.h>
#include <jansson.h>
#include <stdint.h>

#include "data/h5data.h"
#include "data/pref_batch.h"
#include "model/backend.h"
#include "model/model.h"
#include "model/model_io.h"
#include "tests/testutil.h"
#include "train/config.h"
#include "train/objectives/dpo.h"
#include "train/objectives/pair_batches.h"
#include "train/trainer.h"

/* ------------------------------------------------------------ fixtures */

#define MAX_PAIRS 8

typedef struct {
    int n_pairs;
    DpoPair pairs[MAX_PAIRS];
    json_t *chosen, *rejected; /* arrays of per-token log-prob arrays (borrowed) */
} FixtureBatch;

static json_t *fixture_root;
static FixtureBatch fixture_batches[4];
static int n_fixture_batches;

static double sum_array(json_t *a) {
    double s = 0;
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v) s += json_real_value(v);
    return s;
}

static void load_fixtures(void) {
    json_error_t e;
    fixture_root = json_load_file("tests/fixtures/dpo.json", 0, &e);
    cr_assert_not_null(fixture_root,
                       "tests/fixtures/dpo.json: %s (line %d); regenerate with "
                       ".venv/bin/python tests/make_dpo_fixtures.py tests/fixtures",
                       e.text, e.line);
    json_t *batches = json_object_get(fixture_root, "batches");
    n_fixture_batches = (int)json_array_size(batches);
    cr_assert(n_fixture_batches >= 1 && n_fixture_batches <= 4);
    for (int b = 0; b < n_fixture_batches; b++) {
        json_t *jb = json_array_get(batches, b);
        FixtureBatch *fb = &fixture_batches[b];
        fb->chosen = json_object_get(jb, "chosen");
        fb->rejected = json_object_get(jb, "rejected");
        fb->n_pairs = (int)json_array_size(fb->chosen);
        cr_assert(fb->n_pairs >= 1 && fb->n_pairs <= MAX_PAIRS);
        for (int p = 0; p < fb->n_pairs; p++) {
            json_t *c = json_array_get(fb->chosen, p), *r = json_array_get(fb->rejected, p);
            fb->pairs[p] = (DpoPair){
                .logp_c = sum_array(c),
                .logp_r = sum_array(r),
                .ref_c = json_real_value(json_array_get(json_object_get(jb, "ref_c"), p)),
                .ref_r = json_real_value(json_array_get(json_object_get(jb, "ref_r"), p)),
                .n_c = (int64_t)json_array_size(c),
                .n_r = (int64_t)json_array_size(r),
            };
        }
    }
}

static void free_fixtures(void) {
    json_decref(fixture_root);
    fixture_root = NULL;
}

static DpoParams case_params(json_t *c) {
    DpoParams p = {0};
    const char *name = json_string_value(json_object_get(c, "loss_type"));
    cr_assert_eq(dpo_loss_type_from_name(name, &p.type), 0, "%s", err_msg());
    p.beta = json_real_value(json_object_get(c, "beta"));
    p.label_smoothing = json_real_value(json_object_get(c, "label_smoothing"));
    p.rpo_alpha = json_real_value(json_object_get(c, "rpo_alpha"));
    p.simpo_gamma = json_real_value(json_object_get(c, "simpo_gamma"));
    cr_assert_eq(dpo_params_validate(&p), 0, "%s", err_msg());
    return p;
}

static const char *case_label(json_t *c, char *buf, size_t cap) {
    snprintf(buf, cap, "case %s beta=%g ls=%g rpo=%g gamma=%g batch %d",
             json_string_value(json_object_get(c, "loss_type")),
             json_real_value(json_object_get(c, "beta")),
             json_real_value(json_object_get(c, "label_smoothing")),
             json_real_value(json_object_get(c, "rpo_alpha")),
             json_real_value(json_object_get(c, "simpo_gamma")),
             (int)json_integer_value(json_object_get(c, "batch")));
    return buf;
}

#define REL_TOL 1e-9
#define ABS_TOL 1e-14

static void assert_close(double got, double want, const char *what, const char *label) {
    cr_assert(fabs(got - want) <= REL_TOL * fabs(want) + ABS_TOL, "%s, %s: got %.17g, want %.17g",
              label, what, got, want);
}

#define FOR_EACH_CASE(c, fb, label)                                                            \
    json_t *cases_ = json_object_get(fixture_root, "cases");                                 \
    cr_assert(json_array_size(cases_) >= 45);                                                \
    size_t ci_;                                                                                \
    json_t *c;                                                                                 \
    char label[160];                                                                           \
    json_array_foreach(cases_, ci_, c) for (const FixtureBatch *fb =                           \
        &fixture_batches[json_integer_value(json_object_get(c, "batch"))]; fb; fb = NULL)      \
        if (case_label(c, label, sizeof label))

TestSuite(dpo, .init = load_fixtures, .fini = free_fixtures);

Test(dpo, loss_type_names) {
    const char *names[] = {"sigmoid", "robust", "hinge", "ipo", "simpo"};
    for (int i = 0; i < 5; i++) {
        DpoLossType t;
        cr_assert_eq(dpo_loss_type_from_name(names[i], &t), 0);
        cr_assert_eq((int)t, i);
        cr_assert_str_eq(dpo_loss_type_name(t), names[i]);
    }
    DpoLossType t;
    err_clear();
    cr_assert_eq(dpo_loss_type_from_name("kto_pair", &t), -1);
    cr_assert(strstr(err_msg(), "kto_pair") && strstr(err_msg(), "sigmoid, robust"), "%s",
              err_msg());
}

Test(dpo, params_out_of_range_are_refused) {
    DpoParams ok = {.type = DPO_SIGMOID, .beta = 0.1, .label_smoothing = 0.2, .rpo_alpha = 1};
    cr_assert_eq(dpo_params_validate(&ok), 0, "%s", err_msg());
    struct {
        DpoParams p;
        const char *needle;
    } bad[] = {
        {{.type = DPO_SIGMOID, .beta = 0}, "beta"},
        {{.type = DPO_IPO, .beta = -1}, "beta"},
        {{.type = DPO_SIGMOID, .beta = NAN}, "beta"},
        {{.type = DPO_ROBUST, .beta = 0.1, .label_smoothing = 0.5}, "[0, 0.5)"},
        {{.type = DPO_SIGMOID, .beta = 0.1, .label_smoothing = 1.5}, "[0, 1]"},
        {{.type = DPO_HINGE, .beta = 0.1, .label_smoothing = 0.1}, "hinge"},
        {{.type = DPO_IPO, .beta = 0.1, .label_smoothing = 0.1}, "ipo"},
        {{.type = DPO_SIGMOID, .beta = 0.1, .rpo_alpha = -1}, "rpo_alpha"},
        {{.type = DPO_SIMPO, .beta = 2, .simpo_gamma = INFINITY}, "simpo_gamma"},
        {{.type = (DpoLossType)9, .beta = 0.1}, "loss type"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err_clear();
        cr_assert_eq(dpo_params_validate(&bad[i].p), -1, "bad params %zu accepted", i);
        cr_assert(strstr(err_msg(), bad[i].needle), "params %zu: message lacks \"%s\": %s", i,
                  bad[i].needle, err_msg());
    }
}

Test(dpo, loss_and_pair_gradients_match_fixtures) {
    FOR_EACH_CASE(c, fb, label) {
        DpoParams p = case_params(c);
        double d_c[MAX_PAIRS], d_r[MAX_PAIRS];
        double loss = dpo_batch_loss(&p, fb->pairs, fb->n_pairs, d_c, d_r, NULL);
        assert_close(loss, json_real_value(json_object_get(c, "loss")), "loss", label);
        json_t *want_c = json_object_get(c, "dlogp_c"), *want_r = json_object_get(c, "dlogp_r");
        for (int i = 0; i < fb->n_pairs; i++) {
            char what[64];
            /* a sequence with no token has no per-token gradient in the fixture;
             * its sum gradient is checked by finite differences below */
            if (fb->pairs[i].n_c > 0) {
                snprintf(what, sizeof what, "dlogp_c[%d]", i);
                assert_close(d_c[i], json_real_value(json_array_get(want_c, i)), what, label);
            }
            if (fb->pairs[i].n_r > 0) {
                snprintf(what, sizeof what, "dlogp_r[%d]", i);
                assert_close(d_r[i], json_real_value(json_array_get(want_r, i)), what, label);
            }
        }
    }
}

Test(dpo, metrics_match_fixtures) {
    FOR_EACH_CASE(c, fb, label) {
        DpoParams p = case_params(c);
        DpoMetrics m;
        double loss = dpo_batch_loss(&p, fb->pairs, fb->n_pairs, NULL, NULL, &m);
        cr_assert(isfinite(loss));
        json_t *jm = json_object_get(c, "metrics");
        struct {
            const char *name;
            double got;
        } rows[] = {
            {"rewards/chosen", m.rewards_chosen},     {"rewards/rejected", m.rewards_rejected},
            {"rewards/accuracies", m.rewards_accuracies}, {"rewards/margins", m.rewards_margins},
            {"logps/chosen", m.logps_chosen},         {"logps/rejected", m.logps_rejected},
            {"nll_loss", m.nll_loss},
        };
        for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
            json_t *want = json_object_get(jm, rows[i].name);
            cr_assert_not_null(want, "fixture lacks %s", rows[i].name);
            assert_close(rows[i].got, json_real_value(want), rows[i].name, label);
        }
    }
}

/* Central differences in each pair's policy sums; h = 1e-5 relative keeps the
 * truncation error (h^2 f''') and the rounding error (eps |f| / h) both well
 * under the tolerance for losses up to ~500. */
Test(dpo, pair_gradients_match_finite_differences) {
    FOR_EACH_CASE(c, fb, label) {
        DpoParams p = case_params(c);
        DpoPair pairs[MAX_PAIRS];
        memcpy(pairs, fb->pairs, sizeof pairs);
        double d_c[MAX_PAIRS], d_r[MAX_PAIRS];
        dpo_batch_loss(&p, pairs, fb->n_pairs, d_c, d_r, NULL);
        for (int i = 0; i < fb->n_pairs; i++) {
            for (int side = 0; side < 2; side++) {
                double *x = side == 0 ? &pairs[i].logp_c : &pairs[i].logp_r;
                double x0 = *x, h = 1e-5 * fmax(1.0, fabs(x0));
                *x = x0 + h;
                double up = dpo_batch_loss(&p, pairs, fb->n_pairs, NULL, NULL, NULL);
                *x = x0 - h;
                double down = dpo_batch_loss(&p, pairs, fb->n_pairs, NULL, NULL, NULL);
                *x = x0;
                double fd = (up - down) / (2 * h), an = side == 0 ? d_c[i] : d_r[i];
                cr_assert(fabs(fd - an) <= 1e-6 * fabs(an) + 1e-8,
                          "%s, pair %d %s: finite difference %.12g, analytic %.12g", label, i,
                          side == 0 ? "chosen" : "rejected", fd, an);
            }
        }
    }
}

/* Lays a fixture batch out as 2B rows of T (a 2-token prompt, then the
 * completion tokens as targets), spreads the pair gradients, and compares each
 * token's weight with the autograd per-token gradient of the fixture. */
Test(dpo, spread_weights_give_per_token_gradients) {
    enum { T = 64, PROMPT = 2 };
    FOR_EACH_CASE(c, fb, label) {
        DpoParams p = case_params(c);
        int B = fb->n_pairs;
        int targets[2 * MAX_PAIRS * T];
        float logp[2 * MAX_PAIRS * T], g[2 * MAX_PAIRS * T];
        for (int row = 0; row < 2 * B; row++) {
            json_t *seq = json_array_get(row < B ? fb->chosen : fb->rejected, row % B);
            int n = (int)json_array_size(seq);
            cr_assert(PROMPT + n <= T);
            for (int j = 0; j < T; j++) {
                int k = j - PROMPT + 1; /* targets[j] predicts position j + 1 */
                int on = k >= 0 && k < n;
                targets[row * T + j] = on ? 7 + k : -1;
                logp[row * T + j] = on ? (float)json_real_value(json_array_get(seq, k)) : -99.0f;
            }
        }
        /* the row sums see the same tokens and counts as the fixture */
        double sums[2 * MAX_PAIRS];
        int64_t counts[2 * MAX_PAIRS];
        pref_row_sums(logp, targets, 2 * B, T, sums, counts);
        DpoPair pairs[MAX_PAIRS];
        double ref[2 * MAX_PAIRS];
        for (int b = 0; b < B; b++) ref[b] = fb->pairs[b].ref_c, ref[B + b] = fb->pairs[b].ref_r;
        dpo_pairs_from_rows(sums, ref, counts, B, pairs);
        for (int b = 0; b < B; b++) {
            cr_assert_eq(pairs[b].n_c, fb->pairs[b].n_c);
            cr_assert_eq(pairs[b].n_r, fb->pairs[b].n_r);
            /* float per-token log-probs: the sums agree to float rounding */
            double want_c = fb->pairs[b].logp_c, want_r = fb->pairs[b].logp_r;
            cr_assert(fabs(pairs[b].logp_c - want_c) <= 1e-5 * (1 + fabs(want_c)));
            cr_assert(fabs(pairs[b].logp_r - want_r) <= 1e-5 * (1 + fabs(want_r)));
            cr_assert_eq(pairs[b].ref_c, fb->pairs[b].ref_c);
            cr_assert_eq(pairs[b].ref_r, fb->pairs[b].ref_r);
        }

        double d_c[MAX_PAIRS], d_r[MAX_PAIRS];
        dpo_batch_loss(&p, fb->pairs, B, d_c, d_r, NULL);
        const double scale = 0.25; /* e.g. 4 accumulation steps */
        dpo_spread_weights(d_c, d_r, B, T, targets, scale, g);
        for (int row = 0; row < 2 * B; row++) {
            json_t *want = json_object_get(c, row < B ? "dlogp_c" : "dlogp_r");
            double w = scale * json_real_value(json_array_get(want, row % B));
            for (int j = 0; j < T; j++) {
                float got = g[row * T + j];
                if (targets[row * T + j] < 0) {
                    cr_assert_eq(got, 0.0f, "%s: row %d token %d off the completion has weight %g",
                                 label, row, j, got);
                } else {
                    cr_assert(fabs(got - w) <= 1e-6 * fabs(w) + 1e-30,
                              "%s: row %d token %d weight %.9g, autograd %.9g", label, row, j,
                              got, w);
                }
            }
        }
    }
}

/* The RPO term is linear in the chosen sums: loss(alpha) - loss(0) is
 * alpha * nll_loss, and only the chosen gradients move, all by the same amount. */
Test(dpo, rpo_term_adds_token_mean_nll) {
    const FixtureBatch *fb = &fixture_batches[0];
    DpoParams p0 = {.type = DPO_SIGMOID, .beta = 0.1}, p1 = p0;
    p1.rpo_alpha = 0.7;
    double c0[MAX_PAIRS], r0[MAX_PAIRS], c1[MAX_PAIRS], r1[MAX_PAIRS];
    DpoMetrics m;
    double l0 = dpo_batch_loss(&p0, fb->pairs, fb->n_pairs, c0, r0, &m);
    double l1 = dpo_batch_loss(&p1, fb->pairs, fb->n_pairs, c1, r1, NULL);
    double sum = 0;
    int64_t n = 0;
    for (int i = 0; i < fb->n_pairs; i++) sum += fb->pairs[i].logp_c, n += fb->pairs[i].n_c;
    assert_close(m.nll_loss, -sum / (double)n, "nll_loss", "rpo");
    assert_close(l1 - l0, 0.7 * m.nll_loss, "loss difference", "rpo");
    for (int i = 0; i < fb->n_pairs; i++) {
        assert_close(c1[i] - c0[i], -0.7 / (double)n, "chosen gradient shift", "rpo");
        cr_assert_eq(r1[i], r0[i]);
    }
}

/* ------------------------------------------------------- pref batching */

static void join(char *buf, size_t cap, const char *dir, const char *name) {
    snprintf(buf, cap, "%s/%s", dir, name);
}

#define VOCAB 100
#define EOS 99

typedef struct {
    const uint32_t *prompt, *chosen, *rejected;
    int n_prompt, n_chosen, n_rejected;
} PairSpec;

#define SPEC(p, c, r)                                                                          \
    (PairSpec) {                                                                               \
        p, c, r, (int)(sizeof(p) / sizeof(uint32_t)), (int)(sizeof(c) / sizeof(uint32_t)),     \
            (int)(sizeof(r) / sizeof(uint32_t))                                                \
    }

static void write_pref(const char *path, const PairSpec *specs, int n) {
    PrefWriter *w = pref_writer_open(path, VOCAB, EOS, EOS, "test");
    cr_assert_not_null(w, "%s", err_msg());
    for (int i = 0; i < n; i++)
        cr_assert_eq(pref_writer_add(w, specs[i].prompt, specs[i].n_prompt, specs[i].chosen,
                                     specs[i].n_chosen, specs[i].rejected, specs[i].n_rejected),
                     0, "%s", err_msg());
    cr_assert_eq(pref_writer_close(w), 0, "%s", err_msg());
}

/* n pairs with distinct, recognisable tokens: pair i has prompt [i, 50],
 * chosen [60 + i%30, EOS], rejected [i%30 + 1, 2, EOS] (lengths vary with i). */
static void write_numbered_pref(const char *path, int n) {
    PrefWriter *w = pref_writer_open(path, VOCAB, EOS, EOS, "test");
    cr_assert_not_null(w, "%s", err_msg());
    for (int i = 0; i < n; i++) {
        uint32_t prompt[3] = {(uint32_t)(i % 50), 50, 51};
        uint32_t chosen[2] = {(uint32_t)(60 + i % 30), EOS};
        uint32_t rejected[3] = {(uint32_t)(i % 30 + 1), 2, EOS};
        cr_assert_eq(pref_writer_add(w, prompt, 1 + i % 3, chosen, 2, rejected, 1 + i % 2 + 1), 0,
                     "%s", err_msg());
    }
    cr_assert_eq(pref_writer_close(w), 0, "%s", err_msg());
}

static void open_pref(PrefDataset *pd, const char *path) {
    cr_assert_eq(pref_dataset_open(pd, path), 0, "%s", err_msg());
}

static void assert_ints(const int *got, const int *want, int n, const char *what) {
    for (int i = 0; i < n; i++)
        cr_assert_eq(got[i], want[i], "%s[%d] = %d, want %d", what, i, got[i], want[i]);
}

static const uint32_t P3[] = {1, 2, 3}, C3[] = {10, 11, EOS}, R2[] = {20, EOS};
static const uint32_t P6[] = {1, 2, 3, 4, 5, 6};

/* The rows of pair 0 of a one-pair file with the given limits. */
static int rows_of(PairSpec spec, int T, int max_prompt, int max_completion, int *in_c, int *tg_c,
                   int *in_r, int *tg_r) {
    char dir[256], path[512];
    make_temp_dir(dir, sizeof dir, "dpo");
    join(path, sizeof path, dir, "pref.h5");
    write_pref(path, &spec, 1);
    PrefDataset pd;
    open_pref(&pd, path);
    int t = pref_pair_rows(&pd, 0, T, max_prompt, max_completion, in_c, tg_c, in_r, tg_r);
    pref_dataset_close(&pd);
    rm_rf(dir);
    return t;
}

Test(pref_batch, rows_without_truncation) {
    int in_c[8], tg_c[8], in_r[8], tg_r[8];
    cr_assert_eq(rows_of(SPEC(P3, C3, R2), 8, 0, 0, in_c, tg_c, in_r, tg_r), 0);
    assert_ints(in_c, (int[]){1, 2, 3, 10, 11, EOS, EOS, EOS}, 8, "chosen inputs");
    assert_ints(tg_c, (int[]){-1, -1, 10, 11, EOS, -1, -1, -1}, 8, "chosen targets");
    assert_ints(in_r, (int[]){1, 2, 3, 20, EOS, EOS, EOS, EOS}, 8, "rejected inputs");
    assert_ints(tg_r, (int[]){-1, -1, 20, EOS, -1, -1, -1, -1}, 8, "rejected targets");
}

Test(pref_batch, max_prompt_len_keeps_the_end_of_the_prompt) {
    int in_c[8], tg_c[8], in_r[8], tg_r[8];
    cr_assert_eq(rows_of(SPEC(P3, C3, R2), 8, 2, 0, in_c, tg_c, in_r, tg_r), 1);
    assert_ints(in_c, (int[]){2, 3, 10, 11, EOS, EOS, EOS, EOS}, 8, "chosen inputs");
    assert_ints(tg_c, (int[]){-1, 10, 11, EOS, -1, -1, -1, -1}, 8, "chosen targets");
    assert_ints(in_r, (int[]){2, 3, 20, EOS, EOS, EOS, EOS, EOS}, 8, "rejected inputs");
    assert_ints(tg_r, (int[]){-1, 20, EOS, -1, -1, -1, -1, -1}, 8, "rejected targets");
}

Test(pref_batch, max_completion_len_keeps_the_start_of_each_completion) {
    int in_c[8], tg_c[8], in_r[8], tg_r[8];
    cr_assert_eq(rows_of(SPEC(P3, C3, R2), 8, 0, 2, in_c, tg_c, in_r, tg_r), 1);
    assert_ints(in_c, (int[]){1, 2, 3, 10, 11, EOS, EOS, EOS}, 8, "chosen inputs");
    assert_ints(tg_c, (int[]){-1, -1, 10, 11, -1, -1, -1, -1}, 8, "chosen targets");
    /* the rejected completion has only 2 tokens: nothing dropped from it */
    assert_ints(in_r, (int[]){1, 2, 3, 20, EOS, EOS, EOS, EOS}, 8, "rejected inputs");
    assert_ints(tg_r, (int[]){-1, -1, 20, EOS, -1, -1, -1, -1}, 8, "rejected targets");
}

Test(pref_batch, row_length_t_plus_1_cuts_the_completion) {
    /* T = 4: rows hold 5 tokens; prompt 3 leaves 2 for each completion */
    int in_c[4], tg_c[4], in_r[4], tg_r[4];
    cr_assert_eq(rows_of(SPEC(P3, C3, R2), 4, 0, 0, in_c, tg_c, in_r, tg_r), 1);
    assert_ints(in_c, (int[]){1, 2, 3, 10}, 4, "chosen inputs");
    assert_ints(tg_c, (int[]){-1, -1, 10, 11}, 4, "chosen targets");
    assert_ints(in_r, (int[]){1, 2, 3, 20}, 4, "rejected inputs");
    assert_ints(tg_r, (int[]){-1, -1, 20, EOS}, 4, "rejected targets");
    /* exactly T+1 tokens fit untruncated */
    cr_assert_eq(rows_of(SPEC(P3, R2, R2), 4, 0, 0, in_c, tg_c, in_r, tg_r), 0);
}

Test(pref_batch, prompt_of_t_tokens_leaves_one_completion_token) {
    /* T = 4, prompt of 6 with max_prompt_len 4: the prompt keeps its last 4,
     * which leaves one of the T+1 tokens to each completion */
    int in_c[4], tg_c[4], in_r[4], tg_r[4];
    cr_assert_eq(rows_of(SPEC(P6, C3, R2), 4, 4, 0, in_c, tg_c, in_r, tg_r), 1);
    assert_ints(in_c, (int[]){3, 4, 5, 6}, 4, "chosen inputs");
    assert_ints(tg_c, (int[]){-1, -1, -1, 10}, 4, "chosen targets");
    assert_ints(in_r, (int[]){3, 4, 5, 6}, 4, "rejected inputs");
    assert_ints(tg_r, (int[]){-1, -1, -1, 20}, 4, "rejected targets");
}

/* TRL 1.x drops a pair whose prompt alone fills max_length (= T+1): with
 * max_prompt_len 5 the prompt keeps 5 tokens at T = 4, and the loader skips
 * the pair, counting it; a shorter limit keeps it. */
Test(pref_batch, prompt_filling_the_row_drops_the_pair) {
    char dir[256], path[512];
    make_temp_dir(dir, sizeof dir, "dpo");
    join(path, sizeof path, dir, "pref.h5");
    PairSpec specs[3] = {SPEC(P3, C3, R2), SPEC(P6, C3, R2), SPEC(P3, R2, C3)};
    write_pref(path, specs, 3);
    PrefDataset pd;
    open_pref(&pd, path);
    cr_assert_eq(pref_pair_span(&pd, 1, 4, 5, 0).dropped, 1);
    cr_assert_eq(pref_pair_span(&pd, 1, 4, 0, 0).dropped, 1);
    cr_assert_eq(pref_pair_span(&pd, 1, 4, 4, 0).dropped, 0);
    cr_assert_eq(pref_pair_span(&pd, 1, 5, 0, 0).dropped, 1); /* 6 tokens fill T+1 = 6 */
    cr_assert_eq(pref_pair_span(&pd, 1, 6, 0, 0).dropped, 0);
    PrefLoader pl;
    cr_assert_eq(pref_loader_init(&pl, &pd, 4, 5, 0, 1, 1, 0, 3), 0, "%s", err_msg());
    cr_assert_eq(pl.count, 2);
    cr_assert_eq(pl.range, 3);
    cr_assert_eq(pl.n_dropped, 1);
    cr_assert_eq(pl.n_truncated, 2); /* the 3-token completions lose a token at room 2 */
    int inputs[2 * 4 * 4], targets[2 * 4 * 4];
    int64_t ids[4];
    pref_loader_next(&pl, 4, inputs, targets, ids); /* two epochs of the 2 kept pairs */
    for (int b = 0; b < 4; b++) cr_assert_neq(ids[b], 1, "row %d visits the dropped pair", b);
    cr_assert_eq(pl.epoch, 2);
    pref_loader_free(&pl);
    /* a range of only that pair: nothing to train on, said so */
    cr_assert_neq(pref_loader_init(&pl, &pd, 4, 0, 0, 1, 1, 1, 1), 0);
    assert_contains(err_msg(), "dropped");
    pref_dataset_close(&pd);
    rm_rf(dir);
}

Test(pref_batch, empty_prompt_first_completion_token_is_not_a_target) {
    int in_c[6], tg_c[6], in_r[6], tg_r[6];
    PairSpec s = {NULL, C3, R2, 0, 3, 2};
    cr_assert_eq(rows_of(s, 6, 0, 0, in_c, tg_c, in_r, tg_r), 0);
    assert_ints(in_c, (int[]){10, 11, EOS, EOS, EOS, EOS}, 6, "chosen inputs");
    assert_ints(tg_c, (int[]){11, EOS, -1, -1, -1, -1}, 6, "chosen targets");
    assert_ints(in_r, (int[]){20, EOS, EOS, EOS, EOS, EOS}, 6, "rejected inputs");
    assert_ints(tg_r, (int[]){EOS, -1, -1, -1, -1, -1}, 6, "rejected targets");
}

Test(pref_batch, span_reports_kept_lengths) {
    char dir[256], path[512];
    make_temp_dir(dir, sizeof dir, "dpo");
    join(path, sizeof path, dir, "pref.h5");
    PairSpec specs[2] = {SPEC(P3, C3, R2), SPEC(P6, C3, R2)};
    write_pref(path, specs, 2);
    PrefDataset pd;
    open_pref(&pd, path);
    PrefSpan s = pref_pair_span(&pd, 1, 6, 4, 2);
    cr_assert_eq(s.prompt_start, 3 + 2); /* pair 1's prompt starts at 3; keep tokens 3..6 */
    cr_assert_eq(s.prompt_len, 4);
    cr_assert_eq(s.chosen_len, 2);
    cr_assert_eq(s.rejected_len, 2);
    cr_assert_eq(s.truncated, 1);
    s = pref_pair_span(&pd, 0, 16, 0, 0);
    cr_assert_eq(s.prompt_start, 0);
    cr_assert_eq(s.prompt_len, 3);
    cr_assert_eq(s.chosen_len, 3);
    cr_assert_eq(s.rejected_len, 2);
    cr_assert_eq(s.truncated, 0);
    pref_dataset_close(&pd);
    rm_rf(dir);
}

/* A numbered file, opened, in a fresh temporary directory. */
#define NUMBERED_PREF(pd, dir, n)                                                              \
    char dir[256], dir##_path[512];                                                            \
    make_temp_dir(dir, sizeof dir, "dpo");                                                     \
    join(dir##_path, sizeof dir##_path, dir, "pref.h5");                                       \
    write_numbered_pref(dir##_path, n);                                                        \
    PrefDataset pd;                                                                            \
    open_pref(&pd, dir##_path)

/* Each row pair of a batch must be exactly pref_pair_rows of its pair id. */
static void assert_batch_rows(const PrefDataset *pd, int B, int T, int mp, int mc,
                              const int *inputs, const int *targets, const int64_t *ids) {
    int in_c[64], tg_c[64], in_r[64], tg_r[64];
    cr_assert(T <= 64);
    for (int b = 0; b < B; b++) {
        pref_pair_rows(pd, ids[b], T, mp, mc, in_c, tg_c, in_r, tg_r);
        assert_ints(inputs + b * T, in_c, T, "chosen row inputs");
        assert_ints(targets + b * T, tg_c, T, "chosen row targets");
        assert_ints(inputs + (B + b) * T, in_r, T, "rejected row inputs");
        assert_ints(targets + (B + b) * T, tg_r, T, "rejected row targets");
    }
}

Test(pref_batch, loader_layout_order_and_epochs) {
    NUMBERED_PREF(pd, dir, 5);
    enum { B = 2, T = 6 };
    PrefLoader pl;
    cr_assert_eq(pref_loader_init(&pl, &pd, T, 0, 0, 1, 0, 0, 5), 0, "%s", err_msg());
    int inputs[2 * B * T], targets[2 * B * T];
    int64_t ids[B];
    int64_t want[3][B] = {{0, 1}, {2, 3}, {4, 0}};
    for (int step = 0; step < 3; step++) {
        pref_loader_next(&pl, B, inputs, targets, ids);
        for (int b = 0; b < B; b++) cr_assert_eq(ids[b], want[step][b], "step %d row %d", step, b);
        assert_batch_rows(&pd, B, T, 0, 0, inputs, targets, ids);
    }
    cr_assert_eq(pl.epoch, 1);
    cr_assert_eq(pl.pos, 1);
    /* pair 1 (prompt [1, 50]) row by hand: chosen = [1, 50, 61, EOS] */
    pref_loader_seek(&pl, 0, 1);
    pref_loader_next(&pl, 1, inputs, targets, NULL);
    assert_ints(inputs, (int[]){1, 50, 61, EOS, EOS, EOS}, T, "pair 1 chosen inputs");
    assert_ints(targets, (int[]){-1, 61, EOS, -1, -1, -1}, T, "pair 1 chosen targets");
    assert_ints(inputs + T, (int[]){1, 50, 2, 2, EOS, EOS}, T, "pair 1 rejected inputs");
    assert_ints(targets + T, (int[]){-1, 2, 2, EOS, -1, -1}, T, "pair 1 rejected targets");
    pref_loader_free(&pl);
    pref_dataset_close(&pd);
    rm_rf(dir);
}

Test(pref_batch, loader_counts_truncated_pairs) {
    NUMBERED_PREF(pd, dir, 6);
    /* T = 3: pairs with prompt 3 (i % 3 == 2) keep 3 prompt tokens and 1 completion
     * token; prompt 2 (i % 3 == 1) leaves room 2: the 3-token rejected (odd i) is cut;
     * prompt 1 leaves room 3: nothing is cut. Truncated: i = 2, 5 and 1. */
    PrefLoader pl;
    cr_assert_eq(pref_loader_init(&pl, &pd, 3, 0, 0, 1, 0, 0, 6), 0, "%s", err_msg());
    int inputs[2 * 6 * 3], targets[2 * 6 * 3];
    pref_loader_next(&pl, 6, inputs, targets, NULL);
    cr_assert_eq(pl.truncated, 3);
    pref_loader_next(&pl, 2, inputs, targets, NULL); /* pairs 0, 1 of epoch 1 */
    cr_assert_eq(pl.truncated, 4);
    pref_loader_free(&pl);
    pref_dataset_close(&pd);
    rm_rf(dir);
}

/* All pair ids of `epochs` epochs of n pairs, B at a time. */
static void visit(PrefLoader *pl, int n, int epochs, int B, int T, int64_t *ids) {
    int *inputs = xmalloc((size_t)2 * B * T * sizeof(int));
    int *targets = xmalloc((size_t)2 * B * T * sizeof(int));
    for (int k = 0; k < n * epochs; k += B) {
        pref_loader_next(pl, B, inputs, targets, ids + k);
        assert_batch_rows(pl->pd, B, T, pl->max_prompt_len, pl->max_completion_len, inputs,
                          targets, ids + k);
    }
    free(inputs);
    free(targets);
}

Test(pref_batch, shuffle_is_a_deterministic_permutation_per_epoch) {
    enum { N = 20, EPOCHS = 3, B = 4, T = 5 };
    NUMBERED_PREF(pd, dir, N);
    PrefLoader a, b, c;
    cr_assert_eq(pref_loader_init(&a, &pd, T, 2, 2, 42, 1, 0, N), 0, "%s", err_msg());
    cr_assert_eq(pref_loader_init(&b, &pd, T, 2, 2, 42, 1, 0, N), 0, "%s", err_msg());
    cr_assert_eq(pref_loader_init(&c, &pd, T, 2, 2, 43, 1, 0, N), 0, "%s", err_msg());
    int64_t ia[N * EPOCHS], ib[N * EPOCHS], ic[N * EPOCHS];
    visit(&a, N, EPOCHS, B, T, ia);
    visit(&b, N, EPOCHS, B, T, ib);
    visit(&c, N, EPOCHS, B, T, ic);
    cr_assert_arr_eq(ia, ib, sizeof ia, "same seed, different orders");
    cr_assert(memcmp(ia, ic, sizeof ia) != 0, "seeds 42 and 43 gave the same order");
    cr_assert(memcmp(ia, ia + N, N * sizeof *ia) != 0, "epochs 0 and 1 in the same order");
    int64_t identity = 1;
    for (int e = 0; e < EPOCHS; e++) {
        int seen[N] = {0};
        for (int k = 0; k < N; k++) {
            seen[ia[e * N + k]]++;
            identity &= ia[e * N + k] == k;
        }
        for (int k = 0; k < N; k++)
            cr_assert_eq(seen[k], 1, "epoch %d visits pair %d %d times", e, k, seen[k]);
    }
    cr_assert(!identity, "shuffle left every epoch in file order");
    pref_loader_free(&a);
    pref_loader_free(&b);
    pref_loader_free(&c);
    pref_dataset_close(&pd);
    rm_rf(dir);
}

Test(pref_batch, seek_resumes_the_same_stream) {
    enum { N = 7, B = 3, T = 6 };
    NUMBERED_PREF(pd, dir, N);
    PrefLoader a, b;
    cr_assert_eq(pref_loader_init(&a, &pd, T, 0, 0, 9, 1, 0, N), 0, "%s", err_msg());
    cr_assert_eq(pref_loader_init(&b, &pd, T, 0, 0, 9, 1, 0, N), 0, "%s", err_msg());
    int64_t stream[5 * B];
    int inputs[2 * B * T], targets[2 * B * T];
    for (int s = 0; s < 5; s++) pref_loader_next(&a, B, inputs, targets, stream + s * B);
    /* from every position the stream reached, a seek continues it */
    for (int k = 0; k + B <= 5 * B; k++) {
        pref_loader_seek(&b, k / N, k % N);
        int64_t ids[B];
        pref_loader_next(&b, B, inputs, targets, ids);
        cr_assert_arr_eq(ids, stream + k, sizeof ids, "seek to %d/%d diverges", k / N, k % N);
        assert_batch_rows(&pd, B, T, 0, 0, inputs, targets, ids);
    }
    /* pos == count is the start of the next epoch */
    int64_t x[B], y[B];
    pref_loader_seek(&b, 0, N);
    pref_loader_next(&b, B, inputs, targets, x);
    pref_loader_seek(&b, 1, 0);
    pref_loader_next(&b, B, inputs, targets, y);
    cr_assert_arr_eq(x, y, sizeof x);
    cr_assert_arr_eq(x, stream + N, sizeof x);
    pref_loader_free(&a);
    pref_loader_free(&b);
    pref_dataset_close(&pd);
    rm_rf(dir);
}

Test(pref_batch, item_range_and_refusals) {
    NUMBERED_PREF(pd, dir, 10);
    PrefLoader pl;
    cr_assert_eq(pref_loader_init(&pl, &pd, 6, 0, 0, 5, 1, 7, 3), 0, "%s", err_msg());
    int inputs[2 * 6 * 6], targets[2 * 6 * 6];
    int64_t ids[6];
    pref_loader_next(&pl, 6, inputs, targets, ids);
    for (int b = 0; b < 6; b++)
        cr_assert(ids[b] >= 7 && ids[b] < 10, "pair %lld outside [7, 10)", (long long)ids[b]);
    assert_batch_rows(&pd, 6, 6, 0, 0, inputs, targets, ids);
    pref_loader_free(&pl);

    err_clear();
    cr_assert_eq(pref_loader_init(&pl, &pd, 0, 0, 0, 5, 1, 0, 10), -1);
    cr_assert(strstr(err_msg(), "T=0") && strstr(err_msg(), dir), "%s", err_msg());
    cr_assert_eq(pref_loader_init(&pl, &pd, 6, 0, 0, 5, 1, 0, 0), -1);
    cr_assert(strstr(err_msg(), "empty pair range"), "%s", err_msg());
    cr_assert_eq(pref_loader_init(&pl, &pd, 6, 0, 0, 5, 1, 8, 3), -1);
    cr_assert(strstr(err_msg(), "[8, 11)") && strstr(err_msg(), "10 pairs"), "%s", err_msg());
    cr_assert_eq(pref_loader_init(&pl, &pd, 6, 0, 0, 5, 1, -1, 3), -1);
    cr_assert_null(pl.order);
    pref_dataset_close(&pd);
    rm_rf(dir);
}

Test(pref_batch, row_sums_over_targets) {
    const float logp[2 * 4] = {-1.0f, -2.0f, -0.5f, -8.0f, -0.25f, -3.0f, -4.0f, -5.0f};
    const int targets[2 * 4] = {-1, 5, 6, -1, 0, -1, -1, 2};
    double sums[2];
    int64_t counts[2];
    pref_row_sums(logp, targets, 2, 4, sums, counts);
    cr_assert_eq(sums[0], -2.5);
    cr_assert_eq(counts[0], 2);
    cr_assert_eq(sums[1], -5.25); /* token id 0 is a target like any other */
    cr_assert_eq(counts[1], 2);
}

/* --------------------------------------------- the dpo section at set-up */

/* A tiny model (vocab VOCAB) at dir/model and pairs at dir/pref.h5, and a
 * run config of objective dpo on them writing to dir/out. */
static void setup_run(Config *c, const char *dir) {
    char model[512], data[512];
    join(model, sizeof model, dir, "model");
    join(data, sizeof data, dir, "pref.h5");
    write_numbered_pref(data, 8);
    GPTConfig g = {.n_layer = 1, .n_head = 2, .n_embd = 16, .vocab_size = VOCAB, .n_positions = 16,
                   .layer_norm_epsilon = 1e-5f, .vocab_pad = 0};
    GPT *m = gpt_create(&g, backend_cpu());
    cr_assert_not_null(m, "%s", err_msg());
    gpt_init_random(m, 3);
    cr_assert_eq(mkdir_p(model), 0);
    cr_assert_eq(model_save_hf(m, model), 0, "%s", err_msg());
    gpt_free(m);
    config_defaults(c);
    c->model.n_layer = 1;
    c->model.n_head = 2;
    c->model.n_embd = 16;
    c->model.vocab_size = VOCAB;
    c->model.n_positions = 16;
    snprintf(c->model.init, sizeof c->model.init, "%s", model);
    snprintf(c->objective.type, sizeof c->objective.type, "dpo");
    snprintf(c->data.train, sizeof c->data.train, "%s", data);
    c->data.seq_len = 8;
    c->data.batch_size = 2;
    c->train.steps = 2;
    c->train.threads = 1;
    c->optim.warmup_steps = 0;
    join(c->train.out_dir, sizeof c->train.out_dir, dir, "out");
}

/* The run is refused before anything is opened: config_validate and
 * train_run fail with a message holding each needle, and no step ran (no
 * metrics.jsonl). */
static void assert_refused(const Config *c, const char *const *needles, int n) {
    err_clear();
    cr_assert_eq(config_validate(c), -1, "config_validate accepted the dpo section");
    for (int i = 0; i < n; i++)
        cr_assert(strstr(err_msg(), needles[i]), "message lacks \"%s\": %s", needles[i],
                  err_msg());
    TrainOptions o = {0, 1};
    err_clear();
    cr_assert_eq(train_run(c, &o), -1, "train_run accepted the dpo section");
    for (int i = 0; i < n; i++)
        cr_assert(strstr(err_msg(), needles[i]), "message lacks \"%s\": %s", needles[i],
                  err_msg());
    cr_assert(!strstr(err_msg(), "nan") && !strstr(err_msg(), "lower optim.lr"), "%s",
              err_msg());
    char metrics[CFG_STR + 32];
    join(metrics, sizeof metrics, c->train.out_dir, "metrics.jsonl");
    cr_assert(!path_exists(metrics), "a step ran: %s exists", metrics);
}

/* robust divides by 1 - 2 label_smoothing: at 0.5 that is 0 and TRL's loss is
 * NaN at step 1 (TRL only warns). The same run with 0.1 trains. */
Test(dpo_setup, robust_with_label_smoothing_one_half_is_refused_at_set_up) {
    char dir[256];
    make_temp_dir(dir, sizeof dir, "dposetup");
    Config c;
    setup_run(&c, dir);
    snprintf(c.dpo.loss_type, sizeof c.dpo.loss_type, "robust");
    c.dpo.label_smoothing = 0.1;
    TrainOptions o = {0, 1};
    cr_assert_eq(train_run(&c, &o), 0, "robust with 0.1: %s", err_msg());
    rm_rf(c.train.out_dir);
    c.dpo.label_smoothing = 0.5;
    const char *needles[] = {"dpo.label_smoothing", "robust", "[0, 0.5)", "TRL"};
    assert_refused(&c, needles, 4);
    rm_rf(dir);
}

/* hinge and ipo have no label smoothing: TRL ignores the value, so a config
 * that sets it would train something other than it says. */
Test(dpo_setup, hinge_and_ipo_with_label_smoothing_are_refused_at_set_up) {
    char dir[256];
    make_temp_dir(dir, sizeof dir, "dposetup");
    Config c;
    setup_run(&c, dir);
    const char *types[] = {"hinge", "ipo"};
    for (int i = 0; i < 2; i++) {
        snprintf(c.dpo.loss_type, sizeof c.dpo.loss_type, "%s", types[i]);
        c.dpo.label_smoothing = 0.1;
        const char *needles[] = {"dpo.label_smoothing", types[i], "TRL"};
        assert_refused(&c, needles, 3);
        c.dpo.label_smoothing = 0; /* the same run without it trains */
        TrainOptions o = {0, 1};
        cr_assert_eq(train_run(&c, &o), 0, "%s without label smoothing: %s", types[i],
                     err_msg());
        rm_rf(c.train.out_dir);
    }
    rm_rf(dir);
}

/* Puts reference log-prob sums for the 8 pairs of setup_run's file into it,
 * `bad` at pair 3 of dataset `name` (NULL: none), without the ref_*
 * attributes (so no truncation check applies). */
static void write_ref_columns(const char *path, const char *name, double bad) {
    static const char *const names[2] = {"ref_logp_chosen", "ref_logp_rejected"};
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert(f >= 0, "cannot open %s", path);
    for (int k = 0; k < 2; k++) {
        double v[8];
        for (int i = 0; i < 8; i++) v[i] = -2.0 - 0.25 * i - k;
        if (name && strcmp(name, names[k]) == 0) v[3] = bad;
        if (H5Lexists(f, names[k], H5P_DEFAULT) > 0)
            cr_assert(H5Ldelete(f, names[k], H5P_DEFAULT) >= 0);
        hsize_t n = 8;
        hid_t s = H5Screate_simple(1, &n, NULL);
        hid_t d = H5Dcreate2(f, names[k], H5T_IEEE_F64LE, s, H5P_DEFAULT, H5P_DEFAULT,
                             H5P_DEFAULT);
        cr_assert(d >= 0 && H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
        H5Dclose(d);
        H5Sclose(s);
    }
    H5Fclose(f);
}

/* dpo.reference precomputed with a reference sum of 1e300 or NaN in the file:
 * refused when the data opens, before a step, naming the file, the dataset
 * and the pair (at 1df6ed0 1e300 trained silently and NaN failed 15 steps
 * later, blaming the learning rate). The same file with good sums trains. */
Test(dpo_setup, precomputed_reference_log_probs_are_checked_at_set_up) {
    char dir[256];
    make_temp_dir(dir, sizeof dir, "dporef");
    Config c;
    setup_run(&c, dir);
    snprintf(c.dpo.reference, sizeof c.dpo.reference, "precomputed");
    const char *names[2] = {"ref_logp_chosen", "ref_logp_rejected"};
    const double bad[2] = {1e300, NAN};
    char metrics[CFG_STR + 32];
    join(metrics, sizeof metrics, c.train.out_dir, "metrics.jsonl");
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 2; i++) {
            write_ref_columns(c.data.train, names[k], bad[i]);
            TrainOptions o = {0, 1};
            err_clear();
            cr_assert_eq(train_run(&c, &o), -1, "%s = %g at pair 3 trained", names[k], bad[i]);
            assert_contains(err_msg(), c.data.train);
            assert_contains(err_msg(), names[k]);
            assert_contains(err_msg(), "pair 3");
            cr_assert(!strstr(err_msg(), "optim.lr"), "%s", err_msg());
            cr_assert(!path_exists(metrics), "a step ran: %s exists", metrics);
        }
    write_ref_columns(c.data.train, NULL, 0);
    TrainOptions o = {0, 1};
    cr_assert_eq(train_run(&c, &o), 0, "good reference sums: %s", err_msg());
    rm_rf(dir);
}
