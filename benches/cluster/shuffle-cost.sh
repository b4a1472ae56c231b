#!/usr/bin/env bash
# The shuffle's cost (issue 16): the W1 job (per-user 1-minute windows of
# count, sum and max over the non-view clicks) over N events in a 2-shard
# Kinesis stream, run by one process without a shuffle, then by 2 workers
# of a cluster job (16 key groups, 2 shuffle shards) on this machine.
# Reports events per CPU-second of kflow (workers and their parts; the
# emulators' CPU is not counted) and checks both runs wrote the same rows.
#
#   benches/cluster/shuffle-cost.sh [EVENTS]    (default 200000)
#   SHUFFLE_SHARDS=16 benches/cluster/shuffle-cost.sh   (default 2)
#
# Needs a release build (cargo build --release -p kflow), the emulators
# from npm (npm ci) and a W1 event file from kflow-bench (target/bench).
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-200000}
ROOT=$PWD
KFLOW=$ROOT/target/release/kflow
EVENTS=$(ls target/bench/events-*-100000.jsonl 2>/dev/null | head -1)
[[ -x $KFLOW ]] || { echo "build kflow first: cargo build --release -p kflow" >&2; exit 1; }
[[ -n $EVENTS ]] || { echo "no W1 event file: run target/release/kflow-bench --workloads W1 once" >&2; exit 1; }
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT
head -n "$N" "$EVENTS" > "$WORK/events.jsonl"

node node_modules/kinesalite/cli.js --port 14567 --createStreamMs 0 --deleteStreamMs 0 \
  --updateStreamMs 0 --shardLimit 1000 > "$WORK/kinesalite.log" 2>&1 &
node node_modules/dynalite/cli.js --host 127.0.0.1 --port 14568 --createTableMs 0 > "$WORK/dynalite.log" 2>&1 &
mkdir -p "$WORK/s3"
node node_modules/s3rver/bin/s3rver.js -d "$WORK/s3" -a 127.0.0.1 -p 14569 --silent \
  --configure-bucket kflow-bench --allow-mismatched-signatures > "$WORK/s3rver.log" 2>&1 &
for port in 14567 14568 14569; do
  for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done
export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_REGION=us-east-1
export AWS_ENDPOINT_URL_S3=http://127.0.0.1:14569 AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:14568
KINESIS=http://127.0.0.1:14567
"$KFLOW" produce --stream clicks --partition-key user_id --endpoint "$KINESIS" \
  --create-shards 2 --quiet "$WORK/events.jsonl"

job() { # job NAME OUT [CLUSTER]
  cat <<TOML
[job]
name = "$1"
checkpoint_interval = "10s"
checkpoint_store = "s3://kflow-bench/$1"
${3:-}
[sources.clicks]
type = "kinesis"
stream = "clicks"
endpoint = "$KINESIS"
start_at = "trim_horizon"
stop_at = "latest"
event_time = { field = "ts" }
watermark = { max_out_of_orderness = "5s" }

[filters.checkouts]
input = "clicks"
where = "type != 'product_view'"

[windows.per_user]
input = "checkouts"
key = ["user_id"]
tumbling = "1m"
aggregates = { events = "count()", revenue = "sum(amount)", top = "max(amount)" }

[sinks.result]
input = "per_user"
type = "file"
path = "$2"
TOML
}

# CPU seconds (user + system, waited-for children included) of a command.
cpu() { # cpu NAME COMMAND...
  local name=$1; shift
  if ! /usr/bin/time -f "%U %S" -o "$WORK/time-$name" "$@" > /dev/null 2> "$WORK/$name.log"; then
    echo "$name failed:" >&2; tail -20 "$WORK/$name.log" >&2; return 1
  fi
  awk '{print $1 + $2}' "$WORK/time-$name"
}

mkdir -p "$WORK/one" "$WORK/w1" "$WORK/w2" "$WORK/out"
job one "$WORK/out/one.jsonl" > "$WORK/one/job.toml"
CLUSTER="[job.cluster]
leases = \"dynamodb://bench-leases\"
key_groups = 16
shuffle_stream = \"clicks-shuffle\"
shuffle_shards = ${SHUFFLE_SHARDS:-2}
failover_timeout = \"3s\""
job cluster "$WORK/out/cluster.jsonl" "$CLUSTER" > "$WORK/w1/job.toml"
cp "$WORK/w1/job.toml" "$WORK/w2/job.toml"

ONE=$(cd "$WORK/one" && cpu one "$KFLOW" run job.toml -q)
START=$(date +%s.%N)
(cd "$WORK/w1" && cpu w1 "$KFLOW" run job.toml -q --worker-id w1 > "$WORK/cpu1") &
P1=$!
(cd "$WORK/w2" && cpu w2 "$KFLOW" run job.toml -q --worker-id w2 > "$WORK/cpu2") &
P2=$!
wait $P1 $P2
END=$(date +%s.%N)
TWO=$(awk '{s += $1} END {print s}' "$WORK/cpu1" "$WORK/cpu2")

sort "$WORK/out/one.jsonl" > "$WORK/a"
cat "$WORK"/out/cluster.group-*.jsonl | sort > "$WORK/b"
if ! cmp -s "$WORK/a" "$WORK/b"; then
  echo "the cluster's rows differ from one process's" >&2; exit 1
fi
awk -v n="$N" -v one="$ONE" -v two="$TWO" -v rows="$(wc -l < "$WORK/a")" -v wall="$(echo "$END - $START" | bc)" 'BEGIN {
  printf "events %d, rows %d (equal)\n", n, rows
  printf "one process:          %6.2f CPU-s  %9.0f events/CPU-s\n", one, n / one
  printf "2 workers + shuffle:  %6.2f CPU-s  %9.0f events/CPU-s  (%.1f s wall)\n", two, n / two, wall
  printf "shuffle cost: %.2fx the CPU per event of one process\n", two / one
}'
