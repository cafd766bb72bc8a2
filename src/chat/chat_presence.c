/* chat_presence: who is online, told to the users who share a conversation
 * with them (see chat_internal.h and docs/API.md "Presence").
 *
 * A user is online while at least one socket is bound to them through the
 * chat service (chat_bind.c tells chat_presence_bound; the registry's
 * unbound hook tells the other side). When the last one closes the user
 * stays online for --presence-grace ms, so a reload, which closes a socket
 * and opens another, changes nothing and costs nothing. Then the user is
 * offline, and last_seen (the time the last socket closed) is stored.
 *
 * Cost: a change marks its user dirty; once per loop pass (a check handle,
 * active only while something is dirty) each dirty user costs one read of
 * their peers on the storage thread (never on the loop thread) and one
 * frame, pushed to the peers that have a socket here. A user changing
 * twice in one pass is told once, with the state at the end of the pass.
 * Answers of reads that a newer change overtook are dropped (a version
 * number per user), so peers never end on a stale state even when reads
 * complete out of order (PostgreSQL's reader threads).
 *
 * The table holds the users with sockets here, in grace, or with a read in
 * flight: memory is bounded by the bound users, not by every user ever seen.
 *
 * Cluster: each node keeps this table for the sockets it holds, and its
 * pushes reach the peers' sockets on every node (gateway_push_to_uid). When
 * a grace ends the node first asks the nodes holding the uid (gw.is_uid_online
 * on the uid's channel, as the webhook does): if one does, the user is still
 * online there and this node forgets them without a word; only when none
 * does (or the bus is down, or nobody answers in time) is the user offline.
 * docs/CLUSTER.md "Presence" says what this leaves: duplicate pushes, never a
 * false offline while a device is connected somewhere.
 *
 * Everything runs on the loop thread. */
#include "chat/chat_internal.h"

#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "chat/auth.h"
#include "cluster/cluster.h"
#include "core/log.h"
#include "gateway/gateway.h"
#include "gateway/registry.h"

typedef struct presence {
    int64_t uid;
    uint32_t local;       /* sockets bound here through the chat service */
    uint32_t reads;       /* peer reads in flight for this user */
    uint64_t version;     /* one more at each change of online */
    bool online;          /* the state peers are told */
    bool dirty;           /* in the dirty list */
    int64_t left_ms;      /* wall clock when the last socket closed */
    uint64_t ask;         /* the cluster question in flight (0 = none) */
    uint64_t grace_until; /* loop time the grace ends; 0 = not in grace */
    struct presence *grace_prev, *grace_next;
    struct presence *dirty_next;
    UT_hash_handle hh;
} presence;

/* A peer read in flight: the state it tells. */
typedef struct presence_note {
    int64_t uid;
    uint64_t version;
    bool online;
    int64_t last_seen;
} presence_note;

static presence *table;
static presence *grace_head, *grace_tail; /* by grace_until (the grace is one value) */
static presence *dirty_head;
static uv_timer_t grace_timer;
static uv_check_t flush_check;
static uint64_t last_ask; /* ids of cluster questions, never reused */
static bool started, stopped;

#define ASK_TIMEOUT_MS 1000 /* how long the other nodes have to say "held here" */

static void flush_cb(uv_check_t *h);
static void grace_cb(uv_timer_t *t);

static presence *presence_find(int64_t uid)
{
    presence *p = NULL;
    HASH_FIND(hh, table, &uid, sizeof(uid), p);
    return p;
}

/* Frees p once nothing refers to it: no socket, no grace, offline, told. */
static void presence_maybe_free(presence *p)
{
    if (p->local || p->reads || p->online || p->dirty || p->grace_until)
        return;
    HASH_DEL(table, p);
    free(p);
}

static void grace_unlink(presence *p)
{
    if (p->grace_prev)
        p->grace_prev->grace_next = p->grace_next;
    else
        grace_head = p->grace_next;
    if (p->grace_next)
        p->grace_next->grace_prev = p->grace_prev;
    else
        grace_tail = p->grace_prev;
    p->grace_prev = p->grace_next = NULL;
    p->grace_until = 0;
}

static void mark_dirty(presence *p)
{
    p->version++;
    if (!p->dirty) {
        p->dirty = true;
        p->dirty_next = dirty_head;
        dirty_head = p;
    }
    uv_check_start(&flush_check, flush_cb);
}

static void grace_arm(void)
{
    if (!grace_head) {
        uv_timer_stop(&grace_timer);
        return;
    }
    uint64_t now = uv_now(chat_loop);
    uint64_t due = grace_head->grace_until;
    uv_timer_start(&grace_timer, grace_cb, due > now ? due - now : 0, 0);
}

/* ---- telling the peers ---------------------------------------------------- */

static void last_seen_written(store_req *r)
{
    if (r->status != STORE_OK && r->status != STORE_NOT_FOUND)
        log_warn("presence: last_seen of user %lld not stored", (long long)r->user_id);
    store_req_free(r);
}

static void store_last_seen(int64_t uid, int64_t when)
{
    store_req *r = store_req_new(STORE_USER_LAST_SEEN, last_seen_written, NULL);
    if (!r)
        return;
    r->user_id = uid;
    r->time = when;
    store_submit(chat_store, r);
}

static void peers_read(store_req *r)
{
    presence_note *n = r->ctx;
    presence *p = presence_find(n->uid);
    if (p) {
        p->reads--;
        /* a newer change is on its way: this one is stale */
        bool stale = p->version != n->version;
        presence_maybe_free(p);
        if (stale)
            goto done;
    }
    if (r->status != STORE_OK || stopped)
        goto done;
    bool hide = json_is_true(json_object_get(r->result, "hide_last_seen"));
    int64_t seen =
        n->online ? json_integer_value(json_object_get(r->result, "last_seen")) : n->last_seen;
    json_t *msg =
        json_pack("{s:s, s:I, s:b, s:o}", "type", "presence", "uid", (json_int_t)n->uid, "online",
                  n->online, "last_seen", !hide && seen > 0 ? json_integer(seen) : json_null());
    sbuf *frame = msg ? gateway_frame_json(msg) : NULL;
    json_decref(msg);
    if (!frame)
        goto done;
    /* a peer with no socket here costs a hash lookup; in a cluster one
     * publish reaches every node that holds some of them (the members of a
     * big group are one bus message, not one each) */
    chat_push_frame_to_members(frame, json_object_get(r->result, "peers"), n->uid, NULL, true);
    sbuf_unref(frame);
done:
    free(n);
    store_req_free(r);
}

/* An offline change: its last_seen is committed, so the peers told now read
 * it (with PostgreSQL a read runs on another connection than the write: a
 * read submitted beside the write could miss it). */
static void offline_written(store_req *w)
{
    presence_note *n = w->ctx;
    if (w->status != STORE_OK && w->status != STORE_NOT_FOUND)
        log_warn("presence: last_seen of user %lld not stored", (long long)w->user_id);
    store_req_free(w);
    store_req *r = store_req_new(STORE_PRESENCE_PEERS, peers_read, n);
    if (!r) {
        presence *p = presence_find(n->uid);
        if (p) {
            p->reads--;
            presence_maybe_free(p);
        }
        free(n);
        return;
    }
    r->user_id = n->uid;
    store_submit(chat_store, r);
}

/* Once per loop pass, after I/O: one peer read per user that changed (an
 * offline one after its last_seen is written). */
static void flush_cb(uv_check_t *h)
{
    uv_check_stop(h);
    presence *p = dirty_head;
    dirty_head = NULL;
    while (p) {
        presence *next = p->dirty_next;
        p->dirty = false;
        p->dirty_next = NULL;
        presence_note *n = malloc(sizeof(*n));
        store_req *r = !n          ? NULL
                       : p->online ? store_req_new(STORE_PRESENCE_PEERS, peers_read, n)
                                   : store_req_new(STORE_USER_LAST_SEEN, offline_written, n);
        if (r) {
            *n = (presence_note){p->uid, p->version, p->online, p->left_ms};
            r->user_id = p->uid;
            r->time = p->left_ms; /* STORE_USER_LAST_SEEN */
            p->reads++;
            store_submit(chat_store, r);
        } else {
            free(n);
            log_warn("presence: out of memory; peers of user %lld not told", (long long)p->uid);
        }
        presence_maybe_free(p);
        p = next;
    }
}

static void go_offline(presence *p)
{
    p->online = false;
    mark_dirty(p); /* flush_cb writes last_seen, then tells the peers */
}

/* ---- the cluster question ------------------------------------------------- */

typedef struct presence_ask {
    int64_t uid;
    uint64_t id;
} presence_ask;

/* The other nodes' answers to gw.is_uid_online: [true] from a node that
 * holds a device of the uid (an error or null part says nothing). */
static void ask_done(json_t *partials, bool complete, void *ctx)
{
    (void)complete; /* a silent node may be a dead one: it holds nobody */
    presence_ask *a = ctx;
    bool held = false;
    size_t i;
    json_t *part;
    json_array_foreach(partials, i, part)
    {
        if (json_is_array(part) && json_is_true(json_array_get(part, 0)))
            held = true;
    }
    json_decref(partials);
    presence *p = started && !stopped ? presence_find(a->uid) : NULL;
    /* a bind here since the question (ask reset) or a newer question: stale */
    if (p && p->ask == a->id) {
        p->ask = 0;
        if (held) {
            /* online on another node, which tells the peers when that ends;
             * nothing changed for anyone, and nothing is stored */
            p->online = false;
            presence_maybe_free(p);
        } else {
            go_offline(p);
        }
    }
    free(a);
}

/* p's grace ended: is a device of it connected on another node? Only the
 * nodes holding the uid are subscribed to its channel, so with none the
 * call ends at once. Returns -1 when it could not be asked (bus down). */
static int ask_cluster(presence *p)
{
    char uid[24];
    chat_uid_string(p->uid, uid, sizeof(uid));
    size_t len = strlen(uid);
    presence_ask *a = malloc(sizeof(*a));
    json_t *q = json_pack("{s:[s#]}", "uid", uid, (int)len);
    cluster_call *cc = a && q ? cluster_call_new("gw.is_uid_online", ask_done, a) : NULL;
    if (!cc || cluster_call_uid(cc, uid, len, q) < 0) {
        json_decref(q);
        if (cc)
            cluster_call_free(cc);
        free(a);
        return -1;
    }
    json_decref(q);
    *a = (presence_ask){p->uid, ++last_ask};
    p->ask = a->id;
    if (cluster_call_start(cc, ASK_TIMEOUT_MS) < 0) { /* freed the call, not a */
        p->ask = 0;
        free(a);
        return -1;
    }
    return 0;
}

/* The grace of the oldest users ended: they are offline now, unless (in a
 * cluster) another node still holds them. */
static void grace_cb(uv_timer_t *t)
{
    (void)t;
    uint64_t now = uv_now(chat_loop);
    while (grace_head && grace_head->grace_until <= now) {
        presence *p = grace_head;
        grace_unlink(p);
        if (!cluster_enabled() || ask_cluster(p) < 0)
            go_offline(p);
    }
    grace_arm();
}

/* ---- the hooks -------------------------------------------------------------- */

void chat_presence_bound(int64_t uid)
{
    if (!started || stopped)
        return;
    presence *p = presence_find(uid);
    if (!p) {
        p = calloc(1, sizeof(*p));
        if (!p) {
            log_warn("presence: out of memory");
            return;
        }
        p->uid = uid;
        HASH_ADD(hh, table, uid, sizeof(p->uid), p);
    }
    p->local++;
    p->ask = 0;           /* the answer to a question in flight no longer matters */
    if (p->grace_until) { /* back within the grace: nothing changed for anyone */
        grace_unlink(p);
        grace_arm();
    }
    if (!p->online) {
        p->online = true;
        mark_dirty(p);
    }
}

/* The registry's hook: a socket bound through the chat service left uid. */
static void chat_unbound(const char *uid, size_t len)
{
    if (!started || stopped)
        return;
    char buf[24];
    if (len >= sizeof(buf))
        return;
    memcpy(buf, uid, len);
    buf[len] = '\0';
    presence *p = presence_find(strtoll(buf, NULL, 10));
    if (!p || p->local == 0)
        return;
    if (--p->local > 0)
        return;
    p->left_ms = auth_now_ms();
    uint64_t grace = (uint64_t)chat_cfg->presence_grace;
    if (grace == 0) {
        if (!cluster_enabled() || ask_cluster(p) < 0)
            go_offline(p);
        return;
    }
    p->grace_until = uv_now(chat_loop) + grace;
    /* appended: with one grace for all, the list stays in deadline order
     * (a SIGHUP that shortens it makes the newest wait at most the old one) */
    p->grace_prev = grace_tail;
    if (grace_tail)
        grace_tail->grace_next = p;
    else
        grace_head = p;
    grace_tail = p;
    if (grace_head == p)
        grace_arm();
}

bool chat_presence_online(int64_t uid)
{
    presence *p = presence_find(uid);
    return p && p->online;
}

/* Adds "online" to each user object of arr (its id under key); objects
 * without that key (the group items of a chat list) are left alone. */
void chat_presence_annotate(json_t *arr, const char *key)
{
    json_t *v;
    size_t i;
    json_array_foreach(arr, i, v)
    {
        json_t *id = json_object_get(v, key);
        if (json_is_integer(id))
            json_object_set_new(v, "online",
                                json_boolean(chat_presence_online(json_integer_value(id))));
    }
}

/* ---- POST /user/settings ----------------------------------------------- */

void chat_do_settings(chat_call *call)
{
    json_t *hide = json_object_get(call->body, "hide_last_seen");
    if (!json_is_boolean(hide)) {
        chat_call_fail(call, 400, hide ? "bad_field" : "missing_field",
                       "hide_last_seen is required: true or false");
        return;
    }
    store_req *r = chat_call_store_req(call, STORE_USER_SETTINGS, chat_respond_result);
    if (!r)
        return;
    r->action = json_is_true(hide) ? 1 : 0;
    store_submit(chat_store, r);
}

/* ---- start and stop ---------------------------------------------------- */

void chat_presence_init(void)
{
    uv_timer_init(chat_loop, &grace_timer);
    uv_check_init(chat_loop, &flush_check);
    /* neither keeps the loop alive: a shutdown does not wait for a grace */
    uv_unref((uv_handle_t *)&grace_timer);
    uv_unref((uv_handle_t *)&flush_check);
    registry_set_chat_unbound_hook(chat_unbound);
    started = true;
    stopped = false;
}

/* Shutting down: the users online here were seen until now (their
 * last_seen is written before the store closes); nothing is told. */
void chat_presence_stop(void)
{
    if (!started || stopped)
        return;
    stopped = true;
    int64_t now = auth_now_ms();
    presence *p, *tmp;
    HASH_ITER(hh, table, p, tmp)
    {
        if (p->online)
            store_last_seen(p->uid, p->local ? now : p->left_ms);
    }
}

void chat_presence_shutdown(void)
{
    if (!started)
        return;
    stopped = true;
    registry_set_chat_unbound_hook(NULL);
    uv_timer_stop(&grace_timer);
    uv_check_stop(&flush_check);
    if (!uv_is_closing((uv_handle_t *)&grace_timer))
        uv_close((uv_handle_t *)&grace_timer, NULL);
    if (!uv_is_closing((uv_handle_t *)&flush_check))
        uv_close((uv_handle_t *)&flush_check, NULL);
    presence *p, *tmp;
    HASH_ITER(hh, table, p, tmp)
    {
        HASH_DEL(table, p);
        free(p);
    }
    grace_head = grace_tail = dirty_head = NULL;
    started = false;
}
