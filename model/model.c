/* model/model.c — GPT-2 forward and backward, written once against Backend.
 *
 * The model computes exactly what Hugging Face GPT2LMHeadModel computes:
 * learned positions, pre-LayerNorm blocks, fused QKV, causal attention,
 * tanh-GELU MLP, final LayerNorm, output layer tied to wte. Every op goes
 * through be->op(...), so the same code runs on any backend.
 *
 * Memory: one allocation for parameters, one for gradients (the layout of the
 * trainable tensors; fp32 on every backend, see relayout_grads), and
 * activations sized for the largest B*T seen (compute-type buffers in one
 * allocation, the fp32 side buffers in another). Buffers of the compute type
 * are offset in bytes of be->act_size, never with float arithmetic, so the
 * same code drives fp32 and bf16 backends. Backward walks the residual
 * stream with one (N,C) buffer `dres` that every branch adds into, since the
 * ops accumulate (+=); the scratch gradients of each block are zeroed before
 * use. The classifier turns the logits into dlogits in place.
 *
 * Frozen tensors get NULL gradient pointers, which the ops skip; backward
 * stops at the lowest block that still holds a trainable tensor (the groups
 * of a block are walked in backward order and the walk ends as soon as
 * nothing below needs a gradient). LoRA adapters are two extra Conv1D
 * matmuls per adapted linear layer through the same ops; their dropout mask
 * is a hash of (seed, forward count, adapter, element), so backward
 * regenerates it instead of storing it. The mask is applied on the host
 * (download, multiply, upload) because the backend has no elementwise
 * product; that costs a round trip per adapted layer on a GPU, only when
 * lora dropout > 0.
 */
#include "model/model.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <fnmatch.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>

#include "model/backend.h"
#include "model/model_impl.h"
#include "util/util.h"


int gpt_config_check(const GPTConfig *c) {
    if (c->n_layer < 1) return err_set("model.n_layer must be >= 1 (got %d)", c->n_layer);
    if (c->n_head < 1) return err_set("model.n_head must be >= 1 (got %d)", c->n_head);
    if (c->n_embd < 1) return err_set("model.n_embd must be >= 1 (got %d)", c->n_embd);
    if (c->vocab_size < 2) return err_set("model.vocab_size must be >= 2 (got %d)", c->vocab_size);
    if (c->n_positions < 1)
        return err_set("model.n_positions must be >= 1 (got %d)", c->n_positions);
    if (c->n_embd % c->n_head != 0)
        return err_set("model.n_embd (%d) must be divisible by model.n_head (%d)", c->n_embd,
                       c->n_head);
    if (!(c->layer_norm_epsilon > 0))
        return err_set("model.layer_norm_epsilon must be > 0 (got %g)", c->layer_norm_epsilon);
    if (c->vocab_pad < 0 || c->vocab_pad > 4096)
        return err_set("vocab_pad must be in [0, 4096] (got %d)", c->vocab_pad);
    return 0;
}

static int padded_vocab(const GPTConfig *c) {
    int pad = c->vocab_pad > 0 ? c->vocab_pad : GPT_VOCAB_PAD;
    return (int)(((long)c->vocab_size + pad - 1) / pad * pad);
}

void add_tensor(GPT *m, int *i, size_t *off, const char *name, int rows, int cols) {
    ParamInfo *p = &m->tensors[(*i)++];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->offset = *off;
    p->ndim = cols > 0 ? 2 : 1;
    p->shape[0] = rows;
    p->shape[1] = cols > 0 ? cols : 0;
    p->numel = (size_t)rows * (size_t)(cols > 0 ? cols : 1);
    p->decay = p->ndim == 2;
    p->lora = 0;
    p->trainable = 1;
    p->grad_offset = GPT_NO_GRAD;
    p->alloc = (p->numel + 15) & ~(size_t)15;
    m->n_params += p->numel;
    *off += p->alloc;
}

static void build_table(GPT *m) {
    const GPTConfig *c = &m->cfg;
    int C = c->n_embd;
    m->n_tensors = 2 + P_PER_LAYER * c->n_layer + 2;
    m->tensors = xcalloc((size_t)m->n_tensors, sizeof(ParamInfo));
    int i = 0;
    size_t off = 0;
    char name[GPT_PARAM_NAME_LEN];
    add_tensor(m, &i, &off, "wte.weight", c->vocab_size, C);
    /* the padded vocabulary's rows: reserved, zero, never trained or saved */
    m->tensors[0].alloc = ((size_t)m->Vp * C + 15) & ~(size_t)15;
    off = m->tensors[0].alloc;
    add_tensor(m, &i, &off, "wpe.weight", c->n_positions, C);
    static const char *suffix[P_PER_LAYER] = {
        "ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
        "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
        "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"};
    /* (rows, cols) of each slot; cols 0 = 1-D */
    const int shape[P_PER_LAYER][2] = {{C, 0}, {C, 0}, {C, 3 * C}, {3 * C, 0}, {C, C}, {C, 0},
                                       {C, 0}, {C, 0}, {C, 4 * C}, {4 * C, 0}, {4 * C, C}, {C, 0}};
    for (int l = 0; l < c->n_layer; l++)
        for (int s = 0; s < P_PER_LAYER; s++) {
            snprintf(name, sizeof name, "h.%d.%s", l, suffix[s]);
            add_tensor(m, &i, &off, name, shape[s][0], shape[s][1]);
        }
    add_tensor(m, &i, &off, "ln_f.weight", C, 0);
    add_tensor(m, &i, &off, "ln_f.bias", C, 0);
    assert(i == m->n_tensors);
    m->n_base = m->n_tensors;
    m->n_alloc = m->base_alloc = off;
}

/* Lays the gradients out over the trainable tensors, reallocates the (zeroed)
 * gradient buffer and records what backward has to visit.
 *
 * The buffer is fp32 on every backend (model/backend.h), n_grad floats.
 * Invariant: every element outside the tensors' [grad_offset, grad_offset +
 * numel) ranges (the alignment tail of each tensor's alloc, and wte's padded
 * vocabulary rows) is zero. It is allocated zeroed here, gpt_zero_grad zeroes
 * all of it, no op writes outside a tensor's numel elements (the encoder only
 * touches rows of real ids, checked < V in gpt_forward), and the head backward
 * adds only zeros into the padded rows (the classifier zeroes the padded
 * dlogits columns). So the whole buffer is one vector whose squared norm is
 * the sum over the tensors: optim_clip_grad_norm takes it in one pass, and the
 * all-reduce of the whole buffer sums zeros there. */
int relayout_grads(GPT *m) {
    int L = m->cfg.n_layer;
    size_t off = 0;
    memset(m->layer_groups, 0, (size_t)L * sizeof(unsigned));
    m->lowest_trainable = L;
    m->embed_trainable = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        ParamInfo *p = &m->tensors[i];
        if (!p->trainable) {
            p->grad_offset = GPT_NO_GRAD;
            continue;
        }
        p->grad_offset = off;
        off += p->alloc;
        int layer = -1, group = -1;
        if (i < 2) {
            m->embed_trainable = 1;
        } else if (i < m->n_base - 2) {
            layer = (i - 2) / P_PER_LAYER;
            group = SLOT_GROUP[(i - 2) % P_PER_LAYER];
        } else if (p->lora) {
            for (int k = 0; k < L * N_LIN && layer < 0; k++)
                if (m->lora_index[k] == i || m->lora_index[k] + 1 == i) {
                    layer = k / N_LIN;
                    group = LIN_GROUP[k % N_LIN];
                }
        }
        if (layer >= 0) {
            m->layer_groups[layer] |= 1u << group;
            if (layer < m->lowest_trainable) m->lowest_trainable = layer;
        }
    }
    if (m->grads) m->be->release(m->grads);
    m->n_grad = off;
    m->grads = m->be->alloc((off > 0 ? off : 16) * sizeof(float));
    m->grad_version++;
    if (!m->grads) return -1;
    return 0;
}

GPT *gpt_create(const GPTConfig *cfg, const Backend *be) {
    if (gpt_config_check(cfg) != 0) return NULL;
    if (be->supports(cfg) != 0) return NULL; /* what the backend's kernels can run */
    GPT *m = xcalloc(1, sizeof *m);
    m->cfg = *cfg;
    m->be = be;
    m->Vp = padded_vocab(cfg);
    build_table(m);
    m->layer_groups = xcalloc((size_t)cfg->n_layer, sizeof(unsigned));
    m->lora_index = xmalloc((size_t)cfg->n_layer * N_LIN * sizeof(int));
    for (int k = 0; k < cfg->n_layer * N_LIN; k++) m->lora_index[k] = -1;
    m->train_mode = 1;
    m->params = be->alloc(m->n_alloc * be->act_size);
    if (!m->params || relayout_grads(m) != 0) {
        gpt_free(m);
        return NULL;
    }
    return m;
}

void gpt_free(GPT *m) {
    if (!m) return;
    if (m->params) m->be->release(m->params);
    if (m->grads) m->be->release(m->grads);
    if (m->acts) m->be->release(m->acts);
    if (m->acts32) m->be->release(m->acts32);
    if (m->kcache) m->be->release(m->kcache);
    if (m->vcache) m->be->release(m->vcache);
    if (m->lora_acts) m->be->release(m->lora_acts);
    if (m->kd_buf) m->be->release(m->kd_buf);
    free(m->lora_h);
    free(m->lora_xd);
    free(m->lora_host);
    free(m->lora_index);
    free(m->ids_host);
    free(m->layer_groups);
    free(m->layers);
    free(m->tensors);
    free(m);
}

const GPTConfig *gpt_config(const GPT *m) { return &m->cfg; }
const Backend *gpt_backend(const GPT *m) { return m->be; }
int gpt_num_tensors(const GPT *m) { return m->n_tensors; }
const ParamInfo *gpt_tensor(const GPT *m, int i) { return &m->tensors[i]; }
size_t gpt_num_params(const GPT *m) { return m->n_params; }
float *gpt_params(GPT *m) { return m->params; }
float *gpt_grads(GPT *m) { return m->grads; }
size_t gpt_grad_size(const GPT *m) { return m->n_grad; }
size_t gpt_grad_bytes(const GPT *m) { return m->n_grad * sizeof(float); }
int gpt_grad_layout_version(const GPT *m) { return m->grad_version; }
int gpt_tensor_trainable(const GPT *m, int i) { return m->tensors[i].trainable; }
void gpt_set_train_mode(GPT *m, int on) { m->train_mode = on != 0; }
int gpt_padded_vocab(const GPT *m) { return m->Vp; }
void gpt_set_logits_chunk(GPT *m, int rows) { m->chunk_set = rows > 0 ? rows : 0; }
int gpt_logits_chunk_rows(const GPT *m) { return m->head_rows; }

size_t gpt_num_trainable(const GPT *m) {
    size_t n = 0;
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].trainable) n += m->tensors[i].numel;
    return n;
}

const ParamInfo *gpt_find_tensor(const GPT *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (!strcmp(m->tensors[i].name, name)) return &m->tensors[i];
    return NULL;
}

int gpt_set_trainable(GPT *m, const char *const *freeze, int n_freeze,
                      const char *const *train, int n_train) {
    for (int pass = 0; pass < 2; pass++) {
        const char *const *pats = pass ? train : freeze;
        int n = pass ? n_train : n_freeze;
        for (int k = 0; k < n; k++) {
            int hits = 0;
            for (int i = 0; i < m->n_tensors; i++)
                hits += fnmatch(pats[k], m->tensors[i].name, 0) == 0;
            if (!hits)
                return err_set("%s pattern '%s' matches no parameter (names look like "
                               "'wte.weight', 'h.0.attn.c_attn.weight', 'ln_f.bias'%s)",
                               pass ? "train" : "freeze", pats[k],
                               m->has_lora ? ", 'h.0.attn.c_attn.lora_A.weight'" : "");
        }
    }
    for (int pass = 0; pass < 2; pass++) {
        const char *const *pats = pass ? train : freeze;
        int n = pass ? n_train : n_freeze;
        for (int i = 0; i < m->n_tensors; i++)
            for (int k = 0; k < n; k++)
                if (fnmatch(pats[k], m->tensors[i].name, 0) == 0) m->tensors[i].trainable = pass;
    }
    return relayout_grads(m);
}

int gpt_set_layers_trainable(GPT *m, int first, int last, int trainable) {
    int L = m->cfg.n_layer;
    if (first < 0 || last >= L || first > last)
        return err_set("layer range %d..%d is outside the model's blocks 0..%d", first, last,
                       L - 1);
    for (int l = first; l <= last; l++) {
        for (int s = 0; s < P_PER_LAYER; s++)
            m->tensors[2 + l * P_PER_LAYER + s].trainable = trainable != 0;
        for (int k = 0; k < N_LIN; k++) {
            int a = m->lora_index[l * N_LIN + k];
            if (a >= 0) m->tensors[a].trainable = m->tensors[a + 1].trainable = trainable != 0;
        }
    }
    return relayout_grads(m);
}


void gpt_init_random(GPT *m, uint64_t seed) {
    Rng r;
    rng_seed(&r, seed);
    float *host = xcalloc(m->n_alloc, sizeof(float));
    double proj_std = 0.02 / sqrt(2.0 * m->cfg.n_layer);
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamInfo *p = &m->tensors[i];
        float *w = host + p->offset;
        const char *n = p->name;
        size_t len = strlen(n);
        int is_ln = strstr(n, "ln_") != NULL;
        if (p->lora) {
            lora_init_host(p, w, &r);
        } else if (is_ln && !strcmp(n + len - 6, "weight")) {
            for (size_t k = 0; k < p->numel; k++) w[k] = 1.0f;
        } else if (p->ndim == 2) {
            double std = strstr(n, "c_proj.weight") ? proj_std : 0.02;
            for (size_t k = 0; k < p->numel; k++) w[k] = (float)(std * rng_normal(&r));
        } /* biases stay 0 */
    }
    m->be->upload_f32(m->params, host, m->n_alloc);
    free(host);
}

/* Carves `count` buffers of sizes[i] elements of `esize` bytes out of one
 * allocation; each starts 64-byte aligned. */
void *carve(const Backend *be, size_t esize, const size_t *sizes, float ***out, int count) {
    size_t total = 0;
    for (int i = 0; i < count; i++) total += (sizes[i] * esize + 63) & ~(size_t)63;
    char *base = be->alloc(total);
    if (!base) {
        fprintf(stderr, "retort: %s\n", err_msg());
        exit(1);
    }
    char *p = base;
    for (int i = 0; i < count; i++) {
        *out[i] = (float *)p;
        p += (sizes[i] * esize + 63) & ~(size_t)63;
    }
    return base;
}

/* Lays out the activation buffers for N = B*T rows: compute-type buffers in
 * one allocation, the fp32 side buffers (and token ids) in another. */
/* Rows per head chunk for N rows: all of them, unless a chunk size was set or
 * the (N, Vp) logits would pass GPT_LOGITS_BUDGET_BYTES. */
static int head_rows_for(const GPT *m, size_t N) {
    size_t rows = m->chunk_set > 0
                      ? (size_t)m->chunk_set
                      : GPT_LOGITS_BUDGET_BYTES / ((size_t)m->Vp * m->be->act_size);
    if (rows < 1) rows = 1;
    return (int)(rows < N ? rows : N);
}

static void ensure_acts(GPT *m, int B, int T) {
    size_t N = (size_t)B * T;
    const GPTConfig *c = &m->cfg;
    size_t C = c->n_embd, NH = c->n_head;
    int L = c->n_layer;
    int head_rows = head_rows_for(m, N);
    m->logits_n = 0; /* whatever the buffer held belongs to an older forward */
    if (N <= m->max_N && head_rows <= m->logits_cap && m->acts) {
        m->head_rows = head_rows;
        return;
    }
    if (N < m->max_N) N = m->max_N; /* regrown for a larger chunk only: keep the rows */
    if (m->acts) m->be->release(m->acts);
    if (m->acts32) m->be->release(m->acts32);
    free(m->layers);
    m->layers = xcalloc((size_t)L, sizeof(LayerActs));

    enum { PER_LAYER_X = 10, PER_LAYER_32 = 5, REST_X = 8, REST_32 = 7 };
    int nx = PER_LAYER_X * L + REST_X, n32 = PER_LAYER_32 * L + REST_32;
    size_t *sx = xcalloc((size_t)nx, sizeof(size_t)), *s32 = xcalloc((size_t)n32, sizeof(size_t));
    float ***px = xcalloc((size_t)nx, sizeof(float **)), ***p32 = xcalloc((size_t)n32, sizeof(float **));
    int ix = 0, i32 = 0;
/* a buffer of n elements of the compute type / of fp32: its size, and the
 * pointer carve() sets */
#define ACT_COMPUTE(ptr, n) (sx[ix] = (n), px[ix++] = &(ptr))
#define ACT_FP32(ptr, n) (s32[i32] = (n), p32[i32++] = (float **)&(ptr))
    for (int l = 0; l < L; l++) {
        LayerActs *a = &m->layers[l];
        ACT_COMPUTE(a->ln1, N * C);
        ACT_COMPUTE(a->qkv, N * 3 * C);
        ACT_COMPUTE(a->atty, N * C);
        ACT_COMPUTE(a->attproj, N * C);
        ACT_COMPUTE(a->res2, N * C);
        ACT_COMPUTE(a->ln2, N * C);
        ACT_COMPUTE(a->fch, N * 4 * C);
        ACT_COMPUTE(a->fch_gelu, N * 4 * C);
        ACT_COMPUTE(a->fcproj, N * C);
        ACT_COMPUTE(a->res3, N * C);
        ACT_FP32(a->ln1_mean, N);
        ACT_FP32(a->ln1_rstd, N);
        ACT_FP32(a->att_lse, NH * N);
        ACT_FP32(a->ln2_mean, N);
        ACT_FP32(a->ln2_rstd, N);
    }
    ACT_COMPUTE(m->encoded, N * C);
    ACT_COMPUTE(m->lnf, N * C);
    ACT_COMPUTE(m->logits, (size_t)head_rows * m->Vp);
    ACT_COMPUTE(m->dres, N * C);
    ACT_COMPUTE(m->dC, N * C);
    ACT_COMPUTE(m->dqkv, N * 3 * C);
    ACT_COMPUTE(m->dfch, N * 4 * C);
    ACT_COMPUTE(m->dfch_gelu, N * 4 * C);
    ACT_FP32(m->lnf_mean, N);
    ACT_FP32(m->lnf_rstd, N);
    ACT_FP32(m->logp, N);
    ACT_FP32(m->lse, N);
    ACT_FP32(m->g, N);
    ACT_FP32(m->inputs, N);  /* int32, same size as fp32 */
    ACT_FP32(m->targets, N);
#undef ACT_COMPUTE
#undef ACT_FP32
    assert(ix == nx && i32 == n32);
    m->acts = carve(m->be, m->be->act_size, sx, px, nx);
    m->acts32 = carve(m->be, sizeof(float), s32, p32, n32);
    assert(m->targets > m->inputs); /* consecutive in acts32: one upload moves both */
    free(m->ids_host);
    m->ids_host = xcalloc((size_t)(m->targets - m->inputs) + N, sizeof(int));
    free(sx);
    free(s32);
    free(px);
    free(p32);
    m->max_N = N;
    m->head_rows = m->logits_cap = head_rows;
}


/* Elements of one layer's key (or value) cache for B rows. */
static size_t kv_layer_elems(const GPT *m, int B) {
    return (size_t)B * m->cfg.n_positions * m->cfg.n_embd; /* B * NH * maxT * HS */
}

/* Every transformer block and the final layernorm over the (B,T) rows in
 * m->encoded, into m->lnf (the head runs per chunk: head_logits). pos < 0: training, attention
 * over the rows themselves (keeping what backward needs); pos >= 0: decoding,
 * the rows are positions pos.. and attention runs over the key/value cache. */
static void blocks_forward(GPT *m, int B, int T, int pos) {
    const Backend *be = m->be;
    const GPTConfig *c = &m->cfg;
    int C = c->n_embd, NH = c->n_head, L = c->n_layer, N = B * T;
    size_t kv_layer_bytes = pos >= 0 ? kv_layer_elems(m, m->kv_B) * be->act_size : 0;
    int training = pos < 0 && m->fwd_dropout;
    const float *residual = m->encoded;
    for (int l = 0; l < L; l++) {
        LayerActs *a = &m->layers[l];
        be->layernorm_forward(a->ln1, a->ln1_mean, a->ln1_rstd, residual,
                              layer_param(m, l, P_LN1_W), layer_param(m, l, P_LN1_B), N, C,
                              c->layer_norm_epsilon);
        linear_forward(m, l, LIN_QKV, a->qkv, a->ln1, N, training);
        if (pos < 0)
            be->attention_forward(a->atty, a->att_lse, a->qkv, B, T, NH, NH, C / NH,
                                  1.0f / sqrtf((float)(C / NH)));
        else
            be->attention_decode(a->atty, (float *)((char *)m->kcache + l * kv_layer_bytes),
                                 (float *)((char *)m->vcache + l * kv_layer_bytes), a->qkv, B, T,
                                 pos, NH, NH, C / NH, c->n_positions,
                                 1.0f / sqrtf((float)(C / NH)));
        linear_forward(m, l, LIN_ATTPROJ, a->attproj, a->atty, N, training);
        be->residual_forward(a->res2, residual, a->attproj, (size_t)N * C);
        be->layernorm_forward(a->ln2, a->ln2_mean, a->ln2_rstd, a->res2,
                              layer_param(m, l, P_LN2_W), layer_param(m, l, P_LN2_B), N, C,
                              c->layer_norm_epsilon);
        linear_forward(m, l, LIN_FC, a->fch, a->ln2, N, training);
        be->gelu_forward(a->fch_gelu, a->fch, (size_t)N * 4 * C);
        linear_forward(m, l, LIN_FCPROJ, a->fcproj, a->fch_gelu, N, training);
        be->residual_forward(a->res3, a->res2, a->fcproj, (size_t)N * C);
        residual = a->res3;
    }
    int lnf_w = m->n_base - 2, lnf_b = m->n_base - 1;
    be->layernorm_forward(m->lnf, m->lnf_mean, m->lnf_rstd, residual, param_at(m, lnf_w),
                          param_at(m, lnf_b), N, C, c->layer_norm_epsilon);
}

void head_logits(GPT *m, int r0, int n) {
    assert(n >= 1 && n <= m->logits_cap);
    if (m->logits_n == n && m->logits_r0 == r0) return;
    m->be->lm_head_forward(m->logits, act_row(m, m->lnf, (size_t)r0, (size_t)m->cfg.n_embd),
                           param_at(m, 0), n, m->cfg.n_embd, m->Vp);
    m->logits_r0 = r0;
    m->logits_n = n;
}

int head_chunk_with(const GPT *m, const GPT *teacher) {
    int rows = m->head_rows;
    if (teacher && teacher->head_rows < rows) rows = teacher->head_rows;
    return rows;
}

/* dst[0..N) = ids, checked: inputs must be in [0, V), targets in [0, V) or < 0
 * (no target). Ids come from outside (data files, prompts, samples), and one
 * out of range would make any backend read or write outside wte or a logits
 * row, so it ends the run with what was wrong. */
static void stage_ids(const GPT *m, int *dst, const int *ids, int N, int are_targets) {
    int V = m->cfg.vocab_size;
    const char *what = are_targets ? "target" : "input";
    for (int i = 0; i < N; i++) {
        if (ids[i] >= V || (ids[i] < 0 && !are_targets)) {
            fprintf(stderr, "retort: %s token id %d at position %d is outside the model's "
                            "vocabulary [0, %d); the data or prompt was tokenized for another "
                            "vocabulary: rebuild it with this model's tokenizer, or set "
                            "model.vocab_size\n",
                    what, ids[i], i, V);
            exit(1);
        }
        dst[i] = ids[i];
    }
}

void gpt_forward(GPT *m, const int *inputs, const int *targets, int B, int T, float *logp_out) {
    const Backend *be = m->be;
    const GPTConfig *c = &m->cfg;
    int C = c->n_embd, V = c->vocab_size;
    int N = B * T;
    assert(T <= c->n_positions);
    ensure_acts(m, B, T);
    ensure_lora_acts(m, (size_t)N);
    m->B = B;
    m->T = T;
    m->fwd_dropout = m->has_lora && m->train_mode && m->lora.dropout > 0;
    if (m->fwd_dropout) m->dropout_count++;
    size_t toff = (size_t)(m->targets - m->inputs); /* ints from inputs to targets */
    stage_ids(m, m->ids_host, inputs, N, 0);
    stage_ids(m, m->ids_host + toff, targets, N, 1);
    be->to_device(m->inputs, m->ids_host, (toff + N) * sizeof(int)); /* inputs and targets */

    be->encoder_forward(m->encoded, m->inputs, param_at(m, 0), param_at(m, 1), B, T, C);
    blocks_forward(m, B, T, -1);
    for (int r0 = 0; r0 < N; r0 += m->head_rows) {
        int n = N - r0 < m->head_rows ? N - r0 : m->head_rows;
        head_logits(m, r0, n);
        be->classifier_forward(m->logp + r0, m->lse + r0, m->logits, m->targets + r0, n, V,
                               m->Vp);
    }
    if (logp_out) be->to_host(logp_out, m->logp, (size_t)N * sizeof(float));
}

/* out (n rows, V) = the real columns of the logits buffer's first n rows */
static void download_logit_rows(GPT *m, float *out, int n) {
    int V = m->cfg.vocab_size, Vp = m->Vp;
    if (Vp == V) {
        m->be->download_f32(out, m->logits, (size_t)n * V);
        return;
    }
    float *rows = xmalloc((size_t)n * Vp * sizeof(float));
    m->be->download_f32(rows, m->logits, (size_t)n * Vp);
    for (int r = 0; r < n; r++)
        memcpy(out + (size_t)r * V, rows + (size_t)r * Vp, (size_t)V * sizeof(float));
    free(rows);
}

void gpt_logits(GPT *m, float *out) {
    int N = m->B * m->T;
    for (int r0 = 0; r0 < N; r0 += m->head_rows) {
        int n = N - r0 < m->head_rows ? N - r0 : m->head_rows;
        head_logits(m, r0, n);
        download_logit_rows(m, out + (size_t)r0 * m->cfg.vocab_size, n);
    }
}

/* Backward through block l, adding into m->dres (the gradient of the block's
 * output on entry, of its input on exit). need_input: something below the
 * block wants the input gradient. The walk stops as soon as neither that nor
 * a trainable group further down the block needs anything. */
static void block_backward(GPT *m, int l, int need_input) {
    const Backend *be = m->be;
    const GPTConfig *c = &m->cfg;
    int B = m->B, T = m->T, C = c->n_embd, NH = c->n_head, N = B * T;
    size_t NC = (size_t)N * C, X = be->act_size;
    LayerActs *a = &m->layers[l];
    const float *residual = l > 0 ? m->layers[l - 1].res3 : m->encoded;
    unsigned groups = m->layer_groups[l];
#define BEYOND(g) (need_input || (groups >> ((g) + 1)) != 0)
    /* res3 = res2 + fcproj: dres is the gradient of both summands */
    if (BEYOND(GRP_FCPROJ)) be->zero(m->dfch_gelu, NC * 4 * X);
    linear_backward(m, l, LIN_FCPROJ, BEYOND(GRP_FCPROJ) ? m->dfch_gelu : NULL, m->dres,
                    a->fch_gelu, N);
    if (!BEYOND(GRP_FCPROJ)) return;
    be->zero(m->dfch, NC * 4 * X);
    be->gelu_backward(m->dfch, a->fch, m->dfch_gelu, NC * 4);
    if (BEYOND(GRP_FC)) be->zero(m->dC, NC * X);
    linear_backward(m, l, LIN_FC, BEYOND(GRP_FC) ? m->dC : NULL, m->dfch, a->ln2, N);
    if (!BEYOND(GRP_FC)) return;
    be->layernorm_backward(m->dres, layer_grad(m, l, P_LN2_W), layer_grad(m, l, P_LN2_B), m->dC,
                           a->res2, layer_param(m, l, P_LN2_W), a->ln2_mean, a->ln2_rstd, N, C);
    if (!BEYOND(GRP_LN2)) return;
    /* res2 = residual + attproj */
    if (BEYOND(GRP_ATTPROJ)) be->zero(m->dC, NC * X);
    linear_backward(m, l, LIN_ATTPROJ, BEYOND(GRP_ATTPROJ) ? m->dC : NULL, m->dres, a->atty, N);
    if (!BEYOND(GRP_ATTPROJ)) return;
    be->zero(m->dqkv, NC * 3 * X);
    be->attention_backward(m->dqkv, m->dC, a->qkv, a->atty, a->att_lse, B, T, NH, NH, C / NH,
                           1.0f / sqrtf((float)(C / NH)));
    if (BEYOND(GRP_QKV)) be->zero(m->dC, NC * X);
    linear_backward(m, l, LIN_QKV, BEYOND(GRP_QKV) ? m->dC : NULL, m->dqkv, a->ln1, N);
    if (!BEYOND(GRP_QKV)) return;
    be->layernorm_backward(m->dres, layer_grad(m, l, P_LN1_W), layer_grad(m, l, P_LN1_B), m->dC,
                           residual, layer_param(m, l, P_LN1_W), a->ln1_mean, a->ln1_rstd, N, C);
#undef BEYOND
}


/* Whether backward has anything to do: some tensor trains. */
int backward_needed(const GPT *m) {
    int L = m->cfg.n_layer, lnf_w = m->n_base - 2, lnf_b = m->n_base - 1;
    /* lowest block backward must reach; L: none, the blocks are all frozen */
    int stop = m->embed_trainable ? 0 : m->lowest_trainable;
    int need_lnf = stop < L || m->tensors[lnf_w].trainable || m->tensors[lnf_b].trainable;
    return need_lnf || m->tensors[0].trainable;
}

void gpt_backward(GPT *m, const float *g) {
    int N = m->B * m->T;
    assert(m->acts && N > 0);
    if (!backward_needed(m)) return;
    m->be->to_device(m->g, g, (size_t)N * sizeof(float));
    backward_through_head(m, NULL);
}

/* Rows r0..r0+n-1 of m->logits (which holds their logits) become dlogits. */
static void chunk_dlogits(GPT *m, const HeadKd *kd, int r0, int n) {
    const Backend *be = m->be;
    int V = m->cfg.vocab_size, Vp = m->Vp;
    const float *lse = m->lse + r0, *g = m->g + r0;
    const int *targets = m->targets + r0;
    if (!kd)
        be->classifier_backward(m->logits, lse, targets, g, n, V, Vp);
    else if (kd->teacher)
        be->classifier_kd_backward(m->logits, lse, targets, g, kd->teacher->logits, kd->w + r0,
                                   n, V, Vp, kd->temperature, kd->beta);
    else
        be->classifier_kd_topk_backward(m->logits, lse, targets, g,
                                        kd->topk_ids + (size_t)r0 * kd->K,
                                        kd->topk_logp + (size_t)r0 * kd->K, kd->w + r0, n, V, Vp,
                                        kd->K, kd->temperature, kd->beta);
}

void backward_through_head(GPT *m, const HeadKd *kd) {
    const Backend *be = m->be;
    const GPTConfig *c = &m->cfg;
    int B = m->B, T = m->T;
    int C = c->n_embd, L = c->n_layer;
    int N = B * T;
    size_t NC = (size_t)N * C;
    int lnf_w = m->n_base - 2, lnf_b = m->n_base - 1;
    int stop = m->embed_trainable ? 0 : m->lowest_trainable;
    int need_lnf = stop < L || m->tensors[lnf_w].trainable || m->tensors[lnf_b].trainable;
    if (!need_lnf && !m->tensors[0].trainable) return;
    size_t X = be->act_size; /* bytes per compute-type element */
    if (need_lnf) be->zero(m->dC, NC * X);
    /* from the last chunk, whose logits forward left in the buffer */
    int rows = head_chunk_with(m, kd ? kd->teacher : NULL);
    for (int r0 = (N - 1) / rows * rows; r0 >= 0; r0 -= rows) {
        int n = N - r0 < rows ? N - r0 : rows;
        head_logits(m, r0, n);
        if (kd && kd->teacher) head_logits(kd->teacher, r0, n);
        chunk_dlogits(m, kd, r0, n);
        m->logits_n = 0; /* the buffer holds dlogits now */
        be->lm_head_backward(need_lnf ? act_row(m, m->dC, (size_t)r0, (size_t)C) : NULL,
                             grad_at(m, 0), m->logits, act_row(m, m->lnf, (size_t)r0, (size_t)C),
                             param_at(m, 0), n, C, m->Vp); /* dC = dlnf */
    }
    if (!need_lnf) return;
    be->zero(m->dres, NC * X);
    const float *last = L > 0 ? m->layers[L - 1].res3 : m->encoded;
    be->layernorm_backward(m->dres, grad_at(m, lnf_w), grad_at(m, lnf_b), m->dC, last,
                           param_at(m, lnf_w), m->lnf_mean, m->lnf_rstd, N, C);
    for (int l = L - 1; l >= stop; l--) block_backward(m, l, l > stop || m->embed_trainable);
    if (m->embed_trainable)
        be->encoder_backward(grad_at(m, 0), grad_at(m, 1), m->dres, m->inputs, m->ids_host, B,
                             T, C);
}

/* the whole buffer, padding included (relayout_grads' invariant) */
void gpt_zero_grad(GPT *m) { m->be->zero(m->grads, m->n_grad * sizeof(float)); }

size_t gpt_flat_size(const GPT *m) { return m->n_alloc; }

void gpt_copy_params_to_host(GPT *m, float *host, size_t n) {
    assert(n <= m->n_alloc);
    m->be->download_f32(host, m->params, n);
}

void gpt_copy_params_to_device(GPT *m, const float *host, size_t n) {
    assert(n <= m->n_alloc);
    m->be->upload_f32(m->params, host, n);
}

void gpt_copy_grads_to_host(GPT *m, float *host, size_t n) {
    assert(n <= m->n_alloc);
    float *packed = xmalloc((m->n_grad > 0 ? m->n_grad : 1) * sizeof(float));
    if (m->n_grad > 0) m->be->to_host(packed, m->grads, m->n_grad * sizeof(float)); /* fp32 */
    memset(host, 0, n * sizeof(float));
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamInfo *p = &m->tensors[i];
        if (p->offset >= n) continue;
        size_t k = p->offset + p->numel <= n ? p->numel : n - p->offset;
        if (p->trainable) memcpy(host + p->offset, packed + p->grad_offset, k * sizeof(float));
    }
    free(packed);
}

/* ------------------------------------------------------------- generation */

void gpt_decode(GPT *m, const int *tokens, int B, int n, int pos, float *logits_out) {
    const Backend *be = m->be;
    const GPTConfig *c = &m->cfg;
    int C = c->n_embd, V = c->vocab_size, L = c->n_layer;
    int N = B * n;
    assert(n >= 1 && pos >= 0 && pos + n <= c->n_positions);
    ensure_acts(m, B, n);
    ensure_lora_acts(m, (size_t)N);
    if (!m->kcache || m->kv_B < B) {
        if (m->kcache) be->release(m->kcache);
        if (m->vcache) be->release(m->vcache);
        size_t bytes = (size_t)L * kv_layer_elems(m, B) * be->act_size;
        m->kcache = be->alloc(bytes);
        m->vcache = be->alloc(bytes);
        if (!m->kcache || !m->vcache) {
            fprintf(stderr, "retort: %s\n", err_msg());
            exit(1);
        }
        m->kv_B = B;
    }
    m->B = B;
    m->T = n;
    m->fwd_dropout = 0;
    stage_ids(m, m->ids_host, tokens, N, 0);
    be->to_device(m->inputs, m->ids_host, (size_t)N * sizeof(int));
    /* positions pos.. : the encoder adds wpe rows from a shifted base */
    const float *wte = param_at(m, 0);
    const float *wpe = (const float *)((const char *)param_at(m, 1) +
                                       (size_t)pos * C * be->act_size);
    be->encoder_forward(m->encoded, m->inputs, wte, wpe, B, n, C);
    blocks_forward(m, B, n, pos);
    /* the head only for each row's last token */
    if (n == 1) {
        for (int r0 = 0; r0 < B; r0 += m->head_rows) {
            int rows = B - r0 < m->head_rows ? B - r0 : m->head_rows;
            head_logits(m, r0, rows);
            download_logit_rows(m, logits_out + (size_t)r0 * V, rows);
        }
    } else {
        for (int b = 0; b < B; b++) {
            head_logits(m, b * n + (n - 1), 1);
            download_logit_rows(m, logits_out + (size_t)b * V, 1);
        }
    }
}

void gpt_kv_reorder(GPT *m, const int *src, int B, int len) {
    const Backend *be = m->be;
    const GPTConfig *c = &m->cfg;
    assert(m->kcache && B <= m->kv_B && len <= c->n_positions);
    /* one layer at a time through the host: (B, NH, maxT, HS), copying only
     * the first len positions of each (row, head) */
    size_t esz = be->act_size, HS = (size_t)c->n_embd / c->n_head, maxT = c->n_positions;
    size_t layer_bytes = kv_layer_elems(m, m->kv_B) * esz, row_bytes = layer_bytes / m->kv_B;
    char *old = xmalloc(layer_bytes), *new = xmalloc(layer_bytes);
    for (int l = 0; l < c->n_layer; l++)
        for (int kv = 0; kv < 2; kv++) {
            char *dev = (char *)(kv ? m->vcache : m->kcache) + l * layer_bytes;
            be->to_host(old, dev, layer_bytes);
            memcpy(new, old, layer_bytes);
            for (int b = 0; b < B; b++)
                for (int h = 0; h < c->n_head; h++) {
                    size_t off = (size_t)h * maxT * HS * esz;
                    memcpy(new + b * row_bytes + off, old + src[b] * row_bytes + off,
                           len * HS * esz);
                }
            be->to_device(dev, new, layer_bytes);
        }
    free(old);
    free(new);
}
