/* Unit tests for the webhook's pure parts: the UTF-8-safe preview cut, the
 * event body built from a store message, and the X-Chatd-Signature (HMAC
 * vectors made with `openssl dgst -sha256 -hmac`, not with our code). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "chat/webhook.h"

/* ---- preview ----------------------------------------------------------- */

static size_t cut(const char *s, size_t max_chars)
{
    return webhook_preview_len(s, strlen(s), max_chars);
}

static void test_preview_ascii(void **state)
{
    (void)state;
    assert_int_equal(cut("hello world", 5), 5);
    assert_int_equal(cut("hello", 5), 5);
    assert_int_equal(cut("hi", 5), 2);
    assert_int_equal(cut("", 5), 0);
    assert_int_equal(cut("abc", 0), 0);
}

static void test_preview_multibyte(void **state)
{
    (void)state;
    /* é is 2 bytes, 日 3, 🎉 4: a cut falls before a character, never inside */
    assert_int_equal(cut("h\xc3\xa9llo", 2), 3);
    assert_int_equal(cut("\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", 1), 3);
    assert_int_equal(cut("\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", 2), 6);
    assert_int_equal(cut("\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", 3), 9);
    assert_int_equal(cut("abcd\xf0\x9f\x8e\x89"
                         "ef",
                         5),
                     8);
    assert_int_equal(cut("abcd\xf0\x9f\x8e\x89"
                         "ef",
                         4),
                     4);
    assert_int_equal(cut("\xf0\x9f\x8e\x89", 1), 4);
}

/* ---- event ------------------------------------------------------------- */

static json_t *message(const char *data, const char *from_username)
{
    return json_pack("{s:I,s:I,s:I,s:I,s:s,s:s,s:s,s:s,s:I,s:n}", "id", (json_int_t)900001, "seq",
                     (json_int_t)7, "to_id", (json_int_t)42, "from_id", (json_int_t)17,
                     "from_username", from_username, "from_userpic", "", "type", "text", "data",
                     data, "time", (json_int_t)1700000000123LL, "client_msg_id");
}

static json_t *event(json_t *m, size_t preview)
{
    char *body = webhook_event_json(m, preview);
    json_decref(m);
    assert_non_null(body);
    json_error_t err;
    json_t *ev = json_loads(body, 0, &err);
    assert_non_null(ev);
    free(body);
    return ev;
}

static void test_event_fields(void **state)
{
    (void)state;
    json_t *ev = event(message("say \"hi\"\nnow", "alice"), 64);
    json_t *want =
        json_pack("{s:s,s:I,s:I,s:s,s:I,s:I,s:I,s:s,s:I,s:s,s:b}", "type", "message", "recipient",
                  (json_int_t)42, "sender", (json_int_t)17, "sender_name", "alice", "conversation",
                  (json_int_t)17, "message_id", (json_int_t)900001, "seq", (json_int_t)7,
                  "message_type", "text", "created_at", (json_int_t)1700000000123LL, "preview",
                  "say \"hi\"\nnow", "preview_truncated", 0);
    assert_true(json_equal(ev, want));
    json_decref(want);
    json_decref(ev);
}

static void test_event_preview_options(void **state)
{
    (void)state;
    json_t *ev = event(message("abcd\xf0\x9f\x8e\x89"
                               "ef",
                               "bob"),
                       5);
    assert_string_equal(json_string_value(json_object_get(ev, "preview")), "abcd\xf0\x9f\x8e\x89");
    assert_true(json_is_true(json_object_get(ev, "preview_truncated")));
    json_decref(ev);

    ev = event(message("secret text", "bob"), 0); /* 0: no preview at all */
    assert_null(json_object_get(ev, "preview"));
    assert_null(json_object_get(ev, "preview_truncated"));
    assert_int_equal(json_integer_value(json_object_get(ev, "message_id")), 900001);
    json_decref(ev);

    ev = event(message("x", ""), 10); /* no name: no sender_name */
    assert_null(json_object_get(ev, "sender_name"));
    json_decref(ev);
}

static void test_event_refuses_incomplete(void **state)
{
    (void)state;
    const char *fields[] = {"id", "seq", "to_id", "from_id", "time", "type", "data"};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        json_t *m = message("x", "a");
        json_object_del(m, fields[i]);
        assert_null(webhook_event_json(m, 10));
        json_decref(m);
    }
}

/* The recall event: who, which message, when (the notice's time), and no
 * text at all. */
static void test_recall_event(void **state)
{
    (void)state;
    json_t *m = message("", "alice");
    json_object_set_new(m, "recalled", json_true());
    json_t *notice =
        json_pack("{s:I, s:I}", "id", (json_int_t)900002, "time", (json_int_t)1700000005000LL);
    char *body = webhook_recall_json(m, notice);
    assert_non_null(body);
    json_error_t err;
    json_t *ev = json_loads(body, 0, &err);
    free(body);
    json_t *want =
        json_pack("{s:s,s:I,s:I,s:I,s:I,s:I}", "type", "recall", "recipient", (json_int_t)42,
                  "sender", (json_int_t)17, "conversation", (json_int_t)17, "message_id",
                  (json_int_t)900001, "created_at", (json_int_t)1700000005000LL);
    assert_true(json_equal(ev, want));
    json_decref(want);
    json_decref(ev);
    json_object_del(notice, "time");
    assert_null(webhook_recall_json(m, notice));
    json_decref(notice);
    json_decref(m);
}

/* ---- signature --------------------------------------------------------- */

static void test_signature_vectors(void **state)
{
    (void)state;
    char sig[WEBHOOK_SIGNATURE_LEN + 1];
    const char *body = "{\"type\":\"message\"}";
    /* printf '%s' '1700000000.{"type":"message"}' | openssl dgst -sha256 -hmac whsec_test */
    webhook_sign("whsec_test", "1700000000", body, strlen(body), sig);
    assert_string_equal(sig,
                        "sha256=b5a5a118d074b69f8a85f23636afec5635cd26bc3a1e8cacb7f0430275a9a7d1");
    assert_int_equal(strlen(sig), WEBHOOK_SIGNATURE_LEN);

    /* a key longer than the hash's block (64 bytes) is hashed first */
    char key[101];
    memset(key, 'k', 100);
    key[100] = '\0';
    webhook_sign(key, "1", "x", 1, sig);
    assert_string_equal(sig,
                        "sha256=8dc72019a8a249d8f2d36e36fac06f4497511f4f50cfee8600a5d97fb8a91da5");
}

static void test_signature_covers_timestamp_and_body(void **state)
{
    (void)state;
    char a[WEBHOOK_SIGNATURE_LEN + 1], b[WEBHOOK_SIGNATURE_LEN + 1];
    webhook_sign("s", "1700000000", "{}", 2, a);
    webhook_sign("s", "1700000001", "{}", 2, b);
    assert_string_not_equal(a, b);
    webhook_sign("s", "1700000000", "{ }", 3, b);
    assert_string_not_equal(a, b);
    webhook_sign("t", "1700000000", "{}", 2, b);
    assert_string_not_equal(a, b);
    /* the dot separates: "1.23" + "4" is not "1.2" + "34" */
    webhook_sign("s", "1", "234", 3, a);
    webhook_sign("s", "12", "34", 2, b);
    assert_string_not_equal(a, b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_preview_ascii),
        cmocka_unit_test(test_preview_multibyte),
        cmocka_unit_test(test_event_fields),
        cmocka_unit_test(test_event_preview_options),
        cmocka_unit_test(test_event_refuses_incomplete),
        cmocka_unit_test(test_recall_event),
        cmocka_unit_test(test_signature_vectors),
        cmocka_unit_test(test_signature_covers_timestamp_and_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
