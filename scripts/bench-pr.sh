#!/usr/bin/env bash
# Benchmark (not a test): a pull request's diff of 1,000 changed files / 50,000 changed lines
# served by Cove (`GET /api/v1/repos/…/pulls/1/diff`, JSON with a unified diff per file,
# rename detection on) next to plain `git diff --stat -p main...feature` on the same
# repository in the same run. Target: <= 1 s (issue 15).
#
#   scripts/bench-pr.sh                      # release build (default)
#   PROFILE=debug ROUNDS=5 scripts/bench-pr.sh
#
# Prints the median of ROUNDS for each, the response size and whether Cove truncated.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${ROUNDS:-5}"
FILES="${FILES:-1000}"
LINES="${LINES:-50}"
PROFILE="${PROFILE:-release}"
if [ "$PROFILE" = release ]; then cargo build -q --release -p cove-server; else cargo build -q -p cove-server; fi
BIN="target/$PROFILE/cove-server"

WORK="$(mktemp -d /tmp/cove-bench-pr.XXXXXX)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export GIT_TERMINAL_PROMPT=0 GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.com GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.com

# main: FILES files of 2*LINES lines; feature: LINES lines of each changed.
SRC="$WORK/src"
git init -q -b main "$SRC"
python3 - "$SRC" "$FILES" "$LINES" base <<'PY'
import os, sys
src, files, lines, kind = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
for f in range(files):
    d = os.path.join(src, f"dir{f % 20}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"file{f}.txt"), "w") as out:
        for l in range(2 * lines):
            changed = kind == "feature" and l % 2 == 0
            out.write(f"file {f} line {l} {'changed in the feature branch' if changed else 'as on main'}\n")
PY
git -C "$SRC" add -A && git -C "$SRC" commit -q -m base
git -C "$SRC" checkout -q -b feature
python3 - "$SRC" "$FILES" "$LINES" feature <<'PY'
import os, sys
src, files, lines, kind = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
for f in range(files):
    with open(os.path.join(src, f"dir{f % 20}", f"file{f}.txt"), "w") as out:
        for l in range(2 * lines):
            changed = l % 2 == 0
            out.write(f"file {f} line {l} {'changed in the feature branch' if changed else 'as on main'}\n")
PY
git -C "$SRC" commit -q -am feature
STAT=$(git -C "$SRC" diff --shortstat main...feature)

PORT=$(free_port)
TOKEN="cove_bench_$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
COVE_ADMIN_TOKEN="$TOKEN" RUST_LOG=warn "$BIN" --data-dir "$WORK/cove-data" --listen "127.0.0.1:$PORT" >/dev/null 2>&1 &
PIDS+=($!)
API="http://127.0.0.1:$PORT/api/v1"
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null -H "Authorization: Bearer $TOKEN" "$API/user" 2>/dev/null && break
  sleep 0.1
done
curl -fsS -o /dev/null -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -d '{"name":"bench"}' "$API/repos"
git -C "$SRC" push -q "http://cove:$TOKEN@127.0.0.1:$PORT/git/admin/bench.git" main feature
curl -fsS -o /dev/null -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -d '{"source":"feature","title":"bench"}' "$API/repos/admin/bench/pulls"

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
COVE_TIMES=()
PLAIN_TIMES=()
for _ in $(seq 1 "$ROUNDS"); do
  COVE_TIMES+=("$(curl -fsS -o "$WORK/diff.json" -w '%{time_total}' -H "Authorization: Bearer $TOKEN" "$API/repos/admin/bench/pulls/1/diff")")
  s=$(date +%s.%N)
  git -C "$SRC" diff --stat -p main...feature > "$WORK/plain.diff"
  e=$(date +%s.%N)
  PLAIN_TIMES+=("$(echo "$e - $s" | bc -l)")
done
COVE_MEDIAN=$(printf "%.3f" "$(printf "%s\n" "${COVE_TIMES[@]}" | median)")
PLAIN_MEDIAN=$(printf "%.3f" "$(printf "%s\n" "${PLAIN_TIMES[@]}" | median)")
SUMMARY=$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print("files_changed=%s additions=%s deletions=%s truncated=%s" % (d["files_changed"], d["additions"], d["deletions"], d["truncated"]))
' "$WORK/diff.json")
echo "# $(date -u +%FT%TZ) $(uname -m), $(nproc) cores, profile $PROFILE, load before: $LOAD_BEFORE"
echo "repository: $STAT"
echo "cove  GET …/pulls/1/diff              median ${COVE_MEDIAN}s of $ROUNDS ($(du -k "$WORK/diff.json" | cut -f1) KiB JSON; $SUMMARY)"
echo "plain git diff --stat -p main...feature median ${PLAIN_MEDIAN}s of $ROUNDS ($(du -k "$WORK/plain.diff" | cut -f1) KiB)"
