/* data/jinja_str.c — Python's str operations as templates reach them through
 * filters and methods: case mapping (upper, lower, title, capitalize, and
 * jinja2's own title filter), strip, split and rsplit (with and without a
 * separator, maxsplit), splitlines, replace (an empty old string included),
 * find, startswith/endswith, int() and float() of a string, and the printf-
 * style `fmt % args` (%s %r %a %d %i %u %x %X %o %f %F %e %E %g %G %c %%,
 * flags, width and precision; a mapping for %(name)s). Strings are UTF-8 and
 * positions, lengths and widths count code points, as Python's do.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/jinja_impl.h"
#include "util/util.h"

/* ---- argument helpers ---- */
int64_t int_arg(Ctx *c, const Node *at, const char *what, Jv v) {
    if (!is_intlike(v)) jfail(c, at, "%s must be an integer, not %s", what, jv_type_name(v));
    return as_int64(v);
}

Jv need_str(Ctx *c, const Node *at, const char *what, Jv v) {
    if (v.kind != JV_STR) jfail(c, at, "%s must be a string, not %s", what, jv_type_name(v));
    return v;
}

Jv mk_tuple2(Ctx *c, Jv a, Jv b) {
    Jv t = jv_list(AR(c), 2);
    t.tuple = 1;
    list_push(AR(c), t.list, a);
    list_push(AR(c), t.list, b);
    return t;
}

size_t len_of(Ctx *c, const Node *at, Jv v) {
    switch (v.kind) {
    case JV_STR: return utf8_count(v.s.p, v.s.n);
    case JV_LIST: return v.list->n;
    case JV_DICT: return v.dict->n;
    case JV_UNDEF: return 0;
    case JV_LOOP: return v.loop->items->n;
    default: jfail(c, at, "object of type '%s' has no len()", jv_type_name(v));
    }
}

/* ---- case and whitespace ---- */
Jv case_map(Ctx *c, const Node *at, Jv s, int mode) {
    Buf b = {.a = AR(c)};
    buf_put(&b, "", 0);
    size_t i = 0, len;
    while (i < s.s.n) {
        uint32_t cp = utf8_at(s.s.p + i, s.s.n - i, &len), out;
        const char *why;
        if (py_case_char(cp, mode, &out, &why))
            jfail(c, at, "changing the case of '%.*s' (U+%04X): %s", (int)len, s.s.p + i, (unsigned)cp, why);
        utf8_put(&b, out);
        i += len;
    }
    return jv_str(b.p, b.n);
}

/* str.capitalize(): first character titlecased, the rest lowercased */
Jv py_capitalize(Ctx *c, const Node *at, Jv s) {
    if (!s.s.n) return s;
    size_t len;
    utf8_at(s.s.p, s.s.n, &len);
    Jv head = case_map(c, at, jv_str(s.s.p, len), CASE_TITLE);
    Jv tail = case_map(c, at, jv_str(s.s.p + len, s.s.n - len), CASE_LOWER);
    return binop(c, at, OP_ADD, head, tail);
}

/* str.title(): titlecase after an uncased character, lowercase after a cased one */
Jv py_title(Ctx *c, const Node *at, Jv s) {
    Buf b = {.a = AR(c)};
    buf_put(&b, "", 0);
    size_t i = 0, len;
    int prev_cased = 0;
    while (i < s.s.n) {
        uint32_t cp = utf8_at(s.s.p + i, s.s.n - i, &len), out;
        const char *why;
        if (py_case_char(cp, prev_cased ? CASE_LOWER : CASE_TITLE, &out, &why))
            jfail(c, at, "changing the case of '%.*s' (U+%04X): %s", (int)len, s.s.p + i, (unsigned)cp, why);
        utf8_put(&b, out);
        prev_cased = py_iscased(cp);
        i += len;
    }
    return jv_str(b.p, b.n);
}

/* jinja2's title filter: each piece after a run of - whitespace ( { [ < gets
 * its first character uppercased and the rest lowercased */
Jv jinja_title(Ctx *c, const Node *at, Jv s) {
    Buf b = {.a = AR(c)};
    buf_put(&b, "", 0);
    size_t i = 0;
    while (i < s.s.n) {
        size_t len, j = i;
        int sep = 0;
        /* a separator run or a word: both become piece[0].upper() + piece[1:].lower() */
        while (j < s.s.n) {
            uint32_t cp = utf8_at(s.s.p + j, s.s.n - j, &len);
            int is_sep = py_isspace(cp) || cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<';
            if (j == i) sep = is_sep;
            else if (is_sep != sep) break;
            j += len;
        }
        utf8_at(s.s.p + i, s.s.n - i, &len);
        Jv head = case_map(c, at, jv_str(s.s.p + i, len), CASE_UPPER);
        Jv tail = case_map(c, at, jv_str(s.s.p + i + len, j - i - len), CASE_LOWER);
        buf_put(&b, head.s.p, head.s.n);
        buf_put(&b, tail.s.p, tail.s.n);
        i = j;
    }
    return jv_str(b.p, b.n);
}

static int has_char(Jv chars, uint32_t cp) {
    size_t i = 0, len;
    while (i < chars.s.n) {
        if (utf8_at(chars.s.p + i, chars.s.n - i, &len) == cp) return 1;
        i += len;
    }
    return 0;
}

/* str.strip/lstrip/rstrip with chars (a string) or whitespace (chars absent or None) */
Jv py_strip(Ctx *c, const Node *at, Jv s, Jv chars, int left, int right) {
    int ws = is_absent(chars) || chars.kind == JV_NONE;
    if (!ws) need_str(c, at, "strip's argument", chars);
    size_t a = 0, b = s.s.n, len;
    if (left)
        while (a < b) {
            uint32_t cp = utf8_at(s.s.p + a, b - a, &len);
            if (ws ? !py_isspace(cp) : !has_char(chars, cp)) break;
            a += len;
        }
    if (right)
        while (b > a) {
            size_t k = b - 1;
            while (k > a && ((unsigned char)s.s.p[k] & 0xC0) == 0x80) k--;
            uint32_t cp = utf8_at(s.s.p + k, b - k, &len);
            if (ws ? !py_isspace(cp) : !has_char(chars, cp)) break;
            b = k;
        }
    return jv_str(s.s.p + a, b - a);
}

/* str.split / rsplit */
Jv py_split(Ctx *c, const Node *at, Jv s, Jv sep, Jv maxsplit, int from_right) {
    int64_t max = is_absent(maxsplit) ? -1 : int_arg(c, at, "maxsplit", maxsplit);
    Jv out = jv_list(AR(c), 4);
    if (is_absent(sep) || sep.kind == JV_NONE) {
        /* runs of whitespace, no empty pieces */
        size_t n = s.s.n, len;
        if (!from_right) {
            size_t i = 0;
            while (1) {
                while (i < n && py_isspace(utf8_at(s.s.p + i, n - i, &len))) i += len;
                if (i >= n) break;
                if (max >= 0 && (int64_t)out.list->n == max) {
                    Jv rest = py_strip(c, at, jv_str(s.s.p + i, n - i), (Jv){.kind = JV_ABSENT}, 0, 1);
                    list_push(AR(c), out.list, rest);
                    break;
                }
                size_t j = i;
                while (j < n && !py_isspace(utf8_at(s.s.p + j, n - j, &len))) j += len;
                list_push(AR(c), out.list, jv_str(s.s.p + i, j - i));
                i = j;
            }
            return out;
        }
        /* from the right: collect reversed, then flip */
        size_t e = n;
        while (1) {
            while (e > 0) {
                size_t k = e - 1;
                while (k > 0 && ((unsigned char)s.s.p[k] & 0xC0) == 0x80) k--;
                if (!py_isspace(utf8_at(s.s.p + k, e - k, &len))) break;
                e = k;
            }
            if (e == 0) break;
            if (max >= 0 && (int64_t)out.list->n == max) {
                Jv rest = py_strip(c, at, jv_str(s.s.p, e), (Jv){.kind = JV_ABSENT}, 1, 0);
                list_push(AR(c), out.list, rest);
                break;
            }
            size_t b = e;
            while (b > 0) {
                size_t k = b - 1;
                while (k > 0 && ((unsigned char)s.s.p[k] & 0xC0) == 0x80) k--;
                if (py_isspace(utf8_at(s.s.p + k, b - k, &len))) break;
                b = k;
            }
            list_push(AR(c), out.list, jv_str(s.s.p + b, e - b));
            e = b;
        }
        for (size_t i = 0, j = out.list->n; i + 1 < j; i++, j--) {
            Jv t = out.list->v[i];
            out.list->v[i] = out.list->v[j - 1];
            out.list->v[j - 1] = t;
        }
        return out;
    }
    need_str(c, at, "the separator", sep);
    if (sep.s.n == 0) jfail(c, at, "empty separator");
    if (!from_right) {
        size_t i = 0;
        while (1) {
            const char *hit = max >= 0 && (int64_t)out.list->n == max
                                  ? NULL
                                  : memmem(s.s.p + i, s.s.n - i, sep.s.p, sep.s.n);
            if (!hit) {
                list_push(AR(c), out.list, jv_str(s.s.p + i, s.s.n - i));
                return out;
            }
            list_push(AR(c), out.list, jv_str(s.s.p + i, (size_t)(hit - s.s.p) - i));
            i = (size_t)(hit - s.s.p) + sep.s.n;
        }
    }
    size_t e = s.s.n;
    while (1) {
        size_t hit = (size_t)-1;
        if (!(max >= 0 && (int64_t)out.list->n == max))
            for (size_t k = e; k >= sep.s.n; k--)
                if (memcmp(s.s.p + k - sep.s.n, sep.s.p, sep.s.n) == 0) {
                    hit = k - sep.s.n;
                    break;
                }
        if (hit == (size_t)-1) {
            list_push(AR(c), out.list, jv_str(s.s.p, e));
            break;
        }
        list_push(AR(c), out.list, jv_str(s.s.p + hit + sep.s.n, e - hit - sep.s.n));
        e = hit;
    }
    for (size_t i = 0, j = out.list->n; i + 1 < j; i++, j--) {
        Jv t = out.list->v[i];
        out.list->v[i] = out.list->v[j - 1];
        out.list->v[j - 1] = t;
    }
    return out;
}

/* the line breaks of str.splitlines(): \n \r \r\n \v \f \x1c \x1d \x1e \x85 U+2028 U+2029 */
static int line_break(const char *p, size_t n, size_t *len) {
    uint32_t cp = utf8_at(p, n, len);
    if (cp == '\r' && n > 1 && p[1] == '\n') { *len = 2; return 1; }
    return cp == '\n' || cp == '\r' || cp == 0x0B || cp == 0x0C || cp == 0x1C || cp == 0x1D ||
           cp == 0x1E || cp == 0x85 || cp == 0x2028 || cp == 0x2029;
}

Jv py_splitlines(Ctx *c, Jv s, int keepends) {
    Jv out = jv_list(AR(c), 4);
    size_t i = 0, start = 0, len;
    while (i < s.s.n) {
        if (line_break(s.s.p + i, s.s.n - i, &len)) {
            list_push(AR(c), out.list, jv_str(s.s.p + start, (keepends ? i + len : i) - start));
            i += len;
            start = i;
        } else {
            i += len;
        }
    }
    if (start < s.s.n) list_push(AR(c), out.list, jv_str(s.s.p + start, s.s.n - start));
    return out;
}

Jv py_replace(Ctx *c, Jv s, Jv old, Jv new, int64_t count) {
    Buf b = {.a = AR(c)};
    buf_put(&b, "", 0);
    if (old.s.n == 0) {
        /* Python inserts new before every character and at the end */
        size_t i = 0, len;
        int64_t done = 0;
        while (1) {
            if (count < 0 || done < count) {
                buf_put(&b, new.s.p, new.s.n);
                done++;
            }
            if (i >= s.s.n) break;
            utf8_at(s.s.p + i, s.s.n - i, &len);
            buf_put(&b, s.s.p + i, len);
            i += len;
        }
        return jv_str(b.p, b.n);
    }
    size_t i = 0;
    int64_t done = 0;
    while (i <= s.s.n) {
        const char *hit = (count < 0 || done < count) ? memmem(s.s.p + i, s.s.n - i, old.s.p, old.s.n) : NULL;
        if (!hit) {
            buf_put(&b, s.s.p + i, s.s.n - i);
            break;
        }
        buf_put(&b, s.s.p + i, (size_t)(hit - s.s.p) - i);
        buf_put(&b, new.s.p, new.s.n);
        i = (size_t)(hit - s.s.p) + old.s.n;
        done++;
    }
    return jv_str(b.p, b.n);
}

int str_starts_with(Jv s, Jv p) { return p.s.n <= s.s.n && memcmp(s.s.p, p.s.p, p.s.n) == 0; }
int str_ends_with(Jv s, Jv p) {
    return p.s.n <= s.s.n && memcmp(s.s.p + s.s.n - p.s.n, p.s.p, p.s.n) == 0;
}

/* str.find / rfind in code points, over the whole string */
int64_t py_find(Jv s, Jv sub, int from_right) {
    const char *hit = NULL;
    if (!from_right) {
        hit = sub.s.n == 0 ? s.s.p : memmem(s.s.p, s.s.n, sub.s.p, sub.s.n);
    } else {
        for (size_t k = s.s.n + 1; k-- > 0;)
            if (k + sub.s.n <= s.s.n && memcmp(s.s.p + k, sub.s.p, sub.s.n) == 0) {
                hit = s.s.p + k;
                break;
            }
    }
    return hit ? (int64_t)utf8_count(s.s.p, (size_t)(hit - s.s.p)) : -1;
}

/* ---- str % args (printf-style formatting) ---- */
Jv str_percent_format(Ctx *c, const Node *at, Jv fmt, Jv args) {
    Buf b = {.a = AR(c)};
    buf_put(&b, "", 0);
    Jv *argv = &args;
    size_t argc = 1, next = 0;
    if (args.kind == JV_LIST && args.tuple == 1) {
        argv = args.list->v;
        argc = args.list->n;
    }
    int mapping = args.kind == JV_DICT;
    const char *p = fmt.s.p, *e = p + fmt.s.n;
    while (p < e) {
        if (*p != '%') {
            buf_putc(&b, *p++);
            continue;
        }
        p++;
        if (p < e && *p == '%') {
            buf_putc(&b, '%');
            p++;
            continue;
        }
        Jv v;
        if (p < e && *p == '(') {
            if (!mapping) jfail(c, at, "format requires a mapping");
            const char *k = ++p;
            while (p < e && *p != ')') p++;
            if (p >= e) jfail(c, at, "incomplete format key");
            Jv *got = dict_get(args.dict, jv_str(k, (size_t)(p - k)));
            if (!got) jfail(c, at, "KeyError: '%.*s'", (int)(p - k), k);
            v = *got;
            p++;
        } else {
            if (next >= argc) jfail(c, at, "not enough arguments for format string");
            v = argv[next++];
        }
        char spec[32] = "%";
        size_t sn = 1;
        while (p < e && strchr("-+ #0", *p) && sn < 8) spec[sn++] = *p++;
        /* width and precision: at most 5 digits each, far beyond any template's
         * need and small enough that nothing runs away */
        for (int part = 0; part < 2; part++) {
            if (part == 1) {
                if (p >= e || *p != '.') break;
                spec[sn++] = *p++;
            }
            int digits = 0;
            while (p < e && *p >= '0' && *p <= '9') {
                if (++digits > 5)
                    jfail(c, at, "a %s of over 99999 in %% formatting, which retort's template "
                                 "interpreter refuses", part ? "precision" : "width");
                spec[sn++] = *p++;
            }
        }
        if (p < e && *p == '*') jfail(c, at, "'*' widths in %% formatting: %s", NOT_IMPL);
        while (p < e && strchr("hlL", *p)) p++;
        if (p >= e) jfail(c, at, "incomplete format");
        char type = *p++;
        switch (type) {
        case 's': case 'r': case 'a': {
            Buf t = {.a = AR(c)};
            buf_put(&t, "", 0);
            if (type == 's') jv_write_str(&t, v);
            else jv_write_repr(&t, v);
            spec[sn++] = 's';
            spec[sn] = '\0';
            if (sn == 2) buf_put(&b, t.p, t.n);
            else if (strspn(spec + 1, "-0123456789") == sn - 2) {
                /* width pads by characters, not bytes */
                int left = spec[1] == '-';
                long width = strtol(spec + 1 + left, NULL, 10);
                size_t chars = utf8_count(t.p, t.n);
                if (!left) for (size_t k = chars; (long)k < width; k++) buf_putc(&b, ' ');
                buf_put(&b, t.p, t.n);
                if (left) for (size_t k = chars; (long)k < width; k++) buf_putc(&b, ' ');
            } else {
                jfail(c, at, "a precision in a %%s conversion: %s", NOT_IMPL);
            }
            break;
        }
        case 'd': case 'i': case 'u': case 'x': case 'X': case 'o': {
            int64_t x;
            if (is_intlike(v)) x = as_int64(v);
            else if (v.kind == JV_FLOAT && (type == 'd' || type == 'i' || type == 'u')) {
                if (!isfinite(v.f) || fabs(v.f) >= 9.2e18) jfail(c, at, "cannot convert float %g to integer", v.f);
                x = (int64_t)v.f;
            } else {
                jfail(c, at, "%%%c format: a real number is required, not %s", type, jv_type_name(v));
            }
            if (type == 'u') type = 'd';
            memcpy(spec + sn, "ll", 2);
            sn += 2;
            spec[sn++] = type;
            spec[sn] = '\0';
            buf_printf(&b, spec, (long long)x);
            break;
        }
        case 'f': case 'F': case 'e': case 'E': case 'g': case 'G': {
            double x;
            if (v.kind == JV_FLOAT) x = v.f;
            else if (is_intlike(v)) x = (double)as_int64(v);
            else jfail(c, at, "must be real number, not %s", jv_type_name(v));
            if (!memchr(spec, '.', sn) && (type == 'g' || type == 'G')) {
                /* Python's %g keeps 6 significant digits like C */
            }
            spec[sn++] = type;
            spec[sn] = '\0';
            buf_printf(&b, spec, x);
            break;
        }
        case 'c':
            if (v.kind == JV_STR && utf8_count(v.s.p, v.s.n) == 1) buf_put(&b, v.s.p, v.s.n);
            else if (is_intlike(v) && as_int64(v) >= 0 && as_int64(v) <= 0x10FFFF) utf8_put(&b, (uint32_t)as_int64(v));
            else jfail(c, at, "%%c requires an int or a single character");
            break;
        default: jfail(c, at, "unsupported format character '%c'", type);
        }
    }
    if (!mapping && next < argc && !(argc == 1 && args.kind != JV_LIST))
        jfail(c, at, "not all arguments converted during string formatting");
    if (!mapping && argc == 1 && args.kind != JV_LIST && next == 0 && args.kind != JV_DICT)
        jfail(c, at, "not all arguments converted during string formatting");
    return jv_str(b.p, b.n);
}

int parse_py_int(Jv s, int base, int64_t *out) {
    size_t i = 0, n = s.s.n, len;
    const char *p = s.s.p;
    while (i < n && py_isspace(utf8_at(p + i, n - i, &len))) i += len;
    while (n > i) {
        size_t k = n - 1;
        while (k > i && ((unsigned char)p[k] & 0xC0) == 0x80) k--;
        if (!py_isspace(utf8_at(p + k, n - k, &len))) break;
        n = k;
    }
    int neg = 0;
    if (i < n && (p[i] == '+' || p[i] == '-')) neg = p[i++] == '-';
    if (i + 1 < n && p[i] == '0') {
        char x = (char)(p[i + 1] | 32);
        int pb = x == 'x' ? 16 : x == 'o' ? 8 : x == 'b' ? 2 : 0;
        if (pb && (base == 0 || base == pb)) {
            base = pb;
            i += 2;
            if (i < n && p[i] == '_') i++;
        }
    }
    if (base == 0) base = 10;
    if (i >= n) return -1;
    uint64_t v = 0;
    int prev_us = 1;
    for (; i < n; i++) {
        if (p[i] == '_') {
            if (prev_us) return -1;
            prev_us = 1;
            continue;
        }
        int d = (p[i] >= '0' && p[i] <= '9') ? p[i] - '0'
                : ((p[i] | 32) >= 'a' && (p[i] | 32) <= 'z') ? (p[i] | 32) - 'a' + 10 : 99;
        if (d >= base) return -1;
        if (v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base) return -2;
        v = v * (uint64_t)base + (uint64_t)d;
        prev_us = 0;
    }
    if (prev_us) return -1;
    if (v > (uint64_t)INT64_MAX + (uint64_t)neg) return -2;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

/* Python's float(str): 0, or -1 when it is not a float literal */
int parse_py_float(Ctx *c, Jv s, double *out) {
    Jv t = py_strip(c, NULL, s, (Jv){.kind = JV_ABSENT}, 1, 1);
    char *tmp = ar_alloc(AR(c), t.s.n + 1);
    size_t m = 0;
    for (size_t i = 0; i < t.s.n; i++) {
        char ch = t.s.p[i];
        if (ch == '_') {
            if (i == 0 || i + 1 >= t.s.n || !(t.s.p[i - 1] >= '0' && t.s.p[i - 1] <= '9') ||
                !(t.s.p[i + 1] >= '0' && t.s.p[i + 1] <= '9'))
                return -1;
            continue;
        }
        if ((unsigned char)ch >= 0x80) return -1;
        tmp[m++] = ch;
    }
    tmp[m] = '\0';
    if (!m || strchr(tmp, 'x') || strchr(tmp, 'X') || strchr(tmp, 'p') || strchr(tmp, 'P')) return -1;
    char *end;
    *out = strtod(tmp, &end);
    return *end == '\0' ? 0 : -1;
}

/* str.islower() (upper 0) / str.isupper() (upper 1) of str(v) */
int py_str_case_test(Ctx *c, Jv v, int upper) {
    Jv s = str_of(c, v);
    size_t i = 0, len;
    int cased = 0;
    while (i < s.s.n) {
        uint32_t cp = utf8_at(s.s.p + i, s.s.n - i, &len);
        if (upper ? py_islower_char(cp) : py_isupper_char(cp)) return 0;
        if (py_iscased(cp)) cased = 1;
        i += len;
    }
    return cased;
}
