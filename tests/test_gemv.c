/* tests/test_gemv.c — the one-row products of decoding. matmul_forward,
 * matmul_nt_forward and lm_head_forward take a matrix-vector path for N == 1
 * (kernels/cpu/matmul.c, lm_head.c: sgemm would pack the whole weight for a
 * single row). Each is checked against a double-precision reference, with
 * and without a bias, and against the same row computed in a batch of rows
 * (the sgemm path), on fresh random inputs. */
#include <criterion/criterion.h>

#include <stdlib.h>

#include "kernels/ops.h"
#include "util/util.h"

static float *rand_vec(Rng *r, size_t n) {
    float *v = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) v[i] = (float)(2.0 * rng_uniform(r) - 1.0);
    return v;
}

/* max |a - b| / max |b| */
static double rel(const float *a, const double *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = a[i] - b[i];
        if (d < 0) d = -d;
        if (d > num) num = d;
        double m = b[i] < 0 ? -b[i] : b[i];
        if (m > den) den = m;
    }
    return num / (den > 0 ? den : 1);
}

/* kind 0: matmul (W (C,OC)), 1: matmul_nt (W (OC,C)), 2: lm_head (W (OC,C), no bias) */
static void check(int kind, int C, int OC, uint64_t seed) {
    Rng r;
    rng_seed(&r, seed);
    int N = 3; /* rows of the batched (sgemm) call; row 1 is the one-row input */
    float *x = rand_vec(&r, (size_t)N * C), *w = rand_vec(&r, (size_t)C * OC);
    float *bias = rand_vec(&r, (size_t)OC);
    float *one = xmalloc((size_t)OC * sizeof(float)), *batch = xmalloc((size_t)N * OC * sizeof(float));
    double *want = xmalloc((size_t)OC * sizeof(double));
    for (int with_bias = 0; with_bias <= (kind < 2); with_bias++) {
        const float *b = with_bias ? bias : NULL, *x1 = x + C;
        for (int o = 0; o < OC; o++) {
            double s = b ? b[o] : 0.0;
            for (int c = 0; c < C; c++)
                s += (double)x1[c] * (kind == 0 ? w[(size_t)c * OC + o] : w[(size_t)o * C + c]);
            want[o] = s;
        }
        for (int o = 0; o < OC; o++) one[o] = 1e3f; /* must be overwritten, not added to */
        if (kind == 0) {
            matmul_forward(one, x1, w, b, 1, C, OC);
            matmul_forward(batch, x, w, b, N, C, OC);
        } else if (kind == 1) {
            matmul_nt_forward(one, x1, w, b, 1, C, OC);
            matmul_nt_forward(batch, x, w, b, N, C, OC);
        } else {
            lm_head_forward(one, x1, w, 1, C, OC);
            lm_head_forward(batch, x, w, N, C, OC);
        }
        /* fp32 dot products of length C against double: ~1e-7 relative */
        cr_expect(rel(one, want, OC) < 1e-6, "kind %d bias %d: one row vs reference %.3g", kind,
                  with_bias, rel(one, want, OC));
        double *row = xmalloc((size_t)OC * sizeof(double));
        for (int o = 0; o < OC; o++) row[o] = batch[OC + o];
        cr_expect(rel(one, row, OC) < 1e-6, "kind %d bias %d: one row vs batched row %.3g", kind,
                  with_bias, rel(one, row, OC));
        free(row);
    }
    free(x), free(w), free(bias), free(one), free(batch), free(want);
}

Test(gemv, conv1d_matmul_one_row) { check(0, 77, 130, 11); }
Test(gemv, linear_matmul_one_row) { check(1, 77, 130, 12); }
Test(gemv, lm_head_one_row) { check(2, 64, 515, 13); }
