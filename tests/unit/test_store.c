/* Unit tests for store with the SQLite backend.
 *
 * Each test opens a real store in a fresh temporary directory on a real uv
 * loop and runs the loop until its requests are done, so the whole path is
 * exercised: queue, storage thread, group transaction, async hand-back.
 * Besides every operation's statuses and results, the tests check the
 * properties the chat service leans on: a repeated client_msg_id stores
 * nothing twice, unread counts and chat lists follow the messages, many
 * sends share few transactions, store_close answers everything still
 * queued, and the data and schema version survive a reopen. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store.h"
#include "store/store_backend.h"

typedef struct {
    uv_loop_t loop;
    store *s;
    char dir[64];      /* the temporary directory */
    char data_dir[96]; /* a not yet existing directory below it */
    int done;          /* completions seen by on_done */
} fixture;

static fixture *fx; /* the running test's, for done callbacks */

static void on_done(store_req *r)
{
    (void)r;
    fx->done++;
}

static void open_store(fixture *f)
{
    char err[256] = "";
    /* The tests' tokens expire at small times, long past: the background
     * purge would take them; test_background_purge turns it on. */
    store_options o = {.store = "sqlite",
                       .data_dir = f->data_dir,
                       .durability = STORE_DURABLE_NORMAL,
                       .purge_interval_ms = -1};
    f->s = store_open_opts(&f->loop, &o, err, sizeof(err));
    if (!f->s)
        fail_msg("store_open: %s", err);
}

/* store_close, then let the loop run the async handle's close callback. */
static void close_store(fixture *f)
{
    store_close(f->s);
    f->s = NULL;
    uv_run(&f->loop, UV_RUN_DEFAULT);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_store.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->data_dir, sizeof(f->data_dir), "%s/data/sub", f->dir);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    fx = f;
    open_store(f);
    *state = f;
    return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (f->s)
        close_store(f);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    fx = NULL;
    return 0;
}

static store_req *new_req(store_op op)
{
    store_req *r = store_req_new(op, on_done, NULL);
    assert_non_null(r);
    return r;
}

/* Submits r and runs the loop until the store owes nothing: the async
 * handle keeps the loop alive exactly that long. */
static store_req *run(fixture *f, store_req *r)
{
    int before = f->done;
    store_submit(f->s, r);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->done, before + 1);
    return r;
}

static int run_status(fixture *f, store_req *r)
{
    int status = run(f, r)->status;
    store_req_free(r);
    return status;
}

static int64_t create_user(fixture *f, const char *name)
{
    store_req *r = new_req(STORE_USER_CREATE);
    store_req_set_str(&r->username, name);
    store_req_set_str(&r->password_hash, "hash");
    store_req_set_str(&r->userpic, "pic.png");
    r->time = 1000;
    run(f, r);
    assert_int_equal(r->status, STORE_OK);
    int64_t id = json_integer_value(json_object_get(r->result, "id"));
    assert_true(id > 0);
    store_req_free(r);
    return id;
}

static store_req *send_req(int64_t from, int64_t to, const char *cmid, const char *data)
{
    store_req *r = new_req(STORE_MESSAGE_SEND);
    r->user_id = from;
    r->peer_id = to;
    r->time = 5000;
    store_req_set_str(&r->msg_type, "text");
    store_req_set_str(&r->msg_data, data);
    store_req_set_str(&r->client_msg_id, cmid);
    return r;
}

/* Sends one message and returns its id. */
static int64_t send_msg(fixture *f, int64_t from, int64_t to, const char *data)
{
    store_req *r = run(f, send_req(from, to, NULL, data));
    assert_int_equal(r->status, STORE_OK);
    int64_t id = json_integer_value(json_object_get(r->result, "id"));
    store_req_free(r);
    return id;
}

static json_int_t jint(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

static const char *jstr(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    assert_true(json_is_string(v));
    return json_string_value(v);
}

static store_req *history(fixture *f, int64_t user, int64_t peer, int64_t before, int64_t limit)
{
    store_req *r = new_req(STORE_HISTORY);
    r->user_id = user;
    r->peer_id = peer;
    r->before = before;
    r->limit = limit;
    run(f, r);
    assert_int_equal(r->status, STORE_OK);
    assert_true(json_is_array(r->result));
    return r;
}

static store_req *unread(fixture *f, int64_t user)
{
    store_req *r = new_req(STORE_UNREAD);
    r->user_id = user;
    run(f, r);
    assert_int_equal(r->status, STORE_OK);
    return r;
}

static int64_t unread_total(fixture *f, int64_t user)
{
    store_req *r = unread(f, user);
    int64_t total = jint(r->result, "total");
    store_req_free(r);
    return total;
}

static void test_user_create_and_lookup(void **state)
{
    fixture *f = *state;
    store_req *r = new_req(STORE_USER_CREATE);
    store_req_set_str(&r->username, "Alice");
    store_req_set_str(&r->password_hash, "h1");
    store_req_set_str(&r->userpic, "a.png");
    run(f, r);
    assert_int_equal(r->status, STORE_OK);
    int64_t id = jint(r->result, "id");
    assert_string_equal(jstr(r->result, "username"), "Alice");
    assert_string_equal(jstr(r->result, "userpic"), "a.png");
    assert_int_equal(json_object_size(r->result), 3);
    store_req_free(r);

    /* Usernames are unique regardless of case. */
    r = new_req(STORE_USER_CREATE);
    store_req_set_str(&r->username, "aLICE");
    store_req_set_str(&r->password_hash, "h2");
    assert_int_equal(run_status(f, r), STORE_CONFLICT);

    /* No username is a caller bug: an error, not a crash or a row. */
    r = new_req(STORE_USER_CREATE);
    assert_int_equal(run_status(f, r), STORE_ERROR);

    r = new_req(STORE_USER_BY_NAME);
    store_req_set_str(&r->username, "alice");
    run(f, r);
    assert_int_equal(r->status, STORE_OK);
    assert_int_equal(jint(r->result, "id"), id);
    assert_string_equal(jstr(r->result, "username"), "Alice");
    assert_string_equal(jstr(r->result, "password_hash"), "h1");
    store_req_free(r);

    r = new_req(STORE_USER_BY_NAME);
    store_req_set_str(&r->username, "nobody");
    assert_int_equal(run_status(f, r), STORE_NOT_FOUND);

    r = new_req(STORE_USER_BY_ID);
    r->user_id = id;
    run(f, r);
    assert_int_equal(r->status, STORE_OK);
    assert_string_equal(jstr(r->result, "username"), "Alice");
    assert_null(json_object_get(r->result, "password_hash"));
    store_req_free(r);

    r = new_req(STORE_USER_BY_ID);
    r->user_id = id + 100;
    assert_int_equal(run_status(f, r), STORE_NOT_FOUND);

    /* A user created without a picture has an empty one, not null. */
    r = new_req(STORE_USER_CREATE);
    store_req_set_str(&r->username, "plain");
    run(f, r);
    assert_int_equal(r->status, STORE_OK);
    assert_string_equal(jstr(r->result, "userpic"), "");
    store_req_free(r);
}

static store_req *external(fixture *f, const char *ext, const char *name, const char *pic)
{
    store_req *r = new_req(STORE_USER_EXTERNAL);
    store_req_set_str(&r->external_id, ext);
    store_req_set_str(&r->username, name);
    store_req_set_str(&r->userpic, pic);
    return run(f, r);
}

static void test_user_external(void **state)
{
    fixture *f = *state;
    store_req *r = external(f, "sub1", "carol", "c1.png");
    assert_int_equal(r->status, STORE_OK);
    int64_t carol = jint(r->result, "id");
    store_req_free(r);

    /* Seen again: the same user, picture and name refreshed. */
    r = external(f, "sub1", "Caroline", "c2.png");
    assert_int_equal(r->status, STORE_OK);
    assert_int_equal(jint(r->result, "id"), carol);
    assert_string_equal(jstr(r->result, "username"), "Caroline");
    assert_string_equal(jstr(r->result, "userpic"), "c2.png");
    store_req_free(r);
    r = new_req(STORE_USER_BY_ID);
    r->user_id = carol;
    run(f, r);
    assert_string_equal(jstr(r->result, "userpic"), "c2.png");
    store_req_free(r);

    /* A name held by someone else gets the external id appended, both on
     * creation and on refresh. */
    int64_t dave = create_user(f, "dave");
    r = external(f, "sub2", "Dave", "");
    assert_int_equal(r->status, STORE_OK);
    assert_true(jint(r->result, "id") != dave);
    assert_string_equal(jstr(r->result, "username"), "Dave#sub2");
    store_req_free(r);
    r = external(f, "sub1", "DAVE", "c2.png");
    assert_int_equal(r->status, STORE_OK);
    assert_int_equal(jint(r->result, "id"), carol);
    assert_string_equal(jstr(r->result, "username"), "DAVE#sub1");
    store_req_free(r);
    /* Seen again unchanged: still the suffixed name, nothing conflicts. */
    r = external(f, "sub1", "DAVE", "c2.png");
    assert_int_equal(r->status, STORE_OK);
    assert_string_equal(jstr(r->result, "username"), "DAVE#sub1");
    store_req_free(r);

    r = new_req(STORE_USER_EXTERNAL);
    store_req_set_str(&r->username, "x");
    assert_int_equal(run_status(f, r), STORE_ERROR);
}

static void sql(fixture *f, const char *text);

static store_req *search(fixture *f, int64_t self, const char *q, int64_t limit)
{
    store_req *r = new_req(STORE_USER_SEARCH);
    r->user_id = self;
    store_req_set_str(&r->query, q);
    r->limit = limit;
    run(f, r);
    assert_int_equal(r->status, STORE_OK);
    assert_true(json_is_array(r->result));
    return r;
}

static void test_user_search(void **state)
{
    fixture *f = *state;
    int64_t alice = create_user(f, "alice");
    create_user(f, "malice");
    create_user(f, "Alicia");
    create_user(f, "J\xc3\xbcrgen");
    int64_t bob = create_user(f, "bob");

    /* Prefixes of the key, in key order: case ignored, no substring. */
    store_req *r = search(f, bob, "ALI", 10);
    assert_int_equal(json_array_size(r->result), 2);
    assert_string_equal(jstr(json_array_get(r->result, 0), "username"), "alice");
    assert_string_equal(jstr(json_array_get(r->result, 1), "username"), "Alicia");
    assert_int_equal(json_object_size(json_array_get(r->result, 0)), 4); /* and last_seen */
    store_req_free(r);

    /* The key's rules: NFD and fullwidth forms find the NFC name. */
    r = search(f, bob, "ju\xcc\x88r", 10);
    assert_int_equal(json_array_size(r->result), 1);
    assert_string_equal(jstr(json_array_get(r->result, 0), "username"), "J\xc3\xbcrgen");
    store_req_free(r);
    r = search(f, bob, "\xef\xbd\x8d\xef\xbd\x81l", 10); /* fullwidth "ma" + "l" */
    assert_int_equal(json_array_size(r->result), 1);
    assert_string_equal(jstr(json_array_get(r->result, 0), "username"), "malice");
    store_req_free(r);

    /* The searching user is left out; limit holds. */
    r = search(f, alice, "ali", 1);
    assert_int_equal(json_array_size(r->result), 1);
    assert_string_equal(jstr(json_array_get(r->result, 0), "username"), "Alicia");
    store_req_free(r);

    /* No wildcards, and a query that is no prefix finds nothing. */
    r = search(f, alice, "%", 10);
    assert_int_equal(json_array_size(r->result), 0);
    store_req_free(r);
    r = search(f, alice, "lice", 10);
    assert_int_equal(json_array_size(r->result), 0);
    store_req_free(r);
    r = search(f, alice, "\xff", 10); /* not UTF-8: no key */
    assert_int_equal(json_array_size(r->result), 0);
    store_req_free(r);
}

/* The search statement seeks the name_key index (a range, in index order:
 * no scan of users, no sort), with many users and with none. */
static void test_user_search_plan(void **state)
{
    fixture *f = *state;
    close_store(f);
    sql(f, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)"
           " INSERT INTO users(username, created_at, name_key)"
           " SELECT 'user' || i, 0, 'user' || i FROM n; ANALYZE;");
    char path[160];
    snprintf(path, sizeof(path), "%s/chatd.db", f->data_dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char q[1024];
    snprintf(q, sizeof(q), "EXPLAIN QUERY PLAN %s", store_sqlite_search_sql());
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, q, -1, &st, NULL), SQLITE_OK);
    char plan[1024] = "";
    while (sqlite3_step(st) == SQLITE_ROW) {
        strncat(plan, (const char *)sqlite3_column_text(st, 3), sizeof(plan) - strlen(plan) - 2);
        strcat(plan, ";");
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    print_message("search plan: %s\n", plan);
    assert_non_null(strstr(plan, "SEARCH users USING INDEX users_name_key (name_key>? AND "
                                 "name_key<?)"));
    assert_null(strstr(plan, "SCAN"));
    assert_null(strstr(plan, "TEMP B-TREE"));
    open_store(f);
    store_req *r = search(f, 1, "user42", 5);
    assert_int_equal(json_array_size(r->result), 5);
    assert_string_equal(jstr(json_array_get(r->result, 0), "username"), "user42");
    assert_string_equal(jstr(json_array_get(r->result, 1), "username"), "user420");
    store_req_free(r);
}

static store_req *token_req(store_op op, uint8_t seed)
{
    store_req *r = new_req(op);
    memset(r->token_hash, seed, sizeof(r->token_hash));
    return r;
}

static void test_tokens(void **state)
{
    fixture *f = *state;
    int64_t alice = create_user(f, "alice");

    store_req *r = token_req(STORE_TOKEN_CREATE, 1);
    r->user_id = alice;
    r->expires = 10000;
    run(f, r);
    assert_int_equal(r->status, STORE_OK);
    assert_true(json_is_null(r->result));
    store_req_free(r);

    r = token_req(STORE_TOKEN_CREATE, 1);
    r->user_id = alice;
    r->expires = 20000;
    assert_int_equal(run_status(f, r), STORE_CONFLICT);

    r = token_req(STORE_TOKEN_CREATE, 2);
    r->user_id = alice + 1;
    r->expires = 20000;
    assert_int_equal(run_status(f, r), STORE_NOT_FOUND);

    /* Valid strictly before expires. */
    r = token_req(STORE_TOKEN_LOOKUP, 1);
    r->time = 9999;
    run(f, r);
    assert_int_equal(r->status, STORE_OK);
    assert_int_equal(jint(r->result, "id"), alice);
    assert_string_equal(jstr(r->result, "username"), "alice");
    assert_int_equal(jint(r->result, "expires"), 10000); /* the token cache stops there */
    store_req_free(r);

    r = token_req(STORE_TOKEN_LOOKUP, 1);
    r->time = 10000;
    assert_int_equal(run_status(f, r), STORE_NOT_FOUND);

    r = token_req(STORE_TOKEN_LOOKUP, 3);
    r->time = 1;
    assert_int_equal(run_status(f, r), STORE_NOT_FOUND);

    r = token_req(STORE_TOKEN_DELETE, 1);
    assert_int_equal(run_status(f, r), STORE_OK);
    r = token_req(STORE_TOKEN_DELETE, 1);
    assert_int_equal(run_status(f, r), STORE_NOT_FOUND);
    r = token_req(STORE_TOKEN_LOOKUP, 1);
    r->time = 1;
    assert_int_equal(run_status(f, r), STORE_NOT_FOUND);
}

static void test_message_send(void **state)
{
    fixture *f = *state;
    int64_t alice = create_user(f, "alice");
    int64_t bob = create_user(f, "bob");

    store_req *r = run(f, send_req(alice, bob, NULL, "hello"));
    assert_int_equal(r->status, STORE_OK);
    assert_false(r->duplicate);
    json_t *m = r->result;
    assert_int_equal(json_object_size(m), 10);
    int64_t id1 = jint(m, "id");
    assert_true(id1 > 0);
    assert_int_equal(jint(m, "to_id"), bob);
    assert_int_equal(jint(m, "from_id"), alice);
    assert_string_equal(jstr(m, "from_username"), "alice");
    assert_string_equal(jstr(m, "from_userpic"), "pic.png");
    assert_string_equal(jstr(m, "type"), "text");
    assert_string_equal(jstr(m, "data"), "hello");
    assert_int_equal(jint(m, "time"), 5000);
    assert_true(json_is_null(json_object_get(m, "client_msg_id")));
    store_req_free(r);

    r = run(f, send_req(bob, alice, "c-1", "hi"));
    assert_int_equal(r->status, STORE_OK);
    assert_true(jint(r->result, "id") > id1);
    assert_string_equal(jstr(r->result, "client_msg_id"), "c-1");
    assert_string_equal(jstr(r->result, "from_username"), "bob");
    store_req_free(r);

    /* No such recipient, no such sender. */
    assert_int_equal(run_status(f, send_req(alice, bob + 100, NULL, "x")), STORE_NOT_FOUND);
    assert_int_equal(run_status(f, send_req(bob + 100, alice, NULL, "x")), STORE_NOT_FOUND);
    store_req *bad = send_req(alice, bob, NULL, "x");
    store_req_set_str(&bad->msg_data, NULL);
    assert_int_equal(run_status(f, bad), STORE_ERROR);

    /* Nothing of the refused ones was stored. */
    r = history(f, alice, bob, 0, 0);
    assert_int_equal(json_array_size(r->result), 2);
    store_req_free(r);
}

static void test_duplicate_client_msg_id(void **state)
{
    fixture *f = *state;
    int64_t alice = create_user(f, "alice");
    int64_t bob = create_user(f, "bob");

    store_req *r = run(f, send_req(alice, bob, "dup", "first"));
    assert_int_equal(r->status, STORE_OK);
    assert_false(r->duplicate);
    int64_t id = jint(r->result, "id");
    store_req_free(r);

    /* A resend (even with other content) returns the stored message. */
    r = run(f, send_req(alice, bob, "dup", "second"));
    assert_int_equal(r->status, STORE_OK);
    assert_true(r->duplicate);
    assert_int_equal(jint(r->result, "id"), id);
    assert_string_equal(jstr(r->result, "data"), "first");
    assert_string_equal(jstr(r->result, "client_msg_id"), "dup");
    assert_string_equal(jstr(r->result, "from_username"), "alice");
    assert_int_equal(json_object_size(r->result), 10);
    store_req_free(r);

    /* Twice in one group transaction: still stored once. */
    store_req *a = send_req(alice, bob, "same-pass", "x");
    store_req *b = send_req(alice, bob, "same-pass", "x");
    int before = f->done;
    store_submit(f->s, a);
    store_submit(f->s, b);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->done, before + 2);
    assert_int_equal(a->status, STORE_OK);
    assert_int_equal(b->status, STORE_OK);
    assert_false(a->duplicate);
    assert_true(b->duplicate);
    assert_int_equal(jint(a->result, "id"), jint(b->result, "id"));
    store_req_free(a);
    store_req_free(b);

    /* client_msg_id is per sender. */
    r = run(f, send_req(bob, alice, "dup", "from bob"));
    assert_int_equal(r->status, STORE_OK);
    assert_false(r->duplicate);
    assert_true(jint(r->result, "id") != id);
    store_req_free(r);

    r = history(f, alice, bob, 0, 0);
    assert_int_equal(json_array_size(r->result), 3);
    store_req_free(r);
    /* Duplicates did not count as unread either. */
    assert_int_equal(unread_total(f, bob), 2);
    assert_int_equal(unread_total(f, alice), 1);
}

static void test_unread_and_chat_list(void **state)
{
    fixture *f = *state;
    int64_t a = create_user(f, "a");
    int64_t b = create_user(f, "b");
    int64_t c = create_user(f, "c");

    int64_t m1 = send_msg(f, a, b, "a1");
    send_msg(f, c, b, "c1");
    int64_t m3 = send_msg(f, b, c, "b1");
    int64_t m4 = send_msg(f, c, b, "c2");

    store_req *r = new_req(STORE_CHAT_LIST);
    r->user_id = b;
    run(f, r);
    assert_int_equal(r->status, STORE_OK);
    assert_int_equal(json_array_size(r->result), 2);
    json_t *first = json_array_get(r->result, 0), *second = json_array_get(r->result, 1);
    assert_int_equal(json_object_size(first), 12); /* and last_seen, chat_type, from_id */
    assert_string_equal(jstr(first, "chat_type"), "single");
    assert_int_equal(jint(first, "userid"), c);
    assert_string_equal(jstr(first, "username"), "c");
    assert_string_equal(jstr(first, "userpic"), "pic.png");
    assert_string_equal(jstr(first, "type"), "text");
    assert_string_equal(jstr(first, "data"), "c2");
    assert_int_equal(jint(first, "time"), 5000);
    assert_int_equal(jint(first, "noreadnum"), 2);
    assert_int_equal(jint(first, "last_message_id"), m4);
    assert_int_equal(jint(first, "last_seq"), 3); /* c1, b1, c2 */
    assert_int_equal(jint(first, "from_id"), c);  /* the newest message's sender */
    assert_int_equal(jint(second, "userid"), a);
    assert_int_equal(jint(second, "from_id"), a);
    assert_int_equal(jint(second, "noreadnum"), 1);
    assert_int_equal(jint(second, "last_message_id"), m1);
    assert_int_equal(jint(second, "last_seq"), 1);
    store_req_free(r);

    /* The sender's own conversation moves too, without unread. */
    r = new_req(STORE_CHAT_LIST);
    r->user_id = c;
    run(f, r);
    assert_int_equal(json_array_size(r->result), 1);
    assert_int_equal(jint(json_array_get(r->result, 0), "noreadnum"), 1);
    assert_int_equal(jint(json_array_get(r->result, 0), "last_message_id"), m4);
    store_req_free(r);

    r = unread(f, b);
    assert_int_equal(jint(r->result, "total"), 3);
    json_t *convs = json_object_get(r->result, "conversations");
    assert_int_equal(json_array_size(convs), 2);
    assert_int_equal(jint(json_array_get(convs, 0), "userid"), c);
    assert_int_equal(jint(json_array_get(convs, 0), "noreadnum"), 2);
    assert_int_equal(jint(json_array_get(convs, 1), "userid"), a);
    store_req_free(r);

    /* Reading c's conversation: b's total drops to a's 1; the receipt
     * points at the newest message from c. */
    r = new_req(STORE_READ);
    r->user_id = b;
    r->peer_id = c;
    run(f, r);
    assert_int_equal(r->status, STORE_OK);
    assert_int_equal(jint(r->result, "total"), 1);
    assert_int_equal(jint(r->result, "last_read_id"), m4);
    assert_true(json_is_true(json_object_get(r->result, "changed")));
    store_req_free(r);

    r = unread(f, b);
    convs = json_object_get(r->result, "conversations");
    assert_int_equal(json_array_size(convs), 1);
    assert_int_equal(jint(json_array_get(convs, 0), "userid"), a);
    store_req_free(r);

    /* Reading again changes nothing; c never got anything from b except m3. */
    r = new_req(STORE_READ);
    r->user_id = b;
    r->peer_id = c;
    run(f, r);
    assert_int_equal(jint(r->result, "total"), 1);
    assert_int_equal(jint(r->result, "last_read_id"), m4);
    assert_true(json_is_false(json_object_get(r->result, "changed")));
    store_req_free(r);
    r = new_req(STORE_READ);
    r->user_id = c;
    r->peer_id = b;
    run(f, r);
    assert_int_equal(jint(r->result, "total"), 0);
    assert_int_equal(jint(r->result, "last_read_id"), m3);
    store_req_free(r);

    /* No conversation yet: nothing to read, not an error. */
    r = new_req(STORE_READ);
    r->user_id = a;
    r->peer_id = c;
    run(f, r);
    assert_int_equal(r->status, STORE_OK);
    assert_int_equal(jint(r->result, "total"), 0);
    assert_int_equal(jint(r->result, "last_read_id"), 0);
    assert_true(json_is_false(json_object_get(r->result, "changed")));
    store_req_free(r);

    r = new_req(STORE_READ);
    r->user_id = b;
    r->peer_id = c + 100;
    assert_int_equal(run_status(f, r), STORE_NOT_FOUND);

    /* A new message after reading counts again and moves a to the top. */
    send_msg(f, a, b, "a2");
    r = new_req(STORE_CHAT_LIST);
    r->user_id = b;
    run(f, r);
    assert_int_equal(jint(json_array_get(r->result, 0), "userid"), a);
    assert_int_equal(jint(json_array_get(r->result, 0), "noreadnum"), 2);
    assert_int_equal(jint(json_array_get(r->result, 1), "noreadnum"), 0);
    store_req_free(r);

    r = new_req(STORE_CHAT_LIST);
    r->user_id = c + 100;
    run(f, r);
    assert_int_equal(r->status, STORE_OK);
    assert_int_equal(json_array_size(r->result), 0);
    store_req_free(r);
    r = unread(f, c + 100);
    assert_int_equal(jint(r->result, "total"), 0);
    assert_int_equal(json_array_size(json_object_get(r->result, "conversations")), 0);
    store_req_free(r);
}

static void test_history(void **state)
{
    fixture *f = *state;
    int64_t a = create_user(f, "a");
    int64_t b = create_user(f, "b");
    int64_t c = create_user(f, "c");
    int64_t ids[10];
    for (int i = 0; i < 10; i++) {
        ids[i] = send_msg(f, i % 2 ? b : a, i % 2 ? a : b, "ab");
        send_msg(f, a, c, "ac"); /* another conversation in between */
    }

    /* Newest first, limit, before exclusive, both directions. */
    store_req *r = history(f, a, b, 0, 4);
    assert_int_equal(json_array_size(r->result), 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(jint(json_array_get(r->result, (size_t)i), "id"), ids[9 - i]);
    json_t *m = json_array_get(r->result, 0);
    assert_int_equal(json_object_size(m), 10);
    assert_int_equal(jint(m, "from_id"), b);
    assert_string_equal(jstr(m, "from_username"), "b");
    store_req_free(r);

    r = history(f, b, a, ids[6], 4);
    assert_int_equal(json_array_size(r->result), 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(jint(json_array_get(r->result, (size_t)i), "id"), ids[5 - i]);
    store_req_free(r);

    r = history(f, a, b, ids[2], 4);
    assert_int_equal(json_array_size(r->result), 2);
    assert_int_equal(jint(json_array_get(r->result, 0), "id"), ids[1]);
    assert_int_equal(jint(json_array_get(r->result, 1), "id"), ids[0]);
    store_req_free(r);

    r = history(f, a, b, ids[0], 4);
    assert_int_equal(json_array_size(r->result), 0);
    store_req_free(r);

    /* before may be any id, also one of another conversation: the
     * messages older than it. The a-c message sent right after ids[4] is
     * newer than ids[4] and older than ids[5]. */
    r = history(f, a, b, ids[4] + 1, 10);
    assert_int_equal(json_array_size(r->result), 5);
    assert_int_equal(jint(json_array_get(r->result, 0), "id"), ids[4]);
    assert_int_equal(jint(json_array_get(r->result, 0), "seq"), 5);
    store_req_free(r);
    r = history(f, a, b, ids[9] + 1000, 2);
    assert_int_equal(json_array_size(r->result), 2);
    assert_int_equal(jint(json_array_get(r->result, 0), "id"), ids[9]);
    store_req_free(r);
    r = history(f, a, b, 1, 10); /* older than every message */
    assert_int_equal(json_array_size(r->result), 0);
    store_req_free(r);

    /* No limit: the whole conversation; no conversation: empty. */
    r = history(f, a, b, 0, 0);
    assert_int_equal(json_array_size(r->result), 10);
    store_req_free(r);
    r = history(f, b, c, 0, 10);
    assert_int_equal(json_array_size(r->result), 0);
    store_req_free(r);
}

static store_req *sync_req(fixture *f, int64_t user, int64_t after, int64_t limit)
{
    store_req *r = new_req(STORE_SYNC);
    r->user_id = user;
    r->after = after;
    r->limit = limit;
    run(f, r);
    assert_int_equal(r->status, STORE_OK);
    return r;
}

static void test_sync(void **state)
{
    fixture *f = *state;
    int64_t a = create_user(f, "a");
    int64_t b = create_user(f, "b");
    int64_t c = create_user(f, "c");
    int64_t mine[12];
    int n = 0;
    for (int i = 0; i < 6; i++) {
        mine[n++] = send_msg(f, a, b, "to b");
        send_msg(f, a, c, "not b's");
        mine[n++] = send_msg(f, b, c, "from b");
    }

    /* Oldest first, after exclusive, both directions, others' left out. */
    store_req *r = sync_req(f, b, 0, 5);
    assert_int_equal(json_array_size(r->result), 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(jint(json_array_get(r->result, (size_t)i), "id"), mine[i]);
    assert_int_equal(json_object_size(json_array_get(r->result, 0)), 10);
    store_req_free(r);

    r = sync_req(f, b, mine[4], 5);
    assert_int_equal(json_array_size(r->result), 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(jint(json_array_get(r->result, (size_t)i), "id"), mine[5 + i]);
    store_req_free(r);

    r = sync_req(f, b, mine[9], 5);
    assert_int_equal(json_array_size(r->result), 2);
    assert_int_equal(jint(json_array_get(r->result, 1), "id"), mine[11]);
    store_req_free(r);

    r = sync_req(f, b, mine[11], 5);
    assert_int_equal(json_array_size(r->result), 0);
    store_req_free(r);

    r = sync_req(f, b, 0, 0);
    assert_int_equal(json_array_size(r->result), 12);
    store_req_free(r);
}

static void sql(fixture *f, const char *text);
static int64_t user_version(fixture *f);

/* Takes a database of the latest schema back to 8 (migration 9 undone). */
#define UNDO_9                                                                                     \
    "DROP TABLE hidden_messages; DROP INDEX messages_uncounted;"                                   \
    "ALTER TABLE messages DROP COLUMN recalled; ALTER TABLE messages DROP COLUMN width;"           \
    "ALTER TABLE messages DROP COLUMN height; ALTER TABLE users DROP COLUMN hide_cursor;"

/* Takes a database of the latest schema back to 7 (migrations 9 and 8 undone). */
#define UNDO_8                                                                                     \
    UNDO_9                                                                                         \
    "ALTER TABLE group_members DROP COLUMN left_name;"                                             \
    "ALTER TABLE group_members DROP COLUMN left_avatar;"                                           \
    "ALTER TABLE group_members DROP COLUMN left_member_count;"                                     \
    "ALTER TABLE group_members DROP COLUMN left_owner_id;"                                         \
    "ALTER TABLE group_members DROP COLUMN left_dissolved;"

/* Takes a database of the latest schema back to 6 (migrations 9, 8 and 7
 * undone: the tables go). */
#define UNDO_7 UNDO_9 "DROP TABLE group_members; DROP TABLE groups;"

/* Takes a database of the latest schema back to 5 (migrations 7 and 6 undone). */
#define UNDO_6                                                                                     \
    UNDO_7 "ALTER TABLE users DROP COLUMN last_seen; ALTER TABLE users DROP COLUMN "               \
           "hide_last_seen;"

/* Takes a database of the latest schema back to 4 (migrations 7, 6 and 5 undone). */
#define UNDO_5                                                                                     \
    UNDO_6 "DROP INDEX tokens_user; DROP INDEX tokens_expiry;"                                     \
           "ALTER TABLE users DROP COLUMN disabled; ALTER TABLE users DROP COLUMN tokens_nbf;"

/* Sends one message and returns its seq. */
static int64_t send_seq(fixture *f, int64_t from, int64_t to, const char *cmid)
{
    store_req *r = run(f, send_req(from, to, cmid, "x"));
    assert_int_equal(r->status, STORE_OK);
    int64_t seq = jint(r->result, "seq");
    store_req_free(r);
    return seq;
}

/* seq counts 1, 2, 3 per conversation, whoever sends; a duplicate keeps
 * its seq and takes none; a failed group pass, whose sends are re-run one
 * by one, leaves no hole. */
static void test_seq(void **state)
{
    fixture *f = *state;
    int64_t a = create_user(f, "a");
    int64_t b = create_user(f, "b");
    int64_t c = create_user(f, "c");
    assert_int_equal(send_seq(f, a, b, NULL), 1);
    assert_int_equal(send_seq(f, b, a, "b-1"), 2);
    assert_int_equal(send_seq(f, c, a, NULL), 1);
    assert_int_equal(send_seq(f, a, b, NULL), 3);
    assert_int_equal(send_seq(f, b, a, "b-1"), 2); /* the stored one */
    assert_int_equal(send_seq(f, b, c, NULL), 1);
    assert_int_equal(send_seq(f, a, c, NULL), 2);

    /* One pass: a-b 4, a-b 5 (a duplicate of itself in between), b-c 2. */
    store_req *rs[4] = {send_req(a, b, "p-1", "x"), send_req(a, b, "p-1", "x"),
                        send_req(b, a, NULL, "x"), send_req(c, b, NULL, "x")};
    int before = f->done;
    for (int i = 0; i < 4; i++)
        store_submit(f->s, rs[i]);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->done, before + 4);
    int64_t want[4] = {4, 4, 5, 2};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(rs[i]->status, STORE_OK);
        assert_int_equal(jint(rs[i]->result, "seq"), want[i]);
        store_req_free(rs[i]);
    }

    /* A pass that fails (a request without its inputs) is rolled back and
     * re-run request by request: the seqs the failed pass handed out are
     * handed out again, not skipped. */
    store_req *g[4] = {send_req(a, b, NULL, "x"), new_req(STORE_USER_CREATE),
                       send_req(b, a, NULL, "x"), send_req(a, c, NULL, "x")};
    before = f->done;
    for (int i = 0; i < 4; i++)
        store_submit(f->s, g[i]);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->done, before + 4);
    assert_int_equal(g[1]->status, STORE_ERROR);
    assert_int_equal(jint(g[0]->result, "seq"), 6);
    assert_int_equal(jint(g[2]->result, "seq"), 7);
    assert_int_equal(jint(g[3]->result, "seq"), 3);
    for (int i = 0; i < 4; i++)
        store_req_free(g[i]);

    /* History (newest first) holds 7..1 without a hole, and after a reopen
     * the numbering goes on. */
    store_req *r = history(f, b, a, 0, 0);
    assert_int_equal(json_array_size(r->result), 7);
    for (size_t i = 0; i < 7; i++)
        assert_int_equal(jint(json_array_get(r->result, i), "seq"), 7 - (json_int_t)i);
    store_req_free(r);
    close_store(f);
    open_store(f);
    assert_int_equal(send_seq(f, a, b, NULL), 8);
    assert_int_equal(send_seq(f, c, b, NULL), 3);
}

static store_req *sync_cursors(fixture *f, int64_t user, json_t *cursors, int64_t limit)
{
    store_req *r = new_req(STORE_SYNC_CURSORS);
    r->user_id = user;
    r->cursors = cursors;
    r->limit = limit;
    run(f, r);
    assert_int_equal(r->status, STORE_OK);
    assert_int_equal(json_object_size(r->result), 1);
    return r;
}

/* Checks conversation i of a STORE_SYNC_CURSORS result: its peer, the seqs
 * of its messages (first..last, none when first > last) and more. */
static void check_conv(store_req *r, size_t i, int64_t peer, int64_t first, int64_t last, bool more)
{
    json_t *conv = json_array_get(json_object_get(r->result, "conversations"), i);
    assert_non_null(conv);
    assert_int_equal(json_object_size(conv), 3);
    assert_int_equal(jint(conv, "userid"), peer);
    json_t *msgs = json_object_get(conv, "messages");
    int64_t n = first > last ? 0 : last - first + 1;
    assert_int_equal(json_array_size(msgs), (size_t)n);
    for (int64_t k = 0; k < n; k++) {
        json_t *m = json_array_get(msgs, (size_t)k);
        assert_int_equal(json_object_size(m), 10);
        assert_int_equal(jint(m, "seq"), first + k);
    }
    assert_true(json_is_boolean(json_object_get(conv, "more")));
    assert_int_equal(json_is_true(json_object_get(conv, "more")), more);
}

static size_t conv_count(store_req *r)
{
    return json_array_size(json_object_get(r->result, "conversations"));
}

static void test_sync_cursors(void **state)
{
    fixture *f = *state;
    int64_t a = create_user(f, "a");
    int64_t b = create_user(f, "b");
    int64_t c = create_user(f, "c");
    int64_t d = create_user(f, "d");
    for (int i = 0; i < 5; i++)
        send_seq(f, i % 2 ? b : a, i % 2 ? a : b, NULL); /* a-b 1..5 */
    for (int i = 0; i < 3; i++)
        send_seq(f, c, a, NULL); /* a-c 1..3, more recent than a-b */
    send_seq(f, b, c, NULL);     /* not a's */

    char kb[24], kc[24];
    snprintf(kb, sizeof(kb), "%lld", (long long)b);
    snprintf(kc, sizeof(kc), "%lld", (long long)c);

    /* No cursors: everything, the most recent conversation first. */
    store_req *r = sync_cursors(f, a, json_object(), 0);
    assert_int_equal(conv_count(r), 2);
    check_conv(r, 0, c, 1, 3, false);
    check_conv(r, 1, b, 1, 5, false);
    store_req_free(r);
    /* NULL cursors mean the same. */
    r = sync_cursors(f, a, NULL, 0);
    assert_int_equal(conv_count(r), 2);
    store_req_free(r);

    /* After the cursors; a caught-up conversation is left out. */
    r = sync_cursors(f, a, json_pack("{s:i, s:i}", kb, 3, kc, 3), 0);
    assert_int_equal(conv_count(r), 1);
    check_conv(r, 0, b, 4, 5, false);
    store_req_free(r);
    r = sync_cursors(f, a, json_pack("{s:i, s:i}", kb, 5, kc, 7), 0);
    assert_int_equal(conv_count(r), 0);
    store_req_free(r);

    /* The limit cuts across conversations; past it they come empty. */
    r = sync_cursors(f, a, json_pack("{s:i}", kb, 1), 2);
    assert_int_equal(conv_count(r), 2);
    check_conv(r, 0, c, 1, 2, true);
    check_conv(r, 1, b, 2, 1, true);
    store_req_free(r);
    r = sync_cursors(f, a, json_pack("{s:i, s:i}", kb, 1, kc, 2), 2);
    check_conv(r, 0, c, 3, 3, false);
    check_conv(r, 1, b, 2, 2, true);
    store_req_free(r);
    r = sync_cursors(f, a, json_pack("{s:i}", kb, 1), 7);
    check_conv(r, 0, c, 1, 3, false);
    check_conv(r, 1, b, 2, 5, false);
    store_req_free(r);

    /* Someone without conversations; a send in the same pass is seen. */
    r = sync_cursors(f, d, json_object(), 0);
    assert_int_equal(conv_count(r), 0);
    store_req_free(r);
    store_req *s = send_req(d, a, NULL, "x");
    store_req *q = new_req(STORE_SYNC_CURSORS);
    q->user_id = a;
    q->cursors = json_pack("{s:i, s:i}", kb, 5, kc, 3);
    int before = f->done;
    store_submit(f->s, s);
    store_submit(f->s, q);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->done, before + 2);
    assert_int_equal(q->status, STORE_OK);
    check_conv(q, 0, d, 1, 1, false);
    store_req_free(s);
    store_req_free(q);
}

/* A database of schema 3 (messages without seq, the old index) gets its
 * seqs numbered per conversation in id order, and the unique index. */
static void test_seq_migration(void **state)
{
    fixture *f = *state;
    close_store(f);
    sql(f, UNDO_5
        "DROP INDEX messages_seq; ALTER TABLE messages DROP COLUMN seq;"
        "CREATE INDEX messages_conv ON messages(conv_lo, conv_hi, id);"
        "PRAGMA user_version = 3;"
        "INSERT INTO users(id, username, created_at, name_key) VALUES(1, 'a', 0, 'a'),"
        " (2, 'b', 0, 'b'), (3, 'c', 0, 'c');"
        "INSERT INTO messages(id, from_id, to_id, conv_lo, conv_hi, type, data, time)"
        " VALUES(10, 1, 2, 1, 2, 'text', 'ab1', 0), (11, 3, 1, 1, 3, 'text', 'ac1', 0),"
        " (12, 2, 1, 1, 2, 'text', 'ab2', 0), (14, 1, 2, 1, 2, 'text', 'ab3', 0),"
        " (13, 1, 3, 1, 3, 'text', 'ac2', 0);"
        "INSERT INTO conversations(user_id, peer_id, last_message_id, unread, last_in_id)"
        " VALUES(1, 2, 14, 1, 12), (2, 1, 14, 2, 14), (1, 3, 13, 1, 11), (3, 1, 13, 1, 13);");
    open_store(f);
    assert_int_equal(user_version(f), STORE_SQLITE_SCHEMA_VERSION);
    store_req *r = history(f, 1, 2, 0, 0);
    assert_int_equal(json_array_size(r->result), 3);
    int64_t ids[3] = {14, 12, 10};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(jint(json_array_get(r->result, i), "id"), ids[i]);
        assert_int_equal(jint(json_array_get(r->result, i), "seq"), 3 - (json_int_t)i);
    }
    store_req_free(r);
    r = history(f, 3, 1, 0, 0);
    assert_int_equal(jint(json_array_get(r->result, 0), "seq"), 2);
    assert_int_equal(jint(json_array_get(r->result, 1), "seq"), 1);
    store_req_free(r);
    assert_int_equal(send_seq(f, 2, 1, NULL), 4);
    assert_int_equal(send_seq(f, 1, 3, NULL), 3);
    close_store(f);
    /* The old index is gone, the unique one is there (else the statement
     * fails: abs() of the smallest integer is an overflow error). */
    sql(f, "SELECT CASE WHEN (SELECT count(*) FROM sqlite_schema WHERE name = 'messages_conv') = 0"
           " AND (SELECT sql FROM sqlite_schema WHERE name = 'messages_seq') LIKE '%UNIQUE%'"
           " THEN 1 ELSE abs(-9223372036854775807 - 1) END;");
    open_store(f);
}

static void test_group_commit(void **state)
{
    fixture *f = *state;
    enum { N = 2000 };
    int64_t users[4];
    for (int i = 0; i < 4; i++) {
        char name[16];
        snprintf(name, sizeof(name), "u%d", i);
        users[i] = create_user(f, name);
    }
    uint64_t commits0, writes0, commits1, writes1;
    store_stats(f->s, &commits0, &writes0);

    store_req **reqs = calloc(N, sizeof(*reqs));
    assert_non_null(reqs);
    int before = f->done;
    for (int i = 0; i < N; i++) {
        char cmid[16];
        snprintf(cmid, sizeof(cmid), "m%d", i);
        reqs[i] = send_req(users[i % 4], users[(i + 1) % 4], cmid, "burst");
        store_submit(f->s, reqs[i]);
    }
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->done, before + N);
    /* Ids follow submission order. */
    int64_t last_id = 0;
    for (int i = 0; i < N; i++) {
        assert_int_equal(reqs[i]->status, STORE_OK);
        int64_t id = jint(reqs[i]->result, "id");
        assert_true(id > last_id);
        last_id = id;
        store_req_free(reqs[i]);
    }
    free(reqs);

    store_stats(f->s, &commits1, &writes1);
    assert_int_equal(writes1 - writes0, N);
    assert_true(commits1 - commits0 >= 1);
    assert_true(commits1 - commits0 < N / 4);

    /* Every user got N/4 messages, all unread. */
    for (int i = 0; i < 4; i++)
        assert_int_equal(unread_total(f, users[i]), N / 4);
}

/* Sustained traffic over many conversations: big group transactions,
 * conversation changes merged within them, and the background WAL
 * checkpoints running next to the writer. Nothing may get lost or counted
 * twice on the way, and everything is still there after a reopen. */
enum { BULK_USERS = 1000, BULK_SENDS = 40000, BULK_WINDOW = 4000 };
static int64_t bulk_first_user;
static int bulk_submitted, bulk_ok;

static void on_bulk(store_req *r);

/* Message i goes from user i % BULK_USERS to another, spread over many
 * conversations so every commit dirties many pages. */
static void bulk_submit_next(void)
{
    int i = bulk_submitted++;
    char cmid[24];
    snprintf(cmid, sizeof(cmid), "bulk-%d", i);
    int64_t from = bulk_first_user + i % BULK_USERS;
    int64_t to = bulk_first_user + (i * 7 + 1) % BULK_USERS;
    if (to == from)
        to = bulk_first_user + (i + 1) % BULK_USERS;
    store_req *r = send_req(from, to, cmid, "bulk");
    r->done = on_bulk;
    store_submit(fx->s, r);
}

static void on_bulk(store_req *r)
{
    fx->done++;
    if (r->status == STORE_OK && !r->duplicate)
        bulk_ok++;
    store_req_free(r);
    if (bulk_submitted < BULK_SENDS)
        bulk_submit_next();
}

static void test_bulk_sends(void **state)
{
    fixture *f = *state;
    int before = f->done;
    store_req *users[BULK_USERS];
    for (int i = 0; i < BULK_USERS; i++) {
        char name[16];
        snprintf(name, sizeof(name), "bulk%d", i);
        users[i] = new_req(STORE_USER_CREATE);
        store_req_set_str(&users[i]->username, name);
        store_submit(f->s, users[i]);
    }
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->done, before + BULK_USERS);
    bulk_first_user = jint(users[0]->result, "id");
    for (int i = 0; i < BULK_USERS; i++) {
        assert_int_equal(users[i]->status, STORE_OK);
        assert_int_equal(jint(users[i]->result, "id"), bulk_first_user + i);
        store_req_free(users[i]);
    }

    /* Primed with one send per window slot, each answer submits the next. */
    bulk_submitted = bulk_ok = 0;
    for (int i = 0; i < BULK_WINDOW; i++)
        bulk_submit_next();
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(bulk_ok, BULK_SENDS);

    /* Every message is unread once, and the first sender's conversations
     * account for all it sent and got. */
    int64_t total = 0;
    for (int i = 0; i < BULK_USERS; i++)
        total += unread_total(f, bulk_first_user + i);
    assert_int_equal(total, BULK_SENDS);
    store_req *r = sync_req(f, bulk_first_user, 0, 0);
    size_t synced = json_array_size(r->result);
    assert_true(synced >= BULK_SENDS / BULK_USERS);
    store_req_free(r);

    close_store(f);
    open_store(f);
    total = 0;
    for (int i = 0; i < BULK_USERS; i++)
        total += unread_total(f, bulk_first_user + i);
    assert_int_equal(total, BULK_SENDS);
    r = sync_req(f, bulk_first_user, 0, 0);
    assert_int_equal(json_array_size(r->result), synced);
    store_req_free(r);
}

/* A request that fails inside a group transaction must not take the
 * others down, nor get them stored twice when they are retried. */
static void test_failed_request_in_group(void **state)
{
    fixture *f = *state;
    int64_t a = create_user(f, "a");
    int64_t b = create_user(f, "b");
    store_req *r1 = send_req(a, b, "g1", "one");
    store_req *bad = new_req(STORE_USER_CREATE); /* no username */
    store_req *r2 = send_req(b, a, "g2", "two");
    store_req *r3 = send_req(a, b, NULL, "three");
    int before = f->done;
    store_submit(f->s, r1);
    store_submit(f->s, bad);
    store_submit(f->s, r2);
    store_submit(f->s, r3);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->done, before + 4);
    assert_int_equal(r1->status, STORE_OK);
    assert_int_equal(bad->status, STORE_ERROR);
    assert_null(bad->result);
    assert_int_equal(r2->status, STORE_OK);
    assert_int_equal(r3->status, STORE_OK);
    assert_false(r1->duplicate || r2->duplicate || r3->duplicate);
    store_req_free(r1);
    store_req_free(bad);
    store_req_free(r2);
    store_req_free(r3);

    store_req *r = history(f, a, b, 0, 0);
    assert_int_equal(json_array_size(r->result), 3);
    store_req_free(r);
    assert_int_equal(unread_total(f, b), 2);
    assert_int_equal(unread_total(f, a), 1);
}

static void test_close_answers_queued(void **state)
{
    fixture *f = *state;
    enum { N = 500 };
    int64_t a = create_user(f, "a");
    int64_t b = create_user(f, "b");
    store_req *reqs[N];
    int before = f->done;
    for (int i = 0; i < N; i++) {
        reqs[i] = send_req(a, b, NULL, "queued");
        store_submit(f->s, reqs[i]);
    }
    /* Without running the loop: every done runs inside store_close. */
    store_close(f->s);
    f->s = NULL;
    assert_int_equal(f->done, before + N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(reqs[i]->status, STORE_OK);
        store_req_free(reqs[i]);
    }
    uv_run(&f->loop, UV_RUN_DEFAULT);

    open_store(f);
    store_req *r = history(f, a, b, 0, 0);
    assert_int_equal(json_array_size(r->result), N);
    store_req_free(r);
    assert_int_equal(unread_total(f, b), N);
}

/* done callbacks that submit more, or close the store, while it closes. */
static int chain_left;

static void on_chain(store_req *r)
{
    fx->done++;
    if (chain_left-- > 0) {
        store_req *next = store_req_new(STORE_USER_BY_ID, on_chain, NULL);
        assert_non_null(next);
        next->user_id = r->user_id;
        store_submit(fx->s, next);
    }
    store_req_free(r);
}

static void on_close_now(store_req *r)
{
    fx->done++;
    store_req_free(r);
    store_close(fx->s);
}

static void test_close_reentrant(void **state)
{
    fixture *f = *state;
    int64_t a = create_user(f, "a");

    /* Requests submitted by done callbacks during store_close still run. */
    chain_left = 5;
    store_req *r = store_req_new(STORE_USER_BY_ID, on_chain, NULL);
    r->user_id = a;
    int before = f->done;
    store_submit(f->s, r);
    close_store(f);
    assert_int_equal(f->done, before + 6);

    /* store_close from inside a done callback: the rest is answered. */
    open_store(f);
    before = f->done;
    store_submit(f->s, store_req_new(STORE_USER_BY_ID, on_close_now, NULL));
    for (int i = 0; i < 20; i++) {
        store_req *q = store_req_new(STORE_USER_BY_ID, on_chain, NULL);
        q->user_id = a;
        store_submit(f->s, q);
    }
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->done, before + 21);
    f->s = NULL; /* closed by on_close_now */
}

static store_req *external_req(const char *sub, uint8_t seed, int64_t now)
{
    store_req *r = token_req(STORE_USER_EXTERNAL, seed);
    store_req_set_str(&r->external_id, sub);
    store_req_set_str(&r->username, sub);
    store_req_set_str(&r->userpic, "");
    r->time = now;
    return r;
}

static int64_t revoked_rows(fixture *f)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/chatd.db", f->data_dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM revoked_jwts", -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

/* A revoked JWT is refused until its expiry, also after a reopen; other JWTs
 * of the same user are not; expired entries are purged by later revokes. */
static void test_jwt_revoke(void **state)
{
    fixture *f = *state;
    /* without a token hash (all zero) the revocation list is not consulted */
    store_req *r = external_req("ext-1", 0, 1000);
    assert_int_equal(run_status(f, r), STORE_OK);
    r = external_req("ext-1", 7, 1000);
    assert_int_equal(run_status(f, r), STORE_OK);

    r = token_req(STORE_JWT_REVOKE, 7);
    r->expires = 50000;
    r->time = 2000;
    run(f, r);
    assert_int_equal(r->status, STORE_OK);
    assert_true(json_is_null(r->result));
    store_req_free(r);
    /* revoking twice is fine and keeps the later expiry */
    r = token_req(STORE_JWT_REVOKE, 7);
    r->expires = 40000;
    r->time = 2000;
    assert_int_equal(run_status(f, r), STORE_OK);

    r = external_req("ext-1", 7, 3000);
    assert_int_equal(run_status(f, r), STORE_NOT_FOUND);
    r = external_req("ext-1", 8, 3000); /* another JWT of the same sub */
    assert_int_equal(run_status(f, r), STORE_OK);
    r = external_req("ext-1", 7, 49999);
    assert_int_equal(run_status(f, r), STORE_NOT_FOUND);

    close_store(f);
    open_store(f);
    r = external_req("ext-1", 7, 3000);
    assert_int_equal(run_status(f, r), STORE_NOT_FOUND);
    /* the list ends at exp (the JWT itself is refused by then anyway) */
    r = external_req("ext-1", 7, 50000);
    assert_int_equal(run_status(f, r), STORE_OK);

    assert_int_equal(revoked_rows(f), 1);
    r = token_req(STORE_JWT_REVOKE, 9);
    r->expires = 90000;
    r->time = 60000; /* past 7's expiry: purged */
    assert_int_equal(run_status(f, r), STORE_OK);
    assert_int_equal(revoked_rows(f), 1);
}

static store_req *admin_req(int64_t uid, int action, int64_t time)
{
    store_req *r = new_req(STORE_USER_ADMIN);
    r->user_id = uid;
    r->action = action;
    r->time = time;
    return r;
}

static int token_create(fixture *f, uint8_t seed, int64_t uid, int64_t expires)
{
    store_req *r = token_req(STORE_TOKEN_CREATE, seed);
    r->user_id = uid;
    r->expires = expires;
    return run_status(f, r);
}

/* STORE_OK when the token exists (expired or not: time 0). */
static int token_exists(fixture *f, uint8_t seed)
{
    store_req *r = token_req(STORE_TOKEN_LOOKUP, seed);
    r->time = 0;
    return run_status(f, r);
}

static bool user_disabled(fixture *f, const char *name)
{
    store_req *r = new_req(STORE_USER_BY_NAME);
    store_req_set_str(&r->username, name);
    run(f, r);
    assert_int_equal(r->status, STORE_OK);
    json_t *d = json_object_get(r->result, "disabled");
    assert_true(json_is_boolean(d));
    bool v = json_is_true(d);
    store_req_free(r);
    return v;
}

static int external_at(fixture *f, const char *sub, int64_t iat)
{
    store_req *r = external_req(sub, 0, 1000);
    r->issued_at = iat;
    return run_status(f, r);
}

/* Revoke deletes the user's tokens (nobody else's) and refuses its JWTs
 * issued before it; disable also refuses new tokens, every JWT, and hides
 * the user from search; enable lets it in again but brings nothing back. */
static void test_user_admin(void **state)
{
    fixture *f = *state;
    int64_t alice = create_user(f, "alice");
    int64_t bob = create_user(f, "bob");
    assert_int_equal(token_create(f, 1, alice, INT64_MAX), STORE_OK);
    assert_int_equal(token_create(f, 2, alice, INT64_MAX), STORE_OK);
    assert_int_equal(token_create(f, 3, bob, INT64_MAX), STORE_OK);

    store_req *r = run(f, admin_req(alice, STORE_ADMIN_REVOKE, 5000));
    assert_int_equal(r->status, STORE_OK);
    assert_int_equal(jint(r->result, "tokens_deleted"), 2);
    assert_false(json_is_true(json_object_get(r->result, "disabled")));
    store_req_free(r);
    assert_int_equal(token_exists(f, 1), STORE_NOT_FOUND);
    assert_int_equal(token_exists(f, 2), STORE_NOT_FOUND);
    assert_int_equal(token_exists(f, 3), STORE_OK);
    assert_false(user_disabled(f, "alice"));
    assert_int_equal(token_create(f, 4, alice, INT64_MAX), STORE_OK); /* a new login */
    assert_int_equal(token_exists(f, 4), STORE_OK);

    assert_int_equal(run_status(f, admin_req(bob + 100, STORE_ADMIN_REVOKE, 5000)),
                     STORE_NOT_FOUND);
    r = new_req(STORE_USER_ADMIN);
    r->user_id = alice;
    r->action = 7;
    assert_int_equal(run_status(f, r), STORE_ERROR);

    /* disable */
    r = run(f, admin_req(alice, STORE_ADMIN_DISABLE, 6000));
    assert_int_equal(r->status, STORE_OK);
    assert_int_equal(jint(r->result, "tokens_deleted"), 1);
    assert_true(json_is_true(json_object_get(r->result, "disabled")));
    store_req_free(r);
    assert_true(user_disabled(f, "alice"));
    assert_int_equal(token_exists(f, 4), STORE_NOT_FOUND);
    assert_int_equal(token_create(f, 5, alice, INT64_MAX), STORE_NOT_FOUND);
    r = search(f, bob, "ali", 10);
    assert_int_equal(json_array_size(r->result), 0);
    store_req_free(r);

    /* enable: logins work again, nothing deleted comes back */
    r = run(f, admin_req(alice, STORE_ADMIN_ENABLE, 7000));
    assert_int_equal(r->status, STORE_OK);
    assert_int_equal(jint(r->result, "tokens_deleted"), 0);
    store_req_free(r);
    assert_false(user_disabled(f, "alice"));
    assert_int_equal(token_exists(f, 4), STORE_NOT_FOUND);
    assert_int_equal(token_create(f, 5, alice, INT64_MAX), STORE_OK);
    assert_int_equal(token_exists(f, 5), STORE_OK);
    r = search(f, bob, "ali", 10);
    assert_int_equal(json_array_size(r->result), 1);
    store_req_free(r);
}

static store_req *password_req(int64_t uid, const char *hash, uint8_t keep, int64_t time)
{
    store_req *r = token_req(STORE_USER_PASSWORD, keep);
    r->user_id = uid;
    store_req_set_str(&r->password_hash, hash);
    r->time = time;
    return r;
}

static int token_create_checked(fixture *f, uint8_t seed, int64_t uid, const char *checked)
{
    store_req *r = token_req(STORE_TOKEN_CREATE, seed);
    r->user_id = uid;
    r->expires = INT64_MAX;
    store_req_set_str(&r->password_hash, checked);
    return run_status(f, r);
}

/* A password change keeps the caller's token and deletes the user's
 * others (nobody else's); it needs a live token of the user and a user
 * with a password; a login that checked the old hash makes no token. */
static void test_user_password(void **state)
{
    fixture *f = *state;
    int64_t alice = create_user(f, "alice");
    int64_t bob = create_user(f, "bob");
    assert_int_equal(token_create(f, 1, alice, INT64_MAX), STORE_OK);
    assert_int_equal(token_create(f, 2, alice, INT64_MAX), STORE_OK);
    assert_int_equal(token_create(f, 3, alice, INT64_MAX), STORE_OK);
    assert_int_equal(token_create(f, 4, bob, INT64_MAX), STORE_OK);
    assert_int_equal(token_create(f, 5, alice, 100), STORE_OK); /* expired at 200 */

    /* not the user's token, an expired one, no such user: nothing written */
    assert_int_equal(run_status(f, password_req(alice, "h2", 4, 200)), STORE_NOT_FOUND);
    assert_int_equal(run_status(f, password_req(alice, "h2", 5, 200)), STORE_NOT_FOUND);
    assert_int_equal(run_status(f, password_req(bob + 100, "h2", 1, 200)), STORE_NOT_FOUND);
    assert_int_equal(token_exists(f, 2), STORE_OK);

    store_req *r = run(f, password_req(alice, "h2", 1, 200));
    assert_int_equal(r->status, STORE_OK);
    assert_int_equal(jint(r->result, "tokens_deleted"), 3); /* 2, 3 and the expired 5 */
    store_req_free(r);
    assert_int_equal(token_exists(f, 1), STORE_OK);
    assert_int_equal(token_exists(f, 2), STORE_NOT_FOUND);
    assert_int_equal(token_exists(f, 3), STORE_NOT_FOUND);
    assert_int_equal(token_exists(f, 4), STORE_OK);

    r = new_req(STORE_USER_BY_NAME);
    store_req_set_str(&r->username, "alice");
    run(f, r);
    assert_string_equal(jstr(r->result, "password_hash"), "h2");
    store_req_free(r);

    /* a login that checked the old hash is too late; one with the new is fine */
    assert_int_equal(token_create_checked(f, 6, alice, "hash"), STORE_NOT_FOUND);
    assert_int_equal(token_create_checked(f, 7, alice, "h2"), STORE_OK);

    /* an external user has no password to change */
    store_req *e = run(f, external_req("ext-1", 0, 1000));
    int64_t ext = jint(e->result, "id");
    store_req_free(e);
    assert_int_equal(token_create(f, 8, ext, INT64_MAX), STORE_OK);
    assert_int_equal(run_status(f, password_req(ext, "h3", 8, 200)), STORE_NOT_FOUND);
    assert_int_equal(run_status(f, new_req(STORE_USER_PASSWORD)), STORE_ERROR); /* no hash */
}

/* The picture changes in every answer, sends included (the SQLite user
 * cache forgets the user). */
static void test_user_profile(void **state)
{
    fixture *f = *state;
    int64_t alice = create_user(f, "alice");
    int64_t bob = create_user(f, "bob");
    send_msg(f, alice, bob, "cached now");

    store_req *r = new_req(STORE_USER_PROFILE);
    r->user_id = alice;
    store_req_set_str(&r->userpic, "/media/new.png");
    run(f, r);
    assert_int_equal(r->status, STORE_OK);
    assert_int_equal(jint(r->result, "id"), alice);
    assert_string_equal(jstr(r->result, "username"), "alice");
    assert_string_equal(jstr(r->result, "userpic"), "/media/new.png");
    store_req_free(r);

    r = run(f, send_req(alice, bob, NULL, "after"));
    assert_int_equal(r->status, STORE_OK);
    assert_string_equal(jstr(r->result, "from_userpic"), "/media/new.png");
    store_req_free(r);

    r = new_req(STORE_USER_PROFILE);
    r->user_id = alice;
    store_req_set_str(&r->userpic, NULL); /* NULL is "" */
    run(f, r);
    assert_string_equal(jstr(r->result, "userpic"), "");
    store_req_free(r);
    r = new_req(STORE_USER_BY_ID);
    r->user_id = alice;
    run(f, r);
    assert_string_equal(jstr(r->result, "userpic"), "");
    store_req_free(r);

    r = new_req(STORE_USER_PROFILE);
    r->user_id = bob + 100;
    store_req_set_str(&r->userpic, "/x.png");
    assert_int_equal(run_status(f, r), STORE_NOT_FOUND);
}

/* JWT users: a revoke refuses the JWTs issued (iat) before it, those
 * without iat included; disable refuses all; enable does not move the
 * revoke's time back. */
static void test_user_admin_jwt(void **state)
{
    fixture *f = *state;
    assert_int_equal(external_at(f, "ext-a", 0), STORE_OK); /* first sight */
    store_req *r = external_req("ext-a", 0, 1000);
    run(f, r);
    int64_t id = jint(r->result, "id");
    store_req_free(r);

    assert_int_equal(run_status(f, admin_req(id, STORE_ADMIN_REVOKE, 5000)), STORE_OK);
    assert_int_equal(external_at(f, "ext-a", 4000), STORE_NOT_FOUND);
    assert_int_equal(external_at(f, "ext-a", 0), STORE_NOT_FOUND);
    assert_int_equal(external_at(f, "ext-a", 5000), STORE_OK);
    /* a later revoke with an older time does not move it back */
    assert_int_equal(run_status(f, admin_req(id, STORE_ADMIN_REVOKE, 3000)), STORE_OK);
    assert_int_equal(external_at(f, "ext-a", 4000), STORE_NOT_FOUND);

    assert_int_equal(run_status(f, admin_req(id, STORE_ADMIN_DISABLE, 6000)), STORE_OK);
    assert_int_equal(external_at(f, "ext-a", 9000), STORE_NOT_FOUND);
    assert_int_equal(run_status(f, admin_req(id, STORE_ADMIN_ENABLE, 10000)), STORE_OK);
    assert_int_equal(external_at(f, "ext-a", 9000), STORE_OK);
    assert_int_equal(external_at(f, "ext-a", 5500), STORE_NOT_FOUND);
    /* another external user is not touched */
    assert_int_equal(external_at(f, "ext-b", 0), STORE_OK);
}

static store_req *purge_req(int64_t time, int64_t limit)
{
    store_req *r = new_req(STORE_TOKEN_PURGE);
    r->time = time;
    r->limit = limit;
    return r;
}

/* The purge deletes what expired by its time, oldest first, at most limit
 * rows of each table per request. */
static void test_token_purge(void **state)
{
    fixture *f = *state;
    int64_t alice = create_user(f, "alice");
    assert_int_equal(token_create(f, 1, alice, 300), STORE_OK);
    assert_int_equal(token_create(f, 2, alice, 100), STORE_OK);
    assert_int_equal(token_create(f, 3, alice, 200), STORE_OK);
    assert_int_equal(token_create(f, 4, alice, 100000), STORE_OK);
    store_req *j = token_req(STORE_JWT_REVOKE, 9);
    j->expires = 150;
    j->time = 0;
    assert_int_equal(run_status(f, j), STORE_OK);

    store_req *r = run(f, purge_req(250, 1));
    assert_int_equal(r->status, STORE_OK);
    assert_int_equal(jint(r->result, "tokens"), 1);
    assert_int_equal(jint(r->result, "jwts"), 1);
    store_req_free(r);
    assert_int_equal(token_exists(f, 2), STORE_NOT_FOUND); /* the oldest went first */
    assert_int_equal(token_exists(f, 3), STORE_OK);
    assert_int_equal(revoked_rows(f), 0);

    r = run(f, purge_req(250, 0)); /* limit 0: STORE_PURGE_BATCH */
    assert_int_equal(jint(r->result, "tokens"), 1);
    assert_int_equal(jint(r->result, "jwts"), 0);
    store_req_free(r);
    r = run(f, purge_req(250, 10));
    assert_int_equal(jint(r->result, "tokens"), 0);
    store_req_free(r);
    assert_int_equal(token_exists(f, 1), STORE_OK); /* expires 300: not yet */
    assert_int_equal(token_exists(f, 4), STORE_OK);
}

static int64_t token_rows(fixture *f)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/chatd.db", f->data_dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM tokens", -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static void on_timer(uv_timer_t *t)
{
    uv_close((uv_handle_t *)t, NULL);
}

/* Runs the loop for ms milliseconds (the store's thread works meanwhile). */
static void wait_ms(fixture *f, uint64_t ms)
{
    uv_timer_t t;
    uv_timer_init(&f->loop, &t);
    uv_timer_start(&t, on_timer, ms, 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
}

/* Without any request, the writer purges expired tokens by itself, in
 * batches of STORE_PURGE_BATCH, and leaves the others. */
static void test_background_purge(void **state)
{
    fixture *f = *state;
    close_store(f);
    store_options o = {.store = "sqlite", .data_dir = f->data_dir, .purge_interval_ms = -1};
    char err[256] = "";
    f->s = store_open_opts(&f->loop, &o, err, sizeof(err));
    assert_non_null(f->s);
    int64_t alice = create_user(f, "alice");
    enum { N = 2 * STORE_PURGE_BATCH + 100 };
    store_req *reqs[N + 1];
    int before = f->done;
    for (int i = 0; i <= N; i++) {
        reqs[i] = new_req(STORE_TOKEN_CREATE);
        memcpy(reqs[i]->token_hash, &i, sizeof(i));
        reqs[i]->token_hash[31] = 0x55;
        reqs[i]->user_id = alice;
        reqs[i]->expires = i < N ? 1 + i : INT64_MAX; /* long expired, but one */
        store_submit(f->s, reqs[i]);
    }
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->done, before + N + 1);
    for (int i = 0; i <= N; i++) {
        assert_int_equal(reqs[i]->status, STORE_OK);
        store_req_free(reqs[i]);
    }
    wait_ms(f, 100);
    assert_int_equal(token_rows(f), N + 1); /* purge off: nothing went */
    close_store(f);

    o.purge_interval_ms = 30;
    f->s = store_open_opts(&f->loop, &o, err, sizeof(err));
    assert_non_null(f->s);
    for (int i = 0; i < 50 && token_rows(f) > 1; i++)
        wait_ms(f, 20);
    assert_int_equal(token_rows(f), 1);
}

/* A database of schema 4 (before admin) with users and tokens: migration 5
 * keeps them, every user enabled, and revoke works on them. */
static void test_admin_migration(void **state)
{
    fixture *f = *state;
    close_store(f);
    sql(f, UNDO_5 "PRAGMA user_version = 4;"
                  "INSERT INTO users(id, username, created_at, name_key) VALUES(1, 'a', 0, 'a'),"
                  " (2, 'b', 0, 'b');"
                  "INSERT INTO tokens(hash, user_id, expires_at) VALUES(zeroblob(32), 1, 99999),"
                  " (x'0101010101010101010101010101010101010101010101010101010101010101', 2, "
                  "99999);");
    open_store(f);
    assert_int_equal(user_version(f), STORE_SQLITE_SCHEMA_VERSION);
    assert_false(user_disabled(f, "a"));
    assert_int_equal(token_exists(f, 1), STORE_OK);
    store_req *r = run(f, admin_req(2, STORE_ADMIN_DISABLE, 5));
    assert_int_equal(jint(r->result, "tokens_deleted"), 1);
    store_req_free(r);
    assert_int_equal(token_exists(f, 1), STORE_NOT_FOUND);
    assert_int_equal(token_exists(f, 0), STORE_OK);
    close_store(f);
    sql(f, "SELECT CASE WHEN (SELECT count(*) FROM sqlite_schema WHERE name IN"
           " ('tokens_user', 'tokens_expiry')) = 2 THEN 1 ELSE abs(-9223372036854775807 - 1) END;");
    open_store(f);
}

/* A database of schema 5 (before presence) with a conversation: migration
 * 6 gives its users last_seen 0 (null to others) and last_seen shown; then
 * the presence ops: peers, last_seen (never back), settings. */
static void test_presence(void **state)
{
    fixture *f = *state;
    close_store(f);
    sql(f, UNDO_6 "PRAGMA user_version = 5;");
    open_store(f);
    assert_int_equal(user_version(f), STORE_SQLITE_SCHEMA_VERSION);
    int64_t a = create_user(f, "pa"), b = create_user(f, "pb"), c = create_user(f, "pc");
    create_user(f, "pd");
    send_msg(f, a, b, "ab");
    send_msg(f, c, a, "ca");
    store_req *r = new_req(STORE_PRESENCE_PEERS);
    r->user_id = a;
    run(f, r);
    assert_int_equal(r->status, STORE_OK);
    assert_false(json_is_true(json_object_get(r->result, "hide_last_seen")));
    assert_int_equal(jint(r->result, "last_seen"), 0);
    json_t *peers = json_object_get(r->result, "peers");
    assert_int_equal(json_array_size(peers), 2);
    int64_t p0 = json_integer_value(json_array_get(peers, 0)),
            p1 = json_integer_value(json_array_get(peers, 1));
    assert_true((p0 == b && p1 == c) || (p0 == c && p1 == b));
    store_req_free(r);
    r = new_req(STORE_PRESENCE_PEERS); /* no conversation: no peer */
    r->user_id = create_user(f, "pe");
    run(f, r);
    assert_int_equal(r->status, STORE_OK);
    assert_int_equal(json_array_size(json_object_get(r->result, "peers")), 0);
    store_req_free(r);
    r = new_req(STORE_PRESENCE_PEERS);
    r->user_id = 999999;
    assert_int_equal(run_status(f, r), STORE_NOT_FOUND);

    r = new_req(STORE_CHAT_LIST);
    r->user_id = b;
    run(f, r);
    assert_true(json_is_null(json_object_get(json_array_get(r->result, 0), "last_seen")));
    store_req_free(r);
    for (int64_t t = 500; t >= 400; t -= 100) { /* the older time does not win */
        r = new_req(STORE_USER_LAST_SEEN);
        r->user_id = a;
        r->time = t;
        assert_int_equal(run_status(f, r), STORE_OK);
    }
    r = new_req(STORE_USER_LAST_SEEN);
    r->user_id = 999999;
    assert_int_equal(run_status(f, r), STORE_NOT_FOUND);
    r = new_req(STORE_CHAT_LIST);
    r->user_id = b;
    run(f, r);
    assert_int_equal(jint(json_array_get(r->result, 0), "last_seen"), 500);
    store_req_free(r);
    r = search(f, b, "pa", 5);
    assert_int_equal(jint(json_array_get(r->result, 0), "last_seen"), 500);
    store_req_free(r);

    r = new_req(STORE_USER_SETTINGS);
    r->user_id = a;
    r->action = 1;
    run(f, r);
    assert_int_equal(r->status, STORE_OK);
    assert_true(json_is_true(json_object_get(r->result, "hide_last_seen")));
    store_req_free(r);
    r = new_req(STORE_CHAT_LIST);
    r->user_id = b;
    run(f, r);
    assert_true(json_is_null(json_object_get(json_array_get(r->result, 0), "last_seen")));
    store_req_free(r);
    r = search(f, b, "pa", 5);
    assert_true(json_is_null(json_object_get(json_array_get(r->result, 0), "last_seen")));
    store_req_free(r);
    r = new_req(STORE_PRESENCE_PEERS);
    r->user_id = a;
    run(f, r);
    assert_true(json_is_true(json_object_get(r->result, "hide_last_seen")));
    assert_int_equal(jint(r->result, "last_seen"), 500);
    store_req_free(r);
}

/* A group request: user, group, time 1000. */
static store_req *group_req(store_op op, int64_t user, int64_t gid)
{
    store_req *r = new_req(op);
    r->user_id = user;
    r->group_id = gid;
    r->time = 1000;
    return r;
}

/* A database of schema 7 with a member removed: migration 8 keeps it
 * answered with the group's current name (it has no snapshot) and last_seq
 * capped at its left_seq; removed again after the migration, it sees the
 * group as of that removal. */
static void test_departed_migration(void **state)
{
    fixture *f = *state;
    int64_t a = create_user(f, "ga"), d = create_user(f, "gd");
    store_req *r = group_req(STORE_GROUP_CREATE, a, 0);
    store_req_set_str(&r->name, "team");
    r->members = json_pack("[I]", (json_int_t)d);
    assert_int_equal(run(f, r)->status, STORE_OK);
    int64_t gid = jint(json_object_get(r->result, "group"), "group_id");
    store_req_free(r);
    r = group_req(STORE_GROUP_REMOVE, a, gid); /* seq 2 */
    r->peer_id = d;
    assert_int_equal(run_status(f, r), STORE_OK);
    close_store(f);
    sql(f, UNDO_8 "PRAGMA user_version = 7;");
    open_store(f);
    assert_int_equal(user_version(f), STORE_SQLITE_SCHEMA_VERSION);
    r = group_req(STORE_GROUP_UPDATE, a, gid); /* seq 3 */
    store_req_set_str(&r->name, "renamed");
    assert_int_equal(run_status(f, r), STORE_OK);
    r = run(f, group_req(STORE_GROUP_INFO, d, gid));
    assert_int_equal(r->status, STORE_OK);
    assert_string_equal(jstr(r->result, "name"), "renamed");
    assert_int_equal(jint(r->result, "last_seq"), 2);
    store_req_free(r);

    r = group_req(STORE_GROUP_ADD, a, gid); /* seq 4 */
    r->members = json_pack("[I]", (json_int_t)d);
    assert_int_equal(run_status(f, r), STORE_OK);
    r = group_req(STORE_GROUP_REMOVE, a, gid); /* seq 5 */
    r->peer_id = d;
    assert_int_equal(run_status(f, r), STORE_OK);
    r = group_req(STORE_GROUP_UPDATE, a, gid); /* seq 6 */
    store_req_set_str(&r->name, "third");
    assert_int_equal(run_status(f, r), STORE_OK);
    r = run(f, group_req(STORE_GROUP_INFO, d, gid));
    assert_string_equal(jstr(r->result, "name"), "renamed");
    assert_int_equal(jint(r->result, "last_seq"), 5);
    assert_int_equal(jint(r->result, "member_count"), 1);
    store_req_free(r);
}

static int64_t user_version(fixture *f)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/chatd.db", f->data_dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void test_reopen_and_schema(void **state)
{
    fixture *f = *state;
    int64_t a = create_user(f, "a");
    int64_t b = create_user(f, "b");
    int64_t m = send_msg(f, a, b, "kept");
    store_req *t = token_req(STORE_TOKEN_CREATE, 7);
    t->user_id = b;
    t->expires = 100;
    assert_int_equal(run_status(f, t), STORE_OK);
    close_store(f);
    assert_int_equal(user_version(f), STORE_SQLITE_SCHEMA_VERSION);

    /* Reopening finds everything and migrates nothing. */
    open_store(f);
    store_req *r = history(f, b, a, 0, 10);
    assert_int_equal(json_array_size(r->result), 1);
    assert_int_equal(jint(json_array_get(r->result, 0), "id"), m);
    assert_string_equal(jstr(json_array_get(r->result, 0), "data"), "kept");
    store_req_free(r);
    assert_int_equal(unread_total(f, b), 1);
    r = token_req(STORE_TOKEN_LOOKUP, 7);
    r->time = 50;
    run(f, r);
    assert_int_equal(r->status, STORE_OK);
    assert_int_equal(jint(r->result, "id"), b);
    store_req_free(r);
    /* Ids keep growing after a reopen. */
    assert_true(send_msg(f, b, a, "later") > m);
    close_store(f);
    assert_int_equal(user_version(f), STORE_SQLITE_SCHEMA_VERSION);

    /* A database from a newer chatd is refused, not damaged. */
    char path[160];
    snprintf(path, sizeof(path), "%s/chatd.db", f->data_dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 999", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    char err[256] = "";
    store *s = store_open(&f->loop, f->data_dir, STORE_DURABLE_FULL, err, sizeof(err));
    assert_null(s);
    assert_non_null(strstr(err, "newer"));
    assert_int_equal(user_version(f), 999);
}

static void test_open_errors(void **state)
{
    fixture *f = *state;
    char path[160], err[256] = "";
    /* A file where the data directory should be. */
    snprintf(path, sizeof(path), "%s/file", f->dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fclose(fp);
    store *s = store_open(&f->loop, path, STORE_DURABLE_FULL, err, sizeof(err));
    assert_null(s);
    assert_true(strlen(err) > 0);

    /* FULL durability opens and works like NORMAL. */
    close_store(f);
    f->s = store_open(&f->loop, f->data_dir, STORE_DURABLE_FULL, err, sizeof(err));
    assert_non_null(f->s);
    int64_t a = create_user(f, "a");
    int64_t b = create_user(f, "b");
    assert_true(send_msg(f, a, b, "full") > 0);
}

/* ---- username keys (chat/names.h) ---------------------------------------- */

static int64_t user_by_name(fixture *f, const char *name)
{
    store_req *r = new_req(STORE_USER_BY_NAME);
    store_req_set_str(&r->username, name);
    run(f, r);
    int64_t id = r->status == STORE_OK ? jint(r->result, "id") : -r->status;
    store_req_free(r);
    return id;
}

static int create_status(fixture *f, const char *name)
{
    store_req *r = new_req(STORE_USER_CREATE);
    store_req_set_str(&r->username, name);
    return run_status(f, r);
}

static void test_user_name_keys(void **state)
{
    fixture *f = *state;
    int64_t j = create_user(f, "J\xc3\xbcrgen");
    /* case beyond ASCII, NFD, fullwidth: one key, one account */
    assert_int_equal(create_status(f, "J\xc3\x9cRGEN"), STORE_CONFLICT);
    assert_int_equal(create_status(f, "Ju\xcc\x88rgen"), STORE_CONFLICT);
    create_user(f, "payee");
    assert_int_equal(create_status(f, "\xd1\x80\xd0\xb0\xd1\x83\xd0\xb5\xd0\xb5"),
                     STORE_CONFLICT); /* Cyrillic */
    assert_int_equal(create_status(f, "\xef\xbd\x90\xef\xbd\x81yee"), STORE_CONFLICT);
    /* login finds the account by any equivalent spelling */
    assert_int_equal(user_by_name(f, "j\xc3\xbcrgen"), j);
    assert_int_equal(user_by_name(f, "JU\xcc\x88RGEN"), j);
    assert_int_equal(user_by_name(f, "Jurgen"), -STORE_NOT_FOUND);
    assert_int_equal(user_by_name(f, "\xff"), -STORE_NOT_FOUND); /* not UTF-8 */

    /* search: "JÜRG" is no prefix of lower("Jürgen") (ASCII lower), but
     * its key is a prefix of the name's key */
    store_req *r = new_req(STORE_USER_SEARCH);
    store_req_set_str(&r->query, "J\xc3\x9cRG");
    r->limit = 10;
    run(f, r);
    assert_int_equal(r->status, STORE_OK);
    assert_int_equal(json_array_size(r->result), 1);
    assert_string_equal(jstr(json_array_get(r->result, 0), "username"), "J\xc3\xbcrgen");
    store_req_free(r);

    /* JWT names: taken -> "<name>#<sub>"; when even that key is taken (two
     * subs differing in case), still an account, never an error */
    create_user(f, "erin");
    r = external(f, "s", "Erin", "");
    assert_int_equal(r->status, STORE_OK);
    assert_string_equal(jstr(r->result, "username"), "Erin#s");
    store_req_free(r);
    r = external(f, "S", "ERIN", "");
    assert_int_equal(r->status, STORE_OK);
    int64_t big = jint(r->result, "id");
    assert_string_equal(jstr(r->result, "username"), "ERIN#x53");
    store_req_free(r);
    r = external(f, "S", "ERIN", "p.png");
    assert_int_equal(r->status, STORE_OK);
    assert_int_equal(jint(r->result, "id"), big);
    assert_string_equal(jstr(r->result, "username"), "ERIN#x53");
    store_req_free(r);
}

static void sql(fixture *f, const char *text)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/chatd.db", f->data_dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *msg = NULL;
    if (sqlite3_exec(db, text, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", text, msg);
    sqlite3_close(db);
}

/* A database of schema 1 (no keys), with two names that were distinct
 * under ASCII NOCASE and share a key now: the older keeps the name's key,
 * the newer logs in as "<name>#<id>"; nothing is lost. */
static void test_name_keys_backfill(void **state)
{
    fixture *f = *state;
    close_store(f);
    sql(f, UNDO_5 "DROP INDEX users_name_key; ALTER TABLE users DROP COLUMN name_key;"
                  "DROP INDEX messages_seq; ALTER TABLE messages DROP COLUMN seq;"
                  "CREATE INDEX messages_conv ON messages(conv_lo, conv_hi, id);"
                  "PRAGMA user_version = 2;"
                  "INSERT INTO users(id, username, created_at) VALUES(1, 'J\xc3\xbcrgen', 0),"
                  " (2, 'J\xc3\x9cRGEN', 0), (3, 'bob', 0);");
    open_store(f);
    assert_int_equal(user_version(f), STORE_SQLITE_SCHEMA_VERSION);
    assert_int_equal(user_by_name(f, "j\xc3\xbcrgen"), 1);
    assert_int_equal(user_by_name(f, "J\xc3\x9cRGEN#2"), 2);
    assert_int_equal(user_by_name(f, "BOB"), 3);
    assert_int_equal(create_status(f, "Bob"), STORE_CONFLICT);
    /* reopening computes nothing again */
    close_store(f);
    open_store(f);
    assert_int_equal(user_by_name(f, "bob"), 3);
}

/* The database, its WAL and shared-memory files are 0600 whatever the
 * umask, and an older looser file is tightened at open. */
static void test_file_modes(void **state)
{
    fixture *f = *state;
    close_store(f);
    char path[200];
    snprintf(path, sizeof(path), "%s/chatd.db", f->data_dir);
    assert_int_equal(chmod(path, 0644), 0);
    mode_t old = umask(0);
    open_store(f);
    create_user(f, "m");
    const char *suffix[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        struct stat st;
        snprintf(path, sizeof(path), "%s/chatd.db%s", f->data_dir, suffix[i]);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
    }
    close_store(f);
    snprintf(f->data_dir, sizeof(f->data_dir), "%s/fresh", f->dir);
    open_store(f);
    create_user(f, "n");
    umask(old);
    for (int i = 0; i < 3; i++) {
        struct stat st;
        snprintf(path, sizeof(path), "%s/chatd.db%s", f->data_dir, suffix[i]);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
    }
    struct stat st;
    assert_int_equal(stat(f->data_dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
}

static void test_req_strings(void **state)
{
    (void)state;
    store_req *r = store_req_new(STORE_USER_CREATE, on_done, &r);
    assert_non_null(r);
    assert_int_equal(r->op, STORE_USER_CREATE);
    assert_ptr_equal(r->ctx, &r);
    assert_int_equal(store_req_set_str(&r->username, "x"), 0);
    assert_int_equal(store_req_set_str(&r->username, "yz"), 0);
    assert_string_equal(r->username, "yz");
    assert_int_equal(store_req_set_str(&r->username, NULL), 0);
    assert_null(r->username);
    store_req_set_str(&r->query, "q");
    r->result = json_object();
    store_req_free(r);
    store_req_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_user_create_and_lookup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_presence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_departed_migration, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_external, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_search, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_search_plan, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_admin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_admin_jwt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_password, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_profile, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_purge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_background_purge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admin_migration, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tokens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jwt_revoke, setup, teardown),
        cmocka_unit_test_setup_teardown(test_message_send, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_client_msg_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unread_and_chat_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_history, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sync, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seq, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sync_cursors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seq_migration, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bulk_sends, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_request_in_group, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_answers_queued, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_reentrant, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_and_schema, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_name_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_name_keys_backfill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_modes, setup, teardown),
        cmocka_unit_test(test_req_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
