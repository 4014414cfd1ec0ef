/* data/tokjson_encode.c — runs a tokenizer.json pipeline over a text
 * (tokjson.h): added tokens, normalizers, pre-tokenizers, then the BPE model.
 *
 * Nothing is materialized between the stages: each pre-tokenizer splits its
 * piece and hands every sub-piece straight to the next stage (a recursion
 * as deep as the pre-tokenizer list), and the last stage is the model. A
 * stage that rewrites text (Metaspace, ByteLevel's prefix space) writes into
 * its own buffer, which stays valid while the later stages run on its
 * pieces. tokenizers' split behaviors are kept exactly, including how they
 * treat empty matches; MergedWithNext, which tokenizers computes backwards,
 * holds one pending match instead.
 *
 * The one thing tokenizers tracks that this does not is offsets: Metaspace's
 * prepend_scheme "first" asks whether a piece starts at offset 0 of the
 * original text, which here is "the first span, at its normalized offset 0"
 * (a piece that a pre-tokenizer splits off right after characters that a
 * normalizer inserted at offset 0 would differ; no known tokenizer.json
 * has that shape).
 */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "data/bpe_impl.h"
#include "data/tokjson_impl.h"
#include "util/utf8.h"
#include "util/util.h"

typedef struct {
    Bpe *b;
    TokPipeline *p;
    uint32_t **ids;
    int64_t *cap;
    int64_t n;
} Enc;

/* ------------------------------------------------------------ buffers */

static char *grow(char **buf, size_t *cap, size_t want) {
    if (want > *cap) {
        *cap = want + want / 2 + 64;
        *buf = xrealloc(*buf, *cap);
    }
    return *buf;
}

typedef struct {
    char **buf;
    size_t *cap;
    size_t len;
} Out;

static void out_put(Out *o, const char *s, size_t n) {
    grow(o->buf, o->cap, o->len + n);
    memcpy(*o->buf + o->len, s, n);
    o->len += n;
}

static int char_at(const char *s, size_t len, size_t i, uint32_t *cp) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int k = utf8_decode((const unsigned char *)s + i, len - i, cp);
    if (k <= 0) { /* not reached: the pipeline works on well-formed text */
        *cp = 0xFFFD;
        return 1;
    }
    return k;
}

/* ----------------------------------------------------------- normalizers */

/* utf8proc over s[0:len] (valid UTF-8) appended to o. Text is normalized in
 * runs that start at the ASCII character before a non-ASCII run and end at
 * the next ASCII byte: an ASCII character is a starter that composes with
 * nothing before it and is stable under every form, so the runs normalize
 * independently and the ASCII between them is copied as is. */
static void unicode_form(Out *o, const char *s, size_t len, utf8proc_option_t options) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && u[j] < 0x80) j++;
        if (j == len) {
            out_put(o, s + i, len - i);
            return;
        }
        size_t start = j > i ? j - 1 : j; /* the ASCII character before may combine */
        out_put(o, s + i, start - i);
        size_t k = j;
        while (k < len && u[k] >= 0x80) k++;
        utf8proc_uint8_t *dst = NULL;
        utf8proc_ssize_t n = utf8proc_map(u + start, (utf8proc_ssize_t)(k - start), &dst, options);
        if (n >= 0) out_put(o, (const char *)dst, (size_t)n);
        else out_put(o, s + start, k - start); /* not reached: the text is valid UTF-8 */
        free(dst);
        i = k;
    }
}

/* Rust's char::to_lowercase: utf8proc's simple mapping, and U+0130's full one. */
static void lowercase(Out *o, const char *s, size_t len) {
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) {
            char l = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
            out_put(o, &l, 1);
            i++;
            continue;
        }
        uint32_t cp;
        int k = char_at(s, len, i, &cp);
        if (cp == 0x130) {
            out_put(o, "i\xCC\x87", 3);
        } else {
            utf8proc_uint8_t enc[4];
            utf8proc_ssize_t m =
                utf8proc_encode_char(utf8proc_tolower((utf8proc_int32_t)cp), enc);
            out_put(o, (const char *)enc, (size_t)m);
        }
        i += (size_t)k;
    }
}

typedef struct {
    Out *o;
    const char *s;
    const char *content;
    size_t content_len;
} ReplaceCtx;

static void replace_event(void *ctx, size_t start, size_t end, int is_match) {
    ReplaceCtx *r = ctx;
    if (is_match) out_put(r->o, r->content, r->content_len);
    else out_put(r->o, r->s + start, end - start);
}

static void strip(Out *o, const char *s, size_t len, int left, int right) {
    size_t a = 0, z = len;
    uint32_t cp;
    while (left && a < z) {
        int k = char_at(s, len, a, &cp);
        if (!hf_is_whitespace(cp)) break;
        a += (size_t)k;
    }
    while (right && z > a) {
        size_t k = z - 1;
        while (k > a && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
        char_at(s, len, k, &cp);
        if (!hf_is_whitespace(cp)) break;
        z = k;
    }
    out_put(o, s + a, z - a);
}

const char *tokjson_normalize(TokPipeline *p, const char *s, size_t len, size_t *out_len) {
    int which = 0;
    for (int i = 0; i < p->n_norms; i++) {
        const Norm *nm = &p->norms[i];
        Out o = {&p->norm_buf[which], &p->norm_cap[which], 0};
        switch (nm->kind) {
        case NORM_NFC: unicode_form(&o, s, len, UTF8PROC_STABLE | UTF8PROC_COMPOSE); break;
        case NORM_NFD: unicode_form(&o, s, len, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE); break;
        case NORM_NFKC:
            unicode_form(&o, s, len, UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT);
            break;
        case NORM_NFKD:
            unicode_form(&o, s, len, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT);
            break;
        case NORM_LOWERCASE: lowercase(&o, s, len); break;
        case NORM_PREPEND:
            if (len > 0) out_put(&o, nm->text, nm->len);
            out_put(&o, s, len);
            break;
        case NORM_REPLACE: {
            ReplaceCtx r = {&o, s, nm->text, nm->len};
            hf_pattern_events(nm->pattern, s, len, replace_event, &r);
            break;
        }
        case NORM_STRIP: strip(&o, s, len, nm->left, nm->right); break;
        }
        s = p->norm_buf[which];
        len = o.len;
        which ^= 1;
    }
    *out_len = len;
    return s;
}

/* ------------------------------------------------------------- the model */

static void model(Enc *e, const char *s, size_t len) {
    e->n = bpe_encode_piece(e->b, s, len, e->ids, e->cap, e->n);
}

/* --------------------------------------------------------- pre-tokenizers */

static void pre_run(Enc *e, int level, const char *s, size_t len, int at_start);

/* tokenizers' NormalizedString::split: events (match or not) in, pieces out */
typedef struct {
    Enc *e;
    int level; /* the stage the pieces go to */
    const char *s;
    int at_start, invert;
    SplitBehavior behavior;
    int has_pending, pending_match, prev_match;
    size_t ps, pe;
} Splitter;

static void emit(Splitter *sp, size_t start, size_t end) {
    if (end > start) pre_run(sp->e, sp->level, sp->s + start, end - start, sp->at_start && start == 0);
}

static void flush(Splitter *sp) {
    if (sp->has_pending) emit(sp, sp->ps, sp->pe);
    sp->has_pending = 0;
}

static void split_event(void *ctx, size_t start, size_t end, int is_match) {
    Splitter *sp = ctx;
    if (sp->invert) is_match = !is_match;
    switch (sp->behavior) {
    case SPLIT_REMOVED:
        if (!is_match) emit(sp, start, end);
        break;
    case SPLIT_ISOLATED: emit(sp, start, end); break;
    case SPLIT_CONTIGUOUS:
        if (sp->has_pending && is_match == sp->prev_match) {
            sp->pe = end;
        } else {
            flush(sp);
            sp->has_pending = 1;
            sp->ps = start;
            sp->pe = end;
        }
        break;
    case SPLIT_MERGED_PREV:
        if (is_match && !sp->prev_match && sp->has_pending) {
            sp->pe = end;
        } else {
            flush(sp);
            sp->has_pending = 1;
            sp->ps = start;
            sp->pe = end;
        }
        break;
    case SPLIT_MERGED_NEXT: /* a match joins the non-match that follows it */
        if (sp->has_pending) {
            if (!is_match) {
                emit(sp, sp->ps, end);
                sp->has_pending = 0;
                break;
            }
            flush(sp);
        }
        if (is_match) {
            sp->has_pending = 1;
            sp->ps = start;
            sp->pe = end;
        } else {
            emit(sp, start, end);
        }
        break;
    }
    sp->prev_match = is_match;
}

typedef int (*CharClass)(uint32_t cp, const void *arg);

/* tokenizers' Pattern for a char predicate: every matching character is a
 * match of its own, the runs between them non-matches. */
static void char_events(const char *s, size_t len, CharClass cls, const void *arg, Splitter *sp) {
    size_t last = 0;
    uint32_t cp;
    for (size_t i = 0; i < len;) {
        int k = char_at(s, len, i, &cp);
        if (cls(cp, arg)) {
            if (last < i) split_event(sp, last, i, 0);
            split_event(sp, i, i + (size_t)k, 1);
            last = i + (size_t)k;
        }
        i += (size_t)k;
    }
    if (last < len) split_event(sp, last, len, 0);
}

static int is_numeric(uint32_t cp, const void *arg) { return (void)arg, hf_is_numeric(cp); }
static int is_punct(uint32_t cp, const void *arg) { return (void)arg, hf_is_punctuation(cp); }
static int is_space(uint32_t cp, const void *arg) { return (void)arg, hf_is_whitespace(cp); }
static int is_char(uint32_t cp, const void *arg) { return cp == *(const uint32_t *)arg; }

static void metaspace(Enc *e, int level, const PreTok *t, const char *s, size_t len,
                      int at_start) {
    TokPipeline *p = e->p;
    Out o = {&p->pre_buf[level], &p->pre_cap[level], 0};
    /* after ' ' became the replacement: does the piece start with it? */
    int starts_with = s[0] == ' ' || (len >= t->repl_len && memcmp(s, t->repl, t->repl_len) == 0);
    if (!starts_with &&
        (t->prepend == PREPEND_ALWAYS || (t->prepend == PREPEND_FIRST && at_start)))
        out_put(&o, t->repl, t->repl_len);
    for (size_t i = 0; i < len;) { /* ' ' -> the replacement */
        const char *sp = memchr(s + i, ' ', len - i);
        size_t run = sp ? (size_t)(sp - (s + i)) : len - i;
        out_put(&o, s + i, run);
        i += run;
        if (i < len) {
            out_put(&o, t->repl, t->repl_len);
            i++;
        }
    }
    const char *text = p->pre_buf[level];
    if (!t->split) {
        pre_run(e, level + 1, text, o.len, at_start);
        return;
    }
    uint32_t repl;
    utf8_decode((const unsigned char *)t->repl, t->repl_len, &repl);
    Splitter sp = {e, level + 1, text, at_start, 0, SPLIT_MERGED_NEXT, 0, 0, 0, 0, 0};
    char_events(text, o.len, is_char, &repl, &sp);
    flush(&sp);
}

static void byte_level(Enc *e, int level, const PreTok *t, const char *s, size_t len) {
    TokPipeline *p = e->p;
    if (t->add_prefix_space && s[0] != ' ') {
        Out o = {&p->pre_buf[level], &p->pre_cap[level], 0};
        out_put(&o, " ", 1);
        out_put(&o, s, len);
        s = p->pre_buf[level];
        len = o.len;
    }
    if (!t->use_regex) {
        model(e, s, len);
        return;
    }
    size_t pos = 0; /* the GPT-2 regex, isolated: matches and the gaps between them */
    while (pos < len) {
        size_t start, end;
        if (!bpe_regex_next(e->b->re, s, len, pos, &start, &end)) start = end = len;
        if (start > pos) model(e, s + pos, start - pos);
        if (end > start) model(e, s + start, end - start);
        pos = end;
    }
}

static void pre_run(Enc *e, int level, const char *s, size_t len, int at_start) {
    if (len == 0) return;
    TokPipeline *p = e->p;
    if (level == p->n_pres) {
        model(e, s, len);
        return;
    }
    const PreTok *t = &p->pres[level];
    Splitter sp = {e, level + 1, s, at_start, t->invert, t->behavior, 0, 0, 0, 0, 0};
    switch (t->kind) {
    case PRE_SPLIT:
    case PRE_WHITESPACE: hf_pattern_events(t->pattern, s, len, split_event, &sp); break;
    case PRE_DIGITS:
        sp.behavior = t->individual ? SPLIT_ISOLATED : SPLIT_CONTIGUOUS;
        char_events(s, len, is_numeric, NULL, &sp);
        break;
    case PRE_PUNCTUATION: char_events(s, len, is_punct, NULL, &sp); break;
    case PRE_WHITESPACE_SPLIT:
        sp.behavior = SPLIT_REMOVED;
        char_events(s, len, is_space, NULL, &sp);
        break;
    case PRE_METASPACE: metaspace(e, level, t, s, len, at_start); return;
    case PRE_BYTELEVEL: byte_level(e, level, t, s, len); return;
    }
    flush(&sp);
}

/* ---------------------------------------------------------- added tokens */

typedef void (*SpanFn)(Enc *e, const char *s, size_t len, int at_start);

static size_t prev_char_start(const char *s, size_t i) {
    size_t k = i - 1;
    while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
    return k;
}

/* AddedVocabulary::find_matches over s: leftmost-longest matches of set,
 * filtered by single_word and widened by lstrip / rstrip; the text between
 * them goes to span, each match's id to the output. */
static void split_added(Enc *e, const AddedSet *set, const char *s, size_t len, int at_start,
                        SpanFn span) {
    if (set->n == 0) {
        span(e, s, len, at_start);
        return;
    }
    size_t start_offset = 0;
    for (size_t i = 0; i < len;) {
        unsigned char f = (unsigned char)s[i];
        const Added *hit = NULL;
        for (int k = 0; k < set->n_first[f]; k++) {
            const Added *a = set->by_first[f][k];
            if (a->len <= len - i && memcmp(s + i, a->text, a->len) == 0) {
                hit = a;
                break;
            }
        }
        if (!hit) {
            i++;
            continue;
        }
        size_t start = i, stop = i + hit->len;
        i = stop; /* the search goes on after the match, whatever is done with it */
        uint32_t cp;
        if (hit->single_word) {
            int before = start > 0 && (char_at(s, len, prev_char_start(s, start), &cp),
                                       hf_is_word(cp));
            int after = stop < len && (char_at(s, len, stop, &cp), hf_is_word(cp));
            if (before || after) continue;
        }
        if (hit->lstrip) {
            size_t k = start;
            while (k > 0) {
                size_t c = prev_char_start(s, k);
                char_at(s, len, c, &cp);
                if (!hf_is_whitespace(cp)) break;
                k = c;
            }
            start = k > start_offset ? k : start_offset;
        }
        if (hit->rstrip) {
            while (stop < len) {
                int k = char_at(s, len, stop, &cp);
                if (!hf_is_whitespace(cp)) break;
                stop += (size_t)k;
            }
        }
        if (start_offset < start)
            span(e, s + start_offset, start - start_offset, at_start && start_offset == 0);
        bpe_reserve_ids(e->ids, e->cap, e->n + 1);
        (*e->ids)[e->n++] = hit->id;
        start_offset = stop;
    }
    if (start_offset < len)
        span(e, s + start_offset, len - start_offset, at_start && start_offset == 0);
}

static void normalized_span(Enc *e, const char *s, size_t len, int at_start) {
    pre_run(e, 0, s, len, at_start);
}

static void raw_span(Enc *e, const char *s, size_t len, int at_start) {
    TokPipeline *p = e->p;
    if (len == 0) return;
    size_t n_len = len;
    const char *n = p->n_norms ? tokjson_normalize(p, s, len, &n_len) : s;
    split_added(e, &p->normalized, n, n_len, at_start, normalized_span);
}

int64_t tokjson_encode(const Tokenizer *tok, const char *text, size_t len, uint32_t **ids,
                       int64_t *cap, int64_t n) {
    Bpe *b = tok->impl;
    Enc e = {b, b->pipe, ids, cap, n};
    size_t fixed_len;
    char *fixed = tokjson_lossy_utf8(text, len, &fixed_len);
    if (fixed) {
        text = fixed;
        len = fixed_len;
    }
    split_added(&e, &b->pipe->raw, text, len, 1, raw_span);
    free(fixed);
    return e.n;
}
