"""`judge`: a step-level reward from a judge over prefixes (e.g. a process reward model).

`judge` names a callable, `"package.module:function"`, taking `(prompts, prefixes)` (lists of
strings, one per prefix) and returning one score per prefix. Each completion is cut at every
`every` tokens (and at its end); the judge scores each prefix, and the difference from the
previous prefix's score lands on the prefix's last token — a potential-based shaping whose
values sum to the judge's score of the whole completion. The judge is called once per batch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from dllm.errors import ConfigError
from dllm.rewards.base import REWARDS, Reward, require_field

Judge = Callable[[list[str], list[str]], list[float]]


def import_judge(path: str) -> Judge:
    """The callable `"package.module:function"` names; a clear error when it does not exist."""
    module_name, _, attribute = path.partition(":")
    try:
        judge = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(
            f"reward.judge={path!r} does not name a callable ({exc}); give 'package.module:function'"
        ) from None
    if not callable(judge):
        raise ConfigError(f"reward.judge={path!r} is not callable")
    return judge


@REWARDS.register("judge")
class JudgeReward(Reward):
    def __init__(self, judge: str, every: int = 4) -> None:
        if every < 1:
            raise ConfigError(f"reward.every must be >= 1 token, got {every}")
        self.judge = import_judge(judge)
        self.every = every

    def __call__(self, prompts: list[str], completions: list[str], **fields: Any) -> list[list[tuple[int, float]]]:
        offsets = require_field("token_offsets", fields, "judge", len(completions))
        cuts = []  # per completion: (last token of the prefix, prefix text)
        for text, starts in zip(completions, offsets):
            ends = list(range(self.every - 1, len(starts), self.every))
            if starts and (not ends or ends[-1] != len(starts) - 1):
                ends.append(len(starts) - 1)
            cuts.append([(end, text[: starts[end + 1]] if end + 1 < len(starts) else text) for end in ends])
        flat_prompts = [prompt for prompt, row in zip(prompts, cuts) for _ in row]
        scores = iter(self.judge(flat_prompts, [prefix for row in cuts for _, prefix in row]) if flat_prompts else [])
        values = []
        for row in cuts:
            previous, pairs = 0.0, []
            for end, _ in row:
                score = float(next(scores))
                pairs.append((end, score - previous))
                previous = score
            values.append(pairs)
        return values
