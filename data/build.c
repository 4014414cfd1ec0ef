/* data/build.c — text / JSONL -> HDF5 (see build.h).
 *
 * JSONL is read one line at a time with getline and parsed with jansson, so
 * the input never has to fit in memory; each object becomes one document
 * handed to the DatasetWriter. Plain text is one document however long: it
 * is read line by line into a buffer that is encoded and appended with
 * dataset_writer_append whenever it passes TEXT_CHUNK bytes at a point where
 * the whitespace run is exactly one "\n" between two non-space characters
 * (the previous line ends "x\n", the next starts with a non-space). The GPT-2
 * regex makes that lone "\n" a pre-token of its own whether or not the text
 * ends there, so the chunked encoding equals encoding the whole file at once
 * (tested against tiktoken on a 10 MB file) while memory stays bounded. A cut
 * after a blank line would not be exact: "\n\n" at the end of a chunk is one
 * pre-token, but two inside the whole text.
 */
#include "data/build.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>
#include <unistd.h>

#include "data/chat_data.h"
#include "data/tokenizer.h"
#include "util/progress.h"
#include "util/util.h"

#define MAX_WARNINGS 3 /* skipped lines reported one by one before just counting */

typedef struct {
    const BuildOptions *o;
    const char *name;       /* the input as messages name it */
    Tokenizer *tok;
    DatasetWriter *w;
    uint32_t *ids;          /* (cap) token ids of the current document */
    int64_t cap;
    uint8_t *mask;          /* (mask_cap) loss mask of the current document */
    int64_t mask_cap;
    int64_t n_lines, n_docs, n_tokens, n_trained, n_skipped;
    int64_t n_truncated, n_dropped;
    PrefWriter *pw;         /* pref builds write through this instead of w */
    uint32_t *ids2, *ids3;  /* pref: chosen and rejected (prompt + response when joint) */
    int64_t cap2, cap3;
    int joint;              /* pref: boundary "joint" */
    int64_t n_prompt_split; /* pref, joint: pairs whose prompt encoding is no prefix */
    char *text;             /* pref, joint: prompt + response */
    size_t text_cap;
    ChatTemplate *chat;     /* the chat template (build.h), NULL = "plain" */
    int64_t n_derived;      /* sft conversations whose assistant spans were derived */
    char eos_text[256];     /* the EOS token's text, and whether encode reads it as eos_id */
    size_t eos_text_len;
    int eos_in_text;
    char **roles;           /* role_field: names in first-seen order */
    int n_roles;
    char **trained;         /* chat roles trained on: train_roles, or {"assistant"} */
    int n_trained_roles;
    int roles_from_turns;   /* train_roles given: the role column is each turn's role */
    char **tasks;           /* task_field: names in first-seen order */
    int n_tasks;
    int task;               /* the current line's task id, -1 = none */
    int64_t bytes_read, bytes_total; /* progress (total 0 when unknown) */
    Progress *progress; /* the progress line (util/progress.h) */
} Build;

/* The directory a tokenizer spec names or sits in (a tokenizer.json's
 * folder); 0 for "bytes". */
static int tokenizer_dir(const char *spec, char *dir, size_t cap) {
    struct stat st;
    if (!spec || strcmp(spec, "bytes") == 0 || stat(spec, &st) != 0) return 0;
    if (S_ISDIR(st.st_mode)) {
        snprintf(dir, cap, "%s", spec);
        return 1;
    }
    const char *slash = strrchr(spec, '/');
    if (!slash) snprintf(dir, cap, ".");
    else snprintf(dir, cap, "%.*s", (int)(slash - spec), spec);
    return 1;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static const char *json_type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "an unknown value";
}

/* The string `field` of obj, or 1 with the error set (missing / not a string). */
static int get_field(const Build *b, const json_t *obj, const char *field, const char *option,
                     const char **s, size_t *len) {
    const json_t *v = json_object_get(obj, field);
    if (!v) {
        err_set("%s:%lld: field '%s' is missing (name another field with %s)", b->name,
                (long long)b->n_lines, field, option);
        return 1;
    }
    if (!json_is_string(v)) {
        err_set("%s:%lld: field '%s' is %s, not a string", b->name, (long long)b->n_lines, field,
                json_type_name(v));
        return 1;
    }
    *s = json_string_value(v);
    *len = json_string_length(v);
    return 0;
}

static void set_mask(Build *b, int64_t from, int64_t to, uint8_t value) {
    if (to <= from) return; /* an empty span (no prompt kept): mask may still be NULL */
    if (to > b->mask_cap) {
        b->mask_cap = to > 2 * b->mask_cap ? to : 2 * b->mask_cap;
        b->mask = xrealloc(b->mask, (size_t)b->mask_cap);
    }
    memset(b->mask + from, value, (size_t)(to - from));
}

static int64_t push_eos(const Build *b, uint32_t **ids, int64_t *cap, int64_t n) {
    if (n + 1 > *cap) {
        *cap = 2 * (n + 1);
        *ids = xrealloc(*ids, (size_t)*cap * sizeof **ids);
    }
    (*ids)[n] = (uint32_t)b->tok->eos_id;
    return n + 1;
}

static int64_t add_eos(Build *b, int64_t n) { return push_eos(b, &b->ids, &b->cap, n); }

/* The post-processor's ids before a document (a Llama tokenizer's BOS: what
 * transformers' tokenizer(text) with add_special_tokens=True puts first). */
static int64_t add_prefix(Build *b, int64_t n) {
    const Tokenizer *t = b->tok;
    for (int i = 0; i < t->n_special_prefix; i++) {
        if (n + 1 > b->cap) {
            b->cap = 2 * (n + 1);
            b->ids = xrealloc(b->ids, (size_t)b->cap * sizeof *b->ids);
        }
        b->ids[n++] = t->special_prefix[i];
    }
    return n;
}

/* A document's end: the post-processor's ids after it, then EOS unless they
 * already ended with it. */
static int64_t end_doc(Build *b, int64_t n) {
    const Tokenizer *t = b->tok;
    for (int i = 0; i < t->n_special_suffix; i++) {
        n = push_eos(b, &b->ids, &b->cap, n); /* makes room */
        b->ids[n - 1] = t->special_suffix[i];
    }
    if (t->n_special_suffix > 0 && b->ids[n - 1] == (uint32_t)t->eos_id) return n;
    return add_eos(b, n);
}

/* The id of this line's tag (field: role or task names, in first-seen order
 * in names), -1 when field is NULL, or -2 (error set). */
static int line_tag(Build *b, const json_t *obj, const char *field, const char *option,
                    const char *what, char ***names, int *n_names) {
    if (!field) return -1;
    const char *name;
    size_t len;
    if (get_field(b, obj, field, option, &name, &len) != 0) return -2;
    for (int i = 0; i < *n_names; i++)
        if (strcmp((*names)[i], name) == 0) return i;
    if (*n_names == 256) {
        err_set("%s:%lld: %s '%s' would be the 257th distinct %s; ids are uint8", b->name,
                (long long)b->n_lines, what, name, what);
        return -2;
    }
    *names = xrealloc(*names, (size_t)(*n_names + 1) * sizeof **names);
    (*names)[*n_names] = xstrdup(name);
    return (*n_names)++;
}

static int line_role(Build *b, const json_t *obj) {
    return line_tag(b, obj, b->o->role_field, "--role-field", "role", &b->roles, &b->n_roles);
}

static int line_task(Build *b, const json_t *obj) {
    return line_tag(b, obj, b->o->task_field, "--task-field", "task", &b->tasks, &b->n_tasks);
}

/* The progress line (by input bytes, the documents so far as its detail); the
 * writer hears of every step, for the size in an out-of-space message. */
static void progress(Build *b) {
    if (b->w) dataset_writer_set_progress(b->w, b->bytes_read, b->bytes_total);
    if (b->pw) pref_writer_set_progress(b->pw, b->bytes_read, b->bytes_total);
    progress_detail(b->progress, "%lld lines, %lld %s, %lld tokens", (long long)b->n_lines,
                    (long long)b->n_docs, b->o->schema == SCHEMA_PREF ? "pairs" : "documents",
                    (long long)b->n_tokens);
    progress_add(b->progress, b->bytes_read - progress_done(b->progress));
}

/* Writes one sft example: ids[0:n_prompt] is the prompt (mask 0) and
 * ids[n_prompt:n] the completion (mask 1), cut to max_len (see build.h).
 * 0 written or dropped, -1 writer failure. */
static int emit_sft(Build *b, const uint32_t *ids, int64_t n_prompt, int64_t n, int role) {
    int64_t start = 0, keep_p = n_prompt, keep_c = n - n_prompt;
    if (b->o->max_len > 0 && n > b->o->max_len) {
        b->n_truncated++;
        if (keep_c >= b->o->max_len) {
            keep_c = b->o->max_len;
            keep_p = 0;
            start = n_prompt;
        } else {
            keep_p = b->o->max_len - keep_c;
            start = n_prompt - keep_p;
        }
    }
    if (keep_c == 0) {
        b->n_dropped++;
        return 0;
    }
    set_mask(b, 0, keep_p, 0);
    set_mask(b, keep_p, keep_p + keep_c, 1);
    if (dataset_writer_append(b->w, ids + start, b->mask, keep_p + keep_c) != 0 ||
        dataset_writer_end_doc_tagged(b->w, role, b->task) != 0)
        return -1;
    b->n_tokens += keep_p + keep_c;
    b->n_trained += keep_c;
    b->n_docs++;
    return 0;
}

#define BAD_INPUT(...) (err_set(__VA_ARGS__), 1) /* bad input: error set, returns 1 */

static const char *const chat_roles[3] = {"system", "user", "assistant"};

/* A string field of messages[i], or 1 with the error set. */
static int message_field(const Build *b, const json_t *msg, size_t i, const char *field,
                         const char **s, size_t *len) {
    const json_t *v = json_object_get(msg, field);
    if (!v)
        return BAD_INPUT("%s:%lld: %s[%zu]: field '%s' is missing (each message needs 'role' and "
                         "'content')",
                         b->name, (long long)b->n_lines, b->o->messages_field, i, field);
    if (!json_is_string(v))
        return BAD_INPUT("%s:%lld: %s[%zu]: field '%s' is %s, not a string", b->name,
                         (long long)b->n_lines, b->o->messages_field, i, field,
                         json_type_name(v));
    *s = json_string_value(v);
    *len = json_string_length(v);
    return 0;
}

/* A role name a template can hold: 1..32 of [A-Za-z0-9_-]. */
static int valid_role_name(const char *r) {
    size_t n = strlen(r);
    if (n == 0 || n > 32) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)r[i]) && r[i] != '_' && r[i] != '-') return 0;
    return 1;
}

/* What messages[i] is: 0 a context turn, 1 + k a turn of trained role k;
 * -1 with the error set. *role gets the role name. Without train_roles the
 * roles are system, user and assistant (trained); with it any valid name. */
static int message_turn(const Build *b, const json_t *m, size_t i, const char **role) {
    const char *r, *c;
    size_t r_len, c_len;
    if (!json_is_object(m)) {
        err_set("%s:%lld: %s[%zu] is %s, not an object with 'role' and 'content'", b->name,
                (long long)b->n_lines, b->o->messages_field, i, json_type_name(m));
        return -1;
    }
    if (message_field(b, m, i, "role", &r, &r_len) || message_field(b, m, i, "content", &c, &c_len))
        return -1;
    *role = r;
    if (b->roles_from_turns) {
        if (!valid_role_name(r) || r_len != strlen(r)) {
            err_set("%s:%lld: %s[%zu]: role '%s' is not a name of 1 to 32 letters, digits, '_' "
                    "or '-'",
                    b->name, (long long)b->n_lines, b->o->messages_field, i, r);
            return -1;
        }
    } else {
        int known = 0;
        for (int k = 0; k < 3; k++) known |= !strcmp(r, chat_roles[k]);
        if (!known) {
            err_set("%s:%lld: %s[%zu]: role '%s' is not one of system, user, assistant (give "
                    "--train-roles to train on other roles)",
                    b->name, (long long)b->n_lines, b->o->messages_field, i, r);
            return -1;
        }
    }
    for (int k = 0; k < b->n_trained_roles; k++)
        if (!strcmp(r, b->trained[k])) return 1 + k;
    return 0;
}

/* "a, b, c" of the trained roles, for messages. */
static void trained_list(const Build *b, char *buf, size_t cap) {
    size_t n = 0;
    buf[0] = '\0';
    for (int k = 0; k < b->n_trained_roles && n < cap; k++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%s", k ? ", " : "", b->trained[k]);
}

/* A chat line (template "plain"): 0 done, 1 bad input, -1 writer failure. */
static int build_chat(Build *b, const json_t *msgs, int role) {
    const char *mf = b->o->messages_field;
    if (!json_is_array(msgs))
        return BAD_INPUT("%s:%lld: field '%s' is %s, not an array of {\"role\", \"content\"} "
                         "objects",
                         b->name, (long long)b->n_lines, mf, json_type_name(msgs));
    size_t n_msgs = json_array_size(msgs);
    if (n_msgs == 0)
        return BAD_INPUT("%s:%lld: field '%s' is an empty array; a conversation needs at least "
                         "one assistant turn",
                         b->name, (long long)b->n_lines, mf);
    /* validate everything before writing any example of this line */
    int n_train_turns = 0;
    const char *r;
    for (size_t i = 0; i < n_msgs; i++) {
        int kind = message_turn(b, json_array_get(msgs, i), i, &r);
        if (kind < 0) return 1;
        n_train_turns += kind > 0;
    }
    if (n_train_turns == 0 && !b->roles_from_turns)
        return BAD_INPUT("%s:%lld: field '%s' has no assistant turn; there is nothing to train "
                         "on",
                         b->name, (long long)b->n_lines, mf);
    if (n_train_turns == 0) {
        char list[512];
        trained_list(b, list, sizeof list);
        return BAD_INPUT("%s:%lld: field '%s' has no turn of a trained role (%s); there is "
                         "nothing to train on",
                         b->name, (long long)b->n_lines, mf, list);
    }
    /* render the whole conversation once; each trained turn k is then the
     * prefix ids[0:turn_end] with its content at [content_start, turn_end) */
    int64_t n = 0;
    int64_t *content_start = xmalloc(n_msgs * sizeof *content_start);
    int64_t *turn_end = xmalloc(n_msgs * sizeof *turn_end);
    int *turn_kind = xmalloc(n_msgs * sizeof *turn_kind);
    for (size_t i = 0; i < n_msgs; i++) {
        const json_t *m = json_array_get(msgs, i);
        const char *c = json_string_value(json_object_get(m, "content"));
        size_t c_len = json_string_length(json_object_get(m, "content"));
        int kind = message_turn(b, m, i, &r);
        char header[48];
        int h = snprintf(header, sizeof header, "<|%s|>\n", r);
        n = b->tok->encode(b->tok, header, (size_t)h, &b->ids, &b->cap, n);
        content_start[i] = n;
        n = b->tok->encode(b->tok, c, c_len, &b->ids, &b->cap, n);
        n = b->tok->encode(b->tok, "\n", 1, &b->ids, &b->cap, n);
        if (kind > 0) n = add_eos(b, n);
        turn_kind[i] = kind;
        turn_end[i] = n;
    }
    int rc = 0;
    for (size_t i = 0; i < n_msgs && rc == 0; i++)
        if (turn_kind[i] > 0)
            rc = emit_sft(b, b->ids, content_start[i], turn_end[i],
                          b->roles_from_turns ? turn_kind[i] - 1 : role);
    free(content_start);
    free(turn_end);
    free(turn_kind);
    return rc;
}

/* Splits train_roles into b->trained (or {"assistant"}); -1 with the error set. */
static int parse_train_roles(Build *b, const char *list) {
    if (!list) {
        b->trained = xmalloc(sizeof *b->trained);
        b->trained[0] = xstrdup("assistant");
        b->n_trained_roles = 1;
        return 0;
    }
    b->roles_from_turns = 1;
    const char *p = list;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len > 0 && isspace((unsigned char)*p)) p++, len--;
        while (len > 0 && isspace((unsigned char)p[len - 1])) len--;
        char *name = xmalloc(len + 1);
        memcpy(name, p, len);
        name[len] = '\0';
        int dup = 0;
        for (int k = 0; k < b->n_trained_roles; k++) dup |= !strcmp(b->trained[k], name);
        if (!valid_role_name(name) || dup || b->n_trained_roles == 256) {
            err_set("train_roles '%s': '%s' is %s; give a comma-separated list of distinct role "
                    "names (letters, digits, '_', '-'), e.g. planner,caller,summarizer",
                    list, name, dup ? "listed twice" : "not a role name");
            free(name);
            return -1;
        }
        b->trained = xrealloc(b->trained, (size_t)(b->n_trained_roles + 1) * sizeof *b->trained);
        b->trained[b->n_trained_roles++] = name;
        if (!end) return 0;
        p = end + 1;
    }
}

#define PREF_HINT "; schema 'pref' reads prompt, chosen and rejected"

/* prompt + response (+ EOS) encoded as one text into *ids, as TRL 1.x's
 * DPOTrainer tokenizes prompt + chosen: the response gets the EOS token's text
 * unless it already ends with it, and the whole is encoded with
 * add_special_tokens=True (the post-processor's BOS, when it has one). A
 * tokenizer that does not read the EOS text as eos_id (the bytes tokenizer)
 * gets eos_id after the text instead. */
static int64_t encode_joint(Build *b, const char *p, size_t p_len, const char *c, size_t c_len,
                            uint32_t **ids, int64_t *cap) {
    size_t e = b->eos_text_len, len = p_len + c_len;
    if (len + e + 1 > b->text_cap) {
        b->text_cap = 2 * (len + e + 1);
        b->text = xrealloc(b->text, b->text_cap);
    }
    memcpy(b->text, p, p_len);
    memcpy(b->text + p_len, c, c_len);
    int ends_with_eos = e > 0 && c_len >= e && !memcmp(c + c_len - e, b->eos_text, e);
    if (b->eos_in_text && !ends_with_eos) {
        memcpy(b->text + len, b->eos_text, e);
        len += e;
    }
    int64_t n = tokenizer_encode(b->tok, b->text, len, 1, ids, cap, 0);
    return b->eos_in_text ? n : push_eos(b, ids, cap, n);
}

/* Whether the tokenizer reads the EOS token's text as eos_id (b->eos_text). */
static void find_eos_text(Build *b) {
    b->eos_text_len = (size_t)b->tok->decode_token(b->tok, (uint32_t)b->tok->eos_id, b->eos_text);
    uint32_t *ids = NULL;
    int64_t cap = 0;
    int64_t n = b->eos_text_len ? b->tok->encode(b->tok, b->eos_text, b->eos_text_len, &ids, &cap, 0)
                                : 0;
    b->eos_in_text = n == 1 && ids[0] == (uint32_t)b->tok->eos_id;
    free(ids);
}

static int64_t common_prefix(const uint32_t *a, int64_t n_a, const uint32_t *b, int64_t n_b) {
    int64_t k = 0;
    while (k < n_a && k < n_b && a[k] == b[k]) k++;
    return k;
}

static int write_pair(Build *b, int64_t n_p, int64_t start, int64_t n_c, int64_t n_r);

/* One preference pair (build.h: boundary, max_len): 0 written or dropped,
 * 1 bad input (error set), -1 writer failure. */
static int build_pair(Build *b, const char *p, size_t p_len, const char *c, size_t c_len,
                      const char *r, size_t r_len) {
    const Tokenizer *tok = b->tok;
    int64_t n_p, start = 0, n_c, n_r;
    if (b->joint) {
        n_p = tokenizer_encode(tok, p, p_len, 1, &b->ids, &b->cap, 0);
        n_c = encode_joint(b, p, p_len, c, c_len, &b->ids2, &b->cap2);
        n_r = encode_joint(b, p, p_len, r, r_len, &b->ids3, &b->cap3);
        /* TRL 1.x: the responses start where prompt alone and prompt + response
         * first differ (the smaller of the two places), not after the prompt */
        int64_t k_c = common_prefix(b->ids, n_p, b->ids2, n_c);
        int64_t k_r = common_prefix(b->ids, n_p, b->ids3, n_r);
        start = k_c < k_r ? k_c : k_r;
        b->n_prompt_split += start < n_p;
        n_p = start;
    } else { /* TRL 0.x's tokenize_row for a decoder-only model: no special tokens */
        n_p = tok->encode(tok, p, p_len, &b->ids, &b->cap, 0);
        n_c = push_eos(b, &b->ids2, &b->cap2, tok->encode(tok, c, c_len, &b->ids2, &b->cap2, 0));
        n_r = push_eos(b, &b->ids3, &b->cap3, tok->encode(tok, r, r_len, &b->ids3, &b->cap3, 0));
    }
    return write_pair(b, n_p, start, n_c, n_r);
}

/* The pair in b->ids (prompt, n_p tokens) and b->ids2 / b->ids3 (responses
 * from index start to n_c / n_r), checked, cut to max_len and written: 0
 * written or dropped, 1 bad input, -1 writer failure. */
static int write_pair(Build *b, int64_t n_p, int64_t start, int64_t n_c, int64_t n_r) {
    const uint32_t *chosen = b->ids2 + start, *rejected = b->ids3 + start;
    n_c -= start;
    n_r -= start;
    if (n_c == 0 || n_r == 0)
        return BAD_INPUT("%s:%lld: the %s response has no token of its own: encoded together "
                         "with the prompt, its tokens are all the prompt's (--boundary joint); "
                         "give it text, or build with --boundary separate",
                         b->name, (long long)b->n_lines, n_c == 0 ? "chosen" : "rejected");
    int64_t L = b->o->max_len;
    if (L > 0 && n_p >= L) { /* TRL 1.x drops it: no completion token would be left */
        b->n_dropped++;
        return 0;
    }
    if (L > 0 && (n_p + n_c > L || n_p + n_r > L)) { /* keep_start */
        b->n_truncated++;
        if (n_p + n_c > L) n_c = L - n_p;
        if (n_p + n_r > L) n_r = L - n_p;
    }
    if (pref_writer_add(b->pw, b->ids, n_p, chosen, n_c, rejected, n_r) != 0) return -1;
    b->n_tokens += n_p + n_c + n_r;
    b->n_docs++;
    return 0;
}

/* ----------------------------------------------- chat templates (build.h) */

/* The line's tools (an array, or a JSON string of one, as TRL accepts) and
 * chat_template_kwargs (an object); NULL when absent. 1 with the error set
 * when malformed. *tools is a new reference when not NULL. */
static int line_chat_vars(const Build *b, json_t *obj, json_t **tools, json_t **extra) {
    json_t *t = json_object_get(obj, "tools"), *x = json_object_get(obj, "chat_template_kwargs");
    *tools = NULL;
    *extra = NULL;
    if (json_is_string(t)) {
        json_error_t e;
        t = json_loads(json_string_value(t), 0, &e);
        if (!json_is_array(t)) {
            json_decref(t);
            return BAD_INPUT("%s:%lld: field 'tools' is a string that does not hold a JSON array "
                             "of tool definitions",
                             b->name, (long long)b->n_lines);
        }
    } else if (t && !json_is_null(t)) {
        if (!json_is_array(t))
            return BAD_INPUT("%s:%lld: field 'tools' is %s; give an array of tool definitions "
                             "(JSON schemas), as transformers' apply_chat_template takes",
                             b->name, (long long)b->n_lines, json_type_name(t));
        json_incref(t);
    } else {
        t = NULL;
    }
    if (x && !json_is_null(x) && !json_is_object(x)) {
        json_decref(t);
        return BAD_INPUT("%s:%lld: field 'chat_template_kwargs' is %s, not an object of template "
                         "variables",
                         b->name, (long long)b->n_lines, json_type_name(x));
    }
    *tools = t;
    *extra = json_is_object(x) ? x : NULL;
    return 0;
}

/* An array of message objects each with a string role, or 1 (error set). */
static int check_messages(const Build *b, const json_t *msgs, const char *field) {
    if (!json_is_array(msgs) || json_array_size(msgs) == 0)
        return BAD_INPUT("%s:%lld: field '%s' is %s; give a non-empty array of messages "
                         "({\"role\": ..., \"content\": ...})",
                         b->name, (long long)b->n_lines, field,
                         json_is_array(msgs) ? "empty" : json_type_name(msgs));
    for (size_t i = 0; i < json_array_size(msgs); i++) {
        const json_t *m = json_array_get(msgs, i);
        if (!json_is_object(m) || !json_is_string(json_object_get(m, "role")))
            return BAD_INPUT("%s:%lld: %s[%zu] is not a message object with a string 'role'",
                             b->name, (long long)b->n_lines, field, i);
    }
    return 0;
}

/* The template's error, prefixed with the line it happened on: 1. */
static int chat_line_error(const Build *b) {
    char why[1024];
    snprintf(why, sizeof why, "%s", err_msg()); /* err_set overwrites err_msg() */
    return BAD_INPUT("%s:%lld: %s", b->name, (long long)b->n_lines, why);
}

/* sft: one conversation through the chat template, loss on its assistant
 * tokens (data/chat_data.h), cut to max_len keeping its start. */
static int build_chat_template(Build *b, json_t *obj, json_t *msgs, int role) {
    json_t *tools, *extra;
    if (check_messages(b, msgs, b->o->messages_field) || line_chat_vars(b, obj, &tools, &extra))
        return 1;
    int derived;
    int64_t n = chat_encode_conversation(b->chat, b->tok, msgs, tools, extra, &b->ids, &b->cap,
                                         &b->mask, &b->mask_cap, &derived);
    json_decref(tools);
    if (n < 0) return chat_line_error(b);
    b->n_derived += derived;
    if (b->o->max_len > 0 && n > b->o->max_len) { /* TRL's SFT truncation: keep the start */
        n = b->o->max_len;
        b->n_truncated++;
    }
    int64_t trained = 0;
    for (int64_t i = 0; i < n; i++) trained += b->mask[i];
    if (trained == 0) {
        b->n_dropped++;
        return 0;
    }
    if (dataset_writer_append(b->w, b->ids, b->mask, n) != 0 ||
        dataset_writer_end_doc_tagged(b->w, role, b->task) != 0)
        return -1;
    b->n_tokens += n;
    b->n_trained += trained;
    b->n_docs++;
    return 0;
}

/* A new array: a's messages then b's. */
static json_t *concat_messages(json_t *a, json_t *b) {
    json_t *out = json_copy(a);
    json_array_extend(out, b);
    return out;
}

/* pref, conversational (TRL's format: prompt messages, chosen and rejected
 * assistant messages; without a prompt, the messages chosen and rejected
 * share from the start are the prompt, as TRL's extract_prompt does): TRL
 * 1.x's DPOTrainer tokenization, each part rendered by the template. */
static int build_pair_chat(Build *b, json_t *obj, json_t *prompt, json_t *chosen,
                           json_t *rejected) {
    if (!b->joint)
        return BAD_INPUT("%s:%lld: conversational pairs are cut apart as TRL 1.x does "
                         "(--boundary joint); --boundary separate takes text pairs",
                         b->name, (long long)b->n_lines);
    if (!b->chat)
        return BAD_INPUT("%s:%lld: the pair holds messages, which need a chat template: give "
                         "--chat-template PATH, or a --tokenizer directory whose "
                         "tokenizer_config.json has one",
                         b->name, (long long)b->n_lines);
    if (check_messages(b, chosen, b->o->chosen_field) ||
        check_messages(b, rejected, b->o->rejected_field))
        return 1;
    json_t *owned = NULL;
    if (!prompt) { /* TRL's extract_prompt */
        size_t k = 0;
        while (k < json_array_size(chosen) && k < json_array_size(rejected) &&
               json_equal(json_array_get(chosen, k), json_array_get(rejected, k)))
            k++;
        owned = json_array();
        for (size_t i = 0; i < k; i++) json_array_append(owned, json_array_get(chosen, i));
        json_t *c = json_array(), *r = json_array();
        for (size_t i = k; i < json_array_size(chosen); i++)
            json_array_append(c, json_array_get(chosen, i));
        for (size_t i = k; i < json_array_size(rejected); i++)
            json_array_append(r, json_array_get(rejected, i));
        prompt = owned;
        chosen = c;
        rejected = r;
    } else {
        json_incref(chosen);
        json_incref(rejected);
    }
    json_t *tools = NULL, *extra = NULL;
    int rc = check_messages(b, prompt, b->o->prompt_field);
    if (rc == 0) rc = line_chat_vars(b, obj, &tools, &extra);
    json_t *pc = concat_messages(prompt, chosen), *pr = concat_messages(prompt, rejected);
    int64_t n_p = -1, n_c = -1, n_r = -1;
    if (rc == 0 && ((n_p = chat_encode(b->chat, b->tok, prompt, tools, extra, 1, &b->ids, &b->cap,
                                       0)) < 0 ||
                    (n_c = chat_encode(b->chat, b->tok, pc, tools, extra, 0, &b->ids2, &b->cap2,
                                       0)) < 0 ||
                    (n_r = chat_encode(b->chat, b->tok, pr, tools, extra, 0, &b->ids3, &b->cap3,
                                       0)) < 0))
        rc = chat_line_error(b);
    json_decref(pc);
    json_decref(pr);
    json_decref(tools);
    json_decref(owned);
    json_decref(chosen);
    json_decref(rejected);
    if (rc != 0) return rc;
    int64_t k_c = common_prefix(b->ids, n_p, b->ids2, n_c);
    int64_t k_r = common_prefix(b->ids, n_p, b->ids3, n_r);
    int64_t start = k_c < k_r ? k_c : k_r;
    b->n_prompt_split += start < n_p;
    return write_pair(b, start, start, n_c, n_r);
}

/* One JSONL line: 0 done (or blank), 1 bad input (error set), -1 writer failure. */
static int build_json_line(Build *b, const char *line, size_t len) {
    size_t i = 0;
    while (i < len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r' || line[i] == '\n'))
        i++;
    if (i == len) return 0;
    json_error_t jerr;
    json_t *obj = json_loadb(line, len, 0, &jerr);
    if (!obj) {
        err_set("%s:%lld: invalid JSON at column %d: %s (each line must hold one JSON object)",
                b->name, (long long)b->n_lines, jerr.column, jerr.text);
        return 1;
    }
    int rc = 0;
    const char *a, *c;
    size_t a_len, c_len;
    if (!json_is_object(obj)) {
        rc = 1;
        err_set("%s:%lld: expected a JSON object, found %s", b->name, (long long)b->n_lines,
                json_type_name(obj));
    } else if (b->o->schema == SCHEMA_LM) {
        rc = get_field(b, obj, b->o->text_field, "--text-field", &a, &a_len);
        if (rc == 0) {
            int64_t n = end_doc(b, b->tok->encode(b->tok, a, a_len, &b->ids, &b->cap,
                                                  add_prefix(b, 0)));
            rc = dataset_writer_add(b->w, b->ids, NULL, n, -1);
            b->n_tokens += rc == 0 ? n : 0;
            b->n_docs += rc == 0;
        }
    } else if (b->o->schema == SCHEMA_PREF &&
               json_is_array(json_object_get(obj, b->o->chosen_field))) {
        rc = build_pair_chat(b, obj, json_object_get(obj, b->o->prompt_field),
                             json_object_get(obj, b->o->chosen_field),
                             json_object_get(obj, b->o->rejected_field));
    } else if (b->o->schema == SCHEMA_PREF) {
        const char *r;
        size_t r_len;
        rc = get_field(b, obj, b->o->prompt_field, "--prompt-field" PREF_HINT, &a, &a_len);
        if (rc == 0)
            rc = get_field(b, obj, b->o->chosen_field, "--chosen-field" PREF_HINT, &c, &c_len);
        if (rc == 0)
            rc = get_field(b, obj, b->o->rejected_field, "--rejected-field" PREF_HINT, &r,
                           &r_len);
        if (rc == 0) rc = build_pair(b, a, a_len, c, c_len, r, r_len);
    } else {
        const json_t *msgs = json_object_get(obj, b->o->messages_field);
        int role = line_role(b, obj);
        b->task = role == -2 ? -1 : line_task(b, obj);
        if (role == -2 || b->task == -2) {
            rc = 1;
        } else if (msgs && b->chat) {
            rc = build_chat_template(b, obj, (json_t *)msgs, role);
        } else if (msgs) {
            rc = build_chat(b, msgs, role);
        } else if (b->roles_from_turns) {
            rc = BAD_INPUT("%s:%lld: field '%s' is missing; with train_roles every line is a "
                           "chat conversation",
                           b->name, (long long)b->n_lines, b->o->messages_field);
        } else {
            rc = get_field(b, obj, b->o->prompt_field, "--prompt-field", &a, &a_len);
            if (rc == 0)
                rc = get_field(b, obj, b->o->completion_field, "--completion-field", &c, &c_len);
            if (rc == 0) {
                int64_t n_prompt =
                    b->tok->encode(b->tok, a, a_len, &b->ids, &b->cap, add_prefix(b, 0));
                int64_t n =
                    add_eos(b, b->tok->encode(b->tok, c, c_len, &b->ids, &b->cap, n_prompt));
                /* the completion and its EOS are trained on */
                rc = emit_sft(b, b->ids, n_prompt, n, role);
            }
        }
    }
    json_decref(obj);
    return rc;
}

static int build_jsonl(Build *b, FILE *f) {
    char *line = NULL;
    size_t line_cap = 0;
    ssize_t len;
    int rc = 0;
    while ((len = getline(&line, &line_cap, f)) >= 0) {
        b->n_lines++;
        b->bytes_read += len;
        progress(b);
        int r = build_json_line(b, line, (size_t)len);
        if (r < 0 || (r > 0 && !b->o->skip_bad)) {
            rc = -1;
            break;
        }
        if (r > 0) {
            if (!b->o->quiet && b->n_skipped < MAX_WARNINGS)
                fprintf(stderr, "warning: skipping %s\n", err_msg());
            b->n_skipped++;
        }
    }
    free(line);
    return rc;
}

#define TEXT_CHUNK (1 << 20)

/* Encodes buf[0:len] and appends it to the open document (after the
 * post-processor's ids when it is the first piece). */
static int append_text(Build *b, const char *buf, size_t len, int first) {
    int64_t n = b->tok->encode(b->tok, buf, len, &b->ids, &b->cap, first ? add_prefix(b, 0) : 0);
    if (dataset_writer_append(b->w, b->ids, NULL, n) != 0) return -1;
    b->n_tokens += n;
    return 0;
}

static int build_text(Build *b, FILE *f) {
    char *line = NULL, *buf = NULL;
    size_t line_cap = 0, buf_len = 0, buf_cap = 0;
    ssize_t len;
    int64_t bytes = 0;
    int rc = 0, prev_ends_clean = 0; /* the previous line ended in non-space + "\n" */
    int first = 1;
    /* streaming in pieces is exact only where the tokenizer says so (GPT-2's
     * regex); a tokenizer.json pipeline encodes the whole text at once */
    size_t chunk = b->tok->newline_cuts_exact ? TEXT_CHUNK : SIZE_MAX;
    while (rc == 0 && (len = getline(&line, &line_cap, f)) >= 0) {
        b->n_lines++;
        bytes += len;
        b->bytes_read = bytes;
        progress(b);
        if (buf_len >= chunk && prev_ends_clean && !isspace((unsigned char)line[0])) {
            rc = append_text(b, buf, buf_len, first);
            buf_len = 0;
            first = 0;
        }
        if (buf_len + (size_t)len > buf_cap) {
            buf_cap = 2 * (buf_len + (size_t)len);
            buf = xrealloc(buf, buf_cap);
        }
        memcpy(buf + buf_len, line, (size_t)len);
        buf_len += (size_t)len;
        prev_ends_clean = len >= 2 && line[len - 1] == '\n' &&
                          !isspace((unsigned char)line[len - 2]);
    }
    if (rc == 0 && buf_len > 0) rc = append_text(b, buf, buf_len, first);
    free(line);
    free(buf);
    if (rc != 0) return -1;
    if (bytes == 0) return 0; /* no document; reported as empty input by the caller */
    int64_t n = end_doc(b, 0);
    if (dataset_writer_append(b->w, b->ids, NULL, n) != 0 || dataset_writer_end_doc(b->w, -1))
        return -1;
    b->n_tokens += n;
    b->n_docs = 1;
    return 0;
}

static void report(const Build *b) {
    printf("wrote %s: schema %s, %lld %s, %lld tokens (tokenizer %s, vocab %d)\n",
           b->o->output, schema_name(b->o->schema), (long long)b->n_docs,
           b->o->schema == SCHEMA_PREF ? "pairs" : "documents", (long long)b->n_tokens,
           b->tok->name, b->tok->vocab_size);
    if (b->o->schema == SCHEMA_SFT)
        printf("  %lld tokens carry loss (%.1f%%)\n", (long long)b->n_trained,
               b->n_tokens ? 100.0 * (double)b->n_trained / (double)b->n_tokens : 0.0);
    if (b->chat)
        printf("  chat template %s: %s\n", chat_template_label(b->chat),
               chat_template_has_generation(b->chat)
                   ? "assistant tokens from its {% generation %} blocks"
                   : "no {% generation %} blocks; assistant turns found by rendering each "
                     "conversation up to them");
    if (b->o->schema == SCHEMA_PREF) {
        printf("  boundary %s", b->o->boundary);
        if (b->joint)
            printf(": %lld pairs' prompts encode differently alone than followed by the "
                   "response; their responses start where the two differ (TRL 1.x)",
                   (long long)b->n_prompt_split);
        printf("\n");
    }
    if (b->o->schema == SCHEMA_PREF && b->o->max_len > 0)
        printf("  max_len %lld: %lld pairs truncated, %lld dropped (the prompt alone fills "
               "max_len, as TRL 1.x drops it)\n",
               (long long)b->o->max_len, (long long)b->n_truncated, (long long)b->n_dropped);
    else if (b->o->schema != SCHEMA_LM)
        printf("  max_len %lld: %lld %s truncated, %lld dropped%s\n", (long long)b->o->max_len,
               (long long)b->n_truncated,
               b->o->schema == SCHEMA_PREF ? "pairs" : "examples", (long long)b->n_dropped,
               b->o->max_len > 0 ? (b->chat ? " (no assistant token left)" : " (no completion left)")
                                 : " (0: no limit)");
    if (b->n_roles > 0) {
        printf("  %d roles:", b->n_roles);
        for (int i = 0; i < b->n_roles; i++) printf(" %s", b->roles[i]);
        printf("\n");
    }
    if (b->n_tasks > 0) {
        printf("  %d tasks:", b->n_tasks);
        for (int i = 0; i < b->n_tasks; i++) printf(" %s", b->tasks[i]);
        printf("\n");
    }
    printf("  %lld lines read, %lld skipped\n", (long long)b->n_lines, (long long)b->n_skipped);
}

int data_build(const BuildOptions *o) { return data_build_stats(o, NULL); }

static void build_free_names(Build *b) {
    for (int i = 0; i < b->n_roles; i++) free(b->roles[i]);
    free(b->roles);
    for (int i = 0; i < b->n_tasks; i++) free(b->tasks[i]);
    free(b->tasks);
    for (int i = 0; i < b->n_trained_roles; i++) free(b->trained[i]);
    free(b->trained);
}

int data_build_stats(const BuildOptions *o, BuildStats *stats) {
    if (!o->input || !o->output) return err_set("data build: an input and an output are needed");
    if (o->schema != SCHEMA_LM && o->schema != SCHEMA_SFT && o->schema != SCHEMA_PREF)
        return err_set("schema '%s' is not supported by `retort data build` yet (lm, sft and "
                       "pref are)",
                       schema_name(o->schema));
    struct stat tst;
    if (o->chat_template && strcmp(o->chat_template, "plain") != 0 &&
        stat(o->chat_template, &tst) != 0)
        return err_set("chat template '%s': no such file or directory; give \"plain\" or a "
                       "template's path (a model directory, a tokenizer_config.json or a .jinja "
                       "file)",
                       o->chat_template);
    if (o->chat_template && strcmp(o->chat_template, "plain") != 0 && o->train_roles)
        return err_set("train_roles '%s' renders turns with the plain template; a chat template "
                       "(%s) has its own roles: leave out one of them",
                       o->train_roles, o->chat_template);
    if (o->max_len < 0)
        return err_set("max_len %lld: give a positive token count, or 0 for no limit",
                       (long long)o->max_len);
    if (o->max_len > 0 && o->schema == SCHEMA_LM)
        return err_set("max_len truncates sft examples and pref pairs; schema 'lm' has no "
                       "max_len");
    if (o->boundary && o->schema != SCHEMA_PREF)
        return err_set("boundary '%s': only pref pairs have a prompt/response boundary (schema "
                       "is '%s')",
                       o->boundary, schema_name(o->schema));
    if (o->boundary && strcmp(o->boundary, "joint") != 0 && strcmp(o->boundary, "separate") != 0)
        return err_set("boundary '%s': give joint (TRL 1.x: prompt + response encoded together) "
                       "or separate (TRL 0.x: each on its own)",
                       o->boundary);
    if (o->role_field && o->schema != SCHEMA_SFT)
        return err_set("role_field '%s': only sft datasets carry roles (schema is '%s')",
                       o->role_field, schema_name(o->schema));
    if (o->train_roles && o->schema != SCHEMA_SFT)
        return err_set("train_roles '%s': only sft datasets are built from chat turns (schema "
                       "is '%s')",
                       o->train_roles, schema_name(o->schema));
    if (o->train_roles && o->role_field)
        return err_set("train_roles and role_field '%s' both set the role column; with "
                       "train_roles each example's role is its turn's role",
                       o->role_field);
    if (o->task_field && o->schema != SCHEMA_SFT)
        return err_set("task_field '%s': only sft datasets carry tasks (schema is '%s')",
                       o->task_field, schema_name(o->schema));
    int is_stdin = strcmp(o->input, "-") == 0;
    int jsonl = !is_stdin && (ends_with(o->input, ".jsonl") || ends_with(o->input, ".json"));
    if (!jsonl && o->schema == SCHEMA_PREF)
        return err_set("%s: plain text builds only lm datasets; for pref give a .jsonl file with "
                       "prompt, chosen and rejected fields",
                       o->input);
    if (!jsonl && o->schema != SCHEMA_LM)
        return err_set("%s: plain text builds only lm datasets; for sft give a .jsonl file with "
                       "'%s' and '%s' fields",
                       o->input, o->prompt_field ? o->prompt_field : "prompt",
                       o->completion_field ? o->completion_field : "completion");
    BuildOptions opts = *o;
    if (!opts.tokenizer) opts.tokenizer = "bytes";
    if (!opts.text_field) opts.text_field = "text";
    if (!opts.prompt_field) opts.prompt_field = "prompt";
    if (!opts.completion_field) opts.completion_field = "completion";
    if (!opts.messages_field) opts.messages_field = "messages";
    char template_dir[4096];
    if (!opts.chat_template && !o->train_roles && o->schema != SCHEMA_LM &&
        tokenizer_dir(opts.tokenizer, template_dir, sizeof template_dir) &&
        chat_template_in_dir(template_dir))
        opts.chat_template = template_dir; /* the model's own template */
    if (!opts.chat_template) opts.chat_template = "plain";
    if (!opts.chosen_field) opts.chosen_field = "chosen";
    if (!opts.rejected_field) opts.rejected_field = "rejected";
    if (!opts.boundary) opts.boundary = "joint";

    Build b = {0};
    b.o = &opts;
    b.task = -1;
    b.name = is_stdin ? "<stdin>" : o->input;
    if (parse_train_roles(&b, o->train_roles) != 0) {
        for (int i = 0; i < b.n_trained_roles; i++) free(b.trained[i]);
        free(b.trained);
        return -1;
    }
    if (b.roles_from_turns) { /* role ids in the list's order */
        b.roles = xmalloc((size_t)b.n_trained_roles * sizeof *b.roles);
        for (int i = 0; i < b.n_trained_roles; i++) b.roles[i] = xstrdup(b.trained[i]);
        b.n_roles = b.n_trained_roles;
    }
    FILE *f = is_stdin ? stdin : fopen(o->input, "r");
    if (!f) {
        err_set("cannot open %s: %s", o->input, strerror(errno));
        build_free_names(&b);
        return -1;
    }
    struct stat st;
    if (!is_stdin && fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode))
        b.bytes_total = st.st_size;
    b.tok = tokenizer_load(opts.tokenizer);
    if (b.tok && strcmp(opts.chat_template, "plain") != 0 && o->schema != SCHEMA_LM &&
        !(b.chat = chat_template_load(opts.chat_template, NULL))) {
        tokenizer_free(b.tok);
        b.tok = NULL;
    }
    b.joint = o->schema == SCHEMA_PREF && strcmp(opts.boundary, "joint") == 0;
    if (b.tok) find_eos_text(&b);
    if (b.tok && o->schema == SCHEMA_PREF) {
        b.pw = pref_writer_open(o->output, b.tok->vocab_size, b.tok->eos_id, b.tok->pad_id,
                                b.tok->name);
        if (b.pw && pref_writer_set_boundary(b.pw, opts.boundary) != 0) {
            pref_writer_abort(b.pw);
            b.pw = NULL;
        }
    }
    else if (b.tok)
        b.w = dataset_writer_open(o->output, o->schema, b.tok->vocab_size, b.tok->eos_id,
                                  b.tok->pad_id, b.tok->name);
    int rc = -1;
    if (b.w || b.pw) {
        b.progress = progress_open("data build", "bytes", b.bytes_total, o->quiet);
        rc = jsonl ? build_jsonl(&b, f) : build_text(&b, f);
        if (rc == 0 && ferror(f)) rc = err_set("error reading %s", b.name);
        if (rc == 0 && b.n_docs == 0)
            rc = err_set("%s: no documents found (%lld lines read, %lld skipped); nothing to "
                         "build",
                         b.name, (long long)b.n_lines, (long long)b.n_skipped);
        progress(&b);
        progress_close(b.progress, rc == 0);
        b.progress = NULL;
        if (rc == 0 && b.n_roles > 0)
            rc = dataset_writer_set_roles(b.w, (const char *const *)b.roles, b.n_roles);
        if (rc == 0 && b.n_tasks > 0)
            rc = dataset_writer_set_tasks(b.w, (const char *const *)b.tasks, b.n_tasks);
        if (b.pw) {
            if (rc == 0) rc = pref_writer_close(b.pw);
            else pref_writer_abort(b.pw);
        } else {
            if (rc == 0) rc = dataset_writer_close(b.w);
            else dataset_writer_abort(b.w);
        }
    }
    if (rc == 0 && !o->quiet) report(&b);
    if (rc == 0 && stats)
        *stats = (BuildStats){.lines = b.n_lines,
                              .docs = b.n_docs,
                              .tokens = b.n_tokens,
                              .trained_tokens = b.n_trained,
                              .skipped = b.n_skipped,
                              .truncated = b.n_truncated,
                              .dropped = b.n_dropped,
                              .prompt_split = b.n_prompt_split,
                              .n_roles = b.n_roles,
                              .n_tasks = b.n_tasks};
    if (!is_stdin) fclose(f);
    tokenizer_free(b.tok);
    chat_template_free(b.chat);
    free(b.ids);
    free(b.mask);
    free(b.ids2);
    free(b.ids3);
    free(b.text);
    build_free_names(&b);
    return rc;
}
