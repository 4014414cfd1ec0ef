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

/* Slots example `item` takes: its tokens cut to T+1, less one (the last
 * token is only a target). */
static int example_slots(const DataLoader *dl, int64_t item) {
    int64_t len = dl->ds->offsets[item + 1] - dl->ds->offsets[item];
    int64_t n = len < dl->T + 1 ? len : dl->T + 1;
    return n > 1 ? (int)(n - 1) : 0;
}

/* The next example into the held slot (from the loader unless one is held). */
static void draw(Packer *p) {
    if (p->held) return;
    loader_next_items(p->dl, 1, p->held_in, p->held_tg, &p->held_item);
    p->held_slots = example_slots(p->dl, p->held_item);
    p->held = 1;
}

void packer_next(Packer *p, int rows, int *inputs, int *targets, int *doc_start,
                 int64_t *token_index, int64_t *n_examples) {
    int T = p->T, eos = p->dl->ds->eos_id;
    int *used = xcalloc((size_t)rows, sizeof *used); /* (rows) slots filled */
    int64_t placed = 0, empty = 0;
    /* a whole epoch of one-token examples (no targets) ends the group too */
    while (empty < p->dl->count) {
        draw(p);
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
                token_index[at + j] = p->dl->ds->offsets[p->held_item] + j;
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
}

void packer_position(const Packer *p, int64_t *epoch, int64_t *pos) {
    *epoch = p->dl->epoch;
    *pos = p->dl->pos;
    if (!p->held) return;
    /* the held example was drawn but not placed: the position is before it */
    if (*pos > 0) {
        (*pos)--;
    } else {
        (*epoch)--;
        *pos = p->dl->count - 1;
    }
}

void packer_seek(Packer *p, int64_t epoch, int64_t pos) {
    p->held = 0;
    loader_seek(p->dl, epoch, pos);
}
