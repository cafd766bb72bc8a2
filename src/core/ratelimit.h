/* ratelimit: counts events per key over fixed time windows, in O(1).
 *
 * One limiter holds the counters of one rule ("logins per address per
 * minute"): a key's counter starts with its first event and its window lasts
 * window_ms; within it, at most `limit` events are allowed. Keys live in a
 * hash table and, at the same time, in a list ordered by window start, so
 * expired keys are dropped from the list head as new keys arrive: no call ever
 * scans the table (the login table used to be pruned by a full scan, which an
 * attacker could trigger on every request).
 *
 * Memory is bounded by max_keys: when the table is full and its oldest window
 * is still running, that oldest key is evicted (it forgets its count early).
 * Callers order their checks so that an attacker cannot cheaply create keys
 * (e.g. the per-address rule is checked before a per-username key is made).
 *
 * Pure and single-threaded: the caller passes the time, which makes it unit
 * testable. Keys are copied. */
#ifndef CHATD_RATELIMIT_H
#define CHATD_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ratelimit ratelimit;

/* Returns NULL on OOM. limit may be changed later with ratelimit_set_limit. */
ratelimit *ratelimit_new(uint32_t limit, uint32_t window_ms, size_t max_keys);
void ratelimit_free(ratelimit *rl);
void ratelimit_set_limit(ratelimit *rl, uint32_t limit);

/* True when one more event for key would be within the limit; counts nothing
 * and creates no key. */
bool ratelimit_allows(ratelimit *rl, const char *key, size_t len, int64_t now_ms);

/* Counts one event for key. Returns true when the event is within the limit;
 * an event over the limit is not counted (refused attempts record nothing),
 * so a refused client cannot extend its own penalty. */
bool ratelimit_hit(ratelimit *rl, const char *key, size_t len, int64_t now_ms);

/* Forgets key's counter (e.g. after a successful login). */
void ratelimit_reset(ratelimit *rl, const char *key, size_t len);

/* Keys held now (for tests and metrics). */
size_t ratelimit_size(const ratelimit *rl);

#endif
