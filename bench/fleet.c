/* fleet: opening many clients and binding them through the server API; see fleet.h. */
#include "fleet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static fleet *g_fleet; /* the one being opened: the loop is single-threaded */

const char *json_field(const char *json, size_t len, const char *key)
{
    char pat[64];
    int n = snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *end = json + len;
    const char *p = memmem(json, len, pat, (size_t)n);
    if (!p)
        return NULL;
    p += n;
    while (p < end && (*p == ' ' || *p == ':' || *p == '\t'))
        p++;
    return p < end ? p : NULL;
}

int json_str_field(const char *json, size_t len, const char *key, char *out, size_t cap)
{
    const char *p = json_field(json, len, key);
    const char *end = json + len;
    if (!p || *p != '"')
        return -1;
    p++;
    const char *q = memchr(p, '"', (size_t)(end - p));
    if (!q || (size_t)(q - p) >= cap)
        return -1;
    memcpy(out, p, (size_t)(q - p));
    out[q - p] = 0;
    return (int)(q - p);
}

static void start_next(fleet *f);

static void mark_ready(fleet *f, long i)
{
    hist_record(&f->ready_lat, bench_now - f->t_conn[i]);
    f->t_conn[i] = 0; /* marks it ready */
    f->ready++;
    f->t_end = bench_now;
    progress("connected", f->ready, f->n);
    if (f->ready + f->failed == f->n)
        setup_done();
    else
        start_next(f);
}

static void note_failure(fleet *f, long i, int status, const char *why)
{
    (void)i;
    if (!f->first_error) {
        f->first_error = status ? status : -1;
        snprintf(f->first_error_text, sizeof f->first_error_text, "%s", why);
    }
    if (!f->count_failures)
        fail("connection %ld to %s%s failed: %s", i, fleet_target(f, i)->hostport,
             fleet_target(f, i)->path, why);
    f->failed++;
    if (f->ready + f->failed == f->n)
        setup_done();
    else
        start_next(f);
}

static void on_open(wsc *w)
{
    if (!g_fleet->want_init)
        mark_ready(g_fleet, w->id);
}

static void on_message(wsc *w, int opcode, char *p, size_t len)
{
    (void)opcode;
    fleet *f = g_fleet;
    if (!f->want_init || f->client_id[w->id][0])
        return;
    if (!json_field(p, len, "type") || !memmem(p, len, "\"init\"", 6) ||
        json_str_field(p, len, "client_id", f->client_id[w->id], sizeof f->client_id[0]) <= 0) {
        char why[128];
        snprintf(why, sizeof why, "first message is not an init: %.*s", (int)(len > 80 ? 80 : len),
                 p);
        wsc_close(w, true);
        note_failure(f, w->id, -1, why);
        return;
    }
    mark_ready(f, w->id);
}

static void on_end(wsc *w, int status)
{
    fleet *f = g_fleet;
    if (f->closing) {
        f->closed++;
        return;
    }
    if (f->t_conn[w->id] == 0)
        return; /* was ready: the scenario's business */
    if (status == 0)
        return; /* our own close after a failure, already counted */
    note_failure(f, w->id, status, wsc_strerror(w, status));
}

static const wsc_handlers fleet_handlers = {on_open, on_message, on_end};

/* tcp:// targets: plain connections, ready once connected. */
static void raw_on_connect(bconn *c, int status)
{
    if (status == 0)
        mark_ready(g_fleet, ((wsc *)c)->id);
}

static size_t raw_on_read(bconn *c, char *data, size_t len)
{
    (void)c;
    (void)data;
    return len;
}

static void raw_on_end(bconn *c, int status)
{
    on_end((wsc *)c, status);
}

static void start_next(fleet *f)
{
    while (f->started < f->n && f->started - f->ready - f->failed < g_opt.concurrency) {
        long i = f->started++;
        wsc *w = f->at(i);
        const target *t = fleet_target(f, i);
        wsc_init(w, &fleet_handlers, t);
        w->id = i;
        f->t_conn[i] = bench_clock();
        int rc;
        if (f->t->raw) {
            w->c.on_connect = raw_on_connect;
            w->c.on_read = raw_on_read;
            w->c.on_end = raw_on_end;
            rc = bconn_connect(&w->c, &t->addr, source_for(i));
        } else {
            rc = wsc_connect(w, source_for(i));
        }
        if (rc < 0) {
            note_failure(f, i, rc, uv_strerror(rc));
            return;
        }
    }
}

void fleet_open(fleet *f)
{
    g_fleet = f;
    f->client_id = calloc((size_t)f->n + 1, sizeof *f->client_id);
    f->t_conn = calloc((size_t)f->n + 1, sizeof *f->t_conn);
    if (!f->client_id || !f->t_conn)
        fail("out of memory");
    hist_reset(&f->ready_lat);
    sources_setup(f->t, f->n);
    f->t_begin = f->t_end = bench_clock();
    if (f->n == 0) {
        setup_done();
    } else {
        start_next(f);
    }
    run_setup("opening connections");
}

/* ---- one API call per client ---- */

typedef struct api_all {
    fleet *f;
    httpc *api;
    const char *path;
    fleet_body_fn body;
    long next, done;
} api_all;

static void api_next(api_all *a);

static void on_api(void *ctx, int status, const char *body, size_t len)
{
    api_all *a = ctx;
    char msg[200];
    if (!api_ok(status, body, len, msg, sizeof msg))
        fail("%s for a client: %s", a->path, msg);
    a->done++;
    progress(a->path, a->done, a->f->n);
    if (a->done == a->f->n)
        setup_done();
    else
        api_next(a);
}

static void api_next(api_all *a)
{
    char buf[1024];
    while (a->next < a->f->n && a->api->inflight < 512) {
        long i = a->next++;
        size_t n = a->body(a->f, i, buf, sizeof buf);
        httpc_post(a->api, a->path, buf, n, on_api, a);
    }
}

void fleet_api_all(fleet *f, httpc *api, const char *path, fleet_body_fn body)
{
    if (api->failed)
        fail("%s", api->error);
    api_all a = {f, api, path, body, 0, 0};
    if (f->n == 0)
        setup_done();
    api_next(&a);
    run_setup(path);
    if (api->failed)
        fail("%s", api->error);
}

void fleet_close_all(fleet *f)
{
    f->closing = true;
    f->closed = 0;
    long open = 0;
    for (long i = 0; i < f->started; i++) {
        wsc *w = f->at(i);
        if (w->c.state == BCONN_OPEN || w->c.state == BCONN_CONNECTING) {
            w->h = &fleet_handlers;
            w->c.on_end = f->t->raw ? raw_on_end : w->c.on_end;
            bconn_close(&w->c, 0, true);
            open++;
        }
    }
    uint64_t deadline = uv_hrtime() + 2000000000ull;
    while (f->closed < open && uv_hrtime() < deadline)
        uv_run(g_loop, UV_RUN_NOWAIT);
}
