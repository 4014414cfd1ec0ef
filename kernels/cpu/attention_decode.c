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
                float *o = out + (size_t)i * CQ + (size_t)h * HS;
                for (int d = 0; d < HS; d++) o[d] = (float)(acc[d] / sum);
            }
        free(p);
        free(acc);
    }
}
