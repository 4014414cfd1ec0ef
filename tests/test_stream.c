/* tests/test_stream.c — streamed datasets (data.stream, dataset_open_stream):
 * the stateless epoch permutation is a permutation; a streamed loader yields
 * exactly the rows, items and tags the in-memory loader yields for the same
 * order (lm windows; sft examples with loss masks, roles and tasks; kd
 * teacher rows; a data.mix mixture), also a rank's slice and across seeks; the reader's memory
 * does not grow with the file; a truncated file and a bad value met mid-run
 * are errors naming the file; and training: a streamed run stopped and
 * resumed equals the uninterrupted streamed run bit for bit, and without
 * shuffling (the same order in both modes) a streamed run equals the
 * in-memory run bit for bit. */
#include <criterion/criterion.h>
#include <hdf5.h>
#include <malloc.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/h5data.h"
#include "model/checkpoint.h"
#include "tests/testutil.h"
#include "tests/testutil_cli.h"

/* ---------------------------------------------------------------- helpers */

/* An lm file of n_docs pseudo-random documents (ids < vocab). */
static int64_t write_lm(const char *path, int n_docs, int vocab, uint64_t seed) {
    DatasetWriter *w = dataset_writer_open(path, SCHEMA_LM, vocab, vocab - 1, vocab - 1, "test");
    cr_assert_not_null(w, "%s", err_msg());
    Rng r;
    rng_seed(&r, seed);
    uint32_t doc[400];
    int64_t total = 0;
    for (int d = 0; d < n_docs; d++) {
        int n = 1 + (int)rng_below(&r, 400);
        for (int i = 0; i < n; i++) doc[i] = (uint32_t)rng_below(&r, (uint64_t)vocab);
        cr_assert_eq(dataset_writer_add(w, doc, NULL, n, -1), 0, "%s", err_msg());
        total += n;
    }
    cr_assert_eq(dataset_writer_close(w), 0, "%s", err_msg());
    return total;
}

/* An sft (or kd, with K teacher columns) file: examples of 1..60 tokens with
 * random loss masks, a role of three and a task of two per example. */
static void write_sft(const char *path, Schema schema, int n_ex, int vocab, int K,
                      uint64_t seed) {
    DatasetWriter *w = dataset_writer_open(path, schema, vocab, vocab - 1, vocab - 1, "test");
    cr_assert_not_null(w, "%s", err_msg());
    static const char *const roles[3] = {"planner", "caller", "summarizer"};
    static const char *const tasks[2] = {"answer", "explanation"};
    cr_assert_eq(dataset_writer_set_roles(w, roles, 3), 0, "%s", err_msg());
    cr_assert_eq(dataset_writer_set_tasks(w, tasks, 2), 0, "%s", err_msg());
    if (K) cr_assert_eq(dataset_writer_set_topk(w, K), 0, "%s", err_msg());
    Rng r;
    rng_seed(&r, seed);
    uint32_t tok[64], ids[64 * 4];
    uint8_t mask[64];
    float lp[64 * 4];
    for (int e = 0; e < n_ex; e++) {
        int n = 1 + (int)rng_below(&r, 60);
        for (int i = 0; i < n; i++) {
            tok[i] = (uint32_t)rng_below(&r, (uint64_t)vocab);
            mask[i] = (uint8_t)rng_below(&r, 2);
            for (int k = 0; k < K; k++) { /* K distinct ids: a start and a stride */
                ids[i * K + k] = (uint32_t)((tok[i] + 7 * k) % (uint32_t)vocab);
                lp[i * K + k] = -(float)(k + 1) * 0.5f - (float)rng_uniform(&r) * 0.1f;
            }
        }
        cr_assert_eq(dataset_writer_append(w, tok, mask, n), 0, "%s", err_msg());
        if (K) cr_assert_eq(dataset_writer_append_topk(w, ids, lp, n), 0, "%s", err_msg());
        cr_assert_eq(dataset_writer_end_doc_tagged(w, (int)rng_below(&r, 3), (int)rng_below(&r, 2)),
                     0, "%s", err_msg());
    }
    cr_assert_eq(dataset_writer_close(w), 0, "%s", err_msg());
}

static void open_both(const char *path, Dataset *mem, Dataset *str) {
    cr_assert_eq(dataset_open(mem, path), 0, "%s", err_msg());
    cr_assert_eq(dataset_open_stream(str, path), 0, "%s", err_msg());
    cr_assert_not_null(str->stream);
    cr_assert_null(str->tokens, "a streamed dataset holds no token array");
    cr_assert_null(str->offsets);
    cr_assert_eq(str->n_tokens, mem->n_tokens);
    cr_assert_eq(str->n_docs, mem->n_docs);
    cr_assert_eq(str->vocab_size, mem->vocab_size);
    cr_assert_eq(str->topk, mem->topk);
    cr_assert_eq(str->has_role, mem->has_role);
    cr_assert_eq(str->has_task, mem->has_task);
}

/* `steps` batches of B rows from both loaders (the in-memory one switched to
 * the streamed order) must match row for row, item for item. */
static void assert_same_batches(DataLoader *a, DataLoader *b, int steps, int B) {
    int T = a->T;
    int *ia = malloc((size_t)B * T * sizeof(int)), *ta = malloc((size_t)B * T * sizeof(int));
    int *ib = malloc((size_t)B * T * sizeof(int)), *tb = malloc((size_t)B * T * sizeof(int));
    int64_t *xa = malloc((size_t)B * sizeof(int64_t)), *xb = malloc((size_t)B * sizeof(int64_t));
    for (int s = 0; s < steps; s++) {
        cr_assert_eq(loader_next_items(a, B, ia, ta, xa), 0, "%s", err_msg());
        cr_assert_eq(loader_next_items(b, B, ib, tb, xb), 0, "%s", err_msg());
        for (int r = 0; r < B; r++) cr_assert_eq(xa[r], xb[r], "step %d row %d: item", s, r);
        for (int i = 0; i < B * T; i++) {
            cr_assert_eq(ia[i], ib[i], "step %d position %d: input", s, i);
            cr_assert_eq(ta[i], tb[i], "step %d position %d: target", s, i);
        }
        cr_assert_eq(a->epoch, b->epoch);
        cr_assert_eq(a->pos, b->pos);
    }
    free(ia), free(ta), free(ib), free(tb), free(xa), free(xb);
}

/* ----------------------------------------------------------- permutation */

static void assert_permutation(int64_t count, uint64_t seed, int64_t epoch) {
    unsigned char *seen = calloc((size_t)count, 1);
    for (int64_t i = 0; i < count; i++) {
        int64_t k = epoch_permute(count, seed, epoch, 1, i);
        cr_assert(k >= 0 && k < count, "count %ld: position %ld -> %ld", count, i, k);
        cr_assert_eq(seen[k], 0, "count %ld seed %lu epoch %ld: item %ld twice", count, seed,
                     epoch, k);
        seen[k] = 1;
    }
    free(seen);
}

Test(permute, is_a_permutation_for_every_size) {
    for (int64_t n = 1; n <= 300; n++) assert_permutation(n, 1234, n % 5);
    static const int64_t sizes[] = {509, 1021, 1024, 1025, 4093, 4096, 4097, 65521, 65537,
                                    104729, 1 << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
        for (uint64_t seed = 0; seed < 3; seed++) assert_permutation(sizes[i], seed, 7);
}

Test(permute, deterministic_shuffled_and_keyed_by_seed_and_epoch) {
    const int64_t n = 1000;
    int moved = 0, epoch_differs = 0, seed_differs = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t k = epoch_permute(n, 5, 3, 1, i);
        cr_assert_eq(k, epoch_permute(n, 5, 3, 1, i), "not a function of (seed, epoch, pos)");
        cr_assert_eq(epoch_permute(n, 5, 3, 0, i), i, "shuffle off is the identity");
        moved += k != i;
        epoch_differs += k != epoch_permute(n, 5, 4, 1, i);
        seed_differs += k != epoch_permute(n, 6, 3, 1, i);
    }
    /* a random permutation of 1000 fixes about 1 point */
    cr_expect_gt(moved, 950, "only %d of %d positions moved", moved, (int)n);
    cr_expect_gt(epoch_differs, 950, "epochs share %d positions", (int)n - epoch_differs);
    cr_expect_gt(seed_differs, 950, "seeds share %d positions", (int)n - seed_differs);
}

/* ------------------------------------------------- streamed == in memory */

Test(stream, lm_windows_equal_the_in_memory_rows) {
    char dir[256], path[512];
    make_temp_dir(dir, sizeof dir, "stream");
    snprintf(path, sizeof path, "%s/lm.h5", dir);
    write_lm(path, 200, 300, 3); /* uint16 ids; ~40k tokens */
    Dataset mem, str;
    open_both(path, &mem, &str);
    const int T = 16, B = 7; /* 7 does not divide the item count: batches cross epochs */
    int64_t items = dataset_num_items(&mem, T);
    DataLoader a, b;
    cr_assert_eq(loader_init(&a, &mem, T, 42, 1, 0, items), 0, "%s", err_msg());
    cr_assert_eq(loader_init(&b, &str, T, 42, 1, 0, items), 0, "%s", err_msg());
    cr_assert(b.permute && !b.order, "a streamed loader keeps no order array");
    loader_use_permute(&a);
    assert_same_batches(&a, &b, (int)(2 * items / B) + 3, B);
    /* seeking: both to the same position, then on */
    loader_seek(&a, 1, 17);
    loader_seek(&b, 1, 17);
    assert_same_batches(&a, &b, 20, B);
    loader_free(&a);
    loader_free(&b);
    /* an item range (train / validation split), unshuffled */
    cr_assert_eq(loader_init(&a, &mem, T, 0, 0, items - 50, 50), 0, "%s", err_msg());
    cr_assert_eq(loader_init(&b, &str, T, 0, 0, items - 50, 50), 0, "%s", err_msg());
    assert_same_batches(&a, &b, 12, 5); /* the identity: no switch needed */
    loader_free(&a);
    loader_free(&b);
    dataset_close(&mem);
    dataset_close(&str);
    rm_rf(dir);
}

Test(stream, sft_rows_masks_roles_and_tasks_equal_the_in_memory_ones) {
    char dir[256], path[512];
    make_temp_dir(dir, sizeof dir, "stream");
    snprintf(path, sizeof path, "%s/sft.h5", dir);
    write_sft(path, SCHEMA_SFT, 300, 500, 0, 9);
    Dataset mem, str;
    open_both(path, &mem, &str);
    cr_assert_eq(str.n_roles, 3);
    cr_assert_eq(str.n_tasks, 2);
    cr_assert_str_eq(str.task_names[1], "explanation");
    const int T = 24, B = 6; /* examples up to 60 tokens: some are cut */
    DataLoader a, b;
    cr_assert_eq(loader_init(&a, &mem, T, 7, 1, 0, mem.n_docs), 0, "%s", err_msg());
    cr_assert_eq(loader_init(&b, &str, T, 7, 1, 0, str.n_docs), 0, "%s", err_msg());
    loader_use_permute(&a);
    int64_t cut = loader_count_truncated(&a);
    cr_assert_gt(cut, 0);
    cr_assert_eq(loader_count_truncated(&b), cut);
    assert_same_batches(&a, &b, 120, B);
    cr_assert_gt(b.read_ahead, 0);
    cr_assert_gt(b.truncated, 0, "rows read ahead count their cut examples too");
    cr_assert_eq(a.truncated, b.truncated);
    /* the rows handed out that were cut, counted from the order itself */
    int64_t want = 0;
    for (int64_t k = 0; k < 120 * B; k++) {
        int64_t item = epoch_permute(mem.n_docs, 7, k / mem.n_docs, 1, k % mem.n_docs);
        want += mem.offsets[item + 1] - mem.offsets[item] > T + 1;
    }
    cr_assert_eq(b.truncated, want);
    for (int64_t i = 0; i < mem.n_docs; i++) {
        int ta = -1, tb = -2;
        cr_assert_eq(dataset_task_of(&mem, i, &ta), 0);
        cr_assert_eq(dataset_task_of(&str, i, &tb), 0, "%s", err_msg());
        cr_assert_eq(ta, tb, "example %ld: task", i);
    }
    loader_free(&a);
    loader_free(&b);
    /* a role's examples (GLPFT stages), and a loader over them */
    int64_t *ra, *rb, na, nb;
    cr_assert_eq(dataset_role_items(&mem, "caller", &ra, &na), 0, "%s", err_msg());
    cr_assert_eq(dataset_role_items(&str, "caller", &rb, &nb), 0, "%s", err_msg());
    cr_assert_eq(na, nb);
    cr_assert_eq(memcmp(ra, rb, (size_t)na * sizeof *ra), 0);
    cr_assert_eq(loader_init_subset(&a, &mem, T, 3, 1, ra, na), 0, "%s", err_msg());
    cr_assert_eq(loader_init_subset(&b, &str, T, 3, 1, rb, nb), 0, "%s", err_msg());
    loader_use_permute(&a);
    cr_assert_eq(loader_count_truncated(&b), loader_count_truncated(&a));
    assert_same_batches(&a, &b, 40, B);
    loader_free(&a);
    loader_free(&b);
    free(ra);
    free(rb);
    cr_assert_eq(dataset_role_items(&str, "nobody", &rb, &nb), -1);
    assert_contains(err_msg(), "no role named 'nobody'");
    dataset_close(&mem);
    dataset_close(&str);
    rm_rf(dir);
}

Test(stream, kd_teacher_rows_equal_the_in_memory_ones) {
    char dir[256], path[512];
    make_temp_dir(dir, sizeof dir, "stream");
    snprintf(path, sizeof path, "%s/kd.h5", dir);
    const int K = 3, T = 20;
    write_sft(path, SCHEMA_KD, 80, 400, K, 11);
    Dataset mem, str;
    open_both(path, &mem, &str);
    cr_assert_eq(str.topk, K);
    int *ia = malloc((size_t)T * K * sizeof(int)), *ib = malloc((size_t)T * K * sizeof(int));
    float *la = malloc((size_t)T * K * sizeof(float)), *lb = malloc((size_t)T * K * sizeof(float));
    for (int64_t i = 0; i < mem.n_docs; i++) {
        cr_assert_eq(dataset_topk_row(&mem, i, T, ia, la), 0);
        memset(ib, 0xff, (size_t)T * K * sizeof(int));
        cr_assert_eq(dataset_topk_row(&str, i, T, ib, lb), 0, "%s", err_msg());
        cr_assert_eq(memcmp(ia, ib, (size_t)T * K * sizeof(int)), 0, "example %ld: ids", i);
        cr_assert_eq(memcmp(la, lb, (size_t)T * K * sizeof(float)), 0, "example %ld: logp", i);
    }
    DataLoader a, b;
    cr_assert_eq(loader_init(&a, &mem, T, 1, 1, 0, mem.n_docs), 0, "%s", err_msg());
    cr_assert_eq(loader_init(&b, &str, T, 1, 1, 0, str.n_docs), 0, "%s", err_msg());
    loader_use_permute(&a);
    assert_same_batches(&a, &b, 50, 4);
    loader_free(&a);
    loader_free(&b);
    free(ia), free(ib), free(la), free(lb);
    dataset_close(&mem);
    dataset_close(&str);
    rm_rf(dir);
}

/* A rank reads only its rows of the global batch: the same rows, items and
 * position as reading all of them. */
Test(stream, a_rank_slice_equals_those_rows_of_the_whole_batch) {
    char dir[256], path[512];
    make_temp_dir(dir, sizeof dir, "stream");
    snprintf(path, sizeof path, "%s/lm.h5", dir);
    write_lm(path, 100, 300, 5);
    Dataset str;
    cr_assert_eq(dataset_open_stream(&str, path), 0, "%s", err_msg());
    const int T = 8, GB = 12, first = 4, n = 4;
    int64_t items = dataset_num_items(&str, T);
    DataLoader whole, slice;
    cr_assert_eq(loader_init(&whole, &str, T, 9, 1, 0, items), 0, "%s", err_msg());
    cr_assert_eq(loader_init(&slice, &str, T, 9, 1, 0, items), 0, "%s", err_msg());
    int in[12 * 8], tg[12 * 8], in2[12 * 8], tg2[12 * 8];
    int64_t x[12], x2[12];
    for (int s = 0; s < 3 * items / GB; s++) {
        cr_assert_eq(loader_next_items(&whole, GB, in, tg, x), 0, "%s", err_msg());
        memset(in2, 0x7f, sizeof in2);
        cr_assert_eq(loader_next_slice(&slice, GB, first, n, in2, tg2, x2), 0, "%s", err_msg());
        cr_assert_eq(memcmp(x, x2, sizeof x), 0, "step %d: items", s);
        cr_assert_eq(memcmp(in + first * T, in2 + first * T, (size_t)n * T * sizeof(int)), 0);
        cr_assert_eq(memcmp(tg + first * T, tg2 + first * T, (size_t)n * T * sizeof(int)), 0);
        cr_assert_eq(in2[0], 0x7f7f7f7f, "a row of another rank was read");
        cr_assert_eq(whole.pos, slice.pos);
    }
    /* every batch after the first came from the read-ahead thread */
    cr_expect_eq(slice.read_ahead, (3 * items / GB - 1) * n, "%ld rows read ahead",
                 (long)slice.read_ahead);
    cr_expect_eq(whole.read_ahead, (3 * items / GB - 1) * GB);
    loader_free(&whole);
    loader_free(&slice);
    dataset_close(&str);
    rm_rf(dir);
}

/* data.mix over streamed files: a rank's slice of the stream equals those
 * rows of the whole, and the in-memory mixture in the streamed order. */
Test(stream, a_mixture_slice_equals_the_whole_and_the_in_memory_mixture) {
    char dir[256], p1[512], p2[512];
    make_temp_dir(dir, sizeof dir, "stream");
    snprintf(p1, sizeof p1, "%s/a.h5", dir);
    snprintf(p2, sizeof p2, "%s/b.h5", dir);
    write_sft(p1, SCHEMA_SFT, 70, 500, 0, 21);
    write_sft(p2, SCHEMA_SFT, 40, 500, 0, 22);
    Dataset m1, m2, s1, s2;
    open_both(p1, &m1, &s1);
    open_both(p2, &m2, &s2);
    const Dataset *mem[2] = {&m1, &m2}, *str[2] = {&s1, &s2};
    const double w[2] = {0.6, 0.4};
    const int T = 12, GB = 6, first = 2, n = 2;
    MixLoader a, b, c;
    cr_assert_eq(mix_init(&a, mem, w, NULL, 2, T, 5, 1), 0, "%s", err_msg());
    for (int s = 0; s < 2; s++) loader_use_permute(&a.src[s]);
    cr_assert_eq(mix_init(&b, str, w, NULL, 2, T, 5, 1), 0, "%s", err_msg());
    cr_assert_eq(mix_init(&c, str, w, NULL, 2, T, 5, 1), 0, "%s", err_msg());
    int ia[6 * 12], ta[6 * 12], ib[6 * 12], tb[6 * 12], ic[6 * 12], tc[6 * 12];
    int sa[6], sb[6], sc[6];
    int64_t xa[6], xb[6], xc[6];
    for (int step = 0; step < 60; step++) {
        cr_assert_eq(mix_next(&a, GB, ia, ta, sa, xa), 0);
        cr_assert_eq(mix_next(&b, GB, ib, tb, sb, xb), 0, "%s", err_msg());
        cr_assert_eq(mix_next_slice(&c, GB, first, n, ic, tc, sc, xc), 0, "%s", err_msg());
        cr_assert_eq(memcmp(sa, sb, sizeof sa), 0, "step %d: sources", step);
        cr_assert_eq(memcmp(xa, xb, sizeof xa), 0, "step %d: items", step);
        cr_assert_eq(memcmp(ia, ib, sizeof ia), 0, "step %d: inputs", step);
        cr_assert_eq(memcmp(ta, tb, sizeof ta), 0, "step %d: targets", step);
        cr_assert_eq(memcmp(sc, sb, sizeof sc), 0);
        cr_assert_eq(memcmp(xc, xb, sizeof xc), 0);
        cr_assert_eq(memcmp(ic + first * T, ib + first * T, (size_t)n * T * sizeof(int)), 0);
        cr_assert_eq(memcmp(tc + first * T, tb + first * T, (size_t)n * T * sizeof(int)), 0);
    }
    mix_free(&a);
    mix_free(&b);
    mix_free(&c);
    dataset_close(&m1), dataset_close(&m2), dataset_close(&s1), dataset_close(&s2);
    rm_rf(dir);
}

/* ------------------------------------------------------- bounded memory */

/* Heap bytes in use after opening a streamed lm file of n_docs documents and
 * reading 300 shuffled batches from it, minus before. */
static long heap_growth(const char *path) {
    malloc_trim(0);
    long before = (long)mallinfo2().uordblks;
    Dataset str;
    cr_assert_eq(dataset_open_stream(&str, path), 0, "%s", err_msg());
    DataLoader dl;
    const int T = 32, B = 8;
    cr_assert_eq(loader_init(&dl, &str, T, 1, 1, 0, dataset_num_items(&str, T)), 0, "%s",
                 err_msg());
    int in[8 * 32], tg[8 * 32];
    for (int s = 0; s < 300; s++) cr_assert_eq(loader_next(&dl, B, in, tg), 0, "%s", err_msg());
    long after = (long)mallinfo2().uordblks;
    loader_free(&dl);
    dataset_close(&str);
    return after - before;
}

Test(stream, reader_memory_does_not_grow_with_the_file) {
    char dir[256], medium[512], large[512];
    make_temp_dir(dir, sizeof dir, "stream");
    snprintf(medium, sizeof medium, "%s/medium.h5", dir);
    snprintf(large, sizeof large, "%s/large.h5", dir);
    /* both past the chunk cache (2 MiB = 16 chunks of 64 Ki uint16 ids) */
    int64_t n_medium = write_lm(medium, 5000, 300, 1);  /* ~1M tokens */
    int64_t n_large = write_lm(large, 25000, 300, 2);   /* ~5M tokens: 20 MB as uint32 */
    cr_assert_gt(n_large, 4 * n_medium);
    heap_growth(medium); /* HDF5's one-time state */
    long g_medium = heap_growth(medium), g_large = heap_growth(large);
    /* the caches fill to their bounds either way; the in-memory reader would
     * hold 20 MB of tokens for the large file */
    cr_expect_lt(g_large, 6L << 20, "streaming the large file holds %ld bytes", g_large);
    cr_expect_lt(labs(g_large - g_medium), 1L << 20,
                 "%ld bytes for the large file, %ld for the medium one", g_large, g_medium);
    rm_rf(dir);
}

/* ------------------------------------------------------------- bad files */

Test(stream, a_truncated_file_is_refused_naming_it) {
    char dir[256], path[512];
    make_temp_dir(dir, sizeof dir, "stream");
    snprintf(path, sizeof path, "%s/lm.h5", dir);
    write_lm(path, 2000, 300, 4);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(truncate(path, st.st_size / 2), 0);
    Dataset str;
    err_clear();
    cr_assert_eq(dataset_open_stream(&str, path), -1, "a truncated file was accepted");
    assert_contains(err_msg(), path);
    cr_assert_null(str.stream, "the reader was left open after a refusal");
    rm_rf(dir);
}

static void attr_text(hid_t f, const char *name, const char *value) {
    hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR);
    H5Tset_size(t, strlen(value));
    hid_t a = H5Acreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, value);
    H5Aclose(a), H5Sclose(sp), H5Tclose(t);
}

static void attr_int(hid_t f, const char *name, int64_t value) {
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, &value);
    H5Aclose(a), H5Sclose(sp);
}

/* An lm file whose tokens (1024, in chunks of 64) are written only for their
 * first chunk: what a writer cut short leaves. */
static void write_unfinished_lm(const char *path) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    attr_text(f, "schema", "lm");
    attr_text(f, "tokenizer", "test");
    attr_int(f, "version", 1);
    attr_int(f, "vocab_size", 300);
    attr_int(f, "eos_id", 299);
    attr_int(f, "pad_id", 299);
    hsize_t n = 1024, chunk = 64, two = 2;
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 1, &chunk);
    hid_t sp = H5Screate_simple(1, &n, NULL);
    hid_t d = H5Dcreate2(f, "tokens", H5T_STD_U16LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    uint16_t first[64];
    for (int i = 0; i < 64; i++) first[i] = (uint16_t)(i + 1);
    hsize_t start = 0;
    H5Sselect_hyperslab(sp, H5S_SELECT_SET, &start, NULL, &chunk, NULL);
    hid_t ms = H5Screate_simple(1, &chunk, NULL);
    cr_assert_geq(H5Dwrite(d, H5T_NATIVE_UINT16, ms, sp, H5P_DEFAULT, first), 0);
    H5Sclose(ms), H5Dclose(d), H5Sclose(sp), H5Pclose(dcpl);
    int64_t offs[2] = {0, 1024};
    sp = H5Screate_simple(1, &two, NULL);
    d = H5Dcreate2(f, "offsets", H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, offs);
    H5Dclose(d), H5Sclose(sp), H5Fclose(f);
}

/* The whole-file reader refuses such a file at open; the streamed one finds
 * the unwritten chunk when a window reaches it, and names file and entries. */
Test(stream, an_unwritten_chunk_is_found_when_a_read_reaches_it) {
    char dir[256], path[512];
    make_temp_dir(dir, sizeof dir, "stream");
    snprintf(path, sizeof path, "%s/cut.h5", dir);
    write_unfinished_lm(path);
    Dataset ds;
    cr_assert_eq(dataset_open(&ds, path), -1, "the whole-file reader accepted it");
    cr_assert_eq(dataset_open_stream(&ds, path), 0, "%s", err_msg());
    int in[16], tg[16];
    cr_assert_eq(dataset_row(&ds, 0, 16, in, tg), 0, "%s", err_msg()); /* entries 0..16 */
    cr_assert_eq(in[3], 4);
    cr_assert_eq(dataset_row(&ds, 3, 16, in, tg), -1, "entries 48..64 cross into chunk 1");
    assert_contains(err_msg(), path);
    assert_contains(err_msg(), "entries [64, 128)");
    assert_contains(err_msg(), "not stored");
    dataset_close(&ds);
    rm_rf(dir);
}

/* Token `at` of the file's stream overwritten with `value` (the HDF5 API,
 * as a bit flip or another tool would leave it). */
static void poke_token(const char *path, int64_t at, uint16_t value) {
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert_geq(f, 0);
    hid_t d = H5Dopen2(f, "tokens", H5P_DEFAULT), fs = H5Dget_space(d);
    hsize_t start = (hsize_t)at, count = 1;
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &count, NULL);
    hid_t ms = H5Screate_simple(1, &count, NULL);
    cr_assert_geq(H5Dwrite(d, H5T_NATIVE_UINT16, ms, fs, H5P_DEFAULT, &value), 0);
    H5Sclose(ms);
    H5Sclose(fs);
    H5Dclose(d);
    H5Fclose(f);
}

Test(stream, a_bad_token_met_mid_run_names_the_file_and_index) {
    char dir[256], path[512];
    make_temp_dir(dir, sizeof dir, "stream");
    snprintf(path, sizeof path, "%s/lm.h5", dir);
    int64_t n = write_lm(path, 300, 300, 6);
    poke_token(path, n / 2, 299 + 40);
    Dataset str;
    cr_assert_eq(dataset_open_stream(&str, path), 0, "the open reads no tokens: %s", err_msg());
    const int T = 16;
    DataLoader dl;
    cr_assert_eq(loader_init(&dl, &str, T, 0, 0, 0, dataset_num_items(&str, T)), 0, "%s",
                 err_msg());
    int in[4 * 16], tg[4 * 16], rc = 0;
    while (rc == 0 && dl.epoch == 0) rc = loader_next(&dl, 4, in, tg);
    cr_assert_eq(rc, -1, "the bad token was not found");
    assert_contains(err_msg(), path);
    char where[64];
    snprintf(where, sizeof where, "tokens[%ld]=339", (long)(n / 2));
    assert_contains(err_msg(), where);
    assert_contains(err_msg(), "vocab_size 300");
    loader_free(&dl);
    dataset_close(&str);
    rm_rf(dir);
}

/* ------------------------------------------------------------- training */

/* A small lm run: 10 steps of 16 tokens, a checkpoint every 2. */
static void stream_config(Config *c, const char *data, const char *out, const char *stream) {
    tiny_train_config(c, data, out);
    c->data.seq_len = 16;
    c->optim.warmup_steps = 2;
    c->train.steps = 10;
    c->checkpoint.every = 2;
    snprintf(c->data.stream, sizeof c->data.stream, "%s", stream);
}

/* The "loss" text of every step of a run (exact digits). */
static void losses(const char *out, char l[16][48]) {
    char path[600], line[1024];
    snprintf(path, sizeof path, "%s/metrics.jsonl", out);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "no %s", path);
    int step;
    char v[48];
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "{\"step\": %d, \"loss\": %47[^,]", &step, v) == 2 && step < 16)
            snprintf(l[step], 48, "%s", v);
    fclose(f);
}

Test(stream_train, stopped_and_resumed_equals_uninterrupted) {
    char dir[256], data[512], a[512], b[512];
    make_temp_dir(dir, sizeof dir, "streamtrain");
    snprintf(data, sizeof data, "%s/train.h5", dir);
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    write_lm(data, 40, 257, 8);
    Config c;
    stream_config(&c, data, a, "true");
    train_ok(&c, 0);
    stream_config(&c, data, b, "true");
    train_request_stop_at(5);
    train_ok(&c, 0);
    train_request_stop_at(-1);
    train_ok(&c, 1);
    char la[16][48] = {{0}}, lb[16][48] = {{0}};
    losses(a, la);
    losses(b, lb);
    for (int s = 1; s <= 10; s++) {
        cr_assert(la[s][0], "step %d missing", s);
        cr_expect_str_eq(lb[s], la[s], "step %d: resumed %s != uninterrupted %s", s, lb[s], la[s]);
    }
    rm_rf(dir);
}

/* Without shuffling both modes visit items in file order, so a streamed run
 * (each row read from disk, by a read-ahead thread) must equal the in-memory
 * run bit for bit; shuffled, the orders differ (epoch_permute is not
 * Fisher-Yates) and so do the losses. */
Test(stream_train, unshuffled_streamed_run_equals_the_in_memory_run) {
    char dir[256], data[512], a[512], b[512], c2[512], d2[512];
    make_temp_dir(dir, sizeof dir, "streamtrain");
    snprintf(data, sizeof data, "%s/train.h5", dir);
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    snprintf(c2, sizeof c2, "%s/c", dir);
    snprintf(d2, sizeof d2, "%s/d", dir);
    write_lm(data, 40, 257, 8);
    Config c;
    stream_config(&c, data, a, "true");
    c.data.shuffle = 0;
    train_ok(&c, 0);
    stream_config(&c, data, b, "false");
    c.data.shuffle = 0;
    train_ok(&c, 0);
    char la[16][48] = {{0}}, lb[16][48] = {{0}};
    losses(a, la);
    losses(b, lb);
    for (int s = 1; s <= 10; s++)
        cr_expect_str_eq(la[s], lb[s], "step %d: streamed %s != in memory %s", s, la[s], lb[s]);
    /* auto keeps a small file in memory: the in-memory order, shuffled */
    stream_config(&c, data, c2, "auto");
    train_ok(&c, 0);
    stream_config(&c, data, d2, "false");
    train_ok(&c, 0);
    char lc[16][48] = {{0}}, ld[16][48] = {{0}};
    losses(c2, lc);
    losses(d2, ld);
    for (int s = 1; s <= 10; s++) cr_expect_str_eq(lc[s], ld[s], "step %d: auto", s);
    rm_rf(dir);
}

/* The command line: a streamed run says so and ends with its peak resident
 * memory; over a file whose bad token only a read finds, it stops with an
 * error naming the file, and exits non-zero. */
Test(stream_train, a_bad_token_stops_the_run_with_the_file_named) {
    char dir[256], data[512];
    make_temp_dir(dir, sizeof dir, "streamcli");
    snprintf(data, sizeof data, "%s/train.h5", dir);
    int64_t n = write_lm(data, 40, 257, 8);
    RUN(dir,
        "train --set model.n_layer=1 --set model.n_head=1 --set model.n_embd=16 "
        "--set model.vocab_size=257 --set model.n_positions=16 --set data.seq_len=16 "
        "--set data.batch_size=4 --set train.steps=3 --set train.threads=1 "
        "--set data.stream=true --set data.train=%s --set train.out_dir=%s/good",
        data, dir);
    char log[600];
    snprintf(log, sizeof log, "%s/log", dir);
    char *text = read_file(log, NULL);
    cr_assert_not_null(text);
    assert_contains(text, "is read on demand");
    assert_contains(text, "peak resident memory: ");
    free(text);
    unlink(log); /* the failing run's output alone */
    poke_token(data, n / 3, 1000);
    char args[2048];
    snprintf(args, sizeof args,
             "train --set model.n_layer=1 --set model.n_head=1 --set model.n_embd=16 "
             "--set model.vocab_size=257 --set model.n_positions=16 --set data.seq_len=16 "
             "--set data.batch_size=4 --set data.shuffle=false --set train.steps=1000 "
             "--set train.threads=1 --set data.stream=true --set data.train=%s "
             "--set train.out_dir=%s/run",
             data, dir);
    int rc = retort(dir, args);
    cr_assert_neq(rc, 0, "the run did not fail");
    text = read_file(log, NULL);
    cr_assert_not_null(text);
    char want[700];
    snprintf(want, sizeof want, "retort train: error: rank 0: %s: dataset 'tokens': tokens[", data);
    assert_contains(text, want);
    assert_contains(text, "]=1000 is >= vocab_size 257");
    free(text);
    rm_rf(dir);
}
