#!/usr/bin/env bash
# Benchmark: environment create → running (postStart done) and warm restart of
# devfiles/examples/app-with-dynamodb.yaml through Cove (release cove-server with
# its embedded agent, driven by the `cove` CLI), side by side with a shell
# script that makes the same raw docker calls (volumes, infra container, two
# containers in its namespace, sources copied in, the postStart test run).
# Also prints the idle RSS of cove-server (which embeds the agent).
#   bash scripts/bench-env.sh [RUNS]        (needs DOCKER_HOST; see scripts/test-env.sh)
set -euo pipefail
RUNS="${1:-10}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[ -n "${DOCKER_HOST:-}" ] || { source "${COVE_DOCKERD_DIR:-/tmp/cove-dockerd}/env"; export DOCKER_HOST; }
cargo build -q --release -p cove -p cove-server
COVE="$ROOT/target/release/cove"

WORK="$(mktemp -d)"
trap 'kill "$SERVER_PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
TOKEN="cove_bench_admin_token_0123456789abcdef0123456789"
COVE_ADMIN_TOKEN="$TOKEN" RUST_LOG=warn "$ROOT/target/release/cove-server" --data-dir "$WORK/data" --listen "127.0.0.1:$PORT" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
URL="http://127.0.0.1:$PORT"
for _ in $(seq 100); do curl -fs -H "Authorization: Bearer $TOKEN" "$URL/api/v1/user" >/dev/null && break; sleep 0.1; done
export XDG_CONFIG_HOME="$WORK/config"
"$COVE" login "$URL" --token "$TOKEN" >/dev/null
"$COVE" repo create bench >/dev/null

# the repository: the example devfile plus a test that uses the sidecar
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
git -C "$WORK/repo" push -q "http://admin:$TOKEN@127.0.0.1:$PORT/git/admin/bench.git" main

. scripts/raw-env.sh

create=(); restart=()
for i in $(seq "$RUNS"); do
  t0=$(now)
  "$COVE" env create admin/bench --name "b$i" >/dev/null 2>"$WORK/create.log" || { cat "$WORK/create.log"; exit 1; }
  t1=$(now)
  "$COVE" env restart "b$i" >/dev/null 2>&1
  t2=$(now)
  create+=($((t1 - t0))); restart+=($((t2 - t1)))
  "$COVE" env delete "b$i" --yes >/dev/null 2>&1
done
RSS_KB=$(awk '/VmRSS/ {print $2}' "/proc/$SERVER_PID/status")

# the same docker calls by hand (scripts/raw-env.sh)
raw_create=(); raw_restart=()
for i in $(seq "$RUNS"); do
  e="b$$-$i"
  t0=$(now)
  raw_up "$e"
  rm -rf "$WORK/clone"; git clone -q "http://admin:$TOKEN@127.0.0.1:$PORT/git/admin/bench.git" "$WORK/clone"
  docker cp -q "$WORK/clone" "raw-$e-app:/projects/bench" >/dev/null
  docker exec "raw-$e-app" sh -c 'cd /projects/bench && python3 -m pytest -q' >/dev/null
  t1=$(now)
  raw_down "$e"; raw_up "$e"
  t2=$(now)
  raw_create+=($((t1 - t0))); raw_restart+=($((t2 - t1)))
  raw_down "$e"; raw_clean "$e"
done

c50=$(printf '%s\n' "${create[@]}" | pct 0.5); c95=$(printf '%s\n' "${create[@]}" | pct 0.95)
r50=$(printf '%s\n' "${restart[@]}" | pct 0.5); r95=$(printf '%s\n' "${restart[@]}" | pct 0.95)
rc50=$(printf '%s\n' "${raw_create[@]}" | pct 0.5); rc95=$(printf '%s\n' "${raw_create[@]}" | pct 0.95)
rr50=$(printf '%s\n' "${raw_restart[@]}" | pct 0.5); rr95=$(printf '%s\n' "${raw_restart[@]}" | pct 0.95)
echo "| operation ($RUNS runs) | Cove p50 ms | Cove p95 ms | raw docker p50 ms | raw docker p95 ms | ratio p50 |"
echo "|---|---|---|---|---|---|"
echo "| create → running (postStart done) | $c50 | $c95 | $rc50 | $rc95 | $(awk -v a="$c50" -v b="$rc50" 'BEGIN{printf "%.2f", a/b}') |"
echo "| warm restart | $r50 | $r95 | $rr50 | $rr95 | $(awk -v a="$r50" -v b="$rr50" 'BEGIN{printf "%.2f", a/b}') |"
echo
echo "idle RSS of cove-server (with the embedded agent): $((RSS_KB / 1024)) MiB"
