/* tests/test_recompute.c — activation recomputation (model.h, train.recompute).
 *
 * Recomputing a block in backward runs the same ops on the same inputs in the
 * same order as forward, so on the CPU the gradients and losses of
 * `attention` and `block` must be the very bits of `none`: compared with
 * memcmp, no tolerance. Covered: GPT-2, a Llama with grouped-query attention
 * and biases, a Qwen3 (q/k norm); LoRA on every module with and without
 * dropout (the masks must replay); frozen lower blocks and a frozen MLP (the
 * walk stops early); a chunked head; word-level KD through the online and the
 * offline teacher; two steps in a row (the dropout step moves); two backwards
 * from one forward; decoding after a training forward. The reference is the
 * same model code with recomputation off, which the transformers/PEFT parity
 * tests already pin.
 *
 * Memory: gpt_activation_bytes must equal what the first forward really
 * allocates, counted by a backend whose alloc/release are the CPU's wrapped
 * in a counter, for every mode and family, and be smaller for each step
 * from none to attention to block. Then `retort train` through the binary:
 * none and block write byte-identical metrics and checkpoints. */
#include <criterion/criterion.h>
#include <string.h>

#include "model/backend.h"
#include "model/model.h"
#include "tests/testutil_cli.h"

enum { B = 2, T = 8, N = B * T, V = 300, K = 5 };

static const int MODES[GPT_RECOMPUTE_COUNT] = {GPT_RECOMPUTE_NONE, GPT_RECOMPUTE_ATTENTION,
                                               GPT_RECOMPUTE_BLOCK};

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

static GPTConfig qwen3_cfg(void) {
    GPTConfig c = {.n_layer = 2, .n_head = 4, .n_embd = 32, .vocab_size = V,
                   .n_positions = 16, .layer_norm_epsilon = 1e-6f, .arch = ARCH_QWEN3,
                   .n_kv_head = 2, .head_dim = 12, .intermediate_size = 24, .qk_norm = 1,
                   .rope_theta = 1000000};
    return c;
}

/* What a case does to the model before training it. */
typedef enum { PLAIN, LORA, LORA_DROPOUT, FROZEN_LOW, FROZEN_MLP, CHUNKED } Variant;

static LoraConfig lora_all(const GPT *m, float dropout) {
    LoraConfig c = {.r = 3, .alpha = 6, .dropout = dropout, .seed = 77};
    if (gpt_config(m)->arch == ARCH_GPT2) {
        const char *t[] = {"c_attn", "c_proj", "c_fc"}; /* c_proj: both projections */
        for (int i = 0; i < 3; i++) snprintf(c.targets[i], LORA_NAME_LEN, "%s", t[i]);
        c.n_targets = 3;
    } else {
        const char *t[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                           "down_proj"};
        for (int i = 0; i < 7; i++) snprintf(c.targets[i], LORA_NAME_LEN, "%s", t[i]);
        c.n_targets = 7;
    }
    return c;
}

static GPT *make_model(const GPTConfig *cfg, int mode, Variant v) {
    GPT *m = perturbed_cpu_model(cfg, 5, 6, 0.1);
    cr_assert_eq(gpt_set_recompute(m, mode), 0, "%s", err_msg());
    cr_assert_eq(gpt_recompute(m), mode);
    if (v == LORA || v == LORA_DROPOUT) {
        LoraConfig lc = lora_all(m, v == LORA_DROPOUT ? 0.25f : 0.0f);
        cr_assert_eq(gpt_lora_attach(m, &lc), 0, "%s", err_msg());
        randomise_lora_b(m, 8);
    } else if (v == FROZEN_LOW) {
        /* blocks 0 and the embeddings frozen: backward stops above block 0 */
        const char *freeze[] = {"*"};
        const char *train_gpt2[] = {"h.[12].*", "ln_f.*"};
        const char *train_llama[] = {"model.layers.[12].*", "model.norm.*"};
        int llama = gpt_config(m)->arch != ARCH_GPT2;
        cr_assert_eq(gpt_set_trainable(m, freeze, 1, llama ? train_llama : train_gpt2, 2), 0,
                     "%s", err_msg());
    } else if (v == FROZEN_MLP) {
        /* every MLP frozen: the walk through a block ends at its MLP only
         * where nothing below needs the input gradient */
        const char *freeze_gpt2[] = {"*.mlp.*"};
        const char *freeze_llama[] = {"*.mlp.*"};
        int llama = gpt_config(m)->arch != ARCH_GPT2;
        cr_assert_eq(gpt_set_trainable(m, llama ? freeze_llama : freeze_gpt2, 1, NULL, 0), 0,
                     "%s", err_msg());
    } else if (v == CHUNKED) {
        gpt_set_logits_chunk(m, 5);
    }
    return m;
}

static void batch(int *inputs, int *targets, uint64_t seed) {
    random_tokens(inputs, N, V, seed);
    random_tokens(targets, N, V, seed + 1);
    targets[3] = targets[11] = -1; /* rows without a target */
}

static void weights(float *g) {
    for (int i = 0; i < N; i++) g[i] = 1.0f / N + 0.01f * (float)(i % 3);
}

/* What one run leaves: every logp of every step, then the gradients. */
typedef struct {
    float logp[2][N];
    float kd[2][N];
    float *grads;
    size_t n_grads;
} Outcome;

/* `steps` forward+backward pairs (gradients accumulated), as training does;
 * kd: 0 LM, 1 online teacher, 2 offline top-K. */
static Outcome run(const GPTConfig *cfg, int mode, Variant v, int steps, int kd) {
    Outcome o;
    memset(&o, 0, sizeof o);
    GPT *m = make_model(cfg, mode, v);
    GPT *teacher = NULL;
    if (kd == 1) {
        teacher = perturbed_cpu_model(cfg, 9, 10, 0.1);
        /* a teacher never trains: recompute block costs it nothing */
        cr_assert_eq(gpt_set_recompute(teacher, GPT_RECOMPUTE_BLOCK), 0);
    }
    int topk_ids[N * K];
    float topk_logp[N * K];
    for (int i = 0; i < N; i++)
        for (int k = 0; k < K; k++) {
            topk_ids[i * K + k] = (i * 7 + k * 13) % V;
            topk_logp[i * K + k] = -1.0f - 0.5f * (float)k;
        }
    KdTeacher t = {.teacher = teacher, .topk_ids = topk_ids, .topk_logp = topk_logp,
                   .K = kd == 2 ? K : 0, .temperature = 1.5f, .beta = 0.3f};
    gpt_zero_grad(m);
    for (int s = 0; s < steps; s++) {
        int inputs[N], targets[N];
        batch(inputs, targets, 40 + (uint64_t)s);
        float g[N], w[N], agree[N];
        weights(g);
        for (int i = 0; i < N; i++) w[i] = 0.5f + 0.1f * (float)(i % 4);
        if (teacher) gpt_forward(teacher, inputs, targets, B, T, NULL);
        gpt_forward(m, inputs, targets, B, T, o.logp[s]);
        if (kd) {
            gpt_kd_forward(m, &t, o.kd[s], agree);
            gpt_backward_kd(m, g, &t, w);
        } else {
            gpt_backward(m, g);
        }
    }
    o.n_grads = gpt_flat_size(m);
    o.grads = host_grads(m);
    if (teacher) gpt_free(teacher);
    gpt_free(m);
    return o;
}

/* The outcome of every mode is the outcome of none, bit for bit. */
static void expect_bitwise_equal(const GPTConfig *cfg, Variant v, int steps, int kd,
                                 const char *what) {
    Outcome ref = run(cfg, GPT_RECOMPUTE_NONE, v, steps, kd);
    int nonzero = 0;
    for (size_t i = 0; i < ref.n_grads; i++) nonzero += ref.grads[i] != 0.0f;
    cr_assert_gt(nonzero, 0, "%s: no gradient at all, the comparison would prove nothing", what);
    for (int k = 1; k < GPT_RECOMPUTE_COUNT; k++) {
        Outcome o = run(cfg, MODES[k], v, steps, kd);
        cr_assert_eq(o.n_grads, ref.n_grads);
        cr_expect(memcmp(o.logp, ref.logp, sizeof o.logp) == 0, "%s, %s: logp differ", what,
                  gpt_recompute_name(MODES[k]));
        cr_expect(memcmp(o.kd, ref.kd, sizeof o.kd) == 0, "%s, %s: KD terms differ", what,
                  gpt_recompute_name(MODES[k]));
        size_t first = ref.n_grads;
        for (size_t i = 0; i < ref.n_grads && first == ref.n_grads; i++)
            if (memcmp(&o.grads[i], &ref.grads[i], sizeof(float)) != 0) first = i;
        cr_expect(first == ref.n_grads, "%s, %s: gradient element %zu is %.9g, none gives %.9g",
                  what, gpt_recompute_name(MODES[k]), first,
                  first < ref.n_grads ? o.grads[first] : 0.0, first < ref.n_grads ? ref.grads[first] : 0.0);
        free(o.grads);
    }
    free(ref.grads);
}

static void every_variant(const GPTConfig *cfg, const char *family) {
    static const struct {
        Variant v;
        const char *name;
    } vs[] = {{PLAIN, "plain"},           {LORA, "lora"},
              {LORA_DROPOUT, "lora dropout"}, {FROZEN_LOW, "frozen lower blocks"},
              {FROZEN_MLP, "frozen MLPs"},     {CHUNKED, "chunked head"}};
    for (size_t i = 0; i < sizeof vs / sizeof *vs; i++) {
        char what[96];
        snprintf(what, sizeof what, "%s %s", family, vs[i].name);
        expect_bitwise_equal(cfg, vs[i].v, 2, 0, what);
    }
}

Test(recompute, gpt2_gradients_are_bitwise_those_of_none, .timeout = 120) {
    GPTConfig c = gpt2_cfg();
    every_variant(&c, "gpt2");
}

Test(recompute, llama_gradients_are_bitwise_those_of_none, .timeout = 120) {
    GPTConfig c = llama_cfg();
    every_variant(&c, "llama");
}

Test(recompute, qwen3_qk_norm_gradients_are_bitwise_those_of_none, .timeout = 120) {
    GPTConfig c = qwen3_cfg();
    every_variant(&c, "qwen3");
}

Test(recompute, word_level_kd_is_bitwise_that_of_none, .timeout = 120) {
    GPTConfig g = gpt2_cfg(), l = llama_cfg();
    expect_bitwise_equal(&g, PLAIN, 2, 1, "gpt2 online KD");
    expect_bitwise_equal(&g, LORA_DROPOUT, 2, 2, "gpt2 offline top-K KD, lora dropout");
    expect_bitwise_equal(&l, PLAIN, 2, 1, "llama online KD");
    expect_bitwise_equal(&l, FROZEN_LOW, 1, 2, "llama offline top-K KD, frozen lower blocks");
}

/* Two backwards from one forward (the second recomputes the blocks the first
 * left behind in the scratch), then decoding on the same model. */
Test(recompute, repeated_backward_and_decode_after_training_forward) {
    GPTConfig cfg = llama_cfg();
    float *ref = NULL, ref_logits[B * V];
    for (int k = 0; k < GPT_RECOMPUTE_COUNT; k++) {
        GPT *m = make_model(&cfg, MODES[k], LORA_DROPOUT);
        int inputs[N], targets[N];
        batch(inputs, targets, 3);
        float g[N], logits[B * V];
        weights(g);
        gpt_zero_grad(m);
        gpt_forward(m, inputs, targets, B, T, NULL);
        gpt_backward(m, g);
        gpt_backward(m, g);
        float *grads = host_grads(m);
        gpt_decode(m, inputs, B, T, 0, logits);
        if (k == 0) {
            ref = grads;
            memcpy(ref_logits, logits, sizeof logits);
        } else {
            cr_expect(memcmp(grads, ref, gpt_flat_size(m) * sizeof(float)) == 0,
                      "%s: gradients of two backwards differ from none's",
                      gpt_recompute_name(MODES[k]));
            cr_expect(memcmp(logits, ref_logits, sizeof logits) == 0,
                      "%s: decoded logits differ from none's", gpt_recompute_name(MODES[k]));
            free(grads);
        }
        gpt_free(m);
    }
    free(ref);
}

/* ---- memory ---- */

static size_t live_bytes;

static void *counting_alloc(size_t bytes) {
    void *p = backend_cpu()->alloc(bytes + 64); /* room for the size in front */
    if (!p) return NULL;
    *(size_t *)p = bytes;
    live_bytes += bytes;
    return (char *)p + 64;
}

static void counting_release(void *p) {
    if (!p) return;
    char *base = (char *)p - 64;
    live_bytes -= *(size_t *)base;
    backend_cpu()->release(base);
}

static const Backend *counting_backend(void) {
    static Backend be;
    be = *backend_cpu();
    be.alloc = counting_alloc;
    be.release = counting_release;
    return &be;
}

/* Bytes the first forward of (b, t) allocates on a fresh model. */
static size_t forward_allocates(const GPTConfig *cfg, int mode, int chunk, int b, int t) {
    GPT *m = gpt_create(cfg, counting_backend());
    cr_assert(m, "%s", err_msg());
    gpt_init_random(m, 1);
    cr_assert_eq(gpt_set_recompute(m, mode), 0);
    gpt_set_logits_chunk(m, chunk);
    int *ids = xcalloc((size_t)b * t, sizeof(int));
    random_tokens(ids, b * t, cfg->vocab_size, 2);
    cr_assert_eq(gpt_activation_bytes_allocated(m), 0);
    size_t before = live_bytes;
    gpt_forward(m, ids, ids, b, t, NULL);
    size_t used = live_bytes - before;
    cr_expect_eq(gpt_activation_bytes_allocated(m), used,
                 "gpt_activation_bytes_allocated %zu, the backend gave %zu",
                 gpt_activation_bytes_allocated(m), used);
    free(ids);
    gpt_free(m);
    return used;
}

Test(recompute, activation_bytes_are_what_forward_allocates) {
    GPTConfig cfgs[3] = {gpt2_cfg(), llama_cfg(), qwen3_cfg()};
    const int chunks[2] = {0, 5};
    for (int c = 0; c < 3; c++)
        for (int h = 0; h < 2; h++) {
            size_t prev = 0;
            for (int k = 0; k < GPT_RECOMPUTE_COUNT; k++) {
                size_t used = forward_allocates(&cfgs[c], MODES[k], chunks[h], 3, 7);
                size_t planned = gpt_activation_bytes(&cfgs[c], 3, 7, MODES[k], sizeof(float),
                                                      chunks[h]);
                cr_expect_eq(planned, used, "config %d, %s, chunk %d: planned %zu, allocated %zu",
                             c, gpt_recompute_name(MODES[k]), chunks[h], planned, used);
                if (k > 0)
                    cr_expect_lt(used, prev, "config %d: %s does not save memory over the mode "
                                 "before it", c, gpt_recompute_name(MODES[k]));
                prev = used;
            }
        }
}

/* LoRA's buffers follow their GEMM: with dropout on every module of a Llama,
 * what the first forward allocates beyond the planned activations (LoRA's
 * buffers alone) shrinks from none to attention (q/k/v adapters shared) to
 * block (all shared), and the gradients stay bitwise (the variants above). */
Test(recompute, lora_buffers_are_shared_when_their_gemm_is_rerun) {
    GPTConfig cfg = llama_cfg();
    size_t prev = 0;
    for (int k = 0; k < GPT_RECOMPUTE_COUNT; k++) {
        GPT *m = gpt_create(&cfg, counting_backend());
        cr_assert(m, "%s", err_msg());
        gpt_init_random(m, 1);
        LoraConfig lc = lora_all(m, 0.25f);
        cr_assert_eq(gpt_lora_attach(m, &lc), 0, "%s", err_msg());
        cr_assert_eq(gpt_set_recompute(m, MODES[k]), 0);
        int ids[N];
        random_tokens(ids, N, V, 2);
        size_t before = live_bytes;
        gpt_forward(m, ids, ids, B, T, NULL);
        size_t lora = live_bytes - before - gpt_activation_bytes_allocated(m);
        cr_assert_gt(lora, 0);
        if (k > 0)
            cr_expect_lt(lora, prev, "%s: LoRA's buffers %zu bytes, not fewer than %zu",
                         gpt_recompute_name(MODES[k]), lora, prev);
        prev = lora;
        gpt_free(m);
    }
}

Test(recompute, activation_bytes_scale_as_documented) {
    /* GPT-2 124M at B 4, T 1024, bf16: block keeps L (N,C) block outputs
     * where none keeps every buffer, so it saves well over half */
    GPTConfig c = {.n_layer = 12, .n_head = 12, .n_embd = 768, .vocab_size = 50257,
                   .n_positions = 1024, .layer_norm_epsilon = 1e-5f};
    size_t none = gpt_activation_bytes(&c, 4, 1024, GPT_RECOMPUTE_NONE, 2, 0);
    size_t attn = gpt_activation_bytes(&c, 4, 1024, GPT_RECOMPUTE_ATTENTION, 2, 0);
    size_t block = gpt_activation_bytes(&c, 4, 1024, GPT_RECOMPUTE_BLOCK, 2, 0);
    cr_assert(none > attn && attn > block && block > 0);
    /* one block's buffers, by hand: 11 compute-type (N,C)-sized or wider
     * buffers of none minus what block keeps (res3) */
    size_t Nr = 4 * 1024, C = 768, W = 3 * C, I = 4 * C, X = 2;
    size_t per_block_compute = Nr * (C + W + C + C + C + C + I + I + C) * X; /* all but res3 */
    size_t per_block_fp32 = Nr * (2 + 12 + 2) * 4;
    cr_expect_eq(none - block, 11 * (per_block_compute + per_block_fp32),
                 "none - block = %zu, want 11 blocks' buffers", none - block);
    /* bad input is refused with a message, not planned */
    cr_expect_eq(gpt_activation_bytes(&c, 4, 1024, 7, 2, 0), 0);
    assert_contains(err_msg(), "recompute");
    cr_expect_eq(gpt_activation_bytes(&c, 0, 1024, GPT_RECOMPUTE_NONE, 2, 0), 0);
    cr_expect_eq(gpt_activation_bytes(&c, 4, 1025, GPT_RECOMPUTE_NONE, 2, 0), 0);
    assert_contains(err_msg(), "context of 1024");
    c.n_head = 7;
    cr_expect_eq(gpt_activation_bytes(&c, 4, 1024, GPT_RECOMPUTE_NONE, 2, 0), 0);
    assert_contains(err_msg(), "n_head");
}

Test(recompute, mode_names_and_bad_modes) {
    for (int k = 0; k < GPT_RECOMPUTE_COUNT; k++)
        cr_expect_eq(gpt_recompute_from_name(gpt_recompute_name(k)), k);
    cr_expect_eq(gpt_recompute_from_name("full"), -1);
    cr_expect_eq(gpt_recompute_from_name(NULL), -1);
    GPTConfig c = gpt2_cfg();
    GPT *m = random_cpu_model(&c, 1);
    cr_expect_eq(gpt_set_recompute(m, 3), -1);
    assert_contains(err_msg(), "recompute mode 3");
    cr_expect_eq(gpt_recompute(m), GPT_RECOMPUTE_NONE);
    gpt_free(m);
}

/* ---- through the binary ---- */

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = xmalloc((size_t)n + 1);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    buf[n] = 0;
    *len = (size_t)n;
    return buf;
}

static void expect_same_file(const char *a, const char *b) {
    size_t na, nb;
    char *x = slurp(a, &na), *y = slurp(b, &nb);
    cr_expect(na == nb && memcmp(x, y, na) == 0, "%s and %s differ", a, b);
    free(x);
    free(y);
}

/* The losses of metrics.jsonl, as the text they were written with. */
static json_t *losses(const char *out_dir) {
    json_t *lines = metrics_lines(out_dir), *out = json_array(), *j;
    size_t i;
    json_array_foreach(lines, i, j) {
        json_t *loss = json_object_get(j, "loss");
        if (loss) json_array_append(out, loss);
    }
    json_decref(lines);
    return out;
}

Test(recompute, train_none_and_block_write_the_same_run, .timeout = 300) {
    char dir[256], path[512];
    make_temp_dir(dir, sizeof dir, "recompute");
    snprintf(path, sizeof path, "%s/train.jsonl", dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    Rng r;
    rng_seed(&r, 3);
    for (int i = 0; i < 64; i++) {
        char s[8], rev[8];
        reversal_word(&r, s, rev);
        fprintf(f, "{\"prompt\": \"%s=\", \"completion\": \"%s\"}\n", s, rev);
    }
    fclose(f);
    RUN(dir, "data build --schema sft --input %s/train.jsonl --out %s/train.h5 -q", dir, dir);
    static const char small[] =
        "--set model.n_layer=2 --set model.n_head=2 --set model.n_embd=32 "
        "--set model.n_positions=32 --set data.seq_len=16 --set data.batch_size=4 "
        "--set data.val_fraction=0 --set eval.every=0 --set train.log_every=1 "
        "--set checkpoint.every=3 --set train.steps=6 --set optim.warmup_steps=2 "
        "--set train.threads=2 --set train.tensorboard=false";
    /* full fine-tuning, and LoRA with dropout (its masks must replay) */
    const char *setups[2][2] = {{"full", ""},
                                {"lora", "--set finetune.lora_r=4 --set finetune.lora_dropout=0.1 "
                                         "--set finetune.lora_targets=c_attn,c_proj,c_fc"}};
    const char *modes[2] = {"none", "block"};
    for (int s = 0; s < 2; s++) {
        for (int k = 0; k < 2; k++)
            RUN(dir, "train -c configs/tiny.yaml %s %s --set data.train=%s/train.h5 "
                     "--set train.recompute=%s --set train.out_dir=%s/%s-%s",
                small, setups[s][1], dir, modes[k], dir, setups[s][0], modes[k]);
        char a[600], b[600];
        snprintf(a, sizeof a, "%s/%s-none", dir, setups[s][0]);
        snprintf(b, sizeof b, "%s/%s-block", dir, setups[s][0]);
        json_t *la = losses(a), *lb = losses(b);
        cr_assert_eq(json_array_size(la), 6, "one loss per step");
        cr_expect(json_equal(la, lb), "%s: the losses of none and block differ", setups[s][0]);
        json_decref(la);
        json_decref(lb);
        const char *files[] = {"step-00000003/model.safetensors",
                               "step-00000006/model.safetensors",
                               "step-00000006/optimizer.safetensors",
                               "step-00000006/adapter_model.safetensors"};
        for (int i = 0; i < (s == 1 ? 4 : 3); i++) {
            snprintf(a, sizeof a, "%s/%s-none/%s", dir, setups[s][0], files[i]);
            snprintf(b, sizeof b, "%s/%s-block/%s", dir, setups[s][0], files[i]);
            expect_same_file(a, b);
        }
    }
    /* a bad mode is refused with the choices */
    int rc = retort(dir, "train -c configs/tiny.yaml --set train.recompute=full");
    cr_expect_neq(rc, 0);
    snprintf(path, sizeof path, "%s/log", dir);
    size_t n;
    char *log = slurp(path, &n);
    assert_contains(log, "none|attention|block");
    free(log);
}
