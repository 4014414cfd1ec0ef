/* data/tokenizer.c — the built-in byte-level tokenizer and the helpers every
 * tokenizer shares. Ids 0..255 are the bytes themselves, 256 is EOS
 * "<|endoftext|>" (also used as padding), so vocab_size is 257. Text is never
 * scanned for the special token's spelling: the bytes "<|endoftext|>" in a
 * document encode as 13 byte ids, and only the builder inserts EOS.
 * tokenizer_load() hands every other spec, a path, to the byte-level BPE.
 * Names are identities (tokenizer.h): a BPE's is compared by its hash alone. */
#include "data/tokenizer.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "data/bpe.h"
#include "util/util.h"

#define BYTES_EOS 256
#define EOS_TEXT "<|endoftext|>"

static int64_t bytes_encode(const Tokenizer *tok, const char *text, size_t len, uint32_t **ids,
                            int64_t *cap, int64_t n) {
    (void)tok;
    if (n + (int64_t)len > *cap) {
        int64_t want = *cap > 0 ? *cap : 256;
        while (want < n + (int64_t)len) want *= 2;
        *ids = xrealloc(*ids, (size_t)want * sizeof **ids);
        *cap = want;
    }
    const unsigned char *bytes = (const unsigned char *)text;
    for (size_t i = 0; i < len; i++) (*ids)[n + (int64_t)i] = bytes[i];
    return n + (int64_t)len;
}

static int bytes_decode_token(const Tokenizer *tok, uint32_t id, char *out) {
    (void)tok;
    if (id < 256) {
        out[0] = (char)id;
        return 1;
    }
    if (id == BYTES_EOS) {
        memcpy(out, EOS_TEXT, sizeof EOS_TEXT - 1);
        return (int)(sizeof EOS_TEXT - 1);
    }
    return 0; /* not in the vocabulary: decodes to nothing */
}

static void bytes_destroy(Tokenizer *tok) { free(tok); }

Tokenizer *tokenizer_bytes(void) {
    Tokenizer *tok = xcalloc(1, sizeof *tok);
    snprintf(tok->name, sizeof tok->name, "bytes");
    tok->vocab_size = 257;
    tok->eos_id = BYTES_EOS;
    tok->pad_id = BYTES_EOS;
    tok->bos_id = -1;
    tok->newline_cuts_exact = 1;
    tok->encode = bytes_encode;
    tok->decode_token = bytes_decode_token;
    tok->destroy = bytes_destroy;
    return tok;
}

Tokenizer *tokenizer_load(const char *spec) {
    if (!spec || !*spec) {
        err_set("no tokenizer given; use \"bytes\", a tokenizer.json, or a directory with "
                "tokenizer.json, encoder.json + vocab.bpe, or vocab.json + merges.txt");
        return NULL;
    }
    if (strcmp(spec, "bytes") == 0) return tokenizer_bytes();
    return bpe_load(spec); /* a path: data/bpe.h */
}

void tokenizer_free(Tokenizer *tok) {
    if (tok && tok->destroy) tok->destroy(tok);
}

int64_t tokenizer_encode(const Tokenizer *tok, const char *text, size_t len, int add_special,
                         uint32_t **ids, int64_t *cap, int64_t n) {
    int n_pre = add_special ? tok->n_special_prefix : 0;
    int n_post = add_special ? tok->n_special_suffix : 0;
    if (n + n_pre > *cap) {
        *cap = 2 * (n + n_pre) + 16;
        *ids = xrealloc(*ids, (size_t)*cap * sizeof **ids);
    }
    for (int i = 0; i < n_pre; i++) (*ids)[n++] = tok->special_prefix[i];
    n = tok->encode(tok, text, len, ids, cap, n);
    if (n + n_post > *cap) {
        *cap = 2 * (n + n_post) + 16;
        *ids = xrealloc(*ids, (size_t)*cap * sizeof **ids);
    }
    for (int i = 0; i < n_post; i++) (*ids)[n++] = tok->special_suffix[i];
    return n;
}

char *tokenizer_decode_text(const Tokenizer *tok, const uint32_t *ids, int64_t n,
                            int skip_special, size_t *len_out) {
    if (tok->decode) return tok->decode(tok, ids, n, skip_special, len_out);
    size_t cap = (size_t)n + 16, len = 0;
    char *out = xmalloc(cap);
    char piece[256];
    for (int64_t i = 0; i < n; i++) {
        if (skip_special && tokenizer_is_special(tok, ids[i])) continue;
        int k = tok->decode_token(tok, ids[i], piece);
        if (len + (size_t)k + 1 > cap) {
            while (len + (size_t)k + 1 > cap) cap *= 2;
            out = xrealloc(out, cap);
        }
        memcpy(out + len, piece, (size_t)k);
        len += (size_t)k;
    }
    out[len] = '\0';
    if (len_out) *len_out = len;
    return out;
}

char *tokenizer_decode(const Tokenizer *tok, const uint32_t *ids, int64_t n) {
    return tokenizer_decode_text(tok, ids, n, 0, NULL);
}

int tokenizer_token_id(const Tokenizer *tok, const char *token) {
    size_t len = strlen(token);
    if (tok->token_id) return tok->token_id(tok, token, len);
    /* the bytes tokenizer: EOS by its text, a byte by itself */
    if (strcmp(token, EOS_TEXT) == 0) return tok->eos_id;
    if (len == 1 && tok->vocab_size >= 256) return (unsigned char)token[0];
    return -1;
}

int tokenizer_is_special(const Tokenizer *tok, uint32_t id) {
    if (tok->is_special) return tok->is_special(tok, id);
    return (int)id == tok->eos_id; /* the bytes tokenizer's one special token */
}

/* The 16 hex digits after the last ':' of a "bpe:LABEL:HASH" name, or NULL. */
static const char *bpe_hash_of(const char *name) {
    if (strncmp(name, "bpe:", 4) != 0) return NULL;
    const char *h = strrchr(name, ':') + 1;
    if (h - name < 5 || strlen(h) != 16) return NULL;
    for (int i = 0; i < 16; i++)
        if (!isxdigit((unsigned char)h[i])) return NULL;
    return h;
}

TokenizerKind tokenizer_kind(const char *name) {
    if (!name) return TOKENIZER_UNKNOWN;
    if (strcmp(name, "bytes") == 0) return TOKENIZER_BYTES;
    return bpe_hash_of(name) ? TOKENIZER_BPE : TOKENIZER_UNKNOWN;
}

int tokenizer_same(const char *a, const char *b) {
    TokenizerKind ka = tokenizer_kind(a), kb = tokenizer_kind(b);
    if (ka == TOKENIZER_UNKNOWN || kb == TOKENIZER_UNKNOWN) return -1;
    if (ka != kb) return 0;
    return ka == TOKENIZER_BYTES || strcasecmp(bpe_hash_of(a), bpe_hash_of(b)) == 0;
}

const char *const TOKENIZER_FILES[] = {"tokenizer.json", "encoder.json", "vocab.bpe",
                                       "vocab.json", "merges.txt", "tokenizer_config.json",
                                       "special_tokens_map.json", NULL};

int tokenizer_files_in(const char *dir) {
    static const char *const sets[][2] = {
        {"tokenizer.json", NULL}, {"encoder.json", "vocab.bpe"}, {"vocab.json", "merges.txt"}};
    char a[4096], b[4096];
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++) {
        if (path_join(a, sizeof a, dir, sets[i][0]) != 0 || !path_exists(a)) continue;
        if (!sets[i][1]) return 1;
        if (path_join(b, sizeof b, dir, sets[i][1]) == 0 && path_exists(b)) return 1;
    }
    return 0;
}
