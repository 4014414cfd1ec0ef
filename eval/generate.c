/* eval/generate.c — sampling by repeated full forward passes. */
#include "eval/generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int sample_from_logits(const float *logits, int V, const SampleOptions *o, Rng *rng) {
    int best = 0;
    for (int j = 1; j < V; j++)
        if (logits[j] > logits[best]) best = j;
    if (o->temperature <= 0) return best;
    /* keep the top_k largest (all when top_k is 0), softmax at temperature */
    float kth = -INFINITY;
    if (o->top_k > 0 && o->top_k < V) {
        float *sorted = xmalloc((size_t)V * sizeof(float));
        memcpy(sorted, logits, (size_t)V * sizeof(float));
        /* partial selection of the k-th largest */
        int lo = 0, hi = V - 1, k = o->top_k - 1;
        while (lo < hi) {
            float pivot = sorted[(lo + hi) / 2];
            int i = lo, j = hi;
            while (i <= j) {
                while (sorted[i] > pivot) i++;
                while (sorted[j] < pivot) j--;
                if (i <= j) {
                    float tmp = sorted[i];
                    sorted[i++] = sorted[j];
                    sorted[j--] = tmp;
                }
            }
            if (k <= j) hi = j;
            else if (k >= i) lo = i;
            else break;
        }
        kth = sorted[k];
        free(sorted);
    }
    double total = 0;
    double *p = xmalloc((size_t)V * sizeof(double));
    for (int j = 0; j < V; j++) {
        p[j] = logits[j] >= kth ? exp((logits[j] - logits[best]) / o->temperature) : 0.0;
        total += p[j];
    }
    double u = rng_uniform(rng) * total, acc = 0;
    int pick = best;
    for (int j = 0; j < V; j++) {
        acc += p[j];
        if (p[j] > 0 && u < acc) {
            pick = j;
            break;
        }
    }
    free(p);
    return pick;
}

int generate_sample(GPT *m, int *tokens, int n, const SampleOptions *o, Rng *rng) {
    const GPTConfig *c = gpt_config(m);
    int V = c->vocab_size;
    int *targets = xmalloc((size_t)c->n_positions * sizeof(int));
    for (int i = 0; i < c->n_positions; i++) targets[i] = -1;
    float *logits = xmalloc((size_t)c->n_positions * V * sizeof(float));
    for (int step = 0; step < o->max_new_tokens; step++) {
        int start = n > c->n_positions ? n - c->n_positions : 0;
        int T = n - start;
        gpt_forward(m, tokens + start, targets, 1, T, NULL);
        gpt_logits(m, logits);
        int next = sample_from_logits(logits + (size_t)(T - 1) * V, V, o, rng);
        tokens[n++] = next;
        if (next == o->eos_id) break;
    }
    free(logits);
    free(targets);
    return n;
}
