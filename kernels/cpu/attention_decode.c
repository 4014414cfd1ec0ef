/* kernels/cpu/attention_decode.c — causal attention for generation, over a
 * key/value cache of slots: each new token's k and v are stored once in its
 * slot, and each new query reads its slot's keys up to its own position. The
 * cache holds the KVH kv heads only; query head h reads kv head h / (NH/KVH),
 * as attention_forward does. fp32 scores (each a 16-lane dot product summed
 * by a fixed tree), softmax and the weighted sum of values in double; every
 * query is computed alone, in an order that depends on its own position and
 * HS only, so a token's output is the same bits whatever else is decoded
 * beside it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"

/* q . k over HS, as 16 lanes (lane j: elements j, j+16, ..) added by a tree */
static float dot16(const float *q, const float *k, int HS) {
    float a[16] = {0};
    int d0 = 0;
    for (; d0 + 16 <= HS; d0 += 16)
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++) a[j] += q[d0 + j] * k[d0 + j];
    for (int j = 0; d0 + j < HS; j++) a[j] += q[d0 + j] * k[d0 + j];
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) a[j] += a[j + 8];
    for (int j = 0; j < 4; j++) a[j] += a[j + 4];
    for (int j = 0; j < 2; j++) a[j] += a[j + 2];
    return a[0] + a[1];
}

/* One query against its slot's keys 0 .. keys-1: p (keys) the scores, then
 * out (HS) = sum_j softmax_j v_j. acc (HS doubles) is scratch. */
static void attend(float *o, const float *q, const float *K, const float *Vc, int keys, int HS,
                   float scale, double *p, double *acc) {
    double mx = -INFINITY;
    for (int j = 0; j < keys; j++) {
        p[j] = (double)(dot16(q, K + (size_t)j * HS, HS) * scale);
        if (p[j] > mx) mx = p[j];
    }
    double sum = 0;
    for (int j = 0; j < keys; j++) sum += (p[j] = exp(p[j] - mx));
    for (int d = 0; d < HS; d++) acc[d] = 0;
    for (int j = 0; j < keys; j++) {
        const float *v = Vc + (size_t)j * HS;
        for (int d = 0; d < HS; d++) acc[d] += p[j] * v[d];
    }
    for (int d = 0; d < HS; d++) o[d] = (float)(acc[d] / sum);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define ATT_TGT __attribute__((target("avx512f,avx512dq")))
/* attend's arithmetic, vectorized: the same products and sums (mul then add,
 * never fused; the same lanes and tree), so the same bits. */
ATT_TGT static void attend_avx512(float *o, const float *q, const float *K, const float *Vc,
                                  int keys, int HS, float scale, double *p, double *acc) {
    double mx = -INFINITY;
    for (int j = 0; j < keys; j++) {
        const float *k = K + (size_t)j * HS;
        __m512 a = _mm512_setzero_ps();
        int d0 = 0;
        for (; d0 + 16 <= HS; d0 += 16)
            a = _mm512_add_ps(a, _mm512_mul_ps(_mm512_loadu_ps(q + d0), _mm512_loadu_ps(k + d0)));
        if (d0 < HS) { /* lanes past HS add 0 * 0 = +0, which leaves a sum unchanged */
            __mmask16 mk = (__mmask16)((1u << (HS - d0)) - 1u);
            a = _mm512_add_ps(a, _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, q + d0),
                                               _mm512_maskz_loadu_ps(mk, k + d0)));
        }
        __m256 b = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
        __m128 c = _mm_add_ps(_mm256_castps256_ps128(b), _mm256_extractf128_ps(b, 1));
        __m128 e = _mm_add_ps(c, _mm_movehl_ps(c, c));
        float s = _mm_cvtss_f32(_mm_add_ss(e, _mm_shuffle_ps(e, e, 1)));
        p[j] = (double)(s * scale);
        if (p[j] > mx) mx = p[j];
    }
    double sum = 0;
    for (int j = 0; j < keys; j++) sum += (p[j] = exp(p[j] - mx));
    int d = 0;
    /* 64 columns at a time in 8 accumulators, keys in order: 8 independent
     * chains of adds, so the adds' latency overlaps */
    for (; d + 64 <= HS; d += 64) {
        __m512d a[8];
        for (int b = 0; b < 8; b++) a[b] = _mm512_setzero_pd();
        for (int j = 0; j < keys; j++) {
            __m512d pj = _mm512_set1_pd(p[j]);
            const float *v = Vc + (size_t)j * HS + d;
#pragma GCC unroll 8
            for (int b = 0; b < 8; b++)
                a[b] = _mm512_add_pd(a[b], _mm512_mul_pd(pj, _mm512_cvtps_pd(_mm256_loadu_ps(v + 8 * b))));
        }
        __m512d inv = _mm512_set1_pd(sum);
        for (int b = 0; b < 8; b++)
            _mm256_storeu_ps(o + d + 8 * b, _mm512_cvtpd_ps(_mm512_div_pd(a[b], inv)));
    }
    for (; d + 8 <= HS; d += 8) { /* 8 doubles of acc at a time, keys in order */
        __m512d a = _mm512_setzero_pd();
        for (int j = 0; j < keys; j++)
            a = _mm512_add_pd(a, _mm512_mul_pd(_mm512_set1_pd(p[j]),
                                               _mm512_cvtps_pd(_mm256_loadu_ps(Vc + (size_t)j * HS + d))));
        _mm256_storeu_ps(o + d, _mm512_cvtpd_ps(_mm512_div_pd(a, _mm512_set1_pd(sum))));
    }
    for (; d < HS; d++) {
        double a = 0;
        for (int j = 0; j < keys; j++) a += p[j] * Vc[(size_t)j * HS + d];
        o[d] = (float)(a / sum);
    }
    (void)acc;
}
#endif

void attention_decode(float *out, float *kcache, float *vcache, const float *qkv, const int *slot,
                      const int *pos, int N, int NH, int KVH, int HS, int maxT, float scale) {
    if (N < 0 || NH <= 0 || KVH <= 0 || HS <= 0 || NH % KVH != 0) {
        fprintf(stderr,
                "retort: attention_decode: bad shape N=%d NH=%d KVH=%d HS=%d (need NH a "
                "multiple of KVH)\n",
                N, NH, KVH, HS);
        exit(1);
    }
    for (int i = 0; i < N; i++)
        if (slot[i] < 0 || pos[i] < 0 || pos[i] >= maxT) {
            fprintf(stderr,
                    "retort: attention_decode: token %d has slot %d, position %d (need slot >= 0 "
                    "and a position in [0, %d))\n",
                    i, slot[i], pos[i], maxT);
            exit(1);
        }
    int W = (NH + 2 * KVH) * HS, CQ = NH * HS, group = NH / KVH;
    /* store the new keys and values first: a slot's later tokens in this call
     * attend to its earlier ones */
    for (int i = 0; i < N; i++)
        for (int g = 0; g < KVH; g++) {
            const float *row = qkv + (size_t)i * W; /* (W) */
            size_t at = (((size_t)slot[i] * KVH + g) * maxT + pos[i]) * HS;
            memcpy(kcache + at, row + (size_t)(NH + g) * HS, HS * sizeof(float));
            memcpy(vcache + at, row + (size_t)(NH + KVH + g) * HS, HS * sizeof(float));
        }
    /* the vectorized twin where the decoding GEMMs run AVX-512 (the same bits) */
    int wide = !strcmp(matmul_rows_isa(), "avx512");
    int keys_max = 0;
    for (int i = 0; i < N; i++)
        if (pos[i] + 1 > keys_max) keys_max = pos[i] + 1;
    #pragma omp parallel if ((long)N * NH * keys_max > 4096)
    {
        double *p = malloc((size_t)keys_max * sizeof(double));
        double *acc = malloc((size_t)HS * sizeof(double));
        #pragma omp for collapse(2) schedule(static)
        for (int i = 0; i < N; i++)
            for (int h = 0; h < NH; h++) {
                int g = h / group;
                const float *q = qkv + (size_t)i * W + (size_t)h * HS;
                size_t base = ((size_t)slot[i] * KVH + g) * maxT * HS;
                const float *K = kcache + base, *Vc = vcache + base; /* (maxT,HS) each */
                int keys = pos[i] + 1;
                float *o = out + (size_t)i * CQ + (size_t)h * HS;
#if defined(__x86_64__) && defined(__GNUC__)
                if (wide) {
                    attend_avx512(o, q, K, Vc, keys, HS, scale, p, acc);
                    continue;
                }
#endif
                attend(o, q, K, Vc, keys, HS, scale, p, acc);
            }
        free(p);
        free(acc);
    }
}
