#!/usr/bin/env bash
# cluster.sh: a throw-away chatd cluster on this machine, for trying cluster mode and for
# tests: Redis (scripts/redis.sh), PostgreSQL (scripts/postgres.sh), N chatd nodes and
# Debian's haproxy in front of them on one public port. Nothing here is for production.
#
#   scripts/cluster.sh start [N]   start everything (N nodes, default 3); prints the public URL
#   scripts/cluster.sh status      what runs, each node's /healthz cluster view
#   scripts/cluster.sh stop        stop everything it started and remove its directory
#
# Everything lives in $CHATD_CLUSTER_DIR (default ${TMPDIR:-/tmp}/chatd-cluster): redis/ and
# pg/ (the two servers), nodeI.log and nodeI.pid of each chatd, haproxy.cfg, haproxy.log,
# haproxy.pid, and env, a shell-sourceable summary:
#   PUBLIC_URL   http://127.0.0.1:PORT, haproxy (the one address clients use)
#   NODE_URLS    the nodes' own http://127.0.0.1:PORT, space separated, node1 first
#   NODE_IDS     node1 .. nodeN
#   REDIS_URL    redis://127.0.0.1:PORT
#   PG_URL       postgres://...
#   API_SECRET   the --api-secret of every node (random unless $CHATD_API_SECRET is set)
#
# Nodes: build/chatd of this repository ($CHATD_BIN to use another; scripts/build.sh runs
# first when it is missing), each on a free 127.0.0.1 port with --store <PG_URL>
# --redis <REDIS_URL> --node-id nodeI --api-secret <API_SECRET> --web-root web/ --sdk-root clients/js/src, plus the
# words of $CHATD_NODE_ARGS. Public port: $CHATD_PUBLIC_PORT, or a free one.
#
# haproxy: mode http, balance roundrobin, no stickiness (no cookie, no stick table, no
# prefer-last-server: haproxy 2.6 then balances every request of a keep-alive client
# connection on its own, so consecutive requests land on different nodes), WebSocket-aware timeouts (timeout tunnel 1h once a
# connection is upgraded), health checks on GET /healthz every second, retries with
# redispatch so a new connection never waits on a dead node.
#
# Idempotent: start on a running cluster only prints its URL; stop without one is a no-op.
# redis-server, postgresql-15 and haproxy are installed with apt-get when missing.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

root=$(cd "$(dirname "$0")/.." && pwd)
DIR=${CHATD_CLUSTER_DIR:-${TMPDIR:-/tmp}/chatd-cluster}
BIN=${CHATD_BIN:-$root/build/chatd}

log() { echo "cluster.sh: $*" >&2; }

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# The PID recorded in file $1 if that process is alive and still runs $2 (a command name).
pid_from() {
    local f=$1 name=$2 pid
    [ -s "$f" ] || return 1
    pid=$(cat "$f")
    pid_alive "$pid" || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$name" || return 1
    echo "$pid"
}

install_haproxy() {
    command -v haproxy >/dev/null || apt_install cluster.sh haproxy
}

# GET url: the HTTP status (000 when nothing answers)
http_status() { curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" 2>/dev/null || true; }

wait_healthy() {
    local url=$1 what=$2 logf=$3 pid=${4:-}
    for _ in $(seq 1 200); do
        [ "$(http_status "$url/healthz")" = 200 ] && return 0
        if [ -n "$pid" ] && ! pid_alive "$pid"; then
            log "$what exited during start-up; its log ($logf):"
            tail -n 30 "$logf" >&2 || true
            return 1
        fi
        sleep 0.05
    done
    log "$what did not answer GET /healthz with 200 within 10 s; its log ($logf):"
    tail -n 30 "$logf" >&2 || true
    return 1
}

running() {
    [ -s "$DIR/env" ] || return 1
    pid_from "$DIR/haproxy.pid" haproxy >/dev/null || return 1
    local f
    for f in "$DIR"/node*.pid; do
        [ -e "$f" ] || return 1
        pid_from "$f" chatd >/dev/null || return 1
    done
}

start() {
    local n=${1:-3}
    if ! [[ "$n" =~ ^[1-9][0-9]?$ ]]; then
        echo "usage: $0 start [N]   (N: 1..99 nodes)" >&2
        return 2
    fi
    if running; then
        # shellcheck disable=SC1091
        (. "$DIR/env" && echo "$PUBLIC_URL")
        return 0
    fi
    # leftovers of a crashed or partial run are stopped and started over
    [ -d "$DIR" ] && stop
    install_haproxy
    command -v curl >/dev/null || { log "curl is needed (apt-get install curl)"; return 1; }
    if [ ! -x "$BIN" ]; then
        log "building $BIN (scripts/build.sh)"
        if [ -n "${CHATD_BIN:-}" ]; then
            log "CHATD_BIN=$CHATD_BIN does not exist"
            return 1
        fi
        "$root/scripts/build.sh" >&2 || { log "build failed"; return 1; }
    fi
    mkdir -p "$DIR"
    # world-traversable: postgres.sh runs the server as `postgres` in pg/ below it
    chmod 0755 "$DIR"

    local redis_url pg_url secret
    redis_url=$(CHATD_REDIS_DIR="$DIR/redis" "$root/scripts/redis.sh" start | tail -n 1) || redis_url=""
    [ -n "$redis_url" ] || { log "redis.sh start failed"; return 1; }
    pg_url=$(CHATD_PG_DIR="$DIR/pg" "$root/scripts/postgres.sh" start | tail -n 1) || pg_url=""
    [ -n "$pg_url" ] || { log "postgres.sh start failed"; return 1; }
    secret=${CHATD_API_SECRET:-$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')}

    local i port pid node_urls="" node_ids="" ports=() extra=() unset_env=() v
    # the nodes read no CHATD_* of the caller: everything they get is on their command line
    for v in $(compgen -e); do [[ "$v" == CHATD_* ]] && unset_env+=(-u "$v"); done
    # shellcheck disable=SC2206
    [ -n "${CHATD_NODE_ARGS:-}" ] && extra=(${CHATD_NODE_ARGS})
    for i in $(seq 1 "$n"); do
        port=$(free_port) || { log "no free port"; return 1; }
        mkdir -p "$DIR/node$i"
        env "${unset_env[@]}" \
            setsid "$BIN" --listen "127.0.0.1:$port" --store "$pg_url" --redis "$redis_url" \
            --node-id "node$i" --api-secret "$secret" --web-root "$root/web" --sdk-root "$root/clients/js/src" \
            --data-dir "$DIR/node$i" "${extra[@]}" \
            </dev/null >"$DIR/node$i.log" 2>&1 &
        pid=$!
        echo "$pid" >"$DIR/node$i.pid"
        ports+=("$port")
        node_urls+="${node_urls:+ }http://127.0.0.1:$port"
        node_ids+="${node_ids:+ }node$i"
    done
    for i in $(seq 1 "$n"); do
        wait_healthy "http://127.0.0.1:${ports[$((i - 1))]}" "chatd node$i" "$DIR/node$i.log" \
            "$(cat "$DIR/node$i.pid")" || return 1
    done

    # the nodes find each other through Redis (a heartbeat a second): wait until
    # each one counts all N, so the cluster is whole when the URL is printed
    local seen
    for _ in $(seq 1 100); do
        seen=0
        for i in $(seq 1 "$n"); do
            curl -s -m 2 "http://127.0.0.1:${ports[$((i - 1))]}/healthz" | grep -q "\"nodes\":${n}[,}]" &&
                seen=$((seen + 1))
        done
        [ "$seen" -eq "$n" ] && break
        sleep 0.1
    done
    [ "$seen" -eq "$n" ] || log "warning: after 10 s only $seen of $n nodes see all $n nodes (see their logs in $DIR)"

    local public=${CHATD_PUBLIC_PORT:-}
    if [ -z "$public" ]; then
        public=$(free_port) || { log "no free port"; return 1; }
    elif ! port_free "$public"; then
        log "CHATD_PUBLIC_PORT $public is taken"
        return 1
    fi
    {
        cat <<EOF
# written by scripts/cluster.sh: $n chatd nodes behind one public port
global
    # maxconn: derived from the file descriptor limit (ulimit -n)
    log stderr format raw local0 info

defaults
    mode http
    log global
    option httplog
    option dontlognull
    # haproxy 2.6 balances every request of a keep-alive client connection on its own
    # (no prefer-last-server here): consecutive requests go to different nodes
    option redispatch
    retries 2
    timeout connect 2s
    timeout client 75s
    timeout server 75s
    timeout http-request 10s
    timeout http-keep-alive 10s
    timeout client-fin 5s
    timeout server-fin 5s
    # an upgraded WebSocket: chatd pings a silent socket every 25 s
    timeout tunnel 1h

frontend public
    bind 127.0.0.1:$public
    default_backend chatd

backend chatd
    balance roundrobin
    option httpchk GET /healthz
    http-check expect status 200
    default-server check inter 1s fastinter 500ms downinter 1s fall 2 rise 1
EOF
        for i in $(seq 1 "$n"); do
            echo "    server node$i 127.0.0.1:${ports[$((i - 1))]}"
        done
    } >"$DIR/haproxy.cfg"
    haproxy -c -q -f "$DIR/haproxy.cfg" >&2 || { log "bad haproxy.cfg"; return 1; }
    setsid haproxy -db -f "$DIR/haproxy.cfg" </dev/null >"$DIR/haproxy.log" 2>&1 &
    pid=$!
    echo "$pid" >"$DIR/haproxy.pid"
    wait_healthy "http://127.0.0.1:$public" "haproxy" "$DIR/haproxy.log" "$pid" || return 1

    cat >"$DIR/env.tmp" <<EOF
PUBLIC_URL='http://127.0.0.1:$public'
NODE_URLS='$node_urls'
NODE_IDS='$node_ids'
REDIS_URL='$redis_url'
PG_URL='$pg_url'
API_SECRET='$secret'
EOF
    chmod 0600 "$DIR/env.tmp"
    mv "$DIR/env.tmp" "$DIR/env"
    echo "http://127.0.0.1:$public"
}

# Stops the process of pid file $1 (command name $2): SIGTERM, SIGKILL after 5 s.
stop_pid() {
    local pid
    pid=$(pid_from "$1" "$2") || { rm -f "$1"; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        pid_alive "$pid" || break
        sleep 0.05
    done
    if pid_alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
    rm -f "$1"
}

stop() {
    [ -d "$DIR" ] || return 0
    local f
    [ -e "$DIR/haproxy.pid" ] && stop_pid "$DIR/haproxy.pid" haproxy
    for f in "$DIR"/node*.pid; do
        [ -e "$f" ] && stop_pid "$f" chatd
    done
    [ -d "$DIR/redis" ] && CHATD_REDIS_DIR="$DIR/redis" "$root/scripts/redis.sh" stop
    [ -d "$DIR/pg" ] && CHATD_PG_DIR="$DIR/pg" "$root/scripts/postgres.sh" stop
    rm -rf "$DIR"
}

status() {
    if [ ! -s "$DIR/env" ]; then
        echo "no cluster in $DIR (run: $0 start 3)"
        return 1
    fi
    local PUBLIC_URL="" NODE_URLS="" REDIS_URL="" PG_URL=""
    # shellcheck disable=SC1091
    . "$DIR/env"
    local ok=0 pid f name url i=0
    if pid=$(pid_from "$DIR/haproxy.pid" haproxy); then
        echo "haproxy  pid $pid  $PUBLIC_URL"
    else
        echo "haproxy  DOWN  $PUBLIC_URL"
        ok=1
    fi
    for url in $NODE_URLS; do
        i=$((i + 1))
        name=node$i
        f=$DIR/$name.pid
        if pid=$(pid_from "$f" chatd); then
            echo "$name    pid $pid  $url  $(curl -s -m 2 "$url/healthz" | sed -n 's/.*"cluster":\({[^}]*}\).*/\1/p')"
        else
            echo "$name    DOWN  $url"
            ok=1
        fi
    done
    if CHATD_REDIS_DIR="$DIR/redis" "$root/scripts/redis.sh" url >/dev/null 2>&1; then
        echo "redis    $REDIS_URL"
    else
        echo "redis    DOWN  $REDIS_URL"
        ok=1
    fi
    if CHATD_PG_DIR="$DIR/pg" "$root/scripts/postgres.sh" url >/dev/null 2>&1; then
        echo "postgres ${PG_URL%%:*}://...@${PG_URL##*@}"
    else
        echo "postgres DOWN"
        ok=1
    fi
    return $ok
}

case "${1:-}" in
start)
    # a start that fails half way leaves nothing running
    rc=0
    start "${2:-3}" || rc=$?
    if [ "$rc" -ne 0 ]; then
        [ "$rc" -ne 2 ] && { log "start failed; stopping what was started"; stop; }
        exit "$rc"
    fi
    ;;
stop) stop ;;
status) status ;;
*)
    echo "usage: $0 start [N]|stop|status" >&2
    exit 2
    ;;
esac
