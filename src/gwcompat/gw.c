/* gw: start-up, client ids and health of the GatewayWorker compatibility
 * layer (see gw.h). */
#include "gwcompat/gw.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "gateway/registry.h"
#include "gwcompat/gw_internal.h"

int gw_init(server *srv, const config *cfg)
{
    memset(&gw, 0, sizeof(gw));
    gw.srv = srv;
    gw.cfg = cfg;
    gw.gateway_port = (uint16_t)cfg->listen_port;
    gw.max_frame = (uint32_t)cfg->gw_max_frame;
    gw.max_outbuf = (size_t)cfg->gw_max_outbuf;
    gw_inner_handler.max_outbuf = gw.max_outbuf;
    char host[64];
    int port;
    if (cfg->gw_inner[0]) {
        if (gw_split_addr(cfg->gw_inner, host, sizeof(host), &port) < 0) {
            log_error("--gw-inner must be HOST:PORT, got '%s'", cfg->gw_inner);
            return -1;
        }
        struct in_addr a;
        if (inet_pton(AF_INET, host, &a) != 1 || a.s_addr == 0) {
            log_error("--gw-inner: '%s' is not an IPv4 address other than 0.0.0.0: it is "
                      "announced to the Register and written into every client_id, so it must "
                      "be the address others reach this node at",
                      host);
            return -1;
        }
        gw.inner_ip = ntohl(a.s_addr);
        gw.inner_port = (uint16_t)port;
        snprintf(gw.inner_addr, sizeof(gw.inner_addr), "%s:%d", host, port);
        int r = server_listen(srv, host, port, &gw_inner_handler);
        if (r < 0) {
            log_error("cannot listen on --gw-inner %s: %s", gw.inner_addr, uv_strerror(r));
            return -1;
        }
        gw.inner_on = true;
        log_info("gw: GatewayWorker inner protocol on %s (secret %s); client_ids are 20 hex",
                 gw.inner_addr, cfg->gw_secret[0] ? "set" : "none");
    }
    return gw_register_start();
}

void gw_stop(void)
{
    gw_worker_stop();
    gw_register_stop();
}

bool gw_compat_ids(void)
{
    return gw.inner_on;
}

int gw_make_client_id(conn *c)
{
    /* a random connection id, never a counter: knowing your own client_id
     * tells nothing about the others' (32 bits is all the layout has) */
    for (int tries = 0; tries < 64; tries++) {
        uint32_t id;
        if (RAND_bytes((unsigned char *)&id, sizeof(id)) != 1)
            return -1;
        if (id == 0)
            continue;
        gw_client_id_encode(gw.inner_ip, gw.inner_port, id, c->client_id);
        if (!registry_find(c->client_id, GW_CLIENT_ID_LEN))
            return 0;
    }
    return -1;
}

bool gw_client_id_is_remote(const char *client_id, size_t len)
{
    uint32_t ip, id;
    uint16_t port;
    if (!gw.inner_on || !gw_client_id_decode(client_id, len, &ip, &port, &id))
        return false;
    return ip != gw.inner_ip || port != gw.inner_port;
}

json_t *gw_health(void)
{
    if (!gw.inner_on && !gw.cfg->gw_register[0])
        return NULL;
    return json_pack(
        "{s:s?,s:s?,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "inner", gw.inner_on ? gw.inner_addr : NULL,
        "register", gw.cfg->gw_register[0] ? gw.cfg->gw_register : NULL, "workers",
        (json_int_t)gw_worker_count(), "register_addresses",
        (json_int_t)gw_register_address_count(), "frames_in", (json_int_t)gw.frames_in,
        "bad_inputs", (json_int_t)gw.bad_inputs, "slow_closes", (json_int_t)gw.slow_closes,
        "events_out", (json_int_t)gw.events_out, "events_dropped", (json_int_t)gw.events_dropped,
        "clients_paused", (json_int_t)gw.clients_paused);
}
