/* fuzz_ws_frame: libFuzzer target for the WebSocket frame codec and the UTF-8
 * validator, driven the way the server drives them.
 *
 * The input is a client byte stream. A small reassembler, like the one in a
 * connection, parses headers with ws_frame_parse_header, unmasks payloads
 * with ws_mask_apply as bytes arrive, validates text with utf8_feed across
 * fragments and enforces the continuation and close-frame rules. Each input
 * is replayed several ways (one read, many small reads, masks required or
 * not) and the runs must agree, so a bug in incremental parsing or in-piece
 * unmasking shows up as a mismatch and not only as a crash. Alongside, the
 * DFA is compared with a plain reference decoder and with byte-at-a-time
 * feeding, and every accepted header is re-encoded and parsed back. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws/utf8.h"
#include "ws/ws_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Small limits so the 1009 paths are reachable from short inputs. */
#define FUZZ_MAX_FRAME 1024
#define FUZZ_MAX_MESSAGE 2048

/* abort() rather than assert(): the checks must stay in NDEBUG builds. */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

typedef struct fuzz_conn {
    bool require_mask;
    /* Header bytes gathered so far: a header may arrive split across reads. */
    uint8_t hdr[WS_FRAME_HEADER_MAX];
    size_t hdr_len;
    bool in_frame;
    ws_frame_header frame;
    uint64_t frame_done; /* payload bytes of the current frame seen */
    /* The fragmented data message in progress, if any. */
    bool in_message;
    uint8_t msg_opcode;
    uint64_t msg_len;
    uint32_t utf8_state;
    uint8_t control[WS_CONTROL_PAYLOAD_MAX];
    bool closed;
    uint16_t close_code; /* what the server would send */
    /* What the application saw, to compare runs: a hash of every completed
     * message and control frame, and one of the message in progress. */
    uint64_t digest;
    uint64_t msg_digest;
    unsigned messages;
    unsigned pongs;
} fuzz_conn;

#define FUZZ_FNV_OFFSET UINT64_C(0xCBF29CE484222325)

static void fuzz_digest(uint64_t *h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        *h = (*h ^ p[i]) * UINT64_C(0x100000001B3);
}

static void fuzz_fail(fuzz_conn *c, uint16_t code)
{
    c->closed = true;
    c->close_code = code;
}

/* A close frame's payload: empty, or a valid code and a UTF-8 reason. */
static void fuzz_on_close(fuzz_conn *c, const uint8_t *p, size_t n)
{
    if (n == 0) {
        fuzz_fail(c, WS_CLOSE_NORMAL);
        return;
    }
    if (n == 1) {
        fuzz_fail(c, WS_CLOSE_PROTOCOL_ERROR);
        return;
    }
    uint16_t code = (uint16_t)(p[0] << 8 | p[1]);
    if (!ws_close_code_is_valid(code)) {
        fuzz_fail(c, WS_CLOSE_PROTOCOL_ERROR);
        return;
    }
    if (!utf8_is_valid(p + 2, n - 2)) {
        fuzz_fail(c, WS_CLOSE_INVALID_DATA);
        return;
    }
    /* Echo it back as the server does. The reason goes through a C string,
     * so it ends at its first NUL; being valid UTF-8 and under 124 bytes,
     * that much must come back whole. */
    char reason[WS_CONTROL_PAYLOAD_MAX];
    memcpy(reason, p + 2, n - 2);
    reason[n - 2] = '\0';
    sbuf *b = ws_frame_build_close(code, reason);
    FUZZ_CHECK(b != NULL);
    FUZZ_CHECK(b->len >= 4 && b->len <= 2 + WS_CONTROL_PAYLOAD_MAX);
    FUZZ_CHECK(b->data[0] == 0x88 && b->data[1] == b->len - 2);
    FUZZ_CHECK(b->data[2] == p[0] && b->data[3] == p[1]);
    FUZZ_CHECK(utf8_is_valid(b->data + 4, b->len - 4u));
    FUZZ_CHECK(b->len - 4u == strlen(reason));
    FUZZ_CHECK(memcmp(b->data + 4, reason, b->len - 4u) == 0);
    sbuf_unref(b);
    fuzz_fail(c, code);
}

static void fuzz_on_ping(fuzz_conn *c, const uint8_t *p, size_t n)
{
    sbuf *b = ws_frame_build(WS_OP_PONG, p, n);
    FUZZ_CHECK(b != NULL);
    FUZZ_CHECK(b->len == 2 + n && b->data[0] == 0x8A && b->data[1] == n);
    FUZZ_CHECK(n == 0 || memcmp(b->data + 2, p, n) == 0);
    sbuf_unref(b);
    c->pongs++;
}

/* A complete header has been parsed: apply the message-level rules that a
 * header alone cannot know about. */
static void fuzz_on_header(fuzz_conn *c, const ws_frame_header *h)
{
    /* Every accepted header must survive a re-encode and parse. */
    uint8_t enc[WS_FRAME_HEADER_MAX];
    size_t n =
        ws_frame_header_encode(enc, h->fin, h->opcode, h->payload_len, h->masked ? h->mask : NULL);
    FUZZ_CHECK(n >= 2 && n <= WS_FRAME_HEADER_MAX && n <= h->header_len);
    ws_frame_header back;
    uint16_t code = 0;
    FUZZ_CHECK(ws_frame_parse_header(enc, n, c->require_mask, FUZZ_MAX_FRAME, &back, &code) ==
               WS_PARSE_OK);
    FUZZ_CHECK(back.fin == h->fin && back.opcode == h->opcode && back.masked == h->masked &&
               back.payload_len == h->payload_len && back.header_len == n &&
               memcmp(back.mask, h->mask, 4) == 0);

    c->in_frame = true;
    c->frame = *h;
    c->frame_done = 0;
    if (ws_opcode_is_control(h->opcode))
        return;
    if (h->opcode == WS_OP_CONTINUATION) {
        if (!c->in_message) {
            fuzz_fail(c, WS_CLOSE_PROTOCOL_ERROR);
            return;
        }
    } else {
        if (c->in_message) {
            fuzz_fail(c, WS_CLOSE_PROTOCOL_ERROR);
            return;
        }
        c->in_message = true;
        c->msg_opcode = h->opcode;
        c->msg_len = 0;
        c->msg_digest = FUZZ_FNV_OFFSET;
        c->utf8_state = UTF8_ACCEPT;
    }
    if (c->msg_len + h->payload_len > FUZZ_MAX_MESSAGE) {
        fuzz_fail(c, WS_CLOSE_TOO_BIG);
        return;
    }
    c->msg_len += h->payload_len;
}

/* Payload bytes of the current frame, already unmasked, in arrival order. */
static void fuzz_on_payload(fuzz_conn *c, const uint8_t *p, size_t n)
{
    if (ws_opcode_is_control(c->frame.opcode)) {
        /* The parser promised <= 125 bytes, so this cannot overflow. */
        FUZZ_CHECK(c->frame_done + n <= WS_CONTROL_PAYLOAD_MAX);
        memcpy(c->control + c->frame_done, p, n);
        return;
    }
    fuzz_digest(&c->msg_digest, p, n);
    if (c->msg_opcode == WS_OP_TEXT) {
        c->utf8_state = utf8_feed(c->utf8_state, p, n);
        /* Fail fast, at the first bad byte, not at the end of the message. */
        if (c->utf8_state == UTF8_REJECT)
            fuzz_fail(c, WS_CLOSE_INVALID_DATA);
    }
}

static void fuzz_on_frame_end(fuzz_conn *c)
{
    const ws_frame_header *h = &c->frame;
    c->in_frame = false;
    if (ws_opcode_is_control(h->opcode)) {
        size_t n = (size_t)h->payload_len;
        fuzz_digest(&c->digest, &h->opcode, 1);
        fuzz_digest(&c->digest, c->control, n);
        if (h->opcode == WS_OP_CLOSE)
            fuzz_on_close(c, c->control, n);
        else if (h->opcode == WS_OP_PING)
            fuzz_on_ping(c, c->control, n);
        return;
    }
    if (!h->fin)
        return;
    if (c->msg_opcode == WS_OP_TEXT && c->utf8_state != UTF8_ACCEPT) {
        fuzz_fail(c, WS_CLOSE_INVALID_DATA); /* ends inside a character */
        return;
    }
    fuzz_digest(&c->digest, &c->msg_opcode, 1);
    fuzz_digest(&c->digest, (const uint8_t *)&c->msg_digest, sizeof(c->msg_digest));
    c->in_message = false;
    c->messages++;
}

/* One read from the socket. */
static void fuzz_conn_read(fuzz_conn *c, const uint8_t *p, size_t n)
{
    while (n > 0 && !c->closed) {
        if (!c->in_frame) {
            /* Take what could be header; give back what turns out not to be. */
            size_t take = WS_FRAME_HEADER_MAX - c->hdr_len;
            if (take > n)
                take = n;
            memcpy(c->hdr + c->hdr_len, p, take);
            size_t have = c->hdr_len + take;
            ws_frame_header h;
            uint16_t code = 0;
            int r = ws_frame_parse_header(c->hdr, have, c->require_mask, FUZZ_MAX_FRAME, &h, &code);
            if (r == WS_PARSE_ERROR) {
                FUZZ_CHECK(code == WS_CLOSE_PROTOCOL_ERROR || code == WS_CLOSE_TOO_BIG);
                fuzz_fail(c, code);
                return;
            }
            if (r == WS_PARSE_NEED_MORE) {
                /* 14 bytes always hold a whole header. */
                FUZZ_CHECK(have < WS_FRAME_HEADER_MAX && take == n);
                c->hdr_len = have;
                return;
            }
            FUZZ_CHECK(r == WS_PARSE_OK);
            FUZZ_CHECK(h.header_len >= 2 && h.header_len <= have && h.header_len > c->hdr_len);
            FUZZ_CHECK(h.rsv == 0 && ws_opcode_is_known(h.opcode));
            FUZZ_CHECK(h.payload_len <= FUZZ_MAX_FRAME);
            FUZZ_CHECK(!c->require_mask || h.masked);
            size_t used = h.header_len - c->hdr_len;
            p += used;
            n -= used;
            c->hdr_len = 0;
            fuzz_on_header(c, &h);
            if (c->closed)
                return;
        }
        /* Payload: unmask this read's share in a scratch copy (the input is
         * read-only), continuing the key where the previous read stopped. */
        uint64_t left = c->frame.payload_len - c->frame_done;
        size_t chunk = left < n ? (size_t)left : n;
        if (chunk > 0) {
            uint8_t *scratch = malloc(chunk);
            FUZZ_CHECK(scratch != NULL);
            memcpy(scratch, p, chunk);
            if (c->frame.masked)
                ws_mask_apply(scratch, chunk, c->frame.mask, (size_t)c->frame_done);
            fuzz_on_payload(c, scratch, chunk);
            free(scratch);
            c->frame_done += chunk;
            p += chunk;
            n -= chunk;
        }
        if (!c->closed && c->frame_done == c->frame.payload_len)
            fuzz_on_frame_end(c);
    }
}

enum fuzz_reads { FUZZ_READ_WHOLE, FUZZ_READ_BYTES, FUZZ_READ_RANDOM };

/* Replays the stream as one read, byte by byte, or in read sizes from a
 * fixed pseudo-random sequence, so header and payload boundaries fall
 * everywhere and a run stays reproducible. */
static void fuzz_run(fuzz_conn *c, bool require_mask, const uint8_t *data, size_t size,
                     enum fuzz_reads reads)
{
    memset(c, 0, sizeof(*c));
    c->require_mask = require_mask;
    c->digest = FUZZ_FNV_OFFSET;
    uint32_t seed = (uint32_t)size * 2654435761u | 1u;
    size_t off = 0;
    while (off < size) {
        size_t n = size - off;
        if (reads == FUZZ_READ_BYTES) {
            n = 1;
        } else if (reads == FUZZ_READ_RANDOM) {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            if (n > 1 + seed % 17)
                n = 1 + seed % 17;
        }
        fuzz_conn_read(c, data + off, n);
        off += n;
    }
}

/* Runs agree on what was delivered and on how the connection ended. Once
 * closed, how far the rest of the stream was read depends on read sizes and
 * does not matter; while open, the partial state must match too. */
static bool fuzz_conn_same(const fuzz_conn *a, const fuzz_conn *b)
{
    if (a->closed != b->closed || a->close_code != b->close_code || a->digest != b->digest ||
        a->messages != b->messages || a->pongs != b->pongs)
        return false;
    if (a->closed)
        return true;
    return a->in_message == b->in_message && a->in_frame == b->in_frame &&
           a->frame_done == b->frame_done && a->hdr_len == b->hdr_len &&
           memcmp(a->hdr, b->hdr, a->hdr_len) == 0 &&
           (!a->in_message || (a->msg_digest == b->msg_digest && a->msg_len == b->msg_len &&
                               a->utf8_state == b->utf8_state));
}

/* Valid UTF-8 by decoding code points, independent of the DFA tables. */
static bool fuzz_utf8_reference(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t b = s[i];
        size_t n;
        uint32_t cp, min;
        if (b < 0x80) {
            i++;
            continue;
        } else if ((b & 0xE0) == 0xC0) {
            n = 2, cp = b & 0x1Fu, min = 0x80;
        } else if ((b & 0xF0) == 0xE0) {
            n = 3, cp = b & 0x0Fu, min = 0x800;
        } else if ((b & 0xF8) == 0xF0) {
            n = 4, cp = b & 0x07u, min = 0x10000;
        } else {
            return false;
        }
        if (len - i < n)
            return false;
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3Fu);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += n;
    }
    return true;
}

static void fuzz_check_utf8(const uint8_t *data, size_t size)
{
    uint32_t whole = utf8_feed(UTF8_ACCEPT, data, size);
    FUZZ_CHECK((whole == UTF8_ACCEPT) == fuzz_utf8_reference(data, size));
    uint32_t st = UTF8_ACCEPT;
    for (size_t i = 0; i < size; i++)
        st = utf8_feed(st, data + i, 1);
    FUZZ_CHECK(st == whole);
}

static void fuzz_check_mask(const uint8_t *data, size_t size)
{
    if (size < 4)
        return;
    const uint8_t *key = data;
    size_t n = size - 4;
    size_t offset = data[0];
    uint8_t *fast = malloc(n + 1);
    uint8_t *slow = malloc(n + 1);
    FUZZ_CHECK(fast != NULL && slow != NULL);
    memcpy(fast, data + 4, n);
    memcpy(slow, data + 4, n);
    /* In two pieces split at a data-chosen point, against a byte loop. */
    size_t cut = n ? data[1] % (n + 1) : 0;
    ws_mask_apply(fast, cut, key, offset);
    ws_mask_apply(fast + cut, n - cut, key, offset + cut);
    for (size_t i = 0; i < n; i++)
        slow[i] ^= key[(offset + i) % 4];
    FUZZ_CHECK(memcmp(fast, slow, n) == 0);
    free(fast);
    free(slow);
}

/* Any header the parser accepts without limits survives re-encoding, its
 * every proper prefix is NEED_MORE, and errors carry 1002 (1009 needs a
 * limit). Reaches the 16- and 64-bit forms the stream runs' limit blocks. */
static void fuzz_check_header(const uint8_t *data, size_t size)
{
    ws_frame_header h, back;
    uint16_t code = 0;
    int r = ws_frame_parse_header(data, size, false, UINT64_MAX, &h, &code);
    if (r == WS_PARSE_ERROR) {
        FUZZ_CHECK(code == WS_CLOSE_PROTOCOL_ERROR);
        return;
    }
    if (r == WS_PARSE_NEED_MORE) {
        FUZZ_CHECK(size < WS_FRAME_HEADER_MAX);
        return;
    }
    FUZZ_CHECK(r == WS_PARSE_OK && h.header_len <= size && (h.payload_len >> 63) == 0);
    for (size_t n = 0; n < h.header_len; n++)
        FUZZ_CHECK(ws_frame_parse_header(data, n, false, UINT64_MAX, &back, &code) ==
                   WS_PARSE_NEED_MORE);
    uint8_t enc[WS_FRAME_HEADER_MAX];
    size_t n =
        ws_frame_header_encode(enc, h.fin, h.opcode, h.payload_len, h.masked ? h.mask : NULL);
    FUZZ_CHECK(n <= h.header_len);
    FUZZ_CHECK(ws_frame_parse_header(enc, n, false, UINT64_MAX, &back, &code) == WS_PARSE_OK);
    FUZZ_CHECK(back.fin == h.fin && back.opcode == h.opcode && back.masked == h.masked &&
               back.payload_len == h.payload_len && back.header_len == n &&
               memcmp(back.mask, h.mask, 4) == 0);
    /* One byte short of its own limit, the same header is too big. */
    if (h.payload_len > 0)
        FUZZ_CHECK(ws_frame_parse_header(data, size, false, h.payload_len - 1, &back, &code) ==
                       WS_PARSE_ERROR &&
                   code == WS_CLOSE_TOO_BIG);
}

/* A close reason from arbitrary bytes comes back as the longest prefix that
 * is valid UTF-8, ends on a character and fits in 123 bytes. */
static void fuzz_check_close_reason(const uint8_t *data, size_t size)
{
    char reason[256];
    size_t len = size < sizeof(reason) - 1 ? size : sizeof(reason) - 1;
    memcpy(reason, data, len);
    reason[len] = '\0';
    len = strlen(reason);
    size_t want = len < WS_CONTROL_PAYLOAD_MAX - 2 ? len : WS_CONTROL_PAYLOAD_MAX - 2;
    while (want > 0 && !fuzz_utf8_reference((const uint8_t *)reason, want))
        want--;
    sbuf *b = ws_frame_build_close(WS_CLOSE_NORMAL, reason);
    FUZZ_CHECK(b != NULL && b->len == 4 + want && b->data[0] == 0x88 && b->data[1] == 2 + want);
    FUZZ_CHECK(memcmp(b->data + 4, reason, want) == 0);
    sbuf_unref(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_conn whole, pieces, bytes, unmasked;
    fuzz_run(&whole, true, data, size, FUZZ_READ_WHOLE);
    fuzz_run(&pieces, true, data, size, FUZZ_READ_RANDOM);
    fuzz_run(&bytes, true, data, size, FUZZ_READ_BYTES);
    FUZZ_CHECK(fuzz_conn_same(&whole, &pieces));
    FUZZ_CHECK(fuzz_conn_same(&whole, &bytes));

    /* Without the mask requirement, only the unmasked-frame error may differ. */
    fuzz_run(&unmasked, false, data, size, FUZZ_READ_RANDOM);
    if (!(whole.closed && whole.close_code == WS_CLOSE_PROTOCOL_ERROR))
        FUZZ_CHECK(fuzz_conn_same(&whole, &unmasked));

    fuzz_check_header(data, size);
    fuzz_check_utf8(data, size);
    fuzz_check_mask(data, size);
    fuzz_check_close_reason(data, size);
    return 0;
}
