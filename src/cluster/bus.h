/* bus: the messaging engine under cluster mode, behind one small interface.
 *
 * The cluster module (cluster.h) routes pushes and requests between chatd
 * nodes through a bus: publish/subscribe on named channels, a directory of
 * which node instances hold a name (a uid or a group), and node heartbeats
 * that expire when a node dies. bus_redis.c implements it on one Redis
 * server with hiredis; another engine (NATS, Redis Cluster's sharded pub/sub)
 * implements these functions and nothing above changes.
 *
 * Delivery: a message published on a channel reaches each subscribed node
 * once, in publish order per publisher, at most once (no replay after a
 * disconnect). While the engine is unreachable, bus_publish fails at once
 * and subscriptions are kept as wishes: on reconnect the bus subscribes them
 * again and calls on_state(true) so the owner re-announces its directory.
 *
 * Ownership: strings passed in are copied or written out before the call
 * returns; data handed to callbacks is valid only during the callback. Every
 * function runs on the loop thread. */
#ifndef CHATD_BUS_H
#define CHATD_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct bus bus;

typedef struct bus_callbacks {
    /* A message arrived on a subscribed channel. */
    void (*on_message)(const char *channel, size_t channel_len, const char *data, size_t len,
                       void *arg);
    /* The engine became reachable (up: subscriptions are renewed; the
     * directory must be announced again) or was lost. */
    void (*on_state)(bool up, void *arg);
    /* This node now receives the channel of a name it holds (bus_hold):
     * the owner tells the other holders (see bus_is_solo). */
    void (*on_held)(const char *channel, size_t channel_len, void *arg);
    void *arg;
} bus_callbacks;

/* One live node instance as its heartbeat describes it. */
typedef struct bus_node {
    const char *instance;
    const char *info; /* the info text it last announced */
    size_t info_len;
} bus_node;

/* Connects to uri (redis://[:password@]host:port[/db]) in the background;
 * reconnects by itself with backoff. instance names this process on the bus.
 * Returns 0, or -1 on a malformed uri (message logged). */
int bus_open(uv_loop_t *loop, const char *uri, const char *instance, const bus_callbacks *cb,
             bus **out);
/* Drops this instance's heartbeat and directory entries (best effort, one
 * pipelined round trip bounded by timeout_ms), then disconnects. */
void bus_close(bus *b, unsigned timeout_ms);
bool bus_is_up(const bus *b);
/* "host:port" of the engine, for logs. */
const char *bus_address(const bus *b);

/* Publishes data on channel. done (may be NULL) gets the number of nodes
 * that received it, or -1 when it was lost. Returns -1 without calling done
 * when the bus is down. */
typedef void (*bus_published_fn)(long long receivers, void *arg);
int bus_publish(bus *b, const char *channel, size_t channel_len, const char *data, size_t len,
                bus_published_fn done, void *arg);

/* Wants (or no longer wants) messages of channel. Idempotent; cheap to
 * flip: unsubscribing is deferred, and a channel is never subscribed while
 * its unsubscribe is in flight. */
void bus_subscribe(bus *b, const char *channel, size_t len);
void bus_unsubscribe(bus *b, const char *channel, size_t len);

/* Directory: this instance holds (or no longer holds) name in namespace
 * kind ('u' uids, 'g' groups): it subscribes to the name's channel
 * chatd:<kind>:<name> and lists itself under the name. The bus keeps what
 * is held and announces it all again after a reconnect. */
void bus_hold(bus *b, char kind, const char *name, size_t len, bool held);
/* Solo channels. A push to a uid that only this node holds need not cross
 * the engine. The bus learns "only us" from a publish on a held channel
 * that reached exactly one node while we were subscribed, and forgets it
 * when bus_not_solo says another node joined the channel (its on_held
 * announcement arrived), on any reconnect, and for every answer in flight
 * when such news came (so a stale count never wins over newer news). */
bool bus_is_solo(const bus *b, const char *channel, size_t len);
void bus_not_solo(bus *b, const char *channel, size_t len);

/* Announces this instance as alive for ttl_ms with info, reaps instances
 * whose heartbeat expired (their directory entries go), and hands back
 * every live instance. n = -1 when it failed. */
typedef void (*bus_nodes_fn)(const bus_node *nodes, long n, void *arg);
int bus_heartbeat(bus *b, const char *info, unsigned ttl_ms, bus_nodes_fn done, void *arg);

/* Counters since start. */
typedef struct bus_stats {
    uint64_t published, received, reconnects, subscriptions;
} bus_stats;
void bus_get_stats(const bus *b, bus_stats *out);

#endif
