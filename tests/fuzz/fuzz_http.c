/* libFuzzer target for the HTTP request path: bytes from the network go
 * through the real HTTP connection handler (http-parser callbacks, header
 * and body limits, pipelining, the WebSocket upgrade and frame handling
 * after it) on a connection that is never attached to a socket. Responses
 * are queued, never written. The input is fed in pieces whose sizes come
 * from the input itself, so requests split across reads are covered. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "gateway/gateway.h"
#include "http/http.h"
#include "http/static_files.h"
#include "net/server.h"
#include "ws/ws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static server srv;
static config cfg;

static void fuzz_route(http_request *req)
{
    if (strcmp(req->path, "/ws") == 0) {
        ws_upgrade(req, false);
    } else if (strcmp(req->path, "/echo") == 0) {
        ws_upgrade(req, true);
    } else if (strcmp(req->path, "/json") == 0) {
        http_respond_ok(req, json_string(req->body ? req->body : ""));
    } else {
        char out[256];
        if (static_safe_path(req->path, out, sizeof(out)) == 0)
            http_respond(req, 200, "", "text/plain", out, strlen(out));
        else
            http_respond_error(req, 400, "bad_path", "bad path");
    }
}

static void init_once(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    char *argv[] = {"fuzz", "--max-header-size", "1024", "--max-body",
                    "2048", "--max-message",     "4096", NULL};
    config_load(&cfg, 7, argv);
    srv.loop = uv_default_loop();
    srv.cfg = &cfg;
    srv.loop->data = &srv;
    srv.start_ms = uv_now(srv.loop);
    gateway_init();
    http_set_request_handler(fuzz_route);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init_once();
    conn *c = calloc(1, sizeof(*c));
    if (!c)
        return 0;
    c->srv = &srv;
    c->fd = -1; /* no socket: conn_close closes nothing */
    c->handler = &http_conn_handler;
    srv.conns_open++;
    c->handler->on_open(c);
    /* the first byte picks the piece size; the server's own carry-over
     * logic is reproduced: unconsumed bytes are prepended to the next read */
    size_t piece = size ? (size_t)data[0] % 64 + 1 : 1;
    uint8_t *pending = NULL;
    size_t pending_len = 0;
    for (size_t off = size ? 1 : 0; off < size && !(c->flags & CONN_CLOSING);) {
        size_t n = size - off < piece ? size - off : piece;
        uint8_t *buf = malloc(pending_len + n + 1);
        if (!buf)
            break;
        if (pending_len)
            memcpy(buf, pending, pending_len);
        memcpy(buf + pending_len, data + off, n);
        size_t len = pending_len + n;
        off += n;
        free(pending);
        pending = NULL;
        pending_len = 0;
        if (c->flags & CONN_READ_PAUSED) { /* an async answer would be pending */
            free(buf);
            break;
        }
        size_t used = c->handler->on_read(c, buf, len);
        if (used < len && !(c->flags & CONN_CLOSING)) {
            pending_len = len - used;
            pending = malloc(pending_len);
            if (pending)
                memcpy(pending, buf + used, pending_len);
            else
                pending_len = 0;
        }
        free(buf);
    }
    free(pending);
    if (!(c->flags & CONN_CLOSING))
        conn_close(c);
    srv.dirty = NULL; /* queued output is never flushed here */
    uv_run(srv.loop, UV_RUN_NOWAIT);
    server_free_closed(&srv); /* what the loop's check phase does */
    return 0;
}
