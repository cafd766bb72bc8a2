/* ratelimit: fixed-window counters with a time-ordered eviction list (see
 * ratelimit.h). */
#include "core/ratelimit.h"

#include <stdlib.h>
#include <string.h>
#include <uthash.h>

typedef struct rl_entry {
    UT_hash_handle hh;
    struct rl_entry *prev, *next; /* by window start, oldest first */
    int64_t start_ms;
    uint32_t count;
    uint32_t len;
    char key[];
} rl_entry;

struct ratelimit {
    rl_entry *table;
    rl_entry *oldest, *newest;
    uint32_t limit;
    uint32_t window_ms;
    size_t max_keys;
};

ratelimit *ratelimit_new(uint32_t limit, uint32_t window_ms, size_t max_keys)
{
    ratelimit *rl = calloc(1, sizeof(*rl));
    if (!rl)
        return NULL;
    rl->limit = limit;
    rl->window_ms = window_ms ? window_ms : 1;
    rl->max_keys = max_keys ? max_keys : 1;
    return rl;
}

void ratelimit_set_limit(ratelimit *rl, uint32_t limit)
{
    rl->limit = limit;
}

static void list_unlink(ratelimit *rl, rl_entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        rl->oldest = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        rl->newest = e->prev;
    e->prev = e->next = NULL;
}

static void list_append(ratelimit *rl, rl_entry *e)
{
    e->prev = rl->newest;
    e->next = NULL;
    if (rl->newest)
        rl->newest->next = e;
    else
        rl->oldest = e;
    rl->newest = e;
}

static void entry_drop(ratelimit *rl, rl_entry *e)
{
    list_unlink(rl, e);
    HASH_DEL(rl->table, e);
    free(e);
}

void ratelimit_free(ratelimit *rl)
{
    if (!rl)
        return;
    while (rl->oldest)
        entry_drop(rl, rl->oldest);
    free(rl);
}

static bool expired(const ratelimit *rl, const rl_entry *e, int64_t now_ms)
{
    return now_ms - e->start_ms >= (int64_t)rl->window_ms;
}

/* Drops keys whose window has ended, oldest first; stops at the first live
 * one, so each key is dropped once: O(1) amortized per call. */
static void drop_expired(ratelimit *rl, int64_t now_ms)
{
    while (rl->oldest && expired(rl, rl->oldest, now_ms))
        entry_drop(rl, rl->oldest);
}

static rl_entry *find(ratelimit *rl, const char *key, size_t len)
{
    rl_entry *e = NULL;
    HASH_FIND(hh, rl->table, key, len, e);
    return e;
}

bool ratelimit_allows(ratelimit *rl, const char *key, size_t len, int64_t now_ms)
{
    rl_entry *e = find(rl, key, len);
    return !e || expired(rl, e, now_ms) || e->count < rl->limit;
}

bool ratelimit_hit(ratelimit *rl, const char *key, size_t len, int64_t now_ms)
{
    drop_expired(rl, now_ms);
    rl_entry *e = find(rl, key, len);
    if (e && expired(rl, e, now_ms)) { /* a clock step backwards left it behind */
        entry_drop(rl, e);
        e = NULL;
    }
    if (!e) {
        if (rl->limit == 0)
            return false;
        if (HASH_COUNT(rl->table) >= rl->max_keys)
            entry_drop(rl, rl->oldest);
        e = malloc(sizeof(*e) + len);
        if (!e)
            return false; /* refuse rather than stop counting */
        memset(e, 0, sizeof(*e));
        memcpy(e->key, key, len);
        e->len = (uint32_t)len;
        e->start_ms = now_ms;
        HASH_ADD(hh, rl->table, key, len, e);
        list_append(rl, e);
    }
    if (e->count >= rl->limit)
        return false;
    e->count++;
    return true;
}

void ratelimit_reset(ratelimit *rl, const char *key, size_t len)
{
    rl_entry *e = find(rl, key, len);
    if (e)
        entry_drop(rl, e);
}

size_t ratelimit_size(const ratelimit *rl)
{
    return HASH_COUNT(rl->table);
}
