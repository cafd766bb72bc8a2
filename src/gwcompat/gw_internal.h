/* gw_internal: what the parts of gwcompat share (not for other modules;
 * gw.h is the public contract). */
#ifndef CHATD_GW_INTERNAL_H
#define CHATD_GW_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/sbuf.h"
#include "gwcompat/gw_frame.h"
#include "net/conn.h"
#include "net/server.h"

#define GW_SESSION_MAX 65536          /* bytes of one serialized PHP session */
#define GW_AUTH_TIMEOUT_MS 10000      /* first frame (inner) or first event (Register) */
#define GW_AUTH_FRAME_MAX 4096        /* pack_len of a frame before authentication */
#define GW_REGISTER_MAX_GATEWAYS 1024 /* addresses a Register lists */

/* Inner connection state, kept in conn flags (an inner connection is never
 * a WebSocket, so these bits are free on it). */
#define CONN_GW_AUTHED (1u << 24)  /* passed the secret check (or none is set) */
#define CONN_GW_WORKER (1u << 25)  /* a BusinessWorker (cmd 200) */
#define CONN_GW_REFUSED (1u << 26) /* closed by gw_refuse (already logged) */

typedef struct gw_state {
    server *srv;
    const config *cfg;
    bool inner_on;
    uint32_t inner_ip; /* host byte order */
    uint16_t inner_port;
    char inner_addr[96];   /* "ip:port", as announced */
    uint16_t gateway_port; /* the public (WebSocket) port, in worker events */
    uint32_t max_frame;
    size_t max_outbuf;
    /* counters for /healthz */
    uint64_t frames_in, bad_inputs, slow_closes, events_out, events_dropped, clients_paused;
} gw_state;

extern gw_state gw;

/* gw_inner.c */
extern conn_handler gw_inner_handler;
/* Checks a {"secret_key":...} body in constant time (true without a secret). */
bool gw_secret_ok(const char *json, size_t len, char *worker_key, size_t key_cap);
/* Closes an inner or Register connection after a protocol error, with a
 * log line naming the peer and the reason. */
void gw_refuse(conn *c, const char *what, const char *why);
/* The same, once what is queued to c is written (an answer to the refusal). */
void gw_refuse_after_write(conn *c, const char *what, const char *why);
/* Sends a prepared buffer to an inner connection; a connection over
 * --gw-max-outbuf is closed as a slow reader (logged). */
void gw_send(conn *c, sbuf *buf);

/* gw_worker.c */
void gw_worker_add(conn *c, const char *worker_key);
void gw_worker_remove(conn *c);
size_t gw_worker_count(void);
void gw_worker_stop(void);

/* gw_register.c */
int gw_register_start(void);
void gw_register_stop(void);
/* The Register served in this process: adds / removes an address (the
 * node's own, when it announces to itself). */
void gw_register_local_add(const char *addr);
size_t gw_register_address_count(void);
/* Splits "HOST:PORT" (an empty HOST is 127.0.0.1). Returns 0 or -1. */
int gw_split_addr(const char *value, char *host, size_t cap, int *port);

#endif
