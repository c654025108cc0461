"""`acme_len`: 1.0 for a completion of at most `max_chars` characters, falling linearly to 0 at twice that.

A plain class with `__call__`, as TRL users write rewards: dllm needs no base class."""

from __future__ import annotations

from typing import Any


class LengthReward:
    def __init__(self, max_chars: int = 8) -> None:
        self.max_chars = max_chars

    def __call__(self, prompts: list[str], completions: list[str], **fields: Any) -> list[float]:
        return [max(0.0, min(1.0, 2.0 - len(c) / self.max_chars)) for c in completions]
