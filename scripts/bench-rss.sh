#!/usr/bin/env bash
# Benchmark (issue 19): idle resident memory of the release cove-server (with its embedded
# agent, default settings, SQLite) and of a registered release cove-agent (one slot, no job),
# each sampled SAMPLES times, 0.5 s apart, after a few seconds of idling. Prints MiB
# (VmRSS, and its heap/stack and file-mapped parts).
#
#   bash scripts/bench-rss.sh [SAMPLES]     (needs DOCKER_HOST for the agent's Docker client)
#   PROFILE=debug bash scripts/bench-rss.sh # debug binaries (not the target's numbers)
#
# With BENCH_ROWS=FILE it also appends the rows `rss-server` and `rss-agent` for
# scripts/bench.sh (key, p50, p95, samples, baseline, baseline p50, baseline p95).
set -euo pipefail
SAMPLES="${1:-10}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[ -n "${DOCKER_HOST:-}" ] || { source "${COVE_DOCKERD_DIR:-/tmp/cove-dockerd}/env"; export DOCKER_HOST; }
PROFILE="${PROFILE:-release}"
FLAGS=(); [ "$PROFILE" = release ] && FLAGS=(--release)
cargo build -q "${FLAGS[@]}" -p cove --bin cove -p cove-server --bin cove-server -p cove-agent --bin cove-agent
BIN="$ROOT/target/$PROFILE"
WORK="$(mktemp -d)"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT
TOKEN="cove_bench_admin_token_0123456789abcdef0123456789"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL="http://127.0.0.1:$port"
COVE_ADMIN_TOKEN="$TOKEN" RUST_LOG=warn "$BIN/cove-server" --data-dir "$WORK/data" \
  --listen "127.0.0.1:$port" >"$WORK/server.log" 2>&1 &
SERVER=$!; PIDS+=($!)
for _ in $(seq 100); do curl -fs -H "Authorization: Bearer $TOKEN" "$URL/api/v1/user" >/dev/null && break; sleep 0.1; done

COVE_URL="$URL" COVE_TOKEN="$TOKEN" HOME="$WORK" "$BIN/cove" agent registration-token --ttl 10m >"$WORK/reg"
printf 'name: bench-rss-%s\nslots: 1\nstate_dir: %s/state\nsandbox:\n  private_network: false\n' "$$" "$WORK" >"$WORK/agent.yaml"
RUST_LOG=warn "$BIN/cove-agent" --config "$WORK/agent.yaml" --server "$URL" \
  --registration-token-file "$WORK/reg" >"$WORK/agent.log" 2>&1 &
AGENT=$!; PIDS+=($!)
for _ in $(seq 100); do [ -s "$WORK/state/agent-token" ] && break; sleep 0.1; done
[ -s "$WORK/state/agent-token" ] || { echo "the agent did not register:" >&2; cat "$WORK/agent.log" >&2; exit 1; }
sleep 3

for _ in $(seq "$SAMPLES"); do
  for who in server agent; do
    pid=$SERVER; [ "$who" = agent ] && pid=$AGENT
    awk '/VmRSS/ {r=$2} /RssAnon/ {a=$2} /RssFile/ {f=$2} END {print r, a, f}' "/proc/$pid/status" >>"$WORK/$who"
  done
  sleep 0.5
done

# p of column 1 (KiB) in MiB, one decimal
q() { awk '{print $1}' "$WORK/$1" | sort -n | awk -v p="$2" '{a[NR]=$1} END {i=int((NR-1)*p+0.5)+1; printf "%.1f", a[i]/1024}'; }
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg), $SAMPLES samples 0.5 s apart, $PROFILE build"
for who in server agent; do
  parts=$(tail -1 "$WORK/$who" | awk '{printf "heap and stacks %.1f MiB, mapped files %.1f MiB", $2/1024, $3/1024}')
  echo "idle RSS of cove-$who: p50 $(q "$who" 0.5) MiB, p95 $(q "$who" 0.95) MiB (last: $parts)"
  if [ -n "${BENCH_ROWS:-}" ]; then
    printf 'rss-%s\t%s\t%s\t%s\t-\t-\t-\n' "$who" "$(q "$who" 0.5)" "$(q "$who" 0.95)" "$SAMPLES" >>"$BENCH_ROWS"
  fi
done
