/* data/tokjson_decode.c — ids back to text through a tokenizer.json's
 * decoders, as tokenizers' Tokenizer::decode: ids become token strings (an
 * added token's, or the vocabulary's; ids outside the vocabulary and, when
 * asked, special tokens are dropped), each decoder maps the list of strings
 * to a new list (decode_chain), and the result is joined — with " " when the
 * file has no decoder. ByteLevel turns its whole input into one string of
 * bytes read as UTF-8 with U+FFFD for what is not (from_utf8_lossy);
 * ByteFallback turns each run of "<0xAB>" tokens into its text, or one U+FFFD
 * per byte when the run is not UTF-8.
 *
 * decode_token (streaming) runs the same decoders on one token as if it stood
 * in the middle of a text: Metaspace's replacement is a space, Strip and Fuse
 * do nothing, and bytes stay bytes (no U+FFFD: a character split over tokens
 * completes when the stream is joined).
 */
#include <stdlib.h>
#include <string.h>

#include "data/bpe_impl.h"
#include "data/tokjson_impl.h"
#include "util/utf8.h"
#include "util/util.h"

/* A list of strings in one arena. */
typedef struct {
    size_t *off, *len;
    size_t n, cap;
    char *bytes;
    size_t used, bytes_cap;
} List;

static void list_clear(List *l) {
    l->n = 0;
    l->used = 0;
}

static void list_free(List *l) {
    free(l->off);
    free(l->len);
    free(l->bytes);
}

/* Starts a new string at the end of the list. */
static void list_open(List *l) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->off = xrealloc(l->off, l->cap * sizeof *l->off);
        l->len = xrealloc(l->len, l->cap * sizeof *l->len);
    }
    l->off[l->n] = l->used;
    l->len[l->n] = 0;
    l->n++;
}

/* Appends s[0:n] to the last string. */
static void list_add(List *l, const char *s, size_t n) {
    if (l->used + n + 1 > l->bytes_cap) {
        l->bytes_cap = 2 * (l->used + n + 1) + 256;
        l->bytes = xrealloc(l->bytes, l->bytes_cap);
    }
    memcpy(l->bytes + l->used, s, n);
    l->used += n;
    l->len[l->n - 1] += n;
}

static const char *item(const List *l, size_t i) { return l->bytes + l->off[i]; }

static int next_char(const char *s, size_t len, size_t i, uint32_t *cp) {
    int k = utf8_decode((const unsigned char *)s + i, len - i, cp);
    if (k <= 0) {
        *cp = 0xFFFD;
        return 1;
    }
    return k;
}

static void byte_level(const List *in, List *out, int stream) {
    list_open(out);
    for (size_t t = 0; t < in->n; t++) {
        const char *s = item(in, t);
        size_t len = in->len[t], at = out->used;
        int all_bytes = 1;
        for (size_t i = 0; i < len && all_bytes;) {
            uint32_t cp;
            i += (size_t)next_char(s, len, i, &cp);
            int b = bpe_codepoint_to_byte(cp);
            if (b < 0) all_bytes = 0;
            else {
                char c = (char)b;
                list_add(out, &c, 1);
            }
        }
        if (!all_bytes) { /* the token as it is spelled */
            out->len[out->n - 1] -= out->used - at;
            out->used = at;
            list_add(out, s, len);
        }
    }
    if (stream) return;
    size_t fixed_len;
    char *fixed = tokjson_lossy_utf8(item(out, 0), out->len[0], &fixed_len);
    if (fixed) {
        list_clear(out);
        list_open(out);
        list_add(out, fixed, fixed_len);
        free(fixed);
    }
}

static void metaspace(const Dec *d, const List *in, List *out, int stream) {
    for (size_t t = 0; t < in->n; t++) {
        const char *s = item(in, t);
        size_t len = in->len[t];
        int drop = !stream && t == 0 && d->first_dropped;
        list_open(out);
        for (size_t i = 0; i < len;) {
            if (len - i >= d->repl_len && memcmp(s + i, d->repl, d->repl_len) == 0) {
                if (!drop) list_add(out, " ", 1);
                i += d->repl_len;
                continue;
            }
            uint32_t cp;
            int k = next_char(s, len, i, &cp);
            list_add(out, s + i, (size_t)k);
            i += (size_t)k;
        }
    }
}

static int fallback_byte(const char *s, size_t len, unsigned char *b) {
    if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return 0;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return 0;
        v = v * 16 + d;
    }
    *b = (unsigned char)v;
    return 1;
}

static void flush_bytes(List *out, const char *bytes, size_t n, int stream) {
    if (n == 0) return;
    size_t fixed_len;
    char *fixed = stream ? NULL : tokjson_lossy_utf8(bytes, n, &fixed_len);
    if (!fixed) {
        list_open(out);
        list_add(out, bytes, n);
        return;
    }
    free(fixed);
    for (size_t i = 0; i < n; i++) { /* not UTF-8: one U+FFFD per byte, as tokenizers */
        list_open(out);
        list_add(out, "\xEF\xBF\xBD", 3);
    }
}

static void byte_fallback(const List *in, List *out, int stream) {
    char *run = NULL;
    size_t n_run = 0, cap = 0;
    for (size_t t = 0; t < in->n; t++) {
        unsigned char b;
        if (fallback_byte(item(in, t), in->len[t], &b)) {
            if (n_run == cap) run = xrealloc(run, cap = 2 * cap + 16);
            run[n_run++] = (char)b;
            continue;
        }
        flush_bytes(out, run, n_run, stream);
        n_run = 0;
        list_open(out);
        list_add(out, item(in, t), in->len[t]);
    }
    flush_bytes(out, run, n_run, stream);
    free(run);
}

static void fuse(const List *in, List *out) {
    list_open(out);
    for (size_t t = 0; t < in->n; t++) list_add(out, item(in, t), in->len[t]);
}

static void strip(const Dec *d, const List *in, List *out) {
    for (size_t t = 0; t < in->n; t++) {
        const char *s = item(in, t);
        size_t a = 0, z = in->len[t];
        for (int k = 0; k < d->start && z - a >= d->repl_len &&
                        memcmp(s + a, d->repl, d->repl_len) == 0;
             k++)
            a += d->repl_len;
        for (int k = 0; k < d->stop && z - a >= d->repl_len &&
                        memcmp(s + z - d->repl_len, d->repl, d->repl_len) == 0;
             k++)
            z -= d->repl_len;
        list_open(out);
        list_add(out, s + a, z - a);
    }
}

typedef struct {
    List *out;
    const char *s;
    const Dec *d;
} ReplaceCtx;

static void replace_event(void *ctx, size_t start, size_t end, int is_match) {
    ReplaceCtx *r = ctx;
    if (is_match) list_add(r->out, r->d->content, r->d->content_len);
    else list_add(r->out, r->s + start, end - start);
}

static void replace(const Dec *d, const List *in, List *out) {
    for (size_t t = 0; t < in->n; t++) {
        list_open(out);
        ReplaceCtx r = {out, item(in, t), d};
        if (in->len[t] > 0) hf_pattern_events(d->pattern, item(in, t), in->len[t], replace_event, &r);
    }
}

/* Runs the decoders over lists[0]; returns the index of the list holding the result. */
static int run_decoders(const TokPipeline *p, List lists[2], int stream) {
    int cur = 0;
    for (int i = 0; i < p->n_decs; i++) {
        const Dec *d = &p->decs[i];
        if (stream && (d->kind == DEC_FUSE || d->kind == DEC_STRIP)) continue;
        List *in = &lists[cur], *out = &lists[cur ^ 1];
        list_clear(out);
        switch (d->kind) {
        case DEC_BYTELEVEL: byte_level(in, out, stream); break;
        case DEC_METASPACE: metaspace(d, in, out, stream); break;
        case DEC_BYTEFALLBACK: byte_fallback(in, out, stream); break;
        case DEC_FUSE: fuse(in, out); break;
        case DEC_STRIP: strip(d, in, out); break;
        case DEC_REPLACE: replace(d, in, out); break;
        }
        cur ^= 1;
    }
    return cur;
}

static int token_string(const TokPipeline *p, uint32_t id, const char **s, size_t *len) {
    if (id >= (uint32_t)p->n_vocab) return 0;
    *len = p->str_off[id + 1] - p->str_off[id];
    *s = p->str_bytes + p->str_off[id];
    return *len > 0;
}

char *tokjson_decode(const Tokenizer *tok, const uint32_t *ids, int64_t n, int skip_special,
                     size_t *len_out) {
    const TokPipeline *p = ((const Bpe *)tok->impl)->pipe;
    List lists[2] = {{0}, {0}};
    for (int64_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        if (!token_string(p, ids[i], &s, &len)) continue;
        if (skip_special && p->skip[ids[i]]) continue;
        list_open(&lists[0]);
        list_add(&lists[0], s, len);
    }
    int cur = p->has_decoder ? run_decoders(p, lists, 0) : 0;
    const List *r = &lists[cur];
    size_t total = 0;
    for (size_t i = 0; i < r->n; i++) total += r->len[i] + (p->has_decoder ? 0 : 1);
    char *out = xmalloc(total + 1), *w = out;
    for (size_t i = 0; i < r->n; i++) {
        if (!p->has_decoder && i > 0) *w++ = ' '; /* tokenizers joins with spaces then */
        memcpy(w, item(r, i), r->len[i]);
        w += r->len[i];
    }
    *w = '\0';
    if (len_out) *len_out = (size_t)(w - out);
    list_free(&lists[0]);
    list_free(&lists[1]);
    return out;
}

int tokjson_decode_token(const Tokenizer *tok, uint32_t id, char *out) {
    const TokPipeline *p = ((const Bpe *)tok->impl)->pipe;
    const char *s;
    size_t len;
    if (!token_string(p, id, &s, &len)) return 0;
    List lists[2] = {{0}, {0}};
    list_open(&lists[0]);
    list_add(&lists[0], s, len);
    const List *r = &lists[p->has_decoder ? run_decoders(p, lists, 1) : 0];
    size_t k = 0;
    for (size_t i = 0; i < r->n && k < BPE_MAX_TOKEN_BYTES; i++) {
        size_t m = r->len[i] < BPE_MAX_TOKEN_BYTES - k ? r->len[i] : BPE_MAX_TOKEN_BYTES - k;
        memcpy(out + k, item(r, i), m);
        k += m;
    }
    list_free(&lists[0]);
    list_free(&lists[1]);
    return (int)k;
}
