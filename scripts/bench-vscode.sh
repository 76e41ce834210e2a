#!/usr/bin/env bash
# VS Code in the browser (issue 18, docs/vscode.md), in one invocation:
#   1. editor startup: `cove env create --editor vscode` until code-server answers through the
#      server's proxy (`/env/<id>/vscode/`, any answer of code-server's own: 200 or its
#      302 to ./?folder=…), beside a baseline in the same run: `cove env create --editor
#      terminal` until `cove env exec <env> -- true` succeeds (what the terminal needs);
#   2. one request of the editor through the proxy (a static asset of code-server, new
#      process each time: `curl` with a token) beside the same GET with `docker exec <main
#      container> curl` straight to 127.0.0.1:13337 inside the pod (farm-bench).
# Usage: scripts/bench-vscode.sh [RUNS]   (debug build; needs the image cove/code-server)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-5}"
if [ -z "${DOCKER_HOST:-}" ] && [ -f /tmp/cove-dockerd/env ]; then
  # shellcheck disable=SC1091
  source /tmp/cove-dockerd/env
  export DOCKER_HOST
fi
docker image inspect cove/code-server:latest >/dev/null 2>&1 ||
  { echo "cove/code-server:latest is missing: bash images/build.sh code-server" >&2; exit 1; }
cargo build -q -p cove -p cove-server
ROOT="$PWD"
W="$(mktemp -d)"
PORT=$((20000 + RANDOM % 10000))
URL="http://127.0.0.1:$PORT"
TOKEN="cove_bench$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export HOME="$W/home"
mkdir -p "$HOME" "$W/data"
COVE_ADMIN_TOKEN="$TOKEN" "$ROOT/target/debug/cove-server" --data-dir "$W/data" \
  --listen "127.0.0.1:$PORT" >"$W/server.log" 2>&1 &
SERVER=$!
ENVS=()
cleanup() {
  for e in "${ENVS[@]}"; do "$ROOT/target/debug/cove" env delete "$e" --yes >/dev/null 2>&1 || true; done
  kill "$SERVER" 2>/dev/null || true
  wait "$SERVER" 2>/dev/null || true
  [ "${KEEP:-0}" = 1 ] && echo "kept $W" || rm -rf "$W"
}
trap cleanup EXIT
for _ in $(seq 1 100); do curl -sf "$URL/healthz" >/dev/null && break; sleep 0.2; done
cove() { "$ROOT/target/debug/cove" "$@"; }
cove login "$URL" --token "$TOKEN" >/dev/null
cove repo create bench >/dev/null
git init -q -b main "$W/src"
printf 'schemaVersion: 2.2.0\nmetadata:\n  name: bench\ncomponents:\n  - name: dev\n    container:\n      image: cove/universal:latest\n      mountSources: true\n      memoryLimit: 2Gi\n' >"$W/src/devfile.yaml"
echo "# bench" >"$W/src/README.md"
git -C "$W/src" add devfile.yaml README.md
git -C "$W/src" -c user.name=b -c user.email=b@localhost commit -qm init
git -C "$W/src" push -q "http://admin:$TOKEN@127.0.0.1:$PORT/git/admin/bench.git" main

now() { date +%s.%N; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", (b - a) * 1000 }'; }
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
env_id() { python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'; }

# warm-up: the code-server volume is filled once per image (not part of the numbers)
e="$(cove env create admin/bench --name warm --editor vscode --output json 2>/dev/null | env_id)"
ENVS+=("$e")
cove env delete "$e" --yes >/dev/null

echo "# $(date -u +%FT%TZ) $(nproc) cores, debug build, $RUNS runs each"
A=()
B=()
for i in $(seq 1 "$RUNS"); do
  t0="$(now)"
  e="$(cove env create admin/bench --name "vs$i" --editor vscode --output json 2>/dev/null | env_id)"
  ENVS+=("$e")
  code=""
  for _ in $(seq 1 600); do
    code="$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$URL/env/$e/vscode/")"
    [ "$code" = 200 ] || [ "$code" = 302 ] && break
    sleep 0.1
  done
  t1="$(now)"
  [ "$code" = 200 ] || [ "$code" = 302 ] || { echo "editor of $e never answered ($code)" >&2; exit 1; }
  A+=("$(ms "$t0" "$t1")")
  t0="$(now)"
  p="$(cove env create admin/bench --name "tm$i" --editor terminal --output json 2>/dev/null | env_id)"
  ENVS+=("$p")
  cove env exec "$p" --no-tty -- true 2>/dev/null
  t1="$(now)"
  B+=("$(ms "$t0" "$t1")")
  cove env delete "$p" --yes >/dev/null
  [ "$i" -lt "$RUNS" ] && cove env delete "$e" --yes >/dev/null
done
echo "## editor startup: env create --editor vscode → editor answers through the proxy"
echo "A (vscode)   ms: ${A[*]}  median $(printf '%s\n' "${A[@]}" | median)"
echo "B (terminal) ms: ${B[*]}  median $(printf '%s\n' "${B[@]}" | median)   (create --editor terminal → exec true)"

# one static asset of code-server through the proxy vs inside the pod
ASSET="$(curl -s -H "Authorization: Bearer $TOKEN" "$URL/env/$e/vscode/?folder=/projects/bench" |
  grep -o 'stable-[0-9a-f]*/static/out/vs/code/browser/workbench/workbench\.js' | head -1 || true)"
[ -n "$ASSET" ] || { echo "no workbench.js in the editor's page" >&2; exit 1; }
CTR="$(docker ps --filter "label=cove.env=$e" --filter "label=cove.role=component" --format '{{.Names}}' | head -1)"
echo "## GET $ASSET: through the proxy (curl + token) vs docker exec $CTR curl 127.0.0.1:13337"
farm-bench -n 20 --timeout 600 \
  --vs "docker exec $CTR curl -sf -o /dev/null http://127.0.0.1:13337/$ASSET" -- \
  curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" "$URL/env/$e/vscode/$ASSET"
