/* Unit tests for recall, delete-for-me and image sizes in the store
 * (store.h STORE_MESSAGE_RECALL, STORE_MESSAGE_DELETE, width/height of
 * STORE_MESSAGE_SEND and STORE_GROUP_SEND).
 *
 * Backend-neutral like test_store_groups.c: SQLite in a fresh temporary
 * directory by default, PostgreSQL when CHATD_TEST_PG_URI names a database
 * (the unit-pg stage). Each test drives a real store on a real uv loop.
 *
 * Checked: a recall empties the stored data (read in the database itself),
 * marks the message and appends one notice (next seq, no unread, one row
 * whatever the group's size), lowers the recipient's count of a message it
 * had not read, is idempotent (a retry answers the same notice), and refuses in SQLite's order
 * (not_found, forbidden, not_member, group_dissolved, recall_window_passed); hidden messages are
 * marked for their user only, with a per-user cursor that STORE_SYNC_CURSORS pages through; image
 * sizes are stored and answered; and recalls, deletes and sends share one pass. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"
#include "store/store_backend.h"

#define STORE_FIXTURE_NAME "test_store_recall"
#include "store_fixture.h"

static const char *jdata(json_t *o)
{
    return jstr(o, "data");
}

/* A 1:1 send; returns the message (the caller decrefs it). */
static json_t *send1(fixture *f, int64_t from, int64_t to, const char *text, int64_t time,
                     int64_t w, int64_t h)
{
    store_req *r = new_req(f, STORE_MESSAGE_SEND, from, 0);
    r->peer_id = to;
    r->time = time;
    r->width = w;
    r->height = h;
    store_req_set_str(&r->msg_type, w ? "image" : "text");
    store_req_set_str(&r->msg_data, text);
    run_ok(f, r);
    json_t *m = json_incref(r->result);
    store_req_free(r);
    return m;
}

static json_t *sendg(fixture *f, int64_t from, int64_t gid, const char *text, int64_t w, int64_t h)
{
    store_req *r = new_req(f, STORE_GROUP_SEND, from, gid);
    r->width = w;
    r->height = h;
    store_req_set_str(&r->msg_type, w ? "image" : "text");
    store_req_set_str(&r->msg_data, text);
    run_ok(f, r);
    json_t *m = json_incref(json_object_get(r->result, "message"));
    store_req_free(r);
    return m;
}

static store_req *recall_req(fixture *f, int64_t user, int64_t msg, int64_t time)
{
    store_req *r = new_req(f, STORE_MESSAGE_RECALL, user, 0);
    r->message_id = msg;
    r->time = time;
    r->recall_window = 120000;
    return r;
}

static int64_t unread_total(fixture *f, int64_t user)
{
    store_req *r = run_ok(f, new_req(f, STORE_UNREAD, user, 0));
    int64_t t = jint(r->result, "total");
    store_req_free(r);
    return t;
}

/* The data stored for message id, read in the database itself: its length. */
static int64_t stored_len(fixture *f, int64_t id)
{
    char sql[128];
    snprintf(sql, sizeof(sql), "SELECT length(data) + 1 FROM messages WHERE id = %lld",
             (long long)id);
    return side_sql(f, sql) - 1;
}

/* The message of arr with id (borrowed), failing when there is none. */
static json_t *find_msg(json_t *arr, int64_t id)
{
    size_t i;
    json_t *m;
    json_array_foreach(arr, i, m)
    {
        if (jint(m, "id") == id)
            return m;
    }
    fail_msg("message %lld not found", (long long)id);
    return NULL;
}

static json_t *history(fixture *f, int64_t user, int64_t peer)
{
    store_req *r = new_req(f, STORE_HISTORY, user, 0);
    r->peer_id = peer;
    run_ok(f, r);
    json_t *h = json_incref(r->result);
    store_req_free(r);
    return h;
}

static void test_recall_1to1(void **state)
{
    fixture *f = *state;
    int64_t a = create_user(f, "ra"), b = create_user(f, "rb"), c = create_user(f, "rc");
    json_t *m1 = send1(f, a, b, "keep", 1000, 0, 0);
    json_t *m2 = send1(f, a, b, "secret", 2000, 0, 0);
    int64_t id2 = jint(m2, "id");
    assert_int_equal(unread_total(f, b), 2);

    /* refusals, in order, write nothing */
    run_err(f, recall_req(f, a, id2 + 1000000, 3000), STORE_NOT_FOUND, "not_found");
    run_err(f, recall_req(f, c, id2, 3000), STORE_NOT_FOUND, "not_found");
    run_err(f, recall_req(f, b, id2, 3000), STORE_FORBIDDEN, "forbidden");
    run_err(f, recall_req(f, a, id2, 2000 + 120001), STORE_CONFLICT, "recall_window_passed");
    assert_int_equal(stored_len(f, id2), 6);

    store_req *r = run_ok(f, recall_req(f, a, id2, 2000 + 120000));
    json_t *msg = json_object_get(r->result, "message");
    json_t *notice = json_object_get(r->result, "notice");
    assert_int_equal(jint(msg, "id"), id2);
    assert_true(jbool(msg, "recalled"));
    assert_string_equal(jdata(msg), "");
    assert_string_equal(jstr(msg, "type"), "text");
    assert_string_equal(jstr(notice, "type"), "recall");
    assert_int_equal(jint(notice, "seq"), jint(m2, "seq") + 1);
    assert_int_equal(jint(notice, "to_id"), b);
    assert_int_equal(jint(notice, "from_id"), a);
    assert_int_equal(jint(r->result, "peer_id"), b);
    char want[64];
    snprintf(want, sizeof(want), "{\"message_id\":%lld}", (long long)id2);
    assert_string_equal(jdata(notice), want);
    int64_t notice_id = jint(notice, "id");
    store_req_free(r);
    /* gone from the server: the row holds no text */
    assert_int_equal(stored_len(f, id2), 0);
    /* b had not read it: one unread less, and the notice is none */
    assert_int_equal(unread_total(f, b), 1);
    assert_int_equal(unread_total(f, a), 0);
    run_err(f, recall_req(f, a, notice_id, 3000), STORE_FORBIDDEN, "forbidden");

    /* everywhere */
    json_t *h = history(f, b, a);
    assert_int_equal(json_array_size(h), 3);
    assert_true(jbool(find_msg(h, id2), "recalled"));
    assert_null(json_object_get(find_msg(h, jint(m1, "id")), "recalled"));
    assert_string_equal(jdata(find_msg(h, jint(m1, "id"))), "keep");
    json_decref(h);
    r = run_ok(f, new_req(f, STORE_CHAT_LIST, b, 0));
    json_t *item = json_array_get(r->result, 0);
    assert_int_equal(jint(item, "last_message_id"), notice_id);
    assert_string_equal(jstr(item, "type"), "recall");
    assert_int_equal(jint(item, "noreadnum"), 1);
    store_req_free(r);

    /* idempotent: nothing stored, the existing notice answered again with
     * the peer, so the caller pushes it again */
    r = run_ok(f, recall_req(f, a, id2, 999999999));
    assert_int_equal(jint(json_object_get(r->result, "notice"), "id"), notice_id);
    assert_string_equal(jstr(json_object_get(r->result, "notice"), "type"), "recall");
    assert_int_equal(jint(r->result, "peer_id"), b);
    assert_true(jbool(json_object_get(r->result, "message"), "recalled"));
    store_req_free(r);
    r = run_ok(f, new_req(f, STORE_SYNC_CURSORS, a, 0));
    json_t *msgs =
        json_object_get(json_array_get(json_object_get(r->result, "conversations"), 0), "messages");
    assert_int_equal(json_array_size(msgs), 3); /* one notice only */
    store_req_free(r);
    json_decref(m1);
    json_decref(m2);
}

static void test_recall_group(void **state)
{
    fixture *f = *state;
    int64_t a = create_user(f, "ga"), b = create_user(f, "gb"), c = create_user(f, "gc");
    int64_t mem[] = {b, c};
    int64_t gid = create_group(f, a, 2, mem);
    json_t *m = sendg(f, a, gid, "oops", 0, 0);
    json_t *k = sendg(f, b, gid, "stays", 0, 0);
    assert_int_equal(unread_total(f, c), 3); /* create, m, k */
    char sql[160];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM messages WHERE conv_lo = 0 AND conv_hi = %lld",
             (long long)gid);
    int64_t rows = side_sql(f, sql);

    run_err(f, recall_req(f, b, jint(m, "id"), 1000), STORE_FORBIDDEN, "forbidden");
    store_req *r = run_ok(f, recall_req(f, a, jint(m, "id"), 1000));
    json_t *notice = json_object_get(r->result, "notice");
    assert_int_equal(jint(notice, "group_id"), gid);
    assert_int_equal(jint(notice, "seq"), jint(k, "seq") + 1);
    json_t *members = json_object_get(r->result, "members");
    assert_int_equal(json_array_size(members), 3);
    assert_true(has_id(members, a) && has_id(members, b) && has_id(members, c));
    int64_t notice_id = jint(notice, "id");
    store_req_free(r);
    /* a retry: the same notice and the members, nothing stored */
    r = run_ok(f, recall_req(f, a, jint(m, "id"), 1000));
    assert_int_equal(jint(json_object_get(r->result, "notice"), "id"), notice_id);
    assert_int_equal(json_array_size(json_object_get(r->result, "members")), 3);
    store_req_free(r);
    assert_int_equal(side_sql(f, sql), rows + 1); /* one notice row, none per member */
    assert_int_equal(stored_len(f, jint(m, "id")), 0);
    /* c: the recalled message and the notice are not unread */
    assert_int_equal(unread_total(f, c), 2);
    /* b read up to its own message: the notice adds nothing */
    assert_int_equal(unread_total(f, b), 0);
    json_t *it = list_group(f, c, gid);
    assert_int_equal(jint(it, "noreadnum"), 2);
    assert_string_equal(jstr(it, "type"), "recall");
    json_decref(it);
    r = new_req(f, STORE_GROUP_HISTORY, c, gid);
    run_ok(f, r);
    assert_true(jbool(find_msg(r->result, jint(m, "id")), "recalled"));
    assert_string_equal(jdata(find_msg(r->result, jint(k, "id"))), "stays");
    store_req_free(r);
    r = run_ok(f, new_req(f, STORE_GROUP_READ, c, gid));
    store_req_free(r);
    assert_int_equal(unread_total(f, c), 0);

    /* a member who left: not_member; a dissolved group: group_dissolved */
    json_t *k2 = sendg(f, b, gid, "bye", 0, 0);
    store_req_free(run_ok(f, new_req(f, STORE_GROUP_LEAVE, b, gid)));
    run_err(f, recall_req(f, b, jint(k2, "id"), 1000), STORE_FORBIDDEN, "not_member");
    json_t *m3 = sendg(f, a, gid, "late", 0, 0);
    store_req_free(run_ok(f, new_req(f, STORE_GROUP_DISSOLVE, a, gid)));
    run_err(f, recall_req(f, a, jint(m3, "id"), 1000), STORE_CONFLICT, "group_dissolved");
    json_decref(m);
    json_decref(k);
    json_decref(k2);
    json_decref(m3);
}

static store_req *delete_req(fixture *f, int64_t user, int n, const int64_t *v)
{
    store_req *r = new_req(f, STORE_MESSAGE_DELETE, user, 0);
    r->message_ids = ids(n, v);
    return r;
}

static store_req *sync_deleted(fixture *f, int64_t user, int64_t after)
{
    store_req *r = new_req(f, STORE_SYNC_CURSORS, user, 0);
    r->want_deleted = true;
    r->deleted_after = after;
    return run_ok(f, r);
}

static void test_delete(void **state)
{
    fixture *f = *state;
    int64_t a = create_user(f, "da"), b = create_user(f, "db"), c = create_user(f, "dc");
    json_t *m1 = send1(f, a, b, "one", 1000, 0, 0);
    json_t *m2 = send1(f, b, a, "two", 1000, 0, 0);
    json_t *other = send1(f, c, b, "not a's", 1000, 0, 0);
    int64_t id1 = jint(m1, "id"), id2 = jint(m2, "id");

    /* a new user's cursor is 0; nothing hidden */
    store_req *r = sync_deleted(f, a, 0);
    json_t *d = json_object_get(r->result, "deleted");
    assert_int_equal(json_array_size(json_object_get(d, "message_ids")), 0);
    assert_int_equal(jint(d, "cursor"), 0);
    assert_false(jbool(d, "more"));
    store_req_free(r);

    int64_t req[] = {id2, jint(other, "id"), id2, 999999999};
    r = run_ok(f, delete_req(f, a, 4, req));
    json_t *got = json_object_get(r->result, "message_ids");
    assert_int_equal(json_array_size(got), 1);
    assert_true(has_id(got, id2));
    assert_int_equal(jint(r->result, "cursor"), 1);
    assert_true(jbool(r->result, "changed"));
    store_req_free(r);
    /* again: the same, nothing changed */
    r = run_ok(f, delete_req(f, a, 1, &id2));
    assert_int_equal(jint(r->result, "cursor"), 1);
    assert_false(jbool(r->result, "changed"));
    store_req_free(r);
    r = run_ok(f, delete_req(f, a, 1, &id1));
    assert_int_equal(jint(r->result, "cursor"), 2);
    store_req_free(r);

    /* for a only, wherever a message appears */
    json_t *h = history(f, a, b);
    assert_true(jbool(find_msg(h, id2), "deleted"));
    assert_string_equal(jdata(find_msg(h, id2)), "");
    assert_true(jbool(find_msg(h, id1), "deleted"));
    json_decref(h);
    h = history(f, b, a);
    assert_null(json_object_get(find_msg(h, id2), "deleted"));
    assert_string_equal(jdata(find_msg(h, id2)), "two");
    json_decref(h);
    r = run_ok(f, new_req(f, STORE_CHAT_LIST, a, 0));
    assert_true(jbool(json_array_get(r->result, 0), "deleted"));
    store_req_free(r);
    r = new_req(f, STORE_SYNC, a, 0);
    run_ok(f, r);
    assert_true(jbool(find_msg(r->result, id2), "deleted"));
    store_req_free(r);

    /* the cursor pages the hidden ids */
    r = sync_deleted(f, a, 0);
    d = json_object_get(r->result, "deleted");
    got = json_object_get(d, "message_ids");
    assert_int_equal(json_array_size(got), 2);
    assert_int_equal(json_integer_value(json_array_get(got, 0)), id2);
    assert_int_equal(json_integer_value(json_array_get(got, 1)), id1);
    assert_int_equal(jint(d, "cursor"), 2);
    json_t *msgs =
        json_object_get(json_array_get(json_object_get(r->result, "conversations"), 0), "messages");
    assert_true(jbool(find_msg(msgs, id2), "deleted"));
    store_req_free(r);
    r = sync_deleted(f, a, 1);
    d = json_object_get(r->result, "deleted");
    assert_int_equal(json_array_size(json_object_get(d, "message_ids")), 1);
    store_req_free(r);
    /* with cursors past everything: no conversation, still the answer */
    r = new_req(f, STORE_SYNC_CURSORS, a, 0);
    r->cursors = json_pack("{s:i}", "0", 0);
    json_object_clear(r->cursors);
    char key[24];
    snprintf(key, sizeof(key), "%lld", (long long)b);
    json_object_set_new(r->cursors, key, json_integer(100));
    r->want_deleted = true;
    r->deleted_after = 2;
    run_ok(f, r);
    assert_int_equal(json_array_size(json_object_get(r->result, "conversations")), 0);
    d = json_object_get(r->result, "deleted");
    assert_int_equal(jint(d, "cursor"), 2);
    assert_int_equal(json_array_size(json_object_get(d, "message_ids")), 0);
    store_req_free(r);
    /* without want_deleted: no "deleted" */
    r = run_ok(f, new_req(f, STORE_SYNC_CURSORS, a, 0));
    assert_null(json_object_get(r->result, "deleted"));
    store_req_free(r);

    /* a group message: members only, within their range */
    int64_t mem[] = {b};
    int64_t gid = create_group(f, a, 1, mem);
    json_t *gm = sendg(f, a, gid, "g", 0, 0);
    int64_t gmid = jint(gm, "id");
    r = run_ok(f, delete_req(f, c, 1, &gmid));
    assert_int_equal(json_array_size(json_object_get(r->result, "message_ids")), 0);
    assert_int_equal(jint(r->result, "cursor"), 0);
    store_req_free(r);
    r = run_ok(f, delete_req(f, b, 1, &gmid));
    assert_int_equal(json_array_size(json_object_get(r->result, "message_ids")), 1);
    store_req_free(r);
    r = new_req(f, STORE_GROUP_HISTORY, b, gid);
    run_ok(f, r);
    assert_true(jbool(find_msg(r->result, gmid), "deleted"));
    store_req_free(r);
    r = new_req(f, STORE_GROUP_HISTORY, a, gid);
    run_ok(f, r);
    assert_null(json_object_get(find_msg(r->result, gmid), "deleted"));
    store_req_free(r);
    json_decref(m1);
    json_decref(m2);
    json_decref(other);
    json_decref(gm);
}

static void test_image_size(void **state)
{
    fixture *f = *state;
    int64_t a = create_user(f, "ia"), b = create_user(f, "ib");
    json_t *m = send1(f, a, b, "/media/a.png", 1000, 640, 480);
    assert_int_equal(jint(m, "width"), 640);
    assert_int_equal(jint(m, "height"), 480);
    json_t *plain = send1(f, a, b, "hi", 1000, 0, 0);
    assert_null(json_object_get(plain, "width"));
    json_t *h = history(f, b, a);
    assert_int_equal(jint(find_msg(h, jint(m, "id")), "width"), 640);
    assert_int_equal(jint(find_msg(h, jint(m, "id")), "height"), 480);
    assert_null(json_object_get(find_msg(h, jint(plain, "id")), "height"));
    json_decref(h);
    json_t *last = send1(f, a, b, "/media/b.png", 1000, 1, 65535);
    store_req *r = run_ok(f, new_req(f, STORE_CHAT_LIST, b, 0));
    assert_int_equal(jint(json_array_get(r->result, 0), "height"), 65535);
    store_req_free(r);
    int64_t mem[] = {b};
    int64_t gid = create_group(f, a, 1, mem);
    json_t *g = sendg(f, a, gid, "/media/c.png", 10, 20);
    assert_int_equal(jint(g, "width"), 10);
    json_t *it = list_group(f, b, gid);
    assert_int_equal(jint(it, "width"), 10);
    assert_int_equal(jint(it, "height"), 20);
    json_decref(it);
    /* a recall drops the size */
    r = run_ok(f, recall_req(f, a, jint(m, "id"), 1000));
    assert_null(json_object_get(json_object_get(r->result, "message"), "width"));
    store_req_free(r);
    json_decref(m);
    json_decref(plain);
    json_decref(last);
    json_decref(g);
}

/* Sends, a recall and a delete in one pass (group commit): each answered
 * as alone, the recall's notice after the send it follows. */
static void test_one_pass(void **state)
{
    fixture *f = *state;
    int64_t a = create_user(f, "pa"), b = create_user(f, "pb");
    json_t *m = send1(f, a, b, "x", 1000, 0, 0);
    int64_t id = jint(m, "id");
    store_req *p[4];
    p[0] = new_req(f, STORE_MESSAGE_SEND, b, 0);
    p[0]->peer_id = a;
    store_req_set_str(&p[0]->msg_type, "text");
    store_req_set_str(&p[0]->msg_data, "y");
    p[1] = recall_req(f, a, id, 1000);
    p[2] = delete_req(f, b, 1, &id);
    p[3] = recall_req(f, b, id, 1000);
    for (int i = 0; i < 4; i++)
        store_submit(f->s, p[i]);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(p[0]->status, STORE_OK);
    assert_int_equal(p[1]->status, STORE_OK);
    assert_int_equal(jint(json_object_get(p[1]->result, "notice"), "seq"), 3);
    assert_int_equal(p[2]->status, STORE_OK);
    assert_int_equal(p[3]->status, STORE_FORBIDDEN);
    for (int i = 0; i < 4; i++)
        store_req_free(p[i]);
    json_t *h = history(f, b, a);
    assert_int_equal(json_array_size(h), 3);
    assert_true(jbool(find_msg(h, id), "recalled"));
    assert_true(jbool(find_msg(h, id), "deleted"));
    json_decref(h);
    json_decref(m);
}

int main(void)
{
    pg_uri = getenv("CHATD_TEST_PG_URI");
    if (pg_uri && !*pg_uri)
        pg_uri = NULL;
    srandom((unsigned)time(NULL) ^ (unsigned)getpid());
    printf("test_store_recall: on %s\n", pg_uri ? "PostgreSQL (CHATD_TEST_PG_URI)" : "SQLite");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_recall_1to1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recall_group, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_image_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_pass, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
