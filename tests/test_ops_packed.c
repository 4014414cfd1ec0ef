/* tests/test_ops_packed.c — the ops on packed rows (kernels/ops.h): attention
 * with doc_start, the embedding and RoPE with per-token positions.
 *
 *   - attention backward against central finite differences with several
 *     examples in a row (the tolerances of tests/test_ops.c);
 *   - a packed row equals each of its examples run alone, bit for bit, in
 *     out, lse and dqkv: the CPU op computes a segment with the same code
 *     and the same sgemm shapes as a row of that length (attention.c);
 *   - a row that is one segment is plain causal attention, bit for bit;
 *   - the embedding's dwpe scatter and RoPE with positions restarting per
 *     example against the NULL-position ops on each example alone. */
#include <criterion/criterion.h>

#include "kernels/ops.h"
#include "tests/testutil_ops.h"

/* doc_start (B,T) from each row's example lengths (summing to T). */
static int *doc_starts(const int *lens, const int *n_lens, int B, int T) {
    int *ds = xmalloc((size_t)B * T * sizeof(int));
    const int *len = lens;
    for (int b = 0; b < B; b++) {
        int t = 0;
        for (int e = 0; e < n_lens[b]; e++) {
            for (int j = 0; j < len[e]; j++) ds[(size_t)b * T + t + j] = t;
            t += len[e];
        }
        cr_assert_eq(t, T, "row %d: example lengths sum to %d, not T = %d", b, t, T);
        len += n_lens[b];
    }
    return ds;
}

typedef struct {
    int B, T, NH, KVH, HS, W, CQ;
    float scale;
    const int *doc_start;
    float *qkv, *out, *lse, *dout;
} PackedAttention;

static double packed_attention_loss(void *p) {
    PackedAttention *a = p;
    attention_forward(a->out, a->lse, a->qkv, a->doc_start, a->B, a->T, a->NH, a->KVH, a->HS,
                      a->scale);
    return dot_d(a->dout, a->out, (size_t)a->B * a->T * a->CQ);
}

static void packed_init(PackedAttention *a, Rng *r, int B, int T, int NH, int KVH, int HS,
                        float scale, const int *doc_start) {
    a->B = B, a->T = T, a->NH = NH, a->KVH = KVH, a->HS = HS, a->scale = scale;
    a->W = (NH + 2 * KVH) * HS, a->CQ = NH * HS;
    a->doc_start = doc_start;
    a->qkv = rand_floats(r, (size_t)B * T * a->W, 1.0f);
    a->dout = rand_floats(r, (size_t)B * T * a->CQ, 1.0f);
    a->out = zero_floats((size_t)B * T * a->CQ);
    a->lse = zero_floats((size_t)B * NH * T);
}

static void packed_free(PackedAttention *a) {
    free(a->qkv), free(a->dout), free(a->out), free(a->lse);
}

/* Two rows: [5 | 1 | 11 | 6] and [23], grouped heads (4 query, 2 kv). */
Test(packed_attention, backward_finite_differences_with_segments) {
    Rng r;
    rng_seed(&r, 1901);
    const int lens[] = {5, 1, 11, 6, 23}, n_lens[] = {4, 1};
    int B = 2, T = 23, NH = 4, KVH = 2, HS = 8;
    int *ds = doc_starts(lens, n_lens, B, T);
    PackedAttention a;
    packed_init(&a, &r, B, T, NH, KVH, HS, 0.4f, ds);
    attention_forward(a.out, a.lse, a.qkv, ds, B, T, NH, KVH, HS, a.scale);
    size_t nw = (size_t)B * T * a.W;
    float *dqkv = zero_floats(nw);
    attention_backward(dqkv, a.dout, a.qkv, a.out, a.lse, ds, B, T, NH, KVH, HS, a.scale);
    const char *part_name[3] = {"dq", "dk", "dv"};
    size_t part_cols[3] = {(size_t)NH * HS, (size_t)KVH * HS, (size_t)KVH * HS};
    size_t part_off[3] = {0, (size_t)NH * HS, (size_t)(NH + KVH) * HS};
    for (int part = 0; part < 3; part++) {
        View view = {(size_t)B * T, part_cols[part], (size_t)a.W, part_off[part]};
        char what[96];
        snprintf(what, sizeof what, "packed attention %s", part_name[part]);
        /* h and tolerance as test_ops.c's attention check (its smooth softmax) */
        check_grad(what, packed_attention_loss, &a, a.qkv, view, dqkv, 300, 1e-2f, 2e-3, &r);
    }
    /* the one-token example attends to itself only: its q and k get no gradient */
    for (int c = 0; c < (NH + KVH) * HS; c++)
        cr_expect(fabsf(dqkv[5 * (size_t)a.W + c]) < 1e-6f,
                  "one-token example: d(q|k)[%d] = %g, want 0", c, dqkv[5 * (size_t)a.W + c]);
    /* += : a single add per element, so a second call doubles exactly (out
     * and lse recomputed: the differences left those of a perturbed input) */
    attention_forward(a.out, a.lse, a.qkv, ds, B, T, NH, KVH, HS, a.scale);
    float *dqkv2 = copy_floats(dqkv, nw);
    attention_backward(dqkv2, a.dout, a.qkv, a.out, a.lse, ds, B, T, NH, KVH, HS, a.scale);
    expect_doubled("packed attention dqkv", dqkv, dqkv2, nw, 0.0);
    free(dqkv), free(dqkv2), free(ds);
    packed_free(&a);
}

/* Examples crossing the 64-row blocks (70, 65), short ones and a one-token
 * one, multi-head and grouped: out, lse and dqkv of the packed row equal
 * those of each example alone in a row of its own length, bit for bit. */
Test(packed_attention, equals_each_example_alone_bit_exact) {
    Rng r;
    rng_seed(&r, 1902);
    const int lens[] = {70, 3, 1, 65, 9};
    const int n_ex = 5, T = 148;
    const int kv_heads[] = {4, 2, 1};
    for (int kh = 0; kh < 3; kh++) {
        int NH = 4, KVH = kv_heads[kh], HS = 16;
        int *ds = doc_starts(lens, &n_ex, 1, T);
        PackedAttention a;
        packed_init(&a, &r, 1, T, NH, KVH, HS, 0.25f, ds);
        int W = a.W, CQ = a.CQ;
        attention_forward(a.out, a.lse, a.qkv, ds, 1, T, NH, KVH, HS, a.scale);
        float *dqkv = zero_floats((size_t)T * W);
        attention_backward(dqkv, a.dout, a.qkv, a.out, a.lse, ds, 1, T, NH, KVH, HS, a.scale);
        int s = 0;
        for (int e = 0; e < n_ex; e++) {
            int n = lens[e];
            float *x = copy_floats(a.qkv + (size_t)s * W, (size_t)n * W);
            float *dO = copy_floats(a.dout + (size_t)s * CQ, (size_t)n * CQ);
            float *o = zero_floats((size_t)n * CQ), *l = zero_floats((size_t)NH * n);
            float *dx = zero_floats((size_t)n * W);
            attention_forward(o, l, x, NULL, 1, n, NH, KVH, HS, a.scale);
            attention_backward(dx, dO, x, o, l, NULL, 1, n, NH, KVH, HS, a.scale);
            char what[96];
            snprintf(what, sizeof what, "KVH=%d example %d (%d tokens) out", KVH, e, n);
            expect_equal(what, a.out + (size_t)s * CQ, o, (size_t)n * CQ);
            snprintf(what, sizeof what, "KVH=%d example %d (%d tokens) dqkv", KVH, e, n);
            expect_equal(what, dqkv + (size_t)s * W, dx, (size_t)n * W);
            for (int h = 0; h < NH; h++) {
                snprintf(what, sizeof what, "KVH=%d example %d head %d lse", KVH, e, h);
                expect_equal(what, a.lse + (size_t)h * T + s, l + (size_t)h * n, (size_t)n);
            }
            s += n;
            free(x), free(dO), free(o), free(l), free(dx);
        }
        free(dqkv), free(ds);
        packed_free(&a);
    }
}

/* doc_start all zeros (one example filling each row) is plain causal
 * attention, bit for bit, on the parallel path (B*NH tasks). */
Test(packed_attention, one_segment_is_plain_causal) {
    Rng r;
    rng_seed(&r, 1903);
    int B = 3, T = 67, NH = 8, KVH = 2, HS = 8;
    int *ds = xcalloc((size_t)B * T, sizeof(int));
    PackedAttention a;
    packed_init(&a, &r, B, T, NH, KVH, HS, 0.5f, ds);
    size_t no = (size_t)B * T * a.CQ, nl = (size_t)B * NH * T, nw = (size_t)B * T * a.W;
    float *o2 = zero_floats(no), *l2 = zero_floats(nl);
    float *g1 = zero_floats(nw), *g2 = zero_floats(nw);
    attention_forward(a.out, a.lse, a.qkv, ds, B, T, NH, KVH, HS, a.scale);
    attention_forward(o2, l2, a.qkv, NULL, B, T, NH, KVH, HS, a.scale);
    expect_equal("one segment out vs causal", a.out, o2, no);
    expect_equal("one segment lse vs causal", a.lse, l2, nl);
    attention_backward(g1, a.dout, a.qkv, a.out, a.lse, ds, B, T, NH, KVH, HS, a.scale);
    attention_backward(g2, a.dout, a.qkv, o2, l2, NULL, B, T, NH, KVH, HS, a.scale);
    expect_equal("one segment dqkv vs causal", g1, g2, nw);
    free(o2), free(l2), free(g1), free(g2), free(ds);
    packed_free(&a);
}

/* The embedding with positions: out[b,t] = wte[inp] + wpe[pos[b,t]], and dwpe
 * the scatter of dout by position, against a double-precision sum. */
Test(packed_encoder, positions_gather_and_scatter) {
    Rng r;
    rng_seed(&r, 1904);
    const int lens[] = {3, 4, 2, 7, 2}, n_lens[] = {3, 2};
    int B = 2, T = 9, C = 70, V = 5, maxT = 12;
    int *ds = doc_starts(lens, n_lens, B, T);
    int *pos = xmalloc((size_t)B * T * sizeof(int)), *inp = xmalloc((size_t)B * T * sizeof(int));
    for (int i = 0; i < B * T; i++) {
        pos[i] = i % T - ds[i];
        inp[i] = (int)rng_below(&r, V);
    }
    float *wte = rand_floats(&r, (size_t)V * C, 1.0f);
    float *wpe = rand_floats(&r, (size_t)maxT * C, 1.0f);
    float *dout = rand_floats(&r, (size_t)B * T * C, 1.0f), *out = zero_floats((size_t)B * T * C);
    encoder_forward(out, inp, wte, wpe, pos, B, T, C);
    for (int i = 0; i < B * T; i++)
        for (int c = 0; c < C; c++) {
            float want = wte[inp[i] * C + c] + wpe[pos[i] * C + c];
            cr_assert_eq(out[(size_t)i * C + c], want, "out[%d,%d] = %.9g, want %.9g", i, c,
                         out[(size_t)i * C + c], want);
        }
    float *dwpe = zero_floats((size_t)maxT * C), *dwte = zero_floats((size_t)V * C);
    encoder_backward(dwte, dwpe, dout, inp, inp, pos, pos, B, T, C);
    double *want = xcalloc((size_t)maxT * C, sizeof(double));
    for (int i = 0; i < B * T; i++)
        for (int c = 0; c < C; c++) want[pos[i] * C + c] += dout[(size_t)i * C + c];
    double e = rel_err_d(dwpe, want, (size_t)maxT * C);
    cr_expect(e < 1e-6, "dwpe by position vs double scatter: relative error %.3g", e);
    for (int p = 7; p < maxT; p++) /* no example is that long: untouched */
        for (int c = 0; c < C; c++) cr_assert_eq(dwpe[p * C + c], 0.0f, "dwpe[%d,%d]", p, c);
    /* dwte does not depend on positions */
    float *dwte0 = zero_floats((size_t)V * C);
    encoder_backward(dwte0, NULL, dout, inp, NULL, NULL, NULL, B, T, C);
    expect_equal("dwte with positions vs without", dwte, dwte0, (size_t)V * C);
    free(ds), free(pos), free(inp), free(wte), free(wpe), free(dout), free(out), free(dwpe),
        free(dwte), free(want), free(dwte0);
}

/* RoPE with positions restarting per example equals RoPE from position 0 on
 * each example alone, forward and backward, bit for bit. */
Test(packed_rope, positions_restart_per_example) {
    Rng r;
    rng_seed(&r, 1905);
    const int lens[] = {4, 1, 6, 11}, n_lens[] = {3, 1};
    int B = 2, T = 11, NH = 4, KVH = 2, HS = 8, W = (NH + 2 * KVH) * HS, h = HS / 2, maxT = 16;
    int *ds = doc_starts(lens, n_lens, B, T);
    int *pos = xmalloc((size_t)B * T * sizeof(int));
    for (int i = 0; i < B * T; i++) pos[i] = i % T - ds[i];
    float *cs = xmalloc((size_t)maxT * h * sizeof(float));
    float *sn = xmalloc((size_t)maxT * h * sizeof(float));
    for (int p = 0; p < maxT; p++)
        for (int i = 0; i < h; i++) {
            double ang = p * pow(10000.0, -2.0 * i / HS);
            cs[p * h + i] = (float)cos(ang);
            sn[p * h + i] = (float)sin(ang);
        }
    size_t n = (size_t)B * T * W;
    float *x = rand_floats(&r, n, 1.0f), *packed = copy_floats(x, n);
    float *dpacked = copy_floats(x, n);
    rope_forward(packed, cs, sn, pos, B, T, 0, NH, KVH, HS);
    rope_backward(dpacked, cs, sn, pos, B, T, 0, NH, KVH, HS);
    for (int i = 0; i < B * T;) {
        int len = 1;
        while (i + len < B * T && (i + len) % T != 0 && ds[i + len] == ds[i]) len++;
        float *alone = copy_floats(x + (size_t)i * W, (size_t)len * W);
        float *dalone = copy_floats(alone, (size_t)len * W);
        rope_forward(alone, cs, sn, NULL, 1, len, 0, NH, KVH, HS);
        rope_backward(dalone, cs, sn, NULL, 1, len, 0, NH, KVH, HS);
        char what[64];
        snprintf(what, sizeof what, "rope forward, example at %d (%d tokens)", i, len);
        expect_equal(what, packed + (size_t)i * W, alone, (size_t)len * W);
        snprintf(what, sizeof what, "rope backward, example at %d (%d tokens)", i, len);
        expect_equal(what, dpacked + (size_t)i * W, dalone, (size_t)len * W);
        free(alone), free(dalone);
        i += len;
    }
    free(ds), free(pos), free(cs), free(sn), free(x), free(packed), free(dpacked);
}
