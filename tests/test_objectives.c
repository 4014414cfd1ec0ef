/* tests/test_objectives.c — the kd and dpo objectives and partial fine-tuning
 * through the real trainer (train_run), on tiny byte-level models:
 *   - kd: offline top-K with K = V gives the losses of the online teacher
 *     (1e-4 relative: the stored teacher log-probs are rounded to fp32 once,
 *     the online ones are not rounded at all);
 *   - kd: alpha = 0 is exactly the lm objective's loss on the same data;
 *   - dpo: the precomputed reference gives the online reference's losses
 *     (same forward, same rows: 1e-6 relative, only fp32 summation order of
 *     a different batch composition could differ, and it does not);
 *   - dpo: the loss's gradient through the whole model equals central finite
 *     differences of the loss (sigmoid, ipo, simpo);
 *   - dpo: training on a programmatic preference raises rewards/accuracies
 *     from 0 (policy = reference at step 1);
 *   - LoRA and frozen runs: only the trainable part changes, a LoRA run
 *     resumes bit for bit (the dropout masks continue).
 */
#include <criterion/criterion.h>

#include <jansson.h>
#include <math.h>

#include "data/h5data.h"
#include "data/pref_batch.h"
#include "data/tokenizer.h"
#include "eval/generate_io.h"
#include "tests/testutil.h"
#include "model/backend.h"
#include "model/checkpoint.h"
#include "train/config.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/model_io.h"
#include "train/objectives/dpo.h"
#include "train/objectives/pair_batches.h"
#include "train/trainer.h"

#define MAX_STEPS 64

/* A random byte-level model, larger than the 0.02 init so it has opinions. */
static GPT *byte_model(uint64_t seed) {
    GPTConfig cfg = {.n_layer = 2, .n_head = 2, .n_embd = 32, .vocab_size = 257, .n_positions = 32,
                     .layer_norm_epsilon = 1e-5f, .vocab_pad = 0};
    return perturbed_cpu_model(&cfg, seed, seed + 100, 0.05);
}

static void save_model(GPT *m, const char *dir) {
    cr_assert_eq(mkdir_p(dir), 0);
    cr_assert_eq(model_save_hf(m, dir), 0, "%s", err_msg());
}

/* 6 steps of 24 tokens, no checkpoints on the way */
static void tiny_config(Config *c, const char *data, const char *out_dir) {
    tiny_train_config(c, data, out_dir);
    c->data.seq_len = 24;
    c->optim.warmup_steps = 1;
    c->train.steps = 6;
    c->checkpoint.every = 0;
}

/* ---------------------------------------------------------------------- kd */

/* prompts.jsonl of n lines "w=" in dir; returns the path in buf */
static void write_prompts(const char *dir, char *buf, size_t cap, int n) {
    snprintf(buf, cap, "%s/prompts.jsonl", dir);
    FILE *f = fopen(buf, "w");
    Rng r;
    rng_seed(&r, 9);
    for (int i = 0; i < n; i++) {
        char w[8];
        int len = 2 + (int)rng_below(&r, 4);
        for (int k = 0; k < len; k++) w[k] = (char)('a' + rng_below(&r, 8));
        w[len] = 0;
        fprintf(f, "{\"prompt\": \"%s=\"}\n", w);
    }
    fclose(f);
}

Test(kd, offline_full_vocabulary_topk_equals_online_teacher, .timeout = 120) {
    char dir[256], prompts[512], kd[512], teacher[512], a[512], b[512], c0[512];
    make_temp_dir(dir, sizeof dir, "kdobj");
    snprintf(teacher, sizeof teacher, "%s/teacher", dir);
    snprintf(kd, sizeof kd, "%s/kd.h5", dir);
    GPT *t = byte_model(31);
    save_model(t, teacher);
    write_prompts(dir, prompts, sizeof prompts, 12);
    Tokenizer *tok = tokenizer_bytes();
    GenerateJob job = {0};
    job.input = prompts;
    job.output = kd;
    job.sample = (SampleOptions){10, 1.0, 0, 1.0, 256, NULL, NULL};
    job.samples = 1;
    job.length_penalty = 1.0;
    job.seed = 4;
    job.quiet = 1;
    job.store_topk = 257; /* K = V */
    cr_assert_eq(generate_jsonl(t, tok, &job, NULL), 0, "%s", err_msg());
    tokenizer_free(tok);
    gpt_free(t);

    Config c;
    snprintf(a, sizeof a, "%s/online", dir);
    snprintf(b, sizeof b, "%s/offline", dir);
    snprintf(c0, sizeof c0, "%s/lm", dir);
    tiny_config(&c, kd, a);
    snprintf(c.objective.type, sizeof c.objective.type, "kd");
    c.kd.alpha = 0.7;
    c.kd.temperature = 2.0;
    c.kd.beta = 0.3;
    snprintf(c.kd.teacher, sizeof c.kd.teacher, "%s", teacher);
    train_ok(&c, 0);
    tiny_config(&c, kd, b);
    snprintf(c.objective.type, sizeof c.objective.type, "kd");
    c.kd.alpha = 0.7;
    c.kd.temperature = 2.0;
    c.kd.beta = 0.3;
    train_ok(&c, 0);
    double la[MAX_STEPS], lb[MAX_STEPS], ka[MAX_STEPS], kb[MAX_STEPS], ga[MAX_STEPS];
    cr_assert_eq(metric_by_step(a, "loss", "loss", la, MAX_STEPS), 6);
    cr_assert_eq(metric_by_step(b, "loss", "loss", lb, MAX_STEPS), 6);
    metric_by_step(a, "loss", "kd", ka, MAX_STEPS);
    metric_by_step(b, "loss", "kd", kb, MAX_STEPS);
    metric_by_step(a, "loss", "agreement", ga, MAX_STEPS);
    for (int s = 1; s <= 6; s++) {
        cr_expect(fabs(la[s] - lb[s]) <= 1e-4 * fabs(la[s]), "step %d: online %.9g, offline %.9g",
                  s, la[s], lb[s]);
        cr_expect(ka[s] > 0 && fabs(ka[s] - kb[s]) <= 1e-4 * ka[s] + 1e-7,
                  "step %d: kd online %.9g, offline %.9g", s, ka[s], kb[s]);
        cr_expect(ga[s] >= 0 && ga[s] <= 1);
    }
    /* GKD on-policy: every step's completions sampled from the student */
    char onp[512];
    snprintf(onp, sizeof onp, "%s/onpolicy", dir);
    tiny_config(&c, kd, onp);
    snprintf(c.objective.type, sizeof c.objective.type, "kd");
    snprintf(c.kd.teacher, sizeof c.kd.teacher, "%s", teacher);
    c.kd.on_policy = 1.0;
    c.kd.beta = 0.5;
    c.train.steps = 3;
    train_ok(&c, 0);
    double op[MAX_STEPS], lo[MAX_STEPS];
    cr_assert_eq(metric_by_step(onp, "loss", "on_policy", op, MAX_STEPS), 3);
    metric_by_step(onp, "loss", "loss", lo, MAX_STEPS);
    for (int s = 1; s <= 3; s++) {
        cr_expect_eq(op[s], 1.0, "step %d was not on-policy", s);
        cr_expect(isfinite(lo[s]) && lo[s] > 0, "step %d loss %g", s, lo[s]);
    }
    c.kd.on_policy = 0.5;
    c.kd.teacher[0] = 0;
    TrainOptions refused = {0, 1};
    cr_expect_eq(train_run(&c, &refused), -1, "on-policy needs an online teacher");
    cr_expect(strstr(err_msg(), "kd.teacher"), "%s", err_msg());

    /* alpha = 0 is the lm objective exactly */
    tiny_config(&c, kd, b);
    snprintf(c.objective.type, sizeof c.objective.type, "kd");
    c.kd.alpha = 0.0;
    rm_rf(b);
    train_ok(&c, 0);
    tiny_config(&c, kd, c0);
    train_ok(&c, 0);
    double l0[MAX_STEPS];
    metric_by_step(b, "loss", "loss", lb, MAX_STEPS);
    metric_by_step(c0, "loss", "loss", l0, MAX_STEPS);
    for (int s = 1; s <= 6; s++)
        cr_expect(fabs(lb[s] - l0[s]) <= 1e-6 * fabs(l0[s]), "step %d: kd alpha 0 %.9g, lm %.9g",
                  s, lb[s], l0[s]);
    rm_rf(dir);
}

Test(kd, offline_without_topk_or_teacher_is_refused) {
    char dir[256], data[512];
    make_temp_dir(dir, sizeof dir, "kdref");
    snprintf(data, sizeof data, "%s/sft.h5", dir);
    DatasetWriter *w = dataset_writer_open(data, SCHEMA_SFT, 257, 256, 256, "bytes");
    uint32_t tok[6] = {'a', 'b', '=', 'c', 'd', 256};
    uint8_t m[6] = {0, 0, 0, 1, 1, 1};
    for (int i = 0; i < 4; i++) dataset_writer_add(w, tok, m, 6, -1);
    cr_assert_eq(dataset_writer_close(w), 0, "%s", err_msg());
    Config c;
    tiny_config(&c, data, dir);
    snprintf(c.objective.type, sizeof c.objective.type, "kd");
    TrainOptions o = {0, 1};
    cr_expect_eq(train_run(&c, &o), -1);
    cr_expect(strstr(err_msg(), "--store-topk") && strstr(err_msg(), "kd.teacher"), "%s",
              err_msg());
    rm_rf(dir);
}

/* --------------------------------------------------------------------- dpo */

/* n pairs: prompt "xy=", chosen "aaa..", rejected "bbb..": a preference the
 * model can learn from the first completion token on. */
static void write_pairs(const char *path, int n) {
    PrefWriter *pw = pref_writer_open(path, 257, 256, 256, "bytes");
    cr_assert(pw, "%s", err_msg());
    Rng r;
    rng_seed(&r, 5);
    for (int i = 0; i < n; i++) {
        uint32_t p[4] = {'a' + (uint32_t)rng_below(&r, 10), 'a' + (uint32_t)rng_below(&r, 10), '='};
        uint32_t ch[8], rj[8];
        int lc = 2 + (int)rng_below(&r, 4), lr = 2 + (int)rng_below(&r, 4);
        for (int k = 0; k < lc; k++) ch[k] = 'a' + (uint32_t)rng_below(&r, 3);
        for (int k = 0; k < lr; k++) rj[k] = 'x' + (uint32_t)rng_below(&r, 3);
        ch[lc++] = 256;
        rj[lr++] = 256;
        cr_assert_eq(pref_writer_add(pw, p, 3, ch, lc, rj, lr), 0, "%s", err_msg());
    }
    cr_assert_eq(pref_writer_close(pw), 0, "%s", err_msg());
}

static void dpo_config(Config *c, const char *data, const char *init, const char *out) {
    tiny_config(c, data, out);
    snprintf(c->objective.type, sizeof c->objective.type, "dpo");
    snprintf(c->model.init, sizeof c->model.init, "%s", init);
    c->data.seq_len = 12;
    c->data.batch_size = 4;
    c->dpo.beta = 0.5;
    c->optim.lr = 2e-3;
    c->optim.weight_decay = 0;
}

Test(dpo, precomputed_reference_equals_online_and_accuracy_rises, .timeout = 120) {
    char dir[256], data[512], init[512], a[512], b[512];
    make_temp_dir(dir, sizeof dir, "dpo");
    snprintf(data, sizeof data, "%s/pairs.h5", dir);
    snprintf(init, sizeof init, "%s/sft", dir);
    write_pairs(data, 40);
    GPT *m = byte_model(41);
    save_model(m, init);
    gpt_free(m);
    Config c;
    snprintf(a, sizeof a, "%s/online", dir);
    dpo_config(&c, data, init, a);
    c.train.steps = 25;
    train_ok(&c, 0);
    double la[MAX_STEPS], lb[MAX_STEPS], acc[MAX_STEPS], marg[MAX_STEPS];
    cr_assert_eq(metric_by_step(a, "loss", "loss", la, MAX_STEPS), 25);
    metric_by_step(a, "loss", "rewards/accuracies", acc, MAX_STEPS);
    metric_by_step(a, "loss", "rewards/margins", marg, MAX_STEPS);
    cr_expect_float_eq(acc[1], 0.0, 1e-12, "policy = reference at step 1: rewards are all 0");
    cr_expect_float_eq(la[1], log(2.0), 1e-6, "sigmoid loss of a zero margin is log 2");
    double late = (acc[21] + acc[22] + acc[23] + acc[24] + acc[25]) / 5;
    cr_expect_gt(late, 0.8, "rewards/accuracies over the last 5 steps: %.3f", late);
    cr_expect_gt(marg[25], 0.0);
    cr_expect_lt(la[25], la[1]);

    /* the same run against reference log-probs stored in the file */
    TrainOptions o = {0, 1};
    (void)o;
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s dpo precompute-ref --model %s --data %s --seq-len 12 >/dev/null",
             getenv("RETORT_BIN") ? getenv("RETORT_BIN") : "./retort", init, data);
    cr_assert_eq(system(cmd), 0, "precompute-ref failed");
    PrefDataset pd;
    cr_assert_eq(pref_dataset_open(&pd, data), 0, "%s", err_msg());
    cr_expect(pd.ref_logp_chosen != NULL);
    cr_expect_eq(pd.ref_seq_len, 12);
    pref_dataset_close(&pd);
    snprintf(b, sizeof b, "%s/precomputed", dir);
    dpo_config(&c, data, init, b);
    c.train.steps = 25;
    snprintf(c.dpo.reference, sizeof c.dpo.reference, "precomputed");
    train_ok(&c, 0);
    cr_assert_eq(metric_by_step(b, "loss", "loss", lb, MAX_STEPS), 25);
    for (int s = 1; s <= 25; s++)
        cr_expect(fabs(la[s] - lb[s]) <= 1e-6 * fabs(la[s]), "step %d: online %.9g, precomputed "
                  "%.9g", s, la[s], lb[s]);
    /* a run whose truncation differs from the stored one is refused */
    dpo_config(&c, data, init, b);
    snprintf(c.dpo.reference, sizeof c.dpo.reference, "precomputed");
    c.data.seq_len = 10;
    cr_expect_eq(train_run(&c, &o), -1);
    cr_expect(strstr(err_msg(), "precompute-ref"), "%s", err_msg());
    rm_rf(dir);
}

/* The DPO loss of B pairs through the model, as steps.c composes it. */
static double dpo_loss_of(GPT *m, GPT *ref, const DpoParams *p, const int *in, const int *tg,
                          int B, int T, int backward) {
    int rows = 2 * B;
    float *logp = malloc((size_t)rows * T * sizeof(float)), *g = malloc((size_t)rows * T * sizeof(float));
    double sums[16], ref_sums[16], dc[8], dr[8];
    int64_t counts[16];
    DpoPair pairs[8];
    gpt_forward(ref, in, tg, rows, T, logp);
    pref_row_sums(logp, tg, rows, T, ref_sums, counts);
    gpt_forward(m, in, tg, rows, T, logp);
    pref_row_sums(logp, tg, rows, T, sums, counts);
    dpo_pairs_from_rows(sums, ref_sums, counts, B, pairs);
    double loss = dpo_batch_loss(p, pairs, B, dc, dr, NULL);
    if (backward) {
        dpo_spread_weights(dc, dr, B, T, tg, 1.0, g);
        gpt_zero_grad(m);
        gpt_backward(m, g);
    }
    free(logp);
    free(g);
    return loss;
}

Test(dpo, gradient_through_the_model_matches_finite_differences) {
    char dir[256], data[512];
    make_temp_dir(dir, sizeof dir, "dpofd");
    snprintf(data, sizeof data, "%s/pairs.h5", dir);
    write_pairs(data, 6);
    PrefDataset pd;
    cr_assert_eq(pref_dataset_open(&pd, data), 0, "%s", err_msg());
    int B = 3, T = 10;
    PrefLoader pl;
    cr_assert_eq(pref_loader_init(&pl, &pd, T, 0, 0, 1, 0, 0, pd.n_pairs), 0);
    int in[6 * 10], tg[6 * 10];
    pref_loader_next(&pl, B, in, tg, NULL);
    GPT *ref = byte_model(51), *m = byte_model(52);
    size_t n = gpt_flat_size(m);
    float *w = malloc(n * sizeof(float)), *grad = malloc(n * sizeof(float));
    const DpoLossType types[3] = {DPO_SIGMOID, DPO_IPO, DPO_SIMPO};
    for (int k = 0; k < 3; k++) {
        DpoParams p = {types[k], 0.7, 0, 0.3, 0.5};
        dpo_loss_of(m, ref, &p, in, tg, B, T, 1);
        gpt_copy_grads_to_host(m, grad, n);
        gpt_copy_params_to_host(m, w, n);
        /* probe 40 parameters spread over the buffer, in double sums */
        Rng r;
        rng_seed(&r, 60 + k);
        double num = 0, den = 0;
        for (int q = 0; q < 40; q++) {
            size_t i = (size_t)rng_below(&r, n);
            float x = w[i], h = 1e-2f;
            w[i] = x + h;
            gpt_copy_params_to_device(m, w, n);
            double lp = dpo_loss_of(m, ref, &p, in, tg, B, T, 0);
            w[i] = x - h;
            gpt_copy_params_to_device(m, w, n);
            double lm = dpo_loss_of(m, ref, &p, in, tg, B, T, 0);
            w[i] = x;
            double fd = (lp - lm) / ((double)(x + h) - (double)(x - h));
            num += (fd - grad[i]) * (fd - grad[i]);
            den += fd * fd;
        }
        gpt_copy_params_to_device(m, w, n);
        /* fp32 forward: ~1e-7 relative noise in the loss over 2h = 2e-2 gives
         * ~1e-5 absolute; truncation O(h^2); a wrong sign or factor is O(1) */
        cr_expect(sqrt(num / (den > 0 ? den : 1)) < 2e-2, "%s: relative error %.3g",
                  dpo_loss_type_name(types[k]), sqrt(num / (den > 0 ? den : 1)));
        cr_expect_gt(den, 0.0, "the probed gradient is not all zero");
    }
    free(w);
    free(grad);
    gpt_free(m);
    gpt_free(ref);
    pref_loader_free(&pl);
    pref_dataset_close(&pd);
    rm_rf(dir);
}

/* ---------------------------------------------------------- fine-tuning */

static void make_lm(const char *path) {
    DatasetWriter *w = dataset_writer_open(path, SCHEMA_LM, 257, 256, 256, "bytes");
    Rng r;
    rng_seed(&r, 3);
    uint32_t doc[200];
    for (int d = 0; d < 20; d++) {
        int n = 60 + (int)rng_below(&r, 100);
        for (int i = 0; i < n; i++) doc[i] = (uint32_t)('a' + (i * 5 + d) % 26);
        doc[n] = 256;
        dataset_writer_add(w, doc, NULL, n + 1, -1);
    }
    cr_assert_eq(dataset_writer_close(w), 0, "%s", err_msg());
}

Test(finetune, lora_run_resumes_bit_for_bit_and_leaves_the_base_alone, .timeout = 120) {
    char dir[256], data[512], init[512], a[512], b[512];
    make_temp_dir(dir, sizeof dir, "lora");
    snprintf(data, sizeof data, "%s/lm.h5", dir);
    snprintf(init, sizeof init, "%s/base", dir);
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    make_lm(data);
    GPT *base = byte_model(71);
    save_model(base, init);
    Config c;
    tiny_config(&c, data, a);
    snprintf(c.model.init, sizeof c.model.init, "%s", init);
    c.finetune.lora_r = 4;
    c.finetune.lora_alpha = 8;
    c.finetune.lora_dropout = 0.1;
    snprintf(c.finetune.lora_targets, sizeof c.finetune.lora_targets, "c_attn, c_fc");
    c.checkpoint.every = 2;
    train_ok(&c, 0);
    double la[MAX_STEPS], lb[MAX_STEPS];
    cr_assert_eq(metric_by_step(a, "loss", "loss", la, MAX_STEPS), 6);
    char ck[600], path[700];
    ckpt_dir_name(ck, sizeof ck, a, 6);
    snprintf(path, sizeof path, "%s/adapter_config.json", ck);
    cr_expect(path_exists(path), "the checkpoint holds the PEFT adapter");
    /* the base weights in the checkpoint are the initial ones */
    GPT *after = model_load_hf(ck, backend_cpu());
    cr_assert(after, "%s", err_msg());
    size_t n = gpt_flat_size(base);
    float *w0 = malloc(n * sizeof(float)), *w1 = malloc(n * sizeof(float));
    gpt_copy_params_to_host(base, w0, n);
    gpt_copy_params_to_host(after, w1, n);
    cr_expect_eq(memcmp(w0, w1, n * sizeof(float)), 0, "base weights changed");
    free(w0);
    free(w1);
    gpt_free(after);
    gpt_free(base);

    snprintf(c.train.out_dir, sizeof c.train.out_dir, "%s", b);
    train_request_stop_at(3);
    train_ok(&c, 0);
    train_request_stop_at(-1);
    train_ok(&c, 1);
    cr_assert_eq(metric_by_step(b, "loss", "loss", lb, MAX_STEPS), 6);
    for (int s = 1; s <= 6; s++)
        cr_expect(la[s] == lb[s], "step %d: resumed %.17g, uninterrupted %.17g", s, lb[s], la[s]);
    rm_rf(dir);
}

Test(finetune, train_only_pattern_and_bad_pattern) {
    char dir[256], data[512], a[512];
    make_temp_dir(dir, sizeof dir, "freeze");
    snprintf(data, sizeof data, "%s/lm.h5", dir);
    snprintf(a, sizeof a, "%s/a", dir);
    make_lm(data);
    Config c;
    tiny_config(&c, data, a);
    snprintf(c.finetune.train_only, sizeof c.finetune.train_only, "h.1.*, ln_f.*");
    train_ok(&c, 0);
    char ck[600];
    ckpt_dir_name(ck, sizeof ck, a, 6);
    GPT *m = model_load_hf(ck, backend_cpu());
    cr_assert(m, "%s", err_msg());
    GPT *init = random_cpu_model(gpt_config(m), (uint64_t)c.train.seed);
    float *w0 = host_params(init), *w1 = host_params(m);
    for (int i = 0; i < gpt_num_tensors(m); i++) {
        const ParamInfo *p = gpt_tensor(m, i);
        int same = memcmp(w0 + p->offset, w1 + p->offset, p->numel * sizeof(float)) == 0;
        int trains = !strncmp(p->name, "h.1.", 4) || !strncmp(p->name, "ln_f.", 5);
        cr_expect_eq(same, !trains, "%s: %s", p->name, same ? "unchanged" : "changed");
    }
    free(w0);
    free(w1);
    gpt_free(m);
    gpt_free(init);
    snprintf(c.finetune.train_only, sizeof c.finetune.train_only, "h.9.*");
    TrainOptions o = {0, 1};
    cr_expect_eq(train_run(&c, &o), -1);
    cr_expect(strstr(err_msg(), "finetune.train_only") && strstr(err_msg(), "h.9.*"), "%s",
              err_msg());
    rm_rf(dir);
}

/* finetune.lora_targets unset: PEFT's default modules of the family, c_attn
 * for GPT-2 and q_proj, v_proj for a Llama-style model (a GPT-2 default
 * would match no Llama module and stop the run). */
Test(lora, default_targets_follow_the_family) {
    char dir[256], data[512], init[512], out[512], ck[600], path[700];
    make_temp_dir(dir, sizeof dir, "lora-default");
    snprintf(data, sizeof data, "%s/lm.h5", dir);
    make_lm(data);
    for (int llama = 0; llama < 2; llama++) {
        GPTConfig cfg = {.n_layer = 2, .n_head = 2, .n_embd = 32, .vocab_size = 257,
                         .n_positions = 32, .layer_norm_epsilon = 1e-5f, .vocab_pad = 0};
        if (llama) {
            cfg.arch = ARCH_LLAMA;
            cfg.n_kv_head = 1;
            cfg.intermediate_size = 48;
        }
        GPT *base = perturbed_cpu_model(&cfg, 5, 105, 0.05);
        snprintf(init, sizeof init, "%s/base%d", dir, llama);
        snprintf(out, sizeof out, "%s/run%d", dir, llama);
        save_model(base, init);
        gpt_free(base);
        Config c;
        tiny_config(&c, data, out);
        snprintf(c.model.init, sizeof c.model.init, "%s", init);
        c.finetune.lora_r = 2;
        c.finetune.lora_alpha = 4;
        cr_assert_eq(c.finetune.lora_targets[0], '\0', "the key's default is unset");
        train_ok(&c, 0);
        ckpt_dir_name(ck, sizeof ck, out, 6);
        snprintf(path, sizeof path, "%s/adapter_config.json", ck);
        char *text = read_file(path, NULL);
        cr_assert(text, "%s", path);
        if (llama)
            cr_expect(strstr(text, "\"q_proj\"") && strstr(text, "\"v_proj\"") &&
                          !strstr(text, "\"k_proj\""), "%s", text);
        else
            cr_expect(strstr(text, "\"c_attn\"") != NULL, "%s", text);
        free(text);
    }
    rm_rf(dir);
}
