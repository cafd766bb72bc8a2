/* Unit tests for store with the PostgreSQL backend, against a real server.
 *
 * Run only when CHATD_TEST_PG_URI names a database chatd may create its
 * tables in (e.g. the output of scripts/postgres.sh start); otherwise every
 * test is skipped, and the output says so. Usernames carry a random suffix,
 * so a database can be reused.
 *
 * What is checked beyond the integration tests: the seq of a conversation
 * counts 1, 2, 3 with no hole across passes, a duplicate client_msg_id
 * (stored earlier, or twice in one pass) gives the stored message with its
 * seq and takes no seq, a send to nobody answers NOT_FOUND without a seq,
 * cursor sync cuts at the limit with `more`, token and JWT ops, external
 * users' name suffixes, a store whose server is unreachable at start
 * fails to open, a server that holds a lock or whose backends are stopped
 * makes a send answer STORE_UNAVAILABLE within the answer deadline (and
 * the store serves again afterwards), cursor sync over many conversations
 * reads no more than its limit, and one client_msg_id sent at once to two
 * conversations (on two "nodes") is stored once without re-running a
 * pass. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <libpq-fe.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"
#include "store/store_backend.h"

typedef struct {
    uv_loop_t loop;
    store *s;
    int done;
    char tag[16]; /* unique per test: usernames and client_msg_ids */
} fixture;

static const char *pg_uri;

static void on_done(store_req *r)
{
    ((fixture *)r->ctx)->done++;
}

static int setup(void **state)
{
    if (!pg_uri) {
        *state = NULL;
        return 0;
    }
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    snprintf(f->tag, sizeof(f->tag), "%08lx", (unsigned long)random());
    /* no background purge: the tests' tokens expire at small times */
    store_options o = {.store = pg_uri,
                       .durability = STORE_DURABLE_FULL,
                       .connections = 3,
                       .purge_interval_ms = -1};
    char err[512] = "";
    f->s = store_open_opts(&f->loop, &o, err, sizeof(err));
    if (!f->s)
        fail_msg("store_open_opts: %s", err);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (!f)
        return 0;
    store_close(f->s);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f);
    return 0;
}

#define NEED_PG(state)                                                                             \
    do {                                                                                           \
        if (!*(state))                                                                             \
            skip();                                                                                \
    } while (0)

static store_req *new_req(fixture *f, store_op op)
{
    store_req *r = store_req_new(op, on_done, f);
    assert_non_null(r);
    r->time = 1000;
    return r;
}

/* Submits every request of reqs, then runs the loop until all answered:
 * requests submitted together share a pass (the same transaction). */
static void run_all(fixture *f, store_req **reqs, int n)
{
    int before = f->done;
    for (int i = 0; i < n; i++)
        store_submit(f->s, reqs[i]);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->done, before + n);
}

static store_req *run(fixture *f, store_req *r)
{
    run_all(f, &r, 1);
    return r;
}

static int64_t create_user(fixture *f, const char *name)
{
    char full[64];
    snprintf(full, sizeof(full), "%s%s", name, f->tag);
    store_req *r = new_req(f, STORE_USER_CREATE);
    store_req_set_str(&r->username, full);
    store_req_set_str(&r->password_hash, "h");
    run(f, r);
    assert_int_equal(r->status, STORE_OK);
    int64_t id = json_integer_value(json_object_get(r->result, "id"));
    assert_true(id > 0);
    store_req_free(r);
    return id;
}

static store_req *send_req(fixture *f, int64_t from, int64_t to, const char *cmid)
{
    store_req *r = new_req(f, STORE_MESSAGE_SEND);
    r->user_id = from;
    r->peer_id = to;
    store_req_set_str(&r->msg_type, "text");
    store_req_set_str(&r->msg_data, "hello \"quoted\" \\ {braces}, NULL");
    if (cmid) {
        char full[64];
        snprintf(full, sizeof(full), "%s-%s", cmid, f->tag);
        store_req_set_str(&r->client_msg_id, full);
    }
    return r;
}

static int64_t field(store_req *r, const char *name)
{
    return json_integer_value(json_object_get(r->result, name));
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A connection of the test's own, beside the store's (another node, or a
 * stuck session). */
static PGconn *side_conn(void)
{
    PGconn *c = PQconnectdb(pg_uri);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("side connection: %s", PQerrorMessage(c));
    return c;
}

/* Runs sql on c; the first column of the first row as an integer (0 when
 * none). */
static int64_t side_exec(PGconn *c, const char *sql)
{
    PGresult *res = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    int64_t v = st == PGRES_TUPLES_OK && PQntuples(res) > 0 && !PQgetisnull(res, 0, 0)
                    ? strtoll(PQgetvalue(res, 0, 0), NULL, 10)
                    : 0;
    PQclear(res);
    return v;
}

/* The conversation of a and b has seqs 1..last_seq, each once, and its
 * counter says last_seq. */
static void assert_no_hole(PGconn *c, int64_t a, int64_t b)
{
    char sql[400];
    int64_t lo = a < b ? a : b, hi = a < b ? b : a;
    snprintf(
        sql, sizeof(sql),
        "SELECT (SELECT count(*) FROM messages WHERE conv_lo = %lld AND conv_hi = %lld) * 1000000"
        " + (SELECT coalesce(max(seq), 0) FROM messages WHERE conv_lo = %lld AND conv_hi = %lld)"
        " * 1000 + (SELECT last_seq FROM threads WHERE conv_lo = %lld AND conv_hi = %lld)",
        (long long)lo, (long long)hi, (long long)lo, (long long)hi, (long long)lo, (long long)hi);
    int64_t v = side_exec(c, sql);
    int64_t count = v / 1000000, max = v / 1000 % 1000, last = v % 1000;
    assert_true(count > 0);
    assert_int_equal(count, max);
    assert_int_equal(max, last);
}

static void test_seq_and_duplicates(void **state)
{
    NEED_PG(state);
    fixture *f = *state;
    int64_t a = create_user(f, "a"), b = create_user(f, "b"), c = create_user(f, "c");

    /* one pass: a->b twice, b->a, a->c, a repeated client_msg_id, nobody */
    store_req *p1[6] = {send_req(f, a, b, "m1"), send_req(f, a, c, "x1"),
                        send_req(f, b, a, NULL), send_req(f, a, b, "m1"),
                        send_req(f, a, b, "m2"), send_req(f, a, 999999999, "lost")};
    run_all(f, p1, 6);
    assert_int_equal(p1[0]->status, STORE_OK);
    assert_false(p1[0]->duplicate);
    assert_int_equal(field(p1[0], "seq"), 1);
    assert_int_equal(field(p1[1], "seq"), 1); /* another conversation */
    assert_int_equal(field(p1[2], "seq"), 2);
    assert_true(p1[3]->duplicate); /* same pass, same sender and client_msg_id */
    assert_int_equal(field(p1[3], "id"), field(p1[0], "id"));
    assert_int_equal(field(p1[3], "seq"), 1);
    assert_int_equal(field(p1[4], "seq"), 3);
    assert_true(field(p1[4], "id") > field(p1[2], "id"));
    assert_int_equal(p1[5]->status, STORE_NOT_FOUND);
    assert_string_equal(json_string_value(json_object_get(p1[0]->result, "data")),
                        "hello \"quoted\" \\ {braces}, NULL");
    for (int i = 0; i < 6; i++)
        store_req_free(p1[i]);

    /* a later pass: a stored duplicate takes no seq */
    store_req *p2[2] = {send_req(f, a, b, "m2"), send_req(f, b, a, "n1")};
    run_all(f, p2, 2);
    assert_true(p2[0]->duplicate);
    assert_int_equal(field(p2[0], "seq"), 3);
    assert_string_equal(json_string_value(json_object_get(p2[0]->result, "type")), "text");
    assert_false(p2[1]->duplicate);
    assert_int_equal(field(p2[1], "seq"), 4);
    store_req_free(p2[0]);
    store_req_free(p2[1]);

    /* the chat list's last_seq, history by id, unread */
    store_req *r = new_req(f, STORE_CHAT_LIST);
    r->user_id = b;
    run(f, r);
    assert_int_equal(r->status, STORE_OK);
    assert_int_equal(json_array_size(r->result), 1);
    json_t *item = json_array_get(r->result, 0);
    assert_int_equal(json_integer_value(json_object_get(item, "last_seq")), 4);
    assert_int_equal(json_integer_value(json_object_get(item, "noreadnum")), 2);
    store_req_free(r);

    r = new_req(f, STORE_HISTORY);
    r->user_id = a;
    r->peer_id = b;
    r->limit = 2;
    run(f, r);
    assert_int_equal(json_array_size(r->result), 2);
    int64_t older = json_integer_value(json_object_get(json_array_get(r->result, 1), "id"));
    assert_int_equal(json_integer_value(json_object_get(json_array_get(r->result, 0), "seq")), 4);
    store_req_free(r);
    r = new_req(f, STORE_HISTORY);
    r->user_id = a;
    r->peer_id = b;
    r->before = older;
    run(f, r);
    assert_int_equal(json_array_size(r->result), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(r->result, 1), "seq")), 1);
    store_req_free(r);

    r = new_req(f, STORE_READ);
    r->user_id = b;
    r->peer_id = a;
    run(f, r);
    assert_int_equal(r->status, STORE_OK);
    assert_true(json_is_true(json_object_get(r->result, "changed")));
    assert_int_equal(field(r, "total"), 0);
    store_req_free(r);
    r = new_req(f, STORE_READ);
    r->user_id = b;
    r->peer_id = a;
    run(f, r);
    assert_false(json_is_true(json_object_get(r->result, "changed")));
    store_req_free(r);
}

static void test_sync_cursors(void **state)
{
    NEED_PG(state);
    fixture *f = *state;
    int64_t a = create_user(f, "a"), b = create_user(f, "b"), c = create_user(f, "c");
    store_req *s[5] = {send_req(f, b, a, NULL), send_req(f, b, a, NULL), send_req(f, b, a, NULL),
                       send_req(f, c, a, NULL), send_req(f, c, a, NULL)};
    run_all(f, s, 5);
    for (int i = 0; i < 5; i++)
        store_req_free(s[i]);

    store_req *r = new_req(f, STORE_SYNC_CURSORS);
    r->user_id = a;
    r->cursors = json_object();
    char key[24];
    snprintf(key, sizeof(key), "%lld", (long long)b);
    json_object_set_new(r->cursors, key, json_integer(1));
    r->limit = 3;
    run(f, r);
    assert_int_equal(r->status, STORE_OK);
    json_t *convs = json_object_get(r->result, "conversations");
    assert_int_equal(json_array_size(convs), 2);
    /* most recent first: c (2 messages from seq 1), then b (cut to 1 of 2) */
    json_t *first = json_array_get(convs, 0), *second = json_array_get(convs, 1);
    assert_int_equal(json_integer_value(json_object_get(first, "userid")), c);
    assert_int_equal(json_array_size(json_object_get(first, "messages")), 2);
    assert_false(json_is_true(json_object_get(first, "more")));
    assert_int_equal(json_integer_value(json_object_get(second, "userid")), b);
    json_t *msgs = json_object_get(second, "messages");
    assert_int_equal(json_array_size(msgs), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(msgs, 0), "seq")), 2);
    assert_true(json_is_true(json_object_get(second, "more")));
    store_req_free(r);
}

static void test_tokens_and_external(void **state)
{
    NEED_PG(state);
    fixture *f = *state;
    int64_t a = create_user(f, "tok");
    store_req *r = new_req(f, STORE_TOKEN_CREATE);
    for (int i = 0; i < 32; i++)
        r->token_hash[i] = (uint8_t)(random() & 0xff);
    r->token_hash[0] = 0; /* a zero byte inside: binary-safe */
    uint8_t hash[32];
    memcpy(hash, r->token_hash, 32);
    r->user_id = a;
    r->expires = 5000;
    assert_int_equal(run(f, r)->status, STORE_OK);
    store_req_free(r);
    r = new_req(f, STORE_TOKEN_CREATE);
    memcpy(r->token_hash, hash, 32);
    r->user_id = a;
    assert_int_equal(run(f, r)->status, STORE_CONFLICT);
    store_req_free(r);
    r = new_req(f, STORE_TOKEN_CREATE);
    r->token_hash[5] = 1;
    r->user_id = 999999999;
    assert_int_equal(run(f, r)->status, STORE_NOT_FOUND);
    store_req_free(r);
    r = new_req(f, STORE_TOKEN_LOOKUP);
    memcpy(r->token_hash, hash, 32);
    assert_int_equal(run(f, r)->status, STORE_OK);
    assert_int_equal(field(r, "id"), a);
    assert_int_equal(field(r, "expires"), 5000); /* the token cache stops there */
    store_req_free(r);
    r = new_req(f, STORE_TOKEN_DELETE);
    memcpy(r->token_hash, hash, 32);
    assert_int_equal(run(f, r)->status, STORE_OK);
    store_req_free(r);
    r = new_req(f, STORE_TOKEN_LOOKUP);
    memcpy(r->token_hash, hash, 32);
    assert_int_equal(run(f, r)->status, STORE_NOT_FOUND);
    store_req_free(r);

    /* external users: a taken name gets "#<sub>", then (that key taken too:
     * the subs differ only in case) "#x<hex of sub>" */
    char name[64], sub[2][32];
    snprintf(name, sizeof(name), "tok%s", f->tag);
    snprintf(sub[0], sizeof(sub[0]), "ext-%s", f->tag);
    snprintf(sub[1], sizeof(sub[1]), "EXT-%s", f->tag);
    const char *want[2] = {"#ext-", "#x4558542d"};
    for (int i = 0; i < 2; i++) {
        r = new_req(f, STORE_USER_EXTERNAL);
        store_req_set_str(&r->external_id, sub[i]);
        store_req_set_str(&r->username, name);
        run(f, r);
        assert_int_equal(r->status, STORE_OK);
        const char *got = json_string_value(json_object_get(r->result, "username"));
        assert_non_null(strstr(got, want[i]));
        store_req_free(r);
    }
    /* a revoked JWT: NOT_FOUND */
    r = new_req(f, STORE_JWT_REVOKE);
    memset(r->token_hash, 7, 32);
    r->expires = 9000;
    assert_int_equal(run(f, r)->status, STORE_OK);
    store_req_free(r);
    r = new_req(f, STORE_USER_EXTERNAL);
    memset(r->token_hash, 7, 32);
    store_req_set_str(&r->external_id, sub[0]);
    store_req_set_str(&r->username, name);
    assert_int_equal(run(f, r)->status, STORE_NOT_FOUND);
    store_req_free(r);
}

/* ---- admin, purge, search (migration 3) -------------------------------- */

static store_req *admin_req(fixture *f, int64_t uid, int action, int64_t time)
{
    store_req *r = new_req(f, STORE_USER_ADMIN);
    r->user_id = uid;
    r->action = action;
    r->time = time;
    return r;
}

static int run_status(fixture *f, store_req *r)
{
    int status = run(f, r)->status;
    store_req_free(r);
    return status;
}

static int token_create(fixture *f, uint8_t seed, int64_t uid, int64_t expires)
{
    store_req *r = new_req(f, STORE_TOKEN_CREATE);
    memset(r->token_hash, seed, 32);
    memcpy(r->token_hash, f->tag, 8); /* this test's */
    r->user_id = uid;
    r->expires = expires;
    return run_status(f, r);
}

static int token_exists(fixture *f, uint8_t seed)
{
    store_req *r = new_req(f, STORE_TOKEN_LOOKUP);
    memset(r->token_hash, seed, 32);
    memcpy(r->token_hash, f->tag, 8);
    r->time = INT64_MIN + 1;
    return run_status(f, r);
}

static int external_at(fixture *f, const char *sub, int64_t iat)
{
    char ext[64];
    snprintf(ext, sizeof(ext), "%s-%s", sub, f->tag);
    store_req *r = new_req(f, STORE_USER_EXTERNAL);
    store_req_set_str(&r->external_id, ext);
    store_req_set_str(&r->username, ext);
    r->issued_at = iat;
    return run_status(f, r);
}

static void test_user_admin(void **state)
{
    NEED_PG(state);
    fixture *f = *state;
    int64_t a = create_user(f, "adm");
    int64_t b = create_user(f, "bdm");
    assert_int_equal(token_create(f, 1, a, INT64_MAX), STORE_OK);
    assert_int_equal(token_create(f, 2, a, INT64_MAX), STORE_OK);
    assert_int_equal(token_create(f, 3, b, INT64_MAX), STORE_OK);
    store_req *r = run(f, admin_req(f, a, STORE_ADMIN_REVOKE, 5000));
    assert_int_equal(r->status, STORE_OK);
    assert_int_equal(field(r, "tokens_deleted"), 2);
    store_req_free(r);
    assert_int_equal(token_exists(f, 1), STORE_NOT_FOUND);
    assert_int_equal(token_exists(f, 3), STORE_OK);
    assert_int_equal(token_create(f, 4, a, INT64_MAX), STORE_OK);
    assert_int_equal(run_status(f, admin_req(f, 999999999999, STORE_ADMIN_REVOKE, 1)),
                     STORE_NOT_FOUND);

    r = run(f, admin_req(f, a, STORE_ADMIN_DISABLE, 6000));
    assert_int_equal(field(r, "tokens_deleted"), 1);
    assert_true(json_is_true(json_object_get(r->result, "disabled")));
    store_req_free(r);
    assert_int_equal(token_exists(f, 4), STORE_NOT_FOUND);
    assert_int_equal(token_create(f, 5, a, INT64_MAX), STORE_NOT_FOUND);
    char name[64];
    snprintf(name, sizeof(name), "ADM%s", f->tag);
    r = new_req(f, STORE_USER_BY_NAME);
    store_req_set_str(&r->username, name);
    assert_int_equal(run(f, r)->status, STORE_OK);
    assert_true(json_is_true(json_object_get(r->result, "disabled")));
    store_req_free(r);
    r = new_req(f, STORE_USER_SEARCH);
    r->user_id = b;
    store_req_set_str(&r->query, name);
    r->limit = 10;
    assert_int_equal(run(f, r)->status, STORE_OK);
    assert_int_equal(json_array_size(r->result), 0); /* disabled: not found */
    store_req_free(r);

    assert_int_equal(run_status(f, admin_req(f, a, STORE_ADMIN_ENABLE, 7000)), STORE_OK);
    assert_int_equal(token_exists(f, 4), STORE_NOT_FOUND);
    assert_int_equal(token_create(f, 5, a, INT64_MAX), STORE_OK);
    assert_int_equal(token_exists(f, 5), STORE_OK);

    /* JWT users: iat against the last revoke */
    assert_int_equal(external_at(f, "jw", 0), STORE_OK);
    char ext[64];
    snprintf(ext, sizeof(ext), "jw-%s", f->tag);
    r = new_req(f, STORE_USER_BY_NAME);
    store_req_set_str(&r->username, ext);
    assert_int_equal(run(f, r)->status, STORE_OK);
    int64_t j = field(r, "id");
    store_req_free(r);
    assert_int_equal(run_status(f, admin_req(f, j, STORE_ADMIN_REVOKE, 5000)), STORE_OK);
    assert_int_equal(external_at(f, "jw", 4000), STORE_NOT_FOUND);
    assert_int_equal(external_at(f, "jw", 0), STORE_NOT_FOUND);
    assert_int_equal(external_at(f, "jw", 5000), STORE_OK);
    assert_int_equal(run_status(f, admin_req(f, j, STORE_ADMIN_DISABLE, 6000)), STORE_OK);
    assert_int_equal(external_at(f, "jw", 9000), STORE_NOT_FOUND);
    assert_int_equal(run_status(f, admin_req(f, j, STORE_ADMIN_ENABLE, 7000)), STORE_OK);
    assert_int_equal(external_at(f, "jw", 9000), STORE_OK);
    assert_int_equal(external_at(f, "jw", 5500), STORE_NOT_FOUND);
}

/* The purge, by request and in the background, bounded per pass. The
 * test's tokens expire at negative times no other test uses. */
static void test_token_purge(void **state)
{
    NEED_PG(state);
    fixture *f = *state;
    PGconn *c = side_conn();
    side_exec(c, "DELETE FROM tokens WHERE expires_at < 0");
    int64_t a = create_user(f, "pur");
    const int64_t base = -1000000000000;
    assert_int_equal(token_create(f, 1, a, base + 300), STORE_OK);
    assert_int_equal(token_create(f, 2, a, base + 100), STORE_OK);
    assert_int_equal(token_create(f, 3, a, base + 200), STORE_OK);
    store_req *r = new_req(f, STORE_TOKEN_PURGE);
    r->time = base + 250;
    r->limit = 1;
    assert_int_equal(run(f, r)->status, STORE_OK);
    assert_int_equal(field(r, "tokens"), 1);
    store_req_free(r);
    assert_int_equal(token_exists(f, 2), STORE_NOT_FOUND); /* oldest first */
    assert_int_equal(token_exists(f, 3), STORE_OK);
    r = new_req(f, STORE_TOKEN_PURGE);
    r->time = base + 250;
    r->limit = 10;
    assert_int_equal(run(f, r)->status, STORE_OK);
    assert_int_equal(field(r, "tokens"), 1);
    store_req_free(r);
    assert_int_equal(token_exists(f, 1), STORE_OK);

    /* background: STORE_PURGE_BATCH + 50 expired rows go without a request */
    side_exec(c, "INSERT INTO tokens(hash, user_id, expires_at)"
                 " SELECT sha256(('purge-' || g || random())::bytea), 1, -5 - g"
                 " FROM generate_series(1, 550) g");
    store_close(f->s);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    store_options o = {.store = pg_uri, .connections = 2, .purge_interval_ms = 50};
    char err[512] = "";
    f->s = store_open_opts(&f->loop, &o, err, sizeof(err));
    assert_non_null(f->s);
    int64_t left = -1;
    for (int i = 0; i < 60 && left != 0; i++) {
        usleep(50000);
        left = side_exec(c, "SELECT count(*) FROM tokens WHERE expires_at < 0");
    }
    assert_int_equal(left, 0);
    PQfinish(c);
}

static void test_user_search(void **state)
{
    NEED_PG(state);
    fixture *f = *state;
    char n[4][64];
    const char *suffix[4] = {"alice", "Alicia", "malice", "bob"};
    int64_t id[4];
    for (int i = 0; i < 4; i++) {
        snprintf(n[i], sizeof(n[i]), "s%s%s", f->tag, suffix[i]);
        store_req *r = new_req(f, STORE_USER_CREATE);
        store_req_set_str(&r->username, n[i]);
        run(f, r);
        assert_int_equal(r->status, STORE_OK);
        id[i] = field(r, "id");
        store_req_free(r);
    }
    char q[64];
    snprintf(q, sizeof(q), "S%sALI", f->tag);
    store_req *r = new_req(f, STORE_USER_SEARCH);
    r->user_id = id[3];
    store_req_set_str(&r->query, q);
    r->limit = 10;
    assert_int_equal(run(f, r)->status, STORE_OK);
    assert_int_equal(json_array_size(r->result), 2); /* a prefix, not "malice" */
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(r->result, 0), "username")), n[0]);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(r->result, 1), "username")), n[1]);
    store_req_free(r);
    r = new_req(f, STORE_USER_SEARCH);
    r->user_id = id[0];
    store_req_set_str(&r->query, q);
    r->limit = 10;
    assert_int_equal(run(f, r)->status, STORE_OK);
    assert_int_equal(json_array_size(r->result), 1); /* not oneself */
    store_req_free(r);

    /* The plan seeks users_name_key_c, with enough users that a scan would
     * be cheaper if the index could not serve the range. */
    PGconn *c = side_conn();
    char sql[2048];
    snprintf(sql, sizeof(sql),
             "INSERT INTO users(username, created_at, name_key) SELECT 'plan%s' || g, 0,"
             " 'plan%s' || g FROM generate_series(1, 3000) g; ANALYZE users;",
             f->tag, f->tag);
    side_exec(c, sql);
    snprintf(sql, sizeof(sql), "PREPARE s AS %s", store_pg_search_sql());
    side_exec(c, sql);
    snprintf(sql, sizeof(sql), "EXPLAIN EXECUTE s(1, 'plan%s1', 'plan%s2', 20)", f->tag, f->tag);
    PGresult *res = PQexec(c, sql);
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    char plan[4096] = "";
    for (int i = 0; i < PQntuples(res); i++) {
        strncat(plan, PQgetvalue(res, i, 0), sizeof(plan) - strlen(plan) - 2);
        strcat(plan, "\n");
    }
    PQclear(res);
    print_message("search plan:\n%s", plan);
    assert_non_null(strstr(plan, "Index Scan using users_name_key_c on users"));
    assert_null(strstr(plan, "Seq Scan"));
    assert_null(strstr(plan, "Sort"));
    PQfinish(c);
}

/* A database of schema 2 (before admin) with a user and a token, in a
 * schema of its own: migration 3 keeps them, the user enabled. */
static void test_admin_migration(void **state)
{
    NEED_PG(state);
    fixture *f = *state;
    char schema[40], uri[1024], sql[2048];
    snprintf(schema, sizeof(schema), "mig_%s", f->tag);
    snprintf(uri, sizeof(uri), "%s%coptions=-csearch_path%%3D%s", pg_uri,
             strchr(pg_uri, '?') ? '&' : '?', schema);
    PGconn *c = side_conn();
    snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", schema);
    side_exec(c, sql);
    store_options o = {.store = uri, .connections = 2, .purge_interval_ms = -1};
    char err[512] = "";
    store *s = store_open_opts(&f->loop, &o, err, sizeof(err));
    if (!s)
        fail_msg("open in %s: %s", schema, err);
    store_close(s);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    snprintf(sql, sizeof(sql),
             "SET search_path = %s;"
             "DROP FUNCTION chatd_user_admin(bigint, int, bigint);"
             "DROP FUNCTION chatd_token_purge(bigint, int);"
             "DROP FUNCTION chatd_user_external(text, text[], text[], text, bigint, bytea, bigint);"
             "DROP INDEX tokens_user; DROP INDEX tokens_expiry; DROP INDEX users_name_key_c;"
             "ALTER TABLE users DROP COLUMN disabled, DROP COLUMN tokens_nbf,"
             " DROP COLUMN last_seen, DROP COLUMN hide_last_seen;"
             "DELETE FROM schema_version WHERE version >= 3;"
             "INSERT INTO users(id, username, created_at, name_key) VALUES (7, 'old', 0, 'old');"
             "INSERT INTO tokens(hash, user_id, expires_at) VALUES ('\\x0707', 7, 99999);"
             "SELECT max(version) FROM schema_version",
             schema);
    assert_int_equal(side_exec(c, sql), 2);
    s = store_open_opts(&f->loop, &o, err, sizeof(err));
    if (!s)
        fail_msg("reopen in %s: %s", schema, err);
    store *keep = f->s;
    f->s = s;
    store_req *r = new_req(f, STORE_USER_BY_NAME);
    store_req_set_str(&r->username, "OLD");
    assert_int_equal(run(f, r)->status, STORE_OK);
    assert_false(json_is_true(json_object_get(r->result, "disabled")));
    store_req_free(r);
    r = run(f, admin_req(f, 7, STORE_ADMIN_REVOKE, 5));
    assert_int_equal(r->status, STORE_OK);
    assert_int_equal(field(r, "tokens_deleted"), 1);
    store_req_free(r);
    f->s = keep;
    store_close(s);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    snprintf(sql, sizeof(sql), "SELECT max(version) FROM %s.schema_version", schema);
    assert_int_equal(side_exec(c, sql), 9); /* the latest version */
    snprintf(sql, sizeof(sql), "DROP SCHEMA %s CASCADE", schema);
    side_exec(c, sql);
    PQfinish(c);
}

/* A URI of pg_uri whose search_path is schema, and the schema created. */
static void schema_uri(PGconn *c, const char *schema, char *uri, size_t len)
{
    char sql[128];
    snprintf(uri, len, "%s%coptions=-csearch_path%%3D%s", pg_uri, strchr(pg_uri, '?') ? '&' : '?',
             schema);
    snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", schema);
    side_exec(c, sql);
}

/* Whether schema's index messages_uncounted exists (1: valid, 2: invalid). */
static int64_t uncounted_state(PGconn *c, const char *schema)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT CASE WHEN i.indisvalid THEN 1 ELSE 2 END FROM pg_index i"
             " WHERE i.indexrelid = to_regclass('%s.messages_uncounted')",
             schema);
    return side_exec(c, sql);
}

/* A database of schema 7 (before recall) with messages, in a schema of its
 * own: migrations 8 and 9 keep them, build messages_uncounted (after the
 * migrations, CONCURRENTLY), and a recall of an old message works; an
 * index left invalid (an interrupted build) is built again at the next
 * start. */
static void test_recall_migration(void **state)
{
    NEED_PG(state);
    fixture *f = *state;
    char schema[40], uri[1024], sql[2048];
    snprintf(schema, sizeof(schema), "rmig_%s", f->tag);
    PGconn *c = side_conn();
    schema_uri(c, schema, uri, sizeof(uri));
    store_options o = {.store = uri, .connections = 2, .purge_interval_ms = -1};
    char err[512] = "";
    store *s = store_open_opts(&f->loop, &o, err, sizeof(err));
    if (!s)
        fail_msg("open in %s: %s", schema, err);
    store *keep = f->s;
    f->s = s;
    int64_t a = create_user(f, "ra"), b = create_user(f, "rb");
    store_req *r = run(f, send_req(f, a, b, "old1"));
    assert_int_equal(r->status, STORE_OK);
    int64_t old_id = field(r, "id");
    store_req_free(r);
    f->s = keep;
    store_close(s);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    /* back to schema 7, with 20000 more messages in a conversation of
     * their own */
    snprintf(sql, sizeof(sql),
             "SET search_path = %s;"
             "DROP TABLE hidden_messages; DROP INDEX messages_uncounted;"
             "ALTER TABLE messages DROP COLUMN recalled, DROP COLUMN width, DROP COLUMN height;"
             "ALTER TABLE users DROP COLUMN hide_cursor;"
             "DELETE FROM schema_version WHERE version >= 8;"
             "INSERT INTO messages(id, seq, from_id, to_id, conv_lo, conv_hi, type, data, time)"
             " SELECT nextval('messages_id_seq'), g, %lld, %lld, 900000000, 900000001, 'text', "
             "'bulk', 1000"
             " FROM generate_series(1, 20000) g;"
             "SELECT max(version) FROM schema_version",
             schema, (long long)a, (long long)b);
    assert_int_equal(side_exec(c, sql), 7);
    s = store_open_opts(&f->loop, &o, err, sizeof(err));
    if (!s)
        fail_msg("reopen in %s: %s", schema, err);
    snprintf(sql, sizeof(sql), "SELECT max(version) FROM %s.schema_version", schema);
    assert_int_equal(side_exec(c, sql), 9);
    assert_int_equal(uncounted_state(c, schema), 1);
    f->s = s;
    r = new_req(f, STORE_MESSAGE_RECALL);
    r->user_id = a;
    r->message_id = old_id;
    r->recall_window = 1000000;
    run(f, r);
    assert_int_equal(r->status, STORE_OK);
    assert_true(json_is_true(json_object_get(json_object_get(r->result, "message"), "recalled")));
    assert_true(json_is_object(json_object_get(r->result, "notice")));
    store_req_free(r);
    f->s = keep;
    store_close(s);
    uv_run(&f->loop, UV_RUN_DEFAULT);

    /* an invalid index: a failed CREATE INDEX CONCURRENTLY leaves one
     * (here a unique one over duplicates) */
    snprintf(sql, sizeof(sql), "DROP INDEX %s.messages_uncounted", schema);
    side_exec(c, sql);
    snprintf(sql, sizeof(sql),
             "CREATE UNIQUE INDEX CONCURRENTLY messages_uncounted ON %s.messages(type)", schema);
    PGresult *res = PQexec(c, sql);
    assert_int_equal(PQresultStatus(res), PGRES_FATAL_ERROR);
    PQclear(res);
    assert_int_equal(uncounted_state(c, schema), 2);
    s = store_open_opts(&f->loop, &o, err, sizeof(err));
    if (!s)
        fail_msg("reopen in %s: %s", schema, err);
    assert_int_equal(uncounted_state(c, schema), 1);
    store_close(s);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    snprintf(sql, sizeof(sql), "DROP SCHEMA %s CASCADE", schema);
    side_exec(c, sql);
    PQfinish(c);
}

typedef struct {
    store_options o;
    uv_loop_t loop;
    store *s;
    char err[512];
} opener;

static void *open_thread(void *arg)
{
    opener *op = arg;
    op->s = store_open_opts(&op->loop, &op->o, op->err, sizeof(op->err));
    return NULL;
}

/* A node waiting for the migration lock holds no snapshot, so another
 * node's CREATE INDEX CONCURRENTLY under that lock (the build of
 * messages_uncounted) is not stuck behind it: here the test's own session
 * holds the lock and builds an index concurrently while a store waits to
 * migrate. Waiting inside pg_advisory_lock, the waiting node's statement
 * kept a snapshot the build waits for: a deadlock, one side failed. */
static void test_migration_lock_no_snapshot(void **state)
{
    NEED_PG(state);
    fixture *f = *state;
    char schema[40], uri[1024], sql[256];
    snprintf(schema, sizeof(schema), "lmig_%s", f->tag);
    PGconn *c = side_conn();
    schema_uri(c, schema, uri, sizeof(uri));
    side_exec(c, "SELECT pg_advisory_lock(426952979556)"); /* MIGRATION_LOCK, "chatd" */
    opener op = {.o = {.store = uri, .connections = 1, .purge_interval_ms = -1}};
    assert_int_equal(uv_loop_init(&op.loop), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, open_thread, &op), 0);
    usleep(500 * 1000); /* the store is waiting for the lock */
    snprintf(sql, sizeof(sql), "CREATE TABLE %s.side_t(x int)", schema);
    side_exec(c, sql);
    snprintf(sql, sizeof(sql), "CREATE INDEX CONCURRENTLY side_i ON %s.side_t(x)", schema);
    PGresult *res = PQexec(c, sql);
    bool built = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!built)
        print_message("concurrent build: %s", PQerrorMessage(c));
    PQclear(res);
    side_exec(c, "SELECT pg_advisory_unlock(426952979556)");
    pthread_join(t, NULL);
    if (!op.s)
        print_message("store open: %s", op.err);
    assert_true(built);
    assert_non_null(op.s);
    store_close(op.s);
    uv_run(&op.loop, UV_RUN_DEFAULT);
    uv_loop_close(&op.loop);
    snprintf(sql, sizeof(sql), "SELECT max(version) FROM %s.schema_version", schema);
    assert_int_equal(side_exec(c, sql), 9);
    assert_int_equal(uncounted_state(c, schema), 1);
    snprintf(sql, sizeof(sql), "DROP SCHEMA %s CASCADE", schema);
    side_exec(c, sql);
    PQfinish(c);
}

static void test_unreachable_at_start(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    /* port 1 on loopback: refused at once */
    store_options o = {.store = "postgres://x:y@127.0.0.1:1/none", .connections = 2};
    char err[512] = "";
    store *s = store_open_opts(&loop, &o, err, sizeof(err));
    assert_null(s);
    assert_true(strlen(err) > 0);
    uv_loop_close(&loop);
}

/* A stuck session holds the conversation's counter row: a send must answer
 * STORE_UNAVAILABLE once PostgreSQL's lock_timeout (4 s) fires, well
 * within the 5 s answer deadline, instead of waiting for ever; once the
 * lock is gone the store serves again, with no hole in the seqs. */
static void test_lock_held_unavailable(void **state)
{
    NEED_PG(state);
    fixture *f = *state;
    int64_t a = create_user(f, "la"), b = create_user(f, "lb");
    store_req *r = run(f, send_req(f, a, b, "l1"));
    assert_int_equal(r->status, STORE_OK);
    store_req_free(r);

    PGconn *h = side_conn();
    char sql[200];
    snprintf(sql, sizeof(sql),
             "SELECT last_seq FROM threads WHERE conv_lo = %lld AND conv_hi = %lld FOR UPDATE",
             (long long)(a < b ? a : b), (long long)(a < b ? b : a));
    side_exec(h, "BEGIN");
    assert_int_equal(side_exec(h, sql), 1);

    int64_t t0 = now_ms();
    r = run(f, send_req(f, a, b, "l2"));
    int64_t took = now_ms() - t0;
    printf("# send behind a held row lock answered %d after %lld ms\n", r->status, (long long)took);
    assert_int_equal(r->status, STORE_UNAVAILABLE);
    assert_true(took >= 3500 && took < 5500);
    store_req_free(r);

    side_exec(h, "ROLLBACK");
    PQfinish(h);
    /* the reconnect waits out a backoff of 100 ms */
    usleep(300 * 1000);
    r = run(f, send_req(f, a, b, "l2"));
    assert_int_equal(r->status, STORE_OK);
    assert_false(r->duplicate);
    assert_int_equal(field(r, "seq"), 2);
    store_req_free(r);
    PGconn *c = side_conn();
    assert_no_hole(c, a, b);
    PQfinish(c);
}

/* The store's backends stopped (SIGSTOP: a live server that never
 * answers, which PostgreSQL's own timeouts cannot end): the send answers
 * STORE_UNAVAILABLE at the 5 s deadline, and after SIGCONT the store
 * serves again on a new connection. Needs the right to signal the server
 * (root, or the server's user). */
static void test_stopped_backend_unavailable(void **state)
{
    NEED_PG(state);
    fixture *f = *state;
    int64_t a = create_user(f, "sa"), b = create_user(f, "sb");
    store_req *r = run(f, send_req(f, a, b, NULL));
    assert_int_equal(r->status, STORE_OK);
    store_req_free(r);

    PGconn *c = side_conn();
    PGresult *res = PQexec(c, "SELECT pid FROM pg_stat_activity WHERE application_name = 'chatd'"
                              " AND datname = current_database() AND pid <> pg_backend_pid()");
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    int n = PQntuples(res);
    assert_true(n >= 1);
    pid_t pids[16];
    int stopped = 0;
    for (int i = 0; i < n && i < 16; i++) {
        pids[stopped] = (pid_t)atoi(PQgetvalue(res, i, 0));
        if (kill(pids[stopped], SIGSTOP) == 0)
            stopped++;
    }
    PQclear(res);
    if (stopped < n) {
        for (int i = 0; i < stopped; i++)
            kill(pids[i], SIGCONT);
        PQfinish(c);
        skip(); /* not allowed to signal the server */
    }

    int64_t t0 = now_ms();
    r = run(f, send_req(f, a, b, NULL));
    int64_t took = now_ms() - t0;
    for (int i = 0; i < stopped; i++)
        kill(pids[i], SIGCONT);
    printf("# send to a stopped backend answered %d after %lld ms\n", r->status, (long long)took);
    assert_int_equal(r->status, STORE_UNAVAILABLE);
    assert_true(took >= 4500 && took < 6500);
    store_req_free(r);

    usleep(300 * 1000);
    r = run(f, send_req(f, a, b, NULL));
    assert_int_equal(r->status, STORE_OK);
    store_req_free(r);
    assert_no_hole(c, a, b);
    PQfinish(c);
}

/* 50 conversations, 3 messages each, limit 5: the answer lists all 50
 * (most recent first), the first with its 3, the second (cursor 1) with
 * its last 2, every other one with [] and more, as store.h and SQLite
 * say. */
static void test_sync_cursors_many_conversations(void **state)
{
    NEED_PG(state);
    fixture *f = *state;
    enum { PEERS = 50 };
    int64_t a = create_user(f, "ma"), peers[PEERS];
    for (int i = 0; i < PEERS; i++) {
        char name[16];
        snprintf(name, sizeof(name), "mp%d_", i);
        peers[i] = create_user(f, name);
    }
    store_req *s[PEERS * 3];
    for (int i = 0; i < PEERS * 3; i++)
        s[i] = send_req(f, peers[i / 3], a, NULL);
    run_all(f, s, PEERS * 3);
    for (int i = 0; i < PEERS * 3; i++) {
        assert_int_equal(s[i]->status, STORE_OK);
        store_req_free(s[i]);
    }
    /* peer 48 (the second most recent) read up to seq 1 */
    store_req *r = new_req(f, STORE_SYNC_CURSORS);
    r->user_id = a;
    r->cursors = json_object();
    char key[24];
    snprintf(key, sizeof(key), "%lld", (long long)peers[PEERS - 2]);
    json_object_set_new(r->cursors, key, json_integer(1));
    r->limit = 5;
    run(f, r);
    assert_int_equal(r->status, STORE_OK);
    json_t *convs = json_object_get(r->result, "conversations");
    assert_int_equal(json_array_size(convs), PEERS);
    size_t total = 0;
    for (size_t i = 0; i < PEERS; i++) {
        json_t *c = json_array_get(convs, i), *msgs = json_object_get(c, "messages");
        assert_int_equal(json_integer_value(json_object_get(c, "userid")), peers[PEERS - 1 - i]);
        total += json_array_size(msgs);
        size_t want = i == 0 ? 3 : i == 1 ? 2 : 0;
        assert_int_equal(json_array_size(msgs), want);
        assert_int_equal(json_is_true(json_object_get(c, "more")), i >= 2);
        for (size_t k = 0; k < want; k++)
            assert_int_equal(json_integer_value(json_object_get(json_array_get(msgs, k), "seq")),
                             (i == 1 ? 2 : 1) + (int64_t)k);
    }
    assert_int_equal(total, 5);
    store_req_free(r);

    /* what PostgreSQL itself returns: 5 message rows and a row for each
     * conversation without one (not 50 x 3 messages cut on our side) */
    char sql[4096], user[24], peer_seq[2][32];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) * 1000 + count(q.id) FROM (%s) q(peer, last_seq, cursor, id)",
             store_pg_sync_cursors_sql());
    snprintf(user, sizeof(user), "%lld", (long long)a);
    snprintf(peer_seq[0], sizeof(peer_seq[0]), "{%lld}", (long long)peers[PEERS - 2]);
    snprintf(peer_seq[1], sizeof(peer_seq[1]), "{1}");
    const char *params[4] = {user, peer_seq[0], peer_seq[1], "5"};
    PGconn *side = side_conn();
    PGresult *res = PQexecParams(side, sql, 4, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        fail_msg("%s", PQerrorMessage(side));
    int64_t rows = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    printf("# cursor sync, 50 conversations, limit 5: %lld rows, %lld with a message\n",
           (long long)(rows / 1000), (long long)(rows % 1000));
    assert_int_equal(rows / 1000, PEERS - 2 + 5); /* 48 without a message, 5 with */
    assert_int_equal(rows % 1000, 5);
    PQclear(res);
    PQfinish(side);

    /* no limit: everything */
    r = new_req(f, STORE_SYNC_CURSORS);
    r->user_id = a;
    r->cursors = json_object();
    run(f, r);
    convs = json_object_get(r->result, "conversations");
    assert_int_equal(json_array_size(convs), PEERS);
    for (size_t i = 0; i < PEERS; i++) {
        json_t *c = json_array_get(convs, i);
        assert_int_equal(json_array_size(json_object_get(c, "messages")), 3);
        assert_false(json_is_true(json_object_get(c, "more")));
    }
    store_req_free(r);
}

/* Another node's transaction (the side connection) stored client_msg_id k
 * of sender s to r1 and has not committed; our store sends k from s to r2
 * in a pass with other sends. The insert waits for the other transaction;
 * once it commits, our send answers its message as a duplicate, the other
 * sends of the pass commit with it (no unique violation, no one-by-one
 * re-run: one commit per pass), and no seq is left unused. */
static void test_cmid_two_conversations_held(void **state)
{
    NEED_PG(state);
    fixture *f = *state;
    int64_t s = create_user(f, "cs"), r1 = create_user(f, "cr1"), r2 = create_user(f, "cr2");
    int64_t x = create_user(f, "cx"), y = create_user(f, "cy");
    store_req *first[2] = {send_req(f, s, r2, NULL), send_req(f, x, y, NULL)};
    run_all(f, first, 2);
    store_req_free(first[0]);
    store_req_free(first[1]);

    char sql[300], cmid[64];
    snprintf(cmid, sizeof(cmid), "k-%s", f->tag);
    PGconn *other = side_conn(), *h = side_conn();
    side_exec(other, "BEGIN");
    snprintf(sql, sizeof(sql), "SELECT o_id FROM chatd_send(%lld, %lld, 'text', 'other', 1, '%s')",
             (long long)s, (long long)r1, cmid);
    int64_t other_id = side_exec(other, sql);
    assert_true(other_id > 0);
    /* h holds x-y's counter row, so the writer's first pass waits and the
     * others queue up behind it */
    side_exec(h, "BEGIN");
    snprintf(sql, sizeof(sql),
             "SELECT 1 FROM threads WHERE conv_lo = %lld AND conv_hi = %lld FOR UPDATE",
             (long long)(x < y ? x : y), (long long)(x < y ? y : x));
    side_exec(h, sql);

    uint64_t commits0;
    store_stats(f->s, &commits0, NULL);
    store_req *reqs[4] = {send_req(f, x, y, NULL), send_req(f, s, r2, NULL),
                          send_req(f, s, r2, NULL), send_req(f, x, r2, NULL)};
    store_req_set_str(&reqs[1]->client_msg_id, cmid);
    store_submit(f->s, reqs[0]);
    usleep(50 * 1000);
    for (int i = 1; i < 4; i++)
        store_submit(f->s, reqs[i]);
    usleep(100 * 1000);
    side_exec(h, "COMMIT"); /* the passes run; the one with k waits for `other` */
    usleep(300 * 1000);
    side_exec(other, "COMMIT");
    int before = f->done;
    while (f->done < before + 4)
        uv_run(&f->loop, UV_RUN_ONCE);
    uint64_t commits1;
    store_stats(f->s, &commits1, NULL);

    for (int i = 0; i < 4; i++)
        assert_int_equal(reqs[i]->status, STORE_OK);
    assert_true(reqs[1]->duplicate);
    assert_int_equal(field(reqs[1], "id"), other_id);
    assert_int_equal(field(reqs[1], "to_id"), r1);
    assert_int_equal(field(reqs[1], "seq"), 1);
    assert_false(reqs[2]->duplicate);
    assert_int_equal(field(reqs[2], "seq"), 2); /* not 3: k took no seq here */
    assert_int_equal(field(reqs[3], "seq"), 1);
    printf("# %llu commits for the 4 sends\n", (unsigned long long)(commits1 - commits0));
    assert_true(commits1 - commits0 <= 2); /* a re-run would commit each alone */
    for (int i = 0; i < 4; i++)
        store_req_free(reqs[i]);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM messages WHERE from_id = %lld AND client_msg_id = '%s'",
             (long long)s, cmid);
    assert_int_equal(side_exec(h, sql), 1);
    assert_no_hole(h, s, r1);
    assert_no_hole(h, s, r2);
    assert_no_hole(h, x, y);
    assert_no_hole(h, x, r2);
    PQfinish(other);
    PQfinish(h);
}

/* Two stores on one database (two nodes), each sending the same
 * client_msg_id from one sender to a different recipient, at once, 20
 * times: each is stored once, both answer that message, no seq hole. */
static void test_cmid_two_nodes(void **state)
{
    NEED_PG(state);
    fixture *f = *state, *g = NULL;
    setup((void **)&g);
    int64_t s = create_user(f, "ns"), r1 = create_user(f, "nr1"), r2 = create_user(f, "nr2");
    for (int round = 0; round < 20; round++) {
        char cmid[32];
        snprintf(cmid, sizeof(cmid), "n%d", round);
        store_req *fa[2] = {send_req(f, s, r1, cmid), send_req(f, s, r1, NULL)};
        /* g's requests answer on g's loop; the same client_msg_id */
        store_req *ga[2] = {send_req(g, s, r2, NULL), send_req(g, s, r2, NULL)};
        store_req_set_str(&ga[0]->client_msg_id, fa[0]->client_msg_id);
        for (int i = 0; i < 2; i++) {
            store_submit(f->s, fa[i]);
            store_submit(g->s, ga[i]);
        }
        uv_run(&f->loop, UV_RUN_DEFAULT);
        uv_run(&g->loop, UV_RUN_DEFAULT);
        for (int i = 0; i < 2; i++) {
            assert_int_equal(fa[i]->status, STORE_OK);
            assert_int_equal(ga[i]->status, STORE_OK);
        }
        assert_true(fa[0]->duplicate != ga[0]->duplicate);
        assert_int_equal(field(fa[0], "id"), field(ga[0], "id"));
        assert_int_equal(field(fa[0], "seq"), field(ga[0], "seq"));
        for (int i = 0; i < 2; i++) {
            store_req_free(fa[i]);
            store_req_free(ga[i]);
        }
    }
    PGconn *c = side_conn();
    assert_no_hole(c, s, r1);
    assert_no_hole(c, s, r2);
    char sql[200];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM messages WHERE from_id = %lld", (long long)s);
    assert_int_equal(side_exec(c, sql), 20 * 3);
    PQfinish(c);
    teardown((void **)&g);
}

int main(void)
{
    pg_uri = getenv("CHATD_TEST_PG_URI");
    if (pg_uri && !*pg_uri)
        pg_uri = NULL;
    srandom((unsigned)time(NULL) ^ (unsigned)getpid());
    if (!pg_uri)
        printf("test_store_pg: CHATD_TEST_PG_URI is not set: the PostgreSQL tests are skipped "
               "(set it to e.g. $(scripts/postgres.sh start) to run them)\n");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_seq_and_duplicates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sync_cursors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tokens_and_external, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_admin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_purge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_search, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admin_migration, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recall_migration, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_lock_no_snapshot, setup, teardown),
        cmocka_unit_test(test_unreachable_at_start),
        cmocka_unit_test_setup_teardown(test_lock_held_unavailable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stopped_backend_unavailable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sync_cursors_many_conversations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cmid_two_conversations_held, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cmid_two_nodes, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
