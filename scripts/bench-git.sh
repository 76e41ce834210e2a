#!/usr/bin/env bash
# Benchmark (not a test): push and clone of a ~50 MB repository through Cove vs the same
# repository served by plain `git http-backend` behind a tiny CGI wrapper, both on 127.0.0.1.
#
#   scripts/bench-git.sh            # release build (default)
#   PROFILE=debug ROUNDS=1 scripts/bench-git.sh
#   VS_BIN=/path/to/older/cove-server scripts/bench-git.sh   # also measure another version
#   COVE_BIN=/path/to/cove-server scripts/bench-git.sh       # measure this binary (no build)
#
# With VS_BIN, a second Cove server (that binary) runs beside the first and every round pushes
# and clones through this version, VS_BIN and plain git back to back.
#
# Prints seconds per operation (median of ROUNDS) and the throughput ratio cove/plain.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${ROUNDS:-3}"
SIZE_MB="${SIZE_MB:-50}"
PROFILE="${PROFILE:-release}"
if [ -n "${COVE_BIN:-}" ]; then
  BIN="$COVE_BIN"
else
  if [ "$PROFILE" = release ]; then cargo build -q --release -p cove-server; else cargo build -q -p cove-server; fi
  BIN="target/$PROFILE/cove-server"
fi
TARGETS=(cove)
[ -n "${VS_BIN:-}" ] && TARGETS+=(vs)
TARGETS+=(plain)

WORK="$(mktemp -d /tmp/cove-bench.XXXXXX)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
export GIT_TERMINAL_PROMPT=0 GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.com GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.com

# The source repository: SIZE_MB of incompressible data in 1 MiB files, 5 commits.
SRC="$WORK/src"
git init -q -b main "$SRC"
per_commit=$(( SIZE_MB / 5 ))
for c in 1 2 3 4 5; do
  for i in $(seq 1 "$per_commit"); do head -c 1048576 /dev/urandom > "$SRC/c${c}_f${i}.bin"; done
  git -C "$SRC" add -A && git -C "$SRC" commit -q -m "commit $c"
done
PACKED_MB=$(du -sm "$SRC/.git/objects" | cut -f1)

# Cove.
COVE_PORT=$(free_port)
TOKEN="cove_bench_$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
COVE_ADMIN_TOKEN="$TOKEN" RUST_LOG=warn "$BIN" --data-dir "$WORK/cove-data" --listen "127.0.0.1:$COVE_PORT" >/dev/null 2>&1 &
PIDS+=($!)
declare -A PORT=([cove]=$COVE_PORT)
if [ -n "${VS_BIN:-}" ]; then
  PORT[vs]=$(free_port)
  COVE_ADMIN_TOKEN="$TOKEN" RUST_LOG=warn "$VS_BIN" --data-dir "$WORK/vs-data" --listen "127.0.0.1:${PORT[vs]}" >/dev/null 2>&1 &
  PIDS+=($!)
fi
# Plain git http-backend.
PLAIN_PORT=$(free_port)
mkdir -p "$WORK/plain"
python3 scripts/git-http-backend-cgi.py "$PLAIN_PORT" "$WORK/plain" &
PIDS+=($!)
for t in "${!PORT[@]}"; do
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:${PORT[$t]}/api/v1/user" 2>/dev/null && break
    sleep 0.1
  done
done
sleep 0.5

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# Rounds interleave Cove and plain so that load from other processes hits both alike.
declare -A PUSHES CLONES
for r in $(seq 1 "$ROUNDS"); do
  for target in "${TARGETS[@]}"; do
    if [ "$target" != plain ]; then
      port=${PORT[$target]}
      curl -fsS -o /dev/null -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
        -d "{\"name\":\"bench$r\"}" "http://127.0.0.1:$port/api/v1/repos"
      url="http://bench:$TOKEN@127.0.0.1:$port/git/admin/bench$r.git"
    else
      git init -q --bare -b main "$WORK/plain/bench$r.git"
      git -C "$WORK/plain/bench$r.git" config http.receivepack true
      url="http://127.0.0.1:$PLAIN_PORT/bench$r.git"
    fi
    t0=$(now); git -C "$SRC" push -q "$url" main; t1=$(now)
    rm -rf "$WORK/clone"
    t2=$(now); git clone -q "$url" "$WORK/clone"; t3=$(now)
    test "$(git -C "$WORK/clone" rev-parse HEAD)" = "$(git -C "$SRC" rev-parse HEAD)"
    PUSHES[$target]+="$(echo "$t1 - $t0" | bc -l) "
    CLONES[$target]+="$(echo "$t3 - $t2" | bc -l) "
  done
done
declare -A T
for target in "${TARGETS[@]}"; do
  T[$target-push]=$(printf '%s\n' ${PUSHES[$target]} | median)
  T[$target-clone]=$(printf '%s\n' ${CLONES[$target]} | median)
done

echo "load average before: $LOAD_BEFORE; after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "repository: ${SIZE_MB} MiB of random data in 5 commits (${PACKED_MB} MiB of objects); median of $ROUNDS rounds; $PROFILE build; git $(git --version | cut -d' ' -f3)"
[ -n "${VS_BIN:-}" ] && echo "vs = $VS_BIN"
printf '%-6s %-6s %12s %12s %14s %14s\n' op server "time (s)" "plain (s)" "MiB/s" "ratio to plain"
for op in push clone; do
  p=${T[plain-$op]}
  for target in "${TARGETS[@]}"; do
    [ "$target" = plain ] && continue
    c=${T[$target-$op]}
    printf '%-6s %-6s %12.3f %12.3f %14.1f %14.2f\n' "$op" "$target" "$c" "$p" "$(echo "$SIZE_MB / $c" | bc -l)" "$(echo "$p / $c" | bc -l)"
  done
done
