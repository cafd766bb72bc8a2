/* sc_storm: `chatd-bench storm`, a reconnect storm: -n complete client arrivals, each
 * connect + WebSocket handshake + `init` + bind_uid through the server API + close (by RST,
 * so neither side keeps a TIME_WAIT socket), --concurrency of them at once. Reports
 * arrivals/s and the latency of a whole arrival and of its connect->init part: what a server
 * sees when a fleet of phones comes back after a network blip. */
#include "bench.h"
#include "fleet.h"
#include "report.h"

#include <stdlib.h>
#include <string.h>

typedef struct slot {
    wsc w;
    long cycle;
    uint64_t t0;
    bool bound;
    char client_id[32];
} slot;

static slot *g_slots;
static long g_nslots, g_total, g_started, g_done, g_failed;
static target g_t;
static httpc g_api;
static hist g_cycle_lat, g_init_lat;
static long g_uid_base;
static char g_first_error[320];

static void start(slot *s);

static void failed(slot *s, const char *why)
{
    if (g_failed++ == 0)
        snprintf(g_first_error, sizeof g_first_error, "%s", why);
    (void)s;
}

static void on_bound(void *ctx, int status, const char *body, size_t len)
{
    slot *s = ctx;
    char msg[200];
    if (api_ok(status, body, len, msg, sizeof msg)) {
        s->bound = true;
        hist_record(&g_cycle_lat, bench_clock() - s->t0);
    } else {
        char why[256];
        snprintf(why, sizeof why, "bind_uid: %s", msg);
        failed(s, why);
    }
    wsc_close(&s->w, true);
}

static void on_message(wsc *w, int opcode, char *p, size_t len)
{
    (void)opcode;
    slot *s = (slot *)w;
    if (s->client_id[0])
        return;
    if (json_str_field(p, len, "client_id", s->client_id, sizeof s->client_id) <= 0) {
        failed(s, "first message is not an init");
        wsc_close(w, true);
        return;
    }
    hist_record(&g_init_lat, bench_now - s->t0);
    char body[160];
    int n = snprintf(body, sizeof body, "{\"client_id\":\"%s\",\"uid\":\"%ld\"}", s->client_id,
                     g_uid_base + s->cycle);
    httpc_post(&g_api, "/gateway/bind_uid", body, (size_t)n, on_bound, s);
}

static void on_end(wsc *w, int status)
{
    slot *s = (slot *)w;
    if (!s->bound && status != 0)
        failed(s, wsc_strerror(w, status));
    g_done++;
    progress("arrivals", g_done, g_total);
    if (g_done == g_total)
        setup_done();
    else
        start(s);
}

static const wsc_handlers handlers = {NULL, on_message, on_end};

static void start(slot *s)
{
    while (g_started < g_total) {
        s->cycle = g_started++;
        s->bound = false;
        s->client_id[0] = 0;
        s->t0 = bench_clock();
        int rc = wsc_connect(&s->w, source_for(s->cycle));
        if (rc == 0)
            return;
        failed(s, uv_strerror(rc));
        g_done++;
    }
    if (g_done == g_total)
        setup_done();
}

int cmd_storm(void)
{
    if (target_parse(g_opt.url, &g_t) != 0)
        return EXIT_USAGE;
    if (!g_opt.api_secret)
        fail("--api-secret is required (each arrival binds a uid through the server API)");
    g_total = g_opt.n > 0 ? g_opt.n : 10000;
    g_nslots = g_opt.concurrency < g_total ? g_opt.concurrency : g_total;
    g_uid_base = 2000000000L + (long)(rnd64() % 1000) * 1000000L;
    g_slots = calloc((size_t)g_nslots, sizeof *g_slots);
    if (!g_slots)
        fail("out of memory");
    char api_url[400];
    snprintf(api_url, sizeof api_url, "%s://%s", api_scheme(&g_t), g_t.hostport);
    if (httpc_init(&g_api, g_opt.api_url ? g_opt.api_url : api_url, g_opt.api_secret,
                   (int)g_opt.api_conns) != 0)
        return EXIT_RUN_FAILED;
    hist_reset(&g_cycle_lat);
    hist_reset(&g_init_lat);
    sources_setup(&g_t, g_nslots);

    cpu_window cpu;
    cpu_window_start(&cpu);
    uint64_t t0 = bench_clock();
    for (long i = 0; i < g_nslots; i++) {
        wsc_init(&g_slots[i].w, &handlers, &g_t);
        start(&g_slots[i]);
    }
    run_setup("running the storm");
    double secs = (double)(bench_clock() - t0) / 1e9;
    window_result r = {.secs = secs};
    cpu_window_end(&cpu, &r.self_cpu, &r.server_cpu, r.watch_cpu);
    cpu_window_noise(&cpu, r.self_cpu, r.server_cpu, r.watch_cpu, &r.other_cpu, &r.steal);
    if (g_api.failed)
        fprintf(stderr, "chatd-bench storm: %s\n", g_api.error);

    report_begin("storm");
    report_int("n", "arrivals", g_total);
    report_int("concurrency", "at once", g_nslots);
    report_num("duration_s", "time s", secs);
    report_num("rate", "arrivals/s", secs > 0 ? (double)(g_total - g_failed) / secs : 0);
    report_latency("lat", "arrival us", &g_cycle_lat);
    report_latency("init", "connect->init us", &g_init_lat);
    report_cpu(&r);
    report_int("failed", g_failed ? "failed" : NULL, g_failed);
    if (g_failed)
        report_str("first_error", "first error", g_first_error);
    report_end();
    httpc_close(&g_api);
    uv_run(g_loop, UV_RUN_NOWAIT);
    return g_failed ? EXIT_RUN_FAILED : 0;
}
