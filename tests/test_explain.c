/* tests/test_explain.c — `retort explain` and `retort explain build`
 * (eval/explain.h), through the command line:
 *   - templates: {question} and {answer} filled, other braces kept; the checks
 *     of each mode's templates;
 *   - generation on a tiny random checkpoint made here: each explanation's
 *     "correct" and "extracted" are the answer spec's (regex:^(.), the first
 *     character, recomputed here), golds are taken from the model's own
 *     chains of thought so that some lines are right and some wrong; crop is
 *     exactly cot where cot is right and the rationalization of the same
 *     sample elsewhere; --keep-correct keeps exactly the correct ones; the
 *     report's counts are the files' counts; the same seed gives the same
 *     file and another seed another;
 *   - the builder: MT-CoT's and COLLATE's tasks as the documented formats
 *     derive them (the expected lines written out here), prefixes, separator,
 *     joiner, --explanation-only, --only-correct, the answer task once per
 *     question, and `data build --schema sft --task-field task` reading it;
 *   - bad input named by file:line and field, nothing left at the output. */
#include <criterion/criterion.h>

#include <jansson.h>

#include "data/h5data.h"
#include "eval/explain.h"
#include "model/backend.h"
#include "model/model_io.h"
#include "tests/testutil_cli.h"

Test(explain, templates_fill_and_checks) {
    char *s = explain_fill("Q: {question} {x} {answer}{question}", "2+2", "4");
    cr_expect_str_eq(s, "Q: 2+2 {x} 42+2");
    free(s);
    s = explain_fill("{question}={answer}", "a", NULL); /* cot: {answer} is not filled */
    cr_expect_str_eq(s, "a={answer}");
    free(s);
    cr_expect_eq(explain_templates_check(EXPLAIN_COT, EXPLAIN_COT_TEMPLATE,
                                         EXPLAIN_RATIONALIZE_TEMPLATE), 0);
    cr_expect_eq(explain_templates_check(EXPLAIN_CROP, EXPLAIN_COT_TEMPLATE,
                                         EXPLAIN_RATIONALIZE_TEMPLATE), 0);
    cr_expect_eq(explain_templates_check(EXPLAIN_COT, "{question} is {answer}", ""), -1);
    assert_contains(err_msg(), "--cot-template shows {answer}");
    cr_expect_eq(explain_templates_check(EXPLAIN_COT, "no question", ""), -1);
    assert_contains(err_msg(), "--cot-template has no {question}");
    cr_expect_eq(explain_templates_check(EXPLAIN_RATIONALIZE, "", "{question} only"), -1);
    assert_contains(err_msg(), "--rationalize-template needs both");
    cr_expect_eq(explain_templates_check(EXPLAIN_CROP, "{question}", "{question} only"), -1);
}

/* ------------------------------------------------------------- generation */

static void save_model(const char *dir) {
    GPTConfig cfg = {.n_layer = 1, .n_head = 2, .n_embd = 32, .vocab_size = 257,
                     .n_positions = 64, .layer_norm_epsilon = 1e-5f};
    GPT *m = gpt_create(&cfg, backend_cpu());
    cr_assert(m, "%s", err_msg());
    gpt_init_random(m, 21);
    char path[512];
    snprintf(path, sizeof path, "%s/model", dir);
    cr_assert_eq(mkdir_p(path), 0);
    cr_assert_eq(model_save_hf(m, path), 0, "%s", err_msg());
    gpt_free(m);
}

static json_t *lines_of(const char *dir, const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return jsonl_lines(path);
}

static const char *str_at(json_t *o, const char *key) {
    return json_string_value(json_object_get(o, key));
}

/* The first character of text (UTF-8), as regex:^(.) reads it; NULL for an
 * empty text or one that starts with a newline. */
static char *first_char(const char *text) {
    if (!text[0] || text[0] == '\n') return NULL;
    int n = 1;
    unsigned char c = (unsigned char)text[0];
    if (c >= 0xF0) n = 4;
    else if (c >= 0xE0) n = 3;
    else if (c >= 0xC0) n = 2;
    char *s = calloc(1, 5);
    memcpy(s, text, (size_t)n);
    return s;
}

/* Every line's "extracted" and "correct" are the spec's verdict on it. */
static void expect_judged(json_t *lines, const char *what) {
    size_t i;
    json_t *o;
    json_array_foreach(lines, i, o) {
        char *want = first_char(str_at(o, "explanation"));
        const char *got = str_at(o, "extracted");
        const char *gold = str_at(o, "answer");
        if (want) cr_expect(got && !strcmp(got, want), "%s line %zu: extracted %s, not %s", what,
                            i, got ? got : "null", want);
        else cr_expect(json_is_null(json_object_get(o, "extracted")), "%s line %zu", what, i);
        int right = want && !strcmp(want, gold);
        cr_expect_eq(json_is_true(json_object_get(o, "correct")), right, "%s line %zu", what, i);
        free(want);
    }
}

#define EXPLAIN_ARGS                                                                        \
    "--model %s/model -n 5 --answer 'regex:^(.)' --cot-template '{question}=' "             \
    "--rationalize-template '{question}={answer}:' -q"

Test(explain_cli, cot_rationalize_crop_and_keep_correct, .timeout = 120) {
    char dir[256], path[512];
    make_temp_dir(dir, sizeof dir, "explain");
    save_model(dir);
    /* the golds: line 1 the first character of its first sampled chain of
     * thought (so that sample is right), line 2 one no sample starts with,
     * line 3 an integer */
    snprintf(path, sizeof path, "%s/probe.jsonl", dir);
    write_text(path, "{\"question\": \"3+4\", \"answer\": \"?\"}\n");
    RUN(dir, "explain " EXPLAIN_ARGS " --input %s/probe.jsonl --out %s/probe.out -t 1 "
             "--samples 4 --seed 5",
        dir, dir, dir);
    json_t *probe = lines_of(dir, "probe.out");
    cr_assert_eq(json_array_size(probe), 4);
    char *g1 = first_char(str_at(json_array_get(probe, 0), "explanation"));
    cr_assert(g1, "the probe's explanation starts with a newline");
    json_t *q = json_array();
    json_array_append_new(q, json_pack("{ssss}", "question", "3+4", "answer", g1));
    json_array_append_new(q, json_pack("{ssss}", "question", "ab", "answer", "\x01\x02"));
    json_array_append_new(q, json_pack("{sssi}", "question", "7*6", "answer", 42));
    snprintf(path, sizeof path, "%s/q.jsonl", dir);
    FILE *f = fopen(path, "w");
    size_t i;
    json_t *o;
    json_array_foreach(q, i, o) json_dumpf(o, f, JSON_COMPACT), fputc('\n', f);
    fclose(f);
    free(g1);
    json_decref(q);
    json_decref(probe);

    /* greedy */
    RUN(dir, "explain " EXPLAIN_ARGS " --input %s/q.jsonl --out %s/g.jsonl -t 0", dir, dir, dir);
    json_t *g = lines_of(dir, "g.jsonl");
    cr_assert_eq(json_array_size(g), 3);
    expect_judged(g, "greedy");
    cr_expect(json_is_false(json_object_get(json_array_get(g, 1), "correct")));
    cr_expect_str_eq(str_at(json_array_get(g, 2), "answer"), "42", "an integer gold as text");
    cr_expect_str_eq(str_at(json_array_get(g, 0), "mode"), "cot");
    json_decref(g);

    /* sampled: every mode with the same seed */
    const char *modes[3] = {"cot", "rationalize", "crop"};
    for (int k = 0; k < 3; k++) {
        RUN(dir, "explain " EXPLAIN_ARGS " --input %s/q.jsonl --out %s/%s.jsonl -t 1 --samples 4 "
                 "--seed 5 --mode %s",
            dir, dir, dir, modes[k], modes[k]);
        json_t *l = lines_of(dir, (snprintf(path, sizeof path, "%s.jsonl", modes[k]), path));
        cr_expect_eq(json_array_size(l), 12, "%s: 3 questions x 4 samples", modes[k]);
        expect_judged(l, modes[k]);
        json_decref(l);
    }
    json_t *cot = lines_of(dir, "cot.jsonl"), *rat = lines_of(dir, "rationalize.jsonl"),
           *crop = lines_of(dir, "crop.jsonl");
    int n_right = 0, n_wrong = 0;
    for (size_t j = 0; j < 12; j++) {
        json_t *c = json_array_get(cot, j), *r = json_array_get(rat, j), *x = json_array_get(crop, j);
        cr_expect_eq(json_integer_value(json_object_get(c, "sample")), (json_int_t)(j % 4));
        cr_expect_str_eq(str_at(r, "mode"), "rationalize");
        int right = json_is_true(json_object_get(c, "correct"));
        n_right += right;
        n_wrong += !right;
        cr_expect(json_equal(x, right ? c : r), "crop line %zu is not the %s line", j,
                  right ? "cot" : "rationalize");
    }
    cr_expect(n_right > 0 && n_wrong > 0, "both kinds of chain of thought: %d right, %d wrong",
              n_right, n_wrong);

    /* --keep-correct: exactly the correct crop lines; the report counts them */
    snprintf(path, sizeof path, "%s/log", dir);
    remove(path);
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "explain --model %s/model -n 5 --answer 'regex:^(.)' --cot-template '{question}=' "
             "--rationalize-template '{question}={answer}:' --input %s/q.jsonl --out "
             "%s/keep.jsonl -t 1 --samples 4 --seed 5 --mode crop --keep-correct",
             dir, dir, dir);
    int rc = retort(dir, cmd);
    cr_assert_eq(rc, 0);
    json_t *keep = lines_of(dir, "keep.jsonl");
    size_t kept = 0;
    for (size_t j = 0; j < 12; j++) {
        json_t *x = json_array_get(crop, j);
        if (!json_is_true(json_object_get(x, "correct"))) continue;
        cr_expect(json_equal(json_array_get(keep, kept), x), "kept line %zu", kept);
        kept++;
    }
    cr_expect_eq(json_array_size(keep), kept);
    size_t len;
    char *log = read_file((snprintf(path, sizeof path, "%s/log", dir), path), &len);
    cr_assert(log);
    char want[128];
    snprintf(want, sizeof want, "-> %zu explanations", kept);
    assert_contains(log, want);
    snprintf(want, sizeof want, "chain of thought: %d correct", n_right);
    assert_contains(log, want);
    snprintf(want, sizeof want, "kept %zu, dropped %zu", kept, 12 - kept);
    assert_contains(log, want);
    free(log);

    /* the same seed, the same file; another seed, other samples */
    RUN(dir, "explain " EXPLAIN_ARGS " --input %s/q.jsonl --out %s/again.jsonl -t 1 --samples 4 "
             "--seed 5 --mode crop",
        dir, dir, dir);
    RUN(dir, "explain " EXPLAIN_ARGS " --input %s/q.jsonl --out %s/other.jsonl -t 1 --samples 4 "
             "--seed 6 --mode crop",
        dir, dir, dir);
    json_t *again = lines_of(dir, "again.jsonl"), *other = lines_of(dir, "other.jsonl");
    cr_expect(json_equal(again, crop), "the same seed gave another file");
    cr_expect(!json_equal(other, crop), "another seed gave the same file");
    json_decref(again);
    json_decref(other);
    json_decref(keep);
    json_decref(cot);
    json_decref(rat);
    json_decref(crop);
    rm_rf(dir);
}

Test(explain_cli, bad_input_and_options_are_refused, .timeout = 60) {
    char dir[256], path[512];
    make_temp_dir(dir, sizeof dir, "explain-bad");
    save_model(dir);
    snprintf(path, sizeof path, "%s/q.jsonl", dir);
    write_text(path, "{\"question\": \"1+1\", \"answer\": \"2\"}\n\n{\"answer\": \"3\"}\n");
    snprintf(path, sizeof path, "%s/nogold.jsonl", dir);
    write_text(path, "{\"question\": \"1+1\", \"answer\": [2]}\n");
    const struct {
        const char *args;
        int rc;
        const char *msg;
    } cases[] = {
        {"--input %s/q.jsonl --cot-template '{question}='", 1,
         "q.jsonl:3: field 'question' is missing"},
        {"--input %s/nogold.jsonl --cot-template '{question}='", 1,
         "nogold.jsonl:1: gold answer field 'answer'"},
        {"--input %s/q.jsonl --cot-template 'x={answer}'", 2, "--cot-template has no {question}"},
        {"--input %s/q.jsonl --cot-template '{question}={answer}'", 2,
         "--cot-template shows {answer}"},
        {"--input %s/q.jsonl --mode crop --cot-template '{question}=' --rationalize-template "
         "'{question}'",
         2, "--rationalize-template needs both"},
        {"--input %s/q.jsonl --mode sideways", 2, "unknown mode 'sideways'"},
        {"--input %s/q.jsonl --answer 'regex:(' --cot-template '{question}='", 2,
         "does not compile"},
        {"--input %s/q.jsonl --cot-template @%s/none.txt", 2, "cannot read"},
        {"--input %s/q.jsonl -n 60", 1, "q.jsonl:1: the prompt is"}, /* default template */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char args[1024], full[2600];
        snprintf(args, sizeof args, cases[i].args, dir, dir);
        snprintf(full, sizeof full, "explain --model %s/model -n 4 %s --out %s/x.jsonl", dir,
                 args, dir);
        remove((snprintf(path, sizeof path, "%s/log", dir), path));
        int rc = retort(dir, full);
        size_t len;
        char *log = read_file(path, &len);
        cr_expect_eq(rc, cases[i].rc, "case %zu: exited %d: %s", i, rc, log);
        cr_expect(log && strstr(log, cases[i].msg), "case %zu: %s", i, log);
        free(log);
        cr_expect(access((snprintf(path, sizeof path, "%s/x.jsonl", dir), path), F_OK) != 0 &&
                      access((snprintf(path, sizeof path, "%s/x.jsonl.tmp", dir), path), F_OK) != 0,
                  "case %zu left an output", i);
    }
    /* a template from a file, other field names */
    snprintf(path, sizeof path, "%s/t.txt", dir);
    write_text(path, "{question}=");
    snprintf(path, sizeof path, "%s/q2.jsonl", dir);
    write_text(path, "{\"q\": \"1+1\", \"gold\": \"2\"}\n");
    RUN(dir, "explain --model %s/model -n 4 --input %s/q2.jsonl --out %s/x.jsonl "
             "--cot-template @%s/t.txt --question-field q --answer-field gold -q",
        dir, dir, dir, dir);
    json_t *x = lines_of(dir, "x.jsonl");
    cr_expect_eq(json_array_size(x), 1);
    cr_expect_str_eq(str_at(json_array_get(x, 0), "question"), "1+1");
    cr_expect_str_eq(str_at(json_array_get(x, 0), "answer"), "2");
    json_decref(x);
    rm_rf(dir);
}

/* ---------------------------------------------------------------- builder */

static const char EXPLANATIONS[] =
    "{\"question\": \"2+2\", \"answer\": \"4\", \"explanation\": \"2 and 2 make 4.\", "
    "\"correct\": true}\n"
    "{\"question\": \"2+2\", \"answer\": \"4\", \"explanation\": \"Two plus two.\", "
    "\"correct\": false}\n"
    "\n"
    "{\"question\": \"say \\\"hi\\\"\", \"answer\": 12, \"explanation\": \"one\\ntwo\"}\n";

static void expect_file(const char *path, const char *want) {
    size_t len;
    char *got = read_file(path, &len);
    cr_assert(got, "no %s", path);
    cr_expect_str_eq(got, want);
    free(got);
}

Test(explain_cli, build_writes_the_documented_tasks, .timeout = 60) {
    char dir[256], in[512], out[512];
    make_temp_dir(dir, sizeof dir, "explain-build");
    snprintf(in, sizeof in, "%s/e.jsonl", dir);
    snprintf(out, sizeof out, "%s/sft.jsonl", dir);
    write_text(in, EXPLANATIONS);

    /* MT-CoT (the default tasks): the answer once per question */
    RUN(dir, "explain build --input %s --out %s -q", in, out);
    expect_file(out,
                "{\"prompt\":\"[answer] 2+2\\n\",\"completion\":\"4\",\"task\":\"answer\"}\n"
                "{\"prompt\":\"[explain] 2+2\\n\",\"completion\":\"2 and 2 make 4.\\nAnswer: 4\","
                "\"task\":\"explanation\"}\n"
                "{\"prompt\":\"[explain] 2+2\\n\",\"completion\":\"Two plus two.\\nAnswer: 4\","
                "\"task\":\"explanation\"}\n"
                "{\"prompt\":\"[answer] say \\\"hi\\\"\\n\",\"completion\":\"12\","
                "\"task\":\"answer\"}\n"
                "{\"prompt\":\"[explain] say \\\"hi\\\"\\n\",\"completion\":\"one\\ntwo\\nAnswer: "
                "12\",\"task\":\"explanation\"}\n");

    /* COLLATE's three modes, tasks in the order asked, only the correct lines
     * (a line without "correct" stays), own prefix, separator and joiner */
    RUN(dir, "explain build --input %s --out %s --tasks rationale-answer,answer,rationale "
             "--only-correct --prefix 'answer=Solve: ' --separator ' => ' --answer-joiner "
             "' ## ' -q",
        in, out);
    expect_file(out,
                "{\"prompt\":\"[rationale] 2+2 => 2 and 2 make 4. ## \",\"completion\":\"4\","
                "\"task\":\"rationale-answer\"}\n"
                "{\"prompt\":\"Solve: 2+2 => \",\"completion\":\"4\",\"task\":\"answer\"}\n"
                "{\"prompt\":\"[rationale] 2+2 => \",\"completion\":\"2 and 2 make 4.\","
                "\"task\":\"rationale\"}\n"
                "{\"prompt\":\"[rationale] say \\\"hi\\\" => one\\ntwo ## \",\"completion\":\"12\","
                "\"task\":\"rationale-answer\"}\n"
                "{\"prompt\":\"Solve: say \\\"hi\\\" => \",\"completion\":\"12\","
                "\"task\":\"answer\"}\n"
                "{\"prompt\":\"[rationale] say \\\"hi\\\" => \",\"completion\":\"one\\ntwo\","
                "\"task\":\"rationale\"}\n");

    /* a rationale prefix carries to rationale-answer, which continues its text,
     * unless rationale-answer has its own */
    RUN(dir, "explain build --input %s --out %s --tasks rationale,rationale-answer "
             "--only-correct --prefix 'rationale=r: ' -q",
        in, out);
    expect_file(out,
                "{\"prompt\":\"r: 2+2\\n\",\"completion\":\"2 and 2 make 4.\","
                "\"task\":\"rationale\"}\n"
                "{\"prompt\":\"r: 2+2\\n2 and 2 make 4.\\nAnswer: \",\"completion\":\"4\","
                "\"task\":\"rationale-answer\"}\n"
                "{\"prompt\":\"r: say \\\"hi\\\"\\n\",\"completion\":\"one\\ntwo\","
                "\"task\":\"rationale\"}\n"
                "{\"prompt\":\"r: say \\\"hi\\\"\\none\\ntwo\\nAnswer: \",\"completion\":\"12\","
                "\"task\":\"rationale-answer\"}\n");
    RUN(dir, "explain build --input %s --out %s --tasks rationale-answer --only-correct "
             "--prefix 'rationale=r: ' --prefix 'rationale-answer=ra: ' -q",
        in, out);
    expect_file(out,
                "{\"prompt\":\"ra: 2+2\\n2 and 2 make 4.\\nAnswer: \",\"completion\":\"4\","
                "\"task\":\"rationale-answer\"}\n"
                "{\"prompt\":\"ra: say \\\"hi\\\"\\none\\ntwo\\nAnswer: \",\"completion\":\"12\","
                "\"task\":\"rationale-answer\"}\n");

    /* MT-Re: the explanation alone; another task field */
    RUN(dir, "explain build --input %s --out %s --tasks explanation --explanation-only "
             "--task-field kind -q",
        in, out);
    expect_file(out,
                "{\"prompt\":\"[explain] 2+2\\n\",\"completion\":\"2 and 2 make 4.\","
                "\"kind\":\"explanation\"}\n"
                "{\"prompt\":\"[explain] 2+2\\n\",\"completion\":\"Two plus two.\","
                "\"kind\":\"explanation\"}\n"
                "{\"prompt\":\"[explain] say \\\"hi\\\"\\n\",\"completion\":\"one\\ntwo\","
                "\"kind\":\"explanation\"}\n");

    /* the multi-task file goes into an sft dataset with its task column */
    RUN(dir, "explain build --input %s --out %s --tasks answer,explanation -q", in, out);
    RUN(dir, "data build --schema sft --input %s --out %s/sft.h5 --task-field task -q", out, dir);
    Dataset ds;
    char h5[600];
    snprintf(h5, sizeof h5, "%s/sft.h5", dir);
    cr_assert_eq(dataset_open(&ds, h5), 0, "%s", err_msg());
    cr_expect_eq(ds.n_docs, 5);
    cr_assert_eq(ds.n_tasks, 2);
    cr_expect_str_eq(ds.task_names[0], "answer");
    cr_expect_str_eq(ds.task_names[1], "explanation");
    cr_assert_not_null(ds.task);
    const int want_task[5] = {0, 1, 1, 0, 1};
    for (int i = 0; i < 5; i++) cr_expect_eq(ds.task[i], want_task[i], "example %d", i);
    dataset_close(&ds);
    rm_rf(dir);
}

Test(explain_cli, build_refuses_bad_input, .timeout = 60) {
    char dir[256], in[512], path[512];
    make_temp_dir(dir, sizeof dir, "explain-buildbad");
    snprintf(in, sizeof in, "%s/e.jsonl", dir);
    const struct {
        const char *input, *args;
        int rc;
        const char *msg;
    } cases[] = {
        {"{\"question\": \"q\", \"answer\": \"1\", \"explanation\": \"e\"}\n{\"question\": \"q\", "
         "\"answer\": \"1\"}\n",
         "--tasks answer,rationale", 1,
         "e.jsonl:2: field 'explanation' is missing or not a string; the rationale task"},
        {"{\"question\": \"q\", \"explanation\": \"e\"}\n", "", 1, "e.jsonl:1: answer field"},
        {"{\"answer\": \"1\"}\n", "", 1, "e.jsonl:1: field 'question'"},
        {"[1]\n", "", 1, "e.jsonl:1: not a JSON object"},
        {"{\"question\": \"q\", \"answer\": \"1\", \"correct\": false}\n", "--only-correct", 1,
         "no example was written"},
        {"{}\n", "--tasks answer,telepathy", 2, "unknown task 'telepathy'"},
        {"{}\n", "--tasks answer,answer", 2, "names 'answer' twice"},
        {"{}\n", "--prefix answer", 2, "is not TASK=TEXT"},
        {"{}\n", "--prefix nope=x", 2, "unknown task 'nope'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_text(in, cases[i].input);
        char full[2600];
        snprintf(full, sizeof full, "explain build --input %s --out %s/x.jsonl %s", in, dir,
                 cases[i].args);
        remove((snprintf(path, sizeof path, "%s/log", dir), path));
        int rc = retort(dir, full);
        size_t len;
        char *log = read_file(path, &len);
        cr_expect_eq(rc, cases[i].rc, "case %zu: exited %d: %s", i, rc, log);
        cr_expect(log && strstr(log, cases[i].msg), "case %zu: %s", i, log);
        free(log);
        cr_expect(access((snprintf(path, sizeof path, "%s/x.jsonl", dir), path), F_OK) != 0 &&
                      access((snprintf(path, sizeof path, "%s/x.jsonl.tmp", dir), path), F_OK) != 0,
                  "case %zu left an output", i);
    }
    rm_rf(dir);
}
