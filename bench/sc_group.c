/* sc_group: `chatd-bench groups`, durable group messages (issue 11) next to durable 1:1
 * messages, in one run over the same users and sockets.
 *
 * Setup: --users U accounts are registered (POST /user/register; or read from
 * --users-file, which a first run writes, so later runs skip the slow password hashing),
 * each opens a socket and binds it with its token ({"type":"bind"}). For every group size
 * M of --group-sizes (default 10,100,500) the users are split into U/M groups of M members
 * (users [g*M, (g+1)*M)), each made by its first member with POST /group/create, before the
 * sockets bind (so the "create" system messages reach nobody).
 *
 * Then one point after another, each with its own warm-up, measured window and result:
 *   - "direct": every user sends 1:1 messages to its partner (user i^1), as `chat` does;
 *   - "group M": the first --senders S members of every group of M send group messages
 *     ({"type":"send","message":{"group_id":G,...}}).
 * Every sender keeps --window W messages waiting for their `ack` (which chatd sends after
 * the message is stored); with --rate R (open loop) the senders send R messages/s in all
 * instead, each stamped with its scheduled time, at most W unacked each. Counted: acked messages/s
 * and ack latency, deliveries/s (the
 * {"type":"message"} pushes the recipients' sockets receive: M-1 per group message, 1 per
 * direct message) and delivery latency (send to receipt: client_msg_id and the start of
 * data carry the run, a sequence number and the send time).
 *
 * Store writes: when chatd serves /metrics (--metrics), the point reads
 * chatd_store_commit_batch_size (sum: write requests committed; count: transactions)
 * before its first send and after its last ack (and every delivery) has arrived, and
 * reports write requests and transactions per acked message over the whole point (warm-up
 * included): a group message that costs one write, not M, gives writes_per_msg ~1. */
#include "bench.h"
#include "fleet.h"
#include "report.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SIZES 8

typedef struct guser {
    wsc w;
    char token[256];
    long id;
    bool bound;
    uint32_t seq;
    long inflight;
    uint64_t sched; /* --rate: sends scheduled so far */
    double phase;   /* --rate: offset of its schedule, in periods (senders spread evenly) */
    char *frame;
    size_t frame_len, po, cm, dm; /* payload offset; client_msg_id and data offsets in it */
} guser;

typedef struct gpoint {
    long m;       /* members per group, 0 for the direct point */
    long groups;  /* groups of this size */
    long *gid;    /* their ids */
    long created; /* groups made so far */
} gpoint;

static guser *g_u;
static fleet g_f;
static httpc g_api, g_mapi;
static const char *g_api_base;
static long g_n, g_size, g_window, g_senders, g_registered, g_reg_next, g_bound;
static gpoint g_pt[MAX_SIZES];
static int g_npt;
static char g_run[9];
static bool g_stopping, g_sending, g_have_metrics;
static uint64_t g_acked, g_delivered, g_errors, g_bad, g_lost;    /* measured window */
static uint64_t g_t_sent, g_t_acked, g_t_delivered, g_t_expected; /* whole point */
static hist g_alat, g_dlat;
static double g_m_sum, g_m_count; /* from /metrics */
static long g_per_msg;            /* deliveries a message of this point makes */

static wsc *at(long i)
{
    return &g_u[i].w;
}

/* ---- users: registered, or read from --users-file ---- */

static void register_next(void);

static void on_registered(void *ctx, int status, const char *body, size_t len)
{
    guser *u = ctx;
    if (status < 0)
        fail("POST /user/register: %s", g_api.failed ? g_api.error : uv_strerror(status));
    if (status == 404 || status == 405) {
        fprintf(stderr,
                "chatd-bench groups: the server has no chat service (POST "
                "/user/register answered %d)\n",
                status);
        exit(EXIT_UNSUPPORTED);
    }
    if (status == 429)
        fail("POST /user/register was rate limited (429); start chatd with a higher "
             "--register-rate, or use fewer --users");
    json_error_t err;
    json_t *j = json_loadb(body, len, 0, &err);
    json_t *data = j ? json_object_get(j, "data") : NULL;
    const char *token = json_string_value(json_object_get(data, "token"));
    json_t *id = json_object_get(json_object_get(data, "user"), "id");
    if (status != 200 || !json_is_true(json_object_get(j, "status")) || !token ||
        !json_is_integer(id))
        fail("POST /user/register: HTTP %d: %.*s", status, (int)(len > 300 ? 300 : len), body);
    snprintf(u->token, sizeof u->token, "%s", token);
    u->id = (long)json_integer_value(id);
    json_decref(j);
    g_registered++;
    progress("registered", g_registered, g_n);
    if (g_registered == g_n)
        setup_done();
    else
        register_next();
}

static void register_next(void)
{
    while (g_reg_next < g_n && g_api.inflight < 8) {
        long i = g_reg_next++;
        char body[256];
        int n = snprintf(body, sizeof body,
                         "{\"username\":\"bg_%s_%ld\",\"password\":\"bench-%s-password\"}", g_run,
                         i, g_run);
        httpc_post(&g_api, "/user/register", body, (size_t)n, on_registered, &g_u[i]);
    }
}

/* "id token" per line; returns how many users it had (0: no file). */
static long users_read(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    long n = 0;
    char line[400];
    while (n < g_n && fgets(line, sizeof line, f)) {
        long id;
        char tok[256];
        if (sscanf(line, "%ld %255s", &id, tok) != 2)
            continue;
        g_u[n].id = id;
        snprintf(g_u[n].token, sizeof g_u[n].token, "%s", tok);
        n++;
    }
    fclose(f);
    return n;
}

static void users_write(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "chatd-bench groups: cannot write %s\n", path);
        return;
    }
    for (long i = 0; i < g_n; i++)
        fprintf(f, "%ld %s\n", g_u[i].id, g_u[i].token);
    fclose(f);
}

/* ---- groups ---- */

static long g_create_pending;

static void on_created(void *ctx, int status, const char *body, size_t len)
{
    long *slot = ctx;
    json_error_t err;
    json_t *j = status == 200 ? json_loadb(body, len, 0, &err) : NULL;
    json_t *grp = json_object_get(json_object_get(j, "data"), "group");
    json_t *id = json_object_get(grp, "group_id");
    if (status == 404 || status == 405)
        exit((fprintf(stderr,
                      "chatd-bench groups: the server has no groups (POST "
                      "/group/create answered %d)\n",
                      status),
              EXIT_UNSUPPORTED));
    if (!json_is_true(json_object_get(j, "status")) || !json_is_integer(id))
        fail("POST /group/create: HTTP %d: %.*s", status, (int)(len > 300 ? 300 : len), body);
    *slot = (long)json_integer_value(id);
    json_decref(j);
    if (--g_create_pending == 0)
        setup_done();
}

static void groups_create(void)
{
    size_t cap = 64 + (size_t)g_n * 24;
    char *body = malloc(cap);
    if (!body)
        fail("out of memory");
    for (int p = 0; p < g_npt; p++) {
        gpoint *pt = &g_pt[p];
        if (pt->m == 0)
            continue;
        for (long g = 0; g < pt->groups; g++) {
            long first = g * pt->m;
            size_t n = (size_t)snprintf(body, cap, "{\"name\":\"bench %s m%ld #%ld\",\"members\":[",
                                        g_run, pt->m, g);
            for (long k = 1; k < pt->m; k++)
                n += (size_t)snprintf(body + n, cap - n, "%s%ld", k > 1 ? "," : "",
                                      g_u[first + k].id);
            n += (size_t)snprintf(body + n, cap - n, "]}");
            g_create_pending++;
            httpc_post_as(&g_api, "/group/create", body, n, g_u[first].token, on_created,
                          &pt->gid[g]);
        }
    }
    free(body);
    if (g_create_pending == 0)
        setup_done();
}

/* ---- socket bind ---- */

static void on_bind_message(wsc *w, int opcode, char *p, size_t len)
{
    (void)opcode;
    guser *u = (guser *)w;
    if (u->bound || !memmem(p, len, "\"bind\"", 6))
        return;
    const char *st = json_field(p, len, "status");
    if (!st || strncmp(st, "true", 4) != 0)
        fail("socket bind refused: %.*s", (int)(len > 300 ? 300 : len), p);
    u->bound = true;
    g_bound++;
    progress("bound", g_bound, g_n);
    if (g_bound == g_n)
        setup_done();
}

static void on_setup_end(wsc *w, int status)
{
    fail("a user's connection ended during setup: %s", wsc_strerror(w, status));
}

static const wsc_handlers bind_handlers = {NULL, on_bind_message, on_setup_end};

/* ---- /metrics ---- */

static double metric(const char *body, size_t len, const char *name)
{
    size_t nl = strlen(name);
    const char *end = body + len, *p = body;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        if ((size_t)(eol - p) > nl + 1 && memcmp(p, name, nl) == 0 && p[nl] == ' ')
            return strtod(p + nl + 1, NULL);
        p = eol + 1;
    }
    return -1;
}

static void on_metrics(void *ctx, int status, const char *body, size_t len)
{
    (void)ctx;
    g_m_sum = g_m_count = -1;
    if (status == 200) {
        g_m_sum = metric(body, len, "chatd_store_commit_batch_size_sum");
        g_m_count = metric(body, len, "chatd_store_commit_batch_size_count");
    }
    setup_done();
}

/* Reads the store counters into g_m_sum, g_m_count (-1 when chatd has no /metrics). A
 * connection of its own each time: chatd closes a keep-alive connection that idles as long
 * as the registration of a few hundred users takes. */
static void metrics_read(void)
{
    if (!g_have_metrics)
        return;
    if (httpc_init(&g_mapi, g_api_base, NULL, 1) != 0)
        fail("cannot reach %s for /metrics", g_api_base);
    char req[512];
    int n =
        snprintf(req, sizeof req, "GET /metrics HTTP/1.1\r\nHost: %s\r\n\r\n", g_mapi.t.hostport);
    httpc_raw(&g_mapi, 0, req, (size_t)n, on_metrics, NULL);
    run_setup("reading /metrics");
    httpc_close(&g_mapi);
    if (g_m_sum < 0 || g_m_count < 0) {
        fprintf(stderr, "chatd-bench groups: no store counters from /metrics (start chatd with "
                        "--metrics): writes per message not reported\n");
        g_have_metrics = false;
    }
}

/* ---- sending ---- */

/* One message of u, stamped with time ts. */
static void send_at(guser *u, uint64_t ts)
{
    char id[32];
    memcpy(id, g_run, 8);
    hex8_put(id + 8, u->seq++);
    hex16_put(id + 16, ts);
    char *p = bconn_reserve(&u->w.c, u->frame_len);
    memcpy(p, u->frame, u->frame_len);
    const uint8_t *mask = (const uint8_t *)u->frame + u->po - 4;
    wsc_mask_patch(p + u->po, u->cm, id, 32, mask);
    wsc_mask_patch(p + u->po, u->dm, id, 32, mask);
    bconn_commit(&u->w.c, u->frame_len);
    u->inflight++;
    g_t_sent++;
    g_t_expected += (uint64_t)g_per_msg;
}

static void send_msg(guser *u)
{
    send_at(u, bench_now);
}

/* --rate: open loop. Every millisecond each sender sends what its schedule (rate / senders
 * per second, from g_t0, the senders' schedules offset evenly over one period so they do not
 * send in lockstep) owes, stamped with the scheduled time, so a late send counts as late (no
 * coordinated omission); a sender with --window messages unacked skips its turn (counted in
 * g_skipped). */
static uv_timer_t g_rate_timer;
static uint64_t g_t0, g_skipped;
static double g_per_sender; /* messages/s */

static void rate_tick(uv_timer_t *t)
{
    (void)t;
    bench_clock();
    /* in periods of one sender (1 / g_per_sender s) since g_t0 */
    double elapsed = (double)(bench_now - g_t0) * g_per_sender / 1e9;
    for (long i = 0; i < g_n; i++) {
        guser *u = &g_u[i];
        if (!u->frame || elapsed < u->phase)
            continue;
        /* message k of u is due at (k + phase) periods: k = 0 right at its phase */
        uint64_t due = (uint64_t)(elapsed - u->phase) + 1;
        bool sent = false;
        while (u->sched < due) {
            uint64_t ts = g_t0 + (uint64_t)(((double)u->sched + u->phase) * 1e9 / g_per_sender);
            u->sched++;
            if (u->inflight >= g_window) {
                if (g_measuring)
                    g_skipped++;
                continue;
            }
            send_at(u, ts);
            sent = true;
        }
        if (sent)
            bconn_flush(&u->w.c);
    }
}

/* The stamp at p (32 bytes: run, seq, time); its time, or 0 when it is not ours. */
static uint64_t stamp_time(const char *p, const char *end)
{
    uint64_t ts;
    if (end - p < 32 || memcmp(p, g_run, 8) != 0 || hex16_get(p + 16, &ts) != 0)
        return 0;
    return ts;
}

static void on_message(wsc *w, int opcode, char *p, size_t len)
{
    (void)opcode;
    guser *u = (guser *)w;
    const char *end = p + len;
    if (memmem(p, len, "\"type\":\"ack\"", 12)) {
        const char *v = json_field(p, len, "client_msg_id");
        uint64_t ts = v && *v == '"' ? stamp_time(v + 1, end) : 0;
        if (!ts) {
            if (g_bad++ == 0)
                fprintf(stderr, "chatd-bench groups: ack without our client_msg_id: %.*s\n",
                        (int)(len > 300 ? 300 : len), p);
            return;
        }
        u->inflight--;
        g_t_acked++;
        if (g_measuring) {
            hist_record(&g_alat, bench_now > ts ? bench_now - ts : 0);
            g_acked++;
        }
        if (g_sending && !g_stopping && g_opt.rate <= 0)
            send_msg(u);
        return;
    }
    if (memmem(p, len, "\"type\":\"message\"", 16)) {
        const char *v = json_field(p, len, "data");
        uint64_t ts = v && *v == '"' ? stamp_time(v + 1, end) : 0;
        if (!ts)
            return; /* a system message, or one from an earlier run */
        g_t_delivered++;
        if (g_measuring) {
            hist_record(&g_dlat, bench_now > ts ? bench_now - ts : 0);
            g_delivered++;
        }
        return;
    }
    if (memmem(p, len, "\"type\":\"error\"", 14)) {
        if (g_errors++ == 0)
            fprintf(stderr, "chatd-bench groups: a send was refused: %.*s\n",
                    (int)(len > 300 ? 300 : len), p);
        u->inflight--;
        if (g_sending && !g_stopping && g_opt.rate <= 0)
            send_msg(u);
    }
    /* presence, read receipts and the like: not counted */
}

static void on_end(wsc *w, int status)
{
    if (g_lost++ == 0)
        fprintf(stderr, "chatd-bench groups: a user's connection ended: %s\n",
                wsc_strerror(w, status));
}

static const wsc_handlers handlers = {NULL, on_message, on_end};

/* The frame of user u's message to "to_id":target or "group_id":target. */
static void frame_build(guser *u, const char *key, long to)
{
    size_t cap = 256 + (size_t)g_size;
    char *json = malloc(cap);
    if (!json)
        fail("out of memory");
    int n = snprintf(json, cap,
                     "{\"type\":\"send\",\"message\":{\"%s\":%ld,\"type\":\"text\","
                     "\"data\":\"",
                     key, to);
    u->dm = (size_t)n;
    for (long k = 0; k < g_size; k++)
        json[n + k] = k < 32 ? '0' : (char)('a' + k % 26);
    n += (int)g_size;
    n += snprintf(json + n, cap - (size_t)n, "\",\"client_msg_id\":\"");
    u->cm = (size_t)n;
    memset(json + n, '0', 32);
    n += 32;
    n += snprintf(json + n, cap - (size_t)n, "\"}}");
    uint64_t r = rnd64();
    uint8_t mask[4];
    memcpy(mask, &r, 4);
    free(u->frame);
    u->frame_len = wsc_frame_size((size_t)n);
    u->frame = malloc(u->frame_len);
    if (!u->frame)
        fail("out of memory");
    u->po = wsc_frame_build(u->frame, WS_TEXT, json, (size_t)n, mask);
    free(json);
}

static void reset(void)
{
    hist_reset(&g_alat);
    hist_reset(&g_dlat);
    g_acked = g_delivered = g_errors = g_bad = g_skipped = 0;
}

static uv_timer_t g_drain_timer;
static bool g_drain_timeout;

static void on_drain_timeout(uv_timer_t *t)
{
    (void)t;
    g_drain_timeout = true;
}

static bool drained(void)
{
    for (long i = 0; i < g_n; i++)
        if (g_u[i].inflight > 0)
            return false;
    return g_t_delivered >= g_t_expected;
}

static int run_point(const gpoint *pt)
{
    /* who sends what */
    long nsend = 0;
    for (long i = 0; i < g_n; i++) {
        g_u[i].inflight = 0;
        free(g_u[i].frame);
        g_u[i].frame = NULL;
    }
    if (pt->m == 0) {
        for (long i = 0; i < g_n; i++, nsend++) /* g_n is even */
            frame_build(&g_u[i], "to_id", g_u[i ^ 1].id);
        g_per_msg = 1;
    } else {
        long s = g_senders < pt->m ? g_senders : pt->m;
        for (long g = 0; g < pt->groups; g++)
            for (long k = 0; k < s; k++, nsend++)
                frame_build(&g_u[g * pt->m + k], "group_id", pt->gid[g]);
        g_per_msg = pt->m - 1;
    }
    g_t_sent = g_t_acked = g_t_delivered = g_t_expected = 0;
    g_stopping = false;
    reset();
    metrics_read();
    double sum0 = g_m_sum, count0 = g_m_count;

    if (pt->m == 0)
        fprintf(stderr, "chatd-bench groups: direct: %ld users send 1:1, window %ld\n", nsend,
                g_window);
    else
        fprintf(stderr,
                "chatd-bench groups: %ld groups of %ld: %ld senders, window %ld, measuring "
                "%.1f s\n",
                pt->groups, pt->m, nsend, g_window, g_opt.duration);
    g_sending = true;
    g_t0 = bench_clock();
    if (g_opt.rate > 0) {
        g_per_sender = g_opt.rate / (double)nsend;
        long k = 0;
        for (long i = 0; i < g_n; i++) {
            g_u[i].sched = 0;
            if (g_u[i].frame)
                g_u[i].phase = (double)k++ / (double)nsend;
        }
        uv_timer_init(g_loop, &g_rate_timer);
        uv_timer_start(&g_rate_timer, rate_tick, 1, 1);
    } else {
        for (long i = 0; i < g_n; i++) {
            if (!g_u[i].frame)
                continue;
            for (long k = 0; k < g_window; k++)
                send_msg(&g_u[i]);
            bconn_flush(&g_u[i].w.c);
        }
    }
    window_result r = run_measured(reset);
    g_stopping = true;
    if (g_opt.rate > 0) {
        uv_timer_stop(&g_rate_timer);
        uv_close((uv_handle_t *)&g_rate_timer, NULL);
    }
    /* drain: every ack and every delivery of what was sent (10 s at most) */
    g_drain_timeout = false;
    uv_timer_init(g_loop, &g_drain_timer);
    uv_timer_start(&g_drain_timer, on_drain_timeout, 10000, 0);
    while (!drained() && !g_drain_timeout && !g_lost)
        uv_run(g_loop, UV_RUN_ONCE);
    uv_timer_stop(&g_drain_timer);
    uv_close((uv_handle_t *)&g_drain_timer, NULL);
    uv_run(g_loop, UV_RUN_NOWAIT);
    g_sending = false;
    uint64_t missing = g_t_expected > g_t_delivered ? g_t_expected - g_t_delivered : 0;
    long unacked = 0;
    for (long i = 0; i < g_n; i++)
        unacked += g_u[i].inflight > 0 ? g_u[i].inflight : 0;
    metrics_read();

    char point[32];
    if (pt->m == 0)
        snprintf(point, sizeof point, "direct");
    else
        snprintf(point, sizeof point, "group %ld", pt->m);
    report_begin("groups");
    report_str("kind", "point", point);
    report_int("members", "members per group", pt->m ? pt->m : 2);
    report_int("groups", pt->m ? "groups" : NULL, pt->m ? pt->groups : 0);
    report_int("users", "users", g_n);
    report_int("senders", "senders", nsend);
    report_int("size", "message bytes", g_size);
    report_int("window", g_opt.rate > 0 ? "most unacked per sender" : "unacked per sender",
               g_window);
    if (g_opt.rate > 0) {
        report_num("offered", "offered messages/s", g_opt.rate);
        report_int("skipped", g_skipped ? "skipped (window full)" : NULL, (long long)g_skipped);
    }
    report_num("duration_s", "measured s", r.secs);
    report_num("msgs_per_s", "acked messages/s", r.secs > 0 ? (double)g_acked / r.secs : 0);
    report_num("rate", "deliveries/s", r.secs > 0 ? (double)g_delivered / r.secs : 0);
    report_latency("ack", "ack latency us", &g_alat);
    report_latency("lat", "delivery latency us", &g_dlat);
    report_cpu(&r);
    if (r.server_cpu >= 0 && g_delivered)
        report_num("server_us_per_delivery", "server cpu us/delivery",
                   r.server_cpu * r.secs * 1e6 / (double)g_delivered);
    report_int("point_msgs", "messages acked (point)", (long long)g_t_acked);
    report_int("point_deliveries", "deliveries (point)", (long long)g_t_delivered);
    if (g_have_metrics && g_t_acked) {
        double w = g_m_sum - sum0, c = g_m_count - count0;
        report_num("store_writes", "store write requests", w);
        report_num("store_commits", "store transactions", c);
        report_num("writes_per_msg", "store writes/message", w / (double)g_t_acked);
        report_num("msgs_per_commit", "messages/transaction", c > 0 ? (double)g_t_acked / c : 0);
    }
    report_int("missing", missing ? "deliveries missing" : NULL, (long long)missing);
    report_int("unacked", unacked ? "never acked" : NULL, unacked);
    report_int("errors", g_errors ? "refused sends" : NULL, (long long)g_errors);
    report_int("lost_conns", g_lost ? "lost connections" : NULL, (long long)g_lost);
    report_end();
    return g_lost || g_errors || g_bad || missing || unacked || g_acked == 0;
}

static int sizes_parse(const char *s)
{
    g_npt = 0;
    g_pt[g_npt++] = (gpoint){.m = 0};
    while (s && *s) {
        char *end;
        long m = strtol(s, &end, 10);
        if (end == s || m < 2 || g_npt == MAX_SIZES) {
            fprintf(stderr,
                    "chatd-bench groups: --group-sizes wants up to %d sizes >= 2, "
                    "comma separated\n",
                    MAX_SIZES - 1);
            return -1;
        }
        g_pt[g_npt++] = (gpoint){.m = m};
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            return -1;
    }
    return 0;
}

int cmd_groups(void)
{
    target t;
    if (target_parse(g_opt.url, &t) != 0)
        return EXIT_USAGE;
    if (sizes_parse(g_opt.group_sizes ? g_opt.group_sizes : "10,100,500") != 0)
        return EXIT_USAGE;
    long maxm = 2;
    for (int p = 0; p < g_npt; p++)
        maxm = g_pt[p].m > maxm ? g_pt[p].m : maxm;
    g_n = g_opt.users > 0 ? g_opt.users : maxm;
    g_n += g_n & 1;
    if (g_n < maxm)
        fail("--users %ld is fewer than the largest group (%ld)", g_n, maxm);
    for (int p = 1; p < g_npt; p++) {
        g_pt[p].groups = g_n / g_pt[p].m;
        g_pt[p].gid = calloc((size_t)g_pt[p].groups, sizeof(long));
    }
    g_size = g_opt.size >= 0 ? g_opt.size : 32;
    g_window = g_opt.window > 0 ? g_opt.window : 8;
    g_senders = g_opt.senders > 0 ? g_opt.senders : 1;
    if (g_size < 32)
        fail("--size must be at least 32 (the stamp at the start of data)");
    hex8_put(g_run, (uint32_t)rnd64());
    g_run[8] = 0;
    g_u = calloc((size_t)g_n, sizeof *g_u);
    if (!g_u)
        fail("out of memory");

    char api_url[400];
    snprintf(api_url, sizeof api_url, "%s://%s", api_scheme(&t), t.hostport);
    g_api_base = g_opt.api_url ? g_opt.api_url : api_url;
    if (httpc_init(&g_api, g_api_base, NULL, (int)g_opt.api_conns) != 0)
        return EXIT_RUN_FAILED;
    g_have_metrics = true;

    long have = g_opt.users_file ? users_read(g_opt.users_file) : 0;
    if (have >= g_n) {
        fprintf(stderr, "chatd-bench groups: %ld users from %s\n", g_n, g_opt.users_file);
    } else {
        g_registered = g_reg_next = 0;
        register_next();
        run_setup("registering users");
        if (g_opt.users_file)
            users_write(g_opt.users_file);
    }
    groups_create();
    run_setup("creating groups");

    g_f = (fleet){.t = &t, .n = g_n, .at = at, .want_init = true};
    fleet_open(&g_f);
    for (long i = 0; i < g_n; i++) {
        guser *u = &g_u[i];
        u->w.h = &bind_handlers;
        char msg[400];
        int n = snprintf(msg, sizeof msg, "{\"type\":\"bind\",\"token\":\"%s\"}", u->token);
        wsc_send(&u->w, WS_TEXT, msg, (size_t)n);
        bconn_flush(&u->w.c);
    }
    run_setup("binding sockets");
    for (long i = 0; i < g_n; i++)
        g_u[i].w.h = &handlers;
    fprintf(stderr, "chatd-bench groups: %ld users bound, %d points of %.1f s\n", g_n, g_npt,
            g_opt.duration);

    int failed = 0;
    for (int p = 0; p < g_npt && !g_lost; p++)
        failed |= run_point(&g_pt[p]);
    httpc_close(&g_api);
    fleet_close_all(&g_f);
    return failed ? EXIT_RUN_FAILED : 0;
}
