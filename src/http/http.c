/* http: HTTP/1.1 connections on top of net/server, parsed by http-parser
 * (see http.h for the contract). */
#include "http/http.h"

#include <http_parser.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/log.h"
#include "core/metrics.h"
#include "net/server.h"

struct http_state {
    http_parser parser;
    http_request *req;      /* the request being parsed or handled */
    bool last_was_value;    /* header callbacks: value finished the last piece */
    bool busy;              /* a handler is answering asynchronously */
    bool failed;            /* an error reply was sent; stop parsing */
    bool in_execute;        /* inside http_parser_execute: free later */
    bool dead;              /* the connection closed during execute */
    bool upgraded;          /* detached by the WebSocket upgrade */
    bool out_held;          /* answers queued past --max-outbuf: reading stopped */
    size_t held_queue;      /* queued bytes when the hold's deadline was last set */
    uint8_t prev_byte;      /* the last byte the parser consumed in the previous read */
    const char *exec_start; /* the buffer of the http_parser_execute under way */
};

static http_request_fn request_handler;
static http_body_policy_fn body_policy;
static http_parser_settings parser_settings;

void http_set_request_handler(http_request_fn fn)
{
    request_handler = fn;
}

void http_set_body_policy(http_body_policy_fn fn)
{
    body_policy = fn;
}

const char *http_status_text(int status)
{
    switch (status) {
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 204:
        return "No Content";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Payload Too Large";
    case 426:
        return "Upgrade Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    default:
        return "Unknown";
    }
}

/* ---- request memory ---------------------------------------------------- */

static void request_free(http_request *req)
{
    if (!req)
        return;
    if (req->release) {
        void (*release)(http_request *) = req->release;
        req->release = NULL;
        release(req);
    }
    free(req->head);
    free(req->headers);
    free(req->body);
    free(req);
}

static http_request *request_new(conn *c)
{
    http_request *req = calloc(1, sizeof(*req));
    if (!req)
        return NULL;
    req->conn = c;
    req->query = "";
    req->path = "";
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (conn_getpeername(c, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET)
            uv_ip4_name((struct sockaddr_in *)&ss, req->peer_ip, sizeof(req->peer_ip));
        else
            uv_ip6_name((struct sockaddr_in6 *)&ss, req->peer_ip, sizeof(req->peer_ip));
    }
    return req;
}

/* Appends to the head text; -1 when the request line + headers would pass
 * --max-header-size. */
static int head_append(conn *c, http_request *req, const char *at, size_t len)
{
    size_t limit = (size_t)conn_server(c)->cfg->max_header_size;
    if ((size_t)req->head_len + len + 1 > limit)
        return -1;
    if (req->head_len + len + 1 > req->head_cap) {
        size_t cap = req->head_cap ? req->head_cap * 2 : 512;
        while (cap < req->head_len + len + 1)
            cap *= 2;
        char *head = realloc(req->head, cap);
        if (!head)
            return -1;
        req->head = head;
        req->head_cap = (uint32_t)cap;
    }
    memcpy(req->head + req->head_len, at, len);
    req->head_len += (uint32_t)len;
    req->head[req->head_len] = '\0';
    return 0;
}

/* Ends the current piece (URL, name or value) with a NUL. */
static int head_terminate(conn *c, http_request *req)
{
    if (head_append(c, req, "", 0) < 0)
        return -1;
    req->head_len++; /* keep the NUL head_append wrote */
    return 0;
}

const char *http_header(const http_request *req, const char *name)
{
    for (uint32_t i = 0; i < req->n_headers; i++)
        if (strcasecmp(req->head + req->headers[i].name_off, name) == 0)
            return req->headers[i].value_off ? req->head + req->headers[i].value_off : "";
    return NULL;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

int http_url_decode(const char *src, size_t len, char *out, size_t cap, bool plus_is_space)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = src[i];
        if (ch == '%') {
            if (i + 2 >= len)
                return -1;
            int hi = hexval(src[i + 1]), lo = hexval(src[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            ch = (char)(hi * 16 + lo);
            i += 2;
        } else if (ch == '+' && plus_is_space) {
            ch = ' ';
        }
        if (n + 1 >= cap)
            return -1;
        out[n++] = ch;
    }
    out[n] = '\0';
    return (int)n;
}

int http_query_param(const http_request *req, const char *name, char *out, size_t cap)
{
    size_t name_len = strlen(name);
    const char *p = req->query;
    while (*p) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        size_t key_len = eq ? (size_t)(eq - p) : len;
        if (key_len == name_len && memcmp(p, name, name_len) == 0) {
            if (!eq) {
                if (cap < 1)
                    return -1;
                out[0] = '\0';
                return 0;
            }
            return http_url_decode(eq + 1, len - key_len - 1, out, cap, true);
        }
        if (!end)
            break;
        p = end + 1;
    }
    return -1;
}

/* ---- responses --------------------------------------------------------- */

static void finish_request(http_request *req);

static void format_date(char *out, size_t cap)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(out, cap, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

static char server_headers[160]; /* on every answer: X-Chatd-Node in a cluster */

void http_set_server_headers(const char *lines)
{
    snprintf(server_headers, sizeof(server_headers), "%s", lines);
}

/* The status line and headers of an answer into head; its length, or -1
 * when they do not fit. */
static int format_head(const http_request *req, int status, const char *extra_headers,
                       const char *content_type, size_t len, char *head, size_t cap)
{
    char date[64];
    format_date(date, sizeof(date));
    const char *origin = http_header(req, "Origin");
    char cors[512] = "";
    /* the origin is echoed (not "*") so credentialed requests work too */
    if (req->cors_allowed && origin && strlen(origin) < 256)
        snprintf(cors, sizeof(cors), "Access-Control-Allow-Origin: %s\r\nVary: Origin\r\n", origin);
    int n = snprintf(head, cap,
                     "HTTP/1.1 %d %s\r\nServer: chatd\r\nDate: %s\r\n%s%s%s%s%s%s"
                     "Content-Length: %zu\r\nConnection: %s\r\n\r\n",
                     status, http_status_text(status), date, server_headers, cors,
                     content_type ? "Content-Type: " : "", content_type ? content_type : "",
                     content_type ? "\r\n" : "", extra_headers ? extra_headers : "",
                     (status == 204 || status == 304) ? (size_t)0 : len,
                     req->keep_alive ? "keep-alive" : "close");
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

void http_respond(http_request *req, int status, const char *extra_headers,
                  const char *content_type, const void *body, size_t len)
{
    if (req->responded || req->streaming)
        return;
    req->responded = true;
    if (req->body_waiting)
        req->keep_alive = false; /* its body was not read: close after the answer */
    conn *c = req->conn;
    if (c && !(c->flags & CONN_CLOSING)) {
        bool no_body = req->method == HTTP_HEAD || status == 204 || status == 304;
        char head[1536];
        int n = format_head(req, status, extra_headers, content_type, len, head, sizeof(head));
        if (n < 0) {
            log_error("response head too long");
            conn_close(c);
        } else {
            size_t body_len = no_body ? 0 : len;
            sbuf *b = sbuf_new((size_t)n + body_len);
            if (!b) {
                conn_close(c);
            } else {
                memcpy(b->data, head, (size_t)n);
                if (body_len)
                    memcpy(b->data + n, body, body_len);
                b->len = (uint32_t)((size_t)n + body_len);
                conn_send_force(c, b);
                sbuf_unref(b);
            }
        }
        metrics_http_response(req->route, status);
        log_debug("%s %s -> %d", req->method_name, req->path, status);
    }
    if (!req->in_dispatch)
        finish_request(req);
}

void http_stream_begin(http_request *req, int status, const char *extra_headers,
                       const char *content_type, size_t len, void (*writable)(http_request *req))
{
    if (req->responded || req->streaming)
        return;
    req->streaming = true;
    req->stream_writable = writable;
    conn *c = req->conn;
    if (!c || (c->flags & CONN_CLOSING))
        return; /* http_stream_send says so; the caller ends the stream */
    char head[1536];
    int n = format_head(req, status, extra_headers, content_type, len, head, sizeof(head));
    if (n < 0) {
        log_error("response head too long");
        conn_close(c);
        return;
    }
    if (conn_send_copy(c, head, (size_t)n) < 0) {
        conn_close(c);
        return;
    }
    metrics_http_response(req->route, status);
    log_debug("%s %s -> %d (streamed, %zu bytes)", req->method_name, req->path, status, len);
}

int http_stream_send(http_request *req, sbuf *piece)
{
    conn *c = req->conn;
    if (!c || (c->flags & CONN_CLOSING))
        return -1;
    return conn_send_force(c, piece) == CONN_SEND_OK ? 0 : -1;
}

void http_stream_wait(http_request *req)
{
    conn *c = req->conn;
    req->stream_waiting = true;
    if (!c || (c->flags & CONN_CLOSING)) {
        req->stream_waiting = false;
        req->stream_writable(req); /* sees req->conn NULL or closing: ends */
        return;
    }
    http_state *st = c->http;
    st->held_queue = conn_queued_bytes(c);
    conn_set_deadline(c, (uint32_t)conn_server(c)->cfg->header_timeout * 1000);
    conn_notify_drain(c);
}

void http_stream_end(http_request *req, bool complete)
{
    req->streaming = false;
    req->stream_waiting = false;
    req->responded = true;
    if (!complete && req->conn)
        conn_close(req->conn); /* fewer bytes than the Content-Length sent */
    if (!req->in_dispatch)
        finish_request(req);
}

void http_respond_json(http_request *req, int status, json_t *root)
{
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!text) {
        http_respond(req, 500, "", "application/json",
                     "{\"status\":false,\"msg\":\"out of memory\",\"code\":\"internal\"}", 57);
        return;
    }
    http_respond(req, status, "", "application/json; charset=utf-8", text, strlen(text));
    free(text);
}

void http_respond_ok(http_request *req, json_t *data)
{
    json_t *root =
        json_pack("{s:b,s:s,s:o}", "status", 1, "msg", "ok", "data", data ? data : json_null());
    http_respond_json(req, 200, root);
}

void http_respond_error(http_request *req, int status, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *root = json_pack("{s:b,s:s,s:s}", "status", 0, "msg", msg, "code", code);
    http_respond_json(req, status, root);
}

/* An error before the request reached a handler: answer and close. */
static void fail_request(conn *c, int status, const char *code, const char *msg)
{
    http_state *st = c->http;
    st->failed = true;
    /* http-parser only allows pausing a parser that is not in error */
    enum http_errno err = HTTP_PARSER_ERRNO(&st->parser);
    if (err == HPE_OK || err == HPE_PAUSED)
        http_parser_pause(&st->parser, 1);
    http_request *req = st->req;
    if (!req) {
        req = request_new(c);
        if (!req) {
            conn_close(c);
            return;
        }
        st->req = req;
    }
    req->keep_alive = false;
    req->in_dispatch = true;
    if (!req->headers_done)
        req->n_headers = 0; /* a half-parsed header must not be looked at */
    http_respond_error(req, status, code, "%s", msg);
    st->req = NULL;
    request_free(req);
    conn_close_after_write(c, 2000);
}

static void fail_too_large(conn *c, uint32_t limit)
{
    char msg[128];
    snprintf(msg, sizeof(msg), "request body is larger than %lu bytes", (unsigned long)limit);
    fail_request(c, 413, "too_large", msg);
}

/* ---- parser callbacks -------------------------------------------------- */

static int on_message_begin(http_parser *p)
{
    conn *c = p->data;
    http_state *st = c->http;
    st->req = request_new(c);
    st->last_was_value = false;
    if (!st->req)
        return -1;
    conn_set_deadline(c, (uint32_t)conn_server(c)->cfg->header_timeout * 1000);
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    conn *c = p->data;
    if (c->http->failed)
        return 0;
    if (head_append(c, c->http->req, at, len) < 0) {
        fail_request(c, 431, "headers_too_large", "request line and headers are too large");
        return 0;
    }
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    conn *c = p->data;
    http_state *st = c->http;
    http_request *req = st->req;
    if (st->failed)
        return 0;
    if (req->n_headers == 0 || st->last_was_value) {
        /* a new header: end the URL or the previous value */
        if ((int64_t)req->n_headers >= conn_server(c)->cfg->max_headers) {
            fail_request(c, 431, "headers_too_large", "too many request headers");
            return 0;
        }
        if (head_terminate(c, req) < 0)
            goto too_large;
        if (req->n_headers == req->headers_cap) {
            uint32_t cap = req->headers_cap ? req->headers_cap * 2 : 16;
            http_header_entry *h = realloc(req->headers, cap * sizeof(*h));
            if (!h)
                return -1;
            req->headers = h;
            req->headers_cap = cap;
        }
        req->headers[req->n_headers].name_off = req->head_len;
        req->headers[req->n_headers].value_off = 0;
        req->n_headers++;
        st->last_was_value = false;
    }
    if (head_append(c, req, at, len) < 0)
        goto too_large;
    return 0;
too_large:
    fail_request(c, 431, "headers_too_large", "request line and headers are too large");
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    conn *c = p->data;
    http_state *st = c->http;
    http_request *req = st->req;
    if (st->failed)
        return 0;
    if (st->last_was_value) {
        /* A value arrives in more than one piece when a read ends inside it,
         * and then the next piece starts the next buffer right after a value
         * byte. A piece that follows a line feed is an obs-fold continuation
         * instead: http-parser 2.9 joins it to the value, RFC 9112 5.2 wants
         * a 400 or a space, and a proxy in front may have read the line as a
         * header of its own, so chatd refuses it. */
        uint8_t before = at > st->exec_start ? (uint8_t)at[-1] : st->prev_byte;
        if (before == '\n') {
            fail_request(c, 400, "bad_request",
                         "malformed request: a header line continued on the next (obs-fold)");
            return 0;
        }
    } else {
        if (head_terminate(c, req) < 0)
            goto too_large;
        req->headers[req->n_headers - 1].value_off = req->head_len;
        st->last_was_value = true;
    }
    if (head_append(c, req, at, len) < 0)
        goto too_large;
    return 0;
too_large:
    fail_request(c, 431, "headers_too_large", "request line and headers are too large");
    return 0;
}

bool http_origin_allowed(const char *list, const char *origin)
{
    if (!list || !*list || !origin)
        return false;
    if (strcmp(list, "*") == 0)
        return true;
    size_t olen = strlen(origin);
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *end = p;
        while (*end && *end != ',')
            end++;
        const char *trim = end;
        while (trim > p && trim[-1] == ' ')
            trim--;
        if ((size_t)(trim - p) == olen && strncasecmp(p, origin, olen) == 0)
            return true;
        p = end;
    }
    return false;
}

/* RFC 9110 5.6.2: a field name is a token. http-parser 2.9 lets spaces in,
 * so "Content-Length : 5" would be read as a length a stricter proxy in
 * front of chatd does not see (RFC 9112 5.1 requires a 400). */
static bool is_token(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch <= ' ' || ch >= 0x7f || strchr("\"(),/:;<=>?@[\\]{}", ch))
            return false;
    }
    return true;
}

static int apply_body_policy(conn *c, http_request *req, const http_body_policy *policy);

/* An http_body_accept made inside decide, applied when decide returns:
 * applying it there could answer and free the request under decide. */
static bool accepted_in_decide;
static http_body_policy accepted_policy;

/* The application decides asynchronously: the parser stops right after the
 * headers (http-parser leaves the final line feed unconsumed, so resuming
 * it goes on with the body) and busy makes http_on_read stop reading, as
 * for a handler answering later: the body stays in the socket, and the
 * connection costs no more memory while it waits. */
static int decide_body_policy(conn *c, http_request *req, const http_body_policy *policy)
{
    http_state *st = c->http;
    req->body_waiting = true;
    st->busy = true;
    http_parser_pause(&st->parser, 1);
    accepted_in_decide = false;
    req->in_dispatch = true;
    policy->decide(req); /* may accept or answer before it returns */
    req->in_dispatch = false;
    bool accepted = accepted_in_decide;
    accepted_in_decide = false;
    if (!req->conn) {
        /* the connection closed during decide: on_close detached req */
        if (req->responded || accepted)
            request_free(req);
        return 0;
    }
    if (req->responded) {
        finish_request(req); /* keep-alive was turned off: closes after the answer */
        return 0;
    }
    if (!accepted)
        return 0; /* http_on_read sees the pause and stops reading */
    st->busy = false;
    http_parser_pause(&st->parser, 0);
    return apply_body_policy(c, req, &accepted_policy) < 0 ? -1 : 0;
}

void http_body_accept(http_request *req, const http_body_policy *policy)
{
    if (!req->body_waiting || req->responded)
        return;
    req->body_waiting = false;
    if (req->in_dispatch) { /* inside decide: decide_body_policy applies it */
        accepted_in_decide = true;
        accepted_policy = *policy;
        return;
    }
    conn *c = req->conn;
    if (!c) {
        request_free(req); /* the connection is gone */
        return;
    }
    c->http->busy = false;
    int r = apply_body_policy(c, req, policy);
    if (r < 0) {
        conn_close(c); /* out of memory; on_close frees req */
        return;
    }
    if (r > 0)
        return; /* refused: answered, closing */
    conn_set_deadline(c, (uint32_t)conn_server(c)->cfg->header_timeout * 1000);
    http_parser_pause(&c->http->parser, 0);
    conn_resume_read(c); /* delivers the bytes kept since the headers */
}

static int on_headers_complete(http_parser *p)
{
    conn *c = p->data;
    http_state *st = c->http;
    http_request *req = st->req;
    const config *cfg = conn_server(c)->cfg;
    if (st->failed)
        return 0;
    if (head_terminate(c, req) < 0) {
        fail_request(c, 431, "headers_too_large", "request line and headers are too large");
        return 0;
    }
    req->headers_done = true;
    for (uint32_t i = 0; i < req->n_headers; i++) {
        if (!is_token(req->head + req->headers[i].name_off)) {
            req->n_headers = 0; /* no header of this request is trusted */
            fail_request(c, 400, "bad_request",
                         "malformed request: a header name with whitespace or a separator in it");
            return 0;
        }
    }
    /* split the URL (always at offset 0) into path and query */
    char *url = req->head;
    char *q = strchr(url, '?');
    if (q) {
        *q = '\0';
        req->query = q + 1;
    }
    char *hash = strchr(q ? q + 1 : url, '#');
    if (hash)
        *hash = '\0';
    req->path = url;
    req->method = p->method;
    req->method_name = http_method_str(p->method);
    req->keep_alive = http_should_keep_alive(p);
    req->upgrade = p->upgrade;
    req->cors_allowed = http_origin_allowed(cfg->cors_origins, http_header(req, "Origin"));

    if (p->http_major != 1) {
        fail_request(c, 400, "bad_request", "only HTTP/1.0 and HTTP/1.1 are supported");
        return 0;
    }
    http_body_policy policy = {.limit = cfg->max_body};
    if (body_policy)
        body_policy(req, &policy);
    if (policy.decide && !policy.refuse_status)
        return decide_body_policy(c, req, &policy);
    return apply_body_policy(c, req, &policy) < 0 ? -1 : 0;
}

/* The body policy's limits for req, or its refusal. 0, 1 when it answered
 * (the parser is paused, the connection closing), -1 when out of memory. */
static int apply_body_policy(conn *c, http_request *req, const http_body_policy *policy_in)
{
    http_parser *p = &c->http->parser;
    http_body_policy policy = *policy_in;
    if (policy.refuse_status) {
        fail_request(c, policy.refuse_status, policy.refuse_code ? policy.refuse_code : "refused",
                     policy.refuse_msg ? policy.refuse_msg : "request refused");
        return 1;
    }
    if (policy.limit < 0)
        policy.limit = 0;
    if (policy.limit > UINT32_MAX - 1)
        policy.limit = UINT32_MAX - 1;
    req->body_limit = (uint32_t)policy.limit;
    req->body_large = policy.large;
    if ((p->flags & F_CHUNKED) && !policy.large) {
        fail_request(c, 411, "length_required",
                     "chunked request bodies are not supported: send Content-Length");
        return 1;
    }
    uint64_t clen = p->content_length == ULLONG_MAX ? 0 : p->content_length;
    if (clen > req->body_limit) {
        fail_too_large(c, req->body_limit);
        return 1;
    }
    if (clen > 0) {
        req->body = malloc(clen + 1);
        if (!req->body)
            return -1;
        req->body_cap = (uint32_t)clen;
    }
    return 0;
}

/* A chunked body of a large request grows its buffer by doubling, never
 * past the policy's limit: 413 as soon as the body would pass it. */
static int grow_body(conn *c, http_request *req, size_t need)
{
    if (need > req->body_limit) {
        fail_too_large(c, req->body_limit);
        return 1;
    }
    size_t cap = req->body_cap ? (size_t)req->body_cap * 2 : 65536;
    while (cap < need)
        cap *= 2;
    if (cap > req->body_limit)
        cap = req->body_limit;
    char *body = realloc(req->body, cap + 1);
    if (!body)
        return -1;
    req->body = body;
    req->body_cap = (uint32_t)cap;
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    conn *c = p->data;
    http_request *req = c->http->req;
    if (c->http->failed)
        return 0;
    if (req->body_len + len > req->body_cap) {
        if (!req->body_large)
            return -1; /* cannot happen with Content-Length; guards the copy */
        int r = grow_body(c, req, req->body_len + len);
        if (r != 0)
            return r < 0 ? -1 : 0; /* 1: answered 413 */
    }
    memcpy(req->body + req->body_len, at, len);
    req->body_len += len;
    if (req->body_large) /* progress: a slow upload is not a stalled one */
        conn_set_deadline(c, (uint32_t)conn_server(c)->cfg->header_timeout * 1000);
    return 0;
}

/* Pipelining is bounded by --max-outbuf: once the answers queued for this
 * connection pass it, the next request waits (not parsed, not read) until the
 * net layer reports the queue back within the bound (http_on_drain). An
 * answer itself is always queued whole, so the queue can pass the bound by
 * one response (a static file, say), never by more. A client that takes
 * no byte of it for --header-timeout is closed (http_on_deadline); one that
 * reads slowly, but reads, is not (a large file on a slow link).
 * Returns true when the connection is now held. */
static bool hold_for_output(conn *c)
{
    const config *cfg = conn_server(c)->cfg;
    if ((c->flags & CONN_SHUT_AFTER_WRITE) || conn_queued_bytes(c) <= (size_t)cfg->max_outbuf)
        return false;
    http_state *st = c->http;
    st->out_held = true;
    st->held_queue = conn_queued_bytes(c);
    http_parser_pause(&st->parser, 1);
    conn_pause_read(c);
    conn_set_deadline(c, (uint32_t)cfg->header_timeout * 1000);
    conn_notify_drain(c);
    return true;
}

static int on_message_complete(http_parser *p)
{
    conn *c = p->data;
    http_state *st = c->http;
    http_request *req = st->req;
    if (st->failed)
        return 0;
    if (req->body)
        req->body[req->body_len] = '\0';
    conn_set_deadline(c, 0);
    req->in_dispatch = true;
    request_handler(req);
    if (st->upgraded) {
        /* switched protocols: the request is done, the WebSocket layer owns
         * the connection and the bytes after the headers */
        st->req = NULL;
        request_free(req);
        http_parser_pause(p, 1);
        return 0;
    }
    req->in_dispatch = false;
    if (c->flags & CONN_CLOSING) {
        /* the handler closed the connection; on_close detached req */
        if (req->responded)
            finish_request(req);
        http_parser_pause(p, 1);
        return 0;
    }
    if (req->responded) {
        finish_request(req);
        if (!st->failed && !(c->flags & CONN_CLOSING))
            hold_for_output(c);
    } else {
        st->busy = true; /* answered later: hold the next request */
        http_parser_pause(p, 1);
    }
    return 0;
}

/* After the answer: free the request, then read the next one (or close). */
static void finish_request(http_request *req)
{
    conn *c = req->conn;
    if (!c) {
        request_free(req);
        return;
    }
    http_state *st = c->http;
    bool keep_alive = req->keep_alive;
    if (st && st->req == req)
        st->req = NULL;
    request_free(req);
    if (!st || (c->flags & CONN_CLOSING))
        return;
    if (!keep_alive) {
        st->failed = true;
        http_parser_pause(&st->parser, 1);
        conn_close_after_write(c, 2000);
        return;
    }
    conn_set_deadline(c, (uint32_t)conn_server(c)->cfg->keepalive_timeout * 1000);
    if (st->busy) {
        st->busy = false;
        if (hold_for_output(c))
            return; /* parser and reads stay paused until http_on_drain */
        http_parser_pause(&st->parser, 0);
        conn_resume_read(c);
    }
}

void http_upgrade_done(http_request *req)
{
    req->responded = true; /* on_message_complete frees it after the handler */
    metrics_http_response(req->route, 101);
    conn *c = req->conn;
    if (c && c->http) {
        /* c->http shares its memory with the WebSocket state: detach now,
         * http_on_read frees the HTTP state once the parser has returned */
        c->http->upgraded = true;
        c->http = NULL;
    }
}

/* ---- conn_handler ------------------------------------------------------ */

static void http_on_open(conn *c)
{
    http_state *st = calloc(1, sizeof(*st));
    if (!st) {
        conn_close(c);
        return;
    }
    http_parser_init(&st->parser, HTTP_REQUEST);
    st->parser.data = c;
    c->http = st;
    conn_set_deadline(c, (uint32_t)conn_server(c)->cfg->header_timeout * 1000);
}

static size_t http_on_read(conn *c, uint8_t *data, size_t len)
{
    http_state *st = c->http;
    if (!st || st->busy || st->failed || st->out_held)
        return 0;
    st->in_execute = true;
    st->exec_start = (const char *)data;
    size_t n = http_parser_execute(&st->parser, &parser_settings, (const char *)data, len);
    st->in_execute = false;
    if (n > 0)
        st->prev_byte = data[n - 1]; /* (st may be freed below; this is before) */
    if (st->upgraded) {
        /* the rest of the bytes belong to the new protocol */
        free(st);
        if (c->flags & CONN_CLOSING)
            return len;
        return n + c->handler->on_read(c, data + n, len - n);
    }
    if (st->dead) {
        free(st);
        return len;
    }
    if (c->flags & CONN_CLOSING)
        return len;
    enum http_errno err = HTTP_PARSER_ERRNO(&st->parser);
    if (st->failed)
        return len;
    if (err == HPE_PAUSED) {
        if (st->busy || st->out_held)
            conn_pause_read(c);
        return n;
    }
    if (err != HPE_OK) {
        if (!st->failed) {
            char msg[160];
            snprintf(msg, sizeof(msg), "malformed request: %s", http_errno_description(err));
            fail_request(c, err == HPE_HEADER_OVERFLOW ? 431 : 400,
                         err == HPE_HEADER_OVERFLOW ? "headers_too_large" : "bad_request", msg);
        }
        return len;
    }
    if (st->parser.upgrade) {
        /* an Upgrade request the application did not take */
        st->failed = true;
        conn_close_after_write(c, 2000);
        return len;
    }
    return n;
}

static void http_on_deadline(conn *c)
{
    http_state *st = c->http;
    if (st && (st->out_held || (st->req && st->req->stream_waiting))) {
        size_t queued = conn_queued_bytes(c);
        if (queued < st->held_queue) { /* the client reads, slowly: wait on */
            st->held_queue = queued;
            conn_set_deadline(c, (uint32_t)conn_server(c)->cfg->header_timeout * 1000);
            return;
        }
        log_debug("HTTP client took none of its %zu queued bytes in %lld s: "
                  "closing",
                  queued, (long long)conn_server(c)->cfg->header_timeout);
        metrics_slow_close(METRICS_SLOW_HTTP);
        conn_close(c);
        return;
    }
    if (st && st->req && !st->busy && !st->failed) {
        fail_request(c, 408, "timeout", "request headers or body took too long");
        return;
    }
    if (st && st->busy) {
        conn_set_deadline(c, 1000); /* a handler is still working: not idle */
        return;
    }
    conn_close(c); /* idle keep-alive connection */
}

/* The queue is back within --max-outbuf: parse the requests that waited. */
static void http_on_drain(conn *c)
{
    http_state *st = c->http;
    if (st && st->req && st->req->stream_waiting) {
        http_request *req = st->req;
        req->stream_waiting = false;
        conn_set_deadline(c, 1000); /* busy: re-armed until the stream ends */
        req->stream_writable(req);
        return;
    }
    if (!st || !st->out_held)
        return;
    st->out_held = false;
    if (st->failed || (c->flags & CONN_SHUT_AFTER_WRITE))
        return; /* closing (shutdown): keep the close deadline */
    conn_set_deadline(c, (uint32_t)conn_server(c)->cfg->keepalive_timeout * 1000);
    http_parser_pause(&st->parser, 0);
    conn_resume_read(c);
}

static void http_on_close(conn *c)
{
    http_state *st = c->http;
    if (!st)
        return;
    http_request *waiting = NULL;
    if (st->req) {
        if (st->busy || st->req->in_dispatch) {
            st->req->conn = NULL; /* the handler frees it when it answers */
            if (st->req->stream_waiting)
                waiting = st->req;
        } else {
            request_free(st->req);
        }
        st->req = NULL;
    }
    c->http = NULL;
    if (st->in_execute)
        st->dead = true; /* http_on_read frees it when the parser returns */
    else
        free(st);
    if (waiting) { /* a stream waiting for the queue to drain: it ends now */
        waiting->stream_waiting = false;
        waiting->stream_writable(waiting);
    }
}

const conn_handler http_conn_handler = {
    .on_open = http_on_open,
    .on_read = http_on_read,
    .on_deadline = http_on_deadline,
    .on_close = http_on_close,
    .on_drain = http_on_drain,
};

static http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};
