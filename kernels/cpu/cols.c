/* kernels/cpu/cols.c — copies between a dense (N, n) matrix and a slice of n
 * columns of a wider row-major matrix (leading dimension ldo or lds >= n).
 *
 * LoRA on one projection of a fused GEMM (q_proj, k_proj or v_proj of the
 * (N, W) qkv output; gate_proj or up_proj of the (N, 2I) gate|up output)
 * reads its slice of the fused input gradient with cols_copy and adds its
 * (N, n) update into the slice of the fused output with cols_add; the caller
 * passes the pointer to the slice's first column. Compute type: fp32 here. */
#include <string.h>

#include "kernels/ops.h"

#define COLS_PAR_MIN 65536

void cols_add(float *out, int ldo, const float *src, int N, int n) {
    #pragma omp parallel for if ((long)N * n > COLS_PAR_MIN)
    for (int i = 0; i < N; i++) {
        float *o = out + (size_t)i * ldo;       /* (n) of a row of ldo */
        const float *s = src + (size_t)i * n;   /* (n) */
        for (int j = 0; j < n; j++) o[j] += s[j];
    }
}

void cols_copy(float *dst, const float *src, int lds, int N, int n) {
    #pragma omp parallel for if ((long)N * n > COLS_PAR_MIN)
    for (int i = 0; i < N; i++)
        memcpy(dst + (size_t)i * n, src + (size_t)i * lds, (size_t)n * sizeof(float));
}
