/* gateway: the /ws client protocol and push primitives (see gateway.h). */
#include "gateway/gateway.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster.h"
#include "core/json_scan.h"
#include "core/log.h"
#include "core/metrics.h"
#include "gateway/registry.h"
#include "gwcompat/gw.h"
#include "net/server.h"
#include "ws/ws.h"
#include "ws/ws_frame.h"

static gateway_message_hook message_hook;
static sbuf *pong_frame; /* {"type":"pong"}, framed once for everyone */

void gateway_set_message_hook(gateway_message_hook hook)
{
    message_hook = hook;
}

sbuf *gateway_frame_text(const char *text, size_t len)
{
    return ws_frame_build(WS_OP_TEXT, text, len);
}

sbuf *gateway_frame_json(const json_t *value)
{
    char *text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text)
        return NULL;
    sbuf *frame = ws_frame_build(WS_OP_TEXT, text, strlen(text));
    free(text);
    return frame;
}

size_t gateway_send_to_conn(conn *c, sbuf *frame)
{
    return ws_send_frame(c, frame) == 0 ? 1 : 0;
}

size_t gateway_send_to_uid(const char *uid, size_t len, sbuf *frame, const conn *except)
{
    uid_entry *e = registry_find_uid(uid, len);
    size_t sent = 0;
    for (conn *c = e ? e->conns : NULL; c;) {
        conn *next = c->uid_next; /* a send may close c */
        if (c != except)
            sent += gateway_send_to_conn(c, frame);
        c = next;
    }
    return sent;
}

/* The message text inside a frame built here (one unmasked text frame). */
static const char *frame_payload(const sbuf *frame, size_t *len)
{
    ws_frame_header h;
    uint16_t code;
    ws_frame_parse_header(frame->data, frame->len, false, UINT64_MAX, &h, &code);
    *len = (size_t)h.payload_len;
    return (const char *)frame->data + h.header_len;
}

size_t gateway_push_to_uid(const char *uid, size_t len, sbuf *frame, const char *except_id)
{
    size_t except_len = except_id ? strlen(except_id) : 0;
    conn *except = except_id ? registry_find(except_id, except_len) : NULL;
    size_t sent = gateway_send_to_uid(uid, len, frame, except);
    if (cluster_enabled()) {
        size_t plen;
        const char *payload = frame_payload(frame, &plen);
        /* an except_id of this node is skipped here already */
        cluster_push_uid(uid, len, except ? NULL : except_id, payload, plen);
    }
    return sent;
}

/* A push from another node: framed once here for every local connection. */
static void deliver_remote_push(const char *uid, size_t uid_len, const char *except_id,
                                const char *payload, size_t len)
{
    if (!registry_find_uid(uid, uid_len))
        return; /* its last connection here closed since */
    metrics_push(METRICS_PUSH_REMOTE);
    sbuf *frame = gateway_frame_text(payload, len);
    if (!frame)
        return;
    conn *except = except_id ? registry_find(except_id, strlen(except_id)) : NULL;
    gateway_send_to_uid(uid, uid_len, frame, except);
    sbuf_unref(frame);
}

size_t gateway_send_to_group(const char *group, size_t len, sbuf *frame)
{
    group_entry *g = registry_find_group(group, len);
    size_t sent = 0;
    for (group_link *m = g ? g->members : NULL; m;) {
        group_link *next = m->g_next;
        if (!(m->conn->flags & CONN_EXCLUDED))
            sent += gateway_send_to_conn(m->conn, frame);
        m = next;
    }
    return sent;
}

static void send_all_one(conn *c, void *arg)
{
    void **a = arg;
    if (!(c->flags & CONN_EXCLUDED))
        *(size_t *)a[1] += gateway_send_to_conn(c, a[0]);
}

size_t gateway_send_to_all(sbuf *frame)
{
    size_t sent = 0;
    void *arg[2] = {frame, &sent};
    registry_foreach(send_all_one, arg);
    return sent;
}

void gateway_exclude_mark(conn *c, bool excluded)
{
    if (excluded)
        c->flags |= CONN_EXCLUDED;
    else
        c->flags &= ~CONN_EXCLUDED;
}

void gateway_send_error(conn *c, const char *code, const char *msg, json_t *extra)
{
    json_t *o = json_pack("{s:s,s:s,s:s}", "type", "error", "code", code, "msg", msg);
    if (!o)
        return;
    if (extra)
        json_object_update(o, extra);
    ws_send_json(c, o);
    json_decref(o);
}

json_t *gateway_uid_json(const char *uid, size_t len)
{
    /* canonical decimal: no sign, no leading zero, fits in 18 digits */
    bool numeric = len > 0 && len <= 18 && !(uid[0] == '0' && len > 1);
    for (size_t i = 0; numeric && i < len; i++)
        numeric = uid[i] >= '0' && uid[i] <= '9';
    if (numeric)
        return json_integer(strtoll(uid, NULL, 10));
    return json_stringn(uid, len);
}

/* ---- bind nonce -------------------------------------------------------- */

static uint8_t nonce_key[32];
static bool nonce_key_ready;

int gateway_bind_nonce(const char *client_id, size_t len, char out[GATEWAY_BIND_NONCE_LEN + 1])
{
    if (!nonce_key_ready) {
        if (RAND_bytes(nonce_key, sizeof(nonce_key)) != 1)
            return -1;
        nonce_key_ready = true;
    }
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    if (!HMAC(EVP_sha256(), nonce_key, sizeof(nonce_key), (const uint8_t *)client_id, len, mac,
              &mac_len))
        return -1;
    /* 16 bytes -> 24 base64 characters ending in "=="; base64url without padding is 22 */
    char b64[25];
    EVP_EncodeBlock((unsigned char *)b64, mac, 16);
    for (int i = 0; i < GATEWAY_BIND_NONCE_LEN; i++)
        out[i] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : b64[i];
    out[GATEWAY_BIND_NONCE_LEN] = '\0';
    return 0;
}

bool gateway_bind_nonce_ok(const char *client_id, size_t id_len, const char *nonce, size_t len)
{
    char want[GATEWAY_BIND_NONCE_LEN + 1];
    if (len != GATEWAY_BIND_NONCE_LEN || !nonce_key_ready ||
        gateway_bind_nonce(client_id, id_len, want) < 0)
        return false;
    return CRYPTO_memcmp(want, nonce, GATEWAY_BIND_NONCE_LEN) == 0;
}

/* ---- transient events -------------------------------------------------- */

/* Token bucket: --event-rate per second, bursts of twice that. */
static bool event_allowed(conn *c)
{
    server *srv = conn_server(c);
    int64_t rate = srv->cfg->event_rate;
    if (rate == 0)
        return true;
    uint32_t now = (uint32_t)uv_now(srv->loop);
    uint32_t burst = (uint32_t)(rate * 2);
    uint64_t add = (uint64_t)(now - c->rate_stamp) * (uint64_t)rate / 1000;
    if (add > 0) {
        c->rate_tokens = (uint32_t)((c->rate_tokens + add > burst) ? burst : c->rate_tokens + add);
        c->rate_stamp = now;
    }
    if (c->rate_tokens == 0)
        return false;
    c->rate_tokens--;
    return true;
}

/* The recipient uid of an event: an unescaped string of 1-128 bytes or an
 * integer, as its text. Escaped strings are rare enough to be decoded by
 * jansson. False when the field is missing or of another type. */
static bool event_target(const json_span *to, char *buf, size_t cap, const char **out, size_t *len)
{
    if (to->type == JSON_SPAN_STRING && to->escaped) {
        json_t *s = json_loadb(to->p - 1, to->len + 2, JSON_DECODE_ANY, NULL);
        bool ok = json_is_string(s) && json_string_length(s) < cap &&
                  strlen(json_string_value(s)) == json_string_length(s);
        if (ok) {
            *len = json_string_length(s);
            memcpy(buf, json_string_value(s), *len);
            *out = buf;
        }
        json_decref(s);
        return ok && *len > 0 && *len <= REGISTRY_NAME_MAX;
    }
    if (to->type != JSON_SPAN_STRING && !(to->type == JSON_SPAN_NUMBER && to->integer))
        return false;
    *out = to->p;
    *len = to->len;
    return *len > 0 && *len <= REGISTRY_NAME_MAX;
}

/* {"type":"event","to_id","data"} -> every device of to_id gets
 * {"type":"event","from_id","data"}: "data" is copied as it arrived, the
 * frame is built once, nothing is stored. */
static void handle_event(conn *c, const json_span *to, const json_span *data)
{
    if (!c->uid) {
        gateway_send_error(c, "not_bound", "bind this connection to a user before sending events",
                           NULL);
        return;
    }
    char buf[REGISTRY_NAME_MAX + 1];
    const char *uid;
    size_t uid_len;
    if (!event_target(to, buf, sizeof(buf), &uid, &uid_len)) {
        gateway_send_error(c, "bad_field",
                           "to_id must be a uid: a string of 1-128 bytes or an integer", NULL);
        return;
    }
    if (!event_allowed(c)) {
        metrics_limit_refused(METRICS_LIMIT_EVENT);
        gateway_send_error(c, "rate_limited", "too many events: slow down", NULL);
        return;
    }
    uid_entry *dest = registry_find_uid(uid, uid_len);
    if (!dest && !cluster_enabled())
        return; /* offline: events are not queued */
    static const char p1[] = "{\"type\":\"event\",\"from_id\":", p2[] = ",\"data\":";
    const char *dtext = data->type ? data->p : "null";
    size_t dlen = data->type ? data->len : 4;
    if (data->type == JSON_SPAN_STRING) { /* the span excludes the quotes */
        dtext--;
        dlen += 2;
    }
    size_t payload_len = sizeof(p1) - 1 + c->uid->json_len + sizeof(p2) - 1 + dlen + 1;
    sbuf *frame = sbuf_new(WS_FRAME_HEADER_MAX + payload_len);
    if (!frame)
        return;
    size_t n = ws_frame_header_encode(frame->data, true, WS_OP_TEXT, payload_len, NULL);
    uint8_t *p = frame->data + n;
    memcpy(p, p1, sizeof(p1) - 1);
    p += sizeof(p1) - 1;
    memcpy(p, c->uid->json, c->uid->json_len);
    p += c->uid->json_len;
    memcpy(p, p2, sizeof(p2) - 1);
    p += sizeof(p2) - 1;
    memcpy(p, dtext, dlen);
    p += dlen;
    *p++ = '}';
    frame->len = (uint32_t)(p - frame->data);
    metrics_push(METRICS_PUSH_EVENT);
    gateway_push_to_uid(uid, uid_len, frame, NULL);
    sbuf_unref(frame);
}

/* ---- ws_app ------------------------------------------------------------ */

static void gw_on_open(conn *c, http_request *req)
{
    if (registry_add(c) < 0) {
        ws_close(c, WS_CLOSE_INTERNAL_ERROR, "out of resources");
        return;
    }
    c->rate_tokens = (uint32_t)(conn_server(c)->cfg->event_rate * 2);
    c->rate_stamp = (uint32_t)uv_now(conn_server(c)->loop);
    char nonce[GATEWAY_BIND_NONCE_LEN + 1];
    if (gateway_bind_nonce(c->client_id, strlen(c->client_id), nonce) < 0) {
        ws_close(c, WS_CLOSE_INTERNAL_ERROR, "out of resources");
        return;
    }
    char init[96];
    int n = snprintf(init, sizeof(init),
                     "{\"type\":\"init\",\"client_id\":\"%s\",\"bind_nonce\":\"%s\"}", c->client_id,
                     nonce);
    ws_send_text(c, init, (size_t)n);
    gw_client_opened(c, req); /* BusinessWorkers hear of it (GatewayWorker mode) */
}

/* {"type":"event","group_id",...}: counted against --event-rate as a 1:1
 * event, then handed to the chat service, which knows the members. */
static void handle_group_event(conn *c, const uint8_t *data, size_t len)
{
    if (!c->uid) {
        gateway_send_error(c, "not_bound", "bind this connection to a user before sending events",
                           NULL);
        return;
    }
    if (!event_allowed(c)) {
        metrics_limit_refused(METRICS_LIMIT_EVENT);
        gateway_send_error(c, "rate_limited", "too many events: slow down", NULL);
        return;
    }
    json_t *msg = json_loadb((const char *)data, len, 0, NULL);
    if (!msg)
        gateway_send_error(c, "bad_json", "message must be a JSON object with a \"type\"", NULL);
    else if (!message_hook || !message_hook(c, "event", msg))
        gateway_send_error(c, "unknown_type", "group events need the chat service", NULL);
    json_decref(msg);
}

/* Every client message is scanned once without building a tree; ping and
 * event, the hot ones, are answered from the scan (a group event goes on to
 * the chat service). Other types (the chat service's) are parsed with
 * jansson and handed to the hook. */
static void gw_on_message(conn *c, bool is_text, uint8_t *data, size_t len)
{
    static const char *const keys[] = {"type", "to_id", "data", "group_id"};
    json_span v[4];
    if (gw_client_message(c, data, len))
        return; /* a BusinessWorker's: its Events.php interprets it */
    if (!is_text) {
        ws_close(c, WS_CLOSE_UNSUPPORTED, "binary messages are not accepted on this endpoint");
        return;
    }
    if (json_scan_object((const char *)data, len, keys, v, 4) < 0) {
        gateway_send_error(c, "bad_json", "message must be a JSON object with a \"type\"", NULL);
        return;
    }
    if (v[0].type != JSON_SPAN_STRING) {
        gateway_send_error(c, v[0].type ? "bad_field" : "missing_field",
                           v[0].type ? "type must be a string" : "type is required", NULL);
        return;
    }
    if (json_span_equals(&v[0], "ping")) {
        if (!pong_frame)
            pong_frame = gateway_frame_text("{\"type\":\"pong\"}", 15);
        gateway_send_to_conn(c, pong_frame);
        return;
    }
    if (json_span_equals(&v[0], "event")) {
        if (v[3].type && v[1].type)
            gateway_send_error(c, "bad_field", "give to_id or group_id, not both", NULL);
        else if (v[3].type)
            handle_group_event(c, data, len);
        else
            handle_event(c, &v[1], &v[2]);
        return;
    }
    json_t *msg = json_loadb((const char *)data, len, 0, NULL);
    const char *type = json_string_value(json_object_get(msg, "type"));
    if (!msg || !type) /* valid JSON that jansson refuses, e.g. \u0000 in a key */
        gateway_send_error(c, "bad_json", "message must be a JSON object with a \"type\"", NULL);
    else if (!message_hook || !message_hook(c, type, msg))
        gateway_send_error(c, "unknown_type", "unknown message type", NULL);
    json_decref(msg);
}

static void gw_on_close(conn *c)
{
    gw_client_closed(c);
    registry_remove(c);
}

static const ws_app gateway_app = {
    .on_open = gw_on_open,
    .on_message = gw_on_message,
    .on_close = gw_on_close,
};

void gateway_init(void)
{
    ws_set_app(&gateway_app);
    cluster_set_push_handler(deliver_remote_push);
}
