"""`boxed_format`: 1.0 when the completion states a final answer in a closed, non-empty
`\\boxed{...}` (or `\\fbox{...}`, or `\\boxed X`), found as `math` finds it; else 0.0."""

from __future__ import annotations

from typing import Any

from dllm.rewards.base import REWARDS, Reward
from dllm.text import last_boxed, strip_delimiters


@REWARDS.register("boxed_format")
class BoxedFormat(Reward):
    def __call__(self, prompts: list[str], completions: list[str], **fields: Any) -> list[float]:
        return [float(bool(strip_delimiters(last_boxed(completion) or ""))) for completion in completions]
