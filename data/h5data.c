/* data/h5data.c — HDF5 datasets: read and validate (lm, sft, pref), write in
 * chunks, and cut into training batches. The schema is in h5data.h.
 *
 * Reading loads every array into memory and checks all of it before anyone
 * uses it, so the training loop never meets a bad token id or offset. HDF5's
 * own error printing is switched off; when an HDF5 call fails we quote the
 * innermost entry of its error stack inside our own sentence, which always
 * names the file and the dataset.
 *
 * Writing appends into chunked, extendible 1-D datasets through in-memory
 * buffers (one H5Dwrite per ~1M tokens, never one per document), then writes
 * the attributes, closes, fsyncs and renames the .tmp over the target.
 */
#include "data/h5data.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train/util.h"

#define REBUILD_HINT "rebuild the file with `retort data build`"

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

/* ------------------------------------------------------------ HDF5 helpers */

static void h5_quiet(void) {
    static int done;
    if (!done) {
        H5open();
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        done = 1;
    }
}

/* The most specific message on HDF5's error stack for the call that just
 * failed. Take it before any other HDF5 call: the next call clears the stack. */
static _Thread_local char h5_why[384];

static herr_t innermost_cb(unsigned n, const H5E_error2_t *e, void *data) {
    if (n == 0 && e->desc) snprintf(data, sizeof h5_why, "%s", e->desc);
    return 0;
}

static const char *h5_reason(void) {
    snprintf(h5_why, sizeof h5_why, "no detail from HDF5");
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost_cb, h5_why);
    return h5_why;
}

static void close_id(hid_t *id, herr_t (*close)(hid_t)) {
    if (*id >= 0) close(*id);
    *id = H5I_INVALID_HID;
}

/* "uint16", "float32", "string(8)", ... for messages about a wrong dtype. */
static void dtype_name(hid_t t, char *buf, size_t cap) {
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
        dtype_name(type, tn, sizeof tn);
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
static int attr_strings(hid_t file, const char *path, const char *name, char ***out, int *n_out) {
    hid_t aid = H5I_INVALID_HID, type = H5I_INVALID_HID, mem = H5I_INVALID_HID;
    hssize_t np = 0;
    int rc = attr_open(file, path, name, &aid, &type, &np);
    if (rc != 0) return rc;
    char tn[64];
    if (H5Tget_class(type) != H5T_STRING || np < 1 || np > 65535) {
        dtype_name(type, tn, sizeof tn);
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
    int rc = attr_strings(file, path, name, &v, &n);
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

typedef enum { COL_TOKENS, COL_INT64, COL_UINT8, COL_FLOAT64 } ColumnKind;

static int dtype_ok(hid_t t, ColumnKind kind) {
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

static const char *const kind_expect[] = {"uint16 or uint32", "int64", "uint8", "float64"};

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
    if (!dtype_ok(type, kind)) {
        dtype_name(type, tn, sizeof tn);
        rc = err_set("%s: dataset '%s' has dtype %s; expected %s; %s", path, name, tn,
                     kind_expect[kind], REBUILD_HINT);
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
        void *buf = xmalloc((size_t)dims[0] * elem[kind]);
        if (dims[0] > 0 && H5Dread(dset, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
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
    if (!want_pref && (ds->schema == SCHEMA_PREF || ds->schema == SCHEMA_KD))
        return err_set("%s: schema '%s' is not supported by this command yet (lm and sft are)",
                       path, schema);
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

static int read_attributes(Dataset *ds, hid_t file, const char *path) {
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
    int rc = attr_strings(file, p, "roles", &ds->role_names, &ds->n_roles);
    if (rc < 0) return -1;
    rc = read_column(file, p, ds->schema, "role", 0, COL_UINT8, (void **)&ds->role, &n);
    if (rc < 0) return -1;
    if (rc > 0) return 0;
    if (n != ds->n_docs)
        return err_set("%s: dataset 'role' has %lld entries but there are %lld examples (one "
                       "role per example); %s",
                       p, (long long)n, (long long)ds->n_docs, REBUILD_HINT);
    if (ds->n_roles > 0)
        for (int64_t i = 0; i < n; i++)
            if (ds->role[i] >= ds->n_roles)
                return err_set("%s: dataset 'role': role[%lld]=%u but attribute 'roles' names "
                               "only %d roles; %s",
                               p, (long long)i, ds->role[i], ds->n_roles, REBUILD_HINT);
    return 0;
}

static int dataset_read(Dataset *ds, hid_t file) {
    const char *p = ds->path;
    if (read_attributes(ds, file, p) != 0) return -1;
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
    if (ds->schema == SCHEMA_SFT && read_sft_columns(ds, file) != 0) return -1;
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

int dataset_open(Dataset *ds, const char *path) {
    memset(ds, 0, sizeof *ds);
    h5_quiet();
    size_t len = strlen(path);
    if (len >= sizeof ds->path)
        return err_set("dataset path is longer than %zu characters: %.80s...",
                       sizeof ds->path - 1, path);
    memcpy(ds->path, path, len + 1);
    hid_t file = open_readonly(path);
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
    free(ds->tokens);
    free(ds->offsets);
    free(ds->loss_mask);
    free(ds->role);
    for (int i = 0; i < ds->n_roles; i++) free(ds->role_names[i]);
    free(ds->role_names);
    memset(ds, 0, sizeof *ds);
}

/* ------------------------------------------------------------------ writing */

/* One extendible 1-D dataset fed through an in-memory buffer. */
typedef struct {
    const char *name;
    hid_t dset;
    hid_t memtype;
    size_t elem;      /* bytes per element in memory */
    void *buf;        /* (cap) elements */
    int64_t n_buf, cap;
    int64_t n_file;   /* elements already in the file */
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
    Column tokens, offsets, mask, role;
    int has_role;        /* -1 until the first document decides */
    int max_role;
    int64_t n_docs, n_tokens;
    int64_t doc_start;   /* n_tokens when the current document began */
    char **role_names;
    int n_roles;
    int failed;          /* an HDF5 write failed: only abort remains */
    Column extra[6];     /* pref: {prompt,chosen,rejected}/{tokens,offsets} */
    int n_extra;
};

static int column_create(DatasetWriter *w, Column *c, const char *name, hid_t filetype,
                         hid_t memtype, size_t elem, int64_t chunk, int64_t cap) {
    hsize_t dims = 0, maxdims = H5S_UNLIMITED, chunk_dims = (hsize_t)chunk;
    hid_t space = H5Screate_simple(1, &dims, &maxdims);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 1, &chunk_dims);
    c->dset = H5Dcreate2(w->file, name, filetype, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (c->dset < 0) h5_reason();
    H5Pclose(dcpl);
    H5Sclose(space);
    if (c->dset < 0)
        return err_set("%s: cannot create dataset '%s' (HDF5: %s)", w->tmp, name, h5_why);
    c->name = name;
    c->memtype = memtype;
    c->elem = elem;
    c->cap = cap;
    c->buf = xmalloc((size_t)cap * elem);
    return 0;
}

static int column_flush(DatasetWriter *w, Column *c) {
    if (c->n_buf == 0) return 0;
    hsize_t start = (hsize_t)c->n_file, count = (hsize_t)c->n_buf, size = start + count;
    int rc = 0;
    if (H5Dset_extent(c->dset, &size) < 0) {
        rc = -1;
        h5_reason();
    } else {
        hid_t fs = H5Dget_space(c->dset), ms = H5Screate_simple(1, &count, NULL);
        if (H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &count, NULL) < 0 ||
            H5Dwrite(c->dset, c->memtype, ms, fs, H5P_DEFAULT, c->buf) < 0) {
            rc = -1;
            h5_reason();
        }
        H5Sclose(ms);
        H5Sclose(fs);
    }
    if (rc != 0) {
        w->failed = 1;
        return err_set("%s: cannot write dataset '%s' (HDF5: %s); check free disk space", w->tmp,
                       c->name, h5_why);
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

static void column_free(Column *c) {
    if (c->dset > 0) H5Dclose(c->dset);
    c->dset = H5I_INVALID_HID;
    free(c->buf);
    c->buf = NULL;
}

static void writer_destroy(DatasetWriter *w, int remove_tmp) {
    column_free(&w->tokens);
    column_free(&w->offsets);
    column_free(&w->mask);
    column_free(&w->role);
    for (int i = 0; i < w->n_extra; i++) column_free(&w->extra[i]);
    if (w->file >= 0) H5Fclose(w->file);
    if (remove_tmp) unlink(w->tmp);
    for (int i = 0; i < w->n_roles; i++) free(w->role_names[i]);
    free(w->role_names);
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
    w->has_role = -1;
    w->max_role = -1;
    w->tokens.dset = w->offsets.dset = w->mask.dset = w->role.dset = H5I_INVALID_HID;
    w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (w->file < 0) {
        err_set("cannot create %s (HDF5: %s); check that the directory exists and is writable",
                w->tmp, h5_reason());
        writer_destroy(w, 0);
        return NULL;
    }
    return w;
}

DatasetWriter *dataset_writer_open(const char *path, Schema schema, int vocab_size, int eos_id,
                                   int pad_id, const char *tokenizer) {
    h5_quiet();
    if (schema != SCHEMA_LM && schema != SCHEMA_SFT) {
        err_set("%s: writing schema '%s' is not supported yet (lm and sft are)", path,
                schema_name(schema));
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
        (schema == SCHEMA_SFT &&
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
    if (w->schema == SCHEMA_SFT) {
        if (!loss_mask && n > 0)
            return err_set("%s: sft documents need a loss_mask (one 0/1 per token)", w->path);
        for (int64_t i = 0; i < n; i++)
            if (loss_mask[i] > 1)
                return err_set("%s: loss_mask value %u (document %lld, position %lld); values "
                               "must be 0 or 1",
                               w->path, loss_mask[i], (long long)w->n_docs,
                               (long long)(w->n_tokens - w->doc_start + i));
    }
    if (column_append(w, &w->tokens, tokens, n) != 0) return -1;
    if (w->schema == SCHEMA_SFT && column_append(w, &w->mask, loss_mask, n) != 0) return -1;
    w->n_tokens += n;
    return 0;
}

/* Whether a document with this role id (< 0: none) may follow the earlier ones. */
static int check_role(const DatasetWriter *w, int role) {
    if (role >= 0 && w->schema != SCHEMA_SFT)
        return err_set("%s: only sft datasets carry roles", w->path);
    if (role > 255) return err_set("%s: role id %d does not fit in uint8", w->path, role);
    if (w->has_role >= 0 && w->has_role != (role >= 0))
        return err_set("%s: document %lld %s a role but earlier documents %s; give every "
                       "document a role or none",
                       w->path, (long long)w->n_docs, role >= 0 ? "has" : "lacks",
                       w->has_role ? "have one" : "do not");
    return 0;
}

int dataset_writer_end_doc(DatasetWriter *w, int role) {
    if (w->failed) return err_set("%s: an earlier write failed; the file is abandoned", w->tmp);
    if (check_role(w, role) != 0) return -1;
    if (w->has_role < 0) {
        w->has_role = role >= 0;
        if (role >= 0 && column_create(w, &w->role, "role", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1,
                                       DOC_CHUNK, DOC_BUFFER) != 0) {
            w->failed = 1;
            return -1;
        }
    }
    int64_t end = w->n_tokens;
    if (column_append(w, &w->offsets, &end, 1) != 0) return -1;
    if (role >= 0) {
        uint8_t r = (uint8_t)role;
        if (column_append(w, &w->role, &r, 1) != 0) return -1;
        if (role > w->max_role) w->max_role = role;
    }
    w->n_docs++;
    w->doc_start = w->n_tokens;
    return 0;
}

int dataset_writer_add(DatasetWriter *w, const uint32_t *tokens, const uint8_t *loss_mask,
                       int64_t n, int role) {
    if (check_role(w, role) != 0) return -1; /* before any token is buffered */
    if (dataset_writer_append(w, tokens, loss_mask, n) != 0) return -1;
    return dataset_writer_end_doc(w, role);
}

int dataset_writer_set_roles(DatasetWriter *w, const char *const *names, int n) {
    if (n < 1 || n > 256)
        return err_set("%s: %d role names; between 1 and 256 fit a uint8 role id", w->path, n);
    for (int i = 0; i < w->n_roles; i++) free(w->role_names[i]);
    free(w->role_names);
    w->role_names = xcalloc((size_t)n, sizeof *w->role_names);
    for (int i = 0; i < n; i++) w->role_names[i] = xstrdup(names[i]);
    w->n_roles = n;
    return 0;
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
    if (aid >= 0) H5Aclose(aid);
    H5Sclose(space);
    H5Tclose(type);
    free(buf);
    if (rc) return err_set("%s: cannot write attribute '%s' (HDF5: %s)", w->tmp, name, h5_why);
    return 0;
}

static int write_attr_int(DatasetWriter *w, const char *name, int64_t v) {
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t aid = H5Acreate2(w->file, name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT);
    int rc = (aid < 0 || H5Awrite(aid, H5T_NATIVE_INT64, &v) < 0) ? -1 : 0;
    if (rc) h5_reason();
    if (aid >= 0) H5Aclose(aid);
    H5Sclose(space);
    if (rc) return err_set("%s: cannot write attribute '%s' (HDF5: %s)", w->tmp, name, h5_why);
    return 0;
}

static int writer_finish(DatasetWriter *w) {
    if (w->failed) return err_set("%s: an earlier write failed; nothing was written", w->path);
    if (w->n_docs == 0)
        return err_set("%s: no documents were added; an empty dataset cannot be trained on",
                       w->path);
    if (w->has_role == 1 && w->n_roles > 0 && w->max_role >= w->n_roles)
        return err_set("%s: role id %d is used but only %d role names were set", w->path,
                       w->max_role, w->n_roles);
    if (column_flush(w, &w->tokens) != 0 || column_flush(w, &w->offsets) != 0 ||
        (w->mask.buf && column_flush(w, &w->mask) != 0) ||
        (w->role.buf && column_flush(w, &w->role) != 0))
        return -1;
    for (int i = 0; i < w->n_extra; i++)
        if (column_flush(w, &w->extra[i]) != 0) return -1;
    const char *schema = schema_name(w->schema), *tok = w->tokenizer;
    if (write_attr_strings(w, "schema", &schema, 1, 1) != 0 ||
        write_attr_int(w, "version", H5DATA_VERSION) != 0 ||
        write_attr_int(w, "vocab_size", w->vocab_size) != 0 ||
        write_attr_int(w, "eos_id", w->eos_id) != 0 ||
        write_attr_int(w, "pad_id", w->pad_id) != 0 ||
        write_attr_strings(w, "tokenizer", &tok, 1, 1) != 0 ||
        (w->n_roles > 0 &&
         write_attr_strings(w, "roles", (const char *const *)w->role_names, w->n_roles, 0) != 0))
        return -1;
    column_free(&w->tokens);
    column_free(&w->offsets);
    column_free(&w->mask);
    column_free(&w->role);
    for (int i = 0; i < w->n_extra; i++) column_free(&w->extra[i]);
    herr_t closed = H5Fclose(w->file);
    w->file = H5I_INVALID_HID;
    if (closed < 0)
        return err_set("%s: cannot close (HDF5: %s); check free disk space", w->tmp,
                       h5_reason());
    int fd = open(w->tmp, O_RDONLY);
    if (fd < 0 || fsync(fd) != 0) {
        int e = errno;
        if (fd >= 0) close(fd);
        return err_set("cannot fsync %s: %s", w->tmp, strerror(e));
    }
    close(fd);
    if (rename(w->tmp, w->path) != 0)
        return err_set("cannot rename %s to %s: %s", w->tmp, w->path, strerror(errno));
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", w->path);
    char *slash = strrchr(dir, '/');
    if (slash) *(slash == dir ? slash + 1 : slash) = '\0';
    else snprintf(dir, sizeof dir, ".");
    return fsync_dir(dir);
}

int dataset_writer_close(DatasetWriter *w) {
    int rc = writer_finish(w);
    writer_destroy(w, rc != 0);
    return rc;
}

void dataset_writer_abort(DatasetWriter *w) {
    if (w) writer_destroy(w, 1);
}

/* ------------------------------------------------------------ pref files */

static const char *const pref_parts[3] = {"prompt", "chosen", "rejected"};
static const char *const pref_cols[6] = {"prompt/tokens", "prompt/offsets", "chosen/tokens",
                                         "chosen/offsets", "rejected/tokens", "rejected/offsets"};

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
        if (g < 0) {
            err_set("%s: cannot create group '%s' (HDF5: %s)", w->tmp, pref_parts[p],
                    h5_reason());
            writer_destroy(w, 1);
            return NULL;
        }
        H5Gclose(g);
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
    }
    return 0;
}

int pref_dataset_open(PrefDataset *pd, const char *path) {
    memset(pd, 0, sizeof *pd);
    h5_quiet();
    size_t len = strlen(path);
    if (len >= sizeof pd->path)
        return err_set("dataset path is longer than %zu characters: %.80s...",
                       sizeof pd->path - 1, path);
    memcpy(pd->path, path, len + 1);
    hid_t file = open_readonly(path);
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

/* ----------------------------------------------------------------- batching */

int64_t dataset_num_items(const Dataset *ds, int T) {
    if (T < 1) return 0;
    if (ds->schema == SCHEMA_LM) return ds->n_tokens >= 1 ? (ds->n_tokens - 1) / T : 0;
    return ds->n_docs;
}

/* The visiting order of one epoch: identity, or Fisher-Yates from (seed, epoch). */
static void build_order(DataLoader *dl) {
    for (int64_t i = 0; i < dl->count; i++) dl->order[i] = i;
    if (!dl->shuffle) return;
    Rng r;
    rng_seed(&r, dl->seed * 1000003ULL + (uint64_t)dl->epoch);
    for (int64_t i = dl->count - 1; i > 0; i--) {
        int64_t j = (int64_t)rng_below(&r, (uint64_t)i + 1);
        int64_t t = dl->order[i];
        dl->order[i] = dl->order[j];
        dl->order[j] = t;
    }
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

void loader_free(DataLoader *dl) {
    free(dl->order);
    dl->order = NULL;
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

void loader_next(DataLoader *dl, int B, int *inputs, int *targets) {
    int T = dl->T;
    for (int b = 0; b < B; b++) {
        int64_t item = dl->first + dl->order[dl->pos];
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
