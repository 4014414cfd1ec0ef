/* kernels/cpu/rmsnorm.c — RMSNorm (Llama families) and the per-head q/k RMSNorm
 * of Qwen3, as transformers' LlamaRMSNorm / Qwen3RMSNorm compute them in fp32:
 *     rstd = 1 / sqrt(mean(x^2) + eps),   y = weight * (x * rstd)
 * (no mean subtraction, no bias). The sum of squares runs in double per row.
 *
 * The trick: both ops are one routine over "rows" of HS values. rmsnorm is the
 * case of one head per token, HS = C (NH = 1, KVH = 0). qk_norm views a
 * token's fused qkv (W = (NH + 2 KVH) HS) as NH + 2 KVH rows of HS: the NH q
 * heads are normed with wq, the KVH k heads with wk, the KVH v heads copied
 * (forward) or passed through (backward: dinp += dout). rstd is (N, NH+KVH)
 * row-major: one value per normed head.
 *
 * Backward, with xhat = x * rstd and dnorm = dout * weight (mean over the HS
 * values of the row):
 *     dx = rstd * (dnorm - xhat * mean(dnorm * xhat))
 * is row-local, in parallel over rows. dweight = sum over rows of dout * xhat
 * (over every token and every head of the weight's group) is a column sum:
 * the rows are cut into a fixed number of chunks (a function of the row count
 * only), each chunk summed in row order in double by one thread, then the
 * chunk sums added in chunk order, so the bits never depend on the threads. */
#include <math.h>
#include <stdlib.h>

#include "kernels/ops.h"
#include "util/util.h"

/* Row loops are memory bound: threads only pay above this many elements. */
#define RMS_PAR_MIN 32768
/* Column-sum chunks of the weight gradient: at least RMS_CHUNK_MIN_ROWS rows
 * each, at most RMS_MAX_CHUNKS of them. */
#define RMS_CHUNK_MIN_ROWS 32
#define RMS_MAX_CHUNKS 64

/* The shape of one call: N tokens of (NH + 2 KVH) heads of HS values; the first
 * NH + KVH heads are normed (q with wq, k with wk), the rest copied. */
typedef struct {
    int N, NH, KVH, HS;
} RmsShape;

static int rms_heads(RmsShape s) { return s.NH + 2 * s.KVH; }
static int rms_normed(RmsShape s) { return s.NH + s.KVH; }

static void rms_forward_rows(float *out, float *rstd, const float *inp, const float *wq,
                             const float *wk, RmsShape s, float eps) {
    int heads = rms_heads(s), normed = rms_normed(s), HS = s.HS;
    long rows = (long)s.N * heads;
    #pragma omp parallel for if (rows * HS > RMS_PAR_MIN)
    for (long r = 0; r < rows; r++) {
        long i = r / heads;
        int g = (int)(r % heads);
        const float *x = inp + (size_t)r * HS; /* (HS): the rows are contiguous */
        float *y = out + (size_t)r * HS;       /* (HS) */
        if (g >= normed) {                     /* a v head: copied unchanged */
            for (int c = 0; c < HS; c++) y[c] = x[c];
            continue;
        }
        const float *w = g < s.NH ? wq : wk; /* (HS) */
        double sq = 0.0;
        for (int c = 0; c < HS; c++) sq += (double)x[c] * x[c];
        float rs = (float)(1.0 / sqrt(sq / HS + (double)eps));
        for (int c = 0; c < HS; c++) y[c] = w[c] * (x[c] * rs);
        rstd[i * normed + g] = rs;
    }
}

static void rms_backward_dinp(float *dinp, const float *dout, const float *inp, const float *wq,
                              const float *wk, const float *rstd, RmsShape s) {
    int heads = rms_heads(s), normed = rms_normed(s), HS = s.HS;
    long rows = (long)s.N * heads;
    #pragma omp parallel for if (rows * HS > RMS_PAR_MIN)
    for (long r = 0; r < rows; r++) {
        long i = r / heads;
        int g = (int)(r % heads);
        const float *x = inp + (size_t)r * HS;   /* (HS) */
        const float *dy = dout + (size_t)r * HS; /* (HS) */
        float *dx = dinp + (size_t)r * HS;       /* (HS) += */
        if (g >= normed) { /* a v head: the identity's gradient */
            for (int c = 0; c < HS; c++) dx[c] += dy[c];
            continue;
        }
        const float *w = g < s.NH ? wq : wk; /* (HS) */
        float rs = rstd[i * normed + g];
        double sum_dnorm_xhat = 0.0;
        for (int c = 0; c < HS; c++) sum_dnorm_xhat += (double)(dy[c] * w[c]) * (x[c] * rs);
        float mean_dnorm_xhat = (float)(sum_dnorm_xhat / HS);
        for (int c = 0; c < HS; c++) {
            float xhat = x[c] * rs;
            dx[c] += rs * (dy[c] * w[c] - xhat * mean_dnorm_xhat);
        }
    }
}

/* dw (HS) += sum over tokens i and heads g0 .. g0+G-1 of dout * xhat. */
static void rms_backward_dweight(float *dw, const float *dout, const float *inp,
                                 const float *rstd, RmsShape s, int g0, int G) {
    int heads = rms_heads(s), normed = rms_normed(s), HS = s.HS;
    long rows = (long)s.N * G; /* row q: token q / G, head g0 + q % G */
    if (rows <= 0) return;
    long n_chunks = (rows + RMS_CHUNK_MIN_ROWS - 1) / RMS_CHUNK_MIN_ROWS;
    if (n_chunks > RMS_MAX_CHUNKS) n_chunks = RMS_MAX_CHUNKS;
    long per_chunk = (rows + n_chunks - 1) / n_chunks;
    n_chunks = (rows + per_chunk - 1) / per_chunk;
    double *partial = xcalloc((size_t)n_chunks * HS, sizeof(double)); /* (n_chunks, HS) */
    #pragma omp parallel for if (rows * HS > RMS_PAR_MIN)
    for (long k = 0; k < n_chunks; k++) {
        double *acc = partial + (size_t)k * HS; /* (HS) */
        long q1 = (k + 1) * per_chunk < rows ? (k + 1) * per_chunk : rows;
        for (long q = k * per_chunk; q < q1; q++) {
            long i = q / G;
            int g = g0 + (int)(q % G);
            size_t at = ((size_t)i * heads + g) * HS;
            const float *x = inp + at, *dy = dout + at; /* (HS) each */
            float rs = rstd[i * normed + g];
            for (int c = 0; c < HS; c++) acc[c] += (double)dy[c] * (x[c] * rs);
        }
    }
    #pragma omp parallel for if ((long)n_chunks * HS > RMS_PAR_MIN)
    for (int c = 0; c < HS; c++) {
        double sum = 0.0;
        for (long k = 0; k < n_chunks; k++) sum += partial[(size_t)k * HS + c];
        dw[c] += (float)sum;
    }
    free(partial);
}

void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int N, int C,
                     float eps) {
    rms_forward_rows(out, rstd, inp, weight, NULL, (RmsShape){N, 1, 0, C}, eps);
}

void rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                      const float *weight, const float *rstd, int N, int C) {
    RmsShape s = {N, 1, 0, C};
    if (dinp) rms_backward_dinp(dinp, dout, inp, weight, NULL, rstd, s);
    if (dweight) rms_backward_dweight(dweight, dout, inp, rstd, s, 0, 1);
}

void qk_norm_forward(float *out, float *rstd, const float *inp, const float *wq, const float *wk,
                     int N, int NH, int KVH, int HS, float eps) {
    rms_forward_rows(out, rstd, inp, wq, wk, (RmsShape){N, NH, KVH, HS}, eps);
}

void qk_norm_backward(float *dinp, float *dwq, float *dwk, const float *dout, const float *inp,
                      const float *wq, const float *wk, const float *rstd, int N, int NH,
                      int KVH, int HS) {
    RmsShape s = {N, NH, KVH, HS};
    if (dinp) rms_backward_dinp(dinp, dout, inp, wq, wk, rstd, s);
    if (dwq) rms_backward_dweight(dwq, dout, inp, rstd, s, 0, NH);
    if (dwk) rms_backward_dweight(dwk, dout, inp, rstd, s, NH, KVH);
}
