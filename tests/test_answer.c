/* tests/test_answer.c — eval/answer.c: each spec's extraction rule on the
 * texts its documentation names (the expected answers are what the rules in
 * eval/answer.h read, so they are written here), matching against gold, and
 * the errors of bad specs. */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "eval/answer.h"
#include "util/util.h"

/* The answer spec reads in text, or NULL when it finds none. */
static char *read_answer(const char *spec, const char *text) {
    AnswerSpec *s = answer_spec_parse(spec);
    cr_assert(s, "spec %s: %s", spec, err_msg());
    char *out = NULL;
    int rc = answer_spec_extract(s, text, &out);
    cr_assert_geq(rc, 0, "%s", err_msg());
    cr_assert_eq(rc == 1, out != NULL);
    answer_spec_free(s);
    return out;
}

static void expect_answer(const char *spec, const char *text, const char *want) {
    char *got = read_answer(spec, text);
    if (!want) cr_expect_null(got, "%s on '%s': read '%s', expected none", spec, text, got);
    else {
        cr_expect(got && !strcmp(got, want), "%s on '%s': read '%s', expected '%s'", spec, text,
                  got ? got : "(none)", want);
    }
    free(got);
}

Test(answer, whole_strips_surrounding_whitespace) {
    expect_answer("whole", "  Paris \n", "Paris");
    expect_answer("whole", "", "");
    expect_answer("whole", "a  b", "a  b");
}

Test(answer, regex_takes_the_last_match_and_its_first_taking_group) {
    expect_answer("regex:answer is (\\w+)", "the answer is 3, no, the answer is 4.", "4");
    expect_answer("regex:\\d+", "1 then 22 then 333", "333");
    expect_answer("regex:a: (\\d+)|b: (\\d+)", "a: 1 and b: 2", "2");
    expect_answer("regex:#### (.*)", "work\n####  72 \n", "72");
    expect_answer("regex:answer is (\\w+)", "no answer here", NULL);
    /* an empty match is found and steps on: the last of them, at the end */
    expect_answer("regex:x*", "ab", "");
    /* not UTF-8: the valid part is still searched */
    expect_answer("regex:(\\d+)", "\xff\xfe 12 \xc3", "12");
}

Test(answer, last_number_normalizes) {
    expect_answer("last-number", "so 3 apples and 4.50 dollars", "4.5");
    expect_answer("last-number", "The total is 1,234,567.", "1234567");
    expect_answer("last-number", "it is 3.0", "3");
    expect_answer("last-number", "+03", "3");
    expect_answer("last-number", "x = -3", "-3");
    expect_answer("last-number", "5-3", "3");
    expect_answer("last-number", "f(2)-7", "7");
    expect_answer("last-number", "about .50 of it", "0.5");
    expect_answer("last-number", "-0.00", "0");
    expect_answer("last-number", "1/2", "2");
    expect_answer("last-number", "$1,000,000 in 12345,678", "678");
    expect_answer("last-number", "12,34", "34");
    expect_answer("last-number", "007", "7");
    expect_answer("last-number", "0", "0");
    expect_answer("last-number", "no numbers", NULL);
}

Test(answer, option_rules_in_priority_order) {
    expect_answer("option", "The answer is (B).", "B");
    expect_answer("option", "Answer: C", "C");
    expect_answer("option", "answer is D because (A) is wrong", "D");
    expect_answer("option", "(A) is wrong and (C) is right", "C");
    expect_answer("option", " B. ", "B");
    expect_answer("option", "E", "E");
    expect_answer("option", "I pick C. Then D) too", "D");
    expect_answer("option", "a b c", NULL);          /* lower case is not an option */
    expect_answer("option", "The answer is Apple", NULL);
    expect_answer("option", "(F)", NULL);            /* past A-E */
    expect_answer("option:A-J", "(F)", "F");
    expect_answer("option:A-B", "answer: C, or (B)", "B");
}

Test(answer, match_reads_gold_with_the_same_spec) {
    AnswerSpec *s = answer_spec_parse("last-number");
    cr_assert(s);
    cr_expect_eq(answer_spec_match(s, "so it is 1,000.", "#### 1000"), 1);
    cr_expect_eq(answer_spec_match(s, "3.0", "3"), 1);
    cr_expect_eq(answer_spec_match(s, "3.01", "3"), 0);
    cr_expect_eq(answer_spec_match(s, "no number", "3"), 0);
    cr_expect_eq(answer_spec_match(s, "7", " seven "), 0);
    answer_spec_free(s);
    s = answer_spec_parse("regex:answer is (\\w+)");
    cr_assert(s);
    cr_expect_eq(answer_spec_match(s, "the answer is Paris", " Paris\n"), 1); /* gold stripped */
    cr_expect_eq(answer_spec_match(s, "the answer is Paris", "the answer is Paris"), 1);
    cr_expect_eq(answer_spec_match(s, "Paris", "Paris"), 0); /* no answer in the prediction */
    answer_spec_free(s);
    s = answer_spec_parse("option");
    cr_expect_eq(answer_spec_match(s, "the answer is (C)", "C"), 1);
    cr_expect_eq(answer_spec_match(s, "the answer is (C)", "(C) 42"), 1);
    cr_expect_eq(answer_spec_match(s, "the answer is (C)", "B"), 0);
    cr_expect_str_eq(answer_spec_text(s), "option");
    answer_spec_free(s);
}

Test(answer, bad_specs_are_named) {
    cr_expect_null(answer_spec_parse("regex:(a"));
    cr_expect(strstr(err_msg(), "regex:(a") && strstr(err_msg(), "offset 2"), "%s", err_msg());
    cr_expect_null(answer_spec_parse("regex:"));
    cr_expect(strstr(err_msg(), "no pattern"), "%s", err_msg());
    cr_expect_null(answer_spec_parse("numbers"));
    cr_expect(strstr(err_msg(), "unknown answer spec 'numbers'") && strstr(err_msg(), "last-number"),
              "%s", err_msg());
    cr_expect_null(answer_spec_parse("option:a-e"));
    cr_expect(strstr(err_msg(), "option:A-J"), "%s", err_msg());
    cr_expect_null(answer_spec_parse("option:E-A"));
    cr_expect_null(answer_spec_parse("optional"));
}
