/* httpc: a small keep-alive, pipelining HTTP/1.1 client for chatd's server API
 * (POST /gateway/<method>) and chat-service endpoints, on top of conn.
 *
 * A pool of a few connections carries every request; requests are pipelined and answered in
 * order per connection, so each connection keeps a FIFO of callbacks. Responses must carry
 * Content-Length (chatd's and the peer's do). Setup code issues thousands of calls through
 * it (bind_uid, join_group); fanout issues its broadcasts through it. */
#ifndef BENCH_HTTPC_H
#define BENCH_HTTPC_H

#include "bench.h"
#include "conn.h"

/* status: the HTTP status, or a negative error (the connection failed). body is not
 * NUL-terminated. */
typedef void (*httpc_cb)(void *ctx, int status, const char *body, size_t len);

typedef struct httpc_pending {
    httpc_cb cb;
    void *ctx;
} httpc_pending;

typedef struct httpc_conn {
    bconn c; /* first */
    struct httpc *pool;
    httpc_pending *q; /* ring of callbacks in request order */
    size_t q_cap, q_head, q_len;
} httpc_conn;

typedef struct httpc {
    target t;
    char auth[300]; /* "Authorization: Bearer ...\r\n" or "" */
    httpc_conn *conns;
    int nconns;
    unsigned next;
    long inflight;
    bool failed;
    char error[512];
} httpc;

/* Parses base_url (http://host:port) and connects nconns connections. secret may be NULL. */
int httpc_init(httpc *h, const char *base_url, const char *secret, int nconns);
/* Queues POST path with a JSON body on the least busy connection. */
void httpc_post(httpc *h, const char *path, const char *body, size_t len, httpc_cb cb, void *ctx);
/* httpc_post with "Authorization: Bearer token" instead of the pool's (a user's call). */
void httpc_post_as(httpc *h, const char *path, const char *body, size_t len, const char *token,
                   httpc_cb cb, void *ctx);
/* Appends a pre-built request (whole bytes) on connection i; its response goes to cb. */
void httpc_raw(httpc *h, int i, const char *req, size_t len, httpc_cb cb, void *ctx);
/* Head of a POST request for path with a body of len bytes, into dst; returns its length. */
size_t httpc_head(const httpc *h, char *dst, size_t cap, const char *path, size_t len);
void httpc_close(httpc *h);

/* Checks an API envelope: 1 if {"status":true...}, else 0 with msg (a short reason) set. */
int api_ok(int status, const char *body, size_t len, char *msg, size_t msgcap);

#endif
