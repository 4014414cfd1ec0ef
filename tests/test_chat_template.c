/* tests/test_chat_template.c — chat templates against transformers: 31 real
 * templates of 24 model families (tests/fixtures/chat_templates, sources in
 * SOURCES.md) on conversations with a system message, several turns, tool
 * calls and tool results, reasoning and non-ASCII text, with and without
 * add_generation_prompt: the text apply_chat_template renders, the
 * {% generation %} spans of return_assistant_tokens_mask, and the same refusal
 * where transformers refuses (raise_exception, or an error in the template);
 * 183 snippets, one feature of the language each; template directories as
 * AutoTokenizer loads them; and the refusal, with line:column, of what the
 * interpreter does not implement. Fixtures: tests/make_chat_fixtures.py. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/chat.h"
#include "data/jinja.h"
#include "util/util.h"

#define DIR "tests/fixtures/chat_templates"

static json_t *fixture(void) {
    json_error_t e;
    json_t *doc = json_load_file(DIR "/cases.json", 0, &e);
    cr_assert_not_null(doc, "%s/cases.json: %s (make it with tests/make_chat_fixtures.py)", DIR, e.text);
    return doc;
}

/* Where two texts first differ, for a readable failure. */
static void report_diff(const char *what, const char *got, size_t got_len, const char *want) {
    size_t want_len = strlen(want), i = 0;
    while (i < got_len && i < want_len && got[i] == want[i]) i++;
    size_t from = i > 40 ? i - 40 : 0;
    cr_log_error("%s: differs at byte %zu (lengths %zu vs %zu)\n  got:  ...%.80s\n  want: ...%.80s", what,
                 i, got_len, want_len, got + from, want + from);
}

/* 1 when the render matched the case (output and spans, or the refusal). */
static int check_render(const char *what, int rc, const char *out, size_t out_len, const ChatSpans *spans,
                        json_t *want) {
    json_t *error = json_object_get(want, "error");
    if (error) {
        if (rc == 0) {
            cr_log_error("%s: transformers refuses it (%s: %s), retort rendered it", what,
                         json_string_value(json_object_get(want, "error_type")), json_string_value(error));
            return 0;
        }
        if (!strstr(err_msg(), json_string_value(error))) {
            cr_log_error("%s: both refuse it, but retort's message does not carry transformers' one\n"
                         "  retort: %s\n  transformers: %s", what, err_msg(), json_string_value(error));
            return 0;
        }
        return 1;
    }
    if (rc != 0) {
        cr_log_error("%s: transformers renders it, retort fails: %s", what, err_msg());
        return 0;
    }
    const char *text = json_string_value(json_object_get(want, "output"));
    if (out_len != strlen(text) || memcmp(out, text, out_len) != 0) {
        report_diff(what, out, out_len, text);
        return 0;
    }
    json_t *ws = json_object_get(want, "spans");
    if (spans->n != json_array_size(ws)) {
        cr_log_error("%s: %zu generation spans, transformers has %zu", what, spans->n, json_array_size(ws));
        return 0;
    }
    for (size_t i = 0; i < spans->n; i++) {
        json_t *s = json_array_get(ws, i);
        size_t a = (size_t)json_integer_value(json_array_get(s, 0)), b = (size_t)json_integer_value(json_array_get(s, 1));
        if (spans->spans[i].start != a || spans->spans[i].end != b) {
            cr_log_error("%s: span %zu is [%zu, %zu), transformers has [%zu, %zu)", what, i,
                         spans->spans[i].start, spans->spans[i].end, a, b);
            return 0;
        }
    }
    return 1;
}

Test(chat_template, real_templates_render_as_transformers) {
    json_t *doc = fixture();
    json_t *templates = json_object_get(doc, "templates"), *convs = json_object_get(doc, "conversations");
    int64_t time = json_integer_value(json_object_get(doc, "time"));
    size_t i, failed = 0, refused = 0, with_spans = 0;
    json_t *c;
    const char *file;
    json_t *info;
    size_t n_templates = 0;
    json_object_foreach(templates, file, info) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", DIR, file);
        err_clear();
        ChatTemplate *t = chat_template_load(path, NULL);
        cr_assert_not_null(t, "loading %s: %s", path, err_msg());
        n_templates++;
        const char *bos = json_string_value(json_object_get(info, "bos_token"));
        const char *eos = json_string_value(json_object_get(info, "eos_token"));
        chat_template_set_special(t, "bos_token", bos);
        chat_template_set_special(t, "eos_token", eos);
        chat_template_set_time(t, time);
        json_array_foreach(json_object_get(doc, "cases"), i, c) {
            if (strcmp(json_string_value(json_object_get(c, "template")), file) != 0) continue;
            const char *conv_name = json_string_value(json_object_get(c, "conversation"));
            json_t *conv = json_object_get(convs, conv_name);
            int agp = json_is_true(json_object_get(c, "add_generation_prompt"));
            json_t *extra = json_object_get(c, "extra");
            char what[512];
            char *extra_text = json_dumps(extra, JSON_COMPACT);
            snprintf(what, sizeof what, "%s on %s (add_generation_prompt=%d, extra %s)", file, conv_name,
                     agp, extra_text);
            free(extra_text);
            char *out = NULL;
            size_t len = 0;
            ChatSpans spans = {0};
            err_clear();
            json_t *tools = json_object_get(conv, "tools");
            int rc = chat_render(t, json_object_get(conv, "messages"), json_is_null(tools) ? NULL : tools,
                                 extra, agp, &out, &len, &spans);
            if (!check_render(what, rc, out, len, &spans, c)) failed++;
            refused += json_object_get(c, "error") != NULL;
            with_spans += spans.n > 0;
            free(out);
            chat_spans_free(&spans);
        }
        chat_template_free(t);
    }
    cr_log_info("%zu templates, %zu cases (%zu refused as transformers refuses them, %zu with "
                "generation spans)", n_templates, json_array_size(json_object_get(doc, "cases")), refused,
                with_spans);
    cr_assert_eq(failed, 0, "%zu of %zu cases differ from transformers (see the log)", failed,
                 json_array_size(json_object_get(doc, "cases")));
    cr_assert_geq(n_templates, 25);
    cr_assert_gt(with_spans, 20, "the generation-marked templates give spans");
    cr_assert_gt(refused, 10);
    json_decref(doc);
}

Test(chat_template, snippets_render_as_transformers) {
    json_t *doc = fixture();
    json_t *messages = json_object_get(doc, "snippet_messages"), *vars = json_object_get(doc, "snippet_vars");
    size_t i, failed = 0;
    json_t *c;
    json_array_foreach(json_object_get(doc, "snippets"), i, c) {
        const char *src = json_string_value(json_object_get(c, "source"));
        char what[256];
        snprintf(what, sizeof what, "snippet %zu: %.160s", i, src);
        err_clear();
        ChatTemplate *t = chat_template_from_string(src, "snippet");
        char *out = NULL;
        size_t len = 0;
        ChatSpans spans = {0};
        int rc = -1;
        if (t) {
            chat_template_set_time(t, json_integer_value(json_object_get(doc, "time")));
            rc = chat_render(t, messages, NULL, vars, 0, &out, &len, &spans);
        }
        if (!check_render(what, rc, out, len, &spans, c)) failed++;
        free(out);
        chat_spans_free(&spans);
        chat_template_free(t);
    }
    cr_assert_eq(failed, 0, "%zu of %zu snippets differ from transformers (see the log)", failed,
                 json_array_size(json_object_get(doc, "snippets")));
    json_decref(doc);
}

Test(chat_template, directories_load_as_autotokenizer) {
    json_t *doc = fixture();
    json_t *conv = json_object_get(json_object_get(doc, "conversations"), "multi_turn");
    json_t *tools = json_object_get(json_object_get(json_object_get(doc, "conversations"), "tools"), "tools");
    const char *name;
    json_t *want;
    json_object_foreach(json_object_get(doc, "dirs"), name, want) {
        char path[512];
        snprintf(path, sizeof path, "%s/dirs/%s", DIR, name);
        err_clear();
        ChatTemplate *t = chat_template_load(path, NULL);
        cr_assert_not_null(t, "%s: %s", path, err_msg());
        cr_assert_str_eq(chat_template_special(t, "bos_token"), json_string_value(json_object_get(want, "bos_token")),
                         "%s: bos_token", name);
        cr_assert_str_eq(chat_template_special(t, "eos_token"), json_string_value(json_object_get(want, "eos_token")),
                         "%s: eos_token", name);
        char *out;
        cr_assert_eq(chat_render(t, json_object_get(conv, "messages"), NULL, NULL, 1, &out, NULL, NULL), 0,
                     "%s: %s", name, err_msg());
        cr_assert_str_eq(out, json_string_value(json_object_get(want, "plain")), "%s without tools", name);
        free(out);
        cr_assert_eq(chat_render(t, json_object_get(conv, "messages"), tools, NULL, 1, &out, NULL, NULL), 0,
                     "%s: %s", name, err_msg());
        cr_assert_str_eq(out, json_string_value(json_object_get(want, "with_tools")),
                         "%s with tools (the tool_use template where there is one)", name);
        free(out);
        chat_template_free(t);
    }
    /* a named template asked for, and one that is not there */
    ChatTemplate *t = chat_template_load(DIR "/dirs/config_list", "tool_use");
    cr_assert_not_null(t, "%s", err_msg());
    chat_template_free(t);
    err_clear();
    cr_assert_null(chat_template_load(DIR "/dirs/config_list", "nope"));
    cr_assert(strstr(err_msg(), "no chat template named \"nope\" (it has: default, tool_use)"), "%s", err_msg());
    json_decref(doc);
}

/* What the interpreter does not implement is refused at parse time with the
 * template's line:column, or at the call for methods; never approximated. */
Test(chat_template, unsupported_constructs_are_refused_with_line_and_column) {
    static const struct { const char *src, *want; } cases[] = {
        {"{% include 'other.jinja' %}", "t.jinja:1:4: the tag 'include'"},
        {"ok\n  {% extends 'base' %}", "t.jinja:2:6: the tag 'extends'"},
        {"{% for m in messages %}\n{{ m.content|wordwrap(10) }}{% endfor %}", "t.jinja:2:14: the filter 'wordwrap'"},
        {"{{ x|frobnicate }}", "t.jinja:1:6: no filter named 'frobnicate'"},
        {"{{ x is prime }}", "t.jinja:1:9: no test named 'prime'"},
        {"{% for x in xs recursive %}{% endfor %}", "t.jinja:1:16: recursive loops"},
        {"{{ f(*args) }}", "t.jinja:1:6: *args and **kwargs in calls"},
        {"{% do x.append(1) %}", "t.jinja:1:4: unknown tag 'do'"},
        {"{% if x %}never closed", "t.jinja:1:4: this block is never closed: it needs {% endif %}"},
        {"{{ 'unclosed }}", "t.jinja:1:4: unclosed string literal"},
        {"{{ x ]] }}", "t.jinja:1:6: unexpected ']'"},
        {"a\n{# unclosed comment", "t.jinja:2:1: unclosed comment"},
        {"{% break %}", "t.jinja:1:4: 'break' outside a for loop"},
        {"{{ 99999999999999999999 }}", "t.jinja:1:4: the integer literal 99999999999999999999 is beyond 64 bits"},
        {"{{ '\\N{BULLET}' }}", "t.jinja:1:5: \\N{...} escapes"},
        {"{{ messages[::-1, 0] }}", "t.jinja:1:12: a slice inside a tuple subscript"},
        {"{% set () = 1 %}", "t.jinja:1:8: an empty tuple () to assign to"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err_clear();
        ChatTemplate *t = chat_template_from_string(cases[i].src, "t.jinja");
        cr_assert_null(t, "%s: parsed, but it should be refused", cases[i].src);
        cr_assert(strstr(err_msg(), cases[i].want), "%s:\n  got  %s\n  want %s", cases[i].src, err_msg(),
                  cases[i].want);
    }
    /* refused when rendered: methods and case mappings not implemented here */
    static const struct { const char *src, *want; } runtime[] = {
        {"{{ messages[0].content.casefold() }}", "t.jinja:1:32: the method str.casefold"},
        {"\n{{ 'Straße'|upper }}", "t.jinja:2:13: changing the case of 'ß' (U+00DF)"},
        {"{{ 9223372036854775807 + 1 }}", "t.jinja:1:24: an integer beyond 64 bits"},
        {"{{ '%777777s' % 'x' }}", "t.jinja:1:15: a width of over 99999 in % formatting"},
        {"{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
         "t.jinja:1:59: the template needed over 1 GiB of memory"},
        {"{% set ns = namespace(ns=none) %}{% set ns.ns = ns %}", "t.jinja:1:37: a namespace stored inside a namespace"},
        {"{{ raise_exception('Only user and assistant roles!') }}",
         "t.jinja:1:19: the template refuses this conversation: Only user and assistant roles!"},
    };
    json_t *messages = json_pack("[{s:s, s:s}]", "role", "user", "content", "hi");
    for (size_t i = 0; i < sizeof runtime / sizeof runtime[0]; i++) {
        err_clear();
        ChatTemplate *t = chat_template_from_string(runtime[i].src, "t.jinja");
        cr_assert_not_null(t, "%s: %s", runtime[i].src, err_msg());
        char *out = (char *)"untouched";
        cr_assert_eq(chat_render(t, messages, NULL, NULL, 0, &out, NULL, NULL), -1, "%s rendered", runtime[i].src);
        cr_assert_null(out);
        cr_assert(strstr(err_msg(), runtime[i].want), "%s:\n  got  %s\n  want %s", runtime[i].src, err_msg(),
                  runtime[i].want);
        chat_template_free(t);
    }
    json_decref(messages);
}

Test(chat_template, bad_files_and_inputs_are_named) {
    err_clear();
    cr_assert_null(chat_template_load(DIR "/no_such_template.jinja", NULL));
    cr_assert(strstr(err_msg(), "no_such_template.jinja"), "%s", err_msg());
    err_clear();
    cr_assert_null(chat_template_load(DIR "/dirs", NULL));
    cr_assert(strstr(err_msg(), "no chat template"), "%s", err_msg());
    ChatTemplate *t = chat_template_from_string("{{ messages[0].content }}", "t");
    char *out;
    json_t *not_array = json_pack("{s:s}", "role", "user");
    cr_assert_eq(chat_render(t, not_array, NULL, NULL, 0, &out, NULL, NULL), -1);
    cr_assert(strstr(err_msg(), "JSON array"), "%s", err_msg());
    json_t *empty = json_array();
    cr_assert_eq(chat_render(t, empty, NULL, NULL, 0, &out, NULL, NULL), -1);
    cr_assert(strstr(err_msg(), "empty conversation"), "%s", err_msg());
    json_t *messages = json_pack("[{s:s, s:s}]", "role", "user", "content", "hi");
    json_t *extra = json_pack("{s:b}", "add_generation_prompt", 1);
    cr_assert_eq(chat_render(t, messages, NULL, extra, 0, &out, NULL, NULL), -1);
    cr_assert(strstr(err_msg(), "cannot set \"add_generation_prompt\""), "%s", err_msg());
    /* the caller's messages are not modified by the normalization */
    json_t *with_null = json_pack("[{s:s, s:s, s:n}]", "role", "user", "content", "hi", "name");
    cr_assert_eq(chat_render(t, with_null, NULL, NULL, 0, &out, NULL, NULL), 0, "%s", err_msg());
    cr_assert_str_eq(out, "hi");
    free(out);
    cr_assert(json_is_null(json_object_get(json_array_get(with_null, 0), "name")));
    json_decref(not_array);
    json_decref(empty);
    json_decref(messages);
    json_decref(extra);
    json_decref(with_null);
    chat_template_free(t);
}

/* Rendering is per training example, so it must be cheap: 2000 renders of
 * Qwen3's template on the tool-use conversation, each equal to transformers'
 * text; the rate goes to the log (--verbose). transformers' rate on the same
 * case: .venv/bin/python tests/make_chat_fixtures.py --bench. */
Test(chat_template, repeated_renders_are_identical_and_fast) {
    json_t *doc = fixture();
    json_t *conv = json_object_get(json_object_get(doc, "conversations"), "tools");
    const char *want = NULL;
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(doc, "cases"), i, c)
        if (!strcmp(json_string_value(json_object_get(c, "template")), "qwen3.jinja") &&
            !strcmp(json_string_value(json_object_get(c, "conversation")), "tools") &&
            json_is_true(json_object_get(c, "add_generation_prompt")) &&
            json_object_size(json_object_get(c, "extra")) == 0)
            want = json_string_value(json_object_get(c, "output"));
    cr_assert_not_null(want);
    ChatTemplate *t = chat_template_load(DIR "/qwen3.jinja", NULL);
    cr_assert_not_null(t, "%s", err_msg());
    chat_template_set_special(t, "eos_token", "<|im_end|>");
    const int n = 2000;
    double t0 = now_seconds();
    size_t bytes = 0;
    for (int k = 0; k < n; k++) {
        char *out;
        size_t len;
        cr_assert_eq(chat_render(t, json_object_get(conv, "messages"), json_object_get(conv, "tools"), NULL, 1,
                                 &out, &len, NULL), 0, "%s", err_msg());
        cr_assert_str_eq(out, want, "render %d", k);
        bytes += len;
        free(out);
    }
    double dt = now_seconds() - t0;
    cr_log_info("qwen3.jinja on the tool-use conversation: %.0f renders/s (%.1f us each, %.1f MB/s of text)",
                n / dt, dt / n * 1e6, bytes / dt / 1e6);
    chat_template_free(t);
    json_decref(doc);
}
