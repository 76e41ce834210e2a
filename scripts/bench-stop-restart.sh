#!/usr/bin/env bash
# Benchmark (issue 19): `cove env stop` and `cove env restart` after a one-env-var devfile
# change, on devfiles/examples/app-with-dynamodb.yaml, through Cove (release cove-server with
# its embedded agent, driven by the `cove` CLI), side by side in the same rounds with the raw
# docker calls (scripts/raw-env.sh):
#   stop     beside `docker stop` of the same containers (app and db concurrently, then the
#            infra container, as Cove does), and the same without Docker's init (how Cove ran
#            them before: dynalite as PID 1 ignores SIGTERM and waits out the 5 s timeout)
#   restart  beside a full recreate (every container removed and run again, as Cove did
#            before) and the one-container recreate that is the floor of what Cove now does
# Each restart changes one env var of the app in the workspace devfile first; the round
# checks that the DynamoDB container was kept (same id).
#
#   bash scripts/bench-stop-restart.sh [RUNS]    (needs DOCKER_HOST; see scripts/test-env.sh)
set -euo pipefail
RUNS="${1:-10}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[ -n "${DOCKER_HOST:-}" ] || { source "${COVE_DOCKERD_DIR:-/tmp/cove-dockerd}/env"; export DOCKER_HOST; }
PROFILE="${PROFILE:-release}"  # PROFILE=debug: debug binaries (scripts/bench.sh passes it on)
FLAGS=(); [ "$PROFILE" = release ] && FLAGS=(--release)
cargo build -q "${FLAGS[@]}" -p cove -p cove-server
BIN="$ROOT/target/$PROFILE"

WORK="$(mktemp -d)"
SERVER=""
ENV_ID=""
RAW="bsr$$"
cleanup() {
  [ -n "$ENV_ID" ] && "${CLI[@]}" env delete bench-sr --yes >/dev/null 2>&1 || true
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null || true
  docker rm -f "raw-$RAW-app" "raw-$RAW-db" "raw-$RAW-infra" "raw-$RAW-one" >/dev/null 2>&1 || true
  docker volume rm "raw-$RAW-projects" "raw-$RAW-data" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
TOKEN="cove_bench_admin_token_0123456789abcdef0123456789"

mkdir -p "$WORK/repo"
cp devfiles/examples/app-with-dynamodb.yaml "$WORK/repo/devfile.yaml"
git -C "$WORK/repo" init -q -b main
git -C "$WORK/repo" add .
git -C "$WORK/repo" -c user.name=b -c user.email=b@example.com commit -q -m bench

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
COVE_ADMIN_TOKEN="$TOKEN" RUST_LOG=warn "$BIN/cove-server" --data-dir "$WORK/data" \
  --listen "127.0.0.1:$port" >"$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 100); do curl -fs -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$port/api/v1/user" >/dev/null && break; sleep 0.1; done
CLI=(env XDG_CONFIG_HOME="$WORK/config" "$BIN/cove")
"${CLI[@]}" login "http://127.0.0.1:$port" --token "$TOKEN" >/dev/null
"${CLI[@]}" repo create bench >/dev/null
git -C "$WORK/repo" push -q "http://admin:$TOKEN@127.0.0.1:$port/git/admin/bench.git" main
"${CLI[@]}" env create admin/bench --name bench-sr >/dev/null 2>"$WORK/create.log" || { cat "$WORK/create.log"; exit 1; }
ENV_ID=$("${CLI[@]}" env show bench-sr --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
DB="cove-$ENV_ID-dynamodb"

. scripts/raw-env.sh
raw_up "$RAW"
# the same pod without Docker's init: how Cove ran it before
raw_up_noinit() {
  docker run -d --name "raw-$1-infra" -p 127.0.0.1::8000 --pids-limit 64 -m 32m --security-opt no-new-privileges \
    --entrypoint /bin/sh cove/busybox:latest -c "$RAW_KEEP" >/dev/null
  docker run -d --name "raw-$1-app" --network "container:raw-$1-infra" -v "raw-$1-projects:/projects" -w /projects \
    -e IS_LOCAL=true -m 2g --pids-limit 4096 --security-opt no-new-privileges \
    --entrypoint /bin/sh cove/universal:latest -c "$RAW_KEEP" >/dev/null &
  local app=$!
  docker run -d --name "raw-$1-db" --network "container:raw-$1-infra" -v "raw-$1-data:/data" \
    -m 512m --pids-limit 4096 --security-opt no-new-privileges \
    --entrypoint dynalite cove/dynamodb-local:latest --port 8000 --createTableMs 0 --path /data >/dev/null &
  wait "$app" $!
}
raw_stop() {
  # Cove gives components 5 s (docker's own default is 10 s)
  docker stop -t 5 "raw-$1-app" >/dev/null &
  local app=$!
  docker stop -t 5 "raw-$1-db" >/dev/null &
  wait "$app" $!
  docker stop -t 1 "raw-$1-infra" >/dev/null
}

for i in $(seq "$RUNS"); do
  # stop: Cove, then docker stop of the same containers, then without init
  sleep 1 # let dynalite finish starting
  t0=$(now); "${CLI[@]}" env stop bench-sr >/dev/null 2>&1; t1=$(now)
  echo $((t1 - t0)) >>"$WORK/cove.stop"
  "${CLI[@]}" env start bench-sr >/dev/null 2>&1
  sleep 1
  t0=$(now); raw_stop "$RAW"; t1=$(now)
  echo $((t1 - t0)) >>"$WORK/raw.stop"
  raw_down "$RAW"; raw_up_noinit "$RAW"; sleep 1
  t0=$(now); raw_stop "$RAW"; t1=$(now)
  echo $((t1 - t0)) >>"$WORK/noinit.stop"
  raw_down "$RAW"; raw_up "$RAW"

  # restart after a one-env-var change of the app
  db_before=$(docker inspect -f '{{.Id}}' "$DB")
  "${CLI[@]}" env exec bench-sr -- sed -i -E "s/value: \"(true|v[0-9]+)\"/value: \"v$i\"/" \
    /projects/bench/devfile.yaml >/dev/null
  t0=$(now); "${CLI[@]}" env restart bench-sr >/dev/null 2>&1; t1=$(now)
  echo $((t1 - t0)) >>"$WORK/cove.restart"
  seen=$("${CLI[@]}" env exec bench-sr -- sh -c 'echo $IS_LOCAL')
  [ "$seen" = "v$i" ] || { echo "round $i: the app sees IS_LOCAL=$seen, not v$i" >&2; exit 1; }
  [ "$(docker inspect -f '{{.Id}}' "$DB")" = "$db_before" ] && echo kept >>"$WORK/kept"
  # full recreate (raw): every container removed and run again
  t0=$(now); raw_down "$RAW"; raw_up "$RAW"; t1=$(now)
  echo $((t1 - t0)) >>"$WORK/raw.restart"
  # one container recreated (raw): the app removed and run again in the kept namespace
  t0=$(now)
  docker rm -f "raw-$RAW-app" >/dev/null
  docker run -d --init --name "raw-$RAW-app" --network "container:raw-$RAW-infra" -v "raw-$RAW-projects:/projects" \
    -w /projects -e IS_LOCAL="v$i" -m 2g --pids-limit 4096 --security-opt no-new-privileges \
    --entrypoint /bin/sh cove/universal:latest -c "$RAW_KEEP" >/dev/null
  t1=$(now)
  echo $((t1 - t0)) >>"$WORK/one.restart"
done

stat_of() { pct "$2" <"$WORK/$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg), $RUNS rounds; DynamoDB container kept by $(wc -l <"$WORK/kept" 2>/dev/null || echo 0) of $RUNS restarts"
echo
echo "| operation | p50 ms | p95 ms | baseline | baseline p50 ms | baseline p95 ms | ratio p50 |"
echo "|---|---:|---:|---|---:|---:|---:|"
c50=$(stat_of cove.stop 0.5); c95=$(stat_of cove.stop 0.95)
for b in "raw:docker stop of the same containers" "noinit:docker stop, no init (Cove before)"; do
  f="${b%%:*}"; label="${b#*:}"
  b50=$(stat_of "$f.stop" 0.5); b95=$(stat_of "$f.stop" 0.95)
  echo "| cove env stop | $c50 | $c95 | $label | $b50 | $b95 | $(ratio "$c50" "$b50") |"
done
c50=$(stat_of cove.restart 0.5); c95=$(stat_of cove.restart 0.95)
for b in "raw:full recreate (raw docker)" "one:one container recreated (raw docker)"; do
  f="${b%%:*}"; label="${b#*:}"
  b50=$(stat_of "$f.restart" 0.5); b95=$(stat_of "$f.restart" 0.95)
  echo "| cove env restart, one env var changed | $c50 | $c95 | $label | $b50 | $b95 | $(ratio "$c50" "$b50") |"
done
# machine-readable rows for scripts/bench.sh (key, p50, p95, samples, baseline, its p50, p95)
if [ -n "${BENCH_ROWS:-}" ]; then
  printf 'stop\t%s\t%s\t%s\tdocker stop of the same containers\t%s\t%s\n' "$(stat_of cove.stop 0.5)" \
    "$(stat_of cove.stop 0.95)" "$RUNS" "$(stat_of raw.stop 0.5)" "$(stat_of raw.stop 0.95)" >>"$BENCH_ROWS"
  printf 'restart\t%s\t%s\t%s\tfull recreate (raw docker)\t%s\t%s\n' "$(stat_of cove.restart 0.5)" \
    "$(stat_of cove.restart 0.95)" "$RUNS" "$(stat_of raw.restart 0.5)" "$(stat_of raw.restart 0.95)" >>"$BENCH_ROWS"
fi
