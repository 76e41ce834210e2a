#!/usr/bin/env bash
# Notification latency (issue 15): from a run's end to a webhook receiver on 127.0.0.1 holding
# its signed run_succeeded, p50/p95 over RUNS runs (default 12) on the real engine.
# Usage: scripts/bench-notify.sh [RUNS]     (PROFILE=release for an optimized build)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f /tmp/cove-dockerd/env ] && [ -z "${DOCKER_HOST:-}" ]; then
  # shellcheck disable=SC1091
  source /tmp/cove-dockerd/env
  export DOCKER_HOST
fi
PROFILE="${PROFILE:-dev}"
args=(-p cove-server --test notify)
[ "$PROFILE" = release ] && args+=(--release)
echo "# $(date -u +%FT%TZ) $(uname -m), $(nproc) cores, cargo test profile: $PROFILE"
COVE_BENCH_RUNS="${1:-12}" cargo test "${args[@]}" -- --ignored --exact bench_notify_latency \
  --nocapture --test-threads=1 2>&1 | grep -o 'BENCH .*' | sed 's/^BENCH //'
