/* fuzz/fuzz_calc.c — the calculator's expression parser (eval/toolenv.c) and
 * the number formatting every tool answer goes through.
 *
 * The input is an expression (up to its first NUL). It goes to toolenv_calc
 * directly and, as JSON arguments, to the calculator tool and (as a numeric
 * string "value") to convert_units. Checked beyond "no crash, no leak" (deep
 * nesting must not exhaust the stack): an accepted expression has a finite
 * value; every successful answer is a number that reads back as the value
 * rounded to 2 decimals, never "nan", "inf" or a cut-off digit string. */
#include <jansson.h>
#include <math.h>

#include "eval/toolenv.h"
#include "fuzz/fuzz.h"

/* obs, from a successful tool call, reads back as v rounded to 2 decimals. */
static void check_number(const char *obs, double v, const char *what) {
    char *end;
    double back = strtod(obs, &end);
    FUZZ_CHECK(*obs && *end == '\0' && isfinite(back), "%s answered '%s'", what, obs);
    double want = round(v * 100.0) / 100.0;
    FUZZ_CHECK(fabs(back - want) <= 1e-9 * fmax(1.0, fabs(want)),
               "%s answered '%s' for %.17g", what, obs, v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *expr = fuzz_cstr(data, size);
    double v = 0;
    char err[128];
    int rc = toolenv_calc(expr, &v, err, sizeof err);
    if (rc == 0) FUZZ_CHECK(isfinite(v), "'%s' = %g", expr, v);
    else FUZZ_CHECK(err[0], "refused without a message");

    json_t *args = json_pack("{s:s}", "expression", expr);
    char *text = args ? json_dumps(args, 0) : NULL; /* NULL: not UTF-8 */
    if (text) {
        int ok;
        char *obs = toolenv_call("calculator", text, &ok);
        FUZZ_CHECK(ok == (rc == 0), "toolenv_calc said %d, the tool %d ('%s')", rc, ok, obs);
        if (ok) check_number(obs, v, "calculator");
        free(obs);
    }
    free(text);
    json_decref(args);

    args = json_pack("{s:s, s:s, s:s}", "value", expr, "from", "km", "to", "mi");
    text = args ? json_dumps(args, 0) : NULL;
    if (text) {
        int ok;
        char *obs = toolenv_call("convert_units", text, &ok);
        if (ok) check_number(obs, strtod(expr, NULL) * 1000.0 / 1609.344, "convert_units");
        free(obs);
    }
    free(text);
    json_decref(args);
    free(expr);
    return 0;
}
