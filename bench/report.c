/* report: table and JSON-line output of results; see report.h. */
#include "report.h"
#include "bench.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static char g_json[8192];
static size_t g_jlen;
static char g_table[8192];
static size_t g_tlen;

static void jappend(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void tappend(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void jappend(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(g_json + g_jlen, sizeof g_json - g_jlen, fmt, ap);
    va_end(ap);
    if (n > 0 && (size_t)n < sizeof g_json - g_jlen)
        g_jlen += (size_t)n;
}

static void tappend(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(g_table + g_tlen, sizeof g_table - g_tlen, fmt, ap);
    va_end(ap);
    if (n > 0 && (size_t)n < sizeof g_table - g_tlen)
        g_tlen += (size_t)n;
}

static void jstring(const char *s)
{
    jappend("\"");
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            jappend("\\%c", ch);
        else if (ch < 0x20)
            jappend("\\u%04x", ch);
        else
            jappend("%c", ch);
    }
    jappend("\"");
}

static void jkey(const char *key)
{
    jappend(g_jlen > 1 ? "," : "");
    jstring(key);
    jappend(":");
}

/* 1234567.8 -> "1,234,568"; small values keep decimals. */
static const char *human(double v)
{
    static char bufs[4][48];
    static int k;
    char *b = bufs[k++ & 3];
    if (isnan(v)) {
        snprintf(b, 48, "-");
        return b;
    }
    if (v < 0 ? -v < 100 : v < 100) {
        snprintf(b, 48, "%.3g", v);
        return b;
    }
    char digits[40];
    snprintf(digits, sizeof digits, "%.0f", v);
    const char *d = digits;
    size_t o = 0;
    if (*d == '-')
        b[o++] = *d++;
    size_t n = strlen(d);
    for (size_t i = 0; i < n; i++) {
        b[o++] = d[i];
        if ((n - i - 1) % 3 == 0 && i + 1 < n)
            b[o++] = ',';
    }
    b[o] = 0;
    return b;
}

void report_begin(const char *scenario)
{
    g_jlen = g_tlen = 0;
    jappend("{");
    jkey("scenario");
    jstring(scenario);
    if (g_opt.label) {
        jkey("label");
        jstring(g_opt.label);
    }
    jkey("url");
    jstring(g_opt.url ? g_opt.url : "");
    /* the load generator: chatd-bench itself, or uWebSockets' load_test run by loadtest */
    jkey("gen");
    jstring(g_opt.cmd && strcmp(g_opt.cmd, "loadtest") == 0 ? "load_test" : "chatd-bench");
    if (g_opt.url2) {
        jkey("url2");
        jstring(g_opt.url2);
    }
    if (g_opt.note) {
        jkey("note");
        jstring(g_opt.note);
    }
    tappend("chatd-bench %s  %s%s%s%s%s%s\n", scenario, g_opt.url ? g_opt.url : "",
            g_opt.url2 ? " + " : "", g_opt.url2 ? g_opt.url2 : "", g_opt.label ? "  [" : "",
            g_opt.label ? g_opt.label : "", g_opt.label ? "]" : "");
    if (g_opt.note)
        tappend("  %-24s %s\n", "note", g_opt.note);
}

void report_int(const char *key, const char *label, long long v)
{
    jkey(key);
    jappend("%lld", v);
    if (label)
        tappend("  %-24s %s\n", label, human((double)v));
}

void report_num(const char *key, const char *label, double v)
{
    jkey(key);
    if (isnan(v))
        jappend("null");
    else
        jappend("%.6g", v);
    if (label)
        tappend("  %-24s %s\n", label, human(v));
}

void report_str(const char *key, const char *label, const char *v)
{
    jkey(key);
    jstring(v);
    if (label)
        tappend("  %-24s %s\n", label, v);
}

void report_latency(const char *prefix, const char *label, const hist *h)
{
    static const struct {
        const char *suffix;
        double p;
    } pts[] = {{"p50", 50}, {"p99", 99}, {"p999", 99.9}, {"max", 100}};
    char key[64];
    double v[4];
    for (int i = 0; i < 4; i++) {
        v[i] = h->count ? (double)hist_percentile(h, pts[i].p) / 1000.0 : NAN;
        snprintf(key, sizeof key, "%s_%s_us", prefix, pts[i].suffix);
        jkey(key);
        if (isnan(v[i]))
            jappend("null");
        else
            jappend("%.1f", v[i]);
    }
    snprintf(key, sizeof key, "%s_mean_us", prefix);
    jkey(key);
    if (h->count)
        jappend("%.1f", hist_mean(h) / 1000.0);
    else
        jappend("null");
    if (label) {
        if (h->count)
            tappend("  %-24s p50 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n", label, v[0], v[1], v[2],
                    v[3]);
        else
            tappend("  %-24s -\n", label);
    }
}

void report_cpu(const window_result *r)
{
    report_num("bench_cpu", "chatd-bench cpu", r->self_cpu);
    if (r->server_cpu >= 0)
        report_num("server_cpu", "server cpu", r->server_cpu);
    for (int i = 0; i < g_opt.nwatch; i++) {
        char key[80], label[80];
        snprintf(key, sizeof key, "%s_cpu", g_opt.watch_name[i]);
        snprintf(label, sizeof label, "%s cpu", g_opt.watch_name[i]);
        if (r->watch_cpu[i] >= 0)
            report_num(key, label, r->watch_cpu[i]);
    }
    if (r->other_cpu >= 0)
        report_num("other_cpu", r->other_cpu > 0.05 ? "other processes' cpu" : NULL, r->other_cpu);
    if (r->steal >= 0)
        report_num("steal", r->steal > 0.05 ? "cpu stolen (hypervisor)" : NULL, r->steal);
    if (r->has_quiet)
        report_quiet(&r->quiet);
}

void report_end(void)
{
    jappend("}");
    if (g_opt.json) {
        fputs(g_table, stderr);
        printf("%s\n", g_json);
        fflush(stdout);
    } else {
        fputs(g_table, stdout);
        fflush(stdout);
    }
}
