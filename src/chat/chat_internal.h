/* chat_internal: what the files of the chat service share (not for other
 * modules: chat.h is the service's contract).
 *
 * The service is split by resource, one file each, as Redis keeps one
 * t_<type>.c per data type: chat.c routes requests and socket messages and
 * owns start-up; chat_call.c is the request plumbing every endpoint uses (a
 * call over HTTP or the socket, its answer, validation, pushes);
 * chat_account.c the accounts (register, login, logout, me, search, password,
 * profile);
 * chat_bind.c binding a socket to its user; chat_message.c messages and
 * conversations (send, list, unread, history, sync, read), 1:1 and group;
 * chat_recall.c recall, delete-for-me and GET /chat/config;
 * chat_group.c the groups (/group/...: create, info, members, roles, mute)
 * and group events; chat_presence.c who is online, told to their peers, and
 * the presence settings.
 *
 * Everything runs on the loop thread. */
#ifndef CHATD_CHAT_INTERNAL_H
#define CHATD_CHAT_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/config.h"
#include "core/ratelimit.h"
#include "core/sbuf.h"
#include "http/http.h"
#include "net/conn.h"
#include "store/store.h"

#define USERNAME_MIN 2
#define USERNAME_MAX 32
#define PASSWORD_MIN 6
#define PASSWORD_MAX 128
#define USERPIC_MAX 512
#define CLIENT_MSG_ID_MAX 64
#define SEARCH_LIMIT 20
#define HISTORY_DEFAULT 20
#define BIND_FAILS_MAX 3        /* failed socket binds before the socket is closed */
#define LIMITER_KEYS_MAX 100000 /* keys per rate limiter (bounded memory) */
#define PEER_ADDR_MAX 48
#define CURSORS_MAX 1000 /* conversations named in one POST /chat/sync */
#define GROUP_NAME_MAX 64
#define GROUP_AVATAR_MAX 512
#define IMAGE_SIDE_MAX 65535 /* pixels of an image message's width or height */
#define CALL_ID_MAX 64       /* bytes of a socket call's id */
#define EVENT_CACHE_MS 2000  /* how long a group's member list serves its events */
#define EVENT_CACHE_MAX 1024 /* groups whose member list is kept for events */

/* The service's state, set by chat_init. */
extern const config *chat_cfg;
extern store *chat_store;
extern uv_loop_t *chat_loop;
extern ratelimit *chat_bind_fail_limit; /* failed socket binds per address per minute */
extern ratelimit *chat_send_limit;      /* chat messages per user */

typedef struct chat_call chat_call;
typedef void (*chat_step)(chat_call *call);

/* One request in flight, over HTTP (req) or the socket (client_id). */
struct chat_call {
    http_request *req;
    char client_id[CLIENT_ID_LEN + 1];
    const char *op;  /* socket op name, for errors */
    json_t *body;    /* request body, socket message, or a socket call's body */
    json_t *call_id; /* a socket call's id (answered in its result or error) */
    json_t *user;    /* the authenticated user */
    int64_t uid;
    char *token;
    char *password;
    int64_t started_ms;       /* wall clock when the HTTP call arrived (before its token lookup) */
    uint64_t cache_gen;       /* group events: the event cache's forget count at the read */
    chat_step next;           /* after authentication */
    store_done_fn store_done; /* the answer of the call's store request */
    /* socket binds: the address their failure counts against */
    char peer[PEER_ADDR_MAX];
};

/* ---- chat_call.c: calls, answers, validation, pushes ---------------------- */

/* A call ends with exactly one answer: an HTTP response or a socket frame.
 * chat_call_fail answers an error (HTTP status + code, or an error frame
 * with the op) and frees the call; the endpoints' success paths answer and
 * then call chat_call_free. chat_call_conn is the call's socket if it is
 * still open (NULL over HTTP or once it closed). */
void chat_call_free(chat_call *call);
conn *chat_call_conn(chat_call *call);
void chat_call_fail(chat_call *call, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The success answer of an endpoint that also runs as a socket call: over
 * HTTP the envelope with data, on the socket {"type":"result","id","data"}.
 * Steals data; frees the call. */
void chat_call_ok(chat_call *call, json_t *data);
/* Answers 503 store_unavailable (or the store's error) for a failed request. */
void chat_store_failed(chat_call *call);
/* Answers a failed group operation: NOT_FOUND 404, FORBIDDEN 403, CONFLICT
 * 409 with the store's result {code, message}; other statuses as
 * chat_store_failed. Frees r. */
void chat_group_failed(chat_call *call, store_req *r);
/* A group operation's store result (a new reference; r is freed), or NULL
 * after answering its error (chat_group_failed). */
json_t *chat_group_take_result(store_req *r);
/* Answers a group operation's store result as it is, or its error
 * (chat_group_failed); a store_done function. */
void chat_respond_group_result(store_req *r);
/* A store request owned by the call: done runs with r->ctx == call. */
store_req *chat_call_store_req(chat_call *call, store_op op, store_done_fn done);
char *chat_uid_string(int64_t id, char *buf, size_t cap);
/* Pushes to every device of a user, cluster-wide, except one client_id
 * (NULL = none); values are framed once. */
void chat_push_to_user(int64_t user_id, const json_t *value, const char *except_id);
sbuf *chat_frame_concat(const char *const *parts, size_t n);
void chat_push_message_text(const char *text, int64_t to_id, int64_t from_id,
                            const char *origin_id);
void chat_push_message(const json_t *message, int64_t from_id, const char *origin_id);
/* A user id of a member list: an integer, or an object's "userid". */
int64_t chat_member_id(const json_t *v);
/* Pushes one frame (built once) to every device of every member (ids or
 * {userid} objects) that may be online: the sender's device origin_id (a
 * client_id or NULL) is skipped, or, with skip_sender, all of the sender's
 * devices. Other members' devices are never skipped, whatever origin_id. */
void chat_push_frame_to_members(sbuf *frame, const json_t *members, int64_t sender,
                                const char *origin_id, bool skip_sender);
/* The same for n user ids. */
void chat_push_frame_to_ids(sbuf *frame, const int64_t *ids, size_t n, int64_t sender,
                            const char *origin_id, bool skip_sender);
/* {"type":"message","message":<text>} to the members (a group message). */
void chat_push_to_members(const char *text, const json_t *members, int64_t sender,
                          const char *origin_id);
/* Field and query validation: on bad input they answer the call with 400
 * (and set *failed / return -1 or 0) so the endpoint only returns. */
const char *chat_want_string(chat_call *call, json_t *obj, const char *field, size_t min,
                             size_t max, bool required, bool *failed);
int64_t chat_want_user_id(chat_call *call, json_t *obj, const char *field);
/* The same for any id: what names it in the error ("a group id"). */
int64_t chat_want_id(chat_call *call, json_t *obj, const char *field, const char *what);
/* An id (user or group) in a JSON integer or a decimal string; 0 if not one. */
int64_t chat_id_value(const json_t *v);
/* Over HTTP, an optional "client_id" in the body names the caller's own
 * socket (it is not pushed what the answer holds). False after a 400. */
bool chat_want_self(chat_call *call);
bool chat_type_allowed(const char *type);
int chat_query_text(chat_call *call, const char *name, char *out, size_t cap, const char *what);
int64_t chat_query_int(chat_call *call, const char *name, int64_t def, int64_t min, int64_t max);

/* ---- the endpoints: each takes an authenticated call (or, for register and
 * login, an anonymous one) and answers it --------------------------------- */

/* ---- chat_account.c ------------------------------------------------------ */

void chat_do_register(chat_call *call);
void chat_do_login(chat_call *call);
json_t *chat_remote_logout(json_t *body, void *arg);
void chat_do_logout(chat_call *call);
void chat_do_me(chat_call *call);
void chat_respond_result(store_req *r);
void chat_respond_users(store_req *r);
void chat_do_search(chat_call *call);
/* POST /user/password and POST /user/profile (docs/API.md). */
void chat_do_password(chat_call *call);
void chat_do_profile(chat_call *call);
json_t *chat_remote_user_changed(json_t *body, void *arg);
/* "chat.recalled" {message_id} from the node that recalled it: this node's
 * webhook events of the message are withdrawn. */
json_t *chat_remote_recalled(json_t *body, void *arg);

/* ---- chat_bind.c --------------------------------------------------------- */

json_t *chat_remote_bind(json_t *body, void *arg);
void chat_do_bind(chat_call *call);

/* ---- chat_message.c ------------------------------------------------------ */

void chat_do_send(chat_call *call);
/* --send-rate per user, over HTTP and the socket together, for messages and
 * the group changes that post a system message: a fixed window of two
 * seconds allows 2 * send_rate, i.e. send_rate a second on average and
 * bursts of twice that. Checked after validation, so a refused malformed
 * request costs no allowance. False after answering 429 rate_limited. */
bool chat_send_allowed(chat_call *call);
void chat_do_list(chat_call *call);
void chat_do_unread(chat_call *call);
void chat_do_history(chat_call *call);
void chat_do_sync(chat_call *call);
void chat_do_sync_cursors(chat_call *call);
void chat_do_read(chat_call *call);

/* ---- chat_recall.c ------------------------------------------------------- */

/* GET /chat/config, POST /chat/recall, POST /chat/delete (docs/API.md). */
void chat_do_config(chat_call *call);
void chat_do_recall(chat_call *call);
void chat_do_delete(chat_call *call);

/* ---- chat_group.c -------------------------------------------------------- */

void chat_do_group_create(chat_call *call);
void chat_do_group_info(chat_call *call);
void chat_do_group_add(chat_call *call);
void chat_do_group_remove(chat_call *call);
void chat_do_group_leave(chat_call *call);
void chat_do_group_update(chat_call *call);
void chat_do_group_role(chat_call *call);
void chat_do_group_dissolve(chat_call *call);
void chat_do_group_mute(chat_call *call);
/* A socket {"type":"event","group_id","data"} of a bound user (the gateway
 * counted it against --event-rate): the other members' devices get it. */
void chat_do_group_event(chat_call *call);
/* After the store closed: frees the group event cache. */
void chat_group_shutdown(void);
/* "chat.group_changed" from another node: a group's members changed there. */
json_t *chat_group_remote_changed(json_t *body, void *arg);

/* ---- chat_presence.c ----------------------------------------------------- */

void chat_presence_init(void);
/* At shutdown: the last_seen of who is online here is written. */
void chat_presence_stop(void);
/* After the store closed: frees the table, closes the handles. */
void chat_presence_shutdown(void);
/* A socket was bound to uid through the chat service (it was not before). */
void chat_presence_bound(int64_t uid);
bool chat_presence_online(int64_t uid);
/* Sets "online" on every object of arr from its integer id under key
 * (objects without one, such as group items of the chat list, get none). */
void chat_presence_annotate(json_t *arr, const char *key);
void chat_do_settings(chat_call *call);

#endif
