/* tests/testutil.h — helpers shared by the Criterion tests: random inputs,
 * relative errors, temporary directories and files, skipping when ../shared is
 * absent, tiny CPU models, their loss and logits, a tiny training run and the
 * metrics.jsonl it logs. Each helper takes every value a test's assertions
 * depend on (shape, seeds, scale) from its caller. Tests run from the
 * repository root (scripts/run_tests.sh does that).
 *
 * Narrower scaffolding has its own header: testutil_ops.h (finite-difference
 * checks of the ops), testutil_hf.h (transformers fixtures of whole models),
 * testutil_cli.h (running the retort binary and .venv's python). */
#ifndef RETORT_TESTUTIL_H
#define RETORT_TESTUTIL_H

#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/backend.h"
#include "model/model.h"
#include "train/config.h"
#include "train/objectives/lm.h"
#include "train/trainer.h"
#include "util/util.h"

/* Uniform in [-scale, scale). */
static inline void fill_uniform(Rng *r, float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = (float)((rng_uniform(r) * 2.0 - 1.0) * scale);
}

/* ||a - b|| / max(||b||, tiny) in double. */
static inline double rel_err(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    return sqrt(num) / (den > 1e-300 ? sqrt(den) : 1e-150);
}

static inline double max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > m || d != d) m = d;
    }
    return m;
}

/* Adds N(0, scale^2) noise to every parameter of a host copy of m's flat
 * buffer (gpt_copy_params_to_host), so biases and gains leave their trivial
 * init. The noise is drawn tensor by tensor over 16-aligned spans, the values
 * landing on padding discarded: the model does not depend on how the buffer
 * pads (wte's padded vocabulary rows must stay zero). */
static inline void perturb_params_host(const GPT *m, float *w, Rng *r, double scale) {
    for (int t = 0; t < gpt_num_tensors(m); t++) {
        const ParamInfo *p = gpt_tensor(m, t);
        for (size_t i = 0; i < ((p->numel + 15) & ~(size_t)15); i++) {
            float e = (float)(scale * rng_normal(r));
            if (i < p->numel) w[p->offset + i] += e;
        }
    }
}

/* ---- models ---- */

/* A model of shape cfg on the CPU backend, initialised with gpt_init_random(seed). */
static inline GPT *random_cpu_model(const GPTConfig *cfg, uint64_t seed) {
    GPT *m = gpt_create(cfg, backend_cpu());
    cr_assert_not_null(m, "gpt_create: %s", err_msg());
    gpt_init_random(m, seed);
    return m;
}

/* A host copy of m's flat parameter / gradient buffer (gpt_flat_size floats;
 * free it). */
static inline float *host_params(GPT *m) {
    size_t n = gpt_flat_size(m);
    float *w = xmalloc(n * sizeof(float));
    gpt_copy_params_to_host(m, w, n);
    return w;
}

static inline float *host_grads(GPT *m) {
    size_t n = gpt_flat_size(m);
    float *g = xmalloc(n * sizeof(float));
    gpt_copy_grads_to_host(m, g, n);
    return g;
}

/* random_cpu_model(cfg, init_seed) with every parameter then moved by
 * N(0, scale^2) noise drawn from noise_seed (perturb_params_host): weights
 * larger than the 0.02 init, so the model has opinions (logits far from
 * uniform), and biases and gains away from their trivial init. */
static inline GPT *perturbed_cpu_model(const GPTConfig *cfg, uint64_t init_seed,
                                       uint64_t noise_seed, double scale) {
    GPT *m = random_cpu_model(cfg, init_seed);
    float *w = host_params(m);
    Rng r;
    rng_seed(&r, noise_seed);
    perturb_params_host(m, w, &r, scale);
    gpt_copy_params_to_device(m, w, gpt_flat_size(m));
    free(w);
    return m;
}

/* Gives every LoRA B matrix of m (ParamInfo.lora == 2) N(0, 0.3^2) values
 * drawn from seed: B starts at zero, which makes a fresh adapter a no-op. */
static inline void randomise_lora_b(GPT *m, uint64_t seed) {
    float *h = host_params(m);
    Rng r;
    rng_seed(&r, seed);
    for (int i = 0; i < gpt_num_tensors(m); i++) {
        const ParamInfo *p = gpt_tensor(m, i);
        if (p->lora == 2)
            for (size_t k = 0; k < p->numel; k++) h[p->offset + k] = (float)(0.3 * rng_normal(&r));
    }
    gpt_copy_params_to_device(m, h, gpt_flat_size(m));
    free(h);
}

/* n token ids uniform in [0, V), drawn from seed. */
static inline void random_tokens(int *x, int n, int V, uint64_t seed) {
    Rng r;
    rng_seed(&r, seed);
    for (int i = 0; i < n; i++) x[i] = (int)rng_below(&r, (uint64_t)V);
}

/* The mean cross-entropy of m on a (B, T) batch (lm_loss_and_weights), and
 * its backward when `backward` (into the gradients already there: the caller
 * zeroes them when it wants a fresh gradient). */
static inline double lm_loss_of(GPT *m, const int *in, const int *tg, int B, int T,
                                int backward) {
    int N = B * T;
    float *logp = xmalloc(N * sizeof(float)), *g = xmalloc(N * sizeof(float));
    gpt_forward(m, in, tg, B, T, logp);
    double loss = lm_loss_and_weights(logp, tg, N, (double)lm_count_targets(tg, N), g);
    if (backward) gpt_backward(m, g);
    free(logp);
    free(g);
    return loss;
}

/* The logits of m on a (B, T) batch, (B, T, vocab_size) floats (free them). */
static inline float *logits_of(GPT *m, const int *in, int B, int T) {
    int *tg = xcalloc((size_t)B * T, sizeof(int));
    gpt_forward(m, in, tg, B, T, NULL);
    float *l = xmalloc((size_t)B * T * gpt_config(m)->vocab_size * sizeof(float));
    gpt_logits(m, l);
    free(tg);
    return l;
}

/* ---- training ---- */

/* The config of a tiny CPU run on the byte vocabulary: a 2-layer, 2-head,
 * 32-wide model over 32 positions, batches of 2, lr 3e-3 decaying to 3e-4, 2
 * threads, training data `data`, output in out_dir, every checkpoint kept.
 * The caller sets what its test is about (seq_len, steps, warmup, checkpoint
 * interval, objective, ...). */
static inline void tiny_train_config(Config *c, const char *data, const char *out_dir) {
    config_defaults(c);
    c->model.n_layer = 2;
    c->model.n_head = 2;
    c->model.n_embd = 32;
    c->model.vocab_size = 257;
    c->model.n_positions = 32;
    snprintf(c->data.train, sizeof c->data.train, "%s", data);
    c->data.batch_size = 2;
    c->optim.lr = 3e-3;
    c->optim.min_lr = 3e-4;
    c->train.threads = 2;
    snprintf(c->train.out_dir, sizeof c->train.out_dir, "%s", out_dir);
    c->checkpoint.keep = 0;
}

/* train_run(c), resuming when `resume`, quietly; the test fails unless it succeeds. */
static inline void train_ok(const Config *c, int resume) {
    TrainOptions o = {resume, 1};
    cr_assert_eq(train_run(c, &o), 0, "train_run failed: %s", err_msg());
}

/* The lines of a JSONL file (metrics.jsonl, generate --out) as a JSON array;
 * decref it. */
static inline json_t *jsonl_lines(const char *path) {
    FILE *f = fopen(path, "r");
    cr_assert(f, "no %s", path);
    json_t *all = json_array(), *j;
    json_error_t e;
    while ((j = json_loadf(f, JSON_DISABLE_EOF_CHECK, &e))) json_array_append_new(all, j);
    fclose(f);
    return all;
}

static inline json_t *metrics_lines(const char *out_dir) {
    char path[1200];
    int len = snprintf(path, sizeof path, "%s/metrics.jsonl", out_dir);
    cr_assert(len < (int)sizeof path, "path too long: %s/metrics.jsonl", out_dir);
    return jsonl_lines(path);
}

/* The numbers at `key` on the lines of out_dir/metrics.jsonl that have
 * `line_key` ("loss" on training lines, "val_loss" on validation lines,
 * "step" on every step's line), in file order: at most max of them into out;
 * returns how many. */
static inline int metric_values(const char *out_dir, const char *line_key, const char *key,
                                double *out, int max) {
    json_t *lines = metrics_lines(out_dir), *j;
    size_t i;
    int n = 0;
    json_array_foreach(lines, i, j) {
        json_t *v = json_object_get(j, key);
        if (json_is_number(v) && json_object_get(j, line_key) && n < max)
            out[n++] = json_number_value(v);
    }
    json_decref(lines);
    return n;
}

/* The values at `key` on the same lines indexed by their step (0 for a value
 * that is not a number): v[step] for each step in [1, max_step), v[0] and the
 * steps not logged left as they were; returns the last step. */
static inline int metric_by_step(const char *out_dir, const char *line_key, const char *key,
                                 double *v, int max_step) {
    json_t *lines = metrics_lines(out_dir), *j;
    size_t i;
    int n = 0;
    json_array_foreach(lines, i, j) {
        json_t *x = json_object_get(j, key);
        int step = (int)json_integer_value(json_object_get(j, "step"));
        if (x && json_object_get(j, line_key) && step >= 1 && step < max_step) {
            v[step] = json_number_value(x);
            if (step > n) n = step;
        }
    }
    json_decref(lines);
    return n;
}

/* ---- files ---- */

static inline void write_bytes(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot create %s", path);
    cr_assert_eq(fwrite(data, 1, len, f), len);
    fclose(f);
}

static inline void write_text(const char *path, const char *text) {
    write_bytes(path, text, strlen(text));
}

/* An error message (or any text) names `needle`. */
static inline void assert_contains(const char *haystack, const char *needle) {
    cr_assert(strstr(haystack, needle) != NULL, "message lacks \"%s\": %s", needle, haystack);
}

/* Creates a fresh directory under /tmp and writes its path into buf. */
static inline void make_temp_dir(char *buf, size_t cap, const char *tag) {
    snprintf(buf, cap, "/tmp/retort-test-%s-XXXXXX", tag);
    if (!mkdtemp(buf)) {
        perror("mkdtemp");
        abort();
    }
}

/* Path of a file under ../shared/data, or NULL (with a visible message) when the
 * shared folder is absent so the caller can cr_skip_test(). */
static inline const char *shared_data_path(char *buf, size_t cap, const char *rel) {
    snprintf(buf, cap, "../shared/data/%s", rel);
    if (access(buf, R_OK) != 0) {
        fprintf(stderr, "SKIP: %s not found (../shared is absent)\n", buf);
        return NULL;
    }
    return buf;
}

#endif
