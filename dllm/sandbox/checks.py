"""Split a function test into what the sandbox computes and what the trusted process judges.

`split_test(source)` walks a test (an MBPP/TraceRL assert string, or a HumanEval-style
`def check(candidate): ...` followed by `check(entry_point)`) with the trusted evaluator
(`trusted_eval`). Every value the test needs from the program becomes a *probe*: a Python
expression of the program's names and plain literals, e.g. `add(1, 2)`, that the sandbox
evaluates after the program and returns as plain data. Everything else, the assert's
comparison included, stays here, as `Split.checks`, decided by `judge` once the sandbox's
answers are back. The expected values never enter the sandbox, and the program never
evaluates the comparison that decides its score.

A test that cannot be split so (it branches on the program's output, catches exceptions,
imports modules other than math and copy, ...) raises `Unsplittable`: the reward runs it
the hardened way, inside the sandbox, and counts it. A test that no program can pass or
fail raises `MalformedTest`: it does not compile, runs no assert (a `check` never called),
or fails on its own values (an assert false, or an error, whatever the program returns).
"""

from __future__ import annotations

import ast
import functools
import json
from dataclasses import dataclass
from typing import Any

from dllm.sandbox.trusted_eval import MalformedTest, Unsplittable, force
from dllm.sandbox.walker import Walker

__all__ = ["MalformedTest", "Split", "Unsplittable", "decode_report", "judge", "split_test"]

MAX_DEPTH = 200  # of a value the sandbox returns


@dataclass(frozen=True)
class Split:
    """`probes[k]`: an expression the sandbox evaluates in the program's namespace (earlier
    results are `__dllm_probe_<j>`); `sent[k]`: whether its value comes back (else it only
    feeds later probes); `checks`: what must all be true, in order."""

    probes: tuple[str, ...]
    sent: tuple[bool, ...]
    checks: tuple[Any, ...]


def split_test(source: str) -> Split:
    """The test `source` split into probes and checks; raises `MalformedTest` or `Unsplittable`."""
    outcome = _split_cached(source)
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


@functools.lru_cache(maxsize=4096)
def _split_cached(source: str) -> Split | Exception:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError) as exc:
        return MalformedTest(f"does not compile: {getattr(exc, 'msg', exc)} (line {getattr(exc, 'lineno', '?')})")
    except (RecursionError, MemoryError):
        return Unsplittable("too deeply nested to parse here")
    if not any(isinstance(node, ast.Assert) for node in ast.walk(tree)):
        return MalformedTest("asserts nothing: any program that runs would pass it")
    walker = Walker()
    try:
        walker.run(tree.body)
    except (Unsplittable, MalformedTest) as exc:
        return exc
    except RecursionError:
        return Unsplittable("too deeply nested to walk here")
    if not walker.asserts_run:
        return MalformedTest("no assert runs: a check function never called? end the test with check(<entry point>)")
    return Split(tuple(walker.probes), tuple(k in walker.sent for k in range(len(walker.probes))), tuple(walker.checks))


# --- judging ---------------------------------------------------------------------------


class ProbeFailed(Exception):
    pass


class Answers:
    """The sandbox's report: per probe ["v", value] (plain data), ["k"] (kept there),
    ["x"] (it raised) or ["u", type] (not plain data); missing: the program stopped."""

    def __init__(self, entries: list) -> None:
        self.entries = entries

    def value(self, index: int) -> Any:
        if index >= len(self.entries):
            raise ProbeFailed("the program stopped before answering")
        entry = self.entries[index]
        if entry[0] != "v":
            raise ProbeFailed(f"probe {index}: {entry}")
        return entry[1]


def judge(split: Split, report: bytes) -> bool:
    """Whether every check holds on the values the sandbox reported; False unless the report
    answers every probe (the program may have stopped the harness before its end)."""
    entries = decode_report(report, len(split.probes))
    if entries is None or len(entries) != len(split.probes):
        return False
    answers = Answers(entries)
    for check in split.checks:
        try:
            if not force(check, answers):
                return False
        except Exception:  # a failed probe, a non-plain value, an operation that does not apply
            return False
    return True


def decode_report(report: bytes, probes: int) -> list | None:
    """The report's entries, each value rebuilt as exact built-in types; a malformed entry
    becomes ["u", ...]; None for a missing or malformed report."""
    try:
        entries = json.loads(report) if report else None
    except (ValueError, RecursionError):
        return None
    if type(entries) is not list:
        return None
    decoded = []
    for entry in entries[:probes]:
        if type(entry) is list and entry and entry[0] == "v" and len(entry) == 2:
            try:
                entry = ["v", _decode(entry[1], 0)]
            except (TypeError, ValueError, RecursionError, OverflowError) as exc:
                entry = ["u", f"malformed value: {exc}"]
        elif not (type(entry) is list and entry and entry[0] in ("k", "x", "u")):
            entry = ["u", "malformed entry"]
        decoded.append(entry)
    return decoded


_CONTAINERS = {"l": list, "t": tuple, "s": set, "f": frozenset}


def _decode(value: Any, depth: int) -> Any:
    kind = type(value)
    if kind in (type(None), bool, int, float, str):
        return value
    if kind is not list or not value or type(value[0]) is not str or depth > MAX_DEPTH:
        raise ValueError(f"not a plain value ({kind.__name__})")
    tag, items = value[0], value[1:]
    if tag == "b" and len(items) == 1 and type(items[0]) is str:
        return items[0].encode("latin-1")
    if tag == "I" and len(items) == 1 and type(items[0]) is str:
        return int(items[0], 16)
    if tag == "c" and len(items) == 2 and all(type(x) in (int, float) for x in items):
        return complex(*items)
    if tag in _CONTAINERS:
        return _CONTAINERS[tag](_decode(item, depth + 1) for item in items)
    if tag == "d" and len(items) % 2 == 0:
        return {_decode(k, depth + 1): _decode(v, depth + 1) for k, v in zip(items[::2], items[1::2])}
    raise ValueError(f"unknown tag {tag!r}")
