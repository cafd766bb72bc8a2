/* Unit tests for ws_handshake: RFC 6455 4.2 checks and the accept key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ws/ws_handshake.h"

static ws_handshake_request good(void)
{
    return (ws_handshake_request){.is_get = true,
                                  .upgrade = "websocket",
                                  .connection = "keep-alive, Upgrade",
                                  .key = "dGhlIHNhbXBsZSBub25jZQ==",
                                  .version = "13"};
}

static void test_rfc_example_accept_key(void **state)
{
    (void)state;
    char out[WS_ACCEPT_LEN + 1];
    ws_handshake_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

static void test_accepts_valid_request(void **state)
{
    (void)state;
    ws_handshake_request in = good();
    ws_handshake_result out;
    assert_int_equal(ws_handshake_check(&in, &out), 0);
    assert_int_equal(out.status, 101);
    assert_string_equal(out.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

static void expect_refusal(ws_handshake_request in, int status, const char *reason_part)
{
    ws_handshake_result out;
    assert_int_equal(ws_handshake_check(&in, &out), -1);
    assert_int_equal(out.status, status);
    assert_non_null(strstr(out.reason, reason_part));
}

static void test_refusals(void **state)
{
    (void)state;
    ws_handshake_request in = good();
    in.is_get = false;
    expect_refusal(in, 400, "GET");
    in = good();
    in.upgrade = NULL;
    expect_refusal(in, 400, "Upgrade");
    in = good();
    in.upgrade = "h2c";
    expect_refusal(in, 400, "Upgrade");
    in = good();
    in.connection = "keep-alive";
    expect_refusal(in, 400, "Connection");
    in = good();
    in.version = "8";
    expect_refusal(in, 426, "13");
    in = good();
    in.version = NULL;
    expect_refusal(in, 426, "13");
    in = good();
    in.key = NULL;
    expect_refusal(in, 400, "Key");
    in = good();
    in.key = "dGhlIHNhbXBsZSBub25jZQ"; /* no padding */
    expect_refusal(in, 400, "Key");
    in = good();
    in.key = "dGhlIHNhbXBsZSBub25jZQ=x";
    expect_refusal(in, 400, "Key");
    in = good();
    in.key = "c2hvcnQ="; /* base64 of 5 bytes */
    expect_refusal(in, 400, "Key");
    in = good();
    in.key = "!!!!!!!!!!!!!!!!!!!!!!==";
    expect_refusal(in, 400, "Key");
    in = good();
    in.has_body = true;
    expect_refusal(in, 400, "body");
}

static void test_header_tokens(void **state)
{
    (void)state;
    assert_true(ws_header_has_token("Upgrade", "upgrade"));
    assert_true(ws_header_has_token("keep-alive,  UPGRADE ", "upgrade"));
    assert_false(ws_header_has_token("upgrades", "upgrade"));
    assert_false(ws_header_has_token("", "upgrade"));
    assert_false(ws_header_has_token(NULL, "upgrade"));
    assert_true(ws_header_has_token("a, b ,websocket", "WebSocket"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc_example_accept_key),
        cmocka_unit_test(test_accepts_valid_request),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_header_tokens),
    };
    return cmocka_run_group_tests_name("ws_handshake", tests, NULL, NULL);
}
