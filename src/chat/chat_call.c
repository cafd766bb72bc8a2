/* chat_call: the request plumbing of the chat service: a call over HTTP or
 * the socket, its answer or error, validation of fields and query
 * parameters, and pushes to a user's devices (see chat_internal.h). */
#include "chat/chat_internal.h"

#include <errno.h>
#include <sodium.h>
#include <fcntl.h>
#include <http_parser.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/admin.h"
#include "chat/auth.h"
#include "chat/names.h"
#include "chat/webhook.h"
#include "cluster/cluster.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/reload.h"
#include "core/ratelimit.h"
#include "gateway/gateway.h"
#include "gateway/registry.h"
#include "net/server.h"
#include "store/store.h"
#include "ws/ws.h"
#include "ws/ws_frame.h"

/* ---- calls ------------------------------------------------------------- */

void chat_call_free(chat_call *call)
{
    json_decref(call->body);
    json_decref(call->call_id);
    json_decref(call->user);
    free(call->token);
    if (call->password) {
        memset(call->password, 0, strlen(call->password));
        free(call->password);
    }
    free(call);
}

/* The socket a call came from, if it is still open. */
conn *chat_call_conn(chat_call *call)
{
    return call->client_id[0] ? registry_find(call->client_id, strlen(call->client_id)) : NULL;
}

/* Answers with an error and frees the call. */
void chat_call_fail(chat_call *call, int status, const char *code, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* a 5xx is our failure, never the client's: say what and where (an
     * unreachable database was logged once by the store, not per request) */
    if (status >= 500 && strcmp(code, "store_unavailable") != 0)
        log_error("chat: %s answered %d %s: %s", call->req ? call->req->path : call->op, status,
                  code, msg);
    if (call->req) {
        http_respond_error(call->req, status, code, "%s", msg);
    } else {
        conn *c = chat_call_conn(call);
        if (c) {
            json_t *extra = json_object();
            json_t *m = json_object_get(call->body, "message");
            json_t *cmid =
                call->call_id ? NULL : json_object_get(m ? m : call->body, "client_msg_id");
            if (cmid)
                json_object_set(extra, "client_msg_id", cmid);
            if (call->op)
                json_object_set_new(extra, "op", json_string(call->op));
            if (call->call_id)
                json_object_set(extra, "id", call->call_id);
            gateway_send_error(c, code, msg, extra);
            json_decref(extra);
        }
    }
    chat_call_free(call);
}

void chat_call_ok(chat_call *call, json_t *data)
{
    if (call->req) {
        http_respond_ok(call->req, data);
        chat_call_free(call);
        return;
    }
    conn *c = chat_call_conn(call);
    json_t *answer = json_object();
    if (c && answer) {
        json_object_set_new(answer, "type", json_string("result"));
        json_object_set(answer, "id", call->call_id ? call->call_id : json_null());
        json_object_set(answer, "data", data ? data : json_null());
        ws_send_json(c, answer);
    }
    json_decref(answer);
    json_decref(data);
    chat_call_free(call);
}

/* The store logged the database error itself (store_sqlite.c). */
void chat_store_failed(chat_call *call)
{
    chat_call_fail(call, 500, "internal", "storage failed; try again");
}

void chat_group_failed(chat_call *call, store_req *r)
{
    int status = r->status;
    int http = status == STORE_NOT_FOUND   ? 404
               : status == STORE_FORBIDDEN ? 403
               : status == STORE_CONFLICT  ? 409
                                           : 0;
    if (!http) {
        store_req_free(r);
        chat_store_failed(call);
        return;
    }
    const char *code = json_string_value(json_object_get(r->result, "code"));
    const char *msg = json_string_value(json_object_get(r->result, "message"));
    if (!code)
        code = http == 404 ? "not_found" : http == 403 ? "forbidden" : "conflict";
    if (!msg)
        msg = http == 404 ? "no such group or user" : "not allowed";
    char code_buf[40];
    snprintf(code_buf, sizeof(code_buf), "%s", code);
    chat_call_fail(call, http, code_buf, "%s", msg); /* msg is copied before r is freed */
    store_req_free(r);
}

json_t *chat_group_take_result(store_req *r)
{
    if (r->status != STORE_OK) {
        chat_group_failed(r->ctx, r);
        return NULL;
    }
    json_t *result = json_incref(r->result);
    store_req_free(r);
    return result;
}

void chat_respond_group_result(store_req *r)
{
    chat_call *call = r->ctx;
    json_t *result = chat_group_take_result(r);
    if (result)
        chat_call_ok(call, result);
}

/* Every store answer of a call passes here: STORE_UNAVAILABLE (the
 * database cannot be reached, or a commit's outcome is unknown) is answered
 * the same way for every operation, 503 store_unavailable (a socket send
 * gets an error frame with its client_msg_id; retrying it is safe). */
static void call_store_done(store_req *r)
{
    chat_call *call = r->ctx;
    if (r->status == STORE_UNAVAILABLE) {
        store_req_free(r);
        chat_call_fail(call, 503, "store_unavailable",
                       "the database cannot be reached right now; try again");
        return;
    }
    call->store_done(r);
}

store_req *chat_call_store_req(chat_call *call, store_op op, store_done_fn done)
{
    call->store_done = done;
    store_req *r = store_req_new(op, call_store_done, call);
    if (!r) {
        chat_call_fail(call, 500, "internal", "out of memory");
        return NULL;
    }
    r->user_id = call->uid;
    r->time = auth_now_ms();
    return r;
}

char *chat_uid_string(int64_t id, char *buf, size_t cap)
{
    snprintf(buf, cap, "%lld", (long long)id);
    return buf;
}

/* except_id: a device (client_id, on any node) that already knows, or NULL. */
void chat_push_to_user(int64_t user_id, const json_t *value, const char *except_id)
{
    char uid[24];
    chat_uid_string(user_id, uid, sizeof(uid));
    if (!registry_find_uid(uid, strlen(uid)) && !cluster_enabled())
        return;
    sbuf *frame = gateway_frame_json(value);
    if (!frame)
        return;
    metrics_push(METRICS_PUSH_NOTICE);
    gateway_push_to_uid(uid, strlen(uid), frame, except_id);
    sbuf_unref(frame);
}

/* One text frame from the concatenation of parts, built in place. */
sbuf *chat_frame_concat(const char *const *parts, size_t n)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += strlen(parts[i]);
    sbuf *frame = sbuf_new(WS_FRAME_HEADER_MAX + len);
    if (!frame)
        return NULL;
    size_t off = ws_frame_header_encode(frame->data, true, WS_OP_TEXT, len, NULL);
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(parts[i]);
        memcpy(frame->data + off, parts[i], l);
        off += l;
    }
    frame->len = (uint32_t)off;
    return frame;
}

/* Pushes {"type":"message","message":<text>} to every device of the
 * recipient and to the sender's devices but origin_id (a client_id or
 * NULL): one frame for all. */
void chat_push_message_text(const char *text, int64_t to_id, int64_t from_id, const char *origin_id)
{
    const conn *origin = origin_id ? registry_find(origin_id, strlen(origin_id)) : NULL;
    char to[24], from[24];
    chat_uid_string(to_id, to, sizeof(to));
    chat_uid_string(from_id, from, sizeof(from));
    uid_entry *a = registry_find_uid(to, strlen(to));
    uid_entry *b = registry_find_uid(from, strlen(from));
    if (!a && (!b || (b->count == 1 && b->conns == origin)) && !cluster_enabled())
        return; /* nobody to tell */
    const char *parts[] = {"{\"type\":\"message\",\"message\":", text, "}"};
    sbuf *frame = chat_frame_concat(parts, 3);
    if (!frame)
        return;
    metrics_push(METRICS_PUSH_MESSAGE);
    gateway_push_to_uid(to, strlen(to), frame, NULL);
    gateway_push_to_uid(from, strlen(from), frame, origin_id);
    sbuf_unref(frame);
}

void chat_push_message(const json_t *message, int64_t from_id, const char *origin_id)
{
    char *text = json_dumps(message, JSON_COMPACT);
    if (text)
        chat_push_message_text(text, json_integer_value(json_object_get(message, "to_id")), from_id,
                               origin_id);
    free(text);
}

int64_t chat_member_id(const json_t *v)
{
    if (json_is_object(v))
        v = json_object_get(v, "userid");
    return json_is_integer(v) ? json_integer_value(v) : 0;
}

/* The members' devices: only the sender's own device is skipped (so a
 * client_id the caller names can never silence another member's socket);
 * the others get the frame through one gateway_push_to_uids, which is one
 * bus publish in a cluster however many members there are. A member with
 * no socket here costs a hash lookup. */
static void push_frame_to_ids(sbuf *frame, const json_t *members, const int64_t *ids, size_t n,
                              int64_t sender, const char *origin_id, bool skip_sender)
{
    bool cluster = cluster_enabled();
    char(*names)[24] = malloc(n ? n * sizeof(*names) : 1);
    const char **uids = malloc(n ? n * sizeof(*uids) : 1);
    size_t *lens = malloc(n ? n * sizeof(*lens) : 1);
    size_t count = 0;
    bool sender_listed = false;
    for (size_t i = 0; names && uids && lens && i < n; i++) {
        int64_t id = members ? chat_member_id(json_array_get(members, i)) : ids[i];
        if (id <= 0)
            continue;
        if (id == sender) {
            sender_listed = true;
            continue;
        }
        chat_uid_string(id, names[count], sizeof(names[count]));
        size_t len = strlen(names[count]);
        if (!cluster && !registry_find_uid(names[count], len))
            continue;
        uids[count] = names[count];
        lens[count] = len;
        count++;
    }
    if (count)
        gateway_push_to_uids(uids, lens, count, frame);
    if (sender_listed && !skip_sender) {
        char uid[24];
        chat_uid_string(sender, uid, sizeof(uid));
        if (cluster || registry_find_uid(uid, strlen(uid)))
            gateway_push_to_uid(uid, strlen(uid), frame, origin_id);
    }
    free(names);
    free(uids);
    free(lens);
}

void chat_push_frame_to_members(sbuf *frame, const json_t *members, int64_t sender,
                                const char *origin_id, bool skip_sender)
{
    push_frame_to_ids(frame, members, NULL, json_array_size(members), sender, origin_id,
                      skip_sender);
}

void chat_push_frame_to_ids(sbuf *frame, const int64_t *ids, size_t n, int64_t sender,
                            const char *origin_id, bool skip_sender)
{
    push_frame_to_ids(frame, NULL, ids, n, sender, origin_id, skip_sender);
}

void chat_push_to_members(const char *text, const json_t *members, int64_t sender,
                          const char *origin_id)
{
    const char *parts[] = {"{\"type\":\"message\",\"message\":", text, "}"};
    sbuf *frame = chat_frame_concat(parts, 3);
    if (!frame)
        return;
    metrics_push(METRICS_PUSH_MESSAGE);
    chat_push_frame_to_members(frame, members, sender, origin_id, false);
    sbuf_unref(frame);
}

/* ---- validation -------------------------------------------------------- */

/* A string field within [min, max] bytes; answers 400 and returns NULL if not. */
const char *chat_want_string(chat_call *call, json_t *obj, const char *field, size_t min,
                             size_t max, bool required, bool *failed)
{
    json_t *v = json_object_get(obj, field);
    *failed = false;
    if (!v || json_is_null(v)) {
        if (required) {
            chat_call_fail(call, 400, "missing_field", "%s is required", field);
            *failed = true;
        }
        return NULL;
    }
    if (!json_is_string(v)) {
        chat_call_fail(call, 400, "bad_field", "%s must be a string", field);
        *failed = true;
        return NULL;
    }
    size_t len = json_string_length(v);
    if (len < min || len > max || strlen(json_string_value(v)) != len) {
        chat_call_fail(call, 400, "bad_field", "%s must be %zu to %zu bytes", field, min, max);
        *failed = true;
        return NULL;
    }
    return json_string_value(v);
}

int64_t chat_id_value(const json_t *v)
{
    long long id = 0;
    if (json_is_integer(v)) {
        id = json_integer_value(v);
    } else if (json_is_string(v)) {
        char *end;
        errno = 0;
        id = strtoll(json_string_value(v), &end, 10);
        if (*end || !json_string_length(v) || errno == ERANGE)
            id = 0;
    }
    return id > 0 ? id : 0;
}

/* A positive id given as a JSON integer or a decimal string. */
int64_t chat_want_id(chat_call *call, json_t *obj, const char *field, const char *what)
{
    json_t *v = json_object_get(obj, field);
    if (!v) {
        chat_call_fail(call, 400, "missing_field", "%s is required", field);
        return 0;
    }
    int64_t id = chat_id_value(v);
    if (id <= 0)
        chat_call_fail(call, 400, "bad_field", "%s must be %s (a positive integer)", field, what);
    return id;
}

int64_t chat_want_user_id(chat_call *call, json_t *obj, const char *field)
{
    return chat_want_id(call, obj, field, "a user id");
}

bool chat_want_self(chat_call *call)
{
    if (!call->req)
        return true; /* on the socket, the socket is the caller's device */
    bool failed;
    const char *self = chat_want_string(call, call->body, "client_id", 1, 64, false, &failed);
    if (failed)
        return false;
    if (self)
        snprintf(call->client_id, sizeof(call->client_id), "%s", self);
    return true;
}

bool chat_type_allowed(const char *type)
{
    size_t n = strlen(type);
    for (const char *p = chat_cfg->message_types; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && strncmp(p, type, n) == 0)
            return true;
        if (!end)
            break;
        p = end + 1;
    }
    return false;
}

/* The raw (still encoded) value of the first query parameter called name;
 * false when it is absent. http_query_param cannot tell an absent parameter
 * from a bad one, and a bad value must be refused, not replaced by a default. */
static bool query_raw(const http_request *req, const char *name, const char **val, size_t *len)
{
    size_t name_len = strlen(name);
    for (const char *p = req->query; *p;) {
        size_t n = strcspn(p, "&");
        const char *eq = memchr(p, '=', n);
        size_t key_len = eq ? (size_t)(eq - p) : n;
        if (key_len == name_len && memcmp(p, name, name_len) == 0) {
            *val = eq ? eq + 1 : p + n;
            *len = eq ? n - key_len - 1 : 0;
            return true;
        }
        if (!p[n])
            break;
        p += n + 1;
    }
    return false;
}

/* Decodes query parameter name into out: 1 when present and good, 0 when
 * absent, -1 after answering 400 when it is empty, badly escaped, holds a NUL
 * or is longer than cap - 1 bytes; what says what it must be. */
int chat_query_text(chat_call *call, const char *name, char *out, size_t cap, const char *what)
{
    const char *raw;
    size_t raw_len;
    if (!query_raw(call->req, name, &raw, &raw_len))
        return 0;
    int n = http_url_decode(raw, raw_len, out, cap, true);
    if (n <= 0 || strlen(out) != (size_t)n) {
        chat_call_fail(call, 400, "bad_field", "%s must be %s", name, what);
        return -1;
    }
    return 1;
}

/* An integer query parameter of decimal digits only: def when absent; -1
 * (after answering 400 naming it) when present and bad or out of range. */
int64_t chat_query_int(chat_call *call, const char *name, int64_t def, int64_t min, int64_t max)
{
    char what[80], buf[24]; /* 19 digits hold any int64 */
    snprintf(what, sizeof(what), "an integer from %lld to %lld", (long long)min, (long long)max);
    int r = chat_query_text(call, name, buf, sizeof(buf), what);
    if (r <= 0)
        return r == 0 ? def : -1;
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (strspn(buf, "0123456789") != strlen(buf) || *end || errno == ERANGE || v < min || v > max) {
        chat_call_fail(call, 400, "bad_field", "%s must be %s", name, what);
        return -1;
    }
    return v;
}
