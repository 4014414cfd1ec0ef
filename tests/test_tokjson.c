/* tests/test_tokjson.c — tokenizer.json pipelines against Hugging Face
 * tokenizers: the files of tests/fixtures/tokjson (Llama 3, Qwen2, Llama 2 /
 * TinyLlama, Mistral, SmolLM and GPT-2 structures, and two that exercise
 * every other option), made and encoded by tokenizers itself
 * (tests/make_tokenizer_json_fixtures.py). Over the stress corpus: the ids
 * without and with special tokens, decode with and without
 * skip_special_tokens; a held-out 64 KB text by hash. Then the refusals, each
 * naming its component and JSON path, and the identities: GPT-2's files keep
 * the hash they had before pipelines existed. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/bpe.h"
#include "data/build.h"
#include "data/h5data.h"
#include "data/tokenizer.h"
#include "data/tokjson.h"
#include "tests/testutil.h"
#include "util/util.h"

#define FIXTURES "tests/fixtures/tokjson"

static json_t *expected(void) {
    json_error_t e;
    json_t *root = json_load_file(FIXTURES "/expected.json", 0, &e);
    cr_assert_not_null(root, "%s: %s (run tests/make_tokenizer_json_fixtures.py)", e.text,
                       FIXTURES "/expected.json");
    return root;
}

static unsigned char *unhex(const char *hex, size_t *len) {
    size_t n = strlen(hex) / 2;
    unsigned char *out = malloc(n + 1);
    for (size_t i = 0; i < n; i++) sscanf(hex + 2 * i, "%2hhx", &out[i]);
    out[n] = 0;
    *len = n;
    return out;
}

static Tokenizer *load_ok(const char *spec) {
    err_clear();
    Tokenizer *tok = tokenizer_load(spec);
    cr_assert_not_null(tok, "loading %s: %s", spec, err_msg());
    return tok;
}

static void assert_ids(const char *what, const uint32_t *ids, int64_t n, json_t *want) {
    int64_t n_want = (int64_t)json_array_size(want);
    int64_t first = -1;
    for (int64_t i = 0; i < n && i < n_want && first < 0; i++)
        if (ids[i] != (uint32_t)json_integer_value(json_array_get(want, (size_t)i))) first = i;
    if (first < 0 && n != n_want) first = n < n_want ? n : n_want;
    cr_assert(first < 0, "%s: %lld ids, tokenizers %lld; first difference at %lld (retort %lld, "
              "tokenizers %lld)",
              what, (long long)n, (long long)n_want, (long long)first,
              first < n ? (long long)ids[first] : -1LL,
              first < n_want ? (long long)json_integer_value(json_array_get(want, (size_t)first))
                             : -1LL);
}

static uint64_t fnv_ids(const uint32_t *ids, int64_t n) {
    uint64_t h = BPE_FNV_OFFSET;
    for (int64_t i = 0; i < n; i++) {
        unsigned char b[4] = {(unsigned char)ids[i], (unsigned char)(ids[i] >> 8),
                              (unsigned char)(ids[i] >> 16), (unsigned char)(ids[i] >> 24)};
        h = bpe_fnv1a(h, b, 4);
    }
    return h;
}

/* Every stress text through one tokenizer, as tokenizers encodes and decodes it. */
static void check_structure(const char *name) {
    json_t *root = expected();
    json_t *t = json_object_get(json_object_get(root, "tokenizers"), name);
    cr_assert_not_null(t, "%s missing from expected.json", name);
    char dir[256];
    snprintf(dir, sizeof dir, FIXTURES "/%s", name);
    Tokenizer *tok = load_ok(dir);
    json_t *texts = json_object_get(root, "texts"), *cases = json_object_get(t, "cases");
    cr_assert_eq(json_array_size(texts), json_array_size(cases));
    for (size_t c = 0; c < json_array_size(cases); c++) {
        json_t *k = json_array_get(cases, c);
        size_t len;
        unsigned char *text = unhex(json_string_value(json_array_get(texts, c)), &len);
        char what[128];
        uint32_t *ids = NULL;
        int64_t cap = 0;
        snprintf(what, sizeof what, "%s, text %zu", name, c);
        int64_t n = tok->encode(tok, (const char *)text, len, &ids, &cap, 0);
        size_t fixed_len;
        char *fixed = tokjson_lossy_utf8((const char *)text, len, &fixed_len);
        if (fixed && tok->newline_cuts_exact) {
            /* GPT-2's shape keeps bpe.h's rule: bad bytes are byte tokens and
             * come back exactly, where tokenizers could take no bytes at all */
            char piece[BPE_MAX_TOKEN_BYTES], *back = malloc(len + 1);
            size_t k = 0;
            for (int64_t i = 0; i < n; i++) {
                int m = tok->decode_token(tok, ids[i], piece);
                cr_assert_leq(k + (size_t)m, len);
                memcpy(back + k, piece, (size_t)m);
                k += (size_t)m;
            }
            cr_assert(k == len && memcmp(back, text, len) == 0, "%s: bytes round trip", what);
            free(back);
            free(fixed);
            free(ids);
            free(text);
            continue;
        }
        free(fixed);
        assert_ids(what, ids, n, json_object_get(k, "ids"));
        for (int64_t i = 0; i < n; i++) cr_assert_lt(ids[i], (uint32_t)tok->vocab_size);

        size_t out_len;
        char *back = tokenizer_decode_text(tok, ids, n, 0, &out_len);
        const char *want = json_string_value(json_object_get(k, "decode"));
        cr_assert(out_len == strlen(want) && memcmp(back, want, out_len) == 0,
                  "%s: decode gives \"%s\", tokenizers \"%s\"", what, back, want);
        free(back);

        snprintf(what, sizeof what, "%s, text %zu with special tokens", name, c);
        n = tokenizer_encode(tok, (const char *)text, len, 1, &ids, &cap, 0);
        assert_ids(what, ids, n, json_object_get(k, "ids_special"));
        back = tokenizer_decode_text(tok, ids, n, 1, &out_len);
        want = json_string_value(json_object_get(k, "decode_skip"));
        cr_assert(out_len == strlen(want) && memcmp(back, want, out_len) == 0,
                  "%s: decode(skip_special_tokens) gives \"%s\", tokenizers \"%s\"", what, back,
                  want);
        free(back);
        free(ids);
        free(text);
    }

    /* 64 KB of moby-dick.txt not seen in training, when ../shared is there */
    json_t *lt = json_object_get(root, "long_text");
    char path[512];
    if (shared_data_path(path, sizeof path, json_string_value(json_object_get(lt, "file")))) {
        size_t file_len;
        char *file = read_file(path, &file_len);
        cr_assert_not_null(file);
        size_t at = (size_t)json_integer_value(json_object_get(lt, "offset"));
        size_t n_bytes = (size_t)json_integer_value(json_object_get(lt, "bytes"));
        cr_assert_leq(at + n_bytes, file_len);
        uint32_t *ids = NULL;
        int64_t cap = 0, n = tok->encode(tok, file + at, n_bytes, &ids, &cap, 0);
        json_t *want = json_object_get(t, "long");
        char hash[17];
        snprintf(hash, sizeof hash, "%016llx", (unsigned long long)fnv_ids(ids, n));
        cr_assert_eq(n, json_integer_value(json_object_get(want, "tokens")), "%s: long text",
                     name);
        cr_assert_str_eq(hash, json_string_value(json_object_get(want, "fnv1a64")),
                         "%s: long text ids", name);
        free(ids);
        free(file);
    }
    tokenizer_free(tok);
    json_decref(root);
}

Test(tokjson, llama3_split_bytelevel_ignore_merges) { check_structure("llama3"); }
Test(tokjson, qwen2_nfc_split_bytelevel) { check_structure("qwen2"); }
Test(tokjson, llama2_sentencepiece_normalizer_byte_fallback) { check_structure("llama2"); }
Test(tokjson, mistral_metaspace_first) { check_structure("mistral"); }
Test(tokjson, smollm_digits_bytelevel) { check_structure("smollm"); }
Test(tokjson, gpt2_shape) { check_structure("gpt2"); }
Test(tokjson, kitchen_sink_options) { check_structure("kitchen"); }
Test(tokjson, metaspace_always_digits_contiguous) { check_structure("metaspace"); }
Test(tokjson, whitespace_then_bytelevel_prefix_space) { check_structure("wsplit"); }

/* ------------------------------------------------------- special ids */

Test(tokjson, special_ids_follow_tokenizer_config) {
    Tokenizer *tok = load_ok(FIXTURES "/llama3");
    cr_assert_eq(tok->eos_id, tokenizer_token_id(tok, "<|end_of_text|>"));
    cr_assert_eq(tok->bos_id, tokenizer_token_id(tok, "<|begin_of_text|>"));
    cr_assert_eq(tok->pad_id, tok->eos_id);
    cr_assert_eq(tok->n_special_prefix, 1);
    cr_assert_eq(tok->special_prefix[0], (uint32_t)tok->bos_id);
    cr_assert(tokenizer_is_special(tok, (uint32_t)tok->eos_id));
    cr_assert_eq(tok->newline_cuts_exact, 0);
    tokenizer_free(tok);
    tok = load_ok(FIXTURES "/qwen2");
    cr_assert_eq(tok->eos_id, tokenizer_token_id(tok, "<|im_end|>"));
    cr_assert_eq(tok->pad_id, tokenizer_token_id(tok, "<|endoftext|>"));
    cr_assert_eq(tok->bos_id, -1);
    cr_assert_eq(tok->n_special_prefix, 0);
    tokenizer_free(tok);
    tok = load_ok(FIXTURES "/llama2");
    cr_assert_eq(tok->eos_id, tokenizer_token_id(tok, "</s>"));
    cr_assert_eq(tok->bos_id, tokenizer_token_id(tok, "<s>"));
    cr_assert_eq(tokenizer_token_id(tok, "<0x0A>") >= 0, 1, "a vocabulary string");
    cr_assert_eq(tokenizer_token_id(tok, "no such token"), -1);
    Tokenizer *kitchen = load_ok(FIXTURES "/kitchen"); /* by content, not normalized spelling */
    cr_assert_geq(tokenizer_token_id(kitchen, "<SEP>"), 0);
    cr_assert_eq(tokenizer_is_special(kitchen, (uint32_t)tokenizer_token_id(kitchen, "<SEP>")), 0);
    cr_assert_eq(tokenizer_is_special(kitchen, (uint32_t)tokenizer_token_id(kitchen, "[MASK]")), 1);
    tokenizer_free(kitchen);
    /* decode_token streams: a byte-fallback token is its byte, "▁x" is " x" */
    char out[BPE_MAX_TOKEN_BYTES];
    cr_assert_eq(tok->decode_token(tok, (uint32_t)tokenizer_token_id(tok, "<0x0A>"), out), 1);
    cr_assert_eq(out[0], '\n');
    int the = tokenizer_token_id(tok, "\xE2\x96\x81the");
    cr_assert_geq(the, 0);
    int k = tok->decode_token(tok, (uint32_t)the, out);
    cr_assert(k == 4 && memcmp(out, " the", 4) == 0, "%.*s", k, out);
    tokenizer_free(tok);
}

/* ------------------------------------------------------- refusals */

/* The llama3 fixture with edit applied (a JSON object merged into the root, or
 * into the model when into_model), loaded: it must fail naming every needle. */
static void refused(const char *edit, int into_model, const char *const *needles) {
    json_error_t e;
    json_t *root = json_load_file(FIXTURES "/llama3/tokenizer.json", 0, &e);
    cr_assert_not_null(root);
    json_t *patch = json_loads(edit, 0, &e);
    cr_assert_not_null(patch, "bad test JSON %s: %s", edit, e.text);
    json_object_update(into_model ? json_object_get(root, "model") : root, patch);
    json_decref(patch);
    char dir[512], path[600];
    make_temp_dir(dir, sizeof dir, "tokjson");
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    cr_assert_eq(json_dump_file(root, path, 0), 0);
    json_decref(root);
    err_clear();
    Tokenizer *tok = tokenizer_load(path);
    cr_assert_null(tok, "%s was accepted", edit);
    for (; *needles; needles++) assert_contains(err_msg(), *needles);
    remove(path);
    rm_rf(dir);
}
#define REFUSED(edit, model, ...) refused(edit, model, (const char *const[]){__VA_ARGS__, NULL})

Test(tokjson, unsupported_components_are_named_with_their_path) {
    REFUSED("{\"type\": \"WordPiece\"}", 1, "model", "WordPiece");
    REFUSED("{\"type\": \"Unigram\"}", 1, "Unigram");
    REFUSED("{\"dropout\": 0.1}", 1, "model.dropout");
    REFUSED("{\"continuing_subword_prefix\": \"##\"}", 1, "continuing_subword_prefix");
    REFUSED("{\"normalizer\": {\"type\": \"BertNormalizer\"}}", 0, "normalizer",
            "BertNormalizer", "refused");
    REFUSED("{\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFC\"}, "
            "{\"type\": \"Precompiled\", \"precompiled_charsmap\": \"\"}]}}",
            0, "normalizer.normalizers[1]", "Precompiled");
    REFUSED("{\"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"}}", 0, "pre_tokenizer",
            "BertPreTokenizer");
    REFUSED("{\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": "
            "\"ByteLevel\"}, {\"type\": \"UnicodeScripts\"}]}}",
            0, "pre_tokenizer.pretokenizers[1]", "after a ByteLevel");
    REFUSED("{\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": "
            "\"Digits\"}, {\"type\": \"CharDelimiterSplit\", \"delimiter\": \"x\"}]}}",
            0, "pre_tokenizer.pretokenizers[1]", "CharDelimiterSplit");
    REFUSED("{\"post_processor\": {\"type\": \"RobertaProcessing\"}}", 0, "post_processor",
            "RobertaProcessing");
    REFUSED("{\"decoder\": {\"type\": \"CTC\"}}", 0, "decoder", "CTC");
    REFUSED("{\"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"ByteLevel\"}, "
            "{\"type\": \"WordPiece\"}]}}",
            0, "decoder.decoders[1]", "WordPiece");
    REFUSED("{\"truncation\": {\"max_length\": 8}}", 0, "truncation");
    REFUSED("{\"padding\": {\"strategy\": \"BatchLongest\"}}", 0, "padding");
}

Test(tokjson, regexes_that_pcre2_would_read_differently_are_refused) {
    static const char *const cases[][2] = {
        {"[a[bc]]", "nested character class"},
        {"(?m)a.b", "inline option"},
        {"[\\\\S]+", "negated class escape inside a character class"},
        {"[a-z&&[^aeiou]]", "class intersection"},
        {"(unclosed", "cannot compile"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char edit[512];
        snprintf(edit, sizeof edit,
                 "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"%s\"}, "
                 "\"behavior\": \"Isolated\", \"invert\": false}}",
                 cases[i][0]);
        REFUSED(edit, 0, "pre_tokenizer.pattern", cases[i][1]);
    }
}

Test(tokjson, regex_translation_keeps_oniguruma_meaning) {
    char *s = hf_regex_translate("\\h+|\\p{L}\\u00e9$", "t", "w");
    cr_assert_not_null(s, "%s", err_msg());
    assert_contains(s, "[0-9a-fA-F]+");
    assert_contains(s, "\\x{00e9}");
    assert_contains(s, "\\x{1C89}"); /* a Unicode 16 letter PCRE2 10.42 lacks */
    free(s);
}

/* --------------------------------------------------------- identities */

Test(tokjson, gpt2_files_keep_their_identity) {
    char buf[512];
    if (shared_data_path(buf, sizeof buf, "gpt2/encoder.json")) {
        Tokenizer *tok = load_ok("../shared/data/gpt2");
        /* the hash retort gave GPT-2 before tokenizer.json pipelines existed */
        assert_contains(tok->name, ":a77969436ccbc279");
        tokenizer_free(tok);
    }
    /* a pipeline's identity covers the pipeline: the same vocabulary and
     * merges with another normalizer is another tokenizer */
    Tokenizer *a = load_ok(FIXTURES "/llama3"), *b = load_ok(FIXTURES "/qwen2");
    cr_assert_eq(tokenizer_same(a->name, b->name), 0);
    Tokenizer *again = load_ok(FIXTURES "/llama3/tokenizer.json");
    cr_assert_eq(tokenizer_same(a->name, again->name), 1);
    tokenizer_free(a);
    tokenizer_free(b);
    tokenizer_free(again);
}

/* ------------------------------------------------------------ data build */

/* data build of lm data puts the post-processor's ids (a Llama BOS) first, as
 * transformers' tokenizer(text) does with add_special_tokens=True, and EOS
 * last; plain text with a pipeline is encoded whole, JSONL per document. */
Test(tokjson, data_build_adds_the_bos_of_the_post_processor) {
    char dir[256], in[300], txt[300], out[300], out2[300];
    make_temp_dir(dir, sizeof dir, "tokjson-build");
    snprintf(in, sizeof in, "%s/docs.jsonl", dir);
    snprintf(txt, sizeof txt, "%s/book.txt", dir);
    snprintf(out, sizeof out, "%s/docs.h5", dir);
    snprintf(out2, sizeof out2, "%s/book.h5", dir);
    const char *doc = "Call me Ishmael. Some years ago\n\tnever mind how long precisely";
    json_t *line = json_pack("{s:s}", "text", doc);
    char *line_text = json_dumps(line, 0);
    json_decref(line);
    char jsonl[512];
    snprintf(jsonl, sizeof jsonl, "%s\n%s\n", line_text, line_text);
    free(line_text);
    write_text(in, jsonl);
    write_text(txt, doc);
    Tokenizer *tok = load_ok(FIXTURES "/llama2");
    uint32_t *want = NULL;
    int64_t cap = 0, n = tokenizer_encode(tok, doc, strlen(doc), 1, &want, &cap, 0);
    cr_assert_eq(want[0], (uint32_t)tok->bos_id);
    const char *inputs[2] = {in, txt}, *outputs[2] = {out, out2};
    for (int k = 0; k < 2; k++) {
        BuildOptions o = {.input = inputs[k], .output = outputs[k], .schema = SCHEMA_LM,
                          .tokenizer = FIXTURES "/llama2", .text_field = "text", .quiet = 1};
        cr_assert_eq(data_build(&o), 0, "%s", err_msg());
        Dataset ds;
        cr_assert_eq(dataset_open(&ds, outputs[k]), 0, "%s", err_msg());
        cr_assert_eq(ds.n_docs, k == 0 ? 2 : 1);
        for (int64_t d = 0; d < ds.n_docs; d++) {
            int64_t a = ds.offsets[d], z = ds.offsets[d + 1];
            cr_assert_eq(z - a, n + 1, "document %lld: %lld tokens, want %lld + EOS", (long long)d,
                         (long long)(z - a), (long long)n);
            for (int64_t i = 0; i < n; i++) cr_assert_eq(ds.tokens[a + i], want[i]);
            cr_assert_eq(ds.tokens[z - 1], (uint32_t)tok->eos_id);
        }
        dataset_close(&ds);
    }
    free(want);
    tokenizer_free(tok);
    rm_rf(dir);
}
