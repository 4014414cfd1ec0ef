/* kernels/cpu/rope.c — rotary position embedding (RoPE) of the q and k heads,
 * in place in the fused qkv buffer, in transformers' rotate_half convention
 * (apply_rotary_pos_emb: q * cos + rotate_half(q) * sin, the two halves of a
 * head being the pair's real and imaginary parts, not interleaved pairs).
 *
 * With h = HS / 2, position p = pos[b,t] (packed rows) or pos0 + t (pos NULL),
 * c = cos[p][i], s = sin[p][i]:
 *     y[i]   = x[i] c - x[i+h] s
 *     y[i+h] = x[i+h] c + x[i] s          (i < h)
 * a rotation of each (x[i], x[i+h]) by angle theta_i p, so backward is the
 * rotation by -theta_i p (the transpose):
 *     dx[i]   = dy[i] c + dy[i+h] s
 *     dx[i+h] = dy[i+h] c - dy[i] s
 * done in place on the gradient buffer. The v heads are not touched.
 *
 * The tables are (maxT, h) fp32, built once by the model on the host (any
 * rope_scaling and YaRN's attention factor are already in them); HF's own
 * (T, HS) cos repeats the h frequencies twice, which is why h columns suffice.
 * The caller guarantees HS even and every p < maxT. */
#include <stdio.h>
#include <stdlib.h>

#include "kernels/ops.h"

#define ROPE_PAR_MIN 32768

/* sign +1: the forward rotation; -1: its transpose */
static void rope_rotate(float *qkv, const float *cos_tab, const float *sin_tab,
                        const int *pos_ids, int B, int T, int pos0, int NH, int KVH, int HS,
                        float sign, const char *fn) {
    if (HS % 2 != 0) {
        fprintf(stderr, "retort: %s: head size %d is odd; rotary embeddings rotate pairs "
                        "(i, i + HS/2), so the model must refuse an odd head_dim\n", fn, HS);
        exit(1);
    }
    int h = HS / 2, rotated = NH + KVH;
    size_t W = (size_t)(NH + 2 * KVH) * HS;
    long BT = (long)B * T;
    #pragma omp parallel for if (BT * rotated * HS > ROPE_PAR_MIN)
    for (long bt = 0; bt < BT; bt++) {
        int pos = pos_ids ? pos_ids[bt] : pos0 + (int)(bt % T);
        const float *c = cos_tab + (size_t)pos * h; /* (h) */
        const float *s = sin_tab + (size_t)pos * h; /* (h) */
        for (int g = 0; g < rotated; g++) {
            float *x = qkv + (size_t)bt * W + (size_t)g * HS; /* (HS) */
            for (int i = 0; i < h; i++) {
                float a = x[i], b = x[i + h], si = sign * s[i];
                x[i] = a * c[i] - b * si;
                x[i + h] = b * c[i] + a * si;
            }
        }
    }
}

void rope_forward(float *qkv, const float *cos_tab, const float *sin_tab, const int *pos, int B,
                  int T, int pos0, int NH, int KVH, int HS) {
    rope_rotate(qkv, cos_tab, sin_tab, pos, B, T, pos0, NH, KVH, HS, 1.0f, "rope_forward");
}

void rope_backward(float *dqkv, const float *cos_tab, const float *sin_tab, const int *pos, int B,
                   int T, int pos0, int NH, int KVH, int HS) {
    rope_rotate(dqkv, cos_tab, sin_tab, pos, B, T, pos0, NH, KVH, HS, -1.0f, "rope_backward");
}
