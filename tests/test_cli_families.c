/* tests/test_cli_families.c — every method on the Llama families through the
 * command line, as tests/test_cli.c does for GPT-2. The models are
 * transformers checkpoints:
 *   tests/fixtures/families/{llama_gqa2_untied,qwen3}   64-67 token parity
 *       fixtures, trained here on token data written with DatasetWriter (no
 *       tokenizer has so few ids);
 *   tests/fixtures/cli_families/{llama,qwen3,qwen2_teacher,qwen2_student}
 *       257-token (byte tokenizer) models from tests/make_cli_family_fixtures.py,
 *       trained in torch on "abc=" -> "cba" (all but the student), with
 *       transformers' greedy and beam generations in expected.json.
 * What is checked, each through `retort data build / train / generate /
 * stages / dpo precompute-ref`:
 *   - SFT from model.init = a Llama-family directory: the loss goes down, the
 *     checkpoint reloads (model_load_hf) to the tensors of its file with the
 *     family's config, a run stopped and resumed from it continues with the
 *     uninterrupted run's losses, and transformers loads it to the logits
 *     retort computes (tests/check_hf_logits.py; skipped visibly without .venv);
 *   - generation: greedy and 3-beam outputs (text, and beam scores to 1e-4)
 *     equal transformers' generate(); sampling is reproducible from its seed,
 *     another seed gives other samples, top-k 1 sampling is greedy;
 *   - word-level KD from a Qwen2 teacher into a smaller Qwen2 student (and
 *     into a Qwen3 one), online (kd.teacher) and offline (generate
 *     --store-topk into a kd file); sequence-level KD (generate --out kd.h5,
 *     the best beam as target, which is transformers' best beam);
 *   - DPO (reference = the initial model, another model, and precomputed
 *     reference log-probs, which give the first run's losses) and ORPO, on
 *     pairs that go against the fixture's habit;
 *   - GLPFT stages with freezing by name (finetune.freeze model.layers.0.*)
 *     and by layer (finetune.train_only model.layers.1.*): frozen tensors
 *     keep their bits, the others move; a pattern that would split q_proj
 *     from k_proj is refused.
 * Data parallelism on a Llama model is in scripts/test_dist_train.sh.
 * Tolerances: runs of one process and one thread are deterministic, so
 * resumed losses must equal the uninterrupted ones exactly; transformers'
 * beam scores are compared to 1e-4 (fp32 in a different order, over at most
 * 6 steps); greedy tokens exactly (the fixture script refuses top-2 gaps
 * under 1e-4). */
#include <criterion/criterion.h>

#include <jansson.h>
#include <math.h>

#include "data/h5data.h"
#include "model/backend.h"
#include "model/checkpoint.h"
#include "model/model_io.h"
#include "model/safetensors.h"
#include "tests/testutil_cli.h"

#define FAMILIES "tests/fixtures/families"
#define CLI_FAMILIES "tests/fixtures/cli_families"

/* ------------------------------------------------------------ running retort */

/* A small run: one thread (deterministic), no validation, a checkpoint only at
 * the end; the caller adds model.init, data, steps and out_dir. */
static const char RUN_FLAGS[] =
    "-c configs/tiny.yaml --set data.batch_size=8 --set data.val_fraction=0 "
    "--set eval.every=0 --set train.log_every=1000 --set checkpoint.every=0 "
    "--set checkpoint.keep=0 --set train.threads=1 --set optim.warmup_steps=1 "
    "--set optim.lr=3e-3 --set optim.min_lr=3e-4";

/* ------------------------------------------------------------------- files */

/* The reversal task of the cli fixtures: n JSONL lines, words drawn from seed,
 *   TASK_SFT        {"prompt": "abc=", "completion": "cba"},
 *   TASK_SFT_ROLES  the same with "role", alternating planner / caller,
 *   TASK_PAIRS      {"prompt": "abc=", "chosen": "abc", "rejected": "cba"}:
 *                   preference pairs that go against what the fixtures learned
 *                   (the reversal is their habit), so the preference has to be
 *                   learned and shows in a few steps. */
enum { TASK_SFT, TASK_SFT_ROLES, TASK_PAIRS };

static void write_task(const char *path, int n, uint64_t seed, int kind) {
    FILE *f = fopen(path, "w");
    cr_assert(f, "cannot create %s", path);
    Rng r;
    rng_seed(&r, seed);
    for (int i = 0; i < n; i++) {
        char s[8], rev[8];
        reversal_word(&r, s, rev);
        if (kind == TASK_PAIRS) {
            fprintf(f, "{\"prompt\": \"%s=\", \"chosen\": \"%s\", \"rejected\": \"%s\"}\n", s, s,
                    rev);
            continue;
        }
        fprintf(f, "{\"prompt\": \"%s=\", \"completion\": \"%s\"", s, rev);
        if (kind == TASK_SFT_ROLES) fprintf(f, ", \"role\": \"%s\"", i % 2 ? "caller" : "planner");
        fprintf(f, "}\n");
    }
    fclose(f);
}

static json_t *load_json(const char *path) {
    json_error_t e;
    json_t *root = json_load_file(path, 0, &e);
    cr_assert_not_null(root, "%s: %s", path, e.text);
    return root;
}

static double mean(const double *x, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += x[i];
    return s / n;
}

/* The run logged `steps` finite losses, and the mean of the last five is
 * below the mean of the first five by at least `drop` (relative). */
static void expect_learns(const char *run, const char *what, int steps, double drop) {
    double loss[512];
    int n = metric_values(run, "step", "loss", loss, 512);
    cr_assert_eq(n, steps, "%s: %d losses in %s/metrics.jsonl, not %d", what, n, run, steps);
    for (int i = 0; i < n; i++)
        cr_assert(isfinite(loss[i]), "%s: step %d loss %g", what, i + 1, loss[i]);
    double first = mean(loss, 5), last = mean(loss + n - 5, 5);
    cr_expect(last < first * (1 - drop), "%s: loss %.4f -> %.4f, not down by %.0f%%", what, first,
              last, drop * 100);
    fprintf(stderr, "%s: loss %.4f -> %.4f over %d steps\n", what, first, last, n);
}

/* run/step-<steps>, which must be a complete checkpoint. */
static void final_ckpt(char *buf, size_t cap, const char *run, int steps) {
    ckpt_dir_name(buf, cap, run, steps);
    char done[1100];
    snprintf(done, sizeof done, "%s/DONE", buf);
    cr_assert(path_exists(done), "no complete checkpoint %s", buf);
}

/* ------------------------------------------------------------------ models */

/* A host copy of tensor `name` of m (from host, gpt_copy_params_to_host). */
static const float *tensor_in(GPT *m, const float *host, const char *name, size_t *numel) {
    const ParamInfo *p = gpt_find_tensor(m, name);
    cr_assert_not_null(p, "no tensor %s", name);
    *numel = p->numel;
    return host + p->offset;
}

/* The checkpoint at dir loads (model_load_hf) as family `arch` of the shape of
 * the model it started from (`from`), to exactly the tensors of its
 * model.safetensors, each under its Hugging Face name. Returns the model. */
static GPT *expect_reloads(const char *dir, const char *from) {
    GPT *m = model_load_hf(dir, backend_cpu());
    cr_assert_not_null(m, "%s: %s", dir, err_msg());
    GPT *src = model_load_hf(from, backend_cpu());
    cr_assert_not_null(src, "%s: %s", from, err_msg());
    const GPTConfig *a = gpt_config(m), *b = gpt_config(src);
    cr_expect_eq(a->arch, b->arch, "%s: arch", dir);
    cr_expect_neq(a->arch, ARCH_GPT2, "%s: not a Llama family", dir);
    cr_expect(a->n_layer == b->n_layer && a->n_head == b->n_head && a->n_embd == b->n_embd &&
                  a->vocab_size == b->vocab_size && a->n_kv_head == b->n_kv_head &&
                  a->head_dim == b->head_dim && a->intermediate_size == b->intermediate_size &&
                  a->qk_norm == b->qk_norm && a->attn_bias == b->attn_bias &&
                  a->untied_head == b->untied_head && a->rope_theta == b->rope_theta &&
                  a->layer_norm_epsilon == b->layer_norm_epsilon &&
                  a->n_positions == b->n_positions,
              "%s: the checkpoint's config.json is not the shape of %s", dir, from);
    gpt_free(src);
    char path[700];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    SafeTensorsFile *f = safetensors_open(path);
    cr_assert_not_null(f, "%s", err_msg());
    float *host = host_params(m);
    cr_expect_eq(safetensors_count(f), gpt_num_tensors(m), "%s: tensors in the file", dir);
    for (int i = 0; i < gpt_num_tensors(m); i++) {
        const ParamInfo *p = gpt_tensor(m, i);
        const StTensor *t = safetensors_find(f, p->name);
        cr_assert_not_null(t, "%s: no %s in the file (Llama-family keys are the table names)",
                           path, p->name);
        float *w = xmalloc(p->numel * sizeof(float));
        cr_assert_eq(safetensors_read_f32(f, t, w, p->numel), 0, "%s", err_msg());
        cr_expect_eq(memcmp(w, host + p->offset, p->numel * sizeof(float)), 0,
                     "%s: %s loads to other values than the file holds", dir, p->name);
        free(w);
    }
    free(host);
    safetensors_close(f);
    return m;
}

/* m's logits on fixed inputs, with the inputs, in path (tests/check_hf_logits.py). */
static void write_logits(GPT *m, const char *path) {
    enum { B = 2, T = 10 };
    int in[B * T], tg[B * T], V = gpt_config(m)->vocab_size;
    for (int i = 0; i < B * T; i++) in[i] = (i * 37 + 11) % V, tg[i] = 0;
    gpt_forward(m, in, tg, B, T, NULL);
    float *l = xmalloc((size_t)B * T * V * sizeof(float));
    gpt_logits(m, l);
    StTensor ts[2] = {
        {.name = "inputs", .dtype = ST_I32, .ndim = 2, .shape = {B, T}, .data = in},
        {.name = "logits", .dtype = ST_F32, .ndim = 3, .shape = {B, T, V}, .data = l}};
    cr_assert_eq(safetensors_write(path, ts, 2, NULL), 0, "%s", err_msg());
    free(l);
}

/* transformers loads each of the n checkpoints (pairs of dir, logits file) to
 * the logits retort computed, or the check is skipped visibly. */
static void expect_transformers_logits(const char *const *pairs, int n, const char *what) {
    const char *argv[16] = {PYTHON, "tests/check_hf_logits.py"};
    for (int i = 0; i < 2 * n; i++) argv[2 + i] = pairs[i];
    argv[2 + 2 * n] = NULL;
    int rc = run_python(argv);
    if (rc == 77)
        fprintf(stderr, "SKIP: transformers loading %s: no %s with transformers (make fixtures "
                        "creates it)\n", what, PYTHON);
    else
        cr_expect_eq(rc, 0, "transformers does not load %s to retort's logits (above)", what);
}

/* --------------------------------------------------------------------- SFT */

/* An sft file for a model of vocabulary V (EOS V - 1) of n examples: a prompt
 * of 3-5 ids in [0, 12), the separator 12, then the prompt reversed and EOS
 * as the completion (loss mask 1). */
static void write_token_sft(const char *path, int V, int n, uint64_t seed) {
    DatasetWriter *w = dataset_writer_open(path, SCHEMA_SFT, V, V - 1, V - 1, "test");
    cr_assert(w, "%s", err_msg());
    Rng r;
    rng_seed(&r, seed);
    for (int i = 0; i < n; i++) {
        uint32_t t[16];
        uint8_t mask[16];
        int k = 3 + (int)rng_below(&r, 3), len = 0;
        for (int j = 0; j < k; j++) t[len] = (uint32_t)rng_below(&r, 12), mask[len++] = 0;
        t[len] = 12, mask[len++] = 0;
        for (int j = 0; j < k; j++) t[len] = t[k - 1 - j], mask[len++] = 1;
        t[len] = (uint32_t)(V - 1), mask[len++] = 1;
        cr_assert_eq(dataset_writer_add(w, t, mask, len, -1), 0, "%s", err_msg());
    }
    cr_assert_eq(dataset_writer_close(w), 0, "%s", err_msg());
}

/* The parity fixtures (vocabularies of 64 and 67 tokens, 16 positions) train
 * through `retort train` from model.init on token data, and their checkpoints
 * reload and load in transformers. */
Test(cli_families, sft_from_llama_and_qwen3_parity_fixtures, .timeout = 120) {
    static const char *const names[] = {"llama_gqa2_untied", "qwen3"};
    char dir[256], from[300], data[400], run[400], ckpt[2][600], logits[2][600];
    make_temp_dir(dir, sizeof dir, "clifam-sft");
    for (int i = 0; i < 2; i++) {
        snprintf(from, sizeof from, FAMILIES "/%s", names[i]);
        if (!path_exists(from)) {
            fprintf(stderr, "SKIP: no %s fixture\n", from);
            cr_skip_test();
        }
        GPT *src = model_load_hf(from, backend_cpu());
        cr_assert_not_null(src, "%s", err_msg());
        int V = gpt_config(src)->vocab_size;
        gpt_free(src);
        snprintf(data, sizeof data, "%s/%s.h5", dir, names[i]);
        write_token_sft(data, V, 200, 10 + i);
        snprintf(run, sizeof run, "%s/run-%s", dir, names[i]);
        RUN(dir, "train %s --set model.init=%s --set data.train=%s --set data.seq_len=12 "
                 "--set train.steps=40 --set train.out_dir=%s", RUN_FLAGS, from, data, run);
        expect_learns(run, names[i], 40, 0.2);
        final_ckpt(ckpt[i], sizeof ckpt[i], run, 40);
        GPT *m = expect_reloads(ckpt[i], from);
        snprintf(logits[i], sizeof logits[i], "%s/logits-%s.safetensors", dir, names[i]);
        write_logits(m, logits[i]);
        gpt_free(m);
    }
    const char *pairs[] = {ckpt[0], logits[0], ckpt[1], logits[1]};
    expect_transformers_logits(pairs, 2, "the checkpoints of llama_gqa2_untied and qwen3");
    rm_rf(dir);
}

/* The byte-vocabulary Llama: data build -> train (stopped at step 10 and
 * resumed, against an uninterrupted run) -> generate from the checkpoint, and
 * transformers loads the checkpoint. */
Test(cli_families, sft_llama_data_build_train_resume_generate, .timeout = 120) {
    char dir[256], run[400], ckpt[600], logits[600], path[700];
    make_temp_dir(dir, sizeof dir, "clifam-llama");
    snprintf(path, sizeof path, "%s/task.jsonl", dir);
    write_task(path, 200, 3, TASK_SFT);
    RUN(dir, "data build --schema sft --input %s --out %s/task.h5 -q", path, dir);
    const char *init = CLI_FAMILIES "/llama";
    RUN(dir, "train %s --set model.init=%s --set data.train=%s/task.h5 --set data.seq_len=16 "
             "--set train.steps=30 --set checkpoint.every=10 --set train.out_dir=%s/whole",
        RUN_FLAGS, init, dir, dir);
    snprintf(run, sizeof run, "%s/whole", dir);
    expect_learns(run, "llama sft", 30, 0.05);
    /* stopped as by SIGTERM during step 10, resumed from its checkpoint */
    char cmd[3072];
    snprintf(cmd, sizeof cmd, "RETORT_STOP_AT_STEP=10 %s train %s --set model.init=%s "
             "--set data.train=%s/task.h5 --set data.seq_len=16 --set train.steps=30 "
             "--set checkpoint.every=10 --set train.out_dir=%s/resumed >>%s/log 2>&1",
             bin(), RUN_FLAGS, init, dir, dir, dir);
    cr_assert_eq(system(cmd), 0, "the stopped run failed");
    snprintf(path, sizeof path, "%s/resumed/step-00000020", dir);
    cr_assert(!path_exists(path), "the run did not stop at step 10");
    RUN(dir, "train %s --set model.init=%s --set data.train=%s/task.h5 --set data.seq_len=16 "
             "--set train.steps=30 --set checkpoint.every=10 --set train.out_dir=%s/resumed "
             "--resume", RUN_FLAGS, init, dir, dir);
    double a[64], b[64];
    snprintf(path, sizeof path, "%s/resumed", dir);
    int na = metric_values(run, "step", "loss", a, 64);
    int nb = metric_values(path, "step", "loss", b, 64);
    cr_assert_eq(na, 30);
    cr_assert_eq(nb, 30, "the resumed run logged %d steps", nb);
    for (int i = 0; i < 30; i++)
        cr_expect_eq(a[i], b[i], "step %d: resumed loss %.17g, uninterrupted %.17g", i + 1, b[i],
                     a[i]);

    final_ckpt(ckpt, sizeof ckpt, run, 30);
    GPT *m = expect_reloads(ckpt, init);
    snprintf(logits, sizeof logits, "%s/logits.safetensors", dir);
    write_logits(m, logits);
    gpt_free(m);
    /* the checkpoint generates text with the byte tokenizer it was trained with */
    snprintf(path, sizeof path, "%s/prompts.jsonl", dir);
    write_text(path, "{\"prompt\": \"abc=\"}\n{\"prompt\": \"fed=\"}\n");
    RUN(dir, "generate --model %s --input %s --out %s/gen.jsonl -n 6 --temperature 0", ckpt, path,
        dir);
    snprintf(path, sizeof path, "%s/gen.jsonl", dir);
    size_t len;
    char *text = read_file(path, &len);
    cr_assert(text, "no %s", path);
    assert_contains(text, "\"completions\"");
    free(text);
    const char *pairs[] = {ckpt, logits};
    expect_transformers_logits(pairs, 1, "the trained byte-vocabulary llama checkpoint");
    rm_rf(dir);
}

/* -------------------------------------------------------------- generation */

static json_t *expected_of(const char *name) {
    char path[300];
    snprintf(path, sizeof path, CLI_FAMILIES "/%s/expected.json", name);
    return load_json(path);
}

/* The JSONL prompts of expected.json's generations, in dir/prompts.jsonl. */
static void write_prompts(const char *dir, json_t *gens) {
    char path[300];
    snprintf(path, sizeof path, "%s/prompts.jsonl", dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    for (size_t i = 0; i < json_array_size(gens); i++) {
        json_t *line = json_pack("{s:O}", "prompt",
                                 json_object_get(json_array_get(gens, i), "prompt"));
        char *s = json_dumps(line, JSON_COMPACT);
        fprintf(f, "%s\n", s);
        free(s);
        json_decref(line);
    }
    fclose(f);
}

/* The first completion of line i of a jsonl_lines array. */
static const char *first_completion(json_t *lines, size_t i) {
    json_t *c = json_object_get(json_array_get(lines, i), "completions");
    return json_string_value(json_array_get(c, 0));
}

static int same_file(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    char *x = read_file(a, &na), *y = read_file(b, &nb);
    cr_assert(x && y, "%s or %s is missing", a, b);
    int same = na == nb && !memcmp(x, y, na);
    free(x);
    free(y);
    return same;
}

Test(cli_families, generation_equals_transformers, .timeout = 120) {
    static const char *const names[] = {"llama", "qwen3", "qwen2_teacher"};
    char dir[256], out[600], model[300];
    make_temp_dir(dir, sizeof dir, "clifam-gen");
    for (int n = 0; n < 3; n++) {
        json_t *x = expected_of(names[n]), *gens = json_object_get(x, "generations");
        int new_tokens = (int)json_integer_value(json_object_get(x, "max_new_tokens"));
        cr_assert(json_array_size(gens) > 0 && new_tokens > 0);
        write_prompts(dir, gens);
        snprintf(model, sizeof model, CLI_FAMILIES "/%s", names[n]);
        RUN(dir, "generate --model %s --input %s/prompts.jsonl --out %s/greedy.jsonl -n %d "
                 "--temperature 0", model, dir, dir, new_tokens);
        RUN(dir, "generate --model %s --input %s/prompts.jsonl --out %s/beam.jsonl -n %d "
                 "--beams 3 --samples 3", model, dir, dir, new_tokens);
        snprintf(out, sizeof out, "%s/greedy.jsonl", dir);
        json_t *greedy = jsonl_lines(out);
        snprintf(out, sizeof out, "%s/beam.jsonl", dir);
        json_t *beam = jsonl_lines(out);
        cr_assert_eq(json_array_size(greedy), json_array_size(gens));
        cr_assert_eq(json_array_size(beam), json_array_size(gens));
        for (size_t i = 0; i < json_array_size(gens); i++) {
            json_t *want = json_array_get(gens, i);
            const char *p = json_string_value(json_object_get(want, "prompt"));
            json_t *got = json_object_get(json_array_get(greedy, i), "completions");
            cr_expect_str_eq(json_string_value(json_array_get(got, 0)),
                             json_string_value(json_object_get(want, "greedy")),
                             "%s: greedy from %s", names[n], p);
            json_t *texts = json_object_get(json_array_get(beam, i), "completions");
            json_t *scores = json_object_get(json_array_get(beam, i), "scores");
            json_t *wt = json_object_get(want, "beam3");
            json_t *ws = json_object_get(want, "beam3_scores");
            cr_assert_eq(json_array_size(texts), 3, "%s: beams of %s", names[n], p);
            for (size_t k = 0; k < 3; k++) {
                cr_expect_str_eq(json_string_value(json_array_get(texts, k)),
                                 json_string_value(json_array_get(wt, k)),
                                 "%s: beam %zu from %s", names[n], k + 1, p);
                double s = json_number_value(json_array_get(scores, k)),
                       w = json_number_value(json_array_get(ws, k));
                cr_expect(fabs(s - w) <= 1e-4 * fmax(1, fabs(w)),
                          "%s: beam %zu score of %s: %.7f, transformers %.7f", names[n], k + 1, p,
                          s, w);
            }
        }
        json_decref(greedy);
        json_decref(beam);
        json_decref(x);
    }

    /* sampling: a seed gives the same samples twice, another seed others, and
     * top-k 1 is greedy (llama) */
    snprintf(model, sizeof model, CLI_FAMILIES "/llama");
    json_t *x = expected_of("llama");
    write_prompts(dir, json_object_get(x, "generations"));
    for (int i = 0; i < 3; i++)
        RUN(dir, "generate --model %s --input %s/prompts.jsonl --out %s/s%d.jsonl -n 6 "
                 "--temperature 1.5 --top-k 0 --samples 4 --seed %d", model, dir, dir, i,
            i < 2 ? 5 : 6);
    char a[600], b[600];
    snprintf(a, sizeof a, "%s/s0.jsonl", dir);
    snprintf(b, sizeof b, "%s/s1.jsonl", dir);
    cr_expect(same_file(a, b), "two runs with --seed 5 differ");
    snprintf(b, sizeof b, "%s/s2.jsonl", dir);
    cr_expect(!same_file(a, b), "--seed 5 and --seed 6 gave the same 20 samples");
    json_t *s = jsonl_lines(a);
    for (size_t i = 0; i < json_array_size(s); i++)
        cr_expect_eq(json_array_size(json_object_get(json_array_get(s, i), "completions")), 4);
    json_decref(s);
    RUN(dir, "generate --model %s --input %s/prompts.jsonl --out %s/top1.jsonl -n 6 "
             "--temperature 1 --top-k 1 --seed 9", model, dir, dir);
    RUN(dir, "generate --model %s --input %s/prompts.jsonl --out %s/greedy.jsonl -n 6 "
             "--temperature 0", model, dir, dir);
    json_t *t1 = (snprintf(a, sizeof a, "%s/top1.jsonl", dir), jsonl_lines(a));
    json_t *g = (snprintf(b, sizeof b, "%s/greedy.jsonl", dir), jsonl_lines(b));
    for (size_t i = 0; i < json_array_size(g); i++)
        cr_expect_str_eq(first_completion(t1, i), first_completion(g, i),
                         "top-k 1 sampling is not greedy on line %zu", i + 1);
    json_decref(t1);
    json_decref(g);
    /* --prompt prints prompt + greedy continuation */
    RUN(dir, "generate --model %s --prompt abc= -n 6 --temperature 0", model);
    char *log = read_file((snprintf(a, sizeof a, "%s/log", dir), a), &(size_t){0});
    char want[64];
    snprintf(want, sizeof want, "abc=%s\n",
             json_string_value(json_object_get(json_array_get(json_object_get(x, "generations"), 0),
                                               "greedy")));
    assert_contains(log, want);
    free(log);
    json_decref(x);
    rm_rf(dir);
}

/* ---------------------------------------------------------------------- KD */

Test(cli_families, kd_word_level_online_offline_and_sequence_level, .timeout = 120) {
    char dir[256], path[700], run[600];
    make_temp_dir(dir, sizeof dir, "clifam-kd");
    const char *teacher = CLI_FAMILIES "/qwen2_teacher", *student = CLI_FAMILIES "/qwen2_student";
    snprintf(path, sizeof path, "%s/task.jsonl", dir);
    write_task(path, 200, 4, TASK_SFT);
    RUN(dir, "data build --schema sft --input %s --out %s/task.h5 -q", path, dir);

    /* online: the teacher runs beside the student; a Qwen3 student too */
    RUN(dir, "train %s --set model.init=%s --set objective.type=kd --set kd.teacher=%s "
             "--set kd.alpha=0.9 --set data.train=%s/task.h5 --set data.seq_len=16 "
             "--set train.steps=40 --set train.out_dir=%s/online", RUN_FLAGS, student, teacher,
        dir, dir);
    snprintf(run, sizeof run, "%s/online", dir);
    expect_learns(run, "online kd, qwen2 student", 40, 0.3);
    double div[64];
    cr_assert_eq(metric_values(run, "step", "kd", div, 64), 40);
    cr_expect(mean(div + 35, 5) < 0.7 * mean(div, 5), "divergence from the teacher %.4f -> %.4f",
              mean(div, 5), mean(div + 35, 5));
    char ckpt[1100];
    final_ckpt(ckpt, sizeof ckpt, run, 40);
    gpt_free(expect_reloads(ckpt, student));
    RUN(dir, "train %s --set model.init=" CLI_FAMILIES "/qwen3 --set objective.type=kd "
             "--set kd.teacher=%s --set data.train=%s/task.h5 --set data.seq_len=16 "
             "--set train.steps=10 --set train.out_dir=%s/online-qwen3", RUN_FLAGS, teacher, dir,
        dir);
    double kd[16];
    snprintf(run, sizeof run, "%s/online-qwen3", dir);
    cr_assert_eq(metric_values(run, "step", "kd", kd, 16), 10, "the qwen3 student's kd metric");
    for (int i = 0; i < 10; i++) cr_expect(isfinite(kd[i]) && kd[i] > 0, "kd %g", kd[i]);

    /* offline: the teacher's top-8 log-probs stored by generate, then the
     * student trained on them without the teacher; the examples' targets are
     * the teacher's best beam, which must be transformers' best beam */
    json_t *x = expected_of("qwen2_teacher"), *gens = json_object_get(x, "generations");
    snprintf(path, sizeof path, "%s/prompts.jsonl", dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    for (size_t i = 0; i < json_array_size(gens); i++)
        fprintf(f, "{\"prompt\": \"%s\"}\n",
                json_string_value(json_object_get(json_array_get(gens, i), "prompt")));
    Rng r;
    rng_seed(&r, 8);
    for (int i = 0; i < 35; i++) {
        char s[8], rev[8];
        reversal_word(&r, s, rev);
        fprintf(f, "{\"prompt\": \"%s=\"}\n", s);
    }
    fclose(f);
    RUN(dir, "generate --model %s --input %s --out %s/kd.h5 -n 6 --beams 3 --select best "
             "--store-topk 8", teacher, path, dir);
    RUN(dir, "data validate %s/kd.h5", dir);
    Dataset ds;
    snprintf(path, sizeof path, "%s/kd.h5", dir);
    cr_assert_eq(dataset_open(&ds, path), 0, "%s", err_msg());
    cr_expect_eq(ds.schema, SCHEMA_KD);
    cr_expect_eq(ds.topk, 8);
    cr_assert_eq(ds.n_docs, 40, "one example per prompt");
    for (size_t i = 0; i < json_array_size(gens); i++) {
        json_t *g = json_array_get(gens, i), *ids = json_object_get(g, "beam3_ids");
        json_t *best = json_array_get(ids, 0);
        const char *p = json_string_value(json_object_get(g, "prompt"));
        int64_t at = ds.offsets[i], n = ds.offsets[i + 1] - at, np = (int64_t)strlen(p);
        /* prompt + best beam + EOS (a beam that ended early carries its EOS once) */
        cr_assert_eq(n, np + (int64_t)json_array_size(best) + 1, "example %zu has %lld tokens", i,
                     (long long)n);
        for (int64_t j = 0; j < np; j++) cr_expect_eq(ds.tokens[at + j], (uint32_t)p[j]);
        for (size_t j = 0; j < json_array_size(best); j++)
            cr_expect_eq(ds.tokens[at + np + (int64_t)j],
                         (uint32_t)json_integer_value(json_array_get(best, j)),
                         "example %zu (%s): token %zu is not transformers' best beam", i, p, j);
        cr_expect_eq(ds.tokens[at + n - 1], 256u, "example %zu ends with EOS", i);
    }
    dataset_close(&ds);
    json_decref(x);
    RUN(dir, "train %s --set model.init=%s --set objective.type=kd --set kd.alpha=0.9 "
             "--set data.train=%s/kd.h5 --set data.seq_len=16 --set train.steps=40 "
             "--set train.out_dir=%s/offline", RUN_FLAGS, student, dir, dir);
    snprintf(run, sizeof run, "%s/offline", dir);
    expect_learns(run, "offline top-8 kd", 40, 0.3);

    /* sequence-level: the best beam as the target of plain SFT */
    RUN(dir, "train %s --set model.init=%s --set data.train=%s/kd.h5 --set data.seq_len=16 "
             "--set train.steps=40 --set train.out_dir=%s/seqkd", RUN_FLAGS, student, dir, dir);
    snprintf(run, sizeof run, "%s/seqkd", dir);
    expect_learns(run, "sequence-level kd", 40, 0.3);
    final_ckpt(ckpt, sizeof ckpt, run, 40);
    gpt_free(expect_reloads(ckpt, student));
    rm_rf(dir);
}

/* --------------------------------------------------------------- DPO, ORPO */

Test(cli_families, dpo_and_orpo_on_llama, .timeout = 120) {
    char dir[256], path[700], run[600];
    make_temp_dir(dir, sizeof dir, "clifam-dpo");
    snprintf(path, sizeof path, "%s/pairs.jsonl", dir);
    write_task(path, 64, 5, TASK_PAIRS);
    RUN(dir, "data build --schema pref --input %s --out %s/pairs.h5 -q", path, dir);
    const char *init = CLI_FAMILIES "/llama";
    static const char pref[] = "--set data.seq_len=16 --set data.batch_size=4 --set train.steps=20";

    /* the reference is the initial model: the first loss is ln 2 */
    RUN(dir, "train %s %s --set model.init=%s --set objective.type=dpo --set dpo.beta=0.5 "
             "--set data.train=%s/pairs.h5 --set train.out_dir=%s/dpo", RUN_FLAGS, pref, init,
        dir, dir);
    snprintf(run, sizeof run, "%s/dpo", dir);
    double loss[32], acc[32];
    cr_assert_eq(metric_values(run, "step", "loss", loss, 32), 20);
    cr_expect(fabs(loss[0] - log(2.0)) < 1e-6, "dpo step 1: %.9f, not ln 2 (policy = reference)",
              loss[0]);
    expect_learns(run, "dpo", 20, 0.2);
    cr_assert_eq(metric_values(run, "step", "rewards/accuracies", acc, 32), 20);
    cr_expect(mean(acc + 15, 5) >= 0.8, "dpo reward accuracy at the end %.2f", mean(acc + 15, 5));

    /* the same with the reference's log-probs precomputed: the same losses */
    RUN(dir, "dpo precompute-ref --model %s --data %s/pairs.h5 --seq-len 16", init, dir);
    RUN(dir, "train %s %s --set model.init=%s --set objective.type=dpo --set dpo.beta=0.5 "
             "--set dpo.reference=precomputed --set data.train=%s/pairs.h5 "
             "--set train.out_dir=%s/dpo-pre", RUN_FLAGS, pref, init, dir, dir);
    double pre[32];
    snprintf(path, sizeof path, "%s/dpo-pre", dir);
    cr_assert_eq(metric_values(path, "step", "loss", pre, 32), 20);
    for (int i = 0; i < 20; i++)
        cr_expect(fabs(pre[i] - loss[i]) <= 1e-5 * fabs(loss[i]),
                  "step %d: precomputed reference %.9g, online %.9g", i + 1, pre[i], loss[i]);

    /* another reference model (the untrained Qwen2 student: the same
     * vocabulary, another family and shape) */
    RUN(dir, "train %s %s --set model.init=%s --set objective.type=dpo --set dpo.beta=0.5 "
             "--set dpo.reference=" CLI_FAMILIES "/qwen2_student --set data.train=%s/pairs.h5 "
             "--set train.out_dir=%s/dpo-ref", RUN_FLAGS, pref, init, dir, dir);
    snprintf(run, sizeof run, "%s/dpo-ref", dir);
    double ref[32];
    cr_assert_eq(metric_values(run, "step", "loss", ref, 32), 20);
    cr_expect(fabs(ref[0] - log(2.0)) > 1e-3, "a different reference gave ln 2 at step 1");
    expect_learns(run, "dpo with a qwen2 reference", 20, 0.2);

    RUN(dir, "train %s %s --set model.init=%s --set objective.type=orpo --set orpo.beta=0.5 "
             "--set data.train=%s/pairs.h5 --set train.out_dir=%s/orpo", RUN_FLAGS, pref, init,
        dir, dir);
    snprintf(run, sizeof run, "%s/orpo", dir);
    expect_learns(run, "orpo", 20, 0.2);
    double lor[32];
    cr_assert_eq(metric_values(run, "step", "log_odds_ratio", lor, 32), 20);
    cr_expect(mean(lor + 15, 5) > mean(lor, 5) + 0.5, "orpo log odds ratio %.4f -> %.4f",
              mean(lor, 5), mean(lor + 15, 5));
    char ckpt[1100];
    final_ckpt(ckpt, sizeof ckpt, run, 20);
    gpt_free(expect_reloads(ckpt, init));
    rm_rf(dir);
}

/* ------------------------------------------------------ stages and freezing */

/* Tensors of a and b (both loaded models of one shape) whose names match
 * `frozen` (fnmatch) are bit-equal, and every other tensor differs. */
static void expect_frozen(const char *a_dir, const char *b_dir, int (*frozen)(const char *)) {
    GPT *a = model_load_hf(a_dir, backend_cpu()), *b = model_load_hf(b_dir, backend_cpu());
    cr_assert(a && b, "%s", err_msg());
    float *ha = host_params(a), *hb = host_params(b);
    int n_frozen = 0, n_moved = 0;
    for (int i = 0; i < gpt_num_tensors(a); i++) {
        const char *name = gpt_tensor(a, i)->name;
        size_t na, nb;
        const float *x = tensor_in(a, ha, name, &na), *y = tensor_in(b, hb, name, &nb);
        cr_assert_eq(na, nb);
        int same = !memcmp(x, y, na * sizeof(float));
        if (frozen(name)) {
            cr_expect(same, "%s: frozen, but %s and %s differ", name, a_dir, b_dir);
            n_frozen++;
        } else {
            cr_expect(!same, "%s: trained, but %s and %s hold the same values", name, a_dir, b_dir);
            n_moved++;
        }
    }
    cr_expect(n_frozen > 0 && n_moved > 0, "%d frozen, %d trained", n_frozen, n_moved);
    free(ha);
    free(hb);
    gpt_free(a);
    gpt_free(b);
}

static int in_layer0(const char *name) { return !strncmp(name, "model.layers.0.", 15); }
static int outside_layer1(const char *name) {
    return strncmp(name, "model.layers.1.", 15) && strcmp(name, "model.norm.weight");
}

Test(cli_families, glpft_stages_with_freezing_on_llama, .timeout = 120) {
    char dir[256], path[700];
    make_temp_dir(dir, sizeof dir, "clifam-stages");
    snprintf(path, sizeof path, "%s/roles.jsonl", dir);
    write_task(path, 120, 6, TASK_SFT_ROLES);
    RUN(dir, "data build --schema sft --input %s --out %s/roles.h5 --role-field role -q", path,
        dir);
    const char *init = CLI_FAMILIES "/llama";
    snprintf(path, sizeof path, "%s/base.yaml", dir);
    char text[2048];
    snprintf(text, sizeof text,
             "model: {init: %s}\n"
             "data: {train: %s/roles.h5, seq_len: 16, batch_size: 8}\n"
             "optim: {lr: 3.0e-3, min_lr: 3.0e-4, warmup_steps: 1}\n"
             "train: {steps: 12, threads: 1, log_every: 1000}\n"
             "checkpoint: {every: 0, keep: 0}\n", init, dir);
    write_text(path, text);
    snprintf(path, sizeof path, "%s/plan.yaml", dir);
    snprintf(text, sizeof text,
             "base: base.yaml\n"
             "out_dir: %s/glpft\n"
             "stages:\n"
             "  - name: global\n"
             "    set: {finetune.freeze: \"model.layers.0.*\"}\n"
             "  - name: planner\n"
             "    init_from: global\n"
             "    set: {data.role: planner, finetune.train_only: \"model.layers.1.*, "
             "model.norm.weight\", train.steps: 8}\n"
             "  - name: caller\n"
             "    init_from: global\n"
             "    set: {data.role: caller, train.steps: 8}\n", dir);
    write_text(path, text);
    RUN(dir, "stages -c %s", path);
    char global[1100], planner[1100], caller[1100], run[700];
    snprintf(run, sizeof run, "%s/glpft/global", dir);
    final_ckpt(global, sizeof global, run, 12);
    snprintf(run, sizeof run, "%s/glpft/planner", dir);
    final_ckpt(planner, sizeof planner, run, 8);
    snprintf(run, sizeof run, "%s/glpft/caller", dir);
    final_ckpt(caller, sizeof caller, run, 8);
    /* by name: layer 0 keeps the fixture's bits through the global stage */
    expect_frozen(init, global, in_layer0);
    /* by layer: the planner trains layer 1 and the final norm only */
    expect_frozen(global, planner, outside_layer1);
    /* the caller stage trains everything from the global checkpoint */
    GPT *g = expect_reloads(caller, init);
    gpt_free(g);
    double loss[32];
    cr_expect_eq(metric_values(run, "step", "loss", loss, 32), 8);
    for (int i = 0; i < 8; i++) cr_expect(isfinite(loss[i]));

    /* a pattern that would freeze q_proj but train k_proj and v_proj (one
     * fused weight) is refused, naming both */
    snprintf(path, sizeof path, "%s/log", dir);
    remove(path);
    char args[2048];
    snprintf(args, sizeof args,
             "train %s --set model.init=%s --set data.train=%s/roles.h5 --set data.seq_len=16 "
             "--set train.steps=2 --set 'finetune.freeze=*.q_proj.weight' "
             "--set train.out_dir=%s/bad",
             RUN_FLAGS, init, dir, dir);
    cr_expect_eq(retort(dir, args), 1);
    char *log = read_file(path, &(size_t){0});
    cr_assert(log);
    assert_contains(log, "finetune.freeze: ");
    assert_contains(log, "q_proj");
    assert_contains(log, "k_proj");
    free(log);

    /* gpt_set_layers_trainable (the layer range API) on the Llama table */
    GPT *m = model_load_hf(init, backend_cpu());
    cr_assert(m, "%s", err_msg());
    cr_assert_eq(gpt_set_layers_trainable(m, 0, 0, 0), 0, "%s", err_msg());
    for (int i = 0; i < gpt_num_tensors(m); i++)
        cr_expect_eq(gpt_tensor_trainable(m, i), !in_layer0(gpt_tensor(m, i)->name), "%s",
                     gpt_tensor(m, i)->name);
    cr_expect_eq(gpt_set_layers_trainable(m, 2, 2, 0), -1, "layer 2 of 2");
    gpt_free(m);
    rm_rf(dir);
}
