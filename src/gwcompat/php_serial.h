/* php_serial: the subset of PHP's serialize() format that GatewayWorker's
 * replies and sessions use, as pure functions (no I/O; no allocation except
 * the output buffer and the JSON trees).
 *
 *   N;  b:0; b:1;  i:<int64>;  d:<float>;  s:<bytes>:"<bytes>";
 *   a:<count>:{<key><value>...}   keys are i: or s: tokens
 *   O:<len>:"<class>":<count>:{<key><value>...}   (read and kept as is, never built)
 *
 * A PHP array key that is a canonical decimal integer string ("7", "-3", not
 * "07", "+1", "1.0", within int64) is an integer key: writers emit i: for
 * such keys, and readers treat i:7 and s:1:"7" as the same key.
 *
 * Reading never trusts the input: every length is checked against the bytes
 * that remain, counts against PHP_SERIAL_MAX_ITEMS, nesting against
 * PHP_SERIAL_MAX_DEPTH; references (r:, R:), C:, E: and anything else are
 * refused. */
#ifndef CHATD_PHP_SERIAL_H
#define CHATD_PHP_SERIAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PHP_SERIAL_MAX_DEPTH 32
#define PHP_SERIAL_MAX_ITEMS 1000000 /* elements of one array, as declared */

/* ---- writing ----------------------------------------------------------- */

/* A growable output buffer. Zero-initialise it; free data with free(). After
 * an allocation failure every later write is ignored and oom is set. */
typedef struct php_buf {
    char *data;
    size_t len, cap;
    bool oom;
} php_buf;

void php_put_raw(php_buf *b, const void *data, size_t len); /* bytes as they are */
void php_put_null(php_buf *b);                              /* N; */
void php_put_bool(php_buf *b, bool v);                      /* b:1; */
void php_put_int(php_buf *b, int64_t v);                    /* i:42; */
/* d:<v>; with PHP's serialize_precision -1 spelling (shortest text that reads
 * back to v: 0.5, 0.1, 1.0E+25, -0, INF, -INF, NAN) */
void php_put_double(php_buf *b, double v);
void php_put_string(php_buf *b, const char *s, size_t len); /* s:5:"hello"; */
/* A key: i:<n>; when s is a canonical decimal integer, else s:..:"..";. */
void php_put_key(php_buf *b, const char *s, size_t len);
void php_put_array_open(php_buf *b, size_t count); /* a:<count>:{ */
void php_put_array_close(php_buf *b);              /* } */

/* ---- reading ----------------------------------------------------------- */

typedef enum php_type {
    PHP_NULL,
    PHP_BOOL,
    PHP_INT,
    PHP_DOUBLE,
    PHP_STRING,
    PHP_ARRAY,
    PHP_OBJECT,
} php_type;

/* One value inside a buffer; every pointer points into that buffer. */
typedef struct php_value {
    php_type type;
    const char *raw; /* the whole token, e.g. `s:5:"hello";` or `a:1:{...}` */
    size_t raw_len;
    union {
        bool b;
        int64_t i;
        double d;
        struct {
            const char *p; /* the bytes between the quotes */
            size_t len;
        } s;
        struct {
            size_t count;     /* elements (key/value pairs) */
            const char *body; /* after the '{': count key/value tokens, then '}' */
        } a;                  /* PHP_ARRAY and PHP_OBJECT (properties) */
    };
} php_value;

/* Reads exactly one value spanning all of data[0..len), validating it
 * fully (nested values too). Returns 0, or -1 on anything malformed or
 * trailing bytes. */
int php_serial_parse(const char *data, size_t len, php_value *out);

/* Iterates an array or object value that php_serial_parse accepted. */
typedef struct php_iter {
    const char *p, *end;
    size_t left;
} php_iter;
void php_iter_init(php_iter *it, const php_value *array);
/* Next key/value pair: true while there is one (key is PHP_INT or PHP_STRING). */
bool php_iter_next(php_iter *it, php_value *key, php_value *val);

/* Writes the key's canonical text (an integer key as decimal, a string
 * key's bytes; "7" for both i:7 and s:1:"7") for comparing keys: returns the
 * length, or -1 when it does not fit cap. */
int php_key_text(const php_value *key, char *out, size_t cap);

/* ---- operations -------------------------------------------------------- */

/* PHP's array_replace_recursive(base, repl) on two serialized arrays,
 * written to out: for each key of repl, when both base and repl hold an
 * array there, merge them recursively, else repl's value replaces (or is
 * appended, in repl's order after base's keys). Keys and scalar values are
 * copied byte for byte from their token. When base is empty (len 0), not an
 * array, or `a:0:{}`, out gets repl as it is. Returns 0, or -1 when repl is
 * not a valid serialized array or base is not valid serialized input. */
int php_serial_merge(const char *base, size_t base_len, const char *repl, size_t repl_len,
                     php_buf *out);

/* A serialized value as JSON (new reference), or NULL when it cannot be: an
 * array whose keys are 0, 1, ... n-1 in order becomes a JSON array, any
 * other array or object a JSON object (keys as text); strings must be UTF-8
 * without NUL; INF and NAN cannot be JSON. */
json_t *php_serial_to_json(const char *data, size_t len);

/* A JSON value serialized (objects as arrays with php_put_key keys, arrays as
 * lists 0..n-1, integers i:, reals d:, strings s:, true/false b:, null N;).
 * Returns 0, or -1 on OOM. */
int php_serial_from_json(const json_t *value, php_buf *out);

#endif
