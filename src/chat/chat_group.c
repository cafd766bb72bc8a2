/* chat_group: the groups of the chat service: POST /group/create, info, add,
 * remove, leave, update, role, dissolve, mute (also GET /group/info), each
 * over HTTP or as a socket "call", and group events (see chat_internal.h and
 * docs/API.md "Groups").
 *
 * Each endpoint validates every field (400 naming it), then makes one store
 * request (store.h "Groups"): the store checks membership and roles, and
 * answers with the members to tell. A change that made a system message
 * pushes it to every member's devices, framed once (the caller's own
 * device gets the answer instead); the answer is the store's result
 * without its member list.
 *
 * Group messages themselves (send, history, read, sync) are chat_message.c's:
 * they are conversations like the 1:1 ones. */
#include "chat/chat_internal.h"

#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/auth.h"
#include "core/metrics.h"
#include "gateway/gateway.h"

/* ---- validation -------------------------------------------------------- */

/* name: 1-GROUP_NAME_MAX bytes without control characters. NULL when absent
 * (after a 400 when required) or bad (after a 400; *failed). */
static const char *want_name(chat_call *call, bool required, bool *failed)
{
    const char *name =
        chat_want_string(call, call->body, "name", 1, GROUP_NAME_MAX, required, failed);
    if (!name)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (*p < 0x20 || *p == 0x7f) {
            chat_call_fail(call, 400, "bad_field", "name must not hold control characters");
            *failed = true;
            return NULL;
        }
    return name;
}

/* avatar: "" (none), an http(s) URL or a /path, at most GROUP_AVATAR_MAX
 * bytes; NULL when absent. */
static const char *want_avatar(chat_call *call, bool *failed)
{
    const char *avatar =
        chat_want_string(call, call->body, "avatar", 0, GROUP_AVATAR_MAX, false, failed);
    if (avatar && avatar[0] && !auth_url_is_safe(avatar)) {
        chat_call_fail(call, 400, "bad_field",
                       "avatar must be an http(s) URL, a /path on this server, or \"\"");
        *failed = true;
        return NULL;
    }
    return avatar;
}

/* members: an array of 1 (0 when may_be_empty) to --max-group-members user
 * ids, as integers or decimal strings. Returns a new array of integers,
 * each id once, or NULL after a 400. */
static json_t *want_members(chat_call *call, bool may_be_empty)
{
    json_t *v = json_object_get(call->body, "members");
    int64_t max = chat_cfg->max_group_members;
    if (!v) {
        chat_call_fail(call, 400, "missing_field", "members is required: an array of user ids");
        return NULL;
    }
    if (!json_is_array(v) || (!may_be_empty && json_array_size(v) == 0) ||
        (int64_t)json_array_size(v) > max) {
        chat_call_fail(call, 400, "bad_field", "members must be an array of %d to %lld user ids",
                       may_be_empty ? 0 : 1, (long long)max);
        return NULL;
    }
    json_t *ids = json_array();
    if (!ids) {
        chat_call_fail(call, 500, "internal", "out of memory");
        return NULL;
    }
    size_t i, j;
    json_t *m;
    json_array_foreach(v, i, m)
    {
        int64_t id = chat_id_value(m);
        if (id <= 0) {
            json_decref(ids);
            chat_call_fail(call, 400, "bad_field",
                           "members[%zu] must be a user id (a positive integer)", i);
            return NULL;
        }
        /* each id once: at most max^2 / 2 comparisons of integers */
        bool seen = false;
        json_t *known;
        json_array_foreach(ids, j, known) if (json_integer_value(known) == id) seen = true;
        if (!seen && json_array_append_new(ids, json_integer(id)) < 0) {
            json_decref(ids);
            chat_call_fail(call, 500, "internal", "out of memory");
            return NULL;
        }
    }
    return ids;
}

/* ---- answers ------------------------------------------------------------ */

/* A change of the group: its system message (if any) to every member named
 * by the store, the result without members to the caller. */
static void group_changed(store_req *r)
{
    chat_call *call = r->ctx;
    if (r->status != STORE_OK) {
        chat_group_failed(call, r);
        return;
    }
    json_t *result = json_incref(r->result);
    store_req_free(r);
    json_t *message = json_object_get(result, "message");
    if (json_is_object(message)) {
        char *text = json_dumps(message, JSON_COMPACT);
        if (text)
            chat_push_to_members(text, json_object_get(result, "members"), call->uid,
                                 call->client_id[0] ? call->client_id : NULL);
        free(text);
    }
    json_object_del(result, "members");
    chat_call_ok(call, result);
}

static void group_info_done(store_req *r)
{
    chat_call *call = r->ctx;
    if (r->status != STORE_OK) {
        chat_group_failed(call, r);
        return;
    }
    json_t *result = json_incref(r->result);
    store_req_free(r);
    chat_presence_annotate(json_object_get(result, "members"), "userid");
    chat_call_ok(call, result);
}

static void group_mute_done(store_req *r)
{
    chat_call *call = r->ctx;
    if (r->status != STORE_OK) {
        chat_group_failed(call, r);
        return;
    }
    json_t *result = json_incref(r->result);
    store_req_free(r);
    json_t *push = json_pack(
        "{s:s,s:O,s:O,s:O}", "type", "mute", "group_id", json_object_get(result, "group_id"),
        "muted", json_object_get(result, "muted"), "total", json_object_get(result, "total"));
    if (push)
        chat_push_to_user(call->uid, push, call->client_id[0] ? call->client_id : NULL);
    json_decref(push);
    chat_call_ok(call, result);
}

/* The store request of a group operation on body's group_id (validated
 * first, with the caller's client_id); NULL after an answer. */
static store_req *group_req(chat_call *call, store_op op, store_done_fn done)
{
    int64_t group = chat_want_id(call, call->body, "group_id", "a group id");
    if (!group || !chat_want_self(call))
        return NULL;
    store_req *r = chat_call_store_req(call, op, done);
    if (r)
        r->group_id = group;
    return r;
}

/* Copies the strings into r and submits it; answers 500 on OOM. */
static void group_submit(chat_call *call, store_req *r, const char *name, const char *avatar)
{
    if (store_req_set_str(&r->name, name) < 0 || store_req_set_str(&r->avatar, avatar) < 0) {
        store_req_free(r);
        chat_call_fail(call, 500, "internal", "out of memory");
        return;
    }
    store_submit(chat_store, r);
}

/* ---- the endpoints ------------------------------------------------------ */

void chat_do_group_create(chat_call *call)
{
    bool failed;
    const char *name = want_name(call, true, &failed);
    if (failed)
        return;
    const char *avatar = want_avatar(call, &failed);
    if (failed)
        return;
    json_t *members = want_members(call, true);
    if (!members)
        return;
    if (!chat_want_self(call)) {
        json_decref(members);
        return;
    }
    store_req *r = chat_call_store_req(call, STORE_GROUP_CREATE, group_changed);
    if (!r) {
        json_decref(members);
        return;
    }
    r->members = members;
    r->max_members = chat_cfg->max_group_members;
    group_submit(call, r, name, avatar);
}

/* POST {group_id} or GET ?group_id= */
void chat_do_group_info(chat_call *call)
{
    if (call->req && call->req->method != HTTP_POST) {
        int64_t group = chat_query_int(call, "group_id", 0, 1, INT64_MAX);
        if (group < 0)
            return;
        if (group == 0) {
            chat_call_fail(call, 400, "missing_field", "group_id is required");
            return;
        }
        store_req *r = chat_call_store_req(call, STORE_GROUP_INFO, group_info_done);
        if (!r)
            return;
        r->group_id = group;
        store_submit(chat_store, r);
        return;
    }
    store_req *r = group_req(call, STORE_GROUP_INFO, group_info_done);
    if (r)
        store_submit(chat_store, r);
}

void chat_do_group_add(chat_call *call)
{
    int64_t group = chat_want_id(call, call->body, "group_id", "a group id");
    if (!group)
        return;
    json_t *members = want_members(call, false);
    if (!members)
        return;
    if (!chat_want_self(call)) {
        json_decref(members);
        return;
    }
    store_req *r = chat_call_store_req(call, STORE_GROUP_ADD, group_changed);
    if (!r) {
        json_decref(members);
        return;
    }
    r->group_id = group;
    r->members = members;
    r->max_members = chat_cfg->max_group_members;
    store_submit(chat_store, r);
}

void chat_do_group_remove(chat_call *call)
{
    int64_t group = chat_want_id(call, call->body, "group_id", "a group id");
    if (!group)
        return;
    int64_t peer = chat_want_user_id(call, call->body, "userid");
    if (!peer || !chat_want_self(call))
        return;
    store_req *r = chat_call_store_req(call, STORE_GROUP_REMOVE, group_changed);
    if (!r)
        return;
    r->group_id = group;
    r->peer_id = peer;
    store_submit(chat_store, r);
}

void chat_do_group_leave(chat_call *call)
{
    store_req *r = group_req(call, STORE_GROUP_LEAVE, group_changed);
    if (r)
        store_submit(chat_store, r);
}

void chat_do_group_update(chat_call *call)
{
    int64_t group = chat_want_id(call, call->body, "group_id", "a group id");
    if (!group)
        return;
    bool failed;
    const char *name = want_name(call, false, &failed);
    if (failed)
        return;
    const char *avatar = want_avatar(call, &failed);
    if (failed)
        return;
    if (!name && !avatar) {
        chat_call_fail(call, 400, "missing_field", "name or avatar is required");
        return;
    }
    if (!chat_want_self(call))
        return;
    store_req *r = chat_call_store_req(call, STORE_GROUP_UPDATE, group_changed);
    if (!r)
        return;
    r->group_id = group;
    group_submit(call, r, name, avatar);
}

void chat_do_group_role(chat_call *call)
{
    int64_t group = chat_want_id(call, call->body, "group_id", "a group id");
    if (!group)
        return;
    int64_t peer = chat_want_user_id(call, call->body, "userid");
    if (!peer)
        return;
    bool failed;
    const char *role = chat_want_string(call, call->body, "role", 1, 16, true, &failed);
    if (failed)
        return;
    int action = strcmp(role, "member") == 0  ? STORE_GROUP_ROLE_MEMBER
                 : strcmp(role, "admin") == 0 ? STORE_GROUP_ROLE_ADMIN
                 : strcmp(role, "owner") == 0 ? STORE_GROUP_ROLE_OWNER
                                              : -1;
    if (action < 0) {
        chat_call_fail(call, 400, "bad_field", "role must be \"admin\", \"member\" or \"owner\"");
        return;
    }
    if (!chat_want_self(call))
        return;
    store_req *r = chat_call_store_req(call, STORE_GROUP_ROLE, group_changed);
    if (!r)
        return;
    r->group_id = group;
    r->peer_id = peer;
    r->action = action;
    store_submit(chat_store, r);
}

void chat_do_group_dissolve(chat_call *call)
{
    store_req *r = group_req(call, STORE_GROUP_DISSOLVE, group_changed);
    if (r)
        store_submit(chat_store, r);
}

void chat_do_group_mute(chat_call *call)
{
    json_t *muted = json_object_get(call->body, "muted");
    int64_t group = chat_want_id(call, call->body, "group_id", "a group id");
    if (!group)
        return;
    if (!json_is_boolean(muted)) {
        chat_call_fail(call, 400, muted ? "bad_field" : "missing_field",
                       "muted is required: true or false");
        return;
    }
    if (!chat_want_self(call))
        return;
    store_req *r = chat_call_store_req(call, STORE_GROUP_MUTE, group_mute_done);
    if (!r)
        return;
    r->group_id = group;
    r->action = json_is_true(muted) ? 1 : 0;
    store_submit(chat_store, r);
}

/* ---- group events --------------------------------------------------------- */

/* The membership read of an event: a current member's event goes to the
 * other members' devices, {"type":"event","from_id","group_id","data"},
 * framed once; nothing is stored or queued. Only errors are answered. */
static void group_event_checked(store_req *r)
{
    chat_call *call = r->ctx;
    if (r->status != STORE_OK) {
        chat_group_failed(call, r);
        return;
    }
    json_t *info = r->result;
    if (json_is_true(json_object_get(info, "left"))) {
        store_req_free(r);
        chat_call_fail(call, 403, "not_member", "you are not a member of this group");
        return;
    }
    if (json_is_true(json_object_get(json_object_get(info, "group"), "dissolved")) ||
        json_is_true(json_object_get(info, "dissolved"))) {
        store_req_free(r);
        chat_call_fail(call, 409, "group_dissolved", "the group was dissolved");
        return;
    }
    json_t *data = json_object_get(call->body, "data");
    json_t *event =
        json_pack("{s:s,s:I,s:I,s:O}", "type", "event", "from_id", (json_int_t)call->uid,
                  "group_id", (json_int_t)r->group_id, "data", data ? data : json_null());
    sbuf *frame = event ? gateway_frame_json(event) : NULL;
    json_decref(event);
    if (frame) {
        metrics_push(METRICS_PUSH_EVENT);
        chat_push_frame_to_members(frame, json_object_get(info, "members"), call->uid, NULL, true);
        sbuf_unref(frame);
    }
    store_req_free(r);
    chat_call_free(call);
}

void chat_do_group_event(chat_call *call)
{
    int64_t group = chat_want_id(call, call->body, "group_id", "a group id");
    if (!group)
        return;
    store_req *r = chat_call_store_req(call, STORE_GROUP_INFO, group_event_checked);
    if (!r)
        return;
    r->group_id = group;
    store_submit(chat_store, r);
}
