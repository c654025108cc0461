"""`math`: 1.0 when the completion's last `\\boxed{...}` is equivalent to the answer, else 0.0.

The answer of a completion is its last top-level `\\boxed{...}` (or `\\fbox{...}`), found by
brace matching, so nested braces (`\\boxed{\\frac{1}{2}}`) and escaped ones (`\\{1, 2\\}`)
are kept whole; `\\boxed 5` without braces takes the next run of non-space characters. A
completion without one, or whose last one is never closed, scores 0. The ground truth may
be bare (`"1/2"`, `"\\frac{1}{2}"`) or contain a `\\boxed{}` of its own.

Equivalence is math-verify's (fractions, decimals, sets, intervals, matrices, units and
LaTeX spellings), computed in a child process (`_math_worker.py`) with a deadline per
verification: math-verify's own timeout relies on SIGALRM, which only works in the main
thread, and some expressions (`9^{9^{9^{9}}}`) never finish. The worker stops itself at
`timeout_s`; a worker stuck past `timeout_s + 1` s is killed and restarted. Either way the
answer scores 0. This works from any thread, and the reward's process never runs sympy.

A call verifies its distinct answers side by side on a pool of such workers (one per usable
CPU, or `workers`), under a total budget `batch_timeout_s`: an answer whose turn comes after
the budget is spent scores 0 unverified, and one running when it ends is stopped, so a call
returns within about `batch_timeout_s + 1` s (plus the start of a worker restarted after a
kill) however many answers are pathological. Answers equal to the gold up to whitespace,
and completions without an answer, never reach a worker.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from dllm.errors import ConfigError
from dllm.rewards.base import REWARDS, Reward, RewardError, no_gold, require_field
from dllm.sandbox import usable_cpus
from dllm.text import BOX, last_boxed, strip_delimiters

logger = logging.getLogger(__name__)

_WORKER = Path(__file__).with_name("_math_worker.py")
# Run the worker by path with no current directory on sys.path: this package's `math.py`
# must never shadow the standard library's `math` in the child.
_BOOTSTRAP = (
    "import runpy, sys; sys.path[:] = [p for p in sys.path if p]; runpy.run_path(sys.argv[1], run_name='__main__')"
)
# Grace past `timeout_s` before the parent kills a worker that did not stop itself.
KILL_GRACE_S = 1.0


def gold_expression(answer: Any) -> str:
    """The ground truth as LaTeX without delimiters: the content of its last box if it has
    one, else the whole text, with surrounding `$` signs and whitespace removed."""
    text = str(answer).strip()
    if BOX.search(text):
        text = last_boxed(text) or ""
    return strip_delimiters(text)


class MathVerifier:
    """A math-verify worker process, shared by the `math` rewards of a process: started on
    first use, killed and restarted when a verification overruns. Thread-safe."""

    startup_timeout_s = 120.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[str] | None = None
        self._replies: queue.Queue[str | None] | None = None

    def start(self) -> None:
        """Start the worker now if none runs (`equivalent` would start it anyway), so that
        a caller can keep the startup out of a verification's deadline."""
        with self._lock:
            self._started()

    def equivalent(self, gold: str, pred: str, timeout_s: float, kill_after_s: float | None = None) -> bool | None:
        """math-verify's verdict on `pred` against `gold` (LaTeX without delimiters), or None
        when it did not finish: the worker gave up at `timeout_s`, or did not answer within
        `kill_after_s` (default `timeout_s + KILL_GRACE_S`) and was killed."""
        kill_after_s = timeout_s + KILL_GRACE_S if kill_after_s is None else kill_after_s
        with self._lock:
            process, replies = self._started()
            try:
                process.stdin.write(json.dumps({"gold": gold, "pred": pred, "timeout": timeout_s}) + "\n")
                process.stdin.flush()
                line = replies.get(timeout=kill_after_s)
            except (OSError, queue.Empty):
                line = None
            if line is None:  # stuck, or died (a crash inside sympy): the next call starts a fresh one
                self._stop()
                return None
            reply = json.loads(line)
            if "error" in reply:
                logger.debug("math-verify failed on %r vs %r: %s", pred, gold, reply["error"])
            return None if reply.get("timeout") else bool(reply["ok"])

    def close(self) -> None:
        """Stop the worker (it restarts on the next call)."""
        with self._lock:
            self._stop()

    @property
    def pid(self) -> int | None:
        """The worker's process id, or None when none runs (for tests and debugging)."""
        return None if self._process is None else self._process.pid

    def _started(self) -> tuple[subprocess.Popen[str], queue.Queue[str | None]]:
        if self._process is not None and self._process.poll() is None and self._replies is not None:
            return self._process, self._replies
        self._stop()
        process = subprocess.Popen(
            [sys.executable, "-c", _BOOTSTRAP, str(_WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        replies: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_pump, args=(process.stdout, replies), name="dllm-math-verify", daemon=True).start()
        try:
            ready = replies.get(timeout=self.startup_timeout_s)
        except queue.Empty:
            ready = None
        reply = json.loads(ready) if ready else {"error": "it exited or did not start in time"}
        if "error" in reply:
            process.kill()
            process.wait()
            raise RewardError(
                f"reward 'math': the math-verify worker failed to start ({reply['error']}); "
                f"install math-verify in this environment: pip install math-verify"
            )
        self._process, self._replies = process, replies
        return process, replies

    def _stop(self) -> None:
        process, self._process, self._replies = self._process, None, None
        if process is None:
            return
        try:
            process.kill()
            process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            pass

    def __reduce__(self):
        # A copy (pickle, deepcopy) gets its own worker, started on its first use.
        return (MathVerifier, ())

    def _forget(self) -> None:
        # In a forked child: the worker and the lock belong to the parent; start afresh.
        self._lock = threading.Lock()
        self._process, self._replies = None, None


def _pump(stream: IO[str], replies: queue.Queue[str | None]) -> None:
    for line in stream:
        replies.put(line)
    replies.put(None)


class VerifierPool:
    """The math-verify workers of a process, shared by its `math` rewards: as many as the
    largest call asked for, each started on first use. Thread-safe; a copy (pickle) gets
    its own, and a forked child starts afresh."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._verifiers: list[MathVerifier] = []

    def take(self, count: int) -> list[MathVerifier]:
        """`count` verifiers (the first ones, created as needed); concurrent calls share
        them, each verifier serialising its own requests."""
        with self._lock:
            while len(self._verifiers) < count:
                self._verifiers.append(MathVerifier())
            return self._verifiers[:count]

    def close(self) -> None:
        """Stop every worker (they restart on the next call)."""
        with self._lock:
            verifiers = list(self._verifiers)
        for verifier in verifiers:
            verifier.close()

    def __reduce__(self):
        return (VerifierPool, ())

    def _forget(self) -> None:
        # In a forked child: the workers belong to the parent; start afresh.
        self._lock = threading.Lock()
        self._verifiers = []


POOL = VerifierPool()
atexit.register(POOL.close)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=POOL._forget)


@REWARDS.register("math")
class Math(Reward):
    """Options: `timeout_s` per verification; `batch_timeout_s` for all the verifications of
    one call (default `2 * timeout_s`); `workers` verifying side by side (default one per
    usable CPU). `timeouts` counts the answers that scored 0 for lack of time (`last_counts`:
    in the last call, logged as the metric `reward/math/timeouts`)."""

    def __init__(
        self, timeout_s: float = 5.0, batch_timeout_s: float | None = None, workers: int | None = None
    ) -> None:
        if not timeout_s > 0:
            raise ConfigError(f"reward.timeout_s={timeout_s!r} must be a positive number of seconds, e.g. 5")
        if batch_timeout_s is not None and not batch_timeout_s > 0:
            raise ConfigError(
                f"reward.batch_timeout_s={batch_timeout_s!r} must be a positive number of seconds, "
                f"e.g. 10, or null for 2 * timeout_s"
            )
        if workers is not None and not workers >= 1:
            raise ConfigError(f"reward.workers={workers!r}: need at least 1, or null for one per usable CPU")
        self.timeout_s = float(timeout_s)
        self.batch_timeout_s = 2 * self.timeout_s if batch_timeout_s is None else float(batch_timeout_s)
        self.workers = int(workers) if workers is not None else usable_cpus()
        self.pool = POOL
        self.timeouts = 0
        self.last_counts: dict[str, int] = {}

    def __call__(self, prompts: list[str], completions: list[str], **fields: Any) -> list[float]:
        answers = require_field("answer", fields, "math", len(completions))
        keys: list[tuple[str, str] | None] = []
        verdicts: dict[tuple[str, str], bool | None] = {}  # a group often repeats an answer
        for completion, answer in zip(completions, answers):
            pred = strip_delimiters(last_boxed(completion) or "")
            gold = "" if no_gold(answer) else gold_expression(answer)
            key = (gold, pred) if pred and gold else None
            if key is not None and key not in verdicts and "".join(gold.split()) == "".join(pred.split()):
                verdicts[key] = True
            keys.append(key)
        verdicts.update(self._verify([key for key in dict.fromkeys(keys) if key is not None and key not in verdicts]))
        unfinished = sum(v is None for v in verdicts.values())
        self.last_counts = {"timeouts": unfinished}
        if unfinished:
            self.timeouts += unfinished
            logger.warning(
                "math: %d answer(s) not verified within reward.timeout_s=%g / reward.batch_timeout_s=%g scored 0; "
                "raise them if answers are long",
                unfinished,
                self.timeout_s,
                self.batch_timeout_s,
            )
        return [1.0 if key is not None and verdicts[key] else 0.0 for key in keys]

    def _verify(self, todo: list[tuple[str, str]]) -> dict[tuple[str, str], bool | None]:
        """math-verify's verdict on each (gold, pred), None for those not finished when the
        call's budget ran out; verified on up to `workers` workers side by side."""
        verdicts: dict[tuple[str, str], bool | None] = dict.fromkeys(todo)
        if not todo:
            return verdicts
        deadline = time.monotonic() + self.batch_timeout_s
        pending = iter(todo)
        take = threading.Lock()
        errors: list[Exception] = []

        def work(verifier: MathVerifier) -> None:
            try:
                while True:
                    with take:
                        key = next(pending, None)
                    if key is None or time.monotonic() >= deadline:
                        return  # past the deadline, this and every later answer stay None
                    verifier.start()  # a (re)start after a kill is not the verification's time
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return
                    verdicts[key] = verifier.equivalent(*key, min(self.timeout_s, remaining))
            except Exception as exc:  # a worker that cannot start: raised in the caller's thread
                errors.append(exc)

        verifiers = self.pool.take(min(len(todo), self.workers))
        threads = [threading.Thread(target=work, args=(v,), name="dllm-math-batch", daemon=True) for v in verifiers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return verdicts
