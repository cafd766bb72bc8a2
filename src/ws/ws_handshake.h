/* ws_handshake: the server side of the RFC 6455 opening handshake, as pure
 * functions over header values (the HTTP layer supplies them), so every
 * refusal can be unit-tested without a socket. */
#ifndef CHATD_WS_HANDSHAKE_H
#define CHATD_WS_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>

/* Length of a Sec-WebSocket-Accept value: base64 of a 20-byte SHA-1. */
#define WS_ACCEPT_LEN 28

typedef struct ws_handshake_request {
    bool is_get;
    bool has_body;
    const char *upgrade; /* header values, NULL when absent */
    const char *connection;
    const char *key;
    const char *version;
} ws_handshake_request;

typedef struct ws_handshake_result {
    int status;         /* 101 to accept, else 400 or 426 */
    const char *reason; /* why it was refused (static text) */
    char accept[WS_ACCEPT_LEN + 1];
} ws_handshake_result;

/* Checks the request and, when it is acceptable, computes the accept key.
 * Returns 0 when status is 101, -1 otherwise. */
int ws_handshake_check(const ws_handshake_request *in, ws_handshake_result *out);

/* Sec-WebSocket-Accept for a key: base64(SHA-1(key + RFC 6455 GUID)). */
void ws_handshake_accept_key(const char *key, char out[WS_ACCEPT_LEN + 1]);

/* True when a comma-separated header value contains token (case-insensitive). */
bool ws_header_has_token(const char *value, const char *token);

#endif
