# Shell functions shared by the environment benchmarks: the raw docker calls
# that correspond to what Cove does for devfiles/examples/app-with-dynamodb.yaml.
# Source it:  . scripts/raw-env.sh
RAW_KEEP='trap "exit 0" TERM INT; while :; do sleep 3600 & wait $!; done'

now() { date +%s%N; }
# p50/p95 of nanosecond samples on stdin, printed in ms
pct() { sort -n | awk -v p="$1" '{a[NR]=$1} END {i=int((NR-1)*p+0.5)+1; printf "%.0f", a[i]/1e6}'; }

# volumes, the infra container (published port), app + db in its namespace (concurrently),
# app and db under Docker's init as Cove runs containers whose command the devfile chose
raw_up() {
  local e="$1"
  docker volume create "raw-$e-projects" >/dev/null
  docker volume create "raw-$e-data" >/dev/null
  docker run -d --name "raw-$e-infra" -p 127.0.0.1::8000 --pids-limit 64 -m 32m --security-opt no-new-privileges \
    --entrypoint /bin/sh cove/busybox:latest -c "$RAW_KEEP" >/dev/null
  docker run -d --init --name "raw-$e-app" --network "container:raw-$e-infra" -v "raw-$e-projects:/projects" -w /projects \
    -e IS_LOCAL=true -m 2g --pids-limit 4096 --security-opt no-new-privileges \
    --entrypoint /bin/sh cove/universal:latest -c "$RAW_KEEP" >/dev/null &
  local app=$!
  docker run -d --init --name "raw-$e-db" --network "container:raw-$e-infra" -v "raw-$e-data:/data" \
    -m 512m --pids-limit 4096 --security-opt no-new-privileges \
    --entrypoint dynalite cove/dynamodb-local:latest --port 8000 --createTableMs 0 --path /data >/dev/null &
  local db=$!
  wait "$app" "$db"
}
raw_down() { docker rm -f "raw-$1-app" "raw-$1-db" >/dev/null; docker rm -f "raw-$1-infra" >/dev/null; }
raw_clean() { docker volume rm "raw-$1-projects" "raw-$1-data" >/dev/null; }
