/* model/decode_batch.c — continuous batching over a key/value cache of slots
 * (see decode_batch.h): requests admitted as slots free up, one model call
 * per step for every running row and every prompt admitted at that step,
 * sampling and beam search per request. */
#include "model/decode_batch.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Prompt tokens prefilled in one step, beyond the first admitted prompt: a
 * bound on the step's activations (they are laid out for the step's rows). */
#define PREFILL_BUDGET 1024

typedef struct {
    double logp;
    int beam, token;
} Extension;

typedef struct {
    DecodeRequest *r;
    int need, *slot;  /* need slots: rows, or 2 x beams (two halves) */
    int prefilled;    /* the prompt is in the cache */
    int max_new;      /* lowered to the context */
    int step;         /* new tokens chosen so far (per live row) */
    int finished;
    int logits_at;    /* this step: its first logits row, and (sampling) its first draw */
    int draws_at;
    /* sampling */
    char *row_done;
    int *feed;        /* each row's last token */
    int live;
    /* beam search */
    int K, cur;       /* beams; the half of slot[] holding the live beams */
    int *seq, *next_seq; /* (K, max_new + 1) */
    double *beam_logp;
    int *src, *tok;
    Extension *ext;
    double *lp;
    Hypothesis *fin;
    int n_fin;
} Run;

/* log softmax(logits)[t], in double */
static double token_logp(const float *logits, int V, int t) {
    double mx = logits[0], sum = 0;
    for (int j = 1; j < V; j++)
        if (logits[j] > mx) mx = logits[j];
    for (int j = 0; j < V; j++) sum += exp(logits[j] - mx);
    return logits[t] - mx - log(sum);
}

static void log_softmax(const float *logits, int V, double *out) {
    double mx = logits[0], sum = 0;
    for (int j = 1; j < V; j++)
        if (logits[j] > mx) mx = logits[j];
    for (int j = 0; j < V; j++) sum += exp(logits[j] - mx);
    double lse = mx + log(sum);
    for (int j = 0; j < V; j++) out[j] = logits[j] - lse;
}

static int by_logp_desc(const void *a, const void *b) {
    const Extension *x = a, *y = b;
    if (x->logp != y->logp) return x->logp < y->logp ? 1 : -1;
    if (x->beam != y->beam) return x->beam - y->beam;
    return x->token - y->token;
}

static int by_score_desc(const void *a, const void *b) {
    double x = ((const Hypothesis *)a)->score, y = ((const Hypothesis *)b)->score;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* scored_len is the length the length penalty sees: the new tokens including
 * the EOS that ended the hypothesis, as transformers counts it. */
static void add_hypothesis(Hypothesis *fin, int *n_fin, int cap, const int *tokens, int len,
                           int scored_len, double logp, double length_penalty) {
    Hypothesis h = {xmalloc((size_t)(len > 0 ? len : 1) * sizeof(int)), len, logp,
                    logp / pow(scored_len > 0 ? scored_len : 1, length_penalty)};
    memcpy(h.tokens, tokens, (size_t)len * sizeof(int));
    if (*n_fin < cap) {
        fin[(*n_fin)++] = h;
    } else { /* replace the worst if better */
        int worst = 0;
        for (int i = 1; i < *n_fin; i++)
            if (fin[i].score < fin[worst].score) worst = i;
        if (h.score > fin[worst].score) {
            free(fin[worst].tokens);
            fin[worst] = h;
        } else {
            free(h.tokens);
        }
    }
}

static void beam_finish(Run *u) {
    DecodeRequest *r = u->r;
    int K = u->K, w = u->max_new + 1;
    int len = u->step;
    for (int b = 0; b < u->live; b++)
        add_hypothesis(u->fin, &u->n_fin, K, u->seq + (size_t)b * w, len, len, u->beam_logp[b],
                       r->length_penalty);
    qsort(u->fin, (size_t)u->n_fin, sizeof(Hypothesis), by_score_desc);
    int count = u->n_fin < r->n_best ? u->n_fin : r->n_best;
    for (int i = 0; i < u->n_fin; i++) {
        if (i < count) r->hyp[i] = u->fin[i];
        else free(u->fin[i].tokens);
    }
    r->n_hyp = count;
    u->n_fin = 0;
    u->finished = 1;
}

static void run_start(Run *u, DecodeRequest *r, int ctx) {
    memset(u, 0, sizeof *u);
    u->r = r;
    u->max_new = r->opts.max_new_tokens;
    if (u->max_new > ctx - r->n) u->max_new = ctx - r->n;
    if (r->beams > 0) {
        int K = u->K = r->beams;
        u->need = 2 * K;
        size_t w = (size_t)u->max_new + 1;
        u->seq = xcalloc((size_t)K * w, sizeof(int));
        u->next_seq = xcalloc((size_t)K * w, sizeof(int));
        u->beam_logp = xcalloc((size_t)K, sizeof(double));
        u->src = xmalloc((size_t)K * sizeof(int));
        u->tok = xmalloc((size_t)K * sizeof(int));
        u->fin = xcalloc((size_t)K, sizeof(Hypothesis));
        u->live = 1; /* only beam 0 extends at step 0 */
    } else {
        u->need = r->rows;
        u->row_done = xcalloc((size_t)r->rows, 1);
        u->feed = xmalloc((size_t)r->rows * sizeof(int));
        u->live = r->rows;
        for (int i = 0; i < r->rows; i++) {
            r->lens[i] = 0;
            if (r->logps) r->logps[i] = 0;
        }
    }
    u->slot = xmalloc((size_t)u->need * sizeof(int));
    if (u->max_new <= 0) { /* the prompt fills the context: nothing to decode */
        u->prefilled = 1;
        if (u->K) beam_finish(u); /* one empty hypothesis, as the search gives */
        u->finished = 1;
    }
}

static void run_free(Run *u) {
    free(u->slot);
    free(u->row_done);
    free(u->feed);
    free(u->seq);
    free(u->next_seq);
    free(u->beam_logp);
    free(u->src);
    free(u->tok);
    free(u->ext);
    free(u->lp);
    free(u->fin);
}

/* The rows a run feeds this step: (token, slot, position) each. */
static int run_feed(const Run *u, int *tokens, int *slot, int *pos) {
    const DecodeRequest *r = u->r;
    int k = 0;
    if (!u->prefilled) {
        for (int i = 0; i < r->n; i++, k++) {
            tokens[k] = r->prompt[i];
            slot[k] = u->slot[0];
            pos[k] = i;
        }
        return k;
    }
    if (u->K) {
        for (int b = 0; b < u->live; b++, k++) {
            tokens[k] = u->tok[b];
            slot[k] = u->slot[u->cur * u->K + b];
            pos[k] = r->n + u->step - 1;
        }
        return k;
    }
    for (int i = 0; i < r->rows; i++) {
        if (u->row_done[i]) continue;
        tokens[k] = u->feed[i];
        slot[k] = u->slot[i];
        pos[k] = r->n + u->step - 1;
        k++;
    }
    return k;
}

/* The draws of one step, made for every sampled row at once (rows are
 * independent: each has its own generator). */
typedef struct {
    const float *logits; /* (V) */
    const SampleOptions *o;
    Rng *rng;
    int want_logp;
    int next;
    double logp;
} Draw;

/* The live rows of a sampling run, in order, each with its logits row (a run
 * just prefilled has one logits row for all of them); returns how many. */
static int run_draws(const Run *u, const float *logits, int V, Draw *d) {
    const DecodeRequest *r = u->r;
    int first = !u->prefilled, k = 0, n = 0;
    for (int i = 0; i < r->rows; i++) {
        if (u->row_done[i]) continue;
        d[n++] = (Draw){logits + (size_t)(first ? 0 : k++) * V, &r->opts, &r->rngs[i],
                        r->logps != NULL, 0, 0};
    }
    return n;
}

/* Sampling: the step's drawn token of every live row (d: run_draws's). */
static int run_sample(GPT *m, Run *u, const Draw *d) {
    DecodeRequest *r = u->r;
    const SampleOptions *o = &r->opts;
    int first = !u->prefilled, made = 0, k = 0;
    if (first) { /* every row starts from the prompt's cache */
        u->prefilled = 1;
        for (int i = 1; i < r->rows; i++) gpt_kv_copy_slots(m, &u->slot[i], &u->slot[0], 1, r->n);
    }
    for (int i = 0; i < r->rows; i++) {
        if (u->row_done[i]) continue;
        const Draw *dr = &d[k++];
        int *row = r->out + (size_t)i * o->max_new_tokens;
        int next = dr->next;
        if (r->logps) r->logps[i] += dr->logp;
        row[r->lens[i]++] = next;
        u->feed[i] = next;
        made++;
        if (next == o->eos_id || (o->stop && o->stop(o->stop_ctx, row, r->lens[i]))) {
            u->row_done[i] = 1;
            u->live--;
        }
    }
    u->step++;
    if (u->live == 0 || u->step >= u->max_new) u->finished = 1;
    return made;
}

/* Beam search: one step from the live beams' logits; the next step's beams
 * get their caches copied into the other half of the run's slots. */
static int run_beam(GPT *m, Run *u, const float *logits, int V) {
    DecodeRequest *r = u->r;
    int K = u->K, w = u->max_new + 1, step = u->step;
    u->prefilled = 1;
    if (!u->ext) {
        u->ext = xmalloc((size_t)K * V * sizeof(Extension));
        u->lp = xmalloc((size_t)V * sizeof(double));
    }
    int n_ext = 0;
    for (int b = 0; b < u->live; b++) {
        log_softmax(logits + (size_t)b * V, V, u->lp);
        for (int v = 0; v < V; v++) u->ext[n_ext++] = (Extension){u->beam_logp[b] + u->lp[v], b, v};
    }
    qsort(u->ext, (size_t)n_ext, sizeof(Extension), by_logp_desc);
    int kept = 0;
    for (int i = 0; i < n_ext && i < 2 * K && kept < K; i++) {
        Extension e = u->ext[i];
        memcpy(u->next_seq + (size_t)kept * w, u->seq + (size_t)e.beam * w,
               (size_t)step * sizeof(int));
        if (e.token == r->opts.eos_id) { /* finished (only if among the K best) */
            if (i < K)
                add_hypothesis(u->fin, &u->n_fin, K, u->seq + (size_t)e.beam * w, step, step + 1,
                               e.logp, r->length_penalty);
            continue;
        }
        u->next_seq[(size_t)kept * w + step] = e.token;
        u->beam_logp[kept] = e.logp;
        u->src[kept] = e.beam;
        u->tok[kept] = e.token;
        kept++;
    }
    int *t = u->seq;
    u->seq = u->next_seq;
    u->next_seq = t;
    u->live = kept;
    u->step = step + 1;
    if (kept == 0) {
        beam_finish(u);
        return 1;
    }
    /* done when K are finished and no running beam can still beat the worst */
    if (u->n_fin == K) {
        double worst = u->fin[0].score;
        for (int i = 1; i < u->n_fin; i++)
            if (u->fin[i].score < worst) worst = u->fin[i].score;
        if (u->beam_logp[0] / pow(step + 1, r->length_penalty) <= worst) {
            u->live = 0;
            beam_finish(u);
            return 1;
        }
    }
    if (u->step >= u->max_new) {
        beam_finish(u);
        return 1;
    }
    int *dst = xmalloc((size_t)kept * sizeof(int)), *from = xmalloc((size_t)kept * sizeof(int));
    for (int b = 0; b < kept; b++) {
        from[b] = u->slot[u->cur * K + u->src[b]];
        dst[b] = u->slot[(1 - u->cur) * K + b];
    }
    gpt_kv_copy_slots(m, dst, from, kept, r->n + step);
    free(dst);
    free(from);
    u->cur = 1 - u->cur;
    return 1;
}

int decode_slots_for_memory(const GPT *m, int len, size_t bytes) {
    const GPTConfig *c = gpt_config(m);
    int kvh = c->n_kv_head > 0 ? c->n_kv_head : c->n_head;
    int hs = c->head_dim > 0 ? c->head_dim : c->n_embd / c->n_head;
    /* the cache (k and v, every layer) and a logits row, fp32 */
    size_t per = (size_t)c->n_layer * 2 * kvh * hs * (size_t)len * sizeof(float) +
                 (size_t)c->vocab_size * sizeof(float);
    size_t n = bytes / (per > 0 ? per : 1);
    return n < 1 ? 1 : n > 256 ? 256 : (int)n;
}

void decode_batch(GPT *m, int slots, DecodeSource *src) {
    int V = gpt_config(m)->vocab_size, ctx = gpt_context_len(gpt_config(m));
    if (slots < 1) slots = 1;
    int cap_slots = slots;
    char *used = xcalloc((size_t)cap_slots, 1);
    int n_free = cap_slots;
    Run *runs = NULL;
    int n_runs = 0, cap_runs = 0;
    DecodeRequest *pending = NULL;
    int exhausted = 0;
    int *tokens = NULL, *slot = NULL, *pos = NULL, *out_rows = NULL;
    size_t cap_tok = 0;
    float *logits = NULL;
    size_t cap_logits = 0;
    Draw *draws = NULL;
    size_t cap_draws = 0;
    gpt_kv_reserve(m, cap_slots, 1); /* every slot exists (prompt and beam copies go into them) */
    for (;;) {
        /* admit requests in order while their slots are free */
        int prefill = 0;
        for (;;) {
            if (!pending && !exhausted) {
                pending = src->next(src->ctx);
                if (!pending) exhausted = 1;
            }
            if (!pending) break;
            int need = pending->beams > 0 ? 2 * pending->beams : pending->rows;
            if (need > cap_slots && n_runs == 0) { /* wider than the pool: alone, grown */
                used = xrealloc(used, (size_t)need);
                memset(used + cap_slots, 0, (size_t)(need - cap_slots));
                n_free += need - cap_slots;
                cap_slots = need;
                gpt_kv_reserve(m, cap_slots, 1);
            }
            if (need > n_free || (prefill > 0 && prefill + pending->n > PREFILL_BUDGET)) break;
            if (n_runs == cap_runs) {
                cap_runs = cap_runs ? 2 * cap_runs : 16;
                runs = xrealloc(runs, (size_t)cap_runs * sizeof(Run));
            }
            Run *u = &runs[n_runs++];
            run_start(u, pending, ctx);
            for (int s = 0, k = 0; k < u->need; s++)
                if (!used[s]) {
                    used[s] = 1;
                    u->slot[k++] = s;
                }
            n_free -= u->need;
            prefill += pending->n;
            pending = NULL;
        }
        if (n_runs == 0) break;
        /* one call for every run's rows */
        size_t want = 0;
        for (int i = 0; i < n_runs; i++)
            want += runs[i].prefilled ? (size_t)runs[i].need : (size_t)runs[i].r->n;
        if (want > cap_tok) {
            cap_tok = want;
            tokens = xrealloc(tokens, cap_tok * sizeof(int));
            slot = xrealloc(slot, cap_tok * sizeof(int));
            pos = xrealloc(pos, cap_tok * sizeof(int));
            out_rows = xrealloc(out_rows, cap_tok * sizeof(int));
        }
        int N = 0, n_out = 0;
        for (int i = 0; i < n_runs; i++) {
            Run *u = &runs[i];
            if (u->finished) continue;
            int k = run_feed(u, tokens + N, slot + N, pos + N);
            u->logits_at = n_out; /* a prompt: its last row's logits only */
            for (int j = u->prefilled ? 0 : k - 1; j < k; j++) out_rows[n_out++] = N + j;
            N += k;
        }
        if ((size_t)n_out * V > cap_logits) {
            cap_logits = (size_t)n_out * V;
            logits = xrealloc(logits, cap_logits * sizeof(float));
        }
        if (N > 0) gpt_decode_slots(m, tokens, slot, pos, N, out_rows, n_out, logits);
        /* each run's logits rows are consecutive, in the order it fed them;
         * every sampled row's draw first, in parallel */
        int n_draws = 0;
        for (int i = 0; i < n_runs; i++) {
            Run *u = &runs[i];
            if (u->finished || u->K) continue;
            if ((size_t)(n_draws + u->r->rows) > cap_draws) {
                cap_draws = (size_t)(n_draws + u->r->rows) * 2;
                draws = xrealloc(draws, cap_draws * sizeof(Draw));
            }
            u->draws_at = n_draws;
            n_draws += run_draws(u, logits + (size_t)u->logits_at * V, V, draws + n_draws);
        }
        #pragma omp parallel for schedule(dynamic, 1) if (n_draws > 1)
        for (int k = 0; k < n_draws; k++) {
            Draw *d = &draws[k];
            d->next = sample_from_logits(d->logits, V, d->o, d->rng);
            if (d->want_logp) d->logp = token_logp(d->logits, V, d->next);
        }
        int made = 0;
        for (int i = 0; i < n_runs; i++) {
            Run *u = &runs[i];
            if (u->finished) continue;
            made += u->K ? run_beam(m, u, logits + (size_t)u->logits_at * V, V)
                         : run_sample(m, u, draws + u->draws_at);
        }
        if (src->progress) src->progress(src->ctx, made);
        /* finished runs give their slots back */
        int kept = 0;
        for (int i = 0; i < n_runs; i++) {
            Run *u = &runs[i];
            if (!u->finished) {
                runs[kept++] = *u;
                continue;
            }
            for (int k = 0; k < u->need; k++) used[u->slot[k]] = 0;
            n_free += u->need;
            DecodeRequest *r = u->r;
            run_free(u);
            src->done(src->ctx, r);
        }
        n_runs = kept;
    }
    free(used);
    free(runs);
    free(tokens);
    free(slot);
    free(pos);
    free(out_rows);
    free(logits);
    free(draws);
}

typedef struct {
    DecodeRequest *reqs;
    int n, given;
} ListSource;

static DecodeRequest *list_next(void *ctx) {
    ListSource *l = ctx;
    return l->given < l->n ? &l->reqs[l->given++] : NULL;
}

static void list_done(void *ctx, DecodeRequest *r) {
    (void)ctx;
    (void)r;
}

void decode_batch_list(GPT *m, int slots, DecodeRequest *reqs, int n) {
    ListSource l = {reqs, n, 0};
    DecodeSource src = {list_next, list_done, &l, NULL};
    decode_batch(m, slots, &src);
}
