/* chat: the chat service's routing of HTTP requests and socket messages,
 * its start-up and shutdown (see chat.h; the endpoints live in one file per
 * resource, see chat_internal.h). */
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
#include "chat/chat_internal.h"
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

const config *chat_cfg;
store *chat_store;
uv_loop_t *chat_loop;
ratelimit *chat_bind_fail_limit; /* failed socket binds per address per minute */
ratelimit *chat_send_limit;      /* chat messages per user */
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

/* ---- routing ----------------------------------------------------------- */

static void authenticated(void *ctx, int status, json_t *user)
{
    chat_call *call = ctx;
    if (status == 503) {
        chat_call_fail(call, 503, "store_unavailable",
                       "the database cannot be reached right now; try again");
        return;
    }
    if (status != 0) {
        chat_call_fail(call, status, status == 401 ? "unauthorized" : "internal",
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
    {HTTP_POST, "/user/register", false, true, chat_do_register},
    {HTTP_POST, "/user/login", false, true, chat_do_login},
    {HTTP_POST, "/user/logout", true, false, chat_do_logout},
    {HTTP_GET, "/user/me", true, false, chat_do_me},
    {HTTP_GET, "/user/search", true, false, chat_do_search},
    {HTTP_POST, "/user/settings", true, true, chat_do_settings},
    {HTTP_POST, "/user/password", true, true, chat_do_password},
    {HTTP_POST, "/user/profile", true, true, chat_do_profile},
    {HTTP_POST, "/chat/bind", true, true, chat_do_bind},
    {HTTP_POST, "/chat/send", true, true, chat_do_send},
    {HTTP_GET, "/chat/list", true, false, chat_do_list},
    {HTTP_GET, "/chat/history", true, false, chat_do_history},
    {HTTP_GET, "/chat/sync", true, false, chat_do_sync},
    {HTTP_POST, "/chat/sync", true, true, chat_do_sync_cursors},
    {HTTP_POST, "/chat/read", true, true, chat_do_read},
    {HTTP_GET, "/chat/unread", true, false, chat_do_unread},
    {HTTP_GET, "/chat/config", true, false, chat_do_config},
    {HTTP_POST, "/chat/recall", true, true, chat_do_recall},
    {HTTP_POST, "/chat/delete", true, true, chat_do_delete},
    {HTTP_POST, "/group/create", true, true, chat_do_group_create},
    {HTTP_POST, "/group/info", true, true, chat_do_group_info},
    {HTTP_GET, "/group/info", true, false, chat_do_group_info},
    {HTTP_POST, "/group/add", true, true, chat_do_group_add},
    {HTTP_POST, "/group/remove", true, true, chat_do_group_remove},
    {HTTP_POST, "/group/leave", true, true, chat_do_group_leave},
    {HTTP_POST, "/group/update", true, true, chat_do_group_update},
    {HTTP_POST, "/group/role", true, true, chat_do_group_role},
    {HTTP_POST, "/group/dissolve", true, true, chat_do_group_dissolve},
    {HTTP_POST, "/group/mute", true, true, chat_do_group_mute},
};

/* The endpoint a socket "call" may run: the POST endpoints of groups,
 * /chat/read, /chat/recall and /chat/delete (NULL for any other path). */
static chat_step call_step(const char *path)
{
    if (strncmp(path, "/group/", 7) != 0 && strcmp(path, "/chat/read") != 0 &&
        strcmp(path, "/chat/recall") != 0 && strcmp(path, "/chat/delete") != 0)
        return NULL;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
        if (routes[i].method == HTTP_POST && strcmp(routes[i].path, path) == 0)
            return routes[i].step;
    return NULL;
}

bool chat_handles(const char *path)
{
    return strncmp(path, "/user/", 6) == 0 || strncmp(path, "/chat/", 6) == 0 ||
           strncmp(path, "/group/", 7) == 0 || admin_handles(path);
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
    call->started_ms = auth_now_ms();
    call->next = route->step;
    if (route->json_body) {
        json_error_t err;
        call->body = req->body_len ? json_loadb(req->body, req->body_len, 0, &err) : NULL;
        if (!json_is_object(call->body)) {
            chat_call_fail(call, 400, "bad_json", "body must be a JSON object");
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
    if (conn_getpeername(c, (struct sockaddr *)&ss, &len) != 0)
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
        chat_call_fail(call, 429, "rate_limited", "a bind is already under way on this connection");
        return false;
    }
    peer_addr(c, call->peer, sizeof(call->peer));
    if (!ratelimit_allows(chat_bind_fail_limit, call->peer, strlen(call->peer),
                          (int64_t)uv_now(chat_loop))) {
        metrics_limit_refused(METRICS_LIMIT_BIND);
        chat_call_fail(call, 429, "rate_limited",
                       "too many failed binds from this address; wait a minute");
        bind_failed(c);
        return false;
    }
    return true;
}

static void bind_authenticated(void *ctx, int status, json_t *user)
{
    chat_call *call = ctx;
    conn *c = chat_call_conn(call);
    if (c)
        c->flags &= ~(uint32_t)CONN_BIND_PENDING;
    if (status == 401) /* counted even when the socket is gone: closing must not dodge it */
        ratelimit_hit(chat_bind_fail_limit, call->peer, strlen(call->peer),
                      (int64_t)uv_now(chat_loop));
    authenticated(ctx, status, user); /* answers; c stays valid until the loop closes it */
    if (c && status == 401)
        bind_failed(c);
}

/* {"type":"call","id","path","body"}: runs the POST endpoint path with body
 * as the caller's HTTP request would, answered by {"type":"result","id",
 * "data"} or an error frame with op "call" and the id. */
static json_t *call_id_of(json_t *msg)
{
    json_t *id = json_object_get(msg, "id");
    if (json_is_integer(id) || (json_is_string(id) && json_string_length(id) >= 1 &&
                                json_string_length(id) <= CALL_ID_MAX))
        return json_incref(id);
    return NULL;
}

static void socket_call(chat_call *call, json_t *msg)
{
    json_t *id = json_object_get(msg, "id");
    call->call_id = call_id_of(msg);
    if (!call->call_id) {
        chat_call_fail(call, 400, id ? "bad_field" : "missing_field",
                       "id is required: an integer or a string of 1 to %d bytes", CALL_ID_MAX);
        return;
    }
    const char *path = json_string_value(json_object_get(msg, "path"));
    chat_step step = path ? call_step(path) : NULL;
    if (!step) {
        chat_call_fail(
            call, 404, "not_found",
            "path must be a POST endpoint of /group/, /chat/read, /chat/recall or /chat/delete");
        return;
    }
    json_t *body = json_object_get(msg, "body");
    if (!json_is_object(body)) {
        chat_call_fail(call, 400, body ? "bad_field" : "missing_field",
                       "body is required: the endpoint's JSON object");
        return;
    }
    json_decref(call->body);
    call->body = json_incref(body);
    step(call);
}

static bool chat_socket_message(conn *c, const char *type, json_t *msg)
{
    bool is_bind = strcmp(type, "bind") == 0;
    bool is_call = strcmp(type, "call") == 0;
    bool is_event = strcmp(type, "event") == 0; /* a group's: the gateway routes 1:1 events */
    if (!is_bind && !is_call && !is_event && strcmp(type, "send") != 0)
        return false;
    chat_call *call = calloc(1, sizeof(*call));
    if (!call) {
        gateway_send_error(c, "internal", "out of memory", NULL);
        return true;
    }
    memcpy(call->client_id, c->client_id, sizeof(call->client_id));
    call->op = is_bind ? "bind" : is_call ? "call" : is_event ? "event" : "send";
    call->body = json_incref(msg);
    if (is_bind) {
        if (!bind_admitted(c, call))
            return true;
        c->flags |= CONN_BIND_PENDING;
        call->next = chat_do_bind;
        json_t *token = json_object_get(msg, "token");
        auth_resolve(json_string_value(token), bind_authenticated, call);
        return true;
    }
    if (!(c->flags & CONN_CHAT_BOUND) || !c->uid) {
        if (is_call) /* the error names the call (when its id is a good one) */
            call->call_id = call_id_of(msg);
        chat_call_fail(call, 401, "not_bound", "bind this connection with a token before sending");
        return true;
    }
    call->uid = strtoll(c->uid->name, NULL, 10);
    if (is_call)
        socket_call(call, msg);
    else if (is_event)
        chat_do_group_event(call);
    else
        chat_do_send(call);
    return true;
}

/* SIGHUP: the limiters were sized at start; the new config is read at each
 * use otherwise (config.h). */
static int chat_reload(const config *old_cfg, const config *new_cfg)
{
    if (new_cfg->send_rate != old_cfg->send_rate)
        ratelimit_set_limit(chat_send_limit, (uint32_t)(new_cfg->send_rate * 2));
    if (new_cfg->bind_rate != old_cfg->bind_rate)
        ratelimit_set_limit(chat_bind_fail_limit, (uint32_t)new_cfg->bind_rate);
    return 0;
}

int chat_init(uv_loop_t *loop, const config *cfg)
{
    chat_cfg = cfg;
    chat_loop = loop;
    chat_bind_fail_limit = ratelimit_new((uint32_t)cfg->bind_rate, 60 * 1000, LIMITER_KEYS_MAX);
    chat_send_limit = ratelimit_new((uint32_t)(cfg->send_rate * 2), 2 * 1000, LIMITER_KEYS_MAX);
    if (!chat_bind_fail_limit || !chat_send_limit) {
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
    chat_presence_init();
    cluster_register("chat.bind", chat_remote_bind, NULL);
    cluster_register("chat.logout", chat_remote_logout, NULL);
    cluster_register("chat.user_changed", chat_remote_user_changed, NULL);
    cluster_register("chat.recalled", chat_remote_recalled, NULL);
    cluster_register("chat.group_changed", chat_group_remote_changed, NULL);
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
    chat_presence_stop();
    auth_stop();
}

void chat_shutdown(void)
{
    chat_presence_stop(); /* when the loop ended without a signal */
    if (chat_store)
        store_close(chat_store);
    chat_store = NULL;
    chat_presence_shutdown();
    chat_group_shutdown();
    auth_shutdown();
    ratelimit_free(chat_bind_fail_limit);
    ratelimit_free(chat_send_limit);
    chat_bind_fail_limit = chat_send_limit = NULL;
    if (data_lock_fd >= 0)
        close(data_lock_fd);
    data_lock_fd = -1;
}
