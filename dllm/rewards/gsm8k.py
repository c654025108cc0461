"""`gsm8k`: 1.0 when the completion's final number equals the GSM8K answer, else 0.0.

The completion's answer is the first number after its last `####` when there is one, else
its last number. Numbers may carry thousands separators (`1,234`, LaTeX `1{,}234`), a sign,
decimals, and any surrounding text (`$18`, `18 dollars`, `18.`); they compare exactly, as
fractions (`18.00` equals `18`). The `answer` field is a GSM8K solution ending in
`#### 18`, or the number itself.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any

from dllm.rewards.base import REWARDS, Reward, RewardError, no_gold, require_field

# A minus sign counts only when it does not follow a word character or a closing bracket,
# so the range "10-15" ends in 15, not -15. Commas group digits only in threes.
NUMBER = re.compile(r"(?<![\w)\]}])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|(?<![\w.])-?\.\d+")


def numbers_in(text: str) -> list[Fraction]:
    """Every number in `text`, in order, as exact fractions."""
    text = text.replace("{,}", ",")
    return [Fraction(match.replace(",", "")) for match in NUMBER.findall(text)]


def final_number(text: str) -> Fraction | None:
    """The first number after the last `####`, else the last number of `text`, else None."""
    text = str(text)
    if "####" in text:
        after = numbers_in(text.rsplit("####", 1)[1])
        if after:
            return after[0]
    found = numbers_in(text)
    return found[-1] if found else None


@REWARDS.register("gsm8k")
class GSM8K(Reward):
    def __call__(self, prompts: list[str], completions: list[str], **fields: Any) -> list[float]:
        answers = require_field("answer", fields, "gsm8k", len(completions))
        scores = []
        for i, (completion, answer) in enumerate(zip(completions, answers)):
            if no_gold(answer):  # no gold answer: nothing matches it
                scores.append(0.0)
                continue
            gold = final_number(answer)
            if gold is None:
                raise RewardError(
                    f"reward 'gsm8k': answer[{i}]={str(answer)[-80:]!r} has no number; the answer field must be "
                    f"a GSM8K solution ending in '#### N' or a number"
                )
            scores.append(float(final_number(completion) == gold))
        return scores
