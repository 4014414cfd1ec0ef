/* model/model_kd.c — word-level knowledge distillation through the fused
 * classifier (kernels/ops.h classifier_kd_*): the teacher's logits of the same
 * rows (online) or its stored top-K log-probs (offline), the divergence and
 * top-1 agreement per position, and the backward pass with the KD term. Both
 * run over the head's chunks of rows (model.h, chunked classifier): an online
 * teacher's logits are recomputed per chunk from its own kept final-layernorm
 * output, exactly as the student's. */
#include <assert.h>
#include <string.h>

#include "model/model_impl.h"

/* ---------------------------------------------------- word-level distillation */

/* Device views of the KD side buffers for N rows and K teacher entries per row. */
static void kd_buffers(GPT *m, int N, int K, float **kd, float **agree, float **w,
                       float **tlogp, int **tids) {
    size_t need = (size_t)N * (3 + 2 * (size_t)K);
    if (need > m->kd_cap) {
        if (m->kd_buf) m->be->release(m->kd_buf);
        m->kd_buf = m->be->alloc(need * sizeof(float));
        m->kd_cap = need;
    }
    *kd = m->kd_buf;
    *agree = *kd + N;
    *w = *agree + N;
    *tlogp = *w + N;
    *tids = (int *)(*tlogp + (size_t)N * K); /* int32, same size as fp32 */
}

/* The teacher's view for this (B,T): its logits (online) or the uploaded top-K. */
static int kd_teacher(GPT *m, const KdTeacher *t, float *tlogp, int *tids) {
    int N = m->B * m->T;
    if (t->teacher) {
        GPT *tm = t->teacher;
        assert(tm->be == m->be && tm->B == m->B && tm->T == m->T &&
               tm->cfg.vocab_size == m->cfg.vocab_size && tm->Vp == m->Vp);
        return 0;
    }
    assert(t->topk_ids && t->topk_logp && t->K > 0);
    m->be->to_device(tids, t->topk_ids, (size_t)N * t->K * sizeof(int));
    m->be->to_device(tlogp, t->topk_logp, (size_t)N * t->K * sizeof(float));
    return 1;
}

void gpt_kd_forward(GPT *m, const KdTeacher *t, float *kd_out, float *agree_out) {
    const Backend *be = m->be;
    int N = m->B * m->T, V = m->cfg.vocab_size, K = t->teacher ? 0 : t->K;
    float *kd, *agree, *w, *tlogp;
    int *tids;
    kd_buffers(m, N, K, &kd, &agree, &w, &tlogp, &tids);
    int topk = kd_teacher(m, t, tlogp, tids);
    int rows = head_chunk_with(m, t->teacher);
    /* from the last chunk, whose logits forward left in the buffers */
    for (int r0 = (N - 1) / rows * rows; r0 >= 0; r0 -= rows) {
        int n = N - r0 < rows ? N - r0 : rows;
        head_logits(m, r0, n);
        if (topk) {
            be->classifier_kd_topk_forward(kd + r0, agree + r0, m->logits, tids + (size_t)r0 * K,
                                           tlogp + (size_t)r0 * K, m->targets + r0, n, V, m->Vp,
                                           K, t->temperature, t->beta);
        } else {
            head_logits(t->teacher, r0, n);
            be->classifier_kd_forward(kd + r0, agree + r0, m->logits, t->teacher->logits,
                                      m->targets + r0, n, V, m->Vp, t->temperature, t->beta);
        }
    }
    be->to_host(kd_out, kd, (size_t)N * sizeof(float));
    be->to_host(agree_out, agree, (size_t)N * sizeof(float));
}

void gpt_backward_kd(GPT *m, const float *g, const KdTeacher *t, const float *w_host) {
    const Backend *be = m->be;
    int N = m->B * m->T, K = t->teacher ? 0 : t->K;
    float *kd, *agree, *w, *tlogp;
    int *tids;
    kd_buffers(m, N, K, &kd, &agree, &w, &tlogp, &tids);
    assert(m->acts && N > 0);
    if (!backward_needed(m)) return;
    kd_teacher(m, t, tlogp, tids);
    be->to_device(w, w_host, (size_t)N * sizeof(float));
    be->to_device(m->g, g, (size_t)N * sizeof(float));
    HeadKd head = {t->teacher, tids, tlogp, w, K, t->temperature, t->beta};
    backward_through_head(m, &head);
}
