/* eval/answer.h — the answer inside a model's output, for accuracy.
 *
 * A spec says how to find the answer in a text:
 *
 *   whole          the text stripped of surrounding whitespace.
 *   regex:RE       RE is a PCRE2 pattern (UTF-8). Every non-overlapping match
 *                  is found from left to right and the LAST one is used
 *                  ("... so the answer is 12" comes at the end of a chain of
 *                  thought, after the numbers of the working). Its answer is
 *                  the first capture group that took part in the match (so
 *                  `a: (\d+)|b: (\d+)` works), else the whole match; stripped.
 *   last-number    the last number in the text, normalized (below). A number
 *                  is digits with an optional decimal part (`12`, `3.50`,
 *                  `.5`), or digits grouped by commas in threes (`1,234,567`);
 *                  a sign `-` or `+` belongs to it unless a letter, digit,
 *                  `_` or `)` stands right before the sign (so `5-3` reads 3,
 *                  `x = -3` reads -3). A `.` or `,` that ends a sentence is
 *                  not part of the number. Normalized: commas and a `+` sign
 *                  removed, leading zeros dropped, trailing zeros of the
 *                  decimal part dropped (and the point when nothing is left),
 *                  `-0` is `0`; so "3.0", "3", "+03" and "3.000" are all "3",
 *                  "1,000" is "1000", ".50" is "0.5". No exponents, no
 *                  fractions: "1/2" reads 2.
 *   option         a multiple-choice letter, A to E; `option:A-J` (or any
 *                  range X-Y of capital letters) widens it. Only capital
 *                  letters count (lower-case "a" is a word). Rules by
 *                  priority; the first rule that matches anywhere gives the
 *                  answer, and within a rule the last occurrence wins:
 *                    1. "answer" (any case) then optionally "is" or ":", then
 *                       the letter alone or in parentheses: "the answer is
 *                       (B)", "Answer: C", "answer is D".
 *                    2. the letter in parentheses: "(B)".
 *                    3. the whole text is the letter, optionally followed by
 *                       `.`, `)` or `:` ("B", "B.", "B)").
 *                    4. the letter as a word followed by `)`, `.` or `:`
 *                       ("B) 42", "... pick C.").
 *                  The answer is the letter itself ("B").
 *
 * Matching a prediction against a gold answer (answer_spec_match): the
 * prediction's answer must be found; the gold is read with the same spec when
 * the spec finds an answer in it (a gold "#### 1,000" or "(B)" works), else
 * the gold stripped is the answer; the two strings must be equal byte for
 * byte. Whitespace for stripping is ASCII (space, \t \n \v \f \r).
 *
 * Text that is not valid UTF-8 is searched as far as it is valid (PCRE2's
 * PCRE2_MATCH_INVALID_UTF); it is never an error. */
#ifndef RETORT_ANSWER_H
#define RETORT_ANSWER_H

typedef struct AnswerSpec AnswerSpec;

/* Parses a spec (above). NULL with the error set for an unknown spec or a
 * regex that does not compile, naming the spec, PCRE2's message and the
 * offset in the pattern. */
AnswerSpec *answer_spec_parse(const char *spec);
void answer_spec_free(AnswerSpec *s);

/* The spec as given ("regex:..." etc.), for messages and metrics files. */
const char *answer_spec_text(const AnswerSpec *s);

/* The answer in text: 1 with *out a new string (free() it), 0 with *out NULL
 * when there is none, -1 with the error set when the regex engine fails
 * (e.g. its match limit on a pathological pattern). */
int answer_spec_extract(const AnswerSpec *s, const char *text, char **out);

/* 1 when prediction's answer equals gold's (above), 0 when it does not or the
 * prediction has no answer, -1 with the error set as answer_spec_extract. */
int answer_spec_match(const AnswerSpec *s, const char *prediction, const char *gold);

#endif
