/* data/jinja_filters.c — the filters and tests templates call, each as
 * jinja2 3.1 defines it, and tojson as transformers overrides it
 * (json.dumps with ensure_ascii=False, indent, separators, sort_keys).
 *
 * Filters: abs attr capitalize center count d default dictsort first float
 *   format indent int items join last length list lower map max min reject
 *   rejectattr replace reverse round safe select selectattr sort string sum
 *   title tojson trim unique upper.
 * Tests: boolean callable defined divisibleby eq equalto escaped even false
 *   filter float ge greaterthan gt in integer iterable le lessthan lower lt
 *   mapping ne none number odd sameas sequence string test true undefined
 *   upper, and the operator spellings == != < <= > >=.
 * The rest of jinja2's filters (batch, escape, groupby, slice, truncate,
 * wordcount, wordwrap, ...) are refused by name when a template is parsed.
 * Attribute paths ("a.b.0") are read as jinja2's make_attrgetter reads them;
 * sorting is stable with strings compared case-insensitively unless asked.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/jinja_impl.h"
#include "util/util.h"

/* ---- filters ---- */
enum {
    F_ABS, F_ATTR, F_CAPITALIZE, F_CENTER, F_COUNT, F_D, F_DEFAULT, F_DICTSORT, F_FIRST, F_FLOAT,
    F_FORMAT, F_INDENT, F_INT, F_ITEMS, F_JOIN, F_LAST, F_LENGTH, F_LIST, F_LOWER, F_MAP, F_MAX,
    F_MIN, F_REJECT, F_REJECTATTR, F_REPLACE, F_REVERSE, F_ROUND, F_SAFE, F_SELECT, F_SELECTATTR,
    F_SORT, F_STRING, F_SUM, F_TITLE, F_TOJSON, F_TRIM, F_UNIQUE, F_UPPER, F_COUNT_ALL
};
static const char *const FILTER_NAMES[F_COUNT_ALL] = {
    "abs", "attr", "capitalize", "center", "count", "d", "default", "dictsort", "first", "float",
    "format", "indent", "int", "items", "join", "last", "length", "list", "lower", "map", "max",
    "min", "reject", "rejectattr", "replace", "reverse", "round", "safe", "select", "selectattr",
    "sort", "string", "sum", "title", "tojson", "trim", "unique", "upper"};
static const char *const FILTERS_NOT_IMPLEMENTED[] = {
    "batch", "e", "escape", "filesizeformat", "forceescape", "groupby", "pprint", "random", "slice",
    "striptags", "truncate", "urlencode", "urlize", "wordcount", "wordwrap", "xmlattr", NULL};

int filter_id(const char *name) {
    for (int i = 0; i < F_COUNT_ALL; i++)
        if (!strcmp(name, FILTER_NAMES[i])) return i;
    for (int i = 0; FILTERS_NOT_IMPLEMENTED[i]; i++)
        if (!strcmp(name, FILTERS_NOT_IMPLEMENTED[i])) return -2;
    return -1;
}

enum {
    T_BOOLEAN, T_CALLABLE, T_DEFINED, T_DIVISIBLEBY, T_EQ, T_EQUALTO, T_EQ_OP, T_ESCAPED, T_EVEN,
    T_FALSE, T_FILTER, T_FLOAT, T_GE, T_GE_OP, T_GREATERTHAN, T_GT, T_GT_OP, T_IN, T_INTEGER,
    T_ITERABLE, T_LE, T_LE_OP, T_LESSTHAN, T_LOWER, T_LT, T_LT_OP, T_MAPPING, T_NE, T_NE_OP,
    T_NONE, T_NUMBER, T_ODD, T_SAMEAS, T_SEQUENCE, T_STRING, T_TEST, T_TRUE, T_UNDEFINED,
    T_UPPER, T_COUNT_ALL
};
static const char *const TEST_NAMES[T_COUNT_ALL] = {
    "boolean", "callable", "defined", "divisibleby", "eq", "equalto", "==", "escaped", "even",
    "false", "filter", "float", "ge", ">=", "greaterthan", "gt", ">", "in", "integer",
    "iterable", "le", "<=", "lessthan", "lower", "lt", "<", "mapping", "ne", "!=",
    "none", "number", "odd", "sameas", "sequence", "string", "test", "true", "undefined",
    "upper"};

int test_id(const char *name) {
    for (int i = 0; i < T_COUNT_ALL; i++)
        if (!strcmp(name, TEST_NAMES[i])) return i;
    return -1;
}

/* jinja2's make_attrgetter: "a.b.0" read part by part with item-then-attribute lookup */
static Jv attr_path(Ctx *c, const Node *at, Jv v, Jv path) {
    if (is_intlike(path)) return get_item(c, at, v, path);
    need_str(c, at, "the attribute", path);
    size_t i = 0;
    while (i <= path.s.n) {
        size_t j = i;
        while (j < path.s.n && path.s.p[j] != '.') j++;
        Jv key = jv_str(path.s.p + i, j - i);
        int all_digits = j > i, too_big = 0;
        int64_t num = 0;
        for (size_t k = i; k < j; k++) {
            if (path.s.p[k] < '0' || path.s.p[k] > '9') all_digits = 0;
            else if (num > (INT64_MAX - 9) / 10) too_big = 1;
            else num = num * 10 + (path.s.p[k] - '0');
        }
        /* an index beyond 64 bits is in no list, and no dict has it as a key */
        if (all_digits && too_big) {
            check_defined(c, at, v);
            return jv_undef("an index beyond 64 bits is out of range");
        }
        v = get_item(c, at, v, all_digits ? jv_int(num) : key);
        if (j >= path.s.n) break;
        i = j + 1;
    }
    return v;
}

/* a test named by a string argument (select, reject, selectattr, rejectattr) */
static int run_named_test(Ctx *c, const Node *at, Jv name, Jv v, const Args *a, size_t first_arg) {
    if (is_absent(name)) return jv_truthy(v);
    need_str(c, at, "the test name", name);
    const char *tn = ar_strndup(AR(c), name.s.p, name.s.n);
    int id = test_id(tn);
    if (id < 0) jfail(c, at, "no test named '%s'", tn);
    Args rest = {.pos = a->npos > first_arg ? a->pos + first_arg : NULL,
                 .npos = a->npos > first_arg ? a->npos - first_arg : 0,
                 .kwn = a->kwn, .kwv = a->kwv, .nkw = a->nkw};
    return apply_test(c, at, id, tn, v, &rest);
}

static Jv select_items(Ctx *c, const Node *at, Jv seq, const Args *a, int by_attr, int keep) {
    JList *items = iterate(c, at, seq);
    Jv out = jv_list(AR(c), items->n);
    Jv attr = (Jv){.kind = JV_ABSENT};
    size_t name_at = 0;
    if (by_attr) {
        if (a->npos < 1) jfail(c, at, "selectattr/rejectattr need the attribute to test");
        attr = a->pos[0];
        name_at = 1;
    }
    Jv name = a->npos > name_at ? a->pos[name_at] : (Jv){.kind = JV_ABSENT};
    for (size_t i = 0; i < items->n; i++) {
        Jv v = by_attr ? attr_path(c, at, items->v[i], attr) : items->v[i];
        if (run_named_test(c, at, name, v, a, name_at + 1) == keep) list_push(AR(c), out.list, items->v[i]);
    }
    return out;
}

/* sort key: an attribute path (absent: the item), strings lowercased unless case_sensitive */
static Jv sort_key(Ctx *c, const Node *at, Jv v, Jv attr, int case_sensitive) {
    if (!is_absent(attr) && attr.kind != JV_NONE) v = attr_path(c, at, v, attr);
    if (!case_sensitive && v.kind == JV_STR) v = case_map(c, at, v, CASE_LOWER);
    return v;
}

static void sort_by_keys(Ctx *c, const Node *at, Jv *items, Jv *keys, size_t n, int reverse) {
    /* insertion sort on the keys: stable, as Python's sorted */
    for (size_t i = 1; i < n; i++) {
        Jv ki = keys[i], vi = items[i];
        size_t j = i;
        while (j > 0) {
            int r = jv_compare(keys[j - 1], ki);
            if (r == 2)
                jfail(c, at, "'<' not supported between instances of '%s' and '%s'",
                      jv_type_name(ki), jv_type_name(keys[j - 1]));
            if (reverse ? r >= 0 : r <= 0) break;
            keys[j] = keys[j - 1];
            items[j] = items[j - 1];
            j--;
        }
        keys[j] = ki;
        items[j] = vi;
    }
}

static Jv do_tojson(Ctx *c, const Node *at, Jv v, const Args *a) {
    static const char *const params[] = {"ensure_ascii", "indent", "separators", "sort_keys"};
    Jv p[4];
    bind_args(c, at, "tojson", a, params, 4, p);
    JsonStyle st = {.indent = -1, .item_sep = ", ", .key_sep = ": "};
    st.ensure_ascii = !is_absent(p[0]) && jv_truthy(p[0]);
    if (!is_absent(p[1]) && p[1].kind != JV_NONE) {
        if (p[1].kind == JV_STR) st.indent_str = ar_strndup(AR(c), p[1].s.p, p[1].s.n);
        else st.indent = (int)(int_arg(c, at, "indent", p[1]) < 0 ? 0 : as_int64(p[1]));
        st.item_sep = ",";
    }
    if (!is_absent(p[2]) && p[2].kind != JV_NONE) {
        if (p[2].kind != JV_LIST || p[2].list->n != 2 || p[2].list->v[0].kind != JV_STR ||
            p[2].list->v[1].kind != JV_STR)
            jfail(c, at, "tojson's separators must be two strings (item separator, key separator)");
        st.item_sep = ar_strndup(AR(c), p[2].list->v[0].s.p, p[2].list->v[0].s.n);
        st.key_sep = ar_strndup(AR(c), p[2].list->v[1].s.p, p[2].list->v[1].s.n);
    }
    st.sort_keys = !is_absent(p[3]) && jv_truthy(p[3]);
    Buf b = {.a = AR(c)};
    buf_put(&b, "", 0);
    const char *why = NULL;
    if (jv_write_json(&b, v, &st, 0, &why)) {
        if (strchr(why, ' ')) jfail(c, at, "tojson: %s", why);
        jfail(c, at, "Object of type %s is not JSON serializable", why);
    }
    return jv_str(b.p, b.n);
}

/* Python's int(str, base): whitespace, sign, optional prefix, digits with single underscores */
static Jv do_round(Ctx *c, const Node *at, Jv v, const Args *a) {
    static const char *const params[] = {"precision", "method"};
    Jv p[2];
    bind_args(c, at, "round", a, params, 2, p);
    int64_t prec = is_absent(p[0]) ? 0 : int_arg(c, at, "round's precision", p[0]);
    const char *method = "common";
    if (!is_absent(p[1])) {
        need_str(c, at, "round's method", p[1]);
        method = ar_strndup(AR(c), p[1].s.p, p[1].s.n);
    }
    if (strcmp(method, "common") && strcmp(method, "ceil") && strcmp(method, "floor"))
        jfail(c, at, "method must be common, ceil or floor");
    if (!is_intlike(v) && v.kind != JV_FLOAT)
        jfail(c, at, "round of a %s", jv_type_name(v));
    if (prec < 0 || prec > 300) jfail(c, at, "round with precision %lld: %s", (long long)prec, NOT_IMPL);
    double x = v.kind == JV_FLOAT ? v.f : (double)as_int64(v);
    if (!strcmp(method, "common")) {
        if (is_intlike(v)) return jv_int(as_int64(v)); /* round(int, n >= 0) is the int */
        if (!isfinite(x)) return v;
        char tmp[400];
        snprintf(tmp, sizeof tmp, "%.*f", (int)prec, x); /* correctly rounded, ties to even */
        return jv_float(strtod(tmp, NULL));
    }
    double scale = pow(10.0, (double)prec);
    return jv_float((!strcmp(method, "ceil") ? ceil(x * scale) : floor(x * scale)) / scale);
}

static Jv do_indent(Ctx *c, const Node *at, Jv v, const Args *a) {
    static const char *const params[] = {"width", "first", "blank"};
    Jv p[3];
    bind_args(c, at, "indent", a, params, 3, p);
    Jv s = str_of(c, v);
    Jv ind;
    if (!is_absent(p[0]) && p[0].kind == JV_STR) {
        ind = p[0];
    } else {
        int64_t w = is_absent(p[0]) ? 4 : int_arg(c, at, "indent's width", p[0]);
        if (w > 100000) jfail(c, at, "indent by over 100000 spaces, which retort's template interpreter refuses");
        Buf sp = {.a = AR(c)};
        buf_put(&sp, "", 0);
        for (int64_t i = 0; i < w; i++) buf_putc(&sp, ' ');
        ind = jv_str(sp.p, sp.n);
    }
    int first = !is_absent(p[1]) && jv_truthy(p[1]), blank = !is_absent(p[2]) && jv_truthy(p[2]);
    Jv lines = py_splitlines(c, binop(c, at, OP_ADD, s, jv_str("\n", 1)), 0);
    Buf b = {.a = AR(c)};
    buf_put(&b, "", 0);
    for (size_t i = 0; i < lines.list->n; i++) {
        Jv line = lines.list->v[i];
        if (i > 0) {
            buf_putc(&b, '\n');
            if (blank || line.s.n) buf_put(&b, ind.s.p, ind.s.n);
        } else if (first) {
            buf_put(&b, ind.s.p, ind.s.n);
        }
        buf_put(&b, line.s.p, line.s.n);
    }
    return jv_str(b.p, b.n);
}

Jv apply_filter(Ctx *c, const Node *at, int id, const char *name, Jv v, const Args *a) {
    Jv p[4];
    switch (id) {
    case F_ABS:
        bind_args(c, at, name, a, NULL, 0, p);
        check_defined(c, at, v);
        if (v.kind == JV_FLOAT) return jv_float(fabs(v.f));
        if (is_intlike(v)) {
            if (as_int64(v) == INT64_MIN) jfail(c, at, "abs beyond 64 bits");
            return jv_int(as_int64(v) < 0 ? -as_int64(v) : as_int64(v));
        }
        jfail(c, at, "bad operand type for abs(): '%s'", jv_type_name(v));
    case F_ATTR: {
        static const char *const params[] = {"name"};
        bind_args(c, at, name, a, params, 1, p);
        need_str(c, at, "attr's name", p[0]);
        const char *an = ar_strndup(AR(c), p[0].s.p, p[0].s.n);
        Jv m;
        if ((v.kind == JV_DICT || v.kind == JV_STR || v.kind == JV_LIST) && method_lookup(c, at, v, an, &m))
            return m;
        if (v.kind == JV_NS || v.kind == JV_LOOP) return get_attr(c, at, v, an);
        return jv_undef("the attribute is undefined");
    }
    case F_CAPITALIZE:
        bind_args(c, at, name, a, NULL, 0, p);
        return py_capitalize(c, at, str_of(c, v));
    case F_CENTER: {
        static const char *const params[] = {"width"};
        bind_args(c, at, name, a, params, 1, p);
        Jv s = str_of(c, v);
        int64_t w = is_absent(p[0]) ? 80 : int_arg(c, at, "center's width", p[0]);
        if (w > (1 << 26)) jfail(c, at, "center to over 64 Mi characters, which retort's template interpreter refuses");
        int64_t len = (int64_t)utf8_count(s.s.p, s.s.n);
        if (w <= len) return s;
        int64_t total = w - len, left = total / 2 + (total & w & 1);
        Buf b = {.a = AR(c)};
        buf_put(&b, "", 0);
        for (int64_t i = 0; i < left; i++) buf_putc(&b, ' ');
        buf_put(&b, s.s.p, s.s.n);
        for (int64_t i = 0; i < total - left; i++) buf_putc(&b, ' ');
        return jv_str(b.p, b.n);
    }
    case F_COUNT: case F_LENGTH:
        bind_args(c, at, name, a, NULL, 0, p);
        return jv_int((int64_t)len_of(c, at, v));
    case F_D: case F_DEFAULT: {
        static const char *const params[] = {"default_value", "boolean"};
        bind_args(c, at, name, a, params, 2, p);
        Jv dflt = or_default(p[0], jv_str("", 0));
        int boolean = !is_absent(p[1]) && jv_truthy(p[1]);
        if (v.kind == JV_UNDEF || (boolean && !jv_truthy(v))) return dflt;
        return v;
    }
    case F_DICTSORT: {
        static const char *const params[] = {"case_sensitive", "by", "reverse"};
        bind_args(c, at, name, a, params, 3, p);
        check_defined(c, at, v);
        if (v.kind != JV_DICT) jfail(c, at, "dictsort needs a dict, not %s", jv_type_name(v));
        int by_value = 0;
        if (!is_absent(p[1])) {
            need_str(c, at, "dictsort's by", p[1]);
            if (p[1].s.n == 5 && !memcmp(p[1].s.p, "value", 5)) by_value = 1;
            else if (!(p[1].s.n == 3 && !memcmp(p[1].s.p, "key", 3)))
                jfail(c, at, "You can only sort by either \"key\" or \"value\"");
        }
        size_t n = v.dict->n;
        Jv out = jv_list(AR(c), n);
        Jv *keys = ar_alloc(AR(c), (n ? n : 1) * sizeof(Jv));
        for (size_t i = 0; i < n; i++) {
            list_push(AR(c), out.list, mk_tuple2(c, v.dict->k[i], v.dict->v[i]));
            keys[i] = sort_key(c, at, by_value ? v.dict->v[i] : v.dict->k[i], (Jv){.kind = JV_ABSENT},
                               !is_absent(p[0]) && jv_truthy(p[0]));
        }
        sort_by_keys(c, at, out.list->v, keys, n, !is_absent(p[2]) && jv_truthy(p[2]));
        return out;
    }
    case F_FIRST: case F_LAST: {
        bind_args(c, at, name, a, NULL, 0, p);
        if (id == F_LAST) check_defined(c, at, v);
        JList *items = iterate(c, at, v);
        if (!items->n) return jv_undef(id == F_FIRST ? "No first item, sequence was empty."
                                                     : "No last item, sequence was empty.");
        return items->v[id == F_FIRST ? 0 : items->n - 1];
    }
    case F_FLOAT: {
        static const char *const params[] = {"default"};
        bind_args(c, at, name, a, params, 1, p);
        Jv dflt = or_default(p[0], jv_float(0.0));
        double f;
        if (v.kind == JV_FLOAT) return v;
        if (is_intlike(v)) return jv_float((double)as_int64(v));
        if (v.kind == JV_STR && parse_py_float(c, v, &f) == 0) return jv_float(f);
        return dflt;
    }
    case F_FORMAT:
        if (a->nkw && a->npos) jfail(c, at, "can't handle positional and keyword arguments at the same time");
        if (a->nkw) {
            Jv d = jv_dict(AR(c), a->nkw);
            for (size_t i = 0; i < a->nkw; i++) dict_set(AR(c), d.dict, jv_cstr(a->kwn[i]), a->kwv[i]);
            return str_percent_format(c, at, str_of(c, v), d);
        } else {
            Jv t = jv_list(AR(c), a->npos);
            t.tuple = 1;
            for (size_t i = 0; i < a->npos; i++) list_push(AR(c), t.list, a->pos[i]);
            return str_percent_format(c, at, str_of(c, v), t);
        }
    case F_INDENT: return do_indent(c, at, v, a);
    case F_INT: {
        static const char *const params[] = {"default", "base"};
        bind_args(c, at, name, a, params, 2, p);
        Jv dflt = or_default(p[0], jv_int(0));
        int64_t base = is_absent(p[1]) ? 10 : int_arg(c, at, "int's base", p[1]);
        int64_t out;
        double f;
        if (v.kind == JV_STR) {
            int r = parse_py_int(v, (int)base, &out);
            if (r == 0) return jv_int(out);
            if (r == -2) jfail(c, at, "an integer beyond 64 bits: %s", NOT_IMPL);
            if (parse_py_float(c, v, &f) == 0 && isfinite(f) && fabs(f) < 9.2e18) return jv_int((int64_t)f);
            return dflt;
        }
        if (is_intlike(v)) return jv_int(as_int64(v));
        if (v.kind == JV_FLOAT) {
            if (!isfinite(v.f)) return dflt;
            if (fabs(v.f) >= 9.2e18) jfail(c, at, "an integer beyond 64 bits: %s", NOT_IMPL);
            return jv_int((int64_t)v.f);
        }
        return dflt;
    }
    case F_ITEMS: {
        bind_args(c, at, name, a, NULL, 0, p);
        if (v.kind == JV_UNDEF) return jv_list(AR(c), 0);
        if (v.kind != JV_DICT) jfail(c, at, "Can only get item pairs from a mapping.");
        Jv out = jv_list(AR(c), v.dict->n);
        for (size_t i = 0; i < v.dict->n; i++) list_push(AR(c), out.list, mk_tuple2(c, v.dict->k[i], v.dict->v[i]));
        return out;
    }
    case F_JOIN: {
        static const char *const params[] = {"d", "attribute"};
        bind_args(c, at, name, a, params, 2, p);
        Jv sep = str_of(c, or_default(p[0], jv_str("", 0)));
        JList *items = iterate(c, at, v);
        Buf b = {.a = AR(c)};
        buf_put(&b, "", 0);
        for (size_t i = 0; i < items->n; i++) {
            if (i) buf_put(&b, sep.s.p, sep.s.n);
            Jv x = items->v[i];
            if (!is_absent(p[1]) && p[1].kind != JV_NONE) x = attr_path(c, at, x, p[1]);
            jv_write_str(&b, x);
        }
        return jv_str(b.p, b.n);
    }
    case F_LIST: {
        bind_args(c, at, name, a, NULL, 0, p);
        JList *items = iterate(c, at, v);
        Jv out = jv_list(AR(c), items->n);
        for (size_t i = 0; i < items->n; i++) list_push(AR(c), out.list, items->v[i]);
        return out;
    }
    case F_LOWER: case F_UPPER:
        bind_args(c, at, name, a, NULL, 0, p);
        return case_map(c, at, str_of(c, v), id == F_LOWER ? CASE_LOWER : CASE_UPPER);
    case F_MAP: {
        JList *items = iterate(c, at, v);
        Jv out = jv_list(AR(c), items->n);
        if (a->npos == 0) {
            static const char *const params[] = {"attribute", "default"};
            bind_args(c, at, name, a, params, 2, p);
            if (is_absent(p[0])) jfail(c, at, "map needs a filter name or attribute=");
            for (size_t i = 0; i < items->n; i++) {
                Jv x = attr_path(c, at, items->v[i], p[0]);
                if (x.kind == JV_UNDEF && !is_absent(p[1])) x = p[1];
                list_push(AR(c), out.list, x);
            }
            return out;
        }
        need_str(c, at, "map's filter name", a->pos[0]);
        const char *fname = ar_strndup(AR(c), a->pos[0].s.p, a->pos[0].s.n);
        int fid = filter_id(fname);
        if (fid < 0) jfail(c, at, "map: no filter named '%s' here", fname);
        Args rest = {.pos = a->pos + 1, .npos = a->npos - 1, .kwn = a->kwn, .kwv = a->kwv, .nkw = a->nkw};
        for (size_t i = 0; i < items->n; i++) list_push(AR(c), out.list, apply_filter(c, at, fid, fname, items->v[i], &rest));
        return out;
    }
    case F_MAX: case F_MIN: {
        static const char *const params[] = {"case_sensitive", "attribute"};
        bind_args(c, at, name, a, params, 2, p);
        JList *items = iterate(c, at, v);
        if (!items->n) return jv_undef("No aggregated item, sequence was empty.");
        int cs = !is_absent(p[0]) && jv_truthy(p[0]);
        size_t best = 0;
        Jv bk = sort_key(c, at, items->v[0], p[1], cs);
        for (size_t i = 1; i < items->n; i++) {
            Jv k = sort_key(c, at, items->v[i], p[1], cs);
            int r = jv_compare(k, bk);
            if (r == 2) jfail(c, at, "'<' not supported between instances of '%s' and '%s'", jv_type_name(k), jv_type_name(bk));
            if (id == F_MAX ? r > 0 : r < 0) {
                best = i;
                bk = k;
            }
        }
        return items->v[best];
    }
    case F_REJECT: return select_items(c, at, v, a, 0, 0);
    case F_SELECT: return select_items(c, at, v, a, 0, 1);
    case F_REJECTATTR: return select_items(c, at, v, a, 1, 0);
    case F_SELECTATTR: return select_items(c, at, v, a, 1, 1);
    case F_REPLACE: {
        static const char *const params[] = {"old", "new", "count"};
        bind_args(c, at, name, a, params, 3, p);
        if (is_absent(p[0]) || is_absent(p[1])) jfail(c, at, "replace needs the old and the new text");
        int64_t count = is_absent(p[2]) || p[2].kind == JV_NONE ? -1 : int_arg(c, at, "replace's count", p[2]);
        return py_replace(c, str_of(c, v), str_of(c, p[0]), str_of(c, p[1]), count);
    }
    case F_REVERSE: {
        bind_args(c, at, name, a, NULL, 0, p);
        if (v.kind == JV_STR) {
            Jv chars = (Jv){.kind = JV_LIST, .list = iterate(c, at, v)};
            Buf b = {.a = AR(c)};
            buf_put(&b, "", 0);
            for (size_t i = chars.list->n; i-- > 0;) buf_put(&b, chars.list->v[i].s.p, chars.list->v[i].s.n);
            return jv_str(b.p, b.n);
        }
        check_defined(c, at, v);
        JList *items = iterate(c, at, v);
        Jv out = jv_list(AR(c), items->n);
        for (size_t i = items->n; i-- > 0;) list_push(AR(c), out.list, items->v[i]);
        return out;
    }
    case F_ROUND: check_defined(c, at, v); return do_round(c, at, v, a);
    case F_SAFE: case F_STRING:
        bind_args(c, at, name, a, NULL, 0, p);
        return str_of(c, v);
    case F_SORT: {
        static const char *const params[] = {"reverse", "case_sensitive", "attribute"};
        bind_args(c, at, name, a, params, 3, p);
        JList *items = iterate(c, at, v);
        Jv out = jv_list(AR(c), items->n);
        Jv *keys = ar_alloc(AR(c), (items->n ? items->n : 1) * sizeof(Jv));
        for (size_t i = 0; i < items->n; i++) {
            list_push(AR(c), out.list, items->v[i]);
            keys[i] = sort_key(c, at, items->v[i], p[2], !is_absent(p[1]) && jv_truthy(p[1]));
        }
        sort_by_keys(c, at, out.list->v, keys, items->n, !is_absent(p[0]) && jv_truthy(p[0]));
        return out;
    }
    case F_SUM: {
        static const char *const params[] = {"attribute", "start"};
        bind_args(c, at, name, a, params, 2, p);
        JList *items = iterate(c, at, v);
        Jv total = or_default(p[1], jv_int(0));
        for (size_t i = 0; i < items->n; i++) {
            Jv x = is_absent(p[0]) || p[0].kind == JV_NONE ? items->v[i] : attr_path(c, at, items->v[i], p[0]);
            total = binop(c, at, OP_ADD, total, x);
        }
        return total;
    }
    case F_TITLE:
        bind_args(c, at, name, a, NULL, 0, p);
        return jinja_title(c, at, str_of(c, v));
    case F_TOJSON: return do_tojson(c, at, v, a);
    case F_TRIM: {
        static const char *const params[] = {"chars"};
        bind_args(c, at, name, a, params, 1, p);
        return py_strip(c, at, str_of(c, v), p[0], 1, 1);
    }
    case F_UNIQUE: {
        static const char *const params[] = {"case_sensitive", "attribute"};
        bind_args(c, at, name, a, params, 2, p);
        JList *items = iterate(c, at, v);
        Jv out = jv_list(AR(c), items->n), seen = jv_list(AR(c), items->n);
        for (size_t i = 0; i < items->n; i++) {
            Jv k = sort_key(c, at, items->v[i], p[1], !is_absent(p[0]) && jv_truthy(p[0]));
            int dup = 0;
            for (size_t j = 0; j < seen.list->n && !dup; j++) dup = jv_equal(seen.list->v[j], k);
            if (!dup) {
                list_push(AR(c), seen.list, k);
                list_push(AR(c), out.list, items->v[i]);
            }
        }
        return out;
    }
    default: jfail(c, at, "the filter '%s': %s", name, NOT_IMPL);
    }
}

/* ---- tests ---- */
int apply_test(Ctx *c, const Node *at, int id, const char *name, Jv v, const Args *a) {
    Jv p[1];
    Jv arg = a->npos ? a->pos[0] : (a->nkw ? a->kwv[0] : (Jv){.kind = JV_ABSENT});
    if (a->npos + a->nkw > 1) jfail(c, at, "the test '%s' takes at most one argument", name);
    (void)p;
    switch (id) {
    case T_DEFINED: return v.kind != JV_UNDEF;
    case T_UNDEFINED: return v.kind == JV_UNDEF;
    case T_NONE: return v.kind == JV_NONE;
    case T_BOOLEAN: return v.kind == JV_BOOL;
    case T_TRUE: return v.kind == JV_BOOL && v.b;
    case T_FALSE: return v.kind == JV_BOOL && !v.b;
    case T_INTEGER: return v.kind == JV_INT;
    case T_FLOAT: return v.kind == JV_FLOAT;
    case T_NUMBER: return v.kind == JV_INT || v.kind == JV_FLOAT || v.kind == JV_BOOL;
    case T_STRING: return v.kind == JV_STR;
    case T_MAPPING: return v.kind == JV_DICT;
    case T_SEQUENCE: return v.kind == JV_STR || v.kind == JV_LIST || v.kind == JV_DICT || v.kind == JV_UNDEF;
    case T_ITERABLE:
        return v.kind == JV_STR || v.kind == JV_LIST || v.kind == JV_DICT || v.kind == JV_UNDEF ||
               v.kind == JV_LOOP;
    case T_CALLABLE: return v.kind == JV_MACRO || v.kind == JV_FUNC || v.kind == JV_METHOD;
    case T_ESCAPED: return 0;
    case T_ODD: case T_EVEN: {
        Jv r = binop(c, at, OP_MOD, v, jv_int(2));
        return jv_equal(r, jv_int(id == T_ODD ? 1 : 0));
    }
    case T_DIVISIBLEBY:
        if (is_absent(arg)) jfail(c, at, "divisibleby needs a number");
        return jv_equal(binop(c, at, OP_MOD, v, arg), jv_int(0));
    case T_LOWER: case T_UPPER: return py_str_case_test(c, v, id == T_UPPER);
    case T_SAMEAS:
        if (v.kind != arg.kind) return 0;
        switch (v.kind) {
        case JV_NONE: case JV_UNDEF: return 1;
        case JV_BOOL: return v.b == arg.b;
        case JV_INT: return v.i == arg.i && v.i >= -5 && v.i <= 256; /* CPython's cached ints */
        case JV_STR: return v.s.p == arg.s.p && v.s.n == arg.s.n;
        case JV_LIST: return v.list == arg.list;
        case JV_DICT: case JV_NS: return v.dict == arg.dict;
        default: return jv_equal(v, arg);
        }
    case T_IN: return contains(c, at, arg, v);
    case T_FILTER: case T_TEST: {
        if (v.kind != JV_STR) return 0;
        const char *n2 = ar_strndup(AR(c), v.s.p, v.s.n);
        return id == T_FILTER ? filter_id(n2) != -1 : test_id(n2) != -1;
    }
    default: break;
    }
    /* comparisons */
    if (is_absent(arg)) jfail(c, at, "the test '%s' needs a value to compare with", name);
    int op;
    switch (id) {
    case T_EQ: case T_EQUALTO: case T_EQ_OP: return jv_equal(v, arg);
    case T_NE: case T_NE_OP: return !jv_equal(v, arg);
    case T_LT: case T_LT_OP: case T_LESSTHAN: op = CMP_LT; break;
    case T_LE: case T_LE_OP: op = CMP_LE; break;
    case T_GT: case T_GT_OP: case T_GREATERTHAN: op = CMP_GT; break;
    default: op = CMP_GE; break;
    }
    check_defined(c, at, v);
    check_defined(c, at, arg);
    int r = jv_compare(v, arg);
    if (r == 2) jfail(c, at, "comparison not supported between instances of '%s' and '%s'", jv_type_name(v), jv_type_name(arg));
    return op == CMP_LT ? r < 0 : op == CMP_LE ? r <= 0 : op == CMP_GT ? r > 0 : r >= 0;
}
