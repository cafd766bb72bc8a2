/* Unit tests for the gateway registry: client ids, uid and group indexes,
 * and that a removed connection leaves no trace. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/registry.h"
#include "ws/ws.h"

#define N 3000

static conn *conns[N];

static int setup(void **state)
{
    (void)state;
    for (int i = 0; i < N; i++) {
        conns[i] = calloc(1, sizeof(conn));
        assert_non_null(conns[i]);
        assert_int_equal(registry_add(conns[i]), 0);
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < N; i++) {
        registry_remove(conns[i]);
        free(conns[i]->wsx);
        free(conns[i]);
    }
    assert_int_equal(registry_client_count(), 0);
    registry_destroy();
    return 0;
}

static void test_client_ids(void **state)
{
    (void)state;
    assert_int_equal(registry_client_count(), N);
    for (int i = 0; i < N; i++) {
        const char *id = conns[i]->client_id;
        assert_int_equal(strlen(id), CLIENT_ID_LEN);
        assert_int_equal(
            strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
            CLIENT_ID_LEN);
        assert_ptr_equal(registry_find(id, CLIENT_ID_LEN), conns[i]);
        /* the first two characters are this node's tag, the same for every id */
        assert_memory_equal(id, conns[0]->client_id, 2);
    }
    assert_null(registry_find("nope", 4));
    assert_null(registry_find("AAAAAAAAAAAAAAAAAAAAAAAA", CLIENT_ID_LEN));
    /* a 22-character id (the format before node tags) is not a client_id now */
    assert_null(registry_find("AAAAAAAAAAAAAAAAAAAAAA", 22));
}

static void test_remove_keeps_others_findable(void **state)
{
    (void)state;
    /* removing every third entry exercises the backward-shift deletion */
    for (int i = 0; i < N; i += 3)
        registry_remove(conns[i]);
    for (int i = 0; i < N; i++) {
        conn *found = registry_find(conns[i]->client_id, CLIENT_ID_LEN);
        if (i % 3 == 0)
            assert_null(found);
        else
            assert_ptr_equal(found, conns[i]);
    }
    for (int i = 0; i < N; i += 3)
        assert_int_equal(registry_add(conns[i]), 0);
    assert_int_equal(registry_client_count(), N);
}

static void test_uids(void **state)
{
    (void)state;
    assert_int_equal(registry_bind_uid(conns[0], "42", 2, 0), 0);
    assert_int_equal(registry_bind_uid(conns[1], "42", 2, 0), 0);
    assert_int_equal(registry_bind_uid(conns[2], "7", 1, 0), 0);
    uid_entry *e = registry_find_uid("42", 2);
    assert_non_null(e);
    assert_int_equal(e->count, 2);
    assert_int_equal(registry_uid_count(), 2);
    /* moving a connection to another uid */
    assert_int_equal(registry_bind_uid(conns[1], "7", 1, 0), 0);
    assert_int_equal(registry_find_uid("42", 2)->count, 1);
    assert_int_equal(registry_find_uid("7", 1)->count, 2);
    /* a closing connection leaves no trace */
    registry_remove(conns[0]);
    assert_null(registry_find_uid("42", 2));
    assert_int_equal(registry_uid_count(), 1);
    registry_unbind_uid(conns[1]);
    registry_unbind_uid(conns[2]);
    assert_int_equal(registry_uid_count(), 0);
    assert_int_equal(registry_add(conns[0]), 0);
    char big[REGISTRY_NAME_MAX + 1];
    memset(big, 'x', sizeof(big));
    assert_int_equal(registry_bind_uid(conns[0], big, sizeof(big), 0), -1);
    assert_int_equal(registry_bind_uid(conns[0], big, 0, 0), -1);
}

/* --max-conns-per-user: the bind past the cap changes nothing; a rebind to
 * the same uid is not a new connection; leaving makes room again. */
static void test_uid_cap(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++)
        assert_int_equal(registry_bind_uid(conns[i], "cap", 3, 3), 0);
    assert_int_equal(registry_bind_uid(conns[3], "cap", 3, 3), REGISTRY_FULL);
    assert_null(conns[3]->uid);
    assert_int_equal(registry_bind_uid(conns[2], "cap", 3, 3), 0);
    assert_int_equal(registry_find_uid("cap", 3)->count, 3);
    /* a connection bound elsewhere stays where it was when refused */
    assert_int_equal(registry_bind_uid(conns[3], "other", 5, 3), 0);
    assert_int_equal(registry_bind_uid(conns[3], "cap", 3, 3), REGISTRY_FULL);
    assert_ptr_equal(conns[3]->uid, registry_find_uid("other", 5));
    registry_unbind_uid(conns[0]);
    assert_int_equal(registry_bind_uid(conns[3], "cap", 3, 3), 0);
    assert_null(registry_find_uid("other", 5));
    for (int i = 1; i < 4; i++)
        registry_unbind_uid(conns[i]);
    assert_int_equal(registry_uid_count(), 0);
}

/* The chat service's binding ends when the connection leaves its uid. */
static void test_chat_bound_cleared(void **state)
{
    (void)state;
    assert_int_equal(registry_bind_uid(conns[0], "1", 1, 0), 0);
    conns[0]->flags |= CONN_CHAT_BOUND;
    assert_int_equal(registry_bind_uid(conns[0], "1", 1, 0), 0);
    assert_true(conns[0]->flags & CONN_CHAT_BOUND); /* same uid: kept */
    assert_int_equal(registry_bind_uid(conns[0], "2", 1, 0), 0);
    assert_false(conns[0]->flags & CONN_CHAT_BOUND);
    conns[0]->flags |= CONN_CHAT_BOUND;
    registry_unbind_uid(conns[0]);
    assert_false(conns[0]->flags & CONN_CHAT_BOUND);
}

static void test_groups(void **state)
{
    (void)state;
    for (int i = 0; i < 10; i++)
        assert_int_equal(registry_join_group(conns[i], "room", 4), 0);
    assert_int_equal(registry_join_group(conns[0], "room", 4), 0); /* idempotent */
    assert_int_equal(registry_join_group(conns[0], "other", 5), 0);
    assert_int_equal(registry_find_group("room", 4)->count, 10);
    registry_leave_group(conns[3], "room", 4);
    assert_int_equal(registry_find_group("room", 4)->count, 9);
    registry_remove(conns[0]); /* leaves both groups */
    assert_int_equal(registry_find_group("room", 4)->count, 8);
    assert_null(registry_find_group("other", 5));
    assert_null(conns[0]->wsx);
    registry_ungroup("room", 4);
    assert_null(registry_find_group("room", 4));
    for (int i = 0; i < 10; i++)
        assert_null(conns[i]->wsx);
    assert_int_equal(registry_add(conns[0]), 0);
}

static void test_client_id_randomness(void **state)
{
    (void)state;
    char a[CLIENT_ID_LEN + 1], b[CLIENT_ID_LEN + 1];
    assert_int_equal(registry_make_client_id(a), 0);
    assert_int_equal(registry_make_client_id(b), 0);
    assert_string_not_equal(a, b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_ids),
        cmocka_unit_test(test_remove_keeps_others_findable),
        cmocka_unit_test(test_uids),
        cmocka_unit_test(test_uid_cap),
        cmocka_unit_test(test_chat_bound_cleared),
        cmocka_unit_test(test_groups),
        cmocka_unit_test(test_client_id_randomness),
    };
    return cmocka_run_group_tests_name("registry", tests, setup, teardown);
}
