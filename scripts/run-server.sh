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
# SSH into environments (docs/ssh.md) on COVE_SSH_LISTEN (default 127.0.0.1:2222), through a
# config file written into the data directory, unless COVE_CONFIG names the caller's own.
CONFIG_FLAG=()
if [ -z "${COVE_CONFIG:-}" ]; then
  SSH_LISTEN="${COVE_SSH_LISTEN:-127.0.0.1:2222}"
  # and one warm pod shell per recent devfile shape, so that a cold create only starts the
  # components (docs/prebuilds.md "Warm pod shells")
  printf '# written by scripts/run-server.sh\n[ssh]\nlisten = "%s"\n\n[environments]\nwarm_shells = 1\n' \
    "$SSH_LISTEN" >"$DATA_DIR/run.toml"
  CONFIG_FLAG=(--config "$DATA_DIR/run.toml")
  echo "ssh:          $SSH_LISTEN  (cove ssh-key add ~/.ssh/id_ed25519.pub && cove config-ssh && ssh cove.<env>)"
fi
# The admin token is printed by the server itself, once, on first start.
exec "$BIN" --data-dir "$DATA_DIR" --listen "$LISTEN" --public-url "$URL" "${CONFIG_FLAG[@]}"
