/* train/config.h — the run configuration: one struct, one table that describes
 * every key (section, name, type, range, help), YAML in, YAML/JSON out.
 *
 * Keys are addressed as "section.key" (e.g. optim.lr). Unknown keys are
 * rejected with the closest valid key suggested; values are type- and
 * range-checked; cross-field rules (n_embd % n_head == 0, ...) are checked by
 * config_validate.
 */
#ifndef RETORT_CONFIG_H
#define RETORT_CONFIG_H

#include <stddef.h>

#include "model/model.h"

#define CFG_STR 1024

typedef struct {
    struct {
        int n_layer, n_head, n_embd, vocab_size, n_positions;
        double layer_norm_epsilon;   /* layernorm eps (GPT-2) or rms_norm_eps (Llama families) */
        char init[CFG_STR];          /* HF checkpoint dir to start from ("" = random init) */
        /* a fresh model's family and its options (model/model.h GPTConfig;
         * with init, config.json decides them) */
        char arch[16];               /* gpt2 | llama | mistral | qwen2 | qwen3 */
        int n_kv_head;               /* key/value heads; 0 = n_head */
        int head_dim;                /* 0 = n_embd / n_head */
        int intermediate_size;       /* SwiGLU MLP width (Llama families) */
        int tie_word_embeddings;     /* bool: the head shares the embedding */
        int attn_bias;               /* bool: attention_bias (llama, qwen3) */
        int mlp_bias;                /* bool: mlp_bias (llama) */
        int sliding_window;          /* mistral, qwen2, qwen3; 0 = none */
        double rope_theta;
        char rope_scaling[16];       /* none | linear | llama3 | yarn */
        double rope_factor;
        double rope_low_freq_factor, rope_high_freq_factor; /* llama3 */
        int rope_original_max_pos;   /* llama3, yarn; 0 = n_positions */
    } model;
    struct {
        char train[CFG_STR];         /* HDF5 file (lm or sft schema) */
        char val[CFG_STR];           /* held-out HDF5 file ("" = split from train) */
        double val_fraction;         /* when val is "": last fraction of train items */
        int seq_len;                 /* T */
        int batch_size;              /* B per micro-step */
        int grad_accum;              /* micro-steps per optimizer step */
        int shuffle;                 /* bool */
        int pack;                    /* bool: sft examples packed into rows (data/pack.h) */
        char role[64];               /* train on examples of this role only ("" = all) */
        char stream[8];              /* auto | true | false: read files on demand
                                        (data/h5data.h, dataset_open_stream) */
        char mix[8 * CFG_STR];       /* several training files with sampling weights, as YAML
                                        flow text "[{path: a.h5, weight: 0.7}, ...]" ("" = none;
                                        config_data_mix reads it) */
    } data;
    struct {
        char type[32];               /* lm | kd | dpo | orpo (train/objectives/registry.c) */
        char task_weights[CFG_STR];  /* per-task loss weights, as YAML flow text
                                        "{answer: 0.7, explanation: 0.3}" ("" = none;
                                        config_task_weights reads it) */
    } objective;
    struct {                         /* word-level KD (objective kd) */
        char teacher[CFG_STR];       /* HF dir of a frozen teacher ("" = the data's teacher_topk) */
        double alpha;                /* weight of the KD term; 1 - alpha on the gold CE */
        double temperature;          /* T: both distributions are softened by T */
        double beta;                 /* 0 forward KL, 1 reverse KL, between: generalized JSD */
        double on_policy;            /* GKD lambda: chance a batch's targets come from the student */
    } kd;
    struct {                         /* preference tuning (objective dpo) */
        char loss_type[16];          /* sigmoid | robust | hinge | ipo | simpo */
        double beta;
        double label_smoothing;
        double rpo_alpha;
        double simpo_gamma;
        char reference[CFG_STR];     /* "" = the initial model; a checkpoint dir; "precomputed" */
        int max_prompt_len;          /* 0 = no limit */
        int max_completion_len;      /* 0 = no limit */
    } dpo;
    struct {                         /* odds-ratio preference optimization (objective orpo) */
        double beta;                 /* weight of the odds-ratio term (TRL's default 0.1) */
    } orpo;
    struct {                         /* partial fine-tuning */
        char freeze[CFG_STR];        /* comma-separated HF name globs to freeze */
        char train_only[CFG_STR];    /* comma-separated globs: freeze everything else */
        int lora_r;                  /* 0 = no LoRA */
        double lora_alpha;
        double lora_dropout;
        char lora_targets[CFG_STR];  /* comma-separated module names (c_attn, c_proj, c_fc, ...) */
    } finetune;
    struct {                         /* data parallel */
        int zero;                    /* sharding: 0 none, 1 optimizer state, 2 + gradients */
        int zero1;                   /* the older switch: true is zero 1 (config_dist_zero) */
        int bucket_mb;               /* gradient all-reduce bucket size */
        int overlap;                 /* reduce each block's gradient during backward (grad_overlap.h) */
        double timeout_s;            /* longest wait at a collective; 0 = forever (train/dist.h) */
    } dist;
    struct {
        double lr, min_lr;           /* peak and floor */
        int warmup_steps;
        double warmup_ratio;         /* > 0: warmup_steps = ceil(ratio * total steps), as
                                        transformers' get_warmup_steps (exclusive with it) */
        char warmup_shape[8];        /* linear | log (DeepSpeed's WarmupLR, train/optim.h) */
        char schedule[16];           /* cosine | linear | constant */
        char schedule_convention[16]; /* retort | hf: which step's rate a step uses (optim.h) */
        double weight_decay, beta1, beta2, eps;
        double grad_clip;            /* global-norm clip; 0 = off */
    } optim;
    struct {
        int steps;                   /* optimizer steps in total */
        double epochs;               /* > 0: steps = ceil(epochs * items / (batch * accum)) */
        int seed;
        char device[16];             /* cpu | cuda */
        int threads;                 /* 0 = all cores */
        char out_dir[CFG_STR];       /* run directory: checkpoints, metrics.jsonl */
        int log_every;
        int tensorboard;             /* TensorBoard event file beside metrics.jsonl (train/tb.h) */
        int logits_chunk_rows;       /* 0 = automatic (model.h, chunked classifier) */
        char recompute[16];          /* none | attention | block (model.h, activation
                                        recomputation) */
        int skip_nonfinite;          /* steps with a NaN/inf loss or gradient skipped before
                                        the run stops (0 = stop at the first) */
        char memory_limit[32];       /* "" = the device's; else a size, "2GB" (train/plan.h) */
    } train;
    struct {
        int every;                   /* steps between validation passes; 0 = off */
        int batches;                 /* batches per validation pass */
        /* generation-based evaluation of the live model (cli/cmd_train.c lends
         * the trainer eval/evaluate.c through TrainOptions.gen_eval) */
        int generate_every;          /* steps between passes; 0 = off */
        char generate_input[CFG_STR]; /* JSONL of prompts and references */
        char generate_prompt_field[64], generate_reference_field[64];
        int generate_max_lines;      /* score the first N lines; 0 = all */
        int generate_max_new_tokens;
        double generate_temperature; /* 0 = greedy */
        int generate_top_k;          /* 0 = off */
        double generate_top_p;
        int generate_beams;          /* 0 = sample or greedy */
        char generate_stop[256];     /* one stop string; "" = none */
        int generate_seed;
        int generate_chat;           /* bool: prompts through model.init's chat template */
        char generate_chat_template[CFG_STR]; /* another template ("" = model.init's) */
        char generate_answer[CFG_STR];        /* answer spec for gen/accuracy (eval/answer.h) */
        char generate_answer_field[64];       /* gold answer field ("" = reference field) */
        char generate_tokenizer[CFG_STR];     /* "" = model.init's, or bytes */
        char best_metric[64];        /* "" = no best checkpoint; val_loss or gen/<metric> */
        char best_mode[8];           /* auto | max | min */
    } eval;
    struct {
        int every;                   /* steps between checkpoints; 0 = only at the end */
        int keep;                    /* complete checkpoints kept; 0 = all */
    } checkpoint;
} Config;

void config_defaults(Config *c);
/* Loads a YAML mapping of sections over the current values. -1 with error set
 * (file, line, key, and the suggestion) on failure. */
int config_load_yaml(Config *c, const char *path);
/* Applies one "section.key=value" override. -1 with error set on failure. */
int config_set(Config *c, const char *assignment);
/* Cross-field and range checks, then the objective's checks of its own section
 * (objective_check_config, train/objectives/objective.h). -1 with error set
 * on failure. */
int config_validate(const Config *c);
/* The ZeRO stage a run asks for: dist.zero, or 1 when only the older
 * dist.zero1 is set (configs and checkpoints written before dist.zero). */
int config_dist_zero(const Config *c);
/* The model section as the GPTConfig of a fresh model (model.init unset):
 * the family's fixed options filled in (qwen2's q/k/v biases, qwen3's q/k
 * norms), options the family does not have refused naming the key. -1 with
 * error set on failure. */
int config_model(const Config *c, GPTConfig *out);
/* Newly allocated YAML / JSON text of every key (the resolved config). */
char *config_to_yaml(const Config *c);
char *config_to_json(const Config *c);
/* Loads the JSON written by config_to_json (checkpoint resume). */
int config_from_json(Config *c, const char *json);
/* Prints every key with its type, default and help (for --help). */
void config_print_keys(void *stream);

/* ---- the two structured values (train/config_flow.c) ----
 * objective.task_weights and data.mix are a YAML mapping and a YAML list in a
 * config file; they are stored as the canonical YAML flow text of that value
 * (so --set takes the same text, and a resolved config round-trips through
 * YAML and JSON as one string), and read into these structs here. */
#define CFG_MAX_TASKS 12   /* task_weights entries (their losses are metrics) */
#define CFG_TASK_NAME 64
#define CFG_MAX_MIX 8      /* data.mix sources */

typedef struct {
    int n;                             /* 0: objective.task_weights is unset */
    char name[CFG_MAX_TASKS][CFG_TASK_NAME];
    double weight[CFG_MAX_TASKS];      /* finite, >= 0, at least one > 0 */
} TaskWeights;

typedef struct {
    int n;                             /* 0: data.mix is unset */
    char path[CFG_MAX_MIX][CFG_STR];
    double weight[CFG_MAX_MIX];        /* finite, > 0 (normalised by the loader) */
} DataMix;

/* objective.task_weights read and checked: a mapping of task name -> weight.
 * -1 with the error set (naming the key, the entry and the fix). */
int config_task_weights(const Config *c, TaskWeights *out);
/* data.mix read and checked: a list of {path, weight}. -1 with the error set. */
int config_data_mix(const Config *c, DataMix *out);

#endif
