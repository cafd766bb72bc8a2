/* app: request routing, start-up and graceful shutdown (see app.h). */
#include "app.h"

#include <http_parser.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "chat/chat.h"
#include "cluster/cluster.h"
#include "core/log.h"
#include "core/reload.h"
#include "gateway/gateway.h"
#include "gateway/gateway_api.h"
#include "gateway/registry.h"
#include "gwcompat/gw.h"
#include "http/http.h"
#include "http/static_files.h"
#include "net/server.h"
#include "ws/ws.h"
#include "ws/ws_frame.h"

#define SHUTDOWN_GRACE_MS 3000

static server srv;
static config *live_cfg; /* main's; what srv.cfg and every module point at */
static uv_signal_t sigint_handle, sigterm_handle, sighup_handle;
static uv_timer_t shutdown_timer;
static uint64_t started_at_ms;

static bool path_has_prefix(const char *path, const char *prefix, const char **rest)
{
    size_t n = strlen(prefix);
    if (strncmp(path, prefix, n) != 0)
        return false;
    *rest = path + n;
    return true;
}

static void handle_healthz(http_request *req)
{
    /* Liveness: 200 also while the database is unreachable ("store":
     * "unavailable"), since chatd itself is fine and reconnects by itself. */
    const char *backend;
    bool store_ok = chat_store_ok(&backend);
    json_t *data = json_pack(
        "{s:I,s:I,s:I,s:I,s:s,s:s,s:o}", "connections", (json_int_t)srv.conns_open, "clients",
        (json_int_t)registry_client_count(), "uids", (json_int_t)registry_uid_count(), "uptime_s",
        (json_int_t)((uv_now(srv.loop) - started_at_ms) / 1000), "store",
        store_ok ? "ok" : "unavailable", "store_backend", backend, "cluster", cluster_health());
    json_t *gwh = gw_health();
    if (gwh)
        json_object_set_new(data, "gatewayworker", gwh);
    http_respond_ok(req, data);
}

static void handle_preflight(http_request *req)
{
    if (!req->cors_allowed) {
        http_respond_error(req, 403, "forbidden", "origin is not allowed");
        return;
    }
    http_respond(req, 204,
                 "Access-Control-Allow-Methods: GET, POST, OPTIONS\r\n"
                 "Access-Control-Allow-Headers: Authorization, Content-Type, token\r\n"
                 "Access-Control-Max-Age: 600\r\n",
                 NULL, NULL, 0);
}

static void route(http_request *req)
{
    const config *cfg = srv.cfg;
    const char *path = req->path, *rest;
    if (srv.stopping) {
        req->keep_alive = false;
        http_respond_error(req, 503, "unavailable", "server is shutting down");
        return;
    }
    if (strcmp(path, cfg->ws_path) == 0) {
        ws_upgrade(req, false);
    } else if (cfg->echo_path[0] && strcmp(path, cfg->echo_path) == 0) {
        ws_upgrade(req, true);
    } else if (req->method == HTTP_OPTIONS) {
        handle_preflight(req);
    } else if (strcmp(path, "/healthz") == 0) {
        handle_healthz(req);
    } else if (path_has_prefix(path, "/gateway/", &rest)) {
        gateway_api_handle(req, rest);
    } else if (chat_handles(path)) {
        chat_handle_request(req);
    } else {
        static_serve(req, cfg->web_root);
    }
}

/* ---- shutdown ---------------------------------------------------------- */

static void close_handle_cb(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Ends uv_run once every connection is gone or the grace period is over. */
static void shutdown_timer_cb(uv_timer_t *t)
{
    if (srv.conns_open > 0 && uv_now(srv.loop) - srv.stop_ms < SHUTDOWN_GRACE_MS)
        return;
    if (srv.conns_open > 0)
        log_warn("shutdown: %llu connections did not close in time",
                 (unsigned long long)srv.conns_open);
    uv_timer_stop(t);
    uv_stop(srv.loop);
}

static void close_gracefully(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (h->type != UV_TCP || h == (uv_handle_t *)&srv.listener || uv_is_closing(h))
        return;
    conn *c = (conn *)h;
    if (c->flags & CONN_WS)
        ws_close(c, WS_CLOSE_GOING_AWAY, "server shutting down");
    else
        conn_close_after_write(c, 1000); /* HTTP: finish the reply in flight */
}

static void force_close_one(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (h->type == UV_TCP && h != (uv_handle_t *)&srv.listener && !uv_is_closing(h))
        conn_close((conn *)h);
}

static void signal_cb(uv_signal_t *s, int signum)
{
    (void)s;
    if (srv.stopping)
        return;
    srv.stopping = true;
    srv.stop_ms = uv_now(srv.loop);
    log_info("received %s: closing %llu connections", signum == SIGINT ? "SIGINT" : "SIGTERM",
             (unsigned long long)srv.conns_open);
    server_stop_listening(&srv);
    gw_stop();      /* its Register announcement is a TCP handle, not a connection */
    chat_stop();    /* queued password hashing would hold the exit back */
    cluster_stop(); /* the others stop routing to us now, not after the heartbeat ttl */
    uv_walk(srv.loop, close_gracefully, NULL); /* every client, /ws and /echo alike */
    uv_timer_start(&shutdown_timer, shutdown_timer_cb, 20, 20);
}

/* ---- reload -------------------------------------------------------------- */

/* SIGHUP, on the loop thread: read the whole configuration again (the same
 * argv, the current environment, the file); if it is valid, let the module
 * hooks (TLS certificate, ...) apply what they own, then copy the run-time
 * options into the live struct, which the limits, origins and secrets are
 * read from at each use. Updating the live struct in place rather than
 * swapping in a new one keeps every `const config *` the modules hold valid;
 * replaced strings are retired, not freed (config.h). */
static void sighup_cb(uv_signal_t *s, int signum)
{
    (void)s;
    (void)signum;
    if (srv.stopping)
        return;
    log_info("reload: SIGHUP: re-reading the configuration%s%s",
             live_cfg->config_file[0] ? " from " : "", live_cfg->config_file);
    config next;
    char err[1024];
    if (config_reread(&next, err, sizeof(err)) < 0) {
        log_error("reload: %s; keeping the whole old configuration", err);
        config_free(&next);
        return;
    }
    /* The lines about this reload show at the old or the new level,
     * whichever says more: "log-level 'info' -> 'warn'" is still printed. */
    int old_level = log_level_parse(live_cfg->log_level);
    int new_level = log_level_parse(next.log_level);
    log_set_level((enum log_level)(old_level < new_level ? old_level : new_level));
    int failed = reload_run(live_cfg, &next);
    int changed = config_reload_apply(live_cfg, &next, failed == 0);
    config_free(&next);
    log_set_format((enum log_format)log_format_parse(live_cfg->log_format));
    log_info("reload: done (%d option%s changed%s)", changed, changed == 1 ? "" : "s",
             failed ? "; a module kept its old setting" : "");
    log_set_level((enum log_level)log_level_parse(live_cfg->log_level));
}

/* After the loop stopped: drop what is left, then let every close finish. */
static void teardown(uv_loop_t *loop)
{
    gw_stop(); /* when the loop ended without a signal: before the walk below */
    uv_walk(loop, force_close_one, NULL);
    server_close(&srv);
    uv_close((uv_handle_t *)&sigint_handle, NULL);
    uv_close((uv_handle_t *)&sigterm_handle, NULL);
    uv_close((uv_handle_t *)&sighup_handle, NULL);
    uv_close((uv_handle_t *)&shutdown_timer, NULL);
    uv_run(loop, UV_RUN_DEFAULT); /* close callbacks free the connections */
    chat_shutdown();              /* commits and answers what is queued */
    uv_walk(loop, close_handle_cb, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    cluster_stop(); /* when the loop ended without a signal */
    registry_destroy();
}

/* ---- start ------------------------------------------------------------- */

/* Every connection is a file descriptor: use all the hard limit allows. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            log_warn("cannot raise the open-files limit");
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    log_info("open-files limit %llu", (unsigned long long)rl.rlim_cur);
}

int app_run(uv_loop_t *loop, config *cfg)
{
    live_cfg = cfg;
    raise_fd_limit();
    if (cluster_init(loop, cfg) < 0)
        return 1;
    if (cluster_enabled() && strcmp(cfg->store, "sqlite") == 0)
        log_warn("cluster: --redis with the SQLite store: each node keeps its own users and "
                 "messages; share a PostgreSQL --store for one chat service across nodes (the "
                 "gateway and its API are cluster-wide either way)");
    if (cluster_enabled()) {
        char lines[120];
        snprintf(lines, sizeof(lines), "X-Chatd-Node: %s\r\n", cluster_node_id());
        http_set_server_headers(lines);
    }
    gateway_init();
    gateway_api_init();
    if (chat_init(loop, cfg) < 0)
        return 1;
    http_set_request_handler(route);
    static_files_init(cfg->web_root);
    int r = server_init(&srv, loop, cfg, &http_conn_handler);
    if (r < 0) {
        log_error("cannot listen on %s:%d: %s", cfg->listen_host, cfg->listen_port, uv_strerror(r));
        return 1;
    }
    if (gw_init(&srv, cfg) < 0)
        return 1;
    started_at_ms = uv_now(loop);
    uv_signal_init(loop, &sigint_handle);
    uv_signal_start(&sigint_handle, signal_cb, SIGINT);
    uv_signal_init(loop, &sigterm_handle);
    uv_signal_start(&sigterm_handle, signal_cb, SIGTERM);
    uv_signal_init(loop, &sighup_handle);
    uv_signal_start(&sighup_handle, sighup_cb, SIGHUP);
    uv_timer_init(loop, &shutdown_timer);
    log_info("chatd listening on http://%s:%d (WebSocket %s%s%s, API %s)", cfg->listen_host,
             cfg->listen_port, cfg->ws_path, cfg->echo_path[0] ? ", echo " : "", cfg->echo_path,
             cfg->api_secret[0] ? "on" : "off");
    uv_run(loop, UV_RUN_DEFAULT);
    teardown(loop);
    log_info("chatd stopped");
    return 0;
}
