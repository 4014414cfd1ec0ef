/* model/lora.h — LoRA adapters as PEFT adapter directories.
 *
 * The adapters themselves live in the model (gpt_lora_attach, model/model.h).
 * This file moves them to and from what PEFT's save_pretrained writes and
 * PeftModel.from_pretrained reads:
 *
 *   adapter_model.safetensors  "base_model.model.transformer.h.<l>.<module>.lora_A.weight"
 *                              (GPT-2), "base_model.model.model.layers.<l>.self_attn.q_proj.
 *                              lora_A.weight" (Llama families): (r, in), and
 *                              "...lora_B.weight" (out, r), fp32
 *   adapter_config.json        peft_type LORA, task_type CAUSAL_LM, r, lora_alpha,
 *                              lora_dropout, target_modules, fan_in_fan_out true
 *                              (GPT-2's Conv1D) or false (nn.Linear), bias "none",
 *                              base_model_name_or_path; layers_pattern null or the
 *                              family's block list ("h", "layers")
 *
 * The model keeps A^T and B^T (Conv1D orientation); saving and loading
 * transpose. Features of PEFT's config that retort does not implement (DoRA,
 * LoRA bias, per-module rank or alpha patterns, modules_to_save, the LoRA
 * variants aLoRA, QALoRA, ...) are refused on load with the key named, never
 * ignored.
 */
#ifndef RETORT_LORA_H
#define RETORT_LORA_H

#include "model/model.h"

/* Writes dir/adapter_model.safetensors and dir/adapter_config.json (dir is
 * created if needed). base_model: the base model's name or path for PEFT, or
 * NULL. -1 with error set when the model has no adapters or on I/O failure. */
int lora_save_peft(GPT *m, const char *dir, const char *base_model);

/* Reads dir/adapter_config.json into cfg (seed 0). -1 with error set on a
 * missing or malformed file or an unsupported PEFT feature. */
int lora_read_config(const char *dir, LoraConfig *cfg);

/* Loads a PEFT adapter directory into the model: attaches adapters from its
 * adapter_config.json when the model has none (the base is then frozen and
 * the adapters trainable, as after gpt_lora_attach), or checks that the
 * attached ones have the same rank, scale and layers, then reads the weights.
 * Missing, misshapen and unexpected tensors are errors, and so is a base
 * other than the one the adapter was trained on: lora_save_peft records two
 * fingerprints of the base in adapter_model.safetensors' metadata
 * (retort_base_shapes: FNV-1a 64 of every base tensor's name and shape;
 * retort_base_weights: of up to 4096 evenly spaced values per tensor,
 * rounded to bf16 so the CPU's fp32 and a GPU's bf16 copy of one base agree),
 * and a base with either different is refused, naming both identities and
 * base_model_name_or_path. An adapter without them (PEFT's, older retort's)
 * loads unchecked. 0, or -1 with the error set (LORA_OTHER_BASE for another
 * base); on error the model may hold attached adapters. */
#define LORA_OTHER_BASE (-2)
int lora_load_peft(GPT *m, const char *dir);
/* lora_load_peft with the base check on (check_base_model 1) or off (0:
 * `retort export --force`, for a user who knows the bases are compatible). */
int lora_load_peft_ex(GPT *m, const char *dir, int check_base_model);

#endif
