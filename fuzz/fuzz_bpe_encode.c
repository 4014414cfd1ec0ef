/* fuzz/fuzz_bpe_encode.c — byte-level BPE encoding (data/bpe.c) of arbitrary
 * bytes with a small tokenizer (fuzz/tokenizer.json: 384 tokens trained on
 * this repository's README and docs with `retort tokenizer train`).
 *
 * The input is the text, except that a first byte 0xF0 + k (k = 0..15) asks
 * for the rest repeated 2^k times (at most 192 KiB): how short inputs reach
 * pre-tokens longer than the encoder's buffers and cache blocks. Checked
 * (data/bpe.h promises it): any byte string encodes to ids inside the
 * vocabulary, no more ids than bytes, and decodes back to exactly those
 * bytes; encoding again (now from the cache) gives the same ids. The
 * tokenizer is loaded afresh for each input (about a millisecond). */
#include "data/tokenizer.h"
#include "fuzz/fuzz.h"

#define MAX_TEXT (192 << 10)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* loaded for each input, so its cache starts empty and a failure
     * reproduces from the one input that shows it */
    char path[600];
    snprintf(path, sizeof path, "%s/tokenizer.json", fuzz_data_dir());
    Tokenizer *tok = tokenizer_load(path);
    FUZZ_CHECK(tok, "%s (run from the repository root, or set FUZZ_DATA)", err_msg());
    const char *text = (const char *)data;
    size_t len = size;
    char *owned = NULL;
    if (size >= 1 && data[0] >= 0xF0) {
        size_t times = (size_t)1 << (data[0] - 0xF0), piece = size - 1;
        if (piece > 0 && piece * times > MAX_TEXT) times = MAX_TEXT / piece;
        len = piece * times;
        owned = xmalloc(len ? len : 1);
        for (size_t i = 0; i < times; i++) memcpy(owned + i * piece, data + 1, piece);
        text = owned;
    }
    uint32_t *ids = NULL, *again = NULL;
    int64_t cap = 0, cap2 = 0;
    int64_t n = tok->encode(tok, text, len, &ids, &cap, 0);
    FUZZ_CHECK(n >= 0 && (size_t)n <= len + 1, "%lld ids for %zu bytes", (long long)n, len);
    for (int64_t i = 0; i < n; i++)
        FUZZ_CHECK(ids[i] < (uint32_t)tok->vocab_size, "id %u at %lld", ids[i], (long long)i);
    size_t at = 0; /* decode(ids) == text, byte for byte (NULs included) */
    for (int64_t i = 0; i < n; i++) {
        char piece[256];
        int k = tok->decode_token(tok, ids[i], piece);
        FUZZ_CHECK(at + (size_t)k <= len && !memcmp(piece, text + at, (size_t)k),
                   "decode(encode(text)) != text at byte %zu (id %u)", at, ids[i]);
        at += (size_t)k;
    }
    FUZZ_CHECK(at == len, "decode(encode(text)) has %zu bytes of %zu", at, len);
    int64_t n2 = tok->encode(tok, text, len, &again, &cap2, 0);
    FUZZ_CHECK(n2 == n && (n == 0 || !memcmp(again, ids, (size_t)n * sizeof *ids)),
               "a second encoding (from the cache) differs");
    free(ids);
    free(again);
    free(owned);
    tokenizer_free(tok);
    return 0;
}
