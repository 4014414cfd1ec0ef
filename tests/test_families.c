/* tests/test_families.c — Llama, Mistral, Qwen2 and Qwen3 (and GPT-2's two
 * attention-scale options) against Hugging Face transformers.
 *
 * Fixtures (tests/fixtures/families/NAME/) are written by
 * tests/make_family_fixtures.py: a checkpoint directory as save_pretrained
 * writes it (config.json + model.safetensors, some configs in the spelling
 * of transformers 4) and expected.safetensors with what transformers computes
 * from that directory: logits, loss and every gradient for one batch, the
 * loss with masked targets, the losses of ten AdamW steps with global-norm
 * clipping and the weights after them, and the greedy continuation and the
 * beam-search 3-best that generate() produces from the trained weights. Every
 * model here is loaded with model_load_hf, the path a user's checkpoint takes:
 * config.json alone decides the family and its options.
 *
 * Tolerances, as tests/test_model_hf.c (both sides fp32; rel_err is the
 * norm-wise ||a - b|| / ||b|| over a whole tensor):
 *   logits and loss 1e-5 relative: what remains is summation order;
 *   gradients 1e-4 relative per tensor: the backward sums over more terms in
 *     another order;
 *   AdamW losses 1e-4 relative after ten steps: each step's rounding feeds the
 *     next; the weights after them 1e-3 per tensor, leaving out the entries
 *     whose gradient is a near cancellation (skip_null_gradient_entries):
 *     Adam's steps are about +-lr whatever the gradient's size, so they pass
 *     on its relative error (measured: 7e-5 at most, gpt2_noscale, whose
 *     unscaled scores make the softmax sharp; 2e-5 on the Llama families);
 *   decode against the full forward 1e-5 per row: the same weights through
 *     the cached attention (test_generate.c's rule);
 *   greedy tokens exact and beam scores 1e-4 relative: the fixture script
 *     checks that no greedy step is a near tie (top-2 gap > 1e-4).
 * The bf16 / fp16 copies load to the logits transformers computes in fp32
 * from the rounded weights (1e-5), the sharded bf16 copy to exactly the
 * weights of the single-file one.
 */
#include <criterion/criterion.h>

#include "tests/testutil_hf.h"
#include "model/backend.h"
#include "model/generate.h"
#include "model/model.h"
#include "model/model_io.h"
#include "model/safetensors.h"
#include "train/objectives/lm.h"
#include "train/optim.h"

#ifndef FAMILIES
#define FAMILIES "tests/fixtures/families/"
#endif

/* The checkpoint key of table tensor p: GPT-2's table drops "transformer.",
 * the Llama families' table names are the keys (/tmp/spec16.md). */
static void key_of(const GPT *m, const ParamInfo *p, const char *prefix, char *buf, size_t cap) {
    snprintf(buf, cap, "%s.%s%s", prefix, gpt_config(m)->arch == ARCH_GPT2 ? "transformer." : "",
             p->name);
}

static GPT *load_model(const char *name) {
    char dir[256];
    snprintf(dir, sizeof dir, FAMILIES "%s", name);
    GPT *m = model_load_hf(dir, backend_cpu());
    cr_assert(m, "model_load_hf(%s): %s", dir, err_msg());
    return m;
}

static HfFixture load_fixture(const char *name) {
    HfFixture fx;
    char path[256];
    snprintf(path, sizeof path, FAMILIES "%s/expected.safetensors", name);
    fx.f = safetensors_open(path);
    cr_assert(fx.f, "cannot open %s: %s (regenerate with `make fixtures`)", path, err_msg());
    const StTensor *in = need(fx.f, "inputs");
    cr_assert_eq(in->ndim, 2);
    fx.B = (int)in->shape[0];
    fx.T = (int)in->shape[1];
    fx.m = load_model(name);
    fx.V = gpt_config(fx.m)->vocab_size;
    const StTensor *lg = need(fx.f, "logits");
    cr_assert_eq(lg->shape[2], fx.V, "%s: config.json vocab_size %d, logits %lld wide", name, fx.V,
                 (long long)lg->shape[2]);
    return fx;
}

/* Replaces the model's weights by the fixture's "<prefix>.<key>" tensors. */
static void load_weights(HfFixture *fx, const char *prefix) {
    size_t total = gpt_flat_size(fx->m);
    float *host = calloc(total, sizeof(float));
    gpt_copy_params_to_host(fx->m, host, total); /* keeps the padding as the model has it */
    for (int i = 0; i < gpt_num_tensors(fx->m); i++) {
        const ParamInfo *p = gpt_tensor(fx->m, i);
        char key[160];
        key_of(fx->m, p, prefix, key, sizeof key);
        read_f32(fx->f, key, host + p->offset, p->numel);
    }
    gpt_copy_params_to_device(fx->m, host, total);
    free(host);
}

/* Entries whose gradient is (near) cancellation: the sum that makes it is
 * close to zero, so both sides hold mostly rounding noise, which Adam, whose
 * step m / sqrt(v) is about +-lr whatever the gradient's size, turns into
 * full-size steps. GPT-2's key bias adds the same q.b to every score of a row,
 * which the softmax ignores (exactly zero gradient); with RoPE the key bias
 * of a slow pair (Qwen2's theta 10^6: 1e-4 rad per position) rotates so
 * little that it nearly does too (gradients 1e-9..1e-7 beside 1e-3). Entries
 * whose first-step gradient is below 1e-3 of the tensor's largest are set
 * equal before comparing weights; the AdamW losses check them as part of
 * the whole trajectory. */
static void skip_null_gradient_entries(HfFixture *fx, const ParamInfo *p, float *mine,
                                       const float *ref) {
    char key[160];
    key_of(fx->m, p, "grad", key, sizeof key);
    float *g = malloc(p->numel * sizeof(float));
    read_f32(fx->f, key, g, p->numel);
    float top = 0;
    for (size_t i = 0; i < p->numel; i++) top = fmaxf(top, fabsf(g[i]));
    for (size_t i = 0; i < p->numel; i++)
        if (fabsf(g[i]) < 1e-3f * top) mine[i] = ref[i];
    free(g);
}

/* Every tensor of the table against "<prefix>.<key>" of the fixture, and
 * every "<prefix>." tensor of the fixture has a table tensor (none is left
 * unchecked, none is extra). */
static void check_tensors(HfFixture *fx, const float *got, const char *prefix, double tol,
                          const char *what, int skip_null_grads) {
    for (int i = 0; i < gpt_num_tensors(fx->m); i++) {
        const ParamInfo *p = gpt_tensor(fx->m, i);
        char key[160];
        key_of(fx->m, p, prefix, key, sizeof key);
        const StTensor *t = need(fx->f, key);
        cr_expect_eq((size_t)st_numel(t), p->numel, "%s: %lld elements, table %zu", key,
                     (long long)st_numel(t), p->numel);
        float *ref = malloc(p->numel * sizeof(float));
        float *mine = malloc(p->numel * sizeof(float));
        read_f32(fx->f, key, ref, p->numel);
        memcpy(mine, got + p->offset, p->numel * sizeof(float));
        if (skip_null_grads) skip_null_gradient_entries(fx, p, mine, ref);
        double err = rel_err(mine, ref, p->numel);
        cr_expect(err < tol, "%s %s: relative error %.3g (tolerance %g)", what, key, err, tol);
        free(mine);
        free(ref);
    }
    int n_fixture = 0;
    size_t len = strlen(prefix);
    for (int i = 0; i < safetensors_count(fx->f); i++) {
        const char *n = safetensors_get(fx->f, i)->name;
        n_fixture += !strncmp(n, prefix, len) && n[len] == '.';
    }
    cr_expect_eq(n_fixture, gpt_num_tensors(fx->m),
                 "transformers has %d parameter tensors, the model's table %d", n_fixture,
                 gpt_num_tensors(fx->m));
}

/* ------------------------------------------------------- forward, backward */

static void parity(const char *name) {
    HfFixture fx = load_fixture(name);
    int *inputs = read_batch(&fx, "inputs"), *targets = read_batch(&fx, "targets");
    expect_loss(&fx, loss_and_grads(&fx, inputs, targets, 1), "loss", name);
    float *grads = host_grads(fx.m);
    check_tensors(&fx, grads, "grad", 1e-4, name, 0);
    free(grads);

    /* logits of a fresh forward (backward turned the buffer into dlogits) */
    expect_logits(&fx, inputs, name);

    /* masked targets: ignored positions carry no loss */
    int *masked = read_batch(&fx, "targets_masked");
    expect_loss(&fx, loss_and_grads(&fx, inputs, masked, 0), "loss_masked", name);
    free(masked);
    free(inputs);
    free(targets);
    free_fixture(&fx);
}

/* ------------------------------------------------------------------ AdamW */

/* Ten steps of AdamW (decay on 2-D weights only) with global-norm clipping,
 * the recipe of tests/make_hf_fixtures.py, then the weights they give. */
static void adamw(const char *name) {
    HfFixture fx = load_fixture(name);
    for (int i = 0; i < gpt_num_tensors(fx.m); i++) {
        const ParamInfo *p = gpt_tensor(fx.m, i);
        cr_expect_eq(p->decay, p->ndim == 2, "%s: decay %d for a %d-D tensor", p->name, p->decay,
                     p->ndim);
    }
    expect_adamw_losses(&fx, name);
    float *w = host_params(fx.m);
    check_tensors(&fx, w, "trained", 1e-3, "after AdamW", 1);
    free(w);
    free_fixture(&fx);
}

/* ---------------------------------------------------------------- decoding */

/* The key/value cache gives the full forward's logits at every prefix: one
 * token at a time from position 0, and again with a prefill of half the
 * sequence and then two tokens per call (rotary positions offset by pos). */
static void decode(const char *name) {
    HfFixture fx = load_fixture(name);
    int B = fx.B, T = fx.T, V = fx.V;
    int *inputs = read_batch(&fx, "inputs");
    float *full = logits_of(fx.m, inputs, fx.B, fx.T);
    float *dec = malloc((size_t)B * V * sizeof(float));
    int *step = malloc((size_t)B * T * sizeof(int));
    for (int pass = 0; pass < 2; pass++) {
        int first = pass == 0 ? 1 : T / 2, stride = pass == 0 ? 1 : 2;
        for (int pos = 0, n = first; pos < T; pos += n, n = pos + stride <= T ? stride : T - pos) {
            for (int b = 0; b < B; b++)
                memcpy(step + (size_t)b * n, inputs + (size_t)b * T + pos, n * sizeof(int));
            gpt_decode(fx.m, step, B, n, pos, dec);
            int last = pos + n - 1;
            for (int b = 0; b < B; b++) {
                double e = rel_err(dec + (size_t)b * V, full + ((size_t)b * T + last) * V, V);
                cr_expect(e < 1e-5, "%s: row %d, prefix %d (decode %d at %d): cached logits differ "
                          "by %.3g (tolerance 1e-5)", name, b, last + 1, n, pos, e);
            }
        }
    }
    free(step);
    free(dec);
    free(full);
    free(inputs);
    free_fixture(&fx);
}

/* Greedy KV-cache generation equals transformers' generate(do_sample=False)
 * on the trained weights, token for token, to the end of the context. */
static void greedy(const char *name) {
    HfFixture fx = load_fixture(name);
    load_weights(&fx, "trained");
    int n_new = (int)st_numel(need(fx.f, "gen_greedy")), ctx = gpt_config(fx.m)->n_positions;
    cr_assert_eq(3 + n_new, ctx, "fixture generates to the end of the context");
    expect_greedy(&fx, name);
    free_fixture(&fx);
}

/* Beam search (3 beams, no EOS, length_penalty 1) returns transformers' 3-best
 * sequences, in its order, with its scores. */
static void beam3(const char *name) {
    HfFixture fx = load_fixture(name);
    load_weights(&fx, "trained");
    expect_beam3(&fx, name);
    free_fixture(&fx);
}

#define FAMILY_TESTS(name)                                  \
    Test(family_parity, name) { parity(#name); }            \
    Test(family_adamw, name) { adamw(#name); }              \
    Test(family_decode, name) { decode(#name); }            \
    Test(family_greedy, name) { greedy(#name); }            \
    Test(family_beam, name) { beam3(#name); }

FAMILY_TESTS(llama_mha)
FAMILY_TESTS(llama_gqa2_untied)
FAMILY_TESTS(llama_gqa4_headdim)
FAMILY_TESTS(llama_mqa_bias)
FAMILY_TESTS(llama_rope_linear)
FAMILY_TESTS(llama_rope_llama3)
FAMILY_TESTS(llama_rope_yarn)
FAMILY_TESTS(llama_rope_yarn_notrunc)
FAMILY_TESTS(mistral)
FAMILY_TESTS(qwen2)
FAMILY_TESTS(qwen3)
FAMILY_TESTS(qwen3_untied)
FAMILY_TESTS(gpt2_noscale)
FAMILY_TESTS(gpt2_invlayer)

/* The config each directory's config.json gives (model_load_hf decides the
 * family and its options from it alone). */
Test(family_config, options_read_from_config_json) {
    struct {
        const char *name;
        int arch, n_kv_head, head_dim, attn_bias, attn_out_bias, qk_norm, mlp_bias, untied;
        int no_scale, inv_layer, rope_type;
    } want[] = {
        {"llama_mha", ARCH_LLAMA, 4, 0, 0, 0, 0, 0, 0, 0, 0, ROPE_DEFAULT},
        {"llama_gqa2_untied", ARCH_LLAMA, 2, 0, 0, 0, 0, 0, 1, 0, 0, ROPE_DEFAULT},
        {"llama_gqa4_headdim", ARCH_LLAMA, 2, 8, 0, 0, 0, 0, 0, 0, 0, ROPE_DEFAULT},
        {"llama_mqa_bias", ARCH_LLAMA, 1, 0, 1, 1, 0, 1, 1, 0, 0, ROPE_DEFAULT},
        {"llama_rope_linear", ARCH_LLAMA, 1, 0, 0, 0, 0, 0, 0, 0, 0, ROPE_LINEAR},
        {"llama_rope_llama3", ARCH_LLAMA, 2, 0, 0, 0, 0, 0, 0, 0, 0, ROPE_LLAMA3},
        {"llama_rope_yarn", ARCH_LLAMA, 1, 0, 0, 0, 0, 0, 0, 0, 0, ROPE_YARN},
        {"mistral", ARCH_MISTRAL, 2, 0, 0, 0, 0, 0, 1, 0, 0, ROPE_DEFAULT},
        {"qwen2", ARCH_QWEN2, 2, 0, 1, 0, 0, 0, 0, 0, 0, ROPE_DEFAULT},
        {"qwen3", ARCH_QWEN3, 2, 8, 0, 0, 1, 0, 0, 0, 0, ROPE_DEFAULT},
        {"gpt2_noscale", ARCH_GPT2, 0, 0, 0, 0, 0, 0, 0, 1, 0, ROPE_DEFAULT},
        {"gpt2_invlayer", ARCH_GPT2, 0, 0, 0, 0, 0, 0, 0, 0, 1, ROPE_DEFAULT},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        GPT *m = load_model(want[i].name);
        const GPTConfig *c = gpt_config(m);
        int kvh = c->n_kv_head ? c->n_kv_head : c->n_head;
        int hs = c->head_dim ? c->head_dim : c->n_embd / c->n_head;
        int want_kvh = want[i].n_kv_head ? want[i].n_kv_head : c->n_head;
        int want_hs = want[i].head_dim ? want[i].head_dim : c->n_embd / c->n_head;
        cr_expect_eq(c->arch, want[i].arch, "%s: arch %d", want[i].name, c->arch);
        cr_expect_eq(kvh, want_kvh, "%s: %d kv heads", want[i].name, kvh);
        cr_expect_eq(hs, want_hs, "%s: head size %d", want[i].name, hs);
        cr_expect_eq(!!c->attn_bias, want[i].attn_bias, "%s: attn_bias", want[i].name);
        cr_expect_eq(!!c->attn_out_bias, want[i].attn_out_bias, "%s: attn_out_bias", want[i].name);
        cr_expect_eq(!!c->qk_norm, want[i].qk_norm, "%s: qk_norm", want[i].name);
        cr_expect_eq(!!c->mlp_bias, want[i].mlp_bias, "%s: mlp_bias", want[i].name);
        cr_expect_eq(!!c->untied_head, want[i].untied, "%s: untied_head", want[i].name);
        cr_expect_eq(!!c->attn_no_scale, want[i].no_scale, "%s: attn_no_scale", want[i].name);
        cr_expect_eq(!!c->attn_scale_inv_layer, want[i].inv_layer, "%s: attn_scale_inv_layer",
                     want[i].name);
        cr_expect_eq(c->rope_type, want[i].rope_type, "%s: rope_type %d", want[i].name,
                     c->rope_type);
        gpt_free(m);
    }
}

/* ------------------------------------------------- bf16, fp16 and shards */

/* A copy of llama_gqa2_untied saved in a lower precision loads to the logits
 * and loss transformers computes in fp32 from the rounded weights. */
static void low_precision(const char *name) {
    HfFixture fx = load_fixture(name);
    int *inputs = read_batch(&fx, "inputs"), *targets = read_batch(&fx, "targets");
    expect_logits(&fx, inputs, name);
    expect_loss(&fx, loss_and_grads(&fx, inputs, targets, 0), "loss", name);
    free(inputs);
    free(targets);
    free_fixture(&fx);
}

Test(family_checkpoint, bf16_weights) { low_precision("llama_bf16"); }
Test(family_checkpoint, fp16_weights) { low_precision("llama_fp16"); }

static float bf16_round(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    u = (u + 0x7fff + ((u >> 16) & 1)) & 0xffff0000u; /* round to nearest even */
    memcpy(&x, &u, 4);
    return x;
}

/* The bf16 copy holds exactly the fp32 weights rounded to bf16 (round to
 * nearest even, as torch's .to(bfloat16)), and its sharded twin (several
 * model-0000k-of-0000n.safetensors and the index) loads to the same bits. */
Test(family_checkpoint, bf16_and_sharded_weights_exact) {
    GPT *src = load_model("llama_gqa2_untied"), *bf = load_model("llama_bf16");
    GPT *sh = load_model("llama_bf16_sharded");
    size_t n = gpt_flat_size(src);
    cr_assert_eq(gpt_flat_size(bf), n);
    cr_assert_eq(gpt_flat_size(sh), n);
    float *a = host_params(src), *b = host_params(bf), *c = host_params(sh);
    for (int t = 0; t < gpt_num_tensors(src); t++) {
        const ParamInfo *p = gpt_tensor(src, t);
        size_t bad = 0;
        for (size_t i = 0; i < p->numel; i++) bad += bf16_round(a[p->offset + i]) != b[p->offset + i];
        cr_expect_eq(bad, 0, "%s: %zu values of the bf16 file are not the source rounded", p->name,
                     bad);
        cr_expect_eq(memcmp(b + p->offset, c + p->offset, p->numel * sizeof(float)), 0,
                     "%s differs between the sharded and the single-file bf16 checkpoint", p->name);
    }
    free(a);
    free(b);
    free(c);
    gpt_free(src);
    gpt_free(bf);
    gpt_free(sh);
}
