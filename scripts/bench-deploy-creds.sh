#!/usr/bin/env bash
# Deploy credentials (issue 21): the job's credentials endpoint on a cache hit, the first
# AssumeRole of a job (broker with session tags) against moto, beside a raw AssumeRole with the
# SDK against the same moto (the baseline). Needs moto_server on PATH.
#   bash scripts/bench-deploy-creds.sh        (PROFILE=release for a release build)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PROFILE="${PROFILE:-debug}"
args=(-p cove-agent)
[ "$PROFILE" = release ] && args+=(--release)
echo "# $(date -u +%FT%TZ) $(uname -m), $(nproc) cores, cargo test profile: $PROFILE"
cargo test "${args[@]}" --test deploy_creds -- --ignored --exact bench_deploy_creds --nocapture \
  --test-threads=1 2>&1 | grep -o 'BENCH .*' | sed 's/^BENCH //'
