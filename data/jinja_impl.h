/* data/jinja_impl.h — what the files of the template interpreter share: the
 * arena every parse and every render allocates from, the value type, the
 * syntax tree, the render context and the functions each file offers the
 * others. Only data/jinja_*.c include it; the rest of retort uses jinja.h.
 *
 *   jinja_lex.c       source -> tokens (whitespace control, literals)
 *   jinja_parse.c     tokens -> syntax tree (line:column of every node, refusals)
 *   jinja_value.c     the arena, values, Python's str()/repr(), json.dumps,
 *                     equality, ordering, truth, code points
 *   jinja_eval.c      statements and expressions: scopes, loops, macros,
 *                     output, generation spans, attribute and item access
 *   jinja_str.c       Python's str operations and % formatting
 *   jinja_filters.c   filters and tests
 *   jinja_methods.c   methods of str/list/dict, loop attributes, globals
 *   jinja_unicode.c   isspace, isprintable, case mapping of code points
 *
 * Memory: a template's tree lives in the template's arena; everything a render
 * makes (values, scopes, output) lives in the render's arena, freed in one go
 * when the render ends. Values are never freed one by one, so they can share
 * freely (strings point into the tree, into the caller's JSON, or into the
 * arena). Errors in a render unwind with longjmp to jinja_render, which is
 * safe because nothing but the arena owns memory.
 */
#ifndef RETORT_JINJA_IMPL_H
#define RETORT_JINJA_IMPL_H

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "data/jinja.h"

/* ---- arena ---- */
typedef struct ArenaBlock ArenaBlock;
typedef struct {
    ArenaBlock *head;
    size_t total;                  /* bytes of blocks held */
    size_t limit;                  /* 0: none; past it, on_limit is called (it must not return) */
    void (*on_limit)(void *arg);
    void *on_limit_arg;
} Arena;
void *ar_alloc(Arena *a, size_t n); /* zeroed, 16-byte aligned; never NULL */
char *ar_strndup(Arena *a, const char *s, size_t n);
void ar_free_all(Arena *a);

/* A growable byte string in an arena. */
typedef struct { char *p; size_t n, cap; Arena *a; } Buf;
void buf_put(Buf *b, const char *s, size_t n);
void buf_puts(Buf *b, const char *s);
void buf_putc(Buf *b, char c);
void buf_printf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- values ---- */
typedef enum {
    JV_UNDEF,  /* Jinja's Undefined; s holds the message an error about it prints */
    JV_NONE,
    JV_BOOL,
    JV_INT,
    JV_FLOAT,
    JV_STR,    /* UTF-8 bytes s.p[0:s.n] (not NUL-terminated) */
    JV_LIST,   /* list, or tuple when `tuple` is set */
    JV_DICT,
    JV_NS,     /* namespace(): a mutable dict of attributes */
    JV_MACRO,  /* a macro, or the caller of a call block */
    JV_FUNC,   /* a global function: func is a JinjaGlobal */
    JV_METHOD, /* a method bound to its object */
    JV_LOOP,   /* the `loop` of a for loop */
    JV_ABSENT  /* internal: an argument that was not passed */
} JvKind;

typedef struct JList JList;
typedef struct JDict JDict;
typedef struct JMacro JMacro;
typedef struct JMethod JMethod;
typedef struct JLoop JLoop;

typedef struct Jv {
    uint8_t kind;
    uint8_t tuple; /* JV_LIST only: 1 tuple; 2, 3, 4 a dict's items(), keys(), values() */
    union {
        int b;
        int64_t i;
        double f;
        struct { const char *p; size_t n; } s;
        JList *list;
        JDict *dict;
        JMacro *macro;
        int func;
        JMethod *method;
        JLoop *loop;
    };
} Jv;

/* depth: how deeply values nest inside (0: only scalars), kept as items are
 * added, so the recursive printers and comparisons never meet a runaway or
 * cyclic structure (the interpreter refuses values nested deeper than
 * MAX_NESTING, and a namespace inside a namespace) */
struct JList { size_t n, cap; Jv *v; uint32_t depth; };
struct JDict { size_t n, cap; Jv *k, *v; uint32_t depth; }; /* insertion ordered, looked up by equality */
#define MAX_NESTING 400
uint32_t jv_depth(Jv v);

Jv jv_none(void);
Jv jv_bool(int b);
Jv jv_int(int64_t i);
Jv jv_float(double f);
Jv jv_str(const char *p, size_t n);
Jv jv_cstr(const char *s);
Jv jv_undef(const char *why); /* why: what an error about it says (may be NULL) */
Jv jv_list(Arena *a, size_t cap);
Jv jv_dict(Arena *a, size_t cap);
void list_push(Arena *a, JList *l, Jv v);
/* Inserts or replaces key. */
void dict_set(Arena *a, JDict *d, Jv key, Jv val);
/* The value under key, or NULL. */
Jv *dict_get(const JDict *d, Jv key);
Jv *dict_get_str(const JDict *d, const char *key);

/* From JSON (strings point into the JSON, which must outlive the render). */
Jv jv_from_json(Arena *a, json_t *j);

/* Python's truth value (Undefined is false). */
int jv_truthy(Jv v);
/* Python's ==, with Jinja's Undefined == Undefined. */
int jv_equal(Jv a, Jv b);
/* Python's ordering of numbers, strings, and lists/tuples of them: -1, 0, 1,
 * or 2 when Python would raise TypeError. */
int jv_compare(Jv a, Jv b);
/* The type name Python would print ("str", "int", "dict", ...). */
const char *jv_type_name(Jv v);

/* Python's str() and repr() appended to b; json.dumps() likewise (0, or -1
 * with *why naming what is not JSON serializable). indent < 0: none; indent_str
 * when not NULL is the indent string. */
void jv_write_str(Buf *b, Jv v);
void jv_write_repr(Buf *b, Jv v);
typedef struct {
    int indent;             /* -1: no newlines */
    const char *indent_str; /* overrides indent when not NULL */
    const char *item_sep, *key_sep;
    int sort_keys, ensure_ascii;
} JsonStyle;
int jv_write_json(Buf *b, Jv v, const JsonStyle *st, int level, const char **why);
/* str(v) as a value (v itself when it is a string). */
Jv jv_to_str(Arena *a, Jv v);
/* Python's float repr. */
void write_float_repr(Buf *b, double f);

/* ---- code points (strings are valid UTF-8: templates are checked when
 * parsed, JSON strings by jansson, and every operation keeps it so) ---- */
size_t utf8_count(const char *p, size_t n);          /* code points */
size_t utf8_offset(const char *p, size_t n, size_t k); /* byte offset of code point k */
uint32_t utf8_at(const char *p, size_t n, size_t *len); /* decodes one (len: its bytes) */
void utf8_put(Buf *b, uint32_t cp);
int py_isspace(uint32_t cp);    /* str.isspace() of one character */
int py_isprintable(uint32_t cp); /* str.isprintable() of one character (Unicode 14, Python 3.11) */
int py_iscased(uint32_t cp);
int py_isupper_char(uint32_t cp);
int py_islower_char(uint32_t cp);
enum { CASE_UPPER, CASE_LOWER, CASE_TITLE };
/* One character's upper/lower/title case as Python maps it: 0, or -1 with *why
 * when it is a mapping this interpreter refuses (data/jinja_unicode.c). */
int py_case_char(uint32_t cp, int mode, uint32_t *out, const char **why);

/* ---- the syntax tree ---- */
typedef enum {
    /* expressions */
    N_CONST, N_NAME, N_GETATTR, N_GETITEM, N_SLICE, N_CALL, N_FILTER, N_TEST,
    N_BIN, N_NEG, N_POS, N_NOT, N_AND, N_OR, N_CMP, N_COND, N_LIST, N_TUPLE, N_DICT,
    N_CONCAT,
    /* statements */
    N_TEXT, N_OUTPUT, N_IF, N_FOR, N_SET, N_SET_BLOCK, N_MACRO, N_CALL_BLOCK,
    N_FILTER_BLOCK, N_BREAK, N_CONTINUE, N_GENERATION
} NodeKind;

typedef enum { OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW } BinOp;
typedef enum { CMP_EQ, CMP_NE, CMP_LT, CMP_LE, CMP_GT, CMP_GE, CMP_IN, CMP_NOTIN } CmpOp;
typedef enum { SET_NAME, SET_TUPLE, SET_ATTR } SetTarget;

typedef struct Node Node;
/* One node; the fields each kind uses:
 *   N_CONST value | N_NAME name | N_GETATTR a.name | N_GETITEM a[b]
 *   N_SLICE a[b:c:d] (NULL parts) | N_CALL a(items, names=items2)
 *   N_FILTER a|name(items, names=items2), a NULL in filter/set blocks; op: id
 *   N_TEST a is [not: flag] name(items, names=items2); op: id
 *   N_BIN a op b | N_NEG/N_POS/N_NOT a | N_AND/N_OR a, b
 *   N_CMP a ops[i] items[i]... | N_COND b if a else c (c NULL: undefined)
 *   N_LIST/N_TUPLE items | N_DICT items: items2 | N_CONCAT items joined by ~
 *   N_TEXT value | N_OUTPUT a
 *   N_IF if a: items else items2 (an elif is an N_IF alone in items2)
 *   N_FOR for names in a [if b]: items else items2 (flag: names is a tuple)
 *   N_SET op SetTarget: name | names | name.attr = b
 *   N_SET_BLOCK name = items through filter chain a (NULL: none)
 *   N_MACRO name(names = defs): items
 *   N_CALL_BLOCK call a with caller(names = defs): items
 *   N_FILTER_BLOCK items through filter chain a | N_GENERATION items */
struct Node {
    NodeKind kind;
    int op, flag;
    int line, col;
    Node *a, *b, *c, *d;
    Node **items, **items2;
    size_t n, n2;
    const char *name, *attr;
    const char **names; /* N_FOR, N_SET targets, N_MACRO params, kwarg names (n2) */
    size_t n_names;
    Node **defs; /* N_MACRO / N_CALL_BLOCK: default of each param or NULL */
    int *ops;    /* N_CMP: one CmpOp per operand */
    Jv value;
};

struct JinjaTemplate {
    Arena arena;
    char *label;
    char *source;    /* normalized */
    Node **body;
    size_t n_body;
    int has_generation;
};

/* ---- parsing: jinja_lex.c turns the source into tokens, jinja_parse.c the
 * tokens into the tree ---- */
typedef enum {
    TK_DATA, TK_VAR_BEGIN, TK_VAR_END, TK_BLOCK_BEGIN, TK_BLOCK_END, TK_NAME, TK_STRING,
    TK_INT, TK_FLOAT, TK_OP, TK_EOF
} TokKind;

typedef struct {
    TokKind kind;
    size_t pos;      /* offset in the source, for line:column */
    const char *p;   /* text: data, name, operator, or a string's value */
    size_t n;
    int64_t i;
    double f;
} Tok;

typedef struct Parser {
    JinjaTemplate *t;
    const char *src;
    size_t len;
    size_t *line_starts;
    size_t n_lines;
    Tok *toks;
    size_t n_toks, cap_toks;
    size_t cur;     /* parser position */
    int loop_depth; /* for break/continue */
    int depth;      /* nesting of expressions and blocks, bounded so the
                       recursive parser and interpreter keep to the stack */
    jmp_buf fail;
} Parser;

void line_col(const struct Parser *P, size_t pos, int *line, int *col);
/* Fails the parse with "LABEL:LINE:COL: message" at source offset pos. */
_Noreturn void pfail(struct Parser *P, size_t pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Tokenizes P->src into P->toks, ending with TK_EOF (fails through pfail). */
void jinja_lex(struct Parser *P);

/* ---- the render ---- */
typedef struct Scope Scope;
struct Scope {
    Scope *parent;
    size_t n, cap;
    const char **names;
    Jv *vals;
};

struct JMacro {
    const Node *def;  /* N_MACRO, or N_CALL_BLOCK for a caller */
    Scope *closure;   /* where it was defined */
    const char *name;
};
struct JMethod {
    Jv self;
    const char *name;
};
struct JLoop {
    JList *items;
    size_t index0;
    int depth0;
};

typedef struct Ctx {
    Arena arena;
    const JinjaTemplate *t;
    jmp_buf fail;
    Buf root;          /* what transformers' rendered_blocks hold so far */
    Buf *out;          /* where output goes now (root, or a capture) */
    Scope *scope;      /* where names are looked up now */
    const Node *stmt;  /* the statement running now (for errors without a node) */
    JinjaSpan *spans;
    size_t n_spans, cap_spans;
    struct tm now;
    int call_depth;
    uint64_t steps;    /* loop iterations and macro calls so far (MAX_STEPS) */
} Ctx;

/* Fails the render with "LABEL:LINE:COL: message" (at may be NULL). */
_Noreturn void jfail(Ctx *c, const Node *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Arguments of a call, evaluated. */
typedef struct {
    Jv *pos;
    size_t npos;
    const char **kwn;
    Jv *kwv;
    size_t nkw;
} Args;
/* Binds args to params (positional first, then keywords by name) in out[],
 * JV_ABSENT where not given; fails on too many or unknown arguments. */
void bind_args(Ctx *c, const Node *at, const char *fname, const Args *a,
               const char *const *params, size_t nparams, Jv *out);

/* jinja_eval.c */
Jv eval_expr(Ctx *c, const Node *e);
Jv call_value(Ctx *c, const Node *at, Jv callee, const Args *a);
Jv get_attr(Ctx *c, const Node *at, Jv obj, const char *name);
Jv get_item(Ctx *c, const Node *at, Jv obj, Jv key);
/* The items a for loop over v visits (fails when v is not iterable). */
JList *iterate(Ctx *c, const Node *at, Jv v);
/* Fails when v is Undefined: the error Jinja raises on using it. */
void check_defined(Ctx *c, const Node *at, Jv v);
Jv binop(Ctx *c, const Node *at, int op, Jv a, Jv b);
int contains(Ctx *c, const Node *at, Jv container, Jv item);
/* jinja_str.c: Python's `fmt % args` */
Jv str_percent_format(Ctx *c, const Node *at, Jv fmt, Jv args);

/* ---- what the builtins share ---- */
#define NOT_IMPL                                                                                 \
    "retort's template interpreter does not implement it (data/jinja.h lists what it does); use a " \
    "template without it"
static inline Arena *AR(Ctx *c) { return &c->arena; }
static inline int is_intlike(Jv v) { return v.kind == JV_INT || v.kind == JV_BOOL; }
static inline int64_t as_int64(Jv v) { return v.kind == JV_BOOL ? v.b : v.i; }
static inline int is_absent(Jv v) { return v.kind == JV_ABSENT; }
static inline Jv or_default(Jv v, Jv d) { return is_absent(v) ? d : v; }
static inline Jv str_of(Ctx *c, Jv v) { return jv_to_str(&c->arena, v); }

/* jinja_str.c: arguments checked (failing with `what` named), and Python's str
 * operations (CASE_* modes; chars, sep, maxsplit JV_ABSENT when not given) */
int64_t int_arg(Ctx *c, const Node *at, const char *what, Jv v);
Jv need_str(Ctx *c, const Node *at, const char *what, Jv v);
Jv mk_tuple2(Ctx *c, Jv a, Jv b);
size_t len_of(Ctx *c, const Node *at, Jv v); /* len(); Undefined is 0 */
Jv case_map(Ctx *c, const Node *at, Jv s, int mode);
Jv py_capitalize(Ctx *c, const Node *at, Jv s);
Jv py_title(Ctx *c, const Node *at, Jv s);
Jv jinja_title(Ctx *c, const Node *at, Jv s);
Jv py_strip(Ctx *c, const Node *at, Jv s, Jv chars, int left, int right);
Jv py_split(Ctx *c, const Node *at, Jv s, Jv sep, Jv maxsplit, int from_right);
Jv py_splitlines(Ctx *c, Jv s, int keepends);
Jv py_replace(Ctx *c, Jv s, Jv old, Jv new, int64_t count); /* count < 0: all */
int64_t py_find(Jv s, Jv sub, int from_right);              /* code points, -1: none */
int str_starts_with(Jv s, Jv prefix);
int str_ends_with(Jv s, Jv suffix);
int py_str_case_test(Ctx *c, Jv v, int upper);              /* str.isupper() / islower() */
int parse_py_int(Jv s, int base, int64_t *out);             /* 0, -1 not an int, -2 beyond 64 bits */
int parse_py_float(Ctx *c, Jv s, double *out);              /* 0, or -1 */

/* jinja_filters.c: filters and tests by name (ids for the parser) */
int filter_id(const char *name); /* -1: Jinja has no such filter; -2: not implemented */
int test_id(const char *name);   /* likewise */
Jv apply_filter(Ctx *c, const Node *at, int id, const char *name, Jv v, const Args *a);
int apply_test(Ctx *c, const Node *at, int id, const char *name, Jv v, const Args *a);
/* jinja_methods.c: a method of a str, list or dict: 1 and *out when name is one, 0 when it is
 * not an attribute of that type (the caller then looks for an item). */
int method_lookup(Ctx *c, const Node *at, Jv self, const char *name, Jv *out);
Jv call_method(Ctx *c, const Node *at, const JMethod *m, const Args *a);
/* The globals: range, namespace, dict, raise_exception, strftime_now, ... */
typedef enum {
    G_RANGE, G_NAMESPACE, G_DICT, G_RAISE, G_STRFTIME, G_CYCLER, G_JOINER, G_LIPSUM, G_COUNT
} JinjaGlobal;
extern const char *const GLOBAL_NAMES[G_COUNT];
Jv call_global(Ctx *c, const Node *at, int id, const Args *a);
Jv loop_attr(Ctx *c, const Node *at, const JLoop *l, const char *name);

#endif
