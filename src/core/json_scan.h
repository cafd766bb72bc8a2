/* json_scan: validate a JSON object and find a few top-level members
 * without building a tree.
 *
 * Why not jansson here: the transient-event path ({"type":"event",...})
 * only needs three members and forwards "data" untouched. Profiling the
 * route benchmark showed 74% of chatd's time in jansson parsing "data" and
 * serializing it again; scanning once and copying the raw bytes of "data"
 * into the outgoing frame removes both. Every other message still goes
 * through jansson.
 *
 * The scanner accepts exactly RFC 8259 JSON (strings without raw control
 * characters and with valid escapes, the number grammar, the three
 * literals), nested at most JSON_SCAN_MAX_DEPTH deep. It does not check
 * UTF-8: WebSocket text is validated before it gets here. Pure functions. */
#ifndef CHATD_JSON_SCAN_H
#define CHATD_JSON_SCAN_H

#include <stdbool.h>
#include <stddef.h>

#define JSON_SCAN_MAX_DEPTH 64

enum json_span_type {
    JSON_SPAN_ABSENT = 0,
    JSON_SPAN_STRING, /* p/len: the characters between the quotes, still escaped */
    JSON_SPAN_NUMBER,
    JSON_SPAN_OBJECT,
    JSON_SPAN_ARRAY,
    JSON_SPAN_TRUE,
    JSON_SPAN_FALSE,
    JSON_SPAN_NULL,
};

typedef struct json_span {
    enum json_span_type type;
    const char *p; /* the value's text (a string's without its quotes) */
    size_t len;
    bool escaped; /* a string containing a backslash escape */
    bool integer; /* a number without fraction or exponent */
} json_span;

/* Checks that text[0..len) is one JSON object, optionally surrounded by
 * whitespace. For each keys[i] (compared with the raw key text, so a key
 * written with escapes never matches), out[i] receives the span of that
 * member's value, or JSON_SPAN_ABSENT; the last duplicate wins.
 * Returns 0, or -1 when the text is not a valid JSON object. */
int json_scan_object(const char *text, size_t len, const char *const *keys, json_span *out,
                     size_t nkeys);

/* True when the span is a string equal to s (unescaped strings only). */
bool json_span_equals(const json_span *span, const char *s);

#endif
