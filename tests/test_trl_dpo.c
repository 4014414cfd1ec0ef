/* tests/test_trl_dpo.c — preference data and DPO as TRL 1.x's DPOTrainer
 * does them, on the pairs, BPE and GPT-2 models of tests/fixtures/trl_dpo
 * (made by tests/make_trl_dpo_fixtures.py with TRL itself):
 *   - `data build --schema pref` (boundary joint, the default) gives
 *     DPOTrainer's prompt_ids / chosen_ids / rejected_ids for every pair,
 *     including those whose prompt encodes differently alone ("Answer: " +
 *     "the sea"); boundary separate gives TRL 0.x's ids and the file says which;
 *   - the pairs whose prompt alone fills max_length are the ones DPOTrainer
 *     drops, both in the loader (seq_len + 1) and in a build with --max-len;
 *   - two DPO steps on one batch of the kept pairs log DPOTrainer's loss,
 *     rewards and log-probs, with optim.schedule_convention hf giving its
 *     learning rates;
 *   - lr_at with the hf convention is transformers' schedules (schedules.json).
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "data/build.h"
#include "data/h5data.h"
#include "data/pref_batch.h"
#include "train/config.h"
#include "train/optim.h"
#include "train/trainer.h"
#include "tests/testutil.h"

#define FIX "tests/fixtures/trl_dpo"

static json_t *load_json(const char *path) {
    json_error_t e;
    json_t *root = json_load_file(path, 0, &e);
    cr_assert_not_null(root, "%s: %s (run tests/make_trl_dpo_fixtures.py)", path, e.text);
    return root;
}

/* A JSON array of integers equals ids[0:n]. */
static void expect_ids(const json_t *want, const uint32_t *ids, int64_t n, const char *what,
                       size_t pair) {
    cr_assert_eq((int64_t)json_array_size(want), n, "pair %zu %s: %lld ids, TRL has %zu", pair,
                 what, (long long)n, json_array_size(want));
    for (int64_t i = 0; i < n; i++)
        cr_assert_eq((int64_t)json_integer_value(json_array_get(want, (size_t)i)), (int64_t)ids[i],
                     "pair %zu %s[%lld]: %u, TRL has %lld", pair, what, (long long)i, ids[i],
                     (long long)json_integer_value(json_array_get(want, (size_t)i)));
}

static const uint32_t *part_ids(const PrefPart *p, int64_t pair, int64_t *n) {
    *n = p->offsets[pair + 1] - p->offsets[pair];
    return p->tokens + p->offsets[pair];
}

static void build(const char *out, const char *boundary, int64_t max_len, BuildStats *st) {
    BuildOptions o = {.input = FIX "/pairs.jsonl", .output = out, .schema = SCHEMA_PREF,
                      .tokenizer = FIX "/tokenizer.json", .boundary = boundary,
                      .max_len = max_len, .quiet = 1};
    cr_assert_eq(data_build_stats(&o, st), 0, "data build: %s", err_msg());
}

Test(trl_dpo, joint_boundary_gives_dpotrainer_token_ids) {
    json_t *exp = load_json(FIX "/expected.json");
    const json_t *tokens = json_object_get(exp, "tokens");
    char dir[256], out[512];
    make_temp_dir(dir, sizeof dir, "trl-dpo");
    snprintf(out, sizeof out, "%s/pairs.h5", dir);
    BuildStats st;
    build(out, NULL, 0, &st);
    cr_assert_eq(st.prompt_split, (int64_t)json_array_size(json_object_get(exp, "prompt_not_prefix")),
                 "%lld pairs' prompts split early", (long long)st.prompt_split);
    PrefDataset pd;
    cr_assert_eq(pref_dataset_open(&pd, out), 0, "%s", err_msg());
    cr_assert_str_eq(pd.boundary, "joint");
    cr_assert_eq(pd.n_pairs, (int64_t)json_array_size(tokens));
    for (size_t i = 0; i < json_array_size(tokens); i++) {
        const json_t *t = json_array_get(tokens, i);
        int64_t n;
        const uint32_t *ids = part_ids(&pd.prompt, (int64_t)i, &n);
        expect_ids(json_object_get(t, "prompt_ids"), ids, n, "prompt", i);
        ids = part_ids(&pd.chosen, (int64_t)i, &n);
        expect_ids(json_object_get(t, "chosen_ids"), ids, n, "chosen", i);
        ids = part_ids(&pd.rejected, (int64_t)i, &n);
        expect_ids(json_object_get(t, "rejected_ids"), ids, n, "rejected", i);
    }
    pref_dataset_close(&pd);
    json_decref(exp);
    rm_rf(dir);
}

/* Separate encoding (TRL 0.x) differs exactly on the pairs whose prompt's
 * encoding is not a prefix; the file says which boundary it used, and a file
 * without the attribute (older builds) reads as separate. */
Test(trl_dpo, separate_boundary_differs_where_the_prompt_merges) {
    json_t *exp = load_json(FIX "/expected.json");
    const json_t *split = json_object_get(exp, "prompt_not_prefix");
    char dir[256], joint[512], sep[512];
    make_temp_dir(dir, sizeof dir, "trl-dpo");
    snprintf(joint, sizeof joint, "%s/joint.h5", dir);
    snprintf(sep, sizeof sep, "%s/separate.h5", dir);
    BuildStats st;
    build(joint, "joint", 0, &st);
    build(sep, "separate", 0, &st);
    cr_assert_eq(st.prompt_split, 0);
    PrefDataset a, b;
    cr_assert_eq(pref_dataset_open(&a, joint), 0, "%s", err_msg());
    cr_assert_eq(pref_dataset_open(&b, sep), 0, "%s", err_msg());
    cr_assert_str_eq(b.boundary, "separate");
    for (int64_t i = 0; i < a.n_pairs; i++) {
        int in_split = 0;
        for (size_t k = 0; k < json_array_size(split); k++)
            in_split |= json_integer_value(json_array_get(split, k)) == i;
        int64_t na, nb;
        const uint32_t *pa = part_ids(&a.prompt, i, &na), *pb = part_ids(&b.prompt, i, &nb);
        int same = na == nb && !memcmp(pa, pb, (size_t)na * sizeof *pa);
        cr_expect_eq(same, !in_split, "pair %lld: prompts %s", (long long)i,
                     same ? "equal though TRL splits it early" : "differ");
    }
    pref_dataset_close(&a);
    pref_dataset_close(&b);

    /* no attribute: written as before the option existed */
    char old[512];
    snprintf(old, sizeof old, "%s/old.h5", dir);
    PrefWriter *w = pref_writer_open(old, 400, 0, 0, "test");
    cr_assert_not_null(w, "%s", err_msg());
    uint32_t p[2] = {5, 6}, c[2] = {7, 0}, r[1] = {0};
    cr_assert_eq(pref_writer_add(w, p, 2, c, 2, r, 1), 0, "%s", err_msg());
    cr_assert_eq(pref_writer_close(w), 0, "%s", err_msg());
    cr_assert_eq(pref_dataset_open(&a, old), 0, "%s", err_msg());
    cr_assert_str_eq(a.boundary, "separate");
    pref_dataset_close(&a);
    w = pref_writer_open(old, 400, 0, 0, "test");
    cr_assert_neq(pref_writer_set_boundary(w, "glued"), 0);
    assert_contains(err_msg(), "glued");
    pref_writer_abort(w);
    json_decref(exp);
    rm_rf(dir);
}

/* The pairs DPOTrainer drops at max_length (prompt_ids alone >= max_length)
 * are the ones the loader skips at seq_len = max_length - 1, and the ones a
 * build with --max-len drops; the build's kept pairs are TRL's ids cut as its
 * collator cuts them (keep_start). */
Test(trl_dpo, prompts_that_fill_max_length_are_dropped) {
    json_t *exp = load_json(FIX "/expected.json");
    const json_t *kept = json_object_get(exp, "kept"), *tokens = json_object_get(exp, "tokens");
    int L = (int)json_integer_value(json_object_get(exp, "max_length"));
    size_t n_kept = json_array_size(kept), n_all = json_array_size(tokens);
    cr_assert(n_kept < n_all, "the fixture should drop a pair");
    char dir[256], full[512], cut[512];
    make_temp_dir(dir, sizeof dir, "trl-dpo");
    snprintf(full, sizeof full, "%s/full.h5", dir);
    snprintf(cut, sizeof cut, "%s/cut.h5", dir);
    BuildStats st;
    build(full, NULL, 0, &st);
    PrefDataset pd;
    cr_assert_eq(pref_dataset_open(&pd, full), 0, "%s", err_msg());
    PrefLoader pl;
    cr_assert_eq(pref_loader_init(&pl, &pd, L - 1, 0, 0, 1, 0, 0, pd.n_pairs), 0, "%s",
                 err_msg());
    cr_assert_eq(pl.count, (int64_t)n_kept);
    cr_assert_eq(pl.n_dropped, (int64_t)(n_all - n_kept));
    cr_assert_eq(pl.range, (int64_t)n_all);
    for (size_t k = 0; k < n_kept; k++)
        cr_assert_eq(pl.pairs[k], json_integer_value(json_array_get(kept, k)));
    cr_assert(pl.n_truncated >= 1, "the long completion must be truncated");
    pref_loader_free(&pl);
    /* a range with every pair dropped is refused, naming the cause */
    cr_assert_neq(pref_loader_init(&pl, &pd, 4, 0, 0, 1, 0, 6, 3), 0);
    assert_contains(err_msg(), "dropped");
    pref_dataset_close(&pd);

    build(cut, NULL, L, &st);
    cr_assert_eq(st.dropped, (int64_t)(n_all - n_kept));
    cr_assert_eq(st.docs, (int64_t)n_kept);
    cr_assert(st.truncated >= 1);
    cr_assert_eq(pref_dataset_open(&pd, cut), 0, "%s", err_msg());
    for (size_t k = 0; k < n_kept; k++) {
        size_t i = (size_t)json_integer_value(json_array_get(kept, k));
        const json_t *t = json_array_get(tokens, i);
        int64_t n_p, n;
        const uint32_t *ids = part_ids(&pd.prompt, (int64_t)k, &n_p);
        expect_ids(json_object_get(t, "prompt_ids"), ids, n_p, "prompt", i);
        static const char *const names[2] = {"chosen_ids", "rejected_ids"};
        const PrefPart *parts[2] = {&pd.chosen, &pd.rejected};
        for (int r = 0; r < 2; r++) {
            const json_t *want = json_object_get(t, names[r]);
            ids = part_ids(parts[r], (int64_t)k, &n);
            int64_t room = L - n_p, full_n = (int64_t)json_array_size(want);
            cr_assert_eq(n, full_n < room ? full_n : room, "pair %zu %s: %lld ids", i, names[r],
                         (long long)n);
            for (int64_t j = 0; j < n; j++)
                cr_assert_eq((int64_t)ids[j],
                             (int64_t)json_integer_value(json_array_get(want, (size_t)j)));
        }
    }
    pref_dataset_close(&pd);
    json_decref(exp);
    rm_rf(dir);
}

/* metrics.jsonl's value of key at each step (in order); the count. */
static int metric(const char *run, const char *key, double *out, int max) {
    char path[700];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run);
    FILE *f = fopen(path, "r");
    cr_assert(f, "no %s", path);
    json_error_t e;
    json_t *j;
    int n = 0;
    while ((j = json_loadf(f, JSON_DISABLE_EOF_CHECK, &e))) {
        json_t *v = json_object_get(j, key);
        if (json_is_number(v) && json_object_get(j, "loss") && n < max)
            out[n++] = json_number_value(v);
        json_decref(j);
    }
    fclose(f);
    return n;
}

/* Two DPO steps, one batch of every kept pair, the reference model given:
 * DPOTrainer's logged loss and metrics at both steps (the second after an
 * AdamW step with clipping and HF's linear schedule). */
Test(trl_dpo, two_steps_log_dpotrainer_metrics, .timeout = 60) {
    json_t *exp = load_json(FIX "/expected.json");
    const json_t *tr = json_object_get(exp, "train"), *steps = json_object_get(exp, "steps");
    char dir[256], data[512], run[512];
    make_temp_dir(dir, sizeof dir, "trl-dpo");
    snprintf(data, sizeof data, "%s/pairs.h5", dir);
    snprintf(run, sizeof run, "%s/run", dir);
    BuildStats st;
    build(data, NULL, 0, &st);

    Config c;
    config_defaults(&c);
    snprintf(c.model.init, sizeof c.model.init, FIX "/policy");
    snprintf(c.data.train, sizeof c.data.train, "%s", data);
    snprintf(c.train.out_dir, sizeof c.train.out_dir, "%s", run);
    snprintf(c.objective.type, sizeof c.objective.type, "dpo");
    snprintf(c.dpo.reference, sizeof c.dpo.reference, FIX "/reference");
    snprintf(c.dpo.loss_type, sizeof c.dpo.loss_type, "sigmoid");
    snprintf(c.optim.schedule, sizeof c.optim.schedule, "%s",
             json_string_value(json_object_get(tr, "schedule")));
    snprintf(c.optim.schedule_convention, sizeof c.optim.schedule_convention, "hf");
    c.dpo.beta = json_number_value(json_object_get(tr, "beta"));
    c.data.seq_len = (int)json_integer_value(json_object_get(tr, "seq_len"));
    c.data.batch_size = (int)json_integer_value(json_object_get(tr, "batch_size"));
    c.data.val_fraction = 0;
    c.data.shuffle = 0;
    c.optim.lr = json_number_value(json_object_get(tr, "lr"));
    c.optim.min_lr = 0;
    c.optim.warmup_steps = (int)json_integer_value(json_object_get(tr, "warmup_steps"));
    c.optim.weight_decay = json_number_value(json_object_get(tr, "weight_decay"));
    c.optim.grad_clip = json_number_value(json_object_get(tr, "grad_clip"));
    c.optim.beta1 = 0.9;
    c.optim.beta2 = 0.999;
    c.optim.eps = 1e-8;
    c.train.steps = (int)json_integer_value(json_object_get(tr, "steps"));
    c.train.threads = 1;
    c.train.log_every = 1;
    c.eval.every = 0;
    c.checkpoint.every = 0;
    c.checkpoint.keep = 0;
    train_ok(&c, 0);

    static const char *const keys[] = {"loss",           "rewards/chosen", "rewards/rejected",
                                       "rewards/margins", "logps/chosen",   "logps/rejected",
                                       "rewards/accuracies", "lr"};
    double worst = 0;
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
        double got[8];
        int n = metric(run, keys[k], got, 8);
        cr_assert_eq(n, (int)json_array_size(steps), "%s: %d steps logged", keys[k], n);
        for (int s = 0; s < n; s++) {
            const json_t *h = json_array_get(steps, (size_t)s);
            double want = json_number_value(
                json_object_get(h, strcmp(keys[k], "lr") ? keys[k] : "learning_rate"));
            /* TRL logs float32 values; the sums hold tens of float32 log-probs */
            double tol = 2e-5 * fmax(1.0, fabs(want));
            worst = fmax(worst, fabs(got[s] - want) / fmax(1.0, fabs(want)));
            cr_expect(fabs(got[s] - want) <= tol, "step %d %s: retort %.9g, TRL %.9g", s + 1,
                      keys[k], got[s], want);
        }
    }
    fprintf(stderr, "dpo vs TRL DPOTrainer, 2 steps: largest difference %.2e (relative to "
                    "max(1, |TRL|))\n", worst);
    json_decref(exp);
    rm_rf(dir);
}

/* optim.schedule_convention hf is transformers' get_*_schedule_with_warmup,
 * step by step; retort's own convention is the same curve one step ahead. */
Test(trl_dpo, hf_schedule_convention_is_transformers) {
    json_t *root = load_json(FIX "/schedules.json");
    const json_t *cases = json_object_get(root, "schedules");
    cr_assert(json_array_size(cases) >= 4);
    for (size_t i = 0; i < json_array_size(cases); i++) {
        const json_t *c = json_array_get(cases, i);
        LrSchedule s = {.lr = json_number_value(json_object_get(c, "lr")),
                        .min_lr = json_number_value(json_object_get(c, "min_lr")),
                        .warmup_steps = (int)json_integer_value(json_object_get(c, "warmup_steps")),
                        .total_steps = (int)json_integer_value(json_object_get(c, "total_steps")),
                        .hf_convention = 1};
        const char *name = json_string_value(json_object_get(c, "schedule"));
        cr_assert_eq(schedule_from_name(name, &s.schedule), 0, "%s", err_msg());
        const json_t *lrs = json_object_get(c, "lrs");
        for (size_t k = 0; k < json_array_size(lrs); k++) {
            double want = json_number_value(json_array_get(lrs, k));
            double got = lr_at(&s, (int)k + 1);
            cr_expect(fabs(got - want) <= 1e-12 * s.lr, "%s warmup %d total %d step %zu: %.17g, "
                      "transformers %.17g", name, s.warmup_steps, s.total_steps, k + 1, got, want);
            LrSchedule ahead = s;
            ahead.hf_convention = 0;
            if (k >= 1)
                cr_expect(fabs(lr_at(&ahead, (int)k) - want) <= 1e-12 * s.lr,
                          "retort's step %zu is transformers' step %zu", k, k + 1);
        }
    }
    json_decref(root);
}
