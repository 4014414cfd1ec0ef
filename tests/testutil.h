/* tests/testutil.h — helpers shared by the Criterion tests: random inputs,
 * relative errors, temporary directories and files, skipping when ../shared is
 * absent, tiny CPU models and a tiny training run. Each helper takes every
 * value a test's assertions depend on (shape, seeds, scale) from its caller.
 * Tests run from the repository root (scripts/run_tests.sh does that). */
#ifndef RETORT_TESTUTIL_H
#define RETORT_TESTUTIL_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/backend.h"
#include "model/model.h"
#include "train/config.h"
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
