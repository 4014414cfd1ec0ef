/* data/bpe_impl.h — the loaded BPE model, shared by bpe.c (encoding) and
 * bpe_load.c (building it from vocabulary files). Not for other callers:
 * they use the Tokenizer interface. */
#ifndef RETORT_BPE_IMPL_H
#define RETORT_BPE_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "data/bpe.h"

/* ---- the regex classes of tiktoken and tokenizers, in PCRE2 (bpe.c, tokjson_regex.c) */

/* Unicode White_Space, which is what \s means to tiktoken's and tokenizers'
 * regex engines. PCRE2 10.42's \s under UCP also matches U+180E MONGOLIAN
 * VOWEL SEPARATOR (not White_Space since Unicode 6.3). */
#define WS                                                                                      \
    "\\t-\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}"    \
    "\\x{3000}"

/* tiktoken 0.14 and tokenizers 0.23 classify by Unicode 16.0; PCRE2 10.42
 * knows Unicode 14.0. These are the code points that are letters (L) and
 * numbers (N) to them and unassigned to PCRE2 10.42 (there are none the other
 * way). Found by probing both libraries over every code point; the test
 * "tokenizer/unicode_classes_match_tiktoken" checks them against
 * tests/fixtures/unicode_classes.json. A newer PCRE2 knows them itself, and
 * listing them again changes nothing. */
#define L_EXTRA                                                                                 \
    "\\x{1C89}-\\x{1C8A}\\x{A7CB}-\\x{A7CD}\\x{A7DA}-\\x{A7DC}\\x{105C0}-\\x{105F3}"            \
    "\\x{10D4A}-\\x{10D65}\\x{10D6F}-\\x{10D85}\\x{10EC2}-\\x{10EC4}"                           \
    "\\x{1123F}-\\x{11240}\\x{11380}-\\x{11389}\\x{1138B}\\x{1138E}\\x{11390}-\\x{113B5}"       \
    "\\x{113B7}\\x{113D1}\\x{113D3}\\x{11BC0}-\\x{11BE0}\\x{11F02}\\x{11F04}-\\x{11F10}"        \
    "\\x{11F12}-\\x{11F33}\\x{1342F}\\x{13441}-\\x{13446}\\x{13460}-\\x{143FA}"                 \
    "\\x{16100}-\\x{1611D}\\x{16D40}-\\x{16D6C}\\x{18CFF}\\x{1B132}\\x{1B155}"                  \
    "\\x{1DF25}-\\x{1DF2A}\\x{1E030}-\\x{1E06D}\\x{1E4D0}-\\x{1E4EB}\\x{1E5D0}-\\x{1E5ED}"      \
    "\\x{1E5F0}\\x{2B739}\\x{2EBF0}-\\x{2EE5D}\\x{31350}-\\x{323AF}"
#define N_EXTRA                                                                                 \
    "\\x{10D40}-\\x{10D49}\\x{116D0}-\\x{116E3}\\x{11BF0}-\\x{11BF9}\\x{11F50}-\\x{11F59}"      \
    "\\x{16130}-\\x{16139}\\x{16D70}-\\x{16D79}\\x{1CCF0}-\\x{1CCF9}\\x{1D2C0}-\\x{1D2D3}"      \
    "\\x{1E4F0}-\\x{1E4F9}\\x{1E5F1}-\\x{1E5FA}"
#define LETTER "[\\p{L}" L_EXTRA "]"
#define NUMBER "[\\p{N}" N_EXTRA "]"
#define OTHER "[^" WS "\\p{L}\\p{N}" L_EXTRA N_EXTRA "]"


#define MERGE_EMPTY UINT64_MAX
#define DEAD_SYMBOL UINT32_MAX

typedef struct {
    uint64_t key; /* left << 32 | right, MERGE_EMPTY when free */
    uint32_t rank, id;
} MergeSlot;

/* A pair that may merge, in the heap of one pre-token's merging. */
typedef struct {
    uint32_t rank, pos;   /* heap order: lower rank, then leftmost */
    uint32_t left, right; /* the ids the pair was pushed with */
    uint32_t merged;
} BpeCandidate;

typedef struct {
    char *text; /* the raw bytes matched in the input and produced by decoding */
    size_t len;
    uint32_t id;
} Special;

struct TokPipeline; /* data/tokjson.h */

typedef struct {
    int n_vocab;        /* max id + 1, special tokens included */
    uint32_t *tok_off;  /* (n_vocab + 1): id i decodes to tok_bytes[tok_off[i] : tok_off[i+1]] */
    char *tok_bytes;
    /* 1: vocabulary strings spell bytes in GPT-2's alphabet and a piece's
     * symbols start as its bytes (ByteLevel); 0: they are literal text and a
     * piece's symbols start as its characters (SentencePiece-style BPE). */
    int byte_level;
    /* char-level model options (tokenizer.json model BPE) */
    int byte_fallback, fuse_unk;
    int64_t unk_id;            /* -1: no unk_token */
    uint32_t ascii_id[128];    /* the token of each ASCII character, DEAD_SYMBOL when none */
    int64_t fallback_id[256];  /* "<0xAB>" tokens, -1 when absent */
    int has_fallback;          /* all 256 present (byte_fallback works only then) */
    /* Pairs of characters adjacent in some model token (char-level): a long
     * piece is cut between two known characters that are not, since no
     * merge can make a symbol spanning them (every symbol's text is a token's). */
    uint64_t ascii_pairs[128][2]; /* bit b of [a]: "ab" occurs */
    BpeMap char_pairs;            /* other pairs, keyed by the two code points */
    int in_cut;                   /* encoding the chunks of a cut piece */
    struct TokPipeline *pipe;  /* the tokenizer.json pipeline; NULL for GPT-2's shape */
    uint32_t byte_id[256]; /* the token of each single byte */
    MergeSlot *merges;  /* 1 << merge_bits slots */
    int merge_bits;
    int n_merges;
    Special *specials;  /* longest first */
    int n_specials;
    int eos_id;
    int add_prefix_space; /* tokenizer.json ByteLevel option: ' ' before each span */
    int ignore_merges;    /* tokenizer.json BPE option: a piece in the vocabulary is one token */
    /* model vocabulary -> id (tokens as bytes when byte_level, as text
     * otherwise), built for ignore_merges and for char-level models */
    BpeMap vocab_map;
    BpeRegex *re;

    /* mutable state of encode: the cache and scratch buffers */
    size_t *special_next; /* (n_specials) */
    BpeMap cache;
    uint32_t *cache_ids;
    size_t cache_ids_len, cache_ids_cap;
    uint32_t *sym_id;
    int64_t *sym_next, *sym_prev;
    size_t sym_cap;
    BpeCandidate *heap;
    size_t heap_cap;
    char *prefix_buf;
    size_t prefix_cap;
} Bpe;

const MergeSlot *bpe_find_merge(const Bpe *b, uint32_t left, uint32_t right);
/* Appends the ids of one pre-token to *ids: the vocabulary entry itself with
 * ignore_merges, else its bytes (byte_level) or characters (with
 * byte_fallback, unk_token and fuse_unk as tokenizers' BPE::merge_word) merged
 * by rank; cached per pre-token. piece is valid UTF-8 when !byte_level. */
int64_t bpe_encode_piece(Bpe *b, const char *piece, size_t len, uint32_t **ids, int64_t *cap,
                         int64_t n);
void bpe_reserve_ids(uint32_t **ids, int64_t *cap, int64_t want);
/* merges must have room (1 << merge_bits slots, at most 3/4 full). */
void bpe_add_merge(Bpe *b, uint32_t left, uint32_t right, uint32_t rank, uint32_t merged);
/* Wraps a complete model in a Tokenizer that owns it. */
Tokenizer *bpe_tokenizer(Bpe *b, const char *name);
void bpe_free(Bpe *b);

#endif
