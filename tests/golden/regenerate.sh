#!/bin/sh
# Rewrites every golden case's expected files with the independent
# reference (tests/golden/reference.py). Review the diff before committing:
# a changed expected file means the reference or the case changed.
# `regenerate.sh --check` only reports stale files (exit 1), e.g. for CI.
set -eu
cd "$(dirname "$0")"
mode=--write
[ "${1:-}" = --check ] && mode=--check
cases=$(for job in */job.toml; do dirname "$job"; done)
# shellcheck disable=SC2086 # one argument per case folder
exec python3 reference.py "$mode" $cases
