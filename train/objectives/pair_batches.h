/* train/objectives/pair_batches.h — preference pairs for the pairwise methods
 * (dpo, orpo): the training and validation pair loaders over a pref file
 * (data/pref_batch.h cuts the rows), a row's completion log-prob sum
 * (pref_row_sums), the step's micro-batches and this rank's rows
 * of each, and the loops of a step and of a validation pass around a method's
 * loss on one micro-batch.
 *
 * A micro-batch of B pairs is 2B rows (rows [0, B) chosen, [B, 2B) rejected,
 * row b and row B + b the same pair). A step draws its A global micro-batches
 * of world * B pairs first; this rank trains on pairs [rank * B, (rank + 1) * B)
 * of each. Each micro-batch's loss is its pair mean (as TRL computes it), a
 * step averages its micro-batches (TRL's gradient accumulation) and the ranks'
 * means.
 *
 * data.pack: a rank's micro-batch is instead its 2B rows packed first-fit
 * with as many whole pairs as fit (data/pack.h; at most PAIR_PACK_MAX times
 * B), the ranks' groups cut from the global stream in rank order. The method
 * still sees its K pairs in the unpacked layout (rows [0, K) chosen, [K, 2K)
 * rejected) and runs the model through pair_batches_forward / _backward,
 * which run the packed rows and move log-probs and weights between the two
 * layouts; a token's log-prob is the same either way, so each pair's sums,
 * and the loss of the same pairs, are the unpacked ones. The micro-batch
 * loss stays its pair mean (over its K pairs). Validation is unpacked. */
#ifndef RETORT_PAIR_BATCHES_H
#define RETORT_PAIR_BATCHES_H

#include <stdint.h>

#include "data/h5data.h"
#include "data/pack.h"
#include "data/pref_batch.h"
#include "train/objectives/objective.h"

#define PAIR_PACK_MAX 16 /* pairs of a packed micro-batch: at most this many times B */

typedef struct {
    PrefDataset train, val;
    int have_val_ds;          /* val is open (data.val) */
    int have_val;             /* val_dl is set up */
    PrefLoader dl, val_dl;
    int *inputs, *targets;    /* (A, world * 2B, T) the step's global micro-batches */
    int64_t *items;           /* (A, world * B) their pair ids */
    int *loc_in, *loc_tg;     /* (2B, T) this rank's rows of one micro-batch */
    float *logp, *g;          /* (2B, T) */
    /* data.pack: the buffers above hold 2 max_pairs rows (the unpacked layout) */
    int pack, max_pairs;      /* max_pairs: B, or PAIR_PACK_MAX * B with pack */
    PairPacker packer;
    int pk_active;            /* the method is running on a packed micro-batch */
    int *pk_in, *pk_tg, *pk_ds, *pk_map; /* (2B, T) this rank's packed rows (data/pack.h) */
    float *pk_logp, *pk_g;    /* (2B, T) */
    int *pk_scratch;          /* another rank's group: (4 (2B) + 4 max_pairs) T ints */
    int64_t *pk_ids;          /* (2 max_pairs): this rank's group's pair ids, another's */
} PairBatches;

/* Opens data.train (schema pref; `method` names the objective in messages)
 * and the validation split, with the truncation limits of data/pref_batch.h
 * (<= 0: none). -1 with the error set; pair_batches_close cleans up either way. */
int pair_batches_open(PairBatches *d, const TrainEnv *env, const char *method,
                      int max_prompt_len, int max_completion_len);
void pair_batches_close(PairBatches *d);
/* objective_check_tokenizer on the training file and data.val, from prepare(). */
int pair_batches_check_tokenizer(const PairBatches *d, const TrainEnv *env);
/* The set-up line of the data: pairs kept, dropped (the prompt alone fills a
 * row, data/pref_batch.h) and truncated, for the training and validation
 * pairs, and how the file cut prompt from response (its boundary). */
void pair_batches_describe(const PairBatches *d, const TrainEnv *env);

/* A method's loss on one micro-batch of n_pairs pairs (env->B, or with
 * data.pack the pairs packed into the rank's rows): rows in, tg
 * (2 n_pairs, T), the pairs' ids in pd (pair_ids, n_pairs). Returns the
 * micro-batch's loss (its pair mean), fills metrics[0, n_metrics) and, when
 * backward, runs the model's backward pass with per-token weights
 * dLoss/dlogp times scale. It runs every model through pair_batches_forward
 * and pair_batches_backward. */
typedef double (*PairLossFn)(void *self, const TrainEnv *env, const PrefDataset *pd,
                             const int *in, const int *tg, const int64_t *pair_ids, int n_pairs,
                             double scale, int backward, double *metrics);

/* gpt_forward of the 2 n_pairs rows in, tg into logp (2 n_pairs, T); on a
 * packed micro-batch, the packed rows' forward with tg's targets, its
 * log-probs put back in the rows' layout (0 where no target). */
void pair_batches_forward(PairBatches *d, const TrainEnv *env, GPT *model, const int *in,
                          const int *tg, int n_pairs, float *logp);
/* gpt_backward of the per-token weights g (2 n_pairs, T), moved to the packed
 * rows on a packed micro-batch. */
void pair_batches_backward(PairBatches *d, const TrainEnv *env, GPT *model, const float *g,
                           int n_pairs);
/* The data position (pairs; with data.pack less the pair held back). */
void pair_batches_seek(PairBatches *d, int64_t epoch, int64_t pos);
void pair_batches_position(const PairBatches *d, int64_t *epoch, int64_t *pos);

/* One optimizer step: draws A micro-batches, runs loss on this rank's pairs of
 * each with backward and scale 1 / (A * world); returns the mean loss over
 * micro-batches and ranks and fills metrics[0, n_metrics) with the same means. */
double pair_batches_step(PairBatches *d, const TrainEnv *env, PairLossFn loss, void *self,
                         int n_metrics, double *metrics);
/* A validation pass: up to eval.batches micro-batches of B pairs from the
 * start of the validation pairs (each rank on all of them), no backward; the
 * mean loss and metrics over them. NAN when there is no validation data. */
double pair_batches_eval(PairBatches *d, const TrainEnv *env, PairLossFn loss, void *self,
                         int n_metrics, double *metrics);

/* The log-probs of a row's completion, the quantity every pairwise method
 * compares. Per row of `rows` rows of T: sums[r] = sum of logp over tokens with
 * targets >= 0, counts[r] = how many. logp and targets are (rows, T). */
void pref_row_sums(const float *logp, const int *targets, int rows, int T, double *sums,
                   int64_t *counts);

#endif
