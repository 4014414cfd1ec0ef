/* train/objectives/seq_batches.h — sequence data for the methods that train
 * on one row per item (lm, kd): the training and validation loaders over an
 * lm, sft or kd file (data.role, data.val, data.val_fraction), the step's
 * micro-batches, and the validation pass (mean cross-entropy per target token).
 *
 * A step draws its A global micro-batches of world * B rows first (so the LM
 * loss can be normalised by the target tokens of the whole step, and every
 * rank's loader stays at the same position); this rank trains on rows
 * [rank * B, (rank + 1) * B) of each. */
#ifndef RETORT_SEQ_BATCHES_H
#define RETORT_SEQ_BATCHES_H

#include <stdint.h>

#include "data/h5data.h"
#include "train/objectives/objective.h"

typedef struct {
    Dataset train_ds, val_ds;
    int have_val_ds;         /* val_ds is open (data.val) */
    int have_val;            /* val_dl is set up */
    DataLoader train_dl, val_dl;
    int *inputs, *targets;   /* (A, world * B, T) the step's global micro-batches */
    int64_t *items;          /* (A, world * B) their dataset items */
    float *logp, *g;         /* (B, T) one micro-batch of this rank */
} SeqBatches;

/* Opens data.train (and the validation split) for env's B, T, A and world.
 * -1 with the error set; seq_batches_close cleans up either way. */
int seq_batches_open(SeqBatches *d, const TrainEnv *env);
void seq_batches_close(SeqBatches *d);
/* objective_check_tokenizer on the training file and data.val, from prepare(). */
int seq_batches_check_tokenizer(const SeqBatches *d, const TrainEnv *env);
/* The set-up line of the data: sft/kd examples longer than a row (T+1
 * tokens, cut to their start), or the lm stream's windows and the tokens
 * after the last one, which no window holds. */
void seq_batches_describe(const SeqBatches *d, const TrainEnv *env);

/* Draws the step's A global micro-batches (and their items). */
void seq_batches_draw(SeqBatches *d, const TrainEnv *env);
/* This rank's B rows (B, T) of micro-batch a of base (d->inputs or d->targets). */
int *seq_batches_local(const SeqBatches *d, const TrainEnv *env, int *base, int a);
/* Target tokens of the drawn step over every rank. */
double seq_batches_step_targets(const SeqBatches *d, const TrainEnv *env);

/* Mean -logp per target token over up to eval.batches batches of B rows of the
 * validation data (each rank on all of it); NAN when there is none. */
double seq_batches_eval(SeqBatches *d, const TrainEnv *env);

#endif
