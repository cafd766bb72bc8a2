/* Unit tests for HS256 JWT verification. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

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

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_token),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_claims_follow_the_name_rules),
    };
    return cmocka_run_group_tests_name("jwt", tests, NULL, NULL);
}
