/* config: the option table, parsing, the configuration file, --help, the
 * example file and the SIGHUP reload (see config.h). */
#include "core/config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

#define CHATD_VERSION "0.1.0"

enum opt_type { OPT_STRING, OPT_INT, OPT_LISTEN, OPT_FLAG, OPT_CONFIG };

/* What a SIGHUP does with a changed option. R_RESTART is the default (0), so
 * an option is live only when someone checked that every reader takes the
 * value from the live struct at each use rather than caching it at start. */
enum reload_kind {
    R_RESTART = 0, /* logged "takes effect after a restart", old value kept */
    R_LIVE,        /* copied into the live struct; readers pick it up at their next use */
    R_HOOK,        /* applied by a module's reload hook (reload.h), copied if the hooks succeed */
};

typedef struct option_spec {
    const char *name; /* long option; env var is CHATD_ + upper-cased name */
    enum opt_type type;
    size_t offset;
    const char *defval;
    int64_t min, max;
    const char *help;
    enum reload_kind reload;
    /* extra check of a string value: NULL, or what is wrong with it */
    const char *(*check)(const char *value);
    bool secret; /* never logged */
} option_spec;

#define FIELD(f) offsetof(config, f)

static const char *check_log_level(const char *v)
{
    return log_level_parse(v) < 0 ? "must be debug, info, warn, error or off" : NULL;
}

static const char *check_log_format(const char *v)
{
    return log_format_parse(v) < 0 ? "must be text or json" : NULL;
}

static const char *check_durability(const char *v)
{
    return strcmp(v, "full") && strcmp(v, "normal") ? "must be full or normal" : NULL;
}

static const char *check_io(const char *v)
{
    return strcmp(v, "auto") && strcmp(v, "uring") && strcmp(v, "epoll")
               ? "must be auto, uring or epoll"
               : NULL;
}

static bool is_pg_uri(const char *v)
{
    return strncmp(v, "postgres://", 11) == 0 || strncmp(v, "postgresql://", 13) == 0;
}

static const char *check_store(const char *v)
{
    return !is_pg_uri(v) && strcmp(v, "sqlite") != 0
               ? "must be sqlite or a postgres:// (postgresql://) URI"
               : NULL;
}

static const char *check_redis(const char *v)
{
    return v[0] && strncmp(v, "redis://", 8) != 0
               ? "must be a redis://[:password@]host:port[/db] URI"
               : NULL;
}

static const char *check_node_id(const char *v)
{
    size_t n = strlen(v);
    return n > 64 || strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                               "0123456789._-") != n
               ? "must be 1-64 of A-Z a-z 0-9 . _ -"
               : NULL;
}

static const option_spec options[] = {
    {"config", OPT_CONFIG, FIELD(config_file), "", 0, 0,
     "configuration file of name = value lines (see chatd.conf.example); the environment and the "
     "command line win over it; re-read on SIGHUP",
     R_RESTART, NULL, false},
    {"listen", OPT_LISTEN, 0, "127.0.0.1:8080", 0, 0, "address and port to listen on (HOST:PORT)",
     R_RESTART, NULL, false},
    {"ws-path", OPT_STRING, FIELD(ws_path), "/ws", 0, 0, "path of the client WebSocket endpoint",
     R_RESTART, NULL, false},
    {"echo-path", OPT_STRING, FIELD(echo_path), "", 0, 0,
     "path of the diagnostic echo WebSocket endpoint (empty = off)", R_RESTART, NULL, false},
    {"web-root", OPT_STRING, FIELD(web_root), "web", 0, 0, "directory of static files served at /",
     R_RESTART, NULL, false},
    {"sdk-root", OPT_STRING, FIELD(sdk_root), "clients/js/src", 0, 0,
     "directory of the JavaScript SDK's modules, served at /sdk/ (docs/SDK.md)", R_RESTART, NULL,
     false},
    {"cors-origins", OPT_STRING, FIELD(cors_origins), "", 0, 0,
     "comma-separated origins allowed to call the HTTP API from a browser (* = any)", R_LIVE, NULL,
     false},
    {"ws-origins", OPT_STRING, FIELD(ws_origins), "", 0, 0,
     "comma-separated origins allowed to open WebSockets (empty = any)", R_LIVE, NULL, false},
    {"max-header-size", OPT_INT, FIELD(max_header_size), "8192", 256, 1 << 20,
     "bytes of request line + headers (431 above)", R_LIVE, NULL, false},
    {"max-headers", OPT_INT, FIELD(max_headers), "64", 4, 1024, "number of request headers (431)",
     R_LIVE, NULL, false},
    {"max-body", OPT_INT, FIELD(max_body), "1048576", 0, 1 << 30, "bytes of a request body (413)",
     R_LIVE, NULL, false},
    {"max-message", OPT_INT, FIELD(max_message), "1048576", 125, 1 << 30,
     "bytes of a WebSocket message, fragments added up (close 1009)", R_LIVE, NULL, false},
    {"max-outbuf", OPT_INT, FIELD(max_outbuf), "1048576", 4096, 1 << 30,
     "queued outgoing bytes per connection before a slow reader is closed (1008)", R_LIVE, NULL,
     false},
    {"event-rate", OPT_INT, FIELD(event_rate), "20", 0, 1000000,
     "transient events per second per connection, bursts of twice that (0 = unlimited)", R_LIVE,
     NULL, false},
    {"max-conns-per-ip", OPT_INT, FIELD(max_conns_per_ip), "1000", 0, 1000000,
     "open connections per client address; more are refused with 503 (0 = unlimited)", R_LIVE, NULL,
     false},
    {"max-conns-per-user", OPT_INT, FIELD(max_conns_per_user), "32", 0, 1000000,
     "WebSockets bound to one user; binding one more is refused (close 1008) (0 = unlimited)",
     R_LIVE, NULL, false},
    {"send-rate", OPT_INT, FIELD(send_rate), "20", 0, 1000000,
     "chat messages per second per user, bursts of twice that (429; 0 = unlimited)", R_LIVE, NULL,
     false},
    {"bind-rate", OPT_INT, FIELD(bind_rate), "30", 1, 1000000,
     "failed binds (bad tokens) per minute per address before binds from it are refused (429)",
     R_LIVE, NULL, false},
    {"max-group-members", OPT_INT, FIELD(max_group_members), "500", 2, 100000,
     "members a group may have, its owner included; adding past it answers 409 group_full", R_LIVE,
     NULL, false},
    {"presence-grace", OPT_INT, FIELD(presence_grace), "5000", 0, 3600000,
     "milliseconds a user stays online after their last socket closed, so a reload does not "
     "flap their presence",
     R_LIVE, NULL, false},
    {"register-rate", OPT_INT, FIELD(register_rate), "20", 1, 1000000,
     "sign-ups per hour per address (429)", R_RESTART, NULL, false},
    {"hash-queue", OPT_INT, FIELD(hash_queue), "16", 2, 100000,
     "password hashing jobs queued or running; sign-ups past half of it and logins past all of it "
     "get 503",
     R_LIVE, NULL, false},
    {"max-upload", OPT_INT, FIELD(max_upload), "10485760", 1024, 1 << 30,
     "bytes of a picture uploaded to POST /media (413 above); only /media takes bodies past "
     "--max-body",
     R_LIVE, NULL, false},
    {"upload-concurrency", OPT_INT, FIELD(upload_concurrency), "8", 1, 100000,
     "uploads to POST /media received or stored at once, past which they get 503 busy; memory "
     "for uploads stays under --max-upload times this",
     R_LIVE, NULL, false},
    {"ping-interval", OPT_INT, FIELD(ping_interval), "25", 1, 86400,
     "seconds of silence before the server pings a WebSocket", R_LIVE, NULL, false},
    {"ping-timeout", OPT_INT, FIELD(ping_timeout), "60", 1, 86400,
     "seconds of silence before a WebSocket is closed (1001)", R_LIVE, NULL, false},
    {"header-timeout", OPT_INT, FIELD(header_timeout), "10", 1, 3600,
     "seconds for a request's headers to arrive (408)", R_LIVE, NULL, false},
    {"keepalive-timeout", OPT_INT, FIELD(keepalive_timeout), "60", 1, 86400,
     "seconds an idle keep-alive HTTP connection is kept", R_LIVE, NULL, false},
    {"api-secret", OPT_STRING, FIELD(api_secret), "", 0, 0,
     "bearer secret of the server API /gateway/* (empty = API off, 403)", R_LIVE, NULL, true},
    {"store", OPT_STRING, FIELD(store), "sqlite", 0, 0,
     "sqlite (a database under --data-dir) or a PostgreSQL URI "
     "postgres://user:pass@host:port/db?sslmode=... that several chatd nodes can share",
     R_RESTART, check_store, true},
    {"store-connections", OPT_INT, FIELD(store_connections), "4", 1, 1000,
     "PostgreSQL connections per chatd: one writes (group commit), the others serve reads "
     "(at least 2 with PostgreSQL; SQLite uses one)",
     R_RESTART, NULL, false},
    {"data-dir", OPT_STRING, FIELD(data_dir), "./data", 0, 0,
     "directory of the SQLite database (unused with a PostgreSQL --store) and, unless "
     "--media-dir is set, of uploaded pictures",
     R_RESTART, NULL, false},
    {"media-dir", OPT_STRING, FIELD(media_dir), "", 0, 0,
     "directory of uploaded pictures, named by their SHA-256 (empty = <data-dir>/media; with "
     "several nodes it must be storage they all share)",
     R_RESTART, NULL, false},
    {"jwt-secret", OPT_STRING, FIELD(jwt_secret), "", 0, 0,
     "HS256 secret to accept JWTs issued by your site's backend (empty = off)", R_LIVE, NULL, true},
    {"token-ttl", OPT_INT, FIELD(token_ttl), "2592000", 60, 315360000,
     "seconds a login token stays valid", R_LIVE, NULL, false},
    {"max-text", OPT_INT, FIELD(max_text), "4096", 1, 1 << 20, "bytes of a chat message's data",
     R_LIVE, NULL, false},
    {"message-types", OPT_STRING, FIELD(message_types), "text,image,emoji", 0, 0,
     "comma-separated content types a chat message may have", R_LIVE, NULL, false},
    {"recall-window", OPT_INT, FIELD(recall_window), "120", 0, 31536000,
     "seconds after sending in which the sender may recall a message (POST /chat/recall; "
     "0 = recall off)",
     R_LIVE, NULL, false},
    {"page-limit", OPT_INT, FIELD(page_limit), "100", 1, 10000,
     "largest page of history or sync a request may ask for", R_LIVE, NULL, false},
    {"login-rate", OPT_INT, FIELD(login_rate), "10", 1, 100000,
     "login attempts per minute per address; failures per minute per username, past which "
     "the addresses that failed against it are refused (429)",
     R_RESTART, NULL, false},
    {"durability", OPT_STRING, FIELD(durability), "full", 0, 0,
     "full: fsync every group commit (survives power loss); normal: survives a crash of chatd "
     "(PostgreSQL: full keeps the server's synchronous_commit, normal sets it off for chatd)",
     R_RESTART, check_durability, false},
    {"redis", OPT_STRING, FIELD(redis), "", 0, 0,
     "redis://[:password@]host:port[/db]: cluster mode, nodes route pushes and share presence "
     "through this Redis (use with a PostgreSQL --store; empty = one node)",
     R_RESTART, check_redis, true},
    {"node-id", OPT_STRING, FIELD(node_id), "", 0, 0,
     "this node's name in the cluster, 1-64 of A-Z a-z 0-9 . _ - (empty = random, logged)",
     R_RESTART, check_node_id, false},
    {"io", OPT_STRING, FIELD(io), "auto", 0, 0,
     "how connection sockets are read and written: uring (io_uring), epoll, or auto (io_uring "
     "when the kernel allows it, else epoll; the log and /healthz say which)",
     R_RESTART, check_io, false},
    {"reuseport", OPT_FLAG, FIELD(reuseport), "0", 0, 1,
     "listen with SO_REUSEPORT, so several chatd processes on one host share the port "
     "(one per core, each a cluster node)",
     R_RESTART, NULL, false},
    {"gw-inner", OPT_STRING, FIELD(gw_inner), "", 0, 0,
     "GatewayWorker inner protocol on IPv4:PORT for GatewayClient and BusinessWorkers (announced "
     "to the Register, written into client_ids, which become 20 hex; firewall it; empty = off)",
     R_RESTART, NULL, false},
    {"gw-register", OPT_STRING, FIELD(gw_register), "", 0, 0,
     "serve GatewayWorker's Register on HOST:PORT (firewall it; empty = off)", R_RESTART, NULL,
     false},
    {"gw-register-address", OPT_STRING, FIELD(gw_register_address), "", 0, 0,
     "the Register (HOST:PORT) this node announces its --gw-inner address to (empty = its own "
     "--gw-register)",
     R_RESTART, NULL, false},
    {"gw-secret", OPT_STRING, FIELD(gw_secret), "", 0, 0,
     "GatewayWorker secret_key for the Register and the inner port (empty = none)", R_RESTART, NULL,
     true},
    {"gw-max-frame", OPT_INT, FIELD(gw_max_frame), "2097152", 1024, 1 << 30,
     "bytes of one inner-protocol frame (pack_len); larger closes the connection", R_RESTART, NULL,
     false},
    {"gw-max-outbuf", OPT_INT, FIELD(gw_max_outbuf), "16777216", 65536, 1 << 30,
     "bytes queued to one inner or Register connection (a worker's events, replies) before it "
     "is closed as a slow reader",
     R_RESTART, NULL, false},
    /* production (issue 12) */
    {"tls-cert", OPT_STRING, FIELD(tls_cert), "", 0, 0,
     "PEM certificate (chain allowed) to serve https and wss on --listen (with --tls-key; "
     "re-read on SIGHUP; empty = plain)",
     R_HOOK, NULL, false},
    {"tls-key", OPT_STRING, FIELD(tls_key), "", 0, 0, "PEM private key of --tls-cert", R_HOOK, NULL,
     false},
    {"ws-deflate", OPT_FLAG, FIELD(ws_deflate), "0", 0, 1,
     "offer permessage-deflate (RFC 7692) to WebSocket clients that ask for it", R_RESTART, NULL,
     false},
    {"ws-deflate-threshold", OPT_INT, FIELD(ws_deflate_threshold), "256", 0, 1 << 30,
     "messages shorter than this many bytes are sent uncompressed", R_RESTART, NULL, false},
    {"metrics", OPT_FLAG, FIELD(metrics), "0", 0, 1,
     "serve GET /metrics (Prometheus text format) on --listen", R_RESTART, NULL, false},
    {"metrics-listen", OPT_STRING, FIELD(metrics_listen), "", 0, 0,
     "serve GET /metrics on this HOST:PORT instead (empty = none, or on --listen with --metrics)",
     R_RESTART, NULL, false},
    {"log-format", OPT_STRING, FIELD(log_format), "text", 0, 0,
     "text, or json (one JSON object per line)", R_LIVE, check_log_format, false},
    {"webhook-url", OPT_STRING, FIELD(webhook_url), "", 0, 0,
     "POST a signed event here when a message is stored for a user with no connected device "
     "(http:// or https://; empty = off)",
     R_RESTART, NULL, false},
    {"webhook-secret", OPT_STRING, FIELD(webhook_secret), "", 0, 0,
     "HMAC-SHA256 key that signs each webhook body (X-Chatd-Signature)", R_RESTART, NULL, true},
    {"webhook-preview", OPT_INT, FIELD(webhook_preview), "64", 0, 4096,
     "characters of the message text in a webhook event (0 = none)", R_RESTART, NULL, false},
    {"webhook-queue", OPT_INT, FIELD(webhook_queue), "10000", 1, 10000000,
     "webhook events waiting to be delivered; more are dropped and counted", R_RESTART, NULL,
     false},
    {"log-level", OPT_STRING, FIELD(log_level), "info", 0, 0, "debug, info, warn, error or off",
     R_LIVE, check_log_level, false},
};
#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

/* A reason for refusing the configuration, kept for the caller. */
typedef struct errbuf {
    char *buf;
    size_t cap;
} errbuf;

static int fail(errbuf *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(errbuf *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (e->cap)
        vsnprintf(e->buf, e->cap, fmt, ap);
    va_end(ap);
    return -1;
}

static void env_name(const char *name, char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "CHATD_");
    for (const char *p = name; *p && n + 1 < cap; p++)
        out[n++] = (*p == '-') ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
    out[n] = '\0';
}

static const option_spec *find_option(const char *name)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (strcmp(options[i].name, name) == 0)
            return &options[i];
    return NULL;
}

static int set_listen(config *cfg, const char *value)
{
    const char *colon = strrchr(value, ':');
    if (!colon || colon == value)
        return -1;
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end || port < 0 || port > 65535)
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

/* Booleans: a bare --flag on the command line is "1"; the environment and
 * the file may say true/false, yes/no, on/off or 1/0. */
static int parse_bool(const char *v)
{
    static const char *const yes[] = {"1", "true", "yes", "on"}, *const no[] = {"0", "false", "no",
                                                                                "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0)
            return 1;
        if (strcasecmp(v, no[i]) == 0)
            return 0;
    }
    return -1;
}

/* where: "command line", "CHATD_X", "file:12" or "default". */
static int set_option(config *cfg, const option_spec *o, const char *value, const char *where,
                      errbuf *e)
{
    char *base = (char *)cfg;
    const char *shown = o->secret ? "(hidden)" : value; /* for error messages */
    /* "--max-message" on the command line and in the environment, the bare
     * name in a file ("chatd.conf:3: max-message ...") */
    char name[64];
    snprintf(name, sizeof(name), "%s%s", strchr(where, ':') ? "" : "--", o->name);
    switch (o->type) {
    case OPT_LISTEN:
        if (set_listen(cfg, value) == 0)
            return 0;
        return fail(e, "%s: %s must be HOST:PORT, got '%s'", where, name, shown);
    case OPT_CONFIG:
    case OPT_STRING: {
        const char *why = o->check ? o->check(value) : NULL;
        if (why)
            return fail(e, "%s: %s %s, got '%s'", where, name, why, shown);
        char **slot = (char **)(base + o->offset);
        free(*slot);
        *slot = strdup(value);
        return 0;
    }
    case OPT_FLAG: {
        int b = parse_bool(value);
        if (b >= 0) {
            *(int64_t *)(base + o->offset) = b;
            return 0;
        }
        return fail(e, "%s: %s must be true or false (yes/no, on/off, 1/0), got '%s'", where, name,
                    shown);
    }
    case OPT_INT: {
        char *end;
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (!errno && end != value && *end == '\0' && v >= o->min && v <= o->max) {
            *(int64_t *)(base + o->offset) = v;
            return 0;
        }
        return fail(e, "%s: %s must be an integer from %lld to %lld, got '%s'", where, name,
                    (long long)o->min, (long long)o->max, shown);
    }
    }
    return fail(e, "%s: bad value for %s: '%s'", where, name, shown);
}

/* ---- the file ------------------------------------------------------------ */

/* Parses one line in place. Returns 0 with *name = NULL for a blank or
 * comment line, 0 with name and value set, or -1 with the reason in e. */
static int parse_line(char *line, const char *where, char **name, char **value, errbuf *e)
{
    *name = *value = NULL;
    char *p = line;
    while (isspace((unsigned char)*p))
        p++;
    if (*p == '\0' || *p == '#')
        return 0;
    char *n = p;
    while (*p && (isalnum((unsigned char)*p) || *p == '-' || *p == '_'))
        p++;
    char *n_end = p;
    while (*p == ' ' || *p == '\t')
        p++;
    if (n_end == n || *p != '=') {
        /* only the name is shown: the rest of such a line may be a secret
         * written without its '=' (api-secret hunter2) */
        if (n_end == n)
            return fail(e, "%s: expected 'name = value', the line does not start with a name",
                        where);
        return fail(e, "%s: expected 'name = value' after '%.*s' (no '=')", where,
                    (int)(n_end - n > 60 ? 60 : n_end - n), n);
    }
    *n_end = '\0';
    *name = n;
    p++;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '"') { /* "quoted", with \" and \\ */
        char *out = ++p, *v = out;
        for (;; p++) {
            if (*p == '\0' || *p == '\n')
                return fail(e, "%s: %s: the quote is not closed", where, n);
            if (*p == '"')
                break;
            if (*p == '\\' && (p[1] == '"' || p[1] == '\\'))
                p++;
            *out++ = *p;
        }
        *out = '\0';
        p++;
        while (isspace((unsigned char)*p))
            p++;
        if (*p && *p != '#')
            return fail(e, "%s: %s: text after the closing quote", where, n);
        *value = v;
        return 0;
    }
    char *v = p, *end = p;
    for (; *p && *p != '\n' && *p != '\r'; p++) {
        if (*p == '#' && (p == v || p[-1] == ' ' || p[-1] == '\t'))
            break; /* a comment after the value */
        if (!isspace((unsigned char)*p))
            end = p + 1;
    }
    *end = '\0';
    if (*v == '\0')
        return fail(e, "%s: missing value for %s (an empty string is written \"\")", where, n);
    *value = v;
    return 0;
}

static int read_file(config *cfg, const char *path, errbuf *e)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return fail(e, "%s: cannot read the configuration file: %s", path, strerror(errno));
    char line[8192], where[600];
    int lineno = 0, r = 0;
    while (r == 0 && fgets(line, sizeof(line), f)) {
        lineno++;
        snprintf(where, sizeof(where), "%s:%d", path, lineno);
        if (!strchr(line, '\n') && !feof(f)) {
            r = fail(e, "%s: line longer than %zu bytes", where, sizeof(line) - 2);
            break;
        }
        char *name, *value;
        r = parse_line(line, where, &name, &value, e);
        if (r < 0 || !name)
            continue;
        const option_spec *o = find_option(name);
        if (!o)
            r = fail(e, "%s: unknown option '%s' (chatd --help lists them)", where, name);
        else if (o->type == OPT_CONFIG)
            r = fail(e, "%s: config cannot be set inside a configuration file", where);
        else
            r = set_option(cfg, o, value, where, e);
    }
    if (r == 0 && ferror(f))
        r = fail(e, "%s: cannot read the configuration file: %s", path, strerror(errno));
    fclose(f);
    return r;
}

/* ---- help and the example ------------------------------------------------ */

void config_print_help(const char *prog)
{
    printf("chatd %s: a real-time chat server (WebSocket gateway, server API, chat service)\n\n"
           "usage: %s [options]\n\n"
           "Every option can also be set by the environment variable shown or in the --config\n"
           "file (name = value); the command line wins over the environment, which wins over\n"
           "the file.\n\n",
           CHATD_VERSION, prog);
    for (size_t i = 0; i < N_OPTIONS; i++) {
        char env[64];
        env_name(options[i].name, env, sizeof(env));
        printf("  --%-18s %s\n  %-20s env %s, default '%s'\n", options[i].name, options[i].help, "",
               env, options[i].defval);
    }
    printf("  --%-18s %s\n  --%-18s %s\n  --%-18s %s\n", "help", "print this help and exit",
           "version", "print the version and exit", "print-config-example",
           "print chatd.conf.example (every option at its default) and exit");
}

/* Writes text as "# " lines of at most 78 columns. */
static void print_wrapped(FILE *out, const char *text)
{
    const size_t width = 76;
    while (*text) {
        size_t n = strlen(text);
        if (n > width) {
            n = width;
            while (n > 0 && text[n] != ' ')
                n--;
            if (n == 0)
                n = width;
        }
        fprintf(out, "# %.*s\n", (int)n, text);
        text += n;
        while (*text == ' ')
            text++;
    }
}

static void print_value(FILE *out, const char *v)
{
    if (*v && !strpbrk(v, " \t#\"\\")) {
        fputs(v, out);
        return;
    }
    fputc('"', out);
    for (; *v; v++) {
        if (*v == '"' || *v == '\\')
            fputc('\\', out);
        fputc(*v, out);
    }
    fputc('"', out);
}

void config_print_example(FILE *out)
{
    fputs("# chatd.conf.example: every option of chatd, commented out at its default.\n"
          "# Generated by `chatd --print-config-example`; a test keeps it in sync.\n"
          "#\n"
          "# Use: chatd --config /etc/chatd/chatd.conf (or CHATD_CONFIG=/etc/chatd/chatd.conf).\n"
          "# Syntax: one `name = value` per line, with the names of the command-line\n"
          "# options (without --). Blank lines are ignored; # starts a comment, on a line\n"
          "# of its own or after a value and a blank. Put a value in \"double quotes\"\n"
          "# when it has blanks or a #, or is empty (\\\" and \\\\ inside); a bare\n"
          "# `name =` is an error. Booleans: true/false, yes/no, on/off, 1/0.\n"
          "# Precedence: command line > environment (CHATD_*) > this file > default.\n"
          "# An error (unknown option, bad or missing value) names the file and line, and\n"
          "# chatd exits with status 2.\n"
          "#\n"
          "# SIGHUP (systemctl reload chatd) re-reads the file, the environment and the\n"
          "# command line: options marked \"SIGHUP: applied at once\" change at run time\n"
          "# (each change is logged); the others are logged as needing a restart and keep\n"
          "# their old value. A file with an error keeps the whole old configuration.\n",
          out);
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const option_spec *o = &options[i];
        if (o->type == OPT_CONFIG)
            continue;
        char env[64];
        env_name(o->name, env, sizeof(env));
        fputs("\n", out);
        print_wrapped(out, o->help);
        bool cluster_restart = o->offset == FIELD(max_message) || o->offset == FIELD(max_body);
        fprintf(out, "# env %s; SIGHUP: %s\n#%s = ", env,
                o->reload == R_RESTART ? "needs a restart"
                : cluster_restart      ? "applied at once (with --redis: needs a restart)"
                                       : "applied at once",
                o->name);
        print_value(out, o->defval);
        fputs("\n", out);
    }
}

/* ---- loading ------------------------------------------------------------- */

static void free_strings(config *cfg)
{
    char *base = (char *)cfg;
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (options[i].type == OPT_STRING || options[i].type == OPT_CONFIG) {
            char **slot = (char **)(base + options[i].offset);
            free(*slot);
            *slot = NULL;
        }
    free(cfg->listen_host);
    cfg->listen_host = NULL;
}

struct config_retired {
    struct config_retired *next;
    char *s;
};

void config_free(config *cfg)
{
    free_strings(cfg);
    while (cfg->retired) {
        struct config_retired *r = cfg->retired;
        cfg->retired = r->next;
        free(r->s);
        free(r);
    }
}

/* The options given on the command line, in order, collected before the
 * file is read so that they can be applied after it. */
typedef struct cmdline_opt {
    const option_spec *o;
    const char *value;
} cmdline_opt;

/* getopt_long's value for options[i] is OPT_VAL + i, clear of '?', ':' and
 * the short options. */
#define OPT_VAL 1000

enum { CMD_OK = 0, CMD_HELP = 1, CMD_VERSION = 2, CMD_EXAMPLE = 3, CMD_ERROR = -1 };

static int scan_argv(int argc, char **argv, cmdline_opt *out, int *n_out, errbuf *e)
{
    struct option longopts[N_OPTIONS + 4];
    for (size_t i = 0; i < N_OPTIONS; i++)
        longopts[i] = (struct option){options[i].name,
                                      options[i].type == OPT_FLAG ? no_argument : required_argument,
                                      NULL, OPT_VAL + (int)i};
    longopts[N_OPTIONS] = (struct option){"help", no_argument, NULL, 'h'};
    longopts[N_OPTIONS + 1] = (struct option){"version", no_argument, NULL, 'V'};
    longopts[N_OPTIONS + 2] = (struct option){"print-config-example", no_argument, NULL, 'E'};
    longopts[N_OPTIONS + 3] = (struct option){NULL, 0, NULL, 0};
    /* Our own copy of the pointers: glibc permutes the array it parses. */
    char **args = malloc(sizeof(char *) * ((size_t)argc + 1));
    if (!args)
        return fail(e, "out of memory");
    memcpy(args, argv, sizeof(char *) * (size_t)argc);
    args[argc] = NULL;
    optind = 0; /* glibc: 0 starts a fresh scan, also the second time */
    opterr = 0;
    int idx, c, r = CMD_OK;
    *n_out = 0;
    while (r == CMD_OK && (c = getopt_long(argc, args, ":hV", longopts, &idx)) != -1) {
        if (c == 'h')
            r = CMD_HELP;
        else if (c == 'V')
            r = CMD_VERSION;
        else if (c == 'E')
            r = CMD_EXAMPLE;
        else if (c == ':')
            r = fail(e, "command line: %s needs a value", args[optind - 1]);
        else if (c < OPT_VAL || (size_t)(c - OPT_VAL) >= N_OPTIONS)
            r = fail(e, "command line: unknown option '%s' (try --help)", args[optind - 1]);
        else
            out[(*n_out)++] = (cmdline_opt){&options[c - OPT_VAL], optarg ? optarg : "1"};
    }
    if (r == CMD_OK && optind < argc)
        r = fail(e, "command line: unexpected argument '%s' (try --help)", args[optind]);
    free(args);
    return r;
}

/* What no single option can check: how options fit together. */
static int check_together(const config *cfg, errbuf *e)
{
    if (cfg->ws_path[0] != '/' ||
        (cfg->echo_path[0] && (cfg->echo_path[0] != '/' || !strcmp(cfg->echo_path, cfg->ws_path))))
        return fail(e, "--ws-path and --echo-path must be distinct paths starting with /");
    if (is_pg_uri(cfg->store) && cfg->store_connections < 2)
        return fail(e, "--store-connections must be at least 2 with PostgreSQL "
                       "(one writer, one reader)");
    if (cfg->ping_timeout <= cfg->ping_interval)
        return fail(e, "--ping-timeout must be larger than --ping-interval");
    return 0;
}

int config_read(config *cfg, int argc, char **argv, char *err, size_t errlen)
{
    errbuf e = {err, errlen};
    if (errlen)
        err[0] = '\0';
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (set_option(cfg, &options[i], options[i].defval, "default", &e) != 0)
            return -1;
    cmdline_opt *cmd = calloc((size_t)argc + 1, sizeof(*cmd));
    if (!cmd)
        return fail(&e, "out of memory");
    int n_cmd = 0;
    int r = scan_argv(argc, argv, cmd, &n_cmd, &e);
    if (r != CMD_OK) {
        free(cmd);
        if (r == CMD_HELP)
            config_print_help(argv[0]);
        else if (r == CMD_VERSION)
            printf("chatd %s\n", CHATD_VERSION);
        else if (r == CMD_EXAMPLE)
            config_print_example(stdout);
        return r > 0 ? 1 : -1;
    }
    /* The file first: the environment and the command line override it. */
    const char *file = getenv("CHATD_CONFIG");
    for (int i = 0; i < n_cmd; i++)
        if (cmd[i].o->type == OPT_CONFIG)
            file = cmd[i].value;
    if (file && file[0]) {
        r = set_option(cfg, find_option("config"), file, "config", &e);
        if (r == 0)
            r = read_file(cfg, file, &e);
    }
    for (size_t i = 0; r == 0 && i < N_OPTIONS; i++) {
        char env[64];
        env_name(options[i].name, env, sizeof(env));
        const char *value = getenv(env);
        if (value && options[i].type != OPT_CONFIG)
            r = set_option(cfg, &options[i], value, env, &e);
    }
    for (int i = 0; r == 0 && i < n_cmd; i++)
        if (cmd[i].o->type != OPT_CONFIG)
            r = set_option(cfg, cmd[i].o, cmd[i].value, "command line", &e);
    free(cmd);
    if (r == 0)
        r = check_together(cfg, &e);
    return r;
}

static int saved_argc;
static char **saved_argv;

int config_load(config *cfg, int argc, char **argv)
{
    char err[1024];
    int r = config_read(cfg, argc, argv, err, sizeof(err));
    if (r < 0)
        fprintf(stderr, "chatd: %s\n", err);
    saved_argc = argc;
    saved_argv = argv; /* main's argv lives as long as the process */
    return r;
}

int config_reread(config *cfg, char *err, size_t errlen)
{
    if (!saved_argv) {
        memset(cfg, 0, sizeof(*cfg));
        snprintf(err, errlen, "config_load was not called");
        return -1;
    }
    int r = config_read(cfg, saved_argc, saved_argv, err, errlen);
    return r == 0 ? 0 : -1;
}

/* ---- reload -------------------------------------------------------------- */

static bool option_equal(const option_spec *o, const config *a, const config *b)
{
    const char *pa = (const char *)a + o->offset, *pb = (const char *)b + o->offset;
    switch (o->type) {
    case OPT_LISTEN:
        return a->listen_port == b->listen_port && strcmp(a->listen_host, b->listen_host) == 0;
    case OPT_STRING:
    case OPT_CONFIG:
        return strcmp(*(char *const *)pa, *(char *const *)pb) == 0;
    case OPT_INT:
    case OPT_FLAG:
        return *(const int64_t *)pa == *(const int64_t *)pb;
    }
    return true;
}

static void retire(config *live, char *s)
{
    struct config_retired *r = malloc(sizeof(*r));
    if (!r) {
        /* Leaking beats a dangling pointer. */
        return;
    }
    r->s = s;
    r->next = live->retired;
    live->retired = r;
}

static void describe(const option_spec *o, const config *cfg, char *out, size_t cap)
{
    const char *p = (const char *)cfg + o->offset;
    if (o->type == OPT_STRING)
        snprintf(out, cap, "'%s'", *(char *const *)p);
    else
        snprintf(out, cap, "%lld", (long long)*(const int64_t *)p);
}

int config_reload_apply(config *live, config *next, int hooks_ok)
{
    int changed = 0;
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const option_spec *o = &options[i];
        if (option_equal(o, live, next))
            continue;
        changed++;
        enum reload_kind kind = o->reload;
        /* In cluster mode the bus sized its largest message from these at
         * start (cluster_init): a larger message would not cross it. */
        if (live->redis[0] && (o->offset == FIELD(max_message) || o->offset == FIELD(max_body)))
            kind = R_RESTART;
        if (kind == R_RESTART) {
            log_warn("reload: %s changed; takes effect after a restart", o->name);
            continue;
        }
        if (kind == R_HOOK && !hooks_ok) {
            log_warn("reload: %s changed but was not applied (see above); the old one stays",
                     o->name);
            continue;
        }
        if (o->secret) {
            log_info("reload: %s changed", o->name);
        } else {
            char before[160], after[160];
            describe(o, live, before, sizeof(before));
            describe(o, next, after, sizeof(after));
            log_info("reload: %s %s -> %s", o->name, before, after);
        }
        char *lp = (char *)live + o->offset, *np = (char *)next + o->offset;
        if (o->type == OPT_STRING) {
            retire(live, *(char **)lp);
            *(char **)lp = *(char **)np;
            *(char **)np = NULL; /* moved: config_free(next) must not free it */
        } else {
            *(int64_t *)lp = *(int64_t *)np;
        }
    }
    return changed;
}
