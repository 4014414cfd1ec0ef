/* data/tokenizer.h — the tokenizer interface. The byte-level tokenizer (256
 * byte ids + EOS = 256) is built in; the GPT-2 BPE plugs in behind the same
 * struct. */
#ifndef RETORT_TOKENIZER_H
#define RETORT_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct Tokenizer {
    char name[128];       /* stored in datasets' `tokenizer` attribute */
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

#endif
