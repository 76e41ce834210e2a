#!/usr/bin/env bash
# Benchmark: environment create → running (postStart done) and warm restart of
# devfiles/examples/app-with-dynamodb.yaml through Cove (release cove-server with
# its embedded agent, driven by the `cove` CLI), side by side with a shell
# script that makes the same raw docker calls (volumes, infra container, two
# containers in its namespace, sources copied in, the postStart test run).
# Also prints the idle RSS of cove-server (which embeds the agent).
# Prebuilds (issue 19, docs/prebuilds.md), this version only: the same files in a second
# repository whose devfile marks postStart prebuild-safe (`cove.dev/prebuild-post-start`), so a
# push prebuilds it; each round then measures create from the prebuilt commit → a shell runs a
# command (`cove env exec … -- true`), beside a cold create of the same commit (`--devfile
# devfile.yaml` names the devfile, which never uses a prebuild) → the same command, and the raw
# docker script. The prebuilt repository keeps one environment warm (`cove repo prebuilds set
# --warm 1`, docs/prebuilds.md "Warm pool"): each round waits (untimed) until the pool has one
# ready, then times create → shell from the pool; and create → shell of the prebuilt commit
# that the pool cannot serve (`--size small`: the pool's are medium), which starts the
# prebuild's snapshot images.
#
#   bash scripts/bench-env.sh [RUNS] [--vs REV]    (needs DOCKER_HOST; see scripts/test-env.sh)
#
# With --vs REV the version REV (any git revision, e.g. a previous commit) is built in
# its own worktree (target/bench-vs/REV, kept between runs) and measured in the same
# invocation: its server runs beside this one and every round runs this version, REV
# and the raw script back to back, so load on the machine falls on all three alike.
set -euo pipefail
RUNS=10
VS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --vs) VS="$2"; shift 2 ;;
    *) RUNS="$1"; shift ;;
  esac
done
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[ -n "${DOCKER_HOST:-}" ] || { source "${COVE_DOCKERD_DIR:-/tmp/cove-dockerd}/env"; export DOCKER_HOST; }
PROFILE="${PROFILE:-release}"  # PROFILE=debug: debug binaries (scripts/bench.sh passes it on)
FLAGS=(); [ "$PROFILE" = release ] && FLAGS=(--release)
cargo build -q "${FLAGS[@]}" -p cove -p cove-server
VERSIONS=(current)
declare -A BIN=([current]="$ROOT/target/$PROFILE")
if [ -n "$VS" ]; then
  sha=$(git rev-parse --short "$VS^{commit}")
  tree="$ROOT/target/bench-vs/$sha"
  [ -d "$tree" ] || git worktree add -q --detach "$tree" "$sha"
  # its own target dir inside the worktree; dependencies are rebuilt once, then kept
  (cd "$tree" && cargo build -q --release -p cove -p cove-server)
  VERSIONS+=("$sha")
  BIN[$sha]="$tree/target/release"
fi

WORK="$(mktemp -d)"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$WORK"' EXIT
TOKEN="cove_bench_admin_token_0123456789abcdef0123456789"

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

declare -A URL SERVER_PID
for v in "${VERSIONS[@]}"; do
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  # this version keeps warm pod shells (docs/prebuilds.md "Warm pod shells"); a --vs
  # version runs with its defaults
  conf=()
  if [ "$v" = current ]; then
    mkdir -p "$WORK/$v"
    printf '[environments]\nwarm_shells = %s\n' "${WARM_SHELLS:-2}" >"$WORK/$v/cove.toml"
    conf=(--config "$WORK/$v/cove.toml")
  fi
  COVE_ADMIN_TOKEN="$TOKEN" RUST_LOG=warn "${BIN[$v]}/cove-server" "${conf[@]}" --data-dir "$WORK/$v/data" \
    --listen "127.0.0.1:$port" >"$WORK/$v.server.log" 2>&1 &
  SERVER_PID[$v]=$!; PIDS+=($!)
  URL[$v]="http://127.0.0.1:$port"
  for _ in $(seq 100); do curl -fs -H "Authorization: Bearer $TOKEN" "${URL[$v]}/api/v1/user" >/dev/null && break; sleep 0.1; done
  XDG_CONFIG_HOME="$WORK/$v/config" "${BIN[$v]}/cove" login "${URL[$v]}" --token "$TOKEN" >/dev/null
  XDG_CONFIG_HOME="$WORK/$v/config" "${BIN[$v]}/cove" repo create bench >/dev/null
  git -C "$WORK/repo" push -q "http://admin:$TOKEN@127.0.0.1:$port/git/admin/bench.git" main
done

# the prebuilt repository (this version): same files, postStart marked prebuild-safe
CLI=(env XDG_CONFIG_HOME="$WORK/current/config" "${BIN[current]}/cove")
cp -r "$WORK/repo" "$WORK/prerepo"
sed -i 's/^metadata:/attributes:\n  cove.dev\/prebuild-post-start: true\nmetadata:/' "$WORK/prerepo/devfile.yaml"
git -C "$WORK/prerepo" -c user.name=b -c user.email=b@example.com commit -qam prebuild
"${CLI[@]}" repo create benchpre >/dev/null
git -C "$WORK/prerepo" push -q "http://admin:$TOKEN@${URL[current]#http://}/git/admin/benchpre.git" main
for _ in $(seq 600); do
  st=$("${CLI[@]}" prebuild list admin/benchpre --output json | python3 -c 'import json,sys; l=json.load(sys.stdin); print(l[0]["state"] if l else "none")')
  [ "$st" = succeeded ] && break
  [ "$st" = failed ] && { "${CLI[@]}" prebuild list admin/benchpre; exit 1; }
  sleep 0.5
done
[ "$st" = succeeded ] || { echo "the prebuild did not finish" >&2; exit 1; }
"${CLI[@]}" repo prebuilds set admin/benchpre --warm 1 >/dev/null
# until the warm pool has an environment ready (not timed)
pool_ready() {
  local n
  for _ in $(seq 600); do
    n=$("${CLI[@]}" prebuild list admin/benchpre --output json | python3 -c 'import json,sys; l=json.load(sys.stdin); print(l[0].get("pool_ready", 0) if l else 0)')
    [ "$n" -ge 1 ] && return 0
    sleep 0.1
  done
  echo "the warm pool did not fill" >&2; exit 1
}

. scripts/raw-env.sh

# one round of a Cove version: create (waits for running, postStart done), restart, delete
cove_round() {
  local v="$1" i="$2" t0 t1 t2
  local cli=(env XDG_CONFIG_HOME="$WORK/$v/config" "${BIN[$v]}/cove")
  t0=$(now)
  "${cli[@]}" env create admin/bench --name "b$i" >/dev/null 2>"$WORK/create.log" || { cat "$WORK/create.log"; exit 1; }
  t1=$(now)
  "${cli[@]}" env restart "b$i" >/dev/null 2>&1
  t2=$(now)
  echo $((t1 - t0)) >>"$WORK/$v.create"; echo $((t2 - t1)) >>"$WORK/$v.restart"
  # whether the create took a warm pod shell (its event log says so)
  local id
  id=$("${cli[@]}" env show "b$i" --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  local events
  events=$(curl -fsS -H "Authorization: Bearer $TOKEN" "${URL[$v]}/api/v1/environments/$id/events")
  if grep -q "warm pod shell" <<<"$events"; then echo "b$i" >>"$WORK/$v.shells"; fi
  "${cli[@]}" env delete "b$i" --yes >/dev/null 2>&1
}
# the same docker calls by hand (scripts/raw-env.sh)
raw_round() {
  local e="b$$-$1" t0 t1 t2 url="${URL[current]}"
  t0=$(now)
  raw_up "$e"
  rm -rf "$WORK/clone"; git clone -q "http://admin:$TOKEN@${url#http://}/git/admin/bench.git" "$WORK/clone"
  docker cp -q "$WORK/clone" "raw-$e-app:/projects/bench" >/dev/null
  docker exec "raw-$e-app" sh -c 'cd /projects/bench && python3 -m pytest -q' >/dev/null
  t1=$(now)
  raw_down "$e"; raw_up "$e"
  t2=$(now)
  echo $((t1 - t0)) >>"$WORK/raw.create"; echo $((t2 - t1)) >>"$WORK/raw.restart"
  raw_down "$e"; raw_clean "$e"
}

# create → a shell runs a command: from the warm pool, from the prebuild's images, and cold
# (same commit)
pre_round() {
  local i="$1" t0 t1 t2 t3
  pool_ready
  t0=$(now)
  "${CLI[@]}" env create admin/benchpre --name "w$i" >/dev/null 2>"$WORK/create-w.log" || { cat "$WORK/create-w.log"; exit 1; }
  "${CLI[@]}" env exec "w$i" --no-tty -- true
  t1=$(now)
  "${CLI[@]}" env create admin/benchpre --size small --name "p$i" >/dev/null 2>"$WORK/create.log" || { cat "$WORK/create.log"; exit 1; }
  "${CLI[@]}" env exec "p$i" --no-tty -- true
  t2=$(now)
  "${CLI[@]}" env create admin/benchpre --devfile devfile.yaml --name "c$i" >/dev/null 2>"$WORK/create.log" || { cat "$WORK/create.log"; exit 1; }
  "${CLI[@]}" env exec "c$i" --no-tty -- true
  t3=$(now)
  echo $((t1 - t0)) >>"$WORK/pool.shell"; echo $((t2 - t1)) >>"$WORK/prebuilt.shell"; echo $((t3 - t2)) >>"$WORK/cold.shell"
  grep -q "prebuilt from" <<<"$("${CLI[@]}" env show "w$i")" || { echo "w$i is not prebuilt" >&2; "${CLI[@]}" env show "w$i" >&2; cat "$WORK/create-w.log" >&2; "${CLI[@]}" prebuild list admin/benchpre >&2; exit 1; }
  grep -q "claimed from the warm pool" "$WORK/create-w.log" || { echo "w$i was not claimed from the pool" >&2; cat "$WORK/create-w.log" >&2; exit 1; }
  grep -q "prebuilt from" <<<"$("${CLI[@]}" env show "p$i")" || { echo "p$i is not prebuilt" >&2; "${CLI[@]}" env show "p$i" >&2; "${CLI[@]}" prebuild list admin/benchpre >&2; exit 1; }
  grep -q "start:       cold" <<<"$("${CLI[@]}" env show "c$i")" || { echo "c$i is not cold" >&2; exit 1; }
  for e in "w$i" "p$i" "c$i"; do "${CLI[@]}" env delete "$e" --yes >/dev/null 2>&1; done
}

for i in $(seq "$RUNS"); do
  for v in "${VERSIONS[@]}"; do cove_round "$v" "$i"; done
  pre_round "$i"
  raw_round "$i"
done
# the warm pool drains (its environment would outlive the server and its data directory)
"${CLI[@]}" repo prebuilds set admin/benchpre --warm 0 >/dev/null
for _ in $(seq 300); do
  left=$("${CLI[@]}" prebuild list admin/benchpre --output json | python3 -c 'import json,sys; print(sum(p.get("pool_ready", 0) + p.get("pool_creating", 0) for p in json.load(sys.stdin)))')
  [ "$left" = 0 ] && break
  sleep 0.1
done
sleep 3   # the agent's delete of the last one
declare -A RSS_KB RSS_PARTS
for v in "${VERSIONS[@]}"; do
  st="/proc/${SERVER_PID[$v]}/status"
  RSS_KB[$v]=$(awk '/VmRSS/ {print $2}' "$st")
  RSS_PARTS[$v]=$(awk '/RssAnon/ {a=$2} /RssFile/ {f=$2} END {printf "heap and stacks %.1f MiB, mapped files %.1f MiB", a/1024, f/1024}' "$st")
done

stat_of() { pct "$2" <"$WORK/$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg), $RUNS rounds (each: every version, then raw)"
echo
echo "| operation | version | p50 ms | p95 ms | raw docker p50 ms | raw docker p95 ms | ratio p50 to raw |"
echo "|---|---|---:|---:|---:|---:|---:|"
for op in create restart; do
  label="create → running (postStart done)"; [ "$op" = restart ] && label="warm restart (devfile unchanged: nothing is recreated since issue 19)"
  r50=$(stat_of raw.$op 0.5); r95=$(stat_of raw.$op 0.95)
  for v in "${VERSIONS[@]}"; do
    c50=$(stat_of "$v.$op" 0.5); c95=$(stat_of "$v.$op" 0.95)
    echo "| $label | $v | $c50 | $c95 | $r50 | $r95 | $(ratio "$c50" "$r50") |"
  done
done
w50=$(stat_of pool.shell 0.5); w95=$(stat_of pool.shell 0.95)
p50=$(stat_of prebuilt.shell 0.5); p95=$(stat_of prebuilt.shell 0.95)
c50=$(stat_of cold.shell 0.5); c95=$(stat_of cold.shell 0.95)
r50=$(stat_of raw.create 0.5); r95=$(stat_of raw.create 0.95)
echo "| create from a prebuild, warm pool → shell runs a command | current | $w50 | $w95 | $r50 | $r95 | $(ratio "$w50" "$r50") |"
echo "| create from a prebuild, no warm environment → shell runs a command | current | $p50 | $p95 | $r50 | $r95 | $(ratio "$p50" "$r50") |"
echo "| cold create of the same commit → shell runs a command | current | $c50 | $c95 | $r50 | $r95 | $(ratio "$c50" "$r50") |"
echo
echo "vs cold create of the same commit, p50: warm pool $(ratio "$w50" "$c50"), prebuild's images $(ratio "$p50" "$c50")"
echo
for v in "${VERSIONS[@]}"; do
  echo "idle RSS of cove-server $v (with the embedded agent): $(awk -v k="${RSS_KB[$v]}" 'BEGIN{printf "%.1f", k/1024}') MiB (${RSS_PARTS[$v]})"
done
# machine-readable rows for scripts/bench.sh (key, p50, p95, samples, baseline, its p50, p95)
if [ -n "${BENCH_ROWS:-}" ]; then
  printf 'create-cold\t%s\t%s\t%s\traw docker script\t%s\t%s\n' "$(stat_of current.create 0.5)" \
    "$(stat_of current.create 0.95)" "$RUNS" "$(stat_of raw.create 0.5)" "$(stat_of raw.create 0.95)" >>"$BENCH_ROWS"
  printf 'create-prebuilt\t%s\t%s\t%s\tcold create of the same commit\t%s\t%s\n' "$w50" "$w95" "$RUNS" "$c50" "$c95" >>"$BENCH_ROWS"
  printf 'create-prebuilt-raw\t%s\t%s\t%s\traw docker script (clone + postStart)\t%s\t%s\n' "$w50" "$w95" "$RUNS" "$r50" "$r95" >>"$BENCH_ROWS"
fi
echo
for v in "${VERSIONS[@]}"; do
  echo "create → running of $v: $(cat "$WORK/$v.shells" 2>/dev/null | wc -l) of $RUNS took a warm pod shell ([environments] warm_shells = ${WARM_SHELLS:-2} for current)"
done
