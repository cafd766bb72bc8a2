/* ws_handshake: RFC 6455 section 4.2 opening handshake checks. */
#include "ws/ws_handshake.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <string.h>
#include <strings.h>

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

bool ws_header_has_token(const char *value, const char *token)
{
    if (!value)
        return false;
    size_t tlen = strlen(token);
    const char *p = value;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *start = p;
        while (*p && *p != ',')
            p++;
        const char *end = p;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if ((size_t)(end - start) == tlen && strncasecmp(start, token, tlen) == 0)
            return true;
    }
    return false;
}

void ws_handshake_accept_key(const char *key, char out[WS_ACCEPT_LEN + 1])
{
    unsigned char digest[SHA_DIGEST_LENGTH];
    /* SHA-1 is what RFC 6455 specifies; OpenSSL 3 marks the low-level API
     * deprecated, so use the one-shot EVP digest instead. */
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned int dlen = 0;
    EVP_DigestInit_ex(md, EVP_sha1(), NULL);
    EVP_DigestUpdate(md, key, strlen(key));
    EVP_DigestUpdate(md, ws_guid, sizeof(ws_guid) - 1);
    EVP_DigestFinal_ex(md, digest, &dlen);
    EVP_MD_CTX_free(md);
    EVP_EncodeBlock((unsigned char *)out, digest, SHA_DIGEST_LENGTH);
    out[WS_ACCEPT_LEN] = '\0';
}

/* A key must be base64 of exactly 16 bytes: 22 characters and "==". */
static bool key_is_valid(const char *key)
{
    if (!key || strlen(key) != 24 || key[22] != '=' || key[23] != '=')
        return false;
    unsigned char raw[24];
    int n = EVP_DecodeBlock(raw, (const unsigned char *)key, 24);
    return n == 18; /* EVP_DecodeBlock counts the padding as zero bytes */
}

int ws_handshake_check(const ws_handshake_request *in, ws_handshake_result *out)
{
    memset(out, 0, sizeof(*out));
    out->status = 400;
    if (!in->is_get) {
        out->reason = "WebSocket handshake must be a GET request";
        return -1;
    }
    if (!ws_header_has_token(in->upgrade, "websocket")) {
        out->reason = "missing 'Upgrade: websocket' header";
        return -1;
    }
    if (!ws_header_has_token(in->connection, "upgrade")) {
        out->reason = "missing 'Connection: Upgrade' header";
        return -1;
    }
    if (!in->version || strcmp(in->version, "13") != 0) {
        out->status = 426;
        out->reason = "unsupported Sec-WebSocket-Version: only 13 is supported";
        return -1;
    }
    if (!key_is_valid(in->key)) {
        out->reason = "missing or malformed Sec-WebSocket-Key (base64 of 16 bytes)";
        return -1;
    }
    if (in->has_body) {
        out->reason = "WebSocket handshake must not have a body";
        return -1;
    }
    out->status = 101;
    out->reason = "Switching Protocols";
    ws_handshake_accept_key(in->key, out->accept);
    return 0;
}
