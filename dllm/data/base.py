"""The task interface and its registry.

A task yields training examples (an endless synthetic stream or a file), a fixed held-out
evaluation set, and the fields its rewards need (`answer`, `tests`, ...).
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from dllm.registry import Registry


@dataclass(frozen=True)
class Example:
    """`prompt` text; `response`, the SFT target (no EOS); `fields`, what rewards receive."""

    prompt: str
    response: str
    fields: dict[str, Any] = field(default_factory=dict)


class Task(ABC):
    """A source of prompts with known answers.

    `gen_length` is the number of tokens a sampler generates for this task's prompts.
    """

    gen_length: int

    @abstractmethod
    def train_example(self, rng: random.Random) -> Example:
        """One training example drawn with `rng` (the trainer owns and checkpoints `rng`)."""

    @abstractmethod
    def eval_examples(self) -> list[Example]:
        """The held-out evaluation set: the same list every call, disjoint from training."""

    def sample(self, rng: random.Random, n: int) -> list[Example]:
        return [self.train_example(rng) for _ in range(n)]


TASKS = Registry("task", interface=Task)


def reward_fields(examples: list[Example]) -> dict[str, list[Any]]:
    """Column view of the examples' fields: `{"answer": [...], ...}` for reward calls."""
    keys = examples[0].fields.keys() if examples else ()
    return {key: [example.fields[key] for example in examples] for key in keys}
