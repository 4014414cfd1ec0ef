/* tests/test_eval.c — `retort eval`'s scoring (eval/evaluate.c):
 *   - references equal to the model's own greedy completions score BLEU 100,
 *     chrF 100, exact match 1, ROUGE-L 1;
 *   - the perplexity is exp of the mean negative log-softmax of the reference
 *     tokens and EOS, recomputed here from the full logits (a path that does
 *     not go through the fused classifier);
 *   - greedy samples give self-BLEU 100, sampled ones less;
 *   - a line without the reference field is named by file:line. */
#include <criterion/criterion.h>

#include <jansson.h>
#include <math.h>

#include "data/tokenizer.h"
#include "eval/evaluate.h"
#include "tests/testutil.h"
#include "model/backend.h"
#include "model/model.h"

static GPT *byte_model(void) {
    GPTConfig cfg = {.n_layer = 2, .n_head = 4, .n_embd = 64, .vocab_size = 257, .n_positions = 48,
                     .layer_norm_epsilon = 1e-5f, .vocab_pad = 0};
    return perturbed_cpu_model(&cfg, 21, 22, 0.1);
}

static EvalJob job_for(const char *in) {
    EvalJob job = {0};
    job.input = in;
    job.gen.sample = (SampleOptions){6, 0.0, 0, 1.0, 256, NULL, NULL};
    job.gen.samples = 1;
    job.gen.length_penalty = 1.0;
    job.gen.seed = 3;
    job.gen.quiet = 1;
    job.quiet = 1;
    return job;
}

/* -sum log softmax(logits)[ref tokens, EOS] over the full logits of prompt+ref+EOS */
static double nll_by_hand(GPT *m, const char *prompt, const char *ref, int *count) {
    int V = gpt_config(m)->vocab_size, np = (int)strlen(prompt), nr = (int)strlen(ref);
    int T = np + nr, seq[96], tg[96];
    cr_assert_lt(T, 95);
    for (int i = 0; i < np; i++) seq[i] = (unsigned char)prompt[i];
    for (int i = 0; i < nr; i++) seq[np + i] = (unsigned char)ref[i];
    seq[T] = 256;
    for (int j = 0; j < T; j++) tg[j] = -1;
    float *logits = malloc((size_t)T * V * sizeof(float));
    gpt_forward(m, seq, tg, 1, T, NULL);
    gpt_logits(m, logits);
    double nll = 0;
    *count = 0;
    for (int j = np - 1; j < T; j++) {
        const float *x = logits + (size_t)j * V;
        double mx = x[0], s = 0;
        for (int v = 1; v < V; v++) mx = x[v] > mx ? x[v] : mx;
        for (int v = 0; v < V; v++) s += exp(x[v] - mx);
        nll -= x[seq[j + 1]] - mx - log(s);
        (*count)++;
    }
    free(logits);
    return nll;
}

Test(eval, own_greedy_outputs_score_perfectly_and_ppl_matches_by_hand) {
    GPT *m = byte_model();
    Tokenizer *tok = tokenizer_bytes();
    char dir[256], in[512];
    make_temp_dir(dir, sizeof dir, "eval");
    snprintf(in, sizeof in, "%s/e.jsonl", dir);
    const char *prompts[2] = {"the cat", "a dog"};
    char refs[2][64]; /* 6 bytes, at most 18 once made valid UTF-8 */
    GenerateJob g = job_for(in).gen;
    FILE *f = fopen(in, "w");
    for (int i = 0; i < 2; i++) {
        char **texts;
        int got = generate_texts(m, tok, &g, prompts[i], i + 1, &texts);
        cr_assert_eq(got, 1);
        cr_assert(strlen(texts[0]) > 0 && strlen(texts[0]) < sizeof refs[i]);
        snprintf(refs[i], sizeof refs[i], "%s", texts[0]);
        free(texts[0]);
        free(texts);
        /* jansson escapes whatever bytes the model chose */
        json_t *o = json_pack("{s:s, s:s}", "prompt", prompts[i], "reference", refs[i]);
        char *line = json_dumps(o, JSON_COMPACT);
        fprintf(f, "%s\n", line);
        free(line);
        json_decref(o);
    }
    fclose(f);
    EvalJob job = job_for(in);
    EvalResult r;
    cr_assert_eq(evaluate_jsonl(m, tok, &job, &r), 0, "%s", err_msg());
    cr_expect_eq(r.lines, 2);
    cr_expect_float_eq(r.exact_match, 1.0, 1e-12);
    cr_expect_float_eq(r.bleu.score, 100.0, 1e-9);
    cr_expect_float_eq(r.chrf, 100.0, 1e-9);
    /* ROUGE-L (rouge-score's tokenizer) sees only [a-z0-9] runs: a reference
     * without any scores 0 even against itself */
    double rouge_self = (rouge_l_f(refs[0], refs[0]) + rouge_l_f(refs[1], refs[1])) / 2;
    cr_expect_float_eq(r.rouge_l, rouge_self, 1e-12);
    double nll = 0;
    int count = 0;
    for (int i = 0; i < 2; i++) {
        int c;
        nll += nll_by_hand(m, prompts[i], refs[i], &c);
        count += c;
    }
    cr_expect_eq(r.ref_tokens, count);
    double want = exp(nll / count);
    cr_expect(fabs(r.ppl - want) <= 1e-5 * want, "ppl %.8g, by hand %.8g", r.ppl, want);
    cr_expect(isnan(r.self_bleu), "no self-BLEU with one sample");

    /* self-BLEU: greedy samples are identical (100); sampled ones differ */
    job.gen.samples = 3;
    cr_assert_eq(evaluate_jsonl(m, tok, &job, &r), 0, "%s", err_msg());
    cr_expect_float_eq(r.self_bleu, 100.0, 1e-9);
    job.gen.sample.temperature = 1.5;
    cr_assert_eq(evaluate_jsonl(m, tok, &job, &r), 0, "%s", err_msg());
    cr_expect_lt(r.self_bleu, 100.0);

    f = fopen(in, "w");
    fprintf(f, "{\"prompt\": \"x\", \"reference\": \"y\"}\n{\"prompt\": \"x\"}\n");
    fclose(f);
    cr_expect_eq(evaluate_jsonl(m, tok, &job, &r), -1);
    cr_expect(strstr(err_msg(), "e.jsonl:2") && strstr(err_msg(), "'reference'"), "%s",
              err_msg());
    tokenizer_free(tok);
    gpt_free(m);
    rm_rf(dir);
}

/* The in-process API the trainer calls: metrics by name, which way is better,
 * a line limit, and accuracy with an answer spec. */
Test(eval, metrics_by_name_max_lines_and_accuracy) {
    GPT *m = byte_model();
    Tokenizer *tok = tokenizer_bytes();
    char dir[256], in[512];
    make_temp_dir(dir, sizeof dir, "eval-api");
    snprintf(in, sizeof in, "%s/e.jsonl", dir);
    write_text(in, "{\"prompt\": \"a\", \"reference\": \"r\", \"gold\": 1}\n"
                   "{\"prompt\": \"b\", \"reference\": \"s\", \"gold\": 2}\n"
                   "{\"prompt\": \"c\", \"reference\": \"t\", \"gold\": 3}\n");
    EvalJob job = job_for(in);
    job.max_lines = 2;
    EvalResult r;
    cr_assert_eq(evaluate_jsonl(m, tok, &job, &r), 0, "%s", err_msg());
    cr_expect_eq(r.lines, 2);
    cr_expect(isnan(r.accuracy), "no spec, no accuracy");
    double v;
    cr_expect_eq(eval_result_metric(&r, "chrf", &v), 0);
    cr_expect_eq(v, r.chrf);
    cr_expect_eq(eval_result_metric(&r, "ppl", &v), 0);
    cr_expect_eq(v, r.ppl);
    cr_expect_eq(eval_result_metric(&r, "accuracy", &v), 0);
    cr_expect(isnan(v));
    cr_expect_eq(eval_result_metric(&r, "acc", &v), -1);
    cr_expect(strstr(err_msg(), "unknown eval metric 'acc'") && strstr(err_msg(), "accuracy"),
              "%s", err_msg());
    cr_expect_eq(eval_metric_higher_is_better("bleu"), 1);
    cr_expect_eq(eval_metric_higher_is_better("accuracy"), 1);
    cr_expect_eq(eval_metric_higher_is_better("ppl"), 0);
    cr_expect_eq(eval_metric_higher_is_better("self_bleu"), 0);
    cr_expect_eq(eval_metric_higher_is_better("nope"), -1);
    /* numbers as gold answers; a regex that reads nothing counts every line */
    AnswerSpec *spec = answer_spec_parse("regex:QQ(\\d)");
    cr_assert(spec);
    job.answer = spec;
    job.answer_field = "gold";
    job.max_lines = 0;
    cr_assert_eq(evaluate_jsonl(m, tok, &job, &r), 0, "%s", err_msg());
    cr_expect_eq(r.lines, 3);
    cr_expect_eq(r.accuracy, 0.0);
    cr_expect_eq(r.no_answer, 3);
    job.answer_field = "reference";
    write_text(in, "{\"prompt\": \"a\", \"reference\": \"r\", \"gold\": [1]}\n");
    job.answer_field = "gold";
    cr_expect_eq(evaluate_jsonl(m, tok, &job, &r), -1);
    cr_expect(strstr(err_msg(), "e.jsonl:1: gold answer field 'gold'"), "%s", err_msg());
    answer_spec_free(spec);
    tokenizer_free(tok);
    gpt_free(m);
    rm_rf(dir);
}
