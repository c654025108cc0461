"""`spg` (Sandwiched Policy Gradient, Wang et al. 2025, arXiv 2510.09541; facebookresearch/SPG):
maximise A x (a bound of log pi(o)) with the bound chosen by the advantage's sign, so the
surrogate stays below the true objective: the lower bound (ELBO) where A > 0, the upper bound
(EUBO) where A <= 0 — or their mixture w EUBO + (1 - w) ELBO (`negative: mix`, SPG's best
variant), or the ELBO alone (`negative: elbo`, the one-sided baseline).

Per token: -A x bound, token-normalised: each sequence's bound weighs its length, the sum over
all scored tokens of the step (SPG's `sum(loss_i x len_i) / sum(len_i)`). Ratio-free (the bound is
taken under the live policy, as SPG does over its 4 passes per rollout), no clip, no KL. Reads the
bounds of an estimator that gives both (`block_mask` with `upper_bound: true`).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from dllm.algorithms.advantages.base import ADVANTAGES, Advantage
from dllm.algorithms.estimators.base import ESTIMATORS, Estimator
from dllm.algorithms.objectives.base import OBJECTIVES, Objective, Scored
from dllm.algorithms.tally import Tally
from dllm.errors import ConfigError

Negative = Literal["eubo", "mix", "elbo"]


@OBJECTIVES.register("spg")
class SPG(Objective):
    normalisation = "token"

    def __init__(self, negative: Negative = "mix", mix_weight: float = 0.5) -> None:
        if negative not in ("eubo", "mix", "elbo") or not 0 <= mix_weight <= 1:
            raise ConfigError(
                f"objective spg: negative must be eubo, mix or elbo (got {negative!r}) and 0 <= mix_weight "
                f"({mix_weight}) <= 1"
            )
        self.negative, self.mix_weight = negative, mix_weight

    def check_advantage(self, advantage: Advantage) -> None:
        if advantage.weights_for is not None:
            name = ADVANTAGES.name_of(advantage) or type(advantage).__name__
            raise ConfigError(
                f"objective spg picks a bound by the advantage's sign, but advantage {name} gives objective "
                f"{advantage.weights_for}'s loss weights: set algorithm/advantage=mean (SPG's)"
            )

    def check_estimator(self, estimator: Estimator) -> None:
        if self.negative != "elbo" and not getattr(estimator, "upper_bound", False):
            name = ESTIMATORS.name_of(estimator) or type(estimator).__name__
            raise ConfigError(
                f"objective spg (negative: {self.negative}) reads an upper bound that estimator {name} does not give: "
                f"set algorithm/estimator=block_mask with algorithm.estimator.upper_bound=true, or "
                f"algorithm.objective.negative=elbo"
            )

    def per_token_loss(self, scored: Scored, tally: Tally) -> Tensor:
        advantages = scored.rollout.advantages
        advantages = advantages[:, None] if advantages.dim() == 1 else advantages
        lower = scored.log_probs
        if self.negative == "elbo":
            negative = lower
        else:
            upper = scored.extras["upper"]
            tally.mean("eubo", upper, scored.covered)
            negative = upper if self.negative == "eubo" else self.mix_weight * upper + (1 - self.mix_weight) * lower
        bound = torch.where(advantages > 0, lower, negative)
        return -advantages * bound
