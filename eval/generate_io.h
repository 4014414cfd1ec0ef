/* eval/generate_io.h — generation over a JSONL file of prompts.
 *
 * Each input line is a JSON object whose prompt_field holds the prompt text.
 * Per prompt, `samples` completions are sampled (decoded together as the rows
 * of one batch, each row with its own generator seeded from (seed, line,
 * sample), so results do not depend on batching), or beam search returns its
 * `samples`-best. Stop strings end a completion where one first appears: the
 * text is cut before it, and the tokens are cut to those that decode to a
 * prefix of the cut text.
 *
 * Output by extension:
 *   .jsonl  each line repeats the input object and adds "completions" and
 *           "logps" (and for beam search "scores").
 *   .h5     a `kd` dataset (data/h5data.h): examples are prompt + chosen
 *           completion + EOS with the loss on the completion and its EOS;
 *           every kept completion of the prompt goes to candidates/; with
 *           store_topk, the teacher's top-K next-token log-probs at every
 *           position of each example. `select` picks the targets: the best
 *           (first) completion (sequence-level KD), every completion
 *           (multi-candidate), or the one with the highest sentence BLEU
 *           against the gold reference (seq-inter). add_gold also keeps the
 *           gold reference as an example. Filters drop empty completions,
 *           unfinished ones (no EOS or stop string before max_new_tokens), and
 *           copies of the prompt.
 * The output is written to OUT.tmp and renamed when complete. */
#ifndef RETORT_GENERATE_IO_H
#define RETORT_GENERATE_IO_H

#include "data/tokenizer.h"
#include "model/generate.h"

typedef enum { SELECT_BEST = 0, SELECT_ALL, SELECT_BLEU } TargetSelect;

/* -1 (error set) for a name other than best, all, bleu. */
int target_select_from_name(const char *name, TargetSelect *out);

#define GENERATE_MAX_STOPS 16

typedef struct {
    const char *input, *output;
    const char *prompt_field;  /* default "prompt" */
    SampleOptions sample;      /* sampling (beams == 0); stop is set internally */
    int samples;               /* completions per prompt (sampling), or n-best (beam) */
    int beams;                 /* 0 = sample */
    double length_penalty;
    uint64_t seed;
    int quiet;
    const char *stop[GENERATE_MAX_STOPS]; /* stop strings */
    int n_stop;
    /* .h5 (kd) output */
    TargetSelect select;
    const char *reference_field; /* gold target field (select bleu, add_gold) */
    int add_gold;
    int store_topk;            /* K teacher log-probs per token; 0 = none */
    int drop_empty, drop_unfinished, drop_copies;
} GenerateJob;

typedef struct {
    int64_t prompts, completions, examples, candidates;
    int64_t dropped_empty, dropped_unfinished, dropped_copies;
    int64_t prompts_without_example; /* every completion filtered out */
    int64_t new_tokens;
    double seconds;
} GenerateStats;

/* The completions of one prompt as text (stop strings applied), for callers
 * that score them (retort eval): writes a new array of `got` new strings to
 * *texts and returns got. index seeds the per-sample generators as the line
 * number does in generate_jsonl. */
int generate_texts(GPT *m, const Tokenizer *tok, const GenerateJob *job, const char *prompt_text,
                   long index, char ***texts);

/* -1 with the error set (file:line for bad input lines). stats may be NULL. */
int generate_jsonl(GPT *m, const Tokenizer *tok, const GenerateJob *job, GenerateStats *stats);

#endif
