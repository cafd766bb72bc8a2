/* chat_bind: binding a socket to its user, over HTTP with the socket's
 * bind_nonce or on the socket with a token, here or on the socket's node
 * (see chat_internal.h). */
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

/* ---- bind -------------------------------------------------------------- */

typedef struct bind_error {
    int status; /* 0: bound */
    const char *code;
    char msg[200];
} bind_error;

/* Binds socket c to the chat user uid, bound with token_hash (for logout).
 * A socket that would pass --max-conns-per-user is refused: it is told, and
 * closed (1008) once the caller has answered, so one user's devices cost at
 * most that many copies of every message to them. */
static void bind_socket(conn *c, const char *uid, const uint8_t *token_hash, bind_error *err)
{
    if (c->uid && (c->uid->len != strlen(uid) || memcmp(c->uid->name, uid, c->uid->len) != 0)) {
        *err = (bind_error){403, "forbidden", "client_id is bound to another user"};
        return;
    }
    bool was_bound = c->flags & CONN_CHAT_BOUND;
    int rc = registry_bind_uid(c, uid, strlen(uid), (uint32_t)chat_cfg->max_conns_per_user);
    if (rc == REGISTRY_FULL) {
        err->status = 429;
        err->code = "too_many_connections";
        snprintf(err->msg, sizeof(err->msg),
                 "user %s already has %lld connections (the most allowed); close one first", uid,
                 (long long)chat_cfg->max_conns_per_user);
        return;
    }
    if (rc < 0) {
        *err = (bind_error){500, "internal", "out of memory"};
        return;
    }
    c->flags |= CONN_CHAT_BOUND;
    if (!was_bound) /* a socket bound again to its user is no new device */
        chat_presence_bound(strtoll(uid, NULL, 10));
    if (token_hash) /* so a logout of the token can close it */
        auth_note_bind_hash(token_hash, c->client_id);
}

static const char *call_token(chat_call *call)
{
    return call->token ? call->token : json_string_value(json_object_get(call->body, "token"));
}

static void respond_bound(chat_call *call, const char *client_id)
{
    json_t *root = json_pack("{s:b,s:s,s:s,s:{s:I,s:s}}", "status", 1, "type", "bind", "msg", "ok",
                             "data", "uid", (json_int_t)call->uid, "client_id", client_id);
    http_respond_json(call->req, 200, root);
    chat_call_free(call);
}

/* Binds connection c to the call's user; answers either way. */
static void bind_conn(chat_call *call, conn *c)
{
    char uid[24];
    chat_uid_string(call->uid, uid, sizeof(uid));
    if (!c) {
        chat_call_fail(call, 404, "not_found", "client_id is not connected");
        return;
    }
    uint8_t hash[32];
    const char *token = call_token(call);
    if (token)
        auth_token_hash(token, hash);
    bind_error err = {0};
    bind_socket(c, uid, token ? hash : NULL, &err);
    if (err.status) {
        if (err.status == 429 && call->req) /* over a socket, chat_call_fail tells it */
            gateway_send_error(c, err.code, err.msg, NULL);
        chat_call_fail(call, err.status, err.code, "%s", err.msg);
        if (err.status == 429)
            ws_close(c, WS_CLOSE_POLICY, "too many connections for this user");
        return;
    }
    if (call->req) {
        respond_bound(call, c->client_id);
        return;
    }
    json_t *m =
        json_pack("{s:s,s:b,s:I}", "type", "bind", "status", 1, "uid", (json_int_t)call->uid);
    ws_send_json(c, m);
    json_decref(m);
    chat_call_free(call);
}

/* POST /chat/bind for a socket of another node: that node checks the nonce
 * (its own key made it) and binds; this one answers. */
json_t *chat_remote_bind(json_t *body, void *arg)
{
    (void)arg;
    const char *id = json_string_value(json_object_get(body, "client_id"));
    const char *nonce = json_string_value(json_object_get(body, "bind_nonce"));
    const char *uid = json_string_value(json_object_get(body, "uid"));
    const char *hex = json_string_value(json_object_get(body, "token_hash"));
    uint8_t hash[32];
    size_t n = 0;
    bind_error err = {0};
    conn *c = id ? registry_find(id, strlen(id)) : NULL;
    if (!id || !nonce || !uid || !hex ||
        sodium_hex2bin(hash, sizeof(hash), hex, strlen(hex), NULL, &n, NULL) != 0 || n != 32)
        err = (bind_error){400, "bad_field", "malformed bind request"};
    else if (!gateway_bind_nonce_ok(id, strlen(id), nonce, strlen(nonce)))
        err = (bind_error){403, "bad_nonce",
                           "bind_nonce is not the one the socket of this client_id got in its init "
                           "message"};
    else if (!c)
        err = (bind_error){404, "not_found", "client_id is not connected"};
    else if (auth_revoked_since(strtoll(uid, NULL, 10), hash,
                                json_integer_value(json_object_get(body, "since"))))
        err = (bind_error){401, "unauthorized",
                           "the user's tokens were revoked while this bind was on its way"};
    else
        bind_socket(c, uid, hash, &err);
    if (err.status == 429) {
        gateway_send_error(c, err.code, err.msg, NULL);
        ws_close(c, WS_CLOSE_POLICY, "too many connections for this user");
    }
    if (!err.status)
        return json_pack("{s:b}", "bound", 1);
    return json_pack("{s:i,s:s,s:s}", "status", err.status, "code", err.code, "msg", err.msg);
}

static void remote_bind_done(json_t *partials, bool complete, void *ctx)
{
    chat_call *call = ctx;
    json_t *answer = NULL, *p;
    size_t i;
    /* The node that holds the socket speaks: it bound it, or its nonce check
     * passed and it refused for a reason of its own (not_found, 429...). A
     * bad_nonce is what every other node says (each has its own nonce key),
     * when several are asked: a GatewayWorker id, or a tag two nodes share. */
    json_array_foreach(partials, i, p)
    {
        if (!json_is_object(p))
            continue;
        const char *code = json_string_value(json_object_get(p, "code"));
        bool holder = json_object_get(p, "bound") || !code || strcmp(code, "bad_nonce") != 0;
        if (holder && (!answer || json_object_get(p, "bound")))
            answer = p;
    }
    if (!answer && !complete) {
        chat_call_fail(call, 503, "cluster_timeout",
                       "the node of this client_id did not answer in time; try again");
    } else if (!answer) { /* no node holds it: no nonce can be right, and a stranger learns nothing
                           */
        chat_call_fail(
            call, 403, "bad_nonce",
            "bind_nonce is not the one the socket of this client_id got in its init message");
    } else if (json_object_get(answer, "bound")) {
        respond_bound(call, json_string_value(json_object_get(call->body, "client_id")));
    } else {
        int status = (int)json_integer_value(json_object_get(answer, "status"));
        const char *code = json_string_value(json_object_get(answer, "code"));
        const char *msg = json_string_value(json_object_get(answer, "msg"));
        chat_call_fail(call, status >= 400 && status < 600 ? status : 500, code ? code : "internal",
                       "%s", msg ? msg : "bind failed on the socket's node");
    }
    json_decref(partials);
}

/* Returns 0 when the call was answered or will be, -1 when the bus cannot
 * take it (nothing answered yet). */
static int bind_remote(chat_call *call, const char *id, const char *nonce)
{
    char uid[24], hex[65];
    uint8_t hash[32] = {0};
    const char *token = call_token(call);
    if (token)
        auth_token_hash(token, hash);
    sodium_bin2hex(hex, sizeof(hex), hash, sizeof(hash));
    chat_uid_string(call->uid, uid, sizeof(uid));
    /* since: the socket's node refuses the bind when it heard of a revoke of
     * the user after this call began (its token was read before that) */
    json_t *body = json_pack("{s:s,s:s,s:s,s:s,s:I}", "client_id", id, "bind_nonce", nonce, "uid",
                             uid, "token_hash", hex, "since", (json_int_t)call->started_ms);
    cluster_call *cc = cluster_call_new("chat.bind", remote_bind_done, call);
    int rc = (cc && body) ? cluster_call_client(cc, id, strlen(id), body) : -1;
    json_decref(body);
    if (rc < 0) {
        cluster_call_free(cc);
        chat_call_fail(call, 500, "internal", "out of memory");
        return 0;
    }
    return cluster_call_start(cc, 2000);
}

void chat_do_bind(chat_call *call)
{
    if (!call->req) {
        bind_conn(call, chat_call_conn(call));
        return;
    }
    /* Over HTTP the caller must show the socket's bind_nonce (from its init
     * message): a client_id alone is an address, not a proof of holding the
     * socket. The nonce is checked first, so a stranger learns nothing, not
     * even whether the client_id is online. */
    bool failed;
    const char *id = chat_want_string(call, call->body, "client_id", 1, 64, true, &failed);
    if (failed)
        return;
    const char *nonce = chat_want_string(call, call->body, "bind_nonce", 1, 64, true, &failed);
    if (failed)
        return;
    /* a socket not held here is forwarded in a cluster, also one with our
     * tag: another node may share it (its node checks the nonce) */
    conn *c = registry_find(id, strlen(id));
    if (!c && cluster_enabled() && bind_remote(call, id, nonce) == 0)
        return;
    if (!c && cluster_is_remote_client(id, strlen(id))) {
        chat_call_fail(
            call, 503, "cluster_unavailable",
            "the socket is on another node and the cluster bus is unreachable; try again");
        return;
    }
    if (!gateway_bind_nonce_ok(id, strlen(id), nonce, strlen(nonce))) {
        chat_call_fail(
            call, 403, "bad_nonce",
            "bind_nonce is not the one the socket of this client_id got in its init message");
        return;
    }
    bind_conn(call, c);
}
