/* gw_frame: GatewayWorker's inner protocol on the wire ("GatewayProtocol"),
 * as pure functions: the 28-byte frame header, query replies, and the
 * 20-hex client_id layout. No I/O, no allocation; see
 * docs/GATEWAYWORKER.md for the protocol and the commands.
 *
 * A frame is: pack_len (4 bytes, the whole frame), cmd (1), local_ip (4),
 * local_port (2), client_ip (4), client_port (2), connection_id (4), flag
 * (1), gateway_port (2), ext_len (4), all big-endian, then ext_len bytes of
 * ext_data, then the body (pack_len - 28 - ext_len bytes). */
#ifndef CHATD_GW_FRAME_H
#define CHATD_GW_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GW_HEADER_LEN 28
#define GW_CLIENT_ID_LEN 20 /* hex characters */

/* flag bits */
#define GW_FLAG_BODY_RAW 0x01   /* the body is a scalar's bytes, not serialize() output */
#define GW_FLAG_NOT_FRAMED 0x02 /* send the body to the client as it is (pre-framed) */

enum gw_cmd {
    GW_CMD_ON_CONNECT = 1,
    GW_CMD_ON_MESSAGE = 3,
    GW_CMD_ON_CLOSE = 4,
    GW_CMD_SEND_TO_ONE = 5,
    GW_CMD_SEND_TO_ALL = 6,
    GW_CMD_KICK = 7,
    GW_CMD_DESTROY = 8,
    GW_CMD_UPDATE_SESSION = 9,
    GW_CMD_GET_ALL_CLIENT_SESSIONS = 10,
    GW_CMD_IS_ONLINE = 11,
    GW_CMD_BIND_UID = 12,
    GW_CMD_UNBIND_UID = 13,
    GW_CMD_SEND_TO_UID = 14,
    GW_CMD_GET_CLIENT_ID_BY_UID = 15,
    GW_CMD_BATCH_GET_CLIENT_ID_BY_UID = 16,
    GW_CMD_JOIN_GROUP = 20,
    GW_CMD_LEAVE_GROUP = 21,
    GW_CMD_SEND_TO_GROUP = 22,
    GW_CMD_GET_CLIENT_SESSIONS_BY_GROUP = 23,
    GW_CMD_GET_CLIENT_COUNT_BY_GROUP = 24,
    GW_CMD_SELECT = 25,
    GW_CMD_GET_GROUP_ID_LIST = 26,
    GW_CMD_UNGROUP = 27,
    GW_CMD_BATCH_GET_CLIENT_COUNT_BY_GROUP = 28,
    GW_CMD_WORKER_CONNECT = 200,
    GW_CMD_PING = 201,
    GW_CMD_GATEWAY_CLIENT_CONNECT = 202,
    GW_CMD_GET_SESSION_BY_CLIENT_ID = 203,
    GW_CMD_SET_SESSION = 204,
    GW_CMD_ON_WEBSOCKET_CONNECT = 205,
};

typedef struct gw_header {
    uint32_t pack_len;
    uint8_t cmd;
    uint32_t local_ip; /* host byte order, like every field here */
    uint16_t local_port;
    uint32_t client_ip;
    uint16_t client_port;
    uint32_t connection_id;
    uint8_t flag;
    uint16_t gateway_port;
    uint32_t ext_len;
} gw_header;

enum gw_parse_result {
    GW_PARSE_OK = 0,        /* header parsed and consistent */
    GW_PARSE_NEED_MORE = 1, /* fewer than 28 bytes so far */
    GW_PARSE_BAD_LEN = -1,  /* pack_len < 28 or > max_pack */
    GW_PARSE_BAD_EXT = -2,  /* 28 + ext_len > pack_len */
};

/* Reads the header at data[0..len). max_pack bounds pack_len. On GW_PARSE_OK
 * the caller waits for h->pack_len bytes in all before taking the frame; its
 * ext_data starts at GW_HEADER_LEN and its body at GW_HEADER_LEN + ext_len. */
int gw_header_parse(const uint8_t *data, size_t len, uint32_t max_pack, gw_header *h);

/* Writes the 28 header bytes of h into out (h->pack_len as given). */
void gw_header_encode(const gw_header *h, uint8_t out[GW_HEADER_LEN]);

/* Writes the 4-byte big-endian length prefix of a query reply. */
void gw_reply_prefix(uint32_t len, uint8_t out[4]);

/* Writes the 20 lowercase hex characters of (ip, port, connection_id) and a NUL. */
void gw_client_id_encode(uint32_t ip, uint16_t port, uint32_t connection_id,
                         char out[GW_CLIENT_ID_LEN + 1]);
/* Reads a 20-hex client_id (either case). False when len != 20 or a
 * character is not hex. */
bool gw_client_id_decode(const char *id, size_t len, uint32_t *ip, uint16_t *port,
                         uint32_t *connection_id);

#endif
