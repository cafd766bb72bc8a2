/* gateway: the /ws client protocol and push primitives (see gateway.h). */
#include "gateway/gateway.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "gateway/registry.h"
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

/* Converts a uid field (string or integer) into text; false when invalid. */
static bool uid_text(json_t *v, char *buf, size_t cap, const char **out, size_t *len)
{
    if (json_is_string(v)) {
        *out = json_string_value(v);
        *len = json_string_length(v);
    } else if (json_is_integer(v)) {
        int n = snprintf(buf, cap, "%lld", (long long)json_integer_value(v));
        *out = buf;
        *len = (size_t)n;
    } else {
        return false;
    }
    return *len > 0 && *len <= REGISTRY_NAME_MAX;
}

/* {"type":"event","to_id","data"} -> every device of to_id gets
 * {"type":"event","from_id","data"}: framed once, nothing stored. */
static void handle_event(conn *c, json_t *msg)
{
    if (!c->uid) {
        gateway_send_error(c, "not_bound", "bind this connection to a user before sending events",
                           NULL);
        return;
    }
    char buf[32];
    const char *to;
    size_t to_len;
    if (!uid_text(json_object_get(msg, "to_id"), buf, sizeof(buf), &to, &to_len)) {
        gateway_send_error(c, "bad_field",
                           "to_id must be a uid: a string of 1-128 bytes or an integer", NULL);
        return;
    }
    if (!event_allowed(c)) {
        gateway_send_error(c, "rate_limited", "too many events: slow down", NULL);
        return;
    }
    uid_entry *dest = registry_find_uid(to, to_len);
    if (!dest)
        return; /* offline: events are not queued */
    json_t *data = json_object_get(msg, "data");
    char *data_text = data ? json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_t *from = gateway_uid_json(c->uid->name, c->uid->len);
    char *from_text = json_dumps(from, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(from);
    if (!from_text) {
        free(data_text);
        return;
    }
    /* build the frame in place: header, then the payload text */
    static const char p1[] = "{\"type\":\"event\",\"from_id\":", p2[] = ",\"data\":";
    size_t from_len = strlen(from_text), dlen = data_text ? strlen(data_text) : 4;
    size_t payload_len = sizeof(p1) - 1 + from_len + sizeof(p2) - 1 + dlen + 1;
    sbuf *frame = sbuf_new(WS_FRAME_HEADER_MAX + payload_len);
    if (frame) {
        size_t n = ws_frame_header_encode(frame->data, true, WS_OP_TEXT, payload_len, NULL);
        uint8_t *p = frame->data + n;
        memcpy(p, p1, sizeof(p1) - 1), p += sizeof(p1) - 1;
        memcpy(p, from_text, from_len), p += from_len;
        memcpy(p, p2, sizeof(p2) - 1), p += sizeof(p2) - 1;
        memcpy(p, data_text ? data_text : "null", dlen), p += dlen;
        *p++ = '}';
        frame->len = (uint32_t)(p - frame->data);
        for (conn *r = dest->conns; r;) {
            conn *next = r->uid_next;
            gateway_send_to_conn(r, frame);
            r = next;
        }
        sbuf_unref(frame);
    }
    free(from_text);
    free(data_text);
}

/* ---- ws_app ------------------------------------------------------------ */

static void gw_on_open(conn *c)
{
    if (registry_add(c) < 0) {
        ws_close(c, WS_CLOSE_INTERNAL_ERROR, "out of resources");
        return;
    }
    c->rate_tokens = (uint32_t)(conn_server(c)->cfg->event_rate * 2);
    c->rate_stamp = (uint32_t)uv_now(conn_server(c)->loop);
    char init[64];
    int n = snprintf(init, sizeof(init), "{\"type\":\"init\",\"client_id\":\"%s\"}", c->client_id);
    ws_send_text(c, init, (size_t)n);
}

static void gw_on_message(conn *c, bool is_text, uint8_t *data, size_t len)
{
    if (!is_text) {
        ws_close(c, WS_CLOSE_UNSUPPORTED, "binary messages are not accepted on this endpoint");
        return;
    }
    json_error_t err;
    json_t *msg = json_loadb((const char *)data, len, 0, &err);
    if (!msg || !json_is_object(msg)) {
        gateway_send_error(c, "bad_json", "message must be a JSON object with a \"type\"", NULL);
        json_decref(msg);
        return;
    }
    json_t *jtype = json_object_get(msg, "type");
    const char *type = json_string_value(jtype);
    if (!type) {
        gateway_send_error(c, jtype ? "bad_field" : "missing_field",
                           jtype ? "type must be a string" : "type is required", NULL);
    } else if (strcmp(type, "ping") == 0) {
        if (!pong_frame)
            pong_frame = gateway_frame_text("{\"type\":\"pong\"}", 15);
        gateway_send_to_conn(c, pong_frame);
    } else if (strcmp(type, "event") == 0) {
        handle_event(c, msg);
    } else if (!message_hook || !message_hook(c, type, msg)) {
        gateway_send_error(c, "unknown_type", "unknown message type", NULL);
    }
    json_decref(msg);
}

static void gw_on_close(conn *c)
{
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
}
