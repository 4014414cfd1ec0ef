/* fuzz/fuzz_build.c — `retort data build` (data/build.c) on arbitrary JSONL
 * and text, for every schema it builds.
 *
 * The first byte picks the options (byte % N_MODES, below): lm, sft with
 * prompt/completion or chat messages (with and without role and task fields,
 * max_len and train_roles), pref, plain text; the byte tokenizer or the small
 * BPE of fuzz/tokenizer.json. The rest is the input file. Checked beyond "no
 * crash, no leak": a refused build names its error and leaves no output file;
 * what a build writes, the validating reader accepts, with the counts the
 * build reported. */
#include "data/build.h"
#include "data/h5data.h"
#include "fuzz/fuzz.h"

typedef struct {
    Schema schema;
    int bpe;           /* fuzz/tokenizer.json instead of bytes */
    int text;          /* plain text (input.txt) instead of JSONL */
    int skip_bad;
    int64_t max_len;
    const char *role_field, *task_field, *train_roles;
} Mode;

static const Mode modes[] = {
    {SCHEMA_LM, 0, 0, 0, 0, NULL, NULL, NULL},
    {SCHEMA_SFT, 0, 0, 0, 0, NULL, NULL, NULL},
    {SCHEMA_SFT, 0, 0, 1, 8, "role", "task", NULL},
    {SCHEMA_SFT, 0, 0, 0, 16, NULL, "task", "planner,caller,summarizer"},
    {SCHEMA_PREF, 0, 0, 0, 0, NULL, NULL, NULL},
    {SCHEMA_LM, 1, 0, 1, 0, NULL, NULL, NULL},
    {SCHEMA_SFT, 1, 0, 1, 0, NULL, NULL, NULL},
    {SCHEMA_PREF, 1, 0, 1, 0, NULL, NULL, NULL},
    {SCHEMA_LM, 0, 1, 0, 0, NULL, NULL, NULL},
    {SCHEMA_LM, 1, 1, 0, 0, NULL, NULL, NULL},
};
#define N_MODES ((int)(sizeof modes / sizeof modes[0]))

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const Mode *m = &modes[data[0] % N_MODES];
    char input[600], output[600], tokenizer[600];
    fuzz_write(input, sizeof input, m->text ? "input.txt" : "input.jsonl", data + 1, size - 1);
    fuzz_path(output, sizeof output, "out.h5");
    unlink(output);
    snprintf(tokenizer, sizeof tokenizer, "%s/tokenizer.json", fuzz_data_dir());
    BuildOptions o = {
        .input = input,
        .output = output,
        .schema = m->schema,
        .tokenizer = m->bpe ? tokenizer : "bytes",
        .skip_bad = m->skip_bad,
        .quiet = 1,
        .max_len = m->max_len,
        .role_field = m->role_field,
        .task_field = m->task_field,
        .train_roles = m->train_roles,
    };
    BuildStats st;
    err_clear();
    if (data_build_stats(&o, &st) != 0) {
        FUZZ_CHECK(strcmp(err_msg(), "unknown error") != 0, "refused without a message");
        FUZZ_CHECK(!path_exists(output), "a refused build left %s", output);
        return 0;
    }
    if (m->schema == SCHEMA_PREF) {
        PrefDataset pd;
        FUZZ_CHECK(pref_dataset_open(&pd, output) == 0, "the built file does not validate: %s",
                   err_msg());
        FUZZ_CHECK(pd.n_pairs == st.docs, "%lld pairs built, %lld read", (long long)st.docs,
                   (long long)pd.n_pairs);
        pref_dataset_close(&pd);
    } else {
        Dataset ds;
        FUZZ_CHECK(dataset_open(&ds, output) == 0, "the built file does not validate: %s",
                   err_msg());
        FUZZ_CHECK(ds.n_docs == st.docs && ds.n_tokens == st.tokens,
                   "%lld documents / %lld tokens built, %lld / %lld read", (long long)st.docs,
                   (long long)st.tokens, (long long)ds.n_docs, (long long)ds.n_tokens);
        if (m->schema == SCHEMA_SFT) {
            int64_t trained = 0;
            for (int64_t i = 0; i < ds.n_tokens; i++) trained += ds.loss_mask[i];
            FUZZ_CHECK(trained == st.trained_tokens, "%lld trained tokens built, %lld read",
                       (long long)st.trained_tokens, (long long)trained);
        }
        dataset_close(&ds);
    }
    return 0;
}
