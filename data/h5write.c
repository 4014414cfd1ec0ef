/* data/h5write.c — writing HDF5 datasets (all schemas; see h5data.h).
 *
 * Writing appends into chunked, extendible datasets through in-memory buffers
 * (one H5Dwrite per ~1M tokens, never one per document), then writes the
 * attributes, flushes, closes, fsyncs and renames the .tmp over the target, so
 * a reader never sees a half-written file under the final name. Every HDF5
 * call that can write is checked, closes included: H5Dwrite only fills the
 * chunk cache, and a full disk may first show at H5Fflush or H5Dclose (at
 * 1df6ed0 an unchecked H5Dclose let a build exit 0 with zero-filled holes).
 *
 * A failed write abandons the file: its descriptor is pointed at /dev/null
 * (h5_detach) so that HDF5 can close it (its own retries of the dirty chunks
 * would fail again, and HDF5 1.10 then crashes at exit), and the .tmp is
 * removed. The target is never touched. The message says how much space the
 * file needs (err_write), from the data written so far and, when the caller
 * says how much of its input it has read (dataset_writer_set_progress), the
 * whole input.
 */
#include "data/h5data.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/h5_internal.h"
#include "util/util.h"


/* One extendible 1-D dataset fed through an in-memory buffer. */
typedef struct {
    const char *name;
    hid_t dset;
    hid_t memtype;
    size_t elem;      /* bytes per element in memory */
    size_t file_elem; /* bytes per element in the file */
    int64_t chunk;    /* elements per HDF5 chunk: the file holds whole chunks */
    void *buf;        /* (cap) elements */
    int64_t n_buf, cap;
    int64_t n_file;   /* elements already in the file */
    int64_t width;    /* 0: 1-D; else a 2-D (rows, width) dataset, counts in elements */
} Column;

#define TOKEN_BUFFER (1 << 20) /* tokens per H5Dwrite */
#define TOKEN_CHUNK (1 << 16)  /* HDF5 chunk: small enough that a tiny file stays tiny */
#define DOC_BUFFER (1 << 16)
#define DOC_CHUNK (1 << 13)

struct DatasetWriter {
    char path[1024];
    char tmp[1040];
    Schema schema;
    int vocab_size, eos_id, pad_id;
    char tokenizer[256];
    hid_t file;
    Column tokens, offsets, mask, role, task;
    int has_role;        /* -1 until the first document decides */
    int max_role;
    int has_task, max_task;
    char **task_names;
    int n_tasks;
    int topk;                        /* K, 0 = none */
    Column topk_ids, topk_logp;      /* kd: (n_tokens, K) */
    int64_t n_topk_rows;
    Column cand_tokens, cand_offsets, cand_example, cand_logp, cand_score;
    int64_t n_cand, n_cand_tokens, max_cand_example;
    int64_t n_docs, n_tokens;
    int64_t doc_start;   /* n_tokens when the current document began */
    char **role_names;
    int n_roles;
    int failed;          /* an HDF5 write failed: only abort remains */
    int closing;         /* every document is in: the data's size is final */
    int64_t input_done, input_total; /* dataset_writer_set_progress */
    int64_t *topk_seen;  /* (vocab_size) the last row check (topk_checks) that met each id */
    int64_t topk_checks;
    Column extra[6];     /* pref: {prompt,chosen,rejected}/{tokens,offsets} */
    int n_extra;
    char boundary[16];   /* pref: the `boundary` attribute, "" = none */
};

#define MAX_COLUMNS 18

/* Every column the writer may hold, created or not (buf NULL); how many. */
static int writer_columns(DatasetWriter *w, Column **cols) {
    Column *fixed[] = {&w->tokens,       &w->offsets,     &w->mask,         &w->role,
                       &w->task,         &w->topk_ids,    &w->topk_logp,    &w->cand_tokens,
                       &w->cand_offsets, &w->cand_example, &w->cand_logp,   &w->cand_score};
    int n = 0;
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++) cols[n++] = fixed[i];
    for (int i = 0; i < w->n_extra; i++) cols[n++] = &w->extra[i];
    return n;
}

/* Bytes the data handed to the writer so far takes in the file: whole
 * chunks, and room for HDF5's own records. */
static uint64_t writer_data_bytes(DatasetWriter *w) {
    Column *cols[MAX_COLUMNS];
    int n = writer_columns(w, cols);
    uint64_t bytes = 16384;
    for (int i = 0; i < n; i++) {
        const Column *c = cols[i];
        if (!c->name) continue; /* never created */
        int64_t chunks = (c->n_file + c->n_buf + c->chunk - 1) / c->chunk;
        bytes += (uint64_t)chunks * (uint64_t)c->chunk * c->file_elem;
    }
    return bytes;
}

/* The writer is abandoned after a failed HDF5 call (h5_reason already
 * taken). For a full disk or the file-size limit the message says how much
 * space the file needs: the data so far, scaled to the whole input when the
 * share read is known; otherwise it names the call and HDF5's reason. */
static int writer_failed(DatasetWriter *w, const char *doing) {
    w->failed = 1;
    int e = h5_sys_errno;
    if (e != ENOSPC && e != EDQUOT && e != EFBIG)
        return err_set("%s: cannot %s (HDF5: %s); %s is left as it was", w->tmp, doing, h5_why,
                       w->path);
    uint64_t so_far = writer_data_bytes(w);
    if (!w->closing && w->input_done > 0 && w->input_total > w->input_done)
        return err_write(w->path, w->tmp, e,
                         (uint64_t)((double)so_far * (double)w->input_total /
                                    (double)w->input_done),
                         0);
    return err_write(w->path, w->tmp, e, so_far, !w->closing);
}

/* Points the file's descriptor at /dev/null, so that closing an abandoned
 * file writes nothing and cannot fail (see the top of this file). Files are
 * written with HDF5's default POSIX driver, whose handle is the descriptor. */
static void h5_detach(hid_t file) {
    hid_t fapl = H5Fget_access_plist(file);
    int posix = fapl >= 0 && H5Pget_driver(fapl) == H5FD_SEC2;
    if (fapl >= 0) H5Pclose(fapl);
    void *handle = NULL;
    if (!posix || H5Fget_vfd_handle(file, H5P_DEFAULT, &handle) < 0 || !handle) return;
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0) return;
    dup2(null, *(int *)handle);
    close(null);
}

/* A 1-D column (width 0) or a 2-D one of `width` columns, where chunk and cap
 * count rows. */
static int column_create_2d(DatasetWriter *w, Column *c, const char *name, hid_t filetype,
                            hid_t memtype, size_t elem, int64_t chunk, int64_t cap,
                            int64_t width) {
    int rank = width > 0 ? 2 : 1;
    hsize_t dims[2] = {0, (hsize_t)width}, maxdims[2] = {H5S_UNLIMITED, (hsize_t)width};
    hsize_t chunk_dims[2] = {(hsize_t)chunk, (hsize_t)width};
    hid_t space = H5Screate_simple(rank, dims, maxdims);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, rank, chunk_dims);
    c->width = width;
    if (width > 0) cap *= width;
    c->dset = H5Dcreate2(w->file, name, filetype, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (c->dset < 0) h5_reason();
    H5Pclose(dcpl);
    H5Sclose(space);
    if (c->dset < 0) {
        char doing[96];
        snprintf(doing, sizeof doing, "create dataset '%s'", name);
        return writer_failed(w, doing);
    }
    c->name = name;
    c->memtype = memtype;
    c->elem = elem;
    c->file_elem = H5Tget_size(filetype);
    c->chunk = chunk * (width > 0 ? width : 1);
    c->cap = cap;
    c->buf = xmalloc((size_t)cap * elem);
    return 0;
}

static int column_create(DatasetWriter *w, Column *c, const char *name, hid_t filetype,
                         hid_t memtype, size_t elem, int64_t chunk, int64_t cap) {
    return column_create_2d(w, c, name, filetype, memtype, elem, chunk, cap, 0);
}

static int column_flush(DatasetWriter *w, Column *c) {
    if (c->n_buf == 0) return 0;
    int rank = c->width > 0 ? 2 : 1;
    hsize_t wd = c->width > 0 ? (hsize_t)c->width : 1;
    hsize_t start[2] = {(hsize_t)c->n_file / wd, 0}, count[2] = {(hsize_t)c->n_buf / wd, wd};
    hsize_t size[2] = {start[0] + count[0], wd};
    int rc = 0;
    if (H5Dset_extent(c->dset, size) < 0) {
        rc = -1;
        h5_reason();
    } else {
        hid_t fs = H5Dget_space(c->dset), ms = H5Screate_simple(rank, count, NULL);
        if (H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
            H5Dwrite(c->dset, c->memtype, ms, fs, H5P_DEFAULT, c->buf) < 0) {
            rc = -1;
            h5_reason();
        }
        H5Sclose(ms);
        H5Sclose(fs);
    }
    if (rc != 0) {
        char doing[96];
        snprintf(doing, sizeof doing, "write dataset '%s'", c->name);
        return writer_failed(w, doing);
    }
    c->n_file += c->n_buf;
    c->n_buf = 0;
    return 0;
}

static int column_append(DatasetWriter *w, Column *c, const void *data, int64_t n) {
    const char *src = data;
    while (n > 0) {
        int64_t take = c->cap - c->n_buf < n ? c->cap - c->n_buf : n;
        memcpy((char *)c->buf + (size_t)c->n_buf * c->elem, src, (size_t)take * c->elem);
        c->n_buf += take;
        src += (size_t)take * c->elem;
        n -= take;
        if (c->n_buf == c->cap && column_flush(w, c) != 0) return -1;
    }
    return 0;
}

/* Closes the column's dataset (H5Dclose writes its cached chunks: it can
 * fail on a full disk) and frees its buffer. 0, or -1 with h5_reason taken. */
static int column_close(Column *c) {
    int rc = 0;
    if (c->dset >= 0 && H5Dclose(c->dset) < 0) {
        h5_reason();
        rc = -1;
    }
    c->dset = H5I_INVALID_HID;
    free(c->buf);
    c->buf = NULL;
    return rc;
}

/* Frees the writer. A file still open is abandoned: detached, closed, and its
 * .tmp removed (remove_tmp: also when HDF5 could not create it). */
static void writer_destroy(DatasetWriter *w, int remove_tmp) {
    if (w->file >= 0) h5_detach(w->file);
    Column *cols[MAX_COLUMNS];
    int n = writer_columns(w, cols);
    for (int i = 0; i < n; i++) column_close(cols[i]);
    if (w->file >= 0) H5Fclose(w->file);
    if (remove_tmp) unlink(w->tmp);
    for (int i = 0; i < w->n_roles; i++) free(w->role_names[i]);
    free(w->role_names);
    for (int i = 0; i < w->n_tasks; i++) free(w->task_names[i]);
    free(w->task_names);
    free(w->topk_seen);
    free(w);
}

/* The common part of opening a writer: checks, the struct and the .tmp file. */
static DatasetWriter *writer_new(const char *path, Schema schema, int vocab_size, int eos_id,
                                 int pad_id, const char *tokenizer) {
    if (vocab_size < 1 || eos_id < 0 || eos_id >= vocab_size || pad_id < 0 ||
        pad_id >= vocab_size) {
        err_set("%s: vocab_size %d, eos_id %d, pad_id %d: the ids must lie in [0, vocab_size)",
                path, vocab_size, eos_id, pad_id);
        return NULL;
    }
    if (strlen(path) + 5 > sizeof ((DatasetWriter *)0)->path) {
        err_set("output path is too long: %.80s...", path);
        return NULL;
    }
    if (tokenizer && strlen(tokenizer) >= sizeof ((DatasetWriter *)0)->tokenizer) {
        err_set("%s: tokenizer name is too long: %.80s...", path, tokenizer);
        return NULL;
    }
    DatasetWriter *w = xcalloc(1, sizeof *w);
    snprintf(w->path, sizeof w->path, "%s", path);
    snprintf(w->tmp, sizeof w->tmp, "%s.tmp", path);
    w->schema = schema;
    w->vocab_size = vocab_size;
    w->eos_id = eos_id;
    w->pad_id = pad_id;
    snprintf(w->tokenizer, sizeof w->tokenizer, "%s", tokenizer ? tokenizer : "");
    w->has_role = w->has_task = -1;
    w->max_role = w->max_task = w->max_cand_example = -1;
    w->tokens.dset = w->offsets.dset = w->mask.dset = w->role.dset = H5I_INVALID_HID;
    Column *kd[] = {&w->task,         &w->topk_ids,     &w->topk_logp, &w->cand_tokens,
                    &w->cand_offsets, &w->cand_example, &w->cand_logp, &w->cand_score};
    for (size_t i = 0; i < sizeof kd / sizeof *kd; i++) kd[i]->dset = H5I_INVALID_HID;
    w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (w->file < 0) {
        h5_reason();
        int e = h5_sys_errno, full = e == ENOSPC || e == EDQUOT || e == EFBIG;
        if (full) err_write(path, w->tmp, e, 0, 1);
        else
            err_set("cannot create %s (HDF5: %s); check that the directory exists and is "
                    "writable",
                    w->tmp, h5_why);
        writer_destroy(w, full); /* a full disk: HDF5 made the file, empty */
        return NULL;
    }
    return w;
}

DatasetWriter *dataset_writer_open(const char *path, Schema schema, int vocab_size, int eos_id,
                                   int pad_id, const char *tokenizer) {
    h5_quiet();
    if (schema != SCHEMA_LM && schema != SCHEMA_SFT && schema != SCHEMA_KD) {
        err_set("%s: schema '%s' is written with pref_writer_open, not dataset_writer_open",
                path, schema_name(schema));
        return NULL;
    }
    DatasetWriter *w = writer_new(path, schema, vocab_size, eos_id, pad_id, tokenizer);
    if (!w) return NULL;
    hid_t token_type = vocab_size <= 65536 ? H5T_STD_U16LE : H5T_STD_U32LE;
    int64_t zero = 0;
    if (column_create(w, &w->tokens, "tokens", token_type, H5T_NATIVE_UINT32, 4, TOKEN_CHUNK,
                      TOKEN_BUFFER) != 0 ||
        column_create(w, &w->offsets, "offsets", H5T_STD_I64LE, H5T_NATIVE_INT64, 8, DOC_CHUNK,
                      DOC_BUFFER) != 0 ||
        (schema != SCHEMA_LM &&
         column_create(w, &w->mask, "loss_mask", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, TOKEN_CHUNK,
                       TOKEN_BUFFER) != 0) ||
        column_append(w, &w->offsets, &zero, 1) != 0) {
        writer_destroy(w, 1);
        return NULL;
    }
    return w;
}

int dataset_writer_append(DatasetWriter *w, const uint32_t *tokens, const uint8_t *loss_mask,
                          int64_t n) {
    if (w->failed) return err_set("%s: an earlier write failed; the file is abandoned", w->tmp);
    if (n < 0) return err_set("%s: negative token count %lld", w->tmp, (long long)n);
    for (int64_t i = 0; i < n; i++)
        if (tokens[i] >= (uint32_t)w->vocab_size)
            return err_set("%s: token id %u (document %lld, position %lld) is >= vocab_size %d; "
                           "the tokenizer and vocab_size disagree",
                           w->path, tokens[i], (long long)w->n_docs,
                           (long long)(w->n_tokens - w->doc_start + i), w->vocab_size);
    if (w->schema != SCHEMA_LM) {
        if (!loss_mask && n > 0)
            return err_set("%s: %s documents need a loss_mask (one 0/1 per token)", w->path,
                           schema_name(w->schema));
        for (int64_t i = 0; i < n; i++)
            if (loss_mask[i] > 1)
                return err_set("%s: loss_mask value %u (document %lld, position %lld); values "
                               "must be 0 or 1",
                               w->path, loss_mask[i], (long long)w->n_docs,
                               (long long)(w->n_tokens - w->doc_start + i));
    }
    if (column_append(w, &w->tokens, tokens, n) != 0) return -1;
    if (w->schema != SCHEMA_LM && column_append(w, &w->mask, loss_mask, n) != 0) return -1;
    w->n_tokens += n;
    return 0;
}

/* Whether a document with this role (or task) id (< 0: none) may follow the
 * earlier ones: every document has one or none. */
static int check_tag(const DatasetWriter *w, const char *what, int has, int id) {
    if (id >= 0 && w->schema != SCHEMA_SFT && w->schema != SCHEMA_KD)
        return err_set("%s: only sft and kd datasets carry a %s", w->path, what);
    if (id > 255) return err_set("%s: %s id %d does not fit in uint8", w->path, what, id);
    if (has >= 0 && has != (id >= 0))
        return err_set("%s: document %lld %s a %s but earlier documents %s; give every "
                       "document a %s or none",
                       w->path, (long long)w->n_docs, id >= 0 ? "has" : "lacks", what,
                       has ? "have one" : "do not", what);
    return 0;
}

static int check_role(const DatasetWriter *w, int role) {
    return check_tag(w, "role", w->has_role, role);
}

/* Appends tag id to its column, creating the column with the first document. */
static int append_tag(DatasetWriter *w, Column *c, const char *name, int *has, int *max, int id) {
    if (*has < 0) {
        *has = id >= 0;
        if (id >= 0 && column_create(w, c, name, H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, DOC_CHUNK,
                                     DOC_BUFFER) != 0) {
            w->failed = 1;
            return -1;
        }
    }
    if (id < 0) return 0;
    uint8_t v = (uint8_t)id;
    if (column_append(w, c, &v, 1) != 0) return -1;
    if (id > *max) *max = id;
    return 0;
}

int dataset_writer_end_doc_tagged(DatasetWriter *w, int role, int task) {
    if (w->failed) return err_set("%s: an earlier write failed; the file is abandoned", w->tmp);
    if (check_role(w, role) != 0 || check_tag(w, "task", w->has_task, task) != 0) return -1;
    if (w->topk > 0 && w->n_topk_rows != w->n_tokens)
        return err_set("%s: document %lld has %lld tokens but %lld teacher top-k rows (one per "
                       "token)",
                       w->path, (long long)w->n_docs, (long long)(w->n_tokens - w->doc_start),
                       (long long)(w->n_topk_rows - w->doc_start));
    int64_t end = w->n_tokens;
    if (column_append(w, &w->offsets, &end, 1) != 0) return -1;
    if (append_tag(w, &w->role, "role", &w->has_role, &w->max_role, role) != 0 ||
        append_tag(w, &w->task, "task", &w->has_task, &w->max_task, task) != 0)
        return -1;
    w->n_docs++;
    w->doc_start = w->n_tokens;
    return 0;
}

int dataset_writer_end_doc(DatasetWriter *w, int role) {
    return dataset_writer_end_doc_tagged(w, role, -1);
}

int dataset_writer_set_topk(DatasetWriter *w, int K) {
    if (w->schema != SCHEMA_KD)
        return err_set("%s: teacher top-k log-probs belong to kd datasets, not %s", w->path,
                       schema_name(w->schema));
    if (K < 1 || K > w->vocab_size)
        return err_set("%s: top-k width %d; it must lie in [1, vocab_size=%d]", w->path, K,
                       w->vocab_size);
    if (w->n_tokens > 0 || w->topk > 0)
        return err_set("%s: set the top-k width once, before the first token", w->path);
    hid_t token_type = w->vocab_size <= 65536 ? H5T_STD_U16LE : H5T_STD_U32LE;
    int64_t rows = TOKEN_BUFFER / K > 1024 ? TOKEN_BUFFER / K : 1024;
    int64_t chunk = TOKEN_CHUNK / K > 64 ? TOKEN_CHUNK / K : 64;
    if (column_create_2d(w, &w->topk_ids, "teacher_topk_ids", token_type, H5T_NATIVE_UINT32, 4,
                         chunk, rows, K) != 0 ||
        column_create_2d(w, &w->topk_logp, "teacher_topk_logp", H5T_IEEE_F32LE,
                         H5T_NATIVE_FLOAT, 4, chunk, rows, K) != 0) {
        w->failed = 1;
        return -1;
    }
    w->topk = K;
    w->topk_seen = xmalloc((size_t)w->vocab_size * sizeof *w->topk_seen);
    for (int v = 0; v < w->vocab_size; v++) w->topk_seen[v] = -1;
    return 0;
}

int dataset_writer_append_topk(DatasetWriter *w, const uint32_t *ids, const float *logp,
                               int64_t n) {
    if (w->failed) return err_set("%s: an earlier write failed; the file is abandoned", w->tmp);
    if (w->topk == 0) return err_set("%s: dataset_writer_set_topk was not called", w->path);
    int K = w->topk;
    for (int64_t i = 0; i < n * K; i++) {
        int64_t row = w->n_topk_rows + i / K;
        if (i % K == 0) w->topk_checks++; /* a new row: no id met yet */
        if (ids[i] >= (uint32_t)w->vocab_size)
            return err_set("%s: teacher top-k id %u (token %lld) is >= vocab_size %d", w->path,
                           ids[i], (long long)row, w->vocab_size);
        if (w->topk_seen[ids[i]] == w->topk_checks)
            return err_set("%s: teacher top-k id %u appears twice in the row of token %lld; a "
                           "row holds K distinct ids",
                           w->path, ids[i], (long long)row);
        if (!(logp[i] <= 0.0f) || isinf(logp[i])) /* NaN fails too */
            return err_set("%s: teacher top-k log-prob %g (token %lld) is not a log-probability "
                           "(finite, <= 0)",
                           w->path, logp[i], (long long)row);
        w->topk_seen[ids[i]] = w->topk_checks;
    }
    if (column_append(w, &w->topk_ids, ids, n * K) != 0 ||
        column_append(w, &w->topk_logp, logp, n * K) != 0)
        return -1;
    w->n_topk_rows += n;
    return 0;
}

int dataset_writer_add_candidate(DatasetWriter *w, int64_t example, const uint32_t *tokens,
                                 int64_t n, double logp, double score) {
    if (w->failed) return err_set("%s: an earlier write failed; the file is abandoned", w->tmp);
    if (w->schema != SCHEMA_KD)
        return err_set("%s: candidates belong to kd datasets, not %s", w->path,
                       schema_name(w->schema));
    if (example < w->max_cand_example || n < 0)
        return err_set("%s: candidate for example %lld after one for example %lld (add them "
                       "in example order), or negative length",
                       w->path, (long long)example, (long long)w->max_cand_example);
    for (int64_t i = 0; i < n; i++)
        if (tokens[i] >= (uint32_t)w->vocab_size)
            return err_set("%s: candidate token id %u is >= vocab_size %d", w->path, tokens[i],
                           w->vocab_size);
    if (w->n_cand == 0) {
        hid_t token_type = w->vocab_size <= 65536 ? H5T_STD_U16LE : H5T_STD_U32LE;
        int64_t zero = 0;
        hid_t g = H5Gcreate2(w->file, "candidates", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (g < 0) {
            h5_reason();
            return writer_failed(w, "create group 'candidates'");
        }
        if (H5Gclose(g) < 0) {
            h5_reason();
            return writer_failed(w, "create group 'candidates'");
        }
        if (column_create(w, &w->cand_tokens, "candidates/tokens", token_type,
                          H5T_NATIVE_UINT32, 4, TOKEN_CHUNK, TOKEN_BUFFER) != 0 ||
            column_create(w, &w->cand_offsets, "candidates/offsets", H5T_STD_I64LE,
                          H5T_NATIVE_INT64, 8, DOC_CHUNK, DOC_BUFFER) != 0 ||
            column_create(w, &w->cand_example, "candidates/example", H5T_STD_I64LE,
                          H5T_NATIVE_INT64, 8, DOC_CHUNK, DOC_BUFFER) != 0 ||
            column_create(w, &w->cand_logp, "candidates/logp", H5T_IEEE_F64LE,
                          H5T_NATIVE_DOUBLE, 8, DOC_CHUNK, DOC_BUFFER) != 0 ||
            column_create(w, &w->cand_score, "candidates/score", H5T_IEEE_F64LE,
                          H5T_NATIVE_DOUBLE, 8, DOC_CHUNK, DOC_BUFFER) != 0 ||
            column_append(w, &w->cand_offsets, &zero, 1) != 0) {
            w->failed = 1;
            return -1;
        }
    }
    int64_t end = w->n_cand_tokens + n;
    if (column_append(w, &w->cand_tokens, tokens, n) != 0 ||
        column_append(w, &w->cand_offsets, &end, 1) != 0 ||
        column_append(w, &w->cand_example, &example, 1) != 0 ||
        column_append(w, &w->cand_logp, &logp, 1) != 0 ||
        column_append(w, &w->cand_score, &score, 1) != 0)
        return -1;
    w->n_cand_tokens = end;
    w->n_cand++;
    w->max_cand_example = example;
    return 0;
}

int dataset_writer_add(DatasetWriter *w, const uint32_t *tokens, const uint8_t *loss_mask,
                       int64_t n, int role) {
    if (check_role(w, role) != 0) return -1; /* before any token is buffered */
    if (dataset_writer_append(w, tokens, loss_mask, n) != 0) return -1;
    return dataset_writer_end_doc(w, role);
}

static int set_names(DatasetWriter *w, const char *what, char ***dst, int *n_dst,
                     const char *const *names, int n) {
    if (n < 1 || n > 256)
        return err_set("%s: %d %s names; between 1 and 256 fit a uint8 id", w->path, n, what);
    for (int i = 0; i < *n_dst; i++) free((*dst)[i]);
    free(*dst);
    *dst = xcalloc((size_t)n, sizeof **dst);
    for (int i = 0; i < n; i++) (*dst)[i] = xstrdup(names[i]);
    *n_dst = n;
    return 0;
}

int dataset_writer_set_roles(DatasetWriter *w, const char *const *names, int n) {
    return set_names(w, "role", &w->role_names, &w->n_roles, names, n);
}

int dataset_writer_set_tasks(DatasetWriter *w, const char *const *names, int n) {
    return set_names(w, "task", &w->task_names, &w->n_tasks, names, n);
}

static int attr_failed(DatasetWriter *w, const char *name) {
    char doing[96];
    snprintf(doing, sizeof doing, "write attribute '%s'", name);
    return writer_failed(w, doing);
}

/* Fixed-length strings (never HDF5 variable-length types), one per name. */
static int write_attr_strings(DatasetWriter *w, const char *name, const char *const *values,
                              int n, int scalar) {
    size_t size = 1;
    for (int i = 0; i < n; i++)
        if (strlen(values[i]) + 1 > size) size = strlen(values[i]) + 1;
    char *buf = xcalloc((size_t)n, size);
    for (int i = 0; i < n; i++) memcpy(buf + (size_t)i * size, values[i], strlen(values[i]));
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, size);
    H5Tset_strpad(type, H5T_STR_NULLTERM);
    hsize_t dims = (hsize_t)n;
    hid_t space = scalar ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dims, NULL);
    hid_t aid = H5Acreate2(w->file, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    int rc = (aid < 0 || H5Awrite(aid, type, buf) < 0) ? -1 : 0;
    if (rc) h5_reason();
    if (aid >= 0 && H5Aclose(aid) < 0 && rc == 0) rc = (h5_reason(), -1);
    H5Sclose(space);
    H5Tclose(type);
    free(buf);
    return rc ? attr_failed(w, name) : 0;
}

static int write_attr_int(DatasetWriter *w, const char *name, int64_t v) {
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t aid = H5Acreate2(w->file, name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT);
    int rc = (aid < 0 || H5Awrite(aid, H5T_NATIVE_INT64, &v) < 0) ? -1 : 0;
    if (rc) h5_reason();
    if (aid >= 0 && H5Aclose(aid) < 0 && rc == 0) rc = (h5_reason(), -1);
    H5Sclose(space);
    return rc ? attr_failed(w, name) : 0;
}

static int writer_finish(DatasetWriter *w) {
    if (w->failed) return err_set("%s: an earlier write failed; nothing was written", w->path);
    if (w->n_docs == 0)
        return err_set("%s: no documents were added; an empty dataset cannot be trained on",
                       w->path);
    if (w->has_role == 1 && w->n_roles > 0 && w->max_role >= w->n_roles)
        return err_set("%s: role id %d is used but only %d role names were set", w->path,
                       w->max_role, w->n_roles);
    if (w->has_task == 1 && w->n_tasks > 0 && w->max_task >= w->n_tasks)
        return err_set("%s: task id %d is used but only %d task names were set", w->path,
                       w->max_task, w->n_tasks);
    if (w->max_cand_example >= w->n_docs)
        return err_set("%s: a candidate refers to example %lld but only %lld examples were "
                       "written",
                       w->path, (long long)w->max_cand_example, (long long)w->n_docs);
    w->closing = 1;
    Column *cols[MAX_COLUMNS];
    int n_cols = writer_columns(w, cols);
    for (int i = 0; i < n_cols; i++)
        if (cols[i]->buf && column_flush(w, cols[i]) != 0) return -1;
    const char *schema = schema_name(w->schema), *tok = w->tokenizer;
    if (write_attr_strings(w, "schema", &schema, 1, 1) != 0 ||
        write_attr_int(w, "version", H5DATA_VERSION) != 0 ||
        write_attr_int(w, "vocab_size", w->vocab_size) != 0 ||
        write_attr_int(w, "eos_id", w->eos_id) != 0 ||
        write_attr_int(w, "pad_id", w->pad_id) != 0 ||
        write_attr_strings(w, "tokenizer", &tok, 1, 1) != 0 ||
        (w->n_roles > 0 &&
         write_attr_strings(w, "roles", (const char *const *)w->role_names, w->n_roles, 0) != 0) ||
        (w->n_tasks > 0 &&
         write_attr_strings(w, "tasks", (const char *const *)w->task_names, w->n_tasks, 0) != 0))
        return -1;
    const char *boundary = w->boundary;
    if (boundary[0] && write_attr_strings(w, "boundary", &boundary, 1, 1) != 0) return -1;
    /* everything cached reaches the file here, where a failure is still ours
     * to report; the closes below then have nothing left to write */
    if (H5Fflush(w->file, H5F_SCOPE_LOCAL) < 0) {
        h5_reason();
        return writer_failed(w, "flush the file");
    }
    for (int i = 0; i < n_cols; i++) {
        const char *name = cols[i]->name;
        if (column_close(cols[i]) != 0) {
            char doing[96];
            snprintf(doing, sizeof doing, "close dataset '%s'", name);
            return writer_failed(w, doing);
        }
    }
    if (H5Fclose(w->file) < 0) {
        /* HDF5 keeps a file it failed to close half-open; it is never touched again */
        w->file = H5I_INVALID_HID;
        h5_reason();
        return writer_failed(w, "close the file");
    }
    w->file = H5I_INVALID_HID;
    int fd = open(w->tmp, O_RDONLY);
    if (fd < 0 || fsync(fd) != 0) {
        int e = errno;
        if (fd >= 0) close(fd);
        w->failed = 1;
        return err_write(w->path, w->tmp, e, writer_data_bytes(w), 0);
    }
    close(fd);
    if (rename(w->tmp, w->path) != 0)
        return err_set("cannot rename %s to %s: %s; %s is left as it was", w->tmp, w->path,
                       strerror(errno), w->path);
    return fsync_parent(w->path);
}

int dataset_writer_close(DatasetWriter *w) {
    int rc = writer_finish(w);
    writer_destroy(w, rc != 0);
    return rc;
}

void dataset_writer_abort(DatasetWriter *w) {
    if (w) writer_destroy(w, 1);
}

void dataset_writer_set_progress(DatasetWriter *w, int64_t done, int64_t total) {
    w->input_done = done;
    w->input_total = total;
}

/* ------------------------------------------------------------ pref files */


struct PrefWriter {
    DatasetWriter *w;
    int64_t n_tokens[3];
};

PrefWriter *pref_writer_open(const char *path, int vocab_size, int eos_id, int pad_id,
                             const char *tokenizer) {
    h5_quiet();
    DatasetWriter *w = writer_new(path, SCHEMA_PREF, vocab_size, eos_id, pad_id, tokenizer);
    if (!w) return NULL;
    for (int i = 0; i < 6; i++) w->extra[i].dset = H5I_INVALID_HID;
    w->n_extra = 6;
    hid_t token_type = vocab_size <= 65536 ? H5T_STD_U16LE : H5T_STD_U32LE;
    int64_t zero = 0;
    for (int p = 0; p < 3; p++) {
        hid_t g = H5Gcreate2(w->file, pref_parts[p], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (g < 0 || H5Gclose(g) < 0) {
            h5_reason();
            char doing[64];
            snprintf(doing, sizeof doing, "create group '%s'", pref_parts[p]);
            writer_failed(w, doing);
            writer_destroy(w, 1);
            return NULL;
        }
        if (column_create(w, &w->extra[2 * p], pref_cols[2 * p], token_type, H5T_NATIVE_UINT32,
                          4, TOKEN_CHUNK, TOKEN_BUFFER) != 0 ||
            column_create(w, &w->extra[2 * p + 1], pref_cols[2 * p + 1], H5T_STD_I64LE,
                          H5T_NATIVE_INT64, 8, DOC_CHUNK, DOC_BUFFER) != 0 ||
            column_append(w, &w->extra[2 * p + 1], &zero, 1) != 0) {
            writer_destroy(w, 1);
            return NULL;
        }
    }
    PrefWriter *pw = xcalloc(1, sizeof *pw);
    pw->w = w;
    return pw;
}

int pref_writer_add(PrefWriter *pw, const uint32_t *prompt, int64_t n_prompt,
                    const uint32_t *chosen, int64_t n_chosen, const uint32_t *rejected,
                    int64_t n_rejected) {
    DatasetWriter *w = pw->w;
    if (w->failed) return err_set("%s: an earlier write failed; the file is abandoned", w->tmp);
    const uint32_t *t[3] = {prompt, chosen, rejected};
    int64_t n[3] = {n_prompt, n_chosen, n_rejected};
    for (int p = 0; p < 3; p++) {
        if (n[p] < 0)
            return err_set("%s: negative token count %lld in '%s'", w->path, (long long)n[p],
                           pref_parts[p]);
        if (p > 0 && n[p] == 0)
            return err_set("%s: pair %lld: '%s' is empty; a response needs at least its EOS",
                           w->path, (long long)w->n_docs, pref_parts[p]);
        for (int64_t i = 0; i < n[p]; i++)
            if (t[p][i] >= (uint32_t)w->vocab_size)
                return err_set("%s: token id %u (pair %lld, '%s', position %lld) is >= "
                               "vocab_size %d; the tokenizer and vocab_size disagree",
                               w->path, t[p][i], (long long)w->n_docs, pref_parts[p],
                               (long long)i, w->vocab_size);
    }
    for (int p = 0; p < 3; p++) {
        int64_t end = pw->n_tokens[p] + n[p];
        if (column_append(w, &w->extra[2 * p], t[p], n[p]) != 0 ||
            column_append(w, &w->extra[2 * p + 1], &end, 1) != 0)
            return -1;
        pw->n_tokens[p] = end;
        w->n_tokens += n[p];
    }
    w->n_docs++;
    return 0;
}

int pref_writer_set_boundary(PrefWriter *pw, const char *boundary) {
    if (strcmp(boundary, "joint") != 0 && strcmp(boundary, "separate") != 0 &&
        strcmp(boundary, "tokens") != 0)
        return err_set("%s: pref boundary '%s' is not one of joint, separate, tokens",
                       pw->w->path, boundary);
    snprintf(pw->w->boundary, sizeof pw->w->boundary, "%s", boundary);
    return 0;
}

int pref_writer_close(PrefWriter *pw) {
    int rc = writer_finish(pw->w);
    writer_destroy(pw->w, rc != 0);
    free(pw);
    return rc;
}

void pref_writer_abort(PrefWriter *pw) {
    if (!pw) return;
    writer_destroy(pw->w, 1);
    free(pw);
}

void pref_writer_set_progress(PrefWriter *pw, int64_t done, int64_t total) {
    dataset_writer_set_progress(pw->w, done, total);
}

/* ------------------------------------------------ precomputed reference */

/* Why a change to the copy tmp of the pref file path failed (h5_reason
 * taken); needed: the finished file's size. */
static int ref_failed(const char *path, const char *tmp, const char *doing, uint64_t needed) {
    int e = h5_sys_errno;
    if (e == ENOSPC || e == EDQUOT || e == EFBIG) return err_write(path, tmp, e, needed, 0);
    return err_set("%s: cannot %s (HDF5: %s); %s is left as it was", tmp, doing, h5_why, path);
}

/* Copies path into tmp (created). On failure tmp is left for the caller. */
static int copy_file(const char *path, const char *tmp, uint64_t needed) {
    FILE *in = fopen(path, "rb");
    if (!in) return err_set("cannot open %s: %s", path, strerror(errno));
    FILE *out = fopen(tmp, "wb");
    if (!out) {
        fclose(in);
        return err_set("cannot create %s: %s", tmp, strerror(errno));
    }
    char *buf = xmalloc(1 << 20);
    size_t n;
    int e = 0;
    while (e == 0 && (n = fread(buf, 1, 1 << 20, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) e = errno ? errno : EIO;
    int bad_read = ferror(in);
    free(buf);
    fclose(in);
    if (fflush(out) != 0 && e == 0) e = errno;
    if (fclose(out) != 0 && e == 0) e = errno;
    if (e != 0) return err_write(path, tmp, e, needed, 0);
    if (bad_read) return err_set("cannot read %s", path);
    return 0;
}

/* Creates (or replaces) the float64 dataset `name`. -1 with h5_reason taken. */
static int put_f64(hid_t file, const char *name, const double *v, int64_t n) {
    if (H5Lexists(file, name, H5P_DEFAULT) > 0 && H5Ldelete(file, name, H5P_DEFAULT) < 0)
        return (h5_reason(), -1);
    hsize_t dims = (hsize_t)n;
    hid_t space = H5Screate_simple(1, &dims, NULL);
    hid_t d = H5Dcreate2(file, name, H5T_IEEE_F64LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = d < 0 || H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0;
    if (rc) h5_reason();
    if (d >= 0 && H5Dclose(d) < 0 && !rc) rc = (h5_reason(), 1);
    H5Sclose(space);
    return rc ? -1 : 0;
}

/* Sets root attribute `name` to the string sv, or to iv when sv is NULL. -1
 * with h5_reason taken. */
static int put_attr(hid_t file, const char *name, int64_t iv, const char *sv) {
    if (H5Aexists(file, name) > 0 && H5Adelete(file, name) < 0) return (h5_reason(), -1);
    hid_t type = sv ? H5Tcopy(H5T_C_S1) : H5Tcopy(H5T_STD_I64LE);
    if (sv) {
        H5Tset_size(type, strlen(sv) + 1);
        H5Tset_strpad(type, H5T_STR_NULLTERM);
    }
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(file, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a < 0 || (sv ? H5Awrite(a, type, sv) : H5Awrite(a, H5T_NATIVE_INT64, &iv)) < 0;
    if (rc) h5_reason();
    if (a >= 0 && H5Aclose(a) < 0 && !rc) rc = (h5_reason(), 1);
    H5Sclose(space);
    H5Tclose(type);
    return rc ? -1 : 0;
}

int pref_dataset_write_ref(const char *path, const double *ref_c, const double *ref_r,
                           int64_t n_pairs, const char *model, int seq_len, int max_prompt_len,
                           int max_completion_len) {
    h5_quiet();
    char tmp[1100];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return err_set("path too long: %.80s...", path);
    for (int64_t i = 0; i < n_pairs; i++)
        if (!isfinite(ref_c[i]) || !isfinite(ref_r[i]) || ref_c[i] > 0 || ref_r[i] > 0)
            return err_set("%s: reference log-prob sum of pair %lld (chosen %g, rejected %g) is "
                           "not finite and <= 0",
                           path, (long long)i, ref_c[i], ref_r[i]);
    struct stat st;
    uint64_t needed = (stat(path, &st) == 0 ? (uint64_t)st.st_size : 0) +
                      2 * (uint64_t)n_pairs * sizeof(double) + 4096;
    if (copy_file(path, tmp, needed) != 0) {
        unlink(tmp);
        return -1;
    }
    hid_t file = H5Fopen(tmp, H5F_ACC_RDWR, H5P_DEFAULT);
    if (file < 0) {
        h5_reason();
        int rc = ref_failed(path, tmp, "open the copy for writing", needed);
        unlink(tmp);
        return rc;
    }
    const char *doing = NULL;
    if (put_f64(file, "ref_logp_chosen", ref_c, n_pairs) != 0) doing = "write 'ref_logp_chosen'";
    else if (put_f64(file, "ref_logp_rejected", ref_r, n_pairs) != 0)
        doing = "write 'ref_logp_rejected'";
    else if (put_attr(file, "ref_model", 0, model ? model : "") != 0 ||
             put_attr(file, "ref_seq_len", seq_len, NULL) != 0 ||
             put_attr(file, "ref_max_prompt_len", max_prompt_len, NULL) != 0 ||
             put_attr(file, "ref_max_completion_len", max_completion_len, NULL) != 0)
        doing = "write the ref_* attributes";
    else if (H5Fflush(file, H5F_SCOPE_LOCAL) < 0)
        doing = (h5_reason(), "flush the file");
    if (doing) {
        int rc = ref_failed(path, tmp, doing, needed);
        h5_detach(file);
        H5Fclose(file);
        unlink(tmp);
        return rc;
    }
    if (H5Fclose(file) < 0) { /* left half-open by HDF5: never touched again */
        h5_reason();
        int rc = ref_failed(path, tmp, "close the file", needed);
        unlink(tmp);
        return rc;
    }
    int fd = open(tmp, O_RDONLY);
    if (fd < 0 || fsync(fd) != 0) {
        int e = errno;
        if (fd >= 0) close(fd);
        err_write(path, tmp, e, needed, 0);
        unlink(tmp);
        return -1;
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return err_set("cannot rename %s to %s: %s; %s is left as it was", tmp, path,
                       strerror(e), path);
    }
    return fsync_parent(path);
}
