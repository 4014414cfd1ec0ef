/* tests/test_gen_eval.c — generation-based evaluation during training
 * (eval.generate_every) and the best checkpoint (eval.best_metric), through
 * the command line, on the "abc=" -> "cba" task:
 *   - every generate_every steps (and at the last) metrics.jsonl gets a line
 *     of gen/<metric>s, equal to what `retort eval` reports for that step's
 *     checkpoint with the same options; training is unchanged by it (the same
 *     losses as a run without it);
 *   - RUN/best is the step with the best gen/chrf so far (updated only on
 *     improvement), loadable (`retort eval` on it gives the logged value), and
 *     survives checkpoint pruning;
 *   - a run resumed from an earlier checkpoint, and one interrupted by a
 *     signal and resumed, keep the same best as an uninterrupted run
 *     (gen/ppl, lower is better);
 *   - bad keys, metric names and settings are refused before training;
 *   - retort stages evaluates each stage with its own settings.
 * scripts/test_dist_train.sh runs it on 2 ranks. */
#include <criterion/criterion.h>

#include <jansson.h>
#include <math.h>

#include "model/checkpoint.h"
#include "tests/testutil_cli.h"

static void make_task(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/train.jsonl", dir);
    FILE *f = fopen(path, "w");
    snprintf(path, sizeof path, "%s/val.jsonl", dir);
    FILE *v = fopen(path, "w");
    cr_assert(f && v);
    Rng r;
    rng_seed(&r, 5);
    for (int i = 0; i < 240; i++) {
        char s[8], rev[8];
        reversal_word(&r, s, rev);
        if (i < 8) fprintf(v, "{\"prompt\": \"%s=\", \"reference\": \"%s\"}\n", s, rev);
        else fprintf(f, "{\"prompt\": \"%s=\", \"completion\": \"%s\"}\n", s, rev);
    }
    fclose(f);
    fclose(v);
    RUN(dir, "data build --schema sft --input %s/train.jsonl --out %s/train.h5 -q", dir, dir);
}

/* The tiny model and the evaluation both runs share; printf args: dir, dir. */
#define SMALL                                                                                \
    "train -c configs/tiny.yaml --set model.n_layer=1 --set model.n_head=2 "                \
    "--set model.n_embd=32 --set model.n_positions=32 --set data.seq_len=16 "               \
    "--set data.batch_size=8 --set data.val_fraction=0 --set optim.lr=1e-2 "                \
    "--set optim.warmup_steps=2 --set train.log_every=1000 --set train.threads=1 "          \
    "--set train.tensorboard=false --set data.train=%s/train.h5 "                            \
    "--set eval.generate_input=%s/val.jsonl --set eval.generate_max_new_tokens=6 "          \
    "--set 'eval.generate_stop=\n' "
/* the same decoding for retort eval */
#define EVAL_OPTS "-n 6 --stop '\n' -q"

static json_t *load(const char *path) {
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    cr_assert(j, "%s: %s", path, e.text);
    return j;
}

/* gen/<name> of metrics.jsonl at every step (NaN where none). */
static int gen_by_step(const char *run, const char *name, double *v, int max) {
    for (int i = 0; i < max; i++) v[i] = NAN;
    char key[64];
    snprintf(key, sizeof key, "gen/%s", name);
    return metric_by_step(run, key, key, v, max);
}

Test(gen_eval, metrics_lines_match_retort_eval_and_best_is_kept, .timeout = 300) {
    char dir[256], run[512], plain[512];
    make_temp_dir(dir, sizeof dir, "geneval");
    make_task(dir);
    snprintf(run, sizeof run, "%s/run", dir);
    snprintf(plain, sizeof plain, "%s/plain", dir);
    /* keep=2 prunes step 10, which may be the best */
    RUN(dir, SMALL "--set train.steps=30 --set eval.generate_every=10 "
                   "--set eval.best_metric=gen/chrf --set checkpoint.every=10 "
                   "--set checkpoint.keep=2 --set train.out_dir=%s", dir, dir, run);
    RUN(dir, SMALL "--set train.steps=30 --set checkpoint.every=10 --set checkpoint.keep=0 "
                   "--set train.out_dir=%s", dir, dir, plain);

    /* training is the same with and without it */
    double a[64] = {0}, b[64] = {0};
    cr_assert_eq(metric_by_step(run, "loss", "loss", a, 64), 30);
    cr_assert_eq(metric_by_step(plain, "loss", "loss", b, 64), 30);
    for (int s = 1; s <= 30; s++) cr_expect_eq(a[s], b[s], "step %d: %.17g vs %.17g", s, a[s], b[s]);

    /* gen lines at 10, 20, 30 only; no accuracy without an answer spec */
    static const char *const names[] = {"bleu", "chrf", "exact_match", "rouge_l", "token_f1", "ppl"};
    double g[6][64];
    for (int k = 0; k < 6; k++) {
        cr_assert_eq(gen_by_step(run, names[k], g[k], 64), 30, "%s", names[k]);
        for (int s = 1; s <= 30; s++)
            cr_expect_eq(isnan(g[k][s]), s % 10 != 0, "gen/%s at step %d", names[k], s);
    }
    double acc[64];
    cr_expect_eq(gen_by_step(run, "accuracy", acc, 64), 0, "no gen/accuracy without an answer");

    /* each equals retort eval of that step's checkpoint (the plain run's: the
     * same weights) */
    for (int s = 10; s <= 30; s += 10) {
        char model[700], out[700];
        ckpt_dir_name(model, sizeof model, plain, s);
        snprintf(out, sizeof out, "%s/eval%d.json", dir, s);
        RUN(dir, "eval --model %s --input %s/val.jsonl " EVAL_OPTS " --metrics %s", model, dir, out);
        json_t *m = load(out);
        for (int k = 0; k < 6; k++) {
            double want = json_number_value(json_object_get(m, names[k]));
            cr_expect(fabs(g[k][s] - want) <= 1e-8 * fmax(1, fabs(want)),
                      "step %d gen/%s %.17g, retort eval %.17g", s, names[k], g[k][s], want);
        }
        json_decref(m);
    }

    /* best: the first step with the highest chrf */
    int best_step = 10;
    for (int s = 20; s <= 30; s += 10)
        if (g[1][s] > g[1][best_step]) best_step = s;
    char path[700];
    snprintf(path, sizeof path, "%s/best/best.json", run);
    json_t *best = load(path);
    cr_expect_str_eq(json_string_value(json_object_get(best, "metric")), "gen/chrf");
    cr_expect_str_eq(json_string_value(json_object_get(best, "mode")), "max");
    cr_expect_eq(json_integer_value(json_object_get(best, "step")), best_step);
    cr_expect(fabs(json_number_value(json_object_get(best, "value")) - g[1][best_step]) <= 1e-7,
              "best value %.17g, logged %.17g", json_number_value(json_object_get(best, "value")),
              g[1][best_step]);
    json_decref(best);
    int64_t steps[8];
    cr_expect_eq(ckpt_list(run, steps, 8), 2, "pruning kept 2 step checkpoints and best/");
    snprintf(path, sizeof path, "%s/best/DONE", run);
    cr_expect(path_exists(path));
    snprintf(path, sizeof path, "%s/best.tmp", run);
    cr_expect(!path_exists(path), "no temporary best left behind");
    /* best/ is a loadable model: it scores what was logged at its step */
    char out[700];
    snprintf(out, sizeof out, "%s/evalbest.json", dir);
    RUN(dir, "eval --model %s/best --input %s/val.jsonl " EVAL_OPTS " --metrics %s", run, dir, out);
    json_t *m = load(out);
    cr_expect(fabs(json_number_value(json_object_get(m, "ppl")) - g[5][best_step]) <=
                  1e-8 * g[5][best_step], "best/ is the model of step %d", best_step);
    json_decref(m);
    rm_rf(dir);
}

/* best.json's (step, value) of run. */
static void best_of(const char *run, int *step, double *value) {
    char path[700];
    snprintf(path, sizeof path, "%s/best/best.json", run);
    json_t *b = load(path);
    *step = (int)json_integer_value(json_object_get(b, "step"));
    *value = json_number_value(json_object_get(b, "value"));
    cr_expect_str_eq(json_string_value(json_object_get(b, "mode")), "min", "gen/ppl: lower wins");
    json_decref(b);
}

Test(gen_eval, resume_keeps_the_best, .timeout = 300) {
    char dir[256], whole[512], cut[512], sig[512];
    make_temp_dir(dir, sizeof dir, "genevalres");
    make_task(dir);
    snprintf(whole, sizeof whole, "%s/whole", dir);
    snprintf(cut, sizeof cut, "%s/cut", dir);
    snprintf(sig, sizeof sig, "%s/sig", dir);
#define BEST_RUN SMALL "--set train.steps=24 --set eval.generate_every=4 " \
                 "--set eval.best_metric=gen/ppl --set checkpoint.every=8 --set checkpoint.keep=0 "
    RUN(dir, BEST_RUN "--set train.out_dir=%s", dir, dir, whole);
    int ws;
    double wv;
    best_of(whole, &ws, &wv);
    cr_assert_gt(ws, 8, "the test needs a best past the first checkpoint (step %d)", ws);
    /* each checkpoint's trainer.json records the best so far */
    char path[700];
    snprintf(path, sizeof path, "%s/step-00000016/trainer.json", whole);
    json_t *tj = load(path);
    const json_t *rec = json_object_get(tj, "best");
    cr_assert(json_is_object(rec), "trainer.json has no best");
    cr_expect_str_eq(json_string_value(json_object_get(rec, "metric")), "gen/ppl");
    cr_expect_leq(json_integer_value(json_object_get(rec, "step")), 16);
    json_decref(tj);

    /* the same run, resumed from step 8 after later checkpoints are lost:
     * best/ (newer than 8) goes, and the same best comes back */
    RUN(dir, BEST_RUN "--set train.out_dir=%s", dir, dir, cut);
    char step_dir[700];
    for (int s = 16; s <= 24; s += 8) {
        ckpt_dir_name(step_dir, sizeof step_dir, cut, s);
        cr_assert_eq(rm_rf(step_dir), 0);
    }
    RUN(dir, BEST_RUN "--set train.out_dir=%s --resume", dir, dir, cut);
    int cs;
    double cv;
    best_of(cut, &cs, &cv);
    cr_expect_eq(cs, ws);
    cr_expect_eq(cv, wv, "%.17g vs %.17g", cv, wv);
    char *log = read_file((snprintf(path, sizeof path, "%s/log", dir), path), NULL);
    cr_assert(log);
    assert_contains(log, "it is newer than step 8, where the run continues");
    free(log);

    /* stopped by a signal after the best step, then resumed: the best is kept
     * (a worse value after the resume does not replace it) */
    char env[64];
    snprintf(env, sizeof env, "%d", ws);
    setenv("RETORT_STOP_AT_STEP", env, 1);
    RUN(dir, BEST_RUN "--set train.out_dir=%s", dir, dir, sig);
    unsetenv("RETORT_STOP_AT_STEP");
    int ss;
    double sv;
    best_of(sig, &ss, &sv);
    cr_expect_eq(ss, ws);
    RUN(dir, BEST_RUN "--set train.out_dir=%s --resume", dir, dir, sig);
    best_of(sig, &ss, &sv);
    cr_expect_eq(ss, ws);
    cr_expect_eq(sv, wv, "%.17g vs %.17g", sv, wv);
    double p[64];
    gen_by_step(sig, "ppl", p, 64);
    for (int s = 4; s <= 24; s += 4) cr_expect(!isnan(p[s]), "gen/ppl logged at step %d", s);
    rm_rf(dir);
}

/* retort train with the extra settings must fail before training, naming
 * `want`, and leave no run directory behind. */
static void refused(const char *dir, const char *extra, const char *want) {
    char run[512], path[600];
    snprintf(run, sizeof run, "%s/bad", dir);
    snprintf(path, sizeof path, "%s/log", dir);
    unlink(path);
    char args[4096];
    snprintf(args, sizeof args, SMALL "--set train.steps=2 --set train.out_dir=%s %s", dir, dir,
             run, extra);
    int rc = retort(dir, args);
    char *log = read_file(path, NULL);
    cr_assert(log);
    cr_expect_neq(rc, 0, "%s was accepted", extra);
    cr_expect(strstr(log, want), "%s: the message lacks \"%s\": %s", extra, want, log);
    free(log);
    snprintf(path, sizeof path, "%s/step-00000001", run);
    cr_expect(!path_exists(path), "%s: it trained", extra);
    rm_rf(run);
}

Test(gen_eval, bad_settings_are_refused_before_training, .timeout = 120) {
    char dir[256];
    make_temp_dir(dir, sizeof dir, "genevalbad");
    make_task(dir);
    refused(dir, "--set eval.best_metric=gen/bleu",
            "eval.best_metric gen/bleu is measured every eval.generate_every steps");
    refused(dir, "--set eval.generate_every=1 --set eval.best_metric=gen/blue",
            "eval.best_metric 'gen/blue' is not measured by generation-based evaluation with "
            "this config; it reports gen/bleu, gen/chrf, gen/exact_match, gen/rouge_l, "
            "gen/token_f1, gen/ppl");
    refused(dir, "--set eval.generate_every=1 --set eval.best_metric=gen/accuracy",
            "gen/accuracy needs eval.generate_answer");
    refused(dir, "--set eval.best_metric=bleu", "is neither val_loss nor a gen/<metric>");
    refused(dir, "--set eval.every=0 --set eval.best_metric=val_loss", "eval.every is 0");
    refused(dir, "--set eval.every=1 --set eval.best_metric=val_loss",
            "eval.best_metric val_loss needs validation data");
    refused(dir, "--set eval.generate_every=1 --set eval.generate_input=",
            "eval.generate_input is empty");
    refused(dir, "--set eval.generate_every=1 --set eval.generate_input=/nonexistent.jsonl",
            "eval.generate_input: cannot open /nonexistent.jsonl");
    refused(dir, "--set eval.generate_every=1 --set 'eval.generate_answer=regex:(a'",
            "eval.generate_answer:");
    refused(dir, "--set eval.generate_every=1 --set eval.generate_answer=digits",
            "eval.generate_answer:");
    refused(dir, "--set eval.best_mode=median", "eval.best_mode");
    refused(dir, "--set eval.generate_evry=1", "eval.generate_every");
    refused(dir, "--set eval.generate_every=1 --set eval.generate_tokenizer=/nonexistent",
            "eval.generate_tokenizer");
    rm_rf(dir);
}

/* retort stages lends each stage the same evaluation: a stage's own
 * eval.generate_* and best_metric apply to it, into its run directory. */
Test(gen_eval, stages_evaluate_and_keep_each_stages_best, .timeout = 120) {
    char dir[256], path[900], text[2048];
    make_temp_dir(dir, sizeof dir, "genevalstages");
    make_task(dir);
    snprintf(path, sizeof path, "%s/base.yaml", dir);
    snprintf(text, sizeof text,
             "model: {n_layer: 1, n_head: 2, n_embd: 32, vocab_size: 257, n_positions: 32}\n"
             "data: {train: %s/train.h5, seq_len: 16, batch_size: 8}\n"
             "optim: {lr: 1.0e-2, min_lr: 1.0e-3, warmup_steps: 1}\n"
             "train: {steps: 4, threads: 1, out_dir: unused, tensorboard: false}\n"
             "eval: {generate_input: %s/val.jsonl, generate_max_new_tokens: 6}\n"
             "checkpoint: {every: 0, keep: 1}\n",
             dir, dir);
    write_text(path, text);
    snprintf(path, sizeof path, "%s/plan.yaml", dir);
    snprintf(text, sizeof text,
             "base: base.yaml\nout_dir: %s/plan\nstages:\n"
             "  - name: global\n    set: {eval.generate_every: 2, eval.best_metric: gen/ppl}\n"
             "  - name: local\n    init_from: global\n"
             "    set: {train.steps: 3, eval.generate_every: 3, eval.best_metric: gen/rouge_l}\n",
             dir);
    write_text(path, text);
    RUN(dir, "stages -c %s --quiet", path);
    double ppl[64], rouge[64];
    char run[700];
    snprintf(run, sizeof run, "%s/plan/global", dir);
    cr_expect_eq(gen_by_step(run, "ppl", ppl, 64), 4);
    cr_expect(!isnan(ppl[2]) && !isnan(ppl[4]) && isnan(ppl[3]));
    snprintf(path, sizeof path, "%s/best/best.json", run);
    json_t *b = load(path);
    cr_expect_str_eq(json_string_value(json_object_get(b, "metric")), "gen/ppl");
    json_decref(b);
    snprintf(run, sizeof run, "%s/plan/local", dir);
    cr_expect_eq(gen_by_step(run, "rouge_l", rouge, 64), 3);
    snprintf(path, sizeof path, "%s/best/best.json", run);
    b = load(path);
    cr_expect_str_eq(json_string_value(json_object_get(b, "metric")), "gen/rouge_l");
    cr_expect_eq(json_integer_value(json_object_get(b, "step")), 3);
    json_decref(b);
    rm_rf(dir);
}
