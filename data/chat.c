/* data/chat.c — a model's chat template as transformers 5 loads and applies
 * it (tokenization_utils_base.py: from_pretrained's chat template files,
 * get_chat_template, apply_chat_template; chat_template_utils.py:
 * render_jinja_template), on top of the interpreter of data/jinja.h.
 *
 * Loading: a directory's chat_template.jinja is the "default" template and
 * additional_chat_templates/NAME.jinja the named ones; without those files,
 * tokenizer_config.json's "chat_template" (a string, or a list of
 * {"name", "template"}). The special tokens are the named ones of
 * tokenizer_config.json (bos_token ... mask_token, and the keys of an
 * "extra_special_tokens" object), strings or {"content": ...}; a legacy
 * special_tokens_map.json overrides them when the config has no
 * "added_tokens_decoder", as transformers does.
 *
 * Rendering passes what render_jinja_template passes: messages, tools (None
 * when not given), documents (None), add_generation_prompt, then the special
 * tokens overridden by the caller's extra variables. Messages are normalized
 * first as apply_chat_template does: keys whose value is null are dropped, and
 * a message's reasoning (reasoning_content, else thinking, else reasoning) is
 * copied to "thinking" (first) and "reasoning_content" (last).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/chat.h"
#include "data/jinja.h"
#include "util/util.h"

typedef struct {
    char *name;
    JinjaTemplate *t;
} Named;

struct ChatTemplate {
    char *label;
    Named *named; /* every template, "default" among them when there is one */
    size_t n_named;
    int fixed;    /* index of the template chosen at load, or -1 */
    json_t *special;
    int have_time;
    struct tm time;
};

static const char *const SPECIAL_KEYS[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                           "pad_token", "cls_token", "mask_token", NULL};

void chat_spans_free(ChatSpans *s) {
    if (!s) return;
    free(s->spans);
    s->spans = NULL;
    s->n = s->cap = 0;
}

void chat_template_free(ChatTemplate *t) {
    if (!t) return;
    for (size_t i = 0; i < t->n_named; i++) {
        free(t->named[i].name);
        jinja_free(t->named[i].t);
    }
    free(t->named);
    json_decref(t->special);
    free(t->label);
    free(t);
}

static ChatTemplate *chat_new(const char *label) {
    ChatTemplate *t = xcalloc(1, sizeof *t);
    t->label = xstrdup(label);
    t->special = json_object();
    t->fixed = -1;
    return t;
}

/* Parses source as the template NAME (label for errors: where it came from). */
static int add_named(ChatTemplate *t, const char *name, const char *source, const char *label) {
    JinjaTemplate *jt = jinja_parse(source, label);
    if (!jt) return -1;
    t->named = xrealloc(t->named, (t->n_named + 1) * sizeof *t->named);
    t->named[t->n_named].name = xstrdup(name);
    t->named[t->n_named].t = jt;
    t->n_named++;
    return 0;
}

static int find_named(const ChatTemplate *t, const char *name) {
    for (size_t i = 0; i < t->n_named; i++)
        if (!strcmp(t->named[i].name, name)) return (int)i;
    return -1;
}

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* A special token's text: a string, or an AddedToken object's "content". */
static const char *token_text(json_t *v) {
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_object(v) && json_is_string(json_object_get(v, "content")))
        return json_string_value(json_object_get(v, "content"));
    return NULL;
}

static void read_specials(ChatTemplate *t, json_t *config) {
    for (int i = 0; SPECIAL_KEYS[i]; i++) {
        const char *v = token_text(json_object_get(config, SPECIAL_KEYS[i]));
        if (v) json_object_set_new(t->special, SPECIAL_KEYS[i], json_string(v));
    }
    json_t *extra = json_object_get(config, "extra_special_tokens");
    if (json_is_object(extra)) {
        const char *k;
        json_t *v;
        json_object_foreach(extra, k, v) {
            const char *text = token_text(v);
            if (text) json_object_set_new(t->special, k, json_string(text));
        }
    }
}

static json_t *load_json(const char *path) {
    json_error_t e;
    /* transformers writes model_max_length 1e30 as an integer, beyond 64 bits */
    json_t *j = json_load_file(path, JSON_DECODE_INT_AS_REAL, &e);
    if (!j) err_set("%s:%d:%d: not valid JSON (%s); fix or regenerate the file", path, e.line, e.column, e.text);
    return j;
}

/* The chat_template field of a tokenizer_config.json: a string or a list of
 * {"name", "template"}. 0 when there is none (t unchanged), 1 when read, -1 on
 * error. */
static int read_config_templates(ChatTemplate *t, json_t *config, const char *path) {
    json_t *ct = json_object_get(config, "chat_template");
    if (!ct || json_is_null(ct)) return 0;
    char label[4096];
    if (json_is_string(ct)) {
        snprintf(label, sizeof label, "%s (chat_template)", path);
        return add_named(t, "default", json_string_value(ct), label) ? -1 : 1;
    }
    if (!json_is_array(ct))
        return err_set("%s: \"chat_template\" must be a string or a list of {\"name\", \"template\"}",
                       path);
    size_t i;
    json_t *item;
    json_array_foreach(ct, i, item) {
        json_t *name = json_object_get(item, "name"), *tpl = json_object_get(item, "template");
        if (!json_is_string(name) || !json_is_string(tpl))
            return err_set("%s: chat_template[%zu] must be {\"name\": string, \"template\": string}",
                           path, i);
        snprintf(label, sizeof label, "%s (chat_template \"%s\")", path, json_string_value(name));
        if (add_named(t, json_string_value(name), json_string_value(tpl), label)) return -1;
    }
    return 1;
}

static int read_jinja_file(ChatTemplate *t, const char *name, const char *path) {
    size_t n;
    char *src = read_file(path, &n);
    if (!src) return -1;
    if (memchr(src, '\0', n)) {
        free(src);
        return err_set("%s: the template holds a NUL byte; it is not a text file", path);
    }
    int r = add_named(t, name, src, path);
    free(src);
    return r;
}

/* special tokens from dir's tokenizer_config.json (and special_tokens_map.json) */
static int read_dir_specials(ChatTemplate *t, const char *dir, json_t *config) {
    char path[4096];
    if (config) read_specials(t, config);
    if (config && json_object_get(config, "added_tokens_decoder")) return 0;
    if (path_join(path, sizeof path, dir, "special_tokens_map.json")) return -1;
    if (!path_exists(path)) return 0;
    json_t *map = load_json(path);
    if (!map) return -1;
    read_specials(t, map);
    json_decref(map);
    return 0;
}

static int load_dir(ChatTemplate *t, const char *dir) {
    char path[4096];
    json_t *config = NULL;
    if (path_join(path, sizeof path, dir, "tokenizer_config.json")) return -1;
    if (path_exists(path) && !(config = load_json(path))) return -1;
    int r = 0;
    char jinja[4096], extra_dir[4096];
    if (path_join(jinja, sizeof jinja, dir, "chat_template.jinja") ||
        path_join(extra_dir, sizeof extra_dir, dir, "additional_chat_templates")) {
        r = -1;
        goto done;
    }
    int from_files = 0;
    if (path_exists(jinja)) {
        if (read_jinja_file(t, "default", jinja)) { r = -1; goto done; }
        from_files = 1;
    }
    if (is_dir(extra_dir)) {
        DIR *d = opendir(extra_dir);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (!ends_with(e->d_name, ".jinja")) continue;
            char name[256], file[4096];
            snprintf(name, sizeof name, "%.*s", (int)(strlen(e->d_name) - 6), e->d_name);
            if (path_join(file, sizeof file, extra_dir, e->d_name) || read_jinja_file(t, name, file)) {
                closedir(d);
                r = -1;
                goto done;
            }
            from_files = 1;
        }
        if (d) closedir(d);
    }
    if (!from_files && config) {
        int got = read_config_templates(t, config, path);
        if (got < 0) { r = -1; goto done; }
    }
    if (!t->n_named) {
        r = err_set("%s: no chat template (no chat_template.jinja, and no \"chat_template\" in "
                    "tokenizer_config.json); give a template file instead", dir);
        goto done;
    }
    r = read_dir_specials(t, dir, config);
done:
    json_decref(config);
    return r;
}

static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return xstrdup(".");
    char *d = xstrdup(path);
    d[slash - path + (slash == path)] = '\0';
    return d;
}

ChatTemplate *chat_template_load(const char *path, const char *name) {
    ChatTemplate *t = chat_new(path);
    int r;
    if (is_dir(path)) {
        r = load_dir(t, path);
    } else if (ends_with(path, ".json")) {
        json_t *config = load_json(path);
        r = config ? read_config_templates(t, config, path) : -1;
        if (r == 0) r = err_set("%s: no \"chat_template\" in this file; give the model's "
                                "tokenizer_config.json or a .jinja template", path);
        if (r > 0) {
            read_specials(t, config);
            r = 0;
        }
        json_decref(config);
    } else {
        r = read_jinja_file(t, "default", path);
        char *dir = dir_of(path), config_path[4096];
        if (!r && !path_join(config_path, sizeof config_path, dir, "tokenizer_config.json") &&
            path_exists(config_path)) {
            json_t *config = load_json(config_path);
            r = config ? read_dir_specials(t, dir, config) : -1;
            json_decref(config);
        }
        free(dir);
    }
    if (r == 0 && name) {
        t->fixed = find_named(t, name);
        if (t->fixed < 0) {
            char names[1024] = "";
            for (size_t i = 0; i < t->n_named; i++)
                snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "",
                         t->named[i].name);
            r = err_set("%s: no chat template named \"%s\" (it has: %s)", path, name, names);
        }
    }
    if (r == 0 && !name && find_named(t, "default") < 0 && t->n_named > 1) {
        char names[1024] = "";
        for (size_t i = 0; i < t->n_named; i++)
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "",
                     t->named[i].name);
        r = err_set("%s: several chat templates (%s) and none named \"default\"; name the one to use",
                    path, names);
    }
    if (r == 0 && !name && find_named(t, "default") < 0) t->fixed = 0;
    if (r) {
        chat_template_free(t);
        return NULL;
    }
    return t;
}

ChatTemplate *chat_template_from_string(const char *source, const char *label) {
    ChatTemplate *t = chat_new(label ? label : "<chat template>");
    if (add_named(t, "default", source, t->label)) {
        chat_template_free(t);
        return NULL;
    }
    return t;
}

const char *chat_template_special(const ChatTemplate *t, const char *key) {
    json_t *v = json_object_get(t->special, key);
    return v ? json_string_value(v) : NULL;
}

void chat_template_set_special(ChatTemplate *t, const char *key, const char *value) {
    if (value) json_object_set_new(t->special, key, json_string(value));
    else json_object_del(t->special, key);
}

void chat_template_set_time(ChatTemplate *t, int64_t unix_seconds) {
    time_t tt = (time_t)unix_seconds;
    gmtime_r(&tt, &t->time);
    t->have_time = 1;
}

static const JinjaTemplate *pick(const ChatTemplate *t, int with_tools) {
    if (t->fixed >= 0) return t->named[t->fixed].t;
    int i = with_tools ? find_named(t, "tool_use") : -1;
    if (i < 0) i = find_named(t, "default");
    return t->named[i].t;
}

int chat_template_has_generation(const ChatTemplate *t) { return jinja_has_generation(pick(t, 0)); }
const char *chat_template_label(const ChatTemplate *t) { return t->label; }

/* apply_chat_template's view of one message */
static json_t *normalize_message(json_t *m) {
    json_t *out = json_object();
    static const char *const reasoning_keys[] = {"reasoning_content", "thinking", "reasoning"};
    json_t *reasoning = NULL;
    for (int i = 0; i < 3 && !reasoning; i++) {
        json_t *v = json_object_get(m, reasoning_keys[i]);
        if (v && !json_is_null(v)) reasoning = v;
    }
    if (reasoning) json_object_set(out, "thinking", reasoning);
    const char *k;
    json_t *v;
    json_object_foreach(m, k, v) {
        if (json_is_null(v)) continue;
        if (reasoning && !strcmp(k, "reasoning_content")) v = reasoning;
        json_object_set(out, k, v);
    }
    if (reasoning) json_object_set(out, "reasoning_content", reasoning);
    return out;
}

int chat_render(const ChatTemplate *t, json_t *messages, json_t *tools, json_t *extra,
                int add_generation_prompt, char **out, size_t *out_len, ChatSpans *assistant_spans) {
    *out = NULL;
    if (out_len) *out_len = 0;
    if (assistant_spans) assistant_spans->n = 0;
    if (!json_is_array(messages))
        return err_set("%s: the messages to render must be a JSON array of message objects", t->label);
    if (json_array_size(messages) == 0)
        return err_set("%s: cannot apply a chat template to an empty conversation", t->label);
    if (tools && !json_is_array(tools) && !json_is_null(tools))
        return err_set("%s: tools must be a JSON array of tool schemas", t->label);
    if (extra && !json_is_object(extra))
        return err_set("%s: the extra template variables must be a JSON object", t->label);
    json_t *vars = json_object();
    json_t *msgs = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(messages, i, m) {
        if (!json_is_object(m)) {
            json_decref(msgs);
            json_decref(vars);
            return err_set("%s: message %zu is not a JSON object (chat messages are objects with "
                           "\"role\" and \"content\")", t->label, i);
        }
        json_array_append_new(msgs, normalize_message(m));
    }
    json_object_update(vars, t->special);
    if (extra) {
        static const char *const reserved[] = {"messages", "tools", "documents", "add_generation_prompt", NULL};
        for (int r = 0; reserved[r]; r++)
            if (json_object_get(extra, reserved[r])) {
                json_decref(msgs);
                json_decref(vars);
                return err_set("%s: the extra template variables cannot set \"%s\"; it is passed "
                               "by its own argument", t->label, reserved[r]);
            }
        json_object_update(vars, extra);
    }
    json_object_set_new(vars, "messages", msgs);
    json_object_set(vars, "tools", tools && !json_is_null(tools) ? tools : json_null());
    json_object_set_new(vars, "documents", json_null());
    json_object_set_new(vars, "add_generation_prompt", json_boolean(add_generation_prompt));
    JinjaSpan *spans = NULL;
    size_t n_spans = 0;
    int with_tools = tools && !json_is_null(tools);
    int r = jinja_render(pick(t, with_tools), vars, t->have_time ? &t->time : NULL, out, out_len,
                         assistant_spans ? &spans : NULL, assistant_spans ? &n_spans : NULL);
    json_decref(vars);
    if (r) return -1;
    if (assistant_spans) {
        if (assistant_spans->cap < n_spans) {
            assistant_spans->spans = xrealloc(assistant_spans->spans, n_spans * sizeof(ChatSpan));
            assistant_spans->cap = n_spans;
        }
        for (size_t k = 0; k < n_spans; k++)
            assistant_spans->spans[k] = (ChatSpan){spans[k].start, spans[k].end};
        assistant_spans->n = n_spans;
        free(spans);
    }
    return 0;
}
