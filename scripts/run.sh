#!/usr/bin/env bash
# Set up and run Cove on this machine (Debian 12, as root):
#   bash scripts/run.sh
# Installs the Docker engine if missing, starts it, builds the images offline,
# builds the `cove` CLI and plans the example environment. The server and the
# local agent join this script as they are built.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/test-env.sh
# shellcheck disable=SC1091
source "${COVE_DOCKERD_DIR:-/tmp/cove-dockerd}/env"
export DOCKER_HOST

cargo build -q -p cove
example=devfiles/examples/app-with-dynamodb.yaml
./target/debug/cove devfile validate "$example"
echo "==> plan of $example:"
./target/debug/cove devfile plan "$example" --repo example
echo
echo "Cove CLI: $ROOT/target/debug/cove   (DOCKER_HOST=$DOCKER_HOST)"
