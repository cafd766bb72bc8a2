/* gw_inner: GatewayWorker's inner protocol on --gw-inner: GatewayClient's
 * commands and queries, and the first frame of BusinessWorkers (see gw.h,
 * docs/GATEWAYWORKER.md).
 *
 * Every command acts on this node's connections only, as one GatewayWorker
 * gateway does: GatewayClient sends cluster-wide calls to every address the
 * Register lists and merges the replies itself. Frames are handled in the
 * order they arrive, on the loop thread, so a command takes effect before
 * any query that reaches chatd after it. */
#include <arpa/inet.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "core/log.h"
#include "core/metrics.h"
#include "gateway/gateway.h"
#include "gateway/gateway_api.h"
#include "gateway/registry.h"
#include "gwcompat/gw.h"
#include "gwcompat/gw_internal.h"
#include "gwcompat/php_serial.h"
#include "ws/ws.h"

gw_state gw;

/* ---- helpers ----------------------------------------------------------- */

static const char *peer_name(conn *c, char *buf, size_t cap)
{
    struct sockaddr_storage ss;
    int n = sizeof(ss);
    buf[0] = '\0';
    if (conn_getpeername(c, (struct sockaddr *)&ss, &n) == 0) {
        char ip[48] = "";
        int port = 0;
        if (ss.ss_family == AF_INET) {
            uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof(ip));
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        }
        snprintf(buf, cap, "%s:%d", ip, port);
    }
    return buf[0] ? buf : "?";
}

void gw_refuse(conn *c, const char *what, const char *why)
{
    char peer[64];
    if (c->flags & CONN_CLOSING)
        return;
    gw.bad_inputs++;
    c->flags |= CONN_GW_REFUSED;
    log_warn("gw: %s connection from %s closed: %s", what, peer_name(c, peer, sizeof(peer)), why);
    conn_drop_pending(c);
    conn_close(c);
}

void gw_refuse_after_write(conn *c, const char *what, const char *why)
{
    char peer[64];
    if (c->flags & (CONN_CLOSING | CONN_SHUT_AFTER_WRITE))
        return;
    gw.bad_inputs++;
    c->flags |= CONN_GW_REFUSED;
    log_warn("gw: %s connection from %s closed: %s", what, peer_name(c, peer, sizeof(peer)), why);
    conn_close_after_write(c, 1000);
}

void gw_send(conn *c, sbuf *buf)
{
    if (conn_send(c, buf) != CONN_SEND_OVERFLOW)
        return;
    char peer[64];
    gw.slow_closes++;
    log_warn("gw: inner connection from %s closed: more than --gw-max-outbuf %zu bytes queued "
             "(a slow %s; GatewayWorker would drop silently)",
             peer_name(c, peer, sizeof(peer)), gw.max_outbuf,
             (c->flags & CONN_GW_WORKER) ? "BusinessWorker" : "reader");
    /* closed later, from a callback: callers send in loops over lists (workers,
     * Register peers) that the close hook edits, so it must not run under them;
     * until then further sends to c are refused (CONN_SEND_CLOSED) */
    conn_drop_pending(c);
    conn_close_after_write(c, 100);
}

bool gw_secret_ok(const char *json, size_t len, char *worker_key, size_t key_cap)
{
    const char *secret = gw.cfg->gw_secret;
    json_t *o = json_loadb(json, len, 0, NULL);
    if (worker_key && key_cap) {
        const char *k = json_string_value(json_object_get(o, "worker_key"));
        snprintf(worker_key, key_cap, "%s", k ? k : "");
    }
    bool ok = true;
    if (secret[0]) {
        json_t *given = json_object_get(o, "secret_key");
        ok = json_is_string(given) &&
             gateway_api_secret_equal(json_string_value(given), json_string_length(given), secret);
    }
    json_decref(o);
    return ok;
}

static conn *find_client(uint32_t connection_id)
{
    char id[GW_CLIENT_ID_LEN + 1];
    gw_client_id_encode(gw.inner_ip, gw.inner_port, connection_id, id);
    return registry_find(id, GW_CLIENT_ID_LEN);
}

static uint32_t connection_id_of(const conn *c)
{
    uint32_t ip, id;
    uint16_t port;
    return gw_client_id_decode(c->client_id, strlen(c->client_id), &ip, &port, &id) ? id : 0;
}

/* A frame taken apart. */
typedef struct gw_frame {
    gw_header h;
    const char *ext;
    size_t ext_len;
    const char *body;
    size_t body_len;
} gw_frame;

/* PHP's empty() on a string: "" and "0" */
static bool php_empty_name(const char *s, size_t len)
{
    return len == 0 || (len == 1 && s[0] == '0');
}

/* The message a send command carries, as the bytes to send: the body as it
 * is with the raw flag, else a serialized scalar (a PHP string's bytes, or
 * a number's text). False for an array or garbage. */
static bool message_text(const gw_frame *f, const char **text, size_t *len, char *num, size_t cap)
{
    if (f->h.flag & GW_FLAG_BODY_RAW) {
        *text = f->body;
        *len = f->body_len;
        return true;
    }
    php_value v;
    if (php_serial_parse(f->body, f->body_len, &v) < 0)
        return false;
    switch (v.type) {
    case PHP_STRING:
        *text = v.s.p;
        *len = v.s.len;
        return true;
    case PHP_INT:
    case PHP_DOUBLE: /* the number's text between "i:"/"d:" and ";" */
        if (v.raw_len - 3 >= cap)
            return false;
        memcpy(num, v.raw + 2, v.raw_len - 3);
        *text = num;
        *len = v.raw_len - 3;
        return true;
    case PHP_BOOL:
        *text = v.b ? "1" : "";
        *len = v.b ? 1 : 0;
        return true;
    case PHP_NULL:
        *text = "";
        *len = 0;
        return true;
    default:
        return false;
    }
}

/* The frame a send command puts on its recipients' queues: built once. */
static sbuf *message_frame(const gw_frame *f, const char *text, size_t len)
{
    metrics_push(METRICS_PUSH_GW);
    if (f->h.flag & GW_FLAG_NOT_FRAMED)
        return sbuf_from(text, len); /* the sender framed it */
    return gateway_frame_text(text, len);
}

/* A uid or group given as a JSON value: a string or an integer, as text. */
static bool json_name(json_t *v, char *buf, size_t cap, const char **s, size_t *len)
{
    if (json_is_string(v)) {
        *s = json_string_value(v);
        *len = json_string_length(v);
    } else if (json_is_integer(v)) {
        int n = snprintf(buf, cap, "%lld", (long long)json_integer_value(v));
        *s = buf;
        *len = (size_t)n;
    } else {
        return false;
    }
    return *len > 0 && *len <= REGISTRY_NAME_MAX;
}

/* A connection id given as a JSON integer or a decimal string. */
static bool json_connection_id(json_t *v, uint32_t *id)
{
    long long n;
    if (json_is_integer(v)) {
        n = json_integer_value(v);
    } else if (json_is_string(v)) {
        char *end;
        n = strtoll(json_string_value(v), &end, 10);
        if (*end || end == json_string_value(v))
            return false;
    } else {
        return false;
    }
    if (n <= 0 || n > UINT32_MAX)
        return false;
    *id = (uint32_t)n;
    return true;
}

/* The values of a JSON array or object, in order: PHP's json_encode writes
 * an array whose keys are not 0..n-1 (GatewayClient's {"8":8} id maps) as an
 * object, so every list in ext_data may come as either. */
typedef struct value_iter {
    json_t *container;
    size_t i;
    void *it;
} value_iter;

static void value_iter_init(value_iter *vi, json_t *container)
{
    vi->container = container;
    vi->i = 0;
    vi->it = json_is_object(container) ? json_object_iter(container) : NULL;
}

static json_t *value_iter_next(value_iter *vi)
{
    if (json_is_array(vi->container))
        return json_array_get(vi->container, vi->i++); /* NULL past the end */
    if (!vi->it)
        return NULL;
    json_t *v = json_object_iter_value(vi->it);
    vi->it = json_object_iter_next(vi->container, vi->it);
    return v;
}

/* Marks (or unmarks) the connections of a {"id":id,...} map or [id,...]
 * list with CONN_EXCLUDED. Returns false when the value is not such a map. */
static bool mark_ids(json_t *ids, bool on)
{
    if (!json_is_object(ids) && !json_is_array(ids))
        return false;
    value_iter vi;
    value_iter_init(&vi, ids);
    for (json_t *v; (v = value_iter_next(&vi));) {
        uint32_t id;
        if (!json_connection_id(v, &id))
            continue;
        conn *c = find_client(id);
        if (c)
            gateway_exclude_mark(c, on);
    }
    return true;
}

/* ---- query replies ----------------------------------------------------- */

/* A reply: 4 bytes of length, then one serialized value. */
static void reply_begin(php_buf *b)
{
    memset(b, 0, sizeof(*b));
    php_put_raw(b, "\0\0\0\0", 4);
}

static void reply_end(conn *c, php_buf *b)
{
    if (b->oom) {
        free(b->data);
        gw_refuse(c, "inner", "out of memory building a reply");
        return;
    }
    gw_reply_prefix((uint32_t)(b->len - 4), (uint8_t *)b->data);
    sbuf *buf = sbuf_from(b->data, b->len);
    free(b->data);
    if (!buf) {
        gw_refuse(c, "inner", "out of memory building a reply");
        return;
    }
    /* one reply is taken whole when nothing else is queued, as GatewayWorker
     * does: a big node's GET_ALL_CLIENT_SESSIONS may pass --gw-max-outbuf */
    if (conn_queued_bytes(c) == 0)
        conn_send_force(c, buf);
    else
        gw_send(c, buf);
    sbuf_unref(buf);
}

/* An array whose elements are written into a buffer of their own first,
 * since serialize() puts the count in front. */
typedef struct php_list {
    php_buf items;
    size_t count;
} php_list;

static void list_close_into(php_buf *out, php_list *l)
{
    php_put_array_open(out, l->count);
    php_put_raw(out, l->items.data, l->items.len);
    php_put_array_close(out);
    out->oom |= l->items.oom;
    free(l->items.data);
    memset(l, 0, sizeof(*l));
}

/* The stored session as a serialized PHP string value (`s:N:"...";`). */
static void put_session_string(php_buf *b, conn *c)
{
    char *tmp = NULL;
    const char *text;
    size_t len;
    gw_session_php(c, &tmp, &text, &len);
    php_put_string(b, text, len);
    free(tmp);
}

static void put_connection_id(php_buf *b, conn *c)
{
    php_put_int(b, connection_id_of(c));
}

typedef struct sessions_arg {
    php_list *l;
} sessions_arg;

static void add_session(conn *c, void *arg)
{
    php_list *l = arg;
    put_connection_id(&l->items, c);
    put_session_string(&l->items, c);
    l->count++;
}

static void count_one(conn *c, void *arg)
{
    (void)c;
    (*(size_t *)arg)++;
}

/* SELECT's per-connection entry: {field => value} for the fields asked. */
typedef struct select_arg {
    php_list l;
    bool uid, groups, session;
} select_arg;

static void select_put(conn *c, void *arg)
{
    select_arg *s = arg;
    php_buf *b = &s->l.items;
    put_connection_id(b, c);
    php_put_array_open(b, (size_t)s->uid + s->groups + s->session);
    if (s->uid) {
        php_put_string(b, "uid", 3);
        if (c->uid)
            php_put_string(b, c->uid->name, c->uid->len);
        else
            php_put_null(b);
    }
    if (s->groups) {
        /* GatewayWorker keeps a client's groups as group => group: a map
         * whose numeric keys are integers and whose values stay strings;
         * null before the first join */
        php_put_string(b, "groups", 6);
        size_t n = 0;
        for (group_link *m = c->wsx ? c->wsx->groups : NULL; m; m = m->c_next)
            n++;
        group_link **order = n ? malloc(n * sizeof(*order)) : NULL;
        if (n == 0) {
            php_put_null(b);
        } else if (!order) {
            b->oom = true;
        } else {
            size_t i = n; /* joined order: the connection's list is newest first */
            for (group_link *m = c->wsx->groups; m; m = m->c_next)
                order[--i] = m;
            php_put_array_open(b, n);
            for (i = 0; i < n; i++) {
                php_put_key(b, order[i]->group->name, order[i]->group->len);
                php_put_string(b, order[i]->group->name, order[i]->group->len);
            }
            php_put_array_close(b);
        }
        free(order);
    }
    if (s->session) {
        php_put_string(b, "session", 7);
        put_session_string(b, c);
    }
    php_put_array_close(b);
    s->l.count++;
}

/* Puts c once: CONN_EXCLUDED marks the ones already in (cleared after). */
typedef struct select_seen {
    conn **v;
    size_t n, cap;
} select_seen;

static void select_take(select_arg *s, select_seen *seen, conn *c)
{
    if (c->flags & CONN_EXCLUDED)
        return;
    if (seen->n == seen->cap) {
        size_t cap = seen->cap ? seen->cap * 2 : 64;
        conn **v = realloc(seen->v, cap * sizeof(*v));
        if (!v) {
            s->l.items.oom = true;
            return;
        }
        seen->v = v;
        seen->cap = cap;
    }
    seen->v[seen->n++] = c;
    c->flags |= CONN_EXCLUDED;
    select_put(c, s);
}

static int query_select(conn *c, const gw_frame *f, php_buf *out)
{
    json_t *q = f->ext_len ? json_loadb(f->ext, f->ext_len, 0, NULL) : NULL;
    if (f->ext_len && !json_is_object(q)) {
        json_decref(q);
        return -1;
    }
    select_arg s = {0};
    json_t *fields = json_object_get(q, "fields");
    json_t *v;
    value_iter fi;
    value_iter_init(&fi, fields);
    while ((v = value_iter_next(&fi))) {
        const char *name = json_string_value(v);
        if (!name)
            continue;
        s.uid |= strcmp(name, "uid") == 0;
        s.groups |= strcmp(name, "groups") == 0;
        s.session |= strcmp(name, "session") == 0;
    }
    json_t *where = json_object_get(q, "where");
    if (!s.uid && !s.groups && !s.session) {
        /* no field GatewayWorker knows: its answer is an empty array */
    } else if (!json_is_object(where) || json_object_size(where) == 0) {
        registry_foreach_ordered(select_put, &s); /* GatewayClient sends "where":[] for all */
    } else {
        /* a union, in the order of where's keys, each connection once */
        select_seen seen = {0};
        char num[24];
        const char *name, *key;
        size_t len;
        json_t *list;
        json_object_foreach(where, key, list)
        {
            bool by_group = strcmp(key, "groups") == 0, by_uid = strcmp(key, "uid") == 0;
            bool by_id = strcmp(key, "connection_id") == 0;
            value_iter vi;
            value_iter_init(&vi, list);
            while ((v = value_iter_next(&vi))) {
                if (by_group) {
                    group_entry *g = json_name(v, num, sizeof(num), &name, &len)
                                         ? registry_find_group(name, len)
                                         : NULL;
                    for (group_link *m = g ? g->members : NULL; m; m = m->g_next)
                        select_take(&s, &seen, m->conn);
                } else if (by_uid) {
                    uid_entry *e = json_name(v, num, sizeof(num), &name, &len)
                                       ? registry_find_uid(name, len)
                                       : NULL;
                    for (conn *m = e ? e->conns : NULL; m; m = m->uid_next)
                        select_take(&s, &seen, m);
                } else if (by_id) {
                    uint32_t id;
                    conn *m = json_connection_id(v, &id) ? find_client(id) : NULL;
                    if (m)
                        select_take(&s, &seen, m);
                }
            }
        }
        for (size_t k = 0; k < seen.n; k++)
            seen.v[k]->flags &= ~CONN_EXCLUDED;
        free(seen.v);
    }
    (void)c;
    list_close_into(out, &s.l);
    json_decref(q);
    return 0;
}

/* A temporary set of names, so a batch reply has one entry per distinct
 * key (a PHP array cannot hold a key twice). */
typedef struct seen_name {
    UT_hash_handle hh;
    size_t len;
    char s[];
} seen_name;

static bool seen_add(seen_name **set, const char *s, size_t len, bool *oom)
{
    seen_name *e;
    HASH_FIND(hh, *set, s, len, e);
    if (e)
        return false;
    e = malloc(sizeof(*e) + len);
    if (!e) {
        *oom = true;
        return false;
    }
    e->len = len;
    memcpy(e->s, s, len);
    HASH_ADD(hh, *set, s[0], len, e);
    return true;
}

static void seen_free(seen_name **set)
{
    seen_name *e, *tmp;
    HASH_ITER(hh, *set, e, tmp)
    {
        HASH_DEL(*set, e);
        free(e);
    }
}

/* The canonical key text of a name, so "7" and 7 are one key. */
static void put_uid_ids(php_buf *b, uid_entry *e)
{
    php_list l = {0};
    for (conn *m = e ? e->conns : NULL; m; m = m->uid_next) {
        php_put_int(&l.items, (int64_t)l.count);
        put_connection_id(&l.items, m);
        l.count++;
    }
    list_close_into(b, &l);
}

static size_t group_count(const char *name, size_t len)
{
    group_entry *g = registry_find_group(name, len);
    return g ? g->count : 0;
}

/* 16 and 28: a JSON array of names in, name => answer out. */
static int query_batch(const gw_frame *f, php_buf *out, bool uids)
{
    json_t *names = json_loadb(f->ext, f->ext_len, 0, NULL);
    if (!json_is_array(names) && !json_is_object(names)) {
        json_decref(names);
        return -1;
    }
    php_list l = {0};
    seen_name *seen = NULL;
    value_iter vi;
    value_iter_init(&vi, names);
    for (json_t *v; (v = value_iter_next(&vi));) {
        char num[24];
        const char *name;
        size_t len;
        if (!json_name(v, num, sizeof(num), &name, &len)) {
            if (json_is_string(v) && json_string_length(v) == 0) {
                name = ""; /* an empty name: a valid key that nothing has */
                len = 0;
            } else {
                continue;
            }
        }
        if (!seen_add(&seen, name, len, &l.items.oom))
            continue;
        php_put_key(&l.items, name, len);
        if (uids)
            put_uid_ids(&l.items, len ? registry_find_uid(name, len) : NULL);
        else
            php_put_int(&l.items, (int64_t)(len ? group_count(name, len) : 0));
        l.count++;
    }
    seen_free(&seen);
    list_close_into(out, &l);
    json_decref(names);
    return 0;
}

static void add_group_name(group_entry *g, void *arg)
{
    php_list *l = arg;
    php_put_int(&l->items, (int64_t)l->count);
    php_put_key(&l->items, g->name, g->len);
    l->count++;
}

/* Answers a query frame. Returns -1 on bad input (the caller closes). */
static int answer_query(conn *c, const gw_frame *f)
{
    php_buf b;
    reply_begin(&b);
    php_list l = {0};
    switch (f->h.cmd) {
    case GW_CMD_GET_ALL_CLIENT_SESSIONS:
        registry_foreach_ordered(add_session, &l);
        list_close_into(&b, &l);
        break;
    case GW_CMD_IS_ONLINE:
        php_put_int(&b, find_client(f->h.connection_id) ? 1 : 0);
        break;
    case GW_CMD_GET_CLIENT_ID_BY_UID:
        put_uid_ids(&b, f->ext_len && f->ext_len <= REGISTRY_NAME_MAX
                            ? registry_find_uid(f->ext, f->ext_len)
                            : NULL);
        break;
    case GW_CMD_BATCH_GET_CLIENT_ID_BY_UID:
    case GW_CMD_BATCH_GET_CLIENT_COUNT_BY_GROUP:
        if (query_batch(f, &b, f->h.cmd == GW_CMD_BATCH_GET_CLIENT_ID_BY_UID) < 0)
            goto bad;
        break;
    case GW_CMD_GET_CLIENT_SESSIONS_BY_GROUP: {
        group_entry *g = f->ext_len && f->ext_len <= REGISTRY_NAME_MAX
                             ? registry_find_group(f->ext, f->ext_len)
                             : NULL;
        for (group_link *m = g ? g->members : NULL; m; m = m->g_next)
            add_session(m->conn, &l);
        list_close_into(&b, &l);
        break;
    }
    case GW_CMD_GET_CLIENT_COUNT_BY_GROUP: {
        size_t n = 0;
        if (f->ext_len == 0)
            registry_foreach(count_one, &n);
        else if (f->ext_len <= REGISTRY_NAME_MAX)
            n = group_count(f->ext, f->ext_len);
        php_put_int(&b, (int64_t)n);
        break;
    }
    case GW_CMD_SELECT:
        if (query_select(c, f, &b) < 0)
            goto bad;
        break;
    case GW_CMD_GET_GROUP_ID_LIST:
        registry_foreach_group(add_group_name, &l);
        list_close_into(&b, &l);
        break;
    case GW_CMD_GET_SESSION_BY_CLIENT_ID: {
        conn *t = find_client(f->h.connection_id);
        if (!t) {
            php_put_null(&b);
        } else {
            char *tmp = NULL;
            const char *text;
            size_t len;
            gw_session_php(t, &tmp, &text, &len);
            if (len)
                php_put_raw(&b, text, len);
            else
                php_put_raw(&b, "a:0:{}", 6);
            free(tmp);
        }
        break;
    }
    default:
        goto bad;
    }
    reply_end(c, &b);
    return 0;
bad:
    free(b.data);
    free(l.items.data);
    return -1;
}

/* ---- sessions ---------------------------------------------------------- */

void gw_session_php(conn *c, char **tmp, const char **text, size_t *len)
{
    *tmp = NULL;
    *text = "";
    *len = 0;
    ws_extra *x = c->wsx;
    if (!x)
        return;
    if (x->php_session) {
        *text = x->php_session;
        *len = x->php_session_len;
    } else if (x->session) {
        php_buf b = {0};
        if (php_serial_from_json(x->session, &b) == 0 && !b.oom) {
            *tmp = b.data;
            *text = b.data;
            *len = b.len;
        } else {
            free(b.data);
        }
    }
}

/* 204 replaces, 9 merges (array_replace_recursive; stored as given when
 * there is nothing to merge into). Returns -1 on a bad session. */
static int write_session(conn *t, const gw_frame *f, bool merge, const char **why)
{
    php_value v;
    if (f->ext_len > GW_SESSION_MAX) {
        *why = "session larger than 65536 bytes";
        return -1;
    }
    if (f->ext_len == 0) {
        /* BusinessWorker writes $_SESSION = null as an empty session: stored as none */
        ws_extra *x = t ? t->wsx : NULL;
        if (x) {
            free(x->php_session);
            x->php_session = NULL;
            x->php_session_len = 0;
            json_decref(x->session);
            x->session = NULL;
            ws_extra_release(t);
        }
        return 0;
    }
    if (php_serial_parse(f->ext, f->ext_len, &v) < 0) {
        *why = "session is not valid PHP serialize() output";
        return -1;
    }
    if (!t)
        return 0; /* the connection is gone: nothing to store */
    ws_extra *x = ws_extra_get(t);
    if (!x) {
        *why = "out of memory";
        return -1;
    }
    php_buf out = {0};
    if (merge) {
        char *tmp = NULL;
        const char *base;
        size_t base_len;
        gw_session_php(t, &tmp, &base, &base_len);
        int r = php_serial_merge(base, base_len, f->ext, f->ext_len, &out);
        free(tmp);
        if (r < 0 || out.oom) {
            free(out.data);
            /* repl was checked above, so only a stored session can be bad */
            *why = r < 0 ? "update is not a serialized array" : "out of memory";
            return -1;
        }
        if (out.len > GW_SESSION_MAX) {
            free(out.data);
            *why = "merged session larger than 65536 bytes";
            return -1;
        }
    } else {
        out.data = malloc(f->ext_len ? f->ext_len : 1);
        if (!out.data) {
            *why = "out of memory";
            return -1;
        }
        memcpy(out.data, f->ext, f->ext_len);
        out.len = f->ext_len;
    }
    free(x->php_session);
    json_decref(x->session);
    x->session = NULL;
    x->php_session = out.data;
    x->php_session_len = (uint32_t)out.len;
    return 0;
}

/* ---- commands ---------------------------------------------------------- */

static bool is_query(uint8_t cmd)
{
    switch (cmd) {
    case GW_CMD_GET_ALL_CLIENT_SESSIONS:
    case GW_CMD_IS_ONLINE:
    case GW_CMD_GET_CLIENT_ID_BY_UID:
    case GW_CMD_BATCH_GET_CLIENT_ID_BY_UID:
    case GW_CMD_GET_CLIENT_SESSIONS_BY_GROUP:
    case GW_CMD_GET_CLIENT_COUNT_BY_GROUP:
    case GW_CMD_SELECT:
    case GW_CMD_GET_GROUP_ID_LIST:
    case GW_CMD_BATCH_GET_CLIENT_COUNT_BY_GROUP:
    case GW_CMD_GET_SESSION_BY_CLIENT_ID:
        return true;
    default:
        return false;
    }
}

/* Sends to every member of the groups; with several groups a member gets
 * it once per membership, as GatewayWorker does. */
static void send_groups(json_t *list, sbuf *frame)
{
    char num[24];
    const char *name;
    size_t len;
    if (!json_is_array(list) && !json_is_object(list)) { /* "group":"one" */
        if (json_name(list, num, sizeof(num), &name, &len))
            gateway_send_to_group(name, len, frame);
        return;
    }
    value_iter vi;
    value_iter_init(&vi, list);
    for (json_t *v; (v = value_iter_next(&vi));)
        if (json_name(v, num, sizeof(num), &name, &len))
            gateway_send_to_group(name, len, frame);
}

/* Runs a fire-and-forget command. Returns -1 with *why on bad input. */
static int run_command(const gw_frame *f, const char **why)
{
    const config *cfg = gw.cfg;
    const char *text;
    size_t len;
    char num[40];
    conn *t = NULL;
    switch (f->h.cmd) {
    case GW_CMD_PING:
        return 0;
    case GW_CMD_SEND_TO_ONE:
    case GW_CMD_KICK: {
        if (!message_text(f, &text, &len, num, sizeof(num))) {
            *why = "message body is not a scalar";
            return -1;
        }
        t = find_client(f->h.connection_id);
        if (!t)
            return 0;
        /* KICK sends its message unless it is null (closeClient() without
         * one sends serialize(null)); an empty string is an empty frame */
        bool is_null =
            !(f->h.flag & GW_FLAG_BODY_RAW) && f->body_len == 2 && memcmp(f->body, "N;", 2) == 0;
        if (f->h.cmd == GW_CMD_SEND_TO_ONE || !is_null) {
            sbuf *frame = message_frame(f, text, len);
            if (frame) {
                gateway_send_to_conn(t, frame); /* a full queue closes t (1008) */
                sbuf_unref(frame);
            }
        }
        /* KICK: the message, then the TCP close, without a close frame */
        if (f->h.cmd == GW_CMD_KICK && !(t->flags & CONN_CLOSING))
            conn_close_after_write(t, 1000);
        return 0;
    }
    case GW_CMD_DESTROY:
        t = find_client(f->h.connection_id);
        if (t)
            conn_close(t);
        return 0;
    case GW_CMD_SEND_TO_ALL: {
        if (!message_text(f, &text, &len, num, sizeof(num))) {
            *why = "message body is not a scalar";
            return -1;
        }
        json_t *q = NULL, *only = NULL, *exclude = NULL;
        if (f->ext_len) {
            q = json_loadb(f->ext, f->ext_len, 0, NULL);
            if (!json_is_object(q)) {
                json_decref(q);
                *why = "ext_data is not a JSON object";
                return -1;
            }
            only = json_object_get(q, "connections");
            exclude = json_object_get(q, "exclude");
        }
        sbuf *frame = message_frame(f, text, len);
        if (frame && only && !json_is_null(only)) {
            value_iter vi;
            value_iter_init(&vi, only);
            for (json_t *v; (v = value_iter_next(&vi));) {
                uint32_t id;
                conn *m = json_connection_id(v, &id) ? find_client(id) : NULL;
                if (m)
                    gateway_send_to_conn(m, frame);
            }
        } else if (frame) {
            bool marked = exclude && !json_is_null(exclude) && mark_ids(exclude, true);
            gateway_send_to_all(frame);
            if (marked)
                mark_ids(exclude, false);
        }
        if (frame)
            sbuf_unref(frame);
        json_decref(q);
        return 0;
    }
    case GW_CMD_SEND_TO_UID:
    case GW_CMD_SEND_TO_GROUP: {
        if (!message_text(f, &text, &len, num, sizeof(num))) {
            *why = "message body is not a scalar";
            return -1;
        }
        json_t *q = json_loadb(f->ext, f->ext_len, 0, NULL);
        bool to_uid = f->h.cmd == GW_CMD_SEND_TO_UID;
        if (!json_is_object(q) && !(to_uid && json_is_array(q))) {
            json_decref(q);
            *why = to_uid ? "ext_data is not a JSON array of uids"
                          : "ext_data is not a JSON object {\"group\":[...]}";
            return -1;
        }
        sbuf *frame = message_frame(f, text, len);
        if (frame && to_uid) {
            value_iter vi;
            value_iter_init(&vi, q);
            for (json_t *v; (v = value_iter_next(&vi));) {
                const char *uid;
                size_t ulen;
                if (json_name(v, num, sizeof(num), &uid, &ulen))
                    gateway_send_to_uid(uid, ulen, frame, NULL);
            }
        } else if (frame) {
            json_t *exclude = json_object_get(q, "exclude");
            json_t *groups = json_object_get(q, "group");
            bool marked = exclude && !json_is_null(exclude) && mark_ids(exclude, true);
            send_groups(groups, frame);
            if (marked)
                mark_ids(exclude, false);
        }
        if (frame)
            sbuf_unref(frame);
        json_decref(q);
        return 0;
    }
    case GW_CMD_UPDATE_SESSION:
    case GW_CMD_SET_SESSION:
        return write_session(find_client(f->h.connection_id), f, f->h.cmd == GW_CMD_UPDATE_SESSION,
                             why);
    case GW_CMD_BIND_UID: {
        t = find_client(f->h.connection_id);
        if (!t)
            return 0;
        if (php_empty_name(f->ext, f->ext_len))
            return 0; /* GatewayWorker ignores a uid PHP calls empty ("", "0") */
        if (f->ext_len > REGISTRY_NAME_MAX) {
            log_info("gw: bind_uid of %s ignored: a uid is 1-%d bytes", t->client_id,
                     REGISTRY_NAME_MAX);
            return 0;
        }
        int r = registry_bind_uid(t, f->ext, f->ext_len, (uint32_t)cfg->max_conns_per_user);
        if (r == REGISTRY_FULL)
            log_info("gw: bind_uid of %s refused: the uid has --max-conns-per-user %lld "
                     "connections",
                     t->client_id, (long long)cfg->max_conns_per_user);
        return 0;
    }
    case GW_CMD_UNBIND_UID:
        t = find_client(f->h.connection_id);
        if (t)
            registry_unbind_uid(t);
        return 0;
    case GW_CMD_JOIN_GROUP:
    case GW_CMD_LEAVE_GROUP:
        t = find_client(f->h.connection_id);
        if (!t || php_empty_name(f->ext, f->ext_len) || f->ext_len > REGISTRY_NAME_MAX)
            return 0;
        if (f->h.cmd == GW_CMD_JOIN_GROUP)
            registry_join_group(t, f->ext, f->ext_len);
        else
            registry_leave_group(t, f->ext, f->ext_len);
        return 0;
    case GW_CMD_UNGROUP:
        if (f->ext_len && f->ext_len <= REGISTRY_NAME_MAX)
            registry_ungroup(f->ext, f->ext_len);
        return 0;
    default:
        *why = "unknown command";
        return -1;
    }
}

/* ---- the connection ---------------------------------------------------- */

static void handle_frame(conn *c, const gw_frame *f)
{
    gw.frames_in++;
    char reason[80];
    uint8_t cmd = f->h.cmd;
    if (cmd == GW_CMD_WORKER_CONNECT || cmd == GW_CMD_GATEWAY_CLIENT_CONNECT) {
        char key[64];
        if (!gw_secret_ok(f->body, f->body_len, key, sizeof(key))) {
            gw_refuse(c, "inner", "wrong secret_key");
            return;
        }
        c->flags |= CONN_GW_AUTHED;
        conn_set_deadline(c, 0);
        if (cmd == GW_CMD_WORKER_CONNECT && !(c->flags & CONN_GW_WORKER))
            gw_worker_add(c, key);
        return;
    }
    if (!(c->flags & CONN_GW_AUTHED)) {
        snprintf(reason, sizeof(reason), "command %u before the secret_key frame (cmd 200/202)",
                 cmd);
        gw_refuse(c, "inner", reason);
        return;
    }
    if (is_query(cmd)) {
        if (answer_query(c, f) < 0) {
            snprintf(reason, sizeof(reason), "bad ext_data in query %u", cmd);
            gw_refuse(c, "inner", reason);
        }
        return;
    }
    const char *why = NULL;
    if (run_command(f, &why) < 0) {
        snprintf(reason, sizeof(reason), "command %u: %s", cmd, why ? why : "bad input");
        gw_refuse(c, "inner", reason);
    }
}

static void inner_on_open(conn *c)
{
    metrics_conn_open(METRICS_CONN_GW_INNER);
    if (!gw.cfg->gw_secret[0])
        c->flags |= CONN_GW_AUTHED;
    else /* one that never authenticates is dropped (GatewayClient speaks at once) */
        conn_set_deadline(c, GW_AUTH_TIMEOUT_MS);
}

static size_t inner_on_read(conn *c, uint8_t *data, size_t len)
{
    size_t off = 0;
    while (off < len && !(c->flags & (CONN_CLOSING | CONN_SHUT_AFTER_WRITE))) {
        gw_header h;
        /* before the secret_key frame only that small frame may come: nobody
         * unauthenticated makes chatd hold --gw-max-frame bytes */
        uint32_t max = (c->flags & CONN_GW_AUTHED) ? gw.max_frame : GW_AUTH_FRAME_MAX;
        int r = gw_header_parse(data + off, len - off, max, &h);
        if (r == GW_PARSE_NEED_MORE)
            break;
        if (r < 0) {
            char reason[112];
            if (r == GW_PARSE_BAD_LEN)
                snprintf(reason, sizeof(reason), "pack_len %u is not within 28..%u (%s)",
                         h.pack_len, max,
                         max == gw.max_frame ? "--gw-max-frame" : "before the secret_key frame");
            else
                snprintf(reason, sizeof(reason), "ext_len %u does not fit pack_len %u", h.ext_len,
                         h.pack_len);
            gw_refuse(c, "inner", reason);
            return len;
        }
        if (len - off < h.pack_len)
            break; /* the server keeps the partial frame (at most --gw-max-frame) */
        gw_frame f = {
            .h = h,
            .ext = (const char *)data + off + GW_HEADER_LEN,
            .ext_len = h.ext_len,
            .body = (const char *)data + off + GW_HEADER_LEN + h.ext_len,
            .body_len = h.pack_len - GW_HEADER_LEN - h.ext_len,
        };
        handle_frame(c, &f);
        off += h.pack_len;
    }
    return (c->flags & CONN_CLOSING) ? len : off;
}

/* Only an unauthenticated connection has a deadline: GatewayClient and
 * workers authenticate in their first frame. */
static void inner_on_deadline(conn *c)
{
    if (!(c->flags & CONN_GW_AUTHED))
        gw_refuse(c, "inner", "no secret_key frame within 10 s");
}

static void inner_on_close(conn *c)
{
    metrics_conn_closed(METRICS_CONN_GW_INNER);
    if (c->in && c->in->len > 0 && !(c->flags & CONN_GW_REFUSED)) {
        char peer[64], why[96];
        snprintf(why, sizeof(why), "the peer left in the middle of a frame (%u bytes of it)",
                 c->in->len);
        gw.bad_inputs++;
        log_warn("gw: inner connection from %s closed: %s", peer_name(c, peer, sizeof(peer)), why);
    }
    if (c->flags & CONN_GW_WORKER)
        gw_worker_remove(c);
}

conn_handler gw_inner_handler = {
    /* .max_outbuf is set by gw_init */
    .on_open = inner_on_open,
    .on_read = inner_on_read,
    .on_deadline = inner_on_deadline,
    .on_close = inner_on_close,
};
