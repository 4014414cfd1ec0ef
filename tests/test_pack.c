/* tests/test_pack.c — packing (data.pack): the packer of data/pack.h over a
 * real sft file, the model's packed forward/backward (gpt_set_packing)
 * against the same examples one per padded row, and `retort train` with
 * data.pack against an unpacked run.
 *
 * Model tolerance: a packed example's attention is computed by the same code
 * as the example alone (bit-exact, tests/test_ops_packed.c), but the unpacked
 * reference runs it in a row padded to T, where the attention sgemms have
 * more columns (zero probabilities of the pads) and the GEMMs of the layers
 * see another number of rows; OpenBLAS may then block the sums differently.
 * So the per-token log-probs need only agree to fp32 rounding: we allow 1e-5
 * absolute (log-probs of order 1..5), and the gradients 1e-5 relative (L2) —
 * a mask or position error gives errors of order 1e-1. (With OpenBLAS 0.3.21
 * on the 2-core Xeon both came out bit-identical at these shapes.) */
#include <criterion/criterion.h>
#include <hdf5.h>
#include <malloc.h>
#include <math.h>

#include "data/h5data.h"
#include "data/pack.h"
#include "model/backend.h"
#include "model/model.h"
#include "tests/testutil.h"
#include "tests/testutil_cli.h"

/* ---------------------------------------------------------------- packer */

/* An sft file of examples whose lengths are lens[i]; token j of example i is
 * (i * 7 + j) % 200 + 1, loss on every token but the first. */
static void write_lengths(const char *path, const int *lens, int n) {
    DatasetWriter *w = dataset_writer_open(path, SCHEMA_SFT, 257, 256, 256, "bytes");
    cr_assert(w, "%s", err_msg());
    for (int i = 0; i < n; i++) {
        uint32_t ids[512];
        uint8_t m[512];
        for (int j = 0; j < lens[i]; j++) {
            ids[j] = (uint32_t)((i * 7 + j) % 200 + 1);
            m[j] = j > 0;
        }
        cr_assert_eq(dataset_writer_add(w, ids, m, lens[i], -1), 0, "%s", err_msg());
    }
    cr_assert_eq(dataset_writer_close(w), 0, "%s", err_msg());
}

/* The first token of example i (its identity in a packed row). */
static int first_token(int i) { return (i * 7) % 200 + 1; }

Test(packer, first_fit_layout_targets_and_positions) {
    char dir[] = "/tmp/retort_pack_XXXXXX", path[300];
    cr_assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/a.h5", dir);
    /* T = 10: slots 5, 8, 2, 1, 0 (one token), 9 (20 tokens, cut to 11), 3 */
    const int lens[] = {6, 9, 3, 2, 1, 20, 4};
    write_lengths(path, lens, 7);
    Dataset ds;
    cr_assert_eq(dataset_open(&ds, path), 0, "%s", err_msg());
    DataLoader dl;
    int T = 10, rows = 2;
    cr_assert_eq(loader_init(&dl, &ds, T, 1, 0, 0, 7), 0, "%s", err_msg());
    Packer p;
    cr_assert_eq(packer_init(&p, &dl), 0, "%s", err_msg());
    int in[20], tg[20], st[20];
    int64_t n_ex, tok[20];
    packer_next(&p, rows, in, tg, st, tok, &n_ex);
    /* row 0: ex0 (5) + ex2 (2) + ex3 (1) + ex4 (0); row 1: ex1 (8); ex5 (9)
     * fits neither and opens the next group */
    cr_assert_eq(n_ex, 5);
    const int want_start[20] = {0, 0, 0, 0, 0, 5, 5, 7, 8, 9, 0, 0, 0, 0, 0, 0, 0, 0, 8, 9};
    for (int i = 0; i < 20; i++)
        cr_expect_eq(st[i], want_start[i], "doc_start[%d] = %d, want %d", i, st[i],
                     want_start[i]);
    cr_expect_eq(in[0], first_token(0));
    cr_expect_eq(in[5], first_token(2));
    cr_expect_eq(in[7], first_token(3));
    cr_expect_eq(in[10], first_token(1));
    /* targets: the next token inside each example, never the next example's */
    cr_expect_eq(tg[4], (0 * 7 + 5) % 200 + 1, "ex0's last slot predicts its last token");
    cr_expect_eq(tg[6], (2 * 7 + 2) % 200 + 1);
    cr_expect_eq(tg[7], (3 * 7 + 1) % 200 + 1);
    for (int i = 8; i < 10; i++) cr_expect(in[i] == 256 && tg[i] == -1, "pad at %d", i);
    for (int i = 18; i < 20; i++) cr_expect(in[i] == 256 && tg[i] == -1, "pad at %d", i);
    /* token indices: offsets of ex0 = 0, ex1 = 6, ex2 = 15, ex3 = 18 */
    const int64_t want_tok[20] = {0, 1, 2, 3, 4, 15, 16, 18, -1, -1,
                                  6, 7, 8, 9, 10, 11, 12, 13, -1, -1};
    for (int i = 0; i < 20; i++)
        cr_expect_eq(tok[i], want_tok[i], "token_index[%d] = %lld, want %lld", i,
                     (long long)tok[i], (long long)want_tok[i]);

    /* the position is before the held example (ex5); a packer seeked there
     * packs the same next group */
    int64_t epoch, pos;
    packer_position(&p, &epoch, &pos);
    cr_expect(epoch == 0 && pos == 5, "position (%lld, %lld), want (0, 5)", (long long)epoch,
              (long long)pos);
    int in2[20], tg2[20], st2[20], in3[20], tg3[20], st3[20];
    packer_next(&p, rows, in2, tg2, st2, NULL, &n_ex);
    /* ex5 cut to 11 tokens (9 slots) in row 0; ex6 (3) in row 1; then ex0 of
     * epoch 1 (5 slots) fits row 1 too; ex1 (8) fits neither */
    cr_expect_eq(n_ex, 3);
    cr_expect_eq(in2[0], first_token(5));
    cr_expect_eq(in2[10], first_token(6));
    cr_expect_eq(in2[13], first_token(0));
    cr_expect_eq(st2[13], 3);
    Packer q;
    DataLoader dl2;
    cr_assert_eq(loader_init(&dl2, &ds, T, 1, 0, 0, 7), 0, "%s", err_msg());
    cr_assert_eq(packer_init(&q, &dl2), 0, "%s", err_msg());
    packer_seek(&q, epoch, pos);
    packer_next(&q, rows, in3, tg3, st3, NULL, NULL);
    cr_expect(!memcmp(in2, in3, sizeof in2) && !memcmp(tg2, tg3, sizeof tg2) &&
                  !memcmp(st2, st3, sizeof st2),
              "resumed packer packs another group");
    packer_position(&p, &epoch, &pos);
    cr_expect(epoch == 1 && pos == 1, "position (%lld, %lld), want (1, 1)", (long long)epoch,
              (long long)pos);
    packer_free(&p);
    packer_free(&q);
    loader_free(&dl);
    loader_free(&dl2);
    dataset_close(&ds);
    rm_rf(dir);
}

Test(packer, refuses_lm_data) {
    char dir[] = "/tmp/retort_pack_XXXXXX", path[300];
    cr_assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/lm.h5", dir);
    DatasetWriter *w = dataset_writer_open(path, SCHEMA_LM, 257, 256, 256, "bytes");
    uint32_t ids[40];
    for (int j = 0; j < 40; j++) ids[j] = (uint32_t)j;
    cr_assert_eq(dataset_writer_add(w, ids, NULL, 40, -1), 0, "%s", err_msg());
    cr_assert_eq(dataset_writer_close(w), 0, "%s", err_msg());
    Dataset ds;
    cr_assert_eq(dataset_open(&ds, path), 0, "%s", err_msg());
    DataLoader dl;
    cr_assert_eq(loader_init(&dl, &ds, 8, 1, 0, 0, 4), 0, "%s", err_msg());
    Packer p;
    cr_expect_eq(packer_init(&p, &dl), -1);
    cr_expect(strstr(err_msg(), "lm file") != NULL, "message: %s", err_msg());
    loader_free(&dl);
    dataset_close(&ds);
    rm_rf(dir);
}

/* A kd file of examples whose lengths are lens[i] (at most 64; tokens as
 * write_lengths) with K = 3 teacher rows per token. */
static void write_kd(const char *path, const int *lens, int n) {
    DatasetWriter *w = dataset_writer_open(path, SCHEMA_KD, 257, 256, 256, "bytes");
    cr_assert(w, "%s", err_msg());
    cr_assert_eq(dataset_writer_set_topk(w, 3), 0, "%s", err_msg());
    Rng r;
    rng_seed(&r, 1910);
    for (int i = 0; i < n; i++) {
        uint32_t ids[64], top[192];
        uint8_t m[64];
        float lp[192];
        cr_assert(lens[i] <= 64);
        for (int j = 0; j < lens[i]; j++) {
            ids[j] = (uint32_t)((i * 7 + j) % 200 + 1);
            m[j] = j > 0;
            for (int k = 0; k < 3; k++) { /* distinct ids, log-probs <= 0 */
                top[j * 3 + k] = (uint32_t)(rng_below(&r, 80) * 3 + k);
                lp[j * 3 + k] = -0.2f - (float)k - (float)rng_uniform(&r);
            }
        }
        cr_assert_eq(dataset_writer_append(w, ids, m, lens[i]), 0, "%s", err_msg());
        cr_assert_eq(dataset_writer_append_topk(w, top, lp, lens[i]), 0, "%s", err_msg());
        cr_assert_eq(dataset_writer_end_doc(w, -1), 0, "%s", err_msg());
    }
    cr_assert_eq(dataset_writer_close(w), 0, "%s", err_msg());
}

/* A streamed kd file (dataset_open_stream) packs the groups of the same file
 * loaded (in the streamed order: loader_use_permute), bit for bit: rows,
 * doc_start, token indices, examples per group and the position, over
 * several epochs of a shuffled order; and each slot's teacher rows read by
 * token index (dataset_topk_tokens, per run of consecutive slots) are the
 * loaded file's arrays at that index. */
Test(packer, streamed_file_packs_as_loaded) {
    char dir[] = "/tmp/retort_pack_XXXXXX", path[300];
    cr_assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/kd.h5", dir);
    int lens[37];
    Rng r;
    rng_seed(&r, 1911);
    for (int i = 0; i < 37; i++) lens[i] = 1 + (int)rng_below(&r, i % 5 == 0 ? 40 : 12);
    write_kd(path, lens, 37);
    Dataset mem, st;
    cr_assert_eq(dataset_open(&mem, path), 0, "%s", err_msg());
    cr_assert_eq(dataset_open_stream(&st, path), 0, "%s", err_msg());
    cr_assert(st.stream && !st.offsets && !st.topk_ids, "the streamed dataset holds arrays");
    enum { T = 16, ROWS = 3, N = ROWS * T, K = 3 };
    DataLoader dm, ds;
    cr_assert_eq(loader_init(&dm, &mem, T, 7, 1, 0, 37), 0, "%s", err_msg());
    cr_assert_eq(loader_init(&ds, &st, T, 7, 1, 0, 37), 0, "%s", err_msg());
    loader_use_permute(&dm);
    Packer pm, ps;
    cr_assert_eq(packer_init(&pm, &dm), 0, "%s", err_msg());
    cr_assert_eq(packer_init(&ps, &ds), 0, "%s", err_msg());
    int64_t total = 0;
    for (int g = 0; g < 40; g++) {
        int in[2][N], tg[2][N], dst[2][N];
        int64_t tok[2][N], n_ex[2], e[2], p[2];
        cr_assert_eq(packer_next(&pm, ROWS, in[0], tg[0], dst[0], tok[0], &n_ex[0]), 0, "%s",
                     err_msg());
        cr_assert_eq(packer_next(&ps, ROWS, in[1], tg[1], dst[1], tok[1], &n_ex[1]), 0, "%s",
                     err_msg());
        cr_expect_eq(n_ex[1], n_ex[0], "group %d: %lld examples streamed, %lld loaded", g,
                     (long long)n_ex[1], (long long)n_ex[0]);
        cr_expect(!memcmp(in[0], in[1], sizeof in[0]), "group %d: inputs differ", g);
        cr_expect(!memcmp(tg[0], tg[1], sizeof tg[0]), "group %d: targets differ", g);
        cr_expect(!memcmp(dst[0], dst[1], sizeof dst[0]), "group %d: doc_start differs", g);
        cr_expect(!memcmp(tok[0], tok[1], sizeof tok[0]), "group %d: token_index differs", g);
        packer_position(&pm, &e[0], &p[0]);
        packer_position(&ps, &e[1], &p[1]);
        cr_expect(e[0] == e[1] && p[0] == p[1], "group %d: position (%lld, %lld) streamed, "
                  "(%lld, %lld) loaded", g, (long long)e[1], (long long)p[1], (long long)e[0],
                  (long long)p[0]);
        total += n_ex[0];
        /* teacher rows by token index, a run of consecutive slots at a time */
        for (int i = 0; i < N;) {
            int run = 1;
            if (tok[1][i] < 0) {
                i++;
                continue;
            }
            while (i + run < N && tok[1][i + run] == tok[1][i] + run) run++;
            int ids[N * K];
            float lp[N * K];
            cr_assert_eq(dataset_topk_tokens(&st, tok[1][i], run, ids, lp), 0, "%s", err_msg());
            for (int q = 0; q < run * K; q++) {
                int64_t at = tok[1][i] * K + q;
                cr_expect(ids[q] == (int)mem.topk_ids[at] && lp[q] == mem.topk_logp[at],
                          "group %d, slot %d: teacher row of token %lld differs", g, i,
                          (long long)tok[1][i]);
            }
            i += run;
        }
    }
    cr_expect_gt(total, 2 * 37, "40 groups placed %lld examples: not past two epochs",
                 (long long)total);
    packer_free(&pm);
    packer_free(&ps);
    loader_free(&dm);
    loader_free(&ds);
    dataset_close(&mem);
    dataset_close(&st);
    rm_rf(dir);
}

/* Heap bytes in use after packing 300 groups of 4 rows of 32 from a streamed
 * sft file of n examples (shuffled), minus before. */
static long packed_heap_growth(const char *path) {
    malloc_trim(0);
    long before = (long)mallinfo2().uordblks;
    Dataset st;
    cr_assert_eq(dataset_open_stream(&st, path), 0, "%s", err_msg());
    DataLoader dl;
    enum { T = 32, ROWS = 4, N = ROWS * T };
    cr_assert_eq(loader_init(&dl, &st, T, 3, 1, 0, dataset_num_items(&st, T)), 0, "%s",
                 err_msg());
    Packer p;
    cr_assert_eq(packer_init(&p, &dl), 0, "%s", err_msg());
    int in[N], tg[N], dst[N];
    int64_t tok[N];
    for (int g = 0; g < 300; g++)
        cr_assert_eq(packer_next(&p, ROWS, in, tg, dst, tok, NULL), 0, "%s", err_msg());
    long after = (long)mallinfo2().uordblks;
    packer_free(&p);
    loader_free(&dl);
    dataset_close(&st);
    return after - before;
}

/* Packing a streamed file holds no per-example arrays: the heap after 300
 * groups does not grow with the number of examples. Both files are past the
 * chunk caches (2 MiB per column: 300,000 examples of 2..21 tokens are
 * about 7 MB of uint16 tokens, 3.5 MB of mask and 2.4 MB of offsets), so
 * the caches fill to their bounds either way; loaded, the larger file
 * (1,200,000 examples) would hold about 70 MB of tokens, mask and offsets. */
Test(packer, streamed_memory_does_not_grow_with_the_file, .timeout = 300) {
    char dir[] = "/tmp/retort_pack_XXXXXX", small[300], large[300];
    cr_assert(mkdtemp(dir));
    snprintf(small, sizeof small, "%s/small.h5", dir);
    snprintf(large, sizeof large, "%s/large.h5", dir);
    enum { N_SMALL = 300000, N_LARGE = 1200000 };
    int *lens = xmalloc(N_LARGE * sizeof *lens);
    Rng r;
    rng_seed(&r, 1914);
    for (int i = 0; i < N_LARGE; i++) lens[i] = 2 + (int)rng_below(&r, 20);
    write_lengths(small, lens, N_SMALL);
    write_lengths(large, lens, N_LARGE);
    free(lens);
    packed_heap_growth(small); /* HDF5's one-time state */
    long g_small = packed_heap_growth(small), g_large = packed_heap_growth(large);
    cr_log_info("heap after packing: %ld bytes (%d examples), %ld (%d)", g_small, N_SMALL,
                g_large, N_LARGE);
    cr_expect_lt(g_large, 8L << 20, "packing the large file holds %ld bytes", g_large);
    cr_expect_lt(labs(g_large - g_small), 512L << 10,
                 "%ld bytes for %d examples, %ld for %d", g_large, N_LARGE, g_small, N_SMALL);
    rm_rf(dir);
}

/* ----------------------------------------------------------------- model */

/* Three examples (slots 8, 16, 4 tokens of input) packed into one row of
 * T = 32 (4 pad slots), against the same examples one per row of 16 (padded). */
static void packed_vs_unpacked(const GPTConfig *cfg, const char *family) {
    GPT *m = gpt_create(cfg, backend_cpu());
    cr_assert(m, "%s", err_msg());
    gpt_init_random(m, 31);
    Rng r;
    rng_seed(&r, 1908);
    const int slots[3] = {8, 16, 4};
    int Tp = 32, Tu = 16, V = cfg->vocab_size;
    int pin[32], ptg[32], pds[32], uin[48], utg[48];
    int at = 0;
    for (int e = 0; e < 3; e++)
        for (int j = 0; j < Tu; j++) {
            int live = j < slots[e];
            uin[e * Tu + j] = live ? (int)rng_below(&r, V) : 0;
            /* a few inputs without a target (a loss mask), as sft prompts */
            utg[e * Tu + j] = live && j % 5 != 0 ? (int)rng_below(&r, V) : -1;
            if (live) {
                pin[at] = uin[e * Tu + j];
                ptg[at] = utg[e * Tu + j];
                pds[at] = at - j;
                at++;
            }
        }
    for (; at < Tp; at++) pin[at] = 0, ptg[at] = -1, pds[at] = at;
    float ulogp[48], plogp[32], ug[48], pg[32];
    size_t ng = gpt_grad_size(m);
    float *gu = malloc(ng * sizeof(float)), *gp = malloc(ng * sizeof(float));
    int D = 0;
    for (int i = 0; i < 48; i++) D += utg[i] >= 0;
    for (int i = 0; i < 48; i++) ug[i] = utg[i] >= 0 ? -1.0f / D : 0.0f;
    for (int i = 0; i < 32; i++) pg[i] = ptg[i] >= 0 ? -1.0f / D : 0.0f;

    gpt_zero_grad(m);
    gpt_forward(m, uin, utg, 3, Tu, ulogp);
    gpt_backward(m, ug);
    gpt_copy_grads_to_host(m, gu, ng);
    gpt_zero_grad(m);
    cr_assert_eq(gpt_set_packing(m, pds, 1, Tp), 0, "%s", err_msg());
    gpt_forward(m, pin, ptg, 1, Tp, plogp);
    gpt_backward(m, pg);
    gpt_copy_grads_to_host(m, gp, ng);

    at = 0;
    double worst = 0;
    for (int e = 0; e < 3; e++)
        for (int j = 0; j < slots[e]; j++, at++)
            if (utg[e * Tu + j] >= 0)
                worst = fmax(worst, fabs((double)ulogp[e * Tu + j] - plogp[at]));
    cr_expect(worst < 1e-5, "%s: packed logp differs from unpacked by %.3g", family, worst);
    double d2 = 0, n2 = 0;
    for (size_t i = 0; i < ng; i++) {
        d2 += ((double)gu[i] - gp[i]) * ((double)gu[i] - gp[i]);
        n2 += (double)gu[i] * gu[i];
    }
    cr_expect(n2 > 0 && sqrt(d2 / n2) < 1e-5, "%s: packed gradient differs by %.3g relative",
              family, sqrt(d2 / n2));

    /* the packing applies to one forward only: the next is unpacked, and
     * differs from the packed one (examples then see each other) */
    float again[32];
    gpt_forward(m, pin, ptg, 1, Tp, again);
    double moved = 0;
    for (int i = 8; i < 24; i++)
        if (ptg[i] >= 0) moved = fmax(moved, fabs((double)again[i] - plogp[i]));
    cr_expect(moved > 1e-4, "%s: a forward after the packed one still ran packed", family);
    free(gu), free(gp);
    gpt_free(m);
}

Test(packed_model, gpt2_logp_and_gradients_equal_unpacked) {
    GPTConfig cfg = {.n_layer = 2, .n_head = 4, .n_embd = 64, .vocab_size = 97, .n_positions = 40,
                     .layer_norm_epsilon = 1e-5f};
    packed_vs_unpacked(&cfg, "gpt2");
}

Test(packed_model, llama_logp_and_gradients_equal_unpacked) {
    GPTConfig cfg = {.n_layer = 2, .n_head = 4, .n_embd = 64, .vocab_size = 97, .n_positions = 40,
                     .layer_norm_epsilon = 1e-5f, .arch = ARCH_LLAMA, .n_kv_head = 2,
                     .intermediate_size = 96, .rope_theta = 10000.0};
    packed_vs_unpacked(&cfg, "llama");
}

Test(packed_model, malformed_doc_start_is_refused) {
    GPTConfig cfg = {.n_layer = 1, .n_head = 2, .n_embd = 16, .vocab_size = 10, .n_positions = 8,
                     .layer_norm_epsilon = 1e-5f};
    GPT *m = gpt_create(&cfg, backend_cpu());
    int bad[8] = {0, 0, 1, 1, 4, 4, 4, 4}; /* 1 at t = 2 is neither 2 nor the previous 0 */
    cr_expect_eq(gpt_set_packing(m, bad, 1, 8), -1);
    cr_expect(strstr(err_msg(), "doc_start[0,2]") != NULL, "message: %s", err_msg());
    int first[8] = {1, 1, 2, 3, 4, 5, 6, 7};
    cr_expect_eq(gpt_set_packing(m, first, 1, 8), -1);
    gpt_free(m);
}

/* ------------------------------------------------------- the real binary */

static const char TRAIN_FLAGS[] =
    "-c configs/tiny.yaml --set model.n_layer=2 --set model.n_head=2 --set model.n_embd=32 "
    "--set model.n_positions=32 --set data.seq_len=32 --set data.shuffle=false "
    "--set data.val_fraction=0 --set eval.every=0 --set train.log_every=1 "
    "--set train.threads=1 --set optim.warmup_steps=0";

/* Four examples whose slots (5, 9, 7, 11) fill one row of 32 exactly: a
 * packed run of one row per step and an unpacked run of four rows per step
 * train on the same examples in every step, so their losses agree (steps 1
 * and 2: the second starts from equal updates). */
Test(packed_train, loss_equals_unpacked_run) {
    char dir[] = "/tmp/retort_pack_XXXXXX", path[300], run[320];
    cr_assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/four.h5", dir);
    const int lens[] = {6, 10, 8, 12};
    write_lengths(path, lens, 4);
    RUN(dir, "train %s --set data.train=%s --set data.batch_size=4 --set train.steps=2 "
             "--set checkpoint.every=0 --set train.out_dir=%s/plain", TRAIN_FLAGS, path, dir);
    RUN(dir, "train %s --set data.train=%s --set data.batch_size=1 --set data.pack=true "
             "--set train.steps=2 --set checkpoint.every=2 --set train.out_dir=%s/packed",
        TRAIN_FLAGS, path, dir);
    double plain[4], packed[4];
    snprintf(run, sizeof run, "%s/plain", dir);
    cr_assert_eq(metric_values(run, "step", "loss", plain, 4), 2);
    snprintf(run, sizeof run, "%s/packed", dir);
    cr_assert_eq(metric_values(run, "step", "loss", packed, 4), 2);
    for (int s = 0; s < 2; s++)
        cr_expect(fabs(plain[s] - packed[s]) <= 1e-6 * fabs(plain[s]),
                  "step %d: packed loss %.9g, unpacked %.9g", s + 1, packed[s], plain[s]);
    /* the data position counts examples: 8 drawn, none held back mid-epoch */
    snprintf(path, sizeof path, "%s/packed/step-00000002/trainer.json", dir);
    json_error_t e;
    json_t *tj = json_load_file(path, 0, &e);
    cr_assert(tj, "%s: %s", path, e.text);
    json_t *data = json_object_get(tj, "data");
    cr_expect_eq(json_integer_value(json_object_get(data, "epoch")), 2, "%s", path);
    cr_expect_eq(json_integer_value(json_object_get(data, "pos")), 0, "%s", path);
    json_decref(tj);
    rm_rf(dir);
}

/* A packed run stopped at a checkpoint and resumed trains the same steps as
 * the run that went through (the held-back example included). */
Test(packed_train, resume_repeats_the_same_steps) {
    char dir[] = "/tmp/retort_pack_XXXXXX", path[300], run[320];
    cr_assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/mixed.h5", dir);
    int lens[40];
    Rng r;
    rng_seed(&r, 1909);
    for (int i = 0; i < 40; i++) lens[i] = 2 + (int)rng_below(&r, i % 7 == 0 ? 40 : 12);
    write_lengths(path, lens, 40);
    RUN(dir, "train %s --set data.train=%s --set data.batch_size=2 --set data.pack=true "
             "--set data.shuffle=true --set train.steps=6 --set checkpoint.every=3 "
             "--set train.out_dir=%s/through", TRAIN_FLAGS, path, dir);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cp -r %s/through %s/resumed && rm -rf %s/resumed/step-00000006",
             dir, dir, dir);
    cr_assert_eq(system(cmd), 0);
    RUN(dir, "train %s --set data.train=%s --set data.batch_size=2 --set data.pack=true "
             "--set data.shuffle=true --set train.steps=6 --set checkpoint.every=3 "
             "--set train.out_dir=%s/resumed --resume", TRAIN_FLAGS, path, dir);
    double a[8] = {0}, b[8] = {0};
    snprintf(run, sizeof run, "%s/through", dir);
    cr_assert_eq(metric_by_step(run, "step", "loss", a, 8), 6);
    snprintf(run, sizeof run, "%s/resumed", dir);
    cr_assert_eq(metric_by_step(run, "step", "loss", b, 8), 6);
    for (int s = 4; s <= 6; s++)
        cr_expect(a[s] == b[s], "step %d: resumed loss %.9g, uninterrupted %.9g", s, b[s], a[s]);
    rm_rf(dir);
}

/* The four-example file as kd data with K = 3 teacher rows per token. */
static void write_kd_four(const char *path) {
    const int lens[] = {6, 10, 8, 12};
    write_kd(path, lens, 4);
}

/* kd packed against unpacked, both teachers: the offline top-K rows follow
 * their tokens into the packed row, and an online teacher runs packed too;
 * loss, ce and kd of steps 1 and 2 agree. */
Test(packed_train, kd_equals_unpacked_run) {
    char dir[] = "/tmp/retort_pack_XXXXXX", path[300], run[320];
    cr_assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/kd.h5", dir);
    write_kd_four(path);
    /* a teacher: one step of lm training on the same file, saved */
    RUN(dir, "train %s --set data.train=%s --set data.batch_size=4 --set train.steps=1 "
             "--set checkpoint.every=0 --set train.out_dir=%s/teacher", TRAIN_FLAGS, path, dir);
    const char *teachers[2] = {"", "/teacher/step-00000001"};
    for (int t = 0; t < 2; t++) {
        char teacher[400] = "";
        if (t) snprintf(teacher, sizeof teacher, "--set kd.teacher=%s%s", dir, teachers[t]);
        RUN(dir, "train %s --set objective.type=kd --set kd.alpha=0.5 %s --set data.train=%s "
                 "--set data.batch_size=4 --set train.steps=2 --set checkpoint.every=0 "
                 "--set train.out_dir=%s/plain%d", TRAIN_FLAGS, teacher, path, dir, t);
        RUN(dir, "train %s --set objective.type=kd --set kd.alpha=0.5 %s --set data.train=%s "
                 "--set data.batch_size=1 --set data.pack=true --set train.steps=2 "
                 "--set checkpoint.every=0 --set train.out_dir=%s/packed%d", TRAIN_FLAGS, teacher,
            path, dir, t);
        const char *keys[3] = {"loss", "ce", "kd"};
        for (int k = 0; k < 3; k++) {
            double plain[4], packed[4];
            snprintf(run, sizeof run, "%s/plain%d", dir, t);
            cr_assert_eq(metric_values(run, "step", keys[k], plain, 4), 2);
            snprintf(run, sizeof run, "%s/packed%d", dir, t);
            cr_assert_eq(metric_values(run, "step", keys[k], packed, 4), 2);
            for (int s = 0; s < 2; s++)
                cr_expect(fabs(plain[s] - packed[s]) <= 1e-6 * fabs(plain[s]),
                          "%s teacher, step %d: packed %s %.9g, unpacked %.9g",
                          t ? "online" : "offline", s + 1, keys[k], packed[s], plain[s]);
        }
    }
    rm_rf(dir);
}

/* data.stream=true with data.pack: the same runs as the loaded file, bit
 * for bit (losses of every step; data.shuffle=false, whose order is the
 * identity in both modes), for sft and for kd with the offline teacher's
 * top-K rows read by token index (loss, ce, kd); and the trainer says the
 * file is streamed. */
Test(packed_train, streamed_equals_loaded_run) {
    char dir[] = "/tmp/retort_pack_XXXXXX", sft[300], kd[300], run[320];
    cr_assert(mkdtemp(dir));
    snprintf(sft, sizeof sft, "%s/sft.h5", dir);
    snprintf(kd, sizeof kd, "%s/kd.h5", dir);
    int lens[30];
    Rng r;
    rng_seed(&r, 1912);
    for (int i = 0; i < 30; i++) lens[i] = 2 + (int)rng_below(&r, i % 6 == 0 ? 45 : 14);
    write_lengths(sft, lens, 30);
    write_kd(kd, lens, 30);
    const char *files[2] = {sft, kd}, *objective[2] = {"", "--set objective.type=kd "
                                                           "--set kd.alpha=0.5"};
    const char *keys[2][3] = {{"loss", NULL, NULL}, {"loss", "ce", "kd"}};
    for (int f = 0; f < 2; f++) {
        for (int mode = 0; mode < 2; mode++)
            RUN(dir, "train %s %s --set data.train=%s --set data.batch_size=2 "
                     "--set data.pack=true --set data.stream=%s --set train.steps=5 "
                     "--set checkpoint.every=0 --set train.out_dir=%s/%s%d", TRAIN_FLAGS,
                objective[f], files[f], mode ? "true" : "false", dir, f ? "kd" : "sft", mode);
        for (int k = 0; k < 3 && keys[f][k]; k++) {
            double loaded[8], streamed[8];
            snprintf(run, sizeof run, "%s/%s0", dir, f ? "kd" : "sft");
            cr_assert_eq(metric_values(run, "step", keys[f][k], loaded, 8), 5);
            snprintf(run, sizeof run, "%s/%s1", dir, f ? "kd" : "sft");
            cr_assert_eq(metric_values(run, "step", keys[f][k], streamed, 8), 5);
            for (int s = 0; s < 5; s++)
                cr_expect(loaded[s] == streamed[s], "%s, step %d: streamed %s %.9g, loaded %.9g",
                          f ? "kd" : "sft", s + 1, keys[f][k], streamed[s], loaded[s]);
        }
    }
    char log[400];
    snprintf(log, sizeof log, "%s/log", dir);
    char *text = read_file(log, NULL);
    cr_expect(text && strstr(text, "is read on demand"), "the streamed run does not say so");
    free(text);
    rm_rf(dir);
}

/* A streamed packed run (shuffled: the streamed order) stopped at a
 * checkpoint and resumed trains the steps of the run that went through. */
Test(packed_train, streamed_resume_repeats_the_same_steps) {
    char dir[] = "/tmp/retort_pack_XXXXXX", path[300], run[320];
    cr_assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/mixed.h5", dir);
    int lens[40];
    Rng r;
    rng_seed(&r, 1913);
    for (int i = 0; i < 40; i++) lens[i] = 2 + (int)rng_below(&r, i % 7 == 0 ? 40 : 12);
    write_kd(path, lens, 40);
    const char *args = "--set objective.type=kd --set kd.alpha=0.5 --set data.batch_size=2 "
                       "--set data.pack=true --set data.stream=true --set data.shuffle=true "
                       "--set train.steps=6 --set checkpoint.every=3";
    RUN(dir, "train %s --set data.train=%s %s --set train.out_dir=%s/through", TRAIN_FLAGS, path,
        args, dir);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cp -r %s/through %s/resumed && rm -rf %s/resumed/step-00000006",
             dir, dir, dir);
    cr_assert_eq(system(cmd), 0);
    RUN(dir, "train %s --set data.train=%s %s --set train.out_dir=%s/resumed --resume",
        TRAIN_FLAGS, path, args, dir);
    double a[8] = {0}, b[8] = {0};
    snprintf(run, sizeof run, "%s/through", dir);
    cr_assert_eq(metric_by_step(run, "step", "loss", a, 8), 6);
    snprintf(run, sizeof run, "%s/resumed", dir);
    cr_assert_eq(metric_by_step(run, "step", "loss", b, 8), 6);
    for (int s = 4; s <= 6; s++)
        cr_expect(a[s] == b[s], "step %d: resumed loss %.9g, uninterrupted %.9g", s, b[s], a[s]);
    rm_rf(dir);
}

/* A teacher row that only a read can find bad (a log-probability above 0,
 * written past the writer's checks) stops a streamed packed kd run with the
 * file, the dataset and the token named, and a non-zero exit. */
Test(packed_train, streamed_bad_teacher_row_stops_the_run) {
    char dir[] = "/tmp/retort_pack_XXXXXX", path[300], log[320];
    cr_assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/kd.h5", dir);
    int lens[12];
    for (int i = 0; i < 12; i++) lens[i] = 5 + i;
    write_kd(path, lens, 12);
    /* token 40's third teacher log-prob set to +1 */
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert_geq(f, 0);
    hid_t d = H5Dopen2(f, "teacher_topk_logp", H5P_DEFAULT), fs = H5Dget_space(d);
    hsize_t start[2] = {40, 2}, count[2] = {1, 1};
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
    hid_t ms = H5Screate_simple(2, count, NULL);
    float one = 1.0f;
    cr_assert_geq(H5Dwrite(d, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, &one), 0);
    H5Sclose(ms);
    H5Sclose(fs);
    H5Dclose(d);
    H5Fclose(f);
    char args[1500];
    snprintf(args, sizeof args, "train %s --set objective.type=kd --set kd.alpha=0.5 "
             "--set data.train=%s --set data.batch_size=2 --set data.pack=true "
             "--set data.stream=true --set train.steps=20 --set checkpoint.every=0 "
             "--set train.out_dir=%s/run", TRAIN_FLAGS, path, dir);
    cr_expect_neq(retort(dir, args), 0, "the run did not fail");
    snprintf(log, sizeof log, "%s/log", dir);
    char *text = read_file(log, NULL);
    cr_assert_not_null(text);
    char want[400];
    snprintf(want, sizeof want, "%s: dataset 'teacher_topk_logp', row 40 (token 40), column 2",
             path);
    assert_contains(text, want);
    assert_contains(text, "is not a log-probability");
    free(text);
    rm_rf(dir);
}

/* Two pairs (prompt 4 tokens; chosen / rejected slots 20 / 12 and 14 / 18)
 * fill two rows of 32 exactly: a packed run of one pair-row-pair per rank
 * (B = 1: 2 rows) and an unpacked run of B = 2 pairs (4 rows) train on the
 * same pairs every step. */
static void write_pairs(const char *path) {
    PrefWriter *w = pref_writer_open(path, 257, 256, 256, "bytes");
    cr_assert(w, "%s", err_msg());
    cr_assert_eq(pref_writer_set_boundary(w, "tokens"), 0, "%s", err_msg());
    const int chosen[2] = {17, 11}, rejected[2] = {9, 15};
    for (int p = 0; p < 2; p++) {
        uint32_t pr[4], c[32], r[32];
        for (int j = 0; j < 4; j++) pr[j] = (uint32_t)(p * 50 + j + 1);
        for (int j = 0; j < chosen[p]; j++) c[j] = (uint32_t)((p * 31 + j * 7) % 250 + 1);
        for (int j = 0; j < rejected[p]; j++) r[j] = (uint32_t)((p * 17 + j * 11) % 250 + 1);
        cr_assert_eq(pref_writer_add(w, pr, 4, c, chosen[p], r, rejected[p]), 0, "%s",
                     err_msg());
    }
    cr_assert_eq(pref_writer_close(w), 0, "%s", err_msg());
}

/* The pair packer: both sequences of a pair placed first-fit, the slot map
 * into the unpacked layout (chosen rows [0, K), rejected [K, 2K)), and the
 * position before the held pair. */
Test(packer, pairs_layout_and_position) {
    char dir[] = "/tmp/retort_pack_XXXXXX", path[300];
    cr_assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/pairs.h5", dir);
    write_pairs(path);
    PrefDataset pd;
    cr_assert_eq(pref_dataset_open(&pd, path), 0, "%s", err_msg());
    PrefLoader pl;
    int T = 32, rows = 2;
    cr_assert_eq(pref_loader_init(&pl, &pd, T, 0, 0, 1, 0, 0, 2), 0, "%s", err_msg());
    PairPacker p;
    pair_packer_init(&p, &pl, 8);
    int in[64], tg[64], ds[64], map[64], in_u[16 * 32], tg_u[16 * 32];
    int64_t ids[8];
    int K = pair_packer_next(&p, rows, in, tg, ds, map, in_u, tg_u, ids);
    cr_assert_eq(K, 2);
    cr_expect(ids[0] == 0 && ids[1] == 1);
    for (int j = 0; j < 32; j++) {
        /* row 0: pair 0's chosen (20 slots) then its rejected (12); row 1:
         * pair 1's chosen (14) then its rejected (18) */
        int want0 = j < 20 ? 0 * T + j : 2 * T + (j - 20);
        int want1 = j < 14 ? 1 * T + j : 3 * T + (j - 14);
        cr_expect_eq(map[j], want0, "row 0 slot %d maps to %d, want %d", j, map[j], want0);
        cr_expect_eq(map[32 + j], want1, "row 1 slot %d maps to %d, want %d", j, map[32 + j],
                     want1);
        cr_expect_eq(ds[j], j < 20 ? 0 : 20);
        cr_expect_eq(ds[32 + j], j < 14 ? 0 : 14);
        cr_expect_eq(in[j], in_u[map[j]], "row 0 slot %d: input", j);
        cr_expect_eq(tg[32 + j], tg_u[map[32 + j]], "row 1 slot %d: target", j);
    }
    int64_t epoch, pos;
    pair_packer_position(&p, &epoch, &pos);
    cr_expect(epoch == 1 && pos == 0, "position (%lld, %lld), want (1, 0)", (long long)epoch,
              (long long)pos);
    pair_packer_seek(&p, epoch, pos);
    cr_expect_eq(pair_packer_next(&p, rows, in, tg, ds, map, in_u, tg_u, ids), 2);
    cr_expect(ids[0] == 0 && ids[1] == 1, "after the seek: pairs %lld, %lld", (long long)ids[0],
              (long long)ids[1]);
    pair_packer_free(&p);
    pref_loader_free(&pl);
    pref_dataset_close(&pd);
    rm_rf(dir);
}

/* dpo (an online reference: the starting model) and orpo, packed against
 * unpacked: loss and the method's metrics of steps 1 and 2 agree. */
Test(packed_train, preference_pairs_equal_unpacked_run) {
    char dir[] = "/tmp/retort_pack_XXXXXX", path[300], sft[300], run[320];
    cr_assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/pairs.h5", dir);
    write_pairs(path);
    snprintf(sft, sizeof sft, "%s/four.h5", dir);
    const int lens[] = {6, 10, 8, 12};
    write_lengths(sft, lens, 4);
    RUN(dir, "train %s --set data.train=%s --set data.batch_size=4 --set train.steps=1 "
             "--set checkpoint.every=0 --set train.out_dir=%s/init", TRAIN_FLAGS, sft, dir);
    const char *methods[2] = {"dpo", "orpo"};
    const char *keys[2][3] = {{"loss", "rewards/margins", "logps/chosen"},
                              {"loss", "nll_loss", "log_odds_ratio"}};
    for (int k = 0; k < 2; k++) {
        char extra[400];
        snprintf(extra, sizeof extra, "--set objective.type=%s --set model.init=%s/init/"
                 "step-00000001", methods[k], dir);
        RUN(dir, "train %s %s --set data.train=%s --set data.batch_size=2 --set train.steps=2 "
                 "--set checkpoint.every=0 --set train.out_dir=%s/plain-%s", TRAIN_FLAGS, extra,
            path, dir, methods[k]);
        RUN(dir, "train %s %s --set data.train=%s --set data.batch_size=1 --set data.pack=true "
                 "--set train.steps=2 --set checkpoint.every=0 --set train.out_dir=%s/packed-%s",
            TRAIN_FLAGS, extra, path, dir, methods[k]);
        for (int m = 0; m < 3; m++) {
            double plain[4], packed[4];
            snprintf(run, sizeof run, "%s/plain-%s", dir, methods[k]);
            cr_assert_eq(metric_values(run, "step", keys[k][m], plain, 4), 2, "%s %s",
                         methods[k], keys[k][m]);
            snprintf(run, sizeof run, "%s/packed-%s", dir, methods[k]);
            cr_assert_eq(metric_values(run, "step", keys[k][m], packed, 4), 2);
            for (int s = 0; s < 2; s++)
                cr_expect(fabs(plain[s] - packed[s]) <= 1e-6 * fabs(plain[s]) + 1e-9,
                          "%s step %d: packed %s %.9g, unpacked %.9g", methods[k], s + 1,
                          keys[k][m], packed[s], plain[s]);
        }
    }
    rm_rf(dir);
}

/* What packing does not do yet is refused with the way out. */
Test(packed_train, refuses_what_it_does_not_pack) {
    char dir[] = "/tmp/retort_pack_XXXXXX", path[300];
    cr_assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/four.h5", dir);
    const int lens[] = {6, 10, 8, 12};
    write_lengths(path, lens, 4);
    const char *bad[] = {"--set train.epochs=1",
                         "--set objective.type=kd --set kd.on_policy=0.5 --set kd.teacher=x"};
    const char *says[] = {"set train.steps instead", "set kd.on_policy 0"};
    for (int k = 0; k < 2; k++) {
        char args[1200], log[400];
        snprintf(args, sizeof args, "train %s --set data.train=%s --set data.pack=true %s "
                 "--set train.steps=1 --set train.out_dir=%s/r%d", TRAIN_FLAGS, path, bad[k],
                 dir, k);
        cr_expect_neq(retort(dir, args), 0, "%s ran", bad[k]);
        snprintf(log, sizeof log, "%s/log", dir);
        char *text = read_file(log, NULL);
        cr_expect(text && strstr(text, says[k]), "%s: the log does not say '%s'", bad[k],
                  says[k]);
        free(text);
    }
    rm_rf(dir);
}
