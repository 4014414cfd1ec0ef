/* tests/test_ops.c — the fp32 CPU reference ops of kernels/ops.h.
 *
 * Three kinds of check:
 *   - forward against naive double-precision references written here;
 *   - every backward against central finite differences of a scalar
 *     L = sum(dout * out) (classifier: L = sum_i g_i logp_i), computed in double;
 *   - the conventions: backward accumulates (+=), so a second call doubles the
 *     gradient, and NULL gradient pointers are skipped without changing the rest.
 *
 * Finite-difference tolerances. The forward runs in fp32, so L carries a rounding
 * error of about 1e-7 |L|; dividing by 2h turns that into an absolute gradient
 * error of roughly 1e-7 |L| / (2h), while the truncation error of a central
 * difference is O(h^2). With h = 1e-2 .. 1e-3 and |L| ~ 1..10 both land near
 * 1e-4 .. 1e-3 of the gradient's size, so we compare the probed gradient
 * vectors norm-wise and accept a relative error of 1e-3 .. 1e-2 depending on
 * how nonlinear the op is (each check says which). A wrong formula gives errors
 * of order 1. The step actually taken is (float)(x+h) - (float)(x-h), not 2h. */
#include <criterion/criterion.h>

#include "kernels/ops.h"
#include "tests/testutil_ops.h"

/* ---------------------------------------------------------------- encoder */

typedef struct {
    int B, T, C;
    float *out, *wte, *wpe, *dout;
    int *inp;
} EncoderCase;

static double encoder_loss(void *p) {
    EncoderCase *e = p;
    encoder_forward(e->out, e->inp, e->wte, e->wpe, NULL, e->B, e->T, e->C);
    return dot_d(e->dout, e->out, (size_t)e->B * e->T * e->C);
}

Test(encoder, forward_gathers_token_and_position) {
    Rng r;
    rng_seed(&r, 101);
    int B = 2, T = 5, C = 6, V = 4;
    int inp[10];
    for (int i = 0; i < B * T; i++) inp[i] = (int)rng_below(&r, V);
    float *wte = rand_floats(&r, (size_t)V * C, 1.0f), *wpe = rand_floats(&r, (size_t)T * C, 1.0f);
    float *out = zero_floats((size_t)B * T * C);
    encoder_forward(out, inp, wte, wpe, NULL, B, T, C);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int c = 0; c < C; c++) {
                float want = wte[inp[b * T + t] * C + c] + wpe[t * C + c];
                float got = out[(b * T + t) * C + c];
                cr_assert_eq(got, want, "out[%d,%d,%d] = %.9g, want %.9g", b, t, c, got, want);
            }
    free(wte), free(wpe), free(out);
}

Test(encoder, backward_finite_differences_and_conventions) {
    Rng r;
    rng_seed(&r, 102);
    /* V small against B*T so tokens repeat and the scatter-add really adds;
     * C = 70 spans two of the backward's 64-column blocks */
    int B = 3, T = 5, C = 70, V = 4, maxT = 7;
    EncoderCase e = {B, T, C, NULL, NULL, NULL, NULL, NULL};
    size_t BTC = (size_t)B * T * C;
    e.inp = xmalloc((size_t)B * T * sizeof(int));
    for (int i = 0; i < B * T; i++) e.inp[i] = (int)rng_below(&r, V);
    e.wte = rand_floats(&r, (size_t)V * C, 1.0f);
    e.wpe = rand_floats(&r, (size_t)maxT * C, 1.0f);
    e.dout = rand_floats(&r, BTC, 1.0f);
    e.out = zero_floats(BTC);
    float *dwte = zero_floats((size_t)V * C), *dwpe = zero_floats((size_t)maxT * C);
    encoder_backward(dwte, dwpe, e.dout, e.inp, NULL, NULL, NULL, B, T, C);

    /* the op is linear: differences are exact up to fp32 rounding of L */
    check_grad("encoder dwte", encoder_loss, &e, e.wte, contiguous((size_t)V * C), dwte, 200, 1e-2f,
               1e-4, &r);
    check_grad("encoder dwpe", encoder_loss, &e, e.wpe, contiguous((size_t)T * C), dwpe, 200, 1e-2f,
               1e-4, &r);
    /* rows of wpe beyond T are untouched */
    for (size_t i = (size_t)T * C; i < (size_t)maxT * C; i++)
        cr_assert_eq(dwpe[i], 0.0f, "dwpe[%zu] = %g beyond T", i, dwpe[i]);

    /* += : the scatter sums several (b,t) into one row, so doubling is exact only
     * up to the rounding of that running sum (a few ulp) */
    float *dwte2 = copy_floats(dwte, (size_t)V * C), *dwpe2 = copy_floats(dwpe, (size_t)maxT * C);
    encoder_backward(dwte2, dwpe2, e.dout, e.inp, NULL, NULL, NULL, B, T, C);
    expect_doubled("encoder dwte", dwte, dwte2, (size_t)V * C, 1e-6);
    expect_doubled("encoder dwpe", dwpe, dwpe2, (size_t)T * C, 1e-6);

    /* NULL skips one gradient and leaves the other as in the full call */
    float *only_wpe = zero_floats((size_t)maxT * C), *only_wte = zero_floats((size_t)V * C);
    encoder_backward(NULL, only_wpe, e.dout, e.inp, NULL, NULL, NULL, B, T, C);
    encoder_backward(only_wte, NULL, e.dout, e.inp, NULL, NULL, NULL, B, T, C);
    expect_equal("encoder dwpe with dwte NULL", only_wpe, dwpe, (size_t)maxT * C);
    expect_equal("encoder dwte with dwpe NULL", only_wte, dwte, (size_t)V * C);

    free(e.inp), free(e.wte), free(e.wpe), free(e.dout), free(e.out);
    free(dwte), free(dwpe), free(dwte2), free(dwpe2), free(only_wpe), free(only_wte);
}

/* ---------------------------------------------------------------- layernorm */

typedef struct {
    int N, C;
    float *out, *mean, *rstd, *inp, *weight, *bias, *dout;
} LayernormCase;

static const float LN_EPS = 1e-5f;

static double layernorm_loss(void *p) {
    LayernormCase *l = p;
    layernorm_forward(l->out, l->mean, l->rstd, l->inp, l->weight, l->bias, l->N, l->C, LN_EPS);
    return dot_d(l->dout, l->out, (size_t)l->N * l->C);
}

static void layernorm_case_init(LayernormCase *l, Rng *r, int N, int C) {
    l->N = N;
    l->C = C;
    l->inp = rand_floats(r, (size_t)N * C, 1.0f);
    for (size_t i = 0; i < (size_t)N * C; i++) l->inp[i] += 0.5f; /* non-zero mean */
    l->weight = rand_floats(r, C, 1.0f);
    l->bias = rand_floats(r, C, 1.0f);
    l->dout = rand_floats(r, (size_t)N * C, 1.0f);
    l->out = zero_floats((size_t)N * C);
    l->mean = zero_floats(N);
    l->rstd = zero_floats(N);
}

static void layernorm_case_free(LayernormCase *l) {
    free(l->inp), free(l->weight), free(l->bias), free(l->dout), free(l->out), free(l->mean),
        free(l->rstd);
}

Test(layernorm, forward_matches_double_reference) {
    Rng r;
    rng_seed(&r, 201);
    LayernormCase l;
    layernorm_case_init(&l, &r, 9, 70);
    int N = l.N, C = l.C;
    layernorm_forward(l.out, l.mean, l.rstd, l.inp, l.weight, l.bias, N, C, LN_EPS);
    double *want = xmalloc((size_t)N * C * sizeof(double));
    double want_mean[9], want_rstd[9];
    for (int i = 0; i < N; i++) {
        const float *x = l.inp + (size_t)i * C;
        double mu = 0, var = 0;
        for (int c = 0; c < C; c++) mu += x[c];
        mu /= C;
        for (int c = 0; c < C; c++) var += (x[c] - mu) * (x[c] - mu);
        var /= C; /* biased, as torch */
        double s = 1.0 / sqrt(var + LN_EPS);
        want_mean[i] = mu;
        want_rstd[i] = s;
        for (int c = 0; c < C; c++)
            want[(size_t)i * C + c] = (x[c] - mu) * s * l.weight[c] + l.bias[c];
    }
    /* fp32 against double: a few ulp per element, far below the 1e-5 parity target */
    double e_out = rel_err_d(l.out, want, (size_t)N * C);
    double e_mean = rel_err_d(l.mean, want_mean, N), e_rstd = rel_err_d(l.rstd, want_rstd, N);
    cr_expect(e_out < 1e-6, "layernorm out relative error %.3g", e_out);
    cr_expect(e_mean < 1e-6, "layernorm mean relative error %.3g", e_mean);
    cr_expect(e_rstd < 1e-6, "layernorm rstd relative error %.3g", e_rstd);
    free(want);
    layernorm_case_free(&l);
}

Test(layernorm, backward_finite_differences_and_conventions) {
    Rng r;
    rng_seed(&r, 202);
    LayernormCase l;
    /* C = 70 spans two 64-column blocks of the dweight/dbias sums */
    layernorm_case_init(&l, &r, 6, 70);
    int N = l.N, C = l.C;
    size_t NC = (size_t)N * C;
    layernorm_forward(l.out, l.mean, l.rstd, l.inp, l.weight, l.bias, N, C, LN_EPS);
    float *dinp = zero_floats(NC), *dw = zero_floats(C), *db = zero_floats(C);
    layernorm_backward(dinp, dw, db, l.dout, l.inp, l.weight, l.mean, l.rstd, N, C);

    /* normalisation is nonlinear in x (curvature ~ rstd^2 ~ 3): h = 1e-2 leaves
     * a truncation error near 1e-4; 2e-3 is the fp32 limit with margin.
     * weight and bias enter linearly, so those differences are exact up to rounding. */
    check_grad("layernorm dinp", layernorm_loss, &l, l.inp, contiguous(NC), dinp, 200, 1e-2f, 2e-3,
               &r);
    check_grad("layernorm dweight", layernorm_loss, &l, l.weight, contiguous(C), dw, 200, 1e-2f,
               1e-4, &r);
    check_grad("layernorm dbias", layernorm_loss, &l, l.bias, contiguous(C), db, 200, 1e-2f, 1e-4,
               &r);

    /* += : each element receives one addition per call, so doubling is exact */
    layernorm_forward(l.out, l.mean, l.rstd, l.inp, l.weight, l.bias, N, C, LN_EPS);
    float *dinp2 = copy_floats(dinp, NC), *dw2 = copy_floats(dw, C), *db2 = copy_floats(db, C);
    layernorm_backward(dinp2, dw2, db2, l.dout, l.inp, l.weight, l.mean, l.rstd, N, C);
    expect_doubled("layernorm dinp", dinp, dinp2, NC, 0.0);
    expect_doubled("layernorm dweight", dw, dw2, C, 0.0);
    expect_doubled("layernorm dbias", db, db2, C, 0.0);

    /* frozen weight and bias: dinp is unchanged */
    float *dinp_only = zero_floats(NC), *db_only = zero_floats(C);
    layernorm_backward(dinp_only, NULL, NULL, l.dout, l.inp, l.weight, l.mean, l.rstd, N, C);
    expect_equal("layernorm dinp with dweight, dbias NULL", dinp_only, dinp, NC);
    layernorm_backward(NULL, NULL, db_only, l.dout, l.inp, l.weight, l.mean, l.rstd, N, C);
    expect_equal("layernorm dbias alone", db_only, db, C);

    free(dinp), free(dw), free(db), free(dinp2), free(dw2), free(db2), free(dinp_only),
        free(db_only);
    layernorm_case_free(&l);
}

/* ---------------------------------------------------------------- matmul */

typedef struct {
    int N, C, OC;
    float *out, *inp, *weight, *bias, *dout;
} MatmulCase;

static double matmul_loss(void *p) {
    MatmulCase *m = p;
    matmul_forward(m->out, m->inp, m->weight, m->bias, m->N, m->C, m->OC);
    return dot_d(m->dout, m->out, (size_t)m->N * m->OC);
}

Test(matmul, forward_matches_triple_loop) {
    Rng r;
    rng_seed(&r, 301);
    int N = 33, C = 70, OC = 65;
    float *inp = rand_floats(&r, (size_t)N * C, 1.0f), *w = rand_floats(&r, (size_t)C * OC, 1.0f);
    float *bias = rand_floats(&r, OC, 1.0f), *out = zero_floats((size_t)N * OC);
    double *want = xmalloc((size_t)N * OC * sizeof(double));
    for (int with_bias = 0; with_bias <= 1; with_bias++) {
        for (int i = 0; i < N; i++)
            for (int o = 0; o < OC; o++) {
                double s = with_bias ? bias[o] : 0.0;
                for (int c = 0; c < C; c++) s += (double)inp[i * C + c] * w[c * OC + o];
                want[(size_t)i * OC + o] = s;
            }
        /* poison out: forward must overwrite, not accumulate */
        for (size_t i = 0; i < (size_t)N * OC; i++) out[i] = 1e3f;
        matmul_forward(out, inp, w, with_bias ? bias : NULL, N, C, OC);
        /* fp32 dot products of length 70 against double: ~1e-7 relative */
        double e = rel_err_d(out, want, (size_t)N * OC);
        cr_expect(e < 1e-6, "matmul forward (bias %d) relative error %.3g", with_bias, e);
    }
    free(inp), free(w), free(bias), free(out), free(want);
}

Test(matmul, backward_finite_differences_and_conventions) {
    Rng r;
    rng_seed(&r, 302);
    /* OC = 70 spans two 64-column blocks of the dbias sums */
    int N = 5, C = 7, OC = 70;
    MatmulCase m = {N, C, OC, NULL, NULL, NULL, NULL, NULL};
    size_t NC = (size_t)N * C, COC = (size_t)C * OC, NOC = (size_t)N * OC;
    m.inp = rand_floats(&r, NC, 1.0f);
    m.weight = rand_floats(&r, COC, 1.0f);
    m.bias = rand_floats(&r, OC, 1.0f);
    m.dout = rand_floats(&r, NOC, 1.0f);
    m.out = zero_floats(NOC);
    float *dinp = zero_floats(NC), *dw = zero_floats(COC), *db = zero_floats(OC);
    matmul_backward(dinp, dw, db, m.dout, m.inp, m.weight, N, C, OC);

    /* linear in each argument: differences are exact up to fp32 rounding of L */
    check_grad("matmul dinp", matmul_loss, &m, m.inp, contiguous(NC), dinp, 200, 1e-2f, 1e-4, &r);
    check_grad("matmul dweight", matmul_loss, &m, m.weight, contiguous(COC), dw, 200, 1e-2f, 1e-4,
               &r);
    check_grad("matmul dbias", matmul_loss, &m, m.bias, contiguous(OC), db, 200, 1e-2f, 1e-4, &r);

    /* += : sgemm with beta = 1 adds its product once; at these sizes (inner
     * dimension below OpenBLAS's blocking) that makes doubling exact */
    float *dinp2 = copy_floats(dinp, NC), *dw2 = copy_floats(dw, COC), *db2 = copy_floats(db, OC);
    matmul_backward(dinp2, dw2, db2, m.dout, m.inp, m.weight, N, C, OC);
    expect_doubled("matmul dinp", dinp, dinp2, NC, 0.0);
    expect_doubled("matmul dweight", dw, dw2, COC, 0.0);
    expect_doubled("matmul dbias", db, db2, OC, 0.0);

    /* frozen weight: dinp is the full call's; and each gradient alone */
    float *a = zero_floats(NC), *b = zero_floats(COC), *c = zero_floats(OC);
    matmul_backward(a, NULL, NULL, m.dout, m.inp, m.weight, N, C, OC);
    expect_equal("matmul dinp with dweight, dbias NULL", a, dinp, NC);
    matmul_backward(NULL, b, NULL, m.dout, m.inp, m.weight, N, C, OC);
    expect_equal("matmul dweight alone", b, dw, COC);
    matmul_backward(NULL, NULL, c, m.dout, m.inp, m.weight, N, C, OC);
    expect_equal("matmul dbias alone", c, db, OC);

    free(m.inp), free(m.weight), free(m.bias), free(m.dout), free(m.out);
    free(dinp), free(dw), free(db), free(dinp2), free(dw2), free(db2), free(a), free(b), free(c);
}

/* ---------------------------------------------------------------- attention */

/* One attention shape: B rows of T tokens, NH query heads sharing KVH kv heads
 * of HS channels, scores scaled by scale (0 here means GPT-2's 1/sqrt(HS)). */
typedef struct {
    int B, T, NH, KVH, HS;
    float scale;
} AttShape;

typedef struct {
    int B, T, NH, KVH, HS, W, CQ; /* W = (NH + 2 KVH) HS, CQ = NH HS */
    float scale;
    float *qkv, *out, *lse, *dout;
} AttentionCase;

static double attention_loss(void *p) {
    AttentionCase *a = p;
    attention_forward(a->out, a->lse, a->qkv, NULL, a->B, a->T, a->NH, a->KVH, a->HS, a->scale);
    return dot_d(a->dout, a->out, (size_t)a->B * a->T * a->CQ);
}

static void attention_case_init(AttentionCase *a, Rng *r, AttShape s) {
    a->B = s.B, a->T = s.T, a->NH = s.NH, a->KVH = s.KVH, a->HS = s.HS;
    a->W = (s.NH + 2 * s.KVH) * s.HS, a->CQ = s.NH * s.HS;
    a->scale = s.scale != 0.0f ? s.scale : 1.0f / sqrtf((float)s.HS);
    /* uniform(-1, 1): scores of order 1 at these scales, so softmax rows are
     * neither flat nor one-hot */
    a->qkv = rand_floats(r, (size_t)s.B * s.T * a->W, 1.0f);
    a->dout = rand_floats(r, (size_t)s.B * s.T * a->CQ, 1.0f);
    a->out = zero_floats((size_t)s.B * s.T * a->CQ);
    a->lse = zero_floats((size_t)s.B * s.NH * s.T);
}

static void attention_case_free(AttentionCase *a) {
    free(a->qkv), free(a->dout), free(a->out), free(a->lse);
}

/* Shapes. Multi-head (KVH = NH): HS = 8 and 16, T = 1, odd T, and T = 67 / 130
 * which cross the 64-row blocks of the implementation with a ragged last
 * block. Grouped (KVH = NH/2, NH/4) and multi-query (KVH = 1), with scales
 * other than 1/sqrt(HS): 1 (GPT-2 scale_attn_weights false), 1/(3 sqrt(HS))
 * (scale_attn_by_inverse_layer_idx at layer 2), and an arbitrary 0.3. All are
 * small enough to run on one thread (see attention_parallel in attention.c),
 * which keeps the thousands of finite-difference forwards cheap; the parallel
 * paths are checked on ATT_PARALLEL_SHAPES against the double reference. */
static const AttShape ATT_SHAPES[] = {
    /* B, T, NH, KVH, HS, scale */
    {2, 7, 2, 2, 8, 0},    {1, 1, 1, 1, 16, 0},   {2, 5, 2, 2, 16, 0},
    {1, 67, 2, 2, 8, 0},   {1, 130, 1, 1, 8, 0},  {2, 7, 4, 2, 8, 1.0f},
    {2, 9, 8, 2, 4, 0.3f}, {1, 67, 4, 1, 8, 0.11785113f}, /* 1 / (3 sqrt(8)) */
    {1, 1, 4, 1, 8, 1.0f},
};
#define N_ATT_SHAPES (int)(sizeof ATT_SHAPES / sizeof ATT_SHAPES[0])
static const AttShape ATT_PARALLEL_SHAPES[] = {
    {3, 67, 4, 4, 8, 0},
    {3, 67, 8, 2, 8, 0.5f}, /* backward: B*KVH = 6 groups of 4 query heads */
};
#define N_ATT_PARALLEL_SHAPES (int)(sizeof ATT_PARALLEL_SHAPES / sizeof ATT_PARALLEL_SHAPES[0])

/* Naive causal multi-head attention in double, forward and backward, straight
 * from the definitions with the full (T,T) P matrix, on the multi-head layout
 * x (B,T,3C), C = NH HS: out (B,T,C), lse (B,NH,T) and, when dx is not NULL,
 * the gradient (B,T,3C) of sum(dout * out). */
static void mha_reference(const double *x, const float *dout, int B, int T, int NH, int HS,
                          double scale, double *out, double *lse, double *dx) {
    int C = NH * HS;
    double *P = xmalloc((size_t)T * T * sizeof(double));  /* (T,T) */
    double *dS = xmalloc((size_t)T * T * sizeof(double)); /* (T,T) */
#define QKV(b, t, part, h) (x + ((size_t)(b) * T + (t)) * 3 * C + (part) * C + (h) * HS)
#define ROW(buf, b, t, h) ((buf) + ((size_t)(b) * T + (t)) * C + (h) * HS)
    memset(out, 0, (size_t)B * T * C * sizeof(double));
    if (dx) memset(dx, 0, (size_t)B * T * 3 * C * sizeof(double));
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            for (int i = 0; i < T; i++) {
                double *p = P + (size_t)i * T; /* row i of P, (T) */
                double mx = -INFINITY, sum = 0.0;
                for (int j = 0; j < T; j++) {
                    double dot = 0.0;
                    for (int d = 0; d < HS; d++) dot += QKV(b, i, 0, h)[d] * QKV(b, j, 1, h)[d];
                    p[j] = j <= i ? dot * scale : -INFINITY; /* causal */
                    mx = fmax(mx, p[j]);
                }
                for (int j = 0; j < T; j++) sum += exp(p[j] - mx);
                lse[((size_t)b * NH + h) * T + i] = mx + log(sum);
                for (int j = 0; j < T; j++) p[j] = exp(p[j] - mx) / sum;
                double *o = ROW(out, b, i, h);
                for (int j = 0; j < T; j++)
                    for (int d = 0; d < HS; d++) o[d] += p[j] * QKV(b, j, 2, h)[d];
            }
            if (!dx) continue;
            for (int i = 0; i < T; i++) {
                const float *dO = ROW(dout, b, i, h);
                double D = 0.0; /* D_i = sum_j P_ij dP_ij */
                for (int j = 0; j < T; j++) {
                    double dP = 0.0;
                    for (int d = 0; d < HS; d++) dP += (double)dO[d] * QKV(b, j, 2, h)[d];
                    dS[(size_t)i * T + j] = dP;
                    D += P[(size_t)i * T + j] * dP;
                }
                for (int j = 0; j < T; j++) {
                    double p = P[(size_t)i * T + j], ds = p * (dS[(size_t)i * T + j] - D);
                    double *dq = dx + ((size_t)b * T + i) * 3 * C + h * HS;
                    double *dk = dx + ((size_t)b * T + j) * 3 * C + C + h * HS;
                    double *dv = dk + C;
                    for (int d = 0; d < HS; d++) {
                        dq[d] += scale * ds * QKV(b, j, 1, h)[d];
                        dk[d] += scale * ds * QKV(b, i, 0, h)[d];
                        dv[d] += p * dO[d];
                    }
                }
            }
        }
#undef QKV
#undef ROW
    free(P), free(dS);
}

/* The grouped case through the multi-head reference, as transformers'
 * repeat_kv does it: every query head h gets its own copy of the k and v of
 * kv head h / (NH/KVH); the gradient of a kv head is then the sum of its
 * copies' gradients. out (B,T,NH HS), lse (B,NH,T), dqkv (B,T,W) or NULL. */
static void attention_reference(const AttentionCase *a, double *out, double *lse,
                                double *dqkv) {
    int B = a->B, T = a->T, NH = a->NH, KVH = a->KVH, HS = a->HS, W = a->W, C = a->CQ;
    int group = NH / KVH;
    size_t rows = (size_t)B * T;
    double *x = xmalloc(rows * 3 * C * sizeof(double));  /* (B,T,3C) */
    double *dx = dqkv ? xmalloc(rows * 3 * C * sizeof(double)) : NULL;
    for (size_t t = 0; t < rows; t++)
        for (int h = 0; h < NH; h++)
            for (int d = 0; d < HS; d++) {
                const float *src = a->qkv + t * W;
                int g = h / group;
                x[t * 3 * C + h * HS + d] = src[h * HS + d];
                x[t * 3 * C + C + h * HS + d] = src[(NH + g) * HS + d];
                x[t * 3 * C + 2 * C + h * HS + d] = src[(NH + KVH + g) * HS + d];
            }
    mha_reference(x, a->dout, B, T, NH, HS, (double)a->scale, out, lse, dx);
    if (dqkv) {
        memset(dqkv, 0, rows * W * sizeof(double));
        for (size_t t = 0; t < rows; t++)
            for (int h = 0; h < NH; h++)
                for (int d = 0; d < HS; d++) {
                    int g = h / group;
                    dqkv[t * W + h * HS + d] = dx[t * 3 * C + h * HS + d];
                    dqkv[t * W + (NH + g) * HS + d] += dx[t * 3 * C + C + h * HS + d];
                    dqkv[t * W + (NH + KVH + g) * HS + d] += dx[t * 3 * C + 2 * C + h * HS + d];
                }
    }
    free(x), free(dx);
}

/* Forward of one shape against the double reference. */
static void check_attention_forward(Rng *r, AttShape s) {
    AttentionCase a;
    attention_case_init(&a, r, s);
    int B = a.B, T = a.T, NH = a.NH;
    attention_forward(a.out, a.lse, a.qkv, NULL, B, T, NH, a.KVH, a.HS, a.scale);
    double *want = xmalloc((size_t)B * T * a.CQ * sizeof(double));
    double *want_lse = xmalloc((size_t)B * NH * T * sizeof(double));
    attention_reference(&a, want, want_lse, NULL);
    /* fp32 sgemm + expf against double: ~1e-7; 2e-6 keeps well inside 1e-5 parity */
    double e_out = rel_err_d(a.out, want, (size_t)B * T * a.CQ);
    double e_lse = rel_err_d(a.lse, want_lse, (size_t)B * NH * T);
    cr_expect(e_out < 2e-6,
              "attention out, B=%d T=%d NH=%d KVH=%d HS=%d scale %g: relative error %.3g", B, T,
              NH, a.KVH, a.HS, a.scale, e_out);
    cr_expect(e_lse < 2e-6,
              "attention lse, B=%d T=%d NH=%d KVH=%d HS=%d scale %g: relative error %.3g", B, T,
              NH, a.KVH, a.HS, a.scale, e_lse);
    free(want), free(want_lse);
    attention_case_free(&a);
}

Test(attention, forward_matches_naive_double_softmax) {
    Rng r;
    rng_seed(&r, 401);
    for (int s = 0; s < N_ATT_SHAPES; s++) check_attention_forward(&r, ATT_SHAPES[s]);
    for (int s = 0; s < N_ATT_PARALLEL_SHAPES; s++)
        check_attention_forward(&r, ATT_PARALLEL_SHAPES[s]);
}

/* A grouped model is the multi-head model whose query heads of a group see
 * equal k and v: with every kv head copied into its group's heads, the
 * multi-head op must give the grouped op's out and lse, bit for bit (the
 * same sgemms on the same numbers), and dq too; dk, dv of the grouped op are
 * the sums of the copies' gradients over the group, taken in head order. */
Test(attention, grouped_equals_multi_head_with_repeated_kv) {
    Rng r;
    rng_seed(&r, 404);
    AttShape s = {2, 70, 8, 2, 8, 0.4f};
    AttentionCase a;
    attention_case_init(&a, &r, s);
    int B = a.B, T = a.T, NH = a.NH, KVH = a.KVH, HS = a.HS, W = a.W, C = a.CQ;
    int group = NH / KVH;
    size_t rows = (size_t)B * T;
    float *x = zero_floats(rows * 3 * C); /* (B,T,3C) */
    for (size_t t = 0; t < rows; t++)
        for (int h = 0; h < NH; h++) {
            const float *src = a.qkv + t * W;
            int g = h / group;
            memcpy(x + t * 3 * C + h * HS, src + h * HS, HS * sizeof(float));
            memcpy(x + t * 3 * C + C + h * HS, src + (NH + g) * HS, HS * sizeof(float));
            memcpy(x + t * 3 * C + 2 * C + h * HS, src + (NH + KVH + g) * HS, HS * sizeof(float));
        }
    float *out_mha = zero_floats(rows * C), *lse_mha = zero_floats((size_t)B * NH * T);
    attention_forward(a.out, a.lse, a.qkv, NULL, B, T, NH, KVH, HS, a.scale);
    attention_forward(out_mha, lse_mha, x, NULL, B, T, NH, NH, HS, a.scale);
    expect_equal("grouped out vs multi-head with repeated kv", a.out, out_mha, rows * C);
    expect_equal("grouped lse vs multi-head with repeated kv", a.lse, lse_mha,
                 (size_t)B * NH * T);

    float *dqkv = zero_floats(rows * W), *dx = zero_floats(rows * 3 * C);
    attention_backward(dqkv, a.dout, a.qkv, a.out, a.lse, NULL, B, T, NH, KVH, HS, a.scale);
    attention_backward(dx, a.dout, x, out_mha, lse_mha, NULL, B, T, NH, NH, HS, a.scale);
    double worst_q = 0.0, worst_kv = 0.0, norm_kv = 0.0;
    for (size_t t = 0; t < rows; t++) {
        for (int c = 0; c < C; c++)
            worst_q = fmax(worst_q, fabs(dqkv[t * W + c] - dx[t * 3 * C + c]));
        for (int g = 0; g < KVH; g++)
            for (int d = 0; d < HS; d++)
                for (int part = 1; part <= 2; part++) {
                    double sum = 0.0;
                    for (int h = g * group; h < (g + 1) * group; h++)
                        sum += dx[t * 3 * C + part * C + h * HS + d];
                    float got = dqkv[t * W + (NH + (part - 1) * KVH + g) * HS + d];
                    worst_kv = fmax(worst_kv, fabs(got - sum));
                    norm_kv = fmax(norm_kv, fabs(sum));
                }
    }
    cr_expect(worst_q == 0.0, "grouped dq differs from multi-head dq by %.3g", worst_q);
    /* the grouped op sums the heads in fp32 (through sgemm's beta = 1), the
     * check here in double: a few fp32 roundings of the largest element */
    cr_expect(worst_kv <= 1e-6 * norm_kv,
              "grouped dk, dv differ from the group sums of multi-head dk, dv by %.3g (max %.3g)",
              worst_kv, norm_kv);
    free(x), free(out_mha), free(lse_mha), free(dqkv), free(dx);
    attention_case_free(&a);
}

Test(attention, backward_finite_differences_q_k_v) {
    Rng r;
    rng_seed(&r, 402);
    for (int s = 0; s < N_ATT_SHAPES; s++) {
        AttentionCase a;
        attention_case_init(&a, &r, ATT_SHAPES[s]);
        int B = a.B, T = a.T, NH = a.NH, KVH = a.KVH, HS = a.HS, W = a.W;
        size_t nw = (size_t)B * T * W;
        attention_forward(a.out, a.lse, a.qkv, NULL, B, T, NH, KVH, HS, a.scale);
        float *dqkv = zero_floats(nw);
        attention_backward(dqkv, a.dout, a.qkv, a.out, a.lse, NULL, B, T, NH, KVH, HS, a.scale);

        /* q, k and v are checked one part of qkv at a time (q: NH heads, k and
         * v: KVH heads). Softmax is smooth with curvature of order 1 at these
         * score sizes: h = 1e-2 leaves ~1e-4 truncation. dk comes out smallest
         * and noisiest (sum_j dS_ij = 0, so it is a sum of cancelling terms
         * while L grows with T): up to 3e-4 at T = 130, hence 2e-3. With
         * KVH < NH, dk and dv sum the group's query heads, which the
         * differences see as one input feeding several heads. */
        const char *part_name[3] = {"dq", "dk", "dv"};
        size_t part_cols[3] = {(size_t)NH * HS, (size_t)KVH * HS, (size_t)KVH * HS};
        size_t part_off[3] = {0, (size_t)NH * HS, (size_t)(NH + KVH) * HS};
        for (int part = 0; part < 3; part++) {
            View view = {(size_t)B * T, part_cols[part], (size_t)W, part_off[part]};
            char what[128];
            snprintf(what, sizeof what, "attention %s, B=%d T=%d NH=%d KVH=%d HS=%d scale %g",
                     part_name[part], B, T, NH, KVH, HS, a.scale);
            if (T == 1 && part < 2) {
                /* one token attends only to itself: out = v, so q and k get no gradient */
                double numeric = check_grad(what, attention_loss, &a, a.qkv, view, dqkv, 150,
                                            1e-2f, -1.0, &r);
                double analytic = 0.0;
                for (size_t t = 0; t < (size_t)B * T; t++)
                    for (size_t c = 0; c < part_cols[part]; c++)
                        analytic = fmax(analytic, fabs(dqkv[t * W + part_off[part] + c]));
                /* analytic: dP - D cancels up to the rounding of two dot products */
                cr_expect(analytic < 1e-6 && numeric < 1e-4,
                          "%s should be zero: max analytic %.3g, numeric norm %.3g", what,
                          analytic, numeric);
                continue;
            }
            check_grad(what, attention_loss, &a, a.qkv, view, dqkv, 150, 1e-2f, 2e-3, &r);
        }
        free(dqkv);
        attention_case_free(&a);
    }
}

Test(attention, backward_matches_double_reference_and_accumulates) {
    Rng r;
    rng_seed(&r, 403);
    for (int s = 0; s < N_ATT_PARALLEL_SHAPES; s++) {
        AttentionCase a; /* several heads (or groups) per thread, ragged row block */
        attention_case_init(&a, &r, ATT_PARALLEL_SHAPES[s]);
        int B = a.B, T = a.T, NH = a.NH, KVH = a.KVH, HS = a.HS;
        size_t nw = (size_t)B * T * a.W;
        attention_forward(a.out, a.lse, a.qkv, NULL, B, T, NH, KVH, HS, a.scale);
        float *g1 = zero_floats(nw);
        attention_backward(g1, a.dout, a.qkv, a.out, a.lse, NULL, B, T, NH, KVH, HS, a.scale);

        double *want = xmalloc((size_t)B * T * a.CQ * sizeof(double));
        double *want_lse = xmalloc((size_t)B * NH * T * sizeof(double));
        double *want_dqkv = xmalloc(nw * sizeof(double));
        attention_reference(&a, want, want_lse, want_dqkv);
        /* fp32 against double over sums of ~T terms (times the group size for
         * dk, dv): ~2e-7 norm-wise seen */
        double err = rel_err_d(g1, want_dqkv, nw);
        cr_expect(err < 2e-6,
                  "attention dqkv (B=%d T=%d NH=%d KVH=%d HS=%d) vs double: relative error %.3g",
                  B, T, NH, KVH, HS, err);

        float *g2 = copy_floats(g1, nw);
        /* each dqkv element gets a single += per call (partial sums live in scratch) */
        attention_backward(g2, a.dout, a.qkv, a.out, a.lse, NULL, B, T, NH, KVH, HS, a.scale);
        expect_doubled("attention dqkv", g1, g2, nw, 0.0);
        free(g1), free(g2), free(want), free(want_lse), free(want_dqkv);
        attention_case_free(&a);
    }
}

/* Cached decoding is the causal forward seen one prefix at a time: decoding
 * positions pos .. pos+n-1 over a cache that holds the earlier positions gives
 * attention_forward's rows pos .. pos+n-1. Run with multi-head, grouped and
 * multi-query heads and a non-default scale, in chunks of 3, 1, 1, 4 and 2
 * tokens (every row, so every prefix, is compared; n > 1 is covered), over a
 * cache longer than the sequence. The caches get
 * exactly the new k and v and nothing else. Tolerance: attention_forward's
 * fp32 sgemm against decode's fp32 dots with a double softmax, ~1e-7; 1e-5
 * relative L2 per chunk. */
Test(attention, decode_equals_forward_at_every_prefix) {
    Rng r;
    rng_seed(&r, 405);
    const int kv_heads[] = {4, 2, 1}; /* NH = 4: multi-head, NH/2, multi-query */
    const int chunks[] = {3, 1, 1, 4, 2};
    int B = 2, T = 11, NH = 4, HS = 8, maxT = 14;
    for (int kh = 0; kh < 3; kh++) {
        int KVH = kv_heads[kh];
        AttentionCase a;
        attention_case_init(&a, &r, (AttShape){B, T, NH, KVH, HS, 0.6f});
        int W = a.W, CQ = a.CQ;
        attention_forward(a.out, a.lse, a.qkv, NULL, B, T, NH, KVH, HS, a.scale);
        size_t n_cache = (size_t)B * KVH * maxT * HS;
        float *kc = zero_floats(n_cache), *vc = zero_floats(n_cache);
        for (size_t i = 0; i < n_cache; i++) kc[i] = vc[i] = -7.0f; /* never written */
        int pos = 0;
        for (int c = 0; c < (int)(sizeof chunks / sizeof chunks[0]); c++) {
            int n = chunks[c];
            float *x = zero_floats((size_t)B * n * W), *o = zero_floats((size_t)B * n * CQ);
            float *want = zero_floats((size_t)B * n * CQ);
            for (int b = 0; b < B; b++)
                for (int i = 0; i < n; i++) {
                    memcpy(x + ((size_t)b * n + i) * W, a.qkv + ((size_t)b * T + pos + i) * W,
                           W * sizeof(float));
                    memcpy(want + ((size_t)b * n + i) * CQ,
                           a.out + ((size_t)b * T + pos + i) * CQ, CQ * sizeof(float));
                }
            int slot[2 * 4], at[2 * 4]; /* row b in slot B-1-b: slots need not be rows */
            for (int b = 0; b < B; b++)
                for (int i = 0; i < n; i++) {
                    slot[b * n + i] = B - 1 - b;
                    at[b * n + i] = pos + i;
                }
            attention_decode(o, kc, vc, x, slot, at, B * n, NH, KVH, HS, maxT, a.scale);
            double e = rel_err(o, want, (size_t)B * n * CQ);
            cr_expect(e < 1e-5, "decode KVH=%d, %d tokens at %d vs forward: relative error %.3g",
                      KVH, n, pos, e);
            pos += n;
            free(x), free(o), free(want);
        }
        cr_assert_eq(pos, T);
        for (int b = 0; b < B; b++)
            for (int g = 0; g < KVH; g++)
                for (int t = 0; t < maxT; t++)
                    for (int d = 0; d < HS; d++) {
                        size_t at = (((size_t)(B - 1 - b) * KVH + g) * maxT + t) * HS + d;
                        const float *row = a.qkv + ((size_t)b * T + t) * W;
                        float wk = t < T ? row[(NH + g) * HS + d] : -7.0f;
                        float wv = t < T ? row[(NH + KVH + g) * HS + d] : -7.0f;
                        cr_assert(kc[at] == wk && vc[at] == wv,
                                  "KVH=%d cache (b %d, kv head %d, t %d, %d): k %g v %g, want "
                                  "%g %g",
                                  KVH, b, g, t, d, kc[at], vc[at], wk, wv);
                    }
        free(kc), free(vc);
        attention_case_free(&a);
    }
}

/* ---------------------------------------------------------------- gelu, residual */

typedef struct {
    size_t n;
    float *inp, *out, *dout;
} GeluCase;

static double gelu_loss(void *p) {
    GeluCase *g = p;
    gelu_forward(g->out, g->inp, g->n);
    return dot_d(g->dout, g->out, g->n);
}

Test(gelu, forward_matches_tanh_formula) {
    Rng r;
    rng_seed(&r, 501);
    size_t n = 257;
    float *x = rand_floats(&r, n, 6.0f), *y = zero_floats(n);
    x[0] = 0.0f, x[1] = -10.0f, x[2] = 10.0f; /* the origin and both saturated tails */
    gelu_forward(y, x, n);
    for (size_t i = 0; i < n; i++) {
        double xd = x[i];
        double want = 0.5 * xd * (1.0 + tanh(sqrt(2.0 / M_PI) * (xd + 0.044715 * xd * xd * xd)));
        /* A few float roundings give 1e-6 relative. For x << 0, 1 + tanh(u) cancels:
         * tanhf's absolute error (~6e-8 near -1) times 0.5|x| is an absolute error
         * of ~3e-8 |x|. transformers evaluates the same fp32 formula and has the
         * same cancellation, so we allow it rather than compute more accurately
         * than the model we must match. */
        double tol = 1e-6 * fabs(want) + 1e-7 * fabs(xd);
        cr_expect(fabs(y[i] - want) <= tol, "gelu(%.9g) = %.9g, want %.12g (tolerance %.3g)",
                  x[i], y[i], want, tol);
    }
    cr_expect(y[0] == 0.0f && fabsf(y[2] - 10.0f) < 1e-6f, "gelu(0) = %g, gelu(10) = %g", y[0],
              y[2]);
    free(x), free(y);
}

Test(gelu, backward_finite_differences_and_conventions) {
    Rng r;
    rng_seed(&r, 502);
    GeluCase g = {150, NULL, NULL, NULL};
    g.inp = rand_floats(&r, g.n, 4.0f);
    g.dout = rand_floats(&r, g.n, 1.0f);
    g.out = zero_floats(g.n);
    float *dinp = zero_floats(g.n);
    gelu_backward(dinp, g.inp, g.dout, g.n);
    /* smooth elementwise function: h = 1e-2 gives ~1e-5 truncation; 1e-3 is
     * comfortably above the fp32 noise */
    check_grad("gelu dinp", gelu_loss, &g, g.inp, contiguous(g.n), dinp, 200, 1e-2f, 1e-3, &r);
    float *dinp2 = copy_floats(dinp, g.n);
    gelu_backward(dinp2, g.inp, g.dout, g.n);
    expect_doubled("gelu dinp", dinp, dinp2, g.n, 0.0);
    free(g.inp), free(g.dout), free(g.out), free(dinp), free(dinp2);
}

Test(residual, forward_adds) {
    Rng r;
    rng_seed(&r, 503);
    size_t n = 100003; /* above the OpenMP threshold, odd */
    float *a = rand_floats(&r, n, 1.0f), *b = rand_floats(&r, n, 1.0f), *out = zero_floats(n);
    residual_forward(out, a, b, n);
    for (size_t i = 0; i < n; i++)
        if (out[i] != a[i] + b[i])
            cr_assert_fail("residual out[%zu] = %.9g, want %.9g", i, out[i], a[i] + b[i]);
    cr_assert_eq(out[n - 1], a[n - 1] + b[n - 1], "last element %.9g", out[n - 1]);
    free(a), free(b), free(out);
}

/* ---------------------------------------------------------------- classifier */

typedef struct {
    int N, V;
    float *logits, *logp, *lse, *g;
    int *targets;
} ClassifierCase;

static double classifier_loss(void *p) {
    ClassifierCase *c = p;
    classifier_forward(c->logp, c->lse, c->logits, c->targets, c->N, c->V, c->V);
    return dot_d(c->g, c->logp, c->N);
}

Test(classifier, forward_matches_double_log_softmax) {
    Rng r;
    rng_seed(&r, 601);
    int N = 7, V = 1000;
    float *logits = rand_floats(&r, (size_t)N * V, 10.0f);
    /* row 1 far out in both directions: expf without max subtraction overflows */
    for (int j = 0; j < V; j++) logits[1 * V + j] += 1000.0f;
    for (int j = 0; j < V; j++) logits[2 * V + j] -= 1000.0f;
    int targets[7] = {3, 999, 0, -1, 500, 17, -5};
    float logp[7], lse[7];
    float *before = copy_floats(logits, (size_t)N * V);
    classifier_forward(logp, lse, logits, targets, N, V, V);
    expect_equal("classifier forward leaves logits untouched", logits, before, (size_t)N * V);
    for (int i = 0; i < N; i++) {
        const float *x = logits + (size_t)i * V;
        double mx = -INFINITY, sum = 0.0;
        for (int j = 0; j < V; j++) mx = x[j] > mx ? x[j] : mx;
        for (int j = 0; j < V; j++) sum += exp(x[j] - mx);
        double want_lse = mx + log(sum);
        double want_logp = targets[i] < 0 ? 0.0 : x[targets[i]] - want_lse;
        /* float result of a double-accurate computation: half an ulp of |lse| (up to
         * ~1e3 here), so 1e-6 relative to max(|lse|, 1) */
        double tol = 1e-6 * fmax(fabs(want_lse), 1.0);
        cr_expect(fabs(lse[i] - want_lse) <= tol, "row %d lse %.9g, want %.12g", i, lse[i],
                  want_lse);
        cr_expect(fabs(logp[i] - want_logp) <= tol, "row %d logp %.9g, want %.12g", i, logp[i],
                  want_logp);
        if (targets[i] < 0)
            cr_expect_eq(logp[i], 0.0f, "row %d has no target: logp %g", i, logp[i]);
    }
    free(logits), free(before);
}

Test(classifier, backward_finite_differences_and_masking) {
    Rng r;
    rng_seed(&r, 602);
    int N = 6, V = 37;
    size_t NV = (size_t)N * V;
    ClassifierCase c = {N, V, NULL, NULL, NULL, NULL, NULL};
    c.logits = rand_floats(&r, NV, 3.0f);
    c.logp = zero_floats(N);
    c.lse = zero_floats(N);
    c.g = rand_floats(&r, N, 1.0f);
    int targets[6] = {0, 36, -1, 5, 20, 11};
    c.targets = targets;
    c.g[2] = 0.0f; /* no target: weight must be 0 */
    c.g[4] = 0.0f; /* a real target with zero weight: row becomes zeros */
    classifier_forward(c.logp, c.lse, c.logits, c.targets, N, V, V);
    float *dlogits = copy_floats(c.logits, NV);
    classifier_backward(dlogits, c.lse, c.targets, c.g, N, V, V);

    /* log-softmax has curvature below 1 for logits of this size: h = 1e-2 gives
     * ~1e-5 truncation; 1e-3 is the fp32 limit with margin */
    check_grad("classifier dlogits", classifier_loss, &c, c.logits, contiguous(NV), dlogits, 250,
               1e-2f, 1e-3, &r);

    for (int j = 0; j < V; j++) {
        cr_expect_eq(dlogits[2 * V + j], 0.0f, "row without target: dlogits[%d] = %g", j,
                     dlogits[2 * V + j]);
        cr_expect_eq(dlogits[4 * V + j], 0.0f, "row with g = 0: dlogits[%d] = %g", j,
                     dlogits[4 * V + j]);
    }
    /* each live row of dlogits sums to g (1 - sum softmax) = 0 */
    for (int i = 0; i < N; i++) {
        double s = 0.0;
        for (int j = 0; j < V; j++) s += dlogits[(size_t)i * V + j];
        cr_expect(fabs(s) < 1e-6, "row %d of dlogits sums to %.3g, want 0", i, s);
    }
    free(c.logits), free(c.logp), free(c.lse), free(c.g), free(dlogits);
}

Test(classifier, backward_is_linear_in_g) {
    Rng r;
    rng_seed(&r, 603);
    int N = 4, V = 50;
    size_t NV = (size_t)N * V;
    float *logits = rand_floats(&r, NV, 3.0f), logp[4], lse[4];
    int targets[4] = {1, 2, 3, 4};
    float g[4] = {0.5f, -1.0f, 0.25f, 2.0f}, g2[4] = {1.0f, -2.0f, 0.5f, 4.0f};
    classifier_forward(logp, lse, logits, targets, N, V, V);
    float *d1 = copy_floats(logits, NV), *d2 = copy_floats(logits, NV);
    classifier_backward(d1, lse, targets, g, N, V, V);
    classifier_backward(d2, lse, targets, g2, N, V, V);
    /* scaling g by a power of two scales every product exactly */
    expect_doubled("classifier dlogits, g doubled", d1, d2, NV, 0.0);
    free(logits), free(d1), free(d2);
}

/* ---------------------------------------------------------------- adamw, reductions */

Test(adamw, matches_torch_formula_in_double_over_three_steps) {
    Rng r;
    rng_seed(&r, 701);
    size_t n = 1000;
    /* beta1 = 0.9 uses torch lerp's small-weight branch, beta1 = 0.3 the other */
    const double beta1s[2] = {0.9, 0.3};
    for (int variant = 0; variant < 2; variant++) {
        double lr = 1e-2, beta1 = beta1s[variant], beta2 = 0.95, eps = 1e-8, wd = 0.1;
        float *p = rand_floats(&r, n, 1.0f), *m = zero_floats(n), *v = zero_floats(n);
        double *pd = xmalloc(n * sizeof(double)), *md = xcalloc(n, sizeof(double)),
               *vd = xcalloc(n, sizeof(double));
        for (size_t i = 0; i < n; i++) pd[i] = p[i];
        for (int step = 1; step <= 3; step++) {
            float *g = rand_floats(&r, n, 1.0f);
            adamw_update(p, NULL, g, m, v, n, lr, beta1, beta2, eps, wd, step);
            double bc1 = 1.0 - pow(beta1, step), bc2 = 1.0 - pow(beta2, step);
            for (size_t i = 0; i < n; i++) {
                pd[i] *= 1.0 - (double)lr * wd;
                md[i] += (1.0 - beta1) * (g[i] - md[i]);
                vd[i] = beta2 * vd[i] + (1.0 - beta2) * (double)g[i] * g[i];
                double denom = sqrt(vd[i]) / sqrt(bc2) + eps;
                pd[i] -= (lr / bc1) * md[i] / denom;
            }
            free(g);
            /* a few fp32 roundings per step against exact arithmetic */
            double ep = rel_err_d(p, pd, n), em = rel_err_d(m, md, n), ev = rel_err_d(v, vd, n);
            cr_expect(ep < 1e-6, "beta1 %.1f step %d: param relative error %.3g", beta1, step, ep);
            cr_expect(em < 1e-6, "beta1 %.1f step %d: m relative error %.3g", beta1, step, em);
            cr_expect(ev < 1e-6, "beta1 %.1f step %d: v relative error %.3g", beta1, step, ev);
        }
        free(p), free(m), free(v), free(pd), free(md), free(vd);
    }
}

Test(adamw, first_step_moves_each_param_by_lr) {
    /* with m, v = 0, step 1 gives m/bc1 / sqrt(v/bc2) = sign(g): |dp| = lr after decay */
    float p[3] = {1.0f, -2.0f, 0.5f}, g[3] = {0.3f, -4.0f, 1e-3f}, m[3] = {0}, v[3] = {0};
    double lr = 1e-3, wd = 0.0;
    float p0[3] = {p[0], p[1], p[2]};
    adamw_update(p, NULL, g, m, v, 3, lr, 0.9f, 0.999f, 1e-8f, wd, 1);
    for (int i = 0; i < 3; i++) {
        float want = p0[i] - lr * (g[i] > 0 ? 1.0f : -1.0f);
        cr_expect(fabsf(p[i] - want) < 1e-6f, "param %d: %.9g, want %.9g", i, p[i], want);
    }
}

/* With fp32 master weights the update runs on master and param becomes its
 * copy: the same bits as updating param itself (kernels/ops.h adamw_update). */
Test(adamw, master_weights_give_the_same_update) {
    Rng r;
    rng_seed(&r, 703);
    size_t n = 300;
    float *p = rand_floats(&r, n, 1.0f), *m = zero_floats(n), *v = zero_floats(n);
    float *p2 = rand_floats(&r, n, 1.0f), *master = copy_floats(p, n);
    float *m2 = zero_floats(n), *v2 = zero_floats(n);
    for (int step = 1; step <= 3; step++) {
        float *g = rand_floats(&r, n, 1.0f);
        adamw_update(p, NULL, g, m, v, n, 1e-2, 0.9, 0.95, 1e-8, 0.1, step);
        adamw_update(p2, master, g, m2, v2, n, 1e-2, 0.9, 0.95, 1e-8, 0.1, step);
        free(g);
    }
    expect_equal("master", master, p, n);
    expect_equal("param from master", p2, p, n);
    expect_equal("m", m2, m, n);
    expect_equal("v", v2, v, n);
    free(p), free(m), free(v), free(p2), free(master), free(m2), free(v2);
}

/* scale_act is the compute-type scale; on the CPU the compute type is fp32 */
Test(reductions, scale_act_is_scale_inplace) {
    Rng r;
    rng_seed(&r, 705);
    size_t n = 1001;
    float *x = rand_floats(&r, n, 2.0f), *y = copy_floats(x, n);
    for (size_t i = 0; i < n; i++) y[i] *= 0.37f;
    scale_act(x, 0.37f, n);
    expect_equal("scale_act", x, y, n);
    free(x), free(y);
}

Test(reductions, sum_squares_and_scale) {
    Rng r;
    rng_seed(&r, 801);
    size_t n = 200001; /* above the OpenMP threshold */
    float *x = rand_floats(&r, n, 2.0f);
    double want = 0.0;
    for (size_t i = 0; i < n; i++) want += (double)x[i] * x[i];
    double got = sum_squares(x, n);
    /* double accumulation in a different order: ~1e-15 relative */
    cr_expect(fabs(got - want) <= 1e-12 * want, "sum_squares %.17g, want %.17g", got, want);
    float *y = copy_floats(x, n);
    scale_inplace(y, 0.37f, n);
    for (size_t i = 0; i < n; i++)
        if (y[i] != x[i] * 0.37f) cr_assert_fail("scale_inplace y[%zu] = %.9g", i, y[i]);
    cr_expect_eq(y[n - 1], x[n - 1] * 0.37f, "last element %.9g", y[n - 1]);
    free(x), free(y);
}
