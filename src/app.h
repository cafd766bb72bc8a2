/* app: composes chatd from its layers. Routes each HTTP request to the
 * WebSocket upgrade, the server API, the chat service, /healthz or the
 * static files, and owns start-up and graceful shutdown. */
#ifndef CHATD_APP_H
#define CHATD_APP_H

#include <uv.h>

#include "core/config.h"

/* Runs chatd until SIGINT/SIGTERM. Returns the process exit code. cfg must
 * come from config_load() and outlive the call; SIGHUP re-reads the
 * configuration and updates cfg in place (see config.h). */
int app_run(uv_loop_t *loop, config *cfg);

#endif
