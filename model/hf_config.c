/* model/hf_config.c — config.json of every family (see hf_config.h).
 *
 * The audit: every key of transformers 5.25's GPT2Config, LlamaConfig,
 * MistralConfig, Qwen2Config and Qwen3Config (and of PreTrainedConfig below
 * them), and what it does here. "Class default" is the value transformers
 * takes when the key is absent.
 *
 * Mapped to GPTConfig (all families): vocab_size, the sizes (n_layer/
 * num_hidden_layers, n_head/num_attention_heads, n_embd/hidden_size,
 * n_positions/n_ctx/max_position_embeddings; required, since a class default
 * for them is never what a checkpoint meant), layer_norm_epsilon/rms_norm_eps.
 *
 * GPT-2: scale_attn_weights false -> attn_no_scale; scale_attn_by_inverse_
 *   layer_idx -> attn_scale_inv_layer; activation_function must be a tanh GELU
 *   (gelu_new, gelu_pytorch_tanh, gelu_fast: one function, written three ways);
 *   n_inner must be null or 4 * n_embd (retort's GPT-2 MLP is 4x wide);
 *   tie_word_embeddings must be true; add_cross_attention must be false (its
 *   layers are weights retort does not have). reorder_and_upcast_attn is
 *   accepted: it scales q before q.k and computes the scores in fp32, which
 *   is the same function; retort's scores are fp32 on every backend already.
 *   summary_* belong to GPT2DoubleHeadsModel only.
 * Llama, Mistral, Qwen2, Qwen3: intermediate_size (required);
 *   num_key_value_heads (absent: Llama n_head, Mistral 8, Qwen 32; null:
 *   n_head; must divide num_attention_heads); head_dim (absent or null:
 *   hidden_size / heads, except Qwen3 whose class default is 128; must be
 *   even, RoPE rotates pairs); hidden_act must be silu ("swish" is the same
 *   nn.SiLU); tie_word_embeddings (class default false) -> untied_head;
 *   rope_theta, rope_scaling and transformers 5's rope_parameters (below);
 *   Llama attention_bias -> biases on q, k, v and o; Llama mlp_bias; Qwen2
 *   has q/k/v biases and no o bias whatever its file says (transformers reads
 *   no key for them); Qwen3 attention_bias -> q, k, v, o biases, and q/k
 *   RMSNorm always; Mistral has no bias and reads no attention_bias.
 *   Sliding window: Mistral sliding_window (class default 4096, null: none)
 *   on every layer. Qwen2/Qwen3: a window only when use_sliding_window is
 *   true, on the layers layer_types (or, without it, i >= max_window_layers)
 *   names sliding_attention; a mix of full and sliding layers is refused.
 *   Llama's modeling reads no sliding_window, so neither do we.
 * RoPE: rope_scaling (transformers 4) wins over rope_parameters (5) when both
 *   are given, as transformers 5 does; rope_theta inside the dict wins over
 *   the top-level one, and the two must agree when both are given (4 and 5
 *   would otherwise build different models). rope_type (or the older "type")
 *   default, linear (factor), llama3 (factor, low_freq_factor,
 *   high_freq_factor, original_max_position_embeddings) and yarn (factor,
 *   original_max_position_embeddings, attention_factor or mscale /
 *   mscale_all_dim, beta_fast, beta_slow, truncate) are implemented; dynamic,
 *   longrope, proportional and any other type are refused. A top-level
 *   original_max_position_embeddings wins over the dict's (Phi-3's rule in
 *   standardize_rope_params); absent, it is max_position_embeddings.
 *   partial_rotary_factor other than 1 is refused for the scaled types; the
 *   default RoPE of these four classes rotates the whole head whatever it says.
 * Accepted, not changing the model: pretraining_tp (transformers 5 no longer
 *   reads it; 4 split the same products into slices and summed them);
 *   dropout (resid/embd/attn_pdrop, attention_dropout: how transformers
 *   trains, not the model; retort's forward is transformers' eval forward and
 *   retort trains without dropout); pad_token_id (nn.Embedding's padding_idx:
 *   the forward is the same; torch also keeps that row's gradient zero, which
 *   matters only when the pad id is a training input); bos/eos ids,
 *   initializer_range, use_cache, architectures, dtype/torch_dtype (how
 *   transformers stores and casts the weights), chunk_size_feed_forward (the
 *   same products in chunks), id2label/label2id/problem_type (classification
 *   heads), output_* and return_dict, generation parameters, auto_map
 *   (transformers runs its own class unless trust_remote_code).
 * Refused for every family: is_causal false (bidirectional attention),
 *   per_layer_config (heterogeneous layers), quantization_config (quantized
 *   tensors), non-empty pruned_heads (pruned shapes).
 */
#include "model/hf_config.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

#define HF_PATH_MAX 4096

static const char *const ARCH_CLASSES[ARCH_COUNT] = {"GPT2LMHeadModel", "LlamaForCausalLM",
                                                     "MistralForCausalLM", "Qwen2ForCausalLM",
                                                     "Qwen3ForCausalLM"};
static const char *const ARCH_CONFIGS[ARCH_COUNT] = {"GPT2Config", "LlamaConfig", "MistralConfig",
                                                     "Qwen2Config", "Qwen3Config"};
static const char *const ROPE_NAMES[] = {"default", "linear", "llama3", "yarn"};

/* ---------------------------------------------------------------- reading */

typedef struct {
    const char *path;
    json_t *root;
    int arch;
} Src;

/* A JSON value as it reads in the file, cut to fit a message. */
static const char *shown(const json_t *v, char *buf, size_t cap) {
    char *s = v ? json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    snprintf(buf, cap, "%s", s ? s : "(absent)");
    if (s && strlen(s) >= cap && cap > 4) memcpy(buf + cap - 4, "...", 4);
    free(s);
    return buf;
}

static json_t *get(const Src *s, const char *key) { return json_object_get(s->root, key); }

/* A required positive integer. */
static int read_size(const Src *s, const char *key, int *out) {
    json_t *v = get(s, key);
    if (!v) return err_set("%s: missing required key \"%s\"", s->path, key);
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 0x7fffffff)
        return err_set("%s: \"%s\" must be a positive integer", s->path, key);
    *out = (int)json_integer_value(v);
    return 0;
}

/* An optional positive integer: *out keeps def when absent (and, with
 * null_is_def, when null). */
static int read_opt_int(const Src *s, const json_t *v, const char *name, int null_is_def, int def,
                        int *out) {
    char b[64];
    *out = def;
    if (!v || (null_is_def && json_is_null(v))) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 0x7fffffff)
        return err_set("%s: %s is %s; it must be a positive integer", s->path, name,
                       shown(v, b, sizeof b));
    *out = (int)json_integer_value(v);
    return 0;
}

static int read_bool(const Src *s, const char *key, int def, int *out) {
    json_t *v = get(s, key);
    char b[64];
    *out = def;
    if (!v) return 0;
    if (!json_is_boolean(v))
        return err_set("%s: \"%s\" is %s; it must be true or false", s->path, key,
                       shown(v, b, sizeof b));
    *out = json_is_true(v);
    return 0;
}

/* A positive finite number (name is how the message calls it). */
static int read_positive(const Src *s, const json_t *v, const char *name, double *out) {
    char b[64];
    if (!json_is_number(v) || !(json_number_value(v) > 0) || !isfinite(json_number_value(v)))
        return err_set("%s: %s is %s; it must be a positive number", s->path, name,
                       shown(v, b, sizeof b));
    *out = json_number_value(v);
    return 0;
}

/* The normalization epsilon: a float, as torch adds it to fp32 statistics
 * (1e300 would be inf and every output 0, 1e-300 zero). */
static int read_epsilon(const Src *s, const char *key, float def, float *out) {
    json_t *v = get(s, key);
    *out = def;
    if (!v) return 0;
    if (!json_is_number(v) || !((float)json_number_value(v) > 0) ||
        !isfinite((float)json_number_value(v)))
        return err_set("%s: \"%s\" must be a positive number that fits a float", s->path, key);
    *out = (float)json_number_value(v);
    return 0;
}

/* Keys that change the model in ways retort does not implement, whatever the family. */
static int refuse_common(const Src *s) {
    json_t *v;
    char b[96];
    if ((v = get(s, "is_causal")) && !json_is_true(v))
        return err_set("%s: is_causal is %s; retort runs causal (decoder) attention only",
                       s->path, shown(v, b, sizeof b));
    if ((v = get(s, "per_layer_config")) && !json_is_null(v))
        return err_set("%s: per_layer_config is set; retort runs models whose layers are all "
                       "alike", s->path);
    if ((v = get(s, "quantization_config")) && !json_is_null(v))
        return err_set("%s: quantization_config is set (a quantized checkpoint); retort reads "
                       "fp32, fp16 and bf16 weights: use the unquantized model", s->path);
    if ((v = get(s, "pruned_heads")) && !json_is_null(v) &&
        !(json_is_object(v) && json_object_size(v) == 0) &&
        !(json_is_array(v) && json_array_size(v) == 0))
        return err_set("%s: pruned_heads is %s; retort runs models with all their heads",
                       s->path, shown(v, b, sizeof b));
    return 0;
}

static int parse_gpt2(const Src *s, GPTConfig *c) {
    json_t *v;
    char b[96];
    if (read_size(s, "n_layer", &c->n_layer) != 0 || read_size(s, "n_head", &c->n_head) != 0 ||
        read_size(s, "n_embd", &c->n_embd) != 0 || read_size(s, "vocab_size", &c->vocab_size) != 0)
        return -1;
    const char *positions_key = get(s, "n_positions") ? "n_positions" : "n_ctx";
    if (!get(s, positions_key))
        return err_set("%s: missing required key \"n_positions\" (or \"n_ctx\")", s->path);
    if (read_size(s, positions_key, &c->n_positions) != 0) return -1;
    /* GPT2Config's attribute_map spellings: refused unless they agree */
    static const char *const alias[][2] = {{"hidden_size", "n_embd"},
                                           {"num_attention_heads", "n_head"},
                                           {"num_hidden_layers", "n_layer"},
                                           {"max_position_embeddings", "n_positions"}};
    const int *value[] = {&c->n_embd, &c->n_head, &c->n_layer, &c->n_positions};
    for (int i = 0; i < 4; i++)
        if ((v = get(s, alias[i][0])) &&
            !(json_is_integer(v) && json_integer_value(v) == *value[i]))
            return err_set("%s: \"%s\" is %s but \"%s\" is %d; a GPT-2 config.json names each "
                           "size once", s->path, alias[i][0], shown(v, b, sizeof b), alias[i][1],
                           *value[i]);
    if (read_epsilon(s, "layer_norm_epsilon", 1e-5f, &c->layer_norm_epsilon) != 0) return -1;
    if ((v = get(s, "activation_function"))) {
        const char *act = json_is_string(v) ? json_string_value(v) : "(not a string)";
        if (strcmp(act, "gelu_new") && strcmp(act, "gelu_pytorch_tanh") && strcmp(act, "gelu_fast"))
            return err_set("%s: activation_function is \"%s\"; retort implements only the tanh "
                           "GELU (\"gelu_new\", \"gelu_pytorch_tanh\" or \"gelu_fast\")",
                           s->path, act);
    }
    v = get(s, "n_inner");
    if (v && !json_is_null(v) &&
        !(json_is_integer(v) && json_integer_value(v) == 4 * (json_int_t)c->n_embd))
        return err_set("%s: n_inner must be null or 4 * n_embd = %lld; retort's MLP is 4x wide",
                       s->path, 4 * (long long)c->n_embd);
    int tied, cross, scale, inv_layer;
    if (read_bool(s, "tie_word_embeddings", 1, &tied) != 0 ||
        read_bool(s, "add_cross_attention", 0, &cross) != 0 ||
        read_bool(s, "scale_attn_weights", 1, &scale) != 0 ||
        read_bool(s, "scale_attn_by_inverse_layer_idx", 0, &inv_layer) != 0 ||
        read_bool(s, "reorder_and_upcast_attn", 0, &(int){0}) != 0)
        return -1;
    if (!tied)
        return err_set("%s: tie_word_embeddings is false; retort ties GPT-2's output layer to wte",
                       s->path);
    if (cross)
        return err_set("%s: add_cross_attention is true; retort's GPT-2 has no cross-attention "
                       "layers", s->path);
    c->attn_no_scale = !scale;
    c->attn_scale_inv_layer = inv_layer;
    return 0;
}

/* yarn_get_mscale of transformers' modeling_rope_utils.py (YaRN eq. 21). */
static double yarn_mscale(double scale, double mscale) {
    return scale <= 1 ? 1.0 : 0.1 * mscale * log(scale) + 1.0;
}

/* A number of the rope dict d (named where) that must be there. */
static int rope_number(const Src *s, json_t *d, const char *where, const char *key, double *out) {
    char name[96];
    snprintf(name, sizeof name, "%s.%s", where, key);
    json_t *v = json_object_get(d, key);
    if (!v) return err_set("%s: %s is missing; the rope type needs it", s->path, name);
    return read_positive(s, v, name, out);
}

/* A number of d that may be absent or null (then *out = 0). */
static int rope_opt_number(const Src *s, json_t *d, const char *where, const char *key,
                           double *out) {
    char name[96];
    snprintf(name, sizeof name, "%s.%s", where, key);
    json_t *v = json_object_get(d, key);
    *out = 0;
    if (!v || json_is_null(v)) return 0;
    return read_positive(s, v, name, out);
}

static int parse_rope(const Src *s, GPTConfig *c) {
    char b[96];
    json_t *rs = get(s, "rope_scaling"), *rp = get(s, "rope_parameters");
    if (rs && !json_is_null(rs) && !json_is_object(rs))
        return err_set("%s: rope_scaling is %s; it must be an object or null", s->path,
                       shown(rs, b, sizeof b));
    if (rp && !json_is_null(rp) && !json_is_object(rp))
        return err_set("%s: rope_parameters is %s; it must be an object or null", s->path,
                       shown(rp, b, sizeof b));
    /* transformers 5: rope_parameters = rope_scaling or rope_parameters ({} counts as none) */
    json_t *d = NULL;
    const char *where = "rope_parameters";
    if (json_is_object(rs) && json_object_size(rs) > 0) d = rs, where = "rope_scaling";
    else if (json_is_object(rp) && json_object_size(rp) > 0) d = rp;
    if (d && (json_object_get(d, "full_attention") || json_object_get(d, "sliding_attention")))
        return err_set("%s: %s holds RoPE parameters per layer type; retort runs one RoPE for "
                       "every layer", s->path, where);

    double theta = 10000.0, inner;
    json_t *top = get(s, "rope_theta"), *in = d ? json_object_get(d, "rope_theta") : NULL;
    if (top && read_positive(s, top, "rope_theta", &theta) != 0) return -1;
    if (in) {
        char name[64];
        snprintf(name, sizeof name, "%s.rope_theta", where);
        if (read_positive(s, in, name, &inner) != 0) return -1;
        if (top && inner != theta)
            return err_set("%s: rope_theta is %.17g but %s.rope_theta is %.17g; transformers 4 "
                           "reads the first and 5 the second: keep one", s->path, theta, where,
                           inner);
        theta = inner;
    }
    c->rope_theta = theta;

    const char *type = "default";
    json_t *t = d ? json_object_get(d, "rope_type") : NULL;
    if (d && !t) t = json_object_get(d, "type");
    if (t) {
        if (!json_is_string(t))
            return err_set("%s: %s.rope_type is %s; it must be a string", s->path, where,
                           shown(t, b, sizeof b));
        type = json_string_value(t);
    }
    int rt = -1;
    for (int i = 0; i < (int)(sizeof ROPE_NAMES / sizeof *ROPE_NAMES); i++)
        if (!strcmp(type, ROPE_NAMES[i])) rt = i;
    if (rt < 0)
        return err_set("%s: %s.rope_type is \"%s\"; retort implements the RoPE types default, "
                       "linear, llama3 and yarn", s->path, where, type);
    c->rope_type = rt;
    if (rt == ROPE_DEFAULT) return 0;

    json_t *prf = d ? json_object_get(d, "partial_rotary_factor") : NULL;
    if (!prf) prf = get(s, "partial_rotary_factor");
    if (prf && !json_is_null(prf) && !(json_is_number(prf) && json_number_value(prf) == 1.0))
        return err_set("%s: partial_rotary_factor is %s; retort's %s RoPE rotates the whole head "
                       "(1.0)", s->path, shown(prf, b, sizeof b), type);
    /* the pretraining length: a top-level key wins (standardize_rope_params) */
    json_t *orig = get(s, "original_max_position_embeddings");
    const char *orig_name = "original_max_position_embeddings";
    char inner_name[96];
    if (!orig) {
        orig = json_object_get(d, "original_max_position_embeddings");
        snprintf(inner_name, sizeof inner_name, "%s.original_max_position_embeddings", where);
        orig_name = inner_name;
    }
    int orig_len = 0;
    if (rt != ROPE_LINEAR &&
        read_opt_int(s, orig, orig_name, 0, c->n_positions, &orig_len) != 0)
        return -1;

    switch (rt) {
    case ROPE_LINEAR:
        return rope_number(s, d, where, "factor", &c->rope_factor);
    case ROPE_LLAMA3:
        if (rope_number(s, d, where, "factor", &c->rope_factor) != 0 ||
            rope_number(s, d, where, "low_freq_factor", &c->rope_low_freq_factor) != 0 ||
            rope_number(s, d, where, "high_freq_factor", &c->rope_high_freq_factor) != 0)
            return -1;
        if (!(c->rope_high_freq_factor > c->rope_low_freq_factor))
            return err_set("%s: %s.high_freq_factor (%g) must exceed low_freq_factor (%g): the "
                           "llama3 RoPE divides by their difference", s->path, where,
                           c->rope_high_freq_factor, c->rope_low_freq_factor);
        c->rope_original_max_pos = orig_len;
        return 0;
    case ROPE_YARN: {
        json_t *f = json_object_get(d, "factor");
        if (!f)
            return err_set("%s: %s.factor is missing; the yarn RoPE needs it", s->path, where);
        if (json_is_null(f)) { /* transformers: the ratio of the two lengths */
            c->rope_factor = (double)c->n_positions / orig_len;
        } else {
            char name[64];
            snprintf(name, sizeof name, "%s.factor", where);
            if (read_positive(s, f, name, &c->rope_factor) != 0) return -1;
        }
        double attention, mscale, mscale_all_dim;
        if (rope_opt_number(s, d, where, "attention_factor", &attention) != 0 ||
            rope_opt_number(s, d, where, "mscale", &mscale) != 0 ||
            rope_opt_number(s, d, where, "mscale_all_dim", &mscale_all_dim) != 0 ||
            rope_opt_number(s, d, where, "beta_fast", &c->rope_beta_fast) != 0 ||
            rope_opt_number(s, d, where, "beta_slow", &c->rope_beta_slow) != 0)
            return -1;
        if (attention == 0) /* _compute_yarn_parameters' default */
            attention = mscale != 0 && mscale_all_dim != 0
                            ? yarn_mscale(c->rope_factor, mscale) /
                                  yarn_mscale(c->rope_factor, mscale_all_dim)
                            : yarn_mscale(c->rope_factor, 1.0);
        c->rope_attention_factor = attention;
        json_t *tr = json_object_get(d, "truncate");
        if (tr && !json_is_null(tr) && !json_is_boolean(tr))
            return err_set("%s: %s.truncate is %s; it must be true or false", s->path, where,
                           shown(tr, b, sizeof b));
        c->rope_no_truncate = json_is_false(tr);
        c->rope_original_max_pos = orig_len;
        return 0;
    }
    }
    return 0;
}

/* The layers of a Qwen2/Qwen3 model that slide: 0 none, 1 all, -1 error. */
static int qwen_sliding_layers(const Src *s, int n_layer, int window_on, int max_window_layers) {
    json_t *lt = get(s, "layer_types");
    char b[96];
    int n_sliding = 0, first_full = -1, first_sliding = -1, n = 0;
    if (lt && !json_is_null(lt)) {
        n = (int)json_array_size(lt);
        if (!json_is_array(lt) || n != n_layer)
            return err_set("%s: layer_types is %s; it must list one type per layer (%d)",
                           s->path, shown(lt, b, sizeof b), n_layer);
        for (int i = 0; i < n; i++) {
            const char *ty = json_string_value(json_array_get(lt, (size_t)i));
            int sliding = ty && !strcmp(ty, "sliding_attention");
            if (!ty || (!sliding && strcmp(ty, "full_attention") && strcmp(ty, "attention")))
                return err_set("%s: layer_types[%d] is %s; retort runs full_attention and "
                               "sliding_attention layers", s->path, i,
                               shown(json_array_get(lt, (size_t)i), b, sizeof b));
            if (sliding && !window_on)
                return err_set("%s: layer_types[%d] is sliding_attention but use_sliding_window "
                               "is false (transformers refuses this model)", s->path, i);
            n_sliding += sliding;
            if (sliding && first_sliding < 0) first_sliding = i;
            if (!sliding && first_full < 0) first_full = i;
        }
    } else {
        n = n_layer;
        if (window_on) {
            n_sliding = max_window_layers >= n ? 0 : n - (max_window_layers > 0 ? max_window_layers : 0);
            first_sliding = max_window_layers > 0 ? max_window_layers : 0;
            first_full = max_window_layers > 0 ? 0 : -1;
        }
    }
    if (n_sliding == 0) return 0;
    if (n_sliding == n) return 1;
    return err_set("%s: layer %d has a sliding window and layer %d has none (use_sliding_window "
                   "true, max_window_layers %d%s); retort runs a window on every layer or on "
                   "none", s->path, first_sliding, first_full, max_window_layers,
                   lt && !json_is_null(lt) ? ", layer_types" : "");
}

/* Llama, Mistral, Qwen2, Qwen3 (their shared keys, then each one's own). */
static int parse_llama_family(const Src *s, GPTConfig *c) {
    const int arch = s->arch;
    char b[96];
    json_t *v;
    if (read_size(s, "num_hidden_layers", &c->n_layer) != 0 ||
        read_size(s, "num_attention_heads", &c->n_head) != 0 ||
        read_size(s, "hidden_size", &c->n_embd) != 0 ||
        read_size(s, "vocab_size", &c->vocab_size) != 0 ||
        read_size(s, "max_position_embeddings", &c->n_positions) != 0 ||
        read_size(s, "intermediate_size", &c->intermediate_size) != 0)
        return -1;
    if (read_epsilon(s, "rms_norm_eps", 1e-6f, &c->layer_norm_epsilon) != 0) return -1;

    /* the class defaults of num_key_value_heads when the key is absent */
    int kvh_default = arch == ARCH_MISTRAL ? 8 : arch == ARCH_LLAMA ? c->n_head : 32;
    int kvh;
    if (read_opt_int(s, get(s, "num_key_value_heads"), "num_key_value_heads", 1, kvh_default,
                     &kvh) != 0)
        return -1;
    if (json_is_null(get(s, "num_key_value_heads"))) kvh = c->n_head; /* __post_init__ */
    if (c->n_head % kvh != 0)
        return err_set("%s: num_key_value_heads (%d%s%s) must divide num_attention_heads (%d): "
                       "each key/value head serves a whole group of query heads", s->path, kvh,
                       get(s, "num_key_value_heads") ? "" : ", the default of ",
                       get(s, "num_key_value_heads") ? "" : ARCH_CONFIGS[arch], c->n_head);
    c->n_kv_head = kvh == c->n_head ? 0 : kvh;

    int head_dim = 0;
    v = get(s, "head_dim");
    if (arch == ARCH_QWEN3 && (!v || !json_is_null(v))) {
        if (read_opt_int(s, v, "head_dim", 0, 128, &head_dim) != 0) return -1;
    } else if (arch == ARCH_QWEN3) {
        return err_set("%s: head_dim is null; Qwen3 needs it (transformers would fail)", s->path);
    } else if (read_opt_int(s, v, "head_dim", 1, 0, &head_dim) != 0) {
        return -1;
    }
    if (head_dim == 0) {
        if (c->n_embd % c->n_head != 0)
            return err_set("%s: hidden_size (%d) is not divisible by num_attention_heads (%d) "
                           "and no head_dim is given", s->path, c->n_embd, c->n_head);
        head_dim = c->n_embd / c->n_head;
    }
    if (head_dim % 2 != 0)
        return err_set("%s: the head size is %d; rotary positions rotate pairs of dimensions, so "
                       "it must be even", s->path, head_dim);
    c->head_dim = c->n_embd % c->n_head == 0 && head_dim == c->n_embd / c->n_head ? 0 : head_dim;

    if ((v = get(s, "hidden_act"))) {
        const char *act = json_is_string(v) ? json_string_value(v) : NULL;
        if (!act || (strcmp(act, "silu") && strcmp(act, "swish")))
            return err_set("%s: hidden_act is %s; retort's %s MLP is SwiGLU (\"silu\")", s->path,
                           shown(v, b, sizeof b), gpt_arch_name(arch));
    }
    int tied;
    if (read_bool(s, "tie_word_embeddings", 0, &tied) != 0) return -1;
    c->untied_head = !tied;
    if ((v = get(s, "pretraining_tp")) && !json_is_null(v) &&
        (!json_is_integer(v) || json_integer_value(v) < 1))
        return err_set("%s: pretraining_tp is %s; it must be a positive integer", s->path,
                       shown(v, b, sizeof b));

    int bias = 0;
    switch (arch) {
    case ARCH_LLAMA:
        if (read_bool(s, "attention_bias", 0, &bias) != 0 ||
            read_bool(s, "mlp_bias", 0, &c->mlp_bias) != 0)
            return -1;
        c->attn_bias = c->attn_out_bias = bias;
        break;
    case ARCH_QWEN3:
        if (read_bool(s, "attention_bias", 0, &bias) != 0) return -1;
        c->attn_bias = c->attn_out_bias = bias;
        c->qk_norm = 1;
        break;
    case ARCH_QWEN2:
        c->attn_bias = 1; /* Qwen2Attention: q/k/v bias=True, o_proj bias=False, no key */
        break;
    default:
        break;
    }

    if (arch == ARCH_MISTRAL) {
        v = get(s, "sliding_window");
        if (read_opt_int(s, v, "sliding_window", 1, v ? 0 : 4096, &c->sliding_window) != 0)
            return -1;
    } else if (arch == ARCH_QWEN2 || arch == ARCH_QWEN3) {
        int use, window, max_window_layers = 28;
        if (read_bool(s, "use_sliding_window", 0, &use) != 0) return -1;
        v = get(s, "sliding_window");
        if (read_opt_int(s, v, "sliding_window", 1, v ? 0 : 4096, &window) != 0) return -1;
        if ((v = get(s, "max_window_layers"))) {
            if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                json_integer_value(v) > 0x7fffffff)
                return err_set("%s: max_window_layers is %s; it must be an integer >= 0",
                               s->path, shown(v, b, sizeof b));
            max_window_layers = (int)json_integer_value(v);
        }
        int on = use && window > 0;
        int all = qwen_sliding_layers(s, c->n_layer, on, max_window_layers);
        if (all < 0) return -1;
        c->sliding_window = all ? window : 0;
    }
    return parse_rope(s, c);
}

static int parse_hf_config(const char *path, json_t *root, GPTConfig *cfg) {
    if (!json_is_object(root)) return err_set("%s: not a JSON object", path);
    json_t *v = json_object_get(root, "model_type");
    char b[96];
    /* retort's own files before model_type was written were GPT-2 */
    int arch = v ? gpt_arch_from_name(json_string_value(v)) : ARCH_GPT2;
    if (arch < 0)
        return err_set("%s: model_type is %s; retort runs gpt2, llama, mistral, qwen2 and qwen3 "
                       "models (SmolLM and TinyLlama are llama)", path, shown(v, b, sizeof b));
    Src s = {.path = path, .root = root, .arch = arch};
    GPTConfig c = {0};
    c.arch = arch;
    if (refuse_common(&s) != 0) return -1;
    if ((arch == ARCH_GPT2 ? parse_gpt2(&s, &c) : parse_llama_family(&s, &c)) != 0) return -1;
    if (gpt_config_check(&c) != 0 || hf_config_expressible(&c) != 0) {
        /* sizes that fit no model (n_embd % n_head, ...) */
        char why[512];
        snprintf(why, sizeof why, "%s", err_msg());
        return err_set("%s: %s", path, why);
    }
    *cfg = c;
    return 0;
}

static json_t *load_config(const char *dir, char *path, size_t cap) {
    if (path_join(path, cap, dir, "config.json") != 0) return NULL;
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (!path_exists(path))
            err_set("%s: no such file (is %s a checkpoint or Hugging Face model directory?)",
                    path, dir);
        else
            err_set("%s: invalid JSON at line %d: %s", path, jerr.line, jerr.text);
    }
    return root;
}

int hf_config_read(const char *dir, GPTConfig *cfg) {
    char path[HF_PATH_MAX];
    json_t *root = load_config(dir, path, sizeof path);
    if (!root) return -1;
    int rc = parse_hf_config(path, root, cfg);
    json_decref(root);
    return rc;
}

int hf_config_dtype(const char *dir, char *out, size_t cap) {
    char path[HF_PATH_MAX];
    json_t *root = load_config(dir, path, sizeof path);
    if (!root) return -1;
    /* transformers 5 keeps "dtype" when both are given */
    const char *d = json_string_value(json_object_get(root, "dtype"));
    if (!d) d = json_string_value(json_object_get(root, "torch_dtype"));
    snprintf(out, cap, "%s", d ? d : "");
    json_decref(root);
    return 0;
}

/* ---------------------------------------------------------------- writing */

int hf_config_expressible(const GPTConfig *c) {
    if (c->arch < 0 || c->arch >= ARCH_COUNT)
        return err_set("model arch %d is not one of gpt2, llama, mistral, qwen2, qwen3", c->arch);
    const char *name = gpt_arch_name(c->arch);
    int nh = c->n_head > 0 ? c->n_head : 1;
    int kvh = c->n_kv_head ? c->n_kv_head : nh;
    int hs = c->head_dim ? c->head_dim : c->n_embd / nh;
    if (c->arch == ARCH_GPT2) {
        const char *what = c->n_kv_head && c->n_kv_head != nh ? "n_kv_head (grouped-query attention)"
                           : c->head_dim && c->head_dim * nh != c->n_embd ? "head_dim"
                           : c->intermediate_size && c->intermediate_size != 4 * c->n_embd
                               ? "intermediate_size other than 4 * n_embd"
                           : c->attn_bias || c->attn_out_bias ? "attn_bias (GPT-2 always has biases)"
                           : c->mlp_bias ? "mlp_bias (GPT-2 always has biases)"
                           : c->qk_norm ? "qk_norm"
                           : c->sliding_window ? "sliding_window"
                           : c->untied_head ? "an untied head (tie_word_embeddings false)"
                           : c->rope_theta != 0 || c->rope_type != ROPE_DEFAULT ? "rotary positions (rope_*)"
                                                                                  : NULL;
        if (what) return err_set("a gpt2 model has no %s; that is a llama-family option", what);
        return 0;
    }
    if (c->attn_no_scale || c->attn_scale_inv_layer)
        return err_set("attn_no_scale and attn_scale_inv_layer are GPT-2's options; a %s model "
                       "scales scores by 1/sqrt(head_dim)", name);
    if (c->n_kv_head < 0 || nh % kvh != 0)
        return err_set("n_kv_head (%d) must divide n_head (%d): each key/value head serves a "
                       "whole group of query heads", kvh, nh);
    if (hs % 2 != 0)
        return err_set("the head size is %d; rotary positions rotate pairs of dimensions, so it "
                       "must be even", hs);
    if (c->rope_type < 0 || c->rope_type > ROPE_YARN)
        return err_set("rope_type %d is not one of default, linear, llama3, yarn", c->rope_type);
    if (c->rope_theta < 0 || c->rope_factor < 0 || c->rope_original_max_pos < 0)
        return err_set("rope_theta, rope_factor and rope_original_max_pos must not be negative");
    if (c->rope_type != ROPE_DEFAULT && !(c->rope_factor > 0))
        return err_set("the %s RoPE needs rope_factor > 0", ROPE_NAMES[c->rope_type]);
    if (c->rope_type == ROPE_LLAMA3 &&
        !(c->rope_low_freq_factor > 0 && c->rope_high_freq_factor > c->rope_low_freq_factor))
        return err_set("the llama3 RoPE needs 0 < rope_low_freq_factor < rope_high_freq_factor "
                       "(got %g and %g)", c->rope_low_freq_factor, c->rope_high_freq_factor);
    const char *what = NULL;
    switch (c->arch) {
    case ARCH_LLAMA:
        if (c->attn_bias != c->attn_out_bias)
            what = "biases on q/k/v without one on o_proj or the other way round (Llama's "
                   "attention_bias puts them on all four)";
        else if (c->qk_norm) what = "q/k norms (Qwen3's)";
        else if (c->sliding_window) what = "sliding window (LlamaForCausalLM has none)";
        break;
    case ARCH_MISTRAL:
        if (c->attn_bias || c->attn_out_bias || c->mlp_bias) what = "biases";
        else if (c->qk_norm) what = "q/k norms (Qwen3's)";
        break;
    case ARCH_QWEN2:
        if (!c->attn_bias || c->attn_out_bias)
            what = "attention biases other than Qwen2's own (q, k and v; none on o_proj)";
        else if (c->mlp_bias) what = "MLP biases";
        else if (c->qk_norm) what = "q/k norms (Qwen3's)";
        break;
    case ARCH_QWEN3:
        if (c->attn_bias != c->attn_out_bias)
            what = "biases on q/k/v without one on o_proj or the other way round (Qwen3's "
                   "attention_bias puts them on all four)";
        else if (c->mlp_bias) what = "MLP biases";
        else if (!c->qk_norm) what = "attention without q/k norms (Qwen3 always has them)";
        break;
    }
    if (what) return err_set("a %s model has no %s", name, what);
    return 0;
}

/* A float as the shortest decimal that reads back as it (1e-05, not
 * 9.9999997473787516e-06); transformers reads it as a double and torch
 * rounds it to the same float. */
static json_t *json_float(float f) {
    char buf[48];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
        if (strtof(buf, NULL) == f) break;
    }
    return json_real(strtod(buf, NULL));
}

/* Keys written from the GPTConfig (they change the model): never carried. */
static const char *const OWNED_ALL[] = {
    "model_type", "vocab_size", "tie_word_embeddings", "torch_dtype", "dtype", "is_causal",
    "per_layer_config", "quantization_config", "pruned_heads", NULL};
static const char *const OWNED_GPT2[] = {
    "n_layer", "n_head", "n_embd", "n_positions", "n_ctx", "n_inner", "layer_norm_epsilon",
    "scale_attn_weights", "scale_attn_by_inverse_layer_idx", "add_cross_attention", "hidden_size",
    "num_attention_heads", "num_hidden_layers", "max_position_embeddings", NULL};
static const char *const OWNED_LLAMA[] = {
    "num_hidden_layers", "num_attention_heads", "hidden_size", "max_position_embeddings",
    "intermediate_size", "rms_norm_eps", "num_key_value_heads", "head_dim", "attention_bias",
    "mlp_bias", "sliding_window", "use_sliding_window", "max_window_layers", "layer_types",
    "rope_theta", "rope_scaling", "rope_parameters", "partial_rotary_factor",
    "original_max_position_embeddings", NULL};

static int in_list(const char *const *list, const char *key) {
    for (int i = 0; list[i]; i++)
        if (!strcmp(list[i], key)) return 1;
    return 0;
}

/* The keys of source_dir/config.json that do not change the model, when it
 * is a config of the same model_type; an empty object otherwise. NULL with
 * the error set when the file exists but cannot be read. */
static json_t *carried_keys(const char *source_dir, int arch) {
    json_t *out = json_object();
    char path[HF_PATH_MAX];
    if (!source_dir || !source_dir[0] || path_join(path, sizeof path, source_dir, "config.json") ||
        !path_exists(path))
        return out;
    json_t *src = load_config(source_dir, path, sizeof path);
    if (!src) {
        json_decref(out);
        return NULL;
    }
    json_t *mt = json_object_get(src, "model_type");
    int src_arch = mt ? gpt_arch_from_name(json_string_value(mt)) : ARCH_GPT2;
    if (json_is_object(src) && src_arch == arch) {
        const char *key;
        json_t *value;
        json_object_foreach(src, key, value) {
            if (in_list(OWNED_ALL, key) ||
                in_list(arch == ARCH_GPT2 ? OWNED_GPT2 : OWNED_LLAMA, key))
                continue;
            json_object_set(out, key, value);
        }
    }
    json_decref(src);
    return out;
}

/* Sets key to value unless the carried keys hold it already. */
static void set_default(json_t *root, const char *key, json_t *value) {
    if (json_object_get(root, key)) json_decref(value);
    else json_object_set_new(root, key, value);
}

/* rope_scaling (transformers 4: no rope_theta inside) or rope_parameters (5:
 * with it) of c. */
static json_t *rope_dict(const GPTConfig *c, double theta, int with_theta) {
    json_t *d = json_object();
    json_object_set_new(d, "rope_type", json_string(ROPE_NAMES[c->rope_type]));
    if (with_theta) json_object_set_new(d, "rope_theta", json_real(theta));
    int orig = c->rope_original_max_pos ? c->rope_original_max_pos : c->n_positions;
    switch (c->rope_type) {
    case ROPE_LINEAR:
        json_object_set_new(d, "factor", json_real(c->rope_factor));
        break;
    case ROPE_LLAMA3:
        json_object_set_new(d, "factor", json_real(c->rope_factor));
        json_object_set_new(d, "low_freq_factor", json_real(c->rope_low_freq_factor));
        json_object_set_new(d, "high_freq_factor", json_real(c->rope_high_freq_factor));
        json_object_set_new(d, "original_max_position_embeddings", json_integer(orig));
        break;
    case ROPE_YARN:
        json_object_set_new(d, "factor", json_real(c->rope_factor));
        json_object_set_new(d, "original_max_position_embeddings", json_integer(orig));
        json_object_set_new(d, "attention_factor",
                            json_real(c->rope_attention_factor > 0 ? c->rope_attention_factor
                                                                  : yarn_mscale(c->rope_factor, 1)));
        /* absent: transformers' 32 and 1, as GPTConfig's 0 */
        if (c->rope_beta_fast > 0) json_object_set_new(d, "beta_fast", json_real(c->rope_beta_fast));
        if (c->rope_beta_slow > 0) json_object_set_new(d, "beta_slow", json_real(c->rope_beta_slow));
        if (c->rope_no_truncate) json_object_set_new(d, "truncate", json_false());
        break;
    default:
        break;
    }
    return d;
}

static void put_gpt2(json_t *root, const GPTConfig *c) {
    json_object_set_new(root, "n_positions", json_integer(c->n_positions));
    json_object_set_new(root, "n_ctx", json_integer(c->n_positions));
    json_object_set_new(root, "n_embd", json_integer(c->n_embd));
    json_object_set_new(root, "n_layer", json_integer(c->n_layer));
    json_object_set_new(root, "n_head", json_integer(c->n_head));
    json_object_set_new(root, "n_inner", json_null());
    json_object_set_new(root, "layer_norm_epsilon", json_float(c->layer_norm_epsilon));
    json_object_set_new(root, "scale_attn_weights", json_boolean(!c->attn_no_scale));
    json_object_set_new(root, "scale_attn_by_inverse_layer_idx",
                        json_boolean(c->attn_scale_inv_layer));
    set_default(root, "activation_function", json_string("gelu_new"));
    set_default(root, "resid_pdrop", json_real(0.0));
    set_default(root, "embd_pdrop", json_real(0.0));
    set_default(root, "attn_pdrop", json_real(0.0));
    set_default(root, "reorder_and_upcast_attn", json_false());
    set_default(root, "bos_token_id", json_integer(c->vocab_size - 1));
    set_default(root, "eos_token_id", json_integer(c->vocab_size - 1));
}

static void put_llama_family(json_t *root, const GPTConfig *c) {
    int kvh = c->n_kv_head ? c->n_kv_head : c->n_head;
    int hs = c->head_dim ? c->head_dim : c->n_embd / c->n_head;
    json_object_set_new(root, "hidden_size", json_integer(c->n_embd));
    json_object_set_new(root, "intermediate_size",
                        json_integer(c->intermediate_size ? c->intermediate_size : 4 * c->n_embd));
    json_object_set_new(root, "num_hidden_layers", json_integer(c->n_layer));
    json_object_set_new(root, "num_attention_heads", json_integer(c->n_head));
    json_object_set_new(root, "num_key_value_heads", json_integer(kvh));
    json_object_set_new(root, "head_dim", json_integer(hs));
    json_object_set_new(root, "max_position_embeddings", json_integer(c->n_positions));
    json_object_set_new(root, "rms_norm_eps", json_float(c->layer_norm_epsilon));
    double theta = c->rope_theta > 0 ? c->rope_theta : 10000.0;
    json_object_set_new(root, "rope_theta", json_real(theta));
    json_object_set_new(root, "rope_scaling",
                        c->rope_type == ROPE_DEFAULT ? json_null() : rope_dict(c, theta, 0));
    json_object_set_new(root, "rope_parameters", rope_dict(c, theta, 1));
    if (c->arch == ARCH_LLAMA || c->arch == ARCH_QWEN3)
        json_object_set_new(root, "attention_bias", json_boolean(c->attn_bias));
    if (c->arch == ARCH_LLAMA) json_object_set_new(root, "mlp_bias", json_boolean(c->mlp_bias));
    if (c->arch == ARCH_MISTRAL)
        json_object_set_new(root, "sliding_window",
                            c->sliding_window ? json_integer(c->sliding_window) : json_null());
    if (c->arch == ARCH_QWEN2 || c->arch == ARCH_QWEN3) {
        /* every layer or none: max_window_layers 0 and layer_types say the same */
        int on = c->sliding_window > 0;
        json_object_set_new(root, "use_sliding_window", json_boolean(on));
        json_object_set_new(root, "sliding_window",
                            on ? json_integer(c->sliding_window) : json_null());
        json_object_set_new(root, "max_window_layers", json_integer(on ? 0 : c->n_layer));
        json_t *types = json_array();
        for (int l = 0; l < c->n_layer; l++)
            json_array_append_new(types, json_string(on ? "sliding_attention" : "full_attention"));
        json_object_set_new(root, "layer_types", types);
    }
    set_default(root, "hidden_act", json_string("silu"));
    set_default(root, "attention_dropout", json_real(0.0));
    /* no source, no token ids: null rather than the class's (Llama's 1 and 2) */
    set_default(root, "bos_token_id", json_null());
    set_default(root, "eos_token_id", json_null());
}

int hf_config_write_ex(const char *dir, const GPTConfig *cfg, const HfConfigWrite *opts) {
    char path[HF_PATH_MAX];
    if (path_join(path, sizeof path, dir, "config.json") != 0) return -1;
    if (cfg->vocab_size < 1)
        return err_set("cannot write %s: vocab_size is %d", path, cfg->vocab_size);
    if (gpt_config_check(cfg) != 0 || hf_config_expressible(cfg) != 0) {
        char why[512];
        snprintf(why, sizeof why, "%s", err_msg());
        return err_set("cannot write %s: %s", path, why);
    }
    const char *dtype = opts && opts->dtype ? opts->dtype : "float32";
    json_t *root = carried_keys(opts ? opts->source_dir : NULL, cfg->arch);
    if (!root) return -1;
    json_object_set_new(root, "model_type", json_string(gpt_arch_name(cfg->arch)));
    json_object_set_new(root, "vocab_size", json_integer(cfg->vocab_size));
    json_object_set_new(root, "tie_word_embeddings", json_boolean(!cfg->untied_head));
    /* transformers 4 reads torch_dtype, 5 dtype */
    json_object_set_new(root, "torch_dtype", json_string(dtype));
    json_object_set_new(root, "dtype", json_string(dtype));
    set_default(root, "architectures", json_pack("[s]", ARCH_CLASSES[cfg->arch]));
    set_default(root, "initializer_range", json_real(0.02));
    set_default(root, "use_cache", json_true());
    if (cfg->arch == ARCH_GPT2) put_gpt2(root, cfg);
    else put_llama_family(root, cfg);
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(root);
    if (!text) return err_set("cannot encode %s (invalid UTF-8 in a carried key?)", path);
    size_t len = strlen(text);
    text = xrealloc(text, len + 2);
    text[len++] = '\n';
    text[len] = '\0';
    int rc = write_file_atomic(path, text, len);
    free(text);
    return rc;
}

int hf_config_write(const char *dir, const GPTConfig *cfg) {
    return hf_config_write_ex(dir, cfg, NULL);
}
