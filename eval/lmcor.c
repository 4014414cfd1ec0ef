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

/* The giant's pool for one prompt: its greedy output first, then
 * g->candidates samples at g->sample's options (LMCOR: 4 at temperature 0.6),
 * the pool `retort generate --candidates N` writes (generate_io.h); with no
 * candidates, the greedy output alone. A new array of new strings into *pool;
 * its length, or -1 with the error set. */
static int giant_pool(GPT *m, const Tokenizer *tok, const GenerateJob *g, const char *prompt,
                      long index, char ***pool) {
    GenerateJob job = *g;
    job.samples = 1;
    job.beams = 0;
    if (job.candidates == 0) job.sample.temperature = 0;
    return generate_texts(m, tok, &job, prompt, index, pool);
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

/* One input line: its pool (from the giant or the line), the corrector's
 * input and its correction, added to obj; the greedy candidate and the
 * correction for scoring into *greedy and *correction (new strings). */
static int run_line(GPT *giant, const Tokenizer *giant_tok, GPT *corrector,
                    const Tokenizer *corrector_tok, const LmcorRunJob *job, json_t *obj,
                    long line, char **greedy, char **correction, int64_t *n_candidates) {
    const char *file = job->input;
    const char *source =
        string_field(obj, job->fields.prompt_field, "source", "--prompt-field", file, line);
    if (!source) return -1;
    char **generated = NULL;
    const char **cands = NULL;
    int n;
    if (giant) {
        const char *prompt = source;
        if (job->giant.prompt_field &&
            !(prompt = string_field(obj, job->giant.prompt_field, "giant prompt",
                                    "--giant-prompt-field", file, line)))
            return -1;
        n = giant_pool(giant, giant_tok, &job->giant, prompt, line, &generated);
        if (n < 0) return err_at(file, line, "the giant");
        cands = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(char *));
        for (int i = 0; i < n; i++) cands[i] = generated[i];
    } else {
        n = lmcor_line_candidates(&job->fields, obj, file, line, &cands);
        if (n < 0) return -1;
    }
    *n_candidates += n;
    json_t *pool = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(pool, json_string(cands[i]));
    *greedy = xstrdup(n > 0 ? cands[0] : "");
    int kept = lmcor_arrange(&job->format, line, cands, n);
    char *input = lmcor_input(&job->format, source, cands, kept);
    char **out = NULL;
    int got = generate_texts(corrector, corrector_tok, &job->corrector, input, line, &out);
    int rc = 0;
    if (got < 0) {
        rc = err_at(file, line, "the corrector's input (source + candidates)");
        json_decref(pool);
    } else {
        *correction = xstrdup(lmcor_correction(&job->format, got > 0 ? out[0] : ""));
        json_object_set_new(obj, "candidates", pool);
        json_object_set_new(obj, "corrector_input", json_string(input));
        json_object_set_new(obj, "correction", json_string(*correction));
        strings_free(out, got);
    }
    free(input);
    free(cands);
    if (generated) strings_free(generated, n);
    return rc;
}

int lmcor_run(GPT *giant, const Tokenizer *giant_tok, GPT *corrector,
              const Tokenizer *corrector_tok, const LmcorRunJob *job, LmcorRunResult *result) {
    if (giant && generate_job_check(&job->giant, gpt_config(giant)) != 0) return -1;
    if (generate_job_check(&job->corrector, gpt_config(corrector)) != 0) return -1;
    FILE *in, *out;
    char tmp[4096];
    if (open_files(job->input, job->output, &in, &out, tmp, sizeof tmp) != 0) return -1;
    const char *ref_field = job->fields.reference_field;
    LmcorRunResult r = {0};
    r.has_reference = ref_field != NULL;
    double t0 = now_seconds();
    char **greedy = NULL, **corrections = NULL, **refs = NULL;
    int64_t cap_rows = 0;
    char *buf = NULL;
    size_t cap = 0;
    long line = 0;
    json_t *obj;
    int rc = 0, got;
    Progress *prog = progress_open("correct", "lines", progress_count_lines(job->input), job->quiet);
    while (rc == 0 && (got = jsonl_next_object(in, job->input, &buf, &cap, &line, &obj)) != 0) {
        if (got < 0) {
            rc = -1;
            break;
        }
        const char *ref = NULL;
        if (ref_field && !(ref = string_field(obj, ref_field, "reference", "--reference-field",
                                              job->input, line))) {
            rc = -1;
        } else {
            if (r.lines == cap_rows) {
                cap_rows = cap_rows ? 2 * cap_rows : 64;
                greedy = xrealloc(greedy, (size_t)cap_rows * sizeof(char *));
                corrections = xrealloc(corrections, (size_t)cap_rows * sizeof(char *));
                refs = xrealloc(refs, (size_t)cap_rows * sizeof(char *));
            }
            char *g = NULL, *c = NULL;
            rc = run_line(giant, giant_tok, corrector, corrector_tok, job, obj, line, &g, &c,
                          &r.candidates);
            if (rc == 0) rc = write_line(out, job->output, tmp, obj);
            if (rc == 0) {
                greedy[r.lines] = g;
                corrections[r.lines] = c;
                refs[r.lines] = xstrdup(ref ? ref : "");
                r.lines++;
                progress_add(prog, 1);
            } else {
                free(g);
                free(c);
            }
        }
        json_decref(obj);
    }
    free(buf);
    fclose(in);
    if (rc == 0 && r.lines == 0)
        rc = err_set("%s: no lines to correct (the file has no JSON lines)", job->input);
    if (rc == 0 && r.has_reference) {
        rc = score_all((const char *const *)greedy, (const char *const *)refs, (int)r.lines,
                       job->answer, &r.giant);
        if (rc == 0)
            rc = score_all((const char *const *)corrections, (const char *const *)refs,
                           (int)r.lines, job->answer, &r.correction);
    }
    if (rc == 0) rc = file_commit(out, tmp, job->output);
    else file_discard(out, tmp);
    for (int64_t i = 0; i < r.lines; i++) {
        free(greedy[i]);
        free(corrections[i]);
        free(refs[i]);
    }
    free(greedy);
    free(corrections);
    free(refs);
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
