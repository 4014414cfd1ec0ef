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
 * means. */
#ifndef RETORT_PAIR_BATCHES_H
#define RETORT_PAIR_BATCHES_H

#include <stdint.h>

#include "data/h5data.h"
#include "data/pref_batch.h"
#include "train/objectives/objective.h"

typedef struct {
    PrefDataset train, val;
    int have_val_ds;          /* val is open (data.val) */
    int have_val;             /* val_dl is set up */
    PrefLoader dl, val_dl;
    int *inputs, *targets;    /* (A, world * 2B, T) the step's global micro-batches */
    int64_t *items;           /* (A, world * B) their pair ids */
    int *loc_in, *loc_tg;     /* (2B, T) this rank's rows of one micro-batch */
    float *logp, *g;          /* (2B, T) */
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

/* A method's loss on one micro-batch of env->B pairs: rows in, tg (2B, T),
 * the pairs' ids in pd (pair_ids, B). Returns the micro-batch's loss (its
 * pair mean), fills metrics[0, n_metrics) and, when backward, runs the
 * model's backward pass with per-token weights dLoss/dlogp times scale. */
typedef double (*PairLossFn)(void *self, const TrainEnv *env, const PrefDataset *pd,
                             const int *in, const int *tg, const int64_t *pair_ids,
                             double scale, int backward, double *metrics);

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
