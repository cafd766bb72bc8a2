/* registry: client_id, uid and group indexes of open connections
 * (see registry.h). */
#include "gateway/registry.h"

#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster.h"
#include "core/metrics.h"
#include "gateway/gateway.h"
#include "gwcompat/gw.h"
#include "ws/ws.h"

/* ---- client_id table: open addressing, linear probing ------------------ */

static conn **slots;
static size_t slot_mask; /* capacity - 1; capacity is a power of two */
static size_t client_count;
/* Connect order, only with GatewayWorker ids (whose replies list clients in
 * connect order): a sequence number per slot, moved with its connection, so
 * it costs nothing per connection when unused (8 bytes a slot when used). */
static uint64_t *slot_seq;
static uint64_t next_seq;

static uid_entry *uids;
static group_entry *groups;

/* Client ids end in random characters (native: 22 of 24; GatewayWorker's
 * 20-hex layout: the 8 of the connection id, after the node's fixed
 * address), so their last 8 characters mixed by a multiply spread over the
 * table as well as any hash would. */
static size_t id_hash(const char *id, size_t len)
{
    uint64_t h = 0;
    memcpy(&h, id + (len > 8 ? len - 8 : 0), len < 8 ? len : 8);
    h ^= len;
    h *= 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 17);
}

static int table_grow(void)
{
    size_t cap = slots ? (slot_mask + 1) * 2 : 1024;
    conn **fresh = calloc(cap, sizeof(*fresh));
    uint64_t *fresh_seq = gw_compat_ids() ? calloc(cap, sizeof(*fresh_seq)) : NULL;
    if (!fresh || (gw_compat_ids() && !fresh_seq)) {
        free(fresh);
        free(fresh_seq);
        return -1;
    }
    size_t mask = cap - 1;
    if (slots) {
        for (size_t i = 0; i <= slot_mask; i++) {
            conn *c = slots[i];
            if (!c)
                continue;
            size_t j = id_hash(c->client_id, strlen(c->client_id)) & mask;
            while (fresh[j])
                j = (j + 1) & mask;
            fresh[j] = c;
            if (fresh_seq)
                fresh_seq[j] = slot_seq[i];
        }
        free(slots);
        free(slot_seq);
    }
    slots = fresh;
    slot_seq = fresh_seq;
    slot_mask = mask;
    return 0;
}

conn *registry_find(const char *client_id, size_t len)
{
    if (!slots || len != registry_client_id_len())
        return NULL;
    for (size_t i = id_hash(client_id, len) & slot_mask;; i = (i + 1) & slot_mask) {
        conn *c = slots[i];
        if (!c)
            return NULL;
        if (memcmp(c->client_id, client_id, len) == 0)
            return c;
    }
}

size_t registry_client_id_len(void)
{
    return gw_compat_ids() ? GW_CLIENT_ID_CHARS : CLIENT_ID_LEN;
}

/* Deletes slot i and shifts later members of its probe run back, so the
 * table never needs tombstones (Knuth's algorithm R). */
static void table_delete_at(size_t i)
{
    size_t j = i;
    slots[i] = NULL;
    for (;;) {
        j = (j + 1) & slot_mask;
        conn *c = slots[j];
        if (!c)
            return;
        size_t home = id_hash(c->client_id, strlen(c->client_id)) & slot_mask;
        /* c may move to i only if its home is not in the cyclic range (i, j] */
        bool in_range = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
        if (!in_range) {
            slots[i] = c;
            slots[j] = NULL;
            if (slot_seq)
                slot_seq[i] = slot_seq[j];
            i = j;
        }
    }
}

int registry_make_client_id(char out[CLIENT_ID_LEN + 1])
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char raw[18];
    uint16_t tag = cluster_node_tag();
    raw[0] = (unsigned char)(tag >> 8);
    raw[1] = (unsigned char)tag;
    if (RAND_bytes(raw + 2, 16) != 1)
        return -1;
    /* base64url without padding: 18 bytes -> 24 characters, the first two
     * the node tag (cluster_node_tag), the other 22 the 128 random bits */
    uint32_t acc = 0;
    int bits = 0, n = 0;
    for (size_t i = 0; i < sizeof(raw); i++) {
        acc = (acc << 8) | raw[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[n++] = alphabet[(acc >> bits) & 63];
        }
    }
    if (bits > 0)
        out[n++] = alphabet[(acc << (6 - bits)) & 63];
    out[n] = '\0';
    return n == CLIENT_ID_LEN ? 0 : -1;
}

int registry_add(conn *c)
{
    /* grow past 3/4 full: with random keys linear probing stays short
     * (about 2.5 probes to find, 8.5 to miss) and a slot costs 8 bytes */
    if ((client_count + 1) * 4 > (slots ? slot_mask + 1 : 0) * 3 && table_grow() < 0)
        return -1;
    if (gw_compat_ids()) {
        if (gw_make_client_id(c) < 0) /* unique among this node's ids */
            return -1;
    } else {
        do {
            if (registry_make_client_id(c->client_id) < 0)
                return -1;
        } while (registry_find(c->client_id, CLIENT_ID_LEN)); /* 2^-128, but cheap */
    }
    size_t len = strlen(c->client_id);
    size_t i = id_hash(c->client_id, len) & slot_mask;
    while (slots[i])
        i = (i + 1) & slot_mask;
    slots[i] = c;
    if (slot_seq)
        slot_seq[i] = ++next_seq;
    client_count++;
    c->flags |= CONN_IN_REGISTRY;
    return 0;
}

static void groups_leave_all(conn *c);

void registry_remove(conn *c)
{
    if (!(c->flags & CONN_IN_REGISTRY))
        return;
    registry_unbind_uid(c);
    groups_leave_all(c);
    for (size_t i = id_hash(c->client_id, strlen(c->client_id)) & slot_mask;;
         i = (i + 1) & slot_mask) {
        if (!slots[i])
            break;
        if (slots[i] == c) {
            table_delete_at(i);
            break;
        }
    }
    client_count--;
    c->flags &= ~CONN_IN_REGISTRY;
}

size_t registry_client_count(void)
{
    return client_count;
}

void registry_foreach(void (*fn)(conn *c, void *arg), void *arg)
{
    if (!slots)
        return;
    for (size_t i = 0; i <= slot_mask; i++)
        if (slots[i])
            fn(slots[i], arg);
}

typedef struct seq_conn {
    uint64_t seq;
    conn *c;
} seq_conn;

static int seq_cmp(const void *a, const void *b)
{
    uint64_t x = ((const seq_conn *)a)->seq, y = ((const seq_conn *)b)->seq;
    return x < y ? -1 : x > y;
}

void registry_foreach_ordered(void (*fn)(conn *c, void *arg), void *arg)
{
    if (!slot_seq || client_count == 0) {
        registry_foreach(fn, arg);
        return;
    }
    seq_conn *v = malloc(client_count * sizeof(*v));
    if (!v) { /* out of memory: every client still, in table order */
        registry_foreach(fn, arg);
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i <= slot_mask; i++)
        if (slots[i])
            v[n++] = (seq_conn){slot_seq[i], slots[i]};
    qsort(v, n, sizeof(*v), seq_cmp);
    for (size_t i = 0; i < n; i++)
        fn(v[i].c, arg);
    free(v);
}

/* ---- uids -------------------------------------------------------------- */

uid_entry *registry_find_uid(const char *uid, size_t len)
{
    uid_entry *e = NULL;
    HASH_FIND(hh, uids, uid, len, e);
    return e;
}

int registry_bind_uid(conn *c, const char *uid, size_t len, uint32_t max_conns)
{
    if (len == 0 || len > REGISTRY_NAME_MAX)
        return -1;
    if (c->uid && c->uid->len == len && memcmp(c->uid->name, uid, len) == 0)
        return 0;
    uid_entry *e = registry_find_uid(uid, len);
    if (e && max_conns && e->count >= max_conns) {
        metrics_limit_refused(METRICS_LIMIT_CONNS_PER_USER);
        return REGISTRY_FULL;
    }
    if (!e) {
        e = calloc(1, sizeof(*e) + len + 1);
        if (!e)
            return -1;
        memcpy(e->name, uid, len);
        e->len = (uint16_t)len;
        json_t *j = gateway_uid_json(uid, len);
        e->json = j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        json_decref(j);
        if (!e->json) {
            free(e);
            return -1;
        }
        e->json_len = (uint16_t)strlen(e->json);
        HASH_ADD(hh, uids, name, len, e);
        cluster_uid_held(e->name, len, true);
    }
    registry_unbind_uid(c);
    /* appended: a uid's connections are listed in bind order (GatewayWorker's
     * replies are) */
    conn *last = e->last;
    c->uid = e;
    c->uid_prev = last;
    c->uid_next = NULL;
    if (last)
        last->uid_next = c;
    else
        e->conns = c;
    e->last = c;
    e->count++;
    return 0;
}

static registry_chat_unbound_fn chat_unbound_hook;

void registry_set_chat_unbound_hook(registry_chat_unbound_fn fn)
{
    chat_unbound_hook = fn;
}

void registry_unbind_uid(conn *c)
{
    uid_entry *e = c->uid;
    bool chat = c->flags & CONN_CHAT_BOUND;
    c->flags &= ~CONN_CHAT_BOUND;
    if (!e)
        return;
    if (chat && chat_unbound_hook)
        chat_unbound_hook(e->name, e->len);
    if (c->uid_prev)
        c->uid_prev->uid_next = c->uid_next;
    else
        e->conns = c->uid_next;
    if (c->uid_next)
        c->uid_next->uid_prev = c->uid_prev;
    else
        e->last = c->uid_prev;
    c->uid = NULL;
    c->uid_prev = c->uid_next = NULL;
    if (--e->count == 0) {
        HASH_DELETE(hh, uids, e);
        cluster_uid_held(e->name, e->len, false);
        free(e->json);
        free(e);
    }
}

void registry_foreach_uid(void (*fn)(uid_entry *e, void *arg), void *arg)
{
    uid_entry *e, *tmp;
    HASH_ITER(hh, uids, e, tmp)
    {
        fn(e, arg);
    }
}

size_t registry_uid_count(void)
{
    return HASH_COUNT(uids);
}

/* ---- groups ------------------------------------------------------------ */

group_entry *registry_find_group(const char *group, size_t len)
{
    group_entry *g = NULL;
    HASH_FIND(hh, groups, group, len, g);
    return g;
}

static void member_unlink(group_link *m)
{
    group_entry *g = m->group;
    if (m->g_prev)
        m->g_prev->g_next = m->g_next;
    else
        g->members = m->g_next;
    if (m->g_next)
        m->g_next->g_prev = m->g_prev;
    else
        g->last = m->g_prev;
    if (--g->count == 0) {
        HASH_DELETE(hh, groups, g);
        cluster_group_held(g->name, g->len, false);
        free(g);
    }
}

int registry_join_group(conn *c, const char *group, size_t len)
{
    if (len == 0 || len > REGISTRY_NAME_MAX)
        return -1;
    ws_extra *x = ws_extra_get(c);
    if (!x)
        return -1;
    group_entry *g = registry_find_group(group, len);
    if (g)
        for (group_link *m = x->groups; m; m = m->c_next)
            if (m->group == g)
                return 0; /* already a member */
    group_link *m = calloc(1, sizeof(*m));
    if (!m)
        return -1;
    if (!g) {
        g = calloc(1, sizeof(*g) + len + 1);
        if (!g) {
            free(m);
            return -1;
        }
        memcpy(g->name, group, len);
        g->len = (uint16_t)len;
        HASH_ADD(hh, groups, name, len, g);
        cluster_group_held(g->name, len, true);
    }
    m->conn = c;
    m->group = g;
    /* appended: members are listed in join order, as GatewayWorker does */
    m->g_prev = g->last;
    m->g_next = NULL;
    if (g->last)
        g->last->g_next = m;
    else
        g->members = m;
    g->last = m;
    g->count++;
    m->c_next = x->groups;
    x->groups = m;
    return 0;
}

/* Removes m from its connection's list (the caller unlinks the group side). */
static void member_detach_from_conn(group_link *m)
{
    ws_extra *x = m->conn->wsx;
    for (group_link **p = &x->groups; *p; p = &(*p)->c_next)
        if (*p == m) {
            *p = m->c_next;
            break;
        }
    if (!x->groups)
        ws_extra_release(m->conn);
}

void registry_leave_group(conn *c, const char *group, size_t len)
{
    group_entry *g = registry_find_group(group, len);
    if (!g || !c->wsx)
        return;
    for (group_link *m = c->wsx->groups; m; m = m->c_next)
        if (m->group == g) {
            member_detach_from_conn(m);
            member_unlink(m);
            free(m);
            return;
        }
}

static void groups_leave_all(conn *c)
{
    if (!c->wsx)
        return;
    group_link *m = c->wsx->groups;
    c->wsx->groups = NULL;
    while (m) {
        group_link *next = m->c_next;
        member_unlink(m);
        free(m);
        m = next;
    }
    ws_extra_release(c);
}

void registry_ungroup(const char *group, size_t len)
{
    group_entry *g = registry_find_group(group, len);
    while (g) {
        group_link *m = g->members;
        bool last = g->count == 1;
        member_detach_from_conn(m);
        member_unlink(m); /* frees g with the last member */
        free(m);
        if (last)
            break;
    }
}

void registry_foreach_group(void (*fn)(group_entry *g, void *arg), void *arg)
{
    group_entry *g, *tmp;
    HASH_ITER(hh, groups, g, tmp) /* uthash keeps insertion (creation) order */
    {
        fn(g, arg);
    }
}

void registry_destroy(void)
{
    free(slots);
    free(slot_seq);
    slot_seq = NULL;
    slots = NULL;
    slot_mask = 0;
    client_count = 0;
}
