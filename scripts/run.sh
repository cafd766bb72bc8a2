#!/usr/bin/env bash
# run.sh: the one command for a new user. Installs what is missing, builds,
# and starts chatd with its defaults (http://127.0.0.1:8080/). Options and
# CHATD_* environment variables are passed through (see build/chatd --help).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/bootstrap.sh"
"$root/scripts/build.sh"
cd "$root"
exec "$root/build/chatd" "$@"
