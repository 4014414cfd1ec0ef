/* data/jinja.h — the Jinja2 template language as chat templates use it,
 * rendered as transformers renders them: jinja2's ImmutableSandboxedEnvironment
 * with trim_blocks and lstrip_blocks on, the loop-controls extension (break,
 * continue), the {% generation %} tag, and the globals and filters transformers
 * adds (raise_exception, strftime_now, namespace, dict, its own tojson).
 *
 * What is implemented (data/jinja_*.c; docs/architecture.md has the map):
 *   statements  if/elif/else, for (loop.*, `for x in xs if cond`, else,
 *               tuple targets), set (names, tuples, namespace attributes,
 *               {% set x %}...{% endset %} with filters), macro (defaults,
 *               varargs, kwargs, caller), call blocks, filter blocks, break,
 *               continue, raw, generation, comments, whitespace control;
 *   expressions Python's semantics for literals, arithmetic, ~, comparisons
 *               (chained), and/or/not, in / not in, is tests, conditional
 *               expressions, attribute and subscript access, slicing, calls;
 *   values      None, bools, 64-bit integers, floats, strings (code points for
 *               length, indexing and slicing), lists, tuples, dicts (insertion
 *               ordered), namespaces, macros; printed as Python's str() and
 *               repr() print them;
 *   undefined   Jinja's default Undefined: prints empty, is false, iterates
 *               empty; an attribute, item or call of it is an error;
 *   filters, tests, methods, globals: the lists in data/jinja_builtins.c.
 * Anything else a template may contain — another tag (include, extends,
 * import, with, ...), a filter or test this interpreter does not implement,
 * *args and **kwargs in calls, recursive loops — is refused when the template
 * is parsed, with LABEL:LINE:COLUMN. A method of a str, list or dict that is
 * not implemented is refused when it is called, likewise. Where Python would
 * use an integer beyond 64 bits, rendering fails rather than wraps.
 *
 * Errors set util.h's error as "LABEL:LINE:COLUMN: what; how to fix" and the
 * call returns NULL / -1. raise_exception(msg) fails the render with msg.
 */
#ifndef RETORT_JINJA_H
#define RETORT_JINJA_H

#include <jansson.h>
#include <stddef.h>
#include <time.h>

typedef struct JinjaTemplate JinjaTemplate;

/* One {% generation %} block: bytes [start, end) of the output, counted as
 * transformers counts them (from the output produced before the block's own
 * text, so a block inside a macro or set block starts where that macro's call
 * or that block begins in the output). */
typedef struct { size_t start, end; } JinjaSpan;

/* Parses source (UTF-8; \r\n and \r read as \n, one trailing newline dropped,
 * as jinja2 does); label names it in errors (a path, a template name). NULL
 * with the error set when it is not a template this interpreter renders. */
JinjaTemplate *jinja_parse(const char *source, const char *label);
void jinja_free(JinjaTemplate *t);
/* 1 when the template has a {% generation %} block. */
int jinja_has_generation(const JinjaTemplate *t);
const char *jinja_label(const JinjaTemplate *t);

/* Renders t with the variables of vars (a JSON object, or NULL). now is the
 * time strftime_now formats (NULL: the local time at the call). *out gets a
 * malloc'd NUL-terminated string, *out_len its length (may be NULL); when
 * spans is not NULL, *spans gets a malloc'd array of the generation blocks in
 * output order and *n_spans their number (NULL when none). 0, or -1 with the
 * error set and nothing allocated. */
int jinja_render(const JinjaTemplate *t, json_t *vars, const struct tm *now, char **out,
                 size_t *out_len, JinjaSpan **spans, size_t *n_spans);

#endif
