/* eval/agent.h — the α-UMi inference loop and its metrics (`retort agent`).
 *
 * Three role models (or one model for every role: the single-model baseline)
 * work on a task over the tool environment (eval/toolenv.h). The context is
 * the conversation rendered exactly as `retort data build --train-roles
 * planner,caller,summarizer` renders it: each turn "<|role|>\n" + content +
 * "\n", and a planner, caller or summarizer turn then ends with EOS. A role
 * speaks by greedy decoding after its header "<|role|>\n" until EOS (or the
 * token limit); its text is the decoded tokens less one trailing "\n". A
 * context longer than the model's n_positions less the token limit keeps its
 * end (as the builder's max_len does).
 *
 * End to end: user query -> planner -> "Next: caller": caller -> its Action
 * is parsed and run, the observation appended -> planner again ... until the
 * planner says "Next: conclusion" or "Next: give up" (or anything without a
 * valid decision, which also hands over), or --max-steps planner turns; then
 * the summarizer writes the final answer.
 *
 * Metrics (α-UMi's, all in 0..1):
 *   step-level, on the gold trajectory with the gold turns before each step as
 *   context (teacher forcing):
 *     planning accuracy  planner turns whose decision (caller / conclusion /
 *                        give up) equals the gold turn's; no decision = wrong
 *     action EM          caller turns with tool name AND arguments equal to
 *                        gold (arguments as JSON objects: same keys, equal
 *                        values compared as text: 42, 42.0 and "42" are equal)
 *     tool name acc.     caller turns with the right tool name (α-UMi's Act. EM)
 *     hallucination      caller turns whose tool name is not a tool of the
 *                        environment (no parsable Action line counts too)
 *     argument F1        mean over caller turns of the F1 between the
 *                        key=value pairs of predicted and gold arguments, a
 *                        pair scoring 1 when key and value match and 1/2 when
 *                        only the key does (α-UMi's half credit); arguments
 *                        that are not a JSON object count as no pairs; both
 *                        empty = 1
 *     ROUGE-L            rouge_l_f (eval/metrics.h) of the summarizer's
 *                        answer against the gold final answer
 *   end to end:
 *     success            the task is solved: the final answer contains the
 *                        gold answer as a whole token (not inside a longer
 *                        number or word) and the planner did not give up; for
 *                        a task whose gold outcome is giving up, the planner
 *                        gave up
 *     e2e ROUGE-L        of the end-to-end final answer against the gold one
 *     steps              planner turns per task */
#ifndef RETORT_AGENT_H
#define RETORT_AGENT_H

#include <jansson.h>
#include <stdint.h>

#include "data/chat_data.h"
#include "data/tokenizer.h"
#include "model/model.h"

typedef struct {
    GPT *planner, *caller, *summarizer; /* may be one model three times */
    const Tokenizer *tok;
    int max_new_tokens;  /* per turn (default 128) */
    int max_steps;       /* planner turns end to end (default 6) */
    /* --chat (data/chat_data.h), NULL = off: a role's prompt, the context
     * rendered as above up to and including its header "<|role|>\n" (as
     * text, without the EOS tokens), is wrapped as one user turn by the
     * model's chat template with the generation prompt, and the role speaks
     * until the template's end-of-turn token or EOS. */
    const ChatPrompt *chat;
} Agent;

typedef enum {
    DECISION_NONE = 0,   /* no "Next: ..." line with a known value */
    DECISION_CALLER,
    DECISION_CONCLUSION,
    DECISION_GIVE_UP,
} Decision;

/* The decision in a planner turn: its last line starting "Next:" (spaces
 * around the value and one final period ignored): "caller", "conclusion" or
 * "give up", as α-UMi's data writes them ("Next: conclusion." in
 * X-PLUG/Multi-LLM-Agent GLPFT/process_data/toolbench/prepro_raw_stage_2.py);
 * "conclude", which retort's synthetic data wrote before it took upstream's
 * word, still reads as a conclusion so that older planners score the same. */
Decision agent_parse_decision(const char *planner_text);
const char *agent_decision_name(Decision d);

/* A caller turn "Action: NAME\nAction Input: JSON": 0 with *name and *args
 * (new strings, free them; args is the text after "Action Input:" to the end,
 * trimmed) or -1 (no "Action:" line; *name and *args NULL). A missing Action
 * Input gives args "". */
int agent_parse_action(const char *caller_text, char **name, char **args);

/* Argument F1 (above) of two argument texts. */
double agent_arg_f1(const char *pred_args, const char *gold_args);
/* 1 when both are JSON objects with the same keys and equal values. */
int agent_args_equal(const char *pred_args, const char *gold_args);
/* 1 when answer occurs in text as a whole token (see success above). */
int agent_answer_in(const char *text, const char *answer);

typedef struct {
    int64_t tasks;
    int64_t plan_steps, plan_correct;
    int64_t call_steps, action_em, tool_name_correct, hallucinated;
    double arg_f1_sum;
    int64_t summary_steps;
    double rouge_sum;
    int64_t success;
    double e2e_rouge_sum;
    int64_t e2e_steps;        /* planner turns, summed over tasks */
    double seconds;
} AgentMetrics;

/* The finished numbers (means of the sums above). */
typedef struct {
    double planning_accuracy, action_em, tool_name_accuracy, hallucination_rate, arg_f1,
        rouge_l, success_rate, e2e_rouge_l, mean_steps;
} AgentScores;
void agent_scores(const AgentMetrics *m, AgentScores *s);

/* Scores one model turn: role's prediction pred against the gold turn, into
 * *m (the step-level metrics above). */
void agent_score_step(const char *role, const char *pred, const char *gold, AgentMetrics *m);

/* The token ids a role model is given for turn `upto` of messages: turns
 * [0, upto) rendered as the builder renders them, then "<|role|>\n" of turn
 * upto (no truncation; with --chat that text wrapped by the template). Writes into *ids (grown as needed); returns the
 * count, or -1 with the error set for a malformed message. */
int64_t agent_prompt_ids(const Agent *a, const json_t *messages, size_t upto, uint32_t **ids,
                         int64_t *cap);

/* Scores one task (a record of eval/agent_tasks.h: messages, answer,
 * give_up) into *m (accumulating). When trace is not NULL it gets a new JSON
 * object describing the end-to-end run (trajectory, final answer, outcome).
 * 0, or -1 with the error set for a malformed record. */
int agent_eval_task(const Agent *a, const json_t *task, AgentMetrics *m, json_t **trace);

/* The loop end to end on one query: a new JSON object {"trajectory": [...],
 * "final_answer", "ended", "steps"}. */
json_t *agent_run(const Agent *a, const char *query);

/* Every task of a JSONL file (at most limit > 0 of them); predictions (may be
 * NULL) gets one trace per line. 0 or -1 with the error set. */
int agent_eval_file(const Agent *a, const char *path, int limit, const char *predictions,
                    int quiet, AgentMetrics *m);

/* A table on stdout, and the scores as JSON. */
void agent_print(const char *label, const AgentMetrics *m);
int agent_write_json(const AgentMetrics *m, const char *path);

#endif
