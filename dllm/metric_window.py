"""The metrics of a logging interval: every optimizer step's record (SFT and RL alike) is added
here, and each log line is the interval's summary, so that a metric drawn on some steps only (a
rollout's `reward`, `accuracy`, `kept_fraction`, ...) reaches every line whose interval drew it.

Per key, over the steps of the interval that have it: counts (`is_count`) are summed, states
(`LAST`: the learning rate, the run's clock, running tallies) keep their last value, and every
other metric is averaged. Each summary says what it covers: `steps_covered` (optimizer steps)
and `rollouts_covered` (rollouts drawn, each marked by its step's `rollouts_covered: 1`).
"""

from __future__ import annotations

from typing import Any

ROLLOUTS = "rollouts_covered"
STEPS = "steps_covered"
# Per-interval counts, summed: failed reward calls, rollouts drawn.
COUNTS = frozenset({"reward_failures", ROLLOUTS})
# Values that describe the run at a moment rather than a step's work: the last one holds.
LAST = frozenset({"lr", "elapsed", "skipped_steps", "gen_length", "rollout_block_size"})
LAST_PREFIXES = ("curriculum/",)


def is_count(key: str) -> bool:
    """Whether `key` counts events (summed over steps and processes) rather than measuring them:
    the `COUNTS`, and a reward term's counters `reward/TERM/NAME` (e.g. `reward/code/judged_inside`;
    a term's mean score is `reward/TERM`)."""
    return key in COUNTS or (key.startswith("reward/") and key.count("/") >= 2)


class MetricWindow:
    """Accumulates step records between two log lines (see the module docstring)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.steps = 0
        self.totals: dict[str, float] = {}
        self.seen: dict[str, int] = {}  # steps that had each key (insertion order: the log line's)

    def add(self, record: dict[str, Any]) -> None:
        """One optimizer step's numbers; keys that are not numbers are ignored."""
        self.steps += 1
        for key, value in record.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if key in LAST or key.startswith(LAST_PREFIXES):
                self.totals[key] = float(value)
            else:
                self.totals[key] = self.totals.get(key, 0.0) + float(value)
            self.seen[key] = self.seen.get(key, 0) + 1

    def summary(self) -> dict[str, float | int]:
        """The interval's line: sums of counts, last states, means of the rest, and its coverage."""
        line: dict[str, float | int] = {}
        for key, total in self.totals.items():
            keeps_total = is_count(key) or key in LAST or key.startswith(LAST_PREFIXES)
            line[key] = total if keeps_total else total / self.seen[key]
        line[ROLLOUTS] = int(self.totals.get(ROLLOUTS, 0))
        line[STEPS] = self.steps
        return line

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint taken between two log lines keeps, so a resumed run's next line
        covers the same steps as an uninterrupted run's."""
        return {"steps": self.steps, "totals": dict(self.totals), "seen": dict(self.seen)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps, self.totals, self.seen = state["steps"], dict(state["totals"]), dict(state["seen"])
