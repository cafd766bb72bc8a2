/* admin: the server API's account methods, POST /admin/users/<action>.
 *
 * For the site's backend, authenticated like /gateway/<method> (Authorization:
 * Bearer <--api-secret>, checked in constant time; 403 api_disabled
 * without --api-secret). See docs/API.md "Admin API":
 *
 *   revoke  {"uid"}: deletes every login token of the user, refuses its
 *           JWTs issued before now (a per-user not-before time in the
 *           store), and closes every socket bound to the uid on every node
 *           (an error frame, then close 1008).
 *   disable {"uid"}: the same, and the account is disabled: login answers
 *           403 account_disabled, its JWTs are refused whatever their iat.
 *   enable  {"uid"}: the account may log in again; nothing revoked comes
 *           back.
 *
 * In a cluster the sockets and token caches of the other nodes are reached
 * with a cluster call ("chat.admin_revoke") after the store committed.
 * Threading: the loop thread. */
#ifndef CHATD_ADMIN_H
#define CHATD_ADMIN_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "core/config.h"
#include "http/http.h"
#include "store/store.h"

/* Signs user uid out after its tokens were deleted (the store committed,
 * and auth_revoke_begin(uid, keep) was called before the store was asked):
 * auth_revoke_end(uid, keep) here, and every socket bound to uid gets an
 * error frame with code and is closed (1008), on this node and, through
 * the cluster call "chat.admin_revoke", on every other; the sockets the
 * token keep (a SHA-256, or NULL) bound stay open (a password change
 * keeps the caller's session). done gets the sockets closed in all, and
 * whether every node answered within the call's time; it runs once,
 * possibly before admin_sign_out returns. code and reason must be
 * literals (or outlive the call). */
typedef void (*admin_sign_out_fn)(int closed, bool complete, void *ctx);
void admin_sign_out(int64_t uid, const uint8_t *keep, const char *code, const char *reason,
                    admin_sign_out_fn done, void *ctx);

/* Registers the cluster handler; st is the chat service's store (borrowed,
 * it outlives the admin calls: chat_shutdown closes it after the loop has
 * answered every request). */
void admin_init(uv_loop_t *loop, store *st);

/* Whether path is an admin path (/admin/...). */
bool admin_handles(const char *path);

/* Answers req, an admin path. */
void admin_handle_request(http_request *req);

#endif
