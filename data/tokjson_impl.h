/* data/tokjson_impl.h — the parsed tokenizer.json pipeline, shared by
 * tokjson.c (reading it) and tokjson_encode.c / tokjson_decode.c (running
 * it). Not for other callers: they use the Tokenizer interface. */
#ifndef RETORT_TOKJSON_IMPL_H
#define RETORT_TOKJSON_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "data/bpe.h"
#include "data/tokjson.h"

typedef enum { NORM_NFC, NORM_NFD, NORM_NFKC, NORM_NFKD, NORM_LOWERCASE, NORM_PREPEND,
               NORM_REPLACE, NORM_STRIP } NormKind;
typedef struct {
    NormKind kind;
    char *text; /* Prepend's string, Replace's content */
    size_t len;
    HfPattern *pattern; /* Replace */
    int left, right;    /* Strip */
} Norm;

/* tokenizers' SplitDelimiterBehavior */
typedef enum { SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT,
               SPLIT_CONTIGUOUS } SplitBehavior;
typedef enum { PRE_SPLIT, PRE_BYTELEVEL, PRE_METASPACE, PRE_DIGITS, PRE_PUNCTUATION,
               PRE_WHITESPACE, PRE_WHITESPACE_SPLIT } PreKind;
typedef enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER } PrependScheme;
typedef struct {
    PreKind kind;
    HfPattern *pattern;  /* Split, Whitespace */
    SplitBehavior behavior;
    int invert;
    int add_prefix_space, use_regex; /* ByteLevel */
    char repl[4];        /* Metaspace's replacement, UTF-8 */
    size_t repl_len;
    PrependScheme prepend;
    int split;           /* Metaspace */
    int individual;      /* Digits */
} PreTok;

typedef enum { DEC_BYTELEVEL, DEC_METASPACE, DEC_BYTEFALLBACK, DEC_FUSE, DEC_STRIP,
               DEC_REPLACE } DecKind;
typedef struct {
    DecKind kind;
    HfPattern *pattern; /* Replace */
    char *content;      /* Replace */
    size_t content_len;
    char repl[4];       /* Metaspace replacement / Strip content, UTF-8 */
    size_t repl_len;
    int first_dropped;  /* Metaspace: prepend_scheme is not never */
    int start, stop;    /* Strip */
} Dec;

typedef struct {
    char *text; /* what is matched: the content, normalized when normalized */
    size_t len;
    char *content; /* as added_tokens spells it (token_to_id) */
    size_t content_len;
    uint32_t id;
    int special, single_word, lstrip, rstrip, normalized;
} Added;

/* One group of added tokens, matched leftmost-longest: by first byte, the
 * tokens starting with it, longest first. */
typedef struct {
    Added **by_first[256];
    int n_first[256];
    int n;
} AddedSet;

struct TokPipeline {
    Norm *norms;
    int n_norms;
    PreTok *pres;
    int n_pres;
    int has_decoder;
    Dec *decs;
    int n_decs;
    Added *added;
    int n_added;
    AddedSet raw, normalized; /* "normalized": false / true */
    /* the post-processor: TemplateProcessing's single, by token name */
    char *prefix_names[TOKENIZER_MAX_ADDED], *suffix_names[TOKENIZER_MAX_ADDED];
    uint32_t prefix_ids[TOKENIZER_MAX_ADDED], suffix_ids[TOKENIZER_MAX_ADDED];
    int n_prefix, n_suffix;
    char *canonical; /* the pipeline sections as sorted compact JSON, for the identity */
    /* id -> token string (tokenizers' id_to_token) */
    int n_vocab;
    uint32_t *str_off; /* (n_vocab + 1) */
    char *str_bytes;
    unsigned char *special; /* (n_vocab) added tokens marked special */
    /* (n_vocab) what decode(skip_special_tokens=True) drops: tokenizers asks
     * whether the token's string is a special token's content, so a special
     * token with "normalized": true whose normalizer changes it ("<s>" ->
     * "▁<s>" in Llama 2 files that set it) is kept, and so it is here */
    unsigned char *skip;
    BpeMap vocab_strings; /* model.vocab string -> id */
    /* encode scratch: one buffer per pipeline stage */
    char *norm_buf[2];
    size_t norm_cap[2];
    char **pre_buf;
    size_t *pre_cap;
};

/* normalizes s[0:len] through every normalizer; returns the result, which is
 * s itself or one of p's buffers; *out_len its length */
const char *tokjson_normalize(TokPipeline *p, const char *s, size_t len, size_t *out_len);

#endif
