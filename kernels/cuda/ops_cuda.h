/* kernels/cuda/ops_cuda.h — the CUDA twins of kernels/ops.h.
 *
 * Same names with a _cuda suffix, same argument order and shapes as the CPU
 * ops, so one is read against the other. Plain C declarations: the CUDA
 * backend (model/backend_cuda.cu) puts them into its Backend table and the
 * tests call them through it. float* arguments that hold compute-type data
 * (everything the CPU twin documents as a tensor of the model) point to bf16
 * on the device; the fp32 side buffers (mean, rstd, lse, logp, g, m, v,
 * master) are fp32, and so are the weight gradients (dweight, dbias, dwte,
 * dwpe, adamw's grad, sum_squares and scale_inplace: model/backend.h), while
 * activation gradients (dinp, dqkv, ...) are bf16. All run asynchronously on
 * retort_stream, except encoder_backward_cuda without inp_host (it downloads
 * the ids) and sum_squares_cuda (it returns a host value).
 */
#ifndef RETORT_OPS_CUDA_H
#define RETORT_OPS_CUDA_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

void encoder_forward_cuda(float *out, const int *inp, const float *wte, const float *wpe, int B,
                          int T, int C);
void encoder_backward_cuda(float *dwte, float *dwpe, const float *dout, const int *inp,
                           const int *inp_host, int B, int T, int C);
void layernorm_forward_cuda(float *out, float *mean, float *rstd, const float *inp,
                            const float *weight, const float *bias, int N, int C, float eps);
void layernorm_backward_cuda(float *dinp, float *dweight, float *dbias, const float *dout,
                             const float *inp, const float *weight, const float *mean,
                             const float *rstd, int N, int C);
void matmul_forward_cuda(float *out, const float *inp, const float *weight, const float *bias,
                         int N, int C, int OC);
void matmul_backward_cuda(float *dinp, float *dweight, float *dbias, const float *dout,
                          const float *inp, const float *weight, int N, int C, int OC);
void lm_head_forward_cuda(float *logits, const float *inp, const float *wte, int N, int C, int V);
void lm_head_backward_cuda(float *dinp, float *dwte, const float *dlogits, const float *inp,
                           const float *wte, int N, int C, int V);
void attention_forward_cuda(float *out, float *lse, const float *qkv, int B, int T, int C, int NH);
void attention_backward_cuda(float *dqkv, const float *dout, const float *qkv, const float *out,
                             const float *lse, int B, int T, int C, int NH);
void attention_decode_cuda(float *out, float *kcache, float *vcache, const float *qkv, int B, int n,
                           int pos, int C, int NH, int maxT);
void gelu_forward_cuda(float *out, const float *inp, size_t n);
void gelu_backward_cuda(float *dinp, const float *inp, const float *dout, size_t n);
void residual_forward_cuda(float *out, const float *a, const float *b, size_t n);
void classifier_forward_cuda(float *logp, float *lse, const float *logits, const int *targets,
                             int N, int V, int Vp);
void classifier_backward_cuda(float *logits, const float *lse, const int *targets, const float *g,
                              int N, int V, int Vp);
void classifier_kd_forward_cuda(float *kd, float *agree, const float *logits,
                                const float *teacher_logits, const int *targets, int N, int V,
                                int Vp, float T, float beta);
void classifier_kd_backward_cuda(float *logits, const float *lse, const int *targets,
                                 const float *g, const float *teacher_logits, const float *w,
                                 int N, int V, int Vp, float T, float beta);
void classifier_kd_topk_forward_cuda(float *kd, float *agree, const float *logits,
                                     const int *teacher_ids, const float *teacher_logp,
                                     const int *targets, int N, int V, int Vp, int K, float T,
                                     float beta);
void classifier_kd_topk_backward_cuda(float *logits, const float *lse, const int *targets,
                                      const float *g, const int *teacher_ids,
                                      const float *teacher_logp, const float *w, int N, int V,
                                      int Vp, int K, float T, float beta);
void adamw_update_cuda(float *param, float *master, const float *grad, float *m, float *v,
                       size_t n, double lr, double beta1, double beta2, double eps,
                       double weight_decay, int step);
double sum_squares_cuda(const float *x, size_t n);
void scale_inplace_cuda(float *x, float s, size_t n);
void scale_act_cuda(float *x, float s, size_t n); /* bf16 x */

/* conversions between host fp32 and device bf16 */
void upload_f32_cuda(float *dst, const float *host, size_t n);
void download_f32_cuda(float *host, const float *src, size_t n);

#ifdef __cplusplus
}
#endif

#endif
