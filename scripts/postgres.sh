#!/usr/bin/env bash
# postgres.sh: a throw-away PostgreSQL 15 cluster for chatd's tests and for trying
# chatd on PostgreSQL. Nothing here is for production.
#
#   scripts/postgres.sh start   initdb + start (if not running); prints the URI
#   scripts/postgres.sh url     prints the URI of the running cluster (exit 1 if none)
#   scripts/postgres.sh stop    stops the cluster and removes its directory
#
# The cluster lives in $CHATD_PG_DIR (default ${TMPDIR:-/tmp}/chatd-pg): data in data/,
# the log in log, the URI in url (what the tests read). It listens on 127.0.0.1 on a free
# port (and a Unix socket in that directory only), with fsync and synchronous_commit on
# (PostgreSQL's defaults, the settings chatd's --durability full relies on). Run as root,
# the server runs as the `postgres` user, which owns the directory; otherwise as you.
# `start` creates the login role `chatd` with a random password (and CREATEDB, so a test
# harness can make a fresh database per server, and pg_signal_backend, so its DROP DATABASE
# ... WITH (FORCE) may end an autovacuum worker that is in that database: PostgreSQL 15 gives
# such a worker no role and refuses otherwise) and its database `chatd`.
# Idempotent: start on a running cluster only prints its URI; stop without one is a no-op.
# postgresql-15 is installed with apt-get when missing.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

DIR=${CHATD_PG_DIR:-${TMPDIR:-/tmp}/chatd-pg}
BIN=/usr/lib/postgresql/15/bin

as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

running() {
    [ -f "$DIR/data/postmaster.pid" ] && as_owner "$BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1
}

install_server() {
    [ -x "$BIN/initdb" ] || apt_install postgres.sh postgresql-15
}

start() {
    if running && [ -s "$DIR/url" ]; then
        cat "$DIR/url"
        return 0
    fi
    install_server
    # a directory left by a crashed run is started over
    rm -rf "$DIR"
    mkdir -p "$DIR"
    chmod 0700 "$DIR"
    [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$DIR"
    local pass port
    pass=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
    port=$(free_port)
    as_owner "$BIN/initdb" -D "$DIR/data" -U postgres --auth-local=trust \
        --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1 || {
        cat "$DIR/initdb.log" >&2
        return 1
    }
    # fsync and synchronous_commit are left at their defaults (on). Enough connections
    # for a test suite that runs several chatd at once, each with --store-connections.
    cat >>"$DIR/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$DIR'
max_connections = 300
fsync = on
synchronous_commit = on
EOF
    as_owner "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/log" -w -t 30 start >/dev/null || {
        cat "$DIR/log" >&2
        return 1
    }
    # the password is hex: no quoting issue in SQL or in the URI
    as_owner "$BIN/psql" -h "$DIR" -p "$port" -U postgres -d postgres -q -v ON_ERROR_STOP=1 \
        -c "CREATE ROLE chatd LOGIN CREATEDB PASSWORD '$pass'" \
        -c "GRANT pg_signal_backend TO chatd" \
        -c "CREATE DATABASE chatd OWNER chatd" >/dev/null
    local url="postgres://chatd:$pass@127.0.0.1:$port/chatd"
    echo "$url" >"$DIR/url.tmp"
    chmod 0644 "$DIR/url.tmp"
    mv "$DIR/url.tmp" "$DIR/url"
    echo "$url"
}

stop() {
    if running; then
        as_owner "$BIN/pg_ctl" -D "$DIR/data" -m fast -w -t 30 stop >/dev/null
    fi
    rm -rf "$DIR"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
url)
    if running && [ -s "$DIR/url" ]; then
        cat "$DIR/url"
    else
        echo "postgres.sh: no cluster running in $DIR (run: $0 start)" >&2
        exit 1
    fi
    ;;
*)
    echo "usage: $0 start|stop|url" >&2
    exit 2
    ;;
esac
