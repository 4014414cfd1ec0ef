/* data/bpe_load.c — builds the BPE model of bpe_impl.h from the files GPT-2
 * tokenizers ship as: a Hugging Face tokenizer.json, or a vocabulary JSON
 * (encoder.json / vocab.json) with a merges list (vocab.bpe / merges.txt).
 *
 * Whatever the source, loading reduces to the same three inputs — the
 * vocabulary object (token string -> id), the merges as string pairs in rank
 * order, and the added tokens — and one builder turns those into ids. Token
 * strings are GPT-2's printable spelling of bytes (bytes_to_unicode); a string
 * with a character outside that alphabet (an added token such as "<pad>" is
 * fine, "日本" is not) stands for its own UTF-8 bytes.
 *
 * Anything in a tokenizer.json that would change the ids and that this
 * encoder does not implement (normalizers, other pre-tokenizers, subword
 * prefixes, dropout, post-processors that add tokens, added tokens with
 * lstrip/rstrip/single_word) is refused with the field named.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/bpe_impl.h"
#include "data/tokjson.h"
#include "util/utf8.h"
#include "util/util.h"

#define EOS_TEXT "<|endoftext|>"
#define MAX_VOCAB (1 << 24)

typedef struct {
    const char *a, *b;
    size_t a_len, b_len;
    size_t where; /* line number in a merges file, index in a JSON array */
} MergeText;

typedef struct {
    const char *text;
    size_t len;
    int64_t id;
} AddedText;

typedef struct {
    const char *path;        /* the vocabulary file, for messages */
    const char *merges_path; /* the merges file (may equal path) */
    int merges_in_json;      /* messages say merges[i] rather than line i */
    json_t *vocab;           /* object: token string -> id */
    MergeText *merges;
    size_t n_merges;
    AddedText *added;
    size_t n_added;
    int add_prefix_space, ignore_merges;
    /* tokenizer.json beyond GPT-2's shape (data/tokjson.h) */
    int byte_level;          /* vocabulary strings spell bytes; 0: literal text */
    TokPipeline *pipe;       /* NULL: GPT-2's files, encoded by bpe.c alone */
    int gpt2_shape;          /* a tokenizer.json bpe.c encodes alone (its old hash) */
    json_t *added_list;      /* added_tokens, for the pipeline's flags */
    const char *unk_token;   /* model options */
    int byte_fallback, fuse_unk;
} Source;

/* ----------------------------------------------------------- the builder */

/* The bytes a vocabulary string stands for, written to out (len bytes at
 * most); returns their count. Jansson hands over well-formed UTF-8 only; a
 * sequence that is not, like a character outside the byte alphabet, makes
 * the string its own bytes. */
static size_t token_bytes(const char *key, size_t len, char *out) {
    const unsigned char *s = (const unsigned char *)key;
    if (!out) return 0;
    size_t i = 0, n = 0;
    while (i < len) {
        uint32_t cp;
        int step = utf8_decode(s + i, len - i, &cp);
        int b = step > 0 ? bpe_codepoint_to_byte(cp) : -1;
        if (b < 0) { /* not byte-level: the string is its own bytes */
            memcpy(out, key, len);
            return len;
        }
        out[n++] = (char)b;
        i += (size_t)step;
    }
    return n;
}

/* 1 when every character of key is in GPT-2's byte alphabet. */
static int byte_spelling(const char *key, size_t len) {
    const unsigned char *s = (const unsigned char *)key;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        int step = utf8_decode(s + i, len - i, &cp);
        if (step <= 0 || bpe_codepoint_to_byte(cp) < 0) return 0;
        i += (size_t)step;
    }
    return 1;
}

static int check_id(const Source *src, const char *what, const char *text, json_t *v,
                    int64_t *id) {
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        json_integer_value(v) >= MAX_VOCAB)
        return err_set("%s: %s \"%s\" has id %s; ids must be integers in [0, %d) — fix the "
                       "file",
                       src->path, what, text,
                       json_is_integer(v) ? "out of range" : "not an integer", MAX_VOCAB);
    *id = json_integer_value(v);
    return 0;
}

static int cmp_special(const void *x, const void *y) {
    const Special *a = x, *b = y;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

/* Token strings and lengths per id, added tokens over vocabulary entries. */
static int fill_tokens(const Source *src, Bpe *b) {
    size_t n = (size_t)b->n_vocab;
    int32_t *len = xmalloc(n * sizeof *len);
    const char **str = xcalloc(n, sizeof *str);
    size_t *str_len = xcalloc(n, sizeof *str_len);
    char *added = xcalloc(n, 1);
    for (size_t i = 0; i < n; i++) len[i] = -1;
    char buf[4 * BPE_MAX_TOKEN_BYTES + 8];
    int rc = 0;
    const char *key;
    size_t key_len;
    json_t *v;
    json_object_keylen_foreach(src->vocab, key, key_len, v) {
        int64_t id = json_integer_value(v);
        if (str[id]) {
            rc = err_set("%s: id %lld is given to both \"%s\" and \"%s\"; every id must name "
                         "one token — fix the vocabulary",
                         src->path, (long long)id, str[id], key);
            goto done;
        }
        size_t k = key_len <= sizeof buf && src->byte_level ? token_bytes(key, key_len, buf)
                                                              : key_len;
        str[id] = key;
        str_len[id] = key_len;
        len[id] = (int32_t)(k < INT32_MAX ? k : INT32_MAX);
    }
    for (size_t a = 0; a < src->n_added; a++) {
        int64_t id = src->added[a].id;
        str[id] = src->added[a].text;
        str_len[id] = src->added[a].len;
        len[id] = (int32_t)(src->added[a].len < INT32_MAX ? src->added[a].len : INT32_MAX);
        added[id] = 1;
    }
    b->tok_off = xmalloc((n + 1) * sizeof *b->tok_off);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (len[i] > BPE_MAX_TOKEN_BYTES) {
            rc = err_set("%s: token %zu (\"%.40s...\") is %d bytes; retort takes tokens of at "
                         "most %d bytes",
                         src->path, i, str[i], len[i], BPE_MAX_TOKEN_BYTES);
            goto done;
        }
        b->tok_off[i] = (uint32_t)total;
        total += len[i] > 0 ? (size_t)len[i] : 0;
    }
    b->tok_off[n] = (uint32_t)total;
    b->tok_bytes = xmalloc(total);
    for (size_t i = 0; i < n; i++) {
        if (len[i] <= 0) continue; /* a hole in the ids decodes to nothing */
        char *out = b->tok_bytes + b->tok_off[i];
        if (added[i] || !src->byte_level) memcpy(out, str[i], str_len[i]);
        else token_bytes(str[i], str_len[i], out);
    }
done:
    free(len);
    free(str);
    free(str_len);
    free(added);
    return rc;
}

static int64_t lookup(const Source *src, const char *s, size_t len) {
    json_t *v = json_object_getn(src->vocab, s, len);
    return v ? json_integer_value(v) : -1;
}

static int fill_merges(const Source *src, Bpe *b) {
    b->merge_bits = 6;
    while (((size_t)1 << b->merge_bits) * 3 < src->n_merges * 4 + 4) b->merge_bits++;
    size_t cap = (size_t)1 << b->merge_bits;
    b->merges = xmalloc(cap * sizeof *b->merges);
    for (size_t i = 0; i < cap; i++) b->merges[i].key = MERGE_EMPTY;
    char *joined = NULL;
    size_t joined_cap = 0;
    int rc = 0;
    for (size_t r = 0; r < src->n_merges; r++) {
        const MergeText *m = &src->merges[r];
        char where[64];
        snprintf(where, sizeof where, src->merges_in_json ? "merges[%zu]" : "line %zu", m->where);
        int64_t left = lookup(src, m->a, m->a_len), right = lookup(src, m->b, m->b_len);
        if (left < 0 || right < 0) {
            const char *bad = left < 0 ? m->a : m->b;
            int bad_len = (int)(left < 0 ? m->a_len : m->b_len);
            rc = err_set("%s, %s: merge \"%.*s %.*s\" names \"%.*s\", which is not in the "
                         "vocabulary %s — the merges and vocabulary files do not belong together",
                         src->merges_path, where, (int)m->a_len, m->a, (int)m->b_len, m->b,
                         bad_len, bad, src->path);
            break;
        }
        if (m->a_len + m->b_len > joined_cap) {
            joined_cap = 2 * (m->a_len + m->b_len);
            joined = xrealloc(joined, joined_cap);
        }
        memcpy(joined, m->a, m->a_len);
        memcpy(joined + m->a_len, m->b, m->b_len);
        int64_t merged = lookup(src, joined, m->a_len + m->b_len);
        if (merged < 0) {
            rc = err_set("%s, %s: merge \"%.*s %.*s\" makes \"%.*s%.*s\", which is not in the "
                         "vocabulary %s — the merges and vocabulary files do not belong together",
                         src->merges_path, where, (int)m->a_len, m->a, (int)m->b_len, m->b,
                         (int)m->a_len, m->a, (int)m->b_len, m->b, src->path);
            break;
        }
        bpe_add_merge(b, (uint32_t)left, (uint32_t)right, (uint32_t)r, (uint32_t)merged);
    }
    b->n_merges = (int)src->n_merges;
    free(joined);
    return rc;
}

/* The model vocabulary map, and for a char-level model its character,
 * byte-fallback and unknown tokens. Only model.vocab is the model's: added
 * tokens are not (tokenizers' BPE never sees them). */
static int model_tables(const Source *src, Bpe *b) {
    bpe_map_init(&b->vocab_map, json_object_size(src->vocab));
    char buf[4 * BPE_MAX_TOKEN_BYTES + 8];
    const char *key;
    size_t key_len;
    json_t *v;
    json_object_keylen_foreach(src->vocab, key, key_len, v) {
        const char *t = key;
        size_t len = key_len;
        if (src->byte_level) { /* only a byte-alphabet spelling can be a piece */
            if (key_len > sizeof buf || !byte_spelling(key, key_len)) continue;
            len = token_bytes(key, key_len, buf);
            t = buf;
        }
        int added;
        BpeMapSlot *slot = bpe_map_put(&b->vocab_map, t, len, bpe_hash_bytes(t, len), &added);
        if (added || (uint32_t)json_integer_value(v) < slot->v0)
            slot->v0 = (uint32_t)json_integer_value(v);
    }
    if (!src->byte_level) { /* the character pairs that tokens hold (bpe.c's cuts) */
        bpe_map_init(&b->char_pairs, 1 << 12);
        json_object_keylen_foreach(src->vocab, key, key_len, v) {
            const unsigned char *u = (const unsigned char *)key;
            uint32_t prev = 0, cp;
            for (size_t i = 0; i < key_len;) {
                int step = utf8_decode(u + i, key_len - i, &cp);
                if (step <= 0) break; /* jansson gives well-formed UTF-8 */
                if (i > 0) {
                    if (prev < 128 && cp < 128) {
                        b->ascii_pairs[prev][cp >> 6] |= 1ULL << (cp & 63);
                    } else {
                        uint64_t k = (uint64_t)prev << 32 | cp;
                        bpe_map_put(&b->char_pairs, (const char *)&k, 8, bpe_hash_bytes(&k, 8),
                                    NULL);
                    }
                }
                prev = cp;
                i += (size_t)step;
            }
        }
    }
    b->byte_fallback = src->byte_fallback;
    b->fuse_unk = src->fuse_unk;
    b->unk_id = -1;
    for (int c = 0; c < 128; c++) {
        char ch = (char)c;
        int64_t id = lookup(src, &ch, 1);
        b->ascii_id[c] = id >= 0 ? (uint32_t)id : DEAD_SYMBOL;
    }
    b->has_fallback = 1;
    for (int byte = 0; byte < 256; byte++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", byte);
        b->fallback_id[byte] = lookup(src, name, 6);
        if (b->fallback_id[byte] < 0) b->has_fallback = 0;
    }
    if (src->unk_token && !src->byte_level) {
        b->unk_id = lookup(src, src->unk_token, strlen(src->unk_token));
        if (b->unk_id < 0)
            return err_set("%s: model.unk_token \"%s\" is not in model.vocab; tokenizers fails "
                           "on the first unknown character then — add it to the vocabulary or "
                           "set unk_token to null",
                           src->path, src->unk_token);
    }
    return 0;
}

static Bpe *build(const Source *src, uint64_t *hash) {
    Bpe *b = xcalloc(1, sizeof *b);
    int64_t max_id = -1;
    const char *key;
    json_t *v;
    json_object_foreach(src->vocab, key, v) {
        int64_t id = 0;
        if (check_id(src, "vocabulary entry", key, v, &id) != 0) goto fail;
        if (id > max_id) max_id = id;
    }
    for (size_t a = 0; a < src->n_added; a++)
        if (src->added[a].id > max_id) max_id = src->added[a].id;
    if (max_id < 0) {
        err_set("%s: the vocabulary is empty", src->path);
        goto fail;
    }
    b->n_vocab = (int)max_id + 1;
    if (fill_tokens(src, b) != 0) goto fail;
    b->byte_level = src->byte_level;
    for (int byte = 0; byte < 256 && src->byte_level; byte++) {
        char s[2];
        int n = bpe_byte_to_utf8((unsigned char)byte, s);
        int64_t id = lookup(src, s, (size_t)n);
        if (id < 0) {
            err_set("%s: the vocabulary lacks \"%.*s\", the token of byte 0x%02x; a byte-level "
                    "BPE needs all 256 byte tokens (is this a byte-level tokenizer?)",
                    src->path, n, s, byte);
            goto fail;
        }
        b->byte_id[byte] = (uint32_t)id;
    }
    if (fill_merges(src, b) != 0) goto fail;

    b->n_specials = (int)src->n_added;
    b->specials = xcalloc(src->n_added, sizeof *b->specials);
    b->special_next = xcalloc(src->n_added, sizeof *b->special_next);
    for (size_t a = 0; a < src->n_added; a++) {
        Special *s = &b->specials[a];
        s->len = src->added[a].len;
        s->text = xmalloc(s->len + 1);
        memcpy(s->text, src->added[a].text, s->len);
        s->text[s->len] = '\0';
        s->id = (uint32_t)src->added[a].id;
    }
    qsort(b->specials, (size_t)b->n_specials, sizeof *b->specials, cmp_special);

    b->eos_id = -1;
    for (int k = 0; k < b->n_specials; k++)
        if (strcmp(b->specials[k].text, EOS_TEXT) == 0) b->eos_id = (int)b->specials[k].id;
    if (b->eos_id < 0) b->eos_id = (int)lookup(src, EOS_TEXT, strlen(EOS_TEXT));
    if (b->eos_id < 0 && !src->pipe) {
        err_set("%s: the vocabulary has no \"%s\" token; retort ends every document with it — "
                "add it as an added (special) token",
                src->path, EOS_TEXT);
        goto fail;
    }
    b->add_prefix_space = src->add_prefix_space;
    b->ignore_merges = src->ignore_merges;
    if (src->pipe && !src->gpt2_shape) {
        if (model_tables(src, b) != 0) goto fail;
    } else if (b->ignore_merges) {
        bpe_map_init(&b->vocab_map, (size_t)b->n_vocab);
        for (int id = b->n_vocab - 1; id >= 0; id--) { /* the smallest id wins a tie */
            size_t len = b->tok_off[id + 1] - b->tok_off[id];
            if (len == 0) continue;
            const char *t = b->tok_bytes + b->tok_off[id];
            bpe_map_put(&b->vocab_map, t, len, bpe_hash_bytes(t, len), NULL)->v0 =
                (uint32_t)id;
        }
    }
    bpe_map_init(&b->cache, 1 << 12);
    b->re = bpe_regex_new();
    if (!b->re) goto fail;

    /* what the ids mean, whichever files spelled it: tokens, merges, specials */
    uint64_t h = bpe_fnv1a(BPE_FNV_OFFSET, b->tok_off, ((size_t)b->n_vocab + 1) * 4);
    h = bpe_fnv1a(h, b->tok_bytes, b->tok_off[b->n_vocab]);
    for (size_t r = 0; r < src->n_merges; r++) {
        int64_t ids[2] = {lookup(src, src->merges[r].a, src->merges[r].a_len),
                          lookup(src, src->merges[r].b, src->merges[r].b_len)};
        h = bpe_fnv1a(h, ids, sizeof ids);
    }
    for (int k = 0; k < b->n_specials; k++) h = bpe_fnv1a(h, &b->specials[k].id, 4);
    h = bpe_fnv1a(h, &b->add_prefix_space, sizeof b->add_prefix_space);
    h = bpe_fnv1a(h, &b->ignore_merges, sizeof b->ignore_merges);
    if (src->pipe && !src->gpt2_shape) { /* the pipeline and the model's options too */
        h = tokjson_hash(src->pipe, h);
        int opts[4] = {b->byte_level, b->byte_fallback, b->fuse_unk, (int)b->unk_id};
        h = bpe_fnv1a(h, opts, sizeof opts);
    }
    *hash = h;
    return b;
fail:
    bpe_free(b);
    return NULL;
}

/* tokenizer_config.json's name for key ("eos_token": "</s>" or
 * {"content": "</s>", ...}), NULL when absent. */
static const char *config_token(json_t *config, const char *key) {
    json_t *v = json_object_get(config, key);
    if (json_is_object(v)) v = json_object_get(v, "content");
    return json_string_value(v);
}

/* The EOS, BOS and padding ids: tokenizer_config.json's eos_token, bos_token
 * and pad_token when the directory of the tokenizer has one (as transformers
 * reads them), else EOS by name ("<|endoftext|>", "</s>", "<|end_of_text|>",
 * "<eos>"), BOS the post-processor's first id, padding EOS. */
static int special_ids(Tokenizer *tok, const Bpe *b, const Source *src, const char *dir) {
    char cfg_path[4096];
    json_t *config = NULL;
    if (path_join(cfg_path, sizeof cfg_path, dir, "tokenizer_config.json") == 0 &&
        path_exists(cfg_path)) {
        json_error_t e;
        /* transformers writes model_max_length 1e30 as an integer, beyond 64 bits */
        config = json_load_file(cfg_path, JSON_DECODE_INT_AS_REAL, &e);
        if (!json_is_object(config)) {
            json_decref(config);
            return err_set("%s:%d:%d: malformed JSON: %s — fix or remove it (retort reads "
                           "eos_token, bos_token and pad_token from it)",
                           cfg_path, e.line, e.column, e.text);
        }
    }
    static const char *const keys[] = {"eos_token", "bos_token", "pad_token"};
    int ids[3] = {-1, -1, -1};
    for (int k = 0; k < 3; k++) {
        const char *name = config_token(config, keys[k]);
        if (!name) continue;
        ids[k] = tokenizer_token_id(tok, name);
        if (ids[k] < 0) {
            err_set("%s: %s \"%s\" is not a token of %s; transformers would add it as a new "
                    "token, which changes the vocabulary — use a tokenizer that has it",
                    cfg_path, keys[k], name, src->path);
            json_decref(config);
            return -1;
        }
    }
    json_decref(config);
    static const char *const eos_names[] = {"<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>"};
    for (int k = 0; k < 4 && ids[0] < 0; k++) ids[0] = tokenizer_token_id(tok, eos_names[k]);
    if (ids[0] < 0)
        return err_set("%s: no end-of-sequence token: tokenizer_config.json beside it names none "
                       "(eos_token) and the vocabulary has none of <|endoftext|>, </s>, "
                       "<|end_of_text|>, <eos>; retort ends every document with it — add a "
                       "tokenizer_config.json with \"eos_token\"",
                       src->path);
    if (ids[1] < 0 && tok->n_special_prefix > 0) ids[1] = (int)tok->special_prefix[0];
    if (ids[2] < 0) ids[2] = ids[0];
    tok->eos_id = ids[0];
    tok->bos_id = ids[1];
    tok->pad_id = ids[2];
    (void)b;
    return 0;
}

static int pipe_token_id(const Tokenizer *tok, const char *s, size_t len) {
    return (int)tokjson_token_id(((const Bpe *)tok->impl)->pipe, s, len);
}
static int pipe_is_special(const Tokenizer *tok, uint32_t id) {
    return tokjson_is_special(((const Bpe *)tok->impl)->pipe, id);
}

static Tokenizer *finish(Source *src, const char *spec, const char *dir) {
    uint64_t hash;
    Bpe *b = build(src, &hash);
    if (!b) return NULL;
    int old_eos = b->eos_id;
    if (src->pipe) { /* the pipeline's id -> string table, then it belongs to b */
        const char **strs = xcalloc((size_t)b->n_vocab, sizeof *strs);
        size_t *lens = xcalloc((size_t)b->n_vocab, sizeof *lens);
        const char *key;
        size_t key_len;
        json_t *v;
        json_object_keylen_foreach(src->vocab, key, key_len, v) {
            strs[json_integer_value(v)] = key;
            lens[json_integer_value(v)] = key_len;
        }
        tokjson_set_strings(src->pipe, b->n_vocab, strs, lens);
        free(strs);
        free(lens);
        b->pipe = src->pipe;
        src->pipe = NULL; /* b owns it now */
    }
    const char *base = strrchr(spec, '/');
    base = base && base[1] ? base + 1 : spec;
    char name[128];
    snprintf(name, sizeof name, "bpe:%.80s:%016llx", base, (unsigned long long)hash);
    Tokenizer *tok = bpe_tokenizer(b, name);
    if (b->pipe) {
        if (!src->gpt2_shape) {
            tok->encode = tokjson_encode;
            tok->decode_token = tokjson_decode_token;
            tok->newline_cuts_exact = 0;
        }
        tok->decode = tokjson_decode;
        tok->is_special = pipe_is_special;
        tok->token_id = pipe_token_id;
        if (tokjson_special_ids(b->pipe, src->path, tok->special_prefix, &tok->n_special_prefix,
                                tok->special_suffix, &tok->n_special_suffix) != 0)
            goto fail;
    }
    if (special_ids(tok, b, src, dir) != 0) goto fail;
    /* the ids' meaning includes which are EOS, BOS and padding; GPT-2's files
     * keep their old hash while they use the old choice */
    if ((b->pipe && !src->gpt2_shape) || tok->eos_id != old_eos || tok->pad_id != old_eos) {
        int ids[3] = {tok->eos_id, b->pipe && !src->gpt2_shape ? tok->bos_id : -1, tok->pad_id};
        hash = bpe_fnv1a(hash, ids, sizeof ids);
        snprintf(tok->name, sizeof tok->name, "bpe:%.80s:%016llx", base,
                 (unsigned long long)hash);
    }
    return tok;
fail:
    tokenizer_free(tok);
    return NULL;
}

/* ------------------------------------------------------------- sources */

static json_t *load_json(const char *path) {
    json_error_t e;
    json_t *root = json_load_file(path, 0, &e);
    if (!root)
        err_set("%s:%d:%d: malformed JSON: %s — is this the right file?", path, e.line, e.column,
                e.text);
    return root;
}

/* merges.txt / vocab.bpe: "#version" header lines, then "left right" per line. */
static int parse_merges_file(const char *path, char *text, size_t len, MergeText **out,
                             size_t *n_out) {
    size_t cap = 1024, n = 0, line_no = 0;
    MergeText *m = xmalloc(cap * sizeof *m);
    char *p = text, *end = text + len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *line_end = nl ? nl : end;
        line_no++;
        size_t l = (size_t)(line_end - p);
        if (l > 0 && p[l - 1] == '\r') l--;
        if (l > 0 && !(l >= 8 && memcmp(p, "#version", 8) == 0)) {
            char *sp = memchr(p, ' ', l);
            if (!sp || memchr(sp + 1, ' ', l - (size_t)(sp + 1 - p)) || sp == p ||
                sp + 1 == p + l) {
                free(m);
                return err_set("%s, line %zu: \"%.*s\" is not a merge (two tokens separated by "
                               "one space) — is this a merges file?",
                               path, line_no, (int)(l < 80 ? l : 80), p);
            }
            if (n == cap) m = xrealloc(m, (cap *= 2) * sizeof *m);
            m[n++] = (MergeText){p, sp + 1, (size_t)(sp - p), (size_t)(p + l - sp - 1), line_no};
        }
        p = line_end + 1;
    }
    *out = m;
    *n_out = n;
    return 0;
}

/* encoder.json + vocab.bpe, or vocab.json + merges.txt */
static Tokenizer *load_vocab_merges(const char *dir, const char *vocab_path,
                                    const char *merges_path) {
    Tokenizer *tok = NULL;
    Source src = {.path = vocab_path, .merges_path = merges_path, .byte_level = 1};
    size_t len;
    char *text = read_file(merges_path, &len);
    json_t *vocab = text ? load_json(vocab_path) : NULL;
    if (!vocab) goto done;
    if (!json_is_object(vocab)) {
        err_set("%s: expected a JSON object mapping token strings to ids", vocab_path);
        goto done;
    }
    src.vocab = vocab;
    if (parse_merges_file(merges_path, text, len, &src.merges, &src.n_merges) != 0) goto done;
    /* the vocabulary's own "<|endoftext|>" is the special token, as in GPT2Tokenizer */
    AddedText eos = {EOS_TEXT, strlen(EOS_TEXT), -1};
    json_t *v = json_object_get(vocab, EOS_TEXT);
    if (v && check_id(&src, "vocabulary entry", EOS_TEXT, v, &eos.id) == 0) {
        src.added = &eos;
        src.n_added = 1;
    } else if (v) {
        goto done;
    }
    tok = finish(&src, dir, dir);
done:
    free(src.merges);
    json_decref(vocab);
    free(text);
    return tok;
}

static int is_null_or(json_t *v, const char *empty_string) {
    return !v || json_is_null(v) ||
           (empty_string && json_is_string(v) && strcmp(json_string_value(v), empty_string) == 0);
}

static const char *type_of(json_t *obj) {
    const char *t = json_string_value(json_object_get(obj, "type"));
    return t ? t : "(no type)";
}

/* The BPE model's options, checked against what bpe.c implements. */
static int check_model(const char *path, json_t *model, Source *src) {
    const char *mtype = json_string_value(json_object_get(model, "type"));
    if (mtype && strcmp(mtype, "BPE") != 0)
        return err_set("%s: model: model %s is not supported (retort implements BPE; WordPiece, "
                       "Unigram and WordLevel are refused rather than approximated)",
                       path, mtype);
    if (!is_null_or(json_object_get(model, "continuing_subword_prefix"), "") ||
        !is_null_or(json_object_get(model, "end_of_word_suffix"), ""))
        return err_set("%s: model: BPE with continuing_subword_prefix or end_of_word_suffix is "
                       "not supported (no decoder model retort targets uses them)",
                       path);
    json_t *dropout = json_object_get(model, "dropout");
    if (!is_null_or(dropout, NULL) && json_number_value(dropout) != 0.0)
        return err_set("%s: model.dropout: BPE dropout is not supported (it makes encoding "
                       "random); set model.dropout to null",
                       path);
    src->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    src->byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));
    src->fuse_unk = json_is_true(json_object_get(model, "fuse_unk"));
    json_t *unk = json_object_get(model, "unk_token");
    if (unk && !json_is_null(unk) && !json_is_string(unk))
        return err_set("%s: model.unk_token must be a string or null", path);
    src->unk_token = json_string_value(unk);
    return 0;
}

/* 1 when the file has GPT-2's shape, which bpe.c encodes alone (and which
 * keeps the identity hash it had before pipelines existed): no normalizer,
 * ByteLevel with its regex as the only pre-tokenizer, no post-processor
 * adding tokens, added tokens without lstrip, rstrip or single_word. */
static int gpt2_shape(json_t *root, Source *src) {
    if (!is_null_or(json_object_get(root, "normalizer"), NULL)) return 0;
    json_t *pre = json_object_get(root, "pre_tokenizer");
    if (pre && !strcmp(type_of(pre), "Sequence")) {
        json_t *list = json_object_get(pre, "pretokenizers");
        if (json_array_size(list) == 1) pre = json_array_get(list, 0);
    }
    if (!pre || strcmp(type_of(pre), "ByteLevel") != 0) return 0;
    json_t *use_regex = json_object_get(pre, "use_regex");
    if (use_regex && !json_is_true(use_regex)) return 0;
    json_t *post = json_object_get(root, "post_processor");
    if (!is_null_or(post, NULL) && strcmp(type_of(post), "ByteLevel") != 0) return 0;
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(root, "added_tokens"), i, t) {
        static const char *const flags[] = {"lstrip", "rstrip", "single_word"};
        for (int k = 0; k < 3; k++)
            if (json_is_true(json_object_get(t, flags[k]))) return 0;
    }
    src->add_prefix_space = json_is_true(json_object_get(pre, "add_prefix_space"));
    return 1;
}

static int read_added(const char *path, json_t *root, Source *src) {
    json_t *list = json_object_get(root, "added_tokens");
    if (!list || json_is_null(list)) return 0;
    if (!json_is_array(list)) return err_set("%s: added_tokens must be an array", path);
    src->added_list = list;
    src->added = xcalloc(json_array_size(list), sizeof *src->added);
    size_t i;
    json_t *t;
    json_array_foreach(list, i, t) {
        json_t *content = json_object_get(t, "content");
        if (!json_is_string(content) || json_string_length(content) == 0)
            return err_set("%s: added_tokens[%zu] has no content string", path, i);
        AddedText *a = &src->added[src->n_added++];
        a->text = json_string_value(content);
        a->len = json_string_length(content);
        if (check_id(src, "added token", a->text, json_object_get(t, "id"), &a->id) != 0)
            return -1;
        /* tokenizers gives a token that is in the vocabulary the vocabulary's id */
        int64_t in_vocab = lookup(src, a->text, a->len);
        if (src->pipe && !src->gpt2_shape && in_vocab >= 0 && in_vocab != a->id)
            return err_set("%s: added_tokens[%zu] \"%s\" has id %lld but model.vocab gives it "
                           "%lld, which is the id tokenizers uses; fix the file",
                           path, i, a->text, (long long)a->id, (long long)in_vocab);
    }
    return 0;
}

static int read_json_merges(const char *path, json_t *merges, Source *src) {
    if (!json_is_array(merges))
        return err_set("%s: model.merges must be an array of \"left right\" strings or "
                       "[left, right] pairs",
                       path);
    src->merges = xcalloc(json_array_size(merges), sizeof *src->merges);
    size_t i;
    json_t *m;
    json_array_foreach(merges, i, m) {
        MergeText *t = &src->merges[src->n_merges++];
        t->where = i;
        if (json_is_string(m)) {
            const char *s = json_string_value(m), *sp = strchr(s, ' ');
            size_t len = json_string_length(m);
            if (sp && sp != s && sp[1] && !strchr(sp + 1, ' ')) {
                *t = (MergeText){s, sp + 1, (size_t)(sp - s), len - (size_t)(sp + 1 - s), i};
                continue;
            }
        } else if (json_is_array(m) && json_array_size(m) == 2 &&
                   json_is_string(json_array_get(m, 0)) && json_is_string(json_array_get(m, 1))) {
            json_t *a = json_array_get(m, 0), *b = json_array_get(m, 1);
            *t = (MergeText){json_string_value(a), json_string_value(b), json_string_length(a),
                             json_string_length(b), i};
            continue;
        }
        return err_set("%s: model.merges[%zu] is not a \"left right\" string or a [left, right] "
                       "pair",
                       path, i);
    }
    return 0;
}

static Tokenizer *load_tokenizer_json(const char *path, const char *spec) {
    Tokenizer *tok = NULL;
    Source src = {.path = path, .merges_path = path, .merges_in_json = 1, .byte_level = 1};
    json_t *root = load_json(path);
    if (!root) return NULL;
    json_t *model = json_object_get(root, "model");
    if (!json_is_object(root) || !json_is_object(model)) {
        err_set("%s: no \"model\" object; is this a Hugging Face tokenizer.json?", path);
        goto done;
    }
    src.vocab = json_object_get(model, "vocab");
    if (!json_is_object(src.vocab)) {
        err_set("%s: model.vocab must be an object mapping token strings to ids", path);
        goto done;
    }
    if (check_model(path, model, &src) != 0) goto done;
    src.gpt2_shape = gpt2_shape(root, &src);
    int byte_level = 0;
    src.pipe = tokjson_parse(path, root, &byte_level);
    if (!src.pipe) goto done;
    src.byte_level = src.gpt2_shape || byte_level;
    if (read_added(path, root, &src) != 0 ||
        read_json_merges(path, json_object_get(model, "merges"), &src) != 0)
        goto done;
    int64_t *ids = xcalloc(src.n_added + 1, sizeof *ids);
    for (size_t a = 0; a < src.n_added; a++) ids[a] = src.added[a].id;
    int rc = tokjson_set_added(src.pipe, path, src.added_list, ids);
    free(ids);
    if (rc != 0) goto done;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    else snprintf(dir, sizeof dir, ".");
    tok = finish(&src, spec, dir);
done:
    tokjson_free(src.pipe);
    free(src.merges);
    free(src.added);
    json_decref(root);
    return tok;
}

Tokenizer *bpe_load(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) {
        err_set("tokenizer %s: %s; give \"bytes\", a tokenizer.json, or a directory with "
                "tokenizer.json, encoder.json + vocab.bpe, or vocab.json + merges.txt",
                path, strerror(errno));
        return NULL;
    }
    if (!S_ISDIR(st.st_mode)) return load_tokenizer_json(path, path);
    char a[4096], b[4096];
    if (path_join(a, sizeof a, path, "tokenizer.json") != 0) return NULL;
    if (path_exists(a)) return load_tokenizer_json(a, path);
    static const char *const pairs[][2] = {{"encoder.json", "vocab.bpe"},
                                           {"vocab.json", "merges.txt"}};
    for (int k = 0; k < 2; k++) {
        if (path_join(a, sizeof a, path, pairs[k][0]) != 0 ||
            path_join(b, sizeof b, path, pairs[k][1]) != 0)
            return NULL;
        if (path_exists(a) && path_exists(b)) return load_vocab_merges(path, a, b);
    }
    err_set("tokenizer directory %s holds none of tokenizer.json, encoder.json + vocab.bpe, "
            "vocab.json + merges.txt",
            path);
    return NULL;
}
