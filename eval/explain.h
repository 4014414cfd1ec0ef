/* eval/explain.h — explanations from a (large) model, and the multi-task
 * training data made of them: `retort explain` and `retort explain build`.
 *
 * Generation (Li et al. 2022, "Explanations from Large Language Models Make
 * Small Reasoners Better"): for each JSONL line {question, answer} the model
 * writes explanations in one of three modes:
 *   cot          chain of thought: the prompt is the cot template filled with
 *                the question; the model explains and ends with an answer.
 *   rationalize  rationalization: the prompt also holds the gold answer (the
 *                rationalize template); the model explains it.
 *   crop         chain of thought, and each sample whose extracted answer is
 *                not the gold one (wrong, or none found) is replaced by the
 *                rationalization with the same sample index (CROP).
 * Templates are text in which "{question}" and "{answer}" are replaced by the
 * line's question and gold answer (nothing else is special: other braces stay
 * as written). The answer of an explanation is found by an answer spec
 * (eval/answer.h) and compared with the gold answer by answer_spec_match.
 * Sample k of a line is drawn with the generators generate_texts seeds from
 * (seed, line number, k), in every mode alike: crop's rationalizations are
 * exactly the rationalize mode's samples.
 *
 * Output: one JSONL line per explanation written (keep_correct drops the
 * incorrect ones), in input order, samples in order:
 *   {"line": N, "sample": k, "question": Q, "answer": GOLD,
 *    "explanation": TEXT, "extracted": ANSWER or null, "correct": true|false,
 *    "mode": "cot" | "rationalize"}
 * ("mode" says which prompt wrote it: under crop, "rationalize" marks a
 * replaced chain of thought). Written to OUT.tmp and renamed when complete.
 *
 * Building (`explain build`): from explanation JSONL (question, answer,
 * explanation: explain's output, or any file with those fields) to sft JSONL
 * lines {"prompt", "completion", "task"} for `retort data build --schema sft
 * --task-field task`, one line per input line and task, tasks in the order
 * asked. With Q the question, A the gold answer, E the explanation, P(t) the
 * task's prefix, S the separator and J the answer joiner:
 *   task               prompt              completion    paper
 *   answer             P + Q + S           A             MT-CoT's QA task, COLLATE's
 *                                                         instruction -> answer
 *   explanation        P + Q + S           E + J + A     MT-CoT's explanation task
 *                                          (E alone with  (explanation, then answer;
 *                                           explanation_only: MT-Re)
 *   rationale          P + Q + S           E             COLLATE instruction -> rationale
 *   rationale-answer   P + Q + S + E + J   A             COLLATE instruction + rationale
 *                                                         -> answer
 * Default prefixes: "[answer] ", "[explain] ", "[rationale] ", and for
 * rationale-answer the rationale prefix "[rationale] ", so that a rationale
 * sampled from the rationale prompt and scored by `retort pairs --scorer
 * gold-likelihood --answer-prefix J` is read exactly as this task trains it.
 * S = "\n", J = "\nAnswer: ". The answer task is written once per distinct
 * (question, answer), at its first line (several explanations of a question
 * would otherwise repeat it); the others once per line. only_correct skips
 * lines whose "correct" is false. */
#ifndef RETORT_EXPLAIN_H
#define RETORT_EXPLAIN_H

#include <stdint.h>

#include "data/tokenizer.h"
#include "eval/answer.h"
#include "eval/generate_io.h"
#include "model/model.h"

typedef enum { EXPLAIN_COT = 0, EXPLAIN_RATIONALIZE, EXPLAIN_CROP } ExplainMode;

/* -1 (error set) for a name other than cot, rationalize, crop. */
int explain_mode_from_name(const char *name, ExplainMode *out);
const char *explain_mode_name(ExplainMode mode);

#define EXPLAIN_COT_TEMPLATE "Q: {question}\nA: Let's think step by step."
#define EXPLAIN_RATIONALIZE_TEMPLATE \
    "Q: {question}\nThe correct answer is {answer}. Explain why.\nA: Let's think step by step."
/* "... so the answer is 12." -> 12: the last "the answer is" and what follows
 * it up to a final period and the end of its line. */
#define EXPLAIN_ANSWER_SPEC "regex:[Tt]he answer is:?\\s*(.+?)\\.?\\s*(?:\\n|$)"

/* The template with every "{question}" and "{answer}" replaced (answer may
 * be NULL when the template has none); a new string. */
char *explain_fill(const char *tmpl, const char *question, const char *answer);

/* Checks a mode's templates: cot needs {question} and must not show
 * {answer} (the gold would leak into the chain of thought); rationalize
 * needs both. -1 with the error naming the option to fix. */
int explain_templates_check(ExplainMode mode, const char *cot, const char *rationalize);

typedef struct {
    const char *input, *output;       /* JSONL in, JSONL out */
    const char *question_field;       /* default "question" */
    const char *answer_field;         /* default "answer": a string or an integer */
    ExplainMode mode;
    const char *cot_template;         /* NULL: EXPLAIN_COT_TEMPLATE */
    const char *rationalize_template; /* NULL: EXPLAIN_RATIONALIZE_TEMPLATE */
    const AnswerSpec *answer;         /* how the answer is found in an explanation */
    int keep_correct;                 /* write only explanations whose answer is right */
    GenerateJob gen;                  /* sampling: sample, samples, seed, stop, chat (beams 0) */
    int quiet;
} ExplainJob;

typedef struct {
    int64_t lines;
    int64_t cot_correct, cot_wrong, cot_none;  /* chains of thought by their answer */
    int64_t rat_correct, rat_wrong, rat_none;  /* rationalizations (crop: the replacements) */
    int64_t written, dropped;                  /* dropped: keep_correct */
    double seconds;
} ExplainStats;

/* -1 with the error set (file:line and the field for bad input); nothing is
 * left at job->output then. stats may be NULL. */
int explain_run(GPT *m, const Tokenizer *tok, const ExplainJob *job, ExplainStats *stats);

/* ---- explain build ---- */
typedef enum {
    EXPLAIN_TASK_ANSWER = 0,
    EXPLAIN_TASK_EXPLANATION,
    EXPLAIN_TASK_RATIONALE,
    EXPLAIN_TASK_RATIONALE_ANSWER,
    EXPLAIN_N_TASKS
} ExplainTask;

/* The task's name as written in the task field ("answer", "explanation",
 * "rationale", "rationale-answer"), and its default prefix. */
const char *explain_task_name(ExplainTask t);
const char *explain_task_default_prefix(ExplainTask t);
/* -1 (error set) for an unknown name. */
int explain_task_from_name(const char *name, ExplainTask *out);

#define EXPLAIN_SEPARATOR "\n"
#define EXPLAIN_ANSWER_JOINER "\nAnswer: "

typedef struct {
    const char *input, *output;       /* explanation JSONL in, sft JSONL out */
    const char *question_field;       /* default "question" */
    const char *answer_field;         /* default "answer" */
    const char *explanation_field;    /* default "explanation" */
    ExplainTask tasks[EXPLAIN_N_TASKS]; /* in output order, no repeats */
    int n_tasks;
    const char *prefix[EXPLAIN_N_TASKS]; /* NULL: the default */
    const char *separator;            /* NULL: EXPLAIN_SEPARATOR */
    const char *answer_joiner;        /* NULL: EXPLAIN_ANSWER_JOINER */
    int explanation_only;             /* explanation task: E, not E + J + A (MT-Re) */
    int only_correct;                 /* skip lines with "correct": false */
    const char *task_field;           /* default "task" */
} ExplainBuildJob;

typedef struct {
    int64_t lines, skipped_incorrect, repeated_answers;
    int64_t written[EXPLAIN_N_TASKS];
} ExplainBuildStats;

/* Parses "answer,explanation" into job->tasks; -1 (error set) for an unknown
 * or repeated name. */
int explain_tasks_parse(const char *list, ExplainBuildJob *job);

/* -1 with the error set (file:line and field); nothing left at output then. */
int explain_build(const ExplainBuildJob *job, ExplainBuildStats *stats);

#endif
