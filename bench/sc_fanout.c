/* sc_fanout: `chatd-bench fanout`, one message to many sockets: --members clients join one
 * group (join_group through the server API), then send_to_group broadcasts go out as fast as
 * deliveries keep up: --window broadcasts in flight (default 8), the next one sent when every
 * member has received an earlier one. A window of several lets the server and the members
 * batch (a member reads all its queued copies at once), as it would under real load. Reports
 * deliveries/s (members x broadcasts/s), the delivery latency of every copy and the time until the
 * last member has a broadcast.
 *
 * The broadcast request is built once and patched per send with a sequence number and the
 * send time in hex at the start of `data`, which the server passes on as is.
 *
 * The padding after them is English text (printable, no JSON escapes), so that with
 * --ws-deflate the compression ratio is a chat message's, not that of a repeated pattern.
 * Reported besides: the bytes the members read from their sockets per delivery
 * (wire_bytes_per_delivery: frames, or TLS records, as on the wire, TCP/IP headers not
 * counted), the server's CPU per delivery, and with --ws-deflate how many members agreed to
 * permessage-deflate and how many messages came compressed.
 *
 * With --url2 (a second cluster node) every odd-numbered member connects there, so the group
 * is spread evenly over two nodes; joins and broadcasts still go to --url's server API. */
#include "bench.h"
#include "fleet.h"
#include "report.h"

#include <stdlib.h>
#include <string.h>

#define RING 1024 /* broadcasts tracked at once; --window is at most half */

static wsc *g_w;
static fleet g_f;
static httpc g_api;
static long g_k, g_size, g_window, g_expected;
static char *g_req; /* the whole HTTP request */
static size_t g_req_len, g_seq_at, g_ts_at;
static uint32_t g_seq, g_completed_seq;
static uint32_t g_count[RING]; /* deliveries per in-flight broadcast */
static uint64_t g_sent_at[RING];
static long g_inflight;
static uint64_t g_deliveries, g_broadcasts, g_bad, g_lost, g_api_errors;
static hist g_lat, g_bcast_lat;
static bool g_stopping;
static uv_timer_t g_watch;
static uint64_t g_last_progress, g_progress_mark;
static char g_group[64];
static uint64_t g_rx0;
static char *g_pad; /* the padding after seq and timestamp, as sent */
static wsc_deflate_stats g_dfl0;

static const char TEXT[] =
    "Hi all, the meeting moves to Thursday at ten because the projector in the big room is "
    "still broken. Please bring your notes from last week and the numbers for the third "
    "quarter, we will go through them one by one. If you cannot come, send me a short message "
    "before Wednesday evening and I will share the slides with you afterwards. Lunch is on "
    "the team this time, so tell Anna what you would like to eat. Thanks and see you then. ";

static uint64_t rx_total(void)
{
    uint64_t sum = 0;
    for (long i = 0; i < g_k; i++)
        sum += g_w[i].c.rx_bytes;
    return sum;
}

static wsc *at(long i)
{
    return &g_w[i];
}

static size_t join_body(const fleet *f, long i, char *buf, size_t cap)
{
    return (size_t)snprintf(buf, cap, "{\"client_id\":\"%s\",\"group\":\"%s\"}", f->client_id[i],
                            g_group);
}

static void on_api(void *ctx, int status, const char *body, size_t len)
{
    (void)ctx;
    if ((status == 200 && len > 0) || g_stopping)
        return;
    char msg[200];
    if (!api_ok(status, body, len, msg, sizeof msg) && g_api_errors++ == 0)
        fprintf(stderr, "chatd-bench fanout: send_to_group failed: %s\n", msg);
    if (status < 0)
        stop_measured();
}

static void send_broadcast(void)
{
    char hex[16];
    uint32_t seq = g_seq++;
    hex8_put(g_req + g_seq_at, seq);
    hex16_put(hex, bench_now);
    memcpy(g_req + g_ts_at, hex, 16);
    g_count[seq % RING] = 0;
    g_sent_at[seq % RING] = bench_now;
    g_inflight++;
    httpc_raw(&g_api, g_opt.spread ? (int)(seq % (uint32_t)g_api.nconns) : 0, g_req, g_req_len,
              on_api, NULL);
}

static void on_message(wsc *w, int opcode, char *p, size_t len)
{
    (void)w;
    (void)opcode;
    uint32_t seq;
    uint64_t ts;
    if (len < 24 || hex8_get(p, &seq) != 0 || hex16_get(p + 8, &ts) != 0) {
        if (g_bad++ == 0)
            fprintf(stderr, "chatd-bench fanout: unexpected message: %.*s\n",
                    (int)(len > 200 ? 200 : len), p);
        return;
    }
    /* with deflate, check what was inflated: the whole message, padding included */
    if (g_opt.ws_deflate && (len != (size_t)g_size || memcmp(p + 24, g_pad, len - 24) != 0)) {
        if (g_bad++ == 0)
            fprintf(stderr,
                    "chatd-bench fanout: message of %zu bytes does not match the sent one\n", len);
        return;
    }
    if (g_measuring) {
        hist_record(&g_lat, bench_now > ts ? bench_now - ts : 0);
        g_deliveries++;
    }
    if (g_seq - seq > RING / 2)
        return; /* too old to track */
    if (++g_count[seq % RING] != (uint32_t)g_expected)
        return;
    /* Every member has this broadcast. */
    if (g_measuring) {
        hist_record(&g_bcast_lat, bench_now - g_sent_at[seq % RING]);
        g_broadcasts++;
    }
    g_completed_seq++;
    g_last_progress = bench_now;
    g_inflight--;
    if (!g_stopping)
        send_broadcast();
}

static void on_end(wsc *w, int status)
{
    if (g_lost++ == 0)
        fprintf(stderr, "chatd-bench fanout: a member's connection ended: %s\n",
                wsc_strerror(w, status));
    g_expected--;
}

static const wsc_handlers handlers = {NULL, on_message, on_end};

static void watch(uv_timer_t *t)
{
    (void)t;
    uint64_t now = uv_hrtime();
    if (g_completed_seq != g_progress_mark) {
        g_progress_mark = g_completed_seq;
        return;
    }
    if (now - g_last_progress > 5000000000ull) {
        uint32_t oldest = g_completed_seq;
        fprintf(stderr,
                "chatd-bench fanout: stalled: no broadcast reached all %ld members for 5 s "
                "(one had %u deliveries)\n",
                g_expected, g_count[oldest % RING]);
        g_lost++;
        stop_measured();
    }
}

static void reset(void)
{
    hist_reset(&g_lat);
    hist_reset(&g_bcast_lat);
    g_deliveries = g_broadcasts = g_bad = g_api_errors = 0;
    g_rx0 = rx_total();
    g_dfl0 = g_wsc_deflate;
}

int cmd_fanout(void)
{
    target t, t2;
    if (target_parse(g_opt.url, &t) != 0)
        return EXIT_USAGE;
    if (g_opt.url2 && (target_parse(g_opt.url2, &t2) != 0 || t2.raw || t.raw))
        fail("--url2 wants a ws:// URL next to a ws:// --url");
    g_k = g_opt.members > 0 ? g_opt.members : (g_opt.n > 0 ? g_opt.n : 1000);
    g_size = g_opt.size >= 0 ? g_opt.size : 32;
    g_window = g_opt.window > 0 ? g_opt.window : 8;
    if (g_size < 24)
        fail("--size must be at least 24 (sequence number and timestamp)");
    if (g_window > RING / 2)
        fail("--window must be at most %d", RING / 2);
    if (!g_opt.api_secret)
        fail("--api-secret is required (members join the group through the server API)");
    snprintf(g_group, sizeof g_group, "bench-fanout-%016llx", (unsigned long long)rnd64());

    g_w = calloc((size_t)g_k, sizeof *g_w);
    if (!g_w)
        fail("out of memory");
    char api_url[400];
    snprintf(api_url, sizeof api_url, "%s://%s", api_scheme(&t), t.hostport);
    if (httpc_init(&g_api, g_opt.api_url ? g_opt.api_url : api_url, g_opt.api_secret,
                   (int)g_opt.api_conns) != 0)
        return EXIT_RUN_FAILED;

    g_f = (fleet){.t = &t, .t2 = g_opt.url2 ? &t2 : NULL, .n = g_k, .at = at, .want_init = true};
    fleet_open(&g_f);
    fleet_api_all(&g_f, &g_api, "/gateway/join_group", join_body);
    g_expected = g_k;
    for (long i = 0; i < g_k; i++)
        g_w[i].h = &handlers;
    fprintf(stderr, "chatd-bench fanout: %ld members joined%s, measuring %.1f s\n", g_k,
            g_opt.url2 ? " (on two nodes)" : "", g_opt.duration);

    /* The request: head, then {"group":"G","data":"<seq 8><ts 16><pad>"}. */
    size_t body_cap = 128 + (size_t)g_size;
    char *body = malloc(body_cap);
    int bl = snprintf(body, body_cap, "{\"group\":\"%s\",\"data\":\"", g_group);
    size_t data_at = (size_t)bl;
    for (long k = 0; k < g_size; k++)
        body[bl + k] = k < 24 ? '0' : TEXT[(k - 24) % (sizeof TEXT - 1)];
    bl += (int)g_size;
    bl += snprintf(body + bl, body_cap - (size_t)bl, "\"}");
    char head[1024];
    size_t hl = httpc_head(&g_api, head, sizeof head, "/gateway/send_to_group", (size_t)bl);
    g_req_len = hl + (size_t)bl;
    g_req = malloc(g_req_len);
    memcpy(g_req, head, hl);
    memcpy(g_req + hl, body, (size_t)bl);
    g_seq_at = hl + data_at;
    g_ts_at = g_seq_at + 8;
    g_pad = malloc((size_t)g_size);
    memcpy(g_pad, body + data_at + 24, (size_t)g_size - 24);
    free(body);

    uv_timer_init(g_loop, &g_watch);
    uv_timer_start(&g_watch, watch, 1000, 1000);
    g_last_progress = bench_clock();
    for (long k = 0; k < g_window; k++)
        send_broadcast();
    window_result r = run_measured(reset);
    uint64_t rx = rx_total() - g_rx0;
    wsc_deflate_stats d = g_wsc_deflate;
    g_stopping = true;
    uv_timer_stop(&g_watch);
    uv_close((uv_handle_t *)&g_watch, NULL);

    report_begin("fanout");
    report_int("members", "members", g_k);
    report_int("size", "payload bytes", g_size);
    report_int("window", "broadcasts in flight", g_window);
    if (g_opt.url2)
        report_str("members_on", "members on", "two nodes");
    report_num("duration_s", "measured s", r.secs);
    report_num("broadcasts_per_s", "broadcasts/s", r.secs > 0 ? (double)g_broadcasts / r.secs : 0);
    report_num("rate", "deliveries/s", r.secs > 0 ? (double)g_deliveries / r.secs : 0);
    report_latency("lat", "delivery latency us", &g_lat);
    report_latency("bcast", "last delivery us", &g_bcast_lat);
    report_cpu(&r);
    double per = g_deliveries ? 1.0 / (double)g_deliveries : 0;
    if (r.server_cpu >= 0)
        report_num("server_us_per_delivery", "server cpu us/delivery",
                   r.server_cpu * r.secs * 1e6 * per);
    report_num("bench_us_per_delivery", "chatd-bench cpu us/delivery",
               r.self_cpu * r.secs * 1e6 * per);
    report_int("wire_bytes", "bytes read by members", (long long)rx);
    report_num("wire_bytes_per_delivery", "wire bytes/delivery", (double)rx * per);
    if (g_opt.ws_deflate) {
        report_int("deflate_conns", "members with deflate", (long long)d.conns);
        report_int("deflate_refused", d.refused ? "deflate refused" : NULL, (long long)d.refused);
        uint64_t nc = d.compressed - g_dfl0.compressed;
        report_int("compressed_msgs", "compressed messages", (long long)nc);
        report_int("uncompressed_msgs", "uncompressed messages",
                   (long long)(d.plain - g_dfl0.plain));
        report_int("inflated", "messages inflated", (long long)(d.inflated - g_dfl0.inflated));
        uint64_t wb = d.wire_bytes - g_dfl0.wire_bytes, pb = d.plain_bytes - g_dfl0.plain_bytes;
        report_num("deflate_ratio", "compressed/plain payload", pb ? (double)wb / (double)pb : 0);
    }
    report_int("api_errors", g_api_errors ? "API errors" : NULL, (long long)g_api_errors);
    report_int("lost_conns", g_lost ? "lost connections" : NULL, (long long)g_lost);
    report_end();
    httpc_close(&g_api);
    fleet_close_all(&g_f);
    return g_lost || g_bad || g_api_errors || g_deliveries == 0 ? EXIT_RUN_FAILED : 0;
}
