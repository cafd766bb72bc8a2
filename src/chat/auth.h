/* auth: who is calling the chat service.
 *
 * - Passwords: argon2id (libsodium crypto_pwhash_str), hashed and verified on
 *   libuv's thread pool, never on the event loop thread.
 * - Tokens: 256 random bits given to the client once; only their SHA-256 is
 *   stored, with an expiry. A token arrives as "Authorization: Bearer <t>" or
 *   as a "token" header (the reference client's way).
 * - JWTs: with --jwt-secret, an HS256 JWT issued by the site's backend is
 *   accepted too (user id in "sub", "exp" required and checked).
 * - Login rate limits per username and per address (429).
 *
 * Resolved tokens are cached on the loop thread for AUTH_CACHE_SECONDS, so a
 * busy client costs no storage round trip per request; a logout drops the
 * entry at once on this node. */
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

int auth_init(uv_loop_t *loop, const config *cfg, store *st);
void auth_shutdown(void);

/* Outcome of resolving a token: user is a new reference on success. */
typedef void (*auth_user_fn)(void *ctx, int status, json_t *user);

/* Resolves a token (opaque or JWT) to a user; cb runs on the loop thread,
 * possibly before auth_resolve returns. status: 0, 401 or 500. */
void auth_resolve(const char *token, auth_user_fn cb, void *ctx);

/* Hashes a password off the loop: cb gets the encoded hash or NULL. */
typedef void (*auth_hash_fn)(void *ctx, char *hash);
int auth_hash_password(const char *password, auth_hash_fn cb, void *ctx);

/* Verifies a password against an encoded hash off the loop. */
typedef void (*auth_verify_fn)(void *ctx, bool ok);
int auth_verify_password(const char *password, const char *hash, auth_verify_fn cb, void *ctx);

/* Makes a new token: text for the client, hash for the store. */
int auth_new_token(char text[AUTH_TOKEN_TEXT_LEN + 1], uint8_t hash[32]);
void auth_token_hash(const char *token, uint8_t hash[32]);
/* Forgets a cached token (logout). */
void auth_forget(const char *token);

/* Counts a login attempt for the key; false when over --login-rate per minute. */
bool auth_login_allowed(const char *kind, const char *key);

/* Verifies an HS256 JWT; on success fills sub (string form), username,
 * userpic (may be empty) and exp (seconds). Pure, for unit tests too.
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
