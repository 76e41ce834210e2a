#!/usr/bin/env bash
# Baseline for the agent-level environment benchmark (agent/examples/bench_env.rs):
# the same docker calls as a plain shell script, without clone and postStart.
# Prints p50/p95 over RUNS runs.
#   bash scripts/bench-env-raw.sh [RUNS]
set -euo pipefail
RUNS="${1:-10}"
. "$(dirname "${BASH_SOURCE[0]}")/raw-env.sh"

create=(); restart=()
for i in $(seq "$RUNS"); do
  e="b$$-$i"
  t0=$(now); raw_up "$e"; t1=$(now)
  raw_down "$e"; raw_up "$e"; t2=$(now)
  create+=($((t1 - t0))); restart+=($((t2 - t1)))
  raw_down "$e"; raw_clean "$e"
done
echo "| operation | runs | p50 ms | p95 ms |"
echo "|---|---|---|---|"
echo "| raw docker create → running | $RUNS | $(printf '%s\n' "${create[@]}" | pct 0.5) | $(printf '%s\n' "${create[@]}" | pct 0.95) |"
echo "| raw docker warm restart | $RUNS | $(printf '%s\n' "${restart[@]}" | pct 0.5) | $(printf '%s\n' "${restart[@]}" | pct 0.95) |"
