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
 *     ZeRO-1 and ZeRO-2 on the CPU (ZeRO-2's gradients: this rank's shard,
 *     the global tensors' gradients and one window of the largest block's,
 *     model/model_grad_units.c), no recomputation: the flat parameter buffer (every
 *     tensor 16-element aligned, the vocabulary padded), the fp32 gradient
 *     buffer and AdamW's m and v over the trainable tensors (frozen tensors
 *     and LoRA's base have none), the activation buffers model/model.c keeps
 *     for backward (one 64-byte aligned buffer each, the logits one chunk of
 *     train.logits_chunk_rows rows), the rotary tables and LoRA's scratch;
 *   the same formula with the CUDA dtypes (parameters and activations bf16;
 *     gradients, master weights and moments fp32; side buffers fp32): what
 *     model/backend_cuda.cu allocates, not run here;
 *   a model (no code runs it yet): ZeRO-1 and ZeRO-2 on CUDA (m, v and
 *     master sharded; ZeRO-2's gradients as on the CPU), ZeRO-3 (parameters sharded, plus two blocks'
 *     gathered parameters: the one computing and the next being gathered),
 *     and train.recompute attention (the attention sub-block's buffers kept
 *     for one block only, recomputed in backward) and block (only each
 *     block's output, which is the next block's input, kept per block; one
 *     block's full set of buffers recomputed in backward). CUDA's runtime
 *     (context, cuBLAS workspace) is a stated allowance, PLAN_CUDA_RUNTIME.
 *   a second, frozen model (a DPO reference: tested against the allocator
 *     too; an online KD teacher and its side buffers: the same formula):
 *     its parameters and its forward's activations, never gradients.
 *   not counted: the data in host memory, offline KD's top-K buffers (K is
 *     the data's), generation's key/value cache (eval.generate_every, on-
 *     policy KD), the kernels' small per-op scratch.
 */
#ifndef RETORT_PLAN_H
#define RETORT_PLAN_H

#include <stddef.h>
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
    size_t params;      /* flat parameter buffer (compute type), its shard under ZeRO-3 */
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
 * forward work recomputation repeats. Elementwise ops are not counted. */
double plan_flops_per_step(const PlanModel *pm, PlanChoice ch);
/* 6 N per token plus attention, the usual count (PaLM appendix B), for one
 * rank's tokens of one step: the headline figure of full fine-tuning. */
double plan_flops_6n(const PlanModel *pm, PlanChoice ch);

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
