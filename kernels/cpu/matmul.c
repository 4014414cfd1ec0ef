/* kernels/cpu/matmul.c — the Conv1D linear layer, y = x W + b, through OpenBLAS sgemm.
 *
 * W is kept in the Hugging Face Conv1D layout (C,OC), so every product is a
 * plain row-major sgemm with at most one transpose flag and checkpoints load
 * without transposes. Forward writes the bias into out first and lets sgemm
 * accumulate on top of it (beta = 1), saving a second pass over (N,OC).
 * Backward uses beta = 1 throughout, which gives the += convention for free.
 * sgemm is multithreaded by OpenBLAS itself; only the bias column sums are ours. */
#include <cblas.h>
#include <string.h>

#include "kernels/ops.h"

void matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int N,
                    int C, int OC) {
    float beta = 0.0f;
    if (bias) {
        #pragma omp parallel for if ((long)N * OC > 65536)
        for (int i = 0; i < N; i++)
            memcpy(out + (size_t)i * OC, bias, (size_t)OC * sizeof(float)); /* (OC) */
        beta = 1.0f;
    }
    /* (N,OC) = (N,C) @ (C,OC) [+ out] */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, OC, C, 1.0f, inp, C, weight, OC,
                beta, out, OC);
}

/* Columns per work item of the dbias column sums. */
#define MM_COL_BLOCK 64

void matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                     const float *inp, const float *weight, int N, int C, int OC) {
    if (dinp) /* (N,C) += (N,OC) @ (C,OC)^T */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, C, OC, 1.0f, dout, OC, weight, OC,
                    1.0f, dinp, C);
    if (dweight) /* (C,OC) += (N,C)^T @ (N,OC) */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C, OC, N, 1.0f, inp, C, dout, OC,
                    1.0f, dweight, OC);
    if (dbias) {
        /* (OC) += column sums of dout; threads own column blocks, rows summed in order */
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
}
