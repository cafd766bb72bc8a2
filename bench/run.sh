#!/usr/bin/env bash
# run.sh: the benchmark suite. Starts chatd, the Node.js peer (bench/peer) and the raw echo
# floor (chatd-floor) in turn on free loopback ports, runs the same chatd-bench scenarios
# against each (every point REPS times), writes the raw JSON lines and prints one table with
# medians, ranges and the chatd/peer and chatd/floor ratios next to the targets of issue 5.
# With two or more cores the server runs on core 0 and chatd-bench on core 1 (taskset).
#
# Usage: bench/run.sh [SCENARIO...]     scenarios: echo route rate fanout conns storm chat
#                                       chat-pg cluster gw tls-deflate groups (default:
#                                       all but cluster, gw, tls-deflate and groups,
#                                       in that order; rate needs route)
# chat-pg is chat with chatd on PostgreSQL: it starts a throw-away cluster of its own with
# scripts/postgres.sh (fsync on, synchronous_commit on), writes its settings to
# pg-settings.txt, and stops it after; `bench/run.sh chat chat-pg` gives both side by side.
# Environment: DURATION=5 (s per run)  REPS=3  WINDOW=1 (echo/route in flight per client)
#   FANOUT_WINDOW=32  CONNS_N=19000  HOLD=2  STORM_N=20000  CHAT_USERS=100  CHAT_WINDOW=32
#   DURABILITY=full  OUT=bench/results/<date>  BUILD=build  QUICK=1 (1 rep, 2 s, small points)
#   STORE_CONNECTIONS (chat-pg: chatd's --store-connections; chatd's default when unset)
#   QUIET_CORES=0.25 QUIET_WAIT=300: before each run, wait up to QUIET_WAIT s for the machine
#   to have at most QUIET_CORES cores busy with other work; during echo and route runs, every
#   second (load_test: every 4-s interval) in which other processes used more than
#   QUIET_CORES is left out of the rate, and the result says how many were dropped
#   ECHO_CONNS="100 1000 10000" ECHO_SIZES="32 1024" ROUTE_PAIRS="100 1000 5000" (5000
#   pairs = 10,000 connections) ROUTE_SIZES="32 1024": the echo and route points
# A second generator (issue 14): with UWS_DIR pointing at a checkout of uWebSockets (with its
# uSockets submodule; see bench/README.md), echo also runs uWebSockets' own
# benchmarks/load_test (built with its Makefile when missing) against chatd and the peer,
# and both generators against uWebSockets' EchoServer example (UWS_ECHO, default
# UWS_DIR/EchoServer, built as its `build examples` would when missing; always port 9001).
# cluster (issue 9): Redis and two chatd cluster nodes (--redis, --node-id a|b), route with
# both ends of every pair on node a vs one end on each node (saturation, then half of it),
# fanout to a group on one node vs spread over both, idle memory per connection on a cluster
# node vs a single chatd; chatd without --redis as the baseline. Both nodes and Redis on core
# 0 (the server side gets one core, as in every other scenario), chatd-bench on core 1.
#   CLUSTER_PAIRS="100 1000" CLUSTER_SIZE=32 CLUSTER_WINDOW=$WINDOW
#   CLUSTER_MEMBERS="1000 10000" CLUSTER_DURATION=3 CLUSTER_CONNS_N=$CONNS_N
#   CLUSTER_RATES="0.5 0.25" (open-loop route points, fractions of each config's saturation)
#   CLUSTER_API_CONNS=32 (fanout-spread: broadcasts round-robin over that many API connections)
#   REDIS_CPU=<server core> (where Redis is pinned; "" = not pinned)
# gw (issue 10): one chatd with --gw-inner; chatd-bench gwpush pushes to GW_CLIENTS bound
# uids in each GW_MODES mode (per-call: a TCP connection per push to the inner port, as
# GatewayClient from php-fpm; persistent: GW_CONNS inner connections, pipelined; http: POST
# /gateway/send_to_uid on GW_CONNS keep-alive connections), the modes interleaved in
# GW_ROUNDS rounds so drift on a shared machine hits them alike; prints a table of its own
# (pushes/s, latency, server CPU per push), also in gw-summary.txt.
#   GW_CLIENTS=1000 GW_DURATION=10 GW_ROUNDS=$REPS GW_MODES="per-call persistent http"
#   GW_WINDOW=32 (pushes in flight) GW_SIZE=32 GW_CONNS=4 GW_SECRET= (the inner port's
#   --gw-secret; empty = none, GatewayWorker's default) GW_RATE= (open loop at that many
#   pushes/s instead of saturation)
# tls-deflate (issue 12): chatd plain, chatd with --tls-cert/--tls-key (a P-256 certificate
# made by the openssl CLI in a temporary directory) and chatd with --ws-deflate, side by side
# (all on the server core): echo and route over wss:// vs ws:// (chatd-bench's own TLS
# client, verifying the throw-away certificate), fan-out to TD_MEMBERS members with
# permessage-deflate offered by every member vs chatd without --ws-deflate (deliveries/s,
# server CPU per delivery, bytes read by the members per delivery), then idle memory per
# connection (a fresh server per configuration and round: plain, tls, deflate). The points
# are interleaved in TD_ROUNDS rounds, the order of each pair swapped every other round;
# prints a table of its own with the goals (tls-deflate-summary.txt).
#   TD_ROUNDS=$REPS TD_DURATION=3 TD_ECHO_CONNS=100 TD_ECHO_SIZES="32 1024" TD_PAIRS=100
#   TD_ROUTE_SIZE=32 TD_MEMBERS=1000 TD_FANOUT_SIZE=512 TD_FANOUT_WINDOW=$FANOUT_WINDOW
#   TD_CONNS_N=2000 TD_CONC=50 (idle memory: connections, handshakes at once)
# groups (issue 11): one chatd with --metrics; GROUPS_USERS users registered once, bound
# over WebSocket; `chatd-bench groups` sends durable 1:1 messages (every user to its
# partner) and then, per size M of GROUPS_SIZES, durable group messages from GROUPS_SENDERS
# members of each of the GROUPS_USERS/M groups, GROUPS_WINDOW unacked each: deliveries/s,
# delivery and ack latency, store write requests per message (from /metrics); then the
# message rows of the groups in SQLite vs the group messages sent. Table in
# groups-summary.txt with the goals (1 write per group message; M=500 deliveries/s >= 10x
# the 1:1 acked rate).
#   GROUPS_USERS=500 GROUPS_SIZES=10,100,500 GROUPS_SENDERS=16 GROUPS_WINDOW=16
#   GROUPS_SIZE=32 (message bytes, >= 32) GROUPS_DURATION=5 GROUPS_REPS=$REPS
#   GROUPS_RATE= (open loop: that many messages/s per point instead of saturation)
set -u
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [ "${QUICK:-0}" = 1 ]; then
    : "${DURATION:=2}" "${REPS:=1}" "${CONNS_N:=2000}" "${STORM_N:=2000}" "${CHAT_USERS:=20}"
fi
DURATION=${DURATION:-5}
REPS=${REPS:-3}
WINDOW=${WINDOW:-1}
FANOUT_WINDOW=${FANOUT_WINDOW:-32}
CONNS_N=${CONNS_N:-19000}
HOLD=${HOLD:-2}
STORM_N=${STORM_N:-20000}
CHAT_USERS=${CHAT_USERS:-100}
CHAT_WINDOW=${CHAT_WINDOW:-32}
QUIET_CORES=${QUIET_CORES:-0.25}
QUIET_WAIT=${QUIET_WAIT:-300}
ECHO_CONNS=${ECHO_CONNS:-100 1000 10000}
ECHO_SIZES=${ECHO_SIZES:-32 1024}
ROUTE_PAIRS=${ROUTE_PAIRS:-100 1000 5000}
ROUTE_SIZES=${ROUTE_SIZES:-32 1024}
UWS_DIR=${UWS_DIR:-}
OUT=${OUT:-$BENCH_DIR/results/$(date +%Y%m%d-%H%M%S)}
SCENARIOS=("$@")
[ ${#SCENARIOS[@]} = 0 ] && SCENARIOS=(echo route rate fanout conns storm chat chat-pg)

mkdir -p "$OUT"
LOGDIR=$OUT/logs
mkdir -p "$LOGDIR"
RAW=$OUT/raw.jsonl
: >"$RAW"
PG_DIR=""
stop_pg() {
    [ -n "$PG_DIR" ] && [ -d "$PG_DIR" ] && CHATD_PG_DIR="$PG_DIR" "$ROOT/scripts/postgres.sh" stop
    PG_DIR=""
}
trap 'stop_all_servers; stop_pg; stop_redis' EXIT
trap 'exit 130' INT TERM

if [ ! -x "$BUILD/chatd" ] || [ ! -x "$BUILD/chatd-bench" ] || [ ! -x "$BUILD/chatd-floor" ]; then
    echo "run.sh: building in $BUILD" >&2
    if ! cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null ||
        ! cmake --build "$BUILD" -j"$(nproc)" >/dev/null; then
        echo "run.sh: build failed" >&2
        exit 1
    fi
fi
HAVE_PEER=1
if [ ! -d "$BENCH_DIR/peer/node_modules/ws" ]; then
    (cd "$BENCH_DIR/peer" && npm ci --no-audit --no-fund >/dev/null 2>&1) || {
        echo "run.sh: npm ci in bench/peer failed: no peer numbers" >&2
        HAVE_PEER=0
    }
fi
SERVER_CPU="" BENCH_PIN=()
if [ "$(nproc)" -ge 2 ]; then
    SERVER_CPU=0
    BENCH_PIN=(taskset -c 1)
else
    echo "run.sh: one core only: server and generator share it, numbers will be low" >&2
fi
ulimit -n "$(ulimit -Hn)"

{
    echo "date: $(date -Is)"
    echo "host: $(uname -srm), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
    echo "chatd: $("$BUILD/chatd" --version 2>&1 | head -1)"
    echo "settings: DURATION=$DURATION REPS=$REPS WINDOW=$WINDOW FANOUT_WINDOW=$FANOUT_WINDOW"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT/info.txt" >&2

# Busy cores of the whole machine over one second, from /proc/stat.
busy_cores() {
    local a b
    a=$(head -1 /proc/stat)
    sleep 1
    b=$(head -1 /proc/stat)
    awk -v a="$a" -v b="$b" -v hz="$(getconf CLK_TCK)" 'BEGIN {
        split(a, x); split(b, y)
        busy = (y[2]+y[3]+y[4]+y[7]+y[8]) - (x[2]+x[3]+x[4]+x[7]+x[8])
        printf "%.2f", busy / hz }'
}

# On a shared machine other work skews every number: wait (up to QUIET_WAIT s) until the
# machine is idle but for us, i.e. less than QUIET_CORES busy while the server idles.
wait_quiet() {
    local waited=0 busy
    while :; do
        busy=$(busy_cores)
        awk -v b="$busy" -v q="$QUIET_CORES" 'BEGIN { exit !(b <= q) }' && return 0
        if [ "$waited" -ge "$QUIET_WAIT" ]; then
            echo "run.sh: machine still busy ($busy cores) after ${QUIET_WAIT}s: measuring anyway" >&2
            return 0
        fi
        [ "$waited" = 0 ] && echo "run.sh: machine busy ($busy cores used by others): waiting" >&2
        sleep 4
        waited=$((waited + 5))
    done
}

# bench POINT TARGET ARGS...: runs chatd-bench REPS times against the current server and
# appends each JSON result, tagged with point, target and rep, to raw.jsonl. ALSO_ALIVE: more
# PIDs that must still run (the cluster's second node and Redis).
ALSO_ALIVE=()
bench() {
    local point=$1 target=$2
    shift 2
    local rep line rc pid
    for rep in $(seq 1 "$REPS"); do
        for pid in "$SERVER_PID" "${ALSO_ALIVE[@]}"; do
            if ! kill -0 "$pid" 2>/dev/null; then
                echo "run.sh: $target: process $pid died; see $LOGDIR" >&2
                return 1
            fi
        done
        wait_quiet
        line=$(timeout $((${DURATION%.*} + 180)) "${BENCH_PIN[@]}" "$BUILD/chatd-bench" "$@" \
            --json --label "$target" --server-pid "$SERVER_PID" --duration "$DURATION" \
            --quiet-cores "$QUIET_CORES" 2>>"$LOGDIR/bench.log")
        rc=$?
        if [ $rc != 0 ] || [ -z "$line" ]; then
            echo "run.sh: $point on $target, rep $rep: chatd-bench exited $rc (see $LOGDIR/bench.log)" >&2
            [ $rc = 3 ] && return 3
            continue
        fi
        line=$(head -1 <<<"$line")
        echo "${line/#\{/\{\"point\":\"$point\",\"target\":\"$target\",\"rep\":${REP_NO:-$rep},}" >>"$RAW"
        printf '  %-22s %-6s rep %s: %s %s %s\n' "$point" "$target" "${REP_NO:-$rep}" \
            "$(grep -o '"gen":"[a-z_-]*"' <<<"$line")" "$(grep -o '"rate":[0-9.e+]*' <<<"$line")" \
            "$(grep -o '"spans_dropped":[0-9]*' <<<"$line")" >&2
    done
}

# fd_ok CONNS WHAT: whether this shell's open-files limit (raised to the hard limit above, and
# inherited by every server and generator it starts) leaves room for CONNS connections plus
# the API connections, listeners and files a process holds besides; says so when not.
fd_ok() {
    local need=$(($1 + 100))
    [ "$(ulimit -n)" -ge "$need" ] && return 0
    echo "run.sh: $2 skipped: needs $need open files, the limit is $(ulimit -n) (hard $(ulimit -Hn))" >&2
    return 1
}

# ---- the second generator: uWebSockets' load_test (issue 14) ----
# uws_setup: with UWS_DIR set, finds or builds UWS_DIR/benchmarks/load_test (UWS_LOAD_TEST)
# and the EchoServer example (UWS_ECHO), outside this repository, and records the commits.
UWS_LOAD_TEST="" UWS_ECHO=${UWS_ECHO:-} UWS_READY=0
uws_setup() {
    [ "$UWS_READY" = 1 ] && return 0
    UWS_READY=1
    [ -n "$UWS_DIR" ] || return 0
    if [ ! -f "$UWS_DIR/src/App.h" ] || [ ! -f "$UWS_DIR/uSockets/src/libusockets.h" ]; then
        echo "run.sh: UWS_DIR=$UWS_DIR is not a uWebSockets checkout with its uSockets submodule" \
            "(git clone --recursive, see bench/README.md): no second generator" >&2
        return 0
    fi
    # what uWebSockets' Makefiles use: clang (benchmarks), g++ and make (uSockets, the
    # example), zlib and OpenSSL (load_test links -lssl -lcrypto -lz); installed with the
    # project's scripts/lib.sh when missing
    local p missing=()
    for p in clang g++ make zlib1g-dev libssl-dev; do
        if [[ $p == *-dev ]]; then
            dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
                missing+=("$p")
        else
            command -v "$p" >/dev/null || missing+=("$p")
        fi
    done
    if [ ${#missing[@]} -gt 0 ] && [ -f "$ROOT/scripts/lib.sh" ]; then
        # shellcheck source=/dev/null
        (source "$ROOT/scripts/lib.sh" && apt_install run.sh "${missing[@]}") ||
            echo "run.sh: installing ${missing[*]} failed" >&2
    fi
    if ! command -v stdbuf >/dev/null; then
        echo "run.sh: no stdbuf (coreutils): load_test's output cannot be read line by line" >&2
        return 0
    fi
    if [ ! -x "$UWS_DIR/benchmarks/load_test" ]; then
        echo "run.sh: building uWebSockets' benchmarks (make -C $UWS_DIR/benchmarks)" >&2
        make -C "$UWS_DIR/benchmarks" >"$LOGDIR/uws-build.log" 2>&1 ||
            echo "run.sh: building load_test failed (see $LOGDIR/uws-build.log)" >&2
    fi
    [ -x "$UWS_DIR/benchmarks/load_test" ] && UWS_LOAD_TEST=$UWS_DIR/benchmarks/load_test
    UWS_ECHO=${UWS_ECHO:-$UWS_DIR/EchoServer}
    if [ ! -x "$UWS_ECHO" ] && [ "$UWS_ECHO" = "$UWS_DIR/EchoServer" ]; then
        # what `make -C UWS_DIR examples` runs for this one example (uWebSockets' build.c):
        # uSockets' objects, then the example with -march=native -O3 -flto, zlib, no TLS
        echo "run.sh: building uWebSockets' EchoServer example in $UWS_DIR" >&2
        { make -C "$UWS_DIR" default &&
            (cd "$UWS_DIR" && ${CXX:-g++} -march=native -O3 -Wpedantic -Wall -Wextra \
                -Wsign-conversion -Wconversion -std=c++2b -Isrc -IuSockets/src -flto=auto \
                examples/EchoServer.cpp uSockets/*.o -lz -o EchoServer); } \
            >>"$LOGDIR/uws-build.log" 2>&1 ||
            echo "run.sh: building EchoServer failed (see $LOGDIR/uws-build.log)" >&2
    fi
    [ -x "$UWS_ECHO" ] || UWS_ECHO=""
    {
        echo "uWebSockets: $UWS_DIR at $(git -C "$UWS_DIR" rev-parse --short HEAD 2>/dev/null)," \
            "uSockets at $(git -C "$UWS_DIR/uSockets" rev-parse --short HEAD 2>/dev/null);" \
            "load_test: ${UWS_LOAD_TEST:-none}; echo server: ${UWS_ECHO:-none} (core ${SERVER_CPU:-none})"
    } | tee -a "$OUT/info.txt" >&2
}

targets() {
    local t
    for t in "$@"; do
        [ "$t" = peer ] && [ $HAVE_PEER = 0 ] && continue
        echo "$t"
    done
}

median_rate() { # POINT TARGET -> median "rate" from raw.jsonl
    grep "\"point\":\"$1\",\"target\":\"$2\"" "$RAW" | grep -v '"gen":"load_test"' |
        grep -o '"rate":[0-9.e+]*' |
        cut -d: -f2 | sort -g | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]}'
}

# Echo with chatd-bench and, when UWS_DIR gives it, uWebSockets' load_test, against chatd,
# the peer and uWebSockets' EchoServer; the floor (raw TCP) only with chatd-bench: load_test
# needs a WebSocket handshake and echoes without the mask. The servers echo on / (load_test
# always requests GET /).
run_echo() {
    local t c s url
    uws_setup
    for t in $(targets chatd chatd-epoll peer floor uws); do
        [ "$t" = uws ] && [ -z "$UWS_ECHO" ] && continue
        BENCH_ECHO_PATH=/ start_server "$t" "$SERVER_CPU" || continue
        echo "== echo on $t (pid $SERVER_PID, port $SERVER_PORT)" >&2
        url=ws://127.0.0.1:$SERVER_PORT/
        for c in $ECHO_CONNS; do
            fd_ok "$c" "echo $c on $t" || continue
            for s in $ECHO_SIZES; do
                if [ "$t" = floor ]; then
                    bench "echo $c x $s" floor echo --raw --url "tcp://127.0.0.1:$SERVER_PORT" \
                        --conns "$c" --size "$s" --window "$WINDOW"
                    continue
                fi
                bench "echo $c x $s" "$t" echo --url "$url" --conns "$c" --size "$s" \
                    --window "$WINDOW"
                # load_test keeps one message in flight per connection: only at WINDOW=1
                if [ -n "$UWS_LOAD_TEST" ] && [ "$WINDOW" = 1 ]; then
                    bench "echo $c x $s" "$t" loadtest --load-test "$UWS_LOAD_TEST" --url "$url" \
                        --conns "$c" --size "$s"
                fi
            done
        done
        stop_server "$SERVER_PID"
    done
}

run_route() {
    local t p s
    for t in $(targets chatd chatd-epoll peer floor); do
        start_server "$t" "$SERVER_CPU" || continue
        echo "== route on $t (pid $SERVER_PID, port $SERVER_PORT)" >&2
        for p in $ROUTE_PAIRS; do
            fd_ok $((2 * p)) "route $p on $t" || continue
            for s in $ROUTE_SIZES; do
                if [ "$t" = floor ]; then # same connections, bytes and window, no framing
                    bench "route $p x $s" floor echo --raw --url "tcp://127.0.0.1:$SERVER_PORT" \
                        --conns $((2 * p)) --size "$s" --window "$WINDOW"
                else
                    bench "route $p x $s" "$t" route --url "ws://127.0.0.1:$SERVER_PORT/ws" \
                        --api-secret "$SECRET" --pairs "$p" --size "$s" --window "$WINDOW"
                fi
            done
        done
        stop_server "$SERVER_PID"
    done
}

run_rate() { # route at half of chatd's measured saturation rate: latency under normal load
    local p s sat
    start_server chatd "$SERVER_CPU" || return
    echo "== route at half saturation on chatd (pid $SERVER_PID)" >&2
    for p in $ROUTE_PAIRS; do
        for s in $ROUTE_SIZES; do
            sat=$(median_rate "route $p x $s" chatd)
            [ -z "$sat" ] && { echo "run.sh: no route $p x $s result for chatd: skip its rate point" >&2; continue; }
            bench "route@half $p x $s" chatd route --url "ws://127.0.0.1:$SERVER_PORT/ws" \
                --api-secret "$SECRET" --pairs "$p" --size "$s" \
                --rate "$(awk -v r="$sat" 'BEGIN {printf "%d", r / 2}')"
        done
    done
    stop_server "$SERVER_PID"
}

run_fanout() {
    local t k
    for t in $(targets chatd peer); do
        start_server "$t" "$SERVER_CPU" || continue
        echo "== fanout on $t (pid $SERVER_PID)" >&2
        for k in 1000 10000; do
            bench "fanout $k x 32" "$t" fanout --url "ws://127.0.0.1:$SERVER_PORT/ws" \
                --api-secret "$SECRET" --members "$k" --size 32 --window "$FANOUT_WINDOW"
        done
        stop_server "$SERVER_PID"
    done
}

run_conns() { # a fresh server per rep: RSS before must be a baseline
    local t r reps=$REPS
    for t in $(targets chatd peer); do
        echo "== conns on $t" >&2
        for r in $(seq 1 "$reps"); do
            start_server "$t" "$SERVER_CPU" || continue
            sleep 0.5
            REPS=1 REP_NO=$r bench "conns $CONNS_N" "$t" conns --url "ws://127.0.0.1:$SERVER_PORT/ws" \
                -n "$CONNS_N" --hold "$HOLD"
            stop_server "$SERVER_PID"
        done
    done
    REPS=$reps
}

run_storm() {
    local t
    for t in $(targets chatd peer); do
        start_server "$t" "$SERVER_CPU" || continue
        echo "== storm on $t (pid $SERVER_PID)" >&2
        bench "storm $STORM_N" "$t" storm --url "ws://127.0.0.1:$SERVER_PORT/ws" \
            --api-secret "$SECRET" -n "$STORM_N" --concurrency 256
        stop_server "$SERVER_PID"
    done
}

run_chat() {
    start_server chatd "$SERVER_CPU" || return
    echo "== chat on chatd (pid $SERVER_PID, $SERVER_NOTE)" >&2
    bench "chat $CHAT_USERS" chatd chat --url "ws://127.0.0.1:$SERVER_PORT/ws" \
        --users "$CHAT_USERS" --window "$CHAT_WINDOW" --note "$SERVER_NOTE"
    [ $? = 3 ] && echo "run.sh: chat skipped: chatd has no chat service yet" >&2
    stop_server "$SERVER_PID"
}

# chat on PostgreSQL, on a cluster of its own (not pinned: it shares the cores with chatd
# and the generator), stopped after.
run_chat_pg() {
    local url settings
    if [ ! -x "$ROOT/scripts/postgres.sh" ] || ! chatd_has_opt store; then
        echo "run.sh: chat-pg skipped: no scripts/postgres.sh or chatd has no --store" >&2
        return
    fi
    PG_DIR=${TMPDIR:-/tmp}/chatd-bench-pg-$$
    if ! url=$(CHATD_PG_DIR="$PG_DIR" "$ROOT/scripts/postgres.sh" start | tail -n 1) || [ -z "$url" ]; then
        echo "run.sh: chat-pg skipped: postgres.sh start failed" >&2
        stop_pg
        return
    fi
    psql -X -At -d "$url" -c "SELECT version();" \
        -c "SELECT name || ' = ' || setting || coalesce(' ' || unit, '') FROM pg_settings
            WHERE name IN ('fsync', 'synchronous_commit', 'wal_sync_method', 'full_page_writes',
            'wal_level', 'shared_buffers', 'wal_buffers', 'max_wal_size', 'checkpoint_timeout',
            'commit_delay', 'max_connections', 'data_checksums') ORDER BY name;" \
        >"$OUT/pg-settings.txt" 2>&1
    echo "PostgreSQL settings (chat-pg):" | tee -a "$OUT/info.txt" >&2
    sed 's/^/  /' "$OUT/pg-settings.txt" | tee -a "$OUT/info.txt" >&2
    settings="fsync=$(grep -o '^fsync = [a-z]*' "$OUT/pg-settings.txt" | cut -d' ' -f3)"
    settings+=" synchronous_commit=$(grep -o '^synchronous_commit = [a-z]*' "$OUT/pg-settings.txt" | cut -d' ' -f3)"
    if BENCH_STORE=$url PG_NOTE="$settings" start_server chatd "$SERVER_CPU"; then
        echo "== chat on chatd + PostgreSQL (pid $SERVER_PID, $SERVER_NOTE)" >&2
        bench "chat-pg $CHAT_USERS" chatd chat --url "ws://127.0.0.1:$SERVER_PORT/ws" \
            --users "$CHAT_USERS" --window "$CHAT_WINDOW" --note "$SERVER_NOTE"
        stop_server "$SERVER_PID"
    fi
    stop_pg
}

# ---- cluster (issue 9) ----
CLUSTER_PAIRS=${CLUSTER_PAIRS:-100 1000}
CLUSTER_SIZE=${CLUSTER_SIZE:-32}
CLUSTER_WINDOW=${CLUSTER_WINDOW:-$WINDOW}
CLUSTER_MEMBERS=${CLUSTER_MEMBERS:-1000 10000}
CLUSTER_DURATION=${CLUSTER_DURATION:-3}
CLUSTER_CONNS_N=${CLUSTER_CONNS_N:-$CONNS_N}
CLUSTER_API_CONNS=${CLUSTER_API_CONNS:-32}
CLUSTER_RATES=${CLUSTER_RATES:-0.5 0.25}
REDIS_CPU=${REDIS_CPU-$SERVER_CPU}

# cluster_nodes PORT: the live nodes a cluster node counts (/healthz data.cluster.nodes).
cluster_nodes() {
    curl -s --max-time 2 "http://127.0.0.1:$1/healthz" | grep -o '"nodes":[0-9]*' | cut -d: -f2
}

# cluster_route_points TARGET URL [URL2]: route saturation, then open loop at CLUSTER_RATES
# of it (0.5 is named route@half, 0.25 route@25%),
# for every CLUSTER_PAIRS, against the running server(s); WATCH holds the --watch-pid args.
cluster_route_points() {
    local target=$1 url=$2 url2=${3:-} p sat two=()
    [ -n "$url2" ] && two=(--url2 "$url2")
    for p in $CLUSTER_PAIRS; do
        bench "cluster route $p x $CLUSTER_SIZE" "$target" route --url "$url" "${two[@]}" \
            --api-secret "$SECRET" --pairs "$p" --size "$CLUSTER_SIZE" \
            --window "$CLUSTER_WINDOW" "${WATCH[@]}"
    done
    local f name
    for p in $CLUSTER_PAIRS; do
        sat=$(median_rate "cluster route $p x $CLUSTER_SIZE" "$target")
        [ -z "$sat" ] && { echo "run.sh: no cluster route $p result on $target: no rate point" >&2; continue; }
        for f in $CLUSTER_RATES; do
            name=$(awk -v f="$f" 'BEGIN { if (f == 0.5) print "half"; else printf "%g%%", f * 100 }')
            bench "cluster route@$name $p x $CLUSTER_SIZE" "$target" route --url "$url" "${two[@]}" \
                --api-secret "$SECRET" --pairs "$p" --size "$CLUSTER_SIZE" \
                --rate "$(awk -v r="$sat" -v f="$f" 'BEGIN {printf "%d", r * f}')" "${WATCH[@]}"
        done
    done
}

# Fanout twice: the broadcasts pipelined on one API connection (as the suite's fanout), and
# spread over CLUSTER_API_CONNS connections: a node answers the requests of one connection
# in order, so when each answer waits for Redis (cluster mode) one connection gets one
# broadcast per loop pass.
cluster_fanout_points() {
    local target=$1 url=$2 url2=${3:-} k two=()
    [ -n "$url2" ] && two=(--url2 "$url2")
    for k in $CLUSTER_MEMBERS; do
        bench "cluster fanout $k x 32" "$target" fanout --url "$url" "${two[@]}" \
            --api-secret "$SECRET" --members "$k" --size 32 --window "$FANOUT_WINDOW" "${WATCH[@]}"
        bench "cluster fanout-spread $k x 32" "$target" fanout --url "$url" "${two[@]}" \
            --api-secret "$SECRET" --members "$k" --size 32 --window "$FANOUT_WINDOW" \
            --spread --api-conns "$CLUSTER_API_CONNS" "${WATCH[@]}"
    done
}

run_cluster() {
    local have=1 a_pid a_port b_pid b_port n r reps=$REPS duration=$DURATION
    if ! chatd_has_opt redis; then
        have=0
        echo "run.sh: chatd has no --redis: the cluster scenario runs its plumbing with both" \
            "'nodes' being one single-mode chatd (targets marked nocluster-*); no cluster figures" >&2
    fi
    if ! start_redis "$REDIS_CPU"; then
        echo "run.sh: cluster skipped: Redis did not start" >&2
        return
    fi
    {
        echo "cluster: $(redis-server --version | head -1); Redis $REDIS_URL (pid $REDIS_PID," \
            "via ${REDIS_VIA}) pinned to core ${REDIS_CPU:-none}; nodes on core ${SERVER_CPU:-none};" \
            "chatd-bench on ${BENCH_PIN[*]:-no pinning}"
        echo "cluster settings: CLUSTER_PAIRS=\"$CLUSTER_PAIRS\" CLUSTER_SIZE=$CLUSTER_SIZE" \
            "CLUSTER_WINDOW=$CLUSTER_WINDOW CLUSTER_MEMBERS=\"$CLUSTER_MEMBERS\"" \
            "CLUSTER_RATES=\"$CLUSTER_RATES\" FANOUT_WINDOW=$FANOUT_WINDOW CLUSTER_API_CONNS=$CLUSTER_API_CONNS CLUSTER_DURATION=$CLUSTER_DURATION REPS=$REPS" \
            "CLUSTER_CONNS_N=$CLUSTER_CONNS_N"
    } | tee -a "$OUT/info.txt" >&2
    DURATION=$CLUSTER_DURATION
    local pre=""
    [ $have = 0 ] && pre=nocluster-

    # The baseline: chatd without --redis (Redis runs idle: its CPU is watched all the same).
    if start_server chatd "$SERVER_CPU"; then
        echo "== cluster: single chatd, no Redis (pid $SERVER_PID)" >&2
        WATCH=(--watch-pid "redis=$REDIS_PID")
        ALSO_ALIVE=("$REDIS_PID")
        cluster_route_points single "ws://127.0.0.1:$SERVER_PORT/ws"
        cluster_fanout_points single "ws://127.0.0.1:$SERVER_PORT/ws"
        stop_server "$SERVER_PID"
    fi

    # Two cluster nodes on the same core.
    local ok=1
    if [ $have = 1 ]; then
        BENCH_REDIS=$REDIS_URL BENCH_NODE_ID=a start_server chatd "$SERVER_CPU" || ok=0
        a_pid=$SERVER_PID a_port=$SERVER_PORT
        if [ $ok = 1 ]; then
            BENCH_REDIS=$REDIS_URL BENCH_NODE_ID=b start_server chatd "$SERVER_CPU" || ok=0
            b_pid=$SERVER_PID b_port=$SERVER_PORT
        fi
        if [ $ok = 1 ]; then
            for _ in $(seq 1 100); do
                [ "$(cluster_nodes "$a_port")" = 2 ] && [ "$(cluster_nodes "$b_port")" = 2 ] && break
                sleep 0.1
            done
            if [ "$(cluster_nodes "$a_port")" != 2 ] || [ "$(cluster_nodes "$b_port")" != 2 ]; then
                echo "run.sh: the two nodes do not see each other (/healthz nodes:" \
                    "$(cluster_nodes "$a_port"), $(cluster_nodes "$b_port")): cluster points skipped" >&2
                ok=0
            fi
        fi
    else
        start_server chatd "$SERVER_CPU" || ok=0
        a_pid=$SERVER_PID a_port=$SERVER_PORT b_pid=$SERVER_PID b_port=$SERVER_PORT
    fi
    if [ $ok = 1 ]; then
        echo "== cluster: node a (pid $a_pid, port $a_port), node b (pid $b_pid, port $b_port)" >&2
        SERVER_PID=$a_pid
        WATCH=(--watch-pid "redis=$REDIS_PID")
        [ "$b_pid" != "$a_pid" ] && WATCH+=(--watch-pid "nodeb=$b_pid")
        ALSO_ALIVE=("$b_pid" "$REDIS_PID")
        cluster_route_points "${pre}one-node" "ws://127.0.0.1:$a_port/ws"
        cluster_route_points "${pre}two-nodes" "ws://127.0.0.1:$a_port/ws" "ws://127.0.0.1:$b_port/ws"
        cluster_fanout_points "${pre}one-node" "ws://127.0.0.1:$a_port/ws"
        cluster_fanout_points "${pre}two-nodes" "ws://127.0.0.1:$a_port/ws" "ws://127.0.0.1:$b_port/ws"
        [ $have = 1 ] && curl -s --max-time 2 "http://127.0.0.1:$a_port/healthz" \
            >"$OUT/cluster-healthz-a.json"
    fi
    stop_server "$a_pid"
    [ "$b_pid" != "$a_pid" ] && stop_server "$b_pid"

    # Idle memory per connection: a fresh server per rep, single vs cluster node.
    WATCH=()
    ALSO_ALIVE=("$REDIS_PID")
    n=$CLUSTER_CONNS_N
    for r in $(seq 1 "$reps"); do
        if start_server chatd "$SERVER_CPU"; then
            sleep 0.5
            REPS=1 REP_NO=$r bench "cluster conns $n" single conns \
                --url "ws://127.0.0.1:$SERVER_PORT/ws" -n "$n" --hold "$HOLD"
            stop_server "$SERVER_PID"
        fi
        if [ $have = 1 ] && BENCH_REDIS=$REDIS_URL BENCH_NODE_ID=c start_server chatd "$SERVER_CPU"; then
            sleep 0.5
            REPS=1 REP_NO=$r bench "cluster conns $n" node conns \
                --url "ws://127.0.0.1:$SERVER_PORT/ws" -n "$n" --hold "$HOLD"
            stop_server "$SERVER_PID"
        fi
    done
    REPS=$reps
    DURATION=$duration
    WATCH=()
    ALSO_ALIVE=()
    stop_redis
}

# ---- gw (issue 10) ----
GW_CLIENTS=${GW_CLIENTS:-1000}
GW_DURATION=${GW_DURATION:-10}
GW_ROUNDS=${GW_ROUNDS:-$REPS}
GW_MODES=${GW_MODES:-per-call persistent http}
GW_WINDOW=${GW_WINDOW:-32}
GW_SIZE=${GW_SIZE:-32}
GW_CONNS=${GW_CONNS:-4}
GW_SECRET=${GW_SECRET:-}
GW_RATE=${GW_RATE:-}

# start_gw_chatd CPU: chatd as start_server starts it (see lib.sh), plus --gw-inner on a
# second free port (and --gw-secret GW_SECRET); sets SERVER_PID, SERVER_PORT, GW_PORT.
start_gw_chatd() {
    local cpu=$1 pin=() extra=() log tries
    [ -n "$cpu" ] && pin=(taskset -c "$cpu")
    chatd_has_opt login-rate && extra+=(--login-rate 100000)
    chatd_has_opt max-conns-per-ip && extra+=(--max-conns-per-ip 0)
    [ -n "$GW_SECRET" ] && extra+=(--gw-secret "$GW_SECRET")
    for tries in 1 2 3; do
        SERVER_PORT=$(free_port) && GW_PORT=$(free_port) || return 1
        [ "$GW_PORT" = "$SERVER_PORT" ] && continue
        log=$LOGDIR/chatd-gw-$SERVER_PORT.log
        mkdir -p "$LOGDIR/data-$SERVER_PORT"
        (ulimit -n "$(ulimit -Hn)"; exec "${pin[@]}" "$BUILD/chatd" \
            --listen "127.0.0.1:$SERVER_PORT" --gw-inner "127.0.0.1:$GW_PORT" \
            --api-secret "$SECRET" --event-rate 0 --log-level warn \
            --data-dir "$LOGDIR/data-$SERVER_PORT" --web-root "$ROOT/web" "${extra[@]}") >"$log" 2>&1 &
        SERVER_PID=$!
        STARTED_PIDS+=("$SERVER_PID")
        wait_listening "$SERVER_PORT" "$SERVER_PID" && wait_listening "$GW_PORT" "$SERVER_PID" &&
            return 0
        stop_server "$SERVER_PID"
        echo "run.sh: chatd --gw-inner did not come up (try $tries):" >&2
        tail -5 "$log" >&2
    done
    return 1
}

run_gw() {
    local r mode duration=$DURATION gwsec=() rate=()
    if ! chatd_has_opt gw-inner; then
        echo "run.sh: gw skipped: chatd has no --gw-inner" >&2
        return
    fi
    [ -n "$GW_SECRET" ] && gwsec=(--gw-secret "$GW_SECRET")
    [ -n "$GW_RATE" ] && rate=(--rate "$GW_RATE")
    start_gw_chatd "$SERVER_CPU" || { echo "run.sh: gw skipped: chatd did not start" >&2; return; }
    {
        echo "gw: chatd pid $SERVER_PID, ws port $SERVER_PORT, inner port $GW_PORT (core ${SERVER_CPU:-none})"
        echo "gw settings: GW_CLIENTS=$GW_CLIENTS GW_DURATION=$GW_DURATION GW_ROUNDS=$GW_ROUNDS" \
            "GW_MODES=\"$GW_MODES\" GW_WINDOW=$GW_WINDOW GW_SIZE=$GW_SIZE GW_CONNS=$GW_CONNS" \
            "GW_SECRET=${GW_SECRET:+set} GW_RATE=${GW_RATE:-saturation}"
    } | tee -a "$OUT/info.txt" >&2
    DURATION=$GW_DURATION
    for r in $(seq 1 "$GW_ROUNDS"); do
        for mode in $GW_MODES; do
            REPS=1 REP_NO=$r bench "gw $mode $GW_CLIENTS x $GW_SIZE" chatd gwpush \
                --url "ws://127.0.0.1:$SERVER_PORT/ws" --api-secret "$SECRET" -n "$GW_CLIENTS" \
                --gw-mode "$mode" --gw-addr "127.0.0.1:$GW_PORT" "${gwsec[@]}" \
                --gw-conns "$GW_CONNS" --api-conns "$GW_CONNS" --size "$GW_SIZE" \
                --window "$GW_WINDOW" "${rate[@]}"
        done
    done
    DURATION=$duration
    stop_server "$SERVER_PID"
    gw_summary | tee "$OUT/gw-summary.txt"
}

# The gw points' table: per mode the medians over the rounds.
gw_summary() {
    node - "$RAW" <<'JS'
const fs = require('fs');
const rows = fs.readFileSync(process.argv[2], 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l))
  .filter((r) => r.scenario === 'gwpush');
const by = new Map();
for (const r of rows) (by.get(r.point) || by.set(r.point, []).get(r.point)).push(r);
const med = (rs, k) => {
  const v = rs.map((r) => r[k]).filter((x) => x != null).sort((a, b) => a - b);
  return v.length ? v[(v.length - 1) >> 1] : NaN;
};
const f = (v, d = 0) => (Number.isNaN(v) ? '-' : v.toFixed(d));
const out = [['point', 'pushes/s [min-max]', 'p50 us', 'p99 us', 'server us/push', 'bench us/push',
  'server cpu', 'noise', 'undelivered']];
for (const [p, rs] of by) {
  const rate = rs.map((r) => r.rate);
  out.push([p, `${f(med(rs, 'rate'))} [${f(Math.min(...rate))}-${f(Math.max(...rate))}]`,
    f(med(rs, 'lat_p50_us')), f(med(rs, 'lat_p99_us')), f(med(rs, 'server_us_per_push'), 1),
    f(med(rs, 'bench_us_per_push'), 1), f(med(rs, 'server_cpu'), 2),
    f(Math.max(...rs.map((r) => r.other_cpu ?? 0)), 2), String(rs.reduce((a, r) => a + r.undelivered, 0))]);
}
const w = out[0].map((_, i) => Math.max(...out.map((r) => r[i].length)));
for (const r of out) console.log(r.map((x, i) => x.padEnd(w[i])).join('  ').trimEnd());
console.log(`medians over ${Math.max(...[...by.values()].map((rs) => rs.length))} rounds; ` +
  'server us/push = server CPU time over the window / pushes delivered in it');
JS
}

# ---- groups (issue 11) ----
GROUPS_USERS=${GROUPS_USERS:-500}
GROUPS_SIZES=${GROUPS_SIZES:-10,100,500}
GROUPS_SENDERS=${GROUPS_SENDERS:-16}
GROUPS_WINDOW=${GROUPS_WINDOW:-16}
GROUPS_SIZE=${GROUPS_SIZE:-32}
GROUPS_DURATION=${GROUPS_DURATION:-5}
GROUPS_REPS=${GROUPS_REPS:-$REPS}
GROUPS_RATE=${GROUPS_RATE:-}

# groups: one chatd (SQLite, --metrics for the store counters, --max-group-members as large
# as the largest group), GROUPS_USERS users registered once (their tokens kept in
# groups-users.txt, so the reps skip the password hashing), then GROUPS_REPS runs of
# `chatd-bench groups`: each one 1:1 point and one point per group size over the same
# sockets. Afterwards, with the server stopped, sqlite3 counts the message rows of the
# groups (conv_lo = 0) against the group messages acked: one row per message, not M.
run_groups() {
    if ! chatd_has_opt max-group-members; then
        echo "run.sh: groups skipped: chatd has no groups (--max-group-members)" >&2
        return
    fi
    local maxm users=$OUT/groups-users.txt rep out line kind point rc data rate=()
    [ -n "$GROUPS_RATE" ] && rate=(--rate "$GROUPS_RATE")
    maxm=$(tr ',' '\n' <<<"$GROUPS_SIZES" | sort -n | tail -1)
    BENCH_METRICS=1 BENCH_MAX_GROUP=$maxm start_server chatd "$SERVER_CPU" || return
    data=$LOGDIR/data-$SERVER_PORT
    {
        echo "groups: chatd pid $SERVER_PID ($SERVER_NOTE, --metrics, --max-group-members $maxm);" \
            "GROUPS_USERS=$GROUPS_USERS GROUPS_SIZES=$GROUPS_SIZES GROUPS_SENDERS=$GROUPS_SENDERS" \
            "GROUPS_WINDOW=$GROUPS_WINDOW GROUPS_SIZE=$GROUPS_SIZE GROUPS_DURATION=$GROUPS_DURATION" \
            "GROUPS_REPS=$GROUPS_REPS GROUPS_RATE=${GROUPS_RATE:-saturation} (server core ${SERVER_CPU:-none}, chatd-bench ${BENCH_PIN[*]:-not pinned})"
    } | tee -a "$OUT/info.txt" >&2
    rm -f "$users"
    # The users first (argon2id hashing: minutes on a busy machine, and no need for quiet):
    # a short 1:1-only run that writes groups-users.txt; its result is not kept.
    echo "  groups: registering $GROUPS_USERS users" >&2
    timeout 900 "${BENCH_PIN[@]}" "$BUILD/chatd-bench" groups --url "ws://127.0.0.1:$SERVER_PORT/ws" \
        --users "$GROUPS_USERS" --group-sizes "" --duration 0.5 --warmup 0 --users-file "$users" \
        --timeout 900 >/dev/null 2>>"$LOGDIR/bench.log" ||
        echo "run.sh: groups: registering the users failed (see $LOGDIR/bench.log)" >&2
    for rep in $(seq 1 "$GROUPS_REPS"); do
        kill -0 "$SERVER_PID" 2>/dev/null || { echo "run.sh: groups: chatd died; see $LOGDIR" >&2; break; }
        wait_quiet
        echo "  groups rep $rep: load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
        out=$(timeout $((GROUPS_DURATION * 10 + 600)) "${BENCH_PIN[@]}" "$BUILD/chatd-bench" groups \
            --url "ws://127.0.0.1:$SERVER_PORT/ws" --users "$GROUPS_USERS" \
            --group-sizes "$GROUPS_SIZES" --senders "$GROUPS_SENDERS" --window "$GROUPS_WINDOW" \
            --size "$GROUPS_SIZE" --duration "$GROUPS_DURATION" --users-file "$users" "${rate[@]}" \
            --timeout 600 --json --label chatd --server-pid "$SERVER_PID" --note "$SERVER_NOTE" \
            2>>"$LOGDIR/bench.log")
        rc=$?
        [ $rc = 3 ] && { echo "run.sh: groups skipped: chatd has no groups API" >&2; break; }
        [ $rc != 0 ] && echo "run.sh: groups rep $rep: chatd-bench exited $rc (see $LOGDIR/bench.log)" >&2
        while read -r line; do
            [ -z "$line" ] && continue
            kind=$(grep -o '"kind":"[^"]*"' <<<"$line" | cut -d'"' -f4)
            case $kind in
            direct) point="groups 1:1" ;;
            *) point="groups M=${kind#group }" ;;
            esac
            echo "${line/#\{/\{\"point\":\"$point\",\"target\":\"chatd\",\"rep\":$rep,}" >>"$RAW"
            printf '  %-22s rep %s: %s %s %s\n' "$point" "$rep" \
                "$(grep -o '"msgs_per_s":[0-9.e+]*' <<<"$line")" \
                "$(grep -o '"rate":[0-9.e+]*' <<<"$line")" \
                "$(grep -o '"writes_per_msg":[0-9.e+]*' <<<"$line")" >&2
        done <<<"$out"
    done
    stop_server "$SERVER_PID"
    if command -v sqlite3 >/dev/null && [ -f "$data/chatd.db" ]; then
        local rows acked groups
        rows=$(sqlite3 "$data/chatd.db" 'SELECT count(*) FROM messages WHERE conv_lo = 0' 2>/dev/null)
        acked=$(grep '"point":"groups M=' "$RAW" | grep -o '"point_msgs":[0-9]*' | cut -d: -f2 |
            awk '{s += $1} END {print s + 0}')
        # one "create" message per group per run that made its groups (= printed a result)
        local runs
        runs=$(grep '"point":"groups 1:1"' "$RAW" | grep -c '"scenario":"groups"')
        groups=$(tr ',' '\n' <<<"$GROUPS_SIZES" |
            awk -v u="$GROUPS_USERS" -v r="$runs" '{s += int(u / $1)} END {print s * r}')
        echo "groups: message rows of groups in SQLite: ${rows:-?}; group messages acked:" \
            "$acked + $groups \"create\" system messages = $((acked + groups))" |
            tee -a "$OUT/info.txt" "$OUT/groups-rows.txt" >&2
    fi
    groups_summary | tee "$OUT/groups-summary.txt"
}

# The groups table: per point the medians over the reps and issue 11's goals.
groups_summary() {
    node - "$RAW" <<'JS'
const fs = require('fs');
const rows = fs.readFileSync(process.argv[2], 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l))
  .filter((r) => r.scenario === 'groups');
const by = new Map();
for (const r of rows) (by.get(r.point) || by.set(r.point, []).get(r.point)).push(r);
const med = (rs, k) => {
  const v = rs.map((r) => r[k]).filter((x) => x != null).sort((a, b) => a - b);
  return v.length ? v[(v.length - 1) >> 1] : NaN;
};
const f = (v, d = 0) => (Number.isNaN(v) ? '-' : v.toLocaleString('en-US', { maximumFractionDigits: d }));
const range = (rs, k) => {
  const v = rs.map((r) => r[k]);
  return rs.length > 1 ? ` [${f(Math.min(...v))}-${f(Math.max(...v))}]` : '';
};
const direct = by.get('groups 1:1');
const base = direct ? med(direct, 'msgs_per_s') : NaN;
const baseUs = direct ? med(direct, 'server_us_per_delivery') : NaN;
const out = [['point', 'groups x members', 'senders', 'acked msgs/s', 'deliveries/s [min-max]', 'delivery p50 us',
  'p99 us', 'ack p99 us', 'store writes/msg', 'msgs/commit', 'server cpu', 'server us/delivery', 'noise', 'goal']];
for (const [p, rs] of by) {
  const m = rs[0].members, g = rs[0].groups;
  const wpm = med(rs, 'writes_per_msg');
  const goals = [];
  if (m > 2) goals.push(Number.isNaN(wpm) ? '? 1 write/msg' : `${wpm < 1.1 ? 'ok' : 'MISS'} 1 write/msg`);
  if (rs.some((r) => r.offered)) goals.push(`open loop at ${f(rs[0].offered)} msgs/s`);
  else if (m >= 500) {
    const x = med(rs, 'rate') / base;
    goals.push(Number.isNaN(x) ? '? >=10x 1:1' : `${x >= 10 ? 'ok' : 'MISS'} ${x.toFixed(1)}x 1:1 acked`);
    // the same per core of chatd: 1:1 server us per acked message / us per delivery here
    const y = baseUs / med(rs, 'server_us_per_delivery');
    if (!Number.isNaN(y)) goals.push(`(${y.toFixed(1)}x per server cpu)`);
  }
  out.push([p, m > 2 ? `${g} x ${m}` : 'pairs', String(rs[0].senders), f(med(rs, 'msgs_per_s')) + range(rs, 'msgs_per_s'),
    f(med(rs, 'rate')) + range(rs, 'rate'), f(med(rs, 'lat_p50_us')), f(med(rs, 'lat_p99_us')),
    f(med(rs, 'ack_p99_us')), f(wpm, 3), f(med(rs, 'msgs_per_commit'), 1), f(med(rs, 'server_cpu'), 2),
    f(med(rs, 'server_us_per_delivery'), 2), f(Math.max(...rs.map((r) => r.other_cpu ?? 0)), 2), goals.join(', ')]);
}
const w = out[0].map((_, i) => Math.max(...out.map((r) => r[i].length)));
for (const [i, r] of out.entries()) {
  console.log(r.map((x, k) => x.padEnd(w[k])).join('  ').trimEnd());
  if (i === 0) console.log(w.map((n) => '-'.repeat(n)).join('  '));
}
console.log(`medians over ${Math.max(0, ...[...by.values()].map((rs) => rs.length))} runs; deliveries = ` +
  'message pushes received by recipients (M-1 per group message, 1 per 1:1 message); latency from send ' +
  'to receipt (delivery) or to ack; store writes/msg = write requests committed (chatd_store_commit_batch_size ' +
  'sum) per acked message over the whole point; server us/delivery = chatd CPU time over the window per ' +
  'delivery (1:1: per acked message); noise = most cores other processes used in any run');
JS
}

# ---- tls-deflate (issue 12) ----
TD_ROUNDS=${TD_ROUNDS:-$REPS}
TD_DURATION=${TD_DURATION:-3}
TD_ECHO_CONNS=${TD_ECHO_CONNS:-100}
TD_ECHO_SIZES=${TD_ECHO_SIZES:-32 1024}
TD_PAIRS=${TD_PAIRS:-100}
TD_ROUTE_SIZE=${TD_ROUTE_SIZE:-32}
TD_MEMBERS=${TD_MEMBERS:-1000}
TD_FANOUT_SIZE=${TD_FANOUT_SIZE:-512}
TD_FANOUT_WINDOW=${TD_FANOUT_WINDOW:-$FANOUT_WINDOW}
TD_CONNS_N=${TD_CONNS_N:-2000}
TD_CONC=${TD_CONC:-50}
TD_DIR=""

# td_idle_mem NAME ROUND: bench/idle_mem.mjs against a fresh server of configuration NAME;
# its JSON line goes to raw.jsonl as point "td idle_mem N".
td_idle_mem() {
    local name=$1 r=$2 port scheme=ws opts=() line
    [ -d "$ROOT/tests/integration/node_modules/ws" ] || return 0
    td_start "$name" || return 0
    sleep 0.5
    port=TD_PORT_$name
    [ "$name" = tls ] && scheme=wss opts=(--ca "$TD_DIR/cert.pem")
    [ "$name" = deflate ] && opts=(--deflate)
    wait_quiet
    line=$(timeout 120 "${BENCH_PIN[@]}" node "$BENCH_DIR/idle_mem.mjs" --pid "$SERVER_PID" \
        --url "$scheme://127.0.0.1:${!port}/ws" --n "$TD_CONNS_N" "${opts[@]}" 2>>"$LOGDIR/bench.log")
    stop_server "$SERVER_PID"
    if [ -z "$line" ]; then
        echo "run.sh: idle_mem.mjs on $name, round $r failed (see $LOGDIR/bench.log)" >&2
        return 0
    fi
    echo "{\"point\":\"td idle_mem $TD_CONNS_N\",\"target\":\"$name\",\"rep\":$r,\"scenario\":\"idle_mem\",${line#\{}" >>"$RAW"
    printf '  %-22s %-6s rep %s: %s\n' "td idle_mem $TD_CONNS_N" "$name" "$r" \
        "$(grep -o '"rss_per_conn":[0-9-]*' <<<"$line")" >&2
}

# td_start NAME: a chatd for configuration NAME (plain, tls, deflate) on the server core;
# sets TD_PID_<NAME> and TD_PORT_<NAME>.
td_start() {
    local name=$1 ok
    case $name in
    plain) start_server chatd "$SERVER_CPU" ;;
    tls) BENCH_TLS_CERT=$TD_DIR/cert.pem BENCH_TLS_KEY=$TD_DIR/key.pem \
        start_server chatd "$SERVER_CPU" ;;
    deflate) BENCH_WS_DEFLATE=1 start_server chatd "$SERVER_CPU" ;;
    esac
    ok=$?
    printf -v "TD_PID_$name" '%s' "$SERVER_PID"
    printf -v "TD_PORT_$name" '%s' "$SERVER_PORT"
    return $ok
}

# td_point NAME POINT SCENARIO ARGS...: one run against configuration NAME's server (as the
# target NAME), the URL scheme and client options chosen by NAME: wss:// with the CA for tls,
# --ws-deflate for deflate. Use @PATH in ARGS for the URL of PATH.
td_point() {
    local name=$1 point=$2 sc=$3 a args=() pid port scheme=ws
    shift 3
    pid=TD_PID_$name port=TD_PORT_$name
    SERVER_PID=${!pid}
    [ "$name" = tls ] && scheme=wss
    for a in "$@"; do
        case $a in
        @*) args+=("$scheme://127.0.0.1:${!port}${a#@}") ;;
        *) args+=("$a") ;;
        esac
    done
    [ "$name" = tls ] && args+=(--tls-ca "$TD_DIR/cert.pem")
    [ "$name" = deflate ] && args+=(--ws-deflate)
    REPS=1 bench "$point" "$name" "$sc" "${args[@]}"
}

run_tls_deflate() {
    local r s duration=$DURATION first pair
    if ! chatd_has_opt tls-cert || ! chatd_has_opt ws-deflate; then
        echo "run.sh: tls-deflate skipped: chatd has no --tls-cert/--ws-deflate" >&2
        return
    fi
    TD_DIR=$(mktemp -d "${TMPDIR:-/tmp}/chatd-bench-tls.XXXXXX") || return
    if ! openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout "$TD_DIR/key.pem" \
        -out "$TD_DIR/cert.pem" >/dev/null 2>&1; then
        echo "run.sh: tls-deflate skipped: openssl could not make a certificate" >&2
        rm -rf "$TD_DIR"
        return
    fi
    {
        echo "tls-deflate: $(openssl version), certificate P-256 self-signed (openssl req -x509" \
            "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1), clients verify it (--tls-ca)"
        echo "tls-deflate settings: TD_ROUNDS=$TD_ROUNDS TD_DURATION=$TD_DURATION" \
            "TD_ECHO_CONNS=$TD_ECHO_CONNS TD_ECHO_SIZES=\"$TD_ECHO_SIZES\" TD_PAIRS=$TD_PAIRS" \
            "TD_ROUTE_SIZE=$TD_ROUTE_SIZE TD_MEMBERS=$TD_MEMBERS TD_FANOUT_SIZE=$TD_FANOUT_SIZE" \
            "TD_FANOUT_WINDOW=$TD_FANOUT_WINDOW TD_CONNS_N=$TD_CONNS_N WINDOW=$WINDOW" \
            "(server core ${SERVER_CPU:-none}, chatd-bench core ${BENCH_PIN[*]:-none})"
    } | tee -a "$OUT/info.txt" >&2
    if ! td_start plain || ! td_start tls || ! td_start deflate; then
        echo "run.sh: tls-deflate: a chatd did not start" >&2
        stop_all_servers
        rm -rf "$TD_DIR"
        return
    fi
    # shellcheck disable=SC2154  # set by td_start through printf -v
    echo "== tls-deflate: plain pid $TD_PID_plain, tls pid $TD_PID_tls, deflate pid $TD_PID_deflate" >&2
    DURATION=$TD_DURATION
    for r in $(seq 1 "$TD_ROUNDS"); do
        REP_NO=$r
        # every other round the other configuration of each pair goes first
        if [ $((r % 2)) = 1 ]; then pair="plain tls"; else pair="tls plain"; fi
        for s in $TD_ECHO_SIZES; do
            for first in $pair; do
                td_point "$first" "td echo $TD_ECHO_CONNS x $s" echo --url @/echo \
                    --conns "$TD_ECHO_CONNS" --size "$s" --window "$WINDOW"
            done
        done
        for first in $pair; do
            td_point "$first" "td route $TD_PAIRS x $TD_ROUTE_SIZE" route --url @/ws \
                --api-secret "$SECRET" --pairs "$TD_PAIRS" --size "$TD_ROUTE_SIZE" --window "$WINDOW"
        done
        if [ $((r % 2)) = 1 ]; then pair="plain deflate"; else pair="deflate plain"; fi
        for first in $pair; do
            td_point "$first" "td fanout $TD_MEMBERS x $TD_FANOUT_SIZE" fanout --url @/ws \
                --api-secret "$SECRET" --members "$TD_MEMBERS" --size "$TD_FANOUT_SIZE" \
                --window "$TD_FANOUT_WINDOW"
        done
    done
    stop_server "$TD_PID_plain"
    stop_server "$TD_PID_tls"
    stop_server "$TD_PID_deflate"
    # Idle memory per connection: a fresh server per configuration, tool and round; chatd-bench
    # conns (TD_CONC handshakes at once) and bench/idle_mem.mjs (the npm ws client, 50 at
    # once, after 100 warm-up connections) when tests/integration has its node_modules.
    for r in $(seq 1 "$TD_ROUNDS"); do
        REP_NO=$r
        for first in plain tls deflate; do
            td_start "$first" || continue
            sleep 0.5
            td_point "$first" "td conns $TD_CONNS_N" conns --url @/ws -n "$TD_CONNS_N" --hold 1 \
                --concurrency "$TD_CONC"
            stop_server "$SERVER_PID"
            td_idle_mem "$first" "$r"
        done
    done
    unset REP_NO
    DURATION=$duration
    rm -rf "$TD_DIR"
    node "$BENCH_DIR/summarize.mjs" --tls-deflate "$RAW" | tee "$OUT/tls-deflate-summary.txt"
}

for sc in "${SCENARIOS[@]}"; do
    case $sc in
    echo | route | rate | fanout | conns | storm | chat | cluster | gw | groups) "run_$sc" ;;
    chat-pg) run_chat_pg ;;
    tls-deflate) run_tls_deflate ;;
    *) echo "run.sh: unknown scenario $sc" >&2 ;;
    esac
done

echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/info.txt" >&2
node "$BENCH_DIR/summarize.mjs" "$RAW" | tee "$OUT/summary.txt"
echo "raw results: $RAW" >&2
