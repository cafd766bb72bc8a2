/* gateway_api: POST /gateway/<method>, the server API for app backends
 * (GatewayWorker's Gateway::sendToUid family over HTTP). Checks the bearer
 * secret in constant time; with no --api-secret the API is off (403). */
#ifndef CHATD_GATEWAY_API_H
#define CHATD_GATEWAY_API_H

#include "http/http.h"

/* Registers the methods as cluster request handlers (call once at start). */
void gateway_api_init(void);

/* Answers req for the API method named `method` (the path after /gateway/).
 * In a cluster the method runs on every node that can hold what it names
 * and the answer covers them all (see docs/CLUSTER.md). */
void gateway_api_handle(http_request *req, const char *method);

#endif
