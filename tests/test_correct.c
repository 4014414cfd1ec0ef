/* tests/test_correct.c — `retort correct` (LMCOR, eval/lmcor.h) through the
 * real command line:
 *   - build writes the documented template exactly (defaults, every piece
 *     configured, escapes, a single-string field, several fields), and its
 *     .h5 output is the sft dataset `data build` makes of its JSONL;
 *   - --order shuffle is a permutation fixed by the seed and the line's
 *     number alone; --dedup drops exact duplicates, first kept, before
 *     --max-candidates;
 *   - bad input names file:line and the field, exits 1 and leaves no file;
 *     bad options exit 2;
 *   - run with a BPE giant and a byte-level corrector (two tokenizers): the
 *     pool is the giant's greedy output then its samples, exactly what
 *     `retort generate` writes for them; the corrector's input is byte for byte
 *     what `correct build` makes of the same candidates; the correction is what
 *     `retort generate` writes for that input; --pool reads candidates
 *     instead (shuffled the same way build shuffles); with --reference-field
 *     the giant's greedy output and the correction are scored. */
#include <criterion/criterion.h>

#include <jansson.h>

#include "data/h5data.h"
#include "eval/answer.h"
#include "eval/metrics.h"
#include "model/backend.h"
#include "model/model_io.h"
#include "tests/testutil_cli.h"

#define GIANT "tests/fixtures/chat_data/model" /* GPT-2 with a BPE tokenizer.json */

/* The whole of a file (caller frees). */
static char *slurp(const char *path) {
    size_t len;
    char *s = read_file(path, &len);
    cr_assert(s, "%s", err_msg());
    return s;
}

/* retort's exit status with its output alone in dir/log (read it with slurp). */
static int run_alone(const char *dir, const char *args) {
    char log[512];
    snprintf(log, sizeof log, "%s/log", dir);
    remove(log);
    return retort(dir, args);
}

static char *log_of(const char *dir) {
    char log[512];
    snprintf(log, sizeof log, "%s/log", dir);
    return slurp(log);
}

static const char *str_at(json_t *lines, size_t i, const char *key) {
    const char *s = json_string_value(json_object_get(json_array_get(lines, i), key));
    cr_assert(s, "line %zu has no string '%s'", i + 1, key);
    return s;
}

static void path_in(char *buf, size_t cap, const char *dir, const char *name) {
    cr_assert_eq(path_join(buf, cap, dir, name), 0);
}

/* ------------------------------------------------------------------ build */

Test(correct, build_writes_the_documented_template) {
    char dir[256], in[512], out[512];
    make_temp_dir(dir, sizeof dir, "correct");
    path_in(in, sizeof in, dir, "in.jsonl");
    path_in(out, sizeof out, dir, "out.jsonl");
    write_text(in, "{\"prompt\": \"fix: teh cat\", \"completions\": [\"the cat\", \"teh cat\"], "
                   "\"reference\": \"the cat\"}\n"
                   "\n"
                   "{\"prompt\": \"fix: dgo\", \"completions\": \"dog\", \"reference\": \"dog\"}\n");
    RUN(dir, "correct build -i %s -o %s", in, out);
    char *got = slurp(out);
    cr_expect_str_eq(got,
                     "{\"prompt\":\"fix: teh cat\\nCandidate 1: the cat\\nCandidate 2: teh cat\\n"
                     "Correction:\",\"completion\":\" the cat\"}\n"
                     "{\"prompt\":\"fix: dgo\\nCandidate 1: dog\\nCorrection:\",\"completion\":"
                     "\" dog\"}\n");
    free(got);

    /* every piece configured, with escapes; fields renamed; two candidate fields */
    write_text(in, "{\"src\": \"s\", \"a\": [\"x\", \"y\"], \"b\": \"z\", \"gold\": \"g\"}\n");
    RUN(dir, "correct build -i %s -o %s --prompt-field src --candidates-field a "
             "--candidates-field b --reference-field gold --candidate-prefix '<{i}/{i}>\\t' "
             "--separator ' | ' --cue '\\\\Fix:' --target-prefix '\\n'", in, out);
    got = slurp(out);
    cr_expect_str_eq(got, "{\"prompt\":\"s | <1/1>\\tx | <2/2>\\ty | <3/3>\\tz | \\\\Fix:\","
                          "\"completion\":\"\\ng\"}\n");
    free(got);
    rm_rf(dir);
}

Test(correct, build_h5_is_the_sft_dataset_of_its_jsonl) {
    char dir[256], in[512];
    make_temp_dir(dir, sizeof dir, "correct");
    path_in(in, sizeof in, dir, "in.jsonl");
    write_text(in, "{\"prompt\": \"abc=\", \"completions\": [\"cba\", \"cab\"], \"reference\": "
                   "\"cba\"}\n{\"prompt\": \"ab=\", \"completions\": [\"ab\"], \"reference\": "
                   "\"ba\"}\n");
    RUN(dir, "correct build -i %s -o %s/c.jsonl -q", in, dir);
    RUN(dir, "data build --schema sft -i %s/c.jsonl -o %s/a.h5 --tokenizer " GIANT " -q", dir,
        dir);
    RUN(dir, "correct build -i %s -o %s/b.h5 --tokenizer " GIANT " -q", in, dir);
    char a_path[512], b_path[512], tmp[600];
    path_in(a_path, sizeof a_path, dir, "a.h5");
    path_in(b_path, sizeof b_path, dir, "b.h5");
    snprintf(tmp, sizeof tmp, "%s.tmp.jsonl", b_path);
    cr_expect_not(path_exists(tmp), "the intermediate JSONL is removed");
    Dataset a, b;
    cr_assert_eq(dataset_open(&a, a_path), 0, "%s", err_msg());
    cr_assert_eq(dataset_open(&b, b_path), 0, "%s", err_msg());
    cr_expect_eq(b.schema, SCHEMA_SFT);
    cr_assert_eq(b.n_docs, 2);
    cr_assert_eq(a.n_tokens, b.n_tokens);
    cr_expect_eq(memcmp(a.tokens, b.tokens, (size_t)a.n_tokens * sizeof *a.tokens), 0);
    cr_expect_eq(memcmp(a.offsets, b.offsets, 3 * sizeof *a.offsets), 0);
    cr_expect_eq(memcmp(a.loss_mask, b.loss_mask, (size_t)a.n_tokens), 0);
    dataset_close(&a);
    dataset_close(&b);
    /* .h5 without the tokenizer is a usage error, and writes nothing */
    cr_expect_eq(run_alone(dir, "correct build -i /dev/null -o /tmp/never.h5"), 2);
    cr_expect_not(path_exists("/tmp/never.h5"));
    rm_rf(dir);
}

/* n lines, each with 8 distinct candidates "cL.K" */
static void write_eight(const char *path, int n) {
    FILE *f = fopen(path, "w");
    cr_assert(f);
    for (int l = 0; l < n; l++) {
        fprintf(f, "{\"prompt\": \"p%d\", \"reference\": \"r\", \"completions\": [", l);
        for (int k = 0; k < 8; k++) fprintf(f, "%s\"c%d.%d\"", k ? ", " : "", l, k);
        fprintf(f, "]}\n");
    }
    fclose(f);
}

Test(correct, shuffle_is_fixed_by_seed_and_line) {
    char dir[256], in[512], one[512], two[512], other[512];
    make_temp_dir(dir, sizeof dir, "correct");
    path_in(in, sizeof in, dir, "in.jsonl");
    path_in(one, sizeof one, dir, "one.jsonl");
    path_in(two, sizeof two, dir, "two.jsonl");
    path_in(other, sizeof other, dir, "other.jsonl");
    write_eight(in, 6);
    RUN(dir, "correct build -i %s -o %s --order shuffle --seed 7 --candidate-prefix '' "
             "--separator ,", in, one);
    RUN(dir, "correct build -i %s -o %s --order shuffle --seed 7 --candidate-prefix '' "
             "--separator ,", in, two);
    RUN(dir, "correct build -i %s -o %s --order shuffle --seed 8 --candidate-prefix '' "
             "--separator ,", in, other);
    char *a = slurp(one), *b = slurp(two), *c = slurp(other);
    cr_expect_str_eq(a, b, "the same seed gives the same file");
    cr_expect_str_neq(a, c, "another seed gives another order");
    free(b);
    free(c);
    json_t *lines = jsonl_lines(one);
    int moved = 0, order[6][8] = {{0}};
    for (int l = 0; l < 6; l++) { /* each line holds a permutation of its own candidates */
        char want[64], *p = xstrdup(str_at(lines, (size_t)l, "prompt"));
        snprintf(want, sizeof want, "p%d,", l);
        cr_assert_eq(strncmp(p, want, strlen(want)), 0, "%s", p);
        int seen[8] = {0}, pos = 0;
        for (char *tok = strtok(p + strlen(want), ","); tok; tok = strtok(NULL, ",")) {
            if (!strcmp(tok, "Correction:")) break;
            int line, k;
            cr_assert_eq(sscanf(tok, "c%d.%d", &line, &k), 2, "%s", tok);
            cr_expect_eq(line, l);
            seen[k]++;
            if (pos < 8) order[l][pos] = k;
            moved += k != pos++;
        }
        for (int k = 0; k < 8; k++) cr_expect_eq(seen[k], 1, "line %d candidate %d", l, k);
        free(p);
    }
    cr_expect_gt(moved, 0);
    int same = 1; /* each line draws its own permutation: the greedy output is not pinned */
    for (int l = 1; l < 6; l++) same &= !memcmp(order[l], order[0], sizeof order[0]);
    cr_expect_not(same, "every line has the same order");
    /* a line's order does not depend on the other lines: change line 1, line 2 stays */
    char *text = slurp(in), *rest = strchr(text, '\n') + 1;
    FILE *f = fopen(in, "w");
    cr_assert(f);
    fprintf(f, "{\"prompt\": \"q\", \"reference\": \"r\", \"completions\": [\"x\"]}\n%s", rest);
    fclose(f);
    free(text);
    RUN(dir, "correct build -i %s -o %s --order shuffle --seed 7 --candidate-prefix '' "
             "--separator ,", in, other);
    json_t *again = jsonl_lines(other);
    for (size_t l = 1; l < 6; l++)
        cr_expect_str_eq(str_at(again, l, "prompt"), str_at(lines, l, "prompt"));
    json_decref(again);
    json_decref(lines);
    free(a);
    rm_rf(dir);
}

Test(correct, dedup_drops_exact_duplicates_before_max_candidates) {
    char dir[256], in[512], out[512];
    make_temp_dir(dir, sizeof dir, "correct");
    path_in(in, sizeof in, dir, "in.jsonl");
    path_in(out, sizeof out, dir, "out.jsonl");
    write_text(in, "{\"prompt\": \"s\", \"completions\": [\"a\", \"b\", \"a\", \"a \", \"b\", "
                   "\"c\"], \"reference\": \"g\"}\n");
    const char *fmt = "--candidate-prefix '' --separator '|' --cue '' --target-prefix ''";
    RUN(dir, "correct build -i %s -o %s %s", in, out, fmt);
    json_t *l = jsonl_lines(out);
    cr_expect_str_eq(str_at(l, 0, "prompt"), "s|a|b|a|a |b|c|", "kept by default");
    json_decref(l);
    RUN(dir, "correct build -i %s -o %s %s --dedup", in, out, fmt);
    l = jsonl_lines(out);
    cr_expect_str_eq(str_at(l, 0, "prompt"), "s|a|b|a |c|", "exact duplicates only");
    json_decref(l);
    RUN(dir, "correct build -i %s -o %s %s --dedup --max-candidates 3", in, out, fmt);
    l = jsonl_lines(out);
    cr_expect_str_eq(str_at(l, 0, "prompt"), "s|a|b|a |");
    json_decref(l);
    RUN(dir, "correct build -i %s -o %s %s --max-candidates 3", in, out, fmt);
    l = jsonl_lines(out);
    cr_expect_str_eq(str_at(l, 0, "prompt"), "s|a|b|a|");
    json_decref(l);
    rm_rf(dir);
}

/* build on a file holding text: exit 1, the log names every piece of want,
 * and no output (nor its .tmp) is left. */
static void expect_bad(const char *dir, const char *text, const char *extra,
                       const char *const *want, int n_want) {
    char in[512], out[512], tmp[600], args[2048];
    path_in(in, sizeof in, dir, "bad.jsonl");
    path_in(out, sizeof out, dir, "bad-out.jsonl");
    write_text(in, text);
    snprintf(args, sizeof args, "correct build -i %s -o %s %s", in, out, extra);
    int rc = run_alone(dir, args);
    char *log = log_of(dir);
    cr_expect_eq(rc, 1, "%s: exit %d: %s", text, rc, log);
    for (int i = 0; i < n_want; i++)
        cr_expect(strstr(log, want[i]), "'%s' not in: %s", want[i], log);
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    cr_expect_not(path_exists(out), "no output after: %s", log);
    cr_expect_not(path_exists(tmp));
    free(log);
}

Test(correct, bad_input_is_named_by_file_line_and_field) {
    char dir[256];
    make_temp_dir(dir, sizeof dir, "correct");
    const char *good = "{\"prompt\": \"s\", \"completions\": [\"a\"], \"reference\": \"g\"}\n";
    char text[512];
    snprintf(text, sizeof text, "%s%s", good, "{\"prompt\": \"s\", \"reference\": \"g\"}\n");
    expect_bad(dir, text, "", (const char *[]){"bad.jsonl:2:", "'completions'", "missing",
                                               "--candidates-field"}, 4);
    snprintf(text, sizeof text, "%s%s", good,
             "{\"prompt\": \"s\", \"completions\": [\"a\", 3], \"reference\": \"g\"}\n");
    expect_bad(dir, text, "", (const char *[]){"bad.jsonl:2:", "'completions' item 1",
                                               "a number, not a string"}, 3);
    expect_bad(dir, "{\"prompt\": \"s\", \"completions\": {}, \"reference\": \"g\"}\n", "",
               (const char *[]){"bad.jsonl:1:", "an object", "a list of strings or one string"},
               3);
    expect_bad(dir, "{\"prompt\": \"s\", \"completions\": [], \"reference\": \"g\"}\n", "",
               (const char *[]){"bad.jsonl:1:", "no candidates"}, 2);
    expect_bad(dir, "{\"completions\": [\"a\"], \"reference\": \"g\"}\n", "",
               (const char *[]){"bad.jsonl:1:", "source field 'prompt'", "--prompt-field"}, 3);
    expect_bad(dir, "{\"prompt\": \"s\", \"completions\": [\"a\"], \"gold\": \"g\"}\n", "",
               (const char *[]){"bad.jsonl:1:", "gold target field 'reference'",
                                "--reference-field"}, 3);
    expect_bad(dir, "{\"prompt\": 5, \"completions\": [\"a\"], \"reference\": \"g\"}\n", "",
               (const char *[]){"bad.jsonl:1:", "'prompt' is a number"}, 2);
    snprintf(text, sizeof text, "%s\n%s", good, "{\"prompt\": \"s\",\n");
    expect_bad(dir, text, "", (const char *[]){"bad.jsonl:3:", "not valid JSON"}, 2);
    expect_bad(dir, "[1, 2]\n", "", (const char *[]){"bad.jsonl:1:", "not a JSON object"}, 2);
    expect_bad(dir, "\n\n", "", (const char *[]){"bad.jsonl", "no examples"}, 2);
    expect_bad(dir, good, "--candidates-field other",
               (const char *[]){"bad.jsonl:1:", "'other'"}, 2);
    /* options: exit 2 */
    cr_expect_eq(run_alone(dir, "correct build -i x.jsonl -o y.jsonl --order random"), 2);
    cr_expect(strstr(log_of(dir), "generated") != NULL);
    cr_expect_eq(run_alone(dir, "correct build -i x.jsonl -o y.jsonl --separator '\\q'"), 2);
    cr_expect_eq(run_alone(dir, "correct build -i x.jsonl -o y.jsonl --max-candidates -1"), 2);
    cr_expect_eq(run_alone(dir, "correct build -o y.jsonl"), 2);
    cr_expect_eq(run_alone(dir, "correct build -i x.jsonl -o y.jsonl --tokenizer bytes"), 2);
    cr_expect_eq(run_alone(dir, "correct frobnicate"), 2);
    cr_expect_eq(run_alone(dir, "correct build -i /nonexistent.jsonl -o y.jsonl"), 1);
    cr_expect_eq(run_alone(dir, "correct --help"), 0);
    char *help = log_of(dir);
    static const char *const options[] = {
        "--candidates-field", "--candidate-prefix", "--separator", "--cue", "--target-prefix",
        "--order", "--dedup", "--max-candidates", "--giant", "--pool", "--corrector",
        "--candidates", "--answer", "--reference-field", "--metrics", "--tokenizer"};
    for (size_t i = 0; i < sizeof options / sizeof *options; i++)
        cr_expect(strstr(help, options[i]), "--help lacks %s", options[i]);
    free(help);
    cr_expect_eq(run_alone(dir, "--help"), 0);
    help = log_of(dir);
    cr_expect(strstr(help, "  correct "), "retort --help lists correct");
    free(help);
    rm_rf(dir);
}

/* -------------------------------------------------------------------- run */

/* A random byte-level corrector with room for a source and five candidates. */
static void make_corrector(const char *dir) {
    GPTConfig cfg = {.n_layer = 1, .n_head = 2, .n_embd = 32, .vocab_size = 257,
                     .n_positions = 256, .layer_norm_epsilon = 1e-5f};
    GPT *m = perturbed_cpu_model(&cfg, 11, 12, 0.3);
    cr_assert_eq(mkdir_p(dir), 0);
    cr_assert_eq(model_save_hf(m, dir), 0, "%s", err_msg());
    gpt_free(m);
}

Test(correct, run_chains_giant_and_corrector_as_generate_and_build_do, .timeout = 240) {
    char dir[256], in[512], out[512], corr[512];
    make_temp_dir(dir, sizeof dir, "correct");
    path_in(in, sizeof in, dir, "prompts.jsonl");
    path_in(out, sizeof out, dir, "out.jsonl");
    path_in(corr, sizeof corr, dir, "corrector");
    make_corrector(corr);
    write_text(in, "{\"prompt\": \"the cat\", \"gold\": \"cat\"}\n"
                   "{\"prompt\": \"a dog\", \"gold\": \"dog\"}\n"
                   "\n"
                   "{\"prompt\": \"hi\", \"gold\": \"hello\"}\n");
    RUN(dir, "correct run --giant " GIANT " -i %s --corrector %s -o %s --candidates 3 "
             "--giant-max-new-tokens 5 -n 6 --seed 5 --threads 1", in, corr, out);
    json_t *lines = jsonl_lines(out);
    cr_assert_eq(json_array_size(lines), 3);

    /* the pool: greedy first, then the samples, as `retort generate` writes them */
    RUN(dir, "generate --model " GIANT " -i %s -o %s/greedy.jsonl -n 5 -t 0 --threads 1", in,
        dir);
    RUN(dir, "generate --model " GIANT " -i %s -o %s/sampled.jsonl -n 5 -t 0.6 -k 0 --samples 3 "
             "--seed 5 --threads 1", in, dir);
    char path[600];
    snprintf(path, sizeof path, "%s/greedy.jsonl", dir);
    json_t *greedy = jsonl_lines(path);
    snprintf(path, sizeof path, "%s/sampled.jsonl", dir);
    json_t *sampled = jsonl_lines(path);
    for (size_t i = 0; i < 3; i++) {
        json_t *o = json_array_get(lines, i);
        cr_expect_str_eq(str_at(lines, i, "gold"), str_at(greedy, i, "gold"), "input kept");
        json_t *pool = json_object_get(o, "candidates");
        cr_assert_eq(json_array_size(pool), 4, "greedy + 3 samples");
        json_t *g = json_object_get(json_array_get(greedy, i), "completions");
        json_t *s = json_object_get(json_array_get(sampled, i), "completions");
        cr_expect(json_equal(json_array_get(pool, 0), json_array_get(g, 0)), "line %zu greedy",
                  i + 1);
        for (size_t k = 0; k < 3; k++)
            cr_expect(json_equal(json_array_get(pool, k + 1), json_array_get(s, k)),
                      "line %zu sample %zu", i + 1, k + 1);
    }
    json_decref(greedy);
    json_decref(sampled);

    /* the corrector's input is what build makes of the same candidates, byte for byte */
    RUN(dir, "correct build -i %s -o %s/built.jsonl --candidates-field candidates "
             "--reference-field gold -q", out, dir);
    snprintf(path, sizeof path, "%s/built.jsonl", dir);
    json_t *built = jsonl_lines(path);
    FILE *f = fopen((snprintf(path, sizeof path, "%s/inputs.jsonl", dir), path), "w");
    cr_assert(f);
    for (size_t i = 0; i < 3; i++) {
        cr_expect_str_eq(str_at(lines, i, "corrector_input"), str_at(built, i, "prompt"));
        json_t *p = json_pack("{s:s}", "prompt", str_at(lines, i, "corrector_input"));
        json_dumpf(p, f, JSON_COMPACT);
        fputc('\n', f);
        json_decref(p);
    }
    fclose(f);
    json_decref(built);
    /* the correction is the corrector's greedy completion of it (its target
     * prefix " " removed when it writes one) */
    RUN(dir, "generate --model %s -i %s -o %s/corrected.jsonl -n 6 -t 0 --threads 1", corr,
        path, dir);
    snprintf(path, sizeof path, "%s/corrected.jsonl", dir);
    json_t *corrected = jsonl_lines(path);
    for (size_t i = 0; i < 3; i++) {
        const char *c = json_string_value(
            json_array_get(json_object_get(json_array_get(corrected, i), "completions"), 0));
        cr_assert(c);
        cr_expect_str_eq(str_at(lines, i, "correction"), c[0] == ' ' ? c + 1 : c);
    }
    json_decref(corrected);
    json_decref(lines);

    /* the giant's own prompt (--giant-prompt-field) in its chat template
     * (--giant-chat); the corrector still reads the source */
    write_text(in, "{\"prompt\": \"cat\", \"shots\": \"dog: god. cat:\"}\n"
                   "{\"prompt\": \"rat\", \"shots\": \"dog: god. rat:\"}\n");
    RUN(dir, "correct run --giant " GIANT " -i %s --corrector %s -o %s --candidates 0 "
             "--giant-prompt-field shots --giant-chat --giant-max-new-tokens 5 -n 4 "
             "--threads 1", in, corr, out);
    RUN(dir, "generate --model " GIANT " -i %s -o %s/chat.jsonl --prompt-field shots --chat -n 5 "
             "-t 0 --threads 1", in, dir);
    lines = jsonl_lines(out);
    snprintf(path, sizeof path, "%s/chat.jsonl", dir);
    json_t *chat = jsonl_lines(path);
    cr_assert_eq(json_array_size(lines), 2);
    for (size_t i = 0; i < 2; i++) {
        json_t *pool = json_object_get(json_array_get(lines, i), "candidates");
        cr_assert_eq(json_array_size(pool), 1, "--candidates 0: the greedy output alone");
        cr_expect(json_equal(json_array_get(pool, 0),
                             json_array_get(json_object_get(json_array_get(chat, i),
                                                            "completions"), 0)),
                  "line %zu: the giant's chat-wrapped few-shot prompt", i + 1);
        char want[256];
        snprintf(want, sizeof want, "%s\nCandidate 1: %s\nCorrection:",
                 str_at(lines, i, "prompt"), json_string_value(json_array_get(pool, 0)));
        cr_expect_str_eq(str_at(lines, i, "corrector_input"), want);
    }
    json_decref(chat);
    json_decref(lines);
    rm_rf(dir);
}

Test(correct, run_pool_reads_candidates_and_scores_against_the_reference, .timeout = 240) {
    char dir[256], pool[512], out[512], corr[512], metrics[512];
    make_temp_dir(dir, sizeof dir, "correct");
    path_in(pool, sizeof pool, dir, "pool.jsonl");
    path_in(out, sizeof out, dir, "out.jsonl");
    path_in(corr, sizeof corr, dir, "corrector");
    path_in(metrics, sizeof metrics, dir, "metrics.json");
    make_corrector(corr);
    /* another model's outputs: one field of a list, one of a single string */
    write_text(pool, "{\"src\": \"fix teh\", \"outs\": [\"teh\", \"the\", \"te\"], \"other\": "
                     "\"the\", \"gold\": \"the\"}\n"
                     "{\"src\": \"fix dgo\", \"outs\": [\"dog\", \"god\"], \"other\": \"dgo\", "
                     "\"gold\": \"dog\"}\n");
    const char *fields = "--prompt-field src --candidates-field outs --candidates-field other "
                         "--order shuffle --seed 3 --dedup";
    RUN(dir, "correct run --pool %s --corrector %s -o %s -n 4 --threads 1 %s "
             "--reference-field gold --metrics %s", pool, corr, out, fields, metrics);
    RUN(dir, "correct build -i %s -o %s/built.jsonl --reference-field gold %s", pool, dir,
        fields);
    json_t *lines = jsonl_lines(out);
    char path[600];
    snprintf(path, sizeof path, "%s/built.jsonl", dir);
    json_t *built = jsonl_lines(path);
    cr_assert_eq(json_array_size(lines), 2);
    json_t *want0 = json_pack("[s,s,s,s]", "teh", "the", "te", "the");
    json_t *want1 = json_pack("[s,s,s]", "dog", "god", "dgo");
    cr_expect(json_equal(json_object_get(json_array_get(lines, 0), "candidates"), want0),
              "the pool as given, in its order, duplicates included");
    cr_expect(json_equal(json_object_get(json_array_get(lines, 1), "candidates"), want1));
    json_decref(want0);
    json_decref(want1);
    const char *hyps[2], *giant[2], *refs[2] = {"the", "dog"};
    giant[0] = "teh";
    giant[1] = "dog";
    for (size_t i = 0; i < 2; i++) {
        cr_expect_str_eq(str_at(lines, i, "corrector_input"), str_at(built, i, "prompt"),
                         "run --pool and build shuffle and format alike");
        hyps[i] = str_at(lines, i, "correction");
    }
    /* the scores: the pool's first candidate and the correction against gold */
    json_t *m = json_load_file(metrics, 0, NULL);
    cr_assert(m, "no %s", metrics);
    cr_expect_eq(json_integer_value(json_object_get(m, "lines")), 2);
    cr_expect_eq(json_integer_value(json_object_get(m, "candidates")), 7);
    json_t *gm = json_object_get(m, "giant"), *cm = json_object_get(m, "correction");
    cr_expect_float_eq(json_number_value(json_object_get(gm, "exact_match")), 0.5, 1e-12);
    BleuResult b;
    cr_assert_eq(bleu_corpus(giant, refs, 2, 1, &b), 0);
    cr_expect_float_eq(json_number_value(json_object_get(gm, "bleu")), b.score, 1e-9);
    cr_expect_float_eq(json_number_value(json_object_get(gm, "chrf")), chrf_corpus(giant, refs, 2),
                       1e-9);
    cr_assert_eq(bleu_corpus(hyps, refs, 2, 1, &b), 0);
    cr_expect_float_eq(json_number_value(json_object_get(cm, "bleu")), b.score, 1e-9);
    double em = (exact_match(hyps[0], refs[0]) + exact_match(hyps[1], refs[1])) / 2.0;
    double rl = (rouge_l_f(hyps[0], refs[0]) + rouge_l_f(hyps[1], refs[1])) / 2.0;
    double f1 = (token_f1(hyps[0], refs[0]) + token_f1(hyps[1], refs[1])) / 2.0;
    cr_expect_float_eq(json_number_value(json_object_get(cm, "exact_match")), em, 1e-12);
    cr_expect_float_eq(json_number_value(json_object_get(cm, "rouge_l")), rl, 1e-12);
    cr_expect_float_eq(json_number_value(json_object_get(cm, "token_f1")), f1, 1e-12);
    cr_expect(json_is_null(json_object_get(gm, "accuracy")), "no --answer, no accuracy");
    json_decref(m);
    char *log = log_of(dir);
    cr_expect(strstr(log, "giant (greedy)") && strstr(log, "correction"), "%s", log);
    free(log);
    json_decref(built);
    json_decref(lines);

    /* --answer: the answers read from the giant's greedy output and the correction */
    write_text(pool, "{\"prompt\": \"6+6\", \"completions\": [\"so 12\", \"13\"], \"gold\": "
                     "\"#### 12\"}\n"
                     "{\"prompt\": \"4+4\", \"completions\": [\"maybe 7\"], \"gold\": \"8\"}\n"
                     "{\"prompt\": \"1+1\", \"completions\": [\"two\"], \"gold\": \"2\"}\n");
    RUN(dir, "correct run --pool %s --corrector %s -o %s -n 4 --threads 1 --reference-field gold "
             "--answer last-number --metrics %s", pool, corr, out, metrics);
    m = json_load_file(metrics, 0, NULL);
    cr_assert(m, "no %s", metrics);
    gm = json_object_get(m, "giant");
    cm = json_object_get(m, "correction");
    cr_expect_float_eq(json_number_value(json_object_get(gm, "accuracy")), 1.0 / 3, 1e-12);
    cr_expect_eq(json_integer_value(json_object_get(gm, "no_answer")), 1);
    lines = jsonl_lines(out);
    AnswerSpec *spec = answer_spec_parse("last-number");
    cr_assert(spec, "%s", err_msg());
    static const char *const golds[3] = {"#### 12", "8", "2"};
    int right = 0, none = 0;
    for (size_t i = 0; i < 3; i++) {
        char *a = NULL;
        none += answer_spec_extract(spec, str_at(lines, i, "correction"), &a) == 0;
        free(a);
        right += answer_spec_match(spec, str_at(lines, i, "correction"), golds[i]);
    }
    answer_spec_free(spec);
    cr_expect_float_eq(json_number_value(json_object_get(cm, "accuracy")), right / 3.0, 1e-12);
    cr_expect_eq(json_integer_value(json_object_get(cm, "no_answer")), none);
    json_decref(lines);
    json_decref(m);
    rm_rf(dir);
}

Test(correct, run_refuses_bad_options_and_input, .timeout = 120) {
    char dir[256], pool[512], corr[512], out[512], args[2048];
    make_temp_dir(dir, sizeof dir, "correct");
    path_in(pool, sizeof pool, dir, "pool.jsonl");
    path_in(corr, sizeof corr, dir, "corrector");
    path_in(out, sizeof out, dir, "out.jsonl");
    make_corrector(corr);
    write_text(pool, "{\"prompt\": \"s\", \"completions\": [\"a\"]}\n{\"prompt\": \"s\"}\n");
    static const char *const usage[] = {
        "correct run --pool %s --corrector %s",                          /* no --out */
        "correct run --corrector %s -o %s",                              /* no candidates */
        "correct run --pool %s --giant " GIANT " -i x --corrector %s -o %s",
        "correct run --giant " GIANT " --corrector %s -o %s",            /* no --input */
        "correct run --pool %s --corrector %s -o %s --candidates 2",     /* giant option */
        "correct run --pool %s --corrector %s -o %s --giant-chat",       /* giant option */
        "correct run --pool %s --corrector %s -o %s --metrics m.json",   /* no reference */
        "correct run --pool %s --corrector %s -o %s --corrector-temperature -1",
        "correct run --pool %s --corrector %s -o %s --answer whole",     /* no reference */
        "correct run --pool %s --corrector %s -o %s --reference-field r --answer 'regex:('",
    };
    for (size_t i = 0; i < sizeof usage / sizeof *usage; i++) {
        switch (i) {
        case 0: snprintf(args, sizeof args, usage[i], pool, corr); break;
        case 1:
        case 3: snprintf(args, sizeof args, usage[i], corr, out); break;
        default: snprintf(args, sizeof args, usage[i], pool, corr, out); break;
        }
        int rc = run_alone(dir, args);
        char *log = log_of(dir);
        cr_expect_eq(rc, 2, "%s: exit %d: %s", args, rc, log);
        free(log);
        cr_expect_not(path_exists(out));
    }
    /* a pool line without candidates: named, nothing written */
    snprintf(args, sizeof args, "correct run --pool %s --corrector %s -o %s", pool, corr, out);
    cr_expect_eq(run_alone(dir, args), 1);
    char *log = log_of(dir);
    cr_expect(strstr(log, "pool.jsonl:2: candidate field 'completions' is missing"), "%s", log);
    free(log);
    cr_expect_not(path_exists(out));
    /* a corrector input longer than the corrector's context: named, nothing written */
    char long_text[400];
    memset(long_text, 'x', 300);
    long_text[300] = '\0';
    char line[600];
    snprintf(line, sizeof line, "{\"prompt\": \"s\", \"completions\": [\"%s\"]}\n", long_text);
    write_text(pool, line);
    cr_expect_eq(run_alone(dir, args), 1);
    log = log_of(dir);
    cr_expect(strstr(log, "pool.jsonl:1: the corrector's input"), "%s", log);
    cr_expect(strstr(log, "context"), "%s", log);
    free(log);
    cr_expect_not(path_exists(out));
    rm_rf(dir);
}
