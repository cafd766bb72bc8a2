#!/usr/bin/env bash
# test.sh: the whole test suite, as CI runs it (.ci/run calls this).
#
# Installs what is missing, then runs, each as one stage:
#   build        gcc build, warnings are errors
#   build-clang  clang build, warnings are errors
#   unit         cmocka unit tests (ctest)
#   integration  the real build/chatd driven by Node's ws client
#   sdk          the JavaScript SDK (clients/js) against the real build/chatd, once
#                with its browser adapter (ws, an in-memory localStorage) and once
#                with its uni-app adapter over a fake uni (tests/sdk)
#   integration-tls  the transport's files again (framing, HTTP, streaming, the
#                chat flow and pushes) with every chatd the harness starts
#                serving https/wss (CHATD_TEST_TLS=1: --tls-cert/--tls-key from a
#                throw-away CA per test process; every client trusts only it)
#   unit-pg      the store's unit tests of the PostgreSQL backend (CHATD_TEST_PG_URI)
#   integration-pg   the chat-service integration tests again, every chatd on a
#                fresh database of a throw-away PostgreSQL (CHATD_TEST_STORE)
#   pg-multinode two chatd on one database, a transaction held open in
#                PostgreSQL, PostgreSQL stopped under load (tests/integration/pg_*)
#   cluster      chatd nodes on Redis and PostgreSQL behind haproxy: the chat flow
#                and the server API across nodes, no stickiness, a node killed and
#                Redis restarted under load, Redis and a node stalled past the
#                heartbeat TTL, garbage on the bus, dead-node expiry and restart,
#                directory churn, exactly-once fan-out under load,
#                --reuseport, scripts/cluster.sh (tests/cluster)
#   gatewayworker  the GatewayWorker drop-in: a GatewayClient-like PHP client and
#                BusinessWorker-like PHP workers on --gw-inner/--gw-register (every
#                command and reply format, sessions, groups, workers' events, bad
#                input on the inner port and the Register), and two nodes on Redis
#                and PostgreSQL behind one Register (tests/gatewayworker)
#   abuse        attacks on the real build/chatd next to a victim client, each
#                asserting its bound (memory, victim latency, refusal codes)
#   bench-smoke  every chatd-bench subcommand, briefly (tool works, not numbers)
#   browser      the web client in headless Chromium (Playwright)
#   browser-pg   the files about what the store answers (chat, groups, sync,
#                restart, profile) and the cluster, with chatd on PostgreSQL
#   fuzz         libFuzzer targets, a short bounded run each on the seed corpus
#   asan-*       unit + integration (and integration-pg, cluster, gatewayworker) again under
#                AddressSanitizer + UBSan; asan-integration runs every chatd with --io epoll,
#                so both I/O backends pass the whole directory (the others: chatd's default,
#                io_uring where the kernel allows it)
# and ends with one line "suite: N passed, N failed".
#
# Set CHATD_TEST_STAGES="unit integration" to run only some stages.
# The PostgreSQL stages start their own cluster with scripts/postgres.sh (in a
# directory of this run, never a cluster you started) on first need and stop it
# after the last of them, and on any exit of this script (a failed stage, ^C) by
# the trap below.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export CHATD_REPO="$root"
fuzz_seconds=${CHATD_FUZZ_SECONDS:-6}
# Tests that open thousands of sockets (abuse/idle_memory, the cluster's load
# tests) need more than a default soft limit of 1,024 open files.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

"$root/scripts/bootstrap.sh" --test || { echo "bootstrap failed"; echo "suite: 0 passed, 1 failed"; exit 1; }

# The throw-away PostgreSQL of the PostgreSQL stages: started on first need.
pg_dir="${TMPDIR:-/tmp}/chatd-test-pg-$$"
pg_url=""
pg_up() {
  [ -n "$pg_url" ] && return 0
  pg_url=$(CHATD_PG_DIR="$pg_dir" "$root/scripts/postgres.sh" start | tail -n 1) && [ -n "$pg_url" ] && return 0
  echo "postgres.sh start failed"
  pg_url=""
  return 1
}
pg_down() {
  [ -d "$pg_dir" ] || return 0
  CHATD_PG_DIR="$pg_dir" "$root/scripts/postgres.sh" stop || echo "postgres.sh stop failed: $pg_dir"
  pg_url=""
}
trap pg_down EXIT
trap 'exit 130' INT TERM

passed=0
failed=0
failed_names=()
want() { [ -z "${CHATD_TEST_STAGES:-}" ] || [[ " $CHATD_TEST_STAGES " == *" $1 "* ]]; }
stage() {
  local name=$1
  shift
  want "$name" || return 0
  echo
  echo "=== stage $name: $*"
  local start=$SECONDS
  if "$@"; then
    passed=$((passed + 1))
    echo "=== stage $name: ok ($((SECONDS - start)) s)"
  else
    failed=$((failed + 1))
    failed_names+=("$name")
    echo "=== stage $name: FAILED ($((SECONDS - start)) s)"
  fi
}

build_gcc() { CC=gcc BUILD_DIR="$root/build" "$root/scripts/build.sh" -DCHATD_WERROR=ON; }
build_clang() { CC=clang BUILD_DIR="$root/build-clang" "$root/scripts/build.sh" -DCHATD_WERROR=ON; }
build_asan() {
  CC=clang BUILD_DIR="$root/build-asan" BUILD_TYPE=Debug "$root/scripts/build.sh" -DCHATD_SANITIZE=ON
}
build_fuzz() { CC=clang BUILD_DIR="$root/build-fuzz" "$root/scripts/build.sh" -DCHATD_FUZZ=ON; }

unit() { ctest --test-dir "$1" --output-on-failure; }
integration() {
  (cd "$root/tests/integration" && CHATD_BIN="$1/chatd" node --test --test-concurrency=2)
}
# The same on the epoll backend (--io epoll; the harness adds it to every chatd).
integration_epoll() { CHATD_TEST_IO=epoll integration "$1"; }
# The whole integration directory over TLS: the harness gives every chatd it
# starts a certificate of its own throw-away CA and speaks https/wss/TLS to it
# (tests/integration/lib/tls.mjs); tests that set up TLS themselves keep theirs.
# The files that exercise the transport (framing, HTTP, streaming, pushes, the chat
# flow over wss), not the ones whose subject is the store or the command line.
integration_tls() {
  (cd "$root/tests/integration" && CHATD_TEST_TLS=1 CHATD_BIN="$1/chatd" node --test --test-concurrency=2 \
    frames.test.mjs handshake.test.mjs heartbeat_backpressure.test.mjs http.test.mjs \
    static.test.mjs static_gzip.test.mjs static_sdk.test.mjs media.test.mjs deflate.test.mjs utf8_stream.test.mjs \
    tls.test.mjs events.test.mjs gateway_api.test.mjs chat_flow.test.mjs chat_bind.test.mjs \
    chat_groups_smoke.test.mjs presence.test.mjs shutdown.test.mjs metrics.test.mjs)
}
# The SDK's scenarios, one file per adapter, each with its own chatd.
sdk() { (cd "$root/tests/sdk" && CHATD_BIN="$1/chatd" node --test --test-concurrency=2 --test-timeout=60000); }
# The chat-service tests (and every other test that touches the store) on PostgreSQL:
# the same files as on SQLite; the harness gives each chatd its own database.
integration_pg() {
  pg_up || return 1
  (cd "$root/tests/integration" && CHATD_TEST_STORE="$pg_url" CHATD_BIN="$1/chatd" \
    node --test --test-concurrency=2 chat_*.test.mjs store_*.test.mjs)
}
# The store's unit tests of the PostgreSQL backend (skipped without CHATD_TEST_PG_URI),
# and the backend-neutral group tests, which use PostgreSQL when that is set.
unit_pg() {
  pg_up || return 1
  CHATD_TEST_PG_URI="$pg_url" ctest --test-dir "$1" --output-on-failure -R '^test_store_(pg|groups|recall)$'
}
pg_multinode() {
  pg_up || return 1
  (cd "$root/tests/integration" && CHATD_TEST_STORE="$pg_url" CHATD_BIN="$1/chatd" \
    node --test --test-concurrency=1 pg_*.test.mjs)
}
# The cluster tests start Redis (scripts/redis.sh), chatd nodes and haproxy themselves,
# each file in directories of its own; the databases are made on the stage's PostgreSQL.
cluster() {
  pg_up || return 1
  local dir="$root/tests/cluster"
  # the same npm packages as the integration tests (ws)
  [ -e "$dir/node_modules" ] || ln -s ../integration/node_modules "$dir/node_modules"
  (cd "$dir" && CHATD_TEST_STORE="$pg_url" CHATD_BIN="$1/chatd" \
    node --test --test-concurrency=1 --test-timeout=120000)
}
# The GatewayWorker tests drive chatd with PHP (php8.2-cli); only cluster.test.mjs
# needs PostgreSQL (and Redis, which its harness starts), so the other files run
# on SQLite first.
gatewayworker() {
  local dir="$root/tests/gatewayworker" rc=0 f
  [ -e "$dir/node_modules" ] || ln -s ../integration/node_modules "$dir/node_modules"
  local others=()
  for f in "$dir"/*.test.mjs; do
    [ "$(basename "$f")" = cluster.test.mjs ] || others+=("$(basename "$f")")
  done
  (cd "$dir" && CHATD_BIN="$1/chatd" node --test --test-concurrency=2 --test-timeout=120000 "${others[@]}") || rc=1
  pg_up || return 1
  (cd "$dir" && CHATD_TEST_STORE="$pg_url" CHATD_BIN="$1/chatd" \
    node --test --test-concurrency=1 --test-timeout=120000 cluster.test.mjs) || rc=1
  return $rc
}
abuse() { (cd "$root/tests/abuse" && CHATD_BIN="$1/chatd" node --test --test-concurrency=1); }
bench_smoke() { CHATD_BIN="$root/build/chatd" BENCH_BIN="$root/build/chatd-bench" bash "$root/bench/smoke.sh"; }
browser() { (cd "$root/tests/browser" && CHATD_BIN="$root/build/chatd" node --test --test-concurrency=1); }
# The web client on chatd on PostgreSQL (each chatd on a fresh database, as integration-pg):
# the files whose subject is what the store answers (chat, groups, sync, restart, profile)
# and the cluster, which needs PostgreSQL; the UI-only files run once, on SQLite.
browser_pg() {
  pg_up || return 1
  (cd "$root/tests/browser" && CHATD_TEST_STORE="$pg_url" CHATD_BIN="$root/build/chatd" node --test --test-concurrency=1 \
    chat.test.mjs groups.test.mjs seq.test.mjs restart.test.mjs profile.test.mjs cluster.test.mjs)
}
fuzz() {
  build_fuzz || return 1
  local ok=0 target corpus tmp
  for target in "$root"/build-fuzz/fuzz_*; do
    [ -x "$target" ] || continue
    corpus="$root/tests/fuzz/corpus/$(basename "$target" | sed 's/^fuzz_//')"
    tmp=$(mktemp -d)
    [ -d "$corpus" ] && cp -r "$corpus"/. "$tmp"/
    echo "fuzz: $(basename "$target") for ${fuzz_seconds}s"
    # a fixed seed keeps CI runs repeatable; run the targets by hand for longer searches
    if ! "$target" -seed=1 -max_total_time="$fuzz_seconds" -print_final_stats=1 "$tmp" 2>&1 | tail -n 12; then
      ok=1
    fi
    rm -rf "$tmp"
  done
  return $ok
}

stage build build_gcc
stage build-clang build_clang
stage unit unit "$root/build"
stage integration integration "$root/build"
[ -d tests/sdk ] && stage sdk sdk "$root/build"
stage integration-tls integration_tls "$root/build"
stage unit-pg unit_pg "$root/build"
stage integration-pg integration_pg "$root/build"
stage pg-multinode pg_multinode "$root/build"
[ -d tests/cluster ] && stage cluster cluster "$root/build"
[ -d tests/gatewayworker ] && stage gatewayworker gatewayworker "$root/build"
[ -d tests/abuse ] && stage abuse abuse "$root/build"
[ -f bench/smoke.sh ] && stage bench-smoke bench_smoke
[ -d tests/browser ] && stage browser browser
[ -d tests/browser ] && stage browser-pg browser_pg
stage fuzz fuzz
stage asan-build build_asan
stage asan-unit unit "$root/build-asan"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
stage asan-integration integration_epoll "$root/build-asan"
stage asan-integration-pg integration_pg "$root/build-asan"
[ -d tests/cluster ] && stage asan-cluster cluster "$root/build-asan"
[ -d tests/gatewayworker ] && stage asan-gatewayworker gatewayworker "$root/build-asan"
pg_down

echo
[ "$failed" -gt 0 ] && echo "failed stages: ${failed_names[*]}"
echo "suite: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
