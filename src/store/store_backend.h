/* store_backend: what a storage backend implements for store.c.
 *
 * store.c owns the request queue, the storage thread, group commit and the
 * hand-back to the event loop; a backend only knows how to run one request
 * against its database inside a transaction the thread opened. Keeping the
 * split here lets a PostgreSQL backend (multi-node deployments) reuse the
 * whole queue/commit machinery and differ only in SQL and connection setup.
 *
 * Every function except open runs on the storage thread only, so a backend
 * needs no locking of its own. */
#ifndef CHATD_STORE_BACKEND_H
#define CHATD_STORE_BACKEND_H

#include <stdbool.h>
#include <stddef.h>

#include "store/store.h"

struct store_backend_ops {
    const char *name;
    /* Connects (creating the database if needed) and brings the schema to
     * the latest version. Runs once, before the storage thread starts.
     * Returns the backend state, or NULL with a message in err. */
    void *(*open)(const char *data_dir, enum store_durability durability, char *err,
                  size_t err_len);
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
    /* Housekeeping outside any transaction, e.g. a WAL checkpoint: after
     * every pass, once its results were handed to the loop (so it delays no
     * answer, only the next pass), with idle false; and with idle true when
     * no request has come for a while, the time for work that can wait. */
    void (*maintain)(void *bk, bool idle);
    void (*close)(void *bk);
};

extern const struct store_backend_ops store_sqlite_backend;

/* Latest schema version of the SQLite backend (PRAGMA user_version). */
#define STORE_SQLITE_SCHEMA_VERSION 4

/* Whether op changes the database, i.e. needs a write transaction and
 * counts in store_stats. */
bool store_op_is_write(store_op op);

#endif
