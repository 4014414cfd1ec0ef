/* tests/test_warmup.c — optim.warmup_ratio against transformers
 * (tests/fixtures/warmup_ratio.json, made by tests/make_warmup_fixtures.py):
 *   - the warmup step count is TrainingArguments.get_warmup_steps's for every
 *     case, floating-point ceilings included, and the rates of a schedule
 *     built from it are Trainer's scheduler's (optim.schedule_convention hf);
 *   - through the command line, an epochs-based `retort train` and a stage of
 *     `retort stages` log transformers' rates step by step in metrics.jsonl;
 *   - optim.warmup_shape log is DeepSpeed's WarmupLR as a Trainer run under
 *     a DeepSpeed scheduler block gets it (the fixture's "deepspeed" cases,
 *     from DeepSpeed's own lr_schedules.py), in lr_at and through retort train;
 *   - setting both warmup keys, or a ratio of 1, is refused naming the keys. */
#include <criterion/criterion.h>

#include <jansson.h>
#include <math.h>

#include "data/h5data.h"
#include "tests/testutil_cli.h"
#include "train/config.h"
#include "train/optim.h"

#define FIXTURE "tests/fixtures/warmup_ratio.json"

static json_t *load_cases(void) {
    json_error_t e;
    json_t *root = json_load_file(FIXTURE, 0, &e);
    cr_assert(root, "%s: %s (make it with tests/make_warmup_fixtures.py)", FIXTURE, e.text);
    json_t *cases = json_incref(json_object_get(root, "cases"));
    json_decref(root);
    cr_assert(json_array_size(cases) >= 10);
    return cases;
}

/* The fixture's case for (ratio, total steps, schedule). */
static const json_t *find_case(const json_t *cases, double ratio, int total, const char *kind) {
    size_t i;
    const json_t *c;
    json_array_foreach(cases, i, c) {
        if (json_real_value(json_object_get(c, "ratio")) == ratio &&
            json_integer_value(json_object_get(c, "total_steps")) == total &&
            !strcmp(json_string_value(json_object_get(c, "schedule")), kind))
            return c;
    }
    cr_assert_fail("no fixture case (%g, %d, %s)", ratio, total, kind);
    return NULL;
}

/* transformers' "constant_with_warmup" is retort's "constant" (its plain
 * "constant" has no warmup at all). */
static const char *retort_schedule(const char *hf_name) {
    return !strcmp(hf_name, "constant_with_warmup") ? "constant" : hf_name;
}

Test(warmup, ratio_gives_transformers_warmup_steps_and_rates) {
    json_t *cases = load_cases();
    size_t i;
    const json_t *c;
    int inexact = 0;
    json_array_foreach(cases, i, c) {
        double ratio = json_real_value(json_object_get(c, "ratio"));
        int total = (int)json_integer_value(json_object_get(c, "total_steps"));
        int want = (int)json_integer_value(json_object_get(c, "warmup_steps"));
        int got = warmup_steps_for_ratio(ratio, total);
        cr_expect_eq(got, want, "ratio %g of %d steps: %d warmup steps, transformers %d", ratio,
                     total, got, want);
        /* a case where the decimal product is whole but the binary one is not */
        inexact += want != (int)lround(ratio * total) && fabs(ratio * total - lround(ratio * total)) < 1e-9;
        LrSchedule s = {.lr = json_number_value(json_object_get(c, "lr")), .min_lr = 0,
                        .warmup_steps = got, .total_steps = total, .hf_convention = 1};
        cr_assert_eq(schedule_from_name(
                         retort_schedule(json_string_value(json_object_get(c, "schedule"))),
                         &s.schedule), 0, "%s", err_msg());
        const json_t *lrs = json_object_get(c, "lrs");
        cr_assert_eq(json_array_size(lrs), (size_t)total);
        for (int k = 0; k < total; k++) {
            double w = json_number_value(json_array_get(lrs, (size_t)k));
            cr_expect(fabs(lr_at(&s, k + 1) - w) <= 1e-12 * s.lr, "ratio %g total %d step %d: "
                      "%.17g, transformers %.17g", ratio, total, k + 1, lr_at(&s, k + 1), w);
        }
    }
    cr_expect_geq(inexact, 1, "the fixture should hold a case like 100 x 0.07 = 7.000000000000001");
    json_decref(cases);
}

static json_t *load_deepspeed_cases(void) {
    json_error_t e;
    json_t *root = json_load_file(FIXTURE, 0, &e);
    cr_assert(root, "%s: %s", FIXTURE, e.text);
    json_t *cases = json_incref(json_object_get(json_object_get(root, "deepspeed"), "cases"));
    json_decref(root);
    cr_assert(json_array_size(cases) >= 4, "the fixture has no deepspeed cases (make it with "
              "DeepSpeed's lr_schedules.py: tests/make_warmup_fixtures.py)");
    return cases;
}

Test(warmup, log_shape_is_deepspeeds_warmup_lr) {
    json_t *cases = load_deepspeed_cases();
    size_t i;
    const json_t *c;
    json_array_foreach(cases, i, c) {
        double ratio = json_real_value(json_object_get(c, "ratio"));
        int total = (int)json_integer_value(json_object_get(c, "total_steps"));
        /* transformers hands DeepSpeed max(1, its warmup steps) */
        int warmup = warmup_steps_for_ratio(ratio, total);
        cr_expect_eq(warmup < 1 ? 1 : warmup,
                     json_integer_value(json_object_get(c, "warmup_steps")));
        LrSchedule s = {.lr = json_number_value(json_object_get(c, "lr")), .min_lr = 0,
                        .warmup_steps = warmup, .total_steps = total,
                        .schedule = SCHED_CONSTANT, .warmup_shape = WARMUP_LOG};
        const json_t *lrs = json_object_get(c, "lrs");
        for (int k = 0; k < total; k++) {
            double w = json_number_value(json_array_get(lrs, (size_t)k));
            for (int hf = 0; hf <= 1; hf++) { /* the convention does not move it */
                s.hf_convention = hf;
                cr_expect(fabs(lr_at(&s, k + 1) - w) <= 1e-15 * s.lr, "ratio %g total %d "
                          "step %d: %.17g, DeepSpeed %.17g", ratio, total, k + 1,
                          lr_at(&s, k + 1), w);
            }
        }
    }
    json_decref(cases);
}

/* 30 sft examples: 20 of role planner, 10 of role caller. */
static void make_roles(const char *path) {
    DatasetWriter *w = dataset_writer_open(path, SCHEMA_SFT, 257, 256, 256, "bytes");
    cr_assert(w, "%s", err_msg());
    for (int i = 0; i < 30; i++) {
        int role = i % 3 == 1;
        uint32_t t[8] = {'q', (uint32_t)('a' + i % 7), '=', 'x', 'y', role ? 'c' : 'p', 256};
        uint8_t m[8] = {0, 0, 0, 1, 1, 1, 1};
        cr_assert_eq(dataset_writer_add(w, t, m, 7, role), 0, "%s", err_msg());
    }
    const char *names[2] = {"planner", "caller"};
    cr_assert_eq(dataset_writer_set_roles(w, names, 2), 0);
    cr_assert_eq(dataset_writer_close(w), 0, "%s", err_msg());
}

static void write_base(const char *dir) {
    char path[600], text[2048];
    snprintf(path, sizeof path, "%s/base.yaml", dir);
    snprintf(text, sizeof text,
             "model: {n_layer: 1, n_head: 2, n_embd: 32, vocab_size: 257, n_positions: 16}\n"
             "data: {train: %s/roles.h5, seq_len: 8, batch_size: 2}\n"
             "optim: {lr: 0.01, min_lr: 0, schedule: cosine, schedule_convention: hf}\n"
             "train: {steps: 4, threads: 1, out_dir: unused, tensorboard: false}\n"
             "checkpoint: {every: 0, keep: 1}\n",
             dir);
    write_text(path, text);
}

/* metrics.jsonl's lr at steps 1..total of run against the fixture's case. */
static void expect_rates(const char *run, const json_t *c) {
    cr_assert(c, "no such fixture case");
    int total = (int)json_integer_value(json_object_get(c, "total_steps"));
    double lr[64] = {0};
    cr_assert_lt(total, 64);
    cr_assert_eq(metric_by_step(run, "loss", "lr", lr, 64), total, "%s: not %d steps", run, total);
    const json_t *lrs = json_object_get(c, "lrs");
    for (int k = 1; k <= total; k++) {
        double w = json_number_value(json_array_get(lrs, (size_t)k - 1));
        /* metrics.jsonl writes lr with 7 significant digits */
        cr_expect(fabs(lr[k] - w) <= 1e-6 * 0.01, "%s step %d: lr %.7g, transformers %.7g", run, k,
                  lr[k], w);
    }
}

Test(warmup, ratio_through_train_and_stages, .timeout = 180) {
    json_t *cases = load_cases();
    char dir[256], path[600], run[600];
    make_temp_dir(dir, sizeof dir, "warmup");
    snprintf(path, sizeof path, "%s/roles.h5", dir);
    make_roles(path);
    write_base(dir);

    /* 1 epoch of 30 items at batch 2: 15 steps, ceil(15 x 0.2) = 3 of warmup */
    snprintf(run, sizeof run, "%s/train", dir);
    RUN(dir, "train -c %s/base.yaml --set train.epochs=1 --set optim.warmup_ratio=0.2 "
             "--set train.out_dir=%s", dir, run);
    expect_rates(run, find_case(cases, 0.2, 15, "cosine"));
    char log[600];
    snprintf(log, sizeof log, "%s/log", dir);
    char *text = read_file(log, NULL);
    cr_assert(text);
    assert_contains(text, "optim.warmup_ratio 0.2 of 15 steps: 3 warmup steps");
    free(text);

    /* a stage: the caller's 10 items, 2 epochs at batch 2 = 10 steps, ratio 0.4 */
    snprintf(path, sizeof path, "%s/plan.yaml", dir);
    char plan[2048];
    snprintf(plan, sizeof plan,
             "base: base.yaml\nout_dir: %s/plan\nstages:\n"
             "  - name: global\n    set: {train.steps: 2}\n"
             "  - name: caller\n    init_from: global\n"
             "    set: {data.role: caller, train.epochs: 2, optim.warmup_ratio: 0.4}\n",
             dir);
    write_text(path, plan);
    RUN(dir, "stages -c %s --quiet", path);
    snprintf(run, sizeof run, "%s/plan/caller", dir);
    expect_rates(run, find_case(cases, 0.4, 10, "cosine"));

    /* DeepSpeed's log warmup, constant after it: the caller's 10 items for 4
     * epochs = 20 steps, ceil(20 x 0.4) = 8 warmup steps */
    json_t *ds = load_deepspeed_cases();
    const json_t *c20 = NULL;
    size_t i;
    const json_t *c;
    json_array_foreach(ds, i, c) if (json_integer_value(json_object_get(c, "total_steps")) == 20 &&
                                     json_real_value(json_object_get(c, "ratio")) == 0.4) c20 = c;
    snprintf(run, sizeof run, "%s/logwarmup", dir);
    RUN(dir, "train -c %s/base.yaml --set data.role=caller --set train.epochs=4 "
             "--set optim.warmup_ratio=0.4 --set optim.warmup_shape=log "
             "--set optim.schedule=constant --set train.out_dir=%s", dir, run);
    expect_rates(run, c20);
    json_decref(ds);
    json_decref(cases);
    rm_rf(dir);
}

Test(warmup, both_keys_or_a_whole_ratio_are_refused) {
    Config c;
    config_defaults(&c);
    snprintf(c.data.train, sizeof c.data.train, "x.h5");
    c.data.seq_len = 64;
    c.optim.warmup_steps = 10;
    c.optim.warmup_ratio = 0.1;
    cr_assert_eq(config_validate(&c), -1);
    assert_contains(err_msg(), "optim.warmup_steps (10) and optim.warmup_ratio (0.1) are both set");
    c.optim.warmup_steps = 0;
    cr_assert_eq(config_validate(&c), 0, "%s", err_msg());
    cr_assert_eq(config_set(&c, "optim.warmup_ratio=1"), -1);
    assert_contains(err_msg(), "optim.warmup_ratio");

    char dir[256];
    make_temp_dir(dir, sizeof dir, "warmup-bad");
    write_base(dir);
    cr_expect_neq(retort(dir, "train -c /dev/null --set data.train=x.h5 --set optim.warmup_steps=5 "
                              "--set optim.warmup_ratio=0.2 --print-config"), 0);
    char log[600];
    snprintf(log, sizeof log, "%s/log", dir);
    char *text = read_file(log, NULL);
    cr_assert(text);
    assert_contains(text, "set one of them and the other to 0");
    free(text);
    rm_rf(dir);
}
