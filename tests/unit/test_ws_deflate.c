/* Unit tests for ws_deflate: offer negotiation, the compress-once twin of a
 * shared frame, and bounded inflation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <cmocka.h>

#include "ws/utf8.h"
#include "ws/ws_deflate.h"
#include "ws/ws_frame.h"

static void expect_answer(const char *offer, const char *want)
{
    ws_deflate_params p;
    char answer[WS_DEFLATE_ANSWER_MAX];
    bool ok = ws_deflate_negotiate(offer, &p, answer);
    if (!want) {
        assert_false(ok);
        return;
    }
    assert_true(ok);
    assert_string_equal(answer, want);
}

static void test_negotiate(void **state)
{
    (void)state;
    /* both no_context_takeover parameters are always answered (RFC 7692
     * 7.1.1.2 lets the server add client_no_context_takeover) */
    expect_answer("permessage-deflate",
                  "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
    expect_answer("permessage-deflate; client_max_window_bits=\"9\"; client_no_context_takeover",
                  "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
                  "client_max_window_bits=9");
    expect_answer("foo; x=\"a,b\", permessage-deflate; server_max_window_bits=8",
                  "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
                  "server_max_window_bits=8");
    expect_answer("permessage-deflate; server_max_window_bits", NULL);
    expect_answer("permessage-deflate; server_max_window_bits=16", NULL);
    expect_answer("permessage-deflate; client_max_window_bits=7", NULL);
    expect_answer("permessage-deflate; server_no_context_takeover; server_no_context_takeover",
                  NULL);
    expect_answer("permessage-deflate; unknown", NULL);
    expect_answer("permessage-deflate; client_no_context_takeover=\"\"", NULL);
    expect_answer("", NULL);
    expect_answer(NULL, NULL);
    ws_deflate_params p;
    char answer[WS_DEFLATE_ANSWER_MAX];
    assert_true(ws_deflate_negotiate("permessage-deflate; server_max_window_bits=8", &p, answer));
    assert_int_equal(p.server_bits, 9); /* zlib's raw deflate cannot do 8 */
    assert_int_equal(p.client_bits, 15);
}

static void test_twin_built_once_and_shared(void **state)
{
    (void)state;
    char text[2000];
    for (size_t i = 0; i < sizeof(text); i++)
        text[i] = "chat message "[i % 13];
    sbuf *plain = ws_frame_build(WS_OP_TEXT, text, sizeof(text));
    sbuf *a = ws_deflate_frame(plain, 15, 256);
    sbuf *b = ws_deflate_frame(plain, 15, 256);
    assert_ptr_not_equal(a, plain);
    assert_ptr_equal(a, b); /* compressed once, shared */
    assert_int_equal(a->data[0], 0x80 | 0x40 | WS_OP_TEXT);
    sbuf *c = ws_deflate_frame(plain, 10, 256); /* another window: another twin */
    assert_ptr_not_equal(c, a);
    assert_ptr_equal(ws_deflate_frame(plain, 10, 256), c);
    /* the twin inflates back to the text */
    ws_frame_header h;
    uint16_t code;
    assert_int_equal(
        ws_frame_parse_header_ext(a->data, a->len, false, WS_RSV1, UINT64_MAX, &h, &code),
        WS_PARSE_OK);
    struct z_stream_s *zs = ws_deflate_inflater_new(15);
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    uint8_t u = UTF8_ACCEPT;
    assert_int_equal(ws_deflate_inflate(zs, a->data + h.header_len, (size_t)h.payload_len, true,
                                        &buf, &len, &cap, 4096, &u),
                     0);
    assert_int_equal(len, sizeof(text));
    assert_memory_equal(buf, text, sizeof(text));
    free(buf);
    ws_deflate_inflater_free(zs);
    sbuf_unref(plain); /* frees the twins too (ASan checks) */
}

static void test_small_and_control_stay_plain(void **state)
{
    (void)state;
    sbuf *small = ws_frame_build(WS_OP_TEXT, "hello hello hello hello", 23);
    assert_ptr_equal(ws_deflate_frame(small, 15, 256), small);
    assert_ptr_not_equal(ws_deflate_frame(small, 15, 0), small);
    sbuf_unref(small);
    sbuf *ping = ws_frame_build(WS_OP_PING, "aaaaaaaaaaaaaaaaaaaaaaaaaaaa", 28);
    assert_ptr_equal(ws_deflate_frame(ping, 15, 0), ping);
    sbuf_unref(ping);
    uint8_t noise[600];
    uint32_t x = 2463534242u; /* xorshift32: bytes deflate cannot shrink */
    for (size_t i = 0; i < sizeof(noise); i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        noise[i] = (uint8_t)(x >> 24);
    }
    sbuf *rnd = ws_frame_build(WS_OP_BINARY, noise, sizeof(noise));
    assert_ptr_equal(ws_deflate_frame(rnd, 15, 0), rnd); /* does not shrink */
    assert_ptr_equal(ws_deflate_frame(rnd, 15, 0), rnd);
    sbuf_unref(rnd);
}

static void test_inflate_stops_at_limit(void **state)
{
    (void)state;
    static uint8_t zeros[1 << 20];
    uint8_t z[8192];
    z_stream d = {0};
    assert_int_equal(deflateInit2(&d, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    d.next_in = zeros;
    d.avail_in = sizeof(zeros);
    d.next_out = z;
    d.avail_out = sizeof(z);
    assert_int_equal(deflate(&d, Z_SYNC_FLUSH), Z_OK);
    size_t zlen = sizeof(z) - d.avail_out - 4;
    deflateEnd(&d);
    struct z_stream_s *zs = ws_deflate_inflater_new(15);
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    assert_int_equal(ws_deflate_inflate(zs, z, zlen, true, &buf, &len, &cap, 65536, NULL),
                     WS_CLOSE_TOO_BIG);
    assert_true(cap <= 65536 + 2); /* the bomb cost at most the limit */
    free(buf);
    ws_deflate_inflater_free(zs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_negotiate),
        cmocka_unit_test(test_twin_built_once_and_shared),
        cmocka_unit_test(test_small_and_control_stay_plain),
        cmocka_unit_test(test_inflate_stops_at_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
