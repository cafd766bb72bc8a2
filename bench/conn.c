/* conn: client TCP connections with shared read buffer and swap-on-stall out buffers; see
 * conn.h for the design. */
#include "conn.h"
#include "bench.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define READ_CHUNK (256 * 1024)

static char *g_rbuf;
static size_t g_rcap;

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
    bench_clock();
    size_t total = c->carry_len + (size_t)nread;
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
    uv_tcp_nodelay(&c->tcp, 1);
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

void bconn_flush(bconn *c)
{
    if (c->state != BCONN_OPEN || c->wbuf || c->out_len == 0)
        return;
    uv_buf_t b = uv_buf_init(c->out, (unsigned)c->out_len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n == (int)c->out_len) {
        c->out_len = 0;
        return;
    }
    if (n < 0 && n != UV_EAGAIN) {
        bconn_close(c, n, false);
        return;
    }
    if (n < 0)
        n = 0;
    /* The socket is full: hand the rest to libuv and collect new bytes in the spare. */
    c->wbuf = c->out;
    c->wbuf_cap = c->out_cap;
    b = uv_buf_init(c->out + n, (unsigned)(c->out_len - (size_t)n));
    c->out = c->spare;
    c->out_cap = c->spare ? c->spare_cap : 0;
    c->out_len = 0;
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
    c->out = c->wbuf = c->spare = c->carry = NULL;
    c->out_cap = c->wbuf_cap = c->spare_cap = c->carry_cap = 0;
}
