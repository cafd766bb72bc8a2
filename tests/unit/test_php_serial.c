/* Unit tests for php_serial: the writers against PHP 8.2's serialize()
 * output, the reader on valid and hostile input, iteration, key identity,
 * array_replace_recursive and the JSON conversions. Every expected string
 * below was produced by php8.2-cli (the command is next to it). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "gwcompat/php_serial.h"

/* The bytes written so far, as a NUL-terminated string the test owns. */
static char *take(php_buf *b)
{
    assert_false(b->oom);
    char *s = malloc(b->len + 1);
    assert_non_null(s);
    if (b->len)
        memcpy(s, b->data, b->len);
    s[b->len] = '\0';
    free(b->data);
    memset(b, 0, sizeof *b);
    return s;
}

#define assert_buf(b, want)                                                                        \
    do {                                                                                           \
        char *got_ = take(b);                                                                      \
        assert_string_equal(got_, want);                                                           \
        free(got_);                                                                                \
    } while (0)

/* Parses a copy of exactly len bytes, so ASan sees any read past the end. */
static int parse_n(const char *text, size_t len, php_value *v)
{
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, text, len);
    php_value tmp;
    int rc = php_serial_parse(copy, len, &tmp);
    if (rc == 0) {
        assert_ptr_equal(tmp.raw, copy);
        assert_int_equal(tmp.raw_len, len);
        /* rebase the pointers onto text so callers may look at them */
        ptrdiff_t shift = text - copy;
        tmp.raw = text;
        if (tmp.type == PHP_STRING)
            tmp.s.p += shift;
        if (tmp.type == PHP_ARRAY || tmp.type == PHP_OBJECT)
            tmp.a.body += shift;
        if (v)
            *v = tmp;
    }
    free(copy);
    return rc;
}

static int parse(const char *text, php_value *v)
{
    return parse_n(text, strlen(text), v);
}

/* ---- writers ------------------------------------------------------------ */

static void test_put_scalars(void **state)
{
    (void)state;
    php_buf b = {0};
    php_put_null(&b);
    php_put_bool(&b, true);
    php_put_bool(&b, false);
    php_put_int(&b, 0);
    php_put_int(&b, 42);
    php_put_int(&b, -7);
    /* php -r 'echo serialize(PHP_INT_MAX), serialize(PHP_INT_MIN);' */
    php_put_int(&b, INT64_MAX);
    php_put_int(&b, INT64_MIN);
    assert_buf(&b, "N;b:1;b:0;i:0;i:42;i:-7;i:9223372036854775807;i:-9223372036854775808;");

    php_put_string(&b, "hello", 5);
    php_put_string(&b, "", 0);
    /* php -r 'echo serialize("\xc3\xa9\0\"x");'  (bytes are counted, nothing escaped) */
    php_put_string(&b, "\xc3\xa9\0\"x", 5);
    assert_int_equal(b.len, strlen("s:5:\"hello\";s:0:\"\";s:5:\"") + 5 + 2);
    assert_memory_equal(b.data, "s:5:\"hello\";s:0:\"\";s:5:\"\xc3\xa9\0\"x\";", b.len);
    free(b.data);
    memset(&b, 0, sizeof b);

    php_put_raw(&b, "xy", 2);
    php_put_raw(&b, NULL, 0);
    php_put_array_open(&b, 0);
    php_put_array_close(&b);
    php_put_array_open(&b, 1000001);
    assert_buf(&b, "xya:0:{}a:1000001:{");
}

/* php -r 'echo serialize([0.1, 0.5, 1.0, -0.0, 1e25, 1.5e-7, 123456789.125, INF, -INF, NAN,
 *   PHP_INT_MAX, PHP_INT_MIN]);'
 * a:12:{i:0;d:0.1;i:1;d:0.5;i:2;d:1;i:3;d:-0;i:4;d:1.0E+25;i:5;d:1.5E-7;i:6;d:123456789.125;
 *   i:7;d:INF;i:8;d:-INF;i:9;d:NAN;i:10;i:9223372036854775807;i:11;i:-9223372036854775808;}
 * and the boundaries of the fixed/exponential forms:
 * php -r 'foreach([1e15,1e16,1e17,0.0001,1e-5,...] as $d) echo serialize($d),"\n";' */
static void test_put_double(void **state)
{
    (void)state;
    static const struct {
        double v;
        const char *want;
    } cases[] = {
        {0.1, "d:0.1;"},
        {0.5, "d:0.5;"},
        {1.0, "d:1;"},
        {0.0, "d:0;"},
        {-0.0, "d:-0;"},
        {1e25, "d:1.0E+25;"},
        {1.5e-7, "d:1.5E-7;"},
        {123456789.125, "d:123456789.125;"},
        {INFINITY, "d:INF;"},
        {-INFINITY, "d:-INF;"},
        {NAN, "d:NAN;"},
        {-1.5, "d:-1.5;"},
        {100.0, "d:100;"},
        {1e15, "d:1000000000000000;"},
        {1e16, "d:10000000000000000;"},
        {2.5e15, "d:2500000000000000;"},
        {1e17, "d:1.0E+17;"},
        {123456789012345678.0, "d:1.2345678901234568E+17;"},
        {12345678901234567890.0, "d:1.2345678901234567E+19;"},
        {1e21, "d:1.0E+21;"},
        {0.0001, "d:0.0001;"},
        {1e-5, "d:1.0E-5;"},
        {0.00001234, "d:1.234E-5;"},
        {3.0e-10, "d:3.0E-10;"},
        {0.1 + 0.2, "d:0.30000000000000004;"},
        {5e-324, "d:5.0E-324;"},
        {1.7976931348623157e308, "d:1.7976931348623157E+308;"},
        /* near powers of two the nearest 16-digit text does not read back
         * but its neighbour does; PHP (dtoa mode 0) finds the neighbour:
         * php -r 'echo serialize(unpack("E", hex2bin("...."))[1]);' */
        {7.854549544476363e-90, "d:7.854549544476363E-90;"},
        {-5.075883674631299e-116, "d:-5.075883674631299E-116;"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        php_buf b = {0};
        php_put_double(&b, cases[i].v);
        char *got = take(&b);
        if (strcmp(got, cases[i].want) != 0)
            fail_msg("%.17g: got %s want %s", cases[i].v, got, cases[i].want);
        /* and it reads back to the same value */
        php_value v;
        assert_int_equal(parse(got, &v), 0);
        assert_int_equal(v.type, PHP_DOUBLE);
        if (isnan(cases[i].v))
            assert_true(isnan(v.d));
        else
            assert_true(v.d == cases[i].v && !signbit(v.d) == !signbit(cases[i].v));
        free(got);
    }
}

/* php -r 'var_dump(array_keys(unserialize(serialize(["7"=>1,"07"=>2,"-3"=>3,"-0"=>4,
 *   "9223372036854775807"=>5,"9223372036854775808"=>6," 1"=>7]))));'
 * int(7) string("07") int(-3) string("-0") int(9223372036854775807)
 * string("9223372036854775808") string(" 1") */
static void test_put_key(void **state)
{
    (void)state;
    static const struct {
        const char *key, *want;
    } cases[] = {
        {"7", "i:7;"},
        {"07", "s:2:\"07\";"},
        {"-3", "i:-3;"},
        {"-0", "s:2:\"-0\";"},
        {"0", "i:0;"},
        {"9223372036854775807", "i:9223372036854775807;"},
        {"9223372036854775808", "s:19:\"9223372036854775808\";"},
        {"-9223372036854775808", "i:-9223372036854775808;"},
        {"-9223372036854775809", "s:20:\"-9223372036854775809\";"},
        {"99999999999999999999", "s:20:\"99999999999999999999\";"},
        {" 1", "s:2:\" 1\";"},
        {"1 ", "s:2:\"1 \";"},
        {"+1", "s:2:\"+1\";"},
        {"1.0", "s:3:\"1.0\";"},
        {"-", "s:1:\"-\";"},
        {"", "s:0:\"\";"},
        {"abc", "s:3:\"abc\";"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        php_buf b = {0};
        php_put_key(&b, cases[i].key, strlen(cases[i].key));
        assert_buf(&b, cases[i].want);
    }
}

static void test_put_oom_is_sticky(void **state)
{
    (void)state;
    php_buf b = {0};
    b.oom = true;
    php_put_int(&b, 1);
    php_put_string(&b, "x", 1);
    assert_int_equal(b.len, 0);
    assert_null(b.data);
    /* a growth that cannot be represented sets oom instead of wrapping */
    php_buf c = {0};
    php_put_raw(&c, "ab", 2);
    size_t len = c.len, cap = c.cap;
    c.len = c.cap = SIZE_MAX - 1; /* as if nearly all memory were written */
    php_put_raw(&c, "xyz", 3);
    assert_true(c.oom);
    c.len = len;
    c.cap = cap;
    php_put_raw(&c, "x", 1);
    assert_int_equal(c.len, 2);
    free(c.data);
}

/* ---- reader: valid input ------------------------------------------------ */

static void test_parse_scalars(void **state)
{
    (void)state;
    php_value v;
    assert_int_equal(parse("N;", &v), 0);
    assert_int_equal(v.type, PHP_NULL);
    assert_int_equal(parse("b:1;", &v), 0);
    assert_int_equal(v.type, PHP_BOOL);
    assert_true(v.b);
    assert_int_equal(parse("b:0;", &v), 0);
    assert_false(v.b);
    assert_int_equal(parse("i:42;", &v), 0);
    assert_int_equal(v.type, PHP_INT);
    assert_int_equal(v.i, 42);
    assert_int_equal(parse("i:-9223372036854775808;", &v), 0);
    assert_true(v.i == INT64_MIN);
    assert_int_equal(parse("i:9223372036854775807;", &v), 0);
    assert_true(v.i == INT64_MAX);
    /* PHP's grammar allows a plus sign and leading zeros */
    assert_int_equal(parse("i:+5;", &v), 0);
    assert_int_equal(v.i, 5);
    assert_int_equal(parse("i:007;", &v), 0);
    assert_int_equal(v.i, 7);

    assert_int_equal(parse("d:0.5;", &v), 0);
    assert_int_equal(v.type, PHP_DOUBLE);
    assert_true(v.d == 0.5);
    assert_int_equal(parse("d:1.0E+25;", &v), 0);
    assert_true(v.d == 1e25);
    assert_int_equal(parse("d:-1.5e-7;", &v), 0);
    assert_true(v.d == -1.5e-7);
    assert_int_equal(parse("d:.5;", &v), 0);
    assert_true(v.d == 0.5);
    assert_int_equal(parse("d:5.;", &v), 0);
    assert_true(v.d == 5.0);
    assert_int_equal(parse("d:7;", &v), 0);
    assert_true(v.d == 7.0);
    assert_int_equal(parse("d:INF;", &v), 0);
    assert_true(isinf(v.d) && v.d > 0);
    assert_int_equal(parse("d:-INF;", &v), 0);
    assert_true(isinf(v.d) && v.d < 0);
    assert_int_equal(parse("d:NAN;", &v), 0);
    assert_true(isnan(v.d));
    assert_int_equal(parse("d:-0;", &v), 0);
    assert_true(v.d == 0 && signbit(v.d));

    assert_int_equal(parse("s:5:\"hello\";", &v), 0);
    assert_int_equal(v.type, PHP_STRING);
    assert_int_equal(v.s.len, 5);
    assert_memory_equal(v.s.p, "hello", 5);
    assert_int_equal(parse("s:0:\"\";", &v), 0);
    assert_int_equal(v.s.len, 0);
    assert_int_equal(parse("s:01:\"a\";", &v), 0);
    assert_int_equal(v.s.len, 1);
}

/* s: counts bytes: UTF-8, quotes, semicolons and NUL inside are content. */
static void test_parse_string_bytes(void **state)
{
    (void)state;
    php_value v;
    assert_int_equal(parse("s:2:\"\xc3\xa9\";", &v), 0);
    assert_int_equal(v.s.len, 2);
    assert_int_not_equal(parse("s:1:\"\xc3\xa9\";", &v), 0); /* one character, two bytes */
    assert_int_equal(parse("s:3:\"a\"b\";", &v), 0);         /* php: string(3) "a"b" */
    assert_memory_equal(v.s.p, "a\"b", 3);
    assert_int_equal(parse("s:4:\"\";\"\"\";", &v), 0);
    assert_int_equal(v.s.len, 4);
    static const char nul[] = "s:3:\"a\0b\";";
    assert_int_equal(parse_n(nul, sizeof nul - 1, &v), 0);
    assert_int_equal(v.s.len, 3);
    assert_memory_equal(v.s.p, "a\0b", 3);
    static const char bin[] = "s:4:\"\xff\x00\x80\"\";";
    assert_int_equal(parse_n(bin, sizeof bin - 1, &v), 0);
    assert_int_equal(v.s.len, 4);
}

static void test_parse_arrays(void **state)
{
    (void)state;
    php_value v;
    assert_int_equal(parse("a:0:{}", &v), 0);
    assert_int_equal(v.type, PHP_ARRAY);
    assert_int_equal(v.a.count, 0);
    const char *t = "a:2:{i:0;s:1:\"x\";s:1:\"k\";a:1:{i:5;d:0.5;}}";
    assert_int_equal(parse(t, &v), 0);
    assert_int_equal(v.a.count, 2);
    assert_ptr_equal(v.a.body, t + 5);
    /* duplicate keys read as PHP reads them (later wins on lookup) */
    assert_int_equal(parse("a:2:{i:0;i:1;i:0;i:2;}", &v), 0);
    /* objects are read and kept */
    static const char o[] = "O:8:\"stdClass\":2:{s:1:\"a\";i:1;s:4:\"\0*\0b\";N;}";
    assert_int_equal(parse_n(o, sizeof o - 1, &v), 0);
    assert_int_equal(v.type, PHP_OBJECT);
    assert_int_equal(v.a.count, 2);
    assert_int_equal(parse("O:11:\"App\\Session\":0:{}", &v), 0);
}

static void nest(char *buf, int depth)
{
    char *p = buf;
    for (int i = 0; i < depth; i++)
        p += sprintf(p, "a:1:{i:0;");
    p += sprintf(p, "N;");
    for (int i = 0; i < depth; i++)
        *p++ = '}';
    *p = '\0';
}

static void test_parse_depth(void **state)
{
    (void)state;
    char buf[40 * 12];
    nest(buf, PHP_SERIAL_MAX_DEPTH);
    php_value v, k, e;
    assert_int_equal(parse(buf, &v), 0);
    /* iterate down to the innermost value */
    for (int d = 0; d < PHP_SERIAL_MAX_DEPTH; d++) {
        php_iter it;
        php_iter_init(&it, &v);
        assert_true(php_iter_next(&it, &k, &e));
        assert_false(php_iter_next(&it, &k, &e));
        v = e;
    }
    assert_int_equal(v.type, PHP_NULL);
    nest(buf, PHP_SERIAL_MAX_DEPTH + 1);
    assert_int_equal(parse(buf, &v), -1);
    assert_null(php_serial_to_json(buf, strlen(buf)));
}

/* ---- reader: malformed input -------------------------------------------- */

static void test_parse_truncated_everywhere(void **state)
{
    (void)state;
    static const char *const good[] = {
        "a:4:{i:0;s:5:\"he;lo\";s:1:\"k\";a:2:{i:-5;d:1.0E+25;s:0:\"\";b:1;}i:9;N;i:10;d:-INF;}",
        "O:3:\"Foo\":1:{s:1:\"a\";a:0:{}}",
        "s:10:\"0123456789\";",
        "i:-12345;",
        "d:0.125;",
    };
    for (size_t g = 0; g < sizeof good / sizeof good[0]; g++) {
        size_t len = strlen(good[g]);
        assert_int_equal(parse(good[g], NULL), 0);
        for (size_t cut = 0; cut < len; cut++)
            if (parse_n(good[g], cut, NULL) != -1)
                fail_msg("prefix %zu of %s was accepted", cut, good[g]);
    }
}

static void test_parse_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "N",
        "N;N;",   /* trailing bytes */
        "i:1; ",  /* trailing bytes */
        "i:1;\n", /* trailing bytes */
        "b:2;",
        "b:;",
        "b:10;",
        "i:;",
        "i:-;",
        "i:1.5;",
        "i:0x10;",
        "i: 1;",
        "i:9223372036854775808;",  /* overflow */
        "i:-9223372036854775809;", /* overflow */
        "i:99999999999999999999999;",
        "d:;",
        "d:.;",
        "d:1e;",
        "d:1e+;",
        "d:inf;",
        "d:nan;",
        "d:-NAN;",
        "d:+INF;",
        "d:0x1p3;",
        "d:1,5;",
        "s:5:\"abc\";", /* length points past the end */
        "s:2:\"abc\";", /* length too short */
        "s:-1:\"\";",   /* negative */
        "s:+1:\"a\";",  /* PHP's uiv has no sign */
        "s:1:'a';",
        "s:1:\"a\"",
        "s:1:\"a;",
        "s:99999999999999999999999:\"a\";", /* overflowing length */
        "s:18446744073709551615:\"a\";",    /* SIZE_MAX */
        "s:18446744073709551614:\"a\";",    /* SIZE_MAX - 1 */
        "a:1:{i:0;N;",
        "a:1:{i:0;N;};",
        "a:-1:{}",
        "a:1:{}",
        "a:0:{i:0;N;}",
        "a:2:{i:0;N;}",
        "a:1000001:{}", /* over PHP_SERIAL_MAX_ITEMS */
        "a:18446744073709551616:{}",
        "a:1:{N;N;}",     /* a null key */
        "a:1:{b:1;N;}",   /* a bool key */
        "a:1:{d:1;N;}",   /* a float key */
        "a:1:{a:0:{}N;}", /* an array key */
        "a:1:{i:0;}",     /* a key without a value */
        "a:0:{",
        "a:0{}",
        "r:1;",
        "R:1;",
        "a:2:{i:0;a:0:{}i:1;r:2;}",
        "a:2:{i:0;a:0:{}i:1;R:2;}",
        "C:3:\"Foo\":0:{}",
        "E:7:\"Foo:Bar\";",
        "S:1:\"a\";",
        "o:0:{}",
        "O:0:\"\":0:{}",
        "O:3:\"1ab\":0:{}",
        "O:3:\"a b\":0:{}",
        "O:3:\"Foo\":1:{}",
        "O:3:\"Foo\":0:{",
        "O:9:\"Foo\":0:{}",
        "x:1;",
        ";",
        "\0",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (parse(bad[i], NULL) != -1)
            fail_msg("accepted %s", bad[i]);
    static const char nul_in_number[] = "i:1\0;";
    assert_int_equal(parse_n(nul_in_number, sizeof nul_in_number - 1, NULL), -1);
    assert_int_equal(php_serial_parse(NULL, 0, &(php_value){0}), -1);
}

/* ---- iteration and key text ---------------------------------------------- */

static void test_iterate(void **state)
{
    (void)state;
    const char *t = "a:4:{i:0;s:1:\"x\";s:1:\"k\";a:1:{i:5;d:0.5;}i:-3;b:1;s:2:\"07\";N;}";
    php_value v, k, e;
    php_iter it;
    char text[32];
    assert_int_equal(parse(t, &v), 0);
    php_iter_init(&it, &v);

    assert_true(php_iter_next(&it, &k, &e));
    assert_int_equal(k.type, PHP_INT);
    assert_int_equal(k.i, 0);
    assert_int_equal(e.type, PHP_STRING);
    assert_int_equal(e.raw_len, strlen("s:1:\"x\";"));
    assert_memory_equal(e.raw, "s:1:\"x\";", e.raw_len);
    assert_int_equal(php_key_text(&k, text, sizeof text), 1);
    assert_string_equal(text, "0");

    assert_true(php_iter_next(&it, &k, &e));
    assert_int_equal(k.type, PHP_STRING);
    assert_int_equal(php_key_text(&k, text, sizeof text), 1);
    assert_string_equal(text, "k");
    assert_int_equal(e.type, PHP_ARRAY);
    assert_int_equal(e.raw_len, strlen("a:1:{i:5;d:0.5;}"));
    php_iter inner;
    php_value k2, e2;
    php_iter_init(&inner, &e);
    assert_true(php_iter_next(&inner, &k2, &e2));
    assert_int_equal(k2.i, 5);
    assert_true(e2.d == 0.5);
    assert_false(php_iter_next(&inner, &k2, &e2));

    assert_true(php_iter_next(&it, &k, &e));
    assert_int_equal(php_key_text(&k, text, sizeof text), 2);
    assert_string_equal(text, "-3");
    assert_true(e.b);

    assert_true(php_iter_next(&it, &k, &e));
    assert_int_equal(php_key_text(&k, text, sizeof text), 2);
    assert_string_equal(text, "07");
    assert_int_equal(e.type, PHP_NULL);

    assert_false(php_iter_next(&it, &k, &e));
    assert_false(php_iter_next(&it, &k, &e));

    /* an empty array, and a scalar, iterate nothing */
    assert_int_equal(parse("a:0:{}", &v), 0);
    php_iter_init(&it, &v);
    assert_false(php_iter_next(&it, &k, &e));
    assert_int_equal(parse("i:1;", &v), 0);
    php_iter_init(&it, &v);
    assert_false(php_iter_next(&it, &k, &e));

    /* object properties iterate like array elements */
    assert_int_equal(parse("O:3:\"Foo\":1:{s:1:\"a\";i:1;}", &v), 0);
    php_iter_init(&it, &v);
    assert_true(php_iter_next(&it, &k, &e));
    assert_int_equal(e.i, 1);
    assert_false(php_iter_next(&it, &k, &e));
}

static void test_key_text(void **state)
{
    (void)state;
    php_value k;
    char text[24];
    assert_int_equal(parse("i:7;", &k), 0);
    assert_int_equal(php_key_text(&k, text, sizeof text), 1);
    assert_string_equal(text, "7");
    assert_int_equal(parse("s:1:\"7\";", &k), 0);
    assert_int_equal(php_key_text(&k, text, sizeof text), 1);
    assert_string_equal(text, "7");
    assert_int_equal(parse("i:-9223372036854775808;", &k), 0);
    assert_int_equal(php_key_text(&k, text, sizeof text), 20);
    assert_string_equal(text, "-9223372036854775808");
    assert_int_equal(php_key_text(&k, text, 20), 20); /* fits exactly, no NUL */
    assert_memory_equal(text, "-9223372036854775808", 20);
    assert_int_equal(php_key_text(&k, text, 19), -1);
    assert_int_equal(parse("s:5:\"hello\";", &k), 0);
    assert_int_equal(php_key_text(&k, text, 5), 5);
    assert_int_equal(php_key_text(&k, text, 4), -1);
    assert_int_equal(parse("s:0:\"\";", &k), 0);
    assert_int_equal(php_key_text(&k, text, 0), 0);
    assert_int_equal(parse("N;", &k), 0);
    assert_int_equal(php_key_text(&k, text, sizeof text), -1);
}

/* ---- array_replace_recursive -------------------------------------------- */

static void check_merge(const char *base, const char *repl, const char *want)
{
    php_buf b = {0};
    assert_int_equal(php_serial_merge(base, strlen(base), repl, strlen(repl), &b), 0);
    char *got = take(&b);
    if (strcmp(got, want) != 0)
        fail_msg("merge(%s, %s)\n got %s\nwant %s", base, repl, got, want);
    assert_int_equal(parse(got, NULL), 0);
    free(got);
}

/* Expectations: php -r 'echo serialize(array_replace_recursive(unserialize($b),
 * unserialize($r)));' for each pair written by PHP; the others follow the
 * contract in php_serial.h (string "7" keys, byte-for-byte copies). */
static void test_merge(void **state)
{
    (void)state;
    /* nested arrays merge, new keys append in repl's order */
    check_merge(
        "a:2:{s:1:\"a\";i:1;s:1:\"b\";a:2:{s:1:\"x\";i:1;s:1:\"y\";a:2:{i:0;i:1;i:1;i:2;}}}",
        "a:2:{s:1:\"b\";a:2:{s:1:\"y\";a:1:{i:0;i:5;}s:1:\"z\";s:3:\"new\";}s:1:\"c\";i:3;}",
        "a:3:{s:1:\"a\";i:1;s:1:\"b\";a:3:{s:1:\"x\";i:1;s:1:\"y\";a:2:{i:0;i:5;i:1;i:2;}"
        "s:1:\"z\";s:3:\"new\";}s:1:\"c\";i:3;}");
    /* a scalar replaced by an array */
    check_merge("a:2:{s:1:\"a\";i:1;s:1:\"b\";i:2;}", "a:1:{s:1:\"a\";a:2:{i:0;i:1;i:1;i:2;}}",
                "a:2:{s:1:\"a\";a:2:{i:0;i:1;i:1;i:2;}s:1:\"b\";i:2;}");
    /* an array replaced by a scalar */
    check_merge("a:2:{s:1:\"a\";a:2:{i:0;i:1;i:1;i:2;}s:1:\"b\";i:2;}",
                "a:1:{s:1:\"a\";s:1:\"s\";}", "a:2:{s:1:\"a\";s:1:\"s\";s:1:\"b\";i:2;}");
    /* php: [7=>"int","k"=>"v"] + ["7"=>"str7","07"=>"zero7"] */
    check_merge("a:2:{i:7;s:3:\"int\";s:1:\"k\";s:1:\"v\";}",
                "a:2:{i:7;s:4:\"str7\";s:2:\"07\";s:5:\"zero7\";}",
                "a:3:{i:7;s:4:\"str7\";s:1:\"k\";s:1:\"v\";s:2:\"07\";s:5:\"zero7\";}");
    /* the same, with "7" written as a string key (not what PHP writes, but
     * PHP reads it as the integer key 7): it unifies, base's key stays */
    check_merge("a:2:{i:7;s:3:\"int\";s:1:\"k\";s:1:\"v\";}",
                "a:2:{s:1:\"7\";s:4:\"str7\";s:2:\"07\";s:5:\"zero7\";}",
                "a:3:{i:7;s:4:\"str7\";s:1:\"k\";s:1:\"v\";s:2:\"07\";s:5:\"zero7\";}");
    check_merge("a:1:{s:1:\"7\";i:1;}", "a:1:{i:7;i:2;}", "a:1:{s:1:\"7\";i:2;}");
    /* three levels, and an integer key appended */
    check_merge("a:1:{s:1:\"u\";a:1:{s:1:\"n\";a:2:{s:1:\"d\";i:1;s:1:\"e\";i:2;}}}",
                "a:2:{s:1:\"u\";a:1:{s:1:\"n\";a:1:{s:1:\"e\";i:3;}}i:0;N;}",
                "a:2:{s:1:\"u\";a:1:{s:1:\"n\";a:2:{s:1:\"d\";i:1;s:1:\"e\";i:3;}}i:0;N;}");
    /* lists replace by index, they do not append */
    check_merge("a:2:{i:0;s:1:\"a\";i:1;s:1:\"b\";}", "a:2:{i:1;s:1:\"B\";i:2;s:1:\"C\";}",
                "a:3:{i:0;s:1:\"a\";i:1;s:1:\"B\";i:2;s:1:\"C\";}");
    /* an empty repl leaves base */
    check_merge("a:1:{s:1:\"a\";i:1;}", "a:0:{}", "a:1:{s:1:\"a\";i:1;}");
    /* an empty nested base array takes repl's */
    check_merge("a:1:{s:1:\"a\";a:0:{}}", "a:1:{s:1:\"a\";a:1:{i:3;b:0;}}",
                "a:1:{s:1:\"a\";a:1:{i:3;b:0;}}");
    /* an object is not an array: replaced, never merged */
    check_merge("a:1:{s:1:\"o\";O:3:\"Foo\":1:{s:1:\"a\";i:1;}}",
                "a:1:{s:1:\"o\";a:1:{s:1:\"b\";i:2;}}", "a:1:{s:1:\"o\";a:1:{s:1:\"b\";i:2;}}");
    /* scalars are copied byte for byte, as written */
    check_merge("a:1:{i:1;d:0.10;}", "a:1:{i:2;i:+3;}", "a:2:{i:1;d:0.10;i:2;i:+3;}");

    /* base empty, a:0:{}, or not an array: repl as it is (even its spelling) */
    const char *repl = "a:1:{s:1:\"7\";i:1;}";
    check_merge("", repl, repl);
    check_merge("a:0:{}", repl, repl);
    check_merge("N;", repl, repl);
    check_merge("s:3:\"abc\";", repl, repl);
    check_merge("O:3:\"Foo\":1:{s:1:\"a\";i:1;}", repl, repl);

    /* refusals */
    php_buf b = {0};
    assert_int_equal(php_serial_merge("a:0:{}", 6, "N;", 2, &b), -1);
    assert_int_equal(php_serial_merge("a:0:{}", 6, "", 0, &b), -1);
    assert_int_equal(php_serial_merge("a:0:{}", 6, "a:1:{}", 6, &b), -1);
    assert_int_equal(php_serial_merge("a:1:{", 5, "a:0:{}", 6, &b), -1);
    assert_int_equal(php_serial_merge("a:0:{} ", 7, "a:0:{}", 6, &b), -1);
    assert_int_equal(b.len, 0);
    free(b.data);
}

/* Merging 32-deep arrays stays within the depth the reader accepts. */
static void test_merge_deep(void **state)
{
    (void)state;
    char base[40 * 12];
    nest(base, PHP_SERIAL_MAX_DEPTH);
    php_buf b = {0};
    assert_int_equal(php_serial_merge(base, strlen(base), base, strlen(base), &b), 0);
    char *got = take(&b);
    assert_string_equal(got, base);
    free(got);
}

/* ---- JSON ----------------------------------------------------------------- */

static void check_to_json(const char *ser, const char *want)
{
    json_t *j = php_serial_to_json(ser, strlen(ser));
    if (!want) {
        if (j)
            fail_msg("%s became JSON", ser);
        return;
    }
    assert_non_null(j);
    char *got = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    assert_non_null(got);
    if (strcmp(got, want) != 0)
        fail_msg("%s\n got %s\nwant %s", ser, got, want);
    free(got);
    json_decref(j);
}

static void test_to_json(void **state)
{
    (void)state;
    check_to_json("N;", "null");
    check_to_json("b:1;", "true");
    check_to_json("b:0;", "false");
    check_to_json("i:-42;", "-42");
    check_to_json("d:0.5;", "0.5");
    check_to_json("s:2:\"\xc3\xa9\";", "\"\xc3\xa9\"");
    check_to_json("a:0:{}", "[]");
    check_to_json("a:2:{i:0;s:1:\"x\";i:1;s:1:\"y\";}", "[\"x\",\"y\"]");
    /* "0", "1" string keys are the integer keys 0, 1 to PHP */
    check_to_json("a:2:{s:1:\"0\";i:1;i:1;i:2;}", "[1,2]");
    /* not 0..n-1 in order: a map */
    check_to_json("a:2:{i:1;s:1:\"x\";i:0;s:1:\"y\";}", "{\"1\":\"x\",\"0\":\"y\"}");
    check_to_json("a:1:{i:1;s:1:\"x\";}", "{\"1\":\"x\"}");
    check_to_json("a:2:{i:0;i:1;s:1:\"k\";i:2;}", "{\"0\":1,\"k\":2}");
    check_to_json("a:1:{i:-3;N;}", "{\"-3\":null}");
    check_to_json("a:3:{s:1:\"a\";a:2:{i:0;i:1;i:1;a:1:{s:1:\"b\";N;}}i:7;d:1.5;s:1:\"e\";a:0:{}}",
                  "{\"a\":[1,{\"b\":null}],\"7\":1.5,\"e\":[]}");
    check_to_json("O:8:\"stdClass\":1:{s:1:\"a\";i:1;}", "{\"a\":1}");
    /* what JSON cannot hold */
    check_to_json("d:INF;", NULL);
    check_to_json("d:-INF;", NULL);
    check_to_json("d:NAN;", NULL);
    check_to_json("a:1:{i:0;d:NAN;}", NULL);
    check_to_json("s:1:\"\xff\";", NULL);
    check_to_json("s:2:\"\xc3\";", NULL);
    check_to_json("a:1:{s:1:\"k\";a:1:{i:0;s:1:\"\x80\";}}", NULL);
    check_to_json("a:1:{s:1:\"\xfe\";i:1;}", NULL);
    check_to_json("i:1", NULL);
    check_to_json("", NULL);
    static const char nul[] = "s:1:\"\0\";";
    assert_null(php_serial_to_json(nul, sizeof nul - 1));
    static const char nul_key[] = "a:1:{s:1:\"\0\";i:1;}";
    assert_null(php_serial_to_json(nul_key, sizeof nul_key - 1));
}

static void check_from_json(const char *text, const char *want)
{
    json_error_t err;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &err);
    assert_non_null(j);
    php_buf b = {0};
    assert_int_equal(php_serial_from_json(j, &b), 0);
    char *got = take(&b);
    if (strcmp(got, want) != 0)
        fail_msg("%s\n got %s\nwant %s", text, got, want);
    /* and back: the same JSON value */
    json_t *back = php_serial_to_json(got, strlen(got));
    assert_non_null(back);
    assert_true(json_equal(j, back));
    json_decref(back);
    json_decref(j);
    free(got);
}

/* php -r 'echo serialize(json_decode($json, true));' */
static void test_from_json(void **state)
{
    (void)state;
    check_from_json("null", "N;");
    check_from_json("true", "b:1;");
    check_from_json("false", "b:0;");
    check_from_json("42", "i:42;");
    check_from_json("-9223372036854775808", "i:-9223372036854775808;");
    check_from_json("0.1", "d:0.1;");
    check_from_json("1e25", "d:1.0E+25;");
    check_from_json("\"h\\u00e9\"", "s:3:\"h\xc3\xa9\";");
    check_from_json("[]", "a:0:{}");
    check_from_json("[\"x\",[1,2.5]]", "a:2:{i:0;s:1:\"x\";i:1;a:2:{i:0;i:1;i:1;d:2.5;}}");
    check_from_json("{\"a\":[1,{\"b\":null}],\"7\":1.5,\"s\":\"t\",\"l\":[]}",
                    "a:4:{s:1:\"a\";a:2:{i:0;i:1;i:1;a:1:{s:1:\"b\";N;}}i:7;d:1.5;s:1:\"s\";"
                    "s:1:\"t\";s:1:\"l\";a:0:{}}");
    check_from_json("{\"07\":1,\"-3\":2,\"-0\":3}",
                    "a:3:{s:2:\"07\";i:1;i:-3;i:2;s:2:\"-0\";i:3;}");

    /* {} becomes a:0:{}, which reads back as a list: the one lossy case */
    json_t *empty = json_object();
    php_buf b = {0};
    assert_int_equal(php_serial_from_json(empty, &b), 0);
    assert_buf(&b, "a:0:{}");
    json_decref(empty);

    /* a string with NUL serializes (PHP strings hold any byte) */
    json_t *s = json_stringn("a\0b", 3);
    assert_int_equal(php_serial_from_json(s, &b), 0);
    assert_int_equal(b.len, 10);
    assert_memory_equal(b.data, "s:3:\"a\0b\";", 10);
    free(b.data);
    memset(&b, 0, sizeof b);
    json_decref(s);

    assert_int_equal(php_serial_from_json(NULL, &b), -1);
    b.oom = true;
    json_t *n = json_integer(1);
    assert_int_equal(php_serial_from_json(n, &b), -1);
    json_decref(n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_scalars),
        cmocka_unit_test(test_put_double),
        cmocka_unit_test(test_put_key),
        cmocka_unit_test(test_put_oom_is_sticky),
        cmocka_unit_test(test_parse_scalars),
        cmocka_unit_test(test_parse_string_bytes),
        cmocka_unit_test(test_parse_arrays),
        cmocka_unit_test(test_parse_depth),
        cmocka_unit_test(test_parse_truncated_everywhere),
        cmocka_unit_test(test_parse_malformed),
        cmocka_unit_test(test_iterate),
        cmocka_unit_test(test_key_text),
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_merge_deep),
        cmocka_unit_test(test_to_json),
        cmocka_unit_test(test_from_json),
    };
    return cmocka_run_group_tests_name("php_serial", tests, NULL, NULL);
}
