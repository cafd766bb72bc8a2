/* bus_redis: the bus (bus.h) on one Redis server, through hiredis' async API
 * on the chatd loop (hiredis' libuv adapter).
 *
 * Two connections: `cmd` carries PUBLISH, the directory and heartbeats;
 * `sub` is in subscribe mode (Redis allows nothing else on it). hiredis
 * writes every command issued during one loop pass in one write when the
 * socket turns writable, so the publishes of a pass are pipelined for free.
 *
 * Keys (prefix chatd:): node:<instance> heartbeat (PX ttl), nodes (set of
 * instances), uid:<uid> and group:<group> (sets of instances holding them),
 * keys:<instance> (the directory keys an instance wrote, so whoever sees its
 * heartbeat gone can reap them). Scripts keep each step one round trip and
 * atomic; they name keys outside KEYS, which a single Redis allows and Redis
 * Cluster does not (another engine, see bus.h).
 *
 * The loop adapter is ours, not hiredis' adapters/libuv.h: libuv reports a
 * socket error (POLLERR, e.g. a refused connect) as a poll status of
 * UV_EBADF and stops the poll, and that adapter ignores the status, so a
 * failed connect was never noticed and the bus never reconnected. Ours hands
 * the error to hiredis as the event it waited for, so hiredis reads the
 * socket error and fails the connection the normal way.
 *
 * Subscriptions: a table keeps, per channel, whether we want it and what
 * Redis was last asked. hiredis 0.14 forgets a channel's callback when an
 * UNSUBSCRIBE reply arrives, even if a SUBSCRIBE of the same channel was
 * sent after it, so we never send SUBSCRIBE while that channel's UNSUBSCRIBE
 * is in flight; and unsubscribing waits for the next sweep, so a device
 * reconnecting at once costs no round trips. hiredis 0.14 also leaves
 * subscribe mode when an UNSUBSCRIBE reply says 0 channels are left, even
 * with a SUBSCRIBE in flight; chatd:all and chatd:n:<tag> stay subscribed
 * for the bus's whole life, so the count never reaches 0 while it runs. */
#include "cluster/bus.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "core/log.h"

#define TICK_MS 250             /* reconnect attempts and unsubscribe sweeps */
#define CONNECT_TIMEOUT_MS 3000 /* a connect not done by then is dropped and retried */
#define BACKOFF_MAX_MS 2000     /* longest wait between reconnect attempts */
#define SUBSCRIBE_BATCH 512     /* channels per SUBSCRIBE command on reconnect */

enum sub_state { SUB_IDLE, SUB_PENDING, SUB_ACTIVE, SUB_LEAVING };

typedef struct sub_entry {
    UT_hash_handle hh;
    char kind;        /* 'u' / 'g': a directory name (chatd:<kind>:<name>); 0: a plain channel */
    uint8_t solo;     /* only this node is subscribed (see bus_is_solo) */
    uint8_t in_sweep; /* on the list of channels to unsubscribe */
    struct sub_entry *sweep_next;
    uint8_t want;
    uint8_t state; /* enum sub_state: what Redis was last asked */
    uint16_t len;
    char name[];
} sub_entry;

struct bus {
    uv_loop_t *loop;
    bus_callbacks cb;
    char *host, *password, *user;
    int port, db;
    char address[300];
    char instance[80];
    redisAsyncContext *cmd, *sub;
    bool cmd_up, sub_up, up;
    uint32_t backoff_ms, next_try_ms, connect_started_ms;
    uv_timer_t tick;
    sub_entry *subs;
    sub_entry *sweep; /* ACTIVE channels no longer wanted, for the next tick */
    bool closing;
    uint32_t solo_epoch; /* bumped by every "not solo" news; a count from before is stale */
    bus_stats stats;
};

static const char heartbeat_script[] =
    "local me = ARGV[1]\n"
    "redis.call('SET', 'chatd:node:'..me, ARGV[2], 'PX', ARGV[3])\n"
    "redis.call('SADD', 'chatd:nodes', me)\n"
    "local out = {}\n"
    "for _, inst in ipairs(redis.call('SMEMBERS', 'chatd:nodes')) do\n"
    "  local info = redis.call('GET', 'chatd:node:'..inst)\n"
    "  if info then\n"
    "    out[#out+1] = inst; out[#out+1] = info\n"
    "  else\n"
    "    local idx = 'chatd:keys:'..inst\n"
    "    for _, k in ipairs(redis.call('SMEMBERS', idx)) do redis.call('SREM', k, inst) end\n"
    "    redis.call('DEL', idx)\n"
    "    redis.call('SREM', 'chatd:nodes', inst)\n"
    "  end\n"
    "end\n"
    "return out\n";

/* Drops every directory entry of ARGV[1] (before re-announcing, and at exit). */
static const char reset_script[] =
    "local idx = 'chatd:keys:'..ARGV[1]\n"
    "for _, k in ipairs(redis.call('SMEMBERS', idx)) do redis.call('SREM', k, ARGV[1]) end\n"
    "redis.call('DEL', idx)\n"
    "if ARGV[2] == '1' then\n"
    "  redis.call('DEL', 'chatd:node:'..ARGV[1])\n"
    "  redis.call('SREM', 'chatd:nodes', ARGV[1])\n"
    "end\n"
    "return 1\n";

static void connect_both(bus *b);

/* ---- uri --------------------------------------------------------------- */

static int parse_uri(bus *b, const char *uri)
{
    const char *p = uri + strlen("redis://");
    const char *at = strrchr(p, '@');
    if (at) { /* [user]:password@ or password@ */
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) {
            if (colon > p)
                b->user = strndup(p, (size_t)(colon - p));
            b->password = strndup(colon + 1, (size_t)(at - colon - 1));
        } else {
            b->password = strndup(p, (size_t)(at - p));
        }
        p = at + 1;
    }
    const char *slash = strchr(p, '/');
    const char *end = slash ? slash : p + strlen(p);
    const char *colon = NULL;
    for (const char *q = p; q < end; q++)
        if (*q == ':')
            colon = q;
    if (!colon || colon == p)
        return -1;
    char *num_end;
    long port = strtol(colon + 1, &num_end, 10);
    if (num_end != end || port <= 0 || port > 65535)
        return -1;
    b->host = strndup(p, (size_t)(colon - p));
    b->port = (int)port;
    if (slash && slash[1]) {
        long db = strtol(slash + 1, &num_end, 10);
        if (*num_end || db < 0 || db > 1000000)
            return -1;
        b->db = (int)db;
    }
    snprintf(b->address, sizeof(b->address), "%s:%d", b->host, b->port);
    return 0;
}

/* ---- the loop adapter -------------------------------------------------- */

typedef struct redis_poll {
    redisAsyncContext *ac; /* NULL once hiredis freed the context */
    uv_poll_t poll;
    int events;
} redis_poll;

static void on_poll(uv_poll_t *h, int status, int events)
{
    redis_poll *p = h->data;
    if (status < 0) /* a socket error: let hiredis find it where it waits */
        events = p->events;
    if (p->ac && (events & UV_READABLE))
        redisAsyncHandleRead(p->ac);
    if (p->ac && (events & UV_WRITABLE))
        redisAsyncHandleWrite(p->ac);
}

static void poll_update(redis_poll *p, int events)
{
    p->events = events;
    if (events)
        uv_poll_start(&p->poll, events, on_poll);
    else
        uv_poll_stop(&p->poll);
}

static void ev_add_read(void *d)
{
    redis_poll *p = d;
    poll_update(p, p->events | UV_READABLE);
}

static void ev_del_read(void *d)
{
    redis_poll *p = d;
    poll_update(p, p->events & ~UV_READABLE);
}

static void ev_add_write(void *d)
{
    redis_poll *p = d;
    poll_update(p, p->events | UV_WRITABLE);
}

static void ev_del_write(void *d)
{
    redis_poll *p = d;
    poll_update(p, p->events & ~UV_WRITABLE);
}

static void poll_closed(uv_handle_t *h)
{
    free(h->data);
}

static void ev_cleanup(void *d)
{
    redis_poll *p = d;
    p->ac = NULL;
    uv_close((uv_handle_t *)&p->poll, poll_closed);
}

static int attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    redis_poll *p = calloc(1, sizeof(*p));
    if (!p)
        return -1;
    if (uv_poll_init(loop, &p->poll, ac->c.fd) != 0) {
        free(p);
        return -1;
    }
    p->ac = ac;
    p->poll.data = p;
    ac->ev.data = p;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    return 0;
}

/* ---- connection state -------------------------------------------------- */

static void subscribe_wanted(bus *b);
static void announce_held(bus *b);
static void sub_unwant(bus *b, const char *channel, size_t len);
static void sweep_add(bus *b, sub_entry *e);

static void set_up(bus *b)
{
    bool up = b->cmd_up && b->sub_up;
    if (up == b->up)
        return;
    b->up = up;
    if (up) {
        log_info("cluster: bus connected to redis %s", b->address);
        b->backoff_ms = 0;
        /* only now, with both connections: a subscription confirmed makes the
         * owner publish its hello (on_held), which needs the command side */
        announce_held(b);
        subscribe_wanted(b);
    } else {
        log_warn("cluster: bus lost redis %s; serving this node's clients only, cross-node "
                 "pushes are dropped until it is back",
                 b->address);
    }
    if (b->cb.on_state)
        b->cb.on_state(up, b->cb.arg);
}

static void schedule_retry(bus *b)
{
    b->backoff_ms = b->backoff_ms ? b->backoff_ms * 2 : 100;
    if (b->backoff_ms > BACKOFF_MAX_MS)
        b->backoff_ms = BACKOFF_MAX_MS;
    b->next_try_ms = (uint32_t)uv_now(b->loop) + b->backoff_ms;
}

/* Sends AUTH and SELECT ahead of everything else on a new connection. */
static void send_preamble(bus *b, redisAsyncContext *ac)
{
    if (b->password) {
        if (b->user)
            redisAsyncCommand(ac, NULL, NULL, "AUTH %s %s", b->user, b->password);
        else
            redisAsyncCommand(ac, NULL, NULL, "AUTH %s", b->password);
    }
    if (b->db)
        redisAsyncCommand(ac, NULL, NULL, "SELECT %d", b->db);
}

/* Drops both connections (whichever are left), forgets what Redis knew of
 * our subscriptions, and schedules a reconnect: the two always come back
 * together, so the state is announced once. */
static void drop_both(bus *b)
{
    redisAsyncContext *cmd = b->cmd, *sub = b->sub;
    b->cmd = b->sub = NULL;
    b->cmd_up = b->sub_up = false;
    /* down before freeing: freeing runs pending callbacks (a PUBLISH's done
     * answers an HTTP call, whose pipelined successor may publish at once),
     * and nothing may reach a context that is going */
    if (!b->closing)
        set_up(b);
    b->sweep = NULL;
    bool closing = b->closing;
    b->closing = true; /* their disconnect callbacks do nothing now */
    if (cmd)
        redisAsyncFree(cmd);
    if (sub)
        redisAsyncFree(sub);
    b->closing = closing;
    b->solo_epoch++;
    sub_entry *e, *tmp;
    HASH_ITER(hh, b->subs, e, tmp)
    {
        e->state = SUB_IDLE;
        e->solo = 0;
        e->in_sweep = 0;
        e->sweep_next = NULL;
        if (!e->want) {
            HASH_DEL(b->subs, e);
            free(e);
        }
    }
    if (closing)
        return;
    b->stats.reconnects++;
    set_up(b);
    schedule_retry(b);
}

/* Forgets ac, which hiredis frees after this callback returns. */
static void forget(bus *b, const redisAsyncContext *ac)
{
    if (ac == b->cmd)
        b->cmd = NULL;
    if (ac == b->sub)
        b->sub = NULL;
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    bus *b = ac->data;
    if (b->closing)
        return;
    if (status != REDIS_OK) {
        log_debug("cluster: redis connect failed: %s", ac->errstr);
        forget(b, ac);
        drop_both(b);
        return;
    }
    if (ac == b->cmd)
        b->cmd_up = true;
    else
        b->sub_up = true;
    set_up(b);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    bus *b = ac->data;
    (void)status;
    if (b->closing || (ac != b->cmd && ac != b->sub))
        return;
    forget(b, ac);
    drop_both(b);
}

static redisAsyncContext *connect_one(bus *b)
{
    redisAsyncContext *ac = redisAsyncConnect(b->host, b->port);
    if (!ac)
        return NULL;
    if (ac->err) {
        redisAsyncFree(ac);
        return NULL;
    }
    ac->data = b;
    if (attach(ac, b->loop) < 0) {
        redisAsyncFree(ac);
        return NULL;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    send_preamble(b, ac);
    return ac;
}

static void connect_both(bus *b)
{
    b->connect_started_ms = (uint32_t)uv_now(b->loop);
    b->cmd = connect_one(b);
    b->sub = connect_one(b);
    if (!b->cmd || !b->sub)
        drop_both(b);
}

/* ---- subscriptions ----------------------------------------------------- */

static void on_sub_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    bus *b = ac->data;
    redisReply *reply = r;
    (void)privdata;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_STRING)
        return;
    const char *kind = reply->element[0]->str;
    redisReply *ch = reply->element[1];
    if (strcmp(kind, "message") == 0) {
        redisReply *data = reply->element[2];
        if (data->type != REDIS_REPLY_STRING)
            return;
        b->stats.received++;
        if (b->cb.on_message)
            b->cb.on_message(ch->str, ch->len, data->str, data->len, b->cb.arg);
        return;
    }
    sub_entry *e = NULL;
    HASH_FIND(hh, b->subs, ch->str, ch->len, e);
    if (!e)
        return;
    /* a count sent before this change of ours is stale (our own
     * unsubscribe may have reached Redis before the PUBLISH it answers) */
    b->solo_epoch++;
    if (strcmp(kind, "subscribe") == 0) {
        e->state = SUB_ACTIVE;
        if (!e->want)
            sweep_add(b, e);
        else if (e->kind && b->cb.on_held)
            b->cb.on_held(e->name, e->len, b->cb.arg);
    } else if (strcmp(kind, "unsubscribe") == 0) {
        e->state = SUB_IDLE;
        e->solo = 0;
        if (e->want) { /* wanted again while it was leaving */
            e->state = SUB_PENDING;
            redisAsyncCommand(b->sub, on_sub_reply, NULL, "SUBSCRIBE %b", e->name, (size_t)e->len);
        } else {
            HASH_DEL(b->subs, e);
            free(e);
        }
    }
}

/* One SUBSCRIBE or UNSUBSCRIBE for up to SUBSCRIBE_BATCH channels. */
static void send_sub_batch(bus *b, const char *verb, sub_entry **list, size_t n)
{
    const char *argv[SUBSCRIBE_BATCH + 1];
    size_t lens[SUBSCRIBE_BATCH + 1];
    argv[0] = verb;
    lens[0] = strlen(verb);
    for (size_t i = 0; i < n; i++) {
        argv[i + 1] = list[i]->name;
        lens[i + 1] = list[i]->len;
    }
    /* UNSUBSCRIBE has no reply of its own in hiredis: each channel's
     * confirmation goes to the callback SUBSCRIBE registered */
    bool sub = verb[0] == 'S';
    redisAsyncCommandArgv(b->sub, sub ? on_sub_reply : NULL, NULL, (int)n + 1, argv, lens);
}

/* After (re)connecting: every wanted channel, in batches. */
static void subscribe_wanted(bus *b)
{
    sub_entry *batch[SUBSCRIBE_BATCH];
    size_t n = 0;
    sub_entry *e, *tmp;
    HASH_ITER(hh, b->subs, e, tmp)
    {
        if (!e->want || e->state != SUB_IDLE)
            continue;
        e->state = SUB_PENDING;
        batch[n++] = e;
        if (n == SUBSCRIBE_BATCH) {
            send_sub_batch(b, "SUBSCRIBE", batch, n);
            n = 0;
        }
    }
    if (n)
        send_sub_batch(b, "SUBSCRIBE", batch, n);
}

/* Queues an ACTIVE channel that is no longer wanted for the next sweep.
 * Only ACTIVE entries enter the list, and an entry leaves it before it can
 * be freed (sweep, or drop_both dropping the whole list), so the list never
 * holds freed memory. */
static void sweep_add(bus *b, sub_entry *e)
{
    if (e->in_sweep || e->state != SUB_ACTIVE)
        return;
    e->in_sweep = 1;
    e->sweep_next = b->sweep;
    b->sweep = e;
}

/* Unsubscribes the channels no longer wanted (deferred to the tick, so a
 * device reconnecting at once costs nothing); walks only the queued ones. */
static void sweep(bus *b)
{
    sub_entry *list = b->sweep;
    b->sweep = NULL;
    sub_entry *batch[SUBSCRIBE_BATCH];
    size_t n = 0;
    while (list) {
        sub_entry *e = list;
        list = e->sweep_next;
        e->in_sweep = 0;
        e->sweep_next = NULL;
        if (e->want || e->state != SUB_ACTIVE || !b->up)
            continue; /* wanted again, or the reconnect reset it */
        e->state = SUB_LEAVING;
        batch[n++] = e;
        if (n == SUBSCRIBE_BATCH) {
            send_sub_batch(b, "UNSUBSCRIBE", batch, n);
            n = 0;
        }
    }
    if (n)
        send_sub_batch(b, "UNSUBSCRIBE", batch, n);
}

static sub_entry *sub_want(bus *b, const char *channel, size_t len, char kind)
{
    sub_entry *e = NULL;
    HASH_FIND(hh, b->subs, channel, len, e);
    if (!e) {
        e = calloc(1, sizeof(*e) + len + 1);
        if (!e) {
            log_error("cluster: out of memory subscribing %.*s", (int)len, channel);
            return NULL;
        }
        e->len = (uint16_t)len;
        e->kind = kind;
        memcpy(e->name, channel, len);
        HASH_ADD(hh, b->subs, name, e->len, e);
        b->stats.subscriptions++;
    }
    e->want = 1;
    if (e->state == SUB_IDLE && b->up) {
        e->state = SUB_PENDING;
        redisAsyncCommand(b->sub, on_sub_reply, NULL, "SUBSCRIBE %b", channel, len);
    }
    /* SUB_LEAVING: the unsubscribe reply subscribes it again */
    return e;
}

void bus_subscribe(bus *b, const char *channel, size_t len)
{
    sub_want(b, channel, len, 0);
}

void bus_unsubscribe(bus *b, const char *channel, size_t len)
{
    sub_unwant(b, channel, len);
}

static void sub_unwant(bus *b, const char *channel, size_t len)
{
    sub_entry *e = NULL;
    HASH_FIND(hh, b->subs, channel, len, e);
    if (!e)
        return;
    e->want = 0;
    e->solo = 0;
    if (e->state == SUB_IDLE) {
        HASH_DEL(b->subs, e);
        free(e);
    } else {
        sweep_add(b, e); /* PENDING: its subscribe reply queues it; LEAVING: on its way */
    }
}

/* ---- commands ---------------------------------------------------------- */

typedef struct publish_ctx {
    bus_published_fn done;
    void *arg;
    bus *b;
    uint32_t solo_epoch;  /* b->solo_epoch when it was sent */
    uint16_t channel_len; /* > 0: a held channel, to learn "solo" from the count */
    char channel[];
} publish_ctx;

static void on_published(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)ac;
    redisReply *reply = r;
    publish_ctx *p = privdata;
    long long n = (reply && reply->type == REDIS_REPLY_INTEGER) ? reply->integer : -1;
    if (n == 1 && p->channel_len && p->solo_epoch == p->b->solo_epoch && !p->b->closing) {
        sub_entry *e = NULL;
        HASH_FIND(hh, p->b->subs, p->channel, p->channel_len, e);
        /* one receiver while we were subscribed all along: us */
        if (e && e->want && e->state == SUB_ACTIVE)
            e->solo = 1;
    }
    if (p->done)
        p->done(n, p->arg);
    free(p);
}

bool bus_is_solo(const bus *b, const char *channel, size_t len)
{
    sub_entry *e = NULL;
    HASH_FIND(hh, b->subs, channel, len, e);
    return b->up && e && e->solo && e->want && e->state == SUB_ACTIVE;
}

void bus_not_solo(bus *b, const char *channel, size_t len)
{
    b->solo_epoch++;
    sub_entry *e = NULL;
    HASH_FIND(hh, b->subs, channel, len, e);
    if (e)
        e->solo = 0;
}

int bus_publish(bus *b, const char *channel, size_t channel_len, const char *data, size_t len,
                bus_published_fn done, void *arg)
{
    if (!b->up || !b->cmd)
        return -1;
    /* a channel we hold and are subscribed to: its count may tell "solo" */
    sub_entry *e = NULL;
    HASH_FIND(hh, b->subs, channel, channel_len, e);
    bool learn = e && e->kind && e->want && e->state == SUB_ACTIVE;
    if (!done && !learn) {
        if (redisAsyncCommand(b->cmd, NULL, NULL, "PUBLISH %b %b", channel, channel_len, data,
                              len) != REDIS_OK)
            return -1; /* the connection is closing */
    } else {
        publish_ctx *p = malloc(sizeof(*p) + (learn ? channel_len : 0));
        if (!p)
            return -1;
        p->done = done;
        p->arg = arg;
        p->b = b;
        p->solo_epoch = b->solo_epoch;
        p->channel_len = learn ? (uint16_t)channel_len : 0;
        if (learn)
            memcpy(p->channel, channel, channel_len);
        if (redisAsyncCommand(b->cmd, on_published, p, "PUBLISH %b %b", channel, channel_len, data,
                              len) != REDIS_OK) {
            free(p);
            return -1;
        }
    }
    b->stats.published++;
    return 0;
}

static int dir_key(char kind, const char *name, size_t len, char *out, size_t cap)
{
    int n = snprintf(out, cap, "chatd:%s:%.*s", kind == 'u' ? "uid" : "group", (int)len, name);
    return (n > 0 && (size_t)n < cap) ? n : -1;
}

static void dir_write(bus *b, const char *verb, char kind, const char *name, size_t len)
{
    char key[400];
    int n = dir_key(kind, name, len, key, sizeof(key));
    if (!b->up || n < 0)
        return; /* the reset and announce on reconnect cover it */
    redisAsyncCommand(b->cmd, NULL, NULL, "%s %b %s", verb, key, (size_t)n, b->instance);
    redisAsyncCommand(b->cmd, NULL, NULL, "%s chatd:keys:%s %b", verb, b->instance, key, (size_t)n);
}

static sub_entry *sub_want(bus *b, const char *channel, size_t len, char kind);

#define DIR_PREFIX_LEN 8 /* "chatd:u:" / "chatd:g:" */

void bus_hold(bus *b, char kind, const char *name, size_t len, bool held)
{
    char channel[400];
    int n = snprintf(channel, sizeof(channel), "chatd:%c:%.*s", kind, (int)len, name);
    if (n < 0 || (size_t)n >= sizeof(channel))
        return;
    if (held) {
        sub_want(b, channel, (size_t)n, kind);
        dir_write(b, "SADD", kind, name, len);
    } else {
        sub_unwant(b, channel, (size_t)n);
        dir_write(b, "SREM", kind, name, len);
    }
}

/* After the command connection (re)connects: our entries from before are
 * dropped, then everything held now is listed again, in one pipeline. */
static void announce_held(bus *b)
{
    redisAsyncCommand(b->cmd, NULL, NULL, "EVAL %s 0 %s 0", reset_script, b->instance);
    sub_entry *e, *tmp;
    HASH_ITER(hh, b->subs, e, tmp)
    {
        if (e->kind && e->want)
            dir_write(b, "SADD", e->kind, e->name + DIR_PREFIX_LEN, e->len - DIR_PREFIX_LEN);
    }
}

typedef struct nodes_ctx {
    bus_nodes_fn done;
    void *arg;
} nodes_ctx;

static void on_heartbeat(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)ac;
    redisReply *reply = r;
    nodes_ctx *h = privdata;
    if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        if (reply && reply->type == REDIS_REPLY_ERROR)
            log_warn("cluster: heartbeat failed: %s", reply->str);
        h->done(NULL, -1, h->arg);
        free(h);
        return;
    }
    size_t n = reply->elements / 2;
    bus_node *nodes = calloc(n ? n : 1, sizeof(*nodes));
    long k = 0;
    for (size_t i = 0; nodes && i < n; i++) {
        redisReply *inst = reply->element[2 * i], *info = reply->element[2 * i + 1];
        if (inst->type != REDIS_REPLY_STRING || info->type != REDIS_REPLY_STRING)
            continue;
        nodes[k++] = (bus_node){inst->str, info->str, info->len};
    }
    h->done(nodes, nodes ? k : -1, h->arg);
    free(nodes);
    free(h);
}

int bus_heartbeat(bus *b, const char *info, unsigned ttl_ms, bus_nodes_fn done, void *arg)
{
    nodes_ctx *h = malloc(sizeof(*h));
    if (!b->cmd_up || !h) {
        free(h);
        return -1;
    }
    h->done = done;
    h->arg = arg;
    redisAsyncCommand(b->cmd, on_heartbeat, h, "EVAL %s 0 %s %s %u", heartbeat_script, b->instance,
                      info, ttl_ms);
    return 0;
}

/* ---- life -------------------------------------------------------------- */

static void tick_cb(uv_timer_t *t)
{
    bus *b = t->data;
    uint32_t now = (uint32_t)uv_now(b->loop);
    if (!b->cmd && !b->sub && (int32_t)(now - b->next_try_ms) >= 0)
        connect_both(b);
    else if (!b->up && (b->cmd || b->sub) && now - b->connect_started_ms > CONNECT_TIMEOUT_MS)
        drop_both(b); /* e.g. packets to Redis vanish: do not wait for TCP's own timeout */
    if (b->sweep)
        sweep(b);
}

int bus_open(uv_loop_t *loop, const char *uri, const char *instance, const bus_callbacks *cb,
             bus **out)
{
    bus *b = calloc(1, sizeof(*b));
    if (!b)
        return -1;
    b->loop = loop;
    b->cb = *cb;
    snprintf(b->instance, sizeof(b->instance), "%s", instance);
    if (parse_uri(b, uri) < 0) {
        log_error("cluster: --redis must be redis://[[user]:password@]host:port[/db], got '%s'",
                  uri);
        free(b->host);
        free(b->user);
        free(b->password);
        free(b);
        return -1;
    }
    uv_timer_init(loop, &b->tick);
    b->tick.data = b;
    uv_timer_start(&b->tick, tick_cb, TICK_MS, TICK_MS);
    uv_unref((uv_handle_t *)&b->tick);
    connect_both(b);
    *out = b;
    return 0;
}

static void free_after_close(uv_handle_t *h)
{
    free(h->data);
}

void bus_close(bus *b, unsigned timeout_ms)
{
    if (!b)
        return;
    b->closing = true;
    uv_timer_stop(&b->tick);
    /* free now: pending callbacks run with no reply, before the owner goes */
    if (b->cmd)
        redisAsyncFree(b->cmd);
    if (b->sub)
        redisAsyncFree(b->sub);
    /* a short blocking connection: the loop is ending, and leaving our
     * entries would make the cluster count this node for another ttl */
    struct timeval tv = {(time_t)(timeout_ms / 1000), (suseconds_t)((timeout_ms % 1000) * 1000)};
    redisContext *c = redisConnectWithTimeout(b->host, b->port, tv);
    if (c && !c->err) {
        redisSetTimeout(c, tv);
        redisReply *r;
        if (b->password) {
            r = b->user ? redisCommand(c, "AUTH %s %s", b->user, b->password)
                        : redisCommand(c, "AUTH %s", b->password);
            freeReplyObject(r);
        }
        if (b->db) {
            r = redisCommand(c, "SELECT %d", b->db);
            freeReplyObject(r);
        }
        r = redisCommand(c, "EVAL %s 0 %s 1", reset_script, b->instance);
        freeReplyObject(r);
    }
    if (c)
        redisFree(c);
    sub_entry *e, *tmp;
    HASH_ITER(hh, b->subs, e, tmp)
    {
        HASH_DEL(b->subs, e);
        free(e);
    }
    free(b->host);
    free(b->user);
    free(b->password);
    b->host = b->user = b->password = NULL;
    /* the timer lives in b: b goes when libuv is done with it */
    uv_close((uv_handle_t *)&b->tick, free_after_close);
}

bool bus_is_up(const bus *b)
{
    return b && b->up;
}

const char *bus_address(const bus *b)
{
    return b->address;
}

void bus_get_stats(const bus *b, bus_stats *out)
{
    *out = b->stats;
}
