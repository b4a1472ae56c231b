#!/usr/bin/env python3
"""A plain-Python reference for the workloads, to check the peers (and kflow) on small inputs.

    reference_run.py --workload W1|W2|W3 --input events.jsonl --output rows.jsonl

Same rows as duckdb_run.py and flink_run.py, computed the obvious way: every
event is added to each window it falls in. Slow (about 1 s per 100k events);
not a benchmark. Standard library only.
"""

import argparse
import datetime as dt
import json
from collections import defaultdict

from peers_common import WORKLOADS, check_io, count_lines, emit, run_main


def epoch_ms(ts: str) -> int:
    t = dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    if t.tzinfo is None:
        raise ValueError(f"event time without a UTC offset: {ts!r}")
    return round(t.timestamp() * 1000)


def rfc3339(ms: int) -> str:
    sec, frac = divmod(ms, 1000)
    base = dt.datetime.fromtimestamp(sec, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}Z" if frac == 0 else f"{base}.{frac:03d}Z"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", choices=sorted(WORKLOADS), required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True)
    args = ap.parse_args()
    w = WORKLOADS[args.workload]
    check_io(args.input, args.output)

    acc = defaultdict(lambda: [0, 0.0])
    with open(args.input, encoding="utf-8") as f:
        for line in f:
            e = json.loads(line)
            if e.get("type") is None or e["type"] == "product_view":
                continue
            t = epoch_ms(e["ts"])
            last_start = t - t % w.slide_ms  # Python's % is floor-mod: right for negative times too
            start = last_start
            while start > t - w.size_ms:
                a = acc[(start, e["user_id"])]
                a[0] += 1
                a[1] += e["amount"]
                start -= w.slide_ms

    with open(args.output, "w", encoding="utf-8") as out:
        for (start, user), (n, revenue) in acc.items():
            out.write(json.dumps({
                "window_start": rfc3339(start),
                "window_end": rfc3339(start + w.size_ms),
                "user_id": user,
                "events": n,
                "revenue": revenue,
            }, separators=(",", ":")) + "\n")
    emit({"system": "reference", "workload": w.name, "events": count_lines(args.input), "rows": len(acc)})


if __name__ == "__main__":
    run_main(main)
