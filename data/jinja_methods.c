/* data/jinja_methods.c — the methods of str, list and dict that templates
 * call, the attributes of `loop`, and the global functions, each as CPython
 * and transformers define them.
 *
 * Methods: str capitalize count endswith find index isalnum isalpha isdigit
 *   islower isspace isupper join lower lstrip removeprefix removesuffix
 *   replace rfind rindex rsplit rstrip split splitlines startswith strip title
 *   upper; list count index copy; dict copy get items keys values. The
 *   methods that modify a list or dict are refused, as transformers' immutable
 *   sandbox refuses them; Python's other methods are refused as not
 *   implemented, when called (an attribute of that name is still a method, so
 *   `x.items` is never silently a dict key).
 * Globals: range (at most 100000 items: the sandbox's limit), namespace (no
 *   attribute starting with an underscore, as transformers' TemplateNamespace),
 *   dict, raise_exception, strftime_now; cycler, joiner and lipsum are refused.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/jinja_impl.h"
#include "util/util.h"

const char *const GLOBAL_NAMES[G_COUNT] = {"range", "namespace", "dict", "raise_exception",
                                           "strftime_now", "cycler", "joiner", "lipsum"};

/* ---- methods ---- */
static const char *const STR_METHODS[] = {
    "capitalize", "casefold", "center", "count", "encode", "endswith", "expandtabs", "find",
    "format", "format_map", "index", "isalnum", "isalpha", "isascii", "isdecimal", "isdigit",
    "isidentifier", "islower", "isnumeric", "isprintable", "isspace", "istitle", "isupper",
    "join", "ljust", "lower", "lstrip", "maketrans", "partition", "removeprefix",
    "removesuffix", "replace", "rfind", "rindex", "rjust", "rpartition", "rsplit", "rstrip",
    "split", "splitlines", "startswith", "strip", "swapcase", "title", "translate", "upper",
    "zfill", NULL};
static const char *const LIST_METHODS[] = {"append", "clear", "copy", "count", "extend", "index",
                                           "insert", "pop", "remove", "reverse", "sort", NULL};
static const char *const DICT_METHODS[] = {"clear", "copy", "fromkeys", "get", "items", "keys",
                                           "pop", "popitem", "setdefault", "update", "values", NULL};

static const char *find_name(const char *const *names, const char *name) {
    for (int i = 0; names[i]; i++)
        if (!strcmp(names[i], name)) return names[i];
    return NULL;
}

int method_lookup(Ctx *c, const Node *at, Jv self, const char *name, Jv *out) {
    (void)at;
    const char *found = NULL;
    if (self.kind == JV_STR) found = find_name(STR_METHODS, name);
    else if (self.kind == JV_LIST) found = find_name(LIST_METHODS, name);
    else if (self.kind == JV_DICT) found = find_name(DICT_METHODS, name);
    if (!found) return 0;
    JMethod *m = ar_alloc(AR(c), sizeof *m);
    m->self = self;
    m->name = found;
    *out = (Jv){.kind = JV_METHOD, .method = m};
    return 1;
}

static int is_method(const JMethod *m, const char *name) { return !strcmp(m->name, name); }

/* startswith/endswith with a string or a tuple of strings */
static int affix_test(Ctx *c, const Node *at, Jv s, Jv what, int end) {
    if (what.kind == JV_LIST && what.tuple == 1) {
        for (size_t i = 0; i < what.list->n; i++) {
            need_str(c, at, "startswith/endswith's argument", what.list->v[i]);
            if (end ? str_ends_with(s, what.list->v[i]) : str_starts_with(s, what.list->v[i])) return 1;
        }
        return 0;
    }
    if (what.kind != JV_STR)
        jfail(c, at, "%s first arg must be str or a tuple of str, not %s", end ? "endswith" : "startswith",
              jv_type_name(what));
    return end ? str_ends_with(s, what) : str_starts_with(s, what);
}

static Jv call_str_method(Ctx *c, const Node *at, const JMethod *m, const Args *a) {
    Jv s = m->self, p[3];
    const char *n = m->name;
    if (is_method(m, "strip") || is_method(m, "lstrip") || is_method(m, "rstrip")) {
        static const char *const params[] = {"chars"};
        bind_args(c, at, n, a, params, 1, p);
        return py_strip(c, at, s, p[0], n[0] != 'r', n[0] != 'l');
    }
    if (is_method(m, "split") || is_method(m, "rsplit")) {
        static const char *const params[] = {"sep", "maxsplit"};
        bind_args(c, at, n, a, params, 2, p);
        return py_split(c, at, s, p[0], p[1], n[0] == 'r');
    }
    if (is_method(m, "startswith") || is_method(m, "endswith")) {
        if (a->npos != 1 || a->nkw) jfail(c, at, "%s with start/end positions: %s", n, NOT_IMPL);
        return jv_bool(affix_test(c, at, s, a->pos[0], n[0] == 'e'));
    }
    if (is_method(m, "replace")) {
        static const char *const params[] = {"old", "new", "count"};
        bind_args(c, at, n, a, params, 3, p);
        if (is_absent(p[0]) || is_absent(p[1])) jfail(c, at, "replace needs the old and the new text");
        need_str(c, at, "replace's old", p[0]);
        need_str(c, at, "replace's new", p[1]);
        return py_replace(c, s, p[0], p[1], is_absent(p[2]) ? -1 : int_arg(c, at, "count", p[2]));
    }
    if (is_method(m, "upper")) { bind_args(c, at, n, a, NULL, 0, p); return case_map(c, at, s, CASE_UPPER); }
    if (is_method(m, "lower")) { bind_args(c, at, n, a, NULL, 0, p); return case_map(c, at, s, CASE_LOWER); }
    if (is_method(m, "title")) { bind_args(c, at, n, a, NULL, 0, p); return py_title(c, at, s); }
    if (is_method(m, "capitalize")) { bind_args(c, at, n, a, NULL, 0, p); return py_capitalize(c, at, s); }
    if (is_method(m, "find") || is_method(m, "rfind") || is_method(m, "index") || is_method(m, "rindex") ||
        is_method(m, "count")) {
        if (a->npos != 1 || a->nkw) jfail(c, at, "%s with start/end positions: %s", n, NOT_IMPL);
        Jv sub = need_str(c, at, "the substring", a->pos[0]);
        if (is_method(m, "count")) {
            if (sub.s.n == 0) return jv_int((int64_t)utf8_count(s.s.p, s.s.n) + 1);
            int64_t k = 0;
            const char *q = s.s.p, *e = s.s.p + s.s.n, *hit;
            while ((hit = memmem(q, (size_t)(e - q), sub.s.p, sub.s.n))) {
                k++;
                q = hit + sub.s.n;
            }
            return jv_int(k);
        }
        int64_t r = py_find(s, sub, n[0] == 'r');
        if (r < 0 && strstr(n, "index")) jfail(c, at, "substring not found");
        return jv_int(r);
    }
    if (is_method(m, "join")) {
        bind_args(c, at, n, a, (const char *const[]){"iterable"}, 1, p);
        JList *items = iterate(c, at, p[0]);
        Buf b = {.a = AR(c)};
        buf_put(&b, "", 0);
        for (size_t i = 0; i < items->n; i++) {
            if (items->v[i].kind != JV_STR)
                jfail(c, at, "sequence item %zu: expected str instance, %s found", i, jv_type_name(items->v[i]));
            if (i) buf_put(&b, s.s.p, s.s.n);
            buf_put(&b, items->v[i].s.p, items->v[i].s.n);
        }
        return jv_str(b.p, b.n);
    }
    if (is_method(m, "splitlines")) {
        bind_args(c, at, n, a, (const char *const[]){"keepends"}, 1, p);
        return py_splitlines(c, s, !is_absent(p[0]) && jv_truthy(p[0]));
    }
    if (is_method(m, "removeprefix") || is_method(m, "removesuffix")) {
        bind_args(c, at, n, a, (const char *const[]){"affix"}, 1, p);
        Jv x = need_str(c, at, "the affix", p[0]);
        if (n[6] == 'p') return str_starts_with(s, x) ? jv_str(s.s.p + x.s.n, s.s.n - x.s.n) : s;
        return str_ends_with(s, x) ? jv_str(s.s.p, s.s.n - x.s.n) : s;
    }
    if (is_method(m, "isspace") || is_method(m, "isdigit") || is_method(m, "isalpha") ||
        is_method(m, "isalnum") || is_method(m, "islower") || is_method(m, "isupper")) {
        bind_args(c, at, n, a, NULL, 0, p);
        if (is_method(m, "islower") || is_method(m, "isupper")) return jv_bool(py_str_case_test(c, s, n[2] == 'u'));
        if (!s.s.n) return jv_bool(0);
        size_t i = 0, len;
        while (i < s.s.n) {
            uint32_t cp = utf8_at(s.s.p + i, s.s.n - i, &len);
            if (cp >= 0x80 && !is_method(m, "isspace"))
                jfail(c, at, "str.%s of non-ASCII text: %s", n, NOT_IMPL);
            int ok = is_method(m, "isspace") ? py_isspace(cp)
                   : is_method(m, "isdigit") ? (cp >= '0' && cp <= '9')
                   : is_method(m, "isalpha") ? ((cp | 32) >= 'a' && (cp | 32) <= 'z')
                   : (((cp | 32) >= 'a' && (cp | 32) <= 'z') || (cp >= '0' && cp <= '9'));
            if (!ok) return jv_bool(0);
            i += len;
        }
        return jv_bool(1);
    }
    jfail(c, at, "the method str.%s: %s", n, NOT_IMPL);
}

Jv call_method(Ctx *c, const Node *at, const JMethod *m, const Args *a) {
    Jv self = m->self, p[2];
    const char *n = m->name;
    if (self.kind == JV_LOOP) {
        if (!a->npos) jfail(c, at, "no items for cycling given");
        return a->pos[self.loop->index0 % a->npos];
    }
    if (self.kind == JV_STR) return call_str_method(c, at, m, a);
    if (self.kind == JV_LIST) {
        if (is_method(m, "count")) {
            bind_args(c, at, n, a, (const char *const[]){"value"}, 1, p);
            int64_t k = 0;
            for (size_t i = 0; i < self.list->n; i++) k += jv_equal(self.list->v[i], p[0]);
            return jv_int(k);
        }
        if (is_method(m, "index")) {
            if (a->npos != 1 || a->nkw) jfail(c, at, "list.index with start/end positions: %s", NOT_IMPL);
            for (size_t i = 0; i < self.list->n; i++)
                if (jv_equal(self.list->v[i], a->pos[0])) return jv_int((int64_t)i);
            jfail(c, at, "list.index(x): x not in list");
        }
        if (is_method(m, "copy")) {
            bind_args(c, at, n, a, NULL, 0, p);
            Jv out = jv_list(AR(c), self.list->n);
            for (size_t i = 0; i < self.list->n; i++) list_push(AR(c), out.list, self.list->v[i]);
            return out;
        }
        jfail(c, at, "access to attribute '%s' of 'list' object is unsafe. (transformers renders chat "
                     "templates in an immutable sandbox, where lists and dicts cannot be changed)", n);
    }
    if (self.kind == JV_DICT) {
        if (is_method(m, "get")) {
            static const char *const params[] = {"key", "default"};
            bind_args(c, at, n, a, params, 2, p);
            if (is_absent(p[0])) jfail(c, at, "get expected at least 1 argument, got 0");
            Jv *v = dict_get(self.dict, p[0]);
            return v ? *v : or_default(p[1], jv_none());
        }
        if (is_method(m, "items") || is_method(m, "keys") || is_method(m, "values")) {
            bind_args(c, at, n, a, NULL, 0, p);
            Jv out = jv_list(AR(c), self.dict->n);
            out.tuple = n[0] == 'i' ? 2 : n[0] == 'k' ? 3 : 4;
            for (size_t i = 0; i < self.dict->n; i++)
                list_push(AR(c), out.list,
                          n[0] == 'i' ? mk_tuple2(c, self.dict->k[i], self.dict->v[i])
                          : n[0] == 'k' ? self.dict->k[i] : self.dict->v[i]);
            return out;
        }
        if (is_method(m, "copy")) {
            bind_args(c, at, n, a, NULL, 0, p);
            Jv out = jv_dict(AR(c), self.dict->n);
            for (size_t i = 0; i < self.dict->n; i++) dict_set(AR(c), out.dict, self.dict->k[i], self.dict->v[i]);
            return out;
        }
        if (is_method(m, "fromkeys")) jfail(c, at, "dict.fromkeys: %s", NOT_IMPL);
        jfail(c, at, "access to attribute '%s' of 'dict' object is unsafe. (transformers renders chat "
                     "templates in an immutable sandbox, where lists and dicts cannot be changed)", n);
    }
    jfail(c, at, "the method %s of %s: %s", n, jv_type_name(self), NOT_IMPL);
}

/* ---- loop ---- */
Jv loop_attr(Ctx *c, const Node *at, const JLoop *l, const char *name) {
    size_t n = l->items->n, i = l->index0;
    if (!strcmp(name, "index")) return jv_int((int64_t)i + 1);
    if (!strcmp(name, "index0")) return jv_int((int64_t)i);
    if (!strcmp(name, "revindex")) return jv_int((int64_t)(n - i));
    if (!strcmp(name, "revindex0")) return jv_int((int64_t)(n - i - 1));
    if (!strcmp(name, "first")) return jv_bool(i == 0);
    if (!strcmp(name, "last")) return jv_bool(i + 1 == n);
    if (!strcmp(name, "length")) return jv_int((int64_t)n);
    if (!strcmp(name, "depth")) return jv_int(1);
    if (!strcmp(name, "depth0")) return jv_int(0);
    if (!strcmp(name, "previtem")) return i > 0 ? l->items->v[i - 1] : jv_undef("there is no previous item");
    if (!strcmp(name, "nextitem")) return i + 1 < n ? l->items->v[i + 1] : jv_undef("there is no next item");
    if (!strcmp(name, "cycle")) {
        JMethod *m = ar_alloc(AR(c), sizeof *m);
        m->self = (Jv){.kind = JV_LOOP, .loop = (JLoop *)l};
        m->name = "cycle";
        return (Jv){.kind = JV_METHOD, .method = m};
    }
    if (!strcmp(name, "changed")) jfail(c, at, "loop.changed: %s", NOT_IMPL);
    return jv_undef(ar_strndup(AR(c), "'LoopContext object' has no such attribute", 41));
}

/* ---- globals ---- */
Jv call_global(Ctx *c, const Node *at, int id, const Args *a) {
    Jv p[3];
    switch (id) {
    case G_RANGE: {
        if (a->nkw) jfail(c, at, "range() takes no keyword arguments");
        if (a->npos < 1 || a->npos > 3) jfail(c, at, "range expected 1 to 3 arguments, got %zu", a->npos);
        int64_t start = 0, stop, step = 1;
        if (a->npos == 1) stop = int_arg(c, at, "range's argument", a->pos[0]);
        else {
            start = int_arg(c, at, "range's start", a->pos[0]);
            stop = int_arg(c, at, "range's stop", a->pos[1]);
            if (a->npos == 3) step = int_arg(c, at, "range's step", a->pos[2]);
        }
        if (step == 0) jfail(c, at, "range() arg 3 must not be zero");
        double count = step > 0 ? ceil(((double)stop - (double)start) / (double)step)
                                : ceil(((double)start - (double)stop) / (double)-step);
        if (count > 100000)
            jfail(c, at, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
        Jv out = jv_list(AR(c), count > 0 ? (size_t)count : 0);
        for (int64_t x = start; step > 0 ? x < stop : x > stop; x += step) list_push(AR(c), out.list, jv_int(x));
        return out;
    }
    case G_NAMESPACE: case G_DICT: {
        Jv d = jv_dict(AR(c), a->nkw + 4);
        if (a->npos > 1) jfail(c, at, "%s expected at most 1 positional argument", GLOBAL_NAMES[id]);
        if (a->npos == 1) {
            Jv src = a->pos[0];
            if (src.kind == JV_DICT || src.kind == JV_NS) {
                for (size_t i = 0; i < src.dict->n; i++) dict_set(AR(c), d.dict, src.dict->k[i], src.dict->v[i]);
            } else {
                JList *items = iterate(c, at, src);
                for (size_t i = 0; i < items->n; i++) {
                    Jv kv = items->v[i];
                    if (kv.kind != JV_LIST || kv.list->n != 2)
                        jfail(c, at, "dictionary update sequence element #%zu has the wrong length", i);
                    dict_set(AR(c), d.dict, kv.list->v[0], kv.list->v[1]);
                }
            }
        }
        for (size_t i = 0; i < a->nkw; i++) dict_set(AR(c), d.dict, jv_cstr(a->kwn[i]), a->kwv[i]);
        if (id == G_NAMESPACE) {
            for (size_t i = 0; i < d.dict->n; i++)
                if (d.dict->k[i].kind == JV_STR && d.dict->k[i].s.n && d.dict->k[i].s.p[0] == '_')
                    jfail(c, at, "Chat templates cannot store underscore-prefixed attributes on a "
                                 "namespace, but got '%.*s'. Please rename the attribute.",
                          (int)d.dict->k[i].s.n, d.dict->k[i].s.p);
            d.kind = JV_NS;
        }
        return d;
    }
    case G_RAISE: {
        static const char *const params[] = {"message"};
        bind_args(c, at, "raise_exception", a, params, 1, p);
        Jv msg = str_of(c, or_default(p[0], jv_str("", 0)));
        jfail(c, at, "the template refuses this conversation: %.*s", (int)msg.s.n, msg.s.p);
    }
    case G_STRFTIME: {
        static const char *const params[] = {"format"};
        bind_args(c, at, "strftime_now", a, params, 1, p);
        need_str(c, at, "strftime_now's format", p[0]);
        const char *fmt = ar_strndup(AR(c), p[0].s.p, p[0].s.n);
        char out[512];
        size_t n = strftime(out, sizeof out, fmt, &c->now);
        if (n == 0 && p[0].s.n) jfail(c, at, "strftime_now(\"%s\") gave nothing or over 511 bytes", fmt);
        return jv_str(ar_strndup(AR(c), out, n), n);
    }
    default: jfail(c, at, "the global %s(): %s", GLOBAL_NAMES[id], NOT_IMPL);
    }
}
