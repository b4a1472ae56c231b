#!/usr/bin/env bash
# Sets up the peer systems kflow is benchmarked against: DuckDB and PyFlink
# (Apache Flink in local mini-cluster mode), in a virtualenv at
# benches/peers/.venv, plus a Java runtime for Flink.
#
# Idempotent: a second run with unchanged requirements only re-checks.
# Environment:
#   PYTHON=python3.11   interpreter for the venv (default: python3.11, else python3)
#   PEERS_FORCE=1       reinstall even if the venv is up to date
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
stamp="$venv/.kflow-peers-stamp"

die() { echo "setup.sh: error: $*" >&2; exit 1; }
log() { echo "setup.sh: $*"; }
trap 'echo "setup.sh: error: command failed at line $LINENO: $BASH_COMMAND" >&2' ERR

# --- Java (Flink 2.x runs on Java 11, 17 or 21) -----------------------------
java_major() {
    # `java -version` prints e.g.: openjdk version "17.0.15" 2025-04-15
    java -version 2>&1 | sed -n 's/.* version "\([0-9]*\)\(\.[^"]*\)\{0,1\}".*/\1/p' | head -n1
}

if ! command -v java >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        log "java not found; installing openjdk-17-jre-headless with apt-get"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y openjdk-17-jre-headless
    else
        die "java not found. Flink needs Java 11, 17 or 21: install it (Debian: sudo apt-get install -y openjdk-17-jre-headless) or put it on PATH"
    fi
fi
jmajor="$(java_major)"
case "$jmajor" in
    11|17|21) ;;
    *) die "java major version '${jmajor:-unknown}' is not supported by Flink 2.x (need 11, 17 or 21): $(java -version 2>&1 | head -n1)" ;;
esac
log "java: $(java -version 2>&1 | head -n1)"

# --- Python virtualenv ------------------------------------------------------
py="${PYTHON:-}"
if [ -z "$py" ]; then
    if command -v python3.11 >/dev/null 2>&1; then py=python3.11; else py=python3; fi
fi
command -v "$py" >/dev/null 2>&1 || die "python interpreter '$py' not found (set PYTHON=...)"
pyver="$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
case "$pyver" in
    3.9|3.10|3.11|3.12) ;;
    *) die "python $pyver: apache-flink 2.2 ships wheels for CPython 3.9-3.12 only (set PYTHON=...)" ;;
esac

reqs=("$here/requirements.txt")
[ -f "$here/constraints.txt" ] && reqs+=("$here/constraints.txt")
want="$(cat "${reqs[@]}" | sha256sum | cut -c1-16) py$pyver"
if [ -z "${PEERS_FORCE:-}" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
    && "$venv/bin/python" -c 'import duckdb, pyflink' >/dev/null 2>&1; then
    log "venv up to date: $venv"
else
    start=$(date +%s)
    if [ ! -x "$venv/bin/python" ]; then
        log "creating venv with $py ($pyver) at $venv"
        "$py" -m venv "$venv" || die "'$py -m venv' failed (Debian: apt-get install python3-venv)"
    fi
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    cons=()
    [ -f "$here/constraints.txt" ] && cons=(-c "$here/constraints.txt")
    log "installing requirements (about 0.9 GB: Flink jars, Beam, pyarrow, pandas; 1-3 minutes)"
    "$venv/bin/python" -m pip install --quiet -r "$here/requirements.txt" "${cons[@]}"
    echo "$want" > "$stamp"
    log "install took $(( $(date +%s) - start )) s"
fi

# --- Report and smoke check ---------------------------------------------------
"$venv/bin/python" - <<'EOF'
import importlib.metadata as md, os, duckdb, pyflink
for name in ("duckdb", "apache-flink", "apache-flink-libraries", "apache-beam", "pyarrow", "pandas"):
    try:
        print(f"setup.sh: installed {name}=={md.version(name)}")
    except md.PackageNotFoundError:
        raise SystemExit(f"setup.sh: error: {name} is missing from the venv")
lib = os.path.join(os.path.dirname(pyflink.__file__), "lib")
jars = sorted(os.listdir(lib))
if not any(j.startswith("flink-dist") for j in jars):
    raise SystemExit(f"setup.sh: error: no flink-dist jar in {lib}")
print(f"setup.sh: pyflink jars in {lib}: {len(jars)}")
EOF
log "venv size: $(du -sh "$venv" | cut -f1)"
log "ready: run the peers with $venv/bin/python (see README.md)"
