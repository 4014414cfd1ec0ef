/* data/pack.c — packing sft/kd examples into rows (see pack.h). */
#include "data/pack.h"

#include <stdlib.h>
#include <string.h>

#include "util/util.h"

int packer_init(Packer *p, DataLoader *dl) {
    memset(p, 0, sizeof *p);
    if (dl->ds->schema == SCHEMA_LM)
        return err_set("%s is an lm file, cut into full windows of T+1 tokens already; "
                       "data.pack packs sft and kd examples: leave it off for lm data",
                       dl->ds->path);
    p->dl = dl;
    p->T = dl->T;
    p->held_in = xmalloc(2 * (size_t)dl->T * sizeof(int));
    p->held_tg = p->held_in + dl->T;
    return 0;
}

void packer_free(Packer *p) {
    free(p->held_in);
    memset(p, 0, sizeof *p);
}

/* Slots an example of len tokens takes: its tokens cut to T+1, less one
 * (the last token is only a target). */
static int example_slots(int T, int64_t len) {
    int64_t n = len < T + 1 ? len : T + 1;
    return n > 1 ? (int)(n - 1) : 0;
}

/* The next example into the held slot (from the loader unless one is held):
 * its row through the loader, its length and first token through
 * dataset_example_span (two offsets of a streamed file, read on demand). */
static int draw(Packer *p) {
    if (p->held) return 0;
    int64_t len;
    if (loader_next_items(p->dl, 1, p->held_in, p->held_tg, &p->held_item) != 0 ||
        dataset_example_span(p->dl->ds, p->held_item, &p->held_start, &len) != 0)
        return -1;
    p->held_slots = example_slots(p->T, len);
    p->held = 1;
    return 0;
}

int packer_next(Packer *p, int rows, int *inputs, int *targets, int *doc_start,
                int64_t *token_index, int64_t *n_examples) {
    int T = p->T, eos = p->dl->ds->eos_id;
    int *used = xcalloc((size_t)rows, sizeof *used); /* (rows) slots filled */
    int64_t placed = 0, empty = 0;
    int rc = 0;
    /* a whole epoch of one-token examples (no targets) ends the group too */
    while (empty < p->dl->count) {
        if (draw(p) != 0) {
            rc = -1;
            break;
        }
        int r = 0, n = p->held_slots;
        empty += n == 0;
        while (r < rows && used[r] + n > T) r++;
        if (r == rows) break; /* the example opens the next group */
        size_t at = (size_t)r * T + used[r];
        memcpy(inputs + at, p->held_in, (size_t)n * sizeof(int));
        memcpy(targets + at, p->held_tg, (size_t)n * sizeof(int));
        for (int j = 0; j < n; j++) doc_start[at + j] = used[r];
        if (token_index)
            for (int j = 0; j < n; j++)
                token_index[at + j] = p->held_start + j;
        used[r] += n;
        p->held = 0;
        placed++;
    }
    for (int r = 0; r < rows; r++)
        for (int j = used[r]; j < T; j++) { /* padding: one-token segments */
            size_t i = (size_t)r * T + j;
            inputs[i] = eos;
            targets[i] = -1;
            doc_start[i] = j;
            if (token_index) token_index[i] = -1;
        }
    free(used);
    p->examples += placed;
    if (n_examples) *n_examples = placed;
    return rc;
}

/* The data position of a packer that holds an example back: the loader's
 * (epoch, pos), moved back over the held item, which was drawn but not
 * placed (count: the loader's items per epoch). */
static void position_before_held(int held, int64_t epoch, int64_t pos, int64_t count,
                                 int64_t *out_epoch, int64_t *out_pos) {
    *out_epoch = epoch;
    *out_pos = pos;
    if (!held) return;
    if (pos > 0) {
        *out_pos = pos - 1;
    } else {
        *out_epoch = epoch - 1;
        *out_pos = count - 1;
    }
}

void packer_position(const Packer *p, int64_t *epoch, int64_t *pos) {
    position_before_held(p->held, p->dl->epoch, p->dl->pos, p->dl->count, epoch, pos);
}

void packer_seek(Packer *p, int64_t epoch, int64_t pos) {
    p->held = 0;
    loader_seek(p->dl, epoch, pos);
}

/* ---------------------------------------------------------------- pairs */

void pair_packer_init(PairPacker *p, PrefLoader *pl, int max_pairs) {
    memset(p, 0, sizeof *p);
    p->pl = pl;
    p->T = pl->T;
    p->max_pairs = max_pairs;
    p->held_rows = xmalloc(4 * (size_t)pl->T * sizeof(int));
}

void pair_packer_free(PairPacker *p) {
    free(p->held_rows);
    memset(p, 0, sizeof *p);
}

static void pair_draw(PairPacker *p) {
    if (p->held) return;
    int T = p->T, *in = p->held_rows, *tg = p->held_rows + 2 * (size_t)T;
    /* pref_loader_next's layout for one pair: chosen row 0, rejected row 1 */
    pref_loader_next(p->pl, 1, in, tg, &p->held_id);
    PrefSpan s = pref_pair_span(p->pl->pd, p->held_id, T, p->pl->max_prompt_len,
                                p->pl->max_completion_len);
    int lc = s.prompt_len + s.chosen_len, lr = s.prompt_len + s.rejected_len;
    p->held_slots[0] = lc > 1 ? lc - 1 : 0;
    p->held_slots[1] = lr > 1 ? lr - 1 : 0;
    p->held = 1;
}

/* First row of used[0..rows) with room for n slots, or -1. */
static int first_fit(const int *used, int rows, int T, int n) {
    for (int r = 0; r < rows; r++)
        if (used[r] + n <= T) return r;
    return -1;
}

int pair_packer_next(PairPacker *p, int rows, int *inputs, int *targets, int *doc_start,
                     int *slot_map, int *in_u, int *tg_u, int64_t *pair_ids) {
    int T = p->T, eos = p->pl->pd->eos_id, K = 0;
    int *used = xcalloc((size_t)rows, sizeof *used);
    /* the pairs interleaved while K is unknown: sequence 2k + side, side 0
     * chosen, 1 rejected; slot_map holds (2k + side) * T + j until the end */
    int *in_i = xmalloc(2 * (size_t)p->max_pairs * T * sizeof(int));
    int *tg_i = xmalloc(2 * (size_t)p->max_pairs * T * sizeof(int));
    while (K < p->max_pairs) {
        pair_draw(p);
        int place[2]; /* the rows of chosen and rejected */
        place[0] = first_fit(used, rows, T, p->held_slots[0]);
        if (place[0] < 0) break;
        used[place[0]] += p->held_slots[0]; /* tentatively, so rejected sees it */
        place[1] = first_fit(used, rows, T, p->held_slots[1]);
        used[place[0]] -= p->held_slots[0];
        if (place[1] < 0) break;
        pair_ids[K] = p->held_id;
        for (int side = 0; side < 2; side++) {
            const int *in = p->held_rows + (size_t)side * T;       /* (T) */
            const int *tg = p->held_rows + (size_t)(2 + side) * T; /* (T) */
            int seq = 2 * K + side, r = place[side], n = p->held_slots[side];
            memcpy(in_i + (size_t)seq * T, in, (size_t)T * sizeof(int));
            memcpy(tg_i + (size_t)seq * T, tg, (size_t)T * sizeof(int));
            size_t at = (size_t)r * T + used[r];
            memcpy(inputs + at, in, (size_t)n * sizeof(int));
            memcpy(targets + at, tg, (size_t)n * sizeof(int));
            for (int j = 0; j < n; j++) {
                doc_start[at + j] = used[r];
                slot_map[at + j] = seq * T + j;
            }
            used[r] += n;
        }
        K++;
        p->held = 0;
    }
    for (int r = 0; r < rows; r++)
        for (int j = used[r]; j < T; j++) { /* padding: one-token segments */
            size_t i = (size_t)r * T + j;
            inputs[i] = eos;
            targets[i] = -1;
            doc_start[i] = j;
            slot_map[i] = -1;
        }
    /* interleaved -> pref_loader_next's layout: chosen rows [0, K), rejected [K, 2K) */
    for (int seq = 0; seq < 2 * K; seq++) {
        int row = seq % 2 ? K + seq / 2 : seq / 2;
        memcpy(in_u + (size_t)row * T, in_i + (size_t)seq * T, (size_t)T * sizeof(int));
        memcpy(tg_u + (size_t)row * T, tg_i + (size_t)seq * T, (size_t)T * sizeof(int));
    }
    for (size_t i = 0; i < (size_t)rows * T; i++)
        if (slot_map[i] >= 0) {
            int seq = slot_map[i] / T, j = slot_map[i] % T;
            slot_map[i] = (seq % 2 ? K + seq / 2 : seq / 2) * T + j;
        }
    free(in_i);
    free(tg_i);
    free(used);
    return K;
}

void pair_packer_position(const PairPacker *p, int64_t *epoch, int64_t *pos) {
    position_before_held(p->held, p->pl->epoch, p->pl->pos, p->pl->count, epoch, pos);
}

void pair_packer_seek(PairPacker *p, int64_t epoch, int64_t pos) {
    p->held = 0;
    pref_loader_seek(p->pl, epoch, pos);
}
