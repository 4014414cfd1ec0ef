/* eval/generate_stream.c — the prompts of a caller's source decoded together
 * (see generate_io.h, generate_stream): each prompt becomes decoding requests
 * (model/decode_batch.h: its greedy row, its samples, or a beam search), its
 * completions are cut at stop strings and handed back in input order; and the
 * one-prompt and many-prompt forms the evaluation commands use. */
#include "eval/generate_io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/backend.h"
#include "model/decode_batch.h"
#include "util/utf8.h"

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
        int want = generate_count(job);
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
    int count = it->count = generate_count(job);
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

