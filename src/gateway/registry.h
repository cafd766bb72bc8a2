/* registry: who is connected, as GatewayWorker knows it.
 *
 * Indexes, all O(1) on average:
 *   client_id -> connection   (open-addressing table of conn pointers)
 *   uid       -> its connections (a user may have several devices)
 *   group     -> its member connections
 * and per connection its uid, groups and session (in the conn itself).
 *
 * Why our own client_id table: every open WebSocket is in it, so its cost is
 * per idle connection. A pointer-only open-addressing table costs 8 bytes a
 * slot, 11-21 bytes per connection between its growth points; an intrusive hash handle (uthash)
 * costs 56 in the connection struct. uid and group tables are per bound user and per group, so they
 * use uthash.
 *
 * Invariant: a connection in the registry is an open WebSocket; on close,
 * registry_remove takes it out of every index before the memory goes.
 * Strings passed in are copied; pointers returned are valid until the next
 * change to the registry. The registry runs on the loop thread only. */
#ifndef CHATD_REGISTRY_H
#define CHATD_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uthash.h>

#include "net/conn.h"

#define REGISTRY_NAME_MAX 128 /* bytes of a uid or group */

struct uid_entry {
    conn *conns; /* list through conn->uid_next, in bind order */
    conn *last;
    uint32_t count;
    uint16_t json_len;
    char *json; /* the uid as JSON (gateway_uid_json), written into every event it sends */
    UT_hash_handle hh;
    uint16_t len;
    char name[]; /* NUL-terminated */
};

typedef struct group_entry group_entry;
typedef struct group_link {
    conn *conn;
    group_entry *group;
    struct group_link *g_prev, *g_next; /* in the group */
    struct group_link *c_next;          /* in the connection's list */
} group_link;

struct group_entry {
    group_link *members; /* in join order */
    group_link *last;
    uint32_t count;
    UT_hash_handle hh;
    uint16_t len;
    char name[];
};

/* Registers an open WebSocket under a new random client_id (written into
 * c->client_id). Returns 0 or -1 on OOM / no randomness. */
int registry_add(conn *c);
/* Removes the connection from every index (its uid, its groups). */
void registry_remove(conn *c);
conn *registry_find(const char *client_id, size_t len);
/* Characters of this process's client_ids: CLIENT_ID_LEN, or 20 with
 * GatewayWorker ids (gw_compat_ids). */
#define GW_CLIENT_ID_CHARS 20
size_t registry_client_id_len(void);

#define REGISTRY_FULL (-2) /* registry_bind_uid: the uid has max_conns connections */

/* Binds c to uid (moving it off any previous uid). max_conns caps the
 * connections of one uid (0 = no cap): a bind that would pass it changes
 * nothing and returns REGISTRY_FULL. Returns 0, REGISTRY_FULL, or -1 (bad name,
 * OOM). Moving c to another uid, or unbinding it, clears CONN_CHAT_BOUND: the
 * chat service's binding names one user and must not follow the connection
 * to another uid. */
int registry_bind_uid(conn *c, const char *uid, size_t len, uint32_t max_conns);
void registry_unbind_uid(conn *c);
uid_entry *registry_find_uid(const char *uid, size_t len);
/* The chat service's presence hook: a connection bound through the chat
 * service (CONN_CHAT_BOUND) leaves uid (unbound, moved, or closed). Called
 * with the uid still indexed; fn must not change the registry. NULL: none. */
typedef void (*registry_chat_unbound_fn)(const char *uid, size_t len);
void registry_set_chat_unbound_hook(registry_chat_unbound_fn fn);

int registry_join_group(conn *c, const char *group, size_t len);
void registry_leave_group(conn *c, const char *group, size_t len);
/* Removes every member of the group. */
void registry_ungroup(const char *group, size_t len);
group_entry *registry_find_group(const char *group, size_t len);

size_t registry_client_count(void);
size_t registry_uid_count(void);

/* Calls fn for every registered connection. fn must not add or remove
 * connections (closing is fine: removal happens on the close callback). */
void registry_foreach(void (*fn)(conn *c, void *arg), void *arg);

/* The same in connect order when GatewayWorker ids are on (sorting a
 * snapshot: O(n log n)), else in table order. */
void registry_foreach_ordered(void (*fn)(conn *c, void *arg), void *arg);
/* Calls fn for every group with members, in creation order (fn must not
 * change the registry). */
void registry_foreach_group(void (*fn)(group_entry *g, void *arg), void *arg);

/* Calls fn for every bound uid (fn must not change the registry). */
void registry_foreach_uid(void (*fn)(uid_entry *e, void *arg), void *arg);

/* Frees every index (at shutdown, after all connections closed). */
void registry_destroy(void);

/* Fills out with a new client id: 16 random bytes, base64url, 22 chars + NUL. */
int registry_make_client_id(char out[CLIENT_ID_LEN + 1]);

#endif
