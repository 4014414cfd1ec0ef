/* train/objectives/seq_batches.h — sequence data for the methods that train
 * on one row per item (lm, kd): the training and validation loaders over an
 * lm, sft or kd file (data.role, data.val, data.val_fraction) or several
 * files drawn as one stream (data.mix), the step's micro-batches with each
 * row's file and task (objective.task_weights), and the validation pass
 * (mean cross-entropy per target token, per task with task weights; with
 * data.mix and data.val_fraction, over the held-out tail of every file).
 *
 * A step draws its A global micro-batches of world * B rows first (so the LM
 * loss can be normalised by the target tokens of the whole step, and every
 * rank's loader stays at the same position); this rank trains on rows
 * [rank * B, (rank + 1) * B) of each.
 *
 * Task weights: each row is one example, so a row's task is its example's
 * (the file's `task` column, matched by name in the file's `tasks`
 * attribute against objective.task_weights); every task of every file must
 * be listed there (weight 0 trains nothing on it).
 *
 * data.pack: each global micro-batch is a group of world * B rows packed
 * first-fit (data/pack.h) with its doc_start, and seq_batches_pack_model
 * hands this rank's rows' layout to the model before each forward. The data
 * position stays (epoch, examples into the epoch). Validation is unpacked:
 * a token's log-prob is the same either way. */
#ifndef RETORT_SEQ_BATCHES_H
#define RETORT_SEQ_BATCHES_H

#include <jansson.h>
#include <stdint.h>

#include "data/h5data.h"
#include "data/pack.h"
#include "train/config.h"
#include "train/objectives/objective.h"

typedef struct {
    Dataset train_ds[CFG_MAX_MIX]; /* the training file, or data.mix's files */
    int n_train;
    int use_mix;             /* data.mix: train_ds drawn through mix */
    MixLoader mix;
    Dataset val_ds;
    int have_val_ds;         /* val_ds is open (data.val) */
    int have_val;            /* val_dl is set up */
    DataLoader train_dl, val_dl; /* train_dl: without data.mix */
    DataLoader val_mix[CFG_MAX_MIX]; /* data.mix with data.val_fraction: each file's tail */
    int n_val_mix;
    int *inputs, *targets;   /* (A, world * B, T) the step's global micro-batches */
    int64_t *items;          /* (A, world * B) their items in their files */
    int *sources;            /* (A, world * B) their files (index into train_ds) */
    int *tasks;              /* (A, world * B) their tasks (index into tw), -1 = none */
    float *logp, *g;         /* (B, T) one micro-batch of this rank */
    int pack;                /* data.pack: rows filled by packer */
    Packer packer;
    int *doc_start;          /* (A, world * B, T) with pack: where each token's example starts */
    int64_t *token_index;    /* (A, world * B, T) with pack: each slot's token in the file, -1 pad */
    TaskWeights tw;          /* objective.task_weights; tw.n = 0: none */
    /* file task id -> index into tw, per training file and (last) data.val */
    signed char task_map[CFG_MAX_MIX + 1][256];
    char metric_names[CFG_MAX_TASKS][CFG_TASK_NAME + 8]; /* "loss/<task>" */
} SeqBatches;

/* Opens data.train or data.mix (and the validation split) for env's B, T, A
 * and world. -1 with the error set; seq_batches_close cleans up either way. */
int seq_batches_open(SeqBatches *d, const TrainEnv *env);
void seq_batches_close(SeqBatches *d);
/* objective_check_tokenizer on the training files and data.val, from prepare(). */
int seq_batches_check_tokenizer(const SeqBatches *d, const TrainEnv *env);
/* The set-up lines of the data: sft/kd examples longer than a row (T+1
 * tokens, cut to their start), or the lm stream's windows and the tokens
 * after the last one, which no window holds; the mixture and task weights. */
void seq_batches_describe(const SeqBatches *d, const TrainEnv *env);

/* Training items of one epoch (with data.mix: the files' items together). */
int64_t seq_batches_items(const SeqBatches *d);
/* The data position: (epoch, pos) of the loader; with data.mix (0, global
 * example index), and save_position's detail holds each file's position. */
void seq_batches_seek(SeqBatches *d, int64_t epoch, int64_t pos);
void seq_batches_position(const SeqBatches *d, int64_t *epoch, int64_t *pos);
json_t *seq_batches_save_position(const SeqBatches *d);
int seq_batches_load_position(SeqBatches *d, const json_t *detail);

/* With data.pack, gives model (gpt_set_packing) the layout of this rank's
 * rows of micro-batch a for its next forward; nothing otherwise. Called for
 * each model that runs over the rows (the student, an online teacher). */
void seq_batches_pack_model(const SeqBatches *d, const TrainEnv *env, int a, GPT *model);
/* With data.pack: this rank's (B, T) token indices of micro-batch a
 * (data/pack.h); NULL without packing. */
const int64_t *seq_batches_token_index(const SeqBatches *d, const TrainEnv *env, int a);

/* Draws the step's A global micro-batches (their items, files and tasks). */
void seq_batches_draw(SeqBatches *d, const TrainEnv *env);
/* This rank's B rows (B, T) of micro-batch a of base (d->inputs or d->targets). */
int *seq_batches_local(const SeqBatches *d, const TrainEnv *env, int *base, int a);
/* The same for the per-row arrays (B): d->tasks, d->sources. */
int *seq_batches_local_rows(const SeqBatches *d, const TrainEnv *env, int *base, int a);
/* Target tokens of the drawn step over every rank. */
double seq_batches_step_targets(const SeqBatches *d, const TrainEnv *env);
/* With task weights: target tokens of each task in the drawn step over every
 * rank (D[t], tw.n values) and coef[t] = w_t / D[t] (0 where D[t] = 0), the
 * per-token factor of the weighted loss. */
void seq_batches_task_targets(const SeqBatches *d, const TrainEnv *env, double *D, double *coef);
/* Per-task metric entries "loss/<task>" (tw.n of them) into out. */
void seq_batches_task_metrics(const SeqBatches *d, ObjectiveMetric *out);

/* Mean -logp per target token over up to eval.batches batches of B rows of the
 * validation data (each rank on all of it); NAN when there is none. With task
 * weights, task_loss[t] (tw.n values, NAN for a task without tokens) gets each
 * task's mean and the return is sum_t w_t task_loss[t] over the tasks seen. */
double seq_batches_eval(SeqBatches *d, const TrainEnv *env, double *task_loss);

#endif
