/* kernels/cpu/matmul_rows.c — the linear layers of decoding, row-invariant:
 * each output element is one fixed sequence of fp32 operations that depends
 * on C alone, so a sequence's logits are the same bits whether it is decoded
 * alone, beside 63 others, prefilled in one call or token by token, on one
 * thread or many. OpenBLAS gives no such promise (sgemv and sgemm, and sgemm
 * at different row counts, round differently), and batched generation must
 * give one-by-one generation's outputs.
 *
 * The sequences (ops.h, matmul_rows_forward):
 *   nt = 0, W (C,OC):  acc = 0; acc = fma(x[k], W[k,o], acc) for k = 0..C-1;
 *                      out = acc (+ bias[o])
 *   nt = 1, W (OC,C):  16 lanes, lane j: a_j = 0; a_j = fma(x[k], W[o,k], a_j)
 *                      for k = j, j+16, .. (past C: fma(0, 0, a_j));
 *                      b_j = a_j + a_{j+8} (j < 8); c_j = b_j + b_{j+4} (j < 4);
 *                      d_j = c_j + c_{j+2} (j < 2); out = (d_0 + d_1) (+ bias[o])
 * Three implementations give exactly these bits: AVX-512, AVX2 (+FMA) and a
 * plain C reference (fmaf), chosen once by the processor (RETORT_MATMUL_ISA
 * = avx512 | avx2 | scalar forces one, for tests and benchmarks). The vector
 * ones tile rows and outputs in registers, so a batch of rows reads each
 * weight once, and one row streams the weights at memory speed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_X86 1
#endif

/* ------------------------------------------------------ the reference */

static void nn_rows_scalar(float *out, const float *inp, const float *W, const float *bias,
                           int N, int C, int OC) {
    #pragma omp parallel for schedule(static) if ((long)N * C * OC > 262144)
    for (int o = 0; o < OC; o++)
        for (int r = 0; r < N; r++) {
            float acc = 0.0f;
            for (int k = 0; k < C; k++) acc = fmaf(inp[(size_t)r * C + k], W[(size_t)k * OC + o], acc);
            out[(size_t)r * OC + o] = bias ? acc + bias[o] : acc;
        }
}

static float hsum16(const float a[16]) {
    float b[8], c[4], d[2];
    for (int j = 0; j < 8; j++) b[j] = a[j] + a[j + 8];
    for (int j = 0; j < 4; j++) c[j] = b[j] + b[j + 4];
    for (int j = 0; j < 2; j++) d[j] = c[j] + c[j + 2];
    return d[0] + d[1];
}

static void nt_rows_scalar(float *out, const float *inp, const float *W, const float *bias,
                           int N, int C, int OC) {
    #pragma omp parallel for schedule(static) if ((long)N * C * OC > 262144)
    for (int o = 0; o < OC; o++)
        for (int r = 0; r < N; r++) {
            float a[16] = {0};
            for (int k0 = 0; k0 < C; k0 += 16)
                for (int j = 0; j < 16; j++) {
                    int k = k0 + j;
                    a[j] = k < C ? fmaf(inp[(size_t)r * C + k], W[(size_t)o * C + k], a[j])
                                 : fmaf(0.0f, 0.0f, a[j]);
                }
            float s = hsum16(a);
            out[(size_t)r * OC + o] = bias ? s + bias[o] : s;
        }
}

#ifdef HAVE_X86
/* Rows of W ahead that a panel's first pass prefetches. */
#define NN_PF 16
/* Rows of W per block of the Conv1D panels (NN_KB x 48 floats: 24 KiB). */
#define NN_KB 128
/* One row: panels of NN_ONE_NJ vectors (set per instruction set below), W
 * prefetched this many rows ahead. */
#define NN_ONE_PF 4

/* ------------------------------------------------------------ AVX-512 */
#define TGT __attribute__((target("avx512f,avx512dq,fma")))
typedef __m512 v16;
TGT static inline v16 v16_zero(void) { return _mm512_setzero_ps(); }
TGT static inline __mmask16 lanes_mask(int n) { return (__mmask16)((1u << n) - 1u); }
TGT static inline v16 v16_load(const float *p, int n) {
    return n == 16 ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(lanes_mask(n), p);
}
TGT static inline v16 v16_set1(float x) { return _mm512_set1_ps(x); }
TGT static inline v16 v16_fma(v16 a, v16 b, v16 c) { return _mm512_fmadd_ps(a, b, c); }
TGT static inline v16 v16_add(v16 a, v16 b) { return _mm512_add_ps(a, b); }
TGT static inline void v16_store(float *p, v16 v, int n) {
    if (n == 16) _mm512_storeu_ps(p, v);
    else _mm512_mask_storeu_ps(p, lanes_mask(n), v);
}
TGT static inline float v16_hsum(v16 a) { /* the tree of hsum16 */
    __m256 b = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
    __m128 c = _mm_add_ps(_mm256_castps256_ps128(b), _mm256_extractf128_ps(b, 1));
    __m128 d = _mm_add_ps(c, _mm_movehl_ps(c, c));
    return _mm_cvtss_f32(_mm_add_ss(d, _mm_shuffle_ps(d, d, 1)));
}
#define SFX _avx512
#define NN_ONE_NJ 24
#define NT_ONE_RO 16
#define NN_RT 8
#define NN_NJ 3
#define NT_RT 6
#define NT_RO 4
#include "kernels/cpu/matmul_rows_body.h"
#undef TGT

/* --------------------------------------------------------------- AVX2 */
#define TGT __attribute__((target("avx2,fma")))
typedef struct {
    __m256 lo, hi;
} v16x2;
#define v16 v16x2
#define v16_zero v16_zero2
#define v16_load v16_load2
#define v16_set1 v16_set12
#define v16_fma v16_fma2
#define v16_add v16_add2
#define v16_store v16_store2
#define v16_hsum v16_hsum2
TGT static inline v16 v16_zero(void) { return (v16){_mm256_setzero_ps(), _mm256_setzero_ps()}; }
TGT static inline __m256i mask8(int n) { /* lanes 0..n-1 of 8 on, n in [0, 8] */
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
TGT static inline v16 v16_load(const float *p, int n) {
    if (n == 16) return (v16){_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)};
    int nh = n > 8 ? n - 8 : 0;
    return (v16){_mm256_maskload_ps(p, mask8(n < 8 ? n : 8)), _mm256_maskload_ps(p + 8, mask8(nh))};
}
TGT static inline v16 v16_set1(float x) { return (v16){_mm256_set1_ps(x), _mm256_set1_ps(x)}; }
TGT static inline v16 v16_fma(v16 a, v16 b, v16 c) {
    return (v16){_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)};
}
TGT static inline v16 v16_add(v16 a, v16 b) {
    return (v16){_mm256_add_ps(a.lo, b.lo), _mm256_add_ps(a.hi, b.hi)};
}
TGT static inline void v16_store(float *p, v16 v, int n) {
    if (n == 16) {
        _mm256_storeu_ps(p, v.lo);
        _mm256_storeu_ps(p + 8, v.hi);
        return;
    }
    _mm256_maskstore_ps(p, mask8(n < 8 ? n : 8), v.lo);
    _mm256_maskstore_ps(p + 8, mask8(n > 8 ? n - 8 : 0), v.hi);
}
TGT static inline float v16_hsum(v16 a) { /* lanes j and j+8 are lo[j] and hi[j] */
    __m256 b = _mm256_add_ps(a.lo, a.hi);
    __m128 c = _mm_add_ps(_mm256_castps256_ps128(b), _mm256_extractf128_ps(b, 1));
    __m128 d = _mm_add_ps(c, _mm_movehl_ps(c, c));
    return _mm_cvtss_f32(_mm_add_ss(d, _mm_shuffle_ps(d, d, 1)));
}
#define SFX _avx2
#define NN_ONE_NJ 6
#define NT_ONE_RO 4
#define NN_RT 3
#define NN_NJ 2
#define NT_RT 3
#define NT_RO 2
#include "kernels/cpu/matmul_rows_body.h"
#undef TGT
#endif /* HAVE_X86 */

/* ----------------------------------------------------------- dispatch */

enum { ISA_UNSET = 0, ISA_SCALAR, ISA_AVX2, ISA_AVX512 };
static int isa_chosen;

/* The instruction set named (scalar, avx2, avx512) if this processor runs
 * it, else ISA_UNSET; the best it runs for NULL. */
static int isa_named(const char *name) {
    int have512 = 0, have2 = 0;
#ifdef HAVE_X86
    __builtin_cpu_init();
    have512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
    have2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    if (!name) return have512 ? ISA_AVX512 : have2 ? ISA_AVX2 : ISA_SCALAR;
    if (!strcmp(name, "scalar")) return ISA_SCALAR;
    if (!strcmp(name, "avx2") && have2) return ISA_AVX2;
    if (!strcmp(name, "avx512") && have512) return ISA_AVX512;
    return ISA_UNSET;
}

static int isa_detect(void) {
    const char *force = getenv("RETORT_MATMUL_ISA");
    if (force && *force) {
        int isa = isa_named(force);
        if (isa != ISA_UNSET) return isa;
        int have512 = isa_named("avx512") != ISA_UNSET, have2 = isa_named("avx2") != ISA_UNSET;
        fprintf(stderr,
                "retort: RETORT_MATMUL_ISA=%s is not one this processor runs (scalar%s%s); "
                "unset it to choose by the processor\n",
                force, have2 ? ", avx2" : "", have512 ? ", avx512" : "");
        exit(2);
    }
    return isa_named(NULL);
}

int matmul_rows_set_isa(const char *name) {
    int isa = isa_named(name);
    if (isa == ISA_UNSET) return -1;
    isa_chosen = isa;
    return 0;
}

const char *matmul_rows_isa(void) {
    if (!isa_chosen) isa_chosen = isa_detect();
    return isa_chosen == ISA_AVX512 ? "avx512" : isa_chosen == ISA_AVX2 ? "avx2" : "scalar";
}

void matmul_rows_forward(float *out, const float *inp, const float *weight, const float *bias,
                         int N, int C, int OC, int nt) {
    if (N <= 0 || OC <= 0) return;
    if (!isa_chosen) isa_chosen = isa_detect();
#ifdef HAVE_X86
    if (isa_chosen == ISA_AVX512) {
        if (nt) nt_rows_avx512(out, inp, weight, bias, N, C, OC);
        else nn_rows_avx512(out, inp, weight, bias, N, C, OC);
        return;
    }
    if (isa_chosen == ISA_AVX2) {
        if (nt) nt_rows_avx2(out, inp, weight, bias, N, C, OC);
        else nn_rows_avx2(out, inp, weight, bias, N, C, OC);
        return;
    }
#endif
    if (nt) nt_rows_scalar(out, inp, weight, bias, N, C, OC);
    else nn_rows_scalar(out, inp, weight, bias, N, C, OC);
}
