/* eval/evaluate.c — `retort eval` (see evaluate.h). Reads the whole JSONL
 * first (hypotheses and references are needed together for corpus BLEU), then
 * scores. */
#include "eval/evaluate.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/util.h"

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

int eval_result_write_json(const EvalResult *r, const char *path) {
    json_t *o = json_object();
    json_object_set_new(o, "lines", json_integer(r->lines));
    json_object_set_new(o, "bleu", json_real(r->bleu.score));
    json_object_set_new(o, "bleu_bp", json_real(r->bleu.bp));
    json_object_set_new(o, "chrf", json_real(r->chrf));
    json_object_set_new(o, "exact_match", json_real(r->exact_match));
    json_object_set_new(o, "rouge_l", json_real(r->rouge_l));
    json_object_set_new(o, "token_f1", json_real(r->token_f1));
    json_object_set_new(o, "ppl", json_real(r->ppl));
    json_object_set_new(o, "ref_tokens", json_integer(r->ref_tokens));
    json_object_set_new(o, "self_bleu", isnan(r->self_bleu) ? json_null() : json_real(r->self_bleu));
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

typedef struct {
    json_t **objs;
    char **prompts, **refs;
    int64_t n, cap;
} Lines;

static void lines_free(Lines *l) {
    for (int64_t i = 0; i < l->n; i++) json_decref(l->objs[i]);
    free(l->objs);
    free(l->prompts);
    free(l->refs);
}

static int read_lines(const EvalJob *job, Lines *l) {
    const char *pf = job->gen.prompt_field ? job->gen.prompt_field : "prompt";
    const char *rf = job->reference_field ? job->reference_field : "reference";
    FILE *f = fopen(job->input, "r");
    if (!f) return err_set("cannot open %s: %s", job->input, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0;
    int rc = 0;
    while (rc == 0 && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (strspn(line, " \t\r\n") == (size_t)len) continue;
        json_error_t e;
        json_t *o = json_loadb(line, (size_t)len, 0, &e);
        const char *p = o ? json_string_value(json_object_get(o, pf)) : NULL;
        const char *r = o ? json_string_value(json_object_get(o, rf)) : NULL;
        if (!o || !json_is_object(o))
            rc = err_set("%s:%ld: not a JSON object (%s)", job->input, lineno,
                         o ? "another JSON value" : e.text);
        else if (!p)
            rc = err_set("%s:%ld: prompt field '%s' is missing or not a string (--prompt-field)",
                         job->input, lineno, pf);
        else if (!r)
            rc = err_set("%s:%ld: reference field '%s' is missing or not a string "
                         "(--reference-field)", job->input, lineno, rf);
        if (rc != 0) {
            json_decref(o);
            break;
        }
        if (l->n == l->cap) {
            l->cap = l->cap ? 2 * l->cap : 64;
            l->objs = xrealloc(l->objs, (size_t)l->cap * sizeof *l->objs);
            l->prompts = xrealloc(l->prompts, (size_t)l->cap * sizeof *l->prompts);
            l->refs = xrealloc(l->refs, (size_t)l->cap * sizeof *l->refs);
        }
        l->objs[l->n] = o; /* the strings below live as long as the object */
        l->prompts[l->n] = (char *)p;
        l->refs[l->n] = (char *)r;
        l->n++;
    }
    free(line);
    fclose(f);
    if (rc == 0 && l->n == 0) rc = err_set("%s: no lines to evaluate", job->input);
    return rc;
}

int evaluate_jsonl(GPT *m, const Tokenizer *tok, const EvalJob *job, EvalResult *out) {
    memset(out, 0, sizeof *out);
    out->self_bleu = NAN;
    Lines l = {0};
    if (read_lines(job, &l) != 0) {
        lines_free(&l);
        return -1;
    }
    double t0 = now_seconds();
    int samples = job->gen.beams > 0 ? 1 : job->gen.samples;
    GenerateJob gj = job->gen;
    gj.samples = samples;
    if (generate_job_check(&gj, gpt_config(m)) != 0) {
        lines_free(&l);
        return -1;
    }
    char **hyps = xcalloc((size_t)l.n, sizeof(char *));
    double logp_sum = 0, self_sum = 0, rouge = 0, f1 = 0;
    int64_t em = 0;
    int rc = 0;
    FILE *pred = NULL;
    char tmp[4096] = "";
    if (job->predictions) {
        snprintf(tmp, sizeof tmp, "%s.tmp", job->predictions);
        if (!(pred = fopen(tmp, "w"))) rc = err_set("cannot create %s: %s", tmp, strerror(errno));
    }
    for (int64_t i = 0; i < l.n && rc == 0; i++) {
        char **texts = NULL;
        int got = generate_texts(m, tok, &gj, l.prompts[i], (long)i + 1, &texts);
        if (got < 0) {
            rc = err_set("%s, prompt %lld: %s", job->input, (long long)i + 1, err_msg());
            break;
        }
        hyps[i] = got > 0 ? xstrdup(texts[0]) : xstrdup("");
        if (got > 1) {
            double sb = self_bleu((const char *const *)texts, got);
            if (sb < 0) rc = -1;
            self_sum += sb;
        }
        int64_t count = 0;
        logp_sum += reference_logp(m, tok, &job->gen, l.prompts[i], l.refs[i], &count);
        if (count < 0) {
            rc = -1;
            break;
        }
        out->ref_tokens += count;
        em += exact_match(hyps[i], l.refs[i]);
        rouge += rouge_l_f(hyps[i], l.refs[i]);
        f1 += token_f1(hyps[i], l.refs[i]);
        if (pred) {
            json_t *o = json_deep_copy(l.objs[i]);
            json_object_set_new(o, "prediction", json_string(hyps[i]));
            if (got > 1) {
                json_t *a = json_array();
                for (int k = 0; k < got; k++) json_array_append_new(a, json_string(texts[k]));
                json_object_set_new(o, "samples", a);
            }
            char *dump = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
            if (fprintf(pred, "%s\n", dump) < 0) rc = err_set("cannot write %s", tmp);
            free(dump);
            json_decref(o);
        }
        for (int k = 0; k < got; k++) free(texts[k]);
        free(texts);
        if (!job->quiet && isatty(STDERR_FILENO))
            fprintf(stderr, "\r\033[Keval: %lld/%lld", (long long)i + 1, (long long)l.n);
    }
    if (!job->quiet && isatty(STDERR_FILENO)) fprintf(stderr, "\r\033[K");
    if (rc == 0 && bleu_corpus((const char *const *)hyps, (const char *const *)l.refs, (int)l.n, 1,
                               &out->bleu) != 0)
        rc = -1;
    if (rc == 0) {
        out->lines = l.n;
        out->chrf = chrf_corpus((const char *const *)hyps, (const char *const *)l.refs, (int)l.n);
        out->exact_match = (double)em / (double)l.n;
        out->rouge_l = rouge / (double)l.n;
        out->token_f1 = f1 / (double)l.n;
        out->ppl = out->ref_tokens ? exp(-logp_sum / (double)out->ref_tokens) : NAN;
        if (samples > 1) out->self_bleu = self_sum / (double)l.n;
        out->seconds = now_seconds() - t0;
    }
    if (pred) {
        if (rc == 0) rc = file_commit(pred, tmp, job->predictions);
        else file_discard(pred, tmp);
    }
    for (int64_t i = 0; i < l.n; i++) free(hyps[i]);
    free(hyps);
    lines_free(&l);
    return rc;
}
