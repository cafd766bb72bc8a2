/* report: one result of a scenario, printed as a short two-column table for people and, with
 * --json, as one JSON object on one line for scripts (bench/run.sh); the table then goes to
 * stderr so stdout stays pure JSON lines. */
#ifndef BENCH_REPORT_H
#define BENCH_REPORT_H

#include "hist.h"

/* Starts a result; adds scenario, label, url and note. */
void report_begin(const char *scenario);
/* key: the JSON key; label: the table row, or NULL for JSON only. */
void report_int(const char *key, const char *label, long long v);
void report_num(const char *key, const char *label, double v);
void report_str(const char *key, const char *label, const char *v);
/* Latency in microseconds from a histogram of nanoseconds: <prefix>_p50_us, _p99_us,
 * _p999_us, _max_us, _mean_us and one table row. */
void report_latency(const char *prefix, const char *label, const hist *h);
/* CPU use over the window: chatd-bench, the server, other processes and steal. */
struct window_result;
void report_cpu(const struct window_result *r);
void report_end(void);

#endif
