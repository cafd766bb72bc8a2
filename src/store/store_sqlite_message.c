/* store_sqlite_message: messages and conversations in the SQLite backend:
 * the 1:1 send, its history, and what reads 1:1 and group conversations
 * together: the chat list, sync (by id or by per-conversation seq cursors),
 * read receipts and unread counts. See store_sqlite_internal.h. */
#include "store/store_sqlite_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int sq_op_message_send(sq *b, store_req *r)
{
    if (!r->msg_type || !r->msg_data)
        return sq_bad_input(r, "msg_type/msg_data");
    int64_t from = r->user_id, to = r->peer_id;
    user_entry *sender, *recipient;
    int status = sq_user_get(b, to, &recipient);
    if (status == STORE_OK)
        status = sq_user_get(b, from, &sender);
    if (status != STORE_OK)
        return status;

    /* One writer: the next seq is the conversation's newest plus one, and
     * this transaction holds the write lock until it commits, so seqs are
     * handed out in commit order without holes (a rollback empties the
     * cache, freeing them again). */
    int64_t lo = from < to ? from : to, hi = from < to ? to : from;
    seq_entry *conv = sq_seq_get(b, lo, hi);
    if (!conv)
        return STORE_ERROR;
    int64_t seq = conv->last_seq + 1;

    /* The result is built from the inputs before the insert; only the id is
     * filled in after it. */
    json_t *msg = json_pack(
        "{s:I, s:I, s:I, s:I, s:s, s:s, s:s, s:s, s:I, s:s?}", "id", (json_int_t)0, "seq",
        (json_int_t)seq, "to_id", (json_int_t)to, "from_id", (json_int_t)from, "from_username",
        sender->username, "from_userpic", sender->userpic, "type", r->msg_type, "data", r->msg_data,
        "time", (json_int_t)r->time, "client_msg_id", r->client_msg_id);
    if (!msg)
        return STORE_ERROR;

    sqlite3_stmt *st = sq_prep(b, ST_MSG_INSERT);
    sqlite3_bind_int64(st, 1, from);
    sqlite3_bind_int64(st, 2, to);
    sqlite3_bind_int64(st, 3, lo);
    sqlite3_bind_int64(st, 4, hi);
    sq_bind_text(st, 5, r->msg_type);
    sq_bind_text(st, 6, r->msg_data);
    sqlite3_bind_int64(st, 7, r->time);
    sq_bind_text(st, 8, r->client_msg_id);
    sqlite3_bind_int64(st, 9, seq);
    if (r->width > 0)
        sqlite3_bind_int64(st, 10, r->width);
    else
        sqlite3_bind_null(st, 10);
    if (r->height > 0)
        sqlite3_bind_int64(st, 11, r->height);
    else
        sqlite3_bind_null(st, 11);
    if (sq_exec_stmt(st) != SQLITE_DONE) {
        json_decref(msg);
        return sq_db_fail(b, "message insert");
    }
    if (sqlite3_changes(b->db) == 0) {
        /* Only a repeated (from_id, client_msg_id) skips the insert. */
        json_decref(msg);
        if (!r->client_msg_id)
            return sq_db_fail(b, "message insert skipped");
        st = sq_prep(b, ST_MSG_BY_CLIENT);
        sqlite3_bind_int64(st, 1, from);
        sq_bind_text(st, 2, r->client_msg_id);
        status = sq_row_json(b, st, sq_msg_json, &r->result);
        if (status == STORE_NOT_FOUND)
            return sq_db_fail(b, "duplicate message vanished");
        r->duplicate = status == STORE_OK;
        return status;
    }
    int64_t id = sqlite3_last_insert_rowid(b->db);
    conv->last_seq = seq;
    /* From here on a failure leaves the message without its conversation
     * rows; STORE_ERROR makes the caller roll the whole transaction back. */
    /* a recall notice (STORE_MESSAGE_RECALL) moves the conversation but is
     * not unread, nor something a read receipt reports */
    bool counts = strcmp(r->msg_type, "recall") != 0;
    if (json_object_set_new(msg, "id", json_integer(id)) != 0 ||
        store_msg_extras(msg, false, r->width, r->height) != 0 ||
        sq_conv_note(b, from, to, id, 0, 0) != 0 ||
        sq_conv_note(b, to, from, id, counts ? 1 : 0, counts ? id : 0) != 0) {
        json_decref(msg);
        return STORE_ERROR;
    }
    r->result = msg;
    return STORE_OK;
}

static json_t *chat_item_json(sqlite3_stmt *st)
{
    json_t *it =
        json_pack("{s:s, s:I, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:o, s:I}", "chat_type",
                  "single", "userid", (json_int_t)sqlite3_column_int64(st, 0), "username",
                  sq_col_text(st, 1), "userpic", sq_col_text(st, 2), "type", sq_col_text(st, 3),
                  "data", sq_col_text(st, 4), "time", (json_int_t)sqlite3_column_int64(st, 5),
                  "noreadnum", (json_int_t)sqlite3_column_int64(st, 6), "last_message_id",
                  (json_int_t)sqlite3_column_int64(st, 7), "last_seq",
                  (json_int_t)sqlite3_column_int64(st, 8), "last_seen", sq_last_seen_json(st, 9),
                  "from_id", (json_int_t)sqlite3_column_int64(st, 14));
    if (store_msg_extras(it, sqlite3_column_int(st, 11) != 0, sqlite3_column_int64(st, 12),
                         sqlite3_column_int64(st, 13)) != 0) {
        json_decref(it);
        return NULL;
    }
    return it;
}

/* A group item of the chat list, from ST_GROUP_CHAT_LIST. */
static json_t *group_item_json(sqlite3_stmt *st)
{
    int64_t left = sqlite3_column_int64(st, 7);
    int64_t unread = sq_member_unread(sqlite3_column_int64(st, 9), sqlite3_column_int64(st, 6),
                                      left, sqlite3_column_int64(st, 8));
    json_t *it = json_pack(
        "{s:s, s:I, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:s, s:b, s:s, s:I, s:b, s:b}",
        "chat_type", "group", "group_id", (json_int_t)sqlite3_column_int64(st, 0), "name",
        sq_col_text(st, 1), "avatar", sq_col_text(st, 2), "type", sq_col_text(st, 3), "data",
        sq_col_text(st, 4), "time", (json_int_t)sqlite3_column_int64(st, 5), "noreadnum",
        (json_int_t)unread, "last_message_id", (json_int_t)sqlite3_column_int64(st, 10), "last_seq",
        (json_int_t)sqlite3_column_int64(st, 11), "from_id",
        (json_int_t)sqlite3_column_int64(st, 12), "from_username", sq_col_text(st, 13), "muted",
        sqlite3_column_int(st, 14) != 0, "role", sq_role_name(sqlite3_column_int(st, 15)),
        "member_count", (json_int_t)sqlite3_column_int64(st, 16), "dissolved",
        sqlite3_column_int(st, 17) != 0, "left", left > 0);
    if (store_msg_extras(it, sqlite3_column_int(st, 18) != 0, sqlite3_column_int64(st, 19),
                         sqlite3_column_int64(st, 20)) != 0) {
        json_decref(it);
        return NULL;
    }
    return it;
}

/* A group item's computed unread count (group_item_json) less the recalled
 * messages and notices in its range; then the user's hidden last messages. */
static int chat_list_finish(sq *b, int64_t user, json_t *items)
{
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it)
    {
        json_int_t unread = json_integer_value(json_object_get(it, "noreadnum"));
        if (!json_object_get(it, "group_id") || unread == 0)
            continue;
        int64_t n = sq_group_unread(b, json_integer_value(json_object_get(it, "group_id")),
                                    json_integer_value(json_object_get(it, "last_seq")), unread);
        if (n < 0 || json_object_set_new(it, "noreadnum", json_integer(n)) != 0)
            return -1;
    }
    return sq_mark_hidden(b, user, items, "last_message_id");
}

static int by_last_message_desc(const void *x, const void *y)
{
    json_int_t a = json_integer_value(json_object_get(*(json_t *const *)x, "last_message_id"));
    json_int_t b = json_integer_value(json_object_get(*(json_t *const *)y, "last_message_id"));
    return a < b ? 1 : a > b ? -1 : 0;
}

/* 1:1 and group items in one list, sorted in memory: a user has few
 * conversations, and each part is one seek on its own index. */
int sq_op_chat_list(sq *b, store_req *r)
{
    sqlite3_stmt *st = sq_prep(b, ST_CHAT_LIST);
    sqlite3_bind_int64(st, 1, r->user_id);
    json_t *singles = sq_rows_json(b, st, chat_item_json);
    json_t *groups = NULL;
    if (singles) {
        st = sq_prep(b, ST_GROUP_CHAT_LIST);
        sqlite3_bind_int64(st, 1, r->user_id);
        groups = sq_rows_json(b, st, group_item_json);
    }
    size_t n = json_array_size(singles) + json_array_size(groups);
    json_t **items = groups ? malloc((n ? n : 1) * sizeof(*items)) : NULL;
    int status = STORE_ERROR;
    if (items) {
        size_t k = 0, i;
        json_t *it;
        json_array_foreach(singles, i, it)
        {
            items[k++] = it;
        }
        json_array_foreach(groups, i, it)
        {
            items[k++] = it;
        }
        qsort(items, n, sizeof(*items), by_last_message_desc);
        r->result = json_array();
        for (i = 0; r->result && i < n; i++) {
            if (json_array_append(r->result, items[i]) != 0) {
                json_decref(r->result);
                r->result = NULL;
            }
        }
        if (r->result && chat_list_finish(b, r->user_id, r->result) != 0) {
            json_decref(r->result);
            r->result = NULL;
        }
        if (r->result)
            status = STORE_OK;
    }
    free(items);
    json_decref(singles);
    json_decref(groups);
    return status;
}

int sq_op_history(sq *b, store_req *r)
{
    int64_t lo = r->user_id < r->peer_id ? r->user_id : r->peer_id;
    int64_t hi = r->user_id < r->peer_id ? r->peer_id : r->user_id;
    sqlite3_stmt *st = sq_prep(b, ST_HISTORY);
    sqlite3_bind_int64(st, 1, lo);
    sqlite3_bind_int64(st, 2, hi);
    sqlite3_bind_int64(st, 3, r->before > 0 ? r->before : INT64_MAX);
    sqlite3_bind_int64(st, 4, sq_sql_limit(r->limit));
    r->result = sq_rows_json(b, st, sq_msg_json);
    return sq_hidden_result(b, r);
}

/* Marks r->result's messages the user hid; the op's status. */
int sq_hidden_result(sq *b, store_req *r)
{
    if (!r->result)
        return STORE_ERROR;
    if (sq_mark_hidden(b, r->user_id, r->result, "id") != 0) {
        json_decref(r->result);
        r->result = NULL;
        return STORE_ERROR;
    }
    return STORE_OK;
}

int sq_op_sync(sq *b, store_req *r)
{
    sqlite3_stmt *st = sq_prep(b, ST_SYNC);
    sqlite3_bind_int64(st, 1, r->user_id);
    sqlite3_bind_int64(st, 2, r->after);
    sqlite3_bind_int64(st, 3, sq_sql_limit(r->limit));
    r->result = sq_rows_json(b, st, sq_msg_json);
    return sq_hidden_result(b, r);
}

/* The client's cursor of a conversation: the integer under prefix and the
 * id in decimal ("" and a peer's user id, "g" and a group id) in cursors,
 * 0 when absent (or not a non-negative integer: the chat service validates
 * them). */
static int64_t cursor_of(const json_t *cursors, const char *prefix, int64_t id)
{
    char key[32];
    snprintf(key, sizeof(key), "%s%lld", prefix, (long long)id);
    json_t *v = json_object_get(cursors, key);
    json_int_t c = json_is_integer(v) ? json_integer_value(v) : 0;
    return c > 0 ? c : 0;
}

/* A conversation cursor sync answers for. */
typedef struct {
    int64_t id; /* the peer user, or the group */
    bool group;
    int64_t after;   /* exclusive: the cursor (a group's never below joined_seq - 1) */
    int64_t upto;    /* the newest seq the user may see */
    int64_t last_id; /* its id: the most recent conversation first */
} sync_conv;

static int by_recent(const void *x, const void *y)
{
    int64_t a = ((const sync_conv *)x)->last_id, b = ((const sync_conv *)y)->last_id;
    return a < b ? 1 : a > b ? -1 : 0;
}

static int sync_add(sync_conv **v, size_t *n, size_t *cap, sync_conv c)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        void *p = realloc(*v, ncap * sizeof(**v));
        if (!p)
            return -1;
        *v = p;
        *cap = ncap;
    }
    (*v)[(*n)++] = c;
    return 0;
}

/* Work: one pass over the user's conversations (as the chat list) and its
 * groups (a seek on group_members_user), and one index seek plus at most
 * limit rows per conversation above its cursor. A group is read within the
 * user's seq range only. Past the limit, a conversation above its cursor
 * is still listed, with no messages and more: true, so the client knows to
 * ask again. */
int sq_op_sync_cursors(sq *b, store_req *r)
{
    if (r->cursors && !json_is_object(r->cursors))
        return sq_bad_input(r, "cursors as an object");
    /* the conversations first: the per-conversation query cannot run while
     * this one is stepping on the same connection's statements */
    sqlite3_stmt *st = sq_prep(b, ST_SYNC_CONVS);
    sqlite3_bind_int64(st, 1, r->user_id);
    size_t n = 0, cap = 0;
    sync_conv *todo = NULL;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        sync_conv c = {.id = sqlite3_column_int64(st, 0),
                       .upto = sqlite3_column_int64(st, 1),
                       .last_id = sqlite3_column_int64(st, 2)};
        c.after = cursor_of(r->cursors, "", c.id);
        if (c.upto > c.after && sync_add(&todo, &n, &cap, c) != 0) {
            rc = SQLITE_NOMEM;
            break;
        }
    }
    sqlite3_reset(st);
    int status = STORE_OK;
    if (rc != SQLITE_DONE)
        status = rc == SQLITE_NOMEM ? STORE_ERROR : sq_db_fail(b, "sync conversations");
    user_group *groups = NULL;
    size_t ngroups = 0;
    if (status == STORE_OK)
        status = sq_user_groups(b, r->user_id, &groups, &ngroups);
    for (size_t i = 0; i < ngroups && status == STORE_OK; i++) {
        user_group *g = &groups[i];
        sync_conv c = {.id = g->id,
                       .group = true,
                       .after = cursor_of(r->cursors, "g", g->id),
                       .upto = sq_member_upper(g->last_seq, g->left_seq),
                       .last_id = g->last_id};
        if (c.after < g->joined_seq - 1)
            c.after = g->joined_seq - 1;
        if (c.upto > c.after && sync_add(&todo, &n, &cap, c) != 0)
            status = STORE_ERROR;
    }
    free(groups);
    if (status == STORE_OK && n > 1)
        qsort(todo, n, sizeof(*todo), by_recent);
    json_t *convs = json_array();
    if (!convs)
        status = STORE_ERROR;
    int64_t left = r->limit > 0 ? r->limit : INT64_MAX;
    for (size_t i = 0; i < n && status == STORE_OK; i++) {
        sync_conv *c = &todo[i];
        json_t *msgs;
        if (left > 0 && c->group) {
            st = sq_prep(b, ST_GROUP_SYNC_CONV);
            sqlite3_bind_int64(st, 1, c->id);
            sqlite3_bind_int64(st, 2, c->after);
            sqlite3_bind_int64(st, 3, c->upto);
            sqlite3_bind_int64(st, 4, left);
            msgs = sq_rows_json(b, st, sq_msg_json);
        } else if (left > 0) {
            st = sq_prep(b, ST_SYNC_CONV);
            sqlite3_bind_int64(st, 1, r->user_id < c->id ? r->user_id : c->id);
            sqlite3_bind_int64(st, 2, r->user_id < c->id ? c->id : r->user_id);
            sqlite3_bind_int64(st, 3, c->after);
            sqlite3_bind_int64(st, 4, left);
            msgs = sq_rows_json(b, st, sq_msg_json);
        } else {
            msgs = json_array();
        }
        if (msgs && sq_mark_hidden(b, r->user_id, msgs, "id") != 0) {
            json_decref(msgs);
            msgs = NULL;
        }
        size_t got = json_array_size(msgs);
        json_t *newest = got ? json_array_get(msgs, got - 1) : NULL;
        int64_t upto = newest ? json_integer_value(json_object_get(newest, "seq")) : c->after;
        json_t *item = msgs ? json_pack("{s:I, s:o, s:b}", c->group ? "group_id" : "userid",
                                        (json_int_t)c->id, "messages", msgs, "more", upto < c->upto)
                            : NULL;
        if (!item || json_array_append_new(convs, item) != 0)
            status = STORE_ERROR;
        left -= (int64_t)got;
    }
    free(todo);
    json_t *deleted = NULL;
    if (status == STORE_OK && r->want_deleted &&
        !(deleted = sq_deleted_after(b, r->user_id, r->deleted_after)))
        status = STORE_ERROR;
    if (status == STORE_OK)
        r->result = deleted ? json_pack("{s:o, s:o}", "conversations", convs, "deleted", deleted)
                            : json_pack("{s:o}", "conversations", convs);
    else
        json_decref(convs);
    return status == STORE_OK && !r->result ? STORE_ERROR : status;
}

/* The user's unread sum of 1:1 conversations; -1 on error. */
static int64_t unread_total(sq *b, int64_t user)
{
    sqlite3_stmt *st = sq_prep(b, ST_UNREAD_TOTAL);
    sqlite3_bind_int64(st, 1, user);
    int64_t total = -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        total = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return total;
}

/* The user's unread total as every answer gives it: 1:1 conversations and
 * the groups not muted; -1 on error. */
int64_t sq_unread_all(sq *b, int64_t user)
{
    int64_t total = unread_total(b, user);
    user_group *groups;
    size_t n;
    if (total < 0 || sq_user_groups(b, user, &groups, &n) != STORE_OK)
        return -1;
    for (size_t i = 0; i < n && total >= 0; i++) {
        if (groups[i].muted)
            continue;
        int64_t u = sq_group_unread(b, groups[i].id,
                                    sq_member_upper(groups[i].last_seq, groups[i].left_seq),
                                    sq_member_unread(groups[i].last_seq, groups[i].joined_seq,
                                                     groups[i].left_seq, groups[i].read_seq));
        total = u < 0 ? -1 : total + u;
    }
    free(groups);
    return total;
}

int sq_op_read(sq *b, store_req *r)
{
    user_entry *peer;
    int status = sq_user_get(b, r->peer_id, &peer);
    if (status != STORE_OK)
        return status;
    sqlite3_stmt *st = sq_prep(b, ST_CONV_GET);
    sqlite3_bind_int64(st, 1, r->user_id);
    sqlite3_bind_int64(st, 2, r->peer_id);
    int rc = sqlite3_step(st);
    int64_t last_in = 0, unread = 0, last_read = 0;
    if (rc == SQLITE_ROW) {
        last_in = sqlite3_column_int64(st, 0);
        unread = sqlite3_column_int64(st, 1);
        last_read = sqlite3_column_int64(st, 2);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sq_db_fail(b, "conversation lookup");
    /* Reading an already read conversation (or none) writes nothing. */
    bool changed = rc == SQLITE_ROW && (unread != 0 || last_read != last_in);
    if (changed) {
        st = sq_prep(b, ST_CONV_READ);
        sqlite3_bind_int64(st, 1, r->user_id);
        sqlite3_bind_int64(st, 2, r->peer_id);
        sqlite3_bind_int64(st, 3, last_in);
        if (sq_exec_stmt(st) != SQLITE_DONE)
            return sq_db_fail(b, "conversation read");
    }
    int64_t total = sq_unread_all(b, r->user_id);
    if (total < 0)
        return sq_db_fail(b, "unread total");
    r->result = json_pack("{s:I, s:I, s:b}", "total", (json_int_t)total, "last_read_id",
                          (json_int_t)last_in, "changed", changed);
    return r->result ? STORE_OK : STORE_ERROR;
}

static json_t *unread_item_json(sqlite3_stmt *st)
{
    return json_pack("{s:I, s:I}", "userid", (json_int_t)sqlite3_column_int64(st, 0), "noreadnum",
                     (json_int_t)sqlite3_column_int64(st, 1));
}

int sq_op_unread(sq *b, store_req *r)
{
    sqlite3_stmt *st = sq_prep(b, ST_UNREAD_LIST);
    sqlite3_bind_int64(st, 1, r->user_id);
    json_t *list = sq_rows_json(b, st, unread_item_json);
    if (!list)
        return STORE_ERROR;
    json_int_t total = 0;
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item)
    {
        total += json_integer_value(json_object_get(item, "noreadnum"));
    }
    user_group *groups;
    size_t n;
    json_t *glist = json_array();
    if (!glist || sq_user_groups(b, r->user_id, &groups, &n) != STORE_OK) {
        json_decref(list);
        json_decref(glist);
        return STORE_ERROR;
    }
    int status = STORE_OK;
    for (i = 0; i < n && status == STORE_OK; i++) {
        user_group *g = &groups[i];
        int64_t unread =
            sq_group_unread(b, g->id, sq_member_upper(g->last_seq, g->left_seq),
                            sq_member_unread(g->last_seq, g->joined_seq, g->left_seq, g->read_seq));
        if (unread < 0) {
            status = STORE_ERROR;
            break;
        }
        if (unread == 0)
            continue;
        if (!g->muted)
            total += unread;
        if (json_array_append_new(glist, json_pack("{s:I, s:I, s:b}", "group_id", (json_int_t)g->id,
                                                   "noreadnum", (json_int_t)unread, "muted",
                                                   g->muted)) != 0)
            status = STORE_ERROR;
    }
    free(groups);
    if (status != STORE_OK) {
        json_decref(list);
        json_decref(glist);
        return status;
    }
    r->result =
        json_pack("{s:I, s:o, s:o}", "total", total, "conversations", list, "groups", glist);
    return r->result ? STORE_OK : STORE_ERROR;
}
