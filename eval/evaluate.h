/* eval/evaluate.h — `retort eval`: a model over a JSONL of prompts and
 * references, or given hypotheses against references without a model.
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
 *   accuracy         with an answer spec (eval/answer.h): the share of lines
 *                    whose completion's answer matches answer_field's
 *                    (answer_spec_match); no_answer counts completions in
 *                    which the spec found no answer (they count as wrong).
 * predictions (optional): a JSONL file with each input line plus "prediction"
 * (and "samples"; with an answer spec, "extracted_answer" (null when none was found)
 * and "correct").
 *
 * Hypotheses (evaluate_hypotheses): the completions are read from a JSONL
 * instead of generated: each line's hypothesis_field, a string, or an array
 * whose first string is used (generate's "completions": the first sample,
 * the best beam, or with --candidates the greedy output). Without a field
 * name a line's "prediction" is used, else its "completions". With input set,
 * hypothesis line i is scored against input line i (non-blank lines; the two
 * files must have as many); without it, the hypotheses file holds the
 * references itself. No model: ppl is NaN and ref_tokens 0. */
#ifndef RETORT_EVALUATE_H
#define RETORT_EVALUATE_H

#include "eval/answer.h"
#include "eval/generate_io.h"
#include "eval/metrics.h"

typedef struct {
    const char *input;            /* prompts and references (optional with hypotheses) */
    const char *reference_field;  /* default "reference" */
    const char *predictions;      /* optional output JSONL */
    GenerateJob gen;              /* prompt_field, sampling, beams, stop strings, seed */
    const AnswerSpec *answer;     /* NULL: no accuracy */
    const char *answer_field;     /* gold answer (a string or a number); default reference_field */
    const char *hypotheses;       /* evaluate_hypotheses: the JSONL of outputs */
    const char *hypothesis_field; /* default: "prediction", else "completions" */
    int64_t max_lines;            /* score the first max_lines lines only; 0 = all */
    int quiet;
} EvalJob;

typedef struct {
    int64_t lines;
    BleuResult bleu;
    double chrf, exact_match, rouge_l, token_f1;
    double ppl;                   /* NaN without a model */
    int64_t ref_tokens;           /* tokens scored for ppl (EOS included) */
    double self_bleu;             /* NAN unless samples > 1 */
    double accuracy;              /* NAN without an answer spec */
    int64_t no_answer;            /* completions the spec found no answer in */
    double seconds;
} EvalResult;

/* Generates with m and scores (above); the in-process form of `retort eval`,
 * for callers with a loaded model (the trainer's generation-based eval). The
 * caller sets job->gen as cmd_eval does: sample (max_new_tokens, temperature
 * 0 for greedy, eos_id = the tokenizer's EOS or chat->end_of_turn), samples
 * >= 1, seed (gen.candidates is ignored); and turns the model's train mode off (gpt_set_train_mode) for
 * the call when LoRA dropout is on. Uses the model's activations (it runs
 * forwards of batch 1 and decodes), so the caller re-runs its own forward
 * afterwards. -1 with the error set (file:line for bad lines). */
int evaluate_jsonl(GPT *m, const Tokenizer *tok, const EvalJob *job, EvalResult *out);

/* Scores job->hypotheses against job->input or themselves (above), without a
 * model. -1 with the error set (file:line for bad lines; both files and
 * their counts when they differ). */
int evaluate_hypotheses(const EvalJob *job, EvalResult *out);

/* The value of a metric by name: bleu, chrf, exact_match, rouge_l, token_f1,
 * ppl, self_bleu, accuracy. -1 with the error set (listing the names) for
 * another name; the value may be NaN when it was not measured. */
int eval_result_metric(const EvalResult *r, const char *name, double *value);

/* 1 when a larger value of the metric is better, 0 when smaller is (ppl,
 * self_bleu), -1 with the error set for an unknown name. */
int eval_metric_higher_is_better(const char *name);

/* Writes the result as one JSON object (metrics names as keys; null for what
 * was not measured) to path. */
int eval_result_write_json(const EvalResult *r, const char *path);

#endif
