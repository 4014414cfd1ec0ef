/* data/chat_data.c — conversations into token ids and assistant masks, and
 * chat prompts for generation (see chat_data.h).
 *
 * The masks are computed in characters, as transformers computes them from
 * Python string indices: token byte offsets (from aligning decode_token's
 * bytes with the render) and span byte offsets both become code-point
 * indices, a token that holds part of a multi-byte character (byte-level BPE
 * may split one) holding that whole character, as tokenizers' offsets do.
 */
#include "data/chat_data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>

#include "util/util.h"

int chat_template_in_dir(const char *dir) {
    char path[4096];
    struct stat st;
    snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) return 1;
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    /* transformers writes model_max_length 1e30 as an integer, beyond 64 bits */
    json_t *root = json_load_file(path, JSON_DECODE_INT_AS_REAL, NULL);
    int has = root && json_object_get(root, "chat_template") &&
              !json_is_null(json_object_get(root, "chat_template"));
    json_decref(root);
    return has;
}

/* ------------------------------------------------------------- encoding */

static int render(const ChatTemplate *t, json_t *messages, json_t *tools, json_t *extra, int gen,
                  char **out, size_t *len, ChatSpans *spans) {
    return chat_render(t, messages, tools, extra, gen, out, len, spans);
}

int64_t chat_encode(const ChatTemplate *t, const Tokenizer *tok, json_t *messages, json_t *tools,
                    json_t *extra, int add_generation_prompt, uint32_t **ids, int64_t *cap,
                    int64_t n) {
    char *text;
    size_t len;
    if (render(t, messages, tools, extra, add_generation_prompt, &text, &len, NULL) != 0)
        return -1;
    n = tok->encode(tok, text, len, ids, cap, n);
    free(text);
    return n;
}

int chat_token_offsets(const Tokenizer *tok, const char *text, size_t len, const uint32_t *ids,
                       int64_t n, int64_t *start, int64_t *end) {
    char piece[256];
    size_t pos = 0;
    for (int64_t i = 0; i < n; i++) {
        size_t k = (size_t)tok->decode_token(tok, ids[i], piece);
        if (k == 0) {
            start[i] = end[i] = (int64_t)pos;
        } else if (pos + k <= len && memcmp(text + pos, piece, k) == 0) {
            start[i] = (int64_t)pos;
            end[i] = (int64_t)(pos + k);
            pos += k;
        } else if (piece[0] == ' ' && pos + k - 1 <= len && memcmp(text + pos, piece + 1, k - 1) == 0) {
            /* a Metaspace "▁" the pre-tokenizer put before the text: no character */
            start[i] = (int64_t)pos;
            end[i] = (int64_t)(pos + k - 1);
            pos += k - 1;
        } else {
            return err_set("token %lld (id %u) does not spell the rendered chat text at byte %zu "
                           "(\"%.20s\"): the tokenizer changes the text (a normalizer such as NFC "
                           "or lowercasing), so assistant tokens cannot be placed; normalize the "
                           "data's text first",
                           (long long)i, ids[i], pos, text + pos);
        }
    }
    if (pos != len)
        return err_set("the tokens spell %zu of the %zu bytes of the rendered chat text; the "
                       "tokenizer drops text (a normalizer such as Strip?), so assistant tokens "
                       "cannot be placed",
                       pos, len);
    return 0;
}

/* leads[p] = code points that start in text[0:p], for p in [0, len]. */
static int64_t *char_index(const char *text, size_t len) {
    int64_t *leads = xmalloc((len + 1) * sizeof *leads);
    leads[0] = 0;
    for (size_t p = 0; p < len; p++)
        leads[p + 1] = leads[p] + (((unsigned char)text[p] & 0xC0) != 0x80);
    return leads;
}

/* transformers' mask: one pass over tokens and spans (both in order of
 * position, in characters); a token is marked when it overlaps the first
 * span that does not end at or before its start. */
static void mark_spans(const int64_t *tok_s, const int64_t *tok_e, int64_t n,
                       const int64_t *span_s, const int64_t *span_e, size_t n_spans,
                       uint8_t *mask) {
    size_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        while (k < n_spans && tok_s[i] >= span_e[k]) k++;
        if (k == n_spans) break;
        if (tok_e[i] > span_s[k]) mask[i] = 1;
    }
}

/* A new array holding messages[0:k]. */
static json_t *first_messages(json_t *messages, size_t k) {
    json_t *a = json_array();
    for (size_t i = 0; i < k; i++) json_array_append(a, json_array_get(messages, i));
    return a;
}

static int is_assistant(json_t *msg) {
    const char *role = json_string_value(json_object_get(msg, "role"));
    return role && strcmp(role, "assistant") == 0;
}

/* The assistant spans of the full render text[0:len] derived from prefix
 * renders (chat_data.h), appended to spans. */
static int derive_spans(const ChatTemplate *t, json_t *messages, json_t *tools, json_t *extra,
                        const char *text, size_t len, ChatSpans *spans) {
    size_t n_msgs = json_array_size(messages);
    for (size_t i = 0; i < n_msgs; i++) {
        if (!is_assistant(json_array_get(messages, i))) continue;
        json_t *before = first_messages(messages, i), *upto = first_messages(messages, i + 1);
        char *a = NULL, *b = NULL;
        size_t a_len = 0, b_len = 0;
        int rc = render(t, before, tools, extra, 1, &a, &a_len, NULL);
        if (rc == 0) rc = render(t, upto, tools, extra, 0, &b, &b_len, NULL);
        json_decref(before);
        json_decref(upto);
        if (rc == 0 && (a_len > b_len || memcmp(a, b, a_len) != 0 || b_len > len ||
                        memcmp(b, text, b_len) != 0))
            rc = err_set("%s: the template renders the conversation up to message %zu (an "
                         "assistant turn) as something other than the start of the whole "
                         "conversation, so that turn's tokens cannot be found without "
                         "{%% generation %%} markers; use a template that marks assistant "
                         "output with {%% generation %%} ... {%% endgeneration %%}",
                         chat_template_label(t), i);
        if (rc == 0) {
            size_t end = b_len;
            while (end > a_len && (b[end - 1] == '\n' || b[end - 1] == ' ' ||
                                   b[end - 1] == '\t' || b[end - 1] == '\r'))
                end--;
            if (spans->n == spans->cap) {
                spans->cap = spans->cap ? 2 * spans->cap : 8;
                spans->spans = xrealloc(spans->spans, spans->cap * sizeof *spans->spans);
            }
            spans->spans[spans->n++] = (ChatSpan){a_len, end};
        }
        free(a);
        free(b);
        if (rc != 0) return -1;
    }
    return 0;
}

int64_t chat_encode_conversation(const ChatTemplate *t, const Tokenizer *tok, json_t *messages,
                                 json_t *tools, json_t *extra, uint32_t **ids, int64_t *cap,
                                 uint8_t **mask, int64_t *mask_cap, int *derived) {
    char *text;
    size_t len;
    ChatSpans spans = {0};
    *derived = !chat_template_has_generation(t);
    if (render(t, messages, tools, extra, 0, &text, &len, *derived ? NULL : &spans) != 0)
        return -1;
    if (*derived && derive_spans(t, messages, tools, extra, text, len, &spans) != 0) {
        free(text);
        chat_spans_free(&spans);
        return -1;
    }
    int64_t n = tok->encode(tok, text, len, ids, cap, 0);
    if (n > *mask_cap) {
        *mask_cap = n;
        *mask = xrealloc(*mask, (size_t)n);
    }
    if (n > 0) memset(*mask, 0, (size_t)n);
    int64_t *ts = xmalloc((size_t)(n + 1) * sizeof *ts), *te = xmalloc((size_t)(n + 1) * sizeof *te);
    int rc = chat_token_offsets(tok, text, len, *ids, n, ts, te);
    if (rc == 0) {
        int64_t *leads = char_index(text, len);
        for (int64_t i = 0; i < n; i++) { /* bytes -> characters (chat_data.c's header) */
            int64_t s = ts[i], e = te[i];
            ts[i] = e > s ? leads[s + 1] - 1 : leads[s];
            te[i] = leads[e];
        }
        int64_t *ss = xmalloc((spans.n + 1) * sizeof *ss), *se = xmalloc((spans.n + 1) * sizeof *se);
        for (size_t k = 0; k < spans.n; k++) {
            ss[k] = leads[spans.spans[k].start];
            se[k] = leads[spans.spans[k].end];
        }
        mark_spans(ts, te, n, ss, se, spans.n, *mask);
        free(ss);
        free(se);
        free(leads);
    }
    free(ts);
    free(te);
    free(text);
    chat_spans_free(&spans);
    return rc == 0 ? n : -1;
}

/* ------------------------------------------------------------ prompting */

static json_t *user_turn(const char *text) {
    return json_pack("[{s:s, s:s}]", "role", "user", "content", text);
}

/* The end-of-turn token: render a user turn and an assistant turn, and take
 * the first token after the assistant's content when it is special. */
static int find_end_of_turn(const ChatTemplate *t, const Tokenizer *tok, int *out) {
    static const char probe[] = "retort end-of-turn probe";
    json_t *msgs = json_pack("[{s:s, s:s}, {s:s, s:s}]", "role", "user", "content", "hello",
                             "role", "assistant", "content", probe);
    char *text;
    size_t len;
    int rc = render(t, msgs, NULL, NULL, 0, &text, &len, NULL);
    json_decref(msgs);
    if (rc != 0) return -1;
    *out = tok->eos_id;
    const char *at = strstr(text, probe);
    if (at) {
        const char *rest = at + sizeof probe - 1;
        uint32_t *ids = NULL;
        int64_t cap = 0;
        int64_t n = tok->encode(tok, rest, len - (size_t)(rest - text), &ids, &cap, 0);
        if (n > 0 && tokenizer_is_special(tok, ids[0])) *out = (int)ids[0];
        free(ids);
    }
    free(text);
    return 0;
}

int chat_prompt_open(ChatPrompt *cp, const char *path, const Tokenizer *tok) {
    memset(cp, 0, sizeof *cp);
    if (!(cp->tmpl = chat_template_load(path, NULL))) return -1;
    if (find_end_of_turn(cp->tmpl, tok, &cp->end_of_turn) != 0) {
        chat_prompt_close(cp);
        return -1;
    }
    return 0;
}

void chat_prompt_close(ChatPrompt *cp) {
    chat_template_free(cp->tmpl);
    cp->tmpl = NULL;
}

char *chat_prompt_wrap(const ChatPrompt *cp, const char *text) {
    json_t *msgs = user_turn(text);
    char *out = NULL;
    int rc = render(cp->tmpl, msgs, NULL, NULL, 1, &out, NULL, NULL);
    json_decref(msgs);
    return rc == 0 ? out : NULL;
}
