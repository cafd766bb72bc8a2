/* cluster_msg: parsing and building bus message headers (see cluster_msg.h). */
#include "cluster/cluster_msg.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static bool is_instance(const char *s, size_t len)
{
    if (len != CLUSTER_INSTANCE_LEN)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

static bool is_token(const char *s, size_t len, size_t max)
{
    if (len == 0 || len > max)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] <= ' ' || s[i] > '~')
            return false;
    return true;
}

static bool parse_hex64(const char *s, size_t len, uint64_t *out)
{
    if (len != 16)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
        if (d < 0)
            return false;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return true;
}

typedef struct word {
    const char *p;
    size_t len;
} word;

/* Splits [p, end) at single spaces; more than max words or an empty word
 * (two spaces in a row, a leading or trailing space) is malformed. */
static int split(const char *p, const char *end, word *w, size_t max)
{
    size_t n = 0;
    while (p <= end) {
        const char *sp = memchr(p, ' ', (size_t)(end - p));
        const char *stop = sp ? sp : end;
        if (stop == p || n == max)
            return -1;
        w[n++] = (word){p, (size_t)(stop - p)};
        if (!sp)
            break;
        p = sp + 1;
    }
    return (int)n;
}

static void copy_word(char *out, const word *w)
{
    memcpy(out, w->p, w->len);
    out[w->len] = '\0';
}

const char *cluster_msg_parse(const char *data, size_t len, cluster_msg *out)
{
    memset(out, 0, sizeof(*out));
    const char *nl =
        memchr(data, '\n', len < CLUSTER_MSG_HEADER_MAX ? len : CLUSTER_MSG_HEADER_MAX);
    if (!nl)
        return "no header line";
    word w[5];
    int n = split(data, nl, w, 5);
    if (n < 1 || w[0].len != 1)
        return "unknown kind";
    out->kind = w[0].p[0];
    out->body = nl + 1;
    out->body_len = len - (size_t)(nl + 1 - data);
    switch (out->kind) {
    case 'P':
        if (n != 3 || !is_instance(w[1].p, w[1].len) ||
            !is_token(w[2].p, w[2].len, CLUSTER_EXCEPT_MAX))
            return "malformed push header";
        copy_word(out->origin, &w[1]);
        if (!(w[2].len == 1 && w[2].p[0] == '-'))
            copy_word(out->except, &w[2]);
        return NULL;
    case 'Q':
        if (n != 5 || !is_instance(w[1].p, w[1].len) || w[2].len != 2 || !is_token(w[2].p, 2, 2) ||
            !parse_hex64(w[3].p, w[3].len, &out->reqid) ||
            !is_token(w[4].p, w[4].len, CLUSTER_METHOD_MAX))
            return "malformed request header";
        copy_word(out->origin, &w[1]);
        copy_word(out->tag, &w[2]);
        copy_word(out->method, &w[4]);
        return NULL;
    case 'R':
        if (n != 4 || !is_instance(w[1].p, w[1].len) || !is_instance(w[2].p, w[2].len) ||
            !parse_hex64(w[3].p, w[3].len, &out->reqid))
            return "malformed answer header";
        copy_word(out->to, &w[1]);
        copy_word(out->origin, &w[2]);
        return NULL;
    default:
        return "unknown kind";
    }
}

static int fits(int n, size_t cap)
{
    return (n > 0 && (size_t)n < cap) ? n : -1;
}

int cluster_msg_push_header(char *out, size_t cap, const char *origin, const char *except)
{
    if (!is_instance(origin, strlen(origin)) ||
        (except && !is_token(except, strlen(except), CLUSTER_EXCEPT_MAX)))
        return -1;
    return fits(snprintf(out, cap, "P %s %s\n", origin, except ? except : "-"), cap);
}

int cluster_msg_request_header(char *out, size_t cap, const char *origin, const char *tag,
                               uint64_t reqid, const char *method)
{
    if (!is_instance(origin, strlen(origin)) || strlen(tag) != 2 || !is_token(tag, 2, 2) ||
        !is_token(method, strlen(method), CLUSTER_METHOD_MAX))
        return -1;
    return fits(snprintf(out, cap, "Q %s %s %016" PRIx64 " %s\n", origin, tag, reqid, method), cap);
}

int cluster_msg_answer_header(char *out, size_t cap, const char *to, const char *from,
                              uint64_t reqid)
{
    if (!is_instance(to, strlen(to)) || !is_instance(from, strlen(from)))
        return -1;
    return fits(snprintf(out, cap, "R %s %s %016" PRIx64 "\n", to, from, reqid), cap);
}
