/* tests/test_tokenizer.c — the byte-level BPE against its references: every
 * r50k_base sample of ../shared/data/gpt2/TestPlans.txt, the full shared texts
 * against tiktoken (hashes in tests/fixtures/tiktoken_text.json), the regex's
 * Unicode classes against tiktoken's (tests/fixtures/unicode_classes.json);
 * special tokens, invalid UTF-8, the four ways of loading GPT-2, tokenizer.json
 * options, refusals of broken files, and training (a hand-checked corpus and a
 * real one). Fixtures: tests/make_tokenizer_fixtures.py. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <jansson.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "data/bpe.h"
#include "data/build.h"
#include "data/h5data.h"
#include "data/tokenizer.h"
#include "tests/testutil.h"

#define EOS 50256

/* ---------------------------------------------------------------- helpers */

static Tokenizer *load_ok(const char *spec) {
    err_clear();
    Tokenizer *tok = tokenizer_load(spec);
    cr_assert_not_null(tok, "loading %s: %s", spec, err_msg());
    return tok;
}

/* GPT-2 from ../shared/data/gpt2 (encoder.json + vocab.bpe), or NULL to skip. */
static Tokenizer *gpt2(void) {
    char buf[512];
    if (!shared_data_path(buf, sizeof buf, "gpt2/encoder.json")) return NULL;
    return load_ok("../shared/data/gpt2");
}

static uint32_t *encode(Tokenizer *tok, const char *text, size_t len, int64_t *n) {
    uint32_t *ids = NULL;
    int64_t cap = 0;
    *n = tok->encode(tok, text, len, &ids, &cap, 0);
    cr_assert_leq(*n, cap);
    return ids;
}

/* Decodes with decode_token; the result may hold NUL bytes, so its length is returned. */
static char *decode(Tokenizer *tok, const uint32_t *ids, int64_t n, size_t *len) {
    size_t cap = 64, k = 0;
    char *out = malloc(cap), piece[BPE_MAX_TOKEN_BYTES];
    for (int64_t i = 0; i < n; i++) {
        int m = tok->decode_token(tok, ids[i], piece);
        cr_assert(m >= 0 && m <= BPE_MAX_TOKEN_BYTES);
        while (k + (size_t)m > cap) out = realloc(out, cap *= 2);
        memcpy(out + k, piece, (size_t)m);
        k += (size_t)m;
    }
    *len = k;
    return out;
}

static void assert_round_trip(Tokenizer *tok, const char *text, size_t len) {
    int64_t n;
    uint32_t *ids = encode(tok, text, len, &n);
    for (int64_t i = 0; i < n; i++) cr_assert_lt(ids[i], (uint32_t)tok->vocab_size);
    size_t back_len;
    char *back = decode(tok, ids, n, &back_len);
    cr_assert(back_len == len && memcmp(back, text, len) == 0,
              "%zu bytes did not decode back (%zu bytes)", len, back_len);
    free(back);
    free(ids);
}

static void assert_ids(Tokenizer *tok, const char *text, const uint32_t *want, int64_t n_want) {
    int64_t n;
    uint32_t *ids = encode(tok, text, strlen(text), &n);
    cr_assert_eq(n, n_want, "\"%s\": %lld ids, want %lld", text, (long long)n, (long long)n_want);
    for (int64_t i = 0; i < n; i++)
        cr_assert_eq(ids[i], want[i], "\"%s\": id %lld is %u, want %u", text, (long long)i, ids[i],
                     want[i]);
    free(ids);
}
#define IDS(tok, text, ...)                                                                  \
    assert_ids(tok, text, (const uint32_t[]){__VA_ARGS__},                                   \
               sizeof((const uint32_t[]){__VA_ARGS__}) / sizeof(uint32_t))

/* FNV-1a 64 over ids as uint32 little-endian, as tests/make_tokenizer_fixtures.py. */
static uint64_t ids_hash(const uint32_t *ids, int64_t n) {
    uint64_t h = BPE_FNV_OFFSET;
    for (int64_t i = 0; i < n; i++) {
        unsigned char le[4] = {(unsigned char)ids[i], (unsigned char)(ids[i] >> 8),
                               (unsigned char)(ids[i] >> 16), (unsigned char)(ids[i] >> 24)};
        h = bpe_fnv1a(h, le, 4);
    }
    return h;
}

/* tokenizer_load(spec) must fail with a message holding every needle. */
static void assert_refused(const char *spec, const char *const *needles) {
    err_clear();
    Tokenizer *tok = tokenizer_load(spec);
    cr_assert_null(tok, "%s was accepted", spec);
    for (; *needles; needles++) assert_contains(err_msg(), *needles);
}
#define REFUSED(spec, ...) assert_refused(spec, (const char *const[]){__VA_ARGS__, NULL})

/* GPT-2's bytes_to_unicode spelling of byte b as a JSON-ready UTF-8 string. */
static const char *byte_spelling(int b, char buf[3]) {
    int n = bpe_byte_to_utf8((unsigned char)b, buf);
    buf[n] = '\0';
    return buf;
}

/* A tokenizer.json whose vocabulary is the 256 byte tokens (ids by code point
 * order, as training assigns them) plus extra tokens "name": id, with merges
 * and the JSON of the pre-tokenizer / added tokens / model options given. */
static void write_small_json(const char *path, const char *extra_vocab, const char *merges,
                             const char *pre, const char *added, const char *model_opts) {
    json_t *vocab = json_object();
    int order[256], k = 0;
    for (int cp = 0; cp < 324; cp++) {
        int b = bpe_codepoint_to_byte((uint32_t)cp);
        if (b >= 0) order[k++] = b;
    }
    cr_assert_eq(k, 256);
    for (int i = 0; i < 256; i++) {
        char s[3];
        json_object_set_new(vocab, byte_spelling(order[i], s), json_integer(i));
    }
    json_error_t e;
    json_t *extra = json_loads(extra_vocab, 0, &e);
    cr_assert_not_null(extra, "bad test JSON: %s", e.text);
    json_object_update(vocab, extra);
    json_decref(extra);
    char *vocab_text = json_dumps(vocab, 0);
    json_decref(vocab);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f,
            "{\"version\": \"1.0\", \"added_tokens\": %s, \"normalizer\": null,\n"
            " \"pre_tokenizer\": %s, \"post_processor\": null, \"decoder\": null,\n"
            " \"model\": {\"type\": \"BPE\"%s, \"vocab\": %s, \"merges\": %s}}\n",
            added, pre, model_opts, vocab_text, merges);
    fclose(f);
    free(vocab_text);
}

#define BYTELEVEL                                                                        \
    "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, "    \
    "\"use_regex\": true}"
#define EOS_ADDED(id)                                                                        \
    "[{\"id\": " #id ", \"content\": \"<|endoftext|>\", \"special\": true, \"lstrip\": false, " \
    "\"rstrip\": false, \"single_word\": false, \"normalized\": false}]"

/* ------------------------------------------------------- GPT-2 parity */

Test(tokenizer, testplans_r50k) {
    char path[512];
    if (!shared_data_path(path, sizeof path, "gpt2/TestPlans.txt")) cr_skip_test();
    Tokenizer *tok = gpt2();
    size_t len;
    char *text = read_file(path, &len);
    cr_assert_not_null(text, "%s", err_msg());
    /* blocks of "EncodingName: X" / "Sample: S" / "Encoded: [ids]" lines; a
     * sample is the rest of its line, trailing spaces included */
    int checked = 0, line_no = 0, in_r50k = 0;
    char *sample = NULL;
    for (char *line = text, *next; line && *line; line = next) {
        line_no++;
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        next = nl ? nl + 1 : NULL;
        if (!strncmp(line, "EncodingName: ", 14)) {
            in_r50k = strcmp(line + 14, "r50k_base") == 0;
            sample = NULL;
        } else if (!strncmp(line, "Sample: ", 8)) {
            sample = line + 8;
        } else if (!strncmp(line, "Encoded: [", 10) && in_r50k) {
            cr_assert_not_null(sample, "line %d: Encoded without Sample", line_no);
            uint32_t want[4096];
            int64_t n_want = 0;
            for (char *p = line + 10; *p && *p != ']';) {
                char *end;
                long v = strtol(p, &end, 10);
                cr_assert(end != p, "line %d: bad id list", line_no);
                cr_assert_lt(n_want, 4096);
                want[n_want++] = (uint32_t)v;
                p = end;
                while (*p == ',' || *p == ' ') p++;
            }
            int64_t n;
            uint32_t *ids = encode(tok, sample, strlen(sample), &n);
            cr_expect_eq(n, n_want, "line %d \"%s\": %lld ids, want %lld", line_no, sample,
                         (long long)n, (long long)n_want);
            for (int64_t i = 0; i < n && i < n_want; i++)
                cr_expect_eq(ids[i], want[i], "line %d \"%s\": id %lld is %u, want %u", line_no,
                             sample, (long long)i, ids[i], want[i]);
            free(ids);
            assert_round_trip(tok, sample, strlen(sample));
            checked++;
        }
    }
    cr_assert_geq(checked, 60, "only %d r50k_base samples found in %s", checked, path);
    cr_log_info("TestPlans.txt: %d r50k_base samples checked", checked);
    free(text);
    tokenizer_free(tok);
}

Test(tokenizer, texts_match_tiktoken) {
    char path[512];
    if (!shared_data_path(path, sizeof path, "text/moby-dick.txt")) cr_skip_test();
    json_error_t e;
    json_t *fix = json_load_file("tests/fixtures/tiktoken_text.json", 0, &e);
    cr_assert_not_null(fix, "tests/fixtures/tiktoken_text.json: %s", e.text);
    int64_t chunk = json_integer_value(json_object_get(fix, "chunk"));
    cr_assert_gt(chunk, 0);
    Tokenizer *tok = gpt2();
    const char *rel;
    json_t *want;
    int files = 0;
    json_object_foreach(json_object_get(fix, "files"), rel, want) {
        cr_assert_not_null(shared_data_path(path, sizeof path, rel));
        size_t len;
        char *text = read_file(path, &len);
        cr_assert_not_null(text, "%s", err_msg());
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx",
                 (unsigned long long)bpe_fnv1a(BPE_FNV_OFFSET, text, len));
        cr_assert_str_eq(hex, json_string_value(json_object_get(want, "text_fnv1a64")),
                         "%s is not the file the fixture was made from; rerun "
                         "tests/make_tokenizer_fixtures.py",
                         path);
        int64_t n;
        uint32_t *ids = encode(tok, text, len, &n);
        json_t *chunks = json_object_get(want, "chunks");
        for (size_t c = 0; c < json_array_size(chunks); c++) {
            int64_t from = (int64_t)c * chunk, to = from + chunk < n ? from + chunk : n;
            snprintf(hex, sizeof hex, "%016llx",
                     (unsigned long long)(from < n ? ids_hash(ids + from, to - from)
                                                   : ids_hash(NULL, 0)));
            cr_expect_str_eq(hex, json_string_value(json_array_get(chunks, c)),
                             "%s: ids %lld..%lld differ from tiktoken's", rel, (long long)from,
                             (long long)to);
        }
        cr_assert_eq(n, json_integer_value(json_object_get(want, "tokens")), "%s: %lld tokens",
                     rel, (long long)n);
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)ids_hash(ids, n));
        cr_assert_str_eq(hex, json_string_value(json_object_get(want, "fnv1a64")), "%s", rel);
        size_t back_len;
        char *back = decode(tok, ids, n, &back_len);
        cr_assert(back_len == len && memcmp(back, text, len) == 0, "%s: no round trip", rel);
        free(back);
        free(ids);
        free(text);
        files++;
    }
    cr_assert_eq(files, 2);
    json_decref(fix);
    tokenizer_free(tok);
}

static int utf8(uint32_t cp, char *o) {
    if (cp < 0x80) return o[0] = (char)cp, 1;
    if (cp < 0x800) return o[0] = (char)(0xC0 | cp >> 6), o[1] = (char)(0x80 | (cp & 63)), 2;
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12);
        o[1] = (char)(0x80 | ((cp >> 6) & 63));
        o[2] = (char)(0x80 | (cp & 63));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18);
    o[1] = (char)(0x80 | ((cp >> 12) & 63));
    o[2] = (char)(0x80 | ((cp >> 6) & 63));
    o[3] = (char)(0x80 | (cp & 63));
    return 4;
}

/* Does the regex's first match of prefix + cp take in the code point? */
static int joins(BpeRegex *re, char prefix, uint32_t cp) {
    char text[8] = {prefix};
    int n = utf8(cp, text + 1);
    size_t start, end;
    cr_assert(bpe_regex_next(re, text, (size_t)n + 1, 0, &start, &end));
    return start == 0 && end == (size_t)n + 1;
}

Test(tokenizer, unicode_classes_match_tiktoken) {
    json_error_t e;
    json_t *fix = json_load_file("tests/fixtures/unicode_classes.json", 0, &e);
    cr_assert_not_null(fix, "tests/fixtures/unicode_classes.json: %s", e.text);
    unsigned char *want = calloc(0x110000, 1);
    const char *names = "LNS";
    for (int k = 0; k < 3; k++) {
        char key[2] = {names[k], 0};
        json_t *ranges = json_object_get(json_object_get(fix, "classes"), key), *r;
        size_t i;
        cr_assert_gt(json_array_size(ranges), 0);
        json_array_foreach(ranges, i, r) {
            for (json_int_t cp = json_integer_value(json_array_get(r, 0));
                 cp <= json_integer_value(json_array_get(r, 1)); cp++)
                want[cp] |= (unsigned char)(1 << k);
        }
    }
    BpeRegex *re = bpe_regex_new();
    cr_assert_not_null(re, "%s", err_msg());
    /* "a"+c is one piece iff c is a letter, "1"+c iff a number, "\t"+c iff space */
    int bad = 0;
    for (uint32_t cp = 0; cp < 0x110000; cp++) {
        if (cp >= 0xD800 && cp <= 0xDFFF) continue;
        int got = joins(re, 'a', cp) | joins(re, '1', cp) << 1 | joins(re, '\t', cp) << 2;
        if (got != want[cp] && bad++ < 10)
            cr_expect_eq(got, want[cp], "U+%04X: classes %d (bits L,N,S), tiktoken says %d", cp,
                         got, want[cp]);
    }
    cr_assert_eq(bad, 0, "%d code points classified unlike tiktoken", bad);
    bpe_regex_free(re);
    free(want);
    json_decref(fix);
}

/* ------------------------------------------------- special tokens, bytes */

Test(tokenizer, special_tokens_cut_first) {
    Tokenizer *tok = gpt2();
    if (!tok) cr_skip_test();
    cr_assert_eq(tok->vocab_size, 50257);
    cr_assert_eq(tok->eos_id, EOS);
    cr_assert_eq(tok->pad_id, EOS);
    IDS(tok, "<|endoftext|>", EOS);
    IDS(tok, "Hello world<|endoftext|> it's", 15496, 995, EOS, 340, 338);
    IDS(tok, "<|endoftext|><|endoftext|>a", EOS, EOS, 64);
    IDS(tok, "a<|endoftext|>", 64, EOS);
    /* the span before a special token ends there: "  " stays whole */
    IDS(tok, "a  <|endoftext|>", 64, 220, 220, EOS);
    /* a near miss is text */
    int64_t n;
    uint32_t *ids = encode(tok, "<|endoftext|", 12, &n);
    for (int64_t i = 0; i < n; i++) cr_assert_neq(ids[i], (uint32_t)EOS);
    free(ids);
    char piece[BPE_MAX_TOKEN_BYTES];
    cr_assert_eq(tok->decode_token(tok, EOS, piece), 13);
    cr_assert(memcmp(piece, "<|endoftext|>", 13) == 0);
    cr_assert_eq(tok->decode_token(tok, 50257, piece), 0, "an id past the vocabulary");
    assert_round_trip(tok, "x<|endoftext|>y<|endoftext|>", 28);
    tokenizer_free(tok);
}

Test(tokenizer, invalid_utf8_encodes_and_round_trips) {
    Tokenizer *tok = gpt2();
    if (!tok) cr_skip_test();
    /* a malformed sequence is a piece of its own, between the valid pieces */
    IDS(tok, "a\xff" "b", 64, 187 /* "ÿ": byte 0xff */, 65);
    int64_t n_hello, n_world, n;
    uint32_t *hello = encode(tok, "hello", 5, &n_hello);
    uint32_t *world = encode(tok, " world", 6, &n_world);
    uint32_t *mixed = encode(tok, "hello\xc3 world", 12, &n);
    cr_assert_eq(n, n_hello + 1 + n_world);
    cr_assert_eq(mixed[0], hello[0]);
    cr_assert_eq(mixed[n_hello + 1], world[0]);
    free(hello);
    free(world);
    free(mixed);
    static const char *const bad[] = {
        "\xff\xfe", "\xc3", "abc\xe2\x82", "\xed\xa0\x80 surrogate", "\xf4\x90\x80\x80 > U+10FFFF",
        "\xc0\xaf overlong", "\x80\x80\x80", "caf\xc3\xa9\xc3", " \xff \xff  \xff\n\n\xfe"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_round_trip(tok, bad[i], strlen(bad[i]));
    /* random bytes, NULs included */
    Rng r;
    rng_seed(&r, 7);
    size_t len = 200000;
    char *noise = malloc(len);
    for (size_t i = 0; i < len; i++) noise[i] = (char)rng_below(&r, 256);
    assert_round_trip(tok, noise, len);
    /* and text with sparse damage */
    for (size_t i = 0; i < len; i++) noise[i] = rng_below(&r, 50) ? "ab cd\n"[i % 6] : (char)0xff;
    assert_round_trip(tok, noise, len);
    free(noise);
    tokenizer_free(tok);
}

/* One pre-token of more ids than the encoder's cache started with (1 << 16):
 * 70,001 letters "a" with no merge for them are 70,001 ids. At 1df6ed0 the
 * cache grew once, by doubling, and the copy of the ids overran it (a heap
 * overflow; ASan names it, a plain build corrupts the heap or crashes). The
 * run is encoded twice (the second may come from the cache) around a short
 * piece, and every id is checked, then the same text goes through
 * `retort data build --tokenizer`. */
Test(tokenizer, pre_token_longer_than_the_cache_encodes_exactly) {
    char dir[256], json[300], txt[300], h5[300];
    make_temp_dir(dir, sizeof dir, "tok-long");
    snprintf(json, sizeof json, "%s/small.json", dir);
    snprintf(txt, sizeof txt, "%s/long.txt", dir);
    snprintf(h5, sizeof h5, "%s/long.h5", dir);
    write_small_json(json, "{\"ab\": 256, \"<|endoftext|>\": 257}", "[\"a b\"]", BYTELEVEL,
                     EOS_ADDED(257), "");
    enum { RUN = 70001 };
    size_t len = 2 * RUN + 3;
    char *text = malloc(len + 1);
    memset(text, 'a', RUN);
    memcpy(text + RUN, " ab", 3); /* " ab": 220 (' '), 256 ("ab") */
    memset(text + RUN + 3, 'a', RUN);
    text[len] = '\0';
    int64_t want_n = 2 * RUN + 2;
    uint32_t *want = malloc((size_t)want_n * sizeof *want);
    for (int64_t i = 0; i < want_n; i++) want[i] = 64; /* "a" */
    want[RUN] = 220;
    want[RUN + 1] = 256;

    Tokenizer *tok = load_ok(json);
    for (int pass = 0; pass < 2; pass++) {
        int64_t n;
        uint32_t *ids = encode(tok, text, len, &n);
        cr_assert_eq(n, want_n, "pass %d: %lld ids, want %lld", pass, (long long)n,
                     (long long)want_n);
        for (int64_t i = 0; i < n; i++)
            cr_assert_eq(ids[i], want[i], "pass %d: id %lld is %u, want %u", pass, (long long)i,
                         ids[i], want[i]);
        free(ids);
    }
    assert_round_trip(tok, text, len);
    tokenizer_free(tok);

    write_bytes(txt, text, len);
    char *argv[] = {"data", "build", "--input", txt, "--out", h5, "--tokenizer", json, "-q", NULL};
    cr_assert_eq(cmd_data(9, argv), 0, "data build: %s", err_msg());
    Dataset ds;
    cr_assert_eq(dataset_open(&ds, h5), 0, "%s", err_msg());
    cr_assert_eq(ds.n_tokens, want_n + 1, "%lld tokens, want %lld + EOS", (long long)ds.n_tokens,
                 (long long)want_n);
    for (int64_t i = 0; i < want_n; i++)
        cr_assert_eq(ds.tokens[i], want[i], "stored token %lld is %u, want %u", (long long)i,
                     ds.tokens[i], want[i]);
    cr_assert_eq(ds.tokens[want_n], 257u);
    dataset_close(&ds);
    free(want);
    free(text);
    rm_rf(dir);
}

Test(tokenizer, bytes_spec_still_loads) {
    Tokenizer *tok = load_ok("bytes");
    cr_assert_eq(tok->vocab_size, 257);
    tokenizer_free(tok);
    REFUSED("", "no tokenizer given");
}

/* ------------------------------------------------------ the file formats */

/* tokenizer.json from encoder.json + vocab.bpe: merges as strings or pairs. */
static void gpt2_tokenizer_json(const char *out, int pairs) {
    json_error_t e;
    json_t *vocab = json_load_file("../shared/data/gpt2/encoder.json", 0, &e);
    cr_assert_not_null(vocab, "%s", e.text);
    size_t len;
    char *bpe = read_file("../shared/data/gpt2/vocab.bpe", &len);
    cr_assert_not_null(bpe);
    json_t *merges = json_array();
    for (char *line = strtok(bpe, "\n"); line; line = strtok(NULL, "\n")) {
        if (!strncmp(line, "#version", 8)) continue;
        char *sp = strchr(line, ' ');
        cr_assert_not_null(sp);
        if (pairs) {
            *sp = '\0';
            json_array_append_new(merges, json_pack("[s,s]", line, sp + 1));
        } else {
            json_array_append_new(merges, json_string(line));
        }
    }
    free(bpe);
    json_t *root = json_pack(
        "{s:s, s:[{s:i, s:s, s:b, s:b, s:b, s:b, s:b}], s:n, s:{s:s, s:b, s:b, s:b}, "
        "s:{s:s, s:b, s:b, s:b}, s:{s:s, s:n, s:o, s:o}}",
        "version", "1.0", "added_tokens", "id", EOS, "content", "<|endoftext|>", "single_word", 0,
        "lstrip", 0, "rstrip", 0, "normalized", 1, "special", 1, "normalizer", "pre_tokenizer",
        "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1, "use_regex", 1,
        "post_processor", "type", "ByteLevel", "add_prefix_space", 1, "trim_offsets", 0,
        "use_regex", 1, "model", "type", "BPE", "dropout", "vocab", vocab, "merges", merges);
    cr_assert_not_null(root);
    cr_assert_eq(json_dump_file(root, out, 0), 0);
    json_decref(root);
}

Test(tokenizer, four_sources_of_gpt2_agree) {
    char enc[PATH_MAX], bpe[PATH_MAX];
    if (!shared_data_path(enc, sizeof enc, "gpt2/encoder.json")) cr_skip_test();
    cr_assert_not_null(realpath("../shared/data/gpt2/encoder.json", enc));
    cr_assert_not_null(realpath("../shared/data/gpt2/vocab.bpe", bpe));
    char dir[256], hf_dir[300], p[400], json_file[400], pairs_file[400];
    make_temp_dir(dir, sizeof dir, "tok-formats");
    /* vocab.json + merges.txt, the Hugging Face slow-tokenizer names */
    snprintf(hf_dir, sizeof hf_dir, "%s/hf", dir);
    cr_assert_eq(mkdir(hf_dir, 0755), 0);
    snprintf(p, sizeof p, "%s/vocab.json", hf_dir);
    cr_assert_eq(symlink(enc, p), 0);
    snprintf(p, sizeof p, "%s/merges.txt", hf_dir);
    cr_assert_eq(symlink(bpe, p), 0);
    snprintf(json_file, sizeof json_file, "%s/tokenizer.json", dir); /* dir holds tokenizer.json */
    gpt2_tokenizer_json(json_file, 0);
    snprintf(pairs_file, sizeof pairs_file, "%s/pairs.json", dir);
    gpt2_tokenizer_json(pairs_file, 1);

    Tokenizer *ref = load_ok("../shared/data/gpt2");
    const char *specs[] = {hf_dir, json_file, dir, pairs_file};
    size_t len;
    char *text = read_file("../shared/data/text/moby-dick.txt", &len);
    cr_assert_not_null(text);
    len = 200000;
    int64_t n_ref;
    uint32_t *want = encode(ref, text, len, &n_ref);
    for (int k = 0; k < 4; k++) {
        Tokenizer *tok = load_ok(specs[k]);
        cr_assert_eq(tok->vocab_size, ref->vocab_size, "%s", specs[k]);
        cr_assert_eq(tok->eos_id, ref->eos_id, "%s", specs[k]);
        /* the name's hash is of what the ids mean, not of the files */
        cr_assert_str_eq(strrchr(tok->name, ':'), strrchr(ref->name, ':'), "%s", specs[k]);
        int64_t n;
        uint32_t *ids = encode(tok, text, len, &n);
        cr_assert_eq(n, n_ref, "%s", specs[k]);
        cr_assert(memcmp(ids, want, (size_t)n * sizeof *ids) == 0, "%s encodes differently",
                  specs[k]);
        IDS(tok, "x<|endoftext|>", 87, EOS);
        free(ids);
        tokenizer_free(tok);
    }
    free(want);
    free(text);
    tokenizer_free(ref);
    rm_rf(dir);
}

/* Expected ids checked against tokenizers 0.23 with the same JSON. */
Test(tokenizer, json_options_ignore_merges_and_prefix_space) {
    char dir[256], plain[300], ignore[300], prefix[300];
    make_temp_dir(dir, sizeof dir, "tok-options");
    snprintf(plain, sizeof plain, "%s/plain.json", dir);
    snprintf(ignore, sizeof ignore, "%s/ignore.json", dir);
    snprintf(prefix, sizeof prefix, "%s/prefix.json", dir);
    const char *vocab = "{\"ab\": 256, \"abc\": 257, \"<|endoftext|>\": 258}";
    write_small_json(plain, vocab, "[\"a b\"]", BYTELEVEL, EOS_ADDED(258), "");
    write_small_json(ignore, vocab, "[\"a b\"]", BYTELEVEL, EOS_ADDED(258),
                     ", \"ignore_merges\": true");
    write_small_json(prefix, vocab, "[\"a b\"]",
                     "{\"type\": \"ByteLevel\", \"add_prefix_space\": true, "
                     "\"trim_offsets\": true, \"use_regex\": true}",
                     EOS_ADDED(258), "");
    Tokenizer *tok = load_ok(plain);
    cr_assert_eq(tok->vocab_size, 259);
    IDS(tok, "abc abcd abc", 256, 66, 220, 256, 66, 67, 220, 256, 66);
    IDS(tok, "Hi<|endoftext|>there", 39, 72, 258, 83, 71, 68, 81, 68);
    tokenizer_free(tok);
    tok = load_ok(ignore);
    IDS(tok, "abc abcd abc", 257, 220, 256, 66, 67, 220, 256, 66);
    tokenizer_free(tok);
    tok = load_ok(prefix); /* a space before each span that lacks one */
    IDS(tok, "Hi<|endoftext|>there", 220, 39, 72, 258, 220, 83, 71, 68, 81, 68);
    IDS(tok, " ab", 220, 256);
    IDS(tok, "<|endoftext|>x", 258, 220, 87);
    tokenizer_free(tok);
    rm_rf(dir);
}

/* ---------------------------------------------------------------- refusals */

Test(tokenizer, refuses_broken_files_with_clear_messages) {
    char dir[256], p[400], q[400];
    make_temp_dir(dir, sizeof dir, "tok-errors");

    snprintf(p, sizeof p, "%s/missing.json", dir);
    REFUSED(p, p, "No such file", "tokenizer.json");
    REFUSED(dir, dir, "none of tokenizer.json"); /* an empty directory */

    snprintf(p, sizeof p, "%s/bad.json", dir);
    write_text(p, "{\"model\": {\"vocab\": {\"a\": 1,}}");
    REFUSED(p, p, "malformed JSON");

    write_text(p, "{\"version\": \"1.0\"}");
    REFUSED(p, p, "no \"model\"");

    const char *eos = "{\"<|endoftext|>\": 256}";
    write_small_json(p, eos, "[\"a zz\"]", BYTELEVEL, "[]", "");
    REFUSED(p, p, "merges[0]", "\"zz\"", "not in the vocabulary");
    write_small_json(p, eos, "[\"a b\"]", BYTELEVEL, "[]", "");
    REFUSED(p, p, "merges[0]", "makes \"ab\"", "not in the vocabulary");
    write_small_json(p, eos, "[\"a b c\"]", BYTELEVEL, "[]", "");
    REFUSED(p, p, "merges[0]", "not a \"left right\" string");
    write_small_json(p, "{}", "[]", BYTELEVEL, "[]", "");
    REFUSED(p, p, "no end-of-sequence token", "<|endoftext|>", "eos_token");
    write_small_json(p, "{\"<|endoftext|>\": -3}", "[]", BYTELEVEL, "[]", "");
    REFUSED(p, p, "\"<|endoftext|>\"", "ids must be integers");
    write_small_json(p, "{\"<|endoftext|>\": 10}", "[]", BYTELEVEL, "[]", "");
    REFUSED(p, p, "id 10 is given to both");
    write_small_json(p, eos, "[]", "{\"type\": \"BertPreTokenizer\"}", "[]", "");
    REFUSED(p, p, "pre_tokenizer", "BertPreTokenizer is not supported"); /* test_tokjson.c has more */
    write_small_json(p, eos, "[]", BYTELEVEL, "[]", ", \"dropout\": 0.1");
    REFUSED(p, p, "dropout");
    write_small_json(p, eos, "[]", BYTELEVEL, "[]", ", \"continuing_subword_prefix\": \"##\"");
    REFUSED(p, p, "continuing_subword_prefix");

    /* a vocabulary that is not byte-level: "Ā" (byte 0x00) is missing */
    snprintf(p, sizeof p, "%s/vocab.json", dir);
    write_text(p, "{\"a\": 0, \"<|endoftext|>\": 1}");
    snprintf(q, sizeof q, "%s/merges.txt", dir);
    write_text(q, "#version: 0.2\n");
    REFUSED(dir, p, "lacks", "byte 0x00");

    /* merges.txt naming unknown tokens, with its line number */
    json_t *vocab = json_object();
    for (int b = 0; b < 256; b++) {
        char s[3];
        json_object_set_new(vocab, byte_spelling(b, s), json_integer(b));
    }
    json_object_set_new(vocab, "<|endoftext|>", json_integer(256));
    cr_assert_eq(json_dump_file(vocab, p, 0), 0);
    json_decref(vocab);
    write_text(q, "#version: 0.2\nq u\n");
    REFUSED(dir, q, "line 2", "makes \"qu\"");
    write_text(q, "#version: 0.2\nqu x\n");
    REFUSED(dir, q, "line 2", "\"qu\", which is not in the vocabulary");
    write_text(q, "#version: 0.2\nnospace\n");
    REFUSED(dir, q, "line 2", "is not a merge");
    write_text(q, "#version: 0.2\n");
    Tokenizer *tok = load_ok(dir); /* the same files, repaired, load */
    cr_assert_eq(tok->vocab_size, 257);
    cr_assert_eq(tok->eos_id, 256);
    tokenizer_free(tok);
    rm_rf(dir);
}

/* ---------------------------------------------------------------- training */

static json_t *load_json_ok(const char *path) {
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    cr_assert_not_null(j, "%s: %s", path, e.text);
    return j;
}

/* "aaabdaaabac": (a,a) 4 times; then (a,b) and (aa,a) 2 each, the smaller
 * ids (a < aa) win; then (aa,ab) 2; then four pairs once each, (a,c) has the
 * smallest ids. */
Test(tokenizer, train_follows_counts_and_tie_rule) {
    char dir[256], corpus[300], out[300];
    make_temp_dir(dir, sizeof dir, "tok-train-small");
    snprintf(corpus, sizeof corpus, "%s/c.txt", dir);
    snprintf(out, sizeof out, "%s/tok.json", dir);
    write_text(corpus, "aaabdaaabac");
    cr_assert_eq(bpe_train(corpus, 261, out, NULL), 0, "%s", err_msg());
    json_t *j = load_json_ok(out);
    json_t *model = json_object_get(j, "model");
    const char *want[] = {"a a", "a b", "aa ab", "a c"};
    json_t *merges = json_object_get(model, "merges");
    cr_assert_eq(json_array_size(merges), 4);
    for (int i = 0; i < 4; i++)
        cr_assert_str_eq(json_string_value(json_array_get(merges, (size_t)i)), want[i]);
    json_t *vocab = json_object_get(model, "vocab");
    cr_assert_eq(json_integer_value(json_object_get(vocab, "a")), 64);
    cr_assert_eq(json_integer_value(json_object_get(vocab, "aaab")), 258);
    cr_assert_eq(json_integer_value(json_object_get(vocab, "<|endoftext|>")), 260);
    json_decref(j);
    Tokenizer *tok = load_ok(out);
    cr_assert_eq(tok->vocab_size, 261);
    cr_assert_eq(tok->eos_id, 260);
    IDS(tok, "aaabdaaabac", 258, 67, 258, 259);
    tokenizer_free(tok);

    /* fewer pairs than asked for: training stops, the vocabulary is smaller */
    write_text(corpus, "ab ab");
    cr_assert_eq(bpe_train(corpus, 1000, out, NULL), 0, "%s", err_msg());
    tok = load_ok(out);
    cr_assert_eq(tok->vocab_size, 256 + 2 + 1, "ab, Ġab; then nothing is left to merge");
    tokenizer_free(tok);

    cr_assert_eq(bpe_train(corpus, 256, out, NULL), -1);
    assert_contains(err_msg(), "vocab size 256");
    snprintf(corpus, sizeof corpus, "%s/none.txt", dir);
    cr_assert_eq(bpe_train(corpus, 300, out, NULL), -1);
    assert_contains(err_msg(), corpus);
    rm_rf(dir);
}

Test(tokenizer, train_on_moby_dick_round_trips) {
    char path[512];
    if (!shared_data_path(path, sizeof path, "text/moby-dick.txt")) cr_skip_test();
    size_t len;
    char *text = read_file(path, &len);
    cr_assert_not_null(text);
    len = 200000;
    char dir[256], corpus[300], out[300], again[300];
    make_temp_dir(dir, sizeof dir, "tok-train");
    snprintf(corpus, sizeof corpus, "%s/corpus.txt", dir);
    snprintf(out, sizeof out, "%s/tok.json", dir);
    snprintf(again, sizeof again, "%s/again.json", dir);
    write_bytes(corpus, text, len);
    cr_assert_eq(bpe_train(corpus, 500, out, NULL), 0, "%s", err_msg());
    cr_assert_eq(bpe_train(corpus, 500, again, NULL), 0, "%s", err_msg());
    size_t a_len, b_len;
    char *a = read_file(out, &a_len), *b = read_file(again, &b_len);
    cr_assert(a_len == b_len && memcmp(a, b, a_len) == 0, "training is not deterministic");
    free(a);
    free(b);

    json_t *j = load_json_ok(out);
    json_t *pre = json_object_get(j, "pre_tokenizer"), *model = json_object_get(j, "model");
    cr_assert_str_eq(json_string_value(json_object_get(pre, "type")), "ByteLevel");
    cr_assert(json_is_false(json_object_get(pre, "add_prefix_space")));
    cr_assert(json_is_true(json_object_get(pre, "use_regex")));
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "decoder"), "type")),
                     "ByteLevel");
    cr_assert_str_eq(json_string_value(json_object_get(model, "type")), "BPE");
    json_t *added = json_array_get(json_object_get(j, "added_tokens"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(added, "content")), "<|endoftext|>");
    cr_assert(json_is_true(json_object_get(added, "special")));
    cr_assert_eq(json_object_size(json_object_get(model, "vocab")), 500);
    cr_assert_geq(json_array_size(json_object_get(model, "merges")), 500 - 257);
    json_decref(j);

    Tokenizer *tok = load_ok(out);
    cr_assert_eq(tok->vocab_size, 500);
    cr_assert_eq(tok->eos_id, 499);
    int64_t n;
    uint32_t *ids = encode(tok, text, len, &n);
    cr_assert_lt(n, (int64_t)len / 2, "%lld tokens for %zu bytes: merges are not applied",
                 (long long)n, len);
    free(ids);
    assert_round_trip(tok, text, len);
    const char *odd = "Call me Ishmael.<|endoftext|>\xff\xfe";
    assert_round_trip(tok, odd, strlen(odd));
    tokenizer_free(tok);
    free(text);
    rm_rf(dir);
}

/* ------------------------------------------------------------ command line */

Test(tokenizer, cli_encode_prints_ids, .init = cr_redirect_stdout) {
    char enc[512];
    if (!shared_data_path(enc, sizeof enc, "gpt2/encoder.json")) cr_skip_test();
    char *argv[] = {"tokenizer", "encode", "--tokenizer", "../shared/data/gpt2", "--text",
                    "Hello world<|endoftext|>", NULL};
    cr_assert_eq(cmd_tokenizer(6, argv), 0);
    fflush(stdout);
    cr_assert_stdout_eq_str("15496 995 50256\n");
}

Test(tokenizer, cli_rejects_bad_usage, .init = cr_redirect_stderr) {
    char *no_corpus[] = {"tokenizer", "train", "--vocab-size", "300", "-o", "/tmp/x.json", NULL};
    cr_assert_eq(cmd_tokenizer(6, no_corpus), 2);
    char *bad_size[] = {"tokenizer", "train", "--vocab-size", "lots", "c.txt", "-o", "x", NULL};
    cr_assert_eq(cmd_tokenizer(7, bad_size), 2);
    char *both[] = {"tokenizer", "encode", "-t", "bytes", "--text", "a", "--input", "f", NULL};
    cr_assert_eq(cmd_tokenizer(8, both), 2);
    char *unknown[] = {"tokenizer", "frobnicate", NULL};
    cr_assert_eq(cmd_tokenizer(2, unknown), 2);
    char *missing[] = {"tokenizer", "encode", "-t", "/nonexistent/tok.json", "--text", "a", NULL};
    cr_assert_eq(cmd_tokenizer(6, missing), 1);
}

/* `retort data build` of a large plain-text file with the GPT-2 BPE encodes
 * in bounded chunks; the stored token stream (before the final EOS) must equal
 * tiktoken's encoding of the whole file at once. sotu.txt (10.7 MB) spans
 * about ten of the builder's 1 MB chunks. */
Test(tokenizer, chunked_text_build_matches_whole_file_encoding) {
    char path[512], gpt2_dir[512], dir[256], out[600];
    if (!shared_data_path(path, sizeof path, "text/sotu.txt")) cr_skip_test();
    if (!shared_data_path(gpt2_dir, sizeof gpt2_dir, "gpt2")) cr_skip_test();
    json_error_t e;
    json_t *fix = json_load_file("tests/fixtures/tiktoken_text.json", 0, &e);
    cr_assert_not_null(fix, "%s", e.text);
    json_t *want = json_object_get(json_object_get(fix, "files"), "text/sotu.txt");
    cr_assert_not_null(want);
    make_temp_dir(dir, sizeof dir, "chunkbuild");
    snprintf(out, sizeof out, "%s/sotu.h5", dir);
    BuildOptions o = {0};
    o.input = path;
    o.output = out;
    o.schema = SCHEMA_LM;
    o.tokenizer = gpt2_dir;
    o.text_field = "text";
    o.quiet = 1;
    cr_assert_eq(data_build(&o), 0, "%s", err_msg());
    Dataset ds;
    cr_assert_eq(dataset_open(&ds, out), 0, "%s", err_msg());
    int64_t n = ds.n_tokens - 1; /* the document's closing EOS */
    cr_expect_eq(ds.tokens[n], 50256u);
    cr_assert_eq(n, json_integer_value(json_object_get(want, "tokens")), "%lld tokens",
                 (long long)n);
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)ids_hash(ds.tokens, n));
    cr_expect_str_eq(hex, json_string_value(json_object_get(want, "fnv1a64")),
                     "the chunked build differs from tiktoken's whole-file encoding");
    dataset_close(&ds);
    json_decref(fix);
    rm_rf(dir);
}
