/* Unit tests for gw_frame: the 28-byte GatewayWorker header against
 * hand-built big-endian bytes, its length checks, the query reply prefix,
 * and the 20-hex client_id. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gwcompat/gw_frame.h"

/* A SEND_TO_ONE frame header from 127.0.0.1:2900 for client 10.1.2.3:54321,
 * connection 0x01020304, flag 0x01, public port 8080 (0x1f90), ext_len 5,
 * pack_len 28 + 5 + 7, written out byte by byte. */
static const uint8_t sample[GW_HEADER_LEN] = {
    0x00, 0x00, 0x00, 0x28, /* pack_len 40 */
    0x05,                   /* cmd */
    0x7f, 0x00, 0x00, 0x01, /* local_ip 127.0.0.1 */
    0x0b, 0x54,             /* local_port 2900 */
    0x0a, 0x01, 0x02, 0x03, /* client_ip 10.1.2.3 */
    0xd4, 0x31,             /* client_port 54321 */
    0x01, 0x02, 0x03, 0x04, /* connection_id */
    0x01,                   /* flag */
    0x1f, 0x90,             /* gateway_port 8080 */
    0x00, 0x00, 0x00, 0x05, /* ext_len */
};

static void test_parse_layout(void **state)
{
    (void)state;
    gw_header h;
    assert_int_equal(gw_header_parse(sample, sizeof sample, 1 << 20, &h), GW_PARSE_OK);
    assert_int_equal(h.pack_len, 40);
    assert_int_equal(h.cmd, GW_CMD_SEND_TO_ONE);
    assert_int_equal(h.local_ip, 0x7f000001u);
    assert_int_equal(h.local_port, 2900);
    assert_int_equal(h.client_ip, 0x0a010203u);
    assert_int_equal(h.client_port, 54321);
    assert_int_equal(h.connection_id, 0x01020304u);
    assert_int_equal(h.flag, GW_FLAG_BODY_RAW);
    assert_int_equal(h.gateway_port, 8080);
    assert_int_equal(h.ext_len, 5);

    /* bytes after the header (ext_data, body) do not matter to the parse */
    uint8_t longer[64];
    memset(longer, 0xee, sizeof longer);
    memcpy(longer, sample, sizeof sample);
    gw_header h2;
    assert_int_equal(gw_header_parse(longer, sizeof longer, 1 << 20, &h2), GW_PARSE_OK);
    assert_memory_equal(&h, &h2, sizeof h);
}

static void test_encode_layout(void **state)
{
    (void)state;
    gw_header h = {
        .pack_len = 40,
        .cmd = GW_CMD_SEND_TO_ONE,
        .local_ip = 0x7f000001u,
        .local_port = 2900,
        .client_ip = 0x0a010203u,
        .client_port = 54321,
        .connection_id = 0x01020304u,
        .flag = GW_FLAG_BODY_RAW,
        .gateway_port = 8080,
        .ext_len = 5,
    };
    uint8_t out[GW_HEADER_LEN];
    memset(out, 0xaa, sizeof out);
    gw_header_encode(&h, out);
    assert_memory_equal(out, sample, GW_HEADER_LEN);

    /* every field at its extreme value lands in its own bytes */
    gw_header max = {
        .pack_len = 0xfffffffeu,
        .cmd = 0xfd,
        .local_ip = 0xfcfbfaf9u,
        .local_port = 0xf8f7,
        .client_ip = 0xf6f5f4f3u,
        .client_port = 0xf2f1,
        .connection_id = 0xf0efeeedu,
        .flag = 0xec,
        .gateway_port = 0xebea,
        .ext_len = 0xe9e8e7e6u,
    };
    static const uint8_t want[GW_HEADER_LEN] = {
        0xff, 0xff, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0xfa, 0xf9, 0xf8, 0xf7, 0xf6, 0xf5, 0xf4,
        0xf3, 0xf2, 0xf1, 0xf0, 0xef, 0xee, 0xed, 0xec, 0xeb, 0xea, 0xe9, 0xe8, 0xe7, 0xe6,
    };
    gw_header_encode(&max, out);
    assert_memory_equal(out, want, GW_HEADER_LEN);
}

static void test_round_trip(void **state)
{
    (void)state;
    static const gw_header cases[] = {
        {.pack_len = 28},
        {.pack_len = 28, .ext_len = 0, .cmd = GW_CMD_PING},
        {.pack_len = 100, .ext_len = 72, .cmd = GW_CMD_BIND_UID, .connection_id = 1},
        {.pack_len = 0xffffffffu,
         .cmd = 255,
         .local_ip = 0xffffffffu,
         .local_port = 65535,
         .client_ip = 1,
         .client_port = 1,
         .connection_id = 0xffffffffu,
         .flag = GW_FLAG_BODY_RAW | GW_FLAG_NOT_FRAMED,
         .gateway_port = 65535,
         .ext_len = 0xffffffffu - 28},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t buf[GW_HEADER_LEN];
        gw_header back;
        gw_header_encode(&cases[i], buf);
        assert_int_equal(gw_header_parse(buf, sizeof buf, 0xffffffffu, &back), GW_PARSE_OK);
        assert_int_equal(back.pack_len, cases[i].pack_len);
        assert_int_equal(back.cmd, cases[i].cmd);
        assert_int_equal(back.local_ip, cases[i].local_ip);
        assert_int_equal(back.local_port, cases[i].local_port);
        assert_int_equal(back.client_ip, cases[i].client_ip);
        assert_int_equal(back.client_port, cases[i].client_port);
        assert_int_equal(back.connection_id, cases[i].connection_id);
        assert_int_equal(back.flag, cases[i].flag);
        assert_int_equal(back.gateway_port, cases[i].gateway_port);
        assert_int_equal(back.ext_len, cases[i].ext_len);
        uint8_t again[GW_HEADER_LEN];
        gw_header_encode(&back, again);
        assert_memory_equal(buf, again, GW_HEADER_LEN);
    }
}

static void test_need_more(void **state)
{
    (void)state;
    gw_header h;
    /* exact-size copies, so ASan would see a read past any short prefix */
    for (size_t len = 0; len < GW_HEADER_LEN; len++) {
        uint8_t *copy = malloc(len ? len : 1);
        assert_non_null(copy);
        memcpy(copy, sample, len);
        assert_int_equal(gw_header_parse(copy, len, 1 << 20, &h), GW_PARSE_NEED_MORE);
        free(copy);
    }
    /* even when the bytes so far already show a bad pack_len */
    static const uint8_t bad[4] = {0, 0, 0, 1};
    assert_int_equal(gw_header_parse(bad, sizeof bad, 1 << 20, &h), GW_PARSE_NEED_MORE);
}

static void with_lengths(uint8_t buf[GW_HEADER_LEN], uint32_t pack_len, uint32_t ext_len)
{
    gw_header h = {.pack_len = pack_len, .cmd = GW_CMD_SEND_TO_ONE, .ext_len = ext_len};
    gw_header_encode(&h, buf);
}

static void test_bad_len(void **state)
{
    (void)state;
    uint8_t buf[GW_HEADER_LEN];
    gw_header h;
    for (uint32_t pack = 0; pack < GW_HEADER_LEN; pack++) {
        with_lengths(buf, pack, 0);
        assert_int_equal(gw_header_parse(buf, sizeof buf, 1 << 20, &h), GW_PARSE_BAD_LEN);
    }
    with_lengths(buf, GW_HEADER_LEN, 0);
    assert_int_equal(gw_header_parse(buf, sizeof buf, 1 << 20, &h), GW_PARSE_OK);
    assert_int_equal(gw_header_parse(buf, sizeof buf, GW_HEADER_LEN, &h), GW_PARSE_OK);

    /* the bound is inclusive */
    with_lengths(buf, 2097152, 0);
    assert_int_equal(gw_header_parse(buf, sizeof buf, 2097152, &h), GW_PARSE_OK);
    with_lengths(buf, 2097153, 0);
    assert_int_equal(gw_header_parse(buf, sizeof buf, 2097152, &h), GW_PARSE_BAD_LEN);
    with_lengths(buf, 0xffffffffu, 0);
    assert_int_equal(gw_header_parse(buf, sizeof buf, 2097152, &h), GW_PARSE_BAD_LEN);
    assert_int_equal(gw_header_parse(buf, sizeof buf, 0xffffffffu, &h), GW_PARSE_OK);
    /* a max below 28 accepts nothing */
    with_lengths(buf, GW_HEADER_LEN, 0);
    assert_int_equal(gw_header_parse(buf, sizeof buf, 0, &h), GW_PARSE_BAD_LEN);
    /* a bad pack_len wins over a bad ext_len */
    with_lengths(buf, 10, 100);
    assert_int_equal(gw_header_parse(buf, sizeof buf, 1 << 20, &h), GW_PARSE_BAD_LEN);
}

static void test_bad_ext(void **state)
{
    (void)state;
    uint8_t buf[GW_HEADER_LEN];
    gw_header h;
    with_lengths(buf, 40, 12); /* ext fills the frame, body empty */
    assert_int_equal(gw_header_parse(buf, sizeof buf, 1 << 20, &h), GW_PARSE_OK);
    with_lengths(buf, 40, 13);
    assert_int_equal(gw_header_parse(buf, sizeof buf, 1 << 20, &h), GW_PARSE_BAD_EXT);
    with_lengths(buf, 28, 1);
    assert_int_equal(gw_header_parse(buf, sizeof buf, 1 << 20, &h), GW_PARSE_BAD_EXT);
    /* 28 + ext_len would wrap in 32 bits */
    with_lengths(buf, 40, 0xffffffffu);
    assert_int_equal(gw_header_parse(buf, sizeof buf, 1 << 20, &h), GW_PARSE_BAD_EXT);
    with_lengths(buf, 40, 0xffffffffu - 27);
    assert_int_equal(gw_header_parse(buf, sizeof buf, 1 << 20, &h), GW_PARSE_BAD_EXT);
    with_lengths(buf, 0xffffffffu, 0xffffffffu - 28);
    assert_int_equal(gw_header_parse(buf, sizeof buf, 0xffffffffu, &h), GW_PARSE_OK);
    with_lengths(buf, 0xffffffffu, 0xffffffffu - 27);
    assert_int_equal(gw_header_parse(buf, sizeof buf, 0xffffffffu, &h), GW_PARSE_BAD_EXT);
}

/* The reply to a query is a 4-byte big-endian length, then serialize()
 * output: i:2; is answered 00 00 00 04 69 3a 32 3b. */
static void test_reply_prefix(void **state)
{
    (void)state;
    uint8_t out[4];
    static const uint8_t four[4] = {0x00, 0x00, 0x00, 0x04};
    gw_reply_prefix(4, out);
    assert_memory_equal(out, four, 4);
    static const uint8_t big[4] = {0x12, 0x34, 0x56, 0x78};
    gw_reply_prefix(0x12345678u, out);
    assert_memory_equal(out, big, 4);
    static const uint8_t zero[4] = {0, 0, 0, 0};
    gw_reply_prefix(0, out);
    assert_memory_equal(out, zero, 4);
}

static void test_client_id_encode(void **state)
{
    (void)state;
    char id[GW_CLIENT_ID_LEN + 1];
    memset(id, 'z', sizeof id);
    gw_client_id_encode(0x7f000001u, 2900, 1, id);
    assert_string_equal(id, "7f0000010b5400000001");
    gw_client_id_encode(0xc0a80a14u, 65535, 0xdeadbeefu, id);
    assert_string_equal(id, "c0a80a14ffffdeadbeef");
    gw_client_id_encode(0, 0, 0, id);
    assert_string_equal(id, "00000000000000000000");
}

static void test_client_id_decode(void **state)
{
    (void)state;
    uint32_t ip, conn;
    uint16_t port;
    assert_true(gw_client_id_decode("7f0000010b5400000001", 20, &ip, &port, &conn));
    assert_int_equal(ip, 0x7f000001u);
    assert_int_equal(port, 2900);
    assert_int_equal(conn, 1);
    /* upper case and mixed case */
    assert_true(gw_client_id_decode("C0A80A14FFFFDEADBEEF", 20, &ip, &port, &conn));
    assert_int_equal(ip, 0xc0a80a14u);
    assert_int_equal(port, 65535);
    assert_int_equal(conn, 0xdeadbeefu);
    assert_true(gw_client_id_decode("c0A80a14fFffDeAdBeEf", 20, &ip, &port, &conn));
    assert_int_equal(conn, 0xdeadbeefu);

    /* the encoder's output decodes to what went in */
    char id[GW_CLIENT_ID_LEN + 1];
    gw_client_id_encode(0x0a000002u, 2901, 0x80000000u, id);
    assert_true(gw_client_id_decode(id, strlen(id), &ip, &port, &conn));
    assert_int_equal(ip, 0x0a000002u);
    assert_int_equal(port, 2901);
    assert_int_equal(conn, 0x80000000u);

    /* bad lengths: the length given counts, not a NUL */
    assert_false(gw_client_id_decode("7f0000010b5400000001", 19, &ip, &port, &conn));
    assert_false(gw_client_id_decode("7f0000010b54000000010", 21, &ip, &port, &conn));
    assert_false(gw_client_id_decode("", 0, &ip, &port, &conn));
    /* non-hex anywhere */
    static const char *const bad[] = {
        "g00000010b5400000001", "7f0000010b540000000g", "7f000001 b5400000001",
        "7f0000010b54-0000001", "7f0000010b5400000x01", "0x7f0000010b54000001",
        "7f0000010b54000000:1", "7f0000010b540000000@",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (gw_client_id_decode(bad[i], 20, &ip, &port, &conn))
            fail_msg("decoded %s", bad[i]);
    static const char nul[20] = "7f0000010b540000000";
    assert_false(gw_client_id_decode(nul, 20, &ip, &port, &conn)); /* NUL as the last char */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_layout),     cmocka_unit_test(test_encode_layout),
        cmocka_unit_test(test_round_trip),       cmocka_unit_test(test_need_more),
        cmocka_unit_test(test_bad_len),          cmocka_unit_test(test_bad_ext),
        cmocka_unit_test(test_reply_prefix),     cmocka_unit_test(test_client_id_encode),
        cmocka_unit_test(test_client_id_decode),
    };
    return cmocka_run_group_tests_name("gw_frame", tests, NULL, NULL);
}
