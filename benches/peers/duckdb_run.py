#!/usr/bin/env python3
"""Run a kflow benchmark workload as a DuckDB batch group-by and write kflow's output rows.

    duckdb_run.py --workload W1|W2|W3|W4|W4S|W6 --input events.jsonl --output rows.jsonl
    duckdb_run.py --check        # is DuckDB installed and working? runs no workload

Reads the JSON-lines input with read_ndjson and explicit columns (no schema
sampling), filters, assigns epoch-aligned half-open event-time windows from
`ts` and groups per (window, user_id). Sliding windows (W2) are computed the
way a careful SQL user would: aggregate per 1-minute pane first, then merge
each window's panes (5 panes per window) instead of copying every event 5 times.

Output: one JSON object per (window, user) row, in kflow's format and any order:
    {"window_start":"2026-11-25T10:00:00Z","window_end":"2026-11-25T10:01:00Z","user_id":"u42","events":3,"revenue":37.02}

Stdout: one JSON line
    {"system":"duckdb","workload":"W1","events":N,"seconds":S,"rows":R,...}
where seconds is the wall time of the query including reading the input and
writing the output file (DuckDB's COPY ... TO); cpu_seconds is the CPU time
spent meanwhile (all threads); load_avg_1m_before is the machine's load
before the run (another busy process skews the timing). Counting the input's events
for the report is done afterwards and not timed.
"""

import argparse
import os
import time

from peers_common import (
    WORKLOADS,
    UsageError,
    check_io,
    count_lines,
    cpu_seconds_self,
    emit,
    load_average,
    peak_rss_mb_self,
    run_main,
)

try:
    import duckdb
except ImportError as e:  # never a silent skip
    raise SystemExit(
        f"duckdb_run.py: error: cannot import duckdb ({e}); run benches/peers/setup.sh "
        "and use benches/peers/.venv/bin/python"
    )


def sql_rfc3339(ms_expr: str) -> str:
    """SQL for an epoch-millis expression as RFC 3339 UTC, with .mmm only when non-zero."""
    return (
        f"strftime(epoch_ms({ms_expr}), '%Y-%m-%dT%H:%M:%S') || "
        f"CASE WHEN ({ms_expr}) % 1000 = 0 THEN 'Z' ELSE printf('.%03dZ', ({ms_expr}) % 1000) END"
    )


def build_query(workload, input_path: str) -> str:
    src = input_path.replace("'", "''")
    if workload.bids:
        return build_bids_query(workload, src)
    if workload.gap_ms:
        return build_session_query(workload.gap_ms, src)
    size, slide = workload.size_ms, workload.slide_ms
    if size % slide != 0:
        raise UsageError(f"slide {slide} ms does not divide size {size} ms")
    # Explicit columns: DuckDB parses only what the query needs and skips sampling.
    # ts as TIMESTAMPTZ honours any UTC offset; epoch_ms() of it is UTC millis.
    events = f"""
        SELECT user_id, amount, epoch_ms(ts) AS t
        FROM read_ndjson('{src}',
                         columns = {{user_id: 'VARCHAR', type: 'VARCHAR', amount: 'DOUBLE', ts: 'TIMESTAMPTZ'}})
        WHERE type != 'product_view'"""
    # Epoch-aligned pane start, correct for negative times too.
    pane = f"t - (((t % {slide}) + {slide}) % {slide})"
    if workload.tumbling:
        windows = f"""
        SELECT {pane} AS ws, user_id, count(*) AS events, sum(amount) AS revenue
        FROM ev GROUP BY ALL"""
    else:
        # A pane starting at p belongs to the windows starting at p - k*slide, k = 0..size/slide-1.
        windows = f"""
        SELECT p - k * {slide} AS ws, user_id, sum(c) AS events, sum(s) AS revenue
        FROM (SELECT {pane} AS p, user_id, count(*) AS c, sum(amount) AS s FROM ev GROUP BY ALL) panes,
             range(0, {size // slide}) AS r(k)
        GROUP BY ALL"""
    return f"""
    WITH ev AS ({events}),
         w AS ({windows})
    SELECT {sql_rfc3339('ws')} AS window_start,
           {sql_rfc3339(f'ws + {size}')} AS window_end,
           user_id,
           events,
           revenue
    FROM w"""


def build_bids_query(workload, src: str) -> str:
    """W4: the top price per 10 s tumbling window. W4S: bids per auction in
    10 s windows sliding by 2 s (per 2 s pane first, then each window's 5
    panes), then per sliding window the auctions bid on and the top count,
    written as the 2 s window that kflow's window over those rows fills:
    [end - 2 s, end)."""
    size, slide = workload.size_ms, workload.slide_ms
    bids = f"""
        SELECT Bid.auction AS auction, Bid.price AS price, Bid.date_time AS t
        FROM read_ndjson('{src}',
                         columns = {{Bid: 'STRUCT(auction BIGINT, price BIGINT, date_time BIGINT)'}})"""
    pane = f"t - (((t % {slide}) + {slide}) % {slide})"
    if workload.tumbling:
        return f"""
    WITH ev AS ({bids})
    SELECT {sql_rfc3339('ws')} AS window_start,
           {sql_rfc3339(f'ws + {size}')} AS window_end,
           top_price
    FROM (SELECT {pane} AS ws, max(price) AS top_price FROM ev GROUP BY ALL)"""
    return f"""
    WITH ev AS ({bids}),
    panes AS (SELECT {pane} AS p, auction, count(*) AS c FROM ev GROUP BY ALL),
    hot AS (SELECT p - k * {slide} AS ws, auction, sum(c) AS bids
            FROM panes, range(0, {size // slide}) AS r(k) GROUP BY ALL),
    top AS (SELECT ws + {size} AS we, count(*) AS auctions, max(bids) AS top FROM hot GROUP BY ALL)
    SELECT {sql_rfc3339(f'we - {slide}')} AS window_start,
           {sql_rfc3339('we')} AS window_end,
           auctions,
           top
    FROM top"""


def build_session_query(gap: int, src: str) -> str:
    """Session windows the SQL way: per user in time order, a record starts
    a new session when it comes `gap` or more after the one before; the
    running count of starts numbers the sessions; each is reported as
    [first, last + gap)."""
    return f"""
    WITH ev AS (
        SELECT user_id, amount, epoch_ms(ts) AS t
        FROM read_ndjson('{src}',
                         columns = {{user_id: 'VARCHAR', type: 'VARCHAR', amount: 'DOUBLE', ts: 'TIMESTAMPTZ'}})
        WHERE type != 'product_view'),
    starts AS (
        SELECT *, CASE WHEN t - lag(t) OVER (PARTITION BY user_id ORDER BY t) < {gap}
                       THEN 0 ELSE 1 END AS starts
        FROM ev),
    numbered AS (
        SELECT *, sum(starts) OVER (PARTITION BY user_id ORDER BY t
                                    ROWS UNBOUNDED PRECEDING) AS session
        FROM starts),
    s AS (
        SELECT user_id, min(t) AS ws, max(t) + {gap} AS we, count(*) AS events, sum(amount) AS revenue
        FROM numbered GROUP BY user_id, session)
    SELECT {sql_rfc3339('ws')} AS window_start,
           {sql_rfc3339('we')} AS window_end,
           user_id,
           events,
           revenue
    FROM s"""


def check() -> None:
    con = duckdb.connect()
    one = con.execute("SELECT 1").fetchone()[0]
    if one != 1:
        raise SystemExit("duckdb_run.py: error: DuckDB self-check failed")
    emit({"system": "duckdb", "ok": True, "version": duckdb.__version__})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", choices=sorted(WORKLOADS))
    ap.add_argument("--input", help="JSON-lines events file")
    ap.add_argument("--output", help="JSON-lines output rows file (overwritten)")
    ap.add_argument("--threads", type=int, default=2, help="DuckDB threads (default 2)")
    ap.add_argument("--check", action="store_true",
                    help="only check that DuckDB is installed and works; run no workload")
    args = ap.parse_args()
    if args.check:
        check()
        return
    missing = [f"--{n}" for n in ("workload", "input", "output") if getattr(args, n) is None]
    if missing:
        ap.error(f"missing {', '.join(missing)} (or use --check)")
    workload = WORKLOADS[args.workload]
    check_io(args.input, args.output)
    query = build_query(workload, os.path.abspath(args.input))
    out = os.path.abspath(args.output).replace("'", "''")

    load = load_average()
    cpu0 = cpu_seconds_self()
    start = time.perf_counter()
    con = duckdb.connect()  # in-memory database
    con.execute(f"SET threads = {int(args.threads)}")
    con.execute("SET TimeZone = 'UTC'")
    # Output rows may come in any order: let DuckDB write them as they are produced.
    con.execute("SET preserve_insertion_order = false")
    rows = con.execute(f"COPY ({query}) TO '{out}' (FORMAT JSON)").fetchone()[0]
    seconds = time.perf_counter() - start
    cpu = cpu_seconds_self() - cpu0
    con.close()

    emit({
        "system": "duckdb",
        "workload": workload.name,
        "events": count_lines(args.input),
        "seconds": round(seconds, 3),
        "rows": int(rows),
        "cpu_seconds": round(cpu, 3),
        "threads": args.threads,
        "peak_rss_mb": peak_rss_mb_self(),
        "load_avg_1m_before": load,
        "version": duckdb.__version__,
    })


if __name__ == "__main__":
    run_main(main)
