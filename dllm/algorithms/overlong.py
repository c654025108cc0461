"""DAPO's soft overlong punishment (Yu et al., 2025, arXiv 2503.14476, Eq. 13; BytedTsinghua-SIA/DAPO,
verl's `DAPORewardManager`): a completion of |y| tokens whose length enters the last `buffer` tokens
before the generation length L is penalised linearly,

    penalty(|y|) = -factor * min(1, max(0, |y| - (L - buffer)) / buffer),

0 up to L - buffer tokens, -factor at L (a completion cut at the cap). |y| counts the scored tokens:
the completion up to and including its first EOS, all L when it has none (as verl counts the
response mask). The RL loop adds it to every reward (`algorithm.overlong_buffer`), after the group
filters have read the task's own rewards (DAPO filters on accuracy, not on the shaped reward).
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor

from dllm.errors import ConfigError


class OverlongShaping:
    """`buffer`: tokens (an int >= 1), or a share of the generation length (a float in (0, 1],
    rounded to whole tokens, at least 1: DAPO's 4096 of 20480 is 0.2); `penalty_factor` >= 0."""

    def __init__(self, buffer: int | float, penalty_factor: float = 1.0) -> None:
        whole = isinstance(buffer, int) and not isinstance(buffer, bool)
        if not (whole and buffer >= 1) and not (isinstance(buffer, float) and 0 < buffer <= 1):
            raise ConfigError(
                f"algorithm.overlong_buffer={buffer!r}: give whole tokens (>= 1) or a share of the generation "
                f"length in (0, 1] (DAPO: 4096 of 20480 tokens, 0.2), or null for no overlong shaping"
            )
        if not penalty_factor >= 0:
            raise ConfigError(
                f"algorithm.overlong_penalty_factor={penalty_factor!r} must be >= 0 (DAPO: 1.0): it scales a penalty"
            )
        self.buffer, self.penalty_factor = buffer, float(penalty_factor)

    def tokens(self, gen_length: int) -> int:
        """The buffer in tokens for completions of `gen_length` tokens."""
        if isinstance(self.buffer, float):
            return max(1, round(self.buffer * gen_length))
        return self.buffer

    def check(self, gen_lengths: Iterable[int]) -> None:
        """Refuse a buffer of more tokens than some generation length the run decodes."""
        for length in gen_lengths:
            if self.tokens(length) > length:
                raise ConfigError(
                    f"algorithm.overlong_buffer ({self.buffer} tokens) is longer than the generation length "
                    f"({length}): set it to at most {length} tokens, or a share such as 0.2"
                )

    def penalty(self, lengths: Tensor, gen_length: int) -> Tensor:
        """[N] the (non-positive) penalty of completions of `lengths` [N] tokens out of `gen_length`."""
        buffer = self.tokens(gen_length)
        excess = (lengths.float() - (gen_length - buffer)).clamp(0, buffer)
        return -self.penalty_factor * excess / buffer
