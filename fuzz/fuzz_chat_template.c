/* fuzz/fuzz_chat_template.c — a chat template as data/chat.c and the Jinja2
 * interpreter (data/jinja_*.c) parse and render it.
 *
 * The input is the template; a NUL byte, when present, ends it and starts a
 * JSON array of messages to render (else a fixed conversation with a system
 * message, turns, a tool call and its result, and tools). An accepted template
 * is rendered with and without add_generation_prompt, each twice. Checked
 * beyond "no crash, no leak": a refusal (parse or render) sets an error that
 * names the template and leaves no output; a render's output is as long as it
 * says, its generation spans lie inside it with start <= end, and rendering
 * again gives the same text and spans. */
#include <jansson.h>

#include "data/chat.h"
#include "fuzz/fuzz.h"

static const char CONVERSATION[] =
    "[{\"role\": \"system\", \"content\": \"Be brief.\"},"
    " {\"role\": \"user\", \"content\": \"Weather in Paris?\"},"
    " {\"role\": \"assistant\", \"content\": \"\", \"tool_calls\": [{\"id\": \"callA1b2C\","
    " \"type\": \"function\", \"function\": {\"name\": \"get_weather\","
    " \"arguments\": {\"city\": \"Paris\"}}}]},"
    " {\"role\": \"tool\", \"tool_call_id\": \"callA1b2C\", \"name\": \"get_weather\","
    " \"content\": \"21 C\"},"
    " {\"role\": \"assistant\", \"reasoning_content\": \"easy\", \"content\": \"Sunny, 21 °C.\"},"
    " {\"role\": \"user\", \"content\": \"Thanks\"}]";
static const char TOOLS[] =
    "[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather.\","
    " \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\","
    " \"description\": \"A city\"}}, \"required\": [\"city\"]}}}]";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *src = fuzz_cstr(data, size);
    size_t src_len = strlen(src);
    json_t *messages = NULL;
    if (src_len < size) {
        char *rest = fuzz_cstr(data + src_len + 1, size - src_len - 1);
        messages = json_loads(rest, 0, NULL);
        free(rest);
    }
    if (!messages) messages = json_loads(CONVERSATION, 0, NULL);
    json_t *tools = json_loads(TOOLS, 0, NULL);
    err_clear();
    ChatTemplate *t = chat_template_from_string(src, "fuzz");
    if (!t) {
        FUZZ_CHECK(strncmp(err_msg(), "fuzz:", 5) == 0, "a refusal that does not name the template: %s",
                   err_msg());
    } else {
        chat_template_set_special(t, "bos_token", "<s>");
        chat_template_set_special(t, "eos_token", "</s>");
        chat_template_set_time(t, 1722001507);
        for (int agp = 0; agp < 2; agp++) {
            char *out[2] = {NULL, NULL};
            size_t len[2] = {0, 0};
            ChatSpans spans[2] = {{0}, {0}};
            int rc[2];
            for (int k = 0; k < 2; k++) {
                err_clear();
                rc[k] = chat_render(t, messages, agp ? tools : NULL, NULL, agp, &out[k], &len[k], &spans[k]);
                if (rc[k]) {
                    FUZZ_CHECK(rc[k] == -1 && !out[k], "a failed render returned %d with output", rc[k]);
                    FUZZ_CHECK(strncmp(err_msg(), "fuzz:", 5) == 0,
                               "a render error that does not name the template: %s", err_msg());
                    continue;
                }
                FUZZ_CHECK(out[k] && strlen(out[k]) <= len[k] && out[k][len[k]] == '\0',
                           "output length %zu disagrees with the text", len[k]);
                for (size_t i = 0; i < spans[k].n; i++)
                    FUZZ_CHECK(spans[k].spans[i].start <= spans[k].spans[i].end &&
                                   spans[k].spans[i].end <= len[k],
                               "span %zu [%zu, %zu) outside the %zu-byte output", i,
                               spans[k].spans[i].start, spans[k].spans[i].end, len[k]);
            }
            FUZZ_CHECK(rc[0] == rc[1], "rendering twice: %d then %d", rc[0], rc[1]);
            if (rc[0] == 0) {
                FUZZ_CHECK(len[0] == len[1] && memcmp(out[0], out[1], len[0]) == 0, "rendering twice differs");
                FUZZ_CHECK(spans[0].n == spans[1].n, "rendering twice gives other spans");
            }
            for (int k = 0; k < 2; k++) {
                free(out[k]);
                chat_spans_free(&spans[k]);
            }
        }
        chat_template_free(t);
    }
    json_decref(messages);
    json_decref(tools);
    free(src);
    return 0;
}
