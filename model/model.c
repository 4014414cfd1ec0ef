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
 * same code drives fp32 and bf16 backends. With activation recomputation
 * (gpt_set_recompute, model.h) the per-block buffers a mode does not keep are
 * carved once, as m->scratch, and every block's pointers to them alias it:
 * forward writes each block's into the same memory, and backward reruns a
 * block's forward (block_forward, as far as backward reads) from its kept
 * input just before the block's backward. gpt_activation_bytes lays the
 * buffers out on a model that holds only the shape, so the planned bytes are
 * the allocated bytes by construction. Backward walks the residual
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


static const char *const ARCH_NAME[ARCH_COUNT] = {"gpt2", "llama", "mistral", "qwen2", "qwen3"};

const char *gpt_arch_name(int arch) {
    return arch >= 0 && arch < ARCH_COUNT ? ARCH_NAME[arch] : "?";
}

int gpt_arch_from_name(const char *name) {
    for (int a = 0; a < ARCH_COUNT; a++)
        if (name && !strcmp(name, ARCH_NAME[a])) return a;
    return -1;
}

int gpt_context_len(const GPTConfig *c) {
    return c->sliding_window > 0 && c->sliding_window < c->n_positions ? c->sliding_window
                                                                        : c->n_positions;
}

int gpt_config_check(const GPTConfig *c) {
    if (c->arch < 0 || c->arch >= ARCH_COUNT)
        return err_set("model.arch %d is not a known family (gpt2, llama, mistral, qwen2, qwen3)",
                       c->arch);
    if (c->n_layer < 1) return err_set("model.n_layer must be >= 1 (got %d)", c->n_layer);
    if (c->n_head < 1) return err_set("model.n_head must be >= 1 (got %d)", c->n_head);
    if (c->n_embd < 1) return err_set("model.n_embd must be >= 1 (got %d)", c->n_embd);
    if (c->vocab_size < 2) return err_set("model.vocab_size must be >= 2 (got %d)", c->vocab_size);
    if (c->n_positions < 1)
        return err_set("model.n_positions must be >= 1 (got %d)", c->n_positions);
    if (c->head_dim < 0) return err_set("model.head_dim must be >= 0 (got %d)", c->head_dim);
    if (c->head_dim == 0 && c->n_embd % c->n_head != 0)
        return err_set("model.n_embd (%d) must be divisible by model.n_head (%d)%s", c->n_embd,
                       c->n_head, c->arch == ARCH_GPT2 ? "" : ", or set model.head_dim");
    if (!(c->layer_norm_epsilon > 0))
        return err_set("model.layer_norm_epsilon must be > 0 (got %g)", c->layer_norm_epsilon);
    if (c->vocab_pad < 0 || c->vocab_pad > 4096)
        return err_set("vocab_pad must be in [0, 4096] (got %d)", c->vocab_pad);
    if (c->intermediate_size < 0 || c->n_kv_head < 0 || c->sliding_window < 0)
        return err_set("model.intermediate_size, n_kv_head and sliding_window must be >= 0 "
                       "(got %d, %d, %d)", c->intermediate_size, c->n_kv_head,
                       c->sliding_window);
    /* sizes whose products must fit an int (offsets are size_t, dimensions int) */
    long long HS = c->head_dim ? c->head_dim : c->n_embd / c->n_head;
    long long KVH = c->n_kv_head ? c->n_kv_head : c->n_head;
    long long I = c->intermediate_size ? c->intermediate_size : 4LL * c->n_embd;
    if ((c->n_head + 2 * KVH) * HS > 0x7fffffffLL || 2 * I > 0x7fffffffLL ||
        (long long)c->vocab_size * 2 > 0x7fffffffLL)
        return err_set("the model's sizes overflow a 32-bit dimension (heads %d x head size "
                       "%lld, MLP width %lld)", c->n_head, HS, I);
    if (c->arch == ARCH_GPT2) {
        if (c->n_kv_head && c->n_kv_head != c->n_head)
            return err_set("model.n_kv_head: GPT-2 has no grouped-query attention (n_kv_head "
                           "%d, n_head %d)", c->n_kv_head, c->n_head);
        if (c->head_dim && c->head_dim * c->n_head != c->n_embd)
            return err_set("model.head_dim: GPT-2's head size is n_embd / n_head");
        if (c->intermediate_size && c->intermediate_size != 4 * c->n_embd)
            return err_set("model.intermediate_size: GPT-2's MLP is 4 * n_embd = %d wide",
                           4 * c->n_embd);
        if (c->untied_head || c->qk_norm || c->attn_bias || c->attn_out_bias || c->mlp_bias ||
            c->sliding_window || c->rope_type)
            return err_set("model: GPT-2 has no untied head, q/k norm, bias switches, sliding "
                           "window or rotary scaling; those options are for the Llama-style "
                           "families (model.arch llama, mistral, qwen2, qwen3)");
        return 0;
    }
    if (c->attn_no_scale || c->attn_scale_inv_layer)
        return err_set("model: scale_attn_weights / scale_attn_by_inverse_layer_idx are GPT-2 "
                       "options; %s scales attention by 1/sqrt(head_dim)",
                       gpt_arch_name(c->arch));
    if (c->n_head % KVH != 0)
        return err_set("model.n_kv_head (%lld) must divide model.n_head (%d): each key/value "
                       "head serves n_head / n_kv_head query heads", KVH, c->n_head);
    if (HS % 2 != 0)
        return err_set("model.head_dim %lld is odd; rotary embeddings rotate pairs of "
                       "channels, so the head size must be even", HS);
    if (c->intermediate_size < 1)
        return err_set("model.intermediate_size must be set for %s (the SwiGLU MLP width)",
                       gpt_arch_name(c->arch));
    if (c->rope_theta < 0 || !isfinite(c->rope_theta))
        return err_set("model.rope_theta must be a positive number (got %g)", c->rope_theta);
    if (c->rope_type < ROPE_DEFAULT || c->rope_type > ROPE_YARN)
        return err_set("model: rope scaling type %d is not one of default, linear, llama3, yarn",
                       c->rope_type);
    if (c->rope_type != ROPE_DEFAULT && !(c->rope_factor > 0 && isfinite(c->rope_factor)))
        return err_set("model: rope_scaling.factor must be a positive number (got %g)",
                       c->rope_factor);
    if (c->rope_type == ROPE_LLAMA3 &&
        (c->rope_original_max_pos < 1 || !(c->rope_high_freq_factor > c->rope_low_freq_factor) ||
         !(c->rope_low_freq_factor > 0)))
        return err_set("model: llama3 rope_scaling needs original_max_position_embeddings >= 1 "
                       "and 0 < low_freq_factor < high_freq_factor (got %d, %g, %g)",
                       c->rope_original_max_pos, c->rope_low_freq_factor,
                       c->rope_high_freq_factor);
    if (c->rope_type == ROPE_YARN && c->rope_original_max_pos < 1)
        return err_set("model: yarn rope_scaling needs original_max_position_embeddings >= 1");
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

/* Adds a tensor whose successor must follow it without a gap (the parts of a
 * fused GEMM weight): no alignment padding after it. */
static void add_packed(GPT *m, int *i, size_t *off, const char *name, int rows, int cols) {
    add_tensor(m, i, off, name, rows, cols);
    ParamInfo *p = &m->tensors[*i - 1];
    *off -= p->alloc - p->numel;
    p->alloc = p->numel;
}

/* A block tensor: its slot, layer and group recorded. */
static void add_slot(GPT *m, int *i, size_t *off, int l, int slot, const char *suffix,
                     int rows, int cols, int packed) {
    char name[GPT_PARAM_NAME_LEN];
    snprintf(name, sizeof name, m->llama ? "model.layers.%d.%s" : "h.%d.%s", l, suffix);
    m->slot[l * S_COUNT + slot] = *i;
    m->t_layer[*i] = l;
    m->t_group[*i] = SLOT_GROUP[slot];
    if (packed)
        add_packed(m, i, off, name, rows, cols);
    else
        add_tensor(m, i, off, name, rows, cols);
}

/* The family's module list for LoRA (see LinInfo). */
static void build_lins(GPT *m) {
    int C = m->cfg.n_embd, QD = m->NH * m->HS, KD = m->KVH * m->HS, I = m->I;
    if (!m->llama) {
        const LinInfo gpt2[4] = {{"attn.c_attn", MM_QKV, 0, 3 * C, C, S_QKV_W},
                                 {"attn.c_proj", MM_O, 0, C, C, S_O_W},
                                 {"mlp.c_fc", MM_FC, 0, I, C, S_FC_W},
                                 {"mlp.c_proj", MM_DOWN, 0, C, I, S_DOWN_W}};
        memcpy(m->lin, gpt2, sizeof gpt2);
        m->n_lin = 4;
        return;
    }
    const LinInfo llama[7] = {{"self_attn.q_proj", MM_QKV, 0, QD, C, S_QKV_W},
                              {"self_attn.k_proj", MM_QKV, QD, KD, C, S_K_W},
                              {"self_attn.v_proj", MM_QKV, QD + KD, KD, C, S_V_W},
                              {"self_attn.o_proj", MM_O, 0, C, QD, S_O_W},
                              {"mlp.gate_proj", MM_FC, 0, I, C, S_FC_W},
                              {"mlp.up_proj", MM_FC, I, I, C, S_UP_W},
                              {"mlp.down_proj", MM_DOWN, 0, C, I, S_DOWN_W}};
    memcpy(m->lin, llama, sizeof llama);
    m->n_lin = 7;
}

static void build_table(GPT *m) {
    const GPTConfig *c = &m->cfg;
    int C = c->n_embd, L = c->n_layer, I = m->I;
    int max_tensors = 4 + S_COUNT * L;
    m->tensors = xcalloc((size_t)max_tensors, sizeof(ParamInfo));
    m->t_layer = xmalloc((size_t)max_tensors * sizeof(int));
    m->t_group = xmalloc((size_t)max_tensors * sizeof(int));
    for (int k = 0; k < max_tensors; k++) m->t_layer[k] = m->t_group[k] = -1;
    m->slot = xmalloc((size_t)L * S_COUNT * sizeof(int));
    for (int k = 0; k < L * S_COUNT; k++) m->slot[k] = -1;
    m->i_wpe = m->i_lnf_b = -1;
    int i = 0;
    size_t off = 0;
    size_t vp_rows_alloc = ((size_t)m->Vp * C + 15) & ~(size_t)15;
    m->i_wte = i;
    add_tensor(m, &i, &off, m->llama ? "model.embed_tokens.weight" : "wte.weight",
               c->vocab_size, C);
    /* the padded vocabulary's rows: reserved, zero, never trained or saved */
    off += vp_rows_alloc - m->tensors[m->i_wte].alloc;
    m->tensors[m->i_wte].alloc = vp_rows_alloc;
    if (!m->llama) {
        m->i_wpe = i;
        add_tensor(m, &i, &off, "wpe.weight", c->n_positions, C);
        /* (rows, cols) of each slot in the Conv1D layout; cols 0 = 1-D */
        for (int l = 0; l < L; l++) {
            add_slot(m, &i, &off, l, S_LN1_W, "ln_1.weight", C, 0, 0);
            add_slot(m, &i, &off, l, S_LN1_B, "ln_1.bias", C, 0, 0);
            add_slot(m, &i, &off, l, S_QKV_W, "attn.c_attn.weight", C, 3 * C, 0);
            add_slot(m, &i, &off, l, S_QKV_B, "attn.c_attn.bias", 3 * C, 0, 0);
            add_slot(m, &i, &off, l, S_O_W, "attn.c_proj.weight", C, C, 0);
            add_slot(m, &i, &off, l, S_O_B, "attn.c_proj.bias", C, 0, 0);
            add_slot(m, &i, &off, l, S_LN2_W, "ln_2.weight", C, 0, 0);
            add_slot(m, &i, &off, l, S_LN2_B, "ln_2.bias", C, 0, 0);
            add_slot(m, &i, &off, l, S_FC_W, "mlp.c_fc.weight", C, I, 0);
            add_slot(m, &i, &off, l, S_FC_B, "mlp.c_fc.bias", I, 0, 0);
            add_slot(m, &i, &off, l, S_DOWN_W, "mlp.c_proj.weight", I, C, 0);
            add_slot(m, &i, &off, l, S_DOWN_B, "mlp.c_proj.bias", C, 0, 0);
        }
        m->i_lnf_w = i;
        add_tensor(m, &i, &off, "ln_f.weight", C, 0);
        m->i_lnf_b = i;
        add_tensor(m, &i, &off, "ln_f.bias", C, 0);
        m->i_head = m->i_wte;
    } else {
        int QD = m->NH * m->HS, KD = m->KVH * m->HS;
        for (int l = 0; l < L; l++) {
            add_slot(m, &i, &off, l, S_LN1_W, "input_layernorm.weight", C, 0, 0);
            add_slot(m, &i, &off, l, S_QKV_W, "self_attn.q_proj.weight", QD, C, 1);
            add_slot(m, &i, &off, l, S_K_W, "self_attn.k_proj.weight", KD, C, 1);
            add_slot(m, &i, &off, l, S_V_W, "self_attn.v_proj.weight", KD, C, 0);
            if (c->attn_bias) {
                add_slot(m, &i, &off, l, S_QKV_B, "self_attn.q_proj.bias", QD, 0, 1);
                add_slot(m, &i, &off, l, S_K_B, "self_attn.k_proj.bias", KD, 0, 1);
                add_slot(m, &i, &off, l, S_V_B, "self_attn.v_proj.bias", KD, 0, 0);
            }
            if (c->qk_norm) {
                add_slot(m, &i, &off, l, S_QNORM, "self_attn.q_norm.weight", m->HS, 0, 0);
                add_slot(m, &i, &off, l, S_KNORM, "self_attn.k_norm.weight", m->HS, 0, 0);
            }
            add_slot(m, &i, &off, l, S_O_W, "self_attn.o_proj.weight", C, QD, 0);
            if (c->attn_out_bias) add_slot(m, &i, &off, l, S_O_B, "self_attn.o_proj.bias", C, 0, 0);
            add_slot(m, &i, &off, l, S_LN2_W, "post_attention_layernorm.weight", C, 0, 0);
            add_slot(m, &i, &off, l, S_FC_W, "mlp.gate_proj.weight", I, C, 1);
            add_slot(m, &i, &off, l, S_UP_W, "mlp.up_proj.weight", I, C, 0);
            if (c->mlp_bias) {
                add_slot(m, &i, &off, l, S_FC_B, "mlp.gate_proj.bias", I, 0, 1);
                add_slot(m, &i, &off, l, S_UP_B, "mlp.up_proj.bias", I, 0, 0);
            }
            add_slot(m, &i, &off, l, S_DOWN_W, "mlp.down_proj.weight", C, I, 0);
            if (c->mlp_bias) add_slot(m, &i, &off, l, S_DOWN_B, "mlp.down_proj.bias", C, 0, 0);
        }
        m->i_lnf_w = i;
        add_tensor(m, &i, &off, "model.norm.weight", C, 0);
        m->i_head = m->i_wte;
        if (c->untied_head) {
            m->i_head = i;
            add_tensor(m, &i, &off, "lm_head.weight", c->vocab_size, C);
            off += vp_rows_alloc - m->tensors[m->i_head].alloc;
            m->tensors[m->i_head].alloc = vp_rows_alloc;
        }
    }
    assert(i <= max_tensors);
    m->n_tensors = m->n_base = i;
    m->n_alloc = m->base_alloc = off;
}

/* Lays the gradients out over the trainable tensors, releases the gradient
 * buffer (ensure_grads allocates it, zeroed, when first needed) and records
 * what backward has to visit.
 *
 * The buffer is fp32 on every backend (model/backend.h), n_grad floats.
 * Invariant: every element outside the tensors' [grad_offset, grad_offset +
 * numel) ranges (the alignment tail of each tensor's alloc, and wte's padded
 * vocabulary rows) is zero. It is allocated zeroed, gpt_zero_grad zeroes
 * all of it, no op writes outside a tensor's numel elements (the encoder only
 * touches rows of real ids, checked < V in gpt_forward), and the head backward
 * adds only zeros into the padded rows (the classifier zeroes the padded
 * dlogits columns). So the whole buffer is one vector whose squared norm is
 * the sum over the tensors: optim_clip_grad_norm takes it in one pass, and the
 * all-reduce of the whole buffer sums zeros there. */
int relayout_grads(GPT *m) {
    int L = m->cfg.n_layer;
    if (m->params_gather) {
        fprintf(stderr, "retort: the trainable tensors changed while the parameters are sharded "
                        "(gpt_set_params_gather); set them before sharding\n");
        abort();
    }
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
        if (i == m->i_wte || i == m->i_wpe) {
            m->embed_trainable = 1;
        } else if (i < m->n_base) {
            layer = m->t_layer[i];
            group = m->t_group[i];
        } else if (p->lora) {
            for (int k = 0; k < L * N_LIN_MAX && layer < 0; k++)
                if (m->lora_index[k] >= 0 &&
                    (m->lora_index[k] == i || m->lora_index[k] + 1 == i)) {
                    layer = k / N_LIN_MAX;
                    group = MM_GROUP[m->lin[k % N_LIN_MAX].mm];
                }
        }
        if (layer >= 0) {
            m->layer_groups[layer] |= 1u << group;
            if (layer < m->lowest_trainable) m->lowest_trainable = layer;
        }
    }
    if (m->grads) m->be->release(m->grads);
    m->grads = NULL; /* allocated on first use: a model that only generates never needs it */
    m->n_grad = off;
    m->grad_version++;
    if (m->grads_ready || m->grads_done) grad_units_build(m);
    return 0;
}

/* The gradient buffer, allocated (zeroed) the first time anything needs it:
 * backward, the optimizer, the all-reduce. Inference (generate, eval, a
 * teacher, a reference model) never touches it, which keeps a loaded model's
 * memory at its parameters. */
static float *ensure_grads(GPT *m) {
    if (!m->grads) {
        /* with gradient units: the global unit's storage, and one block window */
        size_t n = m->grads_ready ? m->n_global : m->n_grad;
        m->grads = m->be->alloc((n > 0 ? n : 16) * sizeof(float));
        if (m->grads && m->grads_ready)
            m->grad_window = m->be->alloc((m->n_window > 0 ? m->n_window : 16) * sizeof(float));
        if (!m->grads || (m->grads_ready && !m->grad_window)) {
            fprintf(stderr, "retort: %s\n", err_msg());
            exit(1);
        }
    }
    return m->grads;
}

/* The inverse frequencies of the rotary embedding, HS/2 of them, as
 * transformers' ROPE_INIT_FUNCTIONS compute them (modeling_rope_utils.py:
 * default, linear, llama3, yarn), and the factor cos and sin are multiplied by
 * (YaRN's attention factor; 1 otherwise). The base frequencies are rounded to
 * fp32 as torch rounds them, since at position t an ulp of difference moves
 * the angle by t ulps; the scaling arithmetic is in double. */
static double rope_inv_freq(const GPTConfig *c, int HS, double *inv, int with_scaling) {
    int half = HS / 2;
    double base = c->rope_theta > 0 ? c->rope_theta : 10000.0, factor = c->rope_factor;
    /* in fp32 as torch does: 1.0 / (base ** (arange(0, HS, 2).float() / HS)) */
    for (int i = 0; i < half; i++)
        inv[i] = 1.0f / powf((float)base, (float)(2 * i) / (float)HS);
    if (!with_scaling) return 1.0;
    switch (c->rope_type) {
    case ROPE_LINEAR:
        for (int i = 0; i < half; i++) inv[i] /= factor;
        return 1.0;
    case ROPE_LLAMA3: {
        double old = c->rope_original_max_pos;
        double lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor;
        double low_wavelen = old / lo, high_wavelen = old / hi;
        for (int i = 0; i < half; i++) {
            double wavelen = 2 * M_PI / inv[i];
            double f = wavelen > low_wavelen ? inv[i] / factor : inv[i];
            if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
                double smooth = (old / wavelen - lo) / (hi - lo);
                f = (1 - smooth) * f / factor + smooth * f;
            }
            inv[i] = f;
        }
        return 1.0;
    }
    case ROPE_YARN: {
        double attn = c->rope_attention_factor;
        if (!(attn > 0)) attn = factor <= 1 ? 1.0 : 0.1 * log(factor) + 1.0;
        double fast = c->rope_beta_fast > 0 ? c->rope_beta_fast : 32;
        double slow = c->rope_beta_slow > 0 ? c->rope_beta_slow : 1;
        double omax = c->rope_original_max_pos;
        double low = HS * log(omax / (fast * 2 * M_PI)) / (2 * log(base));
        double high = HS * log(omax / (slow * 2 * M_PI)) / (2 * log(base));
        if (!c->rope_no_truncate) {
            low = floor(low);
            high = ceil(high);
        }
        if (low < 0) low = 0;
        if (high > HS - 1) high = HS - 1;
        if (low == high) high += 0.001;
        for (int i = 0; i < half; i++) {
            double ramp = (i - low) / (high - low);
            ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
            double extra = 1 - ramp; /* the extrapolation share */
            double pos_freq = pow(base, (double)(2 * i) / HS);
            inv[i] = 1.0 / (factor * pos_freq) * (1 - extra) + 1.0 / pos_freq * extra;
        }
        return attn;
    }
    default:
        return 1.0;
    }
}

/* cos and sin of every position times each inverse frequency, (n_positions,
 * HS/2) fp32 on the backend, for rope_forward / rope_backward. */
static int rope_tables(GPT *m) {
    int half = m->HS / 2, maxT = m->cfg.n_positions;
    double *inv = xmalloc((size_t)half * sizeof(double));
    double attn = rope_inv_freq(&m->cfg, m->HS, inv, 1);
    float *cs = xmalloc((size_t)maxT * half * sizeof(float));
    float *sn = xmalloc((size_t)maxT * half * sizeof(float));
    for (int t = 0; t < maxT; t++)
        for (int i = 0; i < half; i++) {
            /* transformers: freqs in fp32 (position * inv_freq rounded), then cos */
            float ang = (float)t * (float)inv[i];
            cs[(size_t)t * half + i] = (float)(cos((double)ang) * attn);
            sn[(size_t)t * half + i] = (float)(sin((double)ang) * attn);
        }
    free(inv);
    size_t bytes = (size_t)maxT * half * sizeof(float);
    m->rope_cos = m->be->alloc(bytes);
    m->rope_sin = m->be->alloc(bytes);
    int ok = m->rope_cos && m->rope_sin;
    if (ok) {
        m->be->to_device(m->rope_cos, cs, bytes);
        m->be->to_device(m->rope_sin, sn, bytes);
    }
    free(cs);
    free(sn);
    return ok ? 0 : -1;
}

/* The family's shape, derived once from the config. */
static void derive_shape(GPT *m, const GPTConfig *cfg) {
    m->cfg = *cfg;
    m->Vp = padded_vocab(cfg);
    m->llama = cfg->arch != ARCH_GPT2;
    m->NH = cfg->n_head;
    m->KVH = cfg->n_kv_head ? cfg->n_kv_head : cfg->n_head;
    m->HS = cfg->head_dim ? cfg->head_dim : cfg->n_embd / cfg->n_head;
    m->I = cfg->intermediate_size ? cfg->intermediate_size : 4 * cfg->n_embd;
    m->W = (m->NH + 2 * m->KVH) * m->HS;
}

GPT *gpt_create(const GPTConfig *cfg, const Backend *be) {
    if (gpt_config_check(cfg) != 0) return NULL;
    if (be->supports(cfg) != 0) return NULL; /* what the backend's kernels can run */
    GPT *m = xcalloc(1, sizeof *m);
    m->be = be;
    derive_shape(m, cfg);
    m->scratch_layer = -1;
    build_table(m);
    build_lins(m);
    m->layer_groups = xcalloc((size_t)cfg->n_layer, sizeof(unsigned));
    m->lora_index = xmalloc((size_t)cfg->n_layer * N_LIN_MAX * sizeof(int));
    for (int k = 0; k < cfg->n_layer * N_LIN_MAX; k++) m->lora_index[k] = -1;
    m->train_mode = 1;
    m->params = be->alloc(m->n_alloc * be->act_size);
    if (!m->params || relayout_grads(m) != 0 || (m->llama && rope_tables(m) != 0)) {
        gpt_free(m);
        return NULL;
    }
    return m;
}

void gpt_free(GPT *m) {
    if (!m) return;
    if (m->params) m->be->release(m->params);
    if (m->params_resident) m->be->release(m->params_resident); /* freed in whole mode */
    if (m->param_window) m->be->release(m->param_window);
    free(m->param_local);
    if (m->grads) m->be->release(m->grads);
    grad_units_free(m);
    if (m->acts) m->be->release(m->acts);
    if (m->acts32) m->be->release(m->acts32);
    if (m->kcache) m->be->release(m->kcache);
    if (m->vcache) m->be->release(m->vcache);
    if (m->dec_dev) m->be->release(m->dec_dev);
    free(m->dec_host);
    if (m->lora_acts) m->be->release(m->lora_acts);
    if (m->kd_buf) m->be->release(m->kd_buf);
    if (m->rope_cos) m->be->release(m->rope_cos);
    if (m->rope_sin) m->be->release(m->rope_sin);
    packing_free(m);
    free(m->slot);
    free(m->t_layer);
    free(m->t_group);
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
float *gpt_params(GPT *m) {
    if (m->params_gather && !m->params_whole) {
        fprintf(stderr, "retort: gpt_params: the parameters are sharded (gpt_set_params_gather); "
                        "there is no whole buffer outside gpt_params_unshard\n");
        abort();
    }
    return m->params;
}
float *gpt_grads(GPT *m) {
    if (m->grads_ready) {
        fprintf(stderr, "retort: gpt_grads: the model keeps its gradients by unit "
                        "(gpt_set_grads_ready); there is no whole gradient buffer\n");
        abort();
    }
    return ensure_grads(m);
}
size_t gpt_grad_size(const GPT *m) { return m->n_grad; }
size_t gpt_grad_bytes(const GPT *m) {
    if (m->grads_ready) return (m->n_global + m->n_window) * sizeof(float);
    return m->n_grad * sizeof(float);
}
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
            if (!hits) {
                if (m->llama)
                    return err_set("%s pattern '%s' matches no parameter (names look like "
                                   "'model.embed_tokens.weight', "
                                   "'model.layers.0.self_attn.q_proj.weight', "
                                   "'model.norm.weight'%s)",
                                   pass ? "train" : "freeze", pats[k],
                                   m->has_lora ? ", 'model.layers.0.self_attn.q_proj.lora_A."
                                                 "weight'" : "");
                return err_set("%s pattern '%s' matches no parameter (names look like "
                               "'wte.weight', 'h.0.attn.c_attn.weight', 'ln_f.bias'%s)",
                               pass ? "train" : "freeze", pats[k],
                               m->has_lora ? ", 'h.0.attn.c_attn.lora_A.weight'" : "");
            }
        }
    }
    int *was = xmalloc((size_t)m->n_tensors * sizeof(int));
    for (int i = 0; i < m->n_tensors; i++) was[i] = m->tensors[i].trainable;
    for (int pass = 0; pass < 2; pass++) {
        const char *const *pats = pass ? train : freeze;
        int n = pass ? n_train : n_freeze;
        for (int i = 0; i < m->n_tensors; i++)
            for (int k = 0; k < n; k++)
                if (fnmatch(pats[k], m->tensors[i].name, 0) == 0) m->tensors[i].trainable = pass;
    }
    /* the parts of one fused GEMM weight (q/k/v, gate/up and their biases) get
     * one gradient product, so they train or freeze together */
    static const int fused[][3] = {{S_QKV_W, S_K_W, S_V_W}, {S_QKV_B, S_K_B, S_V_B},
                                   {S_FC_W, S_UP_W, -1}, {S_FC_B, S_UP_B, -1}};
    for (int l = 0; l < m->cfg.n_layer; l++)
        for (int f = 0; f < 4; f++) {
            int first = m->slot[l * S_COUNT + fused[f][0]];
            for (int k = 1; k < 3 && first >= 0 && fused[f][k] >= 0; k++) {
                int other = m->slot[l * S_COUNT + fused[f][k]];
                if (other >= 0 && m->tensors[other].trainable != m->tensors[first].trainable) {
                    const char *a = m->tensors[first].name, *b = m->tensors[other].name;
                    for (int i = 0; i < m->n_tensors; i++) m->tensors[i].trainable = was[i];
                    free(was);
                    return err_set("freeze/train patterns split %s and %s: retort computes "
                                   "q/k/v (and gate/up) as one matrix, so they train or "
                                   "freeze together; widen the pattern to both (or use "
                                   "LoRA to adapt one of them)", a, b);
                }
            }
        }
    free(was);
    return relayout_grads(m);
}

int gpt_set_layers_trainable(GPT *m, int first, int last, int trainable) {
    int L = m->cfg.n_layer;
    if (first < 0 || last >= L || first > last)
        return err_set("layer range %d..%d is outside the model's blocks 0..%d", first, last,
                       L - 1);
    for (int l = first; l <= last; l++) {
        for (int s = 0; s < S_COUNT; s++)
            if (m->slot[l * S_COUNT + s] >= 0)
                m->tensors[m->slot[l * S_COUNT + s]].trainable = trainable != 0;
        for (int k = 0; k < N_LIN_MAX; k++) {
            int a = m->lora_index[l * N_LIN_MAX + k];
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
        /* norm gains: GPT-2's ln_*, the Llama families' *layernorm, model.norm,
         * q_norm / k_norm */
        int is_ln = strstr(n, "ln_") != NULL || strstr(n, "layernorm") != NULL ||
                    strstr(n, "norm.weight") != NULL;
        if (p->lora) {
            lora_init_host(p, w, &r);
        } else if (is_ln && !strcmp(n + len - 6, "weight")) {
            for (size_t k = 0; k < p->numel; k++) w[k] = 1.0f;
        } else if (p->ndim == 2) {
            /* GPT-2 scales its residual projections; transformers' Llama
             * initialisation is N(0, 0.02) everywhere */
            double std = !m->llama && strstr(n, "c_proj.weight") ? proj_std : 0.02;
            for (size_t k = 0; k < p->numel; k++) w[k] = (float)(std * rng_normal(&r));
        } /* biases stay 0 */
    }
    m->be->upload_f32(m->params, host, m->n_alloc);
    free(host);
}

/* Carves `count` buffers of sizes[i] elements of `esize` bytes out of one
 * allocation; each starts 64-byte aligned, and a size of 0 gives NULL. */
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
        *out[i] = sizes[i] ? (float *)p : NULL; /* 0: a buffer this model does not use */
        p += (sizes[i] * esize + 63) & ~(size_t)63;
    }
    return base;
}

/* Rows per head chunk for N rows: all of them, unless a chunk size was set or
 * the (N, Vp) logits would pass GPT_LOGITS_BUDGET_BYTES. */
static int head_rows_for(const GPT *m, size_t N, size_t act_size) {
    size_t rows = m->chunk_set > 0 ? (size_t)m->chunk_set
                                   : GPT_LOGITS_BUDGET_BYTES / ((size_t)m->Vp * act_size);
    if (rows < 1) rows = 1;
    return (int)(rows < N ? rows : N);
}

/* One buffer of a block's activations: where it sits in LayerActs, whether it
 * is fp32 (else the compute type), its elements for N rows (0: the family
 * has none), and whether the recompute mode keeps it per block (else it lives
 * once, in m->scratch, and backward recomputes it). */
typedef struct {
    size_t off;
    int fp32;
    size_t n;
    int kept;
} LayerBuf;
enum { N_LAYER_BUFS = 17 };

static int layer_buffers(const GPT *m, size_t N, LayerBuf *b) {
    size_t C = (size_t)m->cfg.n_embd, W = (size_t)m->W, QD = (size_t)m->NH * m->HS;
    size_t I = (size_t)m->I, FC = m->llama ? 2 * I : I; /* [gate | up] or c_fc */
    size_t norm_mean = m->llama ? 0 : N;                 /* RMSNorm keeps no mean */
    int qkn = m->cfg.qk_norm;
    int attn = m->recompute == GPT_RECOMPUTE_NONE;       /* the attention half is kept */
    int mlp = m->recompute != GPT_RECOMPUTE_BLOCK;       /* the MLP half is kept */
    int k = 0;
#define LB(field, is32, elems, keep) \
    (b[k++] = (LayerBuf){offsetof(LayerActs, field), (is32), (elems), (keep)})
    LB(ln1, 0, N * C, attn);
    LB(qkv, 0, N * W, attn);
    LB(qkv_raw, 0, qkn ? N * W : 0, attn);
    LB(atty, 0, N * QD, attn);
    LB(attproj, 0, N * C, attn);  /* backward never reads it: kept by none only */
    LB(res2, 0, N * C, mlp);
    LB(ln2, 0, N * C, mlp);
    LB(fch, 0, N * FC, mlp);
    LB(fch_gelu, 0, N * I, mlp);
    LB(fcproj, 0, N * C, attn);   /* backward never reads it: kept by none only */
    LB(res3, 0, N * C, 1);        /* the next block's input: kept by every mode */
    LB(ln1_mean, 1, norm_mean, attn);
    LB(ln1_rstd, 1, N, attn);
    LB(att_lse, 1, (size_t)m->NH * N, attn);
    LB(ln2_mean, 1, norm_mean, mlp);
    LB(ln2_rstd, 1, N, mlp);
    LB(qkn_rstd, 1, qkn ? N * (size_t)(m->NH + m->KVH) : 0, attn);
#undef LB
    assert(k == N_LAYER_BUFS);
    return k;
}

static float **layer_field(LayerActs *a, const LayerBuf *b) {
    return (float **)((char *)a + b->off);
}

/* The sizes and pointer targets of every activation buffer for N rows and
 * head_rows logits rows: compute-type buffers in x, fp32 side buffers (and
 * token ids) in f32. m->layers must hold L entries. */
typedef struct {
    size_t *size;
    float ***ptr;
    int n;
} ActList;

static void act_add(ActList *l, float **ptr, size_t n) {
    l->size[l->n] = n;
    l->ptr[l->n++] = ptr;
}

static void act_layout(GPT *m, size_t N, int head_rows, ActList *x, ActList *f32) {
    size_t C = (size_t)m->cfg.n_embd, W = (size_t)m->W, QD = (size_t)m->NH * m->HS;
    size_t I = (size_t)m->I, FC = m->llama ? 2 * I : I;
    size_t DC = QD > C ? QD : C; /* dC serves both (N,C) and the attention output */
    int qkn = m->cfg.qk_norm;
    LayerBuf b[N_LAYER_BUFS];
    layer_buffers(m, N, b);
    for (int l = 0; l < m->cfg.n_layer; l++)
        for (int k = 0; k < N_LAYER_BUFS; k++)
            if (b[k].kept) act_add(b[k].fp32 ? f32 : x, layer_field(&m->layers[l], &b[k]), b[k].n);
    for (int k = 0; k < N_LAYER_BUFS; k++)
        if (!b[k].kept) act_add(b[k].fp32 ? f32 : x, layer_field(&m->scratch, &b[k]), b[k].n);
    act_add(x, &m->encoded, N * C);
    act_add(x, &m->lnf, N * C);
    act_add(x, &m->logits, (size_t)head_rows * m->Vp);
    act_add(x, &m->dres, N * C);
    act_add(x, &m->dC, N * DC);
    act_add(x, &m->dqkv, N * W);
    act_add(x, &m->dqkv_raw, qkn ? N * W : 0);
    act_add(x, &m->dfch, N * FC);
    act_add(x, &m->dfch_gelu, N * I);
    act_add(f32, &m->lnf_mean, m->llama ? 0 : N);
    act_add(f32, &m->lnf_rstd, N);
    act_add(f32, &m->logp, N);
    act_add(f32, &m->lse, N);
    act_add(f32, &m->g, N);
    act_add(f32, (float **)&m->inputs, N);  /* int32, same size as fp32 */
    act_add(f32, (float **)&m->targets, N); /* right after inputs: one upload moves both */
}

enum { ACT_REST_X = 9, ACT_REST_32 = 7 }; /* act_layout's buffers outside the blocks */

static ActList act_list(int count) {
    ActList l = {xcalloc((size_t)count, sizeof(size_t)), xcalloc((size_t)count, sizeof(float **)), 0};
    return l;
}

static void act_list_free(ActList *l) {
    free(l->size);
    free(l->ptr);
}

/* Bytes carve() takes for these buffers (each 64-byte aligned). */
static size_t act_list_bytes(const ActList *l, size_t esize) {
    size_t total = 0;
    for (int i = 0; i < l->n; i++) total += (l->size[i] * esize + 63) & ~(size_t)63;
    return total;
}

static void ensure_acts(GPT *m, int B, int T) {
    size_t N = (size_t)B * T;
    int L = m->cfg.n_layer;
    int head_rows = head_rows_for(m, N, m->be->act_size);
    m->logits_n = 0; /* whatever the buffer held belongs to an older forward */
    m->scratch_layer = -1;
    if (N <= m->max_N && head_rows <= m->logits_cap && m->acts) {
        m->head_rows = head_rows;
        return;
    }
    if (N < m->max_N) N = m->max_N; /* regrown for a larger chunk only: keep the rows */
    if (m->acts) m->be->release(m->acts);
    if (m->acts32) m->be->release(m->acts32);
    free(m->layers);
    m->layers = xcalloc((size_t)L, sizeof(LayerActs));
    memset(&m->scratch, 0, sizeof m->scratch);
    int cap = N_LAYER_BUFS * (L + 1) + ACT_REST_X + ACT_REST_32;
    ActList x = act_list(cap), f32 = act_list(cap);
    act_layout(m, N, head_rows, &x, &f32);
    m->acts = carve(m->be, m->be->act_size, x.size, x.ptr, x.n);
    m->acts32 = carve(m->be, sizeof(float), f32.size, f32.ptr, f32.n);
    m->act_bytes = act_list_bytes(&x, m->be->act_size) + act_list_bytes(&f32, sizeof(float));
    act_list_free(&x);
    act_list_free(&f32);
    /* the buffers this mode recomputes: every block's pointer is the scratch's */
    LayerBuf b[N_LAYER_BUFS];
    layer_buffers(m, N, b);
    for (int l = 0; l < L; l++)
        for (int k = 0; k < N_LAYER_BUFS; k++)
            if (!b[k].kept) *layer_field(&m->layers[l], &b[k]) = *layer_field(&m->scratch, &b[k]);
    assert(m->targets > m->inputs); /* consecutive in acts32: one upload moves both */
    free(m->ids_host);
    m->ids_host = xcalloc((size_t)(m->targets - m->inputs) + N, sizeof(int));
    m->max_N = N;
    m->head_rows = m->logits_cap = head_rows;
}

size_t gpt_activation_bytes(const GPTConfig *cfg, int B, int T, int recompute, size_t act_size,
                            int chunk_rows) {
    if (gpt_config_check(cfg) != 0) return 0;
    if (recompute < 0 || recompute >= GPT_RECOMPUTE_COUNT) {
        err_set("recompute mode %d is not none, attention or block", recompute);
        return 0;
    }
    if (B < 1 || T < 1 || act_size < 1) {
        err_set("gpt_activation_bytes: B %d, T %d and act_size %zu must be >= 1", B, T, act_size);
        return 0;
    }
    if (T > gpt_context_len(cfg)) {
        err_set("gpt_activation_bytes: T %d exceeds the model's context of %d positions "
                "(n_positions, or a shorter sliding_window)", T, gpt_context_len(cfg));
        return 0;
    }
    GPT g = {0}; /* the shape alone: nothing is allocated but the pointer table */
    derive_shape(&g, cfg);
    g.recompute = recompute;
    g.chunk_set = chunk_rows > 0 ? chunk_rows : 0;
    g.layers = xcalloc((size_t)cfg->n_layer, sizeof(LayerActs));
    size_t N = (size_t)B * T;
    int cap = N_LAYER_BUFS * (cfg->n_layer + 1) + ACT_REST_X + ACT_REST_32;
    ActList x = act_list(cap), f32 = act_list(cap);
    act_layout(&g, N, head_rows_for(&g, N, act_size), &x, &f32);
    size_t bytes = act_list_bytes(&x, act_size) + act_list_bytes(&f32, sizeof(float));
    act_list_free(&x);
    act_list_free(&f32);
    free(g.layers);
    return bytes;
}

size_t gpt_activation_bytes_allocated(const GPT *m) { return m->acts ? m->act_bytes : 0; }

static const char *const RECOMPUTE_NAME[GPT_RECOMPUTE_COUNT] = {"none", "attention", "block"};

const char *gpt_recompute_name(int mode) {
    return mode >= 0 && mode < GPT_RECOMPUTE_COUNT ? RECOMPUTE_NAME[mode] : "?";
}

int gpt_recompute_from_name(const char *name) {
    for (int k = 0; k < GPT_RECOMPUTE_COUNT; k++)
        if (name && !strcmp(name, RECOMPUTE_NAME[k])) return k;
    return -1;
}

int gpt_recompute(const GPT *m) { return m->recompute; }

int gpt_set_recompute(GPT *m, int mode) {
    if (mode < 0 || mode >= GPT_RECOMPUTE_COUNT)
        return err_set("recompute mode %d is not none (0), attention (1) or block (2)", mode);
    if (mode == m->recompute) return 0;
    m->recompute = mode;
    /* laid out again at the next forward */
    if (m->acts) m->be->release(m->acts);
    if (m->acts32) m->be->release(m->acts32);
    m->acts = m->acts32 = NULL;
    m->max_N = 0;
    m->logits_cap = 0;
    m->logits_n = 0;
    m->act_bytes = 0;
    m->scratch_layer = -1;
    m->lora_max_N = 0; /* LoRA's buffers too (lora_rerun) */
    return 0;
}


/* Elements of one layer's key (or value) cache for B rows of kv_T positions. */
static size_t kv_layer_elems(const GPT *m, int B) {
    return (size_t)B * m->KVH * m->kv_T * m->HS; /* B * KVH * kv_T * HS */
}

/* The attention scale of block l: 1/sqrt(HS), or GPT-2's variants. */
static float attn_scale(const GPT *m, int l) {
    double s = m->cfg.attn_no_scale ? 1.0 : 1.0 / sqrt((double)m->HS);
    if (m->cfg.attn_scale_inv_layer) s /= (double)(l + 1);
    return (float)s;
}

/* The norm before a block's attention / MLP and the final one: LayerNorm
 * (GPT-2: weight and bias, mean and rstd kept) or RMSNorm (rstd kept). */
static void norm_forward(GPT *m, float *out, float *mean, float *rstd, const float *inp,
                         const float *w, const float *b, int N) {
    const GPTConfig *c = &m->cfg;
    if (m->llama)
        m->be->rmsnorm_forward(out, rstd, inp, w, N, c->n_embd, c->layer_norm_epsilon);
    else
        m->be->layernorm_forward(out, mean, rstd, inp, w, b, N, c->n_embd, c->layer_norm_epsilon);
}

static void norm_backward(GPT *m, float *dinp, float *dw, float *db, const float *dout,
                          const float *inp, const float *w, const float *mean, const float *rstd,
                          int N) {
    if (m->llama)
        m->be->rmsnorm_backward(dinp, dw, dout, inp, w, rstd, N, m->cfg.n_embd);
    else
        m->be->layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, N, m->cfg.n_embd);
}

/* How far block_forward goes: the whole block, or (recomputation in
 * backward) only as far as backward reads: the attention output (attention
 * mode) or the MLP's activation (block mode); the down-projection too where
 * LoRA adapts it, to rebuild its adapter's shared buffers (lora_rerun). The
 * out-projection's and the down-projection's outputs are never read by
 * backward. */
enum { UPTO_ATTY, UPTO_MLP_ACT, UPTO_DOWN, UPTO_ALL };

/* Block l over N = B*T rows from its input `residual` into m->layers[l].
 * pos < 0: training, attention over the rows themselves (keeping what
 * backward needs); pos >= 0: decoding (gpt_decode_slots), the N rows are new
 * tokens whose cache slots and positions are in m->dec_dev, and attention
 * runs over the key/value cache. `training`: LoRA dropout on. */
static void block_forward(GPT *m, int l, int B, int T, int pos, const float *residual,
                          int training, int upto) {
    params_need_block(m, l); /* ZeRO-3: block l's parameters into the window */
    const Backend *be = m->be;
    const GPTConfig *c = &m->cfg;
    int C = c->n_embd, N = B * T;
    LayerActs *a = &m->layers[l];
    norm_forward(m, a->ln1, a->ln1_mean, a->ln1_rstd, residual, layer_param(m, l, S_LN1_W),
                 layer_param(m, l, S_LN1_B), N);
    if (c->qk_norm) {
        linear_forward(m, l, MM_QKV, a->qkv_raw, a->ln1, N, training);
        be->qk_norm_forward(a->qkv, a->qkn_rstd, a->qkv_raw, layer_param(m, l, S_QNORM),
                            layer_param(m, l, S_KNORM), N, m->NH, m->KVH, m->HS,
                            c->layer_norm_epsilon);
    } else {
        linear_forward(m, l, MM_QKV, a->qkv, a->ln1, N, training);
    }
    const int *dec_slot = m->dec_dev, *dec_pos = m->dec_dev + m->dec_cap;
    if (m->llama)
        be->rope_forward(a->qkv, m->rope_cos, m->rope_sin, pos < 0 ? m->pk_pos : dec_pos,
                         pos < 0 ? B : 1, pos < 0 ? T : N, 0, m->NH, m->KVH, m->HS);
    if (pos < 0) {
        be->attention_forward(a->atty, a->att_lse, a->qkv, m->pk_doc, B, T, m->NH, m->KVH, m->HS,
                              attn_scale(m, l));
    } else {
        size_t kv_layer_bytes = kv_layer_elems(m, m->kv_B) * be->act_size;
        be->attention_decode(a->atty, (float *)((char *)m->kcache + l * kv_layer_bytes),
                             (float *)((char *)m->vcache + l * kv_layer_bytes), a->qkv, dec_slot,
                             dec_pos, N, m->NH, m->KVH, m->HS, m->kv_T, attn_scale(m, l));
    }
    if (upto == UPTO_ATTY) return;
    linear_forward(m, l, MM_O, a->attproj, a->atty, N, training);
    be->residual_forward(a->res2, residual, a->attproj, (size_t)N * C);
    norm_forward(m, a->ln2, a->ln2_mean, a->ln2_rstd, a->res2, layer_param(m, l, S_LN2_W),
                 layer_param(m, l, S_LN2_B), N);
    linear_forward(m, l, MM_FC, a->fch, a->ln2, N, training);
    if (m->llama)
        be->swiglu_forward(a->fch_gelu, a->fch, N, m->I);
    else
        be->gelu_forward(a->fch_gelu, a->fch, (size_t)N * m->I);
    if (upto == UPTO_MLP_ACT) return;
    linear_forward(m, l, MM_DOWN, a->fcproj, a->fch_gelu, N, training);
    if (upto == UPTO_DOWN) return;
    be->residual_forward(a->res3, a->res2, a->fcproj, (size_t)N * C);
}

/* The input of block l: the previous block's output, or the embeddings. */
static const float *block_input(const GPT *m, int l) {
    return l > 0 ? m->layers[l - 1].res3 : m->encoded;
}

/* Every transformer block and the final norm over the (B,T) rows in
 * m->encoded, into m->lnf (the head runs per chunk: head_logits); pos as
 * block_forward. With recomputation the scratch then holds the last block. */
static void blocks_forward(GPT *m, int B, int T, int pos) {
    int L = m->cfg.n_layer, N = B * T;
    int training = pos < 0 && m->fwd_dropout;
    for (int l = 0; l < L; l++)
        block_forward(m, l, B, T, pos, block_input(m, l), training, UPTO_ALL);
    m->scratch_layer = pos < 0 ? L - 1 : -1;
    norm_forward(m, m->lnf, m->lnf_mean, m->lnf_rstd, block_input(m, L), param_at(m, m->i_lnf_w),
                 m->i_lnf_b >= 0 ? param_at(m, m->i_lnf_b) : NULL, N);
}

/* Before block l's backward: its recomputed buffers, rebuilt from its kept
 * input by the same ops as forward (same inputs, same order, the same LoRA
 * dropout masks: they are a function of the forward count, unchanged since
 * the forward), unless the scratch holds them already. */
static void recompute_block(GPT *m, int l) {
    if (m->recompute == GPT_RECOMPUTE_NONE || m->scratch_layer == l) return;
    int upto = UPTO_ATTY;
    if (m->recompute == GPT_RECOMPUTE_BLOCK) {
        upto = UPTO_MLP_ACT;
        for (int k = 0; k < m->n_lin; k++)
            if (m->lin[k].mm == MM_DOWN && m->lora_index[l * N_LIN_MAX + k] >= 0)
                upto = UPTO_DOWN; /* its adapter's buffers are shared: rebuild them */
    }
    block_forward(m, l, m->B, m->T, -1, block_input(m, l), m->fwd_dropout, upto);
    m->scratch_layer = l;
}

void head_logits(GPT *m, int r0, int n) {
    assert(n >= 1 && n <= m->logits_cap);
    if (m->logits_n == n && m->logits_r0 == r0) return;
    const float *x = act_row(m, m->lnf, (size_t)r0, (size_t)m->cfg.n_embd);
    if (m->decoding) /* (V,C) is an nn.Linear weight: the row-invariant GEMM of decoding */
        m->be->matmul_rows_forward(m->logits, x, param_at(m, m->i_head), NULL, n, m->cfg.n_embd,
                                   m->Vp, 1);
    else
        m->be->lm_head_forward(m->logits, x, param_at(m, m->i_head), n, m->cfg.n_embd, m->Vp);
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

/* A sliding-window model (Mistral) is exact only while every query sees all
 * its keys: longer sequences would need the window's mask, which retort does
 * not implement, so they end the run with what to do. */
static void check_window(const GPT *m, int len) {
    int w = m->cfg.sliding_window;
    if (w > 0 && len > w) {
        fprintf(stderr, "retort: a sequence of %d tokens is longer than the model's "
                        "sliding_window of %d; retort computes full causal attention, which "
                        "equals the windowed model only up to the window: cut sequences to "
                        "%d tokens (data.seq_len, generation length)\n",
                len, w, w);
        exit(1);
    }
}

void gpt_forward(GPT *m, const int *inputs, const int *targets, int B, int T, float *logp_out) {
    const Backend *be = m->be;
    const GPTConfig *c = &m->cfg;
    int C = c->n_embd, V = c->vocab_size;
    int N = B * T;
    assert(T <= c->n_positions);
    check_window(m, T);
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
    packing_begin_forward(m, B, T);
    gpt_params_changed(m); /* ZeRO-3: gather every block afresh */

    be->encoder_forward(m->encoded, m->inputs, param_at(m, m->i_wte),
                        m->i_wpe >= 0 ? param_at(m, m->i_wpe) : NULL, m->pk_pos, B, T, C);
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
    params_need_block(m, l);
    const Backend *be = m->be;
    const GPTConfig *c = &m->cfg;
    int B = m->B, T = m->T, C = c->n_embd, N = B * T;
    size_t NC = (size_t)N * C, X = be->act_size;
    size_t NI = (size_t)N * m->I, NFC = m->llama ? 2 * NI : NI, NW = (size_t)N * m->W;
    size_t NQ = (size_t)N * m->NH * m->HS;
    LayerActs *a = &m->layers[l];
    const float *residual = block_input(m, l);
    unsigned groups = m->layer_groups[l];
#define BEYOND(g) (need_input || (groups >> ((g) + 1)) != 0)
    /* res3 = res2 + fcproj: dres is the gradient of both summands */
    if (BEYOND(GRP_FCPROJ)) be->zero(m->dfch_gelu, NI * X);
    linear_backward(m, l, MM_DOWN, BEYOND(GRP_FCPROJ) ? m->dfch_gelu : NULL, m->dres,
                    a->fch_gelu, N);
    if (!BEYOND(GRP_FCPROJ)) return;
    be->zero(m->dfch, NFC * X);
    if (m->llama)
        be->swiglu_backward(m->dfch, m->dfch_gelu, a->fch, N, m->I);
    else
        be->gelu_backward(m->dfch, a->fch, m->dfch_gelu, NI);
    if (BEYOND(GRP_FC)) be->zero(m->dC, NC * X);
    linear_backward(m, l, MM_FC, BEYOND(GRP_FC) ? m->dC : NULL, m->dfch, a->ln2, N);
    if (!BEYOND(GRP_FC)) return;
    norm_backward(m, m->dres, layer_grad(m, l, S_LN2_W), layer_grad(m, l, S_LN2_B), m->dC,
                  a->res2, layer_param(m, l, S_LN2_W), a->ln2_mean, a->ln2_rstd, N);
    if (!BEYOND(GRP_LN2)) return;
    /* res2 = residual + attproj; dC holds the attention output's gradient */
    if (BEYOND(GRP_ATTPROJ)) be->zero(m->dC, NQ * X);
    linear_backward(m, l, MM_O, BEYOND(GRP_ATTPROJ) ? m->dC : NULL, m->dres, a->atty, N);
    if (!BEYOND(GRP_ATTPROJ)) return;
    be->zero(m->dqkv, NW * X);
    be->attention_backward(m->dqkv, m->dC, a->qkv, a->atty, a->att_lse, m->pk_doc, B, T, m->NH,
                           m->KVH, m->HS, attn_scale(m, l));
    float *dmm = m->dqkv; /* the gradient of the qkv GEMM's output */
    if (m->llama)
        be->rope_backward(m->dqkv, m->rope_cos, m->rope_sin, m->pk_pos, B, T, 0, m->NH, m->KVH,
                          m->HS);
    if (c->qk_norm) {
        be->zero(m->dqkv_raw, NW * X);
        be->qk_norm_backward(m->dqkv_raw, layer_grad(m, l, S_QNORM), layer_grad(m, l, S_KNORM),
                             m->dqkv, a->qkv_raw, layer_param(m, l, S_QNORM),
                             layer_param(m, l, S_KNORM), a->qkn_rstd, N, m->NH, m->KVH, m->HS);
        dmm = m->dqkv_raw;
    }
    if (BEYOND(GRP_QKV)) be->zero(m->dC, NC * X);
    linear_backward(m, l, MM_QKV, BEYOND(GRP_QKV) ? m->dC : NULL, dmm, a->ln1, N);
    if (!BEYOND(GRP_QKV)) return;
    norm_backward(m, m->dres, layer_grad(m, l, S_LN1_W), layer_grad(m, l, S_LN1_B), m->dC,
                  residual, layer_param(m, l, S_LN1_W), a->ln1_mean, a->ln1_rstd, N);
#undef BEYOND
}


/* Whether backward has anything to do: some tensor trains. */
/* Whether backward must go below the head: a block, the embeddings or the
 * final norm trains. */
static int lnf_needed(const GPT *m) {
    int stop = m->embed_trainable ? 0 : m->lowest_trainable;
    return stop < m->cfg.n_layer || m->tensors[m->i_lnf_w].trainable ||
           (m->i_lnf_b >= 0 && m->tensors[m->i_lnf_b].trainable);
}

int backward_needed(const GPT *m) {
    /* lowest block backward must reach; L: none, the blocks are all frozen */
    return lnf_needed(m) || m->tensors[m->i_head].trainable;
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
    int lnf_w = m->i_lnf_w, lnf_b = m->i_lnf_b;
    int stop = m->embed_trainable ? 0 : m->lowest_trainable;
    int need_lnf = lnf_needed(m);
    if (!need_lnf && !m->tensors[m->i_head].trainable) return;
    ensure_grads(m); /* grad_at() reads m->grads */
    size_t X = be->act_size; /* bytes per compute-type element */
    /* gradient units: each backward's gradients go to the hook, so it starts
     * from zero (the global unit's storage; the window before each block) */
    if (m->grads_ready) be->zero(m->grads, m->n_global * sizeof(float));
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
                             grad_at(m, m->i_head), m->logits,
                             act_row(m, m->lnf, (size_t)r0, (size_t)C), param_at(m, m->i_head),
                             n, C, m->Vp); /* dC = dlnf */
    }
    if (need_lnf) {
        be->zero(m->dres, NC * X);
        norm_backward(m, m->dres, grad_at(m, lnf_w), lnf_b >= 0 ? grad_at(m, lnf_b) : NULL,
                      m->dC, block_input(m, L), param_at(m, lnf_w), m->lnf_mean, m->lnf_rstd, N);
        for (int l = L - 1; l >= stop; l--) {
            recompute_block(m, l);
            if (m->grads_ready) be->zero(m->grad_window, m->n_window * sizeof(float));
            block_backward(m, l, l > stop || m->embed_trainable);
            if (m->grads_ready) m->grads_ready(m->grads_ctx, m, l);
            if (m->grads_done) m->grads_done(m->grads_done_ctx, m, l);
        }
        if (m->embed_trainable)
            be->encoder_backward(grad_at(m, m->i_wte),
                                 m->i_wpe >= 0 ? grad_at(m, m->i_wpe) : NULL, m->dres, m->inputs,
                                 m->ids_host, m->pk_pos, m->pk_pos_host, B, T, C);
    }
    if (m->grads_ready) m->grads_ready(m->grads_ctx, m, L);
    if (m->grads_done) m->grads_done(m->grads_done_ctx, m, L);
}

/* the whole buffer, padding included (relayout_grads' invariant) */
void gpt_zero_grad(GPT *m) {
    if (m->grads_ready) {
        m->be->zero(ensure_grads(m), m->n_global * sizeof(float));
        m->be->zero(m->grad_window, m->n_window * sizeof(float));
        return;
    }
    m->be->zero(ensure_grads(m), m->n_grad * sizeof(float));
}

size_t gpt_flat_size(const GPT *m) { return m->n_alloc; }

void gpt_copy_params_to_host(GPT *m, float *host, size_t n) {
    assert(n <= m->n_alloc);
    m->be->download_f32(host, gpt_params(m), n);
}

void gpt_copy_params_to_device(GPT *m, const float *host, size_t n) {
    assert(n <= m->n_alloc);
    m->be->upload_f32(gpt_params(m), host, n);
}

void gpt_copy_grads_to_host(GPT *m, float *host, size_t n) {
    assert(n <= m->n_alloc);
    assert(!m->grads_ready); /* by unit, the whole layout never exists */
    float *packed = xmalloc((m->n_grad > 0 ? m->n_grad : 1) * sizeof(float));
    if (m->n_grad > 0) m->be->to_host(packed, ensure_grads(m), m->n_grad * sizeof(float));
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

/* Makes the key/value cache hold B rows of at least `need` positions: the
 * first call allocates it, a longer generation grows it (doubling, up to
 * n_positions) keeping what the rows hold. Sized by the KV heads. */
static void ensure_kv(GPT *m, int B, int need) {
    const Backend *be = m->be;
    const GPTConfig *c = &m->cfg;
    int L = c->n_layer;
    if (m->kcache && m->kv_B >= B && m->kv_T >= need) return;
    int newB = m->kcache && m->kv_B > B ? m->kv_B : B;
    int newT = m->kv_T > 0 ? m->kv_T : 256;
    while (newT < need) newT *= 2;
    if (newT > c->n_positions) newT = c->n_positions;
    size_t esz = be->act_size, HS = (size_t)m->HS;
    size_t new_layer = (size_t)newB * m->KVH * newT * HS * esz;
    float *kc = be->alloc((size_t)L * new_layer), *vc = be->alloc((size_t)L * new_layer);
    if (!kc || !vc) {
        fprintf(stderr, "retort: %s\n", err_msg());
        exit(1);
    }
    if (m->kcache) { /* carry the old rows over, (row, head) by (row, head), via the host */
        size_t old_layer = kv_layer_elems(m, m->kv_B) * esz;
        size_t old_seg = (size_t)m->kv_T * HS * esz, new_seg = (size_t)newT * HS * esz;
        char *oh = xmalloc(old_layer), *nh = xcalloc(1, new_layer);
        for (int l = 0; l < L; l++)
            for (int kv = 0; kv < 2; kv++) {
                char *src = (char *)(kv ? m->vcache : m->kcache) + l * old_layer;
                char *dst = (char *)(kv ? vc : kc) + l * new_layer;
                be->to_host(oh, src, old_layer);
                for (size_t s = 0; s < (size_t)m->kv_B * m->KVH; s++)
                    memcpy(nh + s * new_seg, oh + s * old_seg, old_seg);
                be->to_device(dst, nh, new_layer);
            }
        free(oh);
        free(nh);
        be->release(m->kcache);
        be->release(m->vcache);
    }
    m->kcache = kc;
    m->vcache = vc;
    m->kv_B = newB;
    m->kv_T = newT;
}

void gpt_kv_reserve(GPT *m, int slots, int len) {
    assert(slots >= 1 && len >= 1 && len <= m->cfg.n_positions);
    ensure_kv(m, slots, len);
}

void gpt_decode_slots(GPT *m, const int *tokens, const int *slot, const int *pos, int N,
                      const int *out_rows, int n_out, float *logits_out) {
    const Backend *be = m->be;
    const GPTConfig *c = &m->cfg;
    int C = c->n_embd, V = c->vocab_size;
    assert(N >= 1 && n_out >= 0 && n_out <= N);
    int slots = 0, len = 0;
    for (int i = 0; i < N; i++) {
        assert(slot[i] >= 0 && pos[i] >= 0 && pos[i] < c->n_positions);
        if (slot[i] + 1 > slots) slots = slot[i] + 1;
        if (pos[i] + 1 > len) len = pos[i] + 1;
    }
    check_window(m, len);
    ensure_acts(m, 1, N);
    ensure_lora_acts(m, (size_t)N);
    ensure_kv(m, slots, len);
    if ((size_t)N > m->dec_cap) { /* slots then positions */
        if (m->dec_dev) be->release(m->dec_dev);
        m->dec_cap = (size_t)N;
        m->dec_dev = be->alloc(2 * m->dec_cap * sizeof(int));
        if (!m->dec_dev) {
            fprintf(stderr, "retort: %s\n", err_msg());
            exit(1);
        }
        m->dec_host = xrealloc(m->dec_host, 2 * m->dec_cap * sizeof(int));
    }
    memcpy(m->dec_host, slot, (size_t)N * sizeof(int));
    memcpy(m->dec_host + m->dec_cap, pos, (size_t)N * sizeof(int));
    be->to_device(m->dec_dev, m->dec_host, 2 * m->dec_cap * sizeof(int));
    m->B = 1;
    m->T = N;
    m->fwd_dropout = 0;
    m->decoding = 1;
    stage_ids(m, m->ids_host, tokens, N, 0);
    be->to_device(m->inputs, m->ids_host, (size_t)N * sizeof(int));
    /* each token's own position: the encoder adds its wpe row (GPT-2); the
     * Llama families rotate q and k by it instead */
    const float *wte = param_at(m, m->i_wte);
    const float *wpe = m->i_wpe < 0 ? NULL : param_at(m, m->i_wpe);
    be->encoder_forward(m->encoded, m->inputs, wte, wpe, m->dec_dev + m->dec_cap, 1, N, C);
    blocks_forward(m, 1, N, 0);
    /* the head only for the rows asked for: moved to the front of lnf (each
     * row is at or after its place, so in order nothing is overwritten
     * before it is read), then in chunks */
    for (int j = 0; j < n_out; j++) {
        assert(out_rows[j] >= j && (j == 0 || out_rows[j] > out_rows[j - 1]));
        if (out_rows[j] != j)
            be->cols_copy(act_row(m, m->lnf, (size_t)j, (size_t)C),
                          act_row(m, m->lnf, (size_t)out_rows[j], (size_t)C), C, 1, C);
    }
    m->logits_n = 0; /* lnf changed under the buffer */
    for (int r0 = 0; r0 < n_out; r0 += m->head_rows) {
        int rows = n_out - r0 < m->head_rows ? n_out - r0 : m->head_rows;
        head_logits(m, r0, rows);
        download_logit_rows(m, logits_out + (size_t)r0 * V, rows);
    }
    m->logits_n = 0; /* logits of decoding: not a training forward's */
    m->decoding = 0;
}

void gpt_decode(GPT *m, const int *tokens, int B, int n, int pos, float *logits_out) {
    assert(B >= 1 && n >= 1 && pos >= 0 && pos + n <= m->cfg.n_positions);
    int N = B * n;
    int *slot = xmalloc((size_t)N * sizeof(int)), *at = xmalloc((size_t)N * sizeof(int));
    int *last = xmalloc((size_t)B * sizeof(int));
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < n; t++) {
            slot[b * n + t] = b;
            at[b * n + t] = pos + t;
        }
        last[b] = b * n + n - 1;
    }
    gpt_decode_slots(m, tokens, slot, at, N, last, B, logits_out);
    free(slot);
    free(at);
    free(last);
}

void gpt_kv_reorder(GPT *m, const int *src, int B, int len) {
    const Backend *be = m->be;
    assert(m->kcache && B <= m->kv_B && len <= m->kv_T);
    /* one layer at a time through the host: (B, KVH, kv_T, HS), copying only
     * the first len positions of each (row, head) */
    size_t esz = be->act_size, HS = (size_t)m->HS, maxT = (size_t)m->kv_T;
    size_t layer_bytes = kv_layer_elems(m, m->kv_B) * esz, row_bytes = layer_bytes / m->kv_B;
    char *old = xmalloc(layer_bytes), *new = xmalloc(layer_bytes);
    for (int l = 0; l < m->cfg.n_layer; l++)
        for (int kv = 0; kv < 2; kv++) {
            char *dev = (char *)(kv ? m->vcache : m->kcache) + l * layer_bytes;
            be->to_host(old, dev, layer_bytes);
            memcpy(new, old, layer_bytes);
            for (int b = 0; b < B; b++)
                for (int h = 0; h < m->KVH; h++) {
                    size_t off = (size_t)h * maxT * HS * esz;
                    memcpy(new + b * row_bytes + off, old + src[b] * row_bytes + off,
                           len * HS * esz);
                }
            be->to_device(dev, new, layer_bytes);
        }
    free(old);
    free(new);
}

void gpt_kv_copy_slots(GPT *m, const int *dst, const int *src, int n, int len) {
    const Backend *be = m->be;
    assert(m->kcache && len >= 0 && len <= m->kv_T);
    if (len == 0) return;
    /* each (slot, head) holds its positions contiguously: one copy of len*HS
     * values per (layer, cache, pair, head), on the device */
    size_t layer = kv_layer_elems(m, m->kv_B), seg = (size_t)m->kv_T * m->HS;
    int count = len * m->HS;
    for (int l = 0; l < m->cfg.n_layer; l++)
        for (int kv = 0; kv < 2; kv++) {
            char *cache = (char *)(kv ? m->vcache : m->kcache) + l * layer * be->act_size;
            for (int i = 0; i < n; i++) {
                assert(dst[i] >= 0 && dst[i] < m->kv_B && src[i] >= 0 && src[i] < m->kv_B);
                for (int h = 0; h < m->KVH; h++) {
                    size_t d = ((size_t)dst[i] * m->KVH + h) * seg, s = ((size_t)src[i] * m->KVH + h) * seg;
                    be->cols_copy((float *)(cache + d * be->act_size),
                                  (const float *)(cache + s * be->act_size), count, 1, count);
                }
            }
        }
}
