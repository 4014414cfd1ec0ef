/* data/build.h — `retort data build`: text or JSONL in, an HDF5 dataset out.
 *
 * Input ending in .jsonl or .json is JSON Lines (one object per line): lm takes
 * the text field of each object as a document; sft takes prompt + completion as
 * an example, with loss_mask 0 on the prompt and 1 on the completion and its
 * EOS, or a chat conversation (messages, below); pref takes prompt, chosen and
 * rejected as a pair (cut apart as TRL 1.x does by default: boundary below). Anything else (or "-" for standard input) is plain text, lm only, and
 * the whole input is one document. Every document ends with EOS. The input is
 * streamed line by line; the output goes through DatasetWriter (.tmp + rename).
 */
#ifndef RETORT_BUILD_H
#define RETORT_BUILD_H

#include <stdint.h>

#include "data/h5data.h"

typedef struct {
    const char *input;            /* path, or "-" for standard input */
    const char *output;           /* .h5 path */
    Schema schema;                /* lm or sft */
    const char *tokenizer;        /* "bytes" */
    const char *text_field;       /* lm JSONL field, "text" */
    const char *prompt_field;     /* sft JSONL fields, "prompt" ... */
    const char *completion_field; /* ... and "completion" */
    int skip_bad;                 /* skip (and count) malformed lines instead of failing */
    int quiet;                    /* no report on stdout */
    /* ---- chat conversations (sft) ----
     * A JSONL line holding `messages_field` (an array of {"role": "system" |
     * "user" | "assistant", "content": "..."}) becomes one example per
     * assistant turn: the conversation up to and including that turn, with
     * loss_mask 1 only on that turn's content and end marker. Lines without the
     * field fall back to prompt + completion. Template "plain" renders each turn
     * as "<|role|>\n" + content + "\n" (role = system, user or assistant),
     * and an assistant turn then ends with EOS (earlier assistant turns in the
     * context too, as the model produced them). The header "<|assistant|>\n"
     * is prompt (mask 0); content, "\n" and EOS are trained (mask 1). The
     * pieces are encoded one by one and concatenated. */
    const char *messages_field;   /* "messages" */
    /* Chat turns to train on (GLPFT / α-UMi): a comma-separated list of role
     * names, e.g. "planner,caller,summarizer"; NULL keeps the above
     * ("assistant"). With a list, a message's role may be any name of
     * letters, digits, '_' and '-' (user, observation, ...), rendered
     * "<|name|>\n" + content + "\n" as above; every turn whose role is listed
     * becomes one example (the conversation up to it as context, the loss on
     * that turn's content, "\n" and EOS only) and ends with EOS wherever it
     * appears; max_len cuts the context from the left as for any example.
     * The example's role column is that turn's role, the names stored in the
     * order of the list (so files built with the same list share ids, and a
     * listed role with no turns still has its id). Not with role_field. */
    const char *train_roles;
    /* How conversations (sft messages, conversational pref pairs) become
     * tokens: "plain" (above), or a chat template's path (a model directory,
     * a tokenizer_config.json or a .jinja file; data/chat.h). Unset: the
     * tokenizer directory's own template when it has one (chat_template.jinja
     * or tokenizer_config.json's "chat_template"), else "plain". With a
     * template, an sft line {"messages": [...], "tools": [...] (optional),
     * "chat_template_kwargs": {...} (optional)} is ONE example: the whole
     * conversation rendered as transformers' apply_chat_template renders it
     * and tokenized as it tokenizes it (no special tokens added: the template
     * writes them), with loss_mask 1 on the assistant tokens exactly as
     * return_assistant_tokens_mask marks them (data/chat_data.h: the
     * template's {% generation %} blocks, or, without them, each assistant
     * turn's content, tool calls and end-of-turn token found by rendering the
     * conversation up to it), no EOS appended; max_len keeps the start
     * (TRL's SFT truncation) and a conversation left without an assistant
     * token is dropped. A pref line whose chosen is an array of messages is
     * TRL's conversational format ({"prompt": [...], "chosen": [...],
     * "rejected": [...]}, or no prompt: the messages chosen and rejected share
     * from the start), tokenized as TRL 1.x's DPOTrainer does (the prompt
     * rendered with add_generation_prompt, prompt + response without; the
     * responses start where the prompt's ids stop being a prefix of both).
     * Not with train_roles (its own plain rendering). */
    const char *chat_template;
    /* sft: a string field naming each line's role (GLPFT); NULL = no role
     * column. Names get ids in first-seen order, stored in attribute `roles`;
     * every line must then carry the field. */
    const char *role_field;
    /* sft: the same for a task tag (multi-task data): column `task`, names in
     * attribute `tasks`. */
    const char *task_field;
    /* sft: longest example in tokens, 0 = no limit. An example with prompt P
     * and completion C (C includes the EOS) longer than max_len keeps the START
     * of C, at most max_len tokens, and the END of P in what room is left
     * (none when C alone reaches max_len). Examples left with no completion
     * token are dropped (counted; impossible while C holds its EOS). */
    int64_t max_len;
    /* pref: JSONL {prompt, chosen, rejected}; chosen and rejected each end
     * with EOS, the prompt does not. The prompt comes from prompt_field.
     * max_len (pref) is TRL's max_length: a pair whose prompt alone has
     * max_len tokens or more is dropped (counted), and each response keeps its
     * first max_len - prompt tokens (truncation_mode keep_start). */
    const char *chosen_field;     /* "chosen" */
    const char *rejected_field;   /* "rejected" */
    /* pref: how prompt and responses are cut apart, recorded in the file's
     * `boundary` attribute (data/h5data.h):
     *   "joint" (default; TRL 1.x's DPOTrainer): the prompt, and prompt +
     *     response + EOS, are each encoded as one text; the responses start
     *     where the prompt's encoding stops being a prefix of BOTH prompt +
     *     chosen and prompt + rejected, and the prompt keeps the tokens before
     *     that. With a BPE and a prompt ending in a space ("Answer: " + "the
     *     sea") the space merges into " the", so the prompt keeps "Answer:"
     *     and " the" is the response's first token, as the model sees it.
     *   "separate" (TRL 0.x, and files built before the option): prompt and
     *     each response encoded on their own, EOS appended. */
    const char *boundary;
} BuildOptions;

/* What a build did; the report prints it. */
typedef struct {
    int64_t lines;          /* input lines read */
    int64_t docs;           /* documents (lm) or examples (sft) written */
    int64_t tokens;         /* tokens written, EOS included */
    int64_t trained_tokens; /* sft: tokens with loss_mask 1 */
    int64_t skipped;        /* malformed lines skipped (skip_bad) */
    int64_t truncated;      /* sft: examples cut to max_len; pref: pairs cut to max_len */
    int64_t dropped;        /* sft: examples dropped, no completion left after truncation;
                             * pref: pairs whose prompt alone fills max_len */
    int64_t prompt_split;   /* pref, joint: pairs whose prompt's encoding is not a prefix
                             * of prompt + response (the responses start earlier) */
    int n_roles;            /* sft with role_field: distinct role names */
    int n_tasks;            /* sft with task_field: distinct task names */
} BuildStats;

/* 0, or -1 with the error set (naming file:line and field for bad input);
 * on failure no output file is left behind. */
int data_build(const BuildOptions *o);
/* The same, also filling *stats (may be NULL) on success. */
int data_build_stats(const BuildOptions *o, BuildStats *stats);

#endif
