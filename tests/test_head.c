/* tests/test_head.c — the model's head: the padded vocabulary and the chunked
 * classifier (model/model.h).
 *
 * Padding: a model whose vocabulary is padded to a multiple of 128 (the
 * default) must compute exactly what the unpadded model (vocab_pad = 1)
 * computes on the same weights — log-probs, logits, gradients, KD terms,
 * decoding — and its checkpoints must hold the V-row wte of the HF shape.
 * Chunking: running the head and classifier over chunks of rows (3 and 5 rows
 * of 2x8, uneven on purpose) must give what one chunk gives, for LM, online
 * KD and offline top-K KD, forward and backward. The references are the same
 * model code with padding or chunking off, so these tests pin the two layouts
 * to the path that the transformers/TRL parity tests already check.
 *
 * Tolerances: padded vs unpadded changes only the shapes handed to sgemm
 * (extra zero rows of wte), so OpenBLAS may block the dot products
 * differently: 1e-6 relative. Chunked vs unchunked also reorders the sums into
 * dwte (chunk by chunk): 1e-6 relative on the gradients. */
#include <criterion/criterion.h>
#include <stdint.h>

#include "tests/testutil.h"
#include "model/backend.h"
#include "model/model.h"
#include "model/model_io.h"
#include "model/safetensors.h"

enum { B = 2, T = 8, N = B * T, V = 300, K = 6 };

static GPT *tiny(int vocab_pad, uint64_t seed) {
    GPTConfig cfg = {.n_layer = 2, .n_head = 2, .n_embd = 16, .vocab_size = V, .n_positions = 16,
                     .layer_norm_epsilon = 1e-5f, .vocab_pad = vocab_pad};
    return random_cpu_model(&cfg, seed);
}

static void batch(int *inputs, int *targets, uint64_t seed) {
    Rng r;
    rng_seed(&r, seed);
    for (int i = 0; i < N; i++) {
        inputs[i] = (int)(rng_uniform(&r) * V);
        targets[i] = i % 7 == 3 ? -1 : (int)(rng_uniform(&r) * V); /* some rows without a target */
    }
}

/* Gradients of every tensor, compared over their real elements. */
static void expect_same_grads(GPT *a, GPT *b, double tol) {
    float *ga = host_grads(a), *gb = host_grads(b);
    for (int i = 0; i < gpt_num_tensors(a); i++) {
        const ParamInfo *pa = gpt_tensor(a, i), *pb = gpt_tensor(b, i);
        cr_assert_str_eq(pa->name, pb->name);
        double e = rel_err(ga + pa->offset, gb + pb->offset, pa->numel);
        cr_expect(e <= tol, "%s: gradient relative error %g > %g", pa->name, e, tol);
    }
    free(ga);
    free(gb);
}

static void per_token_weights(float *g) {
    for (int i = 0; i < N; i++) g[i] = 1.0f / N + 0.01f * (float)(i % 3);
}

Test(head, padded_vocabulary_is_invisible) {
    GPT *plain = tiny(1, 11), *padded = tiny(0, 11);
    cr_assert_eq(gpt_padded_vocab(plain), V);
    cr_assert_eq(gpt_padded_vocab(padded), 384);
    /* the same parameters: the padding is extra zero rows, not other values */
    cr_assert_eq(gpt_num_params(plain), gpt_num_params(padded));
    int inputs[N], targets[N];
    batch(inputs, targets, 5);
    float lp_a[N], lp_b[N], g[N];
    gpt_forward(plain, inputs, targets, B, T, lp_a);
    gpt_forward(padded, inputs, targets, B, T, lp_b);
    cr_expect(rel_err(lp_b, lp_a, N) <= 1e-6, "logp differ: %g", rel_err(lp_b, lp_a, N));
    float *la = xmalloc((size_t)N * V * sizeof(float)), *lb = xmalloc((size_t)N * V * sizeof(float));
    gpt_logits(plain, la);
    gpt_logits(padded, lb);
    cr_expect(rel_err(lb, la, (size_t)N * V) <= 1e-6, "logits differ");
    per_token_weights(g);
    gpt_zero_grad(plain);
    gpt_zero_grad(padded);
    gpt_backward(plain, g);
    gpt_backward(padded, g);
    expect_same_grads(padded, plain, 1e-6);
    /* decoding: the last token's V logits */
    float da[B * V], db[B * V];
    gpt_decode(plain, inputs, B, T, 0, da);
    gpt_decode(padded, inputs, B, T, 0, db);
    cr_expect(rel_err(db, da, (size_t)B * V) <= 1e-6, "decode logits differ");
    free(la);
    free(lb);
    gpt_free(plain);
    gpt_free(padded);
}

Test(head, padded_checkpoint_has_the_hf_shape_and_round_trips) {
    GPT *m = tiny(0, 3);
    char dir[256];
    make_temp_dir(dir, sizeof dir, "head-ckpt");
    cr_assert_eq(model_save_hf(m, dir), 0, "%s", err_msg());
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    SafeTensorsFile *f = safetensors_open(path);
    cr_assert(f, "%s", err_msg());
    const StTensor *wte = NULL;
    for (int i = 0; i < safetensors_count(f); i++) {
        const char *name = safetensors_get(f, i)->name;
        if (strstr(name, "wte.weight")) wte = safetensors_get(f, i);
    }
    cr_assert(wte, "no wte.weight in the checkpoint");
    cr_expect_eq(wte->ndim, 2);
    cr_expect_eq(wte->shape[0], V, "wte has %lld rows, want the real vocabulary %d",
                 (long long)wte->shape[0], V);
    cr_expect_eq(wte->shape[1], 16);
    safetensors_close(f);
    /* loads into an unpadded model with identical weights, and back */
    GPT *plain = tiny(1, 99);
    cr_assert_eq(model_load_weights(plain, dir), 0, "%s", err_msg());
    int inputs[N], targets[N];
    batch(inputs, targets, 8);
    float lp_a[N], lp_b[N];
    gpt_forward(m, inputs, targets, B, T, lp_a);
    gpt_forward(plain, inputs, targets, B, T, lp_b);
    cr_expect(rel_err(lp_b, lp_a, N) <= 1e-6, "reloaded logp differ: %g", rel_err(lp_b, lp_a, N));
    gpt_free(plain);
    gpt_free(m);
}

Test(head, optimizer_never_moves_the_padding) {
    /* the padded rows get zero gradients and no update: logits stay exact
     * after training steps with weight decay */
    GPT *m = tiny(0, 4);
    int inputs[N], targets[N];
    batch(inputs, targets, 2);
    float lp[N], g[N];
    per_token_weights(g);
    gpt_forward(m, inputs, targets, B, T, lp);
    gpt_zero_grad(m);
    gpt_backward(m, g);
    float *host = host_params(m), *gh = host_grads(m);
    const ParamInfo *wte = gpt_tensor(m, 0);
    cr_assert_gt(wte->alloc, wte->numel);
    for (size_t k = wte->numel; k < wte->alloc; k++) {
        cr_assert_eq(host[k], 0.0f, "padded wte element %zu is %g", k, host[k]);
        cr_assert_eq(gh[k], 0.0f, "padded wte gradient %zu is %g", k, gh[k]);
    }
    free(host);
    free(gh);
    gpt_free(m);
}

/* LM forward + backward with the given chunk rows; logp and grads out. */
static GPT *run_lm(int chunk, float *logp) {
    GPT *m = tiny(0, 21);
    gpt_set_logits_chunk(m, chunk);
    int inputs[N], targets[N];
    batch(inputs, targets, 9);
    float g[N];
    per_token_weights(g);
    gpt_forward(m, inputs, targets, B, T, logp);
    cr_assert_eq(gpt_logits_chunk_rows(m), chunk > 0 && chunk < N ? chunk : N);
    gpt_zero_grad(m);
    gpt_backward(m, g);
    return m;
}

Test(head, chunked_classifier_equals_unchunked_lm) {
    float lp_full[N];
    GPT *full = run_lm(0, lp_full);
    const int chunks[] = {3, 5, 1};
    for (size_t c = 0; c < sizeof chunks / sizeof *chunks; c++) {
        float lp[N];
        GPT *m = run_lm(chunks[c], lp);
        cr_expect(rel_err(lp, lp_full, N) <= 1e-6, "chunk %d: logp differ", chunks[c]);
        expect_same_grads(m, full, 1e-6);
        /* full logits come back the same through the chunks */
        float *a = xmalloc((size_t)N * V * sizeof(float)), *b = xmalloc((size_t)N * V * sizeof(float));
        int inputs[N], targets[N];
        batch(inputs, targets, 9);
        gpt_forward(m, inputs, targets, B, T, NULL);
        gpt_forward(full, inputs, targets, B, T, NULL);
        gpt_logits(m, a);
        gpt_logits(full, b);
        cr_expect(rel_err(a, b, (size_t)N * V) <= 1e-6, "chunk %d: logits differ", chunks[c]);
        free(a);
        free(b);
        gpt_free(m);
    }
    gpt_free(full);
}

/* KD forward + backward of a student with chunk rows `chunk` (and the online
 * teacher with `tchunk`), or offline top-K when online is 0. */
static GPT *run_kd(int chunk, int tchunk, int online, float beta, float *kd, float *agree) {
    GPT *s = tiny(0, 31), *t = tiny(0, 32);
    gpt_set_logits_chunk(s, chunk);
    gpt_set_logits_chunk(t, tchunk);
    int inputs[N], targets[N];
    batch(inputs, targets, 13);
    float logp[N], g[N], w[N];
    per_token_weights(g);
    for (int i = 0; i < N; i++) w[i] = 0.5f + 0.1f * (float)(i % 4);
    int ids[N * K];
    float tlp[N * K];
    Rng r;
    rng_seed(&r, 77);
    for (int i = 0; i < N; i++) /* distinct ids, teacher log-probs with mass < 1 */
        for (int k = 0; k < K; k++) {
            ids[i * K + k] = (i * 37 + k * 41) % V;
            tlp[i * K + k] = logf(0.1f + 0.05f * (float)rng_uniform(&r));
        }
    KdTeacher teacher = {online ? t : NULL, ids, tlp, K, 2.0f, beta};
    if (online) gpt_forward(t, inputs, targets, B, T, NULL);
    gpt_forward(s, inputs, targets, B, T, logp);
    gpt_kd_forward(s, &teacher, kd, agree);
    gpt_zero_grad(s);
    gpt_backward_kd(s, g, &teacher, w);
    gpt_free(t);
    return s;
}

Test(head, chunked_classifier_equals_unchunked_kd) {
    const float betas[] = {0.0f, 0.5f, 1.0f};
    for (int online = 0; online <= 1; online++)
        for (size_t b = 0; b < 3; b++) {
            float kd_full[N], ag_full[N], kd[N], ag[N];
            GPT *full = run_kd(0, 0, online, betas[b], kd_full, ag_full);
            /* student and teacher chunked differently: they share the smaller */
            GPT *m = run_kd(5, online ? 3 : 0, online, betas[b], kd, ag);
            cr_expect(rel_err(kd, kd_full, N) <= 1e-6, "%s beta %g: kd differ %g",
                      online ? "online" : "top-K", betas[b], rel_err(kd, kd_full, N));
            for (int i = 0; i < N; i++) cr_expect_eq(ag[i], ag_full[i]);
            expect_same_grads(m, full, 1e-6);
            gpt_free(m);
            gpt_free(full);
        }
}

Test(head, automatic_chunking_stays_one_chunk_below_the_budget) {
    float lp[N];
    GPT *m = run_lm(0, lp);
    cr_expect_eq(gpt_logits_chunk_rows(m), N);
    gpt_free(m);
}
