/* server: TCP accept, reads into one shared buffer, per-connection write
 * queues flushed with one vectored write per loop pass, and the deadline
 * wheel (see server.h for the contract). */
#include "net/server.h"

#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/log.h"
#include "core/metrics.h"
#include "net/tls.h"

/* The per-address table is keyed with SipHash under a random key: a client
 * that picks its IPv6 addresses cannot make them collide in one bucket. */
static uint8_t peer_hash_key[crypto_shorthash_KEYBYTES];
static unsigned peer_hash(const void *key, size_t len)
{
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, key, len, peer_hash_key);
    unsigned v;
    memcpy(&v, h, sizeof(v));
    return v;
}
#define HASH_FUNCTION(keyptr, keylen, hashv) ((hashv) = peer_hash((keyptr), (keylen)))
#include <uthash.h>

#define READ_BUF_SIZE (64 * 1024)
#define ACCEPTS_PER_PASS 512
#define ACCEPT_RETRY_MS 100 /* out of fds: listeners pause this long */
#define LISTEN_BACKLOG 4096
#define REFUSE_GRACE_MS 1000        /* a refused connection's reply gets this long to go out */
#define REFUSE_LOG_INTERVAL_MS 1000 /* at most one refusal warning per second */

/* Open connections from one client address. Freed when the last one closes,
 * so the table holds only addresses with open connections. */
typedef struct peer_entry {
    uint8_t addr[16]; /* IPv4 in the first 4 bytes, the rest zero */
    uint8_t family;   /* 4 or 6: part of the key with addr */
    uint32_t conns;
    UT_hash_handle hh;
} peer_entry;

#define PEER_KEY_LEN (offsetof(peer_entry, family) + 1)

/* The queue of buffers waiting to be written on one connection. Allocated on
 * the first send and freed as soon as it drains, so idle connections hold none.
 * On a TLS connection items [head, head + sealed) are ciphertext (records,
 * handshake messages, alerts), the rest is plaintext that the flush encrypts;
 * only the sealed part is written. Plain connections keep sealed at 0. */
struct outq {
    sbuf **items;
    uint32_t head, tail, cap;
    uint32_t sealed;
    uint32_t first_off; /* bytes of items[head] already written */
    uint32_t inflight;  /* io_uring: items [head, head + inflight) are in a send */
    size_t bytes;       /* queued bytes not yet written */
    struct iovec *iov;  /* io_uring: the vector of that send, kept until it completes */
    size_t iov_cap;
};

/* How connection sockets are read and written: io_epoll.c or io_uring.c,
 * chosen once at start (--io). Both are compiled into this file (as Redis
 * includes its ae_*.c), so they use its helpers directly; everything above
 * the bytes (queues, TLS, protocols, lifecycles) is shared. */
typedef struct io_ops {
    const char *name;
    int (*init)(server *srv);   /* sets up srv->io_state and its libuv watch */
    void (*close)(server *srv); /* after every connection is gone */
    int (*add)(conn *c);        /* a new connection: start reading */
    void (*write)(conn *c);     /* write the writable part of c->out (not CONN_WRITING) */
    /* CONN_READ_PAUSED was just cleared: read what came meanwhile. (Pausing
     * tells no backend anything: neither reads a paused connection, so the
     * kernel's buffer fills and TCP holds the sender back.) */
    void (*resume_read)(conn *c);
    /* c is closing: stop its I/O and close the fd; true when the struct may be
     * freed in this pass, false when the backend calls conn_released later */
    bool (*release)(conn *c);
    void (*pass)(server *srv);   /* check phase, between its two flushes */
    void (*submit)(server *srv); /* after the flushes of a loop phase */
} io_ops;

static void shutdown_when_drained(conn *c);

/* ---- deadline wheel ---------------------------------------------------- */

static void wheel_insert(server *srv, conn *c)
{
    conn **slot = &srv->wheel[c->deadline % WHEEL_SLOTS];
    c->wheel_prev = NULL;
    c->wheel_next = *slot;
    if (*slot)
        (*slot)->wheel_prev = c;
    *slot = c;
    c->flags |= CONN_IN_WHEEL;
}

static void wheel_remove(server *srv, conn *c)
{
    if (!(c->flags & CONN_IN_WHEEL))
        return;
    if (c->wheel_prev)
        c->wheel_prev->wheel_next = c->wheel_next;
    else
        srv->wheel[c->deadline % WHEEL_SLOTS] = c->wheel_next;
    if (c->wheel_next)
        c->wheel_next->wheel_prev = c->wheel_prev;
    c->wheel_prev = c->wheel_next = NULL;
    c->flags &= ~CONN_IN_WHEEL;
}

void conn_set_deadline(conn *c, uint32_t ms)
{
    server *srv = conn_server(c);
    if (c->flags & CONN_CLOSING)
        return;
    wheel_remove(srv, c);
    /* rounded up, +1: the deadline fires on a tick boundary at least `ms`
     * from now, never before */
    c->deadline = ms ? server_now_tick(srv) + (ms + WHEEL_TICK_MS - 1) / WHEEL_TICK_MS + 1 : 0;
    if (c->deadline)
        wheel_insert(srv, c);
}

static void fire_deadline(conn *c)
{
    if (c->flags & CONN_CLOSING)
        return;
    if (c->flags & CONN_SHUT_AFTER_WRITE) { /* the grace period ran out */
        conn_close(c);
        return;
    }
    if (c->handler->on_deadline)
        c->handler->on_deadline(c);
}

/* Visits every slot whose tick has come. A connection whose deadline is
 * more than WHEEL_SLOTS seconds away is simply put back; each visit is O(1),
 * so a tick costs the connections due plus those a full wheel turn early. */
static void ticker_cb(uv_timer_t *t)
{
    server *srv = t->data;
    uint32_t now = server_now_tick(srv);
    while (srv->wheel_pos < now) {
        uint32_t tick = ++srv->wheel_pos;
        conn *c = srv->wheel[tick % WHEEL_SLOTS];
        srv->wheel[tick % WHEEL_SLOTS] = NULL;
        while (c) {
            conn *next = c->wheel_next;
            c->flags &= ~CONN_IN_WHEEL;
            c->wheel_prev = c->wheel_next = NULL;
            if (c->deadline <= tick) {
                c->deadline = 0;
                fire_deadline(c);
            } else {
                wheel_insert(srv, c);
            }
            c = next;
        }
    }
}

/* ---- closing ----------------------------------------------------------- */

static void outq_free(outq *q)
{
    if (!q)
        return;
    for (uint32_t i = q->head; i < q->tail; i++)
        sbuf_unref(q->items[i]);
    free(q->items);
    free(q->iov);
    free(q);
}

static void unlink_dirty(server *srv, conn *c)
{
    for (conn **p = &srv->dirty; *p; p = &(*p)->dirty_next)
        if (*p == c) {
            *p = c->dirty_next;
            break;
        }
    c->flags &= ~CONN_DIRTY;
}

static void peer_release(server *srv, conn *c)
{
    peer_entry *e = c->peer;
    if (!e)
        return;
    c->peer = NULL;
    if (--e->conns == 0) {
        HASH_DEL(srv->peers, e);
        free(e);
    }
}

/* The backend is done with closed c: free it at the end of this pass (the
 * code that closed it may still read its flags until then). */
static void conn_released(conn *c)
{
    server *srv = conn_server(c);
    c->fd = -1;
    c->dirty_next = srv->closed;
    srv->closed = c;
}

/* Frees what conn_close left: nothing calls back into these any more. */
static void free_closed(server *srv)
{
    while (srv->closed) {
        conn *c = srv->closed;
        srv->closed = c->dirty_next;
        outq_free(c->out);
        free(c->in);
        if (c->flags & CONN_TLS)
            tls_conn_free(c);
        srv->conns_open--;
        free(c);
    }
}

void conn_close(conn *c)
{
    if (c->flags & CONN_CLOSING)
        return;
    server *srv = conn_server(c);
    c->flags |= CONN_CLOSING;
    wheel_remove(srv, c);
    if (c->handler->on_close)
        c->handler->on_close(c);
    peer_release(srv, c);
    if (c->flags & CONN_DIRTY)
        unlink_dirty(srv, c);
    if ((size_t)c->fd < srv->by_fd_cap && srv->by_fd[c->fd] == c)
        srv->by_fd[c->fd] = NULL;
    /* no backend: a harness's connection (tests/fuzz) with no socket */
    if (!srv->io || srv->io->release(c))
        conn_released(c);
}

void server_free_closed(server *srv)
{
    free_closed(srv);
}

/* Reads continue (and are discarded) until the peer's EOF or the grace
 * deadline: closing with unread input would send a RST that can destroy
 * the reply still in flight. */
static void begin_shutdown(conn *c)
{
    if (shutdown(c->fd, SHUT_WR) != 0)
        conn_close(c);
}

void conn_close_after_write(conn *c, uint32_t grace_ms)
{
    if (c->flags & (CONN_CLOSING | CONN_SHUT_AFTER_WRITE))
        return;
    c->flags |= CONN_SHUT_AFTER_WRITE;
    conn_set_deadline(c, grace_ms ? grace_ms : 1000);
    if (c->flags & CONN_READ_PAUSED) {
        c->flags &= ~CONN_READ_PAUSED;
        if (conn_server(c)->io)
            conn_server(c)->io->resume_read(c); /* only to see EOF; the bytes are discarded */
        if (c->flags & CONN_CLOSING)
            return; /* resuming failed (out of memory): closed */
    }
    if (!c->out)
        shutdown_when_drained(c);
}

/* ---- writing ----------------------------------------------------------- */

static void mark_dirty(conn *c)
{
    /* never a closed one: its dirty_next links the list of what to free */
    if (c->flags & (CONN_DIRTY | CONN_CLOSING))
        return;
    server *srv = conn_server(c);
    c->flags |= CONN_DIRTY;
    c->dirty_next = srv->dirty;
    srv->dirty = c;
}

static int outq_push(conn *c, sbuf *buf)
{
    outq *q = c->out;
    if (!q) {
        q = calloc(1, sizeof(*q));
        if (!q)
            return -1;
        q->cap = 4;
        q->items = malloc(q->cap * sizeof(*q->items));
        if (!q->items) {
            free(q);
            return -1;
        }
        c->out = q;
    }
    if (q->tail == q->cap) {
        if (q->head > 0 && q->inflight == 0) {
            memmove(q->items, q->items + q->head, (q->tail - q->head) * sizeof(*q->items));
            q->tail -= q->head;
            q->head = 0;
        } else {
            sbuf **items = realloc(q->items, 2 * q->cap * sizeof(*items));
            if (!items)
                return -1;
            q->items = items;
            q->cap *= 2;
        }
    }
    q->items[q->tail++] = sbuf_ref(buf);
    q->bytes += buf->len;
    mark_dirty(c);
    return 0;
}

static size_t outbuf_limit(conn *c)
{
    return c->handler->max_outbuf ? c->handler->max_outbuf
                                  : (size_t)conn_server(c)->cfg->max_outbuf;
}

int conn_send(conn *c, sbuf *buf)
{
    if (c->flags & (CONN_CLOSING | CONN_SHUT_AFTER_WRITE))
        return CONN_SEND_CLOSED;
    size_t queued = c->out ? c->out->bytes : 0;
    if (queued + buf->len > outbuf_limit(c))
        return CONN_SEND_OVERFLOW;
    return outq_push(c, buf) == 0 ? CONN_SEND_OK : CONN_SEND_OVERFLOW;
}

int conn_send_force(conn *c, sbuf *buf)
{
    if (c->flags & (CONN_CLOSING | CONN_SHUT_AFTER_WRITE))
        return CONN_SEND_CLOSED;
    return outq_push(c, buf) == 0 ? CONN_SEND_OK : CONN_SEND_OVERFLOW;
}

int conn_send_copy(conn *c, const void *data, size_t len)
{
    sbuf *b = sbuf_from(data, len);
    if (!b)
        return CONN_SEND_OVERFLOW;
    int r = conn_send_force(c, b);
    sbuf_unref(b);
    return r;
}

size_t conn_queued_bytes(const conn *c)
{
    return c->out ? c->out->bytes : 0;
}

void conn_drop_pending(conn *c)
{
    outq *q = c->out;
    if (!q)
        return;
    uint32_t keep = q->head + q->inflight;
    /* a partly written head buffer must be finished or the stream breaks */
    if (q->first_off > 0 && keep == q->head)
        keep = q->head + 1;
    /* TLS records already made must go: the peer counts them */
    if (keep < q->head + q->sealed)
        keep = q->head + q->sealed;
    for (uint32_t i = keep; i < q->tail; i++) {
        q->bytes -= q->items[i]->len;
        sbuf_unref(q->items[i]);
    }
    q->tail = keep;
}

/* Removes `written` bytes from the front of the queue. */
static void outq_consume(outq *q, size_t written)
{
    q->bytes -= written;
    while (written > 0) {
        sbuf *b = q->items[q->head];
        size_t left = b->len - q->first_off;
        if (written < left) {
            q->first_off += (uint32_t)written;
            return;
        }
        written -= left;
        q->first_off = 0;
        sbuf_unref(b);
        q->head++;
        if (q->sealed)
            q->sealed--;
    }
}

/* Items that may be written now: all, or on a TLS connection the sealed ones. */
static size_t writable_items(const conn *c, const outq *q)
{
    return (c->flags & CONN_TLS) ? q->sealed : q->tail - q->head;
}

/* Points a vector at the first n writable items (at most IOV_MAX: the rest
 * goes in a later write), growing it as needed; returns how many it holds. */
static size_t fill_iov(struct iovec **iovp, size_t *capp, const outq *q, size_t n)
{
    if (n > IOV_MAX)
        n = IOV_MAX;
    if (n > *capp) {
        size_t cap = *capp ? *capp : 16;
        while (cap < n)
            cap *= 2;
        struct iovec *iov = realloc(*iovp, cap * sizeof(*iov));
        if (!iov)
            n = *capp;
        else {
            *iovp = iov;
            *capp = cap;
        }
    }
    struct iovec *iov = *iovp;
    for (size_t i = 0; i < n; i++) {
        sbuf *b = q->items[q->head + i];
        size_t off = i == 0 ? q->first_off : 0;
        iov[i] = (struct iovec){.iov_base = b->data + off, .iov_len = b->len - off};
    }
    return n;
}

static void queue_drained(conn *c)
{
    outq_free(c->out);
    c->out = NULL;
    if (c->flags & CONN_SHUT_AFTER_WRITE)
        shutdown_when_drained(c);
}

/* ---- TLS (net/tls.h): ciphertext in the queue -------------------------- */

/* Queues ciphertext (or a raw reply) ahead of the plaintext not yet sealed,
 * behind the ciphertext already queued. Takes a new reference. */
static int queue_sealed(conn *c, sbuf *w)
{
    if (outq_push(c, w) < 0)
        return -1;
    outq *q = c->out;
    uint32_t at = q->head + q->sealed;
    if (at < q->tail - 1) {
        memmove(q->items + at + 1, q->items + at, (q->tail - 1 - at) * sizeof(*q->items));
        q->items[at] = w;
    }
    q->sealed++;
    return 0;
}

/* Queues what TLS just produced for c (handshake, records, alerts). */
static int queue_wire(conn *c)
{
    sbuf *w = tls_take_wire();
    if (!w)
        return 0;
    int r = queue_sealed(c, w);
    sbuf_unref(w);
    return r;
}

/* Encrypts the plaintext queued behind the sealed items into one buffer of
 * records (small buffers coalesced into full records). Plaintext waits while
 * the handshake is under way. Returns 0 or -1 (the connection is broken). */
static int seal_queue(conn *c, outq *q)
{
    uint32_t first = q->head + q->sealed;
    if (first == q->tail || !tls_handshake_done(c))
        return 0;
    size_t plain = 0;
    for (uint32_t i = first; i < q->tail; i++) {
        if (tls_seal(c, q->items[i]->data, q->items[i]->len) < 0)
            goto fail;
        plain += q->items[i]->len;
    }
    if (tls_seal_end(c) < 0)
        goto fail;
    sbuf *w = tls_take_wire();
    for (uint32_t i = first; i < q->tail; i++)
        sbuf_unref(q->items[i]);
    q->tail = first;
    q->bytes -= plain;
    if (w) { /* the slot of the first plaintext item is free */
        q->items[q->tail++] = w;
        q->bytes += w->len;
        q->sealed++;
    }
    return 0;
fail:
    sbuf_unref(tls_take_wire());
    return -1;
}

/* A drained connection that is to close: a TLS one says close_notify first
 * (queued, and back here when it is written). */
static void shutdown_when_drained(conn *c)
{
    if (c->flags & CONN_TLS) {
        tls_close_notify(c);
        if (queue_wire(c) < 0) {
            conn_close(c);
            return;
        }
        if (c->out)
            return;
    }
    begin_shutdown(c);
}

/* Tells the protocol its queue is back within --max-outbuf, once asked. */
static void check_drained(conn *c)
{
    if ((c->flags & (CONN_WANT_DRAIN | CONN_CLOSING)) != CONN_WANT_DRAIN)
        return;
    if (conn_queued_bytes(c) > outbuf_limit(c))
        return;
    c->flags &= ~CONN_WANT_DRAIN;
    if (c->handler->on_drain)
        c->handler->on_drain(c);
}

void conn_notify_drain(conn *c)
{
    if (c->flags & CONN_CLOSING)
        return;
    c->flags |= CONN_WANT_DRAIN;
    mark_dirty(c); /* the flusher checks it even when nothing is left to write */
}

/* Seals a TLS connection's plaintext, then has the backend write what may
 * be written. */
static void flush_conn(conn *c)
{
    outq *q = c->out;
    if (!q || (c->flags & (CONN_WRITING | CONN_CLOSING)))
        return;
    if ((c->flags & CONN_TLS) && seal_queue(c, q) < 0) {
        conn_close(c);
        return;
    }
    if (writable_items(c, q) > 0)
        conn_server(c)->io->write(c);
    else if (q->head == q->tail)
        queue_drained(c);
    /* else TLS: the plaintext waits for the handshake */
}

static void flush_dirty(server *srv)
{
    while (srv->dirty) {
        conn *c = srv->dirty;
        srv->dirty = c->dirty_next;
        c->dirty_next = NULL;
        c->flags &= ~CONN_DIRTY;
        flush_conn(c);
        /* may run the protocol, which may queue more and mark c (or others)
         * dirty again: the loop takes them in this same pass */
        check_drained(c);
    }
}

/* After the pass's I/O: every write, the backend's leftovers (reads that
 * did not fit the last pass, or that a resume asked for), every write again,
 * then the memory of what closed. Writes first: an answer queued in this
 * poll phase goes out before a resumed read meets the peer's EOF, which
 * closes the connection and would drop it. */
static void check_cb(uv_check_t *h)
{
    server *srv = h->data;
    flush_dirty(srv);
    srv->io->pass(srv);
    flush_dirty(srv);
    srv->io->submit(srv);
    free_closed(srv);
    if (srv->pass_read_ns) {
        metrics_loop_pass(srv->pass_read_ns);
        srv->pass_read_ns = 0;
    }
}

/* Before polling: what timers and other callbacks queued. */
static void prepare_cb(uv_prepare_t *h)
{
    server *srv = h->data;
    flush_dirty(srv);
    srv->io->submit(srv);
    free_closed(srv);
}

/* ---- reading ----------------------------------------------------------- */

static int in_append(conn *c, const uint8_t *data, size_t len)
{
    conn_input *in = c->in;
    size_t have = in ? in->len : 0;
    size_t need = have + len;
    if (need >= UINT32_MAX)
        return -1;
    if (!in || need + 1 > in->cap) { /* +1: room for a NUL after the data */
        size_t cap = in ? in->cap : 1024;
        while (cap < need + 1)
            cap *= 2;
        in = realloc(in, sizeof(*in) + cap);
        if (!in)
            return -1;
        if (!c->in)
            in->len = 0;
        in->cap = (uint32_t)cap;
        c->in = in;
    }
    memcpy(in->data + in->len, data, len);
    in->len = (uint32_t)need;
    return 0;
}

/* Hands data to the protocol and keeps what it did not consume. */
static void deliver(conn *c, uint8_t *data, size_t len)
{
    bool from_in = c->in && data == c->in->data;
    size_t used = c->handler->on_read(c, data, len);
    if (c->flags & CONN_CLOSING)
        return;
    size_t rest = len - used;
    if (from_in) {
        if (rest == 0) {
            free(c->in);
            c->in = NULL;
        } else if (used > 0) {
            memmove(c->in->data, c->in->data + used, rest);
            c->in->len = (uint32_t)rest;
        }
    } else if (rest > 0 && in_append(c, data + used, rest) < 0) {
        conn_close(c);
    }
}

#define TLS_PORT_BODY "This port speaks TLS: use https:// or wss://\n"
_Static_assert(sizeof(TLS_PORT_BODY) - 1 == 45, "the Content-Length below");
static const char tls_port_reply[] = "HTTP/1.1 400 Bad Request\r\n"
                                     "Server: chatd\r\n"
                                     "Content-Type: text/plain; charset=utf-8\r\n"
                                     "Content-Length: 45\r\n"
                                     "Connection: close\r\n"
                                     "\r\n" TLS_PORT_BODY;

/* TLS failed on c: answer what can be answered, then close. */
static void tls_failed(conn *c, long why)
{
    if (why == TLS_READ_EOF) { /* close_notify: the peer is done, like EOF */
        conn_close(c);
        return;
    }
    if (c->flags & CONN_SHUT_AFTER_WRITE)
        return; /* already closing: the grace deadline or the peer's EOF ends it */
    if (why == TLS_READ_HTTP) {
        /* plain HTTP on the TLS port: a plain answer the browser can show */
        sbuf *b = sbuf_from(tls_port_reply, sizeof(tls_port_reply) - 1);
        if (!b || queue_sealed(c, b) < 0) {
            sbuf_unref(b);
            conn_close(c);
            return;
        }
        sbuf_unref(b);
    }
    conn_close_after_write(c, 1000); /* the alert, if any, is queued */
}

/* Decrypts what was read (into the loop's second shared buffer) and hands
 * the plaintext on exactly as read_cb hands on plain bytes. The fed
 * ciphertext is always used up: what the protocol does not take now (it
 * paused, say) is kept in c->in like plain input. */
static void read_tls(conn *c, server *srv, const uint8_t *data, size_t nread)
{
    bool was_ready = tls_handshake_done(c);
    bool plaintext = false;
    size_t queued_before = c->out ? c->out->bytes : 0;
    tls_feed(data, nread);
    while (!(c->flags & CONN_CLOSING)) {
        long n = tls_read(c, srv->tls_buf, srv->read_buf_size);
        if (n == TLS_READ_HTTP)
            sbuf_unref(tls_take_wire()); /* nothing TLS may precede the plain reply */
        else if (queue_wire(c) < 0) {
            conn_close(c);
            break;
        }
        if (n == TLS_READ_AGAIN) {
            /* Records that carry no data but make TLS answer (a KeyUpdate
             * asking for one back, a renegotiation refused with an alert)
             * grow the queue of a peer that never reads: grown by this
             * input, past the queue bound, with nothing delivered, it is a
             * slow reader (a part of a record grows nothing) */
            if (!plaintext && c->out && c->out->bytes > queued_before &&
                c->out->bytes > outbuf_limit(c)) {
                log_info("tls: a peer that sends records without data and reads nothing "
                         "passed --max-outbuf; closing it");
                conn_drop_pending(c);
                conn_close(c);
            }
            break;
        }
        if (n < 0) {
            tls_failed(c, n);
            break;
        }
        plaintext = true;
        c->last_rx = server_now_ms(srv); /* data, not TLS housekeeping, keeps a peer alive */
        if (c->flags & CONN_SHUT_AFTER_WRITE)
            continue; /* draining before close: input is no longer wanted */
        if ((c->flags & CONN_READ_PAUSED) || c->in) {
            if (in_append(c, srv->tls_buf, (size_t)n) < 0) {
                conn_close(c);
                break;
            }
            if (!(c->flags & CONN_READ_PAUSED))
                deliver(c, c->in->data, c->in->len);
        } else {
            deliver(c, srv->tls_buf, (size_t)n);
        }
    }
    tls_feed(NULL, 0);
    sbuf_unref(tls_take_wire()); /* after a close above: nothing is left behind */
    if (!was_ready && !(c->flags & CONN_CLOSING) && c->out && tls_handshake_done(c))
        mark_dirty(c); /* plaintext queued during the handshake can go now */
}

/* Hands nread bytes just read to the protocol; data[nread] is writable.
 * While reads are paused (io_uring delivers what was already under way) the
 * bytes wait in c->in. */
static void got_bytes(conn *c, uint8_t *data, size_t nread)
{
    server *srv = conn_server(c);
    if (srv->pass_read_ns == 0)
        srv->pass_read_ns = uv_hrtime();
    if (c->flags & CONN_TLS) {
        read_tls(c, srv, data, nread); /* it sets last_rx when data arrives */
        return;
    }
    c->last_rx = server_now_ms(srv);
    if (c->flags & CONN_SHUT_AFTER_WRITE)
        return; /* draining before close: input is no longer wanted */
    if (c->in || (c->flags & CONN_READ_PAUSED)) {
        if (in_append(c, data, nread) < 0) {
            conn_close(c);
            return;
        }
        if (!(c->flags & CONN_READ_PAUSED))
            deliver(c, c->in->data, c->in->len);
    } else {
        deliver(c, data, nread);
    }
}

void conn_pause_read(conn *c)
{
    if (c->flags & (CONN_READ_PAUSED | CONN_CLOSING))
        return;
    c->flags |= CONN_READ_PAUSED;
}

void conn_resume_read(conn *c)
{
    if (!(c->flags & CONN_READ_PAUSED) || (c->flags & CONN_CLOSING))
        return;
    c->flags &= ~CONN_READ_PAUSED;
    if (c->in)
        deliver(c, c->in->data, c->in->len);
    if (!(c->flags & (CONN_READ_PAUSED | CONN_CLOSING)) && conn_server(c)->io)
        conn_server(c)->io->resume_read(c);
}

#include "net/io_epoll.c"
#ifdef CHATD_HAVE_LIBURING
#include "net/io_uring.c"
#endif

int conn_getpeername(const conn *c, struct sockaddr *addr, int *len)
{
    if (c->fd < 0)
        return UV_EBADF;
    socklen_t n = (socklen_t)*len;
    if (getpeername(c->fd, addr, &n) != 0)
        return uv_translate_sys_error(errno);
    *len = (int)n;
    return 0;
}

/* ---- accepting --------------------------------------------------------- */

/* The address key of a peer (as accept(2) gave it); false when unknown. */
static bool peer_key(const struct sockaddr_storage *ss, peer_entry *key)
{
    memset(key, 0, sizeof(*key));
    if (ss->ss_family == AF_INET) {
        key->family = 4;
        memcpy(key->addr, &((const struct sockaddr_in *)ss)->sin_addr, 4);
        return true;
    }
    if (ss->ss_family != AF_INET6)
        return false;
    const uint8_t *a = ((const struct sockaddr_in6 *)ss)->sin6_addr.s6_addr;
    static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(a, v4mapped, sizeof(v4mapped)) == 0) {
        key->family = 4;
        memcpy(key->addr, a + 12, 4);
    } else {
        key->family = 6;
        memcpy(key->addr, a, 16);
    }
    return true;
}

/* Counts c against its address. False when the address is at its cap
 * (--max-conns-per-ip; 0 = no cap) or memory ran out. */
static bool peer_admit(server *srv, conn *c, const struct sockaddr_storage *ss)
{
    peer_entry key;
    if (!peer_key(ss, &key))
        return true; /* no address to count: let the protocol see it */
    peer_entry *e;
    HASH_FIND(hh, srv->peers, &key, PEER_KEY_LEN, e);
    int64_t cap = srv->cfg->max_conns_per_ip;
    if (e && cap > 0 && (int64_t)e->conns >= cap)
        return false;
    if (!e) {
        e = calloc(1, sizeof(*e));
        if (!e)
            return false;
        memcpy(e->addr, key.addr, sizeof(e->addr));
        e->family = key.family;
        HASH_ADD(hh, srv->peers, addr, PEER_KEY_LEN, e);
    }
    e->conns++;
    c->peer = e;
    return true;
}

/* Refused connections get this and nothing else: reads are discarded. */
static size_t refused_on_read(conn *c, uint8_t *data, size_t len)
{
    (void)c;
    (void)data;
    return len;
}

static const conn_handler refused_handler = {.on_read = refused_on_read};

#define REFUSED_BODY                                                                               \
    "{\"status\":false,\"code\":\"too_many_connections\","                                         \
    "\"msg\":\"too many connections from your address\"}"
_Static_assert(sizeof(REFUSED_BODY) - 1 == 93, "the Content-Length below");
static const char refused_reply[] = "HTTP/1.1 503 Service Unavailable\r\n"
                                    "Server: chatd\r\n"
                                    "Content-Type: application/json; charset=utf-8\r\n"
                                    "Content-Length: 93\r\n"
                                    "Connection: close\r\n"
                                    "Retry-After: 1\r\n"
                                    "\r\n" REFUSED_BODY;

/* Answers the one fixed 503 and closes once it is written; warns at most
 * once per REFUSE_LOG_INTERVAL_MS with the count since the last warning. */
static void refuse_conn(server *srv, conn *c)
{
    srv->conns_refused++;
    srv->refused_unlogged++;
    uint64_t now = uv_now(srv->loop);
    if (srv->refuse_log_ms == 0 || now - srv->refuse_log_ms >= REFUSE_LOG_INTERVAL_MS) {
        log_warn("refused %llu connection(s): over --max-conns-per-ip %lld from one address",
                 (unsigned long long)srv->refused_unlogged, (long long)srv->cfg->max_conns_per_ip);
        srv->refuse_log_ms = now;
        srv->refused_unlogged = 0;
    }
    c->handler = &refused_handler;
    conn_send_copy(c, refused_reply, sizeof(refused_reply) - 1);
    conn_close_after_write(c, REFUSE_GRACE_MS);
}

/* A listening socket, watched by libuv (level-triggered, so connections
 * left in the backlog after ACCEPTS_PER_PASS are taken on the next pass). */
struct server_listener {
    uv_poll_t poll;
    int fd;
    server *srv;
    const conn_handler *handler;
    bool cap_per_ip; /* --max-conns-per-ip applies (the main listener) */
    bool tls;        /* its connections speak TLS */
    bool paused;     /* by pause_accepting */
    server_listener *next;
};

static void accept_cb(uv_poll_t *w, int status, int events);

static void accept_retry_cb(uv_timer_t *t)
{
    server *srv = t->data;
    for (server_listener *l = srv->listeners; l; l = l->next)
        if (l->paused) {
            l->paused = false;
            uv_poll_start(&l->poll, UV_READABLE, accept_cb);
        }
}

/* Out of file descriptors (or kernel memory): stop accepting for
 * ACCEPT_RETRY_MS rather than spin on a listener that stays readable. The
 * connections wait in the backlog meanwhile. */
static void pause_accepting(server *srv, int err)
{
    uint64_t now = uv_now(srv->loop);
    if (srv->accept_errors_logged_ms == 0 || now - srv->accept_errors_logged_ms >= 1000) {
        log_warn("accept: %s with %llu connections open; not accepting for %d ms", strerror(err),
                 (unsigned long long)srv->conns_open, ACCEPT_RETRY_MS);
        srv->accept_errors_logged_ms = now;
    }
    for (server_listener *l = srv->listeners; l; l = l->next)
        if (!l->paused) {
            uv_poll_stop(&l->poll);
            l->paused = true;
        }
    uv_timer_start(&srv->accept_retry, accept_retry_cb, ACCEPT_RETRY_MS, 0);
}

/* Keeps c findable by its fd (server_each_conn, read_left_over). */
static int by_fd_put(server *srv, conn *c)
{
    if ((size_t)c->fd >= srv->by_fd_cap) {
        size_t cap = srv->by_fd_cap ? srv->by_fd_cap : 1024;
        while (cap <= (size_t)c->fd)
            cap *= 2;
        conn **t = realloc(srv->by_fd, cap * sizeof(*t));
        if (!t)
            return -1;
        memset(t + srv->by_fd_cap, 0, (cap - srv->by_fd_cap) * sizeof(*t));
        srv->by_fd = t;
        srv->by_fd_cap = cap;
    }
    srv->by_fd[c->fd] = c;
    return 0;
}

static void accept_one(server *srv, server_listener *l, int fd, const struct sockaddr_storage *ss)
{
    /* a TLS connection is a larger struct (net/tls.c); a plain one stays a conn */
    conn *c = calloc(1, l->tls ? tls_conn_size() : sizeof(*c));
    if (!c) {
        log_error("out of memory accepting a connection");
        close(fd);
        return;
    }
    c->srv = srv;
    c->fd = fd;
    int on = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    if (by_fd_put(srv, c) < 0 || srv->io->add(c) != 0) {
        log_error("cannot watch a new connection: %s", strerror(errno));
        if ((size_t)fd < srv->by_fd_cap)
            srv->by_fd[fd] = NULL;
        close(fd);
        free(c);
        return;
    }
    srv->conns_open++;
    srv->conns_total++;
    c->last_rx = server_now_ms(srv);
    if (l->tls && tls_conn_start(c) < 0) {
        log_error("out of memory starting TLS on a connection");
        c->handler = &refused_handler;
        conn_close(c);
        return;
    }
    if (l->cap_per_ip && !peer_admit(srv, c, ss)) {
        refuse_conn(srv, c); /* its reads are discarded until the peer's EOF */
        return;
    }
    c->handler = l->handler;
    if (c->handler->on_open)
        c->handler->on_open(c);
}

static void accept_cb(uv_poll_t *w, int status, int events)
{
    (void)events;
    server_listener *l = w->data;
    server *srv = l->srv;
    if (status < 0) {
        log_warn("accept failed: %s", uv_strerror(status));
        return;
    }
    for (int i = 0; i < ACCEPTS_PER_PASS && !srv->stopping; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        memset(&ss, 0, sizeof(ss));
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            accept_one(srv, l, fd, &ss);
            if (l->paused || uv_is_closing((uv_handle_t *)&l->poll))
                return;
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
            continue; /* that one is gone; the next may be fine */
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
            pause_accepting(srv, errno);
        else if (errno != EAGAIN && errno != EWOULDBLOCK)
            log_warn("accept failed: %s", strerror(errno));
        return;
    }
}

/* Binds host:port and listens, for l's protocol. */
static int listen_on(server *srv, server_listener *l, const char *host, int port, bool reuseport)
{
    struct sockaddr_storage addr;
    memset(&addr, 0, sizeof(addr));
    int r = uv_ip4_addr(host, port, (struct sockaddr_in *)&addr);
    if (r < 0)
        r = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr);
    if (r < 0)
        return r;
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return uv_translate_sys_error(errno);
    int on = 1;
    socklen_t alen =
        addr.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0) ||
        bind(fd, (struct sockaddr *)&addr, alen) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
        r = uv_translate_sys_error(errno);
        close(fd);
        return r;
    }
    r = uv_poll_init(srv->loop, &l->poll, fd);
    if (r < 0) {
        close(fd);
        return r;
    }
    l->fd = fd;
    l->srv = srv;
    l->poll.data = l;
    uv_poll_start(&l->poll, UV_READABLE, accept_cb);
    l->next = srv->listeners;
    srv->listeners = l;
    return 0;
}

static void free_listener_cb(uv_handle_t *h)
{
    server_listener *l = h->data;
    close(l->fd); /* after libuv let go of it */
    free(l);
}

static int add_listener(server *srv, const char *host, int port, const conn_handler *handler,
                        bool cap_per_ip, bool tls, bool reuseport)
{
    server_listener *l = calloc(1, sizeof(*l));
    if (!l)
        return UV_ENOMEM;
    l->handler = handler;
    l->cap_per_ip = cap_per_ip;
    l->tls = tls;
    int r = listen_on(srv, l, host, port, reuseport);
    if (r < 0)
        free(l);
    return r;
}

int server_listen(server *srv, const char *host, int port, const conn_handler *handler)
{
    return add_listener(srv, host, port, handler, false, false, false);
}

/* The backend --io asks for: auto takes io_uring when it starts here (the
 * kernel has it and allows it), else epoll. */
static int io_start(server *srv)
{
    const char *want = srv->cfg->io && srv->cfg->io[0] ? srv->cfg->io : "auto";
#ifdef CHATD_HAVE_LIBURING
    if (strcmp(want, "epoll") != 0) {
        srv->io = &io_uring_ops;
        int r = srv->io->init(srv);
        if (r == 0)
            return 0;
        if (strcmp(want, "uring") == 0) {
            log_error("--io uring: io_uring cannot start here: %s", uv_strerror(r));
            return r;
        }
        log_info("io_uring cannot start here (%s); using epoll", uv_strerror(r));
    }
#else
    if (strcmp(want, "uring") == 0) {
        log_error("--io uring: this chatd was built without liburing");
        return UV_ENOTSUP;
    }
#endif
    srv->io = &io_epoll;
    return srv->io->init(srv);
}

int server_init(server *srv, uv_loop_t *loop, const config *cfg, const conn_handler *handler)
{
    memset(srv, 0, sizeof(*srv));
    srv->loop = loop;
    srv->cfg = cfg;
    loop->data = srv;
    srv->start_ms = uv_now(loop);
    srv->wheel_pos = server_now_tick(srv);
    srv->read_buf_size = READ_BUF_SIZE;
    if (sodium_init() < 0)
        return UV_EINVAL;
    randombytes_buf(peer_hash_key, sizeof(peer_hash_key));
    srv->read_buf = malloc(READ_BUF_SIZE + 1); /* +1: room for a NUL after the data */
    if (!srv->read_buf)
        return UV_ENOMEM;
    if (tls_enabled()) { /* the plaintext of TLS reads: the listener speaks TLS */
        srv->tls_buf = malloc(READ_BUF_SIZE + 1);
        if (!srv->tls_buf)
            return UV_ENOMEM;
    }
    int r = io_start(srv);
    if (r < 0) {
        srv->io = NULL;
        return r;
    }

    r = add_listener(srv, cfg->listen_host, cfg->listen_port, handler, true, srv->tls_buf != NULL,
                     cfg->reuseport);
    if (r < 0)
        return r;

    uv_check_init(loop, &srv->flusher);
    srv->flusher.data = srv;
    uv_check_start(&srv->flusher, check_cb);
    uv_prepare_init(loop, &srv->pre_flusher);
    srv->pre_flusher.data = srv;
    uv_prepare_start(&srv->pre_flusher, prepare_cb);
    uv_timer_init(loop, &srv->accept_retry);
    srv->accept_retry.data = srv;
    uv_timer_init(loop, &srv->ticker);
    srv->ticker.data = srv;
    uv_timer_start(&srv->ticker, ticker_cb, WHEEL_TICK_MS, WHEEL_TICK_MS);
    return 0;
}

const char *server_io_name(const server *srv)
{
    return srv->io ? srv->io->name : "none";
}

void server_each_conn(server *srv, void (*fn)(conn *c, void *arg), void *arg)
{
    for (size_t fd = 0; fd < srv->by_fd_cap; fd++) {
        conn *c = srv->by_fd[fd];
        if (c && !(c->flags & CONN_CLOSING))
            fn(c, arg);
    }
}

void server_stop_listening(server *srv)
{
    while (srv->listeners) {
        server_listener *l = srv->listeners;
        srv->listeners = l->next;
        uv_close((uv_handle_t *)&l->poll, free_listener_cb);
    }
    if (srv->accept_retry.loop)
        uv_timer_stop(&srv->accept_retry);
}

void server_close(server *srv)
{
    server_stop_listening(srv);
    free_closed(srv); /* the caller closed every connection before */
    uv_handle_t *own[] = {(uv_handle_t *)&srv->flusher, (uv_handle_t *)&srv->pre_flusher,
                          (uv_handle_t *)&srv->ticker, (uv_handle_t *)&srv->accept_retry};
    for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
        if (own[i]->loop && !uv_is_closing(own[i]))
            uv_close(own[i], NULL);
    if (srv->io && srv->io_state)
        srv->io->close(srv);
    free_closed(srv); /* io_uring: what its close let go of */
    free(srv->read_buf);
    srv->read_buf = NULL;
    free(srv->tls_buf);
    srv->tls_buf = NULL;
    free(srv->by_fd);
    srv->by_fd = NULL;
    srv->by_fd_cap = 0;
    /* srv->peers is empty: each connection's close released its entry */
}
