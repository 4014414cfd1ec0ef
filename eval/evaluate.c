/* eval/evaluate.c — `retort eval` (see evaluate.h). Reads the whole JSONL
 * first (hypotheses and references are needed together for corpus BLEU), then
 * generates or reads the hypotheses, then scores. */
#include "eval/evaluate.h"
#include "eval/jsonl.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/util.h"
#include "util/progress.h"

/* Sum of log p(ref tokens, EOS | prompt) under m and how many tokens that is
 * (--chat: the prompt wrapped by the template, and the end-of-turn token in
 * place of EOS). The sequence keeps its end when it is longer than the
 * context; prompt tokens cut off that way are simply not seen. -1 count with
 * the error set when the template fails. */
static double reference_logp(GPT *m, const Tokenizer *tok, const GenerateJob *gen,
                             const char *prompt, const char *ref, int64_t *count) {
    int ctx = gpt_context_len(gpt_config(m));
    uint32_t *p = NULL, *r = NULL;
    int64_t cap_p = 0, cap_r = 0;
    int64_t np = generate_encode_prompt(tok, gen, prompt, &p, &cap_p);
    if (np < 0) {
        *count = -1;
        return 0;
    }
    int end_id = gen->chat ? gen->chat->end_of_turn : tok->eos_id;
    int64_t nr = tok->encode(tok, ref, strlen(ref), &r, &cap_r, 0);
    int64_t total = (np > 0 ? np : 1) + nr + 1; /* an empty prompt starts from EOS */
    int *seq = xmalloc((size_t)total * sizeof(int));
    int64_t k = 0;
    if (np == 0) seq[k++] = tok->eos_id;
    for (int64_t i = 0; i < np; i++) seq[k++] = (int)p[i];
    int64_t first_ref = k;
    for (int64_t i = 0; i < nr; i++) seq[k++] = (int)r[i];
    seq[k++] = end_id;
    /* window of at most ctx+1 tokens ending at the EOS, starting no later than the reference */
    int64_t start = total - (ctx + 1) > 0 ? total - (ctx + 1) : 0;
    int64_t T = total - start - 1;
    int *in = xmalloc((size_t)T * sizeof(int)), *tg = xmalloc((size_t)T * sizeof(int));
    float *lp = xmalloc((size_t)T * sizeof(float));
    for (int64_t j = 0; j < T; j++) {
        in[j] = seq[start + j];
        tg[j] = start + j + 1 >= first_ref ? seq[start + j + 1] : -1;
    }
    gpt_forward(m, in, tg, 1, (int)T, lp);
    double sum = 0;
    *count = 0;
    for (int64_t j = 0; j < T; j++)
        if (tg[j] >= 0) {
            sum += lp[j];
            (*count)++;
        }
    free(in);
    free(tg);
    free(lp);
    free(seq);
    free(p);
    free(r);
    return sum;
}

static json_t *number_or_null(double x) { return isfinite(x) ? json_real(x) : json_null(); }

int eval_result_write_json(const EvalResult *r, const char *path) {
    json_t *o = json_object();
    json_object_set_new(o, "lines", json_integer(r->lines));
    json_object_set_new(o, "bleu", number_or_null(r->bleu.score));
    json_object_set_new(o, "bleu_bp", number_or_null(r->bleu.bp));
    json_object_set_new(o, "chrf", number_or_null(r->chrf));
    json_object_set_new(o, "exact_match", number_or_null(r->exact_match));
    json_object_set_new(o, "rouge_l", number_or_null(r->rouge_l));
    json_object_set_new(o, "token_f1", number_or_null(r->token_f1));
    json_object_set_new(o, "ppl", number_or_null(r->ppl));
    json_object_set_new(o, "ref_tokens", json_integer(r->ref_tokens));
    json_object_set_new(o, "self_bleu", number_or_null(r->self_bleu));
    json_object_set_new(o, "accuracy", number_or_null(r->accuracy));
    json_object_set_new(o, "no_answer", isnan(r->accuracy) ? json_null()
                                                            : json_integer(r->no_answer));
    json_object_set_new(o, "seconds", json_real(r->seconds));
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    size_t n = strlen(text);
    char *withnl = xmalloc(n + 2);
    memcpy(withnl, text, n);
    withnl[n] = '\n';
    int rc = write_file_atomic(path, withnl, n + 1);
    free(withnl);
    free(text);
    return rc;
}

static const char *const METRIC_NAMES =
    "bleu, chrf, exact_match, rouge_l, token_f1, ppl, self_bleu, accuracy";

int eval_result_metric(const EvalResult *r, const char *name, double *value) {
    if (!strcmp(name, "bleu")) *value = r->bleu.score;
    else if (!strcmp(name, "chrf")) *value = r->chrf;
    else if (!strcmp(name, "exact_match")) *value = r->exact_match;
    else if (!strcmp(name, "rouge_l")) *value = r->rouge_l;
    else if (!strcmp(name, "token_f1")) *value = r->token_f1;
    else if (!strcmp(name, "ppl")) *value = r->ppl;
    else if (!strcmp(name, "self_bleu")) *value = r->self_bleu;
    else if (!strcmp(name, "accuracy")) *value = r->accuracy;
    else return err_set("unknown eval metric '%s'; expected one of %s", name, METRIC_NAMES);
    return 0;
}

int eval_metric_higher_is_better(const char *name) {
    double v;
    EvalResult r = {0};
    if (eval_result_metric(&r, name, &v) != 0) return -1;
    return strcmp(name, "ppl") != 0 && strcmp(name, "self_bleu") != 0;
}

/* ------------------------------------------------------------ reading lines */

/* The JSON objects of a JSONL file's non-blank lines, with their line numbers. */
typedef struct {
    json_t **objs;
    long *lineno;
    int64_t n, cap;
} Objects;

static void objects_free(Objects *o) {
    for (int64_t i = 0; i < o->n; i++) json_decref(o->objs[i]);
    free(o->objs);
    free(o->lineno);
    memset(o, 0, sizeof *o);
}

static int read_objects(const char *path, Objects *o) {
    FILE *f = fopen(path, "r");
    if (!f) return err_set("cannot open %s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0;
    int rc = 0, got;
    json_t *obj;
    while ((got = jsonl_next_object(f, path, &line, &cap, &lineno, &obj)) != 0) {
        if (got < 0) {
            rc = -1;
            break;
        }
        if (o->n == o->cap) {
            o->cap = o->cap ? 2 * o->cap : 64;
            o->objs = xrealloc(o->objs, (size_t)o->cap * sizeof *o->objs);
            o->lineno = xrealloc(o->lineno, (size_t)o->cap * sizeof *o->lineno);
        }
        o->objs[o->n] = obj;
        o->lineno[o->n++] = lineno;
    }
    free(line);
    fclose(f);
    if (rc == 0 && o->n == 0) rc = err_set("%s: no lines to evaluate", path);
    return rc;
}

/* The lines to score: prompts (with a model), references and gold answers. */
typedef struct {
    const char *path;
    Objects o;
    const char **prompts, **refs; /* owned by the objects */
    char **golds;                 /* owned; NULL without an answer spec */
    int64_t n;
} Lines;

static void lines_free(Lines *l) {
    for (int64_t i = 0; l->golds && i < l->n; i++) free(l->golds[i]);
    free(l->golds);
    free(l->prompts);
    free(l->refs);
    objects_free(&l->o);
}

/* A gold answer as text: a string, or a number as JSON writes it. */
static char *gold_text(json_t *v) {
    if (json_is_string(v)) return xstrdup(json_string_value(v));
    if (json_is_integer(v)) {
        char buf[32];
        snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
        return xstrdup(buf);
    }
    if (json_is_real(v)) return json_dumps(v, JSON_ENCODE_ANY);
    return NULL;
}

static int read_lines(const EvalJob *job, const char *path, int need_prompt, Lines *l) {
    const char *pf = job->gen.prompt_field ? job->gen.prompt_field : "prompt";
    const char *rf = job->reference_field ? job->reference_field : "reference";
    const char *af = job->answer_field ? job->answer_field : rf;
    l->path = path;
    if (read_objects(path, &l->o) != 0) return -1;
    l->n = l->o.n;
    l->prompts = xcalloc((size_t)l->n, sizeof *l->prompts);
    l->refs = xcalloc((size_t)l->n, sizeof *l->refs);
    if (job->answer) l->golds = xcalloc((size_t)l->n, sizeof *l->golds);
    for (int64_t i = 0; i < l->n; i++) {
        json_t *o = l->o.objs[i];
        long ln = l->o.lineno[i];
        l->prompts[i] = json_string_value(json_object_get(o, pf));
        l->refs[i] = json_string_value(json_object_get(o, rf));
        if (need_prompt && !l->prompts[i])
            return err_set("%s:%ld: prompt field '%s' is missing or not a string (--prompt-field)",
                           path, ln, pf);
        if (!l->refs[i])
            return err_set("%s:%ld: reference field '%s' is missing or not a string "
                           "(--reference-field)",
                           path, ln, rf);
        if (job->answer && !(l->golds[i] = gold_text(json_object_get(o, af))))
            return err_set("%s:%ld: gold answer field '%s' is missing or not a string or "
                           "number (--answer-field)",
                           path, ln, af);
    }
    return 0;
}

/* ------------------------------------------------------------------ scoring */

typedef struct {
    double rouge, f1, self_bleu;
    int64_t em, correct, no_answer;
} Sums;

/* Scores one hypothesis against line i; with pred, adds the answer fields. */
static int score_line(const EvalJob *job, const Lines *l, int64_t i, const char *hyp, Sums *s,
                      json_t *pred) {
    const char *ref = l->refs[i];
    s->em += exact_match(hyp, ref);
    s->rouge += rouge_l_f(hyp, ref);
    s->f1 += token_f1(hyp, ref);
    if (!job->answer) return 0;
    char *ans = NULL;
    int found = answer_spec_extract(job->answer, hyp, &ans);
    int ok = found > 0 ? answer_spec_match(job->answer, hyp, l->golds[i]) : found;
    if (found < 0 || ok < 0) {
        free(ans);
        return err_set("%s:%ld: %s", l->path, l->o.lineno[i], err_msg());
    }
    if (!found) s->no_answer++;
    s->correct += ok;
    if (pred) {
        json_object_set_new(pred, "extracted_answer", ans ? json_string(ans) : json_null());
        json_object_set_new(pred, "correct", json_boolean(ok));
    }
    free(ans);
    return 0;
}

static int finish(const EvalJob *job, const Lines *l, char **hyps, const Sums *s, int64_t n,
                  EvalResult *out) {
    if (bleu_corpus((const char *const *)hyps, l->refs, (int)n, 1, &out->bleu) != 0) return -1;
    out->lines = n;
    out->chrf = chrf_corpus((const char *const *)hyps, l->refs, (int)n);
    out->exact_match = (double)s->em / (double)n;
    out->rouge_l = s->rouge / (double)n;
    out->token_f1 = s->f1 / (double)n;
    if (job->answer) {
        out->accuracy = (double)s->correct / (double)n;
        out->no_answer = s->no_answer;
    }
    return 0;
}

/* The predictions file, written to PATH.tmp and renamed when complete. */
typedef struct {
    FILE *f;
    char tmp[4096];
} Pred;

static int pred_open(const EvalJob *job, Pred *p) {
    p->f = NULL;
    if (!job->predictions) return 0;
    if (snprintf(p->tmp, sizeof p->tmp, "%s.tmp", job->predictions) >= (int)sizeof p->tmp)
        return err_set("--predictions path too long: %s", job->predictions);
    if (!(p->f = fopen(p->tmp, "w")))
        return err_set("cannot create %s: %s", p->tmp, strerror(errno));
    return 0;
}

static int pred_write(Pred *p, const char *final, json_t *o) {
    char *dump = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    int rc = fprintf(p->f, "%s\n", dump) < 0
                 ? err_write(final, p->tmp, errno, (uint64_t)ftell(p->f), 1)
                 : 0;
    free(dump);
    return rc;
}

static int pred_close(const EvalJob *job, Pred *p, int rc) {
    if (!p->f) return rc;
    if (rc == 0) return file_commit(p->f, p->tmp, job->predictions);
    file_discard(p->f, p->tmp);
    return rc;
}

static void result_init(EvalResult *out) {
    memset(out, 0, sizeof *out);
    out->self_bleu = NAN;
    out->accuracy = NAN;
    out->ppl = NAN;
}

/* evaluate_jsonl's side of generate_stream: the lines' prompts in, each
 * line scored as its completions come back (in order). */
typedef struct {
    GPT *m;
    const Tokenizer *tok;
    const EvalJob *job;
    Lines *l;
    int64_t n, next;
    char **hyps;
    Sums s;
    Pred pred;
    double logp_sum;
    EvalResult *out;
    Progress *prog;
} EvalRun;

static int eval_next(void *ctx, const char **text, long *index, void **user, char *where,
                     size_t where_size) {
    EvalRun *e = ctx;
    if (e->next >= e->n) return 0;
    int64_t i = e->next++;
    *text = e->l->prompts[i];
    *index = (long)i + 1;
    *user = (void *)(intptr_t)i;
    snprintf(where, where_size, "%s, prompt %lld: the prompt", e->job->input, (long long)i + 1);
    return 1;
}

static void eval_drop(void *ctx, void *user) { (void)ctx, (void)user; }

static int eval_emit(void *ctx, void *user, const int *prompt, int n_prompt, Completion *c,
                     int got) {
    EvalRun *e = ctx;
    const EvalJob *job = e->job;
    int64_t i = (int64_t)(intptr_t)user;
    (void)prompt, (void)n_prompt;
    int rc = 0;
    e->hyps[i] = got > 0 ? xstrdup(c[0].text) : xstrdup("");
    const char **texts = xcalloc((size_t)(got > 0 ? got : 1), sizeof(char *));
    for (int k = 0; k < got; k++) texts[k] = c[k].text;
    if (got > 1) {
        double sb = self_bleu((const char *const *)texts, got);
        if (sb < 0) rc = -1;
        e->s.self_bleu += sb;
    }
    int64_t count = 0;
    e->logp_sum += reference_logp(e->m, e->tok, &job->gen, e->l->prompts[i], e->l->refs[i], &count);
    if (count < 0) rc = -1;
    e->out->ref_tokens += count;
    json_t *o = e->pred.f ? json_deep_copy(e->l->o.objs[i]) : NULL;
    if (o) {
        json_object_set_new(o, "prediction", json_string(e->hyps[i]));
        if (got > 1) {
            json_t *a = json_array();
            for (int k = 0; k < got; k++) json_array_append_new(a, json_string(texts[k]));
            json_object_set_new(o, "samples", a);
        }
    }
    if (rc == 0) rc = score_line(job, e->l, i, e->hyps[i], &e->s, o);
    if (rc == 0 && o) rc = pred_write(&e->pred, job->predictions, o);
    json_decref(o);
    free(texts);
    progress_add(e->prog, 1);
    return rc;
}

int evaluate_jsonl(GPT *m, const Tokenizer *tok, const EvalJob *job, EvalResult *out) {
    result_init(out);
    Lines l = {0};
    if (read_lines(job, job->input, 1, &l) != 0) {
        lines_free(&l);
        return -1;
    }
    int64_t n = job->max_lines > 0 && job->max_lines < l.n ? job->max_lines : l.n;
    double t0 = now_seconds();
    int samples = job->gen.beams > 0 ? 1 : job->gen.samples;
    GenerateJob gj = job->gen;
    gj.samples = samples;
    gj.candidates = 0; /* a candidate pool is generate's; eval scores samples or the best beam */
    if (generate_job_check(&gj, gpt_config(m)) != 0) {
        lines_free(&l);
        return -1;
    }
    EvalRun e = {.m = m, .tok = tok, .job = job, .l = &l, .n = n, .out = out};
    e.hyps = xcalloc((size_t)(n > 0 ? n : 1), sizeof(char *));
    e.prog = progress_open("eval", "prompts", n, job->quiet);
    int rc = pred_open(job, &e.pred);
    if (rc == 0) {
        GenStream gs = {eval_next, eval_emit, eval_drop, &e};
        rc = generate_stream(m, tok, &gj, &gs);
    }
    progress_close(e.prog, rc == 0);
    if (rc == 0) rc = finish(job, &l, e.hyps, &e.s, n, out);
    if (rc == 0) {
        out->ppl = out->ref_tokens ? exp(-e.logp_sum / (double)out->ref_tokens) : NAN;
        if (samples > 1) out->self_bleu = e.s.self_bleu / (double)n;
        out->seconds = now_seconds() - t0;
    }
    rc = pred_close(job, &e.pred, rc);
    for (int64_t i = 0; i < n; i++) free(e.hyps[i]);
    free(e.hyps);
    lines_free(&l);
    return rc;
}

/* The hypothesis of a line of the hypotheses file (above); NULL with the
 * error set. */
static const char *hypothesis_of(const EvalJob *job, json_t *o, long lineno) {
    const char *field = job->hypothesis_field;
    json_t *v = NULL;
    if (field) v = json_object_get(o, field);
    else if ((v = json_object_get(o, "prediction"))) field = "prediction";
    else if ((v = json_object_get(o, "completions"))) field = "completions";
    if (!v) {
        if (job->hypothesis_field)
            err_set("%s:%ld: hypothesis field '%s' is missing (--hypothesis-field)",
                    job->hypotheses, lineno, field);
        else
            err_set("%s:%ld: the line has neither \"prediction\" (eval --predictions) nor "
                    "\"completions\" (generate); name the hypothesis field with "
                    "--hypothesis-field",
                    job->hypotheses, lineno);
        return NULL;
    }
    if (json_is_array(v)) v = json_array_get(v, 0);
    const char *h = json_string_value(v);
    if (!h)
        err_set("%s:%ld: hypothesis field '%s' is not a string or an array whose first element "
                "is a string",
                job->hypotheses, lineno, field);
    return h;
}

int evaluate_hypotheses(const EvalJob *job, EvalResult *out) {
    result_init(out);
    double t0 = now_seconds();
    Lines l = {0};
    Objects h = {0}, *hyp_objs = &l.o;
    int rc = read_lines(job, job->input ? job->input : job->hypotheses, 0, &l);
    if (rc == 0 && job->input) {
        rc = read_objects(job->hypotheses, &h);
        hyp_objs = &h;
        if (rc == 0 && h.n != l.n)
            rc = err_set("%s has %lld lines and %s %lld: hypotheses are matched to the input "
                         "by position (blank lines skipped), so the two must have as many; "
                         "give the input the hypotheses were made from",
                         job->hypotheses, (long long)h.n, job->input, (long long)l.n);
    }
    int64_t n = job->max_lines > 0 && job->max_lines < l.n ? job->max_lines : l.n;
    char **hyps = rc == 0 ? xcalloc((size_t)n, sizeof(char *)) : NULL;
    Sums s = {0};
    Pred pred = {0};
    if (rc == 0) rc = pred_open(job, &pred);
    for (int64_t i = 0; i < n && rc == 0; i++) {
        const char *hy = hypothesis_of(job, hyp_objs->objs[i], hyp_objs->lineno[i]);
        if (!hy) {
            rc = -1;
            break;
        }
        hyps[i] = xstrdup(hy);
        json_t *o = pred.f ? json_deep_copy(l.o.objs[i]) : NULL;
        if (o) json_object_set_new(o, "prediction", json_string(hy));
        rc = score_line(job, &l, i, hy, &s, o);
        if (rc == 0 && o) rc = pred_write(&pred, job->predictions, o);
        json_decref(o);
    }
    if (rc == 0) rc = finish(job, &l, hyps, &s, n, out);
    if (rc == 0) out->seconds = now_seconds() - t0;
    rc = pred_close(job, &pred, rc);
    for (int64_t i = 0; hyps && i < n; i++) free(hyps[i]);
    free(hyps);
    objects_free(&h);
    lines_free(&l);
    return rc;
}
