/* model/generate.c — sampling and beam search over the key/value cache (see generate.h):
 * one token from logits (greedy, temperature, top-k, top-p), a batch of
 * sampled rows, and beam search with length-penalised n-best hypotheses. */
#include "model/generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int sample_options_check(const SampleOptions *o) {
    if (o->max_new_tokens < 1)
        return err_set("--max-new-tokens must be at least 1, not %d", o->max_new_tokens);
    if (!isfinite(o->temperature) || o->temperature < 0)
        return err_set("--temperature must be a finite number >= 0 (0 = greedy), not %g",
                       o->temperature);
    if (o->top_k < 0) return err_set("--top-k must be >= 0 (0 = off), not %d", o->top_k);
    if (!(o->top_p > 0 && o->top_p <= 1)) /* also refuses NaN */
        return err_set("--top-p must be in (0, 1] (1 = off), not %g", o->top_p);
    return 0;
}

int beam_options_check(int beams, double length_penalty) {
    if (beams < 0 || beams > GENERATE_MAX_BEAMS)
        return err_set("--beams must be 0 (sampling) to %d, not %d: each beam holds a row of "
                       "key/value cache and vocab_size candidates, and searches wider than %d "
                       "only cost memory",
                       GENERATE_MAX_BEAMS, beams, GENERATE_MAX_BEAMS);
    if (!isfinite(length_penalty))
        return err_set("--length-penalty must be a finite number, not %g", length_penalty);
    return 0;
}

typedef struct {
    double p;
    int id;
} Cand;

static int by_prob_desc(const void *a, const void *b) {
    double x = ((const Cand *)a)->p, y = ((const Cand *)b)->p;
    if (x != y) return x < y ? 1 : -1;
    return ((const Cand *)a)->id - ((const Cand *)b)->id;
}

int sample_from_logits(const float *logits, int V, const SampleOptions *o, Rng *rng) {
    int best = 0;
    for (int j = 1; j < V; j++)
        if (logits[j] > logits[best]) best = j;
    if (o->temperature <= 0) return best;
    /* softmax at temperature, candidates sorted by probability (ties by id) */
    Cand *c = xmalloc((size_t)V * sizeof(Cand));
    double total = 0;
    for (int j = 0; j < V; j++) {
        c[j].p = exp((logits[j] - logits[best]) / o->temperature);
        c[j].id = j;
        total += c[j].p;
    }
    qsort(c, (size_t)V, sizeof(Cand), by_prob_desc);
    int keep = V;
    if (o->top_k > 0 && o->top_k < keep) keep = o->top_k;
    if (o->top_p > 0 && o->top_p < 1) { /* smallest prefix reaching top_p of the mass */
        double acc = 0;
        for (int j = 0; j < keep; j++) {
            acc += c[j].p / total;
            if (acc >= o->top_p) {
                keep = j + 1;
                break;
            }
        }
    }
    double kept = 0;
    for (int j = 0; j < keep; j++) kept += c[j].p;
    double u = rng_uniform(rng) * kept, acc = 0;
    int pick = c[keep - 1].id;
    for (int j = 0; j < keep; j++) {
        acc += c[j].p;
        if (u < acc) {
            pick = c[j].id;
            break;
        }
    }
    free(c);
    return pick;
}

int generate_sample(GPT *m, int *tokens, int n, const SampleOptions *o, Rng *rng) {
    const GPTConfig *c = gpt_config(m);
    int V = c->vocab_size;
    float *logits = xmalloc((size_t)V * sizeof(float));
    gpt_decode(m, tokens, 1, n, 0, logits); /* prefill */
    for (int step = 0; step < o->max_new_tokens; step++) {
        int next = sample_from_logits(logits, V, o, rng);
        tokens[n++] = next;
        if (next == o->eos_id || n >= gpt_context_len(c) || step + 1 == o->max_new_tokens) break;
        if (o->stop && o->stop(o->stop_ctx, tokens + n - step - 1, step + 1)) break;
        gpt_decode(m, tokens + n - 1, 1, 1, n - 1, logits);
    }
    free(logits);
    return n;
}

/* log softmax(logits)[t], in double */
static double token_logp(const float *logits, int V, int t) {
    double mx = logits[0], sum = 0;
    for (int j = 1; j < V; j++)
        if (logits[j] > mx) mx = logits[j];
    for (int j = 0; j < V; j++) sum += exp(logits[j] - mx);
    return logits[t] - mx - log(sum);
}

void generate_sample_rows(GPT *m, const int *prompt, int n, int rows, const SampleOptions *o,
                          Rng *rngs, int *out, int *lens, double *logps) {
    const GPTConfig *c = gpt_config(m);
    int V = c->vocab_size, max_new = o->max_new_tokens;
    if (max_new > gpt_context_len(c) - n) max_new = gpt_context_len(c) - n;
    float *logits = xmalloc((size_t)rows * V * sizeof(float)); /* (rows,V) */
    int *feed = xmalloc((size_t)rows * (n > 1 ? n : 1) * sizeof(int));
    char *done = xcalloc((size_t)rows, 1);
    for (int r = 0; r < rows; r++) {
        memcpy(feed + (size_t)r * n, prompt, (size_t)n * sizeof(int));
        lens[r] = 0;
        if (logps) logps[r] = 0;
    }
    gpt_decode(m, feed, rows, n, 0, logits); /* prefill every row */
    int live = rows;
    for (int step = 0; step < max_new && live > 0; step++) {
        for (int r = 0; r < rows; r++) {
            int *row = out + (size_t)r * o->max_new_tokens;
            if (done[r]) {
                feed[r] = o->eos_id >= 0 ? o->eos_id : 0; /* keeps the batch shape; unused */
                continue;
            }
            const float *lr = logits + (size_t)r * V; /* (V) */
            int next = sample_from_logits(lr, V, o, &rngs[r]);
            if (logps) logps[r] += token_logp(lr, V, next);
            row[lens[r]++] = next;
            feed[r] = next;
            if (next == o->eos_id || (o->stop && o->stop(o->stop_ctx, row, lens[r]))) {
                done[r] = 1;
                live--;
            }
        }
        if (live == 0 || step + 1 == max_new) break;
        gpt_decode(m, feed, rows, 1, n + step, logits);
    }
    free(logits);
    free(feed);
    free(done);
}

/* ------------------------------------------------------------ beam search */

typedef struct {
    double logp;
    int beam, token;
} Extension;

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

/* log-softmax of one row, in double */
static void log_softmax(const float *logits, int V, double *out) {
    double mx = logits[0], sum = 0;
    for (int j = 1; j < V; j++)
        if (logits[j] > mx) mx = logits[j];
    for (int j = 0; j < V; j++) sum += exp(logits[j] - mx);
    double lse = mx + log(sum);
    for (int j = 0; j < V; j++) out[j] = logits[j] - lse;
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

int generate_beam(GPT *m, const int *prompt, int n, int beams, int max_new_tokens,
                  double length_penalty, int eos_id, int n_best, Hypothesis *out) {
    const GPTConfig *c = gpt_config(m);
    int V = c->vocab_size;
    if (max_new_tokens > gpt_context_len(c) - n) max_new_tokens = gpt_context_len(c) - n;
    int K = beams;
    int *seq = xcalloc((size_t)K * (max_new_tokens + 1), sizeof(int));   /* (K, new) */
    int *next_seq = xcalloc((size_t)K * (max_new_tokens + 1), sizeof(int));
    double *beam_logp = xcalloc((size_t)K, sizeof(double));
    float *logits = xmalloc((size_t)K * V * sizeof(float));
    double *lp = xmalloc((size_t)V * sizeof(double));
    Extension *ext = xmalloc((size_t)K * V * sizeof(Extension));
    int *src = xmalloc((size_t)K * sizeof(int)), *tok = xmalloc((size_t)K * sizeof(int));
    Hypothesis *fin = xcalloc((size_t)K, sizeof(Hypothesis));
    int n_fin = 0;

    /* prefill the prompt into all K cache rows; only row 0 extends at step 0 */
    int *rows = xmalloc((size_t)K * n * sizeof(int));
    for (int b = 0; b < K; b++) memcpy(rows + (size_t)b * n, prompt, (size_t)n * sizeof(int));
    gpt_decode(m, rows, K, n, 0, logits);
    free(rows);
    int live = 1, step;
    for (step = 0; step < max_new_tokens; step++) {
        int n_ext = 0;
        for (int b = 0; b < live; b++) {
            log_softmax(logits + (size_t)b * V, V, lp);
            for (int v = 0; v < V; v++)
                ext[n_ext++] = (Extension){beam_logp[b] + lp[v], b, v};
        }
        qsort(ext, (size_t)n_ext, sizeof(Extension), by_logp_desc);
        int kept = 0;
        for (int i = 0; i < n_ext && i < 2 * K && kept < K; i++) {
            Extension e = ext[i];
            memcpy(next_seq + (size_t)kept * (max_new_tokens + 1),
                   seq + (size_t)e.beam * (max_new_tokens + 1), (size_t)step * sizeof(int));
            if (e.token == eos_id) { /* finished (only if among the K best) */
                if (i < K)
                    add_hypothesis(fin, &n_fin, K, seq + (size_t)e.beam * (max_new_tokens + 1),
                                   step, step + 1, e.logp, length_penalty);
                continue;
            }
            next_seq[(size_t)kept * (max_new_tokens + 1) + step] = e.token;
            beam_logp[kept] = e.logp;
            src[kept] = e.beam;
            tok[kept] = e.token;
            kept++;
        }
        int *t = seq;
        seq = next_seq;
        next_seq = t;
        live = kept;
        if (live == 0) break;
        /* done when K are finished and no running beam can still beat the worst */
        if (n_fin == K) {
            double worst = fin[0].score;
            for (int i = 1; i < n_fin; i++)
                if (fin[i].score < worst) worst = fin[i].score;
            if (beam_logp[0] / pow(step + 1, length_penalty) <= worst) {
                live = 0;
                break;
            }
        }
        if (step + 1 == max_new_tokens) break;
        gpt_kv_reorder(m, src, live, n + step);
        gpt_decode(m, tok, live, 1, n + step, logits);
    }
    int len = step < max_new_tokens ? step + 1 : max_new_tokens;
    for (int b = 0; b < live; b++)
        add_hypothesis(fin, &n_fin, K, seq + (size_t)b * (max_new_tokens + 1), len, len,
                       beam_logp[b], length_penalty);
    qsort(fin, (size_t)n_fin, sizeof(Hypothesis), by_score_desc);
    int count = n_fin < n_best ? n_fin : n_best;
    for (int i = 0; i < n_fin; i++) {
        if (i < count) out[i] = fin[i];
        else free(fin[i].tokens);
    }
    free(fin);
    free(seq);
    free(next_seq);
    free(beam_logp);
    free(logits);
    free(lp);
    free(ext);
    free(src);
    free(tok);
    return count;
}

void hypotheses_free(Hypothesis *h, int count) {
    for (int i = 0; i < count; i++) free(h[i].tokens);
}
