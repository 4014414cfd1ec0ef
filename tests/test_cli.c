/* tests/test_cli.c — the command line end to end, as a researcher uses it:
 * JSONL -> `retort data build` -> HDF5 -> `retort train` -> checkpoint ->
 * `retort generate` (JSONL out, and a kd dataset with candidates and teacher
 * top-K) -> `retort data validate` -> `retort train` of a student on the kd
 * file. Plumbing, not quality: every command must succeed and its outputs
 * must have the promised shape. Then the --device / --threads options of every
 * command that loads a model. Runs the binary of this build (RETORT_BIN). */
#include <criterion/criterion.h>

#include <jansson.h>

#include "data/h5data.h"
#include "tests/testutil_cli.h"
#include "model/backend.h"
#include "model/checkpoint.h"
#include "model/model_io.h"

Test(cli, jsonl_to_hdf5_to_train_to_generate_to_kd_to_student, .timeout = 240) {
    char dir[256], path[512];
    make_temp_dir(dir, sizeof dir, "cli");
    /* a synthetic task: "abc=" -> "cba" */
    snprintf(path, sizeof path, "%s/train.jsonl", dir);
    FILE *f = fopen(path, "w");
    FILE *p = fopen((snprintf(path, sizeof path, "%s/prompts.jsonl", dir), path), "w");
    cr_assert(f && p);
    Rng r;
    rng_seed(&r, 3);
    for (int i = 0; i < 200; i++) {
        char s[8], rev[8];
        reversal_word(&r, s, rev);
        fprintf(f, "{\"prompt\": \"%s=\", \"completion\": \"%s\"}\n", s, rev);
        if (i < 5) fprintf(p, "{\"prompt\": \"%s=\", \"gold\": \"%s\"}\n", s, rev);
    }
    fclose(f);
    fclose(p);

    RUN(dir, "data build --schema sft --input %s/train.jsonl --out %s/train.h5 -q", dir, dir);
    static const char small[] =
        "--set model.n_layer=1 --set model.n_head=2 --set model.n_embd=32 "
        "--set model.n_positions=32 --set data.seq_len=16 --set data.batch_size=8 "
        "--set data.val_fraction=0 --set eval.every=0 --set train.log_every=1000 "
        "--set checkpoint.every=0 --set train.threads=1";
    RUN(dir, "train -c configs/tiny.yaml %s --set data.train=%s/train.h5 --set train.steps=40 "
             "--set train.out_dir=%s/teacher", small, dir, dir);
    char model[512];
    ckpt_dir_name(model, sizeof model, (snprintf(path, sizeof path, "%s/teacher", dir), path), 40);
    cr_assert(path_exists(model), "no checkpoint at %s", model);

    RUN(dir, "generate --model %s --input %s/prompts.jsonl --out %s/out.jsonl -n 6 "
             "--temperature 0 --stop \"\\n\"", model, dir, dir);
    snprintf(path, sizeof path, "%s/out.jsonl", dir);
    f = fopen(path, "r");
    cr_assert(f);
    int lines = 0;
    json_error_t e;
    json_t *j;
    while ((j = json_loadf(f, JSON_DISABLE_EOF_CHECK, &e))) {
        cr_expect(json_is_string(json_object_get(j, "gold")), "input fields are kept");
        cr_expect_eq(json_array_size(json_object_get(j, "completions")), 1);
        json_decref(j);
        lines++;
    }
    fclose(f);
    cr_expect_eq(lines, 5);

    RUN(dir, "generate --model %s --input %s/prompts.jsonl --out %s/kd.h5 -n 6 --beams 3 "
             "--samples 3 --store-topk 4 --select bleu --reference-field gold", model, dir, dir);
    RUN(dir, "data validate %s/kd.h5", dir);
    Dataset ds;
    snprintf(path, sizeof path, "%s/kd.h5", dir);
    cr_assert_eq(dataset_open(&ds, path), 0, "%s", err_msg());
    cr_expect_eq(ds.schema, SCHEMA_KD);
    cr_expect_eq(ds.n_docs, 5);
    cr_expect_eq(ds.n_cand, 15, "3-best of 5 prompts");
    cr_expect_eq(ds.topk, 4);
    dataset_close(&ds);

    RUN(dir, "train -c configs/tiny.yaml %s --set data.train=%s/kd.h5 --set data.batch_size=2 "
             "--set train.steps=3 --set optim.warmup_steps=1 --set train.out_dir=%s/student", small, dir, dir);
    ckpt_dir_name(model, sizeof model, (snprintf(path, sizeof path, "%s/student", dir), path), 3);
    cr_expect(path_exists(model), "the student trained on the kd file: %s", model);
    rm_rf(dir);
}

/* The whole log of a run in dir, as one string (caller frees). */
static char *read_log(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/log", dir);
    FILE *f = fopen(path, "r");
    cr_assert(f, "no log at %s", path);
    char *buf = calloc(1, 65536);
    cr_assert(buf);
    size_t n = fread(buf, 1, 65535, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

Test(cli, device_reports_a_usable_gpu_or_why_not) {
    char dir[256];
    make_temp_dir(dir, sizeof dir, "cli-device");
    int rc = retort(dir, "device");
    char *log = read_log(dir);
    if (rc == 0) { /* a machine with a GPU */
        cr_expect(strstr(log, "the runtime is CUDA"), "%s", log);
        cr_expect(strstr(log, "compute capability"), "%s", log);
        cr_expect(strstr(log, "selected: device 0; a test kernel ran"), "%s", log);
    } else {
        cr_expect_eq(rc, 1, "%s", log);
        cr_expect(strstr(log, "retort device: error: no usable CUDA device") ||
                      strstr(log, "retort device: error: this retort was built without CUDA"),
                  "the reason is missing: %s", log);
    }
    free(log);
    rm_rf(dir);
}

Test(cli, stages_under_a_launcher_is_refused) {
    char dir[256];
    make_temp_dir(dir, sizeof dir, "cli-stages");
    setenv("RANK", "1", 1);
    setenv("WORLD_SIZE", "2", 1);
    setenv("LOCAL_RANK", "1", 1);
    int rc = retort(dir, "stages -c configs/glpft.yaml");
    char *log = read_log(dir);
    cr_expect_eq(rc, 1, "%s", log);
    cr_expect(strstr(log, "the torchrun launch started rank 1 of 2, but stages run in one "
                          "process"),
              "%s", log);
    free(log);
    rm_rf(dir);
}

/* ---- --device and --threads on every command that loads a model ---- */

/* A tiny random byte-level model, the prompts, agent tasks and preference
 * pairs the six commands read, all under dir. */
static void make_inputs(const char *dir) {
    char path[512];
    GPTConfig cfg = {.n_layer = 1, .n_head = 2, .n_embd = 32, .vocab_size = 257,
                     .n_positions = 128, .layer_norm_epsilon = 1e-5f};
    GPT *m = gpt_create(&cfg, backend_cpu());
    cr_assert(m, "%s", err_msg());
    gpt_init_random(m, 7);
    snprintf(path, sizeof path, "%s/model", dir);
    cr_assert_eq(mkdir_p(path), 0);
    cr_assert_eq(model_save_hf(m, path), 0, "%s", err_msg());
    gpt_free(m);
    FILE *f = fopen((snprintf(path, sizeof path, "%s/prompts.jsonl", dir), path), "w");
    FILE *p = fopen((snprintf(path, sizeof path, "%s/pref.jsonl", dir), path), "w");
    cr_assert(f && p);
    static const char *const words[] = {"abc", "cab", "bca", "aab"};
    for (int i = 0; i < 4; i++) {
        fprintf(f, "{\"prompt\": \"%s=\", \"gold\": \"%c%c%c\"}\n", words[i], words[i][2],
                words[i][1], words[i][0]);
        fprintf(p, "{\"prompt\": \"%s=\", \"chosen\": \"%c%c%c\", \"rejected\": \"%s\"}\n",
                words[i], words[i][2], words[i][1], words[i][0], words[i]);
    }
    fclose(f);
    fclose(p);
    RUN(dir, "agent make-data --out %s/agent --train 0 --val 0 --test 2", dir);
}

/* The six commands, writing under out (a directory made here, holding a fresh
 * pref file for precompute-ref), each with the options flags; returns how many
 * exited with status want. */
static int run_model_commands(const char *dir, const char *out, const char *flags, int want) {
    char args[3072];
    RUN(dir, "data build --schema pref --input %s/pref.jsonl --out %s/pref.h5 -q", dir, out);
    const char *cmds[6] = {
        "generate --model %s/model --input %s/prompts.jsonl --out %s/gen.jsonl -n 6 "
        "--temperature 0 %s",
        "eval --model %s/model --input %s/prompts.jsonl --reference-field gold -n 6 "
        "--predictions %s/eval.jsonl -q %s",
        "pairs --model %s/model --input %s/prompts.jsonl --gold-field gold --scorer "
        "gold-likelihood --samples 3 -n 6 --out %s/pairs.h5 --dump %s/pairs.jsonl -q %s",
        "agent --model %s/model --input %s/agent/test.jsonl --max-steps 2 -n 8 "
        "--predictions %s/agent.jsonl -q %s",
        "export --model tests/fixtures/lora_base --merge-lora tests/fixtures/lora_adapter "
        "--out %s/merged %s",
        "dpo precompute-ref --model %s/model --data %s/pref.h5 --seq-len 16 %s"};
    int ok = 0;
    for (int i = 0; i < 6; i++) {
        switch (i) {
        case 2: snprintf(args, sizeof args, cmds[i], dir, dir, out, out, flags); break;
        case 3: snprintf(args, sizeof args, cmds[i], dir, dir, out, flags); break;
        case 4: snprintf(args, sizeof args, cmds[i], out, flags); break;
        case 5: snprintf(args, sizeof args, cmds[i], dir, out, flags); break;
        default: snprintf(args, sizeof args, cmds[i], dir, dir, out, flags); break;
        }
        int rc = retort(dir, args);
        if (rc != want) show_log(dir);
        cr_expect_eq(rc, want, "retort %s exited with %d, not %d", args, rc, want);
        ok += rc == want;
    }
    return ok;
}

static void expect_same_file(const char *a_dir, const char *b_dir, const char *name) {
    char a[1024], b[1024];
    size_t na = 0, nb = 0;
    snprintf(a, sizeof a, "%s/%s", a_dir, name);
    snprintf(b, sizeof b, "%s/%s", b_dir, name);
    char *x = read_file(a, &na), *y = read_file(b, &nb);
    cr_assert(x && y, "%s or %s is missing", a, b);
    cr_expect(na > 0, "%s is empty", a);
    cr_expect(na == nb && !memcmp(x, y, na), "%s and %s differ", a, b);
    free(x);
    free(y);
}

static void read_ref_logps(const char *out, double *chosen, double *rejected, int64_t n) {
    char path[1024];
    PrefDataset pd;
    snprintf(path, sizeof path, "%s/pref.h5", out);
    cr_assert_eq(pref_dataset_open(&pd, path), 0, "%s", err_msg());
    cr_assert_eq(pd.n_pairs, n);
    cr_assert(pd.ref_logp_chosen && pd.ref_logp_rejected, "no reference log-probs in %s", path);
    memcpy(chosen, pd.ref_logp_chosen, (size_t)n * sizeof(double));
    memcpy(rejected, pd.ref_logp_rejected, (size_t)n * sizeof(double));
    pref_dataset_close(&pd);
}

Test(cli, model_commands_take_device_cpu_and_threads, .timeout = 300) {
    char dir[256], plain[512], cpu[512];
    make_temp_dir(dir, sizeof dir, "cli-dev");
    make_inputs(dir);
    snprintf(plain, sizeof plain, "%s/plain", dir);
    snprintf(cpu, sizeof cpu, "%s/cpu", dir);
    cr_assert_eq(mkdir_p(plain) | mkdir_p(cpu), 0);
    cr_assert_eq(run_model_commands(dir, plain, "", 0), 6);
    cr_assert_eq(run_model_commands(dir, cpu, "--device cpu --threads 1", 0), 6);
    static const char *const outputs[] = {"gen.jsonl", "eval.jsonl", "pairs.jsonl",
                                          "agent.jsonl", "merged/model.safetensors"};
    for (size_t i = 0; i < sizeof outputs / sizeof outputs[0]; i++)
        expect_same_file(plain, cpu, outputs[i]);
    double c0[4], r0[4], c1[4], r1[4];
    read_ref_logps(plain, c0, r0, 4);
    read_ref_logps(cpu, c1, r1, 4);
    for (int i = 0; i < 4; i++) {
        cr_expect(c0[i] < 0 && r0[i] < 0, "pair %d: log-probs %g %g", i, c0[i], r0[i]);
        cr_expect(c0[i] == c1[i] && r0[i] == r1[i], "pair %d: %.17g %.17g vs %.17g %.17g", i,
                  c0[i], r0[i], c1[i], r1[i]);
    }
    rm_rf(dir);
}

/* Only the pref file made before the commands ran, without reference log-probs. */
static void expect_nothing_written(const char *out) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "test \"$(ls -A %s)\" = pref.h5", out);
    cr_expect_eq(system(cmd), 0, "a failed command left files in %s", out);
    char path[1024];
    PrefDataset pd;
    snprintf(path, sizeof path, "%s/pref.h5", out);
    cr_assert_eq(pref_dataset_open(&pd, path), 0, "%s", err_msg());
    cr_expect_null(pd.ref_logp_chosen, "precompute-ref wrote into %s", path);
    pref_dataset_close(&pd);
}

static int count(const char *haystack, const char *needle) {
    int n = 0;
    for (const char *p = haystack; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

Test(cli, model_commands_on_cuda_fail_with_the_reason_here, .timeout = 120) {
    char dir[256], out[512];
    make_temp_dir(dir, sizeof dir, "cli-cuda");
    if (retort(dir, "device") == 0) {
        rm_rf(dir);
        cr_skip_test("a usable GPU is present (retort device succeeds), so --device cuda runs "
                     "there; its results are checked by make test-gpu");
    }
    make_inputs(dir);
    snprintf(out, sizeof out, "%s/cuda", dir);
    cr_assert_eq(mkdir_p(out), 0);
    char path[512];
    remove((snprintf(path, sizeof path, "%s/log", dir), path));
    cr_assert_eq(run_model_commands(dir, out, "--device cuda --threads 1", 1), 6);
    expect_nothing_written(out);
    char *log = read_log(dir);
    /* a CUDA build says why no GPU can be used, a CPU-only build that CUDA is not in it */
    int why = count(log, "no usable CUDA device") + count(log, "device 'cuda' is not built");
    cr_expect_eq(why, 6, "each command must say why cuda is unusable here:\n%s", log);
    static const char *const names[] = {"generate", "eval", "pairs", "agent", "export",
                                        "dpo precompute-ref"};
    for (int i = 0; i < 6; i++) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "retort %s: error: ", names[i]);
        cr_expect(strstr(log, prefix), "no '%s' line:\n%s", prefix, log);
    }
    free(log);
    rm_rf(dir);
}

Test(cli, model_commands_refuse_an_unknown_device_or_thread_count, .timeout = 120) {
    char dir[256], out[512];
    make_temp_dir(dir, sizeof dir, "cli-baddev");
    make_inputs(dir);
    snprintf(out, sizeof out, "%s/tpu", dir);
    cr_assert_eq(mkdir_p(out), 0);
    char path[512];
    remove((snprintf(path, sizeof path, "%s/log", dir), path));
    cr_assert_eq(run_model_commands(dir, out, "--device tpu", 1), 6);
    expect_nothing_written(out);
    char *log = read_log(dir);
    cr_expect_eq(count(log, "unknown device 'tpu'; choose cpu or cuda"), 6, "%s", log);
    free(log);
    remove(path);
    cr_assert_eq(run_model_commands(dir, out, "--threads many", 1), 6);
    expect_nothing_written(out);
    log = read_log(dir);
    cr_expect_eq(count(log, "--threads wants a whole number of CPU threads (0 = all cores), "
                            "not 'many'"),
                 6, "%s", log);
    free(log);
    rm_rf(dir);
}

/* A merged export is a checkpoint of the same tokenizer as its base: the
 * base's record (retort.json) travels into it, so commands that load the
 * merged model pick the base's tokenizer. */
Test(cli, export_keeps_the_base_tokenizer_record, .timeout = 60) {
    char dir[256], base[512], path[700];
    make_temp_dir(dir, sizeof dir, "cli-export-tok");
    snprintf(base, sizeof base, "%s/base", dir);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cp -r tests/fixtures/lora_base %s", base);
    cr_assert_eq(system(cmd), 0);
    const char *record = "{\n  \"tokenizer\": \"bpe:base:0123456789abcdef\"\n}\n";
    snprintf(path, sizeof path, "%s/retort.json", base);
    write_text(path, record);
    RUN(dir, "export --model %s --merge-lora tests/fixtures/lora_adapter --out %s/merged", base,
        dir);
    snprintf(path, sizeof path, "%s/merged/retort.json", dir);
    size_t len = 0;
    char *got = read_file(path, &len);
    cr_assert_not_null(got, "the merged checkpoint has no %s", path);
    assert_contains(got, "bpe:base:0123456789abcdef");
    free(got);
}

/* The binary never runs OpenBLAS's generic kernels on a CPU with AVX2 + FMA:
 * OpenBLAS falls back to Prescott (SSE3) on a CPU model it does not know,
 * and retort then restarts itself with the matching OPENBLAS_CORETYPE
 * (cli/main.c). OPENBLAS_VERBOSE=2 prints the core each load chose; the last
 * one is the process that runs. A variable the user set is left alone. */
Test(cli, openblas_runs_the_kernels_of_this_cpu) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
        fprintf(stderr, "SKIP: this CPU has no AVX2 + FMA; generic kernels are right here\n");
        return;
    }
    char dir[256], cmd[1024];
    make_temp_dir(dir, sizeof dir, "blascore");
    snprintf(cmd, sizeof cmd, "env -u OPENBLAS_CORETYPE OPENBLAS_VERBOSE=2 %s version 2>&1", bin());
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    char line[256], last[256] = "";
    while (fgets(line, sizeof line, p))
        if (!strncmp(line, "Core: ", 6)) snprintf(last, sizeof last, "%s", line + 6);
    cr_assert_eq(pclose(p), 0);
    cr_assert(last[0], "OPENBLAS_VERBOSE=2 printed no core (not an OpenBLAS build?)");
    last[strcspn(last, "\n")] = '\0';
    static const char *const generic[] = {"Prescott", "Core2", "Nehalem", "Atom"};
    for (size_t i = 0; i < sizeof generic / sizeof *generic; i++)
        cr_expect(strcasecmp(last, generic[i]) != 0, "OpenBLAS runs its %s kernels", last);
    /* the user's choice wins: no restart, the core asked for */
    snprintf(cmd, sizeof cmd, "OPENBLAS_CORETYPE=Haswell OPENBLAS_VERBOSE=2 %s version 2>&1", bin());
    p = popen(cmd, "r");
    cr_assert(p);
    int cores = 0;
    while (fgets(line, sizeof line, p))
        if (!strncmp(line, "Core: ", 6)) {
            cores++;
            cr_expect(!strncmp(line + 6, "Haswell", 7), "%s", line);
        }
    cr_assert_eq(pclose(p), 0);
    cr_expect_eq(cores, 1, "one load of OpenBLAS, no restart");
    rm_rf(dir);
}
