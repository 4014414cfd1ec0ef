/* tests/testutil_hf.h — a whole model beside what transformers computed from
 * it, for tests/test_model_hf.c (GPT-2, fixtures of tests/make_hf_fixtures.py)
 * and tests/test_families.c (the Llama families and GPT-2's options, fixtures
 * of tests/make_family_fixtures.py). Both fixture scripts write the same
 * names: the batch ("inputs", "targets"; torch's ignore_index -100 read as our
 * -1), "loss", "logits", the AdamW recipe ("adamw_*" metadata) and the losses
 * of its steps, and the generations from the trained weights ("gen_prompt",
 * "gen_greedy", "gen_beam3", "gen_beam3_scores"). Each test loads its own
 * model; the comparisons that read these names are here.
 *
 * Tolerances (both sides fp32): logits and loss 1e-5 relative (summation
 * order); AdamW losses 1e-4 relative after ten steps, each step's rounding
 * feeding the next; greedy tokens exactly (the fixture scripts refuse near
 * ties); beam scores 1e-4 relative. */
#ifndef RETORT_TESTUTIL_HF_H
#define RETORT_TESTUTIL_HF_H

#include "model/generate.h"
#include "model/safetensors.h"
#include "tests/testutil.h"
#include "train/optim.h"

typedef struct {
    SafeTensorsFile *f; /* what transformers computed */
    GPT *m;             /* the model it computed it from, as this test loads it */
    int B, T, V;        /* the batch's shape and the vocabulary */
} HfFixture;

static inline void free_fixture(HfFixture *fx) {
    gpt_free(fx->m);
    safetensors_close(fx->f);
}

static inline const StTensor *need(SafeTensorsFile *f, const char *name) {
    const StTensor *t = safetensors_find(f, name);
    cr_assert(t, "fixture tensor '%s' missing (regenerate with `make fixtures`)", name);
    return t;
}

static inline void read_f32(SafeTensorsFile *f, const char *name, float *dst, size_t n) {
    cr_assert_eq(safetensors_read_f32(f, need(f, name), dst, n), 0, "%s: %s", name, err_msg());
}

/* n int32 values of `name`, torch's ignore_index -100 turned into our -1. */
static inline void read_i32(SafeTensorsFile *f, const char *name, int *dst, size_t n) {
    const StTensor *t = need(f, name);
    cr_assert_eq(t->dtype, ST_I32, "%s is not int32", name);
    cr_assert_eq((size_t)st_numel(t), n, "%s has %lld elements, want %zu", name,
                 (long long)st_numel(t), n);
    memcpy(dst, t->data, n * sizeof(int));
    for (size_t i = 0; i < n; i++)
        if (dst[i] == -100) dst[i] = -1; /* torch's ignore_index -> our "no target" */
}

static inline double meta_double(SafeTensorsFile *f, const char *key) {
    const char *v = safetensors_meta(f, key);
    cr_assert(v, "fixture metadata '%s' missing", key);
    return atof(v);
}

static inline int meta_int(SafeTensorsFile *f, const char *key) {
    const char *v = safetensors_meta(f, key);
    cr_assert(v, "fixture metadata '%s' missing", key);
    return atoi(v);
}

/* A (B, T) int tensor of the fixture ("inputs", "targets", ...); free it. */
static inline int *read_batch(HfFixture *fx, const char *name) {
    int *x = xmalloc((size_t)fx->B * fx->T * sizeof(int));
    read_i32(fx->f, name, x, (size_t)fx->B * fx->T);
    return x;
}

/* The mean cross-entropy of the model on the batch; with `grads`, the
 * gradients of it alone (zeroed first). */
static inline double loss_and_grads(HfFixture *fx, const int *inputs, const int *targets,
                                    int grads) {
    if (grads) gpt_zero_grad(fx->m);
    return lm_loss_of(fx->m, inputs, targets, fx->B, fx->T, grads);
}

/* A loss of the model within 1e-5 relative of the fixture's `key` ("loss",
 * "loss_masked"): both fp32, what remains is summation order. */
static inline void expect_loss(HfFixture *fx, double loss, const char *key, const char *name) {
    float ref;
    read_f32(fx->f, key, &ref, 1);
    cr_expect(fabs(loss - ref) <= 1e-5 * fabs(ref), "%s %s %.8f vs transformers %.8f", name, key,
              loss, ref);
}

/* The model's logits on `inputs` (a fresh forward) within 1e-5 relative of
 * the fixture's "logits". */
static inline void expect_logits(HfFixture *fx, const int *inputs, const char *name) {
    size_t n = (size_t)fx->B * fx->T * fx->V;
    float *logits = logits_of(fx->m, inputs, fx->B, fx->T);
    float *ref = xmalloc(n * sizeof(float));
    read_f32(fx->f, "logits", ref, n);
    double err = rel_err(logits, ref, n);
    cr_expect(err < 1e-5, "%s logits relative error %.3g (tolerance 1e-5)", name, err);
    free(logits);
    free(ref);
}

/* The fixture's AdamW steps on its batch (decay as the model's table says,
 * global-norm clipping, the adamw_* metadata), each step's loss against
 * torch's "adamw_losses". The model keeps the trained weights. */
static inline void expect_adamw_losses(HfFixture *fx, const char *name) {
    int *inputs = read_batch(fx, "inputs"), *targets = read_batch(fx, "targets");
    AdamWConfig ac = {meta_double(fx->f, "adamw_beta1"), meta_double(fx->f, "adamw_beta2"),
                      meta_double(fx->f, "adamw_eps"), meta_double(fx->f, "adamw_weight_decay"),
                      meta_double(fx->f, "adamw_clip")};
    double lr = meta_double(fx->f, "adamw_lr");
    int steps = meta_int(fx->f, "adamw_steps");
    float *ref = xmalloc(steps * sizeof(float));
    read_f32(fx->f, "adamw_losses", ref, steps);
    Optimizer *o = optim_create(fx->m, &ac);
    for (int s = 0; s < steps; s++) {
        double loss = loss_and_grads(fx, inputs, targets, 1);
        cr_expect(fabs(loss - ref[s]) <= 1e-4 * fabs(ref[s]),
                  "%s AdamW step %d: loss %.7f vs torch %.7f", name, s + 1, loss, ref[s]);
        optim_clip_grad_norm(o);
        optim_step(o, lr);
    }
    cr_expect(ref[steps - 1] < ref[0], "fixture sanity: the loss should fall");
    optim_free(o);
    free(ref);
    free(inputs);
    free(targets);
}

/* Greedy KV-cache generation from "gen_prompt" (3 tokens) equals
 * transformers' generate(do_sample=False), "gen_greedy", token for token. */
static inline void expect_greedy(HfFixture *fx, const char *name) {
    const StTensor *want = need(fx->f, "gen_greedy");
    int n_new = (int)st_numel(want), ctx = gpt_config(fx->m)->n_positions;
    int *tokens = xcalloc(ctx + 1, sizeof(int)), *ref = xcalloc(n_new, sizeof(int));
    read_i32(fx->f, "gen_prompt", tokens, 3);
    read_i32(fx->f, "gen_greedy", ref, n_new);
    SampleOptions o = {n_new, 0.0, 0, 1.0, -1, NULL, NULL};
    Rng r;
    rng_seed(&r, 1);
    int n = generate_sample(fx->m, tokens, 3, &o, &r);
    cr_assert_eq(n, 3 + n_new, "%s: generated %d tokens, transformers %d", name, n - 3, n_new);
    for (int i = 0; i < n_new; i++)
        cr_expect_eq(tokens[3 + i], ref[i], "%s: token %d is %d, transformers gave %d", name, i,
                     tokens[3 + i], ref[i]);
    free(tokens);
    free(ref);
}

/* Beam search from "gen_prompt" (3 beams, no EOS, length_penalty 1) returns
 * transformers' 3-best sequences ("gen_beam3"), in its order, with its scores
 * ("gen_beam3_scores"). */
static inline void expect_beam3(HfFixture *fx, const char *name) {
    const StTensor *want = need(fx->f, "gen_beam3");
    cr_assert_eq(want->ndim, 2);
    int n_new = (int)want->shape[1];
    int prompt[3], *ref = xcalloc(3 * n_new, sizeof(int));
    float scores[3];
    read_i32(fx->f, "gen_prompt", prompt, 3);
    read_i32(fx->f, "gen_beam3", ref, 3 * n_new);
    read_f32(fx->f, "gen_beam3_scores", scores, 3);
    Hypothesis h[3];
    int got = generate_beam(fx->m, prompt, 3, 3, n_new, 1.0, -1, 3, h);
    cr_assert_eq(got, 3);
    for (int k = 0; k < 3; k++) {
        cr_assert_eq(h[k].len, n_new);
        for (int i = 0; i < n_new; i++)
            cr_expect_eq(h[k].tokens[i], ref[k * n_new + i],
                         "%s beam %d token %d: %d, transformers %d", name, k, i, h[k].tokens[i],
                         ref[k * n_new + i]);
        cr_expect(fabs(h[k].score - scores[k]) <= 1e-4 * fabs(scores[k]),
                  "%s beam %d score %.6f, transformers %.6f", name, k, h[k].score, scores[k]);
    }
    hypotheses_free(h, got);
    free(ref);
}

#endif
