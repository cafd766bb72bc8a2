/* sc_route: `chatd-bench route`, the chat service's hot path: 2M clients, bound to uids
 * through the server API (bind_uid), each sending transient events ({"type":"event"}) to its
 * partner's uid; the server routes each to the partner's socket.
 *
 * Saturation (default): every client starts with --window events in flight to its partner
 * and answers each event it receives with a new one, so each pair always has 2W events in
 * flight. With --rate R: open loop, R events/s in total spread round-robin over the clients
 * by a busy-polling scheduler, each stamped with its scheduled send time so a stalled server
 * shows up as latency (no coordinated omission). How late chatd-bench itself got to each send
 * is reported as the send lag, so its own share of the latency is visible.
 *
 * Each client's event frame is built once; a send copies it and patches the 16 hex digits of
 * the timestamp at the start of "data". The receiver reads them back: latency is one way,
 * sender to receiver, on this process's clock.
 *
 * With --url2 (a second cluster node) the odd-numbered clients connect there: client 2k is on
 * the first node, its partner 2k+1 on the second, so every event crosses from one node to the
 * other (half of them each way). Binding still goes through --url's server API. */
#include "bench.h"
#include "fleet.h"
#include "report.h"

#include <stdlib.h>
#include <string.h>

typedef struct route_client {
    wsc w;
    char *frame; /* {"type":"event","to_id":<partner>,"data":"<ts><pad>"}, masked */
    size_t frame_len;
    size_t po; /* payload offset in the frame */
    size_t tp; /* timestamp offset in the payload */
    bool dirty;
} route_client;

static route_client *g_cl;
static fleet g_f;
static long g_n, g_size, g_window, g_uid_base;
static uint64_t g_delivered, g_sent, g_errors, g_bad, g_lost, g_skipped;
static hist g_lat;
static hist g_lag; /* rate mode: how late chatd-bench itself sent events */
static bool g_stopping;

/* rate mode */
static uv_idle_t g_idle;
static uint64_t g_t_start, g_scheduled;
static long g_cursor;
static long *g_dirty;
static long g_ndirty;

#define MAX_BACKLOG (4u << 20) /* rate mode: skip a client with this much unsent */

static wsc *at(long i)
{
    return &g_cl[i].w;
}

static size_t bind_body(const fleet *f, long i, char *buf, size_t cap)
{
    return (size_t)snprintf(buf, cap, "{\"client_id\":\"%s\",\"uid\":\"%ld\"}", f->client_id[i],
                            g_uid_base + i);
}

static void send_event(route_client *c, uint64_t ts)
{
    char hex[16];
    char *p = bconn_reserve(&c->w.c, c->frame_len);
    memcpy(p, c->frame, c->frame_len);
    hex16_put(hex, ts);
    wsc_mask_patch(p + c->po, c->tp, hex, 16, (const uint8_t *)c->frame + c->po - 4);
    bconn_commit(&c->w.c, c->frame_len);
    if (g_measuring)
        g_sent++;
}

static void on_message(wsc *w, int opcode, char *p, size_t len)
{
    (void)opcode;
    route_client *c = (route_client *)w;
    const char *d = json_field(p, len, "data");
    uint64_t ts;
    if (!d || *d != '"' || (size_t)(p + len - d) < 17 || hex16_get(d + 1, &ts) != 0) {
        if (json_field(p, len, "type") && memmem(p, len, "\"error\"", 7)) {
            if (g_errors++ == 0) {
                fprintf(stderr, "chatd-bench route: the server refused an event: %.*s\n",
                        (int)(len > 200 ? 200 : len), p);
                if (memmem(p, len, "rate_limited", 12))
                    fprintf(stderr, "chatd-bench route: start chatd with --event-rate 0\n");
            }
        } else if (g_bad++ == 0) {
            fprintf(stderr, "chatd-bench route: unexpected message: %.*s\n",
                    (int)(len > 200 ? 200 : len), p);
        }
        return;
    }
    if (g_measuring) {
        hist_record(&g_lat, bench_now > ts ? bench_now - ts : 0);
        g_delivered++;
    }
    if (g_opt.rate <= 0 && !g_stopping)
        send_event(c, bench_now);
}

static void on_end(wsc *w, int status)
{
    if (g_lost++ == 0)
        fprintf(stderr, "chatd-bench route: a client's connection ended: %s\n",
                wsc_strerror(w, status));
}

static const wsc_handlers handlers = {NULL, on_message, on_end};

/* Open loop: send every event whose scheduled time has come. */
static void on_idle(uv_idle_t *h)
{
    (void)h;
    if (g_stopping)
        return;
    uint64_t now = bench_clock();
    double per_ns = g_opt.rate / 1e9;
    uint64_t due = (uint64_t)((double)(now - g_t_start) * per_ns);
    for (; g_scheduled < due; g_scheduled++) {
        route_client *c = &g_cl[g_cursor];
        g_cursor = (g_cursor + 1) % g_n;
        if (c->w.c.state != BCONN_OPEN)
            continue;
        if (bconn_pending(&c->w.c) > MAX_BACKLOG) {
            if (g_measuring)
                g_skipped++;
            continue;
        }
        uint64_t at = g_t_start + (uint64_t)((double)g_scheduled / per_ns);
        if (g_measuring)
            hist_record(&g_lag, now > at ? now - at : 0);
        send_event(c, at);
        if (!c->dirty) {
            c->dirty = true;
            g_dirty[g_ndirty++] = c - g_cl;
        }
    }
    for (long i = 0; i < g_ndirty; i++) {
        route_client *c = &g_cl[g_dirty[i]];
        c->dirty = false;
        bconn_flush(&c->w.c);
    }
    g_ndirty = 0;
}

static void reset(void)
{
    hist_reset(&g_lat);
    hist_reset(&g_lag);
    g_delivered = g_sent = g_errors = g_bad = g_skipped = 0;
}

int cmd_route(void)
{
    target t, t2;
    if (target_parse(g_opt.url, &t) != 0)
        return EXIT_USAGE;
    if (g_opt.url2 && (target_parse(g_opt.url2, &t2) != 0 || t2.raw || t.raw))
        fail("--url2 wants a ws:// URL next to a ws:// --url");
    long pairs = g_opt.pairs > 0 ? g_opt.pairs : 100;
    g_n = 2 * pairs;
    g_size = g_opt.size >= 0 ? g_opt.size : 32;
    g_window = g_opt.window > 0 ? g_opt.window : 1;
    if (g_size < 16)
        fail("--size must be at least 16 (the timestamp)");
    if (!g_opt.api_secret)
        fail("--api-secret is required (clients are bound to uids through the server API)");
    g_uid_base = 1000000000L + (long)(rnd64() % 1000) * 1000000L;

    g_cl = calloc((size_t)g_n, sizeof *g_cl);
    g_dirty = calloc((size_t)g_n, sizeof *g_dirty);
    if (!g_cl || !g_dirty)
        fail("out of memory");

    char api_url[400];
    snprintf(api_url, sizeof api_url, "%s://%s", api_scheme(&t), t.hostport);
    httpc api;
    if (httpc_init(&api, g_opt.api_url ? g_opt.api_url : api_url, g_opt.api_secret,
                   (int)g_opt.api_conns) != 0)
        return EXIT_RUN_FAILED;

    g_f = (fleet){.t = &t, .t2 = g_opt.url2 ? &t2 : NULL, .n = g_n, .at = at, .want_init = true};
    fleet_open(&g_f);
    fleet_api_all(&g_f, &api, "/gateway/bind_uid", bind_body);
    fprintf(stderr, "chatd-bench route: %ld clients bound%s, measuring %.1f s\n", g_n,
            g_opt.url2 ? " (partners on two nodes)" : "", g_opt.duration);

    /* Build each client's frame: to its partner (i ^ 1). */
    size_t cap = 128 + (size_t)g_size;
    char *json = malloc(cap);
    for (long i = 0; i < g_n; i++) {
        route_client *c = &g_cl[i];
        int n = snprintf(json, cap, "{\"type\":\"event\",\"to_id\":%ld,\"data\":\"",
                         g_uid_base + (i ^ 1));
        c->tp = (size_t)n;
        for (long k = 0; k < g_size; k++)
            json[n + k] = k < 16 ? '0' : (char)('a' + k % 26);
        n += (int)g_size;
        n += snprintf(json + n, cap - (size_t)n, "\"}");
        uint64_t r = rnd64();
        uint8_t mask[4];
        memcpy(mask, &r, 4);
        c->frame_len = wsc_frame_size((size_t)n);
        c->frame = malloc(c->frame_len);
        if (!c->frame)
            fail("out of memory");
        c->po = wsc_frame_build(c->frame, WS_TEXT, json, (size_t)n, mask);
        c->w.h = &handlers;
    }
    free(json);

    g_t_start = bench_clock();
    if (g_opt.rate > 0) {
        uv_idle_init(g_loop, &g_idle);
        uv_idle_start(&g_idle, on_idle);
    } else {
        for (long i = 0; i < g_n; i++) {
            for (long k = 0; k < g_window; k++)
                send_event(&g_cl[i], bench_now);
            bconn_flush(&g_cl[i].w.c);
        }
    }
    measure_count(&g_delivered);
    window_result r = run_measured(reset);
    g_stopping = true;
    if (g_opt.rate > 0) {
        uv_idle_stop(&g_idle);
        uv_close((uv_handle_t *)&g_idle, NULL);
    }

    report_begin("route");
    report_int("pairs", "pairs", pairs);
    report_int("size", "payload bytes", g_size);
    if (g_opt.url2)
        report_str("ends", "pair ends", "two nodes");
    if (g_opt.rate > 0) {
        report_num("offered", "offered events/s", g_opt.rate);
        report_num("sent_rate", "sent events/s", r.secs > 0 ? (double)g_sent / r.secs : 0);
    } else {
        report_int("window", "in flight per client", g_window);
    }
    report_num("duration_s", "measured s", r.secs);
    report_num("rate", "delivered events/s", window_rate(&r, g_delivered));
    report_latency("lat", "latency us", &g_lat);
    if (g_opt.rate > 0)
        report_latency("lag", "send lag us (bench)", &g_lag);
    report_cpu(&r);
    report_int("errors", g_errors ? "refused events" : NULL, (long long)g_errors);
    report_int("skipped", g_skipped ? "not sent (backlog)" : NULL, (long long)g_skipped);
    report_int("lost_conns", g_lost ? "lost connections" : NULL, (long long)g_lost);
    report_end();
    httpc_close(&api);
    fleet_close_all(&g_f);
    return g_lost || g_errors || g_bad || g_delivered == 0 ? EXIT_RUN_FAILED : 0;
}
