/* eval/metrics.c — BLEU, chrF, self-BLEU, ROUGE-L, exact match and token F1,
 * written to reproduce sacrebleu and rouge-score to the last digit their
 * definitions allow (see eval/metrics.h for the definitions).
 *
 * Two tricks keep this short:
 *  - The 13a regexes are all "one character from a class, then one character
 *    from another class", so each becomes a left-to-right scan over bytes that
 *    replaces non-overlapping pairs, exactly as re.sub does. Scanning bytes
 *    rather than code points gives the same output: every class that must match
 *    is ASCII, and a UTF-8 continuation byte is never ASCII.
 *  - Every n-gram count is a sort: tokens (or code points) become uint32 ids,
 *    n-grams become fixed-size keys, and sorted key arrays are merged to count
 *    clipped matches. No hash tables, and the segments are short. */
#include "eval/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/utf8.h"

#define MAX_GRAM 6   /* chrF's character order; BLEU uses 4 of the slots */
#define CHRF_ORDER 6
#define CHRF_BETA 2.0
#define INVALID_BYTE_BASE 0x110000u   /* invalid UTF-8 byte b decodes to this + b */

/* ---- UTF-8 and Python's whitespace ---- */

/* The character at s[0:n] (n >= 1): its code point in *cp, its length
 * returned. A byte that does not start a well-formed sequence (utf8_decode)
 * stands alone, as the code point INVALID_BYTE_BASE + byte. */
static int next_char(const unsigned char *s, size_t n, uint32_t *cp) {
    int len = utf8_decode(s, n, cp);
    if (len > 0) return len;
    *cp = INVALID_BYTE_BASE + s[0];
    return 1;
}

/* Python's str.isspace(). */
static int py_isspace(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

typedef struct {
    const char *p;
    int len;
} Span;

/* Python's s.split(): the maximal runs of non-whitespace characters. Returns
 * how many; *out is allocated (free it). */
static int split_ws(const char *s, size_t n, Span **out) {
    int count = 0, cap = 16;
    Span *spans = xmalloc((size_t)cap * sizeof(Span));
    size_t i = 0, start = 0;
    int in_word = 0;
    while (i < n) {
        uint32_t cp;
        int k = next_char((const unsigned char *)s + i, n - i, &cp);
        if (py_isspace(cp)) {
            if (in_word) {
                if (count == cap) spans = xrealloc(spans, (size_t)(cap *= 2) * sizeof(Span));
                spans[count++] = (Span){s + start, (int)(i - start)};
            }
            in_word = 0;
        } else if (!in_word) {
            in_word = 1;
            start = i;
        }
        i += (size_t)k;
    }
    if (in_word) {
        if (count == cap) spans = xrealloc(spans, (size_t)(cap + 1) * sizeof(Span));
        spans[count++] = (Span){s + start, (int)(n - start)};
    }
    *out = spans;
    return count;
}

/* Python's s.strip(): the span left after removing surrounding whitespace
 * (trailing only when `leading` is 0, as s.rstrip()). */
static Span py_strip(const char *s, size_t n, int leading) {
    size_t i = 0, first = n, end = 0;
    while (i < n) {
        uint32_t cp;
        int k = next_char((const unsigned char *)s + i, n - i, &cp);
        if (!py_isspace(cp)) {
            if (first == n) first = i;
            end = i + (size_t)k;
        }
        i += (size_t)k;
    }
    if (!leading) first = 0;
    if (end < first) end = first;
    return (Span){s + first, (int)(end - first)};
}

/* ---- a growable byte buffer ---- */

typedef struct {
    char *p;
    size_t len, cap;
} Buf;

static void buf_put(Buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        b->cap = 2 * (b->len + n + 1);
        b->p = xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_putc(Buf *b, char c) { buf_put(b, &c, 1); }

/* b = s[0:n] with every non-overlapping pat replaced by rep, left to right
 * (Python's str.replace). */
static void replace_all(Buf *b, const char *s, size_t n, const char *pat, const char *rep) {
    size_t m = strlen(pat), r = strlen(rep), i = 0;
    b->len = 0;
    buf_put(b, "", 0);
    while (i < n) {
        const char *hit = memmem(s + i, n - i, pat, m);
        if (!hit) break;
        buf_put(b, s + i, (size_t)(hit - (s + i)));
        buf_put(b, rep, r);
        i = (size_t)(hit - s) + m;
    }
    buf_put(b, s + i, n - i);
}

/* ---- 13a tokenization ---- */

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* The first 13a class: ASCII punctuation and symbols except ' , - . (and the
 * space, which only gains spaces around it). */
static int is_13a_symbol(unsigned char c) {
    return (c >= '{' && c <= '~') || (c >= '[' && c <= '`') || (c >= ' ' && c <= '&') ||
           (c >= '(' && c <= '+') || (c >= ':' && c <= '@') || c == '/';
}

static int is_period_comma(unsigned char c) { return c == '.' || c == ','; }

/* One pair rule: wherever (first(a), second(b)) matches at a, b (non-overlapping,
 * left to right) write pre a mid b post; everything else is copied. */
static void pair_rule(Buf *out, const Buf *in, int (*first)(unsigned char),
                      int (*second)(unsigned char), const char *pre, const char *mid,
                      const char *post) {
    out->len = 0;
    buf_put(out, "", 0);
    const unsigned char *s = (const unsigned char *)in->p;
    size_t i = 0;
    while (i < in->len) {
        if (i + 1 < in->len && first(s[i]) && second(s[i + 1])) {
            buf_put(out, pre, strlen(pre));
            buf_putc(out, (char)s[i]);
            buf_put(out, mid, strlen(mid));
            buf_putc(out, (char)s[i + 1]);
            buf_put(out, post, strlen(post));
            i += 2;
        } else {
            buf_putc(out, (char)s[i++]);
        }
    }
}

static int not_digit(unsigned char c) { return !is_digit(c); }
static int is_dash(unsigned char c) { return c == '-'; }
static int is_digit_u(unsigned char c) { return is_digit(c); }

static char *tokenize_13a_n(const char *line, size_t n) {
    static const char *const unescape[][2] = {
        {"<skipped>", ""}, {"-\n", ""}, {"\n", " "}, {"&quot;", "\""},
        {"&amp;", "&"},    {"&lt;", "<"}, {"&gt;", ">"},
    };
    Buf a = {0}, b = {0};
    buf_put(&a, line, n);
    for (size_t k = 0; k < sizeof unescape / sizeof unescape[0]; k++) {
        replace_all(&b, a.p, a.len, unescape[k][0], unescape[k][1]);
        Buf t = a;
        a = b;
        b = t;
    }
    /* ' ' + line + ' ', each symbol padded with spaces */
    b.len = 0;
    buf_putc(&b, ' ');
    for (size_t i = 0; i < a.len; i++) {
        unsigned char c = (unsigned char)a.p[i];
        if (is_13a_symbol(c)) {
            char pad[3] = {' ', (char)c, ' '};
            buf_put(&b, pad, 3);
        } else {
            buf_putc(&b, (char)c);
        }
    }
    buf_putc(&b, ' ');
    pair_rule(&a, &b, not_digit, is_period_comma, "", " ", " ");   /* ([^0-9])([.,]) */
    pair_rule(&b, &a, is_period_comma, not_digit, " ", " ", "");   /* ([.,])([^0-9]) */
    pair_rule(&a, &b, is_digit_u, is_dash, "", " ", " ");          /* ([0-9])(-) */
    /* ' '.join(line.split()) */
    Span *w;
    int nw = split_ws(a.p, a.len, &w);
    b.len = 0;
    buf_put(&b, "", 0);
    for (int i = 0; i < nw; i++) {
        if (i) buf_putc(&b, ' ');
        buf_put(&b, w[i].p, (size_t)w[i].len);
    }
    free(w);
    free(a.p);
    return b.p;
}

char *tokenize_13a(const char *line) { return tokenize_13a_n(line, strlen(line)); }

/* ---- token ids and n-gram counting ---- */

typedef struct {
    const char *p;
    int len, index;
} Tok;

static int tok_cmp(const void *x, const void *y) {
    const Tok *a = x, *b = y;
    int c = memcmp(a->p, b->p, (size_t)(a->len < b->len ? a->len : b->len));
    if (c) return c;
    return (a->len > b->len) - (a->len < b->len);
}

/* ids[i] = a number that is equal for equal spans[i] and different otherwise. */
static void intern_spans(const Span *spans, int n, uint32_t *ids) {
    Tok *t = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(Tok));
    for (int i = 0; i < n; i++) t[i] = (Tok){spans[i].p, spans[i].len, i};
    qsort(t, (size_t)n, sizeof(Tok), tok_cmp);
    uint32_t id = 0;
    for (int i = 0; i < n; i++) {
        if (i > 0 && tok_cmp(&t[i - 1], &t[i]) != 0) id++;
        ids[t[i].index] = id;
    }
    free(t);
}

typedef struct {
    const uint32_t *v;
    int len;
} Seq;

typedef struct {
    uint32_t v[MAX_GRAM];
} Gram;

static int gram_cmp(const void *a, const void *b) { return memcmp(a, b, sizeof(Gram)); }

/* The order-n grams of s, sorted; *count of them (0 when s is shorter than n). */
static Gram *sorted_grams(Seq s, int n, int *count) {
    int m = s.len - n + 1 > 0 ? s.len - n + 1 : 0;
    Gram *g = xcalloc((size_t)(m > 0 ? m : 1), sizeof(Gram));
    for (int i = 0; i < m; i++) memcpy(g[i].v, s.v + i, (size_t)n * sizeof(uint32_t));
    qsort(g, (size_t)m, sizeof(Gram), gram_cmp);
    *count = m;
    return g;
}

/* Sum over the distinct order-n grams of hyp of min(its count in hyp, its
 * largest count in any of refs[0:n_refs]). */
static int64_t clipped_matches(Seq hyp, const Seq *refs, int n_refs, int n) {
    int nh;
    Gram *h = sorted_grams(hyp, n, &nh);
    int *best = xcalloc((size_t)(nh > 0 ? nh : 1), sizeof(int)); /* indexed by run start */
    for (int r = 0; r < n_refs; r++) {
        int nr;
        Gram *g = sorted_grams(refs[r], n, &nr);
        int j = 0;
        for (int i = 0; i < nh;) {
            int run = i;
            while (run < nh && gram_cmp(&h[run], &h[i]) == 0) run++;
            while (j < nr && gram_cmp(&g[j], &h[i]) < 0) j++;
            int c = 0;
            while (j < nr && gram_cmp(&g[j], &h[i]) == 0) j++, c++;
            if (c > best[i]) best[i] = c;
            i = run;
        }
        free(g);
    }
    int64_t matches = 0;
    for (int i = 0; i < nh;) {
        int run = i;
        while (run < nh && gram_cmp(&h[run], &h[i]) == 0) run++;
        matches += run - i < best[i] ? run - i : best[i];
        i = run;
    }
    free(best);
    free(h);
    return matches;
}

/* ---- BLEU ---- */

typedef struct {
    int64_t sys_len, ref_len, correct[BLEU_MAX_ORDER], total[BLEU_MAX_ORDER];
} BleuStats;

/* Adds the statistics of one segment: hyp against refs[0:n_refs]. */
static void bleu_segment(const char *hyp, const char *const *refs, int n_refs, BleuStats *st) {
    int n_lines = n_refs + 1;
    char **tok = xmalloc((size_t)n_lines * sizeof(char *));
    Span **words = xmalloc((size_t)n_lines * sizeof(Span *));
    int *lens = xmalloc((size_t)n_lines * sizeof(int)), total_words = 0;
    for (int k = 0; k < n_lines; k++) {
        const char *line = k == 0 ? hyp : refs[k - 1];
        Span s = py_strip(line, strlen(line), 0);
        tok[k] = tokenize_13a_n(s.p, (size_t)s.len);
        lens[k] = split_ws(tok[k], strlen(tok[k]), &words[k]);
        total_words += lens[k];
    }
    Span *all = xmalloc((size_t)(total_words > 0 ? total_words : 1) * sizeof(Span));
    uint32_t *ids = xmalloc((size_t)(total_words > 0 ? total_words : 1) * sizeof(uint32_t));
    Seq *seq = xmalloc((size_t)n_lines * sizeof(Seq));
    for (int k = 0, at = 0; k < n_lines; k++) {
        memcpy(all + at, words[k], (size_t)lens[k] * sizeof(Span));
        seq[k] = (Seq){ids + at, lens[k]};
        at += lens[k];
    }
    intern_spans(all, total_words, ids);

    int hyp_len = lens[0], closest = -1, closest_diff = -1;
    for (int r = 1; r < n_lines; r++) {   /* the closest length; ties go to the shorter */
        int diff = abs(hyp_len - lens[r]);
        if (closest_diff < 0 || diff < closest_diff ||
            (diff == closest_diff && lens[r] < closest)) {
            closest_diff = diff;
            closest = lens[r];
        }
    }
    st->sys_len += hyp_len;
    st->ref_len += closest;
    for (int n = 1; n <= BLEU_MAX_ORDER; n++) {
        if (hyp_len >= n) st->total[n - 1] += hyp_len - n + 1;
        st->correct[n - 1] += clipped_matches(seq[0], seq + 1, n_refs, n);
    }
    for (int k = 0; k < n_lines; k++) {
        free(tok[k]);
        free(words[k]);
    }
    free(tok);
    free(words);
    free(lens);
    free(all);
    free(ids);
    free(seq);
}

/* sacrebleu's my_log: log with log(0) floored to a large negative number. */
static double floored_log(double x) { return x == 0.0 ? -9999999999.0 : log(x); }

/* sacrebleu BLEU.compute_bleu with smooth_method 'exp'. */
static void bleu_from_stats(const BleuStats *st, int effective_order, BleuResult *out) {
    memset(out, 0, sizeof *out);
    out->sys_len = st->sys_len;
    out->ref_len = st->ref_len;
    memcpy(out->correct, st->correct, sizeof out->correct);
    memcpy(out->total, st->total, sizeof out->total);
    out->ratio = st->ref_len ? (double)st->sys_len / (double)st->ref_len : 0.0;
    out->bp = 1.0;
    if (st->sys_len < st->ref_len)
        out->bp = st->sys_len > 0 ? exp(1.0 - (double)st->ref_len / (double)st->sys_len) : 0.0;
    int any = 0;
    for (int n = 0; n < BLEU_MAX_ORDER; n++) any |= st->correct[n] != 0;
    if (!any) return;   /* no match at any order: 0 (sacrebleu issue #141) */
    double smooth = 1.0;
    int eff_order = BLEU_MAX_ORDER;
    for (int n = 1; n <= BLEU_MAX_ORDER; n++) {
        if (st->total[n - 1] == 0) break;
        if (effective_order) eff_order = n;
        if (st->correct[n - 1] == 0) {   /* 'exp': halve the credit at each empty order */
            smooth *= 2;
            out->precisions[n - 1] = 100.0 / (smooth * (double)st->total[n - 1]);
        } else {
            out->precisions[n - 1] = 100.0 * (double)st->correct[n - 1] / (double)st->total[n - 1];
        }
    }
    double sum = 0;
    for (int n = 0; n < eff_order; n++) sum += floored_log(out->precisions[n]);
    out->score = out->bp * exp(sum / eff_order);
}

static int check_lines(const char *const *lines, int n, const char *what) {
    if (!lines) return err_set("%s: the array is NULL", what);
    for (int i = 0; i < n; i++)
        if (!lines[i]) return err_set("%s: string %d is NULL; pass \"\" for an empty one", what, i);
    return 0;
}

int bleu_corpus(const char *const *hyps, const char *const *refs, int n, int n_refs,
                BleuResult *out) {
    if (n < 1 || n_refs < 1)
        return err_set("bleu_corpus: %d hypotheses and %d reference streams; both must be >= 1",
                       n, n_refs);
    if (check_lines(hyps, n, "bleu_corpus hypotheses") ||
        check_lines(refs, n * n_refs, "bleu_corpus references"))
        return -1;
    BleuStats st = {0};
    const char **seg_refs = xmalloc((size_t)n_refs * sizeof(char *));
    for (int i = 0; i < n; i++) {
        for (int r = 0; r < n_refs; r++) seg_refs[r] = refs[(size_t)r * n + i];
        bleu_segment(hyps[i], seg_refs, n_refs, &st);
    }
    free(seg_refs);
    bleu_from_stats(&st, 0, out);
    return 0;
}

double bleu_sentence(const char *hyp, const char *const *refs, int n_refs) {
    if (n_refs < 1) return err_set("bleu_sentence: %d references; need at least 1", n_refs);
    if (check_lines(&hyp, 1, "bleu_sentence hypothesis") ||
        check_lines(refs, n_refs, "bleu_sentence references"))
        return -1;
    BleuStats st = {0};
    BleuResult r;
    bleu_segment(hyp, refs, n_refs, &st);
    bleu_from_stats(&st, 1, &r);
    return r.score;
}

double self_bleu(const char *const *samples, int n) {
    if (n < 2)
        return err_set("self_bleu: %d samples; it compares each with the others, so needs >= 2", n);
    if (check_lines(samples, n, "self_bleu samples")) return -1;
    const char **others = xmalloc((size_t)(n - 1) * sizeof(char *));
    double sum = 0;
    for (int i = 0; i < n; i++) {
        for (int j = 0, k = 0; j < n; j++)
            if (j != i) others[k++] = samples[j];
        sum += bleu_sentence(samples[i], others, n - 1);
    }
    free(others);
    return sum / n;
}

/* ---- chrF ---- */

/* The code points of s with whitespace removed (''.join(s.split())). */
static Seq chars_no_space(const char *s) {
    size_t n = strlen(s), i = 0;
    uint32_t *v = xmalloc((n > 0 ? n : 1) * sizeof(uint32_t));
    int len = 0;
    while (i < n) {
        uint32_t cp;
        i += (size_t)next_char((const unsigned char *)s + i, n - i, &cp);
        if (!py_isspace(cp)) v[len++] = cp;
    }
    return (Seq){v, len};
}

double chrf_corpus(const char *const *hyps, const char *const *refs, int n) {
    if (n < 1) return err_set("chrf_corpus: %d hypotheses; need at least 1", n);
    if (check_lines(hyps, n, "chrf_corpus hypotheses") ||
        check_lines(refs, n, "chrf_corpus references"))
        return -1;
    int64_t n_hyp[CHRF_ORDER] = {0}, n_ref[CHRF_ORDER] = {0}, n_match[CHRF_ORDER] = {0};
    for (int i = 0; i < n; i++) {
        Seq h = chars_no_space(hyps[i]), r = chars_no_space(refs[i]);
        for (int k = 1; k <= CHRF_ORDER; k++) {
            int64_t ref_grams = r.len >= k ? r.len - k + 1 : 0;
            /* sacrebleu counts no hypothesis n-grams where the reference has none */
            if (ref_grams > 0 && h.len >= k) n_hyp[k - 1] += h.len - k + 1;
            n_ref[k - 1] += ref_grams;
            n_match[k - 1] += clipped_matches(h, &r, 1, k);
        }
        free((void *)h.v);
        free((void *)r.v);
    }
    /* average precision and recall over the orders both sides have, then F-beta */
    double avg_prec = 0, avg_rec = 0, factor = CHRF_BETA * CHRF_BETA;
    int eff_order = 0;
    for (int k = 0; k < CHRF_ORDER; k++) {
        if (n_hyp[k] > 0 && n_ref[k] > 0) {
            avg_prec += (double)n_match[k] / (double)n_hyp[k];
            avg_rec += (double)n_match[k] / (double)n_ref[k];
            eff_order++;
        }
    }
    if (eff_order == 0) return 0.0;
    avg_prec /= eff_order;
    avg_rec /= eff_order;
    if (avg_prec + avg_rec == 0) return 0.0;
    return 100 * ((1 + factor) * avg_prec * avg_rec / (factor * avg_prec + avg_rec));
}

/* ---- ROUGE-L ---- */

/* rouge-score's default tokens: lowercase, then maximal runs of [a-z0-9].
 * Only ASCII letters and two other characters lowercase into [a-z0-9]:
 * U+212A KELVIN SIGN -> "k" and U+0130 -> "i" + U+0307 (which then ends the
 * token). Returns the token count; *buf holds the lowered text, *out the spans. */
static int rouge_tokens(const char *s, Buf *buf, Span **out) {
    size_t n = strlen(s), i = 0;
    buf->len = 0;
    buf_put(buf, "", 0);
    while (i < n) {
        uint32_t cp;
        i += (size_t)next_char((const unsigned char *)s + i, n - i, &cp);
        char c = ' ';
        if ((cp >= 'a' && cp <= 'z') || (cp >= '0' && cp <= '9')) c = (char)cp;
        else if (cp >= 'A' && cp <= 'Z') c = (char)(cp - 'A' + 'a');
        else if (cp == 0x212A) c = 'k';
        else if (cp == 0x130) {
            buf_put(buf, "i ", 2);
            continue;
        }
        buf_putc(buf, c);
    }
    return split_ws(buf->p, buf->len, out);
}

double rouge_l_f(const char *hyp, const char *ref) {
    Buf hb = {0}, rb = {0};
    Span *hs, *rs;
    int nh = rouge_tokens(hyp, &hb, &hs), nr = rouge_tokens(ref, &rb, &rs);
    double f = 0.0;
    if (nh > 0 && nr > 0) {
        Span *all = xmalloc((size_t)(nh + nr) * sizeof(Span));
        uint32_t *ids = xmalloc((size_t)(nh + nr) * sizeof(uint32_t));
        memcpy(all, hs, (size_t)nh * sizeof(Span));
        memcpy(all + nh, rs, (size_t)nr * sizeof(Span));
        intern_spans(all, nh + nr, ids);
        /* LCS by the usual table, one row at a time */
        int *prev = xcalloc((size_t)nh + 1, sizeof(int));
        int *cur = xcalloc((size_t)nh + 1, sizeof(int));
        for (int i = 1; i <= nr; i++) {
            for (int j = 1; j <= nh; j++) {
                if (ids[nh + i - 1] == ids[j - 1]) cur[j] = prev[j - 1] + 1;
                else cur[j] = prev[j] > cur[j - 1] ? prev[j] : cur[j - 1];
            }
            int *t = prev;
            prev = cur;
            cur = t;
        }
        double lcs = prev[nh], precision = lcs / nh, recall = lcs / nr;
        if (precision + recall > 0) f = 2 * precision * recall / (precision + recall);
        free(prev);
        free(cur);
        free(all);
        free(ids);
    }
    free(hs);
    free(rs);
    free(hb.p);
    free(rb.p);
    return f;
}

/* ---- exact match and token F1 ---- */

int exact_match(const char *hyp, const char *ref) {
    Span h = py_strip(hyp, strlen(hyp), 1), r = py_strip(ref, strlen(ref), 1);
    return h.len == r.len && memcmp(h.p, r.p, (size_t)h.len) == 0;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

double token_f1(const char *hyp, const char *ref) {
    Span *hs, *rs;
    int nh = split_ws(hyp, strlen(hyp), &hs), nr = split_ws(ref, strlen(ref), &rs);
    double f = 0.0;
    if (nh == 0 || nr == 0) {
        f = nh == nr;
    } else {
        Span *all = xmalloc((size_t)(nh + nr) * sizeof(Span));
        uint32_t *ids = xmalloc((size_t)(nh + nr) * sizeof(uint32_t));
        memcpy(all, hs, (size_t)nh * sizeof(Span));
        memcpy(all + nh, rs, (size_t)nr * sizeof(Span));
        intern_spans(all, nh + nr, ids);
        qsort(ids, (size_t)nh, sizeof(uint32_t), cmp_u32);
        qsort(ids + nh, (size_t)nr, sizeof(uint32_t), cmp_u32);
        int common = 0;
        for (int i = 0, j = nh; i < nh && j < nh + nr;) {   /* multiset intersection */
            if (ids[i] == ids[j]) common++, i++, j++;
            else if (ids[i] < ids[j]) i++;
            else j++;
        }
        if (common > 0) {
            double precision = (double)common / nh, recall = (double)common / nr;
            f = 2 * precision * recall / (precision + recall);
        }
        free(all);
        free(ids);
    }
    free(hs);
    free(rs);
    return f;
}
