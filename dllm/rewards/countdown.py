"""`countdown`: does the completion combine the given numbers into the target?

Semantics of d1 / TinyZero's countdown reward: 1.0 for an expression that uses each given
number exactly once and evaluates to the target; `format_score` for a well-formed
expression that is wrong (other numbers, another value, a division by zero); 0.0 for
anything that is not an expression of the allowed grammar.

The completion is never `eval`-ed. It is parsed with `ast` and walked over a whitelist:
non-negative integer literals, binary `+ - * /`, unary `-` and parentheses (which `ast`
absorbs). Powers, floor division, names, calls, attributes, floats, strings, comparisons
... are outside the grammar and score 0.0. Arithmetic is exact (`Fraction`), so `7/3*3`
is 7; the result is compared with the target within `tolerance`.

`parse_expression` returns the literals, the value and every intermediate result (one per
binary operation, in evaluation order): what a process reward needs to give partial
credit for useful sub-results. This module scores the final answer only.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from dllm.errors import ConfigError
from dllm.rewards.base import REWARDS, Reward, RewardError, require_field

_BINARY: dict[type[ast.operator], Callable[[Fraction, Fraction], Fraction]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
# Checked before `ast.parse`, so that Python-only spellings of a number ("0x1F", "1_000",
# "1e3", "2.5") never become literals, and long junk is refused without being parsed.
_ALLOWED_CHARACTERS = frozenset("0123456789+-*/() ")


class NotAnExpression(ValueError):
    """The text is not an expression of the countdown grammar."""


@dataclass(frozen=True)
class ParsedExpression:
    """A well-formed countdown expression.

    `literals`: the integers written, in reading order. `value`: the exact result, or None
    when some division divides by zero. `steps`: the result of every binary operation in
    evaluation order (left operand first), ending with `value`; empty for a lone number;
    cut at the first division by zero.
    """

    literals: tuple[int, ...]
    value: Fraction | None
    steps: tuple[Fraction, ...]


def parse_expression(text: str) -> ParsedExpression:
    """Parse and evaluate `text` (surrounding whitespace ignored) without executing it.

    Raises `NotAnExpression` for anything outside the grammar: integer literals, binary
    `+ - * /`, unary `-`, parentheses.
    """
    text = text.strip()
    if not text or not set(text) <= _ALLOWED_CHARACTERS:
        raise NotAnExpression(f"not a countdown expression: {text!r}")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        # ValueError: e.g. an integer literal too long to convert; RecursionError: absurd nesting
        raise NotAnExpression(f"not a countdown expression: {text!r}") from None
    literals: list[int] = []
    _collect_literals(tree.body, literals)
    steps: list[Fraction] = []
    try:
        value: Fraction | None = _evaluate(tree.body, steps)
    except ZeroDivisionError:
        value = None
    return ParsedExpression(tuple(literals), value, tuple(steps))


def _collect_literals(node: ast.expr, literals: list[int]) -> None:
    """Check `node` against the grammar and append its integer literals in reading order."""
    stack = [node]
    while stack:  # iterative: a long chain of operations must not exhaust the Python stack
        node = stack.pop()
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            stack += [node.right, node.left]
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            stack.append(node.operand)
        elif isinstance(node, ast.Constant) and type(node.value) is int:
            literals.append(node.value)
        else:
            what = type(node.op).__name__ if isinstance(node, (ast.BinOp, ast.UnaryOp)) else type(node).__name__
            raise NotAnExpression(f"{what} is not allowed in a countdown expression")


def _evaluate(root: ast.expr, steps: list[Fraction]) -> Fraction:
    """Exact value of a grammar-checked tree; appends each binary result to `steps`.

    Post-order with an explicit stack (left operand first), so depth costs no recursion.
    """
    values: list[Fraction] = []
    stack: list[tuple[ast.expr, bool]] = [(root, False)]
    while stack:
        node, operands_done = stack.pop()
        if isinstance(node, ast.Constant):
            values.append(Fraction(node.value))
        elif not operands_done:
            stack.append((node, True))
            if isinstance(node, ast.BinOp):
                stack += [(node.right, False), (node.left, False)]
            else:
                stack.append((node.operand, False))  # type: ignore[attr-defined]
        elif isinstance(node, ast.UnaryOp):
            values.append(-values.pop())
        else:
            right, left = values.pop(), values.pop()
            values.append(_BINARY[type(node.op)](left, right))  # type: ignore[attr-defined]
            steps.append(values[-1])
    return values.pop()


@REWARDS.register("countdown")
class CountdownReward(Reward):
    """1.0 when the completion uses each of `numbers` exactly once and equals `target`.

    Fields: `numbers` (a list of integers per completion) and `target` (a number). A
    well-formed expression that misses gets `format_score`; one outside the grammar 0.0.
    """

    def __init__(self, format_score: float = 0.1, tolerance: float = 1e-5) -> None:
        if not 0.0 <= format_score < 1.0:
            raise ConfigError(
                f"reward.format_score must be in [0, 1) (below the 1.0 of a correct answer), got {format_score}; "
                "d1 uses 0.1"
            )
        if not 0.0 <= tolerance < 0.5:
            raise ConfigError(f"reward.tolerance must be in [0, 0.5), got {tolerance}; the default is 1e-5")
        self.format_score = float(format_score)
        self.tolerance = float(tolerance)

    def score(self, completion: str, numbers: list[int], target: float | Fraction) -> float:
        """The reward of one completion."""
        try:
            parsed = parse_expression(completion)
        except NotAnExpression:
            return 0.0
        # Compare multisets: each given number once, no other number, no number left out.
        if sorted(parsed.literals) != sorted(int(n) for n in numbers):
            return self.format_score
        if parsed.value is None or abs(parsed.value - Fraction(target)) > self.tolerance:
            return self.format_score
        return 1.0

    def __call__(self, prompts: list[str], completions: list[str], **fields: Any) -> list[float]:
        numbers = require_field("numbers", fields, "countdown", len(completions))
        targets = require_field("target", fields, "countdown", len(completions))
        try:
            numbers = [[int(n) for n in row] for row in numbers]
            targets = [Fraction(t) for t in targets]
        except (TypeError, ValueError) as exc:
            raise RewardError(
                f"reward 'countdown': numbers must be lists of integers and target numbers ({exc})"
            ) from None
        return [self.score(c, n, t) for c, n, t in zip(completions, numbers, targets)]
