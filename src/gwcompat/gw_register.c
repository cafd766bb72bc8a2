/* gw_register: GatewayWorker's Register (--gw-register), and this node's
 * announcement of its inner address to a Register (see gw.h).
 *
 * The Register speaks JSON lines. Gateways announce with gateway_connect and
 * stay connected (their address leaves the list when they close); workers
 * and GatewayClient ask with worker_connect and get
 * {"event":"broadcast_addresses","addresses":[...]}; workers stay and get a
 * new line whenever the list changes. A connection with a wrong secret_key,
 * an unparsable line, an unknown event, a line over 64 KiB, or no valid
 * event within 10 s is closed with a log line; a wrong key gets no answer.
 *
 * The announcement is a plain TCP client (not a conn: it is chatd's own
 * outgoing connection) that sends gateway_connect and reconnects after a
 * second when the Register goes away. When this process serves the Register
 * it announces to, the address is added directly. */
#include <arpa/inet.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/metrics.h"
#include "gwcompat/gw.h"
#include "gwcompat/gw_internal.h"

#define REGISTER_LINE_MAX 65536
#define REGISTER_PING_MS 25000 /* remote peers, as GatewayWorker's Register */
#define ANNOUNCE_RETRY_MS 1000

enum peer_kind { PEER_GATEWAY, PEER_WORKER };

typedef struct reg_peer {
    conn *c; /* NULL for the address this process adds itself */
    enum peer_kind kind;
    bool remote; /* not on 127.0.0.1: pinged */
    char addr[64];
    struct reg_peer *next;
} reg_peer;

static struct {
    bool serving;
    reg_peer *peers; /* in arrival order */
    size_t gateways; /* PEER_GATEWAY entries in peers */
    sbuf *line;      /* the broadcast_addresses line, built once per change */
    uv_timer_t ping_timer;
    /* the announcement */
    bool announcing, stopping;
    char target_host[64];
    int target_port;
    uv_tcp_t tcp;
    bool tcp_open;
    uv_connect_t connect_req;
    uv_timer_t retry_timer;
    bool was_up, warned;
    char read_buf[512];
} reg;

/* ---- the address list -------------------------------------------------- */

size_t gw_register_address_count(void)
{
    return reg.gateways;
}

/* {"event":"broadcast_addresses","addresses":[...]}\n, each address once
 * (at most GW_REGISTER_MAX_GATEWAYS entries, so the quadratic de-duplication
 * stays below a millisecond); the caller owns the reference. */
static sbuf *build_addresses_line(void)
{
    json_t *list = json_array();
    for (reg_peer *p = reg.peers; p; p = p->next) {
        if (p->kind != PEER_GATEWAY)
            continue;
        bool dup = false;
        for (reg_peer *q = reg.peers; q != p && !dup; q = q->next)
            dup = q->kind == PEER_GATEWAY && strcmp(q->addr, p->addr) == 0;
        if (!dup)
            json_array_append_new(list, json_string(p->addr));
    }
    json_t *o = json_pack("{s:s,s:o}", "event", "broadcast_addresses", "addresses", list);
    char *text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    if (!text)
        return NULL;
    size_t n = strlen(text);
    sbuf *b = sbuf_new(n + 1);
    if (b) {
        memcpy(b->data, text, n);
        b->data[n] = '\n';
        b->len = (uint32_t)n + 1;
    }
    free(text);
    return b;
}

/* The current line (borrowed; valid until the list changes). */
static sbuf *addresses_line(void)
{
    if (!reg.line)
        reg.line = build_addresses_line();
    return reg.line;
}

/* The list changed: every worker gets the new line. gw_send never closes a
 * peer under this loop (a slow one is closed later, from a callback). */
static void broadcast_addresses(void)
{
    if (reg.line)
        sbuf_unref(reg.line);
    reg.line = NULL;
    sbuf *line = addresses_line();
    if (!line)
        return;
    for (reg_peer *p = reg.peers; p; p = p->next)
        if (p->kind == PEER_WORKER && p->c)
            gw_send(p->c, line);
}

static reg_peer *peer_add(conn *c, enum peer_kind kind, const char *addr)
{
    size_t len = addr ? strlen(addr) : 0;
    if (len >= sizeof(((reg_peer *)0)->addr))
        return NULL; /* an IPv4:PORT is at most 21 characters; refused, never cut */
    reg_peer *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->c = c;
    p->kind = kind;
    memcpy(p->addr, addr ? addr : "", len);
    p->addr[len] = '\0';
    if (c) {
        struct sockaddr_storage ss;
        int n = sizeof(ss);
        p->remote = conn_getpeername(c, (struct sockaddr *)&ss, &n) == 0 &&
                    !(ss.ss_family == AF_INET &&
                      ((struct sockaddr_in *)&ss)->sin_addr.s_addr == htonl(INADDR_LOOPBACK));
    }
    reg_peer **tail = &reg.peers;
    while (*tail)
        tail = &(*tail)->next;
    *tail = p;
    reg.gateways += kind == PEER_GATEWAY;
    return p;
}

static reg_peer *peer_of(conn *c, enum peer_kind kind)
{
    for (reg_peer *p = reg.peers; p; p = p->next)
        if (p->c == c && p->kind == kind)
            return p;
    return NULL;
}

void gw_register_local_add(const char *addr)
{
    if (peer_add(NULL, PEER_GATEWAY, addr))
        broadcast_addresses();
    log_info("gw: Register lists this node's inner address %s", addr);
}

/* ---- the Register's connections ----------------------------------------- */

static void handle_line(conn *c, const char *line, size_t len)
{
    json_error_t err;
    json_t *o = json_loadb(line, len, 0, &err);
    const char *event = json_string_value(json_object_get(o, "event"));
    char why[128];
    if (!event) {
        /* GatewayWorker's Register answers this one with a text line before closing */
        snprintf(why, sizeof(why), "%s",
                 o ? "a line without \"event\"" : "a line that is not JSON");
        json_decref(o);
        static const char bad[] = "Bad request for Register service.\n";
        sbuf *b = sbuf_from(bad, sizeof(bad) - 1);
        if (b) {
            conn_send(c, b);
            sbuf_unref(b);
        }
        gw_refuse_after_write(c, "Register", why);
        return;
    }
    bool is_gateway = strcmp(event, "gateway_connect") == 0;
    bool is_worker = strcmp(event, "worker_connect") == 0;
    if (strcmp(event, "ping") == 0 || strcmp(event, "pong") == 0) {
        /* remote workers ping. GatewayWorker ends the 10 s wait on any first
         * line; with a secret set chatd waits for an authenticated event, so
         * pings alone cannot hold connections open */
        if (!gw.cfg->gw_secret[0])
            conn_set_deadline(c, 0);
        json_decref(o);
        return;
    }
    if (!is_gateway && !is_worker) {
        snprintf(why, sizeof(why), "unknown event '%.40s'", event);
        json_decref(o);
        gw_refuse(c, "Register", why);
        return;
    }
    const char *secret = gw.cfg->gw_secret;
    if (secret[0]) {
        char *text = json_dumps(o, JSON_COMPACT);
        bool ok = text && gw_secret_ok(text, strlen(text), NULL, 0);
        free(text);
        if (!ok) {
            json_decref(o);
            gw_refuse(c, "Register", "wrong secret_key");
            return;
        }
    }
    conn_set_deadline(c, 0);
    if (is_gateway) {
        const char *addr = json_string_value(json_object_get(o, "address"));
        struct in_addr a;
        char host[64];
        const char *colon = addr ? strrchr(addr, ':') : NULL;
        int port = colon ? atoi(colon + 1) : 0;
        bool valid = colon && (size_t)(colon - addr) < sizeof(host) && port > 0 && port < 65536;
        if (valid) {
            memcpy(host, addr, (size_t)(colon - addr));
            host[colon - addr] = '\0';
            valid = inet_pton(AF_INET, host, &a) == 1;
        }
        if (!valid) {
            json_decref(o);
            gw_refuse(c, "Register", "gateway_connect without an \"address\" of IPv4:port");
            return;
        }
        /* one address per connection: a new line replaces it (as GatewayWorker) */
        reg_peer *p = peer_of(c, PEER_GATEWAY);
        if (p) {
            if (strcmp(p->addr, addr) != 0) {
                snprintf(p->addr, sizeof(p->addr), "%s", addr);
                broadcast_addresses();
            }
        } else if (reg.gateways >= GW_REGISTER_MAX_GATEWAYS) {
            json_decref(o);
            gw_refuse(c, "Register", "more than 1024 gateways announced");
            return;
        } else if (peer_add(c, PEER_GATEWAY, addr)) {
            log_info("gw: Register: gateway %s joined", addr);
            broadcast_addresses();
        }
    } else {
        sbuf *reply = addresses_line();
        if (reply)
            gw_send(c, reply);
        if (!(c->flags & (CONN_CLOSING | CONN_SHUT_AFTER_WRITE)) && !peer_of(c, PEER_WORKER))
            peer_add(c, PEER_WORKER, NULL);
    }
    json_decref(o);
}

static void register_on_open(conn *c)
{
    metrics_conn_open(METRICS_CONN_GW_REGISTER);
    conn_set_deadline(c, GW_AUTH_TIMEOUT_MS);
}

static size_t register_on_read(conn *c, uint8_t *data, size_t len)
{
    size_t off = 0;
    while (off < len && !(c->flags & (CONN_CLOSING | CONN_SHUT_AFTER_WRITE))) {
        uint8_t *nl = memchr(data + off, '\n', len - off);
        if (!nl) {
            if (len - off > REGISTER_LINE_MAX)
                gw_refuse(c, "Register", "a line longer than 64 KiB");
            break;
        }
        size_t line_len = (size_t)(nl - (data + off));
        if (line_len > REGISTER_LINE_MAX) {
            gw_refuse(c, "Register", "a line longer than 64 KiB");
            break;
        }
        size_t trim = line_len;
        while (trim && (data[off + trim - 1] == '\r' || data[off + trim - 1] == ' '))
            trim--;
        if (trim)
            handle_line(c, (const char *)data + off, trim);
        off += line_len + 1;
    }
    return (c->flags & CONN_CLOSING) ? len : off;
}

static void register_on_deadline(conn *c)
{
    gw_refuse(c, "Register", "no valid event within 10 s");
}

static void register_on_close(conn *c)
{
    metrics_conn_closed(METRICS_CONN_GW_REGISTER);
    bool gateway_left = false;
    for (reg_peer **p = &reg.peers; *p;) {
        reg_peer *e = *p;
        if (e->c != c) {
            p = &e->next;
            continue;
        }
        *p = e->next;
        if (e->kind == PEER_GATEWAY) {
            log_info("gw: Register: gateway %s left", e->addr);
            gateway_left = true;
            reg.gateways--;
        }
        free(e);
    }
    if (gateway_left)
        broadcast_addresses();
}

static conn_handler register_handler = {
    .on_open = register_on_open,
    .on_read = register_on_read,
    .on_deadline = register_on_deadline,
    .on_close = register_on_close,
};

static void ping_cb(uv_timer_t *t)
{
    (void)t;
    static sbuf *ping;
    if (!ping)
        ping = sbuf_from("{\"event\":\"ping\"}\n", 17);
    for (reg_peer *p = reg.peers; p && ping; p = p->next) /* gw_send closes later only */
        if (p->c && p->remote)
            gw_send(p->c, ping);
}

/* ---- announcing this node ---------------------------------------------- */

static void announce_connect(void);

static void retry_cb(uv_timer_t *t)
{
    (void)t;
    announce_connect();
}

static void announce_closed_cb(uv_handle_t *h)
{
    (void)h;
    reg.tcp_open = false;
    if (!reg.stopping)
        uv_timer_start(&reg.retry_timer, retry_cb, ANNOUNCE_RETRY_MS, 0);
}

static void announce_drop(const char *why)
{
    if (reg.was_up || !reg.warned)
        log_warn("gw: cannot announce %s to the Register %s:%d: %s (retrying every second)",
                 gw.inner_addr, reg.target_host, reg.target_port, why);
    reg.was_up = false;
    reg.warned = true;
    if (reg.tcp_open && !uv_is_closing((uv_handle_t *)&reg.tcp))
        uv_close((uv_handle_t *)&reg.tcp, announce_closed_cb);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    *buf = uv_buf_init(reg.read_buf, sizeof(reg.read_buf));
}

/* The Register only pings us; anything read is ignored, EOF reconnects. */
static void announce_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)s;
    (void)buf;
    if (n < 0)
        announce_drop(n == UV_EOF ? "the Register closed the connection" : uv_strerror((int)n));
}

static void write_done_cb(uv_write_t *w, int status)
{
    free(w);
    if (status < 0)
        announce_drop(uv_strerror(status));
}

static void connect_cb(uv_connect_t *req, int status)
{
    (void)req;
    if (status < 0) {
        announce_drop(uv_strerror(status));
        return;
    }
    json_t *o = json_pack("{s:s,s:s,s:s}", "event", "gateway_connect", "address", gw.inner_addr,
                          "secret_key", gw.cfg->gw_secret);
    char *text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    size_t n = text ? strlen(text) : 0;
    uv_write_t *w = malloc(sizeof(*w) + n + 1);
    if (!text || !w) {
        free(text);
        free(w);
        announce_drop("out of memory");
        return;
    }
    char *line = (char *)(w + 1);
    memcpy(line, text, n);
    line[n] = '\n';
    free(text);
    uv_buf_t b = uv_buf_init(line, (unsigned)n + 1);
    if (uv_write(w, (uv_stream_t *)&reg.tcp, &b, 1, write_done_cb) < 0) {
        free(w);
        announce_drop("write failed");
        return;
    }
    uv_read_start((uv_stream_t *)&reg.tcp, alloc_cb, announce_read_cb);
    if (!reg.was_up)
        log_info("gw: announced %s to the Register %s:%d", gw.inner_addr, reg.target_host,
                 reg.target_port);
    reg.was_up = true;
}

static void announce_connect(void)
{
    if (reg.stopping)
        return;
    struct sockaddr_in addr;
    if (uv_ip4_addr(reg.target_host, reg.target_port, &addr) < 0) {
        log_error("gw: --gw-register-address %s:%d is not IPv4:port", reg.target_host,
                  reg.target_port);
        return;
    }
    uv_tcp_init(gw.srv->loop, &reg.tcp);
    reg.tcp_open = true;
    if (uv_tcp_connect(&reg.connect_req, &reg.tcp, (struct sockaddr *)&addr, connect_cb) < 0)
        announce_drop("connect failed");
}

/* ---- start and stop ---------------------------------------------------- */

int gw_split_addr(const char *value, char *host, size_t cap, int *port)
{
    const char *colon = strrchr(value, ':');
    if (!colon || (size_t)(colon - value) >= cap)
        return -1;
    memcpy(host, value, (size_t)(colon - value));
    host[colon - value] = '\0';
    if (!host[0])
        snprintf(host, cap, "127.0.0.1");
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || p < 1 || p > 65535)
        return -1;
    *port = (int)p;
    return 0;
}

int gw_register_start(void)
{
    const config *cfg = gw.cfg;
    char host[64];
    int port;
    memset(&reg, 0, sizeof(reg));
    uv_timer_init(gw.srv->loop, &reg.ping_timer);
    uv_timer_init(gw.srv->loop, &reg.retry_timer);
    if (cfg->gw_register[0]) {
        if (gw_split_addr(cfg->gw_register, host, sizeof(host), &port) < 0) {
            log_error("--gw-register must be HOST:PORT, got '%s'", cfg->gw_register);
            return -1;
        }
        int r = server_listen(gw.srv, host, port, &register_handler);
        if (r < 0) {
            log_error("cannot listen on --gw-register %s: %s", cfg->gw_register, uv_strerror(r));
            return -1;
        }
        reg.serving = true;
        register_handler.max_outbuf = gw.max_outbuf;
        uv_timer_start(&reg.ping_timer, ping_cb, REGISTER_PING_MS, REGISTER_PING_MS);
        log_info("gw: GatewayWorker Register on %s:%d", host, port);
    }
    if (!gw.inner_on) {
        if (cfg->gw_register_address[0])
            log_warn("gw: --gw-register-address without --gw-inner: nothing to announce");
        return 0;
    }
    if (cfg->gw_register_address[0]) {
        if (gw_split_addr(cfg->gw_register_address, reg.target_host, sizeof(reg.target_host),
                          &reg.target_port) < 0) {
            log_error("--gw-register-address must be HOST:PORT, got '%s'",
                      cfg->gw_register_address);
            return -1;
        }
        struct sockaddr_in probe;
        if (uv_ip4_addr(reg.target_host, reg.target_port, &probe) < 0) {
            log_error("--gw-register-address must be IPv4:PORT (a GatewayWorker Register "
                      "address), got '%s'",
                      cfg->gw_register_address);
            return -1;
        }
        reg.announcing = true;
        announce_connect();
    } else if (reg.serving) {
        gw_register_local_add(gw.inner_addr);
    } else {
        log_warn("gw: --gw-inner without a Register (--gw-register or --gw-register-address): "
                 "GatewayClient and BusinessWorkers can reach %s only if told the address",
                 gw.inner_addr);
    }
    return 0;
}

void gw_register_stop(void)
{
    if (reg.stopping)
        return;
    reg.stopping = true;
    uv_timer_stop(&reg.ping_timer);
    uv_timer_stop(&reg.retry_timer);
    if (reg.tcp_open && !uv_is_closing((uv_handle_t *)&reg.tcp))
        uv_close((uv_handle_t *)&reg.tcp, announce_closed_cb);
    for (reg_peer **p = &reg.peers; *p;) { /* the local address; conns leave on close */
        reg_peer *e = *p;
        if (e->c) {
            p = &e->next;
            continue;
        }
        *p = e->next;
        reg.gateways -= e->kind == PEER_GATEWAY;
        free(e);
    }
    if (reg.line)
        sbuf_unref(reg.line);
    reg.line = NULL;
}
