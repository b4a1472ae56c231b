#!/usr/bin/env python3
"""Run a kflow benchmark workload on Apache Flink (PyFlink, local mini-cluster) and write kflow's rows.

    flink_run.py --workload W1|W2|W3 --input events.jsonl --output rows.jsonl \\
                 --state rocksdb|heap [--checkpoint-interval 10s]
    flink_run.py --check         # are PyFlink and Java installed and working? runs no workload

Flink SQL in STREAMING mode (a streaming engine with checkpoints is what is
compared), parallelism 2, on a local mini-cluster inside the PyFlink gateway
JVM:

- source: the filesystem connector, format 'json', bounded (reads the file once
  and ends); `ts` is parsed by the JSON format as TIMESTAMP_LTZ(3) (ISO-8601);
  watermark `ts - INTERVAL '5' SECOND`; `table.local-time-zone` = UTC.
- query: TUMBLE (W1, W3) or HOP (W2) window TVF, GROUP BY window_start,
  window_end, user_id; the times are formatted as RFC 3339 in SQL.
- state: `state.backend.type` rocksdb or hashmap (--state heap), checkpoints
  every --checkpoint-interval into a temporary folder (removed afterwards).
- sink: the filesystem connector, format 'json', into a temporary folder; the
  part files are then concatenated into --output (timed separately).

When the bounded source ends, Flink emits a final watermark that fires every
window; in streaming mode the file sink commits its files with a final
checkpoint, which Flink 2.2 triggers as soon as the sources have ended (measured:
the job ends < 1 s after the source, even with a 10-minute interval), so the job's
end does not wait for the next checkpoint tick.

Stdout: one JSON line
    {"system":"flink-rocksdb"|"flink-heap","workload":"W1","events":N,"seconds":S,
     "job_seconds":J,"startup_seconds":U,"convert_seconds":C,"rows":R,...}
- seconds: wall time from before starting the JVM to the job's end (results committed)
- startup_seconds: starting the gateway JVM, the table environment and the DDL
  (within seconds)
- job_seconds: from execute_sql(INSERT) to the job's end (within seconds); this
  includes SQL planning and the lazy start of the mini-cluster, see phases
- phases: job_seconds split by the timestamps in Flink's log: plan, cluster_start,
  to_source_end (deploy + read/parse/aggregate), after_source_end (fire all
  windows, write, final checkpoint), and checkpoints_completed
- convert_seconds: concatenating the sink's part files into --output (not in seconds)
- jvm_cpu_seconds: CPU time of the Flink JVM (all threads) from its start to the job's end
- peak_rss_mb: peak resident memory of the Flink JVM (VmHWM)
- load_avg_1m_before: the machine's load before the run (another busy process skews timings)
"""

import argparse
import glob
import os
import re
import shutil
import sys
import tempfile
import time

from peers_common import (
    WORKLOADS,
    UsageError,
    check_io,
    count_lines,
    emit,
    load_average,
    run_main,
)

STATE_BACKENDS = {"rocksdb": "rocksdb", "heap": "hashmap"}


def import_pyflink():
    try:
        import pyflink  # noqa: F401
        from pyflink.table import EnvironmentSettings, TableEnvironment  # noqa: F401
        from pyflink.common import Configuration  # noqa: F401
    except ImportError as e:  # never a silent skip
        raise SystemExit(
            f"flink_run.py: error: cannot import pyflink ({e}); run benches/peers/setup.sh "
            "and use benches/peers/.venv/bin/python"
        )


def check_java() -> None:
    java_home = os.environ.get("JAVA_HOME")
    java = os.path.join(java_home, "bin", "java") if java_home else shutil.which("java")
    if not java or not os.path.exists(java):
        raise UsageError(
            "java not found (PyFlink starts a JVM): install Java 11/17/21, e.g. "
            "apt-get install -y openjdk-17-jre-headless, or run benches/peers/setup.sh"
        )


def parse_duration(text: str) -> str:
    """Validate a kflow-style duration (250ms, 10s, 5m) and return it for Flink's config."""
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", text)
    if not m or int(m.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"bad duration {text!r}: expected e.g. 500ms, 10s, 1m")
    n, unit = m.groups()
    return f"{n} {dict(ms='ms', s='s', m='min', h='h')[unit]}"


def sql_string(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def sql_rfc3339(col: str) -> str:
    """A TIMESTAMP(3) column as RFC 3339 UTC text, with .SSS only when the millis are non-zero."""
    return (
        f"CASE WHEN EXTRACT(MILLISECOND FROM {col}) = 0 "
        f"THEN DATE_FORMAT({col}, 'yyyy-MM-dd''T''HH:mm:ss''Z''') "
        f"ELSE DATE_FORMAT({col}, 'yyyy-MM-dd''T''HH:mm:ss.SSS''Z''') END"
    )


def sql_interval(ms: int) -> str:
    """A SQL interval literal; a leading precision wide enough for the value (default is 2 digits)."""
    if ms % 1000 == 0:
        n = ms // 1000
        return f"INTERVAL '{n}' SECOND({max(2, len(str(n)))})"
    return f"INTERVAL '{ms / 1000:.3f}' SECOND({max(2, len(str(ms // 1000)))}, 3)"


def build_statements(workload, input_path: str, sink_dir: str):
    source = f"""
        CREATE TEMPORARY TABLE events (
            event_id STRING,
            user_id STRING,
            `type` STRING,
            amount DOUBLE,
            ts TIMESTAMP_LTZ(3),
            WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
        ) WITH (
            'connector' = 'filesystem',
            'path' = {sql_string('file://' + input_path)},
            'format' = 'json',
            'json.timestamp-format.standard' = 'ISO-8601',
            'json.fail-on-missing-field' = 'false',
            'json.ignore-parse-errors' = 'false'
        )"""
    sink = f"""
        CREATE TEMPORARY TABLE out_rows (
            window_start STRING,
            window_end STRING,
            user_id STRING,
            events BIGINT,
            revenue DOUBLE
        ) WITH (
            'connector' = 'filesystem',
            'path' = {sql_string('file://' + sink_dir)},
            'format' = 'json'
        )"""
    size, slide = sql_interval(workload.size_ms), sql_interval(workload.slide_ms)
    if workload.tumbling:
        tvf = f"TUMBLE(TABLE filtered, DESCRIPTOR(ts), {size})"
    else:
        tvf = f"HOP(TABLE filtered, DESCRIPTOR(ts), {slide}, {size})"
    insert = f"""
        INSERT INTO out_rows
        SELECT {sql_rfc3339('window_start')}, {sql_rfc3339('window_end')}, user_id,
               COUNT(*), SUM(amount)
        FROM (
            SELECT window_start, window_end, user_id, amount
            FROM TABLE({tvf})
        )
        GROUP BY window_start, window_end, user_id"""
    view = "CREATE TEMPORARY VIEW filtered AS SELECT * FROM events WHERE `type` <> 'product_view'"
    return [source, sink, view], insert


def gateway_java_pid():
    """The PyFlink gateway JVM: the java child of this process (None if not found)."""
    me = str(os.getpid())
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me:  # field 4 (ppid) is the second after the ')'
            pid = stat.split("/")[2]
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() == "java":
                        return pid
            except OSError:
                continue
    return None


def cpu_seconds(pid):
    """User + system CPU time of a process so far (all its threads)."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # utime and stime are fields 14 and 15 of stat, the 12th and 13th after the ')'.
    return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)


def peak_rss_mb(pid):
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def job_phases(log_dir: str, submitted_wall: float):
    """Split the job's time into phases, from the timestamps in Flink's own log.

    - plan: from execute_sql(INSERT) to the mini-cluster's start (SQL planning,
      optimisation and code generation, on a cold JVM)
    - cluster_start: starting the local mini-cluster, up to the job's submission
    - to_source_end: from submission to the source's "Finished reading split(s)"
      (deployment, then reading, parsing, filtering, window aggregation)
    - after_source_end: to the job's FINISHED state (the final watermark fires every
      window, the sink writes them, the final checkpoint commits the files;
      includes waiting for the next checkpoint tick)
    - checkpoints_completed: checkpoints completed during the job
    """
    import datetime as dt

    marks = {}
    completed = 0
    for path in glob.glob(os.path.join(log_dir, "*.log")):
        with open(path, errors="replace") as f:
            for line in f:
                m = LOG_TIME.match(line)
                if not m:
                    continue
                if "Starting Flink Mini Cluster" in line and "cluster" not in marks:
                    marks["cluster"] = m.group(1)
                elif "Submitting job" in line and "submit" not in marks:
                    marks["submit"] = m.group(1)
                elif "Finished reading split(s)" in line:
                    marks["source_end"] = m.group(1)  # the last one wins
                elif "switched from state RUNNING to FINISHED" in line:
                    marks["finished"] = m.group(1)
                elif "Completed checkpoint" in line:
                    completed += 1
    if set(marks) != {"cluster", "submit", "source_end", "finished"}:
        print(f"flink_run.py: warning: could not find the job's phases in Flink's log "
              f"(found {sorted(marks)}); phases are null", file=sys.stderr)
        return None
    # Flink logs in the JVM's default time zone, which is this machine's.
    t = {k: dt.datetime.strptime(v, "%Y-%m-%d %H:%M:%S,%f").timestamp() for k, v in marks.items()}
    return {
        "plan": round(t["cluster"] - submitted_wall, 3),
        "cluster_start": round(t["submit"] - t["cluster"], 3),
        "to_source_end": round(t["source_end"] - t["submit"], 3),
        "after_source_end": round(t["finished"] - t["source_end"], 3),
        "checkpoints_completed": completed,
    }


def concat_parts(sink_dir: str, output: str) -> int:
    """Concatenate the sink's committed part files into output; return the row count."""
    parts = sorted(
        p for p in glob.glob(os.path.join(sink_dir, "**", "*"), recursive=True)
        if os.path.isfile(p) and not os.path.basename(p).startswith(".")
    )
    in_progress = [p for p in glob.glob(os.path.join(sink_dir, "**", ".*"), recursive=True)
                   if os.path.isfile(p)]
    if in_progress:
        raise SystemExit(
            f"flink_run.py: error: the file sink left uncommitted files (e.g. {in_progress[0]}); "
            "the job ended without a final checkpoint"
        )
    rows = 0
    with open(output, "wb") as out:
        for p in parts:
            with open(p, "rb") as f:
                data = f.read()
            if data and not data.endswith(b"\n"):
                data += b"\n"
            rows += data.count(b"\n")
            out.write(data)
    return rows


def check() -> None:
    import_pyflink()
    check_java()
    from pyflink.table import EnvironmentSettings, TableEnvironment
    import importlib.metadata as md

    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    got = list(t_env.execute_sql("SELECT 1 + 1").collect())
    if len(got) != 1 or got[0][0] != 2:
        raise SystemExit(f"flink_run.py: error: Flink self-check returned {got!r}")
    emit({"system": "flink", "ok": True, "version": md.version("apache-flink")})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", choices=sorted(WORKLOADS))
    ap.add_argument("--input", help="JSON-lines events file")
    ap.add_argument("--output", help="JSON-lines output rows file (overwritten)")
    ap.add_argument("--state", choices=sorted(STATE_BACKENDS), help="state backend")
    ap.add_argument("--checkpoint-interval", type=parse_duration, default="10s",
                    help="checkpoint interval (default 10s)")
    ap.add_argument("--parallelism", type=int, default=2, help="job parallelism (default 2)")
    ap.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                    help="extra Flink configuration, repeatable (e.g. table.exec.mini-batch.enabled=true)")
    ap.add_argument("--jvm-args", default=None,
                    help="extra JVM arguments for the Flink JVM, e.g. '-Xmx4g' (default: JVM defaults)")
    ap.add_argument("--work-dir", default=None,
                    help="where to make the run's temporary folder for checkpoints, sink files and "
                         "Flink's log (default: next to --output); removed after a successful run")
    ap.add_argument("--keep-work-dir", action="store_true",
                    help="keep the run's temporary folder (Flink's log) after a successful run")
    ap.add_argument("--check", action="store_true",
                    help="only check that PyFlink and Java are installed and work; run no workload")
    args = ap.parse_args()
    if args.jvm_args:
        os.environ["JVM_ARGS"] = args.jvm_args  # read by PyFlink when it starts the JVM
    if args.check:
        check()
        return
    missing = [f"--{n.replace('_', '-')}" for n in ("workload", "input", "output", "state")
               if getattr(args, n) is None]
    if missing:
        ap.error(f"missing {', '.join(missing)} (or use --check)")
    extra_conf = []
    for kv in args.conf:
        if "=" not in kv:
            ap.error(f"--conf expects KEY=VALUE, got {kv!r}")
        extra_conf.append(kv.split("=", 1))
    import_pyflink()
    check_java()
    workload = WORKLOADS[args.workload]
    check_io(args.input, args.output)
    input_path = os.path.abspath(args.input)
    output = os.path.abspath(args.output)

    work = tempfile.mkdtemp(prefix="flink-peer-", dir=args.work_dir or os.path.dirname(output))
    try:
        result = run_job(args, workload, input_path, work, extra_conf)
        sink_dir = os.path.join(work, "sink")
        t0 = time.perf_counter()
        rows = concat_parts(sink_dir, output)
        result["convert_seconds"] = round(time.perf_counter() - t0, 3)
        result["rows"] = rows
        result["events"] = count_lines(input_path)
    except BaseException:
        # Keep checkpoints, sink files and Flink's log for a look at what went wrong.
        print(f"flink_run.py: the run failed; Flink's log and files are kept in {work}", file=sys.stderr)
        raise
    if args.keep_work_dir:
        print(f"flink_run.py: kept checkpoints, sink files and Flink's log in {work}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)
    # Key order of the result line: the fields the runner reads first.
    head = {k: result.pop(k) for k in ("system", "workload", "events", "seconds", "job_seconds", "rows")}
    emit({**head, **result})


def run_job(args, workload, input_path, work, extra_conf) -> dict:
    from pyflink.common import Configuration
    from pyflink.table import EnvironmentSettings, TableEnvironment
    import importlib.metadata as md

    ckpt_dir = os.path.join(work, "checkpoints")
    sink_dir = os.path.join(work, "sink")
    log_dir = os.path.join(work, "log")
    tmp_dir = os.path.join(work, "tmp")  # RocksDB's working files, spilled buffers
    os.makedirs(tmp_dir)
    # PyFlink reads FLINK_LOG_DIR when it starts the JVM: keep this run's log with the run.
    os.environ["FLINK_LOG_DIR"] = log_dir

    conf = Configuration()
    conf.set_string("parallelism.default", str(args.parallelism))
    conf.set_string("table.local-time-zone", "UTC")
    conf.set_string("state.backend.type", STATE_BACKENDS[args.state])
    conf.set_string("execution.checkpointing.interval", args.checkpoint_interval)
    conf.set_string("execution.checkpointing.dir", "file://" + ckpt_dir)
    conf.set_string("execution.checkpointing.mode", "EXACTLY_ONCE")
    conf.set_string("io.tmp.dirs", tmp_dir)
    # No restarts: a failure must surface as an error, not a silently slower run.
    conf.set_string("restart-strategy.type", "none")
    for k, v in extra_conf:
        conf.set_string(k, v)

    load = load_average()
    start = time.perf_counter()
    settings = EnvironmentSettings.new_instance().in_streaming_mode().with_configuration(conf).build()
    t_env = TableEnvironment.create(settings)
    ddl, insert = build_statements(workload, input_path, sink_dir)
    for stmt in ddl:
        t_env.execute_sql(stmt)
    jvm = gateway_java_pid()
    submitted = time.perf_counter()
    submitted_wall = time.time()
    result = t_env.execute_sql(insert)
    result.wait()  # raises if the job failed
    end = time.perf_counter()
    jvm_cpu, jvm_rss = cpu_seconds(jvm), peak_rss_mb(jvm)
    if jvm_cpu is None or jvm_rss is None:
        print("flink_run.py: warning: could not read the Flink JVM's /proc entry; "
              "jvm_cpu_seconds and peak_rss_mb are null", file=sys.stderr)

    return {
        "system": f"flink-{args.state}",
        "workload": workload.name,
        "seconds": round(end - start, 3),
        "job_seconds": round(end - submitted, 3),
        "startup_seconds": round(submitted - start, 3),
        "mode": "streaming",
        "state_backend": STATE_BACKENDS[args.state],
        "checkpoint_interval": args.checkpoint_interval,
        "phases": job_phases(log_dir, submitted_wall),
        "parallelism": args.parallelism,
        "jvm_cpu_seconds": jvm_cpu,
        "peak_rss_mb": jvm_rss,
        "load_avg_1m_before": load,
        "version": md.version("apache-flink"),
    }


if __name__ == "__main__":
    run_main(main)
