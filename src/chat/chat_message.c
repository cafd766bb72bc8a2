/* chat_message: messages and conversations: send, list, unread, history,
 * sync and read receipts (see chat_internal.h). */
#include "chat/chat_internal.h"

#include <errno.h>
#include <sodium.h>
#include <fcntl.h>
#include <http_parser.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/admin.h"
#include "chat/auth.h"
#include "chat/names.h"
#include "chat/webhook.h"
#include "cluster/cluster.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/reload.h"
#include "core/ratelimit.h"
#include "gateway/gateway.h"
#include "gateway/registry.h"
#include "net/server.h"
#include "store/store.h"
#include "ws/ws.h"
#include "ws/ws_frame.h"

/* ---- send -------------------------------------------------------------- */

/* Answers a stored message (the HTTP answer, or the socket's ack) and pushes
 * it: a 1:1 message to both users' devices, a group message to every
 * member's (members, the store's answer); the sender's originating device
 * gets the answer instead. Steals message. */
static void message_answer(chat_call *call, json_t *message, const json_t *members)
{
    const char *origin_id = call->client_id[0] ? call->client_id : NULL;
    /* the message is serialized once, for the push frame and the ack */
    char *text = json_dumps(message, JSON_COMPACT);
    if (text) {
        if (members)
            chat_push_to_members(text, members, call->uid, origin_id);
        else
            chat_push_message_text(text, json_integer_value(json_object_get(message, "to_id")),
                                   call->uid, origin_id);
    }
    if (call->req) {
        free(text);
        http_respond_ok(call->req, message);
        chat_call_free(call);
        return;
    }
    conn *origin = chat_call_conn(call);
    char *cmid = json_dumps(json_object_get(message, "client_msg_id"), JSON_ENCODE_ANY);
    if (text && cmid && origin) {
        const char *parts[] = {"{\"type\":\"ack\",\"client_msg_id\":", cmid, ",\"message\":", text,
                               "}"};
        sbuf *ack = chat_frame_concat(parts, 5);
        if (ack) {
            ws_send_frame(origin, ack);
            sbuf_unref(ack);
        }
    }
    free(text);
    free(cmid);
    json_decref(message);
    chat_call_free(call);
}

/* A client_msg_id is unique per sender across all its conversations (one
 * index): a "duplicate" of another conversation is not a retry of this send
 * but a reused id. Answering it as one would tell the sender a message was
 * stored that was not, and push the other conversation's message here. */
static bool duplicate_elsewhere(const store_req *r, const json_t *message)
{
    if (!r->duplicate)
        return false;
    if (r->op == STORE_GROUP_SEND)
        return json_integer_value(json_object_get(message, "group_id")) != r->group_id;
    return json_object_get(message, "group_id") ||
           json_integer_value(json_object_get(message, "to_id")) != r->peer_id;
}

static void reused_id(chat_call *call)
{
    chat_call_fail(call, 409, "client_msg_id_reused",
                   "client_msg_id was already used for a message to another conversation; "
                   "use a new one for every message");
}

static void message_stored(store_req *r)
{
    chat_call *call = r->ctx;
    if (r->status == STORE_OK && duplicate_elsewhere(r, r->result)) {
        store_req_free(r);
        reused_id(call);
        return;
    }
    if (r->status != STORE_OK) {
        int status = r->status;
        store_req_free(r);
        if (status == STORE_NOT_FOUND)
            chat_call_fail(call, 404, "not_found", "to_id: no such user");
        else
            chat_store_failed(call);
        return;
    }
    /* A duplicate (a retry of a known client_msg_id) is pushed again too:
     * the first try may have committed without being pushed (its outcome
     * unknown to chatd, 503 store_unavailable; or another node stored it
     * and crashed), and only a push tells online devices without a sync.
     * Push is at least once, storage exactly once: clients merge by id. */
    json_t *message = json_incref(r->result);
    store_req_free(r);
    webhook_message_stored(message); /* committed: its recipient may need waking */
    message_answer(call, message, NULL);
}

/* A group message: pushed to every member (a duplicate again, as above).
 * The webhook is not called: it wakes the recipient of a 1:1 message, and
 * a group's offline members are not woken (docs/API.md "Groups"). */
static void group_message_stored(store_req *r)
{
    chat_call *call = r->ctx;
    if (r->status != STORE_OK) {
        chat_group_failed(call, r);
        return;
    }
    if (duplicate_elsewhere(r, json_object_get(r->result, "message"))) {
        store_req_free(r);
        reused_id(call);
        return;
    }
    json_t *message = json_incref(json_object_get(r->result, "message"));
    json_t *members = json_incref(json_object_get(r->result, "members"));
    store_req_free(r);
    if (!json_is_object(message)) {
        json_decref(message);
        json_decref(members);
        chat_store_failed(call);
        return;
    }
    if (!members)
        members = json_array(); /* nobody else to tell */
    message_answer(call, message, members);
    json_decref(members);
}

/* --send-rate per user, over HTTP and the socket together: a fixed window of
 * two seconds allows 2 * send_rate messages, i.e. send_rate a second on
 * average and bursts of twice that. Checked after validation, so a refused
 * malformed message costs no allowance. */
bool chat_send_allowed(chat_call *call)
{
    if (chat_cfg->send_rate == 0)
        return true;
    char key[24];
    chat_uid_string(call->uid, key, sizeof(key));
    if (ratelimit_hit(chat_send_limit, key, strlen(key), (int64_t)uv_now(chat_loop)))
        return true;
    metrics_limit_refused(METRICS_LIMIT_SEND);
    chat_call_fail(call, 429, "rate_limited",
                   "too many messages: at most %lld a second (bursts of %lld); slow down",
                   (long long)chat_cfg->send_rate, (long long)chat_cfg->send_rate * 2);
    return false;
}

/* An image's optional width or height: an integer 1-IMAGE_SIDE_MAX, and
 * only on an image (absent or null: 0). False after answering 400. */
static bool image_size(chat_call *call, json_t *m, const char *type, const char *field,
                       int64_t *out)
{
    json_t *v = json_object_get(m, field);
    if (!v || json_is_null(v))
        return true;
    if (strcmp(type, "image") != 0) {
        chat_call_fail(call, 400, "bad_field", "%s is only for a message of type image", field);
        return false;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 1 ||
        json_integer_value(v) > IMAGE_SIDE_MAX) {
        chat_call_fail(call, 400, "bad_field", "%s must be an integer from 1 to %d", field,
                       IMAGE_SIDE_MAX);
        return false;
    }
    *out = json_integer_value(v);
    return true;
}

void chat_do_send(chat_call *call)
{
    json_t *m = call->req ? call->body : json_object_get(call->body, "message");
    if (!json_is_object(m)) {
        chat_call_fail(call, 400, "missing_field", "message must be an object");
        return;
    }
    /* a null field counts as absent, as everywhere */
    json_t *to_v = json_object_get(m, "to_id"), *group_v = json_object_get(m, "group_id");
    if (json_is_null(to_v))
        to_v = NULL;
    if (json_is_null(group_v))
        group_v = NULL;
    if (to_v && group_v) {
        chat_call_fail(call, 400, "bad_field", "give to_id or group_id, not both");
        return;
    }
    int64_t to = 0, group = 0;
    if (group_v) {
        group = chat_want_id(call, m, "group_id", "a group id");
        if (!group)
            return;
    } else {
        to = chat_want_user_id(call, m, "to_id");
        if (!to)
            return;
        if (to == call->uid) {
            chat_call_fail(call, 400, "bad_field", "to_id must be another user");
            return;
        }
    }
    bool failed;
    const char *type = chat_want_string(call, m, "type", 1, 32, true, &failed);
    if (failed)
        return;
    /* system messages are the server's (group changes), whatever
     * --message-types says */
    if (strcmp(type, "system") == 0 || strcmp(type, "recall") == 0) {
        chat_call_fail(call, 400, "bad_field", "type %s is reserved for the server", type);
        return;
    }
    if (!chat_type_allowed(type)) {
        chat_call_fail(call, 400, "bad_field", "type must be one of: %s", chat_cfg->message_types);
        return;
    }
    const char *data =
        chat_want_string(call, m, "data", 1, (size_t)chat_cfg->max_text, true, &failed);
    if (failed)
        return;
    if (strcmp(type, "image") == 0 && !auth_url_is_safe(data)) {
        chat_call_fail(call, 400, "bad_field", "data of an image must be an http(s) URL or a path");
        return;
    }
    int64_t width = 0, height = 0;
    if (!image_size(call, m, type, "width", &width) ||
        !image_size(call, m, type, "height", &height))
        return;
    const char *cmid =
        chat_want_string(call, m, "client_msg_id", 1, CLIENT_MSG_ID_MAX, false, &failed);
    if (failed)
        return;
    if (call->req) { /* the device sending over HTTP may name itself */
        const char *self = chat_want_string(call, m, "client_id", 1, 64, false, &failed);
        if (failed)
            return;
        if (self)
            snprintf(call->client_id, sizeof(call->client_id), "%s", self);
    }
    if (!chat_send_allowed(call))
        return;
    store_req *r = group ? chat_call_store_req(call, STORE_GROUP_SEND, group_message_stored)
                         : chat_call_store_req(call, STORE_MESSAGE_SEND, message_stored);
    if (!r)
        return;
    r->peer_id = to;
    r->group_id = group;
    r->width = width;
    r->height = height;
    if (store_req_set_str(&r->msg_type, type) < 0 || store_req_set_str(&r->msg_data, data) < 0 ||
        store_req_set_str(&r->client_msg_id, cmid) < 0) {
        store_req_free(r);
        chat_call_fail(call, 500, "internal", "out of memory");
        return;
    }
    store_submit(chat_store, r);
}

/* ---- list / history / sync / unread / read ----------------------------- */

void chat_do_list(chat_call *call)
{
    store_req *r = chat_call_store_req(call, STORE_CHAT_LIST, chat_respond_users);
    if (r)
        store_submit(chat_store, r);
}

void chat_do_unread(chat_call *call)
{
    store_req *r = chat_call_store_req(call, STORE_UNREAD, chat_respond_result);
    if (r)
        store_submit(chat_store, r);
}

void chat_do_history(chat_call *call)
{
    int64_t peer = chat_query_int(call, "userid", 0, 1, INT64_MAX);
    if (peer < 0)
        return;
    int64_t group = chat_query_int(call, "group_id", 0, 1, INT64_MAX);
    if (group < 0)
        return;
    if (peer && group) {
        chat_call_fail(call, 400, "bad_field", "give userid or group_id, not both");
        return;
    }
    if (peer == 0 && group == 0) {
        chat_call_fail(call, 400, "missing_field", "userid (or group_id) is required");
        return;
    }
    int64_t before = chat_query_int(call, "before", 0, 0, INT64_MAX);
    if (before < 0)
        return;
    int64_t def = HISTORY_DEFAULT < chat_cfg->page_limit ? HISTORY_DEFAULT : chat_cfg->page_limit;
    int64_t limit = chat_query_int(call, "limit", def, 1, chat_cfg->page_limit);
    if (limit < 0)
        return;
    store_req *r = group ? chat_call_store_req(call, STORE_GROUP_HISTORY, chat_respond_group_result)
                         : chat_call_store_req(call, STORE_HISTORY, chat_respond_result);
    if (!r)
        return;
    r->peer_id = peer;
    r->group_id = group;
    r->before = before;
    r->limit = limit;
    store_submit(chat_store, r);
}

void chat_do_sync(chat_call *call)
{
    int64_t after = chat_query_int(call, "after", 0, 0, INT64_MAX);
    if (after < 0)
        return;
    int64_t limit = chat_query_int(call, "limit", chat_cfg->page_limit, 1, chat_cfg->page_limit);
    if (limit < 0)
        return;
    store_req *r = chat_call_store_req(call, STORE_SYNC, chat_respond_result);
    if (!r)
        return;
    r->after = after;
    r->limit = limit;
    store_submit(chat_store, r);
}

/* Whether key is a user id in its one decimal spelling ("7", not "07" or
 * "+7"), the form the store looks cursors up by. */
static bool canonical_id(const char *key)
{
    size_t n = strlen(key);
    if (n == 0 || n > 19 || key[0] == '0' || strspn(key, "0123456789") != n)
        return false;
    errno = 0;
    long long v = strtoll(key, NULL, 10);
    return errno == 0 && v > 0;
}

/* POST /chat/sync {"cursors": {"<peer id>" | "g<group id>": <seq>, ...},
 * "limit": n}: the
 * messages after each cursor (see STORE_SYNC_CURSORS). cursors may be left
 * out (every cursor 0, a new device); it is copied for the store thread. */
void chat_do_sync_cursors(chat_call *call)
{
    json_t *cursors = json_object_get(call->body, "cursors");
    if (cursors && !json_is_null(cursors)) {
        if (!json_is_object(cursors)) {
            chat_call_fail(call, 400, "bad_field",
                           "cursors must be an object of peer user id (or g<group id>) -> "
                           "last seq held");
            return;
        }
        if (json_object_size(cursors) > CURSORS_MAX) {
            chat_call_fail(call, 400, "bad_field", "cursors must name at most %d conversations",
                           CURSORS_MAX);
            return;
        }
        const char *key;
        json_t *v;
        json_object_foreach(cursors, key, v)
        {
            if (!canonical_id(key[0] == 'g' ? key + 1 : key)) {
                chat_call_fail(call, 400, "bad_field",
                               "cursors: key \"%.40s\" is not a user id (a positive decimal "
                               "integer) nor \"g\" and a group id",
                               key);
                return;
            }
            if (!json_is_integer(v) || json_integer_value(v) < 0) {
                chat_call_fail(call, 400, "bad_field",
                               "cursors: the value of %s must be a seq (an integer >= 0)", key);
                return;
            }
        }
    }
    int64_t limit = chat_cfg->page_limit;
    json_t *lim = json_object_get(call->body, "limit");
    if (lim && !json_is_null(lim)) {
        if (!json_is_integer(lim) || json_integer_value(lim) < 1 ||
            json_integer_value(lim) > chat_cfg->page_limit) {
            chat_call_fail(call, 400, "bad_field", "limit must be an integer from 1 to %lld",
                           (long long)chat_cfg->page_limit);
            return;
        }
        limit = json_integer_value(lim);
    }
    /* deleted_after: the client's delete-for-me cursor, answered "deleted" */
    json_t *del = json_object_get(call->body, "deleted_after");
    if (del && !json_is_null(del) && (!json_is_integer(del) || json_integer_value(del) < 0)) {
        chat_call_fail(call, 400, "bad_field", "deleted_after must be an integer >= 0");
        return;
    }
    store_req *r = chat_call_store_req(call, STORE_SYNC_CURSORS, chat_respond_result);
    if (!r)
        return;
    r->want_deleted = del && !json_is_null(del);
    r->deleted_after = r->want_deleted ? json_integer_value(del) : 0;
    r->cursors = json_is_object(cursors) ? json_deep_copy(cursors) : json_object();
    if (!r->cursors) {
        store_req_free(r);
        chat_call_fail(call, 500, "internal", "out of memory");
        return;
    }
    r->limit = limit;
    store_submit(chat_store, r);
}

static void read_done(store_req *r)
{
    chat_call *call = r->ctx;
    if (r->status != STORE_OK) {
        int status = r->status;
        store_req_free(r);
        if (status == STORE_NOT_FOUND)
            chat_call_fail(call, 404, "not_found", "userid: no such user");
        else
            chat_store_failed(call);
        return;
    }
    int64_t peer = r->peer_id;
    json_int_t total = json_integer_value(json_object_get(r->result, "total"));
    json_int_t last_read = json_integer_value(json_object_get(r->result, "last_read_id"));
    /* Only a read that read something is news: otherwise anyone could push
     * receipts, as often as they like, to any user they never talked to. */
    bool changed = json_is_true(json_object_get(r->result, "changed"));
    store_req_free(r);
    if (changed) {
        json_t *read =
            json_pack("{s:s,s:I,s:I}", "type", "read", "userid", (json_int_t)peer, "total", total);
        chat_push_to_user(call->uid, read, call->client_id[0] ? call->client_id : NULL);
        json_decref(read);
        json_t *receipt = json_pack("{s:s,s:I,s:I}", "type", "receipt", "userid",
                                    (json_int_t)call->uid, "last_read_id", last_read);
        chat_push_to_user(peer, receipt, NULL);
        json_decref(receipt);
    }
    chat_call_ok(call, json_pack("{s:I}", "total", total));
}

static void group_read_done(store_req *r)
{
    chat_call *call = r->ctx;
    if (r->status != STORE_OK) {
        chat_group_failed(call, r);
        return;
    }
    json_int_t total = json_integer_value(json_object_get(r->result, "total"));
    bool changed = json_is_true(json_object_get(r->result, "changed"));
    int64_t group = r->group_id;
    store_req_free(r);
    /* no receipt to the other members: groups have no read receipts */
    if (changed) {
        json_t *read = json_pack("{s:s,s:I,s:I}", "type", "read", "group_id", (json_int_t)group,
                                 "total", total);
        chat_push_to_user(call->uid, read, call->client_id[0] ? call->client_id : NULL);
        json_decref(read);
    }
    chat_call_ok(call, json_pack("{s:I}", "total", total));
}

void chat_do_read(chat_call *call)
{
    json_t *group_v = json_object_get(call->body, "group_id");
    json_t *user_v = json_object_get(call->body, "userid");
    if (json_is_null(group_v)) /* a null field counts as absent */
        group_v = NULL;
    if (group_v && user_v && !json_is_null(user_v)) {
        chat_call_fail(call, 400, "bad_field", "give userid or group_id, not both");
        return;
    }
    int64_t group = 0, peer = 0;
    if (group_v)
        group = chat_want_id(call, call->body, "group_id", "a group id");
    else
        peer = chat_want_user_id(call, call->body, "userid");
    if (!group && !peer)
        return;
    if (!chat_want_self(call))
        return;
    store_req *r = group ? chat_call_store_req(call, STORE_GROUP_READ, group_read_done)
                         : chat_call_store_req(call, STORE_READ, read_done);
    if (!r)
        return;
    r->peer_id = peer;
    r->group_id = group;
    store_submit(chat_store, r);
}
