/* model/packing.c — packed rows: several examples in one row of T tokens,
 * each seeing only itself.
 *
 * The caller (an objective over packed data, data/pack.h) gives per token the
 * index where its example begins, doc_start (B,T). From it the model derives
 * the positions t - doc_start[b,t], so positions restart at 0 per example,
 * and both go up to the backend once, at the start of the forward that uses
 * them: the encoder reads the positions (GPT-2's wpe rows), RoPE its angles
 * (Llama families), attention the example starts (kernels/ops.h). Backward
 * reuses what the forward uploaded. A set applies to the next forward only,
 * so a later forward (evaluation, another objective) cannot inherit a stale
 * layout. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_impl.h"

/* doc_start must describe contiguous segments inside each row (what the
 * attention ops require); it is the caller's data, so a bad one is an error. */
static int check_doc_start(const int *doc_start, int B, int T) {
    for (int b = 0; b < B; b++) {
        const int *ds = doc_start + (size_t)b * T;
        for (int t = 0; t < T; t++) {
            int ok = t == 0 ? ds[t] == 0 : (ds[t] == t || ds[t] == ds[t - 1]);
            if (!ok)
                return err_set("gpt_set_packing: doc_start[%d,%d] = %d; each row must start "
                               "at 0 and every entry must be its own index (an example "
                               "starts) or the previous entry (it goes on)",
                               b, t, ds[t]);
        }
    }
    return 0;
}

int gpt_set_packing(GPT *m, const int *doc_start, int B, int T) {
    if (B <= 0 || T <= 0 || T > m->cfg.n_positions)
        return err_set("gpt_set_packing: shape B=%d T=%d (need B >= 1 and 1 <= T <= %d)", B, T,
                       m->cfg.n_positions);
    if (check_doc_start(doc_start, B, T) != 0) return -1;
    size_t N = (size_t)B * T;
    if (N > m->pack_cap) {
        free(m->pack_host);
        if (m->pack_dev) m->be->release(m->pack_dev);
        m->pack_host = xmalloc(2 * N * sizeof(int));
        m->pack_dev = m->be->alloc(2 * N * sizeof(int));
        m->pack_cap = N;
    }
    int *pos = m->pack_host, *ds = m->pack_host + m->pack_cap;
    for (size_t i = 0; i < N; i++) pos[i] = (int)(i % T) - doc_start[i];
    memcpy(ds, doc_start, N * sizeof(int));
    m->pack_B = B;
    m->pack_T = T;
    m->pack_pending = 1;
    return 0;
}

void packing_begin_forward(GPT *m, int B, int T) {
    m->pk_pos = m->pk_doc = m->pk_pos_host = NULL;
    if (!m->pack_pending) return;
    m->pack_pending = 0;
    if (B != m->pack_B || T != m->pack_T) {
        fprintf(stderr, "retort: gpt_set_packing was given (B=%d, T=%d) but the forward runs "
                        "(B=%d, T=%d); set the packing of the rows the forward gets\n",
                m->pack_B, m->pack_T, B, T);
        exit(1);
    }
    /* positions at 0, starts at pack_cap, in both copies */
    m->be->to_device(m->pack_dev, m->pack_host, 2 * m->pack_cap * sizeof(int));
    m->pk_pos = m->pack_dev;
    m->pk_doc = m->pack_dev + m->pack_cap;
    m->pk_pos_host = m->pack_host;
}

void packing_free(GPT *m) {
    free(m->pack_host);
    if (m->pack_dev) m->be->release(m->pack_dev);
    m->pack_host = NULL;
    m->pack_dev = NULL;
    m->pack_cap = 0;
}
