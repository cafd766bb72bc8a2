/* php_serial: PHP serialize() writer, validating reader, array iteration,
 * array_replace_recursive on serialized arrays, and JSON conversions. The
 * grammar accepted is PHP 8's unserialize() grammar for the types listed in
 * php_serial.h (so `i:+5;`, `d:.5;` and `s:01:"a";` read as they do in PHP),
 * with trailing bytes, references and custom/enum tokens refused. */
#include "gwcompat/php_serial.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- writing ----------------------------------------------------------- */

static bool buf_reserve(php_buf *b, size_t extra)
{
    if (b->oom)
        return false;
    if (extra <= b->cap - b->len)
        return true;
    if (extra > SIZE_MAX - b->len) {
        b->oom = true;
        return false;
    }
    size_t need = b->len + extra;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = realloc(b->data, cap);
    if (!p) {
        b->oom = true;
        return false;
    }
    b->data = p;
    b->cap = cap;
    return true;
}

void php_put_raw(php_buf *b, const void *data, size_t len)
{
    if (!len || !buf_reserve(b, len))
        return;
    memcpy(b->data + b->len, data, len);
    b->len += len;
}

static void put_str(php_buf *b, const char *s)
{
    php_put_raw(b, s, strlen(s));
}

void php_put_null(php_buf *b)
{
    put_str(b, "N;");
}

void php_put_bool(php_buf *b, bool v)
{
    put_str(b, v ? "b:1;" : "b:0;");
}

void php_put_int(php_buf *b, int64_t v)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "i:%" PRId64 ";", v);
    php_put_raw(b, tmp, (size_t)n);
}

/* Steps the decimal mantissa digits d[0..n) (one digit before the point)
 * by one unit in the last place, up or down; *exp10 follows a carry out of
 * the first digit or a borrow into it. */
static void step_digits(char *d, size_t n, int *exp10, bool up)
{
    size_t i = n;
    while (i-- > 0) {
        if (up && d[i] != '9') {
            d[i]++;
            return;
        }
        if (!up && d[i] != '0') {
            d[i]--;
            if (i == 0 && d[0] == '0') { /* 1.00 -> 0.99: renormalise to 9.90 */
                memmove(d, d + 1, n - 1);
                d[n - 1] = '0';
                (*exp10)--;
            }
            return;
        }
        d[i] = up ? '0' : '9';
    }
    if (up) { /* 9.99 -> 10.0: 1.00 and one more in the exponent */
        d[0] = '1';
        (*exp10)++;
    }
}

/* The shortest decimal digits that read back to v (finite, non-zero), and
 * among those the nearest to v, as dtoa mode 0 gives PHP: digits without
 * sign, dot or trailing zeros, and the position of the decimal point (value
 * = 0.DIGITS * 10^decpt). At each length the correctly rounded candidate is
 * tried first; near a power of two the rounding interval is lopsided, so the
 * neighbour on the other side of v can read back when the nearest does
 * not. */
static void shortest_digits(double v, char digits[20], int *decpt)
{
    char tmp[48], d[20];
    size_t n = 0;
    int exp10 = 0;
    double a = fabs(v);
    for (int prec = 0; prec <= 16; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec, a);
        n = 0;
        const char *p = tmp;
        for (; *p != 'e'; p++)
            if (*p != '.')
                d[n++] = *p;
        exp10 = atoi(p + 1);
        double got = strtod(tmp, NULL);
        if (got == a || prec == 16)
            break;
        step_digits(d, n, &exp10, got < a);
        snprintf(tmp, sizeof tmp, "%c.%.*se%d", d[0], (int)n - 1, d + 1, exp10);
        if (strtod(tmp, NULL) == a)
            break;
    }
    while (n > 1 && d[n - 1] == '0')
        n--;
    memcpy(digits, d, n);
    digits[n] = '\0';
    *decpt = exp10 + 1;
}

/* PHP's zend_gcvt with serialize_precision -1: exponential form when the
 * decimal point is more than 17 digits right or more than 3 zeros left of
 * the digits, `1.0E+25` for a lone digit, no exponent padding. */
void php_put_double(php_buf *b, double v)
{
    if (isnan(v)) {
        put_str(b, "d:NAN;");
        return;
    }
    if (isinf(v)) {
        put_str(b, v > 0 ? "d:INF;" : "d:-INF;");
        return;
    }
    char digits[20], out[64];
    int decpt;
    size_t n = 0;
    if (v == 0) {
        digits[0] = '0';
        digits[1] = '\0';
        decpt = 1;
    } else {
        shortest_digits(v, digits, &decpt);
    }
    out[n++] = 'd';
    out[n++] = ':';
    if (signbit(v))
        out[n++] = '-';
    size_t nd = strlen(digits);
    if (decpt < 0 ? decpt < -3 : decpt > 17) {
        out[n++] = digits[0];
        out[n++] = '.';
        if (nd == 1)
            out[n++] = '0';
        for (size_t i = 1; i < nd; i++)
            out[n++] = digits[i];
        n += (size_t)snprintf(out + n, sizeof out - n, "E%c%d", decpt - 1 < 0 ? '-' : '+',
                              abs(decpt - 1));
    } else if (decpt <= 0) {
        out[n++] = '0';
        out[n++] = '.';
        for (int i = decpt; i < 0; i++)
            out[n++] = '0';
        for (size_t i = 0; i < nd; i++)
            out[n++] = digits[i];
    } else {
        for (size_t i = 0; i < (size_t)decpt; i++)
            out[n++] = i < nd ? digits[i] : '0';
        if (nd > (size_t)decpt) {
            out[n++] = '.';
            for (size_t i = (size_t)decpt; i < nd; i++)
                out[n++] = digits[i];
        }
    }
    out[n++] = ';';
    php_put_raw(b, out, n);
}

void php_put_string(php_buf *b, const char *s, size_t len)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "s:%zu:\"", len);
    php_put_raw(b, tmp, (size_t)n);
    php_put_raw(b, s, len);
    php_put_raw(b, "\";", 2);
}

/* PHP's ZEND_HANDLE_NUMERIC_STR: "0" or [-]?[1-9][0-9]* within int64, but
 * not "-0". */
static bool canonical_int(const char *s, size_t len, int64_t *out)
{
    if (!len || len > 20)
        return false;
    size_t i = s[0] == '-' ? 1 : 0;
    if (i == len || s[i] < '0' || s[i] > '9')
        return false;
    if (s[i] == '0' && (len - i > 1 || i == 1))
        return false; /* leading zero, or "-0" */
    uint64_t u = 0;
    for (size_t k = i; k < len; k++) {
        if (s[k] < '0' || s[k] > '9')
            return false;
        unsigned d = (unsigned)(s[k] - '0');
        if (u > (UINT64_MAX - d) / 10)
            return false;
        u = u * 10 + d;
    }
    if (i) {
        if (u > (uint64_t)INT64_MAX + 1)
            return false;
        *out = u == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)u;
    } else {
        if (u > (uint64_t)INT64_MAX)
            return false;
        *out = (int64_t)u;
    }
    return true;
}

void php_put_key(php_buf *b, const char *s, size_t len)
{
    int64_t v;
    if (canonical_int(s, len, &v))
        php_put_int(b, v);
    else
        php_put_string(b, s, len);
}

void php_put_array_open(php_buf *b, size_t count)
{
    char tmp[40];
    int n = snprintf(tmp, sizeof tmp, "a:%zu:{", count);
    php_put_raw(b, tmp, (size_t)n);
}

void php_put_array_close(php_buf *b)
{
    php_put_raw(b, "}", 1);
}

/* ---- reading ----------------------------------------------------------- */

/* Every helper takes the cursor p and the end of the input, and returns the
 * cursor after what it read or NULL. Lengths are compared with end - p, never
 * added to p first, so no pointer arithmetic can leave the buffer. */

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static const char *expect(const char *p, const char *end, char c)
{
    return p && p < end && *p == c ? p + 1 : NULL;
}

/* [0-9]+ as a size_t; refuses values above max (so no overflow). */
static const char *read_uint(const char *p, const char *end, size_t max, size_t *out)
{
    if (!p || p == end || !is_digit(*p))
        return NULL;
    size_t v = 0;
    for (; p < end && is_digit(*p); p++) {
        size_t d = (size_t)(*p - '0');
        if (v > (max - d) / 10)
            return NULL;
        v = v * 10 + d;
    }
    *out = v;
    return p;
}

/* [+-]?[0-9]+ within int64 */
static const char *read_int(const char *p, const char *end, int64_t *out)
{
    bool neg = false;
    if (p < end && (*p == '-' || *p == '+'))
        neg = *p++ == '-';
    if (p == end || !is_digit(*p))
        return NULL;
    uint64_t u = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; p < end && is_digit(*p); p++) {
        unsigned d = (unsigned)(*p - '0');
        if (u > (lim - d) / 10)
            return NULL;
        u = u * 10 + d;
    }
    if (neg)
        *out = u == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)u;
    else
        *out = (int64_t)u;
    return p;
}

static const char *skip_digits(const char *p, const char *end, size_t *n)
{
    const char *s = p;
    while (p < end && is_digit(*p))
        p++;
    *n = (size_t)(p - s);
    return p;
}

/* PHP's float grammar: NAN | -?INF | [+-]?(digits | digits?.digits |
 * digits.) ([eE][+-]?digits)? followed by ';'. */
static const char *read_double(const char *p, const char *end, double *out)
{
    size_t left = (size_t)(end - p);
    if (left >= 4 && !memcmp(p, "NAN;", 4)) {
        *out = NAN;
        return p + 3;
    }
    if (left >= 4 && !memcmp(p, "INF;", 4)) {
        *out = INFINITY;
        return p + 3;
    }
    if (left >= 5 && !memcmp(p, "-INF;", 5)) {
        *out = -INFINITY;
        return p + 4;
    }
    const char *s = p;
    size_t a, f = 0, e;
    if (p < end && (*p == '-' || *p == '+'))
        p++;
    p = skip_digits(p, end, &a);
    if (p < end && *p == '.')
        p = skip_digits(p + 1, end, &f);
    if (!a && !f)
        return NULL;
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '-' || *p == '+'))
            p++;
        p = skip_digits(p, end, &e);
        if (!e)
            return NULL;
    }
    if (p == end || *p != ';')
        return NULL;
    /* strtod stops at the ';' that the grammar check found inside the input
     * (and the grammar excludes hex, inf and nan spellings). */
    *out = strtod(s, NULL);
    return p;
}

/* "<len>:\"<len bytes>\"" : returns after the closing quote. */
static const char *read_quoted(const char *p, const char *end, const char **s, size_t *len)
{
    p = read_uint(p, end, SIZE_MAX, len);
    p = expect(p, end, ':');
    p = expect(p, end, '"');
    if (!p || *len > (size_t)(end - p))
        return NULL;
    *s = p;
    return expect(p + *len, end, '"');
}

static const char *parse_value(const char *p, const char *end, int depth, php_value *v);

/* "<count>:{" key/value pairs "}" */
static const char *parse_elements(const char *p, const char *end, int depth, php_value *v)
{
    size_t count;
    p = read_uint(p, end, PHP_SERIAL_MAX_ITEMS, &count);
    p = expect(p, end, ':');
    p = expect(p, end, '{');
    if (!p)
        return NULL;
    if (depth >= PHP_SERIAL_MAX_DEPTH)
        return NULL;
    v->a.count = count;
    v->a.body = p;
    for (size_t i = 0; i < count; i++) {
        php_value k, e;
        p = parse_value(p, end, depth + 1, &k);
        if (!p || (k.type != PHP_INT && k.type != PHP_STRING))
            return NULL;
        p = parse_value(p, end, depth + 1, &e);
        if (!p)
            return NULL;
    }
    return expect(p, end, '}');
}

static bool class_name_ok(const char *s, size_t len)
{
    if (!len)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        bool ok = c == '_' || c == '\\' || c >= 0x7f || (c >= 'a' && c <= 'z') ||
                  (c >= 'A' && c <= 'Z') || (i > 0 && is_digit((char)c));
        if (!ok)
            return false;
    }
    return true;
}

/* depth = number of arrays/objects around this value */
static const char *parse_value(const char *p, const char *end, int depth, php_value *v)
{
    if (end - p < 2)
        return NULL;
    const char *start = p;
    char t = p[0];
    if (t == 'N') {
        p = expect(p + 1, end, ';');
        v->type = PHP_NULL;
    } else if (p[1] != ':') {
        return NULL;
    } else if (t == 'b') {
        p += 2;
        if (p == end || (*p != '0' && *p != '1'))
            return NULL;
        v->type = PHP_BOOL;
        v->b = *p == '1';
        p = expect(p + 1, end, ';');
    } else if (t == 'i') {
        v->type = PHP_INT;
        p = expect(read_int(p + 2, end, &v->i), end, ';');
    } else if (t == 'd') {
        v->type = PHP_DOUBLE;
        p = read_double(p + 2, end, &v->d);
        p = expect(p, end, ';');
    } else if (t == 's') {
        v->type = PHP_STRING;
        p = expect(read_quoted(p + 2, end, &v->s.p, &v->s.len), end, ';');
    } else if (t == 'a') {
        v->type = PHP_ARRAY;
        p = parse_elements(p + 2, end, depth, v);
    } else if (t == 'O') {
        const char *name;
        size_t name_len;
        v->type = PHP_OBJECT;
        p = expect(read_quoted(p + 2, end, &name, &name_len), end, ':');
        if (!p || !class_name_ok(name, name_len))
            return NULL;
        p = parse_elements(p, end, depth, v);
    } else {
        return NULL; /* r: R: C: E: S: o: and anything unknown */
    }
    if (!p)
        return NULL;
    v->raw = start;
    v->raw_len = (size_t)(p - start);
    return p;
}

int php_serial_parse(const char *data, size_t len, php_value *out)
{
    if (!data || !len)
        return -1;
    const char *end = data + len;
    php_value v;
    const char *p = parse_value(data, end, 0, &v);
    if (p != end)
        return -1;
    *out = v;
    return 0;
}

void php_iter_init(php_iter *it, const php_value *array)
{
    if (array->type != PHP_ARRAY && array->type != PHP_OBJECT) {
        it->p = it->end = NULL;
        it->left = 0;
        return;
    }
    it->p = array->a.body;
    it->end = array->raw + array->raw_len - 1; /* the closing '}' */
    it->left = array->a.count;
}

bool php_iter_next(php_iter *it, php_value *key, php_value *val)
{
    if (!it->left)
        return false;
    /* the array was validated with depth to spare, so depth 1 here never
     * refuses what its parse accepted */
    const char *p = parse_value(it->p, it->end, 1, key);
    if (p)
        p = parse_value(p, it->end, 1, val);
    if (!p) {
        it->left = 0;
        return false;
    }
    it->p = p;
    it->left--;
    return true;
}

int php_key_text(const php_value *key, char *out, size_t cap)
{
    if (key->type == PHP_INT) {
        char tmp[24];
        int n = snprintf(tmp, sizeof tmp, "%" PRId64, key->i);
        if ((size_t)n > cap)
            return -1;
        memcpy(out, tmp, (size_t)n);
        if ((size_t)n < cap)
            out[n] = '\0';
        return n;
    }
    if (key->type != PHP_STRING || key->s.len > cap || key->s.len > INT32_MAX)
        return -1;
    memcpy(out, key->s.p, key->s.len);
    if (key->s.len < cap)
        out[key->s.len] = '\0';
    return (int)key->s.len;
}

/* ---- operations -------------------------------------------------------- */

/* A key in PHP's identity: i:7 and s:1:"7" are the integer 7, s:2:"07" is
 * the string "07". */
typedef struct merge_key {
    bool is_int;
    int64_t i;
    const char *s;
    size_t len;
} merge_key;

static merge_key key_of(const php_value *k)
{
    merge_key m = {.is_int = true};
    if (k->type == PHP_INT) {
        m.i = k->i;
    } else if (!canonical_int(k->s.p, k->s.len, &m.i)) {
        m.is_int = false;
        m.s = k->s.p;
        m.len = k->s.len;
    }
    return m;
}

/* A total order on keys: integers first by value, then strings by bytes. */
static int key_cmp(const merge_key *a, const merge_key *b)
{
    if (a->is_int != b->is_int)
        return a->is_int ? -1 : 1;
    if (a->is_int)
        return a->i < b->i ? -1 : a->i > b->i;
    size_t n = a->len < b->len ? a->len : b->len;
    int c = n ? memcmp(a->s, b->s, n) : 0;
    if (c)
        return c;
    return a->len < b->len ? -1 : a->len > b->len;
}

/* One array's pairs sorted by key, then by position, for O(log n) lookups
 * when an array is large; NULL entries means "scan the array instead". */
typedef struct merge_entry {
    merge_key key;
    size_t pos;
    php_value val;
} merge_entry;

typedef struct merge_index {
    const php_value *arr;
    merge_entry *entries;
    size_t n;
} merge_index;

static int entry_cmp(const void *pa, const void *pb)
{
    const merge_entry *a = pa, *b = pb;
    int c = key_cmp(&a->key, &b->key);
    if (c)
        return c;
    return a->pos < b->pos ? -1 : a->pos > b->pos;
}

/* A scan walks (and re-reads) every byte of the array once per lookup, so
 * it is kept for when lookups times bytes stays small; above that the array
 * is indexed once. Counting bytes, not keys: one key can hold a 64 KiB
 * nested array, and a scan per key of the other side would re-read it. */
#define MERGE_SCAN_BYTES (256 * 1024)

static void index_init(merge_index *ix, const php_value *arr, size_t other_count)
{
    ix->arr = arr;
    ix->entries = NULL;
    ix->n = 0;
    size_t count = arr->a.count;
    if (!count || (uint64_t)other_count * arr->raw_len <= MERGE_SCAN_BYTES)
        return;
    /* count pairs were validated to be in the input, so this is bounded by
     * the input's size; on failure the scan still gives the right answer */
    ix->entries = malloc(count * sizeof *ix->entries);
    if (!ix->entries)
        return;
    php_iter it;
    php_value k, v;
    php_iter_init(&it, arr);
    while (ix->n < count && php_iter_next(&it, &k, &v)) {
        ix->entries[ix->n] = (merge_entry){.key = key_of(&k), .pos = ix->n, .val = v};
        ix->n++;
    }
    qsort(ix->entries, ix->n, sizeof *ix->entries, entry_cmp);
}

/* The value of the last pair with this key (later duplicates win, as in
 * PHP's unserialize()). */
static bool index_find(const merge_index *ix, const php_value *key, php_value *found)
{
    merge_key want = key_of(key);
    if (ix->entries) {
        size_t lo = 0, hi = ix->n; /* first entry whose key is greater */
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (key_cmp(&ix->entries[mid].key, &want) <= 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo == 0 || key_cmp(&ix->entries[lo - 1].key, &want) != 0)
            return false;
        *found = ix->entries[lo - 1].val;
        return true;
    }
    php_iter it;
    php_value k, v;
    bool hit = false;
    php_iter_init(&it, ix->arr);
    while (php_iter_next(&it, &k, &v)) {
        merge_key mk = key_of(&k);
        if (key_cmp(&mk, &want) == 0) {
            *found = v;
            hit = true;
        }
    }
    return hit;
}

/* Writes array_replace_recursive(base, repl) for two arrays. Duplicate keys
 * (PHP never writes them) are kept, so the count always matches the pairs.
 * Small arrays are scanned (no allocation); larger ones get a sorted index,
 * so a 64 KiB session of 10,000 keys merges in milliseconds, not seconds. */
static void merge_arrays(const php_value *base, const php_value *repl, php_buf *out)
{
    php_iter it;
    php_value k, v, other;
    merge_index bix, rix;
    index_init(&bix, base, repl->a.count);
    index_init(&rix, repl, base->a.count);
    size_t count = base->a.count;
    php_iter_init(&it, repl);
    while (php_iter_next(&it, &k, &v))
        if (!index_find(&bix, &k, &other))
            count++;
    php_put_array_open(out, count);
    php_iter_init(&it, base);
    while (php_iter_next(&it, &k, &v)) {
        php_put_raw(out, k.raw, k.raw_len);
        if (!index_find(&rix, &k, &other))
            php_put_raw(out, v.raw, v.raw_len);
        else if (v.type == PHP_ARRAY && other.type == PHP_ARRAY)
            merge_arrays(&v, &other, out);
        else
            php_put_raw(out, other.raw, other.raw_len);
    }
    php_iter_init(&it, repl);
    while (php_iter_next(&it, &k, &v)) {
        if (index_find(&bix, &k, &other))
            continue;
        php_put_raw(out, k.raw, k.raw_len);
        php_put_raw(out, v.raw, v.raw_len);
    }
    php_put_array_close(out);
    free(bix.entries);
    free(rix.entries);
}

int php_serial_merge(const char *base, size_t base_len, const char *repl, size_t repl_len,
                     php_buf *out)
{
    php_value b, r;
    if (php_serial_parse(repl, repl_len, &r) != 0 || r.type != PHP_ARRAY)
        return -1;
    if (base_len && php_serial_parse(base, base_len, &b) != 0)
        return -1;
    if (!base_len || b.type != PHP_ARRAY || b.a.count == 0)
        php_put_raw(out, repl, repl_len);
    else
        merge_arrays(&b, &r, out);
    return 0;
}

/* JSON text must be UTF-8 and chatd refuses NUL inside it. */
static bool json_text_ok(const char *s, size_t len)
{
    return !memchr(s, '\0', len);
}

static json_t *value_to_json(const php_value *v);

static bool is_list(const php_value *arr)
{
    if (arr->type != PHP_ARRAY)
        return false;
    php_iter it;
    php_value k, v;
    int64_t want = 0, n;
    php_iter_init(&it, arr);
    while (php_iter_next(&it, &k, &v)) {
        if (k.type == PHP_INT)
            n = k.i;
        else if (!canonical_int(k.s.p, k.s.len, &n))
            return false;
        if (n != want++)
            return false;
    }
    return true;
}

static json_t *array_to_json(const php_value *arr)
{
    bool list = is_list(arr);
    json_t *j = list ? json_array() : json_object();
    if (!j)
        return NULL;
    php_iter it;
    php_value k, v;
    php_iter_init(&it, arr);
    while (php_iter_next(&it, &k, &v)) {
        json_t *e = value_to_json(&v);
        int rc = -1;
        if (e && list) {
            rc = json_array_append_new(j, e);
        } else if (e && k.type == PHP_INT) {
            char tmp[24];
            int n = php_key_text(&k, tmp, sizeof tmp);
            rc = json_object_setn_new(j, tmp, (size_t)n, e);
        } else if (e && json_text_ok(k.s.p, k.s.len)) {
            rc = json_object_setn_new(j, k.s.p, k.s.len, e); /* checks UTF-8 */
        } else {
            json_decref(e);
        }
        if (rc != 0) {
            json_decref(j);
            return NULL;
        }
    }
    return j;
}

static json_t *value_to_json(const php_value *v)
{
    switch (v->type) {
    case PHP_NULL:
        return json_null();
    case PHP_BOOL:
        return json_boolean(v->b);
    case PHP_INT:
        return json_integer((json_int_t)v->i);
    case PHP_DOUBLE:
        return isfinite(v->d) ? json_real(v->d) : NULL;
    case PHP_STRING:
        /* json_stringn checks UTF-8 */
        return json_text_ok(v->s.p, v->s.len) ? json_stringn(v->s.p, v->s.len) : NULL;
    case PHP_ARRAY:
    case PHP_OBJECT:
        return array_to_json(v);
    }
    return NULL;
}

json_t *php_serial_to_json(const char *data, size_t len)
{
    php_value v;
    if (php_serial_parse(data, len, &v) != 0)
        return NULL;
    return value_to_json(&v);
}

static void put_json(const json_t *value, php_buf *out)
{
    switch (json_typeof(value)) {
    case JSON_OBJECT: {
        const char *key;
        json_t *e;
        php_put_array_open(out, json_object_size(value));
        void *it = json_object_iter((json_t *)value);
        for (; it; it = json_object_iter_next((json_t *)value, it)) {
            key = json_object_iter_key(it);
            e = json_object_iter_value(it);
            php_put_key(out, key, json_object_iter_key_len(it));
            put_json(e, out);
        }
        php_put_array_close(out);
        break;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(value);
        php_put_array_open(out, n);
        for (size_t i = 0; i < n; i++) {
            php_put_int(out, (int64_t)i);
            put_json(json_array_get(value, i), out);
        }
        php_put_array_close(out);
        break;
    }
    case JSON_STRING:
        php_put_string(out, json_string_value(value), json_string_length(value));
        break;
    case JSON_INTEGER:
        php_put_int(out, (int64_t)json_integer_value(value));
        break;
    case JSON_REAL:
        php_put_double(out, json_real_value(value));
        break;
    case JSON_TRUE:
        php_put_bool(out, true);
        break;
    case JSON_FALSE:
        php_put_bool(out, false);
        break;
    case JSON_NULL:
        php_put_null(out);
        break;
    }
}

int php_serial_from_json(const json_t *value, php_buf *out)
{
    if (!value)
        return -1;
    put_json(value, out);
    return out->oom ? -1 : 0;
}
