/* ws_frame: RFC 6455 frame header parsing and encoding, payload masking and
 * whole-frame building into shared buffers (see ws_frame.h).
 *
 * Parsing rejects a frame as soon as the bytes that prove it bad have
 * arrived, rather than after the whole header: a peer sending garbage is cut
 * off at its first byte, and a truncated prefix of a valid header is always
 * NEED_MORE. */
#include "ws/ws_frame.h"

#include <string.h>

#include "ws/utf8.h"

/* Indexed by the 4-bit opcode: RFC 6455 5.2 reserves 3-7 and 0xB-0xF for
 * future use, and an endpoint must fail on them as no extension gives them a
 * meaning here. */
static const bool ws_frame_opcode_known[16] = {
    [WS_OP_CONTINUATION] = true, [WS_OP_TEXT] = true, [WS_OP_BINARY] = true,
    [WS_OP_CLOSE] = true,        [WS_OP_PING] = true, [WS_OP_PONG] = true,
};

/* The close reason must leave room for the 2-byte status code within the
 * 125-byte control payload. */
#define WS_FRAME_CLOSE_REASON_MAX (WS_CONTROL_PAYLOAD_MAX - 2)

bool ws_opcode_is_known(uint8_t opcode)
{
    return opcode < 16 && ws_frame_opcode_known[opcode];
}

bool ws_close_code_is_valid(uint16_t code)
{
    /* The ranges ws_frame.h promises. 1004 is reserved and 1005/1006/1015
     * are local-only pseudo codes. IANA has since registered 1012-1014, but
     * RFC 6455 does not define them and Autobahn releases test some of them
     * as invalid, so the whole 1012-2999 block is refused. */
    if (code >= 1000 && code <= 1003)
        return true;
    if (code >= 1007 && code <= 1011)
        return true;
    return code >= 3000 && code <= 4999;
}

static int ws_frame_fail(uint16_t *close_code, uint16_t code)
{
    *close_code = code;
    return WS_PARSE_ERROR;
}

int ws_frame_parse_header(const uint8_t *buf, size_t len, bool require_mask, uint64_t max_payload,
                          ws_frame_header *out, uint16_t *close_code)
{
    return ws_frame_parse_header_ext(buf, len, require_mask, 0, max_payload, out, close_code);
}

int ws_frame_parse_header_ext(const uint8_t *buf, size_t len, bool require_mask,
                              uint8_t rsv_allowed, uint64_t max_payload, ws_frame_header *out,
                              uint16_t *close_code)
{
    if (len < 1)
        return WS_PARSE_NEED_MORE;

    /* Byte 0: everything about the frame's kind is known from here. */
    bool fin = (buf[0] & 0x80) != 0;
    uint8_t rsv = (uint8_t)((buf[0] >> 4) & 0x7);
    uint8_t opcode = buf[0] & 0x0F;
    if (!ws_opcode_is_known(opcode))
        return ws_frame_fail(close_code, WS_CLOSE_PROTOCOL_ERROR);
    bool control = ws_opcode_is_control(opcode);
    /* an extension's bits mark a message, so only its first frame has them */
    if ((rsv & ~rsv_allowed) || (rsv && (control || opcode == WS_OP_CONTINUATION)))
        return ws_frame_fail(close_code, WS_CLOSE_PROTOCOL_ERROR);
    if (control && !fin)
        return ws_frame_fail(close_code, WS_CLOSE_PROTOCOL_ERROR);

    if (len < 2)
        return WS_PARSE_NEED_MORE;
    bool masked = (buf[1] & 0x80) != 0;
    uint8_t len7 = buf[1] & 0x7F;
    if (require_mask && !masked)
        return ws_frame_fail(close_code, WS_CLOSE_PROTOCOL_ERROR);

    size_t ext_len = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
    size_t need = 2 + ext_len;
    if (len < need)
        return WS_PARSE_NEED_MORE;

    uint64_t payload_len = len7;
    if (ext_len) {
        payload_len = 0;
        for (size_t i = 0; i < ext_len; i++)
            payload_len = (payload_len << 8) | buf[2 + i];
    }
    /* RFC 6455 5.2: the most significant bit of a 64-bit length MUST be 0. */
    if (ext_len == 8 && (payload_len >> 63) != 0)
        return ws_frame_fail(close_code, WS_CLOSE_PROTOCOL_ERROR);
    /* Checked on the decoded value, so a control frame using a non-minimal
     * length encoding of a short payload is accepted like any other. */
    if (control && payload_len > WS_CONTROL_PAYLOAD_MAX)
        return ws_frame_fail(close_code, WS_CLOSE_PROTOCOL_ERROR);
    if (payload_len > max_payload)
        return ws_frame_fail(close_code, WS_CLOSE_TOO_BIG);

    if (masked)
        need += 4;
    if (len < need)
        return WS_PARSE_NEED_MORE;

    out->fin = fin;
    out->rsv = rsv;
    out->opcode = opcode;
    out->masked = masked;
    if (masked)
        memcpy(out->mask, buf + 2 + ext_len, 4);
    else
        memset(out->mask, 0, sizeof(out->mask));
    out->payload_len = payload_len;
    out->header_len = need;
    return WS_PARSE_OK;
}

void ws_mask_apply(uint8_t *data, size_t len, const uint8_t mask[4], size_t offset)
{
    /* The key as seen from data[0], repeated to 8 bytes; 8 is a multiple of
     * 4, so the key phase is the same at the start of every 8-byte block.
     * memcpy keeps the word accesses free of alignment and aliasing UB and
     * compiles to plain loads and stores. */
    uint8_t key8[8];
    for (size_t i = 0; i < sizeof(key8); i++)
        key8[i] = mask[(offset + i) & 3];
    uint64_t k;
    memcpy(&k, key8, sizeof(k));

    size_t i = 0;
    for (; len - i >= 32; i += 32) {
        uint64_t w[4];
        memcpy(w, data + i, sizeof(w));
        w[0] ^= k;
        w[1] ^= k;
        w[2] ^= k;
        w[3] ^= k;
        memcpy(data + i, w, sizeof(w));
    }
    for (; len - i >= 8; i += 8) {
        uint64_t w;
        memcpy(&w, data + i, sizeof(w));
        w ^= k;
        memcpy(data + i, &w, sizeof(w));
    }
    for (; i < len; i++)
        data[i] ^= key8[i & 7];
}

size_t ws_frame_header_encode(uint8_t *out, bool fin, uint8_t opcode, uint64_t payload_len,
                              const uint8_t *mask)
{
    size_t n = 0;
    out[n++] = (uint8_t)((fin ? 0x80 : 0x00) | (opcode & 0x0F));
    uint8_t mask_bit = mask ? 0x80 : 0x00;
    if (payload_len <= 125) {
        out[n++] = (uint8_t)(mask_bit | payload_len);
    } else if (payload_len <= 0xFFFF) {
        out[n++] = (uint8_t)(mask_bit | 126);
        out[n++] = (uint8_t)(payload_len >> 8);
        out[n++] = (uint8_t)payload_len;
    } else {
        out[n++] = (uint8_t)(mask_bit | 127);
        for (int shift = 56; shift >= 0; shift -= 8)
            out[n++] = (uint8_t)(payload_len >> shift);
    }
    if (mask) {
        memcpy(out + n, mask, 4);
        n += 4;
    }
    return n;
}

sbuf *ws_frame_build(uint8_t opcode, const void *payload, size_t len)
{
    uint8_t hdr[WS_FRAME_HEADER_MAX];
    size_t hlen = ws_frame_header_encode(hdr, true, opcode, len, NULL);
    if (len > SIZE_MAX - hlen)
        return NULL;
    /* sbuf_new refuses sizes its 32-bit length cannot hold. */
    sbuf *b = sbuf_new(hlen + len);
    if (!b)
        return NULL;
    memcpy(b->data, hdr, hlen);
    if (len)
        memcpy(b->data + hlen, payload, len);
    b->len = (uint32_t)(hlen + len);
    return b;
}

/* Length of the longest prefix of the C string reason, at most max bytes,
 * that ends on a character boundary of valid UTF-8. Stopping at the first
 * invalid byte, not only backing up over continuation bytes, keeps the close
 * frame acceptable to a peer that validates reasons (RFC 6455 7.1.6 requires
 * UTF-8) even when the caller passed a bad one. */
static size_t ws_frame_reason_prefix(const char *reason, size_t max)
{
    uint32_t state = UTF8_ACCEPT;
    size_t good = 0;
    for (size_t i = 0; i < max && reason[i] != '\0'; i++) {
        uint8_t byte = (uint8_t)reason[i];
        state = utf8_feed(state, &byte, 1);
        if (state == UTF8_REJECT)
            break;
        if (state == UTF8_ACCEPT)
            good = i + 1;
    }
    return good;
}

sbuf *ws_frame_build_close(uint16_t code, const char *reason)
{
    uint8_t payload[WS_CONTROL_PAYLOAD_MAX];
    size_t n = 0;
    /* A reason cannot travel without a code (RFC 6455 5.5.1), so code 0
     * drops it. */
    if (code != 0) {
        payload[n++] = (uint8_t)(code >> 8);
        payload[n++] = (uint8_t)code;
        if (reason) {
            size_t keep = ws_frame_reason_prefix(reason, WS_FRAME_CLOSE_REASON_MAX);
            memcpy(payload + n, reason, keep);
            n += keep;
        }
    }
    return ws_frame_build(WS_OP_CLOSE, payload, n);
}
