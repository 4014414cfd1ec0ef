/* tests/test_kddata.c — the kd dataset schema and generation into it:
 *   - kd files round-trip (tokens, mask, task tags, teacher top-K, candidates)
 *     and the reader refuses inconsistent ones, naming the dataset; teacher
 *     rows the KD term cannot use (a repeated id, an id past the vocabulary,
 *     a NaN, infinite or positive log-prob, K wider than the vocabulary) are
 *     refused by dataset_open, `data validate` and training's set-up, naming
 *     the row;
 *   - h5py reads what we write (a Python check, run when python3 with h5py
 *     is installed — `make deps` installs it — else skipped visibly);
 *   - batched sampling equals one-at-a-time sampling with the same
 *     generators; stop strings cut text and tokens;
 *   - `generate` into .h5: examples are prompt + completion + EOS with the
 *     loss on the completion, candidates hold every kept completion, the
 *     stored top-1 teacher log-prob equals the classifier's log p of that
 *     token (an independent path through the model), selection modes and
 *     filters do what they say. */
#include <criterion/criterion.h>

#include <hdf5.h>
#include <jansson.h>
#include <math.h>
#include <sys/wait.h>

#include "data/h5data.h"
#include "data/inspect.h"
#include "data/tokenizer.h"
#include "model/generate.h"
#include "eval/generate_io.h"
#include "eval/metrics.h"
#include "tests/testutil.h"
#include "model/backend.h"
#include "model/model.h"

/* A kd file: 3 examples with tasks, K=2 teacher rows, 3 candidates. */
static void write_kd(const char *path) {
    DatasetWriter *w = dataset_writer_open(path, SCHEMA_KD, 50, 49, 49, "test");
    cr_assert_not_null(w, "%s", err_msg());
    cr_assert_eq(dataset_writer_set_topk(w, 2), 0, "%s", err_msg());
    for (int e = 0; e < 3; e++) {
        uint32_t t[4] = {1 + e, 2 + e, 3 + e, 49};
        uint8_t m[4] = {0, 1, 1, 1};
        uint32_t ids[8];
        float lp[8];
        for (int i = 0; i < 8; i++) {
            ids[i] = (uint32_t)(i % 2 ? 7 + e : 10 + i); /* distinct in each row */
            lp[i] = -0.25f * (float)(i + 1 + e);
        }
        cr_assert_eq(dataset_writer_append(w, t, m, 4), 0, "%s", err_msg());
        cr_assert_eq(dataset_writer_append_topk(w, ids, lp, 4), 0, "%s", err_msg());
        cr_assert_eq(dataset_writer_end_doc_tagged(w, -1, e % 2), 0, "%s", err_msg());
    }
    uint32_t c0[2] = {3, 4}, c1[1] = {9};
    cr_assert_eq(dataset_writer_add_candidate(w, 0, c0, 2, -1.5, -0.75), 0, "%s", err_msg());
    cr_assert_eq(dataset_writer_add_candidate(w, 0, c1, 1, -2.5, -2.5), 0, "%s", err_msg());
    cr_assert_eq(dataset_writer_add_candidate(w, 2, c1, 0, -0.5, -0.5), 0, "%s", err_msg());
    const char *tasks[2] = {"qa", "sum"};
    cr_assert_eq(dataset_writer_set_tasks(w, tasks, 2), 0, "%s", err_msg());
    cr_assert_eq(dataset_writer_close(w), 0, "%s", err_msg());
}

Test(kd, round_trip_with_tasks_topk_and_candidates) {
    char dir[256], path[512];
    make_temp_dir(dir, sizeof dir, "kd");
    snprintf(path, sizeof path, "%s/kd.h5", dir);
    write_kd(path);
    Dataset ds;
    cr_assert_eq(dataset_open(&ds, path), 0, "%s", err_msg());
    cr_expect_eq(ds.schema, SCHEMA_KD);
    cr_expect_eq(ds.n_docs, 3);
    cr_expect_eq(ds.n_tokens, 12);
    cr_expect_eq(ds.loss_mask[4], 0);
    cr_expect_eq(ds.loss_mask[5], 1);
    cr_assert_eq(ds.n_tasks, 2);
    cr_expect_str_eq(ds.task_names[1], "sum");
    cr_expect_eq(ds.task[0], 0);
    cr_expect_eq(ds.task[1], 1);
    cr_assert_eq(ds.topk, 2);
    cr_expect_eq(ds.topk_ids[4 * 2 + 1], 8u, "example 1, token 0, second id");
    cr_expect_float_eq(ds.topk_logp[4 * 2 + 1], -0.25f * 3, 1e-7);
    cr_assert_eq(ds.n_cand, 3);
    cr_expect_eq(ds.cand_example[2], 2);
    cr_expect_eq(ds.cand_offsets[2], 3);
    cr_expect_eq(ds.cand_tokens[2], 9u);
    cr_expect_float_eq(ds.cand_score[0], -0.75, 1e-12);
    /* the loader's teacher rows line up with its inputs */
    int ids[5 * 2];
    float lp[5 * 2];
    dataset_topk_row(&ds, 1, 5, ids, lp);
    cr_expect_eq(ids[0], 10 + 0);
    cr_expect_eq(ids[3 * 2 + 1], 8);
    cr_expect_eq(ids[4 * 2], 0, "past the example: id 0");
    cr_expect_float_eq(lp[4 * 2 + 1], 0.0f, 0, "past the example: logp 0");
    dataset_close(&ds);
    rm_rf(dir);
}

Test(kd, writer_refuses_inconsistent_input) {
    char dir[256], path[512];
    make_temp_dir(dir, sizeof dir, "kdbad");
    snprintf(path, sizeof path, "%s/kd.h5", dir);
    DatasetWriter *w = dataset_writer_open(path, SCHEMA_KD, 50, 49, 49, "test");
    cr_assert_not_null(w);
    cr_expect_eq(dataset_writer_set_topk(w, 51), -1, "K above the vocabulary");
    cr_assert_eq(dataset_writer_set_topk(w, 1), 0, "%s", err_msg());
    uint32_t t[2] = {1, 49}, id = 3, bad = 50;
    uint8_t m[2] = {0, 1};
    float lp = -0.5f, pos = 0.5f;
    cr_assert_eq(dataset_writer_append(w, t, m, 2), 0);
    cr_expect_eq(dataset_writer_append_topk(w, &bad, &lp, 1), -1, "id >= vocab");
    cr_expect_eq(dataset_writer_append_topk(w, &id, &pos, 1), -1, "positive log-prob");
    cr_assert_eq(dataset_writer_append_topk(w, &id, &lp, 1), 0);
    cr_expect_eq(dataset_writer_end_doc(w, -1), -1, "one top-k row short");
    cr_expect(strstr(err_msg(), "top-k rows"), "%s", err_msg());
    cr_assert_eq(dataset_writer_append_topk(w, &id, &lp, 1), 0);
    cr_assert_eq(dataset_writer_end_doc(w, -1), 0, "%s", err_msg());
    cr_assert_eq(dataset_writer_add_candidate(w, 4, t, 1, -1, -1), 0);
    cr_expect_eq(dataset_writer_add_candidate(w, 3, t, 1, -1, -1), -1, "out of example order");
    cr_expect_eq(dataset_writer_close(w), -1, "candidate for example 4 of 1");
    cr_expect(strstr(err_msg(), "example 4"), "%s", err_msg());
    cr_expect(access(path, F_OK) != 0, "nothing is left behind");
    /* sft files take tasks but not teacher rows */
    w = dataset_writer_open(path, SCHEMA_SFT, 50, 49, 49, "test");
    cr_expect_eq(dataset_writer_set_topk(w, 2), -1);
    dataset_writer_abort(w);
    rm_rf(dir);
}

/* Overwrites element [row][col] of the 2-D dataset `name` of path. */
static void poke(const char *path, const char *name, hid_t memtype, int64_t row, int col,
                 const void *value) {
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert(f >= 0, "cannot open %s", path);
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    cr_assert(d >= 0, "no %s in %s", name, path);
    hid_t fs = H5Dget_space(d);
    hsize_t start[2] = {(hsize_t)row, (hsize_t)col}, count[2] = {1, 1};
    hid_t ms = H5Screate_simple(2, count, NULL);
    cr_assert(H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) >= 0);
    cr_assert(H5Dwrite(d, memtype, ms, fs, H5P_DEFAULT, value) >= 0);
    H5Sclose(ms);
    H5Sclose(fs);
    H5Dclose(d);
    H5Fclose(f);
}

/* Replaces the 2-D dataset `name` of path with a (rows, cols) one. */
static void replace_matrix(const char *path, const char *name, hid_t filetype, hid_t memtype,
                           int64_t rows, int cols, const void *data) {
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert(f >= 0);
    cr_assert(H5Ldelete(f, name, H5P_DEFAULT) >= 0);
    hsize_t dims[2] = {(hsize_t)rows, (hsize_t)cols};
    hid_t s = H5Screate_simple(2, dims, NULL);
    hid_t d = H5Dcreate2(f, name, filetype, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(d >= 0 && H5Dwrite(d, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
    H5Dclose(d);
    H5Sclose(s);
    H5Fclose(f);
}

/* dataset_open (which training uses) and `data validate` both refuse path,
 * with a message holding each needle. */
static void assert_kd_refused(const char *path, const char *const *needles) {
    Dataset ds;
    err_clear();
    cr_assert_eq(dataset_open(&ds, path), -1, "%s was accepted", path);
    assert_contains(err_msg(), path);
    for (const char *const *n = needles; *n; n++) assert_contains(err_msg(), *n);
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    err_clear();
    cr_assert_eq(data_validate_to(f, path), -1, "data validate passed %s", path);
    fclose(f);
    free(out);
    for (const char *const *n = needles; *n; n++) assert_contains(err_msg(), *n);
}
#define KD_REFUSED(path, ...) assert_kd_refused(path, (const char *const[]){__VA_ARGS__, NULL})

/* Teacher rows the KD term cannot use: a repeated id in a row (at 1df6ed0
 * `data validate` passed it and training died on an assert in the top-K
 * kernel), ids past the vocabulary, log-probs that are NaN, infinite or
 * positive, and K wider than the vocabulary. Row 5 is example 1's second
 * token: ids {12, 8}. */
Test(kd, reader_refuses_bad_teacher_rows) {
    char dir[256], path[512];
    make_temp_dir(dir, sizeof dir, "kdrows");
    snprintf(path, sizeof path, "%s/kd.h5", dir);
    uint32_t twelve = 12, fifty = 50;
    write_kd(path);
    poke(path, "teacher_topk_ids", H5T_NATIVE_UINT32, 5, 1, &twelve);
    KD_REFUSED(path, "'teacher_topk_ids'", "row 5", "id 12 appears twice", "columns 0 and 1");

    write_kd(path);
    poke(path, "teacher_topk_ids", H5T_NATIVE_UINT32, 5, 1, &fifty);
    KD_REFUSED(path, "'teacher_topk_ids'", "row 5", "id 50 is outside [0, vocab_size=50)");

    const float bad[4] = {NAN, INFINITY, -INFINITY, 0.5f};
    const char *shown[4] = {"nan", "inf", "-inf", "0.5"};
    for (int i = 0; i < 4; i++) {
        write_kd(path);
        poke(path, "teacher_topk_logp", H5T_NATIVE_FLOAT, 5, 0, &bad[i]);
        KD_REFUSED(path, "'teacher_topk_logp'", "row 5", "column 0 (id 12)", shown[i],
                   "not a log-probability");
    }
    /* a float log-softmax's rounding just above 0 passes */
    write_kd(path);
    float rounded = 5e-7f;
    poke(path, "teacher_topk_logp", H5T_NATIVE_FLOAT, 5, 0, &rounded);
    Dataset ds;
    cr_assert_eq(dataset_open(&ds, path), 0, "%s", err_msg());
    dataset_close(&ds);

    /* K = 51 distinct ids per row in a vocabulary of 50 */
    write_kd(path);
    enum { ROWS = 12, WIDE = 51 };
    static uint32_t ids[ROWS * WIDE];
    static float lp[ROWS * WIDE];
    for (int i = 0; i < ROWS * WIDE; i++) {
        ids[i] = (uint32_t)(i % WIDE);
        lp[i] = -10.0f;
    }
    replace_matrix(path, "teacher_topk_ids", H5T_STD_U16LE, H5T_NATIVE_UINT32, ROWS, WIDE, ids);
    replace_matrix(path, "teacher_topk_logp", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, ROWS, WIDE, lp);
    KD_REFUSED(path, "K=51 columns, more than vocab_size 50");
    rm_rf(dir);
}

/* The writer refuses the same rows before they reach a file. */
Test(kd, writer_refuses_repeated_ids_and_infinite_log_probs) {
    char dir[256], path[512];
    make_temp_dir(dir, sizeof dir, "kdwrows");
    snprintf(path, sizeof path, "%s/kd.h5", dir);
    DatasetWriter *w = dataset_writer_open(path, SCHEMA_KD, 50, 49, 49, "test");
    cr_assert_not_null(w, "%s", err_msg());
    cr_assert_eq(dataset_writer_set_topk(w, 2), 0, "%s", err_msg());
    uint32_t t[2] = {1, 49}, twice[4] = {3, 4, 5, 5}, fine[4] = {3, 4, 5, 3};
    uint8_t m[2] = {0, 1};
    float lp[4] = {-1, -2, -1, -2}, minf[4] = {-1, -2, -INFINITY, -2};
    cr_assert_eq(dataset_writer_append(w, t, m, 2), 0, "%s", err_msg());
    err_clear();
    cr_assert_eq(dataset_writer_append_topk(w, twice, lp, 2), -1, "id 5 twice in row 1");
    assert_contains(err_msg(), "id 5 appears twice in the row of token 1");
    err_clear();
    cr_assert_eq(dataset_writer_append_topk(w, fine, minf, 2), -1, "a -inf log-prob");
    assert_contains(err_msg(), "-inf");
    cr_assert_eq(dataset_writer_append_topk(w, fine, lp, 2), 0, "%s", err_msg());
    cr_assert_eq(dataset_writer_end_doc(w, -1), 0, "%s", err_msg());
    cr_assert_eq(dataset_writer_close(w), 0, "%s", err_msg());
    rm_rf(dir);
}

/* The same repeated id stops training at set-up with the reader's message,
 * not an assert mid-run. */
Test(kd, training_refuses_a_repeated_teacher_id_at_set_up) {
    char dir[256], path[512], out[512];
    make_temp_dir(dir, sizeof dir, "kdtrain");
    snprintf(path, sizeof path, "%s/kd.h5", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    write_kd(path);
    Config c;
    tiny_train_config(&c, path, out);
    c.model.vocab_size = 50;
    snprintf(c.objective.type, sizeof c.objective.type, "kd");
    c.data.seq_len = 3;
    c.train.steps = 2;
    c.optim.warmup_steps = 0;
    c.checkpoint.every = 0;
    TrainOptions o = {0, 1};
    cr_assert_eq(train_run(&c, &o), 0, "the good file trains: %s", err_msg());
    rm_rf(out);
    uint32_t twelve = 12;
    poke(path, "teacher_topk_ids", H5T_NATIVE_UINT32, 5, 1, &twelve);
    err_clear();
    cr_assert_eq(train_run(&c, &o), -1, "training accepted a repeated teacher id");
    assert_contains(err_msg(), path);
    assert_contains(err_msg(), "id 12 appears twice");
    rm_rf(dir);
}

/* Runs a small Python program on path; 0 = it passed, 77 = no h5py. */
static int run_python(const char *program, const char *path) {
    pid_t pid = fork();
    if (pid == 0) {
        /* the system Python first: that is where `make deps` puts h5py */
        execl("/usr/bin/python3", "python3", "-c", program, path, (char *)NULL);
        execlp("python3", "python3", "-c", program, path, (char *)NULL);
        _exit(77);
    }
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

Test(kd, h5py_reads_the_arrays_we_wrote) {
    char dir[256], path[512];
    make_temp_dir(dir, sizeof dir, "kdpy");
    snprintf(path, sizeof path, "%s/kd.h5", dir);
    write_kd(path);
    static const char program[] =
        "import sys\n"
        "try:\n"
        "    import h5py, numpy as np\n"
        "except ImportError:\n"
        "    sys.exit(77)\n"
        "f = h5py.File(sys.argv[1], 'r')\n"
        "a = f.attrs\n"
        "assert a['schema'] in (b'kd', 'kd'), a['schema']\n"
        "assert int(a['vocab_size']) == 50 and int(a['eos_id']) == 49\n"
        "assert f['tokens'].dtype == np.uint16 and f['offsets'].dtype == np.int64\n"
        "assert list(f['offsets'][:]) == [0, 4, 8, 12]\n"
        "assert list(f['tokens'][4:8]) == [2, 3, 4, 49]\n"
        "assert list(f['loss_mask'][0:4]) == [0, 1, 1, 1]\n"
        "assert list(f['task'][:]) == [0, 1, 0]\n"
        "assert [t.decode() if isinstance(t, bytes) else t for t in a['tasks']] == ['qa', 'sum']\n"
        "ids, lp = f['teacher_topk_ids'], f['teacher_topk_logp']\n"
        "assert ids.shape == (12, 2) and lp.shape == (12, 2) and lp.dtype == np.float32\n"
        "assert ids[4, 1] == 8 and abs(lp[4, 1] + 0.75) < 1e-7\n"
        "c = f['candidates']\n"
        "assert list(c['offsets'][:]) == [0, 2, 3, 3] and list(c['example'][:]) == [0, 0, 2]\n"
        "assert list(c['tokens'][:]) == [3, 4, 9] and c['score'][0] == -0.75\n"
        "print('h5py: ok')\n";
    int rc = run_python(program, path);
    if (rc == 77) {
        fprintf(stderr, "SKIP: python3 with h5py is not installed (make deps installs it)\n");
        rm_rf(dir);
        cr_skip_test();
    }
    cr_expect_eq(rc, 0, "the Python check failed (see its output above)");
    rm_rf(dir);
}

/* ------------------------------------------------------------- generation */

static GPT *byte_model(uint64_t seed) {
    GPTConfig cfg = {.n_layer = 2, .n_head = 4, .n_embd = 64, .vocab_size = 257, .n_positions = 48,
                     .layer_norm_epsilon = 1e-5f, .vocab_pad = 0};
    return perturbed_cpu_model(&cfg, seed, seed + 1, 0.1);
}

Test(generate_batch, rows_equal_one_at_a_time_with_the_same_generators) {
    GPT *m = byte_model(11);
    int prompt[4] = {'a', 'b', 'c', 'd'}, rows = 3, max_new = 12;
    for (int greedy = 0; greedy < 2; greedy++) {
        SampleOptions o = {max_new, greedy ? 0.0 : 1.0, 0, 1.0, 256, NULL, NULL};
        Rng rngs[3], again[3];
        for (int r = 0; r < rows; r++) {
            rng_seed(&rngs[r], 100 + r);
            rng_seed(&again[r], 100 + r);
        }
        int out[3 * 12], lens[3];
        double logps[3];
        generate_sample_rows(m, prompt, 4, rows, &o, rngs, out, lens, logps);
        for (int r = 0; r < rows; r++) {
            int one[4 + 12];
            memcpy(one, prompt, sizeof prompt);
            int n = generate_sample(m, one, 4, &o, &again[r]);
            cr_expect_eq(lens[r], n - 4, "row %d (greedy %d): %d vs %d tokens", r, greedy,
                         lens[r], n - 4);
            for (int j = 0; j < lens[r] && j < n - 4; j++)
                cr_expect_eq(out[r * max_new + j], one[4 + j], "row %d token %d", r, j);
            cr_expect(logps[r] < 0 && isfinite(logps[r]));
        }
        if (greedy) /* identical rows */
            cr_expect_eq(memcmp(out, out + max_new, (size_t)lens[0] * sizeof(int)), 0);
    }
    gpt_free(m);
}

static GenerateJob base_job(const char *in, const char *out) {
    GenerateJob job = {0};
    job.input = in;
    job.output = out;
    job.sample = (SampleOptions){8, 0.0, 0, 1.0, 256, NULL, NULL};
    job.samples = 1;
    job.length_penalty = 1.0;
    job.seed = 5;
    job.quiet = 1;
    return job;
}

Test(generate_io, stop_strings_cut_text_and_tokens) {
    GPT *m = byte_model(12);
    Tokenizer *tok = tokenizer_bytes();
    char dir[256], in[512], out[512];
    make_temp_dir(dir, sizeof dir, "stop");
    snprintf(in, sizeof in, "%s/p.jsonl", dir);
    snprintf(out, sizeof out, "%s/o.jsonl", dir);
    write_text(in, "{\"prompt\": \"xy\"}\n");
    GenerateJob job = base_job(in, out);
    job.sample.eos_id = -1; /* 8 tokens exactly */
    cr_assert_eq(generate_jsonl(m, tok, &job, NULL), 0, "%s", err_msg());
    json_error_t e;
    json_t *l = json_load_file(out, JSON_DISABLE_EOF_CHECK, &e);
    cr_assert(l, "%s", e.text);
    char full[64];
    snprintf(full, sizeof full, "%s",
             json_string_value(json_array_get(json_object_get(l, "completions"), 0)));
    json_decref(l);
    cr_assert_gt(strlen(full), 4u, "the byte model produced '%s'", full);
    /* stop at the two bytes starting at offset 3 of the free-running text */
    char stop[3] = {full[3], full[4], 0};
    job.stop[0] = stop;
    job.n_stop = 1;
    cr_assert_eq(generate_jsonl(m, tok, &job, NULL), 0, "%s", err_msg());
    l = json_load_file(out, JSON_DISABLE_EOF_CHECK, &e);
    const char *cut = json_string_value(json_array_get(json_object_get(l, "completions"), 0));
    const char *first = strstr(full, stop);
    cr_assert(first);
    cr_expect_eq(strlen(cut), (size_t)(first - full), "'%s' cut at '%s' gave '%s'", full, stop,
                 cut);
    cr_expect_eq(strncmp(cut, full, strlen(cut)), 0);
    json_decref(l);
    tokenizer_free(tok);
    gpt_free(m);
    rm_rf(dir);
}

Test(generate_io, kd_dataset_with_topk_candidates_and_selection) {
    GPT *m = byte_model(13);
    Tokenizer *tok = tokenizer_bytes();
    char dir[256], in[512], out[512];
    make_temp_dir(dir, sizeof dir, "kdgen");
    snprintf(in, sizeof in, "%s/p.jsonl", dir);
    snprintf(out, sizeof out, "%s/kd.h5", dir);
    write_text(in, "{\"prompt\": \"abc\", \"gold\": \"xyz\"}\n"
                      "{\"prompt\": \"hello\", \"gold\": \"world\"}\n");
    GenerateJob job = base_job(in, out);
    job.sample.temperature = 1.0;
    job.samples = 3;
    job.select = SELECT_ALL;
    job.store_topk = 4;
    GenerateStats st;
    cr_assert_eq(generate_jsonl(m, tok, &job, &st), 0, "%s", err_msg());
    Dataset ds;
    cr_assert_eq(dataset_open(&ds, out), 0, "%s", err_msg());
    cr_expect_eq(ds.schema, SCHEMA_KD);
    cr_expect_eq(ds.n_docs, 6, "select all: one example per completion");
    cr_expect_eq(ds.n_cand, 6);
    cr_expect_eq(ds.cand_example[3], 3, "prompt 2's candidates point at its first example");
    cr_assert_eq(ds.topk, 4);
    /* example 0: "abc" (mask 0) + candidate 0 + EOS (mask 1) */
    int64_t a = ds.offsets[0], len = ds.offsets[1] - a;
    cr_expect_eq(ds.tokens[a], (uint32_t)'a');
    cr_expect_eq(ds.loss_mask[a + 2], 0);
    cr_expect_eq(ds.loss_mask[a + 3], 1);
    cr_expect_eq(ds.tokens[a + len - 1], 256u, "ends with EOS");
    cr_expect_eq(ds.cand_offsets[1] - ds.cand_offsets[0], len - 4, "candidate = completion");
    for (int64_t j = 0; j < len - 4; j++)
        cr_expect_eq(ds.cand_tokens[j], ds.tokens[a + 3 + j]);
    /* the stored top-1 log-prob equals the classifier's log p of that id */
    int T = (int)len, in_ids[64], tg[64];
    float lp[64];
    for (int j = 0; j < T; j++) {
        in_ids[j] = (int)ds.tokens[a + j];
        tg[j] = (int)ds.topk_ids[(a + j) * 4];
    }
    gpt_forward(m, in_ids, tg, 1, T, lp);
    for (int j = 0; j < T; j++) {
        cr_expect(fabsf(lp[j] - ds.topk_logp[(a + j) * 4]) < 1e-5f, "position %d: %g vs %g", j,
                  lp[j], ds.topk_logp[(a + j) * 4]);
        for (int k = 1; k < 4; k++)
            cr_expect(ds.topk_logp[(a + j) * 4 + k] <= ds.topk_logp[(a + j) * 4 + k - 1],
                      "best first");
    }
    dataset_close(&ds);

    /* best + gold: two examples per prompt, the second is the gold target */
    job.select = SELECT_BEST;
    job.store_topk = 0;
    job.reference_field = "gold";
    job.add_gold = 1;
    cr_assert_eq(generate_jsonl(m, tok, &job, &st), 0, "%s", err_msg());
    cr_assert_eq(dataset_open(&ds, out), 0, "%s", err_msg());
    cr_expect_eq(ds.n_docs, 4);
    a = ds.offsets[1];
    cr_expect_eq(ds.offsets[2] - a, 3 + 3 + 1);
    cr_expect_eq(memcmp((uint32_t[]){'a', 'b', 'c', 'x', 'y', 'z', 256}, ds.tokens + a,
                        7 * sizeof(uint32_t)),
                 0, "gold example = prompt + gold + EOS");
    dataset_close(&ds);

    /* bleu: the chosen candidate has the highest sentence BLEU to the gold */
    job.add_gold = 0;
    job.select = SELECT_BLEU;
    job.sample.max_new_tokens = 6;
    cr_assert_eq(generate_jsonl(m, tok, &job, &st), 0, "%s", err_msg());
    cr_assert_eq(dataset_open(&ds, out), 0, "%s", err_msg());
    cr_expect_eq(ds.n_docs, 2);
    cr_expect_eq(ds.n_cand, 6);
    for (int e = 0; e < 2; e++) {
        const char *gold = e ? "world" : "xyz";
        int plen = e ? 5 : 3;
        double best = -1, chosen = -1;
        for (int64_t c = 3 * e; c < 3 * e + 3; c++) {
            char *t = tokenizer_decode(tok, ds.cand_tokens + ds.cand_offsets[c],
                                       ds.cand_offsets[c + 1] - ds.cand_offsets[c]);
            double b = bleu_sentence(t, &gold, 1);
            if (b > best) best = b;
            free(t);
        }
        int64_t s = ds.offsets[e] + plen, n = ds.offsets[e + 1] - s - 1;
        char *t = tokenizer_decode(tok, ds.tokens + s, n);
        chosen = bleu_sentence(t, &gold, 1);
        free(t);
        cr_expect_float_eq(chosen, best, 1e-12, "prompt %d: chosen BLEU %g, best %g", e, chosen,
                           best);
    }
    dataset_close(&ds);

    /* filters: every completion is "unfinished" without EOS; all dropped -> error */
    job.select = SELECT_BEST;
    job.sample.eos_id = -1;
    job.drop_unfinished = 1;
    cr_expect_eq(generate_jsonl(m, tok, &job, &st), -1);
    cr_expect(strstr(err_msg(), "no example was kept"), "%s", err_msg());
    cr_expect_eq(st.dropped_unfinished, 6, "3 samples x 2 prompts, none finished");
    cr_expect(access(out, F_OK) == 0, "the earlier file is left as it was");
    tokenizer_free(tok);
    gpt_free(m);
    rm_rf(dir);
}

Test(generate_io, kd_options_need_an_h5_output) {
    GPT *m = byte_model(14);
    Tokenizer *tok = tokenizer_bytes();
    GenerateJob job = base_job("/nonexistent.jsonl", "/tmp/x.jsonl");
    job.store_topk = 2;
    cr_expect_eq(generate_jsonl(m, tok, &job, NULL), -1);
    cr_expect(strstr(err_msg(), ".h5"), "%s", err_msg());
    job.store_topk = 0;
    job.output = "/tmp/x.h5";
    job.select = SELECT_BLEU;
    cr_expect_eq(generate_jsonl(m, tok, &job, NULL), -1);
    cr_expect(strstr(err_msg(), "--reference-field"), "%s", err_msg());
    tokenizer_free(tok);
    gpt_free(m);
}
