/* train/grad_overlap.h — the gradient reduction overlapped with the backward
 * pass (dist.overlap), for plain data parallelism and ZeRO-1.
 *
 * The model calls back after each block's backward (model.h
 * gpt_set_grads_done); in the step's last backward the block's gradient
 * ranges are final, so they are collected into buckets (dist.bucket_mb) and
 * each full bucket's reduction starts at once: on the CPU a nonblocking
 * deterministic MPI sum (dist.h dist_reduce_start_f32, the bits of the
 * blocking call), on CUDA a bucket of the NCCL all-reduce on the
 * communication stream (dist_allreduce_bucket_async). grad_overlap_finish
 * waits for all of them before clipping. Only the last backward reduces, so
 * data.grad_accum's micro-steps accumulate locally first, exactly as the
 * non-overlapped path does: the gradients are bitwise the same. */
#ifndef RETORT_GRAD_OVERLAP_H
#define RETORT_GRAD_OVERLAP_H

#include <stddef.h>

#include "model/model.h"

typedef struct GradOverlap GradOverlap;

/* Sets m's hook. n_backward: backwards per optimizer step (data.grad_accum:
 * every objective runs one per micro-step); bucket_bytes: a reduction starts
 * once this many bytes of finished gradients wait; shard_n 0: all-reduce,
 * else ZeRO-1's reduce-scatter over the shard_n-element layout (host path);
 * device: the gradients are device memory reduced by NCCL (always whole). */
GradOverlap *grad_overlap_create(GPT *m, int n_backward, size_t bucket_bytes, size_t shard_n,
                                 int device);
/* Before the step's first backward. */
void grad_overlap_begin_step(GradOverlap *g);
/* After the step's backwards: waits for every bucket and returns 0, or -1
 * when the step did not run n_backward backwards and so started nothing (no
 * trainable tensor): the caller then reduces the whole buffer itself. */
int grad_overlap_finish(GradOverlap *g);
/* Buckets started in the last step (for the setup line and tests). */
int grad_overlap_buckets(const GradOverlap *g);
/* Removes the hook and frees g. */
void grad_overlap_free(GradOverlap *g);

#endif
