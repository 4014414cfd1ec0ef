/* eval/generate_io.c — JSONL prompts in; JSONL or a kd HDF5 dataset out (see
 * generate_io.h). One prompt at a time: generate its completions, apply stop
 * strings, then hand them to the sink (a JSONL line, or kd examples). */
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
#include "model/backend.h"
#include "model/decode_batch.h"
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

/* One completion of a prompt: new tokens (EOS not included). */

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

/* ------------------------------------------------------------ stop strings */

typedef struct {
    const Tokenizer *tok;
    const GenerateJob *job;
} StopCtx;

/* Byte offset of the earliest stop string in text, or -1. */
static long find_stop(const GenerateJob *job, const char *text) {
    long best = -1;
    for (int i = 0; i < job->n_stop; i++) {
        const char *p = strstr(text, job->stop[i]);
        if (p && (best < 0 || p - text < best)) best = p - text;
    }
    return best;
}

/* --chat: the tokenizer's EOS ends a completion too (sample.eos_id is the
 * template's end-of-turn token). */
static int chat_eos(const Tokenizer *tok, const GenerateJob *job, int id) {
    return job->chat && id == tok->eos_id;
}

static int stop_test(void *ctx, const int *tokens, int n) {
    const StopCtx *s = ctx;
    if (n > 0 && chat_eos(s->tok, s->job, tokens[n - 1])) return 1;
    if (s->job->n_stop == 0) return 0;
    char *text = decode_ids(s->tok, tokens, n);
    long at = find_stop(s->job, text);
    free(text);
    return at >= 0;
}

/* Decodes c and cuts it at the first stop string: the text before it, and the
 * longest token prefix that decodes to a prefix of that text. */
static void finish_completion(const Tokenizer *tok, const GenerateJob *job, Completion *c) {
    int eos_at = -1; /* with --ignore-eos (eos_id -1) EOS tokens stay, and decode drops them */
    for (int i = 0; i < c->len && eos_at < 0 && job->sample.eos_id >= 0; i++)
        if (c->tokens[i] == job->sample.eos_id || chat_eos(tok, job, c->tokens[i])) eos_at = i;
    if (eos_at >= 0) {
        c->len = eos_at;
        c->finished = 1;
    }
    c->text = decode_ids(tok, c->tokens, c->len);
    long at = job->n_stop > 0 ? find_stop(job, c->text) : -1;
    if (at < 0) return;
    c->text[at] = '\0';
    c->finished = 1;
    while (c->len > 0) {
        char *t = decode_ids(tok, c->tokens, c->len);
        int fits = strlen(t) <= (size_t)at && strncmp(t, c->text, strlen(t)) == 0;
        free(t);
        if (fits) break;
        c->len--;
    }
}

static void completions_free(Completion *c, int n) {
    for (int k = 0; k < n; k++) {
        free(c[k].tokens);
        free(c[k].text);
    }
}

/* --------------------------------------------------------------- generating */

/* Rows of one decoding request: a prompt's samples beyond this go to further
 * requests (each row holds a cache slot). */
#define ROWS_PER_REQUEST 64

/* One prompt in flight: its requests (the greedy row of a candidate pool,
 * then the samples in requests of at most ROWS_PER_REQUEST rows; or one
 * beam search), the arrays they write, and its place in the output order. */
typedef struct Item {
    void *user;
    int *prompt, n, max_new, count, greedy;
    DecodeRequest *req;
    int n_req, given, pending;
    int *out, *lens;
    double *logps;
    Rng *rngs;
    Hypothesis *hyp;
    struct Item *next;
} Item;

typedef struct {
    GPT *m;
    const Tokenizer *tok;
    const GenerateJob *job;
    GenStream *s;
    StopCtx sc;
    SampleOptions so;   /* the job's, stop test set */
    Item *head, *tail;  /* in input order; tail is being handed out */
    uint32_t *ids;
    int64_t ids_cap;
    int rc, ended;
    int64_t new_tokens;
} Stream;

static void item_free(Item *it) {
    free(it->prompt);
    free(it->req);
    free(it->out);
    free(it->lens);
    free(it->logps);
    free(it->rngs);
    free(it->hyp);
    free(it);
}

/* The prompt's requests; the seeds are those of (seed, index, sample k), the
 * greedy row keeping k = -1, so pools and plain sampling agree. */
static Item *item_new(Stream *st, const int *prompt, int n, int max_new, long index) {
    const GenerateJob *job = st->job;
    Item *it = xcalloc(1, sizeof *it);
    it->prompt = xmalloc((size_t)n * sizeof(int));
    memcpy(it->prompt, prompt, (size_t)n * sizeof(int));
    it->n = n;
    it->max_new = max_new;
    SampleOptions so = st->so;
    so.max_new_tokens = max_new;
    if (job->beams > 0) {
        int want = job->samples < job->beams ? job->samples : job->beams;
        it->count = want;
        it->hyp = xcalloc((size_t)want, sizeof(Hypothesis));
        it->req = xcalloc(1, sizeof(DecodeRequest));
        it->req[0] = (DecodeRequest){.prompt = it->prompt, .n = n, .beams = job->beams,
                                     .opts = so, .length_penalty = job->length_penalty,
                                     .n_best = want, .hyp = it->hyp, .user = it};
        it->req[0].opts.stop = NULL; /* beam search has no stop strings (they cut the text) */
        it->n_req = 1;
        return it;
    }
    int greedy = it->greedy = job->candidates > 0;
    int count = it->count = greedy + (greedy ? job->candidates : job->samples);
    it->out = xmalloc((size_t)count * max_new * sizeof(int));
    it->lens = xcalloc((size_t)count, sizeof(int));
    it->logps = xcalloc((size_t)count, sizeof(double));
    it->rngs = xmalloc((size_t)count * sizeof(Rng));
    for (int k = 0; k < count; k++) /* sample k keeps its generator with or without greedy */
        rng_seed(&it->rngs[k], job->seed * 0x9E3779B97F4A7C15ULL + (uint64_t)index * 1000003ULL +
                                   (uint64_t)(k - greedy));
    int sampled = count - greedy;
    it->req = xcalloc((size_t)(greedy + (sampled + ROWS_PER_REQUEST - 1) / ROWS_PER_REQUEST),
                      sizeof(DecodeRequest));
    for (int k0 = 0; k0 < count;) {
        int rows = k0 < greedy ? 1 : count - k0 < ROWS_PER_REQUEST ? count - k0 : ROWS_PER_REQUEST;
        DecodeRequest *r = &it->req[it->n_req++];
        *r = (DecodeRequest){.prompt = it->prompt, .n = n, .rows = rows, .opts = so,
                             .rngs = it->rngs + k0, .out = it->out + (size_t)k0 * max_new,
                             .lens = it->lens + k0, .logps = it->logps + k0, .user = it};
        if (k0 < greedy) r->opts.temperature = 0;
        k0 += rows;
    }
    return it;
}

/* The next request in input order: the current prompt's, or the next
 * prompt's. NULL at the end of the input and after an error. */
static DecodeRequest *stream_next(void *ctx) {
    Stream *st = ctx;
    if (st->tail && st->tail->given < st->tail->n_req) {
        st->tail->pending++;
        return &st->tail->req[st->tail->given++];
    }
    if (st->rc != 0 || st->ended) return NULL;
    const char *text = NULL;
    long index = 0;
    void *user = NULL;
    char where[4200];
    int got = st->s->next(st->s->ctx, &text, &index, &user, where, sizeof where);
    if (got <= 0) {
        st->ended = 1;
        if (got < 0) st->rc = -1;
        return NULL;
    }
    int ctx_len = gpt_context_len(gpt_config(st->m));
    int64_t n = generate_encode_prompt(st->tok, st->job, text, &st->ids, &st->ids_cap);
    int *prompt = xmalloc((size_t)ctx_len * sizeof(int));
    int k = 0, max_new = 0;
    if (n < 0) {
        char why[1024];
        snprintf(why, sizeof why, "%s", err_msg());
        err_set("%s: %s", where, why);
    }
    if (n < 0 || generate_fit_prompt(st->job, ctx_len, st->tok->eos_id, st->ids, n, where, prompt,
                                     &k, &max_new) != 0) {
        free(prompt);
        st->s->drop(st->s->ctx, user);
        st->rc = -1;
        st->ended = 1;
        return NULL;
    }
    Item *it = item_new(st, prompt, k, max_new, index);
    free(prompt);
    it->user = user;
    if (st->tail) st->tail->next = it;
    else st->head = it;
    st->tail = it;
    it->pending++;
    return &it->req[it->given++];
}

/* The completions of a finished prompt, decoded and cut at stop strings. */
static Completion *item_completions(Stream *st, Item *it) {
    Completion *comp = xcalloc((size_t)(it->count > 0 ? it->count : 1), sizeof(Completion));
    if (st->job->beams > 0) {
        it->count = it->req[0].n_hyp;
        for (int k = 0; k < it->count; k++) { /* shorter than max_new: it ended with EOS */
            Hypothesis *h = &it->hyp[k];
            comp[k] = (Completion){h->tokens, h->len, h->logp, h->score, h->len < it->max_new,
                                   NULL};
            h->tokens = NULL; /* the array now belongs to comp */
        }
    } else {
        for (int k = 0; k < it->count; k++) {
            int len = it->lens[k];
            int *t = xmalloc((size_t)(len > 0 ? len : 1) * sizeof(int));
            memcpy(t, it->out + (size_t)k * it->max_new, (size_t)len * sizeof(int));
            comp[k] = (Completion){t, len, it->logps[k], it->logps[k], 0, NULL};
        }
    }
    for (int k = 0; k < it->count; k++) finish_completion(st->tok, st->job, &comp[k]);
    return comp;
}

static void stream_done(void *ctx, DecodeRequest *r) {
    Stream *st = ctx;
    Item *it = r->user;
    it->pending--;
    /* emit finished prompts in input order */
    while (st->head && st->head->pending == 0 && st->head->given == st->head->n_req) {
        Item *h = st->head;
        if (st->rc == 0) {
            Completion *comp = item_completions(st, h);
            for (int k = 0; k < h->count; k++) st->new_tokens += comp[k].len;
            if (st->s->emit(st->s->ctx, h->user, h->prompt, h->n, comp, h->count) != 0) {
                st->rc = -1;
                st->ended = 1;
            }
            completions_free(comp, h->count);
            free(comp);
        } else {
            st->s->drop(st->s->ctx, h->user);
        }
        st->head = h->next;
        if (st->tail == h) st->tail = NULL;
        item_free(h);
    }
}

int generate_slots(const GenerateJob *job, const GPT *m) {
    if (job->batch > 0) return job->batch;
    /* a quarter of what the machine has free, for sequences of the whole context */
    size_t avail = 0, total = 0;
    if (gpt_backend(m)->memory_info && gpt_backend(m)->memory_info(&avail, &total) != 0) avail = 0;
    if (avail == 0) avail = (size_t)1 << 30;
    int slots = decode_slots_for_memory(m, gpt_context_len(gpt_config(m)), avail / 4);
    return slots < GENERATE_AUTO_SLOTS ? slots : GENERATE_AUTO_SLOTS;
}

int generate_stream(GPT *m, const Tokenizer *tok, const GenerateJob *job, GenStream *s) {
    Stream st = {.m = m, .tok = tok, .job = job, .s = s};
    st.sc = (StopCtx){tok, job};
    st.so = job->sample;
    if (job->n_stop > 0 || (job->chat && job->sample.eos_id != tok->eos_id)) {
        st.so.stop = stop_test;
        st.so.stop_ctx = &st.sc;
    }
    DecodeSource src = {stream_next, stream_done, &st, NULL};
    decode_batch(m, generate_slots(job, m), &src);
    free(st.ids);
    return st.rc;
}

int64_t generate_encode_prompt(const Tokenizer *tok, const GenerateJob *job, const char *text,
                               uint32_t **ids, int64_t *cap) {
    if (!job->chat) {
        int64_t n = tok->n_special_prefix;
        if (n > *cap) {
            *cap = n;
            *ids = xrealloc(*ids, (size_t)*cap * sizeof **ids);
        }
        if (n) memcpy(*ids, tok->special_prefix, (size_t)n * sizeof **ids);
        return tok->encode(tok, text, strlen(text), ids, cap, n);
    }
    char *wrapped = chat_prompt_wrap(job->chat, text);
    if (!wrapped) return -1;
    int64_t n = tok->encode(tok, wrapped, strlen(wrapped), ids, cap, 0); /* the template's own specials */
    free(wrapped);
    return n;
}

int generate_count(const GenerateJob *job) {
    if (job->beams > 0) return job->beams < job->samples ? job->beams : job->samples;
    return job->candidates > 0 ? 1 + job->candidates : job->samples;
}

/* One prompt through generate_stream. */
typedef struct {
    const char *text;
    long index;
    int given, got;
    GeneratedText *out;
} OnePrompt;

static int one_next(void *ctx, const char **text, long *index, void **user, char *where,
                    size_t where_size) {
    OnePrompt *o = ctx;
    if (o->given++) return 0;
    *text = o->text;
    *index = o->index;
    *user = NULL;
    snprintf(where, where_size, "the prompt");
    return 1;
}

static int one_emit(void *ctx, void *user, const int *prompt, int n_prompt, Completion *c,
                    int count) {
    OnePrompt *o = ctx;
    (void)user, (void)prompt, (void)n_prompt;
    o->out = xcalloc((size_t)(count > 0 ? count : 1), sizeof(GeneratedText));
    for (int i = 0; i < count; i++) { /* the arrays move to out */
        o->out[i] = (GeneratedText){c[i].text, c[i].tokens, c[i].len, c[i].logp, c[i].finished};
        c[i].text = NULL;
        c[i].tokens = NULL;
    }
    o->got = count;
    return 0;
}

static void one_drop(void *ctx, void *user) { (void)ctx, (void)user; }

int generate_completions(GPT *m, const Tokenizer *tok, const GenerateJob *job,
                         const char *prompt_text, long index, GeneratedText **out) {
    OnePrompt o = {prompt_text, index, 0, 0, NULL};
    GenStream s = {one_next, one_emit, one_drop, &o};
    GenerateJob one = *job;
    one.batch = 0; /* one prompt: its own rows */
    *out = NULL;
    if (generate_stream(m, tok, &one, &s) != 0) {
        generated_texts_free(o.out, o.got);
        return -1;
    }
    *out = o.out;
    return o.got;
}

void generated_texts_free(GeneratedText *c, int n) {
    for (int i = 0; c && i < n; i++) {
        free(c[i].text);
        free(c[i].ids);
    }
    free(c);
}

int generate_texts(GPT *m, const Tokenizer *tok, const GenerateJob *job, const char *prompt_text,
                   long index, char ***texts) {
    GeneratedText *c = NULL;
    *texts = NULL;
    int got = generate_completions(m, tok, job, prompt_text, index, &c);
    if (got < 0) return -1;
    *texts = xcalloc((size_t)(got > 0 ? got : 1), sizeof(char *));
    for (int i = 0; i < got; i++) {
        (*texts)[i] = c[i].text;
        c[i].text = NULL;
    }
    generated_texts_free(c, got);
    return got;
}

/* Many prompts through generate_stream, each one's texts to its place. */
typedef struct {
    const char *const *prompts;
    const long *index;
    const int *todo; /* positions to decode, in order */
    int n_todo, given;
    char ***texts;
    int *counts;
} ManyPrompts;

static int many_next(void *ctx, const char **text, long *index, void **user, char *where,
                     size_t where_size) {
    ManyPrompts *mp = ctx;
    if (mp->given == mp->n_todo) return 0;
    int i = mp->todo[mp->given++];
    *text = mp->prompts[i];
    *index = mp->index[i];
    *user = (void *)(intptr_t)i;
    snprintf(where, where_size, "the prompt"); /* the caller adds file:line */
    return 1;
}

static int many_emit(void *ctx, void *user, const int *prompt, int n_prompt, Completion *c,
                     int count) {
    ManyPrompts *mp = ctx;
    int i = (int)(intptr_t)user;
    (void)prompt, (void)n_prompt;
    mp->texts[i] = xcalloc((size_t)(count > 0 ? count : 1), sizeof(char *));
    for (int k = 0; k < count; k++) { /* the text moves */
        mp->texts[i][k] = c[k].text;
        c[k].text = NULL;
    }
    mp->counts[i] = count;
    return 0;
}

/* Decodes the prompts of [0, n) that have no texts yet. 0, or -1 with the
 * failing position in *failed. */
static int many_pass(GPT *m, const Tokenizer *tok, const GenerateJob *job, ManyPrompts *mp,
                     int n, int *todo, int *failed) {
    mp->n_todo = mp->given = 0;
    for (int i = 0; i < n; i++)
        if (!mp->texts[i]) todo[mp->n_todo++] = i;
    mp->todo = todo;
    GenStream s = {many_next, many_emit, one_drop, mp};
    if (generate_stream(m, tok, job, &s) == 0) return 0;
    *failed = mp->todo[mp->given - 1]; /* the stream stops at the prompt it refuses */
    return -1;
}

int generate_texts_many(GPT *m, const Tokenizer *tok, const GenerateJob *job, int n,
                        const char *const *prompts, const long *index, char ***texts,
                        int *counts, int *failed) {
    ManyPrompts mp = {.prompts = prompts, .index = index, .texts = texts, .counts = counts};
    for (int i = 0; i < n; i++) texts[i] = NULL, counts[i] = 0;
    int *todo = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(int));
    int rc = many_pass(m, tok, job, &mp, n, todo, failed);
    if (rc != 0) {
        /* prompts before the refused one that were still decoding were dropped: they
         * all fit, so decode them again (their seeds make the same texts) */
        char why[4096];
        snprintf(why, sizeof why, "%s", err_msg());
        int at = *failed;
        if (many_pass(m, tok, job, &mp, at, todo, failed) != 0) at = *failed; /* its error */
        else err_set("%s", why);
        *failed = at;
        for (int i = at; i < n; i++) { /* only the prompts before it keep texts */
            generated_strings_free(texts[i], counts[i]);
            texts[i] = NULL;
            counts[i] = 0;
        }
    }
    free(todo);
    return rc;
}

void generated_strings_free(char **texts, int n) {
    for (int i = 0; texts && i < n; i++) free(texts[i]);
    free(texts);
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
