/* tests/test_cli_progress.c — every long command reports its progress on
 * standard error (items done of the total, rate, ETA), as plain lines when
 * standard error is a log, and nothing with -q. RETORT_PROGRESS=plain and
 * RETORT_PROGRESS_SECONDS=0 make each item write its line, so the lines are
 * deterministic up to their rates. */
#include <criterion/criterion.h>

#include <stdarg.h>

#include "model/backend.h"
#include "model/model_io.h"
#include "tests/testutil_cli.h"

static char dir[64];

/* A tiny random byte-level model, four prompts, a pref file. */
static void setup(void) {
    strcpy(dir, "/tmp/retort_cliprog_XXXXXX");
    cr_assert(mkdtemp(dir));
    char path[512];
    GPTConfig cfg = {.n_layer = 1, .n_head = 2, .n_embd = 32, .vocab_size = 257,
                     .n_positions = 64, .layer_norm_epsilon = 1e-5f};
    GPT *m = gpt_create(&cfg, backend_cpu());
    cr_assert(m, "%s", err_msg());
    gpt_init_random(m, 7);
    snprintf(path, sizeof path, "%s/model", dir);
    cr_assert_eq(mkdir_p(path), 0);
    cr_assert_eq(model_save_hf(m, path), 0, "%s", err_msg());
    gpt_free(m);
    snprintf(path, sizeof path, "%s/in.jsonl", dir);
    write_text(path, "{\"prompt\": \"ab=\", \"reference\": \"ba\", \"answer\": \"ba\", \"chosen\": \"ba\", \"rejected\": \"x\"}\n"
                     "{\"prompt\": \"cd=\", \"reference\": \"dc\", \"answer\": \"dc\", \"chosen\": \"dc\", \"rejected\": \"y\"}\n"
                     "\n"
                     "{\"prompt\": \"ef=\", \"reference\": \"fe\", \"answer\": \"fe\", \"chosen\": \"fe\", \"rejected\": \"z\"}\n"
                     "{\"prompt\": \"gh=\", \"reference\": \"hg\", \"answer\": \"hg\", \"chosen\": \"hg\", \"rejected\": \"w\"}\n");
    setenv("RETORT_PROGRESS", "plain", 1);
    setenv("RETORT_PROGRESS_SECONDS", "0", 1);
}

static void teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    (void)!system(cmd);
}

TestSuite(cli_progress, .init = setup, .fini = teardown, .timeout = 120);

/* Runs retort with the arguments; returns its log (caller frees). */
__attribute__((format(printf, 1, 2))) static char *run_log(const char *fmt, ...) {
    char args[2048], path[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(path, sizeof path, "%s/log", dir);
    remove(path);
    int rc = retort(dir, args);
    size_t n;
    char *log = read_file(path, &n);
    cr_assert(log, "no log for retort %s", args);
    cr_assert_eq(rc, 0, "retort %s failed:\n%s", args, log);
    return log;
}

static void expect_lines(const char *log, const char *const *want, int n, const char *what) {
    for (int i = 0; i < n; i++)
        cr_assert(strstr(log, want[i]), "%s: '%s' not in:\n%s", what, want[i], log);
}

static void expect_no_progress(const char *log, const char *what) {
    cr_assert(!strstr(log, "%)"), "%s -q wrote progress:\n%s", what, log);
    cr_assert(!strstr(log, "/s"), "%s -q wrote a rate:\n%s", what, log);
}

Test(cli_progress, generate_eval_and_pairs) {
    char *log = run_log("generate --model %s/model --input %s/in.jsonl --out %s/g.jsonl -n 4 -t 0",
                        dir, dir, dir);
    static const char *const gen[] = {"generate: 1/4 prompts (25%)", "generate: 3/4 prompts (75%)",
                                      "ETA", "new tokens/s"};
    expect_lines(log, gen, 4, "generate");
    free(log);
    log = run_log("generate --model %s/model --input %s/in.jsonl --out %s/g.jsonl -n 4 -t 0 -q",
                  dir, dir, dir);
    expect_no_progress(log, "generate");
    cr_assert_str_eq(log, "");
    free(log);

    log = run_log("eval --model %s/model --input %s/in.jsonl -n 4", dir, dir);
    static const char *const ev[] = {"eval: 1/4 prompts (25%)", "eval: 4/4 prompts in "};
    expect_lines(log, ev, 2, "eval");
    free(log);
    log = run_log("eval --model %s/model --input %s/in.jsonl -n 4 -q", dir, dir);
    expect_no_progress(log, "eval");
    free(log);

    log = run_log("pairs --model %s/model --input %s/in.jsonl --out %s/p.h5 -n 4 --samples 3 "
                  "--scorer gold-likelihood --gold-field answer", dir, dir, dir);
    static const char *const pr[] = {"pairs: 1/4 prompts (25%)", "pairs: 2/4 prompts (50%)"};
    expect_lines(log, pr, 2, "pairs");
    free(log);
    log = run_log("pairs --model %s/model --input %s/in.jsonl --out %s/p.h5 -n 4 --samples 3 "
                  "--scorer gold-likelihood --gold-field answer -q", dir, dir, dir);
    expect_no_progress(log, "pairs");
    free(log);
}

Test(cli_progress, data_build_and_precompute_ref) {
    char *log = run_log("data build --schema pref --input %s/in.jsonl --out %s/pref.h5", dir, dir);
    static const char *const b[] = {"data build: ", " B/", "lines, ", "pairs", " in "};
    expect_lines(log, b, 5, "data build");
    free(log);
    log = run_log("data build --schema pref --input %s/in.jsonl --out %s/pref.h5 -q", dir, dir);
    cr_assert_str_eq(log, "");
    free(log);

    log = run_log("dpo precompute-ref --model %s/model --data %s/pref.h5 --seq-len 16", dir, dir);
    static const char *const d[] = {"dpo precompute-ref: 4/4 pairs in "};
    expect_lines(log, d, 1, "dpo precompute-ref");
    free(log);
    log = run_log("dpo precompute-ref --model %s/model --data %s/pref.h5 --seq-len 16 -q", dir, dir);
    cr_assert_str_eq(log, "");
    free(log);
}
