/* tests/test_cli_eval.c — `retort eval` and `retort generate` through the real
 * command line, for what issue 18 added:
 *   - eval --answer: accuracy against golds made from the model's own greedy
 *     outputs (so the expected share is known: the lines whose gold is the
 *     output's answer), the predictions' extracted answers, and bad specs;
 *   - eval --hypotheses: scoring generate's output without a model gives the
 *     same text metrics and accuracy as eval generating with the model; line
 *     counts that differ, missing fields and --model alongside are refused;
 *   - generate --candidates N: completion 0 is generate -t 0's output and 1..N
 *     are what --samples N draws with the same seed; --ids: the prompt's bytes
 *     and each completion's token ids, cut with the text at a stop string;
 *   - eval --data: the NLL per target token and perplexity of a tiny GPT-2 on
 *     lm, sft and kd splits at two window lengths and two batch sizes against
 *     transformers (tests/make_eval_data_fixtures.py), and the refusals.
 * Runs the binary of this build (RETORT_BIN). */
#include <criterion/criterion.h>

#include <jansson.h>
#include <math.h>
#include <stdarg.h>

#include "data/h5data.h"
#include "tests/testutil_cli.h"
#include "model/backend.h"
#include "model/model_io.h"

/* The whole log of a run in dir, as one string (caller frees). */
static char *read_log(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/log", dir);
    size_t n = 0;
    char *s = read_file(path, &n);
    cr_assert(s, "no log at %s", path);
    return s;
}

/* A tiny random byte-level model in dir/model. */
static void make_model(const char *dir) {
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
}

static json_t *load_json(const char *dir, const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    cr_assert(j, "%s: %s", path, e.text);
    return j;
}

static double num(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    cr_assert(json_is_number(v), "no number \"%s\"", key);
    return json_number_value(v);
}

/* retort with printf-formatted arguments; its exit status (output in dir/log). */
__attribute__((format(printf, 2, 3))) static int retortf(const char *dir, const char *fmt, ...) {
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    return retort(dir, args);
}

static const char *const PROMPTS[4] = {"abc=", "cab=", "bca=", "aab="};

/* generate's greedy completions of PROMPTS (written to dir/prompts.jsonl with
 * reference "x") into dir/gen.jsonl; texts[i] gets a copy. */
static void greedy_outputs(const char *dir, char *texts[4]) {
    char path[512];
    snprintf(path, sizeof path, "%s/prompts.jsonl", dir);
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 4; i++) fprintf(f, "{\"prompt\": \"%s\", \"reference\": \"x\"}\n", PROMPTS[i]);
    fclose(f);
    RUN(dir, "generate --model %s/model --input %s/prompts.jsonl --out %s/gen.jsonl -n 8 -t 0",
        dir, dir, dir);
    snprintf(path, sizeof path, "%s/gen.jsonl", dir);
    json_t *lines = jsonl_lines(path);
    cr_assert_eq(json_array_size(lines), 4);
    for (int i = 0; i < 4; i++) {
        json_t *c = json_object_get(json_array_get(lines, i), "completions");
        cr_assert(json_string_value(json_array_get(c, 0)));
        texts[i] = strdup(json_string_value(json_array_get(c, 0)));
    }
    json_decref(lines);
}

/* dir/name with PROMPTS, references refs[i] and golds golds[i]. */
static void write_eval_input(const char *dir, const char *name, char *const refs[4],
                             const char *const golds[4]) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 4; i++) {
        json_t *o = json_pack("{s:s, s:s, s:s}", "prompt", PROMPTS[i], "reference", refs[i],
                              "gold", golds[i]);
        char *s = json_dumps(o, JSON_COMPACT);
        fprintf(f, "%s\n", s);
        free(s);
        json_decref(o);
    }
    fclose(f);
}

Test(cli_eval, answer_accuracy_counts_the_golds_made_right, .timeout = 120) {
    char dir[256];
    make_temp_dir(dir, sizeof dir, "cli-eval-acc");
    make_model(dir);
    char *out[4];
    greedy_outputs(dir, out);
    /* whole: golds 0 and 2 are the outputs themselves (padded with spaces,
     * which the spec strips), 1 and 3 are not */
    char *g[4];
    for (int i = 0; i < 4; i++) {
        g[i] = malloc(strlen(out[i]) + 8);
        sprintf(g[i], i % 2 == 0 ? "  %s " : "%s#no", out[i]);
    }
    write_eval_input(dir, "in.jsonl", out, (const char *const *)g);
    RUN(dir, "eval --model %s/model --input %s/in.jsonl -n 8 --answer whole --answer-field gold "
             "--metrics %s/m.json --predictions %s/p.jsonl -q",
        dir, dir, dir, dir);
    json_t *m = load_json(dir, "m.json");
    cr_expect_float_eq(num(m, "accuracy"), 0.5, 1e-12);
    cr_expect_float_eq(num(m, "no_answer"), 0, 0);
    cr_expect_float_eq(num(m, "exact_match"), 1.0, 1e-12); /* references are the outputs */
    json_decref(m);
    char path[512];
    snprintf(path, sizeof path, "%s/p.jsonl", dir);
    json_t *p = jsonl_lines(path);
    for (int i = 0; i < 4; i++) {
        json_t *o = json_array_get(p, i);
        cr_expect(json_is_boolean(json_object_get(o, "correct")));
        cr_expect_eq(json_is_true(json_object_get(o, "correct")), i % 2 == 0, "line %d", i);
        char *stripped = strdup(out[i]);
        size_t n = strlen(stripped);
        while (n > 0 && strchr(" \t\n\v\f\r", stripped[n - 1])) stripped[--n] = 0;
        const char *s = stripped + strspn(stripped, " \t\n\v\f\r");
        cr_expect_str_eq(json_string_value(json_object_get(o, "extracted_answer")), s);
        free(stripped);
    }
    json_decref(p);

    /* a regex no output matches: no answers, accuracy 0 */
    RUN(dir, "eval --model %s/model --input %s/in.jsonl -n 8 --answer 'regex:ZZZ(\\d)' "
             "--metrics %s/m.json -q",
        dir, dir, dir);
    m = load_json(dir, "m.json");
    cr_expect_float_eq(num(m, "accuracy"), 0.0, 0);
    cr_expect_float_eq(num(m, "no_answer"), 4, 0);
    json_decref(m);

    /* a bad spec: usage error naming the spec and the offset */
    cr_expect_eq(retort(dir, "eval --hypotheses x.jsonl --answer 'regex:a(b'"), 2);
    char *log = read_log(dir);
    cr_expect(strstr(log, "answer spec 'regex:a(b'") && strstr(log, "offset 3"), "%s", log);
    free(log);
    for (int i = 0; i < 4; i++) {
        free(out[i]);
        free(g[i]);
    }
    rm_rf(dir);
}

Test(cli_eval, hypotheses_score_as_the_model_does, .timeout = 120) {
    char dir[256];
    make_temp_dir(dir, sizeof dir, "cli-eval-hyp");
    make_model(dir);
    char *out[4];
    greedy_outputs(dir, out);
    /* references: two outputs, two other strings; golds: option letters */
    char *refs[4] = {out[0], "b a c", out[2], "cc a"};
    const char *golds[4] = {"(A)", "B", "C", "D"};
    write_eval_input(dir, "in.jsonl", refs, golds);
    RUN(dir, "eval --model %s/model --input %s/in.jsonl -n 8 --answer option "
             "--answer-field gold --metrics %s/model.json -q",
        dir, dir, dir);
    RUN(dir, "eval --hypotheses %s/gen.jsonl --input %s/in.jsonl --answer option "
             "--answer-field gold --metrics %s/hyp.json --predictions %s/p.jsonl",
        dir, dir, dir, dir);
    json_t *a = load_json(dir, "model.json"), *b = load_json(dir, "hyp.json");
    static const char *const keys[] = {"lines", "bleu", "bleu_bp", "chrf", "exact_match",
                                       "rouge_l", "token_f1", "accuracy", "no_answer"};
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++)
        cr_expect_float_eq(num(a, keys[k]), num(b, keys[k]), 1e-12, "%s", keys[k]);
    cr_expect_float_eq(num(b, "exact_match"), 0.5, 1e-12);
    cr_expect(json_is_null(json_object_get(b, "ppl")), "no model, no perplexity");
    cr_expect(json_is_number(json_object_get(a, "ppl")));
    json_decref(a);
    json_decref(b);
    /* the predictions of --hypotheses, scored again as a file of both fields */
    RUN(dir, "eval --hypotheses %s/p.jsonl --answer option --answer-field gold "
             "--metrics %s/again.json",
        dir, dir);
    a = load_json(dir, "hyp.json");
    b = load_json(dir, "again.json");
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++)
        cr_expect_float_eq(num(a, keys[k]), num(b, keys[k]), 1e-12, "%s", keys[k]);
    json_decref(a);
    json_decref(b);

    /* refusals */
    char path[512];
    snprintf(path, sizeof path, "%s/three.jsonl", dir);
    write_text(path, "{\"prediction\": \"a\"}\n{\"prediction\": \"b\"}\n\n{\"prediction\": \"c\"}\n");
    cr_expect_eq(retortf(dir, "eval --hypotheses %s/three.jsonl --input %s/in.jsonl",
                                       dir, dir),
                 1);
    char *log = read_log(dir);
    cr_expect(strstr(log, "three.jsonl has 3 lines and") && strstr(log, "in.jsonl 4"), "%s", log);
    free(log);
    snprintf(path, sizeof path, "%s/none.jsonl", dir);
    write_text(path, "{\"reference\": \"a\", \"output\": \"a\"}\n");
    cr_expect_eq(retortf(dir, "eval --hypotheses %s/none.jsonl", dir),
                 1);
    log = read_log(dir);
    cr_expect(strstr(log, "none.jsonl:1: the line has neither \"prediction\"") &&
                  strstr(log, "--hypothesis-field"),
              "%s", log);
    free(log);
    cr_expect_eq(retortf(dir, "eval --hypotheses %s/none.jsonl --hypothesis-field output "
                                       "--metrics %s/one.json",
                                       dir, dir),
                 0);
    a = load_json(dir, "one.json");
    cr_expect_float_eq(num(a, "exact_match"), 1.0, 0);
    cr_expect(json_is_null(json_object_get(a, "accuracy")), "no --answer, no accuracy");
    json_decref(a);
    cr_expect_eq(retortf(dir, "eval --model %s/model --hypotheses %s/none.jsonl", dir,
                                       dir),
                 2);
    log = read_log(dir);
    cr_expect(strstr(log, "--hypotheses scores given outputs without a model"), "%s", log);
    free(log);
    for (int i = 0; i < 4; i++) free(out[i]);
    rm_rf(dir);
}

/* The completions of line i of a generate output (a JSON array). */
static json_t *completions_of(json_t *lines, int i, const char *key) {
    json_t *c = json_object_get(json_array_get(lines, i), key);
    cr_assert(json_is_array(c), "line %d has no \"%s\" array", i, key);
    return c;
}

Test(cli_eval, candidates_are_greedy_then_the_samples_of_samples_n, .timeout = 120) {
    char dir[256], path[512];
    make_temp_dir(dir, sizeof dir, "cli-gen-cand");
    make_model(dir);
    char *out[4];
    greedy_outputs(dir, out); /* dir/gen.jsonl: -t 0 */
    RUN(dir, "generate --model %s/model --input %s/prompts.jsonl --out %s/samples.jsonl -n 8 "
             "-t 1.2 --top-k 0 --samples 3 --seed 5",
        dir, dir, dir);
    RUN(dir, "generate --model %s/model --input %s/prompts.jsonl --out %s/pool.jsonl -n 8 "
             "-t 1.2 --top-k 0 --candidates 3 --seed 5 --ids",
        dir, dir, dir);
    snprintf(path, sizeof path, "%s/samples.jsonl", dir);
    json_t *samples = jsonl_lines(path);
    snprintf(path, sizeof path, "%s/pool.jsonl", dir);
    json_t *pool = jsonl_lines(path);
    cr_assert_eq(json_array_size(pool), 4);
    int differ = 0;
    for (int i = 0; i < 4; i++) {
        json_t *c = completions_of(pool, i, "completions"), *s = completions_of(samples, i, "completions");
        json_t *cl = completions_of(pool, i, "logps"), *sl = completions_of(samples, i, "logps");
        cr_assert_eq(json_array_size(c), 4, "greedy + 3");
        cr_expect_eq(json_integer_value(json_object_get(json_array_get(pool, i), "greedy")), 0);
        cr_expect_str_eq(json_string_value(json_array_get(c, 0)), out[i], "line %d greedy", i);
        for (int k = 0; k < 3; k++) {
            cr_expect_str_eq(json_string_value(json_array_get(c, k + 1)),
                             json_string_value(json_array_get(s, k)), "line %d sample %d", i, k);
            cr_expect_eq(json_real_value(json_array_get(cl, k + 1)),
                         json_real_value(json_array_get(sl, k)));
            differ += strcmp(json_string_value(json_array_get(c, k + 1)), out[i]) != 0;
        }
        /* --ids: the prompt's bytes, and token ids per completion */
        json_t *pid = completions_of(pool, i, "prompt_ids");
        cr_assert_eq(json_array_size(pid), strlen(PROMPTS[i]));
        for (size_t j = 0; j < strlen(PROMPTS[i]); j++)
            cr_expect_eq(json_integer_value(json_array_get(pid, j)), (unsigned char)PROMPTS[i][j]);
        json_t *ids = completions_of(pool, i, "completion_ids");
        cr_assert_eq(json_array_size(ids), 4);
        for (int k = 0; k < 4; k++) {
            json_t *a = json_array_get(ids, k);
            cr_expect_leq(json_array_size(a), 8);
            for (size_t j = 0; j < json_array_size(a); j++)
                cr_expect_lt(json_integer_value(json_array_get(a, j)), 256, "EOS is not included");
        }
        /* the greedy text is ASCII here: its ids are its bytes */
        json_t *g = json_array_get(ids, 0);
        const char *gt = json_string_value(json_array_get(c, 0));
        cr_assert_eq(json_array_size(g), strlen(gt));
        for (size_t j = 0; j < strlen(gt); j++)
            cr_expect_eq(json_integer_value(json_array_get(g, j)), (unsigned char)gt[j]);
    }
    cr_expect_gt(differ, 0, "samples at temperature 1.2 differ from the greedy output");
    json_decref(samples);
    json_decref(pool);

    /* a stop string cuts the ids with the text */
    const char *stop = "n";
    RUN(dir, "generate --model %s/model --input %s/prompts.jsonl --out %s/stop.jsonl -n 8 -t 0 "
             "--ids --stop '%s'",
        dir, dir, dir, stop);
    snprintf(path, sizeof path, "%s/stop.jsonl", dir);
    json_t *st = jsonl_lines(path);
    for (int i = 0; i < 4; i++) {
        const char *cut = strstr(out[i], stop);
        size_t want = cut ? (size_t)(cut - out[i]) : strlen(out[i]);
        const char *t = json_string_value(json_array_get(completions_of(st, i, "completions"), 0));
        cr_expect_eq(strlen(t), want, "'%s' cut at '%s'", out[i], stop);
        cr_expect_eq(json_array_size(json_array_get(completions_of(st, i, "completion_ids"), 0)),
                     want);
        cr_expect_null(json_object_get(json_array_get(st, i), "greedy"), "no pool, no greedy");
    }
    json_decref(st);

    /* refusals */
    cr_expect_eq(retortf(dir, "generate --model %s/model --input %s/prompts.jsonl --out %s/x.jsonl "
                              "--candidates 2 --samples 2", dir, dir, dir), 2);
    cr_expect_eq(retortf(dir, "generate --model %s/model --input %s/prompts.jsonl --out %s/x.jsonl "
                              "--candidates 2 --beams 2", dir, dir, dir), 2);
    cr_expect_eq(retortf(dir, "generate --model %s/model --prompt abc --ids", dir), 2);
    cr_expect_eq(retortf(dir, "generate --model %s/model --input %s/prompts.jsonl --out %s/x.h5 "
                              "--ids", dir, dir, dir), 1);
    char *log = read_log(dir);
    cr_expect(strstr(log, "--candidates 2 makes the greedy output plus 2 samples per prompt; drop "
                          "--samples"), "%s", log);
    cr_expect(strstr(log, "drop --beams"), "%s", log);
    cr_expect(strstr(log, "--candidates and --ids write JSONL lines"), "%s", log);
    cr_expect(strstr(log, "--ids writes token ids into a JSONL --out"), "%s", log);
    free(log);
    snprintf(path, sizeof path, "%s/x.jsonl", dir);
    cr_expect(!path_exists(path), "a refused run writes nothing");
    snprintf(path, sizeof path, "%s/x.h5", dir);
    cr_expect(!path_exists(path), "a refused run writes nothing");
    for (int i = 0; i < 4; i++) free(out[i]);
    rm_rf(dir);
}

Test(cli_eval, data_nll_matches_transformers, .timeout = 120) {
    char dir[256], path[512];
    make_temp_dir(dir, sizeof dir, "cli-eval-data");
    json_t *want = load_json("tests/fixtures/eval_data", "expected.json");
    static const char *const splits[] = {"lm", "sft", "kd"};
    static const int seq_lens[] = {16, 5}, batches[] = {1, 3};
    for (int s = 0; s < 3; s++)
        for (int t = 0; t < 2; t++)
            for (int b = 0; b < 2; b++) {
                RUN(dir, "eval --model tests/fixtures/eval_data/model --data "
                         "tests/fixtures/eval_data/%s.h5 --seq-len %d --batch %d --metrics %s/m.json",
                    splits[s], seq_lens[t], batches[b], dir);
                char key[32];
                snprintf(key, sizeof key, "%s_T%d", splits[s], seq_lens[t]);
                json_t *w = json_object_get(want, key), *got = load_json(dir, "m.json");
                cr_assert(w, "expected.json has no %s", key);
                cr_expect_eq(num(got, "tokens"), num(w, "tokens"), "%s tokens", key);
                double nll = num(got, "nll"), ref = num(w, "nll");
                cr_expect(fabs(nll - ref) <= 2e-6 * ref, "%s batch %d: NLL %.9f, transformers %.9f",
                          key, batches[b], nll, ref);
                cr_expect(fabs(num(got, "ppl") - num(w, "ppl")) <= 2e-5 * num(w, "ppl"), "%s ppl",
                          key);
                cr_expect_str_eq(json_string_value(json_object_get(got, "schema")), splits[s]);
                json_decref(got);
            }
    json_decref(want);
    /* the default window is the model's context (16) */
    RUN(dir, "eval --model tests/fixtures/eval_data/model --data tests/fixtures/eval_data/sft.h5 "
             "--metrics %s/m.json", dir);
    json_t *got = load_json(dir, "m.json");
    cr_expect_eq(num(got, "seq_len"), 16);
    json_decref(got);

    /* refusals: a window past the context, a vocabulary past the model's, a
     * pref file, a split with nothing to score, options that do not go together */
    cr_expect_eq(retortf(dir, "eval --model tests/fixtures/eval_data/model --data "
                              "tests/fixtures/eval_data/lm.h5 --seq-len 17"), 1);
    snprintf(path, sizeof path, "%s/big.h5", dir);
    DatasetWriter *w = dataset_writer_open(path, SCHEMA_LM, 300, 256, 256, "test");
    uint32_t toks[4] = {1, 299, 2, 256}, small[4] = {1, 2, 3, 256};
    cr_assert(w && dataset_writer_add(w, toks, NULL, 4, -1) == 0 && dataset_writer_close(w) == 0,
              "%s", err_msg());
    cr_expect_eq(retortf(dir, "eval --model tests/fixtures/eval_data/model --data %s", path), 1);
    snprintf(path, sizeof path, "%s/pref.h5", dir);
    PrefWriter *pw = pref_writer_open(path, 257, 256, 256, "bytes");
    cr_assert(pw && pref_writer_add(pw, small, 1, small, 2, small + 2, 2) == 0 &&
                  pref_writer_close(pw) == 0,
              "%s", err_msg());
    cr_expect_eq(retortf(dir, "eval --model tests/fixtures/eval_data/model --data %s", path), 1);
    snprintf(path, sizeof path, "%s/masked.h5", dir);
    w = dataset_writer_open(path, SCHEMA_SFT, 257, 256, 256, "bytes");
    uint8_t mask[4] = {1, 0, 0, 0};
    cr_assert(w && dataset_writer_add(w, small, mask, 3, -1) == 0 && dataset_writer_close(w) == 0,
              "%s", err_msg());
    cr_expect_eq(retortf(dir, "eval --model tests/fixtures/eval_data/model --data %s", path), 1);
    cr_expect_eq(retortf(dir, "eval --model tests/fixtures/eval_data/model --data %s --input x",
                         path), 2);
    cr_expect_eq(retortf(dir, "eval --hypotheses x --seq-len 4"), 2);
    char *log = read_log(dir);
    cr_expect(strstr(log, "--seq-len 17 exceeds the model's context of 16 positions"), "%s", log);
    cr_expect(strstr(log, "big.h5: dataset vocab_size 300 exceeds the model's 257"), "%s", log);
    cr_expect(strstr(log, "pref.h5 is a pref dataset"), "%s", log);
    cr_expect(strstr(log, "masked.h5: no token to score"), "%s", log);
    cr_expect(strstr(log, "it takes neither --input"), "%s", log);
    cr_expect(strstr(log, "--seq-len and --batch go with --data"), "%s", log);
    free(log);
    rm_rf(dir);
}
