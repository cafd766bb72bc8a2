/* wsc: WebSocket client handshake and framing over conn; see wsc.h. */
#include "wsc.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define MAX_RESPONSE_HEAD 16384

static void on_connect(bconn *c, int status);
static size_t on_read(bconn *c, char *data, size_t len);
static void on_end(bconn *c, int status);

void wsc_init(wsc *w, const wsc_handlers *h, const target *t)
{
    bconn_init(&w->c);
    w->c.on_connect = on_connect;
    w->c.on_read = on_read;
    w->c.on_end = on_end;
    w->h = h;
    w->t = t;
}

int wsc_connect(wsc *w, const struct sockaddr_in *src)
{
    w->open = false;
    w->close_sent = false;
    w->close_code = 0;
    w->http_status[0] = 0;
    uint64_t r = rnd64();
    memcpy(w->mask, &r, 4);

    unsigned char key_raw[16], key[32], digest[EVP_MAX_MD_SIZE];
    uint64_t k1 = rnd64(), k2 = rnd64();
    memcpy(key_raw, &k1, 8);
    memcpy(key_raw + 8, &k2, 8);
    EVP_EncodeBlock(key, key_raw, 16);
    char cat[64];
    int n = snprintf(cat, sizeof cat, "%s%s", (char *)key, WS_GUID);
    unsigned dlen = 0;
    EVP_Digest(cat, (size_t)n, digest, &dlen, EVP_sha1(), NULL);
    EVP_EncodeBlock((unsigned char *)w->accept, digest, (int)dlen);

    int rc = bconn_connect(&w->c, &w->t->addr, src);
    if (rc < 0)
        return rc;
    char *p = bconn_reserve(&w->c, 1024);
    n = snprintf(p, 1024,
                 "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
                 w->t->path, w->t->hostport, (char *)key);
    bconn_commit(&w->c, (size_t)n);
    return 0;
}

size_t wsc_frame_size(size_t len)
{
    return 2 + (len < 126 ? 0 : len < 65536 ? 2 : 8) + 4 + len;
}

size_t wsc_frame_build(char *dst, int opcode, const void *payload, size_t len,
                       const uint8_t mask[4])
{
    uint8_t *d = (uint8_t *)dst;
    size_t h = 0;
    d[h++] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        d[h++] = (uint8_t)(0x80 | len);
    } else if (len < 65536) {
        d[h++] = 0x80 | 126;
        d[h++] = (uint8_t)(len >> 8);
        d[h++] = (uint8_t)len;
    } else {
        d[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            d[h++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    memcpy(d + h, mask, 4);
    h += 4;
    const uint8_t *s = payload;
    for (size_t i = 0; i < len; i++)
        d[h + i] = s[i] ^ mask[i & 3];
    return h;
}

void wsc_send(wsc *w, int opcode, const void *payload, size_t len)
{
    char *p = bconn_reserve(&w->c, wsc_frame_size(len));
    wsc_frame_build(p, opcode, payload, len, w->mask);
    bconn_commit(&w->c, wsc_frame_size(len));
}

void wsc_close(wsc *w, bool reset)
{
    if (w->c.state == BCONN_IDLE || w->c.state == BCONN_CLOSING)
        return;
    if (!reset && w->open && !w->close_sent) {
        uint8_t code[2] = {1000 >> 8, 1000 & 0xff};
        wsc_send(w, WS_CLOSE, code, 2);
        w->close_sent = true;
        bconn_flush(&w->c);
    }
    bconn_close(&w->c, 0, reset);
}

const char *wsc_strerror(const wsc *w, int status)
{
    static char buf[96];
    switch (status) {
    case 0:
        return "closed";
    case WSC_ERR_HANDSHAKE:
        if (w->http_status[0]) {
            snprintf(buf, sizeof buf, "handshake refused with HTTP %s", w->http_status);
            return buf;
        }
        return "bad handshake response";
    case WSC_ERR_PROTOCOL:
        return "protocol error in a server frame";
    case WSC_ERR_FRAGMENTED:
        return "server sent a fragmented message (not supported by chatd-bench)";
    case WSC_ERR_CLOSED:
        snprintf(buf, sizeof buf, "server closed the WebSocket with code %d", w->close_code);
        return buf;
    default:
        return uv_strerror(status);
    }
}

static void on_connect(bconn *c, int status)
{
    (void)c;
    (void)status; /* failures reach on_end */
}

static void on_end(bconn *c, int status)
{
    wsc *w = (wsc *)c;
    w->open = false;
    if (w->h->on_end)
        w->h->on_end(w, status);
}

/* Finds header name (case-insensitive) in an HTTP head; returns its value or NULL. */
static const char *header_value(const char *head, size_t len, const char *name, size_t *vlen)
{
    size_t nl = strlen(name);
    const char *end = head + len;
    const char *p = memchr(head, '\n', len);
    while (p && p + 1 < end) {
        p++;
        if ((size_t)(end - p) > nl + 1 && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (v < end && (*v == ' ' || *v == '\t'))
                v++;
            const char *e = v;
            while (e < end && *e != '\r' && *e != '\n')
                e++;
            while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
                e--;
            *vlen = (size_t)(e - v);
            return v;
        }
        p = memchr(p, '\n', (size_t)(end - p));
    }
    return NULL;
}

static size_t handshake(wsc *w, char *data, size_t len)
{
    char *end = memmem(data, len, "\r\n\r\n", 4);
    if (!end) {
        if (len > MAX_RESPONSE_HEAD)
            bconn_close(&w->c, WSC_ERR_HANDSHAKE, true);
        return 0;
    }
    size_t head = (size_t)(end - data) + 4;
    if (len >= 12 && memcmp(data, "HTTP/1.", 7) == 0)
        memcpy(w->http_status, data + 9, 3);
    size_t alen = 0;
    const char *acc = header_value(data, head, "Sec-WebSocket-Accept", &alen);
    if (memcmp(w->http_status, "101", 3) != 0 || !acc || alen != strlen(w->accept) ||
        memcmp(acc, w->accept, alen) != 0) {
        bconn_close(&w->c, WSC_ERR_HANDSHAKE, true);
        return head;
    }
    w->open = true;
    if (w->h->on_open)
        w->h->on_open(w);
    return head;
}

static size_t on_read(bconn *c, char *data, size_t len)
{
    wsc *w = (wsc *)c;
    size_t pos = 0;
    if (!w->open) {
        pos = handshake(w, data, len);
        if (!w->open)
            return pos;
    }
    while (c->state == BCONN_OPEN) {
        size_t avail = len - pos;
        if (avail < 2)
            break;
        uint8_t *f = (uint8_t *)data + pos;
        int fin = f[0] & 0x80, op = f[0] & 0x0f;
        uint64_t plen = f[1] & 0x7f;
        size_t hl = 2;
        if ((f[0] & 0x70) || (f[1] & 0x80)) { /* RSV bits, or a masked server frame */
            bconn_close(c, WSC_ERR_PROTOCOL, true);
            break;
        }
        if (plen == 126) {
            if (avail < 4)
                break;
            plen = (uint64_t)f[2] << 8 | f[3];
            hl = 4;
        } else if (plen == 127) {
            if (avail < 10)
                break;
            plen = 0;
            for (int i = 0; i < 8; i++)
                plen = plen << 8 | f[2 + i];
            hl = 10;
        }
        if (plen > (64u << 20)) {
            bconn_close(c, WSC_ERR_PROTOCOL, true);
            break;
        }
        if (avail < hl + plen)
            break;
        char *payload = (char *)f + hl;
        pos += hl + (size_t)plen;
        switch (op) {
        case WS_TEXT:
        case WS_BINARY:
            if (!fin) {
                bconn_close(c, WSC_ERR_FRAGMENTED, true);
                break;
            }
            w->h->on_message(w, op, payload, (size_t)plen);
            break;
        case WS_PING:
            wsc_send(w, WS_PONG, payload, (size_t)plen);
            break;
        case WS_PONG:
            break;
        case WS_CLOSE:
            w->close_code = plen >= 2 ? ((uint8_t)payload[0] << 8 | (uint8_t)payload[1]) : 1005;
            if (!w->close_sent) {
                wsc_send(w, WS_CLOSE, payload, plen >= 2 ? 2 : 0);
                w->close_sent = true;
                bconn_flush(c);
            }
            bconn_close(c, WSC_ERR_CLOSED, false);
            break;
        default:
            bconn_close(c, op == 0 ? WSC_ERR_FRAGMENTED : WSC_ERR_PROTOCOL, true);
            break;
        }
    }
    return pos;
}
