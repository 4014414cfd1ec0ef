/* data/bpe.h — byte-level BPE, exactly as GPT-2 (tiktoken's r50k_base, Hugging
 * Face GPT2Tokenizer / tokenizers ByteLevel + BPE) encodes, and its training.
 * The same model also runs char-level (SentencePiece-style vocabularies with
 * byte fallback) inside the tokenizer.json pipelines of data/tokjson.h; what
 * follows is the GPT-2 path, which GPT-2-shaped tokenizer.json files take.
 *
 * Encoding a text:
 *   1. added/special tokens ("<|endoftext|>", ...) are cut out first, longest
 *      match at the leftmost position;
 *   2. each span between them is pre-tokenized with the GPT-2 regex
 *        's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *      through PCRE2 (JIT, UTF + UCP), with the classes made to match tiktoken's
 *      and tokenizers' regex engines exactly: \s spelled out as Unicode
 *      White_Space, and \p{L} / \p{N} extended by the Unicode 15-16 letters and
 *      digits that PCRE2 10.42 (Unicode 14) does not know (see bpe.c);
 *   3. each pre-token's bytes become the byte tokens, and pairs are merged,
 *      lowest merge rank first, leftmost first among equals, until none applies.
 *      Results are cached per pre-token.
 *
 * Invalid UTF-8: the regex runs with PCRE2_MATCH_INVALID_UTF, so a malformed
 * sequence is never part of a match; each maximal run of bytes that no match
 * covers becomes a pre-token of its own and goes through BPE like any other.
 * Every byte has a token, so any byte string encodes, and decodes back exactly.
 *
 * A Tokenizer from bpe_load() keeps scratch buffers and a cache: encode with
 * one Tokenizer from one thread at a time.
 */
#ifndef RETORT_BPE_H
#define RETORT_BPE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "data/tokenizer.h"

/* The longest token, in bytes, that retort accepts (decode_token's buffer). */
#define BPE_MAX_TOKEN_BYTES 256

/* Loads a byte-level BPE from path, which is one of
 *   - a tokenizer.json file (model BPE, ByteLevel pre-tokenizer), or a directory
 *     holding one;
 *   - a directory holding encoder.json + vocab.bpe (OpenAI's GPT-2 release) or
 *     vocab.json + merges.txt (Hugging Face's slow-tokenizer files); there
 *     "<|endoftext|>", when in the vocabulary, is the special token.
 * The vocabulary must hold "<|endoftext|>" (it becomes eos_id and pad_id).
 * NULL with the error set (naming the file and what is wrong) on failure. */
Tokenizer *bpe_load(const char *path);

/* Trains a byte-level BPE on the text file corpus_path the way Hugging Face's
 * BpeTrainer does with a ByteLevel pre-tokenizer: words from the GPT-2 regex
 * (with "<|endoftext|>" cut out first), counted; the initial alphabet is the 256
 * byte tokens; each step merges the most frequent pair (ties: the pair of
 * smaller ids first), until vocab_size tokens exist counting "<|endoftext|>",
 * which takes the last id. Merges longer than BPE_MAX_TOKEN_BYTES are skipped.
 * Writes a Hugging Face tokenizer.json to out_json (atomically). Progress goes
 * to log when not NULL. 0, or -1 with the error set. */
int bpe_train(const char *corpus_path, int vocab_size, const char *out_json, FILE *log);

/* ---- shared by bpe.c and bpe_train.c ---- */

/* GPT-2's bytes_to_unicode(): the code point (< 324) that stands for byte b in
 * vocabulary strings, and its UTF-8 spelling (2 bytes at most) in out;
 * returns the spelling's length. */
int bpe_byte_to_utf8(unsigned char b, char out[2]);
/* The byte a vocabulary code point stands for, or -1 when it stands for none. */
int bpe_codepoint_to_byte(uint32_t cp);

/* The compiled GPT-2 pre-tokenizer regex. */
typedef struct BpeRegex BpeRegex;
BpeRegex *bpe_regex_new(void); /* NULL with the error set */
void bpe_regex_free(BpeRegex *re);
/* The next pre-token of text[0:len] at or after pos: *start, *end. Bytes in
 * [pos, *start) (invalid UTF-8) are not covered by any match; the caller makes
 * them a pre-token of their own. 1 when found, 0 when the rest holds no match. */
int bpe_regex_next(BpeRegex *re, const char *text, size_t len, size_t pos, size_t *start,
                   size_t *end);

/* 64-bit FNV-1a, continued from h (start with BPE_FNV_OFFSET). */
#define BPE_FNV_OFFSET 0xcbf29ce484222325ULL
uint64_t bpe_fnv1a(uint64_t h, const void *data, size_t len);

/* A fast hash of a short byte string, 8 bytes per step (for BpeMap keys). */
uint64_t bpe_hash_bytes(const void *data, size_t len);

/* An open-addressing map from byte strings to two uint32 values, with the keys
 * copied into an arena it owns. Callers pass each key's bpe_hash_bytes(). */
typedef struct {
    uint64_t hash;
    uint32_t key_off, key_len;
    uint32_t v0, v1;
} BpeMapSlot;
typedef struct {
    BpeMapSlot *slots; /* key_len == UINT32_MAX marks an empty slot */
    size_t cap, count; /* cap is a power of two */
    char *keys;
    size_t keys_len, keys_cap;
} BpeMap;
void bpe_map_init(BpeMap *m, size_t expected);
void bpe_map_free(BpeMap *m);
void bpe_map_clear(BpeMap *m);
/* The slot of key, or NULL. */
BpeMapSlot *bpe_map_get(const BpeMap *m, const char *key, size_t len, uint64_t hash);
/* The slot of key, inserted with v0 = v1 = 0 when absent (*added set to 1). */
BpeMapSlot *bpe_map_put(BpeMap *m, const char *key, size_t len, uint64_t hash, int *added);

#endif
