#!/usr/bin/env bash
# Deploy credentials (issue 21): the job's credentials endpoint on a cache hit — from the host
# and from inside a job container (python3's http.client in cove/universal on a deploy job's
# network, through the 169.254.170.2 redirect to the job's gateway) —, the first AssumeRole of
# a job (broker with session tags) against moto, beside a raw AssumeRole with the SDK against
# the same moto (the baseline). Needs moto_server on PATH and the Docker engine (DOCKER_HOST)
# with cove/universal; run as root (the job network's iptables rules).
#   bash scripts/bench-deploy-creds.sh        (PROFILE=release for a release build)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PROFILE="${PROFILE:-debug}"
args=(-p cove-agent)
[ "$PROFILE" = release ] && args+=(--release)
echo "# $(date -u +%FT%TZ) $(uname -m), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), cargo test profile: $PROFILE"
cargo test "${args[@]}" --test deploy_creds -- --ignored --exact bench_deploy_creds --nocapture \
  --test-threads=1 2>&1 | grep -o 'BENCH .*' | sed 's/^BENCH //'
