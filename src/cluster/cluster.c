/* cluster: node identity, pushes, requests and the heartbeat (see
 * cluster.h for the contract, cluster_msg.h for the message format, bus.h
 * for the engine). Anything on a chatd channel that is not a well-formed
 * message is counted in bad_messages, logged and dropped. */
#include "cluster/cluster.h"

#include <inttypes.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "cluster/bus.h"
#include "cluster/cluster_msg.h"
#include "core/log.h"
#include "gwcompat/gw.h"

#define HEARTBEAT_MS 1000
#define HEARTBEAT_TTL_MS 5000 /* a dead node stops counting after this */
#define CALL_SWEEP_MS 50      /* how often call deadlines are checked */
#define HANDLERS_MAX 48
#define NODES_SHOWN 64 /* node ids listed in /healthz */
/* bytes of one node's answer: half Redis' default hard limit of a
 * subscriber's output buffer (client-output-buffer-limit pubsub 32mb), so
 * one answer cannot get the asking node's connection cut */
#define CLUSTER_ANSWER_MAX (16u << 20)

typedef struct call_target {
    char *channel;
    size_t channel_len;
    char *msg;
    size_t msg_len;
} call_target;

struct cluster_call {
    UT_hash_handle hh;
    uint64_t reqid;
    cluster_done_fn done;
    void *ctx;
    char method[CLUSTER_METHOD_MAX + 1];
    call_target *targets;
    size_t n_targets;
    int publishes_left; /* PUBLISH replies still to come */
    long expected;      /* nodes that got a copy (PUBLISH replies summed) */
    long answered;      /* answers and own echoes so far */
    json_t *partials;
    uint64_t deadline;
    cluster_call *next, *prev; /* deadline order: every call has the same timeout */
};

typedef struct cluster_handler {
    const char *name;
    cluster_handler_fn fn;
    void *arg;
} cluster_handler;

static struct {
    bool enabled;
    uv_loop_t *loop;
    size_t max_bus_message;
    bus *bus;
    char node_id[65];
    char instance[CLUSTER_INSTANCE_LEN + 1];
    uint16_t tag;
    char tag_str[CLUSTER_TAG_LEN + 1];
    char own_channel[16]; /* chatd:n:<tag> */
    uv_timer_t heartbeat, sweeper;
    uint64_t started_ms;
    long live_nodes;
    uint64_t nodes_at; /* loop ms of the node list (0: none since the bus came up) */
    json_t *live_ids;  /* node ids from the last heartbeat */
    cluster_push_fn push_fn;
    cluster_handler handlers[HANDLERS_MAX];
    size_t n_handlers;
    cluster_call *calls; /* by reqid */
    cluster_call *oldest, *newest;
    uint64_t next_reqid;
    uint64_t dropped_at_loss; /* dropped when the bus went down */
    bool tag_shared_logged;
    uint64_t pushes_solo; /* pushes that needed no bus: the uid is only here */
    uint64_t dropped, bad_messages, calls_timed_out, pushes_out, pushes_in;
} cl;

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* ---- identity ---------------------------------------------------------- */

static int random_hex(char *out, size_t bytes)
{
    unsigned char raw[32];
    if (bytes > sizeof(raw) || RAND_bytes(raw, (int)bytes) != 1)
        return -1;
    for (size_t i = 0; i < bytes; i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
    return 0;
}

bool cluster_enabled(void)
{
    return cl.enabled;
}

uint16_t cluster_node_tag(void)
{
    return cl.tag;
}

const char *cluster_node_id(void)
{
    return cl.node_id;
}

bool cluster_is_remote_client(const char *client_id, size_t len)
{
    if (gw_compat_ids()) /* GatewayWorker ids name their node by its inner address */
        return cl.enabled && gw_client_id_is_remote(client_id, len);
    return cl.enabled && len > CLUSTER_TAG_LEN && memcmp(client_id, cl.tag_str, CLUSTER_TAG_LEN);
}

/* ---- bad input --------------------------------------------------------- */

static void bad_message(const char *channel, size_t channel_len, const char *why)
{
    cl.bad_messages++;
    /* logged at 1, 2, 4, 8...: a flood cannot flood the log */
    if ((cl.bad_messages & (cl.bad_messages - 1)) == 0)
        log_warn("cluster: dropped a bad bus message on %.*s: %s (%" PRIu64 " so far)",
                 (int)channel_len, channel, why, cl.bad_messages);
}

/* ---- calls ------------------------------------------------------------- */

static void call_free_targets(cluster_call *call)
{
    for (size_t i = 0; i < call->n_targets; i++) {
        free(call->targets[i].channel);
        free(call->targets[i].msg);
    }
    free(call->targets);
    call->targets = NULL;
    call->n_targets = 0;
}

void cluster_call_free(cluster_call *call)
{
    if (!call)
        return;
    call_free_targets(call);
    json_decref(call->partials);
    free(call);
}

cluster_call *cluster_call_new(const char *method, cluster_done_fn done, void *ctx)
{
    if (strlen(method) > CLUSTER_METHOD_MAX)
        return NULL;
    cluster_call *call = calloc(1, sizeof(*call));
    if (!call)
        return NULL;
    snprintf(call->method, sizeof(call->method), "%s", method);
    call->done = done;
    call->ctx = ctx;
    call->partials = json_array();
    return call;
}

/* Builds "Q <origin> <tag> <reqid> <method>\n<body>" for channel. reqid is
 * patched in at start (it is written as 16 hex digits so its length is
 * known now). */
static int call_add(cluster_call *call, const char *channel, size_t channel_len, json_t *body)
{
    if (!cl.enabled)
        return -1;
    char *text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text)
        return -1;
    size_t tlen = strlen(text);
    char head[CLUSTER_MSG_HEADER_MAX];
    int hlen =
        cluster_msg_request_header(head, sizeof(head), cl.instance, cl.tag_str, 0, call->method);
    call_target *t = realloc(call->targets, (call->n_targets + 1) * sizeof(*t));
    char *msg = hlen < 0 ? NULL : malloc((size_t)hlen + tlen);
    char *ch = strndup(channel, channel_len);
    if (!t || !msg || !ch || hlen < 0) {
        if (t)
            call->targets = t;
        free(msg);
        free(ch);
        free(text);
        return -1;
    }
    call->targets = t;
    memcpy(msg, head, (size_t)hlen);
    memcpy(msg + hlen, text, tlen);
    free(text);
    t[call->n_targets++] = (call_target){ch, channel_len, msg, (size_t)hlen + tlen};
    return 0;
}

int cluster_call_all(cluster_call *call, json_t *body)
{
    return call_add(call, "chatd:all", 9, body);
}

int cluster_call_client(cluster_call *call, const char *client_id, size_t len, json_t *body)
{
    if (len < CLUSTER_TAG_LEN)
        return -1;
    char channel[16];
    int n = snprintf(channel, sizeof(channel), "chatd:n:%.2s", client_id);
    /* a GatewayWorker id carries an inner address, not a tag: every node is
     * asked, and the one that holds it answers (the others find nothing) */
    if (gw_compat_ids())
        n = snprintf(channel, sizeof(channel), "chatd:all");
    /* one copy per node even when several of its client_ids are named */
    for (size_t i = 0; i < call->n_targets; i++)
        if (call->targets[i].channel_len == (size_t)n &&
            !memcmp(call->targets[i].channel, channel, n))
            return 0;
    return call_add(call, channel, (size_t)n, body);
}

static int call_add_named(cluster_call *call, char kind, const char *name, size_t len, json_t *body)
{
    char channel[400];
    int n = snprintf(channel, sizeof(channel), "chatd:%c:%.*s", kind, (int)len, name);
    if (n < 0 || (size_t)n >= sizeof(channel))
        return -1;
    return call_add(call, channel, (size_t)n, body);
}

int cluster_call_uid(cluster_call *call, const char *uid, size_t len, json_t *body)
{
    return call_add_named(call, 'u', uid, len, body);
}

int cluster_call_group(cluster_call *call, const char *group, size_t len, json_t *body)
{
    return call_add_named(call, 'g', group, len, body);
}

static void call_unlink(cluster_call *call)
{
    HASH_DEL(cl.calls, call);
    if (call->prev)
        call->prev->next = call->next;
    else
        cl.oldest = call->next;
    if (call->next)
        call->next->prev = call->prev;
    else
        cl.newest = call->prev;
}

static void call_finish(cluster_call *call)
{
    call_unlink(call);
    json_t *partials = call->partials;
    call->partials = NULL;
    bool complete = call->publishes_left == 0 && call->answered >= call->expected;
    call->done(partials, complete, call->ctx);
    cluster_call_free(call);
}

static void call_maybe_finish(cluster_call *call)
{
    if (call->publishes_left == 0 && call->answered >= call->expected)
        call_finish(call);
}

static cluster_call *call_find(uint64_t reqid)
{
    cluster_call *call = NULL;
    HASH_FIND(hh, cl.calls, &reqid, sizeof(reqid), call);
    return call;
}

/* The publish of one copy was answered: it reached `receivers` nodes. The
 * call is looked up again by id: it may have timed out meanwhile. */
static void call_published_to(uint64_t reqid, long long receivers)
{
    cluster_call *call = call_find(reqid);
    if (receivers < 0)
        cl.dropped++;
    if (!call)
        return;
    call->publishes_left--;
    if (receivers > 0)
        call->expected += (long)receivers;
    call_maybe_finish(call);
}

static void call_published(long long receivers, void *arg)
{
    call_published_to((uint64_t)(uintptr_t)arg, receivers);
}

/* A copy on chatd:all: Redis counts every subscriber it still has, also a
 * machine that vanished without closing its connection (Redis notices that
 * only through TCP keepalive, minutes by default). The heartbeat knows
 * better: no more answers are awaited than live nodes exist. */
static void call_published_all(long long receivers, void *arg)
{
    /* only a fresh list counts: before the first heartbeat since the bus came
     * up, or after a silence, it may miss nodes */
    bool fresh = cl.nodes_at && uv_now(cl.loop) - cl.nodes_at <= 2 * HEARTBEAT_MS;
    if (fresh && receivers > cl.live_nodes && cl.live_nodes > 0)
        receivers = cl.live_nodes;
    call_published_to((uint64_t)(uintptr_t)arg, receivers);
}

int cluster_call_start(cluster_call *call, unsigned timeout_ms)
{
    if (!cl.enabled || !bus_is_up(cl.bus) || call->n_targets == 0) {
        cl.dropped += call->n_targets;
        cluster_call_free(call);
        return -1;
    }
    call->reqid = ++cl.next_reqid;
    call->deadline = uv_now(cl.loop) + timeout_ms;
    HASH_ADD(hh, cl.calls, reqid, sizeof(call->reqid), call);
    call->prev = cl.newest;
    if (cl.newest)
        cl.newest->next = call;
    else
        cl.oldest = call;
    cl.newest = call;
    char id[17];
    snprintf(id, sizeof(id), "%016" PRIx64, call->reqid);
    size_t off = CLUSTER_MSG_REQID_OFFSET;
    size_t n_targets = call->n_targets;
    call->publishes_left = (int)n_targets;
    for (size_t i = 0; i < n_targets; i++) {
        call_target *t = &call->targets[i];
        memcpy(t->msg + off, id, 16);
        bool all = t->channel_len == 9 && memcmp(t->channel, "chatd:all", 9) == 0;
        if (bus_publish(cl.bus, t->channel, t->channel_len, t->msg, t->msg_len,
                        all ? call_published_all : call_published,
                        (void *)(uintptr_t)call->reqid) < 0) {
            call->publishes_left--;
            cl.dropped++;
        }
    }
    call_free_targets(call);
    call_maybe_finish(call); /* every publish failed: done at once, nothing answered */
    return 0;
}

static void sweeper_cb(uv_timer_t *t)
{
    (void)t;
    uint64_t now = uv_now(cl.loop);
    while (cl.oldest && cl.oldest->deadline <= now) {
        cluster_call *call = cl.oldest;
        cl.calls_timed_out++;
        log_warn("cluster: %s: %ld of %ld nodes answered in time", call->method, call->answered,
                 call->expected);
        call_finish(call);
    }
}

void cluster_cast_all(const char *method, json_t *body)
{
    if (!cl.enabled)
        return;
    cluster_call *call = cluster_call_new(method, NULL, NULL);
    if (!call || call_add(call, "chatd:all", 9, body) < 0) {
        cluster_call_free(call);
        return;
    }
    /* reqid 0: nobody answers, nothing waits */
    call_target *t = &call->targets[0];
    if (bus_publish(cl.bus, t->channel, t->channel_len, t->msg, t->msg_len, NULL, NULL) < 0)
        cl.dropped++;
    cluster_call_free(call);
}

void cluster_register(const char *method, cluster_handler_fn fn, void *arg)
{
    if (cl.n_handlers < HANDLERS_MAX)
        cl.handlers[cl.n_handlers++] = (cluster_handler){method, fn, arg};
}

/* ---- pushes ------------------------------------------------------------ */

void cluster_set_push_handler(cluster_push_fn fn)
{
    cl.push_fn = fn;
}

void cluster_push_uid(const char *uid, size_t len, const char *except_id, const char *payload,
                      size_t payload_len)
{
    if (!cl.enabled)
        return;
    char channel[400], head[CLUSTER_MSG_HEADER_MAX];
    int n = snprintf(channel, sizeof(channel), "chatd:u:%.*s", (int)len, uid);
    if (n < 0 || (size_t)n >= sizeof(channel))
        return;
    if (bus_is_solo(cl.bus, channel, (size_t)n)) {
        cl.pushes_solo++; /* nobody else holds the uid: delivered here already */
        return;
    }
    int hn = cluster_msg_push_header(head, sizeof(head), cl.instance, except_id);
    if (hn < 0) /* a client_id no node issued: nobody to skip */
        hn = cluster_msg_push_header(head, sizeof(head), cl.instance, NULL);
    size_t hlen = (size_t)hn;
    char *msg = malloc(hlen + payload_len);
    if (!msg) {
        cl.dropped++;
        return;
    }
    memcpy(msg, head, hlen);
    memcpy(msg + hlen, payload, payload_len);
    if (bus_publish(cl.bus, channel, (size_t)n, msg, hlen + payload_len, NULL, NULL) < 0)
        cl.dropped++;
    else
        cl.pushes_out++;
    free(msg);
}

/* ---- receiving --------------------------------------------------------- */

static void answer(const cluster_msg *q, json_t *partial)
{
    char *text = json_dumps(partial ? partial : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text)
        return;
    char head[CLUSTER_MSG_HEADER_MAX], channel[16];
    int hlen = cluster_msg_answer_header(head, sizeof(head), q->origin, cl.instance, q->reqid);
    int clen = snprintf(channel, sizeof(channel), "chatd:n:%s", q->tag);
    size_t tlen = strlen(text);
    char *msg = hlen < 0 ? NULL : malloc((size_t)hlen + tlen);
    if (msg) {
        memcpy(msg, head, (size_t)hlen);
        memcpy(msg + hlen, text, tlen);
        if (bus_publish(cl.bus, channel, (size_t)clen, msg, (size_t)hlen + tlen, NULL, NULL) < 0)
            cl.dropped++;
        free(msg);
    }
    free(text);
}

/* Publishes payload to held[lo, hi) (uid strings): one push.uids request
 * when it fits the bus's message bound (receivers drop larger ones: the
 * payload is JSON-escaped in it, up to twice its size, and the list grows
 * with the group), else the halves apart, down to a plain push of one uid,
 * which carries the payload raw. */
static void push_uid_range(const json_t *held, size_t lo, size_t hi, const char *payload,
                           size_t payload_len)
{
    if (hi - lo == 1) {
        const json_t *u = json_array_get(held, lo);
        cluster_push_uid(json_string_value(u), json_string_length(u), NULL, payload, payload_len);
        return;
    }
    json_t *part = json_array();
    for (size_t i = lo; part && i < hi; i++)
        if (json_array_append(part, json_array_get(held, i)) != 0) {
            json_decref(part);
            part = NULL;
        }
    json_t *body =
        part ? json_pack("{s:o, s:s%}", "uids", part, "payload", payload, payload_len) : NULL;
    if (!body) {
        cl.dropped++;
        return;
    }
    if (json_dumpb(body, NULL, 0, JSON_COMPACT) + CLUSTER_MSG_HEADER_MAX > cl.max_bus_message) {
        json_decref(body);
        size_t mid = lo + (hi - lo) / 2;
        push_uid_range(held, lo, mid, payload, payload_len);
        push_uid_range(held, mid, hi, payload, payload_len);
        return;
    }
    cluster_cast_all("push.uids", body);
    cl.pushes_out++;
    json_decref(body);
}

void cluster_push_uids(const char *const *uids, const size_t *lens, size_t n, const char *payload,
                       size_t payload_len)
{
    if (!cl.enabled || n == 0)
        return;
    json_t *held = json_array(); /* the uids another node holds */
    size_t first = 0;
    char channel[400];
    for (size_t i = 0; held && i < n; i++) {
        int len = snprintf(channel, sizeof(channel), "chatd:u:%.*s", (int)lens[i], uids[i]);
        if (len < 0 || (size_t)len >= sizeof(channel))
            continue;
        if (bus_is_solo(cl.bus, channel, (size_t)len)) {
            cl.pushes_solo++;
            continue;
        }
        if (json_array_size(held) == 0)
            first = i;
        if (json_array_append_new(held, json_stringn(uids[i], lens[i])) != 0) {
            json_decref(held);
            held = NULL;
        }
    }
    size_t count = held ? json_array_size(held) : 0;
    if (count == 1)
        cluster_push_uid(uids[first], lens[first], NULL, payload, payload_len);
    else if (count > 1)
        push_uid_range(held, 0, count, payload, payload_len);
    else if (!held)
        cl.dropped++;
    json_decref(held);
}

static void on_request(const char *channel, size_t channel_len, const cluster_msg *q)
{
    if (strcmp(q->origin, cl.instance) == 0) { /* our own copy: the caller ran its part */
        cluster_call *call = q->reqid ? call_find(q->reqid) : NULL;
        if (call) {
            call->answered++;
            call_maybe_finish(call);
        }
        return;
    }
    const cluster_handler *h = NULL;
    for (size_t i = 0; i < cl.n_handlers; i++)
        if (strcmp(cl.handlers[i].name, q->method) == 0)
            h = &cl.handlers[i];
    json_t *req = json_loadb(q->body, q->body_len, JSON_DECODE_ANY, NULL);
    json_t *partial = NULL;
    if (!h)
        bad_message(channel, channel_len, "unknown method");
    else if (!req)
        bad_message(channel, channel_len, "request body is not JSON");
    else
        partial = h->fn(req, h->arg);
    json_decref(req);
    if (q->reqid) /* answered even when it failed here, so the caller need not wait */
        answer(q, partial);
    json_decref(partial);
}

static void on_answer(const char *channel, size_t channel_len, const cluster_msg *r)
{
    if (strcmp(r->to, cl.instance) != 0)
        return; /* for another node that shares our tag */
    cluster_call *call = call_find(r->reqid);
    if (!call)
        return; /* it timed out */
    json_t *partial = json_loadb(r->body, r->body_len, JSON_DECODE_ANY, NULL);
    if (!partial) {
        bad_message(channel, channel_len, "answer body is not JSON");
        partial = json_null();
    }
    json_array_append_new(call->partials, partial);
    call->answered++;
    call_maybe_finish(call);
}

static void on_push(const char *channel, size_t channel_len, const cluster_msg *p)
{
    if (channel_len <= 8 || memcmp(channel, "chatd:u:", 8) != 0) {
        bad_message(channel, channel_len, "a push on a channel that is not a uid's");
        return;
    }
    if (strcmp(p->origin, cl.instance) == 0)
        return; /* delivered locally when it was sent */
    cl.pushes_in++;
    if (cl.push_fn)
        cl.push_fn(channel + 8, channel_len - 8, p->except[0] ? p->except : NULL, p->body,
                   p->body_len);
}

/* Another node now holds this uid or group: we are not its only holder. */
static void on_hello(const char *channel, size_t channel_len, const cluster_msg *h)
{
    if (strcmp(h->origin, cl.instance) != 0)
        bus_not_solo(cl.bus, channel, channel_len);
}

/* Our subscription to a name we hold is active: tell its other holders. */
static void on_held(const char *channel, size_t channel_len, void *arg)
{
    (void)arg;
    char head[CLUSTER_MSG_HEADER_MAX];
    int n = cluster_msg_hello_header(head, sizeof(head), cl.instance);
    if (n > 0 && bus_publish(cl.bus, channel, channel_len, head, (size_t)n, NULL, NULL) < 0)
        cl.dropped++;
}

static void on_bus_message(const char *channel, size_t channel_len, const char *data, size_t len,
                           void *arg)
{
    (void)arg;
    /* answers are lists a query gathers from a node (every uid it holds, for
     * get_all_uid_count): allowed up to CLUSTER_ANSWER_MAX; what clients or
     * the API put on the bus is bounded by the request limits */
    size_t max = (len > 0 && data[0] == 'R') ? CLUSTER_ANSWER_MAX : cl.max_bus_message;
    if (len > max) {
        bad_message(channel, channel_len, "oversized");
        return;
    }
    cluster_msg m;
    const char *why = cluster_msg_parse(data, len, &m);
    if (why) {
        bad_message(channel, channel_len, why);
        return;
    }
    if (m.kind == 'P')
        on_push(channel, channel_len, &m);
    else if (m.kind == 'Q')
        on_request(channel, channel_len, &m);
    else if (m.kind == 'R')
        on_answer(channel, channel_len, &m);
    else
        on_hello(channel, channel_len, &m);
}

/* ---- heartbeat --------------------------------------------------------- */

static void on_nodes(const bus_node *nodes, long n, void *arg)
{
    (void)arg;
    if (n < 0 || !bus_is_up(cl.bus))
        return;
    cl.live_nodes = n;
    cl.nodes_at = uv_now(cl.loop);
    json_array_clear(cl.live_ids);
    for (long i = 0; i < n; i++) {
        json_t *info = json_loadb(nodes[i].info, nodes[i].info_len, 0, NULL);
        json_t *id = json_object_get(info, "node_id");
        const char *tag = json_string_value(json_object_get(info, "tag"));
        if (json_is_string(id) && i < NODES_SHOWN)
            json_array_append(cl.live_ids, id);
        /* harmless (a shared tag channel carries copies both nodes filter),
         * but it costs both nodes the other's client-targeted traffic */
        if (tag && strcmp(tag, cl.tag_str) == 0 && strcmp(nodes[i].instance, cl.instance) != 0 &&
            !cl.tag_shared_logged) {
            cl.tag_shared_logged = true;
            log_warn("cluster: node %s has this node's tag %s too; each gets the other's "
                     "client-targeted requests and ignores them",
                     json_string_value(id) ?: "?", cl.tag_str);
        }
        json_decref(info);
    }
}

static void heartbeat_cb(uv_timer_t *t)
{
    (void)t;
    char info[200];
    snprintf(info, sizeof(info), "{\"node_id\":\"%s\",\"tag\":\"%s\",\"started\":%" PRIu64 "}",
             cl.node_id, cl.tag_str, cl.started_ms);
    bus_heartbeat(cl.bus, info, HEARTBEAT_TTL_MS, on_nodes, NULL);
}

static void on_bus_state(bool up, void *arg)
{
    (void)arg;
    if (!up) {
        cl.dropped_at_loss = cl.dropped;
        cl.nodes_at = 0; /* the node list is stale from now on */
        return;
    }
    if (cl.dropped > cl.dropped_at_loss)
        log_warn("cluster: %" PRIu64 " cross-node messages were dropped while Redis was "
                 "unreachable; clients catch up by sync",
                 cl.dropped - cl.dropped_at_loss);
    heartbeat_cb(&cl.heartbeat); /* at once: the others learn of us now */
}

/* ---- life -------------------------------------------------------------- */

int cluster_init(uv_loop_t *loop, const config *cfg)
{
    memset(&cl, 0, sizeof(cl));
    cl.loop = loop;
    unsigned char r[2];
    if (RAND_bytes(r, 2) != 1)
        return -1;
    cl.tag = (uint16_t)(((r[0] << 8) | r[1]) & 0xfff0);
    cl.tag_str[0] = b64url[cl.tag >> 10];
    cl.tag_str[1] = b64url[(cl.tag >> 4) & 63];
    if (!cfg->redis[0])
        return 0;
    cl.enabled = true;
    cl.started_ms = (uint64_t)uv_now(loop);
    int64_t biggest = cfg->max_message > cfg->max_body ? cfg->max_message : cfg->max_body;
    cl.max_bus_message = (size_t)biggest + 4096;
    if (random_hex(cl.instance, CLUSTER_INSTANCE_LEN / 2) < 0)
        return -1;
    if (cfg->node_id[0])
        snprintf(cl.node_id, sizeof(cl.node_id), "%s", cfg->node_id);
    else if (random_hex(cl.node_id, 4) < 0)
        return -1;
    cl.live_ids = json_array();
    cl.live_nodes = 1;
    bus_callbacks cb = {on_bus_message, on_bus_state, on_held, NULL};
    if (bus_open(loop, cfg->redis, cl.instance, &cb, &cl.bus) < 0)
        return -1;
    snprintf(cl.own_channel, sizeof(cl.own_channel), "chatd:n:%s", cl.tag_str);
    bus_subscribe(cl.bus, "chatd:all", 9);
    bus_subscribe(cl.bus, cl.own_channel, strlen(cl.own_channel));
    uv_timer_init(loop, &cl.heartbeat);
    uv_timer_start(&cl.heartbeat, heartbeat_cb, HEARTBEAT_MS, HEARTBEAT_MS);
    uv_unref((uv_handle_t *)&cl.heartbeat);
    uv_timer_init(loop, &cl.sweeper);
    uv_timer_start(&cl.sweeper, sweeper_cb, CALL_SWEEP_MS, CALL_SWEEP_MS);
    uv_unref((uv_handle_t *)&cl.sweeper);
    log_info("cluster: node %s instance %s tag %s redis %s", cl.node_id, cl.instance, cl.tag_str,
             bus_address(cl.bus));
    return 0;
}

void cluster_stop(void)
{
    if (!cl.enabled)
        return;
    cl.enabled = false;
    uv_close((uv_handle_t *)&cl.heartbeat, NULL);
    uv_close((uv_handle_t *)&cl.sweeper, NULL);
    while (cl.oldest) /* their HTTP requests are answered with what came */
        call_finish(cl.oldest);
    bus_close(cl.bus, 500);
    cl.bus = NULL;
    json_decref(cl.live_ids);
    cl.live_ids = NULL;
}

void cluster_uid_held(const char *uid, size_t len, bool held)
{
    if (cl.enabled)
        bus_hold(cl.bus, 'u', uid, len, held);
}

void cluster_group_held(const char *group, size_t len, bool held)
{
    if (cl.enabled)
        bus_hold(cl.bus, 'g', group, len, held);
}

json_t *cluster_health(void)
{
    if (!cl.enabled)
        return json_null();
    bus_stats st;
    bus_get_stats(cl.bus, &st);
    bool up = bus_is_up(cl.bus);
    return json_pack("{s:s,s:s,s:s,s:s,s:I,s:O,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "node_id",
                     cl.node_id, "instance", cl.instance, "tag", cl.tag_str, "redis",
                     up ? "up" : "down", "nodes", (json_int_t)(up ? cl.live_nodes : 1), "node_ids",
                     cl.live_ids, "published", (json_int_t)st.published, "received",
                     (json_int_t)st.received, "dropped", (json_int_t)cl.dropped, "bad_messages",
                     (json_int_t)cl.bad_messages, "calls_timed_out", (json_int_t)cl.calls_timed_out,
                     "reconnects", (json_int_t)st.reconnects, "pushes_in", (json_int_t)cl.pushes_in,
                     "pushes_solo", (json_int_t)cl.pushes_solo);
}
