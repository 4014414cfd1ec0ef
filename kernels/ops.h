/* kernels/ops.h — every numerical op retort uses: the op contract, each
 * signature written once.
 *
 * The fp32 CPU reference implementations are in kernels/cpu/ under the op's
 * own name; the CUDA twins in kernels/cuda/ take the same name with a _cuda
 * suffix and the same arguments, so one can be read against the other.
 *
 * Dimension names, used the same way in every file of the project:
 *   B  batch size                 T  sequence length (tokens per row)
 *   C  channels (n_embd)          V  vocabulary size
 *   NH number of heads            HS head size (C / NH)
 *   L  number of layers           N  rows of a 2-D view, usually B*T
 *   OC output channels of a linear layer
 *
 * Conventions:
 *   - Linear weights use the Hugging Face GPT-2 Conv1D layout (C, OC): y = x W + b;
 *     those of the Llama families torch's nn.Linear layout (OC, C), y = x W^T + b
 *     (matmul_nt). Checkpoints then need no transposes.
 *   - Every backward ACCUMULATES (+=) into its gradient outputs, so a tensor used
 *     twice (the tied wte) or a residual stream gets the sum without extra copies.
 *     Callers zero gradients once per optimizer step.
 *   - A NULL gradient pointer means "not needed" (frozen parameter): the op skips
 *     that work entirely.
 *   - Types on a lower-precision backend (model/backend.h): the gradients of
 *     parameters (dweight, dbias, dwte, dwpe; adamw_update's grad; sum_squares
 *     and scale_inplace) are fp32 on EVERY backend, since they are running sums
 *     over gradient-accumulation micro-steps; the gradients of activations
 *     (dinp, dqkv, dlogits, ...) are in the compute type, like the activations.
 *     Side buffers (mean, rstd, lse, logp, g, kd, agree, w, teacher_logp,
 *     AdamW's m, v and master) are fp32 and ids int32 everywhere. On the CPU
 *     everything is fp32.
 *   - Target ids < 0 mean "no target here" in the classifier: logp is 0 there and
 *     the token's weight must be 0.
 *
 * The list below is an X-macro: each op is one entry
 *     OP(return type, name, (parameters))
 * and every other declaration of it is generated from that entry, so the CPU
 * and CUDA backends cannot drift apart:
 *   - included with no OP defined, it declares the CPU ops, ret name(params);
 *   - kernels/cuda/ops_cuda.h declares the CUDA twins, ret name_cuda(params);
 *   - model/backend.h makes each op a field of Backend, ret (*name)(params);
 *   - model/backend_cpu.c and model/backend_cuda.cu fill their tables from it.
 * To expand the list some other way, define OP(ret, name, params) and include
 * this header (as often as needed; OP stays defined). The list part holds
 * nothing but OP entries and comments, so it may be expanded anywhere, a
 * struct body included. Adding an op is one entry here plus its CPU and CUDA
 * functions: the build (compiler or linker) names whichever is missing.
 */
#ifndef OP
#ifndef RETORT_OPS_H
#define RETORT_OPS_H
#include <stddef.h>
#define OP(ret, name, params) ret name params;
#define RETORT_OPS_DECLARE_CPU
#endif
#endif

#ifdef OP
/* ---- embedding: out[b,t,:] = wte[inp[b,t],:] + wpe[p,:] ----
 * p = pos[b,t], or t when pos is NULL (pos: positions restarting per packed
 * example, each in [0, maxT)). wpe NULL: no learned positions (Llama
 * families), out[b,t,:] = wte[inp[b,t],:], and pos is not read. */
OP(void, encoder_forward, (float *out,              /* (B,T,C) */
                           const int *inp,          /* (B,T) */
                           const float *wte,        /* (V,C) */
                           const float *wpe,        /* (maxT,C) or NULL */
                           const int *pos,          /* (B,T) or NULL */
                           int B, int T, int C))
/* inp_host: the same (B,T) ids in host memory, or NULL. A backend that groups
 * positions by id on the host (CUDA) then needs no download and no
 * synchronisation; the CPU, whose ids are host ids, ignores it. pos and
 * pos_host: the forward's positions (NULL: t), on the device and the host;
 * with pos set, pos_host must be too (the CUDA twin groups by position on the
 * host, as it does by id). dwpe[p] sums the dout rows of every (b,t) at
 * position p, in (b,t) order. */
OP(void, encoder_backward, (float *dwte,            /* (V,C) += ; may be NULL */
                            float *dwpe,            /* (maxT,C) += ; may be NULL */
                            const float *dout,      /* (B,T,C) */
                            const int *inp,         /* (B,T) */
                            const int *inp_host,    /* (B,T) on the host, or NULL */
                            const int *pos,         /* (B,T) or NULL */
                            const int *pos_host,    /* (B,T) on the host, or NULL */
                            int B, int T, int C))

/* ---- layernorm over the last dimension; mean and rstd saved for backward ---- */
OP(void, layernorm_forward, (float *out,            /* (N,C) */
                             float *mean,           /* (N) */
                             float *rstd,           /* (N) */
                             const float *inp,      /* (N,C) */
                             const float *weight,   /* (C) */
                             const float *bias,     /* (C) */
                             int N, int C, float eps))
OP(void, layernorm_backward, (float *dinp,          /* (N,C) += */
                              float *dweight,       /* (C) += ; may be NULL */
                              float *dbias,         /* (C) += ; may be NULL */
                              const float *dout,    /* (N,C) */
                              const float *inp,     /* (N,C) */
                              const float *weight,  /* (C) */
                              const float *mean,    /* (N) */
                              const float *rstd,    /* (N) */
                              int N, int C))

/* ---- linear layer through a GEMM: out = inp @ weight + bias ---- */
OP(void, matmul_forward, (float *out,               /* (N,OC) */
                          const float *inp,         /* (N,C) */
                          const float *weight,      /* (C,OC) */
                          const float *bias,        /* (OC) or NULL */
                          int N, int C, int OC))
OP(void, matmul_backward, (float *dinp,             /* (N,C) += ; may be NULL */
                           float *dweight,          /* (C,OC) += ; may be NULL */
                           float *dbias,            /* (OC) += ; may be NULL */
                           const float *dout,       /* (N,OC) */
                           const float *inp,        /* (N,C) */
                           const float *weight,     /* (C,OC) */
                           int N, int C, int OC))

/* ---- tied output layer: logits = inp @ wte^T, with wte in its (V,C) embedding
 * layout (the transpose of a Conv1D weight), so the embedding is shared as is ---- */
OP(void, lm_head_forward, (float *logits,           /* (N,V) */
                           const float *inp,        /* (N,C) */
                           const float *wte,        /* (V,C) */
                           int N, int C, int V))
OP(void, lm_head_backward, (float *dinp,            /* (N,C) += ; may be NULL */
                            float *dwte,            /* (V,C) += ; may be NULL */
                            const float *dlogits,   /* (N,V) */
                            const float *inp,       /* (N,C) */
                            const float *wte,       /* (V,C) */
                            int N, int C, int V))

/* ---- causal self-attention with grouped-query heads, flash style ----
 * qkv holds, per token, NH query heads, then KVH key heads, then KVH value
 * heads, each HS wide: qkv[b,t, 0:NH*HS | NH*HS:(NH+KVH)*HS | (NH+KVH)*HS:W],
 * W = (NH + 2 KVH) HS, head h at columns h*HS .. h*HS+HS-1 of its part. Query
 * head h attends with kv head h / (NH/KVH) (transformers' repeat_kv); NH must
 * be a multiple of KVH (KVH == NH: multi-head, KVH == 1: multi-query).
 * Scores are scale * q.k (GPT-2: scale = 1/sqrt(HS)), causally masked.
 * Only the per-row log-sum-exp of the scaled scores is kept; backward
 * recomputes the (T,T) scores per head. Backward sums the dk, dv of a kv head
 * over the NH/KVH query heads of its group in a fixed order.
 * doc_start (packed rows): NULL is plain causal attention; otherwise the
 * query at (b,t) sees only keys s with doc_start[b,t] <= s <= t, so packed
 * examples never see each other. It must describe contiguous segments: per
 * row, doc_start[b,0] = 0 and each doc_start[b,t] is either t (an example
 * starts at t) or doc_start[b,t-1] (the same example goes on); the ops stop
 * with a message otherwise (the model builds it; a caller's bug). */
OP(void, attention_forward, (float *out,            /* (B,T,NH*HS) */
                             float *lse,            /* (B,NH,T) */
                             const float *qkv,      /* (B,T,W) */
                             const int *doc_start,  /* (B,T) or NULL */
                             int B, int T, int NH, int KVH, int HS, float scale))
OP(void, attention_backward, (float *dqkv,          /* (B,T,W) += */
                              const float *dout,    /* (B,T,NH*HS) */
                              const float *qkv,     /* (B,T,W) */
                              const float *out,     /* (B,T,NH*HS) forward output */
                              const float *lse,     /* (B,NH,T) */
                              const int *doc_start, /* (B,T) or NULL */
                              int B, int T, int NH, int KVH, int HS, float scale))

/* ---- incremental causal attention over a key/value cache (generation) ----
 * qkv holds N new tokens laid out as for attention_forward; token i belongs
 * to cache slot slot[i] at position pos[i] (in [0, maxT)). Every token's k
 * and v (KVH heads) are first written into its slot at its position; then
 * its query of head h attends to keys 0 .. pos[i] of its slot's kv head
 * h / (NH/KVH), with scores scale * q.k. A slot's tokens in one call come in
 * increasing positions; slots never mix. slot and pos are ints in device
 * memory. Caches are (slots,KVH,maxT,HS), compute type. */
OP(void, attention_decode, (float *out,             /* (N,NH*HS) */
                            float *kcache,          /* (slots,KVH,maxT,HS) */
                            float *vcache,          /* (slots,KVH,maxT,HS) */
                            const float *qkv,       /* (N,W) */
                            const int *slot,        /* (N) */
                            const int *pos,         /* (N) */
                            int N, int NH, int KVH, int HS, int maxT, float scale))

/* ---- GELU, tanh approximation (HF "gelu_new") ---- */
OP(void, gelu_forward, (float *out, const float *inp, size_t n))
OP(void, gelu_backward, (float *dinp,               /* += */
                         const float *inp, const float *dout, size_t n))

/* ---- residual: out = a + b ---- */
OP(void, residual_forward, (float *out, const float *a, const float *b, size_t n))

/* ==== Llama-family ops (Llama, Mistral, Qwen2, Qwen3) ====
 * Dimensions beside those above: KVH key/value heads (KVH divides NH),
 * HS = head_dim (may differ from C/NH), W = (NH + 2 KVH) HS the width of a
 * token's fused qkv, I the MLP width (intermediate_size). */

/* ---- RMSNorm over the last dimension (transformers LlamaRMSNorm) ----
 *     rstd = 1 / sqrt(mean_c(inp^2) + eps),   out = weight * (inp * rstd)
 * No mean, no bias; statistics in fp32 (double on the CPU); rstd is kept
 * for backward. */
OP(void, rmsnorm_forward, (float *out,              /* (N,C) */
                           float *rstd,             /* (N) */
                           const float *inp,        /* (N,C) */
                           const float *weight,     /* (C) */
                           int N, int C, float eps))
OP(void, rmsnorm_backward, (float *dinp,            /* (N,C) += */
                            float *dweight,         /* (C) += ; may be NULL */
                            const float *dout,      /* (N,C) */
                            const float *inp,       /* (N,C) */
                            const float *weight,    /* (C) */
                            const float *rstd,      /* (N) */
                            int N, int C))

/* ---- per-head RMSNorm of q and k inside the fused qkv (Qwen3 q_norm, k_norm) ----
 * Per token, each of the NH q heads is RMS-normed over its HS values with wq,
 * each of the KVH k heads with wk (rmsnorm's formula, one rstd per head), and
 * the KVH v heads are copied unchanged. Backward passes the v part through
 * (dinp += dout there). rstd[i, g] belongs to head g of token i, g < NH + KVH. */
OP(void, qk_norm_forward, (float *out,              /* (N,W) */
                           float *rstd,             /* (N,NH+KVH) */
                           const float *inp,        /* (N,W) */
                           const float *wq,         /* (HS) */
                           const float *wk,         /* (HS) */
                           int N, int NH, int KVH, int HS, float eps))
OP(void, qk_norm_backward, (float *dinp,            /* (N,W) += */
                            float *dwq,             /* (HS) += ; may be NULL */
                            float *dwk,             /* (HS) += ; may be NULL */
                            const float *dout,      /* (N,W) */
                            const float *inp,       /* (N,W) */
                            const float *wq,        /* (HS) */
                            const float *wk,        /* (HS) */
                            const float *rstd,      /* (N,NH+KVH) */
                            int N, int NH, int KVH, int HS))

/* ---- rotary position embedding, in place on the q and k heads of qkv ----
 * transformers' rotate_half convention: with h = HS/2 and, for the token at
 * (b,t), position p = pos[b,t] (packed rows: positions restarting per
 * example), or pos0 + t when pos is NULL, c = cos_tab[p,i], s = sin_tab[p,i] (i < h):
 *     y[i] = x[i] c - x[i+h] s,   y[i+h] = x[i+h] c + x[i] s
 * on each of the NH + KVH q and k heads; the v heads are untouched. Backward
 * applies the transpose in place on the gradient:
 *     dx[i] = dy[i] c + dy[i+h] s,   dx[i+h] = dy[i+h] c - dy[i] s
 * The tables are fp32 side buffers the model fills on the host (rope_theta,
 * rope_scaling and any YaRN attention factor already applied). HS must be
 * even and every p < maxT (the model checks both; an odd HS stops the op). */
OP(void, rope_forward, (float *qkv,                 /* (B,T,W) in place */
                        const float *cos_tab,       /* (maxT,HS/2) */
                        const float *sin_tab,       /* (maxT,HS/2) */
                        const int *pos,             /* (B,T) or NULL */
                        int B, int T, int pos0, int NH, int KVH, int HS))
OP(void, rope_backward, (float *dqkv,               /* (B,T,W) in place */
                         const float *cos_tab,      /* (maxT,HS/2) */
                         const float *sin_tab,      /* (maxT,HS/2) */
                         const int *pos,            /* (B,T) or NULL */
                         int B, int T, int pos0, int NH, int KVH, int HS))

/* ---- SwiGLU gate of the MLP: out = silu(gate) * up ----
 * inp is the fused gate|up GEMM output, each row [gate (I) | up (I)];
 * silu(x) = x / (1 + exp(-x)). The width I is spelled n_inner in code:
 * <complex.h>, which cblas.h includes, makes I a macro. */
OP(void, swiglu_forward, (float *out,               /* (N,I) */
                          const float *inp,         /* (N,2I) */
                          int N, int n_inner))
OP(void, swiglu_backward, (float *dinp,             /* (N,2I) += */
                           const float *dout,       /* (N,I) */
                           const float *inp,        /* (N,2I) */
                           int N, int n_inner))

/* ---- linear layer with an nn.Linear weight: out = inp @ weight^T + bias ----
 * weight in torch's (out, in) layout, (OC,C), as Llama-family checkpoints
 * store it (no transposes on load or save). */
OP(void, matmul_nt_forward, (float *out,            /* (N,OC) */
                             const float *inp,      /* (N,C) */
                             const float *weight,   /* (OC,C) */
                             const float *bias,     /* (OC) or NULL */
                             int N, int C, int OC))
OP(void, matmul_nt_backward, (float *dinp,          /* (N,C) += ; may be NULL */
                              float *dweight,       /* (OC,C) += ; may be NULL */
                              float *dbias,         /* (OC) += ; may be NULL */
                              const float *dout,    /* (N,OC) */
                              const float *inp,     /* (N,C) */
                              const float *weight,  /* (OC,C) */
                              int N, int C, int OC))

/* ---- the linear layers of decoding: out = inp @ W + bias, row-invariant ----
 * W is (C,OC) (nt = 0, Conv1D) or (OC,C) (nt = 1, nn.Linear; the tied head
 * with bias NULL). On the CPU every output element is one fixed sequence of
 * fp32 operations that depends on C alone (kernels/cpu/matmul_rows.c), not
 * on N, the row's place, the threads or the instruction set, so a row's
 * result is the same bits in any batch: batched generation gives one-by-one
 * generation's outputs. The CUDA twin is cuBLAS (the same GEMMs as
 * matmul_forward / matmul_nt_forward): rows equal to rounding only. */
OP(void, matmul_rows_forward, (float *out,           /* (N,OC) */
                               const float *inp,     /* (N,C) */
                               const float *weight,  /* (C,OC) or (OC,C) */
                               const float *bias,    /* (OC) or NULL */
                               int N, int C, int OC, int nt))

/* ---- column slices of a wider matrix (compute type) ----
 * out / src point at the slice's first column of a row-major matrix with
 * leading dimension ldo / lds >= n. LoRA on q_proj, k_proj, v_proj, gate_proj
 * or up_proj works on a column slice of the fused qkv or gate|up outputs. */
OP(void, cols_add, (float *out,                     /* (N, ldo): columns 0..n-1 += */
                    int ldo,
                    const float *src,               /* (N,n) */
                    int N, int n))
OP(void, cols_copy, (float *dst,                    /* (N,n) */
                     const float *src,              /* (N, lds): columns 0..n-1 */
                     int lds, int N, int n))

/* ---- fused classifier: the one seam every training method goes through ----
 * Forward: from logits (N,V) compute per-row log-sum-exp and the log-probability
 * of each row's target: logp[i] = logits[i,targets[i]] - lse[i] (0 where
 * targets[i] < 0). Logits are left untouched.
 * Backward: given g[i] = dLoss/dlogp[i] (the per-token weight an objective
 * produces), overwrite logits IN PLACE with dLoss/dlogits:
 *     dlogits[i,j] = g[i] * (1[j == targets[i]] - softmax(logits[i])[j])
 * so no second V-wide matrix is ever stored. Rows with g[i] == 0 become zeros.
 *
 * Padded vocabulary: every classifier op (plain and KD) reads rows of Vp >= V
 * values (Vp is the row stride: the model pads the vocabulary to a multiple of
 * 128 so the head GEMMs get aligned leading dimensions) and uses only the V
 * real columns: padded columns never enter a max, a log-sum-exp, a softmax, a
 * KD sum or an argmax. Backward writes zeros into the padded columns, so the
 * head backward adds nothing through them. Vp == V is the unpadded case. */
OP(void, classifier_forward, (float *logp,          /* (N) */
                              float *lse,           /* (N) */
                              const float *logits,  /* (N,Vp) */
                              const int *targets,   /* (N) */
                              int N, int V, int Vp))
OP(void, classifier_backward, (float *logits,       /* (N,Vp) in: logits, out: dlogits */
                               const float *lse,    /* (N) */
                               const int *targets,  /* (N) */
                               const float *g,      /* (N) dLoss/dlogp */
                               int N, int V, int Vp))

/* ---- word-level knowledge distillation inside the fused classifier ----
 * Per row i, with temperature tau > 0 and beta in [0,1], student
 * s = softmax(z/tau) and teacher t = softmax(zt/tau), the generalized
 * Jensen-Shannon divergence of TRL's GKDTrainer.generalized_jsd_loss
 * (github.com/huggingface/trl, trl/trainer/gkd_trainer.py; Agarwal et al. 2023,
 * arXiv:2306.13649):
 *     beta == 0:  D = KL(t || s) = sum_j t_j (log t_j - log s_j)   (forward KL)
 *     beta == 1:  D = KL(s || t) = sum_j s_j (log s_j - log t_j)   (reverse KL)
 *     otherwise:  m = beta t + (1 - beta) s,
 *                 D = beta KL(t || m) + (1 - beta) KL(s || m)
 * The endpoints are special cases exactly as in TRL (the mixture formula itself
 * tends to 0, not to a KL, as beta -> 0 or 1). 0 log 0 counts as 0. tau is
 * the `temperature` argument (T is the sequence length everywhere else).
 *
 * Forward: kd[i] = D and agree[i] = 1 when argmax(logits row) == argmax(teacher
 * row) (ties: the lowest index), else 0; both 0 where targets[i] < 0.
 * Backward: as classifier_backward (logits overwritten IN PLACE), plus the KD term:
 *     dlogits[i,j] = g[i] (1[j == targets[i]] - softmax(z)[j]) + w[i] dD/dz[i,j]
 * where dD/dz = (1/tau) dD/d(z/tau). w[i] is the caller's KD weight
 * (alpha tau^2 / count and the like). lse is classifier_forward's untempered
 * log-sum-exp. Rows with targets[i] < 0 become zeros; rows with w[i] == 0 are
 * exactly classifier_backward; w == NULL is classifier_backward. Nothing
 * V-wide is allocated: the tempered statistics are recomputed in passes over
 * the row. The teacher logits are in the compute type, like the student's. */
OP(void, classifier_kd_forward,
   (float *kd,                   /* (N) */
    float *agree,                /* (N) 0 or 1 */
    const float *logits,         /* (N,Vp) student */
    const float *teacher_logits, /* (N,Vp) */
    const int *targets,          /* (N) */
    int N, int V, int Vp, float temperature, float beta))
OP(void, classifier_kd_backward,
   (float *logits,               /* (N,Vp) in: logits, out: dlogits */
    const float *lse,            /* (N) untempered, from classifier_forward */
    const int *targets,          /* (N) */
    const float *g,              /* (N) dLoss/dlogp */
    const float *teacher_logits, /* (N,Vp) */
    const float *w,              /* (N) KD weight, or NULL */
    int N, int V, int Vp, float temperature, float beta))

/* ---- offline top-K knowledge distillation ----
 * The teacher is K stored (token id, log-prob) pairs per row, log-probs at
 * temperature 1 as a teacher's generate run stores them. D is the same
 * divergence over K+1 buckets: the K stored tokens and one remainder bucket
 * holding every other token.
 *   teacher: p_k = exp(teacher_logp_k), r = max(0, 1 - sum_k p_k) (r = 0 when
 *            K == V: the remainder is empty); tempered q_k ∝ p_k^(1/tau),
 *            q_rem ∝ r^(1/tau), renormalised over the K+1 buckets.
 *   student: s = softmax(z/tau); s_k = s[id_k], s_rem = sum of s over the tokens
 *            outside the support (summed directly, not 1 - sum s_k).
 * With K == V this is exactly the online divergence. With K < V it is an
 * approximation: (1) the teacher's remainder mass r is treated as one lumped
 * token, so its tempered mass r^(1/tau) is not what tempering the true tail
 * (sum of p_j^(1/tau)) would give unless tau == 1 (for tau = 1 the bucket
 * divergence is a lower bound of the full one, by the data-processing
 * inequality); (2) inside the remainder the student is free: the gradient only
 * moves s_rem as a whole, spread over the tail in proportion to s_j. When
 * r == 0 with K < V, reverse KL (beta == 1) is +inf whenever the student puts
 * mass on the tail. Ids in a row must be distinct and in [0, V) (asserted). */
OP(void, classifier_kd_topk_forward,
   (float *kd,                   /* (N) */
    float *agree,                /* (N) argmax(z) == ids[argmax logp] */
    const float *logits,         /* (N,Vp) student */
    const int *teacher_ids,      /* (N,K) */
    const float *teacher_logp,   /* (N,K) */
    const int *targets,          /* (N) */
    int N, int V, int Vp, int K, float temperature, float beta))
OP(void, classifier_kd_topk_backward,
   (float *logits,               /* (N,Vp) in: logits, out: dlogits */
    const float *lse,            /* (N) untempered */
    const int *targets,          /* (N) */
    const float *g,              /* (N) dLoss/dlogp */
    const int *teacher_ids,      /* (N,K) */
    const float *teacher_logp,   /* (N,K) */
    const float *w,              /* (N) KD weight, or NULL */
    int N, int V, int Vp, int K, float temperature, float beta))

/* ---- AdamW, one tensor; matches torch.optim.AdamW's update order exactly ----
 * step is 1-based. weight_decay is applied decoupled: p *= 1 - lr*wd first.
 * The hyperparameters are doubles because torch derives 1-beta2, lr/bc1, ...
 * from Python floats before rounding them once to fp32; (double)0.999f is not
 * 0.999, and that alone moves step 1 by ~1e-5 relative.
 * master: fp32 master weights, or NULL where param itself is fp32 (the CPU).
 * With master, the update reads and writes master and param becomes its copy
 * in the compute type (rounded to nearest), never read, so rounding errors do
 * not accumulate; a backend whose compute type is not fp32 requires it. */
OP(void, adamw_update, (float *param,               /* (n) compute type */
                        float *master,              /* (n) fp32, or NULL */
                        const float *grad,          /* (n) fp32 */
                        float *m,                   /* (n) fp32 first moment */
                        float *v,                   /* (n) fp32 second moment */
                        size_t n, double lr, double beta1, double beta2, double eps,
                        double weight_decay, int step))

/* ---- reductions (on fp32 gradients) ----
 * sum_squares: in double, for the global grad norm; the order of the sum
 * depends on n only, so the same x gives the same bits whatever the threads.
 * It returns a host value, so it synchronises a device backend. */
OP(double, sum_squares, (const float *x, size_t n))
OP(void, scale_inplace, (float *x, float s, size_t n))
/* x *= s on a compute-type buffer (activations: the LoRA scale) */
OP(void, scale_act, (float *x, float s, size_t n))
#endif /* OP */

#ifdef RETORT_OPS_DECLARE_CPU
/* The instruction set matmul_rows_forward runs on this processor: "avx512",
 * "avx2" or "scalar" (RETORT_MATMUL_ISA forces one). */
const char *matmul_rows_isa(void);
/* Makes matmul_rows_forward use `name` ("scalar", "avx2", "avx512") from now
 * on: 0, or -1 when this processor does not run it (tests compare them). */
int matmul_rows_set_isa(const char *name);
#undef OP
#undef RETORT_OPS_DECLARE_CPU
#endif
