/* chat: the chat service on top of the gateway: accounts (/user/...), bind,
 * durable 1:1 and group messages, chat list, unread counts, history and sync
 * (/chat/...), groups (/group/...), and the same operations over the
 * WebSocket ({"type":"bind"}, {"type":"send"}, {"type":"call"}, group
 * {"type":"event"}). See docs/API.md.
 *
 * Every request is a chat_call that moves through small steps: authenticate,
 * validate, one storage operation, then answer and push. Storage and password
 * hashing complete asynchronously, so the event loop never waits; a send is
 * acknowledged (HTTP answer or socket ack) only after its transaction
 * committed. A chat user's gateway uid is the decimal user id. */
#ifndef CHATD_CHAT_H
#define CHATD_CHAT_H

#include <stdbool.h>
#include <uv.h>

#include "core/config.h"
#include "http/http.h"

/* Opens the store under cfg->data_dir and installs the socket hooks.
 * Returns 0, or -1 after logging why. */
int chat_init(uv_loop_t *loop, const config *cfg);
/* Shutdown has begun (SIGTERM/SIGINT): drops the password hashing jobs not
 * yet started (their requests get 503), so the exit does not wait for them. */
void chat_stop(void);
/* Flushes and closes the store (after the loop stopped serving). */
void chat_shutdown(void);

/* True for paths the chat service answers (/user/..., /chat/..., /group/...). */
bool chat_handles(const char *path);
/* For /healthz: whether the store's database answers now (false while a
 * PostgreSQL server cannot be reached) and the backend's name. */
bool chat_store_ok(const char **backend);
void chat_handle_request(http_request *req);

#endif
