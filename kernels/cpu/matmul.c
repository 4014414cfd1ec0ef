/* kernels/cpu/matmul.c — the linear layers through OpenBLAS sgemm: GPT-2's
 * Conv1D, y = x W + b with W (C,OC), and the nn.Linear of the Llama families,
 * y = x W^T + b with W (OC,C) (matmul_nt).
 *
 * Each weight is kept in its checkpoint's own layout, so every product is a
 * plain row-major sgemm with transpose flags and checkpoints load without
 * transposes. Forward writes the bias into out first and lets sgemm
 * accumulate on top of it (beta = 1), saving a second pass over (N,OC).
 * Backward uses beta = 1 throughout, which gives the += convention for free.
 * sgemm is multithreaded by OpenBLAS itself; only the bias column sums are ours. */
#include <cblas.h>
#include <string.h>

#include "kernels/ops.h"

/* out[i,:] = bias for every row; returns the beta the GEMM then adds with */
static float broadcast_bias(float *out, const float *bias, int N, int OC) {
    if (!bias) return 0.0f;
    #pragma omp parallel for if ((long)N * OC > 65536)
    for (int i = 0; i < N; i++)
        memcpy(out + (size_t)i * OC, bias, (size_t)OC * sizeof(float)); /* (OC) */
    return 1.0f;
}

void matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int N,
                    int C, int OC) {
    float beta = broadcast_bias(out, bias, N, OC);
    if (N == 1) { /* one row (decoding): sgemv, since sgemm would pack all of W first */
        cblas_sgemv(CblasRowMajor, CblasTrans, C, OC, 1.0f, weight, OC, inp, 1, beta, out, 1);
        return;
    }
    /* (N,OC) = (N,C) @ (C,OC) [+ out] */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, OC, C, 1.0f, inp, C, weight, OC,
                beta, out, OC);
}

/* Columns per work item of the dbias column sums. */
#define MM_COL_BLOCK 64

/* dbias (OC) += column sums of dout (N,OC); threads own column blocks, rows
 * summed in order */
static void bias_backward(float *dbias, const float *dout, int N, int OC) {
    int n_blocks = (OC + MM_COL_BLOCK - 1) / MM_COL_BLOCK;
    #pragma omp parallel for if ((long)N * OC > 65536)
    for (int blk = 0; blk < n_blocks; blk++) {
        int c0 = blk * MM_COL_BLOCK;
        int width = c0 + MM_COL_BLOCK < OC ? MM_COL_BLOCK : OC - c0;
        double acc[MM_COL_BLOCK] = {0};
        for (int i = 0; i < N; i++) {
            const float *row = dout + (size_t)i * OC + c0; /* (width) */
            for (int k = 0; k < width; k++) acc[k] += row[k];
        }
        for (int k = 0; k < width; k++) dbias[c0 + k] += (float)acc[k];
    }
}

void matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                     const float *inp, const float *weight, int N, int C, int OC) {
    if (dinp) /* (N,C) += (N,OC) @ (C,OC)^T */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, C, OC, 1.0f, dout, OC, weight, OC,
                    1.0f, dinp, C);
    if (dweight) /* (C,OC) += (N,C)^T @ (N,OC) */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C, OC, N, 1.0f, inp, C, dout, OC,
                    1.0f, dweight, OC);
    if (dbias) bias_backward(dbias, dout, N, OC);
}

/* ---- nn.Linear layout: W (OC,C), y = x W^T + b ---- */

void matmul_nt_forward(float *out, const float *inp, const float *weight, const float *bias,
                       int N, int C, int OC) {
    if (N <= 0 || OC <= 0) return; /* empty output */
    if (C <= 0) { /* an empty sum: out = bias, or 0 (sgemm refuses a leading dimension 0) */
        if (!broadcast_bias(out, bias, N, OC)) memset(out, 0, (size_t)N * OC * sizeof(float));
        return;
    }
    float beta = broadcast_bias(out, bias, N, OC);
    if (N == 1) { /* one row: (OC) = W (OC,C) x [+ out] */
        cblas_sgemv(CblasRowMajor, CblasNoTrans, OC, C, 1.0f, weight, C, inp, 1, beta, out, 1);
        return;
    }
    /* (N,OC) = (N,C) @ (OC,C)^T [+ out] */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, C, 1.0f, inp, C, weight, C, beta,
                out, OC);
}

void matmul_nt_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, int N, int C, int OC) {
    /* N or OC == 0: every product is an empty sum, += 0; C == 0: dinp and
     * dweight are empty, dbias still gets its column sums */
    if (N <= 0 || OC <= 0) return;
    if (dinp && C > 0) /* (N,C) += (N,OC) @ (OC,C) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, dout, OC, weight, C,
                    1.0f, dinp, C);
    if (dweight && C > 0) /* (OC,C) += (N,OC)^T @ (N,C) */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N, 1.0f, dout, OC, inp, C,
                    1.0f, dweight, C);
    if (dbias) bias_backward(dbias, dout, N, OC);
}
