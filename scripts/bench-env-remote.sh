#!/usr/bin/env bash
# Benchmark (issue 20): environment create → running on a standalone agent over its link
# (`cove-agent`, labels pool=remote, its own process, same Docker engine) beside the same
# create on the server's embedded agent (in process). Same devfile
# (devfiles/examples/app-with-dynamodb.yaml: two containers, postStart runs the boto3 test),
# same engine, rounds alternate which goes first, so load falls on both alike. The difference
# is the agent protocol: commands, reports and the clone over the link instead of in process.
# Target: the remote create's overhead <= 10 % (p50).
#
#   bash scripts/bench-env-remote.sh [RUNS]      (needs DOCKER_HOST; see scripts/test-env.sh)
#   PROFILE=debug bash scripts/bench-env-remote.sh 3
set -euo pipefail
RUNS="${1:-10}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[ -n "${DOCKER_HOST:-}" ] || { source "${COVE_DOCKERD_DIR:-/tmp/cove-dockerd}/env"; export DOCKER_HOST; }
PROFILE="${PROFILE:-release}"
FLAGS=(); [ "$PROFILE" = release ] && FLAGS=(--release)
cargo build -q "${FLAGS[@]}" -p cove -p cove-server -p cove-agent
BIN="$ROOT/target/$PROFILE"

WORK="$(mktemp -d)"
PIDS=()
CLI=(env XDG_CONFIG_HOME="$WORK/config" "$BIN/cove")
cleanup() {
  for e in $("${CLI[@]}" env list --output json 2>/dev/null | python3 -c 'import json,sys; [print(e["id"]) for e in json.load(sys.stdin)]' 2>/dev/null); do
    "${CLI[@]}" env delete "$e" --yes >/dev/null 2>&1 || true
  done
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
TOKEN="cove_bench_admin_token_0123456789abcdef0123456789"
now() { date +%s%3N; }
pct() { sort -n | awk -v q="$1" '{a[NR]=$1} END {i=int(q*NR+0.999999); if (i<1) i=1; if (i>NR) i=NR; print a[i]}'; }

mkdir -p "$WORK/repo"
cp devfiles/examples/app-with-dynamodb.yaml "$WORK/repo/devfile.yaml"
cat > "$WORK/repo/test_app.py" <<'PY'
import boto3
def test_put_get():
    db = boto3.client("dynamodb", endpoint_url="http://localhost:8000", region_name="us-east-1",
                      aws_access_key_id="x", aws_secret_access_key="x")
    db.list_tables()
PY
git -C "$WORK/repo" init -q -b main
git -C "$WORK/repo" add .
git -C "$WORK/repo" -c user.name=b -c user.email=b@example.com commit -q -m bench

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL="http://127.0.0.1:$port"
COVE_ADMIN_TOKEN="$TOKEN" RUST_LOG=warn "$BIN/cove-server" --data-dir "$WORK/data" \
  --listen "127.0.0.1:$port" >"$WORK/server.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -fs -H "Authorization: Bearer $TOKEN" "$URL/api/v1/user" >/dev/null && break; sleep 0.1; done
"${CLI[@]}" login "$URL" --token "$TOKEN" >/dev/null
"${CLI[@]}" repo create bench >/dev/null
git -C "$WORK/repo" push -q "http://admin:$TOKEN@127.0.0.1:$port/git/admin/bench.git" main

# the standalone agent: registered once, then it dials out to the server
"${CLI[@]}" agent registration-token >"$WORK/reg" 2>/dev/null
RUST_LOG=warn "$BIN/cove-agent" --server "$URL" --state-dir "$WORK/agent" --name remote-1 \
  --slots 1 --label pool=remote --registration-token-file "$WORK/reg" >"$WORK/agent.log" 2>&1 &
PIDS+=($!)
linked=0
for _ in $(seq 300); do
  if "${CLI[@]}" env create admin/bench --pool remote --name warm --no-wait >/dev/null 2>&1; then linked=1; break; fi
  sleep 0.2
done
[ "$linked" = 1 ] || { echo "the agent never linked" >&2; cat "$WORK/agent.log" >&2; exit 1; }
# one warm-up of each (first container starts, image layers in the page cache)
"${CLI[@]}" env create admin/bench --name warm-e >/dev/null 2>&1
for _ in $(seq 600); do
  st=$("${CLI[@]}" env show warm --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
  [ "$st" = running ] && break; [ "$st" = failed ] && { "${CLI[@]}" env show warm; exit 1; }; sleep 0.2
done
"${CLI[@]}" env delete warm --yes >/dev/null
"${CLI[@]}" env delete warm-e --yes >/dev/null

one() { # $1 = embedded|remote, $2 = round
  local t0 t1 args=()
  [ "$1" = remote ] && args=(--pool remote)
  t0=$(now)
  "${CLI[@]}" env create admin/bench --name "${1:0:1}$2" "${args[@]}" >/dev/null 2>"$WORK/create.log" \
    || { cat "$WORK/create.log"; exit 1; }
  t1=$(now)
  echo $((t1 - t0)) >>"$WORK/$1"
  "${CLI[@]}" env show "${1:0:1}$2" | grep -q "agent: *$([ "$1" = remote ] && echo remote-1 || echo embedded)" \
    || { echo "${1:0:1}$2 is not on the $1 agent" >&2; "${CLI[@]}" env show "${1:0:1}$2" >&2; exit 1; }
  "${CLI[@]}" env delete "${1:0:1}$2" --yes >/dev/null 2>&1
}
for i in $(seq "$RUNS"); do
  if [ $((i % 2)) = 1 ]; then one embedded "$i"; one remote "$i"; else one remote "$i"; one embedded "$i"; fi
done

e50=$(pct 0.5 <"$WORK/embedded"); e95=$(pct 0.95 <"$WORK/embedded")
r50=$(pct 0.5 <"$WORK/remote"); r95=$(pct 0.95 <"$WORK/remote")
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), profile $PROFILE, $RUNS rounds (order alternating)"
echo
echo "| create → running (postStart done), app-with-dynamodb | p50 ms | p95 ms | min ms | max ms |"
echo "|---|---:|---:|---:|---:|"
echo "| embedded agent (in process) — the baseline | $e50 | $e95 | $(sort -n "$WORK/embedded" | head -1) | $(sort -n "$WORK/embedded" | tail -1) |"
echo "| standalone agent over its link | $r50 | $r95 | $(sort -n "$WORK/remote" | head -1) | $(sort -n "$WORK/remote" | tail -1) |"
echo
awk -v r="$r50" -v e="$e50" 'BEGIN { printf "protocol overhead at p50: %+.1f %% (target <= 10 %%)\n", (r / e - 1) * 100 }'
