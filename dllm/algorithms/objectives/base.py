"""The objective interface and its registry, and the normalisation every objective shares.

An objective turns the estimator's log-probs of a chunk of tokens into a per-token loss. It
declares what it reads besides them — the old policy's log-probs, a frozen reference model's —
so the loop computes (and the reference copy is made) only when some objective needs it, and
it refuses, when the algorithm is built, an advantage it cannot use.

Normalisation (`token` or `sequence`) is the objective's explicit choice, identical for every
model family: the loss is a weighted sum of per-token values (`token_weights`) over a whole
optimizer step, whatever its micro-batching.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor

from dllm.algorithms.rollout import Rollout
from dllm.algorithms.tally import Tally
from dllm.registry import Registry

if TYPE_CHECKING:
    from dllm.algorithms.advantages.base import Advantage
    from dllm.algorithms.estimators.base import Estimator

Normalisation = Literal["token", "sequence"]


@dataclass
class Scored:
    """One chunk of estimator output: `log_probs` [N, G] (with gradient) of the `covered` [N, G]
    tokens of `rollout`'s rows in inner iteration `iteration`; rows come in groups of `group_size`.
    `extras`: further per-chunk terms an estimator gives beside the log-probs (e.g. `upper`, an
    upper bound of the same quantity; `share`, the part of the whole estimate this chunk carries)."""

    log_probs: Tensor
    covered: Tensor
    rollout: Rollout
    iteration: int
    group_size: int
    extras: dict[str, Tensor] = field(default_factory=dict)


class Objective(ABC):
    normalisation: Normalisation = "token"

    def needs_old_log_probs(self, num_iterations: int, steps_per_pass: int) -> bool:
        """Whether the loss reads the rollout policy's log-probs (computed once per rollout, before
        any update), given the inner iterations and optimizer steps per pass over a rollout."""
        return False

    @property
    def needs_reference(self) -> bool:
        """Whether the loss reads a frozen reference model's log-probs (then the loop keeps a copy
        of the policy as it was when the stage started)."""
        return False

    def check_advantage(self, advantage: Advantage) -> None:
        """Refuse, with a ConfigError naming the fix, an advantage whose values this objective cannot use."""

    def check_estimator(self, estimator: Estimator) -> None:
        """Refuse, with a ConfigError naming the fix, an estimator whose output this objective cannot use."""

    @abstractmethod
    def per_token_loss(self, scored: Scored, tally: Tally) -> Tensor:
        """[N, G] the loss of each token (valid where `scored.covered`); metrics into `tally`."""


OBJECTIVES = Registry("objective", interface=Objective, config_group="algorithm/objective")


def token_weights(scored: Tensor, normalisation: Normalisation) -> Tensor:
    """[N, G] weight of each scored token in the mean: 1 / (scored tokens) for `token`,
    1 / (sequences x the sequence's scored tokens) for `sequence`; 0 where not scored. The
    loss is then linear in per-token values, so it can be summed (and back-propagated) in parts."""
    scored = scored.float()
    if normalisation == "token":
        return scored / scored.sum().clamp(min=1)
    return scored / scored.sum(1, keepdim=True).clamp(min=1) / scored.shape[0]


def reduce_tokens(per_token: Tensor, scored: Tensor, normalisation: Normalisation) -> Tensor:
    """Scalar mean of `per_token` over `scored` [N, G] tokens: over all of them (`token`), or per
    sequence then over sequences (`sequence`; a sequence with no scored token counts 0)."""
    return (per_token * token_weights(scored, normalisation)).sum()


def row_units(scored: Tensor, normalisation: Normalisation) -> Tensor:
    """[N] on the CPU: how much of an optimizer step each row with `scored` [N, G] tokens carries,
    in the units `reduce_tokens` averages over (its scored tokens, or 1 sequence). Read once per
    rollout, so that a micro-batch's share costs no wait for the GPU."""
    units = scored.sum(1) if normalisation == "token" else torch.ones(scored.shape[0])
    return units.float().cpu()
