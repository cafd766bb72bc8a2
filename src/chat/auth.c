/* auth: passwords, tokens, JWTs, login and sign-up limits, and the sockets
 * each token bound (see auth.h). */
#include "chat/auth.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <uthash.h>

#include "chat/names.h"
#include "core/log.h"
#include "core/ratelimit.h"
#include "gateway/registry.h"

#define AUTH_CACHE_MAX 100000
#define LIMIT_KEYS_MAX 100000
#define BINDS_MAX_TOKENS 200000
#define AUTH_HASH_PARALLEL_MAX 4 /* libuv's default pool size */
#define LOGGED_OUT_MAX 100000    /* token hashes remembered after a logout */

static uv_loop_t *auth_loop;
static const config *auth_cfg;
static store *auth_store;

int64_t auth_now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

bool auth_url_is_safe(const char *url)
{
    for (const unsigned char *p = (const unsigned char *)url; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return false;
    if (strncmp(url, "https://", 8) == 0 || strncmp(url, "http://", 7) == 0)
        return true;
    return url[0] == '/' && url[1] != '/' && url[1] != '\\';
}

/* ---- users revoked lately --------------------------------------------- */

/* uid -> when its revoke (or disable) took effect on this node, INT64_MAX
 * while it is under way. What a resolve read from the store before that
 * moment (a cached token, or a lookup in flight, which a store with reader
 * threads can answer after the revoke committed and the sockets were
 * closed) is refused. Entries sit in insertion order and go
 * AUTH_LOGOUT_MEMORY_SECONDS after their end: by then the cache has
 * expired what it held and no lookup from before is in flight. Bounded:
 * past REVOKED_MAX the oldest goes (an admin revoking that many users in
 * two minutes is a bulk job, not an attack surface). */
#define REVOKED_MAX 100000

typedef struct revoked_uid {
    int64_t uid;
    int64_t at_ms;   /* INT64_MAX: under way */
    int64_t gone_ms; /* forgotten after this */
    /* A password change keeps the caller's token: what was read about
     * that one stays good. Only while every revoke of uid since the entry
     * was made kept the same token (revoked_set): refusing more than
     * needed costs a lookup, refusing less would let a revoked token in. */
    bool has_keep;
    uint8_t keep[32];
    UT_hash_handle hh;
} revoked_uid;

static revoked_uid *revoked;

static void revoked_drop(revoked_uid *e)
{
    HASH_DEL(revoked, e);
    free(e);
}

static void revoked_tidy(int64_t now)
{
    while (revoked && revoked->gone_ms <= now)
        revoked_drop(revoked);
}

/* Whether what a resolve of the token with this hash, started at
 * started_ms, read about uid is stale. */
static bool revoked_refuses(int64_t uid, const uint8_t hash[32], int64_t started_ms)
{
    if (!revoked)
        return false;
    revoked_uid *e = NULL;
    HASH_FIND(hh, revoked, &uid, sizeof(uid), e);
    if (!e || started_ms > e->at_ms || e->gone_ms <= auth_now_ms())
        return false;
    return !(e->has_keep && memcmp(e->keep, hash, 32) == 0);
}

bool auth_revoked_since(int64_t uid, const uint8_t hash[32], int64_t started_ms)
{
    return started_ms > 0 && revoked_refuses(uid, hash, started_ms);
}

static void revoked_set(int64_t uid, int64_t at_ms, const uint8_t *keep)
{
    int64_t now = auth_now_ms();
    revoked_tidy(now);
    revoked_uid *e = NULL;
    HASH_FIND(hh, revoked, &uid, sizeof(uid), e);
    if (e) {
        HASH_DEL(revoked, e); /* re-added at the end: insertion order = gone order */
        /* a live entry that kept another token (or none) keeps nothing */
        if (e->gone_ms > now && (!keep || !e->has_keep || memcmp(e->keep, keep, 32) != 0))
            keep = NULL;
    } else {
        if (HASH_COUNT(revoked) >= REVOKED_MAX)
            revoked_drop(revoked);
        e = calloc(1, sizeof(*e));
        if (!e)
            return;
        e->uid = uid;
    }
    e->at_ms = at_ms;
    e->gone_ms = at_ms == INT64_MAX ? INT64_MAX : now + AUTH_LOGOUT_MEMORY_SECONDS * 1000;
    e->has_keep = keep != NULL;
    if (keep)
        memcpy(e->keep, keep, 32);
    HASH_ADD(hh, revoked, uid, sizeof(e->uid), e);
}

static uint64_t cache_epoch; /* defined with the token cache, below */

void auth_revoke_begin(int64_t uid, const uint8_t *keep)
{
    cache_epoch++;
    revoked_set(uid, INT64_MAX, keep);
}

void auth_revoke_end(int64_t uid, const uint8_t *keep)
{
    cache_epoch++;
    revoked_set(uid, auth_now_ms(), keep);
}

/* ---- users changed lately ---------------------------------------------- */

/* uid -> when its profile changed on this node: a cached token read the
 * user before then is looked up again (never refused: nothing was
 * revoked). Entries go after AUTH_CACHE_SECONDS, when no cache entry from
 * before is left; bounded like the revoked table. */
typedef struct changed_uid {
    int64_t uid;
    int64_t at_ms;
    int64_t gone_ms;
    UT_hash_handle hh;
} changed_uid;

static changed_uid *changed;

static void changed_drop(changed_uid *e)
{
    HASH_DEL(changed, e);
    free(e);
}

static bool changed_since(int64_t uid, int64_t started_ms)
{
    if (!changed)
        return false;
    changed_uid *e = NULL;
    HASH_FIND(hh, changed, &uid, sizeof(uid), e);
    return e && started_ms <= e->at_ms && e->gone_ms > auth_now_ms();
}

void auth_user_changed(int64_t uid)
{
    int64_t now = auth_now_ms();
    cache_epoch++; /* resolves in flight do not cache what they read */
    while (changed && changed->gone_ms <= now)
        changed_drop(changed);
    changed_uid *e = NULL;
    HASH_FIND(hh, changed, &uid, sizeof(uid), e);
    if (e) {
        HASH_DEL(changed, e);
    } else {
        if (HASH_COUNT(changed) >= REVOKED_MAX)
            changed_drop(changed);
        e = calloc(1, sizeof(*e));
        if (!e)
            return;
        e->uid = uid;
    }
    e->at_ms = now;
    e->gone_ms = now + AUTH_CACHE_SECONDS * 1000;
    HASH_ADD(hh, changed, uid, sizeof(e->uid), e);
}

/* ---- token cache ------------------------------------------------------- */

typedef struct cache_entry {
    uint8_t hash[32];
    json_t *user;
    int64_t until_ms;   /* cache expiry: min(token expiry, now + AUTH_CACHE_SECONDS) */
    int64_t started_ms; /* when the resolve that read it started (revoked_refuses) */
    UT_hash_handle hh;
} cache_entry;

static cache_entry *cache;
/* Bumped by every logout: a resolve that started before it must not put its
 * (possibly just revoked) token back into the cache. */
static uint64_t cache_epoch;

/* Hashes of the tokens logged out on this node in the last
 * AUTH_LOGOUT_MEMORY_SECONDS: a limiter allowing one event per window is
 * exactly a bounded set with O(1) expiry (core/ratelimit.h). With reader
 * threads in the store, a lookup can read a token before its delete commits
 * and answer after the logout finished; the answer is refused here, so
 * nothing (a socket bind above all) can use it after its logout. */
static ratelimit *logged_out;

static bool logged_out_has(const uint8_t hash[32])
{
    return logged_out && !ratelimit_allows(logged_out, (const char *)hash, 32, auth_now_ms());
}

static void cache_drop(cache_entry *e)
{
    HASH_DEL(cache, e);
    json_decref(e->user);
    free(e);
}

static void cache_clear(void)
{
    cache_entry *e, *tmp;
    HASH_ITER(hh, cache, e, tmp)
    {
        cache_drop(e);
    }
}

static json_t *cache_get(const uint8_t hash[32])
{
    cache_entry *e = NULL;
    HASH_FIND(hh, cache, hash, 32, e);
    if (!e)
        return NULL;
    int64_t uid = json_integer_value(json_object_get(e->user, "id"));
    if (e->until_ms <= auth_now_ms() || revoked_refuses(uid, hash, e->started_ms) ||
        changed_since(uid, e->started_ms)) {
        cache_drop(e);
        return NULL;
    }
    return json_incref(e->user);
}

int64_t auth_cache_until(const json_t *lookup, int64_t now_ms)
{
    int64_t cap = now_ms + AUTH_CACHE_SECONDS * 1000;
    json_t *exp = json_object_get(lookup, "expires");
    if (!exp)
        return cap; /* a store that does not say: trust the token for the cache's time */
    /* not an integer: not cached at all rather than guessed */
    int64_t until = json_is_integer(exp) ? (int64_t)json_integer_value(exp) : now_ms;
    return until < cap ? until : cap;
}

static void cache_put(const uint8_t hash[32], json_t *user, int64_t until_ms, int64_t started_ms)
{
    if (HASH_COUNT(cache) >= AUTH_CACHE_MAX)
        cache_clear(); /* bounded memory; entries are cheap to refetch */
    cache_entry *e = NULL;
    HASH_FIND(hh, cache, hash, 32, e);
    if (e)
        cache_drop(e);
    e = calloc(1, sizeof(*e));
    if (!e)
        return;
    memcpy(e->hash, hash, 32);
    e->user = json_incref(user);
    e->started_ms = started_ms;
    int64_t cap = auth_now_ms() + AUTH_CACHE_SECONDS * 1000;
    e->until_ms = until_ms < cap ? until_ms : cap;
    HASH_ADD(hh, cache, hash, 32, e);
}

/* ---- tokens ------------------------------------------------------------ */

void auth_token_hash(const char *token, uint8_t hash[32])
{
    crypto_hash_sha256(hash, (const unsigned char *)token, strlen(token));
}

int auth_new_token(char text[AUTH_TOKEN_TEXT_LEN + 1], uint8_t hash[32])
{
    uint8_t raw[AUTH_TOKEN_BYTES];
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2base64(text, AUTH_TOKEN_TEXT_LEN + 1, raw, sizeof(raw),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    auth_token_hash(text, hash);
    sodium_memzero(raw, sizeof(raw));
    return 0;
}

void auth_forget(const char *token)
{
    uint8_t hash[32];
    auth_token_hash(token, hash);
    auth_forget_hash(hash);
}

void auth_forget_hash(const uint8_t hash[32])
{
    cache_epoch++;
    if (logged_out) /* a second call (logout_done) keeps the first window */
        ratelimit_hit(logged_out, (const char *)hash, 32, auth_now_ms());
    cache_entry *e = NULL;
    HASH_FIND(hh, cache, hash, 32, e);
    if (e)
        cache_drop(e);
}

/* ---- JWT --------------------------------------------------------------- */

static int b64url_decode(const char *in, size_t len, unsigned char *out, size_t cap,
                         size_t *out_len)
{
    return sodium_base642bin(out, cap, in, len, NULL, out_len, NULL,
                             sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

/* The string claim a (or else b), or "" when neither is a string. One that
 * does not fit cap whole is "" too: a cut would be a different value (a
 * wrong URL), and a cut in the middle of a character is not UTF-8, which
 * the JSON of every later answer about this user could not hold. */
static void copy_claim(json_t *claims, const char *a, const char *b, char *out, size_t cap)
{
    json_t *v = json_object_get(claims, a);
    if (!json_is_string(v))
        v = json_object_get(claims, b);
    const char *s = json_is_string(v) ? json_string_value(v) : "";
    size_t len = strlen(s);
    if (len >= cap)
        len = 0;
    memcpy(out, s, len);
    out[len] = '\0';
}

/* A claimed name under the sign-up rules (names.h), or NULL: as given, else
 * cut on a character boundary to NAMES_MAX_BYTES (trailing spaces dropped),
 * which only a name too long could need. */
static const char *claim_name(const char *raw, char *out, size_t cap, const char **why)
{
    if (names_clean(raw, out, cap, why) == 0)
        return out;
    char cut[NAMES_MAX_BYTES + 1];
    size_t n = names_cut(raw, NAMES_MAX_BYTES);
    while (n > 0 && raw[n - 1] == ' ')
        n--;
    memcpy(cut, raw, n);
    cut[n] = '\0';
    const char *why2;
    if (n < strlen(raw) && names_clean(cut, out, cap, &why2) == 0)
        return out;
    return NULL;
}

/* The username of a JWT's user: its "username" (or "name") claim when the
 * sign-up rules allow it, cut to length if need be; otherwise
 * "user<sub>" (cut likewise), and when even that breaks a rule, "user-"
 * and 16 hex digits of SHA-256(sub). A bad claim never refuses the token,
 * so a site's user is never locked out of chat by the name the site
 * holds, and it never reaches the store unchecked. */
static void jwt_username(const char *claimed, const char *sub, char *out, size_t cap)
{
    /* Logged: only names that passed the rules, never the raw claims or
     * sub, which may hold line breaks to forge log lines with. */
    char buf[NAMES_MAX_BYTES + 1];
    const char *why = "no name claim";
    if (claimed[0] && claim_name(claimed, buf, sizeof(buf), &why)) {
        if (strcmp(buf, claimed) != 0)
            log_debug("JWT name claim cut or normalised to \"%s\"", buf);
        snprintf(out, cap, "%s", buf);
        return;
    }
    char fallback[160];
    snprintf(fallback, sizeof(fallback), "user%s", sub);
    if (!claim_name(fallback, buf, sizeof(buf), &why)) {
        uint8_t h[crypto_hash_sha256_BYTES];
        crypto_hash_sha256(h, (const unsigned char *)sub, strlen(sub));
        char hex[17];
        sodium_bin2hex(hex, sizeof(hex), h, 8);
        snprintf(buf, sizeof(buf), "user-%s", hex);
    }
    if (claimed[0])
        log_warn("JWT name claim refused (%s); the user is named \"%s\"", why, buf);
    snprintf(out, cap, "%s", buf);
}

/* auth_jwt_verify, and the "iat" claim (ms; 0 when absent, not a number
 * or out of range) when iat_ms is given. */
static int jwt_verify(const char *token, const char *secret, int64_t now_s, char *sub,
                      size_t sub_cap, char *username, size_t name_cap, char *userpic,
                      size_t pic_cap, int64_t *exp, int64_t *iat_ms, const char **reason)
{
    const char *dot1 = strchr(token, '.');
    const char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
    if (!dot1 || !dot2 || strchr(dot2 + 1, '.')) {
        *reason = "not a JWT";
        return -1;
    }
    unsigned char buf[2048];
    size_t n;
    /* signature: HMAC-SHA256 over "header.payload" */
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, (const unsigned char *)secret, strlen(secret));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)token, (size_t)(dot2 - token));
    crypto_auth_hmacsha256_final(&st, mac);
    if (b64url_decode(dot2 + 1, strlen(dot2 + 1), buf, sizeof(buf), &n) != 0 || n != sizeof(mac) ||
        sodium_memcmp(buf, mac, sizeof(mac)) != 0) {
        *reason = "bad JWT signature";
        return -1;
    }
    if (b64url_decode(token, (size_t)(dot1 - token), buf, sizeof(buf) - 1, &n) != 0) {
        *reason = "bad JWT header";
        return -1;
    }
    json_t *header = json_loadb((const char *)buf, n, 0, NULL);
    const char *alg = json_string_value(json_object_get(header, "alg"));
    bool hs256 = alg && strcmp(alg, "HS256") == 0;
    json_decref(header);
    if (!hs256) {
        *reason = "JWT alg must be HS256";
        return -1;
    }
    if (b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), buf, sizeof(buf) - 1, &n) != 0) {
        *reason = "bad JWT payload";
        return -1;
    }
    json_t *claims = json_loadb((const char *)buf, n, 0, NULL);
    json_t *jsub = json_object_get(claims, "sub");
    json_t *jexp = json_object_get(claims, "exp");
    json_t *jnbf = json_object_get(claims, "nbf");
    int rc = -1;
    /* compared as doubles: a huge exp (1e300) must not be converted first */
    if (!json_is_number(jexp)) {
        *reason = "JWT has no exp";
    } else if (json_number_value(jexp) <= (double)now_s) {
        *reason = "JWT expired";
    } else if (jnbf && !json_is_number(jnbf)) {
        *reason = "JWT nbf must be a number";
    } else if (jnbf && json_number_value(jnbf) > (double)now_s) {
        *reason = "JWT not yet valid";
    } else if (json_is_string(jsub) && json_string_length(jsub) > 0 &&
               json_string_length(jsub) < sub_cap) {
        snprintf(sub, sub_cap, "%s", json_string_value(jsub));
        rc = 0;
    } else if (json_is_integer(jsub)) {
        snprintf(sub, sub_cap, "%lld", (long long)json_integer_value(jsub));
        rc = 0;
    } else {
        *reason = "JWT sub must be a string or integer";
    }
    if (rc == 0) {
        double e = json_number_value(jexp);
        *exp = e >= (double)AUTH_JWT_EXP_MAX ? AUTH_JWT_EXP_MAX : (int64_t)e;
        char claimed[sizeof(buf)]; /* holds any claim of the payload whole */
        copy_claim(claims, "username", "name", claimed, sizeof(claimed));
        jwt_username(claimed, sub, username, name_cap);
        copy_claim(claims, "userpic", "picture", userpic, pic_cap);
        if (userpic[0] && !auth_url_is_safe(userpic))
            userpic[0] = '\0'; /* same rule as a userpic given at sign-up */
        if (iat_ms) {
            json_t *jiat = json_object_get(claims, "iat");
            double iat = json_is_number(jiat) ? json_number_value(jiat) : 0;
            *iat_ms = iat > 0 && iat < (double)AUTH_JWT_EXP_MAX ? (int64_t)iat * 1000 : 0;
        }
    }
    json_decref(claims);
    return rc;
}

int auth_jwt_verify(const char *token, const char *secret, int64_t now_s, char *sub, size_t sub_cap,
                    char *username, size_t name_cap, char *userpic, size_t pic_cap, int64_t *exp,
                    const char **reason)
{
    return jwt_verify(token, secret, now_s, sub, sub_cap, username, name_cap, userpic, pic_cap, exp,
                      NULL, reason);
}

bool auth_is_jwt(const char *token)
{
    return token && auth_cfg->jwt_secret[0] && strchr(token, '.');
}

int64_t auth_jwt_expiry_ms(const char *token)
{
    char sub[130], name[130], pic[600];
    int64_t exp;
    const char *reason;
    if (!auth_is_jwt(token) || strlen(token) > 4096 ||
        auth_jwt_verify(token, auth_cfg->jwt_secret, auth_now_ms() / 1000, sub, sizeof(sub), name,
                        sizeof(name), pic, sizeof(pic), &exp, &reason) != 0)
        return -1;
    return exp * 1000;
}

/* ---- resolving --------------------------------------------------------- */

typedef struct resolve_ctx {
    auth_user_fn cb;
    void *ctx;
    uint8_t hash[32];
    int64_t until_ms;
    uint64_t epoch;
    int64_t started_ms; /* for revoked_refuses */
} resolve_ctx;

static void resolve_done(store_req *r)
{
    resolve_ctx *rc = r->ctx;
    if (r->status == STORE_OK &&
        (logged_out_has(rc->hash) ||
         revoked_refuses(json_integer_value(json_object_get(r->result, "id")), rc->hash,
                         rc->started_ms))) {
        /* read before the logout's delete (or the user's revoke) committed:
         * the token is dead */
        rc->cb(rc->ctx, 401, NULL);
    } else if (r->status == STORE_OK) {
        int64_t until = rc->until_ms;
        if (r->op == STORE_TOKEN_LOOKUP) {
            until = auth_cache_until(r->result, auth_now_ms());
            json_object_del(r->result, "expires");
        }
        if (rc->epoch == cache_epoch)
            cache_put(rc->hash, r->result, until, rc->started_ms);
        rc->cb(rc->ctx, 0, json_incref(r->result));
    } else {
        /* an unreachable database is not a bad token: 503, not 401 */
        rc->cb(rc->ctx,
               r->status == STORE_NOT_FOUND     ? 401
               : r->status == STORE_UNAVAILABLE ? 503
                                                : 500,
               NULL);
    }
    free(rc);
    store_req_free(r);
}

void auth_resolve(const char *token, auth_user_fn cb, void *ctx)
{
    if (!token || !*token || strlen(token) > 4096) {
        cb(ctx, 401, NULL);
        return;
    }
    uint8_t hash[32];
    auth_token_hash(token, hash);
    if (logged_out_has(hash)) {
        cb(ctx, 401, NULL);
        return;
    }
    json_t *user = cache_get(hash);
    if (user) {
        cb(ctx, 0, user);
        return;
    }
    resolve_ctx *rc = calloc(1, sizeof(*rc));
    if (!rc) {
        cb(ctx, 500, NULL);
        return;
    }
    rc->cb = cb;
    rc->ctx = ctx;
    rc->epoch = cache_epoch;
    rc->started_ms = auth_now_ms();
    memcpy(rc->hash, hash, 32);
    store_req *r;
    if (auth_is_jwt(token)) {
        char sub[130], name[130], pic[600];
        int64_t exp, iat_ms;
        const char *reason;
        if (jwt_verify(token, auth_cfg->jwt_secret, auth_now_ms() / 1000, sub, sizeof(sub), name,
                       sizeof(name), pic, sizeof(pic), &exp, &iat_ms, &reason) != 0) {
            log_debug("JWT refused: %s", reason);
            free(rc);
            cb(ctx, 401, NULL);
            return;
        }
        rc->until_ms = exp * 1000; /* exp <= AUTH_JWT_EXP_MAX: no overflow */
        r = store_req_new(STORE_USER_EXTERNAL, resolve_done, rc);
        if (r && (store_req_set_str(&r->external_id, sub) < 0 ||
                  store_req_set_str(&r->username, name) < 0 ||
                  store_req_set_str(&r->userpic, pic) < 0)) {
            store_req_free(r);
            r = NULL;
        }
        if (r) {
            r->time = auth_now_ms();
            r->issued_at = iat_ms;           /* refused when issued before the user's revoke */
            memcpy(r->token_hash, hash, 32); /* refused when revoked (logged out) */
        }
    } else {
        r = store_req_new(STORE_TOKEN_LOOKUP, resolve_done, rc);
        if (r) {
            memcpy(r->token_hash, hash, 32);
            r->time = auth_now_ms();
        }
    }
    if (!r) {
        free(rc);
        cb(ctx, 500, NULL);
        return;
    }
    store_submit(auth_store, r);
}

/* ---- passwords on the thread pool -------------------------------------- */

/* Password jobs wait in two FIFO queues of our own, logins before sign-ups,
 * and at most hash_parallel of them run on libuv's pool at once: argon2id
 * takes a core and 64 MiB per job, so running one per core starved the loop
 * thread and multiplied RSS. Queued jobs are ours to drop at shutdown; only
 * the running ones are waited for. */
typedef struct pw_work {
    uv_work_t work;
    char *password;
    char *hash; /* verify: the encoded hash, NULL = none known (dummy) */
    bool ok;
    bool verify;
    bool answered; /* auth_stop already called back (libuv cancelled it) */
    union {
        auth_hash_fn hash_cb;
        auth_verify_fn verify_cb;
    } cb;
    void *ctx;
    struct pw_work *prev, *next; /* in a queue, or in the running list */
} pw_work;

typedef struct pw_queue {
    pw_work *head, *tail;
} pw_queue;

static pw_queue queued_logins, queued_signups;
static pw_work *pw_running_list;
static size_t pw_jobs;    /* queued + running: bounded by --hash-queue */
static size_t pw_running; /* handed to libuv */
static size_t hash_parallel;
static bool auth_stopping;

/* The dummy hash an unknown user's login is verified against: made once at
 * start on the thread pool (64 MiB of argon2id is no work for the loop). */
static uv_work_t dummy_work;
static char dummy_out[crypto_pwhash_STRBYTES];
static char *dummy_hash;
static bool dummy_queued;

static int argon2_hash(const char *password, char out[crypto_pwhash_STRBYTES])
{
    return crypto_pwhash_str(out, password, strlen(password), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                             crypto_pwhash_MEMLIMIT_INTERACTIVE);
}

static void dummy_run(uv_work_t *w)
{
    (void)w;
    unsigned char raw[24];
    char pw[64];
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2hex(pw, sizeof(pw), raw, sizeof(raw));
    if (argon2_hash(pw, dummy_out) != 0)
        dummy_out[0] = '\0';
}

static void dummy_after(uv_work_t *w, int status)
{
    (void)w;
    dummy_queued = false;
    if (status == 0 && dummy_out[0])
        dummy_hash = dummy_out;
}

static void pw_run(uv_work_t *w)
{
    pw_work *pw = w->data;
    if (pw->verify && pw->hash) {
        pw->ok = crypto_pwhash_str_verify(pw->hash, pw->password, strlen(pw->password)) == 0;
        return;
    }
    char out[crypto_pwhash_STRBYTES];
    if (pw->verify) { /* no dummy yet (the first moments after start): same cost */
        argon2_hash(pw->password, out);
        pw->ok = false;
        return;
    }
    if (argon2_hash(pw->password, out) == 0)
        pw->hash = strdup(out);
}

static void pw_free(pw_work *pw)
{
    if (pw->password) {
        sodium_memzero(pw->password, strlen(pw->password));
        free(pw->password);
    }
    free(pw->hash);
    free(pw);
}

/* Calls back with status (and the result when AUTH_OK), then frees pw. */
static void pw_answer(pw_work *pw, int status)
{
    if (pw->verify) {
        pw->cb.verify_cb(pw->ctx, status, status == AUTH_OK && pw->ok);
    } else {
        char *hash = status == AUTH_OK ? pw->hash : NULL;
        if (status == AUTH_OK && !hash)
            status = AUTH_ERROR;
        if (hash)
            pw->hash = NULL; /* the callback owns it */
        pw->cb.hash_cb(pw->ctx, status, hash);
    }
    pw_free(pw);
}

static void queue_push(pw_queue *q, pw_work *pw)
{
    pw->next = NULL;
    pw->prev = q->tail;
    if (q->tail)
        q->tail->next = pw;
    else
        q->head = pw;
    q->tail = pw;
}

static pw_work *queue_pop(pw_queue *q)
{
    pw_work *pw = q->head;
    if (!pw)
        return NULL;
    q->head = pw->next;
    if (q->head)
        q->head->prev = NULL;
    else
        q->tail = NULL;
    pw->next = pw->prev = NULL;
    return pw;
}

static void pw_after(uv_work_t *w, int status);

/* Hands pw to libuv. 0, or -1 (pw untouched, not counted as running). */
static int pw_start(pw_work *pw)
{
    pw->work.data = pw;
    if (uv_queue_work(auth_loop, &pw->work, pw_run, pw_after) != 0)
        return -1;
    pw->prev = NULL;
    pw->next = pw_running_list;
    if (pw_running_list)
        pw_running_list->prev = pw;
    pw_running_list = pw;
    pw_running++;
    return 0;
}

/* Starts queued jobs while there is room, logins first. */
static void pw_pump(void)
{
    while (!auth_stopping && pw_running < hash_parallel) {
        pw_work *pw = queue_pop(&queued_logins);
        if (!pw)
            pw = queue_pop(&queued_signups);
        if (!pw)
            return;
        if (pw_start(pw) != 0) {
            pw_jobs--;
            pw_answer(pw, AUTH_ERROR);
        }
    }
}

static void pw_after(uv_work_t *w, int status)
{
    pw_work *pw = w->data;
    if (pw->prev)
        pw->prev->next = pw->next;
    else
        pw_running_list = pw->next;
    if (pw->next)
        pw->next->prev = pw->prev;
    pw_running--;
    pw_jobs--;
    if (pw->answered)
        pw_free(pw);
    else
        pw_answer(pw, status == UV_ECANCELED ? AUTH_CANCELLED : AUTH_OK);
    pw_pump();
}

/* Queues a job within share; the callback never runs before this returns. */
static int pw_submit(const char *password, const char *hash, pw_work *pw, size_t share)
{
    if (auth_stopping || pw_jobs >= share) {
        free(pw);
        return AUTH_BUSY;
    }
    pw->password = strdup(password);
    pw->hash = hash ? strdup(hash) : NULL;
    if (!pw->password || (hash && !pw->hash)) {
        pw_free(pw);
        return AUTH_ERROR;
    }
    bool queue_empty = !queued_logins.head && !queued_signups.head;
    if (pw_running < hash_parallel && queue_empty) {
        if (pw_start(pw) != 0) {
            pw_free(pw);
            return AUTH_ERROR;
        }
    } else {
        queue_push(pw->verify ? &queued_logins : &queued_signups, pw);
    }
    pw_jobs++;
    return AUTH_OK;
}

/* Sign-ups may fill half of the queue (at least one job), so logins, which
 * may fill all of it, always keep the other half. */
static size_t signup_share(void)
{
    size_t q = (size_t)auth_cfg->hash_queue;
    return q / 2 ? q / 2 : 1;
}

int auth_hash_password(const char *password, auth_hash_fn cb, void *ctx)
{
    pw_work *pw = calloc(1, sizeof(*pw));
    if (!pw)
        return AUTH_ERROR;
    pw->cb.hash_cb = cb;
    pw->ctx = ctx;
    return pw_submit(password, NULL, pw, signup_share());
}

int auth_verify_password(const char *password, const char *hash, auth_verify_fn cb, void *ctx)
{
    pw_work *pw = calloc(1, sizeof(*pw));
    if (!pw)
        return AUTH_ERROR;
    pw->verify = true;
    pw->cb.verify_cb = cb;
    pw->ctx = ctx;
    return pw_submit(password, hash ? hash : dummy_hash, pw, (size_t)auth_cfg->hash_queue);
}

size_t auth_hash_jobs(void)
{
    return pw_jobs;
}

/* ---- login and sign-up limits ------------------------------------------ */

static ratelimit *login_addr;  /* attempts per address */
static ratelimit *fail_user;   /* failures per username */
static ratelimit *fail_pair;   /* "failed at least once" per (username, address) */
static ratelimit *signup_addr; /* sign-ups per address */

/* A username's counters are the account's: every spelling login accepts
 * (names_key) shares them, or each Unicode variant of a name would get its
 * own allowance. The pair key is "<key>\n<address>": a key holds no newline.
 * A name without a key (invalid UTF-8, which no account has) is counted
 * under its bytes. */
static size_t limit_key(char *out, size_t cap, const char *username, const char *addr)
{
    char *name_key = names_key(username);
    const char *name = name_key ? name_key : username;
    int n = addr ? snprintf(out, cap, "%s\n%s", name, addr) : snprintf(out, cap, "%s", name);
    free(name_key);
    if (n < 0)
        return 0;
    return (size_t)n < cap ? (size_t)n : cap - 1;
}

int auth_login_check(const char *username, const char *addr, int64_t now_ms)
{
    /* the address first: a refused address creates no username key */
    if (!ratelimit_allows(login_addr, addr, strlen(addr), now_ms))
        return AUTH_LOGIN_ADDR_LIMITED;
    char key[600];
    size_t n = limit_key(key, sizeof(key), username, NULL);
    if (!ratelimit_allows(fail_user, key, n, now_ms)) {
        /* the username is under attack: only addresses that failed against it
         * are refused; its owner, from anywhere else, still gets through */
        n = limit_key(key, sizeof(key), username, addr);
        if (!ratelimit_allows(fail_pair, key, n, now_ms))
            return AUTH_LOGIN_USER_LIMITED;
    }
    if (!ratelimit_hit(login_addr, addr, strlen(addr), now_ms))
        return AUTH_LOGIN_ADDR_LIMITED;
    return AUTH_LOGIN_OK;
}

void auth_login_failed(const char *username, const char *addr, int64_t now_ms)
{
    char key[600];
    size_t n = limit_key(key, sizeof(key), username, NULL);
    ratelimit_hit(fail_user, key, n, now_ms);
    n = limit_key(key, sizeof(key), username, addr);
    ratelimit_hit(fail_pair, key, n, now_ms);
}

void auth_login_succeeded(const char *username, const char *addr)
{
    char key[600];
    size_t n = limit_key(key, sizeof(key), username, addr);
    ratelimit_reset(fail_pair, key, n);
}

bool auth_register_would_allow(const char *addr, int64_t now_ms)
{
    return ratelimit_allows(signup_addr, addr, strlen(addr), now_ms);
}

bool auth_register_allowed(const char *addr, int64_t now_ms)
{
    return ratelimit_hit(signup_addr, addr, strlen(addr), now_ms);
}

size_t auth_login_keys(void)
{
    return ratelimit_size(fail_user) + ratelimit_size(fail_pair);
}

void auth_limits_free(void)
{
    ratelimit_free(login_addr);
    ratelimit_free(fail_user);
    ratelimit_free(fail_pair);
    ratelimit_free(signup_addr);
    ratelimit_free(logged_out);
    login_addr = fail_user = fail_pair = signup_addr = logged_out = NULL;
}

int auth_limits_init(const config *cfg)
{
    auth_limits_free();
    auth_cfg = cfg;
    uint32_t rate = (uint32_t)cfg->login_rate;
    login_addr = ratelimit_new(rate, 60000, LIMIT_KEYS_MAX);
    fail_user = ratelimit_new(rate, 60000, LIMIT_KEYS_MAX);
    fail_pair = ratelimit_new(1, 60000, LIMIT_KEYS_MAX);
    signup_addr = ratelimit_new((uint32_t)cfg->register_rate, 3600000, LIMIT_KEYS_MAX);
    logged_out = ratelimit_new(1, AUTH_LOGOUT_MEMORY_SECONDS * 1000, LOGGED_OUT_MAX);
    if (!login_addr || !fail_user || !fail_pair || !signup_addr || !logged_out) {
        auth_limits_free();
        return -1;
    }
    return 0;
}

/* ---- sockets bound per token ------------------------------------------- */

/* token hash -> client ids of the sockets it bound. Entries sit in uthash's
 * insertion order; every new bind tidies the two oldest entries (drops their
 * closed sockets, or the entry when none is left, else moves it to the
 * end), so dead entries cannot pile up and no call scans the table. */
typedef struct bind_entry {
    uint8_t hash[32];
    size_t n, cap;
    char (*ids)[CLIENT_ID_LEN + 1];
    UT_hash_handle hh;
} bind_entry;

static bind_entry *binds;

static void bind_drop(bind_entry *e)
{
    HASH_DEL(binds, e);
    free(e->ids);
    free(e);
}

static void bind_prune(bind_entry *e)
{
    size_t k = 0;
    for (size_t i = 0; i < e->n; i++)
        if (registry_find(e->ids[i], strlen(e->ids[i])))
            memcpy(e->ids[k++], e->ids[i], CLIENT_ID_LEN + 1);
    e->n = k;
}

static void binds_tidy(void)
{
    for (int i = 0; i < 2 && binds; i++) {
        bind_entry *e = binds;
        HASH_DEL(binds, e);
        bind_prune(e);
        if (e->n == 0) {
            free(e->ids);
            free(e);
        } else {
            HASH_ADD(hh, binds, hash, 32, e);
        }
    }
}

void auth_note_bind_hash(const uint8_t hash[32], const char *client_id)
{
    if (!client_id || strlen(client_id) != registry_client_id_len())
        return;
    binds_tidy();
    bind_entry *e = NULL;
    HASH_FIND(hh, binds, hash, 32, e);
    if (!e) {
        if (HASH_COUNT(binds) >= BINDS_MAX_TOKENS)
            return; /* more live tokens than that: logout cannot close these */
        e = calloc(1, sizeof(*e));
        if (!e)
            return;
        memcpy(e->hash, hash, 32);
        HASH_ADD(hh, binds, hash, 32, e);
    }
    for (size_t i = 0; i < e->n; i++)
        if (strcmp(e->ids[i], client_id) == 0)
            return;
    if (e->n == e->cap) {
        bind_prune(e);
        if (e->n == e->cap) {
            size_t cap = e->cap ? e->cap * 2 : 2;
            void *ids = realloc(e->ids, cap * sizeof(*e->ids));
            if (!ids)
                return;
            e->ids = ids;
            e->cap = cap;
        }
    }
    memcpy(e->ids[e->n++], client_id, strlen(client_id) + 1);
}

bool auth_bound_by(const uint8_t hash[32], const char *client_id)
{
    bind_entry *e = NULL;
    HASH_FIND(hh, binds, hash, 32, e);
    for (size_t i = 0; e && i < e->n; i++)
        if (strcmp(e->ids[i], client_id) == 0)
            return true;
    return false;
}

void auth_each_bound(const char *token, void (*fn)(const char *client_id, void *arg), void *arg)
{
    uint8_t hash[32];
    auth_token_hash(token, hash);
    auth_each_bound_hash(hash, fn, arg);
}

void auth_each_bound_hash(const uint8_t hash[32], void (*fn)(const char *client_id, void *arg),
                          void *arg)
{
    bind_entry *e = NULL;
    HASH_FIND(hh, binds, hash, 32, e);
    if (!e)
        return;
    HASH_DEL(binds, e); /* fn may close sockets; the entry is ours now */
    for (size_t i = 0; i < e->n; i++)
        if (registry_find(e->ids[i], strlen(e->ids[i])))
            fn(e->ids[i], arg);
    free(e->ids);
    free(e);
}

/* ---- start and stop ---------------------------------------------------- */

int auth_init(uv_loop_t *loop, const config *cfg, store *st)
{
    if (sodium_init() < 0)
        return -1;
    auth_loop = loop;
    auth_cfg = cfg;
    auth_store = st;
    auth_stopping = false;
    if (auth_limits_init(cfg) < 0)
        return -1;
    /* one core stays free for the loop thread; libuv's pool has 4 threads */
    unsigned cores = uv_available_parallelism();
    hash_parallel = cores > 1 ? cores - 1 : 1;
    if (hash_parallel > AUTH_HASH_PARALLEL_MAX)
        hash_parallel = AUTH_HASH_PARALLEL_MAX;
    if (uv_queue_work(loop, &dummy_work, dummy_run, dummy_after) == 0)
        dummy_queued = true;
    return 0;
}

void auth_stop(void)
{
    auth_stopping = true;
    if (dummy_queued)
        uv_cancel((uv_req_t *)&dummy_work);
    /* Queued jobs are answered (503) now, before the shutdown closes their
     * connections; running ones finish and answer normally. A job libuv has
     * not started yet (its pool busy with other work) is cancelled too:
     * answered here, freed when libuv reports the cancellation. */
    size_t dropped = 0;
    pw_work *pw;
    while ((pw = queue_pop(&queued_logins)) || (pw = queue_pop(&queued_signups))) {
        pw_jobs--;
        dropped++;
        pw_answer(pw, AUTH_CANCELLED);
    }
    for (pw = pw_running_list; pw; pw = pw->next) {
        if (pw->answered || uv_cancel((uv_req_t *)&pw->work) != 0)
            continue;
        pw->answered = true;
        dropped++;
        if (pw->verify)
            pw->cb.verify_cb(pw->ctx, AUTH_CANCELLED, false);
        else
            pw->cb.hash_cb(pw->ctx, AUTH_CANCELLED, NULL);
    }
    if (dropped)
        log_info("shutdown: %zu queued password hashing jobs dropped", dropped);
}

void auth_shutdown(void)
{
    cache_clear();
    revoked_uid *ru, *rtmp;
    HASH_ITER(hh, revoked, ru, rtmp)
    {
        revoked_drop(ru);
    }
    changed_uid *cu, *ctmp;
    HASH_ITER(hh, changed, cu, ctmp)
    {
        changed_drop(cu);
    }
    auth_limits_free();
    bind_entry *e, *tmp;
    HASH_ITER(hh, binds, e, tmp)
    {
        bind_drop(e);
    }
}
