/* tests/test_train.c — whole training runs on a tiny model and dataset:
 * bit-identical resume, fallback past a damaged checkpoint, gradient
 * accumulation equal to one big batch, SIGTERM through the real binary, the
 * run-level input checks (dataset vocabulary, token ids), the one-pass
 * global gradient norm and clipping, the non-finite guard (a diverging run
 * stops naming the step and tensor, never checkpoints NaN weights, keeps
 * metrics.jsonl valid JSON; train.skip_nonfinite), resume after a config
 * change, and the removal of interrupted saves. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <errno.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "data/h5data.h"
#include "tests/testutil.h"
#include "model/backend.h"
#include "model/checkpoint.h"
#include "model/model.h"
#include "model/model_io.h"
#include "model/safetensors.h"
#include "train/optim.h"
#include "train/config.h"
#include "train/trainer.h"

#define MAX_STEPS 64

/* A small lm dataset of pseudo-text over the byte vocabulary. */
static void make_dataset(const char *path, int n_docs, int vocab) {
    DatasetWriter *w = dataset_writer_open(path, SCHEMA_LM, vocab, vocab - 1, vocab - 1, "test");
    cr_assert(w, "%s", err_msg());
    Rng r;
    rng_seed(&r, 7);
    uint32_t doc[300];
    for (int d = 0; d < n_docs; d++) {
        int n = 40 + (int)rng_below(&r, 200);
        for (int i = 0; i < n; i++) /* a little structure so the loss can fall */
            doc[i] = (uint32_t)('a' + (i * 7 + d + (int)rng_below(&r, 3)) % 26);
        doc[n] = (uint32_t)(vocab - 1);
        cr_assert_eq(dataset_writer_add(w, doc, NULL, n + 1, -1), 0, "%s", err_msg());
    }
    cr_assert_eq(dataset_writer_close(w), 0, "%s", err_msg());
}

/* 8 steps of 16 tokens, a checkpoint every 2 */
static void tiny_config(Config *c, const char *data, const char *out_dir) {
    tiny_train_config(c, data, out_dir);
    c->data.seq_len = 16;
    c->optim.warmup_steps = 2;
    c->train.steps = 8;
    c->checkpoint.every = 2;
}

/* Reads the "loss" of each step from metrics.jsonl as text (exact digits). */
static int read_losses(const char *out_dir, char losses[][48]) {
    char path[512];
    snprintf(path, sizeof path, "%s/metrics.jsonl", out_dir);
    FILE *f = fopen(path, "r");
    cr_assert(f, "no %s", path);
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        int step;
        char loss[48];
        if (sscanf(line, "{\"step\": %d, \"loss\": %47[^,]", &step, loss) == 2) {
            cr_assert(step >= 1 && step < MAX_STEPS);
            snprintf(losses[step], 48, "%s", loss);
            if (step > n) n = step;
        }
    }
    fclose(f);
    return n;
}

Test(train, resume_is_bit_identical) {
    char dir[256], data[512], a[512], b[512];
    make_temp_dir(dir, sizeof dir, "resume");
    snprintf(data, sizeof data, "%s/train.h5", dir);
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    make_dataset(data, 30, 257);
    Config c;
    tiny_config(&c, data, a);
    train_ok(&c, 0);
    char la[MAX_STEPS][48], lb[MAX_STEPS][48];
    cr_assert_eq(read_losses(a, la), 8);

    tiny_config(&c, data, b);
    train_request_stop_at(3); /* as if SIGTERM arrived during step 3 */
    train_ok(&c, 0);
    int64_t steps[8];
    cr_assert_eq(ckpt_list(b, steps, 8), 2, "checkpoints at steps 2 and 3 expected");
    cr_expect_eq(steps[0], 3);
    train_request_stop_at(-1);
    train_ok(&c, 1);
    cr_assert_eq(read_losses(b, lb), 8);
    for (int s = 1; s <= 8; s++)
        cr_expect_str_eq(lb[s], la[s], "step %d: resumed loss %s != uninterrupted %s", s, lb[s],
                         la[s]);
    /* the metrics file holds each step once: the resume dropped nothing twice */
    char path[600], line[1024];
    snprintf(path, sizeof path, "%s/metrics.jsonl", b);
    FILE *f = fopen(path, "r");
    int lines = 0;
    while (fgets(line, sizeof line, f)) lines++;
    fclose(f);
    cr_expect_eq(lines, 8, "metrics.jsonl has %d lines", lines);
    rm_rf(dir);
}

Test(train, resume_falls_back_past_a_damaged_checkpoint) {
    char dir[256], data[512], a[512], b[512];
    make_temp_dir(dir, sizeof dir, "fallback");
    snprintf(data, sizeof data, "%s/train.h5", dir);
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    make_dataset(data, 30, 257);
    Config c;
    tiny_config(&c, data, a);
    train_ok(&c, 0);
    char la[MAX_STEPS][48], lb[MAX_STEPS][48];
    read_losses(a, la);

    tiny_config(&c, data, b);
    train_request_stop_at(4);
    train_ok(&c, 0);
    /* cut the newest checkpoint's weights in half */
    char model[600];
    snprintf(model, sizeof model, "%s/step-00000004/model.safetensors", b);
    FILE *f = fopen(model, "r+");
    cr_assert(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    cr_assert_eq(truncate(model, size / 2), 0);
    train_request_stop_at(-1);
    train_ok(&c, 1); /* must resume from step 2 and say so */
    read_losses(b, lb);
    for (int s = 3; s <= 8; s++)
        cr_expect_str_eq(lb[s], la[s], "step %d after fallback: %s != %s", s, lb[s], la[s]);
    rm_rf(dir);
}

Test(train, resume_refuses_when_every_checkpoint_is_damaged) {
    char dir[256], data[512], b[512];
    make_temp_dir(dir, sizeof dir, "alldamaged");
    snprintf(data, sizeof data, "%s/train.h5", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    make_dataset(data, 30, 257);
    Config c;
    tiny_config(&c, data, b);
    c.checkpoint.every = 0;
    train_request_stop_at(2);
    train_ok(&c, 0);
    char path[600];
    snprintf(path, sizeof path, "%s/step-00000002/trainer.json", b);
    cr_assert_eq(write_file_atomic(path, "{\"step\": ", 9), 0);
    train_request_stop_at(-1);
    TrainOptions o = {1, 1};
    cr_expect_eq(train_run(&c, &o), -1);
    cr_expect(strstr(err_msg(), "no loadable checkpoint") != NULL, "message: %s", err_msg());
    rm_rf(dir);
}

Test(train, grad_accumulation_equals_one_big_batch) {
    char dir[256], data[512], a[512], b[512];
    make_temp_dir(dir, sizeof dir, "accum");
    snprintf(data, sizeof data, "%s/train.h5", dir);
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    make_dataset(data, 30, 257);
    Config c;
    tiny_config(&c, data, a);
    c.data.shuffle = 0;
    c.data.batch_size = 4;
    c.train.steps = 5;
    train_ok(&c, 0);
    tiny_config(&c, data, b);
    c.data.shuffle = 0;
    c.data.batch_size = 2;
    c.data.grad_accum = 2;
    c.train.steps = 5;
    train_ok(&c, 0);
    char la[MAX_STEPS][48], lb[MAX_STEPS][48];
    read_losses(a, la);
    read_losses(b, lb);
    for (int s = 1; s <= 5; s++) {
        double x = atof(la[s]), y = atof(lb[s]);
        /* same math, different fp32 summation order in the weight gradients */
        cr_expect(fabs(x - y) <= 1e-5 * fabs(x), "step %d: B=4 %s vs B=2x2 %s", s, la[s], lb[s]);
    }
    rm_rf(dir);
}

/* optim_clip_grad_norm takes the global norm in ONE sum_squares over the whole
 * gradient buffer (one synchronisation on a GPU). That is the norm over the
 * tensors only while the buffer's padding (each tensor's 16-float alignment,
 * wte's padded vocabulary rows) is zero: checked element by element, and the
 * norm against the tensors read one by one (gpt_copy_grads_to_host) in
 * double, on a model whose tensor sizes are not multiples of 16, with frozen
 * tensors, over two accumulated backward passes, and again after
 * gpt_zero_grad. Clipping then scales every gradient by the fp32 coefficient
 * clip / (norm + 1e-6) when that is < 1, as torch.nn.utils.clip_grad_norm_
 * does (clip_coef = max_norm / (total_norm + 1e-6), clamped to 1). */
Test(train, grad_norm_is_one_pass_and_clips_like_torch) {
    GPTConfig cfg = {.n_layer = 2, .n_head = 2, .n_embd = 20, .vocab_size = 257,
                     .n_positions = 24, .layer_norm_epsilon = 1e-5f}; /* 20, 60, 80 wide */
    GPT *m = gpt_create(&cfg, backend_cpu());
    cr_assert(m, "%s", err_msg());
    gpt_init_random(m, 3);
    const char *freeze[] = {"h.0.attn.*", "h.1.ln_1.bias"};
    cr_assert_eq(gpt_set_trainable(m, freeze, 2, NULL, 0), 0, "%s", err_msg());
    AdamWConfig ac = {0.9, 0.95, 1e-8, 0.0, 0.0}; /* clipping off: the norm only */
    Optimizer *o = optim_create(m, &ac);
    cr_assert(o, "%s", err_msg());
    int B = 2, T = 12, N = B * T;
    Rng r;
    rng_seed(&r, 17);
    int in[24], tg[24];
    float g[24];
    size_t n = gpt_flat_size(m), n_grad = gpt_grad_size(m);
    float *host = malloc(n * sizeof(float)), *before = malloc(n_grad * sizeof(float));
    char *is_tensor = calloc(n_grad, 1);
    double norm0 = 0;
    for (int i = 0; i < gpt_num_tensors(m); i++) {
        const ParamInfo *p = gpt_tensor(m, i);
        if (p->trainable) memset(is_tensor + p->grad_offset, 1, p->numel);
    }
    for (int round = 0; round < 2; round++) {
        gpt_zero_grad(m);
        for (int micro = 0; micro < 2; micro++) {
            for (int i = 0; i < N; i++) {
                in[i] = (int)rng_below(&r, 257);
                tg[i] = i % 4 == 0 ? -1 : (int)rng_below(&r, 257);
                g[i] = tg[i] < 0 ? 0.0f : -1.0f / N;
            }
            gpt_forward(m, in, tg, B, T, NULL);
            gpt_backward(m, g);
        }
        const float *buf = gpt_grads(m); /* host memory on the CPU backend */
        for (size_t k = 0; k < n_grad; k++)
            if (!is_tensor[k])
                cr_assert(buf[k] == 0.0f, "gradient padding element %zu is %g, not 0", k, buf[k]);
        gpt_copy_grads_to_host(m, host, n);
        double ss = 0;
        for (int i = 0; i < gpt_num_tensors(m); i++) {
            const ParamInfo *p = gpt_tensor(m, i);
            double t = 0;
            const float *x = host + p->offset;
            for (size_t j = 0; j < p->numel; j++) t += (double)x[j] * x[j];
            if (!p->trainable) cr_assert(t == 0, "frozen %s has a gradient", p->name);
            ss += t;
        }
        norm0 = optim_clip_grad_norm(o);
        cr_expect(ss > 0 && fabs(norm0 - sqrt(ss)) <= 1e-12 * sqrt(ss),
                  "round %d: one-pass norm %.17g, tensor by tensor %.17g", round, norm0, sqrt(ss));
    }
    optim_free(o);

    /* clipping: max_norm a third of the norm scales by the fp32 coefficient;
     * max_norm above the norm leaves the gradients alone */
    memcpy(before, gpt_grads(m), n_grad * sizeof(float));
    const double clips[2] = {norm0 / 3, norm0 * 2};
    for (int c = 0; c < 2; c++) {
        memcpy(gpt_grads(m), before, n_grad * sizeof(float));
        AdamWConfig clip = {0.9, 0.95, 1e-8, 0.0, clips[c]};
        Optimizer *q = optim_create(m, &clip);
        double got = optim_clip_grad_norm(q);
        cr_expect(got == norm0, "clip_grad_norm returns the norm before clipping: %.17g vs %.17g",
                  got, norm0);
        double coef = clips[c] / (norm0 + 1e-6);
        const float *after = gpt_grads(m);
        for (size_t k = 0; k < n_grad; k++) {
            float want = coef < 1.0 ? before[k] * (float)coef : before[k];
            cr_assert(after[k] == want, "max_norm %g: gradient %zu is %.9g, want %.9g", clips[c],
                      k, after[k], want);
        }
        if (coef < 1.0) { /* the clipped norm is max_norm, up to the 1e-6 */
            AdamWConfig none = {0.9, 0.95, 1e-8, 0.0, 0.0};
            Optimizer *z = optim_create(m, &none);
            double clipped = optim_clip_grad_norm(z);
            cr_expect(fabs(clipped - clips[c]) <= 1e-6 * clips[c] + 1e-6,
                      "norm after clipping %.9g, max_norm %.9g", clipped, clips[c]);
            optim_free(z);
        }
        optim_free(q);
    }
    free(host), free(before), free(is_tensor);
    gpt_free(m);
}

/* A token id outside [0, vocab_size) would make any backend read outside wte
 * (the CUDA gather has no bounds check): the model ends the run with a message
 * before anything runs on the device. Targets may be negative (no target). */
static void forward_with_ids(int bad_input, int bad_target) {
    GPTConfig cfg = {.n_layer = 1, .n_head = 1, .n_embd = 16, .vocab_size = 50,
                     .n_positions = 8, .layer_norm_epsilon = 1e-5f};
    GPT *m = gpt_create(&cfg, backend_cpu());
    cr_assert(m, "%s", err_msg());
    int in[8] = {1, 2, 3, 4, 5, 6, 7, 8}, tg[8] = {-1, 3, 4, 5, 6, 7, 8, 9};
    float logp[8];
    in[5] = bad_input;
    tg[6] = bad_target;
    gpt_forward(m, in, tg, 1, 8, logp);
    gpt_free(m);
}

Test(train, token_ids_in_range_run) { forward_with_ids(49, -1); }
Test(train, input_id_at_vocab_size_ends_the_run, .exit_code = 1) { forward_with_ids(50, 7); }
Test(train, negative_input_id_ends_the_run, .exit_code = 1) { forward_with_ids(-1, 7); }
Test(train, target_id_at_vocab_size_ends_the_run, .exit_code = 1) { forward_with_ids(7, 50); }

Test(train, rejects_dataset_vocab_larger_than_model) {
    char dir[256], data[512];
    make_temp_dir(dir, sizeof dir, "vocab");
    snprintf(data, sizeof data, "%s/train.h5", dir);
    make_dataset(data, 10, 300);
    Config c;
    tiny_config(&c, data, dir);
    TrainOptions o = {0, 1};
    cr_expect_eq(train_run(&c, &o), -1);
    cr_expect(strstr(err_msg(), "vocab_size") && strstr(err_msg(), "train.h5"), "message: %s",
              err_msg());
    rm_rf(dir);
}

Test(train, sigterm_checkpoints_and_exits_zero) {
    char dir[256], data[512], out[512], cfg[512];
    make_temp_dir(dir, sizeof dir, "sigterm");
    snprintf(data, sizeof data, "%s/train.h5", dir);
    snprintf(out, sizeof out, "%s/run", dir);
    snprintf(cfg, sizeof cfg, "%s/c.yaml", dir);
    make_dataset(data, 30, 257);
    FILE *f = fopen(cfg, "w");
    fprintf(f,
            "model: {n_layer: 2, n_head: 2, n_embd: 32, vocab_size: 257, n_positions: 32}\n"
            "data: {train: \"%s\", seq_len: 16, batch_size: 2}\n"
            "train: {steps: 100000, out_dir: \"%s\", threads: 1}\n",
            data, out);
    fclose(f);
    pid_t pid = fork();
    if (pid == 0) {
        freopen("/dev/null", "w", stdout);
        const char *bin = getenv("RETORT_BIN") ? getenv("RETORT_BIN") : "./retort";
        execl(bin, "retort", "train", "-c", cfg, (char *)NULL);
        _exit(127);
    }
    char metrics[600];
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", out);
    for (int i = 0; i < 600; i++) { /* wait (up to 60 s) for a few steps */
        struct stat st;
        if (stat(metrics, &st) == 0 && st.st_size > 300) break;
        usleep(100000);
    }
    kill(pid, SIGTERM);
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFEXITED(status), "retort did not exit normally (status %d)", status);
    cr_expect_eq(WEXITSTATUS(status), 0);
    int64_t steps[4];
    cr_assert_eq(ckpt_list(out, steps, 4), 1, "one checkpoint expected after SIGTERM");
    /* the checkpoint is of the last logged step */
    FILE *m = fopen(metrics, "r");
    char line[1024];
    int step = 0, s;
    while (fgets(line, sizeof line, m))
        if (sscanf(line, "{\"step\": %d", &s) == 1) step = s;
    fclose(m);
    cr_expect_eq(steps[0], step, "checkpoint step %lld vs last logged step %d",
                 (long long)steps[0], step);
    rm_rf(dir);
}

/* A full disk while checkpointing: the run stops with a message naming the
 * cause, no half-written checkpoint is left listed, and the last complete one
 * still loads. Needs root to mount a small tmpfs; skips visibly otherwise. */
Test(train, full_disk_keeps_the_last_checkpoint_loadable) {
    char dir[256], data[512], disk[512], out[600];
    make_temp_dir(dir, sizeof dir, "fulldisk");
    snprintf(data, sizeof data, "%s/train.h5", dir);
    snprintf(disk, sizeof disk, "%s/disk", dir);
    snprintf(out, sizeof out, "%s/run", disk);
    make_dataset(data, 30, 257);
    mkdir(disk, 0755);
    /* one checkpoint of this model is ~0.6 MB (weights + two moments) */
    if (mount("tmpfs", disk, "tmpfs", 0, "size=1500k") != 0) {
        fprintf(stderr, "SKIP: full-disk test: cannot mount a small tmpfs (%s); needs root\n",
                strerror(errno));
        rm_rf(dir);
        cr_skip_test("cannot mount tmpfs");
    }
    Config c;
    tiny_config(&c, data, out);
    c.checkpoint.every = 1;
    TrainOptions o = {0, 1};
    int rc = train_run(&c, &o);
    char msg[4096];
    snprintf(msg, sizeof msg, "%s", err_msg());
    int64_t steps[16];
    int n = ckpt_list(out, steps, 16);
    GPT *m = NULL;
    if (n > 0) {
        char last[700];
        ckpt_dir_name(last, sizeof last, out, steps[0]);
        m = model_load_hf(last, backend_cpu());
    }
    umount(disk);
    cr_expect_eq(rc, -1, "training should stop when the disk is full");
    cr_expect(strstr(msg, "No space left") != NULL, "message: %s", msg);
    cr_expect(n >= 1, "the checkpoints written before the disk filled are kept");
    cr_expect(m != NULL, "the newest complete checkpoint loads: %s", err_msg());
    gpt_free(m);
    rm_rf(dir);
}

/* ---------------------------------------------------------------- non-finite values */

/* Every line of out_dir/metrics.jsonl parses as JSON (no nan or inf tokens);
 * returns the number of lines and of lines with "skipped": true. */
static int metrics_lines_are_json(const char *out_dir, int *skipped) {
    char path[600], line[4096];
    snprintf(path, sizeof path, "%s/metrics.jsonl", out_dir);
    FILE *f = fopen(path, "r");
    cr_assert(f, "no %s", path);
    int n = 0;
    *skipped = 0;
    while (fgets(line, sizeof line, f)) {
        json_error_t jerr;
        json_t *j = json_loads(line, 0, &jerr);
        cr_expect(j != NULL, "%s line %d is not JSON (%s): %s", path, n + 1, jerr.text, line);
        if (j && json_is_true(json_object_get(j, "skipped"))) (*skipped)++;
        json_decref(j);
        n++;
    }
    fclose(f);
    return n;
}

/* Every value of every tensor of dir/name is finite. */
static void expect_finite_file(const char *dir, const char *name) {
    char path[700];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    SafeTensorsFile *f = safetensors_open(path);
    cr_assert(f, "%s", err_msg());
    for (int i = 0; i < safetensors_count(f); i++) {
        const StTensor *t = safetensors_get(f, i);
        size_t n = (size_t)st_numel(t);
        float *x = malloc((n ? n : 1) * sizeof(float));
        cr_assert_eq(safetensors_read_f32(f, t, x, n), 0, "%s", err_msg());
        size_t bad = 0;
        for (size_t k = 0; k < n; k++) bad += !isfinite(x[k]);
        cr_expect_eq(bad, 0, "%s: tensor %s holds %zu non-finite values", path, t->name, bad);
        free(x);
    }
    safetensors_close(f);
}

/* Every complete checkpoint in run loads, and its weights and optimizer state
 * are finite. Returns how many there are; their steps in steps. */
static int expect_finite_checkpoints(const char *run, int64_t *steps, int max) {
    int n = ckpt_list(run, steps, max);
    for (int i = 0; i < n; i++) {
        char dir[700];
        ckpt_dir_name(dir, sizeof dir, run, steps[i]);
        GPT *m = model_load_hf(dir, backend_cpu());
        cr_expect(m, "%s does not load: %s", dir, err_msg());
        gpt_free(m);
        expect_finite_file(dir, "model.safetensors");
        expect_finite_file(dir, "optimizer.safetensors");
    }
    return n;
}

/* The step the message names ("step N: ..."), or -1. */
static int step_named(const char *msg) {
    const char *p = strstr(msg, "step ");
    int step = -1;
    return p && sscanf(p, "step %d:", &step) == 1 ? step : -1;
}

/* lr 1e6 makes the gradient NaN within a few steps (the loss first grows to
 * 1e18). The run must stop at that step with its number and the first NaN
 * gradient named, exit non-zero, leave only finite checkpoints (one every
 * step) with the newest named for --resume, and log the bad step with null,
 * not "nan", in metrics.jsonl. */
Test(train, diverging_lr_stops_without_a_nonfinite_checkpoint) {
    char dir[256], data[512], out[512];
    make_temp_dir(dir, sizeof dir, "diverge");
    snprintf(data, sizeof data, "%s/train.h5", dir);
    snprintf(out, sizeof out, "%s/run", dir);
    make_dataset(data, 30, 257);
    Config c;
    tiny_config(&c, data, out);
    c.optim.lr = 1e6;
    c.optim.warmup_steps = 0;
    c.train.steps = 30;
    c.checkpoint.every = 1;
    TrainOptions o = {0, 1};
    cr_assert_eq(train_run(&c, &o), -1, "a diverging run must fail");
    char msg[4096];
    snprintf(msg, sizeof msg, "%s", err_msg());
    int bad = step_named(msg);
    cr_assert(bad > 1 && bad < 30, "the message names the step: %s", msg);
    assert_contains(msg, "first non-finite gradient: ");
    assert_contains(msg, "optim.lr");
    int64_t steps[64];
    int n = expect_finite_checkpoints(out, steps, 64);
    cr_expect_eq(n, bad - 1, "one checkpoint per good step, none of step %d", bad);
    cr_expect_eq(steps[0], bad - 1);
    char newest[700];
    ckpt_dir_name(newest, sizeof newest, out, steps[0]);
    assert_contains(msg, newest); /* where --resume continues */
    int skipped, lines = metrics_lines_are_json(out, &skipped);
    cr_expect_eq(lines, bad, "a line per step up to the bad one");
    cr_expect_eq(skipped, 1, "the bad step is marked as not applied");
    rm_rf(dir);
}

/* lr 1e39 is beyond fp32: the first update makes the weights infinite while
 * that step's loss and gradient were finite. Neither the checkpoint at the
 * end of the run nor the one of a stop (SIGTERM) may be written. */
Test(train, nonfinite_weights_are_never_checkpointed) {
    char dir[256], data[512], out[512];
    make_temp_dir(dir, sizeof dir, "infweights");
    snprintf(data, sizeof data, "%s/train.h5", dir);
    snprintf(out, sizeof out, "%s/run", dir);
    make_dataset(data, 30, 257);
    for (int stop = 0; stop < 2; stop++) {
        Config c;
        tiny_config(&c, data, out);
        c.optim.lr = c.optim.min_lr = 1e39; /* whatever the schedule does at step 1 */
        c.optim.warmup_steps = 0;
        c.train.steps = stop ? 10 : 1; /* the end of the run, or a stop after step 1 */
        c.checkpoint.every = 0;
        train_request_stop_at(stop ? 1 : -1);
        TrainOptions o = {0, 1};
        int rc = train_run(&c, &o);
        train_request_stop_at(-1);
        cr_expect_eq(rc, -1, "%s: weights went infinite, the run must fail",
                     stop ? "stop" : "end");
        assert_contains(err_msg(), "step 1: the weights hold NaN or infinite values");
        assert_contains(err_msg(), "first in ");
        int64_t steps[4];
        cr_expect_eq(expect_finite_checkpoints(out, steps, 4), 0, "no checkpoint written");
        int skipped;
        cr_expect_eq(metrics_lines_are_json(out, &skipped), 1);
        rm_rf(out);
    }
    rm_rf(dir);
}

/* train.skip_nonfinite = 2: the first two bad steps are skipped — no update,
 * so the checkpoint after a skipped step holds exactly the weights of the one
 * before — and the third stops the run as without the option. */
Test(train, skip_nonfinite_skips_then_stops) {
    char dir[256], data[512], out[512];
    make_temp_dir(dir, sizeof dir, "skipnan");
    snprintf(data, sizeof data, "%s/train.h5", dir);
    snprintf(out, sizeof out, "%s/run", dir);
    make_dataset(data, 30, 257);
    Config c;
    tiny_config(&c, data, out);
    c.optim.lr = 1e6;
    c.optim.warmup_steps = 0;
    c.train.steps = 30;
    c.checkpoint.every = 1;
    c.train.skip_nonfinite = 2;
    TrainOptions o = {0, 1};
    cr_assert_eq(train_run(&c, &o), -1, "the third bad step must stop the run");
    char msg[4096];
    snprintf(msg, sizeof msg, "%s", err_msg());
    assert_contains(msg, "train.skip_nonfinite=2 steps were skipped already");
    int stopped = step_named(msg);
    int64_t steps[64];
    int n = expect_finite_checkpoints(out, steps, 64);
    cr_assert_eq(n, stopped - 1, "a checkpoint for every step before %d: %d", stopped, n);
    int skipped, lines = metrics_lines_are_json(out, &skipped);
    cr_expect_eq(lines, stopped);
    cr_expect_eq(skipped, 3, "two skipped steps and the one that stopped the run");
    /* the two skipped steps are the two before the stop: no update in them */
    char a[700], b[700];
    for (int k = stopped - 2; k < stopped; k++) {
        ckpt_dir_name(a, sizeof a, out, k - 1);
        ckpt_dir_name(b, sizeof b, out, k);
        GPT *ma = model_load_hf(a, backend_cpu()), *mb = model_load_hf(b, backend_cpu());
        cr_assert(ma && mb, "%s", err_msg());
        float *wa = host_params(ma), *wb = host_params(mb);
        cr_expect_eq(memcmp(wa, wb, gpt_flat_size(ma) * sizeof(float)), 0,
                     "skipped step %d changed the weights", k);
        free(wa);
        free(wb);
        gpt_free(ma);
        gpt_free(mb);
    }
    /* the skips are counted in the checkpoint: a resume has no budget left */
    TrainOptions r = {1, 1};
    cr_expect_eq(train_run(&c, &r), -1);
    assert_contains(err_msg(), "train.skip_nonfinite=2 steps were skipped already");
    rm_rf(dir);
}

/* A checkpoint with NaN weights (as retort wrote before it refused to) is
 * passed over on resume like a damaged one. */
Test(train, resume_passes_over_a_nonfinite_checkpoint) {
    char dir[256], data[512], a[512], b[512];
    make_temp_dir(dir, sizeof dir, "resumenan");
    snprintf(data, sizeof data, "%s/train.h5", dir);
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    make_dataset(data, 30, 257);
    Config c;
    tiny_config(&c, data, a);
    train_ok(&c, 0);
    char la[MAX_STEPS][48], lb[MAX_STEPS][48];
    read_losses(a, la);
    tiny_config(&c, data, b);
    train_request_stop_at(4);
    train_ok(&c, 0);
    train_request_stop_at(-1);
    char newest[700];
    ckpt_dir_name(newest, sizeof newest, b, 4);
    GPT *m = model_load_hf(newest, backend_cpu());
    cr_assert(m, "%s", err_msg());
    float *w = host_params(m);
    w[gpt_find_tensor(m, "h.1.mlp.c_fc.weight")->offset + 5] = NAN;
    gpt_copy_params_to_device(m, w, gpt_flat_size(m));
    cr_assert_eq(model_save_hf(m, newest), 0, "%s", err_msg());
    free(w);
    gpt_free(m);
    train_ok(&c, 1); /* from step 2 */
    read_losses(b, lb);
    for (int s = 3; s <= 8; s++)
        cr_expect_str_eq(lb[s], la[s], "step %d after passing over the NaN checkpoint", s);
    rm_rf(dir);
}

/* ---------------------------------------------------------------- resume after a config change */

/* A resume whose config changes the model's shape names the key, its two
 * values and the ways forward, and never calls the checkpoints damaged or
 * asks for them to be deleted; a change of train.steps and optim.lr resumes. */
Test(train, resume_after_a_config_change_names_what_changed) {
    char dir[256], data[512], out[512];
    make_temp_dir(dir, sizeof dir, "cfgchange");
    snprintf(data, sizeof data, "%s/train.h5", dir);
    snprintf(out, sizeof out, "%s/run", dir);
    make_dataset(data, 30, 257);
    Config c;
    tiny_config(&c, data, out);
    c.train.steps = 4;
    train_ok(&c, 0);
    c.model.n_embd = 64;
    c.train.steps = 6;
    TrainOptions o = {1, 1};
    cr_assert_eq(train_run(&c, &o), -1);
    const char *msg = err_msg();
    assert_contains(msg, "model.n_embd 32 -> 64");
    assert_contains(msg, "set it back");
    assert_contains(msg, "another train.out_dir");
    assert_contains(msg, "nothing was deleted");
    cr_expect(!strstr(msg, "damaged") && !strstr(msg, "remove") && !strstr(msg, "delete them"),
              "the checkpoints are good; the message says otherwise: %s", msg);
    int64_t steps[8];
    cr_expect_eq(ckpt_list(out, steps, 8), 2, "both checkpoints are still there");
    c.model.n_embd = 32;
    c.optim.lr = 1e-3;
    train_ok(&c, 1);
    cr_expect_eq(ckpt_list(out, steps, 8), 3);
    cr_expect_eq(steps[0], 6);
    rm_rf(dir);
}

/* A run removes the .tmp directories an interrupted save left in its
 * train.out_dir, and only those. */
Test(train, a_run_removes_interrupted_saves) {
    char dir[256], data[512], out[512], path[700];
    make_temp_dir(dir, sizeof dir, "staletmp");
    snprintf(data, sizeof data, "%s/train.h5", dir);
    snprintf(out, sizeof out, "%s/run", dir);
    make_dataset(data, 30, 257);
    cr_assert_eq(mkdir_p(out), 0);
    snprintf(path, sizeof path, "%s/step-00000040.tmp", out);
    cr_assert_eq(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/mine.tmp", out);
    cr_assert_eq(mkdir(path, 0755), 0);
    Config c;
    tiny_config(&c, data, out);
    c.train.steps = 2;
    train_ok(&c, 0);
    snprintf(path, sizeof path, "%s/step-00000040.tmp", out);
    cr_expect(!path_exists(path), "the interrupted save is still there");
    snprintf(path, sizeof path, "%s/mine.tmp", out);
    cr_expect(path_exists(path), "a directory that is not a save was removed");
    rm_rf(dir);
}
