/* Unit tests for the metrics registry and its Prometheus text rendering:
 * every rendered line is checked by a small parser of the exposition
 * format (0.0.4) below, not by comparing with a copy of the output. */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/metrics.h"

/* ---- a checker of the text format -------------------------------------- */

#define MAX_FAMILIES 128

typedef struct family {
    char name[96];
    char type[16];
    bool help, samples;
} family;

typedef struct checker {
    family fam[MAX_FAMILIES];
    size_t n;
    char error[256];
} checker;

static bool is_name_start(char c)
{
    return isalpha((unsigned char)c) || c == '_' || c == ':';
}

static bool is_name_char(char c)
{
    return is_name_start(c) || isdigit((unsigned char)c);
}

static size_t name_len(const char *p)
{
    if (!is_name_start(*p))
        return 0;
    size_t n = 1;
    while (is_name_char(p[n]))
        n++;
    return n;
}

static family *find_family(checker *ck, const char *name, size_t len)
{
    for (size_t i = 0; i < ck->n; i++)
        if (strlen(ck->fam[i].name) == len && memcmp(ck->fam[i].name, name, len) == 0)
            return &ck->fam[i];
    return NULL;
}

static bool fail_line(checker *ck, const char *line, const char *why)
{
    snprintf(ck->error, sizeof(ck->error), "%s: %.160s", why, line);
    return false;
}

/* The family a sample belongs to: itself, or a histogram's base name. */
static family *sample_family(checker *ck, const char *name, size_t len)
{
    family *f = find_family(ck, name, len);
    if (f)
        return f;
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
    for (size_t i = 0; i < 3; i++) {
        size_t sl = strlen(suffixes[i]);
        if (len > sl && memcmp(name + len - sl, suffixes[i], sl) == 0) {
            f = find_family(ck, name, len - sl);
            if (f && strcmp(f->type, "histogram") == 0)
                return f;
        }
    }
    return NULL;
}

static bool check_line(checker *ck, const char *line)
{
    if (line[0] == '#') {
        bool help = strncmp(line, "# HELP ", 7) == 0, type = strncmp(line, "# TYPE ", 7) == 0;
        if (!help && !type)
            return fail_line(ck, line, "a comment that is neither HELP nor TYPE");
        const char *name = line + 7;
        size_t len = name_len(name);
        if (len == 0 || name[len] != ' ' || !name[len + 1])
            return fail_line(ck, line, "bad metric name or empty text");
        family *f = find_family(ck, name, len);
        if (!f) {
            if (ck->n == MAX_FAMILIES)
                return fail_line(ck, line, "too many families");
            f = &ck->fam[ck->n++];
            memcpy(f->name, name, len);
        } else if (f->samples) {
            return fail_line(ck, line, "HELP/TYPE after the family's samples");
        }
        if (help) {
            if (f->help)
                return fail_line(ck, line, "second HELP");
            f->help = true;
            return true;
        }
        if (f->type[0])
            return fail_line(ck, line, "second TYPE");
        const char *t = name + len + 1;
        if (strcmp(t, "counter") && strcmp(t, "gauge") && strcmp(t, "histogram") &&
            strcmp(t, "summary") && strcmp(t, "untyped"))
            return fail_line(ck, line, "unknown type");
        snprintf(f->type, sizeof(f->type), "%s", t);
        if (strcmp(t, "counter") == 0 && (len < 6 || memcmp(name + len - 6, "_total", 6) != 0))
            return fail_line(ck, line, "a counter whose name does not end in _total");
        return true;
    }
    size_t len = name_len(line);
    if (len == 0)
        return fail_line(ck, line, "a sample without a metric name");
    family *f = sample_family(ck, line, len);
    if (!f || !f->type[0])
        return fail_line(ck, line, "a sample before its TYPE");
    f->samples = true;
    const char *p = line + len;
    if (*p == '{') {
        p++;
        while (*p != '}') {
            size_t ll = name_len(p);
            if (ll == 0 || p[ll] != '=' || p[ll + 1] != '"')
                return fail_line(ck, line, "bad label");
            p += ll + 2;
            while (*p && *p != '"') {
                if (*p == '\n')
                    return fail_line(ck, line, "raw newline in a label value");
                if (*p == '\\') {
                    p++;
                    if (*p != '\\' && *p != '"' && *p != 'n')
                        return fail_line(ck, line, "bad escape in a label value");
                }
                p++;
            }
            if (*p != '"')
                return fail_line(ck, line, "unterminated label value");
            p++;
            if (*p == ',')
                p++;
            else if (*p != '}')
                return fail_line(ck, line, "bad label separator");
        }
        p++;
    }
    if (*p != ' ')
        return fail_line(ck, line, "no space before the value");
    p++;
    char *end;
    if (strcmp(p, "+Inf") && strcmp(p, "-Inf") && strcmp(p, "NaN")) {
        strtod(p, &end);
        if (end == p || *end)
            return fail_line(ck, line, "value is not a number");
    }
    return true;
}

/* Checks a whole exposition; the text must end in a newline. */
static bool check_text(checker *ck, const char *text, size_t len)
{
    memset(ck, 0, sizeof(*ck));
    if (len == 0 || text[len - 1] != '\n') {
        snprintf(ck->error, sizeof(ck->error), "empty, or no final newline");
        return false;
    }
    char *copy = strndup(text, len);
    bool ok = true;
    for (char *line = copy, *nl; ok && (nl = strchr(line, '\n')); line = nl + 1) {
        *nl = '\0';
        if (!*line) {
            snprintf(ck->error, sizeof(ck->error), "empty line");
            ok = false;
        } else {
            ok = check_line(ck, line);
        }
    }
    free(copy);
    for (size_t i = 0; ok && i < ck->n; i++)
        if (!ck->fam[i].type[0] || !ck->fam[i].samples) {
            snprintf(ck->error, sizeof(ck->error), "family %s without TYPE or samples",
                     ck->fam[i].name);
            ok = false;
        }
    return ok;
}

/* The value of the sample line that starts with `series ` (-1 if none). */
static double sample(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return -1;
}

static char *render(const metrics_state *m, const metrics_scrape *s, size_t *len)
{
    char *text = metrics_render(m, s, len);
    assert_non_null(text);
    assert_int_equal(strlen(text), *len);
    return text;
}

/* ---- tests ------------------------------------------------------------- */

static void test_checker_catches_bad_text(void **state)
{
    (void)state;
    checker ck;
    const char *good = "# HELP a_total x\n# TYPE a_total counter\na_total{k=\"v\\\"\"} 1\n";
    assert_true(check_text(&ck, good, strlen(good)));
    const char *bad[] = {
        "a_total 1\n",                                          /* no TYPE */
        "# TYPE a counter\na 1\n",                              /* counter without _total */
        "# TYPE a gauge\na{k=\"v} 1\n",                         /* unterminated */
        "# TYPE a gauge\na{k=\"\\x\"} 1\n",                     /* bad escape */
        "# TYPE a gauge\na one\n",                              /* not a number */
        "# TYPE a gauge\na 1\n# TYPE a gauge\n",                /* TYPE after samples */
        "# TYPE a gauge\na 1",                                  /* no final newline */
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_x 1\n", /* unknown sample */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(check_text(&ck, bad[i], strlen(bad[i])));
}

static void test_empty_state_is_well_formed(void **state)
{
    (void)state;
    metrics_state m = {0};
    metrics_init(&m);
    metrics_scrape s = {.version = "0.1.0", .store_backend = "sqlite", .store_ok = true};
    size_t len;
    char *text = render(&m, &s, &len);
    checker ck;
    if (!check_text(&ck, text, len))
        fail_msg("%s", ck.error);
    assert_true(sample(text, "chatd_store_up") == 1);
    assert_true(sample(text, "chatd_build_info{version=\"0.1.0\",store=\"sqlite\"}") == 1);
    assert_true(sample(text, "chatd_ratelimit_refusals_total{kind=\"send\"}") == 0);
    /* no cluster or gw section without them */
    assert_null(strstr(text, "chatd_cluster_"));
    assert_null(strstr(text, "chatd_gw_"));
    free(text);
}

static void test_counters_render(void **state)
{
    (void)state;
    metrics_state m = {0};
    metrics_init(&m);
    m.conns[METRICS_CONN_WEBSOCKET] = 3;
    m.ws_messages_in = 7;
    m.ws_bytes_out = 1234;
    m.pushes[METRICS_PUSH_MESSAGE] = 5;
    m.limit_refusals[METRICS_LIMIT_EVENT] = 2;
    m.http[METRICS_ROUTE_CHAT][metrics_status_slot(429)] = 4;
    m.http[METRICS_ROUTE_STATIC][metrics_status_slot(418)] = 1; /* unknown: its class */
    m.ws_closes[METRICS_CLOSE_PEER][metrics_close_slot(4001)] = 6;
    metrics_scrape s = {.conns_open = 10,
                        .conns_refused_per_ip = 9,
                        .cluster = true,
                        .bus_up = true,
                        .bus_dropped = 8,
                        .gw = true,
                        .gw_workers = 2};
    size_t len;
    char *text = render(&m, &s, &len);
    checker ck;
    if (!check_text(&ck, text, len))
        fail_msg("%s", ck.error);
    assert_true(sample(text, "chatd_connections{state=\"http\"}") == 7);
    assert_true(sample(text, "chatd_connections{state=\"websocket\"}") == 3);
    assert_true(sample(text, "chatd_ws_messages_total{direction=\"in\"}") == 7);
    assert_true(sample(text, "chatd_ws_bytes_total{direction=\"out\"}") == 1234);
    assert_true(sample(text, "chatd_pushes_total{kind=\"message\"}") == 5);
    assert_true(sample(text, "chatd_ratelimit_refusals_total{kind=\"event\"}") == 2);
    assert_true(sample(text, "chatd_ratelimit_refusals_total{kind=\"conns_per_ip\"}") == 9);
    assert_true(sample(text, "chatd_http_requests_total{route=\"chat\",code=\"429\"}") == 4);
    assert_true(sample(text, "chatd_http_requests_total{route=\"static\",code=\"4xx\"}") == 1);
    assert_true(sample(text, "chatd_ws_closes_total{code=\"4xxx\",initiator=\"peer\"}") == 6);
    assert_true(sample(text, "chatd_cluster_bus_up") == 1);
    assert_true(sample(text, "chatd_cluster_bus_dropped_total") == 8);
    assert_true(sample(text, "chatd_gw_workers") == 2);
    free(text);
}

static void test_histogram_buckets(void **state)
{
    (void)state;
    metrics_state m = {0};
    metrics_init(&m);
    metrics_hist_observe(&m.store_commit, 400);      /* <= 0.0005 s */
    metrics_hist_observe(&m.store_commit, 500);      /* = the bound: same bucket */
    metrics_hist_observe(&m.store_commit, 3000);     /* <= 0.005 */
    metrics_hist_observe(&m.store_commit, 60000000); /* +Inf */
    metrics_hist_observe(&m.store_batch, 1);
    metrics_hist_observe(&m.store_batch, 100);
    metrics_scrape s = {0};
    size_t len;
    char *text = render(&m, &s, &len);
    checker ck;
    if (!check_text(&ck, text, len))
        fail_msg("%s", ck.error);
    assert_true(sample(text, "chatd_store_commit_seconds_bucket{le=\"0.0005\"}") == 2);
    assert_true(sample(text, "chatd_store_commit_seconds_bucket{le=\"0.001\"}") == 2);
    assert_true(sample(text, "chatd_store_commit_seconds_bucket{le=\"0.005\"}") == 3);
    assert_true(sample(text, "chatd_store_commit_seconds_bucket{le=\"10\"}") == 3);
    assert_true(sample(text, "chatd_store_commit_seconds_bucket{le=\"+Inf\"}") == 4);
    assert_true(sample(text, "chatd_store_commit_seconds_count") == 4);
    double sum = sample(text, "chatd_store_commit_seconds_sum");
    assert_true(sum > 60.0038 && sum < 60.0040);
    assert_true(sample(text, "chatd_store_commit_batch_size_bucket{le=\"1\"}") == 1);
    assert_true(sample(text, "chatd_store_commit_batch_size_bucket{le=\"64\"}") == 1);
    assert_true(sample(text, "chatd_store_commit_batch_size_bucket{le=\"128\"}") == 2);
    assert_true(sample(text, "chatd_store_commit_batch_size_sum") == 101);
    free(text);
}

static void test_label_sets_are_bounded(void **state)
{
    (void)state;
    char buf[8];
    assert_string_equal(metrics_status_label(metrics_status_slot(200), buf), "200");
    assert_string_equal(metrics_status_label(metrics_status_slot(503), buf), "503");
    assert_string_equal(metrics_status_label(metrics_status_slot(299), buf), "2xx");
    assert_string_equal(metrics_status_label(metrics_status_slot(599), buf), "5xx");
    assert_string_equal(metrics_status_label(metrics_status_slot(99), buf), "other");
    assert_string_equal(metrics_status_label(metrics_status_slot(1000), buf), "other");
    for (int st = -5; st < 2000; st++)
        assert_true(metrics_status_slot(st) < METRICS_STATUS_SLOTS);
    assert_string_equal(metrics_close_label(metrics_close_slot(1000), buf), "1000");
    assert_string_equal(metrics_close_label(metrics_close_slot(1015), buf), "1015");
    assert_string_equal(metrics_close_label(metrics_close_slot(3333), buf), "3xxx");
    assert_string_equal(metrics_close_label(metrics_close_slot(4999), buf), "4xxx");
    assert_string_equal(metrics_close_label(metrics_close_slot(2000), buf), "other");
    for (unsigned code = 0; code < 65536; code++)
        assert_true(metrics_close_slot((uint16_t)code) < METRICS_CLOSE_SLOTS);
    assert_string_equal(metrics_route_name(METRICS_ROUTE_GATEWAY_API), "gateway_api");
    assert_string_equal(metrics_route_name((enum metrics_route)200), "none");
}

static void test_label_escaping(void **state)
{
    (void)state;
    char out[32];
    assert_int_equal(metrics_escape_label("a\"b\\c\nd", out, sizeof(out)), 10);
    assert_string_equal(out, "a\\\"b\\\\c\\nd");
    assert_int_equal(metrics_escape_label("abcdef", out, 6), -1); /* no room for the NUL */
    assert_int_equal(metrics_escape_label("abcde", out, 6), 5);
    /* a version with a quote still renders a well-formed line */
    metrics_state m = {0};
    metrics_init(&m);
    metrics_scrape s = {.version = "1.0\"x\n", .store_backend = "postgresql"};
    size_t len;
    char *text = render(&m, &s, &len);
    checker ck;
    if (!check_text(&ck, text, len))
        fail_msg("%s", ck.error);
    assert_true(sample(text, "chatd_build_info{version=\"1.0\\\"x\\n\",store=\"postgresql\"}") ==
                1);
    free(text);
}

static void test_event_helpers(void **state)
{
    (void)state;
    memset(&metrics_g, 0, sizeof(metrics_g));
    metrics_init(&metrics_g);
    metrics_conn_open(METRICS_CONN_WEBSOCKET);
    metrics_conn_open(METRICS_CONN_WEBSOCKET);
    metrics_ws_close(1000, false);
    metrics_ws_gone(true);  /* closed with a handshake: counted above */
    metrics_ws_gone(false); /* vanished: 1006 */
    assert_int_equal(metrics_g.conns[METRICS_CONN_WEBSOCKET], 0);
    assert_int_equal(metrics_g.ws_closes[METRICS_CLOSE_SERVER][metrics_close_slot(1000)], 1);
    assert_int_equal(metrics_g.ws_closes[METRICS_CLOSE_NONE][metrics_close_slot(1006)], 1);
    metrics_http_response(METRICS_ROUTE_HEALTHZ, 200);
    metrics_http_response(250, 200); /* a route out of range counts as none */
    assert_int_equal(metrics_g.http[METRICS_ROUTE_HEALTHZ][metrics_status_slot(200)], 1);
    assert_int_equal(metrics_g.http[METRICS_ROUTE_NONE][metrics_status_slot(200)], 1);
    /* data frames count as messages, control frames only as bytes */
    sbuf *text = sbuf_from("\x81\x02hi", 4), *ping = sbuf_from("\x89\x00", 2);
    metrics_ws_sent(text, true);
    metrics_ws_sent(ping, true);
    metrics_ws_sent(text, false); /* refused: not counted */
    assert_int_equal(metrics_g.ws_messages_out, 1);
    assert_int_equal(metrics_g.ws_bytes_out, 6);
    sbuf_unref(text);
    sbuf_unref(ping);
    metrics_store_commit(0);
    metrics_store_commit(3);
    assert_int_equal(metrics_g.store_batch.buckets[2], 1); /* 3 <= 4 */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checker_catches_bad_text),
        cmocka_unit_test(test_empty_state_is_well_formed),
        cmocka_unit_test(test_counters_render),
        cmocka_unit_test(test_histogram_buckets),
        cmocka_unit_test(test_label_sets_are_bounded),
        cmocka_unit_test(test_label_escaping),
        cmocka_unit_test(test_event_helpers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
