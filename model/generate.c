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

/* a comes before b: higher probability, or the same and a lower id (a total
 * order: ids differ) */
static int cand_before(const Cand *a, const Cand *b) {
    return a->p > b->p || (a->p == b->p && a->id < b->id);
}

/* Moves the k first candidates of c[0..n) in that order into c[0..k), in any
 * order (quickselect, median-of-three pivots). */
static void select_first(Cand *c, int n, int k) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        Cand a = c[lo], b = c[mid], d = c[hi], pivot;
        if (cand_before(&a, &b)) pivot = cand_before(&b, &d) ? b : cand_before(&a, &d) ? d : a;
        else pivot = cand_before(&a, &d) ? a : cand_before(&b, &d) ? d : b;
        int i = lo, j = hi;
        while (i <= j) {
            while (cand_before(&c[i], &pivot)) i++;
            while (cand_before(&pivot, &c[j])) j--;
            if (i <= j) {
                Cand t = c[i];
                c[i++] = c[j];
                c[j--] = t;
            }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
}

/* c[0..*sorted) holds the first candidates in order; extends that prefix to
 * at least `want` (at most n): the next ones selected, then sorted. */
static void extend_sorted(Cand *c, int n, int *sorted, int want) {
    if (want > n) want = n;
    if (want <= *sorted) return;
    int s = *sorted;
    if (want < n) select_first(c + s, n - s, want - s);
    qsort(c + s, (size_t)(want - s), sizeof(Cand), by_prob_desc);
    *sorted = want;
}

/* Candidates sorted on demand, from a first block of this many. */
#define SAMPLE_FIRST_SORTED 256

int sample_from_logits(const float *logits, int V, const SampleOptions *o, Rng *rng) {
    int best = 0;
    for (int j = 1; j < V; j++)
        if (logits[j] > logits[best]) best = j;
    if (o->temperature <= 0) return best;
    /* softmax at temperature; the candidates in order of probability (ties by
     * id), sorted only as far as the cut and the draw reach */
    static __thread Cand *c; /* a thread's scratch, reused (V entries) */
    static __thread int cap;
    if (cap < V) {
        free(c);
        c = xmalloc((size_t)V * sizeof(Cand));
        cap = V;
    }
    double total = 0;
    for (int j = 0; j < V; j++) {
        c[j].p = exp((logits[j] - logits[best]) / o->temperature);
        c[j].id = j;
        total += c[j].p;
    }
    int sorted = 0;
    extend_sorted(c, V, &sorted, SAMPLE_FIRST_SORTED);
    int keep = V;
    if (o->top_k > 0 && o->top_k < keep) keep = o->top_k;
    if (o->top_p > 0 && o->top_p < 1) { /* smallest prefix reaching top_p of the mass */
        double acc = 0;
        for (int j = 0; j < keep; j++) {
            if (j == sorted) extend_sorted(c, V, &sorted, 2 * sorted);
            acc += c[j].p / total;
            if (acc >= o->top_p) {
                keep = j + 1;
                break;
            }
        }
    }
    /* the mass drawn from: the kept prefix's, or every candidate's (the sum
     * in id order) when nothing is cut */
    double kept = 0;
    if (keep == V) {
        kept = total;
    } else {
        extend_sorted(c, V, &sorted, keep);
        for (int j = 0; j < keep; j++) kept += c[j].p;
    }
    double u = rng_uniform(rng) * kept, acc = 0;
    int pick = -1;
    for (int j = 0; j < keep; j++) {
        if (j == sorted) extend_sorted(c, V, &sorted, 2 * sorted);
        acc += c[j].p;
        if (u < acc) {
            pick = c[j].id;
            break;
        }
    }
    if (pick < 0) { /* u at the very top of the mass (rounding): the last kept */
        extend_sorted(c, V, &sorted, keep);
        pick = c[keep - 1].id;
    }
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
