/* model/generate.c — sampling and beam search over the key/value cache (see generate.h):
 * one token from logits (greedy, temperature, top-k, top-p), a batch of
 * sampled rows, and beam search with length-penalised n-best hypotheses. */
#include "model/generate.h"

#include "model/decode_batch.h"

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

/* ------------------------------------- one request through decode_batch */

static void decode_one(GPT *m, DecodeRequest *r) {
    decode_batch_list(m, r->beams > 0 ? 2 * r->beams : r->rows, r, 1);
}

int generate_sample(GPT *m, int *tokens, int n, const SampleOptions *o, Rng *rng) {
    int len = 0;
    DecodeRequest r = {.prompt = tokens, .n = n, .rows = 1, .opts = *o, .rngs = rng,
                       .out = tokens + n, .lens = &len};
    decode_one(m, &r);
    return n + len;
}

void generate_sample_rows(GPT *m, const int *prompt, int n, int rows, const SampleOptions *o,
                          Rng *rngs, int *out, int *lens, double *logps) {
    DecodeRequest r = {.prompt = prompt, .n = n, .rows = rows, .opts = *o, .rngs = rngs,
                       .out = out, .lens = lens, .logps = logps};
    decode_one(m, &r);
}

int generate_beam(GPT *m, const int *prompt, int n, int beams, int max_new_tokens,
                  double length_penalty, int eos_id, int n_best, Hypothesis *out) {
    DecodeRequest r = {.prompt = prompt, .n = n, .beams = beams,
                       .opts = {max_new_tokens, 0.0, 0, 1.0, eos_id, NULL, NULL},
                       .length_penalty = length_penalty, .n_best = n_best, .hyp = out};
    decode_one(m, &r);
    return r.n_hyp;
}

void hypotheses_free(Hypothesis *h, int count) {
    for (int i = 0; i < count; i++) free(h[i].tokens);
}
