"""A fixed train / held-out split of a task's problems, by a fixed hash of each problem.

The hash must not depend on the process (Python's `hash()` of a string is salted per run),
on the seed or on the order examples are drawn in, so a held-out example is never trained
on by any run. `HeldoutSplit` is the one guarded split every synthetic task draws from: an
impossible split is refused when the task is built, and every draw is bounded.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from dllm.errors import ConfigError

Problem = TypeVar("Problem")

# A settings combination with (almost) no problem on one side of the split fails loudly
# instead of looping forever: this many draws in a row without one.
MAX_ATTEMPTS = 10_000
# Collecting distinct held-out problems stops after this many repeats in a row: the held-out
# side is (nearly) exhausted.
MAX_REPEATS = 200


def heldout_bucket(key: str) -> int:
    """A bucket in 0..99 for `key`: the same in every process and on every machine."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 100


def is_heldout(key: str, heldout_percent: int) -> bool:
    """True for about `heldout_percent` percent of keys, always the same ones."""
    return heldout_bucket(key) < heldout_percent


@dataclass(frozen=True)
class HeldoutSplit(Generic[Problem]):
    """The split of a synthetic task's problems: `generate(rng)` draws one problem (None: a
    failed draw), `in_heldout(problem)` says which side it is on, `key(problem)` identifies it
    among the held-out ones. Pass functions or bound methods (a task stays picklable).

    `pool` counts the distinct problems (`pool_is_bound`: an upper bound); a split whose
    held-out share of it (`heldout_percent`) cannot hold `num_eval` of them is refused at
    construction, naming the numbers, `pool_name` (what the pool is) and `fix`."""

    pool_name: str
    pool: int
    heldout_percent: int
    num_eval: int
    generate: Callable[[random.Random], Problem | None]
    in_heldout: Callable[[Problem], bool]
    fix: str
    key: Callable[[Problem], Hashable] | None = None  # None: the problem itself
    pool_is_bound: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.heldout_percent < 100:
            raise ConfigError(f"task.heldout_percent must be in 1..99, got {self.heldout_percent}")
        if self.num_eval < 1:
            raise ConfigError(f"task.num_eval must be positive, got {self.num_eval}")
        heldout = self.pool * self.heldout_percent // 100
        if self.num_eval > heldout:
            raise ConfigError(
                f"{self.pool_name} has {'at most ' if self.pool_is_bound else ''}{self.pool} distinct problems, "
                f"{self.heldout_percent}% held out (about {heldout}): num_eval={self.num_eval} distinct ones cannot "
                f"be held out; lower task.num_eval or {self.fix}"
            )

    def draw(self, rng: random.Random, heldout: bool) -> Problem:
        """One problem from the held-out side (`heldout`) or the training side, in at most
        `MAX_ATTEMPTS` draws."""
        for _ in range(MAX_ATTEMPTS):
            problem = self.generate(rng)
            if problem is not None and self.in_heldout(problem) == heldout:
                return problem
        side = "held-out" if heldout else "training"
        raise ConfigError(f"{self.pool_name}: no {side} problem found in {MAX_ATTEMPTS} draws; {self.fix}")

    def eval_problems(self, seed: int) -> list[Problem]:
        """`num_eval` distinct held-out problems drawn with `seed`, in the order first drawn."""
        rng = random.Random(seed)
        problems: dict[Hashable, Problem] = {}
        repeats = 0
        while len(problems) < self.num_eval:
            problem = self.draw(rng, heldout=True)
            key = self.key(problem) if self.key else problem
            repeats = repeats + 1 if key in problems else 0
            if repeats >= MAX_REPEATS:
                raise ConfigError(
                    f"{self.pool_name}: only {len(problems)} distinct held-out problems found (the split is nearly "
                    f"exhausted); lower task.num_eval ({self.num_eval}) or {self.fix}"
                )
            problems.setdefault(key, problem)
        return list(problems.values())
