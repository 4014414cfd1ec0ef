/* kernels/cuda/ops_cuda.h — the CUDA twins of kernels/ops.h.
 *
 * Generated from the op list of kernels/ops.h: every op's name with a _cuda
 * suffix, the same arguments and shapes as the CPU op, so one is read against
 * the other and neither can drift. Plain C declarations: the CUDA backend
 * (model/backend_cuda.cu) puts them into its Backend table and the tests call
 * them through it. float* arguments that hold compute-type data (everything
 * the op list documents as a tensor of the model) point to bf16 on the device;
 * the fp32 side buffers (mean, rstd, lse, logp, g, m, v, master) are fp32, and
 * so are the weight gradients (dweight, dbias, dwte, dwpe, adamw's grad,
 * sum_squares and scale_inplace: model/backend.h), while activation gradients
 * (dinp, dqkv, ...) are bf16. All run asynchronously on retort_stream, except
 * encoder_backward_cuda without inp_host (it downloads the ids) and
 * sum_squares_cuda (it returns a host value).
 */
#ifndef RETORT_OPS_CUDA_H
#define RETORT_OPS_CUDA_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define OP(ret, name, params) ret name##_cuda params;
#include "kernels/ops.h"
#undef OP

/* conversions between host fp32 and device bf16 */
void upload_f32_cuda(float *dst, const float *host, size_t n);
void download_f32_cuda(float *host, const float *src, size_t n);

#ifdef __cplusplus
}
#endif

#endif
