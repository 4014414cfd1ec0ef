/* eval/generate.c — sampling by repeated full forward passes. */
#include "eval/generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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
        if (next == o->eos_id || n >= c->n_positions || step + 1 == o->max_new_tokens) break;
        gpt_decode(m, tokens + n - 1, 1, 1, n - 1, logits);
    }
    free(logits);
    return n;
}
