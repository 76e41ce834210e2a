#!/usr/bin/env bash
# Builds cove-server and starts it with SQLite in a data directory, printing the URL and,
# on first start, the one-time admin token.
#
#   scripts/run-server.sh [DATA_DIR]        (default ./.cove-data)
#   COVE_LISTEN=127.0.0.1:9000 scripts/run-server.sh
#
# Every cove-server flag can also be given through COVE_* variables (see cove-server --help).
set -euo pipefail
cd "$(dirname "$0")/.."

DATA_DIR="${1:-${COVE_DATA_DIR:-./.cove-data}}"
LISTEN="${COVE_LISTEN:-127.0.0.1:8080}"
PROFILE_FLAG=()
BIN=target/debug/cove-server
if [ "${COVE_RELEASE:-0}" = 1 ]; then PROFILE_FLAG=(--release); BIN=target/release/cove-server; fi

cargo build -q -p cove-server "${PROFILE_FLAG[@]}"
mkdir -p "$DATA_DIR"
URL="${COVE_PUBLIC_URL:-http://$LISTEN}"
echo "cove-server: $URL (data in $DATA_DIR)"
echo "log in with:  cove login $URL --token <admin token>"
# The admin token is printed by the server itself, once, on first start.
exec "$BIN" --data-dir "$DATA_DIR" --listen "$LISTEN" --public-url "$URL"
