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
#include "cluster/cluster.h"

#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "chat/auth.h"
#include "core/metrics.h"
#include "gateway/gateway.h"

static void event_cache_forget(int64_t group);

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

typedef struct {
    int64_t id;
    size_t place;
} member_pos;

static int by_id_then_place(const void *a, const void *b)
{
    const member_pos *x = a, *y = b;
    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    return x->place < y->place ? -1 : x->place > y->place;
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
    size_t n = json_array_size(v), i;
    member_pos *pos = malloc((n ? n : 1) * sizeof(*pos));
    bool *repeat = calloc(n ? n : 1, sizeof(*repeat));
    json_t *ids = json_array();
    if (!pos || !repeat || !ids) {
        free(pos);
        free(repeat);
        json_decref(ids);
        chat_call_fail(call, 500, "internal", "out of memory");
        return NULL;
    }
    json_t *m;
    json_array_foreach(v, i, m)
    {
        pos[i] = (member_pos){chat_id_value(m), i};
        if (pos[i].id <= 0) {
            free(pos);
            free(repeat);
            json_decref(ids);
            chat_call_fail(call, 400, "bad_field",
                           "members[%zu] must be a user id (a positive integer)", i);
            return NULL;
        }
    }
    /* each id once, at its first place (the order is the join order): sorted
     * by (id, place), a repeat follows its first (n log n, not n^2 / 2) */
    qsort(pos, n, sizeof(*pos), by_id_then_place);
    for (i = 1; i < n; i++)
        if (pos[i].id == pos[i - 1].id)
            repeat[pos[i].place] = true;
    free(pos);
    json_array_foreach(v, i, m)
    {
        if (!repeat[i] && json_array_append_new(ids, json_integer(chat_id_value(m))) < 0) {
            free(repeat);
            json_decref(ids);
            chat_call_fail(call, 500, "internal", "out of memory");
            return NULL;
        }
    }
    free(repeat);
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
    event_cache_forget(r->group_id); /* members, roles or the group changed */
    if (cluster_enabled()) {         /* and on the other nodes */
        json_t *body = json_pack("{s:I}", "group_id", (json_int_t)r->group_id);
        if (body)
            cluster_cast_all("chat.group_changed", body);
        json_decref(body);
    }
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
    if (r->status == STORE_OK)
        chat_presence_annotate(json_object_get(r->result, "members"), "userid");
    chat_respond_group_result(r);
}

static void group_mute_done(store_req *r)
{
    chat_call *call = r->ctx;
    json_t *result = chat_group_take_result(r);
    if (!result)
        return;
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
/* The store request of a change: it posts a system message to every member,
 * so it counts against --send-rate as a message does. NULL after an
 * answer. */
static store_req *change_req(chat_call *call, store_op op)
{
    return chat_send_allowed(call) ? chat_call_store_req(call, op, group_changed) : NULL;
}

static store_req *group_req(chat_call *call, store_op op, store_done_fn done)
{
    int64_t group = chat_want_id(call, call->body, "group_id", "a group id");
    if (!group || !chat_want_self(call))
        return NULL;
    store_req *r =
        done == group_changed ? change_req(call, op) : chat_call_store_req(call, op, done);
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
    store_req *r = change_req(call, STORE_GROUP_CREATE);
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
    store_req *r = change_req(call, STORE_GROUP_ADD);
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
    store_req *r = change_req(call, STORE_GROUP_REMOVE);
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
    store_req *r = change_req(call, STORE_GROUP_UPDATE);
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
    store_req *r = change_req(call, STORE_GROUP_ROLE);
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

/* A typing indicator is sent every few seconds by every typing member, and
 * reading a group's members costs the store about as much as reading 500
 * users: each group's current member list is kept here for EVENT_CACHE_MS
 * after a read, so a burst of events costs one read. A change made through
 * this node forgets the group at once, and tells the other nodes
 * ("chat.group_changed", chat_group_remote_changed) before the change's
 * system message is pushed, so every node has forgotten the old list by
 * the time that message reaches its members (one publisher: the bus keeps
 * the order). An event sent on another node in the bus hop before that may
 * still use the old list; events are transient, nothing is stored. At most
 * EVENT_CACHE_MAX groups (ids only: 8 bytes a member). */
typedef struct event_members {
    int64_t group_id;
    uint64_t expires; /* loop time */
    size_t n;
    int64_t *ids;
    UT_hash_handle hh;
} event_members;

static event_members *event_cache;
/* Forgets so far: a membership read answered after a forget may hold the
 * list from before the change (with PostgreSQL reads run beside writes),
 * so it is used for its event but not kept. */
static uint64_t event_cache_forgets;

static void event_cache_drop(event_members *e)
{
    HASH_DEL(event_cache, e);
    free(e->ids);
    free(e);
}

/* Drops group's entry (an error answered, the entry not needed). */
static void event_cache_discard(int64_t group)
{
    event_members *e = NULL;
    HASH_FIND(hh, event_cache, &group, sizeof(group), e);
    if (e)
        event_cache_drop(e);
}

/* The group's members changed: its entry goes, and reads in flight are not
 * kept (event_cache_forgets). */
static void event_cache_forget(int64_t group)
{
    event_cache_forgets++;
    event_cache_discard(group);
}

/* Keeps the store's current member list of group. When the cache is full
 * the expired entries go first; with none expired nothing is kept. */
static void event_cache_put(int64_t group, const json_t *members)
{
    event_members *old = NULL;
    HASH_FIND(hh, event_cache, &group, sizeof(group), old);
    if (old) /* replaced by a newer read: not a change */
        event_cache_drop(old);
    uint64_t now = uv_now(chat_loop);
    if (HASH_COUNT(event_cache) >= EVENT_CACHE_MAX) {
        event_members *e, *tmp;
        HASH_ITER(hh, event_cache, e, tmp)
        {
            if (e->expires <= now)
                event_cache_drop(e);
        }
        if (HASH_COUNT(event_cache) >= EVENT_CACHE_MAX)
            return;
    }
    size_t n = json_array_size(members);
    event_members *e = calloc(1, sizeof(*e));
    int64_t *ids = n ? malloc(n * sizeof(*ids)) : NULL;
    if (!e || (n && !ids)) {
        free(e);
        free(ids);
        return; /* the next event reads the store again */
    }
    for (size_t i = 0; i < n; i++)
        ids[i] = chat_member_id(json_array_get(members, i));
    *e = (event_members){.group_id = group, .expires = now + EVENT_CACHE_MS, .n = n, .ids = ids};
    HASH_ADD(hh, event_cache, group_id, sizeof(e->group_id), e);
}

/* group's fresh member list when uid is on it; NULL: ask the store. */
static const event_members *event_cache_get(int64_t group, int64_t uid)
{
    event_members *e = NULL;
    HASH_FIND(hh, event_cache, &group, sizeof(group), e);
    if (!e)
        return NULL;
    if (e->expires <= uv_now(chat_loop)) {
        event_cache_drop(e);
        return NULL;
    }
    for (size_t i = 0; i < e->n; i++)
        if (e->ids[i] == uid)
            return e;
    return NULL;
}

json_t *chat_group_remote_changed(json_t *body, void *arg)
{
    (void)arg;
    int64_t group = chat_id_value(json_object_get(body, "group_id"));
    if (group > 0)
        event_cache_forget(group);
    return NULL;
}

void chat_group_shutdown(void)
{
    event_members *e, *tmp;
    HASH_ITER(hh, event_cache, e, tmp)
    {
        event_cache_drop(e);
    }
}

/* {"type":"event","from_id","group_id","data"}, framed once; NULL on OOM. */
static sbuf *event_frame(chat_call *call, int64_t group)
{
    json_t *data = json_object_get(call->body, "data");
    json_t *event =
        json_pack("{s:s,s:I,s:I,s:O}", "type", "event", "from_id", (json_int_t)call->uid,
                  "group_id", (json_int_t)group, "data", data ? data : json_null());
    sbuf *frame = event ? gateway_frame_json(event) : NULL;
    json_decref(event);
    if (frame)
        metrics_push(METRICS_PUSH_EVENT);
    return frame;
}

/* The membership read of an event: a current member's event goes to the
 * other members' devices; nothing is stored or queued. Only errors are
 * answered. */
static void group_event_checked(store_req *r)
{
    chat_call *call = r->ctx;
    int64_t group = r->group_id;
    if (r->status != STORE_OK) {
        event_cache_discard(group);
        chat_group_failed(call, r);
        return;
    }
    json_t *info = r->result;
    if (json_is_true(json_object_get(info, "left"))) {
        store_req_free(r);
        chat_call_fail(call, 403, "not_member", "you are not a member of this group");
        return;
    }
    if (json_is_true(json_object_get(info, "dissolved"))) { /* the group's fields are at the top */
        event_cache_discard(group);
        store_req_free(r);
        chat_call_fail(call, 409, "group_dissolved", "the group was dissolved");
        return;
    }
    json_t *members = json_object_get(info, "members");
    if (call->cache_gen == event_cache_forgets)
        event_cache_put(group, members);
    sbuf *frame = event_frame(call, group);
    if (frame) {
        chat_push_frame_to_members(frame, members, call->uid, NULL, true);
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
    const event_members *known = event_cache_get(group, call->uid);
    if (known) {
        sbuf *frame = event_frame(call, group);
        if (frame) {
            chat_push_frame_to_ids(frame, known->ids, known->n, call->uid, NULL, true);
            sbuf_unref(frame);
        }
        chat_call_free(call);
        return;
    }
    store_req *r = chat_call_store_req(call, STORE_GROUP_INFO, group_event_checked);
    if (!r)
        return;
    call->cache_gen = event_cache_forgets;
    r->group_id = group;
    store_submit(chat_store, r);
}
