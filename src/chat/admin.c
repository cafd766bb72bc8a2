/* admin: revoke, disable and enable a chat user (see admin.h). */
#include "chat/admin.h"

#include <http_parser.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/auth.h"
#include "cluster/cluster.h"
#include "core/log.h"
#include "gateway/gateway.h"
#include "gateway/gateway_api.h"
#include "gateway/registry.h"
#include "net/server.h"
#include "ws/ws.h"
#include "ws/ws_frame.h"

#define ADMIN_PREFIX "/admin/users/"
/* As long as a server API call waits for the other nodes (gateway_api.c). */
#define ADMIN_CALL_TIMEOUT_MS 2000

static store *admin_store;

typedef struct admin_action {
    const char *name; /* the path's last segment */
    int action;       /* enum store_admin_action */
    const char *code; /* the error frame's code; NULL: closes nothing */
    const char *reason;
} admin_action;

static const admin_action actions[] = {
    {"revoke", STORE_ADMIN_REVOKE, "revoked", "tokens revoked"},
    {"disable", STORE_ADMIN_DISABLE, "account_disabled", "account disabled"},
    {"enable", STORE_ADMIN_ENABLE, NULL, NULL},
};

typedef struct admin_call {
    http_request *req;
    const admin_action *act;
    int64_t uid;
    int64_t time; /* ms: the revoke's not-before time */
    json_t *data; /* the answer, once the store answered */
} admin_call;

bool admin_handles(const char *path)
{
    return strncmp(path, "/admin/", 7) == 0;
}

/* Sends every socket of uid on this node an error frame with code, then
 * closes it (1008), but those the token keep (NULL: none) bound. Returns
 * how many were open. */
static int close_uid_sockets(int64_t uid, const uint8_t *keep, const char *code, const char *reason)
{
    char name[24];
    snprintf(name, sizeof(name), "%lld", (long long)uid);
    uid_entry *e = registry_find_uid(name, strlen(name));
    int n = 0;
    char msg[96];
    snprintf(msg, sizeof(msg), "this connection was closed: %s", reason);
    /* ws_close only queues the close: the connection stays in the list
     * until the loop frees it, so the walk is safe */
    for (conn *c = e ? e->conns : NULL, *next; c; c = next) {
        next = c->uid_next;
        if (c->flags & (CONN_WS_CLOSE_SENT | CONN_CLOSING))
            continue;
        if (keep && auth_bound_by(keep, c->client_id))
            continue;
        gateway_send_error(c, code, msg, NULL);
        ws_close(c, WS_CLOSE_POLICY, reason);
        n++;
    }
    return n;
}

/* Another node revoked or disabled uid, or changed its password: forget
 * what this node read about it, close its sockets here (but the kept
 * token's). */
static json_t *remote_revoke(json_t *body, void *arg)
{
    (void)arg;
    json_t *juid = json_object_get(body, "uid");
    const char *code = json_string_value(json_object_get(body, "code"));
    const char *reason = json_string_value(json_object_get(body, "reason"));
    const char *hex = json_string_value(json_object_get(body, "keep"));
    uint8_t keep[32];
    size_t n = 0;
    if (!json_is_integer(juid) || json_integer_value(juid) <= 0 || !code || !reason)
        return NULL;
    if (hex && (sodium_hex2bin(keep, sizeof(keep), hex, strlen(hex), NULL, &n, NULL) != 0 ||
                n != sizeof(keep)))
        return NULL;
    int64_t uid = json_integer_value(juid);
    auth_revoke_end(uid, hex ? keep : NULL);
    return json_pack("{s:i}", "closed", close_uid_sockets(uid, hex ? keep : NULL, code, reason));
}

/* One admin_sign_out under way. */
typedef struct sign_out {
    int closed; /* on this node */
    admin_sign_out_fn done;
    void *ctx;
} sign_out;

static void sign_out_cluster_done(json_t *partials, bool complete, void *ctx)
{
    sign_out *so = ctx;
    int closed = so->closed;
    size_t i;
    json_t *p;
    json_array_foreach(partials, i, p)
    {
        closed += (int)json_integer_value(json_object_get(p, "closed"));
    }
    json_decref(partials);
    so->done(closed, complete, so->ctx);
    free(so);
}

void admin_sign_out(int64_t uid, const uint8_t *keep, const char *code, const char *reason,
                    admin_sign_out_fn done, void *ctx)
{
    auth_revoke_end(uid, keep);
    int closed = close_uid_sockets(uid, keep, code, reason);
    if (!cluster_enabled()) {
        done(closed, true, ctx);
        return;
    }
    sign_out *so = calloc(1, sizeof(*so));
    json_t *body =
        json_pack("{s:I, s:s, s:s}", "uid", (json_int_t)uid, "code", code, "reason", reason);
    if (keep && body) {
        char hex[65];
        sodium_bin2hex(hex, sizeof(hex), keep, 32);
        json_object_set_new(body, "keep", json_string(hex));
    }
    cluster_call *cc =
        so && body ? cluster_call_new("chat.admin_revoke", sign_out_cluster_done, so) : NULL;
    if (cc && cluster_call_all(cc, body) == 0) {
        json_decref(body);
        so->closed = closed;
        so->done = done;
        so->ctx = ctx;
        if (cluster_call_start(cc, ADMIN_CALL_TIMEOUT_MS) == 0)
            return; /* sign_out_cluster_done answers */
    } else {
        json_decref(body);
        cluster_call_free(cc);
    }
    free(so);
    /* the bus is down: the other nodes' sockets stay open for now */
    log_warn("user %lld signed out (%s): the cluster bus is unreachable; other nodes keep its "
             "sockets until it is repeated",
             (long long)uid, reason);
    done(closed, false, ctx);
}

static void call_free(admin_call *ac)
{
    json_decref(ac->data);
    free(ac);
}

static void signed_out(int closed, bool complete, void *ctx)
{
    admin_call *ac = ctx;
    json_object_set_new(ac->data, "sockets_closed", json_integer(closed));
    json_object_set_new(ac->data, "complete", json_boolean(complete));
    http_respond_ok(ac->req, json_incref(ac->data));
    call_free(ac);
}

static void store_done(store_req *r)
{
    admin_call *ac = r->ctx;
    int status = r->status;
    if (ac->act->code && status != STORE_OK)
        auth_revoke_end(ac->uid, NULL); /* also when it failed: nothing stale may pass */
    if (status != STORE_OK) {
        store_req_free(r);
        if (status == STORE_NOT_FOUND)
            http_respond_error(ac->req, 404, "not_found", "uid: no such user");
        else if (status == STORE_UNAVAILABLE)
            http_respond_error(ac->req, 503, "store_unavailable",
                               "the database cannot be reached right now; try again");
        else
            http_respond_error(ac->req, 500, "internal", "storage failed; try again");
        call_free(ac);
        return;
    }
    ac->data = json_pack("{s:I, s:b, s:O}", "uid", (json_int_t)ac->uid, "disabled",
                         ac->act->action == STORE_ADMIN_DISABLE, "tokens_deleted",
                         json_object_get(r->result, "tokens_deleted"));
    store_req_free(r);
    if (!ac->data) {
        if (ac->act->code)
            auth_revoke_end(ac->uid, NULL);
        http_respond_error(ac->req, 500, "internal", "out of memory");
        call_free(ac);
        return;
    }
    if (!ac->act->code) { /* enable: nothing to close */
        http_respond_ok(ac->req, json_incref(ac->data));
        call_free(ac);
        return;
    }
    log_info("admin: %s of user %lld", ac->act->name, (long long)ac->uid);
    /* A JWT is accepted again from the second after the revoke: its iat
     * has a resolution of seconds. */
    json_object_set_new(ac->data, "jwt_not_before", json_integer((ac->time + 999) / 1000));
    admin_sign_out(ac->uid, NULL, ac->act->code, ac->act->reason, signed_out, ac);
}

/* The "uid" of body: a positive integer, as a JSON number or a decimal
 * string; 0 after answering 400. */
static int64_t want_uid(http_request *req, json_t *body)
{
    json_t *v = json_object_get(body, "uid");
    long long id = 0;
    if (!v) {
        http_respond_error(req, 400, "missing_field", "uid is required");
        return 0;
    }
    if (json_is_integer(v)) {
        id = json_integer_value(v);
    } else if (json_is_string(v) && json_string_length(v) > 0 && json_string_length(v) <= 19 &&
               strspn(json_string_value(v), "0123456789") == json_string_length(v)) {
        id = strtoll(json_string_value(v), NULL, 10);
    }
    if (id <= 0) {
        http_respond_error(req, 400, "bad_field", "uid must be a user id (a positive integer)");
        return 0;
    }
    return id;
}

void admin_handle_request(http_request *req)
{
    if (!gateway_api_authorize(req)) /* the same bearer secret as the /gateway/ API */
        return;
    const admin_action *act = NULL;
    size_t plen = strlen(ADMIN_PREFIX);
    if (strncmp(req->path, ADMIN_PREFIX, plen) == 0)
        for (size_t i = 0; i < sizeof(actions) / sizeof(actions[0]); i++)
            if (strcmp(req->path + plen, actions[i].name) == 0)
                act = &actions[i];
    if (!act) {
        http_respond_error(req, 404, "not_found", "no such endpoint %s", req->path);
        return;
    }
    if (req->method != HTTP_POST) {
        http_respond_error(req, 405, "method_not_allowed", "use POST");
        return;
    }
    json_error_t jerr;
    json_t *body = req->body_len ? json_loadb(req->body, req->body_len, 0, &jerr) : NULL;
    if (!json_is_object(body)) {
        json_decref(body);
        http_respond_error(req, 400, "bad_json", "body must be a JSON object");
        return;
    }
    int64_t uid = want_uid(req, body);
    json_decref(body);
    if (!uid)
        return;
    admin_call *ac = calloc(1, sizeof(*ac));
    store_req *r = ac ? store_req_new(STORE_USER_ADMIN, store_done, ac) : NULL;
    if (!r) {
        free(ac);
        http_respond_error(req, 500, "internal", "out of memory");
        return;
    }
    ac->req = req;
    ac->act = act;
    ac->uid = uid;
    ac->time = auth_now_ms();
    /* from now on nothing this node reads about uid is trusted, until the
     * store committed (auth.h) */
    if (act->code)
        auth_revoke_begin(uid, NULL);
    r->user_id = uid;
    r->action = act->action;
    r->time = ac->time;
    store_submit(admin_store, r);
}

void admin_init(uv_loop_t *loop, store *st)
{
    (void)loop;
    admin_store = st;
    cluster_register("chat.admin_revoke", remote_revoke, NULL);
}
