#!/usr/bin/env python3
"""Generates the small bundled example inputs (deterministic, seeded).

clicks.jsonl: click events as in the benchmark workload W1, 10 minutes of
event time from 2026-11-25T10:00:00Z, 20 users, mostly in order with a little
jitter, a few late stragglers and two malformed lines (to show the
dead-letter file).

app.jsonl: purchases from a mobile app over the same 10 minutes, one every
few seconds, but none from 10:04 to 10:07 (the app's quiet spell), drawn
after clicks.jsonl from the same seeded generator.
"""
import json
import random
import uuid
from datetime import datetime, timedelta, timezone

rng = random.Random(42)
start = datetime(2026, 11, 25, 10, 0, tzinfo=timezone.utc)
types = ["product_view"] * 60 + ["add_to_cart"] * 20 + ["checkout_started"] * 12 + ["purchase_completed"] * 8


def ts(t):
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


lines = []
n = 3000
for i in range(n):
    t = start + timedelta(milliseconds=int(i * 600_000 / n) + rng.randint(-1500, 1500))
    event = {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "user_id": f"u{rng.randrange(20)}",
        "type": rng.choice(types),
        "amount": round(rng.uniform(1, 200), 2),
        "ts": ts(max(t, start)),
    }
    lines.append(json.dumps(event, separators=(",", ":")))
    if i in (1200, 2400):
        # A straggler 3 minutes behind: late for a 1-minute window.
        late = dict(event, ts=ts(t - timedelta(minutes=3)), event_id=str(uuid.UUID(int=rng.getrandbits(128))))
        lines.append(json.dumps(late, separators=(",", ":")))
lines.insert(500, '{"user_id":"u1","type":"add_to_cart","amount":3.5}')
lines.insert(1500, "this line is not JSON")

with open(__file__.rsplit("/", 1)[0] + "/clicks.jsonl", "w") as f:
    f.write("\n".join(lines) + "\n")

app = []
t = start
while t < start + timedelta(minutes=10):
    if not (start + timedelta(minutes=4) <= t < start + timedelta(minutes=7)):
        event = {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "user_id": f"a{rng.randrange(10)}",
            "type": "purchase_completed",
            "amount": round(rng.uniform(5, 80), 2),
            "ts": ts(t),
        }
        app.append(json.dumps(event, separators=(",", ":")))
    t += timedelta(milliseconds=rng.randint(2000, 9000))

with open(__file__.rsplit("/", 1)[0] + "/app.jsonl", "w") as f:
    f.write("\n".join(app) + "\n")
