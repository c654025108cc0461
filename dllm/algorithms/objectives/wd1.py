"""`wd1` (Tang et al., 2025, "wd1: Weighted Policy Optimization for Reasoning in Diffusion
Language Models"): ratio-free weighted likelihood, no old policy, no clip, no KL.

Per group, minimise sum_i w_i log pi(o_i) with the `wd1` advantage's weights
w = softmax(-A) - softmax(A): likelihood rises for the better completions and falls for the
worse. log pi(o_i) is the sum of its tokens' log-probs, so under `sequence` normalisation
(each sequence's token mean) every token of sequence i weighs w_i x its length x group_size.
"""

from __future__ import annotations

from torch import Tensor

from dllm.algorithms.advantages.base import ADVANTAGES, Advantage
from dllm.algorithms.objectives.base import OBJECTIVES, Objective, Scored
from dllm.algorithms.tally import Tally
from dllm.errors import ConfigError


@OBJECTIVES.register("wd1")
class WD1(Objective):
    normalisation = "sequence"

    def check_advantage(self, advantage: Advantage) -> None:
        if advantage.weights_for != "wd1":
            name = ADVANTAGES.name_of(advantage) or type(advantage).__name__
            raise ConfigError(
                f"objective wd1 weighs completions by wd1's softmax weights, not by advantage {name}: "
                f"set algorithm/advantage=wd1"
            )

    def per_token_loss(self, scored: Scored, tally: Tally) -> Tensor:
        rollout = scored.rollout
        lengths = rollout.scored.sum(1, keepdim=True).clamp(min=1)
        return rollout.advantages[:, None] * scored.log_probs * lengths * scored.group_size
