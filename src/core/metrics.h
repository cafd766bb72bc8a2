/* metrics: chatd's counters, gauges and histograms, and their rendering in
 * the Prometheus text exposition format (version 0.0.4) for GET /metrics.
 *
 * The registry is one static struct (metrics_state) with a fixed set of
 * series: every label takes its values from a small enum here (route names,
 * push kinds, close codes folded into ranges), never from client input, so
 * the number of series is bounded whatever the traffic. Nothing is kept per
 * connection and a scrape walks no connection.
 *
 * Threading: every counter but the store's is a plain uint64_t bumped on
 * the loop thread (the metrics_* inline functions below; one line at the
 * place that owns the event). The store's writer thread records its passes
 * in histograms of _Atomic counters (relaxed: a scrape may see a pass's
 * count before its sum, never a torn value).
 *
 * Rendering is pure: metrics_render formats a metrics_state plus the values
 * read at scrape time (metrics_scrape) into a buffer, so unit tests check
 * the text without a server. */
#ifndef CHATD_METRICS_H
#define CHATD_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/sbuf.h"

/* Connections by what they speak; plain HTTP is the rest of the open ones. */
enum metrics_conn_kind {
    METRICS_CONN_WEBSOCKET,
    METRICS_CONN_GW_INNER,    /* --gw-inner: GatewayClient and BusinessWorker */
    METRICS_CONN_GW_REGISTER, /* --gw-register */
    METRICS_CONN_KINDS
};

/* Where a push came from. */
enum metrics_push_kind {
    METRICS_PUSH_MESSAGE, /* a stored chat message to its two users' devices */
    METRICS_PUSH_NOTICE,  /* other chat-service pushes (read, receipt) */
    METRICS_PUSH_EVENT,   /* a transient {"type":"event"} between uids */
    METRICS_PUSH_API,     /* the server API's send* methods */
    METRICS_PUSH_GW,      /* GatewayWorker inner-protocol sends */
    METRICS_PUSH_REMOTE,  /* pushed by another cluster node, delivered here */
    METRICS_PUSH_KINDS
};

/* Refusals of a rate or count limit. */
enum metrics_limit_kind {
    METRICS_LIMIT_EVENT,          /* --event-rate */
    METRICS_LIMIT_SEND,           /* --send-rate */
    METRICS_LIMIT_LOGIN,          /* --login-rate */
    METRICS_LIMIT_REGISTER,       /* --register-rate */
    METRICS_LIMIT_BIND,           /* --bind-rate, or a bind already under way */
    METRICS_LIMIT_CONNS_PER_USER, /* --max-conns-per-user */
    METRICS_LIMIT_CONNS_PER_IP,   /* --max-conns-per-ip (read from the server) */
    METRICS_LIMIT_KINDS
};

/* HTTP route names: the label of chatd_http_requests_total. */
enum metrics_route {
    METRICS_ROUTE_NONE, /* refused before routing (malformed, too large, timeout) */
    METRICS_ROUTE_WS,
    METRICS_ROUTE_ECHO,
    METRICS_ROUTE_PREFLIGHT,
    METRICS_ROUTE_HEALTHZ,
    METRICS_ROUTE_READYZ,
    METRICS_ROUTE_METRICS,
    METRICS_ROUTE_GATEWAY_API,
    METRICS_ROUTE_CHAT,
    METRICS_ROUTE_STATIC,
    METRICS_ROUTES
};

enum metrics_close_initiator {
    METRICS_CLOSE_SERVER, /* chatd sent the first close frame */
    METRICS_CLOSE_PEER,   /* the client did; chatd echoed its code */
    METRICS_CLOSE_NONE,   /* no closing handshake: code 1006 */
    METRICS_CLOSE_INITIATORS
};

enum metrics_slow_kind { METRICS_SLOW_WEBSOCKET, METRICS_SLOW_HTTP, METRICS_SLOW_KINDS };

#define METRICS_STATUS_SLOTS 32 /* known status codes, then one per class */
#define METRICS_CLOSE_SLOTS 20  /* 1000..1015, 3xxx, 4xxx, other */
#define METRICS_HIST_MAX 16     /* finite buckets of a histogram */

/* A histogram with fixed bounds, in integer units (microseconds, items);
 * buckets[i] counts observations <= bounds[i] and above the one before;
 * buckets[n] is +Inf. */
typedef struct metrics_histogram {
    const uint64_t *bounds;
    size_t n;
    double scale; /* rendered value = unit / scale (1e6: microseconds as seconds) */
    _Atomic uint64_t buckets[METRICS_HIST_MAX + 1];
    _Atomic uint64_t sum;
} metrics_histogram;

typedef struct metrics_state {
    uint64_t conns[METRICS_CONN_KINDS]; /* open now */
    uint64_t ws_messages_in, ws_messages_out;
    uint64_t ws_bytes_in, ws_bytes_out;
    uint64_t pushes[METRICS_PUSH_KINDS];
    uint64_t ws_closes[METRICS_CLOSE_INITIATORS][METRICS_CLOSE_SLOTS];
    uint64_t slow_closes[METRICS_SLOW_KINDS];
    uint64_t limit_refusals[METRICS_LIMIT_KINDS];
    uint64_t http[METRICS_ROUTES][METRICS_STATUS_SLOTS];
    uint64_t store_queue;                 /* submitted, not answered yet */
    metrics_histogram store_commit;       /* writer pass duration, microseconds */
    metrics_histogram store_batch;        /* write requests per committed transaction */
    metrics_histogram loop_read_to_write; /* a loop pass's first read to its writes, us */
} metrics_state;

/* The process's registry (static storage: zero until metrics_init). */
extern metrics_state metrics_g;

/* Sets up the histograms' bounds of m (call once; also for test states). */
void metrics_init(metrics_state *m);

/* ---- events (loop thread unless said otherwise) ----------------------- */

static inline void metrics_conn_open(enum metrics_conn_kind k)
{
    metrics_g.conns[k]++;
}
static inline void metrics_conn_closed(enum metrics_conn_kind k)
{
    metrics_g.conns[k]--;
}
/* A WebSocket frame of frame_len bytes (header included) was read. */
static inline void metrics_ws_frame_in(size_t frame_len)
{
    metrics_g.ws_bytes_in += frame_len;
}
/* A complete data message was delivered to the application. */
static inline void metrics_ws_message_in(void)
{
    metrics_g.ws_messages_in++;
}
/* A frame was handed to the write queue (queued: it was accepted). */
static inline void metrics_ws_sent(const sbuf *frame, bool queued)
{
    if (!queued)
        return;
    metrics_g.ws_bytes_out += frame->len;
    if (frame->len > 0 && (frame->data[0] & 0x08) == 0) /* a data frame, not control */
        metrics_g.ws_messages_out++;
}
static inline void metrics_push(enum metrics_push_kind k)
{
    metrics_g.pushes[k]++;
}
static inline void metrics_slow_close(enum metrics_slow_kind k)
{
    metrics_g.slow_closes[k]++;
}
static inline void metrics_limit_refused(enum metrics_limit_kind k)
{
    metrics_g.limit_refusals[k]++;
}
static inline void metrics_store_submitted(void)
{
    metrics_g.store_queue++;
}
static inline void metrics_store_answered(void)
{
    metrics_g.store_queue--;
}
/* The first close frame of a WebSocket: chatd's (peer_first false) or
 * the echo of the peer's code. */
void metrics_ws_close(uint16_t code, bool peer_first);
/* A WebSocket is gone; close_sent false means there was no closing
 * handshake (counted as 1006). Also lowers the WebSocket gauge. */
void metrics_ws_gone(bool close_sent);
/* An HTTP answer with status was queued for a request of route. */
void metrics_http_response(uint8_t route, int status);
/* Storage threads: a writer pass that started at uv_hrtime() start_ns is
 * done; a transaction committed `writes` write requests (0: nothing). */
void metrics_store_pass(uint64_t start_ns);
void metrics_store_commit(uint64_t writes);
/* A loop pass that read client bytes first at uv_hrtime() read_ns has
 * handed all its writes to the kernel (net/server.c). */
void metrics_loop_pass(uint64_t read_ns);

/* Observes value (in the histogram's unit); any thread. */
void metrics_hist_observe(metrics_histogram *h, uint64_t value);

/* ---- label helpers (pure; exposed for tests) --------------------------- */

const char *metrics_route_name(enum metrics_route r);
/* Slot of a status code, and the label text of a slot ("200", "4xx"). */
size_t metrics_status_slot(int status);
const char *metrics_status_label(size_t slot, char buf[8]);
/* Slot of a close code, and its label ("1000", "4xxx", "other"). */
size_t metrics_close_slot(uint16_t code);
const char *metrics_close_label(size_t slot, char buf[8]);
/* Appends value escaped for a label value (\\, \" and \n) to out (cap
 * bytes, NUL-terminated). Returns the length, or -1 when it did not fit. */
int metrics_escape_label(const char *value, char *out, size_t cap);

/* ---- scrape ------------------------------------------------------------ */

/* Values read when scraped, from the modules that own them. */
typedef struct metrics_scrape {
    const char *version, *store_backend;
    uint64_t conns_open, conns_accepted;
    uint64_t conns_refused_per_ip;
    uint64_t clients, uids;
    bool store_ok;
    bool cluster; /* --redis given: the cluster_* values are meaningful */
    bool bus_up;
    uint64_t cluster_nodes, bus_published, bus_received, bus_dropped, bus_bad_messages,
        bus_reconnects, cluster_calls_timed_out, cluster_pushes_in;
    bool gw; /* --gw-inner or --gw-register */
    uint64_t gw_workers, gw_events_out, gw_events_dropped, gw_slow_closes, gw_bad_inputs;
    bool webhook; /* --webhook-url */
    uint64_t webhook_queued, webhook_delivered, webhook_retried, webhook_failed, webhook_dropped,
        webhook_withdrawn, webhook_pending;
    /* process */
    double cpu_seconds;
    uint64_t rss_bytes, vsize_bytes, max_fds;
    double start_time_seconds; /* Unix time */
} metrics_scrape;

/* Fills the process values of s (getrusage, /proc/self/statm, getrlimit):
 * a few system calls, no disk I/O. */
void metrics_read_process(metrics_scrape *s);

/* Renders m and s as Prometheus text into a new NUL-terminated buffer of
 * *len bytes (the caller frees it); NULL on OOM. */
char *metrics_render(const metrics_state *m, const metrics_scrape *s, size_t *len);

#endif
