/* hist: a log-linear latency histogram (HdrHistogram-like) with no allocation while recording.
 *
 * Values below 2^HIST_SUB_BITS land in exact buckets; above that, every power of two is split
 * into 2^(HIST_SUB_BITS-1) linear sub-buckets, so any recorded value is reported within
 * 1/2^(HIST_SUB_BITS-1) (0.8%) of its true value over the whole 64-bit range. The struct is a
 * fixed array (about 58 KiB), recording is a count increment after a clz. */
#ifndef BENCH_HIST_H
#define BENCH_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 8
#define HIST_SUB_COUNT (1u << HIST_SUB_BITS)
#define HIST_HALF (HIST_SUB_COUNT / 2)
#define HIST_NBUCKETS (HIST_SUB_COUNT + (64 - HIST_SUB_BITS) * HIST_HALF)

typedef struct hist {
    uint64_t count;
    uint64_t sum;
    uint64_t min;
    uint64_t max;
    uint64_t buckets[HIST_NBUCKETS];
} hist;

void hist_reset(hist *h);
/* Records one value (nanoseconds, or any unit). */
void hist_record(hist *h, uint64_t v);
/* Adds every value of src to dst. */
void hist_merge(hist *dst, const hist *src);
/* The value at percentile p (0..100): the highest value equivalent to the bucket holding the
 * p-th percentile sample, clamped to the observed max. 0 for an empty histogram. */
uint64_t hist_percentile(const hist *h, double p);
double hist_mean(const hist *h);

#endif
