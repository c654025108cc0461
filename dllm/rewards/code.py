"""`code`: the fraction of its tests a completion's program passes, each run in the sandbox.

`tests[i]` is either a list of assert strings (function tests, each run in its own
sandboxed process) or a list of `{"input": str, "output": str}` cases (the program
reads `input` on stdin, exits with status 0 and prints `output`, compared after stripping
trailing whitespace from every line and dropping trailing blank lines). A JSON string
holding such a list is accepted too. A completion's program is its last ```python block
(```py, ```python3 and bare ``` count; an unclosed last block runs to the end of the text),
or the whole text when it has none. The optional field `time_limit[i]` (seconds) overrides
`time_limit` for row i.

A function test is judged outside the sandbox (`checks`): the sandbox evaluates only
the calls of the program the test makes and returns their values as plain data; the
assert itself runs here. An assert string may hold several statements, and a
HumanEval-style test (`def check(candidate): ...` then `check(entry_point)`) is one
string. A test that cannot be split so (it branches on the program's output, catches
exceptions, imports modules other than math and copy) runs inside the sandbox after the
program, passing only when the harness proves its last line ran; `last_counts` says how
many did. A test whose result cannot depend on the program (it does not compile, runs no
assert, or fails on its own values) is malformed: named in a warning and left out of its
row's score.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from dllm.errors import ConfigError
from dllm.rewards.base import REWARDS, Reward, RewardError, require_field
from dllm.sandbox import Job, Limits, Result, Sandbox
from dllm.sandbox.checks import MalformedTest, Split, Unsplittable, judge, split_test

logger = logging.getLogger(__name__)

_TAG = re.compile(r"[ \t]*([\w+.-]*)")
_CLOSING_FENCE = re.compile(r"^[ \t]*```", re.MULTILINE)
_PYTHON_TAGS = {"", "python", "py", "python3", "py3"}


def extract_code(completion: str) -> str:
    """The last Python (or untagged) fenced block of `completion`, else the whole text.

    A block opens at a ``` followed, on its line, by an optional tag and a newline; it runs to
    the next line starting with (indented) ```, or to the end of the text. One scan, in time
    linear in the text: a single regular expression for the whole block retried its line at
    every backtick of a fence that never reaches a newline (quadratic: 19 s for 200 KB of `)."""
    blocks, position = [], 0
    while (opening := completion.find("```", position)) >= 0:
        newline = completion.find("\n", opening + 3)
        if newline < 0:  # the last line: no fence opens there
            break
        tag = _TAG.match(completion, opening + 3, newline).group(1)
        closing = _CLOSING_FENCE.search(completion, newline + 1)
        end = closing.start() if closing else len(completion)
        if tag.lower() in _PYTHON_TAGS:
            blocks.append(completion[newline + 1 : end])
        position = closing.end() if closing else len(completion)
    return blocks[-1] if blocks else completion


def normalise_output(text: str) -> list[str]:
    """Lines with trailing whitespace stripped, trailing blank lines dropped."""
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def parse_tests(row: Any, index: int) -> list[str] | list[dict[str, str]]:
    """`tests[index]` checked: a non-empty list of assert strings, or of stdio cases."""
    where = f"reward 'code': tests[{index}]"
    if isinstance(row, str):
        try:
            row = json.loads(row)
        except json.JSONDecodeError:
            raise RewardError(f"{where} is a string that is not JSON; pass a list of assert strings") from None
    if not isinstance(row, (list, tuple)) or not row:
        raise RewardError(
            f"{where} is {type(row).__name__} {_preview(row)}; each row needs a non-empty list of assert strings "
            f"or of {{'input': str, 'output': str}} cases"
        )
    asserts = isinstance(row[0], str)  # the first case says which kind the row holds
    for j, case in enumerate(row):
        if not (isinstance(case, str) if asserts else _is_stdio_case(case)):
            raise RewardError(
                f"{where}[{j}] is {_preview(case)}; a row holds only assert strings, or only "
                f"{{'input': str, 'output': str}} cases"
            )
    return list(row) if asserts else [{"input": case["input"], "output": case["output"]} for case in row]


def _is_stdio_case(case: Any) -> bool:
    return isinstance(case, Mapping) and isinstance(case.get("input"), str) and isinstance(case.get("output"), str)


@REWARDS.register("code")
class CodeReward(Reward):
    """Runs each completion's program against its tests in the sandbox (`dllm.sandbox`).

    `time_limit`: CPU seconds per test (the wall clock allows 2 × time_limit + 1 s);
    `all_or_nothing`: 1.0 only when every test passes; `memory_mb`, `file_size_mb`,
    `open_files`, `processes`, `max_output_kb`: per-test limits; `workers`: tests run at once
    (None: one per usable CPU); `sandbox_uid`: first uid of the per-worker range used when
    running as root (None: stay root, and the process limit cannot bind); `namespaces`: use
    Linux namespaces (network, PID, mount, IPC) where the kernel allows; `allowed_packages`:
    installed packages programs may import besides the standard library (those not installed
    are skipped); nothing else of the host's Python installation is visible to them.
    """

    def __init__(
        self,
        time_limit: float = 5.0,
        all_or_nothing: bool = False,
        memory_mb: int = 1024,
        file_size_mb: int = 16,
        open_files: int = 64,
        processes: int = 32,
        max_output_kb: int = 1024,
        workers: int | None = None,
        sandbox_uid: int | None = 61000,
        namespaces: bool = True,
        allowed_packages: Sequence[str] = ("numpy",),
    ) -> None:
        if workers is not None and workers < 1:
            raise ConfigError(f"reward.workers={workers}: need at least 1, or null for one per usable CPU")
        if max_output_kb < 1:
            raise ConfigError(f"reward.max_output_kb={max_output_kb}: need at least 1")
        try:
            self.limits = _limits(
                time_limit,
                Limits(
                    memory_mb=memory_mb,
                    file_size_mb=file_size_mb,
                    open_files=open_files,
                    processes=processes,
                    output_bytes=max_output_kb * 1024,
                ),
            )
        except ValueError as exc:
            raise ConfigError(f"reward 'code': {exc}; fix the reward's limits") from None
        self.all_or_nothing = all_or_nothing
        self.workers = workers
        self.sandbox_uid = sandbox_uid
        self.namespaces = namespaces
        if isinstance(allowed_packages, str) or not all(
            isinstance(p, str) and p.isidentifier() for p in allowed_packages
        ):
            raise ConfigError(
                f"reward.allowed_packages={allowed_packages!r}: give a list of top-level package names, e.g. [numpy]"
            )
        self.allowed_packages = tuple(allowed_packages)
        self._sandbox: Sandbox | None = None
        self._lock = threading.Lock()
        self.last_counts: dict[str, int] = {}
        self._reported: set[str] = set()

    @property
    def sandbox(self) -> Sandbox:
        """The sandbox, started on first use (building the reward starts no process)."""
        with self._lock:
            if self._sandbox is None:
                self._sandbox = Sandbox(
                    self.workers,
                    self.limits,
                    self.sandbox_uid,
                    self.namespaces,
                    allowed_packages=self.allowed_packages,
                )
            return self._sandbox

    def close(self) -> None:
        """Stop the sandbox's workers (a later call starts them again)."""
        with self._lock:
            if self._sandbox is not None:
                self._sandbox.close()
                self._sandbox = None

    def __getstate__(self) -> dict:  # worker processes do not travel; a copy starts its own
        state = dict(self.__dict__)
        state["_sandbox"], state["_lock"] = None, None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

    def __call__(self, prompts: list[str], completions: list[str], **fields: Any) -> list[float]:
        n = len(completions)
        tests = require_field("tests", fields, "code", n)
        time_limits = require_field("time_limit", fields, "code", n) if "time_limit" in fields else [None] * n
        counts = dict.fromkeys(("judged_outside", "judged_inside", "malformed"), 0)
        rows: list[list[tuple[Job, Split | str | None]]] = []
        for i, (completion, row, time_limit) in enumerate(zip(completions, tests, time_limits)):
            program = extract_code(completion)
            limits = self.limits if time_limit is None else self._row_limits(time_limit, i)
            jobs = []
            for j, case in enumerate(parse_tests(row, i)):
                if not isinstance(case, str):
                    jobs.append((Job(program, stdin=case["input"], limits=limits), case["output"]))
                    continue
                try:
                    split = split_test(case)
                except (MalformedTest, Unsplittable) as exc:
                    malformed = isinstance(exc, MalformedTest)
                    counts["malformed" if malformed else "judged_inside"] += 1
                    self._report(case, f"tests[{i}][{j}]{_record_name(fields, i)}", exc, malformed)
                    if not malformed:
                        jobs.append((Job(program, test=case, limits=limits), None))
                    continue
                counts["judged_outside"] += 1
                jobs.append((Job(program, limits=limits, probes=tuple(zip(split.probes, split.sent))), split))
            rows.append(jobs)
        # Each distinct job runs once: a group of completions often repeats one program.
        unique = list(dict.fromkeys(job for row in rows for job, _ in row))
        results = dict(zip(unique, self.sandbox.run(unique))) if unique else {}
        _warn_sandbox_errors(results.values())
        self.last_counts = counts
        scores = []
        for row in rows:
            passed = sum(_passed(results[job], expected) for job, expected in row)
            scores.append(0.0 if not row else float(passed == len(row)) if self.all_or_nothing else passed / len(row))
        return scores

    def _report(self, test: str, where: str, exc: Exception, malformed: bool) -> None:
        """Say once per test (not per completion and step) why it is malformed, or why it is
        judged inside the sandbox."""
        if test in self._reported:
            return
        self._reported.add(test)
        if malformed:
            message = "code reward: %s is malformed (%s) and is left out of its row's score; fix the data set: %s"
        else:
            message = (
                "code reward: %s is judged inside the sandbox, the weaker way (%s; counted in "
                "reward/code/judged_inside); a plain assert on the program's calls is judged outside: %s"
            )
        logger.warning(message, where, exc, _preview(test))

    def _row_limits(self, time_limit: Any, index: int) -> Limits:
        try:
            return _limits(time_limit, self.limits)
        except (TypeError, ValueError):
            raise RewardError(
                f"reward 'code': time_limit[{index}]={time_limit!r}; give seconds > 0, or None for the default"
            ) from None


def _limits(time_limit: float, base: Limits) -> Limits:
    if isinstance(time_limit, bool) or not float(time_limit) > 0:
        raise ValueError(f"time_limit={time_limit!r} must be a positive number of seconds")
    return replace(base, cpu_seconds=float(time_limit), wall_seconds=2 * float(time_limit) + 1)


def _passed(result: Result, expected: Split | str | None) -> bool:
    if expected is None:  # a test run inside the sandbox: the harness's proof that it ran to the end
        return result.passed
    if isinstance(expected, Split):
        return result.status == "ok" and judge(expected, result.report)
    return result.status == "ok" and normalise_output(result.stdout) == normalise_output(expected)


def _record_name(fields: dict[str, Any], index: int) -> str:
    """` (task_id=...)` where the batch carries an identifying field, else ""."""
    for name in ("task_id", "id", "problem_id", "question_id"):
        values = fields.get(name)
        if isinstance(values, (list, tuple)) and index < len(values):
            return f" ({name}={values[index]!r})"
    return ""


def _warn_sandbox_errors(results) -> None:
    failed = [r for r in results if r.status == "sandbox_error"]
    if failed:
        logger.warning(
            "code reward: %d test run(s) failed in the sandbox itself and count as failed: %s",
            len(failed),
            failed[0].stderr.strip()[:300],
        )


def _preview(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
