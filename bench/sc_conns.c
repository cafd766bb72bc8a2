/* sc_conns: `chatd-bench conns`, how fast the server accepts WebSocket clients and what each
 * one costs it: open -n connections (--concurrency handshakes at a time, spread over source
 * addresses when one address lacks ports), wait for every `init`, report connections/s and,
 * with --server-pid, the server's RSS before and after, i.e. bytes per connection; then hold
 * them --hold seconds (answering pings) and close them by RST. */
#include "bench.h"
#include "fleet.h"
#include "report.h"

#include <stdlib.h>

static wsc *g_w;
static fleet g_f;
static long g_dropped;

static wsc *at(long i)
{
    return &g_w[i];
}

static void on_message(wsc *w, int opcode, char *p, size_t len)
{
    (void)w;
    (void)opcode;
    (void)p;
    (void)len;
}

static void on_end(wsc *w, int status)
{
    if (g_dropped++ == 0)
        fprintf(stderr, "chatd-bench conns: a held connection ended: %s\n",
                wsc_strerror(w, status));
}

static const wsc_handlers handlers = {NULL, on_message, on_end};

static void hold_done(uv_timer_t *t)
{
    (void)t;
    setup_done();
}

int cmd_conns(void)
{
    target t;
    if (target_parse(g_opt.url, &t) != 0)
        return EXIT_USAGE;
    long n = g_opt.n > 0 ? g_opt.n : 1000;
    long limit = raise_nofile();
    if (limit > 0 && n + 16 > limit)
        fail("-n %ld needs more open files than this process may have (%ld)", n, limit);
    g_w = calloc((size_t)n, sizeof *g_w);
    if (!g_w)
        fail("out of memory");

    long rss0 = g_opt.server_pid > 0 ? proc_rss(g_opt.server_pid) : -1;
    long anon0 = g_opt.server_pid > 0 ? proc_rss_anon(g_opt.server_pid) : -1;
    if (g_opt.server_pid > 0 && rss0 < 0)
        fail("cannot read /proc/%d/status", g_opt.server_pid);
    double cpu0 = g_opt.server_pid > 0 ? proc_cpu(g_opt.server_pid) : -1;

    g_f = (fleet){.t = &t, .n = n, .at = at, .want_init = true, .count_failures = true};
    fleet_open(&g_f);
    double secs = (double)(g_f.t_end - g_f.t_begin) / 1e9;
    for (long i = 0; i < n; i++)
        g_w[i].h = &handlers;

    /* Let the server finish whatever it does after sending init before reading its RSS. */
    uv_timer_t timer;
    uv_timer_init(g_loop, &timer);
    uv_timer_start(&timer, hold_done, 200, 0);
    run_setup("settling");
    long rss1 = g_opt.server_pid > 0 ? proc_rss(g_opt.server_pid) : -1;
    long anon1 = g_opt.server_pid > 0 ? proc_rss_anon(g_opt.server_pid) : -1;
    double cpu1 = g_opt.server_pid > 0 ? proc_cpu(g_opt.server_pid) : -1;

    report_begin("conns");
    report_int("n", "connections", n);
    report_int("open", "open", g_f.ready);
    report_int("failed", g_f.failed ? "failed" : NULL, g_f.failed);
    if (g_f.failed)
        report_str("first_error", "first error", g_f.first_error_text);
    report_int("sources", "source addresses", sources_count());
    report_num("setup_s", "time to open all s", secs);
    report_num("rate", "connections/s", secs > 0 ? (double)g_f.ready / secs : 0);
    report_latency("ready", "connect->init us", &g_f.ready_lat);
    if (rss0 >= 0 && rss1 >= 0) {
        report_int("rss_before", "server rss before", rss0);
        report_int("rss_after", "server rss after", rss1);
        report_num("bytes_per_conn", "bytes per connection",
                   g_f.ready ? (double)(rss1 - rss0) / (double)g_f.ready : 0);
        if (anon0 >= 0 && anon1 >= 0)
            report_num("anon_bytes_per_conn", "anon bytes per connection",
                       g_f.ready ? (double)(anon1 - anon0) / (double)g_f.ready : 0);
        report_num("server_cpu_s", "server cpu s", cpu1 - cpu0);
    }
    report_end();

    if (g_opt.hold > 0) {
        fprintf(stderr, "chatd-bench conns: holding %ld connections for %.1f s\n", g_f.ready,
                g_opt.hold);
        uv_timer_start(&timer, hold_done, (uint64_t)(g_opt.hold * 1000), 0);
        double saved = g_opt.timeout;
        g_opt.timeout = g_opt.hold + 60;
        run_setup("holding");
        g_opt.timeout = saved;
        if (g_dropped)
            fprintf(stderr, "chatd-bench conns: %ld connections ended while held\n", g_dropped);
    }
    uv_close((uv_handle_t *)&timer, NULL);
    fleet_close_all(&g_f);
    return g_f.failed || g_dropped ? EXIT_RUN_FAILED : 0;
}
