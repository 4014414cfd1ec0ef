/* tests/test_lora.c — partial fine-tuning (frozen tensors) and LoRA adapters.
 *
 * Freezing: frozen tensors stay bit-identical through AdamW steps; the
 * gradients of the trainable tensors equal (1e-6 relative) those of the
 * unfrozen model whatever is frozen (backward skips work below the lowest
 * trainable block); optimizer state covers trainable tensors only.
 * LoRA: the adapted forward equals the merged model (1e-5 relative); adapter
 * gradients match central finite differences (2e-2 relative over the sampled
 * entries, fp32), with and without dropout; only adapters train. PEFT: the
 * fixtures of tests/make_lora_fixtures.py (transformers + peft) give logits
 * (1e-5 relative), loss (1e-5) and adapter gradients (1e-4) that the C model
 * loading the same base and adapter directories reproduces; a C-written
 * adapter reloads to identical logits, and a merged HF export gives the
 * logits of base + adapter (1e-5). tests/check_peft_load.py checks that PEFT
 * itself loads a C-written adapter (set RETORT_LORA_EXPORT=dir to keep one).
 * The base: an adapter loads onto the base it was saved with (also when that
 * base's weights went through bf16, as on a GPU), and another base — other
 * weights of the same shapes, or other shapes — is refused naming both
 * identities unless the check is turned off (export --force).
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <sys/stat.h>

#include "tests/testutil.h"
#include "model/backend.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/model_io.h"
#include "train/objectives/lm.h"
#include "train/optim.h"
#include "model/safetensors.h"

static const GPTConfig SMALL = {.n_layer = 3, .n_head = 2, .n_embd = 16, .vocab_size = 29,
                                .n_positions = 8, .layer_norm_epsilon = 1e-5f, .vocab_pad = 0};

static GPT *make_model(const GPTConfig *cfg, uint64_t seed) {
    return perturbed_cpu_model(cfg, seed, seed + 100, 0.05);
}

/* ------------------------------------------------------------- freezing */

Test(freeze, frozen_tensors_bit_identical_after_adamw) {
    GPT *m = make_model(&SMALL, 1);
    const char *freeze[] = {"h.[0-1].*", "wpe.weight", "*.ln_*"};
    const char *train[] = {"h.1.mlp.c_fc.*"};
    cr_assert_eq(gpt_set_trainable(m, freeze, 3, train, 1), 0, "%s", err_msg());
    cr_expect(!gpt_tensor_trainable(m, 1), "wpe frozen");
    cr_expect(gpt_find_tensor(m, "h.1.mlp.c_fc.weight")->trainable, "train wins over freeze");
    cr_expect(!gpt_find_tensor(m, "h.2.ln_1.weight")->trainable);
    cr_expect(gpt_find_tensor(m, "h.2.attn.c_attn.weight")->trainable);
    float *before = host_params(m);
    AdamWConfig ac = {0.9, 0.95, 1e-8, 0.1, 1.0};
    Optimizer *o = optim_create(m, &ac);
    int B = 2, T = 8, in[16], tg[16];
    for (int s = 0; s < 4; s++) {
        random_tokens(in, B * T, SMALL.vocab_size, 10 + s);
        random_tokens(tg, B * T, SMALL.vocab_size, 20 + s);
        gpt_zero_grad(m);
        lm_loss_of(m, in, tg, B, T, 1);
        optim_clip_grad_norm(o);
        optim_step(o, 1e-2);
    }
    float *after = host_params(m);
    for (int i = 0; i < gpt_num_tensors(m); i++) {
        const ParamInfo *p = gpt_tensor(m, i);
        int same = !memcmp(before + p->offset, after + p->offset, p->numel * sizeof(float));
        if (p->trainable) cr_expect(!same, "%s trainable but unchanged", p->name);
        else cr_expect(same, "%s frozen but changed", p->name);
    }
    free(before);
    free(after);
    optim_free(o);
    gpt_free(m);
}

/* Trainable gradients of a partly frozen model equal the full model's. */
static void grads_match(const char *const *freeze, int nf, const char *const *train, int nt,
                        int layer_lo, int layer_hi) {
    GPT *full = make_model(&SMALL, 2), *part = make_model(&SMALL, 2);
    if (nf + nt > 0) cr_assert_eq(gpt_set_trainable(part, freeze, nf, train, nt), 0, "%s", err_msg());
    if (layer_lo >= 0) cr_assert_eq(gpt_set_layers_trainable(part, layer_lo, layer_hi, 0), 0);
    int B = 2, T = 7, in[14], tg[14];
    random_tokens(in, B * T, SMALL.vocab_size, 3);
    random_tokens(tg, B * T, SMALL.vocab_size, 4);
    gpt_zero_grad(full);
    gpt_zero_grad(part);
    double lf = lm_loss_of(full, in, tg, B, T, 1);
    double lp = lm_loss_of(part, in, tg, B, T, 1);
    cr_expect_eq(lf, lp, "loss differs: %.9g vs %.9g", lf, lp);
    float *gf = host_grads(full), *gp = host_grads(part);
    size_t trainable = 0;
    for (int i = 0; i < gpt_num_tensors(part); i++) {
        const ParamInfo *p = gpt_tensor(part, i);
        if (p->trainable) {
            trainable += p->numel;
            double err = rel_err(gp + p->offset, gf + p->offset, p->numel);
            cr_expect(err < 1e-6, "%s: gradient relative error %.3g vs unfrozen", p->name, err);
        } else {
            float zero = 0;
            for (size_t k = 0; k < p->numel; k++)
                if (memcmp(&gp[p->offset + k], &zero, sizeof zero)) {
                    cr_expect(0, "%s frozen but has a gradient", p->name);
                    break;
                }
        }
    }
    cr_expect_eq(trainable, gpt_num_trainable(part));
    cr_expect(gpt_grad_size(part) < gpt_grad_size(full) || trainable == gpt_num_params(full));
    free(gf);
    free(gp);
    gpt_free(full);
    gpt_free(part);
}

Test(freeze, grads_equal_unfrozen_bottom_frozen) {
    const char *f[] = {"wte.weight", "wpe.weight", "h.0.*"};
    grads_match(f, 3, NULL, 0, -1, -1);
}
Test(freeze, grads_equal_unfrozen_top_frozen) {
    const char *f[] = {"h.2.*", "ln_f.*"};
    grads_match(f, 2, NULL, 0, -1, -1);
}
Test(freeze, grads_equal_unfrozen_layer_range) { grads_match(NULL, 0, NULL, 0, 0, 1); }
Test(freeze, grads_equal_unfrozen_single_tensors) {
    /* lowest trainable tensors sit mid-block: the walk must stop right after them */
    const char *f[] = {"*"};
    const char *t[] = {"h.1.ln_2.bias", "h.2.attn.c_proj.weight", "h.1.mlp.c_proj.bias"};
    grads_match(f, 1, t, 3, -1, -1);
}
Test(freeze, grads_equal_unfrozen_only_wte) {
    const char *f[] = {"*"};
    const char *t[] = {"wte.weight"};
    grads_match(f, 1, t, 1, -1, -1);
}

Test(freeze, bad_patterns_are_errors) {
    GPT *m = make_model(&SMALL, 3);
    const char *f[] = {"h.0.attn.c_atn.weight"};
    cr_expect_eq(gpt_set_trainable(m, f, 1, NULL, 0), -1);
    cr_expect(strstr(err_msg(), "c_atn"), "error names the pattern: %s", err_msg());
    cr_expect_eq(gpt_num_trainable(m), gpt_num_params(m), "nothing changed");
    cr_expect_eq(gpt_set_layers_trainable(m, 2, 3, 0), -1);
    gpt_free(m);
}

Test(freeze, optimizer_state_halves_with_half_the_blocks) {
    GPTConfig cfg = {.n_layer = 4, .n_head = 4, .n_embd = 64, .vocab_size = 64, .n_positions = 16,
                     .layer_norm_epsilon = 1e-5f, .vocab_pad = 0};
    GPT *m = gpt_create(&cfg, backend_cpu());
    AdamWConfig ac = {0.9, 0.95, 1e-8, 0.1, 1.0};
    Optimizer *full = optim_create(m, &ac);
    size_t full_bytes = optim_state_bytes(full), full_train = optim_train_state_bytes(full);
    optim_free(full);
    cr_assert_eq(gpt_set_layers_trainable(m, 0, 1, 0), 0);
    Optimizer *half = optim_create(m, &ac);
    size_t half_bytes = optim_state_bytes(half), half_train = optim_train_state_bytes(half);
    size_t expect = 0;
    for (int i = 0; i < gpt_num_tensors(m); i++)
        if (gpt_tensor(m, i)->trainable) expect += gpt_tensor(m, i)->alloc; /* incl. padding */
    cr_expect_eq(half_bytes, 2 * expect * sizeof(float), "m and v for trainable tensors only");
    double ratio = (double)half_bytes / full_bytes;
    fprintf(stderr, "optimizer state: all trainable %zu B, blocks 0-1 of 4 frozen %zu B "
                    "(ratio %.3f); grads+state %zu B -> %zu B\n",
            full_bytes, half_bytes, ratio, full_train, half_train);
    cr_expect(ratio > 0.45 && ratio < 0.56, "ratio %.3f, expected about 0.5", ratio);
    cr_expect_eq(half_train, half_bytes + expect * sizeof(float), "gradients: trainable only");
    optim_free(half);
    gpt_free(m);
}

/* ------------------------------------------------------------------ LoRA */

static LoraConfig lora_cfg(int r, float alpha, float dropout, const char *t0, const char *t1) {
    LoraConfig c;
    memset(&c, 0, sizeof c);
    c.r = r;
    c.alpha = alpha;
    c.dropout = dropout;
    c.seed = 7;
    snprintf(c.targets[c.n_targets++], LORA_NAME_LEN, "%s", t0);
    if (t1) snprintf(c.targets[c.n_targets++], LORA_NAME_LEN, "%s", t1);
    return c;
}

Test(lora, attach_targets_peft_names) {
    GPT *m = make_model(&SMALL, 4);
    size_t base = gpt_num_params(m);
    LoraConfig c = lora_cfg(4, 8, 0, "c_proj", NULL);
    cr_assert_eq(gpt_lora_attach(m, &c), 0, "%s", err_msg());
    /* "c_proj" matches attn.c_proj and mlp.c_proj by suffix, not c_attn or c_fc */
    cr_expect(gpt_find_tensor(m, "h.0.attn.c_proj.lora_A.weight"));
    cr_expect(gpt_find_tensor(m, "h.2.mlp.c_proj.lora_B.weight"));
    cr_expect(!gpt_find_tensor(m, "h.0.attn.c_attn.lora_A.weight"));
    cr_expect(!gpt_find_tensor(m, "h.0.mlp.c_fc.lora_A.weight"));
    const ParamInfo *a = gpt_find_tensor(m, "h.1.mlp.c_proj.lora_A.weight");
    cr_expect(a->shape[0] == 4 * 16 && a->shape[1] == 4, "A^T is (in, r)");
    size_t adapters = (size_t)3 * (16 * 4 + 4 * 16 + 64 * 4 + 4 * 16);
    cr_expect_eq(gpt_num_trainable(m), adapters);
    cr_expect_eq(gpt_num_params(m), base + adapters);
    cr_expect_float_eq(gpt_lora_scale(m), 2.0f, 1e-7);
    /* PEFT init: A in U(-1/sqrt(in), 1/sqrt(in)), not all zero; B zero */
    float *h = host_params(m);
    double amax = 0;
    for (size_t k = 0; k < a->numel; k++) amax = fmax(amax, fabs(h[a->offset + k]));
    cr_expect(amax > 0.05 && amax <= 1.0 / sqrt(64.0), "A range %.3g", amax);
    const ParamInfo *b = gpt_find_tensor(m, "h.1.mlp.c_proj.lora_B.weight");
    for (size_t k = 0; k < b->numel; k++) cr_expect_eq(h[b->offset + k], 0.0f);
    free(h);
    LoraConfig bad = lora_cfg(4, 8, 0, "q_proj", NULL);
    GPT *m2 = make_model(&SMALL, 4);
    cr_expect_eq(gpt_lora_attach(m2, &bad), -1, "a target that matches nothing is an error");
    LoraConfig glob = lora_cfg(2, 4, 0, "h.[12].mlp.*", NULL);
    cr_expect_eq(gpt_lora_attach(m2, &glob), 0, "%s", err_msg());
    cr_expect(gpt_find_tensor(m2, "h.1.mlp.c_fc.lora_A.weight"));
    cr_expect(!gpt_find_tensor(m2, "h.0.mlp.c_fc.lora_A.weight"));
    gpt_free(m2);
    gpt_free(m);
}

Test(lora, forward_equals_merged_model) {
    GPT *m = make_model(&SMALL, 5);
    LoraConfig c = lora_cfg(3, 6, 0.2f, "c_attn", "mlp.c_fc");
    snprintf(c.targets[c.n_targets++], LORA_NAME_LEN, "attn.c_proj");
    cr_assert_eq(gpt_lora_attach(m, &c), 0, "%s", err_msg());
    randomise_lora_b(m, 9);
    int B = 2, T = 8, in[16];
    random_tokens(in, B * T, SMALL.vocab_size, 6);
    GPT *base = make_model(&SMALL, 5);
    float *lb = logits_of(base, in, B, T);
    gpt_set_train_mode(m, 0); /* no dropout */
    float *la = logits_of(m, in, B, T);
    size_t n = (size_t)B * T * SMALL.vocab_size;
    cr_expect(rel_err(la, lb, n) > 1e-3, "the adapter changes the logits");
    gpt_set_train_mode(m, 1);
    float *ld = logits_of(m, in, B, T);
    cr_expect(rel_err(ld, la, n) > 1e-4, "dropout is active in training forwards");
    gpt_lora_merge(m);
    cr_expect(!gpt_lora_config(m));
    cr_expect_eq(gpt_num_trainable(m), gpt_num_params(base));
    float *lm = logits_of(m, in, B, T);
    double err = rel_err(la, lm, n);
    cr_expect(err < 1e-5, "adapted vs merged logits: relative error %.3g (tolerance 1e-5)", err);
    free(lb);
    free(la);
    free(ld);
    free(lm);
    gpt_free(base);
    gpt_free(m);
}

/* Loss in double for finite differences, at a fixed dropout step. */
static double fd_loss(GPT *m, const int *in, const int *tg, int B, int T, uint64_t step) {
    gpt_lora_set_dropout_step(m, step);
    return lm_loss_of(m, in, tg, B, T, 0);
}

static void lora_finite_differences(float dropout) {
    GPTConfig cfg = {.n_layer = 2, .n_head = 2, .n_embd = 8, .vocab_size = 13, .n_positions = 6,
                     .layer_norm_epsilon = 1e-5f, .vocab_pad = 0};
    GPT *m = make_model(&cfg, 8);
    LoraConfig c = lora_cfg(2, 4, dropout, "c_attn", "c_proj");
    snprintf(c.targets[c.n_targets++], LORA_NAME_LEN, "c_fc");
    cr_assert_eq(gpt_lora_attach(m, &c), 0, "%s", err_msg());
    randomise_lora_b(m, 10);
    int B = 2, T = 6, in[12], tg[12];
    random_tokens(in, B * T, cfg.vocab_size, 11);
    random_tokens(tg, B * T, cfg.vocab_size, 12);
    uint64_t step = 41;
    gpt_zero_grad(m);
    gpt_lora_set_dropout_step(m, step);
    lm_loss_of(m, in, tg, B, T, 1);
    size_t n = gpt_flat_size(m);
    float *grad = host_grads(m), *h = host_params(m);
    double eps = 1e-3;
    for (int i = 0; i < gpt_num_tensors(m); i++) {
        const ParamInfo *p = gpt_tensor(m, i);
        if (!p->lora) continue;
        enum { SAMPLES = 6 };
        float ana[SAMPLES], num[SAMPLES];
        for (int s = 0; s < SAMPLES; s++) {
            size_t k = p->offset + (size_t)(s * 7919) % p->numel;
            float keep = h[k];
            h[k] = keep + (float)eps;
            gpt_copy_params_to_device(m, h, n);
            double up = fd_loss(m, in, tg, B, T, step);
            h[k] = keep - (float)eps;
            gpt_copy_params_to_device(m, h, n);
            double down = fd_loss(m, in, tg, B, T, step);
            h[k] = keep;
            num[s] = (float)((up - down) / (2 * eps));
            ana[s] = grad[k];
        }
        gpt_copy_params_to_device(m, h, n);
        double err = rel_err(ana, num, SAMPLES);
        cr_expect(err < 2e-2, "%s (dropout %.1f): gradient vs finite differences %.3g", p->name,
                  dropout, err);
    }
    free(grad);
    free(h);
    gpt_free(m);
}

Test(lora, gradients_match_finite_differences) { lora_finite_differences(0.0f); }
Test(lora, gradients_match_finite_differences_with_dropout) { lora_finite_differences(0.3f); }

Test(lora, only_adapters_train) {
    GPT *m = make_model(&SMALL, 12);
    LoraConfig c = lora_cfg(4, 16, 0.1f, "c_attn", NULL);
    cr_assert_eq(gpt_lora_attach(m, &c), 0, "%s", err_msg());
    AdamWConfig ac = {0.9, 0.95, 1e-8, 0.1, 1.0};
    Optimizer *o = optim_create(m, &ac);
    cr_expect_eq(optim_state_size(o), gpt_grad_size(m));
    cr_expect_eq(optim_state_bytes(o), 2 * 3 * (size_t)(16 * 4 + 4 * 48) * sizeof(float));
    float *before = host_params(m);
    int B = 2, T = 8, in[16], tg[16];
    for (int s = 0; s < 3; s++) {
        random_tokens(in, B * T, SMALL.vocab_size, 30 + s);
        random_tokens(tg, B * T, SMALL.vocab_size, 40 + s);
        gpt_zero_grad(m);
        lm_loss_of(m, in, tg, B, T, 1);
        optim_clip_grad_norm(o);
        optim_step(o, 1e-2);
    }
    float *after = host_params(m);
    for (int i = 0; i < gpt_num_tensors(m); i++) {
        const ParamInfo *p = gpt_tensor(m, i);
        int same = !memcmp(before + p->offset, after + p->offset, p->numel * sizeof(float));
        cr_expect(p->lora ? !same : same, "%s %s", p->name, p->lora ? "did not train" : "changed");
    }
    free(before);
    free(after);
    optim_free(o);
    gpt_free(m);
}

/* ------------------------------------------------------------------ PEFT */

typedef struct {
    SafeTensorsFile *f;
    int B, T, N, V;
    int in[64], tg[64];
} Expected;

static Expected load_expected(void) {
    Expected e;
    e.f = safetensors_open("tests/fixtures/lora_expected.safetensors");
    cr_assert(e.f, "%s (regenerate with tests/make_lora_fixtures.py)", err_msg());
    e.B = atoi(safetensors_meta(e.f, "B"));
    e.T = atoi(safetensors_meta(e.f, "T"));
    e.N = e.B * e.T;
    cr_assert(e.N <= 64);
    memcpy(e.in, safetensors_find(e.f, "inputs")->data, e.N * sizeof(int));
    memcpy(e.tg, safetensors_find(e.f, "targets")->data, e.N * sizeof(int));
    e.V = (int)safetensors_find(e.f, "logits")->shape[2];
    return e;
}

static GPT *load_peft_fixture(void) {
    GPT *m = model_load_hf("tests/fixtures/lora_base", backend_cpu());
    cr_assert(m, "%s", err_msg());
    cr_assert_eq(lora_load_peft(m, "tests/fixtures/lora_adapter"), 0, "%s", err_msg());
    gpt_set_train_mode(m, 0);
    return m;
}

static void expect_logits(const Expected *e, const float *logits, double tol, const char *what) {
    size_t n = (size_t)e->N * e->V;
    float *ref = malloc(n * sizeof(float));
    cr_assert_eq(safetensors_read_f32(e->f, safetensors_find(e->f, "logits"), ref, n), 0);
    double err = rel_err(logits, ref, n);
    cr_expect(err < tol, "%s: logits relative error %.3g vs PEFT (tolerance %g)", what, err, tol);
    free(ref);
}

Test(peft, fixture_logits_loss_and_gradients) {
    Expected e = load_expected();
    GPT *m = load_peft_fixture();
    const LoraConfig *c = gpt_lora_config(m);
    cr_assert(c);
    cr_expect_eq(c->r, 4);
    cr_expect_float_eq(c->dropout, 0.1f, 1e-7);
    cr_expect(gpt_find_tensor(m, "h.1.attn.c_proj.lora_A.weight"), "c_proj -> attn.c_proj");
    cr_expect(gpt_find_tensor(m, "h.1.mlp.c_proj.lora_B.weight"), "c_proj -> mlp.c_proj");
    cr_expect(!gpt_find_tensor(m, "h.1.mlp.c_fc.lora_B.weight"));
    float *logits = logits_of(m, e.in, e.B, e.T);
    expect_logits(&e, logits, 1e-5, "base + adapter");
    gpt_zero_grad(m);
    double loss = lm_loss_of(m, e.in, e.tg, e.B, e.T, 1);
    float ref_loss;
    safetensors_read_f32(e.f, safetensors_find(e.f, "loss"), &ref_loss, 1);
    cr_expect(fabs(loss - ref_loss) <= 1e-5 * fabs(ref_loss), "loss %.8f vs PEFT %.8f", loss,
              ref_loss);
    float *grad = host_grads(m);
    int checked = 0;
    for (int i = 0; i < gpt_num_tensors(m); i++) {
        const ParamInfo *p = gpt_tensor(m, i);
        if (!p->lora) continue;
        char key[160];
        snprintf(key, sizeof key, "grad.base_model.model.transformer.%s", p->name);
        const StTensor *t = safetensors_find(e.f, key);
        cr_assert(t, "fixture lacks %s", key);
        float *ref = malloc(p->numel * sizeof(float)), *mine = malloc(p->numel * sizeof(float));
        safetensors_read_f32(e.f, t, ref, p->numel);
        /* ours is the transpose (Conv1D orientation) */
        for (int a = 0; a < p->shape[0]; a++)
            for (int b = 0; b < p->shape[1]; b++)
                mine[(size_t)b * p->shape[0] + a] = grad[p->offset + (size_t)a * p->shape[1] + b];
        double err = rel_err(mine, ref, p->numel);
        cr_expect(err < 1e-4, "%s: gradient relative error %.3g vs PEFT (tolerance 1e-4)",
                  p->name, err);
        checked++;
        free(ref);
        free(mine);
    }
    cr_expect_eq(checked, 12);
    free(grad);
    free(logits);
    gpt_free(m);
    safetensors_close(e.f);
}

Test(peft, merged_export_matches_base_plus_adapter) {
    Expected e = load_expected();
    GPT *m = load_peft_fixture();
    float *adapted = logits_of(m, e.in, e.B, e.T);
    gpt_lora_merge(m);
    char dir[256];
    make_temp_dir(dir, sizeof dir, "lora-merged");
    cr_assert_eq(model_save_hf(m, dir), 0, "%s", err_msg());
    GPT *merged = model_load_hf(dir, backend_cpu());
    cr_assert(merged, "%s", err_msg());
    float *lm = logits_of(merged, e.in, e.B, e.T);
    size_t n = (size_t)e.N * e.V;
    double err = rel_err(lm, adapted, n);
    cr_expect(err < 1e-5, "merged export vs base + adapter: %.3g (tolerance 1e-5)", err);
    expect_logits(&e, lm, 1e-5, "merged export");
    free(adapted);
    free(lm);
    rm_rf(dir);
    gpt_free(merged);
    gpt_free(m);
    safetensors_close(e.f);
}

Test(peft, c_written_adapter_round_trips) {
    GPT *m = make_model(&SMALL, 13);
    LoraConfig c = lora_cfg(4, 8, 0.05f, "c_attn", "mlp.c_fc");
    cr_assert_eq(gpt_lora_attach(m, &c), 0, "%s", err_msg());
    randomise_lora_b(m, 14);
    gpt_set_train_mode(m, 0);
    char dir[256];
    const char *keep = getenv("RETORT_LORA_EXPORT");
    if (keep) snprintf(dir, sizeof dir, "%s", keep);
    else make_temp_dir(dir, sizeof dir, "lora-adapter");
    char adapter[300], base[300];
    snprintf(adapter, sizeof adapter, "%s/adapter", dir);
    snprintf(base, sizeof base, "%s/base", dir);
    cr_assert_eq(mkdir_p(base), 0);
    cr_assert_eq(model_save_hf(m, base), 0, "%s", err_msg());
    cr_assert_eq(lora_save_peft(m, adapter, base), 0, "%s", err_msg());
    int B = 2, T = 8, in[16];
    random_tokens(in, B * T, SMALL.vocab_size, 15);
    float *la = logits_of(m, in, B, T);

    /* adapter_config.json says what PEFT needs */
    char path[400];
    snprintf(path, sizeof path, "%s/adapter_config.json", adapter);
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    cr_assert(root, "%s", jerr.text);
    cr_expect_str_eq(json_string_value(json_object_get(root, "peft_type")), "LORA");
    cr_expect_str_eq(json_string_value(json_object_get(root, "task_type")), "CAUSAL_LM");
    cr_expect_eq(json_integer_value(json_object_get(root, "r")), 4);
    cr_expect_eq(json_integer_value(json_object_get(root, "lora_alpha")), 8);
    cr_expect_float_eq(json_number_value(json_object_get(root, "lora_dropout")), 0.05, 1e-12);
    cr_expect(json_is_true(json_object_get(root, "fan_in_fan_out")));
    cr_expect_eq(json_array_size(json_object_get(root, "target_modules")), 2);
    json_decref(root);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", adapter);
    SafeTensorsFile *f = safetensors_open(path);
    cr_assert(f, "%s", err_msg());
    const StTensor *t = safetensors_find(f, "base_model.model.transformer.h.2.mlp.c_fc.lora_B.weight");
    cr_assert(t);
    cr_expect(t->shape[0] == 64 && t->shape[1] == 4, "lora_B is (out, r) as in PEFT");
    cr_expect_eq(safetensors_count(f), 12);
    safetensors_close(f);

    if (keep) { /* logits for tests/check_peft_load.py */
        snprintf(path, sizeof path, "%s/c_logits.safetensors", dir);
        StTensor ts[2] = {{.name = "inputs", .dtype = ST_I32, .ndim = 2, .shape = {B, T}, .data = in},
                          {.name = "logits", .dtype = ST_F32, .ndim = 3,
                           .shape = {B, T, SMALL.vocab_size}, .data = la}};
        cr_assert_eq(safetensors_write(path, ts, 2, NULL), 0, "%s", err_msg());
    }

    GPT *back = model_load_hf(base, backend_cpu());
    cr_assert(back, "%s", err_msg());
    cr_assert_eq(lora_load_peft(back, adapter), 0, "%s", err_msg());
    gpt_set_train_mode(back, 0);
    float *lb = logits_of(back, in, B, T);
    cr_expect_eq(max_abs_diff(la, lb, (size_t)B * T * SMALL.vocab_size), 0.0,
                 "reloaded adapter gives the same logits");
    /* loading again into a model that has the adapters is a resume: same result */
    cr_assert_eq(lora_load_peft(back, adapter), 0, "%s", err_msg());
    free(la);
    free(lb);
    gpt_free(back);
    gpt_free(m);
    if (!keep) rm_rf(dir);
}

Test(peft, unsupported_features_are_refused) {
    char dir[256];
    make_temp_dir(dir, sizeof dir, "lora-dora");
    char path[300];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    const char *text = "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, "
                       "\"target_modules\": [\"c_attn\"], \"use_dora\": true}";
    cr_assert_eq(write_file_atomic(path, text, strlen(text)), 0);
    LoraConfig c;
    cr_expect_eq(lora_read_config(dir, &c), -1);
    cr_expect(strstr(err_msg(), "use_dora"), "%s", err_msg());
    text = "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": "
           "\".*\\\\.h\\\\.1\\\\.attn\\\\.c_attn\", \"layers_to_transform\": null}";
    cr_assert_eq(write_file_atomic(path, text, strlen(text)), 0);
    cr_assert_eq(lora_read_config(dir, &c), 0, "%s", err_msg());
    GPT *m = make_model(&SMALL, 16);
    cr_assert_eq(gpt_lora_attach(m, &c), 0, "%s", err_msg());
    cr_expect(gpt_find_tensor(m, "h.1.attn.c_attn.lora_A.weight"), "regex form of target_modules");
    cr_expect(!gpt_find_tensor(m, "h.0.attn.c_attn.lora_A.weight"));
    gpt_free(m);
    rm_rf(dir);
}

/* Values that no float or int holds, which 1df6ed0 read silently: lora_alpha
 * 1e300 became inf (every adapted layer inf), r 2^32 + 1 became 1, layer
 * 2^32 became 0; a dropout of 5 was refused only later, without the file
 * named (found by fuzz/fuzz_model_json.c). */
Test(peft, out_of_range_numbers_are_refused) {
    char dir[256];
    make_temp_dir(dir, sizeof dir, "lora-range");
    char path[300];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    static const char *const cases[][2] = {
        {"\"r\": 4, \"lora_alpha\": 1e300", "lora_alpha"},
        {"\"r\": 4294967297, \"lora_alpha\": 8", "'r'"},
        {"\"r\": 4, \"lora_alpha\": 8, \"layers_to_transform\": [0, 4294967296]",
         "layers_to_transform[1]"},
        {"\"r\": 4, \"lora_alpha\": 8, \"layers_to_transform\": -1", "layers_to_transform"},
        {"\"r\": 4, \"lora_alpha\": 8, \"lora_dropout\": 5", "lora_dropout"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[256];
        snprintf(text, sizeof text, "{\"peft_type\": \"LORA\", %s}", cases[i][0]);
        cr_assert_eq(write_file_atomic(path, text, strlen(text)), 0);
        LoraConfig c;
        err_clear();
        cr_expect_eq(lora_read_config(dir, &c), -1, "accepted: %s", text);
        cr_expect(strstr(err_msg(), cases[i][1]) && strstr(err_msg(), "adapter_config.json"),
                  "%s: %s", text, err_msg());
    }
    rm_rf(dir);
}

/* ------------------------------------------------------------- the base's identity */

/* The weights of m's base tensors rounded to bf16 (to nearest even), as the
 * CUDA backend holds them. */
static void round_base_to_bf16(GPT *m) {
    float *h = host_params(m);
    for (int i = 0; i < gpt_num_tensors(m); i++) {
        const ParamInfo *p = gpt_tensor(m, i);
        if (p->lora) continue;
        for (size_t k = 0; k < p->numel; k++) {
            uint32_t u;
            memcpy(&u, &h[p->offset + k], sizeof u);
            u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
            memcpy(&h[p->offset + k], &u, sizeof u);
        }
    }
    gpt_copy_params_to_device(m, h, gpt_flat_size(m));
    free(h);
}

Test(peft, adapter_refuses_another_base) {
    GPT *m = make_model(&SMALL, 21);
    LoraConfig c = lora_cfg(4, 8, 0.0f, "c_attn", NULL);
    cr_assert_eq(gpt_lora_attach(m, &c), 0, "%s", err_msg());
    randomise_lora_b(m, 22);
    char dir[256], adapter[300];
    make_temp_dir(dir, sizeof dir, "lora-base");
    snprintf(adapter, sizeof adapter, "%s/adapter", dir);
    cr_assert_eq(lora_save_peft(m, adapter, "bases/a"), 0, "%s", err_msg());

    /* the same base, fresh: loads; so does that base after a round trip through bf16 */
    GPT *same = make_model(&SMALL, 21);
    cr_expect_eq(lora_load_peft(same, adapter), 0, "%s", err_msg());
    gpt_free(same);
    same = make_model(&SMALL, 21);
    round_base_to_bf16(same);
    cr_expect_eq(lora_load_peft(same, adapter), 0, "bf16 copy of the base: %s", err_msg());
    gpt_free(same);

    /* other weights, same shapes: refused, both identities named */
    GPT *other = make_model(&SMALL, 23);
    cr_expect_eq(lora_load_peft(other, adapter), LORA_OTHER_BASE);
    const char *msg = err_msg();
    assert_contains(msg, "trained on another base model");
    assert_contains(msg, "\"bases/a\"");
    assert_contains(msg, "the same tensors, different values");
    assert_contains(msg, adapter);
    char path[400];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", adapter);
    SafeTensorsFile *f = safetensors_open(path);
    cr_assert(f, "%s", err_msg());
    const char *want = safetensors_meta(f, "retort_base_weights");
    cr_assert(want && strlen(want) == 16, "the adapter records its base's weights");
    assert_contains(msg, want);
    safetensors_close(f);
    gpt_free(other);
    /* the user's override (export --force) */
    other = make_model(&SMALL, 23);
    cr_expect_eq(lora_load_peft_ex(other, adapter, 0), 0, "%s", err_msg());
    gpt_free(other);

    /* another shape (one more layer): refused as different tensors */
    GPTConfig deeper = SMALL;
    deeper.n_layer = 4;
    other = make_model(&deeper, 21);
    cr_expect_eq(lora_load_peft(other, adapter), LORA_OTHER_BASE);
    assert_contains(err_msg(), "different tensors or shapes");
    gpt_free(other);

    /* adapter_config.json stays what PEFT reads: no key of ours */
    snprintf(path, sizeof path, "%s/adapter_config.json", adapter);
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    cr_assert(root, "%s", jerr.text);
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) cr_expect(strncmp(key, "retort", 6), "key %s", key);
    cr_expect_str_eq(json_string_value(json_object_get(root, "base_model_name_or_path")),
                     "bases/a");
    json_decref(root);
    gpt_free(m);
    rm_rf(dir);
}
