/* tests/test_generate.c — cached decoding is exact: the logits gpt_decode
 * returns (prefill, then one token at a time, rows batched) equal those of a
 * full forward pass over the same prefix, and greedy generation equals the
 * step-by-step argmax of full forward passes.
 * Tolerance 1e-5 relative: both paths are fp32; the cached attention sums its
 * softmax in double while the full one uses sgemm tiles, so only summation
 * order differs. */
#include <criterion/criterion.h>

#include <jansson.h>

#include "data/tokenizer.h"
#include "model/generate.h"
#include "eval/generate_io.h"
#include "tests/testutil.h"
#include "model/backend.h"
#include "model/model.h"
#include "util/utf8.h"

static GPT *random_model(void) {
    GPTConfig cfg = {.n_layer = 2, .n_head = 4, .n_embd = 64, .vocab_size = 97, .n_positions = 32,
                     .layer_norm_epsilon = 1e-5f, .vocab_pad = 0};
    return perturbed_cpu_model(&cfg, 3, 4, 0.1);
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
    SampleOptions o = {20, 0.0, 0, 1.0, -1, NULL, NULL};
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
    SampleOptions o = {100, 0.0, 0, 1.0, -1, NULL, NULL};
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
    SampleOptions greedy = {1, 0.0, 0, 1.0, -1, NULL, NULL}, topk1 = {1, 1.0, 1, 1.0, -1, NULL, NULL};
    SampleOptions nucleus = {1, 1.0, 0, 1e-6, -1, NULL, NULL}, topk2 = {1, 1.0, 2, 1.0, -1, NULL, NULL};
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
    SampleOptions t = {1, 0.8, 0, 0.95, -1, NULL, NULL};
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
    SampleOptions o = {10, 0.0, 0, 1.0, -1, NULL, NULL};
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

/* JSONL in, JSONL out: input fields are kept, greedy completions equal
 * generate_sample's, beam lines carry descending scores, a bad line is named
 * by file:line and leaves no output file. */
Test(generate, jsonl_prompts_in_completions_out) {
    GPTConfig cfg = {.n_layer = 2, .n_head = 4, .n_embd = 64, .vocab_size = 257, .n_positions = 32,
                     .layer_norm_epsilon = 1e-5f, .vocab_pad = 0}; /* byte vocabulary */
    GPT *m = gpt_create(&cfg, backend_cpu());
    gpt_init_random(m, 8);
    Tokenizer *tok = tokenizer_bytes();
    char dir[256], in[512], out[512];
    make_temp_dir(dir, sizeof dir, "genio");
    snprintf(in, sizeof in, "%s/p.jsonl", dir);
    snprintf(out, sizeof out, "%s/o.jsonl", dir);
    FILE *f = fopen(in, "w");
    fprintf(f, "{\"q\": \"abc\", \"id\": 7}\n\n{\"q\": \"hello\"}\n");
    fclose(f);
    GenerateJob job = {0};
    job.input = in;
    job.output = out;
    job.prompt_field = "q";
    job.sample = (SampleOptions){6, 0.0, 0, 1.0, -1, NULL, NULL};
    job.samples = 2;
    job.length_penalty = 1.0;
    job.seed = 1;
    job.quiet = 1;
    cr_assert_eq(generate_jsonl(m, tok, &job, NULL), 0, "%s", err_msg());
    json_error_t e;
    FILE *o = fopen(out, "r");
    cr_assert(o);
    json_t *l1 = json_loadf(o, JSON_DISABLE_EOF_CHECK, &e), *l2 = json_loadf(o, JSON_DISABLE_EOF_CHECK, &e);
    fclose(o);
    cr_assert(l1 && l2, "%s", e.text);
    cr_expect_eq(json_integer_value(json_object_get(l1, "id")), 7, "input fields are kept");
    json_t *c1 = json_object_get(l1, "completions");
    cr_assert_eq(json_array_size(c1), 2);
    int toks[16] = {'a', 'b', 'c'};
    Rng r;
    rng_seed(&r, 1);
    int n = generate_sample(m, toks, 3, &job.sample, &r);
    char want[64]; /* 6 bytes, up to 3x longer once sanitized */
    for (int i = 3; i < n; i++) want[i - 3] = (char)toks[i];
    want[n - 3] = 0;
    cr_assert_eq(strlen(want), (size_t)(n - 3), "the greedy continuation has no EOS or NUL");
    char *valid = utf8_sanitize(want, strlen(want));
    cr_assert_lt(strlen(valid), sizeof want);
    strcpy(want, valid); /* what JSON can hold */
    free(valid);
    cr_expect_str_eq(json_string_value(json_array_get(c1, 0)), want);
    cr_expect_str_eq(json_string_value(json_array_get(c1, 1)), want, "greedy twice is the same");
    json_decref(l1);
    json_decref(l2);

    job.beams = 3;
    cr_assert_eq(generate_jsonl(m, tok, &job, NULL), 0, "%s", err_msg());
    o = fopen(out, "r");
    l1 = json_loadf(o, JSON_DISABLE_EOF_CHECK, &e);
    fclose(o);
    json_t *sc = json_object_get(l1, "scores");
    cr_assert_eq(json_array_size(sc), 2);
    cr_expect(json_real_value(json_array_get(sc, 0)) >= json_real_value(json_array_get(sc, 1)));
    json_decref(l1);

    f = fopen(in, "w");
    fprintf(f, "{\"q\": \"ok\"}\n{\"prompt\": \"wrong field\"}\n");
    fclose(f);
    remove(out);
    cr_expect_eq(generate_jsonl(m, tok, &job, NULL), -1);
    cr_expect(strstr(err_msg(), "p.jsonl:2") && strstr(err_msg(), "'q'"), "message: %s", err_msg());
    cr_expect(access(out, F_OK) != 0, "no output file is left behind");
    tokenizer_free(tok);
    gpt_free(m);
    rm_rf(dir);
}

Test(generate, utf8_sanitize_replaces_only_invalid_bytes) {
    const char in[] = "ok \xC3\xA9 \xFF \xE2\x82 \xF0\x9F\x8C\x8D \xED\xA0\x80 end";
    char *out = utf8_sanitize(in, sizeof in - 1);
    cr_expect_str_eq(out, "ok \xC3\xA9 \xEF\xBF\xBD \xEF\xBF\xBD\xEF\xBF\xBD \xF0\x9F\x8C\x8D "
                          "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD end");
    json_t *j = json_string(out);
    cr_expect_not_null(j, "the result is valid UTF-8 for jansson");
    json_decref(j);
    free(out);
}

/* A plain prompt is encoded as transformers' tokenizer(prompt) encodes it: the
 * post-processor's prefix (a Llama or Mistral BOS) and the text, as
 * `data build --schema sft` writes a prompt for training, so a model generates
 * from the ids it was trained on. The reference is HF tokenizers'
 * encode(text, add_special_tokens=True) of tests/make_tokenizer_json_fixtures.py,
 * for the tokenizers whose post-processor adds nothing after a text (a suffix
 * such as EOS ends a document, never a prompt). */
static int well_formed(const unsigned char *s, size_t n) {
    uint32_t cp;
    for (size_t i = 0, k; i < n; i += k)
        if (!(k = (size_t)utf8_decode(s + i, n - i, &cp)) || cp == 0) return 0;
    return 1;
}

static unsigned char *unhex_text(const char *hex, size_t *len) {
    size_t n = strlen(hex) / 2;
    unsigned char *out = malloc(n + 1);
    for (size_t i = 0; i < n; i++) sscanf(hex + 2 * i, "%2hhx", &out[i]);
    out[n] = 0;
    *len = n;
    return out;
}

Test(generate_io, plain_prompt_ids_are_tokenizer_ids_with_special_tokens) {
    json_error_t e;
    json_t *root = json_load_file("tests/fixtures/tokjson/expected.json", 0, &e);
    cr_assert_not_null(root, "tests/fixtures/tokjson/expected.json: %s", e.text);
    static const char *const names[] = {"llama2", "llama3", "mistral", "qwen2", "smollm", "gpt2"};
    json_t *texts = json_object_get(root, "texts");
    int with_prefix = 0, checked = 0;
    for (size_t t = 0; t < sizeof names / sizeof *names; t++) {
        char dir[128];
        snprintf(dir, sizeof dir, "tests/fixtures/tokjson/%s", names[t]);
        Tokenizer *tok = tokenizer_load(dir);
        cr_assert_not_null(tok, "%s: %s", dir, err_msg());
        cr_assert_eq(tok->n_special_suffix, 0, "%s adds ids after a text", names[t]);
        with_prefix += tok->n_special_prefix > 0;
        json_t *cases = json_object_get(json_object_get(json_object_get(root, "tokenizers"), names[t]), "cases");
        for (size_t c = 0; c < json_array_size(cases); c++) {
            size_t len;
            unsigned char *text = unhex_text(json_string_value(json_array_get(texts, c)), &len);
            if (!well_formed(text, len)) {
                free(text); /* a prompt is a JSON string: valid UTF-8 without NUL */
                continue;
            }
            GenerateJob job = {0};
            uint32_t *ids = NULL;
            int64_t cap = 0, n = generate_encode_prompt(tok, &job, (const char *)text, &ids, &cap);
            json_t *want = json_object_get(json_array_get(cases, c), "ids_special");
            cr_assert_eq(n, (int64_t)json_array_size(want), "%s, text %zu: %lld ids, tokenizers %zu",
                         names[t], c, (long long)n, json_array_size(want));
            for (int64_t i = 0; i < n; i++)
                cr_assert_eq(ids[i], (uint32_t)json_integer_value(json_array_get(want, (size_t)i)),
                             "%s, text %zu, id %lld", names[t], c, (long long)i);
            checked++;
            free(ids);
            free(text);
        }
        tokenizer_free(tok);
    }
    cr_assert_geq(with_prefix, 3, "llama2, llama3 and mistral put a BOS first");
    cr_assert_geq(checked, 20);
    json_decref(root);
}
