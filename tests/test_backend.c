/* tests/test_backend.c — the backend contract, on the CPU: the tables the op
 * list of kernels/ops.h generates, and the capability check that refuses at
 * set-up what the CUDA kernels cannot run (backend_cuda_check, a pure
 * function: it needs neither CUDA nor a GPU, so it is tested here).
 *
 * Shared memory figures: 166,912 bytes per block is an A100's opt-in limit,
 * 232,448 an H100's, 101,376 that of compute capability 8.6 / 8.9 (where the
 * 128-wide attention tiles, 123,392 bytes in backward, do not fit). */
#include <criterion/criterion.h>
#include <string.h>

#include "kernels/cuda/limits.h"
#include "kernels/ops.h"
#include "model/backend.h"
#include "model/model.h"
#include "util/util.h"

#define SMEM_A100 166912
#define SMEM_H100 232448
#define SMEM_SM86 101376

static GPTConfig config(int n_embd, int n_head) {
    GPTConfig c = {.n_layer = 2, .n_head = n_head, .n_embd = n_embd, .vocab_size = 515,
                   .n_positions = 128, .layer_norm_epsilon = 1e-5f, .vocab_pad = 0};
    return c;
}

/* every message must name what was wrong, the field to change and the fix */
static void expect_refused(const GPTConfig *c, int smem, const char *const *words, int n_words) {
    cr_assert_eq(backend_cuda_check(c, smem), -1, "n_embd %d n_head %d V %d accepted", c->n_embd,
                 c->n_head, c->vocab_size);
    for (int i = 0; i < n_words; i++)
        cr_expect(strstr(err_msg(), words[i]), "the message lacks \"%s\": %s", words[i],
                  err_msg());
}

Test(backend, cpu_table_has_every_op) {
    const Backend *b = backend_cpu();
#define OP(ret, name, params) cr_expect(b->name != NULL, "cpu op %s is missing", #name);
#include "kernels/ops.h"
#undef OP
    cr_expect(b->supports != NULL && b->shutdown != NULL);
    /* the CPU table holds the reference kernels themselves */
    cr_expect(b->attention_forward == attention_forward);
    cr_expect(b->adamw_update == adamw_update);
    cr_expect(b->scale_act == scale_act);
}

Test(backend, cpu_runs_any_head_size) {
    GPTConfig c = config(1280, 8); /* head size 160 */
    cr_expect_eq(backend_cpu()->supports(&c), 0, "%s", err_msg());
    backend_cpu()->shutdown(); /* nothing cached: a no-op that must not crash */
}

Test(backend, cuda_refuses_head_size_over_128) {
    GPTConfig c = config(1280, 8); /* head size 160 */
    const char *words[] = {"head size of 160", "up to 128", "model.n_head", "10",
                           "kernels/cuda/attention.cu", "--device cpu"};
    expect_refused(&c, SMEM_H100, words, 6);
    /* without a device figure (0) the head-size limit still holds */
    expect_refused(&c, 0, words, 6);
    /* 1280 / 10 = 128: accepted everywhere 128-wide tiles fit */
    GPTConfig ok = config(1280, 10);
    cr_expect_eq(backend_cuda_check(&ok, SMEM_A100), 0, "%s", err_msg());
    cr_expect_eq(backend_cuda_check(&ok, SMEM_H100), 0, "%s", err_msg());
    /* the suggested head count divides n_embd: 1000 / 8 = 125 fits, so a
     * model of head size 200 is told 8 */
    GPTConfig odd = config(1000, 5);
    const char *odd_words[] = {"head size of 200", "to 8 or more"};
    expect_refused(&odd, SMEM_A100, odd_words, 2);
}

Test(backend, cuda_refuses_tiles_the_device_cannot_hold) {
    GPTConfig c = config(768, 6); /* head size 128: backward needs 123,392 bytes */
    cr_expect_eq(CUDA_ATT_BWD_SMEM(128), 123392);
    cr_expect_eq(CUDA_ATT_FWD_SMEM(128), 112640);
    char offer[32];
    snprintf(offer, sizeof offer, "offers %d", SMEM_SM86);
    const char *words[] = {"head size of 128", "123392", offer, "up to 64", "model.n_head",
                           "12"};
    expect_refused(&c, SMEM_SM86, words, 6);
    cr_expect_eq(backend_cuda_check(&c, SMEM_A100), 0, "%s", err_msg());
    GPTConfig gpt2 = config(768, 12); /* head size 64: 90,624 bytes */
    cr_expect_eq(backend_cuda_check(&gpt2, SMEM_SM86), 0, "%s", err_msg());
    /* a device that cannot hold even the narrowest tiles */
    const char *none[] = {"even at head size 16", "--device cpu"};
    expect_refused(&gpt2, 48 * 1024, none, 2);
}

/* A Llama-family config: grouped-query heads whose size model.head_dim sets
 * (Qwen3 style: NH * head_dim need not be n_embd). */
static GPTConfig llama_config(int n_embd, int n_head, int n_kv_head, int head_dim) {
    GPTConfig c = config(n_embd, n_head);
    c.arch = ARCH_LLAMA;
    c.n_kv_head = n_kv_head;
    c.head_dim = head_dim;
    c.intermediate_size = 3 * n_embd;
    return c;
}

Test(backend, cuda_takes_grouped_heads_by_head_dim) {
    /* Qwen3-0.6B's heads: 16 query heads over 8 kv heads of 128, n_embd 1024 */
    GPTConfig qwen3 = llama_config(1024, 16, 8, 128);
    cr_expect_eq(backend_cuda_check(&qwen3, SMEM_A100), 0, "%s", err_msg());
    /* multi-query, head size 64 */
    GPTConfig mqa = llama_config(512, 8, 1, 64);
    cr_expect_eq(backend_cuda_check(&mqa, SMEM_SM86), 0, "%s", err_msg());
    /* the head size is head_dim, not n_embd / n_head = 64: refused on 8.6 */
    char offer[32];
    snprintf(offer, sizeof offer, "offers %d", SMEM_SM86);
    const char *tiles[] = {"model.head_dim 128", "123392", offer, "--device cpu"};
    expect_refused(&qwen3, SMEM_SM86, tiles, 4);
    /* above the kernels' limit whatever n_embd / n_head is (1024 / 16 = 64) */
    GPTConfig wide = llama_config(1024, 16, 8, 160);
    const char *words[] = {"model.head_dim 160", "up to 128", "kernels/cuda/attention.cu",
                           "--device cpu"};
    expect_refused(&wide, SMEM_H100, words, 4);
    expect_refused(&wide, 0, words, 4);
    /* n_head must be a multiple of n_kv_head */
    GPTConfig odd = llama_config(768, 12, 5, 64);
    const char *kv_words[] = {"model.n_kv_head", "model.n_head"};
    expect_refused(&odd, SMEM_H100, kv_words, 2);
}

Test(backend, cuda_refuses_contexts_past_the_grid) {
    GPTConfig c = config(768, 12);
    c.n_positions = 65535 * 64;
    cr_expect_eq(backend_cuda_check(&c, SMEM_A100), 0, "%s", err_msg());
    c.n_positions = 65535 * 64 + 1;
    const char *words[] = {"model.n_positions 4194241", "4194240"};
    expect_refused(&c, SMEM_A100, words, 2);
}

Test(backend, cuda_refuses_vocabularies_past_shared_memory) {
    GPTConfig c = config(768, 12);
    c.vocab_size = 50257;
    cr_expect_eq(backend_cuda_check(&c, SMEM_A100), 0, "%s", err_msg());
    /* (166912 - 1024) / 4 words of 32 bits */
    int most = (SMEM_A100 - CUDA_KD_STATIC_SMEM) / 4 * 32;
    c.vocab_size = most;
    cr_expect_eq(backend_cuda_check(&c, SMEM_A100), 0, "%s", err_msg());
    c.vocab_size = most + 1;
    char fits[48];
    snprintf(fits, sizeof fits, "enough for %d tokens", most);
    const char *words[] = {"model.vocab_size", fits, "classifier_kd.cu"};
    expect_refused(&c, SMEM_A100, words, 3);
}

Test(backend, cuda_check_starts_with_the_config_check) {
    GPTConfig c = config(100, 3); /* not divisible */
    const char *words[] = {"divisible"};
    expect_refused(&c, SMEM_A100, words, 1);
}

/* The CPU table with the CUDA check in place of its own: */
static int supports_like_an_a100(const GPTConfig *cfg) {
    return backend_cuda_check(cfg, SMEM_A100);
}

/* gpt_create asks the backend before it allocates anything, so every path
 * that creates a model (the trainer, model_load_hf, the commands) refuses. */
Test(backend, gpt_create_asks_the_backend) {
    Backend narrow = *backend_cpu();
    narrow.supports = supports_like_an_a100;
    GPTConfig wide = config(1280, 8);
    err_set("none");
    cr_expect_null(gpt_create(&wide, &narrow));
    cr_expect(strstr(err_msg(), "up to 128"), "gpt_create's error: %s", err_msg());
    GPTConfig ok = config(256, 4);
    GPT *m = gpt_create(&ok, &narrow);
    cr_expect_not_null(m, "%s", err_msg());
    gpt_free(m);
    /* the CPU itself takes the wide one */
    m = gpt_create(&wide, backend_cpu());
    cr_expect_not_null(m, "%s", err_msg());
    gpt_free(m);
}
