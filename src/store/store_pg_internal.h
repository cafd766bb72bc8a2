/* store_pg_internal: what the files of the PostgreSQL backend share.
 * Private to the backend: the rest of chatd sees only store_pg_backend and
 * the two statement accessors of store_backend.h.
 *
 * The backend is split by concern, the stages a pass goes through:
 * store_pg.c the connection (open, set-up, reconnect with backoff), the
 * pass (pipeline, commit) and the ops table; store_pg_schema.c the
 * migrations with the server functions they create, and pg_migrate;
 * store_pg_stmt.c each op's statement (pg_stmt_sql) and the building of
 * its parameters (pg_build); store_pg_answer.c the decoding of a
 * statement's rows into the request's outputs (pg_answer).
 *
 * Threading: a handle is one libpq connection used by one storage thread
 * at a time (store_backend.h), so nothing here locks. The statement table
 * and the migrations are constant; the helpers keep no state of their own.
 * The handle itself (pg, with its connection) stays private to store_pg.c:
 * the other files see a PGconn or a PGresult at most.
 *
 * Ownership: a params owns what p_owned gave it until pg_params_free,
 * which the caller runs after every pg_build* (also a failed one). A
 * request's result (r->result) belongs to the request, i.e. to store.c,
 * once set. A PGresult stays the caller's (PQclear). A group_members_seen
 * array holds one reference to each ids array, which its caller drops
 * after the run; each result takes its own. */
#ifndef CHATD_STORE_PG_INTERNAL_H
#define CHATD_STORE_PG_INTERNAL_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store_backend.h"

/* The message columns, in msg_json's order, and the conversation's
 * conv_hi last (a group message, to_id 0, shows it as group_id). */
#define MSG_COLS                                                                                   \
    "m.id, m.seq, m.to_id, m.from_id, u.username, u.userpic, m.type, m.data, m.time,"              \
    " m.client_msg_id, m.conv_hi, m.recalled, m.width, m.height"
/* MSG_COLS and whether the user (a parameter, "$1") hid the message. */
#define MSG_COLS_SEEN(user)                                                                        \
    MSG_COLS ", EXISTS (SELECT 1 FROM hidden_messages h WHERE h.user_id = " user                   \
             " AND h.message_id = m.id)"

enum stmt_id {
    ST_USER_INSERT,
    ST_USER_BY_NAME,
    ST_USER_BY_ID,
    ST_USER_EXTERNAL,
    ST_USER_SEARCH,
    ST_TOKEN_CREATE,
    ST_TOKEN_LOOKUP,
    ST_TOKEN_DELETE,
    ST_JWT_REVOKE,
    ST_SEND,
    ST_CHAT_LIST,
    ST_HISTORY,
    ST_SYNC,
    ST_SYNC_CURSORS,
    ST_READ,
    ST_UNREAD,
    ST_ADMIN,
    ST_PURGE,
    ST_LAST_SEEN,
    ST_SETTINGS,
    ST_PEERS,
    ST_PASSWORD,
    ST_PROFILE,
    ST_GROUP_CREATE,
    ST_GROUP_INFO,
    ST_GROUP_ADD,
    ST_GROUP_REMOVE,
    ST_GROUP_LEAVE,
    ST_GROUP_UPDATE,
    ST_GROUP_ROLE,
    ST_GROUP_DISSOLVE,
    ST_GROUP_MUTE,
    ST_GROUP_SEND,
    ST_GROUP_HISTORY,
    ST_GROUP_READ,
    ST_SEND_SIZED,
    ST_GROUP_SEND_SIZED,
    ST_SYNC_CURSORS_DEL,
    ST_RECALL,
    ST_DELETE,
    ST_COUNT
};

/* Statement i's SQL, prepared on every connection as "s<i>". */
extern const char *const pg_stmt_sql[ST_COUNT];

/* One request's parameters, built before it is sent; libpq copies them. */
#define MAX_PARAMS 9
typedef struct {
    enum stmt_id st;
    int n;
    const char *val[MAX_PARAMS];
    int len[MAX_PARAMS];
    int fmt[MAX_PARAMS];
    char num[MAX_PARAMS][24];
    char *owned[MAX_PARAMS];
    int nowned;
} params;

/* Fills p for r. -1: r cannot be run (bad input, out of memory): it
 * answers STORE_ERROR without being sent. 1: r is answered without the
 * database (status set). */
int pg_build(params *p, store_req *r);
/* Fills p for a run of sends reqs[0..n) (all with their inputs), one
 * batch call: chatd_send_batch, chatd_group_send_batch. -1 on out of
 * memory. */
int pg_build_sends(params *p, store_req **reqs, size_t n);
int pg_build_group_sends(params *p, store_req **reqs, size_t n);
/* Frees the strings p owns. */
void pg_params_free(params *p);

/* The member ids of the groups of one chatd_group_send_batch answer: each
 * group's comes once (on its first accepted send) and is shared by the
 * results of all its sends (read-only; jansson's reference counts are
 * atomic). */
typedef struct {
    int64_t gid;
    json_t *ids;
} group_members_seen;

/* Turns r's result into its outputs. Returns the status. */
int pg_answer(store_req *r, const PGresult *res);
/* Turns row `row` of chatd_send_batch's (chatd_group_send_batch's) answer
 * into send r's outputs; returns its status. For a group send, seen has
 * a place for each send of the run, *nseen of them used. */
int pg_answer_send(store_req *r, const PGresult *res, int row);
int pg_answer_group_send(store_req *r, const PGresult *res, int row, group_members_seen *seen,
                         size_t *nseen);

/* After a PQsend* on a blocking connection outside pipeline mode: the last
 * result of the command (the caller clears it), or NULL when the
 * connection failed or deadline_ms (monotonic; 0: none) passed first. */
PGresult *pg_await_result(PGconn *c, int64_t deadline_ms);
/* Runs a statement of constant text outside the pipeline (set-up only),
 * waiting for its answer until deadline_ms (0: no deadline). 0, or -1 with
 * the error in err (when not NULL). */
int pg_exec_simple(PGconn *c, const char *sql, int64_t deadline_ms, char *err, size_t err_len);

/* Brings the schema of c's database to the latest version, under an
 * advisory lock so that nodes starting at once migrate once. No deadline:
 * a migration may take long. 0, or -1 with err. */
int pg_migrate(PGconn *c, char *err, size_t err_len);

#endif
