#!/usr/bin/env bash
# Baseline for the environment benchmark: the same Docker calls Cove makes for
# devfiles/examples/app-with-dynamodb.yaml, as a plain shell script
# (volumes, infra container with a published port, two containers joined to
# its network namespace; restart = remove the containers and create them
# again). Prints p50/p95 over RUNS runs.
#   bash scripts/bench-env-raw.sh [RUNS]
set -euo pipefail
RUNS="${1:-10}"
KEEP='trap "exit 0" TERM INT; while :; do sleep 3600 & wait $!; done'

now() { date +%s%N; }
up() {
  local e="$1"
  docker volume create "raw-$e-projects" >/dev/null
  docker volume create "raw-$e-data" >/dev/null
  docker run -d --name "raw-$e-infra" -p 127.0.0.1::8000 --pids-limit 64 -m 32m --security-opt no-new-privileges \
    --entrypoint /bin/sh cove/busybox:latest -c "$KEEP" >/dev/null
  docker run -d --name "raw-$e-app" --network "container:raw-$e-infra" -v "raw-$e-projects:/projects" -w /projects \
    -e IS_LOCAL=true -m 2g --pids-limit 4096 --security-opt no-new-privileges \
    --entrypoint /bin/sh cove/universal:latest -c "$KEEP" >/dev/null
  docker run -d --name "raw-$e-db" --network "container:raw-$e-infra" -v "raw-$e-data:/data" \
    -m 512m --pids-limit 4096 --security-opt no-new-privileges \
    --entrypoint dynalite cove/dynamodb-local:latest --port 8000 --createTableMs 0 --path /data >/dev/null
}
down_containers() { docker rm -f "raw-$1-app" "raw-$1-db" "raw-$1-infra" >/dev/null; }
pct() { sort -n | awk -v p="$1" '{a[NR]=$1} END {i=int((NR-1)*p+0.5)+1; printf "%.0f", a[i]/1e6}'; }

create=(); restart=()
for i in $(seq "$RUNS"); do
  e="b$$-$i"
  t0=$(now); up "$e"; t1=$(now)
  down_containers "$e"; up "$e"; t2=$(now)
  create+=($((t1 - t0))); restart+=($((t2 - t1)))
  down_containers "$e"; docker volume rm "raw-$e-projects" "raw-$e-data" >/dev/null
done
echo "| operation | runs | p50 ms | p95 ms |"
echo "|---|---|---|---|"
echo "| raw docker create → running | $RUNS | $(printf '%s\n' "${create[@]}" | pct 0.5) | $(printf '%s\n' "${create[@]}" | pct 0.95) |"
echo "| raw docker warm restart | $RUNS | $(printf '%s\n' "${restart[@]}" | pct 0.5) | $(printf '%s\n' "${restart[@]}" | pct 0.95) |"
