/* data/bpe_impl.h — the loaded BPE model, shared by bpe.c (encoding) and
 * bpe_load.c (building it from vocabulary files). Not for other callers:
 * they use the Tokenizer interface. */
#ifndef RETORT_BPE_IMPL_H
#define RETORT_BPE_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "data/bpe.h"

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

typedef struct {
    int n_vocab;        /* max id + 1, special tokens included */
    uint32_t *tok_off;  /* (n_vocab + 1): id i decodes to tok_bytes[tok_off[i] : tok_off[i+1]] */
    char *tok_bytes;
    uint32_t byte_id[256]; /* the token of each single byte */
    MergeSlot *merges;  /* 1 << merge_bits slots */
    int merge_bits;
    int n_merges;
    Special *specials;  /* longest first */
    int n_specials;
    int eos_id;
    int add_prefix_space; /* tokenizer.json ByteLevel option: ' ' before each span */
    int ignore_merges;    /* tokenizer.json BPE option: a piece in the vocabulary is one token */
    BpeMap vocab_map;     /* bytes -> id, built only for ignore_merges */
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
/* merges must have room (1 << merge_bits slots, at most 3/4 full). */
void bpe_add_merge(Bpe *b, uint32_t left, uint32_t right, uint32_t rank, uint32_t merged);
/* Wraps a complete model in a Tokenizer that owns it. */
Tokenizer *bpe_tokenizer(Bpe *b, const char *name);
void bpe_free(Bpe *b);

#endif
