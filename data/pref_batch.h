/* data/pref_batch.h — preference pairs (PrefDataset) as model rows for DPO.
 *
 * Pair p gives two rows of T: chosen = prompt + chosen, rejected = prompt +
 * rejected. For a row r of L <= T+1 tokens whose first P are the prompt:
 *   inputs[j]  = r[j] for j < L, else eos_id (padding)
 *   targets[j] = r[j+1] if P <= j+1 < L (a completion token), else -1
 * so the targets of a row are exactly its completion tokens, the ones whose
 * log-probs DPO sums (a completion token at position 0, possible only with
 * an empty prompt, has nothing to predict it and is not a target).
 *
 * Truncation follows TRL's DPOTrainer with max_length = T+1 and
 * truncation_mode "keep_start" (TRL 1.x's only mode):
 *   1. the prompt keeps its last max_prompt_len tokens (TRL 0.x's
 *      max_prompt_length; TRL 1.x has no such limit: leave it at 0),
 *   2. each completion keeps its first max_completion_len tokens (TRL 0.x's
 *      max_completion_length; likewise 0 for TRL 1.x),
 *   3. a pair whose prompt (after 1.) alone fills T+1 tokens is DROPPED, as
 *      TRL 1.x drops it ("Dropping fully truncated examples": its rows would
 *      hold no completion token); the loaders never visit it,
 *   4. each row keeps its first T+1 tokens, which cuts the completion further
 *      (the collator's keep_start).
 * A limit <= 0 means none.
 *
 * A batch of B pairs is 2B rows: rows [0, B) chosen, rows [B, 2B) rejected,
 * row b and row B + b from the same pair (train/objectives/dpo.h relies on it).
 * Pairs are visited in an order shuffled per epoch from (seed, epoch), exactly
 * as DataLoader does for sft examples, so the data position is (epoch, pos). */
#ifndef RETORT_PREF_BATCH_H
#define RETORT_PREF_BATCH_H

#include <stdint.h>

#include "data/h5data.h"

typedef struct {
    const PrefDataset *pd;
    int T;
    int max_prompt_len, max_completion_len;   /* <= 0: no limit */
    int shuffle;
    uint64_t seed;
    int64_t first, count;   /* the pair range this loader visits */
    int64_t epoch, pos;     /* data position */
    int64_t *order;         /* (count) permutation for the current epoch */
    int64_t *pairs;         /* (count) the pairs of the range not dropped, ascending */
    int64_t range;          /* pairs in the range, dropped ones included */
    int64_t n_dropped;      /* pairs of the range dropped (3. above) */
    int64_t n_truncated;    /* pairs of the range kept but cut (1., 2., 4.) */
    int64_t truncated;      /* pairs seen so far that lost any token to truncation */
} PrefLoader;

/* Lengths kept of one pair after truncation. */
typedef struct {
    int64_t prompt_start;      /* first prompt token kept (its end is kept) */
    int prompt_len;            /* P */
    int chosen_len, rejected_len;
    int truncated;             /* 1 if any token was dropped */
    int dropped;               /* 1 if the prompt alone fills T+1 tokens (3. above): the
                                * loaders skip the pair; its lengths here are those of a
                                * prompt cut to T tokens and one completion token */
} PrefSpan;

/* The truncation above for pair `pair`. */
PrefSpan pref_pair_span(const PrefDataset *pd, int64_t pair, int T, int max_prompt_len,
                        int max_completion_len);

/* The two rows of one pair (T ints each). Returns 1 if truncated, else 0
 * (a dropped pair's rows are those of its span, counted as truncated). */
int pref_pair_rows(const PrefDataset *pd, int64_t pair, int T, int max_prompt_len,
                   int max_completion_len, int *in_c, int *tg_c, int *in_r, int *tg_r);

/* Visits the pairs of [first, first + count) that are not dropped (count
 * becomes how many), counting the dropped and truncated ones. -1 (error set)
 * if T < 1, the range is empty or outside the file, or every pair of it is
 * dropped. */
int pref_loader_init(PrefLoader *pl, const PrefDataset *pd, int T, int max_prompt_len,
                     int max_completion_len, uint64_t seed, int shuffle, int64_t first,
                     int64_t count);
void pref_loader_free(PrefLoader *pl);
/* pos == count is the start of the next epoch. */
void pref_loader_seek(PrefLoader *pl, int64_t epoch, int64_t pos);
/* Fills 2B rows (inputs and targets: 2B*T ints each, host memory) for the
 * next B pairs; pair_ids (B, may be NULL) receives each pair's index in the
 * file, e.g. to look up ref_logp_chosen / ref_logp_rejected. */
void pref_loader_next(PrefLoader *pl, int B, int *inputs, int *targets, int64_t *pair_ids);

#endif
