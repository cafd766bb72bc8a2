/* Unit tests for the bus message format between cluster nodes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cluster/cluster_msg.h"

#define A "0123456789abcdef"
#define B "fedcba9876543210"

static const char *parse(const char *text, cluster_msg *m)
{
    return cluster_msg_parse(text, strlen(text), m);
}

static void test_push_round_trip(void **state)
{
    (void)state;
    char buf[300];
    int n = cluster_msg_push_header(buf, sizeof(buf), A, "GsDy4jH26mGfZxYWKVP7DEVQ");
    assert_int_equal(n, (int)strlen("P " A " GsDy4jH26mGfZxYWKVP7DEVQ\n"));
    strcat(buf, "{\"type\":\"message\"}");
    cluster_msg m;
    assert_null(parse(buf, &m));
    assert_int_equal(m.kind, 'P');
    assert_string_equal(m.origin, A);
    assert_string_equal(m.except, "GsDy4jH26mGfZxYWKVP7DEVQ");
    assert_int_equal(m.body_len, strlen("{\"type\":\"message\"}"));
    assert_memory_equal(m.body, "{\"type\":\"message\"}", m.body_len);

    /* no client_id to skip: "-" on the wire, "" parsed */
    n = cluster_msg_push_header(buf, sizeof(buf), A, NULL);
    assert_string_equal(buf, "P " A " -\n");
    assert_null(parse(buf, &m));
    assert_string_equal(m.except, "");
    assert_int_equal(m.body_len, 0);
}

static void test_request_and_answer_round_trip(void **state)
{
    (void)state;
    char buf[300];
    int n = cluster_msg_request_header(buf, sizeof(buf), A, "Gs", 0x1234, "gw.send_to_uid");
    assert_true(n > 0);
    /* the id sits where a call patches it */
    assert_memory_equal(buf + CLUSTER_MSG_REQID_OFFSET, "0000000000001234", 16);
    strcat(buf, "{\"uid\":\"7\"}");
    cluster_msg m;
    assert_null(parse(buf, &m));
    assert_int_equal(m.kind, 'Q');
    assert_string_equal(m.origin, A);
    assert_string_equal(m.tag, "Gs");
    assert_true(m.reqid == 0x1234);
    assert_string_equal(m.method, "gw.send_to_uid");
    assert_memory_equal(m.body, "{\"uid\":\"7\"}", m.body_len);

    n = cluster_msg_answer_header(buf, sizeof(buf), A, B, UINT64_MAX);
    assert_string_equal(buf, "R " A " " B " ffffffffffffffff\n");
    assert_null(parse(buf, &m));
    assert_int_equal(m.kind, 'R');
    assert_string_equal(m.to, A);
    assert_string_equal(m.origin, B);
    assert_true(m.reqid == UINT64_MAX);
}

static void test_builders_refuse_bad_fields(void **state)
{
    (void)state;
    char buf[300];
    assert_int_equal(cluster_msg_push_header(buf, sizeof(buf), "0123", NULL), -1);
    assert_int_equal(cluster_msg_push_header(buf, sizeof(buf), A, "has space"), -1);
    assert_int_equal(cluster_msg_request_header(buf, sizeof(buf), A, "G", 1, "m"), -1);
    assert_int_equal(cluster_msg_request_header(buf, sizeof(buf), A, "Gs", 1, "a b"), -1);
    char long_method[80];
    memset(long_method, 'm', sizeof(long_method) - 1);
    long_method[sizeof(long_method) - 1] = '\0';
    assert_int_equal(cluster_msg_request_header(buf, sizeof(buf), A, "Gs", 1, long_method), -1);
    assert_int_equal(cluster_msg_answer_header(buf, sizeof(buf), A, "XYZ", 1), -1);
    /* too small a buffer is refused, not cut */
    assert_int_equal(cluster_msg_answer_header(buf, 20, A, B, 1), -1);
}

static void test_malformed_messages(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",                                /* nothing */
        "garbage",                         /* no header line */
        "\n{}",                            /* empty header */
        "X " A "\n",                       /* unknown kind */
        "PP " A " -\n",                    /* kind of two letters */
        "P " A "\n",                       /* push without except */
        "P " A " - extra\n",               /* a word too many */
        "P 0123456789ABCDEF -\n",          /* instance in upper case */
        "P " A "  -\n",                    /* two spaces */
        "P " A " -  \n",                   /* trailing spaces */
        " P " A " -\n",                    /* leading space */
        "Q " A " Gs 0000000000000001\n",   /* request without method */
        "Q " A " G 0000000000000001 m\n",  /* tag of one character */
        "Q " A " Gs 000000000000001 m\n",  /* reqid of 15 digits */
        "Q " A " Gs 000000000000000g m\n", /* reqid not hex */
        "R " A " 0000 0000000000000001\n", /* from not an instance */
        "R " A " " B "\n",                 /* answer without reqid */
        "P " A " a\tb\n",                  /* control character in except */
    };
    cluster_msg m;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *why = parse(bad[i], &m);
        if (!why)
            fail_msg("accepted malformed message %zu: '%s'", i, bad[i]);
    }
    /* a header line longer than the maximum is refused even with a newline after it */
    char big[600];
    memset(big, 'a', sizeof(big));
    big[0] = 'P';
    big[1] = ' ';
    big[500] = '\n';
    assert_non_null(cluster_msg_parse(big, sizeof(big), &m));
    /* NUL bytes in a header are not words */
    const char nul[] = "P " A " a\0b\n";
    assert_non_null(cluster_msg_parse(nul, sizeof(nul) - 1, &m));
}

static void test_body_may_hold_anything(void **state)
{
    (void)state;
    /* the body is bytes after the first newline: newlines and NULs included */
    const char text[] = "P " A " -\nline1\nline2\0tail";
    cluster_msg m;
    assert_null(cluster_msg_parse(text, sizeof(text) - 1, &m));
    assert_int_equal(m.body_len, sizeof("line1\nline2\0tail") - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_push_round_trip),
        cmocka_unit_test(test_request_and_answer_round_trip),
        cmocka_unit_test(test_builders_refuse_bad_fields),
        cmocka_unit_test(test_malformed_messages),
        cmocka_unit_test(test_body_may_hold_anything),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
