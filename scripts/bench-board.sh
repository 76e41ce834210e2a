#!/usr/bin/env bash
# Benchmark (not a test) of the board (issue 16): a repository with ISSUES issues (default
# 2,000) spread over the five default columns; then
#   - `GET …/board` (every column with every card, JSON) ROUNDS times: server time per load;
#   - MOVES card moves (`POST …/issues/{n}/move` to a random column and position): p50/p95.
# Targets: the board loads in <= 300 ms server time, a card move <= 50 ms p95 (issue 16).
# "Server time" is the time from the request sent to the last byte of the answer on a
# keep-alive loopback connection (python http.client), so it includes JSON encoding but no
# connection set-up.
#
#   scripts/bench-board.sh                                  # release build (default)
#   PROFILE=debug ISSUES=2000 ROUNDS=10 MOVES=200 scripts/bench-board.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ISSUES="${ISSUES:-2000}"
ROUNDS="${ROUNDS:-10}"
MOVES="${MOVES:-200}"
PROFILE="${PROFILE:-release}"
if [ "$PROFILE" = release ]; then cargo build -q --release -p cove-server; else cargo build -q -p cove-server; fi
BIN="target/$PROFILE/cove-server"

WORK="$(mktemp -d /tmp/cove-bench-board.XXXXXX)"
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
TOKEN="cove_bench_$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
COVE_ADMIN_TOKEN="$TOKEN" RUST_LOG=warn "$BIN" --data-dir "$WORK/cove-data" --listen "127.0.0.1:$PORT" >"$WORK/server.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/api/v1/user" 2>/dev/null && break
  sleep 0.1
done
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
echo "# $(date -u +%FT%TZ) $(uname -m), $(nproc) cores, profile $PROFILE, SQLite, load before: $LOAD_BEFORE"
python3 - "$PORT" "$TOKEN" "$ISSUES" "$ROUNDS" "$MOVES" <<'PY'
import http.client, json, random, sys, time
port, token, issues, rounds, moves = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
conn = http.client.HTTPConnection("127.0.0.1", port)
H = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

def call(method, path, body=None):
    start = time.perf_counter()
    conn.request(method, "/api/v1" + path, body=None if body is None else json.dumps(body), headers=H)
    resp = conn.getresponse()
    data = resp.read()
    elapsed = time.perf_counter() - start
    if resp.status >= 300:
        raise SystemExit(f"{method} {path}: {resp.status} {data[:300]!r}")
    return elapsed, data

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]

call("POST", "/repos", {"name": "board"})
columns = ["Backlog", "To do", "In progress", "In review", "Done"]
rng = random.Random(16)
t0 = time.perf_counter()
creates = []
for i in range(issues):
    t, _ = call("POST", "/repos/admin/board/issues", {
        "title": f"Issue {i + 1}: a card with a title of ordinary length",
        "description": "Some **Markdown** text, a mention of #1 and `README.md`.\n" * 3,
        "column": columns[i % len(columns)],
        "labels": ["bench", f"l{i % 7}"],
        "priority": ["none", "low", "medium", "high"][i % 4],
        "estimate": ["XS", "S", "M", "L", "XL"][i % 5],
    })
    creates.append(t)
print(f"created {issues} issues in {time.perf_counter() - t0:.1f}s (create p50 {pct(creates, 50)*1000:.1f} ms, p95 {pct(creates, 95)*1000:.1f} ms)")
loads, size = [], 0
for _ in range(rounds):
    t, data = call("GET", "/repos/admin/board/board")
    loads.append(t)
    size = len(data)
board = json.loads(data)
assert sum(len(c["issues"]) for c in board["columns"]) == issues
print(f"GET board ({issues} cards, {size // 1024} KiB JSON): p50 {pct(loads, 50)*1000:.1f} ms, p95 {pct(loads, 95)*1000:.1f} ms, max {max(loads)*1000:.1f} ms of {rounds}")
mv = []
for _ in range(moves):
    n = rng.randint(1, issues)
    t, _ = call("POST", f"/repos/admin/board/issues/{n}/move", {"column": rng.choice(columns), "position": rng.randint(0, issues // len(columns))})
    mv.append(t)
print(f"card move: p50 {pct(mv, 50)*1000:.1f} ms, p95 {pct(mv, 95)*1000:.1f} ms, max {max(mv)*1000:.1f} ms of {moves}")
PY
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
