#!/bin/sh
# A stand-in for the `kflow` binary that answers `kflow run job.toml` with
# the reference's outputs. It tests the Rust harness, not kflow:
#   KFLOW_BIN=$PWD/tests/golden/reference-kflow.sh cargo test -p kflow-tests --test golden
# must pass (and breaking an expected file must make it fail).
set -eu
[ "$#" -eq 2 ] && [ "$1" = run ] || { echo "usage: $0 run JOB_FILE" >&2; exit 2; }
exec python3 "$(dirname "$0")/reference.py" --run "$2"
