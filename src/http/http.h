/* http: HTTP/1.1 on a conn, parsed by http-parser.
 *
 * Requests are handled one at a time per connection, in order, which is what
 * makes pipelining correct: while a handler works asynchronously (storage,
 * password hashing, file reads) the connection stops reading and keeps the
 * following requests buffered until the response is sent.
 *
 * Limits (config): request line + headers --max-header-size and
 * --max-headers (431), body --max-body (413), chunked bodies (411), slow
 * headers --header-timeout (408), idle keep-alive --keepalive-timeout.
 * The application may decide otherwise for a request once its headers are
 * in, before any byte of its body is read (http_set_body_policy): a larger
 * limit, chunked bodies, a refusal (an upload slot is taken: 503), or a
 * decision taken asynchronously while the connection is not read (an upload
 * whose token is looked up before a slot is given to it).
 * Answers count against --max-outbuf: while more than that is queued, the
 * next pipelined request is neither parsed nor read (an answer is queued
 * whole, unless it is streamed in pieces: http_stream_begin); a client
 * that takes no byte of it for --header-timeout is closed. Header syntax
 * that RFC 9112 refuses and http-parser 2.9 lets through (whitespace in or
 * after a field name, obs-fold) gets 400.
 *
 * Ownership: the HTTP layer allocates an http_request and hands it to the
 * application's handler. The handler must answer exactly once with one of
 * the http_respond* functions, now or later; the layer frees the request
 * after that. If the connection closes first, req->conn becomes NULL and the
 * answer is simply dropped (and the request freed). */
#ifndef CHATD_HTTP_H
#define CHATD_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/conn.h"

typedef struct http_request http_request;
typedef void (*http_request_fn)(http_request *req);

typedef struct http_header_entry {
    uint32_t name_off, value_off; /* into req->head, NUL-terminated */
} http_header_entry;

struct http_request {
    conn *conn; /* NULL once the connection is gone */
    int method; /* enum http_method of http-parser */
    const char *method_name;
    bool keep_alive;
    bool upgrade;      /* "Connection: upgrade" was sent */
    const char *path;  /* raw (still percent-encoded) path, NUL-terminated */
    const char *query; /* raw query without '?', "" when none */
    char *body;        /* NUL-terminated, body_len bytes */
    size_t body_len;
    /* internals */
    char *head; /* URL and header text */
    uint32_t head_len, head_cap;
    http_header_entry *headers;
    uint32_t n_headers, headers_cap;
    uint32_t body_cap;
    uint32_t body_limit; /* the body policy's limit */
    bool body_large;     /* the body policy's large */
    bool responded;
    bool in_dispatch;
    bool headers_done; /* every header is complete and NUL-terminated */
    bool cors_allowed; /* Origin is in --cors-origins */
    uint8_t route;     /* enum metrics_route, set by the application's router */
    char peer_ip[48];  /* for rate limits and logs */
    bool body_waiting; /* the body policy's decide is under way: no body byte read */
    /* Set by the body policy when it took something for this request (an
     * upload slot): runs exactly once, when the request is freed, answered
     * or abandoned (the connection closed while the body was arriving). */
    void (*release)(http_request *req);
    void *app_data; /* the application's own: for release, or for a stream's writable */
    /* a streamed answer (http_stream_begin) */
    void (*stream_writable)(http_request *req);
    bool streaming;      /* the head is queued, the body goes in pieces */
    bool stream_waiting; /* http_stream_wait: stream_writable is due */
};

/* What the application says about a request's body, asked once its headers
 * are in and before any byte of the body is read. */
typedef struct http_body_policy {
    int64_t limit; /* in: --max-body; out: the most bytes this request's body may have (413) */
    /* out: a large body (an upload): Transfer-Encoding: chunked is accepted,
     * its buffer grown up to limit (413 as soon as it passes), and the
     * --header-timeout deadline restarts whenever body bytes arrive, so a
     * slow link is not cut while it makes progress */
    bool large;
    /* out: non-zero refuses the request with this status, code and message
     * before its body is read (the connection is closed after the answer) */
    int refuse_status;
    const char *refuse_code;
    const char *refuse_msg;
    /* out: decide later, asynchronously (a token look-up that may need the
     * database). The layer stops reading the connection (the parser is
     * paused after the headers and reads stop, so nothing is buffered
     * beyond what the read that ended the headers brought) and then calls
     * decide(req), which must end, now or later, with http_body_accept (the
     * body is read under the policy given there) or with an answer
     * (http_respond*): the connection is then closed after the answer, since
     * the unread body cannot be told from a next request without reading it.
     * If the connection closes meanwhile, req->conn is NULL when the decision
     * comes; either call then just frees the request. The other fields are
     * ignored when decide is set (and refuse_status is 0). */
    void (*decide)(http_request *req);
} http_body_policy;
typedef void (*http_body_policy_fn)(http_request *req, http_body_policy *policy);

/* The protocol handler for new connections (use with server_init). */
extern const conn_handler http_conn_handler;

/* Installs the application's request handler (one per process). */
void http_set_request_handler(http_request_fn fn);
/* Installs the body policy (NULL = --max-body for every request, no
 * chunked bodies). req->path, req->method and the headers are set when it
 * runs; it must not answer the request itself. */
void http_set_body_policy(http_body_policy_fn fn);

/* Ends a body policy's decide (see http_body_policy): the body of req is
 * read under policy (its limit, large and refuse_* fields; decide is
 * ignored), and the request reaches the handler as usual once it is in. */
void http_body_accept(http_request *req, const http_body_policy *policy);

/* Case-insensitive header look-up; NULL when absent. */
const char *http_header(const http_request *req, const char *name);

/* Copies the decoded value of query parameter `name` into out (NUL-terminated).
 * Returns the decoded length, or -1 when absent or longer than cap - 1. */
int http_query_param(const http_request *req, const char *name, char *out, size_t cap);

/* Percent-decodes src into out; '+' is a space only when plus_is_space.
 * Returns the length or -1 on a bad escape / overflow. */
int http_url_decode(const char *src, size_t len, char *out, size_t cap, bool plus_is_space);

/* Sends a response. extra_headers is "" or complete "Name: value\r\n" lines.
 * A HEAD request gets the headers only. */
void http_respond(http_request *req, int status, const char *extra_headers,
                  const char *content_type, const void *body, size_t len);
/* A streamed answer, for bodies too large to hold whole (a picture of
 * megabytes): the head now, the body in pieces sent as the client takes
 * them, so an answer costs at most about --max-outbuf and one piece of
 * memory however large its body.
 *
 * http_stream_begin queues the head with Content-Length: len (the pieces
 * must add up to it; not for HEAD, 204 or 304) and makes req a stream.
 * http_stream_send queues a piece (takes its own reference): 0, or -1 when
 * the connection is gone. http_stream_wait asks for one call of writable
 * once the connection's queue is within --max-outbuf, or once the
 * connection closed (then req->conn is NULL): send the next piece only from
 * there, and nothing is ever queued past the bound by more than a piece. A
 * client that takes no byte for --header-timeout while a stream waits is
 * closed. http_stream_end ends the answer and frees req (any time, also
 * after the connection closed); complete false closes the connection, as
 * the promised length was not sent (a read error). */
void http_stream_begin(http_request *req, int status, const char *extra_headers,
                       const char *content_type, size_t len, void (*writable)(http_request *req));
int http_stream_send(http_request *req, sbuf *piece);
void http_stream_wait(http_request *req);
void http_stream_end(http_request *req, bool complete);

/* Sends root as JSON (steals the reference). */
void http_respond_json(http_request *req, int status, json_t *root);
/* {"status":true,"msg":"ok","data":data}; steals data (NULL = null). */
void http_respond_ok(http_request *req, json_t *data);
/* {"status":false,"msg":msg,"code":code} with an HTTP status. */
void http_respond_error(http_request *req, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Header lines ("Name: value\r\n"...) added to every answer; "" = none. */
void http_set_server_headers(const char *lines);

/* Marks a request answered by a protocol switch (the WebSocket upgrade
 * queued its own 101); the HTTP layer frees it when the handler returns. */
void http_upgrade_done(http_request *req);

const char *http_status_text(int status);

/* True when origin is in the comma-separated allow-list (case-insensitive;
 * "*" allows any origin). False for an empty list or a missing origin. Used
 * for --cors-origins and --ws-origins. */
bool http_origin_allowed(const char *list, const char *origin);

#endif
