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
 * Truncation follows TRL's DPOTrainer (0.19: tokenize_row, then max_length
 * with truncation_mode="keep_start"), with max_length = T+1:
 *   1. the prompt keeps its last max_prompt_len tokens,
 *   2. each completion keeps its first max_completion_len tokens,
 *   3. each row keeps its first T+1 tokens, which cuts the completion further.
 * One addition: a prompt is also cut (from the left) to at most T tokens, so
 * every row keeps at least one completion token (TRL would leave a row with
 * none, and a log-prob sum of nothing). A limit <= 0 means none.
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
    int64_t truncated;      /* pairs seen so far that lost any token to truncation */
} PrefLoader;

/* Lengths kept of one pair after truncation. */
typedef struct {
    int64_t prompt_start;      /* first prompt token kept (its end is kept) */
    int prompt_len;            /* P */
    int chosen_len, rejected_len;
    int truncated;             /* 1 if any token was dropped */
} PrefSpan;

/* The truncation above for pair `pair`. */
PrefSpan pref_pair_span(const PrefDataset *pd, int64_t pair, int T, int max_prompt_len,
                        int max_completion_len);

/* The two rows of one pair (T ints each). Returns 1 if truncated, else 0. */
int pref_pair_rows(const PrefDataset *pd, int64_t pair, int T, int max_prompt_len,
                   int max_completion_len, int *in_c, int *tg_c, int *in_r, int *tg_r);

/* -1 (error set) if T < 1 or the pair range is empty or outside the file. */
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
