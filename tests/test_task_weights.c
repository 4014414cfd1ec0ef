/* tests/test_task_weights.c — objective.task_weights (per-task loss weights)
 * and data.mix (several training files drawn as one stream).
 *
 * Task weights against torch: tests/make_task_weight_fixtures.py builds a tiny
 * GPT-2 student and teacher in transformers, an sft dataset with three tasks
 * (one weighted 0) and the loss sum_t w_t * mean_t and its gradients for the
 * first step of B rows x A micro-batches, for lm and for word-level KD (online
 * teacher, alpha, temperature). Here the same step runs through the objective
 * (open, prepare, step: the loader, the task column, the seam), and its loss,
 * per-task losses and every gradient must match: 1e-5 relative on losses and
 * per gradient tensor (fp32 against float64; measured: losses 3e-8, gradients
 * up to 7e-7). Then the errors (config and data), the command line
 * (metrics.jsonl's loss/<task> and eval_loss/<task>, the loss being the
 * weighted sum of them), and data.mix: a pure stream (deterministic, the
 * weights within binomial bounds, each file walked in permutations,
 * independent of batching and world size, ranks slicing one global stream),
 * and through the command line (the same losses twice, resume equality, the
 * checkpoint's per-file positions, the schema and tokenizer refusals). */
#include <criterion/criterion.h>

#include "data/h5data.h"
#include "model/model_io.h"
#include "model/safetensors.h"
#include "tests/testutil_cli.h"
#include "tests/testutil_hf.h"
#include "train/objectives/objective.h"
#include "train/objectives/seq_batches.h"

/* ---------------------------------------------------------------- fixture */

#define FIXTURE "tests/fixtures/task_weights.safetensors"

typedef struct {
    SafeTensorsFile *f;
    GPTConfig cfg;
    int B, T, A;
} Fx;

static Fx open_fx(void) {
    Fx fx;
    fx.f = safetensors_open(FIXTURE);
    cr_assert(fx.f, "cannot open %s: %s (tests/make_task_weight_fixtures.py makes it)", FIXTURE,
              err_msg());
    fx.cfg = (GPTConfig){.n_layer = meta_int(fx.f, "n_layer"), .n_head = meta_int(fx.f, "n_head"),
                         .n_embd = meta_int(fx.f, "n_embd"),
                         .vocab_size = meta_int(fx.f, "vocab_size"),
                         .n_positions = meta_int(fx.f, "n_positions"),
                         .layer_norm_epsilon = 1e-5f};
    fx.B = meta_int(fx.f, "B");
    fx.T = meta_int(fx.f, "T");
    fx.A = meta_int(fx.f, "A");
    return fx;
}

/* A model with the fixture's weights under prefix ("param", "teacher"). */
static GPT *fx_model(const Fx *fx, const char *prefix) {
    GPT *m = gpt_create(&fx->cfg, backend_cpu());
    cr_assert(m, "%s", err_msg());
    size_t total = gpt_flat_size(m);
    float *host = calloc(total, sizeof(float));
    for (int i = 0; i < gpt_num_tensors(m); i++) {
        const ParamInfo *p = gpt_tensor(m, i);
        char key[160];
        snprintf(key, sizeof key, "%s.%s", prefix, p->name);
        read_f32(fx->f, key, host + p->offset, p->numel);
    }
    gpt_copy_params_to_device(m, host, total);
    free(host);
    return m;
}

static int *fx_ints(const Fx *fx, const char *name, size_t *n) {
    const StTensor *t = need(fx->f, name);
    *n = (size_t)st_numel(t);
    int *x = xmalloc(*n * sizeof(int));
    read_i32(fx->f, name, x, *n);
    return x;
}

/* The fixture's examples as an sft file with a task column. */
static void write_fx_data(const Fx *fx, const char *path) {
    size_t nt, no, nm, nk;
    int *tok = fx_ints(fx, "tokens", &nt), *off = fx_ints(fx, "offsets", &no);
    int *mask = fx_ints(fx, "loss_mask", &nm), *task = fx_ints(fx, "task", &nk);
    int eos = meta_int(fx->f, "eos");
    DatasetWriter *w = dataset_writer_open(path, SCHEMA_SFT, fx->cfg.vocab_size, eos, eos, "bytes");
    cr_assert(w, "%s", err_msg());
    char names[256];
    snprintf(names, sizeof names, "%s", safetensors_meta(fx->f, "tasks"));
    const char *tn[8];
    int n_tasks = 0;
    for (char *s = strtok(names, ","); s; s = strtok(NULL, ",")) tn[n_tasks++] = s;
    cr_assert_eq(dataset_writer_set_tasks(w, tn, n_tasks), 0, "%s", err_msg());
    for (size_t e = 0; e + 1 < no; e++) {
        int64_t n = off[e + 1] - off[e];
        uint32_t ids[64];
        uint8_t m[64];
        for (int64_t j = 0; j < n; j++) {
            ids[j] = (uint32_t)tok[off[e] + j];
            m[j] = (uint8_t)mask[off[e] + j];
        }
        cr_assert_eq(dataset_writer_append(w, ids, m, n), 0, "%s", err_msg());
        cr_assert_eq(dataset_writer_end_doc_tagged(w, -1, task[e]), 0, "%s", err_msg());
    }
    cr_assert_eq(dataset_writer_close(w), 0, "%s", err_msg());
    free(tok);
    free(off);
    free(mask);
    free(task);
}

static void fx_config(const Fx *fx, Config *c, const char *data, const char *type) {
    config_defaults(c);
    c->model.n_layer = fx->cfg.n_layer;
    c->model.n_head = fx->cfg.n_head;
    c->model.n_embd = fx->cfg.n_embd;
    c->model.vocab_size = fx->cfg.vocab_size;
    c->model.n_positions = fx->cfg.n_positions;
    snprintf(c->data.train, sizeof c->data.train, "%s", data);
    c->data.seq_len = fx->T;
    c->data.batch_size = fx->B;
    c->data.grad_accum = fx->A;
    c->data.shuffle = 0;
    c->train.steps = 1;
    snprintf(c->objective.type, sizeof c->objective.type, "%s", type);
    char set[512];
    snprintf(set, sizeof set, "objective.task_weights={%s}", safetensors_meta(fx->f, "weights"));
    cr_assert_eq(config_set(c, set), 0, "%s", err_msg());
    c->kd.alpha = meta_double(fx->f, "kd_alpha");
    c->kd.temperature = meta_double(fx->f, "kd_temperature");
    c->kd.beta = 0;
}

/* One step of `type` through the objective against the fixture's `tag`. */
static void torch_step(const char *type, const char *tag) {
    Fx fx = open_fx();
    char dir[256], data[300], teacher_dir[300];
    make_temp_dir(dir, sizeof dir, "taskw");
    snprintf(data, sizeof data, "%s/mt.h5", dir);
    write_fx_data(&fx, data);
    Config c;
    fx_config(&fx, &c, data, type);
    if (!strcmp(type, "kd")) {
        GPT *teacher = fx_model(&fx, "teacher");
        snprintf(teacher_dir, sizeof teacher_dir, "%s/teacher", dir);
        cr_assert_eq(mkdir_p(teacher_dir), 0, "%s", err_msg());
        cr_assert_eq(model_save_hf(teacher, teacher_dir), 0, "%s", err_msg());
        gpt_free(teacher);
        snprintf(c.kd.teacher, sizeof c.kd.teacher, "%s", teacher_dir);
    }
    cr_assert_eq(config_validate(&c), 0, "%s", err_msg());
    const Objective *o = objective_find(type);
    Rng rng;
    rng_seed(&rng, 1);
    TrainEnv env = {&c, backend_cpu(), NULL, fx.B, fx.T, fx.A, 0, 1, &rng, 1, NULL};
    void *self = o->open(&env);
    cr_assert_not_null(self, "%s", err_msg());
    GPT *m = fx_model(&fx, "param");
    env.model = m;
    cr_assert_eq(o->prepare(self, &env), 0, "%s", err_msg());
    int n_metrics, n_eval;
    const ObjectiveMetric *table = objective_metrics(o, self, &n_metrics, &n_eval);
    cr_assert_eq(n_eval, 3);
    cr_assert_str_eq(table[0].name, "loss/answer");
    cr_assert_str_eq(table[1].name, "loss/explanation");
    cr_assert_str_eq(table[2].name, "loss/other");

    double metrics[OBJECTIVE_MAX_METRICS] = {0};
    gpt_zero_grad(m);
    gpt_set_train_mode(m, 1);
    double loss = o->step(self, &env, metrics);

    char key[160];
    float ref, task_ref[3];
    snprintf(key, sizeof key, "%s.loss", tag);
    read_f32(fx.f, key, &ref, 1);
    cr_expect(fabs(loss - ref) <= 1e-5 * fabs(ref), "%s loss %.8f vs torch %.8f", tag, loss, ref);
    snprintf(key, sizeof key, "%s.task_loss", tag);
    read_f32(fx.f, key, task_ref, 3);
    for (int t = 0; t < 3; t++)
        cr_expect(fabs(metrics[t] - task_ref[t]) <= 1e-5 * fabs(task_ref[t]),
                  "%s %s %.8f vs torch %.8f", tag, table[t].name, metrics[t], task_ref[t]);
    float *grads = host_grads(m);
    for (int i = 0; i < gpt_num_tensors(m); i++) {
        const ParamInfo *p = gpt_tensor(m, i);
        snprintf(key, sizeof key, "%s.grad.%s", tag, p->name);
        float *g = malloc(p->numel * sizeof(float));
        read_f32(fx.f, key, g, p->numel);
        double err = rel_err(grads + p->offset, g, p->numel);
        cr_expect(err < 1e-5, "%s: relative error %.3g (tolerance 1e-5)", key, err);
        free(g);
    }
    free(grads);
    o->close(self);
    gpt_free(m);
    safetensors_close(fx.f);
    rm_rf(dir);
}

Test(task_weights_torch, lm_step_loss_and_grads) { torch_step("lm", "lm"); }
Test(task_weights_torch, kd_step_loss_and_grads) { torch_step("kd", "kd"); }

/* The weights matter: with every task weighted 1 the loss is another number
 * (so the torch comparison above could not pass by ignoring them). */
Test(task_weights_torch, weights_change_the_loss) {
    Fx fx = open_fx();
    char dir[256], data[300];
    make_temp_dir(dir, sizeof dir, "taskw");
    snprintf(data, sizeof data, "%s/mt.h5", dir);
    write_fx_data(&fx, data);
    Config c;
    fx_config(&fx, &c, data, "lm");
    cr_assert_eq(config_set(&c, "objective.task_weights={answer: 1, explanation: 1, other: 1}"), 0);
    const Objective *o = objective_find("lm");
    Rng rng;
    rng_seed(&rng, 1);
    TrainEnv env = {&c, backend_cpu(), NULL, fx.B, fx.T, fx.A, 0, 1, &rng, 1, NULL};
    void *self = o->open(&env);
    cr_assert_not_null(self, "%s", err_msg());
    env.model = fx_model(&fx, "param");
    cr_assert_eq(o->prepare(self, &env), 0, "%s", err_msg());
    double metrics[OBJECTIVE_MAX_METRICS] = {0};
    gpt_zero_grad(env.model);
    double loss = o->step(self, &env, metrics);
    float ref;
    read_f32(fx.f, "lm.loss", &ref, 1);
    cr_expect(fabs(loss - ref) > 1e-3, "weights ignored: %.8f", loss);
    /* the sum of the three task means, each from the step's own tokens */
    cr_expect(fabs(loss - (metrics[0] + metrics[1] + metrics[2])) < 1e-9 * fabs(loss));
    o->close(self);
    gpt_free(env.model);
    safetensors_close(fx.f);
    rm_rf(dir);
}

/* ---------------------------------------------------------------- errors */

static void expect_config_error(const char *set, const char *needle) {
    Config c;
    tiny_train_config(&c, "x.h5", "/tmp/unused");
    c.data.seq_len = 16;
    cr_assert_eq(config_set(&c, set), 0, "%s", err_msg());
    cr_assert_neq(config_validate(&c), 0, "%s accepted", set);
    assert_contains(err_msg(), needle);
}

Test(task_weights_config, bad_values_refused) {
    expect_config_error("objective.task_weights={answer: -0.5, explanation: 1}",
                        "task 'answer' has weight -0.5");
    expect_config_error("objective.task_weights={answer: .nan}", "finite number");
    expect_config_error("objective.task_weights={answer: inf}", "finite number");
    expect_config_error("objective.task_weights={answer: abc}", "finite number");
    expect_config_error("objective.task_weights={answer: 0, explanation: 0}", "every weight is 0");
    expect_config_error("objective.task_weights=[answer]", "must be a mapping");
    expect_config_error("objective.task_weights={answer: 1, answer: 2}", "given twice");
    expect_config_error("objective.task_weights={answer: [1]}", "not a single value");
    expect_config_error("objective.task_weights={answer: 1", "not valid YAML");
    Config c;
    tiny_train_config(&c, "x.h5", "/tmp/unused");
    c.data.seq_len = 16;
    cr_assert_eq(config_set(&c, "objective.type=dpo"), 0);
    cr_assert_eq(config_set(&c, "objective.task_weights={a: 1}"), 0);
    cr_assert_neq(config_validate(&c), 0);
    assert_contains(err_msg(), "lm and kd, not dpo");
}

/* A config file's mapping and list are stored as their flow text, and read
 * back as the same values; the resolved config round-trips through JSON. */
Test(task_weights_config, yaml_mapping_and_list) {
    char dir[256], path[300];
    make_temp_dir(dir, sizeof dir, "taskw");
    snprintf(path, sizeof path, "%s/c.yaml", dir);
    write_text(path, "objective:\n  task_weights:\n    answer: 0.7\n    \"expl anation\": 0.3\n"
                     "data:\n  mix:\n    - {path: a.h5, weight: 2}\n    - path: \"b c.h5\"\n"
                     "      weight: 1\n");
    Config c;
    config_defaults(&c);
    cr_assert_eq(config_load_yaml(&c, path), 0, "%s", err_msg());
    cr_assert_str_eq(c.objective.task_weights, "{answer: 0.7, \"expl anation\": 0.3}");
    cr_assert_str_eq(c.data.mix, "[{path: a.h5, weight: 2}, {path: \"b c.h5\", weight: 1}]");
    TaskWeights tw;
    DataMix mix;
    cr_assert_eq(config_task_weights(&c, &tw), 0, "%s", err_msg());
    cr_assert_eq(tw.n, 2);
    cr_assert_str_eq(tw.name[1], "expl anation");
    cr_assert_eq(tw.weight[0], 0.7);
    cr_assert_eq(config_data_mix(&c, &mix), 0, "%s", err_msg());
    cr_assert_eq(mix.n, 2);
    cr_assert_str_eq(mix.path[1], "b c.h5");
    cr_assert_eq(mix.weight[0], 2.0);
    char *json = config_to_json(&c);
    Config back;
    config_defaults(&back);
    cr_assert_eq(config_from_json(&back, json), 0, "%s", err_msg());
    cr_assert_str_eq(back.data.mix, c.data.mix);
    cr_assert_str_eq(back.objective.task_weights, c.objective.task_weights);
    free(json);
    rm_rf(dir);
}

Test(task_weights_config, bad_mix_refused) {
    Config c;
    tiny_train_config(&c, "", "/tmp/unused");
    c.data.seq_len = 16;
    cr_assert_eq(config_set(&c, "data.mix=[{path: a.h5, weight: 0}]"), 0);
    cr_assert_neq(config_validate(&c), 0);
    assert_contains(err_msg(), "needs a weight > 0");
    cr_assert_eq(config_set(&c, "data.mix=[{path: a.h5, weight: 1, shuffle: 1}]"), 0);
    cr_assert_neq(config_validate(&c), 0);
    assert_contains(err_msg(), "has key 'shuffle'");
    cr_assert_eq(config_set(&c, "data.mix=[{weight: 1}]"), 0);
    cr_assert_neq(config_validate(&c), 0);
    assert_contains(err_msg(), "needs a path");
    cr_assert_eq(config_set(&c, "data.mix=[{path: a.h5, weight: 1}, {path: a.h5, weight: 1}]"), 0);
    cr_assert_neq(config_validate(&c), 0);
    assert_contains(err_msg(), "listed twice");
    cr_assert_eq(config_set(&c, "data.mix=[{path: a.h5, weight: 1}]"), 0);
    cr_assert_eq(config_validate(&c), 0, "%s", err_msg());
    cr_assert_eq(config_set(&c, "data.role=planner"), 0);
    cr_assert_neq(config_validate(&c), 0);
    assert_contains(err_msg(), "data.role with data.mix");
    cr_assert_eq(config_set(&c, "data.role="), 0);
    cr_assert_eq(config_set(&c, "data.train=b.h5"), 0);
    cr_assert_neq(config_validate(&c), 0);
    assert_contains(err_msg(), "not both");
}

/* ---------------------------------------------------------------- command line */

/* n sft examples "[t] a+b=" -> answer or explanation by i % 3, task-tagged
 * (tag "" = no task field). */
static void write_mt_jsonl(const char *path, int n, int seed, const char *only_task) {
    FILE *f = fopen(path, "w");
    cr_assert(f);
    Rng r;
    rng_seed(&r, (uint64_t)seed);
    for (int i = 0; i < n; i++) {
        int a = 1 + (int)rng_below(&r, 9), b = 1 + (int)rng_below(&r, 9);
        const char *task = only_task ? only_task : i % 3 == 0 ? "explanation" : "answer";
        if (!strcmp(task, "explanation"))
            fprintf(f, "{\"prompt\": \"[e] %d+%d=\", \"completion\": \" %d plus %d is %d\", "
                       "\"task\": \"%s\"}\n", a, b, a, b, a + b, task);
        else
            fprintf(f, "{\"prompt\": \"[a] %d+%d=\", \"completion\": \" %d\", \"task\": \"%s\"}\n",
                    a, b, a + b, task);
    }
    fclose(f);
}

static const char *TINY = "--set model.n_layer=1 --set model.n_head=2 --set model.n_embd=32 "
                          "--set model.vocab_size=257 --set model.n_positions=32 "
                          "--set data.seq_len=32 --set data.batch_size=4 --set train.threads=1 "
                          "--set optim.warmup_steps=0 --set train.log_every=100 "
                          "--set checkpoint.keep=0";

Test(task_weights_cli, logs_task_losses_and_refuses_bad_data) {
    char dir[256], cmd[2048];
    make_temp_dir(dir, sizeof dir, "taskw-cli");
    snprintf(cmd, sizeof cmd, "%s/mt.jsonl", dir);
    write_mt_jsonl(cmd, 60, 1, NULL);
    RUN(dir, "data build --schema sft -i %s/mt.jsonl -o %s/mt.h5 --task-field task -q", dir, dir);
    RUN(dir, "data build --schema sft -i %s/mt.jsonl -o %s/plain.h5 -q", dir, dir);
    char cfg[300];
    snprintf(cfg, sizeof cfg, "%s/c.yaml", dir);
    write_text(cfg, "objective:\n  task_weights: {answer: 0.7, explanation: 0.3}\n");
    RUN(dir, "train -c %s %s --set data.train=%s/mt.h5 --set data.val_fraction=0.2 "
             "--set eval.every=2 --set train.steps=4 --set train.out_dir=%s/run",
        cfg, TINY, dir, dir);
    snprintf(cmd, sizeof cmd, "%s/run", dir);
    double loss[8], ans[8], val[8], vans[8], vexpl[8];
    cr_assert_eq(metric_values(cmd, "loss", "loss", loss, 8), 4);
    cr_assert_eq(metric_values(cmd, "loss", "loss/answer", ans, 8), 4);
    /* a step without explanation tokens logs null: compare where both exist */
    json_t *lines = metrics_lines(cmd), *j;
    size_t i;
    int checked = 0;
    json_array_foreach(lines, i, j) {
        json_t *a = json_object_get(j, "loss/answer"), *e = json_object_get(j, "loss/explanation");
        if (json_is_number(a) && json_is_number(e)) {
            double want = 0.7 * json_number_value(a) + 0.3 * json_number_value(e);
            double got = json_number_value(json_object_get(j, "loss"));
            cr_expect(fabs(got - want) < 1e-6 * want, "loss %.9g vs 0.7 a + 0.3 e = %.9g", got,
                      want);
            checked++;
        }
    }
    json_decref(lines);
    cr_assert(checked >= 1, "no step held both tasks");
    cr_assert_eq(metric_values(cmd, "val_loss", "val_loss", val, 8), 2);
    cr_assert_eq(metric_values(cmd, "val_loss", "eval_loss/answer", vans, 8), 2);
    cr_assert_eq(metric_values(cmd, "val_loss", "eval_loss/explanation", vexpl, 8), 2);
    for (int k = 0; k < 2; k++)
        cr_expect(fabs(val[k] - (0.7 * vans[k] + 0.3 * vexpl[k])) < 1e-6 * val[k]);

    /* errors: exit non-zero, say what and how, and leave no run behind */
    snprintf(cmd, sizeof cmd, "train -c %s %s --set data.train=%s/plain.h5 --set train.steps=1 "
             "--set train.out_dir=%s/bad1", cfg, TINY, dir, dir);
    cr_assert_neq(retort(dir, cmd), 0);
    snprintf(cmd, sizeof cmd, "train %s --set data.train=%s/mt.h5 --set train.steps=1 "
             "--set objective.task_weights='{answer: 1, summary: 1, explanation: 1}' "
             "--set train.out_dir=%s/bad2", TINY, dir, dir);
    cr_assert_neq(retort(dir, cmd), 0);
    snprintf(cmd, sizeof cmd, "train %s --set data.train=%s/mt.h5 --set train.steps=1 "
             "--set objective.task_weights='{answer: 1}' --set train.out_dir=%s/bad3", TINY, dir,
             dir);
    cr_assert_neq(retort(dir, cmd), 0);
    char log[400];
    snprintf(log, sizeof log, "%s/log", dir);
    char *text = read_file(log, NULL);
    cr_assert(text);
    assert_contains(text, "plain.h5 has no task column");
    assert_contains(text, "--task-field");
    assert_contains(text, "names task 'summary', but");
    assert_contains(text, "the tasks there are: explanation, answer");
    assert_contains(text, "has task 'explanation', which objective.task_weights (answer) does "
                          "not list; give it a weight (0 to train nothing on it)");
    free(text);
    for (int b = 1; b <= 3; b++) {
        snprintf(cmd, sizeof cmd, "%s/bad%d/metrics.jsonl", dir, b);
        cr_expect_neq(access(cmd, F_OK), 0, "a refused run left %s", cmd);
    }
    rm_rf(dir);
}

/* ---------------------------------------------------------------- data.mix */

/* An sft file of n examples whose completion is the example's index, so a
 * row says which example it is. */
static void write_indexed(const char *path, int n, int token_base, const char *tokenizer,
                          Schema schema) {
    DatasetWriter *w = dataset_writer_open(path, schema, 257, 256, 256, tokenizer);
    cr_assert(w, "%s", err_msg());
    for (int i = 0; i < n; i++) {
        uint32_t ids[3] = {(uint32_t)(token_base + i % 100), (uint32_t)(i / 100), 256};
        uint8_t m[3] = {0, 1, 1};
        cr_assert_eq(dataset_writer_add(w, ids, schema == SCHEMA_LM ? NULL : m, 3, -1), 0, "%s",
                     err_msg());
    }
    cr_assert_eq(dataset_writer_close(w), 0, "%s", err_msg());
}

typedef struct {
    Dataset ds[2];
    MixLoader m;
} Mix2;

static void open_mix2(Mix2 *x, const char *dir, double w0, double w1, uint64_t seed) {
    char a[300], b[300];
    snprintf(a, sizeof a, "%s/a.h5", dir);
    snprintf(b, sizeof b, "%s/b.h5", dir);
    if (access(a, F_OK) != 0) {
        write_indexed(a, 50, 0, "bytes", SCHEMA_SFT);
        write_indexed(b, 30, 100, "bytes", SCHEMA_SFT);
    }
    cr_assert_eq(dataset_open(&x->ds[0], a), 0, "%s", err_msg());
    cr_assert_eq(dataset_open(&x->ds[1], b), 0, "%s", err_msg());
    const Dataset *ds[2] = {&x->ds[0], &x->ds[1]};
    double w[2] = {w0, w1};
    cr_assert_eq(mix_init(&x->m, ds, w, NULL, 2, 4, seed, 1), 0, "%s", err_msg());
}

static void close_mix2(Mix2 *x) {
    mix_free(&x->m);
    dataset_close(&x->ds[0]);
    dataset_close(&x->ds[1]);
}

/* n rows of the stream: (source, item) per row, drawn B at a time. */
static void draw(MixLoader *m, int n, int B, int *src, int64_t *item) {
    int *in = xmalloc((size_t)B * 4 * sizeof(int)), *tg = xmalloc((size_t)B * 4 * sizeof(int));
    for (int k = 0; k < n; k += B) mix_next(m, B, in, tg, src + k, item + k);
    free(in);
    free(tg);
}

Test(data_mix, deterministic_and_batch_independent) {
    char dir[256];
    make_temp_dir(dir, sizeof dir, "mix");
    enum { N = 480 };
    int s1[N], s2[N], s3[N];
    int64_t i1[N], i2[N], i3[N];
    Mix2 x;
    open_mix2(&x, dir, 0.7, 0.3, 9);
    draw(&x.m, N, 8, s1, i1);
    close_mix2(&x);
    open_mix2(&x, dir, 0.7, 0.3, 9);
    draw(&x.m, N, 8, s2, i2);
    close_mix2(&x);
    /* batches of 3 (a world of 3 x 1, or 1 x 3): the same stream */
    open_mix2(&x, dir, 0.7, 0.3, 9);
    draw(&x.m, N, 3, s3, i3);
    close_mix2(&x);
    for (int k = 0; k < N; k++) {
        cr_assert_eq(s1[k], s2[k]);
        cr_assert_eq(i1[k], i2[k]);
        cr_assert_eq(s1[k], s3[k], "row %d", k);
        cr_assert_eq(i1[k], i3[k], "row %d", k);
    }
    /* another seed: another stream */
    open_mix2(&x, dir, 0.7, 0.3, 10);
    draw(&x.m, N, 8, s3, i3);
    close_mix2(&x);
    int differ = 0;
    for (int k = 0; k < N; k++) differ += s1[k] != s3[k] || i1[k] != i3[k];
    cr_assert(differ > N / 4, "seed 10 drew %d rows unlike seed 9", N - differ);
    rm_rf(dir);
}

/* Source counts within 5 binomial standard deviations of weight x n, and each
 * file walked in permutations: its first 50 (30) draws are its 50 (30) items. */
Test(data_mix, weights_respected_and_files_permuted) {
    char dir[256];
    make_temp_dir(dir, sizeof dir, "mix");
    enum { N = 4000 };
    static int src[N];
    static int64_t item[N];
    Mix2 x;
    open_mix2(&x, dir, 3, 1, 21); /* unnormalised weights: 0.75 / 0.25 */
    draw(&x.m, N, 8, src, item);
    int count0 = 0;
    for (int k = 0; k < N; k++) count0 += src[k] == 0;
    double p = 0.75, mean = p * N, sd = sqrt(N * p * (1 - p));
    cr_expect(fabs(count0 - mean) < 5 * sd, "file 0 drawn %d times of %d; expected %.0f +- %.0f",
              count0, N, mean, 5 * sd);
    for (int s = 0; s < 2; s++) {
        int n_items = s ? 30 : 50, seen[50] = {0}, got = 0;
        for (int k = 0; k < N && got < n_items; k++)
            if (src[k] == s) {
                cr_assert(item[k] >= 0 && item[k] < n_items);
                seen[item[k]]++;
                got++;
            }
        for (int it = 0; it < n_items; it++)
            cr_expect_eq(seen[it], 1, "file %d item %d seen %d times in its first epoch", s, it,
                         seen[it]);
    }
    /* a position resumes the stream: from (index, consumed) and by replay */
    int64_t consumed[2];
    mix_seek(&x.m, 1000, NULL);
    mix_consumed(&x.m, consumed);
    int c0 = 0;
    for (int k = 0; k < 1000; k++) c0 += src[k] == 0;
    cr_assert_eq(consumed[0], c0);
    cr_assert_eq(consumed[1], 1000 - c0);
    int s2[16];
    int64_t i2[16];
    draw(&x.m, 16, 8, s2, i2);
    for (int k = 0; k < 16; k++) {
        cr_assert_eq(s2[k], src[1000 + k]);
        cr_assert_eq(i2[k], item[1000 + k]);
    }
    cr_assert_eq(mix_items(&x.m), 80);
    close_mix2(&x);
    rm_rf(dir);
}

/* Through the command line: a run is deterministic, run 6 steps == run 3 +
 * --resume 3 (the checkpoint records the global index and each file's
 * position), and files of another schema or tokenizer are refused naming
 * both. */
Test(data_mix_cli, resume_equality_and_refusals) {
    char dir[256], path[400];
    make_temp_dir(dir, sizeof dir, "mix-cli");
    snprintf(path, sizeof path, "%s/a.jsonl", dir);
    write_mt_jsonl(path, 40, 2, NULL);
    snprintf(path, sizeof path, "%s/b.jsonl", dir);
    write_mt_jsonl(path, 25, 3, "answer");
    RUN(dir, "data build --schema sft -i %s/a.jsonl -o %s/a.h5 --task-field task -q", dir, dir);
    RUN(dir, "data build --schema sft -i %s/b.jsonl -o %s/b.h5 --task-field task -q", dir, dir);
    char mix[900];
    snprintf(mix, sizeof mix, "--set 'data.mix=[{path: %s/a.h5, weight: 0.6}, {path: %s/b.h5, "
             "weight: 0.4}]' --set 'objective.task_weights={answer: 0.5, explanation: 0.5}'",
             dir, dir);
    RUN(dir, "train %s %s --set train.steps=6 --set train.out_dir=%s/full", TINY, mix, dir);
    RUN(dir, "train %s %s --set train.steps=6 --set train.out_dir=%s/again", TINY, mix, dir);
    setenv("RETORT_STOP_AT_STEP", "3", 1); /* stopped as by SIGTERM during step 3 */
    RUN(dir, "train %s %s --set train.steps=6 --set train.out_dir=%s/part", TINY, mix, dir);
    unsetenv("RETORT_STOP_AT_STEP");
    char run[300];
    snprintf(run, sizeof run, "%s/part/step-00000003/trainer.json", dir);
    json_error_t e;
    json_t *tj = json_load_file(run, 0, &e);
    cr_assert(tj, "%s: %s", run, e.text);
    json_t *detail = json_object_get(json_object_get(tj, "data"), "detail");
    cr_assert(json_is_object(detail), "no data.detail in %s", run);
    int64_t index = json_integer_value(json_object_get(detail, "mix_index"));
    cr_assert_eq(index, 3 * 4, "3 steps of 4 rows");
    json_t *files = json_object_get(detail, "mix_files");
    cr_assert_eq(json_array_size(files), 2);
    int64_t sum = 0;
    for (size_t k = 0; k < 2; k++)
        sum += json_integer_value(json_object_get(json_array_get(files, k), "consumed"));
    cr_assert_eq(sum, index);
    json_decref(tj);
    RUN(dir, "train %s %s --set train.steps=6 --set train.out_dir=%s/part --resume", TINY, mix,
        dir);
    /* data.val_fraction holds out the tail of every file: 8 of a's 40 and 5 of
     * b's 25 examples, validated per task */
    RUN(dir, "train %s %s --set train.steps=2 --set data.val_fraction=0.2 --set eval.every=1 "
             "--set train.out_dir=%s/val", TINY, mix, dir);
    snprintf(run, sizeof run, "%s/val", dir);
    double val[4], vans[4], vexpl[4];
    cr_assert_eq(metric_values(run, "val_loss", "val_loss", val, 4), 2);
    cr_assert_eq(metric_values(run, "val_loss", "eval_loss/answer", vans, 4), 2);
    cr_assert_eq(metric_values(run, "val_loss", "eval_loss/explanation", vexpl, 4), 2);
    for (int k = 0; k < 2; k++)
        cr_expect(fabs(val[k] - (0.5 * vans[k] + 0.5 * vexpl[k])) < 1e-6 * val[k]);
    double full[8] = {0}, again[8] = {0}, part[8] = {0};
    snprintf(run, sizeof run, "%s/full", dir);
    cr_assert_eq(metric_by_step(run, "loss", "loss", full, 8), 6);
    snprintf(run, sizeof run, "%s/again", dir);
    metric_by_step(run, "loss", "loss", again, 8);
    snprintf(run, sizeof run, "%s/part", dir);
    cr_assert_eq(metric_by_step(run, "loss", "loss", part, 8), 6);
    for (int s = 1; s <= 6; s++) {
        cr_expect_eq(full[s], again[s], "step %d: %.17g vs %.17g", s, full[s], again[s]);
        cr_expect_eq(full[s], part[s], "step %d: resumed %.17g vs %.17g", s, part[s], full[s]);
    }

    /* refusals: an lm file beside sft files, and a file of another tokenizer */
    snprintf(path, sizeof path, "%s/lm.h5", dir);
    write_indexed(path, 20, 0, "bytes", SCHEMA_LM);
    snprintf(path, sizeof path, "%s/other.h5", dir);
    write_indexed(path, 20, 0, "test-tokenizer", SCHEMA_SFT);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "train %s --set 'data.mix=[{path: %s/a.h5, weight: 1}, {path: "
             "%s/lm.h5, weight: 1}]' --set train.steps=1 --set train.out_dir=%s/bad1",
             TINY, dir, dir, dir);
    cr_assert_neq(retort(dir, cmd), 0);
    snprintf(cmd, sizeof cmd, "train %s --set 'data.mix=[{path: %s/a.h5, weight: 1}, {path: "
             "%s/other.h5, weight: 1}]' --set train.steps=1 --set train.out_dir=%s/bad2",
             TINY, dir, dir, dir);
    cr_assert_neq(retort(dir, cmd), 0);
    char log[400];
    snprintf(log, sizeof log, "%s/log", dir);
    char *text = read_file(log, NULL);
    cr_assert(text);
    assert_contains(text, "a.h5 is a sft file but");
    assert_contains(text, "lm.h5 is a lm file; every file of a mixture has one schema");
    assert_contains(text, "a.h5 was built with tokenizer bytes (vocab_size 257) but");
    assert_contains(text, "other.h5 with test-tokenizer");
    assert_contains(text, "validation examples: 0 of 8 examples");
    assert_contains(text, "validation examples: 0 of 5 examples");
    free(text);
    rm_rf(dir);
}

/* Ranks take their slice of each global batch: the rows of rank 0 and rank 1
 * of a world of 2 (B = 2 each) are, in order, the rows one process draws with
 * B = 4, with the same files, items and tasks. */
Test(data_mix, ranks_slice_one_global_stream) {
    char dir[256], cmd[700];
    make_temp_dir(dir, sizeof dir, "mix-ranks");
    snprintf(cmd, sizeof cmd, "%s/a.jsonl", dir);
    write_mt_jsonl(cmd, 30, 4, NULL);
    snprintf(cmd, sizeof cmd, "%s/b.jsonl", dir);
    write_mt_jsonl(cmd, 20, 5, "answer");
    RUN(dir, "data build --schema sft -i %s/a.jsonl -o %s/a.h5 --task-field task -q", dir, dir);
    RUN(dir, "data build --schema sft -i %s/b.jsonl -o %s/b.h5 --task-field task -q", dir, dir);
    Config c;
    tiny_train_config(&c, "", "/tmp/unused");
    c.data.seq_len = 16;
    c.data.grad_accum = 2;
    snprintf(cmd, sizeof cmd, "data.mix=[{path: %s/a.h5, weight: 1}, {path: %s/b.h5, weight: 1}]",
             dir, dir);
    cr_assert_eq(config_set(&c, cmd), 0, "%s", err_msg());
    cr_assert_eq(config_set(&c, "objective.task_weights={answer: 0.5, explanation: 0.5}"), 0);
    cr_assert_eq(config_validate(&c), 0, "%s", err_msg());
    Rng rng;
    rng_seed(&rng, 1);
    TrainEnv one = {&c, backend_cpu(), NULL, 4, 16, 2, 0, 1, &rng, 1, NULL};
    TrainEnv r0 = {&c, backend_cpu(), NULL, 2, 16, 2, 0, 2, &rng, 1, NULL};
    TrainEnv r1 = {&c, backend_cpu(), NULL, 2, 16, 2, 1, 2, &rng, 1, NULL};
    static SeqBatches d1, d0, dr1;
    cr_assert_eq(seq_batches_open(&d1, &one), 0, "%s", err_msg());
    cr_assert_eq(seq_batches_open(&d0, &r0), 0, "%s", err_msg());
    cr_assert_eq(seq_batches_open(&dr1, &r1), 0, "%s", err_msg());
    int sources_seen[2] = {0};
    for (int step = 0; step < 5; step++) {
        seq_batches_draw(&d1, &one);
        seq_batches_draw(&d0, &r0);
        seq_batches_draw(&dr1, &r1);
        for (int a = 0; a < 2; a++) {
            const int *in1 = seq_batches_local(&d1, &one, d1.inputs, a);
            const int *t1 = seq_batches_local_rows(&d1, &one, d1.tasks, a);
            const int *s1 = seq_batches_local_rows(&d1, &one, d1.sources, a);
            for (int rank = 0; rank < 2; rank++) {
                SeqBatches *d = rank ? &dr1 : &d0;
                const TrainEnv *e = rank ? &r1 : &r0;
                const int *in = seq_batches_local(d, e, d->inputs, a);
                const int *t = seq_batches_local_rows(d, e, d->tasks, a);
                const int *s = seq_batches_local_rows(d, e, d->sources, a);
                cr_assert_eq(memcmp(in, in1 + rank * 2 * 16, 2 * 16 * sizeof(int)), 0,
                             "step %d micro %d rank %d: other rows", step, a, rank);
                for (int b = 0; b < 2; b++) {
                    cr_assert_eq(t[b], t1[rank * 2 + b]);
                    cr_assert_eq(s[b], s1[rank * 2 + b]);
                    sources_seen[s[b]]++;
                }
            }
        }
    }
    cr_assert(sources_seen[0] > 0 && sources_seen[1] > 0, "one file never drawn");
    seq_batches_close(&d1);
    seq_batches_close(&d0);
    seq_batches_close(&dr1);
    rm_rf(dir);
}
