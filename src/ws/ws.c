/* ws: WebSocket connection protocol, frames to messages (see ws.h). */
#include "ws/ws.h"

#include <http_parser.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "core/metrics.h"
#include "net/server.h"
#include "ws/utf8.h"
#include "ws/ws_deflate.h"
#include "ws/ws_frame.h"
#include "ws/ws_handshake.h"

/* Seconds a closing connection waits for its queue to drain and the peer's
 * close before the socket is dropped. */
#define CLOSE_GRACE_MS 2000

static const ws_app *gateway_app;
static sbuf *ping_frame; /* one empty ping shared by every heartbeat */

static const conn_handler ws_conn_handler;

void ws_set_app(const ws_app *app)
{
    gateway_app = app;
}

/* ---- ws_extra ---------------------------------------------------------- */

ws_extra *ws_extra_get(conn *c)
{
    if (!c->wsx)
        c->wsx = calloc(1, sizeof(*c->wsx));
    return c->wsx;
}

void ws_extra_release(conn *c)
{
    ws_extra *x = c->wsx;
    if (!x || x->frag || x->rx_done || x->deflate || x->session || x->groups || x->php_session ||
        x->gw_worker)
        return;
    free(x);
    c->wsx = NULL;
}

static void frag_reset(conn *c)
{
    c->flags &= ~CONN_WS_IN_FRAGMENT;
    c->utf8_state = UTF8_ACCEPT;
    if (c->wsx) {
        free(c->wsx->frag);
        c->wsx->frag = NULL;
        c->wsx->frag_len = c->wsx->frag_cap = 0;
        c->wsx->rx_done = 0;
        c->wsx->msg_deflated = false;
        if (c->wsx->deflate_client_nct) { /* the next message starts afresh */
            ws_deflate_inflater_free(c->wsx->zin);
            c->wsx->zin = NULL;
        }
        ws_extra_release(c);
    }
}

/* ---- sending ----------------------------------------------------------- */

static void close_for_overflow(conn *c)
{
    log_info("client %s: send queue over %lld bytes, closing (1008)", c->client_id,
             (long long)conn_server(c)->cfg->max_outbuf);
    conn_drop_pending(c);
    metrics_slow_close(METRICS_SLOW_WEBSOCKET);
    ws_close(c, WS_CLOSE_POLICY, "send queue full: reader too slow");
}

int ws_send_frame(conn *c, sbuf *frame)
{
    if (c->flags & (CONN_WS_CLOSE_SENT | CONN_CLOSING))
        return -1;
    if (c->wsx && c->wsx->deflate) /* the shared compressed twin, built once */
        frame = ws_deflate_frame(frame, c->wsx->deflate_server_bits,
                                 (size_t)conn_server(c)->cfg->ws_deflate_threshold);
    int r = conn_send(c, frame);
    metrics_ws_sent(frame, r == CONN_SEND_OK);
    if (r == CONN_SEND_OVERFLOW) {
        close_for_overflow(c);
        return -1;
    }
    return r == CONN_SEND_OK ? 0 : -1;
}

int ws_send_text(conn *c, const char *text, size_t len)
{
    sbuf *frame = ws_frame_build(WS_OP_TEXT, text, len);
    if (!frame)
        return -1;
    int r = ws_send_frame(c, frame);
    sbuf_unref(frame);
    return r;
}

int ws_send_json(conn *c, const json_t *value)
{
    char *text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text)
        return -1;
    int r = ws_send_text(c, text, strlen(text));
    free(text);
    return r;
}

void ws_close(conn *c, uint16_t code, const char *reason)
{
    if (c->flags & (CONN_WS_CLOSE_SENT | CONN_CLOSING))
        return;
    c->flags |= CONN_WS_CLOSE_SENT;
    metrics_ws_close(code, (c->flags & CONN_WS_CLOSE_RECV) != 0);
    sbuf *frame = ws_frame_build_close(code, reason);
    if (frame) {
        conn_send_force(c, frame);
        sbuf_unref(frame);
    }
    conn_close_after_write(c, CLOSE_GRACE_MS);
}

/* ---- receiving --------------------------------------------------------- */

static void deliver_message(conn *c, bool is_text, uint8_t *data, size_t len)
{
    metrics_ws_message_in();
    if (c->flags & CONN_WS_ECHO) {
        sbuf *frame = ws_frame_build(is_text ? WS_OP_TEXT : WS_OP_BINARY, data, len);
        if (frame) {
            ws_send_frame(c, frame);
            sbuf_unref(frame);
        }
        return;
    }
    if (gateway_app && gateway_app->on_message)
        gateway_app->on_message(c, is_text, data, len);
}

static void handle_close_frame(conn *c, uint8_t *payload, size_t len)
{
    c->flags |= CONN_WS_CLOSE_RECV;
    if (c->flags & CONN_WS_CLOSE_SENT) {
        conn_close_after_write(c, 1000); /* our close was answered */
        return;
    }
    if (len == 0) {
        ws_close(c, WS_CLOSE_NORMAL, NULL);
        return;
    }
    uint16_t code = len >= 2 ? (uint16_t)(payload[0] << 8 | payload[1]) : 0;
    if (len == 1 || !ws_close_code_is_valid(code)) {
        ws_close(c, WS_CLOSE_PROTOCOL_ERROR, "invalid close code");
        return;
    }
    if (!utf8_is_valid(payload + 2, len - 2)) {
        ws_close(c, WS_CLOSE_INVALID_DATA, "close reason is not valid UTF-8");
        return;
    }
    ws_close(c, code, NULL); /* echo the status code, as RFC 6455 5.5.1 asks */
}

static void handle_control(conn *c, const ws_frame_header *h, uint8_t *payload)
{
    switch (h->opcode) {
    case WS_OP_PING: {
        sbuf *pong = ws_frame_build(WS_OP_PONG, payload, (size_t)h->payload_len);
        if (pong) {
            ws_send_frame(c, pong);
            sbuf_unref(pong);
        }
        break;
    }
    case WS_OP_PONG:
        c->flags &= ~CONN_WS_PING_SENT;
        break;
    case WS_OP_CLOSE:
        handle_close_frame(c, payload, (size_t)h->payload_len);
        break;
    }
}

/* Adds one fragment, already unmasked and validated, to the open message;
 * returns a close code or 0. */
static uint16_t frag_append(conn *c, const uint8_t *payload, size_t len)
{
    ws_extra *x = ws_extra_get(c);
    if (!x)
        return WS_CLOSE_INTERNAL_ERROR;
    if (x->frag_len + len > (size_t)conn_server(c)->cfg->max_message)
        return WS_CLOSE_TOO_BIG; /* also when the limit was lowered mid-message */
    if (x->frag_len + len + 1 > x->frag_cap) {
        size_t cap = x->frag_cap ? x->frag_cap : 4096;
        while (cap < x->frag_len + len + 1)
            cap *= 2;
        uint8_t *frag = realloc(x->frag, cap);
        if (!frag)
            return WS_CLOSE_INTERNAL_ERROR;
        x->frag = frag;
        x->frag_cap = cap;
    }
    memcpy(x->frag + x->frag_len, payload, len);
    x->frag_len += len;
    return 0;
}

/* The order rules of RFC 6455 5.4: a continuation only inside a fragmented
 * message, a new message only outside one. Checked as soon as the header is
 * there, so a partial frame out of order fails at once too. */
static uint16_t check_order(conn *c, const ws_frame_header *h)
{
    bool in_fragment = (c->flags & CONN_WS_IN_FRAGMENT) != 0;
    if ((h->opcode == WS_OP_CONTINUATION) != in_fragment)
        return WS_CLOSE_PROTOCOL_ERROR;
    return 0;
}

/* True when the frame's payload is text: its own opcode, or the open
 * message's for a continuation. */
static bool frame_is_text(const conn *c, const ws_frame_header *h)
{
    uint8_t op = h->opcode == WS_OP_CONTINUATION ? c->msg_opcode : h->opcode;
    return op == WS_OP_TEXT;
}

/* Payload bytes of the frame at the head of the input already unmasked and
 * checked by an earlier read (the frame was then incomplete). */
static size_t rx_done(const conn *c)
{
    return c->wsx ? c->wsx->rx_done : 0;
}

/* Unmasks and checks payload[from..to) of a text frame: the bytes of a text
 * message are validated as they arrive, each once, in whole and partial
 * frames alike. The first frame of a message starts a fresh validator; a
 * continuation carries it on. Returns 1007 at the first invalid byte, else 0. */
static uint16_t text_progress(conn *c, const ws_frame_header *h, uint8_t *payload, size_t from,
                              size_t to)
{
    if (from == 0 && h->opcode != WS_OP_CONTINUATION)
        c->utf8_state = UTF8_ACCEPT;
    ws_mask_apply(payload + from, to - from, h->mask, from);
    c->utf8_state = (uint8_t)utf8_feed(c->utf8_state, payload + from, to - from);
    return c->utf8_state == UTF8_REJECT ? WS_CLOSE_INVALID_DATA : 0;
}

/* True when the frame's payload is compressed: RSV1 on the first frame of
 * its message, carried for the continuations. */
static bool frame_deflated(const conn *c, const ws_frame_header *h)
{
    if (h->opcode == WS_OP_CONTINUATION)
        return c->wsx && c->wsx->msg_deflated;
    return (h->rsv & WS_RSV1) != 0;
}

/* Unmasks and inflates payload[from..to) of a compressed frame into the
 * message buffer (ws_extra.frag), validating text as it comes out; with
 * tail, the message ends here. Inflation stops at --max-message (1009). */
static uint16_t deflate_progress(conn *c, const ws_frame_header *h, uint8_t *payload, size_t from,
                                 size_t to, bool tail)
{
    ws_extra *x = c->wsx;
    if (from == 0 && h->opcode != WS_OP_CONTINUATION) {
        x->msg_deflated = true;
        c->utf8_state = UTF8_ACCEPT;
    }
    if (!x->zin && !(x->zin = ws_deflate_inflater_new(x->deflate_client_bits)))
        return WS_CLOSE_INTERNAL_ERROR;
    ws_mask_apply(payload + from, to - from, h->mask, from);
    bool is_text = frame_is_text(c, h);
    return ws_deflate_inflate(x->zin, payload + from, to - from, tail, &x->frag, &x->frag_len,
                              &x->frag_cap, (size_t)conn_server(c)->cfg->max_message,
                              is_text ? &c->utf8_state : NULL);
}

/* A whole compressed message in one frame, all of it buffered: inflated in
 * one go into a buffer the loop shares, with the loop's shared inflater when
 * the client keeps no context (nothing is allocated per connection). */
static uint16_t deliver_deflated(conn *c, const ws_frame_header *h, uint8_t *payload)
{
    static uint8_t *buf;
    static size_t cap;
    ws_extra *x = c->wsx;
    size_t len = (size_t)h->payload_len, out = 0;
    bool is_text = h->opcode == WS_OP_TEXT;
    ws_mask_apply(payload, len, h->mask, 0);
    struct z_stream_s *zs = x->deflate_client_nct ? ws_deflate_shared_inflater() : x->zin;
    if (!zs && !(zs = x->zin = ws_deflate_inflater_new(x->deflate_client_bits)))
        return WS_CLOSE_INTERNAL_ERROR;
    c->utf8_state = UTF8_ACCEPT;
    uint16_t code = ws_deflate_inflate(zs, payload, len, true, &buf, &out, &cap,
                                       (size_t)conn_server(c)->cfg->max_message,
                                       is_text ? &c->utf8_state : NULL);
    if (!code && is_text && c->utf8_state != UTF8_ACCEPT)
        code = WS_CLOSE_INVALID_DATA;
    if (code)
        return code;
    buf[out] = '\0';
    deliver_message(c, is_text, buf, out);
    if (cap > 65536) { /* keep a small buffer between messages, not the largest one */
        free(buf);
        buf = NULL;
        cap = 0;
    }
    return 0;
}

/* A data frame whose header and first `avail` payload bytes are buffered,
 * but not all of it. Text is unmasked and validated now, and the progress is
 * kept in ws_extra, so invalid UTF-8 fails the connection before the rest of
 * the frame is sent (Autobahn 6.4.x) and no byte is validated twice. Binary
 * waits until the frame is complete. Returns a close code or 0. */
static uint16_t handle_partial(conn *c, const ws_frame_header *h, uint8_t *payload, size_t avail)
{
    uint16_t code = check_order(c, h);
    if (code)
        return code;
    size_t done = rx_done(c);
    bool deflated = frame_deflated(c, h);
    if ((!frame_is_text(c, h) && !deflated) || avail <= done)
        return 0;
    ws_extra *x = ws_extra_get(c);
    if (!x)
        return WS_CLOSE_INTERNAL_ERROR;
    if (deflated)
        code = deflate_progress(c, h, payload, done, avail, false);
    else
        code = text_progress(c, h, payload, done, avail);
    x->rx_done = (uint32_t)avail;
    return code;
}

/* Hands over the message assembled in ws_extra.frag and resets for the
 * next one. */
static void deliver_assembled(conn *c, bool is_text)
{
    ws_extra *x = c->wsx;
    x->frag[x->frag_len] = '\0';
    uint8_t *msg = x->frag;
    size_t msg_len = x->frag_len;
    x->frag = NULL; /* the message is ours now; frag_reset must not free it */
    x->frag_len = x->frag_cap = 0;
    frag_reset(c);
    deliver_message(c, is_text, msg, msg_len);
    free(msg);
}

/* A complete compressed frame, of which the first `done` payload bytes were
 * inflated while it arrived. */
static uint16_t handle_deflated(conn *c, const ws_frame_header *h, uint8_t *payload, size_t done)
{
    bool first = h->opcode != WS_OP_CONTINUATION;
    if (first && h->fin && done == 0)
        return deliver_deflated(c, h, payload);
    uint16_t code = deflate_progress(c, h, payload, done, (size_t)h->payload_len, h->fin);
    if (code)
        return code;
    if (first) {
        c->flags |= CONN_WS_IN_FRAGMENT;
        c->msg_opcode = h->opcode;
    }
    if (!h->fin)
        return 0;
    bool is_text = c->msg_opcode == WS_OP_TEXT;
    if (is_text && c->utf8_state != UTF8_ACCEPT)
        return WS_CLOSE_INVALID_DATA;
    if (!c->wsx->frag) { /* an empty message allocated nothing */
        c->wsx->frag = malloc(1);
        if (!c->wsx->frag)
            return WS_CLOSE_INTERNAL_ERROR;
    }
    deliver_assembled(c, is_text);
    return 0;
}

/* Handles one complete data frame; returns a close code to fail with, or 0. */
static uint16_t handle_data(conn *c, const ws_frame_header *h, uint8_t *payload)
{
    size_t len = (size_t)h->payload_len;
    uint16_t code = check_order(c, h);
    if (code)
        return code;
    bool is_text = frame_is_text(c, h);
    size_t done = rx_done(c);
    if (c->wsx)
        c->wsx->rx_done = 0; /* the frame is consumed whatever follows */
    if (frame_deflated(c, h))
        return handle_deflated(c, h, payload, done);
    if (is_text) {
        code = text_progress(c, h, payload, done, len);
        if (code)
            return code;
    } else {
        ws_mask_apply(payload, len, h->mask, 0);
    }

    if (h->opcode != WS_OP_CONTINUATION && h->fin) {
        /* the common case: a whole message in one frame, delivered in place */
        if (is_text && c->utf8_state != UTF8_ACCEPT)
            return WS_CLOSE_INVALID_DATA;
        ws_extra_release(c);
        uint8_t saved = payload[len]; /* NUL-terminate inside the read buffer */
        payload[len] = '\0';
        deliver_message(c, is_text, payload, len);
        payload[len] = saved;
        return 0;
    }
    if (h->opcode != WS_OP_CONTINUATION) {
        c->flags |= CONN_WS_IN_FRAGMENT;
        c->msg_opcode = h->opcode;
    }
    code = frag_append(c, payload, len);
    if (code)
        return code;
    if (!h->fin)
        return 0;
    if (is_text && c->utf8_state != UTF8_ACCEPT)
        return WS_CLOSE_INVALID_DATA;
    deliver_assembled(c, is_text);
    return 0;
}

static void fail(conn *c, uint16_t code)
{
    static const char *const reasons[] = {
        [0] = "protocol error",  /* 1002 */
        [5] = "invalid UTF-8",   /* 1007 */
        [7] = "message too big", /* 1009 */
    };
    const char *reason = "error";
    if (code >= 1002 && code <= 1009 && reasons[code - 1002])
        reason = reasons[code - 1002];
    log_debug("client %s: failing connection with %u (%s)", c->client_id, code, reason);
    frag_reset(c);
    ws_close(c, code, reason);
}

static size_t ws_on_read(conn *c, uint8_t *data, size_t len)
{
    const config *cfg = conn_server(c)->cfg;
    size_t off = 0;
    while (off < len) {
        if (c->flags & (CONN_CLOSING | CONN_WS_CLOSE_RECV))
            return len;
        /* a frame's handler paused reads (a BusinessWorker's queue is full):
         * the rest waits in c->in until conn_resume_read hands it back, so a
         * pause holds at a frame, whatever one read brought */
        if (c->flags & CONN_READ_PAUSED)
            break;
        bool closing = (c->flags & CONN_WS_CLOSE_SENT) != 0;
        bool deflate = c->wsx && c->wsx->deflate;
        uint64_t max_payload = (uint64_t)cfg->max_message;
        if ((c->flags & CONN_WS_IN_FRAGMENT) && c->wsx) {
            /* --max-message may have been lowered (SIGHUP) below what this
             * message already holds: then nothing more fits (never wrap) */
            max_payload = c->wsx->frag_len < max_payload ? max_payload - c->wsx->frag_len : 0;
        }
        /* A compressed frame is bounded by what it inflates to; its own size
         * only by the limit plus deflate's worst-case growth. */
        uint64_t wire_max = deflate ? (uint64_t)cfg->max_message * 2 + 1024 : max_payload;
        ws_frame_header h;
        uint16_t code = 0;
        int r = ws_frame_parse_header_ext(data + off, len - off, true, deflate ? WS_RSV1 : 0,
                                          wire_max, &h, &code);
        if (r == WS_PARSE_OK && h.payload_len > max_payload && !ws_opcode_is_control(h.opcode) &&
            !frame_deflated(c, &h)) {
            r = WS_PARSE_ERROR;
            code = WS_CLOSE_TOO_BIG;
        }
        if (r == WS_PARSE_NEED_MORE)
            break;
        if (r == WS_PARSE_ERROR) {
            if (!closing)
                fail(c, code);
            return len;
        }
        uint8_t *payload = data + off + h.header_len;
        bool control = ws_opcode_is_control(h.opcode);
        if (len - off < h.header_len + h.payload_len) {
            /* wait for the whole frame, checking what is there of a data one */
            if (!control && !closing) {
                code = handle_partial(c, &h, payload, len - off - h.header_len);
                if (code) {
                    fail(c, code);
                    return len;
                }
            }
            break;
        }
        size_t frame_len = h.header_len + (size_t)h.payload_len;
        metrics_ws_frame_in(frame_len);
        if (control) {
            ws_mask_apply(payload, (size_t)h.payload_len, h.mask, 0);
            handle_control(c, &h, payload);
        } else if (!closing) {
            code = handle_data(c, &h, payload);
            if (code) {
                fail(c, code);
                return len;
            }
        }
        off += frame_len;
    }
    return off;
}

/* Heartbeat: one deadline per connection in the server's wheel. */
static void ws_on_deadline(conn *c)
{
    server *srv = conn_server(c);
    const config *cfg = srv->cfg;
    uint32_t idle = server_now_ms(srv) - c->last_rx;
    uint32_t interval = (uint32_t)cfg->ping_interval * 1000;
    uint32_t timeout = (uint32_t)cfg->ping_timeout * 1000;
    uint32_t next;
    if (idle >= timeout) {
        log_debug("client %s: heartbeat timeout", c->client_id);
        ws_close(c, WS_CLOSE_GOING_AWAY, "heartbeat timeout");
        return;
    }
    if (idle >= interval) {
        if (!(c->flags & CONN_WS_PING_SENT)) {
            c->flags |= CONN_WS_PING_SENT;
            ws_send_frame(c, ping_frame);
        }
        next = timeout - idle;
    } else {
        next = interval - idle;
    }
    conn_set_deadline(c, next);
}

static void ws_start(conn *c, http_request *req)
{
    c->flags |= CONN_WS;
    metrics_conn_open(METRICS_CONN_WEBSOCKET);
    c->utf8_state = UTF8_ACCEPT;
    conn_set_deadline(c, (uint32_t)conn_server(c)->cfg->ping_interval * 1000);
    if (!(c->flags & CONN_WS_ECHO) && gateway_app && gateway_app->on_open)
        gateway_app->on_open(c, req);
}

static void ws_on_close(conn *c)
{
    metrics_ws_gone((c->flags & CONN_WS_CLOSE_SENT) != 0);
    if (!(c->flags & CONN_WS_ECHO) && gateway_app && gateway_app->on_close)
        gateway_app->on_close(c);
    frag_reset(c);
    if (c->wsx) { /* the app released what it owned; drop the rest */
        ws_deflate_inflater_free(c->wsx->zin);
        json_decref(c->wsx->session);
        free(c->wsx->php_session);
        free(c->wsx);
        c->wsx = NULL;
    }
}

static const conn_handler ws_conn_handler = {
    .on_read = ws_on_read,
    .on_deadline = ws_on_deadline,
    .on_close = ws_on_close,
};

/* ---- upgrade ----------------------------------------------------------- */

/* Every Sec-WebSocket-Extensions line of the request as one list (RFC 6455
 * 11.3.2: repeated lines are one comma-separated value), in buf; NULL when
 * there is none. Longer than buf: the lines that fit. */
static const char *extensions_header(const http_request *req, char *buf, size_t cap)
{
    size_t n = 0;
    for (uint32_t i = 0; i < req->n_headers; i++) {
        const char *name = req->head + req->headers[i].name_off;
        if (strcasecmp(name, "Sec-WebSocket-Extensions") != 0)
            continue;
        const char *value = req->head + req->headers[i].value_off;
        size_t len = strlen(value);
        if (n + (n ? 2 : 0) + len + 1 > cap)
            break;
        if (n) {
            memcpy(buf + n, ", ", 2);
            n += 2;
        }
        memcpy(buf + n, value, len);
        n += len;
        buf[n] = '\0';
    }
    return n ? buf : NULL;
}

void ws_upgrade(http_request *req, bool echo)
{
    conn *c = req->conn;
    const config *cfg = conn_server(c)->cfg;
    ws_handshake_request in = {
        .is_get = req->method == HTTP_GET,
        .has_body = req->body_len > 0,
        .upgrade = http_header(req, "Upgrade"),
        .connection = http_header(req, "Connection"),
        .key = http_header(req, "Sec-WebSocket-Key"),
        .version = http_header(req, "Sec-WebSocket-Version"),
    };
    ws_handshake_result out;
    if (ws_handshake_check(&in, &out) < 0) {
        req->keep_alive = false;
        if (out.status == 426) {
            char body[160];
            int n = snprintf(body, sizeof(body),
                             "{\"status\":false,\"msg\":\"%s\",\"code\":\"upgrade_required\"}",
                             out.reason);
            http_respond(req, 426, "Sec-WebSocket-Version: 13\r\n",
                         "application/json; charset=utf-8", body, (size_t)n);
        } else
            http_respond_error(req, 400, "bad_handshake", "%s", out.reason);
        return;
    }
    const char *origin = http_header(req, "Origin");
    if (cfg->ws_origins[0] && !http_origin_allowed(cfg->ws_origins, origin)) {
        req->keep_alive = false;
        http_respond_error(req, 403, "forbidden", "origin '%s' is not allowed",
                           origin ? origin : "(none)");
        return;
    }
    if (!ping_frame)
        ping_frame = ws_frame_build(WS_OP_PING, NULL, 0);
    ws_deflate_params dp;
    char ext[1024];
    char answer[WS_DEFLATE_ANSWER_MAX];
    bool deflate = cfg->ws_deflate &&
                   ws_deflate_negotiate(extensions_header(req, ext, sizeof(ext)), &dp, answer);
    char resp[384];
    int n = snprintf(resp, sizeof(resp),
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s%s%s\r\n",
                     out.accept, deflate ? "Sec-WebSocket-Extensions: " : "", deflate ? answer : "",
                     deflate ? "\r\n" : "");
    conn_send_copy(c, resp, (size_t)n);
    http_upgrade_done(req);
    if (echo)
        c->flags |= CONN_WS_ECHO;
    conn_set_handler(c, &ws_conn_handler);
    if (deflate) {
        ws_extra *x = ws_extra_get(c);
        if (!x) { /* opened (and counted) first, so its close is counted once */
            c->flags |= CONN_WS;
            metrics_conn_open(METRICS_CONN_WEBSOCKET);
            ws_close(c, WS_CLOSE_INTERNAL_ERROR, "out of resources");
            return;
        }
        x->deflate = true;
        x->deflate_client_nct = dp.client_no_context_takeover;
        x->deflate_server_bits = dp.server_bits;
        x->deflate_client_bits = dp.client_bits;
    }
    ws_start(c, req);
}
