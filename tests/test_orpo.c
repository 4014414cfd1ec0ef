/* tests/test_orpo.c — the ORPO objective (train/objectives/orpo.c).
 *
 *   - loss, per-token gradients and metrics against tests/fixtures/orpo.json
 *     (tests/make_orpo_fixtures.py: TRL's ORPOTrainer formulas in float64
 *     torch, gradients by autograd with respect to every per-token log-prob).
 *     The fixture's log-probs are float32 values, read exactly; both sides sum
 *     in double, so they agree to a few ulps: 1e-9 relative (plus 1e-14
 *     absolute) on the loss and metrics is far above that noise and far below
 *     any real mistake (a wrong mean, sign, branch of log1mexp or a prompt
 *     token missing from the NLL moves the first digits). The per-token
 *     weights are floats: 1e-6 relative.
 *   - the loss's gradient in its per-token log-probs by central differences;
 *   - the gradient through the model equals central differences of the loss,
 *     with both taken through the Objective interface (registry, open, step,
 *     eval), so the prompt-token NLL targets orpo.c builds are what is checked;
 *   - `retort train` (train_run) with objective.type orpo on a tiny preference
 *     file lowers the loss, raises rewards/accuracies, logs TRL's metric names
 *     (eval_ ones too) and resumes bit for bit.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>

#include "data/h5data.h"
#include "data/pref_batch.h"
#include "model/backend.h"
#include "model/model.h"
#include "model/model_io.h"
#include "tests/testutil.h"
#include "train/config.h"
#include "train/objectives/objective.h"
#include "train/trainer.h"

/* orpo.c has no header (a method is one file); its loss is exported for this test. */
double orpo_batch_loss(double beta, const float *logp, const int *targets,
                       const int *nll_targets, int B, int T, double scale, float *g,
                       double *metrics);

static const char *const METRIC_NAMES[] = {
    "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
    "logps/chosen",   "logps/rejected",   "nll_loss",           "log_odds_ratio",
    "log_odds_chosen"};
#define N_METRICS 9

/* ------------------------------------------------------------ fixtures */

#define MAX_PAIRS 8
#define T_ROWS 40

/* One fixture batch laid out as model rows: chosen row b scores its prompt
 * tokens (NLL only) at positions [0, n_p) and its completion at [n_p, n_p +
 * n_c); rejected row b its completion at [n_p, n_p + n_r) (a prompt of n_p + 1
 * tokens: position j predicts token j + 1). Everything else is off target,
 * with a log-prob of -99 that must never be read. */
typedef struct {
    int B;
    int n_p[MAX_PAIRS], n_c[MAX_PAIRS], n_r[MAX_PAIRS];
    int targets[2 * MAX_PAIRS * T_ROWS], nll_targets[MAX_PAIRS * T_ROWS];
    float logp[2 * MAX_PAIRS * T_ROWS];
} Rows;

static json_t *fixture_root;

static void load_fixtures(void) {
    json_error_t e;
    fixture_root = json_load_file("tests/fixtures/orpo.json", 0, &e);
    cr_assert_not_null(fixture_root,
                       "tests/fixtures/orpo.json: %s (line %d); regenerate with "
                       ".venv/bin/python tests/make_orpo_fixtures.py tests/fixtures",
                       e.text, e.line);
}

static void free_fixtures(void) {
    json_decref(fixture_root);
    fixture_root = NULL;
}

static void lay_out(json_t *batch, Rows *r) {
    json_t *jp = json_object_get(batch, "prompt"), *jc = json_object_get(batch, "chosen"),
           *jr = json_object_get(batch, "rejected");
    r->B = (int)json_array_size(jc);
    cr_assert(r->B >= 1 && r->B <= MAX_PAIRS);
    int T = T_ROWS;
    for (int i = 0; i < 2 * r->B * T; i++) r->targets[i] = -1, r->logp[i] = -99.0f;
    for (int i = 0; i < r->B * T; i++) r->nll_targets[i] = -1;
    for (int b = 0; b < r->B; b++) {
        json_t *p = json_array_get(jp, b), *c = json_array_get(jc, b), *q = json_array_get(jr, b);
        r->n_p[b] = (int)json_array_size(p);
        r->n_c[b] = (int)json_array_size(c);
        r->n_r[b] = (int)json_array_size(q);
        cr_assert(r->n_p[b] + r->n_c[b] <= T && r->n_p[b] + r->n_r[b] <= T);
        for (int k = 0; k < r->n_p[b]; k++) {
            r->nll_targets[b * T + k] = 5 + k;
            r->logp[b * T + k] = (float)json_real_value(json_array_get(p, k));
        }
        for (int k = 0; k < r->n_c[b]; k++) {
            int j = r->n_p[b] + k;
            r->targets[b * T + j] = r->nll_targets[b * T + j] = 30 + k;
            r->logp[b * T + j] = (float)json_real_value(json_array_get(c, k));
        }
        for (int k = 0; k < r->n_r[b]; k++) {
            int j = (r->B + b) * T + r->n_p[b] + k;
            r->targets[j] = 60 + k;
            r->logp[j] = (float)json_real_value(json_array_get(q, k));
        }
    }
}

#define REL_TOL 1e-9
#define ABS_TOL 1e-14

static void assert_close(double got, double want, const char *what, const char *label) {
    cr_assert(fabs(got - want) <= REL_TOL * fabs(want) + ABS_TOL, "%s, %s: got %.17g, want %.17g",
              label, what, got, want);
}

/* Each case's loss, metrics and per-token weights (with scale 0.25, e.g. 4
 * accumulation steps) against the fixture. */
Test(orpo, loss_gradients_and_metrics_match_fixtures, .init = load_fixtures,
     .fini = free_fixtures) {
    json_t *cases = json_object_get(fixture_root, "cases");
    json_t *batches = json_object_get(fixture_root, "batches");
    cr_assert(json_array_size(cases) >= 9);
    size_t ci;
    json_t *c;
    json_array_foreach(cases, ci, c) {
        int bi = (int)json_integer_value(json_object_get(c, "batch"));
        double beta = json_real_value(json_object_get(c, "beta"));
        char label[96];
        snprintf(label, sizeof label, "batch %d (%s) beta %g", bi,
                 json_string_value(json_object_get(json_array_get(batches, bi), "name")), beta);
        static Rows r;
        lay_out(json_array_get(batches, bi), &r);
        const double scale = 0.25;
        float g[2 * MAX_PAIRS * T_ROWS];
        double m[N_METRICS];
        double loss = orpo_batch_loss(beta, r.logp, r.targets, r.nll_targets, r.B, T_ROWS, scale,
                                      g, m);
        assert_close(loss, json_real_value(json_object_get(c, "loss")), "loss", label);
        /* without g and metrics: the same loss */
        cr_assert_eq(orpo_batch_loss(beta, r.logp, r.targets, r.nll_targets, r.B, T_ROWS, 1.0,
                                     NULL, NULL),
                     loss);
        json_t *jm = json_object_get(c, "metrics");
        for (int k = 0; k < N_METRICS; k++) {
            json_t *want = json_object_get(jm, METRIC_NAMES[k]);
            cr_assert_not_null(want, "fixture lacks %s", METRIC_NAMES[k]);
            assert_close(m[k], json_real_value(want), METRIC_NAMES[k], label);
        }
        json_t *gp = json_object_get(c, "grad_prompt"), *gc = json_object_get(c, "grad_chosen"),
               *gr = json_object_get(c, "grad_rejected");
        for (int row = 0; row < 2 * r.B; row++) {
            int b = row % r.B, chosen = row < r.B;
            for (int j = 0; j < T_ROWS; j++) {
                int k = j - r.n_p[b];
                json_t *want = NULL;
                if (chosen && k < 0) want = json_array_get(json_array_get(gp, b), j);
                else if (chosen && k < r.n_c[b]) want = json_array_get(json_array_get(gc, b), k);
                else if (!chosen && k >= 0 && k < r.n_r[b])
                    want = json_array_get(json_array_get(gr, b), k);
                float got = g[row * T_ROWS + j];
                if (!want) {
                    cr_assert_eq(got, 0.0f, "%s: row %d token %d is off target but has weight %g",
                                 label, row, j, got);
                    continue;
                }
                double w = scale * json_real_value(want);
                cr_assert(fabs(got - w) <= 1e-6 * fabs(w) + 1e-30,
                          "%s: row %d token %d weight %.9g, autograd %.9g", label, row, j, got, w);
            }
        }
    }
}

/* Central differences in single per-token log-probs. h = 2^-12 keeps x + h
 * exact in float (|x| < 8) and, on these batches (average log-probs below
 * -0.01), the truncation error far under the tolerance. */
Test(orpo, token_gradients_match_finite_differences, .init = load_fixtures,
     .fini = free_fixtures) {
    json_t *batches = json_object_get(fixture_root, "batches");
    const int which[2] = {0, 2}; /* moderate, exact */
    int checked = 0;
    for (int w = 0; w < 2; w++) {
        static Rows r;
        lay_out(json_array_get(batches, which[w]), &r);
        float g[2 * MAX_PAIRS * T_ROWS];
        const double beta = 0.5, h = 1.0 / 4096;
        orpo_batch_loss(beta, r.logp, r.targets, r.nll_targets, r.B, T_ROWS, 1.0, g, NULL);
        for (int i = 0; i < 2 * r.B * T_ROWS; i++) {
            int scored = r.targets[i] >= 0 || (i < r.B * T_ROWS && r.nll_targets[i] >= 0);
            if (!scored) continue;
            float x = r.logp[i];
            r.logp[i] = (float)(x + h);
            double up = orpo_batch_loss(beta, r.logp, r.targets, r.nll_targets, r.B, T_ROWS, 1,
                                        NULL, NULL);
            r.logp[i] = (float)(x - h);
            double down = orpo_batch_loss(beta, r.logp, r.targets, r.nll_targets, r.B, T_ROWS,
                                          1, NULL, NULL);
            r.logp[i] = x;
            double fd = (up - down) / (2 * h);
            cr_assert(fabs(fd - g[i]) <= 1e-5 * fabs(g[i]) + 1e-7,
                      "batch %d token %d: finite difference %.10g, analytic %.10g", which[w], i,
                      fd, g[i]);
            checked++;
        }
    }
    cr_assert_eq(checked, 90, "every scored token of both batches"); /* 76 + 14 */
}

/* ------------------------------------------------------ through the model */

/* n pairs: prompt "xy=" (random letters), chosen "a..", rejected "x..": a
 * preference the model can learn from the first completion token on. */
static void write_pairs(const char *path, int n, uint64_t seed) {
    PrefWriter *pw = pref_writer_open(path, 257, 256, 256, "bytes");
    cr_assert(pw, "%s", err_msg());
    Rng r;
    rng_seed(&r, seed);
    for (int i = 0; i < n; i++) {
        uint32_t p[3] = {'a' + (uint32_t)rng_below(&r, 10), 'a' + (uint32_t)rng_below(&r, 10), '='};
        uint32_t ch[8], rj[8];
        int lc = 2 + (int)rng_below(&r, 4), lr = 2 + (int)rng_below(&r, 4);
        for (int k = 0; k < lc; k++) ch[k] = 'a' + (uint32_t)rng_below(&r, 3);
        for (int k = 0; k < lr; k++) rj[k] = 'x' + (uint32_t)rng_below(&r, 3);
        ch[lc++] = 256;
        rj[lr++] = 256;
        cr_assert_eq(pref_writer_add(pw, p, 1 + i % 3, ch, lc, rj, lr), 0, "%s", err_msg());
    }
    cr_assert_eq(pref_writer_close(pw), 0, "%s", err_msg());
}

/* A random byte-level model, moved off the 0.02 init so it has opinions. */
static GPT *orpo_byte_model(uint64_t seed) {
    GPTConfig cfg = {.n_layer = 2, .n_head = 2, .n_embd = 32, .vocab_size = 257, .n_positions = 32,
                     .layer_norm_epsilon = 1e-5f, .vocab_pad = 0};
    return perturbed_cpu_model(&cfg, seed, seed + 100, 0.05);
}

static void orpo_config(Config *c, const char *data, const char *out) {
    tiny_train_config(c, data, out);
    snprintf(c->objective.type, sizeof c->objective.type, "orpo");
    c->data.seq_len = 12;
    c->data.batch_size = 4;
    c->orpo.beta = 0.5;
    c->optim.lr = 2e-3;
    c->optim.min_lr = 2e-4;
    c->optim.warmup_steps = 1;
    c->optim.weight_decay = 0;
    c->train.steps = 25;
    c->checkpoint.every = 0;
}

/* The gradient of one step (the first B pairs of an unshuffled file, A = 1)
 * against central differences of the validation loss of the same pairs (the
 * same file as data.val, eval.batches 1), both through orpo's Objective. */
Test(orpo, gradient_through_the_model_matches_finite_differences, .timeout = 120) {
    char dir[256], data[512];
    make_temp_dir(dir, sizeof dir, "orpofd");
    snprintf(data, sizeof data, "%s/pairs.h5", dir);
    write_pairs(data, 6, 5);
    Config c;
    orpo_config(&c, data, dir);
    snprintf(c.data.val, sizeof c.data.val, "%s", data);
    c.data.shuffle = 0;
    c.data.batch_size = 3;
    c.data.seq_len = 10;
    c.eval.batches = 1;
    cr_assert_eq(config_validate(&c), 0, "%s", err_msg());
    const Objective *o = objective_find("orpo");
    cr_assert_not_null(o, "%s", err_msg());
    cr_assert_str_eq(o->name, "orpo");
    cr_assert_eq(o->n_metrics, N_METRICS);
    for (int k = 0; k < N_METRICS; k++) cr_assert_str_eq(o->metrics[k].name, METRIC_NAMES[k]);
    Rng rng;
    rng_seed(&rng, 1);
    TrainEnv env = {&c, backend_cpu(), NULL, 3, 10, 1, 0, 1, &rng, 1, NULL};
    void *self = o->open(&env);
    cr_assert_not_null(self, "%s", err_msg());
    cr_assert_eq(o->items(self), 6);
    cr_assert(o->has_val(self));
    GPT *m = orpo_byte_model(52);
    env.model = m;
    cr_assert_eq(o->prepare(self, &env), 0, "%s", err_msg());

    double ms[N_METRICS] = {0}, mv[N_METRICS] = {0};
    gpt_zero_grad(m);
    double step_loss = o->step(self, &env, ms);
    double val_loss = o->eval(self, &env, mv);
    cr_assert(isfinite(step_loss) && step_loss > 0, "loss %g", step_loss);
    /* the same pairs, the same parameters: the same loss and metrics */
    cr_assert_eq(step_loss, val_loss, "step %.17g, eval %.17g", step_loss, val_loss);
    for (int k = 0; k < N_METRICS; k++) cr_assert_eq(ms[k], mv[k], "%s", METRIC_NAMES[k]);
    int64_t epoch, pos;
    o->position(self, &epoch, &pos);
    cr_assert_eq(epoch, 0);
    cr_assert_eq(pos, 3);
    /* nll_loss and logps/chosen recomputed here from the file's tokens: the
     * chosen rows of pairs 0..2 with every token after the first a target
     * (prompt and completion), the completion ones averaged per pair */
    {
        enum { B = 3, T = 10 };
        PrefDataset pd;
        cr_assert_eq(pref_dataset_open(&pd, data), 0, "%s", err_msg());
        int in[B * T], tg[B * T], first_completion[B];
        for (int p = 0; p < B; p++) {
            int row[2 * T], L = 0;
            for (int64_t k = pd.prompt.offsets[p]; k < pd.prompt.offsets[p + 1]; k++)
                row[L++] = (int)pd.prompt.tokens[k];
            first_completion[p] = L;
            for (int64_t k = pd.chosen.offsets[p]; k < pd.chosen.offsets[p + 1] && L < T + 1; k++)
                row[L++] = (int)pd.chosen.tokens[k];
            for (int j = 0; j < T; j++) {
                in[p * T + j] = j < L ? row[j] : pd.eos_id;
                tg[p * T + j] = j + 1 < L ? row[j + 1] : -1;
            }
        }
        float logp[B * T];
        gpt_forward(m, in, tg, B, T, logp);
        double nll = 0, logps_chosen = 0;
        int count = 0;
        for (int p = 0; p < B; p++) {
            double s = 0;
            int nc = 0;
            for (int j = 0; j < T; j++) {
                if (tg[p * T + j] < 0) continue;
                nll -= logp[p * T + j];
                count++;
                if (j + 1 >= first_completion[p]) s += logp[p * T + j], nc++;
            }
            logps_chosen += s / nc / B;
        }
        nll /= count;
        cr_assert(count > 3 * B, "the prompts add NLL tokens (%d)", count);
        cr_expect(fabs(ms[6] - nll) <= 1e-5 * nll, "nll_loss %.9g, recomputed %.9g", ms[6], nll);
        cr_expect(fabs(ms[4] - logps_chosen) <= 1e-5 * fabs(logps_chosen),
                  "logps/chosen %.9g, recomputed %.9g", ms[4], logps_chosen);
        pref_dataset_close(&pd);
    }

    size_t n = gpt_flat_size(m);
    float *w = malloc(n * sizeof(float)), *grad = malloc(n * sizeof(float));
    gpt_copy_grads_to_host(m, grad, n);
    gpt_copy_params_to_host(m, w, n);
    Rng r;
    rng_seed(&r, 60);
    double num = 0, den = 0;
    for (int q = 0; q < 40; q++) {
        size_t i = (size_t)rng_below(&r, n);
        float x = w[i], h = 1e-2f;
        double tmp[N_METRICS];
        w[i] = x + h;
        gpt_copy_params_to_device(m, w, n);
        double lp = o->eval(self, &env, tmp);
        w[i] = x - h;
        gpt_copy_params_to_device(m, w, n);
        double lm = o->eval(self, &env, tmp);
        w[i] = x;
        double fd = (lp - lm) / ((double)(x + h) - (double)(x - h));
        num += (fd - grad[i]) * (fd - grad[i]);
        den += fd * fd;
    }
    gpt_copy_params_to_device(m, w, n);
    /* fp32 forward: ~1e-7 relative noise in the loss over 2h = 2e-2 gives
     * ~1e-5 absolute; truncation O(h^2); a missing NLL token, a wrong sign or
     * factor is O(1) */
    cr_expect(sqrt(num / (den > 0 ? den : 1)) < 2e-2, "relative error %.3g",
              sqrt(num / (den > 0 ? den : 1)));
    cr_expect_gt(den, 0.0, "the probed gradient is not all zero");
    free(w);
    free(grad);
    o->close(self);
    gpt_free(m);
    rm_rf(dir);
}

/* ------------------------------------------------------------- training */

#define MAX_STEPS 64

Test(orpo, training_lowers_the_loss_and_resumes_bit_for_bit, .timeout = 180) {
    char dir[256], data[512], init[512], a[512], b[512];
    make_temp_dir(dir, sizeof dir, "orpo");
    snprintf(data, sizeof data, "%s/pairs.h5", dir);
    snprintf(init, sizeof init, "%s/sft", dir);
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    write_pairs(data, 40, 5);
    GPT *m = orpo_byte_model(41);
    cr_assert_eq(mkdir_p(init), 0);
    cr_assert_eq(model_save_hf(m, init), 0, "%s", err_msg());
    gpt_free(m);

    Config c;
    orpo_config(&c, data, a);
    snprintf(c.model.init, sizeof c.model.init, "%s", init); /* no reference model is loaded */
    c.data.val_fraction = 0.1;
    c.eval.every = 25;
    TrainOptions o = {0, 1};
    cr_assert_eq(train_run(&c, &o), 0, "train_run: %s", err_msg());
    double loss[MAX_STEPS], acc[MAX_STEPS], marg[MAX_STEPS], nll[MAX_STEPS], ratio[MAX_STEPS];
    cr_assert_eq(metric_by_step(a, "loss", "loss", loss, MAX_STEPS), 25);
    for (int k = 0; k < N_METRICS; k++) {
        double v[MAX_STEPS];
        cr_expect_eq(metric_by_step(a, "loss", METRIC_NAMES[k], v, MAX_STEPS), 25, "no %s",
                     METRIC_NAMES[k]);
        char eval_name[64];
        snprintf(eval_name, sizeof eval_name, "eval_%s", METRIC_NAMES[k]);
        cr_expect_eq(metric_by_step(a, "val_loss", eval_name, v, MAX_STEPS), 25, "no %s",
                     eval_name);
    }
    metric_by_step(a, "loss", "rewards/accuracies", acc, MAX_STEPS);
    metric_by_step(a, "loss", "rewards/margins", marg, MAX_STEPS);
    metric_by_step(a, "loss", "nll_loss", nll, MAX_STEPS);
    metric_by_step(a, "loss", "log_odds_ratio", ratio, MAX_STEPS);
    for (int s = 1; s <= 25; s++)
        cr_expect(fabs(loss[s] - (nll[s] - c.orpo.beta * ratio[s])) <= 1e-6 * fabs(loss[s]),
                  "step %d: loss %.9g is not nll_loss - beta * log_odds_ratio (%.9g)", s, loss[s],
                  nll[s] - c.orpo.beta * ratio[s]);
    double early = (loss[1] + loss[2] + loss[3]) / 3, late = (loss[23] + loss[24] + loss[25]) / 3;
    cr_expect_lt(late, early, "loss: first 3 steps %.4f, last 3 %.4f", early, late);
    double acc_late = (acc[21] + acc[22] + acc[23] + acc[24] + acc[25]) / 5;
    cr_expect_gt(acc_late, 0.8, "rewards/accuracies over the last 5 steps: %.3f", acc_late);
    cr_expect_gt(marg[25], marg[1]);

    /* stopped after step 10 and resumed: the same losses bit for bit */
    orpo_config(&c, data, b);
    snprintf(c.model.init, sizeof c.model.init, "%s", init);
    c.data.val_fraction = 0.1;
    c.eval.every = 25;
    train_request_stop_at(10);
    cr_assert_eq(train_run(&c, &o), 0, "train_run: %s", err_msg());
    train_request_stop_at(-1);
    TrainOptions resume = {1, 1};
    cr_assert_eq(train_run(&c, &resume), 0, "train_run --resume: %s", err_msg());
    double lb[MAX_STEPS];
    cr_assert_eq(metric_by_step(b, "loss", "loss", lb, MAX_STEPS), 25);
    for (int s = 1; s <= 25; s++)
        cr_expect(loss[s] == lb[s], "step %d: resumed %.17g, uninterrupted %.17g", s, lb[s],
                  loss[s]);

    /* orpo.beta must be > 0 */
    c.orpo.beta = 0;
    cr_expect_eq(train_run(&c, &o), -1);
    cr_expect(strstr(err_msg(), "orpo.beta"), "%s", err_msg());
    rm_rf(dir);
}
