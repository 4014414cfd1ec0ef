/* eval/lmcor.h — LMCOR correctors (Vernikos et al., EACL 2024, "Small
 * Language Models Improve Giants by Rewriting Their Outputs"): a large model
 * (the giant) writes a pool of candidates for a source, and a small model
 * (the corrector) reads the source and every candidate and writes the
 * target. `retort correct build` turns source + candidates + gold into the
 * corrector's sft examples; `retort correct run` chains giant -> corrector at
 * inference. Both format the corrector's input with lmcor_input, so what the
 * corrector is trained on and what it reads at inference are the same bytes.
 *
 * The corrector's input (every piece configurable, LmcorFormat):
 *
 *   {source}{sep}{prefix 1}{candidate 1}{sep}{prefix 2}{candidate 2}...{sep}{cue}
 *
 * with the defaults sep "\n", prefix "Candidate {i}: " ({i} is the
 * candidate's number from 1, wherever it appears in the prefix) and cue
 * "Correction:":
 *
 *   {source}
 *   Candidate 1: {c1}
 *   Candidate 2: {c2}
 *   Correction:
 *
 * and its target (the sft completion) is target_prefix + gold, " " + gold by
 * default, so a decoder writes the correction after "Correction: " as text
 * would read; `correct run` removes the target prefix from the start of the
 * corrector's output.
 *
 * Which candidates, in which order (lmcor_arrange), in this order of steps:
 *   1. every string of the candidate fields, field by field, as written (a
 *      field holds a list of strings, as `retort generate --out x.jsonl`
 *      writes "completions", or one string);
 *   2. dedup: exact duplicates dropped, the first kept (off by default: how
 *      often the giant wrote the same output is evidence the corrector can
 *      weigh, as the paper's pool keeps it);
 *   3. max_candidates: the first N kept (the giant's greedy output, first in
 *      its pool, always stays);
 *   4. shuffle: a permutation drawn from (seed, the line's number in its
 *      file), so a line gets the same order whatever else the file holds, and
 *      `build` and `run --pool` on one file agree.
 */
#ifndef RETORT_LMCOR_H
#define RETORT_LMCOR_H

#include <jansson.h>
#include <stdint.h>

#include "data/tokenizer.h"
#include "eval/answer.h"
#include "eval/generate_io.h"
#include "eval/metrics.h"
#include "model/model.h"

#define LMCOR_MAX_FIELDS 16

typedef struct {
    const char *candidate_prefix; /* "Candidate {i}: " */
    const char *separator;        /* "\n" */
    const char *cue;              /* "Correction:" */
    const char *target_prefix;    /* " " */
    int shuffle;                  /* 0: as generated; 1: shuffled by (seed, line) */
    uint64_t seed;
    int dedup;                    /* drop exact duplicates (first kept) */
    int max_candidates;           /* keep the first N after dedup; 0 = all */
} LmcorFormat;

/* The fields of an input line. */
typedef struct {
    const char *prompt_field;                         /* the source, "prompt" */
    const char *candidate_fields[LMCOR_MAX_FIELDS];   /* "completions" when none given */
    int n_candidate_fields;
    const char *reference_field;                      /* the gold target, "reference" */
} LmcorFields;

void lmcor_format_defaults(LmcorFormat *f);
void lmcor_fields_defaults(LmcorFields *f);

/* Steps 2-4 above on cands[0:n] in place (the pointers are only moved, not
 * freed); returns how many are kept. line seeds the shuffle. */
int lmcor_arrange(const LmcorFormat *f, long line, const char **cands, int n);

/* The corrector's input for source and cands[0:n] (already arranged): a new
 * string. */
char *lmcor_input(const LmcorFormat *f, const char *source, const char *const *cands, int n);

/* The corrector's target for gold: target_prefix + gold, a new string. */
char *lmcor_target(const LmcorFormat *f, const char *gold);

/* The correction in the corrector's output: out without a leading
 * target_prefix (a pointer into out). */
const char *lmcor_correction(const LmcorFormat *f, const char *out);

/* The candidates of one parsed line, the strings of every candidate field in
 * order (pointers into obj), into a new array *cands; returns their count.
 * -1 with the error naming file:line, the field and the fix when a field is
 * missing, is neither a string nor a list of strings, or holds a non-string,
 * or when the line has no candidate at all. */
int lmcor_line_candidates(const LmcorFields *fields, const json_t *obj, const char *file,
                          long line, const char ***cands);

/* ---------------------------------------------------------------- build */

typedef struct {
    const char *input;  /* JSONL: source, candidates, gold */
    const char *output; /* JSONL of {"prompt", "completion"} (sft) */
    LmcorFields fields;
    LmcorFormat format;
} LmcorBuildJob;

typedef struct {
    int64_t examples;
    int64_t candidates;  /* read from the candidate fields */
    int64_t kept;        /* in the corrector inputs */
    int64_t duplicates;  /* dropped by dedup */
} LmcorBuildStats;

/* Writes one {"prompt": corrector input, "completion": target} line per input
 * line, through OUT.tmp renamed when complete. -1 with the error set (file:line
 * and field for bad input); no output file then. stats may be NULL. */
int lmcor_build(const LmcorBuildJob *job, LmcorBuildStats *stats);

/* ------------------------------------------------------------------ run */

typedef struct {
    const char *input;  /* JSONL: prompts (with a giant) or the pool (without) */
    const char *output; /* JSONL: each input line + candidates, corrector_input, correction */
    LmcorFields fields; /* candidate fields are read only without a giant */
    LmcorFormat format;
    /* The giant's pool: its greedy output, then giant.candidates samples
     * drawn with giant.sample (LMCOR: 4 at temperature 0.6), as `retort
     * generate --candidates N` writes it (generate_io.h); 0: greedy only.
     * giant.prompt_field names the giant's prompt (LMCOR few-shot prompts its
     * giant) when it is not the source; NULL: the source. giant.chat wraps it
     * in the giant's chat template. */
    GenerateJob giant;
    GenerateJob corrector; /* greedy by default; the first completion is the correction */
    /* With fields.reference_field: also the accuracy of the answers this spec
     * reads (eval/answer.h), the gold read the same way; NULL = none. */
    const AnswerSpec *answer;
    int quiet;
} LmcorRunJob;

/* With a reference field: the giant's greedy output (the pool's first
 * candidate) and the correction, each scored against the reference
 * (eval/metrics.h; accuracy and no_answer only with an answer spec, else NAN
 * and 0). */
typedef struct {
    double bleu, chrf, exact_match, rouge_l, token_f1;
    double accuracy;
    int64_t no_answer; /* outputs in which the spec found no answer */
} LmcorScores;

typedef struct {
    int64_t lines;
    int64_t candidates;     /* in the pools */
    int has_reference;
    LmcorScores giant, correction;
    double seconds;
} LmcorRunResult;

/* giant and giant_tok may be NULL: the candidates then come from the input
 * lines' candidate fields (a pool written by `retort generate`, or by any
 * other model or toolkit). Each model encodes and decodes with its own
 * tokenizer. -1 with the error set (file:line for bad lines); no output file
 * then. */
int lmcor_run(GPT *giant, const Tokenizer *giant_tok, GPT *corrector,
              const Tokenizer *corrector_tok, const LmcorRunJob *job, LmcorRunResult *out);

/* The result as one JSON object ({"lines", "giant": {...}, "correction":
 * {...}}) written atomically to path. */
int lmcor_result_write_json(const LmcorRunResult *r, const char *path);

#endif
