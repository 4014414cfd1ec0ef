/* eval/evaluate.h — `retort eval`: a model over a JSONL of prompts and
 * references.
 *
 * Per line: the model's completion of prompt_field (greedy, sampled, or the
 * best beam; stop strings apply) is scored against reference_field, and the
 * reference's own likelihood given the prompt is measured. Reported:
 *   bleu, chrf       corpus scores as sacrebleu computes them (eval/metrics.h)
 *   exact_match      share of completions equal to the reference (stripped)
 *   rouge_l, token_f1  means over lines
 *   ppl              exp(- sum log p(reference tokens + EOS | prompt) / count)
 *   self_bleu        with samples > 1 (sampling): mean over lines of the
 *                    self-BLEU of that line's samples (lower = more diverse);
 *                    the other metrics then score each line's first sample.
 * predictions (optional): a JSONL file with each input line plus "prediction"
 * (and "samples"). */
#ifndef RETORT_EVALUATE_H
#define RETORT_EVALUATE_H

#include "eval/generate_io.h"
#include "eval/metrics.h"

typedef struct {
    const char *input;
    const char *reference_field;  /* default "reference" */
    const char *predictions;      /* optional output JSONL */
    GenerateJob gen;              /* prompt_field, sampling, beams, stop strings, seed */
    int quiet;
} EvalJob;

typedef struct {
    int64_t lines;
    BleuResult bleu;
    double chrf, exact_match, rouge_l, token_f1;
    double ppl;
    int64_t ref_tokens;           /* tokens scored for ppl (EOS included) */
    double self_bleu;             /* NAN unless samples > 1 */
    double seconds;
} EvalResult;

/* -1 with the error set (file:line for bad lines). */
int evaluate_jsonl(GPT *m, const Tokenizer *tok, const EvalJob *job, EvalResult *out);

/* Writes the result as one JSON object (metrics names as keys) to path. */
int eval_result_write_json(const EvalResult *r, const char *path);

#endif
