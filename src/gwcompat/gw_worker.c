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
    char key[64];     /* worker_key ("name:n"), for logs */
    struct gw_worker *next;
} gw_worker;

static gw_worker *workers; /* live ones */
static size_t live_workers;

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

/* Writes name=value pairs separated by sep as a PHP array of decoded
 * strings (the last of a repeated name wins, as in PHP). */
static void put_pairs(php_buf *b, const char *s, char sep, bool plus_is_space)
{
    php_buf items = {0};
    size_t count = 0;
    size_t n = strlen(s);
    char name[1024], value[4096];
    for (size_t i = 0; i < n;) {
        size_t end = i;
        while (end < n && s[end] != sep)
            end++;
        const char *item = s + i;
        size_t len = end - i;
        while (len && (*item == ' ')) { /* cookies: "a=1; b=2" */
            item++;
            len--;
        }
        const char *eq = memchr(item, '=', len);
        size_t nlen = eq ? (size_t)(eq - item) : len;
        int dn = nlen ? http_url_decode(item, nlen, name, sizeof(name), plus_is_space) : -1;
        int dv =
            eq ? http_url_decode(eq + 1, len - nlen - 1, value, sizeof(value), plus_is_space) : 0;
        if (dn > 0 && dv >= 0) {
            php_put_key(&items, name, (size_t)dn);
            php_put_string(&items, value, (size_t)dv);
            count++;
        }
        i = end + 1;
    }
    php_put_array_open(b, count);
    php_put_raw(b, items.data, items.len);
    php_put_array_close(b);
    b->oom |= items.oom;
    free(items.data);
}

static void put_kv(php_buf *b, const char *k, const char *v)
{
    php_put_string(b, k, strlen(k));
    php_put_string(b, v, strlen(v));
}

/* cmd 205's body: ['get' => ..., 'server' => ..., 'cookie' => ...]. */
static void websocket_connect_body(conn *c, http_request *req, php_buf *b)
{
    php_put_array_open(b, 3);
    php_put_string(b, "get", 3);
    put_pairs(b, req->query, '&', true);

    php_put_string(b, "server", 6);
    php_buf srv = {0};
    size_t count = 0;
    char uri[2048], tmp[64];
    snprintf(uri, sizeof(uri), "%s%s%s", req->path, req->query[0] ? "?" : "", req->query);
    put_kv(&srv, "QUERY_STRING", req->query);
    put_kv(&srv, "REQUEST_METHOD", req->method_name ? req->method_name : "GET");
    put_kv(&srv, "REQUEST_URI", uri);
    put_kv(&srv, "SERVER_PROTOCOL", "HTTP/1.1");
    put_kv(&srv, "SERVER_SOFTWARE", "chatd");
    count += 5;
    const char *host = http_header(req, "Host");
    char server_name[256];
    snprintf(server_name, sizeof(server_name), "%s", host ? host : "");
    char *colon = strrchr(server_name, ':');
    if (colon && !strchr(colon, ']'))
        *colon = '\0';
    put_kv(&srv, "SERVER_NAME", server_name);
    snprintf(tmp, sizeof(tmp), "%u", (unsigned)gw.gateway_port);
    put_kv(&srv, "SERVER_PORT", tmp);
    put_kv(&srv, "REMOTE_ADDR", req->peer_ip);
    php_put_string(&srv, "REMOTE_PORT", 11);
    php_put_int(&srv, c->wsx ? c->wsx->gw_client_port : 0);
    php_put_string(&srv, "REQUEST_TIME", 12);
    php_put_int(&srv, (int64_t)time(NULL));
    count += 5;
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
    }
    php_put_array_open(b, count);
    php_put_raw(b, srv.data, srv.len);
    php_put_array_close(b);
    b->oom |= srv.oom;
    free(srv.data);

    php_put_string(b, "cookie", 6);
    const char *cookie = http_header(req, "Cookie");
    put_pairs(b, cookie ? cookie : "", ';', false);
    php_put_array_close(b);
}

/* ---- client hooks ------------------------------------------------------ */

/* Records the client's address for the event headers. */
static void note_address(conn *c, ws_extra *x)
{
    struct sockaddr_storage ss;
    int n = sizeof(ss);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &n) == 0 && ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        x->gw_client_ip = ntohl(a->sin_addr.s_addr);
        x->gw_client_port = ntohs(a->sin_port);
    } else if (n > 0 && ss.ss_family == AF_INET6) {
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
        websocket_connect_body(c, req, &body);
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
