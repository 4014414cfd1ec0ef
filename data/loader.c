/* data/loader.c — cutting lm, sft and kd datasets into training batches
 * (the DataLoader of data/h5data.h): windows of an lm token stream, one
 * example per row for sft and kd, visited in an order shuffled per epoch from
 * (seed, epoch) so the data position is just (epoch, pos); and the MixLoader,
 * several such loaders drawn as one stream whose source for example i is a
 * pure function of (seed, i), so the stream does not depend on world size. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/h5data.h"
#include "util/util.h"

/* ----------------------------------------------------------------- batching */

int64_t dataset_num_items(const Dataset *ds, int T) {
    if (T < 1) return 0;
    if (ds->schema == SCHEMA_LM) return ds->n_tokens >= 1 ? (ds->n_tokens - 1) / T : 0;
    return ds->n_docs;
}

void epoch_order(int64_t *order, int64_t count, uint64_t seed, int64_t epoch, int shuffle) {
    for (int64_t i = 0; i < count; i++) order[i] = i;
    if (!shuffle) return;
    Rng r;
    rng_seed(&r, seed * 1000003ULL + (uint64_t)epoch);
    for (int64_t i = count - 1; i > 0; i--) {
        int64_t j = (int64_t)rng_below(&r, (uint64_t)i + 1);
        int64_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

static void build_order(DataLoader *dl) {
    epoch_order(dl->order, dl->count, dl->seed, dl->epoch, dl->shuffle);
}

int loader_init(DataLoader *dl, const Dataset *ds, int T, uint64_t seed, int shuffle,
                int64_t first, int64_t count) {
    memset(dl, 0, sizeof *dl);
    if (T < 1) return err_set("%s: sequence length T=%d; it must be >= 1", ds->path, T);
    int64_t items = dataset_num_items(ds, T);
    if (count < 1)
        return err_set("%s: empty item range (first %lld, count %lld; the file offers %lld "
                       "items at T=%d)%s",
                       ds->path, (long long)first, (long long)count, (long long)items, T,
                       items == 0 ? "; use a shorter sequence length or more data" : "");
    if (first < 0 || first > items - count)
        return err_set("%s: item range [%lld, %lld) lies outside the %lld items the file offers "
                       "at T=%d",
                       ds->path, (long long)first, (long long)(first + count), (long long)items,
                       T);
    dl->ds = ds;
    dl->T = T;
    dl->shuffle = shuffle;
    dl->seed = seed;
    dl->first = first;
    dl->count = count;
    dl->order = xmalloc((size_t)count * sizeof *dl->order);
    build_order(dl);
    return 0;
}

int loader_init_subset(DataLoader *dl, const Dataset *ds, int T, uint64_t seed, int shuffle,
                       const int64_t *items, int64_t count) {
    int64_t n = dataset_num_items(ds, T);
    for (int64_t i = 0; i < count; i++)
        if (items[i] < 0 || items[i] >= n)
            return err_set("%s: item %lld is outside the %lld items the file offers", ds->path,
                           (long long)items[i], (long long)n);
    if (loader_init(dl, ds, T, seed, shuffle, 0, count < n ? count : n) != 0) return -1;
    if (count > n) return err_set("%s: %lld items listed, the file has %lld", ds->path,
                                  (long long)count, (long long)n);
    dl->subset = xmalloc((size_t)count * sizeof(int64_t));
    memcpy(dl->subset, items, (size_t)count * sizeof(int64_t));
    return 0;
}

int dataset_role_items(const Dataset *ds, const char *role, int64_t **items, int64_t *count) {
    if (!ds->role)
        return err_set("%s: data.role '%s' selects examples by role, but the file has no role "
                       "column (build it with --role-field or --train-roles)",
                       ds->path, role);
    int id = -1;
    for (int r = 0; r < ds->n_roles; r++)
        if (!strcmp(ds->role_names[r], role)) id = r;
    if (id < 0) {
        char names[512] = "";
        for (int r = 0; r < ds->n_roles; r++)
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", r ? ", " : "",
                     ds->role_names[r]);
        return err_set("%s: no role named '%s'; the file's roles are: %s", ds->path, role,
                       names[0] ? names : "(unnamed)");
    }
    *items = xmalloc((size_t)(ds->n_docs > 0 ? ds->n_docs : 1) * sizeof(int64_t));
    *count = 0;
    for (int64_t i = 0; i < ds->n_docs; i++)
        if (ds->role[i] == id) (*items)[(*count)++] = i;
    if (*count == 0) {
        free(*items);
        *items = NULL;
        return err_set("%s: role '%s' has no examples", ds->path, role);
    }
    return 0;
}

void loader_free(DataLoader *dl) {
    free(dl->order);
    free(dl->subset);
    dl->order = NULL;
    dl->subset = NULL;
}

int64_t loader_count_truncated(const DataLoader *dl) {
    if (dl->ds->schema == SCHEMA_LM) return 0;
    int64_t n = 0;
    for (int64_t i = 0; i < dl->count; i++) {
        int64_t item = dl->subset ? dl->subset[i] : dl->first + i;
        n += dl->ds->offsets[item + 1] - dl->ds->offsets[item] > (int64_t)dl->T + 1;
    }
    return n;
}

void loader_seek(DataLoader *dl, int64_t epoch, int64_t pos) {
    assert(epoch >= 0 && pos >= 0);
    epoch += pos / dl->count; /* pos == count is the start of the next epoch */
    pos %= dl->count;
    dl->pos = pos;
    if (dl->epoch != epoch) {
        dl->epoch = epoch;
        build_order(dl);
    }
}

static void lm_row(const Dataset *ds, int64_t item, int T, int *in, int *tg) {
    const uint32_t *w = ds->tokens + item * T; /* (T+1) */
    for (int j = 0; j < T; j++) {
        in[j] = (int)w[j];
        tg[j] = (int)w[j + 1];
    }
}

static int sft_row(const Dataset *ds, int64_t item, int T, int *in, int *tg) {
    int64_t start = ds->offsets[item], len = ds->offsets[item + 1] - start;
    int64_t n = len < T + 1 ? len : T + 1;
    const uint32_t *tok = ds->tokens + start;
    const uint8_t *mask = ds->loss_mask + start;
    for (int j = 0; j < T; j++) {
        in[j] = j < n ? (int)tok[j] : ds->eos_id;
        tg[j] = (j + 1 < n && mask[j + 1]) ? (int)tok[j + 1] : -1;
    }
    return len > T + 1;
}

void dataset_topk_row(const Dataset *ds, int64_t item, int T, int *ids, float *logp) {
    int K = ds->topk;
    assert(K > 0);
    int64_t start = ds->offsets[item], len = ds->offsets[item + 1] - start;
    for (int j = 0; j < T; j++)
        for (int k = 0; k < K; k++) {
            int in = j < len;
            ids[(size_t)j * K + k] = in ? (int)ds->topk_ids[(start + j) * K + k] : 0;
            logp[(size_t)j * K + k] = in ? ds->topk_logp[(start + j) * K + k] : 0.0f;
        }
}

void loader_next(DataLoader *dl, int B, int *inputs, int *targets) {
    loader_next_items(dl, B, inputs, targets, NULL);
}

void loader_next_items(DataLoader *dl, int B, int *inputs, int *targets, int64_t *items) {
    int T = dl->T;
    for (int b = 0; b < B; b++) {
        int64_t item = dl->subset ? dl->subset[dl->order[dl->pos]] : dl->first + dl->order[dl->pos];
        if (items) items[b] = item;
        int *in = inputs + (size_t)b * T, *tg = targets + (size_t)b * T;
        if (dl->ds->schema == SCHEMA_LM) lm_row(dl->ds, item, T, in, tg);
        else dl->truncated += sft_row(dl->ds, item, T, in, tg);
        if (++dl->pos == dl->count) {
            dl->pos = 0;
            dl->epoch++;
            build_order(dl);
        }
    }
}

/* ---------------------------------------------------------------- mixtures */

/* SplitMix64's finaliser: a bijection of 64-bit words with good avalanche. */
static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

int mix_init(MixLoader *m, const Dataset *const *ds, const double *weights,
             const int64_t *counts, int n, int T, uint64_t seed, int shuffle) {
    memset(m, 0, sizeof *m);
    assert(n >= 1);
    m->n = n;
    m->seed = seed;
    m->src = xcalloc((size_t)n, sizeof *m->src);
    m->cum = xmalloc((size_t)n * sizeof *m->cum);
    double total = 0;
    for (int s = 0; s < n; s++) total += weights[s];
    double run = 0;
    for (int s = 0; s < n; s++) {
        run += weights[s];
        m->cum[s] = s == n - 1 ? 1.0 : run / total;
        /* each source its own permutations, apart from the other sources' */
        if (loader_init(&m->src[s], ds[s], T, mix64(seed ^ mix64((uint64_t)s + 1)), shuffle, 0,
                        counts ? counts[s] : dataset_num_items(ds[s], T)) != 0) {
            mix_free(m);
            return -1;
        }
    }
    return 0;
}

void mix_free(MixLoader *m) {
    if (m->src)
        for (int s = 0; s < m->n; s++) loader_free(&m->src[s]);
    free(m->src);
    free(m->cum);
    memset(m, 0, sizeof *m);
}

int mix_source(const MixLoader *m, int64_t i) {
    uint64_t h = mix64(mix64(m->seed ^ 0x6D69785F73726373ULL) + 0x9E3779B97F4A7C15ULL * ((uint64_t)i + 1));
    double u = (double)(h >> 11) * 0x1.0p-53; /* [0, 1) */
    for (int s = 0; s < m->n - 1; s++)
        if (u < m->cum[s]) return s;
    return m->n - 1;
}

int64_t mix_items(const MixLoader *m) {
    int64_t n = 0;
    for (int s = 0; s < m->n; s++) n += m->src[s].count;
    return n;
}

void mix_consumed(const MixLoader *m, int64_t *consumed) {
    for (int s = 0; s < m->n; s++)
        consumed[s] = m->src[s].epoch * m->src[s].count + m->src[s].pos;
}

void mix_seek(MixLoader *m, int64_t index, const int64_t *consumed) {
    assert(index >= 0);
    int64_t *replayed = NULL;
    if (!consumed) {
        replayed = xcalloc((size_t)m->n, sizeof *replayed);
        for (int64_t i = 0; i < index; i++) replayed[mix_source(m, i)]++;
        consumed = replayed;
    }
    for (int s = 0; s < m->n; s++) loader_seek(&m->src[s], 0, consumed[s]);
    m->index = index;
    free(replayed);
}

void mix_next(MixLoader *m, int B, int *inputs, int *targets, int *sources, int64_t *items) {
    int T = m->src[0].T;
    for (int b = 0; b < B; b++) {
        int s = mix_source(m, m->index++);
        if (sources) sources[b] = s;
        loader_next_items(&m->src[s], 1, inputs + (size_t)b * T, targets + (size_t)b * T,
                          items ? items + b : NULL);
    }
}
