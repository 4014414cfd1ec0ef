/* tests/test_identity.c — a model, its tokenizer and its data belong together,
 * and generation options stay inside what the model can do (issue 15):
 *   - tokenizer identities (data/tokenizer.h): "bytes", "bpe:LABEL:HASH"
 *     compared by hash, anything else unknown;
 *   - checkpoints record their tokenizer (retort.json) and keep the starting
 *     model's tokenizer files; generate / eval / pairs / agent use the
 *     model's own tokenizer, refuse one that is not it, and refuse to guess
 *     bytes for a model whose vocab_size is not 257; `retort train` refuses
 *     data built with another tokenizer than the starting model's;
 *   - --beams, --temperature, --top-p, --top-k, a prompt longer than the
 *     context and a -n that does not fit are refused with the numbers (exit
 *     1 or 2), unless --truncate-prompt / --clamp-new-tokens say otherwise.
 * Most checks run the binary of this build (RETORT_BIN), so they also show
 * what an older binary did. */
#include <criterion/criterion.h>
#include <stdarg.h>

#include "data/h5data.h"
#include "data/tokenizer.h"
#include "eval/generate_io.h"
#include "model/model_io.h"
#include "tests/testutil.h"

static const char *bin(void) {
    return getenv("RETORT_BIN") ? getenv("RETORT_BIN") : "./retort";
}

/* Runs "retort <args>" in dir; its output replaces dir/out. Returns the exit
 * status (-1 when it did not exit). */
static int retort(const char *dir, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int retort(const char *dir, const char *fmt, ...) {
    char args[3072], cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "%s %s >%s/out 2>&1", bin(), args, dir);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* dir/out as a string (caller frees). */
static char *output(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/out", dir);
    size_t n;
    char *text = read_file(path, &n);
    cr_assert(text, "no output at %s", path);
    return text;
}

/* The command exited with status want (a refusal: 1 or 2) and said every
 * needle. */
static void expect_refused(const char *dir, int rc, int want, const char *const *needles) {
    char *out = output(dir);
    cr_expect_eq(rc, want, "exit status %d, not %d:\n%s", rc, want, out);
    for (int i = 0; needles[i]; i++)
        cr_expect(strstr(out, needles[i]), "the message lacks \"%s\":\n%s", needles[i], out);
    free(out);
}
#define REFUSED(dir, rc, want, ...) \
    expect_refused(dir, rc, want, (const char *const[]){__VA_ARGS__, NULL})

static void expect_ok(const char *dir, int rc) {
    if (rc != 0) {
        char *out = output(dir);
        cr_expect_eq(rc, 0, "exit status %d:\n%s", rc, out);
        free(out);
    }
}

/* A random model of vocab V and context ctx saved at dir/name. */
static void save_model(const char *dir, const char *name, int V, int ctx) {
    char path[512];
    GPTConfig cfg = {.n_layer = 1, .n_head = 2, .n_embd = 16, .vocab_size = V,
                     .n_positions = ctx, .layer_norm_epsilon = 1e-5f};
    GPT *m = random_cpu_model(&cfg, 7);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    cr_assert_eq(mkdir_p(path), 0);
    cr_assert_eq(model_save_hf(m, path), 0, "%s", err_msg());
    gpt_free(m);
}

/* dir/corpus.txt, dir/bytes.h5 (byte tokenizer) and dir/tok.json, a BPE
 * trained on the corpus; returns the BPE's vocab_size and writes its name. */
static int make_tokenizer_and_data(const char *dir, char *bpe_name, size_t cap) {
    char path[512];
    snprintf(path, sizeof path, "%s/corpus.txt", dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    static const char *const words[] = {"alpha", "beta", "gamma", "the", "cat", "sat", "mat"};
    Rng r;
    rng_seed(&r, 1);
    for (int line = 0; line < 200; line++) {
        for (int w = 0; w < 10; w++) fprintf(f, "%s ", words[rng_below(&r, 7)]);
        fprintf(f, "\n");
    }
    fclose(f);
    expect_ok(dir, retort(dir, "tokenizer train --vocab-size 300 %s/corpus.txt -o %s/tok.json -q",
                          dir, dir));
    expect_ok(dir, retort(dir, "data build --schema lm --input %s/corpus.txt --out %s/bytes.h5 -q",
                          dir, dir));
    snprintf(path, sizeof path, "%s/tok.json", dir);
    Tokenizer *tok = tokenizer_load(path);
    cr_assert(tok, "%s", err_msg());
    snprintf(bpe_name, cap, "%s", tok->name);
    int V = tok->vocab_size;
    tokenizer_free(tok);
    return V;
}

/* The hash part of a "bpe:LABEL:HASH" name: what every copy of it shares. */
static const char *hash_of(const char *name) {
    return strrchr(name, ':') + 1;
}

static void write_prompts(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/prompts.jsonl", dir);
    write_text(path, "{\"prompt\": \"the cat\", \"gold\": \"sat\"}\n"
                     "{\"prompt\": \"alpha\", \"gold\": \"beta\"}\n");
}

/* ------------------------------------------------------------ identities */

Test(identity, names_compare_by_what_the_ids_mean) {
    cr_expect_eq(tokenizer_kind("bytes"), TOKENIZER_BYTES);
    cr_expect_eq(tokenizer_kind("bpe:gpt2:0123456789abcdef"), TOKENIZER_BPE);
    cr_expect_eq(tokenizer_kind("bpe:a:b:0123456789ABCDEF"), TOKENIZER_BPE, "labels may hold ':'");
    cr_expect_eq(tokenizer_kind("bpe:gpt2:0123"), TOKENIZER_UNKNOWN);
    cr_expect_eq(tokenizer_kind("test"), TOKENIZER_UNKNOWN);
    cr_expect_eq(tokenizer_kind(""), TOKENIZER_UNKNOWN);
    /* the label is where it was loaded from, not what it is */
    cr_expect_eq(tokenizer_same("bpe:tokenizer.json:0123456789abcdef",
                                "bpe:step-00000100:0123456789ABCDEF"), 1);
    cr_expect_eq(tokenizer_same("bpe:x:0123456789abcdef", "bpe:x:0123456789abcdee"), 0);
    cr_expect_eq(tokenizer_same("bytes", "bpe:x:0123456789abcdef"), 0);
    cr_expect_eq(tokenizer_same("bytes", "bytes"), 1);
    cr_expect_eq(tokenizer_same("bytes", "test"), -1);
    cr_expect_eq(tokenizer_same(NULL, "bytes"), -1);
}

Test(identity, a_tokenizer_is_the_same_from_its_file_or_a_checkpoint_copy, .timeout = 60) {
    char dir[256], bpe[256], path[1024], name[256];
    make_temp_dir(dir, sizeof dir, "id-copy");
    int V = make_tokenizer_and_data(dir, bpe, sizeof bpe);
    snprintf(path, sizeof path, "%s/init", dir);
    cr_assert_eq(mkdir_p(path), 0);
    snprintf(path, sizeof path, "%s/init/tokenizer.json", dir);
    char src[512];
    size_t n;
    char *text = read_file((snprintf(src, sizeof src, "%s/tok.json", dir), src), &n);
    cr_assert(text);
    write_bytes(path, text, n);
    free(text);
    snprintf(path, sizeof path, "%s/init", dir);
    cr_assert_eq(model_tokenizer_name(path, name, sizeof name), 0, "%s", err_msg());
    cr_expect_eq(tokenizer_same(name, bpe), 1, "%s vs %s", name, bpe);
    /* a checkpoint made from it: the record and the copied files */
    char ckpt[512];
    snprintf(ckpt, sizeof ckpt, "%s/ckpt", dir);
    cr_assert_eq(mkdir_p(ckpt), 0);
    cr_assert_eq(model_tokenizer_save(ckpt, bpe, path), 0, "%s", err_msg());
    cr_assert_eq(model_tokenizer_name(ckpt, name, sizeof name), 0, "%s", err_msg());
    cr_expect_str_eq(name, bpe, "the record wins");
    Tokenizer *tok = model_tokenizer_load(ckpt, NULL, V);
    cr_assert(tok, "%s", err_msg());
    cr_expect_eq(tokenizer_same(tok->name, bpe), 1);
    tokenizer_free(tok);
    /* the byte tokenizer for a model that records it */
    cr_assert_eq(model_tokenizer_save(dir, "bytes", NULL), 0, "%s", err_msg());
    tok = model_tokenizer_load(dir, NULL, 300);
    cr_assert(tok, "%s", err_msg());
    cr_expect_str_eq(tok->name, "bytes");
    tokenizer_free(tok);
    /* a record and files that disagree are a damaged checkpoint */
    snprintf(path, sizeof path, "%s/retort.json", ckpt);
    write_text(path, "{\"tokenizer\": \"bytes\"}\n");
    cr_expect_null(model_tokenizer_load(ckpt, NULL, V));
    assert_contains(err_msg(), "inconsistent");
    rm_rf(dir);
}

/* ------------------------------------------- commands use the model's own */

Test(identity, a_model_without_a_known_tokenizer_is_not_given_bytes, .timeout = 120) {
    char dir[256];
    make_temp_dir(dir, sizeof dir, "id-guess");
    write_prompts(dir);
    save_model(dir, "bpe_model", 300, 64); /* a BPE-sized vocabulary, no tokenizer files */
    REFUSED(dir, retort(dir, "generate --model %s/bpe_model --prompt hi -n 4", dir), 1,
            "vocab_size 300", "--tokenizer");
    REFUSED(dir, retort(dir, "eval --model %s/bpe_model --input %s/prompts.jsonl "
                             "--reference-field gold -n 4 -q", dir, dir), 1,
            "vocab_size 300", "--tokenizer");
    REFUSED(dir, retort(dir, "pairs --model %s/bpe_model --input %s/prompts.jsonl "
                             "--gold-field gold --out %s/p.h5 -n 4 -q", dir, dir, dir), 1,
            "vocab_size 300", "--tokenizer");
    /* an old byte-level checkpoint (vocab 257, no record) keeps working */
    save_model(dir, "byte_model", 257, 64);
    expect_ok(dir, retort(dir, "generate --model %s/byte_model --prompt hi -n 4", dir));
    rm_rf(dir);
}

Test(identity, commands_use_the_tokenizer_a_checkpoint_holds_or_records, .timeout = 180) {
    char dir[256], bpe[256], path[512];
    make_temp_dir(dir, sizeof dir, "id-own");
    int V = make_tokenizer_and_data(dir, bpe, sizeof bpe);
    write_prompts(dir);
    save_model(dir, "m", V, 64);
    char src[512];
    size_t n;
    char *text = read_file((snprintf(src, sizeof src, "%s/tok.json", dir), src), &n);
    cr_assert(text);
    write_bytes((snprintf(path, sizeof path, "%s/m/tokenizer.json", dir), path), text, n);
    free(text);
    /* the kd file generate writes names the model's tokenizer, not bytes */
    expect_ok(dir, retort(dir, "generate --model %s/m --input %s/prompts.jsonl --out %s/kd.h5 "
                               "-n 4 --temperature 0", dir, dir, dir));
    snprintf(path, sizeof path, "%s/kd.h5", dir);
    Dataset ds;
    cr_assert_eq(dataset_open(&ds, path), 0, "%s", err_msg());
    cr_expect_eq(tokenizer_same(ds.tokenizer, bpe), 1, "kd.h5 says %s, the model uses %s",
                 ds.tokenizer, bpe);
    dataset_close(&ds);
    /* and so does a pref file of pairs */
    expect_ok(dir, retort(dir, "pairs --model %s/m --input %s/prompts.jsonl --gold-field gold "
                               "--scorer gold-likelihood --samples 4 --temperature 2 -n 4 "
                               "--out %s/pairs.h5 -q", dir, dir, dir));
    PrefDataset pd;
    snprintf(path, sizeof path, "%s/pairs.h5", dir);
    if (pref_dataset_open(&pd, path) == 0) { /* no pair at all is possible from a random model */
        cr_expect_eq(tokenizer_same(pd.tokenizer, bpe), 1, "pairs.h5 says %s", pd.tokenizer);
        pref_dataset_close(&pd);
    }
    /* another tokenizer than the model's own is refused, with both names */
    REFUSED(dir, retort(dir, "generate --model %s/m --prompt hi -n 4 --tokenizer bytes", dir), 1,
            "--tokenizer bytes is bytes", hash_of(bpe));
    REFUSED(dir, retort(dir, "eval --model %s/m --input %s/prompts.jsonl --reference-field gold "
                             "-n 4 -q --tokenizer bytes", dir, dir), 1, hash_of(bpe));
    rm_rf(dir);
}

/* --------------------------------------------------------------- training */

static const char SMALL[] =
    "--set model.n_layer=1 --set model.n_head=2 --set model.n_embd=16 "
    "--set model.n_positions=32 --set data.seq_len=16 --set data.batch_size=2 "
    "--set data.val_fraction=0 --set eval.every=0 --set train.log_every=1000 "
    "--set train.threads=1 --set train.steps=2 --set optim.warmup_steps=1";

Test(identity, training_refuses_data_of_another_tokenizer, .timeout = 180) {
    char dir[256], bpe[256], path[512];
    make_temp_dir(dir, sizeof dir, "id-train");
    int V = make_tokenizer_and_data(dir, bpe, sizeof bpe);
    expect_ok(dir, retort(dir, "data build --schema lm --input %s/corpus.txt --out %s/bpe.h5 "
                               "--tokenizer %s/tok.json -q", dir, dir, dir));
    /* a BPE model with its tokenizer.json, fine-tuned on byte-level data */
    save_model(dir, "bpe_model", V, 32);
    char src[512];
    size_t n;
    char *text = read_file((snprintf(src, sizeof src, "%s/tok.json", dir), src), &n);
    cr_assert(text);
    write_bytes((snprintf(path, sizeof path, "%s/bpe_model/tokenizer.json", dir), path), text, n);
    free(text);
    REFUSED(dir, retort(dir, "train -c configs/tiny.yaml %s --set model.init=%s/bpe_model "
                             "--set data.train=%s/bytes.h5 --set train.out_dir=%s/run1",
                        SMALL, dir, dir, dir), 1,
            "bytes.h5 was built with tokenizer bytes", hash_of(bpe));
    cr_expect(!path_exists((snprintf(path, sizeof path, "%s/run1/step-00000002", dir), path)));
    /* the same model without tokenizer files or record: its vocab_size is not the bytes' */
    snprintf(path, sizeof path, "%s/bpe_model/tokenizer.json", dir);
    cr_assert_eq(remove(path), 0);
    char vocab[64];
    snprintf(vocab, sizeof vocab, "vocab_size %d", V);
    REFUSED(dir, retort(dir, "train -c configs/tiny.yaml %s --set model.init=%s/bpe_model "
                             "--set data.train=%s/bytes.h5 --set train.out_dir=%s/run2",
                        SMALL, dir, dir, dir), 1,
            "byte tokenizer", vocab);
    /* BPE data on it trains, and the checkpoint records the data's tokenizer */
    expect_ok(dir, retort(dir, "train -c configs/tiny.yaml %s --set model.init=%s/bpe_model "
                               "--set data.train=%s/bpe.h5 --set train.out_dir=%s/run3",
                          SMALL, dir, dir, dir));
    char ckpt[512], name[256];
    snprintf(ckpt, sizeof ckpt, "%s/run3/step-00000002", dir);
    cr_assert_eq(model_tokenizer_name(ckpt, name, sizeof name), 0, "%s", err_msg());
    cr_expect_eq(tokenizer_same(name, bpe), 1, "the checkpoint records '%s'", name);
    /* its tokenizer files are not there: the commands ask for them, and check them */
    REFUSED(dir, retort(dir, "generate --model %s --prompt hi -n 4", ckpt), 1, "--tokenizer",
            hash_of(bpe));
    expect_ok(dir, retort(dir, "generate --model %s --prompt hi -n 4 --tokenizer %s/tok.json",
                          ckpt, dir));
    /* and fine-tuning that checkpoint on bytes is refused too */
    REFUSED(dir, retort(dir, "train -c configs/tiny.yaml %s --set model.init=%s "
                             "--set data.train=%s/bytes.h5 --set train.out_dir=%s/run4",
                        SMALL, ckpt, dir, dir), 1,
            "built with tokenizer bytes");
    rm_rf(dir);
}

Test(identity, checkpoints_keep_the_starting_models_tokenizer_files, .timeout = 180) {
    char dir[256], bpe[256], path[512];
    make_temp_dir(dir, sizeof dir, "id-files");
    int V = make_tokenizer_and_data(dir, bpe, sizeof bpe);
    write_prompts(dir);
    expect_ok(dir, retort(dir, "data build --schema lm --input %s/corpus.txt --out %s/bpe.h5 "
                               "--tokenizer %s/tok.json -q", dir, dir, dir));
    save_model(dir, "init", V, 32);
    char src[512];
    size_t n;
    char *text = read_file((snprintf(src, sizeof src, "%s/tok.json", dir), src), &n);
    cr_assert(text);
    write_bytes((snprintf(path, sizeof path, "%s/init/tokenizer.json", dir), path), text, n);
    free(text);
    expect_ok(dir, retort(dir, "train -c configs/tiny.yaml %s --set model.init=%s/init "
                               "--set data.train=%s/bpe.h5 --set train.out_dir=%s/run",
                          SMALL, dir, dir, dir));
    cr_expect(path_exists((snprintf(path, sizeof path, "%s/run/step-00000002/tokenizer.json",
                                    dir), path)));
    cr_expect(path_exists((snprintf(path, sizeof path, "%s/run/step-00000002/retort.json", dir),
                           path)));
    /* so generate needs no --tokenizer, and its kd file names the BPE */
    expect_ok(dir, retort(dir, "generate --model %s/run/step-00000002 --input %s/prompts.jsonl "
                               "--out %s/kd.h5 -n 4", dir, dir, dir));
    snprintf(path, sizeof path, "%s/kd.h5", dir);
    Dataset ds;
    cr_assert_eq(dataset_open(&ds, path), 0, "%s", err_msg());
    cr_expect_eq(tokenizer_same(ds.tokenizer, bpe), 1, "kd.h5 says %s", ds.tokenizer);
    dataset_close(&ds);
    /* a byte-level run records bytes */
    expect_ok(dir, retort(dir, "train -c configs/tiny.yaml %s --set data.train=%s/bytes.h5 "
                               "--set train.out_dir=%s/byterun", SMALL, dir, dir));
    char name[256];
    snprintf(path, sizeof path, "%s/byterun/step-00000002", dir);
    cr_assert_eq(model_tokenizer_name(path, name, sizeof name), 0, "%s", err_msg());
    cr_expect_str_eq(name, "bytes");
    rm_rf(dir);
}

/* ------------------------------------------------------ generation options */

Test(identity, generation_options_are_bounded, .timeout = 120) {
    char dir[256];
    make_temp_dir(dir, sizeof dir, "id-opts");
    write_prompts(dir);
    save_model(dir, "m", 257, 32);
    char m[512];
    snprintf(m, sizeof m, "%s/m", dir);
    REFUSED(dir, retort(dir, "generate --model %s --prompt hi -n 4 --beams 100", m), 2,
            "--beams", "64");
    REFUSED(dir, retort(dir, "generate --model %s --prompt hi -n 4 --temperature nan", m), 2,
            "--temperature", "nan");
    REFUSED(dir, retort(dir, "generate --model %s --prompt hi -n 4 --temperature inf", m), 2,
            "--temperature");
    REFUSED(dir, retort(dir, "generate --model %s --prompt hi -n 4 --top-k 4x", m), 2,
            "--top-k", "4x");
    REFUSED(dir, retort(dir, "generate --model %s --prompt hi --max-new-tokens lots", m), 2,
            "--max-new-tokens");
    REFUSED(dir, retort(dir, "eval --model %s --input %s/prompts.jsonl --reference-field gold "
                             "-n 4 -q --temperature -1", m, dir), 2, "--temperature");
    REFUSED(dir, retort(dir, "eval --model %s --input %s/prompts.jsonl --reference-field gold "
                             "-n 4 -q --top-p 5", m, dir), 2, "--top-p");
    REFUSED(dir, retort(dir, "eval --model %s --input %s/prompts.jsonl --reference-field gold "
                             "-n 4 -q --beams 1000", m, dir), 2, "--beams");
    REFUSED(dir, retort(dir, "pairs --model %s --input %s/prompts.jsonl --gold-field gold "
                             "--out %s/p.h5 -n 4 -q --temperature nan", m, dir, dir), 2,
            "--temperature");
    rm_rf(dir);
}

Test(identity, a_prompt_and_its_new_tokens_must_fit_the_context, .timeout = 120) {
    char dir[256], path[512];
    make_temp_dir(dir, sizeof dir, "id-ctx");
    save_model(dir, "m", 257, 32);
    char m[512];
    snprintf(m, sizeof m, "%s/m", dir);
    static const char long_prompt[] = "0123456789012345678901234567890123456789"; /* 40 bytes */
    REFUSED(dir, retort(dir, "generate --model %s --prompt %s -n 4", m, long_prompt), 1,
            "40 tokens", "32 positions", "--truncate-prompt");
    REFUSED(dir, retort(dir, "generate --model %s --prompt hello -n 30", m), 1,
            "5 tokens", "--max-new-tokens 30", "32 positions", "-n 27");
    REFUSED(dir, retort(dir, "generate --model %s --prompt hi -n 100", m), 1,
            "--max-new-tokens 100", "32 positions");
    /* asked for: cut the prompt, or stop when the context is full */
    expect_ok(dir, retort(dir, "generate --model %s --prompt %s -n 4 --truncate-prompt left", m,
                          long_prompt));
    expect_ok(dir, retort(dir, "generate --model %s --prompt hello -n 30 --clamp-new-tokens",
                          m));
    /* a JSONL line names its file and line */
    snprintf(path, sizeof path, "%s/prompts.jsonl", dir);
    write_text(path, "{\"prompt\": \"ok\", \"gold\": \"x\"}\n"
                     "{\"prompt\": \"0123456789012345678901234567890123456789\", "
                     "\"gold\": \"x\"}\n");
    REFUSED(dir, retort(dir, "generate --model %s --input %s --out %s/o.jsonl -n 4", m, path,
                        dir), 1, "prompts.jsonl:2", "40 tokens");
    cr_expect(!path_exists((snprintf(path, sizeof path, "%s/o.jsonl", dir), path)),
              "no output from a refused run");
    snprintf(path, sizeof path, "%s/prompts.jsonl", dir);
    REFUSED(dir, retort(dir, "eval --model %s --input %s --reference-field gold -n 4 -q", m,
                        path), 1, "40 tokens");
    expect_ok(dir, retort(dir, "eval --model %s --input %s --reference-field gold -n 4 -q "
                               "--truncate-prompt left", m, path));
    /* the agent's turn may use half the context, and says so */
    expect_ok(dir, retort(dir, "agent make-data --out %s/agent --train 0 --val 0 --test 1", dir));
    REFUSED(dir, retort(dir, "agent --model %s --input %s/agent/test.jsonl -n 20 -q", m, dir), 1,
            "--max-new-tokens 20", "32 positions", "-n 16");
    rm_rf(dir);
}

/* ---------------------------------------------- the policy, without a model */

Test(identity, fit_prompt_follows_the_jobs_policy) {
    GenerateJob job = {0};
    job.sample.max_new_tokens = 4;
    uint32_t ids[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    int prompt[10], n = 0, max_new = 0;
#define FIT(ctx, count) \
    generate_fit_prompt(&job, ctx, 99, ids, count, "p: the prompt", prompt, &n, &max_new)
    cr_expect_eq(FIT(14, 10), 0);
    cr_expect(n == 10 && max_new == 4);
    cr_expect_eq(FIT(12, 10), -1);
    assert_contains(err_msg(), "p: the prompt is 10 tokens and --max-new-tokens 4, together 14");
    job.truncate_prompt = TRUNCATE_LEFT;
    cr_expect_eq(FIT(12, 10), 0);
    cr_expect(n == 8 && prompt[0] == 2 && prompt[7] == 9 && max_new == 4, "keeps the end");
    job.truncate_prompt = TRUNCATE_RIGHT;
    cr_expect_eq(FIT(12, 10), 0);
    cr_expect(n == 8 && prompt[0] == 0 && prompt[7] == 7, "keeps the start");
    job.truncate_prompt = TRUNCATE_NONE;
    job.clamp_new_tokens = 1;
    cr_expect_eq(FIT(12, 10), 0);
    cr_expect(n == 10 && max_new == 2, "the context lowers -n");
    cr_expect_eq(FIT(10, 10), -1, "no room for one token");
    assert_contains(err_msg(), "no room for a new token");
    cr_expect_eq(FIT(10, 0), 0);
    cr_expect(n == 1 && prompt[0] == 99, "an empty prompt is EOS");
#undef FIT
}
