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

#include "data/tokenizer.h"
#include "train/util.h"

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
} Build;

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
    if (to > b->mask_cap) {
        b->mask_cap = to > 2 * b->mask_cap ? to : 2 * b->mask_cap;
        b->mask = xrealloc(b->mask, (size_t)b->mask_cap);
    }
    memset(b->mask + from, value, (size_t)(to - from));
}

static int64_t add_eos(Build *b, int64_t n) {
    if (n + 1 > b->cap) {
        b->cap = 2 * (n + 1);
        b->ids = xrealloc(b->ids, (size_t)b->cap * sizeof *b->ids);
    }
    b->ids[n] = (uint32_t)b->tok->eos_id;
    return n + 1;
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
            int64_t n = add_eos(b, b->tok->encode(b->tok, a, a_len, &b->ids, &b->cap, 0));
            rc = dataset_writer_add(b->w, b->ids, NULL, n, -1);
            b->n_tokens += rc == 0 ? n : 0;
        }
    } else {
        rc = get_field(b, obj, b->o->prompt_field, "--prompt-field", &a, &a_len);
        if (rc == 0) rc = get_field(b, obj, b->o->completion_field, "--completion-field", &c, &c_len);
        if (rc == 0) {
            int64_t n_prompt = b->tok->encode(b->tok, a, a_len, &b->ids, &b->cap, 0);
            int64_t n = add_eos(b, b->tok->encode(b->tok, c, c_len, &b->ids, &b->cap, n_prompt));
            set_mask(b, 0, n_prompt, 0);
            set_mask(b, n_prompt, n, 1); /* the completion and its EOS are trained on */
            rc = dataset_writer_add(b->w, b->ids, b->mask, n, -1);
            if (rc == 0) {
                b->n_tokens += n;
                b->n_trained += n - n_prompt;
            }
        }
    }
    json_decref(obj);
    if (rc == 0) b->n_docs++;
    return rc;
}

static int build_jsonl(Build *b, FILE *f) {
    char *line = NULL;
    size_t line_cap = 0;
    ssize_t len;
    int rc = 0;
    while ((len = getline(&line, &line_cap, f)) >= 0) {
        b->n_lines++;
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

/* Encodes buf[0:len] and appends it to the open document. */
static int append_text(Build *b, const char *buf, size_t len) {
    int64_t n = b->tok->encode(b->tok, buf, len, &b->ids, &b->cap, 0);
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
    while (rc == 0 && (len = getline(&line, &line_cap, f)) >= 0) {
        b->n_lines++;
        bytes += len;
        if (buf_len >= TEXT_CHUNK && prev_ends_clean && !isspace((unsigned char)line[0])) {
            rc = append_text(b, buf, buf_len);
            buf_len = 0;
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
    if (rc == 0 && buf_len > 0) rc = append_text(b, buf, buf_len);
    free(line);
    free(buf);
    if (rc != 0) return -1;
    if (bytes == 0) return 0; /* no document; reported as empty input by the caller */
    int64_t n = add_eos(b, 0);
    if (dataset_writer_append(b->w, b->ids, NULL, n) != 0 || dataset_writer_end_doc(b->w, -1))
        return -1;
    b->n_tokens += n;
    b->n_docs = 1;
    return 0;
}

static void report(const Build *b) {
    printf("wrote %s: schema %s, %lld documents, %lld tokens (tokenizer %s, vocab %d)\n",
           b->o->output, schema_name(b->o->schema), (long long)b->n_docs,
           (long long)b->n_tokens, b->tok->name, b->tok->vocab_size);
    if (b->o->schema == SCHEMA_SFT)
        printf("  %lld tokens carry loss (%.1f%%)\n", (long long)b->n_trained,
               b->n_tokens ? 100.0 * (double)b->n_trained / (double)b->n_tokens : 0.0);
    printf("  %lld lines read, %lld skipped\n", (long long)b->n_lines, (long long)b->n_skipped);
}

int data_build(const BuildOptions *o) { return data_build_stats(o, NULL); }

int data_build_stats(const BuildOptions *o, BuildStats *stats) {
    if (!o->input || !o->output) return err_set("data build: an input and an output are needed");
    if (o->schema != SCHEMA_LM && o->schema != SCHEMA_SFT)
        return err_set("schema '%s' is not supported by `retort data build` yet (lm and sft are)",
                       schema_name(o->schema));
    int is_stdin = strcmp(o->input, "-") == 0;
    int jsonl = !is_stdin && (ends_with(o->input, ".jsonl") || ends_with(o->input, ".json"));
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

    Build b = {0};
    b.o = &opts;
    b.name = is_stdin ? "<stdin>" : o->input;
    FILE *f = is_stdin ? stdin : fopen(o->input, "r");
    if (!f) return err_set("cannot open %s: %s", o->input, strerror(errno));
    b.tok = tokenizer_load(opts.tokenizer);
    if (b.tok)
        b.w = dataset_writer_open(o->output, o->schema, b.tok->vocab_size, b.tok->eos_id,
                                  b.tok->pad_id, b.tok->name);
    int rc = -1;
    if (b.w) {
        rc = jsonl ? build_jsonl(&b, f) : build_text(&b, f);
        if (rc == 0 && ferror(f)) rc = err_set("error reading %s", b.name);
        if (rc == 0 && b.n_docs == 0)
            rc = err_set("%s: no documents found (%lld lines read, %lld skipped); nothing to "
                         "build",
                         b.name, (long long)b.n_lines, (long long)b.n_skipped);
        if (rc == 0) rc = dataset_writer_close(b.w);
        else dataset_writer_abort(b.w);
    }
    if (rc == 0 && !o->quiet) report(&b);
    if (rc == 0 && stats)
        *stats = (BuildStats){b.n_lines, b.n_docs, b.n_tokens, b.n_trained, b.n_skipped};
    if (!is_stdin) fclose(f);
    tokenizer_free(b.tok);
    free(b.ids);
    free(b.mask);
    return rc;
}
