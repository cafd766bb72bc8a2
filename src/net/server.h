/* server: the TCP listener, connection lifecycle, reads, the write queue
 * and the deadline wheel. It knows nothing of HTTP or WebSocket: protocols
 * plug in through conn_handler (net/conn.h).
 *
 * I/O: connection sockets are plain non-blocking fds, read and written by
 * one of two backends chosen at start (--io): io_uring (net/io_uring.c:
 * one receive armed at a time into provided buffers, a pass's requests in
 * one io_uring_enter) or an edge-triggered epoll set of the server's own
 * (net/io_epoll.c); libuv watches the backend's one fd. So a connection
 * costs no libuv handle (a uv_tcp_t was 248 bytes, two thirds of a conn),
 * and libuv keeps the timers, threads, signals, files and the other sockets
 * (database, Redis, webhooks). A paused connection is not read (at most
 * one buffer already asked for lands in its input), so the kernel's buffer
 * fills and TCP holds the sender back.
 *
 * Writes: conn_send queues a reference to an sbuf (never a copy). All
 * buffers queued for one connection during a loop pass go out in one
 * vectored write from a uv_check callback after I/O, so a fan-out of one
 * frame to N connections is N vectored writes of shared memory. What the
 * kernel does not take is written when the socket has room again. A connection
 * whose queued bytes pass --max-outbuf is reported through its handler's
 * overflow path (conn_send returns CONN_SEND_OVERFLOW) and the protocol
 * decides how to close it. HTTP answers count against the same bound in
 * another way (a response is never cut, so it is queued whole): the HTTP
 * layer stops reading while the queue is over it and asks, with
 * conn_notify_drain, to hear through on_drain when it is back within it.
 *
 * Connections per client address: at most --max-conns-per-ip are open at
 * once from one address (IPv4, or IPv6 by the full 128 bits; an IPv4-mapped
 * IPv6 peer counts as its IPv4 address). One over the cap is answered with a
 * fixed "HTTP/1.1 503" JSON reply (code "too_many_connections") and closed;
 * it never reaches the protocol handler. The listener serves only HTTP (a
 * WebSocket starts as an HTTP request), so the refusal is HTTP too.
 *
 * Deadlines: each connection may have one deadline, kept to WHEEL_TICK_MS; a
 * single timer walks a wheel of slots, so neither idle connections nor
 * heartbeats cost a timer each, and no tick scans all connections. */
#ifndef CHATD_SERVER_H
#define CHATD_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <uv.h>

#include "core/config.h"
#include "net/conn.h"

#define WHEEL_TICK_MS 100 /* deadline resolution */
#define WHEEL_SLOTS 1024  /* ticks; a deadline further out is re-slotted when visited */

typedef struct server_listener server_listener;

struct server {
    uv_loop_t *loop;
    const config *cfg;
    const struct io_ops *io;  /* how connection sockets are read and written (--io) */
    void *io_state;           /* that backend's own */
    uv_check_t flusher;       /* reads left over, then flushes, after I/O callbacks */
    uv_prepare_t pre_flusher; /* flushes what timers queued, before polling */
    uv_timer_t ticker;
    uv_timer_t accept_retry;    /* listeners paused by EMFILE/ENFILE resume when it fires */
    server_listener *listeners; /* the main one first, then server_listen's */
    conn **by_fd;               /* open connections by fd, for server_each_conn */
    size_t by_fd_cap;
    conn *closed;          /* closed this pass, freed once no callback is under way */
    uint64_t pass_read_ns; /* uv_hrtime of this pass's first read; 0 = none yet */
    uint64_t start_ms;     /* uv_now at start */
    uint32_t wheel_pos;    /* last tick processed */
    conn *wheel[WHEEL_SLOTS];
    conn *dirty;       /* connections with queued output to flush */
    uint8_t *read_buf; /* shared by every read of this loop */
    size_t read_buf_size;
    uint8_t *tls_buf; /* plaintext of TLS reads, as large; NULL = the listener is plain */
    uint64_t accept_errors_logged_ms; /* uv_now of the last EMFILE warning */
    uint64_t conns_open;
    uint64_t conns_total;
    uint64_t conns_refused;   /* refused for --max-conns-per-ip */
    struct peer_entry *peers; /* open connections per client address (uthash) */
    uint64_t refuse_log_ms;   /* uv_now of the last refusal warning */
    uint64_t refused_unlogged;
    bool stopping;
    uint64_t stop_ms; /* uv_now when shutdown began */
    void *app;        /* the application above (gateway), for layers that need it */
};

/* Milliseconds since the server started, from the loop's cached clock.
 * 32 bits wrap after 49 days; users only take differences of recent values. */
static inline uint32_t server_now_ms(const server *srv)
{
    return (uint32_t)(uv_now(srv->loop) - srv->start_ms);
}

/* Wheel ticks since the server started; never 0. */
static inline uint32_t server_now_tick(const server *srv)
{
    return (uint32_t)((uv_now(srv->loop) - srv->start_ms) / WHEEL_TICK_MS) + 1;
}

/* Binds and listens on cfg->listen_host:listen_port. Returns 0 or a
 * negative libuv error. New connections get `handler` (HTTP); they speak
 * TLS when tls_init loaded a certificate before (net/tls.h), invisibly to
 * the handler. */
int server_init(server *srv, uv_loop_t *loop, const config *cfg, const conn_handler *handler);
/* Listens on another address whose connections start in `handler`; they
 * share the loop, write queues and deadlines of the main listener's, but are
 * not counted against --max-conns-per-ip (used for the inner ports of
 * trusted back ends, which the docs say to firewall). Returns 0 or a
 * negative libuv error. */
int server_listen(server *srv, const char *host, int port, const conn_handler *handler);
/* Stops accepting (every listener); open connections are left to the caller
 * to close. */
void server_stop_listening(server *srv);
/* Frees the connections closed so far; the loop's check and prepare phases
 * call it. For harnesses that drive connections without a loop (tests/fuzz:
 * a conn with srv set, fd -1, on a server with no io backend). */
void server_free_closed(server *srv);
/* Calls fn for every open connection (fn may close it, or others). */
void server_each_conn(server *srv, void (*fn)(conn *c, void *arg), void *arg);
/* The I/O mechanism connections use (--io), for the log and /healthz:
 * "io_uring" or "epoll". */
const char *server_io_name(const server *srv);
/* Releases the server's own handles (after every connection closed). */
void server_close(server *srv);

enum conn_send_result { CONN_SEND_OK = 0, CONN_SEND_CLOSED = -1, CONN_SEND_OVERFLOW = -2 };

/* Queues a reference to buf (takes a new ref; the caller keeps its own).
 * CONN_SEND_OVERFLOW: the queue passed --max-outbuf; nothing was queued.
 * CONN_SEND_CLOSED: the connection is closing; nothing was queued. */
int conn_send(conn *c, sbuf *buf);
/* Queues buf even past the limit (close frames, HTTP error replies). */
int conn_send_force(conn *c, sbuf *buf);
/* Copies len bytes into a new buffer and queues it (forced). */
int conn_send_copy(conn *c, const void *data, size_t len);
/* Bytes queued and not yet taken by the kernel (a write in progress counts
 * only its unwritten part). */
size_t conn_queued_bytes(const conn *c);
/* Asks for one call of the handler's on_drain once the queued bytes are at
 * most --max-outbuf (from the flush or write callback; never from inside
 * this call, even when the queue is already within the bound). */
void conn_notify_drain(conn *c);
/* Drops queued buffers that are not yet being written (used before a
 * policy close, so the close frame is not stuck behind megabytes). */
void conn_drop_pending(conn *c);

/* Closes once the queued bytes are written (or after `grace_ms`). */
void conn_close_after_write(conn *c, uint32_t grace_ms);
/* Closes now; queued output is discarded. */
void conn_close(conn *c);

/* Sets the connection's one deadline, at least `ms` from now and less than
 * WHEEL_TICK_MS more (0 clears it). */
void conn_set_deadline(conn *c, uint32_t ms);

/* Stops reading; bytes already buffered stay in c->in. */
void conn_pause_read(conn *c);
/* Re-delivers buffered input to the handler, then reads again. */
void conn_resume_read(conn *c);

/* The peer's address, as getpeername(2); 0 or a negative libuv error. */
int conn_getpeername(const conn *c, struct sockaddr *addr, int *len);

/* Switches a connection to another protocol (HTTP -> WebSocket). */
static inline void conn_set_handler(conn *c, const conn_handler *h)
{
    c->handler = h;
}

#endif
