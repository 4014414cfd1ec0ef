/* kernels/cpu/lm_head.c — the tied output layer, logits = inp @ wte^T.
 *
 * GPT-2 shares the token embedding wte (V,C) with the output projection. The
 * Conv1D-layout matmul in matmul.c wants (C,OC); rather than keep a transposed
 * copy, these two sgemm calls read wte as it is with the transpose flags. */
#include <cblas.h>

#include "kernels/ops.h"

void lm_head_forward(float *logits, const float *inp, const float *wte, int N, int C, int V) {
    if (N == 1) { /* one row (decoding): (V) = wte x, without sgemm's packing of wte */
        cblas_sgemv(CblasRowMajor, CblasNoTrans, V, C, 1.0f, wte, C, inp, 1, 0.0f, logits, 1);
        return;
    }
    /* (N,V) = (N,C) @ (V,C)^T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, V, C, 1.0f, inp, C, wte, C, 0.0f,
                logits, V);
}

void lm_head_backward(float *dinp, float *dwte, const float *dlogits, const float *inp,
                      const float *wte, int N, int C, int V) {
    if (dinp) /* (N,C) += (N,V) @ (V,C) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, V, 1.0f, dlogits, V, wte, C,
                    1.0f, dinp, C);
    if (dwte) /* (V,C) += (N,V)^T @ (N,C) */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, V, C, N, 1.0f, dlogits, V, inp, C,
                    1.0f, dwte, C);
}
