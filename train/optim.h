/* train/optim.h — AdamW, learning-rate schedules, global-norm clipping.
 *
 * The optimizer's moments m and v (and the fp32 master weights on a
 * lower-precision backend) live on the backend for the TRAINABLE tensors only,
 * in the model's gradient layout: tensor i's state starts at
 * gpt_tensor(m, i)->grad_offset when gpt_tensor(m, i)->trainable, and there is
 * none for frozen tensors. Checkpoints store it tensor by tensor under the
 * parameter names. Weight decay applies to 2-D weights only. Freeze tensors
 * and attach LoRA before optim_create (it aborts if the layout changes). */
#ifndef RETORT_OPTIM_H
#define RETORT_OPTIM_H

#include "model/model.h"

typedef enum { SCHED_COSINE = 0, SCHED_LINEAR, SCHED_CONSTANT } Schedule;
typedef enum { WARMUP_LINEAR = 0, WARMUP_LOG } WarmupShape;

typedef struct {
    double lr, min_lr;
    int warmup_steps, total_steps;
    Schedule schedule;
    int hf_convention;  /* optim.schedule_convention hf: step s uses the rate at s - 1 */
    WarmupShape warmup_shape; /* optim.warmup_shape (below) */
} LrSchedule;

/* -1 with error set for an unknown name. */
int schedule_from_name(const char *name, Schedule *out);
/* "linear" or "log"; -1 with error set for another name. */
int warmup_shape_from_name(const char *name, WarmupShape *out);
/* Learning rate for 1-based optimizer step `step`: linear warmup from lr/warmup
 * to lr over warmup_steps, then decay to min_lr at total_steps.
 *
 * transformers' schedules (get_cosine_schedule_with_warmup and its linear and
 * constant siblings, which Trainer and TRL use) are LambdaLR functions of the
 * number of scheduler steps taken BEFORE the optimizer step, i.e. of step - 1:
 * their first warmup step has lr 0 and their decay reaches min_lr only after
 * the last step. retort's default runs one step ahead of them; hf_convention
 * evaluates the same curves at step - 1, giving transformers' rates exactly
 * (cosine with min_lr is get_cosine_with_min_lr_schedule_with_warmup).
 *
 * WARMUP_LOG is DeepSpeed's WarmupLR with warmup_type log (its default) as
 * its engine steps it, whatever the convention: with W = max(2,
 * warmup_steps), step s uses lr * log(s - 1) / log(W) while s - 2 < W (so
 * steps 1 and 2 have lr 0) and lr from step W + 2 on, then the schedule's
 * decay as usual (constant: DeepSpeed's WarmupLR exactly). No warmup
 * (warmup_steps 0) is no warmup in either shape. */
double lr_at(const LrSchedule *s, int step);

/* Warmup steps for a warmup ratio (optim.warmup_ratio) of a run of
 * total_steps optimizer steps: ceil(total_steps * ratio) with the product in
 * double, exactly transformers' TrainingArguments.get_warmup_steps (so 100
 * steps at ratio 0.07 warm up for 8 steps: 100 * 0.07 is 7.000000000000001). */
int warmup_steps_for_ratio(double ratio, int total_steps);

typedef struct {
    double beta1, beta2, eps, weight_decay;
    double grad_clip;   /* 0 = off */
} AdamWConfig;

typedef struct Optimizer Optimizer;
Optimizer *optim_create(GPT *m, const AdamWConfig *cfg);
void optim_free(Optimizer *o);
int optim_step_count(const Optimizer *o);
void optim_set_step_count(Optimizer *o, int step);

/* Global L2 norm of all gradients; when > grad_clip (and clip on), scales them
 * by grad_clip / (norm + 1e-6) as torch.nn.utils.clip_grad_norm_ does. Returns
 * the norm before clipping. */
double optim_clip_grad_norm(Optimizer *o);
/* One AdamW step at learning rate lr over every parameter tensor. */
void optim_step(Optimizer *o, double lr);

/* ---- non-finite values (the trainer's guard, train/trainer.c) ----
 * The cheap check is one sum_squares (in double, so finite values can never
 * overflow it; a NaN or an infinity always shows) over the weights the
 * updates write: the fp32 master weights when there are any (CUDA), else
 * the whole fp32 parameter buffer. One synchronisation on a device. */
int optim_params_finite(Optimizer *o);
/* The slow scans, for the message once a cheap check failed: the name of the
 * first tensor (in the parameter table's order) holding a NaN or an infinity
 * in its weights / in its gradient, or NULL when there is none. Each copies
 * the buffer to the host. Under ZeRO-1 the gradient scan all-gathers the
 * reduced gradient first: a collective, every rank calls it. */
const char *optim_first_nonfinite_param(Optimizer *o);
const char *optim_first_nonfinite_grad(Optimizer *o);

/* Re-reads the fp32 master weights from the parameters (after loading new
 * weights into the model); a no-op when the parameters are fp32. */
void optim_sync_master(Optimizer *o);

/* ZeRO-1: keep m and v (and the fp32 master weights on a lower-precision
 * backend) for this rank's shard only (train/dist.h). Call right after
 * optim_create, on every rank. On the CPU the trainer then reduce-scatters
 * the gradients (dist_reduce_scatter_f32) instead of all-reducing them and
 * optim_step all-gathers the parameters through the host; on a device the
 * gradients stay all-reduced and optim_step broadcasts each rank's updated
 * parameter pieces (dist_broadcast_pieces, NCCL; not yet run on a GPU).
 * optim_clip_grad_norm works on the shard; optim_moments_to_host and
 * optim_master_to_host gather the whole state (a collective: every rank
 * calls it) and the _to_device ones keep the shard. One process standing
 * for a rank of a larger world (tests) does no collective at all. 0, or -1
 * with the error set when the shard cannot be allocated. */
int optim_shard(Optimizer *o, int rank, int world);
int optim_is_sharded(const Optimizer *o);

/* ZeRO-2, after optim_shard on every rank: the gradients are sharded too. The
 * optimizer keeps this rank's shard of the reduced fp32 gradient and hooks
 * the model (gpt_set_grads_ready), which then holds only the global tensors'
 * gradients and one block's: each block's gradient is reduce-scattered into
 * the shard (dist_reduce_scatter_add_f32) during backward, as soon as it is
 * complete, so the trainer neither all-reduces nor reduce-scatters after
 * backward. Every backward is a collective then (every rank runs the same
 * number). optim_zero_grad zeroes the shard with the model's gradients.
 * On a device (CUDA, compiled, not yet run on a GPU) the shard is device
 * memory and dist_reduce_scatter_add_device moves each run. -1 with the
 * error set when the optimizer is not sharded. */
int optim_shard_grads(Optimizer *o);
int optim_grads_sharded(const Optimizer *o);
/* ZeRO-3 after optim_shard_grads: the parameters too. The rank keeps the
 * parameters of its shard [begin, end) of the gradient layout (in the
 * compute type: fp32 on the CPU, bf16 beside the fp32 master shard on CUDA;
 * taken from the model's whole buffer now) and the model the global and frozen
 * tensors plus one block window (model.h gpt_set_params_gather), which the
 * hook fills by all-gathering the block's runs from every rank's shard
 * (dist_all_gather_range_f32; on CUDA dist_gather_pieces, compiled, not yet
 * run on a GPU). AdamW updates the shard in place; only the global tensors'
 * updated pieces are all-gathered after a step. -1 with the error set
 * without sharded gradients or when the model refuses the hook. */
int optim_shard_params(Optimizer *o);
int optim_params_sharded(const Optimizer *o);
/* Bytes of parameters this rank holds: the model's (gpt_param_bytes) plus,
 * under ZeRO-3, the parameter shard. */
size_t optim_param_bytes(const Optimizer *o);
/* Whole parameters for a save or a load under ZeRO-3 (no-ops otherwise):
 * optim_params_unshard gives the model its whole buffer (gpt_params), with
 * the block tensors all-gathered when `gather` (a collective: every rank
 * calls it) or left for a load to write; optim_params_reshard takes this
 * rank's shard back from it and releases it. */
int optim_params_unshard(Optimizer *o, int gather);
void optim_params_reshard(Optimizer *o);
/* gpt_zero_grad, and the ZeRO-2 gradient shard. */
void optim_zero_grad(Optimizer *o);
/* The reduced gradients (optim_state_size floats, the gradient layout) on the
 * host, after the step's backward (and the trainer's reduction): under
 * ZeRO-1/2 the ranks' shards all-gathered, a collective (one process
 * standing for one rank, as tests do, gets its own shard and zeros). */
void optim_grads_to_host(Optimizer *o, float *host);
/* Bytes of gradients on this rank: the model's storage plus the ZeRO-2 shard. */
size_t optim_grad_bytes(const Optimizer *o);

/* Floats in each state buffer (m, v, master): gpt_grad_size at creation. */
size_t optim_state_size(const Optimizer *o);
/* Bytes of optimizer state on the backend (m + v + master). */
size_t optim_state_bytes(const Optimizer *o);
/* Bytes of gradients + optimizer state: what training costs beyond the
 * parameters and activations (to log what freezing or LoRA saves). */
size_t optim_train_state_bytes(const Optimizer *o);

/* fp32 master weights (only when the parameters are lower precision): whether
 * there are any, and host copies for checkpoints (optim_state_size floats, in
 * the gradient layout). */
int optim_has_master(const Optimizer *o);
void optim_master_to_host(Optimizer *o, float *host);
void optim_master_to_device(Optimizer *o, const float *host);

/* Host copies of the moments for checkpoints (optim_state_size floats each,
 * in the gradient layout). */
void optim_moments_to_host(Optimizer *o, float *m_host, float *v_host);
void optim_moments_to_device(Optimizer *o, const float *m_host, const float *v_host);

#endif
