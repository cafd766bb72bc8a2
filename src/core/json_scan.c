/* json_scan: a validating single-pass JSON scanner (see json_scan.h).
 * A recursive-descent reader over a cursor; every function returns false
 * on the first byte that breaks the grammar. */
#include "core/json_scan.h"

#include <stdint.h>
#include <string.h>

typedef struct cursor {
    const char *p;
    const char *end;
} cursor;

static bool value(cursor *c, int depth, json_span *span);

static void skip_ws(cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static bool is_hex(char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

/* Eight bytes at a time: whether any of them is '"', '\\' or below 0x20,
 * the only bytes a string's scan must look at (the classic SWAR tests:
 * exact about whether such a byte is there, which is all that is asked).
 * A chat event's data is mostly plain text: under route with 1 KiB
 * messages the byte loop alone was 7.7% of chatd's CPU (perf). */
#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull
static bool word_is_plain(uint64_t v)
{
    uint64_t quote = v ^ (ONES * '"'), backslash = v ^ (ONES * '\\');
    uint64_t special =
        ((quote - ONES) & ~quote) | ((backslash - ONES) & ~backslash) | ((v - ONES * 0x20) & ~v);
    return (special & HIGHS) == 0;
}

/* At the opening quote; leaves the cursor after the closing one. */
static bool string(cursor *c, json_span *span)
{
    const char *start = ++c->p;
    bool escaped = false;
    while (c->p < c->end) {
        uint64_t word;
        while (c->end - c->p >= 8 && (memcpy(&word, c->p, 8), word_is_plain(word)))
            c->p += 8;
        if (c->p >= c->end)
            break;
        unsigned char ch = (unsigned char)*c->p;
        if (ch == '"') {
            if (span) {
                span->type = JSON_SPAN_STRING;
                span->p = start;
                span->len = (size_t)(c->p - start);
                span->escaped = escaped;
            }
            c->p++;
            return true;
        }
        if (ch < 0x20)
            return false;
        if (ch == '\\') {
            escaped = true;
            if (++c->p >= c->end)
                return false;
            switch (*c->p) {
            case '"':
            case '\\':
            case '/':
            case 'b':
            case 'f':
            case 'n':
            case 'r':
            case 't':
                break;
            case 'u':
                if (c->end - c->p < 5 || !is_hex(c->p[1]) || !is_hex(c->p[2]) || !is_hex(c->p[3]) ||
                    !is_hex(c->p[4]))
                    return false;
                c->p += 4;
                break;
            default:
                return false;
            }
        }
        c->p++;
    }
    return false;
}

static bool digits(cursor *c)
{
    const char *start = c->p;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
        c->p++;
    return c->p > start;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool number(cursor *c, json_span *span)
{
    const char *start = c->p;
    bool integer = true;
    if (*c->p == '-')
        c->p++;
    if (c->p >= c->end)
        return false;
    if (*c->p == '0')
        c->p++;
    else if (!digits(c))
        return false;
    if (c->p < c->end && *c->p == '.') {
        c->p++;
        integer = false;
        if (!digits(c))
            return false;
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        c->p++;
        integer = false;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-'))
            c->p++;
        if (!digits(c))
            return false;
    }
    if (span) {
        span->type = JSON_SPAN_NUMBER;
        span->p = start;
        span->len = (size_t)(c->p - start);
        span->integer = integer;
    }
    return true;
}

static bool literal(cursor *c, const char *word, enum json_span_type type, json_span *span)
{
    size_t n = strlen(word);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0)
        return false;
    if (span) {
        span->type = type;
        span->p = c->p;
        span->len = n;
    }
    c->p += n;
    return true;
}

/* Members of an object; for the top level, keys/out/nkeys pick members. */
static bool object(cursor *c, int depth, const char *const *keys, json_span *out, size_t nkeys)
{
    c->p++; /* '{' */
    skip_ws(c);
    if (c->p < c->end && *c->p == '}') {
        c->p++;
        return true;
    }
    for (;;) {
        skip_ws(c);
        if (c->p >= c->end || *c->p != '"')
            return false;
        json_span key;
        if (!string(c, &key))
            return false;
        skip_ws(c);
        if (c->p >= c->end || *c->p != ':')
            return false;
        c->p++;
        json_span *target = NULL;
        for (size_t i = 0; i < nkeys; i++)
            if (!key.escaped && strlen(keys[i]) == key.len && memcmp(keys[i], key.p, key.len) == 0)
                target = &out[i];
        if (target)
            memset(target, 0, sizeof(*target));
        if (!value(c, depth + 1, target))
            return false;
        skip_ws(c);
        if (c->p >= c->end)
            return false;
        if (*c->p == '}') {
            c->p++;
            return true;
        }
        if (*c->p != ',')
            return false;
        c->p++;
    }
}

static bool array(cursor *c, int depth)
{
    c->p++; /* '[' */
    skip_ws(c);
    if (c->p < c->end && *c->p == ']') {
        c->p++;
        return true;
    }
    for (;;) {
        if (!value(c, depth + 1, NULL))
            return false;
        skip_ws(c);
        if (c->p >= c->end)
            return false;
        if (*c->p == ']') {
            c->p++;
            return true;
        }
        if (*c->p != ',')
            return false;
        c->p++;
    }
}

/* One value, whitespace before it skipped; its span goes to span if set. */
static bool value(cursor *c, int depth, json_span *span)
{
    if (depth > JSON_SCAN_MAX_DEPTH)
        return false;
    skip_ws(c);
    if (c->p >= c->end)
        return false;
    const char *start = c->p;
    switch (*c->p) {
    case '"':
        return string(c, span);
    case '{':
        if (!object(c, depth, NULL, NULL, 0))
            return false;
        break;
    case '[':
        if (!array(c, depth))
            return false;
        break;
    case 't':
        return literal(c, "true", JSON_SPAN_TRUE, span);
    case 'f':
        return literal(c, "false", JSON_SPAN_FALSE, span);
    case 'n':
        return literal(c, "null", JSON_SPAN_NULL, span);
    default:
        if (*c->p == '-' || (*c->p >= '0' && *c->p <= '9'))
            return number(c, span);
        return false;
    }
    if (span) {
        span->type = *start == '{' ? JSON_SPAN_OBJECT : JSON_SPAN_ARRAY;
        span->p = start;
        span->len = (size_t)(c->p - start);
    }
    return true;
}

int json_scan_object(const char *text, size_t len, const char *const *keys, json_span *out,
                     size_t nkeys)
{
    cursor c = {text, text + len};
    for (size_t i = 0; i < nkeys; i++)
        memset(&out[i], 0, sizeof(out[i]));
    skip_ws(&c);
    if (c.p >= c.end || *c.p != '{')
        return -1;
    if (!object(&c, 1, keys, out, nkeys))
        return -1;
    skip_ws(&c);
    return c.p == c.end ? 0 : -1;
}

bool json_span_equals(const json_span *span, const char *s)
{
    return span->type == JSON_SPAN_STRING && !span->escaped && strlen(s) == span->len &&
           memcmp(span->p, s, span->len) == 0;
}
