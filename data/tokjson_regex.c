/* data/tokjson_regex.c — the text machinery of the tokenizer.json pipeline:
 * Oniguruma patterns translated for PCRE2 and searched as tokenizers searches
 * them, the character classes tokenizers' Rust code uses, and UTF-8 repair.
 *
 * Why a translation: tokenizers compiles patterns with Oniguruma (Ruby
 * syntax). PCRE2 reads the same syntax for everything real tokenizer.json
 * files use except a few escapes whose meaning differs or whose Unicode data
 * is older in PCRE2 10.42 (Unicode 14; tokenizers' Oniguruma knows 16): \s
 * (White_Space), \p{L}, \p{N} (plus the letters and numbers of Unicode 15-16,
 * bpe_impl.h), \w (Oniguruma: Letter, Mark, Decimal_Number,
 * Connector_Punctuation; PCRE2's lacks marks), \h (Ruby: a hex digit; PCRE2:
 * horizontal space), \uHHHH, and ^ / $ (Ruby: per line). What cannot be kept
 * exactly is refused rather than approximated.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "data/bpe_impl.h"
#include "data/tokjson.h"
#include "util/utf8.h"
#include "util/util.h"

/* ------------------------------------------------------------ translation */

typedef struct {
    char *s;
    size_t len, cap;
} Buf;

static void put(Buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        b->cap = 2 * (b->len + n + 1) + 64;
        b->s = xrealloc(b->s, b->cap);
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}
static void puts_(Buf *b, const char *s) { put(b, s, strlen(s)); }

#define WORD_CLASS "\\p{L}\\p{M}\\p{Nd}\\p{Pc}" L_EXTRA
#define HEX_CLASS "0-9a-fA-F"

/* The class body (without brackets) an escape letter stands for, or NULL
 * when the escape passes through unchanged. name: the \p{...} name. */
static const char *class_body(char letter, const char *name, size_t name_len) {
    switch (letter) {
    case 's': case 'S': return WS;
    case 'w': case 'W': return WORD_CLASS;
    case 'h': case 'H': return HEX_CLASS;
    case 'p': case 'P':
        if ((name_len == 1 && name[0] == 'L') || (name_len == 6 && !memcmp(name, "Letter", 6)))
            return "\\p{L}" L_EXTRA;
        if ((name_len == 1 && name[0] == 'N') || (name_len == 6 && !memcmp(name, "Number", 6)))
            return "\\p{N}" N_EXTRA;
        return NULL;
    }
    return NULL;
}

static char *refuse(Buf *out, const char *path, const char *where, const char *regex, size_t at,
                    const char *what) {
    free(out->s);
    err_set("%s: %s: the regex \"%s\" uses %s at offset %zu, which retort's PCRE2 translation "
            "of Oniguruma does not keep exactly; tokenizers would read it, retort refuses it "
            "rather than tokenize differently",
            path, where, regex, what, at);
    return NULL;
}

char *hf_regex_translate(const char *re, const char *path, const char *where) {
    Buf out = {0};
    puts_(&out, "");
    size_t n = strlen(re);
    int in_class = 0;
    for (size_t i = 0; i < n;) {
        char c = re[i];
        if (c == '\\' && i + 1 < n) {
            char e = re[i + 1];
            size_t j = i + 2;
            const char *name = NULL;
            size_t name_len = 0;
            int negated = e == 'S' || e == 'W' || e == 'H' || e == 'P';
            if (e == 'p' || e == 'P') {
                if (j < n && re[j] == '{') {
                    const char *close = strchr(re + j, '}');
                    if (!close) return refuse(&out, path, where, re, i, "an unclosed \\p{");
                    name = re + j + 1;
                    name_len = (size_t)(close - name);
                    if (name_len > 0 && name[0] == '^') {
                        negated = !negated;
                        name++;
                        name_len--;
                    }
                    j = (size_t)(close - re) + 1;
                } else if (j < n) {
                    name = re + j;
                    name_len = 1;
                    j++;
                }
            }
            if (e == 'u' && i + 6 <= n) { /* \uHHHH */
                char hex[5] = {re[i + 2], re[i + 3], re[i + 4], re[i + 5], 0};
                put(&out, "\\x{", 3);
                puts_(&out, hex);
                put(&out, "}", 1);
                i += 6;
                continue;
            }
            const char *body = (e == 's' || e == 'S' || e == 'w' || e == 'W' || e == 'h' ||
                                e == 'H' || e == 'p' || e == 'P')
                                   ? class_body(e, name, name_len)
                                   : NULL;
            if (!body) { /* passes through: the escape and its argument */
                put(&out, re + i, j - i);
                i = j;
                continue;
            }
            if (in_class) {
                if (negated)
                    return refuse(&out, path, where, re, i,
                                  "a negated class escape inside a character class");
                puts_(&out, body);
            } else {
                puts_(&out, negated ? "[^" : "[");
                puts_(&out, body);
                puts_(&out, "]");
            }
            i = j;
            continue;
        }
        if (in_class) {
            if (c == '[') {
                if (i + 1 < n && re[i + 1] == ':') { /* [:alpha:] */
                    const char *close = strstr(re + i, ":]");
                    if (!close) return refuse(&out, path, where, re, i, "an unclosed [:");
                    put(&out, re + i, (size_t)(close - (re + i)) + 2);
                    i = (size_t)(close - re) + 2;
                    continue;
                }
                return refuse(&out, path, where, re, i, "a nested character class");
            }
            if (c == '&' && i + 1 < n && re[i + 1] == '&')
                return refuse(&out, path, where, re, i, "a class intersection (&&)");
            if (c == ']') in_class = 0;
            put(&out, &c, 1);
            i++;
            continue;
        }
        if (c == '[') {
            in_class = 1;
            put(&out, "[", 1);
            i++;
            if (i < n && re[i] == '^') put(&out, re + i++, 1);
            if (i < n && re[i] == ']') put(&out, re + i++, 1); /* a leading ] is literal */
            continue;
        }
        if (c == '(' && i + 1 < n && re[i + 1] == '?') {
            size_t j = i + 2;
            /* inline options: only i (case) means the same in both */
            while (j < n && (re[j] == 'i' || re[j] == '-' || re[j] == 'm' || re[j] == 'x' ||
                             re[j] == 's'))
                j++;
            if (j > i + 2) {
                for (size_t k = i + 2; k < j; k++)
                    if (re[k] != 'i' && re[k] != '-')
                        return refuse(&out, path, where, re, i,
                                      "an inline option other than (?i) (Ruby's m is dotall, "
                                      "x and s differ too)");
            }
        }
        put(&out, &c, 1);
        i++;
    }
    if (in_class) return refuse(&out, path, where, re, n, "an unclosed character class");
    return out.s;
}

/* ------------------------------------------------------------- patterns */

struct HfPattern {
    pcre2_code *code; /* NULL for a literal */
    pcre2_match_data *match;
    int jit;
    char *literal; /* a non-empty String pattern: found with memmem */
    size_t literal_len;
};

static HfPattern *compile(const char *pcre, const char *shown, const char *path,
                          const char *where) {
    int errcode;
    PCRE2_SIZE erroff;
    pcre2_code *code = pcre2_compile((PCRE2_SPTR)pcre, PCRE2_ZERO_TERMINATED,
                                     PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, &errcode, &erroff,
                                     NULL);
    if (!code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(errcode, msg, sizeof msg);
        err_set("%s: %s: cannot compile the regex \"%s\" (as PCRE2 \"%s\", offset %zu): %s — "
                "fix the pattern",
                path, where, shown, pcre, (size_t)erroff, (const char *)msg);
        return NULL;
    }
    HfPattern *p = xcalloc(1, sizeof *p);
    p->code = code;
    p->jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
    p->match = pcre2_match_data_create_from_pattern(code, NULL);
    return p;
}

HfPattern *hf_pattern_regex(const char *regex, const char *path, const char *where) {
    char *pcre = hf_regex_translate(regex, path, where);
    if (!pcre) return NULL;
    HfPattern *p = compile(pcre, regex, path, where);
    free(pcre);
    return p;
}

HfPattern *hf_pattern_new(json_t *pattern, const char *path, const char *where) {
    json_t *regex = json_object_get(pattern, "Regex"), *str = json_object_get(pattern, "String");
    if (json_is_string(regex)) return hf_pattern_regex(json_string_value(regex), path, where);
    if (!json_is_string(str)) {
        err_set("%s: %s: the pattern must be {\"Regex\": \"...\"} or {\"String\": \"...\"}",
                path, where);
        return NULL;
    }
    size_t len = json_string_length(str);
    if (len == 0) return compile("", "", path, where); /* tokenizers' escape("") matches everywhere */
    HfPattern *p = xcalloc(1, sizeof *p);
    p->literal = xmalloc(len);
    memcpy(p->literal, json_string_value(str), len);
    p->literal_len = len;
    return p;
}

void hf_pattern_free(HfPattern *p) {
    if (!p) return;
    pcre2_match_data_free(p->match);
    pcre2_code_free(p->code);
    free(p->literal);
    free(p);
}

static int utf8_len_at(const char *s, size_t len, size_t i) {
    if (i >= len) return 1;
    unsigned char c = (unsigned char)s[i];
    int k = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    return i + (size_t)k <= len ? k : 1;
}

void hf_pattern_events(HfPattern *p, const char *s, size_t len, HfEvent event, void *ctx) {
    if (len == 0) {
        event(ctx, 0, 0, 0);
        return;
    }
    size_t prev = 0;
    if (p->literal) {
        const char *at = s, *end = s + len;
        while ((at = memmem(at, (size_t)(end - at), p->literal, p->literal_len))) {
            size_t st = (size_t)(at - s);
            if (st != prev) event(ctx, prev, st, 0);
            event(ctx, st, st + p->literal_len, 1);
            prev = st + p->literal_len;
            at += p->literal_len;
        }
    } else {
        size_t last_end = 0, last_match_end = SIZE_MAX;
        while (last_end <= len) {
            int rc = p->jit ? pcre2_jit_match(p->code, (PCRE2_SPTR)s, len, last_end, 0,
                                              p->match, NULL)
                            : pcre2_match(p->code, (PCRE2_SPTR)s, len, last_end,
                                          PCRE2_NO_UTF_CHECK, p->match, NULL);
            if (rc < 0) break;
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(p->match);
            size_t st = ov[0], en = ov[1];
            if (st == en && last_match_end == en) { /* onig's FindMatches: step one character */
                last_end += (size_t)utf8_len_at(s, len, last_end);
                continue;
            }
            last_end = en;
            last_match_end = en;
            if (st != prev) event(ctx, prev, st, 0);
            event(ctx, st, en, 1);
            prev = en;
        }
    }
    if (prev != len) event(ctx, prev, len, 0);
}

/* ------------------------------------------------------ character classes */

int hf_is_whitespace(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

/* The numbers of Unicode 16 that utf8proc's Unicode 15 does not know
 * (a subset of N_EXTRA, which lists those PCRE2 10.42 lacks). */
static int numeric_extra(uint32_t c) {
    static const uint32_t ranges[][2] = {
        {0x10D40, 0x10D49}, {0x116D0, 0x116E3}, {0x11BF0, 0x11BF9}, {0x16130, 0x16139},
        {0x16D70, 0x16D79}, {0x1CCF0, 0x1CCF9}, {0x1E5F1, 0x1E5FA}};
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++)
        if (c >= ranges[i][0] && c <= ranges[i][1]) return 1;
    return 0;
}

int hf_is_numeric(uint32_t c) {
    if (c < 0x80) return c >= '0' && c <= '9';
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL ||
           k == UTF8PROC_CATEGORY_NO || numeric_extra(c);
}

int hf_is_punctuation(uint32_t c) {
    if (c < 0x80) return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) ||
                         (c >= 0x5B && c <= 0x60) || (c >= 0x7B && c <= 0x7E);
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO;
}

int hf_is_word(uint32_t c) {
    if (c < 0x80)
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
               c == '_';
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    if ((k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_ME) || k == UTF8PROC_CATEGORY_ND ||
        k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_PC)
        return 1;
    /* Join_Control, and the Other_Alphabetic symbols (circled and squared letters) */
    return c == 0x200C || c == 0x200D || (c >= 0x24B6 && c <= 0x24E9) ||
           (c >= 0x1F130 && c <= 0x1F149) || (c >= 0x1F150 && c <= 0x1F169) ||
           (c >= 0x1F170 && c <= 0x1F189);
}

/* ------------------------------------------------------------ UTF-8 repair */

/* The length of the maximal subpart at s (not a well-formed character): the
 * lead byte and the continuation bytes that could still have completed it. */
static size_t maximal_subpart(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    int need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c >= 0xE0 && c <= 0xEF) need = 2, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4) need = 3, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else return 1;
    size_t k = 1;
    for (int i = 0; i < need && k < n; i++, k++) {
        unsigned char b = s[k];
        if (i == 0 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) break;
    }
    return k;
}

char *tokjson_lossy_utf8(const char *s, size_t n, size_t *out_len) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    uint32_t cp;
    while (i < n) { /* fast scan: most text is well-formed */
        if (u[i] < 0x80) { i++; continue; }
        int k = utf8_decode(u + i, n - i, &cp);
        if (k == 0) break;
        i += (size_t)k;
    }
    if (i == n) return NULL;
    Buf out = {0};
    put(&out, s, i);
    while (i < n) {
        int k = u[i] < 0x80 ? 1 : utf8_decode(u + i, n - i, &cp);
        if (k > 0) {
            put(&out, s + i, (size_t)k);
            i += (size_t)k;
        } else {
            put(&out, "\xEF\xBF\xBD", 3);
            i += maximal_subpart(u + i, n - i);
        }
    }
    *out_len = out.len;
    return out.s;
}
