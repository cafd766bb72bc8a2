/* httpc: pipelined keep-alive HTTP/1.1 client; see httpc.h. */
#include "httpc.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void on_connect(bconn *c, int status)
{
    httpc_conn *hc = (httpc_conn *)c;
    if (status < 0 && !hc->pool->failed) {
        hc->pool->failed = true;
        snprintf(hc->pool->error, sizeof hc->pool->error, "cannot connect to the API at %s: %s",
                 hc->pool->t.hostport, uv_strerror(status));
    }
}

static void fail_pending(httpc_conn *hc, int status)
{
    while (hc->q_len) {
        httpc_pending p = hc->q[hc->q_head];
        hc->q_head = (hc->q_head + 1) % hc->q_cap;
        hc->q_len--;
        hc->pool->inflight--;
        p.cb(p.ctx, status, "", 0);
    }
}

static void on_end(bconn *c, int status)
{
    httpc_conn *hc = (httpc_conn *)c;
    if (!hc->pool->failed && status != 0) {
        hc->pool->failed = true;
        snprintf(hc->pool->error, sizeof hc->pool->error, "API connection to %s lost: %s",
                 hc->pool->t.hostport, uv_strerror(status));
    }
    fail_pending(hc, status ? status : UV_ECANCELED);
}

static size_t on_read(bconn *c, char *data, size_t len)
{
    httpc_conn *hc = (httpc_conn *)c;
    size_t pos = 0;
    while (pos < len) {
        char *d = data + pos;
        size_t avail = len - pos;
        char *end = memmem(d, avail, "\r\n\r\n", 4);
        if (!end)
            break;
        size_t head = (size_t)(end - d) + 4;
        if (avail < 12 || memcmp(d, "HTTP/1.", 7) != 0) {
            bconn_close(c, UV_EPROTO, true);
            return len;
        }
        int status = atoi(d + 9);
        long clen = -1;
        const char *hend = d + head;
        const char *p = memchr(d, '\n', head);
        while (p && p + 1 < hend) {
            const char *line = p + 1;
            size_t rem = (size_t)(hend - line);
            if (rem > 15 && strncasecmp(line, "content-length:", 15) == 0) {
                clen = strtol(line + 15, NULL, 10);
            } else if (rem > 18 && strncasecmp(line, "transfer-encoding:", 18) == 0) {
                fprintf(stderr, "chatd-bench: chunked API responses are not supported\n");
                bconn_close(c, UV_EPROTO, true);
                return len;
            }
            p = memchr(line, '\n', rem);
        }
        if (clen < 0)
            clen = 0;
        if (avail < head + (size_t)clen)
            break;
        pos += head + (size_t)clen;
        if (status == 100)
            continue;
        if (hc->q_len == 0) {
            bconn_close(c, UV_EPROTO, true);
            return len;
        }
        httpc_pending pend = hc->q[hc->q_head];
        hc->q_head = (hc->q_head + 1) % hc->q_cap;
        hc->q_len--;
        hc->pool->inflight--;
        pend.cb(pend.ctx, status, d + head, (size_t)clen);
        if (c->state != BCONN_OPEN)
            return len;
    }
    return pos;
}

int httpc_init(httpc *h, const char *base_url, const char *secret, int nconns)
{
    memset(h, 0, sizeof *h);
    if (target_parse(base_url, &h->t) != 0)
        return -1;
    if (secret && *secret)
        snprintf(h->auth, sizeof h->auth, "Authorization: Bearer %s\r\n", secret);
    h->nconns = nconns > 0 ? nconns : 1;
    h->conns = calloc((size_t)h->nconns, sizeof *h->conns);
    if (!h->conns)
        fail("out of memory");
    for (int i = 0; i < h->nconns; i++) {
        httpc_conn *hc = &h->conns[i];
        bconn_init(&hc->c);
        hc->pool = h;
        hc->c.on_connect = on_connect;
        hc->c.on_read = on_read;
        hc->c.on_end = on_end;
        hc->c.tls_host = h->t.tls ? h->t.host : NULL;
        hc->q_cap = 64;
        hc->q = malloc(hc->q_cap * sizeof *hc->q);
        if (!hc->q)
            fail("out of memory");
        int rc = bconn_connect(&hc->c, &h->t.addr, NULL);
        if (rc < 0) {
            fprintf(stderr, "chatd-bench: API connection: %s\n", uv_strerror(rc));
            return -1;
        }
    }
    return 0;
}

static void push(httpc_conn *hc, httpc_cb cb, void *ctx)
{
    if (hc->q_len == hc->q_cap) {
        httpc_pending *q = malloc(2 * hc->q_cap * sizeof *q);
        if (!q)
            fail("out of memory");
        for (size_t i = 0; i < hc->q_len; i++)
            q[i] = hc->q[(hc->q_head + i) % hc->q_cap];
        free(hc->q);
        hc->q = q;
        hc->q_head = 0;
        hc->q_cap *= 2;
    }
    hc->q[(hc->q_head + hc->q_len) % hc->q_cap] = (httpc_pending){cb, ctx};
    hc->q_len++;
    hc->pool->inflight++;
}

size_t httpc_head(const httpc *h, char *dst, size_t cap, const char *path, size_t len)
{
    int n = snprintf(dst, cap,
                     "POST %s HTTP/1.1\r\nHost: %s\r\n%sContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     path, h->t.hostport, h->auth, len);
    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

void httpc_raw(httpc *h, int i, const char *req, size_t len, httpc_cb cb, void *ctx)
{
    httpc_conn *hc = &h->conns[i];
    if (hc->c.state != BCONN_OPEN && hc->c.state != BCONN_CONNECTING) {
        cb(ctx, UV_ENOTCONN, "", 0);
        return;
    }
    bconn_append(&hc->c, req, len);
    push(hc, cb, ctx);
    bconn_flush(&hc->c);
}

static void post(httpc *h, const char *path, const char *body, size_t len, const char *auth,
                 httpc_cb cb, void *ctx)
{
    int best = 0;
    for (int i = 1; i < h->nconns; i++)
        if (h->conns[i].q_len < h->conns[best].q_len)
            best = i;
    httpc_conn *hc = &h->conns[best];
    if (hc->c.state != BCONN_OPEN && hc->c.state != BCONN_CONNECTING) {
        cb(ctx, UV_ENOTCONN, "", 0);
        return;
    }
    char head[1024];
    int hl = snprintf(head, sizeof head,
                      "POST %s HTTP/1.1\r\nHost: %s\r\n%sContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\n\r\n",
                      path, h->t.hostport, auth, len);
    if (hl < 0 || (size_t)hl >= sizeof head)
        fail("HTTP request head too long");
    bconn_append(&hc->c, head, (size_t)hl);
    bconn_append(&hc->c, body, len);
    push(hc, cb, ctx);
    bconn_flush(&hc->c);
}

void httpc_post(httpc *h, const char *path, const char *body, size_t len, httpc_cb cb, void *ctx)
{
    post(h, path, body, len, h->auth, cb, ctx);
}

void httpc_post_as(httpc *h, const char *path, const char *body, size_t len, const char *token,
                   httpc_cb cb, void *ctx)
{
    char auth[300];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", token);
    post(h, path, body, len, auth, cb, ctx);
}

void httpc_close(httpc *h)
{
    for (int i = 0; i < h->nconns; i++)
        bconn_close(&h->conns[i].c, 0, false);
}

int api_ok(int status, const char *body, size_t len, char *msg, size_t msgcap)
{
    if (status < 0) {
        snprintf(msg, msgcap, "%s", uv_strerror(status));
        return 0;
    }
    json_error_t err;
    json_t *j = json_loadb(body, len, 0, &err);
    int ok = status == 200 && j && json_is_true(json_object_get(j, "status"));
    if (!ok) {
        const char *m = j ? json_string_value(json_object_get(j, "msg")) : NULL;
        snprintf(msg, msgcap, "HTTP %d: %s", status, m ? m : (len ? "(not an API envelope)" : ""));
    }
    json_decref(j);
    return ok;
}
