/* data/jinja_lex.c — template source to tokens, as jinja2's lexer reads it in
 * transformers' environment (trim_blocks and lstrip_blocks on).
 *
 * It follows jinja2.lexer rule by rule, because whitespace is where chat
 * templates are fragile: newlines are normalized and one trailing newline
 * dropped (jinja_parse does that before); `{%-`/`{{-`/`{#-` strip all
 * whitespace before the tag and `-%}`/`-}}`/`-#}` all whitespace after; with
 * trim_blocks the newline right after `%}` or `#}` goes; with lstrip_blocks
 * the whitespace between a line's start and a `{%` or `{#` goes, unless the
 * tag says `+`. Whitespace is Python's str.isspace(), as jinja2's regexes see
 * it. Inside tags, brackets are counted so `}}` closing a dict literal does
 * not end the tag; {% raw %} blocks are text. String literals are decoded
 * with Python's unicode-escape rules (jinja2 decodes them that way), numbers
 * with Python's literal syntax (underscores, 0b/0o/0x).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/jinja_impl.h"
#include "util/util.h"

/* ---- positions and errors ---- */
void line_col(const Parser *P, size_t pos, int *line, int *col) {
    size_t lo = 0, hi = P->n_lines;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (P->line_starts[mid] <= pos) lo = mid;
        else hi = mid;
    }
    *line = (int)lo + 1;
    *col = (int)utf8_count(P->src + P->line_starts[lo], pos - P->line_starts[lo]) + 1;
}

_Noreturn void pfail(Parser *P, size_t pos, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int line, col;
    line_col(P, pos, &line, &col);
    err_set("%s:%d:%d: %s", P->t->label, line, col, msg);
    longjmp(P->fail, 1);
}

/* ---- lexer ---- */
static void push_tok(Parser *P, TokKind kind, size_t pos, const char *p, size_t n) {
    if (P->n_toks == P->cap_toks) {
        size_t cap = P->cap_toks ? P->cap_toks * 2 : 256;
        Tok *nt = ar_alloc(&P->t->arena, cap * sizeof(Tok));
        if (P->n_toks) memcpy(nt, P->toks, P->n_toks * sizeof(Tok));
        P->toks = nt;
        P->cap_toks = cap;
    }
    P->toks[P->n_toks++] = (Tok){.kind = kind, .pos = pos, .p = p, .n = n};
}

static int is_ws_at(const Parser *P, size_t i, size_t *len) {
    uint32_t cp = utf8_at(P->src + i, P->len - i, len);
    return py_isspace(cp);
}

static size_t skip_ws(const Parser *P, size_t i) {
    size_t len;
    while (i < P->len && is_ws_at(P, i, &len)) i += len;
    return i;
}

/* end of s[start:end] with trailing whitespace removed (str.rstrip) */
static size_t rstrip_end(const Parser *P, size_t start, size_t end) {
    while (end > start) {
        size_t b = end - 1;
        while (b > start && ((unsigned char)P->src[b] & 0xC0) == 0x80) b--;
        size_t len;
        if (!is_ws_at(P, b, &len)) break;
        end = b;
    }
    return end;
}

/* The data before a tag, with the whitespace control the tag asks for:
 * sign '-' strips it all, lstrip_blocks strips a line's indentation before a
 * block or comment tag. */
static void push_data(Parser *P, size_t start, size_t end, char sign, int lstrip) {
    if (sign == '-') {
        end = rstrip_end(P, start, end);
    } else if (sign != '+' && lstrip) {
        size_t lpos = start;
        int has_newline = 0;
        for (size_t i = end; i > start; i--)
            if (P->src[i - 1] == '\n') {
                lpos = i;
                has_newline = 1;
                break;
            }
        int line_starting = start == 0 || P->src[start - 1] == '\n';
        if ((has_newline || line_starting) && lpos < end) {
            size_t i = lpos, len;
            while (i < end && is_ws_at(P, i, &len)) i += len;
            if (i == end) end = lpos;
        }
    }
    if (end > start) push_tok(P, TK_DATA, start, P->src + start, end - start);
}

/* After a block or comment end: `-` strips all whitespace, `+` nothing,
 * otherwise trim_blocks takes one newline. */
static size_t after_block_end(const Parser *P, size_t i, char sign) {
    if (sign == '-') return skip_ws(P, i);
    if (sign != '+' && i < P->len && P->src[i] == '\n') return i + 1;
    return i;
}

static int is_name_start(unsigned char c) { return c == '_' || (unsigned)((c | 32) - 'a') < 26u || c >= 0x80; }
static int is_name_char(unsigned char c) { return is_name_start(c) || (unsigned)(c - '0') < 10u; }

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if ((c | 32) >= 'a' && (c | 32) <= 'f') return (c | 32) - 'a' + 10;
    return -1;
}

/* A string literal at i (its quote); returns the index after it. Escapes are
 * Python's unicode-escape (what jinja2 applies), unknown ones kept as is. */
static size_t lex_string(Parser *P, size_t i) {
    char q = P->src[i];
    size_t start = i++;
    Buf b = {.a = &P->t->arena};
    buf_put(&b, "", 0);
    while (1) {
        if (i >= P->len) pfail(P, start, "unclosed string literal; close it with %c", q);
        char c = P->src[i];
        if (c == q) break;
        if (c != '\\') {
            buf_putc(&b, c);
            i++;
            continue;
        }
        if (i + 1 >= P->len) pfail(P, start, "unclosed string literal; close it with %c", q);
        char e = P->src[i + 1];
        i += 2;
        switch (e) {
        case '\n': break; /* line continuation */
        case '\\': buf_putc(&b, '\\'); break;
        case '\'': buf_putc(&b, '\''); break;
        case '"': buf_putc(&b, '"'); break;
        case 'a': buf_putc(&b, '\a'); break;
        case 'b': buf_putc(&b, '\b'); break;
        case 'f': buf_putc(&b, '\f'); break;
        case 'n': buf_putc(&b, '\n'); break;
        case 'r': buf_putc(&b, '\r'); break;
        case 't': buf_putc(&b, '\t'); break;
        case 'v': buf_putc(&b, '\v'); break;
        case 'x': case 'u': case 'U': {
            int digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            uint32_t cp = 0;
            for (int k = 0; k < digits; k++) {
                int h = i < P->len ? hexval(P->src[i]) : -1;
                if (h < 0)
                    pfail(P, i, "truncated \\%c escape in a string literal: it needs %d hex digits",
                          e, digits);
                cp = cp * 16 + (uint32_t)h;
                i++;
            }
            if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
                pfail(P, i, "the escape \\%c in a string literal is not a Unicode scalar value "
                            "(a surrogate or above U+10FFFF)", e);
            utf8_put(&b, cp);
            break;
        }
        case 'N':
            pfail(P, i - 2, "\\N{...} escapes in string literals: %s", NOT_IMPL);
        default:
            if (e >= '0' && e <= '7') {
                uint32_t cp = (uint32_t)(e - '0');
                for (int k = 0; k < 2 && i < P->len && P->src[i] >= '0' && P->src[i] <= '7'; k++)
                    cp = cp * 8 + (uint32_t)(P->src[i++] - '0');
                utf8_put(&b, cp);
            } else {
                buf_putc(&b, '\\');
                buf_putc(&b, e);
            }
        }
    }
    push_tok(P, TK_STRING, start, b.p, b.n);
    return i + 1;
}

/* digits with single underscores between them; returns the end (== i: none) */
static size_t scan_digits(const Parser *P, size_t i, int base) {
    size_t j = i;
    while (j < P->len) {
        int h = hexval(P->src[j]);
        if (h >= 0 && h < base) { j++; continue; }
        if (P->src[j] == '_' && j > i && j + 1 < P->len) {
            int h2 = hexval(P->src[j + 1]);
            if (h2 >= 0 && h2 < base) { j++; continue; }
        }
        break;
    }
    return j;
}

static size_t lex_number(Parser *P, size_t i) {
    size_t start = i;
    /* float_re first: digits then (.digits)?e[+-]digits, or .digits */
    if (!(i > 0 && P->src[i - 1] == '.')) {
        size_t j = scan_digits(P, i, 10), k = j;
        int is_float = 0;
        if (j < P->len && P->src[j] == '.' && j + 1 < P->len && P->src[j + 1] >= '0' &&
            P->src[j + 1] <= '9') {
            k = scan_digits(P, j + 1, 10);
            is_float = 1;
        }
        if (k < P->len && (P->src[k] | 32) == 'e') {
            size_t m = k + 1;
            if (m < P->len && (P->src[m] == '+' || P->src[m] == '-')) m++;
            size_t m2 = scan_digits(P, m, 10);
            if (m2 > m) { k = m2; is_float = 1; }
        }
        if (is_float) {
            char tmp[128];
            size_t n = 0;
            for (size_t x = start; x < k && n < sizeof tmp - 1; x++)
                if (P->src[x] != '_') tmp[n++] = P->src[x];
            tmp[n] = '\0';
            push_tok(P, TK_FLOAT, start, P->src + start, k - start);
            P->toks[P->n_toks - 1].f = strtod(tmp, NULL);
            return k;
        }
    }
    int base = 10;
    size_t j = i;
    if (P->src[i] == '0' && i + 1 < P->len) {
        char x = (char)(P->src[i + 1] | 32);
        if (x == 'b' || x == 'o' || x == 'x') {
            base = x == 'b' ? 2 : x == 'o' ? 8 : 16;
            j = i + 2;
            if (j < P->len && P->src[j] == '_') j++;
        }
    }
    size_t end = scan_digits(P, j, base);
    if (end == j) end = j; /* "0b" alone: the name rule would not match either */
    char tmp[128];
    size_t n = 0;
    for (size_t x = j; x < end && n < sizeof tmp - 1; x++)
        if (P->src[x] != '_') tmp[n++] = P->src[x];
    tmp[n] = '\0';
    errno = 0;
    unsigned long long v = strtoull(tmp, NULL, base);
    if (errno == ERANGE || v > (unsigned long long)INT64_MAX)
        pfail(P, start, "the integer literal %.*s is beyond 64 bits, which %s", (int)(end - start),
              P->src + start, "retort's template interpreter does not implement");
    push_tok(P, TK_INT, start, P->src + start, end - start);
    P->toks[P->n_toks - 1].i = (int64_t)v;
    return end;
}

static const char *const OPERATORS[] = {
    "//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%", "~", "[", "]", "(", ")",
    "{", "}", ">", "<", "=", ".", ":", "|", ",", ";",
};

/* The inside of a {{ }} or {% %} tag from i; returns the index after its end. */
static size_t lex_tag(Parser *P, size_t i, int is_block, size_t open_pos) {
    char stack[256];
    int depth = 0;
    while (1) {
        if (i >= P->len)
            pfail(P, open_pos, "unclosed %s tag: close it with %s", is_block ? "{%" : "{{",
                  is_block ? "%}" : "}}");
        const char *s = P->src + i;
        if (depth == 0) {
            char sign = (s[0] == '-' || s[0] == '+') ? s[0] : 0;
            const char *end = s + (sign ? 1 : 0);
            if (is_block && end[0] == '%' && end[1] == '}') {
                push_tok(P, TK_BLOCK_END, i, NULL, 0);
                return after_block_end(P, (size_t)(end + 2 - P->src), sign);
            }
            if (!is_block && sign != '+' && end[0] == '}' && end[1] == '}') {
                push_tok(P, TK_VAR_END, i, NULL, 0);
                size_t after = (size_t)(end + 2 - P->src);
                return sign == '-' ? skip_ws(P, after) : after;
            }
        }
        size_t len;
        if (is_ws_at(P, i, &len)) {
            i += len;
            continue;
        }
        unsigned char c = (unsigned char)s[0];
        if (c >= '0' && c <= '9') {
            i = lex_number(P, i);
            continue;
        }
        if (is_name_start(c)) {
            size_t j = i;
            while (j < P->len && is_name_char((unsigned char)P->src[j])) j++;
            push_tok(P, TK_NAME, i, P->src + i, j - i);
            i = j;
            continue;
        }
        if (c == '\'' || c == '"') {
            i = lex_string(P, i);
            continue;
        }
        size_t k;
        for (k = 0; k < sizeof OPERATORS / sizeof OPERATORS[0]; k++) {
            size_t n = strlen(OPERATORS[k]);
            if (i + n <= P->len && memcmp(s, OPERATORS[k], n) == 0) break;
        }
        if (k == sizeof OPERATORS / sizeof OPERATORS[0]) {
            uint32_t cp = utf8_at(s, P->len - i, &len);
            pfail(P, i, "unexpected character U+%04X ('%.*s') in a tag", (unsigned)cp, (int)len, s);
        }
        const char *op = OPERATORS[k];
        if (op[1] == '\0' && strchr("([{", op[0])) {
            if (depth == (int)sizeof stack) pfail(P, i, "brackets nested more than 256 deep");
            stack[depth++] = op[0] == '(' ? ')' : op[0] == '[' ? ']' : '}';
        } else if (op[1] == '\0' && strchr(")]}", op[0])) {
            if (depth == 0) pfail(P, i, "unexpected '%c': nothing to close", op[0]);
            if (stack[depth - 1] != op[0])
                pfail(P, i, "unexpected '%c', expected '%c'", op[0], stack[depth - 1]);
            depth--;
        }
        push_tok(P, TK_OP, i, op, strlen(op));
        i += strlen(op);
    }
}

/* {% raw %}...{% endraw %} from the raw tag at open (its '{'); i is after
 * `{%` and its sign. Returns the index after the raw block, or 0 when the tag
 * is not `raw`. */
static size_t lex_raw(Parser *P, size_t open, size_t i) {
    size_t j = skip_ws(P, i);
    if (j + 3 > P->len || memcmp(P->src + j, "raw", 3) != 0) return 0;
    j = skip_ws(P, j + 3);
    size_t body;
    if (j + 3 <= P->len && memcmp(P->src + j, "-%}", 3) == 0) body = skip_ws(P, j + 3);
    else if (j + 2 <= P->len && memcmp(P->src + j, "%}", 2) == 0) body = j + 2;
    else return 0;
    for (size_t k = body; k + 1 < P->len; k++) {
        if (P->src[k] != '{' || P->src[k + 1] != '%') continue;
        size_t m = k + 2;
        char sign = (m < P->len && (P->src[m] == '-' || P->src[m] == '+')) ? P->src[m++] : 0;
        m = skip_ws(P, m);
        if (m + 6 > P->len || memcmp(P->src + m, "endraw", 6) != 0) continue;
        m = skip_ws(P, m + 6);
        char esign = (m < P->len && (P->src[m] == '-' || P->src[m] == '+')) ? P->src[m++] : 0;
        if (m + 2 > P->len || memcmp(P->src + m, "%}", 2) != 0) continue;
        push_data(P, body, k, sign, 1);
        return after_block_end(P, m + 2, esign);
    }
    pfail(P, open, "missing {%% endraw %%} for this raw block");
}

void jinja_lex(Parser *P) {
    size_t pos = 0;
    while (pos < P->len) {
        size_t t = pos;
        while (t + 1 < P->len &&
               !(P->src[t] == '{' && (P->src[t + 1] == '{' || P->src[t + 1] == '%' ||
                                      P->src[t + 1] == '#')))
            t++;
        if (t + 1 >= P->len) {
            push_tok(P, TK_DATA, pos, P->src + pos, P->len - pos);
            break;
        }
        char kind = P->src[t + 1];
        size_t i = t + 2;
        char sign = (i < P->len && (P->src[i] == '-' || P->src[i] == '+')) ? P->src[i] : 0;
        if (sign) i++;
        push_data(P, pos, t, sign, kind != '{');
        if (kind == '#') {
            size_t h = i;
            while (h + 1 < P->len && !(P->src[h] == '#' && P->src[h + 1] == '}')) h++;
            if (h + 1 >= P->len) pfail(P, t, "unclosed comment: close it with #}");
            char esign = (h > i && (P->src[h - 1] == '-' || P->src[h - 1] == '+')) ? P->src[h - 1] : 0;
            pos = after_block_end(P, h + 2, esign);
            continue;
        }
        if (kind == '%') {
            size_t after = lex_raw(P, t, i);
            if (after) {
                pos = after;
                continue;
            }
        }
        push_tok(P, kind == '%' ? TK_BLOCK_BEGIN : TK_VAR_BEGIN, t, NULL, 0);
        pos = lex_tag(P, i, kind == '%', t);
    }
    push_tok(P, TK_EOF, P->len, NULL, 0);
}
