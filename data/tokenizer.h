/* data/tokenizer.h — the tokenizer interface. The byte-level tokenizer (256
 * byte ids + EOS = 256) is built in; the GPT-2 BPE plugs in behind the same
 * struct. */
#ifndef RETORT_TOKENIZER_H
#define RETORT_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct Tokenizer {
    char name[128];       /* its identity (below); datasets' `tokenizer` attribute */
    int vocab_size;
    int eos_id;
    int pad_id;
    /* Appends the ids of text[0:len] to *ids (grown with realloc); returns count. */
    int64_t (*encode)(const struct Tokenizer *tok, const char *text, size_t len, uint32_t **ids,
                      int64_t *cap, int64_t n);
    /* Writes the bytes of one id to out (at most 256); returns the byte count.
     * Special tokens decode to their text ("<|endoftext|>"). */
    int (*decode_token)(const struct Tokenizer *tok, uint32_t id, char *out);
    void (*destroy)(struct Tokenizer *tok);
    void *impl;
} Tokenizer;

Tokenizer *tokenizer_bytes(void);
/* "bytes", or a path to a byte-level BPE (GPT-2 style): a tokenizer.json, or a
 * directory with tokenizer.json, encoder.json + vocab.bpe, or vocab.json +
 * merges.txt (see data/bpe.h). NULL with error set. */
Tokenizer *tokenizer_load(const char *spec);
void tokenizer_free(Tokenizer *tok);
/* Decodes ids into a newly allocated NUL-terminated string. */
char *tokenizer_decode(const Tokenizer *tok, const uint32_t *ids, int64_t n);

/* ---- identity ----
 * A tokenizer's name says what its ids mean, and datasets and checkpoints
 * record it, so that data, models and commands can be matched:
 *   "bytes"             the built-in byte tokenizer (fixed: vocab 257, EOS 256)
 *   "bpe:LABEL:HASH"    a byte-level BPE; HASH is 16 hex digits of FNV-1a over
 *                       its id -> bytes table, its merges in rank order, its
 *                       special ids and options (data/bpe_load.c), the same
 *                       whichever files spell it; LABEL is the file or
 *                       directory it was loaded from and is not part of it.
 * Any other name (tests' "test", a file written by another tool) is unknown:
 * it cannot be checked. */
typedef enum { TOKENIZER_UNKNOWN = 0, TOKENIZER_BYTES, TOKENIZER_BPE } TokenizerKind;
TokenizerKind tokenizer_kind(const char *name);
/* 1 when a and b are known and name the same tokenizer, 0 when both are known
 * and differ, -1 when either is unknown (or NULL). */
int tokenizer_same(const char *a, const char *b);

/* The files of a tokenizer directory that tokenizer_load reads or that
 * Hugging Face's AutoTokenizer reads beside them, NULL-terminated; a
 * checkpoint keeps copies of those its starting model had. */
extern const char *const TOKENIZER_FILES[];
/* 1 when dir holds a tokenizer tokenizer_load can read (tokenizer.json,
 * encoder.json + vocab.bpe, or vocab.json + merges.txt). */
int tokenizer_files_in(const char *dir);

#endif
