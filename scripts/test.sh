#!/usr/bin/env bash
# The one test command: environment (dockerd + images), then fmt, clippy, tests and the
# browser tests of the web UI.
#   bash scripts/test.sh
# Runs every step even when an earlier one fails, prints a summary, exits non-zero
# if any step failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }'; }
banner() { printf '\n==> %s\n' "$*"; }

t_all="$(now)"
# A cold build of the workspace's test binaries needs about 18 GB with CI=true (no incremental
# caches; 2026-12-07) and about 30 GB without; say so up front, since a
# full disk shows up later only as a linker's "Bus error".
free_gb=$(df -Pk . | awk 'NR==2 { printf "%d", $4 / 1048576 }')
echo "free disk: ${free_gb} GB"
[ "$free_gb" -ge 30 ] || echo "WARNING: less than 30 GB free; a cold build of the tests may fail with a full disk"
banner "scripts/test-env.sh"
bash scripts/test-env.sh
# shellcheck disable=SC1091
source "${COVE_DOCKERD_DIR:-/tmp/cove-dockerd}/env"
export DOCKER_HOST
echo "DOCKER_HOST=$DOCKER_HOST"

banner "scripts/setup-postgres.sh"
# A throwaway PostgreSQL on 127.0.0.1: the store tests run against SQLite and PostgreSQL.
eval "$(bash scripts/setup-postgres.sh)"
export COVE_TEST_POSTGRES_URL

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# CI builds a clean clone once: incremental compilation's caches there only cost disk (about
# 11 GB for this workspace's tests; the whole target peaked at 17.5 GiB without them) and time
if [ "${CI:-}" = true ]; then
  export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
fi
failed=()
results=()
step() {
  local name="$1" t0 rc=0
  shift
  banner "$name"
  t0="$(now)"
  "$@" || rc=$?
  if [ "$rc" -eq 0 ]; then
    results+=("ok     $(elapsed "$t0")s  $name")
  else
    results+=("FAILED $(elapsed "$t0")s  $name (exit $rc)")
    failed+=("$name")
  fi
}

step "cargo fmt --all -- --check" cargo fmt --all -- --check
step "cargo clippy --workspace --all-targets -- -D warnings" \
  cargo clippy --workspace --all-targets -- -D warnings
# --no-fail-fast: one failing test binary must not hide the others; the summary names
# every binary that failed (from cargo's own report, kept in target/cargo-test.log).
cargo_test() {
  local rc=0
  mkdir -p target
  cargo test --workspace --no-fail-fast 2>&1 | tee target/cargo-test.log || rc=$?
  if [ "$rc" -ne 0 ]; then
    failed_bins+=("$(grep -E '^ {4}(-p |`)' target/cargo-test.log | sed 's/^ *//' || true)")
  fi
  return "$rc"
}
failed_bins=()
step "cargo test --workspace --no-fail-fast" cargo_test
# The web UI in real headless Chromium against a real server + Docker (screenshots:
# target/ui-screenshots/).
ui_test() {
  local rc=0
  mkdir -p target
  bash scripts/test-ui.sh 2>&1 | tee target/ui-test.log || rc=$?
  return "$rc"
}
step "scripts/test-ui.sh (browser tests)" ui_test
# The Kubernetes backend on a real one-node cluster built from Go modules (cached by version
# in ~/.cache/cove/k8s; cold build ~13 min). Last, so the cluster's kube-proxy and kube-router
# rules never overlap the Docker tests (docs/kubernetes.md).
step "scripts/k8s-test.sh (Kubernetes backend)" bash scripts/k8s-test.sh

banner "summary ($(elapsed "$t_all")s total)"
printf '  %s\n' "${results[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "FAILED: ${failed[*]}"
  if [ "${#failed_bins[@]}" -gt 0 ] && [ -n "${failed_bins[*]}" ]; then
    echo "failed test binaries:"
    printf '%s\n' "${failed_bins[@]}" | sed 's/^/  /'
    # The first lines of each failing test's report: CI keeps only the log's tail.
    echo "why (first lines of each failure, target/cargo-test.log):"
    awk '/^---- .* stdout ----$/ { n = 12 } n > 0 { print "  " $0; n-- }' target/cargo-test.log | head -150
  fi
  if [[ " ${failed[*]} " == *"browser tests"* ]] && [ -f target/ui-test.log ]; then
    echo "why (node's report of the failing browser tests, target/ui-test.log):"
    sed -n '/failing tests:/,$p' target/ui-test.log | grep -Ev '^ *at .*node:(internal|async_hooks)' | head -120 | sed 's/^/  /'
  fi
  exit 1
fi
echo "all steps passed"
