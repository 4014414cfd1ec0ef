/* eval/pairs.c — preference pairs from scored completions (see pairs.h).
 * Lines are read ahead (GENERATE_READ_AHEAD at a time) and their completions
 * sampled together, per instance (generate_texts_many); then one line at a
 * time: completions (sampled or read), deduplicated, scored, paired, written
 * to the PrefWriter. An error stops the run at the first line in error, as
 * one line at a time would (a line the read-ahead cannot sample ends it). The
 * writer's .tmp + rename makes the output appear only when every line went
 * through. */
#include "eval/pairs.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pcre2.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/h5data.h"
#include "eval/answer.h"
#include "eval/jsonl.h"
#include "util/util.h"
#include "util/progress.h"

int pair_scorer_from_name(const char *name, PairScorer *out) {
    static const char *const names[] = {"exact", "gold-likelihood", "external"};
    for (int i = 0; i < 3; i++)
        if (!strcmp(name, names[i])) {
            *out = (PairScorer)i;
            return 0;
        }
    return err_set("unknown scorer '%s'; expected exact (regex answer vs gold), "
                   "gold-likelihood (mean log p of the gold answer) or external (--scores FILE)",
                   name);
}

int pairing_from_name(const char *name, PairingRule *out) {
    if (!strcmp(name, "best-worst")) *out = PAIRING_BEST_WORST;
    else if (!strcmp(name, "all") || !strcmp(name, "all-pairs")) *out = PAIRING_ALL;
    else
        return err_set("unknown pairing '%s'; expected best-worst or all (every pair whose "
                       "scores differ by more than --margin)",
                       name);
    return 0;
}

/* ------------------------------------------------------- answer extraction */

struct AnswerMatcher {
    int kind;          /* 0: whole text, 1: PCRE2, 2: POSIX ERE */
    pcre2_code *pcre;
    int pcre_groups;
    regex_t posix;
};

AnswerMatcher *answer_matcher_new(const char *pattern, int posix) {
    AnswerMatcher *am = xcalloc(1, sizeof *am);
    if (!pattern || !pattern[0]) return am;
    if (posix) {
        int rc = regcomp(&am->posix, pattern, REG_EXTENDED);
        if (rc != 0) {
            char msg[256];
            regerror(rc, &am->posix, msg, sizeof msg);
            free(am);
            err_set("--answer-pattern '%s' is not a POSIX extended regex: %s", pattern, msg);
            return NULL;
        }
        am->kind = 2;
        return am;
    }
    int code;
    PCRE2_SIZE at;
    am->pcre = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &code, &at,
                             NULL);
    if (!am->pcre) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        free(am);
        err_set("--answer-pattern '%s' is not a PCRE2 regex: %s at offset %zu", pattern,
                (const char *)msg, (size_t)at);
        return NULL;
    }
    uint32_t groups = 0;
    pcre2_pattern_info(am->pcre, PCRE2_INFO_CAPTURECOUNT, &groups);
    am->pcre_groups = (int)groups;
    am->kind = 1;
    return am;
}

void answer_matcher_free(AnswerMatcher *am) {
    if (!am) return;
    if (am->kind == 1) pcre2_code_free(am->pcre);
    if (am->kind == 2) regfree(&am->posix);
    free(am);
}

static char *strip_copy(const char *s, size_t n) {
    static const char ws[] = " \t\n\r\v\f";
    while (n > 0 && strchr(ws, s[0])) s++, n--;
    while (n > 0 && strchr(ws, s[n - 1])) n--;
    char *out = xmalloc(n + 1);
    memcpy(out, s, n);
    out[n] = '\0';
    return out;
}

char *answer_extract(const AnswerMatcher *am, const char *text) {
    if (am->kind == 0) return strip_copy(text, strlen(text));
    if (am->kind == 2) {
        regmatch_t mt[2];
        if (regexec(&am->posix, text, 2, mt, 0) != 0) return NULL;
        int g = am->posix.re_nsub >= 1 ? 1 : 0;
        if (mt[g].rm_so < 0) return NULL; /* the group did not take part */
        return strip_copy(text + mt[g].rm_so, (size_t)(mt[g].rm_eo - mt[g].rm_so));
    }
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(am->pcre, NULL);
    int rc = pcre2_match(am->pcre, (PCRE2_SPTR)text, strlen(text), 0, 0, md, NULL);
    char *out = NULL;
    if (rc > 0) {
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        int g = am->pcre_groups >= 1 ? 1 : 0;
        if (g < rc && ov[2 * g] != PCRE2_UNSET)
            out = strip_copy(text + ov[2 * g], ov[2 * g + 1] - ov[2 * g]);
    }
    pcre2_match_data_free(md);
    return out;
}

double exact_match_score(const AnswerMatcher *am, const char *completion, const char *gold,
                         int *parsed) {
    char *ans = answer_extract(am, completion);
    if (parsed) *parsed = ans != NULL;
    if (!ans) return 0.0;
    char *g = strip_copy(gold, strlen(gold));
    double s = strcmp(ans, g) == 0 ? 1.0 : 0.0;
    free(g);
    free(ans);
    return s;
}

/* --------------------------------------------------------- gold-likelihood */

static int64_t encode_text(const Tokenizer *tok, const char *text, uint32_t **ids, int64_t *cap,
                           int64_t n) {
    return text && text[0] ? tok->encode(tok, text, strlen(text), ids, cap, n) : n;
}

int gold_likelihood_scores(GPT *m, const Tokenizer *tok, const char *prompt,
                           const char *const *completions, int n, const char *answer_prefix,
                           const char *gold, int gold_eos, double *scores) {
    const GPTConfig *cfg = gpt_config(m);
    int ctx = gpt_context_len(cfg);
    if (cfg->vocab_size < tok->vocab_size)
        return err_set("scorer model vocab_size %d is smaller than the tokenizer's %d",
                       cfg->vocab_size, tok->vocab_size);
    uint32_t *g = NULL, *row = NULL;
    int64_t g_cap = 0, row_cap = 0;
    int64_t G = encode_text(tok, gold, &g, &g_cap, 0);
    if (G == 0) {
        free(g);
        return err_set("the gold answer is empty; gold-likelihood needs at least one token");
    }
    if (gold_eos) {
        g = xrealloc(g, (size_t)(G + 1) * sizeof(uint32_t));
        g[G++] = (uint32_t)tok->eos_id;
    }
    if (G > ctx) {
        free(g);
        return err_set("the gold answer has %lld tokens, more than the scorer's context (%d)",
                       (long long)G, ctx);
    }
    /* rows: [prompt completion prefix gold], inputs row[0:L-1], targets at gold */
    int64_t *starts = xmalloc((size_t)n * sizeof(int64_t)), *lens = xmalloc((size_t)n * sizeof(int64_t));
    int64_t total = 0;
    int T = 1;
    for (int k = 0; k < n; k++) {
        int64_t before = total;
        total = encode_text(tok, prompt, &row, &row_cap, total);
        total = encode_text(tok, completions[k], &row, &row_cap, total);
        total = encode_text(tok, answer_prefix, &row, &row_cap, total);
        if (total == before) { /* nothing before the answer: start from EOS as generate does */
            if (row_cap < total + 1)
                row = xrealloc(row, (size_t)(row_cap = total + 1) * sizeof(uint32_t));
            row[total++] = (uint32_t)tok->eos_id;
        }
        if (row_cap < total + G)
            row = xrealloc(row, (size_t)(row_cap = total + G) * sizeof(uint32_t));
        memcpy(row + total, g, (size_t)G * sizeof(uint32_t));
        total += G;
        int64_t L = total - before, drop = L - 1 > ctx ? L - 1 - ctx : 0; /* keep the end */
        starts[k] = before + drop;
        lens[k] = L - drop;
        if (lens[k] - 1 > T) T = (int)(lens[k] - 1);
    }
    int *in = xmalloc((size_t)n * T * sizeof(int)), *tg = xmalloc((size_t)n * T * sizeof(int));
    float *lp = xmalloc((size_t)n * T * sizeof(float));
    for (int k = 0; k < n; k++) {
        const uint32_t *r = row + starts[k];
        int L = (int)lens[k];
        for (int j = 0; j < T; j++) {
            in[k * T + j] = j < L - 1 ? (int)r[j] : tok->eos_id;
            tg[k * T + j] = j < L - 1 && j + 1 >= L - G ? (int)r[j + 1] : -1;
        }
    }
    gpt_forward(m, in, tg, n, T, lp);
    for (int k = 0; k < n; k++) {
        double s = 0;
        for (int j = 0; j < T; j++)
            if (tg[k * T + j] >= 0) s += lp[k * T + j];
        scores[k] = s / (double)G;
    }
    free(in);
    free(tg);
    free(lp);
    free(starts);
    free(lens);
    free(row);
    free(g);
    return 0;
}

/* ----------------------------------------------------------------- pairing */

int pairs_select(const double *scores, int n, PairingRule rule, double margin, int (*pairs)[2],
                 int64_t *skipped) {
    int count = 0;
    *skipped = 0;
    if (n < 2) return 0;
    if (rule == PAIRING_BEST_WORST) {
        int best = 0, worst = n - 1;
        for (int k = 1; k < n; k++)
            if (scores[k] > scores[best]) best = k;
        for (int k = n - 2; k >= 0; k--)
            if (scores[k] < scores[worst]) worst = k;
        if (scores[best] - scores[worst] > margin) {
            pairs[0][0] = best;
            pairs[0][1] = worst;
            return 1;
        }
        *skipped = 1;
        return 0;
    }
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            double d = scores[i] - scores[j];
            if (d > margin) {
                pairs[count][0] = i;
                pairs[count++][1] = j;
            } else if (-d > margin) {
                pairs[count][0] = j;
                pairs[count++][1] = i;
            } else {
                (*skipped)++;
            }
        }
    return count;
}

/* ------------------------------------------------------------- the driver */

typedef struct {
    const PairsJob *job;
    GPT *sampler, *scorer;
    const Tokenizer *tok;
    AnswerMatcher *am;
    PrefWriter *pw;
    FILE *scores_in, *dump;
    long scores_line;
    char *sline;
    size_t sline_cap;
    uint32_t *p_ids, *c_ids, *r_ids;
    int64_t p_cap, c_cap, r_cap;
    PairsStats st;
} PairsRun;

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

/* The next non-blank line of the scores file as its "scores" array of n numbers. */
static int read_external(PairsRun *r, long lineno, int n, double *out) {
    const char *path = r->job->scores_path;
    ssize_t len;
    do {
        len = getline(&r->sline, &r->sline_cap, r->scores_in);
        if (len < 0)
            return err_set("%s: ends before the line for %s:%ld (one scores line per input line)",
                           path, r->job->input, lineno);
        r->scores_line++;
    } while (strspn(r->sline, " \t\r\n") == (size_t)len);
    json_error_t jerr;
    json_t *obj = json_loadb(r->sline, (size_t)len, 0, &jerr);
    json_t *arr = obj ? json_object_get(obj, "scores") : NULL;
    int rc = 0;
    if (!obj || !json_is_object(obj)) {
        rc = err_set("%s:%ld: not a JSON object (%s)", path, r->scores_line,
                     obj ? "another JSON value" : jerr.text);
    } else if (!json_is_array(arr) || (int)json_array_size(arr) != n) {
        rc = err_set("%s:%ld: expected \"scores\": an array of %d numbers, one per completion of "
                     "%s:%ld",
                     path, r->scores_line, n, r->job->input, lineno);
    } else {
        for (int k = 0; k < n && rc == 0; k++) {
            json_t *x = json_array_get(arr, (size_t)k);
            if (!json_is_number(x) || !isfinite(json_number_value(x)))
                rc = err_set("%s:%ld: scores[%d] is not a finite number", path, r->scores_line, k);
            else out[k] = json_number_value(x);
        }
    }
    json_decref(obj);
    return rc;
}

static int write_pair(PairsRun *r, int64_t n_p, const char *chosen, const char *rejected) {
    const Tokenizer *tok = r->tok;
    int64_t n_c = encode_text(tok, chosen, &r->c_ids, &r->c_cap, 0);
    int64_t n_r = encode_text(tok, rejected, &r->r_ids, &r->r_cap, 0);
    r->c_ids = xrealloc(r->c_ids, (size_t)(n_c + 1) * sizeof(uint32_t));
    r->r_ids = xrealloc(r->r_ids, (size_t)(n_r + 1) * sizeof(uint32_t));
    r->c_cap = n_c + 1;
    r->r_cap = n_r + 1;
    /* each response ends as the model ended it: EOS, or --chat's end-of-turn token */
    uint32_t end = (uint32_t)(r->job->gen.chat ? r->job->gen.chat->end_of_turn : tok->eos_id);
    r->c_ids[n_c++] = end;
    r->r_ids[n_r++] = end;
    return pref_writer_add(r->pw, r->p_ids, n_p, r->c_ids, n_c, r->r_ids, n_r);
}

static int dump_line(PairsRun *r, long lineno, const char *prompt, char **texts,
                     const double *scores, const int *from, int n, int (*pairs)[2],
                     int n_pairs) {
    json_t *o = json_object(), *c = json_array(), *s = json_array(), *p = json_array();
    json_object_set_new(o, "line", json_integer(lineno));
    json_object_set_new(o, "prompt", json_string(prompt));
    for (int k = 0; k < n; k++) {
        json_array_append_new(c, json_string(texts[k]));
        json_array_append_new(s, json_real(scores[k]));
    }
    for (int i = 0; i < n_pairs; i++)
        json_array_append_new(p, json_pack("[ii]", pairs[i][0], pairs[i][1]));
    json_object_set_new(o, "completions", c);
    json_object_set_new(o, "scores", s);
    json_object_set_new(o, "pairs", p);
    if (r->job->n_instances > 0) { /* which instance wrote each completion */
        json_t *f = json_array(), *names = json_array();
        for (int k = 0; k < n; k++) json_array_append_new(f, json_integer(from[k]));
        for (int i = 0; i < r->job->n_instances; i++)
            json_array_append_new(names, json_string(r->job->instances[i].label
                                                         ? r->job->instances[i].label
                                                         : ""));
        json_object_set_new(o, "from", f);
        json_object_set_new(o, "instances", names);
    }
    char *d = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    int rc = fprintf(r->dump, "%s\n", d) < 0 ? err_set("cannot write %s: %s", r->job->dump,
                                                      strerror(errno))
                                            : 0;
    free(d);
    json_decref(o);
    return rc;
}

/* One input line: completions -> dedupe -> scores -> pairs. made[0:n_made]
 * are the line's sampled completions (owned here; made_from: the instance of
 * each, NULL with one sampler), NULL when they are read from the line. */
static int do_line(PairsRun *r, long lineno, json_t *obj, char **made, int *made_from,
                   int n_made) {
    const PairsJob *job = r->job;
    const char *pf = job->prompt_field ? job->prompt_field : "prompt";
    const char *gf = job->gold_field ? job->gold_field : "answer";
    const char *cf = job->completions_field ? job->completions_field : "completions";
    const char *prompt = json_string_value(json_object_get(obj, pf));
    char **texts = made;
    int *from = made_from; /* the instance of each completion */
    int n = made ? n_made : 0, rc = 0;
    if (!prompt) {
        generated_strings_free(texts, n), free(from);
        return err_set("%s:%ld: field '%s' is missing or not a string (set it with "
                       "--prompt-field)",
                       job->input, lineno, pf);
    }
    char *gold = NULL;
    if (job->scorer != SCORER_EXTERNAL && !(gold = gold_text(json_object_get(obj, gf)))) {
        generated_strings_free(texts, n), free(from);
        return err_set("%s:%ld: gold answer field '%s' is missing or not a string or integer "
                       "(set it with --gold-field)",
                       job->input, lineno, gf);
    }
    if (job->read_completions) {
        json_t *arr = json_object_get(obj, cf);
        if (!json_is_array(arr)) {
            rc = err_set("%s:%ld: field '%s' is missing or not an array of strings (completions "
                         "as `retort generate --out x.jsonl` writes them; --completions-field)",
                         job->input, lineno, cf);
        } else {
            n = (int)json_array_size(arr);
            texts = xcalloc((size_t)(n > 0 ? n : 1), sizeof(char *));
            for (int k = 0; k < n && rc == 0; k++) {
                const char *t = json_string_value(json_array_get(arr, (size_t)k));
                if (!t) rc = err_set("%s:%ld: %s[%d] is not a string", job->input, lineno, cf, k);
                else texts[k] = xstrdup(t);
            }
        }
    }
    if (!from) from = xcalloc((size_t)(n > 0 ? n : 1), sizeof(int));
    double *raw = xcalloc((size_t)(n > 0 ? n : 1), sizeof(double));
    if (rc == 0 && job->scorer == SCORER_EXTERNAL) rc = read_external(r, lineno, n, raw);
    /* dedupe: the first copy of each text stays, with its own score */
    int kept = 0;
    double *scores = xcalloc((size_t)(n > 0 ? n : 1), sizeof(double));
    for (int k = 0; k < n && rc == 0; k++) {
        int dup = 0;
        for (int i = 0; i < kept && !dup; i++) dup = strcmp(texts[i], texts[k]) == 0;
        if (dup) {
            free(texts[k]);
            r->st.duplicates++;
            continue;
        }
        scores[kept] = raw[k];
        from[kept] = from[k];
        texts[kept++] = texts[k];
    }
    if (rc == 0)
        for (int k = kept; k < n; k++) texts[k] = NULL; /* moved or freed */
    r->st.completions += n;
    if (rc == 0 && job->scorer == SCORER_EXACT && job->answer_spec) {
        for (int k = 0; k < kept && rc == 0; k++) { /* eval/answer.h: as retort eval reads */
            char *ans = NULL;
            int found = answer_spec_extract(job->answer_spec, texts[k], &ans);
            int ok = found < 0 ? -1 : answer_spec_match(job->answer_spec, texts[k], gold);
            free(ans);
            if (found < 0 || ok < 0) rc = err_set("%s:%ld: %s", job->input, lineno, err_msg());
            scores[k] = ok == 1 ? 1.0 : 0.0;
            if (found == 0) r->st.unparsed++;
        }
    } else if (rc == 0 && job->scorer == SCORER_EXACT) {
        for (int k = 0; k < kept; k++) {
            int parsed;
            scores[k] = exact_match_score(r->am, texts[k], gold, &parsed);
            if (!parsed) r->st.unparsed++;
        }
    } else if (rc == 0 && job->scorer == SCORER_GOLD_LIKELIHOOD && kept > 0) {
        /* --chat: the scorer sees the prompt as the sampler did, wrapped by the template */
        char *wrapped = job->gen.chat ? chat_prompt_wrap(job->gen.chat, prompt) : NULL;
        if (job->gen.chat && !wrapped) rc = -1;
        else
            rc = gold_likelihood_scores(r->scorer, r->tok, wrapped ? wrapped : prompt,
                                        (const char *const *)texts, kept, job->answer_prefix,
                                        gold, job->gold_eos, scores);
        free(wrapped);
        if (rc != 0) rc = err_set("%s:%ld: %s", job->input, lineno, err_msg());
    }
    int (*pairs)[2] = xmalloc((size_t)(kept * (kept - 1) / 2 + 1) * sizeof *pairs);
    int n_pairs = 0;
    if (rc == 0) {
        for (int k = 0; k < kept; k++) r->st.score_sum += scores[k];
        r->st.scored += kept;
        int64_t skipped;
        n_pairs = pairs_select(scores, kept, job->pairing, job->margin, pairs, &skipped);
        if (job->n_instances > 0) {
            for (int k = 0; k < kept; k++) {
                r->st.instance[from[k]].distinct++;
                r->st.instance[from[k]].score_sum += scores[k];
            }
            for (int i = 0; i < n_pairs; i++) {
                r->st.instance[from[pairs[i][0]]].chosen++;
                r->st.instance[from[pairs[i][1]]].rejected++;
            }
        }
        r->st.skipped_ties += skipped;
        if (n_pairs == 0) r->st.prompts_without_pair++;
        int64_t n_p = job->gen.chat
                          ? generate_encode_prompt(r->tok, &job->gen, prompt, &r->p_ids, &r->p_cap)
                          : encode_text(r->tok, prompt, &r->p_ids, &r->p_cap, 0);
        if (n_p < 0) rc = -1;
        for (int i = 0; i < n_pairs && rc == 0; i++)
            rc = write_pair(r, n_p, texts[pairs[i][0]], texts[pairs[i][1]]);
        r->st.pairs += n_pairs;
        if (rc == 0 && r->dump)
            rc = dump_line(r, lineno, prompt, texts, scores, from, kept, pairs, n_pairs);
    }
    for (int k = 0; k < n; k++) free(texts[k]);
    free(texts);
    free(from);
    free(raw);
    free(scores);
    free(pairs);
    free(gold);
    return rc;
}

static int check_instances(const Tokenizer *tok, const PairsJob *job) {
    if (job->n_instances > PAIRS_MAX_INSTANCES)
        return err_set("%d instances; at most %d", job->n_instances, PAIRS_MAX_INSTANCES);
    if (job->read_completions)
        return err_set("instances sample completions; they do not go with --read-completions");
    int total = 0;
    for (int i = 0; i < job->n_instances; i++) {
        const PairsInstance *in = &job->instances[i];
        const char *label = in->label ? in->label : "";
        if (!in->model) return err_set("instance %d (%s) has no model", i + 1, label);
        if (in->gen.beams != 0)
            return err_set("instance %d (%s): pairs samples completions; beam search is not "
                           "supported", i + 1, label);
        if (in->gen.samples < 1)
            return err_set("instance %d (%s): samples must be >= 1 (got %d)", i + 1, label,
                           in->gen.samples);
        if (generate_job_check(&in->gen, gpt_config(in->model)) != 0)
            return err_set("instance %d (%s): %s", i + 1, label, err_msg());
        if (gpt_config(in->model)->vocab_size < tok->vocab_size)
            return err_set("instance %d (%s): model vocab_size %d is smaller than the "
                           "tokenizer's %d", i + 1, label, gpt_config(in->model)->vocab_size,
                           tok->vocab_size);
        total += in->gen.samples;
    }
    if (total < 2)
        return err_set("the instances sample %d completion(s) per prompt in all; a pair needs "
                       ">= 2 (raise samples)", total);
    return 0;
}

static int check_job(GPT *sampler, GPT *scorer, const Tokenizer *tok, const PairsJob *job) {
    if (!job->input || !job->output) return err_set("an input JSONL and an output .h5 are needed");
    if (job->n_instances > 0) {
        if (check_instances(tok, job) != 0) return -1;
        sampler = NULL; /* the instances sample; the checks below are theirs */
    } else if (!job->read_completions && !sampler)
        return err_set("sampling needs a model (--model), or read completions from the input "
                       "(--read-completions)");
    int one_sampler = !job->read_completions && job->n_instances == 0;
    if (one_sampler && job->gen.beams != 0)
        return err_set("pairs samples completions; beam search is not supported");
    if (one_sampler && job->gen.samples < 2)
        return err_set("--samples must be >= 2 to make a pair (got %d)", job->gen.samples);
    if (job->scorer == SCORER_EXTERNAL && (!job->scores_path || !job->read_completions))
        return err_set("the external scorer reads completions from the input "
                       "(--read-completions) and their scores from --scores FILE");
    if (job->scorer != SCORER_EXTERNAL && job->scores_path)
        return err_set("--scores FILE goes with --scorer external");
    if (job->scorer == SCORER_GOLD_LIKELIHOOD && !scorer)
        return err_set("gold-likelihood needs a scorer model (--model or --scorer-model)");
    if (job->answer_spec && (job->scorer != SCORER_EXACT || job->answer_pattern))
        return err_set("--answer SPEC is the exact scorer's, instead of --answer-pattern (give "
                       "one of them, with --scorer exact)");
    if (!(job->margin >= 0) || !isfinite(job->margin))
        return err_set("--margin must be a finite number >= 0 (got %g)", job->margin);
    if (one_sampler && generate_job_check(&job->gen, gpt_config(sampler)) != 0) return -1;
    GPT *models[2] = {sampler, scorer};
    for (int i = 0; i < 2; i++)
        if (models[i] && gpt_config(models[i])->vocab_size < tok->vocab_size)
            return err_set("model vocab_size %d is smaller than the tokenizer's %d",
                           gpt_config(models[i])->vocab_size, tok->vocab_size);
    return 0;
}

/* Input lines read ahead, with their sampled completions. */
typedef struct {
    json_t *obj[GENERATE_READ_AHEAD];
    long lineno[GENERATE_READ_AHEAD];
    const char *prompt[GENERATE_READ_AHEAD];
    char **texts[GENERATE_READ_AHEAD];
    int *from[GENERATE_READ_AHEAD], n_texts[GENERATE_READ_AHEAD];
    int n, sampled; /* lines read; lines [0, sampled) have their completions */
} PairsAhead;

/* The prompt of a line that can be sampled (do_line refuses the others). */
static const char *line_prompt(const PairsJob *job, json_t *obj) {
    const char *pf = job->prompt_field ? job->prompt_field : "prompt";
    json_t *gold = json_object_get(obj, job->gold_field ? job->gold_field : "answer");
    if (job->scorer != SCORER_EXTERNAL && !json_is_string(gold) && !json_is_integer(gold))
        return NULL;
    return json_string_value(json_object_get(obj, pf));
}

/* One sampler's completions of the lines [0, a->sampled), appended to each
 * line's (instance: its index, or -1 for the single sampler). On a prompt that
 * does not fit, the lines from it on are left unsampled and the error is set. */
static int sample_ahead(PairsRun *r, PairsAhead *a, GPT *m, const GenerateJob *gen,
                        int instance) {
    const PairsJob *job = r->job;
    int n = a->sampled, failed = 0;
    char ***made = xcalloc((size_t)(n > 0 ? n : 1), sizeof(char **));
    int *counts = xcalloc((size_t)(n > 0 ? n : 1), sizeof(int));
    int rc = generate_texts_many(m, r->tok, gen, n, a->prompt, a->lineno, made, counts, &failed);
    if (rc != 0) {
        if (instance < 0)
            err_set("%s:%ld: %s", job->input, a->lineno[failed], err_msg());
        else
            err_set("%s:%ld: instance %d (%s): %s", job->input, a->lineno[failed], instance + 1,
                    job->instances[instance].label ? job->instances[instance].label : "",
                    err_msg());
        n = a->sampled = failed;
    }
    for (int i = 0; i < n; i++) {
        int have = a->n_texts[i], got = counts[i];
        a->texts[i] = xrealloc(a->texts[i], (size_t)(have + got + 1) * sizeof(char *));
        a->from[i] = xrealloc(a->from[i], (size_t)(have + got + 1) * sizeof(int));
        for (int k = 0; k < got; k++) {
            a->texts[i][have + k] = made[i][k];
            a->from[i][have + k] = instance < 0 ? 0 : instance;
        }
        a->n_texts[i] = have + got;
        if (instance >= 0) r->st.instance[instance].completions += got;
        free(made[i]);
    }
    free(made);
    free(counts);
    return rc;
}

/* Reads up to GENERATE_READ_AHEAD lines, samples their completions together
 * (per instance, or with the sampler), then pairs them line by line; the
 * first error, in line order, stops it. 1 while lines remain, 0 at the end,
 * -1 with the error set. */
static int pairs_ahead(PairsRun *r, FILE *in, char **line, size_t *cap, long *lineno,
                       Progress *prog) {
    const PairsJob *job = r->job;
    PairsAhead *a = xcalloc(1, sizeof *a);
    int got = 1, rc = 0;
    /* a line that cannot be sampled ends the read-ahead: do_line refuses it */
    while (a->n < GENERATE_READ_AHEAD &&
           (got = jsonl_next_object(in, job->input, line, cap, lineno, &a->obj[a->n])) > 0) {
        a->lineno[a->n] = *lineno;
        a->prompt[a->n] = line_prompt(job, a->obj[a->n]);
        a->n++;
        if (!a->prompt[a->n - 1]) break;
        a->sampled = a->n;
    }
    char read_error[4096] = "";
    if (got < 0) snprintf(read_error, sizeof read_error, "%s", err_msg());
    int gen_rc = 0;
    char gen_error[4096] = "";
    if (!job->read_completions) {
        for (int i = 0; i < job->n_instances; i++)
            if (sample_ahead(r, a, job->instances[i].model, &job->instances[i].gen, i) != 0)
                gen_rc = -1, snprintf(gen_error, sizeof gen_error, "%s", err_msg());
        if (job->n_instances == 0 && sample_ahead(r, a, r->sampler, &job->gen, -1) != 0)
            gen_rc = -1, snprintf(gen_error, sizeof gen_error, "%s", err_msg());
    }
    /* a line refused by a sampler stops the run before it */
    int upto = gen_rc != 0 ? a->sampled : a->n;
    for (int i = 0; i < a->n; i++) {
        if (rc == 0 && i < upto) {
            int sampled = !job->read_completions && i < a->sampled;
            rc = do_line(r, a->lineno[i], a->obj[i], sampled ? a->texts[i] : NULL,
                         sampled && job->n_instances > 0 ? a->from[i] : NULL, a->n_texts[i]);
            if (!(sampled && job->n_instances > 0)) free(a->from[i]);
            r->st.lines++;
            progress_detail(prog, "%lld pairs", (long long)r->st.pairs);
            progress_add(prog, 1);
        } else {
            generated_strings_free(a->texts[i], a->n_texts[i]);
            free(a->from[i]);
        }
        json_decref(a->obj[i]);
    }
    free(a);
    if (rc != 0) return -1;
    if (gen_rc != 0) return err_set("%s", gen_error);
    if (got < 0) {
        r->st.lines++;
        return err_set("%s", read_error);
    }
    return got > 0 ? 1 : 0;
}

int pairs_build(GPT *sampler, GPT *scorer, const Tokenizer *tok, const PairsJob *job,
                PairsStats *stats) {
    if (check_job(sampler, scorer, tok, job) != 0) return -1;
    PairsRun r = {0};
    r.job = job;
    r.sampler = sampler;
    r.scorer = scorer;
    r.tok = tok;
    char dump_tmp[4096] = "";
    if (job->scorer == SCORER_EXACT && !job->answer_spec &&
        !(r.am = answer_matcher_new(job->answer_pattern,
                                                                    job->posix_regex)))
        return -1;
    FILE *in = fopen(job->input, "r");
    int rc = in ? 0 : err_set("cannot open %s: %s", job->input, strerror(errno));
    if (rc == 0 && job->scores_path && !(r.scores_in = fopen(job->scores_path, "r")))
        rc = err_set("cannot open %s: %s", job->scores_path, strerror(errno));
    if (rc == 0 && job->dump) {
        if (snprintf(dump_tmp, sizeof dump_tmp, "%s.tmp", job->dump) >= (int)sizeof dump_tmp)
            rc = err_set("path too long: %s", job->dump);
        else if (!(r.dump = fopen(dump_tmp, "w")))
            rc = err_set("cannot create %s: %s", dump_tmp, strerror(errno));
    }
    if (rc == 0 && !(r.pw = pref_writer_open(job->output, tok->vocab_size, tok->eos_id,
                                             tok->pad_id, tok->name)))
        rc = -1;
    /* the responses are the sampled ids themselves, never text cut from a prompt */
    if (rc == 0) rc = pref_writer_set_boundary(r.pw, "tokens");
    double t0 = now_seconds();
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0;
    Progress *prog = progress_open("pairs", "prompts", rc == 0 ? progress_count_lines(job->input) : 0,
                                   job->quiet || rc != 0);
    int more = rc == 0;
    while (more > 0) more = pairs_ahead(&r, in, &line, &cap, &lineno, prog);
    if (more < 0) rc = -1;
    free(line);
    if (rc == 0 && r.scores_in) { /* the scores file must not have lines left */
        ssize_t l;
        while ((l = getline(&r.sline, &r.sline_cap, r.scores_in)) >= 0) {
            r.scores_line++;
            if (strspn(r.sline, " \t\r\n") != (size_t)l) {
                rc = err_set("%s:%ld: more score lines than lines in %s", job->scores_path,
                             r.scores_line, job->input);
                break;
            }
        }
    }
    if (rc == 0 && r.st.pairs == 0)
        rc = err_set("%s: no pair was made (%lld lines, %lld skipped ties): every prompt's "
                     "completions scored alike; sample more or lower --margin",
                     job->output, (long long)r.st.lines, (long long)r.st.skipped_ties);
    if (r.pw) {
        if (rc == 0) rc = pref_writer_close(r.pw);
        else pref_writer_abort(r.pw);
    }
    if (r.dump) {
        if (rc == 0) rc = file_commit(r.dump, dump_tmp, job->dump);
        else file_discard(r.dump, dump_tmp);
    }
    if (in) fclose(in);
    if (r.scores_in) fclose(r.scores_in);
    free(r.sline);
    free(r.p_ids);
    free(r.c_ids);
    free(r.r_ids);
    answer_matcher_free(r.am);
    r.st.seconds = now_seconds() - t0;
    if (rc == 0) progress_erase(prog); /* the command prints its report */
    else progress_close(prog, 0);
    if (stats) *stats = r.st;
    return rc;
}
