/* tests/test_utf8.c — util/utf8.c, the one UTF-8 decoder: each kind of
 * well-formed and ill-formed sequence by hand, then every input of 1 to 4
 * bytes against an independent encoder (the decoder accepts exactly the
 * shortest encodings of the 1,112,064 Unicode scalar values), then the
 * sanitizer built on it. */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/utf8.h"

#define UNTOUCHED 0xDEADBEEFu

/* The length utf8_decode gives bytes[0:n], and the code point (UNTOUCHED when
 * it leaves *cp alone). */
static int decode(const char *bytes, size_t n, uint32_t *cp) {
    *cp = UNTOUCHED;
    return utf8_decode((const unsigned char *)bytes, n, cp);
}

static void expect_char(const char *bytes, size_t n, int want_len, uint32_t want_cp) {
    uint32_t cp;
    int len = decode(bytes, n, &cp);
    cr_expect_eq(len, want_len, "length %d, want %d (first byte 0x%02X, n %zu)", len, want_len,
                 (unsigned char)bytes[0], n);
    cr_expect_eq(cp, want_cp, "U+%04X, want U+%04X (first byte 0x%02X)", cp, want_cp,
                 (unsigned char)bytes[0]);
}

/* bytes (a string literal: n is its length) is ill-formed at its start */
static void expect_refused(const char *bytes, size_t n, const char *why) {
    uint32_t cp;
    int len = decode(bytes, n, &cp);
    cr_expect_eq(len, 0, "%s: accepted as %d bytes", why, len);
    cr_expect_eq(cp, UNTOUCHED, "%s: *cp was written", why);
}
#define REFUSED(lit, why) expect_refused(lit, sizeof lit - 1, why)

Test(utf8, ascii_is_one_byte) {
    expect_char("A", 1, 1, 'A');
    expect_char("\x7F", 1, 1, 0x7F);
    expect_char("", 1, 1, 0); /* a NUL byte is U+0000 when n counts it */
    expect_char("ab", 2, 1, 'a');
}

Test(utf8, two_three_and_four_byte_forms_at_their_bounds) {
    expect_char("\xC2\x80", 2, 2, 0x80);
    expect_char("\xC3\xA9", 2, 2, 0xE9);
    expect_char("\xDF\xBF", 2, 2, 0x7FF);
    expect_char("\xE0\xA0\x80", 3, 3, 0x800);
    expect_char("\xE2\x82\xAC", 3, 3, 0x20AC);
    expect_char("\xED\x9F\xBF", 3, 3, 0xD7FF); /* last before the surrogates */
    expect_char("\xEE\x80\x80", 3, 3, 0xE000); /* first after them */
    expect_char("\xEF\xBF\xBF", 3, 3, 0xFFFF);
    expect_char("\xF0\x90\x80\x80", 4, 4, 0x10000);
    expect_char("\xF0\x9F\x98\x80", 4, 4, 0x1F600);
    expect_char("\xF4\x8F\xBF\xBF", 4, 4, 0x10FFFF);
    /* only the first character is read */
    expect_char("\xC3\xA9z", 3, 2, 0xE9);
    expect_char("\xE2\x82\xAC\xE2\x82\xAC", 6, 3, 0x20AC);
}

Test(utf8, stray_continuation_and_bad_lead_bytes_are_refused) {
    REFUSED("\x80", "a lone continuation byte");
    REFUSED("\xBF\x80", "a continuation byte first");
    REFUSED("\xF8\x88\x80\x80\x80", "an F8 lead (5-byte form)");
    REFUSED("\xFC\x84\x80\x80\x80\x80", "an FC lead (6-byte form)");
    REFUSED("\xFE", "FE");
    REFUSED("\xFF", "FF");
}

Test(utf8, invalid_continuation_bytes_are_refused) {
    REFUSED("\xC3\x28", "2-byte, second byte ASCII");
    REFUSED("\xC3\xC3\xA9", "2-byte, second byte a lead");
    REFUSED("\xE2\x28\xA1", "3-byte, second byte bad");
    REFUSED("\xE2\x82\x28", "3-byte, third byte bad");
    REFUSED("\xF0\x28\x8C\xBC", "4-byte, second byte bad");
    REFUSED("\xF0\x90\x28\xBC", "4-byte, third byte bad");
    REFUSED("\xF0\x9F\x98\x28", "4-byte, fourth byte bad");
}

Test(utf8, truncated_sequences_are_refused) {
    uint32_t cp;
    cr_expect_eq(decode("\xC3\xA9", 1, &cp), 0, "2-byte cut to 1");
    cr_expect_eq(decode("\xE2\x82\xAC", 2, &cp), 0, "3-byte cut to 2");
    cr_expect_eq(decode("\xE2\x82\xAC", 1, &cp), 0, "3-byte cut to 1");
    cr_expect_eq(decode("\xF0\x9F\x98\x80", 3, &cp), 0, "4-byte cut to 3");
    cr_expect_eq(decode("\xF0\x9F\x98\x80", 1, &cp), 0, "4-byte cut to 1");
    cr_expect_eq(cp, UNTOUCHED);
    cr_expect_eq(decode("A", 0, &cp), 0, "n = 0 decodes nothing");
    REFUSED("\xE2\x82", "3-byte at the end of the text");
}

Test(utf8, overlong_forms_are_refused) {
    REFUSED("\xC0\x80", "U+0000 in 2 bytes");
    REFUSED("\xC1\x81", "'A' in 2 bytes");
    REFUSED("\xC1\xBF", "U+007F in 2 bytes");
    REFUSED("\xE0\x80\x80", "U+0000 in 3 bytes");
    REFUSED("\xE0\x9F\xBF", "U+07FF in 3 bytes");
    REFUSED("\xF0\x80\x80\x80", "U+0000 in 4 bytes");
    REFUSED("\xF0\x8F\xBF\xBF", "U+FFFF in 4 bytes");
}

Test(utf8, surrogates_are_refused) {
    REFUSED("\xED\xA0\x80", "U+D800");
    REFUSED("\xED\xAD\xBF", "U+DB7F");
    REFUSED("\xED\xB0\x80", "U+DC00");
    REFUSED("\xED\xBF\xBF", "U+DFFF");
    REFUSED("\xED\xA0\xBD\xED\xB8\x80", "a surrogate pair (CESU-8)");
}

Test(utf8, code_points_past_10FFFF_are_refused) {
    REFUSED("\xF4\x90\x80\x80", "U+110000");
    REFUSED("\xF4\xBF\xBF\xBF", "U+13FFFF");
    REFUSED("\xF5\x80\x80\x80", "U+140000");
    REFUSED("\xF7\xBF\xBF\xBF", "U+1FFFFF");
}

/* The shortest UTF-8 form of a scalar value, written without the decoder's
 * tables: the length follows from the value alone. */
static int encode(uint32_t cp, unsigned char out[4]) {
    if (cp < 0x80) return out[0] = (unsigned char)cp, 1;
    int len = cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    for (int k = len - 1; k > 0; k--, cp >>= 6) out[k] = (unsigned char)(0x80 | (cp & 0x3F));
    out[0] = (unsigned char)((0xF00u >> len) | cp);
    return len;
}

Test(utf8, every_scalar_value_round_trips) {
    unsigned char buf[4];
    long checked = 0;
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        if (cp >= 0xD800 && cp <= 0xDFFF) continue;
        int len = encode(cp, buf);
        uint32_t got = UNTOUCHED;
        int n = utf8_decode(buf, (size_t)len, &got);
        if (n != len || got != cp)
            cr_assert_fail("U+%04X: decoded %d bytes as U+%04X", cp, n, got);
        if (utf8_decode(buf, (size_t)len - 1, &got) != 0)
            cr_assert_fail("U+%04X: accepted with its last byte cut off", cp);
        checked++;
    }
    cr_expect_eq(checked, 1112064);
}

/* Every buffer of 1, 2 and 3 bytes, and every 4-byte one with a lead F0..F4
 * (no other lead starts a 4-byte form; the 3-byte sweep refuses them all):
 * each accepted as one character of its full length re-encodes to the same
 * bytes, and there are exactly as many as scalar values of that length, so
 * nothing else is accepted. */
static long accepted_of_length(int n, uint32_t first, uint32_t count) {
    long accepted = 0;
    unsigned char s[4], again[4];
    for (uint32_t v = first; v < first + count; v++) {
        for (int k = 0; k < n; k++) s[k] = (unsigned char)(v >> (8 * (n - 1 - k)));
        uint32_t cp;
        int len = utf8_decode(s, (size_t)n, &cp);
        cr_assert_leq(len, n, "read past n");
        if (len != n) continue;
        if (encode(cp, again) != n || memcmp(again, s, (size_t)n) != 0)
            cr_assert_fail("%d bytes from 0x%08X decoded as U+%04X", n, v, cp);
        accepted++;
    }
    return accepted;
}

Test(utf8, nothing_but_the_shortest_forms_is_accepted, .timeout = 60) {
    cr_expect_eq(accepted_of_length(1, 0, 1u << 8), 0x80);
    cr_expect_eq(accepted_of_length(2, 0, 1u << 16), 0x800 - 0x80);
    cr_expect_eq(accepted_of_length(3, 0, 1u << 24), 0x10000 - 0x800 - 0x800); /* less surrogates */
    cr_expect_eq(accepted_of_length(4, 0xF0u << 24, 5u << 24), 0x110000 - 0x10000);
}

Test(utf8, sanitize_replaces_each_bad_byte_and_keeps_the_rest) {
    const char in[] = "a\xC3\xA9\xC0\x80\xED\xA0\x80\xF4\x90\x80\x80\xE2\x82";
    char *out = utf8_sanitize(in, sizeof in - 1);
    const char *fffd = "\xEF\xBF\xBD";
    char want[64];
    snprintf(want, sizeof want, "a\xC3\xA9%s%s%s%s%s%s%s%s%s%s%s", fffd, fffd, fffd, fffd, fffd,
             fffd, fffd, fffd, fffd, fffd, fffd);
    cr_expect_str_eq(out, want);
    free(out);
    char *empty = utf8_sanitize("", 0);
    cr_expect_str_eq(empty, "");
    free(empty);
}
