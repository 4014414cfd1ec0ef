/* fuzz/fuzz_tokenizer_json.c — loading a BPE (data/bpe_load.c, and the
 * tokenizer.json pipelines of data/tokjson.c) through tokenizer_load from
 * arbitrary files.
 *
 * The input is a tokenizer.json; or, when it holds the line "%%", a
 * vocab.json (before it) and a merges.txt (after it), loaded as a directory.
 * What a load accepts must work: a fixed text (letters, digits, spaces,
 * punctuation, an invalid UTF-8 byte, the EOS spelling) encodes to ids inside
 * the vocabulary, and every id decodes. */
#include "data/tokenizer.h"
#include "fuzz/fuzz.h"

static const char SAMPLE[] = "Hello world, it's 2024!  \n\tcafé 日本 \xff <|endoftext|> x";

static void use(const Tokenizer *tok) {
    FUZZ_CHECK(tok->eos_id >= 0 && tok->eos_id < tok->vocab_size, "eos_id %d of %d",
               tok->eos_id, tok->vocab_size);
    uint32_t *ids = NULL;
    int64_t cap = 0;
    int64_t n = tok->encode(tok, SAMPLE, sizeof SAMPLE - 1, &ids, &cap, 0);
    /* a pipeline's normalizers may remove text or add to it (Replace, Prepend,
     * NFKC), so the count is bounded by nothing but sanity */
    FUZZ_CHECK(n >= 0 && n <= 64 * (int64_t)sizeof SAMPLE, "%lld ids for %zu bytes",
               (long long)n, sizeof SAMPLE - 1);
    for (int64_t i = 0; i < n; i++)
        FUZZ_CHECK(ids[i] < (uint32_t)tok->vocab_size, "id %u of a vocabulary of %d", ids[i],
                   tok->vocab_size);
    char *text = tokenizer_decode(tok, ids, n);
    free(text);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char split[] = "\n%%\n";
    const uint8_t *mid = size >= 4 ? memmem(data, size, split, 4) : NULL;
    char path[600];
    if (mid) { /* a directory of its own: the directory form looks for tokenizer.json first */
        char vocab[600], merges[600];
        fuzz_path(path, sizeof path, "vocab-merges");
        if (mkdir_p(path) != 0) FUZZ_CHECK(0, "%s", err_msg());
        fuzz_write(vocab, sizeof vocab, "vocab-merges/vocab.json", data, (size_t)(mid - data));
        fuzz_write(merges, sizeof merges, "vocab-merges/merges.txt", mid + 4,
                   size - (size_t)(mid - data) - 4);
    } else {
        fuzz_write(path, sizeof path, "tokenizer.json", data, size);
    }
    err_clear();
    Tokenizer *tok = tokenizer_load(path);
    if (!tok) {
        FUZZ_CHECK(strcmp(err_msg(), "unknown error") != 0, "refused without a message");
        return 0;
    }
    use(tok);
    tokenizer_free(tok);
    return 0;
}
