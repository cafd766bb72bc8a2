/* Unit tests for the group operations of store (store.h, "Groups").
 *
 * Backend-neutral: they run on the SQLite backend in a fresh temporary
 * directory by default, and on the PostgreSQL backend when
 * CHATD_TEST_PG_URI names a database (usernames carry a random tag there,
 * so a database can be reused). Each test drives a real store on a real uv
 * loop, one request at a time.
 *
 * Checked: every STORE_GROUP_* operation with its role rules and errors
 * ({code, message} results), the seq-range model (a removed member sees
 * nothing after its removal, a re-added one sees from the new "add"
 * message on), what a departed member's info and chat list item show (the
 * group as of its leaving), computed unread counts with mute and the totals of
 * STORE_READ / STORE_UNREAD, one chat list mixing 1:1 and group items,
 * cursor sync with "g<id>" keys and `more` paging, dedup by
 * client_msg_id, the last member leaving dissolves, the owner leaving
 * passes ownership on, max_members, presence peers through groups, group
 * requests sharing one pass (a refusal costs only itself), and that a group
 * send stores ONE message row whatever the group's size (counted in the
 * database itself). */
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

#define STORE_FIXTURE_NAME "test_store_groups"
#include "store_fixture.h"

/* A system message's parsed data; the caller decrefs it. */
static json_t *sys_data(json_t *msg)
{
    assert_string_equal(jstr(msg, "type"), "system");
    json_error_t e;
    json_t *d = json_loads(jstr(msg, "data"), 0, &e);
    if (!d)
        fail_msg("system data is not JSON: %s", e.text);
    return d;
}

/* Checks a message belongs to group gid (group_id, no to_id). */
static void assert_group_msg(json_t *msg, int64_t gid)
{
    assert_int_equal(jint(msg, "group_id"), gid);
    assert_null(json_object_get(msg, "to_id"));
}

static store_req *send_req(fixture *f, int64_t from, int64_t gid, const char *cmid)
{
    store_req *r = new_req(f, STORE_GROUP_SEND, from, gid);
    store_req_set_str(&r->msg_type, "text");
    store_req_set_str(&r->msg_data, "hi \"all\"");
    if (cmid) {
        char full[64];
        snprintf(full, sizeof(full), "%s-%s", cmid, f->tag);
        store_req_set_str(&r->client_msg_id, full);
    }
    return r;
}

/* Sends and returns the message's seq. */
static int64_t send_group(fixture *f, int64_t from, int64_t gid)
{
    store_req *r = run_ok(f, send_req(f, from, gid, NULL));
    json_t *msg = json_object_get(r->result, "message");
    assert_group_msg(msg, gid);
    int64_t seq = jint(msg, "seq");
    store_req_free(r);
    return seq;
}

static store_req *info(fixture *f, int64_t user, int64_t gid)
{
    return run_ok(f, new_req(f, STORE_GROUP_INFO, user, gid));
}

static int role_op(fixture *f, int64_t actor, int64_t gid, int64_t peer, int role)
{
    store_req *r = new_req(f, STORE_GROUP_ROLE, actor, gid);
    r->peer_id = peer;
    r->action = role;
    int status = run(f, r)->status;
    store_req_free(r);
    return status;
}

static store_req *history(fixture *f, int64_t user, int64_t gid, int64_t before, int64_t limit)
{
    store_req *r = new_req(f, STORE_GROUP_HISTORY, user, gid);
    r->before = before;
    r->limit = limit;
    run_ok(f, r);
    assert_true(json_is_array(r->result));
    return r;
}

/* The user's STORE_UNREAD answer. */
static store_req *unread(fixture *f, int64_t user)
{
    return run_ok(f, new_req(f, STORE_UNREAD, user, 0));
}

/* The groups[] item of gid in an unread answer, NULL when absent. */
static json_t *unread_group(store_req *r, int64_t gid)
{
    json_t *groups = json_object_get(r->result, "groups");
    assert_true(json_is_array(groups));
    size_t i;
    json_t *g;
    json_array_foreach(groups, i, g)
    {
        if (jint(g, "group_id") == gid)
            return g;
    }
    return NULL;
}

static int64_t unread_total(fixture *f, int64_t user)
{
    store_req *r = unread(f, user);
    int64_t t = jint(r->result, "total");
    store_req_free(r);
    return t;
}

/* The group's noreadnum for user in STORE_UNREAD (0 when not listed). */
static int64_t group_unread(fixture *f, int64_t user, int64_t gid)
{
    store_req *r = unread(f, user);
    json_t *g = unread_group(r, gid);
    int64_t n = g ? jint(g, "noreadnum") : 0;
    store_req_free(r);
    return n;
}

/* Message rows of group gid in the database itself. */
static int64_t count_rows(fixture *f, int64_t gid)
{
    char sql[160];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM messages WHERE conv_lo = 0 AND conv_hi = %lld",
             (long long)gid);
    return side_sql(f, sql);
}

static void test_create_and_info(void **state)
{
    fixture *f = *state;
    int64_t a = create_user(f, "a"), b = create_user(f, "b"), c = create_user(f, "c"),
            d = create_user(f, "d");
    /* the owner and repeats are ignored */
    int64_t m[] = {b, c, b, a};
    store_req *r = create_req(f, a, "Team \"one\"", 4, m, 3);
    store_req_set_str(&r->avatar, "/img/t.png");
    r->time = 4242;
    run_ok(f, r);
    json_t *g = json_object_get(r->result, "group");
    int64_t gid = jint(g, "group_id");
    assert_string_equal(jstr(g, "name"), "Team \"one\"");
    assert_string_equal(jstr(g, "avatar"), "/img/t.png");
    assert_int_equal(jint(g, "owner_id"), a);
    assert_int_equal(jint(g, "created_at"), 4242);
    assert_int_equal(jint(g, "member_count"), 3);
    assert_int_equal(jint(g, "last_seq"), 1);
    assert_false(jbool(g, "dissolved"));
    json_t *members = json_object_get(r->result, "members");
    assert_int_equal(json_array_size(members), 3);
    assert_true(has_id(members, a) && has_id(members, b) && has_id(members, c));
    json_t *msg = json_object_get(r->result, "message");
    assert_group_msg(msg, gid);
    assert_int_equal(jint(msg, "seq"), 1);
    assert_int_equal(jint(msg, "from_id"), a);
    json_t *d1 = sys_data(msg);
    assert_string_equal(jstr(d1, "event"), "create");
    assert_int_equal(jint(d1, "actor"), a);
    assert_string_equal(jstr(d1, "name"), "Team \"one\"");
    json_t *users = json_object_get(d1, "users");
    assert_int_equal(json_array_size(users), 2);
    assert_int_equal(jint(json_array_get(users, 0), "userid"), b);
    assert_int_equal(jint(json_array_get(users, 1), "userid"), c);
    assert_non_null(strstr(jstr(json_array_get(users, 0), "username"), "b"));
    json_decref(d1);
    store_req_free(r);

    /* info: members in join order with roles */
    r = info(f, b, gid);
    assert_int_equal(jint(r->result, "group_id"), gid);
    assert_string_equal(jstr(r->result, "role"), "member");
    assert_false(jbool(r->result, "muted"));
    assert_false(jbool(r->result, "left"));
    assert_int_equal(jint(r->result, "joined_seq"), 1);
    members = json_object_get(r->result, "members");
    assert_int_equal(json_array_size(members), 3);
    assert_int_equal(jint(json_array_get(members, 0), "userid"), a);
    assert_string_equal(jstr(json_array_get(members, 0), "role"), "owner");
    assert_int_equal(jint(json_array_get(members, 1), "userid"), b);
    assert_string_equal(jstr(json_array_get(members, 1), "role"), "member");
    assert_int_equal(jint(json_array_get(members, 2), "userid"), c);
    assert_non_null(json_object_get(json_array_get(members, 2), "username"));
    assert_non_null(json_object_get(json_array_get(members, 2), "userpic"));
    assert_non_null(json_object_get(json_array_get(members, 2), "last_seen"));
    store_req_free(r);

    /* errors */
    run_err(f, new_req(f, STORE_GROUP_INFO, d, gid), STORE_FORBIDDEN, "not_member");
    run_err(f, new_req(f, STORE_GROUP_INFO, a, gid + 1000000), STORE_NOT_FOUND, "not_found");
    int64_t nobody[] = {b, 999999999};
    run_err(f, create_req(f, a, "x", 2, nobody, 500), STORE_NOT_FOUND, "not_found");
    /* max_members counts the owner: 3 with two members, 4 is too many */
    int64_t three[] = {b, c, d};
    run_err(f, create_req(f, a, "x", 3, three, 3), STORE_CONFLICT, "group_full");
    /* a disabled user cannot be made a member */
    r = new_req(f, STORE_USER_ADMIN, d, 0);
    r->action = STORE_ADMIN_DISABLE;
    run_ok(f, r);
    store_req_free(r);
    int64_t dis[] = {d};
    run_err(f, create_req(f, a, "x", 1, dis, 500), STORE_NOT_FOUND, "not_found");
}

static void test_send_one_row(void **state)
{
    fixture *f = *state;
    int64_t a = create_user(f, "a"), out = create_user(f, "out");
    int64_t m[6];
    for (int i = 0; i < 6; i++) {
        char n[8];
        snprintf(n, sizeof(n), "m%d", i);
        m[i] = create_user(f, n);
    }
    int64_t small = create_group(f, a, 1, m);
    int64_t big = create_group(f, a, 6, m);
    for (int i = 0; i < 3; i++) {
        store_req *r = run_ok(f, send_req(f, m[0], big, NULL));
        json_t *msg = json_object_get(r->result, "message");
        assert_group_msg(msg, big);
        assert_int_equal(jint(msg, "seq"), 2 + i);
        assert_int_equal(jint(msg, "from_id"), m[0]);
        assert_string_equal(jstr(msg, "type"), "text");
        assert_string_equal(jstr(msg, "data"), "hi \"all\"");
        assert_true(json_is_null(json_object_get(msg, "client_msg_id")));
        assert_false(r->duplicate);
        json_t *members = json_object_get(r->result, "members");
        assert_int_equal(json_array_size(members), 7);
        assert_true(has_id(members, a) && has_id(members, m[5]));
        store_req_free(r);
        send_group(f, a, small);
    }
    /* one row per message, whatever the group's size */
    assert_int_equal(count_rows(f, big), 4);
    assert_int_equal(count_rows(f, small), 4);

    run_err(f, send_req(f, out, big, NULL), STORE_FORBIDDEN, "not_member");
    run_err(f, send_req(f, a, big + 1000000, NULL), STORE_NOT_FOUND, "not_found");
    assert_int_equal(count_rows(f, big), 4);

    /* history: newest first, paged by id */
    store_req *h = history(f, m[3], big, 0, 3);
    assert_int_equal(json_array_size(h->result), 3);
    assert_int_equal(jint(json_array_get(h->result, 0), "seq"), 4);
    assert_group_msg(json_array_get(h->result, 0), big);
    int64_t oldest = jint(json_array_get(h->result, 2), "id");
    store_req_free(h);
    h = history(f, m[3], big, oldest, 0);
    assert_int_equal(json_array_size(h->result), 1);
    assert_int_equal(jint(json_array_get(h->result, 0), "seq"), 1);
    store_req_free(h);
    run_err(f, new_req(f, STORE_GROUP_HISTORY, out, big), STORE_FORBIDDEN, "not_member");
    run_err(f, new_req(f, STORE_GROUP_HISTORY, a, big + 1000000), STORE_NOT_FOUND, "not_found");

    /* the 1:1 history and legacy sync stay 1:1 */
    store_req *r = new_req(f, STORE_SYNC, m[3], 0);
    r->after = 0;
    run_ok(f, r);
    assert_int_equal(json_array_size(r->result), 0);
    store_req_free(r);
}

static void test_dedup(void **state)
{
    fixture *f = *state;
    int64_t a = create_user(f, "a"), b = create_user(f, "b");
    int64_t gid = create_group(f, a, 1, &b);
    store_req *r1 = run_ok(f, send_req(f, b, gid, "c1"));
    assert_false(r1->duplicate);
    store_req *r2 = run_ok(f, send_req(f, b, gid, "c1"));
    assert_true(r2->duplicate);
    json_t *m1 = json_object_get(r1->result, "message"),
           *m2 = json_object_get(r2->result, "message");
    assert_int_equal(jint(m1, "id"), jint(m2, "id"));
    assert_int_equal(jint(m2, "seq"), 2);
    assert_group_msg(m2, gid);
    assert_non_null(strstr(jstr(m2, "client_msg_id"), "c1-"));
    assert_int_equal(json_array_size(json_object_get(r2->result, "members")), 2);
    store_req_free(r1);
    store_req_free(r2);
    assert_int_equal(count_rows(f, gid), 2);
    assert_int_equal(send_group(f, a, gid), 3); /* the duplicate took no seq */

    /* the same client_msg_id in one pass: stored once */
    store_req *p[2] = {send_req(f, a, gid, "c2"), send_req(f, a, gid, "c2")};
    int before = f->done;
    store_submit(f->s, p[0]);
    store_submit(f->s, p[1]);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->done, before + 2);
    assert_int_equal(p[0]->status, STORE_OK);
    assert_int_equal(p[1]->status, STORE_OK);
    assert_true(p[0]->duplicate != p[1]->duplicate);
    assert_int_equal(jint(json_object_get(p[0]->result, "message"), "id"),
                     jint(json_object_get(p[1]->result, "message"), "id"));
    store_req_free(p[0]);
    store_req_free(p[1]);
    assert_int_equal(count_rows(f, gid), 4);

    /* history shows the duplicate's message once, with group_id */
    store_req *h = history(f, b, gid, 0, 0);
    assert_int_equal(json_array_size(h->result), 4);
    store_req_free(h);
}

static void test_roles(void **state)
{
    fixture *f = *state;
    int64_t a = create_user(f, "a"), b = create_user(f, "b"), c = create_user(f, "c"),
            d = create_user(f, "d"), e = create_user(f, "e");
    int64_t bc[] = {b, c};
    int64_t gid = create_group(f, a, 2, bc);

    /* a member adds nobody */
    store_req *r = new_req(f, STORE_GROUP_ADD, b, gid);
    r->members = ids(1, &d);
    r->max_members = 500;
    run_err(f, r, STORE_FORBIDDEN, "forbidden");
    /* only the owner changes roles */
    assert_int_equal(role_op(f, b, gid, c, STORE_GROUP_ROLE_ADMIN), STORE_FORBIDDEN);
    assert_int_equal(role_op(f, a, gid, a, STORE_GROUP_ROLE_MEMBER), STORE_FORBIDDEN);
    assert_int_equal(role_op(f, a, gid, d, STORE_GROUP_ROLE_ADMIN), STORE_CONFLICT);
    r = new_req(f, STORE_GROUP_ROLE, a, gid);
    r->peer_id = b;
    r->action = STORE_GROUP_ROLE_ADMIN;
    run_ok(f, r);
    json_t *sd = sys_data(json_object_get(r->result, "message"));
    assert_string_equal(jstr(sd, "event"), "role");
    assert_string_equal(jstr(sd, "role"), "admin");
    assert_int_equal(jint(json_array_get(json_object_get(sd, "users"), 0), "userid"), b);
    json_decref(sd);
    store_req_free(r);

    /* the admin adds d and e; adding them again changes nothing */
    int64_t de[] = {d, e, d};
    r = new_req(f, STORE_GROUP_ADD, b, gid);
    r->members = ids(3, de);
    r->max_members = 500;
    run_ok(f, r);
    json_t *added = json_object_get(r->result, "added");
    assert_int_equal(json_array_size(added), 2);
    assert_true(has_id(added, d) && has_id(added, e));
    assert_int_equal(jint(json_object_get(r->result, "group"), "member_count"), 5);
    assert_int_equal(json_array_size(json_object_get(r->result, "members")), 5);
    sd = sys_data(json_object_get(r->result, "message"));
    assert_string_equal(jstr(sd, "event"), "add");
    assert_int_equal(jint(sd, "actor"), b);
    assert_int_equal(json_array_size(json_object_get(sd, "users")), 2);
    json_decref(sd);
    store_req_free(r);
    r = new_req(f, STORE_GROUP_ADD, b, gid);
    r->members = ids(2, de);
    r->max_members = 500;
    run_ok(f, r);
    assert_true(json_is_null(json_object_get(r->result, "message")));
    assert_int_equal(json_array_size(json_object_get(r->result, "added")), 0);
    store_req_free(r);
    r = new_req(f, STORE_GROUP_ADD, b, gid);
    int64_t ghost = 999999999;
    r->members = ids(1, &ghost);
    r->max_members = 500;
    run_err(f, r, STORE_NOT_FOUND, "not_found");

    /* c becomes admin; the admin b cannot remove an admin, nor the owner */
    assert_int_equal(role_op(f, a, gid, c, STORE_GROUP_ROLE_ADMIN), STORE_OK);
    r = new_req(f, STORE_GROUP_REMOVE, b, gid);
    r->peer_id = c;
    run_err(f, r, STORE_FORBIDDEN, "forbidden");
    r = new_req(f, STORE_GROUP_REMOVE, b, gid);
    r->peer_id = a;
    run_err(f, r, STORE_FORBIDDEN, "forbidden");
    /* a member removes nobody */
    r = new_req(f, STORE_GROUP_REMOVE, e, gid);
    r->peer_id = d;
    run_err(f, r, STORE_FORBIDDEN, "forbidden");
    /* the owner cannot remove itself */
    r = new_req(f, STORE_GROUP_REMOVE, a, gid);
    r->peer_id = a;
    run_err(f, r, STORE_FORBIDDEN, "forbidden");
    /* the admin removes a member */
    r = new_req(f, STORE_GROUP_REMOVE, b, gid);
    r->peer_id = d;
    run_ok(f, r);
    assert_int_equal(jint(json_object_get(r->result, "group"), "member_count"), 4);
    json_t *members = json_object_get(r->result, "members");
    assert_int_equal(json_array_size(members), 5);
    assert_true(has_id(members, d)); /* it receives its removal */
    sd = sys_data(json_object_get(r->result, "message"));
    assert_string_equal(jstr(sd, "event"), "remove");
    assert_int_equal(jint(json_array_get(json_object_get(sd, "users"), 0), "userid"), d);
    json_decref(sd);
    store_req_free(r);
    r = new_req(f, STORE_GROUP_REMOVE, b, gid);
    r->peer_id = d;
    run_err(f, r, STORE_CONFLICT, "not_in_group");
    /* the removed d acts no more */
    r = new_req(f, STORE_GROUP_ADD, d, gid);
    r->members = ids(1, &e);
    r->max_members = 500;
    run_err(f, r, STORE_FORBIDDEN, "not_member");

    /* update: members may not; admins may; unchanged fields make no message */
    r = new_req(f, STORE_GROUP_UPDATE, e, gid);
    store_req_set_str(&r->name, "new");
    run_err(f, r, STORE_FORBIDDEN, "forbidden");
    r = new_req(f, STORE_GROUP_UPDATE, c, gid);
    store_req_set_str(&r->name, "new");
    store_req_set_str(&r->avatar, "https://x/y.png");
    run_ok(f, r);
    assert_string_equal(jstr(json_object_get(r->result, "group"), "name"), "new");
    assert_string_equal(jstr(json_object_get(r->result, "group"), "avatar"), "https://x/y.png");
    sd = sys_data(json_object_get(r->result, "message"));
    assert_string_equal(jstr(sd, "event"), "update");
    assert_string_equal(jstr(sd, "name"), "new");
    assert_string_equal(jstr(sd, "avatar"), "https://x/y.png");
    json_decref(sd);
    store_req_free(r);
    r = new_req(f, STORE_GROUP_UPDATE, c, gid);
    store_req_set_str(&r->name, "new");
    run_ok(f, r);
    assert_true(json_is_null(json_object_get(r->result, "message")));
    store_req_free(r);
    r = new_req(f, STORE_GROUP_UPDATE, c, gid);
    store_req_set_str(&r->avatar, "");
    run_ok(f, r);
    sd = sys_data(json_object_get(r->result, "message"));
    assert_string_equal(jstr(sd, "avatar"), "");
    assert_null(json_object_get(sd, "name"));
    json_decref(sd);
    assert_string_equal(jstr(json_object_get(r->result, "group"), "avatar"), "");
    store_req_free(r);

    /* ownership handed over: c owner, a admin */
    r = new_req(f, STORE_GROUP_ROLE, a, gid);
    r->peer_id = c;
    r->action = STORE_GROUP_ROLE_OWNER;
    run_ok(f, r);
    assert_int_equal(jint(json_object_get(r->result, "group"), "owner_id"), c);
    sd = sys_data(json_object_get(r->result, "message"));
    assert_string_equal(jstr(sd, "role"), "owner");
    json_decref(sd);
    store_req_free(r);
    r = info(f, a, gid);
    assert_string_equal(jstr(r->result, "role"), "admin");
    assert_int_equal(jint(r->result, "owner_id"), c);
    store_req_free(r);
    assert_int_equal(role_op(f, a, gid, b, STORE_GROUP_ROLE_MEMBER), STORE_FORBIDDEN);
    /* only the owner dissolves */
    run_err(f, new_req(f, STORE_GROUP_DISSOLVE, a, gid), STORE_FORBIDDEN, "forbidden");
    r = run_ok(f, new_req(f, STORE_GROUP_DISSOLVE, c, gid));
    assert_true(jbool(json_object_get(r->result, "group"), "dissolved"));
    sd = sys_data(json_object_get(r->result, "message"));
    assert_string_equal(jstr(sd, "event"), "dissolve");
    json_decref(sd);
    assert_int_equal(json_array_size(json_object_get(r->result, "members")), 4);
    int64_t last = jint(json_object_get(r->result, "message"), "seq");
    store_req_free(r);

    /* a dissolved group takes nothing more, and is still read */
    run_err(f, send_req(f, b, gid, NULL), STORE_CONFLICT, "group_dissolved");
    r = new_req(f, STORE_GROUP_ADD, c, gid);
    r->members = ids(1, &d);
    r->max_members = 500;
    run_err(f, r, STORE_CONFLICT, "group_dissolved");
    r = new_req(f, STORE_GROUP_UPDATE, c, gid);
    store_req_set_str(&r->name, "again");
    run_err(f, r, STORE_CONFLICT, "group_dissolved");
    run_err(f, new_req(f, STORE_GROUP_LEAVE, b, gid), STORE_CONFLICT, "group_dissolved");
    run_err(f, new_req(f, STORE_GROUP_DISSOLVE, c, gid), STORE_CONFLICT, "group_dissolved");
    r = new_req(f, STORE_GROUP_REMOVE, c, gid);
    r->peer_id = b;
    run_err(f, r, STORE_CONFLICT, "group_dissolved");
    assert_int_equal(role_op(f, c, gid, b, STORE_GROUP_ROLE_MEMBER), STORE_CONFLICT);
    store_req *h = history(f, e, gid, 0, 1);
    assert_int_equal(jint(json_array_get(h->result, 0), "seq"), last);
    store_req_free(h);
    json_t *item = list_group(f, b, gid);
    assert_non_null(item);
    assert_true(jbool(item, "dissolved"));
    json_decref(item);
}

static void test_seq_range(void **state)
{
    fixture *f = *state;
    int64_t a = create_user(f, "a"), b = create_user(f, "b");
    int64_t gid = create_group(f, a, 1, &b);
    assert_int_equal(send_group(f, a, gid), 2);
    store_req *r = new_req(f, STORE_GROUP_REMOVE, a, gid);
    r->peer_id = b;
    run_ok(f, r);
    assert_int_equal(jint(json_object_get(r->result, "message"), "seq"), 3);
    store_req_free(r);
    assert_int_equal(send_group(f, a, gid), 4);

    /* b sees 1..3 and nothing after */
    store_req *h = history(f, b, gid, 0, 0);
    assert_int_equal(json_array_size(h->result), 3);
    assert_int_equal(jint(json_array_get(h->result, 0), "seq"), 3);
    store_req_free(h);
    json_t *item = list_group(f, b, gid);
    assert_non_null(item);
    assert_true(jbool(item, "left"));
    assert_int_equal(jint(item, "last_seq"), 3);
    assert_string_equal(jstr(item, "type"), "system");
    assert_int_equal(jint(item, "noreadnum"), 3);
    json_decref(item);
    assert_int_equal(group_unread(f, b, gid), 3);
    r = info(f, b, gid);
    assert_true(jbool(r->result, "left"));
    assert_int_equal(json_array_size(json_object_get(r->result, "members")), 0);
    store_req_free(r);
    run_err(f, send_req(f, b, gid, NULL), STORE_FORBIDDEN, "not_member");
    run_err(f, new_req(f, STORE_GROUP_LEAVE, b, gid), STORE_FORBIDDEN, "not_member");
    r = new_req(f, STORE_SYNC_CURSORS, b, 0);
    r->cursors = json_object();
    run_ok(f, r);
    json_t *convs = json_object_get(r->result, "conversations");
    assert_int_equal(json_array_size(convs), 1);
    assert_int_equal(jint(json_array_get(convs, 0), "group_id"), gid);
    assert_int_equal(json_array_size(json_object_get(json_array_get(convs, 0), "messages")), 3);
    assert_false(jbool(json_array_get(convs, 0), "more"));
    store_req_free(r);
    /* presence: a removed member is nobody's peer through the group */
    r = run_ok(f, new_req(f, STORE_PRESENCE_PEERS, a, 0));
    assert_false(has_id(json_object_get(r->result, "peers"), b));
    store_req_free(r);

    /* re-added: b sees from the new add message (5) on */
    r = new_req(f, STORE_GROUP_ADD, a, gid);
    r->members = ids(1, &b);
    r->max_members = 500;
    run_ok(f, r);
    assert_int_equal(jint(json_object_get(r->result, "message"), "seq"), 5);
    store_req_free(r);
    assert_int_equal(send_group(f, a, gid), 6);
    h = history(f, b, gid, 0, 0);
    assert_int_equal(json_array_size(h->result), 2);
    assert_int_equal(jint(json_array_get(h->result, 0), "seq"), 6);
    assert_int_equal(jint(json_array_get(h->result, 1), "seq"), 5);
    store_req_free(h);
    assert_int_equal(group_unread(f, b, gid), 2);
    r = info(f, b, gid);
    assert_false(jbool(r->result, "left"));
    assert_int_equal(jint(r->result, "joined_seq"), 5);
    store_req_free(r);
    item = list_group(f, b, gid);
    assert_false(jbool(item, "left"));
    assert_int_equal(jint(item, "last_seq"), 6);
    json_decref(item);
}

static void test_unread_mute_total(void **state)
{
    fixture *f = *state;
    int64_t a = create_user(f, "a"), b = create_user(f, "b");
    int64_t gid = create_group(f, a, 1, &b);
    /* the create message is unread for b, not for a who caused it */
    assert_int_equal(group_unread(f, b, gid), 1);
    assert_int_equal(group_unread(f, a, gid), 0);
    send_group(f, a, gid);
    send_group(f, a, gid);
    assert_int_equal(group_unread(f, b, gid), 3);
    assert_int_equal(unread_total(f, a), 0);
    /* one 1:1 message too */
    store_req *r = new_req(f, STORE_MESSAGE_SEND, a, 0);
    r->peer_id = b;
    store_req_set_str(&r->msg_type, "text");
    store_req_set_str(&r->msg_data, "x");
    run_ok(f, r);
    store_req_free(r);
    assert_int_equal(unread_total(f, b), 4);
    /* b's send reads the group up to its message */
    send_group(f, b, gid);
    assert_int_equal(group_unread(f, b, gid), 0);
    assert_int_equal(group_unread(f, a, gid), 1);
    send_group(f, a, gid);
    send_group(f, a, gid);
    assert_int_equal(unread_total(f, b), 3);

    /* mute: the count stays on the group, the total leaves it out */
    r = new_req(f, STORE_GROUP_MUTE, b, gid);
    r->action = 1;
    run_ok(f, r);
    assert_int_equal(jint(r->result, "group_id"), gid);
    assert_true(jbool(r->result, "muted"));
    assert_int_equal(jint(r->result, "total"), 1);
    store_req_free(r);
    r = unread(f, b);
    assert_int_equal(jint(r->result, "total"), 1);
    json_t *g = unread_group(r, gid);
    assert_non_null(g);
    assert_int_equal(jint(g, "noreadnum"), 2);
    assert_true(jbool(g, "muted"));
    assert_int_equal(json_array_size(json_object_get(r->result, "conversations")), 1);
    store_req_free(r);
    json_t *item = list_group(f, b, gid);
    assert_true(jbool(item, "muted"));
    assert_int_equal(jint(item, "noreadnum"), 2);
    json_decref(item);
    r = new_req(f, STORE_READ, b, 0);
    r->peer_id = a;
    run_ok(f, r);
    assert_int_equal(jint(r->result, "total"), 0);
    store_req_free(r);
    r = new_req(f, STORE_GROUP_MUTE, b, gid);
    r->action = 0;
    run_ok(f, r);
    assert_false(jbool(r->result, "muted"));
    assert_int_equal(jint(r->result, "total"), 2);
    store_req_free(r);
    r = new_req(f, STORE_READ, b, 0);
    r->peer_id = a;
    run_ok(f, r);
    assert_int_equal(jint(r->result, "total"), 2); /* the group's count is in it */
    store_req_free(r);

    /* group read */
    r = run_ok(f, new_req(f, STORE_GROUP_READ, b, gid));
    assert_true(jbool(r->result, "changed"));
    assert_int_equal(jint(r->result, "total"), 0);
    assert_int_equal(jint(r->result, "last_read_seq"), 6);
    store_req_free(r);
    r = run_ok(f, new_req(f, STORE_GROUP_READ, b, gid));
    assert_false(jbool(r->result, "changed"));
    store_req_free(r);
    r = unread(f, b);
    assert_null(unread_group(r, gid));
    store_req_free(r);

    int64_t out = create_user(f, "out");
    run_err(f, new_req(f, STORE_GROUP_READ, out, gid), STORE_FORBIDDEN, "not_member");
    run_err(f, new_req(f, STORE_GROUP_READ, out, gid + 1000000), STORE_NOT_FOUND, "not_found");
    run_err(f, new_req(f, STORE_GROUP_MUTE, out, gid), STORE_FORBIDDEN, "not_member");
    run_err(f, new_req(f, STORE_GROUP_MUTE, a, gid + 1000000), STORE_NOT_FOUND, "not_found");
}

static void test_chat_list_mixed(void **state)
{
    fixture *f = *state;
    int64_t a = create_user(f, "a"), b = create_user(f, "b"), c = create_user(f, "c");
    store_req *r = new_req(f, STORE_MESSAGE_SEND, b, 0);
    r->peer_id = a;
    store_req_set_str(&r->msg_type, "text");
    store_req_set_str(&r->msg_data, "old");
    run_ok(f, r);
    store_req_free(r);
    int64_t gid = create_group(f, b, 1, &a);
    r = new_req(f, STORE_MESSAGE_SEND, c, 0);
    r->peer_id = a;
    store_req_set_str(&r->msg_type, "text");
    store_req_set_str(&r->msg_data, "new");
    run_ok(f, r);
    store_req_free(r);

    r = run_ok(f, new_req(f, STORE_CHAT_LIST, a, 0));
    assert_int_equal(json_array_size(r->result), 3);
    json_t *i0 = json_array_get(r->result, 0), *i1 = json_array_get(r->result, 1),
           *i2 = json_array_get(r->result, 2);
    assert_string_equal(jstr(i0, "chat_type"), "single");
    assert_int_equal(jint(i0, "userid"), c);
    assert_string_equal(jstr(i1, "chat_type"), "group");
    assert_int_equal(jint(i1, "group_id"), gid);
    assert_string_equal(jstr(i1, "name"), "team");
    assert_string_equal(jstr(i1, "avatar"), "");
    assert_string_equal(jstr(i1, "type"), "system");
    assert_int_equal(jint(i1, "from_id"), b);
    assert_non_null(strstr(jstr(i1, "from_username"), "b"));
    assert_int_equal(jint(i1, "noreadnum"), 1);
    assert_int_equal(jint(i1, "last_seq"), 1);
    assert_string_equal(jstr(i1, "role"), "member");
    assert_int_equal(jint(i1, "member_count"), 2);
    assert_false(jbool(i1, "muted"));
    assert_false(jbool(i1, "dissolved"));
    assert_false(jbool(i1, "left"));
    assert_true(jint(i1, "time") > 0);
    assert_string_equal(jstr(i2, "chat_type"), "single");
    assert_int_equal(jint(i2, "userid"), b);
    assert_true(jint(i0, "last_message_id") > jint(i1, "last_message_id"));
    assert_true(jint(i1, "last_message_id") > jint(i2, "last_message_id"));
    store_req_free(r);

    /* a group message brings it to the top */
    send_group(f, b, gid);
    r = run_ok(f, new_req(f, STORE_CHAT_LIST, a, 0));
    assert_string_equal(jstr(json_array_get(r->result, 0), "chat_type"), "group");
    assert_string_equal(jstr(json_array_get(r->result, 0), "type"), "text");
    assert_int_equal(jint(json_array_get(r->result, 0), "noreadnum"), 2);
    store_req_free(r);
}

static void test_sync_cursors(void **state)
{
    fixture *f = *state;
    int64_t a = create_user(f, "a"), b = create_user(f, "b"), c = create_user(f, "c");
    int64_t gid = create_group(f, a, 1, &b);
    for (int i = 0; i < 4; i++)
        send_group(f, a, gid); /* seqs 2..5 */
    store_req *r = new_req(f, STORE_MESSAGE_SEND, c, 0);
    r->peer_id = b;
    store_req_set_str(&r->msg_type, "text");
    store_req_set_str(&r->msg_data, "x");
    run_ok(f, r);
    store_req_free(r);

    char gkey[32];
    snprintf(gkey, sizeof(gkey), "g%lld", (long long)gid);
    /* no cursors, limit 3: the 1:1 (most recent) first, then the group cut */
    r = new_req(f, STORE_SYNC_CURSORS, b, 0);
    r->cursors = json_object();
    r->limit = 3;
    run_ok(f, r);
    json_t *convs = json_object_get(r->result, "conversations");
    assert_int_equal(json_array_size(convs), 2);
    json_t *first = json_array_get(convs, 0), *second = json_array_get(convs, 1);
    assert_int_equal(jint(first, "userid"), c);
    assert_int_equal(json_array_size(json_object_get(first, "messages")), 1);
    assert_int_equal(jint(second, "group_id"), gid);
    assert_null(json_object_get(second, "userid"));
    json_t *msgs = json_object_get(second, "messages");
    assert_int_equal(json_array_size(msgs), 2);
    assert_int_equal(jint(json_array_get(msgs, 0), "seq"), 1);
    assert_group_msg(json_array_get(msgs, 1), gid);
    assert_true(jbool(second, "more"));
    store_req_free(r);

    /* the group's cursor at 2: 3..5 */
    r = new_req(f, STORE_SYNC_CURSORS, b, 0);
    r->cursors = json_object();
    json_object_set_new(r->cursors, gkey, json_integer(2));
    char ckey[24];
    snprintf(ckey, sizeof(ckey), "%lld", (long long)c);
    json_object_set_new(r->cursors, ckey, json_integer(1));
    r->limit = 10;
    run_ok(f, r);
    convs = json_object_get(r->result, "conversations");
    assert_int_equal(json_array_size(convs), 1);
    msgs = json_object_get(json_array_get(convs, 0), "messages");
    assert_int_equal(json_array_size(msgs), 3);
    assert_int_equal(jint(json_array_get(msgs, 0), "seq"), 3);
    assert_false(jbool(json_array_get(convs, 0), "more"));
    store_req_free(r);

    /* up to date: nothing */
    r = new_req(f, STORE_SYNC_CURSORS, b, 0);
    r->cursors = json_object();
    json_object_set_new(r->cursors, gkey, json_integer(5));
    json_object_set_new(r->cursors, ckey, json_integer(1));
    run_ok(f, r);
    assert_int_equal(json_array_size(json_object_get(r->result, "conversations")), 0);
    store_req_free(r);

    /* a member who left gets the group up to its leave message */
    r = run_ok(f, new_req(f, STORE_GROUP_LEAVE, b, gid));
    int64_t left_seq = jint(json_object_get(r->result, "message"), "seq");
    assert_false(jbool(r->result, "dissolved"));
    store_req_free(r);
    send_group(f, a, gid);
    r = new_req(f, STORE_SYNC_CURSORS, b, 0);
    r->cursors = json_object();
    json_object_set_new(r->cursors, gkey, json_integer(5));
    json_object_set_new(r->cursors, ckey, json_integer(1));
    run_ok(f, r);
    convs = json_object_get(r->result, "conversations");
    assert_int_equal(json_array_size(convs), 1);
    msgs = json_object_get(json_array_get(convs, 0), "messages");
    assert_int_equal(json_array_size(msgs), 1);
    assert_int_equal(jint(json_array_get(msgs, 0), "seq"), left_seq);
    store_req_free(r);
}

static void test_leave(void **state)
{
    fixture *f = *state;
    int64_t a = create_user(f, "a"), b = create_user(f, "b"), c = create_user(f, "c"),
            d = create_user(f, "d");
    int64_t bcd[] = {b, c, d};
    int64_t gid = create_group(f, a, 3, bcd);
    assert_int_equal(role_op(f, a, gid, d, STORE_GROUP_ROLE_ADMIN), STORE_OK);
    /* the owner leaves: the earliest-joined admin (d) becomes owner */
    store_req *r = run_ok(f, new_req(f, STORE_GROUP_LEAVE, a, gid));
    assert_false(jbool(r->result, "dissolved"));
    json_t *g = json_object_get(r->result, "group");
    assert_int_equal(jint(g, "owner_id"), d);
    assert_int_equal(jint(g, "member_count"), 3);
    assert_true(has_id(json_object_get(r->result, "members"), a));
    json_t *sd = sys_data(json_object_get(r->result, "message"));
    assert_string_equal(jstr(sd, "event"), "leave");
    assert_int_equal(jint(sd, "owner"), d);
    assert_int_equal(jint(json_array_get(json_object_get(sd, "users"), 0), "userid"), a);
    json_decref(sd);
    store_req_free(r);
    r = info(f, d, gid);
    assert_string_equal(jstr(r->result, "role"), "owner");
    store_req_free(r);
    /* no admin left: the earliest-joined member (b) */
    r = run_ok(f, new_req(f, STORE_GROUP_LEAVE, d, gid));
    assert_int_equal(jint(json_object_get(r->result, "group"), "owner_id"), b);
    store_req_free(r);
    /* a member leaving passes nothing */
    r = run_ok(f, new_req(f, STORE_GROUP_LEAVE, c, gid));
    sd = sys_data(json_object_get(r->result, "message"));
    assert_null(json_object_get(sd, "owner"));
    json_decref(sd);
    assert_int_equal(jint(json_object_get(r->result, "group"), "owner_id"), b);
    store_req_free(r);
    /* the last member leaving dissolves it */
    r = run_ok(f, new_req(f, STORE_GROUP_LEAVE, b, gid));
    assert_true(jbool(r->result, "dissolved"));
    assert_true(jbool(json_object_get(r->result, "group"), "dissolved"));
    assert_int_equal(jint(json_object_get(r->result, "group"), "member_count"), 0);
    store_req_free(r);
    /* everyone still reads its history up to their leaving */
    store_req *h = history(f, c, gid, 0, 0);
    assert_int_equal(json_array_size(h->result), 5); /* create, role, leave a, leave d, leave c */
    store_req_free(h);
    run_err(f, new_req(f, STORE_GROUP_LEAVE, b, gid + 1000000), STORE_NOT_FOUND, "not_found");
}

static void test_max_members(void **state)
{
    fixture *f = *state;
    int64_t a = create_user(f, "a"), b = create_user(f, "b"), c = create_user(f, "c"),
            d = create_user(f, "d");
    int64_t bc[] = {b, c};
    store_req *r = run_ok(f, create_req(f, a, "three", 2, bc, 3)); /* exactly full */
    int64_t gid = jint(json_object_get(r->result, "group"), "group_id");
    store_req_free(r);
    r = new_req(f, STORE_GROUP_ADD, a, gid);
    r->members = ids(1, &d);
    r->max_members = 3;
    run_err(f, r, STORE_CONFLICT, "group_full");
    /* adding members already in counts nothing */
    r = new_req(f, STORE_GROUP_ADD, a, gid);
    r->members = ids(2, bc);
    r->max_members = 3;
    run_ok(f, r);
    assert_true(json_is_null(json_object_get(r->result, "message")));
    store_req_free(r);
    /* a leaves a place */
    r = new_req(f, STORE_GROUP_REMOVE, a, gid);
    r->peer_id = c;
    run_ok(f, r);
    store_req_free(r);
    r = new_req(f, STORE_GROUP_ADD, a, gid);
    r->members = ids(1, &d);
    r->max_members = 3;
    run_ok(f, r);
    assert_int_equal(jint(json_object_get(r->result, "group"), "member_count"), 3);
    store_req_free(r);
}

static void test_presence_peers(void **state)
{
    fixture *f = *state;
    int64_t a = create_user(f, "a"), b = create_user(f, "b"), c = create_user(f, "c"),
            d = create_user(f, "d");
    int64_t bc[] = {b, c};
    int64_t g1 = create_group(f, a, 2, bc);
    create_group(f, b, 1, &a); /* b again, through a second group */
    store_req *r = new_req(f, STORE_MESSAGE_SEND, a, 0);
    r->peer_id = b; /* and through a 1:1 conversation */
    store_req_set_str(&r->msg_type, "text");
    store_req_set_str(&r->msg_data, "x");
    run_ok(f, r);
    store_req_free(r);
    r = run_ok(f, new_req(f, STORE_PRESENCE_PEERS, a, 0));
    json_t *peers = json_object_get(r->result, "peers");
    assert_int_equal(json_array_size(peers), 2); /* b once, c */
    assert_true(has_id(peers, b) && has_id(peers, c));
    assert_false(has_id(peers, a) || has_id(peers, d));
    store_req_free(r);
    r = run_ok(f, new_req(f, STORE_PRESENCE_PEERS, c, 0));
    assert_int_equal(json_array_size(json_object_get(r->result, "peers")), 2);
    store_req_free(r);
    /* a dissolved group makes no peers */
    r = run_ok(f, new_req(f, STORE_GROUP_DISSOLVE, a, g1));
    store_req_free(r);
    r = run_ok(f, new_req(f, STORE_PRESENCE_PEERS, c, 0));
    assert_int_equal(json_array_size(json_object_get(r->result, "peers")), 0);
    store_req_free(r);
}

/* Group requests sharing one pass (one transaction): seqs follow
 * submission order without holes, and a refusal among them costs only
 * itself. */
static void test_one_pass(void **state)
{
    fixture *f = *state;
    int64_t a = create_user(f, "a"), b = create_user(f, "b"), out = create_user(f, "out");
    int64_t gid = create_group(f, a, 1, &b);
    store_req *p[5] = {send_req(f, a, gid, NULL), send_req(f, out, gid, NULL),
                       send_req(f, b, gid, "p1"), new_req(f, STORE_GROUP_READ, a, gid),
                       send_req(f, a, gid, NULL)};
    int before = f->done;
    for (int i = 0; i < 5; i++)
        store_submit(f->s, p[i]);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->done, before + 5);
    assert_int_equal(p[0]->status, STORE_OK);
    assert_int_equal(p[1]->status, STORE_FORBIDDEN);
    assert_int_equal(p[2]->status, STORE_OK);
    assert_int_equal(p[3]->status, STORE_OK);
    assert_int_equal(p[4]->status, STORE_OK);
    assert_int_equal(jint(json_object_get(p[0]->result, "message"), "seq"), 2);
    assert_int_equal(jint(json_object_get(p[2]->result, "message"), "seq"), 3);
    assert_int_equal(jint(json_object_get(p[4]->result, "message"), "seq"), 4);
    for (int i = 0; i < 5; i++)
        store_req_free(p[i]);
    assert_int_equal(count_rows(f, gid), 4);
    assert_int_equal(group_unread(f, b, gid), 1);
    assert_int_equal(group_unread(f, a, gid), 0);
    assert_int_equal(send_group(f, b, gid), 5);
}

/* The group one departed member sees in info and on its chat list: as of
 * its leaving. */
static void assert_seen(fixture *f, int64_t user, int64_t gid, const char *name, const char *avatar,
                        int64_t members, int64_t owner, bool dissolved, int64_t last_seq, bool left)
{
    store_req *r = info(f, user, gid);
    assert_string_equal(jstr(r->result, "name"), name);
    assert_string_equal(jstr(r->result, "avatar"), avatar);
    assert_int_equal(jint(r->result, "member_count"), members);
    assert_int_equal(jint(r->result, "owner_id"), owner);
    assert_int_equal(jbool(r->result, "dissolved"), dissolved);
    assert_int_equal(jint(r->result, "last_seq"), last_seq);
    assert_int_equal(jbool(r->result, "left"), left);
    assert_int_equal(json_array_size(json_object_get(r->result, "members")),
                     left ? 0 : (size_t)members);
    store_req_free(r);
    json_t *item = list_group(f, user, gid);
    assert_non_null(item);
    assert_string_equal(jstr(item, "name"), name);
    assert_string_equal(jstr(item, "avatar"), avatar);
    assert_int_equal(jint(item, "member_count"), members);
    assert_int_equal(jbool(item, "dissolved"), dissolved);
    assert_int_equal(jint(item, "last_seq"), last_seq);
    assert_int_equal(jbool(item, "left"), left);
    json_decref(item);
}

static void update_group(fixture *f, int64_t actor, int64_t gid, const char *name,
                         const char *avatar)
{
    store_req *r = new_req(f, STORE_GROUP_UPDATE, actor, gid);
    store_req_set_str(&r->name, name);
    store_req_set_str(&r->avatar, avatar);
    run_ok(f, r);
    assert_non_null(json_object_get(r->result, "message"));
    store_req_free(r);
}

static void remove_member(fixture *f, int64_t actor, int64_t gid, int64_t peer)
{
    store_req *r = new_req(f, STORE_GROUP_REMOVE, actor, gid);
    r->peer_id = peer;
    store_req_free(run_ok(f, r));
}

/* Issue 11: a removed member, or one that left, gets nothing after its
 * leaving: info and its chat list item show the group as it was then
 * (name, avatar, member_count, owner_id, dissolved, last_seq = left_seq),
 * not later renames, messages, joins or the dissolution; added back, it
 * sees the live group again, and a second removal freezes it anew. */
static void test_departed_view(void **state)
{
    fixture *f = *state;
    int64_t a = create_user(f, "a"), b = create_user(f, "b"), c = create_user(f, "c"),
            d = create_user(f, "d");
    int64_t bcd[] = {b, c, d};
    store_req *r = create_req(f, a, "team", 3, bcd, 500);
    store_req_set_str(&r->avatar, "/img/old.png");
    run_ok(f, r);
    int64_t gid = jint(json_object_get(r->result, "group"), "group_id");
    store_req_free(r);
    remove_member(f, a, gid, d);                                      /* 2: d removed, 3 left */
    store_req_free(run_ok(f, new_req(f, STORE_GROUP_LEAVE, c, gid))); /* 3: c leaves, 2 left */
    update_group(f, a, gid, "renamed", "/img/new.png");               /* 4 */
    assert_int_equal(role_op(f, a, gid, b, STORE_GROUP_ROLE_OWNER), STORE_OK); /* 5 */
    assert_int_equal(send_group(f, b, gid), 6);
    assert_int_equal(send_group(f, b, gid), 7);
    assert_seen(f, a, gid, "renamed", "/img/new.png", 2, b, false, 7, false);
    assert_seen(f, d, gid, "team", "/img/old.png", 3, a, false, 2, true);
    assert_seen(f, c, gid, "team", "/img/old.png", 2, a, false, 3, true);

    /* added back: the live group */
    r = new_req(f, STORE_GROUP_ADD, b, gid);
    r->members = ids(1, &d);
    r->max_members = 500;
    store_req_free(run_ok(f, r)); /* 8 */
    assert_seen(f, d, gid, "renamed", "/img/new.png", 3, b, false, 8, false);
    /* removed again: frozen anew, as of the second removal */
    update_group(f, b, gid, "third", ""); /* 9 */
    remove_member(f, b, gid, d);          /* 10 */
    assert_int_equal(send_group(f, b, gid), 11);
    store_req_free(run_ok(f, new_req(f, STORE_GROUP_DISSOLVE, b, gid))); /* 12 */
    assert_seen(f, a, gid, "third", "", 2, b, true, 12, false);
    assert_seen(f, d, gid, "third", "", 2, b, false, 10, true);
    assert_seen(f, c, gid, "team", "/img/old.png", 2, a, false, 3, true);

    /* the last member leaving: it sees the group dissolved by its leaving */
    int64_t g2 = create_group(f, a, 1, &b);
    store_req_free(run_ok(f, new_req(f, STORE_GROUP_LEAVE, b, g2))); /* 2 */
    store_req_free(run_ok(f, new_req(f, STORE_GROUP_LEAVE, a, g2))); /* 3 */
    assert_seen(f, b, g2, "team", "", 1, a, false, 2, true);
    assert_seen(f, a, g2, "team", "", 0, a, true, 3, true);
}

/* A member who left before the schema kept what a departed member sees
 * (SQLite migration 8, PostgreSQL 6) has no left_* values: it is answered
 * the group's current name, avatar, member_count, owner_id and dissolved,
 * but last_seq still stops at its left_seq. */
static void test_departed_before_migration(void **state)
{
    fixture *f = *state;
    int64_t a = create_user(f, "a"), b = create_user(f, "b"), d = create_user(f, "d");
    int64_t bd[] = {b, d};
    int64_t gid = create_group(f, a, 2, bd);
    remove_member(f, a, gid, d); /* 2 */
    char sql[256];
    snprintf(sql, sizeof(sql),
             "UPDATE group_members SET left_name = NULL, left_avatar = NULL,"
             " left_member_count = NULL, left_owner_id = NULL, left_dissolved = NULL"
             " WHERE group_id = %lld AND user_id = %lld",
             (long long)gid, (long long)d);
    side_sql(f, sql);
    update_group(f, a, gid, "renamed", "/img/new.png"); /* 3 */
    assert_int_equal(send_group(f, a, gid), 4);
    assert_seen(f, d, gid, "renamed", "/img/new.png", 2, a, false, 2, true);
}

int main(void)
{
    pg_uri = getenv("CHATD_TEST_PG_URI");
    if (pg_uri && !*pg_uri)
        pg_uri = NULL;
    srandom((unsigned)time(NULL) ^ (unsigned)getpid());
    printf("test_store_groups: on %s\n", pg_uri ? "PostgreSQL (CHATD_TEST_PG_URI)" : "SQLite");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_and_info, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_one_row, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dedup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seq_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unread_mute_total, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chat_list_mixed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sync_cursors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leave, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_members, setup, teardown),
        cmocka_unit_test_setup_teardown(test_presence_peers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_pass, setup, teardown),
        cmocka_unit_test_setup_teardown(test_departed_view, setup, teardown),
        cmocka_unit_test_setup_teardown(test_departed_before_migration, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
