/* train/config.c — the run configuration, driven by one table.
 *
 * KEYS lists every configurable value once: section and name, type, where it
 * lives in Config (offsetof), its range and a line of help. Everything except the
 * defaults reads that table — YAML loading, --set, range checks, YAML and JSON
 * output, JSON input and the --help listing — so a new key is one field in
 * config.h, one line in KEYS and one default here.
 *
 * Values from outside (YAML scalars, --set text, JSON values) all end in the same
 * store_* functions, so a value is checked the same way whichever door it came
 * in by. Loaders work on a copy and commit only when the whole input is good: a
 * failed load leaves the caller's Config as it was.
 *
 * Strings are stored zero-filled to the end of their buffer so two Configs that
 * hold the same values compare equal byte for byte (padding aside).
 */
#include "train/config.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "model/hf_config.h"
#include "train/config_flow.h"
#include "train/plan.h"
#include "train/objectives/objective.h"
#include "util/utf8.h"
#include "util/util.h"

/* ---- the table ---- */

typedef enum { KEY_INT, KEY_DOUBLE, KEY_BOOL, KEY_STRING, KEY_ENUM } KeyType;

typedef struct {
    const char *section, *name;
    KeyType type;
    size_t offset, size;      /* place in Config; size is the buffer size for strings */
    double min, max;          /* numbers; NO_LIMIT on a side without a bound */
    bool min_open, max_open;  /* bound excluded: (min, ...) or (..., max) */
    bool nonempty;            /* strings that must not be "" */
    bool flow;                /* strings that a config file may give as a YAML mapping or list,
                                 stored as its flow text (train/config_flow.c) */
    const char *choices;      /* enums: "a|b|c" */
    const char *help;
} KeyInfo;

#define NO_LIMIT HUGE_VAL
#define OPEN true
#define CLOSED false

/* FIELD_IS makes a key whose type does not match its Config field a compile
 * error: _Generic has no branch for the wrong type (its operand is not evaluated). */
#define FIELD_IS(sec, key, ctype, tag) _Generic((((Config *)0)->sec.key), ctype: (tag))
#define AT(sec, key) \
    .section = #sec, .name = #key, .offset = offsetof(Config, sec.key), \
    .size = sizeof(((Config *)0)->sec.key)
#define INT_KEY(sec, key, lo, text) \
    { AT(sec, key), .type = FIELD_IS(sec, key, int, KEY_INT), .min = (lo), .max = NO_LIMIT, .help = (text) }
#define REAL_KEY(sec, key, lo, lo_kind, hi, hi_kind, text) \
    { AT(sec, key), .type = FIELD_IS(sec, key, double, KEY_DOUBLE), .min = (lo), .min_open = (lo_kind), \
      .max = (hi), .max_open = (hi_kind), .help = (text) }
#define BOOL_KEY(sec, key, text) { AT(sec, key), .type = FIELD_IS(sec, key, int, KEY_BOOL), .help = (text) }
#define STR_KEY(sec, key, must_be_set, text) \
    { AT(sec, key), .type = FIELD_IS(sec, key, char *, KEY_STRING), .nonempty = (must_be_set), .help = (text) }
#define FLOW_KEY(sec, key, text) \
    { AT(sec, key), .type = FIELD_IS(sec, key, char *, KEY_STRING), .flow = true, .help = (text) }
#define ENUM_KEY(sec, key, allowed, text) \
    { AT(sec, key), .type = FIELD_IS(sec, key, char *, KEY_ENUM), .choices = (allowed), .help = (text) }

/* Sections are contiguous and in the order they are written out. */
static const KeyInfo KEYS[] = {
    INT_KEY(model, n_layer, 1, "transformer blocks (L)"),
    INT_KEY(model, n_head, 1, "attention heads per block (NH)"),
    INT_KEY(model, n_embd, 1, "width of the residual stream (C)"),
    INT_KEY(model, vocab_size, 1, "vocabulary size (V)"),
    INT_KEY(model, n_positions, 1, "longest sequence the position table covers"),
    REAL_KEY(model, layer_norm_epsilon, 0, OPEN, NO_LIMIT, CLOSED, "layernorm epsilon"),
    STR_KEY(model, init, false, "Hugging Face checkpoint directory to start from (\"\" = random init)"),
    ENUM_KEY(model, arch, "gpt2|llama|mistral|qwen2|qwen3", "model family of a fresh model (SmolLM and TinyLlama are llama); with model.init its config.json decides"),
    INT_KEY(model, n_kv_head, 0, "key/value heads of grouped-query attention; must divide n_head (0 = n_head; llama families)"),
    INT_KEY(model, head_dim, 0, "size of one attention head (0 = n_embd / n_head; llama families)"),
    INT_KEY(model, intermediate_size, 0, "width of the SwiGLU MLP (llama families; GPT-2's MLP is 4 * n_embd: leave 0)"),
    BOOL_KEY(model, tie_word_embeddings, "the output layer shares the token embedding (GPT-2 always)"),
    BOOL_KEY(model, attn_bias, "biases on q, k, v and o_proj (attention_bias of llama and qwen3; qwen2 always has q/k/v biases)"),
    BOOL_KEY(model, mlp_bias, "biases on the MLP projections (llama's mlp_bias)"),
    INT_KEY(model, sliding_window, 0, "attention window of mistral, qwen2 and qwen3 (0 = none); data.seq_len must fit it"),
    REAL_KEY(model, rope_theta, 0, OPEN, NO_LIMIT, CLOSED, "rotary base period (llama families)"),
    ENUM_KEY(model, rope_scaling, "none|linear|llama3|yarn", "rotary scaling type, as transformers' rope_scaling"),
    REAL_KEY(model, rope_factor, 0, OPEN, NO_LIMIT, CLOSED, "rope_scaling factor (linear, llama3, yarn)"),
    REAL_KEY(model, rope_low_freq_factor, 0, OPEN, NO_LIMIT, CLOSED, "llama3 rope_scaling low_freq_factor"),
    REAL_KEY(model, rope_high_freq_factor, 0, OPEN, NO_LIMIT, CLOSED, "llama3 rope_scaling high_freq_factor"),
    INT_KEY(model, rope_original_max_pos, 0, "rope_scaling original_max_position_embeddings (llama3, yarn; 0 = n_positions)"),

    STR_KEY(data, train, false, "training HDF5 file (lm or sft schema)"),
    STR_KEY(data, val, false, "held-out HDF5 file (\"\" = split off the end of train)"),
    REAL_KEY(data, val_fraction, 0, CLOSED, 0.5, CLOSED, "when val is \"\": fraction of train items held out"),
    INT_KEY(data, seq_len, 1, "tokens per sequence (T)"),
    INT_KEY(data, batch_size, 1, "sequences per micro-step (B)"),
    INT_KEY(data, grad_accum, 1, "micro-steps per optimizer step"),
    BOOL_KEY(data, shuffle, "shuffle training items every epoch"),
    BOOL_KEY(data, pack, "pack several examples into each row (first-fit, in the visiting order: sft/kd examples over each global micro-batch, preference pairs whole over each rank's 2 x batch_size rows), attention kept within each example and positions restarting per example; the loss equals the unpacked one, with less padding (not with data.mix, objective.task_weights, kd.on_policy or train.epochs)"),
    ENUM_KEY(data, stream, "auto|true|false", "read the data files on demand instead of loading them (datasets larger than memory): memory stays bounded and the shuffled order is a stateless permutation (so it differs from the in-memory order); auto: stream a file larger than 1 GiB (lm, sft, kd; not dpo/orpo)"),
    STR_KEY(data, role, false, "train only on examples of this role (sft files with a role column; \"\" = all)"),
    FLOW_KEY(data, mix, "several training files drawn with sampling weights instead of data.train, a list [{path: a.h5, weight: 0.7}, {path: b.h5, weight: 0.3}] (lm and kd; the same tokenizer and schema; one epoch = as many examples as the files hold together)"),

    ENUM_KEY(objective, type, "lm|kd|dpo|orpo", "training objective: lm (LM/SFT), kd (word-level distillation), dpo, orpo"),
    FLOW_KEY(objective, task_weights, "per-task loss weights {answer: 0.7, explanation: 0.3} over the data's task column (lm and kd): loss = sum of weight x mean loss of that task's target tokens in the step; every task of the data must be listed (0 skips one)"),

    STR_KEY(kd, teacher, false, "teacher HF checkpoint dir, run frozen beside the student (\"\" = the data's teacher_topk)"),
    REAL_KEY(kd, alpha, 0, CLOSED, 1, CLOSED, "weight of the KD term; (1 - alpha) weights the gold cross-entropy"),
    REAL_KEY(kd, temperature, 0, OPEN, NO_LIMIT, CLOSED, "softmax temperature T of both models (the KD term is scaled by T^2)"),
    REAL_KEY(kd, beta, 0, CLOSED, 1, CLOSED, "0 = forward KL(teacher||student), 1 = reverse KL, between = generalized JSD"),
    REAL_KEY(kd, on_policy, 0, CLOSED, 1, CLOSED, "chance a batch's completions are sampled from the student (GKD lambda)"),

    ENUM_KEY(dpo, loss_type, "sigmoid|robust|hinge|ipo|simpo", "preference loss (names as in TRL)"),
    REAL_KEY(dpo, beta, 0, OPEN, NO_LIMIT, CLOSED, "inverse temperature of the implicit reward"),
    REAL_KEY(dpo, label_smoothing, 0, CLOSED, 1, CLOSED, "conservative DPO / robust noise rate"),
    REAL_KEY(dpo, rpo_alpha, 0, CLOSED, NO_LIMIT, CLOSED, "weight of an NLL term on the chosen completion (RPO)"),
    REAL_KEY(dpo, simpo_gamma, 0, CLOSED, NO_LIMIT, CLOSED, "SimPO target margin"),
    STR_KEY(dpo, reference, false, "\"\" = frozen copy of the initial model; a checkpoint dir; \"precomputed\" = the data's ref_logp"),
    INT_KEY(dpo, max_prompt_len, 0, "prompt tokens kept, from the end (0 = no limit)"),
    INT_KEY(dpo, max_completion_len, 0, "completion tokens kept, from the start (0 = no limit)"),

    REAL_KEY(orpo, beta, 0, OPEN, NO_LIMIT, CLOSED, "weight of the odds-ratio term (lambda of the ORPO paper)"),

    STR_KEY(finetune, freeze, false, "comma-separated parameter name globs to freeze, e.g. \"wte.weight,h.[0-5].*\" (GPT-2) or \"model.embed_tokens.weight,model.layers.[0-5].*\""),
    STR_KEY(finetune, train_only, false, "comma-separated globs: train only these, freeze the rest"),
    INT_KEY(finetune, lora_r, 0, "LoRA rank (0 = off); with LoRA only the adapters train"),
    REAL_KEY(finetune, lora_alpha, 0, OPEN, NO_LIMIT, CLOSED, "LoRA scale numerator: scale = alpha / r"),
    REAL_KEY(finetune, lora_dropout, 0, CLOSED, 1, OPEN, "dropout on the LoRA input"),
    STR_KEY(finetune, lora_targets, false, "comma-separated modules that get adapters: GPT-2 c_attn, c_proj, c_fc, attn.c_proj, mlp.c_proj; Llama families q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj (unset: PEFT's default, c_attn / q_proj,v_proj)"),

    INT_KEY(dist, zero, 0, "sharding over the ranks: 0 none; 1 AdamW state (ZeRO-1); 2 also the gradients, reduce-scattered block by block during backward so a rank holds a gradient shard plus one block's (ZeRO-2; on CUDA through NCCL reduces to each owner, written but not yet run on a GPU); 3 also the parameters, each block's all-gathered before its forward and backward so a rank holds a parameter shard, the global and frozen tensors and one block's (ZeRO-3; on CUDA a bf16 shard beside the fp32 master shard, each block's broadcast from its owners, written but not yet run on a GPU; not with eval.generate_every or kd.on_policy)"),
    BOOL_KEY(dist, zero1, "the older switch for dist.zero 1: true shards the AdamW state when dist.zero is 0"),
    INT_KEY(dist, bucket_mb, 0, "gradient all-reduce bucket size in MiB (dist.overlap: a reduction starts once this much of the backward's finished gradient waits; 0: every block on its own)"),
    BOOL_KEY(dist, overlap, "start each block's gradient reduction as soon as its backward is done, overlapping the blocks below (plain data parallelism and dist.zero 1; the gradients are bitwise those of false, which reduces after the backward pass); dist.zero 2 reduces block by block anyway"),
    REAL_KEY(dist, timeout_s, 0, CLOSED, NO_LIMIT, CLOSED, "seconds a rank waits for the others at a collective before the job is aborted, naming the missing rank (0 = wait forever); longer than the slowest checkpoint save"),

    REAL_KEY(optim, lr, 0, OPEN, NO_LIMIT, CLOSED, "peak learning rate"),
    REAL_KEY(optim, min_lr, 0, CLOSED, NO_LIMIT, CLOSED, "learning rate at the end of the schedule"),
    INT_KEY(optim, warmup_steps, 0, "steps of linear warmup from 0 to lr"),
    REAL_KEY(optim, warmup_ratio, 0, CLOSED, 1, OPEN, "warmup as a fraction of the run's optimizer steps: ceil(ratio * train.steps) warmup steps (after train.epochs sets them), as transformers' warmup_ratio; 0 = use warmup_steps (set one of the two)"),
    ENUM_KEY(optim, warmup_shape, "linear|log", "linear: from 0 to lr in equal steps; log: DeepSpeed's WarmupLR (warmup_type log, its default: lr x log(s-1)/log(warmup), steps 1 and 2 at 0), as a Trainer run under a DeepSpeed config with a scheduler block gets it (alpha-UMi's global stage)"),
    ENUM_KEY(optim, schedule, "cosine|linear|constant", "decay from lr to min_lr after warmup"),
    ENUM_KEY(optim, schedule_convention, "retort|hf", "retort: optimizer step s (from 1) uses the schedule at s, so warmup's first step is lr/warmup_steps; hf: at s - 1, as transformers' get_*_schedule_with_warmup (TRL, Trainer) do, so the first warmup step has lr 0"),
    REAL_KEY(optim, weight_decay, 0, CLOSED, NO_LIMIT, CLOSED, "AdamW decoupled weight decay"),
    REAL_KEY(optim, beta1, 0, CLOSED, 1, OPEN, "AdamW first-moment decay"),
    REAL_KEY(optim, beta2, 0, CLOSED, 1, OPEN, "AdamW second-moment decay"),
    REAL_KEY(optim, eps, 0, OPEN, NO_LIMIT, CLOSED, "AdamW denominator epsilon"),
    REAL_KEY(optim, grad_clip, 0, CLOSED, NO_LIMIT, CLOSED, "global gradient-norm clip (0 = off)"),

    INT_KEY(train, steps, 1, "optimizer steps in total"),
    REAL_KEY(train, epochs, 0, CLOSED, NO_LIMIT, CLOSED, "> 0: passes over the training items; sets steps from the data size"),
    INT_KEY(train, seed, 0, "random seed (init, shuffling, dropout)"),
    ENUM_KEY(train, device, "cpu|cuda", "backend to train on"),
    INT_KEY(train, threads, 0, "CPU threads (0 = all cores)"),
    STR_KEY(train, out_dir, true, "run directory: checkpoints, metrics.jsonl"),
    INT_KEY(train, log_every, 1, "steps between metrics lines"),
    BOOL_KEY(train, tensorboard, "write every metrics.jsonl number to a TensorBoard event file in out_dir too (tensorboard --logdir OUT_DIR)"),
    INT_KEY(train, logits_chunk_rows, 0, "rows per head/classifier chunk (0 = automatic: one chunk unless the logits pass 1 GiB)"),
    STR_KEY(train, memory_limit, false, "the most memory this run may take per rank, e.g. 2GB, 40GiB (\"\" = all the device has: free GPU memory, or the host's MemAvailable on the CPU); a run whose plan (retort plan) needs more is refused at start with the breakdown; useful on a shared machine"),
    ENUM_KEY(train, recompute, "none|attention|block", "activation recomputation: none keeps every block's activations for backward; attention keeps the MLP half (res2, ln2, the MLP's pre- and post-activation) and recomputes the attention half (ln1, q/k/v GEMM, q/k norm, RoPE, attention: everything up to the out-projection's input) in backward; block keeps only each block's input and recomputes the whole block before its backward. Gradients are bitwise those of none on the CPU; block costs about one more forward per step, attention less"),
    INT_KEY(train, skip_nonfinite, 0, "steps with a NaN or infinite loss or gradient that are skipped (no update) before the run stops (0 = stop at the first)"),

    INT_KEY(eval, every, 0, "steps between validation passes (0 = off)"),
    INT_KEY(eval, batches, 1, "batches per validation pass"),
    INT_KEY(eval, generate_every, 0, "steps between generation-based evaluations of the model on eval.generate_input (0 = off); logged as gen/<metric> lines in metrics.jsonl, and at the last step"),
    STR_KEY(eval, generate_input, false, "JSONL of prompts and references for eval.generate_every (as retort eval --input)"),
    STR_KEY(eval, generate_prompt_field, true, "prompt field of eval.generate_input's lines"),
    STR_KEY(eval, generate_reference_field, true, "reference field of eval.generate_input's lines"),
    INT_KEY(eval, generate_max_lines, 0, "score only the first N lines of eval.generate_input (0 = all)"),
    INT_KEY(eval, generate_max_new_tokens, 1, "new tokens per completion at most"),
    REAL_KEY(eval, generate_temperature, 0, CLOSED, NO_LIMIT, CLOSED, "sampling temperature (0 = greedy)"),
    INT_KEY(eval, generate_top_k, 0, "top-k sampling filter (0 = off)"),
    REAL_KEY(eval, generate_top_p, 0, OPEN, 1, CLOSED, "top-p (nucleus) sampling filter (1 = off)"),
    INT_KEY(eval, generate_beams, 0, "beam search with this many beams, the best one scored (0 = sampling or greedy)"),
    STR_KEY(eval, generate_stop, false, "a stop string that ends a completion (\"\" = none)"),
    INT_KEY(eval, generate_seed, 0, "sampling seed of generation-based evaluation (the same at every pass)"),
    BOOL_KEY(eval, generate_chat, "prompts become a user turn of the chat template (model.init's, or eval.generate_chat_template), as retort eval --chat"),
    STR_KEY(eval, generate_chat_template, false, "a chat template file for eval.generate_chat (\"\" = model.init's)"),
    STR_KEY(eval, generate_answer, false, "answer spec for gen/accuracy (whole, regex:RE, last-number, option[:A-J]; see retort eval --answer; \"\" = no accuracy)"),
    STR_KEY(eval, generate_answer_field, false, "field of the gold answer for gen/accuracy (\"\" = the reference field)"),
    STR_KEY(eval, generate_tokenizer, false, "tokenizer of generation-based evaluation (\"\" = model.init's, else the byte tokenizer; a tokenizer.json or directory for a fresh model trained on BPE data)"),
    STR_KEY(eval, best_metric, false, "keep the best checkpoint in out_dir/best by this metric: val_loss, or gen/bleu, gen/chrf, gen/exact_match, gen/rouge_l, gen/token_f1, gen/ppl, gen/accuracy (\"\" = none)"),
    ENUM_KEY(eval, best_mode, "auto|max|min", "whether eval.best_metric is better higher (max) or lower (min); auto: min for val_loss and gen/ppl, max for the rest"),

    INT_KEY(checkpoint, every, 0, "steps between checkpoints (0 = only at the end)"),
    INT_KEY(checkpoint, keep, 0, "complete checkpoints kept (0 = all)"),
};
#define N_KEYS (sizeof KEYS / sizeof KEYS[0])

/* Our own literals only (defaults); outside values go through store_string. */
static void copy_string(char *dst, size_t cap, const char *src) {
    size_t n = strlen(src);
    assert(n < cap);
    memset(dst, 0, cap);
    memcpy(dst, src, n);
}

void config_defaults(Config *c) {
    memset(c, 0, sizeof *c);
    c->model.n_layer = 12;
    c->model.n_head = 12;
    c->model.n_embd = 768;
    c->model.vocab_size = 50257;
    c->model.n_positions = 1024;
    c->model.layer_norm_epsilon = 1e-5;
    copy_string(c->model.arch, sizeof c->model.arch, "gpt2");
    c->model.tie_word_embeddings = 1;
    c->model.rope_theta = 10000.0;
    copy_string(c->model.rope_scaling, sizeof c->model.rope_scaling, "none");
    c->model.rope_factor = 1.0;
    c->model.rope_low_freq_factor = 1.0;
    c->model.rope_high_freq_factor = 4.0;

    c->data.val_fraction = 0.0;
    c->data.seq_len = 1024;
    c->data.batch_size = 4;
    c->data.grad_accum = 1;
    c->data.shuffle = 1;
    copy_string(c->data.stream, sizeof c->data.stream, "auto");

    copy_string(c->objective.type, sizeof c->objective.type, "lm");

    c->kd.alpha = 0.5;
    c->kd.temperature = 1.0;
    copy_string(c->dpo.loss_type, sizeof c->dpo.loss_type, "sigmoid");
    c->dpo.beta = 0.1;
    c->dpo.simpo_gamma = 0.5;
    c->orpo.beta = 0.1;
    c->finetune.lora_alpha = 16;
    c->dist.bucket_mb = 25;
    c->dist.overlap = 1;
    c->dist.timeout_s = 600;

    c->optim.lr = 6e-4;
    c->optim.min_lr = 6e-5;
    c->optim.warmup_steps = 0;
    copy_string(c->optim.schedule, sizeof c->optim.schedule, "cosine");
    copy_string(c->train.recompute, sizeof c->train.recompute, "none");
    copy_string(c->optim.warmup_shape, sizeof c->optim.warmup_shape, "linear");
    copy_string(c->optim.schedule_convention, sizeof c->optim.schedule_convention, "retort");
    c->optim.weight_decay = 0.1;
    c->optim.beta1 = 0.9;
    c->optim.beta2 = 0.95;
    c->optim.eps = 1e-8;
    c->optim.grad_clip = 1.0;

    c->train.steps = 1000;
    c->train.seed = 1337;
    copy_string(c->train.device, sizeof c->train.device, "cpu");
    c->train.threads = 0;
    copy_string(c->train.out_dir, sizeof c->train.out_dir, "runs/default");
    c->train.log_every = 1;
    c->train.tensorboard = 1;

    c->eval.every = 0;
    c->eval.batches = 10;
    copy_string(c->eval.generate_prompt_field, sizeof c->eval.generate_prompt_field, "prompt");
    copy_string(c->eval.generate_reference_field, sizeof c->eval.generate_reference_field, "reference");
    c->eval.generate_max_new_tokens = 64;
    c->eval.generate_top_p = 1.0;
    c->eval.generate_seed = 1337;
    copy_string(c->eval.best_mode, sizeof c->eval.best_mode, "auto");

    c->checkpoint.every = 0;
    c->checkpoint.keep = 3;
}

/* ---- access and lookup ---- */

static int *int_field(Config *c, const KeyInfo *k) { return (int *)((char *)c + k->offset); }
static double *double_field(Config *c, const KeyInfo *k) { return (double *)((char *)c + k->offset); }
static char *string_field(Config *c, const KeyInfo *k) { return (char *)c + k->offset; }
static int int_value(const Config *c, const KeyInfo *k) { return *(const int *)((const char *)c + k->offset); }
static double double_value(const Config *c, const KeyInfo *k) { return *(const double *)((const char *)c + k->offset); }
static const char *string_value(const Config *c, const KeyInfo *k) { return (const char *)c + k->offset; }

static const KeyInfo *find_key(const char *section, const char *name) {
    for (size_t i = 0; i < N_KEYS; i++)
        if (!strcmp(KEYS[i].section, section) && !strcmp(KEYS[i].name, name)) return &KEYS[i];
    return NULL;
}

/* Index of the first key of the section, or -1. */
static int find_section(const char *section) {
    for (size_t i = 0; i < N_KEYS; i++)
        if (!strcmp(KEYS[i].section, section)) return (int)i;
    return -1;
}

static bool starts_section(size_t i) { return i == 0 || strcmp(KEYS[i].section, KEYS[i - 1].section); }

/* ---- "did you mean": edit distance plus two shortcuts people actually hit ---- */

#define NAME_MAX_LEN 128

static size_t levenshtein(const char *a, const char *b) {
    size_t n = strlen(a), m = strlen(b);
    if (n > NAME_MAX_LEN) n = NAME_MAX_LEN;
    if (m > NAME_MAX_LEN) m = NAME_MAX_LEN;
    size_t row[NAME_MAX_LEN + 1];
    for (size_t j = 0; j <= m; j++) row[j] = j;
    for (size_t i = 1; i <= n; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= m; j++) {
            size_t up = row[j];
            size_t cost = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
            size_t best = diag + cost;
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[m];
}

/* "learning_rate" -> "lr": first letter of each underscore- or dash-separated word. */
static void initials(const char *s, char *out, size_t cap) {
    size_t n = 0;
    for (size_t i = 0; s[i] && n + 1 < cap; i++)
        if (isalnum((unsigned char)s[i]) && (i == 0 || s[i - 1] == '_' || s[i - 1] == '-'))
            out[n++] = (char)tolower((unsigned char)s[i]);
    out[n] = '\0';
}

/* Distance between a name someone wrote and a valid name: 0 when equal, 1 when
 * one is the initials of the other (learning_rate / lr) or a prefix of it
 * (optimizer / optim) or its last word (max_steps / steps), else the edit
 * distance. */
static size_t name_distance(const char *typed, const char *valid) {
    if (!strcasecmp(typed, valid)) return 0;
    char a[NAME_MAX_LEN], b[NAME_MAX_LEN];
    initials(typed, a, sizeof a);
    initials(valid, b, sizeof b);
    if ((strlen(a) >= 2 && !strcasecmp(a, valid)) || (strlen(b) >= 2 && !strcasecmp(b, typed))) return 1;
    size_t lt = strlen(typed), lv = strlen(valid);
    if (lt >= 3 && lv >= 3 && !strncasecmp(typed, valid, lt < lv ? lt : lv)) return 1;
    /* max_steps / steps: a valid name that is the last word of the typed one */
    if (lt > lv + 1 && typed[lt - lv - 1] == '_' && !strcasecmp(typed + lt - lv, valid)) return 1;
    return levenshtein(typed, valid);
}

static bool close_enough(size_t distance, const char *typed) {
    size_t limit = strlen(typed) / 3;
    return distance <= (limit > 2 ? limit : 2);
}

/* The key most like section.name: compared by name within the section, by name
 * in other sections (one more for the wrong section), and as the whole
 * "section.key" string. NULL when nothing is close. */
static const KeyInfo *closest_key(const char *section, const char *name) {
    char typed[2 * NAME_MAX_LEN + 2], full[2 * NAME_MAX_LEN + 2];
    snprintf(typed, sizeof typed, "%s.%s", section, name);
    const KeyInfo *best = NULL;
    size_t best_d = (size_t)-1;
    for (size_t i = 0; i < N_KEYS; i++) {
        const KeyInfo *k = &KEYS[i];
        size_t d = name_distance(name, k->name) + (strcmp(section, k->section) != 0);
        snprintf(full, sizeof full, "%s.%s", k->section, k->name);
        size_t d_full = levenshtein(typed, full);
        if (d_full < d) d = d_full;
        if (d < best_d) best_d = d, best = k;
    }
    return best && close_enough(best_d, name) ? best : NULL;
}

static const char *closest_section(const char *section) {
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    for (size_t i = 0; i < N_KEYS; i++) {
        if (!starts_section(i)) continue;
        size_t d = name_distance(section, KEYS[i].section);
        if (d < best_d) best_d = d, best = KEYS[i].section;
    }
    return best && close_enough(best_d, section) ? best : NULL;
}

static void list_sections(char *out, size_t cap) {
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < N_KEYS && n < cap; i++)
        if (starts_section(i)) n += (size_t)snprintf(out + n, cap - n, "%s%s", n ? ", " : "", KEYS[i].section);
}

static void list_keys_of(const char *section, char *out, size_t cap) {
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < N_KEYS && n < cap; i++)
        if (!strcmp(KEYS[i].section, section))
            n += (size_t)snprintf(out + n, cap - n, "%s%s", n ? ", " : "", KEYS[i].name);
}

/* `where` is "file:line", "--set" or "config JSON". */
static int unknown_section(const char *where, const char *section) {
    const char *s = closest_section(section);
    if (s) return err_set("%s: unknown section '%s'; did you mean '%s'?", where, section, s);
    char all[256];
    list_sections(all, sizeof all);
    return err_set("%s: unknown section '%s'; the sections are %s", where, section, all);
}

static int unknown_key(const char *where, const char *section, const char *name) {
    const KeyInfo *k = closest_key(section, name);
    if (k) return err_set("%s: unknown key '%s.%s'; did you mean '%s.%s'?", where, section, name, k->section, k->name);
    if (find_section(section) < 0) return unknown_section(where, section);
    char all[512];
    list_keys_of(section, all, sizeof all);
    return err_set("%s: unknown key '%s.%s'; the keys of %s are %s", where, section, name, section, all);
}

/* ---- checking and storing one value ---- */

static void describe_range(const KeyInfo *k, char *out, size_t cap) {
    if (k->max == NO_LIMIT)
        snprintf(out, cap, "%s %g", k->min_open ? ">" : ">=", k->min);
    else
        snprintf(out, cap, "in %c%g, %g%c", k->min_open ? '(' : '[', k->min, k->max, k->max_open ? ')' : ']');
}

static bool in_range(const KeyInfo *k, double v) {
    bool above = k->min_open ? v > k->min : v >= k->min;
    bool below = k->max_open ? v < k->max : v <= k->max;
    return above && below;
}

static int out_of_range(const char *where, const KeyInfo *k, const char *shown) {
    char range[64];
    describe_range(k, range, sizeof range);
    return err_set("%s: %s.%s = %s is out of range; it must be %s", where, k->section, k->name, shown, range);
}

static int store_int(Config *c, const KeyInfo *k, long long v, const char *where, const char *shown) {
    if (v < INT_MIN || v > INT_MAX)
        return err_set("%s: %s.%s: '%s' does not fit in an int", where, k->section, k->name, shown);
    if (!in_range(k, (double)v)) return out_of_range(where, k, shown);
    *int_field(c, k) = (int)v;
    return 0;
}

static int store_double(Config *c, const KeyInfo *k, double v, const char *where, const char *shown) {
    if (!isfinite(v)) return err_set("%s: %s.%s: '%s' is not a finite number", where, k->section, k->name, shown);
    if (!in_range(k, v)) return out_of_range(where, k, shown);
    *double_field(c, k) = v;
    return 0;
}

static int store_bool(Config *c, const KeyInfo *k, bool v) {
    *int_field(c, k) = v ? 1 : 0;
    return 0;
}

static bool valid_utf8(const char *s, size_t n) {
    uint32_t cp;
    for (size_t i = 0, step; i < n; i += step)
        if (!(step = (size_t)utf8_decode((const unsigned char *)s + i, n - i, &cp))) return false;
    return true;
}

static bool enum_allows(const KeyInfo *k, const char *s, size_t n) {
    for (const char *p = k->choices; *p;) {
        size_t len = strcspn(p, "|");
        if (len == n && !memcmp(p, s, n)) return true;
        p += len + (p[len] == '|');
    }
    return false;
}

/* Strings and enums. `s` has n bytes and need not be terminated. */
static int check_string(const KeyInfo *k, const char *s, size_t n, const char *where) {
    if (memchr(s, '\0', n)) return err_set("%s: %s.%s: the value contains a NUL character", where, k->section, k->name);
    if (!valid_utf8(s, n)) return err_set("%s: %s.%s: the value is not valid UTF-8", where, k->section, k->name);
    if (k->type == KEY_ENUM) {
        if (!enum_allows(k, s, n))
            return err_set("%s: %s.%s: '%.*s' is not one of %s", where, k->section, k->name,
                           (int)(n > 200 ? 200 : n), s, k->choices);
        return 0;
    }
    if (n >= k->size)
        return err_set("%s: %s.%s: the value is too long (%zu bytes; at most %zu)", where, k->section, k->name, n,
                       k->size - 1);
    if (k->nonempty && n == 0) return err_set("%s: %s.%s must not be empty", where, k->section, k->name);
    return 0;
}

static int store_string(Config *c, const KeyInfo *k, const char *s, size_t n, const char *where) {
    if (check_string(k, s, n, where)) return -1;
    char *dst = string_field(c, k);
    memset(dst, 0, k->size);
    memcpy(dst, s, n);
    return 0;
}

static bool parse_bool_text(const char *s, bool *v) {
    static const char *const yes[] = {"true", "yes", "1"}, *const no[] = {"false", "no", "0"};
    for (int i = 0; i < 3; i++) {
        if (!strcasecmp(s, yes[i])) return *v = true, true;
        if (!strcasecmp(s, no[i])) return *v = false, true;
    }
    return false;
}

/* A value written as text (a YAML scalar or the right side of --set). */
static int store_text(Config *c, const KeyInfo *k, const char *s, size_t n, const char *where) {
    if (k->type == KEY_STRING || k->type == KEY_ENUM) return store_string(c, k, s, n, where);
    if (strlen(s) != n) return err_set("%s: %s.%s: the value contains a NUL character", where, k->section, k->name);
    bool starts_blank = !*s || isspace((unsigned char)*s);
    char *end = NULL;
    switch (k->type) {
    case KEY_INT: {
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (starts_blank || *end) return err_set("%s: %s.%s: '%s' is not an integer", where, k->section, k->name, s);
        if (errno == ERANGE) return err_set("%s: %s.%s: '%s' does not fit in an int", where, k->section, k->name, s);
        return store_int(c, k, v, where, s);
    }
    case KEY_DOUBLE: {
        double v = strtod(s, &end);
        if (starts_blank || *end) return err_set("%s: %s.%s: '%s' is not a number", where, k->section, k->name, s);
        return store_double(c, k, v, where, s);
    }
    case KEY_BOOL: {
        bool v;
        if (!parse_bool_text(s, &v))
            return err_set("%s: %s.%s: '%s' is not a boolean (true/false, yes/no, 1/0)", where, k->section, k->name,
                           s);
        return store_bool(c, k, v);
    }
    default:
        assert(0);
        return -1;
    }
}

/* ---- YAML in ---- */

static const char *node_kind(const yaml_node_t *n) {
    switch (n->type) {
    case YAML_SCALAR_NODE: return "a single value";
    case YAML_SEQUENCE_NODE: return "a list";
    case YAML_MAPPING_NODE: return "a mapping";
    default: return "nothing";
    }
}

static size_t node_line(const yaml_node_t *n) { return n->start_mark.line + 1; }

/* A plain (unquoted) empty, ~ or null scalar. */
static bool is_null(const yaml_node_t *n) {
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return false;
    const char *s = (const char *)n->data.scalar.value;
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

static int yaml_syntax_error(const yaml_parser_t *p, const char *path) {
    const char *problem = p->problem ? p->problem : "unknown problem";
    switch (p->error) {
    case YAML_MEMORY_ERROR:
        return err_set("%s: out of memory while reading YAML", path);
    case YAML_READER_ERROR:
        return err_set("%s: byte %zu: cannot read YAML: %s", path, p->problem_offset, problem);
    default:
        if (p->context)
            return err_set("%s:%zu:%zu: YAML syntax error: %s (%s starting at line %zu)", path,
                           p->problem_mark.line + 1, p->problem_mark.column + 1, problem, p->context,
                           p->context_mark.line + 1);
        return err_set("%s:%zu:%zu: YAML syntax error: %s", path, p->problem_mark.line + 1,
                       p->problem_mark.column + 1, problem);
    }
}

static int apply_yaml_section(Config *c, yaml_document_t *doc, const char *section, yaml_node_t *map,
                              size_t *key_line, const char *path) {
    char where[CFG_STR + 32];
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(doc, p->key), *vn = yaml_document_get_node(doc, p->value);
        snprintf(where, sizeof where, "%s:%zu", path, node_line(kn));
        if (kn->type != YAML_SCALAR_NODE)
            return err_set("%s: a key of section '%s' is %s; expected a key name", where, section, node_kind(kn));
        const char *name = (const char *)kn->data.scalar.value;
        const KeyInfo *k = find_key(section, name);
        if (!k) return unknown_key(where, section, name);
        size_t i = (size_t)(k - KEYS);
        if (key_line[i])
            return err_set("%s: %s.%s is set twice (first at line %zu)", where, section, name, key_line[i]);
        key_line[i] = node_line(kn);
        snprintf(where, sizeof where, "%s:%zu", path, node_line(vn));
        if (k->flow && (vn->type == YAML_MAPPING_NODE || vn->type == YAML_SEQUENCE_NODE)) {
            char text[sizeof ((Config *)0)->data.mix];
            if (config_flow_text(doc, vn, text, sizeof text) != 0)
                return err_set("%s: %s.%s: the value is too long (at most %zu bytes as flow text)", where,
                               section, name, k->size - 1);
            if (store_string(c, k, text, strlen(text), where)) return -1;
            continue;
        }
        if (vn->type != YAML_SCALAR_NODE)
            return err_set("%s: %s.%s: expected a single value, found %s", where, section, name, node_kind(vn));
        if (is_null(vn)) {
            if (k->type == KEY_STRING) {
                if (store_string(c, k, "", 0, where)) return -1;
                continue;
            }
            return err_set("%s: %s.%s has no value", where, section, name);
        }
        if (store_text(c, k, (const char *)vn->data.scalar.value, vn->data.scalar.length, where)) return -1;
    }
    return 0;
}

static int apply_yaml(Config *c, yaml_document_t *doc, const char *path) {
    yaml_node_t *root = yaml_document_get_root_node(doc);
    if (!root || is_null(root)) return 0; /* an empty file changes nothing */
    if (root->type != YAML_MAPPING_NODE)
        return err_set("%s:%zu: expected a mapping of sections (model:, data:, optim:, ...), found %s", path,
                       node_line(root), node_kind(root));
    size_t section_line[N_KEYS] = {0}, key_line[N_KEYS] = {0};
    char where[CFG_STR + 32];
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(doc, p->key), *vn = yaml_document_get_node(doc, p->value);
        snprintf(where, sizeof where, "%s:%zu", path, node_line(kn));
        if (kn->type != YAML_SCALAR_NODE)
            return err_set("%s: a section name is %s; expected a name such as model or optim", where,
                           node_kind(kn));
        const char *section = (const char *)kn->data.scalar.value;
        int s = find_section(section);
        if (s < 0) return unknown_section(where, section);
        if (section_line[s])
            return err_set("%s: section '%s' appears twice (first at line %zu); merge them", where, section,
                           section_line[s]);
        section_line[s] = node_line(kn);
        if (is_null(vn)) continue;
        if (vn->type != YAML_MAPPING_NODE)
            return err_set("%s:%zu: section '%s' must be a mapping of keys (key: value, indented), found %s", path,
                           node_line(vn), section, node_kind(vn));
        if (apply_yaml_section(c, doc, section, vn, key_line, path)) return -1;
    }
    return 0;
}

int config_load_yaml(Config *c, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return err_set("%s: cannot open config file: %s", path, strerror(errno));
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        fclose(f);
        return err_set("%s: out of memory while reading YAML", path);
    }
    yaml_parser_set_input_file(&parser, f);
    Config work = *c;
    yaml_document_t doc;
    int rc;
    if (!yaml_parser_load(&parser, &doc)) {
        rc = yaml_syntax_error(&parser, path);
    } else {
        rc = apply_yaml(&work, &doc, path);
        yaml_document_delete(&doc);
        /* A second document would be ignored silently; refuse it instead. */
        if (rc == 0) {
            if (!yaml_parser_load(&parser, &doc)) {
                rc = yaml_syntax_error(&parser, path);
            } else {
                yaml_node_t *extra = yaml_document_get_root_node(&doc);
                if (extra)
                    rc = err_set("%s:%zu: a second YAML document; a config file holds one", path,
                                 doc.start_mark.line + 1);
                yaml_document_delete(&doc);
            }
        }
    }
    yaml_parser_delete(&parser);
    fclose(f);
    if (rc == 0) *c = work;
    return rc;
}

/* ---- --set ---- */

int config_set(Config *c, const char *assignment) {
    const char *eq = strchr(assignment, '=');
    const char *dot = eq ? memchr(assignment, '.', (size_t)(eq - assignment)) : NULL;
    if (!eq || !dot || dot == assignment || dot + 1 == eq)
        return err_set("--set '%s': expected section.key=value (for example optim.lr=3e-4)", assignment);
    char section[NAME_MAX_LEN], name[NAME_MAX_LEN];
    size_t ns = (size_t)(dot - assignment), nk = (size_t)(eq - dot - 1);
    if (ns >= sizeof section || nk >= sizeof name)
        return err_set("--set '%.200s...': the key is too long", assignment);
    memcpy(section, assignment, ns);
    section[ns] = '\0';
    memcpy(name, dot + 1, nk);
    name[nk] = '\0';
    const KeyInfo *k = find_key(section, name);
    if (!k) return unknown_key("--set", section, name);
    return store_text(c, k, eq + 1, strlen(eq + 1), "--set");
}

/* ---- validation ---- */

/* The stored value of one key, checked as if it had just been set. */
static int check_stored(const Config *c, const KeyInfo *k) {
    char shown[64];
    switch (k->type) {
    case KEY_INT:
        snprintf(shown, sizeof shown, "%d", int_value(c, k));
        if (!in_range(k, int_value(c, k))) return out_of_range("config", k, shown);
        return 0;
    case KEY_DOUBLE:
        snprintf(shown, sizeof shown, "%g", double_value(c, k));
        if (!isfinite(double_value(c, k)) || !in_range(k, double_value(c, k)))
            return out_of_range("config", k, shown);
        return 0;
    case KEY_BOOL:
        if (int_value(c, k) != 0 && int_value(c, k) != 1)
            return err_set("config: %s.%s = %d is not a boolean (0 or 1)", k->section, k->name, int_value(c, k));
        return 0;
    case KEY_STRING:
    case KEY_ENUM: {
        const char *s = string_value(c, k);
        size_t n = strnlen(s, k->size);
        if (n == k->size) return err_set("config: %s.%s is not terminated", k->section, k->name);
        return check_string(k, s, n, "config");
    }
    }
    return 0;
}

/* data.pack: lm, kd, dpo and orpo over one file (data/pack.h). */
static int check_pack(const Config *c) {
    if (!c->data.pack) return 0;
    if (!strcmp(c->objective.type, "kd") && c->kd.on_policy > 0)
        return err_set("config: data.pack with kd.on_policy %g: on-policy sampling completes one "
                       "prompt per row, and a packed row holds several; set kd.on_policy 0 or "
                       "data.pack false", c->kd.on_policy);
    if (c->data.mix[0])
        return err_set("config: data.pack with data.mix is not implemented; pack one file (data.train) "
                       "or set data.pack false");
    if (c->objective.task_weights[0])
        return err_set("config: data.pack with objective.task_weights is not implemented (a packed row "
                       "holds examples of several tasks); set data.pack false");
    if (c->train.epochs > 0)
        return err_set("config: data.pack with train.epochs: how many examples a step takes depends on "
                       "their lengths, so epochs do not give a step count; set train.steps instead");
    return 0;
}

/* objective.task_weights and data.mix: readable, and used where they work. */
static int check_task_weights_and_mix(const Config *c) {
    TaskWeights tw;
    DataMix mix;
    if (config_task_weights(c, &tw) != 0 || config_data_mix(c, &mix) != 0) return -1;
    int seq = !strcmp(c->objective.type, "lm") || !strcmp(c->objective.type, "kd");
    if (tw.n && !seq)
        return err_set("config: objective.task_weights works with objective.type lm and kd, not %s",
                       c->objective.type);
    if (!mix.n) return 0;
    if (!seq) return err_set("config: data.mix works with objective.type lm and kd, not %s", c->objective.type);
    if (c->data.train[0])
        return err_set("config: set data.train or data.mix, not both (data.mix lists every training file)");
    if (c->data.role[0])
        return err_set("config: data.role with data.mix: build the role's examples into the mixed files");
    return 0;
}

int config_dist_zero(const Config *c) {
    return c->dist.zero == 0 && c->dist.zero1 ? 1 : c->dist.zero;
}

int config_validate(const Config *c) {
    for (size_t i = 0; i < N_KEYS; i++)
        if (check_stored(c, &KEYS[i])) return -1;
    if (c->model.head_dim == 0 && c->model.n_embd % c->model.n_head != 0)
        return err_set("config: model.n_embd (%d) must be divisible by model.n_head (%d)", c->model.n_embd,
                       c->model.n_head);
    GPTConfig model;
    if (config_model(c, &model) != 0) return -1;
    if (c->model.sliding_window > 0 && c->data.seq_len > c->model.sliding_window)
        return err_set("config: data.seq_len (%d) exceeds model.sliding_window (%d); retort's attention equals "
                       "the windowed one only within the window: lower seq_len",
                       c->data.seq_len, c->model.sliding_window);
    size_t limit;
    if (c->train.memory_limit[0] && plan_parse_bytes(c->train.memory_limit, &limit) != 0) {
        char why[512];
        snprintf(why, sizeof why, "%s", err_msg());
        return err_set("config: train.memory_limit: %s", why);
    }
    if (c->dist.zero < 0 || c->dist.zero > 3)
        return err_set("config: dist.zero %d: choose 0 (none), 1 (optimizer state), 2 (also the gradients) "
                       "or 3 (also the parameters)", c->dist.zero);
    if (c->dist.zero == 3 && c->eval.generate_every > 0)
        return err_set("config: eval.generate_every (%d) with dist.zero 3: generation runs on rank 0 alone, "
                       "and ZeRO-3's parameters are gathered by every rank together; set eval.generate_every "
                       "0 (and evaluate the saved checkpoints with retort eval) or use dist.zero 2",
                       c->eval.generate_every);
    if (c->dist.zero == 3 && !strcmp(c->objective.type, "kd") && c->kd.on_policy > 0)
        return err_set("config: kd.on_policy %g with dist.zero 3: each rank samples its own completions, "
                       "of lengths that differ between ranks, and ZeRO-3 gathers every block's parameters "
                       "with every rank for each token; set kd.on_policy 0 or use dist.zero 2",
                       c->kd.on_policy);
    if (c->optim.min_lr > c->optim.lr)
        return err_set("config: optim.min_lr (%g) must not exceed optim.lr (%g)", c->optim.min_lr, c->optim.lr);
    if (!c->data.train[0] && !c->data.mix[0])
        return err_set("config: no training data; set data.train in the config or with --set data.train=FILE");
    if (check_task_weights_and_mix(c) != 0 || check_pack(c) != 0) return -1;
    if (c->data.seq_len > c->model.n_positions)
        return err_set("config: data.seq_len (%d) exceeds model.n_positions (%d); lower seq_len or raise n_positions",
                       c->data.seq_len, c->model.n_positions);
    if (c->finetune.lora_r > 0 && (c->finetune.freeze[0] || c->finetune.train_only[0]))
        return err_set("config: finetune.lora_r freezes the whole base model; leave finetune.freeze and "
                       "finetune.train_only empty with LoRA");
    if (c->finetune.freeze[0] && c->finetune.train_only[0])
        return err_set("config: set finetune.freeze or finetune.train_only, not both");
    if (c->optim.warmup_steps > 0 && c->optim.warmup_ratio > 0)
        return err_set("config: optim.warmup_steps (%d) and optim.warmup_ratio (%g) are both set; they are "
                       "two ways to say the same thing: set one of them and the other to 0",
                       c->optim.warmup_steps, c->optim.warmup_ratio);
    if (c->eval.generate_every > 0 && !c->eval.generate_input[0])
        return err_set("config: eval.generate_every is %d but eval.generate_input is empty; give the JSONL of "
                       "prompts and references to generate from", c->eval.generate_every);
    if (c->eval.best_metric[0] && strcmp(c->eval.best_metric, "val_loss") != 0 &&
        strncmp(c->eval.best_metric, "gen/", 4) != 0)
        return err_set("config: eval.best_metric '%s' is neither val_loss nor a gen/<metric> of "
                       "eval.generate_every (gen/bleu, gen/chrf, gen/exact_match, gen/rouge_l, gen/token_f1, "
                       "gen/ppl, gen/accuracy)", c->eval.best_metric);
    if (!strcmp(c->eval.best_metric, "val_loss") && c->eval.every == 0)
        return err_set("config: eval.best_metric val_loss is measured every eval.every steps, and eval.every "
                       "is 0; set it (and validation data: data.val or data.val_fraction)");
    if (!strncmp(c->eval.best_metric, "gen/", 4) && c->eval.generate_every == 0)
        return err_set("config: eval.best_metric %s is measured every eval.generate_every steps, and "
                       "eval.generate_every is 0; set it and eval.generate_input", c->eval.best_metric);
    if (c->optim.warmup_steps > c->train.steps && c->train.epochs <= 0)
        return err_set("config: optim.warmup_steps (%d) exceeds train.steps (%d)", c->optim.warmup_steps,
                       c->train.steps);
    return objective_check_config(c); /* the objective's own section (kd, dpo, ...) */
}

/* ---- the model section as a GPTConfig ---- */

int config_model(const Config *c, GPTConfig *g) {
    memset(g, 0, sizeof *g);
    g->n_layer = c->model.n_layer;
    g->n_head = c->model.n_head;
    g->n_embd = c->model.n_embd;
    g->vocab_size = c->model.vocab_size;
    g->n_positions = c->model.n_positions;
    g->layer_norm_epsilon = (float)c->model.layer_norm_epsilon;
    int arch = gpt_arch_from_name(c->model.arch);
    if (arch < 0) return err_set("config: model.arch '%s' is not one of gpt2, llama, mistral, qwen2, qwen3", c->model.arch);
    g->arch = arch;
    const char *name = c->model.arch;
    /* options a family does not have: refused, so none is ignored */
    const char *wrong = NULL;
    if (arch == ARCH_GPT2) {
        wrong = c->model.n_kv_head && c->model.n_kv_head != c->model.n_head ? "model.n_kv_head"
                : c->model.head_dim && c->model.head_dim * c->model.n_head != c->model.n_embd ? "model.head_dim"
                : c->model.intermediate_size && c->model.intermediate_size != 4 * c->model.n_embd
                    ? "model.intermediate_size"
                : !c->model.tie_word_embeddings ? "model.tie_word_embeddings"
                : c->model.attn_bias ? "model.attn_bias"
                : c->model.mlp_bias ? "model.mlp_bias"
                : c->model.sliding_window ? "model.sliding_window"
                : strcmp(c->model.rope_scaling, "none") ? "model.rope_scaling"
                : c->model.rope_theta != 10000.0 ? "model.rope_theta"
                                                  : NULL;
        if (wrong)
            return err_set("config: %s is an option of the llama families (model.arch llama, mistral, qwen2, "
                           "qwen3); GPT-2 has none: leave it at its default", wrong);
        return 0;
    }
    if (c->model.intermediate_size == 0)
        return err_set("config: model.intermediate_size must be set for a %s model (the SwiGLU MLP width; "
                       "SmolLM2-135M: 1536)", name);
    g->n_kv_head = c->model.n_kv_head;
    g->head_dim = c->model.head_dim;
    g->intermediate_size = c->model.intermediate_size;
    g->untied_head = !c->model.tie_word_embeddings;
    g->rope_theta = c->model.rope_theta;
    if (c->model.attn_bias && arch != ARCH_LLAMA && arch != ARCH_QWEN3)
        return err_set("config: model.attn_bias: %s", arch == ARCH_QWEN2
                                                          ? "qwen2 always has q/k/v biases and none on o_proj; "
                                                            "leave it false"
                                                          : "mistral has no attention biases");
    g->attn_bias = arch == ARCH_QWEN2 ? 1 : c->model.attn_bias;
    g->attn_out_bias = arch == ARCH_QWEN2 ? 0 : c->model.attn_bias;
    g->qk_norm = arch == ARCH_QWEN3;
    if (c->model.mlp_bias && arch != ARCH_LLAMA)
        return err_set("config: model.mlp_bias is llama's option; %s has no MLP biases", name);
    g->mlp_bias = c->model.mlp_bias;
    if (c->model.sliding_window && arch == ARCH_LLAMA)
        return err_set("config: model.sliding_window: llama has no sliding window (mistral, qwen2 and qwen3 do)");
    g->sliding_window = c->model.sliding_window;
    static const char *const scalings[] = {"none", "linear", "llama3", "yarn"};
    for (int t = 0; t < 4; t++)
        if (!strcmp(c->model.rope_scaling, scalings[t])) g->rope_type = t; /* RopeType order */
    if (g->rope_type != ROPE_DEFAULT) g->rope_factor = c->model.rope_factor;
    if (g->rope_type == ROPE_LLAMA3) {
        g->rope_low_freq_factor = c->model.rope_low_freq_factor;
        g->rope_high_freq_factor = c->model.rope_high_freq_factor;
    }
    if (g->rope_type == ROPE_LLAMA3 || g->rope_type == ROPE_YARN)
        g->rope_original_max_pos = c->model.rope_original_max_pos ? c->model.rope_original_max_pos
                                                                  : c->model.n_positions;
    if (gpt_config_check(g) != 0 || hf_config_expressible(g) != 0) {
        char why[512];
        snprintf(why, sizeof why, "%s", err_msg());
        return err_set("config: model: %s", why);
    }
    return 0;
}

/* ---- text out ---- */

typedef struct {
    char *p;
    size_t len, cap;
} Text;

static void text_add(Text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_add(Text *t, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->p ? t->p + t->len : NULL, t->cap - t->len, fmt, ap);
        va_end(ap);
        assert(n >= 0);
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        t->cap = 2 * (t->cap + (size_t)n) + 64;
        t->p = xrealloc(t->p, t->cap);
    }
}

/* Shortest of %.15g..%.17g that reads back as the same double. */
static void format_double(double v, char *out, size_t cap) {
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, cap, "%.*g", prec, v);
        if (strtod(out, NULL) == v) return;
    }
}

/* A YAML double-quoted scalar. Line breaks (which YAML folds inside quotes) and
 * characters outside YAML's printable set are escaped. */
static void add_yaml_quoted(Text *t, const char *s) {
    text_add(t, "\"");
    size_t n = strlen(s);
    for (size_t i = 0, step; i < n; i += step) {
        uint32_t cp;
        step = (size_t)utf8_decode((const unsigned char *)s + i, n - i, &cp);
        if (!step) { /* stored strings are valid UTF-8; this only guards a hand-filled struct */
            text_add(t, "\\x%02X", (unsigned char)s[i]);
            step = 1;
            continue;
        }
        if (cp == '"' || cp == '\\') text_add(t, "\\%c", (char)cp);
        else if (cp == '\n') text_add(t, "\\n");
        else if (cp == '\t') text_add(t, "\\t");
        else if (cp == '\r') text_add(t, "\\r");
        else if (cp < 0x20 || (cp >= 0x7F && cp < 0xA0) || cp == 0x2028 || cp == 0x2029 || cp == 0xFFFE ||
                 cp == 0xFFFF)
            text_add(t, "\\u%04X", cp);
        else text_add(t, "%.*s", (int)step, s + i);
    }
    text_add(t, "\"");
}

char *config_to_yaml(const Config *c) {
    Text t = {0};
    char num[64];
    for (size_t i = 0; i < N_KEYS; i++) {
        const KeyInfo *k = &KEYS[i];
        if (starts_section(i)) text_add(&t, "%s%s:\n", i ? "\n" : "", k->section);
        text_add(&t, "  %s: ", k->name);
        switch (k->type) {
        case KEY_INT: text_add(&t, "%d", int_value(c, k)); break;
        case KEY_DOUBLE:
            format_double(double_value(c, k), num, sizeof num);
            text_add(&t, "%s", num);
            break;
        case KEY_BOOL: text_add(&t, "%s", int_value(c, k) ? "true" : "false"); break;
        case KEY_STRING:
        case KEY_ENUM: add_yaml_quoted(&t, string_value(c, k)); break;
        }
        text_add(&t, "\n");
    }
    return t.p;
}

/* ---- JSON ---- */

char *config_to_json(const Config *c) {
    json_t *root = json_object(), *section = NULL;
    for (size_t i = 0; i < N_KEYS; i++) {
        const KeyInfo *k = &KEYS[i];
        if (starts_section(i)) {
            section = json_object();
            json_object_set_new(root, k->section, section);
        }
        json_t *v = NULL;
        switch (k->type) {
        case KEY_INT: v = json_integer(int_value(c, k)); break;
        case KEY_DOUBLE: v = json_real(double_value(c, k)); break; /* NULL for inf/nan */
        case KEY_BOOL: v = json_boolean(int_value(c, k)); break;
        case KEY_STRING:
        case KEY_ENUM: v = json_string(string_value(c, k)); break; /* NULL for invalid UTF-8 */
        }
        json_object_set_new(section, k->name, v ? v : json_null());
    }
    char *dumped = json_dumps(root, JSON_INDENT(2));
    json_decref(root);
    if (!dumped) {
        fprintf(stderr, "retort: out of memory writing the config as JSON\n");
        exit(1);
    }
    char *out = xstrdup(dumped); /* ours to free() whatever allocator jansson uses */
    free(dumped);
    return out;
}

static const char *json_kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

static int store_json(Config *c, const KeyInfo *k, const json_t *v, const char *where) {
    char shown[64];
    switch (k->type) {
    case KEY_INT:
        if (!json_is_integer(v))
            return err_set("%s: %s.%s: expected an integer, found %s", where, k->section, k->name, json_kind(v));
        snprintf(shown, sizeof shown, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return store_int(c, k, json_integer_value(v), where, shown);
    case KEY_DOUBLE:
        if (!json_is_number(v))
            return err_set("%s: %s.%s: expected a number, found %s", where, k->section, k->name, json_kind(v));
        snprintf(shown, sizeof shown, "%g", json_number_value(v));
        return store_double(c, k, json_number_value(v), where, shown);
    case KEY_BOOL:
        if (!json_is_boolean(v))
            return err_set("%s: %s.%s: expected true or false, found %s", where, k->section, k->name, json_kind(v));
        return store_bool(c, k, json_is_true(v));
    case KEY_STRING:
    case KEY_ENUM:
        if (!json_is_string(v))
            return err_set("%s: %s.%s: expected a string, found %s", where, k->section, k->name, json_kind(v));
        return store_string(c, k, json_string_value(v), json_string_length(v), where);
    }
    return 0;
}

static int apply_json(Config *c, json_t *root) {
    const char *where = "config JSON";
    if (!json_is_object(root)) return err_set("%s: expected an object of sections, found %s", where, json_kind(root));
    const char *section, *name;
    json_t *keys, *v;
    json_object_foreach(root, section, keys) {
        if (find_section(section) < 0) return unknown_section(where, section);
        if (!json_is_object(keys))
            return err_set("%s: section '%s' must be an object, found %s", where, section, json_kind(keys));
        json_object_foreach(keys, name, v) {
            const KeyInfo *k = find_key(section, name);
            if (!k) return unknown_key(where, section, name);
            if (store_json(c, k, v, where)) return -1;
        }
    }
    return 0;
}

int config_from_json(Config *c, const char *json) {
    json_error_t e;
    json_t *root = json_loads(json, JSON_REJECT_DUPLICATES, &e);
    if (!root) return err_set("config JSON: line %d column %d: %s", e.line, e.column, e.text);
    Config work = *c;
    int rc = apply_json(&work, root);
    json_decref(root);
    if (rc == 0) *c = work;
    return rc;
}

/* ---- help ---- */

void config_print_keys(void *stream) {
    FILE *f = stream;
    Config d;
    config_defaults(&d);
    int width = 0;
    for (size_t i = 0; i < N_KEYS; i++) {
        int w = (int)(strlen(KEYS[i].section) + 1 + strlen(KEYS[i].name));
        if (w > width) width = w;
    }
    for (size_t i = 0; i < N_KEYS; i++) {
        const KeyInfo *k = &KEYS[i];
        char full[2 * NAME_MAX_LEN], value[CFG_STR + 8], range[64] = "";
        snprintf(full, sizeof full, "%s.%s", k->section, k->name);
        const char *type = "";
        switch (k->type) {
        case KEY_INT:
            type = "int";
            snprintf(value, sizeof value, "%d", int_value(&d, k));
            break;
        case KEY_DOUBLE:
            type = "double";
            format_double(double_value(&d, k), value, sizeof value);
            break;
        case KEY_BOOL:
            type = "bool";
            snprintf(value, sizeof value, "%s", int_value(&d, k) ? "true" : "false");
            break;
        case KEY_STRING:
            type = "string";
            snprintf(value, sizeof value, "\"%s\"", string_value(&d, k));
            break;
        case KEY_ENUM:
            type = k->choices;
            snprintf(value, sizeof value, "%s", string_value(&d, k));
            break;
        }
        if (k->type == KEY_INT || k->type == KEY_DOUBLE) {
            range[0] = ';';
            range[1] = ' ';
            describe_range(k, range + 2, sizeof range - 2);
        }
        fprintf(f, "  %-*s  (%s, default %s)  %s%s\n", width, full, type, value, k->help, range);
    }
}
