/* gw: chatd as a drop-in for GatewayWorker's Register and Gateway processes
 * (docs/GATEWAYWORKER.md), so that an unchanged PHP backend using
 * GatewayClient, and unchanged BusinessWorker processes running Events.php,
 * work through chatd.
 *
 * Three parts, all off unless their option is given:
 *   --gw-inner      the inner-protocol listener (gw_inner.c): GatewayClient's
 *                   commands and queries on this node's connections, and
 *                   BusinessWorker connections (gw_worker.c), which get each
 *                   client's connect/message/close events;
 *   --gw-register   the Register directory (gw_register.c);
 *   announcing      this node's inner address to --gw-register-address (or
 *                   to its own Register), so GatewayClient finds every node.
 *
 * With --gw-inner a client_id is GatewayWorker's 20-hex layout (inner IPv4,
 * inner port, a random 32-bit connection id), so GatewayClient can decode it;
 * the init greeting and the native /gateway/... API use the same ids.
 *
 * Everything runs on the loop thread. The gateway calls the gw_client_*
 * hooks for every client WebSocket; they cost nothing when gw is off. */
#ifndef CHATD_GW_H
#define CHATD_GW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "http/http.h"
#include "net/conn.h"
#include "net/server.h"

/* Checks the options and starts the listeners and the announcement. Returns
 * 0, or -1 after logging why (a bad address, a port in use). */
int gw_init(server *srv, const config *cfg);
/* Stops listening and announcing (at shutdown, before connections close). */
void gw_stop(void);

/* True with --gw-inner: client_ids are GatewayWorker's 20-hex layout. */
bool gw_compat_ids(void);
/* Writes a new 20-hex client_id for c into c->client_id: this node's inner
 * address and a random non-zero connection id that no open connection of
 * this node has. Returns 0, or -1 without randomness. */
int gw_make_client_id(conn *c);
/* True when a 20-hex client_id names another node's inner address. */
bool gw_client_id_is_remote(const char *client_id, size_t len);

/* Client WebSocket hooks (gateway.c). opened: after registry_add, with the
 * upgrade request; message: returns true when a BusinessWorker took the
 * message (the gateway then does nothing with it); closed: before
 * registry_remove. */
void gw_client_opened(conn *c, http_request *req);
bool gw_client_message(conn *c, const uint8_t *data, size_t len);
void gw_client_closed(conn *c);

/* The client's session as PHP serialize() text: the PHP session when one
 * was set through the inner protocol, else the native JSON session
 * converted (written into *tmp, which the caller frees), else "" (never
 * set). */
void gw_session_php(conn *c, char **tmp, const char **text, size_t *len);

/* A JSON object for /healthz ("gw"), or NULL when gw is off. New reference. */
struct json_t;
struct json_t *gw_health(void);

#endif
