/* eval/pairs.h — preference pairs from a model's own samples (`retort pairs`).
 *
 * For each JSONL line: take n completions of the line's prompt (sampled with
 * generate_texts_many, the prompts of many lines decoded together with the
 * seeds generate_texts gives each line, or read from a `retort generate --out
 * x.jsonl` file), drop
 * repeated texts (the first copy stays), give each a score, and write
 * chosen/rejected pairs into a `pref` dataset (data/h5data.h): the prompt's
 * tokens without EOS, chosen and rejected completions followed by EOS, exactly
 * as `retort data build --schema pref` builds them.
 *
 * Scorers:
 *   exact            1 when the answer extracted from the completion equals the
 *                    line's gold answer (both stripped of surrounding
 *                    whitespace), else 0. The answer is the first capture
 *                    group of the first match of --answer-pattern (PCRE2, or
 *                    POSIX ERE), the whole match when the pattern has no group,
 *                    the whole completion when no pattern is given. No match
 *                    (unparseable) scores 0. With answer_spec instead (an
 *                    eval/answer.h spec: whole, regex:RE with its last match,
 *                    last-number, option), the score is answer_spec_match's
 *                    verdict, exactly as `retort eval --answer` counts
 *                    accuracy; "no answer" is the spec finding none.
 *   gold-likelihood  COLLATE-style: the scorer model's mean log-probability of
 *                    the gold answer's tokens after prompt + completion
 *                    (+ answer prefix): the row is the concatenation of the four
 *                    texts tokenized separately (+ EOS after the gold answer
 *                    with gold_eos), and the score is the mean over the gold
 *                    tokens (and that EOS) of log p(token | everything before).
 *                    Rows longer than the context lose tokens from the left.
 *   external         scores from a JSONL file, one line per non-blank line of
 *                    the input, in the same order: {"scores": [x0, x1, ...]}
 *                    with one number per completion of that line (before
 *                    deduplication; a repeated text keeps its first score).
 *
 * Pairing (difference d = score(chosen) - score(rejected)):
 *   best-worst  one pair per prompt: the highest score (first on ties) against
 *               the lowest (last on ties), kept when d > margin (default 0, so
 *               only exact ties are skipped);
 *   all         every pair of distinct completions with d > margin, the higher
 *               scored one chosen; in input order (i < j).
 *
 * Instances (COLLATE's multi-instance rationales): with job->instances, each
 * instance samples its own completions of every prompt (its model and its
 * sampling options: temperature, top-k/p, seed, samples), and the completions
 * of all instances, in instance order, are one pool: deduplicated (the first
 * instance's copy stays), scored and paired as above. Without instances, the
 * one sampler with job->gen is the only instance and nothing else changes.
 */
#ifndef RETORT_PAIRS_H
#define RETORT_PAIRS_H

#include <stdint.h>

#include "data/tokenizer.h"
#include "eval/generate_io.h"
#include "model/model.h"

typedef enum { SCORER_EXACT = 0, SCORER_GOLD_LIKELIHOOD, SCORER_EXTERNAL } PairScorer;
typedef enum { PAIRING_BEST_WORST = 0, PAIRING_ALL } PairingRule;

/* -1 (error set) for an unknown name. Names: exact, gold-likelihood, external;
 * best-worst, all. */
int pair_scorer_from_name(const char *name, PairScorer *out);
int pairing_from_name(const char *name, PairingRule *out);

/* ---- answer extraction (the exact scorer) ---- */
typedef struct AnswerMatcher AnswerMatcher;
/* pattern NULL or "": the whole text is the answer. posix: POSIX ERE
 * (regcomp REG_EXTENDED) instead of PCRE2. NULL (error set) for a pattern
 * that does not compile, naming the position. */
AnswerMatcher *answer_matcher_new(const char *pattern, int posix);
void answer_matcher_free(AnswerMatcher *am);
/* The answer in text, newly allocated and stripped of surrounding whitespace,
 * or NULL when the pattern does not match. */
char *answer_extract(const AnswerMatcher *am, const char *text);
/* 1 or 0 as the exact scorer defines it; *parsed (may be NULL) = 0 when the
 * pattern did not match. */
double exact_match_score(const AnswerMatcher *am, const char *completion, const char *gold,
                         int *parsed);

/* ---- gold-likelihood ----
 * The scores of n completions of one prompt (batched in one forward; the
 * model's vocabulary must cover the tokenizer's). -1 (error set) when the gold
 * answer is empty or does not fit in the model's context. */
int gold_likelihood_scores(GPT *m, const Tokenizer *tok, const char *prompt,
                           const char *const *completions, int n, const char *answer_prefix,
                           const char *gold, int gold_eos, double *scores);

/* ---- pairing ----
 * Writes (chosen, rejected) index pairs to pairs (room for n*(n-1)/2 for
 * PAIRING_ALL, 1 for best-worst) and returns their count; *skipped gets the
 * candidate pairs left out because d <= margin (best-worst: 1 when the prompt
 * gives no pair and n >= 2, else 0; all: the count of such unordered pairs). */
int pairs_select(const double *scores, int n, PairingRule rule, double margin, int (*pairs)[2],
                 int64_t *skipped);

/* ---- the whole job ---- */
#define PAIRS_MAX_INSTANCES 16

typedef struct {
    GPT *model;        /* samples this instance's completions */
    GenerateJob gen;   /* its sampling options (samples >= 1, beams 0) */
    const char *label; /* how the report and the dump name it */
} PairsInstance;

typedef struct {
    const char *input, *output;     /* JSONL in, pref .h5 out */
    const char *prompt_field;       /* default "prompt" */
    const char *gold_field;         /* exact, gold-likelihood: default "answer" */
    PairScorer scorer;
    const char *answer_pattern;     /* exact */
    const struct AnswerSpec *answer_spec; /* exact, instead of answer_pattern (eval/answer.h) */
    int posix_regex;                /* exact: POSIX ERE instead of PCRE2 */
    const char *answer_prefix;      /* gold-likelihood: text between completion and answer */
    int gold_eos;                   /* gold-likelihood: also score EOS after the answer */
    const char *scores_path;        /* external */
    int read_completions;           /* take completions from the input lines, don't sample */
    const char *completions_field;  /* default "completions" */
    PairingRule pairing;
    double margin;
    GenerateJob gen;                /* sampling: sample, samples, seed, stop (beams 0) */
    const char *dump;               /* optional JSONL: each line's completions and scores
                                     * (with instances, also "from": each completion's
                                     * instance index, and "instances": their labels) */
    int quiet;
    /* COLLATE: 1..PAIRS_MAX_INSTANCES samplers instead of (sampler, gen); the
     * sampler argument of pairs_build is then NULL. gen still carries the
     * options every instance shares (stop strings, --chat, context policy). */
    const PairsInstance *instances;
    int n_instances;
} PairsJob;

typedef struct {
    int64_t completions;            /* sampled (before deduplication) */
    int64_t distinct;               /* kept after deduplication, i.e. scored */
    double score_sum;               /* over its distinct completions */
    int64_t chosen, rejected;       /* pairs it gave the chosen / rejected side */
} PairsInstanceStats;

typedef struct {
    int64_t lines, completions, duplicates, pairs;
    int64_t skipped_ties;           /* as pairs_select counts them */
    int64_t prompts_without_pair;
    int64_t unparsed;               /* exact: completions the pattern did not match */
    double score_sum;               /* over the scored (deduplicated) completions */
    int64_t scored;
    double seconds;
    PairsInstanceStats instance[PAIRS_MAX_INSTANCES]; /* with job->instances */
} PairsStats;

/* sampler: the model that samples (NULL with read_completions); scorer: the
 * model for gold-likelihood (NULL otherwise). -1 (error set, with file:line for
 * bad input) on failure; nothing is left at job->output then. */
int pairs_build(GPT *sampler, GPT *scorer, const Tokenizer *tok, const PairsJob *job,
                PairsStats *stats);

#endif
