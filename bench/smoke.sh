#!/usr/bin/env bash
# smoke.sh: a short run of every chatd-bench subcommand against a freshly started chatd (and
# of `echo --raw` against chatd-floor): checks that the tool works, not its numbers. Exits
# non-zero if any subcommand fails; `chat` counts as skipped while chatd lacks the chat
# service (chatd-bench exits 3 then). Takes about 15 seconds.
#
# Usage: bench/smoke.sh   (BUILD=dir to use another build directory)
set -u
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

LOGDIR=$(mktemp -d /tmp/chatd-smoke.XXXXXX)
trap 'stop_all_servers; rm -rf "$LOGDIR"' EXIT

for bin in chatd chatd-bench chatd-floor; do
    if [ ! -x "$BUILD/$bin" ]; then
        echo "smoke: $BUILD/$bin is missing; build first (cmake --build build)" >&2
        exit 1
    fi
done

start_server chatd || { echo "smoke: chatd did not start" >&2; exit 1; }
CHATD_PID=$SERVER_PID
URL="ws://127.0.0.1:$SERVER_PORT"
start_server floor || { echo "smoke: chatd-floor did not start" >&2; exit 1; }
FLOOR="tcp://127.0.0.1:$SERVER_PORT"

passed=0 failed=0 skipped=0
check() {
    local name=$1
    shift
    local out="$LOGDIR/out" err="$LOGDIR/err" rc
    timeout 30 "$BUILD/chatd-bench" "$@" --json --timeout 10 >"$out" 2>"$err"
    rc=$?
    if [ "$rc" = 3 ]; then
        echo "SKIP $name: $(tail -1 "$err")"
        skipped=$((skipped + 1))
    elif [ "$rc" = 0 ] && grep -q '^{"scenario":' "$out"; then
        echo "ok   $name: $(grep -o '"rate":[0-9.e+]*' "$out" | head -1)"
        passed=$((passed + 1))
    else
        echo "FAIL $name (exit $rc)"
        sed 's/^/     /' "$err" "$out" | tail -20
        failed=$((failed + 1))
    fi
}

check conns conns --url "$URL/ws" -n 50 --hold 0.2 --server-pid "$CHATD_PID"
check echo echo --url "$URL/echo" --conns 4 --size 32 --window 2 --duration 0.5
check echo-binary echo --url "$URL/echo" --conns 2 --size 1024 --binary --duration 0.3
check echo-raw echo --raw --url "$FLOOR" --conns 4 --size 32 --duration 0.5
check route route --url "$URL/ws" --api-secret "$SECRET" --pairs 4 --size 32 --window 2 \
    --duration 0.5
check route-rate route --url "$URL/ws" --api-secret "$SECRET" --pairs 4 --size 64 \
    --rate 2000 --duration 0.5
check fanout fanout --url "$URL/ws" --api-secret "$SECRET" --members 20 --size 32 \
    --duration 0.5
# --url2 and --watch-pid (run.sh cluster), with the one chatd as both "nodes"
check route-url2 route --url "$URL/ws" --url2 "$URL/ws" --api-secret "$SECRET" --pairs 4 \
    --size 32 --duration 0.5 --server-pid "$CHATD_PID" --watch-pid "self=$$"
check fanout-url2 fanout --url "$URL/ws" --url2 "$URL/ws" --api-secret "$SECRET" --members 20 \
    --size 32 --duration 0.5
# noisy seconds (issue 14): with --quiet-cores the result accounts for every second
check echo-quiet echo --url "$URL/echo" --conns 4 --size 32 --duration 1.5 --quiet-cores 8 \
    --server-pid "$CHATD_PID"
if grep -q '"spans":2,' "$LOGDIR/out" && grep -q '"msgs_per_server_cpu_s":' "$LOGDIR/out"; then
    echo "ok   echo-quiet spans: $(grep -o '"secs_kept":[0-9.e+-]*' "$LOGDIR/out")"
    passed=$((passed + 1))
else
    echo "FAIL echo-quiet: no per-second accounting (spans, msgs_per_server_cpu_s) in the result"
    failed=$((failed + 1))
fi
# uWebSockets' load_test as the generator (run.sh's second generator), when UWS_DIR has it
# built; a chatd with its echo on /, the path load_test asks for
if [ -n "${UWS_DIR:-}" ] && [ -x "$UWS_DIR/benchmarks/load_test" ] && command -v stdbuf >/dev/null &&
    BENCH_ECHO_PATH=/ start_server chatd; then
    check loadtest loadtest --load-test "$UWS_DIR/benchmarks/load_test" \
        --url "ws://127.0.0.1:$SERVER_PORT/" --conns 20 --size 32 --duration 1 \
        --server-pid "$SERVER_PID"
    stop_server "$SERVER_PID"
else
    echo "SKIP loadtest: UWS_DIR has no built benchmarks/load_test (see bench/README.md)"
    skipped=$((skipped + 1))
fi
check storm storm --url "$URL/ws" --api-secret "$SECRET" -n 100 --concurrency 16
check chat chat --url "$URL/ws" --users 4 --window 2 --duration 0.5
# groups (issue 11): 4 users, one group of 3, a 1:1 point and a group point (skipped, exit 3,
# while chatd has no groups)
check groups groups --url "$URL/ws" --users 4 --group-sizes 3 --window 2 --duration 0.3
check gwpush-http gwpush --url "$URL/ws" --api-secret "$SECRET" -n 20 --gw-mode http \
    --duration 0.5 --server-pid "$CHATD_PID"

# gwpush through the GatewayWorker inner port (issue 10): a second chatd with --gw-inner and
# a secret (so the 202 auth frame is exercised), when this chatd has the option.
if chatd_has_opt gw-inner; then
    GW_WS=$(free_port) GW_INNER=$(free_port)
    mkdir -p "$LOGDIR/data-gw"
    (ulimit -n "$(ulimit -Hn)"; exec "$BUILD/chatd" --listen "127.0.0.1:$GW_WS" \
        --gw-inner "127.0.0.1:$GW_INNER" --gw-secret smoke-gw --api-secret "$SECRET" \
        --event-rate 0 --log-level warn --data-dir "$LOGDIR/data-gw" \
        --web-root "$ROOT/web") >"$LOGDIR/chatd-gw.log" 2>&1 &
    GW_PID=$!
    STARTED_PIDS+=("$GW_PID")
    if wait_listening "$GW_WS" "$GW_PID" && wait_listening "$GW_INNER" "$GW_PID"; then
        for mode in per-call persistent http; do
            check "gwpush-$mode" gwpush --url "ws://127.0.0.1:$GW_WS/ws" --api-secret "$SECRET" \
                -n 20 --gw-mode "$mode" --gw-addr "127.0.0.1:$GW_INNER" --gw-secret smoke-gw \
                --duration 0.5 --server-pid "$GW_PID"
        done
    else
        echo "FAIL chatd --gw-inner did not start"
        tail -5 "$LOGDIR/chatd-gw.log" | sed 's/^/     /'
        failed=$((failed + 1))
    fi
else
    echo "SKIP gwpush-per-call, gwpush-persistent: chatd has no --gw-inner"
    skipped=$((skipped + 2))
fi

# wss://, https:// and permessage-deflate (issue 12): a chatd with --tls-cert/--tls-key (a
# throw-away certificate) and --ws-deflate, when this chatd has the options.
if chatd_has_opt tls-cert && chatd_has_opt ws-deflate && command -v openssl >/dev/null &&
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
        -subj /CN=127.0.0.1 -keyout "$LOGDIR/key.pem" -out "$LOGDIR/cert.pem" >/dev/null 2>&1; then
    if BENCH_TLS_CERT=$LOGDIR/cert.pem BENCH_TLS_KEY=$LOGDIR/key.pem BENCH_WS_DEFLATE=1 \
        start_server chatd; then
        TLS_PID=$SERVER_PID
        WSS="wss://127.0.0.1:$SERVER_PORT"
        check echo-wss echo --url "$WSS/echo" --conns 4 --size 1024 --window 2 --duration 0.5 \
            --tls-ca "$LOGDIR/cert.pem"
        check route-wss route --url "$WSS/ws" --api-secret "$SECRET" --pairs 4 --size 32 \
            --duration 0.5
        check conns-wss conns --url "$WSS/ws" -n 20 --hold 0.2 --server-pid "$TLS_PID"
        check fanout-deflate fanout --url "$URL/ws" --api-secret "$SECRET" --members 20 --size 512 \
            --duration 0.5 --ws-deflate
        check fanout-wss-deflate fanout --url "$WSS/ws" --api-secret "$SECRET" --members 20 \
            --size 512 --duration 0.5 --ws-deflate --inflate-all --server-pid "$TLS_PID"
        # the members must have agreed to permessage-deflate and got compressed messages
        if grep -q '"deflate_conns":20,' "$LOGDIR/out" && ! grep -q '"compressed_msgs":0,' "$LOGDIR/out"; then
            echo "ok   fanout-wss-deflate negotiated: $(grep -o '"deflate_ratio":[0-9.e+-]*' "$LOGDIR/out")"
            passed=$((passed + 1))
        else
            echo "FAIL fanout-wss-deflate: permessage-deflate not negotiated or nothing compressed"
            failed=$((failed + 1))
        fi
        stop_server "$TLS_PID"
    else
        echo "FAIL chatd --tls-cert --ws-deflate did not start"
        failed=$((failed + 1))
    fi
else
    echo "SKIP echo-wss, route-wss, conns-wss, fanout-deflate: no --tls-cert/--ws-deflate or openssl"
    skipped=$((skipped + 4))
fi

if ! kill -0 "$CHATD_PID" 2>/dev/null; then
    echo "FAIL chatd died during the smoke run"
    failed=$((failed + 1))
else
    stop_server "$CHATD_PID" 2>/dev/null
    case $STOPPED_RC in
    0 | 143) ;;
    *) echo "note: chatd exited with status $STOPPED_RC on SIGTERM (not a bench failure)" ;;
    esac
fi
echo "smoke: $passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
