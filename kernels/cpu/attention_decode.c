/* kernels/cpu/attention_decode.c — causal attention for generation, over a
 * key/value cache: each new token's k and v are stored once, and each new
 * query reads all cached keys up to its own position. Exact (fp32, max-
 * subtracted softmax in double), so cached decoding reproduces the logits of a
 * full forward pass. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"

void attention_decode(float *out, float *kcache, float *vcache, const float *qkv, int B, int n,
                      int pos, int C, int NH, int maxT) {
    int HS = C / NH;
    float scale = 1.0f / sqrtf((float)HS);
    /* store the new keys and values */
    for (int b = 0; b < B; b++)
        for (int i = 0; i < n; i++)
            for (int h = 0; h < NH; h++) {
                const float *row = qkv + ((size_t)b * n + i) * 3 * C;
                size_t at = (((size_t)b * NH + h) * maxT + pos + i) * HS;
                memcpy(kcache + at, row + C + h * HS, HS * sizeof(float));
                memcpy(vcache + at, row + 2 * C + h * HS, HS * sizeof(float));
            }
    #pragma omp parallel
    {
        double *p = malloc((size_t)(pos + n) * sizeof(double));
        #pragma omp for collapse(3)
        for (int b = 0; b < B; b++)
            for (int i = 0; i < n; i++)
                for (int h = 0; h < NH; h++) {
                    const float *q = qkv + ((size_t)b * n + i) * 3 * C + h * HS;
                    const float *K = kcache + ((size_t)b * NH + h) * maxT * HS;
                    const float *Vc = vcache + ((size_t)b * NH + h) * maxT * HS;
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
                    float *o = out + ((size_t)b * n + i) * C + h * HS;
                    for (int d = 0; d < HS; d++) {
                        double acc = 0;
                        for (int j = 0; j < keys; j++) acc += p[j] * Vc[(size_t)j * HS + d];
                        o[d] = (float)(acc / sum);
                    }
                }
        free(p);
    }
}
