"""`exact_match`: 1.0 when the completion equals the answer (surrounding whitespace ignored).

With `partial_credit`, a wrong completion scores the share of answer positions it gets right
(character by character, over the longer of the two), so a nearly right sum earns more than
a wildly wrong one: a dense signal for RL on synthetic tasks. A correct one still scores 1.0.
"""

from __future__ import annotations

from typing import Any

from dllm.rewards.base import REWARDS, Reward, require_field


@REWARDS.register("exact_match")
class ExactMatch(Reward):
    def __init__(self, case_sensitive: bool = True, partial_credit: bool = False) -> None:
        self.case_sensitive = case_sensitive
        self.partial_credit = partial_credit

    def _normalise(self, text: str) -> str:
        text = str(text).strip()
        return text if self.case_sensitive else text.lower()

    def score(self, completion: str, answer: str) -> float:
        completion, answer = self._normalise(completion), self._normalise(answer)
        if completion == answer:
            return 1.0
        if not self.partial_credit:
            return 0.0
        same = sum(a == b for a, b in zip(completion, answer))
        return same / max(len(completion), len(answer), 1)

    def __call__(self, prompts: list[str], completions: list[str], **fields: Any) -> list[float]:
        answers = require_field("answer", fields, "exact_match", len(completions))
        return [self.score(completion, answer) for completion, answer in zip(completions, answers)]
