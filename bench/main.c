/* main: chatd-bench's command line: picks the subcommand, parses the options every scenario
 * shares into g_opt, prepares the process (file limit, loop) and runs the scenario. */
#include "bench.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bench_opts g_opt;
uv_loop_t *g_loop;

static const struct {
    const char *name;
    int (*run)(void);
    const char *usage;
} commands[] = {
    {"conns", cmd_conns,
     "--url ws[s]://HOST:PORT/ws -n N [--server-pid PID] [--hold S] [--concurrency C]"},
    {"echo", cmd_echo,
     "--url ws://HOST:PORT/echo|tcp://HOST:PORT --conns N --size B --window W --duration D "
     "[--raw] [--binary]"},
    {"route", cmd_route,
     "--url ws://HOST:PORT/ws --api-secret S --pairs M --size B --window W --duration D "
     "[--rate R] [--url2 ws://HOST2:PORT2/ws]"},
    {"fanout", cmd_fanout,
     "--url ws://HOST:PORT/ws --api-secret S --members K --size B --duration D [--window W] "
     "[--url2 ws://HOST2:PORT2/ws] [--spread]"},
    {"chat", cmd_chat, "--url ws://HOST:PORT/ws --users U --size B --window W --duration D"},
    {"groups", cmd_groups,
     "--url ws://HOST:PORT/ws [--users U] [--group-sizes 10,100,500] [--senders S] "
     "[--window W] [--rate R] [--size B] [--users-file F] --duration D"},
    {"loadtest", cmd_loadtest,
     "--load-test PATH --url ws://HOST:PORT/ --conns N --size B --duration D"},
    {"storm", cmd_storm, "--url ws://HOST:PORT/ws --api-secret S -n N [--concurrency C]"},
    {"gwpush", cmd_gwpush,
     "--url ws://HOST:PORT/ws --api-secret S -n N --gw-mode per-call|persistent|http "
     "[--gw-addr HOST:PORT] [--gw-secret K] [--gw-conns C] [--size B] [--window W] [--rate R] "
     "--duration D"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: chatd-bench COMMAND [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-7s %s\n", commands[i].name, commands[i].usage);
    fprintf(f, "\ncommon options:\n"
               "  --json            one JSON object per result on stdout (table on stderr)\n"
               "  --label L         name of the server under test, copied into the result\n"
               "  --note TEXT       free text copied into the JSON result\n"
               "  --server-pid PID  report the server's CPU use (and RSS for conns) from /proc\n"
               "  --watch-pid NAME=PID  also report PID's CPU use as NAME_cpu (up to 4; e.g.\n"
               "                    a second cluster node, redis); not counted as other_cpu\n"
               "  --url2 URL        route, fanout: odd-numbered clients connect to URL (a second\n"
               "                    cluster node); API calls still go to --api / --url's node\n"
               "  --api URL         server API base (default http://HOST:PORT of --url)\n"
               "  --warmup S        seconds run before measuring (default 1, 0 if duration < 3)\n"
               "  --timeout S       seconds allowed for setup (default 60)\n"
               "  --concurrency C   connections being opened at once (default 256)\n"
               "  --sources K       spread connections over 127.0.0.1..127.0.0.K (default: as\n"
               "                    many as the ephemeral port range needs)\n"
               "  --api-conns N     keep-alive connections to the server API (default 4)\n"
               "  --spread          fanout: broadcasts round-robin over the --api-conns\n"
               "                    connections (default: all pipelined on the first)\n"
               "  --ws-deflate      offer permessage-deflate on every WebSocket and inflate\n"
               "                    compressed messages (each distinct one once, see wsc.h)\n"
               "  --inflate-all     with --ws-deflate: inflate every compressed message\n"
               "  --tls-ca FILE     wss://, https:// URLs: verify the server with this CA\n"
               "                    (default: TLS without certificate verification)\n"
               "  --quiet-cores Q   echo, route, loadtest: leave seconds in which other\n"
               "                    processes used more than Q cores out of the rate (the\n"
               "                    result says how many; default: keep every second)\n"
               "\ngwpush options (pushes through chatd's GatewayWorker inner port, --gw-inner):\n"
               "  --gw-mode M       per-call: a new TCP connection per push (as GatewayClient\n"
               "                    from php-fpm); persistent: --gw-conns connections, frames\n"
               "                    pipelined; http: POST /gateway/send_to_uid, keep-alive\n"
               "  --gw-addr H:P     the inner port (per-call, persistent)\n"
               "  --gw-secret K     secret_key: a 202 auth frame opens each inner connection\n"
               "  --gw-conns C      persistent: inner connections (default 4)\n"
               "\ngroups options (durable group messages next to 1:1 ones, issue 11):\n"
               "  --group-sizes L   members per group, comma separated (default 10,100,500);\n"
               "                    --users U (default: the largest) are split into U/M groups\n"
               "  --senders S       members of each group that send (default 1)\n"
               "  --rate R          open loop: R messages/s per point over all senders (default:\n"
               "                    closed loop, --window unacked per sender)\n"
               "  --users-file F    \"id token\" lines: read when it has --users users, else\n"
               "                    written after registering (skips hashing next time)\n");
}

static double num_arg(const char *name, const char *v)
{
    char *end;
    double d = strtod(v, &end);
    if (end == v || *end || d < 0) {
        fprintf(stderr, "chatd-bench: --%s wants a non-negative number, not '%s'\n", name, v);
        exit(EXIT_USAGE);
    }
    return d;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    int (*run)(void) = NULL;
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) {
            run = commands[i].run;
            g_opt.cmd = commands[i].name;
        }
    if (!run) {
        fprintf(stderr, "chatd-bench: unknown command '%s'\n", argv[1]);
        usage(stderr);
        return EXIT_USAGE;
    }
    g_opt.n = -1;
    g_opt.conns = -1;
    g_opt.pairs = -1;
    g_opt.members = -1;
    g_opt.users = -1;
    g_opt.size = -1;
    g_opt.window = -1;
    g_opt.duration = 5;
    g_opt.warmup = -1;
    g_opt.timeout = 60;
    g_opt.concurrency = 256;
    g_opt.api_conns = 4;
    g_opt.quiet_cores = -1;

    enum {
        O_URL = 256,
        O_URL2,
        O_WATCH,
        O_API,
        O_SECRET,
        O_LABEL,
        O_NOTE,
        O_CONNS,
        O_PAIRS,
        O_MEMBERS,
        O_USERS,
        O_SIZE,
        O_WINDOW,
        O_CONC,
        O_SOURCES,
        O_APICONNS,
        O_RATE,
        O_DURATION,
        O_WARMUP,
        O_HOLD,
        O_TIMEOUT,
        O_PID,
        O_JSON,
        O_RAW,
        O_BINARY,
        O_SPREAD,
        O_GW_MODE,
        O_GW_ADDR,
        O_GW_SECRET,
        O_GW_CONNS,
        O_WS_DEFLATE,
        O_INFLATE_ALL,
        O_TLS_CA,
        O_SENDERS,
        O_GROUP_SIZES,
        O_USERS_FILE,
        O_QUIET,
        O_LOAD_TEST
    };
    static const struct option longopts[] = {
        {"url", required_argument, 0, O_URL},
        {"url2", required_argument, 0, O_URL2},
        {"watch-pid", required_argument, 0, O_WATCH},
        {"api", required_argument, 0, O_API},
        {"api-secret", required_argument, 0, O_SECRET},
        {"label", required_argument, 0, O_LABEL},
        {"note", required_argument, 0, O_NOTE},
        {"conns", required_argument, 0, O_CONNS},
        {"pairs", required_argument, 0, O_PAIRS},
        {"members", required_argument, 0, O_MEMBERS},
        {"users", required_argument, 0, O_USERS},
        {"size", required_argument, 0, O_SIZE},
        {"window", required_argument, 0, O_WINDOW},
        {"concurrency", required_argument, 0, O_CONC},
        {"sources", required_argument, 0, O_SOURCES},
        {"api-conns", required_argument, 0, O_APICONNS},
        {"rate", required_argument, 0, O_RATE},
        {"duration", required_argument, 0, O_DURATION},
        {"warmup", required_argument, 0, O_WARMUP},
        {"hold", required_argument, 0, O_HOLD},
        {"timeout", required_argument, 0, O_TIMEOUT},
        {"server-pid", required_argument, 0, O_PID},
        {"json", no_argument, 0, O_JSON},
        {"raw", no_argument, 0, O_RAW},
        {"binary", no_argument, 0, O_BINARY},
        {"spread", no_argument, 0, O_SPREAD},
        {"gw-mode", required_argument, 0, O_GW_MODE},
        {"gw-addr", required_argument, 0, O_GW_ADDR},
        {"gw-secret", required_argument, 0, O_GW_SECRET},
        {"gw-conns", required_argument, 0, O_GW_CONNS},
        {"ws-deflate", no_argument, 0, O_WS_DEFLATE},
        {"inflate-all", no_argument, 0, O_INFLATE_ALL},
        {"tls-ca", required_argument, 0, O_TLS_CA},
        {"senders", required_argument, 0, O_SENDERS},
        {"group-sizes", required_argument, 0, O_GROUP_SIZES},
        {"users-file", required_argument, 0, O_USERS_FILE},
        {"quiet-cores", required_argument, 0, O_QUIET},
        {"load-test", required_argument, 0, O_LOAD_TEST},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    optind = 2;
    int ch;
    while ((ch = getopt_long(argc, argv, "n:h", longopts, NULL)) != -1) {
        const char *name = "";
        for (const struct option *o = longopts; o->name; o++)
            if (o->val == ch)
                name = o->name;
        switch (ch) {
        case 'h':
            usage(stdout);
            return 0;
        case 'n':
            g_opt.n = (long)num_arg("n", optarg);
            break;
        case O_URL:
            g_opt.url = optarg;
            break;
        case O_URL2:
            g_opt.url2 = optarg;
            break;
        case O_WATCH: {
            const char *eq = strchr(optarg, '=');
            size_t nl = eq ? (size_t)(eq - optarg) : 0;
            if (!eq || nl == 0 || nl > 32 ||
                strspn(optarg, "abcdefghijklmnopqrstuvwxyz"
                               "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                               "0123456789_") != nl) {
                fprintf(stderr,
                        "chatd-bench: --watch-pid wants NAME=PID (NAME: [A-Za-z0-9_]"
                        ", 1-32), not '%s'\n",
                        optarg);
                return EXIT_USAGE;
            }
            if (g_opt.nwatch == BENCH_MAX_WATCH) {
                fprintf(stderr, "chatd-bench: at most %d --watch-pid\n", BENCH_MAX_WATCH);
                return EXIT_USAGE;
            }
            char *wname = strndup(optarg, nl);
            if (!wname)
                return EXIT_RUN_FAILED;
            g_opt.watch_name[g_opt.nwatch] = wname;
            g_opt.watch_pid[g_opt.nwatch] = (int)num_arg("watch-pid", eq + 1);
            g_opt.nwatch++;
            break;
        }
        case O_API:
            g_opt.api_url = optarg;
            break;
        case O_SECRET:
            g_opt.api_secret = optarg;
            break;
        case O_LABEL:
            g_opt.label = optarg;
            break;
        case O_NOTE:
            g_opt.note = optarg;
            break;
        case O_CONNS:
            g_opt.conns = (long)num_arg(name, optarg);
            break;
        case O_PAIRS:
            g_opt.pairs = (long)num_arg(name, optarg);
            break;
        case O_MEMBERS:
            g_opt.members = (long)num_arg(name, optarg);
            break;
        case O_USERS:
            g_opt.users = (long)num_arg(name, optarg);
            break;
        case O_SIZE:
            g_opt.size = (long)num_arg(name, optarg);
            break;
        case O_WINDOW:
            g_opt.window = (long)num_arg(name, optarg);
            break;
        case O_CONC:
            g_opt.concurrency = (long)num_arg(name, optarg);
            break;
        case O_SOURCES:
            g_opt.sources = (long)num_arg(name, optarg);
            break;
        case O_APICONNS:
            g_opt.api_conns = (long)num_arg(name, optarg);
            break;
        case O_RATE:
            g_opt.rate = num_arg(name, optarg);
            break;
        case O_DURATION:
            g_opt.duration = num_arg(name, optarg);
            break;
        case O_WARMUP:
            g_opt.warmup = num_arg(name, optarg);
            break;
        case O_HOLD:
            g_opt.hold = num_arg(name, optarg);
            break;
        case O_TIMEOUT:
            g_opt.timeout = num_arg(name, optarg);
            break;
        case O_PID:
            g_opt.server_pid = (int)num_arg(name, optarg);
            break;
        case O_JSON:
            g_opt.json = true;
            break;
        case O_RAW:
            g_opt.raw = true;
            break;
        case O_BINARY:
            g_opt.binary = true;
            break;
        case O_SPREAD:
            g_opt.spread = true;
            break;
        case O_GW_MODE:
            g_opt.gw_mode = optarg;
            break;
        case O_GW_ADDR:
            g_opt.gw_addr = optarg;
            break;
        case O_GW_SECRET:
            g_opt.gw_secret = optarg;
            break;
        case O_GW_CONNS:
            g_opt.gw_conns = (long)num_arg(name, optarg);
            break;
        case O_WS_DEFLATE:
            g_opt.ws_deflate = true;
            break;
        case O_INFLATE_ALL:
            g_opt.inflate_all = true;
            break;
        case O_TLS_CA:
            g_opt.tls_ca = optarg;
            break;
        case O_SENDERS:
            g_opt.senders = (long)num_arg(name, optarg);
            break;
        case O_GROUP_SIZES:
            g_opt.group_sizes = optarg;
            break;
        case O_USERS_FILE:
            g_opt.users_file = optarg;
            break;
        case O_QUIET:
            g_opt.quiet_cores = num_arg(name, optarg);
            break;
        case O_LOAD_TEST:
            g_opt.load_test = optarg;
            break;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "chatd-bench: unexpected argument '%s'\n", argv[optind]);
        return EXIT_USAGE;
    }
    if (!g_opt.url) {
        fprintf(stderr, "chatd-bench %s: --url is required\n", g_opt.cmd);
        return EXIT_USAGE;
    }
    if (g_opt.url2 && strcmp(g_opt.cmd, "route") != 0 && strcmp(g_opt.cmd, "fanout") != 0) {
        fprintf(stderr, "chatd-bench %s: --url2 is for route and fanout only\n", g_opt.cmd);
        return EXIT_USAGE;
    }
    if (g_opt.warmup < 0)
        g_opt.warmup = g_opt.duration < 3 ? 0 : 1;
    if (g_opt.concurrency < 1)
        g_opt.concurrency = 1;

    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    g_loop = uv_default_loop();
    return run();
}
