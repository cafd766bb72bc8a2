/* webhook: push-notification events for users with no connected device.
 *
 * With --webhook-url set, the chat service hands every stored message to
 * webhook_message_stored after its transaction committed. When the
 * recipient has no connected device (on this node; in cluster mode, on no
 * node: see below), an event is built once, put on a bounded queue of
 * --webhook-queue events, and POSTed by libcurl's multi interface driven by
 * the libuv loop (curl_multi_socket_action, uv_poll per socket, one
 * uv_timer), so the loop never waits for the receiver. At most
 * WEBHOOK_IN_FLIGHT requests run at once; each gets WEBHOOK_TIMEOUT_MS.
 * Connection errors, timeouts, 5xx and 429 are retried after 1, 2, 4, 8 s
 * (WEBHOOK_ATTEMPTS tries in all) with the same X-Chatd-Delivery id; other
 * answers (a 4xx, a redirect) end the event as failed. A full queue drops
 * the new event and counts it. See docs/API.md, "Push-notification webhook".
 *
 * Cluster rule: a node knows its own sockets (the registry). For a
 * recipient with none here it asks the nodes that hold the uid, with one
 * gw.is_uid_online call on the uid's channel chatd:u:<uid> (only the nodes
 * subscribed to it, i.e. holding the uid, get it; when none does, the
 * PUBLISH reply says 0 and the answer is immediate). The event is queued
 * when no node answers "online": also when the bus is down (the socket
 * push could not reach other nodes either) or a node did not answer in
 * time (its devices may be gone with it). A duplicate wake-up is preferred
 * to a lost one; receivers deduplicate by message_id.
 *
 * Ownership: the module copies what it keeps; nothing is borrowed past a
 * call. Threading: loop thread only (libcurl's threaded resolver runs its
 * own threads; nothing else does). The pure helpers below are for tests. */
#ifndef CHATD_WEBHOOK_H
#define CHATD_WEBHOOK_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/config.h"

#define WEBHOOK_IN_FLIGHT 4      /* requests at once */
#define WEBHOOK_TIMEOUT_MS 5000  /* per request, connecting included */
#define WEBHOOK_ATTEMPTS 5       /* tries per event, the first included */
#define WEBHOOK_BACKOFF_MS 1000  /* before the first retry; doubles each time */
#define WEBHOOK_GRACE_MS 2000    /* at shutdown, for what is still queued */
#define WEBHOOK_SIGNATURE_LEN 71 /* "sha256=" + 64 hex digits */

typedef struct webhook_stats {
    uint64_t queued;    /* events accepted onto the queue */
    uint64_t delivered; /* answered 2xx */
    uint64_t retried;   /* attempts after the first */
    uint64_t failed;    /* given up: a non-retried answer, or out of attempts */
    uint64_t dropped;   /* never sent: queue full, out of memory, shutdown */
    uint64_t withdrawn; /* message events taken back: their message was recalled */
    uint64_t pending;   /* on the queue now (waiting, in flight or backing off) */
    uint64_t in_flight; /* requests running now */
} webhook_stats;

/* Starts the module when cfg->webhook_url is set (checks the URL, sets up
 * libcurl); registers nothing otherwise. Returns 0, or -1 after logging. */
int webhook_init(uv_loop_t *loop, const config *cfg);
bool webhook_enabled(void);

/* A message was stored (committed): queues its event if its recipient has
 * no connected device. message is a store message (store.h), borrowed.
 * Cheap when off or when the recipient is online here. A group message (no
 * to_id) is ignored: offline group members are not woken. */
void webhook_message_stored(const json_t *message);

/* A 1:1 message was recalled (committed): message is the stored message
 * (recalled), notice the recall notice, both borrowed. This node's queued
 * or backing-off events of the message are dropped (counted withdrawn) and
 * one in flight is never retried: the recalled text is not sent again.
 * Unless every event of it here was dropped before its first attempt, a
 * "recall" event is queued for the recipient (when offline, as a message
 * event): the receiver may have shown the message (an attempt, or an event
 * another node queued) and can withdraw it. The caller tells the other
 * nodes (webhook_withdraw_message there). A group message: ignored. */
void webhook_message_recalled(const json_t *message, const json_t *notice);

/* Another node recalled message_id: this node's events of it are withdrawn
 * as above (the node that stored a message queued its event; the recall may
 * be handled by any node), and no recall event is sent from here. */
void webhook_withdraw_message(int64_t message_id);

/* Shutdown began: no new events; what is queued gets WEBHOOK_GRACE_MS,
 * then is dropped and counted. */
void webhook_stop(void);
/* True while events are queued (the shutdown waits for them, at most the
 * grace). */
bool webhook_busy(void);
/* After the loop stopped: drops what is left, frees libcurl and closes the
 * module's handles (run the loop once more to finish the closes). */
void webhook_shutdown(void);

void webhook_get_stats(webhook_stats *out);
/* The /healthz "webhook" object (new reference), or NULL when off. */
json_t *webhook_health(void);

/* ---- pure helpers (exposed for tests) ---------------------------------- */

/* Bytes of the first max_chars code points of the UTF-8 text s (len
 * bytes): never cuts a multi-byte character. */
size_t webhook_preview_len(const char *s, size_t len, size_t max_chars);

/* The event body for a store message: a new NUL-terminated string (the
 * caller frees it), or NULL when message lacks a field or on OOM.
 * preview_chars 0 leaves the preview out. */
char *webhook_event_json(const json_t *message, size_t preview_chars);

/* The "recall" event body for a recalled 1:1 message and its notice (a
 * new string), or NULL. */
char *webhook_recall_json(const json_t *message, const json_t *notice);

/* out = "sha256=" + hex HMAC-SHA256(secret, timestamp + "." + body), NUL
 * terminated (WEBHOOK_SIGNATURE_LEN + 1 bytes). */
void webhook_sign(const char *secret, const char *timestamp, const char *body, size_t body_len,
                  char out[WEBHOOK_SIGNATURE_LEN + 1]);

#endif
