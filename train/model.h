/* train/model.h — the GPT-2 model, written once against the backend interface.
 *
 * Parameters live in one flat allocation, one contiguous tensor per Hugging Face
 * parameter name (wte.weight, h.0.attn.c_attn.weight, ...), in HF's own layout,
 * so a checkpoint is a list of (name, offset, shape) and needs no transposes.
 * Gradients mirror parameters in a second allocation; activations are a third.
 */
#ifndef RETORT_MODEL_H
#define RETORT_MODEL_H

#include <stddef.h>
#include <stdint.h>

struct Backend;

typedef struct {
    int n_layer;
    int n_head;
    int n_embd;
    int vocab_size;
    int n_positions;
    float layer_norm_epsilon;
} GPTConfig;

#define GPT_MAX_PARAM_TENSORS 4096
#define GPT_PARAM_NAME_LEN 64

typedef struct {
    char name[GPT_PARAM_NAME_LEN]; /* HF name without the "transformer." prefix */
    size_t offset;                 /* elements from the start of the flat buffer */
    size_t numel;
    int ndim;
    int shape[2];
    int decay;                     /* 1: 2-D weight, gets weight decay */
} ParamInfo;

typedef struct GPT GPT;

/* Checks the config (positive sizes, n_embd divisible by n_head) and sets the
 * error with the offending field on failure. */
int gpt_config_check(const GPTConfig *cfg);

/* Builds the parameter table and allocates parameters and gradients on the
 * backend. Activations are allocated lazily for the largest (B, T) seen. */
GPT *gpt_create(const GPTConfig *cfg, const struct Backend *be);
void gpt_free(GPT *m);

const GPTConfig *gpt_config(const GPT *m);
const struct Backend *gpt_backend(const GPT *m);
int gpt_num_tensors(const GPT *m);
const ParamInfo *gpt_tensor(const GPT *m, int i);
const ParamInfo *gpt_find_tensor(const GPT *m, const char *name);
size_t gpt_num_params(const GPT *m);
float *gpt_params(GPT *m);    /* backend memory */
float *gpt_grads(GPT *m);     /* backend memory */

/* GPT-2 initialisation: N(0, 0.02) weights, residual projections scaled by
 * 1/sqrt(2 L), zero biases, unit layernorm gains. Deterministic from seed. */
void gpt_init_random(GPT *m, uint64_t seed);

/* Forward pass over (B,T) token ids (host memory). targets (host, -1 = none)
 * select which log-probabilities are returned in logp_out (host, B*T floats).
 * Keeps what backward needs. */
void gpt_forward(GPT *m, const int *inputs, const int *targets, int B, int T,
                 float *logp_out);

/* Full logits of the last forward, (B,T,V), copied to host (for generation and
 * tests). Only valid right after gpt_forward and before gpt_backward. */
void gpt_logits(GPT *m, float *out);

/* Backward from per-token weights g = dLoss/dlogp (host, B*T floats), for the
 * (B,T) of the last forward. Accumulates into the gradients. */
void gpt_backward(GPT *m, const float *g);

void gpt_zero_grad(GPT *m);

/* Incremental decoding with a key/value cache (generation). Feeds n new tokens
 * per row (B,n) (host) at positions pos .. pos+n-1 of rows whose earlier
 * positions were fed by previous calls (pos = 0 starts new rows, e.g. the
 * prompt), and writes the logits of each row's last new token to
 * logits_out (B,V) (host). pos + n must not exceed n_positions. The cache is
 * allocated on first use for B rows. Invalidates the training activations. */
void gpt_decode(GPT *m, const int *tokens, int B, int n, int pos, float *logits_out);

/* Reorders the key/value cache rows for beam search: row b of the cache
 * becomes old row src[b], for positions 0 .. len-1 (B rows). */
void gpt_kv_reorder(GPT *m, const int *src, int B, int len);

/* Host copies of the flat parameter / gradient buffers (n floats, the extent
 * of the tensor table including alignment padding). */
size_t gpt_flat_size(const GPT *m);
void gpt_copy_params_to_host(GPT *m, float *host, size_t n);
void gpt_copy_params_to_device(GPT *m, const float *host, size_t n);
void gpt_copy_grads_to_host(GPT *m, float *host, size_t n);

#endif
