/* model/backend_cuda_check.c — what the CUDA backend can run, checked when a
 * model is created on it (gpt_create calls Backend.supports).
 *
 * Plain C on the figures of kernels/cuda/limits.h, which the kernels
 * static_assert against their own geometry: it is built into every binary,
 * with or without CUDA, and tests/test_backend.c exercises it on the CPU. The
 * kernels keep their own checks at launch for direct callers; this one turns
 * a configuration they would stop on at the first step into an error at
 * set-up that names the limit, the config field and the fix.
 *
 * Refused:
 *   - n_head not a multiple of n_kv_head (grouped-query attention);
 *   - head size (head_dim, or n_embd / n_head when head_dim is 0) above the
 *     attention kernels' 128 (the decode kernel takes 256);
 *   - a head size whose attention tiles need more shared memory per block
 *     than the device offers (HS 65..128 on compute capability 8.6 and 8.9);
 *   - n_positions above 65535 query tiles of 64 (the grid's y dimension);
 *   - a vocabulary whose top-K distillation support bitmap does not fit the
 *     device's shared memory (about 1.3M tokens on an A100).
 */
#include "kernels/cuda/limits.h"
#include "model/backend.h"
#include "model/model.h"
#include "util/util.h"

/* The attention tile width for head size HS: the smallest of 16, 32, 64, 128
 * that holds it (kernels/cuda/attention.cu). */
static int attention_tile_width(int HS) {
    return HS <= 16 ? 16 : HS <= 32 ? 32 : HS <= 64 ? 64 : 128;
}

/* Shared memory per block of the largest attention kernel at tile width HSP. */
static long attention_smem(int HSP) {
    long fwd = CUDA_ATT_FWD_SMEM(HSP), bwd = CUDA_ATT_BWD_SMEM(HSP), dq = CUDA_ATT_DQ_SMEM(HSP);
    long most = fwd > bwd ? fwd : bwd;
    return most > dq ? most : dq;
}

/* The fewest heads above n_head that divide n_embd into heads of at most
 * max_hs channels. */
static int heads_for(const GPTConfig *c, int max_hs) {
    for (int h = c->n_head + 1; h < c->n_embd; h++)
        if (c->n_embd % h == 0 && c->n_embd / h <= max_hs) return h;
    return c->n_embd;
}

/* The head counts: n_head query heads share n_kv_head key/value heads, so each
 * kv head serves n_head / n_kv_head of them (0: n_head, no grouping). */
static int check_kv_heads(const GPTConfig *c) {
    int KVH = c->n_kv_head ? c->n_kv_head : c->n_head;
    if (KVH >= 1 && c->n_head % KVH == 0) return 0;
    return err_set("model.n_head %d is not a multiple of model.n_kv_head %d: grouped-query "
                   "attention gives each key/value head n_head / n_kv_head query heads; set "
                   "model.n_kv_head to a divisor of n_head (or 0 for one per query head)",
                   c->n_head, c->n_kv_head);
}

/* The head size when model.head_dim sets it: the message names that field,
 * and there is no head count to suggest. */
static int check_head_dim(const GPTConfig *c, int smem_optin) {
    int HS = c->head_dim;
    int max_hs = CUDA_ATT_MAX_HS < CUDA_DECODE_MAX_HS ? CUDA_ATT_MAX_HS : CUDA_DECODE_MAX_HS;
    if (HS > max_hs)
        return err_set("model.head_dim %d is a head size the CUDA attention kernels "
                       "(kernels/cuda/attention.cu) do not handle: they take head sizes up to "
                       "%d; use --device cpu",
                       HS, max_hs);
    if (smem_optin <= 0) return 0;
    int HSP = attention_tile_width(HS);
    long need = attention_smem(HSP);
    if (need <= smem_optin) return 0;
    return err_set("model.head_dim %d is a head size which the CUDA attention kernels "
                   "(kernels/cuda/attention.cu) run in %d-wide tiles needing %ld bytes of shared "
                   "memory per block; this GPU offers %d: use a GPU with more shared memory, or "
                   "use --device cpu",
                   HS, HSP, need, smem_optin);
}

static int check_head_size(const GPTConfig *c, int smem_optin) {
    if (c->head_dim != 0) return check_head_dim(c, smem_optin);
    int HS = c->n_embd / c->n_head;
    int max_hs = CUDA_ATT_MAX_HS < CUDA_DECODE_MAX_HS ? CUDA_ATT_MAX_HS : CUDA_DECODE_MAX_HS;
    if (HS > max_hs)
        return err_set("model.n_embd %d / model.n_head %d is a head size of %d; the CUDA "
                       "attention kernels (kernels/cuda/attention.cu) handle head sizes up to "
                       "%d: set model.n_head to %d or more (a divisor of n_embd), or use "
                       "--device cpu",
                       c->n_embd, c->n_head, HS, max_hs, heads_for(c, max_hs));
    if (smem_optin <= 0) return 0;
    int HSP = attention_tile_width(HS);
    long need = attention_smem(HSP);
    if (need <= smem_optin) return 0;
    int fits = 0; /* the widest tile this device can hold */
    for (int w = 16; w <= CUDA_ATT_MAX_HS; w *= 2)
        if (attention_smem(w) <= smem_optin) fits = w;
    if (fits == 0)
        return err_set("the CUDA attention kernels need %ld bytes of shared memory per block "
                       "even at head size 16, and this GPU offers %d; use --device cpu",
                       attention_smem(16), smem_optin);
    return err_set("model.n_embd %d / model.n_head %d is a head size of %d, which the CUDA "
                   "attention kernels (kernels/cuda/attention.cu) run in %d-wide tiles needing "
                   "%ld bytes of shared memory per block; this GPU offers %d, enough for head "
                   "sizes up to %d: set model.n_head to %d or more (a divisor of n_embd), use a "
                   "GPU with more shared memory, or use --device cpu",
                   c->n_embd, c->n_head, HS, HSP, need, smem_optin, fits, heads_for(c, fits));
}

static int check_positions(const GPTConfig *c) {
    if (c->n_positions <= CUDA_ATT_MAX_T) return 0;
    return err_set("model.n_positions %d is more than the CUDA attention kernels can launch "
                   "for one sequence: %ld (%d tiles of %d queries, the grid's y limit); lower "
                   "model.n_positions, or use --device cpu",
                   c->n_positions, (long)CUDA_ATT_MAX_T, CUDA_MAX_GRID_Y, CUDA_ATT_TILE);
}

static int check_vocabulary(const GPTConfig *c, int smem_optin) {
    if (smem_optin <= 0) return 0;
    long need = CUDA_KD_BITMAP_BYTES(c->vocab_size) + CUDA_KD_STATIC_SMEM;
    if (need <= smem_optin) return 0;
    long max_v = (smem_optin - CUDA_KD_STATIC_SMEM) / 4 * 32;
    return err_set("model.vocab_size %d is too large for the CUDA top-K distillation kernels "
                   "(kernels/cuda/classifier_kd.cu), which keep a bit per token of a row in "
                   "shared memory: %ld bytes per block with their reductions, and this GPU "
                   "offers %d, enough for %ld tokens; use a smaller vocabulary, or use "
                   "--device cpu",
                   c->vocab_size, need, smem_optin, max_v);
}

int backend_cuda_check(const GPTConfig *cfg, int smem_optin) {
    if (gpt_config_check(cfg) != 0) return -1;
    if (check_kv_heads(cfg) != 0) return -1;
    if (check_head_size(cfg, smem_optin) != 0) return -1;
    if (check_positions(cfg) != 0) return -1;
    return check_vocabulary(cfg, smem_optin);
}
