/* auth: passwords, tokens, JWTs and login rate limits (see auth.h). */
#include "chat/auth.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <uthash.h>

#include "chat/names.h"
#include "core/log.h"

#define AUTH_CACHE_MAX 100000
#define RATE_TABLE_MAX 100000

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

/* ---- token cache ------------------------------------------------------- */

typedef struct cache_entry {
    uint8_t hash[32];
    json_t *user;
    int64_t until_ms; /* cache expiry: min(token expiry, now + AUTH_CACHE_SECONDS) */
    UT_hash_handle hh;
} cache_entry;

static cache_entry *cache;

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
    if (e->until_ms <= auth_now_ms()) {
        cache_drop(e);
        return NULL;
    }
    return json_incref(e->user);
}

static void cache_put(const uint8_t hash[32], json_t *user, int64_t until_ms)
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

int auth_jwt_verify(const char *token, const char *secret, int64_t now_s, char *sub, size_t sub_cap,
                    char *username, size_t name_cap, char *userpic, size_t pic_cap, int64_t *exp,
                    const char **reason)
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
    int rc = -1;
    if (!json_is_number(jexp)) {
        *reason = "JWT has no exp";
    } else if ((int64_t)json_number_value(jexp) <= now_s) {
        *reason = "JWT expired";
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
        *exp = (int64_t)json_number_value(jexp);
        char claimed[sizeof(buf)]; /* holds any claim of the payload whole */
        copy_claim(claims, "username", "name", claimed, sizeof(claimed));
        jwt_username(claimed, sub, username, name_cap);
        copy_claim(claims, "userpic", "picture", userpic, pic_cap);
        if (userpic[0] && !auth_url_is_safe(userpic))
            userpic[0] = '\0'; /* same rule as a userpic given at sign-up */
    }
    json_decref(claims);
    return rc;
}

/* ---- resolving --------------------------------------------------------- */

typedef struct resolve_ctx {
    auth_user_fn cb;
    void *ctx;
    uint8_t hash[32];
    int64_t until_ms;
} resolve_ctx;

static void resolve_done(store_req *r)
{
    resolve_ctx *rc = r->ctx;
    if (r->status == STORE_OK) {
        int64_t until = rc->until_ms;
        if (r->op == STORE_TOKEN_LOOKUP) {
            json_t *exp = json_object_get(r->result, "expires");
            until = exp ? json_integer_value(exp) : auth_now_ms() + AUTH_CACHE_SECONDS * 1000;
            json_object_del(r->result, "expires");
        }
        cache_put(rc->hash, r->result, until);
        rc->cb(rc->ctx, 0, json_incref(r->result));
    } else {
        rc->cb(rc->ctx, r->status == STORE_NOT_FOUND ? 401 : 500, NULL);
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
    memcpy(rc->hash, hash, 32);
    store_req *r;
    if (auth_cfg->jwt_secret[0] && strchr(token, '.')) {
        char sub[130], name[130], pic[600];
        int64_t exp;
        const char *reason;
        if (auth_jwt_verify(token, auth_cfg->jwt_secret, auth_now_ms() / 1000, sub, sizeof(sub),
                            name, sizeof(name), pic, sizeof(pic), &exp, &reason) != 0) {
            log_debug("JWT refused: %s", reason);
            free(rc);
            cb(ctx, 401, NULL);
            return;
        }
        rc->until_ms = exp * 1000;
        r = store_req_new(STORE_USER_EXTERNAL, resolve_done, rc);
        if (r && (store_req_set_str(&r->external_id, sub) < 0 ||
                  store_req_set_str(&r->username, name) < 0 ||
                  store_req_set_str(&r->userpic, pic) < 0)) {
            store_req_free(r);
            r = NULL;
        }
        if (r)
            r->time = auth_now_ms();
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

typedef struct pw_work {
    uv_work_t work;
    char *password;
    char *hash;
    bool ok;
    bool verify;
    union {
        auth_hash_fn hash_cb;
        auth_verify_fn verify_cb;
    } cb;
    void *ctx;
} pw_work;

static void pw_run(uv_work_t *w)
{
    pw_work *pw = w->data;
    if (pw->verify) {
        pw->ok = crypto_pwhash_str_verify(pw->hash, pw->password, strlen(pw->password)) == 0;
        return;
    }
    char out[crypto_pwhash_STRBYTES];
    if (crypto_pwhash_str(out, pw->password, strlen(pw->password),
                          crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE) == 0)
        pw->hash = strdup(out);
}

static void pw_after(uv_work_t *w, int status)
{
    (void)status;
    pw_work *pw = w->data;
    sodium_memzero(pw->password, strlen(pw->password));
    free(pw->password);
    if (pw->verify) {
        free(pw->hash);
        pw->cb.verify_cb(pw->ctx, pw->ok);
    } else {
        pw->cb.hash_cb(pw->ctx, pw->hash); /* the callback owns the hash */
    }
    free(pw);
}

static int pw_queue(const char *password, const char *hash, pw_work *pw)
{
    pw->password = strdup(password);
    pw->hash = hash ? strdup(hash) : NULL;
    pw->work.data = pw;
    if (!pw->password || (hash && !pw->hash) ||
        uv_queue_work(auth_loop, &pw->work, pw_run, pw_after) != 0) {
        free(pw->password);
        free(pw->hash);
        free(pw);
        return -1;
    }
    return 0;
}

int auth_hash_password(const char *password, auth_hash_fn cb, void *ctx)
{
    pw_work *pw = calloc(1, sizeof(*pw));
    if (!pw)
        return -1;
    pw->cb.hash_cb = cb;
    pw->ctx = ctx;
    return pw_queue(password, NULL, pw);
}

int auth_verify_password(const char *password, const char *hash, auth_verify_fn cb, void *ctx)
{
    pw_work *pw = calloc(1, sizeof(*pw));
    if (!pw)
        return -1;
    pw->verify = true;
    pw->cb.verify_cb = cb;
    pw->ctx = ctx;
    return pw_queue(password, hash, pw);
}

/* ---- login rate limits: fixed one-minute windows ----------------------- */

typedef struct rate_entry {
    UT_hash_handle hh;
    int64_t window; /* minute number */
    uint32_t count;
    char key[];
} rate_entry;

static rate_entry *rates;

static void rates_prune(int64_t window)
{
    rate_entry *e, *tmp;
    HASH_ITER(hh, rates, e, tmp)
    {
        if (e->window != window) {
            HASH_DEL(rates, e);
            free(e);
        }
    }
}

bool auth_login_allowed(const char *kind, const char *key)
{
    char full[300];
    int n = snprintf(full, sizeof(full), "%s:%s", kind, key);
    if (n < 0 || (size_t)n >= sizeof(full))
        n = (int)sizeof(full) - 1;
    /* usernames match ignoring case, so must their attempt counters */
    for (int i = 0; i < n; i++)
        if (full[i] >= 'A' && full[i] <= 'Z')
            full[i] = (char)(full[i] + 32);
    int64_t window = auth_now_ms() / 60000;
    rate_entry *e = NULL;
    HASH_FIND(hh, rates, full, (size_t)n, e);
    if (!e) {
        if (HASH_COUNT(rates) >= RATE_TABLE_MAX)
            rates_prune(window);
        e = calloc(1, sizeof(*e) + (size_t)n + 1);
        if (!e)
            return false;
        memcpy(e->key, full, (size_t)n);
        e->window = window;
        HASH_ADD(hh, rates, key, (size_t)n, e);
    }
    if (e->window != window) {
        e->window = window;
        e->count = 0;
    }
    return ++e->count <= (uint32_t)auth_cfg->login_rate;
}

int auth_init(uv_loop_t *loop, const config *cfg, store *st)
{
    if (sodium_init() < 0)
        return -1;
    auth_loop = loop;
    auth_cfg = cfg;
    auth_store = st;
    return 0;
}

void auth_shutdown(void)
{
    cache_clear();
    rate_entry *e, *tmp;
    HASH_ITER(hh, rates, e, tmp)
    {
        HASH_DEL(rates, e);
        free(e);
    }
}
