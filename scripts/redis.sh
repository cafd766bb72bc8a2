#!/usr/bin/env bash
# redis.sh: a throw-away Redis for chatd's cluster mode (tests, scripts/cluster.sh,
# trying it by hand). Nothing here is for production.
#
#   scripts/redis.sh start         start (if not running); prints redis://127.0.0.1:PORT
#   scripts/redis.sh url           prints the URL of the running server (exit 1 if none)
#   scripts/redis.sh stop          stops the server and removes its directory
#   scripts/redis.sh stop --keep   stops the server, keeps its directory (and port)
#   scripts/redis.sh restart       stop --keep, then start on the same port
#
# The server lives in $CHATD_REDIS_DIR (default ${TMPDIR:-/tmp}/chatd-redis): its pid file
# (pid), log (log), port (port) and URL (url). It listens on 127.0.0.1 only, on a free port,
# with no persistence (no RDB snapshots, no AOF): a restart starts empty, as after a crash
# of a cache. `start` on a stopped server whose directory still records a port takes that
# port again, so a test can stop Redis and bring it back on the same address
# (`stop --keep` then `start`, or `restart`). Idempotent: start on a running server only
# prints its URL; stop without one is a no-op. redis-server is installed with apt-get when
# missing.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

DIR=${CHATD_REDIS_DIR:-${TMPDIR:-/tmp}/chatd-redis}

pid_of() {
    [ -s "$DIR/pid" ] || return 1
    local pid
    pid=$(cat "$DIR/pid")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    # the PID must still be our redis-server, not a recycled number
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "redis-server" || return 1
    echo "$pid"
}

running() { pid_of >/dev/null; }

install_server() {
    command -v redis-server >/dev/null || apt_install redis.sh redis-server redis-tools
}

ping_ok() {
    # PING over a raw socket (no redis-cli needed): +PONG
    local ans
    ans=$(
        exec 2>/dev/null
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf 'PING\r\n' >&3
        timeout 1 head -c 7 <&3
    ) || return 1
    [[ "$ans" == +PONG* ]]
}

start() {
    if running && [ -s "$DIR/url" ]; then
        cat "$DIR/url"
        return 0
    fi
    install_server
    mkdir -p "$DIR"
    chmod 0700 "$DIR"
    local port="" fixed=0 attempt
    # a stopped server's port is taken again (a restart on the same address)
    if [ -s "$DIR/port" ]; then
        port=$(cat "$DIR/port")
        fixed=1
    fi
    for attempt in 1 2 3 4; do
        if [ "$fixed" = 0 ]; then
            port=$(free_port) || { echo "redis.sh: no free port" >&2; return 1; }
        elif ! port_free "$port"; then
            echo "redis.sh: port $port of $DIR is taken by something else" >&2
            return 1
        fi
        rm -f "$DIR/pid" "$DIR/url" "$DIR/log"
        echo "$port" >"$DIR/port"
        redis-server --bind 127.0.0.1 --port "$port" --protected-mode yes \
            --save "" --appendonly no --dir "$DIR" \
            --daemonize yes --pidfile "$DIR/pid" --logfile "$DIR/log" >/dev/null || true
        for _ in $(seq 1 100); do
            if ping_ok "$port"; then
                echo "redis://127.0.0.1:$port" >"$DIR/url.tmp"
                mv "$DIR/url.tmp" "$DIR/url"
                cat "$DIR/url"
                return 0
            fi
            # gave up already (e.g. the port was taken between the check and bind)
            grep -q "aborting" "$DIR/log" 2>/dev/null && break
            sleep 0.05
        done
        [ "$fixed" = 1 ] && break
        grep -q "Address already in use" "$DIR/log" 2>/dev/null || break
        echo "redis.sh: port $port was taken, trying another (attempt $attempt)" >&2
    done
    echo "redis.sh: redis-server did not answer PING on 127.0.0.1:$port" >&2
    [ -f "$DIR/log" ] && tail -n 20 "$DIR/log" >&2
    return 1
}

stop() {
    local keep=$1 pid
    if pid=$(pid_of); then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
        if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    fi
    if [ "$keep" = 1 ]; then
        rm -f "$DIR/pid" "$DIR/url"
    else
        rm -rf "$DIR"
    fi
}

case "${1:-}" in
start) start ;;
stop)
    if [ "${2:-}" = "--keep" ]; then stop 1; else stop 0; fi
    ;;
restart)
    stop 1
    start
    ;;
url)
    if running && [ -s "$DIR/url" ]; then
        cat "$DIR/url"
    else
        echo "redis.sh: no server running in $DIR (run: $0 start)" >&2
        exit 1
    fi
    ;;
*)
    echo "usage: $0 start|stop [--keep]|restart|url" >&2
    exit 2
    ;;
esac
