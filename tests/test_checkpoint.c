/* tests/test_checkpoint.c — safetensors round trips and refusals, checkpoint
 * directories (atomic commit, listing, pruning) and the HF config.json. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <sys/stat.h>

#include "tests/testutil.h"
#include "model/checkpoint.h"
#include "model/safetensors.h"

/* ---------------------------------------------------------------- helpers */

/* A safetensors file with a hand-written header and `data_len` zero bytes. */
static void write_raw_st(const char *path, const char *header, size_t data_len) {
    size_t hlen = strlen(header);
    size_t len = 8 + hlen + data_len;
    unsigned char *buf = calloc(1, len);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    memcpy(buf + 8, header, hlen);
    write_bytes(path, buf, len);
    free(buf);
}

static void assert_refused(const char *path, const char *needle) {
    err_clear();
    SafeTensorsFile *f = safetensors_open(path);
    cr_assert_null(f, "%s was accepted", path);
    cr_assert(strstr(err_msg(), path) != NULL, "message does not name the file: %s", err_msg());
    cr_assert(strstr(err_msg(), needle) != NULL, "message lacks \"%s\": %s", needle, err_msg());
}

static off_t file_size(const char *path) {
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    return st.st_size;
}

/* ---------------------------------------------------------------- safetensors */

Test(safetensors, round_trip_all_dtypes) {
    char dir[256], path[512];
    make_temp_dir(dir, sizeof dir, "st");
    snprintf(path, sizeof path, "%s/model.safetensors", dir);

    Rng rng;
    rng_seed(&rng, 42);
    float weights[3 * 5];
    fill_uniform(&rng, weights, 15, 1.0f);
    int64_t ids[4] = {-7, 0, 1LL << 40, 123456789012LL};
    uint8_t mask[3] = {0, 1, 255};
    /* bf16: 1.0, -2.0, 0.5;  f16: 1.0, -2.0, 2^-24 (smallest subnormal), +inf,
     * 65504 (largest normal), -0.0, 2^-14 (smallest normal). */
    uint16_t bf16[3] = {0x3F80, 0xC000, 0x3F00};
    uint16_t f16[7] = {0x3C00, 0xC000, 0x0001, 0x7C00, 0x7BFF, 0x8000, 0x0400};
    double f64[2] = {0.1, -3.5};
    float scalar = 2.5f;

    StTensor ts[] = {
        {.name = "h.0.attn.c_attn.weight", .dtype = ST_F32, .ndim = 2, .shape = {3, 5}, .data = weights},
        {.name = "ids", .dtype = ST_I64, .ndim = 1, .shape = {4}, .data = ids},
        {.name = "mask", .dtype = ST_U8, .ndim = 1, .shape = {3}, .data = mask},
        {.name = "bf", .dtype = ST_BF16, .ndim = 1, .shape = {3}, .data = bf16},
        {.name = "half", .dtype = ST_F16, .ndim = 2, .shape = {7, 1}, .data = f16},
        {.name = "dbl", .dtype = ST_F64, .ndim = 1, .shape = {2}, .data = f64},
        {.name = "scalar", .dtype = ST_F32, .ndim = 0, .data = &scalar},
        {.name = "empty", .dtype = ST_F32, .ndim = 2, .shape = {0, 4}, .data = NULL},
    };
    int n = (int)(sizeof ts / sizeof ts[0]);
    cr_assert_eq(safetensors_write(path, ts, n, NULL), 0, "%s", err_msg());
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    cr_assert(!path_exists(tmp), "the .tmp file was left behind");

    /* The header is padded so data starts on an 8-byte boundary. */
    FILE *fp = fopen(path, "rb");
    unsigned char len8[8];
    cr_assert_eq(fread(len8, 1, 8, fp), 8);
    fclose(fp);
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)len8[i] << (8 * i);
    cr_assert_eq(hlen % 8, 0);
    cr_assert_eq((uint64_t)file_size(path), 8 + hlen + 60 + 32 + 3 + 6 + 14 + 16 + 4);

    SafeTensorsFile *f = safetensors_open(path);
    cr_assert_not_null(f, "%s", err_msg());
    cr_assert_eq(safetensors_count(f), n);
    /* Tensors come back in file order, with shapes and sizes. */
    for (int i = 0; i < n; i++) {
        const StTensor *t = safetensors_get(f, i);
        cr_assert_str_eq(t->name, ts[i].name);
        cr_assert_eq(t->dtype, ts[i].dtype);
        cr_assert_eq(t->ndim, ts[i].ndim);
        for (int d = 0; d < t->ndim; d++) cr_assert_eq(t->shape[d], ts[i].shape[d]);
        cr_assert_eq(t->nbytes, (size_t)st_numel(&ts[i]) * st_dtype_size(ts[i].dtype));
        if (t->nbytes) cr_assert_eq(memcmp(t->data, ts[i].data, t->nbytes), 0, "%s", t->name);
    }
    cr_assert_null(safetensors_get(f, n));
    cr_assert_null(safetensors_find(f, "nope"));
    cr_assert_null(safetensors_meta(f, "anything"));

    float out[15];
    const StTensor *w = safetensors_find(f, "h.0.attn.c_attn.weight");
    cr_assert_not_null(w);
    cr_assert_eq(safetensors_read_f32(f, w, out, 15), 0, "%s", err_msg());
    cr_assert_eq(memcmp(out, weights, sizeof weights), 0);

    cr_assert_eq(safetensors_read_f32(f, safetensors_find(f, "bf"), out, 3), 0, "%s", err_msg());
    cr_assert_eq(out[0], 1.0f);
    cr_assert_eq(out[1], -2.0f);
    cr_assert_eq(out[2], 0.5f);

    cr_assert_eq(safetensors_read_f32(f, safetensors_find(f, "half"), out, 7), 0, "%s", err_msg());
    cr_assert_eq(out[0], 1.0f);
    cr_assert_eq(out[1], -2.0f);
    cr_assert_eq(out[2], ldexpf(1.0f, -24));
    cr_assert(isinf(out[3]) && out[3] > 0);
    cr_assert_eq(out[4], 65504.0f);
    cr_assert(out[5] == 0.0f && signbit(out[5]));
    cr_assert_eq(out[6], ldexpf(1.0f, -14));

    cr_assert_eq(safetensors_read_f32(f, safetensors_find(f, "dbl"), out, 2), 0, "%s", err_msg());
    cr_assert_eq(out[0], 0.1f);
    cr_assert_eq(out[1], -3.5f);

    cr_assert_eq(safetensors_read_f32(f, safetensors_find(f, "scalar"), out, 1), 0, "%s", err_msg());
    cr_assert_eq(out[0], 2.5f);
    cr_assert_eq(safetensors_read_f32(f, safetensors_find(f, "empty"), out, 0), 0, "%s", err_msg());

    safetensors_close(f);
    rm_rf(dir);
}

Test(safetensors, half_specials_and_subnormals) {
    char dir[256], path[512];
    make_temp_dir(dir, sizeof dir, "st");
    snprintf(path, sizeof path, "%s/h.safetensors", dir);
    /* Every subnormal half is m * 2^-24; check them all, plus nan and -inf. */
    uint16_t h[1023 + 2];
    for (int m = 1; m <= 1023; m++) h[m - 1] = (uint16_t)m;
    h[1023] = 0x7E00; /* nan */
    h[1024] = 0xFC00; /* -inf */
    StTensor t = {.name = "h", .dtype = ST_F16, .ndim = 1, .shape = {1025}, .data = h};
    cr_assert_eq(safetensors_write(path, &t, 1, NULL), 0, "%s", err_msg());
    SafeTensorsFile *f = safetensors_open(path);
    cr_assert_not_null(f, "%s", err_msg());
    float out[1025];
    cr_assert_eq(safetensors_read_f32(f, safetensors_find(f, "h"), out, 1025), 0, "%s", err_msg());
    for (int m = 1; m <= 1023; m++)
        cr_assert_eq(out[m - 1], ldexpf((float)m, -24), "subnormal %d gave %g", m, out[m - 1]);
    cr_assert(isnan(out[1023]));
    cr_assert(isinf(out[1024]) && out[1024] < 0);
    safetensors_close(f);
    rm_rf(dir);
}

Test(safetensors, metadata_round_trip) {
    char dir[256], path[512];
    make_temp_dir(dir, sizeof dir, "st");
    snprintf(path, sizeof path, "%s/m.safetensors", dir);
    const char *meta[] = {"format", "pt", "step", "1200", "note", "quotes \" and \\ and ü", NULL};
    int32_t x[2] = {5, -6};
    StTensor t = {.name = "x", .dtype = ST_I32, .ndim = 1, .shape = {2}, .data = x};
    cr_assert_eq(safetensors_write(path, &t, 1, meta), 0, "%s", err_msg());
    SafeTensorsFile *f = safetensors_open(path);
    cr_assert_not_null(f, "%s", err_msg());
    cr_assert_str_eq(safetensors_meta(f, "format"), "pt");
    cr_assert_str_eq(safetensors_meta(f, "step"), "1200");
    cr_assert_str_eq(safetensors_meta(f, "note"), "quotes \" and \\ and ü");
    cr_assert_null(safetensors_meta(f, "missing"));
    cr_assert_eq(safetensors_count(f), 1);
    const int32_t *back = safetensors_find(f, "x")->data;
    cr_assert_eq(back[0], 5);
    cr_assert_eq(back[1], -6);
    /* An integer tensor is not silently read as floats. */
    float out[2];
    err_clear();
    cr_assert_eq(safetensors_read_f32(f, safetensors_find(f, "x"), out, 2), -1);
    cr_assert(strstr(err_msg(), "I32") != NULL, "%s", err_msg());
    safetensors_close(f);
    rm_rf(dir);
}

Test(safetensors, find_among_many) {
    char dir[256], path[512];
    make_temp_dir(dir, sizeof dir, "st");
    snprintf(path, sizeof path, "%s/many.safetensors", dir);
    enum { N = 200 };
    static char names[N][32];
    static float vals[N];
    StTensor ts[N];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "h.%d.mlp.c_fc.bias", (i * 37) % N);
        vals[i] = (float)i;
        ts[i] = (StTensor){.name = names[i], .dtype = ST_F32, .ndim = 1, .shape = {1}, .data = &vals[i]};
    }
    cr_assert_eq(safetensors_write(path, ts, N, NULL), 0, "%s", err_msg());
    SafeTensorsFile *f = safetensors_open(path);
    cr_assert_not_null(f, "%s", err_msg());
    for (int i = 0; i < N; i++) {
        const StTensor *t = safetensors_find(f, names[i]);
        cr_assert_not_null(t, "%s not found", names[i]);
        float v;
        cr_assert_eq(safetensors_read_f32(f, t, &v, 1), 0);
        cr_assert_eq(v, (float)i);
    }
    safetensors_close(f);
    rm_rf(dir);
}

Test(safetensors, read_f32_wrong_count_refused) {
    char dir[256], path[512];
    make_temp_dir(dir, sizeof dir, "st");
    snprintf(path, sizeof path, "%s/w.safetensors", dir);
    float x[6] = {1, 2, 3, 4, 5, 6};
    StTensor t = {.name = "wte.weight", .dtype = ST_F32, .ndim = 2, .shape = {2, 3}, .data = x};
    cr_assert_eq(safetensors_write(path, &t, 1, NULL), 0, "%s", err_msg());
    SafeTensorsFile *f = safetensors_open(path);
    cr_assert_not_null(f, "%s", err_msg());
    float out[7] = {0};
    err_clear();
    cr_assert_eq(safetensors_read_f32(f, safetensors_find(f, "wte.weight"), out, 7), -1);
    cr_assert(strstr(err_msg(), path) && strstr(err_msg(), "wte.weight") &&
                  strstr(err_msg(), "6 elements"), "%s", err_msg());
    cr_assert_eq(out[0], 0.0f, "dst was written on a refused read");
    safetensors_close(f);
    rm_rf(dir);
}

Test(safetensors, write_errors_leave_nothing) {
    char dir[256], path[512];
    make_temp_dir(dir, sizeof dir, "st");
    float x = 1;
    StTensor t = {.name = "x", .dtype = ST_F32, .ndim = 1, .shape = {1}, .data = &x};
    /* Missing directory: error names the path. */
    snprintf(path, sizeof path, "%s/no/such/dir/x.safetensors", dir);
    err_clear();
    cr_assert_eq(safetensors_write(path, &t, 1, NULL), -1);
    cr_assert(strstr(err_msg(), path) != NULL, "%s", err_msg());
    /* Duplicate names and bad shapes are refused before anything is written. */
    snprintf(path, sizeof path, "%s/x.safetensors", dir);
    StTensor dup[2] = {t, t};
    cr_assert_eq(safetensors_write(path, dup, 2, NULL), -1);
    cr_assert(strstr(err_msg(), "twice") != NULL, "%s", err_msg());
    StTensor bad = t;
    bad.shape[0] = -1;
    cr_assert_eq(safetensors_write(path, &bad, 1, NULL), -1);
    cr_assert(strstr(err_msg(), "shape") != NULL, "%s", err_msg());
    cr_assert(!path_exists(path));
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    cr_assert(!path_exists(tmp));
    /* An existing good file survives a refused overwrite. */
    cr_assert_eq(safetensors_write(path, &t, 1, NULL), 0);
    cr_assert_eq(safetensors_write(path, dup, 2, NULL), -1);
    SafeTensorsFile *f = safetensors_open(path);
    cr_assert_not_null(f, "%s", err_msg());
    cr_assert_eq(safetensors_count(f), 1);
    safetensors_close(f);
    rm_rf(dir);
}

Test(safetensors, malformed_files_refused) {
    char dir[256], path[512];
    make_temp_dir(dir, sizeof dir, "st");

    snprintf(path, sizeof path, "%s/missing.safetensors", dir);
    assert_refused(path, "No such file");

    snprintf(path, sizeof path, "%s/empty.safetensors", dir);
    write_bytes(path, "", 0);
    assert_refused(path, "0 bytes");

    snprintf(path, sizeof path, "%s/short.safetensors", dir);
    write_bytes(path, "\x05\0\0\0", 4);
    assert_refused(path, "4 bytes");

    snprintf(path, sizeof path, "%s/biglen.safetensors", dir);
    unsigned char big[16] = {0x00, 0x10, 0, 0, 0, 0, 0, 0, '{', '}'};
    write_bytes(path, big, sizeof big);
    assert_refused(path, "truncated");

    snprintf(path, sizeof path, "%s/huge.safetensors", dir);
    unsigned char huge[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'};
    write_bytes(path, huge, sizeof huge);
    assert_refused(path, "header claims");

    /* A sparse 160 MB file claiming a 150 MB header: over the 100 MB limit. */
    snprintf(path, sizeof path, "%s/hugeheader.safetensors", dir);
    uint64_t claim = 150000000;
    unsigned char claim8[8];
    for (int i = 0; i < 8; i++) claim8[i] = (unsigned char)(claim >> (8 * i));
    write_bytes(path, claim8, 8);
    cr_assert_eq(truncate(path, 160000000), 0);
    assert_refused(path, "100 MB");

    snprintf(path, sizeof path, "%s/notjson.safetensors", dir);
    write_raw_st(path, "{\"a\": [1, 2", 0);
    assert_refused(path, "not valid JSON");

    snprintf(path, sizeof path, "%s/notobject.safetensors", dir);
    write_raw_st(path, "[1, 2, 3]", 0);
    assert_refused(path, "'{'");

    snprintf(path, sizeof path, "%s/dtype.safetensors", dir);
    write_raw_st(path, "{\"x\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2);
    assert_refused(path, "F8_E4M3");

    snprintf(path, sizeof path, "%s/shape.safetensors", dir);
    write_raw_st(path, "{\"x\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8);
    assert_refused(path, "non-negative");

    snprintf(path, sizeof path, "%s/ndim.safetensors", dir);
    write_raw_st(path,
                 "{\"x\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1);
    assert_refused(path, "dimensions");

    snprintf(path, sizeof path, "%s/offsets.safetensors", dir);
    write_raw_st(path, "{\"x\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[4,2]}}", 8);
    assert_refused(path, "begin <= end");

    snprintf(path, sizeof path, "%s/size.safetensors", dir);
    write_raw_st(path, "{\"x\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 24);
    assert_refused(path, "need 24");

    snprintf(path, sizeof path, "%s/overflow.safetensors", dir);
    write_raw_st(path, "{\"x\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296],"
                       "\"data_offsets\":[0,0]}}", 0);
    assert_refused(path, "overflow");

    /* Zero bytes (a 0 in the shape), but 2^62 * 2 elements before it: accepted
     * at 1df6ed0, where st_numel then overflowed int64 (found by fuzz/). */
    snprintf(path, sizeof path, "%s/numel.safetensors", dir);
    write_raw_st(path, "{\"x\":{\"dtype\":\"U8\",\"shape\":[4611686018427387904,2,0],"
                       "\"data_offsets\":[0,0]}}", 0);
    assert_refused(path, "overflow");

    snprintf(path, sizeof path, "%s/overlap.safetensors", dir);
    write_raw_st(path,
                 "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                 "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12);
    assert_refused(path, "overlap");

    snprintf(path, sizeof path, "%s/meta.safetensors", dir);
    write_raw_st(path, "{\"__metadata__\":{\"step\":12}}", 0);
    assert_refused(path, "not a string");

    snprintf(path, sizeof path, "%s/dupe.safetensors", dir);
    write_raw_st(path,
                 "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                 "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2);
    assert_refused(path, "not valid JSON");

    /* A good file truncated by a few bytes names the tensor that no longer fits. */
    snprintf(path, sizeof path, "%s/truncated.safetensors", dir);
    float w[256];
    Rng rng;
    rng_seed(&rng, 7);
    fill_uniform(&rng, w, 256, 1.0f);
    StTensor ts[2] = {
        {.name = "h.0.ln_1.weight", .dtype = ST_F32, .ndim = 1, .shape = {128}, .data = w},
        {.name = "h.0.attn.c_attn.weight", .dtype = ST_F32, .ndim = 2, .shape = {8, 16}, .data = w + 128},
    };
    cr_assert_eq(safetensors_write(path, ts, 2, NULL), 0, "%s", err_msg());
    cr_assert_eq(truncate(path, file_size(path) - 3), 0);
    assert_refused(path, "h.0.attn.c_attn.weight' ends at byte 1024 but the file has only 1021");

    rm_rf(dir);
}

/* A file written by the Python safetensors package (tests/make_hf_fixtures.py). */
Test(safetensors, reads_python_written_file) {
    const char *path = "tests/fixtures/hf_a.safetensors";
    if (!path_exists(path)) cr_skip_test("%s not found", path);
    SafeTensorsFile *f = safetensors_open(path);
    cr_assert_not_null(f, "%s", err_msg());
    cr_assert_str_eq(safetensors_meta(f, "name"), "hf_a");
    const StTensor *wte = safetensors_find(f, "param.wte.weight");
    cr_assert_not_null(wte);
    cr_assert_eq(wte->dtype, ST_F32);
    cr_assert_eq(wte->ndim, 2);
    cr_assert_eq(wte->shape[0], atoi(safetensors_meta(f, "vocab_size")));
    cr_assert_eq(wte->shape[1], atoi(safetensors_meta(f, "n_embd")));
    safetensors_close(f);
}

/* ---------------------------------------------------------------- checkpoint dirs */

/* write_text to dir/name */
static void write_text_in(const char *dir, const char *name, const char *text) {
    char path[2048];
    cr_assert_lt((size_t)snprintf(path, sizeof path, "%s/%s", dir, name), sizeof path);
    write_text(path, text);
}

static char *read_text(const char *dir, const char *name) {
    char path[2048];
    cr_assert_lt((size_t)snprintf(path, sizeof path, "%s/%s", dir, name), sizeof path);
    return read_file(path, NULL);
}

/* A committed save of `step` whose marker file holds `tag`. */
static void save(const char *run, int64_t step, const char *tag) {
    char tmp[1024];
    cr_assert_eq(ckpt_begin(run, step, tmp, sizeof tmp), 0, "%s", err_msg());
    write_text_in(tmp, "trainer.json", tag);
    cr_assert_eq(ckpt_commit(run, tmp, step), 0, "%s", err_msg());
}

Test(checkpoint, begin_commit_creates_done) {
    char base[256], run[512], tmp[1024], name[1024];
    make_temp_dir(base, sizeof base, "ckpt");
    snprintf(run, sizeof run, "%s/runs/a", base); /* does not exist yet */

    ckpt_dir_name(name, sizeof name, run, 5);
    char want[1024];
    snprintf(want, sizeof want, "%s/step-00000005", run);
    cr_assert_str_eq(name, want);

    cr_assert_eq(ckpt_begin(run, 5, tmp, sizeof tmp), 0, "%s", err_msg());
    snprintf(want, sizeof want, "%s/step-00000005.tmp", run);
    cr_assert_str_eq(tmp, want);
    cr_assert(path_exists(tmp));
    write_text_in(tmp, "trainer.json", "{\"step\": 5}");
    /* Not listed before commit. */
    int64_t steps[4];
    cr_assert_eq(ckpt_list(run, steps, 4), 0);

    cr_assert_eq(ckpt_commit(run, tmp, 5), 0, "%s", err_msg());
    cr_assert(!path_exists(tmp));
    char *done = read_text(name, "DONE");
    cr_assert_not_null(done, "%s", err_msg());
    cr_assert(strstr(done, "5") != NULL);
    free(done);
    char *trainer = read_text(name, "trainer.json");
    cr_assert_str_eq(trainer, "{\"step\": 5}");
    free(trainer);
    cr_assert_eq(ckpt_list(run, steps, 4), 1);
    cr_assert_eq(steps[0], 5);
    rm_rf(base);
}

Test(checkpoint, begin_replaces_stale_tmp) {
    char run[256], tmp[1024];
    make_temp_dir(run, sizeof run, "ckpt");
    cr_assert_eq(ckpt_begin(run, 3, tmp, sizeof tmp), 0, "%s", err_msg());
    write_text_in(tmp, "stale.bin", "old");
    cr_assert_eq(ckpt_begin(run, 3, tmp, sizeof tmp), 0, "%s", err_msg());
    char stale[1100];
    snprintf(stale, sizeof stale, "%s/stale.bin", tmp);
    cr_assert(!path_exists(stale), "stale .tmp contents survived ckpt_begin");
    /* abort removes it and keeps the caller's error message. */
    err_set("the real failure");
    ckpt_abort(tmp);
    cr_assert(!path_exists(tmp));
    cr_assert_str_eq(err_msg(), "the real failure");
    rm_rf(run);
}

static void remember(const char *dir, void *ctx) {
    char *seen = ctx;
    strcat(seen, strrchr(dir, '/') + 1);
    strcat(seen, ";");
}

/* What an interrupted save leaves (step-XXXXXXXX.tmp) goes at the next run;
 * anything else whose name only looks like it stays. */
Test(checkpoint, remove_stale_takes_only_interrupted_saves) {
    char run[256], path[1024], seen[1024] = "";
    make_temp_dir(run, sizeof run, "ckpt");
    save(run, 2, "2");
    const char *stale[] = {"step-00000007.tmp", "step-123456789.tmp"};
    const char *kept[] = {"step-7.tmp", "step-00000007.tmpx", "step-00000007.tmp.bak",
                          "step-0000000x.tmp", "notes.tmp", "step-00000002"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", run, stale[i]);
        cr_assert_eq(mkdir(path, 0755), 0);
        write_text_in(path, "model.safetensors", "half"); /* not empty */
    }
    for (int i = 0; i < 5; i++) {
        snprintf(path, sizeof path, "%s/%s", run, kept[i]);
        cr_assert_eq(mkdir(path, 0755), 0);
    }
    snprintf(path, sizeof path, "%s/step-00000009.tmp", run); /* a file, not our directory */
    write_bytes(path, "x", 1);
    cr_assert_eq(ckpt_remove_stale(run, remember, seen), 2, "%s", err_msg());
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", run, stale[i]);
        cr_expect(!path_exists(path), "%s survived", stale[i]);
        cr_expect(strstr(seen, stale[i]), "%s removed without a word: %s", stale[i], seen);
    }
    for (int i = 0; i < 6; i++) {
        snprintf(path, sizeof path, "%s/%s", run, kept[i]);
        cr_expect(path_exists(path), "%s was removed", kept[i]);
    }
    snprintf(path, sizeof path, "%s/step-00000009.tmp", run);
    cr_expect(path_exists(path));
    int64_t steps[4];
    cr_expect_eq(ckpt_list(run, steps, 4), 1, "the complete checkpoint is untouched");
    cr_expect_eq(ckpt_remove_stale(run, NULL, NULL), 0, "nothing left to remove");
    snprintf(path, sizeof path, "%s/missing", run);
    cr_expect_eq(ckpt_remove_stale(path, NULL, NULL), 0, "a run directory not made yet");
    rm_rf(run);
}

Test(checkpoint, list_ignores_incomplete_and_foreign) {
    char run[256], path[1024];
    make_temp_dir(run, sizeof run, "ckpt");
    save(run, 10, "10");
    save(run, 200, "200");
    save(run, 3, "3");
    save(run, 123456789, "big"); /* nine digits still round-trips */
    /* Without DONE, a leftover .tmp (even with DONE), odd names, a plain file. */
    snprintf(path, sizeof path, "%s/step-00000050", run);
    cr_assert_eq(mkdir_p(path), 0);
    snprintf(path, sizeof path, "%s/step-00000060.tmp", run);
    cr_assert_eq(mkdir_p(path), 0);
    write_text_in(path, "DONE", "60");
    snprintf(path, sizeof path, "%s/step-70", run);
    cr_assert_eq(mkdir_p(path), 0);
    write_text_in(path, "DONE", "70");
    snprintf(path, sizeof path, "%s/step-0000008x", run);
    cr_assert_eq(mkdir_p(path), 0);
    write_text_in(path, "DONE", "80");
    snprintf(path, sizeof path, "%s/other", run);
    cr_assert_eq(mkdir_p(path), 0);
    write_text_in(run, "step-00000090", "a file, not a directory");

    int64_t steps[16];
    int n = ckpt_list(run, steps, 16);
    cr_assert_eq(n, 4);
    cr_assert_eq(steps[0], 123456789);
    cr_assert_eq(steps[1], 200);
    cr_assert_eq(steps[2], 10);
    cr_assert_eq(steps[3], 3);
    /* max caps the count and keeps the newest. */
    cr_assert_eq(ckpt_list(run, steps, 2), 2);
    cr_assert_eq(steps[0], 123456789);
    cr_assert_eq(steps[1], 200);
    /* Missing run dir: none. */
    snprintf(path, sizeof path, "%s/nope", run);
    cr_assert_eq(ckpt_list(path, steps, 16), 0);
    rm_rf(run);
}

Test(checkpoint, prune_keeps_newest) {
    char run[256], path[1024];
    make_temp_dir(run, sizeof run, "ckpt");
    for (int s = 1; s <= 5; s++) save(run, s * 100, "x");
    snprintf(path, sizeof path, "%s/step-00000050.tmp", run);
    cr_assert_eq(mkdir_p(path), 0);
    snprintf(path, sizeof path, "%s/step-00000001", run); /* incomplete: not ours to judge */
    cr_assert_eq(mkdir_p(path), 0);
    write_text_in(run, "notes.txt", "keep me");

    int64_t steps[16];
    cr_assert_eq(ckpt_prune(run, 0), 0);
    cr_assert_eq(ckpt_list(run, steps, 16), 5);

    cr_assert_eq(ckpt_prune(run, 2), 0, "%s", err_msg());
    cr_assert_eq(ckpt_list(run, steps, 16), 2);
    cr_assert_eq(steps[0], 500);
    cr_assert_eq(steps[1], 400);
    snprintf(path, sizeof path, "%s/step-00000300", run);
    cr_assert(!path_exists(path));
    snprintf(path, sizeof path, "%s/step-00000100", run);
    cr_assert(!path_exists(path));
    snprintf(path, sizeof path, "%s/step-00000050.tmp", run);
    cr_assert(path_exists(path));
    snprintf(path, sizeof path, "%s/step-00000001", run);
    cr_assert(path_exists(path));
    snprintf(path, sizeof path, "%s/notes.txt", run);
    cr_assert(path_exists(path));

    cr_assert_eq(ckpt_prune(run, 10), 0);
    cr_assert_eq(ckpt_list(run, steps, 16), 2);
    rm_rf(run);
}

Test(checkpoint, commit_replaces_same_step) {
    char run[256], name[1024];
    make_temp_dir(run, sizeof run, "ckpt");
    save(run, 7, "first");
    ckpt_dir_name(name, sizeof name, run, 7);
    write_text_in(name, "extra.bin", "only in the first save");
    save(run, 7, "second");
    char *text = read_text(name, "trainer.json");
    cr_assert_str_eq(text, "second");
    free(text);
    char extra[1100];
    snprintf(extra, sizeof extra, "%s/extra.bin", name);
    cr_assert(!path_exists(extra), "files of the replaced save survived");
    int64_t steps[4];
    cr_assert_eq(ckpt_list(run, steps, 4), 1);
    cr_assert_eq(steps[0], 7);
    rm_rf(run);
}

/* ---------------------------------------------------------------- config.json */

Test(hf_config, round_trip) {
    char dir[256];
    make_temp_dir(dir, sizeof dir, "cfg");
    GPTConfig cfg = {.n_layer = 12, .n_head = 12, .n_embd = 768, .vocab_size = 50257,
                     .n_positions = 1024, .layer_norm_epsilon = 1e-5f};
    cr_assert_eq(hf_config_write(dir, &cfg), 0, "%s", err_msg());
    GPTConfig back;
    memset(&back, 0xff, sizeof back);
    cr_assert_eq(hf_config_read(dir, &back), 0, "%s", err_msg());
    cr_assert_eq(back.n_layer, 12);
    cr_assert_eq(back.n_head, 12);
    cr_assert_eq(back.n_embd, 768);
    cr_assert_eq(back.vocab_size, 50257);
    cr_assert_eq(back.n_positions, 1024);
    cr_assert_eq(back.layer_norm_epsilon, 1e-5f); /* bit-exact */

    char *json = read_text(dir, "config.json");
    cr_assert_not_null(json);
    cr_assert(strstr(json, "\"model_type\": \"gpt2\"") != NULL, "%s", json);
    cr_assert(strstr(json, "\"GPT2LMHeadModel\"") != NULL);
    cr_assert(strstr(json, "\"eos_token_id\": 50256") != NULL);
    cr_assert(strstr(json, "\"n_inner\": null") != NULL);
    cr_assert(strstr(json, "\"activation_function\": \"gelu_new\"") != NULL);
    cr_assert(strstr(json, "\"tie_word_embeddings\": true") != NULL);
    free(json);

    /* An odd epsilon survives too. */
    cfg.layer_norm_epsilon = 3.3e-7f;
    cr_assert_eq(hf_config_write(dir, &cfg), 0);
    cr_assert_eq(hf_config_read(dir, &back), 0);
    cr_assert_eq(back.layer_norm_epsilon, 3.3e-7f);
    rm_rf(dir);
}

Test(hf_config, reads_hf_variants) {
    char dir[256];
    make_temp_dir(dir, sizeof dir, "cfg");
    /* n_ctx only, no epsilon, gelu_pytorch_tanh, explicit n_inner = 4 * n_embd. */
    write_text_in(dir, "config.json",
               "{\"n_layer\": 2, \"n_head\": 4, \"n_embd\": 64, \"vocab_size\": 100, \"n_ctx\": 32,"
               " \"activation_function\": \"gelu_pytorch_tanh\", \"n_inner\": 256}");
    GPTConfig c;
    cr_assert_eq(hf_config_read(dir, &c), 0, "%s", err_msg());
    cr_assert_eq(c.n_positions, 32);
    cr_assert_eq(c.n_layer, 2);
    cr_assert_eq(c.n_head, 4);
    cr_assert_eq(c.n_embd, 64);
    cr_assert_eq(c.vocab_size, 100);
    cr_assert_eq(c.layer_norm_epsilon, 1e-5f);
    rm_rf(dir);
}

static void assert_config_refused(const char *dir, const char *json, const char *needle) {
    write_text_in(dir, "config.json", json);
    GPTConfig c;
    err_clear();
    cr_assert_eq(hf_config_read(dir, &c), -1, "accepted: %s", json);
    cr_assert(strstr(err_msg(), "config.json") != NULL, "%s", err_msg());
    cr_assert(strstr(err_msg(), needle) != NULL, "message lacks \"%s\": %s", needle, err_msg());
}

Test(hf_config, errors) {
    char dir[256];
    make_temp_dir(dir, sizeof dir, "cfg");
    GPTConfig c;
    err_clear();
    cr_assert_eq(hf_config_read(dir, &c), -1);
    cr_assert(strstr(err_msg(), "config.json") != NULL, "%s", err_msg());
    cr_assert(strstr(err_msg(), "no such file") != NULL, "%s", err_msg());

#define BASE "\"n_head\": 4, \"n_embd\": 64, \"vocab_size\": 100, \"n_positions\": 32"
    assert_config_refused(dir, "{" BASE "}", "\"n_layer\"");
    assert_config_refused(dir, "{\"n_layer\": 2, \"n_head\": 4, \"n_embd\": 64, \"vocab_size\": 100}",
                          "n_positions");
    assert_config_refused(dir, "{\"n_layer\": 0, " BASE "}", "positive");
    assert_config_refused(dir, "{\"n_layer\": 2, " BASE ", \"activation_function\": \"relu\"}",
                          "relu");
    assert_config_refused(dir, "{\"n_layer\": 2, " BASE ", \"n_inner\": 100}", "n_inner");
    assert_config_refused(dir, "{\"n_layer\": 2, " BASE ", \"model_type\": \"bert\"}", "gpt2, llama");
    assert_config_refused(dir, "{\"n_layer\": 2, " BASE ", \"tie_word_embeddings\": false}",
                          "tie_word_embeddings");
    assert_config_refused(dir, "{\"n_layer\": 2, " BASE, "invalid JSON");
    /* a float epsilon: 1e300 was inf at 1df6ed0, 1e-300 zero (found by fuzz/) */
    assert_config_refused(dir, "{\"n_layer\": 2, " BASE ", \"layer_norm_epsilon\": 1e300}",
                          "layer_norm_epsilon");
    assert_config_refused(dir, "{\"n_layer\": 2, " BASE ", \"layer_norm_epsilon\": 1e-300}",
                          "layer_norm_epsilon");
    /* 4 * n_embd in the message overflowed int (UB at 1df6ed0) */
    assert_config_refused(dir, "{\"n_layer\": 2, \"n_head\": 4, \"n_embd\": 1000000000, "
                               "\"vocab_size\": 100, \"n_positions\": 32, \"n_inner\": 3}",
                          "4000000000");
#undef BASE
    rm_rf(dir);
}
