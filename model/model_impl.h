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

/* Per-layer parameter slots, in the order of the HF state dict. */
enum {
    P_LN1_W, P_LN1_B, P_QKV_W, P_QKV_B, P_ATTPROJ_W, P_ATTPROJ_B,
    P_LN2_W, P_LN2_B, P_FC_W, P_FC_B, P_FCPROJ_W, P_FCPROJ_B, P_PER_LAYER
};

/* The four Conv1D linear layers of a block, which LoRA can adapt. */
enum { LIN_QKV, LIN_ATTPROJ, LIN_FC, LIN_FCPROJ, N_LIN };
static const char *const LIN_NAME[N_LIN] = {"attn.c_attn", "attn.c_proj", "mlp.c_fc",
                                            "mlp.c_proj"};
static const int LIN_SLOT[N_LIN] = {P_QKV_W, P_ATTPROJ_W, P_FC_W, P_FCPROJ_W};

/* Groups of a block's tensors in BACKWARD order, as bits of a mask. */
enum { GRP_FCPROJ, GRP_FC, GRP_LN2, GRP_ATTPROJ, GRP_QKV, GRP_LN1 };
static const int SLOT_GROUP[P_PER_LAYER] = {GRP_LN1,     GRP_LN1,     GRP_QKV, GRP_QKV,
                                            GRP_ATTPROJ, GRP_ATTPROJ, GRP_LN2, GRP_LN2,
                                            GRP_FC,      GRP_FC,      GRP_FCPROJ, GRP_FCPROJ};
static const int LIN_GROUP[N_LIN] = {GRP_QKV, GRP_ATTPROJ, GRP_FC, GRP_FCPROJ};

typedef struct {
    float *ln1, *ln1_mean, *ln1_rstd;   /* (N,C) (N) (N) */
    float *qkv;                         /* (N,3C) */
    float *atty, *att_lse;              /* (N,C) (B,NH,T) */
    float *attproj;                     /* (N,C) */
    float *res2;                        /* (N,C) residual after attention */
    float *ln2, *ln2_mean, *ln2_rstd;   /* (N,C) (N) (N) */
    float *fch, *fch_gelu;              /* (N,4C) (N,4C) */
    float *fcproj;                      /* (N,C) */
    float *res3;                        /* (N,C) residual after the MLP */
} LayerActs;

struct GPT {
    GPTConfig cfg;
    const Backend *be;
    int n_tensors;
    ParamInfo *tensors;
    int n_base;           /* tensors of the GPT-2 model proper; adapters follow */
    size_t n_params;      /* real parameters */
    size_t n_alloc;       /* floats in the flat parameter buffer (tensors 16-float aligned) */
    size_t base_alloc;    /* n_alloc of the base tensors */
    float *params, *grads; /* compute type; fp32 (every backend) */
    size_t n_grad;        /* floats in the gradient layout (trainable tensors) */
    int grad_version;
    /* what backward must visit, from the trainable flags */
    unsigned *layer_groups;   /* (L) bits GRP_* holding a trainable tensor */
    int lowest_trainable;     /* lowest block with a trainable tensor, L if none */
    int embed_trainable;      /* wte or wpe trainable */
    int train_mode;

    /* LoRA */
    int has_lora;
    LoraConfig lora;
    float lora_scale;
    int *lora_index;          /* (L, N_LIN) table index of lora_A (lora_B follows), -1 none */
    uint64_t dropout_count;   /* training forwards so far: the dropout mask's step */
    int fwd_dropout;          /* the last forward applied dropout */
    void *lora_acts;
    size_t lora_max_N;
    float **lora_h;           /* (L, N_LIN) s * dropout(x) A^T, (N,r) */
    float **lora_xd;          /* (L, N_LIN) dropout(x), (N,in); NULL without dropout */
    float *lora_v, *lora_dh, *lora_dx; /* scratch (N,4C) (N,r) (N,4C) */
    float *lora_host;         /* host scratch (N,4C) for the dropout mask */

    /* activations, for up to max_N = B*T rows */
    size_t max_N;
    void *acts, *acts32;                /* compute-type and fp32 activations */
    float *encoded;                     /* (N,C) */
    LayerActs *layers;                  /* (L) */
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
    float *dres, *dC, *dqkv, *dfch, *dfch_gelu; /* (N,C) (N,C) (N,3C) (N,4C) (N,4C) */
    int B, T;                           /* of the last forward */
    /* the head over chunks of rows (gpt_set_logits_chunk) */
    int Vp;                             /* padded vocabulary: the logits row stride */
    int chunk_set;                      /* rows asked for, 0 = automatic */
    int head_rows;                      /* rows per chunk for the last forward */
    int logits_cap;                     /* rows the logits buffer holds */
    int logits_r0, logits_n;            /* rows whose logits the buffer holds; n 0 = none */
    /* key/value cache for generation: (L, B, NH, maxT, HS) each, compute type */
    float *kcache, *vcache;
    int kv_B;
    /* word-level KD side buffers (fp32, device): kd, agree, w (N) each, then
     * teacher top-K log-probs (N,K) and ids (N,K) */
    float *kd_buf;
    size_t kd_cap;                      /* floats */
};


/* Parameter tensor i of the flat parameter buffer, in bytes of the backend's
 * compute type. */
static inline float *param_at(const GPT *m, int i) {
    return (float *)((char *)m->params + m->tensors[i].offset * m->be->act_size);
}

/* Gradient of tensor i, or NULL when it is frozen (the ops then skip it).
 * Gradients are fp32 on every backend (model/backend.h). */
static inline float *grad_at(const GPT *m, int i) {
    const ParamInfo *p = &m->tensors[i];
    if (!p->trainable) return NULL;
    return m->grads + p->grad_offset;
}

/* Parameter / gradient of slot P_* of block `layer` (tensors 0 and 1 are wte, wpe). */
static inline float *layer_param(GPT *m, int layer, int slot) {
    return param_at(m, 2 + layer * P_PER_LAYER + slot);
}
static inline float *layer_grad(GPT *m, int layer, int slot) {
    return grad_at(m, 2 + layer * P_PER_LAYER + slot);
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
/* Linear k of block l: out = inp W + b (+ the LoRA path when adapted). */
void linear_forward(GPT *m, int l, int k, float *out, const float *inp, int N, int training);
void linear_backward(GPT *m, int l, int k, float *dinp, const float *dout, const float *inp,
                     int N);

#endif
