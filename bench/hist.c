/* hist: log-linear histogram buckets, see hist.h. The bucket index is computed from the
 * position of the highest set bit (which power of two) and the next HIST_SUB_BITS-1 bits
 * (which linear step inside it). */
#include "hist.h"

#include <math.h>
#include <string.h>

static unsigned bucket_of(uint64_t v)
{
    if (v < HIST_SUB_COUNT)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - (HIST_SUB_BITS - 1);
    unsigned top = (unsigned)(v >> shift); /* in [HIST_HALF, HIST_SUB_COUNT) */
    return HIST_SUB_COUNT + (msb - HIST_SUB_BITS) * HIST_HALF + (top - HIST_HALF);
}

/* Highest value that maps to bucket b. */
static uint64_t bucket_high(unsigned b)
{
    if (b < HIST_SUB_COUNT)
        return b;
    unsigned rel = b - HIST_SUB_COUNT;
    unsigned msb = rel / HIST_HALF + HIST_SUB_BITS;
    unsigned shift = msb - (HIST_SUB_BITS - 1);
    uint64_t top = HIST_HALF + rel % HIST_HALF;
    return ((top + 1) << shift) - 1;
}

void hist_reset(hist *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

void hist_record(hist *h, uint64_t v)
{
    h->buckets[bucket_of(v)]++;
    h->count++;
    h->sum += v;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

void hist_merge(hist *dst, const hist *src)
{
    for (unsigned i = 0; i < HIST_NBUCKETS; i++)
        dst->buckets[i] += src->buckets[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t hist_percentile(const hist *h, double p)
{
    if (h->count == 0)
        return 0;
    if (p >= 100.0)
        return h->max;
    uint64_t rank = (uint64_t)ceil(p / 100.0 * (double)h->count);
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned b = 0; b < HIST_NBUCKETS; b++) {
        seen += h->buckets[b];
        if (seen >= rank) {
            uint64_t v = bucket_high(b);
            return v > h->max ? h->max : (v < h->min ? h->min : v);
        }
    }
    return h->max;
}

double hist_mean(const hist *h)
{
    return h->count ? (double)h->sum / (double)h->count : 0.0;
}
