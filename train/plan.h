/* train/plan.h — what a training run needs per rank, before it allocates
 * anything: memory for parameters, gradients, optimizer state and
 * activations under each sharding and recomputation choice, the largest
 * micro-batch that fits a budget, and the FLOPs of a step.
 *
 * Everything here is a pure function of the run config and the model's
 * shapes (model.init's config.json is read once, by plan_model_init), so
 * `retort plan` prints it for a 13B model on a laptop, the trainer checks a
 * run against its device before the big allocations (train/trainer.c), and
 * tests compare it with what the CPU backend really allocates
 * (backend_cpu_bytes_live, model/backend.h).
 *
 * What is exact and what is a model of the memory:
 *   exact (tested against the CPU allocator, byte for byte): no sharding,
 *     ZeRO-1, ZeRO-2 and ZeRO-3 on the CPU (ZeRO-2's gradients: this rank's
 *     shard, the global tensors' gradients and one window of the largest
 *     block's, model/model_grad_units.c; ZeRO-3's parameters: the fp32 shard
 *     of the trainable layout, the resident global and frozen tensors, one
 *     window of the largest block's trainable tensors; the run's steady
 *     state: the start holds the whole model before it is sharded), under every train.recompute mode (none,
 *     attention, block): the flat parameter buffer (every tensor 16-element aligned, the
 *     vocabulary padded), the fp32 gradient buffer and AdamW's m and v over
 *     the trainable tensors (frozen tensors and LoRA's base have none), the
 *     activations as model/model.c lays them out (gpt_activation_bytes: the
 *     per-block buffers the mode keeps, one block's shared scratch for the
 *     rest, the logits one chunk of train.logits_chunk_rows rows), the rotary
 *     tables and LoRA's buffers (per adapter, or once per module where the
 *     mode reruns its GEMM, as model/model_lora.c shares them);
 *   the same formula with the CUDA dtypes (parameters and activations bf16;
 *     gradients, master weights and moments fp32; side buffers fp32): what
 *     model/backend_cuda.cu allocates, not run here;
 *   a model (no code runs it yet, or not here): ZeRO-1 on CUDA (m, v and
 *     master sharded; written, never run on a GPU), ZeRO-2 and ZeRO-3 on CUDA
 *     (refused today: their lines are the CPU's formula with CUDA's dtypes).
 *     CUDA's runtime (context, cuBLAS workspace) is a stated allowance,
 *     PLAN_CUDA_RUNTIME.
 *   a second, frozen model (a DPO reference, an online KD teacher and its
 *     side buffers; both tested against the allocator over whole runs): its
 *     parameters and its forward's activations in block mode, which
 *     objective_load_frozen sets for a model that never runs backward
 *     (whatever the run's train.recompute), never gradients.
 *   not counted: the data in host memory (estimated apart: plan_data below),
 *     offline KD's top-K buffers (K is the data's), generation's key/value
 *     cache (eval.generate_every, on-policy KD), the kernels' small per-op
 *     scratch.
 */
#ifndef RETORT_PLAN_H
#define RETORT_PLAN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "model/model.h"
#include "train/config.h"

typedef enum { PLAN_SHARD_NONE = 0, PLAN_ZERO1, PLAN_ZERO2, PLAN_ZERO3, PLAN_SHARD_COUNT } PlanShard;
typedef enum {
    PLAN_RECOMPUTE_NONE = 0,
    PLAN_RECOMPUTE_ATTENTION,
    PLAN_RECOMPUTE_BLOCK,
    PLAN_RECOMPUTE_COUNT
} PlanRecompute;

/* "none", "zero1", "zero2", "zero3" / "none", "attention", "block" */
const char *plan_shard_name(int shard);
const char *plan_recompute_name(int recompute);
/* -1 with the error set for an unknown name */
int plan_recompute_from_name(const char *name, int *out);

/* The allowance for CUDA's own memory on a GPU (context, cuBLAS workspace,
 * allocator slack): an assumption, not a measurement. */
#define PLAN_CUDA_RUNTIME ((size_t)1 << 30)

typedef struct {
    char name[GPT_PARAM_NAME_LEN];
    size_t numel, alloc; /* elements; alloc: reserved in the flat buffers (model.h ParamInfo) */
    int layer;           /* block, -1 for the embedding, final norm, head */
    int trainable;
    int lora;            /* 1: lora_A, 2: lora_B */
    int module;          /* LoRA: the block's linear module it adapts (plan.c block_lins) */
    int matrix;          /* a block's GEMM weight */
    int head;            /* the output layer's weight (the embedding when tied) */
} PlanTensor;

/* The shapes of a run: the model's config and parameter table (built from the
 * shapes as model/model.c builds it, frozen tensors and LoRA adapters as the
 * trainer sets them), and what the run config says about the step. */
typedef struct PlanModel {
    GPTConfig g;
    int llama, NH, KVH, HS, mlp_width, W, Vp; /* as model/model_impl.h derives them */
    size_t act_size;     /* bytes of the compute type: 4 on the CPU, 2 on CUDA (bf16) */
    int cuda;
    int T;               /* data.seq_len */
    int rows_per_item;   /* model rows per batch item (2 for preference pairs) */
    int grad_accum;
    int logits_chunk_rows; /* train.logits_chunk_rows, 0 = automatic */
    int lora_r, lora_dropout; /* 0 without LoRA; dropout: > 0 keeps the dropped inputs */
    int n_tensors;
    PlanTensor *tensors;
    size_t n_params, n_trainable; /* real parameters (base + adapters), those that train */
    size_t n_alloc, n_grad;       /* elements of the flat parameter and gradient buffers */
    /* a second, frozen model on the same device: the online KD teacher
     * (kd.teacher) or the DPO reference (dpo.reference, else model.init;
     * none for simpo or precomputed log-probs); NULL when the run has none */
    struct PlanModel *frozen;
    int kd_online;                /* KD against an online teacher: its side buffers */
} PlanModel;

/* Reads the shapes of cfg's run (model.init's config.json when set, else the
 * model section), applies finetune.freeze / train_only / lora_* as the
 * trainer does, and derives the rest. 0, or -1 with the error set (what,
 * which key, the fix). plan_model_free releases it. */
int plan_model_init(PlanModel *pm, const Config *cfg);
void plan_model_free(PlanModel *pm);

typedef struct {
    int shard;       /* PlanShard */
    int recompute;   /* PlanRecompute */
    int micro_batch; /* data.batch_size: items per rank per micro-step */
    int world;       /* data-parallel ranks (1: no sharding has any effect) */
} PlanChoice;

/* Bytes on one rank (the largest shard, rank 0, where shards differ). */
typedef struct {
    size_t params;      /* flat parameter buffer (compute type); under ZeRO-3 the shard,
                           the resident tensors and one block window */
    size_t grads;       /* fp32 gradients of the trainable tensors */
    size_t optim;       /* AdamW m and v (fp32), and fp32 master weights on CUDA */
    size_t activations; /* what forward keeps for backward, and backward's scratch */
    size_t workspace;   /* rotary tables, LoRA scratch, KD side buffers, CUDA runtime allowance */
    size_t frozen;      /* the frozen second model: parameters, rotary tables, its forward's
                           activations (PlanModel.frozen) */
    size_t total;       /* the sum: on the device */
    size_t checkpoint;  /* host: the optimizer state gathered for a checkpoint save */
} PlanBytes;

PlanBytes plan_memory(const PlanModel *pm, PlanChoice ch);

/* The largest micro-batch whose total fits `budget` bytes (searched up to
 * 1 << 20), or 0 when not even one item fits. */
int plan_max_micro_batch(const PlanModel *pm, PlanChoice ch, size_t budget);

/* FLOPs of one optimizer step on one rank (micro_batch items x grad_accum
 * micro-steps of T tokens): every matmul (2 per multiply-add) of forward and
 * backward, with weight-gradient products only for trainable tensors, plus
 * causal attention (QK^T and AV over the T(T+1)/2 unmasked pairs), plus the
 * forward work recomputation repeats as model/model.c does it: every block
 * backward visits but the last (whose buffers forward left in the scratch)
 * reruns its q/k/v GEMM and attention (attention), or also its
 * out-projection and first MLP GEMM, and its down-projection where LoRA
 * adapts it (block), adapters included. Backward's data-gradient products
 * are counted through every block (the model stops at the lowest trainable
 * one); elementwise ops are not counted. */
double plan_flops_per_step(const PlanModel *pm, PlanChoice ch);
/* 6 N per token plus attention, the usual count (PaLM appendix B), for one
 * rank's tokens of one step: the headline figure of full fine-tuning. */
double plan_flops_6n(const PlanModel *pm, PlanChoice ch);

/* ---- the data in host memory (data/h5data.h) ----
 * What the run's data files take on one rank, in host memory and outside
 * PlanBytes.total (the trainer measures MemAvailable after loading them; on
 * a GPU they are not on the device). From each file's metadata only
 * (dataset_open_stream reads no rows), for lm, sft and kd files:
 *   loaded (data.stream false, or auto and not larger than 1 GiB): every
 *     rank holds the whole file: 4 bytes per token (ids widened to uint32),
 *     8 per offset, 1 per token of loss mask (sft, kd), 1 per example of
 *     role and task, 8 K per token of teacher top-K (ids and log-probs);
 *   streamed: a chunk cache of DATASET_STREAM_CACHE bytes per open column
 *     (the most each holds) and one micro-batch read ahead (the ids and
 *     targets of its rows, 8 bytes per token).
 * An estimate, not held to an allocator: not counted are HDF5's metadata
 * cache, the loader's order of items (8 bytes per item in memory), kd's
 * candidates/ group, and preference (dpo, orpo) files, which are named but
 * not sized. */
enum { PLAN_DATA_MAX_FILES = CFG_MAX_MIX + 1 };
typedef struct {
    char role[16];       /* "data.train", "data.mix", "data.val" */
    char path[CFG_STR];
    int streamed;
    int sized;           /* 0: not estimated (a preference file; `why` says so) */
    int64_t n_tokens, n_docs;
    size_t bytes;
    char why[128];
} PlanDataFile;
typedef struct {
    int n_files;
    PlanDataFile file[PLAN_DATA_MAX_FILES];
    size_t total;        /* the sum over sized files */
} PlanData;

/* The data of cfg's run at `micro_batch` items per rank. -1 with the error
 * set when a file cannot be opened or data.mix cannot be read. */
int plan_data(const Config *cfg, int micro_batch, PlanData *out);

/* Sizes as people write them: "80GB", "2 GiB", "512MB", "1.5TB", "4096"
 * (bytes). kB/MB/GB/TB are powers of 1000, KiB/MiB/GiB/TiB of 1024; B, k and
 * K also accepted. 0, or -1 with the error naming the text and the units. */
int plan_parse_bytes(const char *text, size_t *out);

/* One line of a breakdown: "params 12.55 GiB, grads ..., total ..." */
void plan_format(char *buf, size_t cap, const PlanBytes *b);

/* The check at trainer start: plan for this run's choice and compare with
 * `available` bytes. 0 when it fits; -1 with the error set to the breakdown
 * and what to change (smaller micro-batch with the largest that fits,
 * recomputation, sharding, more ranks) when it does not. where: "device
 * memory free" / "train.memory_limit" for the message. */
int plan_check_fits(const PlanModel *pm, PlanChoice ch, size_t available, const char *where);

#endif
