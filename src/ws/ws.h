/* ws: WebSocket connections (RFC 6455) after the handshake.
 *
 * Reads frames straight out of the loop's shared read buffer and unmasks them
 * in place; only fragmented messages are assembled in a per-connection
 * buffer (ws_extra), which exists only while a message is open. Enforces
 * every protocol rule with the close code RFC 6455 asks for (see
 * docs/API.md), the --max-message limit (1009), the heartbeat (ping after
 * --ping-interval of silence, close 1001 after --ping-timeout) and the
 * outgoing queue limit (--max-outbuf, close 1008).
 *
 * The application above (the gateway) plugs in through ws_app. The echo
 * endpoint is built in: it needs no application. */
#ifndef CHATD_WS_H
#define CHATD_WS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/sbuf.h"
#include "http/http.h"
#include "net/conn.h"

typedef struct ws_app {
    /* The handshake is done and the 101 queued. req is the upgrade request,
     * valid only during the call. */
    void (*on_open)(conn *c, http_request *req);
    /* A complete message: text (valid UTF-8) or binary. data is scratch
     * memory valid only during the call, NUL-terminated for text. */
    void (*on_message)(conn *c, bool is_text, uint8_t *data, size_t len);
    /* The connection is going away (any reason). */
    void (*on_close)(conn *c);
} ws_app;

/* State that only some connections need, allocated on demand and freed by
 * ws_extra_release when empty. */
struct ws_extra {
    uint8_t *frag; /* the open fragmented message */
    size_t frag_len, frag_cap;
    /* Payload bytes of the incomplete frame at the head of the connection's
     * input that are already unmasked and checked (text is validated as it
     * arrives); 0 when no frame is under way. */
    uint32_t rx_done;
    /* permessage-deflate (ws_deflate.h), when negotiated: the connection
     * then keeps its ws_extra for life */
    bool deflate;            /* agreed in the handshake */
    bool deflate_client_nct; /* client_no_context_takeover: no inflater kept between messages */
    bool msg_deflated;       /* the open message (or frame under way) has RSV1 */
    uint8_t deflate_server_bits, deflate_client_bits; /* LZ77 windows, 8..15 */
    struct z_stream_s *zin;    /* the inflater, NULL between messages or before the first */
    json_t *session;           /* gateway session (set_session), NULL when unset */
    struct group_link *groups; /* gateway groups this client is in */
    /* GatewayWorker compatibility (gwcompat/gw.h); unused otherwise */
    char *php_session; /* a PHP-serialized session, exclusive with `session` */
    uint32_t php_session_len;
    uint32_t gw_client_ip; /* the client's IPv4 address (0 for IPv6), for worker events */
    uint16_t gw_client_port;
    bool gw_connected;           /* its worker got ON_CONNECT */
    struct gw_worker *gw_worker; /* the BusinessWorker this client's events go to */
};

void ws_set_app(const ws_app *app);

/* Answers an upgrade request: 101 and a switch to the WebSocket protocol, or
 * 400 / 403 / 426 with the reason. echo selects the diagnostic echo. */
void ws_upgrade(http_request *req, bool echo);

/* Queues a shared, pre-built frame (the caller keeps its reference). A
 * connection whose queue is full is closed with 1008. Returns 0 when queued. */
int ws_send_frame(conn *c, sbuf *frame);
/* Frames and queues one text message. */
int ws_send_text(conn *c, const char *text, size_t len);
/* Serializes a JSON value (borrowed) and sends it as text. */
int ws_send_json(conn *c, const json_t *value);

/* Starts the closing handshake with a status code and reason. */
void ws_close(conn *c, uint16_t code, const char *reason);

/* Returns the conn's ws_extra, allocating it; NULL on OOM. */
ws_extra *ws_extra_get(conn *c);
/* Frees the ws_extra if nothing in it is in use. */
void ws_extra_release(conn *c);

#endif
