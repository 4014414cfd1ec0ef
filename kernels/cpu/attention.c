/* kernels/cpu/attention.c — causal self-attention with grouped-query heads,
 * flash style on the CPU.
 *
 * Per (b, h), with Q the (T,HS) slice of query head h and K, V those of kv
 * head g = h / (NH/KVH) (every query head of a group reads the same K, V):
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
 *   - sgemm reads Q, K, V straight out of the strided qkv buffer (row stride
 *     W = (NH + 2 KVH) HS) and writes O straight into out (row stride NH HS):
 *     no gathers, and no copies of the shared kv heads.
 *   - OpenMP splits the independent heads (forward: B*NH query heads; backward:
 *     B*KVH kv heads, see below); OpenBLAS (OpenMP build) runs single-threaded
 *     when called from inside that parallel region.
 * Backward, per row block (D_i = sum_d dO_id O_id):
 *     dV += P^T dO,  dP = dO V^T,  dS = P * (dP - D),  dQ = scale dS K,  dK += scale dS^T Q.
 * One task per (b, kv head): it runs the NH/KVH query heads of the group in
 * order, summing their dK, dV in per-thread (T,HS) scratch, so the group's sum
 * has a fixed order and no two threads write the same dqkv element. dQ of each
 * query head, dK and dV of the group are added into dqkv once at the end, so
 * dqkv receives a single += per element.
 * Packed rows (doc_start, kernels/ops.h): the row is cut into its segments and
 * each is computed by the same code as a row of that length on its own, with
 * pointers moved to the segment's first token (attend_segment). So a packed
 * example's outputs and gradients are bit-identical to its run alone, and the
 * plain causal case is the one-segment case of the same code. The work drops
 * from T^2/2 to the sum of the segments' n^2/2. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"
#include "util/util.h"

#define ATT_ROW_BLOCK 64

/* Below this many multiply-adds in the score products (B*NH*T*T*HS) a parallel
 * region costs more than it saves, so small calls run on one thread; a single
 * task (tasks: B*NH heads in forward, B*KVH groups in backward) has nothing
 * to split and leaves the threads to OpenBLAS instead. */
#define ATT_PAR_MIN_WORK 100000L

static int attention_parallel(int tasks, int B, int T, int NH, int HS) {
    return tasks > 1 && (long)B * NH * T * T * HS > ATT_PAR_MIN_WORK;
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

/* Refuses shapes no caller should pass (the model derives them from a checked
 * config): a programming error, reported as such. */
static void attention_check_shape(const char *fn, int B, int T, int NH, int KVH, int HS) {
    if (B < 0 || T < 0 || NH <= 0 || KVH <= 0 || HS <= 0 || NH % KVH != 0) {
        fprintf(stderr,
                "retort: %s: bad shape B=%d T=%d NH=%d KVH=%d HS=%d (need positive head "
                "counts and size, and NH a multiple of KVH)\n",
                fn, B, T, NH, KVH, HS);
        exit(1);
    }
}

/* The next segment of a packed row from s on: its end e (exclusive). With
 * doc_start NULL the whole row [0, T) is one segment. */
static int segment_end(const int *ds, int s, int T) {
    if (!ds) return T;
    int e = s + 1;
    while (e < T && ds[e] == s) e++;
    return e;
}

/* doc_start must describe contiguous segments (kernels/ops.h): a caller's
 * bug otherwise, reported as such. */
static void check_doc_start(const char *fn, const int *doc_start, int B, int T) {
    if (!doc_start) return;
    for (int b = 0; b < B; b++) {
        const int *ds = doc_start + (size_t)b * T;
        for (int t = 0; t < T; t++) {
            int ok = t == 0 ? ds[t] == 0 : (ds[t] == t || ds[t] == ds[t - 1]);
            if (!ok) {
                fprintf(stderr,
                        "retort: %s: doc_start[%d,%d] = %d does not describe contiguous "
                        "segments (each entry must be t or the previous entry, the first 0)\n",
                        fn, b, t, ds[t]);
                exit(1);
            }
        }
    }
}

/* One head over one segment of n rows: q, k, v, o and l point at the
 * segment's first row, so the segment is computed exactly as a row of n
 * tokens on its own would be. */
static void attend_segment(float *o, float *l, const float *q, const float *k, const float *v,
                           float *S, int n, int W, int CQ, int HS, float scale) {
    for (int i0 = 0; i0 < n; i0 += ATT_ROW_BLOCK) {
        int rows = n - i0 < ATT_ROW_BLOCK ? n - i0 : ATT_ROW_BLOCK;
        int cols = i0 + rows;
        /* S (rows,cols) = scale * Q[i0:i0+rows] K[0:cols]^T */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, cols, HS, scale,
                    q + (size_t)i0 * W, W, k, W, 0.0f, S, cols);
        causal_row_lse(l, S, i0, rows, cols);
        causal_probs(S, l, i0, rows, cols);
        /* O[i0:i0+rows] (rows,HS) = P (rows,cols) V[0:cols] */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, HS, cols, 1.0f, S, cols, v,
                    W, 0.0f, o + (size_t)i0 * CQ, CQ);
    }
}

void attention_forward(float *out, float *lse, const float *qkv, const int *doc_start, int B,
                       int T, int NH, int KVH, int HS, float scale) {
    attention_check_shape("attention_forward", B, T, NH, KVH, HS);
    check_doc_start("attention_forward", doc_start, B, T);
    int W = (NH + 2 * KVH) * HS, CQ = NH * HS, group = NH / KVH;
    #pragma omp parallel if (attention_parallel(B * NH, B, T, NH, HS))
    {
        float *S = xmalloc((size_t)ATT_ROW_BLOCK * T * sizeof(float)); /* (ATT_ROW_BLOCK,T) */
        #pragma omp for schedule(static)
        for (int bh = 0; bh < B * NH; bh++) {
            int b = bh / NH, h = bh % NH, g = h / group;
            const float *row0 = qkv + (size_t)b * T * W;
            const float *q = row0 + (size_t)h * HS;                  /* (T,HS), ld W */
            const float *k = row0 + (size_t)(NH + g) * HS;           /* (T,HS), ld W */
            const float *v = row0 + (size_t)(NH + KVH + g) * HS;     /* (T,HS), ld W */
            float *o = out + (size_t)b * T * CQ + (size_t)h * HS;    /* (T,HS), ld NH*HS */
            float *l = lse + (size_t)bh * T;                         /* (T) */
            const int *ds = doc_start ? doc_start + (size_t)b * T : NULL; /* (T) */
            for (int s0 = 0, e; s0 < T; s0 = e) {
                e = segment_end(ds, s0, T);
                attend_segment(o + (size_t)s0 * CQ, l + s0, q + (size_t)s0 * W,
                               k + (size_t)s0 * W, v + (size_t)s0 * W, S, e - s0, W, CQ, HS,
                               scale);
            }
        }
        free(S);
    }
}

/* Backward of one query head over one segment of n rows (pointers at the
 * segment's first row): dq (n,HS) is written, dk and dv (n,HS) accumulate. */
static void attend_segment_backward(float *dq, float *dk, float *dv, const float *q,
                                    const float *k, const float *v, const float *o,
                                    const float *dO, const float *l, float *P, float *dS,
                                    float *D, int n, int W, int CQ, int HS, float scale) {
    for (int i0 = 0; i0 < n; i0 += ATT_ROW_BLOCK) {
        int rows = n - i0 < ATT_ROW_BLOCK ? n - i0 : ATT_ROW_BLOCK;
        int cols = i0 + rows;
        const float *q_blk = q + (size_t)i0 * W;    /* (rows,HS), ld W */
        const float *dO_blk = dO + (size_t)i0 * CQ; /* (rows,HS), ld NH*HS */
        /* recompute P (rows,cols) from S = scale Q K^T and the saved lse */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, cols, HS, scale, q_blk, W, k,
                    W, 0.0f, P, cols);
        causal_probs(P, l, i0, rows, cols);
        /* dV[0:cols] (cols,HS) += P^T dO_blk */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, cols, HS, rows, 1.0f, P, cols,
                    dO_blk, CQ, 1.0f, dv, HS);
        /* dP (rows,cols) = dO_blk V[0:cols]^T */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, cols, HS, 1.0f, dO_blk, CQ, v,
                    W, 0.0f, dS, cols);
        for (int r = 0; r < rows; r++) {
            const float *o_row = o + (size_t)(i0 + r) * CQ;
            const float *dO_row = dO_blk + (size_t)r * CQ;
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
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, HS, cols, scale, dS, cols, k,
                    W, 0.0f, dq + (size_t)i0 * HS, HS);
        /* dK[0:cols] (cols,HS) += scale dS^T Q_blk */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, cols, HS, rows, scale, dS, cols,
                    q_blk, W, 1.0f, dk, HS);
    }
}

void attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out,
                        const float *lse, const int *doc_start, int B, int T, int NH, int KVH,
                        int HS, float scale) {
    attention_check_shape("attention_backward", B, T, NH, KVH, HS);
    check_doc_start("attention_backward", doc_start, B, T);
    int W = (NH + 2 * KVH) * HS, CQ = NH * HS, group = NH / KVH;
    #pragma omp parallel if (attention_parallel(B * KVH, B, T, NH, HS))
    {
        float *P = xmalloc((size_t)ATT_ROW_BLOCK * T * sizeof(float));  /* (ATT_ROW_BLOCK,T) */
        float *dS = xmalloc((size_t)ATT_ROW_BLOCK * T * sizeof(float)); /* (ATT_ROW_BLOCK,T) */
        float *D = xmalloc((size_t)ATT_ROW_BLOCK * sizeof(float));      /* (ATT_ROW_BLOCK) */
        float *dq = xmalloc((size_t)3 * T * HS * sizeof(float));        /* (T,HS) x3 */
        float *dk = dq + (size_t)T * HS;                                /* (T,HS) */
        float *dv = dk + (size_t)T * HS;                                /* (T,HS) */
        #pragma omp for schedule(static)
        for (int bg = 0; bg < B * KVH; bg++) {
            int b = bg / KVH, g = bg % KVH;
            const float *row0 = qkv + (size_t)b * T * W;
            const float *k = row0 + (size_t)(NH + g) * HS;           /* (T,HS), ld W */
            const float *v = row0 + (size_t)(NH + KVH + g) * HS;     /* (T,HS), ld W */
            const int *ds = doc_start ? doc_start + (size_t)b * T : NULL; /* (T) */
            memset(dk, 0, (size_t)2 * T * HS * sizeof(float));
            /* the group's query heads in order: dK, dV sum over them */
            for (int h = g * group; h < (g + 1) * group; h++) {
                const float *q = row0 + (size_t)h * HS;                      /* (T,HS), ld W */
                const float *o = out + (size_t)b * T * CQ + (size_t)h * HS;  /* (T,HS), ld NH*HS */
                const float *dO = dout + (size_t)b * T * CQ + (size_t)h * HS; /* (T,HS), ld NH*HS */
                const float *l = lse + ((size_t)b * NH + h) * T;             /* (T) */
                memset(dq, 0, (size_t)T * HS * sizeof(float));
                for (int s0 = 0, e; s0 < T; s0 = e) {
                    e = segment_end(ds, s0, T);
                    size_t sw = (size_t)s0 * W, sc = (size_t)s0 * CQ, sh = (size_t)s0 * HS;
                    attend_segment_backward(dq + sh, dk + sh, dv + sh, q + sw, k + sw, v + sw,
                                            o + sc, dO + sc, l + s0, P, dS, D, e - s0, W, CQ,
                                            HS, scale);
                }
                float *dst_q = dqkv + (size_t)b * T * W + (size_t)h * HS; /* (T,HS), ld W */
                for (int t = 0; t < T; t++)
                    for (int c = 0; c < HS; c++)
                        dst_q[(size_t)t * W + c] += dq[(size_t)t * HS + c];
            }
            float *dst_k = dqkv + (size_t)b * T * W + (size_t)(NH + g) * HS; /* (T,HS), ld W */
            float *dst_v = dst_k + (size_t)KVH * HS;                          /* (T,HS), ld W */
            for (int t = 0; t < T; t++)
                for (int c = 0; c < HS; c++) {
                    dst_k[(size_t)t * W + c] += dk[(size_t)t * HS + c];
                    dst_v[(size_t)t * W + c] += dv[(size_t)t * HS + c];
                }
        }
        free(dq);
        free(D);
        free(dS);
        free(P);
    }
}
