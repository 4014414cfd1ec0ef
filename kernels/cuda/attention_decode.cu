/* kernels/cuda/attention_decode.cu — causal attention over a key/value cache,
 * for generation (the twin of kernels/cpu/attention_decode.c).
 *
 * Two launches: the first stores the new tokens' k and v into the caches (so
 * that every query of the second launch sees all of them, whichever block
 * computes it); the second gives one block of 128 threads to each (row, head,
 * new query): scores for keys 0..pos+i into shared memory, a block max and
 * sum, then each thread owns output channels. Decoding reads the whole cache
 * once per token, so this is bandwidth-bound and simple on purpose. */
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops_cuda.h"

#define DECODE_THREADS 128

__global__ static void store_kv_kernel(floatX *kc, floatX *vc, const floatX *qkv, int B, int n,
                                       int pos, int C, int NH, int maxT) {
    int HS = C / NH;
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t total = (size_t)B * n * C;
    if (idx >= total) return;
    int c = (int)(idx % C), i = (int)(idx / C % n), b = (int)(idx / C / n);
    int h = c / HS, d = c % HS;
    const floatX *row = qkv + ((size_t)b * n + i) * 3 * C;
    size_t at = (((size_t)b * NH + h) * maxT + pos + i) * HS + d;
    kc[at] = row[C + c];
    vc[at] = row[2 * C + c];
}

__global__ static void decode_kernel(floatX *out, const floatX *kc, const floatX *vc,
                                     const floatX *qkv, int n, int pos, int C, int NH, int maxT) {
    extern __shared__ float p[]; /* (pos + n) scores, then 32 reduction slots */
    int HS = C / NH;
    int h = blockIdx.x % NH, b = blockIdx.x / NH, i = blockIdx.y;
    int keys = pos + i + 1;
    float *red = p + pos + n;
    const floatX *q = qkv + ((size_t)b * n + i) * 3 * C + h * HS;
    const floatX *K = kc + ((size_t)b * NH + h) * maxT * HS;
    const floatX *V = vc + ((size_t)b * NH + h) * maxT * HS;
    float scale = rsqrtf((float)HS);
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < keys; j += blockDim.x) {
        float s = 0.0f;
        for (int d = 0; d < HS; d++)
            s += __bfloat162float(q[d]) * __bfloat162float(K[(size_t)j * HS + d]);
        p[j] = s * scale;
        mx = fmaxf(mx, p[j]);
    }
    /* block max */
    mx = warp_max(mx);
    if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = mx;
    __syncthreads();
    mx = red[0];
    for (int w = 1; w < (int)blockDim.x / 32; w++) mx = fmaxf(mx, red[w]);
    __syncthreads();
    float sum = 0.0f;
    for (int j = threadIdx.x; j < keys; j += blockDim.x) sum += (p[j] = __expf(p[j] - mx));
    sum = warp_sum(sum);
    if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = sum;
    __syncthreads();
    sum = 0.0f;
    for (int w = 0; w < (int)blockDim.x / 32; w++) sum += red[w];
    for (int d = threadIdx.x; d < HS; d += blockDim.x) {
        float acc = 0.0f;
        for (int j = 0; j < keys; j++) acc += p[j] * __bfloat162float(V[(size_t)j * HS + d]);
        out[((size_t)b * n + i) * C + h * HS + d] = __float2bfloat16_rn(acc / sum);
    }
}

extern "C" void attention_decode_cuda(float *out, float *kcache, float *vcache, const float *qkv,
                                      int B, int n, int pos, int C, int NH, int maxT) {
    size_t total = (size_t)B * n * C;
    store_kv_kernel<<<ceil_div((long)total, 256), 256, 0, retort_stream>>>(
        (floatX *)kcache, (floatX *)vcache, (const floatX *)qkv, B, n, pos, C, NH, maxT);
    CUDA_LAUNCH_CHECK();
    size_t smem = (size_t)(pos + n + 32) * sizeof(float);
    if (smem > 48 * 1024) {
        fprintf(stderr, "retort: attention_decode_cuda: context of %d tokens needs %zu bytes of "
                        "shared memory (limit 48 KB)\n", pos + n, smem);
        exit(1);
    }
    dim3 grid(B * NH, n);
    decode_kernel<<<grid, DECODE_THREADS, smem, retort_stream>>>(
        (floatX *)out, (const floatX *)kcache, (const floatX *)vcache, (const floatX *)qkv, n, pos,
        C, NH, maxT);
    CUDA_LAUNCH_CHECK();
}
