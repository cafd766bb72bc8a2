/* gateway_api: the server API for app backends, POST /gateway/<method>,
 * the HTTP form of GatewayWorker's Gateway:: class (see docs/API.md). */
#include "gateway/gateway_api.h"

#include <http_parser.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster.h"
#include "core/metrics.h"
#include "gateway/gateway.h"
#include "gateway/registry.h"
#include "gwcompat/php_serial.h"
#include "net/server.h"
#include "ws/ws.h"
#include "ws/ws_frame.h"

#define SESSION_MAX 4096 /* bytes of a serialized session */

/* An error a method answers with (the first one found). */
typedef struct api_error {
    int status;
    const char *code;
    char msg[240];
} api_error;

static void api_fail(api_error *err, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void api_fail(api_error *err, int status, const char *code, const char *fmt, ...)
{
    if (err->status)
        return;
    err->status = status;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
}

static json_t *error_json(const api_error *err)
{
    return json_pack("{s:{s:i,s:s,s:s}}", "error", "status", err->status, "code", err->code, "msg",
                     err->msg);
}

/* Reads an error written by error_json (a remote node's answer). */
static bool error_from_json(json_t *v, api_error *err)
{
    json_t *e = json_object_get(v, "error");
    if (!json_is_object(e))
        return false;
    static char code[40]; /* api_error.code points at static text */
    snprintf(code, sizeof(code), "%s", json_string_value(json_object_get(e, "code")) ?: "internal");
    api_fail(err, (int)json_integer_value(json_object_get(e, "status")) ?: 500, code, "%s",
             json_string_value(json_object_get(e, "msg")) ?: "a node failed");
    return true;
}

/* One uid, group or client_id argument, as text. */
typedef struct name_arg {
    const char *s;
    size_t len;
    char num[24]; /* the decimal form of an integer argument */
} name_arg;

typedef struct name_list {
    name_arg *items;
    size_t n;
    bool is_list;
} name_list;

enum name_kind { NAME_CLIENT_ID, NAME_UID, NAME_GROUP };

static bool name_from_json(json_t *v, enum name_kind kind, name_arg *out)
{
    if (json_is_string(v)) {
        out->s = json_string_value(v);
        out->len = json_string_length(v);
    } else if (json_is_integer(v) && kind != NAME_CLIENT_ID) {
        int n = snprintf(out->num, sizeof(out->num), "%lld", (long long)json_integer_value(v));
        out->s = out->num;
        out->len = (size_t)n;
    } else {
        return false;
    }
    if (kind == NAME_CLIENT_ID)
        return out->len > 0 && out->len <= 64 && !memchr(out->s, ' ', out->len);
    return out->len > 0 && out->len <= REGISTRY_NAME_MAX;
}

/* Reads field as one name or a list of names. Sets err (400) and returns
 * -1 on bad input; on success the caller frees out->items. */
static int get_names(json_t *body, const char *field, enum name_kind kind, bool required,
                     name_list *out, api_error *err)
{
    static const char *const what[] = {"a client_id string",
                                       "a uid: a string of 1-128 bytes or an integer",
                                       "a group: a string of 1-128 bytes or an integer"};
    memset(out, 0, sizeof(*out));
    json_t *v = json_object_get(body, field);
    if (!v || json_is_null(v)) {
        if (!required)
            return 0;
        api_fail(err, 400, "missing_field", "%s is required", field);
        return -1;
    }
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    out->is_list = json_is_array(v);
    out->items = calloc(n ? n : 1, sizeof(*out->items));
    if (!out->items) {
        api_fail(err, 500, "internal", "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *item = out->is_list ? json_array_get(v, i) : v;
        if (!name_from_json(item, kind, &out->items[i])) {
            api_fail(err, 400, "bad_field", "%s must be %s%s", field, what[kind],
                     out->is_list ? " (or a list of them)" : "");
            free(out->items);
            out->items = NULL;
            return -1;
        }
    }
    out->n = n;
    return 0;
}

/* The frame for a data field: a string is sent as is, anything else as its
 * JSON text. NULL with err set. */
static sbuf *get_data_frame(json_t *body, bool required, api_error *err)
{
    json_t *data = json_object_get(body, "data");
    if (!data) {
        if (required)
            api_fail(err, 400, "missing_field", "data is required");
        return NULL;
    }
    sbuf *frame = json_is_string(data)
                      ? gateway_frame_text(json_string_value(data), json_string_length(data))
                      : gateway_frame_json(data);
    if (!frame)
        api_fail(err, 500, "internal", "out of memory");
    return frame;
}

static void mark_excluded(name_list *ex, bool on)
{
    for (size_t i = 0; i < ex->n; i++) {
        conn *c = registry_find(ex->items[i].s, ex->items[i].len);
        if (c)
            gateway_exclude_mark(c, on);
    }
}

/* ---- each method's part on one node -------------------------------------
 *
 * A method runs on this node (its local function) and, in a cluster, on the
 * other nodes that can hold what it names; each node's part is merged into
 * one answer (merge_parts). Parts are:
 *   a count (sends, close, counts), summed;
 *   for a change to named client_ids, a list with one entry per client_id:
 *     0 not here, 1 done, or an error object;
 *   for a query per name, a list with one entry per name (or values to
 *     gather). */

typedef json_t *(*api_local_fn)(json_t *body, api_error *err);

static json_t *m_send_to_all(json_t *body, api_error *err)
{
    name_list only, ex;
    if (get_names(body, "client_ids", NAME_CLIENT_ID, false, &only, err) < 0)
        return NULL;
    if (get_names(body, "exclude_client_ids", NAME_CLIENT_ID, false, &ex, err) < 0) {
        free(only.items);
        return NULL;
    }
    sbuf *frame = get_data_frame(body, true, err);
    size_t sent = 0;
    if (frame) {
        metrics_push(METRICS_PUSH_API);
        mark_excluded(&ex, true);
        if (only.items) {
            for (size_t i = 0; i < only.n; i++) {
                conn *c = registry_find(only.items[i].s, only.items[i].len);
                if (c && !(c->flags & CONN_EXCLUDED))
                    sent += gateway_send_to_conn(c, frame);
            }
        } else {
            sent = gateway_send_to_all(frame);
        }
        mark_excluded(&ex, false);
        sbuf_unref(frame);
    }
    free(only.items);
    free(ex.items);
    return frame ? json_integer((json_int_t)sent) : NULL;
}

static json_t *m_send_to_client(json_t *body, api_error *err)
{
    name_list ids;
    if (get_names(body, "client_id", NAME_CLIENT_ID, true, &ids, err) < 0)
        return NULL;
    sbuf *frame = get_data_frame(body, true, err);
    size_t sent = 0;
    for (size_t i = 0; frame && i < ids.n; i++) {
        conn *c = registry_find(ids.items[i].s, ids.items[i].len);
        if (c)
            sent += gateway_send_to_conn(c, frame);
    }
    free(ids.items);
    if (!frame)
        return NULL;
    metrics_push(METRICS_PUSH_API);
    sbuf_unref(frame);
    return json_integer((json_int_t)sent);
}

static json_t *m_send_to_uid(json_t *body, api_error *err)
{
    name_list uids;
    if (get_names(body, "uid", NAME_UID, true, &uids, err) < 0)
        return NULL;
    sbuf *frame = get_data_frame(body, true, err);
    size_t sent = 0;
    for (size_t i = 0; frame && i < uids.n; i++)
        sent += gateway_send_to_uid(uids.items[i].s, uids.items[i].len, frame, NULL);
    free(uids.items);
    if (!frame)
        return NULL;
    metrics_push(METRICS_PUSH_API);
    sbuf_unref(frame);
    return json_integer((json_int_t)sent);
}

static json_t *m_send_to_group(json_t *body, api_error *err)
{
    name_list gs, ex;
    if (get_names(body, "group", NAME_GROUP, true, &gs, err) < 0)
        return NULL;
    if (get_names(body, "exclude_client_ids", NAME_CLIENT_ID, false, &ex, err) < 0) {
        free(gs.items);
        return NULL;
    }
    sbuf *frame = get_data_frame(body, true, err);
    size_t sent = 0;
    if (frame) {
        metrics_push(METRICS_PUSH_API);
        mark_excluded(&ex, true);
        for (size_t i = 0; i < gs.n; i++)
            sent += gateway_send_to_group(gs.items[i].s, gs.items[i].len, frame);
        mark_excluded(&ex, false);
        sbuf_unref(frame);
    }
    free(gs.items);
    free(ex.items);
    return frame ? json_integer((json_int_t)sent) : NULL;
}

static json_t *m_close_client(json_t *body, api_error *err)
{
    name_list ids;
    if (get_names(body, "client_id", NAME_CLIENT_ID, true, &ids, err) < 0)
        return NULL;
    sbuf *frame = NULL;
    if (json_object_get(body, "data") && !(frame = get_data_frame(body, false, err))) {
        free(ids.items);
        return NULL;
    }
    size_t closed = 0;
    for (size_t i = 0; i < ids.n; i++) {
        conn *c = registry_find(ids.items[i].s, ids.items[i].len);
        if (!c)
            continue;
        if (frame)
            gateway_send_to_conn(c, frame);
        ws_close(c, WS_CLOSE_POLICY, "closed by server");
        closed++;
    }
    sbuf_unref(frame);
    free(ids.items);
    return json_integer((json_int_t)closed);
}

/* Shared by bind_uid, unbind_uid, join_group, leave_group: op runs for
 * every (client here, name) pair. The part: per client_id 0 (not here), 1
 * (done) or an error. */
static json_t *client_name_op(json_t *body, const char *field, enum name_kind kind,
                              int (*op)(conn *, const char *, size_t), api_error *err)
{
    name_list ids, names;
    if (get_names(body, "client_id", NAME_CLIENT_ID, true, &ids, err) < 0)
        return NULL;
    if (get_names(body, field, kind, true, &names, err) < 0) {
        free(ids.items);
        return NULL;
    }
    json_t *part = json_array();
    for (size_t i = 0; i < ids.n; i++) {
        conn *c = registry_find(ids.items[i].s, ids.items[i].len);
        api_error e = {0};
        for (size_t j = 0; c && j < names.n && !e.status; j++) {
            int rc = op(c, names.items[j].s, names.items[j].len);
            if (rc == REGISTRY_FULL)
                api_fail(&e, 429, "too_many_connections",
                         "%s '%.*s' already has %lld connections (--max-conns-per-user)", field,
                         (int)names.items[j].len, names.items[j].s,
                         (long long)conn_server(c)->cfg->max_conns_per_user);
            else if (rc < 0)
                api_fail(&e, 500, "internal", "out of memory");
        }
        json_array_append_new(part, e.status ? error_json(&e) : json_integer(c ? 1 : 0));
    }
    free(ids.items);
    free(names.items);
    return part;
}

/* The per-user cap applies here too: in the usual flow the backend binds
 * whatever client_id a signed-in browser hands it, so without the cap a user
 * could still pile up connections through the backend. A refused socket is
 * left open and unbound; the backend decides what to do with it. The cap
 * counts this node's connections of the uid (see docs/CLUSTER.md). */
static int op_bind(conn *c, const char *s, size_t len)
{
    int64_t cap = conn_server(c)->cfg->max_conns_per_user;
    return registry_bind_uid(c, s, len, (uint32_t)cap);
}

static int op_unbind(conn *c, const char *s, size_t len)
{
    if (c->uid && c->uid->len == len && memcmp(c->uid->name, s, len) == 0)
        registry_unbind_uid(c);
    return 0;
}

static int op_join(conn *c, const char *s, size_t len)
{
    return registry_join_group(c, s, len);
}

static int op_leave(conn *c, const char *s, size_t len)
{
    registry_leave_group(c, s, len);
    return 0;
}

static json_t *m_bind_uid(json_t *body, api_error *err)
{
    return client_name_op(body, "uid", NAME_UID, op_bind, err);
}

static json_t *m_unbind_uid(json_t *body, api_error *err)
{
    return client_name_op(body, "uid", NAME_UID, op_unbind, err);
}

static json_t *m_join_group(json_t *body, api_error *err)
{
    return client_name_op(body, "group", NAME_GROUP, op_join, err);
}

static json_t *m_leave_group(json_t *body, api_error *err)
{
    return client_name_op(body, "group", NAME_GROUP, op_leave, err);
}

static json_t *m_ungroup(json_t *body, api_error *err)
{
    name_list gs;
    if (get_names(body, "group", NAME_GROUP, true, &gs, err) < 0)
        return NULL;
    for (size_t i = 0; i < gs.n; i++)
        registry_ungroup(gs.items[i].s, gs.items[i].len);
    free(gs.items);
    return json_true();
}

static json_t *m_is_online(json_t *body, api_error *err)
{
    name_list ids;
    if (get_names(body, "client_id", NAME_CLIENT_ID, true, &ids, err) < 0)
        return NULL;
    json_t *part = json_array();
    for (size_t i = 0; i < ids.n; i++)
        json_array_append_new(
            part, json_boolean(registry_find(ids.items[i].s, ids.items[i].len) != NULL));
    free(ids.items);
    return part;
}

static json_t *m_is_uid_online(json_t *body, api_error *err)
{
    name_list uids;
    if (get_names(body, "uid", NAME_UID, true, &uids, err) < 0)
        return NULL;
    json_t *part = json_array();
    for (size_t i = 0; i < uids.n; i++)
        json_array_append_new(
            part, json_boolean(registry_find_uid(uids.items[i].s, uids.items[i].len) != NULL));
    free(uids.items);
    return part;
}

static json_t *m_get_client_id_by_uid(json_t *body, api_error *err)
{
    name_list uids;
    if (get_names(body, "uid", NAME_UID, true, &uids, err) < 0)
        return NULL;
    json_t *part = json_array();
    for (size_t i = 0; i < uids.n; i++) {
        uid_entry *e = registry_find_uid(uids.items[i].s, uids.items[i].len);
        for (conn *c = e ? e->conns : NULL; c; c = c->uid_next)
            json_array_append_new(part, json_string(c->client_id));
    }
    free(uids.items);
    return part;
}

static json_t *m_get_uid_by_client_id(json_t *body, api_error *err)
{
    name_list ids;
    if (get_names(body, "client_id", NAME_CLIENT_ID, true, &ids, err) < 0)
        return NULL;
    json_t *part = json_array();
    for (size_t i = 0; i < ids.n; i++) {
        conn *c = registry_find(ids.items[i].s, ids.items[i].len);
        json_array_append_new(part, (c && c->uid) ? json_stringn(c->uid->name, c->uid->len)
                                                  : json_null());
    }
    free(ids.items);
    return part;
}

static json_t *m_get_all_client_id_count(json_t *body, api_error *err)
{
    (void)body;
    (void)err;
    return json_integer((json_int_t)registry_client_count());
}

static void list_uid(uid_entry *e, void *arg)
{
    json_array_append_new(arg, json_stringn(e->name, e->len));
}

/* Alone, the count; in a cluster the uids themselves, since a user with
 * devices on two nodes counts once (GatewayWorker's client does the same:
 * it asks every gateway for its uids). */
static json_t *m_get_all_uid_count(json_t *body, api_error *err)
{
    (void)body;
    (void)err;
    if (!cluster_enabled())
        return json_integer((json_int_t)registry_uid_count());
    json_t *part = json_array();
    registry_foreach_uid(list_uid, part);
    return part;
}

static json_t *m_get_client_id_count_by_group(json_t *body, api_error *err)
{
    name_list gs;
    if (get_names(body, "group", NAME_GROUP, true, &gs, err) < 0)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < gs.n; i++) {
        group_entry *g = registry_find_group(gs.items[i].s, gs.items[i].len);
        n += g ? g->count : 0;
    }
    free(gs.items);
    return json_integer((json_int_t)n);
}

static json_t *m_get_uid_list_by_group(json_t *body, api_error *err)
{
    name_list gs;
    if (get_names(body, "group", NAME_GROUP, true, &gs, err) < 0)
        return NULL;
    json_t *seen = json_object(); /* distinct uids, in first-seen order */
    json_t *part = json_array();
    for (size_t i = 0; i < gs.n; i++) {
        group_entry *g = registry_find_group(gs.items[i].s, gs.items[i].len);
        for (group_link *m = g ? g->members : NULL; m; m = m->g_next) {
            uid_entry *u = m->conn->uid;
            if (!u || json_object_getn(seen, u->name, u->len))
                continue;
            json_object_setn_new(seen, u->name, u->len, json_true());
            json_array_append_new(part, json_stringn(u->name, u->len));
        }
    }
    json_decref(seen);
    free(gs.items);
    return part;
}

/* The client's session as JSON (new reference, NULL when none): the native
 * one, or the one GatewayWorker's protocol stored, converted from PHP. */
static json_t *session_json(const ws_extra *x)
{
    if (!x)
        return NULL;
    if (x->session)
        return json_deep_copy(x->session);
    if (x->php_session)
        return php_serial_to_json(x->php_session, x->php_session_len);
    return NULL;
}

static json_t *session_write(json_t *body, bool merge, api_error *err)
{
    name_list ids;
    if (get_names(body, "client_id", NAME_CLIENT_ID, true, &ids, err) < 0)
        return NULL;
    json_t *session = json_object_get(body, "session");
    if (!json_is_object(session)) {
        api_fail(err, 400, session ? "bad_field" : "missing_field",
                 "session must be a JSON object");
        free(ids.items);
        return NULL;
    }
    json_t *part = json_array();
    for (size_t i = 0; i < ids.n; i++) {
        conn *c = registry_find(ids.items[i].s, ids.items[i].len);
        ws_extra *x = c ? ws_extra_get(c) : NULL;
        if (!x) {
            json_array_append_new(part, json_integer(0));
            continue;
        }
        json_t *next = merge ? session_json(x) : NULL;
        if (merge && !next && x->php_session) {
            /* a PHP session JSON cannot hold (INF, bytes that are not UTF-8) is
             * not merged into, and not lost either */
            api_error e = {0};
            api_fail(&e, 409, "session_not_json",
                     "the stored session (set through the GatewayWorker protocol) has values "
                     "JSON cannot hold; replace it with set_session");
            json_array_append_new(part, error_json(&e));
            continue;
        }
        if (json_is_array(next)) { /* a PHP list is a map of 0..n-1, as PHP merges it */
            json_t *map = json_object();
            size_t k;
            json_t *v;
            json_array_foreach(next, k, v)
            {
                char key[24];
                snprintf(key, sizeof(key), "%zu", k);
                json_object_set(map, key, v);
            }
            json_decref(next);
            next = map;
        }
        if (!json_is_object(next)) {
            json_decref(next);
            next = json_object();
        }
        json_object_update(next, session);
        char *text = json_dumps(next, JSON_COMPACT);
        size_t size = text ? strlen(text) : 0;
        free(text);
        if (size > SESSION_MAX) {
            json_decref(next);
            ws_extra_release(c);
            api_error e = {0};
            api_fail(&e, 400, "bad_field", "session is larger than %d bytes", SESSION_MAX);
            json_array_append_new(part, error_json(&e));
            continue;
        }
        json_decref(x->session);
        x->session = next;
        free(x->php_session); /* one session per client: this one replaces it */
        x->php_session = NULL;
        x->php_session_len = 0;
        json_array_append_new(part, json_integer(1));
    }
    free(ids.items);
    return part;
}

static json_t *m_set_session(json_t *body, api_error *err)
{
    return session_write(body, false, err);
}

static json_t *m_update_session(json_t *body, api_error *err)
{
    return session_write(body, true, err);
}

static json_t *m_get_session(json_t *body, api_error *err)
{
    name_list ids;
    if (get_names(body, "client_id", NAME_CLIENT_ID, true, &ids, err) < 0)
        return NULL;
    conn *c = registry_find(ids.items[0].s, ids.items[0].len);
    json_t *s = c ? session_json(c->wsx) : NULL;
    if (!s)
        s = json_null();
    free(ids.items);
    return json_pack("[o]", s);
}

/* ---- merging the parts ------------------------------------------------- */

#define CALL_TIMEOUT_MS 2000 /* a node that has not answered by then is left out */

enum merge_kind {
    MERGE_SUM,         /* counts added up */
    MERGE_CLIENTS,     /* per client_id: an error, done somewhere, or not online (404) */
    MERGE_CLIENTS_ANY, /* the same, but a client_id online nowhere is fine */
    MERGE_TRUE,        /* nothing to gather */
    MERGE_OR,          /* per name: true on any node */
    MERGE_FIRST,       /* per name: the first node's value that is not null */
    MERGE_UNION,       /* values gathered, each once, in first-seen order */
    MERGE_UNION_COUNT  /* how many distinct values (or a count, on one node) */
};

/* Which nodes a method needs besides this one. */
enum route_kind {
    ROUTE_ALL,         /* every node */
    ROUTE_CLIENTS,     /* the nodes of the client_ids not held here */
    ROUTE_SEND_ALL,    /* every node, or the nodes of client_ids when given */
    ROUTE_UIDS_EACH,   /* per uid, its nodes, with that uid alone */
    ROUTE_UIDS,        /* per uid, its nodes, with the whole body */
    ROUTE_GROUPS_EACH, /* per group, its nodes, with that group alone */
    ROUTE_GROUPS,      /* per group, its nodes, with the whole body */
};

typedef struct api_method {
    const char *name;
    api_local_fn fn;
    enum merge_kind merge;
    enum route_kind route;
    const char *shape_field; /* a list in this field gets a list back (NULL: never) */
    bool scalar_only;        /* answers for the first name only */
} api_method;

static const api_method methods[] = {
    {"send_to_all", m_send_to_all, MERGE_SUM, ROUTE_SEND_ALL, NULL, false},
    {"send_to_client", m_send_to_client, MERGE_SUM, ROUTE_CLIENTS, NULL, false},
    {"send_to_uid", m_send_to_uid, MERGE_SUM, ROUTE_UIDS_EACH, NULL, false},
    {"send_to_group", m_send_to_group, MERGE_SUM, ROUTE_GROUPS_EACH, NULL, false},
    {"close_client", m_close_client, MERGE_SUM, ROUTE_CLIENTS, NULL, false},
    {"bind_uid", m_bind_uid, MERGE_CLIENTS, ROUTE_CLIENTS, NULL, false},
    {"unbind_uid", m_unbind_uid, MERGE_CLIENTS_ANY, ROUTE_CLIENTS, NULL, false},
    {"join_group", m_join_group, MERGE_CLIENTS, ROUTE_CLIENTS, NULL, false},
    {"leave_group", m_leave_group, MERGE_CLIENTS_ANY, ROUTE_CLIENTS, NULL, false},
    {"ungroup", m_ungroup, MERGE_TRUE, ROUTE_GROUPS_EACH, NULL, false},
    {"is_online", m_is_online, MERGE_OR, ROUTE_CLIENTS, "client_id", false},
    {"is_uid_online", m_is_uid_online, MERGE_OR, ROUTE_UIDS, "uid", false},
    {"get_client_id_by_uid", m_get_client_id_by_uid, MERGE_UNION, ROUTE_UIDS, NULL, false},
    {"get_uid_by_client_id", m_get_uid_by_client_id, MERGE_FIRST, ROUTE_CLIENTS, "client_id",
     false},
    {"get_all_client_id_count", m_get_all_client_id_count, MERGE_SUM, ROUTE_ALL, NULL, false},
    {"get_all_uid_count", m_get_all_uid_count, MERGE_UNION_COUNT, ROUTE_ALL, NULL, false},
    {"get_client_id_count_by_group", m_get_client_id_count_by_group, MERGE_SUM, ROUTE_GROUPS_EACH,
     NULL, false},
    {"get_uid_list_by_group", m_get_uid_list_by_group, MERGE_UNION, ROUTE_GROUPS, NULL, false},
    {"set_session", m_set_session, MERGE_CLIENTS, ROUTE_CLIENTS, NULL, false},
    {"update_session", m_update_session, MERGE_CLIENTS, ROUTE_CLIENTS, NULL, false},
    {"get_session", m_get_session, MERGE_FIRST, ROUTE_CLIENTS, "client_id", true},
};
#define N_METHODS (sizeof(methods) / sizeof(methods[0]))

static const api_method *method_find(const char *name)
{
    for (size_t i = 0; i < N_METHODS; i++)
        if (strcmp(methods[i].name, name) == 0)
            return &methods[i];
    return NULL;
}

static json_t *merge_clients(const api_method *m, json_t *body, json_t *parts, bool incomplete,
                             api_error *err)
{
    json_t *local = json_array_get(parts, 0);
    size_t n = json_array_size(local);
    for (size_t i = 0; i < n; i++) {
        bool done = false;
        size_t k;
        json_t *part;
        json_array_foreach(parts, k, part)
        {
            json_t *v = json_array_get(part, i);
            if (error_from_json(v, err))
                return NULL;
            if (json_integer_value(v) == 1)
                done = true;
        }
        if (!done && m->merge == MERGE_CLIENTS) {
            json_t *ids = json_object_get(body, "client_id");
            json_t *id = json_is_array(ids) ? json_array_get(ids, i) : ids;
            if (incomplete) /* it may be on the node that did not answer */
                api_fail(err, 503, "cluster_timeout",
                         "client_id '%s' was not found, and a node did not answer within %d ms",
                         json_string_value(id) ?: "", CALL_TIMEOUT_MS);
            else
                api_fail(err, 404, "not_found", "client_id '%s' is not online",
                         json_string_value(id) ?: "");
            return NULL;
        }
    }
    return json_true();
}

static json_t *merge_union(json_t *parts, bool count)
{
    json_t *seen = json_object(), *out = json_array();
    size_t k, i;
    json_t *part, *v;
    json_array_foreach(parts, k, part)
    {
        json_array_foreach(part, i, v)
        {
            const char *s = json_string_value(v);
            if (!s || json_object_getn(seen, s, json_string_length(v)))
                continue;
            json_object_setn_new(seen, s, json_string_length(v), json_true());
            json_array_append(out, v);
        }
    }
    json_decref(seen);
    if (!count)
        return out;
    size_t n = json_array_size(out);
    json_decref(out);
    return json_integer((json_int_t)n);
}

/* parts[0] is this node's part. Returns the answer, or NULL with err. */
static json_t *merge_parts(const api_method *m, json_t *body, json_t *parts, bool incomplete,
                           api_error *err)
{
    size_t k, i;
    json_t *part;
    json_array_foreach(parts, k, part) /* a node that failed as a whole */
        if (json_is_object(part) && error_from_json(part, err)) return NULL;
    json_t *local = json_array_get(parts, 0);
    switch (m->merge) {
    case MERGE_SUM: {
        json_int_t sum = 0;
        json_array_foreach(parts, k, part) sum += json_integer_value(part);
        return json_integer(sum);
    }
    case MERGE_CLIENTS:
    case MERGE_CLIENTS_ANY:
        return merge_clients(m, body, parts, incomplete, err);
    case MERGE_TRUE:
        return json_true();
    case MERGE_UNION:
        return merge_union(parts, false);
    case MERGE_UNION_COUNT:
        if (json_is_integer(local)) /* one node: it counted itself */
            return json_incref(local);
        return merge_union(parts, true);
    case MERGE_OR:
    case MERGE_FIRST:
        break;
    }
    json_t *out = json_array();
    for (i = 0; i < json_array_size(local); i++) {
        json_t *v = m->merge == MERGE_OR ? json_false() : json_null();
        json_array_foreach(parts, k, part)
        {
            json_t *p = json_array_get(part, i);
            if (m->merge == MERGE_OR && json_is_true(p)) {
                v = json_true();
                break;
            }
            if (m->merge == MERGE_FIRST && p && !json_is_null(p)) {
                v = json_incref(p);
                break;
            }
        }
        json_array_append_new(out, v);
    }
    if (m->scalar_only || !json_is_array(json_object_get(body, m->shape_field))) {
        json_t *one = json_incref(json_array_get(out, 0));
        json_decref(out);
        return one ? one : json_null();
    }
    return out;
}

/* ---- running a method across the cluster ------------------------------- */

typedef struct api_call {
    http_request *req;
    const api_method *m;
    json_t *body;
    json_t *local;
    bool incomplete; /* a node that got the call did not answer in time */
} api_call;

static void api_answer(api_call *ac, json_t *remote)
{
    json_t *parts = json_array();
    json_array_append_new(parts, ac->local);
    if (remote)
        json_array_extend(parts, remote);
    api_error err = {0};
    json_t *out = merge_parts(ac->m, ac->body, parts, ac->incomplete, &err);
    if (out)
        http_respond_ok(ac->req, out);
    else
        http_respond_error(ac->req, err.status, err.code, "%s", err.msg);
    json_decref(parts);
    json_decref(ac->body);
    free(ac);
}

static void api_call_done(json_t *partials, bool complete, void *ctx)
{
    api_call *ac = ctx;
    ac->incomplete = !complete;
    api_answer(ac, partials);
    json_decref(partials);
}

/* Adds one target per name in field, with the whole body or with that
 * name alone (each_alone). */
static void route_names(cluster_call *call, json_t *body, const char *field, char kind,
                        bool each_alone)
{
    json_t *v = json_object_get(body, field);
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    for (size_t i = 0; i < n; i++) {
        json_t *item = json_is_array(v) ? json_array_get(v, i) : v;
        name_arg a;
        if (!name_from_json(item, kind == 'u' ? NAME_UID : NAME_GROUP, &a))
            continue;
        json_t *b = body;
        if (each_alone) {
            b = json_copy(body); /* shallow: data is shared, not copied */
            json_object_set(b, field, item);
        }
        if (kind == 'u')
            cluster_call_uid(call, a.s, a.len, b);
        else
            cluster_call_group(call, a.s, a.len, b);
        if (each_alone)
            json_decref(b);
    }
}

static void route_clients(cluster_call *call, json_t *body, const char *field)
{
    json_t *v = json_object_get(body, field);
    size_t n = json_is_array(v) ? json_array_size(v) : (v ? 1 : 0);
    for (size_t i = 0; i < n; i++) {
        json_t *item = json_is_array(v) ? json_array_get(v, i) : v;
        const char *id = json_string_value(item);
        size_t len = json_string_length(item);
        if (id && !registry_find(id, len))
            cluster_call_client(call, id, len, body);
    }
}

static void route(cluster_call *call, const api_method *m, json_t *body)
{
    switch (m->route) {
    case ROUTE_ALL:
        cluster_call_all(call, body);
        break;
    case ROUTE_SEND_ALL:
        /* client_ids null = absent, as PHP's Gateway::sendToAll sends it */
        if (json_object_get(body, "client_ids") &&
            !json_is_null(json_object_get(body, "client_ids")))
            route_clients(call, body, "client_ids");
        else
            cluster_call_all(call, body);
        break;
    case ROUTE_CLIENTS:
        route_clients(call, body, "client_id");
        break;
    case ROUTE_UIDS_EACH:
    case ROUTE_UIDS:
        route_names(call, body, "uid", 'u', m->route == ROUTE_UIDS_EACH);
        break;
    case ROUTE_GROUPS_EACH:
    case ROUTE_GROUPS:
        route_names(call, body, "group", 'g', m->route == ROUTE_GROUPS_EACH);
        break;
    }
}

static void api_run(http_request *req, const api_method *m, json_t *body)
{
    api_error err = {0};
    json_t *local = m->fn(body, &err);
    if (!local) {
        http_respond_error(req, err.status, err.code, "%s", err.msg);
        json_decref(body);
        return;
    }
    api_call *ac = calloc(1, sizeof(*ac));
    if (!ac) {
        json_decref(local);
        json_decref(body);
        http_respond_error(req, 500, "internal", "out of memory");
        return;
    }
    *ac = (api_call){req, m, body, local, false};
    if (cluster_enabled()) {
        char name[64];
        snprintf(name, sizeof(name), "gw.%s", m->name);
        cluster_call *call = cluster_call_new(name, api_call_done, ac);
        if (call) {
            route(call, m, body);
            if (cluster_call_start(call, CALL_TIMEOUT_MS) == 0)
                return; /* api_call_done answers */
        }
    }
    api_answer(ac, NULL); /* this node alone */
}

/* Runs a method for another node: its part, or the error as a part. */
static json_t *serve_remote(json_t *body, void *arg)
{
    const api_method *m = arg;
    api_error err = {0};
    json_t *part = m->fn(body, &err);
    return part ? part : error_json(&err);
}

void gateway_api_init(void)
{
    for (size_t i = 0; i < N_METHODS; i++) {
        static char names[N_METHODS][48];
        snprintf(names[i], sizeof(names[i]), "gw.%s", methods[i].name);
        cluster_register(names[i], serve_remote, (void *)&methods[i]);
    }
}

bool gateway_api_secret_equal(const char *given, size_t len, const char *secret)
{
    unsigned char a[32], b[32];
    unsigned int la = 0, lb = 0;
    EVP_Digest(given, len, a, &la, EVP_sha256(), NULL);
    EVP_Digest(secret, strlen(secret), b, &lb, EVP_sha256(), NULL);
    return CRYPTO_memcmp(a, b, sizeof(a)) == 0;
}

bool gateway_api_authorize(http_request *req)
{
    const config *cfg = conn_server(req->conn)->cfg;
    if (!cfg->api_secret[0]) {
        http_respond_error(req, 403, "api_disabled",
                           "the server API is off: start chatd with --api-secret");
        return false;
    }
    const char *auth = http_header(req, "Authorization");
    if (!auth || strncmp(auth, "Bearer ", 7) != 0 ||
        !gateway_api_secret_equal(auth + 7, strlen(auth + 7), cfg->api_secret)) {
        http_respond_error(req, 401, "unauthorized",
                           "Authorization: Bearer <api secret> is missing or wrong");
        return false;
    }
    return true;
}

void gateway_api_handle(http_request *req, const char *method)
{
    if (!gateway_api_authorize(req))
        return;
    if (req->method != HTTP_POST) {
        http_respond_error(req, 405, "method_not_allowed", "use POST");
        return;
    }
    const api_method *m = method_find(method);
    if (!m) {
        http_respond_error(req, 404, "unknown_method", "unknown method '%s'", method);
        return;
    }
    json_t *body;
    if (req->body_len == 0) {
        body = json_object();
    } else {
        json_error_t err;
        body = json_loadb(req->body, req->body_len, 0, &err);
        if (!json_is_object(body)) {
            json_decref(body);
            http_respond_error(req, 400, "bad_json", "body must be a JSON object: %s", err.text);
            return;
        }
    }
    api_run(req, m, body); /* owns body */
}
