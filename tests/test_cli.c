/* tests/test_cli.c — the command line end to end, as a researcher uses it:
 * JSONL -> `retort data build` -> HDF5 -> `retort train` -> checkpoint ->
 * `retort generate` (JSONL out, and a kd dataset with candidates and teacher
 * top-K) -> `retort data validate` -> `retort train` of a student on the kd
 * file. Plumbing, not quality: every command must succeed and its outputs
 * must have the promised shape. Runs the binary of this build (RETORT_BIN). */
#include <criterion/criterion.h>

#include <jansson.h>

#include "data/h5data.h"
#include "tests/testutil.h"
#include "model/checkpoint.h"

static const char *bin(void) {
    return getenv("RETORT_BIN") ? getenv("RETORT_BIN") : "./retort";
}

/* Runs "retort <args>" with output to dir/log; returns its exit status. */
static int retort(const char *dir, const char *args) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s %s >>%s/log 2>&1", bin(), args, dir);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void show_log(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "tail -20 %s/log >&2", dir);
    if (system(cmd) != 0) fprintf(stderr, "(no log)\n");
}

#define RUN(dir, ...)                                                                       \
    do {                                                                                    \
        char args_[3072];                                                                   \
        snprintf(args_, sizeof args_, __VA_ARGS__);                                         \
        int rc_ = retort(dir, args_);                                                       \
        if (rc_ != 0) show_log(dir);                                                        \
        cr_assert_eq(rc_, 0, "retort %s exited with %d", args_, rc_);                       \
    } while (0)

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
        int n = 3 + (int)rng_below(&r, 3);
        for (int j = 0; j < n; j++) s[j] = (char)('a' + rng_below(&r, 6));
        for (int j = 0; j < n; j++) rev[j] = s[n - 1 - j];
        s[n] = rev[n] = 0;
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
