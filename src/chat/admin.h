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
#include <uv.h>

#include "core/config.h"
#include "http/http.h"
#include "store/store.h"

/* Registers the cluster handler; st is the chat service's store (borrowed,
 * it outlives the admin calls: chat_shutdown closes it after the loop has
 * answered every request). */
void admin_init(uv_loop_t *loop, store *st);

/* Whether path is an admin path (/admin/...). */
bool admin_handles(const char *path);

/* Answers req, an admin path. */
void admin_handle_request(http_request *req);

#endif
