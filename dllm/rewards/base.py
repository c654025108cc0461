"""The reward interface and its registry.

A reward is a callable over a batch: `reward(prompts, completions, **fields) -> list[float]`,
one score per completion. `fields` are the task's columns (`answer=[...]`, `tests=[...]`);
a reward takes the ones it needs and ignores the rest.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from dllm.registry import Registry


class Reward(ABC):
    @abstractmethod
    def __call__(self, prompts: list[str], completions: list[str], **fields: Any) -> list[float]:
        """One score per completion."""


REWARDS = Registry("reward", interface=Reward)


def require_field(name: str, fields: dict[str, Any], reward: str, length: int) -> list[Any]:
    """The column `name` of `fields`, checked to hold one value per completion."""
    if name not in fields:
        raise KeyError(
            f"reward {reward!r} needs the field {name!r} (one per completion); "
            f"got fields: {', '.join(sorted(fields)) or '(none)'}"
        )
    column = list(fields[name])
    if len(column) != length:
        raise ValueError(f"reward {reward!r}: {len(column)} values of {name!r} for {length} completions")
    return column
