/* names: username rules and the uniqueness key, on ICU (see names.h). */
#include "chat/names.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/uspoof.h>
#include <unicode/ustring.h>
#include <unicode/utf16.h>

/* Longest input looked at: a decomposed (NFD) name may be longer than its
 * NFC form, which is what NAMES_MAX_BYTES bounds. */
#define NAMES_INPUT_MAX (NAMES_MAX_BYTES * 4)

static const UNormalizer2 *nfc, *nfkc_cf;
static USpoofChecker *spoof;
static pthread_once_t icu_once = PTHREAD_ONCE_INIT;

/* ICU hands out the normalizers as shared singletons; the spoof checker is
 * ours, configured once and from then on only read, which ICU allows from
 * many threads at once (login on the loop thread, keys on the storage
 * thread). It lives until exit. */
static void icu_load(void)
{
    UErrorCode st = U_ZERO_ERROR;
    nfc = unorm2_getNFCInstance(&st);
    if (U_FAILURE(st))
        nfc = NULL;
    st = U_ZERO_ERROR;
    nfkc_cf = unorm2_getNFKCCasefoldInstance(&st);
    if (U_FAILURE(st))
        nfkc_cf = NULL;
    st = U_ZERO_ERROR;
    USpoofChecker *sc = uspoof_open(&st);
    uspoof_setChecks(sc, USPOOF_RESTRICTION_LEVEL | USPOOF_INVISIBLE | USPOOF_MIXED_NUMBERS, &st);
    uspoof_setRestrictionLevel(sc, USPOOF_HIGHLY_RESTRICTIVE);
    if (U_FAILURE(st)) {
        uspoof_close(sc);
        sc = NULL;
    }
    spoof = sc;
}

static bool icu_ready(void)
{
    pthread_once(&icu_once, icu_load);
    return nfc && nfkc_cf && spoof;
}

size_t names_cut(const char *s, size_t max)
{
    size_t len = strlen(s);
    if (len <= max)
        return len;
    /* back up over continuation bytes (10xxxxxx) to a lead byte */
    size_t n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
        n--;
    return n;
}

/* Why a code point may not be in a name, or NULL if it may. */
static const char *code_point_refused(UChar32 c)
{
    switch (u_charType(c)) {
    case U_CONTROL_CHAR:
    case U_FORMAT_CHAR: /* zero-width (U+200B..U+200D), bidi controls, U+FEFF */
    case U_PRIVATE_USE_CHAR:
    case U_SURROGATE:
    case U_UNASSIGNED:
    case U_LINE_SEPARATOR:
    case U_PARAGRAPH_SEPARATOR:
        return "username must not contain control, invisible or text-direction characters";
    case U_SPACE_SEPARATOR:
        if (c != ' ')
            return "username may contain spaces (U+0020) but no other kind of space";
        return NULL;
    default:
        break;
    }
    /* Shown as nothing although not Cf: U+3164 HANGUL FILLER, variation
     * selectors, U+034F COMBINING GRAPHEME JOINER. */
    if (u_hasBinaryProperty(c, UCHAR_DEFAULT_IGNORABLE_CODE_POINT))
        return "username must not contain control, invisible or text-direction characters";
    if (c == '#')
        return "username must not contain '#'";
    return NULL;
}

int names_clean(const char *in, char *out, size_t cap, const char **why)
{
    if (cap)
        out[0] = '\0';
    if (!icu_ready()) {
        *why = "the server cannot load its Unicode data";
        return -1;
    }
    size_t in_len = strlen(in);
    if (in_len > NAMES_INPUT_MAX) {
        *why = "username must be 2 to 32 bytes of UTF-8";
        return -1;
    }
    UChar src[NAMES_INPUT_MAX + 1], norm[2 * NAMES_INPUT_MAX + 1];
    int32_t n = 0;
    UErrorCode st = U_ZERO_ERROR;
    u_strFromUTF8(src, NAMES_INPUT_MAX + 1, &n, in, (int32_t)in_len, &st);
    if (U_FAILURE(st)) {
        *why = "username must be valid UTF-8";
        return -1;
    }
    int32_t m = unorm2_normalize(nfc, src, n, norm, 2 * NAMES_INPUT_MAX + 1, &st);
    if (U_FAILURE(st)) {
        *why = "username must be 2 to 32 bytes of UTF-8";
        return -1;
    }
    int32_t bytes = 0;
    u_strToUTF8(out, (int32_t)cap, &bytes, norm, m, &st);
    if (U_FAILURE(st) || st == U_STRING_NOT_TERMINATED_WARNING || bytes < NAMES_MIN_BYTES ||
        bytes > NAMES_MAX_BYTES) {
        if (cap)
            out[0] = '\0';
        *why = "username must be 2 to 32 bytes of UTF-8";
        return -1;
    }
    UChar32 prev = 0;
    for (int32_t i = 0; i < m;) {
        UChar32 c;
        U16_NEXT(norm, i, m, c);
        const char *bad = code_point_refused(c);
        if (!bad && c == ' ' && (prev == 0 || prev == ' ' || i == m))
            bad = "username must not start or end with a space, nor have two in a row";
        if (bad) {
            out[0] = '\0';
            *why = bad;
            return -1;
        }
        prev = c;
    }
    int32_t checks = uspoof_check2(spoof, norm, m, NULL, &st);
    if (U_FAILURE(st) || checks != 0) {
        out[0] = '\0';
        *why = (checks & USPOOF_MIXED_NUMBERS)
                   ? "username must not mix digits of different numbering systems"
               : (checks & USPOOF_INVISIBLE)
                   ? "username must not repeat a combining mark"
                   : "username must not mix scripts (one script, or Latin with Chinese and "
                     "Japanese, or Chinese with Korean)";
        return -1;
    }
    return 0;
}

/* The ICU preflight idiom: asks for the length first, then fills a buffer
 * of that size. Each step below returns a malloc'd UTF-16 string. */
static UChar *to_utf16(const char *s, int32_t *len)
{
    UErrorCode st = U_ZERO_ERROR;
    u_strFromUTF8(NULL, 0, len, s, -1, &st);
    if (st != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(st))
        return NULL;
    UChar *u = malloc(((size_t)*len + 1) * sizeof(UChar));
    if (!u)
        return NULL;
    st = U_ZERO_ERROR;
    u_strFromUTF8(u, *len + 1, len, s, -1, &st);
    if (U_FAILURE(st)) {
        free(u);
        return NULL;
    }
    return u;
}

static UChar *casefold(const UChar *s, int32_t n, int32_t *len)
{
    UErrorCode st = U_ZERO_ERROR;
    *len = unorm2_normalize(nfkc_cf, s, n, NULL, 0, &st);
    if (st != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(st))
        return NULL;
    UChar *u = malloc(((size_t)*len + 1) * sizeof(UChar));
    if (!u)
        return NULL;
    st = U_ZERO_ERROR;
    *len = unorm2_normalize(nfkc_cf, s, n, u, *len + 1, &st);
    if (U_FAILURE(st)) {
        free(u);
        return NULL;
    }
    return u;
}

static UChar *skeleton(const UChar *s, int32_t n, int32_t *len)
{
    UErrorCode st = U_ZERO_ERROR;
    *len = uspoof_getSkeleton(spoof, 0, s, n, NULL, 0, &st);
    if (st != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(st))
        return NULL;
    UChar *u = malloc(((size_t)*len + 1) * sizeof(UChar));
    if (!u)
        return NULL;
    st = U_ZERO_ERROR;
    *len = uspoof_getSkeleton(spoof, 0, s, n, u, *len + 1, &st);
    if (U_FAILURE(st)) {
        free(u);
        return NULL;
    }
    return u;
}

static char *to_utf8(const UChar *s, int32_t n)
{
    UErrorCode st = U_ZERO_ERROR;
    int32_t len = 0;
    u_strToUTF8(NULL, 0, &len, s, n, &st);
    if (st != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(st))
        return NULL;
    char *out = malloc((size_t)len + 1);
    if (!out)
        return NULL;
    st = U_ZERO_ERROR;
    u_strToUTF8(out, len + 1, NULL, s, n, &st);
    if (U_FAILURE(st)) {
        free(out);
        return NULL;
    }
    return out;
}

char *names_key(const char *name)
{
    if (!icu_ready())
        return NULL;
    int32_t n1, n2, n3;
    UChar *u = to_utf16(name, &n1);
    UChar *folded = u ? casefold(u, n1, &n2) : NULL;
    UChar *skel = folded ? skeleton(folded, n2, &n3) : NULL;
    char *key = skel ? to_utf8(skel, n3) : NULL;
    free(u);
    free(folded);
    free(skel);
    return key;
}
