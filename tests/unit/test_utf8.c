/* Unit tests for ws/utf8: the incremental UTF-8 DFA.
 *
 * Besides hand-picked vectors (boundaries, overlongs, surrogates, Autobahn
 * 6.x cases), the DFA is checked against an independent reference decoder
 * that computes code points arithmetically, over every code point and every
 * short byte sequence, so a wrong table cell cannot hide between examples. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "ws/utf8.h"

/* Encodes cp as UTF-8 the way the bit layout says, without checking that cp
 * is a scalar value, so surrogates can be produced on purpose. */
static size_t test_utf8_encode(uint32_t cp, uint8_t out[4])
{
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | (cp >> 6));
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | (cp >> 12));
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | (cp >> 18));
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* Reference validator written from the definition rather than from Table
 * 3-7: decode by lead-byte pattern, then reject overlongs, surrogates and
 * values above U+10FFFF by their numeric value. */
static bool test_utf8_reference(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t b = s[i];
        size_t n;
        uint32_t cp;
        if (b < 0x80) {
            i++;
            continue;
        } else if ((b & 0xE0) == 0xC0) {
            n = 2;
            cp = b & 0x1F;
        } else if ((b & 0xF0) == 0xE0) {
            n = 3;
            cp = b & 0x0F;
        } else if ((b & 0xF8) == 0xF0) {
            n = 4;
            cp = b & 0x07;
        } else {
            return false;
        }
        if (len - i < n)
            return false;
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        static const uint32_t min_for_len[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_for_len[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += n;
    }
    return true;
}

static uint32_t feed_bytewise(const uint8_t *s, size_t len)
{
    uint32_t st = UTF8_ACCEPT;
    for (size_t i = 0; i < len; i++)
        st = utf8_feed(st, s + i, 1);
    return st;
}

/* Whole, byte by byte and every two-fragment split must agree; returns the
 * whole-buffer state. */
static uint32_t feed_all_ways(const uint8_t *s, size_t len)
{
    uint32_t whole = utf8_feed(UTF8_ACCEPT, s, len);
    assert_int_equal(feed_bytewise(s, len), whole);
    for (size_t cut = 0; cut <= len; cut++) {
        uint32_t st = utf8_feed(UTF8_ACCEPT, s, cut);
        st = utf8_feed(st, s + cut, len - cut);
        assert_int_equal(st, whole);
    }
    return whole;
}

#define BYTES(...) ((const uint8_t[]){__VA_ARGS__}), sizeof((const uint8_t[]){__VA_ARGS__})

static void expect_valid(const uint8_t *s, size_t len)
{
    assert_int_equal(feed_all_ways(s, len), UTF8_ACCEPT);
    assert_true(utf8_is_valid(s, len));
}

static void expect_invalid(const uint8_t *s, size_t len)
{
    assert_int_equal(feed_all_ways(s, len), UTF8_REJECT);
    assert_false(utf8_is_valid(s, len));
}

/* Valid so far but cut inside a character. */
static void expect_truncated(const uint8_t *s, size_t len)
{
    uint32_t st = feed_all_ways(s, len);
    assert_int_not_equal(st, UTF8_ACCEPT);
    assert_int_not_equal(st, UTF8_REJECT);
    assert_false(utf8_is_valid(s, len));
}

static void test_empty(void **state)
{
    (void)state;
    assert_int_equal(utf8_feed(UTF8_ACCEPT, NULL, 0), UTF8_ACCEPT);
    assert_true(utf8_is_valid(NULL, 0));
    assert_true(utf8_is_valid((const uint8_t *)"", 0));
}

static void test_ascii(void **state)
{
    (void)state;
    uint8_t all[128];
    for (int i = 0; i < 128; i++)
        all[i] = (uint8_t)i;
    expect_valid(all, sizeof(all));
    expect_valid((const uint8_t *)"Hello-World", 11);
    /* Every position of one high byte in a long ASCII run, so the 8-byte
     * ASCII skip cannot step over it. */
    for (size_t pos = 0; pos < 40; pos++) {
        uint8_t buf[40];
        memset(buf, 'a', sizeof(buf));
        buf[pos] = 0x80;
        assert_int_equal(utf8_feed(UTF8_ACCEPT, buf, sizeof(buf)), UTF8_REJECT);
        buf[pos] = 0xC3; /* truncated lead at the end, invalid elsewhere */
        uint32_t st = utf8_feed(UTF8_ACCEPT, buf, sizeof(buf));
        if (pos == sizeof(buf) - 1)
            assert_true(st != UTF8_ACCEPT && st != UTF8_REJECT);
        else
            assert_int_equal(st, UTF8_REJECT);
    }
}

static void test_multibyte_valid(void **state)
{
    (void)state;
    expect_valid(BYTES(0xC3, 0xA9));             /* é */
    expect_valid(BYTES(0xE2, 0x82, 0xAC));       /* € */
    expect_valid(BYTES(0xF0, 0x9F, 0x98, 0x80)); /* 😀 */
    expect_valid(BYTES('a', 0xC3, 0xA9, 'b', 0xE2, 0x82, 0xAC, 0xF0, 0x9F, 0x98, 0x80, 'z'));
    expect_valid(BYTES(0xED, 0x9F, 0xBF));       /* U+D7FF, last before surrogates */
    expect_valid(BYTES(0xEE, 0x80, 0x80));       /* U+E000, first after surrogates */
    expect_valid(BYTES(0xEF, 0xBF, 0xBD));       /* U+FFFD */
    expect_valid(BYTES(0xF1, 0x80, 0x80, 0x80)); /* U+40000 */
    expect_valid(BYTES(0xF3, 0xBF, 0xBF, 0xBF)); /* U+FFFFF */
    expect_valid(BYTES(0xF4, 0x80, 0x80, 0x80)); /* U+100000 */
}

static void test_boundary_code_points(void **state)
{
    (void)state;
    static const struct {
        uint32_t cp;
        uint8_t bytes[4];
        size_t len;
    } cases[] = {
        {0x0000, {0x00}, 1},
        {0x007F, {0x7F}, 1},
        {0x0080, {0xC2, 0x80}, 2},
        {0x07FF, {0xDF, 0xBF}, 2},
        {0x0800, {0xE0, 0xA0, 0x80}, 3},
        {0xFFFF, {0xEF, 0xBF, 0xBF}, 3},
        {0x10000, {0xF0, 0x90, 0x80, 0x80}, 4},
        {0x10FFFF, {0xF4, 0x8F, 0xBF, 0xBF}, 4},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t enc[4];
        /* The helper encoder and the literal bytes must agree, so the
         * exhaustive test below rests on a checked encoder. */
        assert_int_equal(test_utf8_encode(cases[i].cp, enc), cases[i].len);
        assert_memory_equal(enc, cases[i].bytes, cases[i].len);
        expect_valid(cases[i].bytes, cases[i].len);
    }
}

static void test_every_code_point(void **state)
{
    (void)state;
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        uint8_t enc[4];
        size_t n = test_utf8_encode(cp, enc);
        bool surrogate = cp >= 0xD800 && cp <= 0xDFFF;
        uint32_t st = utf8_feed(UTF8_ACCEPT, enc, n);
        if (st != (surrogate ? UTF8_REJECT : UTF8_ACCEPT))
            fail_msg("U+%04X: state %u", (unsigned)cp, (unsigned)st);
        /* Every proper prefix of a valid character is "inside", never a
         * verdict. */
        for (size_t k = 1; k < n && !surrogate; k++) {
            uint32_t p = utf8_feed(UTF8_ACCEPT, enc, k);
            if (p == UTF8_ACCEPT || p == UTF8_REJECT)
                fail_msg("U+%04X prefix %zu: state %u", (unsigned)cp, k, (unsigned)p);
        }
    }
}

static void test_overlong(void **state)
{
    (void)state;
    expect_invalid(BYTES(0xC0, 0x80));             /* U+0000 in 2 bytes */
    expect_invalid(BYTES(0xC0, 0xAF));             /* '/' in 2 bytes */
    expect_invalid(BYTES(0xC1, 0xBF));             /* U+007F in 2 bytes */
    expect_invalid(BYTES(0xE0, 0x80, 0x80));       /* U+0000 in 3 bytes */
    expect_invalid(BYTES(0xE0, 0x9F, 0xBF));       /* U+07FF in 3 bytes */
    expect_invalid(BYTES(0xF0, 0x80, 0x80, 0x80)); /* U+0000 in 4 bytes */
    expect_invalid(BYTES(0xF0, 0x8F, 0xBF, 0xBF)); /* U+FFFF in 4 bytes */
}

static void test_surrogates(void **state)
{
    (void)state;
    expect_invalid(BYTES(0xED, 0xA0, 0x80)); /* U+D800 */
    expect_invalid(BYTES(0xED, 0xAD, 0xBF)); /* U+DB7F */
    expect_invalid(BYTES(0xED, 0xB0, 0x80)); /* U+DC00 */
    expect_invalid(BYTES(0xED, 0xBF, 0xBF)); /* U+DFFF */
    /* A CESU-8 style pair is still two surrogates. */
    expect_invalid(BYTES(0xED, 0xA0, 0xBD, 0xED, 0xB8, 0x80));
}

static void test_above_max(void **state)
{
    (void)state;
    expect_invalid(BYTES(0xF4, 0x90, 0x80, 0x80)); /* U+110000 */
    expect_invalid(BYTES(0xF4, 0xBF, 0xBF, 0xBF));
    expect_invalid(BYTES(0xF5, 0x80, 0x80, 0x80));
    expect_invalid(BYTES(0xF7, 0xBF, 0xBF, 0xBF)); /* U+1FFFFF */
    for (int b = 0xF5; b <= 0xFF; b++) {
        uint8_t one = (uint8_t)b;
        expect_invalid(&one, 1);
    }
    expect_invalid(BYTES(0xC0));
    expect_invalid(BYTES(0xC1));
}

static void test_unexpected_continuation(void **state)
{
    (void)state;
    for (int b = 0x80; b <= 0xBF; b++) {
        uint8_t one = (uint8_t)b;
        expect_invalid(&one, 1);
    }
    expect_invalid(BYTES('a', 0x80, 'b'));
    expect_invalid(BYTES(0xC3, 0xA9, 0xA9)); /* one continuation too many */
}

static void test_truncated(void **state)
{
    (void)state;
    expect_truncated(BYTES(0xC3));
    expect_truncated(BYTES(0xE2));
    expect_truncated(BYTES(0xE2, 0x82));
    expect_truncated(BYTES(0xE0, 0xA0));
    expect_truncated(BYTES(0xED, 0x9F));
    expect_truncated(BYTES(0xF0));
    expect_truncated(BYTES(0xF0, 0x9F));
    expect_truncated(BYTES(0xF0, 0x9F, 0x98));
    expect_truncated(BYTES(0xF4, 0x8F, 0xBF));
    expect_truncated(BYTES('o', 'k', 0xF1, 0x80));
    /* A truncated character followed by anything but a continuation is
     * invalid, not silently resynchronised. */
    expect_invalid(BYTES(0xC3, 'A'));
    expect_invalid(BYTES(0xE2, 0x82, 'A'));
    expect_invalid(BYTES(0xF0, 0x9F, 0x98, 0xC3, 0xA9));
}

static void test_reject_is_sticky(void **state)
{
    (void)state;
    uint32_t st = utf8_feed(UTF8_ACCEPT, BYTES(0xFF));
    assert_int_equal(st, UTF8_REJECT);
    st = utf8_feed(st, (const uint8_t *)"plain ascii text", 16);
    assert_int_equal(st, UTF8_REJECT);
    st = utf8_feed(st, BYTES(0xC3, 0xA9));
    assert_int_equal(st, UTF8_REJECT);
    assert_int_equal(utf8_feed(UTF8_REJECT, NULL, 0), UTF8_REJECT);
}

static void test_bad_state_rejected(void **state)
{
    (void)state;
    /* A state the DFA never produces must not be used as a table index. */
    assert_int_equal(utf8_feed(9, BYTES('a')), UTF8_REJECT);
    assert_int_equal(utf8_feed(0xFFFFFFFFu, BYTES('a')), UTF8_REJECT);
}

static void test_fragments_match_whole(void **state)
{
    (void)state;
    /* "κόσμε" + "€𝄞" + ASCII: split everywhere, including inside characters,
     * as a fragmented WebSocket message would be. */
    static const uint8_t msg[] = {0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xCE, 0xBC, 0xCE,
                                  0xB5, 0xE2, 0x82, 0xAC, 0xF0, 0x9D, 0x84, 0x9E, 'h',  'i'};
    expect_valid(msg, sizeof(msg));
    /* Three fragments at every pair of cut points. */
    for (size_t a = 0; a <= sizeof(msg); a++) {
        for (size_t b = a; b <= sizeof(msg); b++) {
            uint32_t st = utf8_feed(UTF8_ACCEPT, msg, a);
            st = utf8_feed(st, msg + a, b - a);
            st = utf8_feed(st, msg + b, sizeof(msg) - b);
            assert_int_equal(st, UTF8_ACCEPT);
        }
    }
    /* The same with an invalid byte in the middle. */
    uint8_t bad[sizeof(msg)];
    memcpy(bad, msg, sizeof(msg));
    bad[12] = 0xC0;
    expect_invalid(bad, sizeof(bad));
}

/* Autobahn TestSuite section 6 (UTF-8 handling), as byte strings. */
static void test_autobahn_6(void **state)
{
    (void)state;
    /* 6.2.1: valid "κόσμε" in one piece. */
    expect_valid(BYTES(0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xCE, 0xBC, 0xCE, 0xB5));
    /* 6.3.1: "κόσμε" + surrogate + "edited" is invalid. */
    expect_invalid(BYTES(0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xCE, 0xBC, 0xCE, 0xB5, 0xED,
                         0xA0, 0x80, 0x65, 0x64, 0x69, 0x74, 0x65, 0x64));
    /* 6.4.x fail fast: the verdict comes at the first impossible byte, not
     * at the end of the frame, so the connection can close mid-message. */
    static const uint8_t kosme_f4[] = {0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83,
                                       0xCE, 0xBC, 0xCE, 0xB5, 0xF4, 0x90};
    assert_int_not_equal(utf8_feed(UTF8_ACCEPT, kosme_f4, sizeof(kosme_f4) - 1), UTF8_REJECT);
    assert_int_equal(utf8_feed(UTF8_ACCEPT, kosme_f4, sizeof(kosme_f4)), UTF8_REJECT);
    /* 6.7/6.8: old 5- and 6-byte forms are gone. */
    expect_invalid(BYTES(0xF8, 0x88, 0x80, 0x80, 0x80));
    expect_invalid(BYTES(0xFC, 0x84, 0x80, 0x80, 0x80, 0x80));
    /* 6.9: last valid of each length. */
    expect_valid(BYTES(0x7F));
    expect_valid(BYTES(0xDF, 0xBF));
    expect_valid(BYTES(0xEF, 0xBF, 0xBF));
    expect_valid(BYTES(0xF4, 0x8F, 0xBF, 0xBF));
    /* 6.10: beyond the range. */
    expect_invalid(BYTES(0xF7, 0xBF, 0xBF, 0xBF));
    expect_invalid(BYTES(0xFB, 0xBF, 0xBF, 0xBF, 0xBF));
    /* 6.14: lonely start characters followed by a space. */
    expect_invalid(BYTES(0xC0, 0x20));
    expect_invalid(BYTES(0xDF, 0x20));
    expect_invalid(BYTES(0xE0, 0x20));
    expect_invalid(BYTES(0xF0, 0x20));
    /* 6.16: impossible bytes. */
    expect_invalid(BYTES(0xFE));
    expect_invalid(BYTES(0xFF));
    expect_invalid(BYTES(0xFE, 0xFE, 0xFF, 0xFF));
    /* 6.17/6.18: overlong forms of '/' and maximal overlongs. */
    expect_invalid(BYTES(0xE0, 0x80, 0xAF));
    expect_invalid(BYTES(0xF0, 0x80, 0x80, 0xAF));
    expect_invalid(BYTES(0xF8, 0x80, 0x80, 0x80, 0xAF));
    /* 6.22: noncharacters are valid scalar values and must pass. */
    expect_valid(BYTES(0xEF, 0xBF, 0xBE));       /* U+FFFE */
    expect_valid(BYTES(0xEF, 0xB7, 0x90));       /* U+FDD0 */
    expect_valid(BYTES(0xF0, 0x9F, 0xBF, 0xBE)); /* U+1FFFE */
    expect_valid(BYTES(0xF4, 0x8F, 0xBF, 0xBE)); /* U+10FFFE */
    /* 6.23: the replacement character. */
    expect_valid(BYTES(0xEF, 0xBF, 0xBD));
}

static void check_against_reference(const uint8_t *s, size_t len)
{
    bool want = test_utf8_reference(s, len);
    uint32_t st = utf8_feed(UTF8_ACCEPT, s, len);
    if ((st == UTF8_ACCEPT) != want) {
        char hex[64] = "";
        for (size_t i = 0; i < len; i++)
            snprintf(hex + 3 * i, sizeof(hex) - 3 * i, "%02X ", s[i]);
        fail_msg("%s: DFA state %u, reference %s", hex, (unsigned)st, want ? "valid" : "invalid");
    }
}

static void test_exhaustive_short_sequences(void **state)
{
    (void)state;
    uint8_t s[4];
    for (unsigned a = 0; a < 256; a++) {
        s[0] = (uint8_t)a;
        check_against_reference(s, 1);
        for (unsigned b = 0; b < 256; b++) {
            s[1] = (uint8_t)b;
            check_against_reference(s, 2);
            for (unsigned c = 0; c < 256; c++) {
                s[2] = (uint8_t)c;
                check_against_reference(s, 3);
            }
        }
    }
    /* Four bytes: every lead and second byte, with third and fourth bytes
     * drawn from the class boundaries. */
    static const uint8_t edge[] = {0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xFF};
    for (unsigned a = 0xC0; a < 256; a++) {
        s[0] = (uint8_t)a;
        for (unsigned b = 0; b < 256; b++) {
            s[1] = (uint8_t)b;
            for (size_t c = 0; c < sizeof(edge); c++) {
                s[2] = edge[c];
                for (size_t d = 0; d < sizeof(edge); d++) {
                    s[3] = edge[d];
                    check_against_reference(s, 4);
                }
            }
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_ascii),
        cmocka_unit_test(test_multibyte_valid),
        cmocka_unit_test(test_boundary_code_points),
        cmocka_unit_test(test_every_code_point),
        cmocka_unit_test(test_overlong),
        cmocka_unit_test(test_surrogates),
        cmocka_unit_test(test_above_max),
        cmocka_unit_test(test_unexpected_continuation),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_reject_is_sticky),
        cmocka_unit_test(test_bad_state_rejected),
        cmocka_unit_test(test_fragments_match_whole),
        cmocka_unit_test(test_autobahn_6),
        cmocka_unit_test(test_exhaustive_short_sequences),
    };
    return cmocka_run_group_tests_name("utf8", tests, NULL, NULL);
}
