/* model/model_impl.h — the inside of the GPT model, shared by the files that
 * implement it: model.c (table, forward, backward, decoding), model_lora.c
 * (LoRA adapters) and model_kd.c (word-level distillation through the fused
 * classifier). Not part of the public interface (model/model.h). */
#ifndef RETORT_MODEL_IMPL_H
#define RETORT_MODEL_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "model/backend.h"
#include "model/model.h"
#include "util/util.h"

/* Per-layer parameter slots. A model holds the slots its family uses
 * (GPT2 or a Llama-style family); m->slot maps (layer, slot) to the table
 * index, -1 where the family has no such tensor.
 *   GPT-2: LN1 W/B, QKV W/B (c_attn, Conv1D (C,3C)), O W/B (attn.c_proj), LN2 W/B,
 *          FC W/B (c_fc), DOWN W/B (mlp.c_proj).
 *   Llama: LN1_W (input_layernorm), QKV_W/K_W/V_W (q/k/v_proj, nn.Linear (out,in),
 *          CONTIGUOUS so one GEMM computes the fused qkv), QKV_B/K_B/V_B (contiguous,
 *          attn_bias), QNORM/KNORM (qk_norm), O_W/O_B (o_proj), LN2_W
 *          (post_attention_layernorm), FC_W/UP_W (gate/up_proj, contiguous: one GEMM
 *          gives [gate | up]), FC_B/UP_B, DOWN_W/DOWN_B (down_proj). */
enum {
    S_LN1_W, S_LN1_B, S_QKV_W, S_K_W, S_V_W, S_QKV_B, S_K_B, S_V_B, S_QNORM, S_KNORM,
    S_O_W, S_O_B, S_LN2_W, S_LN2_B, S_FC_W, S_UP_W, S_FC_B, S_UP_B, S_DOWN_W, S_DOWN_B,
    S_COUNT
};

/* The four GEMMs of a block (each possibly fused over several HF modules). */
enum { MM_QKV, MM_O, MM_FC, MM_DOWN, N_MM };

/* Groups of a block's tensors in BACKWARD order, as bits of a mask. */
enum { GRP_FCPROJ, GRP_FC, GRP_LN2, GRP_ATTPROJ, GRP_QKV, GRP_LN1 };
static const int SLOT_GROUP[S_COUNT] = {
    GRP_LN1,     GRP_LN1,     GRP_QKV, GRP_QKV, GRP_QKV, GRP_QKV,    GRP_QKV,
    GRP_QKV,     GRP_QKV,     GRP_QKV, GRP_ATTPROJ, GRP_ATTPROJ, GRP_LN2, GRP_LN2,
    GRP_FC,      GRP_FC,      GRP_FC,  GRP_FC,  GRP_FCPROJ, GRP_FCPROJ};
static const int MM_GROUP[N_MM] = {GRP_QKV, GRP_ATTPROJ, GRP_FC, GRP_FCPROJ};

/* The Hugging Face linear modules of a block, which LoRA can adapt: GPT-2's
 * four Conv1D layers, or the seven nn.Linear projections of a Llama-style
 * block. Each is a column range [col0, col0 + out) of one GEMM's output. */
#define N_LIN_MAX 7
typedef struct {
    const char *name;   /* module name inside the block: "attn.c_attn", "self_attn.q_proj" */
    int mm;             /* MM_* */
    int col0, out, in;  /* its output columns in the GEMM's output, its input width */
    int wslot;          /* S_* of its own weight tensor */
} LinInfo;

typedef struct {
    float *ln1, *ln1_mean, *ln1_rstd;   /* (N,C) (N) (N); mean NULL for RMSNorm */
    float *qkv;                         /* (N,W): q, k (after RoPE) and v, W = (NH+2KVH)*HS */
    float *qkv_raw, *qkn_rstd;          /* qk_norm only: the GEMM output (N,W), (N,NH+KVH) */
    float *atty, *att_lse;              /* (N,NH*HS) (B,NH,T) */
    float *attproj;                     /* (N,C) */
    float *res2;                        /* (N,C) residual after attention */
    float *ln2, *ln2_mean, *ln2_rstd;   /* (N,C) (N) (N) */
    float *fch, *fch_gelu;              /* GPT-2 (N,I) before / after GELU; Llama (N,2I)
                                           [gate | up] and (N,I) SwiGLU output */
    float *fcproj;                      /* (N,C) */
    float *res3;                        /* (N,C) residual after the MLP */
} LayerActs;

struct GPT {
    GPTConfig cfg;
    const Backend *be;
    int n_tensors;
    ParamInfo *tensors;
    int n_base;           /* tensors of the model proper; adapters follow */
    /* the family's shape, derived once from cfg */
    int llama;            /* a Llama-style family (RMSNorm, RoPE, SwiGLU, GQA) */
    int NH, KVH, HS, I;   /* heads, kv heads, head size, MLP width */
    int W;                /* fused qkv width (NH + 2 KVH) HS */
    int *slot;            /* (L, S_COUNT) table index, -1: none */
    int *t_layer, *t_group; /* (n_base) block and GRP_* of each base tensor, -1: global */
    int i_wte, i_wpe, i_lnf_w, i_lnf_b, i_head; /* global tensors; -1: none (i_head:
                                                   the untied lm_head, else wte) */
    int n_lin;
    LinInfo lin[N_LIN_MAX];
    float *rope_cos, *rope_sin; /* (n_positions, HS/2) fp32 on the backend; Llama only */
    size_t n_params;      /* real parameters */
    size_t n_alloc;       /* floats in the flat parameter buffer (tensors 16-float aligned) */
    size_t base_alloc;    /* n_alloc of the base tensors */
    float *params, *grads; /* compute type; fp32 (every backend) */
    size_t n_grad;        /* floats in the gradient layout (trainable tensors) */
    int grad_version;
    /* gradient units (gpt_set_grads_ready, model_grad_units.c): when on, m->grads
     * holds only the global tensors' gradients (n_global floats) and grad_window
     * one block's at a time (n_window floats, the largest block's) */
    GptGradsReady grads_ready;
    void *grads_ctx;
    float *grad_window;
    size_t n_global, n_window;
    int *grad_unit;           /* (n_tensors) block of a trainable tensor, L: global */
    size_t *grad_local;       /* (n_tensors) its offset in its unit's storage */
    GptGradRun *grad_runs;    /* every unit's runs, unit by unit */
    int *unit_first;          /* (L + 2) unit u's runs are [unit_first[u], unit_first[u+1]) */
    /* parameter units (gpt_set_params_gather, model_grad_units.c): when on and
     * not in whole mode, m->params holds the resident tensors (global and
     * frozen ones, n_resident elements, tensor i at param_local[i]) and
     * param_window one block's trainable tensors at grad_local[i] */
    GptParamsGather params_gather;
    void *params_ctx;
    float *param_window;
    size_t n_resident;
    size_t *param_local;      /* (n_tensors) offset of a resident tensor in m->params */
    int window_unit;          /* the block the window holds, -1 none */
    int params_whole;         /* whole mode: m->params is the whole buffer for now */
    float *params_resident;   /* the resident storage, set aside in whole mode */
    /* gpt_set_grads_done (overlapped reduction): the same moments as grads_ready,
     * but the gradients stay in the whole buffer; the units' runs are built */
    GptGradsReady grads_done;
    void *grads_done_ctx;
    /* what backward must visit, from the trainable flags */
    unsigned *layer_groups;   /* (L) bits GRP_* holding a trainable tensor */
    int lowest_trainable;     /* lowest block with a trainable tensor, L if none */
    int embed_trainable;      /* wte or wpe trainable */
    int train_mode;

    /* LoRA */
    int has_lora;
    LoraConfig lora;
    float lora_scale;
    int *lora_index;          /* (L, N_LIN_MAX) table index of lora_A (lora_B follows), -1 none */
    uint64_t dropout_count;   /* training forwards so far: the dropout mask's step */
    int fwd_dropout;          /* the last forward applied dropout */
    void *lora_acts;
    size_t lora_max_N;
    float **lora_h;           /* (L, N_LIN_MAX) s * dropout(x) A^T, (N,r) */
    float **lora_xd;          /* (L, N_LIN_MAX) dropout(x), (N,in); NULL without dropout */
    float *lora_v, *lora_dh, *lora_dx; /* scratch (N,wide) (N,r) (N,wide), wide = lin_max_dim */
    float *lora_dy;           /* scratch (N,wide): a sliced module's output gradient */
    float *lora_host;         /* host scratch (N,wide) for the dropout mask */

    /* activations, for up to max_N = B*T rows */
    size_t max_N;
    void *acts, *acts32;                /* compute-type and fp32 activations */
    size_t act_bytes;                   /* bytes of the two (gpt_activation_bytes) */
    float *encoded;                     /* (N,C) */
    LayerActs *layers;                  /* (L); with recomputation the buffers a mode does
                                           not keep point into `scratch` */
    int recompute;                      /* GPT_RECOMPUTE_* (model.h) */
    LayerActs scratch;                  /* one layer's recomputed buffers (recompute only) */
    int scratch_layer;                  /* the block whose forward the scratch holds, -1 none */
    float *lnf, *lnf_mean, *lnf_rstd;   /* (N,C) (N) (N) */
    float *logits;                      /* (head_rows,Vp): one chunk's logits, or dlogits */
    float *logp, *lse, *g;              /* (N) each */
    int *inputs, *targets;              /* (N) each */
    /* host staging of the ids, laid out as m->inputs .. m->targets on the
     * device (inputs at 0, targets at m->targets - m->inputs), so one upload
     * moves both; inputs [0, N) stay as the last forward's ids for
     * encoder_backward's host copy */
    int *ids_host;
    /* backward scratch */
    float *dres, *dC, *dqkv, *dfch, *dfch_gelu; /* (N,C) (N,max(C,NH*HS)) (N,W) (N,I|2I) (N,I) */
    float *dqkv_raw;                    /* (N,W) qk_norm only */
    int B, T;                           /* of the last forward */
    /* the head over chunks of rows (gpt_set_logits_chunk) */
    int Vp;                             /* padded vocabulary: the logits row stride */
    int chunk_set;                      /* rows asked for, 0 = automatic */
    int head_rows;                      /* rows per chunk for the last forward */
    int logits_cap;                     /* rows the logits buffer holds */
    int logits_r0, logits_n;            /* rows whose logits the buffer holds; n 0 = none */
    /* key/value cache for generation: (L, B, KVH, kv_T, HS) each, compute type;
     * kv_T positions, grown on demand up to n_positions */
    float *kcache, *vcache;
    int kv_B, kv_T;
    /* decoding (gpt_decode_slots): each new token's cache slot and position,
     * (2, dec_cap) ints on the device and the host; `decoding` while a
     * decoding forward runs (its GEMMs are the row-invariant ones) */
    int *dec_dev, *dec_host;
    size_t dec_cap;
    int decoding;
    /* word-level KD side buffers (fp32, device): kd, agree, w (N) each, then
     * teacher top-K log-probs (N,K) and ids (N,K) */
    float *kd_buf;
    size_t kd_cap;                      /* floats */
    /* packed rows (model/packing.c, gpt_set_packing): positions then example
     * starts, (B,T) each, staged on the host and uploaded by the next forward */
    int *pack_host, *pack_dev;          /* (2, pack_cap) ints each */
    size_t pack_cap;
    int pack_B, pack_T, pack_pending;   /* the shape set; a forward is owed them */
    /* what the last training forward ran with and its backward uses: device
     * (B,T) positions and example starts, host positions; NULL: unpacked */
    const int *pk_pos, *pk_doc, *pk_pos_host;
};

/* model/packing.c: at the start of gpt_forward, makes a pending
 * gpt_set_packing the forward's packing (uploaded) or clears it */
void packing_begin_forward(GPT *m, int B, int T);
void packing_free(GPT *m);

/* model_grad_units.c: the units of the current gradient layout (after
 * relayout_grads), and their storage released */
void grad_units_build(GPT *m);
void grad_units_free(GPT *m);
/* Block l's parameters in the window before its forward or backward (a no-op
 * unless the parameters are sharded: gpt_set_params_gather). */
void params_need_block(GPT *m, int l);


/* Parameter tensor i of the flat parameter buffer, in bytes of the backend's
 * compute type. */
static inline float *param_at(const GPT *m, int i) {
    size_t X = m->be->act_size;
    if (m->params_gather && !m->params_whole) { /* sharded: resident, or in the window */
        if (m->tensors[i].trainable && m->grad_unit[i] < m->cfg.n_layer)
            return (float *)((char *)m->param_window + m->grad_local[i] * X);
        return (float *)((char *)m->params + m->param_local[i] * X);
    }
    return (float *)((char *)m->params + m->tensors[i].offset * X);
}

/* Gradient of tensor i, or NULL when it is frozen (the ops then skip it).
 * Gradients are fp32 on every backend (model/backend.h). */
static inline float *grad_at(const GPT *m, int i) {
    const ParamInfo *p = &m->tensors[i];
    if (!p->trainable) return NULL;
    if (m->grads_ready) /* gradient units: the global tensors' storage or the block window */
        return (m->grad_unit[i] == m->cfg.n_layer ? m->grads : m->grad_window) + m->grad_local[i];
    return m->grads + p->grad_offset;
}

/* Parameter / gradient of slot S_* of block `layer`; NULL where the family
 * has no such tensor (a missing bias) or it is frozen (gradient). */
static inline float *layer_param(GPT *m, int layer, int slot) {
    int i = m->slot[layer * S_COUNT + slot];
    return i < 0 ? NULL : param_at(m, i);
}
static inline float *layer_grad(GPT *m, int layer, int slot) {
    int i = m->slot[layer * S_COUNT + slot];
    return i < 0 ? NULL : grad_at(m, i);
}

/* Row r of a (rows, width) buffer of the compute type. */
static inline float *act_row(const GPT *m, const float *base, size_t r, size_t width) {
    return (float *)((const char *)base + r * width * m->be->act_size);
}

/* How backward reaches the logits: the plain classifier, or the KD term too
 * (device pointers; offline teacher (N,K) arrays, or an online teacher whose
 * last forward ran on the same rows). */
typedef struct {
    GPT *teacher;
    const int *topk_ids;
    const float *topk_logp;
    const float *w;           /* (N) KD weight per row */
    int K;
    float temperature, beta;
} HeadKd;

/* model.c */
void add_tensor(GPT *m, int *i, size_t *off, const char *name, int rows, int cols);
/* Logits of rows r0 .. r0+n-1 (n <= m->logits_cap) into m->logits, unless the
 * buffer holds them already. */
void head_logits(GPT *m, int r0, int n);
/* Rows per chunk when the model and, for online KD, its teacher share chunks. */
int head_chunk_with(const GPT *m, const GPT *teacher);
/* The classifier backward (kd NULL) or the KD backward, chunk by chunk, each
 * chunk's dlogits consumed at once by the head backward; then every layer
 * below. m->g holds dLoss/dlogp on the device. */
void backward_through_head(GPT *m, const HeadKd *kd);
int relayout_grads(GPT *m);
void *carve(const Backend *be, size_t esize, const size_t *sizes, float ***out, int count);
int backward_needed(const GPT *m);

/* model_lora.c */
void lora_init_host(const ParamInfo *p, float *w, Rng *r);
void ensure_lora_acts(GPT *m, size_t N);
/* Whether recomputation reruns GEMM mm (MM_*) of every block under the
 * model's recompute mode, so its adapters' buffers are shared by the blocks. */
int lora_rerun(const GPT *m, int mm);
/* GEMM mm (MM_*) of block l: out = inp W + b, or inp W^T + b for the nn.Linear
 * layout of Llama families, plus the LoRA path of each adapted module in it. */
void linear_forward(GPT *m, int l, int mm, float *out, const float *inp, int N, int training);
void linear_backward(GPT *m, int l, int mm, float *dinp, const float *dout, const float *inp,
                     int N);
/* (in, out) of GEMM mm; its weight and bias slots */
void mm_dims(const GPT *m, int mm, int *in, int *out);
int mm_wslot(int mm);
int mm_bslot(int mm);
/* The widest activation any module reads or writes (LoRA scratch). */
int lin_max_dim(const GPT *m);

#endif
