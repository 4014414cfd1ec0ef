/* data/chat.h — a model's chat template, loaded as transformers loads it and
 * rendered as transformers' apply_chat_template(tokenize=False) renders it,
 * with the byte spans of the template's {% generation %} blocks (what
 * return_assistant_tokens_mask marks).
 *
 * The template language is data/jinja.h's; this file adds what transformers
 * adds around it:
 *   - where the template comes from: a directory's chat_template.jinja (and
 *     additional_chat_templates/NAME.jinja), else its tokenizer_config.json's
 *     "chat_template" (a string, or a list of {"name", "template"}); or a
 *     tokenizer_config.json, or a .jinja file named directly;
 *   - which of several named templates: the one asked for, else "tool_use"
 *     when tools are passed and it exists, else "default";
 *   - the special tokens the template sees (bos_token, eos_token, unk_token,
 *     sep_token, pad_token, cls_token, mask_token: tokenizer_config.json's,
 *     as strings or {"content": ...} objects), which extra variables override;
 *   - the messages as transformers hands them over: keys whose value is null
 *     dropped, and a message's reasoning under "reasoning_content", "thinking"
 *     or "reasoning" copied to both "thinking" and "reasoning_content";
 *   - strftime_now reading a clock the caller can fix (tests, reproducible
 *     data builds), raise_exception failing the render with the template's
 *     message.
 *
 * Errors (unreadable file, no template, a construct the interpreter does not
 * implement, raise_exception, a runtime type error) set util.h's error with the
 * template's label and line:column and return NULL / -1.
 *
 * A loaded template is not changed by rendering: several threads may render
 * with one at once (setting its specials or time is not thread-safe).
 */
#ifndef RETORT_CHAT_H
#define RETORT_CHAT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ChatTemplate ChatTemplate;

/* One {% generation %} block of a render: bytes [start, end) of the output. */
typedef struct { size_t start, end; } ChatSpan;
typedef struct { ChatSpan *spans; size_t n, cap; } ChatSpans;
void chat_spans_free(ChatSpans *s);

/* path: a directory (chat_template.jinja, else tokenizer_config.json), a
 * tokenizer_config.json (or any .json holding "chat_template"), or a .jinja
 * file (special tokens then come from a tokenizer_config.json beside it, when
 * there is one). name: a named template to use always (NULL: transformers'
 * choice per render, see above). NULL with the error set on failure. */
ChatTemplate *chat_template_load(const char *path, const char *name);
/* A template from its source text; label names it in errors. */
ChatTemplate *chat_template_from_string(const char *source, const char *label);
void chat_template_free(ChatTemplate *t);

/* The special token the template sees under key ("bos_token", ...), NULL when
 * the tokenizer has none. Setting value NULL removes it. */
const char *chat_template_special(const ChatTemplate *t, const char *key);
void chat_template_set_special(ChatTemplate *t, const char *key, const char *value);
/* strftime_now's clock: unix_seconds read as UTC (tests, reproducible builds).
 * Unset, it is the current local time, as Python's datetime.now(). */
void chat_template_set_time(ChatTemplate *t, int64_t unix_seconds);
/* 1 when the template (the default one, or the one named at load) marks
 * assistant output with {% generation %}. */
int chat_template_has_generation(const ChatTemplate *t);
/* Where it was loaded from (a path, or the label given). */
const char *chat_template_label(const ChatTemplate *t);

/* Renders messages (a JSON array of message objects) with tools (a JSON
 * array, or NULL: the template sees none) and extra template variables (a JSON
 * object, or NULL; e.g. {"enable_thinking": false}, overriding special tokens
 * of the same name). *out receives a malloc'd NUL-terminated string and
 * *out_len its length (out_len may be NULL). When assistant_spans is not NULL
 * it is reset and receives the {% generation %} spans in output order. The
 * caller's JSON is not modified. 0, or -1 with the error set (and *out NULL). */
int chat_render(const ChatTemplate *t, json_t *messages, json_t *tools, json_t *extra,
                int add_generation_prompt, char **out, size_t *out_len,
                ChatSpans *assistant_spans);

#endif
