/* data/pref_batch.c — PrefDataset pairs -> chosen/rejected model rows, with
 * TRL's truncation and dropping and DataLoader's per-epoch shuffling (see
 * pref_batch.h). The pairs a loader visits are listed once at init, so the
 * shuffle permutes only kept pairs and a data position stays (epoch, pos). */
#include "data/pref_batch.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

static int64_t part_len(const PrefPart *part, int64_t pair) {
    return part->offsets[pair + 1] - part->offsets[pair];
}

static int64_t min64(int64_t a, int64_t b) {
    return a < b ? a : b;
}

PrefSpan pref_pair_span(const PrefDataset *pd, int64_t pair, int T, int max_prompt_len,
                        int max_completion_len) {
    assert(T >= 1 && pair >= 0 && pair < pd->n_pairs);
    int64_t n_prompt = part_len(&pd->prompt, pair);
    int64_t n_chosen = part_len(&pd->chosen, pair);
    int64_t n_rejected = part_len(&pd->rejected, pair);

    int64_t P = n_prompt;
    if (max_prompt_len > 0) P = min64(P, max_prompt_len); /* keep the end */
    int dropped = P >= (int64_t)T + 1;                     /* TRL 1.x drops the pair */
    P = min64(P, T);              /* a dropped pair's rows stay well formed all the same */
    int64_t room = (int64_t)T + 1 - P;                     /* max_length = T+1, keep_start */
    int64_t C = n_chosen, R = n_rejected;
    if (max_completion_len > 0) {
        C = min64(C, max_completion_len);
        R = min64(R, max_completion_len);
    }
    C = min64(C, room);
    R = min64(R, room);

    PrefSpan s = {
        .prompt_start = pd->prompt.offsets[pair] + (n_prompt - P),
        .prompt_len = (int)P,
        .chosen_len = (int)C,
        .rejected_len = (int)R,
        .truncated = P < n_prompt || C < n_chosen || R < n_rejected,
        .dropped = dropped,
    };
    return s;
}

/* One row: P prompt tokens then n completion tokens (P + n <= T + 1). */
static void fill_row(const PrefDataset *pd, const uint32_t *prompt, int P, const uint32_t *comp,
                     int n, int T, int *in, int *tg) {
    int L = P + n;
    assert(L <= T + 1);
    for (int j = 0; j < T; j++) {
        in[j] = j < L ? (int)(j < P ? prompt[j] : comp[j - P]) : pd->eos_id;
        int k = j + 1;
        tg[j] = (k >= P && k < L) ? (int)comp[k - P] : -1;
    }
}

int pref_pair_rows(const PrefDataset *pd, int64_t pair, int T, int max_prompt_len,
                   int max_completion_len, int *in_c, int *tg_c, int *in_r, int *tg_r) {
    PrefSpan s = pref_pair_span(pd, pair, T, max_prompt_len, max_completion_len);
    const uint32_t *prompt = pd->prompt.tokens + s.prompt_start;
    fill_row(pd, prompt, s.prompt_len, pd->chosen.tokens + pd->chosen.offsets[pair],
             s.chosen_len, T, in_c, tg_c);
    fill_row(pd, prompt, s.prompt_len, pd->rejected.tokens + pd->rejected.offsets[pair],
             s.rejected_len, T, in_r, tg_r);
    return s.truncated;
}

static void build_order(PrefLoader *pl) {
    epoch_order(pl->order, pl->count, pl->seed, pl->epoch, pl->shuffle);
}

int pref_loader_init(PrefLoader *pl, const PrefDataset *pd, int T, int max_prompt_len,
                     int max_completion_len, uint64_t seed, int shuffle, int64_t first,
                     int64_t count) {
    memset(pl, 0, sizeof *pl);
    if (T < 1) return err_set("%s: sequence length T=%d; it must be >= 1", pd->path, T);
    if (count < 1)
        return err_set("%s: empty pair range (first %lld, count %lld; the file holds %lld pairs)",
                       pd->path, (long long)first, (long long)count, (long long)pd->n_pairs);
    if (first < 0 || first > pd->n_pairs - count)
        return err_set("%s: pair range [%lld, %lld) lies outside the %lld pairs the file holds",
                       pd->path, (long long)first, (long long)(first + count),
                       (long long)pd->n_pairs);
    pl->pd = pd;
    pl->T = T;
    pl->max_prompt_len = max_prompt_len;
    pl->max_completion_len = max_completion_len;
    pl->shuffle = shuffle;
    pl->seed = seed;
    pl->first = first;
    pl->range = count;
    pl->pairs = xmalloc((size_t)count * sizeof *pl->pairs);
    for (int64_t i = first; i < first + count; i++) {
        PrefSpan sp = pref_pair_span(pd, i, T, max_prompt_len, max_completion_len);
        if (sp.dropped) {
            pl->n_dropped++;
            continue;
        }
        pl->n_truncated += sp.truncated;
        pl->pairs[pl->count++] = i;
    }
    if (pl->count == 0) {
        int64_t range = pl->range;
        pref_loader_free(pl);
        return err_set("%s: all %lld pairs of [%lld, %lld) are dropped: each prompt alone fills "
                       "the %d tokens of a row (seq_len + 1; TRL 1.x drops such pairs); raise "
                       "data.seq_len or set a max_prompt_len below it",
                       pd->path, (long long)range, (long long)first,
                       (long long)(first + range), T + 1);
    }
    pl->order = xmalloc((size_t)pl->count * sizeof *pl->order);
    build_order(pl);
    return 0;
}

void pref_loader_free(PrefLoader *pl) {
    free(pl->order);
    free(pl->pairs);
    pl->order = NULL;
    pl->pairs = NULL;
}

void pref_loader_seek(PrefLoader *pl, int64_t epoch, int64_t pos) {
    assert(epoch >= 0 && pos >= 0);
    epoch += pos / pl->count;
    pos %= pl->count;
    pl->pos = pos;
    if (pl->epoch != epoch) {
        pl->epoch = epoch;
        build_order(pl);
    }
}

void pref_loader_next(PrefLoader *pl, int B, int *inputs, int *targets, int64_t *pair_ids) {
    int T = pl->T;
    for (int b = 0; b < B; b++) {
        int64_t pair = pl->pairs[pl->order[pl->pos]];
        size_t c = (size_t)b * T, r = (size_t)(B + b) * T; /* rows b and B + b */
        pl->truncated += pref_pair_rows(pl->pd, pair, T, pl->max_prompt_len,
                                        pl->max_completion_len, inputs + c, targets + c,
                                        inputs + r, targets + r);
        if (pair_ids) pair_ids[b] = pair;
        if (++pl->pos == pl->count) {
            pl->pos = 0;
            pl->epoch++;
            build_order(pl);
        }
    }
}
