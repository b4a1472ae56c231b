#!/usr/bin/env bash
# The README's measured example: generate N events, run W1 and W2 on DuckDB,
# Flink (heap) and Flink (RocksDB) one after another, and check that every
# system's rows agree with DuckDB's and with the plain-Python reference.
#
#   bash benches/peers/run_example.sh [EVENTS] [USERS] [WORKLOADS]
#   (defaults: 200000 100000 "W1 W2"; needs setup.sh first)
#
# Writes data/ and out/ under benches/peers (both gitignored); prints one
# result line per run, then the comparisons. Exits non-zero if any differ.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="$here/.venv/bin/python"
[ -x "$py" ] || { echo "run_example.sh: error: no venv at $here/.venv: run $here/setup.sh first" >&2; exit 1; }

events="${1:-200000}"
users="${2:-100000}"
workloads="${3:-W1 W2}"
data="$here/data/events-$events-$users.jsonl"
out="$here/out"
mkdir -p "$here/data" "$out"

if [ ! -f "$data" ]; then
    echo "# generating $events events over $users users -> $data" >&2
    "$py" "$here/gen_events.py" --events "$events" --users "$users" --seed 1 --output "$data"
fi

status=0
for w in $workloads; do
    "$py" "$here/duckdb_run.py" --workload "$w" --input "$data" --output "$out/duckdb-$w.jsonl"
    for state in heap rocksdb; do
        "$py" "$here/flink_run.py" --workload "$w" --input "$data" --output "$out/flink-$state-$w.jsonl" \
            --state "$state" --checkpoint-interval 10s 2>"$out/flink-$state-$w.stderr" \
            || { echo "run_example.sh: flink-$state $w failed; see $out/flink-$state-$w.stderr" >&2; exit 1; }
    done
done
for w in $workloads; do
    if [ "$events" -le 1000000 ]; then
        "$py" "$here/reference_run.py" --workload "$w" --input "$data" --output "$out/reference-$w.jsonl" >/dev/null
        others="flink-heap flink-rocksdb reference"
    else
        others="flink-heap flink-rocksdb"  # the reference is too slow past 1M events
    fi
    for other in $others; do
        echo "# compare $w: duckdb vs $other"
        "$py" "$here/compare.py" "$out/duckdb-$w.jsonl" "$out/$other-$w.jsonl" | tail -n 3 || status=1
    done
done
exit $status
