/* Unit tests for HS256 JWT verification (exp, nbf, huge exp values) and the
 * login / sign-up limit policy of auth.c. */
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "chat/auth.h"

static const char *secret = "site-secret";

static void b64url(const char *in, size_t len, char *out, size_t cap)
{
    sodium_bin2base64(out, cap, (const unsigned char *)in, len,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

/* Builds header.payload.signature with the given header and claims JSON. */
static void make_jwt(const char *header, const char *claims, const char *key, char *out, size_t cap)
{
    char h[512], p[1024];
    b64url(header, strlen(header), h, sizeof(h));
    b64url(claims, strlen(claims), p, sizeof(p));
    char signing[1600];
    snprintf(signing, sizeof(signing), "%s.%s", h, p);
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, (const unsigned char *)key, strlen(key));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)signing, strlen(signing));
    crypto_auth_hmacsha256_final(&st, mac);
    char s[128];
    b64url((const char *)mac, sizeof(mac), s, sizeof(s));
    snprintf(out, cap, "%s.%s", signing, s);
}

static int verify(const char *token, char *sub, char *name, char *pic, const char **reason)
{
    int64_t exp;
    return auth_jwt_verify(token, secret, 1000, sub, 64, name, 64, pic, 64, &exp, reason);
}

static void test_valid_token(void **state)
{
    (void)state;
    char tok[2048], sub[64], name[64], pic[64];
    const char *reason = NULL;
    make_jwt("{\"alg\":\"HS256\",\"typ\":\"JWT\"}",
             "{\"sub\":\"u-17\",\"exp\":2000,\"username\":\"alice\",\"userpic\":\"/a.png\"}",
             secret, tok, sizeof(tok));
    assert_int_equal(verify(tok, sub, name, pic, &reason), 0);
    assert_string_equal(sub, "u-17");
    assert_string_equal(name, "alice");
    assert_string_equal(pic, "/a.png");
    make_jwt("{\"alg\":\"HS256\"}", "{\"sub\":99,\"exp\":2000}", secret, tok, sizeof(tok));
    assert_int_equal(verify(tok, sub, name, pic, &reason), 0);
    assert_string_equal(sub, "99");
    assert_string_equal(name, "user99");
}

static void test_refusals(void **state)
{
    (void)state;
    char tok[2048], sub[64], name[64], pic[64];
    const char *reason = NULL;
    make_jwt("{\"alg\":\"HS256\"}", "{\"sub\":\"1\",\"exp\":2000}", "other-key", tok, sizeof(tok));
    assert_int_equal(verify(tok, sub, name, pic, &reason), -1);
    assert_string_equal(reason, "bad JWT signature");
    make_jwt("{\"alg\":\"HS256\"}", "{\"sub\":\"1\",\"exp\":999}", secret, tok, sizeof(tok));
    assert_int_equal(verify(tok, sub, name, pic, &reason), -1);
    assert_string_equal(reason, "JWT expired");
    make_jwt("{\"alg\":\"HS256\"}", "{\"sub\":\"1\"}", secret, tok, sizeof(tok));
    assert_int_equal(verify(tok, sub, name, pic, &reason), -1);
    assert_string_equal(reason, "JWT has no exp");
    make_jwt("{\"alg\":\"none\"}", "{\"sub\":\"1\",\"exp\":2000}", secret, tok, sizeof(tok));
    assert_int_equal(verify(tok, sub, name, pic, &reason), -1);
    assert_string_equal(reason, "JWT alg must be HS256");
    make_jwt("{\"alg\":\"HS256\"}", "{\"exp\":2000}", secret, tok, sizeof(tok));
    assert_int_equal(verify(tok, sub, name, pic, &reason), -1);
    assert_int_equal(verify("abc", sub, name, pic, &reason), -1);
    assert_int_equal(verify("a.b.c.d", sub, name, pic, &reason), -1);
    /* a tampered payload breaks the signature */
    make_jwt("{\"alg\":\"HS256\"}", "{\"sub\":\"1\",\"exp\":2000}", secret, tok, sizeof(tok));
    char *dot = strchr(tok, '.');
    dot[2] = dot[2] == 'A' ? 'B' : 'A';
    assert_int_equal(verify(tok, sub, name, pic, &reason), -1);
}

static int verify_exp(const char *claims, int64_t *exp, const char **reason)
{
    char tok[2048], sub[64], name[64], pic[64];
    make_jwt("{\"alg\":\"HS256\"}", claims, secret, tok, sizeof(tok));
    return auth_jwt_verify(tok, secret, 1000, sub, 64, name, 64, pic, 64, exp, reason);
}

/* A huge exp is far in the future, not an overflow: it is clamped so that
 * exp * 1000 (milliseconds, for the token cache) fits an int64. */
static void test_huge_exp(void **state)
{
    (void)state;
    const char *claims[] = {
        "{\"sub\":\"1\",\"exp\":1e300}",
        "{\"sub\":\"1\",\"exp\":9223372036854775807}",
        "{\"sub\":\"1\",\"exp\":9223372036854775.0}",
        "{\"sub\":\"1\",\"exp\":9223372036854776}",
    };
    for (size_t i = 0; i < sizeof(claims) / sizeof(claims[0]); i++) {
        int64_t exp = 0;
        const char *reason = NULL;
        assert_int_equal(verify_exp(claims[i], &exp, &reason), 0);
        assert_true(exp == AUTH_JWT_EXP_MAX);
        assert_true(exp <= INT64_MAX / 1000);
    }
    int64_t exp = 0;
    const char *reason = NULL;
    assert_int_equal(verify_exp("{\"sub\":\"1\",\"exp\":2000.9}", &exp, &reason), 0);
    assert_true(exp == 2000);
    /* an integer past int64 is not JSON jansson reads: no claims, refused */
    assert_int_equal(verify_exp("{\"sub\":\"1\",\"exp\":18446744073709551615}", &exp, &reason), -1);
    /* a hugely negative exp is simply expired */
    assert_int_equal(verify_exp("{\"sub\":\"1\",\"exp\":-1e300}", &exp, &reason), -1);
    assert_string_equal(reason, "JWT expired");
    assert_int_equal(verify_exp("{\"sub\":\"1\",\"exp\":-9223372036854775807}", &exp, &reason), -1);
    assert_string_equal(reason, "JWT expired");
}

static void test_nbf(void **state)
{
    (void)state;
    int64_t exp;
    const char *reason = NULL;
    assert_int_equal(verify_exp("{\"sub\":\"1\",\"exp\":2000,\"nbf\":1001}", &exp, &reason), -1);
    assert_string_equal(reason, "JWT not yet valid");
    assert_int_equal(verify_exp("{\"sub\":\"1\",\"exp\":2000,\"nbf\":1e300}", &exp, &reason), -1);
    assert_string_equal(reason, "JWT not yet valid");
    assert_int_equal(verify_exp("{\"sub\":\"1\",\"exp\":2000,\"nbf\":\"soon\"}", &exp, &reason),
                     -1);
    assert_string_equal(reason, "JWT nbf must be a number");
    assert_int_equal(verify_exp("{\"sub\":\"1\",\"exp\":2000,\"nbf\":1000}", &exp, &reason), 0);
    assert_int_equal(verify_exp("{\"sub\":\"1\",\"exp\":2000,\"nbf\":-1e300}", &exp, &reason), 0);
}

/* ---- login and sign-up limits ------------------------------------------ */

static config limits_cfg(int64_t login_rate, int64_t register_rate)
{
    config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.login_rate = login_rate;
    cfg.register_rate = register_rate;
    cfg.hash_queue = 16;
    return cfg;
}

/* Many wrong passwords from many addresses: each failing address is locked
 * out of that username, the owner from a fresh address is not. */
static void test_login_lockout_policy(void **state)
{
    (void)state;
    config cfg = limits_cfg(3, 5);
    assert_int_equal(auth_limits_init(&cfg), 0);
    int64_t t = 1000000;
    char addr[32];
    for (int i = 0; i < 10; i++) {
        snprintf(addr, sizeof(addr), "10.0.0.%d", i);
        assert_int_equal(auth_login_check("Alice", addr, t), AUTH_LOGIN_OK);
        auth_login_failed("Alice", addr, t);
    }
    /* every attacker address is refused now, also with a differently cased name */
    for (int i = 0; i < 10; i++) {
        snprintf(addr, sizeof(addr), "10.0.0.%d", i);
        assert_int_equal(auth_login_check("alice", addr, t), AUTH_LOGIN_USER_LIMITED);
    }
    /* the owner's fresh address gets through, and keeps doing so */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(auth_login_check("alice", "192.168.1.1", t + i), AUTH_LOGIN_OK);
        auth_login_succeeded("alice", "192.168.1.1");
    }
    /* its own address limit still applies */
    assert_int_equal(auth_login_check("alice", "192.168.1.1", t), AUTH_LOGIN_ADDR_LIMITED);
    /* another username is not affected by alice's attackers' failures */
    assert_int_equal(auth_login_check("bob", "10.0.0.1", t), AUTH_LOGIN_OK);
    /* a minute later the window is over */
    assert_int_equal(auth_login_check("alice", "10.0.0.1", t + 60000), AUTH_LOGIN_OK);
    auth_limits_free();
}

/* Past the address limit nothing is recorded: no username key is made and
 * refused attempts do not count against anyone. */
static void test_login_refused_records_nothing(void **state)
{
    (void)state;
    config cfg = limits_cfg(2, 5);
    assert_int_equal(auth_limits_init(&cfg), 0);
    int64_t t = 5000000;
    for (int i = 0; i < 2; i++) {
        char name[32];
        snprintf(name, sizeof(name), "ghost%d", i);
        assert_int_equal(auth_login_check(name, "10.1.1.1", t), AUTH_LOGIN_OK);
        auth_login_failed(name, "10.1.1.1", t);
    }
    size_t keys = auth_login_keys();
    assert_int_equal(keys, 4); /* 2 usernames + 2 (username, address) pairs */
    for (int i = 0; i < 5000; i++) {
        char name[32];
        snprintf(name, sizeof(name), "victim%d", i);
        assert_int_equal(auth_login_check(name, "10.1.1.1", t + 1), AUTH_LOGIN_ADDR_LIMITED);
    }
    assert_int_equal(auth_login_keys(), keys);
    auth_limits_free();
}

static void test_register_limit(void **state)
{
    (void)state;
    config cfg = limits_cfg(3, 2);
    assert_int_equal(auth_limits_init(&cfg), 0);
    int64_t t = 1000;
    assert_true(auth_register_would_allow("a", t));
    assert_true(auth_register_allowed("a", t));
    assert_true(auth_register_allowed("a", t));
    assert_false(auth_register_would_allow("a", t));
    assert_false(auth_register_allowed("a", t + 3599999));
    assert_true(auth_register_allowed("b", t));
    assert_true(auth_register_allowed("a", t + 3600000)); /* an hour later */
    auth_limits_free();
}

/* Claims go through the sign-up rules: cut on a character boundary when
 * too long, replaced by a name made from sub when they break a rule, and
 * never cut in the middle of a character (which made a permanent 500). */
static void test_claims_follow_the_name_rules(void **state)
{
    (void)state;
    char tok[2048], sub[64], name[64], pic[64];
    const char *reason = NULL;
    /* 31 ASCII bytes and a 2-byte ü: 33 bytes, cut before the ü */
    make_jwt("{\"alg\":\"HS256\"}",
             "{\"sub\":\"7\",\"exp\":2000,\"name\":\"abcdefghijklmnopqrstuvwxyz01234\u00fc\"}",
             secret, tok, sizeof(tok));
    assert_int_equal(verify(tok, sub, name, pic, &reason), 0);
    assert_string_equal(name, "abcdefghijklmnopqrstuvwxyz01234");
    /* 11 CJK characters (33 bytes): 10 kept, never 32 bytes of them */
    make_jwt("{\"alg\":\"HS256\"}",
             "{\"sub\":\"7\",\"exp\":2000,\"username\":\"\u4e2d\u4e2d\u4e2d\u4e2d\u4e2d\u4e2d"
             "\u4e2d\u4e2d\u4e2d\u4e2d\u4e2d\"}",
             secret, tok, sizeof(tok));
    assert_int_equal(verify(tok, sub, name, pic, &reason), 0);
    assert_int_equal(strlen(name), 30);
    /* a cut leaving a trailing space drops it */
    make_jwt("{\"alg\":\"HS256\"}",
             "{\"sub\":\"7\",\"exp\":2000,\"name\":\"abcdefghijklmnopqrstuvwxyz01234 xyz\"}",
             secret, tok, sizeof(tok));
    assert_int_equal(verify(tok, sub, name, pic, &reason), 0);
    assert_string_equal(name, "abcdefghijklmnopqrstuvwxyz01234");
    /* U+202E, a zero-width space, a control character, '#': "user<sub>" */
    const char *bad[] = {"evil\\u202egpj.exe", "al\\u200bice", "bob\\u0007", "bob#1",
                         "p\\u0430ypal"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char claims[256];
        snprintf(claims, sizeof(claims), "{\"sub\":\"42\",\"exp\":2000,\"username\":\"%s\"}",
                 bad[i]);
        make_jwt("{\"alg\":\"HS256\"}", claims, secret, tok, sizeof(tok));
        assert_int_equal(verify(tok, sub, name, pic, &reason), 0);
        assert_string_equal(name, "user42");
    }
    /* NFD in, NFC out */
    make_jwt("{\"alg\":\"HS256\"}", "{\"sub\":\"7\",\"exp\":2000,\"name\":\"Ju\u0308rgen\"}",
             secret, tok, sizeof(tok));
    assert_int_equal(verify(tok, sub, name, pic, &reason), 0);
    assert_string_equal(name, "J\xc3\xbcrgen");
    /* a sub that makes no valid name either: "user-" and a hash */
    make_jwt("{\"alg\":\"HS256\"}", "{\"sub\":\"\\u202e\",\"exp\":2000}", secret, tok, sizeof(tok));
    assert_int_equal(verify(tok, sub, name, pic, &reason), 0);
    assert_int_equal(strncmp(name, "user-", 5), 0);
    assert_int_equal(strlen(name), 21);
    /* a picture longer than its buffer is dropped, not cut */
    make_jwt("{\"alg\":\"HS256\"}",
             "{\"sub\":\"7\",\"exp\":2000,\"picture\":\"https://example.com/"
             "\u00fc\u00fc\u00fc\u00fc\u00fc\u00fc\u00fc\u00fc\u00fc\u00fc\u00fc\u00fc\u00fc\u00fc"
             "\u00fc\u00fc\u00fc\u00fc\u00fc\u00fc\u00fc\u00fc.png\"}",
             secret, tok, sizeof(tok));
    assert_int_equal(verify(tok, sub, name, pic, &reason), 0);
    assert_string_equal(pic, "");
}

/* ---- resolving against a real (SQLite) store ---------------------------- */

typedef struct {
    int calls, status;
    json_t *user;
} resolved;

static void on_resolved(void *ctx, int status, json_t *user)
{
    resolved *res = ctx;
    res->calls++;
    res->status = status;
    json_decref(res->user);
    res->user = user;
}

static void store_done(store_req *r)
{
    (*(int *)r->ctx)++;
}

static void run_req(uv_loop_t *loop, store *st, store_req *r, int *done)
{
    int before = *done;
    store_submit(st, r);
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(*done, before + 1);
    assert_int_equal(r->status, STORE_OK);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* The logout race of a store with reader threads, forced by hand: the
 * token lookup is in flight (read before the delete commits, so the store
 * answers with the user) when the logout begins. Its answer must be 401:
 * before the fix, it gave the user, and a socket bind bound after logout
 * had closed the token's sockets. */
static void test_lookup_in_flight_across_logout(void **state)
{
    (void)state;
    char dir[64], data[96], err[256] = "";
    snprintf(dir, sizeof(dir), "/tmp/test_jwt.XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(data, sizeof(data), "%s/data", dir);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    store *st = store_open(&loop, data, STORE_DURABLE_NORMAL, err, sizeof(err));
    assert_non_null(st);
    config cfg = limits_cfg(10, 10);
    cfg.jwt_secret = (char *)"";
    assert_int_equal(auth_init(&loop, &cfg, st), 0);

    int done = 0;
    store_req *r = store_req_new(STORE_USER_CREATE, store_done, &done);
    store_req_set_str(&r->username, "alice");
    store_req_set_str(&r->password_hash, "hash");
    store_req_set_str(&r->userpic, "");
    r->time = auth_now_ms();
    run_req(&loop, st, r, &done);
    int64_t uid = json_integer_value(json_object_get(r->result, "id"));
    store_req_free(r);
    char tokens[2][AUTH_TOKEN_TEXT_LEN + 1];
    for (int i = 0; i < 2; i++) {
        r = store_req_new(STORE_TOKEN_CREATE, store_done, &done);
        auth_new_token(tokens[i], r->token_hash);
        r->user_id = uid;
        r->expires = auth_now_ms() + 3600000;
        run_req(&loop, st, r, &done);
        store_req_free(r);
    }

    resolved res = {0};
    auth_resolve(tokens[0], on_resolved, &res);
    assert_int_equal(res.calls, 0); /* not cached: a lookup is in flight */
    auth_forget(tokens[0]);         /* the logout begins */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(res.calls, 1);
    assert_int_equal(res.status, 401);
    assert_null(res.user);
    /* and later resolves of it too, without asking the store */
    auth_resolve(tokens[0], on_resolved, &res);
    assert_int_equal(res.calls, 2);
    assert_int_equal(res.status, 401);
    /* the user's other token is not affected */
    auth_resolve(tokens[1], on_resolved, &res);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(res.calls, 3);
    assert_int_equal(res.status, 0);
    assert_int_equal(json_integer_value(json_object_get(res.user, "id")), uid);
    json_decref(res.user);

    auth_stop();
    store_close(st);
    uv_run(&loop, UV_RUN_DEFAULT);
    auth_shutdown();
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* The cache never outlives the token: min(expires, now + 60 s). */
/* A password change's revoke spares the caller's token; overlapping
 * revokes of the user spare only a token every one of them kept. */
static void test_revoke_keeps_a_token(void **state)
{
    (void)state;
    uint8_t mine[32], other[32];
    memset(mine, 1, sizeof(mine));
    memset(other, 2, sizeof(other));
    int64_t before = auth_now_ms() - 10;
    int64_t uid = 424242;

    auth_revoke_begin(uid, mine);
    auth_revoke_end(uid, mine);
    assert_false(auth_revoked_since(uid, mine, before));
    assert_true(auth_revoked_since(uid, other, before));
    assert_false(auth_revoked_since(uid + 1, other, before)); /* another user */
    assert_false(auth_revoked_since(uid, other, 0));          /* unknown start */

    auth_revoke_end(uid, mine); /* the same token kept again: still spared */
    assert_false(auth_revoked_since(uid, mine, before));

    auth_revoke_end(uid, NULL); /* an admin revoke meanwhile: nothing spared */
    assert_true(auth_revoked_since(uid, mine, before));
    auth_revoke_end(uid, mine); /* and a later keep cannot bring it back */
    assert_true(auth_revoked_since(uid, mine, before));

    int64_t uid2 = 434343;
    auth_revoke_end(uid2, mine);
    auth_revoke_end(uid2, other); /* two changes keeping different tokens */
    assert_true(auth_revoked_since(uid2, mine, before));
    assert_true(auth_revoked_since(uid2, other, before));
}

static void test_cache_until(void **state)
{
    (void)state;
    int64_t now = 1000000;
    json_t *r = json_object();
    assert_int_equal(auth_cache_until(r, now), now + AUTH_CACHE_SECONDS * 1000);
    json_object_set_new(r, "expires", json_integer(now + 5000));
    assert_int_equal(auth_cache_until(r, now), now + 5000);
    json_object_set_new(r, "expires", json_integer(now + 3600000));
    assert_int_equal(auth_cache_until(r, now), now + AUTH_CACHE_SECONDS * 1000);
    json_object_set_new(r, "expires", json_integer(now - 1));
    assert_true(auth_cache_until(r, now) <= now); /* not cached */
    json_object_set_new(r, "expires", json_string("soon"));
    assert_true(auth_cache_until(r, now) <= now);
    json_decref(r);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_token),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_huge_exp),
        cmocka_unit_test(test_nbf),
        cmocka_unit_test(test_login_lockout_policy),
        cmocka_unit_test(test_login_refused_records_nothing),
        cmocka_unit_test(test_register_limit),
        cmocka_unit_test(test_claims_follow_the_name_rules),
        cmocka_unit_test(test_lookup_in_flight_across_logout),
        cmocka_unit_test(test_revoke_keeps_a_token),
        cmocka_unit_test(test_cache_until),
    };
    return cmocka_run_group_tests_name("jwt", tests, NULL, NULL);
}
