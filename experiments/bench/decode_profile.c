/* experiments/bench/decode_profile.c — where a single-stream decode step's
 * time goes on the CPU, and the machine's memory bandwidth beside it.
 *
 *   decode_profile copy [MiB]                   copy and read bandwidth (GB/s)
 *                                               over MiB-sized buffers (1024)
 *   decode_profile [L H C V NEW PROMPT]         per-part decode step times
 *                                               (default GPT-2 124M, 128 new
 *                                               tokens after a 12-token prompt)
 *
 * The profile runs gpt_decode (the product path, unchanged) on a copy of the
 * CPU backend whose op pointers are wrapped in timers: the trick is that the
 * model reaches every kernel through model/backend.h, so the bench can time
 * each call without touching product code. matmul_forward calls are told
 * apart by shape (qkv C->3C, attention out C->C, fc C->4C, fc out 4C->C).
 * Threads: OMP_NUM_THREADS / the THREADS variable, set for OpenMP and
 * OpenBLAS alike. Random weights; greedy feeding of the argmax, as
 * `retort generate --temperature 0` does. Run by decode_bandwidth.sh. */
#include <cblas.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/backend.h"
#include "model/model.h"
#include "util/util.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

enum { P_QKV, P_ATTPROJ, P_FC, P_FCPROJ, P_HEAD, P_ATTN, P_NORM, P_OTHER, P_COUNT };
static const char *const part_name[P_COUNT] = {
    "matmul qkv (C->3C)", "matmul attn out (C->C)", "matmul fc (C->4C)",
    "matmul fc out (4C->C)", "lm head (C->V)", "attention over cache",
    "layernorms", "encoder, gelu, residual"};
static double part_s[P_COUNT];
static long part_calls[P_COUNT];
static int timing; /* only the one-token steps are counted */
static const Backend *cpu;

#define TIMED(part, call)                          \
    do {                                           \
        double t0_ = now();                        \
        call;                                      \
        if (timing) {                              \
            part_s[part] += now() - t0_;           \
            part_calls[part]++;                    \
        }                                          \
    } while (0)

static void t_matmul(float *out, const float *inp, const float *w, const float *bias, int N,
                     int C, int OC) {
    int part = OC == 3 * C ? P_QKV : OC == C ? P_ATTPROJ : OC > C ? P_FC : P_FCPROJ;
    TIMED(part, cpu->matmul_forward(out, inp, w, bias, N, C, OC));
}
static void t_head(float *logits, const float *inp, const float *wte, int N, int C, int V) {
    TIMED(P_HEAD, cpu->lm_head_forward(logits, inp, wte, N, C, V));
}
/* decoding's GEMMs (the head is the nn.Linear one as wide as the vocabulary) */
static void t_rows(float *out, const float *inp, const float *w, const float *bias, int N, int C,
                   int OC, int nt) {
    int part = nt && OC > 4 * C ? P_HEAD
               : OC == 3 * C   ? P_QKV
               : OC == C       ? P_ATTPROJ
               : OC > C        ? P_FC
                               : P_FCPROJ;
    TIMED(part, cpu->matmul_rows_forward(out, inp, w, bias, N, C, OC, nt));
}
static void t_attn(float *out, float *k, float *v, const float *qkv, const int *slot,
                   const int *pos, int N, int NH, int KVH, int HS, int maxT, float scale) {
    TIMED(P_ATTN, cpu->attention_decode(out, k, v, qkv, slot, pos, N, NH, KVH, HS, maxT, scale));
}
static void t_norm(float *out, float *mean, float *rstd, const float *inp, const float *w,
                   const float *b, int N, int C, float eps) {
    TIMED(P_NORM, cpu->layernorm_forward(out, mean, rstd, inp, w, b, N, C, eps));
}
static void t_gelu(float *out, const float *inp, size_t n) {
    TIMED(P_OTHER, cpu->gelu_forward(out, inp, n));
}
static void t_residual(float *out, const float *a, const float *b, size_t n) {
    TIMED(P_OTHER, cpu->residual_forward(out, a, b, n));
}
static void t_encoder(float *out, const int *inp, const float *wte, const float *wpe,
                      const int *pos, int B, int T, int C) {
    TIMED(P_OTHER, cpu->encoder_forward(out, inp, wte, wpe, pos, B, T, C));
}

/* Best of 5 over buffers of `bytes` (1 GiB: beyond the last-level cache; the
 * size of a model's weights: what a decode step's streaming meets): a
 * STREAM-style copy (GB/s counting the bytes read and the bytes written, as
 * STREAM does) and a read-only sum (bytes read), the pattern of a GEMV
 * streaming its weight. */
static int bandwidth(size_t bytes) {
    size_t n = bytes / sizeof(float);
    float *a = malloc(bytes), *b = malloc(bytes);
    if (!a || !b) {
        fprintf(stderr, "decode_profile: cannot allocate 2 x %zu MiB for the copy test\n",
                bytes >> 20);
        return 1;
    }
    #pragma omp parallel for
    for (size_t i = 0; i < n; i++) a[i] = (float)(i & 1023), b[i] = 0;
    double best_copy = 1e30, best_read = 1e30, sum = 0;
    /* the read: OpenBLAS's sasum per thread's slice (vector registers, many
     * accumulators), so it runs at the memory's pace, not at an add's latency */
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now();
        #pragma omp parallel
        {
            int t = omp_get_thread_num(), nt = omp_get_num_threads();
            size_t lo = n * t / nt, hi = n * (t + 1) / nt;
            memcpy(b + lo, a + lo, (hi - lo) * sizeof(float));
        }
        double t1 = now();
        double s = 0;
        #pragma omp parallel reduction(+ : s)
        {
            int t = omp_get_thread_num(), nt = omp_get_num_threads();
            size_t lo = n * t / nt, hi = n * (t + 1) / nt;
            s += cblas_sasum((blasint)(hi - lo), b + lo, 1);
        }
        double t2 = now();
        sum += s;
        if (t1 - t0 < best_copy) best_copy = t1 - t0;
        if (t2 - t1 < best_read) best_read = t2 - t1;
    }
    printf("copy_GBps %.2f\nread_GBps %.2f\nbuffer_MiB %zu\nthreads %d\nchecksum %.0f\n",
           2.0 * bytes / best_copy / 1e9, bytes / best_read / 1e9, bytes >> 20,
           omp_get_max_threads(), sum);
    free(a);
    free(b);
    return 0;
}

int main(int argc, char **argv) {
    const char *t = getenv("THREADS");
    int threads = t ? atoi(t) : omp_get_max_threads();
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
    if (argc > 1 && strcmp(argv[1], "copy") == 0)
        return bandwidth((size_t)(argc > 2 ? atoi(argv[2]) : 1024) << 20);

    GPTConfig cfg = {.n_layer = 12, .n_head = 12, .n_embd = 768, .vocab_size = 50257,
                     .n_positions = 1024, .layer_norm_epsilon = 1e-5f};
    int NEW = 128, PROMPT = 12;
    if (argc > 4) {
        cfg.n_layer = atoi(argv[1]);
        cfg.n_head = atoi(argv[2]);
        cfg.n_embd = atoi(argv[3]);
        cfg.vocab_size = atoi(argv[4]);
    }
    if (argc > 5) NEW = atoi(argv[5]);
    if (argc > 6) PROMPT = atoi(argv[6]);
    if (PROMPT < 1 || NEW < 1 || PROMPT + NEW > cfg.n_positions) {
        fprintf(stderr, "decode_profile: PROMPT + NEW must be in [2, %d]\n", cfg.n_positions);
        return 1;
    }
    cpu = backend_cpu();
    Backend prof = *cpu;
    prof.matmul_forward = t_matmul;
    prof.lm_head_forward = t_head;
    prof.matmul_rows_forward = t_rows;
    prof.attention_decode = t_attn;
    prof.layernorm_forward = t_norm;
    prof.gelu_forward = t_gelu;
    prof.residual_forward = t_residual;
    prof.encoder_forward = t_encoder;
    GPT *m = gpt_create(&cfg, &prof);
    if (!m) {
        fprintf(stderr, "decode_profile: %s\n", err_msg());
        return 1;
    }
    gpt_init_random(m, 1);
    int V = cfg.vocab_size;
    float *logits = malloc((size_t)V * sizeof(float));
    int *ids = malloc((size_t)(PROMPT + NEW) * sizeof(int));
    for (int i = 0; i < PROMPT; i++) ids[i] = (i * 7919 + 13) % V;
    gpt_decode(m, ids, 1, PROMPT, 0, logits); /* prefill, not counted */
    timing = 1;
    double t0 = now();
    for (int s = 0; s < NEW; s++) {
        int best = 0;
        for (int v = 1; v < V; v++)
            if (logits[v] > logits[best]) best = v;
        ids[PROMPT + s] = best;
        gpt_decode(m, ids + PROMPT + s, 1, 1, PROMPT + s, logits);
    }
    double total = now() - t0;
    timing = 0;
    double counted = 0;
    printf("threads %d, openblas core %s, %d x %d, vocab %d, %d steps after a %d-token prompt\n",
           threads, openblas_get_corename(), cfg.n_layer, cfg.n_embd, V, NEW, PROMPT);
    printf("| part | ms/step | share |\n|---|---:|---:|\n");
    for (int p = 0; p < P_COUNT; p++) {
        printf("| %s | %.3f | %.1f%% |\n", part_name[p], 1e3 * part_s[p] / NEW,
               100 * part_s[p] / total);
        counted += part_s[p];
    }
    printf("| rest (argmax, logits copy, bookkeeping) | %.3f | %.1f%% |\n",
           1e3 * (total - counted) / NEW, 100 * (total - counted) / total);
    printf("| step | %.3f | 100%% |\n", 1e3 * total / NEW);
    printf("tok_per_s %.2f\n", NEW / total);
    gpt_free(m);
    free(logits);
    free(ids);
    return 0;
}
