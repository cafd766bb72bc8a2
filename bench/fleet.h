/* fleet: the setup phase shared by the scenarios: open N WebSocket connections (at most
 * --concurrency handshakes at once, spread over the source addresses), wait for each one's
 * `init` and keep its client_id; then make one server-API call per client (bind_uid,
 * join_group) with a bounded number in flight. Both run the loop until done and fail() on
 * the first error unless told to count failures instead. */
#ifndef BENCH_FLEET_H
#define BENCH_FLEET_H

#include "hist.h"
#include "httpc.h"
#include "wsc.h"

typedef struct fleet {
    const target *t;
    const target *t2; /* when set, odd-numbered clients connect here (--url2) */
    long n;
    wsc *(*at)(long i);  /* the scenario's i-th client */
    bool want_init;      /* wait for {"type":"init"} (not on an echo path) */
    bool count_failures; /* conns: report failures instead of stopping */
    char (*client_id)[32];
    long started, ready, failed;
    int first_error;
    char first_error_text[160];
    uint64_t t_begin, t_end; /* first connect .. last ready */
    uint64_t *t_conn;        /* connect time per client */
    hist ready_lat;          /* connect -> init (or handshake) */
    bool closing;
    long closed;
} fleet;

/* The target of client i: t2 for odd i when set, else t. */
static inline const target *fleet_target(const fleet *f, long i)
{
    return f->t2 && (i & 1) ? f->t2 : f->t;
}

/* Opens f->n connections; returns when every one is ready (or failed, with count_failures).
 * Afterwards each client's handlers are still the fleet's: set w->h to take over. */
void fleet_open(fleet *f);

/* Closes every connection by RST (leaving no TIME_WAIT behind) and waits for them. */
void fleet_close_all(fleet *f);

/* Body of the API call for client i into buf; returns its length. */
typedef size_t (*fleet_body_fn)(const fleet *f, long i, char *buf, size_t cap);
/* POSTs path for every client (at most 512 in flight), failing on the first refusal. */
void fleet_api_all(fleet *f, httpc *api, const char *path, fleet_body_fn body);

/* Extracts the string value of "key" from a flat JSON object; returns its length or -1. */
int json_str_field(const char *json, size_t len, const char *key, char *out, size_t cap);
/* Points at the value after "key": in json (after optional spaces), or NULL. */
const char *json_field(const char *json, size_t len, const char *key);

#endif
