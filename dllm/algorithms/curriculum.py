"""Curricula for RL: which prompts a rollout draws, and schedules over the run.

`Curriculum` keeps a fixed pool of `pool_size` training prompts and, per prompt, a running
pass rate (the share of its completions scoring >= 1, averaged with weight `ema` on the
newest rollout). A rollout draws prompts:
- `order="uniform"`: uniformly from the pool;
- `order="pass_rate"`: weighted by p(1 - p) (most informative where the policy is unsure;
  unvisited prompts count as p = 0.5);
- `order="difficulty"`: uniformly among the prompts whose `difficulty_field` value is at most
  the current step's limit in `difficulty_schedule` (easy first).
Dynamic filtering skips prompts seen `min_visits` times whose pass rate is >= `skip_above`
(always solved) or <= `skip_below` (never solved); when every prompt is skipped, all return.

`Schedule` maps a stage's optimizer step to a value (`{0: 4, 60: 8}`: 4 from step 0, 8 from
step 60), for the rollout block size and the generation length.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any, Literal

from dllm.data.base import Example, Task
from dllm.errors import ConfigError


class Schedule:
    """A value by step: a constant, or `{first_step: value, ...}` with sorted non-negative steps."""

    def __init__(self, values: int | Mapping[Any, int], name: str) -> None:
        if isinstance(values, Mapping):
            steps = [int(step) for step in values]
            if not steps or steps[0] != 0 or any(s < 0 for s in steps) or steps != sorted(set(steps)):
                raise ConfigError(
                    f"{name} schedule {dict(values)} must map increasing, non-negative steps starting at 0 to values "
                    f"(e.g. {{0: 4, 60: 8}})"
                )
            self.points = [(int(step), int(value)) for step, value in values.items()]
        else:
            self.points = [(0, int(values))]
        if any(value < 1 for _, value in self.points):
            raise ConfigError(f"{name} values must be positive, got {[v for _, v in self.points]}")
        self.name = name

    def __call__(self, step: int) -> int:
        return [value for first, value in self.points if first <= step][-1]

    @property
    def values(self) -> list[int]:
        return [value for _, value in self.points]


class Curriculum:
    def __init__(
        self,
        order: Literal["uniform", "pass_rate", "difficulty"] = "pass_rate",
        pool_size: int = 256,
        ema: float = 0.5,
        skip_above: float | None = None,
        skip_below: float | None = None,
        min_visits: int = 2,
        difficulty_field: str = "difficulty",
        difficulty_schedule: dict[int, float] | None = None,
        seed: int = 0,
    ) -> None:
        if order not in ("uniform", "pass_rate", "difficulty"):
            raise ConfigError(f"curriculum.order must be uniform, pass_rate or difficulty, got {order!r}")
        if pool_size < 1 or not 0 < ema <= 1 or min_visits < 1:
            raise ConfigError(
                f"curriculum: pool_size ({pool_size}) and min_visits ({min_visits}) must be >= 1, ema ({ema}) in (0, 1]"
            )
        if order == "difficulty" and not difficulty_schedule:
            raise ConfigError("curriculum.order=difficulty needs difficulty_schedule, e.g. {0: 1, 100: 2}")
        self.order = order
        self.pool_size = pool_size
        self.ema = ema
        self.skip_above, self.skip_below = skip_above, skip_below
        self.min_visits = min_visits
        self.difficulty_field = difficulty_field
        self.difficulty_schedule = dict(difficulty_schedule or {0: float("inf")})
        self.seed = seed
        self.pool: list[Example] = []
        self.visits: list[int] = []
        self.pass_rate: list[float] = []
        self.skipped = 0

    def start(self, task: Task) -> None:
        """Draw the pool (the same for a given seed); checks the difficulty field exists."""
        self.pool = task.sample(random.Random(self.seed), self.pool_size)
        self.visits = [0] * len(self.pool)
        self.pass_rate = [0.5] * len(self.pool)
        if self.order == "difficulty" and self.difficulty_field not in self.pool[0].fields:
            raise ConfigError(
                f"curriculum.difficulty_field={self.difficulty_field!r} is not a field of the task's examples "
                f"(fields: {', '.join(self.pool[0].fields) or 'none'}); set curriculum.difficulty_field"
            )

    def _eligible(self, step: int) -> list[int]:
        limit = [v for first, v in sorted(self.difficulty_schedule.items()) if int(first) <= step][-1]
        indices = range(len(self.pool))
        if self.order == "difficulty":
            indices = [i for i in indices if float(self.pool[i].fields[self.difficulty_field]) <= limit]
        kept = [i for i in indices if not self._skip(i)]
        self.skipped = len(indices) - len(kept)
        return kept or list(indices)

    def _skip(self, index: int) -> bool:
        if self.visits[index] < self.min_visits:
            return False
        rate = self.pass_rate[index]
        return (self.skip_above is not None and rate >= self.skip_above) or (
            self.skip_below is not None and rate <= self.skip_below
        )

    def draw(self, rng: random.Random, count: int, step: int) -> list[int]:
        """Indices into the pool of `count` prompts for a rollout at `step`."""
        eligible = self._eligible(step)
        if self.order == "pass_rate":
            weights = [self.pass_rate[i] * (1 - self.pass_rate[i]) + 1e-3 for i in eligible]
            return rng.choices(eligible, weights=weights, k=count)
        return [rng.choice(eligible) for _ in range(count)]

    def update(self, indices: list[int], solved: list[float]) -> None:
        """Fold one rollout's share of solved completions per drawn prompt into its pass rate."""
        for index, share in zip(indices, solved):
            self.visits[index] += 1
            weight = 1.0 if self.visits[index] == 1 else self.ema
            self.pass_rate[index] = (1 - weight) * self.pass_rate[index] + weight * share

    def metrics(self) -> dict[str, float]:
        visited = [rate for rate, visits in zip(self.pass_rate, self.visits) if visits]
        return {
            "curriculum/skipped": float(self.skipped),
            "curriculum/visited": float(len(visited)),
            "curriculum/mean_pass_rate": sum(visited) / len(visited) if visited else 0.0,
        }

    def state_dict(self) -> dict[str, Any]:
        return {"visits": self.visits, "pass_rate": self.pass_rate}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.visits, self.pass_rate = list(state["visits"]), list(state["pass_rate"])
