/* kernels/cpu/attention_decode.c — causal attention for generation, over a
 * key/value cache: each new token's k and v are stored once, and each new
 * query reads all cached keys up to its own position. The cache holds the KVH
 * kv heads only; query head h reads kv head h / (NH/KVH), as attention_forward
 * does. Exact (fp32, max-subtracted softmax in double), so cached decoding
 * reproduces the logits of a full forward pass. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"

void attention_decode(float *out, float *kcache, float *vcache, const float *qkv, int B, int n,
                      int pos, int NH, int KVH, int HS, int maxT, float scale) {
    if (B < 0 || NH <= 0 || KVH <= 0 || HS <= 0 || NH % KVH != 0 || n < 1 || pos < 0 ||
        (long)pos + n > maxT) {
        fprintf(stderr,
                "retort: attention_decode: bad shape B=%d n=%d pos=%d NH=%d KVH=%d HS=%d "
                "maxT=%d (need NH a multiple of KVH, n >= 1, pos >= 0, pos + n <= maxT)\n",
                B, n, pos, NH, KVH, HS, maxT);
        exit(1);
    }
    int W = (NH + 2 * KVH) * HS, CQ = NH * HS, group = NH / KVH;
    /* store the new keys and values */
    for (int b = 0; b < B; b++)
        for (int i = 0; i < n; i++)
            for (int g = 0; g < KVH; g++) {
                const float *row = qkv + ((size_t)b * n + i) * W; /* (W) */
                size_t at = (((size_t)b * KVH + g) * maxT + pos + i) * HS;
                memcpy(kcache + at, row + (size_t)(NH + g) * HS, HS * sizeof(float));
                memcpy(vcache + at, row + (size_t)(NH + KVH + g) * HS, HS * sizeof(float));
            }
    #pragma omp parallel
    {
        double *p = malloc((size_t)(pos + n) * sizeof(double));
        #pragma omp for collapse(3)
        for (int b = 0; b < B; b++)
            for (int i = 0; i < n; i++)
                for (int h = 0; h < NH; h++) {
                    int g = h / group;
                    const float *q = qkv + ((size_t)b * n + i) * W + (size_t)h * HS;
                    const float *K = kcache + ((size_t)b * KVH + g) * maxT * HS;  /* (maxT,HS) */
                    const float *Vc = vcache + ((size_t)b * KVH + g) * maxT * HS; /* (maxT,HS) */
                    int keys = pos + i + 1;
                    double mx = -INFINITY;
                    for (int j = 0; j < keys; j++) {
                        float s = 0;
                        for (int d = 0; d < HS; d++) s += q[d] * K[(size_t)j * HS + d];
                        p[j] = (double)(s * scale);
                        if (p[j] > mx) mx = p[j];
                    }
                    double sum = 0;
                    for (int j = 0; j < keys; j++) sum += (p[j] = exp(p[j] - mx));
                    float *o = out + ((size_t)b * n + i) * CQ + (size_t)h * HS;
                    for (int d = 0; d < HS; d++) {
                        double acc = 0;
                        for (int j = 0; j < keys; j++) acc += p[j] * Vc[(size_t)j * HS + d];
                        o[d] = (float)(acc / sum);
                    }
                }
        free(p);
    }
}
