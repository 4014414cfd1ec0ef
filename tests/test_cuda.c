/* tests/test_cuda.c — every CUDA op against its CPU twin, the whole model on
 * the GPU against the CPU, training curves and determinism. Run by
 * `make test-gpu` on a machine with a GPU; anywhere else every test skips with
 * a visible message (the binary is still built and linked in CI).
 *
 * Method: fresh random inputs per test (never zeros), rounded to bf16 on the
 * host first so both backends see identical values; outputs written with "="
 * are poisoned with NaN before the GPU op; outputs accumulated with "+=" start
 * from the same random values on both sides, which also checks accumulation.
 *
 * Tolerances (relative L2 error against the fp32 CPU result on the same
 * inputs): bf16 storage rounds each element to 8 significant bits (relative
 * error up to 2^-9 = 0.2%), so
 *   - bf16 outputs of one rounding (forward ops):          1e-2
 *   - bf16 gradients (one or two roundings + bf16 inputs):  2e-2
 *   - fp32 weight gradients (dweight, dbias, dwte, dwpe) from bf16-exact
 *     inputs, summed in fp32 in another order:             1e-4
 *     (one bf16 rounding of the result alone would be ~1e-3: this tells a
 *     gradient kept in fp32 from one rounded to bf16)
 *   - fp32 side outputs computed in fp32 from the same bf16 inputs
 *     (layernorm mean/rstd, log-sum-exp, logp):            1e-4
 *   - attention, whose P is rounded to bf16 before P V:    2e-2
 */
#include <criterion/criterion.h>

#include "tests/testutil.h"
#include "model/backend.h"
#include "train/config.h"
#include "train/dist.h"
#include "model/model.h"
#include "train/optim.h"
#include "train/trainer.h"

static const Backend *gpu_or_skip(void) {
    const Backend *b = backend_by_name("cuda");
    if (!b) fprintf(stderr, "SKIP: GPU test: %s\n", err_msg());
    return b;
}

#define NEED_GPU(G)                                                   \
    const Backend *G = gpu_or_skip();                                 \
    if (!G) cr_skip_test("no usable CUDA device (see the SKIP line)")

/* Round to the nearest bf16, ties to even, as __float2bfloat16_rn does. */
static float bf16_round(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) == 0x7f800000u) return x;
    u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    memcpy(&x, &u, 4);
    return x;
}

static float *rand_host(Rng *r, size_t n, float scale) {
    float *x = malloc(n * sizeof(float));
    fill_uniform(r, x, n, scale);
    for (size_t i = 0; i < n; i++) x[i] = bf16_round(x[i]);
    return x;
}

/* device copies: compute type (X) or raw fp32 (F) */
static float *upX(const Backend *b, const float *h, size_t n) {
    float *d = b->alloc(n * b->act_size);
    cr_assert(d, "%s", err_msg());
    b->upload_f32(d, h, n);
    return d;
}
static float *upF(const Backend *b, const float *h, size_t n) {
    float *d = b->alloc(n * sizeof(float));
    cr_assert(d, "%s", err_msg());
    b->to_device(d, h, n * sizeof(float));
    return d;
}
static float *poisonX(const Backend *b, size_t n) {
    float *h = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) h[i] = NAN;
    float *d = upX(b, h, n);
    free(h);
    return d;
}
static float *poisonF(const Backend *b, size_t n) {
    float *h = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) h[i] = NAN;
    float *d = upF(b, h, n);
    free(h);
    return d;
}
static float *downX(const Backend *b, const float *d, size_t n) {
    float *h = malloc(n * sizeof(float));
    b->download_f32(h, d, n);
    return h;
}
static float *downF(const Backend *b, const float *d, size_t n) {
    float *h = malloc(n * sizeof(float));
    b->to_host(h, d, n * sizeof(float));
    return h;
}

static void expect_close(const char *what, const float *gpu, const float *cpu, size_t n,
                         double tol) {
    for (size_t i = 0; i < n; i++)
        cr_assert(gpu[i] == gpu[i], "%s: element %zu is NaN (never written?)", what, i);
    double e = rel_err(gpu, cpu, n);
    cr_expect(e < tol, "%s: relative error %.3g (tolerance %.1g)", what, e, tol);
}

static void check_X(const Backend *G, const char *what, const float *d, const float *cpu,
                    size_t n, double tol) {
    float *h = downX(G, d, n);
    expect_close(what, h, cpu, n, tol);
    free(h);
}
static void check_F(const Backend *G, const char *what, const float *d, const float *cpu,
                    size_t n, double tol) {
    float *h = downF(G, d, n);
    expect_close(what, h, cpu, n, tol);
    free(h);
}

/* ------------------------------------------------------------------- ops */

Test(cuda_ops, encoder) {
    NEED_GPU(G);
    const Backend *C0 = backend_cpu();
    Rng r;
    rng_seed(&r, 11);
    int B = 3, T = 37, C = 96, V = 101, maxT = 64;
    int *inp = malloc(B * T * sizeof(int));
    for (int i = 0; i < B * T; i++) inp[i] = (int)rng_below(&r, V);
    inp[1] = inp[5] = inp[9]; /* repeated tokens */
    float *wte = rand_host(&r, (size_t)V * C, 1), *wpe = rand_host(&r, (size_t)maxT * C, 1);
    float *out = malloc((size_t)B * T * C * sizeof(float));
    C0->encoder_forward(out, inp, wte, wpe, NULL, B, T, C);
    int *d_inp = G->alloc(B * T * sizeof(int));
    G->to_device(d_inp, inp, B * T * sizeof(int));
    float *d_wte = upX(G, wte, (size_t)V * C), *d_wpe = upX(G, wpe, (size_t)maxT * C);
    float *d_out = poisonX(G, (size_t)B * T * C);
    G->encoder_forward(d_out, d_inp, d_wte, d_wpe, NULL, B, T, C);
    check_X(G, "encoder_forward", d_out, out, (size_t)B * T * C, 1e-2);

    /* fp32 weight gradients; twice, as two micro-steps: first the ids only on
     * the device (the op downloads them), then with the host copy too */
    float *dout = rand_host(&r, (size_t)B * T * C, 1);
    float *dwte = rand_host(&r, (size_t)V * C, 1), *dwpe = rand_host(&r, (size_t)maxT * C, 1);
    float *d_dout = upX(G, dout, (size_t)B * T * C);
    float *d_dwte = upF(G, dwte, (size_t)V * C), *d_dwpe = upF(G, dwpe, (size_t)maxT * C);
    C0->encoder_backward(dwte, dwpe, dout, inp, inp, NULL, NULL, B, T, C);
    G->encoder_backward(d_dwte, d_dwpe, d_dout, d_inp, NULL, NULL, NULL, B, T, C);
    check_F(G, "encoder_backward dwte (ids downloaded)", d_dwte, dwte, (size_t)V * C, 1e-4);
    check_F(G, "encoder_backward dwpe (ids downloaded)", d_dwpe, dwpe, (size_t)maxT * C, 1e-4);
    C0->encoder_backward(dwte, dwpe, dout, inp, inp, NULL, NULL, B, T, C);
    G->encoder_backward(d_dwte, d_dwpe, d_dout, d_inp, inp, NULL, NULL, B, T, C);
    check_F(G, "encoder_backward dwte (host ids)", d_dwte, dwte, (size_t)V * C, 1e-4);
    check_F(G, "encoder_backward dwpe (host ids)", d_dwpe, dwpe, (size_t)maxT * C, 1e-4);
}

Test(cuda_ops, layernorm) {
    NEED_GPU(G);
    const Backend *C0 = backend_cpu();
    Rng r;
    rng_seed(&r, 12);
    int shapes[][2] = {{64, 768}, {7, 100}, {1, 1024}};
    for (int s = 0; s < 3; s++) {
        int N = shapes[s][0], C = shapes[s][1];
        size_t NC = (size_t)N * C;
        float *inp = rand_host(&r, NC, 3), *w = rand_host(&r, C, 1), *b = rand_host(&r, C, 1);
        float *out = malloc(NC * 4), *mean = malloc(N * 4), *rstd = malloc(N * 4);
        C0->layernorm_forward(out, mean, rstd, inp, w, b, N, C, 1e-5f);
        float *d_inp = upX(G, inp, NC), *d_w = upX(G, w, C), *d_b = upX(G, b, C);
        float *d_out = poisonX(G, NC), *d_mean = poisonF(G, N), *d_rstd = poisonF(G, N);
        G->layernorm_forward(d_out, d_mean, d_rstd, d_inp, d_w, d_b, N, C, 1e-5f);
        check_X(G, "layernorm out", d_out, out, NC, 1e-2);
        check_F(G, "layernorm mean", d_mean, mean, N, 1e-4);
        check_F(G, "layernorm rstd", d_rstd, rstd, N, 1e-4);

        float *dout = rand_host(&r, NC, 1), *dinp = rand_host(&r, NC, 1);
        float *dw = rand_host(&r, C, 1), *db = rand_host(&r, C, 1);
        float *d_dout = upX(G, dout, NC), *d_dinp = upX(G, dinp, NC);
        float *d_dw = upF(G, dw, C), *d_db = upF(G, db, C); /* fp32 weight gradients */
        C0->layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, N, C);
        G->layernorm_backward(d_dinp, d_dw, d_db, d_dout, d_inp, d_w, d_mean, d_rstd, N, C);
        check_X(G, "layernorm dinp", d_dinp, dinp, NC, 2e-2);
        check_F(G, "layernorm dweight", d_dw, dw, C, 1e-4);
        check_F(G, "layernorm dbias", d_db, db, C, 1e-4);
    }
}

static void matmul_case(const Backend *G, Rng *r, int N, int C, int OC, int with_bias) {
    const Backend *C0 = backend_cpu();
    float *inp = rand_host(r, (size_t)N * C, 1), *w = rand_host(r, (size_t)C * OC, 0.1f);
    float *b = with_bias ? rand_host(r, OC, 1) : NULL;
    float *out = malloc((size_t)N * OC * 4);
    C0->matmul_forward(out, inp, w, b, N, C, OC);
    float *d_inp = upX(G, inp, (size_t)N * C), *d_w = upX(G, w, (size_t)C * OC);
    float *d_b = b ? upX(G, b, OC) : NULL, *d_out = poisonX(G, (size_t)N * OC);
    G->matmul_forward(d_out, d_inp, d_w, d_b, N, C, OC);
    check_X(G, "matmul_forward", d_out, out, (size_t)N * OC, 1e-2);

    float *dout = rand_host(r, (size_t)N * OC, 1), *dinp = rand_host(r, (size_t)N * C, 1);
    float *dw = rand_host(r, (size_t)C * OC, 1), *db = rand_host(r, OC, 1);
    float *d_dout = upX(G, dout, (size_t)N * OC), *d_dinp = upX(G, dinp, (size_t)N * C);
    float *d_dw = upF(G, dw, (size_t)C * OC), *d_db = upF(G, db, OC); /* fp32 */
    C0->matmul_backward(dinp, dw, with_bias ? db : NULL, dout, inp, w, N, C, OC);
    G->matmul_backward(d_dinp, d_dw, with_bias ? d_db : NULL, d_dout, d_inp, d_w, N, C, OC);
    check_X(G, "matmul_backward dinp", d_dinp, dinp, (size_t)N * C, 2e-2);
    check_F(G, "matmul_backward dweight", d_dw, dw, (size_t)C * OC, 1e-4);
    if (with_bias) check_F(G, "matmul_backward dbias", d_db, db, OC, 1e-4);
}

/* N == 0 rows: nothing is launched (a zero-size grid is a launch error) and
 * nothing changes; C == 0: the output is the bias (an empty sum) and dbias
 * still gets its column sums. */
static void matmul_empty_case(const Backend *G, Rng *r) {
    const Backend *C0 = backend_cpu();
    int OC = 40, N = 5;
    float *b = rand_host(r, OC, 1), *dout = rand_host(r, (size_t)N * OC, 1);
    float *db = rand_host(r, OC, 1), *out = malloc((size_t)N * OC * 4);
    float *d_b = upX(G, b, OC), *d_db = upF(G, db, OC), *d_dout = upX(G, dout, (size_t)N * OC);
    float *d_out = poisonX(G, (size_t)N * OC);
    G->matmul_forward(d_out, d_dout, d_b, d_b, 0, 8, OC); /* N == 0 */
    G->matmul_backward(NULL, NULL, d_db, d_dout, d_dout, d_b, 0, 8, OC);
    float *h = downF(G, d_db, OC);
    cr_expect(memcmp(h, db, OC * 4) == 0, "matmul_backward with N = 0 changed dbias");
    free(h);
    G->matmul_backward(NULL, NULL, d_db, d_dout, d_dout, d_b, N, 0, OC); /* C == 0 */
    C0->matmul_backward(NULL, NULL, db, dout, dout, b, N, 0, OC);      /* bias sums only */
    check_F(G, "matmul_backward C=0 dbias", d_db, db, OC, 1e-4);
    G->matmul_forward(d_out, d_dout, d_b, d_b, N, 0, OC);
    for (int i = 0; i < N; i++) memcpy(out + (size_t)i * OC, b, OC * 4);
    h = downX(G, d_out, (size_t)N * OC);
    cr_expect(memcmp(h, out, (size_t)N * OC * 4) == 0, "matmul_forward with C = 0 is not the "
              "bias");
    free(h);
    free(b), free(dout), free(db), free(out);
    G->release(d_b), G->release(d_db), G->release(d_dout), G->release(d_out);
}

Test(cuda_ops, matmul) {
    NEED_GPU(G);
    Rng r;
    rng_seed(&r, 13);
    matmul_case(G, &r, 256, 768, 2304, 1);
    matmul_case(G, &r, 37, 100, 300, 1);
    matmul_case(G, &r, 64, 3072, 768, 0);
    matmul_empty_case(G, &r);
}

Test(cuda_ops, lm_head) {
    NEED_GPU(G);
    const Backend *C0 = backend_cpu();
    Rng r;
    rng_seed(&r, 14);
    int N = 70, C = 128, V = 1001;
    float *inp = rand_host(&r, (size_t)N * C, 1), *wte = rand_host(&r, (size_t)V * C, 0.1f);
    float *logits = malloc((size_t)N * V * 4);
    C0->lm_head_forward(logits, inp, wte, N, C, V);
    float *d_inp = upX(G, inp, (size_t)N * C), *d_wte = upX(G, wte, (size_t)V * C);
    float *d_logits = poisonX(G, (size_t)N * V);
    G->lm_head_forward(d_logits, d_inp, d_wte, N, C, V);
    check_X(G, "lm_head_forward", d_logits, logits, (size_t)N * V, 1e-2);
    float *dl = rand_host(&r, (size_t)N * V, 1), *dinp = rand_host(&r, (size_t)N * C, 1);
    float *dwte = rand_host(&r, (size_t)V * C, 1);
    float *d_dl = upX(G, dl, (size_t)N * V), *d_dinp = upX(G, dinp, (size_t)N * C);
    float *d_dwte = upF(G, dwte, (size_t)V * C); /* fp32 weight gradient */
    C0->lm_head_backward(dinp, dwte, dl, inp, wte, N, C, V);
    G->lm_head_backward(d_dinp, d_dwte, d_dl, d_inp, d_wte, N, C, V);
    check_X(G, "lm_head_backward dinp", d_dinp, dinp, (size_t)N * C, 2e-2);
    check_F(G, "lm_head_backward dwte", d_dwte, dwte, (size_t)V * C, 1e-4);
}

/* Attention with NH query heads over KVH kv heads of size HS; scale 0 means
 * 1/sqrt(HS). Backward also checks that the op is deterministic: dK, dV of a
 * kv head sum its group's query heads inside one block in a fixed order, and
 * dQ is owned by one block, so a second run from the same start gives the
 * same bits. */
static void attention_case_ds(const Backend *G, Rng *r, int B, int T, int NH, int KVH, int HS,
                              float scale, const int *ds) {
    const Backend *C0 = backend_cpu();
    int *d_ds = NULL; /* packed rows: doc_start (B,T) on the device */
    if (ds) {
        d_ds = G->alloc((size_t)B * T * sizeof(int));
        G->to_device(d_ds, ds, (size_t)B * T * sizeof(int));
    }
    if (scale == 0.0f) scale = 1.0f / sqrtf((float)HS);
    int W = (NH + 2 * KVH) * HS, CQ = NH * HS;
    size_t n_qkv = (size_t)B * T * W, n_out = (size_t)B * T * CQ, n_lse = (size_t)B * NH * T;
    float *qkv = rand_host(r, n_qkv, 1), *out = malloc(n_out * 4), *lse = malloc(n_lse * 4);
    C0->attention_forward(out, lse, qkv, ds, B, T, NH, KVH, HS, scale);
    float *d_qkv = upX(G, qkv, n_qkv), *d_out = poisonX(G, n_out), *d_lse = poisonF(G, n_lse);
    G->attention_forward(d_out, d_lse, d_qkv, d_ds, B, T, NH, KVH, HS, scale);
    char what[128];
    snprintf(what, sizeof what, "attention_forward%s out B=%d T=%d NH=%d KVH=%d HS=%d scale %g",
             ds ? " packed" : "", B, T, NH, KVH, HS, scale);
    check_X(G, what, d_out, out, n_out, 1e-2);
    snprintf(what, sizeof what, "attention_forward%s lse B=%d T=%d NH=%d KVH=%d HS=%d scale %g",
             ds ? " packed" : "", B, T, NH, KVH, HS, scale);
    check_F(G, what, d_lse, lse, n_lse, 1e-3);

    /* backward from the GPU's own forward output, as the model does; the CPU
     * reference uses its own (the two outputs agree to 1e-2 above) */
    float *dout = rand_host(r, n_out, 1);
    float *dqkv = calloc(n_qkv, 4);
    float *d_dout = upX(G, dout, n_out), *d_dqkv = upX(G, dqkv, n_qkv); /* zeroed, as the model */
    C0->attention_backward(dqkv, dout, qkv, out, lse, ds, B, T, NH, KVH, HS, scale);
    G->attention_backward(d_dqkv, d_dout, d_qkv, d_out, d_lse, d_ds, B, T, NH, KVH, HS, scale);
    snprintf(what, sizeof what, "attention_backward%s dqkv B=%d T=%d NH=%d KVH=%d HS=%d scale %g",
             ds ? " packed" : "", B, T, NH, KVH, HS, scale);
    check_X(G, what, d_dqkv, dqkv, n_qkv, 2e-2);
    float *first = downX(G, d_dqkv, n_qkv);
    float *zero = calloc(n_qkv, 4);
    G->upload_f32(d_dqkv, zero, n_qkv);
    G->attention_backward(d_dqkv, d_dout, d_qkv, d_out, d_lse, d_ds, B, T, NH, KVH, HS, scale);
    float *again = downX(G, d_dqkv, n_qkv);
    cr_expect(memcmp(first, again, n_qkv * sizeof(float)) == 0,
              "%s: a second run gives different bits", what);
    free(qkv), free(out), free(lse), free(dout), free(dqkv), free(first), free(zero), free(again);
    G->release(d_qkv), G->release(d_out), G->release(d_lse), G->release(d_dout),
        G->release(d_dqkv);
    if (d_ds) G->release(d_ds);
}

static void attention_case(const Backend *G, Rng *r, int B, int T, int NH, int KVH, int HS,
                           float scale) {
    attention_case_ds(G, r, B, T, NH, KVH, HS, scale, NULL);
}

/* doc_start (B,T) of rows cut into examples of random lengths 1..max_len
 * (the last one cut at T) */
static int *random_doc_starts(Rng *r, int B, int T, int max_len) {
    int *ds = malloc((size_t)B * T * sizeof(int));
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T;) {
            int len = 1 + (int)rng_below(r, (uint64_t)max_len);
            for (int j = t; j < T && j < t + len; j++) ds[(size_t)b * T + j] = t;
            t += len;
        }
    return ds;
}

/* Packed rows (doc_start): examples shorter than a tile, examples crossing
 * tiles, one-token examples, grouped and multi-head, HS 64 and a ragged 40;
 * the same tolerances as causal attention (every row's keys are a
 * contiguous range, as in the causal case, so the sums are of the same kind). */
Test(cuda_ops, attention_packed) {
    NEED_GPU(G);
    Rng r;
    rng_seed(&r, 1906);
    const int shapes[][6] = {/* B, T, NH, KVH, HS, max example length */
                             {2, 256, 4, 4, 64, 40}, {1, 300, 8, 2, 64, 150},
                             {3, 77, 4, 1, 40, 9},   {1, 1024, 12, 12, 64, 400},
                             {2, 200, 4, 2, 128, 1}};
    for (int k = 0; k < 5; k++) {
        const int *s = shapes[k];
        int *ds = random_doc_starts(&r, s[0], s[1], s[5]);
        attention_case_ds(G, &r, s[0], s[1], s[2], s[3], s[4], 0, ds);
        free(ds);
    }
}

/* The embedding and RoPE with positions restarting per example (packed rows):
 * forward and backward against the CPU ops. */
Test(cuda_ops, positions_packed) {
    NEED_GPU(G);
    const Backend *C0 = backend_cpu();
    Rng r;
    rng_seed(&r, 1907);
    int B = 3, T = 130, C = 64, V = 50, maxT = 160, NH = 4, KVH = 2, HS = 64, h = HS / 2;
    size_t N = (size_t)B * T;
    int *ds = random_doc_starts(&r, B, T, 50);
    int *pos = malloc(N * sizeof(int)), *inp = malloc(N * sizeof(int));
    for (size_t i = 0; i < N; i++) {
        pos[i] = (int)(i % T) - ds[i];
        inp[i] = (int)rng_below(&r, V);
    }
    int *d_pos = G->alloc(N * sizeof(int)), *d_inp = G->alloc(N * sizeof(int));
    G->to_device(d_pos, pos, N * sizeof(int));
    G->to_device(d_inp, inp, N * sizeof(int));
    float *wte = rand_host(&r, (size_t)V * C, 1), *wpe = rand_host(&r, (size_t)maxT * C, 1);
    float *out = malloc(N * C * 4);
    C0->encoder_forward(out, inp, wte, wpe, pos, B, T, C);
    float *d_wte = upX(G, wte, (size_t)V * C), *d_wpe = upX(G, wpe, (size_t)maxT * C);
    float *d_out = poisonX(G, N * C);
    G->encoder_forward(d_out, d_inp, d_wte, d_wpe, d_pos, B, T, C);
    check_X(G, "encoder_forward with positions", d_out, out, N * C, 1e-2);
    float *dout = rand_host(&r, N * C, 1), *dwpe = calloc((size_t)maxT * C, 4);
    float *dwte = calloc((size_t)V * C, 4);
    float *d_dout = upX(G, dout, N * C), *d_dwpe = upF(G, dwpe, (size_t)maxT * C);
    float *d_dwte = upF(G, dwte, (size_t)V * C);
    C0->encoder_backward(dwte, dwpe, dout, inp, inp, pos, pos, B, T, C);
    G->encoder_backward(d_dwte, d_dwpe, d_dout, d_inp, inp, d_pos, pos, B, T, C);
    check_F(G, "encoder_backward dwpe by position", d_dwpe, dwpe, (size_t)maxT * C, 1e-4);
    check_F(G, "encoder_backward dwte with positions", d_dwte, dwte, (size_t)V * C, 1e-4);

    int W = (NH + 2 * KVH) * HS;
    float *cs = malloc((size_t)maxT * h * 4), *sn = malloc((size_t)maxT * h * 4);
    for (int p = 0; p < maxT; p++)
        for (int i = 0; i < h; i++) {
            double a = p * pow(10000.0, -2.0 * i / HS);
            cs[p * h + i] = (float)cos(a);
            sn[p * h + i] = (float)sin(a);
        }
    float *d_cs = upF(G, cs, (size_t)maxT * h), *d_sn = upF(G, sn, (size_t)maxT * h);
    float *x = rand_host(&r, N * W, 1);
    float *y = malloc(N * W * 4);
    memcpy(y, x, N * W * 4);
    C0->rope_forward(y, cs, sn, pos, B, T, 0, NH, KVH, HS);
    float *d_x = upX(G, x, N * W);
    G->rope_forward(d_x, d_cs, d_sn, d_pos, B, T, 0, NH, KVH, HS);
    check_X(G, "rope_forward with positions", d_x, y, N * W, 1e-2);
    memcpy(y, x, N * W * 4);
    C0->rope_backward(y, cs, sn, pos, B, T, 0, NH, KVH, HS);
    float *d_y = upX(G, x, N * W);
    G->rope_backward(d_y, d_cs, d_sn, d_pos, B, T, 0, NH, KVH, HS);
    check_X(G, "rope_backward with positions", d_y, y, N * W, 1e-2);
    free(ds), free(pos), free(inp), free(wte), free(wpe), free(out), free(dout), free(dwpe),
        free(dwte), free(cs), free(sn), free(x), free(y);
    G->release(d_pos), G->release(d_inp), G->release(d_wte), G->release(d_wpe), G->release(d_out),
        G->release(d_dout), G->release(d_dwpe), G->release(d_dwte), G->release(d_cs),
        G->release(d_sn), G->release(d_x), G->release(d_y);
}

Test(cuda_ops, attention) {
    NEED_GPU(G);
    Rng r;
    rng_seed(&r, 15);
    attention_case(G, &r, 2, 256, 4, 4, 64, 0);    /* HS 64 */
    attention_case(G, &r, 1, 77, 2, 2, 128, 0);    /* HS 128, T not a tile multiple */
    attention_case(G, &r, 3, 1, 2, 2, 64, 0);      /* T = 1 */
    attention_case(G, &r, 1, 1024, 12, 12, 64, 0); /* GPT-2 124M shape */
}

/* Grouped-query and multi-query attention: KVH = NH/2, NH/4 and 1, head sizes
 * of the Llama families (64, 128) and a ragged one (40: scalar loads, 48-wide
 * zero padding of the 64-wide tiles), tails of T, and scales other than
 * 1/sqrt(HS): 1 (GPT-2 without scale_attn_weights), 1/(2 sqrt(HS)) and
 * 1/(4 sqrt(HS)) (scale_attn_by_inverse_layer_idx at layers 1 and 3). Tolerances as for multi-head:
 * the dK, dV of a group are sums of up to 8 heads' fp32 products, rounded to
 * bf16 once at the end. */
Test(cuda_ops, attention_grouped) {
    NEED_GPU(G);
    Rng r;
    rng_seed(&r, 22);
    attention_case(G, &r, 2, 200, 8, 4, 64, 0);       /* NH/2 */
    attention_case(G, &r, 1, 130, 8, 2, 128, 0.5f / sqrtf(128.0f)); /* NH/4 */
    attention_case(G, &r, 2, 70, 8, 1, 64, 1.0f);     /* multi-query, no scaling */
    attention_case(G, &r, 1, 100, 4, 2, 40, 1.0f / (4.0f * sqrtf(40.0f))); /* HS 40 */
    attention_case(G, &r, 1, 64, 6, 3, 16, 0);        /* one tile, HSP 16 */
    attention_case(G, &r, 1, 512, 32, 8, 128, 0);     /* Llama 3 8B heads: 32 over 8 */
}

/* Decoding attention: N new tokens, token i in cache slot slot[i] at
 * position pos[i] of a maxT cache, the rest of the cache random (never
 * zeros). Tolerance 1e-2 relative L2, as for the
 * other bf16 forward ops: both sides read the same bf16 values, both
 * accumulate in fp32 or better (in different orders: relative errors under
 * 1e-4 even over 20,000 keys), so what remains is the one bf16 rounding of the
 * output (at most 2^-9 = 0.2% per element). Dropping or double-counting one
 * 256-key split of a 20,000-key softmax moves the output by about 10% (the
 * output is a weighted mean of random v rows: changing 1/78 of its terms
 * changes it by about sqrt(1/78)), so a split or rescale mistake cannot hide
 * under 1e-2. The caches are only copied (bf16 in, bf16 out): compared
 * exactly, every slot (so a store into the wrong slot or position shows).
 * Runs the op twice and asks for the same bits (the CUDA op has no atomics and
 * sums in fixed orders). */
static void attention_decode_slots_case(const Backend *G, Rng *r, const char *label, int N,
                                        int slots, const int *slot, const int *pos, int NH,
                                        int KVH, int HS, int maxT, float qkv_scale,
                                        float scale) {
    const Backend *C0 = backend_cpu();
    if (scale == 0.0f) scale = 1.0f / sqrtf((float)HS);
    int W = (NH + 2 * KVH) * HS, CQ = NH * HS;
    size_t n_cache = (size_t)slots * KVH * maxT * HS, n_qkv = (size_t)N * W;
    size_t n_out = (size_t)N * CQ;
    float *kc = rand_host(r, n_cache, 1), *vc = rand_host(r, n_cache, 1);
    float *qkv = rand_host(r, n_qkv, qkv_scale), *out = malloc(n_out * 4);
    float *d_kc = upX(G, kc, n_cache), *d_vc = upX(G, vc, n_cache), *d_qkv = upX(G, qkv, n_qkv);
    float *d_out = poisonX(G, n_out);
    int *d_slot = G->alloc(N * sizeof(int)), *d_pos = G->alloc(N * sizeof(int));
    cr_assert(d_slot && d_pos, "%s", err_msg());
    G->to_device(d_slot, slot, N * sizeof(int));
    G->to_device(d_pos, pos, N * sizeof(int));
    C0->attention_decode(out, kc, vc, qkv, slot, pos, N, NH, KVH, HS, maxT, scale);
    G->attention_decode(d_out, d_kc, d_vc, d_qkv, d_slot, d_pos, N, NH, KVH, HS, maxT, scale);
    char what[200];
    snprintf(what, sizeof what,
             "attention_decode out %s N=%d slots=%d NH=%d KVH=%d HS=%d maxT=%d scale %g", label,
             N, slots, NH, KVH, HS, maxT, scale);
    check_X(G, what, d_out, out, n_out, 1e-2);
    float *kc_gpu = downX(G, d_kc, n_cache), *vc_gpu = downX(G, d_vc, n_cache);
    for (size_t i = 0; i < n_cache; i++) {
        cr_assert(kc_gpu[i] == kc[i], "%s: k cache element %zu is %g, expected %g", what, i,
                  kc_gpu[i], kc[i]);
        cr_assert(vc_gpu[i] == vc[i], "%s: v cache element %zu is %g, expected %g", what, i,
                  vc_gpu[i], vc[i]);
    }
    float *first = downX(G, d_out, n_out);
    G->attention_decode(d_out, d_kc, d_vc, d_qkv, d_slot, d_pos, N, NH, KVH, HS, maxT, scale);
    float *again = downX(G, d_out, n_out);
    cr_expect(memcmp(first, again, n_out * sizeof(float)) == 0,
              "%s: a second run gives different bits", what);
    free(kc), free(vc), free(qkv), free(out), free(kc_gpu), free(vc_gpu), free(first), free(again);
    G->release(d_kc), G->release(d_vc), G->release(d_qkv), G->release(d_out);
    G->release(d_slot), G->release(d_pos);
}

/* B slots each decoding n tokens at positions pos .. pos+n-1 (token b n + i
 * in slot b at pos + i), the shape of batched generation. */
static void attention_decode_case(const Backend *G, Rng *r, int B, int n, int pos, int NH,
                                  int KVH, int HS, int maxT, float qkv_scale, float scale) {
    int N = B * n;
    int *slot = malloc(N * sizeof(int)), *tpos = malloc(N * sizeof(int));
    for (int b = 0; b < B; b++)
        for (int i = 0; i < n; i++) slot[b * n + i] = b, tpos[b * n + i] = pos + i;
    char label[64];
    snprintf(label, sizeof label, "B=%d n=%d pos=%d", B, n, pos);
    attention_decode_slots_case(G, r, label, N, B, slot, tpos, NH, KVH, HS, maxT, qkv_scale,
                                scale);
    free(slot), free(tpos);
}

Test(cuda_ops, attention_decode) {
    NEED_GPU(G);
    Rng r;
    rng_seed(&r, 21);
    /* short context, one block per query (no split), HS 64 */
    attention_decode_case(G, &r, 2, 3, 37, 4, 4, 64, 64, 1, 0);
    /* prefill-like: B NH n = 1024 queries, no split, up to 628 keys: many
     * online-softmax steps per block */
    attention_decode_case(G, &r, 2, 128, 500, 4, 4, 64, 700, 1, 0);
    /* beyond the old 12,256-token limit: split over ~79 blocks per query and
     * merged; larger q makes the softmax peaked, so no key is negligible by
     * accident of a flat average */
    attention_decode_case(G, &r, 1, 4, 19996, 2, 2, 64, 20000, 4, 0);
    /* head sizes: not a multiple of 8 (scalar path), split and unsplit */
    attention_decode_case(G, &r, 1, 2, 3000, 2, 2, 36, 3100, 2, 0);
    attention_decode_case(G, &r, 2, 5, 90, 4, 4, 25, 100, 2, 0);
    /* the smallest lane group, and the largest head size the op accepts */
    attention_decode_case(G, &r, 1, 3, 1000, 2, 2, 8, 1024, 2, 0);
    attention_decode_case(G, &r, 1, 2, 1500, 2, 2, 256, 2048, 1, 0);
    attention_decode_case(G, &r, 1, 1, 0, 1, 1, 200, 8, 1, 0); /* HS 200, pos 0: one key */
}

/* Tokens of different slots at different positions in one call, as continuous
 * batching decodes them: slots interleaved, a slot left untouched (its cache
 * must come back unchanged), and positions far apart, so that with the split
 * grid cut for maxT one token uses many splits, another only split 0 (written
 * directly, its combine skipped) and the rest of its splits are dead. */
Test(cuda_ops, attention_decode_mixed_slots) {
    NEED_GPU(G);
    Rng r;
    rng_seed(&r, 24);
    /* 3 tokens in 2 slots: slot 1 at 5000 (~20 splits), slot 0 at 7 and 8 */
    const int slot_a[] = {0, 1, 0}, pos_a[] = {7, 5000, 8};
    attention_decode_slots_case(G, &r, "slots {0,1,0} pos {7,5000,8}", 3, 2, slot_a, pos_a, 4,
                                4, 64, 8192, 2, 0);
    /* short cache, no split; slot 1 unused; one token at position 0 */
    const int slot_b[] = {2, 0, 2, 0}, pos_b[] = {0, 40, 1, 41};
    attention_decode_slots_case(G, &r, "slots {2,0,2,0} pos {0,40,1,41}", 4, 3, slot_b, pos_b,
                                4, 2, 64, 64, 1, 0);
    /* grouped, scalar path (HS 36), split: the last position and a middle one */
    const int slot_c[] = {1, 0}, pos_c[] = {2999, 1234};
    attention_decode_slots_case(G, &r, "slots {1,0} pos {2999,1234}", 2, 2, slot_c, pos_c, 8,
                                2, 36, 3000, 2, 0);
}

/* Grouped-query decoding: the cache holds KVH heads, query head h reads kv
 * head h / (NH/KVH). KVH = NH/2, NH/4 and 1, split (long context, one token)
 * and unsplit (prefill), the vector and scalar paths, and explicit scales
 * (1: GPT-2 without scale_attn_weights; 1/(3 sqrt(HS)): inverse layer index).
 * Tolerance and determinism as above. */
Test(cuda_ops, attention_decode_grouped) {
    NEED_GPU(G);
    Rng r;
    rng_seed(&r, 23);
    attention_decode_case(G, &r, 1, 1, 4000, 32, 8, 128, 4096, 2, 0);  /* Llama 3 8B */
    attention_decode_case(G, &r, 2, 64, 300, 8, 4, 64, 400, 1, 1.0f); /* prefill, NH/2 */
    attention_decode_case(G, &r, 1, 2, 9000, 8, 1, 64, 9100, 2, 0);   /* MQA, split */
    /* HS 36: the scalar path */
    attention_decode_case(G, &r, 2, 3, 600, 8, 2, 36, 700, 2, 1.0f / (3.0f * sqrtf(36.0f)));
    attention_decode_case(G, &r, 1, 1, 0, 4, 1, 256, 4, 1, 0);        /* one key, HS 256 */
}

Test(cuda_ops, gelu_residual) {
    NEED_GPU(G);
    const Backend *C0 = backend_cpu();
    Rng r;
    rng_seed(&r, 16);
    size_t sizes[] = {4096, 1001, 8};
    for (int s = 0; s < 3; s++) {
        size_t n = sizes[s];
        float *x = rand_host(&r, n, 4), *y = malloc(n * 4), *a = rand_host(&r, n, 1);
        C0->gelu_forward(y, x, n);
        float *d_x = upX(G, x, n), *d_y = poisonX(G, n);
        G->gelu_forward(d_y, d_x, n);
        check_X(G, "gelu_forward", d_y, y, n, 1e-2);
        float *dout = rand_host(&r, n, 1), *dinp = rand_host(&r, n, 1);
        float *d_dout = upX(G, dout, n), *d_dinp = upX(G, dinp, n);
        C0->gelu_backward(dinp, x, dout, n);
        G->gelu_backward(d_dinp, d_x, d_dout, n);
        check_X(G, "gelu_backward", d_dinp, dinp, n, 2e-2);
        float *sum = malloc(n * 4), *d_a = upX(G, a, n), *d_sum = poisonX(G, n);
        C0->residual_forward(sum, x, a, n);
        G->residual_forward(d_sum, d_x, d_a, n);
        check_X(G, "residual_forward", d_sum, sum, n, 1e-2);
    }
}

Test(cuda_ops, classifier) {
    NEED_GPU(G);
    const Backend *C0 = backend_cpu();
    Rng r;
    rng_seed(&r, 17);
    int N = 33, V = 50257; /* odd V: the vector tail */
    /* unpadded rows, then rows padded to 50304 as the model lays them out: the
     * padded columns hold random values that must not enter any statistic,
     * and backward must zero them (compared with the CPU's zeros) */
    const int strides[2] = {V, 50304};
    for (int s = 0; s < 2; s++) {
        int Vp = strides[s];
        size_t NV = (size_t)N * Vp;
        float *logits = rand_host(&r, NV, 4);
        int *targets = malloc(N * sizeof(int));
        float *g = malloc(N * 4);
        for (int i = 0; i < N; i++) {
            targets[i] = i % 5 == 4 ? -1 : (int)rng_below(&r, V);
            g[i] = targets[i] < 0 ? 0.0f : (float)(rng_uniform(&r) - 0.5);
        }
        targets[0] = V - 1; /* the last real column */
        float *logp = malloc(N * 4), *lse = malloc(N * 4);
        C0->classifier_forward(logp, lse, logits, targets, N, V, Vp);
        float *d_logits = upX(G, logits, NV), *d_logp = poisonF(G, N), *d_lse = poisonF(G, N);
        int *d_t = G->alloc(N * sizeof(int));
        G->to_device(d_t, targets, N * sizeof(int));
        G->classifier_forward(d_logp, d_lse, d_logits, d_t, N, V, Vp);
        check_F(G, "classifier lse", d_lse, lse, N, 1e-4);
        check_F(G, "classifier logp", d_logp, logp, N, 1e-4);
        float *d_g = upF(G, g, N);
        C0->classifier_backward(logits, lse, targets, g, N, V, Vp);
        G->classifier_backward(d_logits, d_lse, d_t, d_g, N, V, Vp);
        check_X(G, "classifier dlogits", d_logits, logits, NV, 2e-2);
    }
}

/* Knowledge distillation, online and top-K, against the CPU twins on the same
 * bf16-exact inputs: kd is an fp32 side output (1e-4), agree is exact (argmax
 * of identical values, ties to the lowest index on both sides), dlogits is a
 * bf16 gradient (2e-2). beta 0.25 as well as 0.5: 0.5 cannot tell beta from
 * 1 - beta. */
Test(cuda_ops, classifier_kd) {
    NEED_GPU(G);
    const Backend *C0 = backend_cpu();
    Rng r;
    rng_seed(&r, 23);
    int N = 33, V = 50257, K = 20; /* odd V */
    size_t NV = (size_t)N * V;
    float *logits = rand_host(&r, NV, 4), *teacher = rand_host(&r, NV, 4);
    for (size_t i = 0; i < NV; i++) teacher[i] = bf16_round(0.5f * teacher[i] + logits[i]);
    int *targets = malloc(N * sizeof(int));
    float *g = malloc(N * 4), *w = malloc(N * 4);
    for (int i = 0; i < N; i++) {
        targets[i] = i % 5 == 4 ? -1 : (int)rng_below(&r, V);
        g[i] = targets[i] < 0 ? 0.0f : (float)(rng_uniform(&r) - 0.5);
        w[i] = i % 7 == 3 ? 0.0f : (float)(0.2 + rng_uniform(&r));
    }
    g[2] = 0.0f; /* KD only */
    /* teacher top-K: K distinct random ids per row (id V-1 in row 0), log-probs of
     * the teacher row in double */
    int *ids = malloc((size_t)N * K * sizeof(int));
    float *lp = malloc((size_t)N * K * 4);
    for (int i = 0; i < N; i++) {
        const float *zt = teacher + (size_t)i * V;
        double mx = -INFINITY, sum = 0.0;
        for (int j = 0; j < V; j++) mx = zt[j] > mx ? zt[j] : mx;
        for (int j = 0; j < V; j++) sum += exp(zt[j] - mx);
        for (int k = 0; k < K; k++) {
            int id, dup;
            do {
                id = i == 0 && k == 0 ? V - 1 : (int)rng_below(&r, V);
                dup = 0;
                for (int m = 0; m < k; m++) dup |= ids[(size_t)i * K + m] == id;
            } while (dup);
            ids[(size_t)i * K + k] = id;
            lp[(size_t)i * K + k] = (float)(zt[id] - mx - log(sum));
        }
    }
    float *logp = malloc(N * 4), *lse = malloc(N * 4), *kd = malloc(N * 4), *agree = malloc(N * 4);
    C0->classifier_forward(logp, lse, logits, targets, N, V, V);
    float *d_logits = upX(G, logits, NV), *d_teacher = upX(G, teacher, NV);
    float *d_lse = upF(G, lse, N), *d_g = upF(G, g, N), *d_w = upF(G, w, N);
    float *d_lp = upF(G, lp, (size_t)N * K);
    int *d_t = G->alloc(N * sizeof(int)), *d_ids = G->alloc((size_t)N * K * sizeof(int));
    G->to_device(d_t, targets, N * sizeof(int));
    G->to_device(d_ids, ids, (size_t)N * K * sizeof(int));
    float *d_kd = poisonF(G, N), *d_agree = poisonF(G, N);
    float *dl = malloc(NV * 4);
    const float betas[4] = {0.0f, 0.5f, 1.0f, 0.25f}, temps[3] = {1.0f, 2.0f, 0.5f};
    char what[96];
    for (int b = 0; b < 4; b++)
        for (int tt = 0; tt < 3; tt++)
            for (int topk = 0; topk < 2; topk++) {
                float beta = betas[b], temperature = temps[tt];
                const char *kind = topk ? "top-K" : "online";
                if (topk) {
                    C0->classifier_kd_topk_forward(kd, agree, logits, ids, lp, targets, N, V, V, K,
                                                   temperature, beta);
                    G->classifier_kd_topk_forward(d_kd, d_agree, d_logits, d_ids, d_lp, d_t, N, V, V,
                                                  K, temperature, beta);
                } else {
                    C0->classifier_kd_forward(kd, agree, logits, teacher, targets, N, V, V,
                                              temperature, beta);
                    G->classifier_kd_forward(d_kd, d_agree, d_logits, d_teacher, d_t, N, V, V,
                                             temperature, beta);
                }
                snprintf(what, sizeof what, "%s kd beta %g temperature %g", kind, beta,
                         temperature);
                check_F(G, what, d_kd, kd, N, 1e-4);
                float *ag = downF(G, d_agree, N);
                for (int i = 0; i < N; i++)
                    cr_expect_eq(ag[i], agree[i], "%s agree row %d: gpu %g cpu %g", kind, i,
                                 ag[i], agree[i]);
                free(ag);

                memcpy(dl, logits, NV * 4);
                float *d_dl = upX(G, logits, NV);
                if (topk) {
                    C0->classifier_kd_topk_backward(dl, lse, targets, g, ids, lp, w, N, V, V, K,
                                                    temperature, beta);
                    G->classifier_kd_topk_backward(d_dl, d_lse, d_t, d_g, d_ids, d_lp, d_w, N, V, V,
                                                   K, temperature, beta);
                } else {
                    C0->classifier_kd_backward(dl, lse, targets, g, teacher, w, N, V, V,
                                               temperature, beta);
                    G->classifier_kd_backward(d_dl, d_lse, d_t, d_g, d_teacher, d_w, N, V, V,
                                              temperature, beta);
                }
                snprintf(what, sizeof what, "%s dlogits beta %g temperature %g", kind, beta,
                         temperature);
                check_X(G, what, d_dl, dl, NV, 2e-2);
                G->release(d_dl);
            }
    /* w NULL is classifier_backward on the GPU too */
    memcpy(dl, logits, NV * 4);
    C0->classifier_backward(dl, lse, targets, g, N, V, V);
    float *d_dl = upX(G, logits, NV);
    G->classifier_kd_backward(d_dl, d_lse, d_t, d_g, d_teacher, NULL, N, V, V, 2.0f, 0.5f);
    check_X(G, "kd dlogits, w NULL", d_dl, dl, NV, 2e-2);
    G->release(d_dl);
    free(logits), free(teacher), free(targets), free(g), free(w), free(ids), free(lp);
    free(logp), free(lse), free(kd), free(agree), free(dl);
}

Test(cuda_ops, adamw_and_reductions) {
    NEED_GPU(G);
    const Backend *C0 = backend_cpu();
    Rng r;
    rng_seed(&r, 18);
    size_t n = 100003;
    float *p = rand_host(&r, n, 1), *m = calloc(n, 4), *v = calloc(n, 4);
    float *d_p = upX(G, p, n), *d_master = upF(G, p, n), *d_m = upF(G, m, n), *d_v = upF(G, v, n);
    for (int step = 1; step <= 3; step++) {
        float *grad = malloc(n * 4); /* fp32 gradients, not bf16-exact */
        fill_uniform(&r, grad, n, 1);
        float *d_grad = upF(G, grad, n);
        C0->adamw_update(p, NULL, grad, m, v, n, 1e-2, 0.9, 0.95, 1e-8, 0.1, step);
        G->adamw_update(d_p, d_master, d_grad, d_m, d_v, n, 1e-2, 0.9, 0.95, 1e-8, 0.1, step);
        G->release(d_grad);
        free(grad);
    }
    /* the same operations in the same order with one rounding each on both
     * sides (kernels/cuda/adamw.cu): the fp32 state is bit-identical, and the
     * bf16 parameters are the rounding of the CPU's fp32 ones */
    float *h_master = downF(G, d_master, n), *h_m = downF(G, d_m, n), *h_v = downF(G, d_v, n);
    float *h_p = downX(G, d_p, n);
    for (size_t i = 0; i < n; i++) {
        cr_assert(memcmp(&h_master[i], &p[i], 4) == 0, "adamw master[%zu]: gpu %.9g cpu %.9g", i,
                  h_master[i], p[i]);
        cr_assert(memcmp(&h_m[i], &m[i], 4) == 0, "adamw m[%zu]: gpu %.9g cpu %.9g", i, h_m[i],
                  m[i]);
        cr_assert(memcmp(&h_v[i], &v[i], 4) == 0, "adamw v[%zu]: gpu %.9g cpu %.9g", i, h_v[i],
                  v[i]);
        cr_assert(h_p[i] == bf16_round(p[i]), "adamw bf16 param[%zu]: gpu %.9g, want %.9g", i,
                  h_p[i], bf16_round(p[i]));
    }
    free(h_master), free(h_m), free(h_v), free(h_p);

    /* the reductions of clipping work on fp32 gradients */
    float *x = malloc(n * 4);
    fill_uniform(&r, x, n, 2);
    double ss_cpu = C0->sum_squares(x, n);
    float *d_x = upF(G, x, n);
    double ss_gpu = G->sum_squares(d_x, n);
    cr_expect(fabs(ss_gpu - ss_cpu) <= 1e-12 * ss_cpu, "sum_squares %.17g vs %.17g", ss_gpu,
              ss_cpu);
    double ss_tail = G->sum_squares(d_x + 1, n - 1); /* not 16-byte aligned: the scalar path */
    double want_tail = C0->sum_squares(x + 1, n - 1);
    cr_expect(fabs(ss_tail - want_tail) <= 1e-12 * want_tail, "sum_squares unaligned %.17g vs "
              "%.17g", ss_tail, want_tail);
    C0->scale_inplace(x, 0.37f, n);
    G->scale_inplace(d_x, 0.37f, n);
    float *h_x = downF(G, d_x, n);
    cr_expect(memcmp(h_x, x, n * 4) == 0, "scale_inplace: fp32 x * s differs from the CPU's");
    free(h_x);
    /* scale_act: the compute type (the LoRA scale on activations) */
    float *y = rand_host(&r, n, 2);
    float *d_y = upX(G, y, n);
    C0->scale_act(y, 0.37f, n);
    G->scale_act(d_y, 0.37f, n);
    check_X(G, "scale_act", d_y, y, n, 1e-2);
    free(x), free(y), free(p), free(m), free(v);
    G->release(d_x), G->release(d_y), G->release(d_p), G->release(d_master), G->release(d_m);
    G->release(d_v);
}

/* ------------------------------------------------- Llama-family ops
 * Same method and tolerances as above: bf16 forward outputs 1e-2, bf16
 * gradients 2e-2, fp32 weight gradients and side outputs (rstd) 1e-4. Shapes
 * take both the 16-byte vector paths (widths % 8 == 0, aligned) and the scalar
 * ones. Copies (v heads of qk_norm, rope's v heads, cols_copy, the embedding
 * without positions) move bf16 values unchanged: compared exactly. */

/* The compute-type handle k elements past p (handles are offset in bytes of act_size). */
static float *offX(const Backend *b, float *p, size_t k) {
    return (float *)((char *)p + k * b->act_size);
}

static void expect_same(const char *what, const float *gpu, const float *cpu, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (memcmp(&gpu[i], &cpu[i], sizeof(float)) != 0)
            cr_assert(0, "%s: element %zu is %.9g, want exactly %.9g", what, i, gpu[i], cpu[i]);
}

Test(cuda_ops, rmsnorm) {
    NEED_GPU(G);
    const Backend *C0 = backend_cpu();
    Rng r;
    rng_seed(&r, 21);
    int shapes[][2] = {{64, 768}, {7, 100}, {300, 4096}, {1, 8}};
    for (int s = 0; s < 4; s++) {
        int N = shapes[s][0], C = shapes[s][1];
        size_t NC = (size_t)N * C;
        float *inp = rand_host(&r, NC, 3), *w = rand_host(&r, C, 1);
        float *out = malloc(NC * 4), *rstd = malloc(N * 4);
        C0->rmsnorm_forward(out, rstd, inp, w, N, C, 1e-6f);
        float *d_inp = upX(G, inp, NC), *d_w = upX(G, w, C);
        float *d_out = poisonX(G, NC), *d_rstd = poisonF(G, N);
        G->rmsnorm_forward(d_out, d_rstd, d_inp, d_w, N, C, 1e-6f);
        char what[64];
        snprintf(what, sizeof what, "rmsnorm out N=%d C=%d", N, C);
        check_X(G, what, d_out, out, NC, 1e-2);
        snprintf(what, sizeof what, "rmsnorm rstd N=%d C=%d", N, C);
        check_F(G, what, d_rstd, rstd, N, 1e-4);

        float *dout = rand_host(&r, NC, 1), *dinp = rand_host(&r, NC, 1), *dw = rand_host(&r, C, 1);
        float *d_dout = upX(G, dout, NC), *d_dinp = upX(G, dinp, NC), *d_dw = upF(G, dw, C);
        C0->rmsnorm_backward(dinp, dw, dout, inp, w, rstd, N, C);
        G->rmsnorm_backward(d_dinp, d_dw, d_dout, d_inp, d_w, d_rstd, N, C);
        snprintf(what, sizeof what, "rmsnorm dinp N=%d C=%d", N, C);
        check_X(G, what, d_dinp, dinp, NC, 2e-2);
        snprintf(what, sizeof what, "rmsnorm dweight N=%d C=%d", N, C);
        check_F(G, what, d_dw, dw, C, 1e-4);
        free(inp), free(w), free(out), free(rstd), free(dout), free(dinp), free(dw);
        G->release(d_inp), G->release(d_w), G->release(d_out), G->release(d_rstd);
        G->release(d_dout), G->release(d_dinp), G->release(d_dw);
    }
}

static void qk_norm_case(const Backend *G, Rng *r, int N, int NH, int KVH, int HS) {
    const Backend *C0 = backend_cpu();
    int W = (NH + 2 * KVH) * HS, R = NH + KVH;
    size_t n = (size_t)N * W;
    float *inp = rand_host(r, n, 3), *wq = rand_host(r, HS, 1), *wk = rand_host(r, HS, 1);
    float *out = malloc(n * 4), *rstd = malloc((size_t)N * R * 4);
    C0->qk_norm_forward(out, rstd, inp, wq, wk, N, NH, KVH, HS, 1e-6f);
    float *d_inp = upX(G, inp, n), *d_wq = upX(G, wq, HS), *d_wk = upX(G, wk, HS);
    float *d_out = poisonX(G, n), *d_rstd = poisonF(G, (size_t)N * R);
    G->qk_norm_forward(d_out, d_rstd, d_inp, d_wq, d_wk, N, NH, KVH, HS, 1e-6f);
    char what[96];
    snprintf(what, sizeof what, "qk_norm out N=%d NH=%d KVH=%d HS=%d", N, NH, KVH, HS);
    check_X(G, what, d_out, out, n, 1e-2);
    float *h = downX(G, d_out, n); /* the v heads: copied bit for bit */
    for (int i = 0; i < N; i++)
        expect_same("qk_norm v heads", h + (size_t)i * W + R * HS, inp + (size_t)i * W + R * HS,
                    (size_t)KVH * HS);
    free(h);
    snprintf(what, sizeof what, "qk_norm rstd N=%d NH=%d KVH=%d HS=%d", N, NH, KVH, HS);
    check_F(G, what, d_rstd, rstd, (size_t)N * R, 1e-4);

    float *dout = rand_host(r, n, 1), *dinp = rand_host(r, n, 1);
    float *dwq = rand_host(r, HS, 1), *dwk = rand_host(r, HS, 1);
    float *d_dout = upX(G, dout, n), *d_dinp = upX(G, dinp, n);
    float *d_dwq = upF(G, dwq, HS), *d_dwk = upF(G, dwk, HS);
    C0->qk_norm_backward(dinp, dwq, dwk, dout, inp, wq, wk, rstd, N, NH, KVH, HS);
    G->qk_norm_backward(d_dinp, d_dwq, d_dwk, d_dout, d_inp, d_wq, d_wk, d_rstd, N, NH, KVH, HS);
    snprintf(what, sizeof what, "qk_norm dinp N=%d NH=%d KVH=%d HS=%d", N, NH, KVH, HS);
    check_X(G, what, d_dinp, dinp, n, 2e-2);
    snprintf(what, sizeof what, "qk_norm dwq N=%d NH=%d KVH=%d HS=%d", N, NH, KVH, HS);
    check_F(G, what, d_dwq, dwq, HS, 1e-4);
    snprintf(what, sizeof what, "qk_norm dwk N=%d NH=%d KVH=%d HS=%d", N, NH, KVH, HS);
    check_F(G, what, d_dwk, dwk, HS, 1e-4);
    free(inp), free(wq), free(wk), free(out), free(rstd), free(dout), free(dinp), free(dwq),
        free(dwk);
    G->release(d_inp), G->release(d_wq), G->release(d_wk), G->release(d_out);
    G->release(d_rstd), G->release(d_dout), G->release(d_dinp), G->release(d_dwq);
    G->release(d_dwk);
}

Test(cuda_ops, qk_norm) {
    NEED_GPU(G);
    Rng r;
    rng_seed(&r, 22);
    qk_norm_case(G, &r, 256, 16, 8, 128); /* Qwen3-0.6B's heads */
    qk_norm_case(G, &r, 37, 4, 1, 12);    /* HS 12: the scalar path */
    qk_norm_case(G, &r, 5, 2, 2, 256);
}

static void rope_case(const Backend *G, Rng *r, int B, int T, int pos0, int NH, int KVH, int HS) {
    const Backend *C0 = backend_cpu();
    int W = (NH + 2 * KVH) * HS, h = HS / 2, maxT = pos0 + T + 5;
    size_t n = (size_t)B * T * W, nt = (size_t)maxT * h;
    float *cos_tab = malloc(nt * 4), *sin_tab = malloc(nt * 4);
    for (int p = 0; p < maxT; p++)
        for (int i = 0; i < h; i++) {
            double a = p * pow(10000.0, -2.0 * i / HS);
            cos_tab[(size_t)p * h + i] = (float)cos(a);
            sin_tab[(size_t)p * h + i] = (float)sin(a);
        }
    float *x = rand_host(r, n, 2), *y = malloc(n * 4);
    memcpy(y, x, n * 4);
    C0->rope_forward(y, cos_tab, sin_tab, NULL, B, T, pos0, NH, KVH, HS);
    float *d_cos = upF(G, cos_tab, nt), *d_sin = upF(G, sin_tab, nt), *d_x = upX(G, x, n);
    G->rope_forward(d_x, d_cos, d_sin, NULL, B, T, pos0, NH, KVH, HS);
    char what[96];
    snprintf(what, sizeof what, "rope_forward B=%d T=%d pos0=%d HS=%d", B, T, pos0, HS);
    check_X(G, what, d_x, y, n, 1e-2);
    float *got = downX(G, d_x, n); /* v heads untouched */
    for (size_t bt = 0; bt < (size_t)B * T; bt++)
        expect_same("rope_forward v heads", got + bt * W + (NH + KVH) * HS,
                    x + bt * W + (NH + KVH) * HS, (size_t)KVH * HS);
    free(got);

    float *dy = rand_host(r, n, 1), *dx = malloc(n * 4);
    memcpy(dx, dy, n * 4);
    C0->rope_backward(dx, cos_tab, sin_tab, NULL, B, T, pos0, NH, KVH, HS);
    float *d_dy = upX(G, dy, n);
    G->rope_backward(d_dy, d_cos, d_sin, NULL, B, T, pos0, NH, KVH, HS);
    snprintf(what, sizeof what, "rope_backward B=%d T=%d pos0=%d HS=%d", B, T, pos0, HS);
    check_X(G, what, d_dy, dx, n, 1e-2);
    free(cos_tab), free(sin_tab), free(x), free(y), free(dy), free(dx);
    G->release(d_cos), G->release(d_sin), G->release(d_x), G->release(d_dy);
}

Test(cuda_ops, rope) {
    NEED_GPU(G);
    Rng r;
    rng_seed(&r, 23);
    rope_case(G, &r, 2, 256, 0, 32, 8, 128); /* Llama-3-8B's heads */
    rope_case(G, &r, 3, 17, 5, 4, 2, 12);    /* h = 6: the scalar path */
    rope_case(G, &r, 4, 1, 999, 8, 8, 64);   /* one decoding step far in */
}

Test(cuda_ops, swiglu) {
    NEED_GPU(G);
    const Backend *C0 = backend_cpu();
    Rng r;
    rng_seed(&r, 24);
    int shapes[][2] = {{64, 1024}, {9, 37}, {1, 8}};
    for (int s = 0; s < 3; s++) {
        int N = shapes[s][0], I = shapes[s][1];
        size_t n_in = (size_t)N * 2 * I, n_out = (size_t)N * I;
        float *inp = rand_host(&r, n_in, 6), *out = malloc(n_out * 4);
        C0->swiglu_forward(out, inp, N, I);
        float *d_inp = upX(G, inp, n_in), *d_out = poisonX(G, n_out);
        G->swiglu_forward(d_out, d_inp, N, I);
        char what[64];
        snprintf(what, sizeof what, "swiglu_forward N=%d I=%d", N, I);
        check_X(G, what, d_out, out, n_out, 1e-2);
        float *dout = rand_host(&r, n_out, 1), *dinp = rand_host(&r, n_in, 1);
        float *d_dout = upX(G, dout, n_out), *d_dinp = upX(G, dinp, n_in);
        C0->swiglu_backward(dinp, dout, inp, N, I);
        G->swiglu_backward(d_dinp, d_dout, d_inp, N, I);
        snprintf(what, sizeof what, "swiglu_backward N=%d I=%d", N, I);
        check_X(G, what, d_dinp, dinp, n_in, 2e-2);
        free(inp), free(out), free(dout), free(dinp);
        G->release(d_inp), G->release(d_out), G->release(d_dout), G->release(d_dinp);
    }
}

static void matmul_nt_case(const Backend *G, Rng *r, int N, int C, int OC, int with_bias) {
    const Backend *C0 = backend_cpu();
    float *inp = rand_host(r, (size_t)N * C, 1), *w = rand_host(r, (size_t)OC * C, 0.1f);
    float *b = with_bias ? rand_host(r, OC, 1) : NULL;
    float *out = malloc((size_t)N * OC * 4);
    C0->matmul_nt_forward(out, inp, w, b, N, C, OC);
    float *d_inp = upX(G, inp, (size_t)N * C), *d_w = upX(G, w, (size_t)OC * C);
    float *d_b = b ? upX(G, b, OC) : NULL, *d_out = poisonX(G, (size_t)N * OC);
    G->matmul_nt_forward(d_out, d_inp, d_w, d_b, N, C, OC);
    check_X(G, "matmul_nt_forward", d_out, out, (size_t)N * OC, 1e-2);

    float *dout = rand_host(r, (size_t)N * OC, 1), *dinp = rand_host(r, (size_t)N * C, 1);
    float *dw = rand_host(r, (size_t)OC * C, 1), *db = rand_host(r, OC, 1);
    float *d_dout = upX(G, dout, (size_t)N * OC), *d_dinp = upX(G, dinp, (size_t)N * C);
    float *d_dw = upF(G, dw, (size_t)OC * C), *d_db = upF(G, db, OC); /* fp32 */
    C0->matmul_nt_backward(dinp, dw, with_bias ? db : NULL, dout, inp, w, N, C, OC);
    G->matmul_nt_backward(d_dinp, d_dw, with_bias ? d_db : NULL, d_dout, d_inp, d_w, N, C, OC);
    check_X(G, "matmul_nt_backward dinp", d_dinp, dinp, (size_t)N * C, 2e-2);
    check_F(G, "matmul_nt_backward dweight", d_dw, dw, (size_t)OC * C, 1e-4);
    if (with_bias) check_F(G, "matmul_nt_backward dbias", d_db, db, OC, 1e-4);
    free(inp), free(w), free(b), free(out), free(dout), free(dinp), free(dw), free(db);
    G->release(d_inp), G->release(d_w), G->release(d_out), G->release(d_dout);
    G->release(d_dinp), G->release(d_dw), G->release(d_db);
    if (d_b) G->release(d_b);
}

Test(cuda_ops, matmul_nt) {
    NEED_GPU(G);
    Rng r;
    rng_seed(&r, 25);
    matmul_nt_case(G, &r, 256, 576, 960, 1); /* SmolLM-135M's q|k|v with Qwen2 biases */
    matmul_nt_case(G, &r, 37, 100, 300, 0);
    matmul_nt_case(G, &r, 64, 1536, 576, 0); /* down_proj */
    /* N == 0 touches nothing; C == 0 writes the bias (an empty sum) */
    const Backend *C0 = backend_cpu();
    int N = 5, OC = 40;
    float *b = rand_host(&r, OC, 1), *dout = rand_host(&r, (size_t)N * OC, 1);
    float *db = rand_host(&r, OC, 1);
    float *d_b = upX(G, b, OC), *d_db = upF(G, db, OC), *d_dout = upX(G, dout, (size_t)N * OC);
    float *d_out = poisonX(G, (size_t)N * OC);
    G->matmul_nt_forward(d_out, d_dout, d_b, d_b, 0, 8, OC);
    G->matmul_nt_backward(NULL, NULL, d_db, d_dout, d_dout, d_b, 0, 8, OC);
    float *h = downF(G, d_db, OC);
    cr_expect(memcmp(h, db, OC * 4) == 0, "matmul_nt_backward with N = 0 changed dbias");
    free(h);
    G->matmul_nt_backward(NULL, NULL, d_db, d_dout, d_dout, d_b, N, 0, OC);
    C0->matmul_nt_backward(NULL, NULL, db, dout, dout, b, N, 0, OC);
    check_F(G, "matmul_nt_backward C=0 dbias", d_db, db, OC, 1e-4);
    G->matmul_nt_forward(d_out, d_dout, d_b, d_b, N, 0, OC);
    float *want = malloc((size_t)N * OC * 4);
    for (int i = 0; i < N; i++) memcpy(want + (size_t)i * OC, b, OC * 4);
    h = downX(G, d_out, (size_t)N * OC);
    expect_same("matmul_nt_forward C = 0 is the bias", h, want, (size_t)N * OC);
    free(h), free(want), free(b), free(dout), free(db);
    G->release(d_b), G->release(d_db), G->release(d_dout), G->release(d_out);
}

/* A slice of n columns at column j0 of an (N, ld) matrix: j0 = 8 keeps the
 * vector path (16-byte aligned), j0 = 3 takes the scalar one. */
static void cols_case(const Backend *G, Rng *r, int N, int ld, int j0, int n) {
    const Backend *C0 = backend_cpu();
    size_t nw = (size_t)N * ld, nd = (size_t)N * n;
    float *wide = rand_host(r, nw, 1), *src = rand_host(r, nd, 1), *dense = malloc(nd * 4);
    float *d_wide = upX(G, wide, nw), *d_src = upX(G, src, nd), *d_dense = poisonX(G, nd);
    C0->cols_copy(dense, wide + j0, ld, N, n);
    G->cols_copy(d_dense, offX(G, d_wide, j0), ld, N, n);
    float *h = downX(G, d_dense, nd);
    char what[64];
    snprintf(what, sizeof what, "cols_copy N=%d ld=%d j0=%d n=%d", N, ld, j0, n);
    expect_same(what, h, dense, nd);
    free(h);
    C0->cols_add(wide + j0, ld, src, N, n);
    G->cols_add(offX(G, d_wide, j0), ld, d_src, N, n);
    snprintf(what, sizeof what, "cols_add N=%d ld=%d j0=%d n=%d", N, ld, j0, n);
    check_X(G, what, d_wide, wide, nw, 1e-2);
    h = downX(G, d_wide, nw); /* columns outside the slice: untouched */
    for (int i = 0; i < N; i++)
        for (int j = 0; j < ld; j++)
            if (j < j0 || j >= j0 + n)
                cr_assert(memcmp(&h[(size_t)i * ld + j], &wide[(size_t)i * ld + j], 4) == 0,
                          "cols_add changed [%d,%d] outside its slice", i, j);
    free(h), free(wide), free(src), free(dense);
    G->release(d_wide), G->release(d_src), G->release(d_dense);
}

Test(cuda_ops, cols) {
    NEED_GPU(G);
    Rng r;
    rng_seed(&r, 26);
    cols_case(G, &r, 64, 1152, 576, 192); /* k_proj's slice of SmolLM-135M's qkv */
    cols_case(G, &r, 33, 96, 8, 16);
    cols_case(G, &r, 33, 95, 3, 17); /* scalar path */
}

/* No learned positions (Llama families): wpe and dwpe NULL. */
Test(cuda_ops, encoder_without_positions) {
    NEED_GPU(G);
    const Backend *C0 = backend_cpu();
    Rng r;
    rng_seed(&r, 27);
    int B = 2, T = 19, V = 57;
    for (int C = 96; C >= 95; C--) { /* vector and scalar paths */
        size_t BTC = (size_t)B * T * C;
        int *inp = malloc(B * T * sizeof(int));
        for (int i = 0; i < B * T; i++) inp[i] = (int)rng_below(&r, V);
        float *wte = rand_host(&r, (size_t)V * C, 1), *out = malloc(BTC * 4);
        C0->encoder_forward(out, inp, wte, NULL, NULL, B, T, C);
        int *d_inp = G->alloc(B * T * sizeof(int));
        G->to_device(d_inp, inp, B * T * sizeof(int));
        float *d_wte = upX(G, wte, (size_t)V * C), *d_out = poisonX(G, BTC);
        G->encoder_forward(d_out, d_inp, d_wte, NULL, NULL, B, T, C);
        float *h = downX(G, d_out, BTC);
        expect_same("encoder_forward without wpe", h, out, BTC);
        free(h);
        float *dout = rand_host(&r, BTC, 1), *dwte = rand_host(&r, (size_t)V * C, 1);
        float *d_dout = upX(G, dout, BTC), *d_dwte = upF(G, dwte, (size_t)V * C);
        C0->encoder_backward(dwte, NULL, dout, inp, inp, NULL, NULL, B, T, C);
        G->encoder_backward(d_dwte, NULL, d_dout, d_inp, inp, NULL, NULL, B, T, C);
        check_F(G, "encoder_backward dwte with dwpe NULL", d_dwte, dwte, (size_t)V * C, 1e-4);
        free(inp), free(wte), free(out), free(dout), free(dwte);
        G->release(d_inp), G->release(d_wte), G->release(d_out), G->release(d_dout);
        G->release(d_dwte);
    }
}

/* ---------------------------------------------------------------- model */

Test(cuda_model, forward_backward_matches_cpu) {
    NEED_GPU(G);
    GPTConfig cfg = {.n_layer = 2, .n_head = 2, .n_embd = 128, .vocab_size = 515, .n_positions = 128,
                     .layer_norm_epsilon = 1e-5f, .vocab_pad = 0}; /* HS 64 */
    GPT *mc = gpt_create(&cfg, backend_cpu()), *mg = gpt_create(&cfg, G);
    cr_assert(mc && mg, "%s", err_msg());
    gpt_init_random(mc, 5);
    size_t n = gpt_flat_size(mc);
    float *w = malloc(n * 4);
    gpt_copy_params_to_host(mc, w, n);
    for (size_t i = 0; i < n; i++) w[i] = bf16_round(w[i]); /* identical weights */
    gpt_copy_params_to_device(mc, w, n);
    gpt_copy_params_to_device(mg, w, n);
    int B = 2, T = 96, N = B * T;
    Rng r;
    rng_seed(&r, 19);
    int *in = malloc(N * sizeof(int)), *tg = malloc(N * sizeof(int));
    for (int i = 0; i < N; i++) {
        in[i] = (int)rng_below(&r, cfg.vocab_size);
        tg[i] = i % 7 == 0 ? -1 : (int)rng_below(&r, cfg.vocab_size);
    }
    float *lc = malloc(N * 4), *lg = malloc(N * 4), *g = malloc(N * 4);
    for (int i = 0; i < N; i++) g[i] = tg[i] < 0 ? 0.0f : -1.0f / N;
    /* the GPU head in one chunk, then over chunks of 37 rows (192 rows: five
     * full chunks and a ragged one), both against the CPU's single chunk */
    for (int pass = 0; pass < 2; pass++) {
        gpt_set_logits_chunk(mg, pass ? 37 : 0);
        gpt_zero_grad(mc);
        gpt_zero_grad(mg);
        gpt_forward(mc, in, tg, B, T, lc);
        gpt_forward(mg, in, tg, B, T, lg);
        expect_close("model logp", lg, lc, N, 2e-2);
        gpt_backward(mc, g);
        gpt_backward(mg, g);
        float *gc = malloc(n * 4), *gg = malloc(n * 4);
        gpt_copy_grads_to_host(mc, gc, n);
        gpt_copy_grads_to_host(mg, gg, n);
        for (int i = 0; i < gpt_num_tensors(mc); i++) {
            const ParamInfo *p = gpt_tensor(mc, i);
            char what[128];
            snprintf(what, sizeof what, "grad %s", p->name);
            /* a whole backward pass in bf16: errors compound over layers */
            expect_close(what, gg + p->offset, gc + p->offset, p->numel, 5e-2);
        }
        free(gc);
        free(gg);
    }
    gpt_free(mc);
    gpt_free(mg);
}

/* Packed rows through the whole model (gpt_set_packing: doc_start, positions
 * in the encoder and in RoPE, masked attention), GPT-2 and Llama shapes, on
 * the GPU against the CPU with identical bf16-rounded weights; tolerances of
 * the unpacked comparison above. */
static void packed_model_case(const GPTConfig *cfg) {
    const Backend *G = backend_by_name("cuda");
    GPT *mc = gpt_create(cfg, backend_cpu()), *mg = gpt_create(cfg, G);
    cr_assert(mc && mg, "%s", err_msg());
    gpt_init_random(mc, 6);
    size_t n = gpt_flat_size(mc);
    float *w = malloc(n * 4);
    gpt_copy_params_to_host(mc, w, n);
    for (size_t i = 0; i < n; i++) w[i] = bf16_round(w[i]);
    gpt_copy_params_to_device(mc, w, n);
    gpt_copy_params_to_device(mg, w, n);
    int B = 2, T = 120, N = B * T;
    Rng r;
    rng_seed(&r, 1911);
    int *in = malloc(N * sizeof(int)), *tg = malloc(N * sizeof(int));
    int *ds = random_doc_starts(&r, B, T, 70);
    for (int i = 0; i < N; i++) {
        in[i] = (int)rng_below(&r, cfg->vocab_size);
        tg[i] = i % 7 == 0 ? -1 : (int)rng_below(&r, cfg->vocab_size);
    }
    float *lc = malloc(N * 4), *lg = malloc(N * 4), *g = malloc(N * 4);
    for (int i = 0; i < N; i++) g[i] = tg[i] < 0 ? 0.0f : -1.0f / N;
    gpt_zero_grad(mc);
    gpt_zero_grad(mg);
    cr_assert_eq(gpt_set_packing(mc, ds, B, T), 0, "%s", err_msg());
    cr_assert_eq(gpt_set_packing(mg, ds, B, T), 0, "%s", err_msg());
    gpt_forward(mc, in, tg, B, T, lc);
    gpt_forward(mg, in, tg, B, T, lg);
    expect_close("packed model logp", lg, lc, N, 2e-2);
    gpt_backward(mc, g);
    gpt_backward(mg, g);
    size_t ng = gpt_grad_size(mc);
    float *gc = malloc(ng * 4), *gg = malloc(ng * 4);
    gpt_copy_grads_to_host(mc, gc, ng);
    gpt_copy_grads_to_host(mg, gg, ng);
    for (int i = 0; i < gpt_num_tensors(mc); i++) {
        const ParamInfo *p = gpt_tensor(mc, i);
        char what[128];
        snprintf(what, sizeof what, "packed grad %s", p->name);
        expect_close(what, gg + p->grad_offset, gc + p->grad_offset, p->numel, 5e-2);
    }
    free(w), free(in), free(tg), free(ds), free(lc), free(lg), free(g), free(gc), free(gg);
    gpt_free(mc);
    gpt_free(mg);
}

Test(cuda_model, packed_rows_match_cpu) {
    NEED_GPU(G);
    (void)G;
    GPTConfig gpt2 = {.n_layer = 2, .n_head = 2, .n_embd = 128, .vocab_size = 515,
                      .n_positions = 128, .layer_norm_epsilon = 1e-5f};
    packed_model_case(&gpt2);
    GPTConfig llama = {.n_layer = 2, .n_head = 4, .n_embd = 256, .vocab_size = 515,
                       .n_positions = 128, .layer_norm_epsilon = 1e-5f, .arch = ARCH_LLAMA,
                       .n_kv_head = 2, .intermediate_size = 384, .rope_theta = 10000.0};
    packed_model_case(&llama);
}

/* Activation recomputation on the GPU (model.h, train.recompute): every
 * kernel is deterministic, so attention and block must give the very bits of
 * none, as on the CPU (tests/test_recompute.c), for GPT-2 and for a Llama
 * with grouped-query attention and LoRA dropout on every module; and the
 * bf16 activations allocated are what gpt_activation_bytes plans. */
Test(cuda_model, recompute_is_bitwise_that_of_none) {
    NEED_GPU(G);
    GPTConfig cfgs[2] = {
        {.n_layer = 3, .n_head = 2, .n_embd = 128, .vocab_size = 515, .n_positions = 128,
         .layer_norm_epsilon = 1e-5f},
        {.n_layer = 3, .n_head = 4, .n_embd = 128, .vocab_size = 515, .n_positions = 128,
         .layer_norm_epsilon = 1e-6f, .arch = ARCH_LLAMA, .n_kv_head = 2,
         .intermediate_size = 192, .rope_theta = 10000}};
    int B = 2, T = 64, N = B * T;
    int *in = malloc(N * sizeof(int));
    float *g = malloc(N * 4), *ref_lp = malloc(N * 4), *lp = malloc(N * 4);
    random_tokens(in, N, 515, 23);
    for (int i = 0; i < N; i++) g[i] = -1.0f / N;
    for (int c = 0; c < 2; c++) {
        float *ref = NULL;
        for (int mode = 0; mode < GPT_RECOMPUTE_COUNT; mode++) {
            GPT *m = gpt_create(&cfgs[c], G);
            cr_assert(m, "%s", err_msg());
            gpt_init_random(m, 5);
            cr_assert_eq(gpt_set_recompute(m, mode), 0);
            if (c == 1) {
                LoraConfig lc = {.r = 4, .alpha = 8, .dropout = 0.2f, .seed = 3, .n_targets = 3};
                snprintf(lc.targets[0], LORA_NAME_LEN, "q_proj");
                snprintf(lc.targets[1], LORA_NAME_LEN, "o_proj");
                snprintf(lc.targets[2], LORA_NAME_LEN, "down_proj");
                cr_assert_eq(gpt_lora_attach(m, &lc), 0, "%s", err_msg());
                randomise_lora_b(m, 4);
            }
            size_t n = gpt_flat_size(m);
            gpt_zero_grad(m);
            gpt_forward(m, in, in, B, T, lp);
            gpt_backward(m, g);
            cr_expect_eq(gpt_activation_bytes_allocated(m),
                         gpt_activation_bytes(&cfgs[c], B, T, mode, G->act_size, 0),
                         "config %d, %s: allocated bytes differ from the plan", c,
                         gpt_recompute_name(mode));
            float *gr = malloc(n * 4);
            gpt_copy_grads_to_host(m, gr, n);
            if (mode == 0) {
                ref = gr;
                memcpy(ref_lp, lp, N * 4);
            } else {
                cr_expect(memcmp(lp, ref_lp, N * 4) == 0, "config %d, %s: logp differ", c,
                          gpt_recompute_name(mode));
                cr_expect(memcmp(gr, ref, n * 4) == 0, "config %d, %s: gradients differ", c,
                          gpt_recompute_name(mode));
                free(gr);
            }
            gpt_free(m);
        }
        free(ref);
    }
    free(in);
    free(g);
    free(ref_lp);
    free(lp);
}

/* Gradient accumulation keeps fp32 sums end to end (model/backend.h): four
 * backward passes of the same batch give four times the gradients of one, to
 * fp32 rounding (1e-5; running sums rounded to bf16 would be off by ~1e-3).
 * And the one-pass norm of optim_clip_grad_norm over the whole gradient buffer
 * equals the norm of the tensors read one by one: the buffer's padding (the
 * 16-float alignment, wte's padded vocabulary rows: 515 -> 640) is zero. */
Test(cuda_model, grad_accum_in_fp32) {
    NEED_GPU(G);
    GPTConfig cfg = {.n_layer = 2, .n_head = 2, .n_embd = 128, .vocab_size = 515,
                     .n_positions = 128, .layer_norm_epsilon = 1e-5f};
    GPT *m = gpt_create(&cfg, G);
    cr_assert(m, "%s", err_msg());
    gpt_init_random(m, 5);
    int B = 2, T = 64, N = B * T;
    Rng r;
    rng_seed(&r, 29);
    int *in = malloc(N * sizeof(int)), *tg = malloc(N * sizeof(int));
    float *g = malloc(N * 4);
    for (int i = 0; i < N; i++) {
        in[i] = (int)rng_below(&r, cfg.vocab_size);
        tg[i] = i % 5 == 0 ? -1 : (int)rng_below(&r, cfg.vocab_size);
        g[i] = tg[i] < 0 ? 0.0f : -1.0f / N;
    }
    size_t n = gpt_flat_size(m);
    float *once = malloc(n * 4), *four = malloc(n * 4);
    gpt_zero_grad(m);
    for (int k = 0; k < 4; k++) {
        gpt_forward(m, in, tg, B, T, NULL);
        gpt_backward(m, g);
        if (k == 0) gpt_copy_grads_to_host(m, once, n);
    }
    gpt_copy_grads_to_host(m, four, n);
    double ss = 0;
    for (int i = 0; i < gpt_num_tensors(m); i++) {
        const ParamInfo *p = gpt_tensor(m, i);
        float *want = malloc(p->numel * 4);
        for (size_t j = 0; j < p->numel; j++) {
            want[j] = 4.0f * once[p->offset + j]; /* exact */
            ss += (double)four[p->offset + j] * four[p->offset + j];
        }
        char what[128];
        snprintf(what, sizeof what, "4 micro-steps vs 4 x one, %s", p->name);
        expect_close(what, four + p->offset, want, p->numel, 1e-5);
        free(want);
    }
    AdamWConfig ac = {0.9, 0.95, 1e-8, 0.0, 0.0}; /* no clipping: the norm only */
    Optimizer *o = optim_create(m, &ac);
    cr_assert(o, "%s", err_msg());
    double norm = optim_clip_grad_norm(o);
    cr_expect(ss > 0 && fabs(norm - sqrt(ss)) <= 1e-9 * sqrt(ss),
              "one-pass gradient norm %.17g, tensor by tensor %.17g", norm, sqrt(ss));
    optim_free(o);
    gpt_free(m);
    free(in), free(tg), free(g), free(once), free(four);
}

/* ZeRO-1 on the GPU (train/optim.c optim_shard with bf16 parameters): one
 * process standing for rank r of W, so no collective runs. Its AdamW step on
 * its range, with its shard of m, v and the fp32 master weights, must write
 * the very bits the unsharded optimizer writes there (the same kernel on the
 * same inputs), for the parameters (bf16) and for the gathered state
 * (optim_moments_to_host, optim_master_to_host fill this rank's range),
 * over two steps; the parameters outside the range stay untouched (the test
 * then copies them in, as the owners' broadcast would; the broadcast itself,
 * dist_broadcast_pieces over NCCL, needs several GPUs and has not run). The
 * state bytes are the plan's: m, v and master of the shard. */
Test(cuda_model, zero1_shard_step_is_the_unsharded_step_on_its_range) {
    NEED_GPU(G);
    GPTConfig cfg = {.n_layer = 2, .n_head = 2, .n_embd = 128, .vocab_size = 515,
                     .n_positions = 128, .layer_norm_epsilon = 1e-5f};
    enum { W = 3 };
    int B = 2, T = 32, N = B * T;
    Rng r;
    rng_seed(&r, 31);
    int *in = malloc(N * sizeof(int)), *tg = malloc(N * sizeof(int));
    float *g = malloc(N * 4);
    for (int i = 0; i < N; i++) {
        in[i] = (int)rng_below(&r, cfg.vocab_size);
        tg[i] = (int)rng_below(&r, cfg.vocab_size);
        g[i] = -1.0f / N;
    }
    /* no clipping: one process has only its shard's part of the norm */
    AdamWConfig ac = {0.9, 0.95, 1e-8, 0.1, 0.0};
    GPT *ref = gpt_create(&cfg, G), *m[W];
    cr_assert(ref, "%s", err_msg());
    gpt_init_random(ref, 7);
    Optimizer *oref = optim_create(ref, &ac), *o[W];
    size_t n = gpt_flat_size(ref), ns = optim_state_size(oref), b[W], e[W];
    for (int q = 0; q < W; q++) {
        m[q] = gpt_create(&cfg, G);
        gpt_init_random(m[q], 7);
        o[q] = optim_create(m[q], &ac);
        cr_assert_eq(optim_shard(o[q], q, W), 0, "%s", err_msg());
        dist_shard_range(ns, q, W, &b[q], &e[q]);
        cr_assert_eq(optim_state_bytes(o[q]), (e[q] - b[q]) * 4 * 3, "m, v, master of the shard");
    }
    float *before = malloc(n * 4), *pr = malloc(n * 4), *pq = malloc(n * 4);
    for (int s = 0; s < 2; s++) {
        gpt_copy_params_to_host(ref, before, n);
        gpt_zero_grad(ref);
        gpt_forward(ref, in, tg, B, T, NULL);
        gpt_backward(ref, g);
        optim_clip_grad_norm(oref);
        optim_step(oref, 1e-3);
        gpt_copy_params_to_host(ref, pr, n);
        for (int q = 0; q < W; q++) {
            gpt_zero_grad(m[q]);
            gpt_forward(m[q], in, tg, B, T, NULL);
            gpt_backward(m[q], g);
            optim_clip_grad_norm(o[q]);
            optim_step(o[q], 1e-3);
            gpt_copy_params_to_host(m[q], pq, n);
            for (int i = 0; i < gpt_num_tensors(ref); i++) {
                const ParamInfo *p = gpt_tensor(ref, i);
                for (size_t j = 0; j < p->numel; j++) {
                    size_t k = p->grad_offset + j, x = p->offset + j;
                    int mine = k >= b[q] && k < e[q];
                    cr_assert(!memcmp(&pq[x], mine ? &pr[x] : &before[x], 4),
                              "step %d, rank %d, %s[%zu]: %g, want %g (%s)", s + 1, q, p->name, j,
                              pq[x], mine ? pr[x] : before[x],
                              mine ? "its range" : "another rank's, untouched");
                    pq[x] = pr[x]; /* what the owners' broadcast brings */
                }
            }
            gpt_copy_params_to_device(m[q], pq, n);
        }
    }
    float *mr = malloc(ns * 4), *vr = malloc(ns * 4), *wr = malloc(ns * 4);
    optim_moments_to_host(oref, mr, vr);
    optim_master_to_host(oref, wr);
    for (int q = 0; q < W; q++) {
        float *mm = calloc(ns, 4), *vm = calloc(ns, 4), *wm = calloc(ns, 4);
        optim_moments_to_host(o[q], mm, vm);
        optim_master_to_host(o[q], wm);
        size_t len = (e[q] - b[q]) * 4;
        cr_assert(!memcmp(mm + b[q], mr + b[q], len), "rank %d: m", q);
        cr_assert(!memcmp(vm + b[q], vr + b[q], len), "rank %d: v", q);
        cr_assert(!memcmp(wm + b[q], wr + b[q], len), "rank %d: master", q);
        free(mm), free(vm), free(wm);
        optim_free(o[q]);
        gpt_free(m[q]);
    }
    optim_free(oref);
    gpt_free(ref);
    free(in), free(tg), free(g), free(before), free(pr), free(pq), free(mr), free(vr), free(wr);
}

/* ZeRO-2 on the GPU (train/optim.c optim_shard_grads on CUDA): one process
 * standing for rank r of W, so no collective runs and each unit's runs reach
 * the shard through the host (the rank's own share, the others' taken as
 * zero; the NCCL path, dist_reduce_scatter_add_device, needs several GPUs:
 * scripts/test_gpu.sh part 6). The model writes each block into a zeroed
 * window with the kernels the whole buffer gets, so the shard must hold the
 * very bits of the ZeRO-1 model's gradient on its range after one backward,
 * and g1 + g2 (each from zero, summed in fp32) after two; the AdamW step from
 * the shard must then write the ZeRO-1 step's bits (parameters, m, v and
 * master weights, two steps), and the model must hold less gradient memory
 * than the layout. */
static void zero2_backward(GPT *m, const int *in, const int *tg, const float *g, int B, int T) {
    gpt_forward(m, in, tg, B, T, NULL);
    gpt_backward(m, g);
}

Test(cuda_model, zero2_shard_is_the_zero1_gradient_and_steps_as_zero1) {
    NEED_GPU(G);
    GPTConfig cfg = {.n_layer = 2, .n_head = 2, .n_embd = 128, .vocab_size = 515,
                     .n_positions = 128, .layer_norm_epsilon = 1e-5f};
    enum { W = 3 };
    int B = 2, T = 32, N = B * T;
    Rng r;
    rng_seed(&r, 37);
    int *in = malloc(N * sizeof(int)), *tg = malloc(N * sizeof(int)), *tg2 = malloc(N * sizeof(int));
    float *g = malloc(N * 4);
    for (int i = 0; i < N; i++) {
        in[i] = (int)rng_below(&r, cfg.vocab_size);
        tg[i] = (int)rng_below(&r, cfg.vocab_size);
        tg2[i] = (int)rng_below(&r, cfg.vocab_size);
        g[i] = -1.0f / N;
    }
    AdamWConfig ac = {0.9, 0.95, 1e-8, 0.1, 0.0}; /* no clipping: one process has one shard */
    for (int q = 0; q < W; q++) {
        GPT *m1 = gpt_create(&cfg, G), *m2 = gpt_create(&cfg, G);
        cr_assert(m1 && m2, "%s", err_msg());
        gpt_init_random(m1, 7);
        gpt_init_random(m2, 7);
        Optimizer *o1 = optim_create(m1, &ac), *o2 = optim_create(m2, &ac);
        cr_assert_eq(optim_shard(o1, q, W), 0, "%s", err_msg());
        cr_assert_eq(optim_shard(o2, q, W), 0, "%s", err_msg());
        cr_assert_eq(optim_shard_grads(o2), 0, "%s", err_msg());
        cr_assert(optim_grads_sharded(o2));
        size_t n = gpt_flat_size(m1), ns = optim_state_size(o1), b, e;
        dist_shard_range(ns, q, W, &b, &e);
        cr_assert(gpt_grad_bytes(m2) < ns * 4, "rank %d: the model holds less than the layout", q);
        float *g1 = malloc(ns * 4), *g2 = malloc(ns * 4), *p1 = malloc(n * 4), *p2 = malloc(n * 4);
        for (int s = 0; s < 2; s++) {
            optim_zero_grad(o1);
            optim_zero_grad(o2);
            zero2_backward(m1, in, tg, g, B, T);
            zero2_backward(m2, in, tg, g, B, T);
            optim_grads_to_host(o1, g1);
            optim_grads_to_host(o2, g2);
            cr_assert(!memcmp(g2 + b, g1 + b, (e - b) * 4),
                      "step %d, rank %d of %d: the shard is not ZeRO-1's gradient on [%zu, %zu)",
                      s + 1, q, W, b, e);
            optim_clip_grad_norm(o1);
            optim_clip_grad_norm(o2);
            optim_step(o1, 1e-3);
            optim_step(o2, 1e-3);
            gpt_copy_params_to_host(m1, p1, n);
            gpt_copy_params_to_host(m2, p2, n);
            for (size_t x = 0; x < n; x++) /* both leave the other ranks' ranges as they were */
                cr_assert(!memcmp(&p1[x], &p2[x], 4), "step %d, rank %d: parameter %zu: %g vs %g",
                          s + 1, q, x, p2[x], p1[x]);
        }
        float *m1h = calloc(ns, 4), *v1h = calloc(ns, 4), *w1h = calloc(ns, 4);
        float *m2h = calloc(ns, 4), *v2h = calloc(ns, 4), *w2h = calloc(ns, 4);
        optim_moments_to_host(o1, m1h, v1h);
        optim_moments_to_host(o2, m2h, v2h);
        optim_master_to_host(o1, w1h);
        optim_master_to_host(o2, w2h);
        size_t len = (e - b) * 4;
        cr_assert(!memcmp(m2h + b, m1h + b, len), "rank %d: m", q);
        cr_assert(!memcmp(v2h + b, v1h + b, len), "rank %d: v", q);
        cr_assert(!memcmp(w2h + b, w1h + b, len), "rank %d: master", q);

        /* two backwards accumulate in the shard: g1 + g2, each from zero */
        float *ga = malloc(ns * 4), *gb = malloc(ns * 4);
        optim_zero_grad(o1);
        zero2_backward(m1, in, tg, g, B, T);
        optim_grads_to_host(o1, ga);
        optim_zero_grad(o1);
        zero2_backward(m1, in, tg2, g, B, T);
        optim_grads_to_host(o1, gb);
        optim_zero_grad(o2);
        zero2_backward(m2, in, tg, g, B, T);
        zero2_backward(m2, in, tg2, g, B, T);
        optim_grads_to_host(o2, g2);
        for (size_t x = b; x < e; x++) {
            float want = ga[x] + gb[x];
            cr_assert(!memcmp(&g2[x], &want, 4), "accumulated: rank %d, element %zu: %g vs %g", q,
                      x, g2[x], want);
        }
        optim_zero_grad(o2); /* the next step starts from zero */
        optim_grads_to_host(o2, g2);
        for (size_t x = b; x < e; x++) cr_assert_eq(g2[x], 0.0f, "rank %d, element %zu", q, x);
        free(ga), free(gb), free(m1h), free(v1h), free(w1h), free(m2h), free(v2h), free(w2h);
        free(g1), free(g2), free(p1), free(p2);
        optim_free(o1);
        optim_free(o2);
        gpt_free(m1);
        gpt_free(m2);
    }
    free(in), free(tg), free(tg2), free(g);
}

/* ZeRO-3 on the GPU (optim_shard_params with bf16 parameters): one process
 * as the whole world (optim_shard(o, 0, 1)), so the gathers copy this rank's
 * bf16 shard through the host instead of NCCL broadcasts (those need several
 * GPUs: scripts/test_gpu.sh part 7), but every other path runs on the GPU:
 * the resident tensors, the window filled before each block's forward and
 * backward, the gradient units into the device shard, AdamW writing the bf16
 * shard from the fp32 master shard, the global tensors copied back, and a
 * save's whole mode. Three steps with clipping must give the plain model's
 * log-probs, gradient norms and parameters bit for bit. */
Test(cuda_model, zero3_whole_world_steps_are_the_plain_models) {
    NEED_GPU(G);
    GPTConfig cfg = {.n_layer = 3, .n_head = 2, .n_embd = 128, .vocab_size = 515,
                     .n_positions = 128, .layer_norm_epsilon = 1e-5f};
    int B = 2, T = 32, N = B * T;
    AdamWConfig ac = {0.9, 0.95, 1e-8, 0.1, 0.5}; /* clipping on: the norm matters */
    GPT *plain = gpt_create(&cfg, G), *m = gpt_create(&cfg, G);
    cr_assert(plain && m, "%s", err_msg());
    gpt_init_random(plain, 9);
    gpt_init_random(m, 9);
    Optimizer *po = optim_create(plain, &ac), *o = optim_create(m, &ac);
    cr_assert_eq(optim_shard(o, 0, 1), 0, "%s", err_msg());
    cr_assert_eq(optim_shard_grads(o), 0, "%s", err_msg());
    cr_assert_eq(optim_shard_params(o), 0, "%s", err_msg());
    cr_assert(optim_params_sharded(o) && gpt_params_sharded(m));
    size_t n = gpt_flat_size(m);
    cr_assert(gpt_param_bytes(m) < n * G->act_size, "resident + window %zu bytes, whole %zu",
              gpt_param_bytes(m), n * G->act_size);
    int *in = malloc(N * sizeof(int)), *tg = malloc(N * sizeof(int));
    float *g = malloc(N * 4), *lp = malloc(N * 4), *lq = malloc(N * 4);
    float *want = malloc(n * 4), *got = malloc(n * 4);
    Rng r;
    rng_seed(&r, 41);
    for (int s = 0; s < 3; s++) {
        for (int i = 0; i < N; i++) {
            in[i] = (int)rng_below(&r, cfg.vocab_size);
            tg[i] = (int)rng_below(&r, cfg.vocab_size);
            g[i] = -1.0f / N + 0.01f * (float)(i % 3);
        }
        double np, nq;
        optim_zero_grad(po);
        gpt_forward(plain, in, tg, B, T, lp);
        gpt_backward(plain, g);
        np = optim_clip_grad_norm(po);
        optim_step(po, 1e-2);
        optim_zero_grad(o);
        gpt_forward(m, in, tg, B, T, lq);
        gpt_backward(m, g);
        nq = optim_clip_grad_norm(o);
        optim_step(o, 1e-2);
        cr_assert(!memcmp(lp, lq, N * 4), "step %d: log-probs differ", s + 1);
        cr_assert(!memcmp(&np, &nq, sizeof np), "step %d: norm %.17g vs %.17g", s + 1, np, nq);
        /* as a save does: the whole buffer, then the shard back from it */
        cr_assert_eq(optim_params_unshard(o, 1), 0, "%s", err_msg());
        gpt_copy_params_to_host(plain, want, n);
        gpt_copy_params_to_host(m, got, n);
        for (int i = 0; i < gpt_num_tensors(m); i++) {
            const ParamInfo *p = gpt_tensor(m, i);
            cr_assert(!memcmp(want + p->offset, got + p->offset, p->numel * 4),
                      "step %d: %s differs", s + 1, p->name);
        }
        optim_params_reshard(o);
    }
    /* a load's master sync (from the shard, the model holding no whole buffer)
     * gives the plain one's: fp32 of the same bf16 parameters */
    size_t ns = optim_state_size(po);
    float *mw = malloc(ns * 4), *mq = malloc(ns * 4);
    optim_sync_master(po);
    optim_sync_master(o);
    optim_master_to_host(po, mw);
    optim_master_to_host(o, mq);
    cr_assert(!memcmp(mw, mq, ns * 4), "the master weights synced from the shard differ");
    free(mw), free(mq);
    free(in), free(tg), free(g), free(lp), free(lq), free(want), free(got);
    optim_free(po);
    optim_free(o);
    gpt_free(plain);
    gpt_free(m);
}

/* LoRA on a Llama-family model (Qwen2: q/k/v biases; one kv head for two
 * query heads, HS 64): adapters on column slices of the fused q/k/v and
 * gate/up GEMMs (k_proj, v_proj, up_proj: cols_add forward, cols_copy
 * backward) and on whole ones (o_proj, down_proj), with dropout, give the
 * CPU's log-probs and adapter gradients. The same bf16-rounded weights on
 * both; tolerances as forward_backward_matches_cpu (a whole model in bf16). */
Test(cuda_model, llama_lora_matches_cpu) {
    NEED_GPU(G);
    GPTConfig cfg = {.arch = ARCH_QWEN2, .n_layer = 2, .n_head = 2, .n_kv_head = 1,
                     .n_embd = 128, .intermediate_size = 192, .attn_bias = 1,
                     .vocab_size = 515, .n_positions = 128, .layer_norm_epsilon = 1e-6f,
                     .rope_theta = 1e6};
    GPT *mc = gpt_create(&cfg, backend_cpu()), *mg = gpt_create(&cfg, G);
    cr_assert(mc && mg, "%s", err_msg());
    gpt_init_random(mc, 5);
    LoraConfig lc = {.r = 8, .alpha = 16, .dropout = 0.1f, .seed = 3};
    const char *targets[] = {"k_proj", "v_proj", "up_proj", "o_proj", "down_proj"};
    for (int i = 0; i < 5; i++)
        snprintf(lc.targets[lc.n_targets++], LORA_NAME_LEN, "%s", targets[i]);
    size_t n0 = gpt_flat_size(mc);
    float *w0 = malloc(n0 * 4);
    gpt_copy_params_to_host(mc, w0, n0);
    gpt_copy_params_to_device(mg, w0, n0);
    free(w0);
    cr_assert_eq(gpt_lora_attach(mc, &lc), 0, "%s", err_msg());
    cr_assert_eq(gpt_lora_attach(mg, &lc), 0, "%s", err_msg());
    size_t n = gpt_flat_size(mc);
    cr_assert_eq(n, gpt_flat_size(mg));
    float *w = malloc(n * 4);
    gpt_copy_params_to_host(mc, w, n);
    Rng r;
    rng_seed(&r, 23);
    for (int i = 0; i < gpt_num_tensors(mc); i++) { /* lora_B starts at zero: a no-op */
        const ParamInfo *p = gpt_tensor(mc, i);
        if (p->lora == 2)
            for (size_t k = 0; k < p->numel; k++) w[p->offset + k] = (float)(0.1 * rng_normal(&r));
    }
    for (size_t i = 0; i < n; i++) w[i] = bf16_round(w[i]); /* identical weights */
    gpt_copy_params_to_device(mc, w, n);
    gpt_copy_params_to_device(mg, w, n);
    free(w);
    int B = 2, T = 96, N = B * T;
    int *in = malloc(N * sizeof(int)), *tg = malloc(N * sizeof(int));
    for (int i = 0; i < N; i++) {
        in[i] = (int)rng_below(&r, cfg.vocab_size);
        tg[i] = i % 7 == 0 ? -1 : (int)rng_below(&r, cfg.vocab_size);
    }
    float *lc_cpu = malloc(N * 4), *lc_gpu = malloc(N * 4), *g = malloc(N * 4);
    for (int i = 0; i < N; i++) g[i] = tg[i] < 0 ? 0.0f : -1.0f / N;
    gpt_zero_grad(mc);
    gpt_zero_grad(mg);
    gpt_forward(mc, in, tg, B, T, lc_cpu); /* training forwards: the same dropout masks */
    gpt_forward(mg, in, tg, B, T, lc_gpu);
    expect_close("llama + LoRA logp", lc_gpu, lc_cpu, N, 2e-2);
    gpt_backward(mc, g);
    gpt_backward(mg, g);
    float *gc = malloc(n * 4), *gg = malloc(n * 4);
    gpt_copy_grads_to_host(mc, gc, n);
    gpt_copy_grads_to_host(mg, gg, n);
    int adapters = 0;
    for (int i = 0; i < gpt_num_tensors(mc); i++) {
        const ParamInfo *p = gpt_tensor(mc, i);
        if (!p->lora) continue;
        char what[128];
        snprintf(what, sizeof what, "grad %s", p->name);
        expect_close(what, gg + p->offset, gc + p->offset, p->numel, 5e-2);
        adapters++;
    }
    cr_expect_eq(adapters, 2 * 5 * cfg.n_layer);
    free(gc), free(gg), free(in), free(tg), free(lc_cpu), free(lc_gpu), free(g);
    gpt_free(mc);
    gpt_free(mg);
}

/* ---------------------------------------------------------------- backend */

/* One forward and backward of a fixed model and batch on G: logp (N) and the
 * gradients (n) on the host. */
static void forward_backward_once(const Backend *G, const GPTConfig *cfg, float *logp,
                                  float *grads, size_t *n_out) {
    GPT *m = gpt_create(cfg, G);
    cr_assert(m, "%s", err_msg());
    gpt_init_random(m, 7);
    int B = 2, T = 80, N = B * T;
    Rng r;
    rng_seed(&r, 31);
    int *in = malloc(N * sizeof(int)), *tg = malloc(N * sizeof(int));
    float *g = malloc(N * 4);
    for (int i = 0; i < N; i++) {
        in[i] = (int)rng_below(&r, cfg->vocab_size);
        tg[i] = (int)rng_below(&r, cfg->vocab_size);
        g[i] = -1.0f / N;
    }
    gpt_zero_grad(m);
    gpt_forward(m, in, tg, B, T, logp);
    gpt_backward(m, g);
    *n_out = gpt_flat_size(m);
    if (grads) gpt_copy_grads_to_host(m, grads, *n_out);
    gpt_free(m);
    free(in), free(tg), free(g);
}

/* The backend refuses a head size its attention kernels cannot run when the
 * model is created, with the limit in the message, not at the first launch.
 * shutdown frees the workspaces, the cuBLAS handle and the stream; the
 * backend then comes back up, grows its workspaces again and computes the
 * same bits (every kernel is deterministic). */
Test(cuda_backend, refuses_at_setup_and_comes_back_after_shutdown) {
    NEED_GPU(G);
    GPTConfig wide = {.n_layer = 2, .n_head = 8, .n_embd = 1280, .vocab_size = 515,
                      .n_positions = 128, .layer_norm_epsilon = 1e-5f,
                      .vocab_pad = 0}; /* head size 160 */
    cr_expect_null(gpt_create(&wide, G), "a head size of 160 was accepted on CUDA");
    cr_expect(strstr(err_msg(), "up to 128"), "the refusal names the limit: %s", err_msg());
    cr_expect_eq(G->supports(&wide), -1);

    GPTConfig cfg = {.n_layer = 2, .n_head = 2, .n_embd = 128, .vocab_size = 515, .n_positions = 128,
                     .layer_norm_epsilon = 1e-5f, .vocab_pad = 0}; /* head size 64 */
    int N = 2 * 80;
    size_t n = 0;
    forward_backward_once(G, &cfg, NULL, NULL, &n);
    float *lp1 = malloc(N * 4), *lp2 = malloc(N * 4), *g1 = malloc(n * 4), *g2 = malloc(n * 4);
    forward_backward_once(G, &cfg, lp1, g1, &n);
    G->shutdown();
    cr_expect_null(backend_cuda_stream(), "the stream is gone after shutdown");
    const Backend *again = backend_by_name("cuda");
    cr_assert(again, "%s", err_msg());
    cr_expect_not_null(backend_cuda_stream());
    forward_backward_once(again, &cfg, lp2, g2, &n);
    cr_expect(memcmp(lp1, lp2, N * 4) == 0, "logp differs after shutdown and restart");
    cr_expect(memcmp(g1, g2, n * 4) == 0, "gradients differ after shutdown and restart");
    free(lp1), free(lp2), free(g1), free(g2);
}
