/* model/model_io.h — GPT weights to and from Hugging Face files. */
#ifndef RETORT_MODEL_IO_H
#define RETORT_MODEL_IO_H

#include <stddef.h>

#include "data/tokenizer.h"
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

/* ---- the model's tokenizer ----
 * A checkpoint records the tokenizer it was trained with in dir/retort.json,
 * {"tokenizer": NAME} (NAME an identity of data/tokenizer.h), and keeps copies
 * of its starting model's tokenizer files (tokenizer.json, ...). So the
 * commands that load a model (generate, eval, pairs, agent) use its own
 * tokenizer by default, and `retort train` refuses data built with another.
 * transformers ignores retort.json; AutoTokenizer reads the copied files. */
#define MODEL_RECORD_FILE "retort.json"

/* The tokenizer of checkpoint dir, into name (cap bytes): the recorded one,
 * else that of the tokenizer files in dir (loaded), else "" (unknown: an
 * outside checkpoint without tokenizer files, or one written before records).
 * -1 with the error set when the record or the files cannot be read, or they
 * disagree. */
int model_tokenizer_name(const char *dir, char *name, size_t cap);

/* Records name in dir/retort.json when it is a known identity, and copies
 * the TOKENIZER_FILES that from_dir holds (NULL or "": none) into dir. */
int model_tokenizer_save(const char *dir, const char *name, const char *from_dir);

/* The tokenizer to use with the model in dir, whose vocab_size is V:
 *   spec given ("bytes" or a path): that one, refused when it is not the
 *     tokenizer dir records or has more ids than V;
 *   no spec: the tokenizer files in dir, else the recorded byte tokenizer,
 *     else (no record, no files) the byte tokenizer when V is its 257.
 * NULL with the error set otherwise — a BPE recorded but its files not in
 * dir, or nothing known and V != 257 — saying to pass --tokenizer. */
Tokenizer *model_tokenizer_load(const char *dir, const char *spec, int vocab_size);

/* A further model of a command that shares tok (pairs' scorer, the agent's
 * roles): -1 with the error set when dir's tokenizer (recorded, or its files)
 * is known and is not tok, or vocab_size is smaller than tok's. */
int model_tokenizer_check(const char *dir, int vocab_size, const Tokenizer *tok);

#endif
