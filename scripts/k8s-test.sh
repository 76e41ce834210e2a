#!/usr/bin/env bash
# The Kubernetes backend's tests on a real one-node cluster (docs/kubernetes.md):
#   scripts/k8s-cluster.sh build    (cached by version: instant when built)
#   scripts/k8s-cluster.sh start    (KUBECONFIG from its output)
#   scripts/k8s-cluster.sh import   cove/busybox cove/echo-server cove/universal, then
#                                   cove/dynamodb-local (from $DOCKER_HOST)
#   scripts/k8s-cluster.sh smoke    (a cluster failing it is diagnosed and started once more)
#   cargo test -p cove-agent --test k8s_env -- --ignored
#   cargo test -p cove-agent --test k8s_jobs -- --ignored
#   cargo test -p cove-server --test env_k8s_agent -- --ignored --skip bench_   (a cove-agent with backend: kubernetes; the benchmark is scripts/bench-k8s.sh)
#   scripts/k8s-cluster.sh diagnose (after a failed test: nodes, Pods, events, error lines)
#   scripts/k8s-cluster.sh stop     (always, also after a failure)
# Needs root and a Docker engine with the images (scripts/test-env.sh). Exits with the
# first failure's status. Called by scripts/test.sh after the browser tests, so the
# cluster's kube-proxy/kube-router rules never overlap the Docker tests.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
K8S=scripts/k8s-cluster.sh
log() { printf '[k8s-test] %s\n' "$*"; }

[ -n "${DOCKER_HOST:-}" ] || { log "DOCKER_HOST is not set (source the env of scripts/test-env.sh)"; exit 1; }

# the test's kubectl: the one the cluster script built
export COVE_KUBECTL="${COVE_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cove/k8s/v${K8S_VERSION:-1.34.4}}/bin/kubectl"

t0=$SECONDS
bash "$K8S" build
log "build: $((SECONDS - t0)) s"

# compile before the cluster is up (its minutes are shared with everything else)
t=$SECONDS
cargo test -p cove-agent --test k8s_env --test k8s_jobs --no-run
cargo test -p cove-server --test env_k8s_agent --no-run
cargo build -p cove-agent --bin cove-agent
log "compile: $((SECONDS - t)) s"

stopped=0
stop_cluster() {
  [ "$stopped" = 1 ] && return 0
  stopped=1
  local t=$SECONDS
  bash "$K8S" stop || log "stop failed"
  log "stop: $((SECONDS - t)) s"
}
trap stop_cluster EXIT

# start, import, smoke (a Pod runs, a PVC keeps a file, a Service answers, a NetworkPolicy
# fences): the tests only ever see a cluster that works. A cluster that fails its smoke test is
# described (what CI's log keeps), stopped, and started once more.
bring_up() {
  local t=$SECONDS out
  out=$(bash "$K8S" start) || return 1
  printf '%s\n' "$out"
  eval "$(printf '%s\n' "$out" | grep '^export KUBECONFIG=')"
  export KUBECONFIG
  log "start: $((SECONDS - t)) s"
  t=$SECONDS
  bash "$K8S" import cove/busybox:latest cove/echo-server:latest || return 1
  log "import: $((SECONDS - t)) s"
  # cove/universal (k8s_jobs' npm job, the app-with-dynamodb example) and cove/dynamodb-local
  t=$SECONDS
  bash "$K8S" import cove/universal:latest cove/dynamodb-local:latest || return 1
  log "import cove/universal cove/dynamodb-local: $((SECONDS - t)) s"
  t=$SECONDS
  bash "$K8S" smoke cove/busybox:latest || return 1
  log "smoke: $((SECONDS - t)) s"
}
if ! bring_up; then
  log "the cluster failed to come up or its smoke test: diagnosis, then one more start"
  bash "$K8S" diagnose || true
  bash "$K8S" stop || log "stop failed"
  bring_up || { bash "$K8S" diagnose || true; log "the cluster failed twice"; exit 1; }
fi

t=$SECONDS
rc=0
cargo test -p cove-agent --test k8s_env -- --ignored || rc=$?
log "cargo test -p cove-agent --test k8s_env: $((SECONDS - t)) s (exit $rc)"

# workflow jobs as Pods fenced by a NetworkPolicy (same images; the gateway on the node's address)
t=$SECONDS
rc_jobs=0
cargo test -p cove-agent --test k8s_jobs -- --ignored || rc_jobs=$?
log "cargo test -p cove-agent --test k8s_jobs: $((SECONDS - t)) s (exit $rc_jobs)"
[ "$rc" != 0 ] || rc=$rc_jobs

# environments through a standalone cove-agent with the Kubernetes backend (server in process)
t=$SECONDS
rc2=0
cargo test -p cove-server --test env_k8s_agent -- --ignored --test-threads=1 --skip bench_ || rc2=$?
log "cargo test -p cove-server --test env_k8s_agent: $((SECONDS - t)) s (exit $rc2)"
[ "$rc" != 0 ] || rc=$rc2
# a failed test: the cluster's own account of it, last in the log (where CI's excerpt looks)
[ "$rc" = 0 ] || bash "$K8S" diagnose || true
stop_cluster
log "total: $((SECONDS - t0)) s"
exit "$rc"
