/* data/bpe.c — the byte-level BPE tokenizer: encoding, decoding, and the
 * pieces bpe_train.c shares (byte <-> code point mapping, the pre-tokenizer
 * regex, a byte-string hash map). Loading the vocabulary files is in
 * bpe_load.c. See bpe.h for the encoding steps.
 *
 * Merging one pre-token keeps its symbols in a doubly linked list over an
 * array and the candidate pairs in a binary heap ordered by (merge rank,
 * position); a popped pair is applied only if both symbols still hold the ids
 * it was pushed with. That is the leftmost-lowest-rank-first order of GPT-2's
 * bpe() and of tokenizers' Word::merge_all, in O(n log n) for long pieces.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "data/bpe.h"

#include <assert.h>
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "data/bpe_impl.h"
#include "data/tokjson.h"
#include "util/utf8.h"
#include "util/util.h"

/* ------------------------------------------------ bytes <-> code points */

/* GPT-2 keeps the printable bytes ! .. ~, ¡ .. ¬, ® .. ÿ as themselves and
 * numbers the other 68 bytes, in order, from U+0100: 0x00-0x20 (33 bytes),
 * 0x7F-0xA0 (34 bytes), 0xAD. */
static uint32_t byte_to_codepoint(unsigned char b) {
    if (b <= 0x20) return 256u + b;
    if (b >= 0x7F && b <= 0xA0) return 256u + 33u + (uint32_t)(b - 0x7F);
    if (b == 0xAD) return 256u + 33u + 34u;
    return b;
}

int bpe_codepoint_to_byte(uint32_t cp) {
    if ((cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF))
        return (int)cp;
    if (cp >= 256 && cp < 256 + 33) return (int)(cp - 256);
    if (cp >= 256 + 33 && cp < 256 + 67) return (int)(0x7F + cp - (256 + 33));
    if (cp == 256 + 67) return 0xAD;
    return -1;
}

int bpe_byte_to_utf8(unsigned char b, char out[2]) {
    uint32_t cp = byte_to_codepoint(b);
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

/* ----------------------------------------------------------------- hashing */

uint64_t bpe_fnv1a(uint64_t h, const void *data, size_t len) {
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

uint64_t bpe_hash_bytes(const void *data, size_t len) {
    const unsigned char *p = data;
    uint64_t h = (uint64_t)len * 0x9E3779B97F4A7C15ULL, w;
    for (; len >= 8; p += 8, len -= 8) {
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDULL;
        h ^= h >> 32;
    }
    w = 0;
    memcpy(&w, p, len);
    h = (h ^ w) * 0xC4CEB9FE1A85EC53ULL;
    return h ^ (h >> 29);
}

void bpe_map_init(BpeMap *m, size_t expected) {
    memset(m, 0, sizeof *m);
    size_t cap = 64;
    while (cap < expected * 2) cap *= 2;
    m->cap = cap;
    m->slots = xmalloc(cap * sizeof *m->slots);
    bpe_map_clear(m);
}

void bpe_map_free(BpeMap *m) {
    free(m->slots);
    free(m->keys);
    memset(m, 0, sizeof *m);
}

void bpe_map_clear(BpeMap *m) {
    for (size_t i = 0; i < m->cap; i++) m->slots[i].key_len = UINT32_MAX;
    m->count = 0;
    m->keys_len = 0;
}

static BpeMapSlot *map_find(const BpeMap *m, const char *key, size_t len, uint64_t hash) {
    size_t mask = m->cap - 1;
    for (size_t i = (size_t)hash & mask;; i = (i + 1) & mask) {
        BpeMapSlot *s = &m->slots[i];
        if (s->key_len == UINT32_MAX) return s;
        if (s->hash == hash && s->key_len == len && memcmp(m->keys + s->key_off, key, len) == 0)
            return s;
    }
}

BpeMapSlot *bpe_map_get(const BpeMap *m, const char *key, size_t len, uint64_t hash) {
    BpeMapSlot *s = map_find(m, key, len, hash);
    return s->key_len == UINT32_MAX ? NULL : s;
}

static void map_grow(BpeMap *m) {
    BpeMapSlot *old = m->slots;
    size_t old_cap = m->cap;
    m->cap *= 2;
    m->slots = xmalloc(m->cap * sizeof *m->slots);
    for (size_t i = 0; i < m->cap; i++) m->slots[i].key_len = UINT32_MAX;
    for (size_t i = 0; i < old_cap; i++) {
        if (old[i].key_len == UINT32_MAX) continue;
        size_t mask = m->cap - 1, j = (size_t)old[i].hash & mask;
        while (m->slots[j].key_len != UINT32_MAX) j = (j + 1) & mask;
        m->slots[j] = old[i];
    }
    free(old);
}

BpeMapSlot *bpe_map_put(BpeMap *m, const char *key, size_t len, uint64_t hash, int *added) {
    BpeMapSlot *s = map_find(m, key, len, hash);
    if (s->key_len != UINT32_MAX) {
        if (added) *added = 0;
        return s;
    }
    if ((m->count + 1) * 4 > m->cap * 3) {
        map_grow(m);
        s = map_find(m, key, len, hash);
    }
    if (m->keys_len + len > m->keys_cap) {
        size_t want = m->keys_cap ? m->keys_cap : 4096;
        while (want < m->keys_len + len) want *= 2;
        m->keys = xrealloc(m->keys, want);
        m->keys_cap = want;
    }
    assert(m->keys_len + len < UINT32_MAX);
    memcpy(m->keys + m->keys_len, key, len);
    s->hash = hash;
    s->key_off = (uint32_t)m->keys_len;
    s->key_len = (uint32_t)len;
    s->v0 = s->v1 = 0;
    m->keys_len += len;
    m->count++;
    if (added) *added = 1;
    return s;
}

/* ------------------------------------------------------------- the regex */

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static const char GPT2_PATTERN[] = "'s|'t|'re|'ve|'m|'ll|'d| ?" LETTER "+| ?" NUMBER "+| ?" OTHER
                                   "+|[" WS "]+(?![^" WS "])|[" WS "]+";

struct BpeRegex {
    pcre2_code *code;
    pcre2_match_data *match;
    int jit; /* 1 when JIT compilation succeeded */
};

BpeRegex *bpe_regex_new(void) {
    int errcode;
    PCRE2_SIZE erroff;
    pcre2_code *code = pcre2_compile((PCRE2_SPTR)GPT2_PATTERN, PCRE2_ZERO_TERMINATED,
                                     PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &errcode,
                                     &erroff, NULL);
    if (!code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(errcode, msg, sizeof msg);
        err_set("cannot compile the GPT-2 pre-tokenizer regex at offset %zu: %s (PCRE2 %d.%d; "
                "retort needs PCRE2 >= 10.34 built with Unicode support)",
                (size_t)erroff, (const char *)msg, PCRE2_MAJOR, PCRE2_MINOR);
        return NULL;
    }
    BpeRegex *re = xcalloc(1, sizeof *re);
    re->code = code;
    /* Without JIT (a build or platform lacking it) the interpreter gives the
     * same matches, more slowly. */
    re->jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
    re->match = pcre2_match_data_create_from_pattern(code, NULL);
    return re;
}

void bpe_regex_free(BpeRegex *re) {
    if (!re) return;
    pcre2_match_data_free(re->match);
    pcre2_code_free(re->code);
    free(re);
}

int bpe_regex_next(BpeRegex *re, const char *text, size_t len, size_t pos, size_t *start,
                   size_t *end) {
    int rc = re->jit ? pcre2_jit_match(re->code, (PCRE2_SPTR)text, len, pos, 0, re->match, NULL)
                     : pcre2_match(re->code, (PCRE2_SPTR)text, len, pos, 0, re->match, NULL);
    if (rc < 0) return 0; /* PCRE2_ERROR_NOMATCH; the pattern cannot fail otherwise */
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(re->match);
    *start = ov[0];
    *end = ov[1];
    return 1;
}

/* ------------------------------------------------------------- merging */

/* (a, b) -> rank and merged id; an open-addressing table keyed a << 32 | b. */
static size_t pair_slot(const Bpe *b, uint64_t key) {
    return (size_t)((key * 0x9E3779B97F4A7C15ULL) >> (64 - b->merge_bits));
}

const MergeSlot *bpe_find_merge(const Bpe *b, uint32_t left, uint32_t right) {
    uint64_t key = (uint64_t)left << 32 | right;
    size_t mask = ((size_t)1 << b->merge_bits) - 1;
    for (size_t i = pair_slot(b, key);; i = (i + 1) & mask) {
        const MergeSlot *s = &b->merges[i];
        if (s->key == key) return s;
        if (s->key == MERGE_EMPTY) return NULL;
    }
}

void bpe_add_merge(Bpe *b, uint32_t left, uint32_t right, uint32_t rank, uint32_t merged) {
    uint64_t key = (uint64_t)left << 32 | right;
    size_t mask = ((size_t)1 << b->merge_bits) - 1;
    size_t i = pair_slot(b, key);
    while (b->merges[i].key != MERGE_EMPTY && b->merges[i].key != key) i = (i + 1) & mask;
    /* a pair listed twice keeps its last rank, as GPT-2's dict() and tokenizers do */
    b->merges[i] = (MergeSlot){key, rank, merged};
}

typedef BpeCandidate Candidate;

static int cand_less(const Candidate *x, const Candidate *y) {
    return x->rank != y->rank ? x->rank < y->rank : x->pos < y->pos;
}

static void heap_push(Bpe *b, size_t *n, Candidate c) {
    if (*n == b->heap_cap) {
        b->heap_cap = b->heap_cap ? 2 * b->heap_cap : 64;
        b->heap = xrealloc(b->heap, b->heap_cap * sizeof *b->heap);
    }
    Candidate *h = b->heap;
    size_t i = (*n)++;
    while (i > 0 && cand_less(&c, &h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = c;
}

static Candidate heap_pop(Bpe *b, size_t *n) {
    Candidate *h = b->heap, top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= *n) break;
        if (child + 1 < *n && cand_less(&h[child + 1], &h[child])) child++;
        if (!cand_less(&h[child], &last)) break;
        h[i] = h[child];
        i = child;
    }
    if (*n > 0) h[i] = last;
    return top;
}

static void push_pair(Bpe *b, size_t *n_heap, uint32_t pos, uint32_t left, uint32_t right) {
    const MergeSlot *m = bpe_find_merge(b, left, right);
    if (m) heap_push(b, n_heap, (Candidate){m->rank, pos, left, right, m->id});
}

static void reserve_symbols(Bpe *b, size_t n) {
    if (n <= b->sym_cap) return;
    b->sym_cap = n;
    b->sym_id = xrealloc(b->sym_id, n * sizeof *b->sym_id);
    b->sym_next = xrealloc(b->sym_next, n * sizeof *b->sym_next);
    b->sym_prev = xrealloc(b->sym_prev, n * sizeof *b->sym_prev);
}

/* Is the popped pair still the one it was pushed for? tokenizers' Word::merge_all
 * asks whether the pair now at pos merges into the same token, which a
 * SentencePiece-converted vocabulary can reach by several merges ("▁t he",
 * "▁th e"), so the ids may differ and the merge still applies (at the popped
 * rank). */
static int still_merges(const Bpe *b, const Candidate *c, uint32_t left, uint32_t right) {
    if (left == c->left && right == c->right) return 1;
    const MergeSlot *m = bpe_find_merge(b, left, right);
    return m && m->id == c->merged;
}

/* BPE over the n symbols in b->sym_id; writes the merged ids to out, returns how many. */
static size_t merge_symbols(Bpe *b, size_t n, uint32_t *out) {
    uint32_t *id = b->sym_id;
    int64_t *next = b->sym_next, *prev = b->sym_prev;
    for (size_t i = 0; i < n; i++) {
        prev[i] = (int64_t)i - 1;
        next[i] = i + 1 < n ? (int64_t)i + 1 : -1;
    }
    size_t n_heap = 0;
    for (size_t i = 0; i + 1 < n; i++) push_pair(b, &n_heap, (uint32_t)i, id[i], id[i + 1]);
    while (n_heap > 0) {
        Candidate c = heap_pop(b, &n_heap);
        int64_t l = c.pos, r = next[l];
        if (id[l] == DEAD_SYMBOL || r < 0 || !still_merges(b, &c, id[l], id[r])) continue;
        id[l] = c.merged;
        id[r] = DEAD_SYMBOL;
        next[l] = next[r];
        if (next[r] >= 0) prev[next[r]] = l;
        if (prev[l] >= 0) push_pair(b, &n_heap, (uint32_t)prev[l], id[prev[l]], id[l]);
        if (next[l] >= 0) push_pair(b, &n_heap, (uint32_t)l, id[l], id[next[l]]);
    }
    size_t k = 0;
    for (int64_t i = n > 0 ? 0 : -1; i >= 0; i = next[i]) out[k++] = id[i];
    return k;
}

/* The symbols of a byte-level piece: its bytes' tokens. */
static size_t byte_symbols(Bpe *b, const unsigned char *p, size_t n) {
    reserve_symbols(b, n);
    for (size_t i = 0; i < n; i++) b->sym_id[i] = b->byte_id[p[i]];
    return n;
}

/* The symbols of a char-level piece, as tokenizers' BPE::merge_word makes
 * them: each character's token; a character not in the vocabulary becomes
 * its "<0xAB>" byte tokens (byte_fallback, when all exist), else the unknown
 * token (consecutive ones fused into one with fuse_unk), else nothing. A
 * pending unknown token is written only when a known character (or the end)
 * follows, so byte-fallback tokens in between come first, as there. */
static size_t char_symbols(Bpe *b, const unsigned char *p, size_t n) {
    reserve_symbols(b, n); /* a character gives at most its byte count of symbols */
    uint32_t *out = b->sym_id;
    size_t k = 0;
    int pending_unk = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int step = p[i] < 0x80 ? 1 : utf8_decode(p + i, n - i, &cp);
        if (step <= 0) step = 1; /* not reached: the pipeline hands over valid UTF-8 */
        uint32_t id = DEAD_SYMBOL;
        if (step == 1 && p[i] < 0x80) {
            id = b->ascii_id[p[i]];
        } else {
            const BpeMapSlot *v = bpe_map_get(&b->vocab_map, (const char *)p + i, (size_t)step,
                                              bpe_hash_bytes(p + i, (size_t)step));
            if (v) id = v->v0;
        }
        if (id != DEAD_SYMBOL) {
            if (pending_unk) out[k++] = (uint32_t)b->unk_id;
            pending_unk = 0;
            out[k++] = id;
        } else {
            int fallback = b->byte_fallback;
            for (int j = 0; fallback && j < step; j++) fallback = b->fallback_id[p[i + j]] >= 0;
            if (fallback) {
                for (int j = 0; j < step; j++) out[k++] = (uint32_t)b->fallback_id[p[i + j]];
            } else if (b->unk_id >= 0) {
                if (pending_unk && !b->fuse_unk) out[k++] = (uint32_t)b->unk_id;
                pending_unk = 1;
            }
        }
        i += (size_t)step;
    }
    if (pending_unk) out[k++] = (uint32_t)b->unk_id;
    return k;
}

/* ------------------------------------------------------------- encoding */

/* The cache maps a pre-token to a run of ids in cache_ids; it is dropped
 * whole when it grows past these bounds, which keeps memory flat on
 * unbounded input. A pre-token longer than CACHE_MAX_PIECE bytes is not kept
 * at all: a run of one letter or digit can be megabytes long, is rarely seen
 * twice, and would flush the whole cache. */
#define CACHE_MAX_ENTRIES (1u << 20)
#define CACHE_MAX_IDS (1u << 24)
#define CACHE_MAX_KEY_BYTES (1u << 26)
#define CACHE_MAX_PIECE (1u << 12)

void bpe_reserve_ids(uint32_t **ids, int64_t *cap, int64_t want) {
    if (want <= *cap) return;
    int64_t c = *cap > 0 ? *cap : 256;
    while (c < want) c *= 2;
    *ids = xrealloc(*ids, (size_t)c * sizeof **ids);
    *cap = c;
}

/* Can a symbol span the boundary between characters a and b? */
static int pair_joins(const Bpe *b, uint32_t a, uint32_t c) {
    if (a < 128 && c < 128) return (int)(b->ascii_pairs[a][c >> 6] >> (c & 63) & 1);
    uint64_t key = (uint64_t)a << 32 | c;
    return bpe_map_get(&b->char_pairs, (const char *)&key, 8, bpe_hash_bytes(&key, 8)) != NULL;
}

static int known_char(const Bpe *b, const unsigned char *p, int step, uint32_t cp) {
    if (cp < 128) return b->ascii_id[cp] != DEAD_SYMBOL;
    return bpe_map_get(&b->vocab_map, (const char *)p, (size_t)step,
                       bpe_hash_bytes(p, (size_t)step)) != NULL;
}

/* A long char-level piece (SentencePiece-style files have no pre-tokenizer,
 * so a whole text is one piece) cut where no merge can reach across: between
 * two known characters that no token holds side by side. The ids are those of
 * the whole piece (see char_pairs), found in O(n) cached chunks instead of one
 * heap over the whole text. Not with ignore_merges, whose whole-piece lookup
 * would then apply to the chunks. */
#define CUT_MIN_PIECE 64

static int64_t encode_cut(Bpe *b, const char *piece, size_t len, uint32_t **ids, int64_t *cap,
                          int64_t n) {
    const unsigned char *p = (const unsigned char *)piece;
    size_t start = 0;
    uint32_t prev = 0;
    int prev_known = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        int step = p[i] < 0x80 ? (cp = p[i], 1) : utf8_decode(p + i, len - i, &cp);
        if (step <= 0) step = 1, cp = 0xFFFD;
        int known = known_char(b, p + i, step, cp);
        if (i > start && prev_known && known && !pair_joins(b, prev, cp)) {
            n = bpe_encode_piece(b, piece + start, i - start, ids, cap, n);
            start = i;
        }
        prev = cp;
        prev_known = known;
        i += (size_t)step;
    }
    return bpe_encode_piece(b, piece + start, len - start, ids, cap, n);
}

int64_t bpe_encode_piece(Bpe *b, const char *piece, size_t len, uint32_t **ids, int64_t *cap,
                         int64_t n) {
    if (len == 0) return n;
    if (!b->byte_level && !b->ignore_merges && len > CUT_MIN_PIECE && b->char_pairs.slots &&
        !b->in_cut) {
        b->in_cut = 1; /* the chunks hold no cut point: cut once */
        n = encode_cut(b, piece, len, ids, cap, n);
        b->in_cut = 0;
        return n;
    }
    bpe_reserve_ids(ids, cap, n + (int64_t)len); /* never more ids than bytes */
    uint32_t *out = *ids + n;
    if (len == 1 && b->byte_level) {
        out[0] = b->byte_id[(unsigned char)piece[0]];
        return n + 1;
    }
    uint64_t h = bpe_hash_bytes(piece, len);
    if (b->ignore_merges) {
        const BpeMapSlot *v = bpe_map_get(&b->vocab_map, piece, len, h);
        if (v) {
            out[0] = v->v0;
            return n + 1;
        }
    }
    const BpeMapSlot *hit = bpe_map_get(&b->cache, piece, len, h);
    if (hit) {
        memcpy(out, b->cache_ids + hit->v0, hit->v1 * sizeof *out);
        return n + hit->v1;
    }
    const unsigned char *p = (const unsigned char *)piece;
    size_t n_sym = b->byte_level ? byte_symbols(b, p, len) : char_symbols(b, p, len);
    size_t k = merge_symbols(b, n_sym, out);
    if (len > CACHE_MAX_PIECE) return n + (int64_t)k; /* k <= len: fits every bound below */
    if (b->cache.count >= CACHE_MAX_ENTRIES || b->cache_ids_len + k > CACHE_MAX_IDS ||
        b->cache.keys_len + len > CACHE_MAX_KEY_BYTES) {
        bpe_map_clear(&b->cache);
        b->cache_ids_len = 0;
    }
    if (b->cache_ids_len + k > b->cache_ids_cap) {
        size_t want = b->cache_ids_cap ? b->cache_ids_cap : 1 << 16;
        while (want < b->cache_ids_len + k) want *= 2;
        b->cache_ids = xrealloc(b->cache_ids, want * sizeof *b->cache_ids);
        b->cache_ids_cap = want;
    }
    BpeMapSlot *s = bpe_map_put(&b->cache, piece, len, h, NULL);
    s->v0 = (uint32_t)b->cache_ids_len;
    s->v1 = (uint32_t)k;
    memcpy(b->cache_ids + b->cache_ids_len, out, k * sizeof *out);
    b->cache_ids_len += k;
    return n + (int64_t)k;
}

/* A span of text with no special token in it: regex pieces, then BPE. */
static int64_t encode_span(Bpe *b, const char *text, size_t len, uint32_t **ids, int64_t *cap,
                           int64_t n) {
    if (len == 0) return n;
    if (b->add_prefix_space && text[0] != ' ') {
        if (len + 1 > b->prefix_cap) {
            b->prefix_cap = len + 1;
            b->prefix_buf = xrealloc(b->prefix_buf, b->prefix_cap);
        }
        b->prefix_buf[0] = ' ';
        memcpy(b->prefix_buf + 1, text, len);
        text = b->prefix_buf;
        len++;
    }
    size_t pos = 0;
    while (pos < len) {
        size_t start, end;
        if (!bpe_regex_next(b->re, text, len, pos, &start, &end)) start = end = len;
        if (start > pos) n = bpe_encode_piece(b, text + pos, start - pos, ids, cap, n);
        if (end > start) n = bpe_encode_piece(b, text + start, end - start, ids, cap, n);
        pos = end;
    }
    return n;
}

#define NOT_FOUND SIZE_MAX

/* The leftmost special token at or after pos, the longest at a tie; NULL if
 * none. next_at[k] remembers where special k occurs next (NOT_FOUND: nowhere),
 * so each is searched for only once per occurrence. */
static const Special *next_special(const Bpe *b, const char *text, size_t len, size_t pos,
                                   size_t *next_at, size_t *at) {
    const Special *best = NULL;
    for (int k = 0; k < b->n_specials; k++) {
        const Special *s = &b->specials[k];
        if (next_at[k] != NOT_FOUND && next_at[k] < pos) {
            const char *hit = memmem(text + pos, len - pos, s->text, s->len);
            next_at[k] = hit ? (size_t)(hit - text) : NOT_FOUND;
        }
        /* specials are sorted longest first, so strict < keeps the longest */
        if (next_at[k] != NOT_FOUND && (!best || next_at[k] < *at)) {
            best = s;
            *at = next_at[k];
        }
    }
    return best;
}

static int64_t bpe_encode(const Tokenizer *tok, const char *text, size_t len, uint32_t **ids,
                          int64_t *cap, int64_t n) {
    Bpe *b = tok->impl;
    size_t *next_at = b->special_next;
    for (int k = 0; k < b->n_specials; k++) {
        const char *hit = memmem(text, len, b->specials[k].text, b->specials[k].len);
        next_at[k] = hit ? (size_t)(hit - text) : NOT_FOUND;
    }
    size_t pos = 0;
    while (pos < len) {
        size_t at = len;
        const Special *s = next_special(b, text, len, pos, next_at, &at);
        n = encode_span(b, text + pos, (s ? at : len) - pos, ids, cap, n);
        if (!s) break;
        bpe_reserve_ids(ids, cap, n + 1);
        (*ids)[n++] = s->id;
        pos = at + s->len;
    }
    return n;
}

static int bpe_decode_token(const Tokenizer *tok, uint32_t id, char *out) {
    const Bpe *b = tok->impl;
    if (id >= (uint32_t)b->n_vocab) return 0; /* not in the vocabulary: decodes to nothing */
    uint32_t len = b->tok_off[id + 1] - b->tok_off[id];
    memcpy(out, b->tok_bytes + b->tok_off[id], len);
    return (int)len;
}

void bpe_free(Bpe *b) {
    if (!b) return;
    tokjson_free(b->pipe);
    free(b->tok_off);
    free(b->tok_bytes);
    free(b->merges);
    for (int k = 0; k < b->n_specials; k++) free(b->specials[k].text);
    free(b->specials);
    free(b->special_next);
    bpe_map_free(&b->vocab_map);
    bpe_map_free(&b->cache);
    bpe_map_free(&b->char_pairs);
    free(b->cache_ids);
    bpe_regex_free(b->re);
    free(b->sym_id);
    free(b->sym_next);
    free(b->sym_prev);
    free(b->heap);
    free(b->prefix_buf);
    free(b);
}

/* GPT-2's files: the special tokens by their text. */
static int bpe_token_id(const Tokenizer *tok, const char *s, size_t len) {
    const Bpe *b = tok->impl;
    for (int k = 0; k < b->n_specials; k++)
        if (b->specials[k].len == len && memcmp(b->specials[k].text, s, len) == 0)
            return (int)b->specials[k].id;
    return -1;
}

static int bpe_is_special(const Tokenizer *tok, uint32_t id) {
    const Bpe *b = tok->impl;
    for (int k = 0; k < b->n_specials; k++)
        if (b->specials[k].id == id) return 1;
    return 0;
}

/* GPT2Tokenizer's decode: the bytes, read as UTF-8 with U+FFFD (errors="replace"). */
static char *bpe_decode(const Tokenizer *tok, const uint32_t *ids, int64_t n, int skip_special,
                        size_t *len_out) {
    const Bpe *b = tok->impl;
    size_t total = 0;
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < (uint32_t)b->n_vocab) total += b->tok_off[ids[i] + 1] - b->tok_off[ids[i]];
    char *out = xmalloc(total + 1);
    size_t len = 0;
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] >= (uint32_t)b->n_vocab || (skip_special && bpe_is_special(tok, ids[i])))
            continue;
        uint32_t k = b->tok_off[ids[i] + 1] - b->tok_off[ids[i]];
        memcpy(out + len, b->tok_bytes + b->tok_off[ids[i]], k);
        len += k;
    }
    size_t fixed_len;
    char *fixed = tokjson_lossy_utf8(out, len, &fixed_len);
    if (fixed) {
        free(out);
        out = fixed;
        len = fixed_len;
        out = xrealloc(out, len + 1);
    }
    out[len] = '\0';
    if (len_out) *len_out = len;
    return out;
}

static void bpe_destroy(Tokenizer *tok) {
    bpe_free(tok->impl);
    free(tok);
}

Tokenizer *bpe_tokenizer(Bpe *b, const char *name) {
    Tokenizer *tok = xcalloc(1, sizeof *tok);
    snprintf(tok->name, sizeof tok->name, "%s", name);
    tok->vocab_size = b->n_vocab;
    tok->eos_id = b->eos_id;
    tok->pad_id = b->eos_id;
    tok->bos_id = -1;
    tok->newline_cuts_exact = 1;
    tok->encode = bpe_encode;
    tok->decode_token = bpe_decode_token;
    tok->destroy = bpe_destroy;
    tok->decode = bpe_decode;
    tok->is_special = bpe_is_special;
    tok->token_id = bpe_token_id;
    tok->impl = b;
    return tok;
}
