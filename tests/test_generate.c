/* tests/test_generate.c — cached decoding is exact: the logits gpt_decode
 * returns (prefill, then one token at a time, rows batched) equal those of a
 * full forward pass over the same prefix, and greedy generation equals the
 * step-by-step argmax of full forward passes.
 * Tolerance 1e-5 relative: both paths are fp32; the cached attention sums its
 * softmax in double while the full one uses sgemm tiles, so only summation
 * order differs. */
#include <criterion/criterion.h>

#include "eval/generate.h"
#include "tests/testutil.h"
#include "train/backend.h"
#include "train/model.h"

static GPT *random_model(void) {
    GPTConfig cfg = {2, 4, 64, 97, 32, 1e-5f};
    GPT *m = gpt_create(&cfg, backend_cpu());
    cr_assert(m, "%s", err_msg());
    gpt_init_random(m, 3);
    /* larger weights than the 0.02 init so logits are far from uniform */
    size_t n = gpt_flat_size(m);
    float *w = malloc(n * sizeof(float));
    gpt_copy_params_to_host(m, w, n);
    Rng r;
    rng_seed(&r, 4);
    for (size_t i = 0; i < n; i++) w[i] += (float)(0.1 * rng_normal(&r));
    gpt_copy_params_to_device(m, w, n);
    free(w);
    return m;
}

/* logits of the last position of tokens[0:k] by a full forward pass */
static void full_last_logits(GPT *m, const int *tokens, int k, float *out) {
    int V = gpt_config(m)->vocab_size;
    int *targets = malloc(k * sizeof(int));
    for (int i = 0; i < k; i++) targets[i] = -1;
    float *all = malloc((size_t)k * V * sizeof(float));
    gpt_forward(m, tokens, targets, 1, k, NULL);
    gpt_logits(m, all);
    memcpy(out, all + (size_t)(k - 1) * V, V * sizeof(float));
    free(all);
    free(targets);
}

Test(generate, cached_decode_matches_full_forward) {
    GPT *m = random_model();
    int V = gpt_config(m)->vocab_size, T = 32;
    Rng r;
    rng_seed(&r, 5);
    int tokens[2][32];
    for (int b = 0; b < 2; b++)
        for (int i = 0; i < T; i++) tokens[b][i] = (int)rng_below(&r, V);
    float *dec = malloc(2 * V * sizeof(float)), *ref = malloc(V * sizeof(float));
    /* two rows batched: prefill 5 tokens, then one at a time to the full context */
    int batch[2 * 5];
    for (int b = 0; b < 2; b++) memcpy(batch + b * 5, tokens[b], 5 * sizeof(int));
    gpt_decode(m, batch, 2, 5, 0, dec);
    for (int k = 5; k <= T; k++) {
        if (k > 5) {
            int step[2] = {tokens[0][k - 1], tokens[1][k - 1]};
            gpt_decode(m, step, 2, 1, k - 1, dec);
        }
        for (int b = 0; b < 2; b++) {
            full_last_logits(m, tokens[b], k, ref);
            double e = rel_err(dec + (size_t)b * V, ref, V);
            cr_expect(e < 1e-5, "row %d, prefix %d: cached logits differ by %.3g", b, k, e);
        }
    }
    free(dec);
    free(ref);
    gpt_free(m);
}

Test(generate, greedy_equals_stepwise_argmax_of_full_forward) {
    GPT *m = random_model();
    int V = gpt_config(m)->vocab_size;
    int prompt[4] = {3, 14, 15, 92};
    int got[32], want[32];
    memcpy(got, prompt, sizeof prompt);
    memcpy(want, prompt, sizeof prompt);
    SampleOptions o = {20, 0.0, 0, 1.0, -1};
    Rng r;
    rng_seed(&r, 1);
    int n = generate_sample(m, got, 4, &o, &r);
    cr_assert_eq(n, 24);
    float *ref = malloc(V * sizeof(float));
    for (int k = 4; k < 24; k++) {
        full_last_logits(m, want, k, ref);
        int best = 0;
        for (int j = 1; j < V; j++)
            if (ref[j] > ref[best]) best = j;
        want[k] = best;
    }
    for (int k = 0; k < 24; k++) cr_expect_eq(got[k], want[k], "token %d: %d vs %d", k, got[k], want[k]);
    free(ref);
    gpt_free(m);
}

Test(generate, stops_at_eos_and_at_the_context_end) {
    GPT *m = random_model();
    int tokens[64] = {1, 2, 3};
    Rng r;
    rng_seed(&r, 2);
    SampleOptions o = {100, 0.0, 0, 1.0, -1};
    int n = generate_sample(m, tokens, 3, &o, &r);
    cr_expect_eq(n, 32, "the context (n_positions 32) bounds generation, got %d", n);
    /* make the first greedy token the EOS: generation stops right there */
    int first = tokens[3];
    o.eos_id = first;
    int again[64] = {1, 2, 3};
    n = generate_sample(m, again, 3, &o, &r);
    cr_expect_eq(n, 4);
    cr_expect_eq(again[3], first);
    gpt_free(m);
}

Test(generate, sampling_options) {
    float logits[6] = {0.5f, 3.0f, 2.9f, -1.0f, 0.0f, 2.0f};
    Rng r;
    rng_seed(&r, 9);
    SampleOptions greedy = {1, 0.0, 0, 1.0, -1}, topk1 = {1, 1.0, 1, 1.0, -1};
    SampleOptions nucleus = {1, 1.0, 0, 1e-6, -1}, topk2 = {1, 1.0, 2, 1.0, -1};
    cr_expect_eq(sample_from_logits(logits, 6, &greedy, &r), 1);
    cr_expect_eq(sample_from_logits(logits, 6, &topk1, &r), 1, "top-k 1 is greedy");
    cr_expect_eq(sample_from_logits(logits, 6, &nucleus, &r), 1, "a tiny top-p is greedy");
    int seen[6] = {0};
    for (int i = 0; i < 2000; i++) seen[sample_from_logits(logits, 6, &topk2, &r)]++;
    cr_expect(seen[1] > 0 && seen[2] > 0, "top-k 2 draws both of the two best");
    cr_expect_eq(seen[0] + seen[3] + seen[4] + seen[5], 0, "and nothing else");
    /* p(1) / p(2) = e^0.1 at temperature 1 */
    double ratio = (double)seen[1] / seen[2];
    cr_expect(ratio > 0.9 && ratio < 1.35, "frequency ratio %.3f, expected ~1.105", ratio);
    /* same seed, same draws */
    SampleOptions t = {1, 0.8, 0, 0.95, -1};
    Rng a, b;
    rng_seed(&a, 42);
    rng_seed(&b, 42);
    for (int i = 0; i < 50; i++)
        cr_expect_eq(sample_from_logits(logits, 6, &t, &a), sample_from_logits(logits, 6, &t, &b));
}

/* One beam is greedy search; and with every token kept as a beam for two
 * steps, the best hypothesis is the exhaustive best two-token continuation. */
Test(generate, beam_search_limits) {
    GPT *m = random_model();
    int V = gpt_config(m)->vocab_size;
    int prompt[3] = {7, 8, 9}, greedy_out[16];
    memcpy(greedy_out, prompt, sizeof prompt);
    SampleOptions o = {10, 0.0, 0, 1.0, -1};
    Rng r;
    rng_seed(&r, 1);
    generate_sample(m, greedy_out, 3, &o, &r);
    Hypothesis h[1];
    cr_assert_eq(generate_beam(m, prompt, 3, 1, 10, 1.0, -1, 1, h), 1);
    for (int i = 0; i < 10; i++) cr_expect_eq(h[0].tokens[i], greedy_out[3 + i], "token %d", i);
    hypotheses_free(h, 1);

    /* exhaustive: log p(a | prompt) + log p(b | prompt a) over all a, b */
    float *logits = malloc(V * sizeof(float));
    double best = -INFINITY;
    int best_a = -1, best_b = -1;
    int seq[4] = {7, 8, 9, 0};
    float *l1 = malloc(V * sizeof(float));
    full_last_logits(m, seq, 3, l1);
    double mx = -INFINITY, sum = 0;
    for (int a = 0; a < V; a++) mx = fmax(mx, l1[a]);
    for (int a = 0; a < V; a++) sum += exp(l1[a] - mx);
    for (int a = 0; a < V; a++) {
        double lpa = l1[a] - mx - log(sum);
        seq[3] = a;
        full_last_logits(m, seq, 4, logits);
        double mb = -INFINITY, sb = 0;
        for (int b = 0; b < V; b++) mb = fmax(mb, logits[b]);
        for (int b = 0; b < V; b++) sb += exp(logits[b] - mb);
        for (int b = 0; b < V; b++) {
            double total = lpa + logits[b] - mb - log(sb);
            if (total > best) {
                best = total;
                best_a = a;
                best_b = b;
            }
        }
    }
    Hypothesis all[1];
    cr_assert_eq(generate_beam(m, prompt, 3, V, 2, 1.0, -1, 1, all), 1);
    cr_expect_eq(all[0].tokens[0], best_a);
    cr_expect_eq(all[0].tokens[1], best_b);
    cr_expect(fabs(all[0].logp - best) < 1e-4, "logp %.6f vs exhaustive %.6f", all[0].logp, best);
    hypotheses_free(all, 1);
    free(logits);
    free(l1);
    gpt_free(m);
}
