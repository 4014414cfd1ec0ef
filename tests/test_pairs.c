/* tests/test_pairs.c — `retort pairs` (eval/pairs.h):
 *   - the exact scorer extracts the first capture group (PCRE2 and POSIX),
 *     the whole match without a group, the whole text without a pattern, and
 *     scores an unparseable completion 0;
 *   - gold-likelihood equals the mean of log-softmax(logits)[gold token] over
 *     the gold tokens, recomputed here row by row from gpt_logits (an
 *     independent path: unbatched, no targets, our own log-softmax), with an
 *     answer prefix, a final EOS and a row cut to the context;
 *   - pairing: best-worst (first best, last worst, ties skipped, margin) and
 *     all pairs with a margin;
 *   - the whole job: duplicates dropped, pref rows as expected (prompt without
 *     EOS, completions + EOS) through pref_dataset_open, the external scorer,
 *     sampled completions scored by gold-likelihood and paired best vs worst,
 *     and bad input named by file:line with nothing left at the output;
 *   - instances through the command line (COLLATE): several --model and
 *     --instance samplers pool their completions, each instance's exactly the
 *     completions and scores of a one-model run with its options (seed
 *     --seed + position unless set), deduplicated across instances in
 *     instance order, paired over the union, each one's origin in the dump,
 *     deterministic; bad instances refused with the spec named;
 *   - the exact scorer with an eval/answer.h spec (--answer last-number):
 *     verdicts derived by hand from the spec's documented rules. */
#include <criterion/criterion.h>

#include <jansson.h>
#include <math.h>

#include "data/h5data.h"
#include "data/tokenizer.h"
#include "eval/generate_io.h"
#include "eval/pairs.h"
#include "tests/testutil_cli.h"
#include "model/model_io.h"
#include "model/backend.h"
#include "model/model.h"

static GPT *tiny_model(uint64_t seed, int ctx) {
    GPTConfig cfg = {.n_layer = 2, .n_head = 4, .n_embd = 32, .vocab_size = 257, .n_positions = ctx,
                     .layer_norm_epsilon = 1e-5f, .vocab_pad = 0};
    GPT *m = random_cpu_model(&cfg, seed);
    gpt_set_train_mode(m, 0);
    return m;
}

/* The decoded text of part p of pair i. */
static char *pref_text(const Tokenizer *tok, const PrefPart *p, int64_t i, int *ends_eos) {
    int64_t a = p->offsets[i], b = p->offsets[i + 1];
    *ends_eos = b > a && p->tokens[b - 1] == (uint32_t)tok->eos_id;
    return tokenizer_decode(tok, p->tokens + a, (b - a) - (*ends_eos ? 1 : 0));
}

/* ------------------------------------------------------------ exact match */

Test(pairs, exact_match_extracts_the_first_group) {
    AnswerMatcher *pc = answer_matcher_new(";\\s*(\\d+)", 0);
    cr_assert_not_null(pc, "%s", err_msg());
    char *a = answer_extract(pc, "1+2=3,3+4=7; 7 and ;9");
    cr_expect_str_eq(a, "7");
    free(a);
    int parsed = -1;
    cr_expect_float_eq(exact_match_score(pc, "1+2=3;  12 ", " 12\n", &parsed), 1.0, 0);
    cr_expect_eq(parsed, 1);
    cr_expect_float_eq(exact_match_score(pc, "1+2=3;13", "12", &parsed), 0.0, 0);
    cr_expect_eq(parsed, 1, "a wrong answer is parsed");
    cr_expect_float_eq(exact_match_score(pc, "no answer here", "12", &parsed), 0.0, 0);
    cr_expect_eq(parsed, 0, "unparseable");
    answer_matcher_free(pc);

    AnswerMatcher *px = answer_matcher_new("answer: ([0-9]+)", 1);
    cr_assert_not_null(px, "%s", err_msg());
    cr_expect_float_eq(exact_match_score(px, "so the answer: 42.", "42", &parsed), 1.0, 0);
    cr_expect_float_eq(exact_match_score(px, "answer: x", "42", &parsed), 0.0, 0);
    cr_expect_eq(parsed, 0);
    answer_matcher_free(px);

    AnswerMatcher *whole = answer_matcher_new("[0-9]+", 0); /* no group: the whole match */
    a = answer_extract(whole, "abc 314 15");
    cr_expect_str_eq(a, "314");
    free(a);
    answer_matcher_free(whole);

    AnswerMatcher *none = answer_matcher_new(NULL, 0); /* no pattern: the stripped text */
    cr_expect_float_eq(exact_match_score(none, "  Paris\n", "Paris", NULL), 1.0, 0);
    cr_expect_float_eq(exact_match_score(none, "Paris.", "Paris", NULL), 0.0, 0);
    answer_matcher_free(none);

    cr_expect_null(answer_matcher_new("(unclosed", 0));
    cr_expect(strstr(err_msg(), "PCRE2"), "%s", err_msg());
    cr_expect_null(answer_matcher_new("(unclosed", 1));
    cr_expect(strstr(err_msg(), "POSIX"), "%s", err_msg());
}

/* -------------------------------------------------------- gold-likelihood */

/* log p(row[j+1] | row[0..j]) averaged over the last G tokens of row[0:L],
 * from full logits of one unbatched forward and a log-softmax done here. */
static double reference_gold_score(GPT *m, const int *row, int L, int G) {
    int V = gpt_config(m)->vocab_size, T = L - 1;
    int *tg = xmalloc((size_t)T * sizeof(int));
    for (int j = 0; j < T; j++) tg[j] = -1;
    float *lp = xmalloc((size_t)T * sizeof(float));
    float *logits = xmalloc((size_t)T * V * sizeof(float));
    gpt_forward(m, row, tg, 1, T, lp);
    gpt_logits(m, logits);
    double s = 0;
    for (int j = L - 1 - G; j < T; j++) {
        const float *x = logits + (size_t)j * V;
        double mx = x[0], z = 0;
        for (int v = 1; v < V; v++) mx = x[v] > mx ? x[v] : mx;
        for (int v = 0; v < V; v++) z += exp((double)x[v] - mx);
        s += (double)x[row[j + 1]] - mx - log(z);
    }
    free(tg);
    free(lp);
    free(logits);
    return s / G;
}

static int bytes_row(int *row, const char *const *parts, int n_parts) {
    int L = 0;
    for (int p = 0; p < n_parts; p++)
        for (const char *c = parts[p]; *c; c++) row[L++] = (unsigned char)*c;
    return L;
}

Test(pairs, gold_likelihood_matches_a_manual_log_softmax) {
    GPT *m = tiny_model(11, 32);
    Tokenizer *tok = tokenizer_bytes();
    const char *comps[3] = {"4+5=9,9+1=10", "x", "a much longer rationale than fits"};
    double got[3];
    cr_assert_eq(gold_likelihood_scores(m, tok, "4+5+1=", comps, 3, ";", "10", 0, got), 0, "%s",
                 err_msg());
    int row[128];
    for (int k = 0; k < 3; k++) {
        const char *parts[4] = {"4+5+1=", comps[k], ";", "10"};
        int L = bytes_row(row, parts, 4);
        int start = L - 1 > 32 ? L - 1 - 32 : 0; /* the row keeps its last ctx + 1 tokens */
        double want = reference_gold_score(m, row + start, L - start, 2);
        cr_expect(fabs(got[k] - want) < 1e-4, "completion %d: %.6f vs %.6f", k, got[k], want);
        cr_expect(got[k] < 0);
    }
    /* EOS after the answer is one more scored token; no prefix */
    double with_eos;
    cr_assert_eq(gold_likelihood_scores(m, tok, "4+5+1=", comps, 1, NULL, "10", 1, &with_eos), 0);
    const char *parts[3] = {"4+5+1=", comps[0], "10"};
    int L = bytes_row(row, parts, 3);
    row[L++] = tok->eos_id;
    cr_expect(fabs(with_eos - reference_gold_score(m, row, L, 3)) < 1e-4);
    /* nothing before the answer: it is scored after EOS */
    const char *empty[1] = {""};
    double e;
    cr_assert_eq(gold_likelihood_scores(m, tok, "", empty, 1, NULL, "7", 0, &e), 0);
    int r2[2] = {tok->eos_id, '7'};
    cr_expect(fabs(e - reference_gold_score(m, r2, 2, 1)) < 1e-4);
    /* errors */
    cr_expect_eq(gold_likelihood_scores(m, tok, "p", comps, 1, NULL, "", 0, &e), -1);
    cr_expect(strstr(err_msg(), "empty"), "%s", err_msg());
    char long_gold[64];
    memset(long_gold, '1', 40);
    long_gold[40] = '\0';
    cr_expect_eq(gold_likelihood_scores(m, tok, "p", comps, 1, NULL, long_gold, 0, &e), -1);
    cr_expect(strstr(err_msg(), "context"), "%s", err_msg());
    tokenizer_free(tok);
    gpt_free(m);
}

/* ---------------------------------------------------------------- pairing */

Test(pairs, best_worst_and_all_pairs) {
    int p[16][2];
    int64_t skipped;
    double s1[5] = {0.5, 1.0, -2.0, 1.0, -2.0};
    cr_assert_eq(pairs_select(s1, 5, PAIRING_BEST_WORST, 0, p, &skipped), 1);
    cr_expect_eq(p[0][0], 1, "first of the tied best");
    cr_expect_eq(p[0][1], 4, "last of the tied worst");
    cr_expect_eq(skipped, 0);
    double tie[3] = {1, 1, 1};
    cr_expect_eq(pairs_select(tie, 3, PAIRING_BEST_WORST, 0, p, &skipped), 0);
    cr_expect_eq(skipped, 1, "a tied prompt is skipped");
    cr_expect_eq(pairs_select(s1, 5, PAIRING_BEST_WORST, 3.0, p, &skipped), 0, "3 is not > 3");
    cr_expect_eq(skipped, 1);
    cr_expect_eq(pairs_select(s1, 1, PAIRING_BEST_WORST, 0, p, &skipped), 0);
    cr_expect_eq(skipped, 0, "one completion: nothing to pair, not a tie");

    double s2[4] = {0.0, 1.0, 0.25, 1.0};
    int n = pairs_select(s2, 4, PAIRING_ALL, 0.5, p, &skipped);
    /* (0,1) d=-1 -> (1,0); (0,2) 0.25 skip; (0,3) -> (3,0); (1,2) 0.75 -> (1,2);
     * (1,3) 0 skip; (2,3) -0.75 -> (3,2) */
    int want[4][2] = {{1, 0}, {3, 0}, {1, 2}, {3, 2}};
    cr_assert_eq(n, 4);
    for (int i = 0; i < 4; i++) {
        cr_expect_eq(p[i][0], want[i][0], "pair %d chosen", i);
        cr_expect_eq(p[i][1], want[i][1], "pair %d rejected", i);
    }
    cr_expect_eq(skipped, 2);
    cr_expect_eq(pairs_select(s2, 4, PAIRING_ALL, 0, p, &skipped), 5);
    cr_expect_eq(skipped, 1, "only the exact tie (1,3)");
}

/* --------------------------------------------------------------- the job */

static PairsJob read_job(const char *in, const char *out) {
    PairsJob job = {0};
    job.input = in;
    job.output = out;
    job.read_completions = 1;
    job.gold_field = "answer";
    job.answer_pattern = ";(\\d+)";
    job.quiet = 1;
    return job;
}

Test(pairs, exact_scorer_writes_deduplicated_pairs) {
    char dir[256], in[512], out[512], dump[512];
    make_temp_dir(dir, sizeof dir, "pairs");
    snprintf(in, sizeof in, "%s/gen.jsonl", dir);
    snprintf(out, sizeof out, "%s/pairs.h5", dir);
    snprintf(dump, sizeof dump, "%s/dump.jsonl", dir);
    write_text(in,
               "{\"prompt\": \"1+2=\", \"answer\": 3, \"completions\": [\"x;4\", \"x;3\", \"x;3\", "
               "\"junk\"]}\n"
               "\n"
               "{\"prompt\": \"2+2=\", \"answer\": \"4\", \"completions\": [\"y;5\", \"y;6\"]}\n"
               "{\"prompt\": \"\", \"answer\": \"7\", \"completions\": [\"z;7\", \"z;7\", "
               "\"\"]}\n");
    Tokenizer *tok = tokenizer_bytes();
    PairsJob job = read_job(in, out);
    job.pairing = PAIRING_ALL;
    job.dump = dump;
    PairsStats st;
    cr_assert_eq(pairs_build(NULL, NULL, tok, &job, &st), 0, "%s", err_msg());
    cr_expect_eq(st.lines, 3);
    cr_expect_eq(st.completions, 9);
    cr_expect_eq(st.duplicates, 2);
    cr_expect_eq(st.unparsed, 2, "\"junk\" and \"\"");
    /* line 1: x;4 (0) x;3 (1) junk (0): (1,0) and (1,2), (0,2) tie;
     * line 3: all 0; line 5: z;7 (1) "" (0): one pair */
    cr_expect_eq(st.pairs, 3);
    cr_expect_eq(st.skipped_ties, 2);
    cr_expect_eq(st.prompts_without_pair, 1);
    PrefDataset pd;
    cr_assert_eq(pref_dataset_open(&pd, out), 0, "%s", err_msg());
    cr_assert_eq(pd.n_pairs, 3);
    cr_expect_eq(pd.vocab_size, 257);
    const char *want[3][3] = {{"1+2=", "x;3", "x;4"}, {"1+2=", "x;3", "junk"}, {"", "z;7", ""}};
    for (int i = 0; i < 3; i++) {
        int e0, e1, e2;
        char *p = pref_text(tok, &pd.prompt, i, &e0), *c = pref_text(tok, &pd.chosen, i, &e1),
             *r = pref_text(tok, &pd.rejected, i, &e2);
        cr_expect_str_eq(p, want[i][0], "pair %d prompt", i);
        cr_expect_str_eq(c, want[i][1], "pair %d chosen", i);
        cr_expect_str_eq(r, want[i][2], "pair %d rejected", i);
        cr_expect(!e0 && e1 && e2, "prompt without EOS, completions with (pair %d)", i);
        free(p);
        free(c);
        free(r);
    }
    pref_dataset_close(&pd);
    size_t len;
    char *d = read_file(dump, &len);
    cr_assert_not_null(d);
    cr_expect(strstr(d, "\"line\":4"), "the dump names input lines: %s", d);
    cr_expect(strstr(d, "\"pairs\":[[1,0],[1,2]]"), "%s", d);
    free(d);
    tokenizer_free(tok);
    rm_rf(dir);
}

Test(pairs, external_scores_and_their_errors) {
    char dir[256], in[512], out[512], sc[512];
    make_temp_dir(dir, sizeof dir, "pairsx");
    snprintf(in, sizeof in, "%s/gen.jsonl", dir);
    snprintf(out, sizeof out, "%s/pairs.h5", dir);
    snprintf(sc, sizeof sc, "%s/scores.jsonl", dir);
    write_text(in, "{\"prompt\": \"q1\", \"completions\": [\"a\", \"b\", \"a\", \"c\"]}\n"
                   "{\"prompt\": \"q2\", \"completions\": [\"d\", \"e\"]}\n");
    write_text(sc, "{\"scores\": [0.5, 0.1, 9, 0.9]}\n{\"scores\": [2, 2]}\n");
    Tokenizer *tok = tokenizer_bytes();
    PairsJob job = read_job(in, out);
    job.scorer = SCORER_EXTERNAL;
    job.scores_path = sc;
    PairsStats st;
    cr_assert_eq(pairs_build(NULL, NULL, tok, &job, &st), 0, "%s", err_msg());
    cr_expect_eq(st.duplicates, 1);
    cr_expect_eq(st.pairs, 1);
    cr_expect_eq(st.skipped_ties, 1, "q2 ties");
    PrefDataset pd;
    cr_assert_eq(pref_dataset_open(&pd, out), 0, "%s", err_msg());
    int e;
    char *c = pref_text(tok, &pd.chosen, 0, &e), *r = pref_text(tok, &pd.rejected, 0, &e);
    cr_expect_str_eq(c, "c", "the repeated \"a\" keeps its first score 0.5, not 9");
    cr_expect_str_eq(r, "b");
    free(c);
    free(r);
    pref_dataset_close(&pd);
    remove(out);

    write_text(sc, "{\"scores\": [0.5, 0.1, 9, 0.9]}\n{\"scores\": [2]}\n");
    cr_expect_eq(pairs_build(NULL, NULL, tok, &job, &st), -1);
    cr_expect(strstr(err_msg(), "scores.jsonl:2") && strstr(err_msg(), "gen.jsonl:2"), "%s",
              err_msg());
    cr_expect(access(out, F_OK) != 0, "no output after an error");
    write_text(sc, "{\"scores\": [0.5, 0.1, 9, 0.9]}\n");
    cr_expect_eq(pairs_build(NULL, NULL, tok, &job, &st), -1);
    cr_expect(strstr(err_msg(), "ends before"), "%s", err_msg());
    write_text(sc, "{\"scores\": [0.5, 0.1, 9, 0.9]}\n{\"scores\": [1, 2]}\n{\"scores\": []}\n");
    cr_expect_eq(pairs_build(NULL, NULL, tok, &job, &st), -1);
    cr_expect(strstr(err_msg(), "scores.jsonl:3"), "%s", err_msg());
    tokenizer_free(tok);
    rm_rf(dir);
}

Test(pairs, bad_input_is_named_by_file_and_line) {
    char dir[256], in[512], out[512];
    make_temp_dir(dir, sizeof dir, "pairsbad");
    snprintf(in, sizeof in, "%s/in.jsonl", dir);
    snprintf(out, sizeof out, "%s/pairs.h5", dir);
    Tokenizer *tok = tokenizer_bytes();
    PairsJob job = read_job(in, out);
    PairsStats st;
    const char *cases[][2] = {
        {"{\"prompt\": \"q\", \"answer\": \"1\", \"completions\": [\"a;1\", \"b\"]}\n[1, 2]\n",
         "in.jsonl:2: not a JSON object"},
        {"\n{\"answer\": \"1\", \"completions\": []}\n", "in.jsonl:2: field 'prompt'"},
        {"{\"prompt\": \"q\", \"completions\": [\"a\"]}\n", "in.jsonl:1: gold answer field"},
        {"{\"prompt\": \"q\", \"answer\": \"1\", \"completions\": [\"a\", 3]}\n",
         "in.jsonl:1: completions[1]"},
        {"{\"prompt\": \"q\", \"answer\": \"1\", \"completions\": [\"a\", \"b\"]}\n",
         "no pair was made"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_text(in, cases[i][0]);
        cr_expect_eq(pairs_build(NULL, NULL, tok, &job, &st), -1, "case %zu", i);
        cr_expect(strstr(err_msg(), cases[i][1]), "case %zu: %s", i, err_msg());
        cr_expect(access(out, F_OK) != 0, "case %zu: no output", i);
    }
    job.read_completions = 0;
    cr_expect_eq(pairs_build(NULL, NULL, tok, &job, &st), -1, "sampling without a model");
    tokenizer_free(tok);
    rm_rf(dir);
}

Test(pairs, sampled_completions_scored_by_gold_likelihood) {
    char dir[256], in[512], out[512];
    make_temp_dir(dir, sizeof dir, "pairss");
    snprintf(in, sizeof in, "%s/in.jsonl", dir);
    snprintf(out, sizeof out, "%s/pairs.h5", dir);
    write_text(in, "{\"prompt\": \"3+4=\", \"answer\": \"7\"}\n{\"prompt\": \"ab\", \"answer\": 12}\n");
    GPT *m = tiny_model(5, 48);
    Tokenizer *tok = tokenizer_bytes();
    PairsJob job = {0};
    job.input = in;
    job.output = out;
    job.scorer = SCORER_GOLD_LIKELIHOOD;
    job.answer_prefix = ";";
    job.quiet = 1;
    job.gen.sample = (SampleOptions){6, 1.0, 0, 1.0, tok->eos_id, NULL, NULL};
    job.gen.samples = 5;
    job.gen.seed = 99;
    job.gen.quiet = 1;
    PairsStats st;
    cr_assert_eq(pairs_build(m, m, tok, &job, &st), 0, "%s", err_msg());
    cr_expect_eq(st.lines, 2);
    cr_expect_eq(st.completions, 10);
    /* the same samples and scores, computed here, give the same best and worst */
    PrefDataset pd;
    cr_assert_eq(pref_dataset_open(&pd, out), 0, "%s", err_msg());
    const char *prompts[2] = {"3+4=", "ab"}, *golds[2] = {"7", "12"};
    int64_t pair = 0;
    for (int line = 0; line < 2; line++) {
        char **texts;
        int n = generate_texts(m, tok, &job.gen, prompts[line], line + 1, &texts);
        cr_assert_eq(n, 5);
        char *uniq[5];
        int u = 0;
        for (int k = 0; k < n; k++) {
            int dup = 0;
            for (int i = 0; i < u; i++) dup |= !strcmp(uniq[i], texts[k]);
            if (!dup) uniq[u++] = texts[k];
        }
        double s[5];
        cr_assert_eq(gold_likelihood_scores(m, tok, prompts[line], (const char *const *)uniq, u,
                                            ";", golds[line], 0, s), 0);
        int best = 0, worst = u - 1;
        for (int k = 0; k < u; k++) best = s[k] > s[best] ? k : best;
        for (int k = u - 1; k >= 0; k--) worst = s[k] < s[worst] ? k : worst;
        if (s[best] > s[worst]) {
            int e;
            char *c = pref_text(tok, &pd.chosen, pair, &e), *r = pref_text(tok, &pd.rejected,
                                                                            pair, &e);
            char *p = pref_text(tok, &pd.prompt, pair, &e);
            cr_expect_str_eq(p, prompts[line]);
            cr_expect_str_eq(c, uniq[best], "line %d chosen", line + 1);
            cr_expect_str_eq(r, uniq[worst], "line %d rejected", line + 1);
            free(c);
            free(r);
            free(p);
            pair++;
        }
        for (int k = 0; k < n; k++) free(texts[k]);
        free(texts);
    }
    cr_expect_eq(pd.n_pairs, pair);
    cr_expect_eq(st.pairs, pair);
    pref_dataset_close(&pd);
    tokenizer_free(tok);
    gpt_free(m);
    rm_rf(dir);
}

/* ------------------------------------------------- instances (command line) */

/* A random byte-level GPT-2 checkpoint at dir/name. */
static void save_tiny_model(const char *dir, const char *name, uint64_t seed) {
    GPTConfig cfg = {.n_layer = 1, .n_head = 2, .n_embd = 32, .vocab_size = 257,
                     .n_positions = 64, .layer_norm_epsilon = 1e-5f};
    GPT *m = gpt_create(&cfg, backend_cpu());
    cr_assert(m, "%s", err_msg());
    gpt_init_random(m, seed);
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    cr_assert_eq(mkdir_p(path), 0);
    cr_assert_eq(model_save_hf(m, path), 0, "%s", err_msg());
    gpt_free(m);
}

static void pairs_inputs(const char *dir) {
    char path[512];
    save_tiny_model(dir, "m1", 7);
    save_tiny_model(dir, "m2", 8);
    snprintf(path, sizeof path, "%s/q.jsonl", dir);
    write_text(path, "{\"prompt\": \"3+4=\", \"answer\": \"7\"}\n"
                     "{\"prompt\": \"ab\", \"answer\": \"12\"}\n"
                     "{\"prompt\": \"x\", \"answer\": 1}\n");
}

static json_t *dump_of(const char *dir, const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return jsonl_lines(path);
}

#define PAIRS_COMMON "--input %s/q.jsonl -n 6 --scorer gold-likelihood --answer-prefix \";\" -q"

Test(pairs_cli, instances_pool_the_completions_of_every_model_and_seed, .timeout = 120) {
    char dir[256];
    make_temp_dir(dir, sizeof dir, "pairs-inst");
    pairs_inputs(dir);
    /* each instance alone: its options, and the seed --seed + its position */
    RUN(dir, "pairs --model %s/m1 --samples 2 " PAIRS_COMMON " --out %s/s1.h5 --dump %s/s1.jsonl",
        dir, dir, dir, dir);
    RUN(dir, "pairs --model %s/m1 --samples 3 --temperature 0.5 --seed 7 " PAIRS_COMMON
             " --out %s/s2.h5 --dump %s/s2.jsonl --scorer-model %s/m1",
        dir, dir, dir, dir, dir);
    RUN(dir, "pairs --model %s/m2 --samples 2 --seed 1339 --scorer-model %s/m1 " PAIRS_COMMON
             " --out %s/s3.h5 --dump %s/s3.jsonl",
        dir, dir, dir, dir, dir);
    const char *multi = "pairs --model %s/m1 --instance :temperature=0.5,seed=7,samples=3 "
                        "--model %s/m2 --samples 2 " PAIRS_COMMON " --out %s/%s.h5 --dump %s/%s.jsonl";
    RUN(dir, multi, dir, dir, dir, dir, "m", dir, "m");
    RUN(dir, multi, dir, dir, dir, dir, "again", dir, "again");
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/m.jsonl", dir);
    snprintf(b, sizeof b, "%s/again.jsonl", dir);
    size_t na, nb;
    char *x = read_file(a, &na), *y = read_file(b, &nb);
    cr_assert(x && y);
    cr_expect(na == nb && !memcmp(x, y, na), "two runs of the same instances differ");
    free(x);
    free(y);

    json_t *single[3] = {dump_of(dir, "s1.jsonl"), dump_of(dir, "s2.jsonl"),
                         dump_of(dir, "s3.jsonl")};
    json_t *m = dump_of(dir, "m.jsonl");
    cr_assert_eq(json_array_size(m), 3);
    int64_t n_pairs = 0;
    for (size_t line = 0; line < 3; line++) {
        json_t *o = json_array_get(m, line);
        json_t *comp = json_object_get(o, "completions"), *sc = json_object_get(o, "scores");
        json_t *from = json_object_get(o, "from"), *names = json_object_get(o, "instances");
        cr_assert_eq(json_array_size(names), 3);
        char want[600];
        snprintf(want, sizeof want, "%s/m1:temperature=0.5,seed=7,samples=3", dir);
        cr_expect_str_eq(json_string_value(json_array_get(names, 1)), want,
                         "the label resolves the empty directory");
        /* the pool: instance by instance, the first copy of a text kept */
        size_t k = 0;
        for (int i = 0; i < 3; i++) {
            json_t *so = json_array_get(single[i], line);
            json_t *sc_i = json_object_get(so, "scores");
            size_t j;
            json_t *t;
            json_array_foreach(json_object_get(so, "completions"), j, t) {
                int seen = 0;
                for (size_t q = 0; q < k; q++)
                    seen |= json_equal(json_array_get(comp, q), t);
                if (seen) continue;
                cr_assert(k < json_array_size(comp), "line %zu: the pool is short", line + 1);
                cr_expect(json_equal(json_array_get(comp, k), t),
                          "line %zu completion %zu: not instance %d's sample %zu", line + 1, k,
                          i + 1, j);
                cr_expect_eq(json_integer_value(json_array_get(from, k)), i);
                double got = json_number_value(json_array_get(sc, k));
                double ref = json_number_value(json_array_get(sc_i, j));
                cr_expect(fabs(got - ref) < 1e-5, "line %zu completion %zu: score %g vs %g alone",
                          line + 1, k, got, ref);
                k++;
            }
        }
        cr_expect_eq(k, json_array_size(comp), "line %zu: the pool has extra completions",
                     line + 1);
        /* best vs worst over the union (first best, last worst) */
        int best = 0, worst = (int)k - 1;
        for (int q = 1; q < (int)k; q++)
            if (json_number_value(json_array_get(sc, q)) >
                json_number_value(json_array_get(sc, best)))
                best = q;
        for (int q = (int)k - 2; q >= 0; q--)
            if (json_number_value(json_array_get(sc, q)) <
                json_number_value(json_array_get(sc, worst)))
                worst = q;
        json_t *pr = json_object_get(o, "pairs");
        cr_assert_eq(json_array_size(pr), 1);
        cr_expect_eq(json_integer_value(json_array_get(json_array_get(pr, 0), 0)), best);
        cr_expect_eq(json_integer_value(json_array_get(json_array_get(pr, 0), 1)), worst);
        n_pairs++;
    }
    PrefDataset pd;
    char path[512];
    snprintf(path, sizeof path, "%s/m.h5", dir);
    cr_assert_eq(pref_dataset_open(&pd, path), 0, "%s", err_msg());
    cr_expect_eq(pd.n_pairs, n_pairs);
    pref_dataset_close(&pd);
    for (int i = 0; i < 3; i++) json_decref(single[i]);
    json_decref(m);
    rm_rf(dir);
}

Test(pairs_cli, one_instance_is_the_single_model_run, .timeout = 60) {
    char dir[256];
    make_temp_dir(dir, sizeof dir, "pairs-one");
    pairs_inputs(dir);
    RUN(dir, "pairs --model %s/m1 --samples 4 " PAIRS_COMMON " --out %s/a.h5 --dump %s/a.jsonl",
        dir, dir, dir, dir);
    RUN(dir, "pairs --instance %s/m1 --samples 4 " PAIRS_COMMON " --out %s/b.h5 --dump %s/b.jsonl",
        dir, dir, dir, dir);
    json_t *a = dump_of(dir, "a.jsonl"), *b = dump_of(dir, "b.jsonl");
    cr_assert_eq(json_array_size(a), 3);
    for (size_t i = 0; i < 3; i++) {
        json_t *x = json_array_get(a, i), *y = json_deep_copy(json_array_get(b, i));
        cr_expect_null(json_object_get(x, "from"), "one --model: the dump is as it was");
        cr_expect_not_null(json_object_get(y, "from"));
        json_object_del(y, "from");
        json_object_del(y, "instances");
        cr_expect(json_equal(x, y), "line %zu differs", i + 1);
        json_decref(y);
    }
    json_decref(a);
    json_decref(b);
    rm_rf(dir);
}

Test(pairs_cli, bad_instances_are_refused_naming_the_spec, .timeout = 60) {
    char dir[256], path[512];
    make_temp_dir(dir, sizeof dir, "pairs-badinst");
    pairs_inputs(dir);
    const struct {
        const char *args;
        int rc;
        const char *msg;
    } cases[] = {
        {"--model %s/m1 --instance :tempx=3", 2, "--instance ':tempx=3': unknown key 'tempx'"},
        {"--model %s/m1 --instance :seed=-1", 2, "seed '-1' is not a whole number"},
        {"--model %s/m1 --instance :temperature=nan", 2, "--instance temperature"},
        {"--model %s/m1 --instance :top-p=2", 2, "--instance ':top-p=2': --top-p must be in"},
        {"--instance :seed=1", 2, "names no model and there is no --model"},
        {"--model %s/m1 --instance nowhere:seed=1", 1, "instance 1 (nowhere:seed=1)"},
        {"--model %s/m1 --instance :samples=1 --read-completions", 2, "--read-completions"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char args[2048], full[2600];
        snprintf(args, sizeof args, cases[i].args, dir); /* a format without %s ignores dir */
        snprintf(full, sizeof full, "pairs %s --input %s/q.jsonl --out %s/x.h5 -n 4", args, dir,
                 dir);
        remove((snprintf(path, sizeof path, "%s/log", dir), path));
        int rc = retort(dir, full);
        size_t len;
        char *log = read_file(path, &len);
        cr_expect_eq(rc, cases[i].rc, "case %zu: %s exited %d: %s", i, full, rc, log);
        cr_expect(log && strstr(log, cases[i].msg), "case %zu: %s", i, log);
        free(log);
        cr_expect(access((snprintf(path, sizeof path, "%s/x.h5", dir), path), F_OK) != 0,
                  "case %zu left an output", i);
    }
    rm_rf(dir);
}

/* --answer SPEC: the exact scorer reads answers as retort eval does (the last
 * number, normalized; the gold read by the same spec). */
Test(pairs_cli, exact_scorer_takes_an_answer_spec, .timeout = 60) {
    char dir[256], path[512];
    make_temp_dir(dir, sizeof dir, "pairs-spec");
    snprintf(path, sizeof path, "%s/gen.jsonl", dir);
    write_text(path, "{\"prompt\": \"q1\", \"answer\": \"7\", \"completions\": [\"so 7, then "
                     "8\", \"the answer is 7\", \"3.0 is nothing\", \"no\"]}\n"
                     "{\"prompt\": \"q2\", \"answer\": \"1,000\", \"completions\": [\"x 1000\", "
                     "\"y 999\", \"1000.0\"]}\n");
    RUN(dir, "pairs --read-completions --input %s --out %s/p.h5 --answer last-number --pairing "
             "all --dump %s/d.jsonl",
        path, dir, dir);
    json_t *d = dump_of(dir, "d.jsonl");
    cr_assert_eq(json_array_size(d), 2);
    const double want[2][4] = {{0, 1, 0, 0}, {1, 0, 1, -1}};
    for (size_t i = 0; i < 2; i++) {
        json_t *sc = json_object_get(json_array_get(d, i), "scores");
        for (size_t k = 0; k < json_array_size(sc); k++)
            cr_expect_eq(json_number_value(json_array_get(sc, k)), want[i][k], "line %zu, %zu",
                         i + 1, k);
    }
    json_decref(d);
    size_t len;
    char *log = read_file((snprintf(path, sizeof path, "%s/log", dir), path), &len);
    cr_assert(log);
    assert_contains(log, "-> 5 pairs");
    assert_contains(log, "1 with no answer matched");
    free(log);
    snprintf(path, sizeof path, "%s/gen.jsonl", dir);
    char args[1024];
    snprintf(args, sizeof args, "pairs --read-completions --input %s --out %s/q.h5 --answer "
                                "last-number --answer-pattern x", path, dir);
    cr_expect_eq(retort(dir, args), 2, "--answer with --answer-pattern");
    snprintf(args, sizeof args, "pairs --read-completions --input %s --out %s/q.h5 --answer "
                                "'regex:('", path, dir);
    cr_expect_eq(retort(dir, args), 2, "a spec that does not compile");
    cr_expect(access((snprintf(path, sizeof path, "%s/q.h5", dir), path), F_OK) != 0);
    rm_rf(dir);
}
