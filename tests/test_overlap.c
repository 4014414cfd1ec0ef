/* tests/test_overlap.c — the overlapped reduction's model hook
 * (model.h gpt_set_grads_done) and its bucketing (train/grad_overlap.c) in
 * one process.
 *
 * What the overlap relies on: when the hook runs for unit u, u's runs of the
 * whole gradient buffer hold their final value for this backward, and
 * nothing later in the backward writes them. The test hook copies each
 * unit's runs at its call; after the backward, every copy must equal the
 * final buffer bit for bit, the runs must tile the layout, the blocks must
 * come from the top down and the global unit last, and the buffer must be
 * the very bits of a model without the hook (the whole buffer stays, and a
 * second backward accumulates in it). Covered: GPT-2, a chunked head, frozen
 * embeddings and block 0 (backward stops early), a Llama with LoRA on every
 * module (a block's adapters are its unit), train.recompute block.
 * grad_overlap's buckets (dist.bucket_mb 0: one per unit that has
 * gradients; large: one per backward) and its refusal to reduce a step that
 * ran fewer backwards than data.grad_accum are checked on one process, where
 * the collectives are no-ops; the sums across ranks, and whole runs against
 * dist.overlap false, are scripts/test_dist_train.sh's and
 * tests/mpi/dist_check.c's. */
#include <criterion/criterion.h>
#include <string.h>

#include "model/backend.h"
#include "model/model.h"
#include "tests/testutil_cli.h"
#include "train/dist.h"
#include "train/grad_overlap.h"
#include "train/optim.h"

enum { B = 2, T = 8, N = B * T, V = 300, MAX_CALLS = 64 };

static GPTConfig gpt2_cfg(void) {
    GPTConfig c = {.n_layer = 3, .n_head = 2, .n_embd = 16, .vocab_size = V,
                   .n_positions = 16, .layer_norm_epsilon = 1e-5f};
    return c;
}

static GPTConfig llama_cfg(void) {
    GPTConfig c = {.n_layer = 3, .n_head = 4, .n_embd = 32, .vocab_size = V,
                   .n_positions = 16, .layer_norm_epsilon = 1e-6f, .arch = ARCH_LLAMA,
                   .n_kv_head = 2, .intermediate_size = 40, .attn_bias = 1,
                   .untied_head = 1, .rope_theta = 10000};
    return c;
}

typedef enum { PLAIN, FROZEN_LOW, LORA, CHUNKED, RECOMPUTE } Variant;

static GPT *make_model(const GPTConfig *cfg, Variant v) {
    GPT *m = perturbed_cpu_model(cfg, 5, 6, 0.1);
    if (v == LORA) {
        LoraConfig c = {.r = 3, .alpha = 6, .dropout = 0.0f, .seed = 77};
        const char *t[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                           "down_proj"};
        for (int i = 0; i < 7; i++) snprintf(c.targets[i], LORA_NAME_LEN, "%s", t[i]);
        c.n_targets = 7;
        cr_assert_eq(gpt_lora_attach(m, &c), 0, "%s", err_msg());
        randomise_lora_b(m, 8);
    } else if (v == FROZEN_LOW) {
        const char *freeze[] = {"wte.weight", "wpe.weight", "h.0.*"};
        cr_assert_eq(gpt_set_trainable(m, freeze, 3, NULL, 0), 0, "%s", err_msg());
    } else if (v == CHUNKED) {
        gpt_set_logits_chunk(m, 5);
    } else if (v == RECOMPUTE) {
        cr_assert_eq(gpt_set_recompute(m, GPT_RECOMPUTE_BLOCK), 0, "%s", err_msg());
    }
    return m;
}

static void backward_once(GPT *m, uint64_t seed) {
    int in[N], tg[N];
    float logp[N], g[N];
    random_tokens(in, N, V, seed);
    random_tokens(tg, N, V, seed + 1);
    tg[3] = -1;
    gpt_forward(m, in, tg, B, T, logp);
    for (int i = 0; i < N; i++) g[i] = 1.0f / N + 0.01f * (float)(i % 3);
    gpt_backward(m, g);
}

/* What the test hook saw: each call's unit and a copy of its runs. */
typedef struct {
    int n_calls, unit[MAX_CALLS];
    float *copy[MAX_CALLS]; /* the whole layout, only the unit's runs filled */
    size_t n;
} Seen;

static void record(void *ctx, GPT *m, int unit) {
    Seen *s = ctx;
    cr_assert_lt(s->n_calls, MAX_CALLS);
    const GptGradRun *runs;
    int k = gpt_grad_unit_runs(m, unit, &runs);
    float *c = xcalloc(s->n ? s->n : 1, sizeof(float));
    const float *g = gpt_grads(m);
    for (int j = 0; j < k; j++)
        memcpy(c + runs[j].lo, g + runs[j].lo, (runs[j].hi - runs[j].lo) * sizeof(float));
    s->unit[s->n_calls] = unit;
    s->copy[s->n_calls++] = c;
}

static float *grads_copy(GPT *m) {
    size_t n = gpt_grad_size(m);
    float *g = xmalloc((n ? n : 1) * sizeof(float));
    memcpy(g, gpt_grads(m), n * sizeof(float));
    return g;
}

static void check_variant(const GPTConfig *cfg, Variant v) {
    /* without the hook: the reference bits after one and two backwards */
    GPT *ref = make_model(cfg, v);
    gpt_zero_grad(ref);
    backward_once(ref, 11);
    float *want1 = grads_copy(ref);
    backward_once(ref, 21);
    float *want2 = grads_copy(ref);
    size_t n = gpt_grad_size(ref);
    gpt_free(ref);

    GPT *m = make_model(cfg, v);
    Seen s = {.n = n};
    gpt_set_grads_done(m, record, &s);
    cr_assert_eq(gpt_grad_bytes(m), n * sizeof(float), "the whole buffer stays");
    gpt_zero_grad(m);
    for (int pass = 0; pass < 2; pass++) {
        s.n_calls = 0;
        backward_once(m, pass ? 21 : 11);
        const float *want = pass ? want2 : want1;
        cr_assert(!memcmp(gpt_grads(m), want, n * sizeof(float)),
                  "pass %d: the buffer differs from the model's without the hook", pass);
        cr_assert_gt(s.n_calls, 0);
        cr_assert_eq(s.unit[s.n_calls - 1], cfg->n_layer, "the global unit comes last");
        unsigned char *covered = xcalloc(n ? n : 1, 1);
        for (int c = 0; c < s.n_calls; c++) {
            int u = s.unit[c];
            if (c > 0 && u < cfg->n_layer)
                cr_assert_lt(u, s.unit[c - 1], "blocks come from the top down");
            const GptGradRun *runs;
            int k = gpt_grad_unit_runs(m, u, &runs);
            for (int j = 0; j < k; j++)
                for (size_t x = runs[j].lo; x < runs[j].hi; x++) {
                    covered[x]++;
                    cr_assert(!memcmp(&s.copy[c][x], &want[x], sizeof(float)),
                              "pass %d: unit %d, element %zu changed after its hook: %g then %g",
                              pass, u, x, s.copy[c][x], want[x]);
                }
            free(s.copy[c]);
        }
        for (size_t x = 0; x < n; x++)
            cr_assert_eq(covered[x], 1, "element %zu is in %d units' runs", x, covered[x]);
        free(covered);
    }
    gpt_set_grads_done(m, NULL, NULL);
    const GptGradRun *runs;
    cr_assert_eq(gpt_grad_unit_runs(m, 0, &runs), 0, "off: no runs");
    gpt_free(m);
    free(want1);
    free(want2);
}

Test(overlap, gpt2_units_are_final_at_their_hook) {
    GPTConfig c = gpt2_cfg();
    check_variant(&c, PLAIN);
    check_variant(&c, CHUNKED);
}

Test(overlap, frozen_embeddings_and_block) {
    GPTConfig c = gpt2_cfg();
    check_variant(&c, FROZEN_LOW);
}

Test(overlap, llama_and_lora) {
    GPTConfig c = llama_cfg();
    check_variant(&c, PLAIN);
    check_variant(&c, LORA);
}

Test(overlap, with_block_recomputation) {
    GPTConfig c = gpt2_cfg();
    check_variant(&c, RECOMPUTE);
}

/* Buckets: dist.bucket_mb 0 starts one per unit with gradients (3 blocks +
 * the global unit; frozen block 0 and embeddings: 2 blocks + the head), a
 * large bucket one per step, and only in the step's last backward. */
Test(overlap, buckets_per_step) {
    GPTConfig c = gpt2_cfg();
    struct { Variant v; size_t bytes; int want; } cases[] = {
        {PLAIN, 0, 4}, {PLAIN, (size_t)25 << 20, 1}, {FROZEN_LOW, 0, 3}, {LORA, 0, 3}};
    for (int i = 0; i < 4; i++) {
        GPTConfig mc = cases[i].v == LORA ? llama_cfg() : c;
        GPT *m = make_model(&mc, cases[i].v);
        GradOverlap *g = grad_overlap_create(m, 2, cases[i].bytes, 0, 0);
        for (int step = 0; step < 2; step++) {
            gpt_zero_grad(m);
            grad_overlap_begin_step(g);
            backward_once(m, 11);
            backward_once(m, 21);
            cr_assert_eq(grad_overlap_finish(g), 0);
            cr_assert_eq(grad_overlap_buckets(g), cases[i].want, "case %d: %d buckets", i,
                         grad_overlap_buckets(g));
        }
        /* LoRA on a Llama: its blocks carry adapters only, the global unit has
         * nothing trainable, so it starts nothing */
        grad_overlap_free(g);
        const GptGradRun *runs;
        cr_assert_eq(gpt_grad_unit_runs(m, 0, &runs), 0, "freed: the hook is gone");
        gpt_free(m);
    }
}

/* A step with fewer backwards than data.grad_accum started nothing: the
 * trainer reduces the whole buffer itself. */
Test(overlap, short_step_falls_back) {
    GPTConfig c = gpt2_cfg();
    GPT *m = make_model(&c, PLAIN);
    GradOverlap *g = grad_overlap_create(m, 2, 0, 0, 0);
    gpt_zero_grad(m);
    grad_overlap_begin_step(g);
    backward_once(m, 11);
    cr_assert_eq(grad_overlap_finish(g), -1);
    cr_assert_eq(grad_overlap_buckets(g), 0);
    grad_overlap_free(g);
    gpt_free(m);
}
