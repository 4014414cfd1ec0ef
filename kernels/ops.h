/* kernels/ops.h — every numerical op retort uses, declared once.
 *
 * These are the fp32 CPU reference implementations (kernels/cpu/). The CUDA
 * twins in kernels/cuda/ keep the same names with a _cuda suffix and the
 * same argument order, so one can be read against the other.
 *
 * Dimension names, used the same way in every file of the project:
 *   B  batch size                 T  sequence length (tokens per row)
 *   C  channels (n_embd)          V  vocabulary size
 *   NH number of heads            HS head size (C / NH)
 *   L  number of layers           N  rows of a 2-D view, usually B*T
 *   OC output channels of a linear layer
 *
 * Conventions:
 *   - Linear weights use the Hugging Face GPT-2 Conv1D layout (C, OC): y = x W + b.
 *     Checkpoints then need no transposes.
 *   - Every backward ACCUMULATES (+=) into its gradient outputs, so a tensor used
 *     twice (the tied wte) or a residual stream gets the sum without extra copies.
 *     Callers zero gradients once per optimizer step.
 *   - A NULL gradient pointer means "not needed" (frozen parameter): the op skips
 *     that work entirely.
 *   - Target ids < 0 mean "no target here" in the classifier: logp is 0 there and
 *     the token's weight must be 0.
 */
#ifndef RETORT_OPS_H
#define RETORT_OPS_H

#include <stddef.h>

/* ---- embedding: out[b,t,:] = wte[inp[b,t],:] + wpe[t,:] ---- */
void encoder_forward(float *out,             /* (B,T,C) */
                     const int *inp,         /* (B,T) */
                     const float *wte,       /* (V,C) */
                     const float *wpe,       /* (maxT,C) */
                     int B, int T, int C);
void encoder_backward(float *dwte,           /* (V,C) += ; may be NULL */
                      float *dwpe,           /* (maxT,C) += ; may be NULL */
                      const float *dout,     /* (B,T,C) */
                      const int *inp,        /* (B,T) */
                      int B, int T, int C);

/* ---- layernorm over the last dimension; mean and rstd saved for backward ---- */
void layernorm_forward(float *out,           /* (N,C) */
                       float *mean,          /* (N) */
                       float *rstd,          /* (N) */
                       const float *inp,     /* (N,C) */
                       const float *weight,  /* (C) */
                       const float *bias,    /* (C) */
                       int N, int C, float eps);
void layernorm_backward(float *dinp,         /* (N,C) += */
                        float *dweight,      /* (C) += ; may be NULL */
                        float *dbias,        /* (C) += ; may be NULL */
                        const float *dout,   /* (N,C) */
                        const float *inp,    /* (N,C) */
                        const float *weight, /* (C) */
                        const float *mean,   /* (N) */
                        const float *rstd,   /* (N) */
                        int N, int C);

/* ---- linear layer through sgemm: out = inp @ weight + bias ---- */
void matmul_forward(float *out,              /* (N,OC) */
                    const float *inp,        /* (N,C) */
                    const float *weight,     /* (C,OC) */
                    const float *bias,       /* (OC) or NULL */
                    int N, int C, int OC);
void matmul_backward(float *dinp,            /* (N,C) += ; may be NULL */
                     float *dweight,         /* (C,OC) += ; may be NULL */
                     float *dbias,           /* (OC) += ; may be NULL */
                     const float *dout,      /* (N,OC) */
                     const float *inp,       /* (N,C) */
                     const float *weight,    /* (C,OC) */
                     int N, int C, int OC);

/* ---- tied output layer: logits = inp @ wte^T, with wte in its (V,C) embedding
 * layout (the transpose of a Conv1D weight), so the embedding is shared as is ---- */
void lm_head_forward(float *logits,          /* (N,V) */
                     const float *inp,       /* (N,C) */
                     const float *wte,       /* (V,C) */
                     int N, int C, int V);
void lm_head_backward(float *dinp,           /* (N,C) += ; may be NULL */
                      float *dwte,           /* (V,C) += ; may be NULL */
                      const float *dlogits,  /* (N,V) */
                      const float *inp,      /* (N,C) */
                      const float *wte,      /* (V,C) */
                      int N, int C, int V);

/* ---- causal multi-head self-attention, flash style on the CPU ----
 * qkv holds q, k, v side by side per token: qkv[b,t, 0:C | C:2C | 2C:3C], head h
 * at columns h*HS .. h*HS+HS-1 of each. Only the per-row log-sum-exp of the
 * scaled scores is kept; backward recomputes the (T,T) scores per head. */
void attention_forward(float *out,           /* (B,T,C) */
                       float *lse,           /* (B,NH,T) */
                       const float *qkv,     /* (B,T,3C) */
                       int B, int T, int C, int NH);
void attention_backward(float *dqkv,         /* (B,T,3C) += */
                        const float *dout,   /* (B,T,C) */
                        const float *qkv,    /* (B,T,3C) */
                        const float *out,    /* (B,T,C) forward output */
                        const float *lse,    /* (B,NH,T) */
                        int B, int T, int C, int NH);

/* ---- incremental causal attention over a key/value cache (generation) ----
 * qkv holds the n new tokens of each row, at positions pos .. pos+n-1. Their
 * k and v are first written into the caches at those positions; then each new
 * query i attends to keys 0 .. pos+i. Caches are (B,NH,maxT,HS). */
void attention_decode(float *out,            /* (B,n,C) */
                      float *kcache,         /* (B,NH,maxT,HS) */
                      float *vcache,         /* (B,NH,maxT,HS) */
                      const float *qkv,      /* (B,n,3C) */
                      int B, int n, int pos, int C, int NH, int maxT);

/* ---- GELU, tanh approximation (HF "gelu_new") ---- */
void gelu_forward(float *out, const float *inp, size_t n);
void gelu_backward(float *dinp,              /* += */
                   const float *inp, const float *dout, size_t n);

/* ---- residual: out = a + b ---- */
void residual_forward(float *out, const float *a, const float *b, size_t n);

/* ---- fused classifier: the one seam every training method goes through ----
 * Forward: from logits (N,V) compute per-row log-sum-exp and the log-probability
 * of each row's target: logp[i] = logits[i,targets[i]] - lse[i] (0 where
 * targets[i] < 0). Logits are left untouched.
 * Backward: given g[i] = dLoss/dlogp[i] (the per-token weight an objective
 * produces), overwrite logits IN PLACE with dLoss/dlogits:
 *     dlogits[i,j] = g[i] * (1[j == targets[i]] - softmax(logits[i])[j])
 * so no second V-wide matrix is ever stored. Rows with g[i] == 0 become zeros. */
void classifier_forward(float *logp,         /* (N) */
                        float *lse,          /* (N) */
                        const float *logits, /* (N,V) */
                        const int *targets,  /* (N) */
                        int N, int V);
void classifier_backward(float *logits,      /* (N,V) in: logits, out: dlogits */
                         const float *lse,   /* (N) */
                         const int *targets, /* (N) */
                         const float *g,     /* (N) dLoss/dlogp */
                         int N, int V);

/* ---- AdamW, one tensor; matches torch.optim.AdamW's update order exactly ----
 * step is 1-based. weight_decay is applied decoupled: p *= 1 - lr*wd first.
 * The hyperparameters are doubles because torch derives 1-beta2, lr/bc1, ...
 * from Python floats before rounding them once to fp32; (double)0.999f is not
 * 0.999, and that alone moves step 1 by ~1e-5 relative. */
void adamw_update(float *param, const float *grad, float *m, float *v, size_t n,
                  double lr, double beta1, double beta2, double eps, double weight_decay,
                  int step);

/* ---- reductions ---- */
double sum_squares(const float *x, size_t n);  /* in double, for the global grad norm */
void scale_inplace(float *x, float s, size_t n);

#endif
