/* tls: TLS for the connections of the main listener (--tls-cert, --tls-key).
 *
 * The layers above (HTTP, WebSocket, gateway) never see TLS: the server
 * (net/server.c) decrypts what it reads before on_read, and encrypts what is
 * queued for a connection when it flushes the queue. The queue still holds
 * plaintext sbufs by reference until that flush, so a frame fanned out to N
 * connections is framed once and encrypted N times (unavoidable: every
 * connection has its own keys), never copied before that.
 *
 * OpenSSL never touches the socket. Each SSL has one small custom BIO: its
 * read side takes the ciphertext libuv just read into the loop's shared read
 * buffer (tls_feed), its write side appends records to an sbuf that the
 * server queues like any other buffer (tls_take_wire). So reads, writes and
 * the handshake run on the loop's own non-blocking path and never block it,
 * the handshake is part of the header phase (--header-timeout runs from
 * accept), and a TLS connection holds no buffer of its own between reads
 * besides OpenSSL's: with SSL_MODE_RELEASE_BUFFERS an idle SSL holds no
 * record buffers either. (A memory-BIO pair or SSL_set_fd would each keep a
 * buffer per connection, or fight libuv for the fd.)
 *
 * Memory: a TLS connection is a tls_conn (the conn plus one SSL pointer),
 * flagged CONN_TLS; plain connections stay a bare conn.
 *
 * The SSL_CTX is reference counted: tls_reload (the SIGHUP hook) builds a new
 * one from the new configuration's files and swaps it in for new
 * connections; open connections keep the one they started with. A certificate
 * or key that fails to load is logged and the old context stays.
 *
 * Threading: the loop thread only. The feed, the wire and the coalescing
 * scratch are per process, used by one connection at a time: every call that
 * can produce ciphertext is followed by tls_take_wire for that connection. */
#ifndef CHATD_TLS_H
#define CHATD_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/sbuf.h"
#include "net/conn.h"

/* Loads cfg->tls_cert/tls_key when set. Returns 0 (TLS on, or off when no
 * certificate is configured) or -1 after logging why. */
int tls_init(const config *cfg);
/* True when the main listener speaks TLS. */
bool tls_enabled(void);
/* Frees the context at exit (open connections hold their own reference). */
void tls_shutdown(void);
/* The reload hook (core/reload.h): reloads the certificate and key. */
int tls_reload(const config *old_cfg, const config *new_cfg);

/* Bytes to allocate for a TLS connection (a conn and its SSL). */
size_t tls_conn_size(void);
/* Starts the server side of TLS on a connection allocated with
 * tls_conn_size (zeroed) and sets CONN_TLS. Returns 0 or -1. */
int tls_conn_start(conn *c);
/* Frees the connection's SSL (the server frees the memory). */
void tls_conn_free(conn *c);

/* Ciphertext for the next tls_read calls (borrowed, until they return 0). */
void tls_feed(const uint8_t *data, size_t len);

enum tls_read_result {
    TLS_READ_AGAIN = 0, /* the fed bytes are used up: read more */
    TLS_READ_EOF = -1,  /* the peer's close_notify */
    TLS_READ_ERR = -2,  /* a fatal error (logged at debug); the wire may hold an alert */
    TLS_READ_HTTP = -3, /* the peer spoke plain HTTP to the TLS port */
};
/* Runs the handshake and decrypts up to cap bytes into out. Returns the
 * plaintext bytes (> 0) or an enum tls_read_result. */
long tls_read(conn *c, uint8_t *out, size_t cap);
/* True once the handshake finished (plaintext can be sealed). */
bool tls_handshake_done(conn *c);

/* Encrypts plaintext for c; small pieces are coalesced into one record until
 * tls_seal_end. Call only after the handshake. Returns 0 or -1. */
int tls_seal(conn *c, const uint8_t *data, size_t len);
int tls_seal_end(conn *c);
/* Queues close_notify once (after the handshake). */
void tls_close_notify(conn *c);

/* The ciphertext produced for the connection since the last call (handshake
 * messages, records, alerts), or NULL. The caller owns the reference. */
sbuf *tls_take_wire(void);

#endif
