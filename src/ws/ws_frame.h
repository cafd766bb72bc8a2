/* ws_frame: the RFC 6455 frame codec, pure functions with no I/O.
 *
 * Why our own: fan-out needs a frame encoded once into a shared buffer and
 * written to many sockets (see core/sbuf.h); framing libraries encode per
 * connection. The codec is table-driven and has no knowledge of connections.
 *
 * Decoding is incremental: ws_frame_parse_header looks at the bytes buffered
 * so far and either needs more, rejects the frame with the close code the
 * connection must send, or reports the header. The caller then waits until
 * header_len + payload_len bytes are buffered and unmasks the payload. */
#ifndef CHATD_WS_FRAME_H
#define CHATD_WS_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/sbuf.h"

enum ws_opcode {
    WS_OP_CONTINUATION = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xA,
};

/* Close status codes used by chatd (RFC 6455 section 7.4.1). */
enum ws_close_code {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_PROTOCOL_ERROR = 1002,
    WS_CLOSE_UNSUPPORTED = 1003,
    WS_CLOSE_NO_STATUS = 1005, /* never sent on the wire */
    WS_CLOSE_ABNORMAL = 1006,  /* never sent on the wire */
    WS_CLOSE_INVALID_DATA = 1007,
    WS_CLOSE_POLICY = 1008,
    WS_CLOSE_TOO_BIG = 1009,
    WS_CLOSE_INTERNAL_ERROR = 1011,
};

/* Largest frame header: 2 bytes + 8 byte length + 4 byte mask. */
#define WS_FRAME_HEADER_MAX 14
/* Control frames carry at most 125 payload bytes (RFC 6455 5.5). */
#define WS_CONTROL_PAYLOAD_MAX 125

typedef struct ws_frame_header {
    bool fin;
    uint8_t rsv; /* RSV1..3 as bits 2..0 (RSV1 = 4: permessage-deflate) */
    uint8_t opcode;
    bool masked;
    uint8_t mask[4];
    uint64_t payload_len;
    size_t header_len; /* bytes the header occupies on the wire: 2..14 */
} ws_frame_header;

/* Result of ws_frame_parse_header. */
enum ws_parse_result {
    WS_PARSE_OK = 0,        /* *out is filled in */
    WS_PARSE_NEED_MORE = 1, /* fewer bytes than the header needs */
    WS_PARSE_ERROR = -1,    /* *close_code says why (1002 or 1009) */
};

/* Parses one frame header from buf[0..len).
 * Rules enforced, each answered with *close_code:
 *  - any RSV bit set -> 1002; unknown opcode (3-7, 0xB-0xF) -> 1002
 *  - a control frame with FIN clear or payload > 125 -> 1002
 *  - require_mask and the MASK bit clear -> 1002 (client frames must be masked)
 *  - 64-bit length with the top bit set -> 1002 (RFC 6455 5.2)
 *  - payload_len > max_payload -> 1009
 * Non-minimal length encodings are accepted, as RFC 6455 does not forbid them. */
int ws_frame_parse_header(const uint8_t *buf, size_t len, bool require_mask, uint64_t max_payload,
                          ws_frame_header *out, uint16_t *close_code);
/* The same, for a connection with extensions: the RSV bits in rsv_allowed
 * may be set on the first frame of a data message (not on a control frame or
 * a continuation, where they are still 1002). */
int ws_frame_parse_header_ext(const uint8_t *buf, size_t len, bool require_mask,
                              uint8_t rsv_allowed, uint64_t max_payload, ws_frame_header *out,
                              uint16_t *close_code);

/* XORs len bytes with the 4-byte key, starting at key position (offset % 4),
 * so a payload can be unmasked in pieces. Works in place. */
void ws_mask_apply(uint8_t *data, size_t len, const uint8_t mask[4], size_t offset);

/* Writes a frame header (FIN set when fin) into out, which must have
 * WS_FRAME_HEADER_MAX bytes; mask may be NULL for server frames.
 * Returns the header length. Uses the shortest length encoding. */
size_t ws_frame_header_encode(uint8_t *out, bool fin, uint8_t opcode, uint64_t payload_len,
                              const uint8_t *mask);

/* Builds one complete unmasked server frame (FIN set) into a new sbuf with one
 * reference owned by the caller: the buffer fan-out shares. NULL on OOM. */
sbuf *ws_frame_build(uint8_t opcode, const void *payload, size_t len);

/* Builds a close frame with a status code and a reason (truncated so the
 * payload stays within 125 bytes, never in the middle of a UTF-8 sequence).
 * code 0 means an empty close payload. */
sbuf *ws_frame_build_close(uint16_t code, const char *reason);

/* True for opcodes RFC 6455 defines (0, 1, 2, 8, 9, 10). */
bool ws_opcode_is_known(uint8_t opcode);
static inline bool ws_opcode_is_control(uint8_t opcode)
{
    return (opcode & 0x8) != 0;
}

/* True when a peer may send this code in a close frame: 1000-1003, 1007-1011,
 * 3000-4999 (RFC 6455 7.4 and the IANA registry); 1004-1006, 1015, codes
 * below 1000 and 1012-2999 are rejected. */
bool ws_close_code_is_valid(uint16_t code);

#endif
