/* model/model_io.h — GPT weights to and from Hugging Face files. */
#ifndef RETORT_MODEL_IO_H
#define RETORT_MODEL_IO_H

#include "model/model.h"

struct Backend;

/* Writes dir/model.safetensors (keys "transformer.<name>", fp32) and
 * dir/config.json so that GPT2LMHeadModel.from_pretrained(dir) loads it.
 * LoRA adapters are not part of it: save them with lora_save_peft, or fold
 * them in first with gpt_lora_merge for a plain merged checkpoint. */
int model_save_hf(GPT *m, const char *dir);

/* Loads weights from dir/model.safetensors into an existing model of the same
 * shape. Accepts both "h.0..." and "transformer.h.0..." key styles, fp32/fp16/
 * bf16 data, ignores the tied "lm_head.weight" and HF's attention-mask buffers
 * ("*.attn.bias", "*.attn.masked_bias"), and rejects missing tensors, shape
 * mismatches and unknown tensors with the name. Leaves LoRA adapters as they are. */
int model_load_weights(GPT *m, const char *dir);

/* config.json + model.safetensors from dir into a new model on be. */
GPT *model_load_hf(const char *dir, const struct Backend *be);

#endif
