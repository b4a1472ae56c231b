"""Shared pieces of the peer benchmark scripts: workloads, argument checks, result line.

A workload is the same query for every system (see README.md):

    filter type != 'product_view'
    per user_id per window: events = count(), revenue = sum(amount)

W1 and W3 differ only in their input data (W3 has 5 million distinct users).
"""

import json
import os
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Workload:
    name: str
    size_ms: int
    slide_ms: int  # == size_ms for tumbling windows
    gap_ms: int = 0  # > 0: session windows with this gap instead
    bids: bool = False  # wide nested bid records (W4, W4S) instead of clicks

    @property
    def tumbling(self) -> bool:
        return self.size_ms == self.slide_ms


WORKLOADS = {
    "W1": Workload("W1", 60_000, 60_000),
    "W2": Workload("W2", 300_000, 60_000),
    "W3": Workload("W3", 60_000, 60_000),
    "W4": Workload("W4", 10_000, 10_000, bids=True),
    "W4S": Workload("W4S", 10_000, 2_000, bids=True),
    "W6": Workload("W6", 0, 0, gap_ms=30_000),
}


class UsageError(Exception):
    """Bad arguments or a missing file: reported on stderr, exit code 2."""


def check_io(input_path: str, output_path: str) -> None:
    """Fail early, with a clear message, on an unreadable input or output folder."""
    if not os.path.isfile(input_path):
        raise UsageError(f"input file not found: {input_path}")
    if not os.access(input_path, os.R_OK):
        raise UsageError(f"input file not readable: {input_path}")
    out_dir = os.path.dirname(os.path.abspath(output_path))
    os.makedirs(out_dir, exist_ok=True)


def count_lines(path: str) -> int:
    """Number of events in a JSON-lines file (a last line without newline counts too)."""
    n = 0
    last = b"\n"
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 22)
            if not chunk:
                break
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")


def count_rows(path: str) -> int:
    return count_lines(path)


def emit(result: dict) -> None:
    """The one JSON line on stdout that the benchmark runner reads."""
    sys.stdout.write(json.dumps(result, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def load_average() -> float:
    """1-minute load average: other work on the machine skews timings, so each result records it."""
    return round(os.getloadavg()[0], 2)


def cpu_seconds_self() -> float:
    """User + system CPU time of this process so far."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return round(r.ru_utime + r.ru_stime, 3)


def peak_rss_mb_self() -> float:
    """Peak resident set size of this process, MiB (Linux ru_maxrss is in KiB)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run_main(main) -> None:
    """Run main(), turning UsageError into exit 2 and other failures into exit 1."""
    prog = os.path.basename(sys.argv[0])
    try:
        main()
    except UsageError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
