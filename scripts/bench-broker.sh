#!/usr/bin/env bash
# Credential broker and endpoint gateway benchmarks (issue 6):
#   broker latency, cache miss (AssumeRole + GetAuthorizationToken + 2x GetRepositoryEndpoint
#   against moto and the CodeArtifact double) vs cache hit;
#   `npm install` of the fixture package through the gateway vs straight at the double.
# Needs the engine and images from scripts/test-env.sh, moto_server on PATH, python3.
#   bash scripts/bench-broker.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck disable=SC1091
source "${COVE_DOCKERD_DIR:-/tmp/cove-dockerd}/env"
export DOCKER_HOST
PROFILE="${PROFILE:-release}"
args=(-p cove-agent)
[ "$PROFILE" = release ] && args+=(--release)
echo "# $(date -u +%FT%TZ) $(uname -m), $(nproc) cores, cargo test profile: $PROFILE"
for t in "broker bench_broker_cache_hit_vs_miss" "gateway bench_npm_install_gateway_vs_direct" "jobs bench_job_sandbox_overhead"; do
  set -- $t
  cargo test "${args[@]}" --test "$1" -- --ignored --exact "$2" --nocapture --test-threads=1 2>&1 \
    | grep -o 'BENCH .*' | sed 's/^BENCH //'
done
