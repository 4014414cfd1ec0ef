/* data/pack.h — sft/kd examples packed into rows (data.pack): several short
 * examples per row of T+1 tokens instead of one padded example per row.
 *
 * The packer sits on a DataLoader (data/h5data.h) and draws examples through
 * its API in the loader's visiting order. It fills a GROUP of rows at a time
 * (a step's global micro-batch, world * B rows) first-fit: each example goes
 * into the first row of the group with room for it; the first example with
 * room in none ends the group and opens the next one. An example of n tokens
 * (cut to T+1 as without packing) takes n - 1 slots: inputs tok[0..n-2],
 * targets tok[1..n-1] where the loss mask is set, so its last token predicts
 * nothing of the next example. Examples of one token take no slot (they have
 * no target). Slots left at a row's end are padding (input eos_id, target
 * -1), each its own one-token segment.
 *
 * doc_start (rows, T) gives, per slot, the slot where its example starts:
 * what gpt_set_packing (model/model.h) takes, so attention stays inside each
 * example and positions restart at 0. token_index (rows, T) gives, per slot,
 * the index of its input token in the file's token arrays (offsets[item] + j;
 * -1 on padding), so per-token extras (a kd file's teacher top-K rows)
 * follow the tokens.
 *
 * Resume: a group never holds part of an example, and the example that ended
 * a group is the first of the next, so the data position is the loader's
 * (epoch, pos) counted in EXAMPLES, less that one example held back; seeking
 * there and packing on gives the same groups (the packed stream is a pure
 * function of the epoch orders and the group size).
 *
 * Streamed files (data.stream): the same, through the row API: each drawn
 * example's row comes from the loader (read on demand), its length and first
 * token from dataset_example_span (its two offsets), so memory is the held
 * example and the group, never O(examples). Every rank draws every example
 * of the global group: which rank's rows an example lands in depends on the
 * lengths of all the examples before it in the group, so each rank packs the
 * whole group as in memory (world x the reads of one rank's share, but the
 * same deterministic groups on every rank and every world size). */
#ifndef RETORT_PACK_H
#define RETORT_PACK_H

#include <stdint.h>

#include "data/h5data.h"
#include "data/pref_batch.h"

typedef struct {
    DataLoader *dl;        /* borrowed: the examples, in its order */
    int T;
    int held;              /* an example drawn that did not fit the last group */
    int *held_in, *held_tg; /* (T) its row as the loader gave it */
    int64_t held_item, held_start; /* its item and its first token's index */
    int held_slots;
    int64_t examples;      /* examples placed so far (statistics) */
} Packer;

/* dl must be an sft or kd loader (an lm stream is cut into full windows
 * already); -1 with the error set otherwise. */
int packer_init(Packer *p, DataLoader *dl);
void packer_free(Packer *p);
/* Fills `rows` rows (rows, T) of inputs, targets, doc_start and (unless
 * NULL) token_index; n_examples (may be NULL) gets the number of examples
 * placed. 0, or -1 (error set) when a streamed read fails or finds bad data. */
int packer_next(Packer *p, int rows, int *inputs, int *targets, int *doc_start,
                int64_t *token_index, int64_t *n_examples);
/* The data position in examples (see above), and seeking to one. */
void packer_position(const Packer *p, int64_t *epoch, int64_t *pos);
void packer_seek(Packer *p, int64_t epoch, int64_t pos);

/* ---- preference pairs (dpo, orpo) ----
 * The same over a PrefLoader: each pair is two sequences, prompt + chosen and
 * prompt + rejected (data/pref_batch.h, truncation included), of L tokens
 * each taking L - 1 slots; both go into the group first-fit, chosen first,
 * or the pair is held back and opens the next group. A group takes at most
 * max_pairs pairs. Besides the packed rows it gives the pairs in the
 * unpacked layout of pref_loader_next (rows [0, K) chosen, [K, 2K) rejected,
 * T each) and, per packed slot, the index of its (row, position) in that
 * layout (row * T + j; -1 on padding), so the methods keep computing on
 * per-pair rows while the model runs the packed ones. */
typedef struct {
    PrefLoader *pl;        /* borrowed */
    int T, max_pairs;
    int held;              /* a pair drawn that did not fit the last group */
    int *held_rows;        /* (4, T): its chosen in, rejected in, chosen tg, rejected tg */
    int64_t held_id;
    int held_slots[2];     /* chosen, rejected */
} PairPacker;

void pair_packer_init(PairPacker *p, PrefLoader *pl, int max_pairs);
void pair_packer_free(PairPacker *p);
/* Fills `rows` packed rows (rows, T: inputs, targets, doc_start, slot_map)
 * and the group's K pairs unpacked (in_u, tg_u (2 max_pairs, T), their ids
 * (max_pairs)); returns K. */
int pair_packer_next(PairPacker *p, int rows, int *inputs, int *targets, int *doc_start,
                     int *slot_map, int *in_u, int *tg_u, int64_t *pair_ids);
void pair_packer_position(const PairPacker *p, int64_t *epoch, int64_t *pos);
void pair_packer_seek(PairPacker *p, int64_t epoch, int64_t pos);

#endif
