/* tests/test_ops_llama.c — the fp32 CPU reference ops of the Llama families
 * (kernels/ops.h "Llama-family ops"): rmsnorm, qk_norm, rope, swiglu,
 * matmul_nt, cols_add / cols_copy, and the embedding without learned positions.
 *
 * The same three kinds of check as tests/test_ops.c:
 *   - forward against plain references written here (the formula in double,
 *     a triple loop, transformers' rotate_half written out, per-head rmsnorm);
 *   - every backward against central finite differences of a scalar
 *     L = sum(dout * out), computed in double from the fp32 forward;
 *   - the conventions: backward accumulates (+=), so a second call doubles the
 *     gradient, and a NULL gradient pointer is skipped without changing the rest.
 *
 * Finite-difference tolerances (as reasoned in tests/test_ops.c): the fp32
 * forward leaves a rounding error of ~1e-7 |L| in L, i.e. ~1e-7 |L| / (2h) in a
 * difference quotient, and a central difference has a truncation error of
 * O(h^2 f'''). Ops linear in the probed argument (weights of a norm, rope,
 * matmul, the up half of swiglu) have no truncation error: 1e-4 relative
 * (norm-wise over the probes) with h = 1e-2. The normalisations are nonlinear
 * (curvature ~ rstd^2, order 1 for these inputs): 2e-3 with h = 1e-2. SiLU's
 * third derivative is below 0.5: 1e-3. A wrong formula gives errors of order 1. */
#include <criterion/criterion.h>

#include "kernels/ops.h"
#include "tests/testutil_ops.h"

/* ---------------------------------------------------------------- rmsnorm */

static const float RMS_EPS = 1e-6f;

typedef struct {
    int N, C;
    float *out, *rstd, *inp, *weight, *dout;
} RmsCase;

static double rmsnorm_loss(void *p) {
    RmsCase *c = p;
    rmsnorm_forward(c->out, c->rstd, c->inp, c->weight, c->N, c->C, RMS_EPS);
    return dot_d(c->dout, c->out, (size_t)c->N * c->C);
}

static void rms_case_init(RmsCase *c, Rng *r, int N, int C) {
    c->N = N, c->C = C;
    c->inp = rand_floats(r, (size_t)N * C, 1.0f);
    for (size_t i = 0; i < (size_t)N * C; i++) c->inp[i] += 0.3f; /* non-zero mean */
    c->weight = rand_floats(r, C, 1.0f);
    c->dout = rand_floats(r, (size_t)N * C, 1.0f);
    c->out = zero_floats((size_t)N * C);
    c->rstd = zero_floats(N);
}

static void rms_case_free(RmsCase *c) {
    free(c->inp), free(c->weight), free(c->dout), free(c->out), free(c->rstd);
}

/* rmsnorm of one row in double: y = w * x / sqrt(mean(x^2) + eps); returns rstd */
static double rms_row_ref(double *y, const float *x, const float *w, int n, float eps) {
    double sq = 0.0;
    for (int c = 0; c < n; c++) sq += (double)x[c] * x[c];
    double rs = 1.0 / sqrt(sq / n + eps);
    for (int c = 0; c < n; c++) y[c] = (double)w[c] * x[c] * rs;
    return rs;
}

Test(rmsnorm, forward_matches_formula) {
    Rng r;
    rng_seed(&r, 1101);
    RmsCase c;
    rms_case_init(&c, &r, 9, 70);
    int N = c.N, C = c.C;
    for (size_t i = 0; i < (size_t)N * C; i++) c.out[i] = NAN; /* forward must overwrite */
    rmsnorm_forward(c.out, c.rstd, c.inp, c.weight, N, C, RMS_EPS);
    double *want = xmalloc((size_t)N * C * sizeof(double)), want_rstd[9];
    for (int i = 0; i < N; i++)
        want_rstd[i] = rms_row_ref(want + (size_t)i * C, c.inp + (size_t)i * C, c.weight, C,
                                   RMS_EPS);
    /* fp32 against double: a few ulp per element */
    double e_out = rel_err_d(c.out, want, (size_t)N * C), e_rstd = rel_err_d(c.rstd, want_rstd, N);
    cr_expect(e_out < 1e-6, "rmsnorm out relative error %.3g", e_out);
    cr_expect(e_rstd < 1e-6, "rmsnorm rstd relative error %.3g", e_rstd);
    free(want);
    rms_case_free(&c);
}

Test(rmsnorm, backward_finite_differences_and_conventions) {
    Rng r;
    rng_seed(&r, 1102);
    RmsCase c;
    /* 70 rows: more than one 32-row chunk of the dweight column sums */
    rms_case_init(&c, &r, 70, 37);
    int N = c.N, C = c.C;
    size_t NC = (size_t)N * C;
    rmsnorm_forward(c.out, c.rstd, c.inp, c.weight, N, C, RMS_EPS);
    float *dinp = zero_floats(NC), *dw = zero_floats(C);
    rmsnorm_backward(dinp, dw, c.dout, c.inp, c.weight, c.rstd, N, C);

    check_grad("rmsnorm dinp", rmsnorm_loss, &c, c.inp, contiguous(NC), dinp, 300, 1e-2f, 2e-3, &r);
    check_grad("rmsnorm dweight", rmsnorm_loss, &c, c.weight, contiguous(C), dw, 300, 1e-2f, 1e-4,
               &r);

    /* += : one addition per element per call, so doubling is exact */
    rmsnorm_forward(c.out, c.rstd, c.inp, c.weight, N, C, RMS_EPS);
    float *dinp2 = copy_floats(dinp, NC), *dw2 = copy_floats(dw, C);
    rmsnorm_backward(dinp2, dw2, c.dout, c.inp, c.weight, c.rstd, N, C);
    expect_doubled("rmsnorm dinp", dinp, dinp2, NC, 0.0);
    expect_doubled("rmsnorm dweight", dw, dw2, C, 0.0);

    /* frozen weight: dinp as in the full call; and dweight alone */
    float *dinp_only = zero_floats(NC), *dw_only = zero_floats(C);
    rmsnorm_backward(dinp_only, NULL, c.dout, c.inp, c.weight, c.rstd, N, C);
    expect_equal("rmsnorm dinp with dweight NULL", dinp_only, dinp, NC);
    rmsnorm_backward(NULL, dw_only, c.dout, c.inp, c.weight, c.rstd, N, C);
    expect_equal("rmsnorm dweight alone", dw_only, dw, C);

    free(dinp), free(dw), free(dinp2), free(dw2), free(dinp_only), free(dw_only);
    rms_case_free(&c);
}

/* ---------------------------------------------------------------- qk_norm */

typedef struct {
    int N, NH, KVH, HS, W;
    float *out, *rstd, *inp, *wq, *wk, *dout;
} QkCase;

static double qk_norm_loss(void *p) {
    QkCase *q = p;
    qk_norm_forward(q->out, q->rstd, q->inp, q->wq, q->wk, q->N, q->NH, q->KVH, q->HS, RMS_EPS);
    return dot_d(q->dout, q->out, (size_t)q->N * q->W);
}

static void qk_case_init(QkCase *q, Rng *r, int N, int NH, int KVH, int HS) {
    q->N = N, q->NH = NH, q->KVH = KVH, q->HS = HS, q->W = (NH + 2 * KVH) * HS;
    size_t n = (size_t)N * q->W;
    q->inp = rand_floats(r, n, 1.0f);
    q->wq = rand_floats(r, HS, 1.0f);
    q->wk = rand_floats(r, HS, 1.0f);
    q->dout = rand_floats(r, n, 1.0f);
    q->out = zero_floats(n);
    q->rstd = zero_floats((size_t)N * (NH + KVH));
}

static void qk_case_free(QkCase *q) {
    free(q->inp), free(q->wq), free(q->wk), free(q->dout), free(q->out), free(q->rstd);
}

/* Grouped (KVH < NH) and multi-head (KVH == NH) shapes. */
static const int QK_SHAPES[][4] = {{5, 4, 2, 12}, {3, 3, 3, 8}, {2, 8, 1, 16}};

Test(qk_norm, forward_is_per_head_rmsnorm) {
    Rng r;
    rng_seed(&r, 1201);
    for (int k = 0; k < 3; k++) {
        QkCase q;
        qk_case_init(&q, &r, QK_SHAPES[k][0], QK_SHAPES[k][1], QK_SHAPES[k][2], QK_SHAPES[k][3]);
        int N = q.N, NH = q.NH, KVH = q.KVH, HS = q.HS, W = q.W;
        for (size_t i = 0; i < (size_t)N * W; i++) q.out[i] = NAN;
        qk_norm_forward(q.out, q.rstd, q.inp, q.wq, q.wk, N, NH, KVH, HS, RMS_EPS);
        double *want = xmalloc((size_t)N * W * sizeof(double));
        double *want_rstd = xmalloc((size_t)N * (NH + KVH) * sizeof(double));
        for (int i = 0; i < N; i++)
            for (int g = 0; g < NH + 2 * KVH; g++) {
                const float *x = q.inp + (size_t)i * W + g * HS;
                double *y = want + (size_t)i * W + g * HS;
                if (g < NH + KVH) /* q heads with wq, k heads with wk */
                    want_rstd[i * (NH + KVH) + g] =
                        rms_row_ref(y, x, g < NH ? q.wq : q.wk, HS, RMS_EPS);
                else /* v heads copied */
                    for (int c = 0; c < HS; c++) y[c] = x[c];
            }
        double e_out = rel_err_d(q.out, want, (size_t)N * W);
        double e_rstd = rel_err_d(q.rstd, want_rstd, (size_t)N * (NH + KVH));
        cr_expect(e_out < 1e-6, "qk_norm N=%d NH=%d KVH=%d HS=%d: out relative error %.3g", N,
                  NH, KVH, HS, e_out);
        cr_expect(e_rstd < 1e-6, "qk_norm N=%d NH=%d KVH=%d HS=%d: rstd relative error %.3g", N,
                  NH, KVH, HS, e_rstd);
        /* the v part is a bit-exact copy */
        for (int i = 0; i < N; i++)
            for (int c = (NH + KVH) * HS; c < W; c++)
                cr_assert_eq(q.out[(size_t)i * W + c], q.inp[(size_t)i * W + c],
                             "qk_norm changed v at token %d column %d", i, c);
        /* each head is exactly what rmsnorm_forward makes of it on its own */
        float *head_out = zero_floats(HS), head_rstd;
        for (int i = 0; i < N; i++)
            for (int g = 0; g < NH + KVH; g++) {
                rmsnorm_forward(head_out, &head_rstd, q.inp + (size_t)i * W + g * HS,
                                g < NH ? q.wq : q.wk, 1, HS, RMS_EPS);
                expect_equal("qk_norm head against rmsnorm_forward", q.out + (size_t)i * W + g * HS,
                             head_out, HS);
            }
        free(head_out), free(want), free(want_rstd);
        qk_case_free(&q);
    }
}

Test(qk_norm, backward_finite_differences_and_conventions) {
    Rng r;
    rng_seed(&r, 1202);
    for (int k = 0; k < 3; k++) {
        QkCase q;
        /* 20 tokens: more than one 32-row chunk of the wq column sums */
        qk_case_init(&q, &r, 20, QK_SHAPES[k][1], QK_SHAPES[k][2], QK_SHAPES[k][3]);
        int N = q.N, NH = q.NH, KVH = q.KVH, HS = q.HS, W = q.W;
        size_t n = (size_t)N * W;
        qk_norm_forward(q.out, q.rstd, q.inp, q.wq, q.wk, N, NH, KVH, HS, RMS_EPS);
        float *dinp = zero_floats(n), *dwq = zero_floats(HS), *dwk = zero_floats(HS);
        qk_norm_backward(dinp, dwq, dwk, q.dout, q.inp, q.wq, q.wk, q.rstd, N, NH, KVH, HS);

        check_grad("qk_norm dinp", qk_norm_loss, &q, q.inp, contiguous(n), dinp, 300, 1e-2f, 2e-3,
                   &r);
        check_grad("qk_norm dwq", qk_norm_loss, &q, q.wq, contiguous(HS), dwq, 300, 1e-2f, 1e-4,
                   &r);
        check_grad("qk_norm dwk", qk_norm_loss, &q, q.wk, contiguous(HS), dwk, 300, 1e-2f, 1e-4,
                   &r);
        /* the v part passes dout through exactly */
        for (int i = 0; i < N; i++)
            for (int c = (NH + KVH) * HS; c < W; c++)
                cr_assert_eq(dinp[(size_t)i * W + c], q.dout[(size_t)i * W + c],
                             "qk_norm dinp of v at token %d column %d is not dout", i, c);

        /* += : exact doubling */
        qk_norm_forward(q.out, q.rstd, q.inp, q.wq, q.wk, N, NH, KVH, HS, RMS_EPS);
        float *dinp2 = copy_floats(dinp, n), *dwq2 = copy_floats(dwq, HS),
              *dwk2 = copy_floats(dwk, HS);
        qk_norm_backward(dinp2, dwq2, dwk2, q.dout, q.inp, q.wq, q.wk, q.rstd, N, NH, KVH, HS);
        expect_doubled("qk_norm dinp", dinp, dinp2, n, 0.0);
        expect_doubled("qk_norm dwq", dwq, dwq2, HS, 0.0);
        expect_doubled("qk_norm dwk", dwk, dwk2, HS, 0.0);

        /* NULL weight gradients: the others as in the full call */
        float *a = zero_floats(n), *b = zero_floats(HS), *c = zero_floats(HS);
        qk_norm_backward(a, NULL, NULL, q.dout, q.inp, q.wq, q.wk, q.rstd, N, NH, KVH, HS);
        expect_equal("qk_norm dinp with dwq, dwk NULL", a, dinp, n);
        qk_norm_backward(NULL, b, NULL, q.dout, q.inp, q.wq, q.wk, q.rstd, N, NH, KVH, HS);
        expect_equal("qk_norm dwq alone", b, dwq, HS);
        qk_norm_backward(NULL, NULL, c, q.dout, q.inp, q.wq, q.wk, q.rstd, N, NH, KVH, HS);
        expect_equal("qk_norm dwk alone", c, dwk, HS);

        free(dinp), free(dwq), free(dwk), free(dinp2), free(dwq2), free(dwk2), free(a), free(b),
            free(c);
        qk_case_free(&q);
    }
}

/* ---------------------------------------------------------------- rope */

/* transformers' default rotary tables, (maxT, HS/2): inv_freq[i] =
 * theta^(-2i/HS), angle = p * inv_freq[i]. */
static void rope_tables(float *cos_tab, float *sin_tab, int maxT, int HS, double theta) {
    int h = HS / 2;
    for (int p = 0; p < maxT; p++)
        for (int i = 0; i < h; i++) {
            double a = p * pow(theta, -2.0 * i / HS);
            cos_tab[p * h + i] = (float)cos(a);
            sin_tab[p * h + i] = (float)sin(a);
        }
}

typedef struct {
    int B, T, pos0, NH, KVH, HS, W, maxT;
    float *x, *work, *cos_tab, *sin_tab, *dout;
} RopeCase;

static double rope_loss(void *p) {
    RopeCase *c = p;
    size_t n = (size_t)c->B * c->T * c->W;
    memcpy(c->work, c->x, n * sizeof(float));
    rope_forward(c->work, c->cos_tab, c->sin_tab, NULL, c->B, c->T, c->pos0, c->NH, c->KVH, c->HS);
    return dot_d(c->dout, c->work, n);
}

static void rope_case_init(RopeCase *c, Rng *r, int B, int T, int pos0, int NH, int KVH, int HS) {
    c->B = B, c->T = T, c->pos0 = pos0, c->NH = NH, c->KVH = KVH, c->HS = HS;
    c->W = (NH + 2 * KVH) * HS;
    c->maxT = pos0 + T + 3; /* rows past the last position: never read */
    size_t n = (size_t)B * T * c->W;
    c->x = rand_floats(r, n, 1.0f);
    c->dout = rand_floats(r, n, 1.0f);
    c->work = zero_floats(n);
    c->cos_tab = xmalloc((size_t)c->maxT * HS / 2 * sizeof(float));
    c->sin_tab = xmalloc((size_t)c->maxT * HS / 2 * sizeof(float));
    rope_tables(c->cos_tab, c->sin_tab, c->maxT, HS, 10000.0);
}

static void rope_case_free(RopeCase *c) {
    free(c->x), free(c->dout), free(c->work), free(c->cos_tab), free(c->sin_tab);
}

/* B, T, pos0, NH, KVH, HS: grouped, multi-head, and decoding (pos0 > 0, T = 1) */
static const int ROPE_SHAPES[][6] = {{2, 7, 0, 4, 2, 16}, {1, 5, 9, 2, 2, 6}, {3, 1, 17, 4, 1, 8}};

Test(rope, forward_matches_rotate_half) {
    Rng r;
    rng_seed(&r, 1301);
    for (int k = 0; k < 3; k++) {
        const int *s = ROPE_SHAPES[k];
        RopeCase c;
        rope_case_init(&c, &r, s[0], s[1], s[2], s[3], s[4], s[5]);
        int B = c.B, T = c.T, NH = c.NH, KVH = c.KVH, HS = c.HS, W = c.W, h = HS / 2;
        size_t n = (size_t)B * T * W;
        memcpy(c.work, c.x, n * sizeof(float));
        rope_forward(c.work, c.cos_tab, c.sin_tab, NULL, B, T, c.pos0, NH, KVH, HS);
        /* q * cos + rotate_half(q) * sin with HF's full-width tables
         * cos = cat(freqs, freqs).cos() and rotate_half(x) = cat(-x2, x1) */
        double *want = xmalloc(n * sizeof(double));
        double *cosf = xmalloc(HS * sizeof(double)), *sinf = xmalloc(HS * sizeof(double));
        double *rot = xmalloc(HS * sizeof(double));
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) {
                int p = c.pos0 + t;
                for (int d = 0; d < HS; d++) {
                    cosf[d] = c.cos_tab[p * h + d % h];
                    sinf[d] = c.sin_tab[p * h + d % h];
                }
                for (int g = 0; g < NH + 2 * KVH; g++) {
                    const float *x = c.x + ((size_t)b * T + t) * W + g * HS;
                    double *y = want + ((size_t)b * T + t) * W + g * HS;
                    for (int d = 0; d < HS; d++) rot[d] = d < h ? -(double)x[d + h] : x[d - h];
                    for (int d = 0; d < HS; d++)
                        y[d] = g < NH + KVH ? x[d] * cosf[d] + rot[d] * sinf[d] : x[d];
                }
            }
        double e = rel_err_d(c.work, want, n);
        cr_expect(e < 1e-6, "rope shape %d: relative error %.3g against rotate_half", k, e);
        for (size_t i = 0; i < n; i++)
            if ((int)(i % W) >= (NH + KVH) * HS)
                cr_assert_eq(c.work[i], c.x[i], "rope changed a v element at %zu", i);
        free(want), free(cosf), free(sinf), free(rot);
        rope_case_free(&c);
    }
}

Test(rope, backward_finite_differences_and_inverse) {
    Rng r;
    rng_seed(&r, 1302);
    for (int k = 0; k < 3; k++) {
        const int *s = ROPE_SHAPES[k];
        RopeCase c;
        rope_case_init(&c, &r, s[0], s[1], s[2], s[3], s[4], s[5]);
        size_t n = (size_t)c.B * c.T * c.W;
        /* in place on a copy of dout: the gradient of sum(dout * rope(x)) */
        float *dx = copy_floats(c.dout, n);
        rope_backward(dx, c.cos_tab, c.sin_tab, NULL, c.B, c.T, c.pos0, c.NH, c.KVH, c.HS);
        /* linear in x: differences exact up to the rounding of L */
        check_grad("rope dqkv", rope_loss, &c, c.x, contiguous(n), dx, 400, 1e-2f, 1e-4, &r);
        /* v heads: the gradient is dout itself */
        for (size_t i = 0; i < n; i++)
            if ((int)(i % c.W) >= (c.NH + c.KVH) * c.HS)
                cr_assert_eq(dx[i], c.dout[i], "rope_backward changed a v element at %zu", i);
        /* a rotation's transpose is its inverse (cos^2 + sin^2 = 1 up to fp32
         * rounding of the tables): backward undoes forward to ~1e-7 */
        memcpy(c.work, c.x, n * sizeof(float));
        rope_forward(c.work, c.cos_tab, c.sin_tab, NULL, c.B, c.T, c.pos0, c.NH, c.KVH, c.HS);
        rope_backward(c.work, c.cos_tab, c.sin_tab, NULL, c.B, c.T, c.pos0, c.NH, c.KVH, c.HS);
        double e = rel_err(c.work, c.x, n);
        cr_expect(e < 1e-6, "rope_backward(rope_forward(x)) differs from x by %.3g", e);
        free(dx);
        rope_case_free(&c);
    }
}

/* An odd head size has no rotate_half pairs: the op stops with a message
 * (the model refuses such a head_dim before). */
Test(rope, odd_head_size_stops, .exit_code = 1) {
    float x[3 * 5] = {0}, tab[8] = {0};
    rope_forward(x, tab, tab, NULL, 1, 1, 0, 1, 1, 5);
}

/* ---------------------------------------------------------------- swiglu */

typedef struct {
    int N, I;
    float *out, *inp, *dout;
} SwigluCase;

static double swiglu_loss(void *p) {
    SwigluCase *s = p;
    swiglu_forward(s->out, s->inp, s->N, s->I);
    return dot_d(s->dout, s->out, (size_t)s->N * s->I);
}

Test(swiglu, forward_matches_formula) {
    Rng r;
    rng_seed(&r, 1401);
    int N = 7, I = 33;
    /* gate over [-12, 12]: SiLU's both tails and the middle */
    float *inp = rand_floats(&r, (size_t)N * 2 * I, 12.0f), *out = zero_floats((size_t)N * I);
    for (size_t i = 0; i < (size_t)N * I; i++) out[i] = NAN;
    swiglu_forward(out, inp, N, I);
    double *want = xmalloc((size_t)N * I * sizeof(double));
    for (int i = 0; i < N; i++)
        for (int j = 0; j < I; j++) {
            double g = inp[(size_t)i * 2 * I + j], u = inp[(size_t)i * 2 * I + I + j];
            want[(size_t)i * I + j] = g / (1.0 + exp(-g)) * u;
        }
    double e = rel_err_d(out, want, (size_t)N * I);
    cr_expect(e < 1e-6, "swiglu forward relative error %.3g", e);
    free(inp), free(out), free(want);
}

Test(swiglu, backward_finite_differences_and_conventions) {
    Rng r;
    rng_seed(&r, 1402);
    SwigluCase s = {6, 21, NULL, NULL, NULL};
    size_t n_in = (size_t)s.N * 2 * s.I, n_out = (size_t)s.N * s.I;
    s.inp = rand_floats(&r, n_in, 3.0f);
    s.dout = rand_floats(&r, n_out, 1.0f);
    s.out = zero_floats(n_out);
    float *dinp = zero_floats(n_in);
    swiglu_backward(dinp, s.dout, s.inp, s.N, s.I);
    /* gate and up together: up is linear, gate nonlinear with |silu'''| < 0.5 */
    check_grad("swiglu dinp", swiglu_loss, &s, s.inp, contiguous(n_in), dinp, 300, 1e-2f, 1e-3, &r);
    float *dinp2 = copy_floats(dinp, n_in);
    swiglu_backward(dinp2, s.dout, s.inp, s.N, s.I);
    expect_doubled("swiglu dinp", dinp, dinp2, n_in, 0.0);
    free(s.inp), free(s.dout), free(s.out), free(dinp), free(dinp2);
}

/* ---------------------------------------------------------------- matmul_nt */

typedef struct {
    int N, C, OC;
    float *out, *inp, *weight, *bias, *dout;
} MatmulNtCase;

static double matmul_nt_loss(void *p) {
    MatmulNtCase *m = p;
    matmul_nt_forward(m->out, m->inp, m->weight, m->bias, m->N, m->C, m->OC);
    return dot_d(m->dout, m->out, (size_t)m->N * m->OC);
}

Test(matmul_nt, forward_matches_triple_loop) {
    Rng r;
    rng_seed(&r, 1501);
    int N = 33, C = 70, OC = 65;
    float *inp = rand_floats(&r, (size_t)N * C, 1.0f), *w = rand_floats(&r, (size_t)OC * C, 1.0f);
    float *bias = rand_floats(&r, OC, 1.0f), *out = zero_floats((size_t)N * OC);
    double *want = xmalloc((size_t)N * OC * sizeof(double));
    for (int with_bias = 0; with_bias <= 1; with_bias++) {
        for (int i = 0; i < N; i++)
            for (int o = 0; o < OC; o++) {
                double s = with_bias ? bias[o] : 0.0;
                for (int c = 0; c < C; c++) s += (double)inp[i * C + c] * w[o * C + c];
                want[(size_t)i * OC + o] = s;
            }
        for (size_t i = 0; i < (size_t)N * OC; i++) out[i] = 1e3f; /* overwrite, not += */
        matmul_nt_forward(out, inp, w, with_bias ? bias : NULL, N, C, OC);
        /* fp32 dot products of length 70 against double: ~1e-7 relative */
        double e = rel_err_d(out, want, (size_t)N * OC);
        cr_expect(e < 1e-6, "matmul_nt forward (bias %d) relative error %.3g", with_bias, e);
    }
    free(inp), free(w), free(bias), free(out), free(want);
}

Test(matmul_nt, backward_finite_differences_and_conventions) {
    Rng r;
    rng_seed(&r, 1502);
    /* OC = 70 spans two 64-column blocks of the dbias sums */
    int N = 5, C = 7, OC = 70;
    MatmulNtCase m = {N, C, OC, NULL, NULL, NULL, NULL, NULL};
    size_t NC = (size_t)N * C, W = (size_t)OC * C, NOC = (size_t)N * OC;
    m.inp = rand_floats(&r, NC, 1.0f);
    m.weight = rand_floats(&r, W, 1.0f);
    m.bias = rand_floats(&r, OC, 1.0f);
    m.dout = rand_floats(&r, NOC, 1.0f);
    m.out = zero_floats(NOC);
    float *dinp = zero_floats(NC), *dw = zero_floats(W), *db = zero_floats(OC);
    matmul_nt_backward(dinp, dw, db, m.dout, m.inp, m.weight, N, C, OC);

    /* linear in each argument: exact up to the rounding of L */
    check_grad("matmul_nt dinp", matmul_nt_loss, &m, m.inp, contiguous(NC), dinp, 200, 1e-2f, 1e-4,
               &r);
    check_grad("matmul_nt dweight", matmul_nt_loss, &m, m.weight, contiguous(W), dw, 200, 1e-2f,
               1e-4, &r);
    check_grad("matmul_nt dbias", matmul_nt_loss, &m, m.bias, contiguous(OC), db, 200, 1e-2f, 1e-4,
               &r);

    /* += : sgemm with beta = 1 adds its product once (inner dimensions below
     * OpenBLAS's blocking), so doubling is exact */
    float *dinp2 = copy_floats(dinp, NC), *dw2 = copy_floats(dw, W), *db2 = copy_floats(db, OC);
    matmul_nt_backward(dinp2, dw2, db2, m.dout, m.inp, m.weight, N, C, OC);
    expect_doubled("matmul_nt dinp", dinp, dinp2, NC, 0.0);
    expect_doubled("matmul_nt dweight", dw, dw2, W, 0.0);
    expect_doubled("matmul_nt dbias", db, db2, OC, 0.0);

    /* each gradient alone is what the full call gives */
    float *a = zero_floats(NC), *b = zero_floats(W), *c = zero_floats(OC);
    matmul_nt_backward(a, NULL, NULL, m.dout, m.inp, m.weight, N, C, OC);
    expect_equal("matmul_nt dinp with dweight, dbias NULL", a, dinp, NC);
    matmul_nt_backward(NULL, b, NULL, m.dout, m.inp, m.weight, N, C, OC);
    expect_equal("matmul_nt dweight alone", b, dw, W);
    matmul_nt_backward(NULL, NULL, c, m.dout, m.inp, m.weight, N, C, OC);
    expect_equal("matmul_nt dbias alone", c, db, OC);

    /* it is matmul (Conv1D layout) with the transposed weight */
    float *wt = xmalloc(W * sizeof(float)), *out_conv = zero_floats(NOC);
    for (int o = 0; o < OC; o++)
        for (int k = 0; k < C; k++) wt[(size_t)k * OC + o] = m.weight[(size_t)o * C + k];
    matmul_nt_forward(m.out, m.inp, m.weight, m.bias, N, C, OC);
    matmul_forward(out_conv, m.inp, wt, m.bias, N, C, OC);
    double e = rel_err(m.out, out_conv, NOC);
    cr_expect(e < 1e-6, "matmul_nt against matmul with W^T: relative error %.3g", e);

    free(m.inp), free(m.weight), free(m.bias), free(m.dout), free(m.out);
    free(dinp), free(dw), free(db), free(dinp2), free(dw2), free(db2), free(a), free(b), free(c);
    free(wt), free(out_conv);
}

/* Empty shapes: N == 0 touches nothing; C == 0 gives out = bias (an empty
 * sum; 0 without a bias) and dbias its column sums. */
Test(matmul_nt, empty_shapes) {
    Rng r;
    rng_seed(&r, 1503);
    int N = 4, OC = 9;
    float *bias = rand_floats(&r, OC, 1.0f), *dout = rand_floats(&r, (size_t)N * OC, 1.0f);
    float *out = rand_floats(&r, (size_t)N * OC, 1.0f), *keep = copy_floats(out, (size_t)N * OC);
    float *db = zero_floats(OC);
    matmul_nt_forward(out, dout, bias, bias, 0, 3, OC);
    expect_equal("matmul_nt N = 0 left out alone", out, keep, (size_t)N * OC);
    matmul_nt_forward(out, dout, bias, bias, N, 0, OC);
    for (int i = 0; i < N; i++)
        for (int o = 0; o < OC; o++)
            cr_assert_eq(out[i * OC + o], bias[o], "matmul_nt C = 0: out[%d,%d] is not the bias", i,
                         o);
    matmul_nt_forward(out, dout, bias, NULL, N, 0, OC);
    cr_assert_eq(max_abs(out, (size_t)N * OC), 0.0, "matmul_nt C = 0 without bias: out not 0");
    matmul_nt_backward(NULL, NULL, db, dout, dout, bias, N, 0, OC);
    for (int o = 0; o < OC; o++) {
        double s = 0.0;
        for (int i = 0; i < N; i++) s += dout[i * OC + o];
        cr_expect(fabs(db[o] - s) < 1e-6, "matmul_nt C = 0: dbias[%d] = %g, want %g", o, db[o], s);
    }
    free(bias), free(dout), free(out), free(keep), free(db);
}

/* ---------------------------------------------------------------- cols */

Test(cols, add_and_copy_touch_only_their_slice) {
    Rng r;
    rng_seed(&r, 1601);
    int N = 6, ld = 23, n = 7, j0 = 9; /* the slice: columns 9..15 of 23 */
    float *wide = rand_floats(&r, (size_t)N * ld, 1.0f), *orig = copy_floats(wide, (size_t)N * ld);
    float *src = rand_floats(&r, (size_t)N * n, 1.0f), *dense = zero_floats((size_t)N * n);
    cols_add(wide + j0, ld, src, N, n);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < ld; j++) {
            float want = orig[i * ld + j];
            if (j >= j0 && j < j0 + n) want += src[i * n + j - j0];
            cr_assert_eq(wide[i * ld + j], want, "cols_add: [%d,%d] = %g, want %g", i, j,
                         wide[i * ld + j], want);
        }
    cols_copy(dense, orig + j0, ld, N, n);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < n; j++)
            cr_assert_eq(dense[i * n + j], orig[i * ld + j0 + j], "cols_copy: [%d,%d]", i, j);
    free(wide), free(orig), free(src), free(dense);
}

/* ---------------------------------------------------------------- encoder */

/* No learned positions (Llama families): wpe and dwpe NULL. */
Test(encoder, without_positions) {
    Rng r;
    rng_seed(&r, 1701);
    int B = 2, T = 5, C = 70, V = 4;
    int inp[10];
    for (int i = 0; i < B * T; i++) inp[i] = (int)rng_below(&r, V);
    float *wte = rand_floats(&r, (size_t)V * C, 1.0f), *out = zero_floats((size_t)B * T * C);
    encoder_forward(out, inp, wte, NULL, NULL, B, T, C);
    for (int bt = 0; bt < B * T; bt++)
        for (int c = 0; c < C; c++)
            cr_assert_eq(out[bt * C + c], wte[inp[bt] * C + c], "out[%d,%d] is not wte's", bt, c);
    /* dwte with dwpe NULL: the scatter-add of dout rows by token id */
    float *dout = rand_floats(&r, (size_t)B * T * C, 1.0f), *dwte = zero_floats((size_t)V * C);
    double *want = xcalloc((size_t)V * C, sizeof(double));
    encoder_backward(dwte, NULL, dout, inp, NULL, NULL, NULL, B, T, C);
    for (int bt = 0; bt < B * T; bt++)
        for (int c = 0; c < C; c++) want[inp[bt] * C + c] += dout[bt * C + c];
    double e = rel_err_d(dwte, want, (size_t)V * C);
    cr_expect(e < 1e-6, "encoder_backward dwte with dwpe NULL: relative error %.3g", e);
    free(wte), free(out), free(dout), free(dwte), free(want);
}
