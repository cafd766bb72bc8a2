/* webhook: signed POSTs about messages for offline users, from a bounded
 * queue, through libcurl's multi interface on the libuv loop (see
 * webhook.h).
 *
 * The libcurl/libuv glue follows the pattern curl documents for event
 * loops (curl_multi_socket_action): libcurl says through its socket
 * callback which sockets it wants watched for what, and we keep one
 * uv_poll per socket; through its timer callback it says when it wants to
 * be called without socket activity, and we keep one uv_timer for that.
 * After every curl_multi_socket_action the finished transfers are read
 * with curl_multi_info_read. Nothing here ever waits on the network. */
#include "chat/webhook.h"

#include <curl/curl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster/cluster.h"
#include "core/log.h"
#include "gateway/registry.h"

#define ASK_TIMEOUT_MS 1000  /* the cluster's answer to "is the uid online?" */
#define LOG_EVERY_MS 60000   /* drops and failures: at most one line a minute each */
#define DELIVERY_ID_BYTES 16 /* X-Chatd-Delivery: 32 hex digits */
#define USER_AGENT "chatd-webhook/0.1.0"

/* One event: its body is built once and sent as is on every attempt. */
typedef struct wh_event {
    struct wh_event *next; /* on the ready queue or the retry list */
    uint64_t due;          /* loop time (ms) a retry may start at */
    int attempts;          /* started so far */
    int64_t message_id;    /* the message the event is about */
    bool recall;           /* a "recall" event, else a "message" one */
    bool withdrawn;        /* its message was recalled while in flight: no retry */
    char delivery[DELIVERY_ID_BYTES * 2 + 1];
    size_t body_len;
    char body[]; /* NUL-terminated */
} wh_event;

/* A request slot: WEBHOOK_IN_FLIGHT easy handles, reused. */
typedef struct wh_slot {
    CURL *easy;
    wh_event *ev; /* NULL: free */
    struct curl_slist *headers;
    char error[CURL_ERROR_SIZE];
} wh_slot;

/* A socket libcurl asked us to watch. */
typedef struct wh_socket {
    uv_poll_t poll;
    curl_socket_t fd;
    struct wh_socket *prev, *next;
} wh_socket;

/* A rate-limited log line: the first at once, then one a minute at most
 * with the count of what happened since. */
typedef struct wh_log_limit {
    bool logged;
    uint64_t at;
    uint64_t unlogged;
} wh_log_limit;

static struct {
    uv_loop_t *loop;
    const config *cfg;
    bool enabled;  /* --webhook-url was given and libcurl is up */
    bool stopping; /* shutdown began: the grace runs */
    bool closed;   /* libcurl and the handles are gone: events are dropped */
    CURLM *multi;
    uv_timer_t curl_timer, retry_timer, grace_timer;
    wh_slot slots[WEBHOOK_IN_FLIGHT];
    wh_event *ready_head, *ready_tail; /* FIFO */
    wh_event *retry_head;              /* by due time */
    wh_socket *sockets;
    webhook_stats st;
    wh_log_limit drop_log, fail_log;
} wh;

/* ---- pure helpers ------------------------------------------------------ */

size_t webhook_preview_len(const char *s, size_t len, size_t max_chars)
{
    size_t chars = 0;
    for (size_t i = 0; i < len; i++) {
        /* a character starts at every byte that is not a continuation byte */
        if (((unsigned char)s[i] & 0xC0) != 0x80 && chars++ == max_chars)
            return i;
    }
    return len;
}

char *webhook_event_json(const json_t *message, size_t preview_chars)
{
    json_t *id = json_object_get(message, "id");
    json_t *seq = json_object_get(message, "seq");
    json_t *to = json_object_get(message, "to_id");
    json_t *from = json_object_get(message, "from_id");
    json_t *time_ms = json_object_get(message, "time");
    const char *type = json_string_value(json_object_get(message, "type"));
    json_t *data = json_object_get(message, "data");
    if (!json_is_integer(id) || !json_is_integer(seq) || !json_is_integer(to) ||
        !json_is_integer(from) || !json_is_integer(time_ms) || !type || !json_is_string(data))
        return NULL;
    json_t *ev = json_pack("{s:s,s:O,s:O}", "type", "message", "recipient", to, "sender", from);
    if (!ev)
        return NULL;
    const char *name = json_string_value(json_object_get(message, "from_username"));
    if (name && name[0])
        json_object_set_new(ev, "sender_name", json_string(name));
    /* the recipient's conversation is named by its peer, as in /chat/list */
    json_object_set(ev, "conversation", from);
    json_object_set(ev, "message_id", id);
    json_object_set(ev, "seq", seq);
    json_object_set_new(ev, "message_type", json_string(type));
    json_object_set(ev, "created_at", time_ms);
    if (preview_chars > 0) {
        const char *text = json_string_value(data);
        size_t len = json_string_length(data);
        size_t n = webhook_preview_len(text, len, preview_chars);
        json_object_set_new(ev, "preview", json_stringn(text, n));
        json_object_set_new(ev, "preview_truncated", json_boolean(n < len));
    }
    char *body = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    return body;
}

char *webhook_recall_json(const json_t *message, const json_t *notice)
{
    json_t *id = json_object_get(message, "id");
    json_t *to = json_object_get(message, "to_id");
    json_t *from = json_object_get(message, "from_id");
    json_t *time_ms = json_object_get(notice, "time");
    if (!json_is_integer(id) || !json_is_integer(to) || !json_is_integer(from) ||
        !json_is_integer(time_ms))
        return NULL;
    json_t *ev =
        json_pack("{s:s, s:O, s:O, s:O, s:O, s:O}", "type", "recall", "recipient", to, "sender",
                  from, "conversation", from, "message_id", id, "created_at", time_ms);
    if (!ev)
        return NULL;
    char *body = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    return body;
}

void webhook_sign(const char *secret, const char *timestamp, const char *body, size_t body_len,
                  char out[WEBHOOK_SIGNATURE_LEN + 1])
{
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, (const unsigned char *)secret, strlen(secret));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)timestamp, strlen(timestamp));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)".", 1);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)body, body_len);
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_memzero(&st, sizeof(st));
    memcpy(out, "sha256=", 7);
    sodium_bin2hex(out + 7, WEBHOOK_SIGNATURE_LEN + 1 - 7, mac, sizeof(mac));
}

/* ---- counting ---------------------------------------------------------- */

static bool log_due(wh_log_limit *l)
{
    uint64_t now = uv_now(wh.loop);
    l->unlogged++;
    if (l->logged && now - l->at < LOG_EVERY_MS)
        return false;
    l->logged = true;
    l->at = now;
    return true;
}

static void drop(wh_event *ev, const char *why)
{
    free(ev);
    wh.st.dropped++;
    if (log_due(&wh.drop_log)) {
        log_warn("webhook: %s: %llu event(s) dropped since the last report (%llu in all)", why,
                 (unsigned long long)wh.drop_log.unlogged, (unsigned long long)wh.st.dropped);
        wh.drop_log.unlogged = 0;
    }
}

static void fail(wh_event *ev, const char *why)
{
    wh.st.failed++;
    if (log_due(&wh.fail_log)) {
        log_warn("webhook: delivery %s failed after %d attempt(s): %s (%llu failed since the "
                 "last report, %llu in all)",
                 ev->delivery, ev->attempts, why, (unsigned long long)wh.fail_log.unlogged,
                 (unsigned long long)wh.st.failed);
        wh.fail_log.unlogged = 0;
    }
    free(ev);
}

/* ---- queue ------------------------------------------------------------- */

static void ready_push(wh_event *ev)
{
    ev->next = NULL;
    if (wh.ready_tail)
        wh.ready_tail->next = ev;
    else
        wh.ready_head = ev;
    wh.ready_tail = ev;
}

static wh_event *ready_pop(void)
{
    wh_event *ev = wh.ready_head;
    if (ev) {
        wh.ready_head = ev->next;
        if (!wh.ready_head)
            wh.ready_tail = NULL;
        ev->next = NULL;
    }
    return ev;
}

static void dispatch(void);

static void retry_timer_cb(uv_timer_t *t)
{
    (void)t;
    uint64_t now = uv_now(wh.loop);
    while (wh.retry_head && wh.retry_head->due <= now) {
        wh_event *ev = wh.retry_head;
        wh.retry_head = ev->next;
        ready_push(ev);
    }
    if (wh.retry_head)
        uv_timer_start(&wh.retry_timer, retry_timer_cb, wh.retry_head->due - now, 0);
    dispatch();
}

/* Backs off 1 s, 2 s, 4 s, ... after the attempts so far. The list is kept
 * by due time; a new entry is due last or nearly, so the walk is short. */
static void schedule_retry(wh_event *ev)
{
    uint64_t now = uv_now(wh.loop);
    ev->due = now + ((uint64_t)WEBHOOK_BACKOFF_MS << (ev->attempts - 1));
    wh_event **p = &wh.retry_head;
    while (*p && (*p)->due <= ev->due)
        p = &(*p)->next;
    ev->next = *p;
    *p = ev;
    if (wh.retry_head == ev)
        uv_timer_start(&wh.retry_timer, retry_timer_cb, ev->due - now, 0);
}

static void enqueue(char *body, int64_t message_id, bool recall)
{
    size_t len = strlen(body);
    if (wh.closed || wh.stopping) {
        free(body);
        drop(NULL, "shutting down");
        return;
    }
    if (wh.st.pending >= (uint64_t)wh.cfg->webhook_queue) {
        free(body);
        drop(NULL, "the queue is full (--webhook-queue)");
        return;
    }
    wh_event *ev = malloc(sizeof(*ev) + len + 1);
    if (!ev) {
        free(body);
        drop(NULL, "out of memory");
        return;
    }
    memset(ev, 0, sizeof(*ev));
    unsigned char id[DELIVERY_ID_BYTES];
    randombytes_buf(id, sizeof(id));
    sodium_bin2hex(ev->delivery, sizeof(ev->delivery), id, sizeof(id));
    ev->message_id = message_id;
    ev->recall = recall;
    ev->body_len = len;
    memcpy(ev->body, body, len + 1);
    free(body);
    wh.st.queued++;
    wh.st.pending++;
    ready_push(ev);
    dispatch();
}

/* ---- requests ---------------------------------------------------------- */

static size_t discard_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    (void)ptr;
    (void)userdata;
    return size * nmemb;
}

static struct curl_slist *header(struct curl_slist *list, const char *fmt, const char *value)
{
    char line[160];
    snprintf(line, sizeof(line), fmt, value);
    struct curl_slist *next = curl_slist_append(list, line);
    if (!next)
        curl_slist_free_all(list);
    return next;
}

/* Sets up the slot's handle for ev; -1 on OOM or a refused option. */
static int request_setup(wh_slot *slot, wh_event *ev)
{
    char ts[24];
    snprintf(ts, sizeof(ts), "%lld", (long long)time(NULL));
    struct curl_slist *h = header(NULL, "Content-Type: %s", "application/json");
    if (h)
        h = header(h, "X-Chatd-Event: %s", ev->recall ? "recall" : "message");
    if (h)
        h = header(h, "X-Chatd-Delivery: %s", ev->delivery);
    if (h)
        h = header(h, "X-Chatd-Timestamp: %s", ts);
    if (h && wh.cfg->webhook_secret[0]) {
        char sig[WEBHOOK_SIGNATURE_LEN + 1];
        webhook_sign(wh.cfg->webhook_secret, ts, ev->body, ev->body_len, sig);
        h = header(h, "X-Chatd-Signature: %s", sig);
    }
    if (h)
        h = header(h, "Expect:%s", ""); /* no 100-continue round trip */
    if (!h)
        return -1;
    CURL *e = slot->easy;
    curl_easy_reset(e);
    slot->headers = h;
    slot->error[0] = '\0';
    int rc = CURLE_OK;
    rc |= (int)curl_easy_setopt(e, CURLOPT_URL, wh.cfg->webhook_url);
#if LIBCURL_VERSION_NUM >= 0x075500
    rc |= (int)curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    rc |= (int)curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    rc |= (int)curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    rc |= (int)curl_easy_setopt(e, CURLOPT_POST, 1L);
    rc |= (int)curl_easy_setopt(e, CURLOPT_POSTFIELDS, (const char *)ev->body);
    rc |= (int)curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)ev->body_len);
    rc |= (int)curl_easy_setopt(e, CURLOPT_USERAGENT, USER_AGENT);
    rc |= (int)curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)WEBHOOK_TIMEOUT_MS);
    rc |= (int)curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    rc |= (int)curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard_body);
    rc |= (int)curl_easy_setopt(e, CURLOPT_ERRORBUFFER, slot->error);
    rc |= (int)curl_easy_setopt(e, CURLOPT_PRIVATE, slot);
    return rc == CURLE_OK ? 0 : -1;
}

static void slot_release(wh_slot *slot)
{
    curl_slist_free_all(slot->headers);
    slot->headers = NULL;
    slot->ev = NULL;
    wh.st.in_flight--;
}

/* The end of an attempt: delivered, retried later, or failed. */
static void attempt_done(wh_event *ev, bool retryable, const char *why)
{
    if (ev->withdrawn) { /* recalled meanwhile: its text is not sent again */
        wh.st.pending--;
        wh.st.withdrawn++;
        free(ev);
        return;
    }
    if (retryable && ev->attempts < WEBHOOK_ATTEMPTS) {
        schedule_retry(ev);
        return;
    }
    wh.st.pending--;
    fail(ev, why);
}

static void start(wh_slot *slot, wh_event *ev)
{
    ev->attempts++;
    if (ev->attempts > 1)
        wh.st.retried++;
    slot->ev = ev;
    wh.st.in_flight++;
    if (request_setup(slot, ev) < 0) {
        slot_release(slot);
        attempt_done(ev, true, "out of memory");
        return;
    }
    CURLMcode mc = curl_multi_add_handle(wh.multi, slot->easy);
    if (mc != CURLM_OK) {
        slot_release(slot);
        attempt_done(ev, true, curl_multi_strerror(mc));
    }
}

/* Starts queued events while fewer than WEBHOOK_IN_FLIGHT run. */
static void dispatch(void)
{
    if (wh.closed)
        return;
    for (size_t i = 0; i < WEBHOOK_IN_FLIGHT && wh.ready_head; i++) {
        if (!wh.slots[i].ev)
            start(&wh.slots[i], ready_pop());
    }
}

static void finished(CURLMsg *msg)
{
    wh_slot *slot = NULL;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&slot);
    CURLcode res = msg->data.result;
    long code = 0;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &code);
    curl_multi_remove_handle(wh.multi, msg->easy_handle);
    wh_event *ev = slot->ev;
    char why[CURL_ERROR_SIZE + 64];
    if (res != CURLE_OK)
        snprintf(why, sizeof(why), "%s", slot->error[0] ? slot->error : curl_easy_strerror(res));
    else
        snprintf(why, sizeof(why), "the receiver answered %ld", code);
    slot_release(slot);
    if (res == CURLE_OK && code >= 200 && code < 300) {
        wh.st.delivered++;
        wh.st.pending--;
        free(ev);
        return;
    }
    /* a transport failure or an overloaded receiver may pass; a 4xx will not */
    attempt_done(ev, res != CURLE_OK || code >= 500 || code == 429, why);
}

static void abort_all(void);

static void check_multi_info(void)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(wh.multi, &left))) {
        if (msg->msg == CURLMSG_DONE)
            finished(msg);
    }
    dispatch();
    if (wh.stopping && wh.st.pending == 0)
        abort_all(); /* nothing left to wait for */
}

/* ---- libcurl <-> libuv ------------------------------------------------- */

static void socket_free_cb(uv_handle_t *h)
{
    free(h->data);
}

static void socket_close(wh_socket *ws)
{
    if (ws->prev)
        ws->prev->next = ws->next;
    else
        wh.sockets = ws->next;
    if (ws->next)
        ws->next->prev = ws->prev;
    uv_poll_stop(&ws->poll);
    uv_close((uv_handle_t *)&ws->poll, socket_free_cb);
}

static void poll_cb(uv_poll_t *h, int status, int events)
{
    wh_socket *ws = h->data;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    int running;
    curl_multi_socket_action(wh.multi, ws->fd, flags, &running);
    check_multi_info();
}

/* CURLMOPT_SOCKETFUNCTION: watch s for what (or stop). */
static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)easy;
    (void)userp;
    wh_socket *ws = socketp;
    if (wh.closed)
        return 0; /* abort_all closed the polls already */
    if (what == CURL_POLL_REMOVE) {
        if (ws) {
            curl_multi_assign(wh.multi, s, NULL);
            socket_close(ws);
        }
        return 0;
    }
    if (!ws) {
        ws = calloc(1, sizeof(*ws));
        if (!ws)
            return -1;
        if (uv_poll_init_socket(wh.loop, &ws->poll, s) != 0) {
            free(ws);
            return -1;
        }
        ws->fd = s;
        ws->poll.data = ws;
        ws->next = wh.sockets;
        if (wh.sockets)
            wh.sockets->prev = ws;
        wh.sockets = ws;
        curl_multi_assign(wh.multi, s, ws);
    }
    int events = 0;
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    uv_poll_start(&ws->poll, events, poll_cb);
    return 0;
}

static void curl_timer_cb(uv_timer_t *t)
{
    (void)t;
    int running;
    curl_multi_socket_action(wh.multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_multi_info();
}

/* CURLMOPT_TIMERFUNCTION: call back in timeout_ms (-1: never). A 0 waits
 * for the next loop iteration, as curl asks (not from inside this call). */
static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    (void)userp;
    if (wh.closed)
        return 0;
    if (timeout_ms < 0)
        uv_timer_stop(&wh.curl_timer);
    else
        uv_timer_start(&wh.curl_timer, curl_timer_cb, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ---- the cluster rule -------------------------------------------------- */

/* Another node's answer to gw.is_uid_online: [true] when it holds a
 * device of the uid (an error or null part says nothing). */
static bool part_says_online(json_t *part)
{
    return json_is_array(part) && json_is_true(json_array_get(part, 0));
}

/* An event waiting for the cluster's answer. */
typedef struct {
    char *body;
    int64_t message_id;
    bool recall;
} wh_pending;

static void ask_done(json_t *partials, bool complete, void *ctx)
{
    (void)complete; /* a silent node may be a dead one: notify */
    wh_pending *pe = ctx;
    char *body = pe->body;
    int64_t message_id = pe->message_id;
    bool recall = pe->recall;
    free(pe);
    bool online = false;
    size_t i;
    json_t *part;
    json_array_foreach(partials, i, part)
    {
        if (part_says_online(part))
            online = true;
    }
    json_decref(partials);
    if (online)
        free(body);
    else
        enqueue(body, message_id, recall);
}

/* Asks the nodes holding uid whether a device of it is connected. Only the
 * nodes subscribed to chatd:u:<uid> get the question. */
static void ask_cluster(const char *uid, size_t len, char *body, int64_t message_id, bool recall)
{
    json_t *q = json_pack("{s:[s#]}", "uid", uid, (int)len);
    wh_pending *pe = malloc(sizeof(*pe));
    cluster_call *cc = pe ? cluster_call_new("gw.is_uid_online", ask_done, pe) : NULL;
    if (!q || !cc || cluster_call_uid(cc, uid, len, q) < 0) {
        json_decref(q);
        if (cc)
            cluster_call_free(cc);
        free(pe);
        enqueue(body, message_id, recall);
        return;
    }
    json_decref(q);
    *pe = (wh_pending){body, message_id, recall};
    if (cluster_call_start(cc, ASK_TIMEOUT_MS) < 0) {
        /* the bus is down: other nodes got no push either (cluster_call_start
         * freed the call, not its context) */
        free(pe);
        enqueue(body, message_id, recall);
    }
}

/* Queues body (an event about message_id) when user to has no connected
 * device: here, then in the cluster. Takes body. */
static void notify_offline(int64_t to, char *body, int64_t message_id, bool recall)
{
    char uid[24];
    int n = snprintf(uid, sizeof(uid), "%lld", (long long)to);
    if (registry_find_uid(uid, (size_t)n)) {
        free(body); /* a device here got the push */
        return;
    }
    if (cluster_enabled())
        ask_cluster(uid, (size_t)n, body, message_id, recall);
    else
        enqueue(body, message_id, recall);
}

void webhook_message_stored(const json_t *message)
{
    if (!wh.enabled || !json_is_integer(json_object_get(message, "to_id")))
        return; /* off, or a group message (no to_id): groups wake nobody */
    if (json_is_true(json_object_get(message, "recalled")))
        return; /* a retried send of a recalled message: nothing to announce */
    int64_t to = json_integer_value(json_object_get(message, "to_id"));
    char uid[24];
    int n = snprintf(uid, sizeof(uid), "%lld", (long long)to);
    if (registry_find_uid(uid, (size_t)n))
        return; /* a device here got the push: no event built */
    char *body = webhook_event_json(message, (size_t)wh.cfg->webhook_preview);
    if (!body) {
        drop(NULL, "cannot build the event");
        return;
    }
    notify_offline(to, body, json_integer_value(json_object_get(message, "id")), false);
}

/* Takes the message events of message_id off the list at *head (the ready
 * queue or the retry list): freed and counted as withdrawn. Returns how
 * many of them had been attempted (their text may have reached the
 * receiver); *found how many there were. */
static int withdraw_from(wh_event **head, int64_t message_id, int *found)
{
    int attempted = 0;
    for (wh_event **p = head; *p;) {
        wh_event *ev = *p;
        if (ev->recall || ev->message_id != message_id) {
            p = &ev->next;
            continue;
        }
        *p = ev->next;
        if (head == &wh.ready_head && wh.ready_tail == ev) {
            wh.ready_tail = NULL; /* the new tail: the last one left, if any */
            for (wh_event *t = wh.ready_head; t; t = t->next)
                wh.ready_tail = t;
        }
        (*found)++;
        attempted += ev->attempts > 0;
        wh.st.pending--;
        wh.st.withdrawn++;
        free(ev);
    }
    return attempted;
}

/* Withdraws this node's events of message id (queued, backing off, or in
 * flight: never retried); *found and *attempted as withdraw_from. */
static void withdraw(int64_t id, int *found, int *attempted)
{
    if (wh.closed)
        return;
    *attempted += withdraw_from(&wh.ready_head, id, found);
    *attempted += withdraw_from(&wh.retry_head, id, found);
    if (!wh.retry_head)
        uv_timer_stop(&wh.retry_timer);
    for (size_t i = 0; i < WEBHOOK_IN_FLIGHT; i++) {
        wh_event *ev = wh.slots[i].ev;
        if (ev && !ev->recall && ev->message_id == id) {
            ev->withdrawn = true; /* may be delivered now, is never retried */
            (*found)++;
            (*attempted)++;
        }
    }
}

void webhook_withdraw_message(int64_t message_id)
{
    int found = 0, attempted = 0;
    if (wh.enabled)
        withdraw(message_id, &found, &attempted);
}

void webhook_message_recalled(const json_t *message, const json_t *notice)
{
    if (!wh.enabled || !json_is_integer(json_object_get(message, "to_id")))
        return;
    int64_t id = json_integer_value(json_object_get(message, "id"));
    int found = 0, attempted = 0;
    withdraw(id, &found, &attempted);
    /* Withdrawn here before any attempt: the receiver never saw the
     * message, so there is nothing to take back. Otherwise (attempted, or
     * an event another node queued, or one delivered already) the
     * receiver may show it: tell it. */
    if (found > 0 && attempted == 0)
        return;
    char *body = webhook_recall_json(message, notice);
    if (!body) {
        drop(NULL, "cannot build the event");
        return;
    }
    notify_offline(json_integer_value(json_object_get(message, "to_id")), body, id, true);
}

/* ---- start and stop ---------------------------------------------------- */

static int check_url(const char *url)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    int rc = -1;
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
        (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0)) {
        /* the path and query may hold a token: only scheme and host are logged */
        log_info("webhook: events for offline users go to %s://%s/... (queue %lld, preview %lld "
                 "characters%s)",
                 scheme, host, (long long)wh.cfg->webhook_queue, (long long)wh.cfg->webhook_preview,
                 wh.cfg->webhook_secret[0] ? ", signed" : "");
        rc = 0;
    } else {
        log_error("--webhook-url: expected an http:// or https:// URL");
    }
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return rc;
}

int webhook_init(uv_loop_t *loop, const config *cfg)
{
    if (!cfg->webhook_url || !cfg->webhook_url[0])
        return 0;
    memset(&wh, 0, sizeof(wh));
    wh.loop = loop;
    wh.cfg = cfg;
    if (sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        log_error("webhook: cannot initialize libcurl");
        return -1;
    }
    if (check_url(cfg->webhook_url) < 0)
        return -1;
    if (!cfg->webhook_secret[0])
        log_warn("webhook: --webhook-secret is empty: events are sent unsigned");
    curl_version_info_data *vi = curl_version_info(CURLVERSION_NOW);
    if (!(vi->features & CURL_VERSION_ASYNCHDNS))
        log_warn("webhook: this libcurl resolves names synchronously: use an IP address in "
                 "--webhook-url, or the loop waits for DNS");
    wh.multi = curl_multi_init();
    if (!wh.multi) {
        log_error("webhook: cannot initialize libcurl");
        return -1;
    }
    curl_multi_setopt(wh.multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(wh.multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    for (size_t i = 0; i < WEBHOOK_IN_FLIGHT; i++) {
        wh.slots[i].easy = curl_easy_init();
        if (!wh.slots[i].easy) {
            log_error("webhook: cannot initialize libcurl");
            return -1;
        }
    }
    uv_timer_init(loop, &wh.curl_timer);
    uv_timer_init(loop, &wh.retry_timer);
    uv_timer_init(loop, &wh.grace_timer);
    wh.enabled = true;
    return 0;
}

bool webhook_enabled(void)
{
    return wh.enabled;
}

static void drop_list(wh_event *ev)
{
    while (ev) {
        wh_event *next = ev->next;
        drop(ev, "shutting down");
        ev = next;
    }
}

/* Drops everything queued, frees libcurl's handles and closes ours. */
static void abort_all(void)
{
    if (!wh.enabled || wh.closed)
        return;
    uint64_t left = wh.st.pending;
    wh.closed = true; /* from here libcurl's callbacks do nothing */
    for (size_t i = 0; i < WEBHOOK_IN_FLIGHT; i++) {
        wh_slot *slot = &wh.slots[i];
        if (slot->ev) {
            curl_multi_remove_handle(wh.multi, slot->easy);
            wh_event *ev = slot->ev;
            slot_release(slot);
            drop(ev, "shutting down");
        }
        curl_easy_cleanup(slot->easy);
        slot->easy = NULL;
    }
    drop_list(wh.ready_head);
    drop_list(wh.retry_head);
    wh.ready_head = wh.ready_tail = wh.retry_head = NULL;
    wh.st.pending = 0;
    while (wh.sockets) /* before libcurl closes their descriptors */
        socket_close(wh.sockets);
    curl_multi_cleanup(wh.multi);
    wh.multi = NULL;
    uv_close((uv_handle_t *)&wh.curl_timer, NULL);
    uv_close((uv_handle_t *)&wh.retry_timer, NULL);
    uv_close((uv_handle_t *)&wh.grace_timer, NULL);
    if (left)
        log_warn("webhook: shutdown: %llu undelivered event(s) dropped", (unsigned long long)left);
}

static void grace_cb(uv_timer_t *t)
{
    (void)t;
    abort_all();
}

void webhook_stop(void)
{
    if (!wh.enabled || wh.stopping)
        return;
    wh.stopping = true;
    if (wh.st.pending == 0)
        abort_all();
    else
        uv_timer_start(&wh.grace_timer, grace_cb, WEBHOOK_GRACE_MS, 0);
}

bool webhook_busy(void)
{
    return wh.enabled && !wh.closed && wh.st.pending > 0;
}

void webhook_shutdown(void)
{
    if (!wh.enabled)
        return;
    wh.stopping = true;
    abort_all();
    curl_global_cleanup();
    wh.enabled = false;
}

void webhook_get_stats(webhook_stats *out)
{
    *out = wh.st;
}

json_t *webhook_health(void)
{
    if (!wh.enabled)
        return NULL;
    return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "queued", (json_int_t)wh.st.queued,
                     "delivered", (json_int_t)wh.st.delivered, "retried", (json_int_t)wh.st.retried,
                     "failed", (json_int_t)wh.st.failed, "dropped", (json_int_t)wh.st.dropped,
                     "withdrawn", (json_int_t)wh.st.withdrawn, "pending", (json_int_t)wh.st.pending,
                     "in_flight", (json_int_t)wh.st.in_flight);
}
