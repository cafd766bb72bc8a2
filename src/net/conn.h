/* conn: one client TCP connection and the server that owns it.
 *
 * The struct is shared by the layers on top (HTTP, WebSocket, gateway): its
 * layout is kept small because an idle WebSocket connection must cost at most
 * a few hundred bytes of user space memory. Nothing is allocated per idle
 * connection besides this struct: reads land in one buffer shared by the loop
 * (only an incomplete frame or request is copied out into `in`), the
 * heartbeat uses one timer wheel for all connections, and the client id is
 * stored inline.
 *
 * Ownership: the server allocates a conn on accept; conn_close runs the
 * protocol's on_close hook and closes the socket at once, and the struct is
 * freed later in the same loop pass, once no callback is under way (so code
 * that closed it may still read its flags). Layers keep pointers to a conn
 * only while it is open (they must drop them in on_close).
 */
#ifndef CHATD_CONN_H
#define CHATD_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "core/sbuf.h"

typedef struct server server;
typedef struct conn conn;
typedef struct outq outq;
typedef struct http_state http_state;
typedef struct ws_extra ws_extra;
typedef struct uid_entry uid_entry;

/* What a protocol layer does with a connection's events. */
typedef struct conn_handler {
    /* A connection was accepted (or switched to this protocol). */
    void (*on_open)(conn *c);
    /* Bytes arrived; data is writable scratch valid only during the call,
     * and data[len] is writable too (room for a terminating NUL).
     * Returns how many bytes were consumed; the server keeps the rest and
     * hands it back, with more bytes appended, on the next read. */
    size_t (*on_read)(conn *c, uint8_t *data, size_t len);
    /* The deadline set with conn_set_deadline passed. */
    void (*on_deadline)(conn *c);
    /* The connection is going away; undo every reference to it. */
    void (*on_close)(conn *c);
    /* The queue fell to --max-outbuf or below after conn_notify_drain asked
     * for it (once per request). May be NULL for a protocol that never asks. */
    void (*on_drain)(conn *c);
    /* Queued bytes past which conn_send refuses (CONN_SEND_OVERFLOW); 0 =
     * --max-outbuf. Lets a protocol whose peers are trusted back ends (the
     * GatewayWorker inner port) take more than a client may. */
    size_t max_outbuf;
} conn_handler;

/* 18 bytes, base64url without padding: a 2-byte node tag (which cluster node
 * holds the connection; random in single-node mode) and 128 random bits. */
#define CLIENT_ID_LEN 24

enum conn_flag {
    CONN_CLOSING = 1 << 0,          /* conn_close ran: no more I/O, freed after this pass */
    CONN_READ_PAUSED = 1 << 1,      /* reads stopped until conn_resume_read */
    CONN_DIRTY = 1 << 2,            /* on the server's flush list */
    CONN_SHUT_AFTER_WRITE = 1 << 3, /* close once the queue drains */
    CONN_WRITING = 1 << 4, /* epoll: waiting for room (EPOLLOUT); io_uring: a send in flight */
    CONN_IN_WHEEL = 1 << 5,
    CONN_WANT_DRAIN = 1 << 6, /* call on_drain once the queue is within --max-outbuf */
    CONN_TLS = 1 << 7,        /* a tls_conn (net/tls.h): TLS below the protocol */
    /* WebSocket state */
    CONN_WS = 1 << 8,
    CONN_WS_ECHO = 1 << 9,         /* the diagnostic echo endpoint */
    CONN_WS_CLOSE_SENT = 1 << 10,  /* our close frame is queued */
    CONN_WS_CLOSE_RECV = 1 << 11,  /* the peer's close frame arrived */
    CONN_WS_PING_SENT = 1 << 12,   /* heartbeat ping sent, awaiting life */
    CONN_WS_IN_FRAGMENT = 1 << 13, /* a fragmented message is open */
    CONN_IN_REGISTRY = 1 << 14,
    CONN_EXCLUDED = 1 << 15,   /* skipped by the group/broadcast send under way */
    CONN_CHAT_BOUND = 1 << 16, /* bound to a chat-service user by token */
    /* chat socket binds: the flags hold their state, so it costs no memory */
    CONN_BIND_PENDING = 1 << 17, /* a socket bind's token lookup is under way */
    CONN_BIND_FAILS = 3 << 18,   /* failed socket binds so far, a 2-bit counter */
    /* the I/O backend's (net/io_*.c) */
    CONN_READ_MORE = 1 << 20,  /* epoll: input may be left in the kernel: read next pass */
    CONN_RECV_ARMED = 1 << 21, /* io_uring: a multishot receive is armed */
};
#define CONN_BIND_FAILS_SHIFT 18

/* Input carried over between reads: an incomplete frame or request. */
typedef struct conn_input {
    uint32_t len, cap;
    uint8_t data[];
} conn_input;

/* Field order packs the struct to 152 bytes (a 160-byte malloc chunk: glibc
 * gives 152 usable bytes in it, so not one more field fits). The socket is a
 * plain non-blocking fd that net/server.c's I/O backend reads and writes,
 * not a libuv handle: uv_tcp_t alone was 248 bytes. */
struct conn {
    server *srv;
    const conn_handler *handler;
    int fd;
    uint32_t flags;
    uint32_t deadline;                 /* wheel tick; 0 = none */
    uint32_t last_rx;                  /* server_now_ms of the last byte received */
    uint32_t rate_stamp;               /* event rate limiter: loop ms clock of the last refill */
    uint32_t rate_tokens;              /* events the connection may still send now */
    uint8_t msg_opcode;                /* opcode of the open fragmented message */
    uint8_t utf8_state;                /* validator state across text fragments */
    char client_id[CLIENT_ID_LEN + 1]; /* here: it fills the gap before the pointers */
    conn_input *in;                    /* carried-over partial input, NULL when none */
    conn *wheel_prev, *wheel_next;
    conn *dirty_next; /* server flush list link; the free list's once closed */
    outq *out;        /* NULL when nothing is queued */
    union {
        http_state *http; /* before the upgrade: HTTP parsing state */
        ws_extra *wsx;    /* after: fragment assembly, session, groups; NULL when unused */
    };
    uid_entry *uid;            /* bound uid, NULL when unbound */
    conn *uid_prev, *uid_next; /* the uid's list of connections */
    struct peer_entry *peer;   /* the server's per-address entry, for --max-conns-per-ip */
};

static inline server *conn_server(const conn *c)
{
    return c->srv;
}

#endif
