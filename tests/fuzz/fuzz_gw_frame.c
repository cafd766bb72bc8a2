/* libFuzzer target for gw_frame: the header parser reads nothing beyond the
 * 28 bytes, its verdict agrees with the lengths it reports, and an accepted
 * header encodes back to the same bytes; client_id decoding of any 20 bytes
 * either fails or re-encodes to the same id in lower case. */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gwcompat/gw_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
    if (!ok)
        abort();
}

/* field by field: the struct has padding bytes */
static bool header_equal(const gw_header *a, const gw_header *b)
{
    return a->pack_len == b->pack_len && a->cmd == b->cmd && a->local_ip == b->local_ip &&
           a->local_port == b->local_port && a->client_ip == b->client_ip &&
           a->client_port == b->client_port && a->connection_id == b->connection_id &&
           a->flag == b->flag && a->gateway_port == b->gateway_port && a->ext_len == b->ext_len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint32_t maxes[] = {0, 27, 28, 64, 2097152, 0xffffffffu};
    uint8_t *copy = malloc(size ? size : 1); /* exact size: ASan sees any overread */
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    for (size_t i = 0; i < sizeof maxes / sizeof maxes[0]; i++) {
        gw_header h;
        int r = gw_header_parse(copy, size, maxes[i], &h);
        if (size < GW_HEADER_LEN) {
            check(r == GW_PARSE_NEED_MORE);
            continue;
        }
        if (r == GW_PARSE_BAD_LEN) {
            check(h.pack_len < GW_HEADER_LEN || h.pack_len > maxes[i]);
            continue;
        }
        check(h.pack_len >= GW_HEADER_LEN && h.pack_len <= maxes[i]);
        if (r == GW_PARSE_BAD_EXT) {
            check(h.ext_len > h.pack_len - GW_HEADER_LEN);
            continue;
        }
        check(r == GW_PARSE_OK);
        check(h.ext_len <= h.pack_len - GW_HEADER_LEN);
        uint8_t again[GW_HEADER_LEN];
        gw_header_encode(&h, again);
        check(memcmp(again, copy, GW_HEADER_LEN) == 0);
        gw_header h2;
        check(gw_header_parse(again, sizeof again, maxes[i], &h2) == GW_PARSE_OK);
        check(header_equal(&h, &h2));
    }

    /* the same bytes as a client_id */
    uint32_t ip, conn;
    uint16_t port;
    size_t n = size < GW_CLIENT_ID_LEN + 2 ? size : GW_CLIENT_ID_LEN + 2;
    bool ok = gw_client_id_decode((const char *)copy, n, &ip, &port, &conn);
    check(!ok || n == GW_CLIENT_ID_LEN);
    if (ok) {
        char id[GW_CLIENT_ID_LEN + 1];
        gw_client_id_encode(ip, port, conn, id);
        for (size_t i = 0; i < GW_CLIENT_ID_LEN; i++)
            check(id[i] == tolower(copy[i]));
    }
    uint8_t prefix[4];
    gw_reply_prefix((uint32_t)size, prefix);
    check(((uint32_t)prefix[0] << 24 | (uint32_t)prefix[1] << 16 | (uint32_t)prefix[2] << 8 |
           prefix[3]) == (uint32_t)size);
    free(copy);
    return 0;
}
