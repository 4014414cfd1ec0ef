/* data/jinja_value.c — the template interpreter's values and the Python
 * behaviour they must reproduce: truth, ==, ordering, str(), repr() and
 * json.dumps (transformers' tojson), plus the arena that holds them.
 *
 * Values follow Python as Jinja hands them to templates: bool is a number
 * (True == 1, True + 1 == 2), 1 == 1.0, a list never equals a tuple, dicts
 * compare as mappings, strings compare by code point (UTF-8 byte order is the
 * same). Printing follows CPython: floats by the shortest repr that reads back
 * (format 'r': fixed from 1e-4 to 1e16, else exponent), strings in repr() with
 * the quote CPython picks and its escapes, containers as repr() of their items.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/jinja_impl.h"
#include "util/util.h"

/* ---- arena ---- */
struct ArenaBlock {
    ArenaBlock *next;
    size_t used, cap, pad; /* 32 bytes, so data stays 16-byte aligned */
    char data[];
};
#define ARENA_BLOCK ((size_t)64 * 1024)

void *ar_alloc(Arena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    ArenaBlock *b = a->head;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > ARENA_BLOCK ? n : ARENA_BLOCK;
        if (a->limit && a->total + cap > a->limit && a->on_limit) a->on_limit(a->on_limit_arg);
        ArenaBlock *nb = xmalloc(sizeof *nb + cap);
        a->total += cap;
        nb->cap = cap;
        nb->used = 0;
        if (b && n > ARENA_BLOCK / 4) {
            /* a big one gets a block of its own behind the head, whose free
             * space stays in use */
            nb->next = b->next;
            b->next = nb;
            nb->used = n;
            memset(nb->data, 0, n);
            return nb->data;
        }
        nb->next = b;
        a->head = nb;
        b = nb;
    }
    void *p = b->data + b->used;
    b->used += n;
    memset(p, 0, n);
    return p;
}

char *ar_strndup(Arena *a, const char *s, size_t n) {
    char *p = ar_alloc(a, n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void ar_free_all(Arena *a) {
    ArenaBlock *b = a->head;
    while (b) {
        ArenaBlock *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
    a->total = 0;
}

/* ---- byte strings ---- */
void buf_put(Buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = ar_alloc(b->a, cap);
        if (b->n) memcpy(p, b->p, b->n);
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

void buf_puts(Buf *b, const char *s) { buf_put(b, s, strlen(s)); }
void buf_putc(Buf *b, char c) { buf_put(b, &c, 1); }

void buf_printf(Buf *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) {
        buf_put(b, tmp, (size_t)n);
        return;
    }
    char *big = ar_alloc(b->a, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    buf_put(b, big, (size_t)n);
}

/* ---- code points ---- */
size_t utf8_count(const char *p, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += ((unsigned char)p[i] & 0xC0) != 0x80;
    return k;
}

size_t utf8_offset(const char *p, size_t n, size_t k) {
    size_t i = 0;
    while (i < n && k > 0) {
        i++;
        while (i < n && ((unsigned char)p[i] & 0xC0) == 0x80) i++;
        k--;
    }
    return i;
}

uint32_t utf8_at(const char *p, size_t n, size_t *len) {
    const unsigned char *s = (const unsigned char *)p;
    if (n == 0) { *len = 0; return 0; }
    if (s[0] < 0x80) { *len = 1; return s[0]; }
    int k = s[0] >= 0xF0 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC0 ? 2 : 1;
    if ((size_t)k > n || k == 1) { *len = 1; return s[0]; }
    uint32_t cp = s[0] & (0x7F >> k);
    for (int i = 1; i < k; i++) cp = (cp << 6) | (s[i] & 0x3F);
    *len = (size_t)k;
    return cp;
}

void utf8_put(Buf *b, uint32_t cp) {
    char t[4];
    size_t n;
    if (cp < 0x80) { t[0] = (char)cp; n = 1; }
    else if (cp < 0x800) { t[0] = (char)(0xC0 | (cp >> 6)); t[1] = (char)(0x80 | (cp & 0x3F)); n = 2; }
    else if (cp < 0x10000) {
        t[0] = (char)(0xE0 | (cp >> 12)); t[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        t[2] = (char)(0x80 | (cp & 0x3F)); n = 3;
    } else {
        t[0] = (char)(0xF0 | (cp >> 18)); t[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        t[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); t[3] = (char)(0x80 | (cp & 0x3F)); n = 4;
    }
    buf_put(b, t, n);
}

/* ---- construction ---- */
Jv jv_none(void) { return (Jv){.kind = JV_NONE}; }
Jv jv_bool(int b) { return (Jv){.kind = JV_BOOL, .b = !!b}; }
Jv jv_int(int64_t i) { return (Jv){.kind = JV_INT, .i = i}; }
Jv jv_float(double f) { return (Jv){.kind = JV_FLOAT, .f = f}; }
Jv jv_str(const char *p, size_t n) { return (Jv){.kind = JV_STR, .s = {p, n}}; }
Jv jv_cstr(const char *s) { return jv_str(s, strlen(s)); }
Jv jv_undef(const char *why) { return (Jv){.kind = JV_UNDEF, .s = {why, why ? strlen(why) : 0}}; }

Jv jv_list(Arena *a, size_t cap) {
    JList *l = ar_alloc(a, sizeof *l);
    l->cap = cap;
    l->v = cap ? ar_alloc(a, cap * sizeof(Jv)) : NULL;
    return (Jv){.kind = JV_LIST, .list = l};
}

Jv jv_dict(Arena *a, size_t cap) {
    JDict *d = ar_alloc(a, sizeof *d);
    d->cap = cap;
    d->k = cap ? ar_alloc(a, cap * sizeof(Jv)) : NULL;
    d->v = cap ? ar_alloc(a, cap * sizeof(Jv)) : NULL;
    return (Jv){.kind = JV_DICT, .dict = d};
}

uint32_t jv_depth(Jv v) {
    if (v.kind == JV_LIST) return v.list->depth;
    if (v.kind == JV_DICT || v.kind == JV_NS) return v.dict->depth;
    return 0;
}

void list_push(Arena *a, JList *l, Jv v) {
    uint32_t d = v.kind == JV_LIST || v.kind == JV_DICT || v.kind == JV_NS ? jv_depth(v) + 1 : 0;
    if (d > l->depth) l->depth = d;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        Jv *nv = ar_alloc(a, cap * sizeof(Jv));
        if (l->n) memcpy(nv, l->v, l->n * sizeof(Jv));
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = v;
}

static size_t dict_find(const JDict *d, Jv key) {
    if (key.kind == JV_STR) {
        for (size_t i = 0; i < d->n; i++)
            if (d->k[i].kind == JV_STR && d->k[i].s.n == key.s.n &&
                memcmp(d->k[i].s.p, key.s.p, key.s.n) == 0)
                return i;
        return d->n;
    }
    for (size_t i = 0; i < d->n; i++)
        if (jv_equal(d->k[i], key)) return i;
    return d->n;
}

void dict_set(Arena *a, JDict *d, Jv key, Jv val) {
    uint32_t depth = val.kind == JV_LIST || val.kind == JV_DICT || val.kind == JV_NS ? jv_depth(val) + 1 : 0;
    if (key.kind == JV_LIST && key.list->depth + 1 > depth) depth = key.list->depth + 1;
    if (depth > d->depth) d->depth = depth;
    size_t i = dict_find(d, key);
    if (i < d->n) {
        d->v[i] = val;
        return;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 4;
        Jv *nk = ar_alloc(a, cap * sizeof(Jv)), *nv = ar_alloc(a, cap * sizeof(Jv));
        if (d->n) {
            memcpy(nk, d->k, d->n * sizeof(Jv));
            memcpy(nv, d->v, d->n * sizeof(Jv));
        }
        d->k = nk;
        d->v = nv;
        d->cap = cap;
    }
    d->k[d->n] = key;
    d->v[d->n] = val;
    d->n++;
}

Jv *dict_get(const JDict *d, Jv key) {
    size_t i = dict_find(d, key);
    return i < d->n ? &d->v[i] : NULL;
}

Jv *dict_get_str(const JDict *d, const char *key) { return dict_get(d, jv_cstr(key)); }

Jv jv_from_json(Arena *a, json_t *j) {
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        Jv d = jv_dict(a, json_object_size(j));
        const char *k;
        json_t *v;
        json_object_foreach(j, k, v) dict_set(a, d.dict, jv_cstr(k), jv_from_json(a, v));
        return d;
    }
    case JSON_ARRAY: {
        Jv l = jv_list(a, json_array_size(j));
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v) list_push(a, l.list, jv_from_json(a, v));
        return l;
    }
    case JSON_STRING: return jv_str(json_string_value(j), json_string_length(j));
    case JSON_INTEGER: return jv_int((int64_t)json_integer_value(j));
    case JSON_REAL: return jv_float(json_real_value(j));
    case JSON_TRUE: return jv_bool(1);
    case JSON_FALSE: return jv_bool(0);
    default: return jv_none();
    }
}

/* ---- truth, equality, order ---- */
int jv_truthy(Jv v) {
    switch (v.kind) {
    case JV_UNDEF: case JV_NONE: case JV_ABSENT: return 0;
    case JV_BOOL: return v.b;
    case JV_INT: return v.i != 0;
    case JV_FLOAT: return v.f != 0.0;
    case JV_STR: return v.s.n > 0;
    case JV_LIST: return v.list->n > 0;
    case JV_DICT: return v.dict->n > 0;
    default: return 1;
    }
}

static int is_number(Jv v) { return v.kind == JV_BOOL || v.kind == JV_INT || v.kind == JV_FLOAT; }

/* -1, 0, 1 for two numbers, exact across int and float as Python is; 2 when
 * unordered (a NaN). */
static int num_cmp(Jv a, Jv b) {
    if (a.kind != JV_FLOAT && b.kind != JV_FLOAT) {
        int64_t x = a.kind == JV_BOOL ? a.b : a.i, y = b.kind == JV_BOOL ? b.b : b.i;
        return (x > y) - (x < y);
    }
    if (a.kind == JV_FLOAT && b.kind == JV_FLOAT) {
        if (isnan(a.f) || isnan(b.f)) return 2;
        return (a.f > b.f) - (a.f < b.f);
    }
    int swap = a.kind != JV_FLOAT; /* make a the float */
    double f = swap ? b.f : a.f;
    int64_t i = swap ? (a.kind == JV_BOOL ? a.b : a.i) : (b.kind == JV_BOOL ? b.b : b.i);
    int r;
    if (isnan(f)) return 2;
    if (f >= 9223372036854775808.0) r = 1;
    else if (f < -9223372036854775808.0) r = -1;
    else {
        double fl = floor(f);
        int64_t fi = (int64_t)fl;
        if (fi != i) r = fi > i ? 1 : -1;
        else r = f > fl ? 1 : 0;
    }
    return swap ? -r : r;
}

int jv_equal(Jv a, Jv b) {
    if (is_number(a) && is_number(b)) return num_cmp(a, b) == 0;
    if (a.kind != b.kind) return 0;
    switch (a.kind) {
    case JV_UNDEF: case JV_NONE: return 1;
    case JV_STR: return a.s.n == b.s.n && memcmp(a.s.p, b.s.p, a.s.n) == 0;
    case JV_LIST:
        if (a.tuple != b.tuple || a.list->n != b.list->n) return 0;
        for (size_t i = 0; i < a.list->n; i++)
            if (!jv_equal(a.list->v[i], b.list->v[i])) return 0;
        return 1;
    case JV_DICT:
        if (a.dict->n != b.dict->n) return 0;
        for (size_t i = 0; i < a.dict->n; i++) {
            Jv *o = dict_get(b.dict, a.dict->k[i]);
            if (!o || !jv_equal(a.dict->v[i], *o)) return 0;
        }
        return 1;
    case JV_NS: return a.dict == b.dict;
    case JV_MACRO: return a.macro == b.macro;
    case JV_LOOP: return a.loop == b.loop;
    case JV_FUNC: return a.func == b.func;
    default: return 0;
    }
}

int jv_compare(Jv a, Jv b) {
    if (is_number(a) && is_number(b)) return num_cmp(a, b);
    if (a.kind == JV_STR && b.kind == JV_STR) {
        size_t n = a.s.n < b.s.n ? a.s.n : b.s.n;
        int r = memcmp(a.s.p, b.s.p, n);
        if (r) return r < 0 ? -1 : 1;
        return (a.s.n > b.s.n) - (a.s.n < b.s.n);
    }
    if (a.kind == JV_LIST && b.kind == JV_LIST && a.tuple == b.tuple) {
        size_t n = a.list->n < b.list->n ? a.list->n : b.list->n;
        for (size_t i = 0; i < n; i++)
            if (!jv_equal(a.list->v[i], b.list->v[i])) return jv_compare(a.list->v[i], b.list->v[i]);
        return (a.list->n > b.list->n) - (a.list->n < b.list->n);
    }
    return 2;
}

const char *jv_type_name(Jv v) {
    switch (v.kind) {
    case JV_UNDEF: return "Undefined";
    case JV_NONE: return "NoneType";
    case JV_BOOL: return "bool";
    case JV_INT: return "int";
    case JV_FLOAT: return "float";
    case JV_STR: return "str";
    case JV_LIST: return v.tuple == 1 ? "tuple" : v.tuple == 2 ? "dict_items"
                         : v.tuple == 3 ? "dict_keys" : v.tuple == 4 ? "dict_values" : "list";
    case JV_DICT: return "dict";
    case JV_NS: return "Namespace";
    case JV_MACRO: return "Macro";
    case JV_FUNC: return "function";
    case JV_METHOD: return "builtin_function_or_method";
    case JV_LOOP: return "LoopContext";
    default: return "argument";
    }
}

/* ---- printing ---- */
void write_float_repr(Buf *b, double f) {
    if (isnan(f)) { buf_puts(b, "nan"); return; }
    if (isinf(f)) { buf_puts(b, f < 0 ? "-inf" : "inf"); return; }
    char tmp[48];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, f);
        if (strtod(tmp, NULL) == f) break;
    }
    /* tmp is [-]d[.ddd]e[+-]XX: its digits and decimal exponent */
    char digits[24];
    size_t nd = 0;
    const char *p = tmp;
    int neg = *p == '-';
    if (neg) p++;
    for (; *p && *p != 'e'; p++)
        if (*p != '.') digits[nd++] = *p;
    int exp = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    if (neg) buf_putc(b, '-');
    if (exp >= -4 && exp < 16) {
        if (exp >= 0) {
            for (int i = 0; i <= exp; i++) buf_putc(b, (size_t)i < nd ? digits[i] : '0');
            buf_putc(b, '.');
            if ((size_t)exp + 1 < nd) buf_put(b, digits + exp + 1, nd - (size_t)exp - 1);
            else buf_putc(b, '0');
        } else {
            buf_puts(b, "0.");
            for (int i = 0; i < -exp - 1; i++) buf_putc(b, '0');
            buf_put(b, digits, nd);
        }
    } else {
        buf_putc(b, digits[0]);
        if (nd > 1) {
            buf_putc(b, '.');
            buf_put(b, digits + 1, nd - 1);
        }
        buf_printf(b, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    }
}

static void write_str_repr(Buf *b, const char *p, size_t n) {
    int has_single = memchr(p, '\'', n) != NULL, has_double = memchr(p, '"', n) != NULL;
    char quote = has_single && !has_double ? '"' : '\'';
    buf_putc(b, quote);
    size_t i = 0;
    while (i < n) {
        size_t len;
        uint32_t cp = utf8_at(p + i, n - i, &len);
        if (cp == (uint32_t)quote || cp == '\\') { buf_putc(b, '\\'); buf_putc(b, (char)cp); }
        else if (cp == '\t') buf_puts(b, "\\t");
        else if (cp == '\n') buf_puts(b, "\\n");
        else if (cp == '\r') buf_puts(b, "\\r");
        else if (cp < 0x20 || cp == 0x7F) buf_printf(b, "\\x%02x", (unsigned)cp);
        else if (cp < 0x7F || py_isprintable(cp)) buf_put(b, p + i, len);
        else if (cp <= 0xFF) buf_printf(b, "\\x%02x", (unsigned)cp);
        else if (cp <= 0xFFFF) buf_printf(b, "\\u%04x", (unsigned)cp);
        else buf_printf(b, "\\U%08x", (unsigned)cp);
        i += len;
    }
    buf_putc(b, quote);
}

static void write_common(Buf *b, Jv v, int repr) {
    switch (v.kind) {
    case JV_UNDEF: case JV_ABSENT: if (repr) buf_puts(b, "Undefined"); return;
    case JV_NONE: buf_puts(b, "None"); return;
    case JV_BOOL: buf_puts(b, v.b ? "True" : "False"); return;
    case JV_INT: buf_printf(b, "%lld", (long long)v.i); return;
    case JV_FLOAT: write_float_repr(b, v.f); return;
    case JV_STR:
        if (repr) write_str_repr(b, v.s.p, v.s.n);
        else buf_put(b, v.s.p, v.s.n);
        return;
    case JV_LIST:
        if (v.tuple > 1) {
            buf_puts(b, jv_type_name(v));
            buf_putc(b, '(');
        }
        buf_putc(b, v.tuple == 1 ? '(' : '[');
        for (size_t i = 0; i < v.list->n; i++) {
            if (i) buf_puts(b, ", ");
            jv_write_repr(b, v.list->v[i]);
        }
        if (v.tuple == 1 && v.list->n == 1) buf_putc(b, ',');
        buf_putc(b, v.tuple == 1 ? ')' : ']');
        if (v.tuple > 1) buf_putc(b, ')');
        return;
    case JV_DICT: case JV_NS:
        if (v.kind == JV_NS) buf_puts(b, "<Namespace ");
        buf_putc(b, '{');
        for (size_t i = 0; i < v.dict->n; i++) {
            if (i) buf_puts(b, ", ");
            jv_write_repr(b, v.dict->k[i]);
            buf_puts(b, ": ");
            jv_write_repr(b, v.dict->v[i]);
        }
        buf_putc(b, '}');
        if (v.kind == JV_NS) buf_putc(b, '>');
        return;
    case JV_MACRO: buf_printf(b, "<Macro '%s'>", v.macro->name); return;
    case JV_FUNC: buf_printf(b, "<function %s>", GLOBAL_NAMES[v.func]); return;
    case JV_METHOD:
        buf_printf(b, "<built-in method %s of %s object>", v.method->name,
                   jv_type_name(v.method->self));
        return;
    case JV_LOOP:
        buf_printf(b, "<LoopContext %zu/%zu>", v.loop->index0 + 1, v.loop->items->n);
        return;
    }
}

void jv_write_str(Buf *b, Jv v) { write_common(b, v, 0); }
void jv_write_repr(Buf *b, Jv v) { write_common(b, v, 1); }

Jv jv_to_str(Arena *a, Jv v) {
    if (v.kind == JV_STR) return v;
    Buf b = {.a = a};
    jv_write_str(&b, v);
    return jv_str(b.n ? b.p : "", b.n);
}

/* ---- json.dumps ---- */
static void json_str_out(Buf *b, const char *p, size_t n, int ensure_ascii) {
    buf_putc(b, '"');
    size_t i = 0;
    while (i < n) {
        size_t len;
        uint32_t cp = utf8_at(p + i, n - i, &len);
        switch (cp) {
        case '"': buf_puts(b, "\\\""); break;
        case '\\': buf_puts(b, "\\\\"); break;
        case '\n': buf_puts(b, "\\n"); break;
        case '\r': buf_puts(b, "\\r"); break;
        case '\t': buf_puts(b, "\\t"); break;
        case '\b': buf_puts(b, "\\b"); break;
        case '\f': buf_puts(b, "\\f"); break;
        default:
            if (cp < 0x20 || (ensure_ascii && cp == 0x7F)) buf_printf(b, "\\u%04x", (unsigned)cp);
            else if (ensure_ascii && cp > 0x7F) {
                if (cp >= 0x10000) {
                    uint32_t v = cp - 0x10000;
                    buf_printf(b, "\\u%04x\\u%04x", 0xD800 + (unsigned)(v >> 10),
                               0xDC00 + (unsigned)(v & 0x3FF));
                } else {
                    buf_printf(b, "\\u%04x", (unsigned)cp);
                }
            } else {
                buf_put(b, p + i, len);
            }
        }
        i += len;
    }
    buf_putc(b, '"');
}

static void json_float(Buf *b, double f) {
    if (isnan(f)) buf_puts(b, "NaN");
    else if (isinf(f)) buf_puts(b, f < 0 ? "-Infinity" : "Infinity");
    else write_float_repr(b, f);
}

static void json_newline(Buf *b, const JsonStyle *st, int level) {
    buf_putc(b, '\n');
    for (int i = 0; i < level; i++) {
        if (st->indent_str) buf_puts(b, st->indent_str);
        else for (int k = 0; k < st->indent; k++) buf_putc(b, ' ');
    }
}

/* A dict key as json.dumps writes it: 0, or -1 when of a type it refuses. */
static int json_key(Buf *b, Jv k, const JsonStyle *st) {
    switch (k.kind) {
    case JV_STR: json_str_out(b, k.s.p, k.s.n, st->ensure_ascii); return 0;
    case JV_BOOL: buf_puts(b, k.b ? "\"true\"" : "\"false\""); return 0;
    case JV_NONE: buf_puts(b, "\"null\""); return 0;
    case JV_INT: buf_printf(b, "\"%lld\"", (long long)k.i); return 0;
    case JV_FLOAT: buf_putc(b, '"'); json_float(b, k.f); buf_putc(b, '"'); return 0;
    default: return -1;
    }
}

int jv_write_json(Buf *b, Jv v, const JsonStyle *st, int level, const char **why) {
    int pretty = st->indent >= 0 || st->indent_str;
    switch (v.kind) {
    case JV_NONE: buf_puts(b, "null"); return 0;
    case JV_BOOL: buf_puts(b, v.b ? "true" : "false"); return 0;
    case JV_INT: buf_printf(b, "%lld", (long long)v.i); return 0;
    case JV_FLOAT: json_float(b, v.f); return 0;
    case JV_STR: json_str_out(b, v.s.p, v.s.n, st->ensure_ascii); return 0;
    case JV_LIST:
        if (v.tuple > 1) { *why = jv_type_name(v); return -1; }
        if (v.list->n == 0) { buf_puts(b, "[]"); return 0; }
        buf_putc(b, '[');
        for (size_t i = 0; i < v.list->n; i++) {
            if (i) buf_puts(b, st->item_sep);
            if (pretty) json_newline(b, st, level + 1);
            if (jv_write_json(b, v.list->v[i], st, level + 1, why)) return -1;
        }
        if (pretty) json_newline(b, st, level);
        buf_putc(b, ']');
        return 0;
    case JV_DICT: {
        if (v.dict->n == 0) { buf_puts(b, "{}"); return 0; }
        size_t n = v.dict->n;
        size_t *order = ar_alloc(b->a, n * sizeof *order);
        for (size_t i = 0; i < n; i++) order[i] = i;
        if (st->sort_keys) {
            /* insertion sort: stable, and dicts in templates are small */
            for (size_t i = 1; i < n; i++) {
                size_t x = order[i], j = i;
                while (j > 0) {
                    int c = jv_compare(v.dict->k[order[j - 1]], v.dict->k[x]);
                    if (c == 2) { *why = "sort_keys over keys of different types"; return -1; }
                    if (c <= 0) break;
                    order[j] = order[j - 1];
                    j--;
                }
                order[j] = x;
            }
        }
        buf_putc(b, '{');
        for (size_t i = 0; i < n; i++) {
            if (i) buf_puts(b, st->item_sep);
            if (pretty) json_newline(b, st, level + 1);
            if (json_key(b, v.dict->k[order[i]], st)) {
                const char *type = jv_type_name(v.dict->k[order[i]]);
                char *msg = ar_alloc(b->a, strlen(type) + 64);
                sprintf(msg, "keys must be str, int, float, bool or None, not %s", type);
                *why = msg;
                return -1;
            }
            buf_puts(b, st->key_sep);
            if (jv_write_json(b, v.dict->v[order[i]], st, level + 1, why)) return -1;
        }
        if (pretty) json_newline(b, st, level);
        buf_putc(b, '}');
        return 0;
    }
    default:
        *why = jv_type_name(v);
        return -1;
    }
}
