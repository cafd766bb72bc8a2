/* config: every option of chatd, from the command line or the environment.
 *
 * One table (config.c) lists each option once: its name, environment
 * variable, default and help text, so --help, the environment and the parser
 * can never disagree. Precedence: command line > environment > default. */
#ifndef CHATD_CONFIG_H
#define CHATD_CONFIG_H

#include <stddef.h>
#include <stdint.h>

typedef struct config {
    /* network */
    char *listen_host;
    int listen_port;
    char *ws_path;
    char *echo_path; /* NULL or "" = echo endpoint off */
    char *web_root;
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
    int64_t hash_queue;         /* password hashing jobs waiting or running */
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
} config;

/* Fills cfg from defaults, then the environment, then argv. Returns 0 to go
 * on, 1 when --help or --version was printed (exit 0), -1 on a bad option
 * (a message was printed; exit 2). Strings in cfg are owned by cfg. */
int config_load(config *cfg, int argc, char **argv);
void config_free(config *cfg);
/* Prints the option reference (used by --help). */
void config_print_help(const char *prog);

#endif
