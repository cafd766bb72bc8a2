/* chat_account: register, login, logout, me, search, password and profile
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

/* ---- register / login / logout / me / search --------------------------- */

static void token_created(store_req *r)
{
    chat_call *call = r->ctx;
    if (r->status != STORE_OK) {
        int status = r->status;
        bool login = r->password_hash != NULL;
        store_req_free(r);
        if (status == STORE_NOT_FOUND && login) /* its password changed since it was checked */
            chat_call_fail(call, 401, "bad_credentials", "wrong username or password");
        else if (status == STORE_NOT_FOUND) /* disabled since its password was checked */
            chat_call_fail(call, 403, "account_disabled", "this account is disabled");
        else
            chat_store_failed(call);
        return;
    }
    store_req_free(r);
    json_t *data = json_pack("{s:s,s:O}", "token", call->token, "user", call->user);
    http_respond_ok(call->req, data);
    chat_call_free(call);
}

/* user's "password_hash", when given, is the hash a login checked: the
 * token is made only while it is still the user's, so a login that raced
 * a password change does not outlive the change. */
static void respond_with_token(chat_call *call, json_t *user)
{
    char token[AUTH_TOKEN_TEXT_LEN + 1];
    uint8_t hash[32];
    store_req *r = chat_call_store_req(call, STORE_TOKEN_CREATE, token_created);
    if (!r)
        return;
    const char *checked = json_string_value(json_object_get(user, "password_hash"));
    if (checked && store_req_set_str(&r->password_hash, checked) < 0) {
        store_req_free(r);
        chat_call_fail(call, 500, "internal", "out of memory");
        return;
    }
    auth_new_token(token, hash);
    call->token = strdup(token);
    json_decref(call->user);
    call->user = json_incref(user);
    json_object_del(call->user, "password_hash");
    json_object_del(call->user, "disabled");
    memcpy(r->token_hash, hash, 32);
    r->user_id = json_integer_value(json_object_get(user, "id"));
    r->expires = auth_now_ms() + chat_cfg->token_ttl * 1000;
    store_submit(chat_store, r);
}

static void user_created(store_req *r)
{
    chat_call *call = r->ctx;
    int status = r->status;
    json_t *user = json_incref(r->result);
    store_req_free(r);
    if (status == STORE_CONFLICT)
        chat_call_fail(call, 409, "username_taken", "username is already taken");
    else if (status != STORE_OK)
        chat_store_failed(call);
    else
        respond_with_token(call, user);
    json_decref(user);
}

static void password_hashed(void *ctx, int status, char *hash)
{
    chat_call *call = ctx;
    if (status == AUTH_CANCELLED) {
        chat_call_fail(call, 503, "unavailable", "server is shutting down");
        return;
    }
    if (!hash) {
        chat_call_fail(call, 500, "internal", "password hashing failed");
        return;
    }
    store_req *r = chat_call_store_req(call, STORE_USER_CREATE, user_created);
    if (r) {
        json_t *b = call->body;
        store_req_set_str(&r->username, json_string_value(json_object_get(b, "username")));
        store_req_set_str(&r->userpic, json_string_value(json_object_get(b, "userpic")));
        if (!r->userpic)
            store_req_set_str(&r->userpic, "");
        r->password_hash = hash;
        hash = NULL;
        store_submit(chat_store, r);
    }
    free(hash);
}

/* The rules of names.h, the same for JWT claims (auth.c). The body's
 * username is replaced by its display form (NFC), which is what is stored. */
static bool validate_username(chat_call *call, const char *username)
{
    char clean[NAMES_MAX_BYTES + 1];
    const char *why;
    if (names_clean(username, clean, sizeof(clean), &why) != 0) {
        chat_call_fail(call, 400, "bad_field", "%s", why);
        return false;
    }
    json_object_set_new(call->body, "username", json_string(clean));
    return true;
}

void chat_do_register(chat_call *call)
{
    bool failed;
    /* bytes as sent; names_clean bounds the NFC form to USERNAME_MAX */
    const char *username = chat_want_string(call, call->body, "username", USERNAME_MIN,
                                            USERNAME_MAX * 4, true, &failed);
    if (failed || !validate_username(call, username))
        return;
    const char *password =
        chat_want_string(call, call->body, "password", PASSWORD_MIN, PASSWORD_MAX, true, &failed);
    if (failed)
        return;
    const char *userpic =
        chat_want_string(call, call->body, "userpic", 0, USERPIC_MAX, false, &failed);
    if (failed)
        return;
    if (userpic && userpic[0] && !auth_url_is_safe(userpic)) {
        chat_call_fail(call, 400, "bad_field", "userpic must be an http(s) URL or a path");
        return;
    }
    /* checked here, counted once the hashing is queued: a refused sign-up
     * (400, 429, 503) costs its address nothing */
    const char *addr = call->req->peer_ip;
    if (!auth_register_would_allow(addr, auth_now_ms())) {
        metrics_limit_refused(METRICS_LIMIT_REGISTER);
        chat_call_fail(call, 429, "rate_limited",
                       "too many sign-ups from this address (%lld per hour); try again later",
                       (long long)chat_cfg->register_rate);
        return;
    }
    int rc = auth_hash_password(password, password_hashed, call);
    if (rc == AUTH_BUSY) {
        chat_call_fail(call, 503, "busy", "too many sign-ups in progress; try again shortly");
        return;
    }
    if (rc != AUTH_OK) {
        chat_call_fail(call, 500, "internal", "cannot queue password hashing");
        return;
    }
    auth_register_allowed(addr, auth_now_ms());
}

static void password_checked(void *ctx, int status, bool ok)
{
    chat_call *call = ctx;
    if (status == AUTH_CANCELLED) {
        chat_call_fail(call, 503, "unavailable", "server is shutting down");
        return;
    }
    if (status != AUTH_OK) {
        chat_call_fail(call, 500, "internal", "password check failed");
        return;
    }
    const char *username = json_string_value(json_object_get(call->body, "username"));
    if (!ok || !call->user) {
        auth_login_failed(username, call->req->peer_ip, auth_now_ms());
        chat_call_fail(call, 401, "bad_credentials", "wrong username or password");
        return;
    }
    auth_login_succeeded(username, call->req->peer_ip);
    /* told only to who knows the password: a stranger learns nothing */
    if (json_is_true(json_object_get(call->user, "disabled"))) {
        chat_call_fail(call, 403, "account_disabled", "this account is disabled");
        return;
    }
    json_t *user = json_incref(call->user);
    respond_with_token(call, user);
    json_decref(user);
}

static void login_user_found(store_req *r)
{
    chat_call *call = r->ctx;
    if (r->status != STORE_OK && r->status != STORE_NOT_FOUND) {
        store_req_free(r);
        chat_store_failed(call);
        return;
    }
    /* An unknown user, or an account made from a JWT (no password), is
     * checked against the dummy hash: the answer takes as long as a wrong
     * password, so its timing does not tell whether the username exists. */
    const char *hash = NULL;
    if (r->status == STORE_OK) {
        hash = json_string_value(json_object_get(r->result, "password_hash"));
        if (hash)
            call->user = json_incref(r->result);
    }
    const char *password = json_string_value(json_object_get(call->body, "password"));
    int rc = auth_verify_password(password, hash, password_checked, call);
    store_req_free(r); /* hash pointed into r->result; it was copied */
    if (rc == AUTH_BUSY)
        chat_call_fail(call, 503, "busy", "too many logins in progress; try again shortly");
    else if (rc != AUTH_OK)
        chat_call_fail(call, 500, "internal", "cannot queue password check");
}

/* --login-rate for an attempt at username's password (a login, or the old
 * password of a change): false after answering 429. */
static bool login_admitted(chat_call *call, const char *username)
{
    int verdict = auth_login_check(username, call->req->peer_ip, auth_now_ms());
    if (verdict == AUTH_LOGIN_OK)
        return true;
    metrics_limit_refused(METRICS_LIMIT_LOGIN);
    chat_call_fail(call, 429, "rate_limited", "too many login attempts for this %s; wait a minute",
                   verdict == AUTH_LOGIN_ADDR_LIMITED ? "address" : "username");
    return false;
}

void chat_do_login(chat_call *call)
{
    bool failed;
    const char *username =
        chat_want_string(call, call->body, "username", 1, USERNAME_MAX * 4, true, &failed);
    if (failed)
        return;
    chat_want_string(call, call->body, "password", 1, PASSWORD_MAX, true, &failed);
    if (failed)
        return;
    if (!login_admitted(call, username))
        return;
    store_req *r = chat_call_store_req(call, STORE_USER_BY_NAME, login_user_found);
    if (!r)
        return;
    store_req_set_str(&r->username, username);
    store_submit(chat_store, r);
}

/* Ends a socket the logged-out token bound (if it is still that user's). */
/* arg: the uid (text) the token belongs to. */
static void close_logged_out(const char *client_id, void *arg)
{
    const char *uid = arg;
    conn *c = registry_find(client_id, strlen(client_id));
    if (!c || !c->uid || c->uid->len != strlen(uid) || memcmp(c->uid->name, uid, c->uid->len) != 0)
        return;
    gateway_send_error(c, "logged_out", "the token that bound this socket was logged out", NULL);
    ws_close(c, WS_CLOSE_POLICY, "logged out");
}

static void logout_done(store_req *r)
{
    chat_call *call = r->ctx;
    int status = r->status;
    store_req_free(r);
    if (status == STORE_ERROR) {
        chat_store_failed(call);
        return;
    }
    auth_forget(call->token); /* again: a resolve may have cached it meanwhile */
    char uid[24];
    chat_uid_string(call->uid, uid, sizeof(uid));
    auth_each_bound(call->token, close_logged_out, uid);
    if (cluster_enabled()) { /* the other nodes' caches and sockets: by hash, never the token */
        uint8_t hash[32];
        char hex[65];
        auth_token_hash(call->token, hash);
        sodium_bin2hex(hex, sizeof(hex), hash, sizeof(hash));
        json_t *body = json_pack("{s:s,s:s}", "token_hash", hex, "uid", uid);
        cluster_cast_all("chat.logout", body);
        json_decref(body);
    }
    http_respond_ok(call->req, json_true());
    chat_call_free(call);
}

/* A logout on another node: forget the token here, close what it bound. */
json_t *chat_remote_logout(json_t *body, void *arg)
{
    (void)arg;
    const char *hex = json_string_value(json_object_get(body, "token_hash"));
    const char *uid = json_string_value(json_object_get(body, "uid"));
    uint8_t hash[32];
    size_t n = 0;
    if (!hex || !uid || sodium_hex2bin(hash, sizeof(hash), hex, strlen(hex), NULL, &n, NULL) != 0 ||
        n != sizeof(hash))
        return NULL;
    auth_forget_hash(hash);
    auth_each_bound_hash(hash, close_logged_out, (void *)uid);
    return NULL;
}

void chat_do_logout(chat_call *call)
{
    auth_forget(call->token);
    /* A JWT is revoked until its exp (a list in the store, checked whenever
     * a JWT is resolved); an opaque token is deleted. */
    bool jwt = auth_is_jwt(call->token);
    store_req *r =
        chat_call_store_req(call, jwt ? STORE_JWT_REVOKE : STORE_TOKEN_DELETE, logout_done);
    if (!r)
        return;
    auth_token_hash(call->token, r->token_hash);
    if (jwt)
        r->expires = auth_jwt_expiry_ms(call->token);
    store_submit(chat_store, r);
}

void chat_do_me(chat_call *call)
{
    http_respond_ok(call->req, json_incref(call->user));
    chat_call_free(call);
}

/* Answers with the store's result as data (HTTP only). */
void chat_respond_result(store_req *r)
{
    chat_call *call = r->ctx;
    if (r->status != STORE_OK) {
        int status = r->status;
        store_req_free(r);
        if (status == STORE_NOT_FOUND)
            chat_call_fail(call, 404, "not_found", "no such user");
        else
            chat_store_failed(call);
        return;
    }
    http_respond_ok(call->req, json_incref(r->result));
    store_req_free(r);
    chat_call_free(call);
}

/* chat_respond_result for lists of users (their id under "id") or chat
 * list items (under "userid"): each gets "online". */
void chat_respond_users(store_req *r)
{
    if (r->status == STORE_OK)
        chat_presence_annotate(r->result, r->op == STORE_CHAT_LIST ? "userid" : "id");
    chat_respond_result(r);
}

void chat_do_search(chat_call *call)
{
    char q[USERNAME_MAX * 4 + 1], what[64];
    snprintf(what, sizeof(what), "1 to %d bytes of a username", USERNAME_MAX * 4);
    int n = chat_query_text(call, "q", q, sizeof(q), what);
    if (n == 0)
        chat_call_fail(call, 400, "missing_field", "q is required: %s", what);
    if (n <= 0)
        return;
    store_req *r = chat_call_store_req(call, STORE_USER_SEARCH, chat_respond_users);
    if (!r)
        return;
    store_req_set_str(&r->query, q);
    r->limit = SEARCH_LIMIT;
    store_submit(chat_store, r);
}

/* ---- password and profile ---------------------------------------------- */

/* POST /user/password: the old password is checked as a login is (the
 * same limiter and hashing queue), the new one hashed, then the store
 * swaps the hash and deletes every other token of the user in one
 * transaction, and admin_sign_out closes their sockets on every node. The
 * caller's token is kept, not rotated: its own sockets and tabs go on, and
 * a rotation would close them too (they were bound with the old token)
 * for no gain, as whoever holds the caller's token could call this
 * endpoint as well. */

static void password_signed_out(int closed, bool complete, void *ctx)
{
    chat_call *call = ctx;
    json_t *data = call->body; /* the answer, set by password_stored */
    call->body = NULL;
    json_object_set_new(data, "sockets_closed", json_integer(closed));
    json_object_set_new(data, "complete", json_boolean(complete));
    http_respond_ok(call->req, data);
    chat_call_free(call);
}

static void password_stored(store_req *r)
{
    chat_call *call = r->ctx;
    int status = r->status;
    uint8_t keep[32];
    memcpy(keep, r->token_hash, sizeof(keep));
    json_t *deleted = json_incref(json_object_get(r->result, "tokens_deleted"));
    store_req_free(r);
    if (status != STORE_OK) {
        auth_revoke_end(call->uid, keep); /* nothing read before may pass but the kept token */
        json_decref(deleted);
        if (status == STORE_NOT_FOUND) /* revoked or logged out meanwhile */
            chat_call_fail(call, 401, "unauthorized", "token is missing, wrong or expired");
        else
            chat_store_failed(call);
        return;
    }
    log_info("user %lld changed its password: %lld other tokens deleted", (long long)call->uid,
             (long long)json_integer_value(deleted));
    json_decref(call->body); /* the passwords: not kept longer than needed */
    call->body =
        json_pack("{s:b, s:o}", "ok", 1, "tokens_deleted", deleted ? deleted : json_integer(0));
    if (!call->body) {
        auth_revoke_end(call->uid, keep);
        chat_call_fail(call, 500, "internal", "out of memory");
        return;
    }
    admin_sign_out(call->uid, keep, "password_changed", "password changed", password_signed_out,
                   call);
}

static void new_password_hashed(void *ctx, int status, char *hash)
{
    chat_call *call = ctx;
    if (status == AUTH_CANCELLED) {
        chat_call_fail(call, 503, "unavailable", "server is shutting down");
        return;
    }
    if (!hash) {
        chat_call_fail(call, 500, "internal", "password hashing failed");
        return;
    }
    store_req *r = chat_call_store_req(call, STORE_USER_PASSWORD, password_stored);
    if (!r) {
        free(hash);
        return;
    }
    r->password_hash = hash; /* the request owns it now */
    auth_token_hash(call->token, r->token_hash);
    /* from now until the store answers, nothing read about the user is
     * trusted but the caller's token (auth.h) */
    auth_revoke_begin(call->uid, r->token_hash);
    store_submit(chat_store, r);
}

static void old_password_checked(void *ctx, int status, bool ok)
{
    chat_call *call = ctx;
    if (status == AUTH_CANCELLED) {
        chat_call_fail(call, 503, "unavailable", "server is shutting down");
        return;
    }
    if (status != AUTH_OK) {
        chat_call_fail(call, 500, "internal", "password check failed");
        return;
    }
    const char *username = json_string_value(json_object_get(call->user, "username"));
    if (!ok) {
        auth_login_failed(username, call->req->peer_ip, auth_now_ms());
        chat_call_fail(call, 401, "bad_credentials", "old_password is wrong");
        return;
    }
    auth_login_succeeded(username, call->req->peer_ip);
    const char *fresh = json_string_value(json_object_get(call->body, "new_password"));
    int rc = auth_hash_password(fresh, new_password_hashed, call);
    if (rc == AUTH_BUSY)
        chat_call_fail(call, 503, "busy", "too many password jobs in progress; try again shortly");
    else if (rc != AUTH_OK)
        chat_call_fail(call, 500, "internal", "cannot queue password hashing");
}

static void password_user_found(store_req *r)
{
    chat_call *call = r->ctx;
    if (r->status != STORE_OK && r->status != STORE_NOT_FOUND) {
        store_req_free(r);
        chat_store_failed(call);
        return;
    }
    const char *hash = NULL;
    if (r->status == STORE_OK &&
        json_integer_value(json_object_get(r->result, "id")) == (json_int_t)call->uid)
        hash = json_string_value(json_object_get(r->result, "password_hash"));
    if (!hash) {
        store_req_free(r);
        chat_call_fail(call, 400, "no_password",
                       "this account has no password: it signs in through its site (JWT)");
        return;
    }
    const char *old = json_string_value(json_object_get(call->body, "old_password"));
    int rc = auth_verify_password(old, hash, old_password_checked, call);
    store_req_free(r); /* the hash was copied */
    if (rc == AUTH_BUSY)
        chat_call_fail(call, 503, "busy", "too many logins in progress; try again shortly");
    else if (rc != AUTH_OK)
        chat_call_fail(call, 500, "internal", "cannot queue password check");
}

void chat_do_password(chat_call *call)
{
    bool failed;
    chat_want_string(call, call->body, "old_password", 1, PASSWORD_MAX, true, &failed);
    if (failed)
        return;
    chat_want_string(call, call->body, "new_password", PASSWORD_MIN, PASSWORD_MAX, true, &failed);
    if (failed)
        return;
    if (!call->token || auth_is_jwt(call->token)) {
        chat_call_fail(call, 400, "no_password",
                       "this account has no password: it signs in through its site (JWT)");
        return;
    }
    /* a wrong old password is a failed login of this username: the same
     * limiter, so a stolen token cannot be used to guess the password */
    const char *username = json_string_value(json_object_get(call->user, "username"));
    if (!login_admitted(call, username))
        return;
    store_req *r = chat_call_store_req(call, STORE_USER_BY_NAME, password_user_found);
    if (!r)
        return;
    store_req_set_str(&r->username, username);
    store_submit(chat_store, r);
}

/* POST /user/profile: the picture. Lists and searches read it from the
 * store, so peers see it when they next load them; this node's and the
 * other nodes' token caches forget the user (GET /user/me answers from
 * them), and the user's other devices are told at once. */
static void profile_stored(store_req *r)
{
    chat_call *call = r->ctx;
    if (r->status != STORE_OK) {
        chat_respond_result(r); /* answers the error */
        return;
    }
    auth_user_changed(call->uid);
    if (cluster_enabled()) {
        json_t *body = json_pack("{s:I}", "uid", (json_int_t)call->uid);
        cluster_cast_all("chat.user_changed", body);
        json_decref(body);
    }
    json_t *push = json_pack("{s:s, s:O}", "type", "profile", "user", r->result);
    if (push)
        chat_push_to_user(call->uid, push, call->client_id[0] ? call->client_id : NULL);
    json_decref(push);
    chat_respond_result(r);
}

/* "chat.user_changed" from another node: its token cache forgets uid. */
json_t *chat_remote_user_changed(json_t *body, void *arg)
{
    (void)arg;
    json_t *uid = json_object_get(body, "uid");
    if (json_is_integer(uid) && json_integer_value(uid) > 0)
        auth_user_changed(json_integer_value(uid));
    return NULL;
}

void chat_do_profile(chat_call *call)
{
    bool failed;
    const char *userpic =
        chat_want_string(call, call->body, "userpic", 0, USERPIC_MAX, true, &failed);
    if (failed)
        return;
    if (userpic[0] && !auth_url_is_safe(userpic)) {
        chat_call_fail(call, 400, "bad_field", "userpic must be an http(s) URL or a path");
        return;
    }
    if (!chat_want_self(call) || !chat_send_allowed(call))
        return;
    store_req *r = chat_call_store_req(call, STORE_USER_PROFILE, profile_stored);
    if (!r)
        return;
    store_req_set_str(&r->userpic, userpic);
    store_submit(chat_store, r);
}
