/* model/model_io.h — model weights to and from Hugging Face checkpoint
 * directories, and the files that travel with them. */
#ifndef RETORT_MODEL_IO_H
#define RETORT_MODEL_IO_H

#include <stddef.h>
#include <stdint.h>

#include "data/tokenizer.h"
#include "model/model.h"

struct Backend;

/* How model_save_hf_ex writes. All zero: fp32, no source, 5 GB shards. */
typedef enum {
    HF_SAVE_F32 = 0, /* fp32 (exact: what a resumed run must read back) */
    HF_SAVE_SOURCE,  /* the source's torch_dtype (bf16, fp16 or fp32; fp32 without a source) */
    HF_SAVE_BF16,    /* rounded to nearest even, as torch's .to(torch.bfloat16) */
    HF_SAVE_F16
} HfSaveDtype;

/* transformers 4's default max_shard_size, "5GB" (10^9 bytes a GB) */
#define HF_DEFAULT_MAX_SHARD_BYTES 5000000000ULL

typedef struct {
    /* The model this one started from (model.init, an export's base) or NULL:
     * its config.json's keys that do not change the model (token ids,
     * architectures, ...) and its generation_config.json are carried over,
     * and HF_SAVE_SOURCE reads its torch_dtype. */
    const char *source_dir;
    HfSaveDtype dtype;
    /* Weights past this many bytes go into shards model-0000k-of-0000N.
     * safetensors named by model.safetensors.index.json (transformers' rule:
     * a new shard when the next tensor would tip the current one over);
     * 0: HF_DEFAULT_MAX_SHARD_BYTES. */
    uint64_t max_shard_bytes;
} HfSaveOptions;

/* Writes the weights (model.safetensors, or shards and their index; keys
 * "transformer.<name>" for GPT-2, the table names for the Llama families),
 * config.json and, with a source, its generation_config.json, so that
 * AutoModelForCausalLM.from_pretrained(dir) loads the model. Weight files of
 * an earlier save in dir that this one does not replace are removed. The
 * parameters go to the file a tensor at a time (no second copy of the model
 * in memory). LoRA adapters are not part of it: save them with
 * lora_save_peft, or fold them in first with gpt_lora_merge. */
int model_save_hf_ex(GPT *m, const char *dir, const HfSaveOptions *opts);
/* model_save_hf_ex with all options zero: fp32, no source. */
int model_save_hf(GPT *m, const char *dir);

/* Copies the files of source_dir a checkpoint keeps beside the weights
 * (generation_config.json; the tokenizer's are model_tokenizer_save's) into
 * dir. Nothing when source_dir is NULL, "" or dir. */
int model_hf_carry_files(const char *dir, const char *source_dir);

/* Loads weights from dir/model.safetensors, or from the shards dir/
 * model.safetensors.index.json names, into an existing model of the same
 * shape. Accepts both key styles of each family ("h.0..." and "transformer.
 * h.0..." for GPT-2; "model.layers.0..." and "layers.0..." for the Llama
 * families), fp32/fp16/bf16/fp64 data (converted a slice at a time, from the
 * memory-mapped file, whose pages are let go tensor by tensor), ignores a
 * tied "lm_head.weight", GPT-2's attention-mask buffers ("*.attn.bias",
 * "*.attn.masked_bias") and "*.rotary_emb.inv_freq", and rejects missing
 * tensors, shape mismatches and unknown tensors with the name. Leaves LoRA
 * adapters as they are. */
int model_load_weights(GPT *m, const char *dir);

/* config.json + weights from dir into a new model on be. */
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
