/* data/jinja_eval.c — runs a parsed template: statements, expressions, scopes,
 * loops, macros, and the output with its {% generation %} spans.
 *
 * Scopes follow what jinja2 compiles templates to: the globals, then the
 * caller's variables, then the template's own top level; an if block shares
 * its scope, each iteration of a for loop gets a fresh child scope (a set
 * inside a loop is gone at the next iteration, hence namespace()), a macro
 * call gets a child of the scope the macro was defined in. Attribute access
 * `x.name` looks for a Python attribute (the methods of str, list, dict) first
 * and then an item; `x[key]` the other way round; what is missing is
 * Undefined, and using an Undefined for anything but printing, testing,
 * iterating or ~ is the error jinja2 raises.
 *
 * Output goes to the root buffer, or to a capture (macro call, set block,
 * filter block, generation block) that its caller appends when done. The
 * root buffer is what transformers' AssistantTracker sees as the rendered
 * blocks so far, so a generation span starts at the root's length when the
 * block begins and is as long as the block's own text.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/jinja_impl.h"
#include "util/util.h"

#define MAX_CALL_DEPTH 200
/* A render that runs this many loop iterations and macro calls is a runaway
 * (nested range() loops); real chat templates take thousands. */
#define MAX_STEPS 20000000u

static void step(Ctx *c, const Node *at) {
    if (++c->steps > MAX_STEPS)
        jfail(c, at, "the template ran over %u loop iterations and macro calls; a runaway loop, "
                     "which retort's template interpreter stops", MAX_STEPS);
}

_Noreturn void jfail(Ctx *c, const Node *at, const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (at) err_set("%s:%d:%d: %s", c->t->label, at->line, at->col, msg);
    else err_set("%s: %s", c->t->label, msg);
    longjmp(c->fail, 1);
}

/* ---- scopes ---- */
static Scope *scope_new(Ctx *c, Scope *parent) {
    Scope *s = ar_alloc(&c->arena, sizeof *s);
    s->parent = parent;
    return s;
}

static Jv *scope_find(Scope *s, const char *name) {
    for (; s; s = s->parent)
        for (size_t i = 0; i < s->n; i++)
            if (s->names[i] == name || strcmp(s->names[i], name) == 0) return &s->vals[i];
    return NULL;
}

static void scope_set(Ctx *c, Scope *s, const char *name, Jv v) {
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->names[i], name) == 0) {
            s->vals[i] = v;
            return;
        }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        const char **nn = ar_alloc(&c->arena, cap * sizeof(char *));
        Jv *nv = ar_alloc(&c->arena, cap * sizeof(Jv));
        if (s->n) {
            memcpy(nn, s->names, s->n * sizeof(char *));
            memcpy(nv, s->vals, s->n * sizeof(Jv));
        }
        s->names = nn;
        s->vals = nv;
        s->cap = cap;
    }
    s->names[s->n] = name;
    s->vals[s->n] = v;
    s->n++;
}

/* ---- undefined ---- */
static const char *fmt_arena(Ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const char *fmt_arena(Ctx *c, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    return ar_strndup(&c->arena, tmp, strlen(tmp));
}

/* jinja2's object_type_repr, quoted as its messages quote it */
static const char *type_repr(Ctx *c, Jv v) {
    if (v.kind == JV_NONE) return "'None'";
    return fmt_arena(c, "'%s object'", jv_type_name(v));
}

static Jv undef_attr(Ctx *c, Jv obj, const char *name) {
    return jv_undef(fmt_arena(c, "%s has no attribute '%s'", type_repr(c, obj), name));
}

static Jv undef_item(Ctx *c, Jv obj, Jv key) {
    if (key.kind == JV_STR) {
        Buf b = {.a = &c->arena};
        buf_put(&b, key.s.p, key.s.n);
        return undef_attr(c, obj, b.p);
    }
    Buf b = {.a = &c->arena};
    buf_printf(&b, "%s has no element ", type_repr(c, obj));
    jv_write_repr(&b, key);
    return jv_undef(b.p);
}

void check_defined(Ctx *c, const Node *at, Jv v) {
    if (v.kind == JV_UNDEF) jfail(c, at, "%s", v.s.p ? v.s.p : "a value is undefined");
}

static Jv check_nesting(Ctx *c, const Node *at, Jv v) {
    if (jv_depth(v) > MAX_NESTING)
        jfail(c, at, "a value nested more than %d levels deep, which retort's template interpreter "
                     "refuses (Python's printing of it would run out of recursion near 1000)",
              MAX_NESTING);
    return v;
}

/* ---- numbers ---- */
static int is_int(Jv v) { return v.kind == JV_INT || v.kind == JV_BOOL; }
static int is_num(Jv v) { return is_int(v) || v.kind == JV_FLOAT; }
static int64_t as_int(Jv v) { return v.kind == JV_BOOL ? v.b : v.i; }
static double as_float(Jv v) { return v.kind == JV_FLOAT ? v.f : (double)as_int(v); }

static _Noreturn void overflow(Ctx *c, const Node *at) {
    jfail(c, at, "an integer beyond 64 bits (Python would make a big integer), which retort's "
                 "template interpreter does not implement");
}

static const char *OP_TEXT[] = {"+", "-", "*", "/", "//", "%", "**"};

static _Noreturn void bad_operands(Ctx *c, const Node *at, int op, Jv a, Jv b) {
    if (op == OP_ADD && a.kind == JV_STR)
        jfail(c, at, "can only concatenate str (not \"%s\") to str", jv_type_name(b));
    if (op == OP_ADD && a.kind == JV_LIST)
        jfail(c, at, "can only concatenate %s (not \"%s\") to %s", jv_type_name(a), jv_type_name(b),
              jv_type_name(a));
    jfail(c, at, "unsupported operand type(s) for %s: '%s' and '%s'", OP_TEXT[op], jv_type_name(a),
          jv_type_name(b));
}

static Jv repeat(Ctx *c, const Node *at, Jv seq, int64_t times) {
    if (times < 0) times = 0;
    size_t unit = seq.kind == JV_STR ? seq.s.n : seq.list->n;
    if (unit && (uint64_t)times > ((uint64_t)1 << 26) / unit)
        jfail(c, at, "a repetition of over 64 Mi items or bytes, which retort's template interpreter "
                     "refuses");
    if (seq.kind == JV_STR) {
        Buf b = {.a = &c->arena};
        buf_put(&b, "", 0);
        for (int64_t i = 0; i < times; i++) buf_put(&b, seq.s.p, seq.s.n);
        return jv_str(b.p, b.n);
    }
    Jv l = jv_list(&c->arena, unit * (size_t)times);
    l.tuple = seq.tuple;
    for (int64_t i = 0; i < times; i++)
        for (size_t k = 0; k < unit; k++) list_push(&c->arena, l.list, seq.list->v[k]);
    return l;
}

static double float_mod(double x, double y) {
    double m = fmod(x, y);
    if (m != 0.0) {
        if ((y < 0) != (m < 0)) m += y;
    } else {
        m = copysign(0.0, y);
    }
    return m;
}

static double float_floordiv(double x, double y) {
    double m = fmod(x, y), div = (x - m) / y;
    if (m != 0.0 && (y < 0) != (m < 0)) div -= 1.0;
    if (div != 0.0) {
        double fl = floor(div);
        if (div - fl > 0.5) fl += 1.0;
        return fl;
    }
    return copysign(0.0, x / y);
}

Jv binop(Ctx *c, const Node *at, int op, Jv a, Jv b) {
    check_defined(c, at, a);
    check_defined(c, at, b);
    if (is_num(a) && is_num(b)) {
        if (is_int(a) && is_int(b) && op != OP_DIV) {
            int64_t x = as_int(a), y = as_int(b), r;
            switch (op) {
            case OP_ADD: if (__builtin_add_overflow(x, y, &r)) overflow(c, at); return jv_int(r);
            case OP_SUB: if (__builtin_sub_overflow(x, y, &r)) overflow(c, at); return jv_int(r);
            case OP_MUL: if (__builtin_mul_overflow(x, y, &r)) overflow(c, at); return jv_int(r);
            case OP_FLOORDIV: case OP_MOD: {
                if (y == 0) jfail(c, at, "integer division or modulo by zero");
                if (x == INT64_MIN && y == -1) overflow(c, at);
                int64_t q = x / y, m = x % y;
                if (m != 0 && ((m < 0) != (y < 0))) { q--; m += y; }
                return jv_int(op == OP_FLOORDIV ? q : m);
            }
            case OP_POW:
                if (y < 0) {
                    if (x == 0) jfail(c, at, "0.0 cannot be raised to a negative power");
                    return jv_float(pow((double)x, (double)y));
                }
                r = 1;
                for (int64_t k = 0; k < y; k++) {
                    if (__builtin_mul_overflow(r, x, &r)) overflow(c, at);
                    if (r == 0 || r == 1) break;
                }
                if (r == 1 && x == -1 && (y & 1)) r = -1;
                return jv_int(r);
            }
        }
        double x = as_float(a), y = as_float(b);
        switch (op) {
        case OP_ADD: return jv_float(x + y);
        case OP_SUB: return jv_float(x - y);
        case OP_MUL: return jv_float(x * y);
        case OP_DIV:
            if (y == 0) jfail(c, at, "division by zero");
            return jv_float(x / y);
        case OP_FLOORDIV:
            if (y == 0) jfail(c, at, "float floor division by zero");
            return jv_float(float_floordiv(x, y));
        case OP_MOD:
            if (y == 0) jfail(c, at, "float modulo");
            return jv_float(float_mod(x, y));
        case OP_POW:
            if (x == 0 && y < 0) jfail(c, at, "0.0 cannot be raised to a negative power");
            if (x < 0 && y != floor(y))
                jfail(c, at, "a negative number to a fractional power (a complex number), which "
                             "retort's template interpreter does not implement");
            return jv_float(pow(x, y));
        }
    }
    if (op == OP_ADD && a.kind == JV_STR && b.kind == JV_STR) {
        char *p = ar_alloc(&c->arena, a.s.n + b.s.n + 1);
        memcpy(p, a.s.p, a.s.n);
        memcpy(p + a.s.n, b.s.p, b.s.n);
        return jv_str(p, a.s.n + b.s.n);
    }
    if (op == OP_ADD && a.kind == JV_LIST && b.kind == JV_LIST && a.tuple == b.tuple) {
        Jv l = jv_list(&c->arena, a.list->n + b.list->n);
        l.tuple = a.tuple;
        for (size_t i = 0; i < a.list->n; i++) list_push(&c->arena, l.list, a.list->v[i]);
        for (size_t i = 0; i < b.list->n; i++) list_push(&c->arena, l.list, b.list->v[i]);
        return l;
    }
    if (op == OP_MUL && (a.kind == JV_STR || a.kind == JV_LIST) && is_int(b))
        return repeat(c, at, a, as_int(b));
    if (op == OP_MUL && (b.kind == JV_STR || b.kind == JV_LIST) && is_int(a))
        return repeat(c, at, b, as_int(a));
    if (op == OP_MOD && a.kind == JV_STR) return str_percent_format(c, at, a, b);
    bad_operands(c, at, op, a, b);
}

/* ---- containers ---- */
JList *iterate(Ctx *c, const Node *at, Jv v) {
    switch (v.kind) {
    case JV_LIST: return v.list;
    case JV_UNDEF: return jv_list(&c->arena, 0).list;
    case JV_DICT: {
        Jv l = jv_list(&c->arena, v.dict->n);
        for (size_t i = 0; i < v.dict->n; i++) list_push(&c->arena, l.list, v.dict->k[i]);
        return l.list;
    }
    case JV_STR: {
        Jv l = jv_list(&c->arena, v.s.n);
        size_t i = 0, len;
        while (i < v.s.n) {
            utf8_at(v.s.p + i, v.s.n - i, &len);
            list_push(&c->arena, l.list, jv_str(v.s.p + i, len));
            i += len;
        }
        return l.list;
    }
    default: jfail(c, at, "'%s' object is not iterable", jv_type_name(v));
    }
}

int contains(Ctx *c, const Node *at, Jv container, Jv item) {
    switch (container.kind) {
    case JV_STR:
        if (item.kind != JV_STR)
            jfail(c, at, "'in <string>' requires string as left operand, not %s", jv_type_name(item));
        if (item.s.n == 0) return 1;
        return memmem(container.s.p, container.s.n, item.s.p, item.s.n) != NULL;
    case JV_LIST:
        for (size_t i = 0; i < container.list->n; i++)
            if (jv_equal(container.list->v[i], item)) return 1;
        return 0;
    case JV_DICT: return dict_get(container.dict, item) != NULL;
    case JV_UNDEF: return 0;
    default: jfail(c, at, "argument of type '%s' is not iterable", jv_type_name(container));
    }
}

/* Python's slice.indices(): the start, stop and step a slice visits. */
static void slice_indices(Ctx *c, const Node *at, Jv start, Jv stop, Jv step, int64_t len,
                          int64_t *s0, int64_t *s1, int64_t *st) {
    int64_t k = 1;
    if (step.kind != JV_NONE) {
        if (!is_int(step)) jfail(c, at, "slice indices must be integers or None");
        k = as_int(step);
        if (k == 0) jfail(c, at, "slice step cannot be zero");
    }
    int64_t lo = k < 0 ? -1 : 0, hi = k < 0 ? len - 1 : len;
    int64_t a = k < 0 ? hi : lo, b = k < 0 ? lo : hi;
    if (start.kind != JV_NONE) {
        if (!is_int(start)) jfail(c, at, "slice indices must be integers or None");
        a = as_int(start);
        if (a < 0) { a += len; if (a < lo) a = lo; }
        else if (a > hi) a = hi;
    }
    if (stop.kind != JV_NONE) {
        if (!is_int(stop)) jfail(c, at, "slice indices must be integers or None");
        b = as_int(stop);
        if (b < 0) { b += len; if (b < lo) b = lo; }
        else if (b > hi) b = hi;
    }
    *s0 = a;
    *s1 = b;
    *st = k;
}

static Jv do_slice(Ctx *c, const Node *at, Jv obj, Jv start, Jv stop, Jv step) {
    check_defined(c, at, obj);
    if (obj.kind != JV_STR && obj.kind != JV_LIST) return undef_item(c, obj, jv_cstr("slice"));
    int64_t len = obj.kind == JV_STR ? (int64_t)utf8_count(obj.s.p, obj.s.n) : (int64_t)obj.list->n;
    int64_t a, b, k;
    slice_indices(c, at, start, stop, step, len, &a, &b, &k);
    if (obj.kind == JV_LIST) {
        Jv l = jv_list(&c->arena, 0);
        l.tuple = obj.tuple;
        for (int64_t i = a; k > 0 ? i < b : i > b; i += k) list_push(&c->arena, l.list, obj.list->v[i]);
        return l;
    }
    if (k == 1) {
        if (b <= a) return jv_str("", 0);
        size_t from = utf8_offset(obj.s.p, obj.s.n, (size_t)a);
        size_t to = from + utf8_offset(obj.s.p + from, obj.s.n - from, (size_t)(b - a));
        return jv_str(obj.s.p + from, to - from);
    }
    /* any step: code point offsets first */
    size_t *off = ar_alloc(&c->arena, ((size_t)len + 1) * sizeof(size_t));
    size_t i = 0, len1;
    for (int64_t k2 = 0; k2 < len; k2++) {
        off[k2] = i;
        utf8_at(obj.s.p + i, obj.s.n - i, &len1);
        i += len1;
    }
    off[len] = obj.s.n;
    Buf out = {.a = &c->arena};
    buf_put(&out, "", 0);
    for (int64_t x = a; k > 0 ? x < b : x > b; x += k) buf_put(&out, obj.s.p + off[x], off[x + 1] - off[x]);
    return jv_str(out.p, out.n);
}

static const char *const NUMBER_ATTRS[] = {"real", "imag", "numerator", "denominator", "conjugate",
                                           "bit_length", "bit_count", "to_bytes", "from_bytes",
                                           "as_integer_ratio", "is_integer", "hex", "fromhex", NULL};

Jv get_attr(Ctx *c, const Node *at, Jv obj, const char *name) {
    check_defined(c, at, obj);
    Jv m;
    switch (obj.kind) {
    case JV_DICT: {
        if (method_lookup(c, at, obj, name, &m)) return m;
        Jv *v = dict_get_str(obj.dict, name);
        return v ? *v : undef_attr(c, obj, name);
    }
    case JV_STR: case JV_LIST:
        if (method_lookup(c, at, obj, name, &m)) return m;
        return undef_attr(c, obj, name);
    case JV_NS: {
        Jv *v = dict_get_str(obj.dict, name);
        return v ? *v : undef_attr(c, obj, name);
    }
    case JV_LOOP: return loop_attr(c, at, obj.loop, name);
    case JV_INT: case JV_FLOAT: case JV_BOOL:
        for (int i = 0; NUMBER_ATTRS[i]; i++)
            if (!strcmp(name, NUMBER_ATTRS[i]))
                jfail(c, at, "the attribute %s of a number: retort's template interpreter does not "
                             "implement it; use a template without it", name);
        return undef_attr(c, obj, name);
    default: return undef_attr(c, obj, name);
    }
}

Jv get_item(Ctx *c, const Node *at, Jv obj, Jv key) {
    check_defined(c, at, obj);
    switch (obj.kind) {
    case JV_DICT: case JV_NS: {
        Jv *v = dict_get(obj.dict, key);
        if (v) return *v;
        break;
    }
    case JV_LIST: case JV_STR:
        if (is_int(key)) {
            int64_t i = as_int(key);
            int64_t len = obj.kind == JV_LIST ? (int64_t)obj.list->n : (int64_t)utf8_count(obj.s.p, obj.s.n);
            if (i < 0) i += len;
            if (i < 0 || i >= len) return undef_item(c, obj, key);
            if (obj.kind == JV_LIST) return obj.list->v[i];
            size_t from = utf8_offset(obj.s.p, obj.s.n, (size_t)i), n;
            utf8_at(obj.s.p + from, obj.s.n - from, &n);
            return jv_str(obj.s.p + from, n);
        }
        break;
    case JV_LOOP:
        if (key.kind == JV_STR) return loop_attr(c, at, obj.loop, ar_strndup(&c->arena, key.s.p, key.s.n));
        break;
    default: break;
    }
    if (key.kind == JV_STR && obj.kind != JV_NS) {
        Jv m;
        const char *name = ar_strndup(&c->arena, key.s.p, key.s.n);
        if ((obj.kind == JV_DICT || obj.kind == JV_STR || obj.kind == JV_LIST) &&
            method_lookup(c, at, obj, name, &m))
            return m;
    }
    return undef_item(c, obj, key);
}

/* ---- calls ---- */
static void eval_args(Ctx *c, const Node *n, Args *a) {
    a->npos = n->n;
    a->pos = n->n ? ar_alloc(&c->arena, n->n * sizeof(Jv)) : NULL;
    for (size_t i = 0; i < n->n; i++) a->pos[i] = eval_expr(c, n->items[i]);
    a->nkw = n->n2;
    a->kwn = n->names;
    a->kwv = n->n2 ? ar_alloc(&c->arena, n->n2 * sizeof(Jv)) : NULL;
    for (size_t i = 0; i < n->n2; i++) a->kwv[i] = eval_expr(c, n->items2[i]);
}

void bind_args(Ctx *c, const Node *at, const char *fname, const Args *a, const char *const *params,
               size_t nparams, Jv *out) {
    for (size_t i = 0; i < nparams; i++) out[i] = (Jv){.kind = JV_ABSENT};
    if (a->npos > nparams)
        jfail(c, at, "%s takes at most %zu argument%s (%zu given)", fname, nparams,
              nparams == 1 ? "" : "s", a->npos);
    for (size_t i = 0; i < a->npos; i++) out[i] = a->pos[i];
    for (size_t k = 0; k < a->nkw; k++) {
        size_t i;
        for (i = 0; i < nparams; i++)
            if (!strcmp(params[i], a->kwn[k])) break;
        if (i == nparams) jfail(c, at, "%s got an unexpected keyword argument '%s'", fname, a->kwn[k]);
        if (out[i].kind != JV_ABSENT) jfail(c, at, "%s got multiple values for argument '%s'", fname, a->kwn[k]);
        out[i] = a->kwv[k];
    }
}

static int body_uses(const Node *const *body, size_t n, const char *name);
static int node_uses(const Node *e, const char *name) {
    if (!e) return 0;
    if (e->kind == N_NAME && !strcmp(e->name, name)) return 1;
    if (e->kind == N_MACRO) return 0; /* a nested macro has its own */
    if (node_uses(e->a, name) || node_uses(e->b, name) || node_uses(e->c, name) || node_uses(e->d, name))
        return 1;
    if (body_uses((const Node *const *)e->items, e->n, name)) return 1;
    if (body_uses((const Node *const *)e->items2, e->n2, name)) return 1;
    if (e->defs)
        for (size_t i = 0; i < e->n_names; i++)
            if (node_uses(e->defs[i], name)) return 1;
    return 0;
}
static int body_uses(const Node *const *body, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (node_uses(body[i], name)) return 1;
    return 0;
}

static int exec_body(Ctx *c, Node **body, size_t n, Scope *s);

static Jv call_macro(Ctx *c, const Node *at, const JMacro *m, const Args *a, const Jv *caller) {
    const Node *def = m->def;
    if (c->call_depth >= MAX_CALL_DEPTH)
        jfail(c, at, "macro calls nested deeper than %d (a runaway recursion in the template)",
              MAX_CALL_DEPTH);
    step(c, at);
    Scope *s = scope_new(c, m->closure), *saved_scope = c->scope;
    size_t np = def->n_names;
    Jv *vals = ar_alloc(&c->arena, (np + 1) * sizeof(Jv));
    for (size_t i = 0; i < np; i++) vals[i] = (Jv){.kind = JV_ABSENT};
    int uses_varargs = a->npos > np && body_uses((const Node *const *)def->items, def->n, "varargs");
    if (a->npos > np && !uses_varargs)
        jfail(c, at, "macro '%s' takes not more than %zu argument(s)", m->name, np);
    Jv varargs = jv_list(&c->arena, 0);
    varargs.tuple = 1;
    for (size_t i = 0; i < a->npos; i++) {
        if (i < np) vals[i] = a->pos[i];
        else list_push(&c->arena, varargs.list, a->pos[i]);
    }
    Jv kwargs = jv_dict(&c->arena, 0);
    for (size_t k = 0; k < a->nkw; k++) {
        size_t i;
        for (i = 0; i < np; i++)
            if (!strcmp(def->names[i], a->kwn[k])) break;
        if (i < np) {
            if (vals[i].kind != JV_ABSENT)
                jfail(c, at, "macro '%s' got multiple values for argument '%s'", m->name, a->kwn[k]);
            vals[i] = a->kwv[k];
        } else if (body_uses((const Node *const *)def->items, def->n, "kwargs")) {
            dict_set(&c->arena, kwargs.dict, jv_cstr(a->kwn[k]), a->kwv[k]);
        } else {
            jfail(c, at, "macro '%s' takes no keyword argument '%s'", m->name, a->kwn[k]);
        }
    }
    c->scope = s; /* defaults see the parameters before them */
    for (size_t i = 0; i < np; i++) {
        if (vals[i].kind == JV_ABSENT)
            vals[i] = def->defs && def->defs[i]
                          ? eval_expr(c, def->defs[i])
                          : jv_undef(fmt_arena(c, "parameter '%s' was not provided", def->names[i]));
        scope_set(c, s, def->names[i], vals[i]);
    }
    scope_set(c, s, "varargs", varargs);
    scope_set(c, s, "kwargs", kwargs);
    if (caller) scope_set(c, s, "caller", *caller);
    Buf capture = {.a = &c->arena};
    buf_put(&capture, "", 0);
    Buf *saved = c->out;
    c->out = &capture;
    c->call_depth++;
    exec_body(c, def->items, def->n, s);
    c->call_depth--;
    c->out = saved;
    c->scope = saved_scope;
    return jv_str(capture.p, capture.n);
}

Jv call_value(Ctx *c, const Node *at, Jv callee, const Args *a) {
    switch (callee.kind) {
    case JV_UNDEF: check_defined(c, at, callee); break;
    case JV_MACRO: return call_macro(c, at, callee.macro, a, NULL);
    case JV_FUNC: return call_global(c, at, callee.func, a);
    case JV_METHOD: return call_method(c, at, callee.method, a);
    default: break;
    }
    jfail(c, at, "'%s' object is not callable", jv_type_name(callee));
}

/* ---- expressions ---- */
static Jv apply_filter_chain(Ctx *c, const Node *f, Jv base) {
    Jv v = !f->a ? base : f->a->kind == N_FILTER ? apply_filter_chain(c, f->a, base) : eval_expr(c, f->a);
    Args a;
    eval_args(c, f, &a);
    return apply_filter(c, f, f->op, f->name, v, &a);
}

static int compare_op(Ctx *c, const Node *at, int op, Jv a, Jv b) {
    switch (op) {
    case CMP_EQ: return jv_equal(a, b);
    case CMP_NE: return !jv_equal(a, b);
    case CMP_IN: return contains(c, at, b, a);
    case CMP_NOTIN: return !contains(c, at, b, a);
    default: break;
    }
    check_defined(c, at, a);
    check_defined(c, at, b);
    int r = jv_compare(a, b);
    static const char *const text[] = {"==", "!=", "<", "<=", ">", ">="};
    if (r == 2) {
        if (a.kind == JV_FLOAT || b.kind == JV_FLOAT) return 0; /* NaN */
        jfail(c, at, "'%s' not supported between instances of '%s' and '%s'", text[op],
              jv_type_name(a), jv_type_name(b));
    }
    switch (op) {
    case CMP_LT: return r < 0;
    case CMP_LE: return r <= 0;
    case CMP_GT: return r > 0;
    default: return r >= 0;
    }
}

Jv eval_expr(Ctx *c, const Node *e) {
    switch (e->kind) {
    case N_CONST: return e->value;
    case N_NAME: {
        Jv *v = scope_find(c->scope, e->name);
        return v ? *v : jv_undef(fmt_arena(c, "'%s' is undefined", e->name));
    }
    case N_GETATTR: return get_attr(c, e, eval_expr(c, e->a), e->name);
    case N_GETITEM: {
        Jv obj = eval_expr(c, e->a);
        return get_item(c, e, obj, eval_expr(c, e->b));
    }
    case N_SLICE: {
        Jv obj = eval_expr(c, e->a);
        Jv none = jv_none();
        Jv a = e->b ? eval_expr(c, e->b) : none, b = e->c ? eval_expr(c, e->c) : none,
           k = e->d ? eval_expr(c, e->d) : none;
        return do_slice(c, e, obj, a, b, k);
    }
    case N_CALL: {
        Jv callee = eval_expr(c, e->a);
        Args a;
        eval_args(c, e, &a);
        return check_nesting(c, e, call_value(c, e, callee, &a));
    }
    case N_FILTER: return check_nesting(c, e, apply_filter_chain(c, e, jv_none()));
    case N_TEST: {
        Jv v = eval_expr(c, e->a);
        Args a;
        eval_args(c, e, &a);
        return jv_bool(apply_test(c, e, e->op, e->name, v, &a));
    }
    case N_BIN: {
        Jv a = eval_expr(c, e->a);
        return binop(c, e, e->op, a, eval_expr(c, e->b));
    }
    case N_NEG: case N_POS: {
        Jv v = eval_expr(c, e->a);
        check_defined(c, e, v);
        if (e->kind == N_POS && is_num(v)) return v.kind == JV_BOOL ? jv_int(v.b) : v;
        if (v.kind == JV_FLOAT) return jv_float(-v.f);
        if (is_int(v)) {
            if (as_int(v) == INT64_MIN) overflow(c, e);
            return jv_int(-as_int(v));
        }
        jfail(c, e, "bad operand type for unary %c: '%s'", e->kind == N_NEG ? '-' : '+', jv_type_name(v));
    }
    case N_NOT: return jv_bool(!jv_truthy(eval_expr(c, e->a)));
    case N_AND: {
        Jv a = eval_expr(c, e->a);
        return jv_truthy(a) ? eval_expr(c, e->b) : a;
    }
    case N_OR: {
        Jv a = eval_expr(c, e->a);
        return jv_truthy(a) ? a : eval_expr(c, e->b);
    }
    case N_CMP: {
        Jv left = eval_expr(c, e->a);
        for (size_t i = 0; i < e->n; i++) {
            Jv right = eval_expr(c, e->items[i]);
            if (!compare_op(c, e, e->ops[i], left, right)) return jv_bool(0);
            left = right;
        }
        return jv_bool(1);
    }
    case N_COND:
        if (jv_truthy(eval_expr(c, e->a))) return eval_expr(c, e->b);
        if (e->c) return eval_expr(c, e->c);
        return jv_undef("the inline if-expression evaluated to false and has no else");
    case N_LIST: case N_TUPLE: {
        Jv l = jv_list(&c->arena, e->n);
        l.tuple = e->kind == N_TUPLE;
        for (size_t i = 0; i < e->n; i++) list_push(&c->arena, l.list, eval_expr(c, e->items[i]));
        return check_nesting(c, e, l);
    }
    case N_DICT: {
        Jv d = jv_dict(&c->arena, e->n);
        for (size_t i = 0; i < e->n; i++) {
            Jv k = eval_expr(c, e->items[i]);
            if (k.kind == JV_LIST && !k.tuple) jfail(c, e->items[i], "unhashable type: 'list'");
            if (k.kind == JV_DICT) jfail(c, e->items[i], "unhashable type: 'dict'");
            dict_set(&c->arena, d.dict, k, eval_expr(c, e->items2[i]));
        }
        return check_nesting(c, e, d);
    }
    case N_CONCAT: {
        Buf b = {.a = &c->arena};
        buf_put(&b, "", 0);
        for (size_t i = 0; i < e->n; i++) jv_write_str(&b, eval_expr(c, e->items[i]));
        return jv_str(b.p, b.n);
    }
    default: jfail(c, e, "a statement where an expression was expected (an internal error)");
    }
}

/* ---- statements ---- */
enum { FLOW_NEXT, FLOW_BREAK, FLOW_CONTINUE };

static int contains_namespace(Jv v) {
    if (v.kind == JV_NS) return 1;
    if (v.kind == JV_LIST) {
        for (size_t i = 0; i < v.list->n; i++)
            if (contains_namespace(v.list->v[i])) return 1;
    } else if (v.kind == JV_DICT) {
        for (size_t i = 0; i < v.dict->n; i++)
            if (contains_namespace(v.dict->v[i])) return 1;
    }
    return 0;
}

static void assign_names(Ctx *c, const Node *at, Scope *s, const char **names, size_t n, int tuple,
                         Jv v) {
    if (!tuple) {
        scope_set(c, s, names[0], v);
        return;
    }
    check_defined(c, at, v);
    JList *items = iterate(c, at, v);
    if (items->n != n)
        jfail(c, at, "%s values to unpack (expected %zu, got %zu)",
              items->n < n ? "not enough" : "too many", n, items->n);
    for (size_t i = 0; i < n; i++) scope_set(c, s, names[i], items->v[i]);
}

static int exec_for(Ctx *c, const Node *n, Scope *s) {
    JList *all = iterate(c, n->a, eval_expr(c, n->a));
    JList *items = all;
    if (n->b) {
        items = jv_list(&c->arena, all->n).list;
        for (size_t i = 0; i < all->n; i++) {
            Scope *fs = scope_new(c, s);
            assign_names(c, n, fs, n->names, n->n_names, n->flag, all->v[i]);
            c->scope = fs;
            int keep = jv_truthy(eval_expr(c, n->b));
            c->scope = s;
            if (keep) list_push(&c->arena, items, all->v[i]);
        }
    }
    if (items->n == 0) {
        Scope *es = scope_new(c, s);
        int flow = exec_body(c, n->items2, n->n2, es);
        c->scope = s;
        return flow == FLOW_NEXT ? FLOW_NEXT : flow;
    }
    JLoop *loop = ar_alloc(&c->arena, sizeof *loop);
    loop->items = items;
    for (size_t i = 0; i < items->n; i++) {
        step(c, n);
        Scope *is = scope_new(c, s);
        assign_names(c, n, is, n->names, n->n_names, n->flag, items->v[i]);
        JLoop *li = ar_alloc(&c->arena, sizeof *li);
        *li = *loop;
        li->index0 = i;
        scope_set(c, is, "loop", (Jv){.kind = JV_LOOP, .loop = li});
        int flow = exec_body(c, n->items, n->n, is);
        c->scope = s;
        if (flow == FLOW_BREAK) break;
    }
    return FLOW_NEXT;
}

static Jv capture_body(Ctx *c, Node **body, size_t n, Scope *s, int *flow) {
    Buf capture = {.a = &c->arena};
    buf_put(&capture, "", 0);
    Buf *saved = c->out;
    c->out = &capture;
    int f = exec_body(c, body, n, s);
    c->out = saved;
    if (flow) *flow = f;
    return jv_str(capture.p, capture.n);
}

/* More output than any chat template makes; a runaway template. */
#define MAX_OUTPUT ((size_t)256 << 20)

static int exec_stmt(Ctx *c, Node *n, Scope *s) {
    c->scope = s;
    c->stmt = n;
    if (c->out->n > MAX_OUTPUT || c->root.n > MAX_OUTPUT)
        jfail(c, n, "the template's output passed 256 MiB; a runaway template, which retort's "
                    "template interpreter stops");
    switch (n->kind) {
    case N_TEXT: buf_put(c->out, n->value.s.p, n->value.s.n); return FLOW_NEXT;
    case N_OUTPUT: jv_write_str(c->out, eval_expr(c, n->a)); return FLOW_NEXT;
    case N_IF:
        if (jv_truthy(eval_expr(c, n->a))) return exec_body(c, n->items, n->n, s);
        return exec_body(c, n->items2, n->n2, s);
    case N_FOR: return exec_for(c, n, s);
    case N_SET:
        if (n->op == SET_ATTR) {
            Jv *ns = scope_find(s, n->name);
            if (!ns || ns->kind != JV_NS)
                jfail(c, n, "can only set an attribute (%s.%s) on a namespace(); '%s' is %s", n->name,
                      n->attr, n->name, ns ? jv_type_name(*ns) : "undefined");
            if (n->attr[0] == '_')
                jfail(c, n, "Chat templates cannot store underscore-prefixed attributes on a "
                            "namespace, but got '%s'. Please rename the attribute.", n->attr);
            Jv v = eval_expr(c, n->b);
            if (v.kind == JV_NS || ((v.kind == JV_LIST || v.kind == JV_DICT) && contains_namespace(v)))
                jfail(c, n, "a namespace stored inside a namespace (%s.%s), which retort's template "
                            "interpreter refuses: it could hold itself", n->name, n->attr);
            dict_set(&c->arena, ns->dict, jv_cstr(n->attr), v);
            check_nesting(c, n, *ns);
        } else {
            assign_names(c, n, s, n->names, n->n_names, n->op == SET_TUPLE, eval_expr(c, n->b));
        }
        return FLOW_NEXT;
    case N_SET_BLOCK: {
        Jv v = capture_body(c, n->items, n->n, s, NULL);
        c->scope = s;
        if (n->a) v = apply_filter_chain(c, n->a, v);
        scope_set(c, s, n->name, v);
        return FLOW_NEXT;
    }
    case N_MACRO: {
        JMacro *m = ar_alloc(&c->arena, sizeof *m);
        m->def = n;
        m->closure = s;
        m->name = n->name;
        scope_set(c, s, n->name, (Jv){.kind = JV_MACRO, .macro = m});
        return FLOW_NEXT;
    }
    case N_CALL_BLOCK: {
        const Node *call = n->a;
        Jv callee = eval_expr(c, call->a);
        Args a;
        eval_args(c, call, &a);
        JMacro *m = ar_alloc(&c->arena, sizeof *m);
        m->def = n;
        m->closure = s;
        m->name = "caller";
        Jv caller = {.kind = JV_MACRO, .macro = m};
        if (callee.kind != JV_MACRO)
            jfail(c, n, "a call block calls %s, not a macro", jv_type_name(callee));
        jv_write_str(c->out, call_macro(c, n, callee.macro, &a, &caller));
        return FLOW_NEXT;
    }
    case N_FILTER_BLOCK: {
        Jv v = capture_body(c, n->items, n->n, s, NULL);
        c->scope = s;
        jv_write_str(c->out, apply_filter_chain(c, n->a, v));
        return FLOW_NEXT;
    }
    case N_BREAK: return FLOW_BREAK;
    case N_CONTINUE: return FLOW_CONTINUE;
    case N_GENERATION: {
        int flow;
        Jv text = capture_body(c, n->items, n->n, s, &flow);
        if (c->n_spans == c->cap_spans) {
            size_t cap = c->cap_spans ? c->cap_spans * 2 : 16;
            JinjaSpan *ns = ar_alloc(&c->arena, cap * sizeof *ns);
            if (c->n_spans) memcpy(ns, c->spans, c->n_spans * sizeof *ns);
            c->spans = ns;
            c->cap_spans = cap;
        }
        c->spans[c->n_spans++] = (JinjaSpan){c->root.n, c->root.n + text.s.n};
        buf_put(c->out, text.s.p, text.s.n);
        return flow;
    }
    default: jfail(c, n, "an expression where a statement was expected (an internal error)");
    }
}

static int exec_body(Ctx *c, Node **body, size_t n, Scope *s) {
    for (size_t i = 0; i < n; i++) {
        int flow = exec_stmt(c, body[i], s);
        if (flow != FLOW_NEXT) return flow;
    }
    c->scope = s;
    return FLOW_NEXT;
}

/* A render that needs this much memory is a runaway (a string doubled in a
 * loop); chat templates need kilobytes. */
#define MAX_RENDER_MEMORY ((size_t)1 << 30)

static void memory_limit(void *arg) {
    Ctx *c = arg;
    c->arena.limit = 0; /* the error message itself may allocate */
    jfail(c, c->stmt, "the template needed over 1 GiB of memory to render; a runaway template, "
                   "which retort's template interpreter stops");
}

int jinja_render(const JinjaTemplate *t, json_t *vars, const struct tm *now, char **out,
                 size_t *out_len, JinjaSpan **spans, size_t *n_spans) {
    *out = NULL;
    if (out_len) *out_len = 0;
    if (spans) *spans = NULL;
    if (n_spans) *n_spans = 0;
    if (vars && !json_is_object(vars)) return err_set("%s: the template's variables must be a JSON object", t->label);
    Ctx *c = xcalloc(1, sizeof *c);
    c->t = t;
    c->arena.limit = MAX_RENDER_MEMORY;
    c->arena.on_limit = memory_limit;
    c->arena.on_limit_arg = c;
    c->root.a = &c->arena;
    buf_put(&c->root, "", 0);
    c->out = &c->root;
    if (now) {
        c->now = *now;
    } else {
        time_t tt = time(NULL);
        localtime_r(&tt, &c->now);
    }
    if (setjmp(c->fail)) {
        ar_free_all(&c->arena);
        free(c);
        return -1;
    }
    Scope *globals = scope_new(c, NULL);
    for (int g = 0; g < G_COUNT; g++) scope_set(c, globals, GLOBAL_NAMES[g], (Jv){.kind = JV_FUNC, .func = g});
    Scope *given = scope_new(c, globals);
    if (vars) {
        const char *k;
        json_t *v;
        json_object_foreach(vars, k, v) scope_set(c, given, k, jv_from_json(&c->arena, v));
    }
    Scope *top = scope_new(c, given);
    c->scope = top;
    exec_body(c, t->body, t->n_body, top);
    *out = xmalloc(c->root.n + 1);
    memcpy(*out, c->root.p, c->root.n + 1);
    if (out_len) *out_len = c->root.n;
    if (spans && c->n_spans) {
        *spans = xmalloc(c->n_spans * sizeof **spans);
        memcpy(*spans, c->spans, c->n_spans * sizeof **spans);
        *n_spans = c->n_spans;
    }
    ar_free_all(&c->arena);
    free(c);
    return 0;
}
