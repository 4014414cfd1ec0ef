/* tests/testutil_ops.h — the scaffolding of the op tests (tests/test_ops.c,
 * tests/test_ops_llama.c): float buffers, errors against double references,
 * the central finite-difference gradient check, and the two backward
 * conventions (a second call accumulates, a NULL gradient is skipped).
 *
 * check_grad compares the probed gradient vector norm-wise with the analytic
 * one; why that and what tolerance each op gets is reasoned in the header of
 * tests/test_ops.c. The step actually taken is (float)(x+h) - (float)(x-h),
 * not 2h, so fp32 rounding of the probe does not show up as error. */
#ifndef RETORT_TESTUTIL_OPS_H
#define RETORT_TESTUTIL_OPS_H

#include "tests/testutil.h"

static inline float *rand_floats(Rng *r, size_t n, float scale) {
    float *x = xmalloc(n * sizeof(float));
    fill_uniform(r, x, n, scale);
    return x;
}

static inline float *zero_floats(size_t n) { return xcalloc(n ? n : 1, sizeof(float)); }

static inline float *copy_floats(const float *x, size_t n) {
    float *y = xmalloc(n * sizeof(float));
    memcpy(y, x, n * sizeof(float));
    return y;
}

static inline double dot_d(const float *a, const float *b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

static inline double max_abs(const float *x, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++) m = fabs(x[i]) > m ? fabs(x[i]) : m;
    return m;
}

/* ||a - b|| / ||b|| for a float result against a double reference. */
static inline double rel_err_d(const float *a, const double *b, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += b[i] * b[i];
    }
    return sqrt(num) / (den > 1e-300 ? sqrt(den) : 1e-150);
}

/* Runs the op's forward with the current inputs and returns the scalar loss. */
typedef double (*LossFn)(void *ctx);

/* Probed elements of a tensor: `rows` rows of `cols` elements, `stride` apart,
 * starting at `offset` (a contiguous tensor is one row). It lets the attention
 * test probe the q, k and v thirds of the interleaved qkv buffer separately. */
typedef struct {
    size_t rows, cols, stride, offset;
} View;

static inline View contiguous(size_t n) { return (View){1, n, n, 0}; }

/* Central differences of loss() with respect to the elements of x in `view`,
 * compared norm-wise with `analytic` (indexed like x). All elements when there
 * are at most max_probe, else max_probe random ones. Returns the numeric
 * gradient's norm over the probes; a negative tol only measures it (for a
 * gradient that should vanish, which the caller checks). */
static inline double check_grad(const char *what, LossFn loss, void *ctx, float *x, View view,
                                const float *analytic, size_t max_probe, float h, double tol,
                                Rng *r) {
    size_t n = view.rows * view.cols;
    size_t probes = n <= max_probe ? n : max_probe;
    double num2 = 0.0, ana2 = 0.0, diff2 = 0.0, worst = -1.0, worst_num = 0, worst_ana = 0;
    size_t worst_idx = 0;
    for (size_t k = 0; k < probes; k++) {
        size_t flat = n <= max_probe ? k : (size_t)rng_below(r, n);
        size_t idx = view.offset + (flat / view.cols) * view.stride + flat % view.cols;
        float x0 = x[idx], xp = x0 + h, xm = x0 - h;
        x[idx] = xp;
        double loss_plus = loss(ctx);
        x[idx] = xm;
        double loss_minus = loss(ctx);
        x[idx] = x0;
        double numeric = (loss_plus - loss_minus) / ((double)xp - (double)xm);
        double d = numeric - analytic[idx];
        num2 += numeric * numeric;
        ana2 += (double)analytic[idx] * analytic[idx];
        diff2 += d * d;
        if (fabs(d) > worst) {
            worst = fabs(d);
            worst_idx = idx;
            worst_num = numeric;
            worst_ana = analytic[idx];
        }
    }
    if (tol < 0) return sqrt(num2);
    double err = sqrt(diff2) / sqrt(ana2 > 1e-300 ? ana2 : 1e-300);
    /* a vanishing gradient would make the comparison meaningless */
    cr_assert(sqrt(num2) > 1e-3, "%s: numeric gradient norm %.3g is too small to test", what,
              sqrt(num2));
    cr_expect(err < tol,
              "%s: finite-difference relative error %.3g > %.3g over %zu probes "
              "(worst at %zu: numeric %.7g, analytic %.7g)",
              what, err, tol, probes, worst_idx, worst_num, worst_ana);
    return sqrt(num2);
}

/* After a second backward call into the same buffers, g2 must be 2 * g1.
 * tol is relative to max|g1|; 0 demands bit-exact doubling. */
static inline void expect_doubled(const char *what, const float *g1, const float *g2, size_t n,
                                  double tol) {
    double worst = 0.0;
    size_t worst_idx = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)g2[i] - 2.0 * (double)g1[i]);
        if (d > worst) {
            worst = d;
            worst_idx = i;
        }
    }
    double scale = max_abs(g1, n);
    cr_assert(scale > 0.0, "%s: gradient is all zeros", what);
    cr_expect(worst <= tol * scale,
              "%s: second backward call should double the gradient: |g2 - 2 g1| = %.3g at %zu "
              "(g1 %.9g, g2 %.9g), allowed %.3g",
              what, worst, worst_idx, g1[worst_idx], g2[worst_idx], tol * scale);
}

static inline void expect_equal(const char *what, const float *a, const float *b, size_t n) {
    double d = max_abs_diff(a, b, n);
    cr_expect(d == 0.0, "%s: expected identical results, max |diff| = %.3g", what, d);
}

#endif
