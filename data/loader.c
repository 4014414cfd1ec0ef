/* data/loader.c — cutting lm, sft and kd datasets into training batches
 * (the DataLoader of data/h5data.h): windows of an lm token stream, one
 * example per row for sft and kd, visited in an order shuffled per epoch from
 * (seed, epoch) so the data position is just (epoch, pos); and the MixLoader,
 * several such loaders drawn as one stream whose source for example i is a
 * pure function of (seed, i), so the stream does not depend on world size. */
#include <assert.h>
#include <hdf5.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/h5_internal.h"
#include "data/h5data.h"
#include "util/util.h"

/* ----------------------------------------------------------------- batching */

/* SplitMix64's finaliser: a bijection of 64-bit words with good avalanche. */
static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

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

/* A balanced Feistel network on 2h-bit words (L, R of h bits each): each
 * round maps (L, R) -> (R, L ^ F(R)), which is invertible whatever F is, so
 * the network is a bijection of [0, 4^h); walking the cycle from pos until
 * it lands below count restricts it to a bijection of [0, count) (Black and
 * Rogaway, "Ciphers with arbitrary finite domains", 2002). 4^h < 4 count, so
 * fewer than 4 evaluations are expected per position. */
#define PERMUTE_ROUNDS 4
int64_t epoch_permute(int64_t count, uint64_t seed, int64_t epoch, int shuffle, int64_t pos) {
    assert(pos >= 0 && pos < count);
    if (!shuffle || count <= 1) return pos;
    int bits = 1;
    while (bits < 63 && ((uint64_t)1 << bits) < (uint64_t)count) bits++;
    int h = (bits + 1) / 2;
    uint64_t mask = ((uint64_t)1 << h) - 1;
    uint64_t key = mix64(mix64(seed ^ 0x7065726D75746531ULL) + 0x9E3779B97F4A7C15ULL *
                                                                   ((uint64_t)epoch + 1));
    uint64_t x = (uint64_t)pos;
    do {
        uint64_t L = x >> h, R = x & mask;
        for (int r = 0; r < PERMUTE_ROUNDS; r++) {
            uint64_t F = mix64(key + 0xD1B54A32D192ED03ULL * (uint64_t)(r + 1) + R) & mask;
            uint64_t next = L ^ F;
            L = R;
            R = next;
        }
        x = (L << h) | R;
    } while (x >= (uint64_t)count);
    return (int64_t)x;
}

static void build_order(DataLoader *dl) {
    if (!dl->permute) epoch_order(dl->order, dl->count, dl->seed, dl->epoch, dl->shuffle);
}

/* The item visited at position pos of the current epoch. */
static int64_t item_at(const DataLoader *dl, int64_t epoch, int64_t pos) {
    int64_t k = dl->permute ? epoch_permute(dl->count, dl->seed, epoch, dl->shuffle, pos)
                            : dl->order[pos];
    return dl->subset ? dl->subset[k] : dl->first + k;
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
    dl->permute = ds->stream != NULL;
    if (!dl->permute) {
        dl->order = xmalloc((size_t)count * sizeof *dl->order);
        build_order(dl);
    }
    return 0;
}

void loader_use_permute(DataLoader *dl) {
    free(dl->order);
    dl->order = NULL;
    dl->permute = 1;
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
    if (!ds->has_role)
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
    if (ds->stream) {
        if (dataset_stream_role_scan(ds, id, items, count) != 0) return -1;
    } else {
        *items = xmalloc((size_t)(ds->n_docs > 0 ? ds->n_docs : 1) * sizeof(int64_t));
        *count = 0;
        for (int64_t i = 0; i < ds->n_docs; i++)
            if (ds->role[i] == id) (*items)[(*count)++] = i;
    }
    if (*count == 0) {
        free(*items);
        *items = NULL;
        return err_set("%s: role '%s' has no examples", ds->path, role);
    }
    return 0;
}

int64_t loader_count_truncated(const DataLoader *dl) {
    if (dl->ds->schema == SCHEMA_LM) return 0;
    if (dl->ds->stream)
        return dataset_stream_count_longer(dl->ds, dl->subset, dl->first, dl->count,
                                           (int64_t)dl->T + 1);
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

/* -------------------------------------------------------------- read-ahead
 * A streamed loader's background reader: one thread that reads the rows of
 * a list of items into its own buffers. The main thread asks for the next
 * batch's rows right after handing out a batch (prefetch_request) and takes
 * them at the next call (prefetch_take) when that call wants exactly those
 * items; otherwise they are dropped and the call reads synchronously, so the
 * read-ahead never changes what a loader returns. */
typedef struct Prefetch {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int state;               /* PF_IDLE, PF_WANTED (the thread reads), PF_DONE */
    int quit;
    const Dataset *ds;
    int T, n, cap;           /* rows asked for; rows the buffers hold */
    int64_t *items;          /* (cap) */
    int *in, *tg;            /* (cap, T) */
    int64_t truncated;       /* of the rows read, examples longer than a row */
    int rc;                  /* 0, or -1 with the thread's message in err */
    char err[1024];
} Prefetch;
enum { PF_IDLE, PF_WANTED, PF_DONE };

static void *prefetch_main(void *arg) {
    Prefetch *pf = arg;
    pthread_mutex_lock(&pf->mu);
    for (;;) {
        while (pf->state != PF_WANTED && !pf->quit) pthread_cond_wait(&pf->cv, &pf->mu);
        if (pf->quit) break;
        pthread_mutex_unlock(&pf->mu);
        int rc = 0;
        int64_t truncated = 0;
        for (int b = 0; b < pf->n && rc == 0; b++) {
            int r = dataset_row(pf->ds, pf->items[b], pf->T, pf->in + (size_t)b * pf->T,
                                pf->tg + (size_t)b * pf->T);
            if (r < 0) rc = -1;
            else truncated += r;
        }
        pthread_mutex_lock(&pf->mu);
        pf->rc = rc;
        pf->truncated = truncated;
        if (rc) snprintf(pf->err, sizeof pf->err, "%s", err_msg());
        pf->state = PF_DONE;
        pthread_cond_broadcast(&pf->cv);
    }
    pthread_mutex_unlock(&pf->mu);
    return NULL;
}

/* The reader of dl, started on first use; NULL when HDF5 is not thread-safe
 * (then every read is synchronous). */
static Prefetch *prefetch_of(DataLoader *dl) {
    if (dl->prefetch) return dl->prefetch;
    hbool_t threadsafe = 0;
    if (H5is_library_threadsafe(&threadsafe) < 0 || !threadsafe) return NULL;
    Prefetch *pf = xcalloc(1, sizeof *pf);
    pthread_mutex_init(&pf->mu, NULL);
    pthread_cond_init(&pf->cv, NULL);
    pf->ds = dl->ds;
    pf->T = dl->T;
    if (pthread_create(&pf->thread, NULL, prefetch_main, pf) != 0) {
        pthread_cond_destroy(&pf->cv);
        pthread_mutex_destroy(&pf->mu);
        free(pf);
        return NULL;
    }
    dl->prefetch = pf;
    return pf;
}

/* Waits for the reader's current job; 1 when it read exactly items (n of
 * them) with rows now in in/tg (row b at in + b*T) and the truncated ones
 * added to *truncated, 0 when not (nothing was asked for, or other items:
 * dropped), -1 (error set) when it read them and failed. The reader is idle
 * afterwards. */
static int prefetch_take(Prefetch *pf, const int64_t *items, int n, int *in, int *tg,
                         int64_t *truncated) {
    if (!pf) return 0;
    pthread_mutex_lock(&pf->mu);
    while (pf->state == PF_WANTED) pthread_cond_wait(&pf->cv, &pf->mu);
    int match = pf->state == PF_DONE && pf->n == n &&
                !memcmp(pf->items, items, (size_t)n * sizeof *items);
    int rc = 0;
    if (match && pf->rc) rc = err_set("%s", pf->err);
    else if (match) {
        memcpy(in, pf->in, (size_t)n * pf->T * sizeof *in);
        memcpy(tg, pf->tg, (size_t)n * pf->T * sizeof *tg);
        *truncated += pf->truncated;
        rc = 1;
    }
    pf->state = PF_IDLE;
    pthread_mutex_unlock(&pf->mu);
    return rc;
}

/* Asks the (idle) reader for the rows of items (n). */
static void prefetch_request(Prefetch *pf, const int64_t *items, int n) {
    if (!pf || n < 1) return;
    pthread_mutex_lock(&pf->mu);
    if (n > pf->cap) {
        pf->items = xrealloc(pf->items, (size_t)n * sizeof *pf->items);
        pf->in = xrealloc(pf->in, (size_t)n * pf->T * sizeof *pf->in);
        pf->tg = xrealloc(pf->tg, (size_t)n * pf->T * sizeof *pf->tg);
        pf->cap = n;
    }
    memcpy(pf->items, items, (size_t)n * sizeof *items);
    pf->n = n;
    pf->state = PF_WANTED;
    pthread_cond_broadcast(&pf->cv);
    pthread_mutex_unlock(&pf->mu);
}

static void prefetch_free(Prefetch *pf) {
    if (!pf) return;
    pthread_mutex_lock(&pf->mu);
    pf->quit = 1;
    pthread_cond_broadcast(&pf->cv);
    pthread_mutex_unlock(&pf->mu);
    pthread_join(pf->thread, NULL);
    pthread_cond_destroy(&pf->cv);
    pthread_mutex_destroy(&pf->mu);
    free(pf->items);
    free(pf->in);
    free(pf->tg);
    free(pf);
}

void loader_free(DataLoader *dl) {
    prefetch_free(dl->prefetch);
    free(dl->order);
    free(dl->subset);
    dl->prefetch = NULL;
    dl->order = NULL;
    dl->subset = NULL;
}

/* ------------------------------------------------------------------- rows */

int loader_next(DataLoader *dl, int B, int *inputs, int *targets) {
    return loader_next_items(dl, B, inputs, targets, NULL);
}

int loader_next_items(DataLoader *dl, int B, int *inputs, int *targets, int64_t *items) {
    return loader_next_slice(dl, B, 0, B, inputs, targets, items);
}

/* In-memory loaders: the order array, rebuilt at each epoch's end. */
static int next_in_memory(DataLoader *dl, int B, int first, int n, int *inputs, int *targets,
                          int64_t *items) {
    int T = dl->T;
    for (int b = 0; b < B; b++) {
        int64_t item = item_at(dl, dl->epoch, dl->pos);
        if (items) items[b] = item;
        if (b >= first && b < first + n)
            dl->truncated += dataset_row(dl->ds, item, T, inputs + (size_t)b * T,
                                         targets + (size_t)b * T);
        if (++dl->pos == dl->count) {
            dl->pos = 0;
            dl->epoch++;
            build_order(dl);
        }
    }
    return 0;
}

int loader_next_slice(DataLoader *dl, int B, int first, int n, int *inputs, int *targets,
                      int64_t *items) {
    assert(first >= 0 && n >= 0 && first + n <= B);
    if (!dl->permute) return next_in_memory(dl, B, first, n, inputs, targets, items);
    int T = dl->T;
    int64_t *all = xmalloc((size_t)(B > 0 ? B : 1) * sizeof *all); /* (B) */
    int64_t *ahead = xmalloc((size_t)(n > 0 ? n : 1) * sizeof *ahead); /* (n) */
    int64_t e = dl->epoch, p = dl->pos;
    for (int b = 0; b < B; b++) {
        all[b] = item_at(dl, e, p);
        if (++p == dl->count) p = 0, e++;
    }
    /* the same slice of the next batch (B items on): positions (e, p) + first + b */
    int64_t ae = e, ap = p;
    for (int b = 0; b < first; b++)
        if (++ap == dl->count) ap = 0, ae++;
    for (int b = 0; b < n; b++) {
        ahead[b] = item_at(dl, ae, ap);
        if (++ap == dl->count) ap = 0, ae++;
    }
    Prefetch *pf = n > 0 ? prefetch_of(dl) : dl->prefetch;
    int rc = prefetch_take(pf, all + first, n, inputs + (size_t)first * T,
                           targets + (size_t)first * T, &dl->truncated);
    if (rc == 0) { /* not read ahead: read now */
        for (int b = first; b < first + n && rc == 0; b++) {
            int r = dataset_row(dl->ds, all[b], T, inputs + (size_t)b * T,
                                targets + (size_t)b * T);
            if (r < 0) rc = -1;
            else dl->truncated += r;
        }
    } else if (rc == 1) {
        dl->read_ahead += n;
        rc = 0;
    }
    if (items) memcpy(items, all, (size_t)B * sizeof *items);
    dl->epoch = e;
    dl->pos = p;
    if (rc == 0) prefetch_request(pf, ahead, n);
    free(all);
    free(ahead);
    return rc;
}

/* ---------------------------------------------------------------- mixtures */

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

int mix_next(MixLoader *m, int B, int *inputs, int *targets, int *sources, int64_t *items) {
    return mix_next_slice(m, B, 0, B, inputs, targets, sources, items);
}

int mix_next_slice(MixLoader *m, int B, int first, int n, int *inputs, int *targets,
                   int *sources, int64_t *items) {
    int T = m->src[0].T, rc = 0;
    for (int b = 0; b < B; b++) {
        int s = mix_source(m, m->index++), read = b >= first && b < first + n;
        if (sources) sources[b] = s;
        if (loader_next_slice(&m->src[s], 1, 0, read, inputs + (size_t)b * T,
                              targets + (size_t)b * T, items ? items + b : NULL) != 0)
            rc = -1;
    }
    return rc;
}
