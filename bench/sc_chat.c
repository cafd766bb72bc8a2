/* sc_chat: `chatd-bench chat`, durable 1:1 messages through the chat service: --users
 * accounts are registered (POST /user/register), each opens a socket and binds it with its
 * token ({"type":"bind"}), then every user sends text messages to its partner over the socket
 * ({"type":"send"}) with --window of them waiting for their `ack` (which chatd sends only
 * after the message is stored). Reports acked messages/s and ack latency. How durable "stored"
 * is depends on how chatd runs (--durability); run.sh passes that in --note.
 *
 * The send frame is built once per user and patched per send: client_msg_id carries a run
 * prefix, a sequence number and the send time, so the ack alone gives the latency. */
#include "bench.h"
#include "fleet.h"
#include "report.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

typedef struct chat_user {
    wsc w;
    char token[256];
    long id;
    bool bound;
    uint32_t seq;
    char *frame;
    size_t frame_len, po, cm; /* payload offset; client_msg_id offset in the payload */
} chat_user;

static chat_user *g_u;
static fleet g_f;
static long g_n, g_size, g_window, g_registered, g_reg_next, g_bound;
static uint64_t g_acked, g_received, g_errors, g_bad, g_lost;
static hist g_lat;
static bool g_stopping;
static char g_run[9];
static uint64_t g_run_id;
static httpc g_api;

static wsc *at(long i)
{
    return &g_u[i].w;
}

/* ---- registration ---- */

static void register_next(void);

static void on_registered(void *ctx, int status, const char *body, size_t len)
{
    chat_user *u = ctx;
    if (status < 0)
        fail("POST /user/register: %s", g_api.failed ? g_api.error : uv_strerror(status));
    if (status == 404 || status == 405) {
        fprintf(stderr,
                "chatd-bench chat: the server does not offer the chat service (POST "
                "/user/register answered %d); `chat` needs a chatd with accounts and socket "
                "send\n",
                status);
        exit(EXIT_UNSUPPORTED);
    }
    if (status == 429)
        fail("POST /user/register was rate limited (429); start chatd with a higher "
             "--login-rate, or use fewer --users");
    json_error_t err;
    json_t *j = json_loadb(body, len, 0, &err);
    json_t *data = j ? json_object_get(j, "data") : NULL;
    const char *token = json_string_value(json_object_get(data, "token"));
    json_t *id = json_object_get(json_object_get(data, "user"), "id");
    if (status != 200 || !json_is_true(json_object_get(j, "status")) || !token ||
        !json_is_integer(id)) {
        fail("POST /user/register: HTTP %d: %.*s", status, (int)(len > 300 ? 300 : len), body);
    }
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
    /* Password hashing is deliberately slow: a few at a time is all the server can use. */
    while (g_reg_next < g_n && g_api.inflight < 8) {
        long i = g_reg_next++;
        char body[256];
        int n = snprintf(body, sizeof body,
                         "{\"username\":\"bench_%s_%ld\",\"password\":\"bench-%s-password\"}",
                         g_run, i, g_run);
        httpc_post(&g_api, "/user/register", body, (size_t)n, on_registered, &g_u[i]);
    }
}

/* ---- socket bind ---- */

static void on_bind_message(wsc *w, int opcode, char *p, size_t len)
{
    (void)opcode;
    chat_user *u = (chat_user *)w;
    if (u->bound)
        return;
    if (!memmem(p, len, "\"bind\"", 6))
        return; /* e.g. a message from a faster partner */
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

/* ---- sending ---- */

static void send_msg(chat_user *u)
{
    char id[40];
    memcpy(id, g_run, 8);
    hex8_put(id + 8, u->seq++);
    hex16_put(id + 16, bench_now);
    char *p = bconn_reserve(&u->w.c, u->frame_len);
    memcpy(p, u->frame, u->frame_len);
    wsc_mask_patch(p + u->po, u->cm, id, 32, (const uint8_t *)u->frame + u->po - 4);
    bconn_commit(&u->w.c, u->frame_len);
}

static void on_message(wsc *w, int opcode, char *p, size_t len)
{
    (void)opcode;
    chat_user *u = (chat_user *)w;
    if (memmem(p, len, "\"type\":\"ack\"", 12)) {
        char id[64];
        uint64_t ts;
        if (json_str_field(p, len, "client_msg_id", id, sizeof id) != 32 ||
            memcmp(id, g_run, 8) != 0 || hex16_get(id + 16, &ts) != 0) {
            if (g_bad++ == 0)
                fprintf(stderr, "chatd-bench chat: ack without our client_msg_id: %.*s\n",
                        (int)(len > 300 ? 300 : len), p);
        } else if (g_measuring) {
            hist_record(&g_lat, bench_now > ts ? bench_now - ts : 0);
            g_acked++;
        }
    } else if (memmem(p, len, "\"type\":\"message\"", 16)) {
        if (g_measuring)
            g_received++;
        return;
    } else if (memmem(p, len, "\"type\":\"error\"", 14)) {
        if (g_errors++ == 0)
            fprintf(stderr, "chatd-bench chat: a send was refused: %.*s\n",
                    (int)(len > 300 ? 300 : len), p);
    } else {
        return; /* read receipts and the like */
    }
    if (!g_stopping)
        send_msg(u);
}

static void on_end(wsc *w, int status)
{
    if (g_lost++ == 0)
        fprintf(stderr, "chatd-bench chat: a user's connection ended: %s\n",
                wsc_strerror(w, status));
}

static const wsc_handlers handlers = {NULL, on_message, on_end};

static void reset(void)
{
    hist_reset(&g_lat);
    g_acked = g_received = g_errors = g_bad = 0;
}

int cmd_chat(void)
{
    target t;
    if (target_parse(g_opt.url, &t) != 0)
        return EXIT_USAGE;
    long users = g_opt.users > 0 ? g_opt.users : 20;
    g_n = users + (users & 1);
    g_size = g_opt.size >= 0 ? g_opt.size : 32;
    g_window = g_opt.window > 0 ? g_opt.window : 8;
    if (g_size < 1)
        fail("--size must be at least 1");
    g_run_id = rnd64();
    hex8_put(g_run, (uint32_t)g_run_id);
    g_run[8] = 0;
    g_u = calloc((size_t)g_n, sizeof *g_u);
    if (!g_u)
        fail("out of memory");

    char api_url[400];
    snprintf(api_url, sizeof api_url, "%s://%s", api_scheme(&t), t.hostport);
    if (httpc_init(&g_api, g_opt.api_url ? g_opt.api_url : api_url, NULL, (int)g_opt.api_conns) !=
        0)
        return EXIT_RUN_FAILED;
    register_next();
    run_setup("registering users");

    g_f = (fleet){.t = &t, .n = g_n, .at = at, .want_init = true};
    fleet_open(&g_f);
    for (long i = 0; i < g_n; i++) {
        chat_user *u = &g_u[i];
        u->w.h = &bind_handlers;
        char msg[400];
        int n = snprintf(msg, sizeof msg, "{\"type\":\"bind\",\"token\":\"%s\"}", u->token);
        wsc_send(&u->w, WS_TEXT, msg, (size_t)n);
        bconn_flush(&u->w.c);
    }
    run_setup("binding sockets");
    fprintf(stderr, "chatd-bench chat: %ld users bound, measuring %.1f s\n", g_n, g_opt.duration);

    size_t cap = 256 + (size_t)g_size;
    char *json = malloc(cap);
    for (long i = 0; i < g_n; i++) {
        chat_user *u = &g_u[i];
        int n = snprintf(json, cap,
                         "{\"type\":\"send\",\"message\":{\"to_id\":%ld,"
                         "\"type\":\"text\",\"data\":\"",
                         g_u[i ^ 1].id);
        for (long k = 0; k < g_size; k++)
            json[n + k] = (char)('a' + k % 26);
        n += (int)g_size;
        n += snprintf(json + n, cap - (size_t)n, "\",\"client_msg_id\":\"");
        u->cm = (size_t)n;
        memset(json + n, '0', 32);
        n += 32;
        n += snprintf(json + n, cap - (size_t)n, "\"}}");
        uint64_t r = rnd64();
        uint8_t mask[4];
        memcpy(mask, &r, 4);
        u->frame_len = wsc_frame_size((size_t)n);
        u->frame = malloc(u->frame_len);
        if (!u->frame)
            fail("out of memory");
        u->po = wsc_frame_build(u->frame, WS_TEXT, json, (size_t)n, mask);
        u->w.h = &handlers;
    }
    free(json);

    bench_clock();
    for (long i = 0; i < g_n; i++) {
        for (long k = 0; k < g_window; k++)
            send_msg(&g_u[i]);
        bconn_flush(&g_u[i].w.c);
    }
    window_result r = run_measured(reset);
    g_stopping = true;

    report_begin("chat");
    report_int("users", "users", g_n);
    report_int("size", "message bytes", g_size);
    report_int("window", "unacked per user", g_window);
    report_num("duration_s", "measured s", r.secs);
    report_num("rate", "acked messages/s", r.secs > 0 ? (double)g_acked / r.secs : 0);
    report_num("received_per_s", "pushed to recipients/s",
               r.secs > 0 ? (double)g_received / r.secs : 0);
    report_latency("lat", "ack latency us", &g_lat);
    report_cpu(&r);
    report_int("errors", g_errors ? "refused sends" : NULL, (long long)g_errors);
    report_int("lost_conns", g_lost ? "lost connections" : NULL, (long long)g_lost);
    report_end();
    httpc_close(&g_api);
    fleet_close_all(&g_f);
    return g_lost || g_errors || g_bad || g_acked == 0 ? EXIT_RUN_FAILED : 0;
}
