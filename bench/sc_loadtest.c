/* sc_loadtest: `chatd-bench loadtest`, echo round trips measured by a generator that is not
 * ours: uWebSockets' benchmarks/load_test (github.com/uNetworking/uWebSockets), so chatd is
 * not graded only by its own tool (issue 14). chatd-bench runs it as a child, reads what it
 * prints and adds what load_test does not measure: the server's CPU, the machine's noise,
 * the connections actually upgraded.
 *
 * What load_test does (benchmarks/load_test.c, read at uWebSockets 66dcff3, uSockets
 * 86097c4): `load_test CONNS HOST PORT 0 0 SIZE` opens CONNS connections one after the other
 * (the next connect once the previous upgrade request is written), each sending
 * "GET / HTTP/1.1" with a fixed Sec-WebSocket-Key and no Origin, and prints the response
 * ("Response: HTTP/1.1 101 ..."). A connection counts as upgraded when a read ends in
 * "\r\n\r\n" (the whole 101 in one read, nothing after it). Each then keeps one message in
 * flight: a masked *binary* frame (first byte 0x82; the source comment says text) of SIZE
 * bytes 'T', and the next one goes out when SIZE + frame header bytes came back: it counts
 * bytes, not frames, does not look at the opcode and cannot survive a ping or any other
 * frame from the server ("ERROR: outstanding bytes negative!" and it exits). After the last
 * connection is started it arms a timer on that socket, and on every uSockets timeout sweep
 * (LIBUS_TIMEOUT_GRANULARITY, 4 s) prints "Msg/sec: X", X = round trips completed since the
 * last line / 4. The first line covers a partial interval (the arming to the first sweep)
 * and is thrown away here; X * 4 is the exact count of each later interval, and the rate is
 * load_test's own (its timer's 4 s), the CPU figures over the time between its lines as
 * this process saw them (wall_s). It measures no
 * latency, so there is no p50/p99 for this generator. load_test does not raise its file
 * limit: it inherits the soft limit of whoever starts it (run.sh raises it to the hard one).
 *
 * Its stdout is a pipe here, so it runs under `stdbuf -oL` (line buffered) or its lines
 * would arrive in 4 KiB lumps. Noisy spans (quiet.h): the machine is sampled every second;
 * an interval is dropped when any second that ended in it, or the interval as a whole, had
 * other processes above --quiet-cores. load_test's CPU counts as the run's own, not as other. */
#include "bench.h"
#include "report.h"

#include <arpa/inet.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { LT_CONNECTING, LT_WARMUP, LT_MEASURING, LT_DONE };

#define LT_INTERVAL 4.0 /* uSockets' LIBUS_TIMEOUT_GRANULARITY: seconds per Msg/sec line */

static uv_process_t g_proc;
static uv_pipe_t g_out;
static uv_timer_t g_watchdog, g_sec;
static int g_phase;
static bool g_exited, g_out_closed;
static int64_t g_exit_status;
static char g_line[4096];
static size_t g_llen;
static long g_conns, g_open, g_not101, g_closed, g_errors, g_intervals, g_need, g_noisy_secs;
static bool g_noisy;
static uint64_t g_t_running;
static cpu_snap g_start, g_prev, g_sec_prev;
static double g_gen0, g_gen1;
static quiet_acc g_q;
static const char *g_fail;

static void finish(const char *why)
{
    if (g_phase == LT_DONE)
        return;
    if (why && !g_fail)
        g_fail = why;
    g_phase = LT_DONE;
    uv_timer_stop(&g_watchdog);
    uv_timer_stop(&g_sec);
}

/* Every second while measuring: a noisy second marks the interval it ends in. */
static void on_second(uv_timer_t *t)
{
    (void)t;
    cpu_snap now;
    cpu_snap_take(&now, g_proc.pid, NULL);
    double o = cpu_snap_other(&g_sec_prev, &now);
    if (g_opt.quiet_cores >= 0 && o > g_opt.quiet_cores) {
        g_noisy = true;
        g_noisy_secs++;
    }
    g_sec_prev = now;
}

static void on_watchdog(uv_timer_t *t)
{
    (void)t;
    finish(g_phase == LT_CONNECTING ? "timed out opening the connections (--timeout)"
                                    : "no Msg/sec line from load_test for 12 s");
}

static void arm_watchdog(double secs)
{
    uv_timer_start(&g_watchdog, on_watchdog, (uint64_t)(secs * 1000), 0);
}

static void on_msgs_line(double x)
{
    uint64_t now_t = uv_hrtime();
    arm_watchdog(12);
    if (g_phase == LT_WARMUP) {
        /* the first line that comes --warmup s after the start, with every connection
         * upgraded, starts the measurement (the first line ends a partial interval anyway) */
        double since = (double)(now_t - g_t_running) / 1e9;
        if (since < g_opt.warmup || (g_open < g_conns && since < g_opt.timeout))
            return;
        g_phase = LT_MEASURING;
        g_intervals = 0;
        quiet_init(&g_q, g_opt.quiet_cores);
        cpu_snap_take(&g_start, g_proc.pid, NULL);
        g_prev = g_sec_prev = g_start;
        g_gen0 = proc_cpu(g_proc.pid);
        g_noisy = false;
        uv_timer_start(&g_sec, on_second, 1000, 1000);
        return;
    }
    if (g_phase != LT_MEASURING)
        return;
    cpu_snap now;
    cpu_snap_take(&now, g_proc.pid, NULL);
    /* load_test's own interval (its timer), not the arrival times of its lines here: those
     * add this process's and the pipe's delays, up to tenths of a second on a busy machine */
    quiet_add(&g_q, &g_prev, &now, round(x * LT_INTERVAL), LT_INTERVAL, -1, g_noisy);
    g_noisy = false;
    g_prev = now;
    if (++g_intervals >= g_need) {
        g_gen1 = proc_cpu(g_proc.pid);
        finish(NULL);
    }
}

static void on_line(char *l)
{
    double x;
    if (strncmp(l, "Response: ", 10) == 0) {
        g_open++;
        if (strncmp(l + 10, "HTTP/1.1 101", 12) != 0 && g_not101++ == 0)
            fprintf(stderr, "chatd-bench loadtest: the server answered %s\n", l + 10);
    } else if (strcmp(l, "Running benchmark now...") == 0) {
        if (g_phase == LT_CONNECTING) {
            g_phase = LT_WARMUP;
            g_t_running = uv_hrtime();
            arm_watchdog(12);
        }
    } else if (sscanf(l, "Msg/sec: %lf", &x) == 1) {
        on_msgs_line(x);
    } else if (strcmp(l, "Closed!") == 0) {
        g_closed++;
    } else if (strncmp(l, "ERROR", 5) == 0) {
        if (g_errors++ == 0)
            fprintf(stderr, "chatd-bench loadtest: load_test: %s\n", l);
        finish("load_test reported an error");
    }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)h;
    (void)hint;
    static char rbuf[65536];
    *buf = uv_buf_init(rbuf, sizeof rbuf);
}

static void on_out_close(uv_handle_t *h)
{
    (void)h;
    g_out_closed = true;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    if (n < 0) {
        uv_read_stop(s);
        if (!uv_is_closing((uv_handle_t *)s))
            uv_close((uv_handle_t *)s, on_out_close);
        finish("load_test's output ended");
        return;
    }
    for (ssize_t i = 0; i < n; i++) {
        char ch = buf->base[i];
        if (ch == '\n' || ch == '\r') {
            g_line[g_llen] = 0;
            if (g_llen)
                on_line(g_line);
            g_llen = 0;
        } else if (g_llen < sizeof g_line - 1) {
            g_line[g_llen++] = ch;
        }
    }
}

static void on_exit_cb(uv_process_t *p, int64_t status, int sig)
{
    (void)p;
    g_exited = true;
    g_exit_status = sig ? -sig : status;
    finish("load_test exited before the measurement ended");
}

int cmd_loadtest(void)
{
    target t;
    if (!g_opt.load_test)
        fail("--load-test PATH (uWebSockets' benchmarks/load_test) is required");
    if (target_parse(g_opt.url, &t) != 0)
        return EXIT_USAGE;
    if (t.raw || t.tls)
        fail("loadtest speaks plain ws:// only");
    if (strcmp(t.path, "/") != 0)
        fprintf(stderr, "chatd-bench loadtest: load_test always requests GET /, not %s\n", t.path);
    long conns = g_opt.conns > 0 ? g_opt.conns : (g_opt.n > 0 ? g_opt.n : 100);
    g_conns = conns;
    g_gen0 = g_gen1 = -1; /* load_test's CPU seconds at the start and end of the measurement */
    long size = g_opt.size >= 0 ? g_opt.size : 32;
    if (size < 1)
        fail("--size must be at least 1");
    long nofile = raise_nofile();
    if (nofile < conns + 16)
        fail("the open-files limit (%ld) is too low for %ld connections", nofile, conns);
    g_need = (long)ceil(g_opt.duration / 4);
    if (g_need < 1)
        g_need = 1;

    char a_conns[32], a_port[16], a_size[32], host[INET_ADDRSTRLEN];
    snprintf(a_conns, sizeof a_conns, "%ld", conns);
    snprintf(a_port, sizeof a_port, "%u", (unsigned)ntohs(t.addr.sin_port));
    snprintf(a_size, sizeof a_size, "%ld", size);
    inet_ntop(AF_INET, &t.addr.sin_addr, host, sizeof host);
    char *args[] = {"stdbuf", "-oL", (char *)g_opt.load_test, a_conns, host, a_port, "0", "0",
                    a_size,   NULL};

    uv_pipe_init(g_loop, &g_out, 0);
    uv_timer_init(g_loop, &g_watchdog);
    uv_timer_init(g_loop, &g_sec);
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_IGNORE},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&g_out},
        {.flags = UV_INHERIT_FD, .data.fd = 2},
    };
    uv_process_options_t po = {
        .exit_cb = on_exit_cb,
        .file = "stdbuf",
        .args = args,
        .stdio_count = 3,
        .stdio = stdio,
    };
    int rc = uv_spawn(g_loop, &g_proc, &po);
    if (rc != 0)
        fail("cannot start stdbuf %s: %s", g_opt.load_test, uv_strerror(rc));
    fprintf(stderr,
            "chatd-bench loadtest: load_test (pid %d) %s %s %s 0 0 %s, measuring %ld x 4 s\n",
            g_proc.pid, a_conns, host, a_port, a_size, g_need);
    uv_read_start((uv_stream_t *)&g_out, on_alloc, on_read);
    g_phase = LT_CONNECTING;
    arm_watchdog(g_opt.timeout);
    while (g_phase != LT_DONE)
        uv_run(g_loop, UV_RUN_ONCE);

    if (!g_exited)
        uv_process_kill(&g_proc, SIGTERM);
    while (!g_exited)
        uv_run(g_loop, UV_RUN_ONCE);
    if (!uv_is_closing((uv_handle_t *)&g_out))
        uv_close((uv_handle_t *)&g_out, on_out_close);
    uv_close((uv_handle_t *)&g_proc, NULL);
    uv_close((uv_handle_t *)&g_watchdog, NULL);
    uv_close((uv_handle_t *)&g_sec, NULL);
    uv_run(g_loop, UV_RUN_DEFAULT);

    window_result r = {.server_cpu = -1, .other_cpu = -1, .steal = -1};
    for (int i = 0; i < BENCH_MAX_WATCH; i++)
        r.watch_cpu[i] = -1;
    double secs = g_q.secs + g_q.secs_dropped;
    double wall = (double)(g_prev.t - g_start.t) / 1e9; /* for the CPU fractions */
    double gen_cpu = -1;
    if (g_q.spans > 0 && secs > 0 && wall > 0) {
        r.secs = secs;
        r.has_quiet = true;
        r.quiet = g_q;
        gen_cpu = g_gen1 >= 0 && g_gen0 >= 0 ? (g_gen1 - g_gen0) / wall : -1;
        r.self_cpu = (g_prev.self - g_start.self) / wall + (gen_cpu > 0 ? gen_cpu : 0);
        if (g_start.server >= 0 && g_prev.server >= 0)
            r.server_cpu = (g_prev.server - g_start.server) / wall;
        r.other_cpu = cpu_snap_other(&g_start, &g_prev);
    }
    report_begin("loadtest");
    report_int("conns", "connections", conns);
    report_int("size", "payload bytes", size);
    report_int("window", NULL, 1);
    report_int("open", "upgraded (101)", g_open - g_not101);
    report_num("duration_s", "measured s", secs);
    report_num("wall_s", NULL, wall);
    report_num("rate", "round trips/s", r.has_quiet ? quiet_rate(&g_q) : 0);
    report_cpu(&r);
    if (gen_cpu >= 0)
        report_num("gen_cpu", "load_test cpu", gen_cpu);
    report_int("noisy_secs", NULL, g_noisy_secs);
    report_int("lost_conns", g_closed ? "closed connections" : NULL, g_closed);
    report_end();

    bool ok = !g_fail && g_q.spans > 0 && g_open - g_not101 == conns && g_closed == 0;
    if (g_fail)
        fprintf(stderr, "chatd-bench loadtest: %s\n", g_fail);
    if (g_open - g_not101 != conns)
        fprintf(stderr, "chatd-bench loadtest: %ld of %ld connections upgraded\n",
                g_open - g_not101, conns);
    return ok ? 0 : EXIT_RUN_FAILED;
}
