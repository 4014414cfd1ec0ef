/* kernels/cpu/matmul_rows_body.h — the tiled loops of matmul_rows.c, written
 * once over a 16-lane vector type and included once per instruction set.
 *
 * The includer defines:
 *   SFX            the suffix of the functions made here (_avx512, _avx2)
 *   TGT            the function attribute that enables the instruction set
 *   v16            a 16-float vector type, with the static inline functions
 *                  v16_zero, v16_add, v16_load(p, n) (the first n lanes, zeros past
 *                  them), v16_set1, v16_fma(a, b, c) = a*b + c rounded once,
 *                  v16_store(p, v, n) (the first n lanes), v16_hsum (the
 *                  fixed tree of matmul_rows.c)
 *   NN_RT, NN_NJ   the NN tile: NN_RT rows x NN_NJ vectors of columns
 *   NT_RT, NT_RO   the NT tile: NT_RT rows x NT_RO outputs
 *   NN_ONE_NJ, NT_ONE_RO  the one-row paths' widths
 * and this file undefines those parameters (not TGT or v16) at its end.
 * Every element is the sequence matmul_rows.c defines, whatever the tile, so
 * the tiles are a speed choice only. */

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)

/* out[r, o0 .. o0+width) for R rows from x (R rows, C apart) and W (C,OC),
 * over k in [k0, k1): the accumulators start from 0 at k0 = 0, else from the
 * partial sums out holds (stored fp32, so the chain of fmas is unbroken);
 * the bias is added after the last block. */
TGT static inline __attribute__((always_inline)) void CAT(nn_tile, SFX)(
    float *out, const float *x, const float *W, const float *bias, int R, int C, int OC, int o0,
    int width, int k0, int k1, int first) {
    v16 acc[NN_RT][NN_NJ];
    int lanes[NN_NJ];
#pragma GCC unroll 8
    for (int j = 0; j < NN_NJ; j++) {
        int left = width - 16 * j;
        lanes[j] = left < 0 ? 0 : left > 16 ? 16 : left;
#pragma GCC unroll 8
        for (int r = 0; r < NN_RT; r++)
            acc[r][j] = k0 == 0 || r >= R ? v16_zero()
                                          : v16_load(out + (size_t)r * OC + o0 + 16 * j, lanes[j]);
    }
    for (int k = k0; k < k1; k++) {
        const float *w = W + (size_t)k * OC + o0; /* (width) */
        if (first) /* the panel's first pass reads it from memory: rows OC apart are a
                    * stride the hardware prefetchers do not follow */
            for (int j = 0; j < NN_NJ; j++)
                _mm_prefetch((const char *)(w + (size_t)NN_PF * OC + 16 * j), _MM_HINT_T0);
        v16 wv[NN_NJ];
#pragma GCC unroll 8
        for (int j = 0; j < NN_NJ; j++) wv[j] = v16_load(w + 16 * j, lanes[j]);
#pragma GCC unroll 8
        for (int r = 0; r < NN_RT; r++) {
            if (r >= R) break;
            v16 xb = v16_set1(x[(size_t)r * C + k]);
#pragma GCC unroll 8
            for (int j = 0; j < NN_NJ; j++) acc[r][j] = v16_fma(xb, wv[j], acc[r][j]);
        }
    }
    int last = k1 == C;
    for (int r = 0; r < R && r < NN_RT; r++)
#pragma GCC unroll 8
        for (int j = 0; j < NN_NJ; j++) {
            if (!lanes[j]) continue;
            v16 v = acc[r][j];
            if (bias && last) v = v16_add(v, v16_load(bias + o0 + 16 * j, lanes[j]));
            v16_store(out + (size_t)r * OC + o0 + 16 * j, v, lanes[j]);
        }
}

/* One row (single-stream decoding): panels NN_ONE_NJ vectors wide, so each
 * row of W is read in long contiguous runs; the same fma chain per element. */
TGT static void CAT(nn_one, SFX)(float *out, const float *x, const float *W, const float *bias,
                                 int C, int OC) {
    const int P = 16 * NN_ONE_NJ;
    int panels = (OC + P - 1) / P;
    #pragma omp parallel for schedule(static) if ((long)C * OC > 262144)
    for (int p = 0; p < panels; p++) {
        int o0 = p * P, width = OC - o0 < P ? OC - o0 : P;
        v16 acc[NN_ONE_NJ];
        int lanes[NN_ONE_NJ];
#pragma GCC unroll 32
        for (int j = 0; j < NN_ONE_NJ; j++) {
            int left = width - 16 * j;
            lanes[j] = left < 0 ? 0 : left > 16 ? 16 : left;
            acc[j] = v16_zero();
        }
        if (width == P) {
            for (int k = 0; k < C; k++) {
                const float *w = W + (size_t)k * OC + o0;
                for (int j = 0; j < NN_ONE_NJ; j += 4)
                    _mm_prefetch((const char *)(w + (size_t)NN_ONE_PF * OC + 16 * j), _MM_HINT_T0);
                v16 xb = v16_set1(x[k]);
#pragma GCC unroll 32
                for (int j = 0; j < NN_ONE_NJ; j++) acc[j] = v16_fma(xb, v16_load(w + 16 * j, 16), acc[j]);
            }
        } else {
            for (int k = 0; k < C; k++) {
                const float *w = W + (size_t)k * OC + o0;
                v16 xb = v16_set1(x[k]);
                for (int j = 0; j < NN_ONE_NJ; j++)
                    if (lanes[j]) acc[j] = v16_fma(xb, v16_load(w + 16 * j, lanes[j]), acc[j]);
            }
        }
        for (int j = 0; j < NN_ONE_NJ; j++) {
            if (!lanes[j]) continue;
            v16 v = acc[j];
            if (bias) v = v16_add(v, v16_load(bias + o0 + 16 * j, lanes[j]));
            v16_store(out + o0 + 16 * j, v, lanes[j]);
        }
    }
}

/* Conv1D layout: the panels of NN_NJ*16 columns are the unit of work; each
 * panel runs over blocks of NN_KB rows of W, so a block stays in L1 while
 * every row tile uses it. */
TGT static void CAT(nn_rows, SFX)(float *out, const float *inp, const float *W, const float *bias,
                                  int N, int C, int OC) {
    if (N == 1) {
        CAT(nn_one, SFX)(out, inp, W, bias, C, OC);
        return;
    }
    const int P = 16 * NN_NJ;
    int panels = (OC + P - 1) / P;
    #pragma omp parallel for schedule(static) if ((long)N * C * OC > 262144)
    for (int p = 0; p < panels; p++) {
        int o0 = p * P, width = OC - o0 < P ? OC - o0 : P;
        for (int k0 = 0; k0 < C || k0 == 0; k0 += NN_KB) {
            int k1 = C - k0 < NN_KB ? C : k0 + NN_KB;
            for (int r0 = 0; r0 < N; r0 += NN_RT) {
                int R = N - r0 < NN_RT ? N - r0 : NN_RT;
                /* constant row counts (and a constant width for whole panels), so
                 * the tile stays in registers */
                switch (width == P ? R : -R) {
#define NN_CASE(n) \
    case n: \
        CAT(nn_tile, SFX)(out + (size_t)r0 * OC, inp + (size_t)r0 * C, W, bias, n, C, OC, o0, P, \
                          k0, k1, r0 == 0); \
        break; \
    case -n: \
        CAT(nn_tile, SFX)(out + (size_t)r0 * OC, inp + (size_t)r0 * C, W, bias, n, C, OC, o0, \
                          width, k0, k1, r0 == 0); \
        break;
                    NN_CASE(1) NN_CASE(2) NN_CASE(3) NN_CASE(4) NN_CASE(5) NN_CASE(6) NN_CASE(7) NN_CASE(8)
#undef NN_CASE
                }
            }
            if (C == 0) break;
        }
    }
}

/* One 16-wide chunk k .. k+n of the NT tile (n < 16: the tail, zeros past C). */
#define NT_CHUNK(LOADW, LOADX) \
    do { \
        v16 wv[NT_RO]; \
        _Pragma("GCC unroll 8") for (int o = 0; o < NT_RO; o++) wv[o] = o < O ? LOADW : v16_zero(); \
        _Pragma("GCC unroll 8") for (int r = 0; r < NT_RT; r++) { \
            if (r >= R) break; \
            v16 xv = LOADX; \
            _Pragma("GCC unroll 8") for (int o = 0; o < NT_RO; o++) acc[r][o] = v16_fma(xv, wv[o], acc[r][o]); \
        } \
    } while (0)

/* out[r, o0 .. o0+O) for R rows of x and O rows of W (OC,C). */
TGT static inline __attribute__((always_inline)) void CAT(nt_tile, SFX)(
    float *out, const float *x, const float *W, const float *bias, int R, int O, int C, int OC,
    int o0) {
    v16 acc[NT_RT][NT_RO];
#pragma GCC unroll 8
    for (int r = 0; r < NT_RT; r++)
#pragma GCC unroll 8
        for (int o = 0; o < NT_RO; o++) acc[r][o] = v16_zero();
    int k = 0;
    for (; k + 16 <= C; k += 16)
        NT_CHUNK(v16_load(W + (size_t)(o0 + o) * C + k, 16), v16_load(x + (size_t)r * C + k, 16));
    if (k < C) {
        int n = C - k;
        NT_CHUNK(v16_load(W + (size_t)(o0 + o) * C + k, n), v16_load(x + (size_t)r * C + k, n));
    }
    for (int r = 0; r < R && r < NT_RT; r++)
        for (int o = 0; o < O && o < NT_RO; o++) {
            float s = v16_hsum(acc[r][o]);
            out[(size_t)r * OC + o0 + o] = bias ? s + bias[o0 + o] : s;
        }
}
#undef NT_CHUNK

/* nn.Linear layout, one row (single-stream decoding): NT_ONE_RO rows of W
 * streamed side by side; each output's lanes and tree as in nt_tile. */
TGT static void CAT(nt_one, SFX)(float *out, const float *x, const float *W, const float *bias,
                                 int C, int OC) {
    int groups = (OC + NT_ONE_RO - 1) / NT_ONE_RO;
    #pragma omp parallel for schedule(static) if ((long)C * OC > 262144)
    for (int g = 0; g < groups; g++) {
        int o0 = g * NT_ONE_RO, O = OC - o0 < NT_ONE_RO ? OC - o0 : NT_ONE_RO;
        v16 acc[NT_ONE_RO];
#pragma GCC unroll 16
        for (int o = 0; o < NT_ONE_RO; o++) acc[o] = v16_zero();
        int k = 0;
        if (O == NT_ONE_RO) {
            for (; k + 16 <= C; k += 16) {
                v16 xv = v16_load(x + k, 16);
#pragma GCC unroll 16
                for (int o = 0; o < NT_ONE_RO; o++)
                    acc[o] = v16_fma(xv, v16_load(W + (size_t)(o0 + o) * C + k, 16), acc[o]);
            }
        }
        for (; k < C; k += 16) {
            int n = C - k < 16 ? C - k : 16;
            v16 xv = v16_load(x + k, n);
            for (int o = 0; o < O; o++)
                acc[o] = v16_fma(xv, v16_load(W + (size_t)(o0 + o) * C + k, n), acc[o]);
        }
        for (int o = 0; o < O; o++) {
            float sum = v16_hsum(acc[o]);
            out[o0 + o] = bias ? sum + bias[o0 + o] : sum;
        }
    }
}

/* nn.Linear layout: groups of NT_GROUP outputs are the unit of work, and
 * within a group the rows of W are reused by every row tile. */
#define NT_GROUP 64
TGT static void CAT(nt_rows, SFX)(float *out, const float *inp, const float *W, const float *bias,
                                  int N, int C, int OC) {
    if (N == 1) {
        CAT(nt_one, SFX)(out, inp, W, bias, C, OC);
        return;
    }
    int groups = (OC + NT_GROUP - 1) / NT_GROUP;
    #pragma omp parallel for schedule(static) if ((long)N * C * OC > 262144)
    for (int g = 0; g < groups; g++) {
        int g1 = (g + 1) * NT_GROUP < OC ? (g + 1) * NT_GROUP : OC;
        for (int o0 = g * NT_GROUP; o0 < g1; o0 += NT_RO) {
            int O = g1 - o0 < NT_RO ? g1 - o0 : NT_RO;
            for (int r0 = 0; r0 < N; r0 += NT_RT) {
                int R = N - r0 < NT_RT ? N - r0 : NT_RT;
                switch (O == NT_RO ? R : -R) { /* constant counts: the tile in registers */
#define NT_CASE(n) \
    case n: \
        CAT(nt_tile, SFX)(out + (size_t)r0 * OC, inp + (size_t)r0 * C, W, bias, n, NT_RO, C, OC, o0); \
        break; \
    case -n: \
        CAT(nt_tile, SFX)(out + (size_t)r0 * OC, inp + (size_t)r0 * C, W, bias, n, O, C, OC, o0); \
        break;
                    NT_CASE(1) NT_CASE(2) NT_CASE(3) NT_CASE(4) NT_CASE(5) NT_CASE(6) NT_CASE(7) NT_CASE(8)
#undef NT_CASE
                }
            }
        }
    }
}
#undef NT_GROUP
#undef CAT
#undef CAT_
/* the includer's parameters, for the next instruction set */
#undef SFX
#undef NN_ONE_NJ
#undef NT_ONE_RO
#undef NN_RT
#undef NN_NJ
#undef NT_RT
#undef NT_RO
