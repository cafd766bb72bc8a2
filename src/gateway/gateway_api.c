/* gateway_api: the server API for app backends, POST /gateway/<method>,
 * the HTTP form of GatewayWorker's Gateway:: class (see docs/API.md). */
#include "gateway/gateway_api.h"

#include <http_parser.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/gateway.h"
#include "gateway/registry.h"
#include "net/server.h"
#include "ws/ws.h"
#include "ws/ws_frame.h"

#define SESSION_MAX 4096 /* bytes of a serialized session */

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
        return out->len > 0 && out->len <= 64;
    return out->len > 0 && out->len <= REGISTRY_NAME_MAX;
}

/* Reads field as one name or a list of names. Answers 400 and returns -1 on
 * bad input; on success the caller frees out->items. */
static int get_names(http_request *req, json_t *body, const char *field, enum name_kind kind,
                     bool required, name_list *out)
{
    static const char *const what[] = {"a client_id string",
                                       "a uid: a string of 1-128 bytes or an integer",
                                       "a group: a string of 1-128 bytes or an integer"};
    memset(out, 0, sizeof(*out));
    json_t *v = json_object_get(body, field);
    if (!v || json_is_null(v)) {
        if (!required)
            return 0;
        http_respond_error(req, 400, "missing_field", "%s is required", field);
        return -1;
    }
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    out->is_list = json_is_array(v);
    out->items = calloc(n ? n : 1, sizeof(*out->items));
    if (!out->items) {
        http_respond_error(req, 500, "internal", "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *item = out->is_list ? json_array_get(v, i) : v;
        if (!name_from_json(item, kind, &out->items[i])) {
            http_respond_error(req, 400, "bad_field", "%s must be %s%s", field, what[kind],
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
 * JSON text. NULL after answering 400. */
static sbuf *get_data_frame(http_request *req, json_t *body, bool required)
{
    json_t *data = json_object_get(body, "data");
    if (!data) {
        if (required)
            http_respond_error(req, 400, "missing_field", "data is required");
        return NULL;
    }
    sbuf *frame = json_is_string(data)
                      ? gateway_frame_text(json_string_value(data), json_string_length(data))
                      : gateway_frame_json(data);
    if (!frame)
        http_respond_error(req, 500, "internal", "out of memory");
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

/* ---- methods ----------------------------------------------------------- */

typedef void (*api_method_fn)(http_request *req, json_t *body);

static void m_send_to_all(http_request *req, json_t *body)
{
    name_list only, ex;
    if (get_names(req, body, "client_ids", NAME_CLIENT_ID, false, &only) < 0)
        return;
    if (get_names(req, body, "exclude_client_ids", NAME_CLIENT_ID, false, &ex) < 0) {
        free(only.items);
        return;
    }
    sbuf *frame = get_data_frame(req, body, true);
    if (frame) {
        size_t sent = 0;
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
        http_respond_ok(req, json_integer((json_int_t)sent));
    }
    free(only.items);
    free(ex.items);
}

static void m_send_to_client(http_request *req, json_t *body)
{
    name_list ids;
    if (get_names(req, body, "client_id", NAME_CLIENT_ID, true, &ids) < 0)
        return;
    sbuf *frame = get_data_frame(req, body, true);
    if (frame) {
        size_t sent = 0;
        for (size_t i = 0; i < ids.n; i++) {
            conn *c = registry_find(ids.items[i].s, ids.items[i].len);
            if (c)
                sent += gateway_send_to_conn(c, frame);
        }
        sbuf_unref(frame);
        http_respond_ok(req, json_integer((json_int_t)sent));
    }
    free(ids.items);
}

static void m_send_to_uid(http_request *req, json_t *body)
{
    name_list uids;
    if (get_names(req, body, "uid", NAME_UID, true, &uids) < 0)
        return;
    sbuf *frame = get_data_frame(req, body, true);
    if (frame) {
        size_t sent = 0;
        for (size_t i = 0; i < uids.n; i++)
            sent += gateway_send_to_uid(uids.items[i].s, uids.items[i].len, frame, NULL);
        sbuf_unref(frame);
        http_respond_ok(req, json_integer((json_int_t)sent));
    }
    free(uids.items);
}

static void m_send_to_group(http_request *req, json_t *body)
{
    name_list gs, ex;
    if (get_names(req, body, "group", NAME_GROUP, true, &gs) < 0)
        return;
    if (get_names(req, body, "exclude_client_ids", NAME_CLIENT_ID, false, &ex) < 0) {
        free(gs.items);
        return;
    }
    sbuf *frame = get_data_frame(req, body, true);
    if (frame) {
        size_t sent = 0;
        mark_excluded(&ex, true);
        for (size_t i = 0; i < gs.n; i++)
            sent += gateway_send_to_group(gs.items[i].s, gs.items[i].len, frame);
        mark_excluded(&ex, false);
        sbuf_unref(frame);
        http_respond_ok(req, json_integer((json_int_t)sent));
    }
    free(gs.items);
    free(ex.items);
}

static void m_close_client(http_request *req, json_t *body)
{
    name_list ids;
    if (get_names(req, body, "client_id", NAME_CLIENT_ID, true, &ids) < 0)
        return;
    sbuf *frame = NULL;
    if (json_object_get(body, "data") && !(frame = get_data_frame(req, body, false))) {
        free(ids.items);
        return;
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
    http_respond_ok(req, json_integer((json_int_t)closed));
}

/* Shared by bind_uid, unbind_uid, join_group, leave_group: each client is
 * looked up, then op runs for every (client, name) pair. */
static void client_name_op(http_request *req, json_t *body, const char *field, enum name_kind kind,
                           bool need_online, int (*op)(conn *, const char *, size_t))
{
    name_list ids, names;
    if (get_names(req, body, "client_id", NAME_CLIENT_ID, true, &ids) < 0)
        return;
    if (get_names(req, body, field, kind, true, &names) < 0) {
        free(ids.items);
        return;
    }
    bool ok = true;
    for (size_t i = 0; i < ids.n && ok; i++) {
        conn *c = registry_find(ids.items[i].s, ids.items[i].len);
        if (!c) {
            if (need_online) {
                http_respond_error(req, 404, "not_found", "client_id '%.*s' is not online",
                                   (int)ids.items[i].len, ids.items[i].s);
                ok = false;
            }
            continue;
        }
        for (size_t j = 0; j < names.n && ok; j++) {
            int rc = op(c, names.items[j].s, names.items[j].len);
            if (rc == REGISTRY_FULL) {
                http_respond_error(req, 429, "too_many_connections",
                                   "%s '%.*s' already has %lld connections (--max-conns-per-user)",
                                   field, (int)names.items[j].len, names.items[j].s,
                                   (long long)conn_server(c)->cfg->max_conns_per_user);
                ok = false;
            } else if (rc < 0) {
                http_respond_error(req, 500, "internal", "out of memory");
                ok = false;
            }
        }
    }
    if (ok)
        http_respond_ok(req, json_true());
    free(ids.items);
    free(names.items);
}

/* The per-user cap applies here too: in the usual flow the backend binds
 * whatever client_id a signed-in browser hands it, so without the cap a user
 * could still pile up connections through the backend. A refused socket is
 * left open and unbound; the backend decides what to do with it. */
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

static void m_bind_uid(http_request *req, json_t *body)
{
    client_name_op(req, body, "uid", NAME_UID, true, op_bind);
}

static void m_unbind_uid(http_request *req, json_t *body)
{
    client_name_op(req, body, "uid", NAME_UID, false, op_unbind);
}

static void m_join_group(http_request *req, json_t *body)
{
    client_name_op(req, body, "group", NAME_GROUP, true, op_join);
}

static void m_leave_group(http_request *req, json_t *body)
{
    client_name_op(req, body, "group", NAME_GROUP, false, op_leave);
}

static void m_ungroup(http_request *req, json_t *body)
{
    name_list gs;
    if (get_names(req, body, "group", NAME_GROUP, true, &gs) < 0)
        return;
    for (size_t i = 0; i < gs.n; i++)
        registry_ungroup(gs.items[i].s, gs.items[i].len);
    free(gs.items);
    http_respond_ok(req, json_true());
}

static void m_is_online(http_request *req, json_t *body)
{
    name_list ids;
    if (get_names(req, body, "client_id", NAME_CLIENT_ID, true, &ids) < 0)
        return;
    json_t *out = ids.is_list ? json_array() : NULL;
    for (size_t i = 0; i < ids.n; i++) {
        json_t *b = json_boolean(registry_find(ids.items[i].s, ids.items[i].len) != NULL);
        if (out)
            json_array_append_new(out, b);
        else
            out = b;
    }
    free(ids.items);
    http_respond_ok(req, out);
}

static void m_is_uid_online(http_request *req, json_t *body)
{
    name_list uids;
    if (get_names(req, body, "uid", NAME_UID, true, &uids) < 0)
        return;
    json_t *out = uids.is_list ? json_array() : NULL;
    for (size_t i = 0; i < uids.n; i++) {
        json_t *b = json_boolean(registry_find_uid(uids.items[i].s, uids.items[i].len) != NULL);
        if (out)
            json_array_append_new(out, b);
        else
            out = b;
    }
    free(uids.items);
    http_respond_ok(req, out);
}

static void m_get_client_id_by_uid(http_request *req, json_t *body)
{
    name_list uids;
    if (get_names(req, body, "uid", NAME_UID, true, &uids) < 0)
        return;
    json_t *out = json_array();
    for (size_t i = 0; i < uids.n; i++) {
        uid_entry *e = registry_find_uid(uids.items[i].s, uids.items[i].len);
        for (conn *c = e ? e->conns : NULL; c; c = c->uid_next)
            json_array_append_new(out, json_string(c->client_id));
    }
    free(uids.items);
    http_respond_ok(req, out);
}

static void m_get_uid_by_client_id(http_request *req, json_t *body)
{
    name_list ids;
    if (get_names(req, body, "client_id", NAME_CLIENT_ID, true, &ids) < 0)
        return;
    json_t *out = ids.is_list ? json_array() : NULL;
    for (size_t i = 0; i < ids.n; i++) {
        conn *c = registry_find(ids.items[i].s, ids.items[i].len);
        json_t *uid = (c && c->uid) ? json_stringn(c->uid->name, c->uid->len) : json_null();
        if (out)
            json_array_append_new(out, uid);
        else
            out = uid;
    }
    free(ids.items);
    http_respond_ok(req, out);
}

static void m_get_all_client_id_count(http_request *req, json_t *body)
{
    (void)body;
    http_respond_ok(req, json_integer((json_int_t)registry_client_count()));
}

static void m_get_all_uid_count(http_request *req, json_t *body)
{
    (void)body;
    http_respond_ok(req, json_integer((json_int_t)registry_uid_count()));
}

static void m_get_client_id_count_by_group(http_request *req, json_t *body)
{
    name_list gs;
    if (get_names(req, body, "group", NAME_GROUP, true, &gs) < 0)
        return;
    size_t n = 0;
    for (size_t i = 0; i < gs.n; i++) {
        group_entry *g = registry_find_group(gs.items[i].s, gs.items[i].len);
        n += g ? g->count : 0;
    }
    free(gs.items);
    http_respond_ok(req, json_integer((json_int_t)n));
}

static void m_get_uid_list_by_group(http_request *req, json_t *body)
{
    name_list gs;
    if (get_names(req, body, "group", NAME_GROUP, true, &gs) < 0)
        return;
    json_t *seen = json_object(); /* distinct uids, in first-seen order */
    json_t *out = json_array();
    for (size_t i = 0; i < gs.n; i++) {
        group_entry *g = registry_find_group(gs.items[i].s, gs.items[i].len);
        for (group_link *m = g ? g->members : NULL; m; m = m->g_next) {
            uid_entry *u = m->conn->uid;
            if (!u || json_object_getn(seen, u->name, u->len))
                continue;
            json_object_setn_new(seen, u->name, u->len, json_true());
            json_array_append_new(out, json_stringn(u->name, u->len));
        }
    }
    json_decref(seen);
    free(gs.items);
    http_respond_ok(req, out);
}

static void session_write(http_request *req, json_t *body, bool merge)
{
    name_list ids;
    if (get_names(req, body, "client_id", NAME_CLIENT_ID, true, &ids) < 0)
        return;
    json_t *session = json_object_get(body, "session");
    if (!json_is_object(session)) {
        http_respond_error(req, 400, session ? "bad_field" : "missing_field",
                           "session must be a JSON object");
        free(ids.items);
        return;
    }
    for (size_t i = 0; i < ids.n; i++) {
        conn *c = registry_find(ids.items[i].s, ids.items[i].len);
        if (!c) {
            http_respond_error(req, 404, "not_found", "client_id '%.*s' is not online",
                               (int)ids.items[i].len, ids.items[i].s);
            free(ids.items);
            return;
        }
        ws_extra *x = ws_extra_get(c);
        if (!x)
            continue;
        json_t *next = merge && x->session ? json_deep_copy(x->session) : json_object();
        json_object_update(next, session);
        char *text = json_dumps(next, JSON_COMPACT);
        size_t size = text ? strlen(text) : 0;
        free(text);
        if (size > SESSION_MAX) {
            json_decref(next);
            ws_extra_release(c);
            http_respond_error(req, 400, "bad_field", "session is larger than %d bytes",
                               SESSION_MAX);
            free(ids.items);
            return;
        }
        json_decref(x->session);
        x->session = next;
    }
    free(ids.items);
    http_respond_ok(req, json_true());
}

static void m_set_session(http_request *req, json_t *body)
{
    session_write(req, body, false);
}

static void m_update_session(http_request *req, json_t *body)
{
    session_write(req, body, true);
}

static void m_get_session(http_request *req, json_t *body)
{
    name_list ids;
    if (get_names(req, body, "client_id", NAME_CLIENT_ID, true, &ids) < 0)
        return;
    conn *c = registry_find(ids.items[0].s, ids.items[0].len);
    json_t *s = (c && c->wsx && c->wsx->session) ? json_deep_copy(c->wsx->session) : json_null();
    free(ids.items);
    http_respond_ok(req, s);
}

static const struct {
    const char *name;
    api_method_fn fn;
} methods[] = {
    {"send_to_all", m_send_to_all},
    {"send_to_client", m_send_to_client},
    {"send_to_uid", m_send_to_uid},
    {"send_to_group", m_send_to_group},
    {"close_client", m_close_client},
    {"bind_uid", m_bind_uid},
    {"unbind_uid", m_unbind_uid},
    {"join_group", m_join_group},
    {"leave_group", m_leave_group},
    {"ungroup", m_ungroup},
    {"is_online", m_is_online},
    {"is_uid_online", m_is_uid_online},
    {"get_client_id_by_uid", m_get_client_id_by_uid},
    {"get_uid_by_client_id", m_get_uid_by_client_id},
    {"get_all_client_id_count", m_get_all_client_id_count},
    {"get_all_uid_count", m_get_all_uid_count},
    {"get_client_id_count_by_group", m_get_client_id_count_by_group},
    {"get_uid_list_by_group", m_get_uid_list_by_group},
    {"set_session", m_set_session},
    {"update_session", m_update_session},
    {"get_session", m_get_session},
};

/* Constant-time secret check: compare SHA-256 digests, so neither the
 * content nor the length of the secret leaks through timing. */
static bool secret_matches(const char *given, const char *secret)
{
    unsigned char a[32], b[32];
    unsigned int la = 0, lb = 0;
    EVP_Digest(given, strlen(given), a, &la, EVP_sha256(), NULL);
    EVP_Digest(secret, strlen(secret), b, &lb, EVP_sha256(), NULL);
    return CRYPTO_memcmp(a, b, sizeof(a)) == 0;
}

void gateway_api_handle(http_request *req, const char *method)
{
    const config *cfg = conn_server(req->conn)->cfg;
    if (!cfg->api_secret[0]) {
        http_respond_error(req, 403, "api_disabled",
                           "the server API is off: start chatd with --api-secret");
        return;
    }
    const char *auth = http_header(req, "Authorization");
    if (!auth || strncmp(auth, "Bearer ", 7) != 0 || !secret_matches(auth + 7, cfg->api_secret)) {
        http_respond_error(req, 401, "unauthorized",
                           "Authorization: Bearer <api secret> is missing or wrong");
        return;
    }
    if (req->method != HTTP_POST) {
        http_respond_error(req, 405, "method_not_allowed", "use POST");
        return;
    }
    api_method_fn fn = NULL;
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        if (strcmp(methods[i].name, method) == 0)
            fn = methods[i].fn;
    if (!fn) {
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
    fn(req, body);
    json_decref(body);
}
