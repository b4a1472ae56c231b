#!/usr/bin/env python3
"""Deterministic generator of the benchmark's click events, one JSON object per line.

    {"event_id":"<uuid>","user_id":"u<0..U-1>","type":"...","amount":12.34,"ts":"2026-11-25T10:00:00.123Z"}

For testing the peers only: the benchmark runner uses a Rust generator that
writes the same format. Same arguments give byte-identical output.

- type: product_view 60 %, add_to_cart 20 %, checkout_started 12 %,
  purchase_completed 8 %
- amount: uniform over 1.00..200.00 in cents, always two decimals
- user_id: uniform over u0..u{U-1}
- ts: event i sits at start + i * duration / N, plus a uniform jitter of
  +-1 s, clamped to [start, start + duration); with that jitter no event is
  more than 2 s (+ one spacing) out of order, well inside a 5 s watermark
  delay. Times always carry milliseconds.

Standard library only, so it runs without the venv.
"""

import argparse
import datetime as dt
import random
import sys

TYPES = ("product_view", "add_to_cart", "checkout_started", "purchase_completed")
# Cumulative thresholds on a uniform integer in [0, 100).
TYPE_CUTS = (60, 80, 92, 100)
JITTER_MS = 1000


def parse_start(text):
    """Parse an RFC 3339 UTC time like 2026-11-25T10:00:00Z into epoch millis."""
    if not text.endswith("Z"):
        raise argparse.ArgumentTypeError(f"start must be RFC 3339 UTC ending in Z: {text!r}")
    try:
        t = dt.datetime.fromisoformat(text[:-1]).replace(tzinfo=dt.timezone.utc)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"bad start time {text!r}: {e}") from None
    return int(t.timestamp() * 1000)


def positive(text):
    n = int(text)
    if n <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text}")
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=positive, required=True, help="number of events N")
    ap.add_argument("--users", type=positive, required=True, help="number of distinct user ids U")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    ap.add_argument("--output", required=True, help="output file ('-' for stdout)")
    ap.add_argument("--start", type=parse_start, default=parse_start("2026-11-25T10:00:00Z"),
                    help="first event time, RFC 3339 UTC (default 2026-11-25T10:00:00Z)")
    ap.add_argument("--duration-seconds", type=positive, default=3600,
                    help="span of event times (default 3600)")
    args = ap.parse_args()

    rng = random.Random(args.seed)
    rand_bits = rng.getrandbits
    randrange = rng.randrange
    n, users = args.events, args.users
    start, span = args.start, args.duration_seconds * 1000
    last = start + span - 1

    # Formatting a datetime per event is the slow part; cache the prefix per second.
    cached_sec, cached_prefix = None, ""

    out = sys.stdout if args.output == "-" else open(args.output, "w", encoding="ascii", newline="\n")
    try:
        buf = []
        for i in range(n):
            u = f"{rand_bits(128):032x}"
            event_id = f"{u[0:8]}-{u[8:12]}-4{u[13:16]}-{'89ab'[int(u[16], 16) & 3]}{u[17:20]}-{u[20:32]}"
            user = randrange(users)
            r = randrange(100)
            kind = TYPES[0] if r < TYPE_CUTS[0] else TYPES[1] if r < TYPE_CUTS[1] else TYPES[2] if r < TYPE_CUTS[2] else TYPES[3]
            cents = randrange(100, 20001)
            ts = start + (i * span) // n + randrange(-JITTER_MS, JITTER_MS + 1)
            ts = start if ts < start else last if ts > last else ts
            sec, ms = divmod(ts, 1000)
            if sec != cached_sec:
                cached_sec = sec
                cached_prefix = dt.datetime.fromtimestamp(sec, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
            buf.append(
                f'{{"event_id":"{event_id}","user_id":"u{user}","type":"{kind}",'
                f'"amount":{cents // 100}.{cents % 100:02d},"ts":"{cached_prefix}.{ms:03d}Z"}}\n'
            )
            if len(buf) >= 10000:
                out.write("".join(buf))
                buf.clear()
        out.write("".join(buf))
    finally:
        if out is not sys.stdout:
            out.close()


if __name__ == "__main__":
    main()
