/* store_sqlite_group: the groups of the SQLite backend (store.h, "Groups"):
 * the group and member rows, the unread counts computed from them, and
 * every STORE_GROUP_* operation. See store_sqlite_internal.h. */
#include "store/store_sqlite_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- groups: rows and computed counts (store.h, "Groups") ---------------- */

typedef struct {
    int64_t id, owner_id, created_at, member_count, last_seq, last_message_id;
    bool dissolved;
    char *name, *avatar;
} group_row;

typedef struct {
    bool found; /* a member now or before (then left_seq > 0) */
    int role;   /* enum store_group_role */
    int64_t joined_seq, join_order, left_seq, read_seq;
    bool muted;
} member_row;

const char *sq_role_name(int role)
{
    return role == STORE_GROUP_ROLE_OWNER   ? "owner"
           : role == STORE_GROUP_ROLE_ADMIN ? "admin"
                                            : "member";
}

/* The newest seq a member may see: its left_seq once it left. */
int64_t sq_member_upper(int64_t last_seq, int64_t left_seq)
{
    return left_seq > 0 && left_seq < last_seq ? left_seq : last_seq;
}

/* The unread count, computed: the seqs the member may see above the last
 * it read (its range starts at joined_seq). */
int64_t sq_member_unread(int64_t last_seq, int64_t joined_seq, int64_t left_seq, int64_t read_seq)
{
    int64_t seen = read_seq > joined_seq - 1 ? read_seq : joined_seq - 1;
    int64_t n = sq_member_upper(last_seq, left_seq) - seen;
    return n > 0 ? n : 0;
}

/* The user's groups (current and left) into *out, malloc'd, *n of them. */
int sq_user_groups(sq *b, int64_t user, user_group **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    size_t cap = 0;
    sqlite3_stmt *st = sq_prep(b, ST_USER_GROUPS);
    sqlite3_bind_int64(st, 1, user);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            void *p = realloc(*out, ncap * sizeof(**out));
            if (!p) {
                rc = SQLITE_NOMEM;
                break;
            }
            *out = p;
            cap = ncap;
        }
        user_group *g = &(*out)[(*n)++];
        g->id = sqlite3_column_int64(st, 0);
        g->last_seq = sqlite3_column_int64(st, 1);
        g->joined_seq = sqlite3_column_int64(st, 2);
        g->left_seq = sqlite3_column_int64(st, 3);
        g->read_seq = sqlite3_column_int64(st, 4);
        g->muted = sqlite3_column_int(st, 5) != 0;
        g->last_id = sqlite3_column_int64(st, 6);
    }
    sqlite3_reset(st);
    if (rc == SQLITE_DONE)
        return STORE_OK;
    free(*out);
    *out = NULL;
    *n = 0;
    return rc == SQLITE_NOMEM ? STORE_ERROR : sq_db_fail(b, "user groups");
}

/* ---- group operations ------------------------------------------------------
 *
 * Each checks everything before it writes anything, so a refusal
 * (NOT_FOUND, FORBIDDEN, CONFLICT) leaves the pass's transaction as it
 * found it; only STORE_ERROR may leave a partial write (the caller rolls
 * back). A change writes its system message, the group row and the member
 * rows it touches: the actor's read position moves to the message it
 * caused. */

static void group_row_free(group_row *g)
{
    free(g->name);
    free(g->avatar);
    g->name = g->avatar = NULL;
}

/* Answers a refusal: status with result {code, message}. */
static int group_err(store_req *r, int status, const char *code, const char *message)
{
    json_decref(r->result);
    r->result = json_pack("{s:s, s:s}", "code", code, "message", message);
    return r->result ? status : STORE_ERROR;
}

static int group_load(sq *b, store_req *r, int64_t id, group_row *g)
{
    memset(g, 0, sizeof(*g));
    sqlite3_stmt *st = sq_prep(b, ST_GROUP_GET);
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        g->id = id;
        g->name = strdup(sq_col_text(st, 0));
        g->avatar = strdup(sq_col_text(st, 1));
        g->owner_id = sqlite3_column_int64(st, 2);
        g->created_at = sqlite3_column_int64(st, 3);
        g->member_count = sqlite3_column_int64(st, 4);
        g->dissolved = sqlite3_column_int(st, 5) != 0;
        g->last_seq = sqlite3_column_int64(st, 6);
        g->last_message_id = sqlite3_column_int64(st, 7);
    }
    sqlite3_reset(st);
    if (rc == SQLITE_DONE)
        return group_err(r, STORE_NOT_FOUND, "not_found", "No such group.");
    if (rc != SQLITE_ROW)
        return sq_db_fail(b, "group lookup");
    if (!g->name || !g->avatar) {
        group_row_free(g);
        return STORE_ERROR;
    }
    return STORE_OK;
}

static int group_save(sq *b, const group_row *g)
{
    sqlite3_stmt *st = sq_prep(b, ST_GROUP_PUT);
    sqlite3_bind_int64(st, 1, g->id);
    sq_bind_text(st, 2, g->name);
    sq_bind_text(st, 3, g->avatar);
    sqlite3_bind_int64(st, 4, g->owner_id);
    sqlite3_bind_int64(st, 5, g->member_count);
    sqlite3_bind_int(st, 6, g->dissolved ? 1 : 0);
    sqlite3_bind_int64(st, 7, g->last_seq);
    sqlite3_bind_int64(st, 8, g->last_message_id);
    return sq_exec_stmt(st) == SQLITE_DONE ? STORE_OK : sq_db_fail(b, "group update");
}

static int member_load(sq *b, int64_t gid, int64_t uid, member_row *m)
{
    memset(m, 0, sizeof(*m));
    sqlite3_stmt *st = sq_prep(b, ST_MEMBER_GET);
    sqlite3_bind_int64(st, 1, gid);
    sqlite3_bind_int64(st, 2, uid);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        m->found = true;
        m->role = sqlite3_column_int(st, 0);
        m->joined_seq = sqlite3_column_int64(st, 1);
        m->join_order = sqlite3_column_int64(st, 2);
        m->left_seq = sqlite3_column_int64(st, 3);
        m->read_seq = sqlite3_column_int64(st, 4);
        m->muted = sqlite3_column_int(st, 5) != 0;
    }
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? STORE_OK : sq_db_fail(b, "member lookup");
}

static int member_save(sq *b, int64_t gid, int64_t uid, const member_row *m)
{
    sqlite3_stmt *st = sq_prep(b, ST_MEMBER_PUT);
    sqlite3_bind_int64(st, 1, gid);
    sqlite3_bind_int64(st, 2, uid);
    sqlite3_bind_int(st, 3, m->role);
    sqlite3_bind_int64(st, 4, m->joined_seq);
    sqlite3_bind_int64(st, 5, m->join_order);
    sqlite3_bind_int64(st, 6, m->left_seq);
    sqlite3_bind_int64(st, 7, m->read_seq);
    sqlite3_bind_int(st, 8, m->muted ? 1 : 0);
    return sq_exec_stmt(st) == SQLITE_DONE ? STORE_OK : sq_db_fail(b, "member update");
}

/* Keeps in uid's member row the group as it is now, after uid's remove or
 * leave: what uid is shown from then on (store.h, STORE_GROUP_INFO). Call
 * after member_save, which would clear it while left_seq is 0. */
static int member_save_left(sq *b, const group_row *g, int64_t uid)
{
    sqlite3_stmt *st = sq_prep(b, ST_MEMBER_LEFT);
    sqlite3_bind_int64(st, 1, g->id);
    sqlite3_bind_int64(st, 2, uid);
    sq_bind_text(st, 3, g->name);
    sq_bind_text(st, 4, g->avatar);
    sqlite3_bind_int64(st, 5, g->member_count);
    sqlite3_bind_int64(st, 6, g->owner_id);
    sqlite3_bind_int(st, 7, g->dissolved ? 1 : 0);
    return sq_exec_stmt(st) == SQLITE_DONE ? STORE_OK : sq_db_fail(b, "member left snapshot");
}

/* Turns g into the group as member m (uid) left it: the values kept by
 * member_save_left (a row of a member who left before migration 8 has
 * none: the current ones stay) and last_seq capped at its left_seq. Only
 * for a member that left. */
static int group_as_left(sq *b, group_row *g, int64_t uid, const member_row *m)
{
    g->last_seq = sq_member_upper(g->last_seq, m->left_seq);
    sqlite3_stmt *st = sq_prep(b, ST_MEMBER_LEFT_GET);
    sqlite3_bind_int64(st, 1, g->id);
    sqlite3_bind_int64(st, 2, uid);
    int rc = sqlite3_step(st);
    int status = STORE_OK;
    if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
        char *name = strdup(sq_col_text(st, 0)), *avatar = strdup(sq_col_text(st, 1));
        if (name && avatar) {
            free(g->name);
            free(g->avatar);
            g->name = name;
            g->avatar = avatar;
            g->member_count = sqlite3_column_int64(st, 2);
            g->owner_id = sqlite3_column_int64(st, 3);
            g->dissolved = sqlite3_column_int(st, 4) != 0;
        } else {
            free(name);
            free(avatar);
            status = STORE_ERROR;
        }
    } else if (rc != SQLITE_ROW) {
        status = sq_db_fail(b, "member left snapshot lookup");
    }
    sqlite3_reset(st);
    return status;
}

static json_t *group_json(const group_row *g)
{
    return json_pack("{s:I, s:s, s:s, s:I, s:I, s:I, s:b, s:I}", "group_id", (json_int_t)g->id,
                     "name", g->name, "avatar", g->avatar, "owner_id", (json_int_t)g->owner_id,
                     "created_at", (json_int_t)g->created_at, "member_count",
                     (json_int_t)g->member_count, "dissolved", g->dissolved, "last_seq",
                     (json_int_t)g->last_seq);
}

/* The ids of the group's current members, plus extra (a member who just
 * left or was removed: it receives that message) when > 0. */
static json_t *member_ids(sq *b, int64_t gid, int64_t extra)
{
    json_t *ids = json_array();
    sqlite3_stmt *st = sq_prep(b, ST_MEMBER_IDS);
    sqlite3_bind_int64(st, 1, gid);
    int rc = SQLITE_DONE;
    while (ids && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (json_array_append_new(ids, json_integer(sqlite3_column_int64(st, 0))) != 0) {
            json_decref(ids);
            ids = NULL;
        }
    }
    sqlite3_reset(st);
    if (ids && rc != SQLITE_DONE) {
        sq_db_fail(b, "member ids");
        json_decref(ids);
        return NULL;
    }
    if (ids && extra > 0 && json_array_append_new(ids, json_integer(extra)) != 0) {
        json_decref(ids);
        return NULL;
    }
    return ids;
}

/* The group's start for an operation by user: the group (NOT_FOUND), the
 * user's member row (FORBIDDEN not_member when it never was one, or, with
 * current, when it is none now) and, with writable, CONFLICT
 * group_dissolved for a dissolved group. On anything but STORE_OK, g holds
 * nothing to free. */
static int group_open(sq *b, store_req *r, group_row *g, member_row *m, bool current, bool writable)
{
    int status = group_load(b, r, r->group_id, g);
    if (status != STORE_OK)
        return status;
    status = member_load(b, g->id, r->user_id, m);
    if (status == STORE_OK && (!m->found || (current && m->left_seq > 0)))
        status = group_err(r, STORE_FORBIDDEN, "not_member", "You are not a member of this group.");
    else if (status == STORE_OK && writable && g->dissolved)
        status = group_err(r, STORE_CONFLICT, "group_dissolved", "The group was dissolved.");
    if (status != STORE_OK)
        group_row_free(g);
    return status;
}

/* {userid, username} of a user; NULL on error. */
static json_t *user_ref(sq *b, int64_t id)
{
    user_entry *u;
    if (sq_user_get(b, id, &u) != STORE_OK)
        return NULL;
    return json_pack("{s:I, s:s}", "userid", (json_int_t)id, "username", u->username);
}

/* A system message's data: {event, actor, users, ...extra} as compact JSON
 * (malloc'd), users and extra (an object or NULL) taken over. */
static char *system_data(const char *event, int64_t actor, json_t *users, json_t *extra)
{
    json_t *o = users ? json_pack("{s:s, s:I, s:o}", "event", event, "actor", (json_int_t)actor,
                                  "users", users)
                      : NULL;
    char *s = NULL;
    if (o && (!extra || json_object_update(o, extra) == 0))
        s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    json_decref(extra);
    return s;
}

/* Stores a message of group g from user from (a system message when type is
 * "system") and moves g's last_seq/last_message_id to it (the caller saves
 * g). The seq comes from the seq cache under key (0, group), like a 1:1
 * conversation's. A repeated (from, client_msg_id) writes nothing: *msg is
 * the stored message and *dup true. */
static int group_post(sq *b, group_row *g, int64_t from, const char *type, const char *data,
                      const char *client_msg_id, int64_t time, int64_t width, int64_t height,
                      json_t **msg, bool *dup)
{
    *msg = NULL;
    *dup = false;
    if (!data)
        return STORE_ERROR;
    user_entry *sender;
    int status = sq_user_get(b, from, &sender);
    if (status != STORE_OK)
        return status == STORE_NOT_FOUND ? sq_db_fail(b, "group message sender vanished") : status;
    seq_entry *conv = sq_seq_get(b, 0, g->id);
    if (!conv)
        return STORE_ERROR;
    int64_t seq = conv->last_seq + 1;
    json_t *m =
        json_pack("{s:I, s:I, s:I, s:I, s:s, s:s, s:s, s:s, s:I, s:s?}", "id", (json_int_t)0, "seq",
                  (json_int_t)seq, "group_id", (json_int_t)g->id, "from_id", (json_int_t)from,
                  "from_username", sender->username, "from_userpic", sender->userpic, "type", type,
                  "data", data, "time", (json_int_t)time, "client_msg_id", client_msg_id);
    if (!m)
        return STORE_ERROR;
    sqlite3_stmt *st = sq_prep(b, ST_MSG_INSERT);
    sqlite3_bind_int64(st, 1, from);
    sqlite3_bind_int64(st, 2, 0);
    sqlite3_bind_int64(st, 3, 0);
    sqlite3_bind_int64(st, 4, g->id);
    sq_bind_text(st, 5, type);
    sq_bind_text(st, 6, data);
    sqlite3_bind_int64(st, 7, time);
    sq_bind_text(st, 8, client_msg_id);
    sqlite3_bind_int64(st, 9, seq);
    if (width > 0)
        sqlite3_bind_int64(st, 10, width);
    else
        sqlite3_bind_null(st, 10);
    if (height > 0)
        sqlite3_bind_int64(st, 11, height);
    else
        sqlite3_bind_null(st, 11);
    if (sq_exec_stmt(st) != SQLITE_DONE) {
        json_decref(m);
        return sq_db_fail(b, "group message insert");
    }
    if (sqlite3_changes(b->db) == 0) {
        json_decref(m);
        if (!client_msg_id)
            return sq_db_fail(b, "group message insert skipped");
        st = sq_prep(b, ST_MSG_BY_CLIENT);
        sqlite3_bind_int64(st, 1, from);
        sq_bind_text(st, 2, client_msg_id);
        status = sq_row_json(b, st, sq_msg_json, msg);
        if (status == STORE_NOT_FOUND)
            return sq_db_fail(b, "duplicate message vanished");
        *dup = status == STORE_OK;
        return status;
    }
    int64_t id = sqlite3_last_insert_rowid(b->db);
    conv->last_seq = seq;
    g->last_seq = seq;
    g->last_message_id = id;
    if (json_object_set_new(m, "id", json_integer(id)) != 0 ||
        store_msg_extras(m, false, width, height) != 0) {
        json_decref(m);
        return STORE_ERROR;
    }
    *msg = m;
    return STORE_OK;
}

/* Posts a system message (data from system_data, freed here). */
static int group_post_system(sq *b, store_req *r, group_row *g, char *data, json_t **msg)
{
    bool dup;
    int status = group_post(b, g, r->user_id, "system", data, NULL, r->time, 0, 0, msg, &dup);
    free(data);
    return status;
}

/* r->result = {group, members, message} (+ the pairs of extra, taken
 * over); message null when msg is NULL. extra_member as in member_ids. */
static int group_answer(sq *b, store_req *r, const group_row *g, json_t *msg, int64_t extra_member,
                        json_t *extra)
{
    json_t *members = member_ids(b, g->id, extra_member);
    json_t *group = group_json(g);
    r->result = members && group ? json_pack("{s:o, s:o, s:o}", "group", group, "members", members,
                                             "message", msg ? msg : json_null())
                                 : NULL;
    if (!r->result) {
        json_decref(members);
        json_decref(group);
        json_decref(msg);
    }
    if (r->result && extra && json_object_update(r->result, extra) != 0) {
        json_decref(r->result);
        r->result = NULL;
    }
    json_decref(extra);
    return r->result ? STORE_OK : STORE_ERROR;
}

/* A user id of r->members: an integer or a decimal string; 0 for anything
 * else (no user has it). */
static int64_t member_id_of(const json_t *v)
{
    if (json_is_integer(v))
        return json_integer_value(v);
    if (json_is_string(v)) {
        char *end;
        long long id = strtoll(json_string_value(v), &end, 10);
        return *end == '\0' ? (int64_t)id : 0;
    }
    return 0;
}

/* The distinct ids of r->members except skip, in their order, into *out
 * (malloc'd). -1 on OOM or a members that is no array. */
static int member_list(const store_req *r, int64_t skip, int64_t **out, size_t *n)
{
    *n = 0;
    *out = NULL;
    if (!r->members)
        return 0;
    if (!json_is_array(r->members))
        return -1;
    size_t len = json_array_size(r->members);
    *out = malloc((len ? len : 1) * sizeof(**out));
    if (!*out)
        return -1;
    for (size_t i = 0; i < len; i++) {
        int64_t id = member_id_of(json_array_get(r->members, i));
        bool seen = id == skip;
        /* quadratic, but the chat service bounds members by --max-group-members */
        for (size_t j = 0; j < *n && !seen; j++)
            seen = (*out)[j] == id;
        if (!seen)
            (*out)[(*n)++] = id;
    }
    return 0;
}

/* Whether user id may be made a member (exists, enabled); its
 * {userid, username} appended to users. STORE_OK, NOT_FOUND or ERROR. */
static int member_candidate(sq *b, int64_t id, json_t *users)
{
    sqlite3_stmt *st = sq_prep(b, ST_USER_ACTIVE);
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    int status = STORE_OK;
    if (rc == SQLITE_ROW) {
        if (json_array_append_new(users, json_pack("{s:I, s:s}", "userid", (json_int_t)id,
                                                   "username", sq_col_text(st, 0))) != 0)
            status = STORE_ERROR;
    } else {
        status = rc == SQLITE_DONE ? STORE_NOT_FOUND : sq_db_fail(b, "member user lookup");
    }
    sqlite3_reset(st);
    return status;
}

static bool over_limit(int64_t count, int64_t max_members)
{
    return max_members > 0 && count > max_members;
}

int sq_op_group_create(sq *b, store_req *r)
{
    if (!r->name)
        return sq_bad_input(r, "name");
    int64_t *ids;
    size_t n;
    if (member_list(r, r->user_id, &ids, &n) != 0)
        return sq_bad_input(r, "members as an array");
    json_t *users = json_array();
    int status = users ? STORE_OK : STORE_ERROR;
    if (status == STORE_OK && over_limit((int64_t)n + 1, r->max_members))
        status =
            group_err(r, STORE_CONFLICT, "group_full", "The group would have too many members.");
    user_entry *owner;
    if (status == STORE_OK) {
        status = sq_user_get(b, r->user_id, &owner);
        if (status == STORE_NOT_FOUND)
            status = group_err(r, STORE_NOT_FOUND, "not_found", "No such user.");
    }
    for (size_t i = 0; i < n && status == STORE_OK; i++) {
        status = member_candidate(b, ids[i], users);
        if (status == STORE_NOT_FOUND)
            status = group_err(r, STORE_NOT_FOUND, "not_found", "A member is not a user.");
    }
    if (status != STORE_OK) {
        free(ids);
        json_decref(users);
        return status;
    }
    /* checked: from here on only writes */
    group_row g = {.owner_id = r->user_id,
                   .created_at = r->time,
                   .member_count = (int64_t)n + 1,
                   .name = strdup(r->name),
                   .avatar = strdup(r->avatar ? r->avatar : "")};
    sqlite3_stmt *st = sq_prep(b, ST_GROUP_INSERT);
    sq_bind_text(st, 1, g.name);
    sq_bind_text(st, 2, g.avatar);
    sqlite3_bind_int64(st, 3, g.owner_id);
    sqlite3_bind_int64(st, 4, g.created_at);
    if (!g.name || !g.avatar) {
        status = STORE_ERROR;
        json_decref(users);
    } else if (sq_exec_stmt(st) != SQLITE_DONE) {
        status = sq_db_fail(b, "group insert");
        json_decref(users);
    } else {
        g.id = sqlite3_last_insert_rowid(b->db);
        json_t *extra = json_pack("{s:s, s:s}", "name", g.name, "avatar", g.avatar);
        json_t *msg = NULL;
        status = group_post_system(b, r, &g, system_data("create", r->user_id, users, extra), &msg);
        member_row m = {.role = STORE_GROUP_ROLE_OWNER, .joined_seq = 1, .read_seq = 1};
        if (status == STORE_OK)
            status = member_save(b, g.id, r->user_id, &m);
        m.role = STORE_GROUP_ROLE_MEMBER;
        m.read_seq = 0;
        for (size_t i = 0; i < n && status == STORE_OK; i++) {
            m.join_order = (int64_t)i + 1;
            status = member_save(b, g.id, ids[i], &m);
        }
        if (status == STORE_OK)
            status = group_save(b, &g);
        if (status == STORE_OK)
            status = group_answer(b, r, &g, msg, 0, NULL);
        else
            json_decref(msg);
    }
    group_row_free(&g);
    free(ids);
    return status;
}

static json_t *member_json(sqlite3_stmt *st)
{
    return json_pack("{s:I, s:s, s:s, s:o, s:s}", "userid", (json_int_t)sqlite3_column_int64(st, 0),
                     "username", sq_col_text(st, 1), "userpic", sq_col_text(st, 2), "last_seen",
                     sq_last_seen_json(st, 3), "role", sq_role_name(sqlite3_column_int(st, 5)));
}

int sq_op_group_info(sq *b, store_req *r)
{
    group_row g;
    member_row m;
    int status = group_open(b, r, &g, &m, false, false);
    if (status != STORE_OK)
        return status;
    json_t *members;
    if (m.left_seq > 0) {
        /* a departed member sees the group as it left it (store.h) */
        status = group_as_left(b, &g, r->user_id, &m);
        if (status != STORE_OK) {
            group_row_free(&g);
            return status;
        }
        members = json_array();
    } else {
        sqlite3_stmt *st = sq_prep(b, ST_MEMBER_LIST);
        sqlite3_bind_int64(st, 1, g.id);
        members = sq_rows_json(b, st, member_json);
    }
    r->result = group_json(&g);
    group_row_free(&g);
    if (!r->result || !members ||
        json_object_update_new(r->result,
                               json_pack("{s:s, s:b, s:I, s:b, s:o}", "role", sq_role_name(m.role),
                                         "muted", m.muted, "joined_seq", (json_int_t)m.joined_seq,
                                         "left", m.left_seq > 0, "members", members)) != 0) {
        json_decref(r->result);
        r->result = NULL;
        return STORE_ERROR;
    }
    return STORE_OK;
}

int sq_op_group_add(sq *b, store_req *r)
{
    group_row g;
    member_row actor;
    int status = group_open(b, r, &g, &actor, true, true);
    if (status != STORE_OK)
        return status;
    int64_t *ids = NULL;
    size_t n = 0, fresh = 0;
    json_t *users = json_array();
    if (actor.role == STORE_GROUP_ROLE_MEMBER)
        status =
            group_err(r, STORE_FORBIDDEN, "forbidden", "Only the owner and admins add members.");
    else if (!users || member_list(r, 0, &ids, &n) != 0)
        status = sq_bad_input(r, "members as an array");
    /* the users not members now, first in ids[0..fresh) */
    for (size_t i = 0; i < n && status == STORE_OK; i++) {
        member_row m;
        status = member_load(b, g.id, ids[i], &m);
        if (status == STORE_OK && m.found && m.left_seq == 0)
            continue;
        if (status == STORE_OK)
            status = member_candidate(b, ids[i], users);
        if (status == STORE_NOT_FOUND)
            status = group_err(r, STORE_NOT_FOUND, "not_found", "A member is not a user.");
        ids[fresh++] = ids[i];
    }
    if (status == STORE_OK && fresh > 0 &&
        over_limit(g.member_count + (int64_t)fresh, r->max_members))
        status =
            group_err(r, STORE_CONFLICT, "group_full", "The group would have too many members.");
    json_t *added = status == STORE_OK ? json_array() : NULL;
    for (size_t i = 0; added && i < fresh; i++) {
        if (json_array_append_new(added, json_integer(ids[i])) != 0) {
            json_decref(added);
            added = NULL;
        }
    }
    if (status == STORE_OK && !added)
        status = STORE_ERROR;
    if (status != STORE_OK || fresh == 0) {
        json_decref(users);
        if (status == STORE_OK) /* all were members: nothing changes */
            status = group_answer(b, r, &g, NULL, 0, json_pack("{s:o}", "added", added));
        else
            json_decref(added);
        group_row_free(&g);
        free(ids);
        return status;
    }
    json_t *msg = NULL;
    status = group_post_system(b, r, &g, system_data("add", r->user_id, users, NULL), &msg);
    member_row m = {.role = STORE_GROUP_ROLE_MEMBER, .joined_seq = g.last_seq};
    for (size_t i = 0; i < fresh && status == STORE_OK; i++) {
        m.join_order = (int64_t)i;
        status = member_save(b, g.id, ids[i], &m);
    }
    actor.read_seq = g.last_seq;
    g.member_count += (int64_t)fresh;
    if (status == STORE_OK)
        status = member_save(b, g.id, r->user_id, &actor);
    if (status == STORE_OK)
        status = group_save(b, &g);
    if (status == STORE_OK) {
        status = group_answer(b, r, &g, msg, 0, json_pack("{s:o}", "added", added));
    } else {
        json_decref(msg);
        json_decref(added);
    }
    group_row_free(&g);
    free(ids);
    return status;
}

int sq_op_group_remove(sq *b, store_req *r)
{
    group_row g;
    member_row actor, peer;
    int status = group_open(b, r, &g, &actor, true, true);
    if (status != STORE_OK)
        return status;
    if (actor.role == STORE_GROUP_ROLE_MEMBER || r->peer_id == r->user_id)
        status = group_err(r, STORE_FORBIDDEN, "forbidden",
                           actor.role == STORE_GROUP_ROLE_MEMBER
                               ? "Only the owner and admins remove members."
                               : "You cannot remove yourself; leave the group instead.");
    else
        status = member_load(b, g.id, r->peer_id, &peer);
    if (status == STORE_OK && (!peer.found || peer.left_seq > 0))
        status = group_err(r, STORE_CONFLICT, "not_in_group", "That user is not a member.");
    else if (status == STORE_OK && actor.role == STORE_GROUP_ROLE_ADMIN &&
             peer.role != STORE_GROUP_ROLE_MEMBER)
        status = group_err(r, STORE_FORBIDDEN, "forbidden", "An admin removes members only.");
    json_t *who = status == STORE_OK ? user_ref(b, r->peer_id) : NULL;
    if (status == STORE_OK && !who)
        status = STORE_ERROR;
    if (status != STORE_OK) {
        group_row_free(&g);
        return status;
    }
    json_t *msg = NULL;
    status = group_post_system(
        b, r, &g, system_data("remove", r->user_id, json_pack("[o]", who), NULL), &msg);
    peer.left_seq = g.last_seq;
    actor.read_seq = g.last_seq;
    g.member_count--;
    if (status == STORE_OK)
        status = member_save(b, g.id, r->peer_id, &peer);
    if (status == STORE_OK)
        status = member_save_left(b, &g, r->peer_id);
    if (status == STORE_OK)
        status = member_save(b, g.id, r->user_id, &actor);
    if (status == STORE_OK)
        status = group_save(b, &g);
    if (status == STORE_OK)
        status = group_answer(b, r, &g, msg, r->peer_id, NULL);
    else
        json_decref(msg);
    group_row_free(&g);
    return status;
}

int sq_op_group_leave(sq *b, store_req *r)
{
    group_row g;
    member_row me;
    int status = group_open(b, r, &g, &me, true, true);
    if (status != STORE_OK)
        return status;
    /* the owner leaving hands the group to the earliest-joined admin, else
     * member */
    int64_t heir = 0;
    if (me.role == STORE_GROUP_ROLE_OWNER) {
        sqlite3_stmt *st = sq_prep(b, ST_SUCCESSOR);
        sqlite3_bind_int64(st, 1, g.id);
        sqlite3_bind_int64(st, 2, r->user_id);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
            heir = sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            status = sq_db_fail(b, "group successor");
    }
    json_t *who = status == STORE_OK ? user_ref(b, r->user_id) : NULL;
    if (status != STORE_OK || !who) {
        group_row_free(&g);
        return STORE_ERROR;
    }
    json_t *extra = heir ? json_pack("{s:I}", "owner", (json_int_t)heir) : NULL;
    json_t *msg = NULL;
    status = group_post_system(
        b, r, &g, system_data("leave", r->user_id, json_pack("[o]", who), extra), &msg);
    me.left_seq = g.last_seq;
    me.read_seq = g.last_seq;
    g.member_count--;
    if (g.member_count <= 0)
        g.dissolved = true; /* the last member left */
    if (status == STORE_OK)
        status = member_save(b, g.id, r->user_id, &me);
    if (status == STORE_OK && heir) {
        member_row h;
        status = member_load(b, g.id, heir, &h);
        h.role = STORE_GROUP_ROLE_OWNER;
        g.owner_id = heir;
        if (status == STORE_OK)
            status = member_save(b, g.id, heir, &h);
    }
    if (status == STORE_OK) /* after the heir: owner_id is the new owner's */
        status = member_save_left(b, &g, r->user_id);
    if (status == STORE_OK)
        status = group_save(b, &g);
    if (status == STORE_OK)
        status =
            group_answer(b, r, &g, msg, r->user_id, json_pack("{s:b}", "dissolved", g.dissolved));
    else
        json_decref(msg);
    group_row_free(&g);
    return status;
}

int sq_op_group_update(sq *b, store_req *r)
{
    group_row g;
    member_row actor;
    int status = group_open(b, r, &g, &actor, true, true);
    if (status != STORE_OK)
        return status;
    if (actor.role == STORE_GROUP_ROLE_MEMBER) {
        group_row_free(&g);
        return group_err(r, STORE_FORBIDDEN, "forbidden",
                         "Only the owner and admins change the group.");
    }
    json_t *extra = json_object();
    bool name = r->name && strcmp(r->name, g.name) != 0;
    bool avatar = r->avatar && strcmp(r->avatar, g.avatar) != 0;
    if (!extra || (name && json_object_set_new(extra, "name", json_string(r->name)) != 0) ||
        (avatar && json_object_set_new(extra, "avatar", json_string(r->avatar)) != 0)) {
        json_decref(extra);
        group_row_free(&g);
        return STORE_ERROR;
    }
    if (!name && !avatar) {
        json_decref(extra);
        status = group_answer(b, r, &g, NULL, 0, NULL);
        group_row_free(&g);
        return status;
    }
    char *new_name = name ? strdup(r->name) : NULL, *new_avatar = avatar ? strdup(r->avatar) : NULL;
    if ((name && !new_name) || (avatar && !new_avatar)) {
        free(new_name);
        free(new_avatar);
        json_decref(extra);
        group_row_free(&g);
        return STORE_ERROR;
    }
    if (name) {
        free(g.name);
        g.name = new_name;
    }
    if (avatar) {
        free(g.avatar);
        g.avatar = new_avatar;
    }
    json_t *msg = NULL;
    status =
        group_post_system(b, r, &g, system_data("update", r->user_id, json_array(), extra), &msg);
    actor.read_seq = g.last_seq;
    if (status == STORE_OK)
        status = member_save(b, g.id, r->user_id, &actor);
    if (status == STORE_OK)
        status = group_save(b, &g);
    if (status == STORE_OK)
        status = group_answer(b, r, &g, msg, 0, NULL);
    else
        json_decref(msg);
    group_row_free(&g);
    return status;
}

int sq_op_group_role(sq *b, store_req *r)
{
    if (r->action < STORE_GROUP_ROLE_MEMBER || r->action > STORE_GROUP_ROLE_OWNER)
        return sq_bad_input(r, "a known group role");
    group_row g;
    member_row actor, peer;
    int status = group_open(b, r, &g, &actor, true, true);
    if (status != STORE_OK)
        return status;
    if (actor.role != STORE_GROUP_ROLE_OWNER)
        status = group_err(r, STORE_FORBIDDEN, "forbidden", "Only the owner changes roles.");
    else if (r->peer_id == r->user_id)
        status =
            group_err(r, STORE_FORBIDDEN, "forbidden", "The owner cannot change its own role.");
    else
        status = member_load(b, g.id, r->peer_id, &peer);
    if (status == STORE_OK && (!peer.found || peer.left_seq > 0))
        status = group_err(r, STORE_CONFLICT, "not_in_group", "That user is not a member.");
    json_t *who = status == STORE_OK ? user_ref(b, r->peer_id) : NULL;
    if (status == STORE_OK && !who)
        status = STORE_ERROR;
    if (status != STORE_OK) {
        group_row_free(&g);
        return status;
    }
    json_t *msg = NULL;
    status = group_post_system(b, r, &g,
                               system_data("role", r->user_id, json_pack("[o]", who),
                                           json_pack("{s:s}", "role", sq_role_name(r->action))),
                               &msg);
    peer.role = r->action;
    actor.read_seq = g.last_seq;
    if (r->action == STORE_GROUP_ROLE_OWNER) {
        actor.role = STORE_GROUP_ROLE_ADMIN;
        g.owner_id = r->peer_id;
    }
    if (status == STORE_OK)
        status = member_save(b, g.id, r->peer_id, &peer);
    if (status == STORE_OK)
        status = member_save(b, g.id, r->user_id, &actor);
    if (status == STORE_OK)
        status = group_save(b, &g);
    if (status == STORE_OK)
        status = group_answer(b, r, &g, msg, 0, NULL);
    else
        json_decref(msg);
    group_row_free(&g);
    return status;
}

int sq_op_group_dissolve(sq *b, store_req *r)
{
    group_row g;
    member_row actor;
    int status = group_open(b, r, &g, &actor, true, true);
    if (status != STORE_OK)
        return status;
    if (actor.role != STORE_GROUP_ROLE_OWNER) {
        group_row_free(&g);
        return group_err(r, STORE_FORBIDDEN, "forbidden", "Only the owner dissolves the group.");
    }
    json_t *msg = NULL;
    status =
        group_post_system(b, r, &g, system_data("dissolve", r->user_id, json_array(), NULL), &msg);
    actor.read_seq = g.last_seq;
    g.dissolved = true;
    if (status == STORE_OK)
        status = member_save(b, g.id, r->user_id, &actor);
    if (status == STORE_OK)
        status = group_save(b, &g);
    if (status == STORE_OK)
        status = group_answer(b, r, &g, msg, 0, NULL);
    else
        json_decref(msg);
    group_row_free(&g);
    return status;
}

int sq_op_group_mute(sq *b, store_req *r)
{
    group_row g;
    member_row m;
    int status = group_open(b, r, &g, &m, false, false);
    if (status != STORE_OK)
        return status;
    bool muted = r->action != 0;
    if (m.muted != muted) {
        m.muted = muted;
        status = member_save(b, g.id, r->user_id, &m);
    }
    int64_t total = status == STORE_OK ? sq_unread_all(b, r->user_id) : -1;
    if (total >= 0)
        r->result = json_pack("{s:I, s:b, s:I}", "group_id", (json_int_t)g.id, "muted", muted,
                              "total", (json_int_t)total);
    group_row_free(&g);
    return r->result ? STORE_OK : STORE_ERROR;
}

/* ONE message row, the group's row and the sender's member row, whatever
 * the group's size. */
int sq_op_group_send(sq *b, store_req *r)
{
    if (!r->msg_type || !r->msg_data)
        return sq_bad_input(r, "msg_type/msg_data");
    group_row g;
    member_row me;
    int status = group_open(b, r, &g, &me, true, true);
    if (status != STORE_OK)
        return status;
    json_t *msg = NULL;
    bool dup = false;
    status = group_post(b, &g, r->user_id, r->msg_type, r->msg_data, r->client_msg_id, r->time,
                        r->width, r->height, &msg, &dup);
    if (status == STORE_OK && !dup) {
        me.read_seq = g.last_seq;
        status = member_save(b, g.id, r->user_id, &me);
        if (status == STORE_OK)
            status = group_save(b, &g);
    }
    json_t *members = status == STORE_OK ? member_ids(b, g.id, 0) : NULL;
    group_row_free(&g);
    if (status == STORE_OK && members) {
        r->result = json_pack("{s:o, s:o}", "message", msg, "members", members);
        r->duplicate = dup;
        return r->result ? STORE_OK : STORE_ERROR;
    }
    json_decref(msg);
    json_decref(members);
    return status == STORE_OK ? STORE_ERROR : status;
}

/* ---- recall (store_sqlite_recall.c) --------------------------------------- */

int64_t sq_group_unread(sq *b, int64_t group, int64_t upper, int64_t unread)
{
    if (unread <= 0)
        return 0;
    sqlite3_stmt *st = sq_prep(b, ST_GROUP_UNCOUNTED);
    sqlite3_bind_int64(st, 1, group);
    sqlite3_bind_int64(st, 2, upper - unread);
    sqlite3_bind_int64(st, 3, upper);
    int64_t n = -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    if (n < 0) {
        sq_db_fail(b, "group uncounted");
        return -1;
    }
    return unread > n ? unread - n : 0;
}

int sq_group_access(sq *b, int64_t gid, int64_t user, int64_t seq, bool *sees, bool *current,
                    bool *dissolved)
{
    *sees = *current = *dissolved = false;
    member_row m;
    if (member_load(b, gid, user, &m) != STORE_OK)
        return STORE_ERROR;
    if (!m.found)
        return STORE_OK;
    *current = m.left_seq == 0;
    *sees = seq >= m.joined_seq && (m.left_seq == 0 || seq <= m.left_seq);
    sqlite3_stmt *st = sq_prep(b, ST_GROUP_GET);
    sqlite3_bind_int64(st, 1, gid);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *dissolved = sqlite3_column_int(st, 5) != 0;
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? STORE_OK : sq_db_fail(b, "group lookup");
}

json_t *sq_group_member_ids(sq *b, int64_t gid)
{
    return member_ids(b, gid, 0);
}

int sq_group_post_notice(sq *b, store_req *r, int64_t gid, const char *data, json_t **notice,
                         json_t **members)
{
    *notice = *members = NULL;
    group_row g;
    member_row me;
    r->group_id = gid;
    int status = group_open(b, r, &g, &me, true, true);
    if (status != STORE_OK)
        return status;
    bool dup;
    status = group_post(b, &g, r->user_id, "recall", data, NULL, r->time, 0, 0, notice, &dup);
    if (status == STORE_OK) {
        me.read_seq = g.last_seq;
        status = member_save(b, g.id, r->user_id, &me);
    }
    if (status == STORE_OK)
        status = group_save(b, &g);
    if (status == STORE_OK && !(*members = member_ids(b, g.id, 0)))
        status = STORE_ERROR;
    group_row_free(&g);
    return status;
}

int sq_op_group_history(sq *b, store_req *r)
{
    group_row g;
    member_row m;
    int status = group_open(b, r, &g, &m, false, false);
    if (status != STORE_OK)
        return status;
    sqlite3_stmt *st = sq_prep(b, ST_GROUP_HISTORY);
    sqlite3_bind_int64(st, 1, g.id);
    sqlite3_bind_int64(st, 2, r->before > 0 ? r->before : INT64_MAX);
    sqlite3_bind_int64(st, 3, sq_sql_limit(r->limit));
    sqlite3_bind_int64(st, 4, m.joined_seq);
    sqlite3_bind_int64(st, 5, m.left_seq > 0 ? m.left_seq : INT64_MAX);
    r->result = sq_rows_json(b, st, sq_msg_json);
    group_row_free(&g);
    return sq_hidden_result(b, r);
}

int sq_op_group_read(sq *b, store_req *r)
{
    group_row g;
    member_row m;
    int status = group_open(b, r, &g, &m, false, false);
    if (status != STORE_OK)
        return status;
    /* the range read, recall notices and recalled messages included */
    int64_t unread = sq_member_unread(g.last_seq, m.joined_seq, m.left_seq, m.read_seq);
    int64_t read = m.read_seq > m.joined_seq - 1 ? m.read_seq : m.joined_seq - 1;
    if (unread > 0) {
        m.read_seq = read = sq_member_upper(g.last_seq, m.left_seq);
        status = member_save(b, g.id, r->user_id, &m);
    }
    int64_t total = status == STORE_OK ? sq_unread_all(b, r->user_id) : -1;
    if (total >= 0)
        r->result = json_pack("{s:I, s:b, s:I}", "total", (json_int_t)total, "changed", unread > 0,
                              "last_read_seq", (json_int_t)read);
    group_row_free(&g);
    return r->result ? STORE_OK : STORE_ERROR;
}
