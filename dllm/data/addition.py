"""`addition`: synthetic multi-digit addition, `"123+45="` -> `"168"`, with a held-out split.

A pair of operands belongs to the held-out split by a fixed hash of the pair, so training
never sees an evaluation pair, whatever the seed.
"""

from __future__ import annotations

import random
from functools import cached_property

from dllm.data.base import TASKS, Example, Task
from dllm.data.split import HeldoutSplit
from dllm.errors import ConfigError

_HASH_MULTIPLIER = 2654435761  # Knuth's multiplicative hash; any odd constant would do


@TASKS.register("addition")
class AdditionTask(Task):
    """Sums of two operands of `min_digits`..`max_digits` digits each.

    `fixed_width` writes operands with leading zeros to `max_digits` digits and sums to
    `max_digits + 1` (`"123+045="` -> `"0168"`), so every digit keeps its position: small
    models learn this format far faster. `heldout_percent` of all operand pairs form the
    evaluation split, of which `num_eval` are drawn with `eval_seed`.
    """

    def __init__(
        self,
        min_digits: int = 2,
        max_digits: int = 3,
        gen_length: int = 8,
        num_eval: int = 200,
        heldout_percent: int = 10,
        eval_seed: int = 1234,
        fixed_width: bool = False,
    ) -> None:
        if not 1 <= min_digits <= max_digits:
            raise ConfigError(f"addition: need 1 <= min_digits ({min_digits}) <= max_digits ({max_digits})")
        if gen_length < max_digits + 2:
            raise ConfigError(
                f"addition: gen_length ({gen_length}) must hold the longest sum ({max_digits + 1} "
                f"digits) and an EOS; set gen_length >= {max_digits + 2}"
            )
        self.min_digits = min_digits
        self.max_digits = max_digits
        self.gen_length = gen_length
        self.num_eval = num_eval
        self.heldout_percent = heldout_percent
        self.eval_seed = eval_seed
        self.fixed_width = fixed_width
        operands = sum(10 if digits == 1 else 9 * 10 ** (digits - 1) for digits in range(min_digits, max_digits + 1))
        width = f"{min_digits}-digit" if min_digits == max_digits else f"{min_digits}- to {max_digits}-digit"
        self.split = HeldoutSplit(
            pool_name=f"addition with {width} operands",
            pool=operands**2,
            heldout_percent=heldout_percent,
            num_eval=num_eval,
            generate=self._pair,
            in_heldout=self._pair_is_heldout,
            fix="raise task.max_digits or task.heldout_percent",
        )

    def is_heldout(self, a: int, b: int) -> bool:
        return (a * 1_000_003 + b) * _HASH_MULTIPLIER % 2**32 % 100 < self.heldout_percent

    def _operand(self, rng: random.Random) -> int:
        digits = rng.randint(self.min_digits, self.max_digits)
        return rng.randint(10 ** (digits - 1) if digits > 1 else 0, 10**digits - 1)

    def _pair(self, rng: random.Random) -> tuple[int, int]:
        return self._operand(rng), self._operand(rng)

    def _pair_is_heldout(self, pair: tuple[int, int]) -> bool:
        return self.is_heldout(*pair)

    def example(self, a: int, b: int) -> Example:
        width = self.max_digits if self.fixed_width else 0
        answer = f"{a + b:0{width + 1 if width else 0}d}"
        return Example(prompt=f"{a:0{width}d}+{b:0{width}d}=", response=answer, fields={"answer": answer})

    def train_example(self, rng: random.Random) -> Example:
        return self.example(*self.split.draw(rng, heldout=False))

    @cached_property
    def _eval_pairs(self) -> list[tuple[int, int]]:
        return self.split.eval_problems(self.eval_seed)

    def eval_examples(self) -> list[Example]:
        return [self.example(a, b) for a, b in self._eval_pairs]
