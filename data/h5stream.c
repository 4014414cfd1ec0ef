/* data/h5stream.c — streamed lm, sft and kd datasets (dataset_open_stream in
 * h5data.h): the file stays open and rows are read on demand by HDF5
 * hyperslab, so memory does not grow with the file.
 *
 * Opening reads metadata only (attributes, dtypes, extents, the first and
 * last offsets; a contiguous column's storage against the file size); every
 * value a read brings in is validated then, with the same rules and the same
 * kind of message as dataset_open's full pass, naming the absolute index,
 * and a chunked column's chunks are checked to be stored and inside the file
 * as reads reach them (counting them all at open would walk the whole chunk
 * index). Memory is bounded whatever the file's size: each column has its
 * own chunk cache of DATASET_STREAM_CACHE bytes (H5Pset_chunk_cache; a
 * window of T+1 tokens touches one or two chunks of the writer's 64 Ki
 * entries) and the file's metadata cache is held at DATASET_STREAM_MDC.
 *
 * One mutex per dataset serialises our reads: the loader's read-ahead thread
 * and the main thread (kd's teacher rows, validation) share the open ids and
 * the HDF5 error stack's thread-local message. */
#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/h5_internal.h"
#include "data/h5data.h"
#include "util/util.h"

enum { C_TOKENS, C_OFFSETS, C_MASK, C_ROLE, C_TASK, C_TOPK_IDS, C_TOPK_LOGP, N_COLS };
static const char *const col_name[N_COLS] = {"tokens", "offsets", "loss_mask", "role",
                                             "task", "teacher_topk_ids", "teacher_topk_logp"};

struct DatasetStream {
    hid_t file;
    hid_t col[N_COLS];         /* H5I_INVALID_HID when absent */
    int64_t chunk_rows[N_COLS]; /* chunked columns: rows per chunk (0: contiguous, compact) */
    hsize_t file_size;
    pthread_mutex_t lock;
};

#define SCAN_CHUNK 65536 /* entries per read of a whole-column scan */

/* ------------------------------------------------------------------ opening */

/* Opens column c (rank 1, or 2 for the teacher matrices) with a bounded chunk
 * cache and checks its dtype, rank and storage; its extent into dims.
 * 1 if absent and optional, 0 if open, -1 on error. */
static int open_column(Dataset *ds, int c, int required, int rank, hsize_t dims[2]) {
    struct DatasetStream *s = ds->stream;
    const char *p = ds->path, *name = col_name[c];
    htri_t exists = H5Lexists(s->file, name, H5P_DEFAULT);
    if (exists < 0)
        return err_set("%s: cannot look up dataset '%s' (HDF5: %s)", p, name, h5_reason());
    if (exists == 0) {
        if (!required) return 1;
        return err_set("%s: dataset '%s' is missing (schema '%s' needs it); %s", p, name,
                       schema_name(ds->schema), REBUILD_HINT);
    }
    hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
    H5Pset_chunk_cache(dapl, 521, DATASET_STREAM_CACHE, 0.75);
    hid_t dset = H5Dopen2(s->file, name, dapl);
    H5Pclose(dapl);
    if (dset < 0)
        return err_set("%s: '%s' is not a readable dataset (HDF5: %s); %s", p, name,
                       h5_reason(), REBUILD_HINT);
    s->col[c] = dset;
    hid_t type = H5Dget_type(dset), space = H5Dget_space(dset);
    int rc = 0, ndims = H5Sget_simple_extent_ndims(space);
    char tn[64];
    int ok = c == C_TOPK_LOGP ? H5Tget_class(type) == H5T_FLOAT && H5Tget_size(type) == 4
             : c == C_TOKENS || c == C_TOPK_IDS ? h5_dtype_ok(type, COL_TOKENS)
             : c == C_OFFSETS                    ? h5_dtype_ok(type, COL_INT64)
                                                 : h5_dtype_ok(type, COL_UINT8);
    const char *expect = c == C_TOPK_LOGP ? "float32"
                         : c == C_TOKENS || c == C_TOPK_IDS ? h5_kind_expect[COL_TOKENS]
                         : c == C_OFFSETS                    ? h5_kind_expect[COL_INT64]
                                                             : h5_kind_expect[COL_UINT8];
    dims[0] = dims[1] = 0;
    if (!ok) {
        h5_dtype_name(type, tn, sizeof tn);
        rc = err_set("%s: dataset '%s' has dtype %s; expected %s; %s", p, name, tn, expect,
                     REBUILD_HINT);
    } else if (ndims != rank || H5Sget_simple_extent_type(space) != H5S_SIMPLE) {
        rc = err_set("%s: dataset '%s' has %d dimensions; expected %s; %s", p, name,
                     ndims < 0 ? 0 : ndims, rank == 1 ? "a 1-D array" : "(n_tokens, K)",
                     REBUILD_HINT);
    } else {
        H5Sget_simple_extent_dims(space, dims, NULL);
        uint64_t n = rank == 1 ? dims[0]
                     : dims[1] && dims[0] > UINT64_MAX / dims[1] ? UINT64_MAX
                                                                 : dims[0] * dims[1];
        /* A chunked column's chunks are checked as reads reach them
         * (check_chunks): counting them all here walks the whole chunk index,
         * whose memory grows with the file. Other layouts are one extent. */
        hid_t dcpl = H5Dget_create_plist(dset);
        hsize_t chunk[2] = {0, 0};
        if (dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED &&
            H5Pget_chunk(dcpl, rank, chunk) == rank && chunk[0] > 0)
            s->chunk_rows[c] = (int64_t)chunk[0];
        else
            rc = h5_check_stored(s->file, dset, type, space, p, name, n);
        if (dcpl >= 0) H5Pclose(dcpl);
    }
    H5Sclose(space);
    H5Tclose(type);
    return rc;
}

/* The chunks of column c that rows [first, first + n) lie in are stored, and
 * inside the file: HDF5 reads a chunk that was never written as zeros (token
 * 0, the mark of a write cut short), and a chunk past the end of a truncated
 * file as an error without the file's name. One index lookup per chunk. */
static int check_chunks(const Dataset *ds, int c, int64_t first, int64_t n) {
    const struct DatasetStream *s = ds->stream;
    int64_t per = s->chunk_rows[c];
    for (int64_t k = first / per; k <= (first + n - 1) / per; k++) {
        hsize_t at[2] = {(hsize_t)(k * per), 0}, size = 0;
        haddr_t addr = HADDR_UNDEF;
        unsigned filters = 0;
        if (H5Dget_chunk_info_by_coord(s->col[c], at, &filters, &addr, &size) < 0 ||
            addr == HADDR_UNDEF)
            return err_set("%s: dataset '%s': entries [%lld, %lld) are not stored in the file "
                           "(they would read as zeros): the file is incomplete, written to a "
                           "full disk or interrupted; %s",
                           ds->path, col_name[c], (long long)(k * per),
                           (long long)((k + 1) * per), REBUILD_HINT);
        if (addr + size > s->file_size)
            return err_set("%s: dataset '%s': entries [%lld, %lld) lie at bytes [%llu, %llu) "
                           "but the file has %llu bytes: the file is truncated or corrupt; %s",
                           ds->path, col_name[c], (long long)(k * per),
                           (long long)((k + 1) * per), (unsigned long long)addr,
                           (unsigned long long)(addr + size),
                           (unsigned long long)s->file_size, REBUILD_HINT);
    }
    return 0;
}

/* Entries [first, first + n) of column c (rows of width columns when width >
 * 0) into buf as memtype; the caller holds the lock. 0 or -1 (error set). */
static int read_range_locked(const Dataset *ds, int c, hid_t memtype, int64_t first, int64_t n,
                             int width, void *buf) {
    if (n <= 0) return 0;
    if (ds->stream->chunk_rows[c] > 0 && check_chunks(ds, c, first, n) != 0) return -1;
    hid_t dset = ds->stream->col[c];
    int rank = width > 0 ? 2 : 1;
    hsize_t start[2] = {(hsize_t)first, 0}, count[2] = {(hsize_t)n, (hsize_t)width};
    hid_t fs = H5Dget_space(dset), ms = H5Screate_simple(rank, count, NULL);
    herr_t rc = fs < 0 || ms < 0 ? -1
                                 : H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count,
                                                       NULL);
    if (rc >= 0) rc = H5Dread(dset, memtype, ms, fs, H5P_DEFAULT, buf);
    if (rc < 0) h5_reason();
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    if (rc < 0)
        return err_set("%s: cannot read entries [%lld, %lld) of dataset '%s' (HDF5: %s); the "
                       "file may be truncated or corrupt, or the disk failed; %s",
                       ds->path, (long long)first, (long long)(first + n), col_name[c], h5_why,
                       REBUILD_HINT);
    return 0;
}

static int read_range(const Dataset *ds, int c, hid_t memtype, int64_t first, int64_t n,
                      int width, void *buf) {
    pthread_mutex_lock(&ds->stream->lock);
    int rc = read_range_locked(ds, c, memtype, first, n, width, buf);
    pthread_mutex_unlock(&ds->stream->lock);
    return rc;
}

/* offsets[i] alone. */
static int read_offset(const Dataset *ds, int64_t i, int64_t *v) {
    return read_range(ds, C_OFFSETS, H5T_NATIVE_INT64, i, 1, 0, v);
}

/* Optional tag column c (role, task) and its names attribute. */
static int open_tag(Dataset *ds, int c, const char *names_attr, char ***names, int *n_names,
                    int *has) {
    if (h5_attr_strings(ds->stream->file, ds->path, names_attr, names, n_names) < 0) return -1;
    hsize_t dims[2];
    int rc = open_column(ds, c, 0, 1, dims);
    if (rc < 0) return -1;
    if (rc > 0) return 0;
    if ((int64_t)dims[0] != ds->n_docs)
        return err_set("%s: dataset '%s' has %lld entries but there are %lld examples (one "
                       "per example); %s",
                       ds->path, col_name[c], (long long)dims[0], (long long)ds->n_docs,
                       REBUILD_HINT);
    *has = 1;
    return 0;
}

static int open_sft_columns(Dataset *ds) {
    const char *p = ds->path;
    hsize_t dims[2];
    if (open_column(ds, C_MASK, 1, 1, dims) != 0) return -1;
    if ((int64_t)dims[0] != ds->n_tokens)
        return err_set("%s: dataset 'loss_mask' has %lld entries but 'tokens' has %lld (one "
                       "mask value per token); %s",
                       p, (long long)dims[0], (long long)ds->n_tokens, REBUILD_HINT);
    if (open_tag(ds, C_ROLE, "roles", &ds->role_names, &ds->n_roles, &ds->has_role) != 0 ||
        open_tag(ds, C_TASK, "tasks", &ds->task_names, &ds->n_tasks, &ds->has_task) != 0)
        return -1;
    if (ds->schema != SCHEMA_KD) return 0;
    hsize_t d1[2] = {0, 0}, d2[2] = {0, 0};
    int a = open_column(ds, C_TOPK_IDS, 0, 2, d1);
    if (a < 0) return -1;
    int b = open_column(ds, C_TOPK_LOGP, 0, 2, d2);
    if (b < 0) return -1;
    int rc = topk_shapes_check(ds, a, b, (int64_t)d1[0], (int64_t)d1[1], (int64_t)d2[0],
                               (int64_t)d2[1]);
    return rc < 0 ? -1 : 0;
}

static int stream_read_meta(Dataset *ds) {
    const char *p = ds->path;
    if (h5_read_attributes(ds, ds->stream->file, p) != 0) return -1;
    hsize_t dims[2];
    if (open_column(ds, C_TOKENS, 1, 1, dims) != 0) return -1;
    ds->n_tokens = (int64_t)dims[0];
    if (open_column(ds, C_OFFSETS, 1, 1, dims) != 0) return -1;
    int64_t n_offsets = (int64_t)dims[0];
    if (n_offsets < 1)
        return err_set("%s: dataset 'offsets' has length 0; it must hold n_docs+1 entries "
                       "starting with 0; %s",
                       p, REBUILD_HINT);
    if (n_offsets == 1 || ds->n_tokens == 0)
        return err_set("%s: the dataset is empty (%lld documents, %lld tokens); build it from "
                       "non-empty input with `retort data build`",
                       p, (long long)(n_offsets - 1), (long long)ds->n_tokens);
    int64_t o0, on;
    if (read_offset(ds, 0, &o0) != 0 || read_offset(ds, n_offsets - 1, &on) != 0) return -1;
    if (o0 != 0)
        return err_set("%s: dataset 'offsets': offsets[0]=%lld, expected 0 (offsets hold "
                       "n_docs+1 entries starting at 0); %s",
                       p, (long long)o0, REBUILD_HINT);
    if (on != ds->n_tokens)
        return err_set("%s: dataset 'offsets': last entry offsets[%lld]=%lld but dataset "
                       "'tokens' holds %lld tokens (they must be equal); %s",
                       p, (long long)(n_offsets - 1), (long long)on, (long long)ds->n_tokens,
                       REBUILD_HINT);
    ds->n_docs = n_offsets - 1;
    if (ds->schema != SCHEMA_LM && open_sft_columns(ds) != 0) return -1;
    return 0;
}

/* HDF5's metadata cache (object headers, the B-tree nodes of chunk
 * indices) adapts between its default 1 and 32 MiB, and random windows over
 * a large file's chunk index fill it: measured on a 5 GB lm file, 3000
 * batches of 8 windows left 10 MiB more heap in use than on a 100 MB file at
 * a 1 MiB cache (the decoded nodes take several times the on-disk size the
 * cache counts), 2.2 MiB more at DATASET_STREAM_MDC. The nodes it drops are
 * re-read, mostly from the page cache. */
#define DATASET_STREAM_MDC (256u << 10)
static void bound_metadata_cache(hid_t file) {
    H5AC_cache_config_t mdc;
    memset(&mdc, 0, sizeof mdc);
    mdc.version = H5AC__CURR_CACHE_CONFIG_VERSION;
    if (H5Fget_mdc_config(file, &mdc) < 0) return;
    mdc.set_initial_size = 1;
    mdc.initial_size = DATASET_STREAM_MDC;
    mdc.min_size = DATASET_STREAM_MDC / 2;
    mdc.max_size = DATASET_STREAM_MDC;
    H5Fset_mdc_config(file, &mdc); /* a refusal leaves HDF5's default bound, 32 MiB */
}

int dataset_open_stream(Dataset *ds, const char *path) {
    memset(ds, 0, sizeof *ds);
    struct DatasetStream *s = xcalloc(1, sizeof *s);
    for (int c = 0; c < N_COLS; c++) s->col[c] = H5I_INVALID_HID;
    pthread_mutex_init(&s->lock, NULL);
    s->file = h5_open_named(ds->path, sizeof ds->path, path);
    ds->stream = s;
    if (s->file >= 0) {
        bound_metadata_cache(s->file);
        if (H5Fget_filesize(s->file, &s->file_size) < 0) s->file_size = 0;
    }
    if (s->file < 0 || stream_read_meta(ds) != 0) {
        dataset_close(ds);
        return -1;
    }
    return 0;
}

void dataset_stream_close(Dataset *ds) {
    struct DatasetStream *s = ds->stream;
    for (int c = 0; c < N_COLS; c++)
        if (s->col[c] >= 0) H5Dclose(s->col[c]);
    if (s->file >= 0) H5Fclose(s->file);
    pthread_mutex_destroy(&s->lock);
    free(s);
    for (int i = 0; i < ds->n_roles; i++) free(ds->role_names[i]);
    free(ds->role_names);
    for (int i = 0; i < ds->n_tasks; i++) free(ds->task_names[i]);
    free(ds->task_names);
    memset(ds, 0, sizeof *ds);
}

int dataset_stream_auto(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0)
        return err_set("%s: cannot open dataset: %s (build one with `retort data build`)", path,
                       strerror(errno));
    return (int64_t)st.st_size > DATASET_STREAM_AUTO_BYTES;
}

/* ------------------------------------------------------------------- values */

static int check_tokens(const Dataset *ds, const uint32_t *t, int64_t first, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (t[i] >= (uint32_t)ds->vocab_size)
            return err_set("%s: dataset 'tokens': tokens[%lld]=%u is >= vocab_size %d; rebuild "
                           "the dataset with the model's tokenizer (`retort data build`), or "
                           "fix vocab_size (model.vocab_size) if the ids are right",
                           ds->path, (long long)(first + i), t[i], ds->vocab_size);
    return 0;
}

/* An example's offsets pair, checked: ordered and inside the token stream. */
static int example_span(const Dataset *ds, int64_t item, int64_t *start, int64_t *len) {
    int64_t o[2];
    if (read_range(ds, C_OFFSETS, H5T_NATIVE_INT64, item, 2, 0, o) != 0) return -1;
    if (o[0] < 0 || o[1] < o[0] || o[1] > ds->n_tokens)
        return err_set("%s: dataset 'offsets': offsets[%lld]=%lld, offsets[%lld]=%lld (offsets "
                       "must be non-decreasing from 0 to the %lld tokens); %s",
                       ds->path, (long long)item, (long long)o[0], (long long)(item + 1),
                       (long long)o[1], (long long)ds->n_tokens, REBUILD_HINT);
    *start = o[0];
    *len = o[1] - o[0];
    return 0;
}

static int stream_row(const Dataset *ds, int64_t item, int T, int *in, int *tg) {
    if (ds->schema == SCHEMA_LM) {
        uint32_t *w = xmalloc((size_t)(T + 1) * sizeof *w); /* (T+1) */
        int64_t first = item * T;
        int rc = read_range(ds, C_TOKENS, H5T_NATIVE_UINT32, first, T + 1, 0, w);
        if (rc == 0) rc = check_tokens(ds, w, first, T + 1);
        for (int j = 0; j < T && rc == 0; j++) {
            in[j] = (int)w[j];
            tg[j] = (int)w[j + 1];
        }
        free(w);
        return rc;
    }
    int64_t start, len;
    if (example_span(ds, item, &start, &len) != 0) return -1;
    int64_t n = len < T + 1 ? len : T + 1;
    uint32_t *tok = xmalloc((size_t)(n ? n : 1) * sizeof *tok);
    uint8_t *mask = xmalloc((size_t)(n ? n : 1));
    pthread_mutex_lock(&ds->stream->lock);
    int rc = read_range_locked(ds, C_TOKENS, H5T_NATIVE_UINT32, start, n, 0, tok);
    if (rc == 0) rc = read_range_locked(ds, C_MASK, H5T_NATIVE_UINT8, start, n, 0, mask);
    pthread_mutex_unlock(&ds->stream->lock);
    if (rc == 0) rc = check_tokens(ds, tok, start, n);
    for (int64_t j = 0; j < n && rc == 0; j++)
        if (mask[j] > 1)
            rc = err_set("%s: dataset 'loss_mask': loss_mask[%lld]=%u; values must be 0 or 1; %s",
                         ds->path, (long long)(start + j), mask[j], REBUILD_HINT);
    for (int j = 0; j < T && rc == 0; j++) {
        in[j] = j < n ? (int)tok[j] : ds->eos_id;
        tg[j] = (j + 1 < n && mask[j + 1]) ? (int)tok[j + 1] : -1;
    }
    free(tok);
    free(mask);
    return rc < 0 ? -1 : len > T + 1;
}

static int stream_tag(const Dataset *ds, int c, int64_t item, int n_names, int *out) {
    uint8_t v;
    if (read_range(ds, c, H5T_NATIVE_UINT8, item, 1, 0, &v) != 0) return -1;
    if (n_names > 0 && v >= n_names)
        return err_set("%s: dataset '%s': %s[%lld]=%u but attribute '%ss' names only %d; %s",
                       ds->path, col_name[c], col_name[c], (long long)item, v, col_name[c],
                       n_names, REBUILD_HINT);
    *out = v;
    return 0;
}

/* The checks of h5data.c's validate_topk on rows [first, first + rows). */
#define TOPK_LOGP_SLACK 1e-6f
#define TOPK_HINT                                                                         \
    "regenerate the rows with `retort generate --out X.h5 --store-topk K`, which checks " \
    "each row, or fix the tool that wrote them"
static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}
static int check_topk(const Dataset *ds, const uint32_t *ids, const float *logp, int64_t first,
                      int64_t rows) {
    int K = ds->topk;
    uint32_t *sorted = xmalloc((size_t)K * sizeof *sorted);
    int rc = 0;
    for (int64_t r = 0; r < rows && rc == 0; r++) {
        const uint32_t *row = ids + r * K;
        for (int k = 0; k < K && rc == 0; k++) {
            float lp = logp[r * K + k];
            if (row[k] >= (uint32_t)ds->vocab_size)
                rc = err_set("%s: dataset 'teacher_topk_ids', row %lld (token %lld), column "
                             "%d: id %u is outside [0, vocab_size=%d); %s",
                             ds->path, (long long)(first + r), (long long)(first + r), k, row[k],
                             ds->vocab_size, TOPK_HINT);
            else if (!isfinite(lp) || lp > TOPK_LOGP_SLACK)
                rc = err_set("%s: dataset 'teacher_topk_logp', row %lld (token %lld), column "
                             "%d (id %u): %g is not a log-probability (finite, <= 0); %s",
                             ds->path, (long long)(first + r), (long long)(first + r), k, row[k],
                             lp, TOPK_HINT);
        }
        if (rc) break;
        memcpy(sorted, row, (size_t)K * sizeof *sorted);
        qsort(sorted, (size_t)K, sizeof *sorted, cmp_u32);
        for (int k = 1; k < K && rc == 0; k++)
            if (sorted[k] == sorted[k - 1])
                rc = err_set("%s: dataset 'teacher_topk_ids', row %lld (token %lld): id %u "
                             "appears twice; a row holds K distinct ids, the teacher's top K; %s",
                             ds->path, (long long)(first + r), (long long)(first + r), sorted[k],
                             TOPK_HINT);
    }
    free(sorted);
    return rc;
}

/* ------------------------------------------- the public row API, either mode */

int dataset_row(const Dataset *ds, int64_t item, int T, int *in, int *tg) {
    if (ds->stream) return stream_row(ds, item, T, in, tg);
    if (ds->schema == SCHEMA_LM) {
        const uint32_t *w = ds->tokens + item * T; /* (T+1) */
        for (int j = 0; j < T; j++) {
            in[j] = (int)w[j];
            tg[j] = (int)w[j + 1];
        }
        return 0;
    }
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

int dataset_topk_row(const Dataset *ds, int64_t item, int T, int *ids, float *logp) {
    int K = ds->topk;
    int64_t start, len;
    if (dataset_example_span(ds, item, &start, &len) != 0) return -1;
    int64_t m = len < T ? len : T; /* the example's rows, then zeros */
    if (dataset_topk_tokens(ds, start, m, ids, logp) != 0) return -1;
    for (size_t i = (size_t)m * K; i < (size_t)T * K; i++) {
        ids[i] = 0;
        logp[i] = 0.0f;
    }
    return 0;
}

int dataset_example_span(const Dataset *ds, int64_t item, int64_t *start, int64_t *len) {
    if (ds->stream) return example_span(ds, item, start, len);
    *start = ds->offsets[item];
    *len = ds->offsets[item + 1] - *start;
    return 0;
}

int dataset_topk_tokens(const Dataset *ds, int64_t first, int64_t n, int *ids, float *logp) {
    int K = ds->topk;
    if (!ds->stream) {
        for (int64_t i = 0; i < n * K; i++) {
            ids[i] = (int)ds->topk_ids[first * K + i];
            logp[i] = ds->topk_logp[first * K + i];
        }
        return 0;
    }
    if (first < 0 || n < 0 || first + n > ds->n_tokens)
        return err_set("%s: teacher rows [%lld, %lld) are outside the %lld tokens", ds->path,
                       (long long)first, (long long)(first + n), (long long)ds->n_tokens);
    uint32_t *rid = xmalloc((size_t)(n ? n : 1) * K * sizeof *rid);
    pthread_mutex_lock(&ds->stream->lock);
    int rc = read_range_locked(ds, C_TOPK_IDS, H5T_NATIVE_UINT32, first, n, K, rid);
    if (rc == 0) rc = read_range_locked(ds, C_TOPK_LOGP, H5T_NATIVE_FLOAT, first, n, K, logp);
    pthread_mutex_unlock(&ds->stream->lock);
    if (rc == 0) rc = check_topk(ds, rid, logp, first, n);
    for (int64_t i = 0; i < n * K && rc == 0; i++) ids[i] = (int)rid[i];
    free(rid);
    return rc;
}

int dataset_task_of(const Dataset *ds, int64_t item, int *task) {
    if (!ds->has_task)
        return err_set("%s has no task column (build it with `retort data build --task-field "
                       "NAME`)",
                       ds->path);
    if (ds->stream) return stream_tag(ds, C_TASK, item, ds->n_tasks, task);
    *task = ds->task[item];
    return 0;
}

/* --------------------------------------------------- whole-column scans */

int dataset_stream_role_scan(const Dataset *ds, int id, int64_t **items, int64_t *count) {
    uint8_t *buf = xmalloc(SCAN_CHUNK);
    int64_t cap = 1024, n = 0;
    int64_t *out = xmalloc((size_t)cap * sizeof *out);
    for (int64_t first = 0; first < ds->n_docs; first += SCAN_CHUNK) {
        int64_t m = ds->n_docs - first < SCAN_CHUNK ? ds->n_docs - first : SCAN_CHUNK;
        if (read_range(ds, C_ROLE, H5T_NATIVE_UINT8, first, m, 0, buf) != 0) {
            free(buf);
            free(out);
            return -1;
        }
        for (int64_t i = 0; i < m; i++) {
            if (buf[i] != id) continue;
            if (n == cap) out = xrealloc(out, (size_t)(cap *= 2) * sizeof *out);
            out[n++] = first + i;
        }
    }
    free(buf);
    *items = out;
    *count = n;
    return 0;
}

int64_t dataset_stream_count_longer(const Dataset *ds, const int64_t *subset, int64_t first,
                                    int64_t count, int64_t limit) {
    int64_t n = 0;
    if (subset) {
        for (int64_t i = 0; i < count; i++) {
            int64_t start, len;
            if (example_span(ds, subset[i], &start, &len) != 0) return -1;
            n += len > limit;
        }
        return n;
    }
    int64_t *buf = xmalloc((SCAN_CHUNK + 1) * sizeof *buf);
    for (int64_t a = first; a < first + count; a += SCAN_CHUNK) {
        int64_t m = first + count - a < SCAN_CHUNK ? first + count - a : SCAN_CHUNK;
        if (read_range(ds, C_OFFSETS, H5T_NATIVE_INT64, a, m + 1, 0, buf) != 0) {
            free(buf);
            return -1;
        }
        for (int64_t i = 0; i < m; i++) n += buf[i + 1] - buf[i] > limit;
    }
    free(buf);
    return n;
}
