/* Unit tests for ws/ws_frame: header parsing rules and their close codes,
 * masking, header encoding, and the exact bytes of built frames.
 *
 * Expected bytes are written out by hand (or taken from RFC 6455 examples)
 * rather than produced by the encoder under test, so encoder and parser
 * cannot agree on a mistake. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "ws/utf8.h"
#include "ws/ws_frame.h"

#define NO_LIMIT UINT64_MAX
#define BYTES(...) ((const uint8_t[]){__VA_ARGS__}), sizeof((const uint8_t[]){__VA_ARGS__})

static const uint8_t key[4] = {0x37, 0xFA, 0x21, 0x3D}; /* RFC 6455 5.7 example key */

static int parse(const uint8_t *buf, size_t len, bool require_mask, uint64_t max,
                 ws_frame_header *h, uint16_t *code)
{
    *code = 0;
    memset(h, 0xAB, sizeof(*h));
    return ws_frame_parse_header(buf, len, require_mask, max, h, code);
}

static void expect_error(const uint8_t *buf, size_t len, bool require_mask, uint64_t max,
                         uint16_t want_code)
{
    ws_frame_header h;
    uint16_t code;
    assert_int_equal(parse(buf, len, require_mask, max, &h, &code), WS_PARSE_ERROR);
    assert_int_equal(code, want_code);
}

/* Every proper prefix of a valid header is NEED_MORE, the whole is OK. */
static void expect_prefixes_need_more(const uint8_t *hdr, size_t hlen, bool require_mask)
{
    ws_frame_header h;
    uint16_t code;
    for (size_t n = 0; n < hlen; n++) {
        if (parse(hdr, n, require_mask, NO_LIMIT, &h, &code) != WS_PARSE_NEED_MORE)
            fail_msg("prefix of %zu of a %zu-byte header is not NEED_MORE", n, hlen);
    }
    assert_int_equal(parse(hdr, hlen, require_mask, NO_LIMIT, &h, &code), WS_PARSE_OK);
    assert_int_equal(h.header_len, hlen);
}

static void test_opcode_table(void **state)
{
    (void)state;
    for (unsigned op = 0; op < 256; op++) {
        bool want = op == 0 || op == 1 || op == 2 || op == 8 || op == 9 || op == 10;
        if (ws_opcode_is_known((uint8_t)op) != want)
            fail_msg("opcode %u", op);
    }
    for (unsigned op = 0; op < 16; op++)
        assert_int_equal(ws_opcode_is_control((uint8_t)op), op >= 8);
}

static void test_parse_every_opcode(void **state)
{
    (void)state;
    for (uint8_t op = 0; op < 16; op++) {
        uint8_t hdr[6] = {(uint8_t)(0x80 | op), 0x80 | 3, 1, 2, 3, 4};
        ws_frame_header h;
        uint16_t code;
        int r = parse(hdr, sizeof(hdr), true, NO_LIMIT, &h, &code);
        if (ws_opcode_is_known(op)) {
            assert_int_equal(r, WS_PARSE_OK);
            assert_true(h.fin);
            assert_int_equal(h.rsv, 0);
            assert_int_equal(h.opcode, op);
            assert_true(h.masked);
            assert_memory_equal(h.mask, ((const uint8_t[]){1, 2, 3, 4}), 4);
            assert_int_equal(h.payload_len, 3);
            assert_int_equal(h.header_len, 6);
        } else {
            assert_int_equal(r, WS_PARSE_ERROR);
            assert_int_equal(code, WS_CLOSE_PROTOCOL_ERROR);
            /* Decided from the first byte alone. */
            expect_error(hdr, 1, true, NO_LIMIT, WS_CLOSE_PROTOCOL_ERROR);
        }
    }
}

static void test_parse_fin_clear_data(void **state)
{
    (void)state;
    ws_frame_header h;
    uint16_t code;
    /* Data and continuation frames may be fragments. */
    for (uint8_t op = 0; op <= 2; op++) {
        assert_int_equal(parse(BYTES(op, 0x80, 9, 9, 9, 9), true, NO_LIMIT, &h, &code),
                         WS_PARSE_OK);
        assert_false(h.fin);
        assert_int_equal(h.opcode, op);
        assert_int_equal(h.payload_len, 0);
    }
}

struct len_case {
    uint64_t len;
    uint8_t hdr[WS_FRAME_HEADER_MAX]; /* masked client header with key 1 2 3 4 */
    size_t hlen;
};

static const struct len_case len_cases[] = {
    {0, {0x82, 0x80, 1, 2, 3, 4}, 6},
    {1, {0x82, 0x81, 1, 2, 3, 4}, 6},
    {125, {0x82, 0xFD, 1, 2, 3, 4}, 6},
    {126, {0x82, 0xFE, 0x00, 0x7E, 1, 2, 3, 4}, 8},
    {127, {0x82, 0xFE, 0x00, 0x7F, 1, 2, 3, 4}, 8},
    {65535, {0x82, 0xFE, 0xFF, 0xFF, 1, 2, 3, 4}, 8},
    {65536, {0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4}, 14},
    {UINT64_C(0x100000001), {0x82, 0xFF, 0, 0, 0, 1, 0, 0, 0, 1, 1, 2, 3, 4}, 14},
    {INT64_MAX, {0x82, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4}, 14},
};

static void test_parse_lengths(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(len_cases) / sizeof(len_cases[0]); i++) {
        const struct len_case *c = &len_cases[i];
        ws_frame_header h;
        uint16_t code;
        assert_int_equal(parse(c->hdr, c->hlen, true, NO_LIMIT, &h, &code), WS_PARSE_OK);
        assert_int_equal(h.payload_len, c->len);
        assert_int_equal(h.header_len, c->hlen);
        assert_int_equal(h.opcode, WS_OP_BINARY);
        assert_memory_equal(h.mask, ((const uint8_t[]){1, 2, 3, 4}), 4);
        /* Trailing payload bytes do not change the header. */
        uint8_t more[WS_FRAME_HEADER_MAX + 8];
        memcpy(more, c->hdr, c->hlen);
        memset(more + c->hlen, 0xEE, 8);
        assert_int_equal(parse(more, c->hlen + 8, true, NO_LIMIT, &h, &code), WS_PARSE_OK);
        assert_int_equal(h.header_len, c->hlen);
        assert_int_equal(h.payload_len, c->len);
        expect_prefixes_need_more(c->hdr, c->hlen, true);
    }
}

static void test_parse_unmasked_lengths(void **state)
{
    (void)state;
    ws_frame_header h;
    uint16_t code;
    /* Server-to-client style headers, as a client-side parser would see. */
    assert_int_equal(parse(BYTES(0x81, 0x05), false, NO_LIMIT, &h, &code), WS_PARSE_OK);
    assert_false(h.masked);
    assert_int_equal(h.header_len, 2);
    assert_int_equal(h.payload_len, 5);
    assert_memory_equal(h.mask, ((const uint8_t[]){0, 0, 0, 0}), 4);
    expect_prefixes_need_more(BYTES(0x81, 0x05), false);
    expect_prefixes_need_more(BYTES(0x82, 0x7E, 0x01, 0x00), false);
    expect_prefixes_need_more(BYTES(0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0), false);
    /* A masked frame is fine when masks are not required. */
    expect_prefixes_need_more(BYTES(0x89, 0x80, 1, 2, 3, 4), false);
}

static void test_parse_non_minimal_lengths(void **state)
{
    (void)state;
    ws_frame_header h;
    uint16_t code;
    /* 5 bytes announced with the 16- and 64-bit forms. */
    assert_int_equal(parse(BYTES(0x81, 0xFE, 0, 5, 1, 2, 3, 4), true, NO_LIMIT, &h, &code),
                     WS_PARSE_OK);
    assert_int_equal(h.payload_len, 5);
    assert_int_equal(h.header_len, 8);
    assert_int_equal(
        parse(BYTES(0x81, 0xFF, 0, 0, 0, 0, 0, 0, 0, 5, 1, 2, 3, 4), true, NO_LIMIT, &h, &code),
        WS_PARSE_OK);
    assert_int_equal(h.payload_len, 5);
    assert_int_equal(h.header_len, 14);
    /* The control limit applies to the decoded length, not to its encoding. */
    assert_int_equal(parse(BYTES(0x89, 0xFE, 0, 125, 1, 2, 3, 4), true, NO_LIMIT, &h, &code),
                     WS_PARSE_OK);
    assert_int_equal(h.payload_len, 125);
    expect_error(BYTES(0x89, 0xFE, 0, 126, 1, 2, 3, 4), true, NO_LIMIT, WS_CLOSE_PROTOCOL_ERROR);
}

static void test_parse_rsv_bits(void **state)
{
    (void)state;
    static const uint8_t rsv_bits[] = {0x40, 0x20, 0x10, 0x70};
    for (size_t i = 0; i < sizeof(rsv_bits); i++) {
        uint8_t hdr[6] = {(uint8_t)(0x81 | rsv_bits[i]), 0x80, 1, 2, 3, 4};
        expect_error(hdr, sizeof(hdr), true, NO_LIMIT, WS_CLOSE_PROTOCOL_ERROR);
        expect_error(hdr, 1, true, NO_LIMIT, WS_CLOSE_PROTOCOL_ERROR);
        hdr[0] = (uint8_t)(0x89 | rsv_bits[i]); /* on control frames too */
        expect_error(hdr, sizeof(hdr), true, NO_LIMIT, WS_CLOSE_PROTOCOL_ERROR);
    }
}

static void test_parse_unknown_opcodes(void **state)
{
    (void)state;
    static const uint8_t unknown[] = {3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF};
    for (size_t i = 0; i < sizeof(unknown); i++) {
        uint8_t hdr[6] = {(uint8_t)(0x80 | unknown[i]), 0x80, 1, 2, 3, 4};
        expect_error(hdr, sizeof(hdr), true, NO_LIMIT, WS_CLOSE_PROTOCOL_ERROR);
        expect_error(hdr, sizeof(hdr), false, NO_LIMIT, WS_CLOSE_PROTOCOL_ERROR);
        hdr[0] = unknown[i]; /* FIN clear changes nothing */
        expect_error(hdr, sizeof(hdr), true, NO_LIMIT, WS_CLOSE_PROTOCOL_ERROR);
    }
}

static void test_parse_unmasked_client_frame(void **state)
{
    (void)state;
    ws_frame_header h;
    uint16_t code;
    expect_error(BYTES(0x81, 0x05, 'H', 'e', 'l', 'l', 'o'), true, NO_LIMIT,
                 WS_CLOSE_PROTOCOL_ERROR);
    expect_error(BYTES(0x81, 0x05), true, NO_LIMIT, WS_CLOSE_PROTOCOL_ERROR);
    expect_error(BYTES(0x88, 0x00), true, NO_LIMIT, WS_CLOSE_PROTOCOL_ERROR);
    /* The same bytes are fine when masks are not required. */
    assert_int_equal(parse(BYTES(0x81, 0x05), false, NO_LIMIT, &h, &code), WS_PARSE_OK);
}

static void test_parse_fragmented_control(void **state)
{
    (void)state;
    for (uint8_t op = 8; op <= 10; op++) {
        uint8_t hdr[6] = {op, 0x80, 1, 2, 3, 4}; /* FIN clear */
        expect_error(hdr, sizeof(hdr), true, NO_LIMIT, WS_CLOSE_PROTOCOL_ERROR);
        expect_error(hdr, 1, true, NO_LIMIT, WS_CLOSE_PROTOCOL_ERROR);
    }
}

static void test_parse_control_payload_limit(void **state)
{
    (void)state;
    ws_frame_header h;
    uint16_t code;
    for (uint8_t op = 8; op <= 10; op++) {
        uint8_t ok[6] = {(uint8_t)(0x80 | op), 0x80 | 125, 1, 2, 3, 4};
        assert_int_equal(parse(ok, sizeof(ok), true, NO_LIMIT, &h, &code), WS_PARSE_OK);
        assert_int_equal(h.payload_len, 125);
        /* 126 bytes, in the 16-bit form that length needs. */
        uint8_t big[8] = {(uint8_t)(0x80 | op), 0x80 | 126, 0, 126, 1, 2, 3, 4};
        expect_error(big, sizeof(big), true, NO_LIMIT, WS_CLOSE_PROTOCOL_ERROR);
        uint8_t huge[14] = {(uint8_t)(0x80 | op), 0x80 | 127, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4};
        expect_error(huge, sizeof(huge), true, NO_LIMIT, WS_CLOSE_PROTOCOL_ERROR);
    }
    /* A control frame over 125 is a protocol error even when it is also over
     * the size limit. */
    expect_error(BYTES(0x89, 0xFE, 0, 126, 1, 2, 3, 4), true, 10, WS_CLOSE_PROTOCOL_ERROR);
}

static void test_parse_64bit_top_bit(void **state)
{
    (void)state;
    expect_error(BYTES(0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4), true, NO_LIMIT,
                 WS_CLOSE_PROTOCOL_ERROR);
    expect_error(BYTES(0x82, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4),
                 true, NO_LIMIT, WS_CLOSE_PROTOCOL_ERROR);
    /* Reported as 1002 even with a small limit: the frame is malformed, not
     * merely too big. Known before the mask key arrives. */
    expect_error(BYTES(0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0), true, 1024, WS_CLOSE_PROTOCOL_ERROR);
}

static void test_parse_max_payload(void **state)
{
    (void)state;
    ws_frame_header h;
    uint16_t code;
    /* Exactly the limit passes, one more is 1009, in each length form. */
    assert_int_equal(parse(BYTES(0x82, 0x80 | 100, 1, 2, 3, 4), true, 100, &h, &code), WS_PARSE_OK);
    expect_error(BYTES(0x82, 0x80 | 101, 1, 2, 3, 4), true, 100, WS_CLOSE_TOO_BIG);
    assert_int_equal(parse(BYTES(0x82, 0xFE, 0x03, 0xE8, 1, 2, 3, 4), true, 1000, &h, &code),
                     WS_PARSE_OK);
    expect_error(BYTES(0x82, 0xFE, 0x03, 0xE9, 1, 2, 3, 4), true, 1000, WS_CLOSE_TOO_BIG);
    expect_error(BYTES(0x82, 0xFF, 0, 0, 0, 1, 0, 0, 0, 1, 1, 2, 3, 4), true, UINT32_MAX,
                 WS_CLOSE_TOO_BIG);
    /* Known from the length, before the mask key arrives. */
    expect_error(BYTES(0x82, 0xFE, 0x03, 0xE9), true, 1000, WS_CLOSE_TOO_BIG);
    /* A zero limit still admits empty frames. */
    assert_int_equal(parse(BYTES(0x81, 0x80, 1, 2, 3, 4), true, 0, &h, &code), WS_PARSE_OK);
    expect_error(BYTES(0x81, 0x81, 1, 2, 3, 4), true, 0, WS_CLOSE_TOO_BIG);
}

static void test_parse_need_more_every_prefix(void **state)
{
    (void)state;
    /* One header of each shape: 2, 4, 6, 8, 10 and 14 bytes. */
    expect_prefixes_need_more(BYTES(0x89, 0x00), false);
    expect_prefixes_need_more(BYTES(0x81, 0x7E, 0x12, 0x34), false);
    expect_prefixes_need_more(BYTES(0x88, 0x82, 9, 8, 7, 6), true);
    expect_prefixes_need_more(BYTES(0x01, 0xFE, 0x12, 0x34, 9, 8, 7, 6), true);
    expect_prefixes_need_more(BYTES(0x02, 0x7F, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78), false);
    expect_prefixes_need_more(BYTES(0x80, 0xFF, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78, 9, 8, 7, 6),
                              true);
}

static void test_mask_rfc_example(void **state)
{
    (void)state;
    /* RFC 6455 5.7: "Hello" masked with 37 fa 21 3d. */
    uint8_t data[5] = {'H', 'e', 'l', 'l', 'o'};
    ws_mask_apply(data, sizeof(data), key, 0);
    assert_memory_equal(data, ((const uint8_t[]){0x7F, 0x9F, 0x4D, 0x51, 0x58}), 5);
    ws_mask_apply(data, sizeof(data), key, 0);
    assert_memory_equal(data, "Hello", 5);
    ws_mask_apply(NULL, 0, key, 3); /* empty is a no-op */
}

static void naive_mask(uint8_t *data, size_t len, const uint8_t mask[4], size_t offset)
{
    for (size_t i = 0; i < len; i++)
        data[i] ^= mask[(offset + i) % 4];
}

static void test_mask_against_naive(void **state)
{
    (void)state;
    enum { N = 300 };
    uint8_t orig[N + 8], a[N + 8], b[N + 8];
    for (size_t i = 0; i < sizeof(orig); i++)
        orig[i] = (uint8_t)(i * 131 + 7);
    /* Every misalignment, length (past the 32- and 8-byte blocks) and key
     * offset, including offsets of 4 and more. */
    for (size_t start = 0; start < 8; start++) {
        for (size_t len = 0; len <= N; len++) {
            for (size_t off = 0; off < 9; off++) {
                memcpy(a, orig, sizeof(a));
                memcpy(b, orig, sizeof(b));
                ws_mask_apply(a + start, len, key, off);
                naive_mask(b + start, len, key, off);
                if (memcmp(a, b, sizeof(a)) != 0)
                    fail_msg("start %zu len %zu offset %zu", start, len, off);
            }
        }
    }
    /* A huge offset, as a running byte count would be. */
    memcpy(a, orig, N);
    memcpy(b, orig, N);
    ws_mask_apply(a, N, key, SIZE_MAX);
    naive_mask(b, N, key, SIZE_MAX % 4);
    assert_memory_equal(a, b, N);
}

static void test_mask_in_pieces(void **state)
{
    (void)state;
    enum { N = 100 };
    uint8_t plain[N], whole[N], pieces[N];
    for (size_t i = 0; i < N; i++)
        plain[i] = (uint8_t)(i ^ 0x5A);
    memcpy(whole, plain, N);
    ws_mask_apply(whole, N, key, 0);
    /* Unmasking as the bytes arrive, split at every pair of points, with
     * the offset being the count already unmasked. */
    for (size_t x = 0; x <= N; x += 3) {
        for (size_t y = x; y <= N; y++) {
            memcpy(pieces, whole, N);
            ws_mask_apply(pieces, x, key, 0);
            ws_mask_apply(pieces + x, y - x, key, x);
            ws_mask_apply(pieces + y, N - y, key, y);
            if (memcmp(pieces, plain, N) != 0)
                fail_msg("cuts %zu %zu", x, y);
        }
    }
}

static void test_header_encode(void **state)
{
    (void)state;
    uint8_t out[WS_FRAME_HEADER_MAX];
    size_t n;

    n = ws_frame_header_encode(out, true, WS_OP_TEXT, 5, NULL);
    assert_int_equal(n, 2);
    assert_memory_equal(out, ((const uint8_t[]){0x81, 0x05}), 2);

    n = ws_frame_header_encode(out, false, WS_OP_TEXT, 0, NULL);
    assert_int_equal(n, 2);
    assert_memory_equal(out, ((const uint8_t[]){0x01, 0x00}), 2);

    n = ws_frame_header_encode(out, true, WS_OP_CONTINUATION, 125, NULL);
    assert_memory_equal(out, ((const uint8_t[]){0x80, 0x7D}), n);
    assert_int_equal(n, 2);

    n = ws_frame_header_encode(out, true, WS_OP_BINARY, 126, NULL);
    assert_int_equal(n, 4);
    assert_memory_equal(out, ((const uint8_t[]){0x82, 0x7E, 0x00, 0x7E}), 4);

    n = ws_frame_header_encode(out, true, WS_OP_BINARY, 65535, NULL);
    assert_int_equal(n, 4);
    assert_memory_equal(out, ((const uint8_t[]){0x82, 0x7E, 0xFF, 0xFF}), 4);

    n = ws_frame_header_encode(out, true, WS_OP_BINARY, 65536, NULL);
    assert_int_equal(n, 10);
    assert_memory_equal(out, ((const uint8_t[]){0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0}), 10);

    n = ws_frame_header_encode(out, true, WS_OP_BINARY, UINT64_C(0x100000001), NULL);
    assert_int_equal(n, 10);
    assert_memory_equal(out, ((const uint8_t[]){0x82, 0x7F, 0, 0, 0, 1, 0, 0, 0, 1}), 10);

    /* Masked (client) headers carry the key after the length. */
    n = ws_frame_header_encode(out, true, WS_OP_TEXT, 5, key);
    assert_int_equal(n, 6);
    assert_memory_equal(out, ((const uint8_t[]){0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D}), 6);

    n = ws_frame_header_encode(out, true, WS_OP_PING, 0, key);
    assert_memory_equal(out, ((const uint8_t[]){0x89, 0x80, 0x37, 0xFA, 0x21, 0x3D}), n);

    n = ws_frame_header_encode(out, false, WS_OP_BINARY, 256, key);
    assert_int_equal(n, 8);
    assert_memory_equal(out, ((const uint8_t[]){0x02, 0xFE, 0x01, 0x00, 0x37, 0xFA, 0x21, 0x3D}),
                        8);

    n = ws_frame_header_encode(out, true, WS_OP_BINARY, 65536, key);
    assert_int_equal(n, WS_FRAME_HEADER_MAX);
    assert_memory_equal(
        out, ((const uint8_t[]){0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 0x37, 0xFA, 0x21, 0x3D}), 14);
}

static void test_header_encode_parse_round_trip(void **state)
{
    (void)state;
    static const uint64_t lens[] = {
        0, 1, 125, 126, 127, 65535, 65536, 65537, UINT64_C(0x100000001), INT64_MAX};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        for (uint8_t op = 0; op < 16; op++) {
            if (!ws_opcode_is_known(op) || (ws_opcode_is_control(op) && lens[i] > 125))
                continue;
            for (int fin = 0; fin <= 1; fin++) {
                if (!fin && ws_opcode_is_control(op))
                    continue;
                uint8_t out[WS_FRAME_HEADER_MAX];
                size_t n = ws_frame_header_encode(out, fin, op, lens[i], key);
                ws_frame_header h;
                uint16_t code;
                assert_int_equal(parse(out, n, true, NO_LIMIT, &h, &code), WS_PARSE_OK);
                assert_int_equal(h.header_len, n);
                assert_int_equal(h.payload_len, lens[i]);
                assert_int_equal(h.opcode, op);
                assert_int_equal(h.fin, fin);
                assert_memory_equal(h.mask, key, 4);
            }
        }
    }
}

static void test_build_exact_bytes(void **state)
{
    (void)state;
    /* RFC 6455 5.7: a single-frame unmasked text message "Hello". */
    sbuf *b = ws_frame_build(WS_OP_TEXT, "Hello", 5);
    assert_non_null(b);
    assert_int_equal(b->refs, 1);
    assert_int_equal(b->len, 7);
    assert_memory_equal(b->data, ((const uint8_t[]){0x81, 0x05, 'H', 'e', 'l', 'l', 'o'}), 7);
    sbuf_unref(b);

    /* RFC 6455 5.7: unmasked ping "Hello", and a pong. */
    b = ws_frame_build(WS_OP_PING, "Hello", 5);
    assert_memory_equal(b->data, ((const uint8_t[]){0x89, 0x05, 'H', 'e', 'l', 'l', 'o'}), 7);
    sbuf_unref(b);
    b = ws_frame_build(WS_OP_PONG, NULL, 0);
    assert_int_equal(b->len, 2);
    assert_memory_equal(b->data, ((const uint8_t[]){0x8A, 0x00}), 2);
    sbuf_unref(b);

    /* RFC 6455 5.7: 256 bytes binary in the 16-bit form. */
    uint8_t *payload = malloc(65536);
    assert_non_null(payload);
    for (size_t i = 0; i < 65536; i++)
        payload[i] = (uint8_t)(i * 7);
    b = ws_frame_build(WS_OP_BINARY, payload, 256);
    assert_int_equal(b->len, 4 + 256);
    assert_memory_equal(b->data, ((const uint8_t[]){0x82, 0x7E, 0x01, 0x00}), 4);
    assert_memory_equal(b->data + 4, payload, 256);
    sbuf_unref(b);

    /* RFC 6455 5.7: 64 KiB binary in the 64-bit form. */
    b = ws_frame_build(WS_OP_BINARY, payload, 65536);
    assert_int_equal(b->len, 10 + 65536);
    assert_memory_equal(b->data, ((const uint8_t[]){0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0}), 10);
    assert_memory_equal(b->data + 10, payload, 65536);
    sbuf_unref(b);
    free(payload);
}

static void test_build_parses_back(void **state)
{
    (void)state;
    sbuf *b = ws_frame_build(WS_OP_TEXT, "hi there", 8);
    ws_frame_header h;
    uint16_t code;
    assert_int_equal(parse(b->data, b->len, false, NO_LIMIT, &h, &code), WS_PARSE_OK);
    assert_true(h.fin);
    assert_false(h.masked);
    assert_int_equal(h.opcode, WS_OP_TEXT);
    assert_int_equal(h.header_len + h.payload_len, b->len);
    assert_memory_equal(b->data + h.header_len, "hi there", 8);
    /* A server frame is what a client-facing parser must refuse. */
    expect_error(b->data, b->len, true, NO_LIMIT, WS_CLOSE_PROTOCOL_ERROR);
    sbuf_unref(b);
}

static void test_build_too_big(void **state)
{
    (void)state;
    /* sbuf lengths are 32-bit: a frame that cannot fit is refused, without
     * touching the (fake) payload. */
    if (SIZE_MAX > UINT32_MAX)
        assert_null(ws_frame_build(WS_OP_BINARY, "", (size_t)UINT32_MAX));
    assert_null(ws_frame_build(WS_OP_BINARY, "", SIZE_MAX));
}

static void expect_close(sbuf *b, uint16_t code, const char *reason, size_t reason_len)
{
    assert_non_null(b);
    assert_int_equal(b->refs, 1);
    assert_int_equal(b->data[0], 0x88);
    size_t plen = code ? 2 + reason_len : 0;
    assert_true(plen <= WS_CONTROL_PAYLOAD_MAX);
    assert_int_equal(b->data[1], plen);
    assert_int_equal(b->len, 2 + plen);
    if (code) {
        assert_int_equal(b->data[2], code >> 8);
        assert_int_equal(b->data[3], code & 0xFF);
        assert_memory_equal(b->data + 4, reason, reason_len);
        assert_true(utf8_is_valid(b->data + 4, reason_len));
    }
    sbuf_unref(b);
}

static void test_build_close(void **state)
{
    (void)state;
    sbuf *b = ws_frame_build_close(1000, "bye");
    assert_memory_equal(b->data, ((const uint8_t[]){0x88, 0x05, 0x03, 0xE8, 'b', 'y', 'e'}), 7);
    expect_close(b, 1000, "bye", 3);

    b = ws_frame_build_close(0, NULL);
    assert_memory_equal(b->data, ((const uint8_t[]){0x88, 0x00}), 2);
    expect_close(b, 0, NULL, 0);
    /* No code, no reason: a reason cannot be sent alone. */
    expect_close(ws_frame_build_close(0, "ignored"), 0, NULL, 0);

    b = ws_frame_build_close(1001, NULL);
    assert_memory_equal(b->data, ((const uint8_t[]){0x88, 0x02, 0x03, 0xE9}), 4);
    expect_close(b, 1001, "", 0);
    expect_close(ws_frame_build_close(1008, ""), 1008, "", 0);
    expect_close(ws_frame_build_close(4999, "closed by server"), 4999, "closed by server", 16);
    expect_close(ws_frame_build_close(0xFFFF, "x"), 0xFFFF, "x", 1);
}

static void test_build_close_truncation(void **state)
{
    (void)state;
    char reason[512];

    /* ASCII: 123 bytes fit exactly, 124 lose the last. */
    memset(reason, 'a', 200);
    reason[123] = '\0';
    expect_close(ws_frame_build_close(1000, reason), 1000, reason, 123);
    reason[123] = 'b';
    reason[124] = '\0';
    expect_close(ws_frame_build_close(1000, reason), 1000, reason, 123);
    reason[200] = '\0';
    expect_close(ws_frame_build_close(1000, reason), 1000, reason, 123);

    /* 2-byte "é" x 62 = 124 bytes: cut to 61 characters, not mid-character. */
    reason[0] = '\0';
    for (int i = 0; i < 62; i++)
        strcat(reason, "\xC3\xA9");
    expect_close(ws_frame_build_close(1000, reason), 1000, reason, 122);

    /* 3-byte "€" x 41 = 123 bytes fits; x 42 is cut back to 123. */
    reason[0] = '\0';
    for (int i = 0; i < 41; i++)
        strcat(reason, "\xE2\x82\xAC");
    expect_close(ws_frame_build_close(1000, reason), 1000, reason, 123);
    strcat(reason, "\xE2\x82\xAC");
    expect_close(ws_frame_build_close(1000, reason), 1000, reason, 123);

    /* 122 ASCII + "€": the euro would straddle the limit and is dropped. */
    memset(reason, 'a', 122);
    strcpy(reason + 122, "\xE2\x82\xAC");
    expect_close(ws_frame_build_close(1000, reason), 1000, reason, 122);
    /* 121 ASCII + "€" + more: 124 bytes in, the euro ends at 124, dropped. */
    memset(reason, 'a', 121);
    strcpy(reason + 121, "\xE2\x82\xAC"
                         "zz");
    expect_close(ws_frame_build_close(1000, reason), 1000, reason, 121);
    /* 120 ASCII + "€": ends exactly at 123, kept. */
    memset(reason, 'a', 120);
    strcpy(reason + 120, "\xE2\x82\xAC"
                         "zz");
    expect_close(ws_frame_build_close(1000, reason), 1000, reason, 123);

    /* 4-byte emoji x 31 = 124 bytes: 30 fit (120 bytes). */
    reason[0] = '\0';
    for (int i = 0; i < 31; i++)
        strcat(reason, "\xF0\x9F\x98\x80");
    expect_close(ws_frame_build_close(1000, reason), 1000, reason, 120);
}

static void test_build_close_invalid_reason(void **state)
{
    (void)state;
    /* An invalid reason would make the peer fail the connection with 1007;
     * the valid prefix is kept instead. */
    expect_close(ws_frame_build_close(1000, "ok\xFFrest"), 1000, "ok", 2);
    expect_close(ws_frame_build_close(1000, "ab\xED\xA0\x80"), 1000, "ab", 2);
    expect_close(ws_frame_build_close(1000, "ab\xC3"), 1000, "ab", 2);
}

/* Written as a list of ranges, apart from the implementation's if-chain. */
static bool close_code_expected(unsigned code)
{
    static const struct {
        unsigned lo, hi;
    } ok[] = {{1000, 1003}, {1007, 1011}, {3000, 4999}};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (code >= ok[i].lo && code <= ok[i].hi)
            return true;
    return false;
}

static void test_close_code_validity(void **state)
{
    (void)state;
    static const uint16_t good[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009,
                                    1010, 1011, 3000, 3999, 4000, 4999};
    static const uint16_t bad[] = {0,    1,    999,  1004, 1005, 1006, 1012, 1013,
                                   1014, 1015, 1016, 1100, 2000, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (!ws_close_code_is_valid(good[i]))
            fail_msg("%u should be valid", good[i]);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (ws_close_code_is_valid(bad[i]))
            fail_msg("%u should be invalid", bad[i]);
    for (unsigned code = 0; code <= UINT16_MAX; code++)
        if (ws_close_code_is_valid((uint16_t)code) != close_code_expected(code))
            fail_msg("close code %u", code);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_opcode_table),
        cmocka_unit_test(test_parse_every_opcode),
        cmocka_unit_test(test_parse_fin_clear_data),
        cmocka_unit_test(test_parse_lengths),
        cmocka_unit_test(test_parse_unmasked_lengths),
        cmocka_unit_test(test_parse_non_minimal_lengths),
        cmocka_unit_test(test_parse_rsv_bits),
        cmocka_unit_test(test_parse_unknown_opcodes),
        cmocka_unit_test(test_parse_unmasked_client_frame),
        cmocka_unit_test(test_parse_fragmented_control),
        cmocka_unit_test(test_parse_control_payload_limit),
        cmocka_unit_test(test_parse_64bit_top_bit),
        cmocka_unit_test(test_parse_max_payload),
        cmocka_unit_test(test_parse_need_more_every_prefix),
        cmocka_unit_test(test_mask_rfc_example),
        cmocka_unit_test(test_mask_against_naive),
        cmocka_unit_test(test_mask_in_pieces),
        cmocka_unit_test(test_header_encode),
        cmocka_unit_test(test_header_encode_parse_round_trip),
        cmocka_unit_test(test_build_exact_bytes),
        cmocka_unit_test(test_build_parses_back),
        cmocka_unit_test(test_build_too_big),
        cmocka_unit_test(test_build_close),
        cmocka_unit_test(test_build_close_truncation),
        cmocka_unit_test(test_build_close_invalid_reason),
        cmocka_unit_test(test_close_code_validity),
    };
    return cmocka_run_group_tests_name("ws_frame", tests, NULL, NULL);
}
