#!/usr/bin/env bash
# Benchmark (not a test) of placement (issue 20): 1,000 jobs, then 1,000 environments, over 50 simulated agents
# (10 in five agent pools, 40 unpooled with region labels), in process, on SQLite. Prints the
# pure placement decisions over one snapshot and the store-level placement in rounds (all 50
# agents poll; one active-set read, one decision pass, one lease transaction per round).
# Target: <= 1 s for the 1,000.
# Details: server/tests/bench_placement.rs, docs/benchmarks.md "Placement".
#
#   scripts/bench-placement.sh                 # debug build (default on the shared machine)
#   PROFILE=release scripts/bench-placement.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE="${PROFILE:-debug}"
FLAGS=()
[ "$PROFILE" = release ] && FLAGS=(--release)
echo "# $(date -u +%FT%TZ) $(uname -m), $(nproc) cores, profile $PROFILE, SQLite, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
nice -n 19 cargo test -q "${FLAGS[@]}" -p cove-server --test bench_placement -- --ignored --nocapture --test-threads=1 2>&1 \
  | grep -E '^(placement|  )'
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
