/* kernels/cuda/classifier_kd.cu — word-level knowledge distillation inside the
 * fused classifier, on bf16 logits: the per-row generalized JSD (TRL's
 * GKDTrainer.generalized_jsd_loss, see kernels/ops.h) forward, and its gradient
 * added to the cross-entropy dlogits in place; the twin of
 * kernels/cpu/classifier_kd.c, read one against the other.
 *
 * One block per row. Each pass reads the row with a block-stride loop (element
 * j always by the same thread, so the final in-place write never races with a
 * read), and every row statistic is a block reduction broadcast to all
 * threads: tempered log-sum-exps as online (max, sum) pairs in fp32 (the
 * online softmax of reduce.cuh, as in classifier.cu), argmaxes as (value,
 * index) pairs with ties to the lowest index, and the divergence and
 * sum_j s_j a_j accumulated per thread and across the block in double, in a
 * fixed tree (deterministic). Per-element math is
 * fp32 in log space (u_j - lse), so underflowing probabilities keep finite logs
 * and 0 log 0 terms are skipped, as on the CPU.
 *
 * Top-K: the support of a row is marked in a bitmap of V bits in dynamic shared
 * memory (6.3 KB for GPT-2's 50257), so the remainder sums and the write pass
 * test membership in O(1); support tokens are then written by a second loop
 * over the K stored entries, which knows each token's teacher log-prob. A
 * duplicate or out-of-range id, which the CPU twin asserts on, makes the row's
 * kd and dlogits NaN here, as does a target >= V.
 *
 * Rows are Vp apart (the padded vocabulary, kernels/ops.h); only the V real
 * columns are read, and backward writes zeros into the padded ones.
 *
 * Loads are scalar bf16 (coalesced across the warp); the vectorised row split
 * of classifier.cu is not used here yet.
 */
#include <float.h>
#include <limits.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/cuda/reduce.cuh"

#define KD_BLOCK 512

enum { KD_FORWARD_KL = 0, KD_REVERSE_KL = 1, KD_MIXTURE = 2 };

/* the temperature tau, beta and its logs, computed once on the host */
struct KdParams {
    int mode;
    float tau, beta, log_beta, log1m_beta;
};

static KdParams kd_params(float temperature, float beta) {
    KdParams p;
    p.mode = beta == 0.0f ? KD_FORWARD_KL : beta == 1.0f ? KD_REVERSE_KL : KD_MIXTURE;
    p.tau = temperature;
    p.beta = beta;
    p.log_beta = logf(beta);
    p.log1m_beta = log1pf(-beta);
    return p;
}

/* ---------------------------------------------------------------- math, as on the CPU */

static __device__ __forceinline__ float log_add_exp(float a, float b) {
    float m = fmaxf(a, b);
    if (m == -INFINITY) return -INFINITY;
    return m + log1pf(expf(-fabsf(a - b)));
}

/* p (log p - log q), 0 log 0 = 0 */
static __device__ __forceinline__ float xlogx_ratio(float log_p, float log_q) {
    return log_p == -INFINITY ? 0.0f : expf(log_p) * (log_p - log_q);
}

static __device__ __forceinline__ float log_mixture(const KdParams &k, float log_s, float log_t) {
    return log_add_exp(k.log_beta + log_t, k.log1m_beta + log_s);
}

static __device__ __forceinline__ float kd_term(const KdParams &k, float log_s, float log_t) {
    if (k.mode == KD_FORWARD_KL) return xlogx_ratio(log_t, log_s);
    if (k.mode == KD_REVERSE_KL) return xlogx_ratio(log_s, log_t);
    float log_m = log_mixture(k, log_s, log_t);
    return k.beta * xlogx_ratio(log_t, log_m) + (1.0f - k.beta) * xlogx_ratio(log_s, log_m);
}

/* a = dD/ds up to a constant (reverse KL, mixture) */
static __device__ __forceinline__ float kd_score(const KdParams &k, float log_s, float log_t) {
    if (k.mode == KD_REVERSE_KL) return log_s - log_t;
    return (1.0f - k.beta) * (log_s - log_mixture(k, log_s, log_t));
}

static __device__ __forceinline__ float weighted_score(const KdParams &k, float log_s,
                                                       float log_t) {
    return log_s == -INFINITY ? 0.0f : expf(log_s) * kd_score(k, log_s, log_t);
}

/* ---------------------------------------------------------------- block reductions
 * All threads call them and all get the result; the trailing barrier lets the
 * shared slots be reused by the next call. blockDim.x is a multiple of 32. */

/* log sum exp from per-thread (max, sum) pairs (online_add, reduce.cuh); -inf
 * when every sum is 0 */
static __device__ float block_lse(float m, float s) {
    __shared__ float sm[32], ss[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    warp_online_merge(m, s);
    if (lane == 0) sm[warp] = m, ss[warp] = s;
    __syncthreads();
    if (warp == 0) {
        m = lane < n_warps ? sm[lane] : -FLT_MAX;
        s = lane < n_warps ? ss[lane] : 0.0f;
        warp_online_merge(m, s);
        if (lane == 0) sm[0] = m, ss[0] = s;
    }
    __syncthreads();
    float r = sm[0] + logf(ss[0]);
    __syncthreads();
    return r;
}

static __device__ double block_sum(double v) {
    __shared__ double sv[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    v = warp_sum_double(v);
    if (lane == 0) sv[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = warp_sum_double(lane < n_warps ? sv[lane] : 0.0);
        if (lane == 0) sv[0] = v;
    }
    __syncthreads();
    double r = sv[0];
    __syncthreads();
    return r;
}

/* the key with the largest value, ties to the smallest key */
static __device__ __forceinline__ void argmax_merge(float &v, int &key, float v2, int key2) {
    if (v2 > v || (v2 == v && key2 < key)) v = v2, key = key2;
}

static __device__ int block_argmax(float v, int key) {
    __shared__ float sv[32];
    __shared__ int sk[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1)
        argmax_merge(v, key, __shfl_xor_sync(0xffffffffu, v, o),
                     __shfl_xor_sync(0xffffffffu, key, o));
    if (lane == 0) sv[warp] = v, sk[warp] = key;
    __syncthreads();
    if (warp == 0) {
        v = lane < n_warps ? sv[lane] : -INFINITY;
        key = lane < n_warps ? sk[lane] : INT_MAX;
        for (int o = 16; o > 0; o >>= 1)
            argmax_merge(v, key, __shfl_xor_sync(0xffffffffu, v, o),
                         __shfl_xor_sync(0xffffffffu, key, o));
        if (lane == 0) sk[0] = key;
    }
    __syncthreads();
    int r = sk[0];
    __syncthreads();
    return r;
}

/* classifier_backward's element: g (1[j == t] - p), p = exp(x - lse) */
static __device__ __forceinline__ float ce_grad(float x, int j, int t, float g, float l) {
    float p = expf(x - l);
    return j == t ? g * (1.0f - p) : -g * p;
}

static __device__ void fill_row(floatX *x, int V, float value) {
    for (int j = threadIdx.x; j < V; j += blockDim.x) x[j] = float_to_bf16(value);
}

/* the padded columns V..Vp-1 of a dlogits row are 0 (kernels/ops.h) */
static __device__ void zero_padding(floatX *x, int V, int Vp) {
    for (int j = V + threadIdx.x; j < Vp; j += blockDim.x) x[j] = float_to_bf16(0.0f);
}

/* A host-side contract violation of an entry point: say which and stop. */
static void kd_refuse(const char *op, const char *what, int value) {
    fprintf(stderr, "retort: %s: %s (got %d); this is a bug in the caller, which must check "
                    "its teacher data first\n", op, what, value);
    exit(1);
}

/* ---------------------------------------------------------------- online */

/* log sum_j exp(x_j / tau) and argmax_j x_j of one bf16 row */
static __device__ float row_tempered_lse(const floatX *x, int V, float tau, int *argmax) {
    float m = -FLT_MAX, s = 0.0f, best = -INFINITY;
    int best_j = INT_MAX;
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
        float v = bf16_to_float(x[j]);
        online_add(m, s, v / tau);
        argmax_merge(best, best_j, v, j);
    }
    if (argmax) *argmax = block_argmax(best, best_j);
    return block_lse(m, s);
}

__global__ static void __launch_bounds__(KD_BLOCK)
    classifier_kd_forward_kernel(float *kd, float *agree, const floatX *logits,
                                 const floatX *teacher_logits, const int *targets, int V,
                                 int Vp, KdParams k) {
    int i = blockIdx.x;
    int t = targets[i];
    if (t < 0 || t >= V) {
        if (threadIdx.x == 0) kd[i] = agree[i] = t < 0 ? 0.0f : NAN;
        return;
    }
    const floatX *z = logits + (size_t)i * Vp;          /* (V) of (Vp) */
    const floatX *zt = teacher_logits + (size_t)i * Vp; /* (V) of (Vp) */
    int arg_s, arg_t;
    float lse_s = row_tempered_lse(z, V, k.tau, &arg_s);
    float lse_t = row_tempered_lse(zt, V, k.tau, &arg_t);
    double d = 0.0;
    for (int j = threadIdx.x; j < V; j += blockDim.x)
        d += kd_term(k, bf16_to_float(z[j]) / k.tau - lse_s,
                     bf16_to_float(zt[j]) / k.tau - lse_t);
    d = block_sum(d);
    if (threadIdx.x == 0) {
        kd[i] = (float)d;
        agree[i] = arg_s == arg_t ? 1.0f : 0.0f;
    }
}

__global__ static void __launch_bounds__(KD_BLOCK)
    classifier_kd_backward_kernel(floatX *logits, const float *lse, const int *targets,
                                  const float *g, const floatX *teacher_logits, const float *w,
                                  int V, int Vp, KdParams k) {
    int i = blockIdx.x;
    floatX *x = logits + (size_t)i * Vp;                /* (Vp) in: logits, out: dlogits */
    const floatX *zt = teacher_logits + (size_t)i * Vp; /* (V) of (Vp) */
    zero_padding(x, V, Vp);
    int t = targets[i];
    float gi = g[i], wi = w[i], l = lse[i];
    if (t < 0 || t >= V || (gi == 0.0f && wi == 0.0f)) {
        fill_row(x, V, t >= V ? NAN : 0.0f);
        return;
    }
    if (wi == 0.0f) {
        for (int j = threadIdx.x; j < V; j += blockDim.x)
            x[j] = float_to_bf16(ce_grad(bf16_to_float(x[j]), j, t, gi, l));
        return;
    }
    float lse_s = row_tempered_lse(x, V, k.tau, NULL);
    float lse_t = row_tempered_lse(zt, V, k.tau, NULL);
    float mean_score = 0.0f; /* sum_j s_j a_j */
    if (k.mode != KD_FORWARD_KL) {
        double acc = 0.0;
        for (int j = threadIdx.x; j < V; j += blockDim.x)
            acc += weighted_score(k, bf16_to_float(x[j]) / k.tau - lse_s,
                                  bf16_to_float(zt[j]) / k.tau - lse_t);
        mean_score = (float)block_sum(acc);
    }
    float scale = wi / k.tau;
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
        float v = bf16_to_float(x[j]);
        float log_s = v / k.tau - lse_s, log_t = bf16_to_float(zt[j]) / k.tau - lse_t;
        float s = expf(log_s);
        float dkd = k.mode == KD_FORWARD_KL ? s - expf(log_t)
                                            : s * (kd_score(k, log_s, log_t) - mean_score);
        x[j] = float_to_bf16(ce_grad(v, j, t, gi, l) + scale * dkd);
    }
}

/* ---------------------------------------------------------------- top-K */

struct BucketStats {
    float lse_s;    /* log sum_j exp(z_j / tau), whole row */
    float lse_rem;  /* the same over the non-support, -inf when K == V */
    float log_srem; /* log s_rem */
    float log_z_t;  /* log (sum_k p_k^(1/tau) + r^(1/tau)) */
    float log_qrem; /* log q_rem, -inf when r == 0 */
    int arg_s;      /* argmax of the student row */
    int bad;        /* a duplicate or out-of-range id */
};

static __device__ __forceinline__ bool in_support(const unsigned int *bits, int j) {
    return (bits[j >> 5] >> (j & 31)) & 1u;
}

/* Marks the row's support in bits and computes the bucket statistics. */
static __device__ BucketStats bucket_stats(unsigned int *bits, const floatX *z, const int *ids,
                                           const float *lp, int V, int K, float tau) {
    __shared__ int bad;
    BucketStats b;
    int words = (V + 31) >> 5;
    for (int n = threadIdx.x; n < words; n += blockDim.x) bits[n] = 0u;
    if (threadIdx.x == 0) bad = 0;
    __syncthreads();
    for (int n = threadIdx.x; n < K; n += blockDim.x) {
        int id = ids[n];
        if (id < 0 || id >= V) {
            bad = 1;
            continue;
        }
        unsigned int bit = 1u << (id & 31);
        if (atomicOr(&bits[id >> 5], bit) & bit) bad = 1; /* the id was seen before */
    }
    __syncthreads();
    b.bad = bad;
    /* student: whole row and non-support */
    float m = -FLT_MAX, s = 0.0f, m_rem = -FLT_MAX, s_rem = 0.0f, best = -INFINITY;
    int best_j = INT_MAX;
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
        float v = bf16_to_float(z[j]);
        online_add(m, s, v / tau);
        if (!in_support(bits, j)) online_add(m_rem, s_rem, v / tau);
        argmax_merge(best, best_j, v, j);
    }
    b.arg_s = block_argmax(best, best_j);
    b.lse_s = block_lse(m, s);
    b.lse_rem = K < V ? block_lse(m_rem, s_rem) : -INFINITY;
    b.log_srem = b.lse_rem - b.lse_s;
    /* teacher: mass of the stored tokens, and the tempered normaliser */
    double mass = 0.0;
    float mt = -FLT_MAX, st = 0.0f;
    for (int n = threadIdx.x; n < K; n += blockDim.x) {
        mass += exp((double)lp[n]);
        online_add(mt, st, lp[n] / tau);
    }
    mass = block_sum(mass);
    float lse_k = block_lse(mt, st);
    double r = K < V && mass < 1.0 ? 1.0 - mass : 0.0;
    float log_rem_t = r > 0.0 ? (float)(log(r) / tau) : -INFINITY;
    b.log_z_t = log_add_exp(lse_k, log_rem_t);
    b.log_qrem = log_rem_t - b.log_z_t;
    return b;
}

__global__ static void __launch_bounds__(KD_BLOCK)
    classifier_kd_topk_forward_kernel(float *kd, float *agree, const floatX *logits,
                                      const int *teacher_ids, const float *teacher_logp,
                                      const int *targets, int V, int Vp, int K, KdParams k) {
    extern __shared__ unsigned int support_bits[]; /* (V+31)/32 words */
    int i = blockIdx.x;
    int t = targets[i];
    if (t < 0 || t >= V) {
        if (threadIdx.x == 0) kd[i] = agree[i] = t < 0 ? 0.0f : NAN;
        return;
    }
    const floatX *z = logits + (size_t)i * Vp;       /* (V) of (Vp) */
    const int *ids = teacher_ids + (size_t)i * K;    /* (K) */
    const float *lp = teacher_logp + (size_t)i * K;  /* (K) */
    BucketStats b = bucket_stats(support_bits, z, ids, lp, V, K, k.tau);
    double d = 0.0;
    float best = -INFINITY;
    int best_id = INT_MAX;
    for (int n = threadIdx.x; n < K; n += blockDim.x) {
        int id = ids[n];
        if (id < 0 || id >= V) continue; /* b.bad is set */
        d += kd_term(k, bf16_to_float(z[id]) / k.tau - b.lse_s, lp[n] / k.tau - b.log_z_t);
        argmax_merge(best, best_id, lp[n], id);
    }
    d = block_sum(d);
    int teacher_top = block_argmax(best, best_id);
    if (threadIdx.x == 0) {
        d += kd_term(k, b.log_srem, b.log_qrem);
        kd[i] = b.bad ? NAN : (float)d;
        agree[i] = b.bad ? NAN : b.arg_s == teacher_top ? 1.0f : 0.0f;
    }
}

__global__ static void __launch_bounds__(KD_BLOCK, 2) /* 64 registers: no spill on sm_90 */
    classifier_kd_topk_backward_kernel(floatX *logits, const float *lse, const int *targets,
                                       const float *g, const int *teacher_ids,
                                       const float *teacher_logp, const float *w, int V, int Vp,
                                       int K, KdParams k) {
    extern __shared__ unsigned int support_bits[]; /* (V+31)/32 words */
    int i = blockIdx.x;
    floatX *x = logits + (size_t)i * Vp;             /* (Vp) in: logits, out: dlogits */
    zero_padding(x, V, Vp);
    const int *ids = teacher_ids + (size_t)i * K;    /* (K) */
    const float *lp = teacher_logp + (size_t)i * K;  /* (K) */
    int t = targets[i];
    float gi = g[i], wi = w[i], l = lse[i];
    if (t < 0 || t >= V || (gi == 0.0f && wi == 0.0f)) {
        fill_row(x, V, t >= V ? NAN : 0.0f);
        return;
    }
    if (wi == 0.0f) {
        for (int j = threadIdx.x; j < V; j += blockDim.x)
            x[j] = float_to_bf16(ce_grad(bf16_to_float(x[j]), j, t, gi, l));
        return;
    }
    BucketStats b = bucket_stats(support_bits, x, ids, lp, V, K, k.tau);
    if (b.bad) {
        fill_row(x, V, NAN);
        return;
    }
    float mean_score = 0.0f, rem_score = 0.0f;
    if (k.mode != KD_FORWARD_KL) {
        double acc = 0.0;
        for (int n = threadIdx.x; n < K; n += blockDim.x)
            acc += weighted_score(k, bf16_to_float(x[ids[n]]) / k.tau - b.lse_s,
                                  lp[n] / k.tau - b.log_z_t);
        mean_score = (float)(block_sum(acc) + weighted_score(k, b.log_srem, b.log_qrem));
        rem_score = kd_score(k, b.log_srem, b.log_qrem) - mean_score;
    }
    float scale = wi / k.tau;
    /* the non-support tokens: the remainder bucket's gradient */
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
        if (in_support(support_bits, j)) continue;
        float v = bf16_to_float(x[j]);
        float log_s = v / k.tau - b.lse_s, s = expf(log_s);
        float dkd = k.mode == KD_FORWARD_KL ? s - expf(b.log_qrem + v / k.tau - b.lse_rem)
                                            : s * rem_score;
        x[j] = float_to_bf16(ce_grad(v, j, t, gi, l) + scale * dkd);
    }
    /* the support tokens, each with its teacher log-prob (untouched by the loop above) */
    for (int n = threadIdx.x; n < K; n += blockDim.x) {
        int j = ids[n];
        float v = bf16_to_float(x[j]);
        float log_s = v / k.tau - b.lse_s, log_q = lp[n] / k.tau - b.log_z_t, s = expf(log_s);
        float dkd = k.mode == KD_FORWARD_KL ? s - expf(log_q)
                                            : s * (kd_score(k, log_s, log_q) - mean_score);
        x[j] = float_to_bf16(ce_grad(v, j, t, gi, l) + scale * dkd);
    }
}

/* ---------------------------------------------------------------- entry points */

/* Dynamic shared memory for a V-bit support bitmap, raising the kernel's limit
 * past the default 48 KB when the vocabulary needs it (V > 393216). */
static size_t support_bitmap_bytes(const void *kernel, int V) {
    size_t bytes = (size_t)((V + 31) / 32) * sizeof(unsigned int);
    if (bytes > 48 * 1024)
        CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)bytes));
    return bytes;
}

extern "C" void classifier_kd_forward_cuda(float *kd, float *agree, const float *logits_f,
                                           const float *teacher_f, const int *targets, int N,
                                           int V, int Vp, float temperature, float beta) {
    if (N <= 0 || V <= 0) return;
    const floatX *logits = reinterpret_cast<const floatX *>(logits_f);   /* (N,Vp) */
    const floatX *teacher = reinterpret_cast<const floatX *>(teacher_f); /* (N,Vp) */
    /* kd (N), agree (N) fp32; targets (N) int32 */
    classifier_kd_forward_kernel<<<N, KD_BLOCK, 0, retort_stream>>>(
        kd, agree, logits, teacher, targets, V, Vp, kd_params(temperature, beta));
    CUDA_LAUNCH_CHECK();
}

extern "C" void classifier_kd_backward_cuda(float *logits_f, const float *lse, const int *targets,
                                            const float *g, const float *teacher_f,
                                            const float *w, int N, int V, int Vp,
                                            float temperature, float beta) {
    if (!w) {
        classifier_backward_cuda(logits_f, lse, targets, g, N, V, Vp);
        return;
    }
    if (N <= 0 || V <= 0) return;
    floatX *logits = reinterpret_cast<floatX *>(logits_f);               /* (N,Vp) in/out */
    const floatX *teacher = reinterpret_cast<const floatX *>(teacher_f); /* (N,Vp) */
    /* lse, g, w (N) fp32; targets (N) int32 */
    classifier_kd_backward_kernel<<<N, KD_BLOCK, 0, retort_stream>>>(
        logits, lse, targets, g, teacher, w, V, Vp, kd_params(temperature, beta));
    CUDA_LAUNCH_CHECK();
}

extern "C" void classifier_kd_topk_forward_cuda(float *kd, float *agree, const float *logits_f,
                                                const int *teacher_ids, const float *teacher_logp,
                                                const int *targets, int N, int V, int Vp, int K,
                                                float temperature, float beta) {
    if (N <= 0 || V <= 0) return;
    if (K < 1 || K > V) kd_refuse("classifier_kd_topk_forward_cuda", "K must be in [1, V]", K);
    const floatX *logits = reinterpret_cast<const floatX *>(logits_f); /* (N,Vp) */
    /* teacher_ids (N,K) int32, teacher_logp (N,K) fp32; kd, agree (N) fp32 */
    size_t smem = support_bitmap_bytes((const void *)classifier_kd_topk_forward_kernel, V);
    classifier_kd_topk_forward_kernel<<<N, KD_BLOCK, smem, retort_stream>>>(
        kd, agree, logits, teacher_ids, teacher_logp, targets, V, Vp, K,
        kd_params(temperature, beta));
    CUDA_LAUNCH_CHECK();
}

extern "C" void classifier_kd_topk_backward_cuda(float *logits_f, const float *lse,
                                                 const int *targets, const float *g,
                                                 const int *teacher_ids,
                                                 const float *teacher_logp, const float *w, int N,
                                                 int V, int Vp, int K, float temperature,
                                                 float beta) {
    if (!w) {
        classifier_backward_cuda(logits_f, lse, targets, g, N, V, Vp);
        return;
    }
    if (N <= 0 || V <= 0) return;
    if (K < 1 || K > V) kd_refuse("classifier_kd_topk_backward_cuda", "K must be in [1, V]", K);
    floatX *logits = reinterpret_cast<floatX *>(logits_f); /* (N,Vp) in/out */
    size_t smem = support_bitmap_bytes((const void *)classifier_kd_topk_backward_kernel, V);
    classifier_kd_topk_backward_kernel<<<N, KD_BLOCK, smem, retort_stream>>>(
        logits, lse, targets, g, teacher_ids, teacher_logp, w, V, Vp, K,
        kd_params(temperature, beta));
    CUDA_LAUNCH_CHECK();
}
