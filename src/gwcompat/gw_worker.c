/* gw_worker: BusinessWorker connections and the client events they get
 * (see gw.h).
 *
 * Each client is given one worker, sticky for its life, least-connections
 * first; when that worker goes away the client's next event picks another.
 * A worker's struct outlives its connection while clients still point at
 * it (refcount = clients), so a client never holds a dangling pointer.
 *
 * Events (cmd 1, 205, 3, 4) carry the client's address, its connection id,
 * the node's inner address and public port in the header, and the client's
 * session in ext_data; workers answer with ordinary commands (gw_inner.c). */
#include <arpa/inet.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "gateway/registry.h"
#include "gwcompat/gw.h"
#include "gwcompat/gw_internal.h"
#include "gwcompat/php_serial.h"
#include "ws/ws.h"

typedef struct gw_worker {
    conn *c;          /* NULL once the connection closed */
    uint32_t clients; /* clients that point at this worker */
    /* while clients are paused on it: its queue at the last sign of progress */
    size_t watch_bytes;
    uint64_t watch_since; /* uv_now of that sign; 0 = not watched */
    char key[64];         /* worker_key ("name:n"), for logs */
    struct gw_worker *next;
} gw_worker;

static gw_worker *workers; /* live ones */
static size_t live_workers;
static uv_timer_t ping_timer;
static bool ping_timer_on;

/* Back-pressure: a client whose message finds its worker's queue over half
 * of --gw-max-outbuf stops being read until the queue is under a quarter
 * (or the worker is gone), so one fast client slows itself, not the worker
 * and everyone on it. Paused clients are kept by id (a client may close
 * while paused) and looked at by a timer that runs only while any is. */
#define RESUME_CHECK_MS 20
#define WORKER_STUCK_MS 5000 /* no byte taken for this long while clients wait: closed */
static char (*paused)[GW_CLIENT_ID_LEN + 1];
static size_t n_paused, cap_paused;
static uv_timer_t resume_timer;
static bool resume_timer_init;

#define WORKER_PING_MS 25000

/* Workers on other machines are pinged (cmd 201) every 25 s, as GatewayWorker
 * does when its lanIp is not 127.0.0.1, so idle links stay up through NAT and
 * firewalls. */
static void ping_cb(uv_timer_t *t)
{
    (void)t;
    static sbuf *ping;
    if (!ping) {
        ping = sbuf_new(GW_HEADER_LEN);
        if (!ping)
            return;
        gw_header h = {.pack_len = GW_HEADER_LEN, .cmd = GW_CMD_PING, .flag = GW_FLAG_BODY_RAW};
        gw_header_encode(&h, ping->data);
        ping->len = GW_HEADER_LEN;
    }
    for (gw_worker *w = workers; w; w = w->next) /* gw_send closes later only */
        if (w->c)
            gw_send(w->c, ping);
}

/* A worker that has taken no byte of its queue for WORKER_STUCK_MS while
 * clients wait on it is closed as stuck (the clients then go on without it);
 * one that drains, however slowly, is left alone. True when it was closed. */
static bool worker_stuck(gw_worker *w, size_t queued)
{
    uint64_t now = uv_now(gw.srv->loop);
    if (!w->watch_since || queued < w->watch_bytes) {
        w->watch_bytes = queued;
        w->watch_since = now;
        return false;
    }
    if (now - w->watch_since < WORKER_STUCK_MS)
        return false;
    gw.slow_closes++;
    log_warn("gw: BusinessWorker %s closed: it took no byte of its %zu queued for %d s while "
             "clients waited on it",
             w->key[0] ? w->key : "?", queued, WORKER_STUCK_MS / 1000);
    conn_drop_pending(w->c);
    conn_close_after_write(w->c, 100);
    w->watch_since = 0;
    return true;
}

static void resume_cb(uv_timer_t *t)
{
    /* a snapshot: resuming re-delivers buffered input, which may pause again */
    char(*list)[GW_CLIENT_ID_LEN + 1] = paused;
    size_t n = n_paused;
    paused = NULL;
    n_paused = cap_paused = 0;
    for (size_t i = 0; i < n; i++) {
        conn *c = registry_find(list[i], strlen(list[i]));
        if (!c)
            continue; /* closed while paused */
        gw_worker *w = c->wsx ? c->wsx->gw_worker : NULL;
        size_t queued = w && w->c ? conn_queued_bytes(w->c) : 0;
        bool drained = !w || !w->c || queued <= gw.max_outbuf / 4;
        if (!drained)
            drained = worker_stuck(w, queued);
        if (drained) {
            if (w)
                w->watch_since = 0;
            conn_resume_read(c);
        } else { /* still full: keep it paused */
            if (n_paused == cap_paused) {
                size_t cap = cap_paused ? cap_paused * 2 : 16;
                void *v = realloc(paused, cap * sizeof(*paused));
                if (!v) {
                    conn_resume_read(c); /* no memory to remember it: let it go */
                    continue;
                }
                paused = v;
                cap_paused = cap;
            }
            memcpy(paused[n_paused++], list[i], GW_CLIENT_ID_LEN + 1);
        }
    }
    free(list);
    if (n_paused == 0)
        uv_timer_stop(t);
}

/* Pauses client c until its worker's queue drains (see above). */
static void pause_client(conn *c)
{
    if (n_paused == cap_paused) {
        size_t cap = cap_paused ? cap_paused * 2 : 16;
        void *v = realloc(paused, cap * sizeof(*paused));
        if (!v)
            return; /* not paused: the worker's own bound still holds */
        paused = v;
        cap_paused = cap;
    }
    memcpy(paused[n_paused++], c->client_id, GW_CLIENT_ID_LEN + 1); /* 20 hex + NUL */
    conn_pause_read(c);
    gw.clients_paused++;
    if (!resume_timer_init) {
        uv_timer_init(gw.srv->loop, &resume_timer);
        resume_timer_init = true;
    }
    if (!uv_is_active((uv_handle_t *)&resume_timer))
        uv_timer_start(&resume_timer, resume_cb, RESUME_CHECK_MS, RESUME_CHECK_MS);
}

void gw_worker_stop(void)
{
    if (ping_timer_on)
        uv_timer_stop(&ping_timer);
    ping_timer_on = false;
    if (resume_timer_init)
        uv_timer_stop(&resume_timer);
    free(paused);
    paused = NULL;
    n_paused = cap_paused = 0;
}

size_t gw_worker_count(void)
{
    return live_workers;
}

void gw_worker_add(conn *c, const char *worker_key)
{
    gw_worker *w = calloc(1, sizeof(*w));
    if (!w) {
        gw_refuse(c, "BusinessWorker", "out of memory");
        return;
    }
    w->c = c;
    snprintf(w->key, sizeof(w->key), "%s", worker_key);
    w->next = workers;
    workers = w;
    live_workers++;
    c->flags |= CONN_GW_WORKER;
    if (!ping_timer_on && gw.inner_ip != 0x7f000001) {
        uv_timer_init(gw.srv->loop, &ping_timer);
        uv_timer_start(&ping_timer, ping_cb, WORKER_PING_MS, WORKER_PING_MS);
        ping_timer_on = true;
    }
    log_info("gw: BusinessWorker %s connected (%zu now)", w->key[0] ? w->key : "?", live_workers);
}

static void worker_release(gw_worker *w)
{
    if (--w->clients == 0 && !w->c)
        free(w);
}

void gw_worker_remove(conn *c)
{
    for (gw_worker **p = &workers; *p; p = &(*p)->next) {
        gw_worker *w = *p;
        if (w->c != c)
            continue;
        *p = w->next;
        live_workers--;
        log_info("gw: BusinessWorker %s disconnected (%zu left)", w->key[0] ? w->key : "?",
                 live_workers);
        w->c = NULL;
        if (w->clients == 0)
            free(w);
        return;
    }
}

/* The client's worker: its own while that is connected, else the live one
 * with the fewest clients. NULL when no worker is connected. */
static gw_worker *worker_for(conn *client, ws_extra *x)
{
    if (x->gw_worker && x->gw_worker->c)
        return x->gw_worker;
    gw_worker *best = NULL;
    for (gw_worker *w = workers; w; w = w->next)
        if (!best || w->clients < best->clients)
            best = w;
    if (x->gw_worker)
        worker_release(x->gw_worker);
    x->gw_worker = best;
    if (best)
        best->clients++;
    (void)client;
    return best;
}

/* Sends one event about client to w. */
static void send_event(gw_worker *w, conn *client, uint8_t cmd, const char *body, size_t body_len,
                       bool raw_body)
{
    ws_extra *x = client->wsx;
    if (!w->c) /* closed as a slow reader by an earlier event */
        return;
    char *tmp = NULL;
    const char *session;
    size_t session_len;
    gw_session_php(client, &tmp, &session, &session_len);
    size_t total = GW_HEADER_LEN + session_len + body_len;
    if (total > UINT32_MAX) {
        free(tmp);
        gw.events_dropped++;
        return;
    }
    sbuf *buf = sbuf_new(total);
    if (!buf) {
        free(tmp);
        gw.events_dropped++;
        return;
    }
    uint32_t ip, id;
    uint16_t port;
    gw_client_id_decode(client->client_id, GW_CLIENT_ID_LEN, &ip, &port, &id);
    gw_header h = {
        .pack_len = (uint32_t)total,
        .cmd = cmd,
        .local_ip = gw.inner_ip,
        .local_port = gw.inner_port,
        .client_ip = x->gw_client_ip,
        .client_port = x->gw_client_port,
        .connection_id = id,
        .flag = raw_body ? GW_FLAG_BODY_RAW : 0,
        .gateway_port = gw.gateway_port,
        .ext_len = (uint32_t)session_len,
    };
    gw_header_encode(&h, buf->data);
    memcpy(buf->data + GW_HEADER_LEN, session, session_len);
    if (body_len)
        memcpy(buf->data + GW_HEADER_LEN + session_len, body, body_len);
    buf->len = (uint32_t)total;
    free(tmp);
    gw.events_out++;
    gw_send(w->c, buf);
    sbuf_unref(buf);
}

/* ---- the request, as $_GET / $_SERVER / $_COOKIE -------------------------- */

/* The next integer key of a PHP array (for name[]=...): one past the largest. */
static void next_index_key(json_t *obj, char *buf, size_t cap)
{
    long long next = 0;
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        char *end;
        long long n = strtoll(k, &end, 10);
        if (!*end && end != k && n >= next)
            next = n + 1;
    }
    snprintf(buf, cap, "%lld", next);
}

/* PHP's parse_str, as $_GET and $_COOKIE are built: name=value pairs
 * (url-decoded, '+' a space), name[]=v appends to a list, name[k]=v sets a
 * key, at any depth; a later value of a name replaces an earlier one in its
 * place. The tree is JSON objects (ordered) whose leaves are strings. */
static void parse_str_into(json_t *root, const char *s, size_t n)
{
    char name[1024], value[4096];
    for (size_t i = 0; i < n;) {
        size_t end = i;
        while (end < n && s[end] != '&')
            end++;
        const char *item = s + i;
        size_t len = end - i;
        i = end + 1;
        const char *eq = memchr(item, '=', len);
        size_t nlen = eq ? (size_t)(eq - item) : len;
        int dn = http_url_decode(item, nlen, name, sizeof(name), true);
        int dv = eq ? http_url_decode(eq + 1, len - nlen - 1, value, sizeof(value), true) : 0;
        if (dn <= 0 || dv < 0)
            continue;
        name[dn] = '\0';
        /* the base name ends at the first '[' that has a ']' after it */
        char *open = strchr(name, '[');
        if (open && !strchr(open, ']'))
            open = NULL;
        size_t base_len = open ? (size_t)(open - name) : (size_t)dn;
        if (base_len == 0)
            continue;
        for (size_t k = 0; k < base_len; k++) /* PHP: ' ' and '.' in the base become '_' */
            if (name[k] == ' ' || name[k] == '.')
                name[k] = '_';
        json_t *node = root;
        char key[1024];
        snprintf(key, sizeof(key), "%.*s", (int)base_len, name);
        const char *p = open;
        while (p && *p == '[') {
            const char *close = strchr(p, ']');
            if (!close)
                break;
            json_t *child = json_object_get(node, key);
            if (!json_is_object(child)) {
                child = json_object();
                json_object_set_new(node, key, child);
            }
            node = child;
            size_t seg = (size_t)(close - p - 1);
            if (seg == 0)
                next_index_key(node, key, sizeof(key));
            else
                snprintf(key, sizeof(key), "%.*s", (int)seg, p + 1);
            p = close + 1;
        }
        json_object_set_new(node, key, json_stringn(value, (size_t)dv));
    }
}

static void put_tree(php_buf *b, json_t *obj)
{
    php_put_array_open(b, json_object_size(obj));
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        php_put_key(b, k, strlen(k));
        if (json_is_object(v))
            put_tree(b, v);
        else
            php_put_string(b, json_string_value(v), json_string_length(v));
    }
    php_put_array_close(b);
}

static void put_kv(php_buf *b, const char *k, const char *v)
{
    php_put_string(b, k, strlen(k));
    php_put_string(b, v, strlen(v));
}

/* cmd 205's body: ['get' => $_GET, 'server' => $_SERVER, 'cookie' =>
 * $_COOKIE] as GatewayWorker builds them: server holds the request line's
 * three parts, then every header as HTTP_* in arrival order (SERVER_NAME and
 * SERVER_PORT right after HTTP_HOST), then QUERY_STRING. */
static void websocket_connect_body(http_request *req, php_buf *b)
{
    php_put_array_open(b, 3);
    php_put_string(b, "get", 3);
    json_t *get = json_object();
    parse_str_into(get, req->query, strlen(req->query));
    put_tree(b, get);
    json_decref(get);

    php_put_string(b, "server", 6);
    php_buf srv = {0};
    size_t count = 0;
    char uri[4096];
    snprintf(uri, sizeof(uri), "%s%s%s", req->path, req->query[0] ? "?" : "", req->query);
    put_kv(&srv, "REQUEST_METHOD", req->method_name ? req->method_name : "GET");
    put_kv(&srv, "REQUEST_URI", uri);
    put_kv(&srv, "SERVER_PROTOCOL", "HTTP/1.1");
    count += 3;
    for (uint32_t i = 0; i < req->n_headers; i++) {
        const char *name = req->head + req->headers[i].name_off;
        const char *value = req->head + req->headers[i].value_off;
        char key[160] = "HTTP_";
        size_t k = 5;
        for (const char *p = name; *p && k < sizeof(key) - 1; p++)
            key[k++] = *p == '-' ? '_' : (char)((*p >= 'a' && *p <= 'z') ? *p - 32 : *p);
        key[k] = '\0';
        put_kv(&srv, key, value);
        count++;
        if (strcmp(key, "HTTP_HOST") == 0) {
            char host[256];
            snprintf(host, sizeof(host), "%s", value);
            char *colon = strrchr(host, ':');
            if (colon && strchr(colon, ']')) /* [v6] without a port */
                colon = NULL;
            if (colon)
                *colon = '\0';
            put_kv(&srv, "SERVER_NAME", host);
            count++;
            if (colon) {
                put_kv(&srv, "SERVER_PORT", colon + 1);
                count++;
            }
        }
    }
    put_kv(&srv, "QUERY_STRING", req->query);
    count++;
    php_put_array_open(b, count);
    php_put_raw(b, srv.data, srv.len);
    php_put_array_close(b);
    b->oom |= srv.oom;
    free(srv.data);

    /* $_COOKIE: PHP reads "a=1; b=2" as the query "a=1&b=2" */
    php_put_string(b, "cookie", 6);
    json_t *cookies = json_object();
    const char *cookie = http_header(req, "Cookie");
    if (cookie) {
        size_t n = strlen(cookie);
        char *q = malloc(n + 1);
        if (q) {
            size_t k = 0;
            for (size_t i = 0; i < n; i++) {
                if (cookie[i] == ';' && i + 1 < n && cookie[i + 1] == ' ') {
                    q[k++] = '&';
                    i++;
                } else {
                    q[k++] = cookie[i];
                }
            }
            parse_str_into(cookies, q, k);
            free(q);
        }
    }
    put_tree(b, cookies);
    json_decref(cookies);
    php_put_array_close(b);
}

/* ---- client hooks ------------------------------------------------------ */

/* Records the client's address for the event headers. */
static void note_address(conn *c, ws_extra *x)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    int n = sizeof(ss);
    if (conn_getpeername(c, (struct sockaddr *)&ss, &n) == 0 && ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        x->gw_client_ip = ntohl(a->sin_addr.s_addr);
        x->gw_client_port = ntohs(a->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        x->gw_client_port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
}

void gw_client_opened(conn *c, http_request *req)
{
    if (!gw.inner_on || !workers)
        return;
    ws_extra *x = ws_extra_get(c);
    if (!x)
        return;
    note_address(c, x);
    gw_worker *w = worker_for(c, x);
    if (!w)
        return;
    x->gw_connected = true;
    send_event(w, c, GW_CMD_ON_CONNECT, "", 0, true);
    if (!(c->flags & CONN_CLOSING) && w->c) {
        php_buf body = {0};
        websocket_connect_body(req, &body);
        if (!body.oom)
            send_event(w, c, GW_CMD_ON_WEBSOCKET_CONNECT, body.data, body.len, false);
        free(body.data);
    }
}

bool gw_client_message(conn *c, const uint8_t *data, size_t len)
{
    if (!gw.inner_on || !workers)
        return false;
    ws_extra *x = ws_extra_get(c);
    if (!x)
        return false;
    gw_worker *w = worker_for(c, x);
    if (!w)
        return false;
    if (!x->gw_connected) {
        /* opened while no worker was connected: the worker hears of it now */
        note_address(c, x);
        x->gw_connected = true;
        send_event(w, c, GW_CMD_ON_CONNECT, "", 0, true);
        if (!w->c)
            return true;
    }
    send_event(w, c, GW_CMD_ON_MESSAGE, (const char *)data, len, true);
    if (w->c && !(c->flags & CONN_READ_PAUSED) && conn_queued_bytes(w->c) > gw.max_outbuf / 2)
        pause_client(c);
    return true;
}

void gw_client_closed(conn *c)
{
    ws_extra *x = c->wsx;
    if (!x || !x->gw_worker)
        return;
    if (x->gw_connected) {
        gw_worker *w = worker_for(c, x);
        if (w)
            send_event(w, c, GW_CMD_ON_CLOSE, "", 0, true);
    }
    if (x->gw_worker) {
        worker_release(x->gw_worker);
        x->gw_worker = NULL;
    }
}
