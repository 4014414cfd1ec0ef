/* eval/toolenv.h — a small deterministic tool environment for tool-use agents
 * (α-UMi / GLPFT experiments): three tools called with JSON arguments, each
 * call answered with an observation string.
 *
 *   calculator     {"expression": "12.5 * (3 + 4)"}      -> "87.5"
 *                  + - * / and parentheses over decimals, unary minus; the
 *                  usual precedence, left to right.
 *   convert_units  {"value": 42, "from": "km", "to": "mi"} -> "26.1"
 *                  length (km, mi, m, ft), mass (kg, lb), volume (l, gal),
 *                  temperature (c, f); value may be a number or a numeric string.
 *   lookup_table   {"table": "countries", "key": "Japan", "column": "capital"}
 *                  -> "Tokyo"; built-in tables `countries` (capital,
 *                  population in millions, continent, currency) and `planets`
 *                  (moons, diameter_km, day_hours).
 *
 * Numbers in observations are rounded to 2 decimals with trailing zeros cut
 * ("87.5", "449", "-0.33"), so every answer has one spelling; from 1e15 on,
 * where a double holds no 2 decimals, they take 15 significant digits
 * ("1.23456789012346e+20"). A value or result that is not finite (a numeric
 * string "nan" or "inf", an overflow) is an error observation. Anything that
 * goes wrong (unknown tool, arguments that are not a JSON object, a missing or
 * mistyped argument, a syntax error, division by zero, an unknown unit, table,
 * key or column) is an observation too, starting "Error: " and saying what was
 * wrong. Nothing here touches files or the clock. */
#ifndef RETORT_TOOLENV_H
#define RETORT_TOOLENV_H

#include <stddef.h>

/* The tool set (names are what a caller must emit). */
int toolenv_n_tools(void);
/* 1 when name is one of the tools. */
int toolenv_has_tool(const char *name);

/* Runs tool `name` on the JSON text args_json. Returns a new string (free it):
 * the observation. *ok (may be NULL) is 1 on success, 0 for an error
 * observation. */
char *toolenv_call(const char *name, const char *args_json, int *ok);

/* The calculator's parser on its own: 0 and *out, or -1 with a message in err. */
int toolenv_calc(const char *expression, double *out, char *err, size_t err_cap);

/* Below this magnitude numbers are written with 2 fixed decimals. */
#define TOOLENV_MAX_FIXED 1e15

/* x rounded to 2 decimals, trailing zeros (and a trailing '.') removed, "-0" as
 * "0"; |x| >= TOOLENV_MAX_FIXED (or not finite) with "%.15g". 32 bytes are
 * always enough. */
void toolenv_format_number(double x, char *buf, size_t cap);

/* Built-in tables, for task generators: rows of `table`, and the key of row
 * i (NULL when there is no such table / row). */
int toolenv_table_rows(const char *table);
const char *toolenv_table_key(const char *table, int row);

#endif
