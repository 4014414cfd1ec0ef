/* eval/metrics.h — text metrics for evaluation and distillation, computed the
 * way the Python reference implementations compute them (checked against
 * sacrebleu 2.x and rouge-score 0.1.2 by tests/test_metrics.c):
 *
 *   BLEU      sacrebleu BLEU() defaults: 13a tokenization, 'exp' smoothing,
 *             n-grams up to 4, case-sensitive, brevity penalty against the
 *             closest reference length (ties to the shorter). Corpus BLEU has
 *             no effective order; sentence BLEU (sacrebleu.sentence_bleu) has.
 *   chrF      sacrebleu CHRF() defaults: character 1..6-grams, no word n-grams,
 *             beta 2, whitespace removed, corpus-level statistics.
 *   ROUGE-L   rouge-score RougeScorer(['rougeL']) F-measure with its default
 *             tokenizer: lowercase, every run of characters outside [a-z0-9]
 *             separates tokens, no stemming; LCS over those tokens.
 *   exact / token F1   see below (not sacrebleu; defined here).
 *
 * Text is UTF-8. "Whitespace" everywhere is Python's str.isspace() set (ASCII
 * \t\n\v\f\r, \x1c-\x1f, space, U+0085, U+00A0, U+1680, U+2000-200A, U+2028,
 * U+2029, U+202F, U+205F, U+3000), since the references split with str.split().
 * Bytes that are not well-formed UTF-8 count as one character each (as Python's
 * errors="surrogateescape" would see them); they never count as whitespace.
 *
 * BLEU and chrF scores are on sacrebleu's 0..100 scale; ROUGE-L, exact match
 * and token F1 are in 0..1. Functions that can fail return -1 with err_set(). */
#ifndef RETORT_METRICS_H
#define RETORT_METRICS_H

#include <stdint.h>

#include "util/util.h"

#define BLEU_MAX_ORDER 4

typedef struct {
    double score;                        /* 0..100 */
    double bp;                           /* brevity penalty */
    double ratio;                        /* sys_len / ref_len, 0 when ref_len is 0 */
    double precisions[BLEU_MAX_ORDER];   /* percent, smoothed as sacrebleu reports them */
    int64_t sys_len, ref_len;            /* tokens; ref_len sums the closest reference lengths */
    int64_t correct[BLEU_MAX_ORDER];     /* clipped n-gram matches per order */
    int64_t total[BLEU_MAX_ORDER];       /* hypothesis n-grams per order */
} BleuResult;

/* sacrebleu's '13a' tokenization of one line (mteval-v13a): drops "<skipped>",
 * joins "-\n", newlines become spaces, unescapes &quot; &amp; &lt; &gt;, splits
 * off ASCII punctuation except ' - . , ; splits . and , unless between digits;
 * splits - after a digit; collapses whitespace. Newly allocated; free() it.
 * (BLEU strips trailing whitespace from a segment before this step.) */
char *tokenize_13a(const char *line);

/* Corpus BLEU of hyps[0:n] against n_refs reference streams: refs[r * n + i]
 * is reference r of hypothesis i (sacrebleu's refs=[stream_0, stream_1, ...]).
 * With several references, each n-gram is clipped by its largest count in any
 * of them. 0, or -1 (error set) when n < 1, n_refs < 1 or a string is NULL. */
int bleu_corpus(const char *const *hyps, const char *const *refs, int n, int n_refs,
                BleuResult *out);

/* sacrebleu.sentence_bleu(hyp, refs[0:n_refs]).score: as one-segment corpus
 * BLEU but with effective order (orders the hypothesis is too short for are
 * left out of the geometric mean). Used to pick the n-best hypothesis closest
 * to a gold target. -1 (error set) on bad arguments. */
double bleu_sentence(const char *hyp, const char *const *refs, int n_refs);

/* sacrebleu CHRF().corpus_score(hyps, [refs]).score: character n-gram
 * statistics summed over the corpus, then the F2 of the averaged precision
 * and recall over the orders both sides have. -1 (error set) on bad arguments. */
double chrf_corpus(const char *const *hyps, const char *const *refs, int n);

/* Self-BLEU of n >= 2 samples drawn for one prompt, a diversity measure
 * (higher = more alike): the mean over i of
 *     bleu_sentence(samples[i], the other n - 1 samples as references)
 * i.e. sacrebleu.sentence_bleu(samples[i], samples[:i] + samples[i+1:]).
 * Average the values of several prompts yourself. -1 (error set) when n < 2. */
double self_bleu(const char *const *samples, int n);

/* rouge-score's rougeL F-measure of hyp (prediction) against ref (target):
 * 2PR / (P + R), P = LCS / |hyp tokens|, R = LCS / |ref tokens|; 0 when
 * either side has no tokens. */
double rouge_l_f(const char *hyp, const char *ref);

/* 1 when hyp and ref are equal after stripping surrounding whitespace, else 0. */
int exact_match(const char *hyp, const char *ref);

/* SQuAD-style token F1 over whitespace-separated tokens, case-sensitive, with
 * no article or punctuation normalisation: common = sum over tokens of
 * min(count in hyp, count in ref); P = common / |hyp|, R = common / |ref|,
 * F1 = 2PR / (P + R); 0 when common is 0; when either side has no tokens,
 * 1 if both have none, else 0. */
double token_f1(const char *hyp, const char *ref);

#endif
