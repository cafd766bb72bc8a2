/* Unit tests for the configuration: the file syntax, precedence (command
 * line > environment > file > default), errors that name the line, the
 * SIGHUP apply step, and JSON log lines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/config.h"
#include "core/log.h"

static char path[64];

/* Writes text to a fresh temp file; its name is in path. */
static void write_conf(const char *text)
{
    snprintf(path, sizeof(path), "/tmp/chatd-test-conf-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

/* config_read with "chatd" + args (NULL-terminated). */
static int read_args(config *cfg, char *err, size_t cap, ...)
{
    char *argv[32] = {"chatd"};
    int argc = 1;
    va_list ap;
    va_start(ap, cap);
    for (char *a; (a = va_arg(ap, char *)) != NULL;)
        argv[argc++] = a;
    va_end(ap);
    return config_read(cfg, argc, argv, err, cap);
}

static int setup(void **state)
{
    (void)state;
    unsetenv("CHATD_CONFIG");
    unsetenv("CHATD_MAX_MESSAGE");
    unsetenv("CHATD_EVENT_RATE");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (path[0])
        unlink(path);
    path[0] = '\0';
    return setup(state);
}

static void test_file_syntax(void **state)
{
    (void)state;
    write_conf("# a comment\n"
               "\n"
               "   # an indented comment\n"
               "listen = 127.0.0.2:9000\n"
               "max-message=70000   # after a value\n"
               "cors-origins = \"https://a.example, https://b#c\"  # quoted\n"
               "echo-path = \"\"\n"
               "ws-path = \"/w\\\"s\"\n"
               "reuseport = yes\n"
               "ws-deflate = false\n"
               "redis = redis://:pa#ss@h:1\n");
    config cfg;
    char err[256];
    assert_int_equal(read_args(&cfg, err, sizeof(err), "--config", path, NULL), 0);
    assert_string_equal(cfg.listen_host, "127.0.0.2");
    assert_int_equal(cfg.listen_port, 9000);
    assert_int_equal(cfg.max_message, 70000);
    assert_string_equal(cfg.cors_origins, "https://a.example, https://b#c");
    assert_string_equal(cfg.echo_path, "");
    assert_string_equal(cfg.ws_path, "/w\"s");
    assert_int_equal(cfg.reuseport, 1);
    assert_int_equal(cfg.ws_deflate, 0);
    assert_string_equal(cfg.redis, "redis://:pa#ss@h:1"); /* # inside a word is no comment */
    assert_string_equal(cfg.config_file, path);
    config_free(&cfg);
}

static void test_precedence(void **state)
{
    (void)state;
    write_conf("max-message = 70000\nevent-rate = 7\nmax-outbuf = 99999\n");
    config cfg;
    char err[256];
    setenv("CHATD_MAX_MESSAGE", "80000", 1);
    setenv("CHATD_EVENT_RATE", "8", 1);
    assert_int_equal(
        read_args(&cfg, err, sizeof(err), "--config", path, "--max-message", "90000", NULL), 0);
    assert_int_equal(cfg.max_message, 90000); /* command line beats the environment */
    assert_int_equal(cfg.event_rate, 8);      /* environment beats the file */
    assert_int_equal(cfg.max_outbuf, 99999);  /* file beats the default */
    assert_int_equal(cfg.ping_interval, 25);  /* default */
    config_free(&cfg);
    /* CHATD_CONFIG names the file too; --config beats it */
    unsetenv("CHATD_MAX_MESSAGE");
    setenv("CHATD_CONFIG", path, 1);
    assert_int_equal(read_args(&cfg, err, sizeof(err), NULL), 0);
    assert_int_equal(cfg.max_outbuf, 99999);
    config_free(&cfg);
    assert_int_equal(read_args(&cfg, err, sizeof(err), "--config", "", NULL), 0);
    assert_int_equal(cfg.max_outbuf, 1048576);
    config_free(&cfg);
}

static void expect_error(const char *text, const char *want)
{
    write_conf(text);
    config cfg;
    char err[512];
    assert_int_equal(read_args(&cfg, err, sizeof(err), "--config", path, NULL), -1);
    config_free(&cfg);
    char full[600];
    snprintf(full, sizeof(full), "%s:%s", path, want);
    if (strncmp(err, full, strlen(full)) != 0)
        fail_msg("got '%s', want it to start with '%s'", err, full);
    unlink(path);
    path[0] = '\0';
}

static void test_errors_name_the_line(void **state)
{
    (void)state;
    /* a secret written without its '=' is not echoed (found by review) */
    expect_error("api-secret hunter2-supersecret\n",
                 "1: expected 'name = value' after 'api-secret' (no '=')");
    expect_error("# ok\n\nno-such-option = 1\n", "3: unknown option 'no-such-option'");
    expect_error("max-message = 70000\nmax-message = lots\n",
                 "2: max-message must be an integer from 125 to");
    expect_error("\n\n\n\nlisten =\n", "5: missing value for listen");
    expect_error("listen = 127.0.0.1:99999\n", "1: listen must be HOST:PORT");
    expect_error("reuseport = maybe\n", "1: reuseport must be true or false");
    expect_error("log-level = loud\n", "1: log-level must be debug, info, warn, error or off");
    expect_error("cors-origins = \"abc\n", "1: cors-origins: the quote is not closed");
    expect_error("just some words\n", "1: expected 'name = value'");
    expect_error("config = /etc/x\n", "1: config cannot be set inside");
    /* a secret is never echoed */
    write_conf("api-secret = s3cret\nstore = mysql://u:hunter2@h/db\n");
    config cfg;
    char err[512];
    assert_int_equal(read_args(&cfg, err, sizeof(err), "--config", path, NULL), -1);
    config_free(&cfg);
    assert_non_null(strstr(err, ":2: store must be"));
    assert_null(strstr(err, "hunter2"));
}

static void test_missing_file(void **state)
{
    (void)state;
    config cfg;
    char err[512];
    assert_int_equal(read_args(&cfg, err, sizeof(err), "--config", "/nonexistent/chatd.conf", NULL),
                     -1);
    config_free(&cfg);
    assert_non_null(strstr(err, "/nonexistent/chatd.conf: cannot read"));
}

static void test_reload_apply(void **state)
{
    (void)state;
    log_set_level(LOG_OFF);
    config live, next;
    char err[256];
    assert_int_equal(read_args(&live, err, sizeof(err), NULL), 0);
    const char *old_cors = live.cors_origins; /* a module may hold it */
    assert_int_equal(read_args(&next, err, sizeof(err), "--max-message", "65536", "--cors-origins",
                               "https://x", "--listen", "127.0.0.1:1", "--data-dir", "/elsewhere",
                               NULL),
                     0);
    assert_int_equal(config_reload_apply(&live, &next, 1), 4);
    config_free(&next);
    assert_int_equal(live.max_message, 65536);           /* live */
    assert_string_equal(live.cors_origins, "https://x"); /* live, moved */
    assert_string_equal(old_cors, "");                   /* retired, not freed */
    assert_int_equal(live.listen_port, 8080);            /* restart: kept */
    assert_string_equal(live.data_dir, "./data");        /* restart: kept */
    /* an option a module hook applies is kept when a hook failed */
    assert_int_equal(read_args(&next, err, sizeof(err), "--tls-cert", "/c.pem", NULL), 0);
    config_reload_apply(&live, &next, 0);
    config_free(&next);
    assert_string_equal(live.tls_cert, "");
    assert_int_equal(live.max_message, 1048576); /* back to the default, live */
    /* in cluster mode max-message needs a restart */
    free(live.redis);
    live.redis = strdup("redis://h:1");
    assert_int_equal(read_args(&next, err, sizeof(err), "--max-message", "1000", NULL), 0);
    config_reload_apply(&live, &next, 1);
    config_free(&next);
    assert_int_equal(live.max_message, 1048576);
    config_free(&live);
    log_set_level(LOG_INFO);
}

static void test_json_log_line(void **state)
{
    (void)state;
    char line[256];
    int n = log_format_line(line, sizeof(line), LOG_FORMAT_JSON, LOG_WARN,
                            "a \"quoted\" \\ back\nnew\x01 caf\xc3\xa9 bad\xff end");
    line[n] = '\0';
    const char *want = "\",\"level\":\"warn\",\"msg\":\"a \\\"quoted\\\" \\\\ back\\nnew\\u0001 "
                       "caf\xc3\xa9 bad\xef\xbf\xbd end\"}\n";
    assert_true(strncmp(line, "{\"ts\":\"20", 9) == 0);
    assert_non_null(strstr(line, want));
    /* truncated to the buffer, still one closed object */
    char small[64];
    n = log_format_line(small, sizeof(small), LOG_FORMAT_JSON, LOG_INFO,
                        "\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01");
    assert_true(n <= (int)sizeof(small));
    assert_memory_equal(small + n - 3, "\"}\n", 3);
    /* text stays the default shape */
    n = log_format_line(line, sizeof(line), LOG_FORMAT_TEXT, LOG_INFO, "x\ny");
    line[n] = '\0';
    assert_non_null(strstr(line, "Z INFO  x y\n"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_file_syntax, setup, teardown),
        cmocka_unit_test_setup_teardown(test_precedence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors_name_the_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload_apply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_log_line, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
