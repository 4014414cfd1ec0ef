/* tests/test_hf_files.c — Hugging Face files of every family: config.json
 * (model/hf_config.c) and the weights beside it (model/model_io.c).
 *
 *   - every fixture config.json in tests/fixtures/configs (Hub files in
 *     transformers 4 spelling and save_pretrained files in 5's, made by
 *     tests/make_hf_config_fixtures.py) reads into what transformers builds
 *     from it, recorded in its expected.json, and so do the family fixtures
 *     of tests/fixtures/families;
 *   - written back (with the fixture as the source of the non-model keys)
 *     and read again it is the same GPTConfig, and transformers builds the
 *     same model from both files (tests/check_hf_config.py, skipped visibly
 *     without .venv);
 *   - every option retort does not implement is refused naming the key;
 *   - bf16 and fp16 conversions round to nearest even, exhaustively checked;
 *   - a GPT-2 model saved in bf16 across shards loads back to its
 *     bf16-rounded weights, the shards and index are transformers' layout,
 *     a later fp32 save removes them, generation_config.json and the token
 *     ids of the source are carried over, and transformers loads it to the
 *     logits retort computes (tests/check_hf_logits.py, skipped visibly
 *     without .venv).
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>

#include "data/h5data.h"
#include "model/backend.h"
#include "model/hf_config.h"
#include "model/checkpoint.h"
#include "model/model_io.h"
#include "model/safetensors.h"
#include "tests/testutil_cli.h"

#define CONFIGS "tests/fixtures/configs"
#define FAMILIES "tests/fixtures/families"

/* ---------------------------------------------------------------- helpers */

static int cmp_names(const void *a, const void *b) { return strcmp(a, b); }

/* The names of the subdirectories of dir holding a config.json, sorted. */
static int fixture_dirs(const char *dir, char names[][64], int max) {
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "cannot open %s", dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < max) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s/config.json", dir, e->d_name);
        if (e->d_name[0] != '.' && strlen(e->d_name) < 64 && path_exists(path))
            snprintf(names[n++], 64, "%.63s", e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, 64, cmp_names);
    return n;
}

static json_t *load_json(const char *dir, const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    json_error_t e;
    json_t *root = json_load_file(path, 0, &e);
    cr_assert_not_null(root, "%s: %s", path, e.text);
    return root;
}

static int jint(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    cr_assert(json_is_integer(v), "expected.json: %s is not an integer", key);
    return (int)json_integer_value(v);
}

static int jbool(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    cr_assert(json_is_boolean(v), "expected.json: %s is not a boolean", key);
    return json_is_true(v);
}

/* ---------------------------------------------------------------- reading */

/* cfg against what transformers builds from the same file (expected.json). */
static void check_against_transformers(const char *name, const GPTConfig *c, json_t *x) {
    const char *type = json_string_value(json_object_get(x, "model_type"));
    cr_assert_str_eq(gpt_arch_name(c->arch), type, "%s: arch", name);
    cr_expect_eq(c->n_layer, jint(x, "n_layer"), "%s: n_layer", name);
    cr_expect_eq(c->n_head, jint(x, "n_head"), "%s: n_head", name);
    cr_expect_eq(c->n_embd, jint(x, "n_embd"), "%s: n_embd", name);
    cr_expect_eq(c->vocab_size, jint(x, "vocab_size"), "%s: vocab_size", name);
    cr_expect_eq(c->n_positions, jint(x, "n_positions"), "%s: n_positions", name);
    cr_expect_eq(c->untied_head, !jbool(x, "tied"), "%s: tied head", name);
    /* torch adds eps to fp32 statistics: the float is what counts */
    cr_expect_eq(c->layer_norm_epsilon, (float)json_real_value(json_object_get(x, "eps")),
                 "%s: epsilon %.9g", name, c->layer_norm_epsilon);
    int I = c->intermediate_size ? c->intermediate_size : 4 * c->n_embd;
    cr_expect_eq(I, jint(x, "intermediate"), "%s: MLP width", name);
    if (c->arch == ARCH_GPT2) {
        cr_expect_eq(c->attn_no_scale, !jbool(x, "scale_attn_weights"), "%s", name);
        cr_expect_eq(c->attn_scale_inv_layer, jbool(x, "scale_attn_by_inverse_layer_idx"), "%s",
                     name);
        return;
    }
    cr_expect_eq(c->n_kv_head ? c->n_kv_head : c->n_head, jint(x, "n_kv_head"), "%s: kv heads",
                 name);
    cr_expect_eq(c->head_dim ? c->head_dim : c->n_embd / c->n_head, jint(x, "head_dim"),
                 "%s: head_dim", name);
    cr_expect_eq(c->attn_bias, jbool(x, "q_bias"), "%s: q bias", name);
    cr_expect_eq(c->attn_bias, jbool(x, "k_bias") && jbool(x, "v_bias"), "%s: k/v bias", name);
    cr_expect_eq(c->attn_out_bias, jbool(x, "o_bias"), "%s: o bias", name);
    cr_expect_eq(c->mlp_bias, jbool(x, "mlp_bias"), "%s: mlp bias", name);
    cr_expect_eq(c->qk_norm, jbool(x, "qk_norm"), "%s: q/k norm", name);
    json_t *windows = json_object_get(x, "sliding_window");
    for (size_t l = 0; l < json_array_size(windows); l++) {
        json_t *w = json_array_get(windows, l);
        cr_expect_eq(c->sliding_window, json_is_null(w) ? 0 : (int)json_integer_value(w),
                     "%s: sliding window of layer %zu", name, l);
    }
    cr_expect_eq(c->rope_theta, json_number_value(json_object_get(x, "rope_theta")),
                 "%s: rope_theta %.17g", name, c->rope_theta);
    static const char *const types[] = {"default", "linear", "llama3", "yarn"};
    cr_expect_str_eq(types[c->rope_type], json_string_value(json_object_get(x, "rope_type")),
                     "%s: rope type", name);
    double scaling = json_number_value(json_object_get(x, "attention_scaling"));
    if (c->rope_type == ROPE_YARN) /* the same double formula; log() may differ in an ulp */
        cr_expect(fabs(c->rope_attention_factor - scaling) <= 1e-15 * scaling,
                  "%s: yarn attention factor %.17g, transformers %.17g", name,
                  c->rope_attention_factor, scaling);
    else
        cr_expect_eq(scaling, 1.0, "%s", name);
}

Test(hf_config, fixtures_read_as_transformers_builds_them) {
    char names[64][64];
    int n = fixture_dirs(CONFIGS, names, 64);
    cr_assert_geq(n, 16, "tests/fixtures/configs holds %d fixtures", n);
    for (int i = 0; i < n; i++) {
        char dir[256];
        snprintf(dir, sizeof dir, "%s/%.63s", CONFIGS, names[i]);
        GPTConfig c;
        cr_assert_eq(hf_config_read(dir, &c), 0, "%s", err_msg());
        json_t *x = load_json(dir, "expected.json");
        check_against_transformers(names[i], &c, x);
        json_decref(x);
    }
}

Test(hf_config, family_fixtures_read) {
    char names[64][64];
    int n = fixture_dirs(FAMILIES, names, 64);
    if (n == 0) {
        fprintf(stderr, "SKIP: no %s fixtures\n", FAMILIES);
        cr_skip_test();
    }
    for (int i = 0; i < n; i++) {
        char dir[256];
        snprintf(dir, sizeof dir, "%s/%.63s", FAMILIES, names[i]);
        GPTConfig c;
        cr_expect_eq(hf_config_read(dir, &c), 0, "%s", err_msg());
    }
}

Test(hf_config, a_hub_llama_reads_every_field) {
    /* Llama-3.2-1B as published: GQA 32/8, head_dim 64, llama3 RoPE, tied */
    GPTConfig c;
    cr_assert_eq(hf_config_read(CONFIGS "/llama32_1b", &c), 0, "%s", err_msg());
    cr_expect_eq(c.arch, ARCH_LLAMA);
    cr_expect_eq(c.n_kv_head, 8);
    cr_expect_eq(c.head_dim, 0, "64 = 2048 / 32: the default, stored as 0");
    cr_expect_eq(c.intermediate_size, 8192);
    cr_expect_eq(c.untied_head, 0);
    cr_expect_eq(c.rope_type, ROPE_LLAMA3);
    cr_expect_eq(c.rope_theta, 500000.0);
    cr_expect_eq(c.rope_factor, 32.0);
    cr_expect_eq(c.rope_low_freq_factor, 1.0);
    cr_expect_eq(c.rope_high_freq_factor, 4.0);
    cr_expect_eq(c.rope_original_max_pos, 8192);
    cr_expect_eq(c.layer_norm_epsilon, 1e-5f);
    /* Qwen3-0.6B: head_dim 128 with hidden 1024 / 16 heads = 64 */
    cr_assert_eq(hf_config_read(CONFIGS "/qwen3_06b", &c), 0, "%s", err_msg());
    cr_expect_eq(c.head_dim, 128);
    cr_expect_eq(c.qk_norm, 1);
    /* Mistral v0.1: its 4096 window; Qwen2.5: no window (use_sliding_window false) */
    cr_assert_eq(hf_config_read(CONFIGS "/mistral_7b_v01", &c), 0, "%s", err_msg());
    cr_expect_eq(c.sliding_window, 4096);
    cr_assert_eq(hf_config_read(CONFIGS "/qwen25_05b", &c), 0, "%s", err_msg());
    cr_expect_eq(c.sliding_window, 0);
    cr_expect_eq(c.attn_bias, 1);
    cr_expect_eq(c.attn_out_bias, 0);
}

/* A config.json from text, in a fresh directory. */
static void write_config(const char *dir, const char *json) {
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    write_text(path, json);
}

static void expect_reads(const char *dir, const char *json, GPTConfig *c) {
    write_config(dir, json);
    cr_assert_eq(hf_config_read(dir, c), 0, "refused %s: %s", json, err_msg());
}

Test(hf_config, class_defaults_apply_to_absent_keys) {
    char dir[256];
    make_temp_dir(dir, sizeof dir, "cfgdef");
#define SIZES "\"hidden_size\": 64, \"num_hidden_layers\": 2, \"num_attention_heads\": 8, " \
              "\"vocab_size\": 100, \"max_position_embeddings\": 32, \"intermediate_size\": 96"
    GPTConfig c;
    /* num_key_value_heads: Llama n_head, Mistral 8; null is n_head everywhere */
    expect_reads(dir, "{\"model_type\": \"llama\", " SIZES "}", &c);
    cr_expect_eq(c.n_kv_head, 0);
    cr_expect_eq(c.untied_head, 1, "LlamaConfig's tie_word_embeddings defaults to false");
    cr_expect_eq(c.layer_norm_epsilon, 1e-6f, "rms_norm_eps defaults to 1e-6");
    cr_expect_eq(c.rope_theta, 10000.0);
    expect_reads(dir, "{\"model_type\": \"mistral\", " SIZES "}", &c);
    cr_expect_eq(c.n_kv_head, 0, "MistralConfig's default 8 is n_head here: no grouping");
    cr_expect_eq(c.sliding_window, 4096, "MistralConfig's default window");
    expect_reads(dir, "{\"model_type\": \"mistral\", \"num_key_value_heads\": null, "
                      "\"sliding_window\": null, " SIZES "}", &c);
    cr_expect_eq(c.n_kv_head, 0);
    cr_expect_eq(c.sliding_window, 0);
    /* Qwen3's head_dim defaults to 128, not hidden / heads */
    expect_reads(dir, "{\"model_type\": \"qwen3\", \"num_key_value_heads\": 4, " SIZES "}", &c);
    cr_expect_eq(c.head_dim, 128);
    /* rope_scaling wins over rope_parameters; "type" is the old rope_type */
    expect_reads(dir, "{\"model_type\": \"llama\", " SIZES ", \"rope_scaling\": {\"type\": "
                      "\"linear\", \"factor\": 2}, \"rope_parameters\": {\"rope_type\": "
                      "\"default\", \"rope_theta\": 500}}", &c);
    cr_expect_eq(c.rope_type, ROPE_LINEAR);
    cr_expect_eq(c.rope_factor, 2.0);
    cr_expect_eq(c.rope_theta, 10000.0, "the dict used has no rope_theta: the default");
    /* yarn: a null factor is max / original; attention factor from mscale */
    expect_reads(dir, "{\"model_type\": \"llama\", " SIZES ", \"rope_parameters\": {\"rope_type\": "
                      "\"yarn\", \"factor\": null, \"original_max_position_embeddings\": 8, "
                      "\"mscale\": 2, \"mscale_all_dim\": 1}}", &c);
    cr_expect_eq(c.rope_factor, 4.0);
    cr_expect_eq(c.rope_original_max_pos, 8);
    cr_expect(fabs(c.rope_attention_factor - (0.2 * log(4.0) + 1) / (0.1 * log(4.0) + 1)) < 1e-15);
    /* a top-level original_max_position_embeddings wins (standardize_rope_params) */
    expect_reads(dir, "{\"model_type\": \"llama\", " SIZES ", \"original_max_position_embeddings\""
                      ": 16, \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 2, "
                      "\"original_max_position_embeddings\": 8}}", &c);
    cr_expect_eq(c.rope_original_max_pos, 16);
    /* Qwen2: the window when use_sliding_window and every layer slides */
    expect_reads(dir, "{\"model_type\": \"qwen2\", \"num_key_value_heads\": 2, " SIZES
                      ", \"use_sliding_window\": true, \"sliding_window\": 16, "
                      "\"max_window_layers\": 0}", &c);
    cr_expect_eq(c.sliding_window, 16);
    expect_reads(dir, "{\"model_type\": \"qwen2\", \"num_key_value_heads\": 2, " SIZES
                      ", \"use_sliding_window\": true, \"sliding_window\": 16}", &c);
    cr_expect_eq(c.sliding_window, 0, "max_window_layers 28 >= 2 layers: none slides");
    /* GPT-2's two attention scalings */
    expect_reads(dir, "{\"model_type\": \"gpt2\", \"n_layer\": 2, \"n_head\": 2, \"n_embd\": 32, "
                      "\"vocab_size\": 50, \"n_positions\": 16, \"scale_attn_weights\": false, "
                      "\"scale_attn_by_inverse_layer_idx\": true, \"reorder_and_upcast_attn\": "
                      "true}", &c);
    cr_expect_eq(c.attn_no_scale, 1);
    cr_expect_eq(c.attn_scale_inv_layer, 1);
    rm_rf(dir);
}

static void expect_refused(const char *dir, const char *json, const char *needle) {
    write_config(dir, json);
    GPTConfig c;
    err_clear();
    cr_assert_eq(hf_config_read(dir, &c), -1, "accepted: %s", json);
    assert_contains(err_msg(), "config.json");
    assert_contains(err_msg(), needle);
}

Test(hf_config, options_retort_does_not_implement_are_refused) {
    char dir[256];
    make_temp_dir(dir, sizeof dir, "cfgbad");
#define LLAMA "{\"model_type\": \"llama\", " SIZES
#define QWEN2 "{\"model_type\": \"qwen2\", \"num_key_value_heads\": 2, " SIZES
    expect_refused(dir, "{\"model_type\": \"bert\", " SIZES "}", "bert");
    expect_refused(dir, LLAMA ", \"hidden_act\": \"gelu\"}", "hidden_act");
    expect_refused(dir, LLAMA ", \"num_key_value_heads\": 3}", "num_key_value_heads");
    expect_refused(dir, "{\"model_type\": \"qwen2\", " SIZES "}", "default of Qwen2Config");
    expect_refused(dir, LLAMA ", \"head_dim\": 7}", "even");
    expect_refused(dir, "{\"model_type\": \"qwen3\", \"head_dim\": null, \"num_key_value_heads\""
                        ": 4, " SIZES "}", "head_dim");
    expect_refused(dir, LLAMA ", \"rope_scaling\": {\"rope_type\": \"dynamic\", \"factor\": 2}}",
                   "dynamic");
    expect_refused(dir, LLAMA ", \"rope_parameters\": {\"rope_type\": \"longrope\"}}", "longrope");
    expect_refused(dir, LLAMA ", \"rope_scaling\": {\"rope_type\": \"linear\"}}", "factor");
    expect_refused(dir, LLAMA ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8, "
                              "\"low_freq_factor\": 4, \"high_freq_factor\": 1}}",
                   "high_freq_factor");
    expect_refused(dir, LLAMA ", \"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": 2, "
                              "\"partial_rotary_factor\": 0.5}}", "partial_rotary_factor");
    expect_refused(dir, LLAMA ", \"rope_theta\": 1000, \"rope_parameters\": {\"rope_type\": "
                              "\"default\", \"rope_theta\": 2000}}", "rope_theta");
    expect_refused(dir, LLAMA ", \"rope_theta\": -1}", "rope_theta");
    expect_refused(dir, LLAMA ", \"rope_scaling\": {\"full_attention\": {\"rope_type\": "
                              "\"default\"}}}", "per layer");
    expect_refused(dir, LLAMA ", \"is_causal\": false}", "is_causal");
    expect_refused(dir, LLAMA ", \"quantization_config\": {\"quant_method\": \"gptq\"}}",
                   "quantization_config");
    expect_refused(dir, LLAMA ", \"pruned_heads\": {\"0\": [1]}}", "pruned_heads");
    expect_refused(dir, LLAMA ", \"per_layer_config\": [{}]}", "per_layer_config");
    expect_refused(dir, LLAMA ", \"attention_bias\": 1}", "attention_bias");
    expect_refused(dir, QWEN2 ", \"use_sliding_window\": true, \"sliding_window\": 8, "
                              "\"max_window_layers\": 1}", "max_window_layers 1");
    expect_refused(dir, QWEN2 ", \"use_sliding_window\": true, \"layer_types\": "
                              "[\"full_attention\", \"sliding_attention\"]}", "layer 1");
    expect_refused(dir, QWEN2 ", \"layer_types\": [\"sliding_attention\", "
                              "\"sliding_attention\"]}", "use_sliding_window");
    expect_refused(dir, QWEN2 ", \"layer_types\": [\"full_attention\"]}", "one type per layer");
    expect_refused(dir, QWEN2 ", \"layer_types\": [\"linear_attention\", \"full_attention\"]}",
                   "linear_attention");
    expect_refused(dir, LLAMA ", \"rms_norm_eps\": 0}", "rms_norm_eps");
#define GPT2 "{\"model_type\": \"gpt2\", \"n_layer\": 2, \"n_head\": 2, \"n_embd\": 32, " \
             "\"vocab_size\": 50, \"n_positions\": 16"
    expect_refused(dir, GPT2 ", \"add_cross_attention\": true}", "add_cross_attention");
    expect_refused(dir, GPT2 ", \"activation_function\": \"gelu\"}", "gelu");
    expect_refused(dir, GPT2 ", \"scale_attn_weights\": \"no\"}", "scale_attn_weights");
    expect_refused(dir, GPT2 ", \"hidden_size\": 64}", "hidden_size");
    expect_refused(dir, GPT2 ", \"tie_word_embeddings\": false}", "tie_word_embeddings");
#undef GPT2
#undef QWEN2
#undef LLAMA
    rm_rf(dir);
}

/* ---------------------------------------------------------------- writing */

static int configs_equal(const GPTConfig *a, const GPTConfig *b) {
    return a->n_layer == b->n_layer && a->n_head == b->n_head && a->n_embd == b->n_embd &&
           a->vocab_size == b->vocab_size && a->n_positions == b->n_positions &&
           a->layer_norm_epsilon == b->layer_norm_epsilon && a->vocab_pad == b->vocab_pad &&
           a->arch == b->arch && a->n_kv_head == b->n_kv_head && a->head_dim == b->head_dim &&
           a->attn_bias == b->attn_bias && a->attn_out_bias == b->attn_out_bias &&
           a->qk_norm == b->qk_norm && a->sliding_window == b->sliding_window &&
           a->attn_no_scale == b->attn_no_scale &&
           a->attn_scale_inv_layer == b->attn_scale_inv_layer && a->rope_theta == b->rope_theta &&
           a->rope_type == b->rope_type && a->rope_factor == b->rope_factor &&
           a->rope_low_freq_factor == b->rope_low_freq_factor &&
           a->rope_high_freq_factor == b->rope_high_freq_factor &&
           a->rope_original_max_pos == b->rope_original_max_pos &&
           a->rope_beta_fast == b->rope_beta_fast && a->rope_beta_slow == b->rope_beta_slow &&
           a->rope_attention_factor == b->rope_attention_factor &&
           a->rope_no_truncate == b->rope_no_truncate &&
           a->intermediate_size == b->intermediate_size && a->mlp_bias == b->mlp_bias &&
           a->untied_head == b->untied_head;
}

Test(hf_config, written_back_it_reads_the_same_and_transformers_builds_the_same_model,
     .timeout = 300) {
    char names[64][64], root[256];
    int n = fixture_dirs(CONFIGS, names, 64);
    make_temp_dir(root, sizeof root, "cfgrt");
    const char *argv[2 + 2 * 64 + 1] = {PYTHON, "tests/check_hf_config.py"};
    char dirs[64][2][320];
    for (int i = 0; i < n; i++) {
        snprintf(dirs[i][0], sizeof dirs[i][0], "%s/%.63s", CONFIGS, names[i]);
        snprintf(dirs[i][1], sizeof dirs[i][1], "%.200s/%.63s", root, names[i]);
        cr_assert_eq(mkdir_p(dirs[i][1]), 0);
        GPTConfig a, b;
        cr_assert_eq(hf_config_read(dirs[i][0], &a), 0, "%s", err_msg());
        HfConfigWrite w = {.source_dir = dirs[i][0], .dtype = "bfloat16"};
        cr_assert_eq(hf_config_write_ex(dirs[i][1], &a, &w), 0, "%s", err_msg());
        cr_assert_eq(hf_config_read(dirs[i][1], &b), 0, "%s: %s", names[i], err_msg());
        cr_expect(configs_equal(&a, &b), "%s: the written config.json reads differently",
                  names[i]);
        /* the keys that are not the model's come from the source */
        json_t *src = load_json(dirs[i][0], "config.json"), *out = load_json(dirs[i][1], "config.json");
        static const char *const carried[] = {"bos_token_id", "eos_token_id", "initializer_range",
                                              "transformers_version", "architectures"};
        for (size_t k = 0; k < sizeof carried / sizeof *carried; k++)
            if (json_object_get(src, carried[k]))
                cr_expect(json_equal(json_object_get(src, carried[k]),
                                     json_object_get(out, carried[k])),
                          "%s: %s not carried over", names[i], carried[k]);
        cr_expect_str_eq(json_string_value(json_object_get(out, "torch_dtype")), "bfloat16");
        char dtype[32];
        cr_assert_eq(hf_config_dtype(dirs[i][1], dtype, sizeof dtype), 0);
        cr_expect_str_eq(dtype, "bfloat16");
        json_decref(src);
        json_decref(out);
        argv[2 + 2 * i] = dirs[i][0];
        argv[3 + 2 * i] = dirs[i][1];
    }
    argv[2 + 2 * n] = NULL;
    int rc = run_python(argv);
    rm_rf(root);
    if (rc == 77) {
        fprintf(stderr, "SKIP: transformers check of the written config.json files: no %s "
                        "with transformers (make fixtures creates it)\n", PYTHON);
        cr_skip_test();
    }
    cr_expect_eq(rc, 0, "transformers builds another model from a written config.json (above)");
}

Test(hf_config, fresh_configs_of_every_family_write_what_transformers_reads) {
    char dir[256];
    make_temp_dir(dir, sizeof dir, "cfgfresh");
    GPTConfig base = {.n_layer = 2, .n_head = 4, .n_embd = 32, .vocab_size = 50,
                      .n_positions = 16, .layer_norm_epsilon = 1e-5f};
    GPTConfig cases[6];
    for (int i = 0; i < 6; i++) cases[i] = base;
    cases[1].arch = ARCH_LLAMA, cases[1].n_kv_head = 2, cases[1].intermediate_size = 48,
    cases[1].rope_theta = 1e5, cases[1].rope_type = ROPE_LLAMA3, cases[1].rope_factor = 8,
    cases[1].rope_low_freq_factor = 1, cases[1].rope_high_freq_factor = 4,
    cases[1].rope_original_max_pos = 8;
    cases[2].arch = ARCH_MISTRAL, cases[2].intermediate_size = 48, cases[2].sliding_window = 8,
    cases[2].untied_head = 1;
    cases[3].arch = ARCH_QWEN2, cases[3].attn_bias = 1, cases[3].intermediate_size = 48,
    cases[3].rope_type = ROPE_YARN, cases[3].rope_factor = 2, cases[3].rope_original_max_pos = 8;
    cases[4].arch = ARCH_QWEN3, cases[4].qk_norm = 1, cases[4].head_dim = 16,
    cases[4].intermediate_size = 48, cases[4].sliding_window = 8;
    cases[5].attn_scale_inv_layer = 1, cases[5].attn_no_scale = 1;
    for (int i = 0; i < 6; i++) {
        GPTConfig back;
        cr_assert_eq(hf_config_write(dir, &cases[i]), 0, "case %d: %s", i, err_msg());
        cr_assert_eq(hf_config_read(dir, &back), 0, "case %d: %s", i, err_msg());
        /* what reading makes explicit (llama3's pretraining length, yarn's factor) */
        GPTConfig want = cases[i];
        if (want.rope_type == ROPE_YARN) want.rope_attention_factor = 0.1 * log(2.0) + 1;
        if (want.arch != ARCH_GPT2 && want.rope_theta == 0) want.rope_theta = 10000;
        cr_expect(configs_equal(&want, &back), "case %d (%s) reads back differently", i,
                  gpt_arch_name(cases[i].arch));
    }
    /* what a family's config.json cannot say is refused, naming it */
    GPTConfig bad = cases[3];
    bad.attn_out_bias = 1;
    err_clear();
    cr_expect_eq(hf_config_write(dir, &bad), -1);
    assert_contains(err_msg(), "qwen2");
    bad = cases[2];
    bad.qk_norm = 1;
    cr_expect_eq(hf_config_write(dir, &bad), -1);
    assert_contains(err_msg(), "q/k norms");
    bad = cases[1];
    bad.attn_bias = 1;
    cr_expect_eq(hf_config_write(dir, &bad), -1);
    assert_contains(err_msg(), "o_proj");
    rm_rf(dir);
}

/* ---------------------------------------------------------------- dtypes */

Test(hf_dtypes, bf16_and_fp16_round_to_nearest_even) {
    /* every finite half and bfloat16 converts to fp32 and back unchanged */
    for (uint32_t h = 0; h < 65536; h++) {
        float x = st_f16_to_f32((uint16_t)h);
        if (!isnan(x)) cr_assert_eq(st_f32_to_f16(x), h, "half 0x%04x", h);
        else cr_assert(isnan(st_f16_to_f32(st_f32_to_f16(x))), "half NaN 0x%04x", h);
        float y = st_bf16_to_f32((uint16_t)h);
        if (!isnan(y)) cr_assert_eq(st_f32_to_bf16(y), h, "bf16 0x%04x", h);
        else cr_assert(isnan(st_bf16_to_f32(st_f32_to_bf16(y))), "bf16 NaN 0x%04x", h);
    }
    /* halfway between two neighbours goes to the even one; just past goes up */
    for (uint32_t h = 0; h < 0x7bff; h++) {
        float lo = st_f16_to_f32((uint16_t)h), hi = st_f16_to_f32((uint16_t)(h + 1));
        float mid = (float)(((double)lo + (double)hi) / 2); /* exact in fp32 */
        uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
        cr_assert_eq(st_f32_to_f16(mid), even, "tie after half 0x%04x", h);
        cr_assert_eq(st_f32_to_f16(nextafterf(mid, INFINITY)), h + 1, "above the tie 0x%04x", h);
        cr_assert_eq(st_f32_to_f16(nextafterf(mid, 0)), h, "below the tie 0x%04x", h);
        cr_assert_eq(st_f32_to_f16(-mid), 0x8000 | even);
    }
    for (uint32_t b = 0; b < 0x7f7f; b += 7) {
        float lo = st_bf16_to_f32((uint16_t)b), hi = st_bf16_to_f32((uint16_t)(b + 1));
        float mid = (float)(((double)lo + (double)hi) / 2);
        uint16_t even = (b & 1) ? (uint16_t)(b + 1) : (uint16_t)b;
        cr_assert_eq(st_f32_to_bf16(mid), even, "tie after bf16 0x%04x", b);
        cr_assert_eq(st_f32_to_bf16(nextafterf(mid, INFINITY)), b + 1);
    }
    cr_expect_eq(st_f32_to_f16(65519.0f), 0x7bff, "below the halfway point to inf");
    cr_expect_eq(st_f32_to_f16(65520.0f), 0x7c00, "65520 rounds to inf (ties to even)");
    cr_expect_eq(st_f32_to_f16(1e-8f), 0, "under half the smallest subnormal");
    cr_expect_eq(st_f32_to_bf16(3.4e38f), 0x7f80, "past bf16's largest: inf");
    cr_expect(isnan(st_bf16_to_f32(st_f32_to_bf16(NAN))));
}

/* ---------------------------------------------------------------- weights */

static const GPTConfig GPT2_SMALL = {.n_layer = 2, .n_head = 2, .n_embd = 32, .vocab_size = 67,
                                     .n_positions = 16, .layer_norm_epsilon = 1e-5f};

static int count_files(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

Test(hf_weights, sharded_bf16_round_trip_and_transformers_loads_it, .timeout = 300) {
    GPT *m = perturbed_cpu_model(&GPT2_SMALL, 1, 2, 0.05);
    char src[256], dir[256], path[512];
    make_temp_dir(src, sizeof src, "hfsrc");
    make_temp_dir(dir, sizeof dir, "hfshard");
    /* a source with token ids of its own and a generation_config.json */
    cr_assert_eq(model_save_hf(m, src), 0, "%s", err_msg());
    snprintf(path, sizeof path, "%s/config.json", src);
    json_t *sc = load_json(src, "config.json");
    json_object_set_new(sc, "bos_token_id", json_integer(3));
    json_object_set_new(sc, "eos_token_id", json_pack("[i, i]", 4, 5));
    json_object_set_new(sc, "torch_dtype", json_string("bfloat16"));
    json_object_set_new(sc, "dtype", json_string("bfloat16"));
    cr_assert_eq(json_dump_file(sc, path, JSON_INDENT(2)), 0);
    json_decref(sc);
    snprintf(path, sizeof path, "%s/generation_config.json", src);
    write_text(path, "{\"eos_token_id\": [4, 5], \"do_sample\": false}\n");

    /* bf16 as the source says, shards of at most 8 KB (the model is ~57 KB in bf16) */
    HfSaveOptions o = {.source_dir = src, .dtype = HF_SAVE_SOURCE, .max_shard_bytes = 8192};
    cr_assert_eq(model_save_hf_ex(m, dir, &o), 0, "%s", err_msg());
    int shards = count_files(dir, "model-");
    cr_expect_geq(shards, 3, "%d shards", shards);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    cr_expect(!path_exists(path), "a sharded save has no model.safetensors");
    json_t *index = load_json(dir, "model.safetensors.index.json");
    json_t *map = json_object_get(index, "weight_map");
    cr_expect_eq(json_object_size(map), (size_t)gpt_num_tensors(m));
    cr_expect(json_is_string(json_object_get(map, "transformer.h.1.mlp.c_fc.weight")));
    cr_expect_eq(json_integer_value(json_object_get(json_object_get(index, "metadata"),
                                                    "total_size")),
                 (json_int_t)gpt_num_params(m) * 2);
    json_decref(index);
    char dtype[32];
    cr_assert_eq(hf_config_dtype(dir, dtype, sizeof dtype), 0);
    cr_expect_str_eq(dtype, "bfloat16");
    json_t *cfg = load_json(dir, "config.json");
    cr_expect_eq(json_integer_value(json_object_get(cfg, "bos_token_id")), 3);
    cr_expect_eq(json_array_size(json_object_get(cfg, "eos_token_id")), 2);
    json_decref(cfg);
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    cr_expect(path_exists(path), "generation_config.json carried over");

    /* loads back to the bf16-rounded weights, exactly */
    GPT *back = model_load_hf(dir, backend_cpu());
    cr_assert_not_null(back, "%s", err_msg());
    float *w = host_params(m), *wb = host_params(back);
    for (int i = 0; i < gpt_num_tensors(m); i++) {
        const ParamInfo *p = gpt_tensor(m, i);
        for (size_t k = 0; k < p->numel; k++) {
            float want = st_bf16_to_f32(st_f32_to_bf16(w[p->offset + k]));
            cr_assert_eq(wb[p->offset + k], want, "%s[%zu]", p->name, k);
        }
    }
    /* transformers loads the shards to the logits retort computes from them */
    int B = 2, T = 8, in[16];
    for (int i = 0; i < B * T; i++) in[i] = (i * 37 + 11) % GPT2_SMALL.vocab_size;
    float *l = logits_of(back, in, B, T);
    char logits_path[512];
    snprintf(logits_path, sizeof logits_path, "%s/c_logits.safetensors", src);
    StTensor ts[2] = {{.name = "inputs", .dtype = ST_I32, .ndim = 2, .shape = {B, T}, .data = in},
                      {.name = "logits", .dtype = ST_F32, .ndim = 3,
                       .shape = {B, T, GPT2_SMALL.vocab_size}, .data = l}};
    cr_assert_eq(safetensors_write(logits_path, ts, 2, NULL), 0, "%s", err_msg());
    const char *argv[] = {PYTHON, "tests/check_hf_logits.py", dir, logits_path, NULL};
    int rc = run_python(argv);
    if (rc == 77)
        fprintf(stderr, "SKIP: transformers loading the sharded bf16 checkpoint: no %s with "
                        "transformers (make fixtures creates it)\n", PYTHON);
    else
        cr_expect_eq(rc, 0, "transformers does not load the shards to retort's logits (above)");

    /* an fp32 save over it leaves one model.safetensors and no stale shard */
    cr_assert_eq(model_save_hf(back, dir), 0, "%s", err_msg());
    cr_expect_eq(count_files(dir, "model-"), 0);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    cr_expect(!path_exists(path));
    GPT *again = model_load_hf(dir, backend_cpu());
    cr_assert_not_null(again, "%s", err_msg());
    float *wa = host_params(again);
    cr_expect_eq(memcmp(wa, wb, gpt_flat_size(m) * sizeof(float)), 0, "fp32 round trip is exact");
    free(wa);
    free(l);
    free(w);
    free(wb);
    gpt_free(again);
    gpt_free(back);
    gpt_free(m);
    rm_rf(src);
    rm_rf(dir);
}

Test(hf_weights, fp16_save_rounds_each_weight_once) {
    GPT *m = perturbed_cpu_model(&GPT2_SMALL, 3, 4, 0.05);
    char dir[256];
    make_temp_dir(dir, sizeof dir, "hff16");
    HfSaveOptions o = {.dtype = HF_SAVE_F16};
    cr_assert_eq(model_save_hf_ex(m, dir, &o), 0, "%s", err_msg());
    char dtype[32];
    cr_assert_eq(hf_config_dtype(dir, dtype, sizeof dtype), 0);
    cr_expect_str_eq(dtype, "float16");
    GPT *back = model_load_hf(dir, backend_cpu());
    cr_assert_not_null(back, "%s", err_msg());
    float *w = host_params(m), *wb = host_params(back);
    for (int i = 0; i < gpt_num_tensors(m); i++) {
        const ParamInfo *p = gpt_tensor(m, i);
        for (size_t k = 0; k < p->numel; k++)
            cr_assert_eq(wb[p->offset + k], st_f16_to_f32(st_f32_to_f16(w[p->offset + k])));
    }
    free(w);
    free(wb);
    gpt_free(back);
    gpt_free(m);
    rm_rf(dir);
}

Test(hf_weights, a_broken_index_is_refused_naming_it) {
    GPT *m = perturbed_cpu_model(&GPT2_SMALL, 5, 6, 0.05);
    char dir[256], path[512];
    make_temp_dir(dir, sizeof dir, "hfidx");
    HfSaveOptions o = {.max_shard_bytes = 16384};
    cr_assert_eq(model_save_hf_ex(m, dir, &o), 0, "%s", err_msg());
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    json_t *index = load_json(dir, "model.safetensors.index.json");
    json_t *map = json_object_get(index, "weight_map");
    /* the index puts a tensor into a shard that does not hold it */
    const char *first = json_string_value(json_object_get(map, "transformer.wte.weight"));
    char other[64];
    snprintf(other, sizeof other, "%s", first);
    other[10] = other[10] == '1' ? '2' : '1'; /* model-0000K: another shard */
    json_object_set_new(map, "transformer.wte.weight", json_string(other));
    cr_assert_eq(json_dump_file(index, path, JSON_INDENT(2)), 0);
    err_clear();
    cr_expect_null(model_load_hf(dir, backend_cpu()));
    assert_contains(err_msg(), "model.safetensors.index.json");
    assert_contains(err_msg(), "transformer.wte.weight");
    /* a shard that is not there */
    json_object_set_new(map, "transformer.wte.weight", json_string("model-00009-of-00009.safetensors"));
    cr_assert_eq(json_dump_file(index, path, JSON_INDENT(2)), 0);
    cr_expect_null(model_load_hf(dir, backend_cpu()));
    assert_contains(err_msg(), "model-00009-of-00009.safetensors");
    /* a name that leaves the directory */
    json_object_set_new(map, "transformer.wte.weight", json_string("../x.safetensors"));
    cr_assert_eq(json_dump_file(index, path, JSON_INDENT(2)), 0);
    cr_expect_null(model_load_hf(dir, backend_cpu()));
    assert_contains(err_msg(), "not the name of a file beside it");
    json_decref(index);
    /* no weights at all, but a pytorch_model.bin */
    rm_rf(dir);
    cr_assert_eq(mkdir_p(dir), 0);
    cr_assert_eq(hf_config_write(dir, &GPT2_SMALL), 0);
    snprintf(path, sizeof path, "%s/pytorch_model.bin", dir);
    write_text(path, "x");
    cr_expect_null(model_load_hf(dir, backend_cpu()));
    assert_contains(err_msg(), "pytorch_model.bin");
    gpt_free(m);
    rm_rf(dir);
}

/* A model's logits for fixed inputs, and those inputs, in path (for
 * tests/check_hf_logits.py). */
static void write_logits(GPT *m, const char *path) {
    enum { B = 2, T = 8 };
    int in[B * T], V = gpt_config(m)->vocab_size;
    for (int i = 0; i < B * T; i++) in[i] = (i * 37 + 11) % V;
    float *l = logits_of(m, in, B, T);
    StTensor ts[2] = {{.name = "inputs", .dtype = ST_I32, .ndim = 2, .shape = {B, T}, .data = in},
                      {.name = "logits", .dtype = ST_F32, .ndim = 3, .shape = {B, T, V}, .data = l}};
    cr_assert_eq(safetensors_write(path, ts, 2, NULL), 0, "%s", err_msg());
    free(l);
}

Test(hf_weights, every_family_saves_sharded_bf16_and_transformers_loads_it, .timeout = 300) {
    GPTConfig base = {.n_layer = 2, .n_head = 4, .n_embd = 32, .vocab_size = 61,
                      .n_positions = 16, .layer_norm_epsilon = 1e-5f, .intermediate_size = 48,
                      .rope_theta = 10000};
    GPTConfig cases[5];
    for (int i = 0; i < 5; i++) cases[i] = base;
    cases[0].arch = ARCH_LLAMA, cases[0].n_kv_head = 2, cases[0].untied_head = 1,
    cases[0].attn_bias = cases[0].attn_out_bias = cases[0].mlp_bias = 1,
    cases[0].rope_type = ROPE_LLAMA3, cases[0].rope_factor = 4, cases[0].rope_low_freq_factor = 1,
    cases[0].rope_high_freq_factor = 4, cases[0].rope_original_max_pos = 8;
    cases[1].arch = ARCH_MISTRAL, cases[1].n_kv_head = 1, cases[1].sliding_window = 16;
    cases[2].arch = ARCH_QWEN2, cases[2].attn_bias = 1, cases[2].n_kv_head = 2,
    cases[2].rope_type = ROPE_YARN, cases[2].rope_factor = 2, cases[2].rope_original_max_pos = 8;
    cases[3].arch = ARCH_QWEN3, cases[3].qk_norm = 1, cases[3].head_dim = 16,
    cases[3].n_kv_head = 2, cases[3].untied_head = 1;
    cases[4].arch = ARCH_LLAMA, cases[4].rope_type = ROPE_LINEAR, cases[4].rope_factor = 2;
    char root[256], dirs[5][300], files[5][320];
    make_temp_dir(root, sizeof root, "hffam");
    const char *argv[2 + 10 + 1] = {PYTHON, "tests/check_hf_logits.py"};
    for (int i = 0; i < 5; i++) {
        GPT *m = perturbed_cpu_model(&cases[i], 10 + (uint64_t)i, 20 + (uint64_t)i, 0.05);
        snprintf(dirs[i], sizeof dirs[i], "%s/%d", root, i);
        snprintf(files[i], sizeof files[i], "%s/logits%d.safetensors", root, i);
        cr_assert_eq(mkdir_p(dirs[i]), 0);
        HfSaveOptions o = {.dtype = HF_SAVE_BF16, .max_shard_bytes = 4096};
        cr_assert_eq(model_save_hf_ex(m, dirs[i], &o), 0, "%s", err_msg());
        cr_expect_geq(count_files(dirs[i], "model-"), 2, "%s: sharded", gpt_arch_name(cases[i].arch));
        GPT *back = model_load_hf(dirs[i], backend_cpu());
        cr_assert_not_null(back, "%s: %s", gpt_arch_name(cases[i].arch), err_msg());
        cr_assert_eq(gpt_num_tensors(back), gpt_num_tensors(m));
        float *w = host_params(m), *wb = host_params(back);
        for (int t = 0; t < gpt_num_tensors(m); t++) {
            const ParamInfo *p = gpt_tensor(m, t);
            for (size_t k = 0; k < p->numel; k++)
                cr_assert_eq(wb[p->offset + k], st_bf16_to_f32(st_f32_to_bf16(w[p->offset + k])),
                             "%s: %s[%zu]", gpt_arch_name(cases[i].arch), p->name, k);
        }
        write_logits(back, files[i]);
        argv[2 + 2 * i] = dirs[i];
        argv[3 + 2 * i] = files[i];
        free(w);
        free(wb);
        gpt_free(back);
        gpt_free(m);
    }
    argv[12] = NULL;
    int rc = run_python(argv);
    rm_rf(root);
    if (rc == 77) {
        fprintf(stderr, "SKIP: transformers loading each family's checkpoint: no %s with "
                        "transformers (make fixtures creates it)\n", PYTHON);
        cr_skip_test();
    }
    cr_expect_eq(rc, 0, "transformers does not load a family's checkpoint to retort's logits");
}

Test(hf_weights, sharded_and_single_file_fixtures_load_alike) {
    GPT *a = model_load_hf(FAMILIES "/llama_bf16", backend_cpu());
    GPT *b = model_load_hf(FAMILIES "/llama_bf16_sharded", backend_cpu());
    if (!a && !path_exists(FAMILIES "/llama_bf16/config.json")) {
        fprintf(stderr, "SKIP: no %s/llama_bf16 fixture\n", FAMILIES);
        cr_skip_test();
    }
    cr_assert_not_null(a, "%s", err_msg());
    cr_assert_not_null(b, "%s", err_msg());
    cr_assert_eq(gpt_flat_size(a), gpt_flat_size(b));
    float *wa = host_params(a), *wb = host_params(b);
    cr_expect_eq(memcmp(wa, wb, gpt_flat_size(a) * sizeof(float)), 0);
    free(wa);
    free(wb);
    gpt_free(a);
    gpt_free(b);
}

/* kB of /proc/self/status's field ("VmHWM:", "VmRSS:"), or -1. */
static long status_kb(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, strlen(field))) kb = strtol(line + strlen(field), NULL, 10);
    fclose(f);
    return kb;
}

Test(hf_weights, loading_holds_the_model_and_not_much_of_the_file, .timeout = 120) {
    /* ~26M parameters: 105 MB in fp32, a 52 MB bf16 file */
    GPTConfig cfg = {.n_layer = 8, .n_head = 8, .n_embd = 512, .vocab_size = 1000,
                     .n_positions = 64, .layer_norm_epsilon = 1e-5f};
    char dir[256];
    make_temp_dir(dir, sizeof dir, "hfmem");
    GPT *m = random_cpu_model(&cfg, 1);
    HfSaveOptions o = {.dtype = HF_SAVE_BF16};
    cr_assert_eq(model_save_hf_ex(m, dir, &o), 0, "%s", err_msg());
    gpt_free(m);
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    /* gpt_create zeroes the parameters (the fp32 copy): resident from here on */
    GPT *fresh = gpt_create(&cfg, backend_cpu());
    cr_assert_not_null(fresh, "%s", err_msg());
    FILE *clear = fopen("/proc/self/clear_refs", "w"); /* 5: reset the peak to the current RSS */
    if (!clear || fputs("5", clear) < 0 || fclose(clear) != 0 || status_kb("VmHWM:") < 0) {
        fprintf(stderr, "SKIP: cannot reset the peak RSS (/proc/self/clear_refs)\n");
        gpt_free(fresh);
        rm_rf(dir);
        cr_skip_test();
    }
    long before = status_kb("VmRSS:");
    cr_assert_eq(model_load_weights(fresh, dir), 0, "%s", err_msg());
    long peak = status_kb("VmHWM:");
    double file_mb = (double)st.st_size / 1e6, extra_mb = (double)(peak - before) * 1024 / 1e6;
    fprintf(stderr, "load: fp32 model %.1f MB resident, file %.1f MB, peak RSS grew %.1f MB\n",
            (double)gpt_num_params(fresh) * 4 / 1e6, file_mb, extra_mb);
    /* the bound over the fp32 copy: 1.1x the file. A host staging
     * copy of the model would add 2x the file (fp32 of a bf16 file) on top */
    cr_expect_leq(extra_mb, 1.1 * file_mb, "peak grew %.1f MB", extra_mb);
    /* and the file's pages go tensor by tensor: about one tensor plus the
     * 16 MB conversion buffer stay */
    cr_expect_leq(extra_mb, 0.25 * file_mb + 20, "peak grew %.1f MB", extra_mb);
    gpt_free(fresh);
    rm_rf(dir);
}

/* The whole of model_load_hf (config, the model, its weights) costs at most
 * the bound, 1.1x the file plus the model's fp32 copy: no gradient
 * buffer until something trains (a model that only generates, a teacher or a
 * reference never needs one; at 4d1c970 gpt_create allocated and zeroed it,
 * a second fp32 copy). */
Test(hf_weights, a_loaded_model_is_its_parameters_and_no_gradients, .timeout = 120) {
    GPTConfig cfg = {.n_layer = 8, .n_head = 8, .n_embd = 512, .vocab_size = 1000,
                     .n_positions = 64, .layer_norm_epsilon = 1e-5f, .arch = ARCH_LLAMA,
                     .n_kv_head = 4, .intermediate_size = 1024};
    char dir[256], path[512];
    make_temp_dir(dir, sizeof dir, "hfmem2");
    GPT *m = random_cpu_model(&cfg, 2);
    size_t params = gpt_num_params(m);
    HfSaveOptions o = {.dtype = HF_SAVE_BF16};
    cr_assert_eq(model_save_hf_ex(m, dir, &o), 0, "%s", err_msg());
    gpt_free(m);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    FILE *clear = fopen("/proc/self/clear_refs", "w");
    if (!clear || fputs("5", clear) < 0 || fclose(clear) != 0 || status_kb("VmHWM:") < 0) {
        fprintf(stderr, "SKIP: cannot reset the peak RSS (/proc/self/clear_refs)\n");
        rm_rf(dir);
        cr_skip_test();
    }
    long before = status_kb("VmRSS:");
    GPT *loaded = model_load_hf(dir, backend_cpu());
    cr_assert_not_null(loaded, "%s", err_msg());
    long peak = status_kb("VmHWM:");
    double file_mb = (double)st.st_size / 1e6, fp32_mb = (double)params * 4 / 1e6;
    double extra_mb = (double)(peak - before) * 1024 / 1e6;
    fprintf(stderr, "model_load_hf: fp32 copy %.1f MB, file %.1f MB, peak RSS grew %.1f MB\n",
            fp32_mb, file_mb, extra_mb);
    cr_expect_leq(extra_mb, 1.1 * file_mb + fp32_mb, "peak grew %.1f MB", extra_mb);
    /* the gradients come when training asks for them */
    cr_expect_not_null(gpt_grads(loaded));
    gpt_free(loaded);
    rm_rf(dir);
}

/* ---------------------------------------------------------------- training */

Test(hf_train, a_run_from_init_keeps_its_source_files_and_a_fresh_llama_trains, .timeout = 300) {
    char root[256], data[320], init[320], run[320], fresh_run[320], path[640], ckpt[512];
    make_temp_dir(root, sizeof root, "hftrain");
    snprintf(data, sizeof data, "%s/train.h5", root);
    snprintf(init, sizeof init, "%s/init", root);
    snprintf(run, sizeof run, "%s/run", root);
    snprintf(fresh_run, sizeof fresh_run, "%s/fresh", root);
    DatasetWriter *w = dataset_writer_open(data, SCHEMA_LM, 257, 256, 256, "test");
    cr_assert(w, "%s", err_msg());
    uint32_t doc[64];
    for (int d = 0; d < 20; d++) {
        for (int i = 0; i < 63; i++) doc[i] = (uint32_t)('a' + (i * 7 + d) % 26);
        doc[63] = 256;
        cr_assert_eq(dataset_writer_add(w, doc, NULL, 64, -1), 0, "%s", err_msg());
    }
    cr_assert_eq(dataset_writer_close(w), 0, "%s", err_msg());

    /* a fresh qwen2 (q/k/v biases filled in from model.arch) trains and saves */
    Config c;
    tiny_train_config(&c, data, fresh_run);
    const char *sets[] = {"model.arch=qwen2", "model.n_kv_head=1", "model.intermediate_size=48",
                          "data.seq_len=16", "train.steps=2", NULL};
    for (int i = 0; sets[i]; i++) cr_assert_eq(config_set(&c, sets[i]), 0, "%s", err_msg());
    train_ok(&c, 0);
    ckpt_dir_name(ckpt, sizeof ckpt, fresh_run, 2);
    GPTConfig got;
    cr_assert_eq(hf_config_read(ckpt, &got), 0, "%s", err_msg());
    cr_expect(got.arch == ARCH_QWEN2 && got.attn_bias == 1 && got.n_kv_head == 1 &&
              got.intermediate_size == 48);

    /* a bf16 llama source with its own token ids and generation_config.json */
    GPTConfig lc = {.n_layer = 2, .n_head = 2, .n_embd = 32, .vocab_size = 257,
                    .n_positions = 32, .layer_norm_epsilon = 1e-5f, .arch = ARCH_LLAMA,
                    .intermediate_size = 48, .rope_theta = 10000, .untied_head = 1};
    GPT *m = random_cpu_model(&lc, 3);
    cr_assert_eq(mkdir_p(init), 0);
    cr_assert_eq(model_save_hf_ex(m, init, &(HfSaveOptions){.dtype = HF_SAVE_BF16}), 0, "%s",
                 err_msg());
    gpt_free(m);
    json_t *cfg = load_json(init, "config.json");
    json_object_set_new(cfg, "bos_token_id", json_integer(256));
    json_object_set_new(cfg, "eos_token_id", json_integer(256));
    json_object_set_new(cfg, "rope_interleaved", json_false()); /* a key transformers ignores */
    snprintf(path, sizeof path, "%s/config.json", init);
    cr_assert_eq(json_dump_file(cfg, path, JSON_INDENT(2)), 0);
    json_decref(cfg);
    snprintf(path, sizeof path, "%s/generation_config.json", init);
    write_text(path, "{\"eos_token_id\": 256, \"max_new_tokens\": 7}\n");

    tiny_train_config(&c, data, run);
    snprintf(c.model.init, sizeof c.model.init, "%s", init);
    c.data.seq_len = 16;
    c.train.steps = 2;
    train_ok(&c, 0);
    ckpt_dir_name(ckpt, sizeof ckpt, run, 2);
    snprintf(path, sizeof path, "%s/generation_config.json", ckpt);
    char *gen = read_file(path, NULL);
    cr_assert_not_null(gen, "the checkpoint lacks generation_config.json");
    cr_expect(strstr(gen, "\"max_new_tokens\": 7") != NULL, "%s", gen);
    free(gen);
    json_t *out = load_json(ckpt, "config.json");
    cr_expect_eq(json_integer_value(json_object_get(out, "eos_token_id")), 256);
    cr_expect(json_is_false(json_object_get(out, "rope_interleaved")));
    cr_expect_str_eq(json_string_value(json_object_get(out, "torch_dtype")), "float32",
                     "training checkpoints are fp32 (resume reads back what was saved)");
    json_decref(out);
    GPT *back = model_load_hf(ckpt, backend_cpu());
    cr_assert_not_null(back, "%s", err_msg());
    cr_expect(gpt_config(back)->arch == ARCH_LLAMA && gpt_config(back)->untied_head);
    gpt_free(back);
    rm_rf(root);
}
