#!/usr/bin/env bash
# Set up and run Cove on this machine (Debian 12, as root), one command:
#   bash scripts/run.sh [DATA_DIR]          (default ./.cove-data)
# 1. installs what is missing (Docker engine, debootstrap) and starts dockerd if
#    no engine answers, builds the images offline (scripts/test-env.sh);
# 2. builds the web UI (npm ci && npm run build in web/), the `cove` CLI and `cove-server`;
# 3. starts cove-server with SQLite in DATA_DIR and its embedded agent on the
#    local Docker engine, printing the URL and, on first start, the admin token.
# Listen address: COVE_LISTEN (default 127.0.0.1:8080).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/test-env.sh
# shellcheck disable=SC1091
source "${COVE_DOCKERD_DIR:-/tmp/cove-dockerd}/env"
export DOCKER_HOST

# The web UI's assets (served by cove-server at /; release builds embed them). node and npm
# come from scripts/test-env.sh above.
(cd web && npm ci --no-audit --no-fund --loglevel=error && npm run build)

bash scripts/ui-assets-stamp.sh
cargo build -q -p cove -p cove-server
echo
echo "CLI: $ROOT/target/debug/cove   (e.g. export PATH=\"$ROOT/target/debug:\$PATH\")"
echo "then: cove login http://${COVE_LISTEN:-127.0.0.1:8080} --token <admin token below>"
echo "      cove repo create myapp && git push … && cove env create myapp"
echo "web UI: http://${COVE_LISTEN:-127.0.0.1:8080}/  (log in as a user with a password: echo PASSWORD | cove user create NAME --admin)"
echo
exec bash scripts/run-server.sh "$@"
