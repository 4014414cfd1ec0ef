/* model/hf_config.h — Hugging Face config.json for every family retort runs
 * (GPT-2, Llama, Mistral, Qwen2, Qwen3), read into a GPTConfig and written
 * back so that transformers' AutoModelForCausalLM.from_pretrained builds the
 * same model.
 *
 * Reading follows the config classes of transformers 5 (LlamaConfig,
 * MistralConfig, Qwen2Config, Qwen3Config, GPT2Config): a key that is absent
 * takes that class's default, and every key that changes the model the
 * checkpoint defines is either mapped to a GPTConfig field or refused with a
 * message naming the file, the key, its value and what retort supports.
 * model/hf_config.c lists every key of every class and what happens to it.
 *
 * Writing puts every key that changes the model from the GPTConfig; the keys
 * that do not (token ids, architectures, initializer_range, dropout, ...) are
 * carried over from the config.json of the model this one came from, when
 * there is one of the same model_type, else given their class defaults.
 */
#ifndef RETORT_HF_CONFIG_H
#define RETORT_HF_CONFIG_H

#include <stddef.h>

#include "model/model.h"


/* Reads dir/config.json. -1 with the error set on a missing or malformed
 * file, a model_type retort does not run, or an option it does not implement
 * (the message names the file, the key and the value). */
int hf_config_read(const char *dir, GPTConfig *cfg);

/* The dtype a config.json says its weights are in ("torch_dtype", or
 * transformers 5's "dtype"), into out: "float32", "bfloat16", "float16", or
 * another torch dtype name as written; "" when the file names none. -1 with
 * the error set when dir/config.json cannot be read. */
int hf_config_dtype(const char *dir, char *out, size_t cap);

typedef struct {
    /* The model this one came from (model.init, an export's base), or NULL:
     * the keys of its config.json that do not change the forward pass are
     * kept (bos/eos/pad token ids, architectures, initializer_range, dropout,
     * hidden_act/activation_function spellings, transformers_version, ...)
     * when its model_type is this model's. It may be dir itself. */
    const char *source_dir;
    /* torch_dtype written (the dtype of the weights beside it): "float32"
     * (NULL), "bfloat16" or "float16". */
    const char *dtype;
} HfConfigWrite;

/* Writes dir/config.json for cfg (fp32 weights, no source). */
int hf_config_write(const char *dir, const GPTConfig *cfg);
int hf_config_write_ex(const char *dir, const GPTConfig *cfg, const HfConfigWrite *opts);

/* 0 when a config.json of cfg's family can describe cfg: GPT-2 has no
 * grouped-query attention, rotary positions, head_dim or untied head; Llama
 * and Qwen3 put biases on q, k, v and o together (attention_bias), Qwen2
 * always has q/k/v biases and none on o, Mistral none; only Qwen3 has q/k
 * norms and always; only Llama has mlp_bias; only Mistral, Qwen2 and Qwen3
 * have a sliding window; the GPT-2 attention scalings are GPT-2's. Also
 * checks what rotary positions need (an even head size, n_kv_head dividing
 * n_head). -1 with the error set naming the field otherwise. */
int hf_config_expressible(const GPTConfig *cfg);

#endif
