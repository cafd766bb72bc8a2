/* bench.h: what every part of chatd-bench shares: the parsed command line, the target
 * address, the clock, source-address spreading, /proc readers and the scenario entry points.
 *
 * chatd-bench is single-threaded: one libuv loop drives every connection, so the globals
 * here (the clock, the options) need no locking. */
#ifndef BENCH_BENCH_H
#define BENCH_BENCH_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "quiet.h"

/* Exit codes: 0 ok, 1 the run failed, 2 usage error, 3 the server lacks the endpoints the
 * scenario needs (chat without the chat service). */
enum { EXIT_RUN_FAILED = 1, EXIT_USAGE = 2, EXIT_UNSUPPORTED = 3 };

typedef struct target {
    char host[256];     /* as given in the URL, for the Host header */
    char hostport[300]; /* host[:port] for the Host header */
    char path[512];     /* request path, "/" when the URL has none */
    struct sockaddr_in addr;
    bool raw; /* tcp:// URL: no WebSocket, raw bytes */
    bool tls; /* wss:// or https:// */
} target;

#define BENCH_MAX_WATCH 4

typedef struct bench_opts {
    const char *cmd;
    const char *url;
    const char *url2;    /* route, fanout: every odd-numbered client connects here instead */
    const char *api_url; /* server API base; default: http://<host:port of --url> */
    const char *api_secret;
    const char *label;       /* copied into every JSON result, e.g. "chatd" or "peer" */
    const char *note;        /* free text copied into the JSON result (run.sh says durability) */
    long n;                  /* conns, storm: connections */
    long conns;              /* echo */
    long pairs;              /* route */
    long members;            /* fanout */
    long users;              /* chat, groups */
    long senders;            /* groups: senders per group */
    const char *group_sizes; /* groups: comma-separated members per group */
    const char *users_file;  /* groups: "id token" lines, read or written */
    long size;               /* payload bytes */
    long window;             /* messages in flight per client (or broadcasts, fanout) */
    long concurrency;        /* connections being set up at once */
    long sources;            /* source addresses 127.0.0.1..; 0 = as many as needed */
    long api_conns;          /* keep-alive connections to the server API */
    double rate;             /* route: offered events/s, 0 = saturate */
    double duration;         /* seconds measured */
    double warmup;           /* seconds run before measuring */
    double hold;             /* conns: seconds to keep the connections open */
    double timeout;          /* seconds allowed for setup (connect, bind) */
    int server_pid;
    int nwatch; /* --watch-pid NAME=PID: more processes whose CPU use is reported */
    const char *watch_name[BENCH_MAX_WATCH];
    int watch_pid[BENCH_MAX_WATCH];
    bool json;
    bool raw;
    bool binary;
    bool spread; /* fanout: broadcasts round-robin over the --api-conns connections */
    /* gwpush: how pushes reach chatd (per-call, persistent, http), its GatewayWorker inner
     * port (HOST:PORT), the inner port's secret_key, persistent connections */
    const char *gw_mode;
    const char *gw_addr;
    const char *gw_secret;
    long gw_conns;
    /* permessage-deflate: offer it on every WebSocket (and inflate what comes compressed);
     * inflate_all: inflate every compressed message, not each distinct one once */
    bool ws_deflate;
    bool inflate_all;
    const char *tls_ca; /* verify the server against this CA file (default: no check) */
    /* noisy seconds (quiet.h): a second in which other processes used more cores than this
     * is left out of the rate; < 0 (default) keeps every second */
    double quiet_cores;
    const char *load_test; /* loadtest: uWebSockets' benchmarks/load_test binary */
} bench_opts;

extern bench_opts g_opt;
extern uv_loop_t *g_loop;

/* Nanoseconds, monotonic. bench_now is refreshed once per read callback (see conn.c), so
 * every message taken from one read shares a timestamp: a clock read per message would cost
 * more than the parsing. */
extern uint64_t bench_now;
static inline uint64_t bench_clock(void)
{
    bench_now = uv_hrtime();
    return bench_now;
}

/* "http" or "https": the server API's scheme for a WebSocket target. */
static inline const char *api_scheme(const target *t)
{
    return t->tls ? "https" : "http";
}

/* Parses ws://, wss://, http://, https:// or tcp:// HOST[:PORT][/PATH]; resolves HOST to IPv4. 0 or
 * -1 with a message on stderr. */
int target_parse(const char *url, target *t);

/* Source addresses for n client connections: with a loopback target and more connections
 * than a sixth of one address's ephemeral ports, spread them over 127.0.0.1..127.0.0.K
 * (--sources K overrides). */
void sources_setup(const target *t, long n);
/* The source address for connection i, or NULL to let the kernel choose. */
const struct sockaddr_in *source_for(long i);
int sources_count(void);

/* Raises RLIMIT_NOFILE's soft limit to the hard limit; returns the new soft limit. */
long raise_nofile(void);

/* Resident set size of pid in bytes from /proc/PID/status, or -1. */
long proc_rss(int pid);
/* The anonymous part of the RSS (heap and other private memory): what the
 * server allocated, without library pages it touched for the first time. */
long proc_rss_anon(int pid);
/* utime+stime of pid in seconds from /proc/PID/stat, or -1. */
double proc_cpu(int pid);
/* CPU seconds used by this process. */
double self_cpu(void);
/* Busy and stolen seconds of the whole machine, from the first line of /proc/stat; 0 or -1. */
int machine_cpu(double *busy, double *steal);

/* Fast non-cryptographic random numbers (xorshift), seeded from the OS once. */
uint64_t rnd64(void);

/* Writes v as exactly 16 lowercase hex digits, and parses them back (-1 if not hex). */
void hex16_put(char *dst, uint64_t v);
int hex16_get(const char *src, uint64_t *v);
void hex8_put(char *dst, uint32_t v);
int hex8_get(const char *src, uint32_t *v);

/* die() after a setup failure: message on stderr, exit 1. */
_Noreturn void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Runs the loop until setup_done() is called (possibly already before) or --timeout passes
 * (then fail()s with what). */
void run_setup(const char *what);
void setup_done(void);
/* Progress line on stderr while setting up (rate limited). */
void progress(const char *what, long done, long total);

/* CPU accounting over a measurement window. */
typedef struct cpu_window {
    uint64_t t0;
    double self0, server0;
    double busy0, steal0; /* whole machine, from /proc/stat */
    double watch0[BENCH_MAX_WATCH];
} cpu_window;
void cpu_window_start(cpu_window *w);
/* Fractions of one core used over the window by chatd-bench, by --server-pid (-1 if no
 * pid) and by each --watch-pid (-1 if unreadable). */
void cpu_window_end(const cpu_window *w, double *self_frac, double *server_frac,
                    double *watch_frac);
/* Cores' worth of time used by other processes over the window (-1 if unknown, or without
 * --server-pid), and stolen by the hypervisor. The --watch-pid processes are not "other". */
void cpu_window_noise(const cpu_window *w, double self_frac, double server_frac,
                      const double *watch_frac, double *other, double *steal);

/* The measurement window. While g_measuring is true scenarios count what they see. */
extern bool g_measuring;
typedef struct window_result {
    double secs;       /* measured */
    double self_cpu;   /* fraction of a core used by chatd-bench */
    double server_cpu; /* by --server-pid, -1 without */
    double other_cpu;  /* by everything else on the machine (noise), -1 if unknown */
    double steal;      /* cores' worth of time the hypervisor gave to other guests */
    double watch_cpu[BENCH_MAX_WATCH]; /* by each --watch-pid, -1 if unreadable */
    bool has_quiet;                    /* measure_count() was called: quiet is filled */
    quiet_acc quiet;                   /* the window second by second (quiet.h) */
} window_result;
/* Runs the loop for --warmup seconds, calls reset(), sets g_measuring, runs --duration more
 * seconds (or until stop_measured()), clears g_measuring and returns what was measured. */
window_result run_measured(void (*reset)(void));
void stop_measured(void);
/* Before run_measured: the scenario's message counter (reset to 0 by reset()), read every
 * second of the window so that noisy seconds can be left out of the rate (quiet.h). */
void measure_count(const uint64_t *count);
/* The rate to report for count messages over the window: over its quiet seconds when
 * measure_count() was used, else count / secs. */
double window_rate(const window_result *r, uint64_t count);

int cmd_conns(void);
int cmd_echo(void);
int cmd_route(void);
int cmd_fanout(void);
int cmd_chat(void);
int cmd_storm(void);
int cmd_gwpush(void);
int cmd_groups(void);
int cmd_loadtest(void);

#endif
