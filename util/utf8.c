/* util/utf8.c — see utf8.h. The lead byte gives the length and the range the
 * second byte must fall in (Table 3-7 of the Unicode Standard): that range is
 * what rules out overlong forms (E0, F0), surrogates (ED) and values above
 * U+10FFFF (F4), so no check on the decoded value is needed. */
#include "util/utf8.h"

#include <string.h>

#include "util/util.h"

int utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
    if (n == 0) return 0;
    unsigned lead = s[0];
    if (lead < 0x80) {
        *cp = lead;
        return 1;
    }
    size_t len;
    uint32_t value;
    unsigned second_lo = 0x80, second_hi = 0xBF;
    if (lead >= 0xC2 && lead <= 0xDF) {
        len = 2, value = lead & 0x1F;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
        len = 3, value = lead & 0x0F;
        if (lead == 0xE0) second_lo = 0xA0; /* below: overlong */
        if (lead == 0xED) second_hi = 0x9F; /* above: a surrogate */
    } else if (lead >= 0xF0 && lead <= 0xF4) {
        len = 4, value = lead & 0x07;
        if (lead == 0xF0) second_lo = 0x90; /* below: overlong */
        if (lead == 0xF4) second_hi = 0x8F; /* above: past U+10FFFF */
    } else {
        return 0; /* a continuation byte, C0/C1 (always overlong) or F5..FF */
    }
    if (len > n || s[1] < second_lo || s[1] > second_hi) return 0;
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80) return 0;
        value = value << 6 | (s[k] & 0x3F);
    }
    *cp = value;
    return (int)len;
}

char *utf8_sanitize(const char *s, size_t n) {
    char *out = xmalloc(3 * n + 1), *o = out;
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int len = utf8_decode(p + i, n - i, &cp);
        if (len) {
            memcpy(o, p + i, (size_t)len);
            o += len;
            i += (size_t)len;
        } else {
            memcpy(o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    *o = '\0';
    return out;
}
