/* model/lora.c — LoRA adapters to and from PEFT adapter directories.
 *
 * Key names follow what PEFT's save_pretrained writes for GPT2LMHeadModel
 * and the Llama-style families: the adapter name ("default") is dropped and
 * the module path is prefixed with "base_model.model.". The model stores A^T and B^T, so both directions
 * transpose on the host.
 *
 * An adapter only means something on the base it was trained on, so retort
 * records that base in adapter_model.safetensors' metadata (safetensors and
 * PEFT ignore keys they do not know; adapter_config.json, which PEFT turns
 * into its LoraConfig, gets none) and checks it on load (lora.h). */
#include "model/lora.h"

#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/safetensors.h"
#include "util/util.h"

/* PEFT's key of a table tensor is this prefix + its name: GPT-2's table
 * names drop transformers' "transformer.", the Llama families' are whole. */
static const char *key_prefix(const GPT *m) {
    return gpt_config(m)->arch == ARCH_GPT2 ? "base_model.model.transformer."
                                            : "base_model.model.";
}

/* (rows, cols) of the PEFT tensor for table entry p: the transpose. */
static void peft_shape(const ParamInfo *p, int *rows, int *cols) {
    *rows = p->shape[1];
    *cols = p->shape[0];
}

static void transpose(float *dst, const float *src, int rows, int cols) {
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) dst[(size_t)j * rows + i] = src[(size_t)i * cols + j];
}

/* A float as JSON: an integer when it is one (PEFT writes lora_alpha: 16),
 * else the shortest decimal that reads back as the same float. */
static json_t *json_float(float x) {
    if (x == floorf(x) && fabsf(x) < 1e9f) return json_integer((json_int_t)x);
    char buf[32];
    snprintf(buf, sizeof buf, "%.7g", x);
    return json_real(strtod(buf, NULL));
}

/* ---------------------------------------------------------------- the base's identity */

#define FINGERPRINT_SAMPLES 4096 /* values hashed per tensor, evenly spaced */

static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

/* x rounded to bf16 (to nearest, ties to even, as the CUDA upload rounds), so
 * the same base gives the same fingerprint in fp32 on the CPU and in bf16 on
 * a GPU; every NaN is one NaN. */
static uint16_t bf16_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* Fingerprints of the base tensors (every tensor but the adapters) of m,
 * whose parameters are in host (parameter layout), as 16 hex digits each:
 * one of their names and shapes, one of a sample of their values. */
static void base_fingerprint(GPT *m, const float *host, char shapes[17], char weights[17]) {
    uint64_t hs = 0xcbf29ce484222325ULL, hw = hs;
    for (int i = 0; i < gpt_num_tensors(m); i++) {
        const ParamInfo *p = gpt_tensor(m, i);
        if (p->lora) continue;
        int32_t dims[3] = {p->ndim, p->shape[0], p->ndim > 1 ? p->shape[1] : 0};
        hs = fnv1a(hs, p->name, strlen(p->name) + 1);
        hs = fnv1a(hs, dims, sizeof dims);
        size_t stride = p->numel > FINGERPRINT_SAMPLES ? p->numel / FINGERPRINT_SAMPLES : 1;
        for (size_t k = 0; k < p->numel && k / stride < FINGERPRINT_SAMPLES; k += stride) {
            uint16_t b = bf16_bits(host[p->offset + k]);
            hw = fnv1a(hw, &b, sizeof b);
        }
    }
    snprintf(shapes, 17, "%016llx", (unsigned long long)hs);
    snprintf(weights, 17, "%016llx", (unsigned long long)hw);
}

/* base_model_name_or_path of dir/adapter_config.json into out ("" if none). */
static void base_name(const char *dir, char *out, size_t cap) {
    char path[4096];
    json_error_t jerr;
    out[0] = '\0';
    if (path_join(path, sizeof path, dir, "adapter_config.json") != 0) return;
    json_t *root = json_load_file(path, 0, &jerr);
    const char *name = json_string_value(json_object_get(root, "base_model_name_or_path"));
    if (name) snprintf(out, cap, "%s", name);
    json_decref(root);
}

/* The adapter file f records (if it does) a base other than m's (in host)? */
static int check_base(GPT *m, const float *host, const SafeTensorsFile *f, const char *dir) {
    const char *want_shapes = safetensors_meta(f, "retort_base_shapes");
    const char *want_weights = safetensors_meta(f, "retort_base_weights");
    if (!want_shapes || !want_weights) return 0; /* PEFT's or an older retort's: cannot tell */
    char shapes[17], weights[17], name[1024];
    base_fingerprint(m, host, shapes, weights);
    int same_shapes = !strcmp(shapes, want_shapes), same_weights = !strcmp(weights, want_weights);
    if (same_shapes && same_weights) return 0;
    base_name(dir, name, sizeof name);
    err_set("%s: this LoRA adapter was trained on another base model. It records its "
            "base as base_model_name_or_path \"%s\" with the fingerprints %s (names and "
            "shapes) and %s (weights); the model it is loaded onto has %s and %s (%s), "
            "so the adapter's deltas would land on weights they were not trained for. "
            "Load it onto the base it was trained on",
            dir, name[0] ? name : "(not recorded)", want_shapes, want_weights, shapes,
            weights,
            same_shapes ? "the same tensors, different values"
                        : "different tensors or shapes");
    return LORA_OTHER_BASE;
}

/* ---------------------------------------------------------------- saving */

static int write_config(GPT *m, const char *dir, const char *base_model) {
    const LoraConfig *c = gpt_lora_config(m);
    json_t *root = json_object();
    json_t *targets;
    if (c->target_regex[0]) {
        targets = json_string(c->target_regex);
    } else {
        targets = json_array();
        for (int i = 0; i < c->n_targets; i++) json_array_append_new(targets, json_string(c->targets[i]));
    }
    json_t *layers = json_null();
    if (c->n_layers > 0) {
        layers = json_array();
        for (int i = 0; i < c->n_layers; i++) json_array_append_new(layers, json_integer(c->layers[i]));
    }
    json_object_set_new(root, "peft_type", json_string("LORA"));
    json_object_set_new(root, "task_type", json_string("CAUSAL_LM"));
    json_object_set_new(root, "base_model_name_or_path",
                        base_model ? json_string(base_model) : json_null());
    json_object_set_new(root, "r", json_integer(c->r));
    json_object_set_new(root, "lora_alpha", json_float(c->alpha));
    json_object_set_new(root, "lora_dropout", json_float(c->dropout));
    json_object_set_new(root, "target_modules", targets);
    json_object_set_new(root, "layers_to_transform", layers);
    json_object_set_new(root, "layers_pattern", json_null());
    /* GPT-2's Conv1D weights are (in, out); nn.Linear's are (out, in) */
    json_object_set_new(root, "fan_in_fan_out", json_boolean(gpt_config(m)->arch == ARCH_GPT2));
    json_object_set_new(root, "bias", json_string("none"));
    json_object_set_new(root, "use_rslora", json_boolean(c->use_rslora));
    json_object_set_new(root, "use_dora", json_false());
    json_object_set_new(root, "init_lora_weights", json_true());
    json_object_set_new(root, "modules_to_save", json_null());
    json_object_set_new(root, "rank_pattern", json_object());
    json_object_set_new(root, "alpha_pattern", json_object());
    json_object_set_new(root, "inference_mode", json_true());
    json_object_set_new(root, "revision", json_null());
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    size_t len = strlen(text);
    text = xrealloc(text, len + 2);
    text[len++] = '\n';
    text[len] = '\0';
    char path[4096];
    int rc = path_join(path, sizeof path, dir, "adapter_config.json");
    if (rc == 0) rc = write_file_atomic(path, text, len);
    free(text);
    return rc;
}

int lora_save_peft(GPT *m, const char *dir, const char *base_model) {
    if (!gpt_lora_config(m)) return err_set("cannot save a LoRA adapter to %s: the model has none", dir);
    if (mkdir_p(dir) != 0) return -1;
    size_t total = gpt_flat_size(m);
    float *host = xmalloc(total * sizeof(float));
    float *peft = xmalloc(total * sizeof(float)); /* transposed copies, same offsets */
    gpt_copy_params_to_host(m, host, total);
    int n = gpt_num_tensors(m), count = 0;
    StTensor *t = xcalloc((size_t)n, sizeof(StTensor));
    char (*names)[GPT_PARAM_NAME_LEN + 32] = xcalloc((size_t)n, sizeof *names);
    for (int i = 0; i < n; i++) {
        const ParamInfo *p = gpt_tensor(m, i);
        if (!p->lora) continue;
        int rows, cols;
        peft_shape(p, &rows, &cols);
        transpose(peft + p->offset, host + p->offset, p->shape[0], p->shape[1]);
        int j = count++;
        snprintf(names[j], sizeof names[j], "%s%s", key_prefix(m), p->name);
        t[j].name = names[j];
        t[j].dtype = ST_F32;
        t[j].ndim = 2;
        t[j].shape[0] = rows;
        t[j].shape[1] = cols;
        t[j].data = peft + p->offset;
    }
    char path[4096], shapes[17], weights[17];
    base_fingerprint(m, host, shapes, weights);
    const char *const meta[] = {"format", "pt", "retort_base_shapes", shapes,
                                "retort_base_weights", weights, NULL};
    int rc = path_join(path, sizeof path, dir, "adapter_model.safetensors");
    if (rc == 0) rc = safetensors_write(path, t, count, meta);
    if (rc == 0) rc = write_config(m, dir, base_model);
    free(names);
    free(t);
    free(peft);
    free(host);
    return rc;
}

/* A key that must be absent, null, false, "" or empty: a PEFT feature we do
 * not implement. */
static int refuse_set(const char *path, json_t *root, const char *key) {
    json_t *v = json_object_get(root, key);
    int empty = !v || json_is_null(v) || json_is_false(v) ||
                (json_is_object(v) && json_object_size(v) == 0) ||
                (json_is_array(v) && json_array_size(v) == 0) ||
                (json_is_string(v) && !json_string_value(v)[0]);
    if (empty) return 0;
    return err_set("%s: '%s' is set, but retort's LoRA does not implement it; merge the adapter "
                   "with PEFT (merge_and_unload) and train from the merged model instead", path,
                   key);
}

/* lora_read_config, also giving layers_pattern ("" when null) in pattern. */
static int read_config(const char *dir, LoraConfig *cfg, char pattern[16]) {
    char path[4096];
    if (path_join(path, sizeof path, dir, "adapter_config.json") != 0) return -1;
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) return err_set("%s:%d: %s", path, jerr.line, jerr.text);
    memset(cfg, 0, sizeof *cfg);
    pattern[0] = '\0';
    int rc = 0;
    json_t *v;
    const char *type = json_string_value(json_object_get(root, "peft_type"));
    if (type && strcmp(type, "LORA") != 0)
        rc = err_set("%s: peft_type is '%s'; only LORA adapters are supported", path, type);
    if (rc == 0) {
        v = json_object_get(root, "r");
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > INT32_MAX)
            rc = err_set("%s: 'r' must be a positive integer (below 2^31)", path);
        else cfg->r = (int)json_integer_value(v);
    }
    if (rc == 0) {
        v = json_object_get(root, "lora_alpha");
        /* a float: 1e300 would be inf, and every adapted layer's output inf */
        /* as a float: 1e-300 rounds to 0, and every adapter's scale with it */
        if (!json_is_number(v) || !((float)json_number_value(v) > 0) ||
            !isfinite((float)json_number_value(v)))
            rc = err_set("%s: 'lora_alpha' must be a positive number that fits a float", path);
        else cfg->alpha = (float)json_number_value(v);
    }
    if (rc == 0) {
        v = json_object_get(root, "lora_dropout");
        if (v && !json_is_null(v) &&
            !(json_is_number(v) && json_number_value(v) >= 0 && json_number_value(v) < 1))
            rc = err_set("%s: 'lora_dropout' must be a number in [0, 1)", path);
        else cfg->dropout = v && json_is_number(v) ? (float)json_number_value(v) : 0.0f;
    }
    if (rc == 0) {
        v = json_object_get(root, "target_modules");
        if (!v || json_is_null(v)) {
            snprintf(cfg->targets[0], LORA_NAME_LEN, "c_attn"); /* PEFT's GPT-2 default */
            cfg->n_targets = 1;
        } else if (json_is_string(v)) {
            if (strlen(json_string_value(v)) >= sizeof cfg->target_regex)
                rc = err_set("%s: 'target_modules' regex is longer than %zu characters", path,
                             sizeof cfg->target_regex - 1);
            else snprintf(cfg->target_regex, sizeof cfg->target_regex, "%s", json_string_value(v));
        } else if (json_is_array(v) && json_array_size(v) <= LORA_MAX_TARGETS) {
            for (size_t i = 0; i < json_array_size(v) && rc == 0; i++) {
                const char *s = json_string_value(json_array_get(v, i));
                if (!s || strlen(s) >= LORA_NAME_LEN)
                    rc = err_set("%s: target_modules[%zu] is not a module name", path, i);
                else snprintf(cfg->targets[cfg->n_targets++], LORA_NAME_LEN, "%s", s);
            }
        } else {
            rc = err_set("%s: 'target_modules' must be a string or a list of at most %d names",
                         path, LORA_MAX_TARGETS);
        }
    }
    if (rc == 0) {
        v = json_object_get(root, "layers_to_transform");
        /* a layer index as an int (4294967296 was layer 0) */
#define LAYER_OK(e) (json_is_integer(e) && json_integer_value(e) >= 0 && \
                     json_integer_value(e) <= INT32_MAX)
        if (json_is_integer(v)) {
            if (!LAYER_OK(v)) rc = err_set("%s: layers_to_transform %" JSON_INTEGER_FORMAT " is "
                                           "not a layer index", path, json_integer_value(v));
            else cfg->layers[cfg->n_layers++] = (int)json_integer_value(v);
        } else if (json_is_array(v) && json_array_size(v) <= LORA_MAX_TARGETS) {
            for (size_t i = 0; i < json_array_size(v) && rc == 0; i++) {
                json_t *e = json_array_get(v, i);
                if (!LAYER_OK(e))
                    rc = err_set("%s: layers_to_transform[%zu] is not a layer index (an "
                                 "integer >= 0)", path, i);
                else cfg->layers[cfg->n_layers++] = (int)json_integer_value(e);
            }
        } else if (v && !json_is_null(v)) {
            rc = err_set("%s: 'layers_to_transform' must be an integer or a list of at most %d",
                         path, LORA_MAX_TARGETS);
        }
#undef LAYER_OK
    }
    if (rc == 0) {
        v = json_object_get(root, "layers_pattern");
        const char *lp = json_is_string(v) ? json_string_value(v)
                         : json_is_array(v) && json_array_size(v) == 1
                             ? json_string_value(json_array_get(v, 0)) : NULL;
        /* the name of the block list in the module names: transformer.h.<l>
         * (GPT-2), model.layers.<l> (Llama families); lora_load_peft_ex
         * checks it against the model */
        if (v && !json_is_null(v) && !(lp && (!strcmp(lp, "h") || !strcmp(lp, "layers") || !lp[0])))
            rc = err_set("%s: 'layers_pattern' must be null, \"h\" (GPT-2) or \"layers\" (Llama "
                         "families)", path);
        else snprintf(pattern, 16, "%s", lp ? lp : "");
    }
    if (rc == 0) {
        v = json_object_get(root, "bias");
        if (v && !(json_is_string(v) && !strcmp(json_string_value(v), "none")))
            rc = err_set("%s: 'bias' must be \"none\" (trained biases are not supported)", path);
    }
    cfg->use_rslora = json_is_true(json_object_get(root, "use_rslora"));
    /* each changes what the adapted layers compute (activated LoRA: only
     * after the invocation tokens; QALoRA pools the input; BD-LoRA's block-
     * diagonal factors; Arrow routing; KaSA's truncated base; MonteCLoRA's
     * sampling) or which layers there are */
    static const char *const unsupported[] = {
        "use_dora", "lora_bias", "rank_pattern", "alpha_pattern", "modules_to_save",
        "exclude_modules", "layer_replication", "target_parameters", "trainable_token_indices",
        "alora_invocation_tokens", "use_qalora", "use_bdlora", "arrow_config", "kasa_config",
        "monteclora_config"};
    for (size_t i = 0; i < sizeof unsupported / sizeof *unsupported && rc == 0; i++)
        rc = refuse_set(path, root, unsupported[i]);
    json_decref(root);
    return rc;
}

int lora_read_config(const char *dir, LoraConfig *cfg) {
    char pattern[16];
    return read_config(dir, cfg, pattern);
}

/* The attached adapters must be the ones the file describes. */
static int check_same(GPT *m, const LoraConfig *c, const char *dir) {
    const LoraConfig *have = gpt_lora_config(m);
    float scale = c->use_rslora ? c->alpha / sqrtf((float)c->r) : c->alpha / c->r;
    if (have->r != c->r || fabsf(gpt_lora_scale(m) - scale) > 1e-6f * scale)
        return err_set("%s: adapter has r=%d, lora_alpha=%g but the model's adapters have r=%d, "
                       "alpha=%g", dir, c->r, c->alpha, have->r, have->alpha);
    return 0;
}

int lora_load_peft(GPT *m, const char *dir) { return lora_load_peft_ex(m, dir, 1); }

int lora_load_peft_ex(GPT *m, const char *dir, int check_base_model) {
    LoraConfig cfg;
    char pattern[16];
    if (read_config(dir, &cfg, pattern) != 0) return -1;
    const char *blocks = gpt_config(m)->arch == ARCH_GPT2 ? "h" : "layers";
    if (cfg.n_layers > 0 && pattern[0] && strcmp(pattern, blocks) != 0)
        return err_set("%s/adapter_config.json: layers_pattern \"%s\" is not the block list of "
                       "this model's module names (\"%s\": %s.<layer>.), so PEFT would adapt "
                       "no layer; set it to \"%s\" or null", dir, pattern, blocks,
                       blocks[0] == 'h' ? "transformer.h" : "model.layers", blocks);
    if (!gpt_lora_config(m)) {
        if (gpt_lora_attach(m, &cfg) != 0) return -1;
    } else if (check_same(m, &cfg, dir) != 0) {
        return -1;
    }
    char path[4096];
    if (path_join(path, sizeof path, dir, "adapter_model.safetensors") != 0) return -1;
    SafeTensorsFile *f = safetensors_open(path);
    if (!f) return -1;
    size_t total = gpt_flat_size(m);
    float *host = xmalloc(total * sizeof(float));
    gpt_copy_params_to_host(m, host, total);
    int rc = check_base_model ? check_base(m, host, f, dir) : 0;
    int n = gpt_num_tensors(m), found = 0;
    float *tmp = NULL;
    for (int i = 0; i < n && rc == 0; i++) {
        const ParamInfo *p = gpt_tensor(m, i);
        if (!p->lora) continue;
        char key[GPT_PARAM_NAME_LEN + 32];
        snprintf(key, sizeof key, "%s%s", key_prefix(m), p->name);
        const StTensor *t = safetensors_find(f, key);
        if (!t) {
            rc = err_set("%s: tensor '%s' is missing (adapter_config.json targets that layer)",
                         path, key);
            break;
        }
        int rows, cols;
        peft_shape(p, &rows, &cols);
        if (t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols) {
            rc = err_set("%s: tensor '%s' has %d dims [%lld, %lld], expected [%d, %d]", path, key,
                         t->ndim, (long long)t->shape[0],
                         t->ndim > 1 ? (long long)t->shape[1] : 0LL, rows, cols);
            break;
        }
        tmp = xrealloc(tmp, p->numel * sizeof(float));
        rc = safetensors_read_f32(f, t, tmp, p->numel);
        if (rc == 0) transpose(host + p->offset, tmp, rows, cols);
        found++;
    }
    if (rc == 0 && found != safetensors_count(f)) {
        for (int i = 0; i < safetensors_count(f) && rc == 0; i++) {
            const char *key = safetensors_get(f, i)->name;
            const char *pre = key_prefix(m);
            const ParamInfo *p = strncmp(key, pre, strlen(pre)) == 0
                                     ? gpt_find_tensor(m, key + strlen(pre)) : NULL;
            if (!p || !p->lora)
                rc = err_set("%s: unexpected tensor '%s' (not an adapter of a layer that "
                             "adapter_config.json targets)", path, key);
        }
    }
    if (rc == 0) gpt_copy_params_to_device(m, host, total);
    free(tmp);
    free(host);
    safetensors_close(f);
    return rc;
}
