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
 * users' name suffixes, and a store whose server is unreachable at start
 * fails to open. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"

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
    store_options o = {.store = pg_uri, .durability = STORE_DURABLE_FULL, .connections = 3};
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
        cmocka_unit_test(test_unreachable_at_start),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
