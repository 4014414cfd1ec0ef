/* tests/test_stages.c — multi-stage runs (train/stages.c): a GLPFT plan of a
 * global stage and two role stages on a tiny sft file with a role column.
 *   - every stage ends with its final checkpoint; a role stage starts from the
 *     global stage's final checkpoint and trains only on its role's examples;
 *   - interrupted inside a role stage and rerun with resume, the plan skips
 *     the finished stages and ends with the same losses as an uninterrupted
 *     plan (bit for bit, CPU);
 *   - bad plans are refused with file:line;
 *   - `retort stages --set KEY=VALUE --out-dir DIR` applies the override to
 *     every stage (a stage's own `set` wins) and writes under DIR; a bad key
 *     is refused before anything trains. */
#include <criterion/criterion.h>

#include <jansson.h>

#include "data/h5data.h"
#include "tests/testutil.h"
#include "tests/testutil_cli.h"
#include "model/checkpoint.h"
#include "train/stages.h"
#include "train/trainer.h"

/* 30 examples, roles alternate planner/caller/planner...: planner examples
 * end in "p", caller ones in "c". */
static void make_roles(const char *path) {
    DatasetWriter *w = dataset_writer_open(path, SCHEMA_SFT, 257, 256, 256, "bytes");
    cr_assert(w, "%s", err_msg());
    for (int i = 0; i < 30; i++) {
        int role = i % 3 == 1; /* 20 planner, 10 caller */
        uint32_t t[8] = {'q', (uint32_t)('a' + i % 7), '=', 'x', 'y', role ? 'c' : 'p', 256};
        uint8_t m[8] = {0, 0, 0, 1, 1, 1, 1};
        cr_assert_eq(dataset_writer_add(w, t, m, 7, role), 0, "%s", err_msg());
    }
    const char *names[2] = {"planner", "caller"};
    cr_assert_eq(dataset_writer_set_roles(w, names, 2), 0);
    cr_assert_eq(dataset_writer_close(w), 0, "%s", err_msg());
}

static void write_plan(const char *dir, const char *out) {
    char path[600], text[4096];
    snprintf(path, sizeof path, "%s/base.yaml", dir);
    snprintf(text, sizeof text,
             "model: {n_layer: 1, n_head: 2, n_embd: 32, vocab_size: 257, n_positions: 16}\n"
             "data: {train: %s/roles.h5, seq_len: 8, batch_size: 2}\n"
             "optim: {lr: 3.0e-3, min_lr: 3.0e-4, warmup_steps: 1}\n"
             "train: {steps: 4, threads: 1, out_dir: unused}\n"
             "checkpoint: {every: 1, keep: 0}\n",
             dir);
    write_text(path, text);
    snprintf(path, sizeof path, "%s/plan.yaml", dir);
    snprintf(text, sizeof text,
             "base: base.yaml\n"
             "out_dir: %s\n"
             "stages:\n"
             "  - name: global\n"
             "    set: {train.epochs: 0.5}\n"
             "  - name: planner\n"
             "    init_from: global\n"
             "    set: {data.role: planner, optim.lr: 1.0e-3, train.steps: 3}\n"
             "  - name: caller\n"
             "    init_from: global\n"
             "    set: {data.role: caller, optim.lr: 1.0e-3, train.steps: 3}\n",
             out);
    write_text(path, text);
}

/* "loss" of each step of a stage's metrics.jsonl, as text */
static int losses(const char *out, const char *stage, char l[][48]) {
    char path[700];
    snprintf(path, sizeof path, "%s/%s/metrics.jsonl", out, stage);
    FILE *f = fopen(path, "r");
    cr_assert(f, "no %s", path);
    char line[2048];
    int n = 0, step;
    char v[48];
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "{\"step\": %d, \"loss\": %47[^,]", &step, v) == 2 && step < 16) {
            snprintf(l[step], 48, "%s", v);
            if (step > n) n = step;
        }
    fclose(f);
    return n;
}

Test(stages, glpft_plan_runs_resumes_and_filters_roles, .timeout = 180) {
    char dir[256], data[512], plan[512], a[512], b[512];
    make_temp_dir(dir, sizeof dir, "stages");
    snprintf(data, sizeof data, "%s/roles.h5", dir);
    make_roles(data);
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    snprintf(plan, sizeof plan, "%s/plan.yaml", dir);
    StagesPlan *p = malloc(sizeof *p);
    write_plan(dir, a);
    cr_assert_eq(stages_load(p, plan), 0, "%s", err_msg());
    cr_assert_eq(p->n_stages, 3);
    cr_assert_eq(stages_run(p, 0, 1), 0, "%s", err_msg());
    /* global: 0.5 epochs of 30 examples at batch 2 = 8 steps */
    int64_t steps[32];
    char ga[600];
    snprintf(ga, sizeof ga, "%s/global", a);
    cr_assert_eq(ckpt_list(ga, steps, 32), 8);
    cr_expect_eq(steps[0], 8);
    /* the planner stage started from global's final checkpoint, on 20 items */
    char tj[800];
    snprintf(tj, sizeof tj, "%s/planner/step-00000003/trainer.json", a);
    json_error_t e;
    json_t *root = json_load_file(tj, 0, &e);
    cr_assert(root, "%s", e.text);
    const char *init = json_string_value(
        json_object_get(json_object_get(json_object_get(root, "config"), "model"), "init"));
    char want[700];
    ckpt_dir_name(want, sizeof want, ga, 8);
    cr_expect_str_eq(init, want);
    /* 3 steps of 2 planner examples: position 6 of the 20-item epoch */
    cr_expect_eq(json_integer_value(json_object_get(json_object_get(root, "data"), "pos")), 6);
    json_decref(root);

    /* rerun: everything is complete, nothing trains */
    cr_assert_eq(stages_run(p, 0, 1), 0, "%s", err_msg());

    /* interrupted in the planner stage, then resumed */
    write_plan(dir, b);
    cr_assert_eq(stages_load(p, plan), 0, "%s", err_msg());
    /* run global alone to completion, then stop the planner stage at step 2 */
    StagesPlan *first = malloc(sizeof *first);
    *first = *p;
    first->n_stages = 1;
    cr_assert_eq(stages_run(first, 0, 1), 0, "%s", err_msg());
    free(first);
    train_request_stop_at(2);
    cr_assert_eq(stages_run(p, 0, 1), 0, "%s", err_msg()); /* planner stops at 2 */
    train_request_stop_at(-1);
    cr_expect_eq(stages_run(p, 0, 1), -1, "an unfinished stage needs --resume");
    cr_expect(strstr(err_msg(), "--resume"), "%s", err_msg());
    cr_assert_eq(stages_run(p, 1, 1), 0, "%s", err_msg());
    const char *names[3] = {"global", "planner", "caller"};
    for (int s = 0; s < 3; s++) {
        char la[16][48], lb[16][48];
        int na = losses(a, names[s], la), nb = losses(b, names[s], lb);
        cr_expect_eq(na, nb, "%s: %d vs %d steps", names[s], na, nb);
        for (int k = 1; k <= na && k <= nb; k++)
            cr_expect_str_eq(la[k], lb[k], "%s step %d: %s vs %s", names[s], k, la[k], lb[k]);
    }
    free(p);
    rm_rf(dir);
}

/* config.<section>.<key> of a checkpoint's trainer.json, as a number */
static double trainer_config(const char *ckpt, const char *section, const char *key) {
    char tj[1200];
    snprintf(tj, sizeof tj, "%s/trainer.json", ckpt);
    json_error_t e;
    json_t *root = json_load_file(tj, 0, &e);
    cr_assert(root, "%s: %s", tj, e.text);
    double v = json_number_value(
        json_object_get(json_object_get(json_object_get(root, "config"), section), key));
    json_decref(root);
    return v;
}

Test(stages, cli_set_and_out_dir_apply_to_every_stage, .timeout = 120) {
    char dir[256], data[512], a[512], ck[800], run[700];
    make_temp_dir(dir, sizeof dir, "stagescli");
    snprintf(data, sizeof data, "%s/roles.h5", dir);
    make_roles(data);
    snprintf(a, sizeof a, "%s/never", dir);
    write_plan(dir, a);
    /* the file's out_dir is not used; train.seed reaches every stage, optim.lr
     * only the global stage (the role stages set their own) */
    RUN(dir, "stages -c %s/plan.yaml --quiet --set train.seed=7 --set optim.lr=2e-3 "
             "--out-dir %s/seed7", dir, dir);
    cr_expect(!path_exists(a), "%s was written although --out-dir was given", a);
    const char *names[3] = {"global", "planner", "caller"};
    const int last[3] = {8, 3, 3};
    for (int s = 0; s < 3; s++) {
        snprintf(run, sizeof run, "%s/seed7/%s", dir, names[s]);
        ckpt_dir_name(ck, sizeof ck, run, last[s]);
        cr_assert(path_exists(ck), "no %s", ck);
        cr_expect_eq(trainer_config(ck, "train", "seed"), 7, "%s", names[s]);
        cr_expect_eq(trainer_config(ck, "optim", "lr"), s == 0 ? 2e-3 : 1e-3, "%s", names[s]);
    }
    /* a key that is not a config key is named, and nothing is written */
    char path[600], args[1400];
    snprintf(args, sizeof args, "stages -c %s/plan.yaml --set train.sed=7 --out-dir %s/bad", dir,
             dir);
    int rc = retort(dir, args);
    snprintf(path, sizeof path, "%s/log", dir);
    char *log = read_file(path, &(size_t){0});
    cr_assert(log);
    cr_expect_eq(rc, 1);
    cr_expect(strstr(log, "train.sed"), "%s", log);
    free(log);
    snprintf(path, sizeof path, "%s/bad", dir);
    cr_expect(!path_exists(path));
    rm_rf(dir);
}

Test(stages, bad_plans_are_named) {
    char dir[256], path[512];
    make_temp_dir(dir, sizeof dir, "stagesbad");
    snprintf(path, sizeof path, "%s/plan.yaml", dir);
    StagesPlan *p = malloc(sizeof *p);
    write_text(path, "base: b.yaml\nout_dir: o\nstages:\n  - name: a\n    init_from: z\n");
    cr_expect_eq(stages_load(p, path), -1);
    cr_expect(strstr(err_msg(), "'z'"), "%s", err_msg());
    write_text(path, "base: b.yaml\nout_dir: o\nstages:\n  - name: a\n    set: {optim.lrr: 1}\n");
    cr_expect_eq(stages_load(p, path), -1);
    cr_expect(strstr(err_msg(), "plan.yaml:5") && strstr(err_msg(), "optim.lr"), "%s",
              err_msg());
    write_text(path, "base: b.yaml\nout_dir: o\nstages:\n  - name: a/b\n");
    cr_expect_eq(stages_load(p, path), -1);
    cr_expect(strstr(err_msg(), "a/b"), "%s", err_msg());
    free(p);
    rm_rf(dir);
}

/* configs/glpft.yaml is α-UMi's recipe as its own training script has it
 * (tests/fixtures/glpft_upstream.json, read from X-PLUG/Multi-LLM-Agent's
 * GLPFT/scripts/train_toolbench.sh by tests/make_glpft_fixtures.py): per stage
 * the epochs, lr, weight decay, warmup ratio and AdamW settings; Trainer's
 * cosine to 0 where it schedules, and DeepSpeed's WarmupLR (log warmup, then
 * a constant rate) where it replaces Trainer's (the global stage). */
Test(stages, glpft_config_is_upstreams_recipe) {
    json_error_t e;
    json_t *up = json_load_file("tests/fixtures/glpft_upstream.json", 0, &e);
    cr_assert(up, "%s", e.text);
    StagesPlan *p = malloc(sizeof *p);
    cr_assert_eq(stages_load(p, "configs/glpft.yaml"), 0, "%s", err_msg());
    const json_t *stages = json_object_get(up, "stages");
    cr_assert_eq(json_array_size(stages), (size_t)p->n_stages);
    for (int i = 0; i < p->n_stages; i++) {
        const json_t *u = json_array_get(stages, (size_t)i);
        const Stage *s = &p->stages[i];
        cr_assert_str_eq(s->name, json_string_value(json_object_get(u, "name")));
        Config c;
        config_defaults(&c);
        cr_assert_eq(config_load_yaml(&c, p->base), 0, "%s", err_msg());
        for (int k = 0; k < s->n_sets; k++)
            cr_assert_eq(config_set(&c, s->sets[k]), 0, "%s", err_msg());
#define UP(key) json_number_value(json_object_get(u, key))
        cr_expect_eq(c.train.epochs, UP("epochs"), "%s: epochs %g", s->name, c.train.epochs);
        cr_expect_eq(c.optim.lr, UP("lr"), "%s: lr %g", s->name, c.optim.lr);
        cr_expect_eq(c.optim.weight_decay, UP("weight_decay"), "%s", s->name);
        cr_expect_eq(c.optim.warmup_ratio, UP("warmup_ratio"), "%s", s->name);
        cr_expect_eq(c.optim.warmup_steps, 0, "%s", s->name);
        cr_expect_eq(c.optim.beta1, UP("adam_beta1"), "%s", s->name);
        cr_expect_eq(c.optim.beta2, UP("adam_beta2"), "%s", s->name);
        cr_expect_eq(c.optim.eps, UP("adam_epsilon"), "%s", s->name);
        cr_expect_eq(c.optim.grad_clip, UP("max_grad_norm"), "%s", s->name);
#undef UP
        const char *ds = json_string_value(json_object_get(u, "deepspeed_scheduler"));
        const char *want = ds ? (!strcmp(ds, "WarmupLR") ? "constant" : "?")
                              : json_string_value(json_object_get(u, "lr_scheduler_type"));
        cr_expect_str_eq(c.optim.schedule, want, "%s", s->name);
        /* WarmupLR's default warmup_type is log */
        cr_expect_str_eq(c.optim.warmup_shape, ds ? "log" : "linear", "%s", s->name);
        cr_expect_eq(c.optim.min_lr, 0, "%s: transformers decays to 0", s->name);
        cr_expect_str_eq(c.optim.schedule_convention, "hf", "%s", s->name);
        cr_expect_eq(config_validate(&c), 0, "%s: %s", s->name, err_msg());
        cr_expect_eq(!strcmp(s->init_from, "global"), i > 0, "%s", s->name);
    }
    free(p);
    json_decref(up);
}
