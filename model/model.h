/* model/model.h — the GPT-2 model, written once against the backend interface.
 *
 * Parameters live in one flat allocation, one contiguous tensor per Hugging Face
 * parameter name (wte.weight, h.0.attn.c_attn.weight, ...), in HF's own layout,
 * so a checkpoint is a list of (name, offset, shape) and needs no transposes.
 * Gradients live in a second allocation that holds only the TRAINABLE
 * tensors, packed in table order (ParamInfo.grad_offset); with every tensor
 * trainable (the default) its layout is the parameter layout. Activations are
 * a third allocation.
 *
 * Gradients are fp32 on every backend, also where parameters and activations
 * are bf16 (CUDA): with gradient accumulation they are running sums over the
 * micro-steps, and a bf16 sum would be rounded at every micro-step. The cost
 * is 2 bytes per trainable parameter over bf16 gradients: +249 MB (237 MiB)
 * for GPT-2 124M (124.4M parameters, 498 MB of fp32 gradients instead of
 * 249 MB), nothing on the CPU, whose compute type is fp32 already.
 *
 * Partial fine-tuning: gpt_set_trainable / gpt_set_layers_trainable freeze
 * tensors. A frozen tensor has no gradient buffer and no optimizer state, and
 * backward skips its weight-gradient products (the ops take NULL gradient
 * pointers) and every layer below the lowest trainable one.
 *
 * LoRA (model/lora.h for the PEFT files): gpt_lora_attach appends an adapter
 * pair to the table for each targeted Conv1D linear layer, named as PEFT does
 * ("h.0.attn.c_attn.lora_A.weight", "...lora_B.weight"), freezes the base and
 * makes the adapters the trainable tensors. In the table the adapters are kept
 * in the Conv1D (in, out) orientation so they run through matmul_forward /
 * matmul_backward unchanged: lora_A is stored as A^T (in, r) and lora_B as
 * B^T (r, out), where PEFT's lora_A.weight is A (r, in) and lora_B.weight is
 * B (out, r). The adapted layer computes
 *     y = x W + b + s * (dropout(x) A^T) B^T,   s = alpha / r (rsLoRA: alpha / sqrt r).
 * Changing trainability or attaching LoRA re-lays out the gradients: do it
 * before optim_create.
 */
#ifndef RETORT_MODEL_H
#define RETORT_MODEL_H

#include <stddef.h>
#include <stdint.h>

struct Backend;

/* Model families. GPT-2 is the original; the others are the Llama-style
 * decoders (RMSNorm, rotary positions, SwiGLU MLP, grouped-query attention,
 * no biases unless a field below says so), told apart only by which of the
 * options below their config.json sets. */
typedef enum {
    ARCH_GPT2 = 0,  /* transformers GPT2LMHeadModel */
    ARCH_LLAMA,     /* LlamaForCausalLM (also SmolLM, TinyLlama) */
    ARCH_MISTRAL,   /* MistralForCausalLM (sliding_window) */
    ARCH_QWEN2,     /* Qwen2ForCausalLM (q/k/v biases) */
    ARCH_QWEN3,     /* Qwen3ForCausalLM (q/k RMSNorm, head_dim) */
    ARCH_COUNT
} ModelArch;

/* rope_scaling types (transformers' ROPE_INIT_FUNCTIONS) */
typedef enum { ROPE_DEFAULT = 0, ROPE_LINEAR, ROPE_LLAMA3, ROPE_YARN } RopeType;

/* Every field's zero value is the GPT-2 / transformers default, so a config
 * zero-initialised and given the GPT-2 sizes is GPT-2. The first seven
 * fields keep their order (tests initialise them positionally). */
typedef struct {
    int n_layer;            /* num_hidden_layers */
    int n_head;             /* num_attention_heads */
    int n_embd;             /* hidden_size */
    int vocab_size;
    int n_positions;        /* max_position_embeddings: the longest sequence */
    float layer_norm_epsilon; /* layernorm eps (GPT-2) or rms_norm_eps */
    /* Inside the model the vocabulary is padded to a multiple of vocab_pad
     * (0: GPT_VOCAB_PAD; 1: no padding): wte gets zero rows V..Vp-1 in the
     * flat buffers and the logits rows are Vp wide, so the head GEMMs have
     * aligned leading dimensions (GPT-2's V = 50257 is odd; 50304 is not).
     * The padding never shows: checkpoints, gpt_logits, logp and every
     * softmax see exactly V columns (kernels/ops.h). Not a checkpoint field. */
    int vocab_pad;
    int arch;               /* ModelArch */
    /* ---- attention ---- */
    int n_kv_head;          /* num_key_value_heads; 0: n_head (no grouping) */
    int head_dim;           /* 0: n_embd / n_head (Qwen3 sets its own) */
    int attn_bias;          /* biases on q, k and v (Qwen2; Llama attention_bias) */
    int attn_out_bias;      /* bias on o_proj (Llama attention_bias) */
    int qk_norm;            /* RMSNorm over each q and k head before RoPE (Qwen3) */
    int sliding_window;     /* Mistral / Qwen: 0 none; sequences longer are refused */
    /* GPT-2 only: scale_attn_weights false (no 1/sqrt(HS)) and
     * scale_attn_by_inverse_layer_idx true (scores / (layer + 1)) */
    int attn_no_scale;
    int attn_scale_inv_layer;
    /* ---- rotary positions (Llama family) ---- */
    double rope_theta;      /* 0: 10000 */
    int rope_type;          /* RopeType */
    double rope_factor;     /* linear, llama3, yarn */
    double rope_low_freq_factor, rope_high_freq_factor; /* llama3 */
    int rope_original_max_pos; /* llama3, yarn: original_max_position_embeddings */
    double rope_beta_fast, rope_beta_slow; /* yarn; 0: 32 and 1 */
    double rope_attention_factor;          /* yarn; 0: 0.1 ln(factor) + 1 */
    int rope_no_truncate;   /* yarn: 1 when rope_scaling.truncate is false (default true) */
    /* ---- MLP and head ---- */
    int intermediate_size;  /* MLP width; 0: 4 * n_embd (GPT-2 n_inner null) */
    int mlp_bias;           /* biases on gate/up/down (Llama mlp_bias) */
    int untied_head;        /* 1: a separate lm_head.weight (tie_word_embeddings false) */
} GPTConfig;

#define GPT_VOCAB_PAD 128
/* Above this many bytes of (rows, Vp) logits the head and classifier run over
 * chunks of rows (gpt_set_logits_chunk). */
#define GPT_LOGITS_BUDGET_BYTES ((size_t)1 << 30)

#define GPT_MAX_PARAM_TENSORS 4096
#define GPT_PARAM_NAME_LEN 64

typedef struct {
    char name[GPT_PARAM_NAME_LEN]; /* HF name without the "transformer." prefix */
    size_t offset;                 /* elements from the start of the flat buffer */
    size_t numel;
    int ndim;
    int shape[2];
    size_t alloc;                  /* elements reserved in the flat buffers: numel rounded
                                      up to 16, and for wte the padded vocabulary rows */
    int decay;                     /* 1: 2-D weight, gets weight decay */
    int lora;                      /* 0: base weight, 1: lora_A (as A^T), 2: lora_B (as B^T) */
    int trainable;                 /* 0: frozen (no gradient, no optimizer state) */
    size_t grad_offset;            /* elements into the gradient / optimizer-state layout;
                                      GPT_NO_GRAD when frozen */
} ParamInfo;

#define GPT_NO_GRAD ((size_t)-1)

typedef struct GPT GPT;

/* Checks the config (positive sizes, n_embd divisible by n_head, n_kv_head
 * dividing n_head, options of the right family) and sets the error with the
 * offending field on failure. */
int gpt_config_check(const GPTConfig *cfg);
/* The longest sequence the model computes exactly: n_positions, or a
 * shorter sliding_window (Mistral), since retort's attention is full causal
 * attention, equal to the windowed one only up to the window. Every command
 * bounds prompts, generations and training rows by it. */
int gpt_context_len(const GPTConfig *cfg);
/* transformers' model_type of each family: "gpt2", "llama", "mistral", "qwen2",
 * "qwen3" ("?" outside ModelArch); the family of a name, -1 when unknown or NULL. */
const char *gpt_arch_name(int arch);
int gpt_arch_from_name(const char *name);

/* Builds the parameter table and allocates parameters and gradients on the
 * backend. Activations are allocated lazily for the largest (B, T) seen. */
GPT *gpt_create(const GPTConfig *cfg, const struct Backend *be);
void gpt_free(GPT *m);

const GPTConfig *gpt_config(const GPT *m);
const struct Backend *gpt_backend(const GPT *m);
int gpt_num_tensors(const GPT *m);
const ParamInfo *gpt_tensor(const GPT *m, int i);
const ParamInfo *gpt_find_tensor(const GPT *m, const char *name);
/* Every parameter of the table (base and adapters). */
size_t gpt_num_params(const GPT *m);
float *gpt_params(GPT *m);    /* backend memory, gpt_flat_size elements */
float *gpt_grads(GPT *m);     /* backend memory, gpt_grad_size fp32 (trainable only); none
                                 with gradient units (gpt_set_grads_ready: it aborts) */

/* ---- partial fine-tuning ----
 * Patterns are fnmatch(3) globs over table names ("wte.weight", "h.[0-5].*",
 * "*.ln_*", "*lora_*"). Every tensor matching a freeze pattern is frozen, then
 * every tensor matching a train pattern is made trainable (train wins); the
 * others keep their state, so freeze {"*"} + train {"h.11.*", "ln_f.*"} trains
 * only the last block and the final layernorm. A pattern that matches no
 * tensor is an error (-1, error set) and changes nothing. */
int gpt_set_trainable(GPT *m, const char *const *freeze, int n_freeze,
                      const char *const *train, int n_train);
/* Sets every tensor of blocks first..last (inclusive, 0-based) trainable or
 * frozen. -1 with error set for a range outside 0..n_layer-1. */
int gpt_set_layers_trainable(GPT *m, int first, int last, int trainable);
int gpt_tensor_trainable(const GPT *m, int i);
size_t gpt_num_trainable(const GPT *m);          /* parameters that train */
size_t gpt_grad_size(const GPT *m);              /* elements in the gradient layout */
/* bytes of the gradient storage the model holds (fp32): the whole layout, or
 * with gradient units the global unit's plus one block window */
size_t gpt_grad_bytes(const GPT *m);
/* Bumped whenever the gradient layout changes (optim checks it). */
int gpt_grad_layout_version(const GPT *m);

/* Training mode (default on) enables LoRA dropout in gpt_forward; evaluation
 * forwards should turn it off. gpt_decode never drops. */
void gpt_set_train_mode(GPT *m, int on);

/* ---- LoRA ---- */
#define LORA_MAX_TARGETS 16
#define LORA_NAME_LEN 64

typedef struct {
    int r;                 /* rank >= 1 */
    float alpha;           /* scale s = alpha / r */
    float dropout;         /* on the adapter input, training forwards only, [0, 1) */
    int use_rslora;        /* s = alpha / sqrt(r) */
    /* PEFT target_modules for GPT-2: a module "transformer.h.<l>.<attn|mlp>.<x>"
     * is adapted when it equals a target or ends with "." + target ("c_attn",
     * "c_proj" = both projections, "attn.c_proj", "mlp.c_fc", ...), or when a
     * target with glob characters fnmatches it with or without "transformer.". */
    int n_targets;
    char targets[LORA_MAX_TARGETS][LORA_NAME_LEN];
    /* PEFT's string form of target_modules: a regular expression that must
     * match the whole module name (POSIX ERE); "" when targets are a list. */
    char target_regex[256];
    /* PEFT layers_to_transform: when n_layers > 0, only these blocks. */
    int n_layers;
    int layers[LORA_MAX_TARGETS];
    uint64_t seed;         /* lora_A initialisation and the dropout masks */
} LoraConfig;

/* Appends adapters for every targeted linear layer (lora_A kaiming-uniform as
 * PEFT: U(-1/sqrt(in), 1/sqrt(in)); lora_B zero, so the model is unchanged),
 * freezes every base tensor and makes the adapters trainable. -1 with error
 * set for a bad config, targets that match nothing, or a model that already
 * has adapters. */
int gpt_lora_attach(GPT *m, const LoraConfig *cfg);
/* NULL when the model has no adapters. */
const LoraConfig *gpt_lora_config(const GPT *m);
float gpt_lora_scale(const GPT *m);
/* The dropout masks are a function of (seed, step): each training forward
 * first increments the step. Saved and restored on resume for identical
 * masks; tests set it to replay a forward's mask. */
uint64_t gpt_lora_dropout_step(const GPT *m);
void gpt_lora_set_dropout_step(GPT *m, uint64_t step);
/* Folds the adapters into the base weights, W' = W + s (B A)^T = W + s A^T B^T
 * in the Conv1D layout, and removes them from the table; every tensor is then
 * trainable again. No-op without adapters. */
void gpt_lora_merge(GPT *m);

/* GPT-2 initialisation: N(0, 0.02) weights, residual projections scaled by
 * 1/sqrt(2 L), zero biases, unit layernorm gains. Deterministic from seed. */
void gpt_init_random(GPT *m, uint64_t seed);

/* Forward pass over (B,T) token ids (host memory). targets (host, -1 = none)
 * select which log-probabilities are returned in logp_out (host, B*T floats).
 * Keeps what backward needs. */
void gpt_forward(GPT *m, const int *inputs, const int *targets, int B, int T,
                 float *logp_out);

/* Full logits of the last forward, (B,T,V), copied to host (for generation and
 * tests); recomputed from the kept final-layernorm output when the logits
 * buffer holds another chunk or the gradients of the last backward. */
void gpt_logits(GPT *m, float *out);

/* ---- chunked classifier ----
 * The head matmul, the classifier (log-softmax, logp) and its backward, and the
 * KD term run over chunks of `rows` rows, so full (B*T, Vp) logits never exist:
 * the logits buffer holds one chunk. Forward keeps only lse and logp per row;
 * backward recomputes each chunk's logits from the kept final-layernorm output
 * (one extra head GEMM per chunk, the last chunk of forward is reused) and
 * consumes its dlogits at once. rows = 0 (the default) chunks automatically:
 * a single chunk unless the logits would pass GPT_LOGITS_BUDGET_BYTES. Results
 * equal the unchunked ones up to the order of the dwte sums. */
void gpt_set_logits_chunk(GPT *m, int rows);
/* Packed rows for the NEXT gpt_forward (and the backward after it): several
 * examples share a row of T tokens, and doc_start (B,T, host) gives, per
 * token, the index in its row where its example begins (per row: 0 first,
 * then each entry is t, a new example, or the previous entry). Attention
 * stays within each example and positions restart at 0 per example
 * (position t - doc_start[b,t]: GPT-2's wpe row, the Llama families' RoPE
 * angle), so each example computes what it would alone in a row. The arrays
 * are copied; the forward after that one is unpacked unless this is called
 * again. Returns -1 with the error set on a malformed doc_start. */
int gpt_set_packing(GPT *m, const int *doc_start, int B, int T);
/* Rows per chunk for the last forward (B*T when unchunked). */
int gpt_logits_chunk_rows(const GPT *m);
/* The vocabulary as the model lays it out (model.vocab_size rounded up). */
int gpt_padded_vocab(const GPT *m);

/* ---- activation recomputation (train.recompute) ----
 * What forward keeps per block for backward. Every mode keeps each block's
 * output (the residual stream entering the next block, and the last one for
 * the final norm) and the embedding output; the rest is either kept per block
 * or held for one block at a time in shared scratch and recomputed in
 * backward, just before that block's backward, from the kept block input:
 *   none       every buffer per block (ln1, qkv, attention output and
 *              log-sum-exp, out-projection, res2, ln2, MLP pre- and
 *              post-activation, down-projection, res3 and the norm statistics).
 *   attention  the MLP half per block (res2, ln2 and its statistics, the MLP's
 *              pre- and post-activation); the attention half is recomputed:
 *              ln1 and its statistics, the q/k/v GEMM, q/k norm, RoPE,
 *              attention (output and log-sum-exp), i.e. everything up to the
 *              out-projection's input. The out-projection's output and the
 *              down-projection's output are never read by backward, so they
 *              are scratch too.
 *   block      only the block outputs; the whole block up to the MLP's
 *              post-activation is recomputed (ln1 .. attention, out-projection,
 *              res2, ln2, the MLP's first GEMM and activation).
 * Activation memory goes from L x (all per-block buffers) to L x (what the mode
 * keeps) + 1 x (the rest). The recomputation runs the same ops on the same
 * inputs in the same order as forward, LoRA dropout included (its mask is a
 * function of the forward count, which backward does not change), so the
 * gradients are bitwise those of `none` on the CPU. Backward skips the
 * recomputation of the last block, whose buffers forward left in the scratch,
 * and of the blocks below the lowest one it visits. LoRA's per-adapter
 * buffers (s x A^T x, and the dropped input when lora dropout > 0) follow
 * their GEMM: once for all blocks where the mode reruns it (attention: the
 * q/k/v adapters; block: every adapter, the down-projection then rerun too),
 * else per block. */
typedef enum {
    GPT_RECOMPUTE_NONE = 0,
    GPT_RECOMPUTE_ATTENTION,
    GPT_RECOMPUTE_BLOCK,
    GPT_RECOMPUTE_COUNT
} GptRecompute;
/* "none", "attention", "block" ("?" outside GptRecompute); the mode of a name,
 * -1 when unknown or NULL. */
const char *gpt_recompute_name(int mode);
int gpt_recompute_from_name(const char *name);
/* Sets the mode; the activations are laid out again at the next forward (so
 * call it between a backward and the next forward, not between a forward
 * and its backward). -1 with the error set for a mode outside GptRecompute. */
int gpt_set_recompute(GPT *m, int mode);
int gpt_recompute(const GPT *m);
/* The bytes of activations gpt_forward allocates for a (B,T) batch of a
 * fresh model of this config under recompute mode `recompute`, on a backend
 * whose compute type is act_size bytes (4: the CPU's fp32, 2: CUDA's bf16),
 * with the head chunked at chunk_rows rows (0: automatic, as
 * gpt_set_logits_chunk). Exactly what the model's two activation allocations
 * hold (buffers 64-byte aligned), without allocating them: the per-block
 * buffers, the embedding output, the final norm, one chunk of logits and the
 * backward scratch. Not counted: LoRA's buffers, the KD side buffers, the
 * key/value cache of decoding, and the host copy of the token ids. 0 with
 * the error set for a bad config, mode or size (T past gpt_context_len). For
 * a memory planner. */
size_t gpt_activation_bytes(const GPTConfig *cfg, int B, int T, int recompute, size_t act_size,
                            int chunk_rows);
/* The bytes of the activations allocated now (0 before the first forward):
 * gpt_activation_bytes of the largest batch seen. */
size_t gpt_activation_bytes_allocated(const GPT *m);

/* Backward from per-token weights g = dLoss/dlogp (host, B*T floats), for the
 * (B,T) of the last forward. Accumulates into the gradients. */
void gpt_backward(GPT *m, const float *g);

/* Zeroes the gradients (with gradient units: both storages). */
void gpt_zero_grad(GPT *m);

/* ---- gradient units (ZeRO-2: train/optim.c optim_shard_grads) ----
 * The gradient layout splits into units: block l's trainable tensors (its
 * base tensors and its LoRA adapters) are unit l, the global ones (embeddings,
 * final norm, head) unit n_layer. A block's gradient is written only while
 * backward is inside that block, the global ones before (head, final norm)
 * and after (embeddings) the blocks. With a hook set, the model keeps
 * storage for the global unit plus ONE block's window (the largest block's
 * size) instead of the whole layout: every backward starts from zero
 * gradients, zeroes the window before each block, and calls
 * fn(ctx, m, l) after block l's backward (from n_layer-1 down to the lowest
 * block backward visits) and fn(ctx, m, n_layer) once the embeddings are
 * done: the unit's gradient of this one backward is complete, and the hook
 * must take it (reduce-scatter it into its shard) before returning, because
 * the window is reused by the next block. gpt_grads is then unavailable (it
 * aborts): the whole layout never exists. fn NULL goes back to the whole
 * buffer. Set it after the trainable tensors and LoRA (a re-layout keeps the
 * hook and rebuilds the units). */
typedef struct {
    size_t lo, hi; /* [lo, hi) of the gradient layout (gpt_grad_size) */
    size_t at;     /* where it starts in the unit's storage (gpt_grad_unit_data) */
} GptGradRun;
typedef void (*GptGradsReady)(void *ctx, GPT *m, int unit);
void gpt_set_grads_ready(GPT *m, GptGradsReady fn, void *ctx);
/* Unit u's runs: maximal pieces of the layout that are also contiguous in
 * its storage (a block without LoRA is one run), in layout order. */
int gpt_grad_unit_runs(const GPT *m, int unit, const GptGradRun **runs);
/* Unit u's storage (backend memory): valid inside the hook for that unit. */
float *gpt_grad_unit_data(GPT *m, int unit);
/* The overlapped gradient reduction (plain data parallelism and ZeRO-1,
 * train/grad_overlap.c): fn(ctx, m, u) at the same moments as the hook of
 * gpt_set_grads_ready (after block u's backward, from n_layer-1 down, and
 * u = n_layer after the embeddings), but the gradients stay in the whole
 * buffer (gpt_grads) and keep accumulating over backwards: when fn runs, unit
 * u's runs (gpt_grad_unit_runs; their lo and hi index gpt_grads, `at` is
 * unused) hold everything this backward adds to them, and no later part of
 * this backward writes them. A backward with no trainable tensor calls
 * nothing. fn NULL turns it off. */
void gpt_set_grads_done(GPT *m, GptGradsReady fn, void *ctx);

/* ---- parameter units (ZeRO-3: train/optim.c optim_shard_params) ----
 * With gradient units on, the parameters can live by the same units: the
 * trainable tensors of block l (the runs of gpt_grad_unit_runs(m, l)) are
 * then held by their owner's shard outside the model, and the model keeps
 * the global tensors and every frozen tensor resident plus ONE window of the
 * largest block's trainable size. Before block l's forward (training,
 * recomputation, evaluation and decoding alike) and before its backward the
 * model calls fn(ctx, m, l, window) unless the window holds block l already:
 * the hook must fill window + run.at with each run of the unit's parameters
 * (collective: every rank walks the blocks in the same order). The whole
 * parameter buffer is released; gpt_params aborts outside whole mode.
 * Call after gpt_set_grads_ready and with the whole buffer current; the
 * trainable layout cannot change afterwards. */
typedef void (*GptParamsGather)(void *ctx, GPT *m, int unit, float *window);
int gpt_set_params_gather(GPT *m, GptParamsGather fn, void *ctx);
int gpt_params_sharded(const GPT *m);
/* Tensor i's storage while sharded: a resident tensor's, or a block
 * tensor's place in the window (valid while the window holds its block). */
float *gpt_tensor_data(GPT *m, int i);
/* Tensor i's unit (gradient units on): its block, n_layer global, -1 frozen. */
int gpt_tensor_unit(const GPT *m, int i);
/* The window no longer holds any block (its owner changed the shards). */
void gpt_params_changed(GPT *m);
/* Whole mode, for a save or a load: gpt_params_unshard allocates the whole
 * buffer with the resident tensors copied in (the caller writes the block
 * tensors: gpt_params is the whole buffer until gpt_params_reshard, which
 * copies the resident tensors back and releases it). */
int gpt_params_unshard(GPT *m);
void gpt_params_reshard(GPT *m);
/* Bytes the model holds for parameters: the whole buffer, or resident +
 * window while sharded. */
size_t gpt_param_bytes(const GPT *m);

/* Word-level knowledge distillation through the fused classifier
 * (kernels/ops.h, classifier_kd_*). The teacher is either another model on
 * the same backend whose last gpt_forward ran on the same (B,T) inputs
 * (online: its logits are read in place, nothing V-wide is copied), or K
 * stored log-probs per position (offline, host arrays (B*T, K)). */
typedef struct {
    GPT *teacher;             /* online teacher, or NULL */
    const int *topk_ids;      /* offline: (B*T, K) */
    const float *topk_logp;   /* offline: (B*T, K), temperature-1 log-probs */
    int K;
    float temperature, beta;  /* T; 0 forward KL .. 1 reverse KL (generalized JSD) */
} KdTeacher;

/* After gpt_forward: the divergence per position and whether student and
 * teacher agree on the top-1 token (host, B*T each; 0 where targets < 0). */
void gpt_kd_forward(GPT *m, const KdTeacher *t, float *kd_out, float *agree_out);
/* gpt_backward plus the KD term weighted per position by w (host, B*T):
 * dlogits = g (onehot - softmax) + w dD/dlogits. */
void gpt_backward_kd(GPT *m, const float *g, const KdTeacher *t, const float *w);

/* Incremental decoding with a key/value cache (generation). Feeds n new tokens
 * per row (B,n) (host) at positions pos .. pos+n-1 of rows whose earlier
 * positions were fed by previous calls (pos = 0 starts new rows, e.g. the
 * prompt), and writes the logits of each row's last new token to
 * logits_out (B,V) (host). pos + n must not exceed n_positions. The cache is
 * allocated on first use for B rows. Invalidates the training activations.
 * gpt_decode_slots with row b in slot b. */
void gpt_decode(GPT *m, const int *tokens, int B, int n, int pos, float *logits_out);

/* Decoding over cache slots, for continuous batching: N new tokens, token i
 * into cache slot slot[i] at position pos[i] (each < n_positions). A slot's
 * tokens in one call are consecutive and in increasing positions, and its
 * earlier positions were fed by earlier calls (position 0 starts a new
 * sequence in the slot); slots are independent. Writes the logits of rows
 * out_rows[0..n_out) (increasing) to logits_out (n_out,V) (host). The linear
 * layers run through the row-invariant GEMMs (kernels/ops.h,
 * matmul_rows_forward), so on the CPU a token's logits are the same bits
 * whatever else is in the call and however its sequence's tokens were split
 * across calls. The cache grows on demand. */
void gpt_decode_slots(GPT *m, const int *tokens, const int *slot, const int *pos, int N,
                      const int *out_rows, int n_out, float *logits_out);
/* Makes the cache hold at least `slots` slots of `len` positions (contents kept). */
void gpt_kv_reserve(GPT *m, int slots, int len);
/* Copies slot src[i]'s first len positions into slot dst[i], i < n (beam
 * search within a group of slots); every dst differs from every src. */
void gpt_kv_copy_slots(GPT *m, const int *dst, const int *src, int n, int len);

/* Reorders the key/value cache rows for beam search: row b of the cache
 * becomes old row src[b], for positions 0 .. len-1 (B rows). */
void gpt_kv_reorder(GPT *m, const int *src, int B, int len);

/* Host copies of the flat parameter buffer (n floats, the extent of the tensor
 * table including alignment padding). */
size_t gpt_flat_size(const GPT *m);
void gpt_copy_params_to_host(GPT *m, float *host, size_t n);
void gpt_copy_params_to_device(GPT *m, const float *host, size_t n);
/* Gradients scattered into the PARAMETER layout (host + ParamInfo.offset),
 * zeros for frozen tensors; n <= gpt_flat_size. */
void gpt_copy_grads_to_host(GPT *m, float *host, size_t n);

#endif
