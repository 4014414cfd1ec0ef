/* eval/toolenv.c — the built-in tool environment (see toolenv.h).
 *
 * The calculator is a recursive-descent parser over the grammar
 *     expr   := term (('+' | '-') term)*
 *     term   := factor (('*' | '/') factor)*
 *     factor := ('-' | '+') factor | number | '(' expr ')'
 * evaluated in double as it parses. Tools validate their JSON arguments
 * strictly (exact keys, exact types) so that a caller model's malformed calls
 * are visible as error observations rather than silently repaired. */
#include "eval/toolenv.h"

#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/util.h"

typedef struct {
    const char *name;
    const char *arguments; /* the argument keys, as documentation */
} ToolInfo;

static const ToolInfo tools[] = {
    {"calculator", "{\"expression\": string}"},
    {"convert_units", "{\"value\": number, \"from\": unit, \"to\": unit}"},
    {"lookup_table", "{\"table\": string, \"key\": string, \"column\": string}"},
};
#define N_TOOLS ((int)(sizeof tools / sizeof tools[0]))

int toolenv_n_tools(void) { return N_TOOLS; }

int toolenv_has_tool(const char *name) {
    for (int i = 0; i < N_TOOLS; i++)
        if (!strcmp(tools[i].name, name)) return 1;
    return 0;
}

void toolenv_format_number(double x, char *buf, size_t cap) {
    /* From 1e15 on a double has no 2 decimals to round to, and "%.2f" would
     * write up to 309 digits (which a short buffer cuts to a wrong number):
     * such magnitudes get 15 significant digits instead. */
    if (!(fabs(x) < TOOLENV_MAX_FIXED)) {
        snprintf(buf, cap, "%.15g", x);
        return;
    }
    double r = round(x * 100.0) / 100.0;
    if (r == 0) r = 0; /* no "-0" */
    snprintf(buf, cap, "%.2f", r);
    char *dot = strchr(buf, '.');
    if (!dot) return;
    char *end = buf + strlen(buf) - 1;
    while (end > dot && *end == '0') *end-- = '\0';
    if (end == dot) *end = '\0';
}

/* ------------------------------------------------------------ calculator */

#define CALC_MAX_DEPTH 32

typedef struct {
    const char *s;
    size_t pos;
    int depth;
    char *err;
    size_t err_cap;
    int failed;
} Calc;

static void calc_fail(Calc *c, const char *fmt, ...) {
    if (c->failed) return;
    c->failed = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, c->err_cap, fmt, ap);
    va_end(ap);
}

static void skip_space(Calc *c) {
    while (c->s[c->pos] == ' ' || c->s[c->pos] == '\t') c->pos++;
}

static double calc_expr(Calc *c);

static double calc_factor(Calc *c) {
    skip_space(c);
    char ch = c->s[c->pos];
    if (ch == '-' || ch == '+') {
        c->pos++;
        if (++c->depth > CALC_MAX_DEPTH) {
            calc_fail(c, "expression nested more than %d deep", CALC_MAX_DEPTH);
            return 0;
        }
        double v = calc_factor(c);
        c->depth--;
        return ch == '-' ? -v : v;
    }
    if (ch == '(') {
        c->pos++;
        if (++c->depth > CALC_MAX_DEPTH) {
            calc_fail(c, "expression nested more than %d deep", CALC_MAX_DEPTH);
            return 0;
        }
        double v = calc_expr(c);
        c->depth--;
        skip_space(c);
        if (c->s[c->pos] != ')') {
            calc_fail(c, "missing ')' at position %zu", c->pos + 1);
            return 0;
        }
        c->pos++;
        return v;
    }
    if (isdigit((unsigned char)ch) || ch == '.') {
        size_t start = c->pos;
        int digits = 0, dots = 0;
        while (isdigit((unsigned char)c->s[c->pos]) || c->s[c->pos] == '.') {
            digits += c->s[c->pos] != '.';
            dots += c->s[c->pos] == '.';
            c->pos++;
        }
        if (digits == 0 || dots > 1) {
            calc_fail(c, "bad number at position %zu", start + 1);
            return 0;
        }
        return strtod(c->s + start, NULL);
    }
    if (ch == '\0') calc_fail(c, "unexpected end of expression");
    else calc_fail(c, "unexpected '%c' at position %zu", ch, c->pos + 1);
    return 0;
}

static double calc_term(Calc *c) {
    double v = calc_factor(c);
    for (;;) {
        skip_space(c);
        char op = c->s[c->pos];
        if (c->failed || (op != '*' && op != '/')) return v;
        c->pos++;
        double r = calc_factor(c);
        if (op == '/' && r == 0 && !c->failed) {
            calc_fail(c, "division by zero");
            return 0;
        }
        v = op == '*' ? v * r : v / r;
    }
}

static double calc_expr(Calc *c) {
    double v = calc_term(c);
    for (;;) {
        skip_space(c);
        char op = c->s[c->pos];
        if (c->failed || (op != '+' && op != '-')) return v;
        c->pos++;
        double r = calc_term(c);
        v = op == '+' ? v + r : v - r;
    }
}

int toolenv_calc(const char *expression, double *out, char *err, size_t err_cap) {
    Calc c = {expression, 0, 0, err, err_cap, 0};
    double v = calc_expr(&c);
    skip_space(&c);
    if (!c.failed && c.s[c.pos] != '\0')
        calc_fail(&c, "unexpected '%c' at position %zu", c.s[c.pos], c.pos + 1);
    if (!c.failed && !isfinite(v)) calc_fail(&c, "the result is not a finite number");
    if (c.failed) return -1;
    *out = v;
    return 0;
}

/* ---------------------------------------------------------------- units */

typedef struct {
    const char *name;
    const char *dimension;
    double to_base; /* base units: m, kg, l; temperature is affine (below) */
} Unit;

static const Unit units[] = {
    {"km", "length", 1000.0}, {"mi", "length", 1609.344}, {"m", "length", 1.0},
    {"ft", "length", 0.3048}, {"kg", "mass", 1.0},        {"lb", "mass", 0.45359237},
    {"l", "volume", 1.0},     {"gal", "volume", 3.785411784},
    {"c", "temperature", 1.0}, {"f", "temperature", 1.0},
};
#define N_UNITS ((int)(sizeof units / sizeof units[0]))

static const Unit *find_unit(const char *name) {
    for (int i = 0; i < N_UNITS; i++)
        if (!strcasecmp(units[i].name, name)) return &units[i];
    return NULL;
}

static double convert(double v, const Unit *from, const Unit *to) {
    if (!strcmp(from->dimension, "temperature")) {
        double celsius = from->name[0] == 'f' ? (v - 32.0) * 5.0 / 9.0 : v;
        return to->name[0] == 'f' ? celsius * 9.0 / 5.0 + 32.0 : celsius;
    }
    return v * from->to_base / to->to_base;
}

/* --------------------------------------------------------------- tables */

static const char *const country_columns[] = {"capital", "population", "continent", "currency"};
static const char *const country_rows[][5] = {
    {"France", "Paris", "68.2", "Europe", "euro"},
    {"Japan", "Tokyo", "125.7", "Asia", "yen"},
    {"Brazil", "Brasilia", "203.1", "South America", "real"},
    {"Canada", "Ottawa", "38.9", "North America", "dollar"},
    {"Egypt", "Cairo", "105.2", "Africa", "pound"},
    {"India", "New Delhi", "1428.6", "Asia", "rupee"},
    {"Kenya", "Nairobi", "55.1", "Africa", "shilling"},
    {"Peru", "Lima", "34.4", "South America", "sol"},
    {"Italy", "Rome", "58.9", "Europe", "euro"},
    {"Mexico", "Mexico City", "128.5", "North America", "peso"},
    {"Norway", "Oslo", "5.5", "Europe", "krone"},
    {"Australia", "Canberra", "26.6", "Oceania", "dollar"},
    {"Germany", "Berlin", "84.5", "Europe", "euro"},
    {"Chile", "Santiago", "19.6", "South America", "peso"},
    {"Vietnam", "Hanoi", "98.9", "Asia", "dong"},
    {"Spain", "Madrid", "48.4", "Europe", "euro"},
};
static const char *const planet_columns[] = {"moons", "diameter_km", "day_hours"};
static const char *const planet_rows[][4] = {
    {"Mercury", "0", "4879", "4222.6"}, {"Venus", "0", "12104", "2802"},
    {"Earth", "1", "12756", "24"},      {"Mars", "2", "6792", "24.7"},
    {"Jupiter", "95", "142984", "9.9"}, {"Saturn", "146", "120536", "10.7"},
    {"Uranus", "28", "51118", "17.2"},  {"Neptune", "16", "49528", "16.1"},
};

typedef struct {
    const char *name;
    int n_rows, n_columns;
    const char *const *columns;
    const char *const *cells; /* (n_rows, 1 + n_columns): key, then the columns */
} Table;

static const Table tables[] = {
    {"countries", (int)(sizeof country_rows / sizeof country_rows[0]), 4, country_columns,
     &country_rows[0][0]},
    {"planets", (int)(sizeof planet_rows / sizeof planet_rows[0]), 3, planet_columns,
     &planet_rows[0][0]},
};
#define N_TABLES ((int)(sizeof tables / sizeof tables[0]))

static const Table *find_table(const char *name) {
    for (int i = 0; i < N_TABLES; i++)
        if (!strcasecmp(tables[i].name, name)) return &tables[i];
    return NULL;
}

static int table_column(const Table *t, const char *column) {
    for (int j = 0; j < t->n_columns; j++)
        if (!strcasecmp(t->columns[j], column)) return j;
    return -1;
}

int toolenv_table_rows(const char *table) {
    const Table *t = find_table(table);
    return t ? t->n_rows : 0;
}

const char *toolenv_table_key(const char *table, int row) {
    const Table *t = find_table(table);
    if (!t || row < 0 || row >= t->n_rows) return NULL;
    return t->cells[row * (t->n_columns + 1)];
}

/* ---------------------------------------------------------------- calls */

static char *observation(int *ok, int success, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) s = NULL;
    va_end(ap);
    if (!s) {
        fprintf(stderr, "out of memory\n");
        abort();
    }
    if (ok) *ok = success;
    return s;
}

/* The string argument `key` of args, or NULL (*why says what is wrong). */
static const char *string_arg(const json_t *args, const char *key, const char **why) {
    const json_t *v = json_object_get(args, key);
    if (!v) *why = "is missing";
    else if (!json_is_string(v)) *why = "must be a string";
    else return json_string_value(v);
    return NULL;
}

/* Refuses keys other than the allowed ones (names the first one). */
static const char *unknown_key(const json_t *args, const char *const *allowed, int n) {
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)args, key, v) {
        int found = 0;
        for (int i = 0; i < n; i++) found |= !strcmp(key, allowed[i]);
        if (!found) return key;
    }
    return NULL;
}

#define BAD_ARGS(tool, ...) observation(ok, 0, "Error: " tool ": " __VA_ARGS__)

static char *call_calculator(const json_t *args, int *ok) {
    static const char *const keys[] = {"expression"};
    const char *extra = unknown_key(args, keys, 1), *why = NULL;
    if (extra) return BAD_ARGS("calculator", "unknown argument '%s'", extra);
    const char *expr = string_arg(args, "expression", &why);
    if (!expr) return BAD_ARGS("calculator", "argument 'expression' %s", why);
    double v;
    char err[128], num[64];
    if (toolenv_calc(expr, &v, err, sizeof err) != 0) return BAD_ARGS("calculator", "%s", err);
    toolenv_format_number(v, num, sizeof num);
    return observation(ok, 1, "%s", num);
}

static char *call_convert(const json_t *args, int *ok) {
    static const char *const keys[] = {"value", "from", "to"};
    const char *extra = unknown_key(args, keys, 3), *why = NULL;
    if (extra) return BAD_ARGS("convert_units", "unknown argument '%s'", extra);
    const json_t *jv = json_object_get(args, "value");
    double v;
    char *end;
    if (!jv) return BAD_ARGS("convert_units", "argument 'value' is missing");
    if (json_is_number(jv)) {
        v = json_number_value(jv);
    } else if (json_is_string(jv) && json_string_value(jv)[0] &&
               (v = strtod(json_string_value(jv), &end), *end == '\0')) {
        /* a numeric string is accepted: v parsed */
    } else {
        return BAD_ARGS("convert_units", "argument 'value' must be a number");
    }
    if (!isfinite(v)) /* strtod reads "nan", "inf", "1e999" */
        return BAD_ARGS("convert_units", "argument 'value' must be a finite number");
    const char *from = string_arg(args, "from", &why);
    if (!from) return BAD_ARGS("convert_units", "argument 'from' %s", why);
    const char *to = string_arg(args, "to", &why);
    if (!to) return BAD_ARGS("convert_units", "argument 'to' %s", why);
    const Unit *uf = find_unit(from), *ut = find_unit(to);
    if (!uf) return BAD_ARGS("convert_units", "unknown unit '%s'", from);
    if (!ut) return BAD_ARGS("convert_units", "unknown unit '%s'", to);
    if (strcmp(uf->dimension, ut->dimension) != 0)
        return BAD_ARGS("convert_units", "cannot convert %s (%s) to %s (%s)", uf->name,
                        uf->dimension, ut->name, ut->dimension);
    double result = convert(v, uf, ut);
    if (!isfinite(result))
        return BAD_ARGS("convert_units", "%g %s is too large to convert to %s", v, uf->name,
                        ut->name);
    char num[64];
    toolenv_format_number(result, num, sizeof num);
    return observation(ok, 1, "%s", num);
}

static char *call_lookup(const json_t *args, int *ok) {
    static const char *const keys[] = {"table", "key", "column"};
    const char *extra = unknown_key(args, keys, 3), *why = NULL;
    if (extra) return BAD_ARGS("lookup_table", "unknown argument '%s'", extra);
    const char *table = string_arg(args, "table", &why);
    if (!table) return BAD_ARGS("lookup_table", "argument 'table' %s", why);
    const char *key = string_arg(args, "key", &why);
    if (!key) return BAD_ARGS("lookup_table", "argument 'key' %s", why);
    const char *column = string_arg(args, "column", &why);
    if (!column) return BAD_ARGS("lookup_table", "argument 'column' %s", why);
    const Table *t = find_table(table);
    if (!t) return BAD_ARGS("lookup_table", "no table '%s' (tables: countries, planets)", table);
    int j = table_column(t, column);
    if (j < 0) return BAD_ARGS("lookup_table", "table %s has no column '%s'", t->name, column);
    for (int i = 0; i < t->n_rows; i++)
        if (!strcasecmp(t->cells[i * (t->n_columns + 1)], key))
            return observation(ok, 1, "%s", t->cells[i * (t->n_columns + 1) + 1 + j]);
    return BAD_ARGS("lookup_table", "no row '%s' in table %s", key, t->name);
}

char *toolenv_call(const char *name, const char *args_json, int *ok) {
    if (!toolenv_has_tool(name))
        return observation(ok, 0,
                           "Error: unknown tool '%s' (tools: calculator, convert_units, "
                           "lookup_table)",
                           name);
    json_error_t jerr;
    json_t *args = json_loads(args_json, 0, &jerr);
    if (!args || !json_is_object(args)) {
        json_decref(args);
        return observation(ok, 0, "Error: %s: the arguments must be a JSON object", name);
    }
    char *obs = !strcmp(name, "calculator")      ? call_calculator(args, ok)
                : !strcmp(name, "convert_units") ? call_convert(args, ok)
                                                 : call_lookup(args, ok);
    json_decref(args);
    return obs;
}
