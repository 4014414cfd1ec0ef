/* util/utf8.h — the shared UTF-8 decoder, and the sanitizer built on it.
 *
 * Well-formed UTF-8 is RFC 3629 (the Unicode Standard's Table 3-7): a code
 * point U+0000..U+10FFFF other than a surrogate (U+D800..U+DFFF), in the
 * shortest of the 1- to 4-byte forms. Everything else is ill-formed and
 * utf8_decode says so by returning 0; what to do then is the caller's choice,
 * and each caller states it: U+FFFD for text bound for JSON, a code point of
 * its own for each bad byte in the metrics (both then step one byte on, as
 * Python's errors="replace" does), the raw bytes of the whole string for a
 * tokenizer's vocabulary entry.
 */
#ifndef RETORT_UTF8_H
#define RETORT_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Decodes the character at the start of s[0:n]. When s starts a well-formed
 * sequence, stores its code point in *cp and returns its length, 1 to 4.
 * Otherwise returns 0 and leaves *cp alone: n is 0; the first byte is a
 * continuation byte (0x80..0xBF), 0xC0, 0xC1 or 0xF5..0xFF; the sequence
 * needs more than n bytes; a byte that must continue it is not 0x80..0xBF; or
 * it is an overlong form, a surrogate, or above U+10FFFF. Reads at most
 * min(n, 4) bytes. */
int utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);

/* A newly allocated copy of s[0:n] in which every byte that is not part of a
 * well-formed UTF-8 sequence becomes U+FFFD (as Python's errors="replace"),
 * for text that must go into JSON. */
char *utf8_sanitize(const char *s, size_t n);

#endif
