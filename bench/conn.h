/* conn: one client TCP connection on the shared libuv loop, with the buffering every protocol
 * of chatd-bench needs and no allocation in steady state.
 *
 * Reading: every connection reads into one loop-wide buffer; the bytes of an incomplete
 * message left over from the previous read (the carry, at most one message) are put in
 * front of it first, so the owner's on_read always sees contiguous bytes and returns how many
 * it consumed. 19,000 idle connections thus cost no read buffers.
 *
 * Writing: the owner appends bytes to the out buffer (bconn_reserve/bconn_append) while it
 * handles a read, and the connection flushes once at the end of that read with uv_try_write.
 * Only when the socket is full does a uv_write go in flight; new bytes then go to a second
 * buffer, so a buffer libuv is still reading is never moved. Buffers grow to the largest
 * burst seen and are kept.
 *
 * TLS (wss://, https://): a connection with tls_host set before bconn_connect runs OpenSSL
 * over two memory BIOs; OpenSSL never touches the socket, so the handshake and every record
 * go through the same non-blocking libuv reads and writes. The owner still appends plaintext
 * to out; bconn_flush encrypts it into tout (once the handshake is done) and writes tout the
 * way out is written on a plain connection. Reads are decrypted into the shared buffer
 * before on_read, so owners never see TLS. The client does not verify the server's
 * certificate unless bconn_tls_init got a CA file (a benchmark on loopback). */
#ifndef BENCH_CONN_H
#define BENCH_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct bconn bconn;
struct ssl_st;

/* status: 0 when connected, else a libuv error. */
typedef void (*bconn_connect_fn)(bconn *c, int status);
/* Returns the number of bytes consumed from data (the rest is kept and shown again, with
 * more bytes after it, on the next read). May call bconn_close. */
typedef size_t (*bconn_read_fn)(bconn *c, char *data, size_t len);
/* The handle is closed; the bconn may be connected again or freed. status: why (0 after a
 * local bconn_close with status 0, UV_EOF when the peer closed, or an error). */
typedef void (*bconn_end_fn)(bconn *c, int status);

enum bconn_state { BCONN_IDLE, BCONN_CONNECTING, BCONN_OPEN, BCONN_CLOSING };

struct bconn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    enum bconn_state state;
    int end_status;
    char *out; /* bytes waiting to be written */
    size_t out_len, out_cap;
    char *wbuf; /* buffer of the uv_write in flight, or NULL */
    size_t wbuf_cap;
    char *spare; /* an empty buffer to swap in */
    size_t spare_cap;
    char *carry; /* incomplete message from the last read */
    size_t carry_len, carry_cap;
    bconn_connect_fn on_connect;
    bconn_read_fn on_read;
    bconn_end_fn on_end;
    uint64_t rx_bytes;    /* bytes read from the socket (ciphertext with TLS) */
    const char *tls_host; /* set before bconn_connect: speak TLS (SNI unless an IP) */
    struct ssl_st *ssl;   /* the TLS session, while connected */
    char *tout;           /* TLS: ciphertext waiting to be written */
    size_t tout_len, tout_cap;
};

/* The client TLS context, made once (ca_file NULL: no verification). 0 or -1. */
int bconn_tls_init(const char *ca_file);
/* The first TLS failure's OpenSSL message, or "". */
const char *bconn_tls_error(void);

/* Zeroes c (buffers included); call once before the first connect. */
void bconn_init(bconn *c);
/* Connects to dst, from src when not NULL. Returns a libuv error only when no handle could be
 * created (e.g. EMFILE); any later failure arrives as on_connect(status < 0) then on_end. */
int bconn_connect(bconn *c, const struct sockaddr_in *dst, const struct sockaddr_in *src);
/* Room for n more bytes at the end of the out buffer; fill it, then bconn_commit(c, n). */
char *bconn_reserve(bconn *c, size_t n);
static inline void bconn_commit(bconn *c, size_t n)
{
    c->out_len += n;
}
void bconn_append(bconn *c, const void *data, size_t n);
/* Writes what is buffered (done automatically after each on_read). */
void bconn_flush(bconn *c);
/* Bytes appended but not yet handed to the kernel. */
static inline size_t bconn_pending(const bconn *c)
{
    return c->out_len;
}
/* Closes the connection; with reset, by RST (no TIME_WAIT left behind). on_end follows. */
void bconn_close(bconn *c, int status, bool reset);
/* Frees the buffers of an ended (or never connected) connection. */
void bconn_free(bconn *c);

#endif
