/* fuzz/fuzz_generate_jsonl.c — the JSONL reader of `retort generate`
 * (eval/generate_io.c: prompts in, completions out as JSONL or as a kd
 * dataset) with a tiny random model, so the fuzzer's time goes to the reading
 * and writing, not the model.
 *
 * The first byte picks the job (byte % N_MODES, below): JSONL or .h5 output,
 * sampling or beam search, stop strings, target selection (best, all, BLEU
 * against a reference field, the gold kept too), teacher top-K, prompts cut
 * to the context or refused. The rest is the prompts file. Checked beyond "no
 * crash, no leak": a refused job names its error and leaves no output; a kd
 * file it writes is one the validating reader accepts, with the examples the
 * job reported. */
#include "data/h5data.h"
#include "data/tokenizer.h"
#include "eval/generate_io.h"
#include "fuzz/fuzz.h"
#include "model/backend.h"
#include "model/model.h"

typedef struct {
    int h5, beams, samples, n_stop, store_topk, add_gold;
    TargetSelect select;
    TruncatePrompt truncate;
    int clamp;
} Mode;

static const Mode modes[] = {
    {0, 0, 2, 0, 0, 0, SELECT_BEST, TRUNCATE_NONE, 0},
    {0, 2, 2, 1, 0, 0, SELECT_BEST, TRUNCATE_LEFT, 0},
    {1, 0, 2, 0, 2, 0, SELECT_BEST, TRUNCATE_NONE, 1},
    {1, 0, 3, 1, 0, 1, SELECT_ALL, TRUNCATE_RIGHT, 0},
    {1, 2, 2, 0, 1, 1, SELECT_BLEU, TRUNCATE_LEFT, 1},
    {1, 0, 1, 2, 0, 0, SELECT_BEST, TRUNCATE_NONE, 0},
};
#define N_MODES ((int)(sizeof modes / sizeof modes[0]))

static GPT *model;
static Tokenizer *bytes;

static void free_all(void) {
    gpt_free(model);
    tokenizer_free(bytes);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    if (!model) {
        GPTConfig cfg = {.n_layer = 1, .n_head = 1, .n_embd = 8, .vocab_size = 257,
                         .n_positions = 16, .layer_norm_epsilon = 1e-5f};
        model = gpt_create(&cfg, backend_cpu());
        FUZZ_CHECK(model, "%s", err_msg());
        gpt_init_random(model, 7);
        bytes = tokenizer_bytes();
        atexit(free_all);
    }
    const Mode *m = &modes[data[0] % N_MODES];
    char input[600], output[600];
    fuzz_write(input, sizeof input, "prompts.jsonl", data + 1, size - 1);
    fuzz_path(output, sizeof output, m->h5 ? "out.h5" : "out.jsonl");
    unlink(output);
    GenerateJob job = {
        .input = input,
        .output = output,
        .sample = {.max_new_tokens = 4, .temperature = 1.0, .top_k = 0, .top_p = 0.9,
                   .eos_id = bytes->eos_id},
        .samples = m->samples,
        .beams = m->beams,
        .length_penalty = 1.0,
        .truncate_prompt = m->truncate,
        .clamp_new_tokens = m->clamp,
        .seed = 1,
        .quiet = 1,
        .stop = {"\n", "a"},
        .n_stop = m->n_stop,
        .select = m->select,
        .reference_field = m->select == SELECT_BLEU || m->add_gold ? "reference" : NULL,
        .add_gold = m->add_gold,
        .store_topk = m->store_topk,
        .drop_empty = 1,
        .drop_copies = 1,
    };
    GenerateStats st;
    err_clear();
    if (generate_jsonl(model, bytes, &job, &st) != 0) {
        FUZZ_CHECK(strcmp(err_msg(), "unknown error") != 0, "refused without a message");
        FUZZ_CHECK(!path_exists(output), "a refused job left %s", output);
        return 0;
    }
    if (m->h5 && path_exists(output)) {
        Dataset ds;
        FUZZ_CHECK(dataset_open(&ds, output) == 0, "the kd file does not validate: %s",
                   err_msg());
        FUZZ_CHECK(ds.n_docs == st.examples, "%lld examples written, %lld read",
                   (long long)st.examples, (long long)ds.n_docs);
        FUZZ_CHECK(ds.topk == m->store_topk, "top-K %d written, %d read", m->store_topk,
                   ds.topk);
        dataset_close(&ds);
    }
    return 0;
}
