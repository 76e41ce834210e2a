#!/usr/bin/env bash
# SSH into an environment (issue 18) beside the raw engine, in one invocation:
#   A: `ssh cove.<env> true` with the stock OpenSSH client through `cove config-ssh`'s entry
#      (a new SSH connection, key auth, an exec through the embedded agent);
#   B: `docker exec <main container> true` (the engine's own exec, no SSH, no Cove).
# and a 20 MiB `scp` into /projects vs `docker cp` of the same file.
# Usage: scripts/bench-ssh.sh [RUNS]   (debug build; farm-bench prints min/median/max)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-10}"
if [ -z "${DOCKER_HOST:-}" ] && [ -f /tmp/cove-dockerd/env ]; then
  # shellcheck disable=SC1091
  source /tmp/cove-dockerd/env
  export DOCKER_HOST
fi
cargo build -q -p cove -p cove-server
ROOT="$PWD"
W="$(mktemp -d)"
PORT=$((20000 + RANDOM % 10000))
SSH_PORT=$((PORT + 1))
TOKEN="cove_bench$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export HOME="$W/home"
mkdir -p "$HOME" "$W/data"
printf '[ssh]\nlisten = "127.0.0.1:%s"\n' "$SSH_PORT" >"$W/cove.toml"
COVE_ADMIN_TOKEN="$TOKEN" "$ROOT/target/debug/cove-server" --data-dir "$W/data" \
  --listen "127.0.0.1:$PORT" --config "$W/cove.toml" >"$W/server.log" 2>&1 &
SERVER=$!
ENV=""
cleanup() {
  [ -n "$ENV" ] && "$ROOT/target/debug/cove" env delete "$ENV" --yes >/dev/null 2>&1 || true
  [ "${KEEP:-0}" = 1 ] && grep -v "^  " "$W/server.log" | tail -5; kill "$SERVER" 2>/dev/null || true
  wait "$SERVER" 2>/dev/null || true
  [ "${KEEP:-0}" = 1 ] && echo "kept $W" || rm -rf "$W"
}
trap cleanup EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.2; done
cove() { "$ROOT/target/debug/cove" "$@"; }
cove login "http://127.0.0.1:$PORT" --token "$TOKEN" >/dev/null
cove repo create bench >/dev/null
git init -q -b main "$W/src"
echo "# bench" >"$W/src/README.md"
git -C "$W/src" -c user.name=b -c user.email=b@localhost commit -qam init 2>/dev/null ||
  { git -C "$W/src" add README.md; git -C "$W/src" -c user.name=b -c user.email=b@localhost commit -qm init; }
git -C "$W/src" push -q "http://admin:$TOKEN@127.0.0.1:$PORT/git/admin/bench.git" main
ENV="$(cove env create admin/bench --name b1 --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
ssh-keygen -q -t ed25519 -N '' -f "$W/key"
cove ssh-key add "$W/key.pub" >/dev/null
cove config-ssh --file "$W/ssh_config" >/dev/null
HOST="$(awk '/^Host cove\./ {print $2; exit}' "$W/ssh_config")"
SSH=(ssh -F "$W/ssh_config" -i "$W/key" -o BatchMode=yes "$HOST")
"${SSH[@]}" true
CTR="$(docker ps --filter "label=cove.env=$ENV" --format '{{.Names}}' | grep -v infra | head -1)"
[ -n "$CTR" ] || CTR="$(docker ps --format '{{.Names}}' | grep "$ENV" | grep -v infra | head -1)"
echo "# $(date -u +%FT%TZ) $(nproc) cores, debug build; env $ENV, container $CTR"
echo "## ssh cove.<env> true  vs  docker exec <container> true"
farm-bench -n "$RUNS" --timeout 600 --vs "docker exec $CTR true" -- "${SSH[@]}" true
head -c $((20 << 20)) /dev/urandom >"$W/blob"
echo "## scp 20 MiB into /projects  vs  docker cp"
farm-bench -n "$RUNS" --timeout 600 --vs "docker cp $W/blob $CTR:/projects/blob-cp" -- \
  scp -q -F "$W/ssh_config" -i "$W/key" -o BatchMode=yes "$W/blob" "$HOST:/projects/blob-scp"
