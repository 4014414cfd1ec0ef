/* fuzz/fuzz_h5data.c — the validating HDF5 readers of data/h5data.h (and
 * `data inspect` / `data validate`, data/inspect.c) on arbitrary small files.
 *
 * The input is a whole .h5 file. Beyond "no crash, no leak", what a reader
 * accepts must be safe to use: an lm/sft/kd file that dataset_open accepts is
 * cut into batches by the DataLoader (every input and target id inside the
 * vocabulary), its kd top-K rows are read, its role subsets listed; a pref file
 * that pref_dataset_open accepts is cut into DPO rows by the PrefLoader. The
 * libhdf5 underneath is not instrumented, so coverage counts only our side.
 * The same file is opened streamed too (dataset_open_stream), which checks
 * values as it reads them: what it returns must be as safe. */
#include "data/h5data.h"
#include "data/inspect.h"
#include "data/pref_batch.h"
#include "fuzz/fuzz.h"

enum { T = 8, B = 2 };

static void use_dataset(const Dataset *ds) {
    DataLoader dl;
    int64_t items = dataset_num_items(ds, T);
    if (items < 1) return;
    FUZZ_CHECK(loader_init(&dl, ds, T, 1, 1, 0, items) == 0, "loader_init: %s", err_msg());
    int in[B * T], tg[B * T];
    int64_t item_ids[B];
    for (int step = 0; step < 3; step++) {
        loader_next_items(&dl, B, in, tg, item_ids);
        for (int j = 0; j < B * T; j++) {
            FUZZ_CHECK(in[j] >= 0 && in[j] < ds->vocab_size, "input id %d", in[j]);
            FUZZ_CHECK(tg[j] >= -1 && tg[j] < ds->vocab_size, "target id %d", tg[j]);
        }
        if (ds->topk > 0) {
            int *ids = xmalloc((size_t)T * (size_t)ds->topk * sizeof *ids);
            float *logp = xmalloc((size_t)T * (size_t)ds->topk * sizeof *logp);
            for (int b = 0; b < B; b++) dataset_topk_row(ds, item_ids[b], T, ids, logp);
            for (int j = 0; j < T * ds->topk; j++)
                FUZZ_CHECK(ids[j] >= 0 && ids[j] < ds->vocab_size, "top-K id %d", ids[j]);
            free(ids);
            free(logp);
        }
    }
    loader_free(&dl);
    for (int r = 0; r < ds->n_roles; r++) {
        int64_t *subset = NULL, count = 0;
        if (dataset_role_items(ds, ds->role_names[r], &subset, &count) == 0) {
            DataLoader sl;
            if (loader_init_subset(&sl, ds, T, 1, 0, subset, count) == 0) {
                loader_next(&sl, B, in, tg);
                loader_free(&sl);
            }
            free(subset);
        }
    }
}

/* A streamed dataset (dataset_open_stream) validates as it reads: a read may
 * fail (with an error), but what one returns must be as safe as above, and
 * whatever the whole-file reader accepts the streamed one reads alike. */
static void use_streamed(const Dataset *ds, int whole_ok) {
    DataLoader dl;
    int64_t items = dataset_num_items(ds, T);
    if (items < 1) return;
    FUZZ_CHECK(loader_init(&dl, ds, T, 1, 1, 0, items) == 0, "loader_init: %s", err_msg());
    int in[B * T], tg[B * T];
    int64_t item_ids[B];
    for (int step = 0; step < 3; step++) {
        int rc = loader_next_items(&dl, B, in, tg, item_ids);
        FUZZ_CHECK(rc == 0 || !whole_ok, "streamed read of a valid file failed: %s", err_msg());
        if (rc != 0) continue;
        for (int j = 0; j < B * T; j++) {
            FUZZ_CHECK(in[j] >= 0 && in[j] < ds->vocab_size, "streamed input id %d", in[j]);
            FUZZ_CHECK(tg[j] >= -1 && tg[j] < ds->vocab_size, "streamed target id %d", tg[j]);
        }
        if (ds->topk > 0) {
            int *ids = xmalloc((size_t)T * (size_t)ds->topk * sizeof *ids);
            float *logp = xmalloc((size_t)T * (size_t)ds->topk * sizeof *logp);
            for (int b = 0; b < B; b++)
                if (dataset_topk_row(ds, item_ids[b], T, ids, logp) == 0)
                    for (int j = 0; j < T * ds->topk; j++)
                        FUZZ_CHECK(ids[j] >= 0 && ids[j] < ds->vocab_size, "top-K id %d", ids[j]);
            free(ids);
            free(logp);
        }
    }
    loader_free(&dl);
    int64_t *subset = NULL, count = 0;
    if (ds->n_roles > 0 && dataset_role_items(ds, ds->role_names[0], &subset, &count) == 0)
        free(subset);
}

static void use_pref(const PrefDataset *pd) {
    PrefLoader pl;
    FUZZ_CHECK(pref_loader_init(&pl, pd, T, 3, 4, 1, 1, 0, pd->n_pairs) == 0,
               "pref_loader_init: %s", err_msg());
    int in[2 * B * T], tg[2 * B * T];
    int64_t pairs[B];
    for (int step = 0; step < 3; step++) {
        pref_loader_next(&pl, B, in, tg, pairs);
        for (int j = 0; j < 2 * B * T; j++) {
            FUZZ_CHECK(in[j] >= 0 && in[j] < pd->vocab_size, "input id %d", in[j]);
            FUZZ_CHECK(tg[j] >= -1 && tg[j] < pd->vocab_size, "target id %d", tg[j]);
        }
        for (int b = 0; b < B; b++) FUZZ_CHECK(pairs[b] >= 0 && pairs[b] < pd->n_pairs, "pair");
    }
    pref_loader_free(&pl);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[600];
    fuzz_write(path, sizeof path, "data.h5", data, size);
    static FILE *devnull;
    if (!devnull) devnull = fopen("/dev/null", "w");

    Schema schema;
    int peek = dataset_peek_schema(path, &schema);
    Dataset ds;
    int whole_ok = dataset_open(&ds, path) == 0;
    if (whole_ok) {
        FUZZ_CHECK(peek == 0 && schema == ds.schema, "peek and open disagree on the schema");
        use_dataset(&ds);
        dataset_close(&ds);
    }
    if (dataset_open_stream(&ds, path) == 0) {
        FUZZ_CHECK(peek == 0 && schema == ds.schema, "peek and stream disagree on the schema");
        use_streamed(&ds, whole_ok);
        dataset_close(&ds);
    } else {
        FUZZ_CHECK(!whole_ok, "the streamed reader refused what dataset_open accepts: %s",
                   err_msg());
    }
    PrefDataset pd;
    if (pref_dataset_open(&pd, path) == 0) {
        FUZZ_CHECK(peek == 0 && schema == SCHEMA_PREF, "peek and open disagree on the schema");
        use_pref(&pd);
        pref_dataset_close(&pd);
    }
    data_validate_to(devnull, path);
    data_inspect_to(devnull, path, 2, "bytes");
    return 0;
}
