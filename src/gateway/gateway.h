/* gateway: the client protocol on /ws and the push operations that the
 * server API (gateway_api.c) and the chat service build on.
 *
 * A connection is greeted with {"type":"init","client_id":...}, answers
 * {"type":"ping"} with {"type":"pong"}, routes transient
 * {"type":"event"} messages between bound uids (a group's, with group_id,
 * counted against --event-rate here, go to the hook), and hands every other
 * message type to the chat service's hook. Pushes frame a message once and
 * queue the same buffer on every recipient (encode once, send many). */
#ifndef CHATD_GATEWAY_H
#define CHATD_GATEWAY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/sbuf.h"
#include "net/conn.h"

/* Handles a client message of a type the gateway does not know. Returns
 * false when the type is unknown to it too. msg is borrowed. */
typedef bool (*gateway_message_hook)(conn *c, const char *type, json_t *msg);

/* Installs the WebSocket application (call once at start). */
void gateway_init(void);
void gateway_set_message_hook(gateway_message_hook hook);

/* Frames text once. The caller owns the returned reference. */
sbuf *gateway_frame_text(const char *text, size_t len);
/* Frames a JSON value (borrowed) as text. */
sbuf *gateway_frame_json(const json_t *value);

/* Push a frame to recipients on this node; each returns how many
 * connections got it. */
size_t gateway_send_to_conn(conn *c, sbuf *frame);
size_t gateway_send_to_uid(const char *uid, size_t len, sbuf *frame, const conn *except);
/* Cluster-wide: gateway_send_to_uid here, plus one bus publish that the
 * uid's other nodes frame once and deliver (just the former on one node).
 * except_id (NULL = none) is a client_id, on any node, that is skipped.
 * Returns the local count only: other nodes are not waited for. */
size_t gateway_push_to_uid(const char *uid, size_t len, sbuf *frame, const char *except_id);
/* Excluded connections must be marked with gateway_exclude_mark first. */
size_t gateway_send_to_group(const char *group, size_t len, sbuf *frame);
size_t gateway_send_to_all(sbuf *frame);

/* Marks / unmarks a connection to be skipped by group and broadcast sends. */
void gateway_exclude_mark(conn *c, bool excluded);

/* Sends {"type":"error","code":code,"msg":msg} (plus extra's keys when
 * extra is not NULL; extra is borrowed). */
void gateway_send_error(conn *c, const char *code, const char *msg, json_t *extra);

/* The bind nonce of a connection: proof, for POST /chat/bind, that the
 * caller holds the socket. The init greeting carries it next to the
 * client_id. It is derived, not stored: the first 128 bits of
 * HMAC-SHA256(per-process random key, client_id), base64url, so it costs no
 * memory per connection, and knowing a client_id (which the server API hands
 * around) does not give it. Returns 0, or -1 when no randomness is available. */
#define GATEWAY_BIND_NONCE_LEN 22
int gateway_bind_nonce(const char *client_id, size_t len, char out[GATEWAY_BIND_NONCE_LEN + 1]);
/* True when nonce is client_id's bind nonce (constant-time comparison). */
bool gateway_bind_nonce_ok(const char *client_id, size_t id_len, const char *nonce, size_t len);

/* Writes a uid as JSON: a number when it is a canonical decimal integer
 * (every chat-service user id), else a string. New reference. */
json_t *gateway_uid_json(const char *uid, size_t len);

#endif
