#!/usr/bin/env bash
# Workflow engine benchmarks (release build): scheduler dispatch rate without Docker, then
# push → first step running and log line → `cove run logs -f` on the real engine.
# Usage: scripts/bench-runs.sh [dispatch|push|logs|all] [PUSHES]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f /tmp/cove-dockerd/env ] && [ -z "${DOCKER_HOST:-}" ]; then
  # shellcheck disable=SC1091
  source /tmp/cove-dockerd/env
  export DOCKER_HOST
fi
PROFILE="${PROFILE:-release}"  # PROFILE=debug: debug binaries (scripts/bench.sh passes it on)
FLAGS=(); [ "$PROFILE" = release ] && FLAGS=(--release)
cargo build "${FLAGS[@]}" -q -p cove --bin cove
cargo build "${FLAGS[@]}" -q -p cove-server --example bench_runs
COVE_BIN="$PWD/target/$PROFILE/cove" exec "target/$PROFILE/examples/bench_runs" "${1:-all}" "${2:-10}"
