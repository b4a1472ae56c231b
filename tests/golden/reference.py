#!/usr/bin/env python3
"""Reference semantics for kflow's golden cases, written independently of kflow.

This script computes every golden case's expected output from its `job.toml`
and input files, so the expected files never come from kflow itself. It
implements the public contract (design.md sections 1-2 and the team's
decisions recorded in tests/golden/README.md) for the subset the cases use,
as plainly as possible: records are kept in lists and aggregated when a
window fires, with no panes, partials or sketches.

Usage:
    reference.py --write CASE_DIR...   rewrite each case's expected files
    reference.py --check CASE_DIR...   fail if an expected file is stale
    reference.py --run JOB_FILE        write the outputs as `kflow run` would
                                       (to test the Rust harness itself, see
                                       reference-kflow.sh)

Refusing what the contract leaves open
--------------------------------------
Where the contract does not pin a behaviour down (the interleaving of two
sources, whether a record rejected by a window still moves its source's
watermark, `7 / 2`, a leap second, ...) the script either runs every
reasonable variant and demands that they agree, or raises `Ambiguous`. So a
case that depends on an open point fails to generate instead of pinning an
arbitrary choice.

Python 3.11, standard library only.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from fractions import Fraction
import re
import sys
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

NEG_INF = -math.inf
POS_INF = math.inf


class Ambiguous(Exception):
    """The case relies on behaviour the contract leaves open: change the case."""


class CaseError(Exception):
    """The case uses something this reference does not implement."""


# ---------------------------------------------------------------------------
# Durations and times
# ---------------------------------------------------------------------------

DURATION_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_duration_ms(text: str) -> int:
    """`250ms`, `10s`, `5m`, `1h`, `1d` -> milliseconds."""
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d)", text)
    if not match:
        raise CaseError(f"bad duration {text!r}")
    return int(match.group(1)) * DURATION_UNITS_MS[match.group(2)]


EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MS = timedelta(milliseconds=1)

# What we accept: upper-case T and Z, at most millisecond precision.
RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})"
)
# Close enough to RFC 3339 that a lenient parser might take it (lower-case
# t/z, a space, no offset): the contract does not say, so cases avoid it.
NEAR_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?")


def parse_event_time(value: Any) -> int | None:
    """An event-time field value -> epoch millis, or None when unparsable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        raise Ambiguous(f"event time {value!r} is a non-integer JSON number")
    if not isinstance(value, str):
        return None
    match = RFC3339.fullmatch(value)
    if not match:
        if NEAR_RFC3339.fullmatch(value):
            raise Ambiguous(f"event time {value!r} is nearly RFC 3339")
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, offset = match.group(7) or "", match.group(8)
    if second == 60:
        raise Ambiguous(f"leap second in {value!r}")
    if len(fraction) > 3 and fraction[3:].strip("0"):
        raise Ambiguous(f"sub-millisecond event time {value!r}")
    try:
        if offset == "Z":
            tz = timezone.utc
        else:
            sign = 1 if offset[0] == "+" else -1
            tz = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))
        moment = datetime(year, month, day, hour, minute, second, tzinfo=tz)
    except ValueError:
        return None  # e.g. month 13 or offset +25:00: clearly not a time
    return (moment - EPOCH) // MS + int(fraction[:3].ljust(3, "0"))


def format_time(ms: int) -> str:
    """Epoch millis -> RFC 3339 UTC with `Z`; `.mmm` only when non-zero."""
    moment = EPOCH + timedelta(milliseconds=ms)
    text = (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )
    millis = ms % 1000  # Python's % is Euclidean for a positive modulus
    return text + (f".{millis:03d}" if millis else "") + "Z"


# ---------------------------------------------------------------------------
# JSON values
# ---------------------------------------------------------------------------


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if is_number(value):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def value_order(value: Any) -> tuple:
    """kflow's total order of scalar values (ties of max_by and the like)."""
    if value is None:
        return (0,)
    if isinstance(value, bool):
        return (1, value)
    if is_number(value):
        return (2, float(value))
    if isinstance(value, str):
        return (3, value.encode())
    raise Ambiguous(f"an object or array as a picked value: {value!r}")


def get_path(record: dict, dotted: str) -> Any:
    """`a.b` in a JSON object; None (null) when any step is missing."""
    value: Any = record
    for segment in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(segment)
    return value


def reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json_line(line: str) -> Any:
    """Strict JSON (no NaN/Infinity, no duplicate keys)."""

    def no_duplicates(pairs: list) -> dict:
        keys = [k for k, _ in pairs]
        if len(keys) != len(set(keys)):
            raise Ambiguous(f"duplicate keys in {line!r}")
        return dict(pairs)

    return json.loads(line, parse_constant=reject_constant, object_pairs_hook=no_duplicates)


# ---------------------------------------------------------------------------
# Filters: the CEL subset of design.md
# ---------------------------------------------------------------------------
#
# Null rules (team decision): a missing field is null; any comparison
# (== != < <= > >= in) with a null operand is false; arithmetic with a null
# operand is null. `has(f)` is "f is present and not null" (kflow decodes
# absent and null to the same value). `&&`/`||` follow CEL: false && error =
# false, true || error = true. An expression that ends in an error or a
# non-bool does not pass.

TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+\.\d+(?:[eE][+-]?\d+)?|\d+(?:[eE][+-]?\d+)?)"
    r"|(?P<str>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")"
    r"|(?P<ident>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>&&|\|\||==|!=|<=|>=|[<>!+\-*/%().,\[\]]))"
)


class EvalError(Exception):
    """A CEL runtime error (e.g. `!` on a non-bool): the record does not pass."""


def tokenize(text: str) -> list[tuple[str, Any]]:
    tokens, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = TOKEN.match(text, pos)
        if not match:
            raise CaseError(f"cannot tokenize filter at {text[pos:]!r}")
        pos = match.end()
        if match.group("num"):
            raw = match.group("num")
            tokens.append(("lit", float(raw) if any(c in raw for c in ".eE") else int(raw)))
        elif match.group("str"):
            inner = match.group("str")[1:-1]
            if "\\" in inner:
                raise CaseError("escapes in string literals are not implemented")
            tokens.append(("lit", inner))
        elif match.group("ident"):
            word = match.group("ident")
            literals = {"true": True, "false": False, "null": None}
            if word in literals:
                tokens.append(("lit", literals[word]))
            elif word == "in":
                tokens.append(("op", "in"))
            else:
                tokens.append(("ident", word))
        else:
            tokens.append(("op", match.group("op")))
    tokens.append(("end", None))
    return tokens


class Parser:
    """Precedence climbing over CEL's levels: || && relations + * unary member."""

    def __init__(self, text: str):
        self.tokens = tokenize(text)
        self.pos = 0

    def peek(self) -> tuple[str, Any]:
        return self.tokens[self.pos]

    def take(self, kind: str, value: Any = None) -> Any:
        tok_kind, tok_value = self.tokens[self.pos]
        if tok_kind != kind or (value is not None and tok_value != value):
            raise CaseError(f"expected {value or kind}, found {tok_value!r}")
        self.pos += 1
        return tok_value

    def accept(self, *ops: str) -> str | None:
        kind, value = self.peek()
        if kind == "op" and value in ops:
            self.pos += 1
            return value
        return None

    def parse(self) -> tuple:
        tree = self.parse_or()
        self.take("end")
        return tree

    def parse_or(self) -> tuple:
        left = self.parse_and()
        while self.accept("||"):
            left = ("||", left, self.parse_and())
        return left

    def parse_and(self) -> tuple:
        left = self.parse_relation()
        while self.accept("&&"):
            left = ("&&", left, self.parse_relation())
        return left

    def parse_relation(self) -> tuple:
        left = self.parse_sum()
        while op := self.accept("==", "!=", "<", "<=", ">", ">=", "in"):
            left = ("cmp", op, left, self.parse_sum())
        return left

    def parse_sum(self) -> tuple:
        left = self.parse_product()
        while op := self.accept("+", "-"):
            left = ("arith", op, left, self.parse_product())
        return left

    def parse_product(self) -> tuple:
        left = self.parse_unary()
        while op := self.accept("*", "/", "%"):
            left = ("arith", op, left, self.parse_unary())
        return left

    def parse_unary(self) -> tuple:
        if self.accept("!"):
            return ("not", self.parse_unary())
        if self.accept("-"):
            return ("neg", self.parse_unary())
        return self.parse_member()

    def parse_member(self) -> tuple:
        tree = self.parse_primary()
        while self.accept("."):
            name = self.take("ident")
            if self.accept("("):
                tree = ("method", name, tree, self.parse_args(")"))
            elif tree[0] == "field":
                tree = ("field", tree[1] + "." + name)
            else:
                raise CaseError("field selection on a non-field")
        return tree

    def parse_args(self, closing: str) -> list:
        args = []
        if not self.accept(closing):
            args.append(self.parse_or())
            while self.accept(","):
                args.append(self.parse_or())
            self.take("op", closing)
        return args

    def parse_primary(self) -> tuple:
        kind, value = self.peek()
        if kind == "lit":
            self.pos += 1
            return ("lit", value)
        if kind == "ident":
            self.pos += 1
            if self.accept("("):
                args = self.parse_args(")")
                if value != "has" or len(args) != 1 or args[0][0] != "field":
                    raise CaseError(f"unsupported function {value}")
                return ("has", args[0][1])
            return ("field", value)
        if self.accept("("):
            tree = self.parse_or()
            self.take("op", ")")
            return tree
        if self.accept("["):
            return ("list", self.parse_args("]"))
        raise CaseError(f"unexpected token {value!r}")


def same_kind(a: Any, b: Any) -> bool:
    if is_number(a) and is_number(b):
        return True
    return type(a) is type(b) and isinstance(a, (str, bool))


def compare(op: str, a: Any, b: Any) -> bool:
    if a is None or b is None:
        return False
    if op == "in":
        if not isinstance(b, list):
            raise CaseError("`in` needs a list")
        return any(compare("==", a, item) for item in b)
    if not same_kind(a, b):
        raise Ambiguous(f"comparison of {type_name(a)} with {type_name(b)}")
    if op in ("<", "<=", ">", ">=") and isinstance(a, bool):
        raise Ambiguous("ordering of bools")
    return {
        "==": a == b,
        "!=": a != b,
        "<": a < b,
        "<=": a <= b,
        ">": a > b,
        ">=": a >= b,
    }[op]


def arithmetic(op: str, a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    if not (is_number(a) and is_number(b)):
        raise Ambiguous(f"arithmetic on {type_name(a)} and {type_name(b)}")
    if op in ("/", "%"):
        if b == 0:
            raise Ambiguous("division by zero")
        if isinstance(a, int) and isinstance(b, int) and a % b != 0:
            raise Ambiguous(f"{a} {op} {b}: CEL int division differs from f64")
        if op == "%":
            raise Ambiguous("`%` on numbers that kflow holds as f64")
        return a / b
    return {"+": a + b, "-": a - b, "*": a * b}[op]


def evaluate(tree: tuple, record: dict) -> Any:
    kind = tree[0]
    if kind == "lit":
        return tree[1]
    if kind == "field":
        value = get_path(record, tree[1])
        if isinstance(value, (dict, list)):
            raise Ambiguous(f"filter reads object/array field {tree[1]}")
        return value
    if kind == "has":
        return get_path(record, tree[1]) is not None
    if kind == "list":
        return [evaluate(item, record) for item in tree[1]]
    if kind == "not":
        value = evaluate(tree[1], record)
        if not isinstance(value, bool):
            raise EvalError("`!` on a non-bool")
        return not value
    if kind == "neg":
        value = evaluate(tree[1], record)
        return None if value is None else arithmetic("-", 0, value)
    if kind in ("&&", "||"):
        results = []
        for side in tree[1:]:
            try:
                value = evaluate(side, record)
                results.append(value if isinstance(value, bool) else EvalError("non-bool"))
            except EvalError as error:
                results.append(error)
        short = kind == "||"  # the value that decides the result alone
        if short in results:
            return short
        if all(isinstance(r, bool) for r in results):
            return not short
        raise EvalError(f"`{kind}` over an error")
    if kind == "cmp":
        return compare(tree[1], evaluate(tree[2], record), evaluate(tree[3], record))
    if kind == "arith":
        return arithmetic(tree[1], evaluate(tree[2], record), evaluate(tree[3], record))
    if kind == "method":
        name, target, args = tree[1], evaluate(tree[2], record), [evaluate(a, record) for a in tree[3]]
        if name not in ("startsWith", "endsWith", "contains") or len(args) != 1:
            raise CaseError(f"unsupported method {name}")
        if target is None or args[0] is None:
            return False  # a string test on null is false, like a comparison
        if not (isinstance(target, str) and isinstance(args[0], str)):
            raise Ambiguous(f"{name} on a {type_name(target)}")
        return {
            "startsWith": target.startswith,
            "endsWith": target.endswith,
            "contains": target.__contains__,
        }[name](args[0])
    raise CaseError(f"unknown expression node {kind}")


def passes(tree: tuple, record: dict) -> bool:
    try:
        return evaluate(tree, record) is True
    except EvalError:
        return False


# ---------------------------------------------------------------------------
# Aggregates
# ---------------------------------------------------------------------------

AGGREGATE = re.compile(
    r"(count|sum|min|max|avg|variance|stddev|count_distinct|count_distinct_approx|percentile"
    r"|max_by|min_by|first|last|top_k)"
    r"\(\s*([\w.]*)\s*(?:,\s*([\w.]+)\s*)?\)"
)
NEEDS_NUMBER = {"sum", "min", "max", "avg", "variance", "stddev", "percentile"}
# Aggregates that return one record's value: the record ranked highest or
# lowest by a numeric field (`*_by`) or by event time (`first`, `last`).
PICKS = {"max_by", "min_by", "first", "last"}
# count_distinct_approx is exact up to this many distinct values (kflow keeps
# the hashes themselves until then, a HyperLogLog sketch after).
APPROX_EXACT_LIMIT = 512
# top_k counts exactly while a group has at most this many distinct values
# (a Misra-Gries summary, pruned past it).
TOP_K_EXACT_LIMIT = 2048


@dataclass
class Aggregate:
    name: str
    function: str
    field: str | None
    quantile: float | None
    by: str | None = None  # max_by/min_by: the numeric field that ranks

    @staticmethod
    def parse(name: str, text: str) -> "Aggregate":
        match = AGGREGATE.fullmatch(text.strip())
        if not match:
            raise CaseError(f"bad aggregate {text!r}")
        function, argument, second = match.groups()
        if (function == "count") != (argument == ""):
            raise CaseError(f"bad aggregate {text!r}")
        two = function in ("percentile", "max_by", "min_by", "top_k")
        if two != (second is not None):
            raise CaseError(f"bad aggregate {text!r}")
        if function in ("max_by", "min_by"):
            # max_by(value, field): ranked by `value`, returns `field`.
            return Aggregate(name, function, second, None, by=argument)
        return Aggregate(name, function, argument or None, float(second) if second else None)

    def pick(self, rows: list[dict], times: list[int]) -> Any:
        """The value of the record ranked highest (max_by, last) or lowest
        (min_by, first); on a tie, the smallest value in kflow's total order
        of values: null < false < true < numbers < strings (UTF-8 bytes)."""
        candidates = []
        for row, ts in zip(rows, times):
            value = get_path(row, self.field)
            if self.by is not None:
                order = get_path(row, self.by)
                if order is None:
                    continue
            else:
                if value is None:
                    continue
                order = ts
            candidates.append((float(order), value))
        if not candidates:
            return None
        highest = self.function in ("max_by", "last")
        best = max(c[0] for c in candidates) if highest else min(c[0] for c in candidates)
        tied = [value for order, value in candidates if order == best]
        return min(tied, key=value_order)

    def top_k(self, rows: list[dict]) -> list[dict]:
        """The k most frequent non-null values with their counts, most
        frequent first; equal counts in kflow's total order of values."""
        k = int(self.quantile)
        counts: dict[tuple, list] = {}
        for row in rows:
            value = get_path(row, self.field)
            if value is None:
                continue
            order = value_order(value)  # numbers by value: 1 and 1.0 are one
            entry = counts.setdefault(order, [value, 0])
            entry[1] += 1
        if len(counts) > TOP_K_EXACT_LIMIT:
            raise Ambiguous("top_k over more than 2048 distinct values is approximate")
        ranked = sorted(counts.items(), key=lambda item: (-item[1][1], item[0]))
        return [{"value": value, "count": count} for _, (value, count) in ranked[:k]]

    def compute(self, rows: list[dict], times: list[int]) -> Any:
        if self.function == "count":
            return len(rows)
        if self.function in PICKS:
            return self.pick(rows, times)
        if self.function == "top_k":
            return self.top_k(rows)
        values = [get_path(row, self.field) for row in rows]
        values = [v for v in values if v is not None]
        if self.function in ("count_distinct", "count_distinct_approx"):
            if not values:
                raise Ambiguous("count_distinct over no values (0 or null?)")
            kinds = {type_name(v) for v in values}
            if len(kinds) > 1 or kinds & {"object", "array"}:
                raise Ambiguous(f"count_distinct over mixed types {kinds}")
            distinct = len({float(v) if is_number(v) else v for v in values})
            if self.function == "count_distinct_approx" and distinct > APPROX_EXACT_LIMIT:
                raise Ambiguous("count_distinct_approx over more than 512 values is approximate")
            return distinct
        if not values:
            return None
        if self.function == "sum":
            return math.fsum(values)  # correctly rounded: independent of order
        if self.function == "min":
            return float(min(values))
        if self.function == "max":
            return float(max(values))
        if self.function == "avg":
            return math.fsum(values) / len(values)
        if self.function in ("variance", "stddev"):
            # Exact rational arithmetic, rounded once at the end.
            exact = [Fraction(v) for v in values]
            mean = sum(exact) / len(exact)
            variance = sum((v - mean) ** 2 for v in exact) / len(exact)
            return float(variance) if self.function == "variance" else math.sqrt(float(variance))
        if self.function == "percentile":
            if len(values) > 128:
                raise Ambiguous("percentile over more than 128 values is approximate")
            ordered = sorted(values)
            rank = self.quantile * len(ordered)
            if rank != round(rank) and abs(rank - round(rank)) < 1e-9:
                raise Ambiguous(f"q*n = {rank!r} is a rounding error away from an integer")
            index = min(max(math.ceil(rank) - 1, 0), len(ordered) - 1)
            return float(ordered[index])
        raise CaseError(f"unknown aggregate {self.function}")


# ---------------------------------------------------------------------------
# The dataflow
# ---------------------------------------------------------------------------


@dataclass
class Origin:
    source: str
    file: str  # the path as written in the job file
    line: int  # 1-based
    raw: str


@dataclass
class Record:
    fields: dict
    ts: int
    raw: str  # what a sink reading this record writes
    origin: Origin | None  # None for a window's result row
    accepted_by: set = field(default_factory=set)
    rejected: bool = False


class Graph:
    """The job's nodes plus the routing between them."""

    def __init__(self, job: dict, job_dir: Path):
        self.nodes: dict[str, Node] = {}
        for name, spec in job.get("sources", {}).items():
            self.add(Source(name, spec, job_dir))
        for name, spec in job.get("filters", {}).items():
            self.add(Filter(name, spec))
        for name, spec in job.get("windows", {}).items():
            self.add(Window(name, spec))
        for name, spec in job.get("sinks", {}).items():
            self.add(Sink(name, spec))
        self.consumers: dict[tuple[str, str], list[Node]] = {}
        for node in self.nodes.values():
            for stream in node.inputs:
                producer, port = stream
                if producer not in self.nodes:
                    raise CaseError(f"{node.name}: unknown input {producer}")
                expected_port = {"main": True, "late": "window", "errors": "source"}[port]
                if expected_port is not True and self.nodes[producer].kind != expected_port:
                    raise CaseError(f"{node.name}: {producer} has no .{port} output")
                if port != "main" and node.kind != "sink":
                    raise CaseError(f"{node.name}: only sinks may read side outputs here")
                self.consumers.setdefault(stream, []).append(node)
        self.order = self.topological_order()
        self.dead_letter: list[str] = []
        for node in self.nodes.values():
            if isinstance(node, Source):
                node.numeric_fields = self.numeric_fields_after(node.name)

    def numeric_fields_after(self, producer: str) -> set[str]:
        """Fields that windows fed (through filters) by `producer` need as numbers."""
        fields: set[str] = set()
        for consumer in self.consumers.get((producer, "main"), []):
            if isinstance(consumer, Filter):
                fields |= self.numeric_fields_after(consumer.name)
            elif isinstance(consumer, Window):
                fields |= {a.field for a in consumer.aggregates if a.function in NEEDS_NUMBER}
                fields |= {a.by for a in consumer.aggregates if a.by is not None}
        return fields

    def add(self, node: "Node") -> None:
        if node.name in self.nodes:
            raise CaseError(f"duplicate node name {node.name}")
        self.nodes[node.name] = node

    def topological_order(self) -> list["Node"]:
        order: list[Node] = []
        state: dict[str, str] = {}

        def visit(node: Node) -> None:
            if state.get(node.name) == "done":
                return
            if state.get(node.name) == "visiting":
                raise CaseError(f"cycle through {node.name}")
            state[node.name] = "visiting"
            for producer, _ in node.inputs:
                visit(self.nodes[producer])
            state[node.name] = "done"
            order.append(node)

        for node in self.nodes.values():
            visit(node)
        return order

    def emit(self, producer: str, port: str, item: Any) -> None:
        for consumer in self.consumers.get((producer, port), []):
            consumer.receive(item, self)

    def has_consumers(self, producer: str, port: str) -> bool:
        return bool(self.consumers.get((producer, port)))

    def input_watermark(self, node: "Node") -> float:
        return min(self.nodes[producer].watermark for producer, _ in node.inputs)

    def bad_record(self, origin: Origin, reason: str) -> None:
        """Route a bad record to `<source>.errors`, or the dead-letter file."""
        row = {
            "source": origin.source,
            "reason": reason,
            "position": {"file": origin.file, "line": origin.line},
            "record": origin.raw,
        }
        if self.has_consumers(origin.source, "errors"):
            self.emit(origin.source, "errors", row)
        else:
            self.dead_letter.append(json.dumps(row))

    def advance_watermarks(self) -> None:
        """Recompute every node's watermark in topological order.

        A window fires what its new input watermark closed *before* its own
        output watermark moves, and downstream nodes come later in the order,
        so a window result is never late for a downstream window only because
        of the order of these two steps.
        """
        for node in self.order:
            node.on_watermark(self)


class Node:
    kind = "node"

    def __init__(self, name: str, spec: dict):
        self.name = name
        self.inputs = parse_inputs(spec.get("input"), name)
        self.watermark: float = NEG_INF

    def receive(self, item: Any, graph: Graph) -> None:
        raise CaseError(f"{self.name} cannot receive records")

    def on_watermark(self, graph: Graph) -> None:
        if self.inputs:
            self.watermark = graph.input_watermark(self)


def parse_inputs(value: Any, owner: str) -> list[tuple[str, str]]:
    if value is None:
        return []
    names = value if isinstance(value, list) else [value]
    streams = []
    for name in names:
        producer, _, port = name.partition(".")
        streams.append((producer, port or "main"))
    if not streams:
        raise CaseError(f"{owner}: empty input list")
    return streams


def check_keys(spec: dict, allowed: set[str], what: str) -> None:
    unknown = set(spec) - allowed
    if unknown:
        raise CaseError(f"{what}: the reference does not implement {sorted(unknown)}")


class Source(Node):
    kind = "source"

    def __init__(self, name: str, spec: dict, job_dir: Path):
        check_keys(spec, {"type", "path", "follow", "format", "event_time", "watermark"}, name)
        if spec.get("type") != "file" or spec.get("follow", False) or spec.get("format", "json") != "json":
            raise CaseError(f"{name}: only bounded JSON file sources are implemented")
        super().__init__(name, {})
        self.path_text = spec["path"]
        text = (job_dir / self.path_text).read_text(encoding="utf-8")
        self.lines = text.split("\n")
        if self.lines and self.lines[-1] == "":
            self.lines.pop()
        for number, line in enumerate(self.lines, 1):
            if line.strip() == "" or "\r" in line:
                raise Ambiguous(f"{self.path_text}:{number}: blank line or CR")
        if "event_time" not in spec:
            raise CaseError(f"{name}: arrival-time sources are not deterministic")
        check_keys(spec["event_time"], {"field"}, f"{name}.event_time")
        self.time_field = spec["event_time"]["field"]
        watermark = spec.get("watermark", {})
        check_keys(watermark, {"max_out_of_orderness"}, f"{name}.watermark")
        self.out_of_orderness = parse_duration_ms(watermark.get("max_out_of_orderness", "0s"))
        self.rejected_advances = True
        self.numeric_fields: set[str] = set()  # set by Graph
        self.reset()

    def reset(self) -> None:
        self.next_line = 0
        self.max_time: float = NEG_INF
        self.watermark = NEG_INF

    def steps(self) -> int:
        """Lines, plus one step for reaching the end of the file."""
        return len(self.lines) + 1

    def step(self, graph: Graph) -> None:
        if self.next_line == len(self.lines):
            self.watermark = POS_INF  # a bounded source ended
            return
        raw = self.lines[self.next_line]
        self.next_line += 1
        origin = Origin(self.name, self.path_text, self.next_line, raw)
        try:
            value = parse_json_line(raw)
        except ValueError:
            graph.bad_record(origin, "not valid JSON")
            return
        if not isinstance(value, dict):
            graph.bad_record(origin, f"not a JSON object but a JSON {type_name(value)}")
            return
        time_value = get_path(value, self.time_field)
        if time_value is None:
            graph.bad_record(origin, f"no event time field {self.time_field}")
            return
        event_time = parse_event_time(time_value)
        if event_time is None:
            graph.bad_record(origin, f"unparsable event time {json.dumps(time_value)}")
            return
        record = Record(value, event_time, raw, origin)
        graph.emit(self.name, "main", record)
        if not record.rejected and any(
            not is_number(v) and v is not None for v in (get_path(value, f) for f in self.numeric_fields)
        ):
            # kflow may check types where it decodes, before filters run.
            raise Ambiguous(f"{self.path_text}:{origin.line}: wrong type, but no window rejected it")
        if record.rejected and not self.rejected_advances:
            return
        # The watermark moves after the record went through: a record never
        # makes itself late.
        self.max_time = max(self.max_time, event_time)
        self.watermark = self.max_time - self.out_of_orderness

    def on_watermark(self, graph: Graph) -> None:
        pass  # moved by step()


class Filter(Node):
    kind = "filter"

    def __init__(self, name: str, spec: dict):
        check_keys(spec, {"input", "where"}, name)
        super().__init__(name, spec)
        self.text = spec["where"]
        self.tree = Parser(self.text).parse()

    def receive(self, item: Any, graph: Graph) -> None:
        if passes(self.tree, item.fields):
            graph.emit(self.name, "main", item)


class Window(Node):
    kind = "window"

    def __init__(self, name: str, spec: dict):
        check_keys(spec, {"input", "key", "tumbling", "sliding", "session", "allowed_lateness", "aggregates"}, name)
        super().__init__(name, spec)
        self.key = spec.get("key", [])
        if sum(kind in spec for kind in ("tumbling", "sliding", "session")) != 1:
            raise CaseError(f"{name}: exactly one of tumbling/sliding/session")
        self.gap = None
        if "session" in spec:
            # Per key, maximal runs of records less than `gap` apart,
            # reported as [first, last + gap); with max_duration, no session
            # crosses a multiple of it since the epoch (cut there).
            check_keys(spec["session"], {"gap", "max_duration"}, f"{name}.session")
            self.gap = parse_duration_ms(spec["session"]["gap"])
            self.max_duration = (
                parse_duration_ms(spec["session"]["max_duration"]) if "max_duration" in spec["session"] else None
            )
            self.size = self.slide = 1  # unused
        elif "tumbling" in spec:
            self.size = self.slide = parse_duration_ms(spec["tumbling"])
        else:
            check_keys(spec["sliding"], {"size", "slide"}, f"{name}.sliding")
            self.size = parse_duration_ms(spec["sliding"]["size"])
            self.slide = parse_duration_ms(spec["sliding"]["slide"])
            if self.size % self.slide:
                raise CaseError(f"{name}: slide does not divide size")
        self.lateness = parse_duration_ms(spec.get("allowed_lateness", "0s"))
        self.aggregates = [Aggregate.parse(n, t) for n, t in spec["aggregates"].items()]
        overlap = set(self.key) & {a.name for a in self.aggregates} | (
            {"window_start", "window_end"} & (set(self.key) | {a.name for a in self.aggregates})
        )
        if overlap:
            raise Ambiguous(f"{name}: output columns collide: {overlap}")
        self.reset()

    def reset(self) -> None:
        self.input_watermark = NEG_INF
        self.watermark = NEG_INF
        # (start, key as JSON text) -> (key values, [(fields, event time)])
        self.groups: dict[tuple[int, str], tuple[list, list[tuple[dict, int]]]] = {}
        # Session windows: key as JSON text -> (key values, [session]), a
        # session being [first, last, frame end, [(fields, event time)]].
        self.sessions: dict[str, tuple[list, list[list]]] = {}

    def frame_of(self, ts: int) -> float:
        if self.max_duration is None:
            return math.inf
        return ts - ts % self.max_duration + self.max_duration

    def session_end(self, session: list) -> float:
        first, last, frame, _ = session
        return min(last + self.gap, frame)

    def session_closed(self, end: float) -> bool:
        return end + self.lateness <= self.input_watermark

    def windows_of(self, ts: int) -> list[int]:
        """Starts of the windows [start, start + size) that contain ts."""
        last_start = ts - ts % self.slide  # Euclidean: right for ts < 0 too
        return [last_start - i * self.slide for i in range(self.size // self.slide)]

    def is_closed(self, start: int) -> bool:
        return start + self.size + self.lateness <= self.input_watermark

    def place_in_session(self, record: Record) -> bool:
        """Add the record to its key's sessions (extending, bridging or
        starting one); False when it is late."""
        key_values = [get_path(record.fields, k) for k in self.key]
        if any(isinstance(v, (dict, list)) or is_number(v) for v in key_values):
            raise Ambiguous(f"{self.name}: numeric or object key {key_values}")
        _, sessions = self.sessions.setdefault(json.dumps(key_values), (key_values, []))
        ts, frame = record.ts, self.frame_of(record.ts)
        joined = [
            s for s in sessions
            if s[2] == frame and not self.session_closed(self.session_end(s))
            and s[0] - self.gap < ts < s[1] + self.gap
        ]
        if not joined:
            if self.session_closed(min(ts + self.gap, frame)):
                return False
            sessions.append([ts, ts, frame, [(record.fields, ts)]])
            return True
        merged = [min(s[0] for s in joined + [[ts]]), max(s[1] for s in joined + [[0, ts]]), frame, []]
        for s in joined:
            merged[3].extend(s[3])
            sessions.remove(s)
        merged[3].append((record.fields, ts))
        sessions.append(merged)
        return True

    def fire_sessions(self, graph: Graph) -> None:
        for key_text in sorted(self.sessions):
            key_values, sessions = self.sessions[key_text]
            for session in sorted(sessions, key=lambda s: s[0]):
                end = self.session_end(session)
                if not self.session_closed(end):
                    continue
                sessions.remove(session)
                self.emit_group(graph, session[0], int(end), key_values, session[3])

    def receive(self, record: Record, graph: Graph) -> None:
        if self.gap is not None:
            open_starts = [record.ts]  # checked by place_in_session below
        else:
            open_starts = [s for s in self.windows_of(record.ts) if not self.is_closed(s)]
        type_error = None
        for aggregate in self.aggregates:
            if aggregate.function in NEEDS_NUMBER:
                value = get_path(record.fields, aggregate.field)
                if value is not None and not is_number(value):
                    type_error = f"{aggregate.field} must be a number, not {type_name(value)}"
            if aggregate.by is not None:
                value = get_path(record.fields, aggregate.by)
                if value is not None and not is_number(value):
                    type_error = f"{aggregate.by} must be a number, not {type_name(value)}"
            if aggregate.function in PICKS or aggregate.function == "top_k":
                value = get_path(record.fields, aggregate.field)
                if isinstance(value, (dict, list)):
                    type_error = f"{aggregate.field} is an object or array"
        if type_error:
            if record.origin is None:
                raise Ambiguous(f"{self.name}: a window result of the wrong type")
            if not open_starts:
                raise Ambiguous(f"{self.name}: record both late and of the wrong type")
            if record.accepted_by or record.rejected:
                raise Ambiguous(f"{self.name}: a record some windows reject and others take")
            record.rejected = True
            graph.bad_record(record.origin, type_error)
            return
        if record.rejected:
            raise Ambiguous(f"{self.name}: a record some windows reject and others take")
        if self.gap is not None and not self.place_in_session(record):
            open_starts = []
        elif self.gap is not None:
            record.accepted_by.add(self.name)
            return
        if not open_starts:
            if record.origin is None:
                raise Ambiguous(f"{self.name}: a late window result")
            graph.emit(self.name, "late", record)  # dropped when nobody reads .late
            return
        key_values = [get_path(record.fields, k) for k in self.key]
        if any(isinstance(v, (dict, list)) or is_number(v) for v in key_values):
            raise Ambiguous(f"{self.name}: numeric or object key {key_values}")
        record.accepted_by.add(self.name)
        for start in open_starts:
            group = self.groups.setdefault((start, json.dumps(key_values)), (key_values, []))
            group[1].append((record.fields, record.ts))

    def on_watermark(self, graph: Graph) -> None:
        self.input_watermark = graph.input_watermark(self)
        if self.gap is not None:
            self.fire_sessions(graph)
        due = sorted(g for g in self.groups if self.is_closed(g[0]))
        for group_id in due:
            key_values, entries = self.groups.pop(group_id)
            self.emit_group(graph, group_id[0], group_id[0] + self.size, key_values, entries)
        self.watermark = self.input_watermark - self.lateness

    def emit_group(self, graph: Graph, start: int, end: int, key_values: list, entries: list) -> None:
        rows = [fields for fields, _ in entries]
        times = [ts for _, ts in entries]
        result = {"window_start": format_time(start), "window_end": format_time(end)}
        result.update(zip(self.key, key_values))
        for aggregate in self.aggregates:
            result[aggregate.name] = aggregate.compute(rows, times)
        # Assumption for windows of windows: a result's event time is
        # window_end - 1 ms (inside its own window).
        graph.emit(self.name, "main", Record(result, end - 1, json.dumps(result), None))


class Sink(Node):
    kind = "sink"

    def __init__(self, name: str, spec: dict):
        check_keys(spec, {"input", "type", "path"}, name)
        if spec.get("type") != "file":
            raise CaseError(f"{name}: only file sinks are implemented")
        super().__init__(name, spec)
        self.path_text = spec["path"]
        self.lines: list[str] = []

    def receive(self, item: Any, graph: Graph) -> None:
        self.lines.append(item.raw if isinstance(item, Record) else json.dumps(item))


# ---------------------------------------------------------------------------
# Running a case under every allowed variant
# ---------------------------------------------------------------------------


def interleavings(sources: list[Source]) -> dict[str, list[Source]]:
    """Orders in which the sources' steps may be taken: each file in order,
    the files one after another in every order, and strict alternation."""
    variants = {}
    for order in itertools.permutations(sources):
        variants["sequential " + ",".join(s.name for s in order)] = [
            s for s in order for _ in range(s.steps())
        ]
    if len(sources) > 1:
        queues = [[s] * s.steps() for s in sources]
        alternation = [s for round_ in itertools.zip_longest(*queues) for s in round_ if s]
        variants["round robin"] = alternation
    return variants


def run(graph: Graph, schedule: list[Source], rejected_advances: bool) -> dict[str, list[str]]:
    for node in graph.nodes.values():
        node.watermark = NEG_INF
        if isinstance(node, (Source, Window)):
            node.reset()
        if isinstance(node, Sink):
            node.lines = []
        if isinstance(node, Source):
            node.rejected_advances = rejected_advances
    graph.dead_letter = []
    for source in schedule:
        source.step(graph)
        graph.advance_watermarks()
    outputs = {node.path_text: node.lines for node in graph.nodes.values() if isinstance(node, Sink)}
    outputs[DEAD_LETTER] = graph.dead_letter
    return outputs


DEAD_LETTER = "<dead letter>"


def canonical(lines: list[str]) -> list[str]:
    return sorted(json.dumps(json.loads(line), sort_keys=True) for line in lines)


def evaluate_case(case_dir: Path) -> dict[str, list[str]]:
    """The case's outputs, after checking that every variant agrees."""
    job = tomllib.loads((case_dir / "job.toml").read_text(encoding="utf-8"))
    check_keys(job, {"job", "sources", "filters", "windows", "sinks"}, "job file")
    check_keys(job.get("job", {}), {"name", "state_dir", "checkpoint_interval"}, "[job]")
    graph = Graph(job, case_dir)
    sources = [n for n in graph.nodes.values() if isinstance(n, Source)]
    reference = None
    for variant, schedule in interleavings(sources).items():
        for rejected_advances in (False, True):
            outputs = run(graph, schedule, rejected_advances)
            label = f"{variant}, rejected records {'move' if rejected_advances else 'keep'} the watermark"
            if reference is None:
                reference = (label, outputs)
                continue
            for name, lines in outputs.items():
                if canonical(lines) != canonical(reference[1][name]):
                    raise Ambiguous(
                        f"output {name} differs between '{reference[0]}' and '{label}':"
                        f" the case depends on something the contract leaves open"
                    )
    assert reference is not None
    return reference[1]


def sort_key(line: str) -> tuple:
    """Readable order for expected files: windows by time, errors by position."""
    row = json.loads(line)
    if isinstance(row, dict) and "window_start" in row and "window_end" in row:
        start = parse_event_time(row["window_start"]) or 0
        end = parse_event_time(row["window_end"]) or 0
        return (0, start, end, json.dumps(row), "")  # then key columns
    if isinstance(row, dict) and "position" in row and "source" in row:
        return (1, 0, row["position"]["line"], row["source"], "")
    return (2, 0, 0, "", "")  # records: keep their order (sort is stable)


def expected_files(case_dir: Path) -> dict[Path, str]:
    """Expected file -> its content: `out/<x>.jsonl` -> `expected.<x>.jsonl`
    (`result` -> `expected.jsonl`), dead letters -> `expected.dead-letter.jsonl`."""
    files = {}
    for output, lines in evaluate_case(case_dir).items():
        if output == DEAD_LETTER:
            if not lines:
                continue  # the harness checks that no dead-letter file has rows
            name = "expected.dead-letter.jsonl"
        else:
            match = re.fullmatch(r"out/([a-z0-9_]+)\.jsonl", output)
            if not match or match.group(1) == "dead-letter":
                raise CaseError(f"sink path {output} does not follow out/<name>.jsonl")
            name = "expected.jsonl" if match.group(1) == "result" else f"expected.{match.group(1)}.jsonl"
        files[case_dir / name] = "".join(line + "\n" for line in sorted(lines, key=sort_key))
    return files


def run_job(job_file: Path) -> None:
    """Write a job's outputs where `kflow run` writes them: sinks at their
    paths, dead letters at <state_dir>/dead-letter.jsonl."""
    case_dir = job_file.parent
    job = tomllib.loads(job_file.read_text(encoding="utf-8"))["job"]
    state_dir = job.get("state_dir", f".kflow/{job['name']}")
    for output, lines in evaluate_case(case_dir).items():
        path = case_dir / (f"{state_dir}/dead-letter.jsonl" if output == DEAD_LETTER else output)
        if output == DEAD_LETTER and not lines:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite expected files")
    mode.add_argument("--check", action="store_true", help="fail if an expected file is stale")
    mode.add_argument("--run", action="store_true", help="act as `kflow run` on one job file")
    parser.add_argument("cases", nargs="+", type=Path)
    args = parser.parse_args()
    if args.run:
        try:
            for job_file in args.cases:
                run_job(job_file)
        except (Ambiguous, CaseError) as error:
            print(f"{type(error).__name__}: {error}", file=sys.stderr)
            return 2
        return 0
    stale = 0
    for case_dir in args.cases:
        try:
            files = expected_files(case_dir)
        except (Ambiguous, CaseError) as error:
            print(f"{case_dir}: {type(error).__name__}: {error}", file=sys.stderr)
            return 2
        existing = set(case_dir.glob("expected*.jsonl"))
        for path, content in files.items():
            current = path.read_text(encoding="utf-8") if path.exists() else None
            if current != content:
                stale += 1
                print(f"{'wrote' if args.write else 'stale'}: {path}")
                if args.write:
                    path.write_text(content, encoding="utf-8")
        for path in existing - set(files):
            stale += 1
            print(f"{'removed' if args.write else 'stale'}: {path}")
            if args.write:
                path.unlink()
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
