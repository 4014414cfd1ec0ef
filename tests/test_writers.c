/* tests/test_writers.c — writers never lose data. Every command that writes a
 * file (data build, generate --out .h5 and .jsonl, pairs --out, dpo
 * precompute-ref, tokenizer train) runs as a child process of the binary of
 * this build (RETORT_BIN) under a file-size limit: RLIMIT_FSIZE with SIGXFSZ
 * ignored, so a write past the limit fails with EFBIG as a write to a full
 * disk fails with ENOSPC — deterministic, and without root or a small mount.
 * Each run must end with an error (exit status non-zero and below 128: at
 * 1df6ed0 generate and pairs crashed in HDF5's clean-up at exit), a message
 * that names the output and the disk space it needs, the previous good file
 * at the target byte for byte, and no .tmp left. The limits fall early in the
 * write, half way, and just short of the finished file, where the failure
 * shows only when the last chunks and metadata are flushed and closed (at
 * 1df6ed0 an unchecked H5Dclose let data build exit 0 there and rename a file
 * with zero-filled holes over the good one). */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "data/h5data.h"
#include "model/model_io.h"
#include "tests/testutil.h"

/* ---------------------------------------------------------------- helpers */

static const char *bin(void) {
    return getenv("RETORT_BIN") ? getenv("RETORT_BIN") : "./retort";
}

/* Runs `retort argv...` with stdout and stderr into log and files limited to
 * `limit` bytes (RLIM_INFINITY: none). Returns the exit status, or 128 + the
 * signal that killed it. */
static int run_limited(const char *log, rlim_t limit, char *const *argv) {
    char *args[32];
    int n = 0;
    args[n++] = "retort";
    for (; *argv; argv++) args[n++] = *argv;
    args[n] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0, "fork failed");
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) _exit(126);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        close(fd);
        signal(SIGXFSZ, SIG_IGN); /* a write past the limit fails with EFBIG instead */
        struct rlimit rl = {limit, limit};
        if (setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(126);
        execv(bin(), args);
        _exit(127);
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static char *slurp(const char *path, size_t *len) {
    char *text = read_file(path, len);
    cr_assert_not_null(text, "%s", err_msg());
    return text;
}

static int64_t size_of(const char *path) {
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "no file %s", path);
    return (int64_t)st.st_size;
}

static void copy_to(const char *from, const char *to) {
    size_t n;
    char *data = slurp(from, &n);
    write_bytes(to, data, n);
    free(data);
}

/* The command succeeds without a limit. */
static void run_ok(const char *dir, char *const *argv) {
    char log[512];
    snprintf(log, sizeof log, "%s/ok.log", dir);
    int rc = run_limited(log, RLIM_INFINITY, argv);
    if (rc != 0) {
        size_t n;
        char *text = slurp(log, &n);
        cr_assert_fail("retort %s %s exited with %d: %s", argv[0], argv[1], rc, text);
    }
}

/* Puts `good` at `target`, runs argv (which writes target) under each limit,
 * and checks the refusal: an error exit below 128, a message naming target
 * and the disk space, target still byte for byte `good`, no target.tmp. */
static void assert_never_lost(const char *dir, const char *target, const char *good,
                              const rlim_t *limits, int n_limits, char *const *argv) {
    char log[512], tmp[600];
    snprintf(log, sizeof log, "%s/limited.log", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", target);
    size_t good_len;
    char *want = slurp(good, &good_len);
    for (int i = 0; i < n_limits; i++) {
        copy_to(good, target);
        int rc = run_limited(log, limits[i], argv);
        size_t n;
        char *text = slurp(log, &n);
        cr_assert(rc > 0 && rc < 128, "retort %s %s, files limited to %llu bytes: exit status %d "
                  "(0: it claimed success; >= 128: it crashed): %s",
                  argv[0], argv[1], (unsigned long long)limits[i], rc, text);
        assert_contains(text, target);
        assert_contains(text, "disk space");
        assert_contains(text, "is left as it was");
        /* and no summary line claims the file was written ("... -> FILE") */
        char claim[600];
        snprintf(claim, sizeof claim, "-> %s", target);
        cr_assert(!strstr(text, claim), "limit %llu: a failed run still says it wrote: %s",
                  (unsigned long long)limits[i], text);
        size_t got_len;
        char *got = slurp(target, &got_len);
        cr_assert(got_len == good_len && memcmp(got, want, good_len) == 0,
                  "limit %llu: %s changed (%zu bytes, was %zu)", (unsigned long long)limits[i],
                  target, got_len, good_len);
        cr_assert(!path_exists(tmp), "limit %llu: %s was left behind",
                  (unsigned long long)limits[i], tmp);
        free(got);
        free(text);
    }
    free(want);
}

/* Limits early, half way and just short of a finished file of `size` bytes. */
static int limits_for(int64_t size, rlim_t *out) {
    out[0] = 8192;
    out[1] = (rlim_t)size / 2;
    out[2] = (rlim_t)size - 4096;
    out[3] = (rlim_t)size - 1;
    return 4;
}

/* Plain text of `words` words from a small alphabet, deterministic. */
static void write_words(const char *path, int words, uint64_t seed) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    Rng r;
    rng_seed(&r, seed);
    for (int i = 0; i < words; i++)
        fprintf(f, "%s%c", (const char *[]){"alpha", "beta", "gamma", "delta"}[rng_below(&r, 4)],
                i % 12 == 11 ? '\n' : ' ');
    fclose(f);
}

/* completions + external scores for `pairs --read-completions`. */
static void write_completions(const char *gen, const char *scores, int lines) {
    FILE *g = fopen(gen, "w"), *s = fopen(scores, "w");
    cr_assert(g && s);
    for (int i = 0; i < lines; i++) {
        fprintf(g, "{\"prompt\": \"q%d=\", \"completions\": [\"right answer %d\", "
                   "\"a wrong answer number %d\"]}\n", i, i, i);
        fprintf(s, "{\"scores\": [1, 0]}\n");
    }
    fclose(g);
    fclose(s);
}

static void write_prompts(const char *path, int lines) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    for (int i = 0; i < lines; i++) fprintf(f, "{\"prompt\": \"prompt number %d =\"}\n", i);
    fclose(f);
}

/* A random byte-vocabulary model in Hugging Face form at dir/model. */
static void write_model(const char *dir, char *model, size_t cap) {
    snprintf(model, cap, "%s/model", dir);
    GPTConfig cfg = {.n_layer = 1, .n_head = 2, .n_embd = 16, .vocab_size = 257, .n_positions = 32,
                     .layer_norm_epsilon = 1e-5f, .vocab_pad = 0};
    GPT *m = random_cpu_model(&cfg, 5);
    cr_assert_eq(mkdir_p(model), 0, "%s", err_msg());
    cr_assert_eq(model_save_hf(m, model), 0, "%s", err_msg());
    gpt_free(m);
}

#define ARGV(...) ((char *const[]){__VA_ARGS__, NULL})

/* ----------------------------------------------------------------- writers */

Test(writers, data_build_keeps_the_old_file, .timeout = 120) {
    char dir[256], big[512], small[512], target[512], good[512], fresh[512];
    make_temp_dir(dir, sizeof dir, "wbuild");
    snprintf(big, sizeof big, "%s/big.txt", dir);
    snprintf(small, sizeof small, "%s/small.txt", dir);
    snprintf(target, sizeof target, "%s/data.h5", dir);
    snprintf(good, sizeof good, "%s/good.h5", dir);
    snprintf(fresh, sizeof fresh, "%s/fresh.h5", dir);
    write_words(big, 120000, 1); /* ~700 KB of text, ~1.4 MB of uint16 tokens */
    write_words(small, 200, 2);
    run_ok(dir, ARGV("data", "build", "--input", small, "--out", good, "-q"));
    run_ok(dir, ARGV("data", "build", "--input", big, "--out", fresh, "-q"));
    rlim_t limits[4];
    int n = limits_for(size_of(fresh), limits);
    assert_never_lost(dir, target, good, limits, n,
                      ARGV("data", "build", "--input", big, "--out", target, "-q"));
    /* and without a limit the build replaces the old file */
    run_ok(dir, ARGV("data", "build", "--input", big, "--out", target, "-q"));
    Dataset ds;
    cr_assert_eq(dataset_open(&ds, target), 0, "%s", err_msg());
    cr_assert_gt(ds.n_tokens, 600000);
    dataset_close(&ds);
    rm_rf(dir);
}

Test(writers, pairs_out_keeps_the_old_file, .timeout = 120) {
    char dir[256], gen[512], scores[512], gen_small[512], scores_small[512], target[512],
        good[512], fresh[512];
    make_temp_dir(dir, sizeof dir, "wpairs");
    snprintf(gen, sizeof gen, "%s/gen.jsonl", dir);
    snprintf(scores, sizeof scores, "%s/scores.jsonl", dir);
    snprintf(gen_small, sizeof gen_small, "%s/gen_small.jsonl", dir);
    snprintf(scores_small, sizeof scores_small, "%s/scores_small.jsonl", dir);
    snprintf(target, sizeof target, "%s/pairs.h5", dir);
    snprintf(good, sizeof good, "%s/good.h5", dir);
    snprintf(fresh, sizeof fresh, "%s/fresh.h5", dir);
    write_completions(gen, scores, 6000);
    write_completions(gen_small, scores_small, 5);
#define PAIRS(in, sc, out)                                                                  \
    ARGV("pairs", "--read-completions", "--input", in, "--scorer", "external", "--scores", sc, \
         "--out", out, "--tokenizer", "bytes")
    run_ok(dir, PAIRS(gen_small, scores_small, good));
    run_ok(dir, PAIRS(gen, scores, fresh));
    rlim_t limits[4];
    int n = limits_for(size_of(fresh), limits);
    assert_never_lost(dir, target, good, limits, n, PAIRS(gen, scores, target));
#undef PAIRS
    rm_rf(dir);
}

/* generate --out X.h5: a kd dataset with the teacher's top-K. */
Test(writers, generate_kd_out_keeps_the_old_file, .timeout = 120) {
    char dir[256], model[512], prompts[512], few[512], target[512], good[512], fresh[512];
    make_temp_dir(dir, sizeof dir, "wgenkd");
    write_model(dir, model, sizeof model);
    snprintf(prompts, sizeof prompts, "%s/prompts.jsonl", dir);
    snprintf(few, sizeof few, "%s/few.jsonl", dir);
    write_prompts(prompts, 300);
    write_prompts(few, 2);
    snprintf(target, sizeof target, "%s/kd.h5", dir);
    snprintf(good, sizeof good, "%s/good.h5", dir);
    snprintf(fresh, sizeof fresh, "%s/fresh.h5", dir);
#define GENERATE(in, out)                                                                     \
    ARGV("generate", "--model", model, "--tokenizer", "bytes", "--input", in, "--out", out,   \
         "-n", "6", "--store-topk", "8", "--threads", "1")
    run_ok(dir, GENERATE(few, good));
    run_ok(dir, GENERATE(prompts, fresh));
    rlim_t limits[4];
    int n = limits_for(size_of(fresh), limits);
    assert_never_lost(dir, target, good, limits, n, GENERATE(prompts, target));
#undef GENERATE
    rm_rf(dir);
}

/* generate --out X.jsonl: stdio buffers the lines, so a full disk shows at
 * the final flush, fsync or close. */
Test(writers, generate_jsonl_out_keeps_the_old_file, .timeout = 120) {
    char dir[256], model[512], prompts[512], few[512], target[512], good[512], fresh[512];
    make_temp_dir(dir, sizeof dir, "wgenjsonl");
    write_model(dir, model, sizeof model);
    snprintf(prompts, sizeof prompts, "%s/prompts.jsonl", dir);
    snprintf(few, sizeof few, "%s/few.jsonl", dir);
    write_prompts(prompts, 300);
    write_prompts(few, 2);
    snprintf(target, sizeof target, "%s/out.jsonl", dir);
    snprintf(good, sizeof good, "%s/good.jsonl", dir);
    snprintf(fresh, sizeof fresh, "%s/fresh.jsonl", dir);
#define GENERATE(in, out)                                                                     \
    ARGV("generate", "--model", model, "--tokenizer", "bytes", "--input", in, "--out", out,   \
         "-n", "6", "--threads", "1")
    run_ok(dir, GENERATE(few, good));
    run_ok(dir, GENERATE(prompts, fresh));
    rlim_t limits[2] = {(rlim_t)size_of(fresh) / 2, (rlim_t)size_of(fresh) - 1};
    assert_never_lost(dir, target, good, limits, 2, GENERATE(prompts, target));
#undef GENERATE
    rm_rf(dir);
}

/* dpo precompute-ref adds to a pref file: the file itself is the old file.
 * Limits: within the copy, just past the original size (the new datasets'
 * writes fail), and just short of the finished file. */
Test(writers, precompute_ref_keeps_the_pref_file, .timeout = 120) {
    char dir[256], model[512], gen[512], scores[512], target[512], good[512], fresh[512];
    make_temp_dir(dir, sizeof dir, "wref");
    write_model(dir, model, sizeof model);
    snprintf(gen, sizeof gen, "%s/gen.jsonl", dir);
    snprintf(scores, sizeof scores, "%s/scores.jsonl", dir);
    snprintf(target, sizeof target, "%s/pref.h5", dir);
    snprintf(good, sizeof good, "%s/pref_good.h5", dir);
    snprintf(fresh, sizeof fresh, "%s/pref_fresh.h5", dir);
    write_completions(gen, scores, 400);
    run_ok(dir, ARGV("pairs", "--read-completions", "--input", gen, "--scorer", "external",
                     "--scores", scores, "--out", good, "--tokenizer", "bytes"));
    copy_to(good, fresh);
#define PRECOMPUTE(data)                                                                      \
    ARGV("dpo", "precompute-ref", "--model", model, "--data", data, "--seq-len", "32",       \
         "--threads", "1")
    run_ok(dir, PRECOMPUTE(fresh));
    int64_t before = size_of(good), after = size_of(fresh);
    cr_assert_gt(after, before);
    rlim_t limits[3] = {(rlim_t)before / 2, (rlim_t)before + 1, (rlim_t)after - 1};
    assert_never_lost(dir, target, good, limits, 3, PRECOMPUTE(target));
#undef PRECOMPUTE
    rm_rf(dir);
}

Test(writers, tokenizer_train_keeps_the_old_file, .timeout = 120) {
    char dir[256], corpus[512], target[512], good[512], fresh[512];
    make_temp_dir(dir, sizeof dir, "wtok");
    snprintf(corpus, sizeof corpus, "%s/corpus.txt", dir);
    snprintf(target, sizeof target, "%s/tok.json", dir);
    snprintf(good, sizeof good, "%s/good.json", dir);
    snprintf(fresh, sizeof fresh, "%s/fresh.json", dir);
    write_words(corpus, 20000, 3);
    run_ok(dir, ARGV("tokenizer", "train", corpus, "--vocab-size", "260", "-o", good));
    run_ok(dir, ARGV("tokenizer", "train", corpus, "--vocab-size", "300", "-o", fresh));
    rlim_t limits[2] = {(rlim_t)size_of(fresh) / 2, (rlim_t)size_of(fresh) - 1};
    assert_never_lost(dir, target, good, limits, 2,
                      ARGV("tokenizer", "train", corpus, "--vocab-size", "300", "-o", target));
    rm_rf(dir);
}
