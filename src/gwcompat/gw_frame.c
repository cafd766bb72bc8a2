/* gw_frame: GatewayWorker's inner-protocol header and client_id layout
 * (see gw_frame.h). */
#include "gwcompat/gw_frame.h"

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

int gw_header_parse(const uint8_t *data, size_t len, uint32_t max_pack, gw_header *h)
{
    if (len < GW_HEADER_LEN)
        return GW_PARSE_NEED_MORE;
    h->pack_len = get32(data);
    h->cmd = data[4];
    h->local_ip = get32(data + 5);
    h->local_port = get16(data + 9);
    h->client_ip = get32(data + 11);
    h->client_port = get16(data + 15);
    h->connection_id = get32(data + 17);
    h->flag = data[21];
    h->gateway_port = get16(data + 22);
    h->ext_len = get32(data + 24);
    if (h->pack_len < GW_HEADER_LEN || h->pack_len > max_pack)
        return GW_PARSE_BAD_LEN;
    /* 64-bit sum: ext_len may be anything up to 2^32 - 1 */
    if ((uint64_t)GW_HEADER_LEN + h->ext_len > h->pack_len)
        return GW_PARSE_BAD_EXT;
    return GW_PARSE_OK;
}

void gw_header_encode(const gw_header *h, uint8_t out[GW_HEADER_LEN])
{
    put32(out, h->pack_len);
    out[4] = h->cmd;
    put32(out + 5, h->local_ip);
    put16(out + 9, h->local_port);
    put32(out + 11, h->client_ip);
    put16(out + 15, h->client_port);
    put32(out + 17, h->connection_id);
    out[21] = h->flag;
    put16(out + 22, h->gateway_port);
    put32(out + 24, h->ext_len);
}

void gw_reply_prefix(uint32_t len, uint8_t out[4])
{
    put32(out, len);
}

void gw_client_id_encode(uint32_t ip, uint16_t port, uint32_t connection_id,
                         char out[GW_CLIENT_ID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t raw[10];
    put32(raw, ip);
    put16(raw + 4, port);
    put32(raw + 6, connection_id);
    for (int i = 0; i < 10; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[GW_CLIENT_ID_LEN] = '\0';
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool gw_client_id_decode(const char *id, size_t len, uint32_t *ip, uint16_t *port,
                         uint32_t *connection_id)
{
    if (len != GW_CLIENT_ID_LEN)
        return false;
    uint8_t raw[10];
    for (int i = 0; i < 10; i++) {
        int hi = hex_value(id[2 * i]), lo = hex_value(id[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        raw[i] = (uint8_t)(hi << 4 | lo);
    }
    *ip = get32(raw);
    *port = get16(raw + 4);
    *connection_id = get32(raw + 6);
    return true;
}
