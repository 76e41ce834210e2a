#!/usr/bin/env bash
# Workflow engine benchmarks (release build, nice -n 19): scheduler dispatch rate without
# Docker (10,000 one-action runs over 50 in-process agents, batched beside one-at-a-time, on
# SQLite and — when COVE_TEST_POSTGRES_URL is set, e.g. `eval "$(bash scripts/setup-postgres.sh)"`
# — PostgreSQL), then push → first step running and log line → `cove run logs -f` on the real
# engine.
# Usage: scripts/bench-runs.sh [dispatch|push|logs|all] [PUSHES]
#   DISPATCH_RUNS (10000), DISPATCH_AGENTS (50), DISPATCH_MODE (both|batched|serial)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f /tmp/cove-dockerd/env ] && [ -z "${DOCKER_HOST:-}" ]; then
  # shellcheck disable=SC1091
  source /tmp/cove-dockerd/env
  export DOCKER_HOST
fi
PROFILE="${PROFILE:-release}"  # PROFILE=debug: debug binaries (scripts/bench.sh passes it on)
FLAGS=(); [ "$PROFILE" = release ] && FLAGS=(--release)
WHAT="${1:-all}"
if [ "$WHAT" != dispatch ]; then
  nice -n 19 cargo build "${FLAGS[@]}" -q -p cove --bin cove
fi
nice -n 19 cargo build "${FLAGS[@]}" -q -p cove-server --example bench_runs
echo "# $(date -u +%FT%TZ) $(nproc) cores, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
COVE_BIN="$PWD/target/$PROFILE/cove" nice -n 19 "target/$PROFILE/examples/bench_runs" "$WHAT" "${2:-10}"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
