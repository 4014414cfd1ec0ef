/* tests/test_zero.c — ZeRO-2's gradient units (model/model_grad_units.c) and
 * gradient shard (train/optim.c optim_shard_grads) in one process; ZeRO-3's
 * parameter units and shard at the end of the file.
 *
 * One process stands for one rank r of W (optim_shard(o, r, W) without MPI):
 * the shard then holds this process's own gradient of its range, which must
 * be the very bits of the same range of the whole gradient buffer a plain
 * model computes (the model writes each block into a zeroed window by the
 * same ops, and the shard adds it to zero). Two backwards accumulate in the
 * shard as g1 + g2, each computed from zero: compared bitwise with the two
 * plain gradients summed in fp32. Covered: GPT-2, GPT-2 with frozen
 * embeddings and block 0 (backward stops early; the global unit still
 * arrives), a Llama with LoRA on every module (a block's adapters are its
 * unit, a second run), a chunked head, train.recompute block, every rank of
 * W = 2, 3 and 4. The
 * collectives themselves (ranks summed in order, added into the shard) are
 * tests/mpi/dist_check.c's; whole runs against plain data parallelism are
 * scripts/test_dist_train.sh's; the bytes are tests/test_plan.c's. */
#include <criterion/criterion.h>
#include <string.h>

#include "model/backend.h"
#include "model/model.h"
#include "tests/testutil_cli.h"
#include "train/dist.h"
#include "train/optim.h"

enum { B = 2, T = 8, N = B * T, V = 300 };

static GPTConfig gpt2_cfg(void) {
    GPTConfig c = {.n_layer = 3, .n_head = 2, .n_embd = 16, .vocab_size = V,
                   .n_positions = 16, .layer_norm_epsilon = 1e-5f};
    return c;
}

static GPTConfig llama_cfg(void) {
    GPTConfig c = {.n_layer = 3, .n_head = 4, .n_embd = 32, .vocab_size = V,
                   .n_positions = 16, .layer_norm_epsilon = 1e-6f, .arch = ARCH_LLAMA,
                   .n_kv_head = 2, .intermediate_size = 40, .attn_bias = 1,
                   .untied_head = 1, .rope_theta = 10000};
    return c;
}

typedef enum { PLAIN, FROZEN_LOW, LORA, CHUNKED, RECOMPUTE } Variant;

static GPT *make_model(const GPTConfig *cfg, Variant v) {
    GPT *m = perturbed_cpu_model(cfg, 5, 6, 0.1);
    if (v == LORA) {
        LoraConfig c = {.r = 3, .alpha = 6, .dropout = 0.0f, .seed = 77};
        const char *t[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                           "down_proj"};
        for (int i = 0; i < 7; i++) snprintf(c.targets[i], LORA_NAME_LEN, "%s", t[i]);
        c.n_targets = 7;
        cr_assert_eq(gpt_lora_attach(m, &c), 0, "%s", err_msg());
        randomise_lora_b(m, 8);
    } else if (v == FROZEN_LOW) {
        const char *freeze[] = {"wte.weight", "wpe.weight", "h.0.*"};
        cr_assert_eq(gpt_set_trainable(m, freeze, 3, NULL, 0), 0, "%s", err_msg());
    } else if (v == CHUNKED) {
        gpt_set_logits_chunk(m, 5);
    } else if (v == RECOMPUTE) { /* each block rerun just before its backward and hook */
        cr_assert_eq(gpt_set_recompute(m, GPT_RECOMPUTE_BLOCK), 0, "%s", err_msg());
    }
    return m;
}

static void backward_once(GPT *m, uint64_t seed) {
    int in[N], tg[N];
    float logp[N], g[N];
    random_tokens(in, N, V, seed);
    random_tokens(tg, N, V, seed + 1);
    tg[3] = -1;
    gpt_forward(m, in, tg, B, T, logp);
    for (int i = 0; i < N; i++) g[i] = 1.0f / N + 0.01f * (float)(i % 3);
    gpt_backward(m, g);
}

/* The plain model's gradient (the layout) after one backward of `seed`. */
static float *plain_grads(const GPTConfig *cfg, Variant v, uint64_t seed, size_t *n) {
    GPT *m = make_model(cfg, v);
    AdamWConfig ac = {0.9, 0.95, 1e-8, 0.1, 0};
    Optimizer *o = optim_create(m, &ac);
    optim_zero_grad(o);
    backward_once(m, seed);
    *n = optim_state_size(o);
    float *g = xmalloc(*n * sizeof(float));
    optim_grads_to_host(o, g);
    optim_free(o);
    gpt_free(m);
    return g;
}

static void check_variant(const GPTConfig *cfg, Variant v, int world) {
    size_t n, n2;
    float *g1 = plain_grads(cfg, v, 11, &n), *g2 = plain_grads(cfg, v, 21, &n2);
    cr_assert_eq(n, n2);
    for (int r = 0; r < world; r++) {
        GPT *m = make_model(cfg, v);
        AdamWConfig ac = {0.9, 0.95, 1e-8, 0.1, 0};
        Optimizer *o = optim_create(m, &ac);
        cr_assert_eq(optim_shard(o, r, world), 0, "%s", err_msg());
        cr_assert_eq(optim_shard_grads(o), 0, "%s", err_msg());
        cr_assert(optim_grads_sharded(o));
        float *got = xmalloc(n * sizeof(float));
        size_t b, e;
        dist_shard_range(n, r, world, &b, &e);

        optim_zero_grad(o);
        backward_once(m, 11);
        cr_assert(gpt_grad_bytes(m) < n * sizeof(float), "the model holds less than the layout");
        optim_grads_to_host(o, got);
        for (size_t x = b; x < e; x++)
            cr_assert(!memcmp(&got[x], &g1[x], sizeof(float)), "rank %d of %d, element %zu: %g vs %g",
                      r, world, x, got[x], g1[x]);

        backward_once(m, 21); /* accumulates in the shard */
        optim_grads_to_host(o, got);
        for (size_t x = b; x < e; x++) {
            float want = g1[x] + g2[x];
            cr_assert(!memcmp(&got[x], &want, sizeof(float)),
                      "accumulated: rank %d of %d, element %zu: %g vs %g", r, world, x, got[x],
                      want);
        }
        optim_zero_grad(o); /* the next step starts from zero */
        optim_grads_to_host(o, got);
        for (size_t x = b; x < e; x++) cr_assert_eq(got[x], 0.0f);
        free(got);
        optim_free(o);
        gpt_free(m);
    }
    free(g1);
    free(g2);
}

Test(zero2, gpt2_shards_are_the_plain_gradient) {
    GPTConfig c = gpt2_cfg();
    check_variant(&c, PLAIN, 3);
    check_variant(&c, CHUNKED, 4);
}

Test(zero2, frozen_embeddings_and_block) {
    GPTConfig c = gpt2_cfg();
    check_variant(&c, FROZEN_LOW, 3);
}

Test(zero2, with_block_recomputation) {
    GPTConfig c = gpt2_cfg();
    check_variant(&c, RECOMPUTE, 3);
    c = llama_cfg();
    check_variant(&c, RECOMPUTE, 2);
}

Test(zero2, llama_lora_adapters_are_their_blocks_unit) {
    GPTConfig c = llama_cfg();
    check_variant(&c, PLAIN, 3);
    check_variant(&c, LORA, 4);
}

/* The units cover the layout exactly once, in order: runs of every unit
 * together tile [0, n_grad) minus nothing, and a block without LoRA is one
 * run. */
Test(zero2, units_tile_the_layout) {
    GPTConfig c = llama_cfg();
    const Variant variants[] = {PLAIN, LORA};
    for (int vi = 0; vi < 2; vi++) {
        Variant v = variants[vi];
        GPT *m = make_model(&c, v);
        AdamWConfig ac = {0.9, 0.95, 1e-8, 0.1, 0};
        Optimizer *o = optim_create(m, &ac);
        cr_assert_eq(optim_shard(o, 0, 2), 0);
        cr_assert_eq(optim_shard_grads(o), 0);
        size_t n = gpt_grad_size(m);
        unsigned char *seen = xcalloc(n, 1);
        for (int u = 0; u <= c.n_layer; u++) {
            const GptGradRun *runs;
            int k = gpt_grad_unit_runs(m, u, &runs);
            if (v == PLAIN && u < c.n_layer) cr_assert_eq(k, 1, "block %d: one run", u);
            if (v == LORA && u < c.n_layer) cr_assert_eq(k, 1, "block %d: the adapters", u);
            for (int j = 0; j < k; j++)
                for (size_t x = runs[j].lo; x < runs[j].hi; x++) seen[x]++;
        }
        for (size_t x = 0; x < n; x++) cr_assert_eq(seen[x], 1, "element %zu", x);
        free(seen);
        optim_free(o);
        gpt_free(m);
    }
}

/* ZeRO-2 needs the CPU backend's memory and a sharded optimizer. */
Test(zero2, refused_without_a_sharded_optimizer) {
    GPTConfig c = gpt2_cfg();
    GPT *m = make_model(&c, PLAIN);
    AdamWConfig ac = {0.9, 0.95, 1e-8, 0.1, 0};
    Optimizer *o = optim_create(m, &ac);
    cr_assert_eq(optim_shard_grads(o), -1);
    cr_assert(strstr(err_msg(), "optim_shard"), "%s", err_msg());
    optim_free(o);
    gpt_free(m);
}

/* ---- ZeRO-3: the parameters by unit (gpt_set_params_gather, optim_shard_params)
 *
 * One process is the whole world (optim_shard(o, 0, 1)): the parameter shard
 * is the whole trainable layout and the gather copies it (no MPI), but every
 * path of the sharded model runs: the resident tensors, param_at through the
 * window, a gather before each block's forward, recomputation and backward,
 * AdamW on the shard, the global tensors' update copied back, and the whole
 * mode of a save. Each step's log-probs, gradient norm and the parameters
 * afterwards must be the plain model's bits. Several ranks are
 * scripts/test_dist_train.sh's (ZeRO-3 == ZeRO-2 under mpirun). */
static void step_once(GPT *m, Optimizer *o, uint64_t seed, float *logp, double *norm) {
    int in[N], tg[N];
    float g[N];
    random_tokens(in, N, V, seed);
    random_tokens(tg, N, V, seed + 1);
    optim_zero_grad(o);
    gpt_forward(m, in, tg, B, T, logp);
    for (int i = 0; i < N; i++) g[i] = 1.0f / N + 0.01f * (float)(i % 3);
    gpt_backward(m, g);
    *norm = optim_clip_grad_norm(o);
    optim_step(o, 1e-2);
}

static void check_zero3(const GPTConfig *cfg, Variant v) {
    GPT *plain = make_model(cfg, v), *m = make_model(cfg, v);
    AdamWConfig ac = {0.9, 0.95, 1e-8, 0.1, 0.5}; /* clipping on: the norm matters */
    Optimizer *po = optim_create(plain, &ac), *o = optim_create(m, &ac);
    cr_assert_eq(optim_shard(o, 0, 1), 0, "%s", err_msg());
    cr_assert_eq(optim_shard_grads(o), 0, "%s", err_msg());
    cr_assert_eq(optim_shard_params(o), 0, "%s", err_msg());
    cr_assert(optim_params_sharded(o) && gpt_params_sharded(m));
    cr_assert(gpt_param_bytes(m) < gpt_flat_size(m) * sizeof(float),
              "resident + window %zu bytes, whole %zu", gpt_param_bytes(m),
              gpt_flat_size(m) * sizeof(float));
    size_t n = gpt_flat_size(m);
    float *want = xmalloc(n * sizeof(float)), *got = xmalloc(n * sizeof(float));
    for (int s = 0; s < 3; s++) {
        float lp[N], lq[N];
        double np, nq;
        step_once(plain, po, 100 + 10 * (uint64_t)s, lp, &np);
        step_once(m, o, 100 + 10 * (uint64_t)s, lq, &nq);
        cr_assert(!memcmp(lp, lq, sizeof lp), "step %d: log-probs differ", s);
        cr_assert(!memcmp(&np, &nq, sizeof np), "step %d: norm %.17g vs %.17g", s, np, nq);
        /* as a save does: the whole buffer, then the shard back from it */
        cr_assert_eq(optim_params_unshard(o, 1), 0, "%s", err_msg());
        gpt_copy_params_to_host(plain, want, n);
        gpt_copy_params_to_host(m, got, n);
        for (int i = 0; i < gpt_num_tensors(m); i++) {
            const ParamInfo *p = gpt_tensor(m, i);
            cr_assert(!memcmp(want + p->offset, got + p->offset, p->numel * sizeof(float)),
                      "step %d: %s differs", s, p->name);
        }
        optim_params_reshard(o);
    }
    free(want);
    free(got);
    optim_free(po);
    optim_free(o);
    gpt_free(plain);
    gpt_free(m);
}

Test(zero3, gpt2_steps_are_the_plain_models) {
    GPTConfig c = gpt2_cfg();
    check_zero3(&c, PLAIN);
    check_zero3(&c, CHUNKED);
    check_zero3(&c, FROZEN_LOW);
}

Test(zero3, llama_lora_and_recomputation) {
    GPTConfig c = llama_cfg();
    check_zero3(&c, PLAIN);
    check_zero3(&c, LORA);
    check_zero3(&c, RECOMPUTE);
}

/* ZeRO-3 shards the parameters of sharded gradients, once. */
Test(zero3, refused_without_sharded_gradients_and_twice) {
    GPTConfig c = gpt2_cfg();
    GPT *m = make_model(&c, PLAIN);
    AdamWConfig ac = {0.9, 0.95, 1e-8, 0.1, 0};
    Optimizer *o = optim_create(m, &ac);
    cr_assert_eq(optim_shard(o, 0, 2), 0, "%s", err_msg());
    cr_assert_eq(optim_shard_params(o), -1);
    cr_assert(strstr(err_msg(), "optim_shard_grads"), "%s", err_msg());
    cr_assert_eq(optim_shard_grads(o), 0, "%s", err_msg());
    cr_assert_eq(optim_shard_params(o), 0, "%s", err_msg());
    cr_assert_eq(gpt_set_params_gather(m, NULL, NULL), -1);
    cr_assert(strstr(err_msg(), "sharded once"), "%s", err_msg());
    optim_free(o);
    gpt_free(m);
}
