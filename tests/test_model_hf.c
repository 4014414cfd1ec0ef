/* tests/test_model_hf.c — the C model against Hugging Face transformers.
 *
 * Fixtures (tests/fixtures/hf_*.safetensors) are written by
 * tests/make_hf_fixtures.py from GPT2LMHeadModel on random weights: logits,
 * loss and every gradient for one batch, the same with masked targets, and
 * the losses of ten AdamW steps with global-norm clipping, and the greedy
 * continuation and the beam-search 3-best that transformers' generate()
 * produces from the trained weights.
 *
 * Tolerances: logits and loss 1e-5 relative (both sides fp32; what remains is
 * summation order), gradients 1e-4 relative per tensor (the backward sums over
 * more terms in a different order), AdamW losses 1e-4 relative after ten steps
 * (each step's rounding feeds the next).
 */
#include <criterion/criterion.h>

#include "tests/testutil_hf.h"
#include "model/backend.h"
#include "model/model.h"
#include "model/model_io.h"
#include "train/optim.h"
#include "train/objectives/lm.h"
#include "model/safetensors.h"
#include "model/checkpoint.h"
#include "model/generate.h"

static HfFixture load_fixture(const char *name) {
    char path[512];
    snprintf(path, sizeof path, "tests/fixtures/%s.safetensors", name);
    HfFixture fx;
    fx.f = safetensors_open(path);
    cr_assert(fx.f, "cannot open %s: %s (regenerate with `make fixtures`)", path, err_msg());
    const char *eps = safetensors_meta(fx.f, "eps");
    cr_assert(eps);
    GPTConfig cfg = {.n_layer = meta_int(fx.f, "n_layer"), .n_head = meta_int(fx.f, "n_head"),
                     .n_embd = meta_int(fx.f, "n_embd"), .vocab_size = meta_int(fx.f, "vocab_size"),
                     .n_positions = meta_int(fx.f, "n_positions"),
                     .layer_norm_epsilon = (float)atof(eps), .vocab_pad = 0};
    fx.B = meta_int(fx.f, "B");
    fx.T = meta_int(fx.f, "T");
    fx.V = cfg.vocab_size;
    fx.m = gpt_create(&cfg, backend_cpu());
    cr_assert(fx.m, "%s", err_msg());
    size_t total = gpt_flat_size(fx.m);
    float *host = calloc(total, sizeof(float));
    for (int i = 0; i < gpt_num_tensors(fx.m); i++) {
        const ParamInfo *p = gpt_tensor(fx.m, i);
        char key[128];
        snprintf(key, sizeof key, "param.%s", p->name);
        read_f32(fx.f, key, host + p->offset, p->numel);
    }
    gpt_copy_params_to_device(fx.m, host, total);
    free(host);
    return fx;
}

static void check_grads(HfFixture *fx, const char *prefix) {
    float *grads = host_grads(fx->m);
    for (int i = 0; i < gpt_num_tensors(fx->m); i++) {
        const ParamInfo *p = gpt_tensor(fx->m, i);
        char key[128];
        snprintf(key, sizeof key, "%s.%s", prefix, p->name);
        float *ref = malloc(p->numel * sizeof(float));
        read_f32(fx->f, key, ref, p->numel);
        double err = rel_err(grads + p->offset, ref, p->numel);
        cr_expect(err < 1e-4, "%s: relative error %.3g (tolerance 1e-4)", key, err);
        free(ref);
    }
    free(grads);
}

static void parity(const char *name) {
    HfFixture fx = load_fixture(name);
    int *inputs = read_batch(&fx, "inputs"), *targets = read_batch(&fx, "targets");
    expect_loss(&fx, loss_and_grads(&fx, inputs, targets, 1), "loss", name);
    check_grads(&fx, "grad");

    /* logits of a fresh forward (backward turned the buffer into dlogits) */
    expect_logits(&fx, inputs, name);
    free(inputs);
    free(targets);
    free_fixture(&fx);
}

Test(hf_parity, config_a) { parity("hf_a"); }
Test(hf_parity, config_b) { parity("hf_b"); }
Test(hf_parity, config_c) { parity("hf_c"); }

/* SFT masking: ignored targets carry no loss and no gradient, exactly as
 * cross_entropy(ignore_index=-100) computes. */
static void masked(const char *name) {
    HfFixture fx = load_fixture(name);
    int N = fx.B * fx.T;
    int *inputs = read_batch(&fx, "inputs"), *targets = read_batch(&fx, "targets_masked");
    int64_t kept = lm_count_targets(targets, N);
    cr_assert(kept > 0 && kept < N, "fixture must mask some but not all targets");
    expect_loss(&fx, loss_and_grads(&fx, inputs, targets, 1), "loss_masked", name);
    check_grads(&fx, "gradm");
    free(inputs);
    free(targets);
    free_fixture(&fx);
}

Test(sft_masking, config_a) { masked("hf_a"); }
Test(sft_masking, config_b) { masked("hf_b"); }

/* Ten steps of AdamW (decay on 2-D weights only) with global-norm clipping. */
static void adamw(const char *name) {
    HfFixture fx = load_fixture(name);
    expect_adamw_losses(&fx, name);
    free_fixture(&fx);
}

Test(adamw_parity, config_a) { adamw("hf_a"); }
Test(adamw_parity, config_b) { adamw("hf_b"); }
Test(adamw_parity, config_c) { adamw("hf_c"); }

/* Saving in HF layout and loading back gives the same weights, and the loader
 * accepts the bare "h.0..." key style and ignores HF's mask buffers. */
Test(model_io, save_load_round_trip) {
    HfFixture fx = load_fixture("hf_a");
    char dir[256];
    make_temp_dir(dir, sizeof dir, "modelio");
    cr_assert_eq(model_save_hf(fx.m, dir), 0, "%s", err_msg());
    GPT *back = model_load_hf(dir, backend_cpu());
    cr_assert(back, "%s", err_msg());
    size_t n = gpt_flat_size(fx.m);
    float *a = host_params(fx.m), *b = host_params(back);
    cr_expect_eq(memcmp(a, b, n * sizeof(float)), 0, "weights differ after a round trip");

    /* rewrite with bare names plus mask buffers and lm_head, as older HF files have */
    int nt = gpt_num_tensors(fx.m);
    StTensor *ts = calloc(nt + 3, sizeof(StTensor));
    for (int i = 0; i < nt; i++) {
        const ParamInfo *p = gpt_tensor(fx.m, i);
        ts[i] = (StTensor){.name = p->name, .dtype = ST_F32, .ndim = p->ndim,
                           .shape = {p->shape[0], p->shape[1]}, .data = a + p->offset};
    }
    float mask[4] = {1, 0, 1, 1};
    ts[nt] = (StTensor){.name = "h.0.attn.bias", .dtype = ST_F32, .ndim = 1, .shape = {4},
                        .data = mask};
    ts[nt + 1] = (StTensor){.name = "h.1.attn.masked_bias", .dtype = ST_F32, .ndim = 1,
                            .shape = {1}, .data = mask};
    ts[nt + 2] = (StTensor){.name = "lm_head.weight", .dtype = ST_F32, .ndim = 2,
                            .shape = {gpt_tensor(fx.m, 0)->shape[0], gpt_tensor(fx.m, 0)->shape[1]},
                            .data = a};
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    cr_assert_eq(safetensors_write(path, ts, nt + 3, NULL), 0, "%s", err_msg());
    GPT *bare = model_load_hf(dir, backend_cpu());
    cr_assert(bare, "bare key style refused: %s", err_msg());
    gpt_copy_params_to_host(bare, b, n);
    cr_expect_eq(memcmp(a, b, n * sizeof(float)), 0);

    /* a missing tensor and a wrong shape are refused with the tensor's name */
    cr_assert_eq(safetensors_write(path, ts + 1, nt - 1, NULL), 0);
    cr_expect_null(model_load_hf(dir, backend_cpu()));
    cr_expect(strstr(err_msg(), "wte.weight") != NULL, "message: %s", err_msg());
    ts[0].shape[0] -= 1;
    cr_assert_eq(safetensors_write(path, ts, nt, NULL), 0);
    cr_expect_null(model_load_hf(dir, backend_cpu()));
    cr_expect(strstr(err_msg(), "shape") != NULL, "message: %s", err_msg());
    ts[0].shape[0] += 1;
    ts[nt].name = "h.0.attn.surprise";
    cr_assert_eq(safetensors_write(path, ts, nt + 1, NULL), 0);
    cr_expect_null(model_load_hf(dir, backend_cpu()));
    cr_expect(strstr(err_msg(), "surprise") != NULL, "message: %s", err_msg());

    gpt_free(bare);
    gpt_free(back);
    free(ts);
    free(a);
    free(b);
    free_fixture(&fx);
    rm_rf(dir);
}

/* The fixture's model with the weights after its ten AdamW steps ("trained.*"),
 * from which transformers generated the reference sequences. */
static HfFixture load_trained_fixture(const char *name) {
    HfFixture fx = load_fixture(name);
    size_t total = gpt_flat_size(fx.m);
    float *host = calloc(total, sizeof(float));
    for (int i = 0; i < gpt_num_tensors(fx.m); i++) {
        const ParamInfo *p = gpt_tensor(fx.m, i);
        char key[128];
        snprintf(key, sizeof key, "trained.%s", p->name);
        read_f32(fx.f, key, host + p->offset, p->numel);
    }
    gpt_copy_params_to_device(fx.m, host, total);
    free(host);
    return fx;
}

/* Greedy KV-cache generation equals transformers' generate(do_sample=False)
 * on the same (trained) weights, token for token, to the end of the context. */
static void greedy(const char *name) {
    HfFixture fx = load_trained_fixture(name);
    expect_greedy(&fx, name);
    free_fixture(&fx);
}

/* Beam search (3 beams, no EOS, length_penalty 1) returns the same 3-best
 * sequences as transformers, in the same order, with the same scores. */
static void beam3(const char *name) {
    HfFixture fx = load_trained_fixture(name);
    expect_beam3(&fx, name);
    free_fixture(&fx);
}

Test(hf_generate, beam3_config_a) { beam3("hf_a"); }
Test(hf_generate, beam3_config_b) { beam3("hf_b"); }
Test(hf_generate, beam3_config_c) { beam3("hf_c"); }

Test(hf_generate, greedy_config_a) { greedy("hf_a"); }
Test(hf_generate, greedy_config_b) { greedy("hf_b"); }
Test(hf_generate, greedy_config_c) { greedy("hf_c"); }

/* Beam search with an EOS id that some beams emit early (4 beams, 3-best,
 * length_penalty 0.7): the same hypotheses, ended at the same EOS, in the same
 * order and with the same scores as transformers (tests/fixtures/beam_eos.*,
 * made by tests/make_beam_eos_fixtures.py from the trained weights). */
static void beam_eos(const char *name) {
    HfFixture fx = load_trained_fixture(name);
    SafeTensorsFile *f = safetensors_open("tests/fixtures/beam_eos.safetensors");
    cr_assert_not_null(f, "%s", err_msg());
    char key[64];
    snprintf(key, sizeof key, "%s.seqs", name);
    const StTensor *seqs = need(f, key);
    int n_new = (int)seqs->shape[1], eos, prompt[3], ref[3 * 64];
    float scores[3], lp;
    cr_assert_leq(n_new, 64);
    read_i32(f, key, ref, 3 * n_new);
    snprintf(key, sizeof key, "%s.eos", name);
    read_i32(f, key, &eos, 1);
    snprintf(key, sizeof key, "%s.scores", name);
    read_f32(f, key, scores, 3);
    snprintf(key, sizeof key, "%s.length_penalty", name);
    read_f32(f, key, &lp, 1);
    read_i32(fx.f, "gen_prompt", prompt, 3);
    int ctx = gpt_config(fx.m)->n_positions;
    Hypothesis h[3];
    int got = generate_beam(fx.m, prompt, 3, 4, ctx - 3, lp, eos, 3, h);
    cr_assert_eq(got, 3);
    for (int k = 0; k < 3; k++) {
        const int *want = ref + k * n_new;
        int len = 0; /* transformers' tokens before its EOS */
        while (len < n_new && want[len] != eos && want[len] >= 0) len++;
        cr_expect_eq(h[k].len, len, "%s hypothesis %d: %d tokens, transformers %d", name, k,
                     h[k].len, len);
        for (int i = 0; i < len && i < h[k].len; i++)
            cr_expect_eq(h[k].tokens[i], want[i], "%s hypothesis %d token %d", name, k, i);
        cr_expect(fabs(h[k].score - scores[k]) <= 1e-4 * fabs(scores[k]),
                  "%s hypothesis %d score %.6f, transformers %.6f", name, k, h[k].score,
                  scores[k]);
    }
    hypotheses_free(h, got);
    safetensors_close(f);
    free_fixture(&fx);
}

Test(hf_generate, beam_with_eos_config_a) { beam_eos("hf_a"); }
Test(hf_generate, beam_with_eos_config_b) { beam_eos("hf_b"); }
Test(hf_generate, beam_with_eos_config_c) { beam_eos("hf_c"); }
