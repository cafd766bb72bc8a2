/* quiet: noisy seconds on a shared machine (issue 14). During a measurement the machine's CPU
 * use is sampled (every second by run_measured, at every report line of an external
 * generator by `chatd-bench loadtest`); a span in which other processes (everything but
 * chatd-bench, the server, the --watch-pid processes and the external generator) used more
 * than --quiet-cores cores is "noisy": its messages and its time are left out of the rate,
 * and the result says how many spans and seconds were dropped.
 *
 * Single-threaded like the rest of chatd-bench; the structs are plain values the caller
 * owns. */
#ifndef BENCH_QUIET_H
#define BENCH_QUIET_H

#include <stdbool.h>
#include <stdint.h>

/* What the machine and the processes of the run had used at one instant. */
typedef struct cpu_snap {
    uint64_t t;     /* uv_hrtime() */
    double busy;    /* busy seconds of the whole machine (/proc/stat), -1 if unreadable */
    double self;    /* this process's CPU seconds */
    double server;  /* --server-pid's, -1 without */
    double own;     /* the --watch-pid processes' and gen_pid's, summed (0 without) */
    uint64_t count; /* the scenario's message counter, 0 without */
} cpu_snap;

/* Takes a snapshot; gen_pid (0 for none) is an external generator whose CPU is the run's
 * own, count the message counter to read (NULL for none). */
void cpu_snap_take(cpu_snap *s, int gen_pid, const uint64_t *count);
/* Cores used by other processes between a and b; -1 if unknown (no /proc/stat, no server). */
double cpu_snap_other(const cpu_snap *a, const cpu_snap *b);

/* Spans of a measurement, kept or dropped. */
typedef struct quiet_acc {
    double limit;       /* a span with more other cores than this is dropped; < 0 keeps all */
    int spans, dropped; /* spans seen, spans dropped */
    double secs, secs_dropped; /* kept and dropped seconds */
    double msgs, msgs_dropped; /* messages in kept and dropped spans */
    double server_s;           /* the server's CPU seconds in kept spans (-1: unknown) */
    double server_s_all;       /* and in every span */
    double other_max;          /* most other cores in any span */
    bool last_dropped;
} quiet_acc;

void quiet_init(quiet_acc *q, double limit);
/* Adds the span a..b holding msgs messages; secs > 0: the span's length as the generator
 * timed it (load_test's own interval), else b - a on this process's clock. verdict: -1 decide from
 * the span's own other cores (and noisy), 0 keep, 1 drop (e.g. a short tail judged with its
 * neighbour); noisy: a second inside the span is already known to be noisy. Returns true if the
 * span was kept. */
bool quiet_add(quiet_acc *q, const cpu_snap *a, const cpu_snap *b, double msgs, double secs,
               int verdict, bool noisy);
/* Messages per second over the kept spans; over all spans when none was kept. */
double quiet_rate(const quiet_acc *q);
/* JSON fields (and table rows): rate_all, secs_kept, secs_dropped, spans, spans_dropped,
 * quiet_cores, msgs_per_server_cpu_s (kept messages per server CPU second in kept spans;
 * over every span when none was kept). */
void report_quiet(const quiet_acc *q);

#endif
