/* store_sqlite_recall: recall and delete-for-me in the SQLite backend
 * (store.h STORE_MESSAGE_RECALL, STORE_MESSAGE_DELETE; migration 9), 1:1
 * and group alike. See store_sqlite_internal.h. */
#include "store/store_sqlite_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What a recall or a delete needs of a message. */
typedef struct {
    int64_t from, to, lo, hi, time, seq;
    bool recalled;
    char type[40];
} msg_row;

static int msg_load(sq *b, int64_t id, msg_row *m)
{
    memset(m, 0, sizeof(*m));
    sqlite3_stmt *st = sq_prep(b, ST_MSG_GET);
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        m->from = sqlite3_column_int64(st, 0);
        m->to = sqlite3_column_int64(st, 1);
        m->lo = sqlite3_column_int64(st, 2);
        m->hi = sqlite3_column_int64(st, 3);
        snprintf(m->type, sizeof(m->type), "%s", sq_col_text(st, 4));
        m->time = sqlite3_column_int64(st, 5);
        m->recalled = sqlite3_column_int(st, 6) != 0;
        m->seq = sqlite3_column_int64(st, 7);
    }
    sqlite3_reset(st);
    if (rc == SQLITE_DONE)
        return STORE_NOT_FOUND;
    return rc == SQLITE_ROW ? STORE_OK : sq_db_fail(b, "message lookup");
}

/* Whether user may see m: a side of a 1:1 message, or a group member whose
 * range holds it (*current, *dissolved then as sq_group_access). */
static int msg_access(sq *b, const msg_row *m, int64_t user, bool *sees, bool *current,
                      bool *dissolved)
{
    if (m->lo != 0) {
        *sees = m->from == user || m->to == user;
        *current = true;
        *dissolved = false;
        return STORE_OK;
    }
    return sq_group_access(b, m->hi, user, m->seq, sees, current, dissolved);
}

static int recall_err(store_req *r, int status, const char *code, const char *message)
{
    json_decref(r->result);
    r->result = json_pack("{s:s, s:s}", "code", code, "message", message);
    return r->result ? status : STORE_ERROR;
}

/* The message as user now sees it. */
static json_t *msg_as_seen(sq *b, int64_t id, int64_t user)
{
    sqlite3_stmt *st = sq_prep(b, ST_MSG_BY_ID);
    sqlite3_bind_int64(st, 1, id);
    json_t *rows = sq_rows_json(b, st, sq_msg_json);
    if (!rows || json_array_size(rows) != 1 || sq_mark_hidden(b, user, rows, "id") != 0) {
        json_decref(rows);
        return NULL;
    }
    json_t *m = json_incref(json_array_get(rows, 0));
    json_decref(rows);
    return m;
}

/* The 1:1 notice: a send of type "recall", which counts no unread
 * (sq_op_message_send), from the recaller to the other side. */
static int post_1to1_notice(sq *b, store_req *r, const msg_row *m, const char *data,
                            json_t **notice)
{
    r->peer_id = m->to;
    if (store_req_set_str(&r->msg_type, "recall") < 0 || store_req_set_str(&r->msg_data, data) < 0)
        return STORE_ERROR;
    store_req_set_str(&r->client_msg_id, NULL);
    r->width = r->height = 0;
    json_t *saved = r->result;
    r->result = NULL;
    int status = sq_op_message_send(b, r);
    *notice = r->result;
    r->result = saved;
    return status == STORE_NOT_FOUND ? sq_db_fail(b, "recall notice peer vanished") : status;
}

/* A recall of a recalled message (a retry whose first attempt committed
 * but was never answered): the message and its notice as stored, with the
 * peer or the members, so the notice is pushed again (at least once, as a
 * retried send). notice null only if the notice cannot be found. */
static int recall_again(sq *b, store_req *r, const msg_row *m)
{
    char data[48];
    snprintf(data, sizeof(data), "{\"message_id\":%lld}", (long long)r->message_id);
    sqlite3_stmt *st = sq_prep(b, ST_RECALL_NOTICE);
    sqlite3_bind_int64(st, 1, m->lo);
    sqlite3_bind_int64(st, 2, m->hi);
    sqlite3_bind_int64(st, 3, m->seq);
    sqlite3_bind_text(st, 4, data, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    int64_t notice_id = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sq_db_fail(b, "recall notice lookup");
    json_t *msg = msg_as_seen(b, r->message_id, r->user_id);
    json_t *notice = notice_id ? msg_as_seen(b, notice_id, r->user_id) : NULL;
    if (!msg || (notice_id && !notice)) {
        json_decref(msg);
        json_decref(notice);
        return STORE_ERROR;
    }
    if (!notice)
        r->result = json_pack("{s:o, s:n}", "message", msg, "notice");
    else if (m->lo == 0) {
        json_t *members = sq_group_member_ids(b, m->hi);
        r->result = members ? json_pack("{s:o, s:o, s:o}", "message", msg, "notice", notice,
                                        "members", members)
                            : (json_decref(msg), json_decref(notice), NULL);
    } else
        r->result = json_pack("{s:o, s:o, s:I}", "message", msg, "notice", notice, "peer_id",
                              (json_int_t)m->to);
    return r->result ? STORE_OK : STORE_ERROR;
}

int sq_op_message_recall(sq *b, store_req *r)
{
    msg_row m;
    int status = msg_load(b, r->message_id, &m);
    if (status == STORE_NOT_FOUND)
        return recall_err(r, STORE_NOT_FOUND, "not_found", "No such message.");
    if (status != STORE_OK)
        return status;
    bool group = m.lo == 0, sees, current, dissolved;
    if (msg_access(b, &m, r->user_id, &sees, &current, &dissolved) != STORE_OK)
        return STORE_ERROR;
    if (!sees)
        return recall_err(r, STORE_NOT_FOUND, "not_found", "No such message.");
    if (m.from != r->user_id)
        return recall_err(r, STORE_FORBIDDEN, "forbidden", "Only its sender may recall a message.");
    if (strcmp(m.type, "system") == 0 || strcmp(m.type, "recall") == 0)
        return recall_err(r, STORE_FORBIDDEN, "forbidden",
                          "System messages and recall notices cannot be recalled.");
    if (!current)
        return recall_err(r, STORE_FORBIDDEN, "not_member", "You are not a member of this group.");
    if (m.recalled) /* nothing written; the notice answered and pushed again */
        return recall_again(b, r, &m);
    if (dissolved)
        return recall_err(r, STORE_CONFLICT, "group_dissolved", "The group was dissolved.");
    if (r->time > m.time + r->recall_window)
        return recall_err(r, STORE_CONFLICT, "recall_window_passed",
                          "The time to recall this message has passed.");

    /* From here on a failure is STORE_ERROR: the pass rolls back. */
    sqlite3_stmt *st = sq_prep(b, ST_MSG_RECALL);
    sqlite3_bind_int64(st, 1, r->message_id);
    if (sq_exec_stmt(st) != SQLITE_DONE)
        return sq_db_fail(b, "message recall");
    char data[48];
    snprintf(data, sizeof(data), "{\"message_id\":%lld}", (long long)r->message_id);
    json_t *notice = NULL, *members = NULL;
    if (group) {
        status = sq_group_post_notice(b, r, m.hi, data, &notice, &members);
    } else {
        status = post_1to1_notice(b, r, &m, data, &notice);
        /* the recipient's count loses the message if it was unread */
        st = sq_prep(b, ST_CONV_UNCOUNT);
        sqlite3_bind_int64(st, 1, m.to);
        sqlite3_bind_int64(st, 2, m.from);
        sqlite3_bind_int64(st, 3, r->message_id);
        if (status == STORE_OK && sq_exec_stmt(st) != SQLITE_DONE)
            status = sq_db_fail(b, "recall unread");
    }
    json_t *msg = status == STORE_OK ? msg_as_seen(b, r->message_id, r->user_id) : NULL;
    if (status == STORE_OK && msg && notice) {
        r->result = group ? json_pack("{s:o, s:o, s:o}", "message", msg, "notice", notice,
                                      "members", members)
                          : json_pack("{s:o, s:o, s:I}", "message", msg, "notice", notice,
                                      "peer_id", (json_int_t)m.to);
        if (r->result)
            return STORE_OK;
        return STORE_ERROR;
    }
    json_decref(msg);
    json_decref(notice);
    json_decref(members);
    return STORE_ERROR;
}

/* Whether ids (a JSON array) holds id already. */
static bool has_id(const json_t *ids, int64_t id)
{
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v)
    {
        if (json_integer_value(v) == id)
            return true;
    }
    return false;
}

int sq_op_message_delete(sq *b, store_req *r)
{
    if (!json_is_array(r->message_ids))
        return sq_bad_input(r, "message_ids");
    sqlite3_stmt *st = sq_prep(b, ST_HIDE_CURSOR);
    sqlite3_bind_int64(st, 1, r->user_id);
    int rc = sqlite3_step(st);
    int64_t cursor = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    if (rc == SQLITE_DONE)
        return STORE_NOT_FOUND;
    if (rc != SQLITE_ROW)
        return sq_db_fail(b, "hide cursor");
    int64_t start = cursor;
    json_t *ids = json_array();
    if (!ids)
        return STORE_ERROR;
    size_t i;
    json_t *v;
    json_array_foreach(r->message_ids, i, v)
    {
        int64_t id = json_integer_value(v);
        msg_row m;
        int status = id > 0 ? msg_load(b, id, &m) : STORE_NOT_FOUND;
        if (status == STORE_NOT_FOUND || (status == STORE_OK && has_id(ids, id)))
            continue;
        bool sees, current, dissolved;
        if (status != STORE_OK ||
            msg_access(b, &m, r->user_id, &sees, &current, &dissolved) != STORE_OK) {
            json_decref(ids);
            return STORE_ERROR;
        }
        if (!sees)
            continue;
        st = sq_prep(b, ST_HIDDEN_INSERT);
        sqlite3_bind_int64(st, 1, r->user_id);
        sqlite3_bind_int64(st, 2, id);
        sqlite3_bind_int64(st, 3, cursor + 1);
        if (sq_exec_stmt(st) != SQLITE_DONE || json_array_append_new(ids, json_integer(id)) != 0) {
            json_decref(ids);
            return sq_db_fail(b, "hide message");
        }
        if (sqlite3_changes(b->db) > 0)
            cursor++;
    }
    if (cursor != start) {
        st = sq_prep(b, ST_HIDE_CURSOR_SET);
        sqlite3_bind_int64(st, 1, r->user_id);
        sqlite3_bind_int64(st, 2, cursor);
        if (sq_exec_stmt(st) != SQLITE_DONE) {
            json_decref(ids);
            return sq_db_fail(b, "hide cursor update");
        }
    }
    r->result = json_pack("{s:o, s:I, s:b}", "message_ids", ids, "cursor", (json_int_t)cursor,
                          "changed", cursor != start);
    return r->result ? STORE_OK : STORE_ERROR;
}

json_t *sq_deleted_after(sq *b, int64_t user, int64_t after)
{
    sqlite3_stmt *st = sq_prep(b, ST_HIDDEN_AFTER);
    sqlite3_bind_int64(st, 1, user);
    sqlite3_bind_int64(st, 2, after);
    sqlite3_bind_int64(st, 3, STORE_DELETED_PAGE + 1);
    json_t *ids = json_array();
    int64_t cursor = after;
    bool more = false;
    int rc = SQLITE_DONE;
    while (ids && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (json_array_size(ids) == STORE_DELETED_PAGE) {
            more = true;
            break;
        }
        cursor = sqlite3_column_int64(st, 1);
        if (json_array_append_new(ids, json_integer(sqlite3_column_int64(st, 0))) != 0) {
            json_decref(ids);
            ids = NULL;
        }
    }
    sqlite3_reset(st);
    if (ids && rc != SQLITE_DONE && rc != SQLITE_ROW) {
        sq_db_fail(b, "hidden after");
        json_decref(ids);
        return NULL;
    }
    return ids ? json_pack("{s:o, s:I, s:b}", "message_ids", ids, "cursor", (json_int_t)cursor,
                           "more", more)
               : NULL;
}
