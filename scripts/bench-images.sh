#!/usr/bin/env bash
# Container start latency per image: `docker run --rm IMAGE true`, N runs each
# (default 10) after one untimed warm-up, prints min / p50 / p95 / max in ms as a
# markdown table. Needs the engine and images from scripts/test-env.sh.
#
#   bash scripts/bench-images.sh [RUNS] [IMAGE...]
set -euo pipefail

RUNS="${1:-10}"
shift || true
IMAGES=("$@")
[ "${#IMAGES[@]}" -gt 0 ] || IMAGES=(cove/busybox:latest cove/base:bookworm cove/universal:latest)

if [ -z "${DOCKER_HOST:-}" ] && [ -f "${COVE_DOCKERD_DIR:-/tmp/cove-dockerd}/env" ]; then
  # shellcheck disable=SC1091
  source "${COVE_DOCKERD_DIR:-/tmp/cove-dockerd}/env"
fi
docker version >/dev/null 2>&1 || { echo "no docker engine: run scripts/test-env.sh" >&2; exit 1; }

# percentile P of the sorted numbers in file $1 (nearest-rank)
pct() { awk -v p="$2" '{ a[NR] = $1 } END { i = int((p / 100) * NR + 0.999999); if (i < 1) i = 1; print a[i] }' "$1"; }

echo "engine: $(docker version --format '{{.Server.Version}}'), $(nproc) cores, runs per image: $RUNS"
echo
echo "| image | size | min ms | p50 ms | p95 ms | max ms |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT
for img in "${IMAGES[@]}"; do
  docker image inspect "$img" >/dev/null 2>&1 || { echo "| $img | missing | | | | |"; continue; }
  docker run --rm "$img" true >/dev/null # warm-up
  : >"$tmp"
  for _ in $(seq 1 "$RUNS"); do
    t0=$(date +%s%N)
    docker run --rm "$img" true >/dev/null
    t1=$(date +%s%N)
    echo $(((t1 - t0) / 1000000)) >>"$tmp"
  done
  sort -n -o "$tmp" "$tmp"
  size="$(docker image inspect -f '{{.Size}}' "$img" | awk '{ printf "%.0f MB", $1 / 1e6 }')"
  echo "| \`$img\` | $size | $(head -n1 "$tmp") | $(pct "$tmp" 50) | $(pct "$tmp" 95) | $(tail -n1 "$tmp") |"
done
