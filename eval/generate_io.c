/* eval/generate_io.c — JSONL prompts in; JSONL or a kd HDF5 dataset out (see
 * generate_io.h): the job's checks, a prompt against the context, and the
 * sinks (a JSONL line, or kd examples) fed in input order by generate_stream
 * (eval/generate_stream.c), which decodes the prompts together. */
#include "eval/generate_io.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/h5data.h"
#include "eval/jsonl.h"
#include "eval/metrics.h"
#include "util/utf8.h"
#include "util/progress.h"

int target_select_from_name(const char *name, TargetSelect *out) {
    static const char *const names[] = {"best", "all", "bleu"};
    for (int i = 0; i < 3; i++)
        if (!strcmp(name, names[i])) {
            *out = (TargetSelect)i;
            return 0;
        }
    return err_set("unknown target selection '%s'; expected best (sequence-level KD), all "
                   "(multi-candidate) or bleu (seq-inter: closest to --reference-field)",
                   name);
}

int truncate_prompt_from_name(const char *name, TruncatePrompt *out) {
    if (!strcmp(name, "left")) *out = TRUNCATE_LEFT;
    else if (!strcmp(name, "right")) *out = TRUNCATE_RIGHT;
    else
        return err_set("--truncate-prompt takes left (drop the prompt's start, keep its end) "
                       "or right (keep its start), not '%s'",
                       name);
    return 0;
}

int generate_job_check(const GenerateJob *job, const GPTConfig *cfg) {
    if (sample_options_check(&job->sample) != 0 ||
        beam_options_check(job->beams, job->length_penalty) != 0)
        return -1;
    if (job->samples < 1) return err_set("--samples must be at least 1, not %d", job->samples);
    if (job->candidates < 0)
        return err_set("--candidates must be at least 1, not %d", job->candidates);
    if (job->candidates > 0 && (job->beams > 0 || job->samples > 1))
        return err_set("--candidates %d makes the greedy output plus %d samples per prompt; "
                       "drop %s",
                       job->candidates, job->candidates,
                       job->beams > 0 ? "--beams" : "--samples");
    if (job->beams > 0 && job->samples > job->beams)
        return err_set("--samples %d with --beams %d: beam search returns at most its %d beams; "
                       "give --samples %d or less, or more beams",
                       job->samples, job->beams, job->beams, job->beams);
    int C = gpt_context_len(cfg);
    if (job->sample.max_new_tokens >= C && !job->clamp_new_tokens)
        return err_set("--max-new-tokens %d does not fit the model's context of %d positions "
                       "with even a one-token prompt; give at most %d, or --clamp-new-tokens to "
                       "stop each completion when the context is full",
                       job->sample.max_new_tokens, C, C - 1);
    return 0;
}

int generate_fit_prompt(const GenerateJob *job, int ctx, int eos_id, const uint32_t *ids,
                        int64_t n, const char *where, int *prompt, int *n_prompt, int *max_new) {
    uint32_t eos = (uint32_t)eos_id;
    if (n == 0) { /* an empty prompt starts from EOS, the document separator */
        ids = &eos;
        n = 1;
    }
    int N = job->sample.max_new_tokens;
    int64_t start = 0, keep = n;
    if (n + N > ctx && job->truncate_prompt != TRUNCATE_NONE) {
        keep = ctx - N >= 1 ? ctx - N : 1;
        if (keep > n) keep = n;
        start = job->truncate_prompt == TRUNCATE_LEFT ? n - keep : 0;
    }
    if (keep >= ctx)
        return err_set("%s is %lld tokens and the model's context %d positions: no room for a "
                       "new token; shorten it, or pass --truncate-prompt left (keep its end) or "
                       "right (keep its start)",
                       where, (long long)n, ctx);
    if (keep + N > ctx && !job->clamp_new_tokens)
        return err_set("%s is %lld tokens and --max-new-tokens %d, together %lld, "
                       "past the model's context of %d positions; give -n %lld or less, or "
                       "pass --truncate-prompt left|right (cut the prompt) or --clamp-new-tokens "
                       "(end completions when the context is full)",
                       where, (long long)keep, N, (long long)keep + N, ctx,
                       (long long)(ctx - keep));
    for (int64_t i = 0; i < keep; i++) prompt[i] = (int)ids[start + i];
    *n_prompt = (int)keep;
    *max_new = keep + N > ctx ? (int)(ctx - keep) : N;
    return 0;
}

/* ------------------------------------------------------------- JSONL sink */

static json_t *ids_array(const int *ids, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_integer(ids[i]));
    return a;
}

static int write_jsonl(FILE *out, const char *tmp, const GenerateJob *job, json_t *obj,
                       const Completion *c, int n, const int *prompt, int n_prompt) {
    json_t *texts = json_array(), *logps = json_array(), *scores = json_array();
    json_t *ids = json_array();
    for (int k = 0; k < n; k++) {
        json_array_append_new(texts, json_string(c[k].text));
        json_array_append_new(logps, json_real(c[k].logp));
        json_array_append_new(scores, json_real(c[k].score));
        json_array_append_new(ids, ids_array(c[k].tokens, c[k].len));
    }
    json_object_set_new(obj, "completions", texts);
    json_object_set_new(obj, "logps", logps);
    if (job->beams > 0) json_object_set_new(obj, "scores", scores);
    else json_decref(scores);
    if (job->candidates > 0) json_object_set_new(obj, "greedy", json_integer(0));
    if (job->write_ids) {
        json_object_set_new(obj, "completion_ids", ids);
        json_object_set_new(obj, "prompt_ids", ids_array(prompt, n_prompt));
    } else {
        json_decref(ids);
    }
    char *dump = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    int rc = fprintf(out, "%s\n", dump) < 0
                 ? err_write(job->output, tmp, errno, (uint64_t)ftell(out), 1)
                 : 0;
    free(dump);
    return rc;
}

/* ---------------------------------------------------------------- kd sink */

typedef struct {
    DatasetWriter *w;
    int K;
    float *logits;     /* (n_positions, V) teacher logits of one example */
    int *targets;      /* (n_positions) all -1 */
    float *logp;       /* (n_positions) */
    uint32_t *ids;     /* (len, K) */
    float *lps;        /* (len, K) */
    uint32_t *row;     /* example tokens */
    uint8_t *mask;
    int end_id;        /* the id that ends an example: --chat's end-of-turn, else -1 (EOS) */
} KdSink;

/* The K largest entries of x[0:V] by value (ties: lower id first), best first. */
static void top_k(const float *x, int V, int K, uint32_t *ids) {
    int n = 0;
    for (int j = 0; j < V; j++) {
        if (n == K && !(x[j] > x[ids[K - 1]])) continue;
        int i = n < K ? n++ : K - 1; /* insertion into the sorted list */
        while (i > 0 && x[j] > x[ids[i - 1]]) {
            ids[i] = ids[i - 1];
            i--;
        }
        ids[i] = (uint32_t)j;
    }
}

/* The teacher's top-K next-token log-probs at every position of row[0:len]. */
static void teacher_topk(GPT *m, KdSink *s, const uint32_t *row, int len) {
    const GPTConfig *c = gpt_config(m);
    int V = c->vocab_size, K = s->K;
    int L = len < gpt_context_len(c) ? len : gpt_context_len(c);
    int *in = xmalloc((size_t)L * sizeof(int));
    for (int j = 0; j < L; j++) in[j] = (int)row[j];
    gpt_forward(m, in, s->targets, 1, L, s->logp);
    gpt_logits(m, s->logits);
    for (int j = 0; j < len; j++) {
        uint32_t *ids = s->ids + (size_t)j * K;
        float *lp = s->lps + (size_t)j * K;
        if (j >= L) { /* past the context (only the row after a final EOS): unused */
            for (int k = 0; k < K; k++) {
                ids[k] = (uint32_t)k;
                lp[k] = 0.0f;
            }
            continue;
        }
        const float *x = s->logits + (size_t)j * V;
        double mx = x[0], sum = 0;
        for (int v = 1; v < V; v++)
            if (x[v] > mx) mx = x[v];
        for (int v = 0; v < V; v++) sum += exp((double)x[v] - mx);
        double lse = mx + log(sum);
        top_k(x, V, K, ids);
        for (int k = 0; k < K; k++) {
            double l = (double)x[ids[k]] - lse;
            lp[k] = (float)(l < 0 ? l : 0.0);
        }
    }
    free(in);
}

/* Writes prompt + completion + EOS (--chat: the end-of-turn token) as one kd
 * example. */
static int kd_example(GPT *m, const Tokenizer *tok, KdSink *s, const int *prompt, int n,
                      const int *completion, int len, int task) {
    (void)task;
    int total = n + len + 1;
    for (int j = 0; j < n; j++) s->row[j] = (uint32_t)prompt[j];
    for (int j = 0; j < len; j++) s->row[n + j] = (uint32_t)completion[j];
    s->row[n + len] = (uint32_t)(s->end_id >= 0 ? s->end_id : tok->eos_id);
    memset(s->mask, 0, (size_t)n);
    memset(s->mask + n, 1, (size_t)len + 1);
    if (dataset_writer_append(s->w, s->row, s->mask, total) != 0) return -1;
    if (s->K > 0) {
        teacher_topk(m, s, s->row, total);
        if (dataset_writer_append_topk(s->w, s->ids, s->lps, total) != 0) return -1;
    }
    return dataset_writer_end_doc(s->w, -1);
}

/* Index of the completion closest to the reference by sentence BLEU. */
static int closest_by_bleu(const Completion *c, const char *const *keep_text, const int *keep,
                           int n_keep, const char *reference) {
    (void)c;
    int best = keep[0];
    double best_bleu = -1;
    for (int i = 0; i < n_keep; i++) {
        double b = bleu_sentence(keep_text[i], &reference, 1);
        if (b > best_bleu) {
            best_bleu = b;
            best = keep[i];
        }
    }
    return best;
}

static int write_kd(GPT *m, const Tokenizer *tok, const GenerateJob *job, KdSink *s,
                    const char *prompt_text, const int *prompt, int n, Completion *c, int count,
                    const char *reference, const uint32_t *ref_ids, int64_t n_ref,
                    GenerateStats *st) {
    int *keep = xmalloc((size_t)count * sizeof(int));
    const char **keep_text = xmalloc((size_t)count * sizeof(char *));
    int n_keep = 0;
    for (int k = 0; k < count; k++) {
        const char *t = c[k].text;
        if (job->drop_empty && strspn(t, " \t\r\n") == strlen(t)) st->dropped_empty++;
        else if (job->drop_unfinished && !c[k].finished) st->dropped_unfinished++;
        else if (job->drop_copies && !strcmp(t, prompt_text)) st->dropped_copies++;
        else {
            keep_text[n_keep] = t;
            keep[n_keep++] = k;
        }
    }
    int rc = 0;
    int64_t first = -1; /* index of this prompt's first example */
    if (n_keep > 0) {
        int chosen[1];
        const int *targets = keep;
        int n_targets = n_keep;
        if (job->select == SELECT_BEST) {
            chosen[0] = keep[0];
            targets = chosen;
            n_targets = 1;
        } else if (job->select == SELECT_BLEU) {
            chosen[0] = closest_by_bleu(c, keep_text, keep, n_keep, reference);
            targets = chosen;
            n_targets = 1;
        }
        for (int i = 0; i < n_targets && rc == 0; i++) {
            if (first < 0) first = st->examples;
            rc = kd_example(m, tok, s, prompt, n, c[targets[i]].tokens, c[targets[i]].len, -1);
            st->examples++;
        }
        for (int i = 0; i < n_keep && rc == 0; i++) {
            const Completion *x = &c[keep[i]];
            uint32_t *t = xmalloc((size_t)(x->len + 1) * sizeof(uint32_t));
            for (int j = 0; j < x->len; j++) t[j] = (uint32_t)x->tokens[j];
            rc = dataset_writer_add_candidate(s->w, first, t, x->len, x->logp, x->score);
            free(t);
            st->candidates++;
        }
    }
    if (rc == 0 && job->add_gold && reference) {
        int *g = xmalloc((size_t)(n_ref + 1) * sizeof(int));
        int room = gpt_context_len(gpt_config(m)) + 1 - n - 1; /* the example keeps within ctx+1 */
        int len = n_ref < room ? (int)n_ref : room;
        for (int j = 0; j < len; j++) g[j] = (int)ref_ids[j];
        rc = kd_example(m, tok, s, prompt, n, g, len, -1);
        st->examples++;
        free(g);
    } else if (n_keep == 0) {
        st->prompts_without_example++;
    }
    free(keep);
    free(keep_text);
    return rc;
}

/* ----------------------------------------------------------------- driver */

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static int check_job(const GenerateJob *job, const GPTConfig *cfg, int kd) {
    if (generate_job_check(job, cfg) != 0) return -1;
    if (job->select == SELECT_BLEU && !job->reference_field)
        return err_set("--select bleu picks the completion closest to a gold target; name its "
                       "field with --reference-field");
    if (job->add_gold && !job->reference_field)
        return err_set("--add-gold needs the gold target's field (--reference-field)");
    if (!kd && (job->store_topk > 0 || job->add_gold || job->select != SELECT_BEST ||
                job->drop_empty || job->drop_unfinished || job->drop_copies))
        return err_set("--store-topk, --select, --add-gold and the --drop-* filters shape a kd "
                       "dataset; give --out a .h5 path");
    if (kd && job->write_ids)
        return err_set("--ids writes token ids into a JSONL --out; a .h5 dataset holds the "
                       "tokens already");
    return 0;
}

/* generate_jsonl's side of generate_stream: lines in, lines or examples out. */
typedef struct {
    GPT *m;
    const Tokenizer *tok;
    const GenerateJob *job;
    FILE *in, *out;
    const char *field, *tmp;
    int kd;
    KdSink *sink;
    char *line;
    size_t cap;
    long lineno;
    uint32_t *ref_ids;
    int64_t ref_cap;
    GenerateStats st;
    double t0;
    Progress *prog;
} JsonlRun;

typedef struct {
    json_t *obj;
    const char *text, *ref; /* in obj */
} JsonlLine;

static int jsonl_next(void *ctx, const char **text, long *index, void **user, char *where,
                      size_t where_size) {
    JsonlRun *r = ctx;
    const GenerateJob *job = r->job;
    json_t *obj;
    int got = jsonl_next_object(r->in, job->input, &r->line, &r->cap, &r->lineno, &obj);
    if (got <= 0) return got;
    const char *t = json_string_value(json_object_get(obj, r->field));
    const char *ref = job->reference_field
                          ? json_string_value(json_object_get(obj, job->reference_field))
                          : NULL;
    if (!t || (job->reference_field && !ref)) {
        if (!t)
            err_set("%s:%ld: field '%s' is missing or not a string (set the prompt field with "
                    "--prompt-field)", job->input, r->lineno, r->field);
        else
            err_set("%s:%ld: reference field '%s' is missing or not a string", job->input,
                    r->lineno, job->reference_field);
        json_decref(obj);
        return -1;
    }
    JsonlLine *l = xmalloc(sizeof *l);
    *l = (JsonlLine){obj, t, ref};
    *text = t;
    *index = r->lineno;
    *user = l;
    snprintf(where, where_size, "%s:%ld: the prompt", job->input, r->lineno);
    return 1;
}

static void jsonl_drop(void *ctx, void *user) {
    (void)ctx;
    JsonlLine *l = user;
    if (!l) return;
    json_decref(l->obj);
    free(l);
}

static int jsonl_emit(void *ctx, void *user, const int *prompt, int n, Completion *c, int count) {
    JsonlRun *r = ctx;
    JsonlLine *l = user;
    int rc;
    r->st.prompts++;
    r->st.completions += count;
    for (int i = 0; i < count; i++) r->st.new_tokens += c[i].len;
    if (r->kd) {
        int64_t n_ref = l->ref ? r->tok->encode(r->tok, l->ref, strlen(l->ref), &r->ref_ids,
                                                &r->ref_cap, 0)
                               : 0;
        rc = write_kd(r->m, r->tok, r->job, r->sink, l->text, prompt, n, c, count, l->ref,
                      r->ref_ids, n_ref, &r->st);
    } else {
        rc = write_jsonl(r->out, r->tmp, r->job, l->obj, c, count, prompt, n);
    }
    progress_detail(r->prog, "%.1f new tokens/s", r->st.new_tokens / (now_seconds() - r->t0));
    progress_add(r->prog, 1);
    jsonl_drop(ctx, user);
    return rc;
}

int generate_jsonl(GPT *m, const Tokenizer *tok, const GenerateJob *job, GenerateStats *stats) {
    const char *field = job->prompt_field ? job->prompt_field : "prompt";
    int kd = ends_with(job->output, ".h5") || ends_with(job->output, ".hdf5");
    const GPTConfig *cfg = gpt_config(m);
    if (check_job(job, cfg, kd) != 0) return -1;
    if (job->store_topk > cfg->vocab_size)
        return err_set("--store-topk %d exceeds the vocabulary (%d)", job->store_topk,
                       cfg->vocab_size);
    FILE *in = fopen(job->input, "r");
    if (!in) return err_set("cannot open %s: %s", job->input, strerror(errno));
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", job->output) >= (int)sizeof tmp) {
        fclose(in);
        return err_set("output path too long: %s", job->output);
    }
    FILE *out = NULL;
    KdSink sink = {0};
    int ctx = gpt_context_len(cfg), rc = 0;
    if (kd) {
        sink.w = dataset_writer_open(job->output, SCHEMA_KD, cfg->vocab_size, tok->eos_id,
                                     tok->pad_id, tok->name);
        if (sink.w && job->store_topk > 0 && dataset_writer_set_topk(sink.w, job->store_topk) != 0) {
            dataset_writer_abort(sink.w);
            sink.w = NULL;
        }
        if (!sink.w) {
            fclose(in);
            return -1;
        }
        sink.K = job->store_topk;
        sink.end_id = job->chat ? job->chat->end_of_turn : -1;
        size_t rowcap = (size_t)2 * ctx + 2; /* prompt, completion (each <= ctx), EOS */
        sink.row = xmalloc(rowcap * sizeof(uint32_t));
        sink.mask = xmalloc(rowcap);
        if (sink.K > 0) {
            sink.logits = xmalloc((size_t)ctx * cfg->vocab_size * sizeof(float));
            sink.targets = xmalloc((size_t)ctx * sizeof(int));
            for (int j = 0; j < ctx; j++) sink.targets[j] = -1;
            sink.logp = xmalloc((size_t)ctx * sizeof(float));
            sink.ids = xmalloc(rowcap * sink.K * sizeof(uint32_t));
            sink.lps = xmalloc(rowcap * sink.K * sizeof(float));
        }
    } else if (!(out = fopen(tmp, "w"))) {
        fclose(in);
        return err_set("cannot create %s: %s", tmp, strerror(errno));
    }
    JsonlRun r = {.m = m, .tok = tok, .job = job, .in = in, .field = field, .kd = kd,
                  .sink = &sink, .out = out, .tmp = tmp};
    r.t0 = now_seconds();
    r.prog = progress_open("generate", "prompts", progress_count_lines(job->input), job->quiet);
    GenStream gs = {jsonl_next, jsonl_emit, jsonl_drop, &r};
    rc = generate_stream(m, tok, job, &gs);
    GenerateStats st = r.st;
    st.seconds = now_seconds() - r.t0;
    if (rc == 0) progress_erase(r.prog); /* the report below says it all */
    else progress_close(r.prog, 0);
    free(r.line);
    free(r.ref_ids);
    fclose(in);
    if (kd) {
        if (rc == 0 && st.examples == 0)
            rc = err_set("%s: no example was kept (%lld prompts; every completion was filtered "
                         "out)",
                         job->output, (long long)st.prompts);
        if (rc == 0) rc = dataset_writer_close(sink.w);
        else dataset_writer_abort(sink.w);
        free(sink.row);
        free(sink.mask);
        free(sink.logits);
        free(sink.targets);
        free(sink.logp);
        free(sink.ids);
        free(sink.lps);
    } else if (rc == 0) {
        rc = file_commit(out, tmp, job->output); /* fsynced, renamed; removed on failure */
    } else {
        file_discard(out, tmp);
    }
    /* on failure the caller prints the error, and nothing was written */
    if (!job->quiet && rc == 0) {
        fprintf(stderr, "generate: %lld prompts, %lld completions (%lld new tokens, %.1f/s) -> %s\n",
                (long long)st.prompts,
                (long long)st.completions, (long long)st.new_tokens,
                st.new_tokens / (st.seconds > 0 ? st.seconds : 1), job->output);
        if (kd)
            fprintf(stderr, "  %lld examples, %lld candidates; dropped: %lld empty, %lld "
                            "unfinished, %lld copies of the prompt; %lld prompts kept no "
                            "completion\n",
                    (long long)st.examples, (long long)st.candidates, (long long)st.dropped_empty,
                    (long long)st.dropped_unfinished, (long long)st.dropped_copies,
                    (long long)st.prompts_without_example);
    }
    if (stats) *stats = st;
    return rc;
}
