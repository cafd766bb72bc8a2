/* log: one line per event on stderr, filtered by level.
 *
 * Text format (the default): "2026-11-26T10:58:40.123Z INFO  message".
 * JSON format (--log-format json): one object per line,
 * {"ts":"2026-11-26T10:58:40.123Z","level":"info","msg":"message"}, the
 * message escaped as a JSON string (control characters as \uXXXX, invalid
 * UTF-8 bytes as U+FFFD), so every line parses. Lines are written with a
 * single write(2) so concurrent threads (storage, thread pool) never
 * interleave inside a line. Level and format may be changed at any time (a
 * SIGHUP, on the loop thread) while other threads log: both are atomics. */
#ifndef CHATD_LOG_H
#define CHATD_LOG_H

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3, LOG_OFF = 4 };
enum log_format { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON = 1 };

/* Sets the lowest level that is printed. */
void log_set_level(enum log_level level);
/* Parses "debug", "info", "warn", "error", "off"; returns -1 if unknown. */
int log_level_parse(const char *name);
int log_enabled(enum log_level level);

void log_set_format(enum log_format format);
/* Parses "text", "json"; returns -1 if unknown. */
int log_format_parse(const char *name);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Formats one line (with its '\n') into out; returns its length. Exposed for
 * the unit tests; log_msg writes what it returns. */
int log_format_line(char *out, int cap, enum log_format format, enum log_level level,
                    const char *msg);

#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_enabled(LOG_DEBUG))                                                                \
            log_msg(LOG_DEBUG, __VA_ARGS__);                                                       \
    } while (0)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
