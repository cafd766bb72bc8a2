/* metrics: the registry and its Prometheus text rendering (see metrics.h). */
#include "core/metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

metrics_state metrics_g;

/* Commit latency in microseconds: 0.5 ms (an unsynced SQLite commit) to 10 s
 * (a PostgreSQL server in trouble). */
static const uint64_t commit_bounds_us[] = {500,     1000,    2500,    5000,    10000,
                                            25000,   50000,   100000,  250000,  500000,
                                            1000000, 2500000, 5000000, 10000000};
/* Write requests per transaction: powers of two up to the pass limit. */
static const uint64_t batch_bounds[] = {1,   2,   4,   8,    16,   32,   64,
                                        128, 256, 512, 1024, 2048, 4096, 8192};

/* A loop pass from its first read to its writes: tens of microseconds when
 * it is light, milliseconds when a pass holds thousands of messages. */
static const uint64_t pass_bounds_us[] = {10,   25,   50,    100,   250,   500,    1000,
                                          2500, 5000, 10000, 25000, 50000, 100000, 250000};

_Static_assert(sizeof(commit_bounds_us) / sizeof(uint64_t) <= METRICS_HIST_MAX, "buckets");
_Static_assert(sizeof(pass_bounds_us) / sizeof(uint64_t) <= METRICS_HIST_MAX, "buckets");
_Static_assert(sizeof(batch_bounds) / sizeof(uint64_t) <= METRICS_HIST_MAX, "buckets");

void metrics_init(metrics_state *m)
{
    m->store_commit.bounds = commit_bounds_us;
    m->store_commit.n = sizeof(commit_bounds_us) / sizeof(uint64_t);
    m->store_commit.scale = 1e6;
    m->store_batch.bounds = batch_bounds;
    m->store_batch.n = sizeof(batch_bounds) / sizeof(uint64_t);
    m->store_batch.scale = 1;
    m->loop_read_to_write.bounds = pass_bounds_us;
    m->loop_read_to_write.n = sizeof(pass_bounds_us) / sizeof(uint64_t);
    m->loop_read_to_write.scale = 1e6;
}

void metrics_hist_observe(metrics_histogram *h, uint64_t value)
{
    if (!h->bounds)
        return; /* metrics_init not called (a unit test of another module) */
    size_t i = 0;
    while (i < h->n && value > h->bounds[i])
        i++;
    atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum, value, memory_order_relaxed);
}

void metrics_store_pass(uint64_t start_ns)
{
    metrics_hist_observe(&metrics_g.store_commit, (uv_hrtime() - start_ns) / 1000);
}

void metrics_loop_pass(uint64_t read_ns)
{
    metrics_hist_observe(&metrics_g.loop_read_to_write, (uv_hrtime() - read_ns) / 1000);
}

void metrics_store_commit(uint64_t writes)
{
    if (writes > 0)
        metrics_hist_observe(&metrics_g.store_batch, writes);
}

/* ---- labels ------------------------------------------------------------ */

static const char *const route_names[METRICS_ROUTES] = {
    [METRICS_ROUTE_NONE] = "none",       [METRICS_ROUTE_WS] = "ws",
    [METRICS_ROUTE_ECHO] = "echo",       [METRICS_ROUTE_PREFLIGHT] = "preflight",
    [METRICS_ROUTE_HEALTHZ] = "healthz", [METRICS_ROUTE_READYZ] = "readyz",
    [METRICS_ROUTE_METRICS] = "metrics", [METRICS_ROUTE_GATEWAY_API] = "gateway_api",
    [METRICS_ROUTE_CHAT] = "chat",       [METRICS_ROUTE_STATIC] = "static",
};

const char *metrics_route_name(enum metrics_route r)
{
    return (unsigned)r < METRICS_ROUTES ? route_names[r] : "none";
}

/* Status codes chatd answers with, each its own series; any other code is
 * counted under its class ("4xx"), and one outside 100-599 under "other". */
static const int known_status[] = {101, 200, 204, 206, 301, 302, 304, 400, 401, 403, 404, 405, 408,
                                   409, 411, 413, 416, 426, 429, 431, 500, 501, 502, 503, 504};
#define N_KNOWN_STATUS (sizeof(known_status) / sizeof(known_status[0]))
_Static_assert(N_KNOWN_STATUS + 6 <= METRICS_STATUS_SLOTS, "status slots");

size_t metrics_status_slot(int status)
{
    for (size_t i = 0; i < N_KNOWN_STATUS; i++)
        if (known_status[i] == status)
            return i;
    if (status >= 100 && status <= 599)
        return N_KNOWN_STATUS + (size_t)(status / 100 - 1);
    return N_KNOWN_STATUS + 5;
}

const char *metrics_status_label(size_t slot, char buf[8])
{
    if (slot < N_KNOWN_STATUS)
        snprintf(buf, 8, "%d", known_status[slot]);
    else if (slot < N_KNOWN_STATUS + 5)
        snprintf(buf, 8, "%zuxx", slot - N_KNOWN_STATUS + 1);
    else
        snprintf(buf, 8, "other");
    return buf;
}

/* 1000-1015 (RFC 6455 and the IANA registry) one by one; the application
 * ranges folded, so a client choosing codes cannot add series. */
size_t metrics_close_slot(uint16_t code)
{
    if (code >= 1000 && code <= 1015)
        return code - 1000;
    if (code >= 3000 && code <= 3999)
        return 16;
    if (code >= 4000 && code <= 4999)
        return 17;
    return 18;
}

const char *metrics_close_label(size_t slot, char buf[8])
{
    if (slot < 16)
        snprintf(buf, 8, "%zu", 1000 + slot);
    else if (slot == 16)
        snprintf(buf, 8, "3xxx");
    else if (slot == 17)
        snprintf(buf, 8, "4xxx");
    else
        snprintf(buf, 8, "other");
    return buf;
}

void metrics_ws_close(uint16_t code, bool peer_first)
{
    metrics_g.ws_closes[peer_first ? METRICS_CLOSE_PEER : METRICS_CLOSE_SERVER]
                       [metrics_close_slot(code)]++;
}

void metrics_ws_gone(bool close_sent)
{
    metrics_g.conns[METRICS_CONN_WEBSOCKET]--;
    if (!close_sent)
        metrics_g.ws_closes[METRICS_CLOSE_NONE][metrics_close_slot(1006)]++;
}

void metrics_http_response(uint8_t route, int status)
{
    metrics_g.http[route < METRICS_ROUTES ? route : 0][metrics_status_slot(status)]++;
}

int metrics_escape_label(const char *value, char *out, size_t cap)
{
    size_t n = 0;
    for (const char *p = value; *p; p++) {
        const char *rep = *p == '\\' ? "\\\\" : *p == '"' ? "\\\"" : *p == '\n' ? "\\n" : NULL;
        size_t l = rep ? 2 : 1;
        if (n + l >= cap)
            return -1;
        if (rep)
            memcpy(out + n, rep, 2);
        else
            out[n] = *p;
        n += l;
    }
    if (cap == 0)
        return -1;
    out[n] = '\0';
    return (int)n;
}

/* ---- process ----------------------------------------------------------- */

void metrics_read_process(metrics_scrape *s)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        s->cpu_seconds = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    /* statm is formatted by the kernel on read: no disk, a few microseconds */
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        unsigned long long size = 0, resident = 0;
        if (fscanf(f, "%llu %llu", &size, &resident) == 2) {
            long page = sysconf(_SC_PAGESIZE);
            s->vsize_bytes = size * (uint64_t)page;
            s->rss_bytes = resident * (uint64_t)page;
        }
        fclose(f);
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        s->max_fds = (uint64_t)rl.rlim_cur;
}

/* ---- rendering --------------------------------------------------------- */

typedef struct text {
    char *p;
    size_t len, cap;
    bool oom;
} text;

__attribute__((format(printf, 2, 3))) static void put(text *t, const char *fmt, ...)
{
    if (t->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->oom = true;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap * 2;
        while (cap - t->len <= (size_t)n)
            cap *= 2;
        char *p = realloc(t->p, cap);
        if (!p) {
            t->oom = true;
            return;
        }
        t->p = p;
        t->cap = cap;
    }
}

static void head(text *t, const char *name, const char *type, const char *help)
{
    put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void scalar(text *t, const char *name, const char *type, const char *help, uint64_t v)
{
    head(t, name, type, help);
    put(t, "%s %llu\n", name, (unsigned long long)v);
}

static void scalar_f(text *t, const char *name, const char *type, const char *help, double v)
{
    head(t, name, type, help);
    put(t, "%s %.15g\n", name, v);
}

static void histogram(text *t, const char *name, const char *help, const metrics_histogram *h)
{
    head(t, name, "histogram", help);
    uint64_t cum = 0;
    for (size_t i = 0; i < h->n; i++) {
        cum += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        put(t, "%s_bucket{le=\"%.15g\"} %llu\n", name, (double)h->bounds[i] / h->scale,
            (unsigned long long)cum);
    }
    cum += atomic_load_explicit(&h->buckets[h->n], memory_order_relaxed);
    /* _count is the +Inf bucket, as Prometheus requires */
    put(t, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
    uint64_t sum = atomic_load_explicit(&h->sum, memory_order_relaxed);
    if (h->scale == 1)
        put(t, "%s_sum %llu\n", name, (unsigned long long)sum);
    else
        put(t, "%s_sum %.15g\n", name, (double)sum / h->scale);
    put(t, "%s_count %llu\n", name, (unsigned long long)cum);
}

static void render_connections(text *t, const metrics_state *m, const metrics_scrape *s)
{
    uint64_t ws = m->conns[METRICS_CONN_WEBSOCKET], inner = m->conns[METRICS_CONN_GW_INNER],
             reg = m->conns[METRICS_CONN_GW_REGISTER];
    uint64_t other = ws + inner + reg;
    head(t, "chatd_connections", "gauge", "Open TCP connections by protocol.");
    put(t, "chatd_connections{state=\"http\"} %llu\n",
        (unsigned long long)(s->conns_open > other ? s->conns_open - other : 0));
    put(t, "chatd_connections{state=\"websocket\"} %llu\n", (unsigned long long)ws);
    put(t, "chatd_connections{state=\"gw_inner\"} %llu\n", (unsigned long long)inner);
    put(t, "chatd_connections{state=\"gw_register\"} %llu\n", (unsigned long long)reg);
    scalar(t, "chatd_connections_accepted_total", "counter", "TCP connections accepted.",
           s->conns_accepted);
    scalar(t, "chatd_clients", "gauge", "WebSocket clients in the gateway registry.", s->clients);
    scalar(t, "chatd_uids", "gauge", "Distinct uids bound on this node.", s->uids);
    histogram(t, "chatd_loop_read_to_write_seconds",
              "Per event-loop pass that read client bytes: time from its first read to the "
              "end of its writes (handed to the kernel); what a message waits in chatd.",
              &m->loop_read_to_write);
}

static void render_websocket(text *t, const metrics_state *m)
{
    head(t, "chatd_ws_messages_total", "counter",
         "WebSocket data messages: received (complete) and queued for sending.");
    put(t, "chatd_ws_messages_total{direction=\"in\"} %llu\n",
        (unsigned long long)m->ws_messages_in);
    put(t, "chatd_ws_messages_total{direction=\"out\"} %llu\n",
        (unsigned long long)m->ws_messages_out);
    head(t, "chatd_ws_bytes_total", "counter",
         "WebSocket frame bytes (headers included, control frames too) read and queued.");
    put(t, "chatd_ws_bytes_total{direction=\"in\"} %llu\n", (unsigned long long)m->ws_bytes_in);
    put(t, "chatd_ws_bytes_total{direction=\"out\"} %llu\n", (unsigned long long)m->ws_bytes_out);

    static const char *const push_kinds[METRICS_PUSH_KINDS] = {"message", "notice", "event",
                                                               "api",     "gw",     "remote"};
    head(t, "chatd_pushes_total", "counter", "Push operations by where they came from.");
    for (size_t k = 0; k < METRICS_PUSH_KINDS; k++)
        put(t, "chatd_pushes_total{kind=\"%s\"} %llu\n", push_kinds[k],
            (unsigned long long)m->pushes[k]);

    static const char *const initiators[METRICS_CLOSE_INITIATORS] = {"server", "peer", "none"};
    head(t, "chatd_ws_closes_total", "counter",
         "WebSocket connections closed, by close code and by who sent the first close frame.");
    bool any = false;
    for (size_t i = 0; i < METRICS_CLOSE_INITIATORS; i++)
        for (size_t slot = 0; slot < METRICS_CLOSE_SLOTS; slot++) {
            uint64_t v = m->ws_closes[i][slot];
            if (!v)
                continue;
            char buf[8];
            put(t, "chatd_ws_closes_total{code=\"%s\",initiator=\"%s\"} %llu\n",
                metrics_close_label(slot, buf), initiators[i], (unsigned long long)v);
            any = true;
        }
    if (!any) /* one series from the start, so rate() has a base */
        put(t, "chatd_ws_closes_total{code=\"1000\",initiator=\"server\"} 0\n");

    head(t, "chatd_slow_reader_closes_total", "counter",
         "Connections closed because their send queue passed --max-outbuf.");
    put(t, "chatd_slow_reader_closes_total{protocol=\"websocket\"} %llu\n",
        (unsigned long long)m->slow_closes[METRICS_SLOW_WEBSOCKET]);
    put(t, "chatd_slow_reader_closes_total{protocol=\"http\"} %llu\n",
        (unsigned long long)m->slow_closes[METRICS_SLOW_HTTP]);
}

static void render_limits(text *t, const metrics_state *m, const metrics_scrape *s)
{
    static const char *const kinds[METRICS_LIMIT_KINDS] = {
        "event", "send", "login", "register", "bind", "conns_per_user", "conns_per_ip"};
    head(t, "chatd_ratelimit_refusals_total", "counter",
         "Requests, messages and connections refused by a rate or count limit.");
    for (size_t k = 0; k < METRICS_LIMIT_KINDS; k++) {
        uint64_t v =
            k == METRICS_LIMIT_CONNS_PER_IP ? s->conns_refused_per_ip : m->limit_refusals[k];
        put(t, "chatd_ratelimit_refusals_total{kind=\"%s\"} %llu\n", kinds[k],
            (unsigned long long)v);
    }
}

static void render_http(text *t, const metrics_state *m)
{
    head(t, "chatd_http_requests_total", "counter",
         "HTTP requests answered, by route name and status code (101: WebSocket upgrades).");
    bool any = false;
    for (size_t r = 0; r < METRICS_ROUTES; r++)
        for (size_t slot = 0; slot < METRICS_STATUS_SLOTS; slot++) {
            uint64_t v = m->http[r][slot];
            if (!v)
                continue;
            char buf[8];
            put(t, "chatd_http_requests_total{route=\"%s\",code=\"%s\"} %llu\n", route_names[r],
                metrics_status_label(slot, buf), (unsigned long long)v);
            any = true;
        }
    if (!any)
        put(t, "chatd_http_requests_total{route=\"metrics\",code=\"200\"} 0\n");
}

static void render_store(text *t, const metrics_state *m, const metrics_scrape *s)
{
    scalar(t, "chatd_store_up", "gauge", "1 when the store answers (PostgreSQL reachable).",
           s->store_ok ? 1 : 0);
    scalar(t, "chatd_store_queue_depth", "gauge", "Store requests submitted and not answered yet.",
           m->store_queue);
    histogram(t, "chatd_store_commit_seconds",
              "Duration of a storage writer pass: one group-commit transaction, begin to commit.",
              &m->store_commit);
    histogram(t, "chatd_store_commit_batch_size",
              "Write requests per committed transaction (group commit).", &m->store_batch);
}

static void render_cluster(text *t, const metrics_scrape *s)
{
    if (!s->cluster)
        return;
    scalar(t, "chatd_cluster_bus_up", "gauge", "1 while the Redis bus is connected.",
           s->bus_up ? 1 : 0);
    scalar(t, "chatd_cluster_nodes", "gauge", "Live nodes this node sees (itself included).",
           s->cluster_nodes);
    scalar(t, "chatd_cluster_bus_published_total", "counter", "Messages published on the bus.",
           s->bus_published);
    scalar(t, "chatd_cluster_bus_received_total", "counter", "Messages received from the bus.",
           s->bus_received);
    scalar(t, "chatd_cluster_bus_dropped_total", "counter",
           "Cross-node messages dropped (bus down, publish failed, no receiver).", s->bus_dropped);
    scalar(t, "chatd_cluster_bus_bad_messages_total", "counter", "Malformed bus messages dropped.",
           s->bus_bad_messages);
    scalar(t, "chatd_cluster_bus_reconnects_total", "counter", "Reconnections to the bus.",
           s->bus_reconnects);
    scalar(t, "chatd_cluster_calls_timed_out_total", "counter",
           "Cluster calls that ended with a node not answering.", s->cluster_calls_timed_out);
    scalar(t, "chatd_cluster_pushes_in_total", "counter", "Pushes received from other nodes.",
           s->cluster_pushes_in);
}

static void render_gw(text *t, const metrics_scrape *s)
{
    if (!s->gw)
        return;
    scalar(t, "chatd_gw_workers", "gauge", "BusinessWorker connections.", s->gw_workers);
    scalar(t, "chatd_gw_events_total", "counter", "Client events sent to BusinessWorkers.",
           s->gw_events_out);
    scalar(t, "chatd_gw_events_dropped_total", "counter",
           "Client events that could not be built for a worker.", s->gw_events_dropped);
    scalar(t, "chatd_gw_slow_closes_total", "counter",
           "Inner-protocol connections closed for a full send queue.", s->gw_slow_closes);
    scalar(t, "chatd_gw_bad_inputs_total", "counter", "Malformed inner-protocol input refused.",
           s->gw_bad_inputs);
}

static void render_webhook(text *t, const metrics_scrape *s)
{
    if (!s->webhook)
        return;
    scalar(t, "chatd_webhook_queued_total", "counter", "Webhook events accepted onto the queue.",
           s->webhook_queued);
    scalar(t, "chatd_webhook_delivered_total", "counter", "Webhook events answered with a 2xx.",
           s->webhook_delivered);
    scalar(t, "chatd_webhook_retries_total", "counter", "Webhook attempts after the first.",
           s->webhook_retried);
    scalar(t, "chatd_webhook_failed_total", "counter",
           "Webhook events given up (a 4xx, or out of attempts).", s->webhook_failed);
    scalar(t, "chatd_webhook_dropped_total", "counter",
           "Webhook events never sent (queue full, shutdown).", s->webhook_dropped);
    scalar(t, "chatd_webhook_withdrawn_total", "counter",
           "Webhook message events taken back because their message was recalled.",
           s->webhook_withdrawn);
    scalar(t, "chatd_webhook_pending", "gauge", "Webhook events on the queue now.",
           s->webhook_pending);
}

static void render_process(text *t, const metrics_scrape *s)
{
    char version[64], backend[64];
    if (metrics_escape_label(s->version ? s->version : "", version, sizeof(version)) < 0)
        snprintf(version, sizeof(version), "unknown");
    if (metrics_escape_label(s->store_backend ? s->store_backend : "", backend, sizeof(backend)) <
        0)
        snprintf(backend, sizeof(backend), "unknown");
    head(t, "chatd_build_info", "gauge", "Always 1; the labels say which chatd this is.");
    put(t, "chatd_build_info{version=\"%s\",store=\"%s\"} 1\n", version, backend);
    scalar_f(t, "process_cpu_seconds_total", "counter", "User and system CPU time spent.",
             s->cpu_seconds);
    scalar(t, "process_resident_memory_bytes", "gauge", "Resident memory size.", s->rss_bytes);
    scalar(t, "process_virtual_memory_bytes", "gauge", "Virtual memory size.", s->vsize_bytes);
    scalar(t, "process_max_fds", "gauge", "Open-files limit.", s->max_fds);
    scalar_f(t, "process_start_time_seconds", "gauge", "Start time, Unix seconds.",
             s->start_time_seconds);
}

char *metrics_render(const metrics_state *m, const metrics_scrape *s, size_t *len)
{
    text t = {.cap = 8192};
    t.p = malloc(t.cap);
    if (!t.p)
        return NULL;
    t.p[0] = '\0';
    render_connections(&t, m, s);
    render_websocket(&t, m);
    render_limits(&t, m, s);
    render_http(&t, m);
    render_store(&t, m, s);
    render_cluster(&t, s);
    render_gw(&t, s);
    render_webhook(&t, s);
    render_process(&t, s);
    if (t.oom) {
        free(t.p);
        return NULL;
    }
    *len = t.len;
    return t.p;
}
