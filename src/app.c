/* app: request routing, start-up and graceful shutdown (see app.h). */
#include "app.h"

#include <http_parser.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/time.h>

#include "chat/chat.h"
#include "chat/webhook.h"
#include "cluster/cluster.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/reload.h"
#include "gateway/gateway.h"
#include "gateway/gateway_api.h"
#include "gateway/registry.h"
#include "gwcompat/gw.h"
#include "http/http.h"
#include "http/static_files.h"
#include "media/media.h"
#include "net/server.h"
#include "net/tls.h"
#include "ws/ws.h"
#include "ws/ws_frame.h"

#define SHUTDOWN_GRACE_MS 3000

static server srv;
static config *live_cfg; /* main's; what srv.cfg and every module point at */
static uv_signal_t sigint_handle, sigterm_handle, sighup_handle;
static uv_timer_t shutdown_timer;
static uint64_t started_at_ms;
static double started_at_unix; /* process_start_time_seconds */
/* The --metrics-listen listener's connections: HTTP, with their own
 * handler struct (a copy of http_conn_handler) so route() can tell them
 * apart and answer only /metrics and /readyz there. */
static conn_handler metrics_conn_handler;

/* chatd --version's; config.c keeps its own copy for --help/--version */
#define CHATD_BUILD_VERSION "0.1.0"

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
        "{s:I,s:I,s:I,s:I,s:s,s:s,s:o,s:s}", "connections", (json_int_t)srv.conns_open, "clients",
        (json_int_t)registry_client_count(), "uids", (json_int_t)registry_uid_count(), "uptime_s",
        (json_int_t)((uv_now(srv.loop) - started_at_ms) / 1000), "store",
        store_ok ? "ok" : "unavailable", "store_backend", backend, "cluster", cluster_health(),
        "io", server_io_name(&srv));
    json_t *gwh = gw_health();
    if (gwh)
        json_object_set_new(data, "gatewayworker", gwh);
    json_t *whh = webhook_health();
    if (whh)
        json_object_set_new(data, "webhook", whh);
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

/* ---- /metrics and /readyz ---------------------------------------------- */

/* True when the cluster object (cluster_health) says the bus is up. */
static bool bus_is_up(json_t *cl)
{
    const char *redis = json_string_value(json_object_get(cl, "redis"));
    return redis && strcmp(redis, "up") == 0;
}

/* An unsigned member of a /healthz-style object (0 when absent). */
static uint64_t json_u64(json_t *o, const char *key)
{
    json_int_t v = json_integer_value(json_object_get(o, key));
    return v > 0 ? (uint64_t)v : 0;
}

/* Reads what other modules own; cheap, and independent of the number of
 * connections (registry counts are kept, not counted). */
static void scrape_values(metrics_scrape *s)
{
    const char *backend = "none";
    s->store_ok = chat_store_ok(&backend);
    s->version = CHATD_BUILD_VERSION;
    s->store_backend = backend;
    s->conns_open = srv.conns_open;
    s->conns_accepted = srv.conns_total;
    s->conns_refused_per_ip = srv.conns_refused;
    s->clients = registry_client_count();
    s->uids = registry_uid_count();
    json_t *cl = cluster_health();
    if (json_is_object(cl)) {
        s->cluster = true;
        s->bus_up = bus_is_up(cl);
        s->cluster_nodes = json_u64(cl, "nodes");
        s->bus_published = json_u64(cl, "published");
        s->bus_received = json_u64(cl, "received");
        s->bus_dropped = json_u64(cl, "dropped");
        s->bus_bad_messages = json_u64(cl, "bad_messages");
        s->bus_reconnects = json_u64(cl, "reconnects");
        s->cluster_calls_timed_out = json_u64(cl, "calls_timed_out");
        s->cluster_pushes_in = json_u64(cl, "pushes_in");
    }
    json_decref(cl);
    json_t *gw = gw_health();
    if (gw) {
        s->gw = true;
        s->gw_workers = json_u64(gw, "workers");
        s->gw_events_out = json_u64(gw, "events_out");
        s->gw_events_dropped = json_u64(gw, "events_dropped");
        s->gw_slow_closes = json_u64(gw, "slow_closes");
        s->gw_bad_inputs = json_u64(gw, "bad_inputs");
        json_decref(gw);
    }
    if (webhook_enabled()) {
        webhook_stats ws;
        webhook_get_stats(&ws);
        s->webhook = true;
        s->webhook_queued = ws.queued;
        s->webhook_delivered = ws.delivered;
        s->webhook_retried = ws.retried;
        s->webhook_failed = ws.failed;
        s->webhook_dropped = ws.dropped;
        s->webhook_withdrawn = ws.withdrawn;
        s->webhook_pending = ws.pending;
    }
    metrics_read_process(s);
    s->start_time_seconds = started_at_unix;
}

static void handle_metrics(http_request *req)
{
    if (req->method != HTTP_GET && req->method != HTTP_HEAD) {
        http_respond_error(req, 405, "method_not_allowed", "use GET");
        return;
    }
    metrics_scrape s = {0};
    scrape_values(&s);
    size_t len = 0;
    char *body = metrics_render(&metrics_g, &s, &len);
    if (!body) {
        http_respond_error(req, 500, "internal", "out of memory");
        return;
    }
    http_respond(req, 200, "Cache-Control: no-store\r\n",
                 "text/plain; version=0.0.4; charset=utf-8", body, len);
    free(body);
}

/* Readiness: the store answers and, in cluster mode, the bus is up. */
static void handle_readyz(http_request *req)
{
    const char *backend;
    bool store_ok = chat_store_ok(&backend);
    json_t *cl = cluster_health();
    bool cluster = json_is_object(cl);
    bool bus_ok = !cluster || bus_is_up(cl);
    json_decref(cl);
    if (store_ok && bus_ok) {
        http_respond_ok(req,
                        json_pack("{s:s,s:s?}", "store", "ok", "cluster", cluster ? "up" : NULL));
        return;
    }
    json_t *reasons = json_array();
    if (!store_ok)
        json_array_append_new(reasons, json_string("store_unavailable"));
    if (!bus_ok)
        json_array_append_new(reasons, json_string("bus_down"));
    json_t *root =
        json_pack("{s:b,s:s,s:s,s:o,s:{s:s,s:s?}}", "status", 0, "msg",
                  !store_ok ? "the store does not answer" : "the cluster bus is down", "code",
                  "not_ready", "reasons", reasons, "data", "store", store_ok ? "ok" : "unavailable",
                  "cluster", cluster ? (bus_ok ? "up" : "down") : NULL);
    http_respond_json(req, 503, root);
}

/* The requests of --metrics-listen: /metrics and /readyz only. */
static void route_metrics_listener(http_request *req)
{
    if (strcmp(req->path, "/metrics") == 0) {
        req->route = METRICS_ROUTE_METRICS;
        handle_metrics(req);
    } else if (strcmp(req->path, "/readyz") == 0) {
        req->route = METRICS_ROUTE_READYZ;
        handle_readyz(req);
    } else {
        http_respond_error(req, 404, "not_found", "only /metrics and /readyz are served here");
    }
}

/* The route name of a request (a fixed set: the metrics label). */
static enum metrics_route classify(http_request *req, const char **rest)
{
    const config *cfg = srv.cfg;
    const char *path = req->path;
    if (strcmp(path, cfg->ws_path) == 0)
        return METRICS_ROUTE_WS;
    if (cfg->echo_path[0] && strcmp(path, cfg->echo_path) == 0)
        return METRICS_ROUTE_ECHO;
    if (req->method == HTTP_OPTIONS)
        return METRICS_ROUTE_PREFLIGHT;
    if (strcmp(path, "/healthz") == 0)
        return METRICS_ROUTE_HEALTHZ;
    if (strcmp(path, "/readyz") == 0)
        return METRICS_ROUTE_READYZ;
    if (cfg->metrics && strcmp(path, "/metrics") == 0)
        return METRICS_ROUTE_METRICS;
    if (path_has_prefix(path, "/gateway/", rest))
        return METRICS_ROUTE_GATEWAY_API;
    if (chat_handles(path))
        return METRICS_ROUTE_CHAT;
    /* uploads count as the chat service's, pictures served as static files */
    if (media_handles(path))
        return req->method == HTTP_POST ? METRICS_ROUTE_CHAT : METRICS_ROUTE_STATIC;
    return METRICS_ROUTE_STATIC;
}

static void route(http_request *req)
{
    const char *rest = NULL;
    if (req->conn && req->conn->handler == &metrics_conn_handler && !srv.stopping) {
        route_metrics_listener(req);
        return;
    }
    enum metrics_route r = classify(req, &rest);
    req->route = (uint8_t)r;
    if (srv.stopping) {
        req->keep_alive = false;
        http_respond_error(req, 503, "unavailable", "server is shutting down");
        return;
    }
    switch (r) {
    case METRICS_ROUTE_WS:
        ws_upgrade(req, false);
        break;
    case METRICS_ROUTE_ECHO:
        ws_upgrade(req, true);
        break;
    case METRICS_ROUTE_PREFLIGHT:
        handle_preflight(req);
        break;
    case METRICS_ROUTE_HEALTHZ:
        handle_healthz(req);
        break;
    case METRICS_ROUTE_READYZ:
        handle_readyz(req);
        break;
    case METRICS_ROUTE_METRICS:
        handle_metrics(req);
        break;
    case METRICS_ROUTE_GATEWAY_API:
        gateway_api_handle(req, rest);
        break;
    case METRICS_ROUTE_CHAT:
        if (media_handles(req->path))
            media_handle_request(req);
        else
            chat_handle_request(req);
        break;
    default:
        if (media_handles(req->path))
            media_handle_request(req);
        else if (path_has_prefix(req->path, "/sdk/", &rest))
            static_serve(req, STATIC_ROOT_SDK, rest - 1); /* "/index.js" of "/sdk/index.js" */
        else
            static_serve(req, STATIC_ROOT_WEB, req->path);
        break;
    }
}

/* Asked by the HTTP layer once a request's headers are in: only POST /media
 * (not on the --metrics-listen listener) takes more than --max-body. */
static void body_policy(http_request *req, http_body_policy *policy)
{
    if (req->conn && req->conn->handler == &metrics_conn_handler)
        return;
    media_body_policy(req, policy);
}

/* --metrics-listen HOST:PORT ("[::1]:9100" for IPv6). */
static int metrics_listen_start(const config *cfg)
{
    char host[256];
    const char *addr = cfg->metrics_listen;
    const char *colon = strrchr(addr, ':');
    char *end = NULL;
    long port = colon ? strtol(colon + 1, &end, 10) : -1;
    size_t hlen = colon ? (size_t)(colon - addr) : 0;
    if (hlen >= 2 && addr[0] == '[' && addr[hlen - 1] == ']') {
        addr++;
        hlen -= 2;
    }
    if (!colon || hlen == 0 || hlen >= sizeof(host) || !end || *end || port < 1 || port > 65535) {
        log_error("--metrics-listen %s: expected HOST:PORT", cfg->metrics_listen);
        return -1;
    }
    memcpy(host, addr, hlen);
    host[hlen] = '\0';
    metrics_conn_handler = http_conn_handler;
    int r = server_listen(&srv, host, (int)port, &metrics_conn_handler);
    if (r < 0) {
        log_error("cannot listen on --metrics-listen %s: %s", cfg->metrics_listen, uv_strerror(r));
        return -1;
    }
    log_info("metrics on http://%s/metrics", cfg->metrics_listen);
    return 0;
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
    /* webhook events get their own, shorter grace (WEBHOOK_GRACE_MS) */
    if ((srv.conns_open > 0 || webhook_busy()) &&
        uv_now(srv.loop) - srv.stop_ms < SHUTDOWN_GRACE_MS)
        return;
    if (srv.conns_open > 0)
        log_warn("shutdown: %llu connections did not close in time",
                 (unsigned long long)srv.conns_open);
    uv_timer_stop(t);
    uv_stop(srv.loop);
}

static void close_gracefully(conn *c, void *arg)
{
    (void)arg;
    if (c->flags & CONN_WS)
        ws_close(c, WS_CLOSE_GOING_AWAY, "server shutting down");
    else
        conn_close_after_write(c, 1000); /* HTTP: finish the reply in flight */
}

static void force_close_one(conn *c, void *arg)
{
    (void)arg;
    conn_close(c);
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
    webhook_stop(); /* what is queued gets a short grace, then is dropped */
    cluster_stop(); /* the others stop routing to us now, not after the heartbeat ttl */
    server_each_conn(&srv, close_gracefully, NULL); /* every client, /ws and /echo alike */
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
    server_each_conn(&srv, force_close_one, NULL);
    server_close(&srv);
    uv_close((uv_handle_t *)&sigint_handle, NULL);
    uv_close((uv_handle_t *)&sigterm_handle, NULL);
    uv_close((uv_handle_t *)&sighup_handle, NULL);
    uv_close((uv_handle_t *)&shutdown_timer, NULL);
    uv_run(loop, UV_RUN_DEFAULT); /* close callbacks free the connections */
    chat_shutdown();              /* commits and answers what is queued */
    webhook_shutdown();           /* drops what is left (also events of those commits) */
    uv_walk(loop, close_handle_cb, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    cluster_stop(); /* when the loop ended without a signal */
    registry_destroy();
    tls_shutdown();
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
    metrics_init(&metrics_g);
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
    if (webhook_init(loop, cfg) < 0)
        return 1;
    if (media_init(loop, cfg) < 0)
        return 1;
    http_set_request_handler(route);
    http_set_body_policy(body_policy);
    static_files_init(STATIC_ROOT_WEB, cfg->web_root);
    static_files_init(STATIC_ROOT_SDK, cfg->sdk_root);
    if (tls_init(cfg) < 0)
        return 1;
    reload_register("tls", tls_reload);
    int r = server_init(&srv, loop, cfg, &http_conn_handler);
    if (r < 0) {
        log_error("cannot listen on %s:%d: %s", cfg->listen_host, cfg->listen_port, uv_strerror(r));
        return 1;
    }
    if (gw_init(&srv, cfg) < 0)
        return 1;
    if (cfg->metrics_listen[0] && metrics_listen_start(cfg) < 0)
        return 1;
    started_at_ms = uv_now(loop);
    struct timeval tv;
    gettimeofday(&tv, NULL);
    started_at_unix = (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
    uv_signal_init(loop, &sigint_handle);
    uv_signal_start(&sigint_handle, signal_cb, SIGINT);
    uv_signal_init(loop, &sigterm_handle);
    uv_signal_start(&sigterm_handle, signal_cb, SIGTERM);
    uv_signal_init(loop, &sighup_handle);
    uv_signal_start(&sighup_handle, sighup_cb, SIGHUP);
    uv_timer_init(loop, &shutdown_timer);
    log_info("chatd listening on %s://%s:%d (WebSocket %s%s%s, API %s, I/O %s)",
             tls_enabled() ? "https" : "http", cfg->listen_host, cfg->listen_port, cfg->ws_path,
             cfg->echo_path[0] ? ", echo " : "", cfg->echo_path, cfg->api_secret[0] ? "on" : "off",
             server_io_name(&srv));
    uv_run(loop, UV_RUN_DEFAULT);
    teardown(loop);
    log_info("chatd stopped");
    return 0;
}
