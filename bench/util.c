/* util: the small services every scenario needs (URL parsing, source addresses, rlimits,
 * /proc readers, hex, random numbers, setup phase control) kept out of the scenario files so
 * those read as the benchmark they run. */
#include "bench.h"
#include "conn.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <unistd.h>

uint64_t bench_now;

void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "chatd-bench %s: ", g_opt.cmd ? g_opt.cmd : "");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(EXIT_RUN_FAILED);
}

int target_parse(const char *url, target *t)
{
    memset(t, 0, sizeof *t);
    const char *p;
    int port;
    if (strncmp(url, "ws://", 5) == 0) {
        p = url + 5;
        port = 80;
    } else if (strncmp(url, "wss://", 6) == 0) {
        p = url + 6;
        port = 443;
        t->tls = true;
    } else if (strncmp(url, "http://", 7) == 0) {
        p = url + 7;
        port = 80;
    } else if (strncmp(url, "https://", 8) == 0) {
        p = url + 8;
        port = 443;
        t->tls = true;
    } else if (strncmp(url, "tcp://", 6) == 0) {
        p = url + 6;
        port = 0;
        t->raw = true;
    } else {
        fprintf(stderr,
                "chatd-bench: unsupported URL '%s' (ws://, wss://, http://, https:// or tcp://)\n",
                url);
        return -1;
    }
    const char *slash = strchr(p, '/');
    size_t hp_len = slash ? (size_t)(slash - p) : strlen(p);
    if (hp_len == 0 || hp_len >= sizeof t->hostport) {
        fprintf(stderr, "chatd-bench: bad host in URL '%s'\n", url);
        return -1;
    }
    memcpy(t->hostport, p, hp_len);
    snprintf(t->path, sizeof t->path, "%s", slash ? slash : "/");
    const char *colon = memchr(p, ':', hp_len);
    size_t host_len = colon ? (size_t)(colon - p) : hp_len;
    if (host_len == 0 || host_len >= sizeof t->host) {
        fprintf(stderr, "chatd-bench: bad host in URL '%s'\n", url);
        return -1;
    }
    memcpy(t->host, p, host_len);
    if (colon) {
        char *end;
        long v = strtol(colon + 1, &end, 10);
        if (end != p + hp_len || v <= 0 || v > 65535) {
            fprintf(stderr, "chatd-bench: bad port in URL '%s'\n", url);
            return -1;
        }
        port = (int)v;
    }
    if (port == 0) {
        fprintf(stderr, "chatd-bench: URL '%s' needs a port\n", url);
        return -1;
    }
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res;
    int rc = getaddrinfo(t->host, NULL, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "chatd-bench: cannot resolve '%s': %s\n", t->host, gai_strerror(rc));
        return -1;
    }
    if (t->tls && bconn_tls_init(g_opt.tls_ca) != 0) {
        freeaddrinfo(res);
        fprintf(stderr, "chatd-bench: cannot set up TLS\n");
        return -1;
    }
    memcpy(&t->addr, res->ai_addr, sizeof t->addr);
    t->addr.sin_port = htons((uint16_t)port);
    freeaddrinfo(res);
    return 0;
}

/* ---- source addresses ---- */

static struct sockaddr_in g_src[255];
static int g_nsrc;

void sources_setup(const target *t, long n)
{
    g_nsrc = 0;
    bool loopback = (ntohl(t->addr.sin_addr.s_addr) >> 24) == 127;
    long want = g_opt.sources;
    if (want <= 0) {
        long lo = 32768, hi = 60999;
        FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
        if (f) {
            if (fscanf(f, "%ld %ld", &lo, &hi) != 2) {
                lo = 32768;
                hi = 60999;
            }
            fclose(f);
        }
        /* Fill at most a sixth of each address's ephemeral ports: connect()'s search for a
         * free port slows down sharply as they fill up (19,000 connections from one address
         * open 4x slower than from four). */
        long per_addr = (hi - lo + 1) / 6;
        want = per_addr > 0 ? (n + per_addr - 1) / per_addr : 1;
        if (want <= 1)
            return; /* one address: let the kernel pick, as any client would */
    }
    if (!loopback) {
        if (g_opt.sources > 0)
            fprintf(stderr, "chatd-bench: --sources ignored: target is not on 127.0.0.0/8\n");
        return;
    }
    if (want > 254)
        want = 254;
    for (int i = 0; i < want; i++) {
        g_src[i].sin_family = AF_INET;
        g_src[i].sin_port = 0;
        g_src[i].sin_addr.s_addr = htonl((127u << 24) | (uint32_t)(i + 1));
    }
    g_nsrc = (int)want;
}

const struct sockaddr_in *source_for(long i)
{
    return g_nsrc ? &g_src[i % g_nsrc] : NULL;
}

int sources_count(void)
{
    return g_nsrc ? g_nsrc : 1;
}

long raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            fprintf(stderr, "chatd-bench: cannot raise RLIMIT_NOFILE: %s\n", strerror(errno));
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur == RLIM_INFINITY ? -1 : (long)rl.rlim_cur;
}

/* ---- /proc ---- */

/* One "Name:   N kB" field of /proc/PID/status, in bytes; -1 if missing. */
static long proc_status_kb(int pid, const char *field)
{
    char path[64], line[256];
    size_t flen = strlen(field);
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, field, flen) == 0) {
            kb = strtol(line + flen, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

long proc_rss_anon(int pid)
{
    return proc_status_kb(pid, "RssAnon:");
}

long proc_rss(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

double proc_cpu(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    /* Fields after the command name, which is in parentheses and may hold spaces. */
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    unsigned long utime = 0, stime = 0;
    /* state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
        return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

double self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

int machine_cpu(double *busy, double *steal)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return -1;
    unsigned long long v[8] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n != 8)
        return -1;
    double tck = (double)sysconf(_SC_CLK_TCK);
    /* user nice system idle iowait irq softirq steal */
    *busy = (double)(v[0] + v[1] + v[2] + v[5] + v[6]) / tck;
    *steal = (double)v[7] / tck;
    return 0;
}

void cpu_window_start(cpu_window *w)
{
    w->t0 = uv_hrtime();
    w->self0 = self_cpu();
    w->server0 = g_opt.server_pid > 0 ? proc_cpu(g_opt.server_pid) : -1;
    for (int i = 0; i < g_opt.nwatch; i++)
        w->watch0[i] = proc_cpu(g_opt.watch_pid[i]);
    if (machine_cpu(&w->busy0, &w->steal0) != 0)
        w->busy0 = -1;
}

void cpu_window_noise(const cpu_window *w, double self_frac, double server_frac,
                      const double *watch_frac, double *other, double *steal)
{
    double secs = (double)(uv_hrtime() - w->t0) / 1e9, busy, st;
    *other = -1;
    *steal = -1;
    if (secs <= 0 || w->busy0 < 0 || machine_cpu(&busy, &st) != 0)
        return;
    *steal = (st - w->steal0) / secs;
    if (server_frac >= 0) {
        double o = (busy - w->busy0) / secs - self_frac - server_frac;
        for (int i = 0; i < g_opt.nwatch; i++)
            if (watch_frac[i] > 0)
                o -= watch_frac[i];
        *other = o < 0 ? 0 : o;
    }
}

void cpu_window_end(const cpu_window *w, double *self_frac, double *server_frac, double *watch_frac)
{
    double secs = (double)(uv_hrtime() - w->t0) / 1e9;
    if (secs <= 0)
        secs = 1e-9;
    *self_frac = (self_cpu() - w->self0) / secs;
    *server_frac = -1;
    if (g_opt.server_pid > 0 && w->server0 >= 0) {
        double now = proc_cpu(g_opt.server_pid);
        if (now >= 0)
            *server_frac = (now - w->server0) / secs;
    }
    for (int i = 0; i < g_opt.nwatch; i++) {
        double now = w->watch0[i] >= 0 ? proc_cpu(g_opt.watch_pid[i]) : -1;
        watch_frac[i] = now >= 0 ? (now - w->watch0[i]) / secs : -1;
    }
}

/* ---- random numbers, hex ---- */

static uint64_t g_rnd;

uint64_t rnd64(void)
{
    if (g_rnd == 0) {
        if (getrandom(&g_rnd, sizeof g_rnd, 0) != sizeof g_rnd || g_rnd == 0)
            g_rnd = uv_hrtime() | 1;
    }
    g_rnd ^= g_rnd << 13;
    g_rnd ^= g_rnd >> 7;
    g_rnd ^= g_rnd << 17;
    return g_rnd;
}

static const char hexdig[] = "0123456789abcdef";

void hex16_put(char *dst, uint64_t v)
{
    for (int i = 15; i >= 0; i--) {
        dst[i] = hexdig[v & 15];
        v >>= 4;
    }
}

void hex8_put(char *dst, uint32_t v)
{
    for (int i = 7; i >= 0; i--) {
        dst[i] = hexdig[v & 15];
        v >>= 4;
    }
}

/* One more than the digit value of '0'-'9' and 'a'-'f'; 0 for anything else. A table, not
 * compares: the digits of timestamps are random, so per-digit branches would mispredict
 * often, and this runs for every message received. */
static const uint8_t hexval[256] = {
    ['0'] = 1, ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,  ['6'] = 7,  ['7'] = 8,
    ['8'] = 9, ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
};

static int hex_get(const char *src, int n, uint64_t *v)
{
    const unsigned char *s = (const unsigned char *)src;
    uint64_t r = 0;
    int bad = 0;
    for (int i = 0; i < n; i++) {
        unsigned t = hexval[s[i]];
        bad |= t == 0;
        r = (r << 4) | ((t - 1) & 15);
    }
    *v = r;
    return bad ? -1 : 0;
}

int hex16_get(const char *src, uint64_t *v)
{
    return hex_get(src, 16, v);
}

int hex8_get(const char *src, uint32_t *v)
{
    uint64_t r;
    int rc = hex_get(src, 8, &r);
    *v = (uint32_t)r;
    return rc;
}

/* ---- setup phase ---- */

static bool g_setup_done;
static uv_timer_t g_setup_timer;
static const char *g_setup_what;

static void setup_timeout(uv_timer_t *t)
{
    (void)t;
    fail("timed out after %.0f s while %s (raise --timeout?)", g_opt.timeout, g_setup_what);
}

void run_setup(const char *what)
{
    g_setup_what = what;
    uv_timer_init(g_loop, &g_setup_timer);
    uv_timer_start(&g_setup_timer, setup_timeout, (uint64_t)(g_opt.timeout * 1000), 0);
    while (!g_setup_done)
        uv_run(g_loop, UV_RUN_ONCE);
    g_setup_done = false; /* ready for the next phase */
    uv_timer_stop(&g_setup_timer);
    uv_close((uv_handle_t *)&g_setup_timer, NULL);
    uv_run(g_loop, UV_RUN_NOWAIT);
}

void setup_done(void)
{
    g_setup_done = true;
}

void progress(const char *what, long done, long total)
{
    static uint64_t last;
    uint64_t now = uv_hrtime();
    if (done <= 1)
        last = now;
    if (done != total && now - last < 1000000000ull)
        return;
    last = now;
    if (total >= 1000)
        fprintf(stderr, "  %s: %ld/%ld\n", what, done, total);
}

/* ---- measurement window ---- */

bool g_measuring;
static uv_timer_t g_mtimer;
static bool g_mdone;
static void (*g_mreset)(void);
static uint64_t g_mt0;
static cpu_window g_mcpu;
static window_result g_mres;
/* noisy seconds: the counter, a one-second timer, the snapshot at the last tick */
static const uint64_t *g_mcount;
static uv_timer_t g_qtimer;
static cpu_snap g_qlast;

void measure_count(const uint64_t *count)
{
    g_mcount = count;
}

static void quiet_tick(uv_timer_t *t)
{
    (void)t;
    cpu_snap now;
    cpu_snap_take(&now, 0, g_mcount);
    quiet_add(&g_mres.quiet, &g_qlast, &now, (double)(now.count - g_qlast.count), 0, -1, false);
    g_qlast = now;
}

static void measure_tick(uv_timer_t *t)
{
    (void)t;
    if (!g_measuring) {
        if (g_mreset)
            g_mreset();
        g_measuring = true;
        g_mt0 = bench_clock();
        cpu_window_start(&g_mcpu);
        uv_timer_start(&g_mtimer, measure_tick, (uint64_t)(g_opt.duration * 1000), 0);
        if (g_mcount) {
            g_mres.has_quiet = true;
            quiet_init(&g_mres.quiet, g_opt.quiet_cores);
            cpu_snap_take(&g_qlast, 0, g_mcount);
            uv_timer_start(&g_qtimer, quiet_tick, 1000, 1000);
        }
        return;
    }
    stop_measured();
}

void stop_measured(void)
{
    if (g_mdone)
        return;
    if (!g_measuring) { /* still warming up: measure nothing */
        g_mres.secs = 0;
    } else {
        g_mres.secs = (double)(bench_clock() - g_mt0) / 1e9;
        cpu_window_end(&g_mcpu, &g_mres.self_cpu, &g_mres.server_cpu, g_mres.watch_cpu);
        cpu_window_noise(&g_mcpu, g_mres.self_cpu, g_mres.server_cpu, g_mres.watch_cpu,
                         &g_mres.other_cpu, &g_mres.steal);
        if (g_mres.has_quiet) {
            /* the tail since the last tick; under half a second it is too short to judge
             * (CPU times come in 10 ms ticks) and shares the verdict of the second before */
            cpu_snap now;
            cpu_snap_take(&now, 0, g_mcount);
            int verdict = -1;
            if (now.t - g_qlast.t < 500000000ull && g_mres.quiet.spans > 0)
                verdict = g_mres.quiet.last_dropped ? 1 : 0;
            if (now.t > g_qlast.t)
                quiet_add(&g_mres.quiet, &g_qlast, &now, (double)(now.count - g_qlast.count), 0,
                          verdict, false);
        }
    }
    g_measuring = false;
    g_mdone = true;
    uv_timer_stop(&g_mtimer);
    uv_timer_stop(&g_qtimer);
}

window_result run_measured(void (*reset)(void))
{
    g_mreset = reset;
    g_mdone = false;
    g_measuring = false;
    memset(&g_mres, 0, sizeof g_mres);
    g_mres.server_cpu = -1;
    for (int i = 0; i < BENCH_MAX_WATCH; i++)
        g_mres.watch_cpu[i] = -1;
    uv_timer_init(g_loop, &g_mtimer);
    uv_timer_init(g_loop, &g_qtimer);
    if (g_opt.warmup > 0) {
        uv_timer_start(&g_mtimer, measure_tick, (uint64_t)(g_opt.warmup * 1000), 0);
    } else {
        measure_tick(&g_mtimer);
    }
    while (!g_mdone)
        uv_run(g_loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&g_mtimer, NULL);
    uv_close((uv_handle_t *)&g_qtimer, NULL);
    g_mcount = NULL;
    return g_mres;
}

double window_rate(const window_result *r, uint64_t count)
{
    if (r->has_quiet && r->quiet.spans > 0)
        return quiet_rate(&r->quiet);
    return r->secs > 0 ? (double)count / r->secs : 0;
}
