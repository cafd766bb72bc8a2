/* store_sqlite_internal: what the files of the SQLite backend share (not for
 * other modules: store_backend.h is the backend's contract).
 *
 * The backend is split by resource, one file each, as Redis keeps one
 * t_<type>.c per data type: store_sqlite.c opens the database (migrations,
 * per-connection settings), holds the statements' SQL, the helpers and the
 * caches the operations share, runs a pass (begin, the execute dispatch,
 * commit, rollback) and the maintenance between passes (the purge, WAL
 * checkpoints); store_sqlite_user.c the users: accounts, login tokens,
 * revoked JWTs, admin actions, search and presence (settings, last_seen,
 * peers); store_sqlite_message.c 1:1 messages and what reads conversations
 * of both kinds (send, chat list, history, sync, read, unread);
 * store_sqlite_group.c the groups: their rows, the unread counts computed
 * from member rows, and every STORE_GROUP_* operation.
 *
 * Threading: a handle (sq) is used by one storage thread at a time
 * (store_backend.h), so nothing here locks; only the checkpointer's thread
 * shares the handle, through the ckpt_* fields under ckpt_mu, on its own
 * connection.
 *
 * Ownership: sq_open allocates the handle and sq_close frees it with all it
 * holds (statements, caches, the pending conversation set). A statement
 * from sq_prep stays the handle's: the caller binds, steps and resets it,
 * and never finalizes it; sq_bind_text does not copy, so a value bound must
 * live until the statement is reset. A cache entry (sq_user_get,
 * sq_seq_get) is the cache's, valid until the next lookup in the same cache
 * (a full cache is emptied) or a rollback. An operation (sq_op_*) runs one
 * request inside the pass's transaction and returns its status with
 * r->result set, a reference the request then owns (store_backend.h's
 * execute; sq_execute dispatches to them). */
#ifndef CHATD_STORE_SQLITE_INTERNAL_H
#define CHATD_STORE_SQLITE_INTERNAL_H

#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uthash.h>

#include "store/store_backend.h"

/* The prepared statements, by id: their SQL is stmt_sql in store_sqlite.c. */
enum stmt_id {
    ST_BEGIN_READ,
    ST_BEGIN_WRITE,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_USER_INSERT,
    ST_USER_BY_NAME,
    ST_USER_BY_ID,
    ST_USER_BY_EXT,
    ST_USER_UPDATE,
    ST_USER_SEARCH,
    ST_TOKEN_INSERT,
    ST_TOKEN_LOOKUP,
    ST_TOKEN_DELETE,
    ST_JWT_REVOKE,
    ST_JWT_PURGE,
    ST_JWT_REVOKED,
    ST_MSG_INSERT,
    ST_MSG_BY_CLIENT,
    ST_CONV_UPSERT,
    ST_CHAT_LIST,
    ST_HISTORY,
    ST_SYNC,
    ST_SYNC_CONVS,
    ST_SYNC_CONV,
    ST_CONV_LAST_SEQ,
    ST_CONV_GET,
    ST_CONV_READ,
    ST_UNREAD_TOTAL,
    ST_UNREAD_LIST,
    ST_ADMIN_USER,
    ST_ADMIN_TOKENS,
    ST_ADMIN_GET,
    ST_PURGE_TOKENS,
    ST_PURGE_JWTS,
    ST_LAST_SEEN,
    ST_SETTINGS,
    ST_PEERS,
    ST_PASSWORD_SET,
    ST_PASSWORD_TOKENS,
    ST_PROFILE_SET,
    ST_USER_ACTIVE,
    ST_GROUP_INSERT,
    ST_GROUP_GET,
    ST_GROUP_PUT,
    ST_MEMBER_GET,
    ST_MEMBER_PUT,
    ST_MEMBER_LEFT,
    ST_MEMBER_LEFT_GET,
    ST_MEMBER_IDS,
    ST_MEMBER_LIST,
    ST_SUCCESSOR,
    ST_USER_GROUPS,
    ST_GROUP_CHAT_LIST,
    ST_GROUP_HISTORY,
    ST_GROUP_SYNC_CONV,
    ST_MSG_GET,
    ST_MSG_RECALL,
    ST_MSG_BY_ID,
    ST_CONV_UNCOUNT,
    ST_RECALL_NOTICE,
    ST_GROUP_UNCOUNTED,
    ST_HIDDEN_GET,
    ST_HIDDEN_INSERT,
    ST_HIDE_CURSOR,
    ST_HIDE_CURSOR_SET,
    ST_HIDDEN_AFTER,
    ST_COUNT
};

/* Conversation changes of the open transaction not written yet: a send
 * only records them here, and they are written (one upsert per user and
 * peer, however many messages) before anything reads conversations and
 * before the commit. In a group commit most sends hit a conversation
 * another send of the same pass already hit, so this saves most of the two
 * upserts a send would cost; the result is the same rows in the same
 * transaction. */
typedef struct {
    int64_t user, peer;
} conv_key;

typedef struct {
    conv_key key;
    int64_t last_message_id, unread, last_in_id;
    UT_hash_handle hh;
} conv_delta;

/* Bounds the pending set; a full one is simply written early. */
#define CONV_PENDING_MAX 4096

/* Users as sends need them (the sender's name and picture for the result,
 * the recipient's existence), saving a lookup per send. Rows only change
 * through this connection, so the cache is exact as long as it forgets an
 * updated user and everything on rollback (a rolled back insert may have
 * been cached, and its id may be reused). */
typedef struct {
    int64_t id;
    char *username, *userpic;
    UT_hash_handle hh;
} user_entry;

#define USER_CACHE_MAX 65536

/* The newest seq of each conversation a send touched, so the next send's
 * seq costs no lookup. Exact for the same reason as the user cache (one
 * writer), as long as it is emptied on rollback: a rolled back send's seq
 * is free again. Keyed by (conv_lo, conv_hi). */
typedef struct {
    conv_key key;
    int64_t last_seq;
    UT_hash_handle hh;
} seq_entry;

#define SEQ_CACHE_MAX 65536

/* A handle (store_backend.h's bk): the writer's connection, its statements
 * and caches, and the checkpointer. */
typedef struct {
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
    conv_delta *pending; /* uthash head; entries live in pool */
    conv_delta *pool;
    size_t npending;
    user_entry *users; /* uthash head */
    size_t nusers;
    seq_entry *seqs; /* uthash head */
    size_t nseqs;
    int wal_pages;         /* frames in the WAL after the last commit */
    int purge_interval_ms; /* < 0: never */
    int64_t next_purge_ms; /* wall clock; 0: at the first maintain */
    bool purge_more;       /* the last purge was a full batch: go on at once */

    /* The checkpointer: its connection is used by its thread only. */
    sqlite3 *ckpt_db;
    pthread_t ckpt_thread;
    bool ckpt_running;
    pthread_mutex_t ckpt_mu;
    pthread_cond_t ckpt_cv;
    bool ckpt_wanted, ckpt_active, ckpt_stop; /* under ckpt_mu */
} sq;

/* ---- store_sqlite.c: statement helpers, row JSON, caches ---------------- */

/* Errors: both log and return STORE_ERROR, for a database failure and for
 * a request missing what its op needs (a caller bug). */
int sq_db_fail(sq *b, const char *what);
int sq_bad_input(store_req *r, const char *what);
/* The prepared statement id, reset and ready to bind. */
sqlite3_stmt *sq_prep(sq *b, enum stmt_id id);
/* Steps a statement that returns no rows and resets it: sqlite3_step's code. */
int sq_exec_stmt(sqlite3_stmt *st);
void sq_bind_text(sqlite3_stmt *st, int i, const char *v);
const char *sq_col_text(sqlite3_stmt *st, int i);
int64_t sq_sql_limit(int64_t limit);
/* Row to JSON: last_seen as others see it (columns col, col + 1), and a
 * message from the MSG_COLS columns. */
json_t *sq_last_seen_json(sqlite3_stmt *st, int col);
json_t *sq_msg_json(sqlite3_stmt *st);
/* Marks the messages of msgs that user hid (STORE_MESSAGE_DELETE), their id
 * under id_key: store_msg_deleted. 0 or -1. */
int sq_mark_hidden(sq *b, int64_t user, json_t *msgs, const char *id_key);
/* A query's rows as a JSON array (NULL on failure), or its one row
 * (STORE_OK, NOT_FOUND or ERROR). */
json_t *sq_rows_json(sq *b, sqlite3_stmt *st, json_t *(*row)(sqlite3_stmt *));
int sq_row_json(sq *b, sqlite3_stmt *st, json_t *(*row)(sqlite3_stmt *), json_t **out);
bool sq_is_constraint(int rc);
/* The caches: sq_user_get finds a user (STORE_OK, NOT_FOUND or ERROR),
 * sq_user_forget drops one that changed; sq_seq_get finds a conversation's
 * newest seq, keyed (0, group id) for a group (NULL on error). */
void sq_user_forget(sq *b, user_entry *u);
seq_entry *sq_seq_get(sq *b, int64_t lo, int64_t hi);
int sq_user_get(sq *b, int64_t id, user_entry **out);
/* Records a send's change of a conversation row, written before anything
 * reads conversations and at commit. 0, or -1: the pass must not commit. */
int sq_conv_note(sq *b, int64_t user, int64_t peer, int64_t msg_id, int64_t unread, int64_t in_id);

/* ---- store_sqlite_user.c ------------------------------------------------- */

/* Deletes expired tokens and revoked-JWT entries, at most limit of each:
 * STORE_TOKEN_PURGE and the background purge. 0, or -1 (logged). */
int sq_purge(sq *b, int64_t time, int64_t limit, int64_t *tokens, int64_t *jwts);

int sq_op_user_create(sq *b, store_req *r);
int sq_op_user_by_name(sq *b, store_req *r);
int sq_op_user_by_id(sq *b, store_req *r);
int sq_op_jwt_revoke(sq *b, store_req *r);
int sq_op_user_external(sq *b, store_req *r);
int sq_op_user_search(sq *b, store_req *r);
int sq_op_token_create(sq *b, store_req *r);
int sq_op_user_admin(sq *b, store_req *r);
int sq_op_last_seen(sq *b, store_req *r);
int sq_op_user_settings(sq *b, store_req *r);
int sq_op_user_password(sq *b, store_req *r);
int sq_op_user_profile(sq *b, store_req *r);
int sq_op_presence_peers(sq *b, store_req *r);
int sq_op_token_purge(sq *b, store_req *r);
int sq_op_token_lookup(sq *b, store_req *r);
int sq_op_token_delete(sq *b, store_req *r);

/* ---- store_sqlite_message.c ---------------------------------------------- */

/* The user's unread total, 1:1 and the groups not muted; -1 on error. */
int64_t sq_unread_all(sq *b, int64_t user);

/* Marks r->result's messages the user hid (sq_mark_hidden): the status of
 * an op answering them. */
int sq_hidden_result(sq *b, store_req *r);

int sq_op_message_send(sq *b, store_req *r);
int sq_op_chat_list(sq *b, store_req *r);
int sq_op_history(sq *b, store_req *r);
int sq_op_sync(sq *b, store_req *r);
int sq_op_sync_cursors(sq *b, store_req *r);
int sq_op_read(sq *b, store_req *r);
int sq_op_unread(sq *b, store_req *r);

/* ---- store_sqlite_recall.c ----------------------------------------------- */

/* The extra part of SYNC_CURSORS' answer: {message_ids, cursor, more}. */
json_t *sq_deleted_after(sq *b, int64_t user, int64_t after);
int sq_op_message_recall(sq *b, store_req *r);
int sq_op_message_delete(sq *b, store_req *r);

/* ---- store_sqlite_group.c ------------------------------------------------ */

/* One of a user's groups as ST_USER_GROUPS gives it. */
typedef struct {
    int64_t id, last_seq, joined_seq, left_seq, read_seq, last_id;
    bool muted;
} user_group;

const char *sq_role_name(int role);
/* The computed counts: the newest seq a member may see, and its unread. */
int64_t sq_member_upper(int64_t last_seq, int64_t left_seq);
int64_t sq_member_unread(int64_t last_seq, int64_t joined_seq, int64_t left_seq, int64_t read_seq);
/* The unread count of a member whose computed count (sq_member_unread) is
 * unread and whose newest visible seq is upper, less the recalled messages
 * and recall notices in that range (migration 9); -1 on error. */
int64_t sq_group_unread(sq *b, int64_t group, int64_t upper, int64_t unread);
/* What a recall or delete-for-me needs of user in group gid: *sees whether
 * seq is in its membership's range, *current whether it is a member now,
 * *dissolved the group's. STORE_OK or STORE_ERROR. */
int sq_group_access(sq *b, int64_t gid, int64_t user, int64_t seq, bool *sees, bool *current,
                    bool *dissolved);
/* The ids of group gid's current members (a new array), or NULL. */
json_t *sq_group_member_ids(sq *b, int64_t gid);
/* Posts r->user_id's recall notice (data) in group gid as a group change
 * does (the user's read position moves to it): *notice the message,
 * *members the current member ids. */
int sq_group_post_notice(sq *b, store_req *r, int64_t gid, const char *data, json_t **notice,
                         json_t **members);
/* The user's groups (current and left) into *out, malloc'd, *n of them. */
int sq_user_groups(sq *b, int64_t user, user_group **out, size_t *n);

int sq_op_group_create(sq *b, store_req *r);
int sq_op_group_info(sq *b, store_req *r);
int sq_op_group_add(sq *b, store_req *r);
int sq_op_group_remove(sq *b, store_req *r);
int sq_op_group_leave(sq *b, store_req *r);
int sq_op_group_update(sq *b, store_req *r);
int sq_op_group_role(sq *b, store_req *r);
int sq_op_group_dissolve(sq *b, store_req *r);
int sq_op_group_mute(sq *b, store_req *r);
int sq_op_group_send(sq *b, store_req *r);
int sq_op_group_history(sq *b, store_req *r);
int sq_op_group_read(sq *b, store_req *r);

#endif
