/* sc_echo: `chatd-bench echo`, round trips through an echo endpoint (chatd's --echo-path, the
 * peer's /echo, any WebSocket echo server) or, with --raw / tcp://, through a raw TCP echo
 * server such as chatd-floor sending the same payload bytes without framing: the floor any
 * server on this machine can reach.
 *
 * Each connection keeps --window messages in flight: every echo that comes back is answered
 * with the next message in the same read callback. Messages come back in order, so the send
 * times sit in a per-connection ring and nothing needs to be stamped into the payload; every
 * connection sends the same pre-built masked frame. */
#include "bench.h"
#include "fleet.h"
#include "report.h"

#include <stdlib.h>
#include <string.h>

typedef struct echo_client {
    wsc w;
    uint64_t *sent; /* ring of send times, window entries */
    unsigned head;
    size_t raw_acc; /* raw mode: bytes received towards the next whole message */
} echo_client;

static echo_client *g_cl;
static fleet g_f;
static char *g_frame; /* the one message every connection sends */
static size_t g_frame_len;
static long g_size, g_window;
static uint64_t g_rt, g_bad, g_lost;
static int g_first_end;
static hist g_lat;

static wsc *at(long i)
{
    return &g_cl[i].w;
}

static void send_one(echo_client *e, unsigned slot)
{
    e->sent[slot] = bench_now;
    bconn_append(&e->w.c, g_frame, g_frame_len);
}

static void got_one(echo_client *e)
{
    unsigned slot = e->head;
    if (g_measuring) {
        hist_record(&g_lat, bench_now - e->sent[slot]);
        g_rt++;
    }
    e->head = (unsigned)((e->head + 1) % (unsigned long)g_window);
    send_one(e, slot);
}

static void on_message(wsc *w, int opcode, char *p, size_t len)
{
    (void)p;
    echo_client *e = (echo_client *)w;
    if (len != (size_t)g_size || opcode != (g_opt.binary ? WS_BINARY : WS_TEXT))
        g_bad++;
    got_one(e);
}

static size_t on_raw_read(bconn *c, char *data, size_t len)
{
    (void)data;
    echo_client *e = (echo_client *)c;
    e->raw_acc += len;
    while (e->raw_acc >= (size_t)g_size) {
        e->raw_acc -= (size_t)g_size;
        got_one(e);
    }
    return len;
}

static void on_end(wsc *w, int status)
{
    g_lost++;
    if (!g_first_end)
        fprintf(stderr, "chatd-bench echo: a connection ended: %s\n", wsc_strerror(w, status));
    g_first_end = status ? status : -1;
    if ((long)g_lost == g_f.n)
        stop_measured();
}

static void on_raw_end(bconn *c, int status)
{
    on_end((wsc *)c, status);
}

static const wsc_handlers handlers = {NULL, on_message, on_end};

static void reset(void)
{
    hist_reset(&g_lat);
    g_rt = g_bad = 0;
}

int cmd_echo(void)
{
    target t;
    if (target_parse(g_opt.url, &t) != 0)
        return EXIT_USAGE;
    if (g_opt.raw)
        t.raw = true;
    long n = g_opt.conns > 0 ? g_opt.conns : (g_opt.n > 0 ? g_opt.n : 100);
    g_size = g_opt.size >= 0 ? g_opt.size : 32;
    g_window = g_opt.window > 0 ? g_opt.window : 1;
    if (g_size < 1)
        fail("--size must be at least 1");

    g_cl = calloc((size_t)n, sizeof *g_cl);
    uint64_t *rings = calloc((size_t)(n * g_window), sizeof *rings);
    if (!g_cl || !rings)
        fail("out of memory");
    for (long i = 0; i < n; i++)
        g_cl[i].sent = rings + i * g_window;

    /* Printable bytes, valid UTF-8 for text frames. */
    char *payload = malloc((size_t)g_size);
    for (long i = 0; i < g_size; i++)
        payload[i] = (char)('a' + i % 26);
    if (t.raw) {
        g_frame = payload;
        g_frame_len = (size_t)g_size;
    } else {
        uint8_t mask[4];
        uint64_t r = rnd64();
        memcpy(mask, &r, 4);
        g_frame_len = wsc_frame_size((size_t)g_size);
        g_frame = malloc(g_frame_len);
        wsc_frame_build(g_frame, g_opt.binary ? WS_BINARY : WS_TEXT, payload, (size_t)g_size, mask);
        free(payload);
    }

    g_f = (fleet){.t = &t, .n = n, .at = at, .want_init = false};
    fleet_open(&g_f);
    fprintf(stderr, "chatd-bench echo: %ld connections open, measuring %.1f s\n", n,
            g_opt.duration);

    bench_clock();
    for (long i = 0; i < n; i++) {
        echo_client *e = &g_cl[i];
        if (t.raw) {
            e->w.c.on_read = on_raw_read;
            e->w.c.on_end = on_raw_end;
        } else {
            e->w.h = &handlers;
        }
        for (long k = 0; k < g_window; k++)
            send_one(e, (unsigned)k);
        bconn_flush(&e->w.c);
    }
    measure_count(&g_rt);
    window_result r = run_measured(reset);

    report_begin(t.raw ? "echo-raw" : "echo");
    report_int("conns", "connections", n);
    report_int("size", "payload bytes", g_size);
    report_int("window", "in flight per conn", g_window);
    report_num("duration_s", "measured s", r.secs);
    report_num("rate", "round trips/s", window_rate(&r, g_rt));
    report_latency("lat", "latency us", &g_lat);
    report_cpu(&r);
    report_int("bad", g_bad ? "bad echoes" : NULL, (long long)g_bad);
    report_int("lost_conns", g_lost ? "lost connections" : NULL, (long long)g_lost);
    report_end();
    fleet_close_all(&g_f);
    return g_lost || g_bad || g_rt == 0 ? EXIT_RUN_FAILED : 0;
}
