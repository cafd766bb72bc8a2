/* Unit tests for the username rules and the uniqueness key (chat/names). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "chat/names.h"

/* True when a and b get one key, i.e. cannot both be account names. */
static bool same_key(const char *a, const char *b)
{
    char *ka = names_key(a), *kb = names_key(b);
    assert_non_null(ka);
    assert_non_null(kb);
    bool same = strcmp(ka, kb) == 0;
    free(ka);
    free(kb);
    return same;
}

static void assert_clean(const char *in, const char *want)
{
    char out[NAMES_MAX_BYTES + 1];
    const char *why = NULL;
    assert_int_equal(names_clean(in, out, sizeof(out), &why), 0);
    assert_string_equal(out, want);
}

static void assert_refused(const char *in)
{
    char out[NAMES_MAX_BYTES + 1];
    const char *why = NULL;
    assert_int_equal(names_clean(in, out, sizeof(out), &why), -1);
    assert_non_null(why);
    assert_string_equal(out, "");
}

static void test_case_folding_beyond_ascii(void **state)
{
    (void)state;
    assert_true(same_key("Jürgen", "JÜRGEN"));
    assert_true(same_key("jürgen", "JÜRGEN"));
    assert_true(same_key("Straße", "STRASSE")); /* full case folding */
    assert_true(same_key("ΣΊΣΥΦΟΣ", "σίσυφος"));
    assert_true(same_key("Bob", "bob"));
    assert_false(same_key("Jürgen", "Jurgen")); /* the accent is part of the name */
    assert_false(same_key("alice", "alicia"));
}

static void test_nfd_equals_nfc(void **state)
{
    (void)state;
    assert_true(same_key("J\xc3\xbcrgen", "Ju\xcc\x88rgen")); /* U+00FC vs u + U+0308 */
    /* the display form is NFC whatever was typed */
    assert_clean("Ju\xcc\x88rgen", "J\xc3\xbcrgen");
    assert_clean("J\xc3\xbcrgen", "J\xc3\xbcrgen");
}

static void test_confusables(void **state)
{
    (void)state;
    /* Cyrillic а (U+0430) inside Latin: one key, and refused as mixed */
    assert_true(same_key("paypal", "p\xd0\xb0ypal"));
    assert_refused("p\xd0\xb0ypal");
    /* all Cyrillic "рауее": one script, so allowed, but it reads "payee" */
    const char *cyr = "\xd1\x80\xd0\xb0\xd1\x83\xd0\xb5\xd0\xb5";
    assert_clean(cyr, cyr);
    assert_true(same_key("payee", cyr));
    assert_true(same_key("PAYEE", cyr));
    /* fullwidth letters fold to ASCII (NFKC) */
    assert_true(same_key("\xef\xbc\xa1\xef\xbc\xa2\xef\xbc\xa3", "abc"));
    assert_true(same_key("rn", "m"));
    assert_true(same_key("a1l", "all"));
    /* case folds first, so capital I is i, not l: a known limit (SECURITY-h4.md) */
    assert_false(same_key("Ivan", "lvan"));
}

static void test_invisible_and_bidi_refused(void **state)
{
    (void)state;
    assert_refused("al\xe2\x80\x8b"
                   "ice"); /* U+200B zero width space */
    assert_refused("al\xe2\x80\x8d"
                   "ice"); /* U+200D zero width joiner */
    assert_refused("al\xe2\x80\x8c"
                   "ice"); /* U+200C zero width non-joiner */
    assert_refused("alice\xe2\x80\xae"
                   "gpj"); /* U+202E right-to-left override */
    assert_refused("\xe2\x81\xa6"
                   "alice"); /* U+2066 left-to-right isolate */
    assert_refused("\xe2\x81\xa9"
                   "alice"); /* U+2069 pop directional isolate */
    assert_refused("\xef\xbb\xbf"
                   "alice"); /* U+FEFF */
    assert_refused("al\xc2\xad"
                   "ice"); /* U+00AD soft hyphen */
    assert_refused("al\xe3\x85\xa4"
                   "ice");               /* U+3164 hangul filler */
    assert_refused("alice\xef\xb8\x8f"); /* U+FE0F variation selector */
    assert_refused("al\tice");
    assert_refused("al\x7f"
                   "ice");
    assert_refused("al\xc2\x85"
                   "ice"); /* U+0085 NEL (C1) */
    assert_refused("al\xe2\x80\xa8"
                   "ice"); /* U+2028 line separator */
    assert_refused("al\xee\x80\x80"
                   "ice"); /* U+E000 private use */
    /* and the zero-width forms are distinct keys only because they are refused */
    assert_true(same_key("alice", "alice"));
}

static void test_spaces_and_hash(void **state)
{
    (void)state;
    assert_clean("Mary Ann", "Mary Ann");
    assert_refused(" alice");
    assert_refused("alice ");
    assert_refused("Mary  Ann");
    assert_refused("Mary\xc2\xa0"
                   "Ann"); /* U+00A0 no-break space */
    assert_refused("Mary\xe3\x80\x80"
                   "Ann"); /* U+3000 ideographic space */
    assert_refused("bob#1");
}

static void test_lengths(void **state)
{
    (void)state;
    assert_refused("");
    assert_refused("a");
    assert_clean("ab", "ab");
    assert_clean("abcdefghijklmnopqrstuvwxyz012345", "abcdefghijklmnopqrstuvwxyz012345");
    assert_refused("abcdefghijklmnopqrstuvwxyz0123456");
    /* 10 CJK characters are 30 bytes, 11 are 33 */
    assert_clean("中中中中中中中中中中", "中中中中中中中中中中");
    assert_refused("中中中中中中中中中中中");
    assert_refused("\xff\xfe"); /* not UTF-8 */
    assert_refused("a\xc3");    /* cut mid-character */
}

static void test_scripts_allowed(void **state)
{
    (void)state;
    assert_clean("田中太郎", "田中太郎");
    assert_clean("たなか Tanaka", "たなか Tanaka"); /* Latin + Japanese */
    assert_clean("김철수", "김철수");
    assert_clean("Иван", "Иван");
    assert_clean("user_42", "user_42");
    assert_refused("Ivan Иван");    /* Latin + Cyrillic */
    assert_refused("\xce\xb1lpha"); /* Greek alpha + Latin */
    assert_refused("12\xd9\xa3");   /* ASCII digits + Arabic-Indic digit */
}

static void test_cut(void **state)
{
    (void)state;
    assert_int_equal(names_cut("abc", 10), 3);
    assert_int_equal(names_cut("abc", 2), 2);
    assert_int_equal(names_cut("a\xc3\xbc", 2), 1);         /* not inside ü */
    assert_int_equal(names_cut("a\xe4\xb8\xad", 3), 1);     /* not inside 中 */
    assert_int_equal(names_cut("a\xf0\x9f\x98\x80", 4), 1); /* not inside an emoji */
    assert_int_equal(names_cut("a\xf0\x9f\x98\x80", 5), 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_case_folding_beyond_ascii),
        cmocka_unit_test(test_nfd_equals_nfc),
        cmocka_unit_test(test_confusables),
        cmocka_unit_test(test_invisible_and_bidi_refused),
        cmocka_unit_test(test_spaces_and_hash),
        cmocka_unit_test(test_lengths),
        cmocka_unit_test(test_scripts_allowed),
        cmocka_unit_test(test_cut),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
