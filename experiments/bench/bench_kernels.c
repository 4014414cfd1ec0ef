/* experiments/bench/bench_kernels.c — per-kernel GPU timings for `make bench-gpu`.
 *
 * Times each CUDA op through the backend table with CUDA events (warm-up, then
 * the median of repeated runs over rotating input sets so L2 does not hold
 * them), on random data, and prints one line per kernel:
 *   attention fwd+bwd TFLOP/s at GPT-2 124M and 350M shapes and Llama 3 8B's
 *     grouped heads (32 query heads over 8 kv heads; causal FLOPs:
 *     forward 2 matmuls x 2*B*NH*T*T*HS / 2, backward 5 of them / 2), and
 *     GPT-2 124M's with packed rows of 128-token examples (data.pack; the
 *     FLOPs of the examples' own triangles),
 *   layernorm, rmsnorm, swiglu, rope and classifier forward/backward achieved
 *     GB/s (bytes each must read and write once), beside the card's measured
 *     device-to-device copy bandwidth.
 * Output lines start with "kernel" so the driver script can parse them.
 */
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "model/backend.h"
#include "util/util.h"

#define REPS 20
#define SETS 3

static const Backend *G;

typedef void (*RunFn)(void *ctx, int set);

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* The events go on the backend's stream, where the kernels run: it is a
 * non-blocking stream, so events on stream 0 would not be ordered with them
 * and would time the host's launch and synchronize instead. */
static float median_ms(RunFn fn, void *ctx) {
    cudaStream_t stream = (cudaStream_t)backend_cuda_stream();
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    for (int i = 0; i < 3; i++) fn(ctx, i % SETS);
    G->synchronize();
    float t[REPS];
    for (int i = 0; i < REPS; i++) {
        cudaEventRecord(a, stream);
        fn(ctx, i % SETS);
        cudaEventRecord(b, stream);
        cudaEventSynchronize(b);
        cudaEventElapsedTime(&t[i], a, b);
    }
    qsort(t, REPS, sizeof(float), cmp_float);
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return t[REPS / 2];
}

static float *rand_dev(Rng *r, size_t n, int compute_type) {
    float *h = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) h[i] = (float)(rng_uniform(r) * 2 - 1);
    float *d = G->alloc(n * (compute_type ? G->act_size : sizeof(float)));
    if (compute_type) G->upload_f32(d, h, n);
    else G->to_device(d, h, n * sizeof(float));
    free(h);
    return d;
}

/* ---- attention ---- */
typedef struct { int B, T, NH, KVH, HS; float *qkv[SETS], *out, *lse, *dout, *dqkv; int *ds; } Att;
static void att_run(void *p, int s) {
    Att *a = p;
    float scale = 1.0f / sqrtf((float)a->HS);
    size_t W = (size_t)(a->NH + 2 * a->KVH) * a->HS;
    G->attention_forward(a->out, a->lse, a->qkv[s], a->ds, a->B, a->T, a->NH, a->KVH, a->HS, scale);
    G->zero(a->dqkv, (size_t)a->B * a->T * W * G->act_size);
    G->attention_backward(a->dqkv, a->dout, a->qkv[s], a->out, a->lse, a->ds, a->B, a->T, a->NH,
                          a->KVH, a->HS, scale);
}

/* KVH < NH: grouped-query heads (the FLOPs count query heads, as for NH = KVH).
 * doc_len > 0: packed rows of examples doc_len long (data.pack), the FLOPs
 * those of the examples' own causal triangles. */
static void bench_attention_packed(Rng *r, const char *name, int B, int T, int NH, int KVH,
                                   int HS, int doc_len) {
    Att a = {B, T, NH, KVH, HS, {0}, 0, 0, 0, 0, NULL};
    double tri = (double)T * T / 2.0; /* causal (T,T) entries per head */
    if (doc_len > 0) {
        int *ds = malloc((size_t)B * T * sizeof(int));
        tri = 0;
        for (int t = 0; t < T; t++) {
            for (int b = 0; b < B; b++) ds[(size_t)b * T + t] = t / doc_len * doc_len;
            tri += t - t / doc_len * doc_len + 1;
        }
        a.ds = G->alloc((size_t)B * T * sizeof(int));
        G->to_device(a.ds, ds, (size_t)B * T * sizeof(int));
        free(ds);
    }
    size_t W = (size_t)(NH + 2 * KVH) * HS, CQ = (size_t)NH * HS;
    for (int s = 0; s < SETS; s++) a.qkv[s] = rand_dev(r, (size_t)B * T * W, 1);
    a.out = rand_dev(r, (size_t)B * T * CQ, 1);
    a.lse = rand_dev(r, (size_t)B * NH * T, 0);
    a.dout = rand_dev(r, (size_t)B * T * CQ, 1);
    a.dqkv = rand_dev(r, (size_t)B * T * W, 1);
    float ms = median_ms(att_run, &a);
    double flops = 7.0 * 2.0 * B * NH * tri * HS; /* the unmasked entries */
    printf("kernel attention_fwd_bwd %s B=%d NH=%d KVH=%d T=%d HS=%d", name, B, NH, KVH, T, HS);
    if (doc_len > 0) printf(" packed examples of %d", doc_len);
    printf(" %.3f ms %.1f TFLOP/s\n", ms, flops / (ms * 1e-3) / 1e12);
    if (a.ds) G->release(a.ds);
    for (int s = 0; s < SETS; s++) G->release(a.qkv[s]);
    G->release(a.out);
    G->release(a.lse);
    G->release(a.dout);
    G->release(a.dqkv);
}

static void bench_attention(Rng *r, const char *name, int B, int T, int NH, int KVH, int HS) {
    bench_attention_packed(r, name, B, T, NH, KVH, HS, 0);
}

/* ---- layernorm ---- */
typedef struct { int N, C; float *inp[SETS], *out, *mean, *rstd, *w, *b, *dout, *dinp, *dw, *db; int bwd; } Ln;
static void ln_run(void *p, int s) {
    Ln *l = p;
    if (!l->bwd) G->layernorm_forward(l->out, l->mean, l->rstd, l->inp[s], l->w, l->b, l->N, l->C, 1e-5f);
    else G->layernorm_backward(l->dinp, l->dw, l->db, l->dout, l->inp[s], l->w, l->mean, l->rstd, l->N, l->C);
}

static void bench_layernorm(Rng *r, int N, int C) {
    Ln l = {N, C, {0}, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    for (int s = 0; s < SETS; s++) l.inp[s] = rand_dev(r, (size_t)N * C, 1);
    l.out = rand_dev(r, (size_t)N * C, 1);
    l.mean = rand_dev(r, N, 0);
    l.rstd = rand_dev(r, N, 0);
    l.w = rand_dev(r, C, 1);
    l.b = rand_dev(r, C, 1);
    l.dout = rand_dev(r, (size_t)N * C, 1);
    l.dinp = rand_dev(r, (size_t)N * C, 1);
    l.dw = rand_dev(r, C, 0); /* weight gradients are fp32 */
    l.db = rand_dev(r, C, 0);
    G->layernorm_forward(l.out, l.mean, l.rstd, l.inp[0], l.w, l.b, N, C, 1e-5f);
    double X = (double)G->act_size;
    for (l.bwd = 0; l.bwd < 2; l.bwd++) {
        float ms = median_ms(ln_run, &l);
        /* fwd: read inp, write out (+ mean, rstd); bwd: read inp, dout, dinp, write dinp */
        double bytes = l.bwd ? (double)N * C * X * 4 + 8.0 * N : (double)N * C * X * 2 + 8.0 * N;
        printf("kernel layernorm_%s N=%d C=%d %.3f ms %.0f GB/s\n", l.bwd ? "bwd" : "fwd", N, C,
               ms, bytes / (ms * 1e-3) / 1e9);
    }
}

/* ---- rmsnorm (Llama families) ---- */
typedef struct { int N, C; float *inp[SETS], *out, *rstd, *w, *dout, *dinp, *dw; int bwd; } Rms;
static void rms_run(void *p, int s) {
    Rms *l = p;
    if (!l->bwd) G->rmsnorm_forward(l->out, l->rstd, l->inp[s], l->w, l->N, l->C, 1e-6f);
    else G->rmsnorm_backward(l->dinp, l->dw, l->dout, l->inp[s], l->w, l->rstd, l->N, l->C);
}

static void bench_rmsnorm(Rng *r, int N, int C) {
    Rms l = {N, C, {0}, 0, 0, 0, 0, 0, 0, 0};
    for (int s = 0; s < SETS; s++) l.inp[s] = rand_dev(r, (size_t)N * C, 1);
    l.out = rand_dev(r, (size_t)N * C, 1);
    l.rstd = rand_dev(r, N, 0);
    l.w = rand_dev(r, C, 1);
    l.dout = rand_dev(r, (size_t)N * C, 1);
    l.dinp = rand_dev(r, (size_t)N * C, 1);
    l.dw = rand_dev(r, C, 0); /* fp32 */
    G->rmsnorm_forward(l.out, l.rstd, l.inp[0], l.w, N, C, 1e-6f);
    double X = (double)G->act_size;
    for (l.bwd = 0; l.bwd < 2; l.bwd++) {
        float ms = median_ms(rms_run, &l);
        /* fwd: read inp, write out (+ rstd); bwd: read inp, dout, dinp, write dinp */
        double bytes = l.bwd ? (double)N * C * X * 4 + 4.0 * N : (double)N * C * X * 2 + 4.0 * N;
        printf("kernel rmsnorm_%s N=%d C=%d %.3f ms %.0f GB/s\n", l.bwd ? "bwd" : "fwd", N, C, ms,
               bytes / (ms * 1e-3) / 1e9);
    }
}

/* ---- swiglu ---- */
typedef struct { int N, I; float *inp[SETS], *out, *dout, *dinp; int bwd; } Swiglu;
static void swiglu_run(void *p, int s) {
    Swiglu *g = p;
    if (!g->bwd) G->swiglu_forward(g->out, g->inp[s], g->N, g->I);
    else G->swiglu_backward(g->dinp, g->dout, g->inp[s], g->N, g->I);
}

static void bench_swiglu(Rng *r, int N, int I) {
    Swiglu g = {N, I, {0}, 0, 0, 0, 0};
    for (int s = 0; s < SETS; s++) g.inp[s] = rand_dev(r, (size_t)N * 2 * I, 1);
    g.out = rand_dev(r, (size_t)N * I, 1);
    g.dout = rand_dev(r, (size_t)N * I, 1);
    g.dinp = rand_dev(r, (size_t)N * 2 * I, 1);
    double X = (double)G->act_size;
    for (g.bwd = 0; g.bwd < 2; g.bwd++) {
        float ms = median_ms(swiglu_run, &g);
        /* fwd: read (N,2I), write (N,I); bwd: read inp, dout, dinp, write dinp */
        double bytes = (double)N * I * X * (g.bwd ? 7 : 3);
        printf("kernel swiglu_%s N=%d I=%d %.3f ms %.0f GB/s\n", g.bwd ? "bwd" : "fwd", N, I, ms,
               bytes / (ms * 1e-3) / 1e9);
    }
}

/* ---- rope (in place; forward and backward move the same bytes) ---- */
typedef struct { int B, T, NH, KVH, HS; float *qkv[SETS], *cos_tab, *sin_tab; } Rope;
static void rope_run(void *p, int s) {
    Rope *q = p;
    G->rope_forward(q->qkv[s], q->cos_tab, q->sin_tab, NULL, q->B, q->T, 0, q->NH, q->KVH, q->HS);
}

static void bench_rope(Rng *r, int B, int T, int NH, int KVH, int HS) {
    Rope q = {B, T, NH, KVH, HS, {0}, 0, 0};
    for (int s = 0; s < SETS; s++) q.qkv[s] = rand_dev(r, (size_t)B * T * (NH + 2 * KVH) * HS, 1);
    q.cos_tab = rand_dev(r, (size_t)T * HS / 2, 0);
    q.sin_tab = rand_dev(r, (size_t)T * HS / 2, 0);
    float ms = median_ms(rope_run, &q);
    /* read and write the q and k heads */
    double bytes = 2.0 * B * T * (NH + KVH) * HS * G->act_size;
    printf("kernel rope B=%d T=%d NH=%d KVH=%d HS=%d %.3f ms %.0f GB/s\n", B, T, NH, KVH, HS, ms,
           bytes / (ms * 1e-3) / 1e9);
}

/* ---- classifier ---- */
typedef struct { int N, V; float *logits[SETS], *logp, *lse, *g; int *targets; int bwd; } Cl;
static void cl_run(void *p, int s) {
    Cl *c = p;
    if (!c->bwd) G->classifier_forward(c->logp, c->lse, c->logits[s], c->targets, c->N, c->V, c->V);
    else G->classifier_backward(c->logits[s], c->lse, c->targets, c->g, c->N, c->V, c->V);
}

static void bench_classifier(Rng *r, int N, int V) {
    Cl c = {N, V, {0}, 0, 0, 0, 0, 0};
    for (int s = 0; s < SETS; s++) c.logits[s] = rand_dev(r, (size_t)N * V, 1);
    c.logp = rand_dev(r, N, 0);
    c.lse = rand_dev(r, N, 0);
    c.g = rand_dev(r, N, 0);
    int *t = malloc(N * sizeof(int));
    for (int i = 0; i < N; i++) t[i] = (int)rng_below(r, V);
    c.targets = G->alloc(N * sizeof(int));
    G->to_device(c.targets, t, N * sizeof(int));
    free(t);
    G->classifier_forward(c.logp, c.lse, c.logits[0], c.targets, N, V, V);
    for (c.bwd = 0; c.bwd < 2; c.bwd++) {
        float ms = median_ms(cl_run, &c);
        double bytes = (double)N * V * G->act_size * (c.bwd ? 2 : 1);
        printf("kernel classifier_%s N=%d V=%d %.3f ms %.0f GB/s\n", c.bwd ? "bwd" : "fwd", N, V,
               ms, bytes / (ms * 1e-3) / 1e9);
    }
}

static void bench_copy(void) {
    size_t bytes = (size_t)1 << 31;
    void *a, *b;
    cudaMalloc(&a, bytes);
    cudaMalloc(&b, bytes);
    cudaMemset(a, 1, bytes);
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);
    float best = 1e30f;
    for (int i = 0; i < 10; i++) {
        float ms;
        cudaEventRecord(e0, 0);
        cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);
        cudaEventRecord(e1, 0);
        cudaEventSynchronize(e1);
        cudaEventElapsedTime(&ms, e0, e1);
        if (ms < best) best = ms;
    }
    printf("kernel copy_d2d %.0f GB/s (read + write)\n", 2.0 * bytes / (best * 1e-3) / 1e9);
    cudaFree(a);
    cudaFree(b);
}

int main(void) {
    G = backend_by_name("cuda");
    if (!G) {
        fprintf(stderr, "bench_kernels: %s\n", err_msg());
        return 1;
    }
    Rng r;
    rng_seed(&r, 1);
    bench_copy();
    bench_attention(&r, "gpt2-124m", 8, 1024, 12, 12, 64);
    bench_attention_packed(&r, "gpt2-124m", 8, 1024, 12, 12, 64, 128);
    bench_attention(&r, "gpt2-350m", 8, 1024, 16, 16, 64);
    bench_attention(&r, "hs128", 8, 1024, 16, 16, 128);
    bench_attention(&r, "llama3-8b-heads", 2, 2048, 32, 8, 128);
    bench_layernorm(&r, 8 * 1024, 768);
    bench_rmsnorm(&r, 8 * 1024, 2048);        /* Llama-3.2-1B's width */
    bench_swiglu(&r, 8 * 1024, 5632);         /* TinyLlama's MLP */
    bench_rope(&r, 8, 1024, 32, 4, 64);       /* TinyLlama's heads */
    bench_classifier(&r, 8 * 1024, 50257);
    return 0;
}
