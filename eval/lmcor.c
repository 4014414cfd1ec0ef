/* eval/lmcor.c — LMCOR correctors (lmcor.h): the corrector's input from a
 * source and candidates, the builder of its training examples, and the
 * chained giant -> corrector inference. Build and run share
 * lmcor_line_candidates, lmcor_arrange and lmcor_input, so a corrector reads
 * at inference exactly the bytes it was trained on. */
#include "eval/lmcor.h"
#include "eval/jsonl.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/util.h"
#include "util/progress.h"

void lmcor_format_defaults(LmcorFormat *f) {
    *f = (LmcorFormat){.candidate_prefix = "Candidate {i}: ",
                       .separator = "\n",
                       .cue = "Correction:",
                       .target_prefix = " ",
                       .shuffle = 0,
                       .seed = 1337,
                       .dedup = 0,
                       .max_candidates = 0};
}

void lmcor_fields_defaults(LmcorFields *f) {
    *f = (LmcorFields){.prompt_field = "prompt",
                       .candidate_fields = {"completions"},
                       .n_candidate_fields = 1,
                       .reference_field = "reference"};
}

/* ------------------------------------------------------------ the format */

int lmcor_arrange(const LmcorFormat *f, long line, const char **cands, int n) {
    if (f->dedup) {
        int k = 0;
        for (int i = 0; i < n; i++) {
            int seen = 0;
            for (int j = 0; j < k && !seen; j++) seen = !strcmp(cands[j], cands[i]);
            if (!seen) cands[k++] = cands[i];
        }
        n = k;
    }
    if (f->max_candidates > 0 && n > f->max_candidates) n = f->max_candidates;
    if (f->shuffle && n > 1) { /* Fisher-Yates from a generator of (seed, line) alone */
        Rng r;
        rng_seed(&r, f->seed * 0x9E3779B97F4A7C15ULL + (uint64_t)line * 0xBF58476D1CE4E5B9ULL);
        for (int i = n - 1; i > 0; i--) {
            int j = (int)rng_below(&r, (uint64_t)i + 1);
            const char *t = cands[i];
            cands[i] = cands[j];
            cands[j] = t;
        }
    }
    return n;
}

/* A growing string. */
typedef struct {
    char *s;
    size_t len, cap;
} Text;

static void text_add(Text *t, const char *s, size_t n) {
    if (t->len + n + 1 > t->cap) {
        t->cap = 2 * (t->len + n + 1);
        t->s = xrealloc(t->s, t->cap);
    }
    memcpy(t->s + t->len, s, n);
    t->len += n;
    t->s[t->len] = '\0';
}

static void text_puts(Text *t, const char *s) { text_add(t, s, strlen(s)); }

/* The candidate prefix with every "{i}" replaced by number. */
static void add_prefix(Text *t, const char *prefix, int number) {
    char num[16];
    snprintf(num, sizeof num, "%d", number);
    for (const char *p = prefix; *p;) {
        const char *at = strstr(p, "{i}");
        if (!at) {
            text_puts(t, p);
            break;
        }
        text_add(t, p, (size_t)(at - p));
        text_puts(t, num);
        p = at + 3;
    }
}

char *lmcor_input(const LmcorFormat *f, const char *source, const char *const *cands, int n) {
    Text t = {0};
    text_puts(&t, source);
    for (int i = 0; i < n; i++) {
        text_puts(&t, f->separator);
        add_prefix(&t, f->candidate_prefix, i + 1);
        text_puts(&t, cands[i]);
    }
    text_puts(&t, f->separator);
    text_puts(&t, f->cue);
    return t.s;
}

char *lmcor_target(const LmcorFormat *f, const char *gold) {
    Text t = {0};
    text_puts(&t, f->target_prefix);
    text_puts(&t, gold);
    return t.s;
}

const char *lmcor_correction(const LmcorFormat *f, const char *out) {
    size_t k = strlen(f->target_prefix);
    return k > 0 && !strncmp(out, f->target_prefix, k) ? out + k : out;
}

/* ------------------------------------------------------------ input lines */

static const char *json_kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "a list";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

int lmcor_line_candidates(const LmcorFields *fields, const json_t *obj, const char *file,
                          long line, const char ***cands) {
    int n = 0, cap = 8;
    const char **c = xmalloc((size_t)cap * sizeof(char *));
    for (int f = 0; f < fields->n_candidate_fields; f++) {
        const char *name = fields->candidate_fields[f];
        const json_t *v = json_object_get(obj, name);
        if (!v) {
            free(c);
            return err_set("%s:%ld: candidate field '%s' is missing (name the field that holds "
                           "the candidates, a list of strings or one string, with "
                           "--candidates-field)",
                           file, line, name);
        }
        size_t count = json_is_array(v) ? json_array_size(v) : 1;
        if (!json_is_array(v) && !json_is_string(v)) {
            free(c);
            return err_set("%s:%ld: candidate field '%s' is %s; it must hold a list of strings "
                           "or one string",
                           file, line, name, json_kind(v));
        }
        for (size_t i = 0; i < count; i++) {
            const json_t *s = json_is_array(v) ? json_array_get(v, i) : v;
            if (!json_is_string(s)) {
                free(c);
                return err_set("%s:%ld: candidate field '%s' item %zu is %s, not a string; the "
                               "candidates must be texts",
                               file, line, name, i, json_kind(s));
            }
            if (n == cap) c = xrealloc(c, (size_t)(cap *= 2) * sizeof(char *));
            c[n++] = json_string_value(s);
        }
    }
    if (n == 0) {
        free(c);
        return err_set("%s:%ld: no candidates (the candidate field%s %s empty); every line needs "
                       "at least one candidate to correct",
                       file, line, fields->n_candidate_fields > 1 ? "s" : "",
                       fields->n_candidate_fields > 1 ? "are" : "is");
    }
    *cands = c;
    return n;
}

/* A string field of obj, or NULL with the error naming file:line, the field
 * and the option that names it. */
static const char *string_field(const json_t *obj, const char *name, const char *what,
                                const char *option, const char *file, long line) {
    const json_t *v = json_object_get(obj, name);
    if (json_is_string(v)) return json_string_value(v);
    if (!v)
        err_set("%s:%ld: %s field '%s' is missing (name it with %s)", file, line, what, name,
                option);
    else
        err_set("%s:%ld: %s field '%s' is %s, not a string", file, line, what, name,
                json_kind(v));
    return NULL;
}

static int write_line(FILE *out, const char *path, const char *tmp, json_t *obj) {
    char *dump = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    int rc = fprintf(out, "%s\n", dump) < 0
                 ? err_write(path, tmp, errno, (uint64_t)ftell(out), 1)
                 : 0;
    free(dump);
    return rc;
}

/* Opens path for reading and OUT.tmp for writing. */
static int open_files(const char *input, const char *output, FILE **in, FILE **out, char *tmp,
                      size_t tmp_cap) {
    if (snprintf(tmp, tmp_cap, "%s.tmp", output) >= (int)tmp_cap)
        return err_set("output path too long: %s", output);
    if (!(*in = fopen(input, "r"))) return err_set("cannot open %s: %s", input, strerror(errno));
    if (!(*out = fopen(tmp, "w"))) {
        fclose(*in);
        return err_set("cannot create %s: %s", tmp, strerror(errno));
    }
    return 0;
}

/* ---------------------------------------------------------------- build */

static int count_distinct(const char *const *cands, int n) {
    int distinct = 0;
    for (int i = 0; i < n; i++) {
        int seen = 0;
        for (int j = 0; j < i && !seen; j++) seen = !strcmp(cands[j], cands[i]);
        distinct += !seen;
    }
    return distinct;
}

int lmcor_build(const LmcorBuildJob *job, LmcorBuildStats *stats) {
    FILE *in, *out;
    char tmp[4096];
    if (open_files(job->input, job->output, &in, &out, tmp, sizeof tmp) != 0) return -1;
    LmcorBuildStats st = {0};
    char *buf = NULL;
    size_t cap = 0;
    long line = 0;
    json_t *obj;
    int rc = 0, got;
    while (rc == 0 && (got = jsonl_next_object(in, job->input, &buf, &cap, &line, &obj)) != 0) {
        if (got < 0) {
            rc = -1;
            break;
        }
        const char **cands = NULL;
        const char *source = string_field(obj, job->fields.prompt_field, "source",
                                          "--prompt-field", job->input, line);
        const char *gold = source ? string_field(obj, job->fields.reference_field, "gold target",
                                                 "--reference-field", job->input, line)
                                  : NULL;
        int n = gold ? lmcor_line_candidates(&job->fields, obj, job->input, line, &cands) : -1;
        if (n < 0) {
            rc = -1;
        } else {
            if (job->format.dedup) st.duplicates += n - count_distinct(cands, n);
            int kept = lmcor_arrange(&job->format, line, cands, n);
            st.candidates += n;
            st.kept += kept;
            char *prompt = lmcor_input(&job->format, source, cands, kept);
            char *target = lmcor_target(&job->format, gold);
            json_t *ex = json_pack("{s:s, s:s}", "prompt", prompt, "completion", target);
            rc = write_line(out, job->output, tmp, ex);
            json_decref(ex);
            free(prompt);
            free(target);
            st.examples++;
        }
        free(cands);
        json_decref(obj);
    }
    free(buf);
    fclose(in);
    if (rc == 0 && st.examples == 0)
        rc = err_set("%s: no examples (the file has no JSON lines); give a JSONL with a source, "
                     "candidates and a gold target per line",
                     job->input);
    if (rc == 0) rc = file_commit(out, tmp, job->output);
    else file_discard(out, tmp);
    if (rc == 0 && stats) *stats = st;
    return rc;
}

/* ------------------------------------------------------------------ run */

/* The giant's job: each prompt's pool is its greedy output first, then
 * g->candidates samples at g->sample's options (LMCOR: 4 at temperature 0.6),
 * the pool `retort generate --candidates N` writes (generate_io.h); with no
 * candidates, the greedy output alone. */
static GenerateJob giant_job(const GenerateJob *g) {
    GenerateJob job = *g;
    job.samples = 1;
    job.beams = 0;
    if (job.candidates == 0) job.sample.temperature = 0;
    return job;
}

static void strings_free(char **s, int n) {
    for (int i = 0; i < n; i++) free(s[i]);
    free(s);
}

/* The scores of hyps[0:n] against refs[0:n] (eval/metrics.h, and eval/answer.h
 * with a spec). */
static int score_all(const char *const *hyps, const char *const *refs, int n,
                     const AnswerSpec *answer, LmcorScores *s) {
    BleuResult b;
    if (bleu_corpus(hyps, refs, n, 1, &b) != 0) return -1;
    s->bleu = b.score;
    s->chrf = chrf_corpus(hyps, refs, n);
    if (s->chrf < 0) return -1;
    double em = 0, rl = 0, f1 = 0;
    for (int i = 0; i < n; i++) {
        em += exact_match(hyps[i], refs[i]);
        rl += rouge_l_f(hyps[i], refs[i]);
        f1 += token_f1(hyps[i], refs[i]);
    }
    s->exact_match = em / n;
    s->rouge_l = rl / n;
    s->token_f1 = f1 / n;
    s->accuracy = NAN;
    s->no_answer = 0;
    if (!answer) return 0;
    int right = 0;
    for (int i = 0; i < n; i++) {
        char *got;
        int found = answer_spec_extract(answer, hyps[i], &got);
        int match = found > 0 ? answer_spec_match(answer, hyps[i], refs[i]) : 0;
        free(got);
        if (found < 0 || match < 0) return -1;
        s->no_answer += found == 0;
        right += match;
    }
    s->accuracy = (double)right / n;
    return 0;
}

/* Keeps err_msg() behind "FILE:LINE: what: ". */
static int err_at(const char *file, long line, const char *what) {
    char why[2048];
    snprintf(why, sizeof why, "%s", err_msg());
    return err_set("%s:%ld: %s: %s", file, line, what, why);
}

/* A line read ahead: its fields, its pool (the giant's texts, or the
 * line's), the corrector's input and output. */
typedef struct {
    json_t *obj;
    long line;
    const char *source, *ref, *giant_prompt;
    char **generated; /* the giant's pool, n of them */
    const char **cands;
    int n;
    json_t *pool;     /* the pool as the line gets it (before lmcor_arrange) */
    char *greedy, *input;
    char **out;       /* the corrector's output, n_out of them */
    int n_out;
} LmcorLine;

/* Lines read ahead; lines [0, live) have had no error; the first error (in
 * line order) is kept in error. */
typedef struct {
    LmcorLine line[GENERATE_READ_AHEAD];
    int n, live, failed;
    char error[4096];
} LmcorAhead;

/* The rows scored at the end, one per line written. */
typedef struct {
    char **greedy, **corrections, **refs;
    int64_t cap;
} LmcorRows;

/* An error at line i: it and the lines after it are not used. */
static void ahead_fail(LmcorAhead *a, int i) {
    if (i >= a->live && a->failed) return; /* an earlier line's error stands */
    a->live = i;
    a->failed = 1;
    snprintf(a->error, sizeof a->error, "%s", err_msg());
}

/* Reads the next lines (up to GENERATE_READ_AHEAD, or the first that is
 * refused) with their fields; without a giant, their candidates. 1 when a
 * line was read or refused, 0 at the end of the input. */
static int read_ahead(const LmcorRunJob *job, int giant, LmcorAhead *a, FILE *in, char **buf,
                      size_t *cap, long *lineno) {
    const char *file = job->input, *ref_field = job->fields.reference_field;
    while (!a->failed && a->n < GENERATE_READ_AHEAD) {
        json_t *obj;
        int got = jsonl_next_object(in, file, buf, cap, lineno, &obj);
        if (got == 0) break;
        if (got < 0) {
            ahead_fail(a, a->n);
            break;
        }
        LmcorLine *l = &a->line[a->n];
        *l = (LmcorLine){.obj = obj, .line = *lineno};
        a->live = ++a->n;
        long line = *lineno;
        int ok = !ref_field || (l->ref = string_field(obj, ref_field, "reference",
                                                      "--reference-field", file, line));
        ok = ok && (l->source = string_field(obj, job->fields.prompt_field, "source",
                                             "--prompt-field", file, line));
        if (ok && giant) {
            l->giant_prompt = l->source;
            if (job->giant.prompt_field)
                ok = (l->giant_prompt = string_field(obj, job->giant.prompt_field,
                                                     "giant prompt", "--giant-prompt-field",
                                                     file, line)) != NULL;
        } else if (ok) {
            ok = (l->n = lmcor_line_candidates(&job->fields, obj, file, line, &l->cands)) >= 0;
            if (!ok) l->n = 0;
        }
        if (!ok) ahead_fail(a, a->n - 1);
    }
    return a->n > 0 || a->failed;
}

/* The texts of the live lines' prompts (the giant's or the corrector's),
 * decoded together, into each line's generated or out. */
static void generate_ahead(LmcorAhead *a, GPT *m, const Tokenizer *tok, const GenerateJob *gen,
                           const char *file, int giant) {
    int n = a->live, failed = 0;
    const char **prompts = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(char *));
    long *index = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(long));
    char ***texts = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(char **));
    int *counts = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(int));
    for (int i = 0; i < n; i++) {
        prompts[i] = giant ? a->line[i].giant_prompt : a->line[i].input;
        index[i] = a->line[i].line;
    }
    if (generate_texts_many(m, tok, gen, n, prompts, index, texts, counts, &failed) != 0) {
        err_at(file, index[failed], giant ? "the giant" : "the corrector's input (source + "
                                                          "candidates)");
        ahead_fail(a, failed);
        n = failed;
    }
    for (int i = 0; i < n; i++) {
        LmcorLine *l = &a->line[i];
        if (giant) {
            l->generated = texts[i];
            l->n = counts[i];
            l->cands = xmalloc((size_t)(l->n > 0 ? l->n : 1) * sizeof(char *));
            for (int k = 0; k < l->n; k++) l->cands[k] = l->generated[k];
        } else {
            l->out = texts[i];
            l->n_out = counts[i];
        }
    }
    free(prompts);
    free(index);
    free(texts);
    free(counts);
}

/* The pool of a line as it is written, its greedy candidate, and the
 * corrector's input. */
static void corrector_input(const LmcorRunJob *job, LmcorLine *l) {
    l->pool = json_array();
    for (int i = 0; i < l->n; i++) json_array_append_new(l->pool, json_string(l->cands[i]));
    l->greedy = xstrdup(l->n > 0 ? l->cands[0] : "");
    int kept = lmcor_arrange(&job->format, l->line, l->cands, l->n);
    l->input = lmcor_input(&job->format, l->source, l->cands, kept);
}

/* A line that went through: its pool, input and correction added to the
 * line and written; its row kept for scoring. */
static int finish_line(const LmcorRunJob *job, FILE *out, const char *tmp, LmcorLine *l,
                       LmcorRows *rows, LmcorRunResult *r) {
    char *correction = xstrdup(lmcor_correction(&job->format, l->n_out > 0 ? l->out[0] : ""));
    json_object_set_new(l->obj, "candidates", l->pool);
    l->pool = NULL;
    json_object_set_new(l->obj, "corrector_input", json_string(l->input));
    json_object_set_new(l->obj, "correction", json_string(correction));
    int rc = write_line(out, job->output, tmp, l->obj);
    if (rc != 0) {
        free(correction);
        return rc;
    }
    if (r->lines == rows->cap) {
        rows->cap = rows->cap ? 2 * rows->cap : 64;
        rows->greedy = xrealloc(rows->greedy, (size_t)rows->cap * sizeof(char *));
        rows->corrections = xrealloc(rows->corrections, (size_t)rows->cap * sizeof(char *));
        rows->refs = xrealloc(rows->refs, (size_t)rows->cap * sizeof(char *));
    }
    rows->greedy[r->lines] = l->greedy;
    l->greedy = NULL;
    rows->corrections[r->lines] = correction;
    rows->refs[r->lines] = xstrdup(l->ref ? l->ref : "");
    r->lines++;
    return 0;
}

static void line_free(LmcorLine *l) {
    if (l->generated) strings_free(l->generated, l->n);
    free(l->cands);
    json_decref(l->pool);
    free(l->greedy);
    free(l->input);
    strings_free(l->out, l->n_out);
    json_decref(l->obj);
}

/* Up to GENERATE_READ_AHEAD lines: read; the giant's pools decoded together;
 * the corrector's inputs, decoded together; then written in order. The first
 * error in line order stops the run, as one line at a time would. 1 while
 * lines remain, 0 at the end, -1 with the error set. */
static int lmcor_ahead(GPT *giant, const Tokenizer *giant_tok, GPT *corrector,
                       const Tokenizer *corrector_tok, const LmcorRunJob *job, FILE *in,
                       char **buf, size_t *cap, long *lineno, FILE *out, const char *tmp,
                       LmcorRows *rows, LmcorRunResult *r, Progress *prog) {
    LmcorAhead *a = xcalloc(1, sizeof *a);
    int more = read_ahead(job, giant != NULL, a, in, buf, cap, lineno);
    if (giant) {
        GenerateJob g = giant_job(&job->giant);
        generate_ahead(a, giant, giant_tok, &g, job->input, 1);
    }
    for (int i = 0; i < a->live; i++) {
        r->candidates += a->line[i].n;
        corrector_input(job, &a->line[i]);
    }
    generate_ahead(a, corrector, corrector_tok, &job->corrector, job->input, 0);
    int rc = 0;
    for (int i = 0; i < a->n; i++) {
        if (rc == 0 && i < a->live) {
            rc = finish_line(job, out, tmp, &a->line[i], rows, r);
            if (rc == 0) progress_add(prog, 1);
        }
        line_free(&a->line[i]);
    }
    if (rc == 0 && a->failed) rc = err_set("%s", a->error);
    free(a);
    return rc != 0 ? -1 : more;
}

int lmcor_run(GPT *giant, const Tokenizer *giant_tok, GPT *corrector,
              const Tokenizer *corrector_tok, const LmcorRunJob *job, LmcorRunResult *result) {
    if (giant && generate_job_check(&job->giant, gpt_config(giant)) != 0) return -1;
    if (generate_job_check(&job->corrector, gpt_config(corrector)) != 0) return -1;
    FILE *in, *out;
    char tmp[4096];
    if (open_files(job->input, job->output, &in, &out, tmp, sizeof tmp) != 0) return -1;
    LmcorRunResult r = {0};
    r.has_reference = job->fields.reference_field != NULL;
    double t0 = now_seconds();
    LmcorRows rows = {0};
    char *buf = NULL;
    size_t cap = 0;
    long line = 0;
    int rc = 0, more = 1;
    Progress *prog = progress_open("correct", "lines", progress_count_lines(job->input), job->quiet);
    while (more > 0)
        more = lmcor_ahead(giant, giant_tok, corrector, corrector_tok, job, in, &buf, &cap,
                           &line, out, tmp, &rows, &r, prog);
    if (more < 0) rc = -1;
    free(buf);
    fclose(in);
    if (rc == 0 && r.lines == 0)
        rc = err_set("%s: no lines to correct (the file has no JSON lines)", job->input);
    if (rc == 0 && r.has_reference) {
        rc = score_all((const char *const *)rows.greedy, (const char *const *)rows.refs,
                       (int)r.lines, job->answer, &r.giant);
        if (rc == 0)
            rc = score_all((const char *const *)rows.corrections, (const char *const *)rows.refs,
                           (int)r.lines, job->answer, &r.correction);
    }
    if (rc == 0) rc = file_commit(out, tmp, job->output);
    else file_discard(out, tmp);
    for (int64_t i = 0; i < r.lines; i++) {
        free(rows.greedy[i]);
        free(rows.corrections[i]);
        free(rows.refs[i]);
    }
    free(rows.greedy);
    free(rows.corrections);
    free(rows.refs);
    r.seconds = now_seconds() - t0;
    if (rc == 0) progress_erase(prog); /* the command prints its report */
    else progress_close(prog, 0);
    if (rc == 0 && result) *result = r;
    return rc;
}

static json_t *scores_json(const LmcorScores *s) {
    json_t *o = json_pack("{s:f, s:f, s:f, s:f, s:f}", "bleu", s->bleu, "chrf", s->chrf,
                          "exact_match", s->exact_match, "rouge_l", s->rouge_l, "token_f1",
                          s->token_f1);
    int measured = !isnan(s->accuracy); /* null without an answer spec, as eval writes */
    json_object_set_new(o, "accuracy", measured ? json_real(s->accuracy) : json_null());
    json_object_set_new(o, "no_answer",
                        measured ? json_integer((json_int_t)s->no_answer) : json_null());
    return o;
}

int lmcor_result_write_json(const LmcorRunResult *r, const char *path) {
    json_t *o = json_pack("{s:I, s:I}", "lines", (json_int_t)r->lines, "candidates",
                          (json_int_t)r->candidates);
    if (r->has_reference) {
        json_object_set_new(o, "giant", scores_json(&r->giant));
        json_object_set_new(o, "correction", scores_json(&r->correction));
    }
    char *dump = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    size_t len = strlen(dump);
    dump = xrealloc(dump, len + 2);
    dump[len] = '\n';
    int rc = write_file_atomic(path, dump, len + 1);
    free(dump);
    return rc;
}
