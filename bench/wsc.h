/* wsc: the WebSocket client side of RFC 6455 on top of conn: the opening handshake (with the
 * Sec-WebSocket-Accept check), frame parsing of server frames, pong and close replies, and
 * builders for masked client frames.
 *
 * For speed the benchmark builds its frames once and reuses the same masking key for each
 * copy (patching only the bytes that change, e.g. a timestamp, with wsc_mask_patch). RFC 6455
 * asks clients for a fresh key per frame to protect intermediaries; a server cannot tell the
 * difference, so this costs nothing in realism and saves masking every payload.
 *
 * TLS: a wss:// target runs the same over conn's TLS layer.
 *
 * permessage-deflate (RFC 7692), with --ws-deflate: every handshake offers
 * "permessage-deflate; client_max_window_bits" (what browsers offer); the client never
 * compresses what it sends (RFC 7692 allows that), and inflates what arrives with RSV1 set
 * before on_message. When the server answered server_no_context_takeover (chatd always
 * does), a message's compressed bytes depend on the message alone, so identical compressed
 * payloads are identical messages: a small cache keyed by the compressed bytes (compared in
 * full, not just hashed) inflates each distinct message once, the way the server compresses
 * a fan-out once; --inflate-all inflates every copy instead. Without
 * server_no_context_takeover each connection keeps its own inflate stream. */
#ifndef BENCH_WSC_H
#define BENCH_WSC_H

#include "bench.h"
#include "conn.h"

#include <stdint.h>

enum { WS_TEXT = 1, WS_BINARY = 2, WS_CLOSE = 8, WS_PING = 9, WS_PONG = 10 };

typedef struct wsc wsc;

typedef struct wsc_handlers {
    /* The handshake succeeded. */
    void (*on_open)(wsc *w);
    /* A complete text or binary message (payload unmasked, not NUL-terminated). */
    void (*on_message)(wsc *w, int opcode, char *payload, size_t len);
    /* The connection is gone: status 0 after wsc_close, else why (see wsc_strerror). */
    void (*on_end)(wsc *w, int status);
} wsc_handlers;

/* Errors of our own, below libuv's range. */
enum {
    WSC_ERR_HANDSHAKE = -100000, /* not a 101 with the right accept key */
    WSC_ERR_PROTOCOL,            /* bad frame from the server */
    WSC_ERR_FRAGMENTED,          /* fragmented message: not supported by the bench */
    WSC_ERR_CLOSED,              /* the server sent a close frame (code in close_code) */
};

struct wsc {
    bconn c; /* first, so a bconn * is a wsc * */
    const wsc_handlers *h;
    const target *t;
    bool open;
    bool close_sent;
    int close_code;      /* from the server's close frame, 0 if none */
    char accept[32];     /* expected Sec-WebSocket-Accept */
    char http_status[4]; /* of a refused handshake */
    uint8_t mask[4];
    void *user;
    long id;               /* free for the owner */
    bool deflate;          /* permessage-deflate agreed */
    bool deflate_snct;     /* ... with server_no_context_takeover */
    struct z_stream_s *zs; /* inflater of a connection with server context takeover */
};

/* permessage-deflate counters over all connections (since start, or the last reset). */
typedef struct wsc_deflate_stats {
    uint64_t conns;       /* handshakes that agreed to permessage-deflate */
    uint64_t refused;     /* handshakes where the offer was not taken */
    uint64_t compressed;  /* messages that arrived compressed (RSV1) */
    uint64_t plain;       /* messages that arrived uncompressed on a deflate connection */
    uint64_t inflated;    /* inflate runs (cache misses, or every message with --inflate-all) */
    uint64_t wire_bytes;  /* payload bytes of the compressed messages as received */
    uint64_t plain_bytes; /* their size once inflated */
} wsc_deflate_stats;
extern wsc_deflate_stats g_wsc_deflate;

/* Prepares w (once); h and t must outlive it. */
void wsc_init(wsc *w, const wsc_handlers *h, const target *t);
/* Connects and sends the opening handshake for t->path. Returns a libuv error only when no
 * socket could be created; later failures arrive as on_end. */
int wsc_connect(wsc *w, const struct sockaddr_in *src);
/* Sends a close frame (1000) and closes; with reset, closes by RST without a close frame. */
void wsc_close(wsc *w, bool reset);
/* Appends one masked frame of w's key carrying payload. */
void wsc_send(wsc *w, int opcode, const void *payload, size_t len);
const char *wsc_strerror(const wsc *w, int status);

/* Size of a client frame with a payload of len bytes. */
size_t wsc_frame_size(size_t len);
/* Writes a masked frame into dst (wsc_frame_size(len) bytes); returns the payload offset. */
size_t wsc_frame_build(char *dst, int opcode, const void *payload, size_t len,
                       const uint8_t mask[4]);
/* Overwrites n payload bytes at offset off of a frame built with mask, masking them. */
static inline void wsc_mask_patch(char *payload, size_t off, const char *src, size_t n,
                                  const uint8_t mask[4])
{
    for (size_t i = 0; i < n; i++)
        payload[off + i] = (char)((uint8_t)src[i] ^ mask[(off + i) & 3]);
}

#endif
