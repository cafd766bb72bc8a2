/* chat: accounts, bind, send, list, unread, history, sync and read receipts
 * over HTTP and the WebSocket (see chat.h). */
#include "chat/chat.h"

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

static const config *chat_cfg;
static store *chat_store;
static uv_loop_t *chat_loop;
static ratelimit *bind_fail_limit; /* failed socket binds per address per minute */
static ratelimit *send_limit;      /* chat messages per user */
static int data_lock_fd = -1;

/* The SQLite store caches users in memory, so two chatd processes must never
 * share a data directory: hold an exclusive lock on it for the process
 * lifetime (not taken with PostgreSQL, which nodes share by design).
 * Only a lock held elsewhere means "another chatd"; any other failure (a
 * read-only or foreign directory) is reported with its own errno. */
static int lock_data_dir(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/chatd.lock", dir);
    data_lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (data_lock_fd < 0) {
        log_error("cannot open the lock file %s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(data_lock_fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        if (e == EWOULDBLOCK)
            log_error("data directory %s is in use by another chatd (%s is locked)", dir, path);
        else
            log_error("cannot lock %s: %s", path, strerror(e));
        close(data_lock_fd);
        data_lock_fd = -1;
        return -1;
    }
    /* a lock file left by an older chatd under a looser umask */
    if (fchmod(data_lock_fd, 0600) != 0)
        log_warn("cannot chmod 0600 %s: %s", path, strerror(errno));
    return 0;
}

/* mkdir -p, new directories 0700 (the umask can only narrow that). An
 * existing directory is left alone, even below parents we may only
 * traverse. */
static int make_data_dir(const char *dir)
{
    char buf[4096];
    size_t len = strlen(dir);
    struct stat st;
    if (stat(dir, &st) == 0)
        return 0; /* check_data_dir says whether it is fit */
    if (len == 0 || len >= sizeof(buf)) {
        log_error("bad data directory \"%s\"", dir);
        return -1;
    }
    memcpy(buf, dir, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        buf[i] = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST) {
            log_error("cannot create the data directory %s: %s", buf, strerror(errno));
            return -1;
        }
        buf[i] = dir[i];
    }
    return 0;
}

/* The data directory holds password hashes and every message: refuse one
 * that others may write to (they could swap the database or its WAL). A
 * 0755 directory is fine: others can list it, the files are 0600. */
static int check_data_dir(const char *dir)
{
    struct stat st;
    if (stat(dir, &st) != 0) {
        log_error("data directory %s: %s", dir, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        log_error("data directory %s is not a directory", dir);
        return -1;
    }
    if (st.st_mode & (S_IWGRP | S_IWOTH)) {
        log_error("data directory %s is writable by group or others (mode %04o); "
                  "run chmod go-w on it",
                  dir, (unsigned)(st.st_mode & 07777));
        return -1;
    }
    return 0;
}

typedef struct chat_call chat_call;
typedef void (*chat_step)(chat_call *call);

/* One request in flight, over HTTP (req) or the socket (client_id). */
struct chat_call {
    http_request *req;
    char client_id[CLIENT_ID_LEN + 1];
    const char *op; /* socket op name, for errors */
    json_t *body;   /* request body or socket message */
    json_t *user;   /* the authenticated user */
    int64_t uid;
    char *token;
    char *password;
    chat_step next;           /* after authentication */
    store_done_fn store_done; /* the answer of the call's store request */
    /* socket binds: the address their failure counts against */
    char peer[PEER_ADDR_MAX];
};

/* ---- calls ------------------------------------------------------------- */

static void call_free(chat_call *call)
{
    json_decref(call->body);
    json_decref(call->user);
    free(call->token);
    if (call->password) {
        memset(call->password, 0, strlen(call->password));
        free(call->password);
    }
    free(call);
}

/* The socket a call came from, if it is still open. */
static conn *call_conn(chat_call *call)
{
    return call->client_id[0] ? registry_find(call->client_id, strlen(call->client_id)) : NULL;
}

/* Answers with an error and frees the call. */
static void call_fail(chat_call *call, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void call_fail(chat_call *call, int status, const char *code, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* a 5xx is our failure, never the client's: say what and where (an
     * unreachable database was logged once by the store, not per request) */
    if (status >= 500 && strcmp(code, "store_unavailable") != 0)
        log_error("chat: %s answered %d %s: %s", call->req ? call->req->path : call->op, status,
                  code, msg);
    if (call->req) {
        http_respond_error(call->req, status, code, "%s", msg);
    } else {
        conn *c = call_conn(call);
        if (c) {
            json_t *extra = json_object();
            json_t *m = json_object_get(call->body, "message");
            json_t *cmid = json_object_get(m ? m : call->body, "client_msg_id");
            if (cmid)
                json_object_set(extra, "client_msg_id", cmid);
            if (call->op)
                json_object_set_new(extra, "op", json_string(call->op));
            gateway_send_error(c, code, msg, extra);
            json_decref(extra);
        }
    }
    call_free(call);
}

/* The store logged the database error itself (store_sqlite.c). */
static void store_failed(chat_call *call)
{
    call_fail(call, 500, "internal", "storage failed; try again");
}

/* Every store answer of a call passes here: STORE_UNAVAILABLE (the
 * database cannot be reached, or a commit's outcome is unknown) is answered
 * the same way for every operation, 503 store_unavailable (a socket send
 * gets an error frame with its client_msg_id; retrying it is safe). */
static void call_store_done(store_req *r)
{
    chat_call *call = r->ctx;
    if (r->status == STORE_UNAVAILABLE) {
        store_req_free(r);
        call_fail(call, 503, "store_unavailable",
                  "the database cannot be reached right now; try again");
        return;
    }
    call->store_done(r);
}

static store_req *call_store_req(chat_call *call, store_op op, store_done_fn done)
{
    call->store_done = done;
    store_req *r = store_req_new(op, call_store_done, call);
    if (!r) {
        call_fail(call, 500, "internal", "out of memory");
        return NULL;
    }
    r->user_id = call->uid;
    r->time = auth_now_ms();
    return r;
}

static char *uid_string(int64_t id, char *buf, size_t cap)
{
    snprintf(buf, cap, "%lld", (long long)id);
    return buf;
}

/* except_id: a device (client_id, on any node) that already knows, or NULL. */
static void push_to_user(int64_t user_id, const json_t *value, const char *except_id)
{
    char uid[24];
    uid_string(user_id, uid, sizeof(uid));
    if (!registry_find_uid(uid, strlen(uid)) && !cluster_enabled())
        return;
    sbuf *frame = gateway_frame_json(value);
    if (!frame)
        return;
    metrics_push(METRICS_PUSH_NOTICE);
    gateway_push_to_uid(uid, strlen(uid), frame, except_id);
    sbuf_unref(frame);
}

/* One text frame from the concatenation of parts, built in place. */
static sbuf *frame_concat(const char *const *parts, size_t n)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += strlen(parts[i]);
    sbuf *frame = sbuf_new(WS_FRAME_HEADER_MAX + len);
    if (!frame)
        return NULL;
    size_t off = ws_frame_header_encode(frame->data, true, WS_OP_TEXT, len, NULL);
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(parts[i]);
        memcpy(frame->data + off, parts[i], l);
        off += l;
    }
    frame->len = (uint32_t)off;
    return frame;
}

/* Pushes {"type":"message","message":<text>} to every device of the
 * recipient and to the sender's devices but origin_id (a client_id or
 * NULL): one frame for all. */
static void push_message_text(const char *text, int64_t to_id, int64_t from_id,
                              const char *origin_id)
{
    const conn *origin = origin_id ? registry_find(origin_id, strlen(origin_id)) : NULL;
    char to[24], from[24];
    uid_string(to_id, to, sizeof(to));
    uid_string(from_id, from, sizeof(from));
    uid_entry *a = registry_find_uid(to, strlen(to));
    uid_entry *b = registry_find_uid(from, strlen(from));
    if (!a && (!b || (b->count == 1 && b->conns == origin)) && !cluster_enabled())
        return; /* nobody to tell */
    const char *parts[] = {"{\"type\":\"message\",\"message\":", text, "}"};
    sbuf *frame = frame_concat(parts, 3);
    if (!frame)
        return;
    metrics_push(METRICS_PUSH_MESSAGE);
    gateway_push_to_uid(to, strlen(to), frame, NULL);
    gateway_push_to_uid(from, strlen(from), frame, origin_id);
    sbuf_unref(frame);
}

static void push_message(const json_t *message, int64_t from_id, const char *origin_id)
{
    char *text = json_dumps(message, JSON_COMPACT);
    if (text)
        push_message_text(text, json_integer_value(json_object_get(message, "to_id")), from_id,
                          origin_id);
    free(text);
}

/* ---- validation -------------------------------------------------------- */

/* A string field within [min, max] bytes; answers 400 and returns NULL if not. */
static const char *want_string(chat_call *call, json_t *obj, const char *field, size_t min,
                               size_t max, bool required, bool *failed)
{
    json_t *v = json_object_get(obj, field);
    *failed = false;
    if (!v || json_is_null(v)) {
        if (required) {
            call_fail(call, 400, "missing_field", "%s is required", field);
            *failed = true;
        }
        return NULL;
    }
    if (!json_is_string(v)) {
        call_fail(call, 400, "bad_field", "%s must be a string", field);
        *failed = true;
        return NULL;
    }
    size_t len = json_string_length(v);
    if (len < min || len > max || strlen(json_string_value(v)) != len) {
        call_fail(call, 400, "bad_field", "%s must be %zu to %zu bytes", field, min, max);
        *failed = true;
        return NULL;
    }
    return json_string_value(v);
}

/* A positive user id given as a JSON integer or a decimal string. */
static int64_t want_user_id(chat_call *call, json_t *obj, const char *field)
{
    json_t *v = json_object_get(obj, field);
    long long id = 0;
    if (json_is_integer(v)) {
        id = json_integer_value(v);
    } else if (json_is_string(v)) {
        char *end;
        id = strtoll(json_string_value(v), &end, 10);
        if (*end || !json_string_length(v))
            id = 0;
    } else if (!v) {
        call_fail(call, 400, "missing_field", "%s is required", field);
        return 0;
    }
    if (id <= 0) {
        call_fail(call, 400, "bad_field", "%s must be a user id (a positive integer)", field);
        return 0;
    }
    return id;
}

static bool type_allowed(const char *type)
{
    size_t n = strlen(type);
    for (const char *p = chat_cfg->message_types; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && strncmp(p, type, n) == 0)
            return true;
        if (!end)
            break;
        p = end + 1;
    }
    return false;
}

/* The raw (still encoded) value of the first query parameter called name;
 * false when it is absent. http_query_param cannot tell an absent parameter
 * from a bad one, and a bad value must be refused, not replaced by a default. */
static bool query_raw(const http_request *req, const char *name, const char **val, size_t *len)
{
    size_t name_len = strlen(name);
    for (const char *p = req->query; *p;) {
        size_t n = strcspn(p, "&");
        const char *eq = memchr(p, '=', n);
        size_t key_len = eq ? (size_t)(eq - p) : n;
        if (key_len == name_len && memcmp(p, name, name_len) == 0) {
            *val = eq ? eq + 1 : p + n;
            *len = eq ? n - key_len - 1 : 0;
            return true;
        }
        if (!p[n])
            break;
        p += n + 1;
    }
    return false;
}

/* Decodes query parameter name into out: 1 when present and good, 0 when
 * absent, -1 after answering 400 when it is empty, badly escaped, holds a NUL
 * or is longer than cap - 1 bytes; what says what it must be. */
static int query_text(chat_call *call, const char *name, char *out, size_t cap, const char *what)
{
    const char *raw;
    size_t raw_len;
    if (!query_raw(call->req, name, &raw, &raw_len))
        return 0;
    int n = http_url_decode(raw, raw_len, out, cap, true);
    if (n <= 0 || strlen(out) != (size_t)n) {
        call_fail(call, 400, "bad_field", "%s must be %s", name, what);
        return -1;
    }
    return 1;
}

/* An integer query parameter of decimal digits only: def when absent; -1
 * (after answering 400 naming it) when present and bad or out of range. */
static int64_t query_int(chat_call *call, const char *name, int64_t def, int64_t min, int64_t max)
{
    char what[80], buf[24]; /* 19 digits hold any int64 */
    snprintf(what, sizeof(what), "an integer from %lld to %lld", (long long)min, (long long)max);
    int r = query_text(call, name, buf, sizeof(buf), what);
    if (r <= 0)
        return r == 0 ? def : -1;
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (strspn(buf, "0123456789") != strlen(buf) || *end || errno == ERANGE || v < min || v > max) {
        call_fail(call, 400, "bad_field", "%s must be %s", name, what);
        return -1;
    }
    return v;
}

/* ---- register / login / logout / me / search --------------------------- */

static void respond_with_token(chat_call *call, json_t *user);

static void token_created(store_req *r)
{
    chat_call *call = r->ctx;
    if (r->status != STORE_OK) {
        int status = r->status;
        store_req_free(r);
        if (status == STORE_NOT_FOUND) /* disabled since its password was checked */
            call_fail(call, 403, "account_disabled", "this account is disabled");
        else
            store_failed(call);
        return;
    }
    store_req_free(r);
    json_t *data = json_pack("{s:s,s:O}", "token", call->token, "user", call->user);
    http_respond_ok(call->req, data);
    call_free(call);
}

static void respond_with_token(chat_call *call, json_t *user)
{
    char token[AUTH_TOKEN_TEXT_LEN + 1];
    uint8_t hash[32];
    auth_new_token(token, hash);
    call->token = strdup(token);
    json_decref(call->user);
    call->user = json_incref(user);
    json_object_del(call->user, "password_hash");
    json_object_del(call->user, "disabled");
    store_req *r = call_store_req(call, STORE_TOKEN_CREATE, token_created);
    if (!r)
        return;
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
        call_fail(call, 409, "username_taken", "username is already taken");
    else if (status != STORE_OK)
        store_failed(call);
    else
        respond_with_token(call, user);
    json_decref(user);
}

static void password_hashed(void *ctx, int status, char *hash)
{
    chat_call *call = ctx;
    if (status == AUTH_CANCELLED) {
        call_fail(call, 503, "unavailable", "server is shutting down");
        return;
    }
    if (!hash) {
        call_fail(call, 500, "internal", "password hashing failed");
        return;
    }
    store_req *r = call_store_req(call, STORE_USER_CREATE, user_created);
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
        call_fail(call, 400, "bad_field", "%s", why);
        return false;
    }
    json_object_set_new(call->body, "username", json_string(clean));
    return true;
}

static void do_register(chat_call *call)
{
    bool failed;
    /* bytes as sent; names_clean bounds the NFC form to USERNAME_MAX */
    const char *username =
        want_string(call, call->body, "username", USERNAME_MIN, USERNAME_MAX * 4, true, &failed);
    if (failed || !validate_username(call, username))
        return;
    const char *password =
        want_string(call, call->body, "password", PASSWORD_MIN, PASSWORD_MAX, true, &failed);
    if (failed)
        return;
    const char *userpic = want_string(call, call->body, "userpic", 0, USERPIC_MAX, false, &failed);
    if (failed)
        return;
    if (userpic && userpic[0] && !auth_url_is_safe(userpic)) {
        call_fail(call, 400, "bad_field", "userpic must be an http(s) URL or a path");
        return;
    }
    /* checked here, counted once the hashing is queued: a refused sign-up
     * (400, 429, 503) costs its address nothing */
    const char *addr = call->req->peer_ip;
    if (!auth_register_would_allow(addr, auth_now_ms())) {
        metrics_limit_refused(METRICS_LIMIT_REGISTER);
        call_fail(call, 429, "rate_limited",
                  "too many sign-ups from this address (%lld per hour); try again later",
                  (long long)chat_cfg->register_rate);
        return;
    }
    int rc = auth_hash_password(password, password_hashed, call);
    if (rc == AUTH_BUSY) {
        call_fail(call, 503, "busy", "too many sign-ups in progress; try again shortly");
        return;
    }
    if (rc != AUTH_OK) {
        call_fail(call, 500, "internal", "cannot queue password hashing");
        return;
    }
    auth_register_allowed(addr, auth_now_ms());
}

static void password_checked(void *ctx, int status, bool ok)
{
    chat_call *call = ctx;
    if (status == AUTH_CANCELLED) {
        call_fail(call, 503, "unavailable", "server is shutting down");
        return;
    }
    if (status != AUTH_OK) {
        call_fail(call, 500, "internal", "password check failed");
        return;
    }
    const char *username = json_string_value(json_object_get(call->body, "username"));
    if (!ok || !call->user) {
        auth_login_failed(username, call->req->peer_ip, auth_now_ms());
        call_fail(call, 401, "bad_credentials", "wrong username or password");
        return;
    }
    auth_login_succeeded(username, call->req->peer_ip);
    /* told only to who knows the password: a stranger learns nothing */
    if (json_is_true(json_object_get(call->user, "disabled"))) {
        call_fail(call, 403, "account_disabled", "this account is disabled");
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
        store_failed(call);
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
        call_fail(call, 503, "busy", "too many logins in progress; try again shortly");
    else if (rc != AUTH_OK)
        call_fail(call, 500, "internal", "cannot queue password check");
}

static void do_login(chat_call *call)
{
    bool failed;
    const char *username =
        want_string(call, call->body, "username", 1, USERNAME_MAX * 4, true, &failed);
    if (failed)
        return;
    want_string(call, call->body, "password", 1, PASSWORD_MAX, true, &failed);
    if (failed)
        return;
    int verdict = auth_login_check(username, call->req->peer_ip, auth_now_ms());
    if (verdict != AUTH_LOGIN_OK) {
        metrics_limit_refused(METRICS_LIMIT_LOGIN);
        call_fail(call, 429, "rate_limited", "too many login attempts for this %s; wait a minute",
                  verdict == AUTH_LOGIN_ADDR_LIMITED ? "address" : "username");
        return;
    }
    store_req *r = call_store_req(call, STORE_USER_BY_NAME, login_user_found);
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
        store_failed(call);
        return;
    }
    auth_forget(call->token); /* again: a resolve may have cached it meanwhile */
    char uid[24];
    uid_string(call->uid, uid, sizeof(uid));
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
    call_free(call);
}

/* A logout on another node: forget the token here, close what it bound. */
static json_t *remote_logout(json_t *body, void *arg)
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

static void do_logout(chat_call *call)
{
    auth_forget(call->token);
    /* A JWT is revoked until its exp (a list in the store, checked whenever
     * a JWT is resolved); an opaque token is deleted. */
    bool jwt = auth_is_jwt(call->token);
    store_req *r = call_store_req(call, jwt ? STORE_JWT_REVOKE : STORE_TOKEN_DELETE, logout_done);
    if (!r)
        return;
    auth_token_hash(call->token, r->token_hash);
    if (jwt)
        r->expires = auth_jwt_expiry_ms(call->token);
    store_submit(chat_store, r);
}

static void do_me(chat_call *call)
{
    http_respond_ok(call->req, json_incref(call->user));
    call_free(call);
}

/* Answers with the store's result as data (HTTP only). */
static void respond_result(store_req *r)
{
    chat_call *call = r->ctx;
    if (r->status != STORE_OK) {
        int status = r->status;
        store_req_free(r);
        if (status == STORE_NOT_FOUND)
            call_fail(call, 404, "not_found", "no such user");
        else
            store_failed(call);
        return;
    }
    http_respond_ok(call->req, json_incref(r->result));
    store_req_free(r);
    call_free(call);
}

static void do_search(chat_call *call)
{
    char q[USERNAME_MAX * 4 + 1], what[64];
    snprintf(what, sizeof(what), "1 to %d bytes of a username", USERNAME_MAX * 4);
    int n = query_text(call, "q", q, sizeof(q), what);
    if (n == 0)
        call_fail(call, 400, "missing_field", "q is required: %s", what);
    if (n <= 0)
        return;
    store_req *r = call_store_req(call, STORE_USER_SEARCH, respond_result);
    if (!r)
        return;
    store_req_set_str(&r->query, q);
    r->limit = SEARCH_LIMIT;
    store_submit(chat_store, r);
}

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
    call_free(call);
}

/* Binds connection c to the call's user; answers either way. */
static void bind_conn(chat_call *call, conn *c)
{
    char uid[24];
    uid_string(call->uid, uid, sizeof(uid));
    if (!c) {
        call_fail(call, 404, "not_found", "client_id is not connected");
        return;
    }
    uint8_t hash[32];
    const char *token = call_token(call);
    if (token)
        auth_token_hash(token, hash);
    bind_error err = {0};
    bind_socket(c, uid, token ? hash : NULL, &err);
    if (err.status) {
        if (err.status == 429 && call->req) /* over a socket, call_fail tells it */
            gateway_send_error(c, err.code, err.msg, NULL);
        call_fail(call, err.status, err.code, "%s", err.msg);
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
    call_free(call);
}

/* POST /chat/bind for a socket of another node: that node checks the nonce
 * (its own key made it) and binds; this one answers. */
static json_t *remote_bind(json_t *body, void *arg)
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
        call_fail(call, 503, "cluster_timeout",
                  "the node of this client_id did not answer in time; try again");
    } else if (!answer) { /* no node holds it: no nonce can be right, and a stranger learns nothing
                           */
        call_fail(call, 403, "bad_nonce",
                  "bind_nonce is not the one the socket of this client_id got in its init message");
    } else if (json_object_get(answer, "bound")) {
        respond_bound(call, json_string_value(json_object_get(call->body, "client_id")));
    } else {
        int status = (int)json_integer_value(json_object_get(answer, "status"));
        const char *code = json_string_value(json_object_get(answer, "code"));
        const char *msg = json_string_value(json_object_get(answer, "msg"));
        call_fail(call, status >= 400 && status < 600 ? status : 500, code ? code : "internal",
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
    uid_string(call->uid, uid, sizeof(uid));
    json_t *body = json_pack("{s:s,s:s,s:s,s:s}", "client_id", id, "bind_nonce", nonce, "uid", uid,
                             "token_hash", hex);
    cluster_call *cc = cluster_call_new("chat.bind", remote_bind_done, call);
    int rc = (cc && body) ? cluster_call_client(cc, id, strlen(id), body) : -1;
    json_decref(body);
    if (rc < 0) {
        cluster_call_free(cc);
        call_fail(call, 500, "internal", "out of memory");
        return 0;
    }
    return cluster_call_start(cc, 2000);
}

static void do_bind(chat_call *call)
{
    if (!call->req) {
        bind_conn(call, call_conn(call));
        return;
    }
    /* Over HTTP the caller must show the socket's bind_nonce (from its init
     * message): a client_id alone is an address, not a proof of holding the
     * socket. The nonce is checked first, so a stranger learns nothing, not
     * even whether the client_id is online. */
    bool failed;
    const char *id = want_string(call, call->body, "client_id", 1, 64, true, &failed);
    if (failed)
        return;
    const char *nonce = want_string(call, call->body, "bind_nonce", 1, 64, true, &failed);
    if (failed)
        return;
    /* a socket not held here is forwarded in a cluster, also one with our
     * tag: another node may share it (its node checks the nonce) */
    conn *c = registry_find(id, strlen(id));
    if (!c && cluster_enabled() && bind_remote(call, id, nonce) == 0)
        return;
    if (!c && cluster_is_remote_client(id, strlen(id))) {
        call_fail(call, 503, "cluster_unavailable",
                  "the socket is on another node and the cluster bus is unreachable; try again");
        return;
    }
    if (!gateway_bind_nonce_ok(id, strlen(id), nonce, strlen(nonce))) {
        call_fail(call, 403, "bad_nonce",
                  "bind_nonce is not the one the socket of this client_id got in its init message");
        return;
    }
    bind_conn(call, c);
}

/* ---- send -------------------------------------------------------------- */

static void message_stored(store_req *r)
{
    chat_call *call = r->ctx;
    if (r->status != STORE_OK) {
        int status = r->status;
        store_req_free(r);
        if (status == STORE_NOT_FOUND)
            call_fail(call, 404, "not_found", "to_id: no such user");
        else
            store_failed(call);
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
    conn *origin = call_conn(call);
    if (call->req) {
        push_message(message, call->uid, call->client_id[0] ? call->client_id : NULL);
        http_respond_ok(call->req, message);
        call_free(call);
        return;
    }
    /* the message is serialized once, for the push frame and the ack */
    char *text = json_dumps(message, JSON_COMPACT);
    char *cmid = json_dumps(json_object_get(message, "client_msg_id"), JSON_ENCODE_ANY);
    if (text && cmid) {
        push_message_text(text, json_integer_value(json_object_get(message, "to_id")), call->uid,
                          call->client_id[0] ? call->client_id : NULL);
        if (origin) {
            const char *parts[] = {"{\"type\":\"ack\",\"client_msg_id\":", cmid,
                                   ",\"message\":", text, "}"};
            sbuf *ack = frame_concat(parts, 5);
            if (ack) {
                ws_send_frame(origin, ack);
                sbuf_unref(ack);
            }
        }
    }
    free(text);
    free(cmid);
    json_decref(message);
    call_free(call);
}

/* --send-rate per user, over HTTP and the socket together: a fixed window of
 * two seconds allows 2 * send_rate messages, i.e. send_rate a second on
 * average and bursts of twice that. Checked after validation, so a refused
 * malformed message costs no allowance. */
static bool send_allowed(int64_t uid)
{
    if (chat_cfg->send_rate == 0)
        return true;
    char key[24];
    uid_string(uid, key, sizeof(key));
    return ratelimit_hit(send_limit, key, strlen(key), (int64_t)uv_now(chat_loop));
}

static void do_send(chat_call *call)
{
    json_t *m = call->req ? call->body : json_object_get(call->body, "message");
    if (!json_is_object(m)) {
        call_fail(call, 400, "missing_field", "message must be an object");
        return;
    }
    int64_t to = want_user_id(call, m, "to_id");
    if (!to)
        return;
    if (to == call->uid) {
        call_fail(call, 400, "bad_field", "to_id must be another user");
        return;
    }
    bool failed;
    const char *type = want_string(call, m, "type", 1, 32, true, &failed);
    if (failed)
        return;
    if (!type_allowed(type)) {
        call_fail(call, 400, "bad_field", "type must be one of: %s", chat_cfg->message_types);
        return;
    }
    const char *data = want_string(call, m, "data", 1, (size_t)chat_cfg->max_text, true, &failed);
    if (failed)
        return;
    if (strcmp(type, "image") == 0 && !auth_url_is_safe(data)) {
        call_fail(call, 400, "bad_field", "data of an image must be an http(s) URL or a path");
        return;
    }
    const char *cmid = want_string(call, m, "client_msg_id", 1, CLIENT_MSG_ID_MAX, false, &failed);
    if (failed)
        return;
    if (call->req) { /* the device sending over HTTP may name itself */
        const char *self = want_string(call, m, "client_id", 1, 64, false, &failed);
        if (failed)
            return;
        if (self)
            snprintf(call->client_id, sizeof(call->client_id), "%s", self);
    }
    if (!send_allowed(call->uid)) {
        metrics_limit_refused(METRICS_LIMIT_SEND);
        call_fail(call, 429, "rate_limited",
                  "too many messages: at most %lld a second (bursts of %lld); slow down",
                  (long long)chat_cfg->send_rate, (long long)chat_cfg->send_rate * 2);
        return;
    }
    store_req *r = call_store_req(call, STORE_MESSAGE_SEND, message_stored);
    if (!r)
        return;
    r->peer_id = to;
    if (store_req_set_str(&r->msg_type, type) < 0 || store_req_set_str(&r->msg_data, data) < 0 ||
        store_req_set_str(&r->client_msg_id, cmid) < 0) {
        store_req_free(r);
        call_fail(call, 500, "internal", "out of memory");
        return;
    }
    store_submit(chat_store, r);
}

/* ---- list / history / sync / unread / read ----------------------------- */

static void do_list(chat_call *call)
{
    store_req *r = call_store_req(call, STORE_CHAT_LIST, respond_result);
    if (r)
        store_submit(chat_store, r);
}

static void do_unread(chat_call *call)
{
    store_req *r = call_store_req(call, STORE_UNREAD, respond_result);
    if (r)
        store_submit(chat_store, r);
}

static void do_history(chat_call *call)
{
    int64_t peer = query_int(call, "userid", 0, 1, INT64_MAX);
    if (peer < 0)
        return;
    if (peer == 0) {
        call_fail(call, 400, "missing_field", "userid is required");
        return;
    }
    int64_t before = query_int(call, "before", 0, 0, INT64_MAX);
    if (before < 0)
        return;
    int64_t def = HISTORY_DEFAULT < chat_cfg->page_limit ? HISTORY_DEFAULT : chat_cfg->page_limit;
    int64_t limit = query_int(call, "limit", def, 1, chat_cfg->page_limit);
    if (limit < 0)
        return;
    store_req *r = call_store_req(call, STORE_HISTORY, respond_result);
    if (!r)
        return;
    r->peer_id = peer;
    r->before = before;
    r->limit = limit;
    store_submit(chat_store, r);
}

static void do_sync(chat_call *call)
{
    int64_t after = query_int(call, "after", 0, 0, INT64_MAX);
    if (after < 0)
        return;
    int64_t limit = query_int(call, "limit", chat_cfg->page_limit, 1, chat_cfg->page_limit);
    if (limit < 0)
        return;
    store_req *r = call_store_req(call, STORE_SYNC, respond_result);
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

/* POST /chat/sync {"cursors": {"<peer id>": <seq>, ...}, "limit": n}: the
 * messages after each cursor (see STORE_SYNC_CURSORS). cursors may be left
 * out (every cursor 0, a new device); it is copied for the store thread. */
static void do_sync_cursors(chat_call *call)
{
    json_t *cursors = json_object_get(call->body, "cursors");
    if (cursors && !json_is_null(cursors)) {
        if (!json_is_object(cursors)) {
            call_fail(call, 400, "bad_field",
                      "cursors must be an object of peer user id -> last seq held");
            return;
        }
        if (json_object_size(cursors) > CURSORS_MAX) {
            call_fail(call, 400, "bad_field", "cursors must name at most %d conversations",
                      CURSORS_MAX);
            return;
        }
        const char *key;
        json_t *v;
        json_object_foreach(cursors, key, v)
        {
            if (!canonical_id(key)) {
                call_fail(call, 400, "bad_field",
                          "cursors: key \"%.40s\" is not a user id (a positive decimal integer)",
                          key);
                return;
            }
            if (!json_is_integer(v) || json_integer_value(v) < 0) {
                call_fail(call, 400, "bad_field",
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
            call_fail(call, 400, "bad_field", "limit must be an integer from 1 to %lld",
                      (long long)chat_cfg->page_limit);
            return;
        }
        limit = json_integer_value(lim);
    }
    store_req *r = call_store_req(call, STORE_SYNC_CURSORS, respond_result);
    if (!r)
        return;
    r->cursors = json_is_object(cursors) ? json_deep_copy(cursors) : json_object();
    if (!r->cursors) {
        store_req_free(r);
        call_fail(call, 500, "internal", "out of memory");
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
            call_fail(call, 404, "not_found", "userid: no such user");
        else
            store_failed(call);
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
        push_to_user(call->uid, read, call->client_id[0] ? call->client_id : NULL);
        json_decref(read);
        json_t *receipt = json_pack("{s:s,s:I,s:I}", "type", "receipt", "userid",
                                    (json_int_t)call->uid, "last_read_id", last_read);
        push_to_user(peer, receipt, NULL);
        json_decref(receipt);
    }
    http_respond_ok(call->req, json_pack("{s:I}", "total", total));
    call_free(call);
}

static void do_read(chat_call *call)
{
    int64_t peer = want_user_id(call, call->body, "userid");
    if (!peer)
        return;
    bool failed;
    const char *self = want_string(call, call->body, "client_id", 1, 64, false, &failed);
    if (failed)
        return;
    if (self)
        snprintf(call->client_id, sizeof(call->client_id), "%s", self);
    store_req *r = call_store_req(call, STORE_READ, read_done);
    if (!r)
        return;
    r->peer_id = peer;
    store_submit(chat_store, r);
}

/* ---- routing ----------------------------------------------------------- */

static void authenticated(void *ctx, int status, json_t *user)
{
    chat_call *call = ctx;
    if (status == 503) {
        call_fail(call, 503, "store_unavailable",
                  "the database cannot be reached right now; try again");
        return;
    }
    if (status != 0) {
        call_fail(call, status, status == 401 ? "unauthorized" : "internal",
                  status == 401 ? "token is missing, wrong or expired" : "storage failed");
        return;
    }
    call->user = user;
    call->uid = json_integer_value(json_object_get(user, "id"));
    call->next(call);
}

static const char *request_token(http_request *req)
{
    const char *auth = http_header(req, "Authorization");
    if (auth && strncasecmp(auth, "Bearer ", 7) == 0)
        return auth + 7;
    return http_header(req, "token");
}

typedef struct chat_route {
    int method;
    const char *path;
    bool auth;
    bool json_body;
    chat_step step;
} chat_route;

static const chat_route routes[] = {
    {HTTP_POST, "/user/register", false, true, do_register},
    {HTTP_POST, "/user/login", false, true, do_login},
    {HTTP_POST, "/user/logout", true, false, do_logout},
    {HTTP_GET, "/user/me", true, false, do_me},
    {HTTP_GET, "/user/search", true, false, do_search},
    {HTTP_POST, "/chat/bind", true, true, do_bind},
    {HTTP_POST, "/chat/send", true, true, do_send},
    {HTTP_GET, "/chat/list", true, false, do_list},
    {HTTP_GET, "/chat/history", true, false, do_history},
    {HTTP_GET, "/chat/sync", true, false, do_sync},
    {HTTP_POST, "/chat/sync", true, true, do_sync_cursors},
    {HTTP_POST, "/chat/read", true, true, do_read},
    {HTTP_GET, "/chat/unread", true, false, do_unread},
};

bool chat_handles(const char *path)
{
    return strncmp(path, "/user/", 6) == 0 || strncmp(path, "/chat/", 6) == 0 ||
           admin_handles(path);
}

void chat_handle_request(http_request *req)
{
    if (admin_handles(req->path)) {
        admin_handle_request(req);
        return;
    }
    const chat_route *route = NULL;
    bool path_known = false;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
        if (strcmp(routes[i].path, req->path) == 0) {
            path_known = true;
            if (routes[i].method == req->method ||
                (routes[i].method == HTTP_GET && req->method == HTTP_HEAD))
                route = &routes[i];
        }
    if (!route) {
        if (path_known)
            http_respond_error(req, 405, "method_not_allowed", "%s is not allowed on %s",
                               req->method_name, req->path);
        else
            http_respond_error(req, 404, "not_found", "no such endpoint %s", req->path);
        return;
    }
    chat_call *call = calloc(1, sizeof(*call));
    if (!call) {
        http_respond_error(req, 500, "internal", "out of memory");
        return;
    }
    call->req = req;
    call->next = route->step;
    if (route->json_body) {
        json_error_t err;
        call->body = req->body_len ? json_loadb(req->body, req->body_len, 0, &err) : NULL;
        if (!json_is_object(call->body)) {
            call_fail(call, 400, "bad_json", "body must be a JSON object");
            return;
        }
    }
    if (!route->auth) {
        route->step(call);
        return;
    }
    const char *token = request_token(req);
    call->token = token ? strdup(token) : NULL;
    auth_resolve(token, authenticated, call);
}

/* ---- socket hook ------------------------------------------------------- */

/* A socket bind with a token that is not cached costs a lookup on the one
 * storage thread, so anonymous binds with made-up tokens are bounded: one
 * bind in flight per connection, --bind-rate failed binds a minute per
 * address (past it, binds are refused without a lookup), and a connection is
 * closed after BIND_FAILS_MAX failed or refused binds. */
static void peer_addr(conn *c, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    out[0] = '\0';
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET)
        uv_ip4_name((struct sockaddr_in *)&ss, out, cap);
    else if (ss.ss_family == AF_INET6)
        uv_ip6_name((struct sockaddr_in6 *)&ss, out, cap);
}

static void bind_failed(conn *c)
{
    uint32_t n = ((c->flags & CONN_BIND_FAILS) >> CONN_BIND_FAILS_SHIFT) + 1;
    if (n > BIND_FAILS_MAX)
        n = BIND_FAILS_MAX;
    c->flags = (c->flags & ~(uint32_t)CONN_BIND_FAILS) | (n << CONN_BIND_FAILS_SHIFT);
    if (n >= BIND_FAILS_MAX)
        ws_close(c, WS_CLOSE_POLICY, "too many failed binds");
}

/* True when the bind may look its token up; else answers and frees call. */
static bool bind_admitted(conn *c, chat_call *call)
{
    if (c->flags & CONN_BIND_PENDING) {
        metrics_limit_refused(METRICS_LIMIT_BIND);
        call_fail(call, 429, "rate_limited", "a bind is already under way on this connection");
        return false;
    }
    peer_addr(c, call->peer, sizeof(call->peer));
    if (!ratelimit_allows(bind_fail_limit, call->peer, strlen(call->peer),
                          (int64_t)uv_now(chat_loop))) {
        metrics_limit_refused(METRICS_LIMIT_BIND);
        call_fail(call, 429, "rate_limited",
                  "too many failed binds from this address; wait a minute");
        bind_failed(c);
        return false;
    }
    return true;
}

static void bind_authenticated(void *ctx, int status, json_t *user)
{
    chat_call *call = ctx;
    conn *c = call_conn(call);
    if (c)
        c->flags &= ~(uint32_t)CONN_BIND_PENDING;
    if (status == 401) /* counted even when the socket is gone: closing must not dodge it */
        ratelimit_hit(bind_fail_limit, call->peer, strlen(call->peer), (int64_t)uv_now(chat_loop));
    authenticated(ctx, status, user); /* answers; c stays valid until the loop closes it */
    if (c && status == 401)
        bind_failed(c);
}

static bool chat_socket_message(conn *c, const char *type, json_t *msg)
{
    bool is_bind = strcmp(type, "bind") == 0;
    if (!is_bind && strcmp(type, "send") != 0)
        return false;
    chat_call *call = calloc(1, sizeof(*call));
    if (!call) {
        gateway_send_error(c, "internal", "out of memory", NULL);
        return true;
    }
    memcpy(call->client_id, c->client_id, sizeof(call->client_id));
    call->op = is_bind ? "bind" : "send";
    call->body = json_incref(msg);
    if (is_bind) {
        if (!bind_admitted(c, call))
            return true;
        c->flags |= CONN_BIND_PENDING;
        call->next = do_bind;
        json_t *token = json_object_get(msg, "token");
        auth_resolve(json_string_value(token), bind_authenticated, call);
        return true;
    }
    if (!(c->flags & CONN_CHAT_BOUND) || !c->uid) {
        call_fail(call, 401, "not_bound", "bind this connection with a token before sending");
        return true;
    }
    call->uid = strtoll(c->uid->name, NULL, 10);
    do_send(call);
    return true;
}

/* SIGHUP: the limiters were sized at start; the new config is read at each
 * use otherwise (config.h). */
static int chat_reload(const config *old_cfg, const config *new_cfg)
{
    if (new_cfg->send_rate != old_cfg->send_rate)
        ratelimit_set_limit(send_limit, (uint32_t)(new_cfg->send_rate * 2));
    if (new_cfg->bind_rate != old_cfg->bind_rate)
        ratelimit_set_limit(bind_fail_limit, (uint32_t)new_cfg->bind_rate);
    return 0;
}

int chat_init(uv_loop_t *loop, const config *cfg)
{
    chat_cfg = cfg;
    chat_loop = loop;
    bind_fail_limit = ratelimit_new((uint32_t)cfg->bind_rate, 60 * 1000, LIMITER_KEYS_MAX);
    send_limit = ratelimit_new((uint32_t)(cfg->send_rate * 2), 2 * 1000, LIMITER_KEYS_MAX);
    if (!bind_fail_limit || !send_limit) {
        log_error("out of memory");
        return -1;
    }
    reload_register("chat", chat_reload);
    char err[256] = "";
    store_options so = {
        .store = cfg->store,
        .data_dir = cfg->data_dir,
        .durability =
            strcmp(cfg->durability, "normal") == 0 ? STORE_DURABLE_NORMAL : STORE_DURABLE_FULL,
        .connections = (int)cfg->store_connections,
    };
    bool pg = store_is_postgres(cfg->store);
    /* SQLite: the store creates the directory too, but the lock needs it
     * first. PostgreSQL: no data directory, and several chatd share the
     * database by design. */
    if (!pg && make_data_dir(cfg->data_dir) < 0)
        return -1;
    if (!pg && (check_data_dir(cfg->data_dir) < 0 || lock_data_dir(cfg->data_dir) < 0))
        return -1;
    chat_store = store_open_opts(loop, &so, err, sizeof(err));
    if (!chat_store) {
        /* the URI may hold a password: never logged */
        if (pg)
            log_error("cannot open the PostgreSQL store: %s", err);
        else
            log_error("cannot open the store in %s: %s", cfg->data_dir, err);
        return -1;
    }

    if (auth_init(loop, cfg, chat_store) < 0) {
        log_error("libsodium failed to initialize");
        return -1;
    }
    gateway_set_message_hook(chat_socket_message);
    cluster_register("chat.bind", remote_bind, NULL);
    cluster_register("chat.logout", remote_logout, NULL);
    admin_init(loop, chat_store);
    if (pg)
        log_info("chat store: PostgreSQL, %lld connections (durability %s)",
                 (long long)cfg->store_connections, cfg->durability);
    else
        log_info("chat store: %s/chatd.db (durability %s)", cfg->data_dir, cfg->durability);
    return 0;
}

bool chat_store_ok(const char **backend)
{
    if (backend)
        *backend = chat_store ? store_backend_name(chat_store) : "none";
    return chat_store && store_health(chat_store) == 0;
}

void chat_stop(void)
{
    auth_stop();
}

void chat_shutdown(void)
{
    if (chat_store)
        store_close(chat_store);
    chat_store = NULL;
    auth_shutdown();
    ratelimit_free(bind_fail_limit);
    ratelimit_free(send_limit);
    bind_fail_limit = send_limit = NULL;
    if (data_lock_fd >= 0)
        close(data_lock_fd);
    data_lock_fd = -1;
}
