/* tests/test_lora_llama.c — LoRA on the Llama families against PEFT.
 *
 * Fixtures (tests/fixtures/lora_llama/, written by
 * tests/make_lora_llama_fixtures.py): tiny random bases saved by
 * transformers (a grouped-query llama with an untied head, a qwen2 with q/k/v
 * biases, a llama over the bytes tokenizer's 257 ids) and PEFT adapters on
 * them: every linear module of every block (llama_all, qwen2_all), and only
 * k_proj and up_proj of block 1 (llama_sub), which retort computes as column
 * slices of its fused q/k/v and gate/up GEMMs. Each comes with what PEFT
 * computes: logits, loss, adapter gradients, and the weights
 * merge_and_unload writes.
 *
 *   - base (model_load_hf) + adapter (lora_load_peft) give PEFT's logits and
 *     loss (1e-5 relative: both fp32, summation order) and adapter gradients
 *     (1e-4 per tensor: longer sums in another order), and lora_save_peft
 *     writes back PEFT's tensors bit for bit; a layers_pattern that is not
 *     the family's ("layers"; GPT-2's "h") is refused, and so are the LoRA
 *     variants of PEFT 0.21 that compute something else (aLoRA, QALoRA, ...);
 *   - gpt_lora_merge gives PEFT's merged weights (1e-6 relative per tensor:
 *     W + s B A in fp32 on both sides, ours accumulating in double) and
 *     leaves every other tensor bit-identical;
 *   - adapters retort attaches and saves load in PeftModel.from_pretrained
 *     onto the base retort saved, with the C logits (tests/check_peft_load.py,
 *     skipped visibly without .venv and peft);
 *   - freeze patterns that split q/k/v or gate/up (one GEMM each) are
 *     refused, leaving the model as it was; freezing all of them works and
 *     the other gradients equal the unfrozen model's (1e-6);
 *   - the command line: `retort train` of a LoRA (q_proj, v_proj) on a
 *     transformers-made base, then `retort export --merge-lora`: the merged
 *     export gives base + adapter's logits in C, and transformers loads it
 *     to the same logits and loss, PEFT the trained adapter.
 */
#include <criterion/criterion.h>
#include <jansson.h>

#include "tests/testutil_cli.h"
#include "model/backend.h"
#include "model/checkpoint.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/model_io.h"
#include "model/safetensors.h"
#include "train/objectives/lm.h"

#define LL "tests/fixtures/lora_llama/"

/* ---------------------------------------------------------------- helpers */

typedef struct {
    SafeTensorsFile *f; /* NAME.safetensors */
    int B, T, N, V;
    int in[64], tg[64];
} Expected;

static const StTensor *need(SafeTensorsFile *f, const char *name) {
    const StTensor *t = safetensors_find(f, name);
    cr_assert(t, "fixture tensor '%s' missing (regenerate with `make fixtures`)", name);
    return t;
}

static float *read_f32(SafeTensorsFile *f, const char *name, size_t n) {
    const StTensor *t = need(f, name);
    cr_assert_eq((size_t)st_numel(t), n, "%s has %lld elements, want %zu", name,
                 (long long)st_numel(t), n);
    float *x = xmalloc(n * sizeof(float));
    cr_assert_eq(safetensors_read_f32(f, t, x, n), 0, "%s: %s", name, err_msg());
    return x;
}

static Expected load_expected(const char *name) {
    Expected e;
    char path[256];
    snprintf(path, sizeof path, LL "%s.safetensors", name);
    e.f = safetensors_open(path);
    cr_assert(e.f, "%s (regenerate with tests/make_lora_llama_fixtures.py)", err_msg());
    e.B = atoi(safetensors_meta(e.f, "B"));
    e.T = atoi(safetensors_meta(e.f, "T"));
    e.N = e.B * e.T;
    cr_assert(e.N > 0 && e.N <= 64);
    memcpy(e.in, need(e.f, "inputs")->data, e.N * sizeof(int));
    memcpy(e.tg, need(e.f, "targets")->data, e.N * sizeof(int));
    e.V = (int)need(e.f, "logits")->shape[2];
    return e;
}

/* The count of the file's tensors whose name starts with prefix. */
static int count_prefixed(const SafeTensorsFile *f, const char *prefix) {
    int n = 0;
    for (int i = 0; i < safetensors_count(f); i++)
        n += !strncmp(safetensors_get(f, i)->name, prefix, strlen(prefix));
    return n;
}

static GPT *load_base(const char *base) {
    char dir[256];
    snprintf(dir, sizeof dir, LL "%s", base);
    GPT *m = model_load_hf(dir, backend_cpu());
    cr_assert(m, "%s", err_msg());
    return m;
}

/* The base with the PEFT adapter of the fixture, in eval mode (no dropout). */
static GPT *load_fixture(const char *base, const char *adapter) {
    GPT *m = load_base(base);
    char dir[256];
    snprintf(dir, sizeof dir, LL "%s", adapter);
    cr_assert_eq(lora_load_peft(m, dir), 0, "%s", err_msg());
    gpt_set_train_mode(m, 0);
    return m;
}

static int n_adapters(const GPT *m) {
    int n = 0;
    for (int i = 0; i < gpt_num_tensors(m); i++) n += gpt_tensor(m, i)->lora != 0;
    return n;
}

/* dir/c_logits.safetensors: the batch, the C logits and the C loss, for
 * tests/check_peft_load.py. */
static void write_c_logits(const char *dir, int *in, int *tg, int B, int T, int V,
                           float *logits, float loss) {
    char path[512];
    snprintf(path, sizeof path, "%s/c_logits.safetensors", dir);
    StTensor ts[4] = {{.name = "inputs", .dtype = ST_I32, .ndim = 2, .shape = {B, T}, .data = in},
                      {.name = "targets", .dtype = ST_I32, .ndim = 2, .shape = {B, T}, .data = tg},
                      {.name = "logits", .dtype = ST_F32, .ndim = 3, .shape = {B, T, V},
                       .data = logits},
                      {.name = "loss", .dtype = ST_F32, .ndim = 1, .shape = {1}, .data = &loss}};
    cr_assert_eq(safetensors_write(path, ts, 4, NULL), 0, "%s", err_msg());
}

/* tests/check_peft_load.py on dir passes; 1 when it could not run, for want
 * of .venv (make fixtures creates it) or of peft in it (the caller removes its
 * files, then cr_skip_test). */
static int python_check(const char *dir, const char *what) {
    const char *argv[] = {PYTHON, "tests/check_peft_load.py", dir, NULL};
    int rc = run_python(argv);
    if (rc == 77) {
        fprintf(stderr, "SKIP: %s: no %s with transformers and peft (make fixtures creates it)\n",
                what, PYTHON);
        return 1;
    }
    cr_expect_eq(rc, 0, "%s: tests/check_peft_load.py %s failed (output above)", what, dir);
    return 0;
}

/* ---------------------------------------------------------------- PEFT parity */

/* Logits, loss and adapter gradients of base + adapter equal PEFT's. */
static void parity(const char *base, const char *name, int want_adapters) {
    Expected e = load_expected(name);
    GPT *m = load_fixture(base, name);
    cr_expect_eq(n_adapters(m), want_adapters, "%s: adapters attached", name);
    cr_expect_eq(count_prefixed(e.f, "grad."), want_adapters, "%s: fixture gradients", name);
    cr_expect_float_eq(gpt_lora_scale(m), 2.0f, 1e-7, "alpha 8 / r 4");
    float *logits = logits_of(m, e.in, e.B, e.T);
    size_t n = (size_t)e.N * e.V;
    float *ref = read_f32(e.f, "logits", n);
    double err = rel_err(logits, ref, n);
    cr_expect(err < 1e-5, "%s: logits relative error %.3g vs PEFT (tolerance 1e-5)", name, err);

    gpt_zero_grad(m);
    double loss = lm_loss_of(m, e.in, e.tg, e.B, e.T, 1);
    float *ref_loss = read_f32(e.f, "loss", 1);
    cr_expect(fabs(loss - *ref_loss) <= 1e-5 * fabs(*ref_loss), "%s: loss %.8f vs PEFT %.8f",
              name, loss, *ref_loss);
    float *grad = host_grads(m);
    int checked = 0;
    for (int i = 0; i < gpt_num_tensors(m); i++) {
        const ParamInfo *p = gpt_tensor(m, i);
        if (!p->lora) continue;
        char key[GPT_PARAM_NAME_LEN + 32];
        snprintf(key, sizeof key, "grad.base_model.model.%s", p->name);
        float *want = read_f32(e.f, key, p->numel), *mine = xmalloc(p->numel * sizeof(float));
        /* the table holds A^T (in, r) and B^T (r, out); PEFT A (r, in) and B (out, r) */
        for (int a = 0; a < p->shape[0]; a++)
            for (int b = 0; b < p->shape[1]; b++)
                mine[(size_t)b * p->shape[0] + a] = grad[p->offset + (size_t)a * p->shape[1] + b];
        err = rel_err(mine, want, p->numel);
        cr_expect(err < 1e-4, "%s: %s gradient relative error %.3g vs PEFT (tolerance 1e-4)", name,
                  p->name, err);
        checked++;
        free(want);
        free(mine);
    }
    cr_expect_eq(checked, want_adapters);

    /* saved again, the adapter is PEFT's file, tensor for tensor */
    char dir[256], src[512], dst[512];
    make_temp_dir(dir, sizeof dir, "lora-llama-resave");
    cr_assert_eq(lora_save_peft(m, dir, NULL), 0, "%s", err_msg());
    snprintf(src, sizeof src, LL "%s/adapter_model.safetensors", name);
    snprintf(dst, sizeof dst, "%s/adapter_model.safetensors", dir);
    SafeTensorsFile *a = safetensors_open(src), *b = safetensors_open(dst);
    cr_assert(a && b, "%s", err_msg());
    cr_expect_eq(safetensors_count(b), safetensors_count(a));
    for (int i = 0; i < safetensors_count(a); i++) {
        const StTensor *ta = safetensors_get(a, i), *tb = safetensors_find(b, ta->name);
        cr_assert(tb, "%s: lora_save_peft lacks %s", name, ta->name);
        cr_expect(tb->ndim == 2 && tb->shape[0] == ta->shape[0] && tb->shape[1] == ta->shape[1],
                  "%s: %s shape", name, ta->name);
        size_t k = (size_t)st_numel(ta);
        float *va = xmalloc(k * sizeof(float)), *vb = xmalloc(k * sizeof(float));
        safetensors_read_f32(a, ta, va, k);
        safetensors_read_f32(b, tb, vb, k);
        cr_expect(!memcmp(va, vb, k * sizeof(float)), "%s: %s values differ", name, ta->name);
        free(va);
        free(vb);
    }
    safetensors_close(a);
    safetensors_close(b);
    rm_rf(dir);
    free(ref_loss);
    free(ref);
    free(grad);
    free(logits);
    gpt_free(m);
    safetensors_close(e.f);
}

Test(peft_llama, every_module_gqa_untied) { parity("llama", "llama_all", 28); }
Test(peft_llama, qwen2_every_module_with_qkv_bias) { parity("qwen2", "qwen2_all", 28); }

Test(peft_llama, k_proj_and_up_proj_of_one_block) {
    parity("llama", "llama_sub", 4);
    GPT *m = load_fixture("llama", "llama_sub");
    const LoraConfig *c = gpt_lora_config(m);
    cr_assert(c);
    cr_expect(c->n_layers == 1 && c->layers[0] == 1, "layers_to_transform [1]");
    cr_expect(gpt_find_tensor(m, "model.layers.1.self_attn.k_proj.lora_A.weight"));
    cr_expect(gpt_find_tensor(m, "model.layers.1.mlp.up_proj.lora_B.weight"));
    cr_expect(!gpt_find_tensor(m, "model.layers.0.self_attn.k_proj.lora_A.weight"));
    cr_expect(!gpt_find_tensor(m, "model.layers.1.self_attn.q_proj.lora_A.weight"));
    cr_expect(!gpt_find_tensor(m, "model.layers.1.mlp.gate_proj.lora_A.weight"));
    const ParamInfo *b = gpt_find_tensor(m, "model.layers.1.self_attn.k_proj.lora_B.weight");
    cr_expect(b && b->shape[0] == 4 && b->shape[1] == 8, "k_proj's B^T is (r, KVH*HS)");
    gpt_free(m);
}

/* PEFT finds the block index after layers_pattern ("layers" in a Llama
 * family's module names, "h" in GPT-2's): another name would make PEFT adapt
 * nothing, so it is refused rather than read as the index of our names. */
Test(peft_llama, layers_pattern_of_another_family_is_refused) {
    char dir[256], path[400];
    make_temp_dir(dir, sizeof dir, "lora-llama-pattern");
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    size_t len = 0;
    char *data = read_file(LL "llama_sub/adapter_model.safetensors", &len);
    cr_assert(data, "%s", err_msg());
    write_bytes(path, data, len);
    free(data);
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    json_error_t jerr;
    json_t *root = json_load_file(LL "llama_sub/adapter_config.json", 0, &jerr);
    cr_assert(root, "%s", jerr.text);
    json_object_set_new(root, "layers_pattern", json_string("h"));
    cr_assert_eq(json_dump_file(root, path, 0), 0);
    GPT *m = load_base("llama");
    cr_expect_eq(lora_load_peft(m, dir), -1, "GPT-2's layers_pattern on a llama");
    assert_contains(err_msg(), "layers_pattern \"h\"");
    assert_contains(err_msg(), "model.layers");
    cr_expect(!gpt_lora_config(m), "nothing attached");
    json_object_set_new(root, "layers_pattern", json_pack("[s]", "layers"));
    cr_assert_eq(json_dump_file(root, path, 0), 0);
    cr_expect_eq(lora_load_peft(m, dir), 0, "the list form: %s", err_msg());
    json_decref(root);
    gpt_free(m);
    rm_rf(dir);
}

/* LoRA variants of PEFT 0.21 that compute something else are refused, naming
 * the key; their unset values (null, false, as PEFT writes them) load. */
Test(peft_llama, lora_variants_are_refused) {
    char dir[256], path[400];
    make_temp_dir(dir, sizeof dir, "lora-llama-variant");
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    static const char *const cases[][2] = {
        {"alora_invocation_tokens", "[5, 7]"}, {"use_qalora", "true"},
        {"use_bdlora", "{\"lora_a_is_blockdiagonal\": true}"},
        {"arrow_config", "{\"top_k\": 2}"}, {"kasa_config", "{\"beta\": 0.0001}"},
        {"monteclora_config", "{\"num_experts\": 4}"}};
    json_error_t jerr;
    json_t *root = json_load_file(LL "llama_all/adapter_config.json", 0, &jerr);
    cr_assert(root, "%s", jerr.text);
    LoraConfig c;
    cr_assert_eq(json_dump_file(root, path, 0), 0);
    cr_expect_eq(lora_read_config(dir, &c), 0, "PEFT's own file: %s", err_msg());
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *copy = json_deep_copy(root);
        json_t *value = json_loads(cases[i][1], JSON_DECODE_ANY, &jerr);
        cr_assert(value, "%s: %s", cases[i][1], jerr.text);
        json_object_set_new(copy, cases[i][0], value);
        cr_assert_eq(json_dump_file(copy, path, 0), 0);
        json_decref(copy);
        err_clear();
        cr_expect_eq(lora_read_config(dir, &c), -1, "%s accepted", cases[i][0]);
        assert_contains(err_msg(), cases[i][0]);
    }
    json_decref(root);
    rm_rf(dir);
}

/* ---------------------------------------------------------------- merging */

/* gpt_lora_merge writes PEFT's merge_and_unload weights and changes nothing
 * else; the merged model saved and loaded gives PEFT's merged logits. */
static void merge(const char *base, const char *name) {
    Expected e = load_expected(name);
    GPT *m = load_fixture(base, name);
    float *before = host_params(m);
    gpt_lora_merge(m);
    cr_expect(!gpt_lora_config(m));
    cr_expect_eq(n_adapters(m), 0);
    float *after = host_params(m);
    int merged = 0;
    for (int i = 0; i < gpt_num_tensors(m); i++) {
        const ParamInfo *p = gpt_tensor(m, i);
        char key[GPT_PARAM_NAME_LEN + 16];
        snprintf(key, sizeof key, "merged.%s", p->name);
        if (!safetensors_find(e.f, key)) {
            cr_expect(!memcmp(before + p->offset, after + p->offset, p->numel * sizeof(float)),
                      "%s: %s changed by the merge but not by PEFT's", name, p->name);
            continue;
        }
        float *want = read_f32(e.f, key, p->numel);
        double err = rel_err(after + p->offset, want, p->numel);
        cr_expect(err < 1e-6, "%s: merged %s relative error %.3g vs PEFT (tolerance 1e-6)", name,
                  p->name, err);
        double moved = rel_err(before + p->offset, want, p->numel);
        cr_expect(moved > 1e-3, "%s: %s: the adapter moves the weight (%.3g)", name, p->name,
                  moved);
        merged++;
        free(want);
    }
    cr_expect_eq(merged, count_prefixed(e.f, "merged."), "%s: every merged weight checked", name);

    char dir[256];
    make_temp_dir(dir, sizeof dir, "lora-llama-merged");
    cr_assert_eq(model_save_hf(m, dir), 0, "%s", err_msg());
    GPT *back = model_load_hf(dir, backend_cpu());
    cr_assert(back, "%s", err_msg());
    float *lm = logits_of(back, e.in, e.B, e.T);
    size_t n = (size_t)e.N * e.V;
    float *ref = read_f32(e.f, "merged_logits", n);
    double err = rel_err(lm, ref, n);
    cr_expect(err < 1e-5, "%s: merged export's logits relative error %.3g vs PEFT's merged "
                          "model (tolerance 1e-5)", name, err);
    free(ref);
    free(lm);
    gpt_free(back);
    rm_rf(dir);
    free(before);
    free(after);
    gpt_free(m);
    safetensors_close(e.f);
}

Test(peft_llama, merge_every_module) { merge("llama", "llama_all"); }
Test(peft_llama, merge_column_slices) { merge("llama", "llama_sub"); }
Test(peft_llama, merge_qwen2) { merge("qwen2", "qwen2_all"); }

/* ---------------------------------------------------------------- C-written adapters */

/* An adapter retort attaches (targets t, dropout 0.05 that eval mode turns
 * off) on base, saved with lora_save_peft beside model_save_hf's base, loads
 * back in C to the same logits and in PEFT to the C logits and loss. */
static void c_written(const char *base, const char *const *targets, int n_targets,
                      int want_adapters) {
    GPT *m = load_base(base);
    LoraConfig c;
    memset(&c, 0, sizeof c);
    c.r = 4;
    c.alpha = 8;
    c.dropout = 0.05f;
    c.seed = 17;
    for (int i = 0; i < n_targets; i++)
        snprintf(c.targets[c.n_targets++], LORA_NAME_LEN, "%s", targets[i]);
    cr_assert_eq(gpt_lora_attach(m, &c), 0, "%s", err_msg());
    cr_expect_eq(n_adapters(m), want_adapters);
    randomise_lora_b(m, 18);
    gpt_set_train_mode(m, 0);
    char dir[256], base_dir[300], adapter[300], src[256];
    make_temp_dir(dir, sizeof dir, "lora-llama-c");
    snprintf(base_dir, sizeof base_dir, "%s/base", dir);
    snprintf(adapter, sizeof adapter, "%s/adapter", dir);
    snprintf(src, sizeof src, LL "%s", base);
    cr_assert_eq(mkdir_p(base_dir), 0);
    cr_assert_eq(model_save_hf(m, base_dir), 0, "%s", err_msg());
    cr_assert_eq(lora_save_peft(m, adapter, src), 0, "%s", err_msg());
    int V = gpt_config(m)->vocab_size, B = 2, T = 7, in[14], tg[14];
    random_tokens(in, B * T, V, 19);
    random_tokens(tg, B * T, V, 20);
    float *la = logits_of(m, in, B, T);
    float loss = (float)lm_loss_of(m, in, tg, B, T, 0);

    /* what PEFT reads: nn.Linear layout, PEFT's keys and shapes */
    char path[400];
    snprintf(path, sizeof path, "%s/adapter_config.json", adapter);
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    cr_assert(root, "%s", jerr.text);
    cr_expect(json_is_false(json_object_get(root, "fan_in_fan_out")), "nn.Linear: (out, in)");
    cr_expect_str_eq(json_string_value(json_object_get(root, "base_model_name_or_path")), src);
    json_decref(root);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", adapter);
    SafeTensorsFile *f = safetensors_open(path);
    cr_assert(f, "%s", err_msg());
    cr_expect_eq(safetensors_count(f), want_adapters);
    for (int i = 0; i < gpt_num_tensors(m); i++) {
        const ParamInfo *p = gpt_tensor(m, i);
        if (!p->lora) continue;
        char key[GPT_PARAM_NAME_LEN + 32];
        snprintf(key, sizeof key, "base_model.model.%s", p->name);
        const StTensor *t = safetensors_find(f, key);
        cr_assert(t, "no %s in %s", key, path);
        cr_expect(t->shape[0] == p->shape[1] && t->shape[1] == p->shape[0],
                  "%s: PEFT's A is (r, in), B (out, r)", key);
    }
    safetensors_close(f);

    GPT *back = model_load_hf(base_dir, backend_cpu());
    cr_assert(back, "%s", err_msg());
    cr_assert_eq(lora_load_peft(back, adapter), 0, "%s", err_msg());
    gpt_set_train_mode(back, 0);
    float *lb = logits_of(back, in, B, T);
    cr_expect_eq(max_abs_diff(la, lb, (size_t)B * T * V), 0.0, "reloaded: the same logits");
    free(lb);
    gpt_free(back);

    write_c_logits(dir, in, tg, B, T, V, la, loss);
    free(la);
    gpt_free(m);
    int skipped = python_check(dir, "PEFT loading a retort adapter");
    rm_rf(dir);
    if (skipped) cr_skip_test();
}

Test(peft_llama, c_written_adapter_loads_in_peft, .timeout = 120) {
    const char *t[] = {"v_proj", "o_proj", "gate_proj", "down_proj"};
    c_written("llama", t, 4, 16);
}

Test(peft_llama, c_written_qwen2_adapter_loads_in_peft, .timeout = 120) {
    const char *t[] = {"q_proj", "k_proj", "up_proj"};
    c_written("qwen2", t, 3, 12);
}

/* ---------------------------------------------------------------- freezing */

/* Each pattern set splits one fused GEMM weight or bias and is refused,
 * naming both halves, with nothing frozen. */
Test(freeze_llama, patterns_splitting_a_fused_weight_are_refused) {
    GPT *m = load_base("qwen2");
    static const struct {
        const char *freeze, *train, *names[2];
    } cases[] = {
        {"model.layers.0.self_attn.k_proj.weight", NULL,
         {"model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight"}},
        {"*.v_proj.*", NULL, {"q_proj.weight", "v_proj.weight"}},
        {"*.self_attn.q_proj.bias", NULL, {"q_proj.bias", "k_proj.bias"}},
        {"model.layers.1.mlp.up_proj.weight", NULL,
         {"model.layers.1.mlp.gate_proj.weight", "model.layers.1.mlp.up_proj.weight"}},
        {"*", "*.self_attn.q_proj.*", {"q_proj.weight", "k_proj.weight"}},
        {"*", "model.layers.0.mlp.gate_proj.weight", {"gate_proj.weight", "up_proj.weight"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *f[] = {cases[i].freeze}, *t[] = {cases[i].train};
        err_clear();
        cr_expect_eq(gpt_set_trainable(m, f, 1, t, cases[i].train ? 1 : 0), -1,
                     "freeze %s train %s accepted", cases[i].freeze,
                     cases[i].train ? cases[i].train : "-");
        const char *msg = err_msg();
        assert_contains(msg, cases[i].names[0]);
        assert_contains(msg, cases[i].names[1]);
        assert_contains(msg, "train or freeze together");
        cr_expect_eq(gpt_num_trainable(m), gpt_num_params(m), "case %zu: nothing frozen", i);
    }
    gpt_free(m);
}

/* Freezing whole fused weights works: frozen tensors get no gradient and the
 * trainable ones the unfrozen model's. */
static void frozen_grads_match(const char *const *freeze, int nf, size_t want_frozen) {
    GPT *full = load_base("qwen2"), *part = load_base("qwen2");
    cr_assert_eq(gpt_set_trainable(part, freeze, nf, NULL, 0), 0, "%s", err_msg());
    cr_expect_eq(gpt_num_trainable(part), gpt_num_params(part) - want_frozen);
    int V = gpt_config(full)->vocab_size, B = 2, T = 9, in[18], tg[18];
    random_tokens(in, B * T, V, 31);
    random_tokens(tg, B * T, V, 32);
    gpt_zero_grad(full);
    gpt_zero_grad(part);
    double lf = lm_loss_of(full, in, tg, B, T, 1);
    double lp = lm_loss_of(part, in, tg, B, T, 1);
    cr_expect_eq(lf, lp, "loss differs: %.9g vs %.9g", lf, lp);
    float *gf = host_grads(full), *gp = host_grads(part);
    for (int i = 0; i < gpt_num_tensors(part); i++) {
        const ParamInfo *p = gpt_tensor(part, i);
        if (p->trainable) {
            double err = rel_err(gp + p->offset, gf + p->offset, p->numel);
            cr_expect(err < 1e-6, "%s: gradient relative error %.3g vs unfrozen", p->name, err);
        } else {
            for (size_t k = 0; k < p->numel; k++)
                if (gp[p->offset + k] != 0.0f) {
                    cr_expect(0, "%s frozen but has a gradient", p->name);
                    break;
                }
        }
    }
    free(gf);
    free(gp);
    gpt_free(full);
    gpt_free(part);
}

Test(freeze_llama, all_of_qkv_frozen) {
    /* qwen2: per layer q (16,16) + k, v (8,16) weights and their 16 + 8 + 8 biases */
    const char *f[] = {"*.self_attn.[qkv]_proj.*"};
    frozen_grads_match(f, 1, 2 * (256 + 128 + 128 + 32));
}

Test(freeze_llama, gate_and_up_of_block_0_frozen) {
    const char *f[] = {"model.layers.0.mlp.gate_proj.weight", "model.layers.0.mlp.up_proj.weight"};
    frozen_grads_match(f, 2, 2 * 24 * 16);
}

/* ---------------------------------------------------------------- the command line */

static void copy_file(const char *from, const char *to) {
    size_t len = 0;
    char *data = read_file(from, &len);
    cr_assert(data, "%s", err_msg());
    write_bytes(to, data, len);
    free(data);
}

Test(lora_llama_cli, train_then_export_merged_loads_in_transformers, .timeout = 240) {
    char dir[256], path[512], ckpt[512], merged[512];
    make_temp_dir(dir, sizeof dir, "lora-llama-cli");
    snprintf(path, sizeof path, "%s/train.jsonl", dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    Rng r;
    rng_seed(&r, 5);
    for (int i = 0; i < 60; i++) {
        char text[48];
        for (int j = 0; j < 40; j++) text[j] = "abcdef "[rng_below(&r, 7)];
        text[40] = 0;
        fprintf(f, "{\"text\": \"%s\"}\n", text);
    }
    fclose(f);
    RUN(dir, "data build --schema lm --input %s/train.jsonl --out %s/train.h5 -q", dir, dir);
    RUN(dir,
        "train -c configs/tiny-llama.yaml --set model.init=" LL "llama_bytes "
        "--set data.train=%s/train.h5 --set data.seq_len=16 --set data.batch_size=2 "
        "--set data.val_fraction=0 --set eval.every=0 --set checkpoint.every=0 "
        "--set train.steps=4 --set optim.warmup_steps=1 --set train.threads=1 "
        "--set train.log_every=1000 --set train.out_dir=%s/run --set finetune.lora_r=4 "
        "--set finetune.lora_alpha=8 --set finetune.lora_targets=q_proj,v_proj",
        dir, dir);
    snprintf(path, sizeof path, "%s/run", dir);
    ckpt_dir_name(ckpt, sizeof ckpt, path, 4);
    cr_assert(path_exists(ckpt), "no checkpoint at %s", ckpt);
    snprintf(merged, sizeof merged, "%s/merged/base", dir);
    RUN(dir, "export --model %s --merge-lora %s --out %s", ckpt, ckpt, merged);

    /* the checkpoint: the base unchanged (frozen), a trained q/v adapter */
    GPT *init = load_base("llama_bytes"), *m = model_load_hf(ckpt, backend_cpu());
    cr_assert(m, "%s", err_msg());
    float *w0 = host_params(init), *w1 = host_params(m);
    cr_expect(!memcmp(w0, w1, gpt_flat_size(init) * sizeof(float)), "the base trained");
    free(w0);
    free(w1);
    gpt_free(init);
    cr_assert_eq(lora_load_peft(m, ckpt), 0, "%s", err_msg());
    cr_expect_eq(n_adapters(m), 8, "q_proj and v_proj of 2 blocks");
    cr_expect(!gpt_find_tensor(m, "model.layers.0.self_attn.k_proj.lora_A.weight"));
    const ParamInfo *b = gpt_find_tensor(m, "model.layers.1.self_attn.v_proj.lora_B.weight");
    cr_assert(b);
    w1 = host_params(m);
    double bmax = 0;
    for (size_t k = 0; k < b->numel; k++) bmax = fmax(bmax, fabs(w1[b->offset + k]));
    cr_expect(bmax > 0, "lora_B trained away from zero");
    free(w1);
    gpt_set_train_mode(m, 0);

    /* the merged export is base + adapter */
    int V = gpt_config(m)->vocab_size, B = 2, T = 16, in[32], tg[32];
    random_tokens(in, B * T, V, 41);
    random_tokens(tg, B * T, V, 42);
    float *la = logits_of(m, in, B, T);
    GPT *mm = model_load_hf(merged, backend_cpu());
    cr_assert(mm, "%s", err_msg());
    float *lm = logits_of(mm, in, B, T);
    size_t n = (size_t)B * T * V;
    double err = rel_err(lm, la, n);
    cr_expect(err < 1e-5, "merged export vs base + adapter: %.3g (tolerance 1e-5)", err);
    float loss = (float)lm_loss_of(mm, in, tg, B, T, 0);
    write_c_logits((snprintf(path, sizeof path, "%s/merged", dir), path), in, tg, B, T, V, lm,
                   loss);

    /* PEFT takes the checkpoint's base and trained adapter */
    char peft[512], from[700], to[700];
    snprintf(peft, sizeof peft, "%s/peft", dir);
    static const char *const files[][2] = {{"config.json", "base"},
                                           {"model.safetensors", "base"},
                                           {"adapter_config.json", "adapter"},
                                           {"adapter_model.safetensors", "adapter"}};
    for (int i = 0; i < 4; i++) {
        snprintf(to, sizeof to, "%s/%s", peft, files[i][1]);
        cr_assert_eq(mkdir_p(to), 0);
        snprintf(from, sizeof from, "%s/%s", ckpt, files[i][0]);
        snprintf(to, sizeof to, "%s/%s/%s", peft, files[i][1], files[i][0]);
        copy_file(from, to);
    }
    loss = (float)lm_loss_of(m, in, tg, B, T, 0);
    write_c_logits(peft, in, tg, B, T, V, la, loss);
    free(la);
    free(lm);
    gpt_free(mm);
    gpt_free(m);

    snprintf(path, sizeof path, "%s/merged", dir);
    int skipped = python_check(path, "transformers loading the merged export");
    skipped |= python_check(peft, "PEFT loading the trained adapter");
    rm_rf(dir);
    if (skipped) cr_skip_test();
}
