/* model/backend.h — the interface a compute backend fills in.
 *
 * The model (model/model.c) calls be->op(...) and never includes a device
 * header, so adding a device never touches model code. Pointers passed to ops
 * are device memory of the backend. Parameters and activations, and the
 * gradients of activations (dinp, dqkv, dlogits, ...), are in the backend's
 * compute type, act_size bytes per element (fp32 on the CPU, bf16 on CUDA):
 * the model treats those float* as opaque handles and offsets them in bytes.
 * The gradients of PARAMETERS are fp32 on every backend: the dweight, dbias,
 * dwte and dwpe outputs of the ops, the gradient adamw_update reads, and the
 * buffers sum_squares and scale_inplace work on. They are sums over the
 * micro-steps of gradient accumulation (the ops add into them), and a bf16
 * running sum would be rounded once per micro-step. Side buffers that must
 * stay exact (layernorm mean/rstd, attention and classifier log-sum-exp,
 * logp, per-token weights g, and the optimizer's moments and master weights)
 * are always fp32 too. Host data moves
 * with to_device/to_host (raw bytes) or upload_f32/download_f32 (converting
 * host fp32 to and from the compute type). The op signatures are those of
 * kernels/ops.h.
 */
#ifndef RETORT_BACKEND_H
#define RETORT_BACKEND_H

#include <stddef.h>
#include <stdio.h>

typedef struct Backend {
    const char *name;
    size_t act_size;                       /* bytes per compute-type element */

    void *(*alloc)(size_t bytes);          /* zeroed */
    void (*release)(void *p);
    void (*to_device)(void *dst, const void *src, size_t bytes);
    void (*to_host)(void *dst, const void *src, size_t bytes);
    void (*zero)(void *p, size_t bytes);
    void (*synchronize)(void);
    void (*upload_f32)(float *dst, const float *host, size_t n);   /* host fp32 -> compute */
    void (*download_f32)(float *host, const float *src, size_t n); /* compute -> host fp32 */

    void (*encoder_forward)(float *out, const int *inp, const float *wte, const float *wpe,
                            int B, int T, int C);
    /* inp_host: the same (B,T) ids in host memory, or NULL. A backend that
     * groups positions by id on the host (CUDA) then needs no download and no
     * synchronisation; the CPU ignores it. */
    void (*encoder_backward)(float *dwte, float *dwpe, const float *dout, const int *inp,
                             const int *inp_host, int B, int T, int C);
    void (*layernorm_forward)(float *out, float *mean, float *rstd, const float *inp,
                              const float *weight, const float *bias, int N, int C, float eps);
    void (*layernorm_backward)(float *dinp, float *dweight, float *dbias, const float *dout,
                               const float *inp, const float *weight, const float *mean,
                               const float *rstd, int N, int C);
    void (*matmul_forward)(float *out, const float *inp, const float *weight, const float *bias,
                           int N, int C, int OC);
    void (*matmul_backward)(float *dinp, float *dweight, float *dbias, const float *dout,
                            const float *inp, const float *weight, int N, int C, int OC);
    void (*lm_head_forward)(float *logits, const float *inp, const float *wte, int N, int C, int V);
    void (*lm_head_backward)(float *dinp, float *dwte, const float *dlogits, const float *inp,
                             const float *wte, int N, int C, int V);
    void (*attention_forward)(float *out, float *lse, const float *qkv, int B, int T, int C,
                              int NH);
    void (*attention_backward)(float *dqkv, const float *dout, const float *qkv, const float *out,
                               const float *lse, int B, int T, int C, int NH);
    void (*attention_decode)(float *out, float *kcache, float *vcache, const float *qkv, int B,
                             int n, int pos, int C, int NH, int maxT);
    void (*gelu_forward)(float *out, const float *inp, size_t n);
    void (*gelu_backward)(float *dinp, const float *inp, const float *dout, size_t n);
    void (*residual_forward)(float *out, const float *a, const float *b, size_t n);
    /* V real vocabulary columns in rows Vp apart (the padded vocabulary) */
    void (*classifier_forward)(float *logp, float *lse, const float *logits, const int *targets,
                               int N, int V, int Vp);
    void (*classifier_backward)(float *logits, const float *lse, const int *targets,
                                const float *g, int N, int V, int Vp);
    /* word-level knowledge distillation (kernels/ops.h): teacher logits in the
     * compute type; kd, agree, w and teacher_logp fp32; teacher_ids int32 */
    void (*classifier_kd_forward)(float *kd, float *agree, const float *logits,
                                  const float *teacher_logits, const int *targets, int N, int V,
                                  int Vp, float T, float beta);
    void (*classifier_kd_backward)(float *logits, const float *lse, const int *targets,
                                   const float *g, const float *teacher_logits, const float *w,
                                   int N, int V, int Vp, float T, float beta);
    void (*classifier_kd_topk_forward)(float *kd, float *agree, const float *logits,
                                       const int *teacher_ids, const float *teacher_logp,
                                       const int *targets, int N, int V, int Vp, int K, float T,
                                       float beta);
    void (*classifier_kd_topk_backward)(float *logits, const float *lse, const int *targets,
                                        const float *g, const int *teacher_ids,
                                        const float *teacher_logp, const float *w, int N, int V,
                                        int Vp, int K, float T, float beta);
    /* master: fp32 master weights, or NULL when param itself is fp32 (CPU) */
    void (*adamw_update)(float *param, float *master, const float *grad, float *m, float *v,
                         size_t n, double lr, double beta1, double beta2, double eps,
                         double weight_decay, int step);
    /* fp32 x (gradients): the global gradient norm and clipping. sum_squares
     * returns a host value, so it synchronises a device backend. */
    double (*sum_squares)(const float *x, size_t n);
    void (*scale_inplace)(float *x, float s, size_t n);
    /* x *= s on a compute-type buffer (activations: the LoRA scale) */
    void (*scale_act)(float *x, float s, size_t n);
} Backend;

const Backend *backend_cpu(void);
/* Built when nvcc was found (RETORT_CUDA); NULL with the error set when no
 * usable GPU is present. */
const Backend *backend_cuda(void);

/* The rest is CUDA builds only (RETORT_CUDA). */

/* The GPU backend_cuda() runs on. The backend reads no launcher variables:
 * dist_init sets this for a data-parallel rank from dist_device_index, the
 * same index its NCCL communicator uses; without a call it is device 0 (one
 * process, tests, benchmarks). Call before the first backend_cuda(). 0, or -1
 * with the error set when the backend already runs on another device. */
int backend_cuda_select_device(int device);
/* Visible CUDA devices, or -1 with the error set naming the CUDA version the
 * driver supports and the runtime's (and, for a driver older than the
 * toolkit, that it needs a newer one). */
int backend_cuda_device_count(void);
/* The stream every kernel of the backend runs on, as a cudaStream_t, for CUDA
 * events in C code (the kernel benchmark); NULL before backend_cuda(). */
void *backend_cuda_stream(void);
/* `retort device`: prints the runtime and driver versions, every visible GPU
 * and, after bringing the backend up, which kernel image ran on the selected
 * one. 0 when the backend works, or -1 with the error set (no device, a driver
 * too old for the toolkit, no kernel image for the GPU's architecture). */
int backend_cuda_probe(FILE *out);
/* Returns NULL and sets the error when the name is unknown or not built in. */
const Backend *backend_by_name(const char *name);

#endif
