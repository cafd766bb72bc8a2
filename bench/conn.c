/* conn: client TCP connections with shared read buffer and swap-on-stall out buffers; see
 * conn.h for the design. */
#include "conn.h"
#include "bench.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define READ_CHUNK (256 * 1024)

static char *g_rbuf;
static size_t g_rcap;
static char *g_cbuf; /* TLS: ciphertext as read, decrypted into g_rbuf */
static SSL_CTX *g_ctx;
static char g_tls_err[256];

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q)
        fail("out of memory (%zu bytes)", n);
    return q;
}

static size_t grow_to(size_t cap, size_t need)
{
    size_t n = cap ? cap : 256;
    while (n < need)
        n *= 2;
    return n;
}

void bconn_init(bconn *c)
{
    memset(c, 0, sizeof *c);
}

static void on_closed(uv_handle_t *h)
{
    bconn *c = h->data;
    c->state = BCONN_IDLE;
    c->out_len = 0;
    c->carry_len = 0;
    c->tout_len = 0;
    if (c->ssl) {
        SSL_free(c->ssl); /* and its BIOs */
        c->ssl = NULL;
    }
    if (c->wbuf) { /* a cancelled write: keep its buffer as the spare */
        if (!c->spare) {
            c->spare = c->wbuf;
            c->spare_cap = c->wbuf_cap;
        } else {
            free(c->wbuf);
        }
        c->wbuf = NULL;
    }
    if (c->on_end)
        c->on_end(c, c->end_status);
}

void bconn_close(bconn *c, int status, bool reset)
{
    if (c->state == BCONN_IDLE || c->state == BCONN_CLOSING)
        return;
    c->end_status = status;
    c->state = BCONN_CLOSING;
    if (reset && uv_tcp_close_reset(&c->tcp, on_closed) == 0)
        return;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    bconn *c = h->data;
    if (c->ssl) { /* ciphertext; the carry goes in front of the plaintext (tls_read) */
        if (!g_cbuf)
            g_cbuf = xrealloc(NULL, READ_CHUNK);
        buf->base = g_cbuf;
        buf->len = READ_CHUNK;
        return;
    }
    size_t need = c->carry_len + READ_CHUNK;
    if (g_rcap < need) {
        g_rcap = grow_to(g_rcap, need);
        g_rbuf = xrealloc(g_rbuf, g_rcap);
    }
    if (c->carry_len)
        memcpy(g_rbuf, c->carry, c->carry_len);
    buf->base = g_rbuf + c->carry_len;
    buf->len = g_rcap - c->carry_len;
}

static void tls_fail(bconn *c, const char *what)
{
    if (!g_tls_err[0]) {
        unsigned long e = ERR_peek_last_error();
        char msg[200] = "";
        if (e)
            ERR_error_string_n(e, msg, sizeof msg);
        snprintf(g_tls_err, sizeof g_tls_err, "%s: %s", what, e ? msg : "protocol error");
        fprintf(stderr, "chatd-bench: TLS %s\n", g_tls_err);
    }
    ERR_clear_error();
    bconn_close(c, UV_EPROTO, false);
}

const char *bconn_tls_error(void)
{
    return g_tls_err;
}

int bconn_tls_init(const char *ca_file)
{
    if (g_ctx)
        return 0;
    g_ctx = SSL_CTX_new(TLS_client_method());
    if (!g_ctx)
        return -1;
    SSL_CTX_set_min_proto_version(g_ctx, TLS1_2_VERSION);
    /* as chatd does on its side: no record buffers while a connection is idle */
    SSL_CTX_set_mode(g_ctx, SSL_MODE_RELEASE_BUFFERS);
    static const unsigned char alpn[] = "\x08http/1.1";
    SSL_CTX_set_alpn_protos(g_ctx, alpn, sizeof alpn - 1);
    if (ca_file) {
        if (SSL_CTX_load_verify_locations(g_ctx, ca_file, NULL) != 1) {
            fprintf(stderr, "chatd-bench: cannot load CA file %s\n", ca_file);
            return -1;
        }
        SSL_CTX_set_verify(g_ctx, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(g_ctx, SSL_VERIFY_NONE, NULL);
    }
    return 0;
}

/* Hands every ciphertext byte OpenSSL has produced to tout. */
static void tls_drain(bconn *c)
{
    BIO *wb = SSL_get_wbio(c->ssl);
    size_t n;
    while ((n = BIO_ctrl_pending(wb)) > 0) {
        if (c->tout_cap - c->tout_len < n) {
            c->tout_cap = grow_to(c->tout_cap, c->tout_len + n);
            c->tout = xrealloc(c->tout, c->tout_cap);
        }
        int r = BIO_read(wb, c->tout + c->tout_len, (int)n);
        if (r <= 0)
            break;
        c->tout_len += (size_t)r;
    }
}

/* false when the connection failed (closed). */
static bool tls_handshake(bconn *c)
{
    if (SSL_is_init_finished(c->ssl))
        return true;
    int r = SSL_do_handshake(c->ssl);
    if (r == 1)
        return true;
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return true;
    tls_drain(c); /* the alert, for the server's log */
    tls_fail(c, "handshake");
    return false;
}

static void consume(bconn *c, size_t total);

/* TLS: feeds the nread ciphertext bytes in g_cbuf to OpenSSL, decrypts what it can into
 * g_rbuf after the carry and hands that to the owner. */
static void tls_read(bconn *c, size_t nread)
{
    if (BIO_write(SSL_get_rbio(c->ssl), g_cbuf, (int)nread) != (int)nread) {
        tls_fail(c, "buffer");
        return;
    }
    if (!tls_handshake(c))
        return;
    size_t total = c->carry_len;
    if (g_rcap < total + READ_CHUNK) {
        g_rcap = grow_to(g_rcap, total + READ_CHUNK);
        g_rbuf = xrealloc(g_rbuf, g_rcap);
    }
    if (total)
        memcpy(g_rbuf, c->carry, total);
    bool eof = false;
    while (SSL_is_init_finished(c->ssl)) {
        if (g_rcap - total < 32768) {
            g_rcap = grow_to(g_rcap, total + 32768);
            g_rbuf = xrealloc(g_rbuf, g_rcap);
        }
        int r = SSL_read(c->ssl, g_rbuf + total, (int)(g_rcap - total));
        if (r > 0) {
            total += (size_t)r;
            continue;
        }
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            break;
        if (e == SSL_ERROR_ZERO_RETURN) {
            eof = true;
            break;
        }
        tls_fail(c, "read");
        return;
    }
    if (total > c->carry_len) {
        bench_clock();
        consume(c, total);
        if (c->state != BCONN_OPEN)
            return;
    } else {
        bconn_flush(c); /* handshake records */
    }
    if (eof)
        bconn_close(c, UV_EOF, false);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    bconn *c = s->data;
    if (nread < 0) {
        bconn_close(c, (int)nread, false);
        return;
    }
    if (nread == 0 || c->state != BCONN_OPEN)
        return;
    c->rx_bytes += (uint64_t)nread;
    if (c->ssl) {
        tls_read(c, (size_t)nread);
        return;
    }
    bench_clock();
    consume(c, c->carry_len + (size_t)nread);
}

/* g_rbuf holds total bytes (the carry first): the owner takes what it can, the rest is
 * carried, then what the owner queued is written. */
static void consume(bconn *c, size_t total)
{
    size_t used = c->on_read(c, g_rbuf, total);
    if (c->state != BCONN_OPEN)
        return;
    size_t left = total - used;
    if (left) {
        if (c->carry_cap < left) {
            c->carry_cap = grow_to(c->carry_cap, left);
            c->carry = xrealloc(c->carry, c->carry_cap);
        }
        memmove(c->carry, g_rbuf + used, left);
    }
    c->carry_len = left;
    bconn_flush(c);
}

static void on_connected(uv_connect_t *req, int status)
{
    bconn *c = req->data;
    if (c->state != BCONN_CONNECTING)
        return; /* closed meanwhile */
    if (status < 0) {
        if (c->on_connect)
            c->on_connect(c, status);
        bconn_close(c, status, false);
        return;
    }
    c->state = BCONN_OPEN;
    int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc < 0) {
        bconn_close(c, rc, false);
        return;
    }
    if (c->on_connect)
        c->on_connect(c, 0);
    if (c->state == BCONN_OPEN)
        bconn_flush(c);
}

int bconn_connect(bconn *c, const struct sockaddr_in *dst, const struct sockaddr_in *src)
{
    int rc = uv_tcp_init_ex(g_loop, &c->tcp, AF_INET);
    if (rc < 0)
        return rc;
    c->tcp.data = c;
    c->creq.data = c;
    c->state = BCONN_CONNECTING;
    c->end_status = 0;
    c->out_len = 0;
    c->carry_len = 0;
    c->tout_len = 0;
    uv_tcp_nodelay(&c->tcp, 1);
    if (c->tls_host) {
        if (!g_ctx && bconn_tls_init(NULL) != 0)
            fail("cannot make a TLS context");
        c->ssl = SSL_new(g_ctx);
        BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
        if (!c->ssl || !rb || !wb)
            fail("out of memory (TLS)");
        SSL_set_bio(c->ssl, rb, wb);
        SSL_set_connect_state(c->ssl);
        struct in_addr ip;
        if (inet_pton(AF_INET, c->tls_host, &ip) != 1) /* no SNI for an address */
            SSL_set_tlsext_host_name(c->ssl, c->tls_host);
    }
    if (src) {
        uv_os_fd_t fd;
        int one = 1;
        /* Choose the port at connect time, per destination, not at bind time: otherwise
         * every bound socket would take a port of its own from the ephemeral range. */
        if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
            setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        rc = uv_tcp_bind(&c->tcp, (const struct sockaddr *)src, 0);
    }
    if (rc == 0)
        rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)dst, on_connected);
    if (rc < 0) {
        if (c->on_connect)
            c->on_connect(c, rc);
        bconn_close(c, rc, false);
    }
    return 0;
}

char *bconn_reserve(bconn *c, size_t n)
{
    if (c->out_cap - c->out_len < n) {
        c->out_cap = grow_to(c->out_cap, c->out_len + n);
        c->out = xrealloc(c->out, c->out_cap);
    }
    return c->out + c->out_len;
}

void bconn_append(bconn *c, const void *data, size_t n)
{
    memcpy(bconn_reserve(c, n), data, n);
    c->out_len += n;
}

static void on_written(uv_write_t *req, int status)
{
    bconn *c = req->handle->data;
    /* The written buffer becomes the spare. */
    free(c->spare);
    c->spare = c->wbuf;
    c->spare_cap = c->wbuf_cap;
    c->wbuf = NULL;
    if (status < 0) {
        bconn_close(c, status, false);
        return;
    }
    if (c->state == BCONN_OPEN)
        bconn_flush(c);
}

/* TLS: encrypts out into tout (once the handshake is done). false when that failed. */
static bool tls_encrypt(bconn *c)
{
    if (!tls_handshake(c))
        return false;
    if (SSL_is_init_finished(c->ssl) && c->out_len) {
        /* memory BIO, no partial writes: all or an error */
        int r = SSL_write(c->ssl, c->out, (int)c->out_len);
        if (r <= 0) {
            tls_fail(c, "write");
            return false;
        }
        c->out_len = 0;
    }
    tls_drain(c);
    return true;
}

void bconn_flush(bconn *c)
{
    if (c->state != BCONN_OPEN || c->wbuf)
        return;
    if (c->ssl && !tls_encrypt(c))
        return;
    /* the bytes for the socket: out, or its ciphertext in tout */
    char **obuf = c->ssl ? &c->tout : &c->out;
    size_t *olen = c->ssl ? &c->tout_len : &c->out_len;
    size_t *ocap = c->ssl ? &c->tout_cap : &c->out_cap;
    if (*olen == 0)
        return;
    uv_buf_t b = uv_buf_init(*obuf, (unsigned)*olen);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n == (int)*olen) {
        *olen = 0;
        return;
    }
    if (n < 0 && n != UV_EAGAIN) {
        bconn_close(c, n, false);
        return;
    }
    if (n < 0)
        n = 0;
    /* The socket is full: hand the rest to libuv and collect new bytes in the spare. */
    c->wbuf = *obuf;
    c->wbuf_cap = *ocap;
    b = uv_buf_init(*obuf + n, (unsigned)(*olen - (size_t)n));
    *obuf = c->spare;
    *ocap = c->spare ? c->spare_cap : 0;
    *olen = 0;
    c->spare = NULL;
    c->spare_cap = 0;
    int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_written);
    if (rc < 0) {
        free(c->spare);
        c->spare = c->wbuf;
        c->spare_cap = c->wbuf_cap;
        c->wbuf = NULL;
        bconn_close(c, rc, false);
    }
}

void bconn_free(bconn *c)
{
    free(c->out);
    free(c->wbuf);
    free(c->spare);
    free(c->carry);
    free(c->tout);
    c->tout = NULL;
    c->tout_cap = c->tout_len = 0;
    c->out = c->wbuf = c->spare = c->carry = NULL;
    c->out_cap = c->wbuf_cap = c->spare_cap = c->carry_cap = 0;
}
