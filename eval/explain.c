/* eval/explain.c — explanations by chain of thought, rationalization or CROP
 * (see explain.h). Lines are read ahead (GENERATE_READ_AHEAD at a time): the
 * prompts filled from the templates, their samples decoded together
 * (generate_texts_many; sample k of a line is the same whichever mode asks
 * for it and whatever lines it is decoded with), each explanation's answer
 * found and compared with the gold one, the lines written to OUT.tmp in
 * order, renamed at the end. */
#include "eval/explain.h"
#include "eval/jsonl.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/progress.h"
#include "util/util.h"

int explain_mode_from_name(const char *name, ExplainMode *out) {
    static const char *const names[] = {"cot", "rationalize", "crop"};
    for (int i = 0; i < 3; i++)
        if (!strcmp(name, names[i])) {
            *out = (ExplainMode)i;
            return 0;
        }
    return err_set("unknown mode '%s'; expected cot (chain of thought), rationalize (explain "
                   "the gold answer) or crop (chain of thought, rationalized where its answer "
                   "is wrong)",
                   name);
}

const char *explain_mode_name(ExplainMode mode) {
    return mode == EXPLAIN_COT ? "cot" : mode == EXPLAIN_RATIONALIZE ? "rationalize" : "crop";
}

char *explain_fill(const char *tmpl, const char *question, const char *answer) {
    size_t cap = strlen(tmpl) + 1, len = 0;
    char *out = xmalloc(cap);
    for (const char *p = tmpl; *p;) {
        const char *with = NULL;
        size_t skip = 0;
        if (!strncmp(p, "{question}", 10)) with = question, skip = 10;
        else if (answer && !strncmp(p, "{answer}", 8)) with = answer, skip = 8;
        size_t add = with ? strlen(with) : 1;
        if (len + add + 1 > cap) out = xrealloc(out, cap = 2 * (len + add + 1));
        if (with) memcpy(out + len, with, add);
        else out[len] = *p;
        len += add;
        p += with ? skip : 1;
    }
    out[len] = '\0';
    return out;
}

int explain_templates_check(ExplainMode mode, const char *cot, const char *rationalize) {
    if (mode != EXPLAIN_RATIONALIZE) {
        if (!strstr(cot, "{question}"))
            return err_set("--cot-template has no {question}: the model would not see the "
                           "question; put {question} where it goes");
        if (strstr(cot, "{answer}"))
            return err_set("--cot-template shows {answer}: a chain of thought must find the "
                           "answer itself (use --mode rationalize to explain a given answer)");
    }
    if (mode != EXPLAIN_COT) {
        if (!strstr(rationalize, "{question}") || !strstr(rationalize, "{answer}"))
            return err_set("--rationalize-template needs both {question} and {answer}: "
                           "rationalization explains the gold answer it is shown");
    }
    return 0;
}

/* ------------------------------------------------------------- the driver */

typedef struct {
    const ExplainJob *job;
    GPT *m;
    const Tokenizer *tok;
    FILE *out;
    const char *tmp;
    ExplainStats st;
} ExplainRun;

/* The gold answer as text: a string, or an integer written in decimal. */
static char *gold_text(json_t *v) {
    if (json_is_string(v)) return xstrdup(json_string_value(v));
    if (json_is_integer(v)) {
        char buf[32];
        snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
        return xstrdup(buf);
    }
    return NULL;
}

/* One explanation judged: its answer (NULL when none) and whether it is the gold. */
typedef struct {
    char *text, *extracted;
    int correct;
    ExplainMode mode; /* EXPLAIN_COT or EXPLAIN_RATIONALIZE: the prompt that wrote it */
} Judged;

static int judge(const ExplainJob *job, char *text, const char *gold, ExplainMode mode,
                 Judged *j) {
    j->text = text;
    j->mode = mode;
    j->extracted = NULL;
    if (answer_spec_extract(job->answer, text, &j->extracted) < 0) return -1;
    int ok = answer_spec_match(job->answer, text, gold);
    if (ok < 0) return -1;
    j->correct = ok;
    return 0;
}

static void count(ExplainStats *st, const Judged *j) {
    int cot = j->mode == EXPLAIN_COT;
    if (j->correct) ++*(cot ? &st->cot_correct : &st->rat_correct);
    else if (j->extracted) ++*(cot ? &st->cot_wrong : &st->rat_wrong);
    else ++*(cot ? &st->cot_none : &st->rat_none);
}

static int write_line(ExplainRun *r, long lineno, int sample, const char *question,
                      const char *gold, const Judged *j) {
    json_t *o = json_object();
    json_object_set_new(o, "line", json_integer(lineno));
    json_object_set_new(o, "sample", json_integer(sample));
    json_object_set_new(o, "question", json_string(question));
    json_object_set_new(o, "answer", json_string(gold));
    json_object_set_new(o, "explanation", json_string(j->text));
    json_object_set_new(o, "extracted", j->extracted ? json_string(j->extracted) : json_null());
    json_object_set_new(o, "correct", json_boolean(j->correct));
    json_object_set_new(o, "mode", json_string(explain_mode_name(j->mode)));
    char *d = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!d) return err_set("%s:%ld: the line could not be written as JSON (text that is "
                           "not UTF-8?)", r->job->input, lineno);
    int rc = fprintf(r->out, "%s\n", d) < 0
                 ? err_write(r->job->output, r->tmp, errno, (uint64_t)strlen(d) + 1, 1)
                 : 0;
    free(d);
    return rc;
}

/* The samples of one line, judged: texts[0:n] (taken) into *out (new). -1
 * with the error naming the line. */
static int judge_all(ExplainRun *r, long lineno, char **texts, int n, const char *gold,
                     ExplainMode mode, Judged **out) {
    Judged *j = xcalloc((size_t)(n > 0 ? n : 1), sizeof(Judged));
    int rc = 0;
    for (int k = 0; k < n; k++)
        if (rc == 0) rc = judge(r->job, texts[k], gold, mode, &j[k]);
        else free(texts[k]);
    free(texts);
    if (rc != 0) {
        for (int k = 0; k < n; k++) {
            free(j[k].text);
            free(j[k].extracted);
        }
        free(j);
        return err_set("%s:%ld: %s", r->job->input, lineno, err_msg());
    }
    *out = j;
    return n;
}

static void judged_free(Judged *j, int n) {
    for (int k = 0; k < n; k++) {
        free(j[k].text);
        free(j[k].extracted);
    }
    free(j);
}

/* A line read ahead: its question and gold answer, and its judged samples. */
typedef struct {
    json_t *obj;
    long lineno;
    const char *question;
    char *gold;
    Judged *cot, *rat;
    int n, n_rat;
} ExplainLine;

/* Lines read ahead; lines [0, live) have had no error; the first error (in
 * line order) is kept in error. */
typedef struct {
    ExplainLine line[GENERATE_READ_AHEAD];
    int n, live, failed;
    char error[4096];
} ExplainAhead;

/* An error at line i: it and the lines after it are not used. */
static void ahead_fail(ExplainAhead *a, int i) {
    if (i >= a->live && a->failed) return; /* an earlier line's error stands */
    a->live = i;
    a->failed = 1;
    snprintf(a->error, sizeof a->error, "%s", err_msg());
}

/* Reads the next lines (up to GENERATE_READ_AHEAD, or the first that is
 * refused). 1 when a line was read or refused, 0 at the end of the input. */
static int read_ahead(ExplainRun *r, ExplainAhead *a, FILE *in, char **buf, size_t *cap,
                      long *lineno) {
    const ExplainJob *job = r->job;
    const char *qf = job->question_field ? job->question_field : "question";
    const char *af = job->answer_field ? job->answer_field : "answer";
    int got = 0;
    while (!a->failed && a->n < GENERATE_READ_AHEAD) {
        json_t *obj;
        got = jsonl_next_object(in, job->input, buf, cap, lineno, &obj);
        if (got == 0) break;
        if (got < 0) {
            ahead_fail(a, a->n);
            break;
        }
        ExplainLine *l = &a->line[a->n];
        *l = (ExplainLine){.obj = obj, .lineno = *lineno};
        a->live = ++a->n;
        if (!(l->question = json_string_value(json_object_get(obj, qf)))) {
            err_set("%s:%ld: field '%s' is missing or not a string (set it with "
                    "--question-field)",
                    job->input, *lineno, qf);
            ahead_fail(a, a->n - 1);
        } else if (!(l->gold = gold_text(json_object_get(obj, af)))) {
            err_set("%s:%ld: gold answer field '%s' is missing or not a string or integer "
                    "(set it with --answer-field)",
                    job->input, *lineno, af);
            ahead_fail(a, a->n - 1);
        }
    }
    return a->n > 0 || a->failed;
}

/* The samples of the live lines that need them (cot; or rationalize: every
 * line, or under crop the lines with a wrong chain of thought),
 * decoded together, then judged line by line. */
static void sample_ahead(ExplainRun *r, ExplainAhead *a, ExplainMode mode) {
    const ExplainJob *job = r->job;
    const char *cot_t = job->cot_template ? job->cot_template : EXPLAIN_COT_TEMPLATE;
    const char *rat_t =
        job->rationalize_template ? job->rationalize_template : EXPLAIN_RATIONALIZE_TEMPLATE;
    int *at = xmalloc((size_t)(a->live > 0 ? a->live : 1) * sizeof(int)), n = 0;
    char **prompts = xmalloc((size_t)(a->live > 0 ? a->live : 1) * sizeof(char *));
    long *index = xmalloc((size_t)(a->live > 0 ? a->live : 1) * sizeof(long));
    for (int i = 0; i < a->live; i++) {
        ExplainLine *l = &a->line[i];
        int want = mode == EXPLAIN_COT || job->mode == EXPLAIN_RATIONALIZE;
        for (int k = 0; k < l->n && !want; k++) want = !l->cot[k].correct; /* CROP */
        if (!want) continue;
        at[n] = i;
        index[n] = l->lineno;
        prompts[n++] = mode == EXPLAIN_COT ? explain_fill(cot_t, l->question, NULL)
                                           : explain_fill(rat_t, l->question, l->gold);
    }
    char ***texts = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(char **));
    int *counts = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(int)), failed = 0;
    int done = n;
    if (generate_texts_many(r->m, r->tok, &job->gen, n, (const char *const *)prompts, index,
                            texts, counts, &failed) != 0) {
        err_set("%s:%ld: %s", job->input, index[failed], err_msg());
        ahead_fail(a, at[failed]);
        done = failed;
    }
    for (int s = 0; s < done; s++) {
        ExplainLine *l = &a->line[at[s]];
        if (at[s] >= a->live) { /* after a line judged in error */
            generated_strings_free(texts[s], counts[s]);
            continue;
        }
        Judged **j = mode == EXPLAIN_COT ? &l->cot : &l->rat;
        int got = judge_all(r, l->lineno, texts[s], counts[s], l->gold, mode, j);
        if (got < 0) {
            ahead_fail(a, at[s]);
            continue;
        }
        *(mode == EXPLAIN_COT ? &l->n : &l->n_rat) = got;
        for (int k = 0; k < got && mode == EXPLAIN_COT; k++) count(&r->st, &l->cot[k]);
    }
    for (int s = 0; s < n; s++) free(prompts[s]);
    free(prompts);
    free(index);
    free(at);
    free(texts);
    free(counts);
}

/* The explanations of one line that went through, written. */
static int write_explanations(ExplainRun *r, ExplainLine *l) {
    const ExplainJob *job = r->job;
    if (job->mode == EXPLAIN_RATIONALIZE) { /* the rationalizations are the output */
        l->cot = l->rat, l->n = l->n_rat;
        l->rat = NULL, l->n_rat = 0;
        for (int k = 0; k < l->n; k++) count(&r->st, &l->cot[k]);
    }
    int rc = 0;
    for (int k = 0; k < l->n && rc == 0; k++) {
        Judged *j = &l->cot[k];
        if (job->mode == EXPLAIN_CROP && !j->correct && k < l->n_rat) { /* CROP's replacement */
            j = &l->rat[k];
            count(&r->st, j);
        }
        if (job->keep_correct && !j->correct) {
            r->st.dropped++;
            continue;
        }
        rc = write_line(r, l->lineno, k, l->question, l->gold, j);
        r->st.written += rc == 0;
    }
    return rc;
}

/* Up to GENERATE_READ_AHEAD lines: read, their chains of thought decoded
 * together and judged, then the rationalizations they need, then written in
 * order. The first error in line order stops the run, as one line at a time
 * would. 1 while lines remain, 0 at the end, -1 with the error set. */
static int explain_ahead(ExplainRun *r, FILE *in, char **buf, size_t *cap, long *lineno,
                         Progress *prog) {
    const ExplainJob *job = r->job;
    ExplainAhead *a = xcalloc(1, sizeof *a);
    int more = read_ahead(r, a, in, buf, cap, lineno);
    if (job->mode != EXPLAIN_RATIONALIZE) sample_ahead(r, a, EXPLAIN_COT);
    if (job->mode != EXPLAIN_COT) sample_ahead(r, a, EXPLAIN_RATIONALIZE);
    int rc = 0;
    for (int i = 0; i < a->n; i++) {
        ExplainLine *l = &a->line[i];
        if (rc == 0 && i < a->live) {
            rc = write_explanations(r, l);
            r->st.lines++;
            progress_detail(prog, "%lld explanations", (long long)r->st.written);
            progress_add(prog, 1);
        }
        judged_free(l->cot, l->n);
        judged_free(l->rat, l->n_rat);
        free(l->gold);
        json_decref(l->obj);
    }
    if (rc == 0 && a->failed) {
        r->st.lines++; /* the line in error */
        rc = err_set("%s", a->error);
    }
    free(a);
    return rc != 0 ? -1 : more;
}

int explain_run(GPT *m, const Tokenizer *tok, const ExplainJob *job, ExplainStats *stats) {
    if (!job->input || !job->output) return err_set("an input JSONL and an output JSONL are needed");
    if (!m) return err_set("explanations need a model (--model)");
    if (!job->answer) return err_set("explanations need an answer spec (--answer)");
    if (job->gen.beams != 0) return err_set("explain samples; beam search is not supported");
    if (job->gen.samples < 1) return err_set("--samples must be >= 1 (got %d)", job->gen.samples);
    const char *cot_t = job->cot_template ? job->cot_template : EXPLAIN_COT_TEMPLATE;
    const char *rat_t =
        job->rationalize_template ? job->rationalize_template : EXPLAIN_RATIONALIZE_TEMPLATE;
    if (explain_templates_check(job->mode, cot_t, rat_t) != 0) return -1;
    if (generate_job_check(&job->gen, gpt_config(m)) != 0) return -1;
    if (gpt_config(m)->vocab_size < tok->vocab_size)
        return err_set("model vocab_size %d is smaller than the tokenizer's %d",
                       gpt_config(m)->vocab_size, tok->vocab_size);
    ExplainRun r = {0};
    r.job = job;
    r.m = m;
    r.tok = tok;
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", job->output) >= (int)sizeof tmp)
        return err_set("path too long: %s", job->output);
    r.tmp = tmp;
    FILE *in = fopen(job->input, "r");
    if (!in) return err_set("cannot open %s: %s", job->input, strerror(errno));
    if (!(r.out = fopen(tmp, "w"))) {
        fclose(in);
        return err_set("cannot create %s: %s", tmp, strerror(errno));
    }
    double t0 = now_seconds();
    Progress *prog = progress_open("explain", "questions", 0, job->quiet);
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0;
    int rc = 0, more = 1;
    while (more > 0) more = explain_ahead(&r, in, &line, &cap, &lineno, prog);
    if (more < 0) rc = -1;
    free(line);
    fclose(in);
    progress_close(prog, rc == 0);
    if (rc == 0 && r.st.written == 0)
        rc = err_set("%s: no explanation was written (%lld lines, %lld dropped by "
                     "--keep-correct): sample more, or check --answer against the model's "
                     "output",
                     job->output, (long long)r.st.lines, (long long)r.st.dropped);
    if (rc == 0) rc = file_commit(r.out, tmp, job->output);
    else file_discard(r.out, tmp);
    r.st.seconds = now_seconds() - t0;
    if (stats) *stats = r.st;
    return rc;
}
