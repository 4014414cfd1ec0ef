/* tests/test_decode_batch.c — batched generation gives one-by-one
 * generation's outputs, bit for bit.
 *
 * The decoding GEMMs (matmul_rows_forward) must make every output element
 * one fixed sequence of operations: each instruction set equals the plain C
 * reference bitwise, a row's result does not change with the rows beside it
 * or the thread count, and the result is the product (against a double
 * reference, 1e-5 relative: fp32 sums of up to 300 products). Then the
 * engine: `retort generate`'s JSONL over prompts of mixed lengths, decoded
 * one prompt at a time (batch 1) and many at once (batch 5 and 16, slots
 * refilled as sequences finish), gives byte-identical files for greedy
 * decoding, seeded sampling with top-k/top-p and a stop string, candidate
 * pools (greedy + samples) and beam search, on a GPT-2 and a Llama-style
 * (rotary, grouped-query) model. */
#include <criterion/criterion.h>

#include <math.h>
#include <omp.h>

#include "data/tokenizer.h"
#include "eval/generate_io.h"
#include "kernels/ops.h"
#include "model/backend.h"
#include "model/generate.h"
#include "model/model.h"
#include "tests/testutil.h"

static float *random_floats(Rng *r, size_t n) {
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = (float)(rng_uniform(r) * 2 - 1);
    return x;
}

static const char *ISAS[] = {"avx512", "avx2"};

Test(matmul_rows, every_isa_equals_the_reference_and_rows_are_invariant) {
    /* shapes: ragged widths and depths (tails of every tile), a head-like row */
    const int shapes[][3] = {{1, 7, 5}, {13, 37, 50}, {9, 64, 131}, {17, 300, 97}, {3, 48, 1000}};
    Rng r;
    rng_seed(&r, 11);
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int nt = 0; nt < 2; nt++) {
            int N = shapes[si][0], C = shapes[si][1], OC = shapes[si][2];
            float *x = random_floats(&r, (size_t)N * C), *w = random_floats(&r, (size_t)C * OC);
            float *b = random_floats(&r, OC);
            float *ref = malloc((size_t)N * OC * sizeof(float));
            float *got = malloc((size_t)N * OC * sizeof(float));
            float *one = malloc((size_t)OC * sizeof(float));
            cr_assert_eq(matmul_rows_set_isa("scalar"), 0);
            matmul_rows_forward(ref, x, w, b, N, C, OC, nt);
            double err = 0, norm = 0; /* against double */
            for (int i = 0; i < N; i++)
                for (int o = 0; o < OC; o++) {
                    double s = b[o];
                    for (int k = 0; k < C; k++)
                        s += (double)x[(size_t)i * C + k] *
                             (nt ? w[(size_t)o * C + k] : w[(size_t)k * OC + o]);
                    err += (s - ref[(size_t)i * OC + o]) * (s - ref[(size_t)i * OC + o]);
                    norm += s * s;
                }
            cr_expect(sqrt(err / norm) < 1e-5, "N=%d C=%d OC=%d nt=%d: relative error %.3g", N, C,
                      OC, nt, sqrt(err / norm));
            for (size_t k = 0; k < sizeof ISAS / sizeof ISAS[0]; k++) {
                if (matmul_rows_set_isa(ISAS[k]) != 0) {
                    cr_log_warn("matmul_rows: this processor has no %s; not compared", ISAS[k]);
                    continue;
                }
                for (int threads = 1; threads <= 2; threads++) {
                    omp_set_num_threads(threads);
                    matmul_rows_forward(got, x, w, b, N, C, OC, nt);
                    cr_expect(memcmp(got, ref, (size_t)N * OC * sizeof(float)) == 0,
                              "%s, %d threads, N=%d C=%d OC=%d nt=%d: not the reference's bits",
                              ISAS[k], threads, N, C, OC, nt);
                }
                for (int i = 0; i < N; i++) { /* each row alone */
                    matmul_rows_forward(one, x + (size_t)i * C, w, b, 1, C, OC, nt);
                    cr_expect(memcmp(one, ref + (size_t)i * OC, (size_t)OC * sizeof(float)) == 0,
                              "%s: row %d alone differs from row %d of %d", ISAS[k], i, i, N);
                }
            }
            free(x), free(w), free(b), free(ref), free(got), free(one);
        }
}

/* A whole decode (prefill, then steps over the cache: GEMMs and attention)
 * gives the same logits bits on every instruction set. */
Test(decode_batch, logits_are_the_same_bits_on_every_isa) {
    GPTConfig cfg = {.n_layer = 2, .n_head = 4, .n_embd = 144, .vocab_size = 300,
                     .n_positions = 64, .layer_norm_epsilon = 1e-5f, .vocab_pad = 0,
                     .arch = ARCH_LLAMA, .n_kv_head = 2, .intermediate_size = 96};
    GPT *m = perturbed_cpu_model(&cfg, 9, 10, 0.05);
    int V = cfg.vocab_size, toks[40];
    Rng r;
    rng_seed(&r, 12);
    for (int i = 0; i < 40; i++) toks[i] = (int)rng_below(&r, (uint64_t)V);
    float *want = malloc((size_t)2 * V * sizeof(float)), *got = malloc((size_t)2 * V * sizeof(float));
    const char *isas[] = {"scalar", "avx2", "avx512"};
    for (int k = 0; k < 3; k++) {
        if (matmul_rows_set_isa(isas[k]) != 0) {
            cr_log_warn("decode: this processor has no %s; not compared", isas[k]);
            continue;
        }
        float *dst = k == 0 ? want : got;
        gpt_decode(m, toks, 2, 17, 0, dst); /* two rows of 17; HS 36: two chunks of 16 and a tail */
        gpt_decode(m, toks + 34, 2, 1, 17, dst);
        if (k > 0)
            cr_expect(memcmp(got, want, (size_t)2 * V * sizeof(float)) == 0,
                      "%s logits differ from the plain C path's", isas[k]);
    }
    free(want), free(got);
    gpt_free(m);
}

/* The full-sort sampler sample_from_logits's contract describes (written
 * out plainly: every candidate sorted first). */
typedef struct {
    double p;
    int id;
} RefCand;

static int ref_desc(const void *a, const void *b) {
    const RefCand *x = a, *y = b;
    if (x->p != y->p) return x->p < y->p ? 1 : -1;
    return x->id - y->id;
}

static int ref_sample(const float *l, int V, const SampleOptions *o, Rng *rng) {
    int best = 0;
    for (int j = 1; j < V; j++)
        if (l[j] > l[best]) best = j;
    RefCand *c = malloc((size_t)V * sizeof *c);
    double total = 0;
    for (int j = 0; j < V; j++) {
        c[j] = (RefCand){exp((l[j] - l[best]) / o->temperature), j};
        total += c[j].p;
    }
    qsort(c, (size_t)V, sizeof *c, ref_desc);
    int keep = o->top_k > 0 && o->top_k < V ? o->top_k : V;
    if (o->top_p < 1) {
        double acc = 0;
        for (int j = 0; j < keep; j++)
            if ((acc += c[j].p / total) >= o->top_p) {
                keep = j + 1;
                break;
            }
    }
    double kept = 0;
    if (keep == V) kept = total;
    else
        for (int j = 0; j < keep; j++) kept += c[j].p;
    double u = rng_uniform(rng) * kept, acc = 0;
    int pick = c[keep - 1].id;
    for (int j = 0; j < keep; j++)
        if (u < (acc += c[j].p)) {
            pick = c[j].id;
            break;
        }
    free(c);
    return pick;
}

/* Sorting only as far as the cut and the draw reach picks what a full sort
 * picks: flat and peaked logits (the draw reaching past the first sorted
 * block, and not), ties, every cut, at least 50 draws each. */
Test(decode_batch, partial_sort_sampling_equals_full_sort) {
    const int Vs[] = {5, 300, 3000};
    const double temps[] = {0.3, 1.0, 5.0};
    const SampleOptions cuts[] = {{1, 1, 0, 1.0, -1, NULL, NULL},  {1, 1, 40, 1.0, -1, NULL, NULL},
                                  {1, 1, 0, 0.9, -1, NULL, NULL},  {1, 1, 700, 0.99, -1, NULL, NULL},
                                  {1, 1, 1, 1.0, -1, NULL, NULL},  {1, 1, 0, 0.999999, -1, NULL, NULL}};
    Rng g;
    rng_seed(&g, 21);
    for (int vi = 0; vi < 3; vi++)
        for (int ti = 0; ti < 3; ti++)
            for (size_t ci = 0; ci < sizeof cuts / sizeof cuts[0]; ci++) {
                int V = Vs[vi];
                float *l = malloc((size_t)V * sizeof(float));
                for (int j = 0; j < V; j++) /* a few ties: values on a grid */
                    l[j] = (float)((int)(rng_uniform(&g) * 64) / 8.0);
                SampleOptions o = cuts[ci];
                o.temperature = temps[ti];
                Rng a, b;
                rng_seed(&a, 100 + ci), rng_seed(&b, 100 + ci);
                for (int t = 0; t < 3000 / V + 50; t++) {
                    int x = sample_from_logits(l, V, &o, &a), y = ref_sample(l, V, &o, &b);
                    cr_assert_eq(x, y, "V=%d T=%g top_k=%d top_p=%g draw %d: %d, a full sort %d", V,
                                 o.temperature, o.top_k, o.top_p, t, x, y);
                }
                free(l);
            }
}

/* ------------------------------------------------------------- the engine */

static void write_prompts(const char *path) {
    FILE *f = fopen(path, "w");
    cr_assert(f);
    const char *p[] = {"a",  "The cat sat on", "xy", "Once upon a time there was", "q",
                       "12", "hello world",     "zz", "What is two plus two?",      "k",
                       "The", "abc def ghi jkl"};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) fprintf(f, "{\"prompt\": \"%s\"}\n", p[i]);
    fclose(f);
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "%s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    cr_assert_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = 0;
    fclose(f);
    return s;
}

/* The job at batch 1, 5 and 16 gives the same file. */
static void same_at_every_batch(GPT *m, const Tokenizer *tok, GenerateJob job, const char *dir,
                                const char *what) {
    char in[512], out[512];
    snprintf(in, sizeof in, "%s/p.jsonl", dir);
    write_prompts(in);
    job.input = in;
    job.quiet = 1;
    char *first = NULL;
    const int batches[] = {1, 5, 16};
    for (int i = 0; i < 3; i++) {
        snprintf(out, sizeof out, "%s/o%d.jsonl", dir, batches[i]);
        job.output = out;
        job.batch = batches[i];
        cr_assert_eq(generate_jsonl(m, tok, &job, NULL), 0, "%s: %s", what, err_msg());
        char *s = slurp(out);
        if (!first) {
            first = s;
            cr_assert(strstr(first, "completions"), "%s", what);
            continue;
        }
        cr_expect_str_eq(s, first, "%s: batch %d differs from batch 1", what, batches[i]);
        free(s);
    }
    free(first);
}

static void every_mode(GPT *m) {
    Tokenizer *tok = tokenizer_bytes();
    char dir[256];
    make_temp_dir(dir, sizeof dir, "decbatch");
    GenerateJob job = {0};
    job.sample = (SampleOptions){12, 0.0, 0, 1.0, 256, NULL, NULL};
    job.samples = 1;
    job.length_penalty = 1.0;
    job.seed = 3;
    job.write_ids = 1;
    same_at_every_batch(m, tok, job, dir, "greedy");
    job.sample.temperature = 0.9;
    job.sample.top_k = 40;
    job.sample.top_p = 0.95;
    job.samples = 3;
    job.stop[0] = "e";
    job.n_stop = 1;
    same_at_every_batch(m, tok, job, dir, "sampling");
    job.samples = 1;
    job.candidates = 2;
    same_at_every_batch(m, tok, job, dir, "candidates");
    job.candidates = 0;
    job.n_stop = 0;
    job.beams = 3;
    job.samples = 2;
    job.length_penalty = 0.7;
    same_at_every_batch(m, tok, job, dir, "beam search");
    tokenizer_free(tok);
    rm_rf(dir);
}

Test(decode_batch, gpt2_batched_equals_one_by_one) {
    GPTConfig cfg = {.n_layer = 2, .n_head = 4, .n_embd = 64, .vocab_size = 257,
                     .n_positions = 64, .layer_norm_epsilon = 1e-5f, .vocab_pad = 0};
    GPT *m = perturbed_cpu_model(&cfg, 5, 6, 0.05);
    every_mode(m);
    gpt_free(m);
}

Test(decode_batch, llama_batched_equals_one_by_one) {
    GPTConfig cfg = {.n_layer = 2, .n_head = 4, .n_embd = 64, .vocab_size = 257,
                     .n_positions = 64, .layer_norm_epsilon = 1e-5f, .vocab_pad = 0,
                     .arch = ARCH_LLAMA, .n_kv_head = 2, .intermediate_size = 96};
    GPT *m = perturbed_cpu_model(&cfg, 7, 8, 0.05);
    every_mode(m);
    gpt_free(m);
}
