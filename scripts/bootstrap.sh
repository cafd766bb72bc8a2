#!/usr/bin/env bash
# bootstrap.sh: install what chatd needs on Debian 12, and nothing that is
# already there. Idempotent: run it as often as you like.
#
#   scripts/bootstrap.sh          build and run dependencies
#   scripts/bootstrap.sh --test   plus what the test suite needs
set -euo pipefail

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

build_pkgs=(build-essential cmake pkg-config libuv1-dev libhttp-parser-dev libjansson-dev
            libssl-dev libsqlite3-dev libsodium-dev uthash-dev libicu-dev libpq-dev libhiredis-dev
            zlib1g-dev libcurl4-openssl-dev liburing-dev)
# postgresql-15: the server the PostgreSQL tests start (scripts/postgres.sh);
# redis-server and haproxy: the cluster tests (scripts/redis.sh, scripts/cluster.sh)
# openssl: the TLS tests make a throw-away CA with the CLI
# fonts-wqy-microhei: Chinese glyphs for the browser tests' screenshots of the Chinese UI
test_pkgs=(libcmocka-dev clang libclang-rt-14-dev chromium curl postgresql-15 redis-server haproxy php8.2-cli
           openssl fonts-wqy-microhei)

missing=()
is_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for p in "${build_pkgs[@]}"; do is_installed "$p" || missing+=("$p"); done
if [ "$want_test" = 1 ]; then
  for p in "${test_pkgs[@]}"; do is_installed "$p" || missing+=("$p"); done
  command -v node >/dev/null || missing+=(nodejs)
  command -v npm >/dev/null || missing+=(npm)
fi

if [ "${#missing[@]}" -gt 0 ]; then
  echo "bootstrap: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "$want_test" = 1 ]; then
  root=$(cd "$(dirname "$0")/.." && pwd)
  # npm packages for the test clients, from each package-lock.json
  for dir in tests/integration tests/sdk tests/browser bench/peer; do
    if [ -f "$root/$dir/package-lock.json" ] && [ ! -d "$root/$dir/node_modules" ]; then
      echo "bootstrap: npm ci in $dir"
      (cd "$root/$dir" && npm ci --no-audit --no-fund --loglevel=error)
    fi
  done
fi
