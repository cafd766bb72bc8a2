/* ws_deflate: permessage-deflate negotiation, compress-once frames and
 * bounded inflation (see ws_deflate.h). */
#include "ws/ws_deflate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "ws/utf8.h"
#include "ws/ws_frame.h"

/* ---- negotiation ------------------------------------------------------- */

/* One parameter of an offer, as parsed. */
typedef struct offer_param {
    const char *name, *value; /* value NULL when absent; unquoted */
    size_t name_len, value_len;
} offer_param;

static bool is_tchar(char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* A window-bits value: exactly "8".."15" (RFC 7692 7.1.2's ABNF). */
static int window_bits(const char *v, size_t len)
{
    if (!v || len == 0 || len > 2 || v[0] == '0')
        return -1;
    int n = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        n = n * 10 + (v[i] - '0');
    }
    return n >= 8 && n <= 15 ? n : -1;
}

static bool param_is(const offer_param *q, const char *name)
{
    return q->name_len == strlen(name) && strncasecmp(q->name, name, q->name_len) == 0;
}

/* Judges one permessage-deflate offer's parameters; fills p and the answer
 * when chatd can accept it. */
static bool accept_offer(const offer_param *q, size_t n, ws_deflate_params *p, char *answer)
{
    bool seen[4] = {false};
    int server_bits = -1, client_bits = -1;
    bool client_nct = false;
    for (size_t i = 0; i < n; i++) {
        int k;
        if (param_is(&q[i], "server_no_context_takeover"))
            k = 0;
        else if (param_is(&q[i], "client_no_context_takeover"))
            k = 1;
        else if (param_is(&q[i], "server_max_window_bits"))
            k = 2;
        else if (param_is(&q[i], "client_max_window_bits"))
            k = 3;
        else
            return false; /* a parameter RFC 7692 does not define */
        if (seen[k])
            return false; /* the same parameter twice */
        seen[k] = true;
        if (k <= 1 && q[i].value)
            return false; /* these take no value */
        if (k == 1)
            client_nct = true;
        if (k == 2 && (server_bits = window_bits(q[i].value, q[i].value_len)) < 0)
            return false; /* needs a value 8..15 */
        if (k == 3 && q[i].value && (client_bits = window_bits(q[i].value, q[i].value_len)) < 0)
            return false;
    }
    /* client_no_context_takeover always too (RFC 7692 7.1.1.1 lets the server
     * add it to any answer): the client then resets its window per message,
     * so no connection keeps an inflate stream (about 9-40 KB each) between
     * messages; one shared stream inflates them all. A browser that offered
     * context takeover compresses its (small, chat-sized) messages alone. */
    (void)client_nct;
    p->client_no_context_takeover = true;
    /* zlib's raw deflate cannot use 8; with 9 its matches reach at most
     * 512 - 262 = 250 bytes back, so the stream fits a 256-byte window. */
    p->server_bits = (uint8_t)(server_bits < 0 ? 15 : server_bits < 9 ? 9 : server_bits);
    p->client_bits = (uint8_t)(client_bits < 0 ? 15 : client_bits);
    /* server_no_context_takeover always: the compressed frame is shared */
    int len =
        snprintf(answer, WS_DEFLATE_ANSWER_MAX, "permessage-deflate; server_no_context_takeover");
    len += snprintf(answer + len, (size_t)(WS_DEFLATE_ANSWER_MAX - len),
                    "; client_no_context_takeover");
    if (server_bits >= 0)
        len += snprintf(answer + len, (size_t)(WS_DEFLATE_ANSWER_MAX - len),
                        "; server_max_window_bits=%d", server_bits);
    if (client_bits >= 0)
        snprintf(answer + len, (size_t)(WS_DEFLATE_ANSWER_MAX - len), "; client_max_window_bits=%d",
                 client_bits);
    return true;
}

#define OFFER_PARAMS_MAX 8

bool ws_deflate_negotiate(const char *header, ws_deflate_params *p,
                          char answer[WS_DEFLATE_ANSWER_MAX])
{
    const char *s = header;
    while (s && *s) {
        /* one extension: token *( ";" param ) up to a comma outside quotes */
        s = skip_ws(s);
        const char *name = s;
        while (is_tchar(*s))
            s++;
        size_t name_len = (size_t)(s - name);
        offer_param q[OFFER_PARAMS_MAX];
        size_t n = 0;
        bool ok = name_len > 0;
        for (;;) {
            s = skip_ws(s);
            if (*s != ';')
                break;
            s = skip_ws(s + 1);
            offer_param par = {.name = s};
            while (is_tchar(*s))
                s++;
            par.name_len = (size_t)(s - par.name);
            s = skip_ws(s);
            if (*s == '=') {
                s = skip_ws(s + 1);
                if (*s == '"') { /* quoted-string; window bits need no escapes */
                    par.value = ++s;
                    while (*s && *s != '"' && *s != '\\')
                        s++;
                    par.value_len = (size_t)(s - par.value);
                    if (*s != '"')
                        ok = false;
                    else
                        s++;
                } else {
                    par.value = s;
                    while (is_tchar(*s))
                        s++;
                    par.value_len = (size_t)(s - par.value);
                }
                if (par.value_len == 0)
                    ok = false;
            }
            if (par.name_len == 0 || n == OFFER_PARAMS_MAX)
                ok = false;
            else
                q[n++] = par;
            if (!ok)
                break;
        }
        if (*s && *s != ',') /* garbage in this element: skip to the next one */
            ok = false;
        while (*s && *s != ',') {
            if (*s == '"') /* a comma inside quotes does not end the element */
                while (*++s && *s != '"')
                    ;
            if (*s)
                s++;
        }
        if (ok && name_len == 18 && strncasecmp(name, "permessage-deflate", 18) == 0 &&
            accept_offer(q, n, p, answer))
            return true;
        if (*s == ',')
            s++;
    }
    return false;
}

/* ---- compression, once per shared frame -------------------------------- */

static z_stream *compressors[16]; /* by window bits, 9..15; made on first use */
static uint8_t *zscratch;         /* compressed output before it is framed */
static size_t zscratch_cap;

static z_stream *compressor(int bits)
{
    if (!compressors[bits]) {
        z_stream *zs = calloc(1, sizeof(*zs));
        /* memLevel 8 (zlib's default): ~2^(bits+2) + 128 KiB, once per process */
        if (!zs || deflateInit2(zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -bits, 8,
                                Z_DEFAULT_STRATEGY) != Z_OK) {
            free(zs);
            return NULL;
        }
        compressors[bits] = zs;
    }
    return compressors[bits];
}

/* Compresses payload into a new RSV1 frame; NULL when it does not pay or on
 * OOM. */
static sbuf *build_twin(uint8_t opcode, const uint8_t *payload, size_t len, int bits)
{
    z_stream *zs = compressor(bits);
    if (!zs)
        return NULL;
    size_t cap = deflateBound(zs, (uLong)len) + 16; /* + the sync flush's empty block */
    if (cap > zscratch_cap) {
        uint8_t *p = realloc(zscratch, cap);
        if (!p)
            return NULL;
        zscratch = p;
        zscratch_cap = cap;
    }
    deflateReset(zs); /* server_no_context_takeover: every message stands alone */
    zs->next_in = (Bytef *)payload;
    zs->avail_in = (uInt)len;
    zs->next_out = zscratch;
    zs->avail_out = (uInt)cap;
    int r = deflate(zs, Z_SYNC_FLUSH);
    size_t out = cap - zs->avail_out;
    /* all input taken, room to spare, and the flush marker RFC 7692 strips */
    if (r != Z_OK || zs->avail_in != 0 || zs->avail_out == 0 || out < 4 ||
        memcmp(zscratch + out - 4, "\x00\x00\xff\xff", 4) != 0)
        return NULL;
    out -= 4;
    uint8_t hdr[WS_FRAME_HEADER_MAX];
    size_t hlen = ws_frame_header_encode(hdr, true, opcode, out, NULL);
    if (hlen + out >= len + 2) /* no smaller than the plain frame's payload: not worth it */
        return NULL;
    hdr[0] |= WS_RSV1 << 4;
    sbuf *twin = sbuf_new(hlen + out);
    if (!twin)
        return NULL;
    memcpy(twin->data, hdr, hlen);
    memcpy(twin->data + hlen, zscratch, out);
    twin->len = (uint32_t)(hlen + out);
    twin->tag = (uint32_t)bits;
    return twin;
}

sbuf *ws_deflate_frame(sbuf *plain, int bits, size_t threshold)
{
    if (bits < 9 || bits > 15)
        return plain;
    for (sbuf *t = plain->alt; t; t = t->alt)
        if (t->tag == (uint32_t)bits)
            return t;
    if (plain->tag & (1u << bits))
        return plain; /* tried: incompressible */
    ws_frame_header h;
    uint16_t code;
    if (ws_frame_parse_header(plain->data, plain->len, false, UINT64_MAX, &h, &code) !=
            WS_PARSE_OK ||
        ws_opcode_is_control(h.opcode) || !h.fin || h.opcode == WS_OP_CONTINUATION ||
        h.payload_len < threshold || h.header_len + h.payload_len != plain->len)
        return plain;
    sbuf *twin = build_twin(h.opcode, plain->data + h.header_len, (size_t)h.payload_len, bits);
    if (!twin) {
        plain->tag |= 1u << bits;
        return plain;
    }
    twin->alt = plain->alt; /* plain owns the chain: sbuf_unref frees it */
    plain->alt = twin;
    return twin;
}

/* ---- inflation --------------------------------------------------------- */

struct z_stream_s *ws_deflate_inflater_new(int bits)
{
    z_stream *zs = calloc(1, sizeof(*zs));
    if (!zs)
        return NULL;
    if (inflateInit2(zs, -bits) != Z_OK) {
        free(zs);
        return NULL;
    }
    return zs;
}

void ws_deflate_inflater_free(struct z_stream_s *zs)
{
    if (!zs)
        return;
    inflateEnd(zs);
    free(zs);
}

struct z_stream_s *ws_deflate_shared_inflater(void)
{
    static z_stream *shared;
    if (!shared)
        shared = ws_deflate_inflater_new(15); /* a 15-bit window reads any smaller one */
    else
        inflateReset(shared);
    return shared;
}

static uint16_t inflate_some(z_stream *zs, const uint8_t *in, size_t len, uint8_t **buf,
                             size_t *blen, size_t *bcap, size_t limit, uint8_t *utf8)
{
    zs->next_in = (Bytef *)in;
    zs->avail_in = (uInt)len;
    for (;;) {
        if (*bcap < 2 || *bcap - 1 - *blen == 0) {
            if (*bcap >= limit + 2)
                return WS_CLOSE_TOO_BIG;
            size_t cap = *bcap ? *bcap * 2 : 4096;
            if (cap > limit + 2)
                cap = limit + 2;
            uint8_t *p = realloc(*buf, cap);
            if (!p)
                return WS_CLOSE_INTERNAL_ERROR;
            *buf = p;
            *bcap = cap;
        }
        uint8_t *out = *buf + *blen;
        zs->next_out = out;
        zs->avail_out = (uInt)(*bcap - 1 - *blen);
        int r = inflate(zs, Z_SYNC_FLUSH);
        size_t made = (size_t)(zs->next_out - out);
        *blen += made;
        if (*blen > limit)
            return WS_CLOSE_TOO_BIG;
        if (utf8 && made) {
            *utf8 = (uint8_t)utf8_feed(*utf8, out, made);
            if (*utf8 == UTF8_REJECT)
                return WS_CLOSE_INVALID_DATA;
        }
        if (r == Z_STREAM_END) {
            /* a final block (BFINAL): what follows starts a fresh stream */
            inflateReset(zs);
            if (zs->avail_in == 0)
                return 0;
            continue;
        }
        if (r != Z_OK && r != Z_BUF_ERROR)
            return WS_CLOSE_INVALID_DATA;
        if (zs->avail_out != 0 && (zs->avail_in == 0 || r == Z_BUF_ERROR))
            return 0;
    }
}

uint16_t ws_deflate_inflate(struct z_stream_s *zs, const uint8_t *in, size_t len, bool tail,
                            uint8_t **buf, size_t *blen, size_t *bcap, size_t limit, uint8_t *utf8)
{
    static const uint8_t flush_tail[4] = {0x00, 0x00, 0xff, 0xff};
    uint16_t code = 0;
    if (len)
        code = inflate_some(zs, in, len, buf, blen, bcap, limit, utf8);
    if (!code && tail)
        code = inflate_some(zs, flush_tail, sizeof(flush_tail), buf, blen, bcap, limit, utf8);
    return code;
}
