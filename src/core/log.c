/* log: leveled one-line logging to stderr, as text or JSON (see log.h). */
#include "core/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static _Atomic int min_level = LOG_INFO;
static _Atomic int line_format = LOG_FORMAT_TEXT;
static const char *const level_names[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};
static const char *const level_json[] = {"debug", "info", "warn", "error"};

#define LINE_MAX_BYTES 2048

void log_set_level(enum log_level level)
{
    atomic_store_explicit(&min_level, (int)level, memory_order_relaxed);
}

int log_level_parse(const char *name)
{
    static const char *const names[] = {"debug", "info", "warn", "error", "off"};
    for (int i = 0; i < 5; i++)
        if (strcmp(name, names[i]) == 0)
            return i;
    return -1;
}

int log_enabled(enum log_level level)
{
    return (int)level >= atomic_load_explicit(&min_level, memory_order_relaxed);
}

void log_set_format(enum log_format format)
{
    atomic_store_explicit(&line_format, (int)format, memory_order_relaxed);
}

int log_format_parse(const char *name)
{
    if (strcmp(name, "text") == 0)
        return LOG_FORMAT_TEXT;
    if (strcmp(name, "json") == 0)
        return LOG_FORMAT_JSON;
    return -1;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid. */
static int utf8_seq(const unsigned char *s, size_t n)
{
    int len;
    unsigned min;
    unsigned cp;
    if (s[0] < 0x80)
        return 1;
    if ((s[0] & 0xe0) == 0xc0) {
        len = 2, min = 0x80, cp = s[0] & 0x1f;
    } else if ((s[0] & 0xf0) == 0xe0) {
        len = 3, min = 0x800, cp = s[0] & 0x0f;
    } else if ((s[0] & 0xf8) == 0xf0) {
        len = 4, min = 0x10000, cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if ((size_t)len > n)
        return 0;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* Appends msg as the body of a JSON string; stops (on a character boundary)
 * when fewer than `reserve` bytes would be left. */
static int json_escape(char *out, int n, int cap, const char *msg, int reserve)
{
    const unsigned char *p = (const unsigned char *)msg;
    size_t left = strlen(msg);
    while (left > 0) {
        char tmp[8];
        int tl;
        int adv = 1;
        unsigned char ch = *p;
        if (ch == '"' || ch == '\\') {
            tmp[0] = '\\', tmp[1] = (char)ch, tl = 2;
        } else if (ch == '\n') {
            memcpy(tmp, "\\n", 2), tl = 2;
        } else if (ch == '\t') {
            memcpy(tmp, "\\t", 2), tl = 2;
        } else if (ch < 0x20 || ch == 0x7f) {
            tl = snprintf(tmp, sizeof(tmp), "\\u%04x", ch);
        } else if (ch < 0x80) {
            tmp[0] = (char)ch, tl = 1;
        } else {
            adv = utf8_seq(p, left);
            if (adv == 0) {
                memcpy(tmp, "\xef\xbf\xbd", 3), tl = 3, adv = 1; /* U+FFFD */
            } else {
                memcpy(tmp, p, (size_t)adv), tl = adv;
            }
        }
        if (n + tl > cap - reserve)
            break;
        memcpy(out + n, tmp, (size_t)tl);
        n += tl;
        p += adv;
        left -= (size_t)adv;
    }
    return n;
}

int log_format_line(char *out, int cap, enum log_format format, enum log_level level,
                    const char *msg)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[40];
    int t = (int)strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + t, sizeof(ts) - (size_t)t, ".%03ldZ", (long)(tv.tv_usec / 1000));
    int n;
    if (format == LOG_FORMAT_JSON) {
        n = snprintf(out, (size_t)cap, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts,
                     level_json[level]);
        n = json_escape(out, n, cap, msg, 4);
        memcpy(out + n, "\"}\n", 3);
        return n + 3;
    }
    n = snprintf(out, (size_t)cap, "%s %s ", ts, level_names[level]);
    int m = (int)strlen(msg);
    if (m > cap - n - 2)
        m = cap - n - 2;
    memcpy(out + n, msg, (size_t)m);
    /* One event per line: a message must not smuggle in a newline. */
    for (int i = n; i < n + m; i++)
        if (out[i] == '\n' || out[i] == '\r')
            out[i] = ' ';
    n += m;
    out[n++] = '\n';
    return n;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (!log_enabled(level) || level >= LOG_OFF)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (m < 0)
        msg[0] = '\0';
    char line[LINE_MAX_BYTES];
    int n = log_format_line(
        line, sizeof(line),
        (enum log_format)atomic_load_explicit(&line_format, memory_order_relaxed), level, msg);
    ssize_t unused = write(STDERR_FILENO, line, (size_t)n);
    (void)unused;
}
