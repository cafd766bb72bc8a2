/* fuzz_ws_deflate: libFuzzer target for permessage-deflate (RFC 7692).
 *
 * The first input byte picks a mode:
 *  - negotiation: the rest is a Sec-WebSocket-Extensions value; an accepted
 *    offer must give window bits within 8..15 and an answer that fits and is
 *    itself accepted when offered back (the answer is a valid offer);
 *  - inflation: the rest is a client's compressed payload, inflated with a
 *    small limit, whole and in pieces; the two runs must agree (result code
 *    and bytes), the output never passes the limit, and a success under the
 *    UTF-8 check is valid UTF-8;
 *  - round trip: the rest is a message, framed, compressed with the shared
 *    compressor and inflated back; it must come back byte for byte. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/sbuf.h"
#include "ws/utf8.h"
#include "ws/ws_deflate.h"
#include "ws/ws_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_LIMIT 4096

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static void fuzz_negotiate(const uint8_t *data, size_t size)
{
    char *header = malloc(size + 1);
    if (!header)
        return;
    memcpy(header, data, size);
    header[size] = '\0';
    ws_deflate_params p;
    char answer[WS_DEFLATE_ANSWER_MAX];
    if (ws_deflate_negotiate(header, &p, answer)) {
        FUZZ_CHECK(p.server_bits >= 8 && p.server_bits <= 15);
        FUZZ_CHECK(p.client_bits >= 8 && p.client_bits <= 15);
        FUZZ_CHECK(strlen(answer) < WS_DEFLATE_ANSWER_MAX);
        ws_deflate_params again;
        char answer2[WS_DEFLATE_ANSWER_MAX];
        FUZZ_CHECK(ws_deflate_negotiate(answer, &again, answer2));
    }
    free(header);
}

/* Inflates in[0..len) in pieces of `step` (0 = whole); returns the code and
 * the output (caller frees). */
static uint16_t inflate_all(const uint8_t *in, size_t len, size_t step, bool text, uint8_t **out,
                            size_t *out_len)
{
    z_stream *zs = ws_deflate_inflater_new(15);
    if (!zs)
        return 1011;
    uint8_t *buf = NULL;
    size_t blen = 0, bcap = 0;
    uint8_t utf8 = UTF8_ACCEPT;
    uint16_t code = 0;
    size_t off = 0;
    do {
        size_t n = step && len - off > step ? step : len - off;
        bool last = off + n == len;
        code = ws_deflate_inflate(zs, in + off, n, last, &buf, &blen, &bcap, FUZZ_LIMIT,
                                  text ? &utf8 : NULL);
        off += n;
    } while (!code && off < len);
    if (!code && text && utf8 != UTF8_ACCEPT)
        code = 1007; /* a message may not end inside a character */
    ws_deflate_inflater_free(zs);
    *out = buf;
    *out_len = blen;
    return code;
}

static void fuzz_inflate(const uint8_t *data, size_t size, bool text)
{
    uint8_t *a = NULL, *b = NULL;
    size_t alen = 0, blen = 0;
    uint16_t ca = inflate_all(data, size, 0, text, &a, &alen);
    uint16_t cb = inflate_all(data, size, 7, text, &b, &blen);
    if (ca != 1011 && cb != 1011) {
        FUZZ_CHECK(ca == cb);
        if (ca == 0) {
            FUZZ_CHECK(alen == blen && (alen == 0 || memcmp(a, b, alen) == 0));
            FUZZ_CHECK(alen <= FUZZ_LIMIT);
            if (text)
                FUZZ_CHECK(utf8_feed(UTF8_ACCEPT, a, alen) == UTF8_ACCEPT);
        }
    }
    free(a);
    free(b);
}

static void fuzz_round_trip(const uint8_t *data, size_t size)
{
    if (size > FUZZ_LIMIT)
        size = FUZZ_LIMIT;
    sbuf *plain = ws_frame_build(WS_OP_BINARY, data, size);
    if (!plain)
        return;
    sbuf *z = ws_deflate_frame(plain, 15, 0);
    if (z && z != plain) {
        ws_frame_header h;
        uint16_t code;
        /* the server's frame: unmasked, RSV1 set */
        if (ws_frame_parse_header_ext(z->data, z->len, false, WS_RSV1, UINT64_MAX, &h, &code) ==
                WS_PARSE_OK &&
            (h.rsv & WS_RSV1)) {
            uint8_t *out = NULL;
            size_t out_len = 0;
            uint16_t r = inflate_all(z->data + h.header_len, (size_t)h.payload_len, 0, false, &out,
                                     &out_len);
            if (r != 1011) {
                FUZZ_CHECK(r == 0);
                FUZZ_CHECK(out_len == size && (size == 0 || memcmp(out, data, size) == 0));
            }
            free(out);
        }
    }
    sbuf_unref(plain);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    switch (data[0] % 4) {
    case 0:
        fuzz_negotiate(data + 1, size - 1);
        break;
    case 1:
        fuzz_inflate(data + 1, size - 1, false);
        break;
    case 2:
        fuzz_inflate(data + 1, size - 1, true);
        break;
    default:
        fuzz_round_trip(data + 1, size - 1);
        break;
    }
    return 0;
}
