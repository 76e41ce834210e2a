#!/usr/bin/env bash
# Issue 19's table in one command: builds the release binaries once (nice -n 19), runs every
# benchmark script with its baseline in the same run (SAMPLES rounds each, default 10) in
# machine-readable mode (BENCH_ROWS), and prints ONE table: row, p50, p95, baseline p50/p95,
# ratio, target, met?. A row whose mechanism is not built yet says "not built"; a stage that
# failed says "failed" (its output is kept in the printed log path).
#
#   bash scripts/bench.sh [SAMPLES]         (needs DOCKER_HOST; see scripts/test-env.sh)
#   PROFILE=debug bash scripts/bench.sh     (debug binaries: not the targets' numbers)
#
# Adding a row is one line in ROWS (and a script stage that writes its key, below).
set -euo pipefail
SAMPLES="${1:-10}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[ -n "${DOCKER_HOST:-}" ] || { source "${COVE_DOCKERD_DIR:-/tmp/cove-dockerd}/env"; export DOCKER_HOST; }

# key | row | target | met when (Python expression over p50, p95, ratio = p50 / baseline p50)
ROWS='create-prebuilt|`cove env create` from a prebuilt commit, warm pool -> shell runs a command (ms)|p50 <= 300 ms|p50 <= 300
create-prebuilt-raw|the same, beside the raw docker script (ms)|p50 <= 300 ms|p50 <= 300
create-cold|cold create, no prebuild (ms)|p50 <= 0.8x raw|ratio <= 0.8
stop|`cove env stop` (ms)|p50 <= 1000 ms|p50 <= 1000
restart|`cove env restart`, one env var changed (ms)|p50 <= 500 ms|p50 <= 500
push|git push -> first step running (ms)|p50 <= 250, p95 <= 500|p50 <= 250 and p95 <= 500
logs-cli|log line -> `cove run logs -f` (ms)|p95 <= 50 ms|p95 <= 50
logs-sse|log line -> browser, SSE (ms)|p95 <= 50 ms|p95 <= 50
dispatch-sqlite|dispatch, 10,000 one-action runs, 50 agents, SQLite, lease + finish (jobs/s)|>= 1000 jobs/s|p50 >= 1000
dispatch-postgresql|dispatch, the same on PostgreSQL (jobs/s)|>= 1000 jobs/s|p50 >= 1000
rss-server|idle RSS, cove-server with embedded agent (MiB)|<= 30 MB|p50 <= 30
rss-agent|idle RSS, cove-agent (MiB)|<= 15 MB|p50 <= 15'

# the stages: the keys each writes to $BENCH_ROWS | its command
STAGES=(
  "create-cold|bash scripts/bench-env.sh $SAMPLES"
  "stop,restart|bash scripts/bench-stop-restart.sh $SAMPLES"
  "dispatch-sqlite,dispatch-postgresql,push,logs-cli,logs-sse|env DISPATCH_MODE=batched bash scripts/bench-runs.sh all $SAMPLES"
  "rss-server,rss-agent|bash scripts/bench-rss.sh $SAMPLES"
)

# PostgreSQL for the dispatch row on PostgreSQL: the local cluster of scripts/setup-postgres.sh
if [ -z "${COVE_TEST_POSTGRES_URL:-}" ]; then
  eval "$(bash scripts/setup-postgres.sh 2>/dev/null)" || echo "PostgreSQL could not be set up: its dispatch row is not run" >&2
  export COVE_TEST_POSTGRES_URL
fi

WORK="$(mktemp -d /tmp/cove-bench.XXXXXX)"
export BENCH_ROWS="$WORK/rows.tsv"
: >"$BENCH_ROWS"
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
STARTED="$(date -u '+%Y-%m-%d %H:%M UTC')"
export PROFILE="${PROFILE:-release}"
FLAGS=(); [ "$PROFILE" = release ] && FLAGS=(--release)
echo "building $PROFILE binaries (nice -n 19)..." >&2
nice -n 19 cargo build -q "${FLAGS[@]}" -p cove --bin cove -p cove-server --bin cove-server \
  --example bench_runs -p cove-agent --bin cove-agent
FAILED=()
for i in "${!STAGES[@]}"; do
  keys="${STAGES[$i]%%|*}"; stage="${STAGES[$i]#*|}"
  echo "running: $stage (output: $WORK/stage-$i.log)" >&2
  if ! $stage >"$WORK/stage-$i.log" 2>&1; then
    FAILED+=("$stage (see $WORK/stage-$i.log)")
    for k in ${keys//,/ }; do
      grep -q "^$k	" "$BENCH_ROWS" || printf '%s\tfailed\t-\t-\t-\t-\t-\n' "$k" >>"$BENCH_ROWS"
    done
  fi
done

echo "# $STARTED, $(uname -m), $(nproc) cores, $PROFILE build, $SAMPLES samples per row; load average before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg)"
for f in "${FAILED[@]}"; do echo "# stage failed: $f"; done
echo
ROWS="$ROWS" python3 - "$BENCH_ROWS" <<'PY'
import os, sys
measured = {}
for line in open(sys.argv[1]):
    f = line.rstrip("\n").split("\t")
    if len(f) >= 7:
        measured[f[0]] = f
def num(x):
    try:
        return float(x)
    except ValueError:
        return None
print("| row | p50 | p95 | samples | baseline | baseline p50 | baseline p95 | ratio p50 | target | met? |")
print("|---|---:|---:|---:|---|---:|---:|---:|---|---|")
for spec in os.environ["ROWS"].strip().splitlines():
    key, label, target, rule = spec.split("|")
    m = measured.get(key)
    if m is None:
        print(f"| {label} | not built | | | | | | | {target} | |")
        continue
    _, p50, p95, n, base, b50, b95 = m[:7]
    if p50 == "failed":
        print(f"| {label} | failed | | | | | | | {target} | |")
        continue
    ratio = None
    if num(p50) is not None and num(b50):
        ratio = num(p50) / num(b50)
    env = {"p50": num(p50), "p95": num(p95), "ratio": ratio}
    try:
        met = "yes" if eval(rule, {"__builtins__": {}}, env) else "no"
    except TypeError:
        met = "?"
    r = f"{ratio:.2f}" if ratio is not None else "-"
    print(f"| {label} | {p50} | {p95} | {n} | {base} | {b50} | {b95} | {r} | {target} | {met} |")
PY
