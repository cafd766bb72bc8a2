/* sc_gwpush: `chatd-bench gwpush`, pushes from a site's backend to its users the way a
 * GatewayWorker site makes them (issue 10): -n WebSocket clients, each bound to a uid of its
 * own through the server API (POST /gateway/bind_uid with the client_id of its `init`), then
 * SEND_TO_UID pushes to those uids, round-robin, through one of three paths (--gw-mode):
 *
 * - per-call: what GatewayClient does from php-fpm: for every push a new TCP connection to
 *   the inner port (--gw-addr), the 202 auth frame when --gw-secret is set, the cmd 14 frame
 *   (ext_data = JSON array of one uid, flag 0x01, body = the message) in the same write,
 *   then close (FIN), without waiting for anything: sendToUid has no reply.
 * - persistent: --gw-conns inner connections opened once (each authorized once), every push
 *   a cmd 14 frame written on the next one in turn, pipelined.
 * - http: chatd's native API, POST /gateway/send_to_uid on --api-conns keep-alive
 *   connections, pipelined, as the other scenarios use the server API.
 *
 * Saturation (default): --window pushes are in flight (sent and not yet delivered); each
 * delivery sends the next push. With --rate R: open loop, R pushes/s stamped with their
 * scheduled time, as route --rate. Every payload is the same in the three modes and starts
 * with the send time (16 hex digits) and the target uid (10 digits): the receiving client
 * takes the one-way latency from the first and checks with the second that the push reached
 * the uid it was sent to. After the window the pushes still in flight are waited for (2 s),
 * so `undelivered` counts pushes lost for good.
 *
 * The server's CPU per delivered push (`server_us_per_push`, and `<name>_us_per_push` for
 * each --watch-pid) is its CPU time over the window divided by the pushes delivered in it:
 * the figure to set against GatewayWorker's 24-47 us per routed message. */
#include "bench.h"
#include "fleet.h"
#include "report.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

enum gw_mode { GW_PER_CALL, GW_PERSISTENT, GW_HTTP };
static const char *const mode_names[] = {"per-call", "persistent", "http"};

enum {
    GW_HEADER = 28,
    GW_CMD_SEND_TO_UID = 14,
    GW_CMD_GATEWAY_CLIENT_CONNECT = 202,
    GW_FLAG_BODY_IS_SCALAR = 0x01,
    UID_DIGITS = 10,
    PAYLOAD_MIN = 16 + UID_DIGITS, /* timestamp, uid */
};

#define MAX_BACKLOG (4u << 20) /* rate mode: skip a persistent connection this far behind */
#define STALL_NS 5000000000ull /* no delivery for this long with pushes in flight: stop */

/* One push, built once; a push copies it and patches the uid (twice: where the server reads
 * it and inside the payload) and the timestamp. */
typedef struct push_tmpl {
    char *bytes;
    size_t len;
    size_t uid_at;  /* the target uid, where the server reads it */
    size_t puid_at; /* the uid in the payload */
    size_t ts_at;   /* the timestamp in the payload */
} push_tmpl;

/* per-call: one short-lived connection per push. */
typedef struct pc_slot {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    char *buf;
    long next_free;
} pc_slot;

static enum gw_mode g_mode;
static wsc *g_w;
static fleet g_f;
static httpc g_api;
static target g_gw;
static long g_n, g_size, g_window, g_uid_base, g_cursor;
static push_tmpl g_push;
static char *g_auth; /* the 202 frame, or NULL without --gw-secret */
static size_t g_auth_len;

static pc_slot *g_slots;
static long g_nslots, g_free_slot = -1, g_slots_busy, g_waiting; /* pushes waiting for a slot */
static struct sockaddr_in g_pc_src[8];
static int g_pc_nsrc;
static long g_pc_next_src;

static bconn *g_pers;
static long g_npers, g_pers_open, g_rr;

static uint64_t g_delivered, g_sent, g_errors, g_bad, g_lost, g_skipped, g_misrouted;
static uint64_t g_sent_all, g_recv_all; /* since the first push: what is still in flight */
static hist g_lat, g_lag;
static bool g_stopping;
static uint64_t g_last_delivery;
static uv_timer_t g_watch;
static uv_idle_t g_idle;
static uint64_t g_t_start, g_scheduled;

static wsc *at(long i)
{
    return &g_w[i];
}

static size_t bind_body(const fleet *f, long i, char *buf, size_t cap)
{
    return (size_t)snprintf(buf, cap, "{\"client_id\":\"%s\",\"uid\":\"%ld\"}", f->client_id[i],
                            g_uid_base + i);
}

static void put_be32(char *p, uint32_t v)
{
    p[0] = (char)(v >> 24);
    p[1] = (char)(v >> 16);
    p[2] = (char)(v >> 8);
    p[3] = (char)v;
}

/* The 28-byte inner-protocol header (every address field zero, as GatewayClient leaves them
 * for commands that name no connection). */
static void gw_header(char *p, size_t pack_len, int cmd, int flag, size_t ext_len)
{
    memset(p, 0, GW_HEADER);
    put_be32(p, (uint32_t)pack_len);
    p[4] = (char)cmd;
    p[21] = (char)flag;
    put_be32(p + 24, (uint32_t)ext_len);
}

static void put_uid(char *dst, long uid)
{
    for (int i = UID_DIGITS - 1; i >= 0; i--) {
        dst[i] = (char)('0' + uid % 10);
        uid /= 10;
    }
}

/* The payload every mode delivers: <ts 16 hex><uid 10 digits><padding>; offsets of the
 * timestamp and uid are 0 and 16. */
static void fill_payload(char *p)
{
    for (long k = 0; k < g_size; k++)
        p[k] = k < PAYLOAD_MIN ? '0' : (char)('a' + k % 26);
}

static void build_gw_frames(void)
{
    if (g_opt.gw_secret) {
        /* {"secret_key":"<k>"}, with " and \ escaped: the inner port parses it as JSON. */
        size_t sl = strlen(g_opt.gw_secret);
        char *body = malloc(32 + 2 * sl);
        if (!body)
            fail("out of memory");
        size_t bl = (size_t)sprintf(body, "{\"secret_key\":\"");
        for (const char *s = g_opt.gw_secret; *s; s++) {
            if (*s == '"' || *s == '\\')
                body[bl++] = '\\';
            body[bl++] = *s;
        }
        bl += (size_t)sprintf(body + bl, "\"}");
        g_auth_len = GW_HEADER + bl;
        g_auth = malloc(g_auth_len);
        if (!g_auth)
            fail("out of memory");
        gw_header(g_auth, g_auth_len, GW_CMD_GATEWAY_CLIENT_CONNECT, GW_FLAG_BODY_IS_SCALAR, 0);
        memcpy(g_auth + GW_HEADER, body, bl);
        free(body);
    }
    /* ext_data: a JSON array of one uid, a number as PHP's json_encode() writes an integer
     * user id (the usual case on a ThinkPHP or Laravel site). */
    size_t ext_len = 2 + UID_DIGITS;
    g_push.len = GW_HEADER + ext_len + (size_t)g_size;
    g_push.bytes = malloc(g_push.len);
    if (!g_push.bytes)
        fail("out of memory");
    char *p = g_push.bytes;
    gw_header(p, g_push.len, GW_CMD_SEND_TO_UID, GW_FLAG_BODY_IS_SCALAR, ext_len);
    p[GW_HEADER] = '[';
    p[GW_HEADER + 1 + UID_DIGITS] = ']';
    g_push.uid_at = GW_HEADER + 1;
    fill_payload(p + GW_HEADER + ext_len);
    g_push.ts_at = GW_HEADER + ext_len;
    g_push.puid_at = g_push.ts_at + 16;
}

static void build_http_request(void)
{
    size_t cap = 128 + (size_t)g_size;
    char *body = malloc(cap);
    if (!body)
        fail("out of memory");
    int bl = snprintf(body, cap, "{\"uid\":\"");
    size_t uid_at = (size_t)bl;
    bl += UID_DIGITS;
    bl += snprintf(body + bl, cap - (size_t)bl, "\",\"data\":\"");
    size_t data_at = (size_t)bl;
    fill_payload(body + bl);
    bl += (int)g_size;
    bl += snprintf(body + bl, cap - (size_t)bl, "\"}");
    char head[1024];
    size_t hl = httpc_head(&g_api, head, sizeof head, "/gateway/send_to_uid", (size_t)bl);
    g_push.len = hl + (size_t)bl;
    g_push.bytes = malloc(g_push.len);
    if (!g_push.bytes)
        fail("out of memory");
    memcpy(g_push.bytes, head, hl);
    memcpy(g_push.bytes + hl, body, (size_t)bl);
    g_push.uid_at = hl + uid_at;
    g_push.ts_at = hl + data_at;
    g_push.puid_at = g_push.ts_at + 16;
    free(body);
}

/* Copies the push into dst for the next uid in turn, stamped ts. */
static void push_fill(char *dst, uint64_t ts)
{
    long uid = g_uid_base + g_cursor;
    g_cursor = (g_cursor + 1) % g_n;
    memcpy(dst, g_push.bytes, g_push.len);
    put_uid(dst + g_push.uid_at, uid);
    put_uid(dst + g_push.puid_at, uid);
    hex16_put(dst + g_push.ts_at, ts);
}

static void note_error(const char *what, int status)
{
    if (g_errors++ == 0)
        fprintf(stderr, "chatd-bench gwpush: %s: %s\n", what, uv_strerror(status));
}

static void count_sent(void)
{
    g_sent_all++;
    if (g_measuring)
        g_sent++;
}

/* ---- per-call ---- */

static void pc_start(uint64_t ts);

static void pc_closed(uv_handle_t *h)
{
    pc_slot *s = h->data;
    s->next_free = g_free_slot;
    g_free_slot = s - g_slots;
    g_slots_busy--;
    if (g_waiting > 0 && !g_stopping) {
        g_waiting--;
        pc_start(bench_clock());
    }
}

static void pc_written(uv_write_t *req, int status)
{
    pc_slot *s = req->data;
    if (status < 0)
        note_error("writing a push to the inner port", status);
    else
        count_sent();
    uv_close((uv_handle_t *)&s->tcp, pc_closed);
}

static void pc_connected(uv_connect_t *req, int status)
{
    pc_slot *s = req->data;
    if (status < 0) {
        note_error("connecting to the inner port", status);
        uv_close((uv_handle_t *)&s->tcp, pc_closed);
        return;
    }
    size_t len = g_auth_len + g_push.len;
    uv_buf_t b = uv_buf_init(s->buf, (unsigned)len);
    int n = uv_try_write((uv_stream_t *)&s->tcp, &b, 1);
    if (n == (int)len) {
        count_sent();
        /* As php-fpm does when the call returns: close, FIN after the bytes. */
        uv_close((uv_handle_t *)&s->tcp, pc_closed);
        return;
    }
    if (n < 0 && n != UV_EAGAIN) {
        note_error("writing a push to the inner port", n);
        uv_close((uv_handle_t *)&s->tcp, pc_closed);
        return;
    }
    if (n < 0)
        n = 0;
    b = uv_buf_init(s->buf + n, (unsigned)(len - (size_t)n));
    s->wreq.data = s;
    int rc = uv_write(&s->wreq, (uv_stream_t *)&s->tcp, &b, 1, pc_written);
    if (rc < 0) {
        note_error("writing a push to the inner port", rc);
        uv_close((uv_handle_t *)&s->tcp, pc_closed);
    }
}

/* Starts one push on a free slot; false when every slot is busy. */
static bool pc_try_start(uint64_t ts)
{
    if (g_free_slot < 0)
        return false;
    pc_slot *s = &g_slots[g_free_slot];
    g_free_slot = s->next_free;
    g_slots_busy++;
    if (g_auth)
        memcpy(s->buf, g_auth, g_auth_len);
    push_fill(s->buf + g_auth_len, ts);
    int rc = uv_tcp_init_ex(g_loop, &s->tcp, AF_INET);
    if (rc < 0) {
        note_error("creating a socket", rc);
        s->next_free = g_free_slot;
        g_free_slot = s - g_slots;
        g_slots_busy--;
        return true;
    }
    s->tcp.data = s;
    s->creq.data = s;
    uv_tcp_nodelay(&s->tcp, 1);
    if (g_pc_nsrc) {
        /* Spread over source addresses: every push leaves a TIME_WAIT on our side (we close
         * first), and one address has only ~28,000 ephemeral ports to reuse. */
        uv_os_fd_t fd;
        int one = 1;
        if (uv_fileno((uv_handle_t *)&s->tcp, &fd) == 0)
            setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        rc = uv_tcp_bind(&s->tcp, (const struct sockaddr *)&g_pc_src[g_pc_next_src++ % g_pc_nsrc],
                         0);
    }
    if (rc == 0)
        rc = uv_tcp_connect(&s->creq, &s->tcp, (const struct sockaddr *)&g_gw.addr, pc_connected);
    if (rc < 0) {
        note_error("connecting to the inner port", rc);
        uv_close((uv_handle_t *)&s->tcp, pc_closed);
    }
    return true;
}

static void pc_start(uint64_t ts)
{
    if (!pc_try_start(ts))
        g_waiting++; /* closed loop: started as soon as a slot is free */
}

static void pc_setup(void)
{
    /* Slots: the window, plus room for connections still closing when their push has
     * already been delivered. */
    g_nslots = g_opt.rate > 0 ? (g_opt.window > 0 ? g_opt.window : 256) : 4 * g_window + 16;
    g_slots = calloc((size_t)g_nslots, sizeof *g_slots);
    if (!g_slots)
        fail("out of memory");
    for (long i = g_nslots - 1; i >= 0; i--) {
        g_slots[i].buf = malloc(g_auth_len + g_push.len);
        if (!g_slots[i].buf)
            fail("out of memory");
        g_slots[i].next_free = g_free_slot;
        g_free_slot = i;
    }
    if ((ntohl(g_gw.addr.sin_addr.s_addr) >> 24) == 127) {
        g_pc_nsrc = g_opt.sources > 0 && g_opt.sources < 8 ? (int)g_opt.sources : 8;
        for (int i = 0; i < g_pc_nsrc; i++) {
            g_pc_src[i].sin_family = AF_INET;
            g_pc_src[i].sin_addr.s_addr = htonl((127u << 24) | (uint32_t)(i + 1));
        }
    }
}

/* ---- persistent ---- */

static void pers_connected(bconn *c, int status)
{
    if (status < 0)
        fail("cannot connect to the inner port %s: %s", g_opt.gw_addr, uv_strerror(status));
    if (++g_pers_open == g_npers)
        setup_done();
    (void)c;
}

static size_t pers_read(bconn *c, char *data, size_t len)
{
    (void)c;
    (void)data;
    if (g_bad++ == 0)
        fprintf(stderr,
                "chatd-bench gwpush: the inner port sent %zu bytes (sendToUid has no "
                "reply)\n",
                len);
    return len;
}

static void pers_end(bconn *c, int status)
{
    (void)c;
    if (g_stopping && status == 0)
        return;
    if (g_lost++ == 0)
        fprintf(stderr, "chatd-bench gwpush: an inner connection ended: %s\n",
                status ? uv_strerror(status) : "closed");
    stop_measured();
}

static void pers_setup(void)
{
    g_npers = g_opt.gw_conns > 0 ? g_opt.gw_conns : 4;
    g_pers = calloc((size_t)g_npers, sizeof *g_pers);
    if (!g_pers)
        fail("out of memory");
    for (long i = 0; i < g_npers; i++) {
        bconn *c = &g_pers[i];
        bconn_init(c);
        c->on_connect = pers_connected;
        c->on_read = pers_read;
        c->on_end = pers_end;
        int rc = bconn_connect(c, &g_gw.addr, NULL);
        if (rc < 0)
            fail("inner connection: %s", uv_strerror(rc));
        if (g_auth) /* flushed once connected: the connection's first frame */
            bconn_append(c, g_auth, g_auth_len);
    }
    run_setup("connecting to the inner port");
}

static bool pers_push(uint64_t ts)
{
    bconn *c = &g_pers[g_rr++ % g_npers];
    if (c->state != BCONN_OPEN)
        return true; /* pers_end counted it */
    if (g_opt.rate > 0 && bconn_pending(c) > MAX_BACKLOG)
        return false;
    push_fill(bconn_reserve(c, g_push.len), ts);
    bconn_commit(c, g_push.len);
    count_sent();
    bconn_flush(c);
    return true;
}

/* ---- http ---- */

static void on_http(void *ctx, int status, const char *body, size_t len)
{
    (void)ctx;
    if (status == 200 && len > 0)
        return;
    char msg[200];
    if (!api_ok(status, body, len, msg, sizeof msg) && g_errors++ == 0)
        fprintf(stderr, "chatd-bench gwpush: send_to_uid failed: %s\n", msg);
    if (status < 0)
        stop_measured();
}

static bool http_push(uint64_t ts)
{
    if (g_opt.rate > 0 && g_api.inflight > 100000)
        return false;
    static char *req;
    if (!req && !(req = malloc(g_push.len)))
        fail("out of memory");
    push_fill(req, ts);
    /* httpc_raw copies the bytes into the connection's buffer at once. */
    httpc_raw(&g_api, (int)(g_rr++ % g_api.nconns), req, g_push.len, on_http, NULL);
    count_sent();
    return true;
}

/* ---- every mode ---- */

/* Sends one push stamped ts; false when it could not (rate mode: no room). */
static bool push_one(uint64_t ts)
{
    switch (g_mode) {
    case GW_PER_CALL:
        if (g_opt.rate > 0)
            return pc_try_start(ts);
        pc_start(ts);
        return true;
    case GW_PERSISTENT:
        return pers_push(ts);
    case GW_HTTP:
        return http_push(ts);
    }
    return false;
}

static void on_message(wsc *w, int opcode, char *p, size_t len)
{
    (void)opcode;
    uint64_t ts;
    long uid = 0;
    if (len < PAYLOAD_MIN || hex16_get(p, &ts) != 0) {
        if (g_bad++ == 0)
            fprintf(stderr, "chatd-bench gwpush: unexpected message: %.*s\n",
                    (int)(len > 200 ? 200 : len), p);
        return;
    }
    for (int i = 0; i < UID_DIGITS; i++)
        uid = uid * 10 + (p[16 + i] - '0');
    if (uid != g_uid_base + w->id && g_misrouted++ == 0)
        fprintf(stderr, "chatd-bench gwpush: client of uid %ld got the push for uid %ld\n",
                g_uid_base + w->id, uid);
    g_recv_all++;
    g_last_delivery = bench_now;
    if (g_measuring) {
        hist_record(&g_lat, bench_now > ts ? bench_now - ts : 0);
        g_delivered++;
    }
    if (g_opt.rate <= 0 && !g_stopping)
        push_one(bench_now);
}

static void on_end(wsc *w, int status)
{
    if (g_lost++ == 0)
        fprintf(stderr, "chatd-bench gwpush: a client's connection ended: %s\n",
                wsc_strerror(w, status));
}

static const wsc_handlers handlers = {NULL, on_message, on_end};

/* Open loop: send every push whose scheduled time has come. */
static void on_idle(uv_idle_t *h)
{
    (void)h;
    if (g_stopping)
        return;
    uint64_t now = bench_clock();
    double per_ns = g_opt.rate / 1e9;
    uint64_t due = (uint64_t)((double)(now - g_t_start) * per_ns);
    for (; g_scheduled < due; g_scheduled++) {
        uint64_t at_ns = g_t_start + (uint64_t)((double)g_scheduled / per_ns);
        if (!push_one(at_ns)) {
            if (g_measuring)
                g_skipped++;
            continue;
        }
        if (g_measuring)
            hist_record(&g_lag, now > at_ns ? now - at_ns : 0);
    }
}

static void watch(uv_timer_t *t)
{
    (void)t;
    uint64_t now = uv_hrtime();
    if (g_stopping || g_sent_all == g_recv_all || now - g_last_delivery < STALL_NS)
        return;
    fprintf(stderr,
            "chatd-bench gwpush: stalled: no push delivered for 5 s, %llu in flight "
            "(%llu errors)\n",
            (unsigned long long)(g_sent_all - g_recv_all), (unsigned long long)g_errors);
    g_lost++;
    stop_measured();
}

static void reset(void)
{
    hist_reset(&g_lat);
    hist_reset(&g_lag);
    g_delivered = g_sent = g_errors = g_bad = g_skipped = g_misrouted = 0;
}

/* After the window: until every push sent has arrived (or 2 s), so lost pushes show. */
static void drain(void)
{
    uint64_t deadline = uv_hrtime() + 2000000000ull;
    while ((g_recv_all < g_sent_all || g_slots_busy > 0) && uv_hrtime() < deadline)
        uv_run(g_loop, UV_RUN_ONCE); /* the 1 s watch timer bounds each pass */
}

static double us_per_push(double cpu, double secs)
{
    return cpu >= 0 && g_delivered ? cpu * secs * 1e6 / (double)g_delivered : -1;
}

int cmd_gwpush(void)
{
    target t;
    if (target_parse(g_opt.url, &t) != 0 || t.raw)
        fail("--url wants a ws:// URL");
    const char *m = g_opt.gw_mode ? g_opt.gw_mode : "per-call";
    if (strcmp(m, "per-call") == 0)
        g_mode = GW_PER_CALL;
    else if (strcmp(m, "persistent") == 0)
        g_mode = GW_PERSISTENT;
    else if (strcmp(m, "http") == 0)
        g_mode = GW_HTTP;
    else
        fail("--gw-mode wants per-call, persistent or http, not '%s'", m);
    if (g_mode != GW_HTTP) {
        char url[300];
        if (!g_opt.gw_addr)
            fail("--gw-mode %s needs --gw-addr HOST:PORT (chatd's --gw-inner)", m);
        snprintf(url, sizeof url, "tcp://%s", g_opt.gw_addr);
        if (target_parse(url, &g_gw) != 0)
            return EXIT_USAGE;
    }
    g_n = g_opt.n > 0 ? g_opt.n : 1000;
    g_size = g_opt.size >= 0 ? g_opt.size : 32;
    g_window = g_opt.window > 0 ? g_opt.window : 32;
    if (g_size < PAYLOAD_MIN)
        fail("--size must be at least %d (timestamp and uid)", PAYLOAD_MIN);
    if (!g_opt.api_secret)
        fail("--api-secret is required (clients are bound to uids through the server API)");
    g_uid_base = 1000000000L + (long)(rnd64() % 1000) * 1000000L;
    if (g_n > 1000000)
        fail("-n must be at most 1,000,000 (uids are %d digits)", UID_DIGITS);

    g_w = calloc((size_t)g_n, sizeof *g_w);
    if (!g_w)
        fail("out of memory");
    char api_url[400];
    snprintf(api_url, sizeof api_url, "%s://%s", api_scheme(&t), t.hostport);
    if (httpc_init(&g_api, g_opt.api_url ? g_opt.api_url : api_url, g_opt.api_secret,
                   (int)g_opt.api_conns) != 0)
        return EXIT_RUN_FAILED;

    g_f = (fleet){.t = &t, .n = g_n, .at = at, .want_init = true};
    fleet_open(&g_f);
    fleet_api_all(&g_f, &g_api, "/gateway/bind_uid", bind_body);
    for (long i = 0; i < g_n; i++)
        g_w[i].h = &handlers;

    if (g_mode == GW_HTTP) {
        build_http_request();
    } else {
        build_gw_frames();
        if (g_mode == GW_PER_CALL)
            pc_setup();
        else
            pers_setup();
    }
    fprintf(stderr, "chatd-bench gwpush: %ld clients bound, pushing %s, measuring %.1f s\n", g_n,
            mode_names[g_mode], g_opt.duration);

    uv_timer_init(g_loop, &g_watch);
    uv_timer_start(&g_watch, watch, 1000, 1000);
    g_t_start = g_last_delivery = bench_clock();
    if (g_opt.rate > 0) {
        uv_idle_init(g_loop, &g_idle);
        uv_idle_start(&g_idle, on_idle);
    } else {
        for (long k = 0; k < g_window; k++)
            push_one(bench_now);
    }
    window_result r = run_measured(reset);
    g_stopping = true;
    if (g_opt.rate > 0) {
        uv_idle_stop(&g_idle);
        uv_close((uv_handle_t *)&g_idle, NULL);
    }
    drain();
    uv_timer_stop(&g_watch);
    uv_close((uv_handle_t *)&g_watch, NULL);

    report_begin("gwpush");
    report_str("mode", "mode", mode_names[g_mode]);
    if (g_mode != GW_HTTP)
        report_str("gw_addr", "inner port", g_opt.gw_addr);
    report_str("auth", g_mode != GW_HTTP ? "202 auth frame" : NULL,
               g_mode == GW_HTTP ? "bearer" : (g_auth ? "yes" : "no"));
    report_int("clients", "clients (uids)", g_n);
    report_int("size", "payload bytes", g_size);
    if (g_mode == GW_PERSISTENT)
        report_int("conns", "inner connections", g_npers);
    if (g_mode == GW_HTTP)
        report_int("conns", "API connections", g_api.nconns);
    if (g_opt.rate > 0) {
        report_num("offered", "offered pushes/s", g_opt.rate);
        report_num("sent_rate", "sent pushes/s", r.secs > 0 ? (double)g_sent / r.secs : 0);
    } else {
        report_int("window", "pushes in flight", g_window);
    }
    report_num("duration_s", "measured s", r.secs);
    report_num("rate", "delivered pushes/s", r.secs > 0 ? (double)g_delivered / r.secs : 0);
    report_latency("lat", "latency us", &g_lat);
    if (g_opt.rate > 0)
        report_latency("lag", "send lag us (bench)", &g_lag);
    report_cpu(&r);
    double v = us_per_push(r.server_cpu, r.secs);
    if (v >= 0)
        report_num("server_us_per_push", "server cpu us/push", v);
    v = us_per_push(r.self_cpu, r.secs);
    if (v >= 0)
        report_num("bench_us_per_push", "chatd-bench cpu us/push", v);
    for (int i = 0; i < g_opt.nwatch; i++) {
        char key[80], label[80];
        snprintf(key, sizeof key, "%s_us_per_push", g_opt.watch_name[i]);
        snprintf(label, sizeof label, "%s cpu us/push", g_opt.watch_name[i]);
        v = us_per_push(r.watch_cpu[i], r.secs);
        if (v >= 0)
            report_num(key, label, v);
    }
    uint64_t undelivered = g_sent_all > g_recv_all ? g_sent_all - g_recv_all : 0;
    if (undelivered && g_mode != GW_HTTP)
        fprintf(stderr,
                "chatd-bench gwpush: %llu pushes never arrived (the inner port closes a "
                "connection with a wrong or missing --gw-secret without a reply; see its log)\n",
                (unsigned long long)undelivered);
    report_int("errors", g_errors ? "push errors" : NULL, (long long)g_errors);
    report_int("undelivered", undelivered ? "never delivered" : NULL, (long long)undelivered);
    report_int("misrouted", g_misrouted ? "to the wrong uid" : NULL, (long long)g_misrouted);
    report_int("skipped", g_skipped ? "not sent (backlog)" : NULL, (long long)g_skipped);
    report_int("lost_conns", g_lost ? "lost connections" : NULL, (long long)g_lost);
    report_end();

    for (long i = 0; i < g_npers; i++)
        bconn_close(&g_pers[i], 0, false);
    httpc_close(&g_api);
    fleet_close_all(&g_f);
    return g_lost || g_errors || g_bad || g_misrouted || undelivered || g_delivered == 0
               ? EXIT_RUN_FAILED
               : 0;
}
