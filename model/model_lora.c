/* model/model_lora.c — LoRA adapters inside the GPT model: attaching them to
 * the parameter table (PEFT names, A^T and B^T in Conv1D orientation),
 * merging them into the base weights, and the adapted linear layers'
 * forward and backward: y = x W + b + s (dropout(x) A^T) B^T, through the same
 * backend matmul ops as the base layer. The dropout mask is a hash of (seed,
 * forward count, adapter, element), so backward regenerates it; it is applied
 * on the host because the backend has no elementwise product. */
#include <assert.h>
#include <fnmatch.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_impl.h"

/* PEFT's default LoRA init: lora_A kaiming_uniform_(a = sqrt 5), which is
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = in; lora_B zero. A is
 * stored as A^T (in, r), so fan_in is its row count. */
void lora_init_host(const ParamInfo *p, float *w, Rng *r) {
    if (p->lora == 1) {
        double bound = 1.0 / sqrt((double)p->shape[0]);
        for (size_t k = 0; k < p->numel; k++)
            w[k] = (float)((2.0 * rng_uniform(r) - 1.0) * bound);
    } else {
        memset(w, 0, p->numel * sizeof(float));
    }
}

/* ------------------------------------------------------------------ LoRA */

/* (in, out) of GEMM mm of a block, and its weight / bias slots. */
void mm_dims(const GPT *m, int mm, int *in, int *out) {
    int C = m->cfg.n_embd;
    switch (mm) {
    case MM_QKV: *in = C; *out = m->W; break;
    case MM_O: *in = m->NH * m->HS; *out = C; break;
    case MM_FC: *in = C; *out = m->llama ? 2 * m->I : m->I; break;
    default: *in = m->I; *out = C; break;
    }
}
int mm_wslot(int mm) {
    static const int w[N_MM] = {S_QKV_W, S_O_W, S_FC_W, S_DOWN_W};
    return w[mm];
}
int mm_bslot(int mm) {
    static const int b[N_MM] = {S_QKV_B, S_O_B, S_FC_B, S_DOWN_B};
    return b[mm];
}

int lin_max_dim(const GPT *m) {
    int wide = 0;
    for (int mm = 0; mm < N_MM; mm++) {
        int in, out;
        mm_dims(m, mm, &in, &out);
        if (in > wide) wide = in;
        if (out > wide) wide = out;
    }
    return wide;
}

/* The PEFT module name of module k of block `layer`:
 * "transformer.h.<l>.attn.c_attn" (GPT-2) or "model.layers.<l>.self_attn.q_proj". */
static void lin_module(const GPT *m, int layer, int k, char *key, size_t cap) {
    snprintf(key, cap, m->llama ? "model.layers.%d.%s" : "transformer.h.%d.%s", layer,
             m->lin[k].name);
}

/* PEFT's check_target_module_exists for a module name: regex full match for
 * the string form, else equality or a "." + target suffix; plus our fnmatch
 * globs (matched with and without GPT-2's "transformer." prefix). */
static int lora_targets(const GPT *m, const LoraConfig *c, const regex_t *re, int layer, int k) {
    char key[LORA_NAME_LEN + 32];
    lin_module(m, layer, k, key, sizeof key);
    if (c->n_layers > 0) {
        int in = 0;
        for (int i = 0; i < c->n_layers; i++) in |= c->layers[i] == layer;
        if (!in) return 0;
    }
    if (re) return regexec(re, key, 0, NULL, 0) == 0;
    size_t klen = strlen(key);
    const char *bare = m->llama ? key : key + 12;
    for (int t = 0; t < c->n_targets; t++) {
        const char *tg = c->targets[t];
        size_t tlen = strlen(tg);
        if (!strcmp(key, tg)) return 1;
        if (tlen < klen && key[klen - tlen - 1] == '.' && !strcmp(key + klen - tlen, tg)) return 1;
        if (strpbrk(tg, "*?[") && (fnmatch(tg, key, 0) == 0 || fnmatch(tg, bare, 0) == 0))
            return 1;
    }
    return 0;
}

static int lora_check_config(const LoraConfig *c) {
    if (c->r < 1) return err_set("lora.r must be >= 1 (got %d)", c->r);
    if (!(c->alpha > 0)) return err_set("lora.alpha must be > 0 (got %g)", c->alpha);
    if (!(c->dropout >= 0 && c->dropout < 1))
        return err_set("lora.dropout must be in [0, 1) (got %g)", c->dropout);
    if (c->n_targets < 0 || c->n_targets > LORA_MAX_TARGETS)
        return err_set("lora.target_modules: %d names given, at most %d allowed", c->n_targets,
                       LORA_MAX_TARGETS);
    if (c->n_targets == 0 && !c->target_regex[0])
        return err_set("lora.target_modules is empty; name the linear layers to adapt (GPT-2: "
                       "c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj, c_proj means both; Llama "
                       "families: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, "
                       "down_proj)");
    return 0;
}

int gpt_lora_attach(GPT *m, const LoraConfig *cfg) {
    if (m->has_lora)
        return err_set("the model already has LoRA adapters; merge them before attaching new ones");
    if (lora_check_config(cfg) != 0) return -1;
    const Backend *be = m->be;
    int L = m->cfg.n_layer;
    regex_t re, *rep = NULL;
    if (cfg->target_regex[0]) {
        char anchored[sizeof cfg->target_regex + 8];
        snprintf(anchored, sizeof anchored, "^(%s)$", cfg->target_regex);
        if (regcomp(&re, anchored, REG_EXTENDED | REG_NOSUB) != 0)
            return err_set("lora.target_modules: '%s' is not a valid regular expression",
                           cfg->target_regex);
        rep = &re;
    }
    int count = 0;
    for (int l = 0; l < L; l++)
        for (int k = 0; k < m->n_lin; k++) count += lora_targets(m, cfg, rep, l, k);
    if (count == 0) {
        if (rep) regfree(rep);
        if (m->llama)
            return err_set("lora.target_modules matches none of the model's linear layers "
                           "(module names are model.layers.<layer>.self_attn.q_proj, .k_proj, "
                           ".v_proj, .o_proj, .mlp.gate_proj, .up_proj, .down_proj)");
        return err_set("lora.target_modules matches none of the GPT-2 linear layers "
                       "(module names are transformer.h.<layer>.attn.c_attn, .attn.c_proj, "
                       ".mlp.c_fc, .mlp.c_proj)");
    }
    /* the current parameters, to carry over into the grown buffer */
    float *host = xcalloc(m->n_alloc + (size_t)count * 2 * (((size_t)lin_max_dim(m) *
                                                               cfg->r + 15) & ~(size_t)15),
                          sizeof(float));
    be->download_f32(host, m->params, m->n_alloc);
    m->tensors = xrealloc(m->tensors, (size_t)(m->n_tensors + 2 * count) * sizeof(ParamInfo));
    int i = m->n_tensors;
    size_t off = m->n_alloc;
    Rng rng;
    rng_seed(&rng, cfg->seed);
    const char *fmt = m->llama ? "model.layers.%d.%s.lora_%c.weight" : "h.%d.%s.lora_%c.weight";
    for (int l = 0; l < L; l++)
        for (int k = 0; k < m->n_lin; k++) {
            if (!lora_targets(m, cfg, rep, l, k)) continue;
            int in = m->lin[k].in, out = m->lin[k].out;
            char name[GPT_PARAM_NAME_LEN];
            m->lora_index[l * N_LIN_MAX + k] = i;
            snprintf(name, sizeof name, fmt, l, m->lin[k].name, 'A');
            add_tensor(m, &i, &off, name, in, cfg->r);        /* A^T (in, r) */
            snprintf(name, sizeof name, fmt, l, m->lin[k].name, 'B');
            add_tensor(m, &i, &off, name, cfg->r, out);       /* B^T (r, out) */
            m->tensors[i - 2].lora = 1;
            m->tensors[i - 1].lora = 2;
            lora_init_host(&m->tensors[i - 2], host + m->tensors[i - 2].offset, &rng);
            lora_init_host(&m->tensors[i - 1], host + m->tensors[i - 1].offset, &rng);
        }
    if (rep) regfree(rep);
    m->n_tensors = i;
    m->n_alloc = off;
    be->release(m->params);
    m->params = be->alloc(m->n_alloc * be->act_size);
    if (!m->params) {
        free(host);
        return -1;
    }
    be->upload_f32(m->params, host, m->n_alloc);
    free(host);
    m->has_lora = 1;
    m->lora = *cfg;
    m->lora_scale = cfg->use_rslora ? cfg->alpha / sqrtf((float)cfg->r) : cfg->alpha / cfg->r;
    m->lora_max_N = 0;
    for (int t = 0; t < m->n_tensors; t++) m->tensors[t].trainable = m->tensors[t].lora != 0;
    return relayout_grads(m);
}

const LoraConfig *gpt_lora_config(const GPT *m) { return m->has_lora ? &m->lora : NULL; }
float gpt_lora_scale(const GPT *m) { return m->has_lora ? m->lora_scale : 0.0f; }
uint64_t gpt_lora_dropout_step(const GPT *m) { return m->dropout_count; }
void gpt_lora_set_dropout_step(GPT *m, uint64_t step) { m->dropout_count = step; }

void gpt_lora_merge(GPT *m) {
    if (!m->has_lora) return;
    float *host = xmalloc(m->n_alloc * sizeof(float));
    m->be->download_f32(host, m->params, m->n_alloc);
    int L = m->cfg.n_layer, r = m->lora.r;
    for (int l = 0; l < L; l++)
        for (int k = 0; k < m->n_lin; k++) {
            int a = m->lora_index[l * N_LIN_MAX + k];
            if (a < 0) continue;
            int in = m->lin[k].in, out = m->lin[k].out;
            /* Conv1D (in, out) for GPT-2, nn.Linear (out, in) for the Llama families */
            float *w = host + m->tensors[m->slot[l * S_COUNT + m->lin[k].wslot]].offset;
            const float *at = host + m->tensors[a].offset;      /* A^T (in, r) */
            const float *bt = host + m->tensors[a + 1].offset;  /* B^T (r, out) */
            for (int i = 0; i < in; i++)
                for (int o = 0; o < out; o++) {
                    double acc = 0;
                    for (int j = 0; j < r; j++) acc += (double)at[i * r + j] * bt[j * out + o];
                    size_t at_w = m->llama ? (size_t)o * in + i : (size_t)i * out + o;
                    w[at_w] += (float)(m->lora_scale * acc);
                }
            m->lora_index[l * N_LIN_MAX + k] = -1;
        }
    m->be->upload_f32(m->params, host, m->base_alloc);
    free(host);
    for (int t = m->n_base; t < m->n_tensors; t++) m->n_params -= m->tensors[t].numel;
    m->n_tensors = m->n_base;
    m->n_alloc = m->base_alloc;
    m->has_lora = 0;
    for (int t = 0; t < m->n_tensors; t++) m->tensors[t].trainable = 1;
    if (relayout_grads(m) != 0) {
        fprintf(stderr, "retort: %s\n", err_msg());
        exit(1);
    }
}

/* Whether backward's recomputation reruns GEMM mm of a block under the
 * model's recompute mode (model.c, recompute_block): attention reruns the
 * q/k/v GEMM, block every GEMM of the block (the down-projection only where it
 * has an adapter, whose buffers it then rebuilds). Adapters of a rerun GEMM
 * keep their buffers once, shared by every block, instead of per block. */
int lora_rerun(const GPT *m, int mm) {
    if (m->recompute == GPT_RECOMPUTE_BLOCK) return 1;
    return m->recompute == GPT_RECOMPUTE_ATTENTION && mm == MM_QKV;
}

/* LoRA activations for N rows: per adapter h (N,r) and, with dropout, the
 * dropped input (N,in) (once per module when recomputation reruns its GEMM:
 * lora_rerun); shared scratch for the adapter output and backward. */
void ensure_lora_acts(GPT *m, size_t N) {
    if (!m->has_lora || (m->lora_acts && N <= m->lora_max_N)) return;
    if (m->lora_acts) m->be->release(m->lora_acts);
    if (m->kd_buf) m->be->release(m->kd_buf);
    int L = m->cfg.n_layer, slots = L * N_LIN_MAX;
    size_t wide = (size_t)lin_max_dim(m), r = m->lora.r;
    int drop = m->lora.dropout > 0;
    free(m->lora_h);
    free(m->lora_xd);
    free(m->lora_host);
    m->lora_h = xcalloc((size_t)slots, sizeof(float *));
    m->lora_xd = xcalloc((size_t)slots, sizeof(float *));
    m->lora_host = xmalloc(N * wide * sizeof(float));
    size_t *sizes = xcalloc((size_t)2 * slots + 2 * N_LIN_MAX + 4, sizeof(size_t));
    float ***ptrs = xcalloc((size_t)2 * slots + 2 * N_LIN_MAX + 4, sizeof(float **));
    float *shared_h[N_LIN_MAX] = {0}, *shared_xd[N_LIN_MAX] = {0};
    int n = 0, shared[N_LIN_MAX] = {0};
    for (int k = 0; k < slots; k++) {
        int j = k % N_LIN_MAX;
        if (m->lora_index[k] < 0) continue;
        if (lora_rerun(m, m->lin[j].mm)) {
            shared[j] = 1; /* carved once below */
            continue;
        }
        sizes[n] = N * r;
        ptrs[n++] = &m->lora_h[k];
        if (drop) {
            sizes[n] = N * (size_t)m->lin[j].in;
            ptrs[n++] = &m->lora_xd[k];
        }
    }
    for (int j = 0; j < N_LIN_MAX; j++) {
        if (!shared[j]) continue;
        sizes[n] = N * r;
        ptrs[n++] = &shared_h[j];
        if (drop) {
            sizes[n] = N * (size_t)m->lin[j].in;
            ptrs[n++] = &shared_xd[j];
        }
    }
    sizes[n] = N * wide;
    ptrs[n++] = &m->lora_v;
    sizes[n] = N * r;
    ptrs[n++] = &m->lora_dh;
    sizes[n] = N * wide;
    ptrs[n++] = &m->lora_dx;
    sizes[n] = N * wide;
    ptrs[n++] = &m->lora_dy;
    m->lora_acts = carve(m->be, m->be->act_size, sizes, ptrs, n);
    for (int k = 0; k < slots; k++)
        if (m->lora_index[k] >= 0 && shared[k % N_LIN_MAX]) {
            m->lora_h[k] = shared_h[k % N_LIN_MAX];
            m->lora_xd[k] = shared_xd[k % N_LIN_MAX];
        }
    free(sizes);
    free(ptrs);
    m->lora_max_N = N;
}

/* Keep/drop of element i of adapter slot k at training forward `step`: a
 * SplitMix64 hash, so backward regenerates the mask of its forward. */
static float dropout_factor(const GPT *m, int k, size_t i) {
    uint64_t z = m->lora.seed ^ (m->dropout_count * 0x9E3779B97F4A7C15ull) ^
                 ((uint64_t)(k + 1) << 40) ^ (uint64_t)i * 0xD1B54A32D192ED03ull;
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    double u = (double)(z >> 11) * (1.0 / 9007199254740992.0);
    return u < m->lora.dropout ? 0.0f : 1.0f / (1.0f - m->lora.dropout);
}

/* dst = mask_k * src over (N, in), through the host. */
static void apply_dropout(GPT *m, int k, float *dst, const float *src, size_t n) {
    m->be->download_f32(m->lora_host, src, n);
    #pragma omp parallel for if (n > 65536)
    for (size_t i = 0; i < n; i++) m->lora_host[i] *= dropout_factor(m, k, i);
    m->be->upload_f32(dst, m->lora_host, n);
}

/* Column c0 of row 0 of an (N, ld) compute-type buffer. */
static float *col_at(const GPT *m, const float *base, int c0) {
    return (float *)((const char *)base + (size_t)c0 * m->be->act_size);
}

/* out (N,OC) = inp W + b (GPT-2's Conv1D layout) or inp W^T + b (nn.Linear)
 * for GEMM mm of layer l, then for each adapted module k of it
 * out[:, col0 .. col0+out) += s * dropout(inp) A^T B^T. */
void linear_forward(GPT *m, int l, int mm, float *out, const float *inp, int N,
                    int training) {
    const Backend *be = m->be;
    int in, oc;
    mm_dims(m, mm, &in, &oc);
    if (m->decoding) /* the row-invariant GEMMs (ops.h), so batching changes no bits */
        be->matmul_rows_forward(out, inp, layer_param(m, l, mm_wslot(mm)),
                                layer_param(m, l, mm_bslot(mm)), N, in, oc, m->llama);
    else if (m->llama)
        be->matmul_nt_forward(out, inp, layer_param(m, l, mm_wslot(mm)),
                              layer_param(m, l, mm_bslot(mm)), N, in, oc);
    else
        be->matmul_forward(out, inp, layer_param(m, l, mm_wslot(mm)),
                           layer_param(m, l, mm_bslot(mm)), N, in, oc);
    if (!m->has_lora) return;
    for (int k = 0; k < m->n_lin; k++) {
        const LinInfo *li = &m->lin[k];
        int ks = l * N_LIN_MAX + k, a = m->lora_index[ks];
        if (li->mm != mm || a < 0) continue;
        int r = m->lora.r, kout = li->out;
        const float *x = inp;
        if (training && m->lora.dropout > 0) {
            apply_dropout(m, l * m->n_lin + k, m->lora_xd[ks], inp, (size_t)N * in);
            x = m->lora_xd[ks];
        }
        float *h = m->lora_h[ks];
        if (m->decoding) {
            be->matmul_rows_forward(h, x, param_at(m, a), NULL, N, in, r, 0);
            be->scale_act(h, m->lora_scale, (size_t)N * r);
            be->matmul_rows_forward(m->lora_v, h, param_at(m, a + 1), NULL, N, r, kout, 0);
        } else {
            be->matmul_forward(h, x, param_at(m, a), NULL, N, in, r);             /* (N,r) */
            be->scale_act(h, m->lora_scale, (size_t)N * r);
            be->matmul_forward(m->lora_v, h, param_at(m, a + 1), NULL, N, r, kout); /* (N,out) */
        }
        if (kout == oc)
            be->residual_forward(out, out, m->lora_v, (size_t)N * oc);
        else
            be->cols_add(col_at(m, out, li->col0), oc, m->lora_v, N, kout);
    }
}

/* Backward of linear_forward: dinp (may be NULL) += dout W^T (or dout W) +
 * the adapter terms; weight, bias and adapter gradients where trainable. */
void linear_backward(GPT *m, int l, int mm, float *dinp, const float *dout,
                     const float *inp, int N) {
    const Backend *be = m->be;
    int in, oc;
    mm_dims(m, mm, &in, &oc);
    float *dw = layer_grad(m, l, mm_wslot(mm)), *db = layer_grad(m, l, mm_bslot(mm));
    const float *w = layer_param(m, l, mm_wslot(mm));
    if (dinp || dw || db) {
        if (m->llama)
            be->matmul_nt_backward(dinp, dw, db, dout, inp, w, N, in, oc);
        else
            be->matmul_backward(dinp, dw, db, dout, inp, w, N, in, oc);
    }
    if (!m->has_lora) return;
    size_t X = be->act_size;
    for (int k = 0; k < m->n_lin; k++) {
        const LinInfo *li = &m->lin[k];
        int ks = l * N_LIN_MAX + k, a = m->lora_index[ks];
        if (li->mm != mm || a < 0) continue;
        int r = m->lora.r, kout = li->out;
        float *da = grad_at(m, a), *dbt = grad_at(m, a + 1);
        if (!dinp && !da && !dbt) continue;
        /* this module's output gradient: all of dout, or its columns */
        const float *dy = dout;
        if (kout != oc) {
            be->cols_copy(m->lora_dy, col_at(m, dout, li->col0), oc, N, kout);
            dy = m->lora_dy;
        }
        /* y += h B^T with h = s * x A^T: dB^T += h^T dy, dh = dy B, then through s */
        be->zero(m->lora_dh, (size_t)N * r * X);
        be->matmul_backward(m->lora_dh, dbt, NULL, dy, m->lora_h[ks], param_at(m, a + 1), N, r,
                            kout);
        if (!dinp && !da) continue;
        be->scale_act(m->lora_dh, m->lora_scale, (size_t)N * r);
        int drop = m->fwd_dropout;
        const float *x = drop ? m->lora_xd[ks] : inp;
        float *dx = drop && dinp ? m->lora_dx : dinp;
        if (drop && dinp) be->zero(m->lora_dx, (size_t)N * in * X);
        be->matmul_backward(dx, da, NULL, m->lora_dh, x, param_at(m, a), N, in, r);
        if (drop && dinp) {
            apply_dropout(m, l * m->n_lin + k, m->lora_dx, m->lora_dx, (size_t)N * in);
            be->residual_forward(dinp, dinp, m->lora_dx, (size_t)N * in);
        }
    }
}
