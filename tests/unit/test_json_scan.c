/* Unit tests for json_scan: grammar, spans, and agreement with jansson. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "core/json_scan.h"

static const char *const keys[] = {"type", "to_id", "data"};

static int scan(const char *text, json_span *v)
{
    return json_scan_object(text, strlen(text), keys, v, 3);
}

static void test_spans(void **state)
{
    (void)state;
    json_span v[3];
    const char *t = " {\"type\":\"event\", \"to_id\" : 42 ,\"data\":{\"a\":[1,2,{\"b\":null}]}} ";
    assert_int_equal(scan(t, v), 0);
    assert_true(json_span_equals(&v[0], "event"));
    assert_int_equal(v[1].type, JSON_SPAN_NUMBER);
    assert_true(v[1].integer);
    assert_int_equal(v[1].len, 2);
    assert_memory_equal(v[1].p, "42", 2);
    assert_int_equal(v[2].type, JSON_SPAN_OBJECT);
    assert_int_equal(v[2].len, strlen("{\"a\":[1,2,{\"b\":null}]}"));
    assert_memory_equal(v[2].p, "{\"a\":[1,2,{\"b\":null}]}", v[2].len);

    assert_int_equal(scan("{\"type\":\"x\",\"data\":\"q\\\"s\"}", v), 0);
    assert_int_equal(v[1].type, JSON_SPAN_ABSENT);
    assert_int_equal(v[2].type, JSON_SPAN_STRING);
    assert_true(v[2].escaped);
    assert_int_equal(v[2].len, 4); /* q\"s without the quotes */

    assert_int_equal(scan("{\"data\":-1.5e+3,\"to_id\":\"7\"}", v), 0);
    assert_int_equal(v[0].type, JSON_SPAN_ABSENT);
    assert_false(v[2].integer);
    assert_true(json_span_equals(&v[1], "7"));

    /* nested keys with the same names are not top-level members */
    assert_int_equal(scan("{\"data\":{\"type\":\"inner\"}}", v), 0);
    assert_int_equal(v[0].type, JSON_SPAN_ABSENT);
    /* the last duplicate wins, as in jansson */
    assert_int_equal(scan("{\"type\":\"a\",\"type\":\"b\"}", v), 0);
    assert_true(json_span_equals(&v[0], "b"));
    /* an escaped key never matches */
    assert_int_equal(scan("{\"typ\\u0065\":\"a\"}", v), 0);
    assert_int_equal(v[0].type, JSON_SPAN_ABSENT);
    assert_int_equal(scan("{}", v), 0);
    assert_int_equal(scan("{\"data\":[true,false,null,[],{}]}", v), 0);
    assert_int_equal(v[2].type, JSON_SPAN_ARRAY);
}

static void test_invalid(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        " ",
        "[]",
        "\"s\"",
        "1",
        "null",
        "{",
        "}",
        "{\"a\"}",
        "{\"a\":}",
        "{\"a\":1,}",
        "{,}",
        "{\"a\":1 \"b\":2}",
        "{a:1}",
        "{'a':1}",
        "{\"a\":01}",
        "{\"a\":1.}",
        "{\"a\":.5}",
        "{\"a\":-}",
        "{\"a\":1e}",
        "{\"a\":+1}",
        "{\"a\":tru}",
        "{\"a\":nul}",
        "{\"a\":True}",
        "{\"a\":\"\\x\"}",
        "{\"a\":\"\\u12G4\"}",
        "{\"a\":\"\\u12\"}",
        "{\"a\":\"tab\there\"}",
        "{\"a\":\"open}",
        "{\"a\":[1,2}",
        "{\"a\":[1,]}",
        "{\"a\":1}x",
        "{\"a\":1}{}",
        "{\"a\":NaN}",
        "{\"a\":Infinity}",
        "{\"a\":1}\x01",
    };
    json_span v[3];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (scan(bad[i], v) != -1)
            fail_msg("accepted: %s", bad[i]);
    }
}

static void test_depth_limit(void **state)
{
    (void)state;
    char text[512];
    json_span v[3];
    /* {"a": + 62 '[' ... ']' + } is depth 63: accepted; 70 is refused */
    for (int depth = 60; depth <= 70; depth += 10) {
        int n = snprintf(text, sizeof(text), "{\"a\":");
        for (int i = 0; i < depth; i++)
            text[n++] = '[';
        for (int i = 0; i < depth; i++)
            text[n++] = ']';
        text[n++] = '}';
        text[n] = '\0';
        assert_int_equal(scan(text, v), depth < JSON_SCAN_MAX_DEPTH ? 0 : -1);
    }
}

/* Whatever jansson accepts as an object, the scanner accepts too. */
static void test_agrees_with_jansson(void **state)
{
    (void)state;
    static const char *const good[] = {
        "{\"type\":\"event\",\"to_id\":\"u\\u00e9\",\"data\":\"\\ud83d\\ude00\"}",
        "{\"data\":[1,-0,0.5,1E5,1e-5,-2.5E+10]}",
        "{\"data\":{\"\":\"\"},\"x\":[[[]]]}",
        "\n\t{ \"type\" :\r\n \"ping\" }\n",
    };
    json_span v[3];
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        json_t *j = json_loads(good[i], 0, NULL);
        assert_non_null(j);
        json_decref(j);
        assert_int_equal(scan(good[i], v), 0);
    }
}

/* Strings scanned eight bytes at a time: a byte that matters (a raw
 * control byte, an escape, the closing quote) at every offset around the
 * word boundaries is found exactly where a byte-by-byte scan finds it. */
static void test_long_strings(void **state)
{
    (void)state;
    static const char *const inserts[] = {"\x01", "\\\"", "\\u00e9", "\xc3\xa9", "\\n", "\x1f"};
    static const bool valid[] = {false, true, true, true, true, false};
    static const size_t ins_len[] = {1, 2, 6, 2, 2, 1};
    char text[256];
    json_span v[3];
    for (size_t which = 0; which < sizeof(inserts) / sizeof(inserts[0]); which++) {
        for (size_t len = 0; len < 40; len++) {
            for (size_t at = 0; at <= len; at++) {
                size_t n = (size_t)snprintf(text, sizeof(text), "{\"data\":\"");
                for (size_t i = 0; i < len; i++) {
                    if (i == at) {
                        memcpy(text + n, inserts[which], ins_len[which]);
                        n += ins_len[which];
                    }
                    text[n++] = (char)('a' + i % 26);
                }
                if (at == len) {
                    memcpy(text + n, inserts[which], ins_len[which]);
                    n += ins_len[which];
                }
                memcpy(text + n, "\"}", 3);
                n += 2;
                int r = json_scan_object(text, n, keys, v, 3);
                assert_int_equal(r, valid[which] ? 0 : -1);
                if (valid[which]) {
                    assert_int_equal(v[2].type, JSON_SPAN_STRING);
                    assert_int_equal(v[2].len, len + ins_len[which]);
                    assert_int_equal(v[2].escaped, inserts[which][0] == '\\');
                }
            }
        }
    }
    /* a string never closed: long, and ending in an escape */
    assert_int_equal(scan("{\"data\":\"abcdefghijklmnopqrstuvwxyz", v), -1);
    assert_int_equal(scan("{\"data\":\"abcdefghijklmnop\\", v), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spans),        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_depth_limit),  cmocka_unit_test(test_agrees_with_jansson),
        cmocka_unit_test(test_long_strings),
    };
    return cmocka_run_group_tests_name("json_scan", tests, NULL, NULL);
}
