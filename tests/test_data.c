/* tests/test_data.c — HDF5 datasets (writer -> reader round trips, one test
 * per malformed-file refusal, crafted with the HDF5 API directly), the batch
 * loader (lm windows, sft rows, shuffling, seeking, item ranges), the byte
 * tokenizer, and `retort data build` from JSONL and plain text. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <hdf5.h>
#include <stdint.h>
#include <sys/stat.h>

#include "data/build.h"
#include "data/h5data.h"
#include "data/tokenizer.h"
#include "tests/testutil.h"

/* ---------------------------------------------------------------- helpers */

static void join(char *buf, size_t cap, const char *dir, const char *name) {
    snprintf(buf, cap, "%s/%s", dir, name);
}

/* dataset_open must refuse path, leave ds zeroed, and name the file plus each needle. */
static void assert_refused(const char *path, const char *const *needles) {
    Dataset ds;
    err_clear();
    cr_assert_eq(dataset_open(&ds, path), -1, "%s was accepted", path);
    cr_assert_null(ds.tokens, "tokens left allocated after a refusal");
    cr_assert_null(ds.offsets, "offsets left allocated after a refusal");
    assert_contains(err_msg(), path);
    for (; *needles; needles++) assert_contains(err_msg(), *needles);
}
#define REFUSED(path, ...) assert_refused(path, (const char *const[]){__VA_ARGS__, NULL})

/* An lm file of n_docs documents of pseudo-random lengths and ids < vocab;
 * the concatenated stream goes to *stream (caller frees) when not NULL. */
static int64_t write_lm(const char *path, int n_docs, int vocab, uint64_t seed,
                        uint32_t **stream, int64_t **offsets) {
    DatasetWriter *w = dataset_writer_open(path, SCHEMA_LM, vocab, vocab - 1, vocab - 1, "test");
    cr_assert_not_null(w, "%s", err_msg());
    Rng r;
    rng_seed(&r, seed);
    int64_t total = 0, cap = 1024;
    uint32_t *all = malloc((size_t)cap * sizeof *all);
    int64_t *offs = calloc((size_t)n_docs + 1, sizeof *offs);
    uint32_t doc[200];
    for (int d = 0; d < n_docs; d++) {
        int n = 1 + (int)rng_below(&r, 60);
        for (int i = 0; i < n; i++) doc[i] = (uint32_t)rng_below(&r, (uint64_t)vocab);
        cr_assert_eq(dataset_writer_add(w, doc, NULL, n, -1), 0, "%s", err_msg());
        if (total + n > cap) all = realloc(all, (size_t)(cap = 2 * (total + n)) * sizeof *all);
        memcpy(all + total, doc, (size_t)n * sizeof *doc);
        total += n;
        offs[d + 1] = total;
    }
    cr_assert_eq(dataset_writer_close(w), 0, "%s", err_msg());
    if (stream) *stream = all;
    else free(all);
    if (offsets) *offsets = offs;
    else free(offs);
    return total;
}

/* The stored dtype size of a dataset, read with the HDF5 API. */
static size_t stored_dtype_size(const char *path, const char *name) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert(f >= 0);
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    cr_assert(d >= 0, "no dataset %s in %s", name, path);
    hid_t t = H5Dget_type(d);
    size_t size = H5Tget_size(t);
    H5Tclose(t);
    H5Dclose(d);
    H5Fclose(f);
    return size;
}

/* ------------------------------------------------ crafting files by hand */

/* What a hand-made file holds; good_lm() gives a valid lm file and each
 * refusal test breaks one thing. NULL names / negative counts are omitted. */
typedef struct {
    const char *schema;
    int schema_vlen;            /* write `schema` as a variable-length string, as h5py does */
    int64_t vocab_size;
    int omit_version;
    const void *tokens;         /* (n_tokens) of tokens_type, or NULL: no dataset */
    int64_t n_tokens;
    hid_t tokens_type;          /* memory type, stored as the same */
    int tokens_2d;
    hsize_t tokens_extent;      /* > 0: tokens chunked (4 per chunk) with this extent, of
                                   which only the first n_tokens are written */
    const int64_t *offsets;     /* (n_offsets) */
    int64_t n_offsets;
    const uint8_t *loss_mask;   /* (n_mask) */
    int64_t n_mask;
    const uint8_t *role;        /* (n_role) */
    int64_t n_role;
    const char *const *roles;   /* (n_roles) names */
    int n_roles;
} Craft;

static const uint16_t good_tokens[6] = {1, 2, 3, 4, 5, 9};
static const int64_t good_offsets[3] = {0, 3, 6};
static const uint8_t good_mask[6] = {0, 1, 1, 0, 1, 1};

static Craft good_lm(void) {
    return (Craft){.schema = "lm", .vocab_size = 10, .tokens = good_tokens, .n_tokens = 6,
                   .tokens_type = H5T_NATIVE_UINT16, .offsets = good_offsets, .n_offsets = 3};
}

static Craft good_sft(void) {
    Craft c = good_lm();
    c.schema = "sft";
    c.loss_mask = good_mask;
    c.n_mask = 6;
    return c;
}

static void craft_attr_str(hid_t f, const char *name, const char *value, int vlen) {
    hid_t t = H5Tcopy(H5T_C_S1);
    hid_t s = H5Screate(H5S_SCALAR);
    if (vlen) {
        H5Tset_size(t, H5T_VARIABLE);
        H5Tset_cset(t, H5T_CSET_UTF8);
    } else {
        H5Tset_size(t, strlen(value));
        H5Tset_strpad(t, H5T_STR_NULLPAD);
    }
    hid_t a = H5Acreate2(f, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(a >= 0);
    cr_assert(H5Awrite(a, t, vlen ? (const void *)&value : (const void *)value) >= 0);
    H5Aclose(a);
    H5Sclose(s);
    H5Tclose(t);
}

static void craft_attr_int(hid_t f, const char *name, int64_t v) {
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, name, H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(a >= 0);
    cr_assert(H5Awrite(a, H5T_NATIVE_INT64, &v) >= 0);
    H5Aclose(a);
    H5Sclose(s);
}

static void craft_dset(hid_t f, const char *name, hid_t type, const void *data, int64_t n,
                       int two_d) {
    hsize_t dims[2] = {(hsize_t)n, 1};
    if (two_d) dims[0] = (hsize_t)n / 2, dims[1] = 2;
    hid_t s = H5Screate_simple(two_d ? 2 : 1, dims, NULL);
    hid_t d = H5Dcreate2(f, name, type, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(d >= 0, "cannot create %s", name);
    if (n > 0) cr_assert(H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
    H5Dclose(d);
    H5Sclose(s);
}

static void craft(const char *path, const Craft *c) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(f >= 0, "cannot create %s", path);
    if (c->schema) craft_attr_str(f, "schema", c->schema, c->schema_vlen);
    if (!c->omit_version) craft_attr_int(f, "version", 1);
    craft_attr_int(f, "vocab_size", c->vocab_size);
    craft_attr_int(f, "eos_id", c->vocab_size - 1);
    craft_attr_int(f, "pad_id", c->vocab_size - 1);
    craft_attr_str(f, "tokenizer", "test", 0);
    if (c->tokens && c->tokens_extent) {
        hsize_t chunk = 4, n = (hsize_t)c->n_tokens, zero = 0;
        hid_t s = H5Screate_simple(1, &c->tokens_extent, NULL);
        hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
        H5Pset_chunk(dcpl, 1, &chunk);
        hid_t d = H5Dcreate2(f, "tokens", c->tokens_type, s, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        cr_assert(d >= 0);
        hid_t mem = H5Screate_simple(1, &n, NULL);
        H5Sselect_hyperslab(s, H5S_SELECT_SET, &zero, NULL, &n, NULL);
        cr_assert(H5Dwrite(d, c->tokens_type, mem, s, H5P_DEFAULT, c->tokens) >= 0);
        H5Sclose(mem);
        H5Dclose(d);
        H5Pclose(dcpl);
        H5Sclose(s);
    } else if (c->tokens) {
        craft_dset(f, "tokens", c->tokens_type, c->tokens, c->n_tokens, c->tokens_2d);
    }
    if (c->offsets) craft_dset(f, "offsets", H5T_NATIVE_INT64, c->offsets, c->n_offsets, 0);
    if (c->loss_mask) craft_dset(f, "loss_mask", H5T_NATIVE_UINT8, c->loss_mask, c->n_mask, 0);
    if (c->role) craft_dset(f, "role", H5T_NATIVE_UINT8, c->role, c->n_role, 0);
    if (c->roles) {
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, H5T_VARIABLE);
        hsize_t n = (hsize_t)c->n_roles;
        hid_t s = H5Screate_simple(1, &n, NULL);
        hid_t a = H5Acreate2(f, "roles", t, s, H5P_DEFAULT, H5P_DEFAULT);
        cr_assert(H5Awrite(a, t, c->roles) >= 0);
        H5Aclose(a);
        H5Sclose(s);
        H5Tclose(t);
    }
    H5Fclose(f);
}

/* A fresh temporary directory and a path "dir/name" inside it. */
#define TMP_FILE(dir, path, name)                                                            \
    char dir[256], path[512];                                                                \
    make_temp_dir(dir, sizeof dir, "data");                                                  \
    join(path, sizeof path, dir, name)

/* ------------------------------------------------------------ round trips */

Test(h5data, lm_round_trip_uint16) {
    TMP_FILE(dir, path, "lm.h5");
    uint32_t *stream;
    int64_t *offs;
    int64_t total = write_lm(path, 40, 300, 1, &stream, &offs);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    cr_assert(!path_exists(tmp), "the .tmp file was left behind");
    cr_assert_eq(stored_dtype_size(path, "tokens"), 2, "vocab 300 must be stored as uint16");

    Dataset ds;
    cr_assert_eq(dataset_open(&ds, path), 0, "%s", err_msg());
    cr_assert_eq(ds.schema, SCHEMA_LM);
    cr_assert_eq(ds.version, H5DATA_VERSION);
    cr_assert_eq(ds.vocab_size, 300);
    cr_assert_eq(ds.eos_id, 299);
    cr_assert_eq(ds.pad_id, 299);
    cr_assert_str_eq(ds.tokenizer, "test");
    cr_assert_eq(ds.n_docs, 40);
    cr_assert_eq(ds.n_tokens, total);
    cr_assert_null(ds.loss_mask);
    cr_assert_null(ds.role);
    for (int64_t i = 0; i <= 40; i++) cr_assert_eq(ds.offsets[i], offs[i], "offsets[%ld]", i);
    for (int64_t i = 0; i < total; i++) cr_assert_eq(ds.tokens[i], stream[i], "tokens[%ld]", i);
    dataset_close(&ds);
    cr_assert_null(ds.tokens);
    free(stream);
    free(offs);
    rm_rf(dir);
}

Test(h5data, vocab_over_65536_is_stored_uint32) {
    TMP_FILE(dir, path, "big.h5");
    const int vocab = 70000;
    uint32_t doc[5] = {0, 65535, 65536, 69998, 69999};
    DatasetWriter *w = dataset_writer_open(path, SCHEMA_LM, vocab, 69999, 0, "big");
    cr_assert_not_null(w, "%s", err_msg());
    cr_assert_eq(dataset_writer_add(w, doc, NULL, 5, -1), 0, "%s", err_msg());
    cr_assert_eq(dataset_writer_add(w, doc + 2, NULL, 3, -1), 0, "%s", err_msg());
    cr_assert_eq(dataset_writer_close(w), 0, "%s", err_msg());
    cr_assert_eq(stored_dtype_size(path, "tokens"), 4);

    Dataset ds;
    cr_assert_eq(dataset_open(&ds, path), 0, "%s", err_msg());
    cr_assert_eq(ds.vocab_size, vocab);
    cr_assert_eq(ds.pad_id, 0);
    cr_assert_eq(ds.n_tokens, 8);
    uint32_t want[8] = {0, 65535, 65536, 69998, 69999, 65536, 69998, 69999};
    for (int i = 0; i < 8; i++) cr_assert_eq(ds.tokens[i], want[i], "tokens[%d]", i);
    cr_assert_eq(ds.offsets[1], 5);
    cr_assert_eq(ds.offsets[2], 8);
    dataset_close(&ds);
    rm_rf(dir);
}

Test(h5data, sft_round_trip_with_roles) {
    TMP_FILE(dir, path, "sft.h5");
    DatasetWriter *w = dataset_writer_open(path, SCHEMA_SFT, 257, 256, 256, "bytes");
    cr_assert_not_null(w, "%s", err_msg());
    const char *roles[3] = {"planner", "caller", "summarizer"};
    cr_assert_eq(dataset_writer_set_roles(w, roles, 3), 0, "%s", err_msg());
    uint32_t t0[4] = {10, 11, 12, 256}, t1[3] = {20, 21, 256}, t2[2] = {30, 256};
    uint8_t m0[4] = {0, 0, 1, 1}, m1[3] = {0, 1, 1}, m2[2] = {1, 1};
    cr_assert_eq(dataset_writer_add(w, t0, m0, 4, 2), 0, "%s", err_msg());
    cr_assert_eq(dataset_writer_add(w, t1, m1, 3, 0), 0, "%s", err_msg());
    cr_assert_eq(dataset_writer_add(w, t2, m2, 2, 1), 0, "%s", err_msg());
    /* a document without a role among documents with roles is refused, and
     * leaves the writer as it was */
    cr_assert_eq(dataset_writer_add(w, t2, m2, 2, -1), -1);
    assert_contains(err_msg(), "role");
    cr_assert_eq(dataset_writer_close(w), 0, "%s", err_msg());

    Dataset ds;
    cr_assert_eq(dataset_open(&ds, path), 0, "%s", err_msg());
    cr_assert_eq(ds.schema, SCHEMA_SFT);
    cr_assert_str_eq(ds.tokenizer, "bytes");
    cr_assert_eq(ds.n_docs, 3);
    cr_assert_eq(ds.n_tokens, 9);
    uint8_t want_mask[9] = {0, 0, 1, 1, 0, 1, 1, 1, 1};
    uint32_t want_tok[9] = {10, 11, 12, 256, 20, 21, 256, 30, 256};
    for (int i = 0; i < 9; i++) {
        cr_assert_eq(ds.loss_mask[i], want_mask[i], "loss_mask[%d]", i);
        cr_assert_eq(ds.tokens[i], want_tok[i], "tokens[%d]", i);
    }
    cr_assert_not_null(ds.role);
    cr_assert_eq(ds.role[0], 2);
    cr_assert_eq(ds.role[1], 0);
    cr_assert_eq(ds.role[2], 1);
    cr_assert_eq(ds.n_roles, 3);
    for (int i = 0; i < 3; i++) cr_assert_str_eq(ds.role_names[i], roles[i]);
    dataset_close(&ds);
    rm_rf(dir);
}

/* More than the writer's 1M-token buffer, with one document appended in
 * pieces: the chunked flushes must join up exactly. */
Test(h5data, long_document_streamed_across_buffer_flushes) {
    TMP_FILE(dir, path, "long.h5");
    DatasetWriter *w = dataset_writer_open(path, SCHEMA_LM, 1000, 999, 999, "test");
    cr_assert_not_null(w, "%s", err_msg());
    const int64_t piece = 700001, pieces = 3, n = piece * pieces;
    uint32_t *buf = malloc((size_t)piece * sizeof *buf);
    for (int64_t p = 0; p < pieces; p++) {
        for (int64_t i = 0; i < piece; i++) buf[i] = (uint32_t)((p * piece + i) % 997);
        cr_assert_eq(dataset_writer_append(w, buf, NULL, piece), 0, "%s", err_msg());
    }
    cr_assert_eq(dataset_writer_end_doc(w, -1), 0, "%s", err_msg());
    uint32_t tail[2] = {5, 999};
    cr_assert_eq(dataset_writer_add(w, tail, NULL, 2, -1), 0, "%s", err_msg());
    cr_assert_eq(dataset_writer_close(w), 0, "%s", err_msg());

    Dataset ds;
    cr_assert_eq(dataset_open(&ds, path), 0, "%s", err_msg());
    cr_assert_eq(ds.n_docs, 2);
    cr_assert_eq(ds.n_tokens, n + 2);
    cr_assert_eq(ds.offsets[1], n);
    for (int64_t i = 0; i < n; i++)
        if (ds.tokens[i] != (uint32_t)(i % 997)) cr_assert_fail("tokens[%ld]=%u", i, ds.tokens[i]);
    cr_assert_eq(ds.tokens[n], 5);
    cr_assert_eq(ds.tokens[n + 1], 999);
    dataset_close(&ds);
    free(buf);
    rm_rf(dir);
}

Test(h5data, writer_refuses_bad_ids_and_empty_files) {
    TMP_FILE(dir, path, "w.h5");
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    DatasetWriter *w = dataset_writer_open(path, SCHEMA_LM, 10, 9, 9, "t");
    cr_assert_not_null(w, "%s", err_msg());
    uint32_t bad[3] = {1, 10, 2};
    cr_assert_eq(dataset_writer_add(w, bad, NULL, 3, -1), -1);
    assert_contains(err_msg(), "10");
    assert_contains(err_msg(), "vocab_size");
    /* nothing was added, so closing would make an empty file */
    cr_assert_eq(dataset_writer_close(w), -1);
    assert_contains(err_msg(), "no documents");
    cr_assert(!path_exists(path) && !path_exists(tmp));

    /* abort leaves an existing file untouched and removes the .tmp */
    write_lm(path, 3, 10, 5, NULL, NULL);
    w = dataset_writer_open(path, SCHEMA_LM, 10, 9, 9, "t");
    cr_assert(path_exists(tmp));
    dataset_writer_abort(w);
    cr_assert(!path_exists(tmp));
    Dataset ds;
    cr_assert_eq(dataset_open(&ds, path), 0, "%s", err_msg());
    cr_assert_eq(ds.n_docs, 3);
    dataset_close(&ds);

    /* sft needs a loss mask; lm cannot carry roles; pref cannot be written yet */
    w = dataset_writer_open(path, SCHEMA_SFT, 10, 9, 9, "t");
    cr_assert_eq(dataset_writer_add(w, bad, NULL, 1, -1), -1);
    assert_contains(err_msg(), "loss_mask");
    dataset_writer_abort(w);
    w = dataset_writer_open(path, SCHEMA_LM, 10, 9, 9, "t");
    cr_assert_eq(dataset_writer_add(w, bad, NULL, 1, 0), -1);
    assert_contains(err_msg(), "role");
    dataset_writer_abort(w);
    cr_assert_null(dataset_writer_open(path, SCHEMA_PREF, 10, 9, 9, "t"));
    cr_assert_null(dataset_writer_open(path, SCHEMA_LM, 10, 10, 9, "t"));
    rm_rf(dir);
}

Test(h5data, schema_names) {
    Schema s;
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(schema_from_name(schema_name((Schema)i), &s), 0);
        cr_assert_eq(s, (Schema)i);
    }
    cr_assert_str_eq(schema_name(SCHEMA_SFT), "sft");
    cr_assert_eq(schema_from_name("dpo", &s), -1);
    assert_contains(err_msg(), "'dpo'");
}

/* h5py writes string attributes as variable-length UTF-8 and role names as a
 * variable-length array; both must read. */
Test(h5data, reads_variable_length_string_attributes) {
    TMP_FILE(dir, path, "vlen.h5");
    Craft c = good_sft();
    c.schema_vlen = 1;
    const char *roles[2] = {"global", "local"};
    uint8_t role[2] = {1, 0};
    c.roles = roles;
    c.n_roles = 2;
    c.role = role;
    c.n_role = 2;
    craft(path, &c);
    Dataset ds;
    cr_assert_eq(dataset_open(&ds, path), 0, "%s", err_msg());
    cr_assert_eq(ds.schema, SCHEMA_SFT);
    cr_assert_eq(ds.n_roles, 2);
    cr_assert_str_eq(ds.role_names[0], "global");
    cr_assert_str_eq(ds.role_names[1], "local");
    cr_assert_eq(ds.role[0], 1);
    cr_assert_eq(ds.loss_mask[1], 1);
    dataset_close(&ds);
    rm_rf(dir);
}

/* --------------------------------------------------------------- refusals */

Test(refuse, missing_file) {
    char dir[256], path[512];
    make_temp_dir(dir, sizeof dir, "data");
    join(path, sizeof path, dir, "nope.h5");
    REFUSED(path, "No such file");
    rm_rf(dir);
}

Test(refuse, not_an_hdf5_file) {
    TMP_FILE(dir, path, "random.h5");
    unsigned char bytes[4096];
    Rng r;
    rng_seed(&r, 3);
    for (size_t i = 0; i < sizeof bytes; i++) bytes[i] = (unsigned char)rng_u64(&r);
    FILE *f = fopen(path, "wb");
    fwrite(bytes, 1, sizeof bytes, f);
    fclose(f);
    REFUSED(path, "not an HDF5 file");
    rm_rf(dir);
}

Test(refuse, truncated_hdf5_file) {
    TMP_FILE(dir, path, "trunc.h5");
    write_lm(path, 200, 300, 9, NULL, NULL);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(truncate(path, st.st_size / 2), 0);
    REFUSED(path, "truncated");
    /* cut anywhere, it is refused cleanly (as not HDF5 when the signature is gone) */
    off_t cuts[] = {st.st_size / 2 - 1, 4096, 2048, 1000, 512, 100, 8, 0};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        cr_assert_eq(truncate(path, cuts[i]), 0);
        REFUSED(path, "HDF5");
    }
    rm_rf(dir);
}

Test(refuse, missing_schema_attribute) {
    TMP_FILE(dir, path, "noschema.h5");
    Craft c = good_lm();
    c.schema = NULL;
    craft(path, &c);
    REFUSED(path, "'schema'", "missing");
    rm_rf(dir);
}

Test(refuse, missing_version_attribute) {
    TMP_FILE(dir, path, "noversion.h5");
    Craft c = good_lm();
    c.omit_version = 1;
    craft(path, &c);
    REFUSED(path, "'version'", "missing");
    rm_rf(dir);
}

Test(refuse, unknown_schema) {
    TMP_FILE(dir, path, "weird.h5");
    Craft c = good_lm();
    c.schema = "chat";
    craft(path, &c);
    REFUSED(path, "'schema'", "'chat'");
    rm_rf(dir);
}

Test(refuse, pref_file_opened_as_lm_sft_kd) {
    TMP_FILE(dir, path, "pref.h5");
    Craft c = good_lm();
    c.schema = "pref";
    craft(path, &c);
    REFUSED(path, "schema 'pref' holds preference pairs", "objective dpo");
    rm_rf(dir);
}

Test(refuse, missing_tokens_dataset) {
    TMP_FILE(dir, path, "notokens.h5");
    Craft c = good_lm();
    c.tokens = NULL;
    craft(path, &c);
    REFUSED(path, "dataset 'tokens'", "missing");
    rm_rf(dir);
}

Test(refuse, float_tokens_dtype) {
    TMP_FILE(dir, path, "float.h5");
    static const float ftok[6] = {1, 2, 3, 4, 5, 9};
    Craft c = good_lm();
    c.tokens = ftok;
    c.tokens_type = H5T_NATIVE_FLOAT;
    craft(path, &c);
    REFUSED(path, "dataset 'tokens'", "float32", "uint16 or uint32");
    rm_rf(dir);
}

Test(refuse, signed_tokens_dtype) {
    TMP_FILE(dir, path, "int64.h5");
    static const int64_t itok[6] = {1, 2, 3, 4, 5, 9};
    Craft c = good_lm();
    c.tokens = itok;
    c.tokens_type = H5T_NATIVE_INT64;
    craft(path, &c);
    REFUSED(path, "dataset 'tokens'", "int64");
    rm_rf(dir);
}

Test(refuse, two_dimensional_tokens) {
    TMP_FILE(dir, path, "2d.h5");
    Craft c = good_lm();
    c.tokens_2d = 1;
    craft(path, &c);
    REFUSED(path, "dataset 'tokens'", "2 dimensions");
    rm_rf(dir);
}

Test(refuse, offsets_not_monotonic) {
    TMP_FILE(dir, path, "mono.h5");
    static const int64_t offs[4] = {0, 4, 2, 6};
    Craft c = good_lm();
    c.offsets = offs;
    c.n_offsets = 4;
    craft(path, &c);
    REFUSED(path, "dataset 'offsets'", "offsets[2]=2 < offsets[1]=4", "non-decreasing");
    rm_rf(dir);
}

Test(refuse, offsets_last_not_token_count) {
    TMP_FILE(dir, path, "last.h5");
    static const int64_t offs[3] = {0, 3, 5};
    Craft c = good_lm();
    c.offsets = offs;
    craft(path, &c);
    REFUSED(path, "dataset 'offsets'", "offsets[2]=5", "6 tokens");
    rm_rf(dir);
}

Test(refuse, offsets_not_starting_at_zero) {
    TMP_FILE(dir, path, "first.h5");
    static const int64_t offs[2] = {3, 6}; /* n+1 entries would start with 0 */
    Craft c = good_lm();
    c.offsets = offs;
    c.n_offsets = 2;
    craft(path, &c);
    REFUSED(path, "dataset 'offsets'", "offsets[0]=3", "n_docs+1");
    rm_rf(dir);
}

Test(refuse, offsets_wrong_dtype) {
    TMP_FILE(dir, path, "offs32.h5");
    Craft c = good_lm();
    c.offsets = NULL;
    craft(path, &c);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    static const int32_t offs[3] = {0, 3, 6};
    craft_dset(f, "offsets", H5T_NATIVE_INT32, offs, 3, 0);
    H5Fclose(f);
    REFUSED(path, "dataset 'offsets'", "int32", "int64");
    rm_rf(dir);
}

Test(refuse, token_id_not_below_vocab_size) {
    TMP_FILE(dir, path, "vocab.h5");
    static const uint16_t tok[6] = {1, 2, 3, 4, 10, 9};
    Craft c = good_lm();
    c.tokens = tok;
    craft(path, &c);
    REFUSED(path, "dataset 'tokens'", "tokens[4]=10", "vocab_size 10", "model.vocab_size",
            "retort data build");
    rm_rf(dir);
}

Test(refuse, loss_mask_wrong_length) {
    TMP_FILE(dir, path, "mask.h5");
    Craft c = good_sft();
    c.n_mask = 5;
    craft(path, &c);
    REFUSED(path, "dataset 'loss_mask'", "5 entries", "6");
    rm_rf(dir);
}

Test(refuse, loss_mask_value_not_0_or_1) {
    TMP_FILE(dir, path, "mask2.h5");
    static const uint8_t mask[6] = {0, 1, 2, 0, 1, 1};
    Craft c = good_sft();
    c.loss_mask = mask;
    craft(path, &c);
    REFUSED(path, "dataset 'loss_mask'", "loss_mask[2]=2");
    rm_rf(dir);
}

Test(refuse, sft_without_loss_mask) {
    TMP_FILE(dir, path, "nomask.h5");
    Craft c = good_sft();
    c.loss_mask = NULL;
    craft(path, &c);
    REFUSED(path, "dataset 'loss_mask'", "missing", "'sft'");
    rm_rf(dir);
}

Test(refuse, role_beyond_role_names) {
    TMP_FILE(dir, path, "role.h5");
    Craft c = good_sft();
    const char *roles[2] = {"a", "b"};
    static const uint8_t role[2] = {1, 2};
    c.roles = roles;
    c.n_roles = 2;
    c.role = role;
    c.n_role = 2;
    craft(path, &c);
    REFUSED(path, "dataset 'role'", "role[1]=2", "2 roles");
    rm_rf(dir);
}

Test(refuse, role_wrong_length) {
    TMP_FILE(dir, path, "rolelen.h5");
    Craft c = good_sft();
    static const uint8_t role[3] = {0, 0, 0};
    c.role = role;
    c.n_role = 3;
    craft(path, &c);
    REFUSED(path, "dataset 'role'", "3 entries", "2 examples");
    rm_rf(dir);
}

Test(refuse, empty_dataset) {
    TMP_FILE(dir, path, "empty.h5");
    static const int64_t offs[1] = {0};
    Craft c = good_lm();
    c.n_tokens = 0;
    c.offsets = offs;
    c.n_offsets = 1;
    craft(path, &c);
    REFUSED(path, "empty", "0 documents");
    rm_rf(dir);
}

/* Chunks never written read back as zeros, and token 0 is a valid id: at
 * 1df6ed0 such a file (what a write cut short on a full disk leaves) passed
 * validation and trained on the zeros. */
Test(refuse, tokens_with_unwritten_chunks) {
    TMP_FILE(dir, path, "holes.h5");
    static const int64_t offs[3] = {0, 3, 16};
    Craft c = good_lm();
    c.tokens_extent = 16; /* chunks 0-1 written (6 tokens), 2-3 never */
    c.offsets = offs;
    craft(path, &c);
    REFUSED(path, "dataset 'tokens'", "16 entries", "does not store them all", "full disk");
    rm_rf(dir);
}

/* A 2 KB file declaring 2^40 tokens: at 1df6ed0 validation allocated 4 TB and
 * exited with "out of memory" (found by fuzz/fuzz_h5data.c's review). */
Test(refuse, huge_declared_extent_without_data) {
    TMP_FILE(dir, path, "sparse.h5");
    static const int64_t offs[2] = {0, (int64_t)1 << 40};
    Craft c = good_lm();
    c.tokens_extent = (hsize_t)1 << 40;
    c.offsets = offs;
    c.n_offsets = 2;
    craft(path, &c);
    REFUSED(path, "dataset 'tokens'", "1099511627776 entries", "does not store them all");
    rm_rf(dir);
}

/* ------------------------------------------------------------------ loader */

Test(loader, lm_windows_are_the_expected_slices) {
    TMP_FILE(dir, path, "lm.h5");
    uint32_t *stream;
    int64_t total = write_lm(path, 30, 50, 11, &stream, NULL);
    Dataset ds;
    cr_assert_eq(dataset_open(&ds, path), 0, "%s", err_msg());
    const int T = 8, B = 3;
    int64_t items = dataset_num_items(&ds, T);
    cr_assert_eq(items, (total - 1) / T);
    cr_assert_gt(items, 2 * B);
    DataLoader dl;
    cr_assert_eq(loader_init(&dl, &ds, T, 0, 0, 0, items), 0, "%s", err_msg());
    int in[3 * 8], tg[3 * 8];
    /* a little over two passes: identity order, wrapping into epochs 1 and 2 */
    for (int64_t s = 0; s * B < 2 * items + 1; s++) {
        loader_next(&dl, B, in, tg);
        for (int b = 0; b < B; b++) {
            int64_t item = (s * B + b) % items;
            for (int j = 0; j < T; j++) {
                cr_assert_eq(in[b * T + j], (int)stream[item * T + j], "item %ld j %d", item, j);
                cr_assert_eq(tg[b * T + j], (int)stream[item * T + j + 1], "item %ld j %d", item,
                             j);
            }
        }
    }
    cr_assert_eq(dl.epoch, 2);
    loader_free(&dl);
    dataset_close(&ds);
    free(stream);
    rm_rf(dir);
}

Test(loader, epoch_advances_when_the_last_item_is_taken) {
    TMP_FILE(dir, path, "lm.h5");
    write_lm(path, 10, 50, 2, NULL, NULL);
    Dataset ds;
    cr_assert_eq(dataset_open(&ds, path), 0, "%s", err_msg());
    DataLoader dl;
    cr_assert_eq(loader_init(&dl, &ds, 4, 0, 0, 0, 4), 0, "%s", err_msg());
    int in[4 * 4], tg[4 * 4];
    loader_next(&dl, 3, in, tg);
    cr_assert_eq(dl.epoch, 0);
    cr_assert_eq(dl.pos, 3);
    loader_next(&dl, 1, in, tg);
    cr_assert_eq(dl.epoch, 1);
    cr_assert_eq(dl.pos, 0);
    loader_next(&dl, 2, in, tg);
    cr_assert_eq(dl.epoch, 1);
    cr_assert_eq(dl.pos, 2);
    cr_assert_eq(in[0], (int)ds.tokens[0], "epoch 1 starts again at item 0");
    loader_free(&dl);
    dataset_close(&ds);
    rm_rf(dir);
}

Test(loader, sft_targets_masks_padding_truncation) {
    TMP_FILE(dir, path, "sft.h5");
    DatasetWriter *w = dataset_writer_open(path, SCHEMA_SFT, 100, 99, 98, "t");
    cr_assert_not_null(w, "%s", err_msg());
    /* T = 4: a short example (padded), one of exactly T+1, one longer (truncated) */
    uint32_t a[3] = {1, 2, 99}, b[5] = {10, 11, 12, 13, 99}, c[7] = {20, 21, 22, 23, 24, 25, 99};
    uint8_t ma[3] = {0, 1, 1}, mb[5] = {0, 0, 1, 0, 1}, mc[7] = {0, 1, 1, 1, 1, 1, 1};
    cr_assert_eq(dataset_writer_add(w, a, ma, 3, -1), 0, "%s", err_msg());
    cr_assert_eq(dataset_writer_add(w, b, mb, 5, -1), 0, "%s", err_msg());
    cr_assert_eq(dataset_writer_add(w, c, mc, 7, -1), 0, "%s", err_msg());
    cr_assert_eq(dataset_writer_close(w), 0, "%s", err_msg());
    Dataset ds;
    cr_assert_eq(dataset_open(&ds, path), 0, "%s", err_msg());
    cr_assert_eq(dataset_num_items(&ds, 4), 3);
    DataLoader dl;
    cr_assert_eq(loader_init(&dl, &ds, 4, 0, 0, 0, 3), 0, "%s", err_msg());
    int in[12], tg[12];
    loader_next(&dl, 3, in, tg);
    int want_in[12] = {1, 2, 99, 99, /**/ 10, 11, 12, 13, /**/ 20, 21, 22, 23};
    int want_tg[12] = {2, 99, -1, -1, /**/ -1, 12, -1, 99, /**/ 21, 22, 23, 24};
    for (int i = 0; i < 12; i++) {
        cr_assert_eq(in[i], want_in[i], "inputs[%d] = %d, want %d", i, in[i], want_in[i]);
        cr_assert_eq(tg[i], want_tg[i], "targets[%d] = %d, want %d", i, tg[i], want_tg[i]);
    }
    cr_assert_eq(dl.truncated, 1);
    loader_free(&dl);
    dataset_close(&ds);
    rm_rf(dir);
}

/* The items a loader visits in its next n steps of B=1, on a dataset made by
 * write_counting (token i is i, so a window's first input names its item). */
static void visit(DataLoader *dl, int64_t n, int64_t *items) {
    int in[64], tg[64];
    for (int64_t k = 0; k < n; k++) {
        loader_next(dl, 1, in, tg);
        cr_assert_eq(in[0] % dl->T, 0);
        cr_assert_eq(tg[0], in[0] + 1);
        items[k] = in[0] / dl->T;
    }
}

/* An lm dataset whose token stream is 0, 1, 2, ... so a window names its item. */
static void write_counting(const char *path, int64_t n_tokens) {
    DatasetWriter *w = dataset_writer_open(path, SCHEMA_LM, (int)n_tokens + 1, (int)n_tokens,
                                           (int)n_tokens, "count");
    cr_assert_not_null(w, "%s", err_msg());
    uint32_t *t = malloc((size_t)n_tokens * sizeof *t);
    for (int64_t i = 0; i < n_tokens; i++) t[i] = (uint32_t)i;
    cr_assert_eq(dataset_writer_add(w, t, NULL, n_tokens, -1), 0, "%s", err_msg());
    cr_assert_eq(dataset_writer_close(w), 0, "%s", err_msg());
    free(t);
}

Test(loader, shuffle_is_a_deterministic_permutation_per_epoch) {
    TMP_FILE(dir, path, "count.h5");
    const int T = 4;
    write_counting(path, 50 * T + 1); /* 50 windows */
    Dataset ds;
    cr_assert_eq(dataset_open(&ds, path), 0, "%s", err_msg());
    const int64_t n = dataset_num_items(&ds, T);
    cr_assert_eq(n, 50);
    DataLoader a, b, c;
    cr_assert_eq(loader_init(&a, &ds, T, 1234, 1, 0, n), 0, "%s", err_msg());
    cr_assert_eq(loader_init(&b, &ds, T, 1234, 1, 0, n), 0, "%s", err_msg());
    cr_assert_eq(loader_init(&c, &ds, T, 1235, 1, 0, n), 0, "%s", err_msg());
    int64_t va[150], vb[150], vc[150];
    visit(&a, 150, va);
    visit(&b, 150, vb);
    visit(&c, 150, vc);
    for (int k = 0; k < 150; k++) cr_assert_eq(va[k], vb[k], "step %d differs with one seed", k);
    int same_other_seed = 0, same_next_epoch = 0, identity = 0;
    for (int e = 0; e < 3; e++) {
        int seen[50] = {0};
        for (int k = 0; k < 50; k++) seen[va[e * 50 + k]]++;
        for (int i = 0; i < 50; i++) cr_assert_eq(seen[i], 1, "epoch %d: item %d seen %d times", e, i, seen[i]);
    }
    for (int k = 0; k < 50; k++) {
        same_other_seed += va[k] == vc[k];
        same_next_epoch += va[k] == va[50 + k];
        identity += va[k] == k;
    }
    cr_assert_lt(same_other_seed, 45, "another seed gave nearly the same order");
    cr_assert_lt(same_next_epoch, 45, "epoch 1 repeats epoch 0's order");
    cr_assert_lt(identity, 45, "the shuffled order is nearly the identity");
    cr_assert_eq(a.epoch, 3);
    loader_free(&a);
    loader_free(&b);
    loader_free(&c);
    dataset_close(&ds);
    rm_rf(dir);
}

Test(loader, seek_continues_like_an_uninterrupted_loader) {
    TMP_FILE(dir, path, "count.h5");
    const int T = 4;
    write_counting(path, 37 * T + 3);
    Dataset ds;
    cr_assert_eq(dataset_open(&ds, path), 0, "%s", err_msg());
    int64_t n = dataset_num_items(&ds, T);
    DataLoader a, b;
    cr_assert_eq(loader_init(&a, &ds, T, 99, 1, 0, n), 0, "%s", err_msg());
    int in[5 * 4], tg[5 * 4], in2[5 * 4], tg2[5 * 4];
    for (int s = 0; s < 17; s++) loader_next(&a, 5, in, tg); /* 85 items: epoch 2, pos 11 */
    cr_assert_eq(a.epoch, 85 / n);
    cr_assert_eq(a.pos, 85 % n);
    cr_assert_eq(loader_init(&b, &ds, T, 99, 1, 0, n), 0, "%s", err_msg());
    loader_seek(&b, a.epoch, a.pos);
    for (int s = 0; s < 20; s++) {
        loader_next(&a, 5, in, tg);
        loader_next(&b, 5, in2, tg2);
        cr_assert_arr_eq(in, in2, sizeof in, "inputs differ at step %d after seek", s);
        cr_assert_arr_eq(tg, tg2, sizeof tg, "targets differ at step %d after seek", s);
        cr_assert_eq(a.epoch, b.epoch);
        cr_assert_eq(a.pos, b.pos);
    }
    /* pos == count means the start of the next epoch */
    loader_seek(&b, 4, n);
    cr_assert_eq(b.epoch, 5);
    cr_assert_eq(b.pos, 0);
    loader_free(&a);
    loader_free(&b);
    dataset_close(&ds);
    rm_rf(dir);
}

Test(loader, item_ranges) {
    TMP_FILE(dir, path, "count.h5");
    const int T = 4;
    write_counting(path, 20 * T + 1);
    Dataset ds;
    cr_assert_eq(dataset_open(&ds, path), 0, "%s", err_msg());
    DataLoader dl;
    int64_t v[12];
    cr_assert_eq(loader_init(&dl, &ds, T, 0, 0, 3, 4), 0, "%s", err_msg());
    visit(&dl, 8, v);
    for (int k = 0; k < 8; k++) cr_assert_eq(v[k], 3 + k % 4, "step %d", k);
    loader_free(&dl);

    cr_assert_eq(loader_init(&dl, &ds, T, 5, 1, 16, 4), 0, "%s", err_msg());
    visit(&dl, 12, v);
    for (int e = 0; e < 3; e++) {
        int seen[4] = {0};
        for (int k = 0; k < 4; k++) {
            cr_assert(v[e * 4 + k] >= 16 && v[e * 4 + k] < 20, "item %ld outside [16, 20)",
                      v[e * 4 + k]);
            seen[v[e * 4 + k] - 16]++;
        }
        for (int i = 0; i < 4; i++) cr_assert_eq(seen[i], 1);
    }
    loader_free(&dl);

    cr_assert_eq(loader_init(&dl, &ds, T, 0, 0, 17, 4), -1);
    assert_contains(err_msg(), "[17, 21)");
    assert_contains(err_msg(), "20 items");
    cr_assert_eq(loader_init(&dl, &ds, T, 0, 0, 0, 0), -1);
    assert_contains(err_msg(), "empty");
    cr_assert_eq(loader_init(&dl, &ds, 0, 0, 0, 0, 1), -1);
    assert_contains(err_msg(), "T=0");
    cr_assert_eq(dataset_num_items(&ds, 1000), 0);
    cr_assert_eq(loader_init(&dl, &ds, 1000, 0, 0, 0, dataset_num_items(&ds, 1000)), -1);
    assert_contains(err_msg(), "shorter sequence length");
    dataset_close(&ds);
    rm_rf(dir);
}

/* --------------------------------------------------------------- tokenizer */

Test(tokenizer, bytes_encode_decode) {
    Tokenizer *tok = tokenizer_load("bytes");
    cr_assert_not_null(tok, "%s", err_msg());
    cr_assert_str_eq(tok->name, "bytes");
    cr_assert_eq(tok->vocab_size, 257);
    cr_assert_eq(tok->eos_id, 256);
    cr_assert_eq(tok->pad_id, 256);
    const char text[] = "h\xc3\xa9\xff\n";
    uint32_t *ids = NULL;
    int64_t cap = 0;
    int64_t n = tok->encode(tok, text, 5, &ids, &cap, 0);
    cr_assert_eq(n, 5);
    uint32_t want[5] = {'h', 0xc3, 0xa9, 0xff, '\n'};
    for (int i = 0; i < 5; i++) cr_assert_eq(ids[i], want[i]);
    n = tok->encode(tok, "ab", 2, &ids, &cap, n); /* appends */
    cr_assert_eq(n, 7);
    cr_assert_eq(ids[6], 'b');
    ids[n++] = 256;
    char *s = tokenizer_decode(tok, ids, n);
    cr_assert_str_eq(s, "h\xc3\xa9\xff\nab<|endoftext|>");
    free(s);
    free(ids);
    tokenizer_free(tok);

    /* anything but "bytes" is a path to BPE files; a missing one says how to fix it */
    cr_assert_null(tokenizer_load("gpt2"));
    assert_contains(err_msg(), "tokenizer gpt2: No such file or directory; give \"bytes\"");
}

/* ------------------------------------------------------------- data build */

static BuildOptions build_opts(const char *in, const char *out, Schema s) {
    return (BuildOptions){.input = in, .output = out, .schema = s, .tokenizer = "bytes",
                          .text_field = "text", .prompt_field = "prompt",
                          .completion_field = "completion", .quiet = 1};
}

/* Asserts the document `doc` of ds is exactly the bytes of text then EOS. */
static void assert_doc(const Dataset *ds, int64_t doc, const char *text) {
    int64_t start = ds->offsets[doc], len = ds->offsets[doc + 1] - start;
    size_t n = strlen(text);
    cr_assert_eq(len, (int64_t)n + 1, "document %ld has %ld tokens, want %zu", doc, len, n + 1);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(ds->tokens[start + (int64_t)i], (unsigned char)text[i], "doc %ld byte %zu",
                     doc, i);
    cr_assert_eq(ds->tokens[start + (int64_t)n], 256, "document %ld must end with EOS", doc);
}

Test(build, jsonl_lm) {
    char dir[256], in[512], out[512];
    make_temp_dir(dir, sizeof dir, "build");
    join(in, sizeof in, dir, "in.jsonl");
    join(out, sizeof out, dir, "out.h5");
    write_text(in, "{\"text\": \"hello\", \"id\": 1}\n"
                   "\n"
                   "{\"text\": \"caf\\u00e9 \\n2\"}\n"
                   "{\"text\": \"\"}"); /* no final newline */
    BuildOptions o = build_opts(in, out, SCHEMA_LM);
    BuildStats st;
    cr_assert_eq(data_build_stats(&o, &st), 0, "%s", err_msg());
    cr_assert_eq(st.lines, 4);
    cr_assert_eq(st.docs, 3);
    cr_assert_eq(st.skipped, 0);
    Dataset ds;
    cr_assert_eq(dataset_open(&ds, out), 0, "%s", err_msg());
    cr_assert_eq(ds.schema, SCHEMA_LM);
    cr_assert_str_eq(ds.tokenizer, "bytes");
    cr_assert_eq(ds.vocab_size, 257);
    cr_assert_eq(ds.eos_id, 256);
    cr_assert_eq(ds.n_docs, 3);
    cr_assert_eq(ds.n_tokens, st.tokens);
    assert_doc(&ds, 0, "hello");
    assert_doc(&ds, 1, "caf\xc3\xa9 \n2");
    assert_doc(&ds, 2, "");
    dataset_close(&ds);
    rm_rf(dir);
}

Test(build, jsonl_sft_masks_prompt_and_trains_completion_and_eos) {
    char dir[256], in[512], out[512];
    make_temp_dir(dir, sizeof dir, "build");
    join(in, sizeof in, dir, "in.jsonl");
    join(out, sizeof out, dir, "out.h5");
    write_text(in, "{\"q\": \"2+2=\", \"a\": \"4\"}\n{\"q\": \"hi\", \"a\": \"yo!\"}\n");
    BuildOptions o = build_opts(in, out, SCHEMA_SFT);
    o.prompt_field = "q";
    o.completion_field = "a";
    BuildStats st;
    cr_assert_eq(data_build_stats(&o, &st), 0, "%s", err_msg());
    cr_assert_eq(st.docs, 2);
    cr_assert_eq(st.tokens, 6 + 6);
    cr_assert_eq(st.trained_tokens, 2 + 4);
    Dataset ds;
    cr_assert_eq(dataset_open(&ds, out), 0, "%s", err_msg());
    cr_assert_eq(ds.schema, SCHEMA_SFT);
    cr_assert_eq(ds.n_docs, 2);
    assert_doc(&ds, 0, "2+2=4");
    assert_doc(&ds, 1, "hiyo!");
    uint8_t want[12] = {0, 0, 0, 0, 1, 1, /**/ 0, 0, 1, 1, 1, 1};
    for (int i = 0; i < 12; i++) cr_assert_eq(ds.loss_mask[i], want[i], "loss_mask[%d]", i);
    /* through the loader at T=5: the prompt predicts nothing, "4" and EOS are trained */
    DataLoader dl;
    cr_assert_eq(loader_init(&dl, &ds, 5, 0, 0, 0, 1), 0, "%s", err_msg());
    int inp[5], tg[5];
    loader_next(&dl, 1, inp, tg);
    int want_tg[5] = {-1, -1, -1, '4', 256};
    for (int j = 0; j < 5; j++) cr_assert_eq(tg[j], want_tg[j], "targets[%d]", j);
    loader_free(&dl);
    dataset_close(&ds);
    rm_rf(dir);
}

Test(build, plain_text_is_one_document) {
    char dir[256], in[512], out[512];
    make_temp_dir(dir, sizeof dir, "build");
    join(in, sizeof in, dir, "book.txt");
    join(out, sizeof out, dir, "out.h5");
    const char *text = "Chapter 1\n\nIt was a dark night.\n\n\nChapter 2\nno newline at end";
    write_text(in, text);
    BuildOptions o = build_opts(in, out, SCHEMA_LM);
    BuildStats st;
    cr_assert_eq(data_build_stats(&o, &st), 0, "%s", err_msg());
    cr_assert_eq(st.docs, 1);
    cr_assert_eq(st.lines, 7);
    Dataset ds;
    cr_assert_eq(dataset_open(&ds, out), 0, "%s", err_msg());
    cr_assert_eq(ds.n_docs, 1);
    assert_doc(&ds, 0, text);
    dataset_close(&ds);

    /* plain text cannot make sft; an empty file makes nothing */
    o.schema = SCHEMA_SFT;
    cr_assert_eq(data_build(&o), -1);
    assert_contains(err_msg(), "plain text");
    write_text(in, "");
    o.schema = SCHEMA_LM;
    cr_assert_eq(data_build(&o), -1);
    assert_contains(err_msg(), "no documents");
    rm_rf(dir);
}

Test(build, reads_standard_input) {
    char dir[256], in[512], out[512];
    make_temp_dir(dir, sizeof dir, "build");
    join(in, sizeof in, dir, "stdin.txt");
    join(out, sizeof out, dir, "out.h5");
    write_text(in, "from a pipe\n");
    cr_assert_not_null(freopen(in, "r", stdin));
    BuildOptions o = build_opts("-", out, SCHEMA_LM);
    cr_assert_eq(data_build(&o), 0, "%s", err_msg());
    Dataset ds;
    cr_assert_eq(dataset_open(&ds, out), 0, "%s", err_msg());
    assert_doc(&ds, 0, "from a pipe\n");
    dataset_close(&ds);
    rm_rf(dir);
}

Test(build, malformed_line_names_file_and_line) {
    char dir[256], in[512], out[512], tmp[600];
    make_temp_dir(dir, sizeof dir, "build");
    join(in, sizeof in, dir, "in.jsonl");
    join(out, sizeof out, dir, "out.h5");
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    write_text(in, "{\"text\": \"ok\"}\n{\"text\": \"also ok\"}\n{\"text\": \"broken}\n");
    BuildOptions o = build_opts(in, out, SCHEMA_LM);
    cr_assert_eq(data_build(&o), -1);
    char where[600];
    snprintf(where, sizeof where, "%s:3:", in);
    assert_contains(err_msg(), where);
    assert_contains(err_msg(), "invalid JSON");
    cr_assert(!path_exists(out) && !path_exists(tmp), "a failed build left a file behind");

    write_text(in, "[1, 2]\n");
    cr_assert_eq(data_build(&o), -1);
    assert_contains(err_msg(), ":1:");
    assert_contains(err_msg(), "expected a JSON object");
    rm_rf(dir);
}

Test(build, missing_or_non_string_field) {
    char dir[256], in[512], out[512], where[600];
    make_temp_dir(dir, sizeof dir, "build");
    join(in, sizeof in, dir, "in.jsonl");
    join(out, sizeof out, dir, "out.h5");
    write_text(in, "{\"text\": \"ok\"}\n{\"body\": \"wrong field\"}\n");
    BuildOptions o = build_opts(in, out, SCHEMA_LM);
    cr_assert_eq(data_build(&o), -1);
    snprintf(where, sizeof where, "%s:2:", in);
    assert_contains(err_msg(), where);
    assert_contains(err_msg(), "field 'text' is missing");
    assert_contains(err_msg(), "--text-field");

    write_text(in, "{\"prompt\": \"p\", \"completion\": 42}\n");
    o.schema = SCHEMA_SFT;
    cr_assert_eq(data_build(&o), -1);
    snprintf(where, sizeof where, "%s:1:", in);
    assert_contains(err_msg(), where);
    assert_contains(err_msg(), "field 'completion' is an integer, not a string");
    cr_assert(!path_exists(out));
    rm_rf(dir);
}

Test(build, skip_bad_skips_and_counts) {
    char dir[256], in[512], out[512];
    make_temp_dir(dir, sizeof dir, "build");
    join(in, sizeof in, dir, "in.jsonl");
    join(out, sizeof out, dir, "out.h5");
    write_text(in, "{\"text\": \"one\"}\n"
                   "not json\n"
                   "{\"text\": 7}\n"
                   "{\"title\": \"no text\"}\n"
                   "{\"text\": \"two\"}\n");
    BuildOptions o = build_opts(in, out, SCHEMA_LM);
    o.skip_bad = 1;
    BuildStats st;
    cr_assert_eq(data_build_stats(&o, &st), 0, "%s", err_msg());
    cr_assert_eq(st.lines, 5);
    cr_assert_eq(st.skipped, 3);
    cr_assert_eq(st.docs, 2);
    cr_assert_eq(st.tokens, 8);
    Dataset ds;
    cr_assert_eq(dataset_open(&ds, out), 0, "%s", err_msg());
    cr_assert_eq(ds.n_docs, 2);
    assert_doc(&ds, 0, "one");
    assert_doc(&ds, 1, "two");
    dataset_close(&ds);

    /* every line bad: nothing to build, even when skipping */
    write_text(in, "nope\n{\"x\": 1}\n");
    cr_assert_eq(data_build_stats(&o, &st), -1);
    assert_contains(err_msg(), "no documents");
    assert_contains(err_msg(), "2 skipped");
    rm_rf(dir);
}

static void redirect_stdout_and_stderr(void) {
    cr_redirect_stdout();
    cr_redirect_stderr(); /* the skipped-line warning */
}

Test(build, report_on_stdout, .init = redirect_stdout_and_stderr) {
    char dir[256], in[512], out[512];
    make_temp_dir(dir, sizeof dir, "build");
    join(in, sizeof in, dir, "in.jsonl");
    join(out, sizeof out, dir, "out.h5");
    write_text(in, "{\"text\": \"abc\"}\n{\"text\": \"de\"}\nbad\n");
    BuildOptions o = build_opts(in, out, SCHEMA_LM);
    o.quiet = 0;
    o.skip_bad = 1;
    cr_assert_eq(data_build(&o), 0, "%s", err_msg());
    fflush(stdout);
    char report[1024] = {0};
    FILE *f = cr_get_redirected_stdout();
    size_t n = fread(report, 1, sizeof report - 1, f);
    cr_assert_gt(n, 0);
    assert_contains(report, "2 documents");
    assert_contains(report, "7 tokens");
    assert_contains(report, "1 skipped");
    rm_rf(dir);
}

Test(build, unsupported_schema_and_tokenizer) {
    char dir[256], in[512], out[512];
    make_temp_dir(dir, sizeof dir, "build");
    join(in, sizeof in, dir, "in.jsonl");
    join(out, sizeof out, dir, "out.h5");
    write_text(in, "{\"text\": \"abc\"}\n");
    BuildOptions o = build_opts(in, out, SCHEMA_PREF);
    cr_assert_eq(data_build(&o), -1);
    assert_contains(err_msg(), "'pref'");
    o = build_opts(in, out, SCHEMA_LM);
    o.tokenizer = "no-such-tokenizer";
    cr_assert_eq(data_build(&o), -1);
    assert_contains(err_msg(), "no-such-tokenizer");
    join(in, sizeof in, dir, "absent.jsonl");
    o = build_opts(in, out, SCHEMA_LM);
    cr_assert_eq(data_build(&o), -1);
    assert_contains(err_msg(), "absent.jsonl");
    cr_assert(!path_exists(out));
    rm_rf(dir);
}
