#!/usr/bin/env bash
# Benchmark (issue 20): environment create → running on Kubernetes through Cove (a standalone
# cove-agent with the Kubernetes backend) beside `kubectl apply` of the same objects →
# `kubectl wait --for=condition=Ready`, on the one-node cluster of scripts/k8s-cluster.sh.
# Target: Cove <= 1.3x kubectl at p50. Details: server/tests/env_k8s_agent.rs
# `bench_create_on_kubernetes_vs_kubectl_apply`, docs/benchmarks.md "Kubernetes".
#
#   bash scripts/bench-k8s.sh [ROUNDS]           (root; DOCKER_HOST with the images)
#   PROFILE=release bash scripts/bench-k8s.sh 5  (the agent and the test in a release build)
set -euo pipefail
ROUNDS="${1:-5}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[ -n "${DOCKER_HOST:-}" ] || { source "${COVE_DOCKERD_DIR:-/tmp/cove-dockerd}/env"; export DOCKER_HOST; }
K8S=scripts/k8s-cluster.sh
export COVE_KUBECTL="${COVE_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cove/k8s/v${K8S_VERSION:-1.34.4}}/bin/kubectl"
PROFILE="${PROFILE:-debug}"
FLAGS=(); [ "$PROFILE" = release ] && FLAGS=(--release)
bash "$K8S" build
cargo test -q "${FLAGS[@]}" -p cove-server --test env_k8s_agent --no-run
cargo build -q "${FLAGS[@]}" -p cove-agent --bin cove-agent
trap 'bash "$K8S" stop >/dev/null 2>&1 || true' EXIT
out=$(bash "$K8S" start)
eval "$(printf '%s\n' "$out" | grep '^export KUBECONFIG=')"
export KUBECONFIG
bash "$K8S" import cove/busybox:latest cove/echo-server:latest >/dev/null
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, profile $PROFILE, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
ROUNDS="$ROUNDS" CI=true cargo test -q "${FLAGS[@]}" -p cove-server --test env_k8s_agent \
  bench_create_on_kubernetes_vs_kubectl_apply -- --ignored --nocapture 2>&1 | grep -E '^(k8s|\||Cove)'
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
