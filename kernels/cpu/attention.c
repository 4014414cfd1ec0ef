/* kernels/cpu/attention.c — causal multi-head self-attention, flash style on the CPU.
 *
 * Per (b, h), with Q, K, V the (T,HS) slices of qkv and scale = 1/sqrt(HS):
 *     S = scale * Q K^T,  causal mask (j > i is -inf),  P = softmax_rows(S),  O = P V.
 * The tricks:
 *   - Only lse (B,NH,T), the log-sum-exp of each masked row of S, is kept from
 *     forward; P = exp(S - lse) is recomputed in backward, so the (T,T) matrix
 *     never lives in the activations. Forward builds P the same way, which makes
 *     the backward bit-consistent with what forward computed.
 *   - Rows go in blocks of ATT_ROW_BLOCK: a block of rows i0..i1-1 only needs the
 *     key columns 0..i1-1 (causality), so the sgemms skip the masked upper
 *     triangle (about half the work) and the scratch is ATT_ROW_BLOCK x T per
 *     thread instead of T x T.
 *   - sgemm reads Q, K, V straight out of the strided qkv buffer (row stride 3C)
 *     and writes O straight into out (row stride C): no gathers or copies.
 *   - OpenMP splits the B*NH independent heads; OpenBLAS (OpenMP build) runs
 *     single-threaded when called from inside that parallel region.
 * Backward, per row block (D_i = sum_d dO_id O_id):
 *     dV += P^T dO,  dP = dO V^T,  dS = P * (dP - D),  dQ = scale dS K,  dK += scale dS^T Q.
 * dQ, dK, dV are summed in per-thread (T,HS) scratch and added into dqkv once at
 * the end, so dqkv receives a single += per element. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"
#include "util/util.h"

#define ATT_ROW_BLOCK 64

/* Below this many multiply-adds in the score products (B*NH*T*T*HS) a parallel
 * region costs more than it saves, so small calls run on one thread; a single
 * head has nothing to split and leaves the threads to OpenBLAS instead. */
#define ATT_PAR_MIN_WORK 100000L

static int attention_parallel(int B, int T, int NH, int HS) {
    return B * NH > 1 && (long)B * NH * T * T * HS > ATT_PAR_MIN_WORK;
}

/* Log-sum-exp of each causally masked row of the scaled scores of rows
 * i0..i0+rows-1: S is (rows,cols) with cols = i0+rows, row r sees columns 0..i0+r. */
static void causal_row_lse(float *lse, const float *S, int i0, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        int i = i0 + r;
        const float *s = S + (size_t)r * cols; /* (cols) */
        float mx = -INFINITY;
        for (int j = 0; j <= i; j++) mx = s[j] > mx ? s[j] : mx;
        double sum = 0.0;
        for (int j = 0; j <= i; j++) sum += expf(s[j] - mx);
        lse[i] = (float)((double)mx + log(sum));
    }
}

/* Scores to probabilities in place: P_ij = exp(S_ij - lse_i) for j <= i and 0
 * above the diagonal. Forward and backward both build P this way. */
static void causal_probs(float *S, const float *lse, int i0, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        int i = i0 + r;
        float *s = S + (size_t)r * cols; /* (cols) */
        float l = lse[i];
        for (int j = 0; j <= i; j++) s[j] = expf(s[j] - l);
        for (int j = i + 1; j < cols; j++) s[j] = 0.0f;
    }
}

void attention_forward(float *out, float *lse, const float *qkv, int B, int T, int C, int NH) {
    int HS = C / NH;
    int C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)HS);
    #pragma omp parallel if (attention_parallel(B, T, NH, HS))
    {
        float *S = xmalloc((size_t)ATT_ROW_BLOCK * T * sizeof(float)); /* (ATT_ROW_BLOCK,T) */
        #pragma omp for schedule(static)
        for (int bh = 0; bh < B * NH; bh++) {
            int b = bh / NH, h = bh % NH;
            const float *q = qkv + (size_t)b * T * C3 + (size_t)h * HS; /* (T,HS), ld 3C */
            const float *k = q + C;                                     /* (T,HS), ld 3C */
            const float *v = q + 2 * C;                                 /* (T,HS), ld 3C */
            float *o = out + (size_t)b * T * C + (size_t)h * HS;        /* (T,HS), ld C */
            float *l = lse + (size_t)bh * T;                            /* (T) */
            for (int i0 = 0; i0 < T; i0 += ATT_ROW_BLOCK) {
                int rows = T - i0 < ATT_ROW_BLOCK ? T - i0 : ATT_ROW_BLOCK;
                int cols = i0 + rows;
                /* S (rows,cols) = scale * Q[i0:i0+rows] K[0:cols]^T */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, cols, HS, scale,
                            q + (size_t)i0 * C3, C3, k, C3, 0.0f, S, cols);
                causal_row_lse(l, S, i0, rows, cols);
                causal_probs(S, l, i0, rows, cols);
                /* O[i0:i0+rows] (rows,HS) = P (rows,cols) V[0:cols] */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, HS, cols, 1.0f, S,
                            cols, v, C3, 0.0f, o + (size_t)i0 * C, C);
            }
        }
        free(S);
    }
}

void attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out,
                        const float *lse, int B, int T, int C, int NH) {
    int HS = C / NH;
    int C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)HS);
    #pragma omp parallel if (attention_parallel(B, T, NH, HS))
    {
        float *P = xmalloc((size_t)ATT_ROW_BLOCK * T * sizeof(float));  /* (ATT_ROW_BLOCK,T) */
        float *dS = xmalloc((size_t)ATT_ROW_BLOCK * T * sizeof(float)); /* (ATT_ROW_BLOCK,T) */
        float *D = xmalloc((size_t)ATT_ROW_BLOCK * sizeof(float));      /* (ATT_ROW_BLOCK) */
        float *dq = xmalloc((size_t)3 * T * HS * sizeof(float));        /* (T,HS) x3 */
        float *dk = dq + (size_t)T * HS;                                /* (T,HS) */
        float *dv = dk + (size_t)T * HS;                                /* (T,HS) */
        #pragma omp for schedule(static)
        for (int bh = 0; bh < B * NH; bh++) {
            int b = bh / NH, h = bh % NH;
            const float *q = qkv + (size_t)b * T * C3 + (size_t)h * HS; /* (T,HS), ld 3C */
            const float *k = q + C;                                     /* (T,HS), ld 3C */
            const float *v = q + 2 * C;                                 /* (T,HS), ld 3C */
            const float *o = out + (size_t)b * T * C + (size_t)h * HS;  /* (T,HS), ld C */
            const float *dO = dout + (size_t)b * T * C + (size_t)h * HS; /* (T,HS), ld C */
            const float *l = lse + (size_t)bh * T;                      /* (T) */
            memset(dq, 0, (size_t)3 * T * HS * sizeof(float));
            for (int i0 = 0; i0 < T; i0 += ATT_ROW_BLOCK) {
                int rows = T - i0 < ATT_ROW_BLOCK ? T - i0 : ATT_ROW_BLOCK;
                int cols = i0 + rows;
                const float *q_blk = q + (size_t)i0 * C3;  /* (rows,HS), ld 3C */
                const float *dO_blk = dO + (size_t)i0 * C; /* (rows,HS), ld C */
                /* recompute P (rows,cols) from S = scale Q K^T and the saved lse */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, cols, HS, scale, q_blk,
                            C3, k, C3, 0.0f, P, cols);
                causal_probs(P, l, i0, rows, cols);
                /* dV[0:cols] (cols,HS) += P^T dO_blk */
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, cols, HS, rows, 1.0f, P, cols,
                            dO_blk, C, 1.0f, dv, HS);
                /* dP (rows,cols) = dO_blk V[0:cols]^T */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, cols, HS, 1.0f, dO_blk,
                            C, v, C3, 0.0f, dS, cols);
                for (int r = 0; r < rows; r++) {
                    const float *o_row = o + (size_t)(i0 + r) * C;
                    const float *dO_row = dO_blk + (size_t)r * C;
                    float d = 0.0f;
                    for (int c = 0; c < HS; c++) d += dO_row[c] * o_row[c];
                    D[r] = d;
                }
                /* dS = P * (dP - D); zero above the diagonal because P is */
                for (int r = 0; r < rows; r++) {
                    float *ds_row = dS + (size_t)r * cols;
                    const float *p_row = P + (size_t)r * cols;
                    for (int j = 0; j < cols; j++) ds_row[j] = p_row[j] * (ds_row[j] - D[r]);
                }
                /* dQ[i0:i0+rows] (rows,HS) = scale dS K[0:cols] */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, HS, cols, scale, dS,
                            cols, k, C3, 0.0f, dq + (size_t)i0 * HS, HS);
                /* dK[0:cols] (cols,HS) += scale dS^T Q_blk */
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, cols, HS, rows, scale, dS,
                            cols, q_blk, C3, 1.0f, dk, HS);
            }
            float *dst = dqkv + (size_t)b * T * C3 + (size_t)h * HS; /* (T,HS) x3, ld 3C */
            for (int t = 0; t < T; t++) {
                float *row = dst + (size_t)t * C3;
                for (int c = 0; c < HS; c++) {
                    row[c] += dq[(size_t)t * HS + c];
                    row[C + c] += dk[(size_t)t * HS + c];
                    row[2 * C + c] += dv[(size_t)t * HS + c];
                }
            }
        }
        free(dq);
        free(D);
        free(dS);
        free(P);
    }
}
