/* eval/answer.c — answer extraction by spec (see answer.h). Every spec is a
 * list of PCRE2 patterns tried in order; the first that matches anywhere
 * gives the answer, read from its last match. last-number then normalizes the
 * number's text so that equal values compare equal as strings (exact, unlike
 * a round trip through double). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "eval/answer.h"

#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

#define MAX_RULES 4

typedef enum { SPEC_WHOLE, SPEC_REGEX, SPEC_LAST_NUMBER, SPEC_OPTION } SpecKind;

struct AnswerSpec {
    SpecKind kind;
    char *text;
    int n_rules;
    pcre2_code *rules[MAX_RULES];
    int groups[MAX_RULES];
};

static const char WS[] = " \t\n\v\f\r";

static char *strip_copy(const char *s, size_t n) {
    while (n > 0 && strchr(WS, s[0])) s++, n--;
    while (n > 0 && strchr(WS, s[n - 1])) n--;
    char *out = xmalloc(n + 1);
    memcpy(out, s, n);
    out[n] = '\0';
    return out;
}

/* Compiles rule i of s; -1 with the error set (the spec named, the offset in
 * the pattern). */
static int add_rule(AnswerSpec *s, const char *pattern) {
    int code;
    PCRE2_SIZE at;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &code, &at, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return err_set("answer spec '%s': the regex does not compile: %s at offset %zu of "
                       "the pattern; fix the pattern (PCRE2 syntax)",
                       s->text, (const char *)msg, (size_t)at);
    }
    uint32_t groups = 0;
    pcre2_pattern_info(re, PCRE2_INFO_CAPTURECOUNT, &groups);
    s->groups[s->n_rules] = (int)groups;
    s->rules[s->n_rules++] = re;
    return 0;
}

/* option[:X-Y]: the letter class, e.g. "A-E"; -1 with the error set. */
static int option_letters(const char *spec, char cls[4]) {
    const char *r = spec + strlen("option");
    if (!*r) {
        memcpy(cls, "A-E", 4);
        return 0;
    }
    if (r[0] == ':' && strlen(r) == 4 && r[1] >= 'A' && r[1] <= 'Z' && r[2] == '-' &&
        r[3] >= 'A' && r[3] <= 'Z' && r[1] <= r[3]) {
        cls[0] = r[1], cls[1] = '-', cls[2] = r[3], cls[3] = 0;
        return 0;
    }
    return err_set("answer spec '%s': option takes a range of capital letters, as "
                   "option:A-J (the default is A-E)",
                   spec);
}

AnswerSpec *answer_spec_parse(const char *spec) {
    AnswerSpec *s = xcalloc(1, sizeof *s);
    s->text = xstrdup(spec ? spec : "");
    int rc = 0;
    if (!strcmp(s->text, "whole")) {
        s->kind = SPEC_WHOLE;
    } else if (!strncmp(s->text, "regex:", 6)) {
        s->kind = SPEC_REGEX;
        if (!s->text[6]) rc = err_set("answer spec 'regex:' has no pattern; give regex:RE");
        else rc = add_rule(s, s->text + 6);
    } else if (!strcmp(s->text, "last-number")) {
        s->kind = SPEC_LAST_NUMBER;
        rc = add_rule(s, "(?:(?<![\\w)])[-+])?(?:(?:\\d{1,3}(?:,\\d{3})+(?!\\d)|\\d+)(?:\\.\\d+)?"
                         "|\\.\\d+)");
    } else if (!strncmp(s->text, "option", 6) && (s->text[6] == 0 || s->text[6] == ':')) {
        s->kind = SPEC_OPTION;
        char L[4], p[4][200];
        rc = option_letters(s->text, L);
        snprintf(p[0], sizeof p[0],
                 "(?i:answer)\\s*(?:(?i:is)\\b\\s*:?\\s*|:\\s*)?"
                 "(?:\\(\\s*([%s])\\s*\\)|([%s])(?![A-Za-z0-9]))", L, L);
        snprintf(p[1], sizeof p[1], "\\(\\s*([%s])\\s*\\)", L);
        snprintf(p[2], sizeof p[2], "\\A\\s*([%s])[.):]?\\s*\\z", L);
        snprintf(p[3], sizeof p[3], "(?<![A-Za-z0-9])([%s])[).:](?![A-Za-z0-9])", L);
        for (int i = 0; i < 4 && rc == 0; i++) rc = add_rule(s, p[i]);
    } else {
        rc = err_set("unknown answer spec '%s'; expected whole, regex:RE (PCRE2, the last "
                     "match's first group), last-number or option[:A-E]",
                     s->text);
    }
    if (rc != 0) {
        answer_spec_free(s);
        return NULL;
    }
    return s;
}

void answer_spec_free(AnswerSpec *s) {
    if (!s) return;
    for (int i = 0; i < s->n_rules; i++) pcre2_code_free(s->rules[i]);
    free(s->text);
    free(s);
}

const char *answer_spec_text(const AnswerSpec *s) { return s->text; }

/* "-001,234.500" -> "-1234.5"; "+0.0" -> "0". */
static char *normalize_number(const char *num) {
    int neg = num[0] == '-';
    if (num[0] == '-' || num[0] == '+') num++;
    size_t n = strlen(num);
    char *digits = xmalloc(n + 3), *d = digits;
    if (neg) *d++ = '-';
    char *int_start = d;
    const char *p = num;
    for (; *p && *p != '.'; p++)
        if (*p != ',') *d++ = *p;
    char *int_end = d;
    /* leading zeros of the integer part */
    char *q = int_start;
    while (q + 1 < int_end && *q == '0') q++;
    if (q == int_end) { /* ".5": no integer digits */
        *d++ = '0';
        int_end = d;
    } else if (q > int_start) {
        memmove(int_start, q, (size_t)(int_end - q));
        d = int_start + (int_end - q);
        int_end = d;
    }
    if (*p == '.') {
        const char *frac = p + 1;
        size_t k = strlen(frac);
        while (k > 0 && frac[k - 1] == '0') k--;
        if (k > 0) {
            *d++ = '.';
            memcpy(d, frac, k);
            d += k;
        }
    }
    *d = '\0';
    if (neg && !strcmp(digits, "-0")) memmove(digits, digits + 1, 2);
    return digits;
}

/* The last match of rule i in text: 1 with [*at, *at + *len) the first group
 * that took part (else the whole match), 0 when none, -1 on an engine error. */
static int last_match(const AnswerSpec *s, int i, const char *text, size_t *at, size_t *len) {
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(s->rules[i], NULL);
    size_t n = strlen(text), start = 0;
    int found = 0;
    while (start <= n) {
        int rc = pcre2_match(s->rules[i], (PCRE2_SPTR)text, n, start, 0, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            pcre2_match_data_free(md);
            return err_set("answer spec '%s': the regex engine failed on a text of %zu bytes: "
                           "%s; simplify the pattern",
                           s->text, n, (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        int g = 0;
        for (int k = 1; k <= s->groups[i] && k < rc; k++)
            if (ov[2 * k] != PCRE2_UNSET) {
                g = k;
                break;
            }
        *at = ov[2 * g];
        *len = ov[2 * g + 1] - ov[2 * g];
        found = 1;
        if (ov[1] > ov[0]) {
            start = ov[1];
        } else { /* an empty match: step over one character */
            start = ov[1] + 1;
            while (start < n && ((unsigned char)text[start] & 0xC0) == 0x80) start++;
        }
    }
    pcre2_match_data_free(md);
    return found;
}

int answer_spec_extract(const AnswerSpec *s, const char *text, char **out) {
    *out = NULL;
    if (s->kind == SPEC_WHOLE) {
        *out = strip_copy(text, strlen(text));
        return 1;
    }
    for (int i = 0; i < s->n_rules; i++) {
        size_t at = 0, len = 0;
        int rc = last_match(s, i, text, &at, &len);
        if (rc < 0) return -1;
        if (rc == 0) continue;
        char *a = strip_copy(text + at, len);
        if (s->kind == SPEC_LAST_NUMBER) {
            *out = normalize_number(a);
            free(a);
        } else {
            *out = a;
        }
        return 1;
    }
    return 0;
}

int answer_spec_match(const AnswerSpec *s, const char *prediction, const char *gold) {
    char *p = NULL, *g = NULL;
    int rp = answer_spec_extract(s, prediction, &p);
    if (rp <= 0) return rp;
    int rg = answer_spec_extract(s, gold, &g);
    if (rg < 0) {
        free(p);
        return -1;
    }
    if (rg == 0) g = strip_copy(gold, strlen(gold));
    int eq = strcmp(p, g) == 0;
    free(p);
    free(g);
    return eq;
}
