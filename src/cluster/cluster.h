/* cluster: many chatd nodes serving one site, routed through a bus (bus.h).
 *
 * Off unless --redis is given; then every function here is cheap and local
 * when the bus is down. What it gives the layers above:
 *
 *   Addressing: this node's tag, the first two characters of every client_id
 *   it issues (registry_make_client_id), so a request for a client_id goes
 *   to the one node that holds it (channel chatd:n:<tag>).
 *
 *   Directory: the registry reports when this node starts or stops holding a
 *   uid or a group (cluster_uid_held / cluster_group_held); the node then
 *   subscribes to that name's channel and lists itself under the name.
 *
 *   Pushes: cluster_push_uid hands a payload (the WebSocket message text) to
 *   every other node holding the uid: one publish, one copy per node, framed
 *   once there. The origin delivers to its own connections itself and skips
 *   its own echo, so each connection gets the push once.
 *
 *   Requests: a cluster_call runs a registered handler on other nodes (every
 *   node, the node of a client_id, the nodes of a uid or group) and collects
 *   each node's partial answer for the caller to merge. A node that does not
 *   answer within the timeout is left out of the answer.
 *
 * Failure: while the bus is down, pushes and calls to other nodes are
 * counted as dropped and the node serves its own clients; when the bus is
 * back the node re-announces its directory and subscriptions by itself.
 * Everything runs on the loop thread. */
#ifndef CHATD_CLUSTER_H
#define CHATD_CLUSTER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/config.h"

#define CLUSTER_TAG_LEN 2 /* characters of the node tag at the start of a client_id */

/* Picks this process's tag and instance; with cfg->redis set, connects the
 * bus and starts the heartbeat. Returns 0, or -1 on a bad option. */
int cluster_init(uv_loop_t *loop, const config *cfg);
/* Takes this node out of the cluster (heartbeat and directory entries). */
void cluster_stop(void);

bool cluster_enabled(void);
/* The node tag as the first 12 bits of a 16-bit value (the low 4 bits are
 * 0): the two leading base64url characters of a client_id. */
uint16_t cluster_node_tag(void);
/* --node-id, or the random one chosen at start ("" in single-node mode). */
const char *cluster_node_id(void);
/* True when client_id was issued by another node. */
bool cluster_is_remote_client(const char *client_id, size_t len);

/* Directory: this node now holds at least one connection of uid / member of
 * group (held), or none any more. */
void cluster_uid_held(const char *uid, size_t len, bool held);
void cluster_group_held(const char *group, size_t len, bool held);

/* Delivers a payload that another node pushed to uid to this node's
 * connections of uid but except_id (a client_id, or NULL); installed by the
 * gateway. */
typedef void (*cluster_push_fn)(const char *uid, size_t uid_len, const char *except_id,
                                const char *payload, size_t len);
void cluster_set_push_handler(cluster_push_fn fn);
/* Sends payload to the uid's connections on every other node, but the
 * connection except_id (NULL = none). */
void cluster_push_uid(const char *uid, size_t len, const char *except_id, const char *payload,
                      size_t payload_len);

/* Sends payload to the connections of each of uids[0..n) (lengths lens) on
 * every other node, as n cluster_push_uid calls would, but in ONE publish
 * on chatd:all when more than one of the uids is held elsewhere (a group
 * message to 500 members is one bus message, not 500). The receiving nodes
 * run the "push.uids" handler, which the gateway registers (body
 * {"uids": [...], "payload": "..."}). Uids no other node holds cost
 * nothing. */
void cluster_push_uids(const char *const *uids, const size_t *lens, size_t n, const char *payload,
                       size_t payload_len);

/* A request handler: runs method on this node with body (borrowed) and
 * returns this node's partial answer (a new reference; NULL = null).
 * Handlers run for requests from other nodes only; the caller runs its own
 * part itself. */
typedef json_t *(*cluster_handler_fn)(json_t *body, void *arg);
/* method is borrowed and must outlive the process's cluster use. */
void cluster_register(const char *method, cluster_handler_fn fn, void *arg);

/* Gets the other nodes' partial answers: a new array that the done
 * function owns (and must json_decref). complete is false when the
 * timeout ended the wait: a node that got the call did not answer. */
typedef void (*cluster_done_fn)(json_t *partials, bool complete, void *ctx);
typedef struct cluster_call cluster_call;

/* A call of method; add targets, then start it. */
cluster_call *cluster_call_new(const char *method, cluster_done_fn done, void *ctx);
/* Targets, each with the body its nodes get (borrowed, serialized now):
 * every other node; the node holding client_id (nothing when that is this
 * node); the other nodes holding uid / group. */
int cluster_call_all(cluster_call *call, json_t *body);
int cluster_call_client(cluster_call *call, const char *client_id, size_t len, json_t *body);
int cluster_call_uid(cluster_call *call, const char *uid, size_t len, json_t *body);
int cluster_call_group(cluster_call *call, const char *group, size_t len, json_t *body);
/* Publishes the targets; done runs once every node that got the call
 * answered, or after timeout_ms with the answers so far. Returns 0, or -1
 * when nothing could be sent (the bus is down, or no target was added): the
 * call is then freed and done is not called. */
int cluster_call_start(cluster_call *call, unsigned timeout_ms);
/* Frees a call that was never started. */
void cluster_call_free(cluster_call *call);

/* Fire and forget: method runs on every other node with body (no answer). */
void cluster_cast_all(const char *method, json_t *body);

/* The /healthz "cluster" object (new reference), or null in single mode. */
json_t *cluster_health(void);

#endif
