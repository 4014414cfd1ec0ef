/* tests/test_plan.c — the memory planner (train/plan.h) against what the CPU
 * backend really allocates.
 *
 * For the choices the code runs today on the CPU (no sharding or ZeRO-1,
 * under every train.recompute mode) the plan must equal, byte for byte, the
 * CPU allocator's count (backend_cpu_bytes_live) after the model, the
 * optimizer, a forward and a backward exist: parameters after gpt_create,
 * optimizer state after optim_create (and its ZeRO-1 shard after
 * optim_shard), activations after the forward, gradients after the
 * backward; and nothing transient may pass the total (the allocator's peak).
 * Small GPT-2 and Llama models, with chunked logits, frozen tensors and LoRA
 * (with dropout, whose buffers recomputation shares); whole training runs
 * (lm with and without block recomputation, DPO with its frozen reference,
 * KD with an online teacher) peak at the plan's total. Then sizes, the
 * largest micro-batch, the FLOPs of a step, and `retort plan` / the
 * trainer's refusal (of the run's own recompute mode) through the binary. */
#include <criterion/criterion.h>

#include "data/h5data.h"
#include "model/backend.h"
#include "model/model_io.h"
#include "tests/testutil_cli.h"
#include "train/config.h"
#include "train/dist.h"
#include "train/optim.h"
#include "train/plan.h"
#include "train/trainer.h"

static void small_gpt2(Config *c) {
    config_defaults(c);
    c->model.n_layer = 2;
    c->model.n_head = 4;
    c->model.n_embd = 64;
    c->model.vocab_size = 300; /* padded to 384 */
    c->model.n_positions = 64;
    c->data.seq_len = 32;
    c->data.batch_size = 3;
    snprintf(c->train.device, sizeof c->train.device, "cpu");
}

static void small_llama(Config *c) {
    small_gpt2(c);
    snprintf(c->model.arch, sizeof c->model.arch, "llama");
    c->model.n_layer = 3;
    c->model.n_head = 4;
    c->model.n_kv_head = 2;
    c->model.n_embd = 48;
    c->model.intermediate_size = 80;
    c->model.tie_word_embeddings = 0; /* an untied head, padded as the embedding */
    c->model.attn_bias = 1;
    c->model.vocab_size = 250;
}

/* finetune.* on a live model as train/trainer.c apply_finetune does */
static void apply_finetune(GPT *m, const Config *c) {
    if (c->finetune.freeze[0]) {
        const char *pats[] = {"wte.weight", "h.0.*"};
        cr_assert_eq(gpt_set_trainable(m, pats, 2, NULL, 0), 0, "%s", err_msg());
    }
    if (c->finetune.lora_r > 0) {
        LoraConfig lc;
        memset(&lc, 0, sizeof lc);
        lc.r = c->finetune.lora_r;
        lc.alpha = 8;
        lc.dropout = (float)c->finetune.lora_dropout;
        lc.seed = 5;
        lc.n_targets = 3;
        snprintf(lc.targets[0], sizeof lc.targets[0], "q_proj");
        snprintf(lc.targets[1], sizeof lc.targets[1], "v_proj");
        snprintf(lc.targets[2], sizeof lc.targets[2], "down_proj");
        cr_assert_eq(gpt_lora_attach(m, &lc), 0, "%s", err_msg());
    }
}

/* Builds the run of c on the CPU under train.recompute `recompute` and checks
 * every part of the plan against the allocator; world > 1 shards as rank 0 of
 * ZeRO-`shard` (1 or 2). */
static void check_sharded_recompute(const Config *c, int world, int shard, int recompute) {
    PlanModel pm;
    cr_assert_eq(plan_model_init(&pm, c), 0, "%s", err_msg());
    PlanChoice ch = {world > 1 ? shard : PLAN_SHARD_NONE, recompute, c->data.batch_size, world};
    PlanBytes want = plan_memory(&pm, ch);
    int B = c->data.batch_size, T = c->data.seq_len;

    size_t base = backend_cpu_bytes_live();
    backend_cpu_reset_peak();
    GPTConfig g;
    cr_assert_eq(config_model(c, &g), 0, "%s", err_msg());
    GPT *m = gpt_create(&g, backend_cpu());
    cr_assert(m, "%s", err_msg());
    gpt_init_random(m, 1);
    gpt_set_logits_chunk(m, c->train.logits_chunk_rows);
    cr_assert_eq(gpt_set_recompute(m, recompute), 0, "%s", err_msg());
    apply_finetune(m, c);
    cr_assert_eq(gpt_num_params(m), pm.n_params);
    cr_assert_eq(gpt_num_trainable(m), pm.n_trainable);
    cr_assert_eq(gpt_flat_size(m), pm.n_alloc);
    cr_assert_eq(gpt_grad_size(m), pm.n_grad);
    size_t rope = want.workspace, lora_scratch = 0; /* the workspace: rotary tables ... */
    if (pm.lora_r) { /* ... and LoRA's scratch, which the first forward allocates */
        PlanModel plain = pm;
        plain.lora_r = 0;
        rope = plan_memory(&plain, ch).workspace;
        lora_scratch = want.workspace - rope;
    }
    /* ZeRO-3 shards the parameters when the optimizer is set up: until then
     * the model is whole */
    int zero3 = world > 1 && shard == PLAN_ZERO3;
    size_t whole = (pm.n_alloc * sizeof(float) + 63) & ~(size_t)63;
    cr_assert_eq(backend_cpu_bytes_live() - base, (zero3 ? whole : want.params) + rope,
                 "parameters (+ rotary tables): allocated %zu, planned %zu",
                 backend_cpu_bytes_live() - base, (zero3 ? whole : want.params) + rope);

    AdamWConfig ac = {0.9, 0.95, 1e-8, 0.1, 1.0};
    Optimizer *o = optim_create(m, &ac);
    cr_assert(o);
    if (world > 1) cr_assert_eq(optim_shard(o, 0, world), 0, "%s", err_msg());
    /* ZeRO-2: the gradient shard comes with the optimizer, the rest with backward */
    size_t gshard = 0;
    if (world > 1 && shard >= PLAN_ZERO2) {
        cr_assert_eq(optim_shard_grads(o), 0, "%s", err_msg());
        size_t b, e;
        dist_shard_range(pm.n_grad, 0, world, &b, &e);
        gshard = ((e - b) * sizeof(float) + 63) & ~(size_t)63;
    }
    if (zero3) {
        /* the start holds the whole model beside the state (the plan counts
         * the run's steady state from here on) */
        cr_assert_eq(optim_shard_params(o), 0, "%s", err_msg());
        cr_assert(optim_param_bytes(o) <= want.params && want.params - optim_param_bytes(o) < 3 * 64,
                  "optim_param_bytes %zu vs plan %zu", optim_param_bytes(o), want.params);
        backend_cpu_reset_peak();
    }
    size_t after_optim = backend_cpu_bytes_live() - base;
    cr_assert_eq(after_optim - want.params - rope - gshard, want.optim,
                 "optimizer state: allocated %zu, planned %zu",
                 after_optim - want.params - rope - gshard, want.optim);
    /* the shard is what optim.c keeps: m and v of rank 0's range */
    cr_assert_eq(optim_state_bytes(o) <= want.optim, 1);
    cr_assert(want.optim - optim_state_bytes(o) < 2 * 64, "optim_state_bytes %zu vs plan %zu",
              optim_state_bytes(o), want.optim);

    int *in = xmalloc((size_t)B * T * sizeof(int)), *tg = xmalloc((size_t)B * T * sizeof(int));
    random_tokens(in, B * T, g.vocab_size, 3);
    random_tokens(tg, B * T, g.vocab_size, 4);
    float *logp = xmalloc((size_t)B * T * sizeof(float)), *gw = xmalloc((size_t)B * T * sizeof(float));
    gpt_forward(m, in, tg, B, T, logp);
    size_t after_fwd = backend_cpu_bytes_live() - base;
    cr_assert_eq(after_fwd - after_optim, want.activations + lora_scratch,
                 "recompute %s: activations allocated %zu, planned %zu (+ LoRA %zu)",
                 plan_recompute_name(recompute), after_fwd - after_optim, want.activations,
                 lora_scratch);
    for (int i = 0; i < B * T; i++) gw[i] = -1.0f / (B * T);
    gpt_zero_grad(m);
    gpt_backward(m, gw);
    if (world == 1) { /* the sharded step is a collective (tests/mpi run it) */
        optim_clip_grad_norm(o);
        optim_step(o, 1e-3);
    }
    size_t after_bwd = backend_cpu_bytes_live() - base;
    cr_assert_eq(after_bwd - after_fwd + gshard, want.grads,
                 "gradients: allocated %zu, planned %zu", after_bwd - after_fwd + gshard,
                 want.grads);
    cr_assert_eq(optim_grad_bytes(o) <= want.grads, 1);
    cr_assert_eq(after_bwd, want.total, "recompute %s: total allocated %zu, planned %zu",
                 plan_recompute_name(recompute), after_bwd, want.total);
    cr_assert_eq(backend_cpu_bytes_peak() - base, want.total,
                 "recompute %s: something transient passed the total: peak %zu, planned %zu",
                 plan_recompute_name(recompute), backend_cpu_bytes_peak() - base, want.total);
    free(in);
    free(tg);
    free(logp);
    free(gw);
    optim_free(o);
    gpt_free(m);
    cr_assert_eq(backend_cpu_bytes_live(), base, "the model and optimizer freed everything");
    plan_model_free(&pm);
}

/* ... under every recomputation mode: none, attention, block */
static void check_sharded(const Config *c, int world, int shard) {
    for (int r = 0; r < PLAN_RECOMPUTE_COUNT; r++) check_sharded_recompute(c, world, shard, r);
}

static void check_against_allocator(const Config *c, int world) {
    check_sharded(c, world, PLAN_ZERO1);
}

Test(plan, gpt2_equals_cpu_allocator) {
    Config c;
    small_gpt2(&c);
    check_against_allocator(&c, 1);
}

Test(plan, gpt2_chunked_logits_and_frozen_tensors) {
    Config c;
    small_gpt2(&c);
    c.train.logits_chunk_rows = 40; /* 96 rows in 3 chunks */
    snprintf(c.finetune.freeze, sizeof c.finetune.freeze, "wte.weight, h.0.*");
    check_against_allocator(&c, 1);
}

Test(plan, llama_equals_cpu_allocator) {
    Config c;
    small_llama(&c);
    check_against_allocator(&c, 1);
}

Test(plan, llama_lora_with_dropout) {
    Config c;
    small_llama(&c);
    c.finetune.lora_r = 4;
    c.finetune.lora_dropout = 0.1;
    snprintf(c.finetune.lora_targets, sizeof c.finetune.lora_targets, "q_proj,v_proj,down_proj");
    check_against_allocator(&c, 1);
}

Test(plan, zero1_shard_equals_optimizer) {
    Config c;
    small_gpt2(&c);
    check_against_allocator(&c, 3);
    small_llama(&c);
    check_against_allocator(&c, 4);
}

/* ZeRO-2: a rank holds its gradient shard, the global tensors' gradients
 * and one block's, whatever trains: GPT-2 whole and partly frozen, Llama,
 * Llama with LoRA (the adapters of a block are its unit), 2 to 4 ranks. */
/* ZeRO-3: a rank holds the parameter shard, the global and frozen tensors
 * and one block window, with ZeRO-2's gradients: GPT-2 whole and partly
 * frozen, Llama, Llama with LoRA, 2 to 4 ranks, every recompute mode. */
Test(plan, zero3_parameters_equal_cpu_allocator) {
    Config c;
    small_gpt2(&c);
    check_sharded(&c, 2, PLAN_ZERO3);
    check_sharded(&c, 3, PLAN_ZERO3);
    snprintf(c.finetune.freeze, sizeof c.finetune.freeze, "wte.weight, h.0.*");
    check_sharded(&c, 3, PLAN_ZERO3);
    small_llama(&c);
    check_sharded(&c, 4, PLAN_ZERO3);
    c.finetune.lora_r = 4;
    c.finetune.lora_dropout = 0.1;
    snprintf(c.finetune.lora_targets, sizeof c.finetune.lora_targets, "q_proj,v_proj,down_proj");
    check_sharded(&c, 2, PLAN_ZERO3);
}

Test(plan, zero2_gradients_equal_cpu_allocator) {
    Config c;
    small_gpt2(&c);
    check_sharded(&c, 2, PLAN_ZERO2);
    check_sharded(&c, 3, PLAN_ZERO2);
    snprintf(c.finetune.freeze, sizeof c.finetune.freeze, "wte.weight, h.0.*");
    check_sharded(&c, 3, PLAN_ZERO2);
    small_llama(&c);
    check_sharded(&c, 4, PLAN_ZERO2);
    c.finetune.lora_r = 4;
    c.finetune.lora_dropout = 0.1;
    snprintf(c.finetune.lora_targets, sizeof c.finetune.lora_targets, "q_proj,v_proj,down_proj");
    check_sharded(&c, 2, PLAN_ZERO2);
}

/* ZeRO-1 keeps m and v of this rank's range of the gradient layout, so the
 * largest rank's bytes are those of ceil(n / world) floats, each of the two
 * rounded to 64 bytes. */
Test(plan, zero1_optimizer_is_the_shard) {
    Config c;
    small_gpt2(&c);
    PlanModel pm;
    cr_assert_eq(plan_model_init(&pm, &c), 0, "%s", err_msg());
    for (int world = 2; world <= 7; world++) {
        PlanBytes b = plan_memory(&pm, (PlanChoice){PLAN_ZERO1, 0, 3, world});
        size_t shard = (pm.n_grad + world - 1) / world * sizeof(float);
        cr_assert_eq(b.optim, 2 * ((shard + 63) & ~(size_t)63), "world %d", world);
    }
    plan_model_free(&pm);
}

/* The shapes of the modelled choices: each shards or drops what it says. */
Test(plan, modelled_choices_shrink_in_order) {
    Config c;
    small_llama(&c);
    snprintf(c.train.device, sizeof c.train.device, "cuda");
    PlanModel pm;
    cr_assert_eq(plan_model_init(&pm, &c), 0, "%s", err_msg());
    cr_assert_eq(pm.act_size, 2);
    PlanBytes none = plan_memory(&pm, (PlanChoice){PLAN_SHARD_NONE, 0, 3, 8});
    PlanBytes z1 = plan_memory(&pm, (PlanChoice){PLAN_ZERO1, 0, 3, 8});
    PlanBytes z2 = plan_memory(&pm, (PlanChoice){PLAN_ZERO2, 0, 3, 8});
    PlanBytes z3 = plan_memory(&pm, (PlanChoice){PLAN_ZERO3, 0, 3, 8});
    /* CUDA: fp32 master weights beside m and v */
    cr_assert_eq(none.optim, 3 * (((pm.n_grad * 4) + 63) & ~(size_t)63));
    cr_assert(z1.optim < none.optim && z1.grads == none.grads && z1.params == none.params);
    cr_assert(z2.grads < z1.grads && z2.optim == z1.optim && z2.params == z1.params);
    cr_assert(z3.params < z2.params && z3.grads == z2.grads);
    /* one rank: sharding changes nothing */
    PlanBytes z3w1 = plan_memory(&pm, (PlanChoice){PLAN_ZERO3, 0, 3, 1});
    cr_assert_eq(z3w1.total, plan_memory(&pm, (PlanChoice){0, 0, 3, 1}).total);
    PlanBytes ra = plan_memory(&pm, (PlanChoice){0, PLAN_RECOMPUTE_ATTENTION, 3, 1});
    PlanBytes rb = plan_memory(&pm, (PlanChoice){0, PLAN_RECOMPUTE_BLOCK, 3, 1});
    PlanBytes r0 = plan_memory(&pm, (PlanChoice){0, 0, 3, 1});
    cr_assert(ra.activations < r0.activations && rb.activations < ra.activations);
    cr_assert_eq(ra.params, r0.params);
    plan_model_free(&pm);
}

Test(plan, largest_micro_batch_fits_and_the_next_does_not) {
    Config c;
    small_gpt2(&c);
    PlanModel pm;
    cr_assert_eq(plan_model_init(&pm, &c), 0, "%s", err_msg());
    for (int r = 0; r < PLAN_RECOMPUTE_COUNT; r++) {
        PlanChoice ch = {0, r, 1, 1};
        size_t budget = 20u << 20;
        int b = plan_max_micro_batch(&pm, ch, budget);
        cr_assert(b > 1);
        ch.micro_batch = b;
        cr_assert_leq(plan_memory(&pm, ch).total, budget);
        ch.micro_batch = b + 1;
        cr_assert_gt(plan_memory(&pm, ch).total, budget);
    }
    PlanChoice ch = {0, 0, 1, 1};
    cr_assert_eq(plan_max_micro_batch(&pm, ch, plan_memory(&pm, ch).total - 1), 0);
    plan_model_free(&pm);
}

/* GPT-2, every tensor trainable: forward is 2 FLOPs per multiply-add of the
 * four GEMMs of each block (12 C^2 per token) and the tied head (V C), plus
 * causal attention 2 * 2 * C * T(T+1)/2 per block and sequence; backward is
 * twice forward; 6 N per token when attention is left out. */
Test(plan, flops_of_a_full_fine_tune) {
    Config c;
    small_gpt2(&c);
    c.data.grad_accum = 2;
    PlanModel pm;
    cr_assert_eq(plan_model_init(&pm, &c), 0, "%s", err_msg());
    double C = 64, L = 2, V = 300, T = 32, seqs = 3 * 2, tokens = seqs * T;
    double fwd = 2 * tokens * (L * 12 * C * C + V * C) + seqs * L * 2 * 2 * C * T * (T + 1) / 2;
    PlanChoice ch = {0, 0, 3, 1};
    cr_assert_float_eq(plan_flops_per_step(&pm, ch), 3 * fwd, 1e-6 * fwd);
    cr_assert_float_eq(plan_flops_6n(&pm, ch),
                       tokens * (6 * (L * 12 * C * C + V * C) + 12 * L * C * T), 1.0);
    /* recomputation reruns block 0 (block 1's buffers are the scratch's):
     * attention its c_attn GEMM (3 C^2) and attention, block also c_proj
     * (C^2) and c_fc (4 C^2) but not the MLP's c_proj */
    double attn_one = seqs * 2 * 2 * C * T * (T + 1) / 2;
    ch.recompute = PLAN_RECOMPUTE_ATTENTION;
    cr_assert_float_eq(plan_flops_per_step(&pm, ch), 3 * fwd + 2 * tokens * 3 * C * C + attn_one,
                       1e-6 * fwd);
    ch.recompute = PLAN_RECOMPUTE_BLOCK;
    cr_assert_float_eq(plan_flops_per_step(&pm, ch), 3 * fwd + 2 * tokens * 8 * C * C + attn_one,
                       1e-6 * fwd);
    /* frozen weights skip their weight-gradient product */
    ch.recompute = 0;
    snprintf(c.finetune.train_only, sizeof c.finetune.train_only, "h.1.*");
    plan_model_free(&pm);
    cr_assert_eq(plan_model_init(&pm, &c), 0, "%s", err_msg());
    double frozen_macs = 12 * C * C + V * C; /* block 0 and the head */
    cr_assert_float_eq(plan_flops_per_step(&pm, ch), 3 * fwd - 2 * tokens * frozen_macs,
                       1e-6 * fwd);
    /* backward stops at block 1, the last, so nothing is recomputed */
    ch.recompute = PLAN_RECOMPUTE_BLOCK;
    cr_assert_float_eq(plan_flops_per_step(&pm, ch), 3 * fwd - 2 * tokens * frozen_macs,
                       1e-6 * fwd);
    plan_model_free(&pm);
}

/* LoRA on GPT-2's MLP c_proj (the down-projection, r = 2): block recomputation
 * of block 0 then reruns that GEMM (4 C^2) and its adapter (4 C r + r C) too;
 * attention does not touch it. */
Test(plan, flops_of_recomputing_an_adapted_down_projection) {
    Config c;
    small_gpt2(&c);
    c.finetune.lora_r = 2;
    snprintf(c.finetune.lora_targets, sizeof c.finetune.lora_targets, "mlp.c_proj");
    PlanModel pm;
    cr_assert_eq(plan_model_init(&pm, &c), 0, "%s", err_msg());
    double C = 64, T = 32, r = 2, seqs = 3, tokens = seqs * T;
    double attn_one = seqs * 2 * 2 * C * T * (T + 1) / 2;
    PlanChoice ch = {0, 0, 3, 1};
    double none = plan_flops_per_step(&pm, ch);
    ch.recompute = PLAN_RECOMPUTE_ATTENTION;
    cr_assert_float_eq(plan_flops_per_step(&pm, ch) - none, 2 * tokens * 3 * C * C + attn_one,
                       1e-9 * none);
    ch.recompute = PLAN_RECOMPUTE_BLOCK;
    cr_assert_float_eq(plan_flops_per_step(&pm, ch) - none,
                       2 * tokens * (12 * C * C + 4 * C * r + r * C) + attn_one, 1e-9 * none);
    plan_model_free(&pm);
}

Test(plan, sizes_with_units) {
    size_t b;
    cr_assert_eq(plan_parse_bytes("80GB", &b), 0);
    cr_assert_eq(b, (size_t)80e9);
    cr_assert_eq(plan_parse_bytes("2GiB", &b), 0);
    cr_assert_eq(b, (size_t)2 << 30);
    cr_assert_eq(plan_parse_bytes("512 MiB", &b), 0);
    cr_assert_eq(b, (size_t)512 << 20);
    cr_assert_eq(plan_parse_bytes("1.5TB", &b), 0);
    cr_assert_eq(b, (size_t)1.5e12);
    cr_assert_eq(plan_parse_bytes("4096", &b), 0);
    cr_assert_eq(b, 4096);
    cr_assert_eq(plan_parse_bytes("80gb", &b), 0);
    cr_assert_eq(b, (size_t)80e9);
    cr_assert_eq(plan_parse_bytes("80XB", &b), -1);
    assert_contains(err_msg(), "unknown unit 'XB'");
    cr_assert_eq(plan_parse_bytes("GB", &b), -1);
    cr_assert_eq(plan_parse_bytes("-1GB", &b), -1);
    cr_assert_eq(plan_parse_bytes("", &b), -1);
}

Test(plan, model_errors_name_the_key) {
    Config c;
    small_gpt2(&c);
    snprintf(c.finetune.freeze, sizeof c.finetune.freeze, "nosuch.*");
    PlanModel pm;
    cr_assert_eq(plan_model_init(&pm, &c), -1);
    assert_contains(err_msg(), "finetune.freeze");
    small_gpt2(&c);
    c.data.seq_len = 65;
    cr_assert_eq(plan_model_init(&pm, &c), -1);
    assert_contains(err_msg(), "data.seq_len");
}

/* ---------------------------------------------------------------- the data */

/* n documents of 10 + i tokens each; sft: every token trained, role i % 2 */
static int64_t write_docs(const char *path, Schema schema, int n) {
    DatasetWriter *w = dataset_writer_open(path, schema, 300, 256, 256, "test");
    cr_assert(w, "%s", err_msg());
    if (schema == SCHEMA_SFT) {
        const char *roles[] = {"user", "assistant"};
        cr_assert_eq(dataset_writer_set_roles(w, roles, 2), 0, "%s", err_msg());
    }
    uint32_t tok[64];
    uint8_t mask[64];
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        int len = 10 + i;
        for (int k = 0; k < len; k++) tok[k] = (uint32_t)(k * 7 + i) % 256, mask[k] = 1;
        cr_assert_eq(dataset_writer_add(w, tok, schema == SCHEMA_SFT ? mask : NULL, len,
                                        schema == SCHEMA_SFT ? i % 2 : -1),
                     0, "%s", err_msg());
        total += len;
    }
    cr_assert_eq(dataset_writer_close(w), 0, "%s", err_msg());
    return total;
}

/* Loaded: 4 bytes per token, 8 per offset, and for sft a mask byte per
 * token and a role byte per example, on every rank; streamed: 2 MiB of
 * chunk cache per column and one micro-batch of ids and targets. */
Test(plan_data, loaded_and_streamed_files) {
    char dir[256], lm[512], sft[512];
    make_temp_dir(dir, sizeof dir, "plan-data");
    snprintf(lm, sizeof lm, "%s/lm.h5", dir);
    snprintf(sft, sizeof sft, "%s/sft.h5", dir);
    int64_t lm_tokens = write_docs(lm, SCHEMA_LM, 20), sft_tokens = write_docs(sft, SCHEMA_SFT, 30);
    cr_assert_eq(lm_tokens, 20 * 10 + 19 * 20 / 2);
    Config c;
    small_gpt2(&c);
    snprintf(c.data.train, sizeof c.data.train, "%s", lm);
    snprintf(c.data.stream, sizeof c.data.stream, "false");
    PlanData d;
    cr_assert_eq(plan_data(&c, 3, &d), 0, "%s", err_msg());
    cr_assert_eq(d.n_files, 1);
    cr_assert(d.file[0].sized && !d.file[0].streamed);
    cr_assert_eq(d.file[0].n_tokens, lm_tokens);
    cr_assert_eq(d.file[0].n_docs, 20);
    cr_assert_eq(d.total, (size_t)lm_tokens * 4 + 21 * 8);
    /* auto: a small file is loaded */
    snprintf(c.data.stream, sizeof c.data.stream, "auto");
    cr_assert_eq(plan_data(&c, 3, &d), 0, "%s", err_msg());
    cr_assert_eq(d.total, (size_t)lm_tokens * 4 + 21 * 8);
    /* streamed: tokens and offsets, and 3 x 32 tokens of ids and targets */
    snprintf(c.data.stream, sizeof c.data.stream, "true");
    cr_assert_eq(plan_data(&c, 3, &d), 0, "%s", err_msg());
    cr_assert(d.file[0].streamed);
    cr_assert_eq(d.total, 2 * (size_t)DATASET_STREAM_CACHE + 3 * 32 * 8);

    /* sft with a held-out file: mask and role columns too */
    snprintf(c.data.train, sizeof c.data.train, "%s", sft);
    snprintf(c.data.val, sizeof c.data.val, "%s", lm);
    snprintf(c.data.stream, sizeof c.data.stream, "false");
    cr_assert_eq(plan_data(&c, 3, &d), 0, "%s", err_msg());
    cr_assert_eq(d.n_files, 2);
    cr_assert_str_eq(d.file[1].role, "data.val");
    size_t sft_loaded = (size_t)sft_tokens * (4 + 1) + 31 * 8 + 30;
    cr_assert_eq(d.file[0].bytes, sft_loaded);
    cr_assert_eq(d.total, sft_loaded + (size_t)lm_tokens * 4 + 21 * 8);
    snprintf(c.data.stream, sizeof c.data.stream, "true");
    cr_assert_eq(plan_data(&c, 3, &d), 0, "%s", err_msg());
    cr_assert_eq(d.file[0].bytes, 4 * (size_t)DATASET_STREAM_CACHE + 3 * 32 * 8);

    /* a mixture: every file */
    c.data.train[0] = c.data.val[0] = 0;
    snprintf(c.data.stream, sizeof c.data.stream, "false");
    char lm2[512];
    snprintf(lm2, sizeof lm2, "%s/lm2.h5", dir);
    int64_t lm2_tokens = write_docs(lm2, SCHEMA_LM, 5);
    snprintf(c.data.mix, sizeof c.data.mix, "[{path: %s, weight: 0.5}, {path: %s, weight: 0.5}]",
             lm, lm2);
    cr_assert_eq(plan_data(&c, 3, &d), 0, "%s", err_msg());
    cr_assert_eq(d.n_files, 2);
    cr_assert_str_eq(d.file[1].role, "data.mix");
    cr_assert_eq(d.total, (size_t)lm_tokens * 4 + 21 * 8 + (size_t)lm2_tokens * 4 + 6 * 8);

    /* preference files are named, not sized; a missing file is an error naming it */
    c.data.mix[0] = 0;
    snprintf(c.objective.type, sizeof c.objective.type, "dpo");
    snprintf(c.data.train, sizeof c.data.train, "%s", lm);
    cr_assert_eq(plan_data(&c, 3, &d), 0, "%s", err_msg());
    cr_assert(!d.file[0].sized && d.total == 0);
    assert_contains(d.file[0].why, "preference");
    snprintf(c.objective.type, sizeof c.objective.type, "lm");
    snprintf(c.data.train, sizeof c.data.train, "%s/missing.h5", dir);
    cr_assert_eq(plan_data(&c, 3, &d), -1);
    assert_contains(err_msg(), "missing.h5");
}

/* ---------------------------------------------------------------- the binary */

static char *read_log(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/log", dir);
    FILE *f = fopen(path, "r");
    cr_assert(f);
    char *buf = xcalloc(1 << 20, 1);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

static void clear_log(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/log", dir);
    FILE *f = fopen(path, "w");
    if (f) fclose(f);
}

Test(plan_cli, prints_every_choice_and_refuses_bad_input, .timeout = 60) {
    char dir[256], cfg[512];
    make_temp_dir(dir, sizeof dir, "plan");
    snprintf(cfg, sizeof cfg, "%s/run.yaml", dir);
    write_text(cfg, "model:\n  arch: llama\n  n_layer: 32\n  n_head: 32\n  n_embd: 4096\n"
                    "  intermediate_size: 11008\n  vocab_size: 32000\n  n_positions: 4096\n"
                    "  tie_word_embeddings: false\n"
                    "data:\n  seq_len: 2048\n  batch_size: 4\n  grad_accum: 4\n"
                    "train:\n  device: cuda\n");
    RUN(dir, "plan -c %s --gpus 8 --gpu-memory 80GB", cfg);
    char *out = read_log(dir);
    assert_contains(out, "6738415616 parameters"); /* Llama-2 7B */
    assert_contains(out, "8 ranks");
    assert_contains(out, "zero3");
    assert_contains(out, "block");
    assert_contains(out, "largest micro-batch");
    assert_contains(out, "FLOPs per step");
    assert_contains(out, "ASSUMING 40% of 989 TFLOP/s");
    free(out);

    clear_log(dir);
    cr_assert_eq(retort(dir, (snprintf(cfg, sizeof cfg, "plan -c %s/run.yaml --gpu-memory 80XB", dir), cfg)), 2);
    out = read_log(dir);
    assert_contains(out, "unknown unit 'XB'");
    free(out);

    clear_log(dir);
    write_text((snprintf(cfg, sizeof cfg, "%s/bad.yaml", dir), cfg), "model:\n  n_layr: 2\n");
    cr_assert_eq(retort(dir, (snprintf(cfg, sizeof cfg, "plan -c %s/bad.yaml", dir), cfg)), 1);
    out = read_log(dir);
    assert_contains(out, "n_layr");
    free(out);

    clear_log(dir);
    cr_assert_eq(retort(dir, (snprintf(cfg, sizeof cfg, "plan -c %s/missing.yaml", dir), cfg)), 1);
    out = read_log(dir);
    assert_contains(out, "missing.yaml");
    free(out);

    clear_log(dir);
    cr_assert_eq(retort(dir, (snprintf(cfg, sizeof cfg, "plan -c %s/run.yaml --gpus 0", dir), cfg)), 2);
    out = read_log(dir);
    assert_contains(out, "--gpus");
    free(out);
}

/* The data files under the table: loaded or streamed with their bytes; a
 * file that cannot be read is said and the plan still printed. */
Test(plan_cli, prints_the_data_files, .timeout = 60) {
    char dir[256], lm[512];
    make_temp_dir(dir, sizeof dir, "plan-data-cli");
    snprintf(lm, sizeof lm, "%s/lm.h5", dir);
    int64_t tokens = write_docs(lm, SCHEMA_LM, 20);
    static const char model[] = "--set model.n_layer=2 --set model.n_head=2 --set model.n_embd=32 "
                                "--set model.vocab_size=300 --set model.n_positions=64 "
                                "--set data.seq_len=32 --set data.batch_size=2";
    char cfg[512], want[1024];
    snprintf(cfg, sizeof cfg, "%s/run.yaml", dir);
    write_text(cfg, "train:\n  device: cpu\n");
    RUN(dir, "plan -c %s %s --set data.train=%s --set data.stream=false --gpu-memory 1GB", cfg,
        model, lm);
    char *out = read_log(dir);
    snprintf(want, sizeof want, "data.train %s: %.2f MiB loaded (%lld tokens in 20 documents",
             lm, (tokens * 4 + 21 * 8) / 1048576.0, (long long)tokens);
    assert_contains(out, want);
    free(out);
    clear_log(dir);
    RUN(dir, "plan -c %s %s --set data.train=%s --set data.stream=true --gpu-memory 1GB", cfg,
        model, lm);
    out = read_log(dir);
    snprintf(want, sizeof want, "data.train %s: %.2f MiB streamed", lm,
             (2.0 * DATASET_STREAM_CACHE + 2 * 32 * 8) / 1048576.0);
    assert_contains(out, want);
    free(out);
    clear_log(dir);
    RUN(dir, "plan -c %s %s --set data.train=%s/none.h5 --gpu-memory 1GB", cfg, model, dir);
    out = read_log(dir);
    assert_contains(out, "data (host, per rank): not counted:");
    assert_contains(out, "none.h5");
    assert_contains(out, "FLOPs per step");
    free(out);
}

/* The trainer refuses, before it allocates the model, a run whose plan
 * passes train.memory_limit: exit 1, the breakdown, the micro-batch that
 * fits, and no run directory content; the same run under a limit it fits
 * trains. */
Test(plan_cli, trainer_refuses_a_run_over_its_memory_limit, .timeout = 120) {
    char dir[256], path[512];
    make_temp_dir(dir, sizeof dir, "plan-refuse");
    snprintf(path, sizeof path, "%s/text.txt", dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    for (int i = 0; i < 200; i++) fprintf(f, "line %d of a small corpus for the planner\n", i);
    fclose(f);
    RUN(dir, "data build --schema lm --input %s/text.txt --out %s/train.h5 -q", dir, dir);
    static const char run[] =
        "--set model.n_layer=2 --set model.n_head=2 --set model.n_embd=32 "
        "--set model.vocab_size=257 --set model.n_positions=64 --set data.seq_len=64 "
        "--set data.batch_size=16 --set train.steps=2 --set train.threads=1 "
        "--set train.device=cpu --set checkpoint.every=0";
    /* what the plan says this run needs: 16 x 64 rows */
    Config c;
    config_defaults(&c);
    c.model.n_layer = 2, c.model.n_head = 2, c.model.n_embd = 32, c.model.vocab_size = 257;
    c.model.n_positions = 64, c.data.seq_len = 64, c.data.batch_size = 16;
    PlanModel pm;
    cr_assert_eq(plan_model_init(&pm, &c), 0, "%s", err_msg());
    size_t need = plan_memory(&pm, (PlanChoice){0, 0, 16, 1}).total;
    size_t need_block = plan_memory(&pm, (PlanChoice){0, PLAN_RECOMPUTE_BLOCK, 16, 1}).total;
    cr_assert_lt(need_block, need);
    int fits = plan_max_micro_batch(&pm, (PlanChoice){0, 0, 16, 1}, need - 1);
    cr_assert(fits >= 1 && fits < 16);
    plan_model_free(&pm);

    clear_log(dir);
    char args[2048];
    snprintf(args, sizeof args, "train %s --set data.train=%s/train.h5 --set train.out_dir=%s/run "
             "--set train.memory_limit=%zu", run, dir, dir, need - 1);
    cr_assert_eq(retort(dir, args), 1);
    char *out = read_log(dir);
    assert_contains(out, "needs");
    assert_contains(out, "train.memory_limit");
    assert_contains(out, "activations");
    char want[64];
    snprintf(want, sizeof want, "data.batch_size %d fits", fits);
    assert_contains(out, want);
    free(out);
    snprintf(path, sizeof path, "%s/run/metrics.jsonl", dir);
    cr_assert_neq(access(path, F_OK), 0, "a refused run wrote metrics");

    RUN(dir, "train %s --set data.train=%s/train.h5 --set train.out_dir=%s/run "
             "--set train.memory_limit=%zu", run, dir, dir, need);
    cr_assert_eq(access(path, F_OK), 0, "the run that fits trained");

    /* the trainer plans the run's train.recompute: block fits a limit none
     * does not, and is refused a byte below its own plan */
    clear_log(dir);
    snprintf(args, sizeof args, "train %s --set data.train=%s/train.h5 --set train.out_dir=%s/block "
             "--set train.recompute=block --set train.memory_limit=%zu", run, dir, dir,
             need_block - 1);
    cr_assert_eq(retort(dir, args), 1);
    out = read_log(dir);
    snprintf(want, sizeof want, "needs %.2f MiB (%zu bytes)", need_block / 1048576.0, need_block);
    assert_contains(out, want);
    free(out);
    RUN(dir, "train %s --set data.train=%s/train.h5 --set train.out_dir=%s/block "
             "--set train.recompute=block --set train.memory_limit=%zu", run, dir, dir, need_block);
    snprintf(path, sizeof path, "%s/block/metrics.jsonl", dir);
    cr_assert_eq(access(path, F_OK), 0, "the block run under its own plan trained");
}

/* A whole training run in this process (lm objective, validation, a
 * checkpoint save): the most the CPU backend ever holds is the plan's total
 * for the run's train.recompute, for GPT-2 and for a Llama with LoRA. */
static void peak_of_a_run(Config *c, const char *dir) {
    PlanModel pm;
    cr_assert_eq(plan_model_init(&pm, c), 0, "%s", err_msg());
    int recompute;
    cr_assert_eq(plan_recompute_from_name(c->train.recompute, &recompute), 0, "%s", err_msg());
    size_t want = plan_memory(&pm, (PlanChoice){0, recompute, c->data.batch_size, 1}).total;
    plan_model_free(&pm);
    size_t base = backend_cpu_bytes_live();
    backend_cpu_reset_peak();
    train_ok(c, 0);
    cr_assert_eq(backend_cpu_bytes_live(), base, "the run freed its backend memory");
    cr_assert_eq(backend_cpu_bytes_peak() - base, want, "%s (recompute %s): peak %zu, planned %zu",
                 dir, c->train.recompute, backend_cpu_bytes_peak() - base, want);
}

Test(plan_cli, a_training_run_peaks_at_the_plan, .timeout = 120) {
    char dir[256], path[512], out[600];
    make_temp_dir(dir, sizeof dir, "plan-peak");
    snprintf(path, sizeof path, "%s/text.txt", dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    for (int i = 0; i < 200; i++) fprintf(f, "line %d of a small corpus for the planner\n", i);
    fclose(f);
    RUN(dir, "data build --schema lm --input %s/text.txt --out %s/train.h5 -q", dir, dir);
    snprintf(path, sizeof path, "%s/train.h5", dir);
    Config c;
    snprintf(out, sizeof out, "%s/gpt2", dir);
    tiny_train_config(&c, path, out);
    c.data.seq_len = 24;
    c.data.batch_size = 3;
    c.data.val_fraction = 0.1;
    c.eval.every = 1;
    c.train.steps = 2;
    peak_of_a_run(&c, "gpt2");
    snprintf(out, sizeof out, "%s/llama", dir);
    tiny_train_config(&c, path, out);
    snprintf(c.model.arch, sizeof c.model.arch, "llama");
    c.model.intermediate_size = 48;
    c.model.n_kv_head = 1;
    c.data.seq_len = 24;
    c.data.batch_size = 3;
    c.train.steps = 2;
    c.train.logits_chunk_rows = 20;
    c.finetune.lora_r = 2;
    c.finetune.lora_alpha = 4;
    c.finetune.lora_dropout = 0.1;
    peak_of_a_run(&c, "llama lora");
    /* the same runs keeping only each block's input: less than none */
    size_t none_peak = backend_cpu_bytes_peak();
    snprintf(out, sizeof out, "%s/llama-block", dir);
    snprintf(c.train.out_dir, sizeof c.train.out_dir, "%s", out);
    snprintf(c.train.recompute, sizeof c.train.recompute, "block");
    peak_of_a_run(&c, "llama lora block");
    cr_assert_lt(backend_cpu_bytes_peak(), none_peak);
    snprintf(out, sizeof out, "%s/gpt2-block", dir);
    tiny_train_config(&c, path, out);
    c.data.seq_len = 24;
    c.data.batch_size = 3;
    c.data.val_fraction = 0.1;
    c.eval.every = 1;
    c.train.steps = 2;
    snprintf(c.train.recompute, sizeof c.train.recompute, "block");
    peak_of_a_run(&c, "gpt2 block");
}

/* preference pairs of byte tokens "ab=" -> "abc" / "xyz" */
static void write_pairs(const char *path, int n) {
    PrefWriter *pw = pref_writer_open(path, 257, 256, 256, "bytes");
    cr_assert(pw, "%s", err_msg());
    Rng r;
    rng_seed(&r, 5);
    for (int i = 0; i < n; i++) {
        uint32_t p[3] = {'a' + (uint32_t)rng_below(&r, 10), 'a' + (uint32_t)rng_below(&r, 10), '='};
        uint32_t ch[8], rj[8];
        int lc = 2 + (int)rng_below(&r, 4), lr = 2 + (int)rng_below(&r, 4);
        for (int k = 0; k < lc; k++) ch[k] = 'a' + (uint32_t)rng_below(&r, 3);
        for (int k = 0; k < lr; k++) rj[k] = 'x' + (uint32_t)rng_below(&r, 3);
        ch[lc++] = 256;
        rj[lr++] = 256;
        cr_assert_eq(pref_writer_add(pw, p, 3, ch, lc, rj, lr), 0, "%s", err_msg());
    }
    cr_assert_eq(pref_writer_close(pw), 0, "%s", err_msg());
}

/* The second model: DPO's frozen reference (two rows per pair, the policy and
 * the reference both from model.init; the policy with and without
 * recomputation) and an online KD teacher of another shape, each a whole run
 * whose peak is the plan's total. The second model never runs backward, so
 * it always keeps one block's activations (block mode, objective.c). */
Test(plan_cli, runs_with_a_frozen_second_model_peak_at_the_plan, .timeout = 120) {
    char dir[256], data[512], init[512], teacher[512], out[512], text[512];
    make_temp_dir(dir, sizeof dir, "plan-second");
    snprintf(data, sizeof data, "%s/pairs.h5", dir);
    snprintf(init, sizeof init, "%s/init", dir);
    snprintf(teacher, sizeof teacher, "%s/teacher", dir);
    write_pairs(data, 24);
    GPTConfig g = {.n_layer = 2, .n_head = 2, .n_embd = 32, .vocab_size = 257, .n_positions = 32,
                   .layer_norm_epsilon = 1e-5f};
    GPT *m = random_cpu_model(&g, 7);
    cr_assert_eq(mkdir_p(init), 0);
    cr_assert_eq(model_save_hf(m, init), 0, "%s", err_msg());
    gpt_free(m);
    GPTConfig gt = {.n_layer = 3, .n_head = 4, .n_embd = 48, .vocab_size = 257, .n_positions = 32,
                    .layer_norm_epsilon = 1e-5f};
    m = random_cpu_model(&gt, 8);
    cr_assert_eq(mkdir_p(teacher), 0);
    cr_assert_eq(model_save_hf(m, teacher), 0, "%s", err_msg());
    gpt_free(m);

    Config c;
    snprintf(out, sizeof out, "%s/dpo", dir);
    tiny_train_config(&c, data, out);
    snprintf(c.objective.type, sizeof c.objective.type, "dpo");
    snprintf(c.model.init, sizeof c.model.init, "%s", init);
    c.data.seq_len = 12;
    c.data.batch_size = 4;
    c.train.steps = 2;
    PlanModel pm;
    cr_assert_eq(plan_model_init(&pm, &c), 0, "%s", err_msg());
    cr_assert(pm.frozen && pm.rows_per_item == 2 && !pm.kd_online);
    plan_model_free(&pm);
    peak_of_a_run(&c, "dpo");
    snprintf(out, sizeof out, "%s/dpo-attention", dir);
    snprintf(c.train.out_dir, sizeof c.train.out_dir, "%s", out);
    snprintf(c.train.recompute, sizeof c.train.recompute, "attention");
    peak_of_a_run(&c, "dpo");

    snprintf(text, sizeof text, "%s/text.txt", dir);
    FILE *f = fopen(text, "w");
    cr_assert(f);
    for (int i = 0; i < 100; i++) fprintf(f, "line %d of a small corpus for the teacher\n", i);
    fclose(f);
    RUN(dir, "data build --schema lm --input %s --out %s/lm.h5 -q", text, dir);
    snprintf(data, sizeof data, "%s/lm.h5", dir);
    snprintf(out, sizeof out, "%s/kd", dir);
    tiny_train_config(&c, data, out);
    snprintf(c.objective.type, sizeof c.objective.type, "kd");
    snprintf(c.kd.teacher, sizeof c.kd.teacher, "%s", teacher);
    c.data.seq_len = 16;
    c.data.batch_size = 3;
    c.train.steps = 2;
    cr_assert_eq(plan_model_init(&pm, &c), 0, "%s", err_msg());
    cr_assert(pm.frozen && pm.kd_online && pm.frozen->g.n_layer == 3);
    plan_model_free(&pm);
    peak_of_a_run(&c, "kd online");
}
