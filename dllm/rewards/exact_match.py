"""`exact_match`: 1.0 when the completion equals the answer (surrounding whitespace ignored)."""

from __future__ import annotations

from typing import Any

from dllm.rewards.base import REWARDS, Reward, require_field


@REWARDS.register("exact_match")
class ExactMatch(Reward):
    def __init__(self, case_sensitive: bool = True) -> None:
        self.case_sensitive = case_sensitive

    def _normalise(self, text: str) -> str:
        text = str(text).strip()
        return text if self.case_sensitive else text.lower()

    def __call__(self, prompts: list[str], completions: list[str], **fields: Any) -> list[float]:
        answers = require_field("answer", fields, "exact_match", len(completions))
        return [
            float(self._normalise(completion) == self._normalise(answer))
            for completion, answer in zip(completions, answers)
        ]
