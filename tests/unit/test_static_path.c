/* Unit tests for the web-root path checks and URL decoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "http/http.h"
#include "http/static_files.h"

static void expect_path(const char *raw, const char *want)
{
    char out[256];
    int r = static_safe_path(raw, out, sizeof(out));
    if (want) {
        assert_int_equal(r, 0);
        assert_string_equal(out, want);
    } else {
        assert_int_equal(r, -1);
    }
}

static void test_safe_paths(void **state)
{
    (void)state;
    expect_path("/", "/index.html");
    expect_path("/js/app.js", "/js/app.js");
    expect_path("/img/a%20b.png", "/img/a b.png");
    expect_path("/docs/", "/docs/index.html");
    expect_path("/.well-known/x", "/.well-known/x");
}

static void test_traversal_refused(void **state)
{
    (void)state;
    expect_path("/../etc/passwd", NULL);
    expect_path("/a/../../etc/passwd", NULL);
    expect_path("/%2e%2e/etc/passwd", NULL);
    expect_path("/%2E%2E%2fetc/passwd", NULL);
    expect_path("/a/./b", NULL);
    expect_path("/..", NULL);
    expect_path("/a//b", NULL);
    expect_path("/a%00.html", NULL);
    expect_path("/a\\..\\b", NULL);
    expect_path("/%5c..%5cb", NULL);
    expect_path("relative", NULL);
    expect_path("", NULL);
    expect_path("/bad%zz", NULL);
    expect_path("/bad%4", NULL);
}

static void test_content_types(void **state)
{
    (void)state;
    assert_string_equal(static_content_type("/index.html"), "text/html; charset=utf-8");
    assert_string_equal(static_content_type("/js/app.js"), "text/javascript; charset=utf-8");
    assert_string_equal(static_content_type("/a.CSS"), "text/css; charset=utf-8");
    assert_string_equal(static_content_type("/x.png"), "image/png");
    assert_string_equal(static_content_type("/dir.v1/file"), "application/octet-stream");
    assert_string_equal(static_content_type("/noext"), "application/octet-stream");
}

static void test_url_decode(void **state)
{
    (void)state;
    char out[16];
    assert_int_equal(http_url_decode("a+b%21", 6, out, sizeof(out), true), 4);
    assert_string_equal(out, "a b!");
    assert_int_equal(http_url_decode("a+b", 3, out, sizeof(out), false), 3);
    assert_string_equal(out, "a+b");
    assert_int_equal(http_url_decode("%", 1, out, sizeof(out), true), -1);
    assert_int_equal(http_url_decode("%4", 2, out, sizeof(out), true), -1);
    assert_int_equal(http_url_decode("0123456789abcdefg", 17, out, sizeof(out), true), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_safe_paths),
        cmocka_unit_test(test_traversal_refused),
        cmocka_unit_test(test_content_types),
        cmocka_unit_test(test_url_decode),
    };
    return cmocka_run_group_tests_name("static_path", tests, NULL, NULL);
}
