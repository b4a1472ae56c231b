#!/usr/bin/env python3
"""Compare two JSON-lines output files as multisets of rows.

    compare.py A.jsonl B.jsonl [--rel-tol 1e-9] [--abs-tol 1e-9] [--show 5]

Two rows match when they have the same fields, equal strings (and other
non-numbers), and numbers within a relative tolerance (default 1e-9:
sums of doubles added in another order differ in the last bits). Row order
does not matter; duplicates count. An integer on one side and the same
integral float on the other (3 vs 3.0) matches but is reported as a note.

Exit status: 0 the files agree, 1 they differ, 2 usage or unreadable input.
Standard library only.
"""

import argparse
import json
import math
import sys
from collections import defaultdict


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def load(path):
    """Map a row's key -> list of its numbers; plus the row count and the number kinds seen.

    The key is the non-numeric fields with their values (as JSON text) and the
    names of the numeric fields; the numbers are in that name order.
    """
    groups = defaultdict(list)
    kinds = defaultdict(set)  # field -> {"int", "float"}
    n = 0
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        raise SystemExit(f"compare.py: error: cannot read {path}: {e.strerror}") from None
    with f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                print(f"compare.py: error: {path}:{lineno}: not JSON: {e}", file=sys.stderr)
                sys.exit(2)
            if not isinstance(row, dict):
                print(f"compare.py: error: {path}:{lineno}: not a JSON object", file=sys.stderr)
                sys.exit(2)
            n += 1
            exact, num_names, nums = [], [], []
            for k in sorted(row):
                v = row[k]
                if is_number(v):
                    num_names.append(k)
                    nums.append(v)
                    kinds[k].add("int" if isinstance(v, int) else "float")
                else:
                    exact.append((k, json.dumps(v, sort_keys=True)))
            groups[(tuple(exact), tuple(num_names))].append(tuple(nums))
    return groups, n, kinds


def close(a, b, rel, abs_tol):
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_tol)


def rel_diff(a, b):
    d = abs(a - b)
    m = max(abs(a), abs(b))
    return 0.0 if d == 0 else d / m


def show(key, nums):
    """A row again, from its key and its numbers."""
    exact, num_names = key
    row = {k: json.loads(v) for k, v in exact}
    row.update(zip(num_names, nums))
    return json.dumps(row, sort_keys=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--rel-tol", type=float, default=1e-9)
    ap.add_argument("--abs-tol", type=float, default=1e-9,
                    help="absolute tolerance for numbers near zero (default 1e-9)")
    ap.add_argument("--show", type=int, default=5, help="how many differing rows to print (default 5)")
    args = ap.parse_args()

    ga, na, ka = load(args.a)
    gb, nb, kb = load(args.b)

    only_a, only_b, mismatched = [], [], []
    matched = 0
    max_rel = 0.0
    for key in ga.keys() | gb.keys():
        la, lb = sorted(ga.get(key, [])), sorted(gb.get(key, []))
        # Usually one row per key (window, user); when there are several, pair them in sorted order.
        for x, y in zip(la, lb):
            if len(x) == len(y) and all(close(p, q, args.rel_tol, args.abs_tol) for p, q in zip(x, y)):
                matched += 1
                for p, q in zip(x, y):
                    max_rel = max(max_rel, rel_diff(p, q))
            else:
                mismatched.append((key, x, y))
        only_a += [(key, x) for x in la[len(lb):]]
        only_b += [(key, y) for y in lb[len(la):]]

    ok = not (only_a or only_b or mismatched)
    print(f"{args.a}: {na} rows")
    print(f"{args.b}: {nb} rows")
    print(f"matched: {matched}, differing: {len(mismatched)}, only in A: {len(only_a)}, only in B: {len(only_b)}")
    print(f"max relative difference among matched numbers: {max_rel:.3g}")
    for field in sorted(ka.keys() | kb.keys()):
        if ka.get(field) != kb.get(field):
            print(f"note: field {field!r} is {'/'.join(sorted(ka.get(field, {'absent'})))} in A "
                  f"and {'/'.join(sorted(kb.get(field, {'absent'})))} in B")
    for key, x, y in mismatched[: args.show]:
        print(f"differ: A {show(key, x)}\n        B {show(key, y)}")
    for key, x in only_a[: args.show]:
        print(f"only in A: {show(key, x)}")
    for key, y in only_b[: args.show]:
        print(f"only in B: {show(key, y)}")
    print("RESULT: " + ("the files agree" if ok else "the files DIFFER"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
