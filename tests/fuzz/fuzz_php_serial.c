/* libFuzzer target for php_serial: the reader never reads outside the input;
 * a value it accepts spans the whole input, iterates completely, converts to
 * JSON or refuses cleanly, and merges with itself and with a fixed array
 * into output that parses again; JSON conversions round-trip. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gwcompat/php_serial.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
    if (!ok)
        abort();
}

/* Walks every nested element; returns the number of values seen. */
static size_t walk(const php_value *v, const char *lo, const char *hi, int depth)
{
    check(v->raw >= lo && v->raw_len <= (size_t)(hi - v->raw));
    check(depth <= PHP_SERIAL_MAX_DEPTH);
    if (v->type == PHP_STRING)
        check(v->s.p > v->raw && v->s.len < v->raw_len);
    if (v->type != PHP_ARRAY && v->type != PHP_OBJECT)
        return 1;
    php_iter it;
    php_value k, e;
    size_t n = 1, pairs = 0;
    char text[64];
    php_iter_init(&it, v);
    while (php_iter_next(&it, &k, &e)) {
        check(k.type == PHP_INT || k.type == PHP_STRING);
        int t = php_key_text(&k, text, sizeof text);
        check(t >= -1 && t <= (int)sizeof text);
        check(k.raw >= v->raw && e.raw == k.raw + k.raw_len);
        n += walk(&e, v->raw, v->raw + v->raw_len, depth + 1);
        pairs++;
    }
    check(pairs == v->a.count);
    return n;
}

static void merge_check(const char *base, size_t base_len, const char *repl, size_t repl_len)
{
    php_buf out = {0};
    int rc = php_serial_merge(base, base_len, repl, repl_len, &out);
    if (rc == 0 && !out.oom) {
        php_value m;
        check(php_serial_parse(out.data, out.len, &m) == 0);
        check(m.type == PHP_ARRAY);
    }
    free(out.data);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char fixed[] = "a:3:{s:1:\"a\";a:1:{i:0;i:1;}i:7;s:1:\"x\";s:1:\"k\";N;}";
    char *text = malloc(size ? size : 1); /* exact size: ASan sees any overread */
    if (!text)
        return 0;
    memcpy(text, data, size);
    php_value v;
    if (php_serial_parse(text, size, &v) != 0) {
        check(php_serial_to_json(text, size) == NULL);
        /* a refused base or repl refuses the merge, never crashes */
        php_buf out = {0};
        check(php_serial_merge(fixed, sizeof fixed - 1, text, size, &out) == -1);
        if (size)
            check(php_serial_merge(text, size, fixed, sizeof fixed - 1, &out) == -1);
        free(out.data);
        free(text);
        return 0;
    }
    check(v.raw == text && v.raw_len == size);
    walk(&v, text, text + size, 0);

    /* JSON and back is a fixpoint after one step: from_json(to_json(x)) reads
     * back to the same JSON, which serializes to the same bytes (one step,
     * not zero: duplicate keys in x collapse into one JSON member) */
    json_t *j = php_serial_to_json(text, size);
    if (j) {
        php_buf ser = {0}, ser2 = {0};
        check(php_serial_from_json(j, &ser) == 0);
        json_t *j2 = php_serial_to_json(ser.data, ser.len);
        check(j2 != NULL);
        check(php_serial_from_json(j2, &ser2) == 0);
        check(ser.len == ser2.len && memcmp(ser.data, ser2.data, ser.len) == 0);
        json_decref(j2);
        free(ser.data);
        free(ser2.data);
        json_decref(j);
    }

    if (v.type == PHP_ARRAY) {
        merge_check(text, size, text, size);
        merge_check(fixed, sizeof fixed - 1, text, size);
    }
    merge_check(text, size, fixed, sizeof fixed - 1);
    free(text);
    return 0;
}
