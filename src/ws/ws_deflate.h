/* ws_deflate: permessage-deflate (RFC 7692) for WebSocket connections.
 *
 * Three pieces, none of which knows about connections:
 *  - negotiation: picks the first acceptable offer of a
 *    Sec-WebSocket-Extensions header and writes the answer;
 *  - compression, once per shared frame: chatd always answers
 *    server_no_context_takeover, so a message compresses to the same bytes for
 *    every recipient with the same window size. The compressed frame is built
 *    lazily, the first time a deflate connection sends the plain frame, and
 *    hangs off the plain sbuf (its `alt` chain) until the last reference to
 *    it goes; every other deflate recipient queues the same bytes. No
 *    per-connection compressor exists: one deflate stream per window size
 *    serves the whole (single-threaded) loop;
 *  - inflation in bounded steps into a caller's buffer that never grows past
 *    the message limit, so a zip bomb is refused (1009) having cost at most
 *    --max-message bytes.
 *
 * Threading: the loop thread only (the shared streams are static). */
#ifndef CHATD_WS_DEFLATE_H
#define CHATD_WS_DEFLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/sbuf.h"

struct z_stream_s;

/* The RSV1 bit in a frame header's rsv field: "this message is compressed". */
#define WS_RSV1 0x4

/* What one accepted offer agreed to. */
typedef struct ws_deflate_params {
    bool client_no_context_takeover; /* the client resets its window per message */
    uint8_t server_bits;             /* window we compress with (9..15; 8 is done as 9) */
    uint8_t client_bits;             /* window the client compresses with (8..15) */
} ws_deflate_params;

/* Longest answer ws_deflate_negotiate writes, with its NUL. */
#define WS_DEFLATE_ANSWER_MAX 160

/* Looks through a Sec-WebSocket-Extensions value (NULL: none) for the first
 * permessage-deflate offer chatd can accept. An offer with an unknown
 * parameter, a duplicate one, a missing or invalid value (window bits other
 * than 8..15, quoted or not) is declined and the next is tried, as RFC 7692
 * section 5 asks. Returns true and fills *p and answer (the value of the
 * response's Sec-WebSocket-Extensions) when one is accepted. */
bool ws_deflate_negotiate(const char *header, ws_deflate_params *p,
                          char answer[WS_DEFLATE_ANSWER_MAX]);

/* The frame a deflate connection with window `bits` should queue for the
 * shared plain frame: the compressed twin (built on first use and owned by
 * plain), or plain itself for control frames, fragments, payloads under
 * threshold, incompressible payloads and on OOM. Borrowed: valid as long as
 * the caller's reference to plain. */
sbuf *ws_deflate_frame(sbuf *plain, int bits, size_t threshold);

/* Inflates in[0..len) with zs, appending to *buf (len *blen, capacity
 * *bcap), which grows in steps and never past limit + 2 bytes: one byte over
 * the limit proves the message too big, one more holds a NUL. With tail, the
 * 00 00 FF FF that the sender stripped (RFC 7692 7.2.2) is fed after in.
 * When utf8 is not NULL the new output is validated as it comes (a
 * utf8_feed state). Returns 0, 1009 (past limit), 1007 (invalid UTF-8 or
 * corrupt compressed data) or 1011 (OOM). */
uint16_t ws_deflate_inflate(struct z_stream_s *zs, const uint8_t *in, size_t len, bool tail,
                            uint8_t **buf, size_t *blen, size_t *bcap, size_t limit, uint8_t *utf8);

/* A raw inflate stream for a window of `bits`, or NULL on OOM; free with
 * ws_deflate_inflater_free (NULL is fine). */
struct z_stream_s *ws_deflate_inflater_new(int bits);
void ws_deflate_inflater_free(struct z_stream_s *zs);

/* One inflate stream the loop shares for messages that arrive whole in one
 * frame from clients without context takeover; reset before it is returned. */
struct z_stream_s *ws_deflate_shared_inflater(void);

#endif
