/* model/backend_cpu.c — the CPU backend: host memory and the fp32 reference
 * ops of kernels/cpu. "Device" memory is ordinary 64-byte aligned host memory,
 * so the copies are memcpy. */
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"
#include "model/backend.h"
#include "util/util.h"

static void *cpu_alloc(size_t bytes) {
    void *p = NULL;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (posix_memalign(&p, 64, rounded ? rounded : 64) != 0) {
        err_set("out of host memory allocating %zu bytes", bytes);
        return NULL;
    }
    memset(p, 0, rounded);
    return p;
}

static void cpu_release(void *p) { free(p); }
static void cpu_copy(void *dst, const void *src, size_t bytes) { memcpy(dst, src, bytes); }
static void cpu_zero(void *p, size_t bytes) { memset(p, 0, bytes); }
static void cpu_synchronize(void) {}
static void cpu_upload_f32(float *dst, const float *host, size_t n) {
    memcpy(dst, host, n * sizeof(float));
}
static void cpu_download_f32(float *host, const float *src, size_t n) {
    memcpy(host, src, n * sizeof(float));
}
/* host ids are the ids on the CPU */
static void cpu_encoder_backward(float *dwte, float *dwpe, const float *dout, const int *inp,
                                 const int *inp_host, int B, int T, int C) {
    (void)inp_host;
    encoder_backward(dwte, dwpe, dout, inp, B, T, C);
}
/* fp32 parameters are their own master weights */
static void cpu_adamw(float *param, float *master, const float *grad, float *m, float *v,
                      size_t n, double lr, double beta1, double beta2, double eps, double wd,
                      int step) {
    (void)master;
    adamw_update(param, grad, m, v, n, lr, beta1, beta2, eps, wd, step);
}

static const Backend CPU = {
    .name = "cpu",
    .act_size = sizeof(float),
    .alloc = cpu_alloc,
    .release = cpu_release,
    .to_device = cpu_copy,
    .to_host = cpu_copy,
    .zero = cpu_zero,
    .synchronize = cpu_synchronize,
    .upload_f32 = cpu_upload_f32,
    .download_f32 = cpu_download_f32,
    .encoder_forward = encoder_forward,
    .encoder_backward = cpu_encoder_backward,
    .layernorm_forward = layernorm_forward,
    .layernorm_backward = layernorm_backward,
    .matmul_forward = matmul_forward,
    .matmul_backward = matmul_backward,
    .lm_head_forward = lm_head_forward,
    .lm_head_backward = lm_head_backward,
    .attention_forward = attention_forward,
    .attention_backward = attention_backward,
    .attention_decode = attention_decode,
    .gelu_forward = gelu_forward,
    .gelu_backward = gelu_backward,
    .residual_forward = residual_forward,
    .classifier_forward = classifier_forward,
    .classifier_backward = classifier_backward,
    .classifier_kd_forward = classifier_kd_forward,
    .classifier_kd_backward = classifier_kd_backward,
    .classifier_kd_topk_forward = classifier_kd_topk_forward,
    .classifier_kd_topk_backward = classifier_kd_topk_backward,
    .adamw_update = cpu_adamw,
    .sum_squares = sum_squares,
    .scale_inplace = scale_inplace,
    .scale_act = scale_inplace, /* the compute type is fp32 */
};

const Backend *backend_cpu(void) { return &CPU; }

const Backend *backend_by_name(const char *name) {
    if (!strcmp(name, "cpu")) return &CPU;
    if (!strcmp(name, "cuda")) {
#ifdef RETORT_CUDA
        return backend_cuda();
#else
        err_set("device 'cuda' is not built into this binary (nvcc was not found when it was "
                "built); rebuild on a machine with the CUDA toolkit, or use --device cpu");
        return NULL;
#endif
    }
    err_set("unknown device '%s'; choose cpu or cuda", name);
    return NULL;
}
