#!/usr/bin/env bash
# Prepare this machine (Debian 12, as root) for Cove's tests. Idempotent:
#   1. apt-get install docker.io debootstrap busybox-static nodejs npm chromium systemd (+ containerd runc
#      containernetworking-plugins ipset conntrack for the Kubernetes test)
#      python3-aiosmtpd openssh-client rsync tmux (each skipped when present)
#   2. make sure a docker engine answers; if none does, start dockerd under
#      $COVE_DOCKERD_DIR (default /tmp/cove-dockerd) with its socket at
#      $COVE_DOCKERD_DIR/docker.sock
#   3. write `export DOCKER_HOST=...` to $COVE_DOCKERD_DIR/env (sourced by scripts/test.sh)
#   4. images/build.sh (builds only the images that are missing or whose recipe changed:
#      base, universal, dynamodb-local, busybox, echo-server, agent, code-server — the last one fetches
#      Node 20 and code-server from the npm registry, ~8 min the first time; docs/vscode.md)
#
# DOCKER_HOST convention: an engine that already answers is used as is (the caller's
# DOCKER_HOST, else the default /var/run/docker.sock); otherwise Cove's own dockerd
# at unix:///tmp/cove-dockerd/docker.sock. The tests crate falls back to that socket
# by itself when DOCKER_HOST is unset and the default socket is absent.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${COVE_DOCKERD_DIR:-/tmp/cove-dockerd}"
SOCK="$DIR/docker.sock"
ENV_FILE="$DIR/env"

log() { printf '[test-env] %s\n' "$*"; }
die() { log "ERROR: $*" >&2; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

t_all="$(now)"
[ "$(id -u)" -eq 0 ] || die "run as root (apt-get and dockerd need it)"

# --- 1. packages ------------------------------------------------------------
need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if ! { command -v busybox >/dev/null 2>&1 && ! ldd "$(command -v busybox)" >/dev/null 2>&1; }; then
  need+=(busybox-static)
fi
# The web UI: node + npm build its assets; Debian's chromium runs the browser tests.
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# deploy/systemd/ is checked with systemd-analyze and systemd-sysusers (tests/tests/deploy.rs).
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
# The email notification tests receive mail with a real SMTP server (server/tests/notify_email.rs).
# Debian's python3 (/usr/bin), where the package installs; pyenv's python3 may come first on PATH.
/usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1 || need+=(python3-aiosmtpd)
# SSH into environments is tested with Debian's OpenSSH client (cli/tests/ssh.rs: ssh, sftp,
# scp, ssh-keygen), rsync over it, and its window resizes under tmux.
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
command -v rsync >/dev/null 2>&1 || need+=(rsync)
command -v tmux >/dev/null 2>&1 || need+=(tmux)
# The Kubernetes backend's test runs a real one-node cluster (scripts/k8s-cluster.sh): its node
# runtime, CNI plugins and the tools kube-proxy and kube-router call come from Debian.
command -v containerd >/dev/null 2>&1 || need+=(containerd)
command -v runc >/dev/null 2>&1 || need+=(runc)
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
command -v ipset >/dev/null 2>&1 || need+=(ipset)
command -v conntrack >/dev/null 2>&1 || need+=(conntrack)
if [ "${#need[@]}" -gt 0 ]; then
  t0="$(now)"
  log "apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  log "packages installed in $(elapsed "$t0")s"
else
  log "packages present (dockerd, debootstrap, busybox-static, node, npm, chromium, systemd, aiosmtpd, ssh, rsync, tmux, containerd, runc, CNI plugins, ipset, conntrack)"
fi
# The docker CLI may come from elsewhere (/usr/local/bin); docker.io brings one otherwise.
command -v docker >/dev/null 2>&1 || die "no docker CLI on PATH after installing docker.io"

# moto's server is the STS stand-in of the broker tests (pre-installed on this machine kind).
if ! command -v moto_server >/dev/null 2>&1; then
  log "pip install moto[server]"
  python3 -m pip install -q 'moto[server]' >/dev/null
fi
# schemathesis is the API fuzzer of server/tests/api_fuzz.rs (reads the server's OpenAPI document).
if ! python3 -m schemathesis.cli --version >/dev/null 2>&1; then
  log "pip install schemathesis"
  python3 -m pip install -q schemathesis >/dev/null
fi

# --- 2. engine ----------------------------------------------------------------
answers() { DOCKER_HOST="$1" timeout 10 docker version >/dev/null 2>&1; }
# Running and not a zombie (a killed dockerd may linger unreaped for a moment).
alive() {
  local st
  st="$(ps -o stat= -p "$1" 2>/dev/null)" || return 1
  [ -n "$st" ] && [ "${st:0:1}" != Z ] && [ "${st:0:1}" != X ]
}
# wait_for_engine HOST PID: up to 30 s for HOST to answer; gives up early when PID exits.
wait_for_engine() {
  local deadline=$((SECONDS + 30))
  while [ "$SECONDS" -lt "$deadline" ]; do
    answers "$1" && return 0
    # $2 is dockerd itself (setsid execs it in place); the pidfile covers the other case.
    alive "$2" || { [ -f "$DIR/pid" ] && alive "$(cat "$DIR/pid")"; } || return 1
    sleep 0.1
  done
  answers "$1"
}

host=""
if [ -n "${DOCKER_HOST:-}" ] && answers "$DOCKER_HOST"; then
  host="$DOCKER_HOST"
elif [ -S /var/run/docker.sock ] && answers unix:///var/run/docker.sock; then
  host="unix:///var/run/docker.sock"
elif [ -S "$SOCK" ] && answers "unix://$SOCK"; then
  host="unix://$SOCK"
fi

if [ -z "$host" ]; then
  mkdir -p "$DIR"
  # A dockerd that was killed leaves its pidfile behind and a new one refuses to start.
  # A live (non-zombie) dockerd from that pidfile may still be starting: give it time.
  if [ -f "$DIR/pid" ]; then
    old_pid="$(cat "$DIR/pid" 2>/dev/null || true)"
    if [ -n "$old_pid" ] && alive "$old_pid" && [ "$(ps -o comm= -p "$old_pid")" = dockerd ]; then
      log "dockerd pid $old_pid exists but does not answer yet; waiting up to 30 s"
      wait_for_engine "unix://$SOCK" "$old_pid" \
        || die "dockerd pid $old_pid (pidfile $DIR/pid) does not answer on $SOCK; stop it and re-run"
      host="unix://$SOCK"
    else
      rm -f "$DIR/pid"
    fi
  fi
fi

if [ -n "$host" ]; then
  log "docker engine answers at $host"
else
  t0="$(now)"
  rm -f "$SOCK"
  # Same for the containerd that dockerd supervises: a stale (or zombie) pid makes the
  # new dockerd wait for a containerd that is gone, then fail after 15 s.
  cpid_file="$DIR/exec/containerd/containerd.pid"
  if [ -f "$cpid_file" ] && ! alive "$(cat "$cpid_file" 2>/dev/null || echo 0)"; then
    rm -f "$cpid_file"
  fi
  # Networks of environments and jobs come from the engine's address pools. Docker's default
  # pools hold about 30 bridge networks and skip every range a host interface already uses —
  # stale bridges of an engine that was killed, another engine's — so a busy host can run out
  # ("could not find an available, non-overlapping IPv4 address pool"). This engine gets a
  # range of its own: 256 networks of /24 (the tests' extra dockerds use 10.201/10.230, the
  # Kubernetes test 10.244 and 10.96).
  pool="${COVE_DOCKERD_ADDRESS_POOL:-base=10.213.0.0/16,size=24}"
  log "starting dockerd (socket $SOCK, data $DIR/data, log $DIR/log, address pool $pool)"
  # setsid + nohup: the engine outlives this script and the shell that ran it.
  setsid nohup dockerd \
    --host "unix://$SOCK" \
    --data-root "$DIR/data" \
    --exec-root "$DIR/exec" \
    --pidfile "$DIR/pid" \
    --default-address-pool "$pool" \
    >"$DIR/log" 2>&1 </dev/null &
  dockerd_pid=$!
  host="unix://$SOCK"
  if ! wait_for_engine "$host" "$dockerd_pid"; then
    tail -n 30 "$DIR/log" >&2 || true
    die "dockerd did not come up on $SOCK within 30 s (log: $DIR/log)"
  fi
  log "dockerd up in $(elapsed "$t0")s"
fi

mkdir -p "$DIR"
printf 'export DOCKER_HOST=%q\n' "$host" >"$ENV_FILE.tmp"
mv "$ENV_FILE.tmp" "$ENV_FILE"
export DOCKER_HOST="$host"

# --- 3. images ----------------------------------------------------------------
bash "$ROOT/images/build.sh"

log "ready in $(elapsed "$t_all")s — DOCKER_HOST=$DOCKER_HOST (also in $ENV_FILE)"
