/* eval/generate_io.c — JSONL in, JSONL out generation (see generate_io.h). */
#include "eval/generate_io.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Decoded text of tokens[0:n] without EOS, made valid UTF-8 for JSON (a
 * completion can end inside a multi-byte character, and a byte-level model
 * can emit any byte). */
static char *decode_ids(const Tokenizer *tok, const int *tokens, int n) {
    uint32_t *ids = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(uint32_t));
    int k = 0;
    for (int i = 0; i < n; i++)
        if (tokens[i] != tok->eos_id) ids[k++] = (uint32_t)tokens[i];
    char *raw = tokenizer_decode(tok, ids, k);
    char *text = utf8_sanitize(raw, strlen(raw));
    free(raw);
    free(ids);
    return text;
}

/* Adds "completions" (and for beams "scores", "logps") for one prompt to obj. */
static void complete(GPT *m, const Tokenizer *tok, const GenerateJob *job, const int *prompt,
                     int n, Rng *rng, json_t *obj) {
    json_t *texts = json_array();
    int ctx = gpt_config(m)->n_positions;
    if (job->beams > 0) {
        int want = job->samples < job->beams ? job->samples : job->beams;
        Hypothesis *h = xcalloc((size_t)want, sizeof(Hypothesis));
        int got = generate_beam(m, prompt, n, job->beams, job->sample.max_new_tokens,
                                job->length_penalty, job->sample.eos_id, want, h);
        json_t *scores = json_array(), *logps = json_array();
        for (int k = 0; k < got; k++) {
            char *t = decode_ids(tok, h[k].tokens, h[k].len);
            json_array_append_new(texts, json_string(t));
            json_array_append_new(scores, json_real(h[k].score));
            json_array_append_new(logps, json_real(h[k].logp));
            free(t);
        }
        json_object_set_new(obj, "scores", scores);
        json_object_set_new(obj, "logps", logps);
        hypotheses_free(h, got);
        free(h);
    } else {
        int *buf = xmalloc((size_t)(ctx + 1) * sizeof(int));
        for (int s = 0; s < job->samples; s++) {
            memcpy(buf, prompt, (size_t)n * sizeof(int));
            int len = generate_sample(m, buf, n, &job->sample, rng);
            char *t = decode_ids(tok, buf + n, len - n);
            json_array_append_new(texts, json_string(t));
            free(t);
        }
        free(buf);
    }
    json_object_set_new(obj, "completions", texts);
}

int generate_jsonl(GPT *m, const Tokenizer *tok, const GenerateJob *job) {
    const char *field = job->prompt_field ? job->prompt_field : "prompt";
    FILE *in = fopen(job->input, "r");
    if (!in) return err_set("cannot open %s: %s", job->input, strerror(errno));
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", job->output) >= (int)sizeof tmp) {
        fclose(in);
        return err_set("output path too long: %s", job->output);
    }
    FILE *out = fopen(tmp, "w");
    if (!out) {
        fclose(in);
        return err_set("cannot create %s: %s", tmp, strerror(errno));
    }
    int ctx = gpt_config(m)->n_positions, rc = 0;
    Rng rng;
    rng_seed(&rng, job->seed);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0, done = 0;
    uint32_t *ids = NULL;
    int64_t ids_cap = 0;
    int *prompt = xmalloc((size_t)ctx * sizeof(int));
    while (rc == 0 && (len = getline(&line, &cap, in)) >= 0) {
        lineno++;
        if (strspn(line, " \t\r\n") == (size_t)len) continue;
        json_error_t jerr;
        json_t *obj = json_loadb(line, (size_t)len, 0, &jerr);
        const char *text = obj ? json_string_value(json_object_get(obj, field)) : NULL;
        if (!obj || !json_is_object(obj)) {
            rc = err_set("%s:%ld: not a JSON object (%s)", job->input, lineno,
                         obj ? "another JSON value" : jerr.text);
        } else if (!text) {
            rc = err_set("%s:%ld: field '%s' is missing or not a string (set the prompt field "
                         "with --prompt-field)", job->input, lineno, field);
        } else {
            int64_t n = tok->encode(tok, text, strlen(text), &ids, &ids_cap, 0);
            int start = n > ctx - 1 ? (int)(n - (ctx - 1)) : 0; /* keep the prompt's end */
            int k = 0;
            if (n == 0) prompt[k++] = tok->eos_id;
            for (int64_t i = start; i < n; i++) prompt[k++] = (int)ids[i];
            complete(m, tok, job, prompt, k, &rng, obj);
            char *dump = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
            if (fprintf(out, "%s\n", dump) < 0) rc = err_set("cannot write %s", tmp);
            free(dump);
            done++;
            if (!job->quiet && isatty(STDERR_FILENO)) fprintf(stderr, "\rgenerate: %ld prompts", done);
        }
        json_decref(obj);
    }
    if (!job->quiet) fprintf(stderr, "%sgenerate: %ld prompts -> %s\n", isatty(STDERR_FILENO) ? "\r" : "",
                             done, job->output);
    free(line);
    free(ids);
    free(prompt);
    fclose(in);
    if (fclose(out) != 0 && rc == 0) rc = err_set("cannot write %s: %s", tmp, strerror(errno));
    if (rc == 0 && rename(tmp, job->output) != 0)
        rc = err_set("cannot rename %s to %s: %s", tmp, job->output, strerror(errno));
    if (rc != 0) remove(tmp);
    return rc;
}
