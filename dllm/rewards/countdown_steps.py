"""`countdown_steps`: a process reward for countdown — partial credit, placed on tokens.

For every binary operation of the completion whose operands are given numbers (each used
at most once) and whose result, with the numbers not yet used, can still reach the target,
`step_credit` lands on the token that completes it (the last character of the
sub-expression). The outcome is another term's job: compose with `countdown`, e.g.
`reward=weighted_sum reward.terms='{countdown: 1.0, countdown_steps: 1.0}'`. With a value
model (`algorithm=tracerl_value`) each credit lands on the decoding step that revealed its
token; group advantages see the sum.
"""

from __future__ import annotations

import ast
import bisect
import itertools
from fractions import Fraction
from typing import Any

from dllm.errors import ConfigError
from dllm.rewards.base import REWARDS, Reward, require_field
from dllm.rewards.countdown import _BINARY, NotAnExpression, _evaluate, parse_expression


def reachable(values: list[Fraction], target: Fraction) -> bool:
    """Whether + - * / over all of `values` (each once, any order and grouping) can make `target`."""
    if len(values) == 1:
        return values[0] == target
    for i, j in itertools.permutations(range(len(values)), 2):
        rest = [v for k, v in enumerate(values) if k not in (i, j)]
        a, b = values[i], values[j]
        results = {a + b, a - b, a * b} | ({a / b} if b != 0 else set())
        if any(reachable([*rest, r], target) for r in results):
            return True
    return False


def useful_steps(text: str, numbers: list[int], target: Fraction) -> list[int]:
    """Character offsets (in `text`) of the last character of every useful sub-expression."""
    try:
        parse_expression(text)
    except NotAnExpression:
        return []
    stripped = len(text) - len(text.lstrip())
    tree = ast.parse(text.strip(), mode="eval")
    ends = []
    for node in ast.walk(tree.body):
        if not isinstance(node, ast.BinOp) or type(node.op) not in _BINARY:
            continue
        literals = [n.value for n in ast.walk(node) if isinstance(n, ast.Constant)]
        remaining = list(numbers)
        if any(literal not in remaining or remaining.remove(literal) for literal in literals):
            continue  # a number not given, or used twice
        try:
            value = _evaluate(node, [])  # exact and never eval-ed: the grammar-checked tree is walked
        except ZeroDivisionError:
            continue
        if reachable([*map(Fraction, remaining), value], target):
            ends.append(stripped + node.end_col_offset - 1)
    return sorted(ends)


@REWARDS.register("countdown_steps")
class CountdownSteps(Reward):
    """Step-level: `[(token_position, step_credit), ...]` per completion (see the module doc)."""

    def __init__(self, step_credit: float = 0.1) -> None:
        if not 0 < step_credit <= 1:
            raise ConfigError(f"reward.step_credit must be in (0, 1], got {step_credit}")
        self.step_credit = step_credit

    def __call__(self, prompts: list[str], completions: list[str], **fields: Any) -> list[list[tuple[int, float]]]:
        numbers = require_field("numbers", fields, "countdown_steps", len(completions))
        targets = require_field("target", fields, "countdown_steps", len(completions))
        offsets = fields.get("token_offsets") or [list(range(len(c))) for c in completions]
        scores = []
        for text, given, target, starts in zip(completions, numbers, targets, offsets):
            ends = useful_steps(text, [int(n) for n in given], Fraction(target))
            # the token holding each end character: its start is the last start at or before it
            scores.append([(bisect.bisect_right(starts, end) - 1, self.step_credit) for end in ends if starts])
        return scores
