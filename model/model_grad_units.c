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
#include <assert.h>
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

/* ------------------------------------------------------- parameter units */

int gpt_params_sharded(const GPT *m) { return m->params_gather != NULL; }

static int resident(const GPT *m, int i) {
    return !(m->tensors[i].trainable && m->grad_unit[i] < m->cfg.n_layer);
}

int gpt_set_params_gather(GPT *m, GptParamsGather fn, void *ctx) {
    const Backend *be = m->be;
    size_t X = be->act_size;
    if (!fn || m->params_gather)
        return err_set("gpt_set_params_gather: the parameters are sharded once, with a hook; "
                       "they cannot be unsharded or sharded again");
    if (!m->grads_ready)
        return err_set("gpt_set_params_gather: the parameters shard by the gradient units; "
                       "set gpt_set_grads_ready first");
    size_t *local = xcalloc((size_t)(m->n_tensors ? m->n_tensors : 1), sizeof(size_t));
    size_t at = 0;
    for (int i = 0; i < m->n_tensors; i++)
        if (resident(m, i)) {
            local[i] = at;
            at += m->tensors[i].alloc;
        }
    /* through the host, the whole buffer released first: the backend never
     * holds it and the resident storage together */
    float *whole = xmalloc(m->n_alloc * sizeof(float));
    float *packed = xcalloc(at > 0 ? at : 1, sizeof(float)); /* alignment tails zero */
    be->download_f32(whole, m->params, m->n_alloc);
    for (int i = 0; i < m->n_tensors; i++)
        if (resident(m, i))
            memcpy(packed + local[i], whole + m->tensors[i].offset,
                   m->tensors[i].numel * sizeof(float));
    float *res = NULL, *window = NULL;
    be->release(m->params);
    m->params = NULL;
    res = be->alloc((at > 0 ? at : 16) * X);
    window = be->alloc((m->n_window > 0 ? m->n_window : 16) * X);
    if (!res || !window) { /* the whole buffer back, as it was */
        if (res) be->release(res);
        if (window) be->release(window);
        m->params = be->alloc(m->n_alloc * X);
        if (m->params) be->upload_f32(m->params, whole, m->n_alloc);
        free(packed);
        free(whole);
        free(local);
        return err_set("gpt_set_params_gather: out of memory for the resident parameters and "
                       "the block window");
    }
    be->zero(window, (m->n_window > 0 ? m->n_window : 16) * X);
    if (at > 0) be->upload_f32(res, packed, at);
    free(packed);
    free(whole);
    m->params = res;
    m->n_resident = at;
    m->param_local = local;
    m->param_window = window;
    m->window_unit = -1;
    m->params_whole = 0;
    m->params_gather = fn;
    m->params_ctx = ctx;
    return 0;
}

float *gpt_tensor_data(GPT *m, int i) { return param_at(m, i); }

void gpt_params_changed(GPT *m) { m->window_unit = -1; }

void params_need_block(GPT *m, int l) {
    if (!m->params_gather || m->params_whole || m->window_unit == l) return;
    m->params_gather(m->params_ctx, m, l, m->param_window);
    m->window_unit = l;
}

/* The largest resident tensor's elements: the host scratch a tensor moves
 * through between the resident storage and the whole buffer. */
static size_t largest_resident(const GPT *m) {
    size_t big = 1;
    for (int i = 0; i < m->n_tensors; i++)
        if (resident(m, i) && m->tensors[i].numel > big) big = m->tensors[i].numel;
    return big;
}

/* Every resident tensor from one buffer to the other (to_whole: resident ->
 * whole), one tensor at a time through the host. */
static void move_resident(GPT *m, float *whole, float *res, int to_whole) {
    const Backend *be = m->be;
    size_t X = be->act_size;
    float *tmp = xmalloc(largest_resident(m) * sizeof(float));
    for (int i = 0; i < m->n_tensors; i++) {
        if (!resident(m, i)) continue;
        const ParamInfo *p = &m->tensors[i];
        float *w = (float *)((char *)whole + p->offset * X);
        float *r = (float *)((char *)res + m->param_local[i] * X);
        be->download_f32(tmp, to_whole ? r : w, p->numel);
        be->upload_f32(to_whole ? w : r, tmp, p->numel);
    }
    free(tmp);
}

int gpt_params_unshard(GPT *m) {
    const Backend *be = m->be;
    assert(m->params_gather && !m->params_whole);
    float *whole = be->alloc(m->n_alloc * be->act_size);
    if (!whole) return -1;
    be->zero(whole, m->n_alloc * be->act_size); /* the alignment tails, as a fresh model's */
    move_resident(m, whole, m->params, 1);
    m->params_resident = m->params;
    m->params = whole;
    m->params_whole = 1;
    return 0;
}

void gpt_params_reshard(GPT *m) {
    assert(m->params_gather && m->params_whole);
    move_resident(m, m->params, m->params_resident, 0);
    m->be->release(m->params);
    m->params = m->params_resident;
    m->params_resident = NULL;
    m->params_whole = 0;
    m->window_unit = -1;
}

size_t gpt_param_bytes(const GPT *m) {
    size_t X = m->be->act_size;
    if (m->params_gather && !m->params_whole)
        return ((m->n_resident > 0 ? m->n_resident : 16) + (m->n_window > 0 ? m->n_window : 16)) * X;
    return m->n_alloc * X;
}

int gpt_tensor_unit(const GPT *m, int i) { return m->grads_ready ? m->grad_unit[i] : -1; }
