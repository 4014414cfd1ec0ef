/* data/tokjson.h — a Hugging Face tokenizer.json pipeline around the BPE model
 * of bpe_impl.h, as tokenizers 0.23 runs it (Tokenizer.encode / decode):
 *
 *   1. added tokens with "normalized": false are cut out of the raw text
 *      (leftmost-longest; single_word, lstrip, rstrip as AddedVocabulary);
 *   2. each other span is normalized — NFC, NFD, NFKC, NFKD (utf8proc),
 *      Lowercase, Prepend, Replace, Strip, Sequence — and the added tokens
 *      with "normalized": true are cut out of the result (matched in their
 *      normalized spelling);
 *   3. each remaining span is pre-tokenized — Split (a regex or a string, each
 *      behavior, invert), ByteLevel (add_prefix_space, use_regex; last),
 *      Metaspace (replacement, prepend_scheme, split), Digits, Punctuation,
 *      Whitespace, WhitespaceSplit, Sequence — and each piece goes through
 *      the BPE model (bpe_encode_piece);
 *   4. encode with special tokens adds the post-processor's ids around the
 *      text: TemplateProcessing's "single" (Tokenizer.special_prefix/suffix),
 *      ByteLevel and Sequence of those; "pair" is not used (one text).
 *   Decoding maps ids to token strings (added tokens by content, special ones
 *   dropped on request) and runs the decoders — ByteLevel, Metaspace,
 *   ByteFallback, Fuse, Strip, Replace, Sequence — then joins (with " " when
 *   the file has no decoder, as tokenizers does).
 *
 * Anything else (WordPiece, Unigram, BertPreTokenizer, Precompiled,
 * RobertaProcessing, truncation, padding, BPE dropout, ...) is refused at load
 * with its name and JSON path; nothing is approximated.
 *
 * Text that is not UTF-8: tokenizers takes Python str, so bytes have no
 * meaning there. retort replaces each maximal ill-formed subsequence with
 * U+FFFD first (what Python's bytes.decode("utf-8", "replace") gives), then
 * encodes; the ids equal tokenizers' on that decoded string. (GPT-2-shaped
 * files keep bpe.h's rule instead: bad bytes become byte tokens.)
 *
 * Regexes are Oniguruma's (Ruby syntax) in tokenizer.json; they run on PCRE2
 * after a translation that keeps their meaning (hf_regex_translate): \s, \p{L},
 * \p{N}, \w, \d, \h spelled out as Oniguruma/tokenizers classify (Unicode 16
 * letters and numbers PCRE2 10.42 does not know added), ^ and $ per line,
 * \uHHHH; constructs that would differ (nested classes, && in a class, (?m),
 * a negated class escape inside a class) are refused with their offset.
 */
#ifndef RETORT_TOKJSON_H
#define RETORT_TOKJSON_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "data/tokenizer.h"

typedef struct TokPipeline TokPipeline;
struct Bpe;

/* Reads the pipeline of a tokenizer.json (root) from path: its normalizer,
 * pre_tokenizer, post_processor and decoder, refusing what is not
 * implemented. *byte_level gets 1 when the pre-tokenizer ends in ByteLevel
 * (the model then works on bytes). NULL with the error set. */
TokPipeline *tokjson_parse(const char *path, json_t *root, int *byte_level);
void tokjson_free(TokPipeline *p);

/* The added tokens, after the vocabulary ids are known: ids[i] is the id of
 * added_tokens[i] (checked by the caller). Normalized tokens are normalized
 * here. 0, or -1 with the error set. */
int tokjson_set_added(TokPipeline *p, const char *path, json_t *added_tokens,
                      const int64_t *ids);
/* The token string of every id (tokenizers' id_to_token): strings[i] of
 * lengths lens[i] (NULL for a hole), copied; added tokens override. */
void tokjson_set_strings(TokPipeline *p, int n_vocab, const char *const *strings,
                         const size_t *lens);
/* The post-processor's ids before and after one text. 0, or -1 with the error
 * set (a token the post-processor names is not in the vocabulary). */
int tokjson_special_ids(const TokPipeline *p, const char *path, uint32_t *prefix, int *n_prefix,
                        uint32_t *suffix, int *n_suffix);
/* 1 when id is an added token marked special. */
int tokjson_is_special(const TokPipeline *p, uint32_t id);
/* The id of an added token's content, -1 when none. */
int64_t tokjson_added_id(const TokPipeline *p, const char *text, size_t len);
/* tokenizers' token_to_id: an added token's content, else a model.vocab string. */
int64_t tokjson_token_id(const TokPipeline *p, const char *text, size_t len);
/* The pipeline's own parts of the tokenizer identity, hashed on h. */
uint64_t tokjson_hash(const TokPipeline *p, uint64_t h);

/* The Tokenizer functions of a BPE with a pipeline (tok->impl is the Bpe). */
int64_t tokjson_encode(const Tokenizer *tok, const char *text, size_t len, uint32_t **ids,
                       int64_t *cap, int64_t n);
char *tokjson_decode(const Tokenizer *tok, const uint32_t *ids, int64_t n, int skip_special,
                     size_t *len);
int tokjson_decode_token(const Tokenizer *tok, uint32_t id, char *out);

/* ---- shared by the pipeline's files ---- */

/* Copies s[0:n] with each maximal ill-formed UTF-8 subsequence replaced by
 * U+FFFD (Rust's from_utf8_lossy, Python's errors="replace"); NULL when s is
 * already well-formed (nothing to copy). *out_len gets the copy's length. */
char *tokjson_lossy_utf8(const char *s, size_t n, size_t *out_len);

/* A compiled tokenizer.json pattern ({"Regex": ...} or {"String": ...}),
 * searched as tokenizers' find_matches does (onig's find_iter: an empty match
 * right after the previous match is skipped by one character). */
typedef struct HfPattern HfPattern;
/* Compiles pattern (the JSON value) found at where (a JSON path for errors). */
HfPattern *hf_pattern_new(json_t *pattern, const char *path, const char *where);
/* A pattern from an Oniguruma regex given as text. */
HfPattern *hf_pattern_regex(const char *regex, const char *path, const char *where);
void hf_pattern_free(HfPattern *p);
/* Calls event(ctx, start, end, is_match) for the matches of p in s[0:len] and
 * the gaps between them, in order, covering s (tokenizers' find_matches). */
typedef void (*HfEvent)(void *ctx, size_t start, size_t end, int is_match);
void hf_pattern_events(HfPattern *p, const char *s, size_t len, HfEvent event, void *ctx);
/* The PCRE2 spelling of an Oniguruma regex, malloc'd; NULL with the error set
 * (naming path, where and the offset) for a construct it cannot keep. */
char *hf_regex_translate(const char *regex, const char *path, const char *where);

/* Character classes as tokenizers' Rust code sees them (Unicode 16):
 * char::is_whitespace, char::is_numeric, Punctuation's is_punc, and the
 * regex crate's \w (added tokens' single_word). */
int hf_is_whitespace(uint32_t cp);
int hf_is_numeric(uint32_t cp);
int hf_is_punctuation(uint32_t cp);
int hf_is_word(uint32_t cp);

#endif
