/* fuzz/fuzz_answer.c — answer extraction (eval/answer.c), as `retort eval
 * --answer` and `retort explain` read answers out of a model's output.
 *
 * The input is a model output; a NUL byte, when present, ends it and starts a
 * spec (`regex:...` and the others) to parse and run besides the built-in
 * ones (whole, last-number, option, option:A-J). Checked beyond "no crash,
 * no leak": a refused spec says why; an answer is found exactly when one is
 * returned, with no surrounding whitespace; a last number is in normal form
 * (no leading zeros, no trailing fractional zeros, no "-0") and an option a
 * capital letter, and each reads back as itself; a text matches itself; an
 * answer found in a text is matched by that answer as the gold. */
#include "eval/answer.h"
#include "fuzz/fuzz.h"

static int normal_number(const char *s) {
    int neg = *s == '-';
    s += neg;
    if (!strcmp(s, "0")) return !neg; /* "-0" is not normal */
    if (!(*s >= '1' && *s <= '9') && !(s[0] == '0' && s[1] == '.')) return 0;
    while (*s >= '0' && *s <= '9') s++;
    if (!*s) return 1;
    if (*s++ != '.' || !*s) return 0;
    while (*s >= '0' && *s <= '9') s++;
    return !*s && s[-1] != '0';
}

static void check_spec(const char *spec_text, const char *text) {
    AnswerSpec *s = answer_spec_parse(spec_text);
    if (!s) {
        FUZZ_CHECK(strlen(err_msg()) > 0 && strcmp(err_msg(), "unknown error"),
                   "refused without a reason");
        return;
    }
    char *a = NULL;
    int rc = answer_spec_extract(s, text, &a);
    FUZZ_CHECK(rc >= -1 && rc <= 1, "extract returned %d", rc);
    FUZZ_CHECK((rc == 1) == (a != NULL), "rc %d with answer %p", rc, (void *)a);
    if (rc == 1) {
        size_t n = strlen(a);
        FUZZ_CHECK(n == 0 || (!strchr(" \t\n\v\f\r", a[0]) && !strchr(" \t\n\v\f\r", a[n - 1])),
                   "answer '%s' is not stripped", a);
        int number = !strcmp(spec_text, "last-number"), option = !strncmp(spec_text, "option", 6);
        if (number) FUZZ_CHECK(normal_number(a), "'%s' is not a normal number", a);
        if (option) FUZZ_CHECK(n == 1 && a[0] >= 'A' && a[0] <= 'Z', "option '%s'", a);
        if (number || option || !strcmp(spec_text, "whole")) {
            char *again = NULL;
            FUZZ_CHECK(answer_spec_extract(s, a, &again) == 1 && !strcmp(again, a),
                       "'%s' reads back as '%s'", a, again ? again : "(none)");
            free(again);
            FUZZ_CHECK(answer_spec_match(s, text, a) == 1, "the answer '%s' does not match", a);
        }
        FUZZ_CHECK(answer_spec_match(s, text, text) == 1, "a text does not match itself");
    } else if (rc == 0) {
        FUZZ_CHECK(answer_spec_match(s, text, text) == 0, "no answer, but a match");
    }
    free(a);
    answer_spec_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = fuzz_cstr(data, size);
    size_t text_len = strlen(text);
    static const char *const builtin[] = {"whole", "last-number", "option", "option:A-J"};
    for (int i = 0; i < 4; i++) check_spec(builtin[i], text);
    if (text_len < size) {
        char *spec = fuzz_cstr(data + text_len + 1, size - text_len - 1);
        check_spec(spec, text);
        free(spec);
    }
    free(text);
    return 0;
}
