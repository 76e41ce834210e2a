#!/usr/bin/env bash
# File caches (issue 17): the wall time of a whole run (start → end, through the real server and
# its embedded agent on Docker) of one action whose "install" step makes 2000 files + 20 MiB
# and waits 2 s (a stand-in for downloading dependencies), in one invocation:
#   A: the action with `Caching.FileCaching` on that directory, cache warm (a hit restores
#      it before the steps; the step is skipped; the cache is saved again after the success);
#   B: the same action without a cache (the baseline: the step runs every time).
# Usage: scripts/bench-cache.sh [RUNS]   (debug build; farm-bench prints min/median/max)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-5}"
if [ -z "${DOCKER_HOST:-}" ] && [ -f /tmp/cove-dockerd/env ]; then
  # shellcheck disable=SC1091
  source /tmp/cove-dockerd/env
  export DOCKER_HOST
fi
cargo build -q -p cove -p cove-server
ROOT="$PWD"
W="$(mktemp -d)"
PORT=$((20000 + RANDOM % 10000))
TOKEN="cove_bench$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export HOME="$W/home"
mkdir -p "$HOME" "$W/data"
COVE_ADMIN_TOKEN="$TOKEN" "$ROOT/target/debug/cove-server" --data-dir "$W/data" \
  --listen "127.0.0.1:$PORT" >"$W/server.log" 2>&1 &
SERVER=$!
cleanup() {
  kill "$SERVER" 2>/dev/null || true
  wait "$SERVER" 2>/dev/null || true
  [ "${KEEP:-0}" = 1 ] && echo "kept $W" || rm -rf "$W"
}
trap cleanup EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.2; done
cove() { "$ROOT/target/debug/cove" "$@"; }
cove login "http://127.0.0.1:$PORT" --token "$TOKEN" >/dev/null
cove repo create bench >/dev/null
mkdir -p "$W/src/.codecatalyst/workflows"
INSTALL='if [ -f deps/done ]; then echo "deps from the cache"; else mkdir -p deps && for i in $(seq 1 2000); do echo "$i" > deps/f$i; done && head -c 20971520 /dev/urandom > deps/blob && sleep 2 && touch deps/done; fi'
for wf in cached plain; do
  {
    printf 'Name: %s\nSchemaVersion: "1.0"\nActions:\n  Build:\n    Identifier: aws/build@v1\n' "$wf"
    if [ "$wf" = cached ]; then
      printf '    Caching:\n      FileCaching:\n        deps:\n          Path: deps\n'
    fi
    printf '    Configuration:\n      Steps:\n        - Run: %s\n        - Run: ls deps | wc -l\n' "'$INSTALL'"
  } >"$W/src/.codecatalyst/workflows/$wf.yaml"
done
git -C "$W/src" init -q -b main
git -C "$W/src" add .
git -C "$W/src" -c user.name=b -c user.email=b@localhost commit -qm init
git -C "$W/src" push -q "http://admin:$TOKEN@127.0.0.1:$PORT/git/admin/bench.git" main
cat >"$W/run.sh" <<RUN
#!/usr/bin/env bash
set -euo pipefail
export HOME="$HOME"
id=\$("$ROOT/target/debug/cove" run start bench --workflow "\$1" --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
"$ROOT/target/debug/cove" run logs -f "\$id" >/dev/null
RUN
chmod +x "$W/run.sh"
"$W/run.sh" cached # warm the cache (a miss that saves it)
"$W/run.sh" plain  # and pull the image once
echo "# $(date -u +%FT%TZ) $(nproc) cores, debug build"
echo "## run with a warm cache  vs  the same run without a cache"
farm-bench -n "$RUNS" --timeout 600 --vs "$W/run.sh plain" -- "$W/run.sh" cached
