/* data/chat_data.h — chat conversations into token ids, as transformers and
 * TRL tokenize them, for training data (`data build`) and for prompting
 * (`--chat` of generate, eval, pairs and agent).
 *
 * Tokenizing a render is apply_chat_template(..., tokenize=True): the
 * rendered text encoded WITHOUT the post-processor's special tokens (the
 * template writes BOS and the like itself).
 *
 * Assistant masks (chat_encode_conversation) are transformers'
 * return_assistant_tokens_mask: each assistant span of the render (bytes
 * [start, end)) marks the tokens from the one holding its first character to
 * the one holding its last (Encoding.char_to_token on both, in characters;
 * a span whose first character no token holds ends the marking, as
 * transformers breaks there). The spans are
 *   - the template's {% generation %} blocks, when it has them: exactly what
 *     transformers marks;
 *   - otherwise derived by rendering prefixes, since transformers marks
 *     nothing then: for assistant message i, from the end of
 *     render(messages[:i], add_generation_prompt=True) to the end of
 *     render(messages[:i+1]) with trailing whitespace taken off, i.e. the
 *     turn's content, tool calls and end-of-turn token ("<|im_end|>",
 *     "<|eot_id|>", "</s>"), without the header the generation prompt already
 *     holds and without the newline after the turn. A template that renders a
 *     shorter conversation as something other than a prefix of the whole one
 *     (one that rewrites earlier turns, e.g. drops their reasoning) has no
 *     such spans: the conversation is refused, naming the turn; give such a
 *     model a template with {% generation %} blocks.
 * Token offsets come from aligning each token's bytes (decode_token) with
 * the rendered text; a Metaspace-style leading space the tokenizer inserted
 * holds no character, as in tokenizers' offsets. Offsets are untrimmed
 * (ByteLevel trim_offsets false, as Qwen2 and Llama 3 ship); a normalizer
 * that changes the text (NFC on text that is not NFC, lowercasing) makes the
 * alignment fail, which is reported.
 */
#ifndef RETORT_CHAT_DATA_H
#define RETORT_CHAT_DATA_H

#include <jansson.h>
#include <stdint.h>

#include "data/chat.h"
#include "data/tokenizer.h"

/* 1 when dir holds a chat template chat_template_load would find there
 * (chat_template.jinja, or tokenizer_config.json with "chat_template"). */
int chat_template_in_dir(const char *dir);

/* The render of messages (with tools and extra variables, each may be NULL)
 * tokenized as apply_chat_template(tokenize=True) does, appended to *ids from
 * index n; returns the new count, or -1 with the error set. */
int64_t chat_encode(const ChatTemplate *t, const Tokenizer *tok, json_t *messages, json_t *tools,
                    json_t *extra, int add_generation_prompt, uint32_t **ids, int64_t *cap,
                    int64_t n);

/* A conversation for SFT: *ids (n tokens, returned) and *mask (1 on the
 * assistant tokens, above), both grown with realloc. *derived is set to 1
 * when the spans were derived (no {% generation %} in the template). -1 with
 * the error set. */
int64_t chat_encode_conversation(const ChatTemplate *t, const Tokenizer *tok, json_t *messages,
                                 json_t *tools, json_t *extra, uint32_t **ids, int64_t *cap,
                                 uint8_t **mask, int64_t *mask_cap, int *derived);

/* The byte range [start, end) of text each token of ids[0:n] holds, aligned
 * as described above (start == end: a token holding no character). 0, or -1
 * with the error set (naming the first token that does not align). */
int chat_token_offsets(const Tokenizer *tok, const char *text, size_t len, const uint32_t *ids,
                       int64_t n, int64_t *start, int64_t *end);

/* ---- prompting (--chat) ----
 * A prompt text becomes the conversation [{"role": "user", "content": TEXT}]
 * rendered with add_generation_prompt, and a completion ends at the
 * template's end-of-turn token: the first token after an assistant turn's
 * content when that token is special (found by rendering a user turn and an
 * assistant turn), else the tokenizer's EOS. */
typedef struct {
    ChatTemplate *tmpl;
    int end_of_turn;   /* the id that ends an assistant turn */
} ChatPrompt;

/* Loads the template of path (a model directory, a tokenizer_config.json or
 * a .jinja file: chat_template_load) and finds its end-of-turn token with
 * tok. -1 with the error set. */
int chat_prompt_open(ChatPrompt *cp, const char *path, const Tokenizer *tok);
void chat_prompt_close(ChatPrompt *cp);
/* The prompt text as the template renders it for generation: a malloc'd
 * string, or NULL with the error set. */
char *chat_prompt_wrap(const ChatPrompt *cp, const char *text);

#endif
