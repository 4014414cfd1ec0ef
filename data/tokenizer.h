/* data/tokenizer.h — the tokenizer interface. The byte-level tokenizer (256
 * byte ids + EOS = 256) is built in; BPE tokenizers (GPT-2's files, and any
 * Hugging Face tokenizer.json with the pipelines of data/tokjson.h: Llama 2/3,
 * Mistral, Qwen2, SmolLM, ...) plug in behind the same struct.
 *
 * Encoding follows Hugging Face tokenizers' Tokenizer.encode: tok->encode is
 * encode(text, add_special_tokens=False) (added tokens in the text are still
 * matched: "<|endoftext|>" written in a text is the special token), and
 * tokenizer_encode(..., add_special = 1, ...) adds what the post-processor
 * adds around one sequence (Llama's BOS), as add_special_tokens=True does.
 * Decoding: tokenizer_decode_text is tokenizers' decode(ids,
 * skip_special_tokens) with the tokenizer.json's decoders (Metaspace's
 * leading space, ByteFallback's <0x0A> tokens, ByteLevel's bytes with
 * U+FFFD for what is not UTF-8); decode_token is one id's bytes for
 * streaming (see below). */
#ifndef RETORT_TOKENIZER_H
#define RETORT_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#define TOKENIZER_MAX_ADDED 8 /* ids a post-processor may add before or after a text */

typedef struct Tokenizer {
    char name[128];       /* its identity (below); datasets' `tokenizer` attribute */
    int vocab_size;
    int eos_id;
    int pad_id;
    /* tokenizer_config.json's bos_token when it names a token, else the first id
     * the post-processor puts before a text; -1 when neither (GPT-2, Qwen2). */
    int bos_id;
    /* What add_special_tokens=True puts around one text: the post-processor's
     * TemplateProcessing "single" ids before and after $A (none for GPT-2). */
    uint32_t special_prefix[TOKENIZER_MAX_ADDED], special_suffix[TOKENIZER_MAX_ADDED];
    int n_special_prefix, n_special_suffix;
    /* 1 when encoding a text in pieces cut after a lone "\n" between two
     * non-space characters gives the ids of the whole (GPT-2's regex; the
     * builder streams long plain text only then). */
    int newline_cuts_exact;
    /* Appends the ids of text[0:len] to *ids (grown with realloc); returns count.
     * No special tokens are added around the text (add_special_tokens=False). */
    int64_t (*encode)(const struct Tokenizer *tok, const char *text, size_t len, uint32_t **ids,
                      int64_t *cap, int64_t n);
    /* Writes the bytes of one id to out (at most 256); returns the byte count.
     * Special tokens decode to their text ("<|endoftext|>"). For streaming: the
     * bytes the id stands for in the middle of a text (a byte-level token's
     * bytes; a byte-fallback token "<0x0A>" its byte; a SentencePiece piece
     * "▁the" with the decoders' replacement applied, " the"), so the
     * concatenation equals tokenizer_decode_text except for what a decoder does
     * at the start of a text (Metaspace and Strip drop the first space) and its
     * U+FFFD for bytes that are not UTF-8. 0 for an id outside the vocabulary. */
    int (*decode_token)(const struct Tokenizer *tok, uint32_t id, char *out);
    void (*destroy)(struct Tokenizer *tok);
    /* Optional (NULL: decode_token concatenated, nothing is special): the whole
     * decode, and whether an id is an added token marked special. */
    char *(*decode)(const struct Tokenizer *tok, const uint32_t *ids, int64_t n,
                    int skip_special, size_t *len);
    int (*is_special)(const struct Tokenizer *tok, uint32_t id);
    /* Optional (NULL: tokenizer_token_id's default): the id of a token string
     * as tokenizer.json spells it, -1 when none. */
    int (*token_id)(const struct Tokenizer *tok, const char *token, size_t len);
    void *impl;
} Tokenizer;

Tokenizer *tokenizer_bytes(void);
/* "bytes", or a path to a BPE: a tokenizer.json, or a directory with
 * tokenizer.json, encoder.json + vocab.bpe, or vocab.json + merges.txt (see
 * data/bpe.h, data/tokjson.h). A tokenizer_config.json beside the files names
 * the EOS, BOS and padding tokens (eos_token, bos_token, pad_token). NULL with
 * error set. */
Tokenizer *tokenizer_load(const char *spec);
void tokenizer_free(Tokenizer *tok);

/* tok->encode, with the post-processor's special tokens around the text when
 * add_special is 1 (Hugging Face encode(text, add_special_tokens=True)). */
int64_t tokenizer_encode(const Tokenizer *tok, const char *text, size_t len, int add_special,
                         uint32_t **ids, int64_t *cap, int64_t n);
/* Decodes ids as tokenizers' decode(ids, skip_special_tokens) into a newly
 * allocated NUL-terminated string; *len (when not NULL) gets its length (the
 * bytes tokenizer's output may hold NUL bytes). Ids outside the vocabulary
 * are skipped, as tokenizers skips them. */
char *tokenizer_decode_text(const Tokenizer *tok, const uint32_t *ids, int64_t n,
                            int skip_special, size_t *len);
/* tokenizer_decode_text(tok, ids, n, 0, NULL). */
char *tokenizer_decode(const Tokenizer *tok, const uint32_t *ids, int64_t n);
/* The id of a token string as the vocabulary or added_tokens spell it
 * ("<|eot_id|>", "</s>"; for the bytes tokenizer "<|endoftext|>" or one
 * byte), -1 when it names no token: tokenizers' token_to_id. */
int tokenizer_token_id(const Tokenizer *tok, const char *token);
/* 1 when id is an added token marked special (skip_special_tokens drops it). */
int tokenizer_is_special(const Tokenizer *tok, uint32_t id);

/* ---- identity ----
 * A tokenizer's name says what its ids mean, and datasets and checkpoints
 * record it, so that data, models and commands can be matched:
 *   "bytes"             the built-in byte tokenizer (fixed: vocab 257, EOS 256)
 *   "bpe:LABEL:HASH"    a BPE; HASH is 16 hex digits of FNV-1a over its id ->
 *                       bytes table, its merges in rank order, its special
 *                       ids and options (data/bpe_load.c), and for a
 *                       tokenizer.json other than GPT-2's shape its whole
 *                       pipeline (data/tokjson.c), the same whichever files
 *                       spell it; LABEL is the file or directory it was
 *                       loaded from and is not part of it. GPT-2's files keep
 *                       the hash they always had.
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
