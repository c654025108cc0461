"""`countdown`: combine the given numbers into a target, `"22:3,5,7="` -> `"3*5+7"`.

The game of d1 / TinyZero, sized for a character-level model: a few small numbers and a
target reached by a random expression, so every prompt is solvable. Each number is used
exactly once, with `+ - * /` and parentheses; the `countdown` reward checks any answer.

Targets come from playing the game at random, as in the TV show: pick two of the remaining
numbers, combine them with an operator whose result is a positive integer, put the result
back, until one number is left. The SFT response is not that random expression but one
fixed solution per prompt (`solve`: the numbers in prompt order when they can reach the
target, left-deep chains, fewest parentheses): a small model learns a function of the
prompt far faster than a random choice among solutions. A prompt belongs to the held-out
split by a fixed hash of its sorted numbers and target, so no ordering of a held-out prompt
is ever trained on.

The prompt puts the target first so that the numbers sit right before the response, at the
same distance from it whatever the target's width.
"""

from __future__ import annotations

import itertools
import math
import random
from functools import cached_property

from dllm.data.base import TASKS, Example, Task
from dllm.data.split import HeldoutSplit, is_heldout
from dllm.errors import ConfigError

OPERATORS = "+-*/"
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}

Node = int | tuple[str, "Node", "Node"]  # a number, or (operator, left, right)


def render(node: Node) -> str:
    """`node` as text with the fewest parentheses that keep its value."""
    if isinstance(node, int):
        return str(node)
    op, left, right = node
    left_text, right_text = render(left), render(right)
    if isinstance(left, tuple) and _PRECEDENCE[left[0]] < _PRECEDENCE[op]:
        left_text = f"({left_text})"
    # Equal precedence on the right needs parentheses only under - and /: a-(b-c) != a-b-c,
    # while a+(b-c) == a+b-c and a*(b/c) == a*b/c.
    if isinstance(right, tuple) and (
        _PRECEDENCE[right[0]] < _PRECEDENCE[op] or (_PRECEDENCE[right[0]] == _PRECEDENCE[op] and op in "-/")
    ):
        right_text = f"({right_text})"
    return f"{left_text}{op}{right_text}"


def longest_expression(num_numbers: int, max_number: int) -> int:
    """An upper bound on the characters of a rendered expression: the digits, one operator
    between numbers, and at most one pair of parentheses per non-root operation."""
    return num_numbers * len(str(max_number)) + (num_numbers - 1) + 2 * max(num_numbers - 2, 0)


def _combine(a: int, b: int, operators: str) -> list[tuple[str, int]]:
    """(operator, a op b) for each allowed operator whose result is a positive integer."""
    results = []
    for op in operators:
        if op == "+":
            results.append((op, a + b))
        elif op == "*":
            results.append((op, a * b))
        elif op == "-" and a > b:
            results.append((op, a - b))
        elif op == "/" and a % b == 0:
            results.append((op, a // b))
    return results


def solve_in_order(numbers: list[int], target: int, operators: str = OPERATORS) -> Node | None:
    """An expression over `numbers` in this order reaching `target` with positive-integer
    intermediate results, or None. Deterministic: of the candidates, the one found first when
    splits are tried right to left (left-deep chains, fewest parentheses) and operators in
    the order of `operators`."""
    n = len(numbers)
    # reachable[i][j]: value -> first expression over numbers[i..j] (inclusive) found
    reachable: list[list[dict[int, Node]]] = [[{} for _ in range(n)] for _ in range(n)]
    for i, number in enumerate(numbers):
        reachable[i][i][number] = number
    for length in range(2, n + 1):
        for i in range(n - length + 1):
            j = i + length - 1
            cell = reachable[i][j]
            for k in range(j - 1, i - 1, -1):
                for a, left in reachable[i][k].items():
                    for b, right in reachable[k + 1][j].items():
                        for op, value in _combine(a, b, operators):
                            cell.setdefault(value, (op, left, right))
    return reachable[0][n - 1].get(target)


def solve(numbers: list[int], target: int, operators: str = OPERATORS) -> Node | None:
    """A solution using each of `numbers` once, preferring them in the given order, then
    the other orders in `itertools.permutations` order; None if there is none."""
    tried: set[tuple[int, ...]] = set()
    for order in itertools.permutations(numbers):
        if order not in tried:
            tried.add(order)
            solution = solve_in_order(list(order), target, operators)
            if solution is not None:
                return solution
    return None


@TASKS.register("countdown")
class CountdownTask(Task):
    """`num_numbers` numbers in `min_number`..`max_number` (repeats allowed) and a target.

    Prompt: the target, `:`, the numbers in drawn order, `=` (`"22:3,5,7="`); response: one
    solution (`"3*5+7"`); fields `numbers` (list of int) and `target` (int). `operators` is
    the subset of `+-*/` that targets and responses use (the reward accepts all four); every
    intermediate result of a response is a positive integer.
    `heldout_percent` of (sorted numbers, target) pairs form the evaluation split, of which
    `num_eval` distinct pairs are drawn with `eval_seed`.
    """

    def __init__(
        self,
        num_numbers: int = 3,
        min_number: int = 1,
        max_number: int = 9,
        operators: str = OPERATORS,
        gen_length: int = 8,
        num_eval: int = 200,
        heldout_percent: int = 10,
        eval_seed: int = 1234,
    ) -> None:
        if num_numbers < 2:
            raise ConfigError(f"task.num_numbers must be at least 2, got {num_numbers}")
        if not 1 <= min_number <= max_number:
            raise ConfigError(
                f"task: need 1 <= min_number ({min_number}) <= max_number ({max_number}); numbers are positive"
            )
        if not operators or not set(operators) <= set(OPERATORS) or len(set(operators)) != len(operators):
            raise ConfigError(
                f"task.operators must be distinct characters of {OPERATORS!r}, got {operators!r}; "
                "e.g. task.operators='+-'"
            )
        longest = longest_expression(num_numbers, max_number)
        if gen_length < longest + 1:
            raise ConfigError(
                f"task.gen_length ({gen_length}) must hold the longest expression ({longest} characters) and an "
                f"EOS; set task.gen_length >= {longest + 1}"
            )
        self.num_numbers = num_numbers
        self.min_number = min_number
        self.max_number = max_number
        self.operators = operators
        self.gen_length = gen_length
        self.num_eval = num_eval
        self.heldout_percent = heldout_percent
        self.eval_seed = eval_seed
        number_sets = math.comb(max_number - min_number + num_numbers, num_numbers)  # sorted, repeats allowed
        self.split = HeldoutSplit(
            pool_name=f"countdown with {num_numbers} numbers in {min_number}..{max_number} and operators {operators!r}",
            pool=number_sets * largest_target(num_numbers, max_number, operators),
            pool_is_bound=True,
            heldout_percent=heldout_percent,
            num_eval=num_eval,
            generate=self._play,
            in_heldout=self._game_is_heldout,
            key=game_key,
            fix="widen the numbers, allow more operators or raise task.heldout_percent",
        )

    def is_heldout(self, numbers: list[int], target: int) -> bool:
        """Whether the prompt with these numbers (in any order) and target is held out."""
        return is_heldout(split_key(numbers, target), self.heldout_percent)

    def _game_is_heldout(self, game: tuple[list[int], int]) -> bool:
        return self.is_heldout(*game)

    def _play(self, rng: random.Random) -> tuple[list[int], int] | None:
        """One random game: (numbers, target), or None when it got stuck."""
        numbers = [rng.randint(self.min_number, self.max_number) for _ in range(self.num_numbers)]
        pool = list(numbers)
        while len(pool) > 1:
            i, j = rng.sample(range(len(pool)), 2)
            # The larger first: one option per operator, so + and * are not drawn twice as often.
            options = _combine(max(pool[i], pool[j]), min(pool[i], pool[j]), self.operators)
            if not options:
                return None
            pool = [value for k, value in enumerate(pool) if k not in (i, j)] + [rng.choice(options)[1]]
        return numbers, pool[0]

    def example(self, numbers: list[int], target: int) -> Example:
        """The example for a solvable prompt; its response is `solve`'s solution."""
        solution = solve(numbers, target, self.operators)
        if solution is None:
            raise ValueError(f"countdown: {numbers} cannot make {target} with {self.operators!r}")
        return Example(
            prompt=f"{target}:{','.join(map(str, numbers))}=",
            response=render(solution),
            fields={"numbers": list(numbers), "target": target},
        )

    def train_example(self, rng: random.Random) -> Example:
        return self.example(*self.split.draw(rng, heldout=False))

    @cached_property
    def _eval_games(self) -> list[tuple[list[int], int]]:
        return self.split.eval_problems(self.eval_seed)

    def eval_examples(self) -> list[Example]:
        return [self.example(numbers, target) for numbers, target in self._eval_games]


def largest_target(num_numbers: int, max_number: int, operators: str) -> int:
    """An upper bound on a target: `-` and `/` never exceed their left operand, `a + b <= a * b`
    for a, b >= 2, so a product of `max(2, max_number)`s bounds any expression with `*`."""
    if "*" in operators:
        return max(2, max_number) ** num_numbers
    return num_numbers * max_number if "+" in operators else max_number


def split_key(numbers: list[int], target: int) -> str:
    """The held-out hash key: the sorted numbers and the target (ordering-independent)."""
    return f"{','.join(map(str, sorted(numbers)))}>{target}"


def game_key(game: tuple[list[int], int]) -> str:
    return split_key(*game)
