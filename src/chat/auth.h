/* auth: who is calling the chat service.
 *
 * - Passwords: argon2id (libsodium crypto_pwhash_str), hashed and verified on
 *   libuv's thread pool, never on the event loop thread, one job per core
 *   but one (at least one, at most 4) at a time. The hashing queue is bounded
 *   (--hash-queue jobs queued or running): sign-ups may take half of it,
 *   logins all of it, and queued logins start before queued sign-ups, so a
 *   sign-up burst cannot starve logins. A login for
 *   an unknown user (or one without a password) is verified against a dummy
 *   hash, so its timing does not tell whether the username exists.
 * - Tokens: 256 random bits given to the client once; only their SHA-256 is
 *   stored, with an expiry. A token arrives as "Authorization: Bearer <t>" or
 *   as a "token" header (the reference client's way).
 * - JWTs: with --jwt-secret, an HS256 JWT issued by the site's backend is
 *   accepted too (user id in "sub", "exp" required and checked, "nbf" checked
 *   when present). A logged-out JWT is kept on a revocation list in the store
 *   until its exp. After an admin revoke of the user, only JWTs whose "iat"
 *   is not before the revoke are accepted (the store keeps the time).
 * - Login and sign-up rate limits (429), see auth_login_check.
 * - Which sockets a token bound, so logout can close them (this node only).
 *
 * Resolved tokens are cached on the loop thread for AUTH_CACHE_SECONDS (never
 * past the token's expiry when the store tells it), so a busy client costs no
 * storage round trip per request; a logout drops the entry at once on this
 * node, and a resolve that was in flight during a logout does not refill the
 * cache. A logged-out token's hash is remembered for
 * AUTH_LOGOUT_MEMORY_SECONDS (bounded, O(1)): this node refuses it (401)
 * from the moment the logout is asked, including the answers of lookups
 * already in flight, which a store with reader threads can deliver after the
 * logout's delete committed and after logout closed the token's sockets.
 *
 * Threading: everything here runs on the loop thread, except the argon2id
 * work itself. */
#ifndef CHATD_AUTH_H
#define CHATD_AUTH_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/config.h"
#include "store/store.h"

#define AUTH_TOKEN_BYTES 32
#define AUTH_TOKEN_TEXT_LEN 43 /* base64url without padding */
#define AUTH_CACHE_SECONDS 60
/* Long past any in-flight lookup (the store answers or fails within it). */
#define AUTH_LOGOUT_MEMORY_SECONDS 120
/* Year 9999: later exp claims are read as this (exp * 1000 fits int64). */
#define AUTH_JWT_EXP_MAX INT64_C(253402300799)

/* Status of the hashing callbacks and of queueing them. */
enum auth_status {
    AUTH_OK = 0,
    AUTH_ERROR = -1,     /* out of memory, or argon2id failed */
    AUTH_BUSY = -2,      /* the hashing queue's share for this kind of job is taken */
    AUTH_CANCELLED = -3, /* dropped from the queue by auth_stop (shutting down) */
};

int auth_init(uv_loop_t *loop, const config *cfg, store *st);
/* Cancels the hashing jobs that have not started: their callbacks run with
 * AUTH_CANCELLED before auth_stop returns, so a shutdown waits for the
 * running jobs only. New jobs are refused with AUTH_BUSY afterwards. */
void auth_stop(void);
void auth_shutdown(void);

/* Outcome of resolving a token: user is a new reference on success. */
typedef void (*auth_user_fn)(void *ctx, int status, json_t *user);

/* Resolves a token (opaque or JWT) to a user; cb runs on the loop thread,
 * possibly before auth_resolve returns. status: 0, 401, 500, or 503 when the
 * store's database cannot be reached (STORE_UNAVAILABLE). */
void auth_resolve(const char *token, auth_user_fn cb, void *ctx);

/* Hashes a password off the loop (a sign-up): cb gets AUTH_OK and the
 * encoded hash (cb owns it), AUTH_ERROR or AUTH_CANCELLED with NULL.
 * Returns AUTH_OK when queued (cb will run, never before this returns),
 * AUTH_BUSY when half of the hashing queue is taken, AUTH_ERROR on OOM (cb
 * will not run). */
typedef void (*auth_hash_fn)(void *ctx, int status, char *hash);
int auth_hash_password(const char *password, auth_hash_fn cb, void *ctx);

/* Verifies a password against an encoded hash off the loop (a login); with
 * hash NULL, against the dummy hash, and ok is false. cb gets AUTH_OK and
 * ok, or AUTH_ERROR / AUTH_CANCELLED. Returns as auth_hash_password, but
 * AUTH_BUSY only when the whole queue is taken. */
typedef void (*auth_verify_fn)(void *ctx, int status, bool ok);
int auth_verify_password(const char *password, const char *hash, auth_verify_fn cb, void *ctx);

/* Password hashing jobs queued or running now. */
size_t auth_hash_jobs(void);

/* Makes a new token: text for the client, hash for the store. */
int auth_new_token(char text[AUTH_TOKEN_TEXT_LEN + 1], uint8_t hash[32]);
void auth_token_hash(const char *token, uint8_t hash[32]);
/* Forgets a cached token (logout): resolves in flight will not cache it, and
 * this node answers 401 for the token (also to resolves in flight) for
 * AUTH_LOGOUT_MEMORY_SECONDS, after which the store has deleted it. */
void auth_forget(const char *token);
/* The same by the token's hash (a logout on another node). */
void auth_forget_hash(const uint8_t hash[32]);
/* An admin revoke or disable of user uid (chat/admin.h), or a password
 * change: from begin (before the store is asked) to end (after it
 * committed, or on a node that learns of it from another) every resolve
 * answer for uid is refused (401), and at end everything this node read
 * about uid before (cached tokens, lookups in flight) is refused too, for
 * AUTH_LOGOUT_MEMORY_SECONDS, after which the store answers alone (it
 * deleted the tokens and refuses older JWTs). keep (a token hash, or NULL)
 * is spared: a password change keeps the caller's token. While revokes of
 * uid overlap, only a token every one of them kept is spared. Calling end
 * without begin is fine. */
void auth_revoke_begin(int64_t uid, const uint8_t *keep);
void auth_revoke_end(int64_t uid, const uint8_t *keep);
/* True when this node knows of a revoke of uid at or after started_ms (ms,
 * wall clock; 0 = unknown: false) that did not keep the token with this
 * hash: what was read about uid before then is stale. For a bind another
 * node forwards after reading the token. */
bool auth_revoked_since(int64_t uid, const uint8_t hash[32], int64_t started_ms);
/* The user uid changed (its picture): cached tokens that read it before
 * now are looked up again, on this node, and lookups in flight do not
 * cache what they read. Nothing is refused. */
void auth_user_changed(int64_t uid);
/* Until when (ms) a STORE_TOKEN_LOOKUP result may be cached at now_ms:
 * min(its "expires", now_ms + AUTH_CACHE_SECONDS * 1000); without "expires",
 * the latter. Pure, for unit tests. */
int64_t auth_cache_until(const json_t *lookup, int64_t now_ms);

/* True when token has the form of a JWT this server would check. */
bool auth_is_jwt(const char *token);
/* The exp (ms) of a JWT that verifies now; -1 when it does not. */
int64_t auth_jwt_expiry_ms(const char *token);

/* Remembers that the token with this SHA-256 (auth_token_hash) bound the
 * socket client_id, so logout can close it; by hash, as a bind forwarded
 * from another node carries no token. Dead sockets are dropped lazily: each
 * call tidies a few old entries. */
void auth_note_bind_hash(const uint8_t hash[32], const char *client_id);
/* Calls fn for every socket token bound that is still open, and forgets
 * them. */
/* Whether the token with this hash bound the socket client_id (on this
 * node). */
bool auth_bound_by(const uint8_t hash[32], const char *client_id);
void auth_each_bound(const char *token, void (*fn)(const char *client_id, void *arg), void *arg);
void auth_each_bound_hash(const uint8_t hash[32], void (*fn)(const char *client_id, void *arg),
                          void *arg);

/* ---- login and sign-up limits (docs/SECURITY.md) ----------------------
 * Per address: --login-rate attempts per minute (all usernames).
 * Per username: failed attempts are counted per username and per
 * (username, address). Once a username has --login-rate failures in its
 * minute, addresses that failed against it in that minute are refused; an
 * address that has not failed against it still gets through, so nobody can
 * lock the owner out. Refused attempts are not counted. Sign-ups:
 * --register-rate per hour per address. All limiters evict in O(1)
 * (core/ratelimit.h). now_ms is a parameter for the unit tests. */
enum auth_login_verdict {
    AUTH_LOGIN_OK = 0,
    AUTH_LOGIN_ADDR_LIMITED = 1, /* this address made too many attempts */
    AUTH_LOGIN_USER_LIMITED = 2, /* this address failed too often against this username */
};

/* Creates the limiters from cfg (auth_init calls it). 0 or -1 on OOM. */
int auth_limits_init(const config *cfg);
void auth_limits_free(void);
/* Checks an attempt; when AUTH_LOGIN_OK it is counted against the address,
 * otherwise nothing is recorded. */
int auth_login_check(const char *username, const char *addr, int64_t now_ms);
void auth_login_failed(const char *username, const char *addr, int64_t now_ms);
void auth_login_succeeded(const char *username, const char *addr);
/* Checks and counts a sign-up from addr. */
bool auth_register_allowed(const char *addr, int64_t now_ms);
/* Whether one more sign-up from addr would be allowed; counts nothing. */
bool auth_register_would_allow(const char *addr, int64_t now_ms);
/* Keys held by the username limiters (for tests). */
size_t auth_login_keys(void);

/* Verifies an HS256 JWT; on success fills sub (string form), username,
 * userpic (may be empty) and exp (seconds, clamped to AUTH_JWT_EXP_MAX so
 * exp * 1000 cannot overflow). A numeric "nbf" after now_s is refused ("not
 * yet valid"). Pure, for unit tests too.
 * username follows the sign-up rules (chat/names.h): the claim as given,
 * cut on a character boundary if too long, else "user<sub>" (a warning is
 * logged); name_cap >= NAMES_MAX_BYTES + 1. A picture that does not fit
 * pic_cap is dropped, not cut. Returns 0 or -1 with a reason. */
int auth_jwt_verify(const char *token, const char *secret, int64_t now_s, char *sub, size_t sub_cap,
                    char *username, size_t name_cap, char *userpic, size_t pic_cap, int64_t *exp,
                    const char **reason);

int64_t auth_now_ms(void);

/* True for a link chatd will hand to browsers: an http(s) URL, or a path on
 * this server ("/x", not "//host" nor "/\\host", which browsers read as a
 * host), without control characters. */
bool auth_url_is_safe(const char *url);

#endif
