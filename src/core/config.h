/* config: every option of chatd, from the command line, the environment or a
 * configuration file.
 *
 * One table (config.c) lists each option once: its name, environment
 * variable, default, help text and whether SIGHUP can change it at run time,
 * so --help, chatd.conf.example, the environment, the file parser and the
 * reload can never disagree. Precedence: command line > environment (CHATD_*)
 * > --config file > default.
 *
 * The file: one `name = value` per line, names as the flags without "--";
 * blank lines and `#` comments (a whole line, or after a value following a
 * blank); "double quotes" for values with blanks or '#', and for the empty
 * value ("" - a bare `name =` is an error); booleans true/false, yes/no,
 * on/off, 1/0. Errors name the file and line.
 *
 * Reload (SIGHUP, on the loop thread): the modules hold `const config *` to
 * the one live struct that main() owns, so a reload never swaps the struct:
 * config_reread() builds a complete new one from the same sources, and
 * config_reload_apply() copies the run-time options that changed into the
 * live struct. A replaced string is not freed but kept on a list freed by
 * config_free(): a pointer some module took to the old string stays valid,
 * at the cost of a few bytes per changed string per SIGHUP. Every reader of
 * these fields runs on the loop thread (the storage and hashing threads get
 * copies of what they need), so the plain stores need no locking. */
#ifndef CHATD_CONFIG_H
#define CHATD_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct config {
    /* network */
    char *listen_host;
    int listen_port;
    char *ws_path;
    char *echo_path; /* NULL or "" = echo endpoint off */
    char *web_root;
    char *sdk_root;     /* the JavaScript SDK's src/, served at /sdk/ */
    char *cors_origins; /* comma separated, "*" = any, NULL = no CORS */
    char *ws_origins;   /* comma separated allow-list for WebSocket Origin, NULL = any */
    /* limits */
    int64_t max_header_size;
    int64_t max_headers;
    int64_t max_body;
    int64_t max_message;
    int64_t max_outbuf;
    int64_t event_rate;
    int64_t max_conns_per_ip;   /* open TCP connections per client address */
    int64_t max_conns_per_user; /* bound WebSockets per uid */
    int64_t send_rate;          /* chat messages per second per user */
    int64_t bind_rate;          /* failed binds per minute per address */
    int64_t register_rate;      /* sign-ups per hour per address */
    int64_t max_group_members;  /* members a group may have, owner included */
    int64_t presence_grace;     /* ms online after the last socket closed */
    int64_t hash_queue;         /* password hashing jobs waiting or running */
    int64_t max_upload;         /* bytes of a POST /media body */
    int64_t upload_concurrency; /* POST /media bodies buffered at once */
    int64_t recall_window;      /* seconds a sender may recall a message, 0 = never */
    /* timeouts, seconds */
    int64_t ping_interval;
    int64_t ping_timeout;
    int64_t header_timeout;
    int64_t keepalive_timeout;
    /* server API */
    char *api_secret;
    /* chat service */
    char *store;               /* "sqlite" or a postgres:// URI */
    int64_t store_connections; /* PostgreSQL connections: 1 writer + readers */
    char *data_dir;
    char *media_dir; /* "" = <data_dir>/media */
    char *jwt_secret;
    int64_t token_ttl;
    int64_t max_text;
    char *message_types;
    int64_t page_limit;
    int64_t login_rate;
    char *durability;
    /* cluster */
    char *redis;       /* "" = a single node */
    char *node_id;     /* "" = random */
    int64_t reuseport; /* 1 = SO_REUSEPORT on the listener */
    char *io;          /* "auto", "uring" or "epoll" (net/server.c) */
    /* GatewayWorker compatibility ("" = off) */
    char *gw_inner;            /* inner-protocol listener HOST:PORT, announced */
    char *gw_register;         /* serve the Register here */
    char *gw_register_address; /* the Register to announce to */
    char *gw_secret;
    int64_t gw_max_frame;
    int64_t gw_max_outbuf;
    /* production (issue 12) */
    char *tls_cert; /* "" = plain */
    char *tls_key;
    int64_t ws_deflate; /* 1 = negotiate permessage-deflate */
    int64_t ws_deflate_threshold;
    int64_t metrics;      /* 1 = GET /metrics on --listen */
    char *metrics_listen; /* "" = none */
    char *log_format;     /* "text" or "json" */
    char *webhook_url;    /* "" = off */
    char *webhook_secret;
    int64_t webhook_preview;
    int64_t webhook_queue;
    /* logging */
    char *log_level;
    /* the file the rest came from, "" = none */
    char *config_file;
    /* strings replaced by reloads, freed by config_free (see above) */
    struct config_retired *retired;
} config;

/* Fills cfg from defaults, then the --config file (or CHATD_CONFIG), then the
 * environment, then argv. Returns 0 to go on, 1 when --help, --version or
 * --print-config-example was printed (exit 0), -1 on a bad option (a message
 * was printed on stderr; exit 2). Strings in cfg are owned by cfg; cfg needs
 * config_free() whatever the result. Remembers argv for config_reread(). */
int config_load(config *cfg, int argc, char **argv);
/* The same, quiet: on -1 the reason ("chatd.conf:12: unknown option 'x'")
 * is in err. Does not remember argv. */
int config_read(config *cfg, int argc, char **argv, char *err, size_t errlen);
/* Reads the configuration again from the argv config_load() got, the current
 * environment and the file: 0, or -1 with the reason in err. */
int config_reread(config *cfg, char *err, size_t errlen);
void config_free(config *cfg);

/* After a SIGHUP: logs one line per option that differs between live and
 * next ("reload: max-message 1048576 -> 65536", or "reload: listen changed;
 * takes effect after a restart"), copies the options that can change at run
 * time from next into live (next's strings are moved, live's old ones
 * retired), and keeps the old value of the others. The options a module hook
 * applies (tls-cert, tls-key) are copied only when hooks_ok. Returns how
 * many options changed. next must still be config_free()d. */
int config_reload_apply(config *live, config *next, int hooks_ok);

/* Prints the option reference (used by --help). */
void config_print_help(const char *prog);
/* Prints chatd.conf.example: every option, commented out at its default,
 * with its help text (used by --print-config-example). */
void config_print_example(FILE *out);

#endif
