#!/usr/bin/env bash
# Browser tests of the web UI, against a real cove-server on the real Docker engine.
#   bash scripts/test-ui.sh [tests/NAME.test.mjs …]   (default: every web/tests/*.test.mjs)
# 1. builds the web assets (npm ci && npm run build in web/) and cove-server (debug);
# 2. starts cove-server with SQLite in a temp data dir, its embedded agent on the Docker
#    engine of scripts/test-env.sh, on a free 127.0.0.1 port, and creates a user;
# 3. runs web/tests/*.test.mjs with node --test: Debian's chromium, headless, driven by
#    playwright-core; the tests push repositories with the real git client;
# 4. saves screenshots to target/ui-screenshots/ (gitignored), then stops the server and
#    removes the containers and volumes of the environments it created (by label).
# Needs: chromium, nodejs + npm, git, moto_server (scripts/test-env.sh installs them); moto
# is the STS of the deployments test's connections (endpoint profile `moto`).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
log() { printf '[test-ui] %s\n' "$*"; }

if [ -z "${DOCKER_HOST:-}" ] && [ -f "${COVE_DOCKERD_DIR:-/tmp/cove-dockerd}/env" ]; then
  # shellcheck disable=SC1091
  source "${COVE_DOCKERD_DIR:-/tmp/cove-dockerd}/env"
  export DOCKER_HOST
fi
CHROMIUM="${COVE_CHROMIUM:-$(command -v chromium || true)}"
[ -n "$CHROMIUM" ] || { log "chromium is missing: run scripts/test-env.sh"; exit 1; }
command -v npm >/dev/null || { log "npm is missing: run scripts/test-env.sh"; exit 1; }
# playwright-core and `node --test --test-force-exit` need Node.js 20 or newer.
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 20 ] || { log "Node.js $(node --version) is too old: the browser tests need 20+"; exit 1; }

log "web assets: npm ci && npm run build"
(cd web && npm ci --no-audit --no-fund --loglevel=error && npm run build)
bash scripts/ui-assets-stamp.sh
log "cargo build -p cove-server"
cargo build -q -p cove-server

TMP="$(mktemp -d /tmp/cove-ui-test.XXXXXX)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
URL="http://127.0.0.1:$PORT"
ADMIN_TOKEN="cove_$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
USER_NAME="dev"
USER_PASSWORD="ui-test-$(head -c 9 /dev/urandom | od -An -tx1 | tr -d ' \n')"
SHOTS="$ROOT/target/ui-screenshots"
mkdir -p "$SHOTS"
rm -f "$SHOTS"/*.png

SERVER_PID=""
MOTO_PID=""
cleanup() {
  local rc=$?
  # The environments this server created: their ids label every container and volume.
  local ids=""
  if [ -n "$SERVER_PID" ]; then
    ids="$(curl -fsS -H "Authorization: Bearer $ADMIN_TOKEN" "$URL/api/v1/environments" 2>/dev/null \
      | python3 -c 'import json,sys; print(" ".join(e["id"] for e in json.load(sys.stdin)))' 2>/dev/null || true)"
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [ -n "$MOTO_PID" ]; then kill "$MOTO_PID" 2>/dev/null || true; wait "$MOTO_PID" 2>/dev/null || true; fi
  for id in $ids; do
    docker ps -aq --filter "label=cove.env=$id" | xargs -r docker rm -f >/dev/null 2>&1 || true
    docker volume ls -q --filter "label=cove.env=$id" | xargs -r docker volume rm -f >/dev/null 2>&1 || true
  done
  if [ "$rc" -ne 0 ]; then
    log "server log (last 60 lines):"
    tail -n 60 "$TMP/server.log" 2>/dev/null || true
  fi
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT INT TERM

# Deployments (web/tests/deploy.test.mjs): moto as the STS of an endpoint profile `moto`
# that administrators may name in a connection; the embedded agent's base credentials are
# moto's fake ones (no cloud is ever contacted: no instance metadata, no default endpoint).
command -v moto_server >/dev/null || { log "moto_server is missing: run scripts/test-env.sh"; exit 1; }
moto_server -H 127.0.0.1 -p 0 >"$TMP/moto.log" 2>&1 &
MOTO_PID=$!
MOTO_URL=""
for _ in $(seq 1 150); do
  MOTO_URL="$(grep -o 'Running on http://127.0.0.1:[0-9]*' "$TMP/moto.log" 2>/dev/null | head -n1 | sed 's/^Running on //' || true)"
  [ -n "$MOTO_URL" ] && break
  kill -0 "$MOTO_PID" 2>/dev/null || { log "moto_server exited: $(cat "$TMP/moto.log")"; exit 1; }
  sleep 0.2
done
[ -n "$MOTO_URL" ] || { log "moto_server did not report its port"; exit 1; }
# web/tests/story.test.mjs receives its webhooks on 127.0.0.1: loopback admitted for this run.
printf '[packages.endpoints.moto]\nsts = "%s"\n\n[notify]\nallow_private = ["127.0.0.1/32"]\n' "$MOTO_URL" >"$TMP/cove.toml"

log "starting cove-server on $URL (moto STS at $MOTO_URL)"
COVE_ADMIN_TOKEN="$ADMIN_TOKEN" COVE_DATA_DIR="$TMP/data" COVE_LISTEN="127.0.0.1:$PORT" \
  COVE_CONFIG="$TMP/cove.toml" AWS_ACCESS_KEY_ID=AKIACOVEUITESTBASE01 \
  AWS_SECRET_ACCESS_KEY=cove-ui-test-base-secret-not-real AWS_EC2_METADATA_DISABLED=true \
  AWS_CONFIG_FILE=/nonexistent/cove-ui-aws-config AWS_SHARED_CREDENTIALS_FILE=/nonexistent/cove-ui-aws-creds \
  RUST_LOG="${RUST_LOG:-info}" target/debug/cove-server >"$TMP/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null -H "Authorization: Bearer $ADMIN_TOKEN" "$URL/api/v1/user" 2>/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || { log "cove-server exited"; exit 1; }
  sleep 0.2
done
curl -fsS -o /dev/null -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' \
  -d "{\"username\":\"$USER_NAME\",\"password\":\"$USER_PASSWORD\",\"is_admin\":false}" "$URL/api/v1/users"

TESTS=("$@")
[ "${#TESTS[@]}" -gt 0 ] || mapfile -t TESTS < <(cd web && ls tests/*.test.mjs)
log "browser tests (node --test in web/: ${TESTS[*]})"
t0=$SECONDS
(cd web && COVE_URL="$URL" COVE_USER="$USER_NAME" COVE_PASSWORD="$USER_PASSWORD" \
  COVE_ADMIN_TOKEN="$ADMIN_TOKEN" COVE_CHROMIUM="$CHROMIUM" COVE_SCREENSHOTS="$SHOTS" COVE_MOTO_URL="$MOTO_URL" \
  node --test --test-force-exit --test-concurrency=1 --test-reporter=spec "${TESTS[@]}")
log "browser tests passed in $((SECONDS - t0))s; screenshots in $SHOTS"
