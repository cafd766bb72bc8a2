/* wsc: WebSocket client handshake and framing over conn; see wsc.h. */
#include "wsc.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define MAX_RESPONSE_HEAD 16384
#define MAX_INFLATED (64u << 20)

wsc_deflate_stats g_wsc_deflate;

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

    w->deflate = w->deflate_snct = false;
    w->c.tls_host = w->t->tls ? w->t->host : NULL;
    int rc = bconn_connect(&w->c, &w->t->addr, src);
    if (rc < 0)
        return rc;
    char *p = bconn_reserve(&w->c, 1024);
    n = snprintf(p, 1024,
                 "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
                 w->t->path, w->t->hostport, (char *)key,
                 g_opt.ws_deflate
                     ? "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
                     : "");
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
    if (w->zs) {
        inflateEnd(w->zs);
        free(w->zs);
        w->zs = NULL;
    }
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
    size_t elen = 0;
    const char *ext = header_value(data, head, "Sec-WebSocket-Extensions", &elen);
    if (ext && !g_opt.ws_deflate) { /* an extension we did not offer */
        bconn_close(&w->c, WSC_ERR_HANDSHAKE, true);
        return head;
    }
    if (g_opt.ws_deflate) {
        if (ext && elen >= 18 && strncasecmp(ext, "permessage-deflate", 18) == 0) {
            w->deflate = true;
            w->deflate_snct = memmem(ext, elen, "server_no_context_takeover", 26) != NULL;
            g_wsc_deflate.conns++;
        } else {
            g_wsc_deflate.refused++;
        }
    }
    w->open = true;
    if (w->h->on_open)
        w->h->on_open(w);
    return head;
}

/* ---- permessage-deflate ---- */

static char *g_inf;
static size_t g_inf_cap;
static z_stream g_shared_zs;
static bool g_shared_zs_ready;

static z_stream *new_inflater(z_stream *zs)
{
    memset(zs, 0, sizeof *zs);
    if (inflateInit2(zs, -15) != Z_OK)
        fail("inflateInit2 failed");
    return zs;
}

/* Inflates payload (with the 00 00 FF FF the sender stripped) into g_inf; its length, or -1
 * when the data is corrupt or larger than MAX_INFLATED. */
static long inflate_msg(z_stream *zs, const uint8_t *in, size_t len)
{
    static const uint8_t tail[4] = {0, 0, 0xff, 0xff};
    size_t out = 0;
    for (int part = 0; part < 2; part++) {
        zs->next_in = (Bytef *)(part ? tail : in);
        zs->avail_in = (uInt)(part ? 4 : len);
        for (;;) {
            if (g_inf_cap - out < 4096) {
                if (g_inf_cap >= MAX_INFLATED)
                    return -1;
                g_inf_cap = g_inf_cap ? 2 * g_inf_cap : 65536;
                g_inf = realloc(g_inf, g_inf_cap);
                if (!g_inf)
                    fail("out of memory (inflate)");
            }
            zs->next_out = (Bytef *)g_inf + out;
            zs->avail_out = (uInt)(g_inf_cap - out);
            int rc = inflate(zs, Z_SYNC_FLUSH);
            out = g_inf_cap - zs->avail_out;
            if (rc != Z_OK && rc != Z_BUF_ERROR && rc != Z_STREAM_END)
                return -1;
            if (zs->avail_in == 0 && zs->avail_out > 0)
                break;
            if (rc == Z_BUF_ERROR && zs->avail_out > 0)
                break;
        }
    }
    g_wsc_deflate.inflated++;
    return (long)out;
}

/* The decode-once cache (server_no_context_takeover only): 4-way set associative by a hash
 * of the compressed bytes, which a hit compares in full; a miss replaces the least recently
 * used entry of its set. Messages in flight (a fan-out window) all stay cached: a
 * direct-mapped table let two live messages evict each other over and over. */
#define INF_SETS 1024
#define INF_WAYS 4
typedef struct inf_entry {
    uint64_t hash, used;
    size_t clen, plen, ccap, pcap;
    char *c, *p;
} inf_entry;
static inf_entry g_cache[INF_SETS * INF_WAYS];
static uint64_t g_cache_tick;

static uint64_t hash_bytes(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull ^ n;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        h = (h ^ v) * 0x100000001b3ull;
        h ^= h >> 29;
    }
    for (; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* The message a compressed payload stands for: *out, *olen. false if it cannot be inflated. */
static bool inflate_payload(wsc *w, const uint8_t *in, size_t len, char **out, size_t *olen)
{
    g_wsc_deflate.compressed++;
    g_wsc_deflate.wire_bytes += len;
    if (!w->deflate_snct) {
        if (!w->zs) {
            w->zs = malloc(sizeof *w->zs);
            if (!w->zs)
                fail("out of memory");
            new_inflater(w->zs);
        }
        long n = inflate_msg(w->zs, in, len);
        if (n < 0)
            return false;
        *out = g_inf;
        *olen = (size_t)n;
        g_wsc_deflate.plain_bytes += *olen;
        return true;
    }
    if (!g_shared_zs_ready) {
        new_inflater(&g_shared_zs);
        g_shared_zs_ready = true;
    }
    inf_entry *e = NULL;
    uint64_t h = 0;
    if (!g_opt.inflate_all) {
        h = hash_bytes(in, len);
        inf_entry *set = &g_cache[(h & (INF_SETS - 1)) * INF_WAYS];
        e = &set[0];
        for (int i = 0; i < INF_WAYS; i++) {
            inf_entry *x = &set[i];
            if (x->c && x->hash == h && x->clen == len && memcmp(x->c, in, len) == 0) {
                x->used = ++g_cache_tick;
                *out = x->p;
                *olen = x->plen;
                g_wsc_deflate.plain_bytes += *olen;
                return true;
            }
            if (x->used < e->used)
                e = x;
        }
    }
    inflateReset(&g_shared_zs);
    long n = inflate_msg(&g_shared_zs, in, len);
    if (n < 0)
        return false;
    *out = g_inf;
    *olen = (size_t)n;
    g_wsc_deflate.plain_bytes += *olen;
    if (e) {
        if (e->ccap < len) {
            e->ccap = len;
            e->c = realloc(e->c, len);
        }
        if (e->pcap < (size_t)n) {
            e->pcap = (size_t)n;
            e->p = realloc(e->p, (size_t)n ? (size_t)n : 1);
        }
        if (!e->c || !e->p)
            fail("out of memory");
        memcpy(e->c, in, len);
        memcpy(e->p, g_inf, (size_t)n);
        e->hash = h;
        e->used = ++g_cache_tick;
        e->clen = len;
        e->plen = (size_t)n;
    }
    return true;
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
        bool rsv1 = (f[0] & 0x40) != 0;
        /* RSV bits (RSV1 only on a deflate data frame), or a masked server frame */
        if ((f[0] & 0x30) || (rsv1 && (!w->deflate || op == 0 || op >= 8)) || (f[1] & 0x80)) {
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
            if (rsv1) {
                char *m;
                size_t mlen;
                if (!inflate_payload(w, (const uint8_t *)payload, (size_t)plen, &m, &mlen)) {
                    bconn_close(c, WSC_ERR_PROTOCOL, true);
                    break;
                }
                w->h->on_message(w, op, m, mlen);
                break;
            }
            if (w->deflate)
                g_wsc_deflate.plain++;
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
