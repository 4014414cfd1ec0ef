/* data/jinja_parse.c — tokens to syntax tree, as jinja2's parser reads them.
 *
 * Recursive descent with jinja2's precedence (from loosest: conditional
 * expression, or, and, not, comparisons and in, + -, ~, * / // %, **, unary
 * - +, then postfix . [] () and |filters and is-tests, which bind tighter than
 * any operator: `not x is none` is not (x is none), `a ~ b|upper` is
 * a ~ (b|upper)). Every node keeps its line:column. What the interpreter does
 * not implement is refused here, naming the construct and its line:column, so
 * a template either renders as transformers renders it or is refused before
 * any data is built with it. Nesting is bounded (MAX_DEPTH) so neither the
 * parser nor the interpreter can run out of stack.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/jinja_impl.h"
#include "util/utf8.h"
#include "util/util.h"

#define MAX_DEPTH 200

static void enter(Parser *P, size_t pos) {
    if (++P->depth > MAX_DEPTH)
        pfail(P, pos, "expressions or blocks nested more than %d deep; retort's template interpreter "
                      "refuses them", MAX_DEPTH);
}

/* ---- parser helpers ---- */
static Tok *cur(Parser *P) { return &P->toks[P->cur]; }
static Tok *peek(Parser *P, size_t k) {
    size_t i = P->cur + k;
    return &P->toks[i < P->n_toks ? i : P->n_toks - 1];
}
static void advance(Parser *P) {
    if (P->cur + 1 < P->n_toks) P->cur++;
}
static int tok_is(const Tok *t, TokKind kind, const char *text) {
    if (t->kind != kind) return 0;
    return !text || (t->n == strlen(text) && memcmp(t->p, text, t->n) == 0);
}
static int is_op(Parser *P, const char *op) { return tok_is(cur(P), TK_OP, op); }
static int is_name(Parser *P, const char *name) { return tok_is(cur(P), TK_NAME, name); }
static int skip_op(Parser *P, const char *op) {
    if (!is_op(P, op)) return 0;
    advance(P);
    return 1;
}
static int skip_name(Parser *P, const char *name) {
    if (!is_name(P, name)) return 0;
    advance(P);
    return 1;
}

static const char *describe(Parser *P, const Tok *t) {
    static _Thread_local char buf[96];
    switch (t->kind) {
    case TK_DATA: return "template text";
    case TK_VAR_BEGIN: return "'{{'";
    case TK_VAR_END: return "the end of the tag ('}}')";
    case TK_BLOCK_BEGIN: return "'{%'";
    case TK_BLOCK_END: return "the end of the tag ('%}')";
    case TK_EOF: return "the end of the template";
    case TK_STRING: return "a string";
    case TK_INT: case TK_FLOAT: return "a number";
    default: break;
    }
    (void)P;
    snprintf(buf, sizeof buf, "'%.*s'", (int)(t->n < 60 ? t->n : 60), t->p);
    return buf;
}

static void expect_op(Parser *P, const char *op) {
    if (!skip_op(P, op)) pfail(P, cur(P)->pos, "expected '%s', got %s", op, describe(P, cur(P)));
}

static const char *expect_name(Parser *P) {
    Tok *t = cur(P);
    if (t->kind != TK_NAME) pfail(P, t->pos, "expected a name, got %s", describe(P, t));
    advance(P);
    return ar_strndup(&P->t->arena, t->p, t->n);
}

static void expect_block_end(Parser *P) {
    if (cur(P)->kind != TK_BLOCK_END)
        pfail(P, cur(P)->pos, "expected the end of the tag ('%%}'), got %s", describe(P, cur(P)));
    advance(P);
}

static Node *mk(Parser *P, NodeKind kind, size_t pos) {
    Node *n = ar_alloc(&P->t->arena, sizeof *n);
    n->kind = kind;
    line_col(P, pos, &n->line, &n->col);
    return n;
}

/* growable node arrays in the template arena */
typedef struct { Node **v; size_t n, cap; } NodeVec;
static void nv_push(Parser *P, NodeVec *v, Node *n) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 4;
        Node **nv = ar_alloc(&P->t->arena, cap * sizeof(Node *));
        if (v->n) memcpy(nv, v->v, v->n * sizeof(Node *));
        v->v = nv;
        v->cap = cap;
    }
    v->v[v->n++] = n;
}
typedef struct { const char **v; size_t n, cap; } NameVec;
static void names_push(Parser *P, NameVec *v, const char *s) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 4;
        const char **nv = ar_alloc(&P->t->arena, cap * sizeof(char *));
        if (v->n) memcpy(nv, v->v, v->n * sizeof(char *));
        v->v = nv;
        v->cap = cap;
    }
    v->v[v->n++] = s;
}

/* ---- expressions ---- */
static Node *parse_expression(Parser *P, int with_condexpr);
static Node *parse_unary(Parser *P, int with_filter);
static Node *parse_primary(Parser *P);
static Node *parse_postfix(Parser *P, Node *n);
static Node *parse_filter(Parser *P, Node *n, int start_inline);

/* `(a, b=c)` after the callee: positional then keyword arguments. */
static void parse_call_args(Parser *P, Node *call) {
    size_t open = cur(P)->pos;
    expect_op(P, "(");
    NodeVec args = {0}, kwv = {0};
    NameVec kwn = {0};
    while (!is_op(P, ")")) {
        if (args.n || kwv.n) {
            expect_op(P, ",");
            if (is_op(P, ")")) break;
        }
        if (is_op(P, "*") || is_op(P, "**"))
            pfail(P, cur(P)->pos, "*args and **kwargs in calls: %s", NOT_IMPL);
        if (cur(P)->kind == TK_NAME && tok_is(peek(P, 1), TK_OP, "=")) {
            const char *k = expect_name(P);
            advance(P);
            names_push(P, &kwn, k);
            nv_push(P, &kwv, parse_expression(P, 1));
        } else {
            if (kwv.n) pfail(P, cur(P)->pos, "a positional argument after keyword arguments");
            nv_push(P, &args, parse_expression(P, 1));
        }
    }
    (void)open;
    expect_op(P, ")");
    call->items = args.v;
    call->n = args.n;
    call->items2 = kwv.v;
    call->n2 = kwv.n;
    call->names = kwn.v;
    call->n_names = kwn.n;
}

static Node *parse_call(Parser *P, Node *callee) {
    Node *n = mk(P, N_CALL, cur(P)->pos);
    n->a = callee;
    parse_call_args(P, n);
    return n;
}

static Node *parse_subscribed(Parser *P) {
    size_t pos = cur(P)->pos;
    Node *parts[3] = {NULL, NULL, NULL};
    if (is_op(P, ":")) {
        advance(P);
    } else {
        Node *e = parse_expression(P, 1);
        if (!is_op(P, ":")) return e;
        advance(P);
        parts[0] = e;
    }
    if (!is_op(P, "]") && !is_op(P, ",") && !is_op(P, ":")) parts[1] = parse_expression(P, 1);
    if (is_op(P, ":")) {
        advance(P);
        if (!is_op(P, "]") && !is_op(P, ",")) parts[2] = parse_expression(P, 1);
    }
    Node *s = mk(P, N_SLICE, pos);
    s->b = parts[0];
    s->c = parts[1];
    s->d = parts[2];
    return s;
}

static Node *parse_subscript(Parser *P, Node *obj) {
    Tok *t = cur(P);
    if (skip_op(P, ".")) {
        Tok *a = cur(P);
        if (a->kind == TK_NAME) {
            Node *n = mk(P, N_GETATTR, a->pos);
            n->a = obj;
            n->name = expect_name(P);
            return n;
        }
        if (a->kind != TK_INT) pfail(P, a->pos, "expected a name after '.', got %s", describe(P, a));
        Node *n = mk(P, N_GETITEM, a->pos);
        n->a = obj;
        n->b = mk(P, N_CONST, a->pos);
        n->b->value = jv_int(a->i);
        advance(P);
        return n;
    }
    expect_op(P, "[");
    NodeVec args = {0};
    while (!is_op(P, "]")) {
        if (args.n) expect_op(P, ",");
        if (is_op(P, "]")) break;
        nv_push(P, &args, parse_subscribed(P));
    }
    expect_op(P, "]");
    if (args.n == 0) pfail(P, t->pos, "empty subscript []");
    Node *idx = args.v[0];
    for (size_t i = 0; args.n > 1 && i < args.n; i++)
        if (args.v[i]->kind == N_SLICE)
            pfail(P, t->pos, "a slice inside a tuple subscript (x[a:b, c]): %s", NOT_IMPL);
    if (args.n > 1) {
        idx = mk(P, N_TUPLE, t->pos);
        idx->items = args.v;
        idx->n = args.n;
    }
    if (idx->kind == N_SLICE) {
        idx->a = obj;
        return idx;
    }
    Node *n = mk(P, N_GETITEM, t->pos);
    n->a = obj;
    n->b = idx;
    return n;
}

static Node *parse_postfix(Parser *P, Node *n) {
    while (1) {
        if (is_op(P, ".") || is_op(P, "[")) n = parse_subscript(P, n);
        else if (is_op(P, "(")) n = parse_call(P, n);
        else return n;
    }
}

/* a dotted name after | or is */
static const char *parse_dotted_name(Parser *P) {
    const char *name = expect_name(P);
    while (is_op(P, ".")) {
        advance(P);
        const char *more = expect_name(P);
        size_t a = strlen(name), b = strlen(more);
        char *both = ar_alloc(&P->t->arena, a + b + 2);
        memcpy(both, name, a);
        both[a] = '.';
        memcpy(both + a + 1, more, b + 1);
        name = both;
    }
    return name;
}

static Node *parse_filter(Parser *P, Node *n, int start_inline) {
    while (is_op(P, "|") || start_inline) {
        if (!start_inline) advance(P);
        start_inline = 0;
        size_t pos = cur(P)->pos;
        const char *name = parse_dotted_name(P);
        int id = filter_id(name);
        if (id == -1)
            pfail(P, pos, "no filter named '%s' (jinja2 has none either); check its spelling", name);
        if (id == -2) pfail(P, pos, "the filter '%s': %s", name, NOT_IMPL);
        Node *f = mk(P, N_FILTER, pos);
        f->a = n;
        f->name = name;
        f->op = id;
        if (is_op(P, "(")) parse_call_args(P, f);
        n = f;
    }
    return n;
}

static Node *parse_test(Parser *P, Node *operand) {
    size_t is_pos = cur(P)->pos;
    advance(P); /* is */
    int negated = skip_name(P, "not");
    size_t pos = cur(P)->pos;
    const char *name = parse_dotted_name(P);
    int id = test_id(name);
    if (id == -1) pfail(P, pos, "no test named '%s' (jinja2 has none either); check its spelling", name);
    if (id == -2) pfail(P, pos, "the test '%s': %s", name, NOT_IMPL);
    Node *t = mk(P, N_TEST, is_pos);
    t->a = operand;
    t->name = name;
    t->op = id;
    Tok *c = cur(P);
    if (is_op(P, "(")) {
        parse_call_args(P, t);
    } else if ((c->kind == TK_NAME || c->kind == TK_STRING || c->kind == TK_INT ||
                c->kind == TK_FLOAT || is_op(P, "(") || is_op(P, "[") || is_op(P, "{")) &&
               !is_name(P, "else") && !is_name(P, "or") && !is_name(P, "and")) {
        if (is_name(P, "is")) pfail(P, c->pos, "tests cannot be chained with 'is'");
        Node *arg = parse_postfix(P, parse_primary(P));
        t->items = ar_alloc(&P->t->arena, sizeof(Node *));
        t->items[0] = arg;
        t->n = 1;
    }
    if (!negated) return t;
    Node *n = mk(P, N_NOT, is_pos);
    n->a = t;
    return n;
}

static Node *parse_filter_expr(Parser *P, Node *n) {
    while (1) {
        if (is_op(P, "|")) n = parse_filter(P, n, 0);
        else if (is_name(P, "is")) n = parse_test(P, n);
        else if (is_op(P, "(")) n = parse_call(P, n);
        else return n;
    }
}

static Node *parse_unary(Parser *P, int with_filter) {
    Tok *t = cur(P);
    Node *n;
    enter(P, t->pos);
    if (is_op(P, "-") || is_op(P, "+")) {
        advance(P);
        n = mk(P, t->p[0] == '-' ? N_NEG : N_POS, t->pos);
        n->a = parse_unary(P, 0);
    } else {
        n = parse_primary(P);
    }
    n = parse_postfix(P, n);
    if (with_filter) n = parse_filter_expr(P, n);
    P->depth--;
    return n;
}

static Node *parse_tuple(Parser *P, int simplified, int with_condexpr, const char *end_name,
                         int explicit_parens);

static Node *parse_primary(Parser *P) {
    Tok *t = cur(P);
    Node *n;
    switch (t->kind) {
    case TK_NAME:
        if (tok_is(t, TK_NAME, "true") || tok_is(t, TK_NAME, "True") ||
            tok_is(t, TK_NAME, "false") || tok_is(t, TK_NAME, "False")) {
            n = mk(P, N_CONST, t->pos);
            n->value = jv_bool(t->p[0] == 't' || t->p[0] == 'T');
        } else if (tok_is(t, TK_NAME, "none") || tok_is(t, TK_NAME, "None")) {
            n = mk(P, N_CONST, t->pos);
            n->value = jv_none();
        } else {
            n = mk(P, N_NAME, t->pos);
            n->name = ar_strndup(&P->t->arena, t->p, t->n);
        }
        advance(P);
        return n;
    case TK_STRING: {
        /* adjacent literals join, as in Python */
        Buf b = {.a = &P->t->arena};
        buf_put(&b, "", 0);
        n = mk(P, N_CONST, t->pos);
        while (cur(P)->kind == TK_STRING) {
            buf_put(&b, cur(P)->p, cur(P)->n);
            advance(P);
        }
        n->value = jv_str(b.p, b.n);
        return n;
    }
    case TK_INT:
        n = mk(P, N_CONST, t->pos);
        n->value = jv_int(t->i);
        advance(P);
        return n;
    case TK_FLOAT:
        n = mk(P, N_CONST, t->pos);
        n->value = jv_float(t->f);
        advance(P);
        return n;
    default:
        break;
    }
    if (skip_op(P, "(")) {
        n = parse_tuple(P, 0, 1, NULL, 1);
        expect_op(P, ")");
        return n;
    }
    if (skip_op(P, "[")) {
        n = mk(P, N_LIST, t->pos);
        NodeVec items = {0};
        while (!is_op(P, "]")) {
            if (items.n) expect_op(P, ",");
            if (is_op(P, "]")) break;
            nv_push(P, &items, parse_expression(P, 1));
        }
        expect_op(P, "]");
        n->items = items.v;
        n->n = items.n;
        return n;
    }
    if (skip_op(P, "{")) {
        n = mk(P, N_DICT, t->pos);
        NodeVec keys = {0}, vals = {0};
        while (!is_op(P, "}")) {
            if (keys.n) expect_op(P, ",");
            if (is_op(P, "}")) break;
            nv_push(P, &keys, parse_expression(P, 1));
            expect_op(P, ":");
            nv_push(P, &vals, parse_expression(P, 1));
        }
        expect_op(P, "}");
        n->items = keys.v;
        n->items2 = vals.v;
        n->n = keys.n;
        n->n2 = vals.n;
        return n;
    }
    pfail(P, t->pos, "expected an expression, got %s", describe(P, t));
}

static Node *parse_pow(Parser *P) {
    Node *l = parse_unary(P, 1);
    while (is_op(P, "**")) {
        Node *n = mk(P, N_BIN, cur(P)->pos);
        advance(P);
        n->op = OP_POW;
        n->a = l;
        n->b = parse_unary(P, 1);
        l = n;
    }
    return l;
}

static Node *parse_math2(Parser *P) {
    Node *l = parse_pow(P);
    while (1) {
        int op = is_op(P, "*") ? OP_MUL : is_op(P, "/") ? OP_DIV : is_op(P, "//") ? OP_FLOORDIV
               : is_op(P, "%") ? OP_MOD : -1;
        if (op < 0) return l;
        Node *n = mk(P, N_BIN, cur(P)->pos);
        advance(P);
        n->op = op;
        n->a = l;
        n->b = parse_pow(P);
        l = n;
    }
}

static Node *parse_concat(Parser *P) {
    Node *first = parse_math2(P);
    if (!is_op(P, "~")) return first;
    Node *n = mk(P, N_CONCAT, cur(P)->pos);
    NodeVec items = {0};
    nv_push(P, &items, first);
    while (skip_op(P, "~")) nv_push(P, &items, parse_math2(P));
    n->items = items.v;
    n->n = items.n;
    return n;
}

static Node *parse_math1(Parser *P) {
    Node *l = parse_concat(P);
    while (is_op(P, "+") || is_op(P, "-")) {
        Node *n = mk(P, N_BIN, cur(P)->pos);
        n->op = is_op(P, "+") ? OP_ADD : OP_SUB;
        advance(P);
        n->a = l;
        n->b = parse_concat(P);
        l = n;
    }
    return l;
}

static Node *parse_compare(Parser *P) {
    size_t pos = cur(P)->pos;
    Node *first = parse_math1(P);
    NodeVec operands = {0};
    int ops[64];
    while (1) {
        int op = is_op(P, "==") ? CMP_EQ : is_op(P, "!=") ? CMP_NE : is_op(P, "<") ? CMP_LT
               : is_op(P, "<=") ? CMP_LE : is_op(P, ">") ? CMP_GT : is_op(P, ">=") ? CMP_GE : -1;
        if (op >= 0) {
            advance(P);
        } else if (is_name(P, "in")) {
            advance(P);
            op = CMP_IN;
        } else if (is_name(P, "not") && tok_is(peek(P, 1), TK_NAME, "in")) {
            advance(P);
            advance(P);
            op = CMP_NOTIN;
        } else {
            break;
        }
        if (operands.n == 64) pfail(P, cur(P)->pos, "more than 64 chained comparisons");
        ops[operands.n] = op;
        nv_push(P, &operands, parse_math1(P));
    }
    if (!operands.n) return first;
    Node *n = mk(P, N_CMP, pos);
    n->a = first;
    n->items = operands.v;
    n->n = operands.n;
    n->ops = ar_alloc(&P->t->arena, operands.n * sizeof(int));
    memcpy(n->ops, ops, operands.n * sizeof(int));
    return n;
}

static Node *parse_not(Parser *P) {
    if (is_name(P, "not")) {
        Node *n = mk(P, N_NOT, cur(P)->pos);
        enter(P, cur(P)->pos);
        advance(P);
        n->a = parse_not(P);
        P->depth--;
        return n;
    }
    return parse_compare(P);
}

static Node *parse_and(Parser *P) {
    Node *l = parse_not(P);
    while (is_name(P, "and")) {
        Node *n = mk(P, N_AND, cur(P)->pos);
        advance(P);
        n->a = l;
        n->b = parse_not(P);
        l = n;
    }
    return l;
}

static Node *parse_or(Parser *P) {
    Node *l = parse_and(P);
    while (is_name(P, "or")) {
        Node *n = mk(P, N_OR, cur(P)->pos);
        advance(P);
        n->a = l;
        n->b = parse_and(P);
        l = n;
    }
    return l;
}

static Node *parse_condexpr(Parser *P) {
    Node *e = parse_or(P);
    while (is_name(P, "if")) {
        Node *n = mk(P, N_COND, cur(P)->pos);
        advance(P);
        n->a = parse_or(P);
        n->b = e;
        enter(P, n->a ? cur(P)->pos : 0);
        if (skip_name(P, "else")) n->c = parse_condexpr(P);
        P->depth--;
        e = n;
    }
    return e;
}

static Node *parse_expression(Parser *P, int with_condexpr) {
    return with_condexpr ? parse_condexpr(P) : parse_or(P);
}

static int tuple_end(Parser *P, const char *end_name) {
    TokKind k = cur(P)->kind;
    if (k == TK_VAR_END || k == TK_BLOCK_END || k == TK_EOF || is_op(P, ")")) return 1;
    return end_name && is_name(P, end_name);
}

static Node *parse_tuple(Parser *P, int simplified, int with_condexpr, const char *end_name,
                         int explicit_parens) {
    size_t pos = cur(P)->pos;
    NodeVec args = {0};
    int is_tuple = 0;
    while (1) {
        if (args.n) expect_op(P, ",");
        if (tuple_end(P, end_name)) break;
        nv_push(P, &args, simplified ? parse_primary(P) : parse_expression(P, with_condexpr));
        if (is_op(P, ",")) is_tuple = 1;
        else break;
    }
    if (!is_tuple) {
        if (args.n) return args.v[0];
        if (!explicit_parens) pfail(P, cur(P)->pos, "expected an expression, got %s", describe(P, cur(P)));
    }
    Node *n = mk(P, N_TUPLE, pos);
    n->items = args.v;
    n->n = args.n;
    return n;
}

/* ---- statements ---- */
static void subparse(Parser *P, const char *const *ends, NodeVec *body, size_t open_pos);

/* The names a for/set assigns: `x`, `a, b` or `(a, b)`. */
static void parse_targets(Parser *P, const char *end_name, NameVec *names, int *is_tuple) {
    size_t pos = cur(P)->pos;
    Node *t = parse_tuple(P, 1, 0, end_name, 0);
    *is_tuple = t->kind == N_TUPLE;
    if (t->kind == N_NAME) {
        names_push(P, names, t->name);
        return;
    }
    if (t->kind != N_TUPLE) pfail(P, pos, "can only assign to names here");
    if (t->n == 0) pfail(P, pos, "an empty tuple () to assign to; name the variables");
    for (size_t i = 0; i < t->n; i++) {
        if (t->items[i]->kind != N_NAME)
            pfail(P, pos, "nested tuples as assignment targets: %s", NOT_IMPL);
        names_push(P, names, t->items[i]->name);
    }
}

static const char *const END_IF[] = {"elif", "else", "endif", NULL};
static const char *const END_IF_ELSE[] = {"endif", NULL};
static const char *const END_FOR[] = {"endfor", "else", NULL};
static const char *const END_FOR_ELSE[] = {"endfor", NULL};

static Node *parse_if(Parser *P, size_t pos) {
    Node *n = mk(P, N_IF, pos);
    n->a = parse_tuple(P, 0, 0, NULL, 0);
    expect_block_end(P);
    NodeVec body = {0}, orelse = {0};
    subparse(P, END_IF, &body, pos);
    n->items = body.v;
    n->n = body.n;
    Tok *t = cur(P); /* the end tag's name */
    if (tok_is(t, TK_NAME, "elif")) {
        advance(P);
        nv_push(P, &orelse, parse_if(P, t->pos));
        n->items2 = orelse.v;
        n->n2 = orelse.n;
        return n;
    }
    if (tok_is(t, TK_NAME, "else")) {
        advance(P);
        expect_block_end(P);
        subparse(P, END_IF_ELSE, &orelse, pos);
        n->items2 = orelse.v;
        n->n2 = orelse.n;
    }
    advance(P); /* endif */
    expect_block_end(P);
    return n;
}

static Node *parse_for(Parser *P, size_t pos) {
    Node *n = mk(P, N_FOR, pos);
    NameVec names = {0};
    parse_targets(P, "in", &names, &n->flag);
    n->names = names.v;
    n->n_names = names.n;
    if (!skip_name(P, "in")) pfail(P, cur(P)->pos, "expected 'in' in the for loop, got %s", describe(P, cur(P)));
    n->a = parse_tuple(P, 0, 0, "recursive", 0);
    if (skip_name(P, "if")) n->b = parse_expression(P, 1);
    if (is_name(P, "recursive")) pfail(P, cur(P)->pos, "recursive loops: %s", NOT_IMPL);
    expect_block_end(P);
    NodeVec body = {0}, orelse = {0};
    P->loop_depth++;
    subparse(P, END_FOR, &body, pos);
    P->loop_depth--;
    if (skip_name(P, "else")) {
        expect_block_end(P);
        subparse(P, END_FOR_ELSE, &orelse, pos);
    }
    advance(P); /* endfor */
    expect_block_end(P);
    n->items = body.v;
    n->n = body.n;
    n->items2 = orelse.v;
    n->n2 = orelse.n;
    return n;
}

static const char *const END_SET[] = {"endset", NULL};

static Node *parse_set(Parser *P, size_t pos) {
    Node *n;
    if (cur(P)->kind == TK_NAME && tok_is(peek(P, 1), TK_OP, ".")) {
        n = mk(P, N_SET, pos);
        n->op = SET_ATTR;
        n->name = expect_name(P);
        advance(P);
        n->attr = expect_name(P);
    } else {
        NameVec names = {0};
        int is_tuple;
        n = mk(P, N_SET, pos);
        parse_targets(P, NULL, &names, &is_tuple);
        n->op = is_tuple ? SET_TUPLE : SET_NAME;
        n->names = names.v;
        n->n_names = names.n;
        n->name = names.v[0];
    }
    if (skip_op(P, "=")) {
        n->b = parse_tuple(P, 0, 1, NULL, 0);
        expect_block_end(P);
        return n;
    }
    if (n->op != SET_NAME) pfail(P, pos, "a {%% set %%} block assigns one name");
    n->kind = N_SET_BLOCK;
    if (is_op(P, "|")) n->a = parse_filter(P, NULL, 0);
    expect_block_end(P);
    NodeVec body = {0};
    subparse(P, END_SET, &body, pos);
    advance(P);
    expect_block_end(P);
    n->items = body.v;
    n->n = body.n;
    return n;
}

/* (a, b=1, ...) of a macro or of a call block's caller */
static void parse_signature(Parser *P, Node *n) {
    NameVec names = {0};
    NodeVec defs = {0};
    int seen_default = 0;
    expect_op(P, "(");
    while (!is_op(P, ")")) {
        if (names.n) expect_op(P, ",");
        size_t pos = cur(P)->pos;
        names_push(P, &names, expect_name(P));
        if (skip_op(P, "=")) {
            nv_push(P, &defs, parse_expression(P, 1));
            seen_default = 1;
        } else {
            if (seen_default) pfail(P, pos, "a parameter without a default after one with a default");
            nv_push(P, &defs, NULL);
        }
    }
    expect_op(P, ")");
    n->names = names.v;
    n->n_names = names.n;
    n->defs = defs.v;
}

static const char *const END_MACRO[] = {"endmacro", NULL};
static const char *const END_CALL[] = {"endcall", NULL};
static const char *const END_FILTER[] = {"endfilter", NULL};
static const char *const END_GENERATION[] = {"endgeneration", NULL};

static Node *parse_statement_inner(Parser *P);

static Node *parse_statement(Parser *P) {
    enter(P, cur(P)->pos);
    Node *n = parse_statement_inner(P);
    P->depth--;
    return n;
}

static Node *parse_statement_inner(Parser *P) {
    Tok *t = cur(P);
    if (t->kind != TK_NAME) pfail(P, t->pos, "expected a tag name, got %s", describe(P, t));
    size_t pos = t->pos;
    const char *tag = ar_strndup(&P->t->arena, t->p, t->n);
    advance(P);
    if (!strcmp(tag, "if")) return parse_if(P, pos);
    if (!strcmp(tag, "for")) return parse_for(P, pos);
    if (!strcmp(tag, "set")) return parse_set(P, pos);
    if (!strcmp(tag, "break") || !strcmp(tag, "continue")) {
        if (!P->loop_depth) pfail(P, pos, "'%s' outside a for loop", tag);
        expect_block_end(P);
        return mk(P, tag[0] == 'b' ? N_BREAK : N_CONTINUE, pos);
    }
    if (!strcmp(tag, "macro")) {
        Node *n = mk(P, N_MACRO, pos);
        n->name = expect_name(P);
        parse_signature(P, n);
        expect_block_end(P);
        int depth = P->loop_depth;
        P->loop_depth = 0;
        NodeVec body = {0};
        subparse(P, END_MACRO, &body, pos);
        P->loop_depth = depth;
        advance(P);
        expect_block_end(P);
        n->items = body.v;
        n->n = body.n;
        return n;
    }
    if (!strcmp(tag, "call")) {
        Node *n = mk(P, N_CALL_BLOCK, pos);
        if (is_op(P, "(")) parse_signature(P, n);
        size_t cpos = cur(P)->pos;
        n->a = parse_expression(P, 1);
        if (n->a->kind != N_CALL) pfail(P, cpos, "a call block needs a call ({%% call m() %%})");
        expect_block_end(P);
        int depth = P->loop_depth;
        P->loop_depth = 0;
        NodeVec body = {0};
        subparse(P, END_CALL, &body, pos);
        P->loop_depth = depth;
        advance(P);
        expect_block_end(P);
        n->items = body.v;
        n->n = body.n;
        return n;
    }
    if (!strcmp(tag, "filter")) {
        Node *n = mk(P, N_FILTER_BLOCK, pos);
        n->a = parse_filter(P, NULL, 1);
        expect_block_end(P);
        NodeVec body = {0};
        subparse(P, END_FILTER, &body, pos);
        advance(P);
        expect_block_end(P);
        n->items = body.v;
        n->n = body.n;
        return n;
    }
    if (!strcmp(tag, "generation")) {
        Node *n = mk(P, N_GENERATION, pos);
        expect_block_end(P);
        NodeVec body = {0};
        subparse(P, END_GENERATION, &body, pos);
        advance(P);
        expect_block_end(P);
        n->items = body.v;
        n->n = body.n;
        P->t->has_generation = 1;
        return n;
    }
    static const char *const known[] = {"block", "extends", "include", "import", "from",
                                        "with", "autoescape", "print", NULL};
    for (int i = 0; known[i]; i++)
        if (!strcmp(tag, known[i])) pfail(P, pos, "the tag '%s': %s", tag, NOT_IMPL);
    pfail(P, pos, "unknown tag '%s' (jinja2 in transformers' environment rejects it too)", tag);
}

/* Statements until the end of the template or a {% tag %} named in ends
 * (left as the current token, after its {%). */
static void subparse(Parser *P, const char *const *ends, NodeVec *body, size_t open_pos) {
    while (1) {
        Tok *t = cur(P);
        switch (t->kind) {
        case TK_DATA: {
            Node *n = mk(P, N_TEXT, t->pos);
            n->value = jv_str(t->p, t->n);
            nv_push(P, body, n);
            advance(P);
            break;
        }
        case TK_VAR_BEGIN: {
            advance(P);
            Node *n = mk(P, N_OUTPUT, t->pos);
            n->a = parse_tuple(P, 0, 1, NULL, 0);
            if (cur(P)->kind != TK_VAR_END)
                pfail(P, cur(P)->pos, "expected the end of the tag ('}}'), got %s", describe(P, cur(P)));
            advance(P);
            nv_push(P, body, n);
            break;
        }
        case TK_BLOCK_BEGIN: {
            advance(P);
            Tok *name = cur(P);
            if (ends && name->kind == TK_NAME)
                for (int i = 0; ends[i]; i++)
                    if (tok_is(name, TK_NAME, ends[i])) return;
            if (name->kind == TK_NAME && name->n > 3 && memcmp(name->p, "end", 3) == 0)
                pfail(P, name->pos, "unexpected '%.*s'%s%s", (int)name->n, name->p,
                      ends ? ": this block ends with " : " with no open block",
                      ends ? ends[0] : "");
            if (tok_is(name, TK_NAME, "elif") || tok_is(name, TK_NAME, "else"))
                pfail(P, name->pos, "unexpected '%.*s' outside an if or for block", (int)name->n,
                      name->p);
            nv_push(P, body, parse_statement(P));
            break;
        }
        case TK_EOF:
            if (ends) {
                const char *end = ends[0];
                for (int i = 0; ends[i]; i++)
                    if (!strncmp(ends[i], "end", 3)) end = ends[i];
                pfail(P, open_pos, "this block is never closed: it needs {%% %s %%}", end);
            }
            return;
        default:
            pfail(P, t->pos, "unexpected %s", describe(P, t));
        }
    }
}

JinjaTemplate *jinja_parse(const char *source, const char *label) {
    JinjaTemplate *t = xcalloc(1, sizeof *t);
    t->label = xstrdup(label ? label : "<template>");
    /* newlines normalized, one trailing newline dropped (keep_trailing_newline=False) */
    size_t n = strlen(source);
    t->source = xmalloc(n + 1);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (source[i] == '\r') {
            t->source[m++] = '\n';
            if (i + 1 < n && source[i + 1] == '\n') i++;
        } else {
            t->source[m++] = source[i];
        }
    }
    if (m > 0 && t->source[m - 1] == '\n') m--;
    t->source[m] = '\0';

    Parser P = {.t = t, .src = t->source, .len = m};
    /* line starts for line:column */
    size_t lines = 1;
    for (size_t i = 0; i < m; i++) lines += t->source[i] == '\n';
    P.line_starts = xmalloc(lines * sizeof(size_t));
    P.line_starts[0] = 0;
    P.n_lines = 1;
    for (size_t i = 0; i < m; i++)
        if (t->source[i] == '\n') P.line_starts[P.n_lines++] = i + 1;

    if (setjmp(P.fail)) {
        free(P.line_starts);
        jinja_free(t);
        return NULL;
    }
    for (size_t i = 0; i < m;) {
        uint32_t cp;
        int k = utf8_decode((const unsigned char *)t->source + i, m - i, &cp);
        if (!k) pfail(&P, i, "the template is not valid UTF-8 here (byte 0x%02X)", (unsigned char)t->source[i]);
        i += (size_t)k;
    }
    jinja_lex(&P);
    NodeVec body = {0};
    subparse(&P, NULL, &body, 0);
    t->body = body.v;
    t->n_body = body.n;
    free(P.line_starts);
    return t;
}

void jinja_free(JinjaTemplate *t) {
    if (!t) return;
    ar_free_all(&t->arena);
    free(t->label);
    free(t->source);
    free(t);
}

int jinja_has_generation(const JinjaTemplate *t) { return t->has_generation; }
const char *jinja_label(const JinjaTemplate *t) { return t->label; }
