"""The reward interface and its registry.

A reward is a callable over a batch: `reward(prompts, completions, **fields) -> list[float]`,
one score per completion. `fields` are the task's columns (`answer=[...]`, `tests=[...]`);
a reward takes the ones it needs and ignores the rest (`truncated=[...]`, True where a
completion hit the length cap without an EOS, reaches every reward).

A reward is a weighted sum of named terms: a plain reward is one term, itself, weight 1;
`weighted_sum` composes several. `score_batch` is the call the RL loop and the evaluator
make: it checks each term's output, logs and zeroes a term that raises, returns NaN or
runs past a deadline, and reports the total, each term's scores and the failure count.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import numbers
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dllm.errors import DllmError
from dllm.registry import Registry

logger = logging.getLogger(__name__)

Term = tuple[str, float, Callable[..., Any]]


class Reward(ABC):
    # When True, a completion whose `truncated` field is True scores 0 in every term: a
    # response cut at the length cap counts as wrong. `weighted_sum` sets it from its config.
    zero_truncated: bool = False

    @abstractmethod
    def __call__(self, prompts: list[str], completions: list[str], **fields: Any) -> list[float]:
        """One score per completion."""

    def weighted_terms(self) -> list[Term]:
        """The `(name, weight, reward)` terms whose weighted sum this reward is; a plain
        reward is one term: itself, weight 1, named after its registry key."""
        return [(reward_name(self), 1.0, self)]

    def breakdown(self, prompts: list[str], completions: list[str], **fields: Any) -> dict[str, list[float]]:
        """Each term's own (unweighted) scores by term name, one per completion; the reward
        is `sum(weight * scores)` over `weighted_terms()`. A plain reward: `{name: self(...)}`."""
        return combine_terms(self, prompts, completions, fields).terms


class RewardRegistry(Registry):
    """Rewards are any callables with the reward signature, as the docs promise: a class (a
    `Reward` subclass or any class with `__call__`) is a factory, built with the options; a
    function or an instance is the reward itself (a function's options are bound with
    `functools.partial`, as Hydra's `_partial_: true` does). Each reward's signature is
    checked when it is built."""

    def check_entry(self, name: str, obj: Any) -> None:
        if isinstance(obj, type) and "__call__" not in _attributes(obj):  # calling it would only construct it
            raise TypeError(
                f"reward {name!r}: class {obj.__qualname__} has no __call__; {REWARD_SIGNATURE} "
                f"(a function, a class with __call__, or an instance of one)"
            )
        super().check_entry(name, obj)

    def make(self, name: str, entry: Any, kwargs: dict[str, Any]) -> Any:
        if isinstance(entry, type):
            reward = entry(**kwargs)
        elif kwargs and (inspect.isfunction(entry) or inspect.ismethod(entry)):
            reward = functools.partial(entry, **kwargs)
        elif kwargs:
            raise RewardError(
                f"reward {name!r} is a registered instance and takes no options (got {', '.join(kwargs)}); "
                f"register its class to build it with options"
            )
        else:
            reward = entry
        return checked_reward(reward, name)


REWARD_SIGNATURE = "a reward is called as reward(prompts, completions, **fields) -> list[float]"
_FIELD_PROBE = "any_task_field"  # every task column and `truncated` reach every reward as keywords


def checked_reward(reward: Any, name: str | None = None) -> Any:
    """`reward`, after checking it can be called as `reward(prompts, completions, **fields)`:
    a wrong signature would otherwise fail on every batch (and `score_batch` score it 0)."""
    name = name or reward_name(reward)
    if not callable(reward):
        raise RewardError(f"reward {name!r}: {_preview(reward)} is not callable; {REWARD_SIGNATURE}")
    try:
        signature = inspect.signature(reward)
    except (TypeError, ValueError):
        return reward  # no signature to read (a builtin): its first call is the check
    try:
        signature.bind(["prompt"], ["completion"], **{_FIELD_PROBE: []})
    except TypeError as exc:
        raise RewardError(
            f"reward {name!r} has the signature {signature} ({exc}); {REWARD_SIGNATURE}: take the prompts and "
            f"completions positionally and the task's fields as **fields"
        ) from None
    return reward


def _attributes(cls: type) -> set[str]:
    return {key for klass in cls.__mro__[:-1] for key in vars(klass)}  # all but `object`'s


REWARDS = RewardRegistry("reward")


class RewardError(DllmError, ValueError):
    """A reward that broke its contract (not one number per completion) or lacks a field it needs."""


class MissingFieldError(RewardError, KeyError):
    """A reward needs a field the task does not provide."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0])


def require_field(name: str, fields: dict[str, Any], reward: str, length: int) -> list[Any]:
    """The column `name` of `fields`, checked to hold one value per completion."""
    if name not in fields:
        raise MissingFieldError(
            f"reward {reward!r} needs the field {name!r} (one per completion); "
            f"got fields: {', '.join(sorted(fields)) or '(none)'}"
        )
    column = list(fields[name])
    if len(column) != length:
        raise RewardError(f"reward {reward!r}: {len(column)} values of {name!r} for {length} completions")
    return column


def no_gold(answer: Any) -> bool:
    """Whether a gold answer is missing: None, or a float NaN (a table's empty cell). Such an
    answer matches no completion: its `str` (`"None"`, `"nan"`) is no answer."""
    return answer is None or (isinstance(answer, float) and math.isnan(answer))


def reward_name(reward: Any) -> str:
    """The registry key `reward` is registered under, else its function or class name."""
    return REWARDS.name_of(reward) or getattr(reward, "__name__", type(reward).__name__)


@dataclass
class RewardScores:
    """Scores of one batch. `total[i] = sum(weight * terms[name][i])`; `terms`: each term's
    own scores (unweighted; a step-level term's score is the sum of its values); `failures`:
    term calls that raised or ran out of time, plus scores that were NaN or infinite; each of
    those scored 0. `steps[i]`: the weighted step-level values `(token_position, value)` of
    completion i (see `StepValues`), whose sum is part of `total[i]`. `counts`: what the
    terms counted in this batch (a term's `last_counts`, e.g. the code reward's tests judged
    inside the sandbox), as `"reward/<term>/<name>"`, for the run's metrics."""

    total: list[float]
    terms: dict[str, list[float]] = field(default_factory=dict)
    failures: int = 0
    steps: list[list[tuple[int, float]]] = field(default_factory=list)
    counts: dict[str, float] = field(default_factory=dict)


def score_batch(
    reward: Callable[..., Any],
    prompts: list[str],
    completions: list[str],
    fields: Mapping[str, Any],
    timeout_s: float | None = None,
) -> RewardScores:
    """Score a batch so that no reward stops or hangs the run.

    Each term of `reward` (see `Reward.weighted_terms`; any other callable is one term) is
    called once. A term that raises, or runs past `timeout_s` seconds (None: no limit),
    logs a warning and scores 0 for the whole batch; a NaN or infinite score becomes 0;
    each counts in `failures`. A term that returns anything but one number per completion
    raises `RewardError`, and a `DllmError` raised inside a term (a missing field, a
    missing package) goes through: those are mistakes to fix, not bad luck.
    """
    if timeout_s is not None and not timeout_s > 0:
        raise ValueError(f"timeout_s must be a positive number of seconds or None, got {timeout_s!r}")
    return combine_terms(reward, prompts, completions, fields, guard=True, timeout_s=timeout_s)


def combine_terms(
    reward: Callable[..., Any],
    prompts: list[str],
    completions: list[str],
    fields: Mapping[str, Any],
    guard: bool = False,
    timeout_s: float | None = None,
) -> RewardScores:
    """Call each term of `reward`, check its scores, zero truncated completions when the
    reward asks for it, and sum. `guard=True` is `score_batch`; False lets errors through."""
    n = len(completions)
    terms_of = getattr(reward, "weighted_terms", None)
    terms: list[Term] = terms_of() if terms_of is not None else [(reward_name(reward), 1.0, reward)]
    scores: dict[str, list[float]] = {}
    step_values: dict[str, list[StepValues]] = {}
    counts: dict[str, float] = {}
    failures = 0
    for name, _, term in terms:
        if guard:
            raw = _guarded_call(name, term, prompts, completions, fields, timeout_s)
            if raw is _FAILED:
                scores[name], step_values[name], failures = [0.0] * n, [[] for _ in range(n)], failures + 1
                continue
        else:
            raw = term(prompts, completions, **fields)
        scores[name], bad, step_values[name] = _checked_scores(name, raw, n)
        failures += bad
        counts |= {f"reward/{name}/{key}": float(v) for key, v in (getattr(term, "last_counts", None) or {}).items()}
    if getattr(reward, "zero_truncated", False) and "truncated" in fields:
        cut = [bool(c) for c in require_field("truncated", fields, reward_name(reward), n)]
        scores = {name: [0.0 if c else s for s, c in zip(values, cut)] for name, values in scores.items()}
        step_values = {name: [[] if c else v for v, c in zip(values, cut)] for name, values in step_values.items()}
    total = [sum(weight * scores[name][i] for name, weight, _ in terms) for i in range(n)]
    steps = [
        [(position, weight * value) for name, weight, _ in terms for position, value in step_values[name][i]]
        for i in range(n)
    ]
    return RewardScores(total=[float(t) for t in total], terms=scores, failures=failures, steps=steps, counts=counts)


class _TimedOut(Exception):
    pass


_FAILED = object()  # what `_guarded_call` returns for a call that raised or timed out


def _guarded_call(
    name: str,
    term: Callable[..., Any],
    prompts: list[str],
    completions: list[str],
    fields: Mapping[str, Any],
    timeout_s: float | None,
) -> Any:
    """The term's raw output, or `_FAILED` after logging why it failed (raised, or timed out)."""
    try:
        if timeout_s is None:
            return term(prompts, completions, **fields)
        return _call_with_deadline(name, term, prompts, completions, fields, timeout_s)
    except DllmError:
        raise
    except _TimedOut:
        logger.warning(
            "reward %r took longer than %gs on a batch of %d; scored 0 (the call is abandoned, not stopped)",
            name,
            timeout_s,
            len(completions),
        )
    except Exception as exc:
        logger.warning(
            "reward %r raised %s: %s; its %d scores count 0", name, type(exc).__name__, exc, len(completions)
        )
    return _FAILED


def _call_with_deadline(
    name: str,
    term: Callable[..., Any],
    prompts: list[str],
    completions: list[str],
    fields: Mapping[str, Any],
    timeout_s: float,
) -> Any:
    # A thread cannot be killed: past the deadline it is abandoned. It is a daemon so that it
    # never keeps the interpreter alive; rewards that can spin (math) bound their own work.
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = term(prompts, completions, **fields)
        except BaseException as exc:  # handed to the caller's thread, which decides
            outcome["error"] = exc

    thread = threading.Thread(target=run, name=f"dllm-reward-{name}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise _TimedOut
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


StepValues = list[tuple[int, float]]


def _checked_scores(name: str, raw: Any, n: int) -> tuple[list[float], int, list[StepValues]]:
    """`raw` as n scores, NaN and infinities replaced by 0 (and counted), and the step-level
    values: a completion's score may be a list of `(token_position, value)` pairs (a process
    reward) instead of a number; its score is then their sum."""
    if hasattr(raw, "tolist") and not isinstance(raw, (list, tuple)):
        raw = raw.tolist()  # numpy arrays and tensors
    if not isinstance(raw, (list, tuple)):
        raise RewardError(
            f"reward {name!r} returned {_preview(raw)} ({type(raw).__name__}) for {n} completions; "
            f"a reward returns a list of floats, one per completion: fix its __call__"
        )
    if len(raw) != n:
        raise RewardError(
            f"reward {name!r} returned {len(raw)} scores for {n} completions: {_preview(raw)}; "
            f"it must return exactly one float per completion, in order"
        )
    scores: list[float] = []
    steps: list[StepValues] = []
    bad = 0
    for i, value in enumerate(raw):
        pairs = _step_values(name, i, value) if isinstance(value, (list, tuple)) else None
        if pairs is None and not isinstance(value, numbers.Real):
            raise RewardError(
                f"reward {name!r} returned a non-number at index {i}: {_preview(value)} ({type(value).__name__}); "
                f"each score must be a float (or a list of (token_position, value) pairs): convert it"
            )
        if pairs is not None:
            finite = [(position, v) for position, v in pairs if math.isfinite(v)]
            bad += len(pairs) - len(finite)
            steps.append(finite)
            scores.append(sum(v for _, v in finite))
            continue
        value = float(value)
        if not math.isfinite(value):
            bad += 1
            value = 0.0
        steps.append([])
        scores.append(value)
    if bad:
        logger.warning("reward %r returned %d NaN or infinite scores of %d; they count 0", name, bad, n)
    return scores, bad, steps


def _step_values(name: str, index: int, value: Sequence[Any]) -> StepValues:
    pairs = []
    for pair in value:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and isinstance(pair[0], numbers.Integral)
                and isinstance(pair[1], numbers.Real)):  # fmt: skip
            raise RewardError(
                f"reward {name!r} returned {_preview(value)} at index {index}: a step-level score is a list of "
                f"(token_position: int, value: float) pairs"
            )
        pairs.append((int(pair[0]), float(pair[1])))
    return pairs


def _preview(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
