/* model/model_grad_units.c — the gradient layout cut into units (one per
 * block, one for the global tensors) for sharded gradients (ZeRO-2,
 * model.h gpt_set_grads_ready).
 *
 * The layout itself does not change: tensor i keeps its grad_offset, so the
 * optimizer's shards, the checkpoints and the sums stay those of the whole
 * buffer. What changes is where a tensor's gradient lives while backward
 * writes it: the global tensors in m->grads (n_global floats), a block's in
 * m->grad_window (the largest block's size), each unit's tensors packed in
 * layout order with their 16-float alignment tails (zero, as in the whole
 * buffer). The base tensors of a block are contiguous in the layout (the
 * table lists a block's tensors together), so a block without LoRA is one
 * run; its LoRA adapters follow all base tensors in the layout (model_lora.c
 * appends them) and form a second run; the global tensors are two runs
 * (embeddings first, final norm and head after the blocks).
 */
#include <stdlib.h>
#include <string.h>

#include "model/backend.h"
#include "model/model_impl.h"
#include "util/util.h"

/* Block of tensor i (base or adapter), or L for a global one. */
static int unit_of(const GPT *m, int i) {
    int L = m->cfg.n_layer;
    if (i < m->n_base) return m->t_layer[i] >= 0 ? m->t_layer[i] : L;
    for (int k = 0; k < L * N_LIN_MAX; k++)
        if (m->lora_index[k] >= 0 && (m->lora_index[k] == i || m->lora_index[k] + 1 == i))
            return k / N_LIN_MAX;
    return L;
}

void grad_units_free(GPT *m) {
    if (m->grad_window) m->be->release(m->grad_window);
    m->grad_window = NULL;
    free(m->grad_unit);
    free(m->grad_local);
    free(m->grad_runs);
    free(m->unit_first);
    m->grad_unit = NULL;
    m->grad_local = NULL;
    m->grad_runs = NULL;
    m->unit_first = NULL;
}

void grad_units_build(GPT *m) {
    int L = m->cfg.n_layer, n = m->n_tensors;
    grad_units_free(m);
    if (m->grads_ready && m->grads) m->be->release(m->grads); /* sized for the other mode */
    if (m->grads_ready) m->grads = NULL;
    m->grad_unit = xmalloc((size_t)(n ? n : 1) * sizeof(int));
    m->grad_local = xcalloc((size_t)(n ? n : 1), sizeof(size_t));
    m->unit_first = xcalloc((size_t)L + 2, sizeof(int));
    m->grad_runs = xmalloc((size_t)(n ? n : 1) * sizeof(GptGradRun)); /* at most one per tensor */
    for (int i = 0; i < n; i++) m->grad_unit[i] = m->tensors[i].trainable ? unit_of(m, i) : -1;
    int n_runs = 0;
    m->n_global = m->n_window = 0;
    for (int u = 0; u <= L; u++) {
        m->unit_first[u] = n_runs;
        size_t at = 0;
        for (int i = 0; i < n; i++) { /* table order is layout order */
            const ParamInfo *p = &m->tensors[i];
            if (m->grad_unit[i] != u) continue;
            m->grad_local[i] = at;
            GptGradRun *last = n_runs > m->unit_first[u] ? &m->grad_runs[n_runs - 1] : NULL;
            if (last && last->hi == p->grad_offset)
                last->hi += p->alloc;
            else
                m->grad_runs[n_runs++] = (GptGradRun){p->grad_offset, p->grad_offset + p->alloc, at};
            at += p->alloc;
        }
        if (u == L) m->n_global = at;
        else if (at > m->n_window) m->n_window = at;
    }
    m->unit_first[L + 1] = n_runs;
}

void gpt_set_grads_ready(GPT *m, GptGradsReady fn, void *ctx) {
    m->grads_ready = fn;
    m->grads_ctx = ctx;
    if (fn) {
        grad_units_build(m);
    } else {
        grad_units_free(m);
        if (m->grads) m->be->release(m->grads);
        m->grads = NULL;
        if (m->grads_done) grad_units_build(m); /* the runs, over the whole buffer */
    }
}

/* The overlapped reduction's hook: the runs only, the whole buffer stays. */
void gpt_set_grads_done(GPT *m, GptGradsReady fn, void *ctx) {
    m->grads_done = fn;
    m->grads_done_ctx = ctx;
    if (m->grads_ready) return; /* the units exist already */
    if (fn) grad_units_build(m);
    else grad_units_free(m);
}

int gpt_grad_unit_runs(const GPT *m, int unit, const GptGradRun **runs) {
    if ((!m->grads_ready && !m->grads_done) || unit < 0 || unit > m->cfg.n_layer) {
        *runs = NULL;
        return 0;
    }
    *runs = m->grad_runs + m->unit_first[unit];
    return m->unit_first[unit + 1] - m->unit_first[unit];
}

float *gpt_grad_unit_data(GPT *m, int unit) {
    return unit == m->cfg.n_layer ? m->grads : m->grad_window;
}
