/* store_pg_answer: result decoding: a statement's rows turned into its
 * request's status and result JSON (the shapes store.h gives). */
#include <stdlib.h>

#include "core/log.h"
#include "store/store_pg_internal.h"

static int64_t col_int(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? 0 : strtoll(PQgetvalue(res, row, col), NULL, 10);
}

static const char *col_text(const PGresult *res, int row, int col)
{
    return PQgetvalue(res, row, col); /* "" when NULL */
}

static const char *col_text_or_null(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

static bool col_bool(const PGresult *res, int row, int col)
{
    return !PQgetisnull(res, row, col) && PQgetvalue(res, row, col)[0] == 't';
}

static json_t *user_json(const PGresult *res, int row)
{
    return json_pack("{s:I, s:s, s:s}", "id", (json_int_t)col_int(res, row, 0), "username",
                     col_text(res, row, 1), "userpic", col_text(res, row, 2));
}

/* The last_seen others see (columns c: last_seen, c + 1: hide_last_seen):
 * null when hidden or never seen offline (0). */
static json_t *last_seen_json(const PGresult *res, int row, int c)
{
    int64_t t = col_int(res, row, c);
    return t > 0 && !col_bool(res, row, c + 1) ? json_integer(t) : json_null();
}

/* A user as others see it, with last_seen (columns 3..4). */
static json_t *peer_user_json(const PGresult *res, int row)
{
    json_t *u = user_json(res, row);
    if (u && json_object_set_new(u, "last_seen", last_seen_json(res, row, 3)) != 0) {
        json_decref(u);
        u = NULL;
    }
    return u;
}

static json_t *peers_json(const PGresult *res)
{
    json_t *peers = json_array();
    for (int i = 0, n = PQntuples(res); peers && i < n; i++) {
        if (!PQgetisnull(res, i, 2) &&
            json_array_append_new(peers, json_integer(col_int(res, i, 2))) != 0) {
            json_decref(peers);
            peers = NULL;
        }
    }
    return peers ? json_pack("{s:b, s:I, s:o}", "hide_last_seen", col_bool(res, 0, 0), "last_seen",
                             (json_int_t)col_int(res, 0, 1), "peers", peers)
                 : NULL;
}

static json_t *msg_base_json(const PGresult *res, int row, int c);

/* A message from the MSG_COLS_SEEN columns starting at c: a group's (to_id
 * 0) with group_id instead of to_id. */
static json_t *msg_json_at(const PGresult *res, int row, int c)
{
    json_t *m = msg_base_json(res, row, c);
    /* the extras of MSG_COLS_SEEN: recalled, width, height, hidden */
    if (store_msg_extras(m, col_bool(res, row, c + 11), col_int(res, row, c + 12),
                         col_int(res, row, c + 13)) != 0 ||
        (col_bool(res, row, c + 14) && store_msg_deleted(m) != 0)) {
        json_decref(m);
        return NULL;
    }
    return m;
}

static json_t *msg_base_json(const PGresult *res, int row, int c)
{
    if (col_int(res, row, c + 2) == 0)
        return json_pack(
            "{s:I, s:I, s:I, s:I, s:s, s:s, s:s, s:s, s:I, s:s?}", "id",
            (json_int_t)col_int(res, row, c), "seq", (json_int_t)col_int(res, row, c + 1),
            "group_id", (json_int_t)col_int(res, row, c + 10), "from_id",
            (json_int_t)col_int(res, row, c + 3), "from_username", col_text(res, row, c + 4),
            "from_userpic", col_text(res, row, c + 5), "type", col_text(res, row, c + 6), "data",
            col_text(res, row, c + 7), "time", (json_int_t)col_int(res, row, c + 8),
            "client_msg_id", col_text_or_null(res, row, c + 9));
    return json_pack(
        "{s:I, s:I, s:I, s:I, s:s, s:s, s:s, s:s, s:I, s:s?}", "id",
        (json_int_t)col_int(res, row, c), "seq", (json_int_t)col_int(res, row, c + 1), "to_id",
        (json_int_t)col_int(res, row, c + 2), "from_id", (json_int_t)col_int(res, row, c + 3),
        "from_username", col_text(res, row, c + 4), "from_userpic", col_text(res, row, c + 5),
        "type", col_text(res, row, c + 6), "data", col_text(res, row, c + 7), "time",
        (json_int_t)col_int(res, row, c + 8), "client_msg_id", col_text_or_null(res, row, c + 9));
}

static json_t *msg_json(const PGresult *res, int row)
{
    return msg_json_at(res, row, 0);
}

static json_t *rows_json(const PGresult *res, json_t *(*fn)(const PGresult *, int))
{
    json_t *arr = json_array();
    for (int i = 0, n = PQntuples(res); arr && i < n; i++) {
        if (json_array_append_new(arr, fn(res, i)) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    return arr;
}

static const char *role_name(int64_t role)
{
    return role == STORE_GROUP_ROLE_OWNER   ? "owner"
           : role == STORE_GROUP_ROLE_ADMIN ? "admin"
                                            : "member";
}

static json_t *chat_item_base_json(const PGresult *res, int i);

/* A row of ST_CHAT_LIST: column 0 says 1:1 (0) or group (1); 19.. the
 * last message's recalled, width, height and whether the user hid it. */
static json_t *chat_item_json(const PGresult *res, int i)
{
    json_t *it = chat_item_base_json(res, i);
    if (store_msg_extras(it, col_bool(res, i, 19), col_int(res, i, 20), col_int(res, i, 21)) != 0 ||
        (col_bool(res, i, 22) && store_msg_deleted(it) != 0)) {
        json_decref(it);
        return NULL;
    }
    return it;
}

static json_t *chat_item_base_json(const PGresult *res, int i)
{
    if (col_int(res, i, 0) == 1)
        return json_pack(
            "{s:s, s:I, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:s, s:b, s:s, s:I, s:b, "
            "s:b}",
            "chat_type", "group", "group_id", (json_int_t)col_int(res, i, 1), "name",
            col_text(res, i, 2), "avatar", col_text(res, i, 3), "type", col_text(res, i, 4), "data",
            col_text(res, i, 5), "time", (json_int_t)col_int(res, i, 6), "noreadnum",
            (json_int_t)col_int(res, i, 7), "last_message_id", (json_int_t)col_int(res, i, 8),
            "last_seq", (json_int_t)col_int(res, i, 9), "from_id", (json_int_t)col_int(res, i, 12),
            "from_username", col_text(res, i, 13), "muted", col_bool(res, i, 14), "role",
            role_name(col_int(res, i, 15)), "member_count", (json_int_t)col_int(res, i, 16),
            "dissolved", col_bool(res, i, 17), "left", col_bool(res, i, 18));
    return json_pack("{s:s, s:I, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:o, s:I}", "chat_type",
                     "single", "userid", (json_int_t)col_int(res, i, 1), "username",
                     col_text(res, i, 2), "userpic", col_text(res, i, 3), "type",
                     col_text(res, i, 4), "data", col_text(res, i, 5), "time",
                     (json_int_t)col_int(res, i, 6), "noreadnum", (json_int_t)col_int(res, i, 7),
                     "last_message_id", (json_int_t)col_int(res, i, 8), "last_seq",
                     (json_int_t)col_int(res, i, 9), "last_seen", last_seen_json(res, i, 10),
                     "from_id", (json_int_t)col_int(res, i, 12));
}

/* ST_UNREAD's rows -> {total, conversations, groups}; muted groups are
 * listed but left out of total. */
static json_t *unread_json(const PGresult *res)
{
    json_t *convs = json_array(), *groups = json_array();
    json_int_t total = 0;
    bool ok = convs && groups;
    for (int i = 0, n = PQntuples(res); ok && i < n; i++) {
        json_int_t id = (json_int_t)col_int(res, i, 1), num = (json_int_t)col_int(res, i, 2);
        bool muted = col_bool(res, i, 3);
        if (!muted)
            total += num;
        if (col_int(res, i, 0) == 1)
            ok = json_array_append_new(groups, json_pack("{s:I, s:I, s:b}", "group_id", id,
                                                         "noreadnum", num, "muted", muted)) == 0;
        else
            ok = json_array_append_new(
                     convs, json_pack("{s:I, s:I}", "userid", id, "noreadnum", num)) == 0;
    }
    if (!ok) {
        json_decref(convs);
        json_decref(groups);
        return NULL;
    }
    return json_pack("{s:I, s:o, s:o}", "total", total, "conversations", convs, "groups", groups);
}

/* An error of a group operation: {code, message}. */
static json_t *group_err(const char *code, const char *message)
{
    return json_pack("{s:s, s:s}", "code", code, "message", message);
}

/* The answer of a group function, (o_status, o_result JSON): status is
 * enum store_status's, result the JSON (the error's when not OK). */
static int answer_group(store_req *r, const PGresult *res)
{
    if (PQntuples(res) != 1 || PQgetisnull(res, 0, 1))
        return STORE_ERROR;
    int64_t st = col_int(res, 0, 0);
    if (st != STORE_OK && st != STORE_NOT_FOUND && st != STORE_CONFLICT && st != STORE_FORBIDDEN)
        return STORE_ERROR;
    json_error_t e;
    r->result = json_loads(col_text(res, 0, 1), 0, &e);
    if (!r->result) {
        log_error("store: group answer: %s", e.text);
        return STORE_ERROR;
    }
    return (int)st;
}

/* A duplicate send's message m gets the stored row's recalled, width and
 * height: the columns DUP_COLS (store_pg_stmt.c) from col. 0 or -1. */
static int dup_extras(json_t *m, const PGresult *res, int row, int col)
{
    if (PQnfields(res) < col + 3)
        return -1;
    return store_msg_extras(m, !PQgetisnull(res, row, col) && col_bool(res, row, col),
                            PQgetisnull(res, row, col + 1) ? 0 : col_int(res, row, col + 1),
                            PQgetisnull(res, row, col + 2) ? 0 : col_int(res, row, col + 2));
}

/* Turns row `row` of chatd_group_send_batch's answer into group send r's
 * outputs. Returns the status. */
int pg_answer_group_send(store_req *r, const PGresult *res, int row, group_members_seen *seen,
                         size_t *nseen)
{
    int64_t st = col_int(res, row, 1);
    json_error_t e;
    if (st != STORE_OK) {
        if (st != STORE_NOT_FOUND && st != STORE_CONFLICT && st != STORE_FORBIDDEN)
            return STORE_ERROR;
        r->result = json_loads(col_text(res, row, 7), 0, &e);
        return r->result ? (int)st : STORE_ERROR;
    }
    json_t *members = NULL;
    for (size_t i = 0; i < *nseen && !members; i++)
        if (seen[i].gid == r->group_id)
            members = seen[i].ids;
    if (!members && !PQgetisnull(res, row, 8)) {
        members = json_loads(col_text(res, row, 8), 0, &e);
        if (members) /* seen has a place for each send of the run */
            seen[(*nseen)++] = (group_members_seen){r->group_id, members};
    }
    if (!members)
        return STORE_ERROR;
    json_t *msg;
    r->duplicate = col_bool(res, row, 6);
    if (r->duplicate)
        msg = json_loads(col_text(res, row, 7), 0, &e);
    else
        msg = json_pack("{s:I, s:I, s:I, s:I, s:s, s:s, s:s, s:s, s:I, s:s?}", "id",
                        (json_int_t)col_int(res, row, 2), "seq", (json_int_t)col_int(res, row, 3),
                        "group_id", (json_int_t)r->group_id, "from_id", (json_int_t)r->user_id,
                        "from_username", col_text(res, row, 4), "from_userpic",
                        col_text(res, row, 5), "type", r->msg_type, "data", r->msg_data, "time",
                        (json_int_t)r->time, "client_msg_id", r->client_msg_id);
    /* a duplicate as stored (DUP_COLS from column 9), as SQLite's */
    if (msg && (r->duplicate ? dup_extras(msg, res, row, 9)
                             : store_msg_extras(msg, false, r->width, r->height)) != 0) {
        json_decref(msg);
        msg = NULL;
    }
    r->result = msg ? json_pack("{s:o, s:O}", "message", msg, "members", members) : NULL;
    return r->result ? STORE_OK : STORE_ERROR;
}

/* ST_GROUP_HISTORY's rows: (member, MSG_COLS or NULLs). */
static int answer_group_history(store_req *r, const PGresult *res)
{
    int n = PQntuples(res);
    if (n == 0) {
        r->result = group_err("not_found", "No such group.");
        return r->result ? STORE_NOT_FOUND : STORE_ERROR;
    }
    if (!col_bool(res, 0, 0)) {
        r->result = group_err("not_member", "You are not a member of this group.");
        return r->result ? STORE_FORBIDDEN : STORE_ERROR;
    }
    r->result = json_array();
    for (int i = 0; r->result && i < n; i++) {
        if (PQgetisnull(res, i, 1))
            continue;
        if (json_array_append_new(r->result, msg_json_at(res, i, 1)) != 0) {
            json_decref(r->result);
            r->result = NULL;
        }
    }
    return r->result ? STORE_OK : STORE_ERROR;
}

/* Rows (peer, last_seq, cursor, MSG_COLS or NULLs), grouped by
 * conversation -> {conversations: [{userid, messages, more}]}, cutting the
 * whole answer to limit messages: more says the conversation holds
 * messages past the last one given (or past the cursor, when none was). */
static json_t *cursors_json(const PGresult *res, int64_t limit)
{
    json_t *convs = json_array();
    bool ok = convs != NULL;
    int64_t taken = 0;
    int n = PQntuples(res);
    for (int i = 0; ok && i < n;) {
        if (PQgetisnull(res, i, 0)) { /* ST_SYNC_CURSORS_DEL's row when no conversation has news */
            i++;
            continue;
        }
        int64_t peer = col_int(res, i, 0), last_seq = col_int(res, i, 1);
        int64_t top = col_int(res, i, 2);
        json_t *msgs = json_array();
        ok = msgs != NULL;
        for (; ok && i < n && col_int(res, i, 0) == peer; i++) {
            if (PQgetisnull(res, i, 3) || (limit > 0 && taken >= limit))
                continue;
            ok = json_array_append_new(msgs, msg_json_at(res, i, 3)) == 0;
            top = col_int(res, i, 4);
            taken++;
        }
        /* a group is -(its id) */
        json_t *c = ok ? json_pack("{s:I, s:o, s:b}", peer < 0 ? "group_id" : "userid",
                                   (json_int_t)(peer < 0 ? -peer : peer), "messages", msgs, "more",
                                   top < last_seq)
                       : (json_decref(msgs), NULL); /* "o" took msgs, also on failure */
        ok = c && json_array_append_new(convs, c) == 0;
    }
    if (!ok) {
        json_decref(convs);
        return NULL;
    }
    return json_pack("{s:o}", "conversations", convs);
}

/* ST_SYNC_CURSORS_DEL's last column (on every row, so row 0): [[id,
 * cursor], ...] or NULL -> {message_ids, cursor, more}, at most
 * STORE_DELETED_PAGE ids. */
static json_t *deleted_json(const PGresult *res, int64_t after)
{
    int col = PQnfields(res) - 1;
    json_t *pairs = NULL;
    if (PQntuples(res) > 0 && !PQgetisnull(res, 0, col)) {
        json_error_t e;
        pairs = json_loads(col_text(res, 0, col), 0, &e);
        if (!json_is_array(pairs)) {
            json_decref(pairs);
            return NULL;
        }
    }
    json_t *ids = json_array();
    int64_t cursor = after;
    size_t i;
    json_t *pair;
    json_array_foreach(pairs, i, pair)
    {
        if (!ids || i == STORE_DELETED_PAGE)
            break;
        cursor = json_integer_value(json_array_get(pair, 1));
        if (json_array_append(ids, json_array_get(pair, 0)) != 0) {
            json_decref(ids);
            ids = NULL;
        }
    }
    bool more = json_array_size(pairs) > STORE_DELETED_PAGE;
    json_decref(pairs);
    return ids ? json_pack("{s:o, s:I, s:b}", "message_ids", ids, "cursor", (json_int_t)cursor,
                           "more", more)
               : NULL;
}

/* chatd_recall's rows: an error's (status, code, text), or the message and
 * the notice (id order: the notice is newer) from column 5 with the 1:1
 * peer (3) or the group's member ids (4). */
static int answer_recall(store_req *r, const PGresult *res)
{
    int n = PQntuples(res);
    if (n < 1 || n > 2)
        return STORE_ERROR;
    int64_t st = col_int(res, 0, 0);
    if (st != STORE_OK) {
        if (st != STORE_NOT_FOUND && st != STORE_CONFLICT && st != STORE_FORBIDDEN)
            return STORE_ERROR;
        r->result = group_err(col_text(res, 0, 1), col_text(res, 0, 2));
        return r->result ? (int)st : STORE_ERROR;
    }
    json_t *msg = msg_json_at(res, 0, 5);
    json_t *notice = n == 2 ? msg_json_at(res, 1, 5) : json_null();
    if (!msg || !notice) {
        json_decref(msg);
        json_decref(notice);
        return STORE_ERROR;
    }
    if (n == 1)
        r->result = json_pack("{s:o, s:o}", "message", msg, "notice", notice);
    else if (!PQgetisnull(res, 0, 4)) {
        json_error_t e;
        json_t *members = json_loads(col_text(res, 0, 4), 0, &e);
        r->result = members ? json_pack("{s:o, s:o, s:o}", "message", msg, "notice", notice,
                                        "members", members)
                            : NULL;
        if (!members) {
            json_decref(msg);
            json_decref(notice);
        }
    } else
        r->result = json_pack("{s:o, s:o, s:I}", "message", msg, "notice", notice, "peer_id",
                              (json_int_t)col_int(res, 0, 3));
    return r->result ? STORE_OK : STORE_ERROR;
}

/* Turns row `row` of chatd_send_batch's answer into send r's outputs.
 * Returns the status. */
int pg_answer_send(store_req *r, const PGresult *res, int row)
{
    if (col_int(res, row, 1) == 1)
        return STORE_NOT_FOUND;
    if (col_int(res, row, 1) != 0)
        return STORE_ERROR;
    r->duplicate = col_bool(res, row, 6);
    if (r->duplicate)
        r->result =
            json_pack("{s:I, s:I, s:I, s:I, s:s, s:s, s:s, s:s, s:I, s:s?}", "id",
                      (json_int_t)col_int(res, row, 2), "seq", (json_int_t)col_int(res, row, 3),
                      "to_id", (json_int_t)col_int(res, row, 7), "from_id", (json_int_t)r->user_id,
                      "from_username", col_text(res, row, 4), "from_userpic", col_text(res, row, 5),
                      "type", col_text(res, row, 8), "data", col_text(res, row, 9), "time",
                      (json_int_t)col_int(res, row, 10), "client_msg_id", r->client_msg_id);
    else
        r->result = json_pack(
            "{s:I, s:I, s:I, s:I, s:s, s:s, s:s, s:s, s:I, s:s?}", "id",
            (json_int_t)col_int(res, row, 2), "seq", (json_int_t)col_int(res, row, 3), "to_id",
            (json_int_t)r->peer_id, "from_id", (json_int_t)r->user_id, "from_username",
            col_text(res, row, 4), "from_userpic", col_text(res, row, 5), "type", r->msg_type,
            "data", r->msg_data, "time", (json_int_t)r->time, "client_msg_id", r->client_msg_id);
    if (r->result &&
        (r->duplicate ? dup_extras(r->result, res, row, 11)
                      : store_msg_extras(r->result, false, r->width, r->height)) != 0) {
        json_decref(r->result);
        r->result = NULL;
    }
    return r->result ? STORE_OK : STORE_ERROR;
}

/* Turns r's result into its outputs. Returns the status. */
int pg_answer(store_req *r, const PGresult *res)
{
    int n = PQntuples(res);
    switch (r->op) {
    case STORE_USER_CREATE:
        if (n == 0)
            return STORE_CONFLICT;
        r->result = json_pack("{s:I, s:s, s:s}", "id", (json_int_t)col_int(res, 0, 0), "username",
                              r->username, "userpic", r->userpic ? r->userpic : "");
        break;
    case STORE_USER_BY_NAME:
        if (n == 0)
            return STORE_NOT_FOUND;
        r->result = json_pack("{s:I, s:s, s:s, s:s?, s:b}", "id", (json_int_t)col_int(res, 0, 0),
                              "username", col_text(res, 0, 1), "userpic", col_text(res, 0, 2),
                              "password_hash", col_text_or_null(res, 0, 3), "disabled",
                              col_bool(res, 0, 4));
        break;
    case STORE_USER_BY_ID:
    case STORE_TOKEN_LOOKUP:
        if (n == 0)
            return STORE_NOT_FOUND;
        /* plus the token's expiry, so the token cache never outlives it */
        r->result = user_json(res, 0);
        if (r->result &&
            json_object_set_new(r->result, "expires", json_integer(col_int(res, 0, 3))) != 0) {
            json_decref(r->result);
            r->result = NULL;
        }
        break;
    case STORE_USER_EXTERNAL:
        if (n != 1)
            return STORE_ERROR;
        if (col_int(res, 0, 0) == 1)
            return STORE_NOT_FOUND;
        r->result = json_pack("{s:I, s:s, s:s}", "id", (json_int_t)col_int(res, 0, 1), "username",
                              col_text(res, 0, 2), "userpic", r->userpic ? r->userpic : "");
        break;
    case STORE_USER_SEARCH:
        r->result = rows_json(res, peer_user_json);
        break;
    case STORE_USER_LAST_SEEN:
        r->result = json_null();
        return n > 0 ? STORE_OK : STORE_NOT_FOUND;
    case STORE_USER_SETTINGS:
        if (n == 0)
            return STORE_NOT_FOUND;
        r->result = json_pack("{s:b}", "hide_last_seen", r->action ? 1 : 0);
        break;
    case STORE_PRESENCE_PEERS:
        if (n == 0)
            return STORE_NOT_FOUND;
        r->result = peers_json(res);
        break;
    case STORE_TOKEN_CREATE:
        if (n != 1)
            return STORE_ERROR;
        if (col_int(res, 0, 0) == 0)
            return STORE_NOT_FOUND;
        if (col_int(res, 0, 1) == 0)
            return STORE_CONFLICT;
        r->result = json_null();
        break;
    case STORE_TOKEN_DELETE:
        r->result = json_null();
        return n > 0 ? STORE_OK : STORE_NOT_FOUND;
    case STORE_JWT_REVOKE:
        r->result = json_null();
        break;
    case STORE_CHAT_LIST:
        r->result = rows_json(res, chat_item_json);
        break;
    case STORE_HISTORY:
    case STORE_SYNC:
        r->result = rows_json(res, msg_json);
        break;
    case STORE_SYNC_CURSORS:
        r->result = cursors_json(res, r->limit);
        if (r->result && r->want_deleted &&
            json_object_set_new(r->result, "deleted", deleted_json(res, r->deleted_after)) != 0) {
            json_decref(r->result);
            r->result = NULL;
        }
        break;
    case STORE_MESSAGE_RECALL:
        return answer_recall(r, res);
    case STORE_MESSAGE_DELETE: {
        if (n != 1)
            return STORE_ERROR;
        if (col_int(res, 0, 0) == 1)
            return STORE_NOT_FOUND;
        json_error_t e;
        json_t *ids = json_loads(col_text(res, 0, 1), 0, &e);
        r->result = ids ? json_pack("{s:o, s:I, s:b}", "message_ids", ids, "cursor",
                                    (json_int_t)col_int(res, 0, 2), "changed", col_bool(res, 0, 3))
                        : NULL;
        break;
    }
    case STORE_READ:
        if (n != 1)
            return STORE_ERROR;
        if (col_int(res, 0, 0) == 1)
            return STORE_NOT_FOUND;
        r->result =
            json_pack("{s:I, s:I, s:b}", "total", (json_int_t)col_int(res, 0, 1), "last_read_id",
                      (json_int_t)col_int(res, 0, 2), "changed", col_bool(res, 0, 3));
        break;
    case STORE_USER_ADMIN:
        if (n != 1)
            return STORE_ERROR;
        if (!col_bool(res, 0, 0))
            return STORE_NOT_FOUND;
        r->result = json_pack("{s:I, s:b}", "tokens_deleted", (json_int_t)col_int(res, 0, 1),
                              "disabled", r->action == STORE_ADMIN_DISABLE);
        break;
    case STORE_USER_PASSWORD:
        if (n != 1)
            return STORE_ERROR;
        if (!col_bool(res, 0, 0))
            return STORE_NOT_FOUND;
        r->result = json_pack("{s:I}", "tokens_deleted", (json_int_t)col_int(res, 0, 1));
        break;
    case STORE_USER_PROFILE:
        if (n == 0)
            return STORE_NOT_FOUND;
        r->result = user_json(res, 0);
        break;
    case STORE_TOKEN_PURGE:
        if (n != 1)
            return STORE_ERROR;
        r->result = json_pack("{s:I, s:I}", "tokens", (json_int_t)col_int(res, 0, 0), "jwts",
                              (json_int_t)col_int(res, 0, 1));
        break;
    case STORE_UNREAD:
        r->result = unread_json(res);
        break;
    case STORE_GROUP_HISTORY:
        return answer_group_history(r, res);
    case STORE_GROUP_CREATE:
    case STORE_GROUP_INFO:
    case STORE_GROUP_ADD:
    case STORE_GROUP_REMOVE:
    case STORE_GROUP_LEAVE:
    case STORE_GROUP_UPDATE:
    case STORE_GROUP_ROLE:
    case STORE_GROUP_DISSOLVE:
    case STORE_GROUP_MUTE:
    case STORE_GROUP_READ:
        return answer_group(r, res);
    default:
        return STORE_ERROR;
    }
    return r->result ? STORE_OK : STORE_ERROR;
}
