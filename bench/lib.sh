# shellcheck shell=bash disable=SC2034  # variables are read by the scripts sourcing this
# lib.sh: shell helpers shared by bench/run.sh and bench/smoke.sh: free ports, starting and
# stopping the servers under test (by PID, never by name), waiting until they listen.
# Sourced, not run.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
SECRET=${SECRET:-bench-secret}
STARTED_PIDS=()

# A TCP port on 127.0.0.1 that nothing listens on (below the ephemeral range).
free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$((20000 + RANDOM % 12000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# wait_listening PORT PID: until something accepts on PORT (10 s), or PID died.
wait_listening() {
    for _ in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 0
        fi
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

chatd_has_opt() {
    "$BUILD/chatd" --help 2>&1 | grep -q -- "--$1 "
}

# start_server KIND [CPU]: starts chatd (chatd-epoll: with --io epoll), peer or floor on a free port; sets SERVER_PID,
# SERVER_PORT, SERVER_NOTE. Output goes to $LOGDIR/KIND-PORT.log. chatd uses SQLite in
# $LOGDIR/data-PORT, or the PostgreSQL URI in BENCH_STORE when set (with
# --store-connections STORE_CONNECTIONS when set). With BENCH_REDIS set, chatd is a cluster
# node: --redis BENCH_REDIS and --node-id BENCH_NODE_ID (when set). BENCH_TLS_CERT and
# BENCH_TLS_KEY: --tls-cert/--tls-key (https and wss); BENCH_WS_DEFLATE=1: --ws-deflate;
# BENCH_METRICS=1: --metrics; BENCH_MAX_GROUP: --max-group-members. BENCH_ECHO_PATH: the
# echo endpoint of chatd and the peer (/echo; run.sh echo uses / because uWebSockets'
# load_test always requests GET /). KIND uws: uWebSockets' EchoServer example (UWS_ECHO, run
# in UWS_DIR), which always listens on port 9001: refused when something else holds it.
start_server() {
    local kind=$1 cpu=${2:-} pin=()
    [ -n "$cpu" ] && pin=(taskset -c "$cpu")
    local tries echo_path=${BENCH_ECHO_PATH:-/echo}
    for tries in 1 2 3 4 5; do
        if [ "$kind" = uws ]; then
            SERVER_PORT=9001
            if (exec 3<>/dev/tcp/127.0.0.1/9001) 2>/dev/null; then
                echo "start_server: port 9001 is taken: no uWebSockets EchoServer" >&2
                return 1
            fi
        else
            SERVER_PORT=$(free_port) || return 1
        fi
        local log="$LOGDIR/$kind-$SERVER_PORT.log"
        SERVER_NOTE=""
        case $kind in
        chatd | chatd-epoll)
            local extra=()
            # chatd-epoll: the epoll backend; chatd: its default (io_uring where it starts)
            [ "$kind" = chatd-epoll ] && extra+=(--io epoll)
            chatd_has_opt login-rate && extra+=(--login-rate 100000)
            # the bench measures the server, not its per-user and per-address abuse limits
            chatd_has_opt register-rate && extra+=(--register-rate 1000000)
            chatd_has_opt send-rate && extra+=(--send-rate 0)
            chatd_has_opt max-conns-per-ip && extra+=(--max-conns-per-ip 0)
            chatd_has_opt hash-queue && extra+=(--hash-queue 100000)
            if [ -n "${BENCH_STORE:-}" ]; then
                # PostgreSQL (run.sh chat-pg): its durability is the server's
                # fsync/synchronous_commit, recorded by run.sh; --durability is SQLite's
                extra+=(--store "$BENCH_STORE")
                SERVER_NOTE="store=postgresql"
                if [ -n "${STORE_CONNECTIONS:-}" ]; then
                    extra+=(--store-connections "$STORE_CONNECTIONS")
                    SERVER_NOTE+=" store-connections=$STORE_CONNECTIONS"
                fi
                [ -n "${PG_NOTE:-}" ] && SERVER_NOTE+=" $PG_NOTE"
            elif chatd_has_opt durability; then
                extra+=(--durability "${DURABILITY:-full}")
                SERVER_NOTE="store=sqlite durability=${DURABILITY:-full}"
            else
                SERVER_NOTE="durability=chatd default (no --durability option)"
            fi
            if [ -n "${BENCH_REDIS:-}" ]; then
                extra+=(--redis "$BENCH_REDIS")
                [ -n "${BENCH_NODE_ID:-}" ] && extra+=(--node-id "$BENCH_NODE_ID")
                SERVER_NOTE+=" cluster node ${BENCH_NODE_ID:-}"
            fi
            if [ -n "${BENCH_TLS_CERT:-}" ]; then
                extra+=(--tls-cert "$BENCH_TLS_CERT" --tls-key "$BENCH_TLS_KEY")
                SERVER_NOTE+=" tls"
            fi
            if [ "${BENCH_METRICS:-0}" = 1 ] && chatd_has_opt metrics; then
                extra+=(--metrics)
                SERVER_NOTE+=" metrics"
            fi
            if [ -n "${BENCH_MAX_GROUP:-}" ] && chatd_has_opt max-group-members; then
                extra+=(--max-group-members "$BENCH_MAX_GROUP")
            fi
            if [ "${BENCH_WS_DEFLATE:-0}" = 1 ]; then
                extra+=(--ws-deflate)
                SERVER_NOTE+=" ws-deflate"
            fi
            mkdir -p "$LOGDIR/data-$SERVER_PORT"
            (ulimit -n "$(ulimit -Hn)"; exec "${pin[@]}" "$BUILD/chatd" \
                --listen "127.0.0.1:$SERVER_PORT" --api-secret "$SECRET" --echo-path "$echo_path" \
                --event-rate 0 --log-level warn --data-dir "$LOGDIR/data-$SERVER_PORT" \
                --web-root "$ROOT/web" "${extra[@]}") >"$log" 2>&1 &
            ;;
        peer)
            (ulimit -n "$(ulimit -Hn)"; exec "${pin[@]}" node "$BENCH_DIR/peer/server.mjs" \
                --listen "127.0.0.1:$SERVER_PORT" --api-secret "$SECRET" \
                --echo-path "$echo_path") >"$log" 2>&1 &
            ;;
        uws)
            (ulimit -n "$(ulimit -Hn)"; cd "$UWS_DIR" && exec "${pin[@]}" "$UWS_ECHO") >"$log" 2>&1 &
            ;;
        floor)
            (ulimit -n "$(ulimit -Hn)"; exec "${pin[@]}" "$BUILD/chatd-floor" \
                --listen "127.0.0.1:$SERVER_PORT") >"$log" 2>&1 &
            ;;
        *)
            echo "start_server: unknown kind $kind" >&2
            return 1
            ;;
        esac
        SERVER_PID=$!
        STARTED_PIDS+=("$SERVER_PID")
        if wait_listening "$SERVER_PORT" "$SERVER_PID"; then
            return 0
        fi
        stop_server "$SERVER_PID"
        echo "start_server: $kind did not come up on port $SERVER_PORT (try $tries):" >&2
        tail -5 "$log" >&2
    done
    return 1
}

# stop_server PID: SIGTERM, then SIGKILL after 5 s. Sets STOPPED_RC to its exit status
# (143 = ended by the SIGTERM; 134 = it aborted).
stop_server() {
    local pid=$1
    STOPPED_RC=
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    STOPPED_RC=$?
    return 0
}

# start_redis [CPU]: a throw-away Redis on a free port of 127.0.0.1, no persistence, its
# directory under TMPDIR; pinned to CPU (all its threads) when given. Uses scripts/redis.sh
# when the repository has it, else runs redis-server itself. Sets REDIS_URL, REDIS_PID,
# REDIS_DIR. stop_redis stops it (by its PID) and removes the directory.
REDIS_DIR="" REDIS_PID="" REDIS_URL="" REDIS_VIA=""
start_redis() {
    local cpu=${1:-} port
    REDIS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/chatd-bench-redis.XXXXXX") || return 1
    if [ -x "$ROOT/scripts/redis.sh" ]; then
        REDIS_VIA=script
        REDIS_URL=$(CHATD_REDIS_DIR="$REDIS_DIR" "$ROOT/scripts/redis.sh" start | tail -n 1) &&
            [ -n "$REDIS_URL" ] || { stop_redis; return 1; }
    else
        REDIS_VIA=direct
        command -v redis-server >/dev/null || { echo "start_redis: no redis-server" >&2; return 1; }
        port=$(free_port) || return 1
        redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
            --dir "$REDIS_DIR" --daemonize yes --pidfile "$REDIS_DIR/pid" \
            --logfile "$REDIS_DIR/log" >/dev/null || { stop_redis; return 1; }
        REDIS_URL=redis://127.0.0.1:$port
        local ok=0
        for _ in $(seq 1 100); do
            if [ -s "$REDIS_DIR/pid" ] && [ "$(redis_cmd PING)" = PONG ]; then
                ok=1
                break
            fi
            sleep 0.05
        done
        [ $ok = 1 ] || { echo "start_redis: no PONG from $REDIS_URL" >&2; stop_redis; return 1; }
    fi
    REDIS_PID=$(cat "$REDIS_DIR/pid" 2>/dev/null)
    [ -n "$REDIS_PID" ] && kill -0 "$REDIS_PID" 2>/dev/null || { stop_redis; return 1; }
    [ -n "$cpu" ] && taskset -a -pc "$cpu" "$REDIS_PID" >/dev/null
    return 0
}

# redis_cmd ARGS...: one command to the bench's Redis (redis-cli), the reply on stdout.
redis_cmd() {
    local hp=${REDIS_URL#redis://}
    hp=${hp%%/*}
    redis-cli -h "${hp%%:*}" -p "${hp##*:}" "$@" 2>/dev/null
}

stop_redis() {
    [ -z "$REDIS_DIR" ] && return 0
    # keep Redis's own log (why it stopped, if it died) next to the servers' logs
    [ -n "${LOGDIR:-}" ] && [ -f "$REDIS_DIR/log" ] && cp "$REDIS_DIR/log" "$LOGDIR/redis.log"
    if [ "$REDIS_VIA" = script ]; then
        CHATD_REDIS_DIR="$REDIS_DIR" "$ROOT/scripts/redis.sh" stop >/dev/null 2>&1
    fi
    if [ -n "$REDIS_PID" ] && kill -0 "$REDIS_PID" 2>/dev/null &&
        tr '\0' ' ' <"/proc/$REDIS_PID/cmdline" 2>/dev/null | grep -q redis-server; then
        kill -TERM "$REDIS_PID"
        for _ in $(seq 1 100); do
            kill -0 "$REDIS_PID" 2>/dev/null || break
            sleep 0.05
        done
        kill -KILL "$REDIS_PID" 2>/dev/null
    fi
    rm -rf "$REDIS_DIR"
    REDIS_DIR="" REDIS_PID="" REDIS_URL=""
}

stop_all_servers() {
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        stop_server "$pid"
    done
    STARTED_PIDS=()
}
