/* gateway_api: POST /gateway/<method>, the server API for app backends
 * (GatewayWorker's Gateway::sendToUid family over HTTP). Checks the bearer
 * secret in constant time; with no --api-secret the API is off (403). */
#ifndef CHATD_GATEWAY_API_H
#define CHATD_GATEWAY_API_H

#include <stdbool.h>
#include <stddef.h>

#include "http/http.h"

/* Constant-time secret check: SHA-256 digests are compared, so neither the
 * content nor the length of the secret leaks through timing. given is len
 * bytes (not NUL-terminated); secret is a C string. */
bool gateway_api_secret_equal(const char *given, size_t len, const char *secret);

/* The server API's authorization, shared by the /gateway/ and /admin/ paths: the
 * bearer --api-secret. Answers 403 api_disabled (no --api-secret) or 401
 * unauthorized and returns false; true when the caller may go on. */
bool gateway_api_authorize(http_request *req);

/* Registers the methods as cluster request handlers (call once at start). */
void gateway_api_init(void);

/* Answers req for the API method named `method` (the path after /gateway/).
 * In a cluster the method runs on every node that can hold what it names
 * and the answer covers them all (see docs/CLUSTER.md). */
void gateway_api_handle(http_request *req, const char *method);

#endif
