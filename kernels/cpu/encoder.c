/* kernels/cpu/encoder.c — token + position embedding and its backward.
 *
 * Forward is a gather: out[b,t,:] = wte[inp[b,t],:] + wpe[p,:], p = pos[b,t]
 * or t (pos NULL; packed rows give positions restarting per example); wpe
 * NULL: no position term, the Llama families; backward then gets dwpe NULL too.
 * Backward is a scatter-add into wte, where many (b,t) may share one token id.
 * Instead of atomics or per-thread copies of the (V,C) table, the threads split
 * the C channels between them: each walks every (b,t) but only touches its own
 * slice of columns, so there are no races and the sum order is fixed
 * (deterministic whatever the thread count). dwpe splits over t the same way
 * without pos; with pos, several (b,t) share a position, so it is a scatter
 * like dwte and splits over channels the same way. */
#include <assert.h>

#include "kernels/ops.h"

void encoder_forward(float *out, const int *inp, const float *wte, const float *wpe,
                     const int *pos_ids, int B, int T, int C) {
    #pragma omp parallel for if ((long)B * T * C > 65536)
    for (long bt = 0; bt < (long)B * T; bt++) {
        int t = (int)(bt % T);
        assert(inp[bt] >= 0);
        const float *tok = wte + (size_t)inp[bt] * C; /* (C) */
        float *o = out + (size_t)bt * C;              /* (C) */
        if (!wpe) { /* no learned positions (Llama families) */
            for (int c = 0; c < C; c++) o[c] = tok[c];
            continue;
        }
        const float *pos = wpe + (size_t)(pos_ids ? pos_ids[bt] : t) * C; /* (C) */
        for (int c = 0; c < C; c++) o[c] = tok[c] + pos[c];
    }
}

/* Columns per work item of the dwte scatter: wide enough for whole cache lines. */
#define ENC_COL_BLOCK 64

/* inp_host is for backends whose ids live on a device; here inp is on the host */
/* dtable[ids[bt], :] += dout[bt, :] for every bt in order, threads split over
 * channel blocks */
static void scatter_rows(float *dtable, const float *dout, const int *ids, long BT, int C) {
    int n_blocks = (C + ENC_COL_BLOCK - 1) / ENC_COL_BLOCK;
    #pragma omp parallel for if (BT * C > 65536)
    for (int blk = 0; blk < n_blocks; blk++) {
        int c0 = blk * ENC_COL_BLOCK;
        int c1 = c0 + ENC_COL_BLOCK < C ? c0 + ENC_COL_BLOCK : C;
        for (long bt = 0; bt < BT; bt++) {
            float *dst = dtable + (size_t)ids[bt] * C;   /* (C) row of the table */
            const float *src = dout + (size_t)bt * C;    /* (C) */
            for (int c = c0; c < c1; c++) dst[c] += src[c];
        }
    }
}

void encoder_backward(float *dwte, float *dwpe, const float *dout, const int *inp,
                      const int *inp_host, const int *pos, const int *pos_host, int B, int T,
                      int C) {
    (void)inp_host;
    (void)pos_host;
    long BT = (long)B * T;
    if (dwte) scatter_rows(dwte, dout, inp, BT, C);
    if (dwpe && pos) {
        scatter_rows(dwpe, dout, pos, BT, C);
    } else if (dwpe) {
        #pragma omp parallel for if (BT * C > 65536)
        for (int t = 0; t < T; t++) {
            float *dst = dwpe + (size_t)t * C; /* (C) */
            for (int b = 0; b < B; b++) {
                const float *src = dout + ((size_t)b * T + t) * C; /* (C) */
                for (int c = 0; c < C; c++) dst[c] += src[c];
            }
        }
    }
}
