/* config: the option table, parsing and --help (see config.h). */
#include "core/config.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

#define CHATD_VERSION "0.1.0"

enum opt_type { OPT_STRING, OPT_INT, OPT_LISTEN, OPT_FLAG };

typedef struct option_spec {
    const char *name; /* long option; env var is CHATD_ + upper-cased name */
    enum opt_type type;
    size_t offset;
    const char *defval;
    int64_t min, max;
    const char *help;
} option_spec;

#define FIELD(f) offsetof(config, f)

static const option_spec options[] = {
    {"listen", OPT_LISTEN, 0, "127.0.0.1:8080", 0, 0, "address and port to listen on (HOST:PORT)"},
    {"ws-path", OPT_STRING, FIELD(ws_path), "/ws", 0, 0, "path of the client WebSocket endpoint"},
    {"echo-path", OPT_STRING, FIELD(echo_path), "", 0, 0,
     "path of the diagnostic echo WebSocket endpoint (empty = off)"},
    {"web-root", OPT_STRING, FIELD(web_root), "web", 0, 0, "directory of static files served at /"},
    {"cors-origins", OPT_STRING, FIELD(cors_origins), "", 0, 0,
     "comma-separated origins allowed to call the HTTP API from a browser (* = any)"},
    {"ws-origins", OPT_STRING, FIELD(ws_origins), "", 0, 0,
     "comma-separated origins allowed to open WebSockets (empty = any)"},
    {"max-header-size", OPT_INT, FIELD(max_header_size), "8192", 256, 1 << 20,
     "bytes of request line + headers (431 above)"},
    {"max-headers", OPT_INT, FIELD(max_headers), "64", 4, 1024, "number of request headers (431)"},
    {"max-body", OPT_INT, FIELD(max_body), "1048576", 0, 1 << 30, "bytes of a request body (413)"},
    {"max-message", OPT_INT, FIELD(max_message), "1048576", 125, 1 << 30,
     "bytes of a WebSocket message, fragments added up (close 1009)"},
    {"max-outbuf", OPT_INT, FIELD(max_outbuf), "1048576", 4096, 1 << 30,
     "queued outgoing bytes per connection before a slow reader is closed (1008)"},
    {"event-rate", OPT_INT, FIELD(event_rate), "20", 0, 1000000,
     "transient events per second per connection, bursts of twice that (0 = unlimited)"},
    {"max-conns-per-ip", OPT_INT, FIELD(max_conns_per_ip), "1000", 0, 1000000,
     "open connections per client address; more are refused with 503 (0 = unlimited)"},
    {"max-conns-per-user", OPT_INT, FIELD(max_conns_per_user), "32", 0, 1000000,
     "WebSockets bound to one user; binding one more is refused (close 1008) (0 = unlimited)"},
    {"send-rate", OPT_INT, FIELD(send_rate), "20", 0, 1000000,
     "chat messages per second per user, bursts of twice that (429; 0 = unlimited)"},
    {"bind-rate", OPT_INT, FIELD(bind_rate), "30", 1, 1000000,
     "failed binds (bad tokens) per minute per address before binds from it are refused (429)"},
    {"register-rate", OPT_INT, FIELD(register_rate), "20", 1, 1000000,
     "sign-ups per hour per address (429)"},
    {"hash-queue", OPT_INT, FIELD(hash_queue), "16", 2, 100000,
     "password hashing jobs queued or running; sign-ups past half of it and logins past all of it "
     "get 503"},
    {"ping-interval", OPT_INT, FIELD(ping_interval), "25", 1, 86400,
     "seconds of silence before the server pings a WebSocket"},
    {"ping-timeout", OPT_INT, FIELD(ping_timeout), "60", 1, 86400,
     "seconds of silence before a WebSocket is closed (1001)"},
    {"header-timeout", OPT_INT, FIELD(header_timeout), "10", 1, 3600,
     "seconds for a request's headers to arrive (408)"},
    {"keepalive-timeout", OPT_INT, FIELD(keepalive_timeout), "60", 1, 86400,
     "seconds an idle keep-alive HTTP connection is kept"},
    {"api-secret", OPT_STRING, FIELD(api_secret), "", 0, 0,
     "bearer secret of the server API /gateway/* (empty = API off, 403)"},
    {"store", OPT_STRING, FIELD(store), "sqlite", 0, 0,
     "sqlite (a database under --data-dir) or a PostgreSQL URI "
     "postgres://user:pass@host:port/db?sslmode=... that several chatd nodes can share"},
    {"store-connections", OPT_INT, FIELD(store_connections), "4", 1, 1000,
     "PostgreSQL connections per chatd: one writes (group commit), the others serve reads "
     "(at least 2 with PostgreSQL; SQLite uses one)"},
    {"data-dir", OPT_STRING, FIELD(data_dir), "./data", 0, 0,
     "directory of the SQLite database (unused with a PostgreSQL --store)"},
    {"jwt-secret", OPT_STRING, FIELD(jwt_secret), "", 0, 0,
     "HS256 secret to accept JWTs issued by your site's backend (empty = off)"},
    {"token-ttl", OPT_INT, FIELD(token_ttl), "2592000", 60, 315360000,
     "seconds a login token stays valid"},
    {"max-text", OPT_INT, FIELD(max_text), "4096", 1, 1 << 20, "bytes of a chat message's data"},
    {"message-types", OPT_STRING, FIELD(message_types), "text,image,emoji", 0, 0,
     "comma-separated content types a chat message may have"},
    {"page-limit", OPT_INT, FIELD(page_limit), "100", 1, 10000,
     "largest page of history or sync a request may ask for"},
    {"login-rate", OPT_INT, FIELD(login_rate), "10", 1, 100000,
     "login attempts per minute per address; failures per minute per username, past which "
     "the addresses that failed against it are refused (429)"},
    {"durability", OPT_STRING, FIELD(durability), "full", 0, 0,
     "full: fsync every group commit (survives power loss); normal: survives a crash of chatd "
     "(PostgreSQL: full keeps the server's synchronous_commit, normal sets it off for chatd)"},
    {"redis", OPT_STRING, FIELD(redis), "", 0, 0,
     "redis://[:password@]host:port[/db]: cluster mode, nodes route pushes and share presence "
     "through this Redis (use with a PostgreSQL --store; empty = one node)"},
    {"node-id", OPT_STRING, FIELD(node_id), "", 0, 0,
     "this node's name in the cluster, 1-64 of A-Z a-z 0-9 . _ - (empty = random, logged)"},
    {"reuseport", OPT_FLAG, FIELD(reuseport), "0", 0, 1,
     "listen with SO_REUSEPORT, so several chatd processes on one host share the port "
     "(one per core, each a cluster node)"},
    {"gw-inner", OPT_STRING, FIELD(gw_inner), "", 0, 0,
     "GatewayWorker inner protocol on IPv4:PORT for GatewayClient and BusinessWorkers (announced "
     "to the Register, written into client_ids, which become 20 hex; firewall it; empty = off)"},
    {"gw-register", OPT_STRING, FIELD(gw_register), "", 0, 0,
     "serve GatewayWorker's Register on HOST:PORT (firewall it; empty = off)"},
    {"gw-register-address", OPT_STRING, FIELD(gw_register_address), "", 0, 0,
     "the Register (HOST:PORT) this node announces its --gw-inner address to (empty = its own "
     "--gw-register)"},
    {"gw-secret", OPT_STRING, FIELD(gw_secret), "", 0, 0,
     "GatewayWorker secret_key for the Register and the inner port (empty = none)"},
    {"gw-max-frame", OPT_INT, FIELD(gw_max_frame), "2097152", 1024, 1 << 30,
     "bytes of one inner-protocol frame (pack_len); larger closes the connection"},
    {"gw-max-outbuf", OPT_INT, FIELD(gw_max_outbuf), "16777216", 65536, 1 << 30,
     "bytes queued to one inner or Register connection (a worker's events, replies) before it "
     "is closed as a slow reader"},
    /* production (issue 12) */
    {"tls-cert", OPT_STRING, FIELD(tls_cert), "", 0, 0,
     "PEM certificate (chain allowed) to serve https and wss on --listen (with --tls-key; "
     "re-read on SIGHUP; empty = plain)"},
    {"tls-key", OPT_STRING, FIELD(tls_key), "", 0, 0, "PEM private key of --tls-cert"},
    {"ws-deflate", OPT_FLAG, FIELD(ws_deflate), "0", 0, 1,
     "offer permessage-deflate (RFC 7692) to WebSocket clients that ask for it"},
    {"ws-deflate-threshold", OPT_INT, FIELD(ws_deflate_threshold), "256", 0, 1 << 30,
     "messages shorter than this many bytes are sent uncompressed"},
    {"metrics", OPT_FLAG, FIELD(metrics), "0", 0, 1,
     "serve GET /metrics (Prometheus text format) on --listen"},
    {"metrics-listen", OPT_STRING, FIELD(metrics_listen), "", 0, 0,
     "serve GET /metrics on this HOST:PORT instead (empty = none, or on --listen with --metrics)"},
    {"log-format", OPT_STRING, FIELD(log_format), "text", 0, 0,
     "text, or json (one JSON object per line)"},
    {"webhook-url", OPT_STRING, FIELD(webhook_url), "", 0, 0,
     "POST a signed event here when a message is stored for a user with no connected device "
     "(http:// or https://; empty = off)"},
    {"webhook-secret", OPT_STRING, FIELD(webhook_secret), "", 0, 0,
     "HMAC-SHA256 key that signs each webhook body (X-Chatd-Signature)"},
    {"webhook-preview", OPT_INT, FIELD(webhook_preview), "64", 0, 4096,
     "characters of the message text in a webhook event (0 = none)"},
    {"webhook-queue", OPT_INT, FIELD(webhook_queue), "10000", 1, 10000000,
     "webhook events waiting to be delivered; more are dropped and counted"},
    {"log-level", OPT_STRING, FIELD(log_level), "info", 0, 0, "debug, info, warn, error or off"},
};
#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

static void env_name(const char *name, char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "CHATD_");
    for (const char *p = name; *p && n + 1 < cap; p++)
        out[n++] = (*p == '-') ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
    out[n] = '\0';
}

static int set_listen(config *cfg, const char *value)
{
    const char *colon = strrchr(value, ':');
    if (!colon || colon == value)
        return -1;
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (errno || *end || port < 0 || port > 65535)
        return -1;
    size_t hlen = (size_t)(colon - value);
    if (value[0] == '[' && hlen >= 2 && value[hlen - 1] == ']') { /* [::1]:8080 */
        value++;
        hlen -= 2;
    }
    free(cfg->listen_host);
    cfg->listen_host = strndup(value, hlen);
    cfg->listen_port = (int)port;
    return 0;
}

static int set_option(config *cfg, const option_spec *o, const char *value, const char *source)
{
    char *base = (char *)cfg;
    switch (o->type) {
    case OPT_LISTEN:
        if (set_listen(cfg, value) == 0)
            return 0;
        break;
    case OPT_STRING: {
        char **slot = (char **)(base + o->offset);
        free(*slot);
        *slot = strdup(value);
        return 0;
    }
    case OPT_FLAG: /* a bare --flag on the command line; 0/1 from the environment */
    case OPT_INT: {
        char *end;
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (!errno && end != value && *end == '\0' && v >= o->min && v <= o->max) {
            *(int64_t *)(base + o->offset) = v;
            return 0;
        }
        fprintf(stderr, "chatd: %s: --%s must be an integer from %lld to %lld, got '%s'\n", source,
                o->name, (long long)o->min, (long long)o->max, value);
        return -1;
    }
    }
    fprintf(stderr, "chatd: %s: bad value for --%s: '%s'\n", source, o->name, value);
    return -1;
}

void config_print_help(const char *prog)
{
    printf("chatd %s: a real-time chat server (WebSocket gateway, server API, chat service)\n\n"
           "usage: %s [options]\n\n"
           "Every option can also be set by the environment variable shown; the command line\n"
           "wins over the environment.\n\n",
           CHATD_VERSION, prog);
    for (size_t i = 0; i < N_OPTIONS; i++) {
        char env[64];
        env_name(options[i].name, env, sizeof(env));
        printf("  --%-18s %s\n  %-20s env %s, default '%s'\n", options[i].name, options[i].help, "",
               env, options[i].defval);
    }
    printf("  --%-18s %s\n  --%-18s %s\n", "help", "print this help and exit", "version",
           "print the version and exit");
}

static void free_strings(config *cfg)
{
    char *base = (char *)cfg;
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (options[i].type == OPT_STRING) {
            char **slot = (char **)(base + options[i].offset);
            free(*slot);
            *slot = NULL;
        }
    free(cfg->listen_host);
    cfg->listen_host = NULL;
}

void config_free(config *cfg)
{
    free_strings(cfg);
}

int config_load(config *cfg, int argc, char **argv)
{
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (set_option(cfg, &options[i], options[i].defval, "default") != 0)
            return -1;
    for (size_t i = 0; i < N_OPTIONS; i++) {
        char env[64];
        env_name(options[i].name, env, sizeof(env));
        const char *value = getenv(env);
        if (value && set_option(cfg, &options[i], value, env) != 0)
            return -1;
    }

    struct option longopts[N_OPTIONS + 3];
    for (size_t i = 0; i < N_OPTIONS; i++)
        longopts[i] = (struct option){options[i].name,
                                      options[i].type == OPT_FLAG ? no_argument : required_argument,
                                      NULL, (int)i};
    longopts[N_OPTIONS] = (struct option){"help", no_argument, NULL, 'h'};
    longopts[N_OPTIONS + 1] = (struct option){"version", no_argument, NULL, 'V'};
    longopts[N_OPTIONS + 2] = (struct option){NULL, 0, NULL, 0};
    optind = 1;
    int idx, c;
    while ((c = getopt_long(argc, argv, "hV", longopts, &idx)) != -1) {
        if (c == 'h') {
            config_print_help(argv[0]);
            return 1;
        }
        if (c == 'V') {
            printf("chatd %s\n", CHATD_VERSION);
            return 1;
        }
        if (c < 0 || (size_t)c >= N_OPTIONS) {
            fprintf(stderr, "chatd: try --help\n");
            return -1;
        }
        if (set_option(cfg, &options[c], optarg ? optarg : "1", "command line") != 0)
            return -1;
    }
    if (optind < argc) {
        fprintf(stderr, "chatd: unexpected argument '%s' (try --help)\n", argv[optind]);
        return -1;
    }
    if (log_level_parse(cfg->log_level) < 0) {
        fprintf(stderr, "chatd: --log-level must be debug, info, warn, error or off\n");
        return -1;
    }
    if (cfg->ws_path[0] != '/' || (cfg->echo_path[0] && (cfg->echo_path[0] != '/' ||
                                                         !strcmp(cfg->echo_path, cfg->ws_path)))) {
        fprintf(stderr,
                "chatd: --ws-path and --echo-path must be distinct paths starting with /\n");
        return -1;
    }
    if (strcmp(cfg->durability, "full") != 0 && strcmp(cfg->durability, "normal") != 0) {
        fprintf(stderr, "chatd: --durability must be full or normal\n");
        return -1;
    }
    bool pg = strncmp(cfg->store, "postgres://", 11) == 0 ||
              strncmp(cfg->store, "postgresql://", 13) == 0;
    if (!pg && strcmp(cfg->store, "sqlite") != 0) {
        fprintf(stderr, "chatd: --store must be sqlite or a postgres:// (postgresql://) URI\n");
        return -1;
    }
    if (pg && cfg->store_connections < 2) {
        fprintf(stderr, "chatd: --store-connections must be at least 2 with PostgreSQL "
                        "(one writer, one reader)\n");
        return -1;
    }
    if (cfg->redis[0] && strncmp(cfg->redis, "redis://", 8) != 0) {
        fprintf(stderr, "chatd: --redis must be a redis://[:password@]host:port[/db] URI\n");
        return -1;
    }
    size_t id_len = strlen(cfg->node_id);
    if (id_len > 64 || strspn(cfg->node_id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                            "0123456789._-") != id_len) {
        fprintf(stderr, "chatd: --node-id must be 1-64 of A-Z a-z 0-9 . _ -\n");
        return -1;
    }
    if (cfg->ping_timeout <= cfg->ping_interval) {
        fprintf(stderr, "chatd: --ping-timeout must be larger than --ping-interval\n");
        return -1;
    }
    return 0;
}
