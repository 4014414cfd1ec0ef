/* data/h5data.c — HDF5 datasets: read and validate (lm, sft, kd, pref) and cut
 * into training batches. The schema is in h5data.h.
 *
 * Reading loads every array into memory and checks all of it before anyone
 * uses it, so the training loop never meets a bad token id or offset. HDF5's
 * own error printing is switched off; when an HDF5 call fails we quote the
 * innermost entry of its error stack inside our own sentence, which always
 * names the file and the dataset.
 * Writing is in h5write.c.
 */
#include "data/h5data.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/h5_internal.h"
#include "util/util.h"

static const char *const schema_names[] = {"lm", "sft", "pref", "kd"};

const char *schema_name(Schema s) {
    return (unsigned)s < sizeof schema_names / sizeof *schema_names ? schema_names[s] : "?";
}

int schema_from_name(const char *name, Schema *out) {
    for (int i = 0; i < 4; i++)
        if (strcmp(name, schema_names[i]) == 0) {
            *out = (Schema)i;
            return 0;
        }
    return err_set("unknown schema '%s'; expected one of lm, sft, pref, kd", name);
}

const char *const pref_parts[3] = {"prompt", "chosen", "rejected"};
const char *const pref_cols[6] = {"prompt/tokens", "prompt/offsets", "chosen/tokens",
                                  "chosen/offsets", "rejected/tokens", "rejected/offsets"};

/* ------------------------------------------------------------ HDF5 helpers */

void h5_quiet(void) {
    static int done;
    if (!done) {
        /* No H5close at exit: a file whose writes failed can be left
         * half-closed by HDF5 1.10, and closing it again at exit crashes
         * (h5write.c detaches such files first; this is the backstop). Every
         * file we write is closed, or abandoned and removed, before exit. */
        H5dont_atexit();
        H5open();
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        done = 1;
    }
}

_Thread_local char h5_why[384];
_Thread_local int h5_sys_errno;

/* A failed system call reads "file write failed: time = ..., filename = ...,
 * errno = 28, error message = 'No space left on device', buf = ...", over
 * two lines: kept as "file write failed: No space left on device", with the
 * errno in h5_sys_errno. */
static herr_t innermost_cb(unsigned n, const H5E_error2_t *e, void *data) {
    if (n != 0 || !e->desc) return 0;
    const char *no = strstr(e->desc, "errno = "), *text = strstr(e->desc, "error message = '");
    if (no) h5_sys_errno = atoi(no + 8);
    if (text) {
        text += strlen("error message = '");
        snprintf(data, sizeof h5_why, "%.*s: %.*s", (int)strcspn(e->desc, ":"), e->desc,
                 (int)strcspn(text, "'"), text);
    } else {
        snprintf(data, sizeof h5_why, "%s", e->desc);
    }
    return 0;
}

const char *h5_reason(void) {
    snprintf(h5_why, sizeof h5_why, "no detail from HDF5");
    h5_sys_errno = 0;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost_cb, h5_why);
    return h5_why;
}

static void close_id(hid_t *id, herr_t (*close)(hid_t)) {
    if (*id >= 0) close(*id);
    *id = H5I_INVALID_HID;
}

/* "uint16", "float32", "string(8)", ... for messages about a wrong dtype. */
void h5_dtype_name(hid_t t, char *buf, size_t cap) {
    size_t bits = H5Tget_size(t) * 8;
    switch (H5Tget_class(t)) {
    case H5T_INTEGER:
        snprintf(buf, cap, "%sint%zu", H5Tget_sign(t) == H5T_SGN_NONE ? "u" : "", bits);
        break;
    case H5T_FLOAT: snprintf(buf, cap, "float%zu", bits); break;
    case H5T_STRING:
        if (H5Tis_variable_str(t) > 0) snprintf(buf, cap, "variable-length string");
        else snprintf(buf, cap, "string(%zu)", bits / 8);
        break;
    case H5T_ENUM: snprintf(buf, cap, "enum (e.g. numpy bool)"); break;
    case H5T_VLEN: snprintf(buf, cap, "variable-length sequence"); break;
    case H5T_COMPOUND: snprintf(buf, cap, "compound"); break;
    case H5T_ARRAY: snprintf(buf, cap, "array"); break;
    case H5T_BITFIELD: snprintf(buf, cap, "bitfield"); break;
    case H5T_OPAQUE: snprintf(buf, cap, "opaque"); break;
    case H5T_REFERENCE: snprintf(buf, cap, "reference"); break;
    default: snprintf(buf, cap, "unknown type"); break;
    }
}

/* ------------------------------------------------------- reading attributes */

/* Opens root attribute `name`; 1 if absent, 0 if open, -1 on error. */
static int attr_open(hid_t file, const char *path, const char *name, hid_t *aid, hid_t *type,
                     hssize_t *npoints) {
    htri_t exists = H5Aexists(file, name);
    if (exists < 0)
        return err_set("%s: cannot look up root attribute '%s' (HDF5: %s)", path, name,
                       h5_reason());
    if (exists == 0) return 1;
    *aid = H5Aopen(file, name, H5P_DEFAULT);
    if (*aid < 0)
        return err_set("%s: cannot open root attribute '%s' (HDF5: %s)", path, name, h5_reason());
    *type = H5Aget_type(*aid);
    hid_t space = H5Aget_space(*aid);
    *npoints = H5Sget_simple_extent_npoints(space);
    H5Sclose(space);
    return 0;
}

static int attr_int(hid_t file, const char *path, const char *name, int64_t *out) {
    hid_t aid = H5I_INVALID_HID, type = H5I_INVALID_HID;
    hssize_t np = 0;
    int rc = attr_open(file, path, name, &aid, &type, &np);
    if (rc > 0)
        return err_set("%s: root attribute '%s' is missing; %s", path, name, REBUILD_HINT);
    if (rc < 0) return -1;
    rc = 0;
    char tn[64];
    if (H5Tget_class(type) != H5T_INTEGER || np != 1) {
        h5_dtype_name(type, tn, sizeof tn);
        rc = err_set("%s: root attribute '%s' must be a single integer (found %s with %lld "
                     "values); %s",
                     path, name, tn, (long long)np, REBUILD_HINT);
    } else if (H5Aread(aid, H5T_NATIVE_INT64, out) < 0) {
        rc = err_set("%s: cannot read root attribute '%s' (HDF5: %s)", path, name, h5_reason());
    }
    H5Tclose(type);
    H5Aclose(aid);
    return rc;
}

/* Reads a string attribute holding npoints strings (fixed or variable
 * length) into newly allocated strings. 1 if absent, 0 on success, -1 error. */
int h5_attr_strings(hid_t file, const char *path, const char *name, char ***out, int *n_out) {
    hid_t aid = H5I_INVALID_HID, type = H5I_INVALID_HID, mem = H5I_INVALID_HID;
    hssize_t np = 0;
    int rc = attr_open(file, path, name, &aid, &type, &np);
    if (rc != 0) return rc;
    char tn[64];
    if (H5Tget_class(type) != H5T_STRING || np < 1 || np > 65535) {
        h5_dtype_name(type, tn, sizeof tn);
        rc = err_set("%s: root attribute '%s' must hold text (found %s with %lld values); %s",
                     path, name, tn, (long long)np, REBUILD_HINT);
        goto done;
    }
    char **names = xcalloc((size_t)np, sizeof *names);
    mem = H5Tcopy(H5T_C_S1);
    H5Tset_cset(mem, H5Tget_cset(type));
    if (H5Tis_variable_str(type) > 0) {
        H5Tset_size(mem, H5T_VARIABLE);
        char **raw = xcalloc((size_t)np, sizeof *raw);
        if (H5Aread(aid, mem, raw) < 0) {
            rc = err_set("%s: cannot read root attribute '%s' (HDF5: %s)", path, name,
                         h5_reason());
        } else {
            for (hssize_t i = 0; i < np; i++) names[i] = xstrdup(raw[i] ? raw[i] : "");
        }
        for (hssize_t i = 0; i < np; i++)
            if (raw[i]) H5free_memory(raw[i]);
        free(raw);
    } else {
        size_t size = H5Tget_size(type);
        H5Tset_size(mem, size);
        H5Tset_strpad(mem, H5Tget_strpad(type));
        char *raw = xcalloc((size_t)np, size + 1);
        if (H5Aread(aid, mem, raw) < 0) {
            rc = err_set("%s: cannot read root attribute '%s' (HDF5: %s)", path, name,
                         h5_reason());
        } else {
            for (hssize_t i = 0; i < np; i++) {
                const char *s = raw + (size_t)i * size;
                size_t len = strnlen(s, size);
                while (len > 0 && s[len - 1] == ' ' && H5Tget_strpad(type) == H5T_STR_SPACEPAD)
                    len--;
                names[i] = xmalloc(len + 1);
                memcpy(names[i], s, len);
                names[i][len] = '\0';
            }
        }
        free(raw);
    }
    if (rc == 0) {
        *out = names;
        *n_out = (int)np;
    } else {
        for (hssize_t i = 0; i < np; i++) free(names[i]);
        free(names);
    }
done:
    close_id(&mem, H5Tclose);
    H5Tclose(type);
    H5Aclose(aid);
    return rc;
}

/* A required single-string attribute into buf. */
static int attr_string(hid_t file, const char *path, const char *name, char *buf, size_t cap) {
    char **v = NULL;
    int n = 0;
    int rc = h5_attr_strings(file, path, name, &v, &n);
    if (rc > 0)
        return err_set("%s: root attribute '%s' is missing; %s", path, name, REBUILD_HINT);
    if (rc < 0) return -1;
    rc = 0;
    if (n != 1)
        rc = err_set("%s: root attribute '%s' must be one string, found %d; %s", path, name, n,
                     REBUILD_HINT);
    else if (strlen(v[0]) >= cap)
        rc = err_set("%s: root attribute '%s' is longer than %zu characters", path, name,
                     cap - 1);
    else
        snprintf(buf, cap, "%s", v[0]);
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
    return rc;
}

/* --------------------------------------------------------- reading datasets */

int h5_dtype_ok(hid_t t, ColumnKind kind) {
    if (kind == COL_FLOAT64) return H5Tget_class(t) == H5T_FLOAT && H5Tget_size(t) == 8;
    if (H5Tget_class(t) != H5T_INTEGER) return 0;
    size_t size = H5Tget_size(t);
    int is_unsigned = H5Tget_sign(t) == H5T_SGN_NONE;
    switch (kind) {
    case COL_TOKENS: return is_unsigned && (size == 2 || size == 4);
    case COL_INT64: return !is_unsigned && size == 8;
    case COL_UINT8: return is_unsigned && size == 1;
    case COL_FLOAT64: return 0; /* H5T_FLOAT: checked before the integer test */
    }
    return 0;
}

const char *const h5_kind_expect[] = {"uint16 or uint32", "int64", "uint8", "float64"};

/* 1 when every entry of dataset dset (of type and space) is written in the
 * file: a chunked dataset has all the chunks its extent spans (HDF5 reads an
 * unwritten chunk as zeros, which pass as token 0 — the mark of a write that
 * failed or was cut short, e.g. on a full disk), a contiguous one all its
 * bytes; 0 when not, -1 (error set) when HDF5 cannot tell. */
static int fully_written(hid_t dset, hid_t type, hid_t space, const char *path,
                         const char *name) {
    hid_t dcpl = H5Dget_create_plist(dset);
    H5D_layout_t layout = dcpl >= 0 ? H5Pget_layout(dcpl) : H5D_LAYOUT_ERROR;
    int rc = 1;
    if (layout == H5D_CHUNKED) {
        hsize_t dims[H5S_MAX_RANK] = {0}, chunk[H5S_MAX_RANK] = {0}, have = 0;
        int rank = H5Sget_simple_extent_dims(space, dims, NULL);
        uint64_t need = 1;
        if (rank < 0 || H5Pget_chunk(dcpl, rank, chunk) != rank ||
            H5Dget_num_chunks(dset, space, &have) < 0) {
            rc = err_set("%s: cannot count the chunks of dataset '%s' (HDF5: %s); %s", path, name,
                         h5_reason(), REBUILD_HINT);
        } else {
            for (int d = 0; d < rank && need <= have; d++) {
                uint64_t per = chunk[d] ? (dims[d] + chunk[d] - 1) / chunk[d] : UINT64_MAX;
                need = per && need > UINT64_MAX / per ? UINT64_MAX : need * per;
            }
            rc = have >= need;
        }
    } else if (layout == H5D_CONTIGUOUS) {
        hssize_t n = H5Sget_simple_extent_npoints(space);
        rc = n >= 0 && H5Dget_storage_size(dset) >= (hsize_t)n * H5Tget_size(type);
    } else if (layout != H5D_COMPACT) { /* compact data lives in the object header */
        rc = err_set("%s: dataset '%s' has a storage layout retort does not read (virtual, "
                     "or unknown); %s",
                     path, name, REBUILD_HINT);
    }
    if (dcpl >= 0) H5Pclose(dcpl);
    return rc;
}

/* Whether the file really holds the n entries of dataset `name`: every entry
 * written (fully_written) and no more storage claimed than the file has (a
 * corrupt header can declare 2^40 entries in a 2 KB file). 0, or -1 with the
 * error set. Reads metadata only, so the streamed reader (h5stream.c) checks
 * a file of any size with it. */
int h5_check_stored(hid_t file, hid_t dset, hid_t type, hid_t space, const char *path,
                    const char *name, uint64_t n) {
    if (n == 0) return 0;
    int written = fully_written(dset, type, space, path, name);
    if (written < 0) return -1;
    if (!written)
        return err_set("%s: dataset '%s' has %llu entries but the file does not store them all "
                       "(the rest would read as zeros): the file is incomplete, written to a "
                       "full disk or interrupted; %s",
                       path, name, (unsigned long long)n, REBUILD_HINT);
    hsize_t file_size = 0, stored = H5Dget_storage_size(dset);
    if (H5Fget_filesize(file, &file_size) < 0 || stored > file_size)
        return err_set("%s: dataset '%s' claims %llu bytes of storage but the file has %llu "
                       "bytes: the file is truncated or corrupt; %s",
                       path, name, (unsigned long long)stored, (unsigned long long)file_size,
                       REBUILD_HINT);
    return 0;
}

/* The buffer for n entries of elem bytes of dataset `name`, after
 * h5_check_stored. NULL with the error set otherwise, also when the memory is
 * not there (never an exit: the data is outside input). */
static void *stored_buffer(hid_t file, hid_t dset, hid_t type, hid_t space, const char *path,
                           const char *name, uint64_t n, size_t elem) {
    if (h5_check_stored(file, dset, type, space, path, name, n) != 0) return NULL;
    void *buf = n <= SIZE_MAX / elem ? malloc(n ? (size_t)n * elem : 1) : NULL;
    if (!buf)
        err_set("%s: dataset '%s' has %llu entries, %.1f GB in memory, which this machine "
                "cannot allocate",
                path, name, (unsigned long long)n, (double)n * (double)elem / 1e9);
    return buf;
}

/* Reads 1-D dataset `name` whole, converted to the in-memory type of `kind`
 * (uint32, int64 or uint8). 1 if absent and optional, 0 on success, -1 error. */
static int read_column(hid_t file, const char *path, Schema schema, const char *name,
                       int required, ColumnKind kind, void **data, int64_t *n) {
    htri_t exists = H5Lexists(file, name, H5P_DEFAULT);
    if (exists < 0)
        return err_set("%s: cannot look up dataset '%s' (HDF5: %s)", path, name, h5_reason());
    if (exists == 0) {
        if (!required) return 1;
        return err_set("%s: dataset '%s' is missing (schema '%s' needs it); %s", path, name,
                       schema_name(schema), REBUILD_HINT);
    }
    hid_t dset = H5Dopen2(file, name, H5P_DEFAULT);
    if (dset < 0)
        return err_set("%s: '%s' is not a readable dataset (HDF5: %s); %s", path, name,
                       h5_reason(), REBUILD_HINT);
    hid_t type = H5Dget_type(dset), space = H5Dget_space(dset);
    int rc = 0;
    char tn[64];
    int ndims = H5Sget_simple_extent_ndims(space);
    hsize_t dims[8] = {0};
    if (!h5_dtype_ok(type, kind)) {
        h5_dtype_name(type, tn, sizeof tn);
        rc = err_set("%s: dataset '%s' has dtype %s; expected %s; %s", path, name, tn,
                     h5_kind_expect[kind], REBUILD_HINT);
    } else if (ndims != 1 || H5Sget_simple_extent_type(space) != H5S_SIMPLE) {
        rc = err_set("%s: dataset '%s' has %d dimensions; expected a 1-D array; %s", path, name,
                     ndims < 0 ? 0 : ndims, REBUILD_HINT);
    } else {
        H5Sget_simple_extent_dims(space, dims, NULL);
        static const size_t elem[] = {4, 8, 1, 8};
        hid_t mem = kind == COL_TOKENS    ? H5T_NATIVE_UINT32
                    : kind == COL_INT64   ? H5T_NATIVE_INT64
                    : kind == COL_FLOAT64 ? H5T_NATIVE_DOUBLE
                                          : H5T_NATIVE_UINT8;
        void *buf = stored_buffer(file, dset, type, space, path, name, dims[0], elem[kind]);
        if (!buf) {
            rc = -1;
        } else if (dims[0] > 0 && H5Dread(dset, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
            rc = err_set("%s: cannot read dataset '%s' (HDF5: %s); the file may be truncated "
                         "or corrupt; %s",
                         path, name, h5_reason(), REBUILD_HINT);
            free(buf);
        } else {
            *data = buf;
            *n = (int64_t)dims[0];
        }
    }
    H5Sclose(space);
    H5Tclose(type);
    H5Dclose(dset);
    return rc;
}

static int check_range(const char *path, const char *name, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi)
        return err_set("%s: root attribute '%s' is %lld; it must lie in [%lld, %lld]; %s", path,
                       name, (long long)v, (long long)lo, (long long)hi, REBUILD_HINT);
    return 0;
}

/* want_pref: pref_dataset_open, which reads only pref files; otherwise lm/sft. */
static int read_attributes_for(Dataset *ds, hid_t file, const char *path, int want_pref) {
    char schema[64];
    if (attr_string(file, path, "schema", schema, sizeof schema) != 0) return -1;
    if (schema_from_name(schema, &ds->schema) != 0)
        return err_set("%s: root attribute 'schema' is '%s'; expected one of lm, sft, pref, kd; "
                       "%s",
                       path, schema, REBUILD_HINT);
    if (want_pref && ds->schema != SCHEMA_PREF)
        return err_set("%s: schema '%s' is not a preference dataset (expected 'pref'); open it "
                       "with dataset_open",
                       path, schema);
    if (!want_pref && ds->schema == SCHEMA_PREF)
        return err_set("%s: schema 'pref' holds preference pairs; it trains with objective "
                       "dpo, not as an lm/sft/kd dataset",
                       path);
    int64_t version, vocab, eos, pad;
    if (attr_int(file, path, "version", &version) != 0) return -1;
    if (version > H5DATA_VERSION)
        return err_set("%s: dataset version %lld is newer than this retort reads (%d); update "
                       "retort or rebuild the file with this one",
                       path, (long long)version, H5DATA_VERSION);
    if (check_range(path, "version", version, 1, H5DATA_VERSION) != 0) return -1;
    if (attr_int(file, path, "vocab_size", &vocab) != 0 ||
        check_range(path, "vocab_size", vocab, 1, INT32_MAX) != 0)
        return -1;
    if (attr_int(file, path, "eos_id", &eos) != 0 ||
        check_range(path, "eos_id", eos, 0, vocab - 1) != 0)
        return -1;
    if (attr_int(file, path, "pad_id", &pad) != 0 ||
        check_range(path, "pad_id", pad, 0, vocab - 1) != 0)
        return -1;
    ds->version = (int)version;
    ds->vocab_size = (int)vocab;
    ds->eos_id = (int)eos;
    ds->pad_id = (int)pad;
    return attr_string(file, path, "tokenizer", ds->tokenizer, sizeof ds->tokenizer);
}

int h5_read_attributes(Dataset *ds, hid_t file, const char *path) {
    return read_attributes_for(ds, file, path, 0);
}

/* Offsets dataset `on` (o, n_offsets entries) against token dataset `tn`. */
static int validate_offsets_of(const char *p, const char *on, const int64_t *o,
                               int64_t n_offsets, const char *tn, int64_t n_tokens) {
    if (n_offsets < 1)
        return err_set("%s: dataset '%s' has length 0; it must hold n_docs+1 entries "
                       "starting with 0; %s",
                       p, on, REBUILD_HINT);
    if (o[0] != 0)
        return err_set("%s: dataset '%s': offsets[0]=%lld, expected 0 (offsets hold "
                       "n_docs+1 entries starting at 0); %s",
                       p, on, (long long)o[0], REBUILD_HINT);
    for (int64_t i = 1; i < n_offsets; i++)
        if (o[i] < o[i - 1])
            return err_set("%s: dataset '%s': offsets[%lld]=%lld < offsets[%lld]=%lld "
                           "(offsets must be non-decreasing); %s",
                           p, on, (long long)i, (long long)o[i], (long long)(i - 1),
                           (long long)o[i - 1], REBUILD_HINT);
    if (o[n_offsets - 1] != n_tokens)
        return err_set("%s: dataset '%s': last entry offsets[%lld]=%lld but dataset "
                       "'%s' holds %lld tokens (they must be equal); %s",
                       p, on, (long long)(n_offsets - 1), (long long)o[n_offsets - 1], tn,
                       (long long)n_tokens, REBUILD_HINT);
    return 0;
}

static int validate_offsets(const Dataset *ds, int64_t n_offsets) {
    return validate_offsets_of(ds->path, "offsets", ds->offsets, n_offsets, "tokens",
                               ds->n_tokens);
}

static int validate_tokens_of(const char *p, const char *tn, const uint32_t *t, int64_t n,
                              int vocab_size) {
    for (int64_t i = 0; i < n; i++)
        if (t[i] >= (uint32_t)vocab_size)
            return err_set("%s: dataset '%s': tokens[%lld]=%u is >= vocab_size %d; rebuild "
                           "the dataset with the model's tokenizer (`retort data build`), or "
                           "fix vocab_size (model.vocab_size) if the ids are right",
                           p, tn, (long long)i, t[i], vocab_size);
    return 0;
}

static int validate_tokens(const Dataset *ds) {
    return validate_tokens_of(ds->path, "tokens", ds->tokens, ds->n_tokens, ds->vocab_size);
}

/* Optional uint8 tag column `name` (role, task) with its names attribute. */
static int read_tag_column(Dataset *ds, hid_t file, const char *name, const char *names_attr,
                           uint8_t **col, char ***names, int *n_names) {
    const char *p = ds->path;
    int64_t n = 0; /* set by read_column when it returns 0 (gcc -O3 cannot tell) */
    if (h5_attr_strings(file, p, names_attr, names, n_names) < 0) return -1;
    int rc = read_column(file, p, ds->schema, name, 0, COL_UINT8, (void **)col, &n);
    if (rc < 0) return -1;
    if (rc > 0) return 0;
    if (n != ds->n_docs)
        return err_set("%s: dataset '%s' has %lld entries but there are %lld examples (one "
                       "per example); %s",
                       p, name, (long long)n, (long long)ds->n_docs, REBUILD_HINT);
    if (*n_names > 0)
        for (int64_t i = 0; i < n; i++)
            if ((*col)[i] >= *n_names)
                return err_set("%s: dataset '%s': %s[%lld]=%u but attribute '%s' names only %d "
                               "%s; %s",
                               p, name, name, (long long)i, (*col)[i], names_attr, *n_names,
                               names_attr, REBUILD_HINT);
    return 0;
}

/* 2-D dataset `name` (rows, K) of uint16/uint32 ids (is_ids) or float32, read
 * whole. 1 if absent, 0 on success, -1 error. */
static int read_matrix(hid_t file, const char *path, const char *name, int is_ids, void **data,
                       int64_t *rows, int64_t *cols) {
    htri_t exists = H5Lexists(file, name, H5P_DEFAULT);
    if (exists < 0)
        return err_set("%s: cannot look up dataset '%s' (HDF5: %s)", path, name, h5_reason());
    if (exists == 0) return 1;
    hid_t dset = H5Dopen2(file, name, H5P_DEFAULT);
    if (dset < 0)
        return err_set("%s: '%s' is not a readable dataset (HDF5: %s); %s", path, name,
                       h5_reason(), REBUILD_HINT);
    hid_t type = H5Dget_type(dset), space = H5Dget_space(dset);
    hsize_t dims[2] = {0, 0};
    int rc = 0;
    char tn[64];
    int ok_type = is_ids ? h5_dtype_ok(type, COL_TOKENS)
                         : H5Tget_class(type) == H5T_FLOAT && H5Tget_size(type) == 4;
    if (!ok_type) {
        h5_dtype_name(type, tn, sizeof tn);
        rc = err_set("%s: dataset '%s' has dtype %s; expected %s; %s", path, name, tn,
                     is_ids ? "uint16 or uint32" : "float32", REBUILD_HINT);
    } else if (H5Sget_simple_extent_ndims(space) != 2) {
        rc = err_set("%s: dataset '%s' has %d dimensions; expected (n_tokens, K); %s", path,
                     name, H5Sget_simple_extent_ndims(space), REBUILD_HINT);
    } else {
        H5Sget_simple_extent_dims(space, dims, NULL);
        uint64_t n = dims[1] && dims[0] > UINT64_MAX / dims[1] ? UINT64_MAX : dims[0] * dims[1];
        void *buf = stored_buffer(file, dset, type, space, path, name, n, 4);
        if (!buf) {
            rc = -1;
        } else if (dims[0] * dims[1] > 0 &&
            H5Dread(dset, is_ids ? H5T_NATIVE_UINT32 : H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL,
                    H5P_DEFAULT, buf) < 0) {
            rc = err_set("%s: cannot read dataset '%s' (HDF5: %s); the file may be truncated "
                         "or corrupt; %s",
                         path, name, h5_reason(), REBUILD_HINT);
            free(buf);
        } else {
            *data = buf;
            *rows = (int64_t)dims[0];
            *cols = (int64_t)dims[1];
        }
    }
    H5Sclose(space);
    H5Tclose(type);
    H5Dclose(dset);
    return rc;
}

/* Every row of a teacher's top-K (rows x K) is K distinct ids in [0, vocab)
 * with finite log-probabilities <= 0: the top-K KD term sorts a row's ids and
 * assumes them distinct (an assert at 1df6ed0, after `data validate` had
 * passed the file), and a NaN or an infinity would train on garbage.
 * Log-probs up to TOPK_LOGP_SLACK above 0 pass: another tool's float
 * log-softmax may round its top entry there. (The probabilities' sum is not
 * checked: the kernel renormalises a row past 1, and generate fills the
 * unused row after a final EOS with K zeros.) last_row (vocab_size) holds the
 * row that last saw each id, last_col its column there. */
#define TOPK_LOGP_SLACK 1e-6f
#define TOPK_HINT                                                                         \
    "regenerate the rows with `retort generate --out X.h5 --store-topk K`, which checks " \
    "each row, or fix the tool that wrote them"
static int validate_topk(const char *p, const uint32_t *ids, const float *logp, int64_t rows,
                         int K, int vocab_size) {
    int64_t *last_row = xmalloc((size_t)vocab_size * sizeof *last_row);
    int *last_col = xmalloc((size_t)vocab_size * sizeof *last_col);
    for (int v = 0; v < vocab_size; v++) last_row[v] = -1;
    int rc = 0;
    for (int64_t r = 0; r < rows && rc == 0; r++) {
        for (int k = 0; k < K && rc == 0; k++) {
            uint32_t id = ids[r * K + k];
            float lp = logp[r * K + k];
            if (id >= (uint32_t)vocab_size)
                rc = err_set("%s: dataset 'teacher_topk_ids', row %lld (token %lld), column "
                             "%d: id %u is outside [0, vocab_size=%d); %s",
                             p, (long long)r, (long long)r, k, id, vocab_size, TOPK_HINT);
            else if (last_row[id] == r)
                rc = err_set("%s: dataset 'teacher_topk_ids', row %lld (token %lld): id %u "
                             "appears twice (columns %d and %d); a row holds K distinct ids, "
                             "the teacher's top K; %s",
                             p, (long long)r, (long long)r, id, last_col[id], k, TOPK_HINT);
            else if (!isfinite(lp) || lp > TOPK_LOGP_SLACK)
                rc = err_set("%s: dataset 'teacher_topk_logp', row %lld (token %lld), column "
                             "%d (id %u): %g is not a log-probability (finite, <= 0); %s",
                             p, (long long)r, (long long)r, k, id, lp, TOPK_HINT);
            if (rc == 0) {
                last_row[id] = r;
                last_col[id] = k;
            }
        }
    }
    free(last_row);
    free(last_col);
    return rc;
}

/* kd: the teacher_topk_ids / _logp pair as found (present: 0, absent: 1 for
 * each; shapes r x c), checked the same way in memory and streamed: both or
 * neither, n_tokens x K with 1 <= K <= vocab_size. Sets ds->topk; 0, 1 when
 * neither is there, -1 with the error set. */
int topk_shapes_check(Dataset *ds, int a, int b, int64_t r1, int64_t c1, int64_t r2, int64_t c2) {
    const char *p = ds->path;
    if (a != b)
        return err_set("%s: '%s' is present without '%s' (a kd file holds both or neither); %s",
                       p, a == 0 ? "teacher_topk_ids" : "teacher_topk_logp",
                       a == 0 ? "teacher_topk_logp" : "teacher_topk_ids", REBUILD_HINT);
    if (a > 0) return 1;
    if (c1 == c2 && c1 > ds->vocab_size)
        return err_set("%s: datasets 'teacher_topk_ids' and 'teacher_topk_logp' have K=%lld "
                       "columns, more than vocab_size %d: a row cannot hold more distinct ids "
                       "than the vocabulary has; %s",
                       p, (long long)c1, ds->vocab_size, REBUILD_HINT);
    if (r1 != ds->n_tokens || r2 != ds->n_tokens || c1 != c2 || c1 < 1)
        return err_set("%s: teacher_topk_ids is %lld x %lld and teacher_topk_logp %lld x %lld; "
                       "both must be n_tokens (%lld) x K with 1 <= K <= vocab_size; %s",
                       p, (long long)r1, (long long)c1, (long long)r2, (long long)c2,
                       (long long)ds->n_tokens, REBUILD_HINT);
    ds->topk = (int)c1;
    return 0;
}

/* kd: teacher_topk_ids / teacher_topk_logp, both or neither. */
static int read_topk(Dataset *ds, hid_t file) {
    const char *p = ds->path;
    int64_t r1 = 0, c1 = 0, r2 = 0, c2 = 0;
    int a = read_matrix(file, p, "teacher_topk_ids", 1, (void **)&ds->topk_ids, &r1, &c1);
    if (a < 0) return -1;
    int b = read_matrix(file, p, "teacher_topk_logp", 0, (void **)&ds->topk_logp, &r2, &c2);
    if (b < 0) return -1;
    int rc = topk_shapes_check(ds, a, b, r1, c1, r2, c2);
    if (rc != 0) return rc < 0 ? -1 : 0;
    return validate_topk(p, ds->topk_ids, ds->topk_logp, r1, (int)c1, ds->vocab_size);
}

/* kd: the optional candidates/ group. */
static int read_candidates(Dataset *ds, hid_t file) {
    const char *p = ds->path;
    htri_t g = H5Lexists(file, "candidates", H5P_DEFAULT);
    if (g < 0) return err_set("%s: cannot look up 'candidates' (HDF5: %s)", p, h5_reason());
    if (g == 0) return 0;
    int64_t n_off = 0, n_ex = 0, n_lp = 0, n_sc = 0;
    if (read_column(file, p, ds->schema, "candidates/tokens", 1, COL_TOKENS,
                    (void **)&ds->cand_tokens, &ds->n_cand_tokens) != 0 ||
        read_column(file, p, ds->schema, "candidates/offsets", 1, COL_INT64,
                    (void **)&ds->cand_offsets, &n_off) != 0 ||
        read_column(file, p, ds->schema, "candidates/example", 1, COL_INT64,
                    (void **)&ds->cand_example, &n_ex) != 0 ||
        read_column(file, p, ds->schema, "candidates/logp", 1, COL_FLOAT64,
                    (void **)&ds->cand_logp, &n_lp) != 0 ||
        read_column(file, p, ds->schema, "candidates/score", 1, COL_FLOAT64,
                    (void **)&ds->cand_score, &n_sc) != 0)
        return -1;
    if (validate_offsets_of(p, "candidates/offsets", ds->cand_offsets, n_off,
                            "candidates/tokens", ds->n_cand_tokens) != 0 ||
        validate_tokens_of(p, "candidates/tokens", ds->cand_tokens, ds->n_cand_tokens,
                           ds->vocab_size) != 0)
        return -1;
    ds->n_cand = n_off - 1;
    if (n_ex != ds->n_cand || n_lp != ds->n_cand || n_sc != ds->n_cand)
        return err_set("%s: candidates/example, logp and score hold %lld, %lld and %lld "
                       "entries; there are %lld candidates (one each); %s",
                       p, (long long)n_ex, (long long)n_lp, (long long)n_sc,
                       (long long)ds->n_cand, REBUILD_HINT);
    for (int64_t i = 0; i < ds->n_cand; i++)
        if (ds->cand_example[i] < 0 || ds->cand_example[i] >= ds->n_docs ||
            (i > 0 && ds->cand_example[i] < ds->cand_example[i - 1]))
            return err_set("%s: candidates/example[%lld]=%lld; entries must be example indices "
                           "in [0, %lld), non-decreasing; %s",
                           p, (long long)i, (long long)ds->cand_example[i],
                           (long long)ds->n_docs, REBUILD_HINT);
    return 0;
}

static int read_sft_columns(Dataset *ds, hid_t file) {
    const char *p = ds->path;
    int64_t n;
    if (read_column(file, p, ds->schema, "loss_mask", 1, COL_UINT8, (void **)&ds->loss_mask,
                    &n) != 0)
        return -1;
    if (n != ds->n_tokens)
        return err_set("%s: dataset 'loss_mask' has %lld entries but 'tokens' has %lld (one "
                       "mask value per token); %s",
                       p, (long long)n, (long long)ds->n_tokens, REBUILD_HINT);
    for (int64_t i = 0; i < n; i++)
        if (ds->loss_mask[i] > 1)
            return err_set("%s: dataset 'loss_mask': loss_mask[%lld]=%u; values must be 0 or 1; "
                           "%s",
                           p, (long long)i, ds->loss_mask[i], REBUILD_HINT);
    if (read_tag_column(ds, file, "role", "roles", &ds->role, &ds->role_names, &ds->n_roles) !=
            0 ||
        read_tag_column(ds, file, "task", "tasks", &ds->task, &ds->task_names, &ds->n_tasks) != 0)
        return -1;
    ds->has_role = ds->role != NULL;
    ds->has_task = ds->task != NULL;
    if (ds->schema == SCHEMA_KD && (read_topk(ds, file) != 0 || read_candidates(ds, file) != 0))
        return -1;
    return 0;
}

static int dataset_read(Dataset *ds, hid_t file) {
    const char *p = ds->path;
    if (h5_read_attributes(ds, file, p) != 0) return -1;
    if (read_column(file, p, ds->schema, "tokens", 1, COL_TOKENS, (void **)&ds->tokens,
                    &ds->n_tokens) != 0)
        return -1;
    int64_t n_offsets;
    if (read_column(file, p, ds->schema, "offsets", 1, COL_INT64, (void **)&ds->offsets,
                    &n_offsets) != 0)
        return -1;
    if (n_offsets == 0) return validate_offsets(ds, n_offsets);
    if (n_offsets == 1 || ds->n_tokens == 0)
        return err_set("%s: the dataset is empty (%lld documents, %lld tokens); build it from "
                       "non-empty input with `retort data build`",
                       p, (long long)(n_offsets - 1), (long long)ds->n_tokens);
    if (validate_offsets(ds, n_offsets) != 0) return -1;
    ds->n_docs = n_offsets - 1;
    if (validate_tokens(ds) != 0) return -1;
    if (ds->schema != SCHEMA_LM && read_sft_columns(ds, file) != 0) return -1;
    return 0;
}


/* Opens an existing HDF5 file read-only; -1 with the error set (missing file,
 * not HDF5, truncated or corrupt) otherwise. Closing it closes every object
 * still open inside (H5F_CLOSE_STRONG), so error paths leak nothing. */
static hid_t open_readonly(const char *path) {
    if (access(path, R_OK) != 0)
        return err_set("%s: cannot open dataset: %s%s", path, strerror(errno),
                       errno == ENOENT ? " (build one with `retort data build`)" : "");
    if (H5Fis_hdf5(path) <= 0)
        return err_set("%s: not an HDF5 file (no HDF5 signature found); datasets are made with "
                       "`retort data build`",
                       path);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    if (file < 0) h5_reason();
    H5Pclose(fapl);
    if (file < 0)
        return err_set("%s: cannot open as HDF5 (%s); the file may be truncated or corrupt; %s",
                       path, h5_why, REBUILD_HINT);
    return file;
}

/* Copies path into dst (cap bytes) and opens the file read-only. */
hid_t h5_open_named(char *dst, size_t cap, const char *path) {
    h5_quiet();
    size_t len = strlen(path);
    if (len >= cap)
        return err_set("dataset path is longer than %zu characters: %.80s...", cap - 1, path);
    memcpy(dst, path, len + 1);
    return open_readonly(path);
}

int dataset_open(Dataset *ds, const char *path) {
    memset(ds, 0, sizeof *ds);
    hid_t file = h5_open_named(ds->path, sizeof ds->path, path);
    if (file < 0) return -1;
    int rc = dataset_read(ds, file);
    H5Fclose(file);
    if (rc != 0) {
        dataset_close(ds);
        return -1;
    }
    return 0;
}

void dataset_close(Dataset *ds) {
    if (ds->stream) dataset_stream_close(ds);
    free(ds->tokens);
    free(ds->offsets);
    free(ds->loss_mask);
    free(ds->role);
    for (int i = 0; i < ds->n_roles; i++) free(ds->role_names[i]);
    free(ds->role_names);
    free(ds->task);
    for (int i = 0; i < ds->n_tasks; i++) free(ds->task_names[i]);
    free(ds->task_names);
    free(ds->topk_ids);
    free(ds->topk_logp);
    free(ds->cand_tokens);
    free(ds->cand_offsets);
    free(ds->cand_example);
    free(ds->cand_logp);
    free(ds->cand_score);
    memset(ds, 0, sizeof *ds);
}

static int pref_read(PrefDataset *pd, hid_t file) {
    const char *p = pd->path;
    Dataset hdr;
    memset(&hdr, 0, sizeof hdr);
    if (read_attributes_for(&hdr, file, p, 1) != 0) return -1;
    pd->version = hdr.version;
    pd->vocab_size = hdr.vocab_size;
    pd->eos_id = hdr.eos_id;
    pd->pad_id = hdr.pad_id;
    memcpy(pd->tokenizer, hdr.tokenizer, sizeof pd->tokenizer);
    snprintf(pd->boundary, sizeof pd->boundary, "separate"); /* written before the attribute */
    if (H5Aexists(file, "boundary") > 0) {
        if (attr_string(file, p, "boundary", pd->boundary, sizeof pd->boundary) != 0) return -1;
        if (strcmp(pd->boundary, "joint") != 0 && strcmp(pd->boundary, "separate") != 0 &&
            strcmp(pd->boundary, "tokens") != 0)
            return err_set("%s: root attribute 'boundary' is '%s', not one of joint, separate, "
                           "tokens; %s",
                           p, pd->boundary, REBUILD_HINT);
    }
    PrefPart *part[3] = {&pd->prompt, &pd->chosen, &pd->rejected};
    for (int k = 0; k < 3; k++) {
        PrefPart *q = part[k];
        int64_t n_offsets = 0;
        if (read_column(file, p, SCHEMA_PREF, pref_cols[2 * k], 1, COL_TOKENS,
                        (void **)&q->tokens, &q->n_tokens) != 0 ||
            read_column(file, p, SCHEMA_PREF, pref_cols[2 * k + 1], 1, COL_INT64,
                        (void **)&q->offsets, &n_offsets) != 0)
            return -1;
        if (validate_offsets_of(p, pref_cols[2 * k + 1], q->offsets, n_offsets, pref_cols[2 * k],
                                q->n_tokens) != 0)
            return -1;
        if (n_offsets == 1)
            return err_set("%s: the dataset is empty (0 pairs in '%s'); build it from non-empty "
                           "input with `retort data build`",
                           p, pref_cols[2 * k + 1]);
        if (k == 0) pd->n_pairs = n_offsets - 1;
        else if (n_offsets - 1 != pd->n_pairs)
            return err_set("%s: dataset '%s' holds %lld pairs but 'prompt/offsets' holds %lld "
                           "(prompt, chosen and rejected must have one entry per pair); %s",
                           p, pref_cols[2 * k + 1], (long long)(n_offsets - 1),
                           (long long)pd->n_pairs, REBUILD_HINT);
        if (validate_tokens_of(p, pref_cols[2 * k], q->tokens, q->n_tokens, pd->vocab_size) != 0)
            return -1;
        if (k > 0)
            for (int64_t i = 0; i < pd->n_pairs; i++)
                if (q->offsets[i + 1] == q->offsets[i])
                    return err_set("%s: dataset '%s': pair %lld has an empty response (each "
                                   "response ends with EOS); %s",
                                   p, pref_cols[2 * k + 1], (long long)i, REBUILD_HINT);
    }
    pd->ref_seq_len = pd->ref_max_prompt_len = pd->ref_max_completion_len = -1;
    static const char *const ref_attrs[3] = {"ref_seq_len", "ref_max_prompt_len",
                                             "ref_max_completion_len"};
    int *ref_vals[3] = {&pd->ref_seq_len, &pd->ref_max_prompt_len, &pd->ref_max_completion_len};
    for (int k = 0; k < 3; k++) {
        if (H5Aexists(file, ref_attrs[k]) <= 0) continue;
        int64_t v;
        if (attr_int(file, p, ref_attrs[k], &v) != 0) return -1;
        *ref_vals[k] = (int)v;
    }
    if (H5Aexists(file, "ref_model") > 0 &&
        attr_string(file, p, "ref_model", pd->ref_model, sizeof pd->ref_model) != 0)
        return -1;
    static const char *const ref_names[2] = {"ref_logp_chosen", "ref_logp_rejected"};
    double **ref[2] = {&pd->ref_logp_chosen, &pd->ref_logp_rejected};
    for (int k = 0; k < 2; k++) {
        int64_t n = 0;
        int rc = read_column(file, p, SCHEMA_PREF, ref_names[k], 0, COL_FLOAT64, (void **)ref[k],
                             &n);
        if (rc < 0) return -1;
        if (rc == 0 && n != pd->n_pairs)
            return err_set("%s: dataset '%s' has %lld entries but there are %lld pairs (one "
                           "per pair); %s",
                           p, ref_names[k], (long long)n, (long long)pd->n_pairs, REBUILD_HINT);
        /* a completion's log-prob sum under the reference: finite and <= 0;
         * checked here so a bad value stops the run before its first step */
        for (int64_t i = 0; rc == 0 && i < n; i++)
            if (!isfinite((*ref[k])[i]) || (*ref[k])[i] > 0.0)
                return err_set("%s: dataset '%s', pair %lld: %g is not a sum of log-probs "
                               "(finite, <= 0); recompute it with `retort dpo precompute-ref`",
                               p, ref_names[k], (long long)i, (*ref[k])[i]);
    }
    return 0;
}

int pref_dataset_open(PrefDataset *pd, const char *path) {
    memset(pd, 0, sizeof *pd);
    hid_t file = h5_open_named(pd->path, sizeof pd->path, path);
    if (file < 0) return -1;
    int rc = pref_read(pd, file);
    H5Fclose(file);
    if (rc != 0) {
        pref_dataset_close(pd);
        return -1;
    }
    return 0;
}

void pref_dataset_close(PrefDataset *pd) {
    PrefPart *part[3] = {&pd->prompt, &pd->chosen, &pd->rejected};
    for (int k = 0; k < 3; k++) {
        free(part[k]->tokens);
        free(part[k]->offsets);
    }
    free(pd->ref_logp_chosen);
    free(pd->ref_logp_rejected);
    memset(pd, 0, sizeof *pd);
}

int dataset_peek_schema(const char *path, Schema *out) {
    h5_quiet();
    if (access(path, R_OK) != 0)
        return err_set("%s: cannot open dataset: %s", path, strerror(errno));
    if (H5Fis_hdf5(path) <= 0)
        return err_set("%s: not an HDF5 file (no HDF5 signature found); datasets are made with "
                       "`retort data build`",
                       path);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0)
        return err_set("%s: cannot open as HDF5 (%s); the file may be truncated or corrupt; %s",
                       path, h5_reason(), REBUILD_HINT);
    char schema[64];
    int rc = attr_string(file, path, "schema", schema, sizeof schema);
    if (rc == 0 && schema_from_name(schema, out) != 0)
        rc = err_set("%s: root attribute 'schema' is '%s'; expected one of lm, sft, pref, kd; %s",
                     path, schema, REBUILD_HINT);
    H5Fclose(file);
    return rc;
}

