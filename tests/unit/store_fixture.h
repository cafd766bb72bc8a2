/* store_fixture.h: the fixture the backend-neutral store tests share
 * (test_store_groups.c, test_store_recall.c): a real store on a real uv
 * loop, on SQLite in a fresh temporary directory by default or on the
 * PostgreSQL database CHATD_TEST_PG_URI names (the test's main() sets
 * pg_uri), driven one request at a time; users with a per-test random tag,
 * so a PostgreSQL database can be reused; and small JSON helpers.
 *
 * Define STORE_FIXTURE_NAME (the test's name, for the temporary directory)
 * before including it, after cmocka.h. The functions are static inline so a
 * test that leaves one unused builds warning-free. */
#ifndef CHATD_TESTS_STORE_FIXTURE_H
#define CHATD_TESTS_STORE_FIXTURE_H

#include <ftw.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store.h"
#include "store/store_backend.h"

#ifndef STORE_FIXTURE_NAME
#error "define STORE_FIXTURE_NAME before including store_fixture.h"
#endif

typedef struct {
    uv_loop_t loop;
    store *s;
    int done;
    char tag[16];      /* unique per test: usernames and client_msg_ids */
    char dir[64];      /* SQLite: the temporary directory */
    char data_dir[96]; /* SQLite: the data directory below it */
} fixture;

static const char *pg_uri; /* NULL: SQLite */

static inline void on_done(store_req *r)
{
    ((fixture *)r->ctx)->done++;
}

static inline int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    snprintf(f->tag, sizeof(f->tag), "%08lx", (unsigned long)random());
    store_options o = {.durability = STORE_DURABLE_NORMAL, .purge_interval_ms = -1};
    if (pg_uri) {
        o.store = pg_uri;
        o.connections = 3;
    } else {
        snprintf(f->dir, sizeof(f->dir), "/tmp/" STORE_FIXTURE_NAME ".XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->data_dir, sizeof(f->data_dir), "%s/data", f->dir);
        o.store = "sqlite";
        o.data_dir = f->data_dir;
    }
    char err[512] = "";
    f->s = store_open_opts(&f->loop, &o, err, sizeof(err));
    if (!f->s)
        fail_msg("store_open_opts: %s", err);
    *state = f;
    return 0;
}

static inline int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static inline int teardown(void **state)
{
    fixture *f = *state;
    store_close(f->s);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    if (f->dir[0])
        nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static inline store_req *new_req(fixture *f, store_op op, int64_t user, int64_t group)
{
    store_req *r = store_req_new(op, on_done, f);
    assert_non_null(r);
    r->time = 1000;
    r->user_id = user;
    r->group_id = group;
    return r;
}

static inline store_req *run(fixture *f, store_req *r)
{
    int before = f->done;
    store_submit(f->s, r);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->done, before + 1);
    return r;
}

/* Runs r, expects STORE_OK and returns it. */
static inline store_req *run_ok(fixture *f, store_req *r)
{
    run(f, r);
    if (r->status != STORE_OK)
        fail_msg("op %d: status %d, expected OK", (int)r->op, r->status);
    assert_non_null(r->result);
    return r;
}

/* Runs r and checks the error status and its result's code; frees r. */
static inline void run_err(fixture *f, store_req *r, int status, const char *code)
{
    run(f, r);
    if (r->status != status)
        fail_msg("op %d: status %d, expected %d (%s)", (int)r->op, r->status, status, code);
    assert_true(json_is_object(r->result));
    assert_string_equal(json_string_value(json_object_get(r->result, "code")), code);
    const char *msg = json_string_value(json_object_get(r->result, "message"));
    assert_non_null(msg);
    assert_true(strlen(msg) > 0);
    store_req_free(r);
}

static inline int64_t create_user(fixture *f, const char *name)
{
    char full[64];
    snprintf(full, sizeof(full), "%s%s", name, f->tag);
    store_req *r = new_req(f, STORE_USER_CREATE, 0, 0);
    store_req_set_str(&r->username, full);
    store_req_set_str(&r->password_hash, "h");
    run_ok(f, r);
    int64_t id = json_integer_value(json_object_get(r->result, "id"));
    assert_true(id > 0);
    store_req_free(r);
    return id;
}

static inline json_int_t jint(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v))
        fail_msg("%s is not an integer", key);
    return json_integer_value(v);
}

static inline const char *jstr(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v))
        fail_msg("%s is not a string", key);
    return json_string_value(v);
}

static inline bool jbool(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_boolean(v))
        fail_msg("%s is not a boolean", key);
    return json_is_true(v);
}

static inline json_t *ids(int n, const int64_t *v)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_integer(v[i]));
    return a;
}

static inline bool has_id(json_t *arr, int64_t id)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        if (json_integer_value(v) == id)
            return true;
    }
    return false;
}

/* Runs sql in the database itself, beside the store, and returns the
 * first column of its first row as an integer (0 when it returns none). */
static inline int64_t side_sql(fixture *f, const char *sql)
{
    int64_t n = 0;
    if (pg_uri) {
        PGconn *c = PQconnectdb(pg_uri);
        if (PQstatus(c) != CONNECTION_OK)
            fail_msg("side connection: %s", PQerrorMessage(c));
        PGresult *res = PQexec(c, sql);
        if (PQresultStatus(res) != PGRES_TUPLES_OK && PQresultStatus(res) != PGRES_COMMAND_OK)
            fail_msg("%s: %s", sql, PQerrorMessage(c));
        if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0)
            n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        PQclear(res);
        PQfinish(c);
    } else {
        char path[160];
        snprintf(path, sizeof(path), "%s/chatd.db", f->data_dir);
        sqlite3 *db;
        sqlite3_stmt *st;
        assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
        sqlite3_busy_timeout(db, 5000);
        if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
            fail_msg("%s: %s", sql, sqlite3_errmsg(db));
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
            n = sqlite3_column_int64(st, 0);
        else if (rc != SQLITE_DONE)
            fail_msg("%s: %s", sql, sqlite3_errmsg(db));
        sqlite3_finalize(st);
        sqlite3_close(db);
    }
    return n;
}

static inline store_req *create_req(fixture *f, int64_t owner, const char *name, int n,
                                    const int64_t *members, int64_t max)
{
    store_req *r = new_req(f, STORE_GROUP_CREATE, owner, 0);
    store_req_set_str(&r->name, name);
    r->members = ids(n, members);
    r->max_members = max;
    return r;
}

static inline int64_t create_group(fixture *f, int64_t owner, int n, const int64_t *members)
{
    store_req *r = run_ok(f, create_req(f, owner, "team", n, members, 500));
    int64_t gid = jint(json_object_get(r->result, "group"), "group_id");
    assert_true(gid > 0);
    store_req_free(r);
    return gid;
}

/* The chat list item of group gid for user (a new reference), NULL if none. */
static inline json_t *list_group(fixture *f, int64_t user, int64_t gid)
{
    store_req *r = run_ok(f, new_req(f, STORE_CHAT_LIST, user, 0));
    json_t *found = NULL;
    size_t i;
    json_t *it;
    json_array_foreach(r->result, i, it)
    {
        if (strcmp(jstr(it, "chat_type"), "group") == 0 && jint(it, "group_id") == gid)
            found = json_incref(it);
    }
    store_req_free(r);
    return found;
}

#endif
