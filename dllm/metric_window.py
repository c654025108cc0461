"""The metrics of a logging interval: every optimizer step's record (SFT and RL alike) is added
here, and each log line is the interval's summary, so a metric of some steps only is never lost.

Step metrics (`loss`, `grad_norm`, ...) are averaged over the interval's steps. Rollout metrics
(`reward`, `accuracy`, `kept_fraction`, ...) belong to the rollouts the interval's steps trained
on — every line covers at least one, whatever the rollout period — and are averaged over those
rollouts, each counted once however many of the steps trained on it. In both, counts
(`is_count`: `reward_failures`, `reward/TERM/COUNT`) are summed instead, and states (`LAST`: the
learning rate, the run's clock, running tallies, schedules) keep their last value. Each summary
says what it covers: `steps_covered` and `rollouts_covered`.
"""

from __future__ import annotations

from typing import Any

ROLLOUTS = "rollouts_covered"
STEPS = "steps_covered"
COUNTS = frozenset({"reward_failures", "dropped_groups"})
# Values that describe the run at a moment rather than a step's work: the last one holds.
LAST = frozenset({"lr", "elapsed", "skipped_steps", "gen_length", "rollout_block_size"})
LAST_PREFIXES = ("curriculum/",)


def is_count(key: str) -> bool:
    """Whether `key` counts events (summed over steps, rollouts and processes) rather than
    measuring them: the `COUNTS`, and a reward term's counters `reward/TERM/NAME` (e.g.
    `reward/code/judged_inside`; a term's mean score is `reward/TERM`)."""
    return key in COUNTS or (key.startswith("reward/") and key.count("/") >= 2)


def is_state(key: str) -> bool:
    return key in LAST or key.startswith(LAST_PREFIXES)


def aggregate(records: list[dict[str, Any]]) -> dict[str, float]:
    """Per key, over the records that have it as a number: the sum of counts, the last state,
    else the mean (keys in first-seen order)."""
    totals: dict[str, float] = {}
    seen: dict[str, int] = {}
    for record in records:
        for key, value in record.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            totals[key] = float(value) if is_state(key) else totals.get(key, 0.0) + float(value)
            seen[key] = seen.get(key, 0) + 1
    return {key: total if is_count(key) or is_state(key) else total / seen[key] for key, total in totals.items()}


class MetricWindow:
    """The steps and rollouts since the last log line (see the module docstring)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.steps: list[dict[str, Any]] = []
        self.rollouts: dict[int, dict[str, float]] = {}  # by the rollout's number, each once

    def add(self, record: dict[str, Any], rollout: tuple[int, dict[str, float]] | None = None) -> None:
        """One optimizer step's numbers and, for RL, the rollout it trained on (number, metrics)."""
        self.steps.append(dict(record))
        if rollout is not None:
            number, metrics = rollout
            self.rollouts.setdefault(number, dict(metrics))

    def summary(self) -> dict[str, float | int]:
        """The interval's line: step metrics, then rollout metrics, then what it covers."""
        line: dict[str, float | int] = {**aggregate(self.steps), **aggregate(list(self.rollouts.values()))}
        line[ROLLOUTS] = len(self.rollouts)
        line[STEPS] = len(self.steps)
        return line

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint taken between two log lines keeps, so a resumed run's next line
        covers the same steps and rollouts as an uninterrupted run's."""
        return {"steps": [dict(step) for step in self.steps], "rollouts": dict(self.rollouts)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps, self.rollouts = list(state["steps"]), dict(state["rollouts"])
