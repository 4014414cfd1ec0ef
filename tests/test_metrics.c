/* tests/test_metrics.c — eval/metrics.c against the Python references:
 * sacrebleu (13a tokenization, corpus BLEU, sentence BLEU, chrF, self-BLEU
 * from multi-reference sentence BLEU) and rouge-score (ROUGE-L), plus exact
 * match and token F1 as defined in eval/metrics.h. The expected values are in
 * tests/fixtures/metrics.json, made by tests/make_metrics_fixtures.py from
 * sentences of two public-domain texts, corrupted at every strength.
 * Tolerances: 0.01 on the 0..100 scales (BLEU, chrF), 1e-6 on 0..1 scores;
 * lengths, counts and tokenizations exactly. Each test prints its largest
 * deviation. */
#include <criterion/criterion.h>

#include <jansson.h>

#include "eval/metrics.h"
#include "tests/testutil.h"

static json_t *load_fixture(void) {
    json_error_t e;
    json_t *fix = json_load_file("tests/fixtures/metrics.json", 0, &e);
    cr_assert(fix, "tests/fixtures/metrics.json: %s (line %d); run tests from the repository root",
              e.text, e.line);
    return fix;
}

static const char *str_at(json_t *obj, const char *key) {
    const char *s = json_string_value(json_object_get(obj, key));
    cr_assert(s, "fixture: no string \"%s\"", key);
    return s;
}

static double num_at(json_t *obj, const char *key) {
    json_t *v = json_object_get(obj, key);
    cr_assert(json_is_number(v), "fixture: no number \"%s\"", key);
    return json_number_value(v);
}

static void track(double *worst, double got, double want) {
    double d = fabs(got - want);
    if (d > *worst || d != d) *worst = d;
}

Test(metrics, tokenize_13a_matches_sacrebleu) {
    json_t *fix = load_fixture(), *row;
    size_t i;
    int checked = 0;
    json_array_foreach(json_object_get(fix, "tokenize_13a"), i, row) {
        char *got = tokenize_13a(str_at(row, "in"));
        cr_expect_str_eq(got, str_at(row, "out"), "13a of line %zu", i);
        free(got);
        checked++;
    }
    json_array_foreach(json_object_get(fix, "sentences"), i, row) {
        char *h = tokenize_13a(str_at(row, "hyp")), *r = tokenize_13a(str_at(row, "ref"));
        cr_expect_str_eq(h, str_at(row, "hyp_13a"), "13a of hypothesis %zu", i);
        cr_expect_str_eq(r, str_at(row, "ref_13a"), "13a of reference %zu", i);
        free(h);
        free(r);
        checked += 2;
    }
    cr_assert_gt(checked, 400);
    fprintf(stderr, "13a tokenization: %d lines, all identical to sacrebleu\n", checked);
    json_decref(fix);
}

Test(metrics, corpus_bleu_and_chrf_match_sacrebleu) {
    json_t *fix = load_fixture(), *sents = json_object_get(fix, "sentences"), *corpus;
    size_t c;
    double worst_bleu = 0, worst_prec = 0, worst_chrf = 0;
    json_array_foreach(json_object_get(fix, "corpora"), c, corpus) {
        const char *name = str_at(corpus, "name");
        json_t *rows = json_object_get(corpus, "rows"), *refs2 = json_object_get(corpus, "refs2");
        int n = (int)json_array_size(rows), n_refs = refs2 ? 2 : 1;
        const char **hyps = malloc(n * sizeof(char *)), **refs = malloc(2 * n * sizeof(char *));
        for (int i = 0; i < n; i++) {
            json_t *row = json_array_get(sents, json_integer_value(json_array_get(rows, i)));
            hyps[i] = str_at(row, "hyp");
            refs[i] = str_at(row, "ref");
            if (refs2) refs[n + i] = json_string_value(json_array_get(refs2, i));
        }
        BleuResult got;
        cr_assert_eq(bleu_corpus(hyps, refs, n, n_refs, &got), 0, "%s: %s", name, err_msg());
        json_t *want = json_object_get(corpus, "bleu");
        cr_expect_eq(got.sys_len, json_integer_value(json_object_get(want, "sys_len")), "%s", name);
        cr_expect_eq(got.ref_len, json_integer_value(json_object_get(want, "ref_len")), "%s", name);
        cr_expect(fabs(got.score - num_at(want, "score")) < 0.01, "%s: BLEU %.6f, sacrebleu %.6f",
                  name, got.score, num_at(want, "score"));
        cr_expect(fabs(got.bp - num_at(want, "bp")) < 1e-9, "%s: BP %.9f vs %.9f", name, got.bp,
                  num_at(want, "bp"));
        cr_expect(fabs(got.ratio - num_at(want, "ratio")) < 1e-9, "%s: ratio", name);
        track(&worst_bleu, got.score, num_at(want, "score"));
        for (int k = 0; k < BLEU_MAX_ORDER; k++) {
            double p = json_number_value(json_array_get(json_object_get(want, "precisions"), k));
            cr_expect(fabs(got.precisions[k] - p) < 0.01, "%s: %d-gram precision %.6f vs %.6f",
                      name, k + 1, got.precisions[k], p);
            track(&worst_prec, got.precisions[k], p);
        }
        if (!refs2) {
            double chrf = chrf_corpus(hyps, refs, n);
            cr_expect(fabs(chrf - num_at(corpus, "chrf")) < 0.01, "%s: chrF %.6f, sacrebleu %.6f",
                      name, chrf, num_at(corpus, "chrf"));
            track(&worst_chrf, chrf, num_at(corpus, "chrf"));
        }
        free(hyps);
        free(refs);
    }
    cr_assert_gt(json_array_size(json_object_get(fix, "corpora")), 5);
    fprintf(stderr, "corpus BLEU: max |diff| %.3g (precisions %.3g); corpus chrF: %.3g\n",
            worst_bleu, worst_prec, worst_chrf);
    json_decref(fix);
}

Test(metrics, sentence_scores_match_references) {
    json_t *fix = load_fixture(), *row;
    size_t i;
    double worst_bleu = 0, worst_chrf = 0, worst_rouge = 0, worst_f1 = 0;
    json_array_foreach(json_object_get(fix, "sentences"), i, row) {
        const char *hyp = str_at(row, "hyp"), *ref = str_at(row, "ref");
        double bleu = bleu_sentence(hyp, &ref, 1), want = num_at(row, "sentence_bleu");
        cr_expect(fabs(bleu - want) < 0.01, "pair %zu: sentence BLEU %.6f, sacrebleu %.6f", i, bleu,
                  want);
        track(&worst_bleu, bleu, want);
        double chrf = chrf_corpus(&hyp, &ref, 1);
        cr_expect(fabs(chrf - num_at(row, "chrf")) < 0.01, "pair %zu: chrF %.6f vs %.6f", i, chrf,
                  num_at(row, "chrf"));
        track(&worst_chrf, chrf, num_at(row, "chrf"));
        double rouge = rouge_l_f(hyp, ref);
        cr_expect(fabs(rouge - num_at(row, "rouge_l")) < 1e-6, "pair %zu: ROUGE-L %.9f vs %.9f", i,
                  rouge, num_at(row, "rouge_l"));
        track(&worst_rouge, rouge, num_at(row, "rouge_l"));
        cr_expect_eq(exact_match(hyp, ref), (int)num_at(row, "exact"), "pair %zu: exact match", i);
        double f1 = token_f1(hyp, ref);
        cr_expect(fabs(f1 - num_at(row, "token_f1")) < 1e-9, "pair %zu: token F1 %.9f vs %.9f", i,
                  f1, num_at(row, "token_f1"));
        track(&worst_f1, f1, num_at(row, "token_f1"));
    }
    cr_assert_gt(json_array_size(json_object_get(fix, "sentences")), 100);
    fprintf(stderr, "sentences: max |diff| sentence BLEU %.3g, chrF %.3g, ROUGE-L %.3g, "
            "token F1 %.3g\n", worst_bleu, worst_chrf, worst_rouge, worst_f1);
    json_decref(fix);
}

Test(metrics, self_bleu_matches_sacrebleu_multi_reference) {
    json_t *fix = load_fixture(), *group;
    size_t g;
    double worst = 0;
    json_array_foreach(json_object_get(fix, "self_bleu"), g, group) {
        json_t *samples = json_object_get(group, "samples");
        int n = (int)json_array_size(samples);
        const char **s = malloc(n * sizeof(char *));
        for (int i = 0; i < n; i++) s[i] = json_string_value(json_array_get(samples, i));
        double got = self_bleu(s, n), want = num_at(group, "self_bleu");
        cr_expect(fabs(got - want) < 0.01, "group %zu (%d samples): self-BLEU %.6f vs %.6f", g, n,
                  got, want);
        track(&worst, got, want);
        free(s);
    }
    fprintf(stderr, "self-BLEU: max |diff| %.3g\n", worst);
    json_decref(fix);
}

Test(metrics, closest_of_n_best_is_picked_by_sentence_bleu) {
    /* the seq-inter distillation use: of several candidates, the one with the
     * highest sentence BLEU against the gold target */
    const char *gold = "The quick brown fox jumps over the lazy dog.";
    const char *cands[] = {"A slow green turtle.", "The quick brown fox jumped over a lazy dog.",
                           "The quick brown fox jumps over the lazy dog.", "quick fox"};
    /* sacrebleu.sentence_bleu(c, [gold]).score for each */
    const double want[] = {3.929752628321626, 39.281465090051285, 100.00000000000004,
                           1.2951112459987986};
    int best = 0;
    double scores[4];
    for (int i = 0; i < 4; i++) {
        scores[i] = bleu_sentence(cands[i], &gold, 1);
        cr_expect(fabs(scores[i] - want[i]) < 1e-9, "candidate %d: %.12f vs %.12f", i, scores[i],
                  want[i]);
        if (scores[i] > scores[best]) best = i;
    }
    cr_expect_eq(best, 2);
}

Test(metrics, bad_arguments_are_errors) {
    const char *one[] = {"a"};
    const char *with_null[] = {"a", NULL};
    BleuResult r;
    cr_expect_eq(bleu_corpus(one, one, 0, 1, &r), -1);
    cr_expect(strstr(err_msg(), "bleu_corpus"), "%s", err_msg());
    cr_expect_eq(bleu_corpus(one, one, 1, 0, &r), -1);
    cr_expect_eq(bleu_corpus(with_null, with_null, 2, 1, &r), -1);
    cr_expect(strstr(err_msg(), "NULL"), "%s", err_msg());
    cr_expect_eq(bleu_sentence("a", one, 0), -1);
    cr_expect_eq(chrf_corpus(one, one, 0), -1);
    cr_expect_eq(self_bleu(one, 1), -1);
    cr_expect(strstr(err_msg(), ">= 2"), "%s", err_msg());
}

Test(metrics, invalid_utf8_counts_bytewise) {
    /* not in the fixture (Python strings cannot hold these bytes): a stray
     * continuation byte and a truncated sequence count as one character each */
    const char *hyp = "ab\x80" "cd\xe2\x82", *ref = "ab\x80" "cd\xe2\x82";
    cr_expect(fabs(chrf_corpus(&hyp, &ref, 1) - 100.0) < 1e-9);
    cr_expect(fabs(bleu_sentence(hyp, &ref, 1) - 100.0) < 1e-9);
    cr_expect_eq(exact_match(hyp, ref), 1);
    cr_expect(fabs(token_f1(hyp, ref) - 1.0) < 1e-12);
    char *t = tokenize_13a("x\x80.y");
    cr_expect_str_eq(t, "x\x80 . y");
    free(t);
}
