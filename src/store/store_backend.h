/* store_backend: what a storage backend implements for store.c.
 *
 * store.c owns the request queues, the storage threads, group commit and
 * the hand-back to the event loop; a backend only knows how to run requests
 * against its database. Keeping the split here lets the PostgreSQL backend
 * reuse the whole queue/commit machinery and differ only in SQL and
 * connection setup.
 *
 * A backend handle (what open returns) is used by one storage thread at a
 * time, so a backend needs no locking of its own, except for healthy,
 * which the loop thread calls.
 *
 * Two ways to run a pass, of which a backend implements one:
 * - begin / execute / commit / rollback (SQLite): store.c opens the
 *   transaction, executes each request in it and commits.
 * - run (PostgreSQL): the backend gets the whole pass and runs it as ONE
 *   transaction itself, which lets it send everything at once (pipelining)
 *   instead of waiting for each request's answer.
 *
 * Handles: open is called with primary true once at start (that handle
 * creates or migrates the schema and becomes the writer's), then, for a
 * backend with several connections (store_options.connections > 1 and a
 * run function), once per reader thread with primary false. */
#ifndef CHATD_STORE_BACKEND_H
#define CHATD_STORE_BACKEND_H

#include <stdbool.h>
#include <stddef.h>

#include "store/store.h"

struct store_backend_ops {
    const char *name;
    /* Connects (creating the database if needed) and, when primary, brings
     * the schema to the latest version. Runs before the storage threads
     * start. Returns the handle, or NULL with a message in err. */
    void *(*open)(const store_options *o, bool primary, char *err, size_t err_len);
    /* Opens a transaction; write says whether it will write, so the backend
     * can take its write lock up front. 0 or -1. */
    int (*begin)(void *bk, bool write);
    /* 0 once everything since begin is durable (as the durability level
     * promises); -1 when it is not, after which the caller rolls back. */
    int (*commit)(void *bk);
    /* Undoes everything since begin; harmless when no transaction is open
     * (the database may already have aborted it on an I/O error). */
    void (*rollback)(void *bk);
    /* Runs one request inside the open transaction: sets r->status,
     * r->result and r->duplicate. STORE_ERROR means the transaction may hold
     * a partial effect of r (or be gone): the caller must not commit it. Any
     * other status leaves the transaction consistent. */
    void (*execute)(void *bk, store_req *r);
    /* Instead of the four above: runs reqs[0..n) (outputs reset by the
     * caller) in ONE transaction and commits it; the backend may reorder
     * the array (e.g. to lock rows in a consistent order). Returns 0 when
     * it committed: each request's status is OK, NOT_FOUND or CONFLICT and
     * its result set (or STORE_ERROR for one the backend could not run or
     * answer: bad input, out of memory; it is not re-run). STORE_ERROR: nothing was committed (a
     * request failed, a deadlock...), the caller re-runs each request alone. STORE_UNAVAILABLE: the
     * database cannot be reached, or the commit's outcome is unknown; every request answers that.
     */
    int (*run)(void *bk, store_req **reqs, size_t n);
    /* Housekeeping outside any transaction, e.g. a WAL checkpoint: after
     * every pass, once its results were handed to the loop (so it delays no
     * answer, only the next pass), with idle false; and with idle true when
     * no request has come for a while, the time for work that can wait.
     * When healthy is set, the writer also calls it (idle true) every
     * STORE_PROBE_MS while nothing happens, to notice a lost connection and
     * reconnect. */
    void (*maintain)(void *bk, bool idle);
    /* Optional: whether the handle's database connection works now. Called
     * on the loop thread (store_health), so it must be thread-safe. */
    bool (*healthy)(void *bk);
    void (*close)(void *bk);
};

extern const struct store_backend_ops store_sqlite_backend;
extern const struct store_backend_ops store_pg_backend;

/* The PostgreSQL statement of STORE_SYNC_CURSORS ($1 user id, $2/$3 the
 * cursors' peer ids and seqs as bigint[] literals, $4 the limit), for a
 * test that counts the rows it makes PostgreSQL return. */
const char *store_pg_sync_cursors_sql(void);

/* The SQLite statement of STORE_USER_SEARCH (?1 user id, ?2 the query's
 * key, ?3 the bound above every key starting with it, ?4 the limit), for a
 * test that checks its plan seeks the name_key index. */
const char *store_sqlite_search_sql(void);

/* The keys a message (or chat list item) has only when they apply, added
 * the same way by both backends so their answers are byte-identical (store.h):
 * "recalled": true (and then no size), else "width"/"height" when > 0.
 * 0, or -1 (m NULL or out of memory). */
int store_msg_extras(json_t *m, bool recalled, int64_t width, int64_t height);
/* The user hid m (STORE_MESSAGE_DELETE): "deleted": true, data "", no
 * size. 0 or -1. */
int store_msg_deleted(json_t *m);
/* The PostgreSQL statement of STORE_USER_SEARCH, for the same test. */
const char *store_pg_search_sql(void);

/* Latest schema version of the SQLite backend (PRAGMA user_version). */
#define STORE_SQLITE_SCHEMA_VERSION 9

/* How often an idle writer probes a backend that has healthy. */
#define STORE_PROBE_MS 500

/* Whether op changes the database, i.e. needs a write transaction and
 * counts in store_stats. */
bool store_op_is_write(store_op op);

/* The exclusive upper bound of the name keys that start with key, for
 * STORE_USER_SEARCH's range seek (key >= prefix AND key < bound): key with
 * its last byte one higher (a UTF-8 key holds no 0xff byte, so nothing
 * carries). A new string, or NULL (out of memory, empty key). */
char *store_search_bound(const char *key);

#endif
