"""`bgpo` (Boundary-Guided Policy Optimization, Lin et al. 2025, arXiv 2510.11683, THU-KEG/BGPO):
a lower bound of the ELBO-based objective A x exp(B - B_old), B = (1/K) sum_k l_k the ELBO from K
Monte Carlo samples, that is a sum of terms each reading ONE sample, so each sample's forward is
back-propagated on its own and memory does not grow with K:
- A > 0: exp(x) >= 1 + x, so A exp(B - B_old) >= sum_k A (1/K + (l_k - l_k_old) / K);
- A < 0: Jensen, exp(mean_k d_k) <= mean_k exp(d_k), so A exp(B - B_old) >= sum_k A exp(l_k - l_k_old) / K.
On-policy (l_k_old = l_k, detached) both equal the ELBO objective in value (A) and gradient
(A grad B). Each estimator part is one sample when the estimator splits its views
(`block_mask` with `upper_bound: false` gives `extras["share"]` = 1/K); a part without a share
is the whole estimate (K = 1, the bound is then exact).

Per token: -(the part's term of its row), token-normalised like SPG's loss (each sequence's term
weighs its length). The old per-sample values are the live ones, detached: exact for BGPO's
on-policy updates (the preset: one update per rollout). With more updates per rollout each
update takes the bound at its own policy — ratio-free, A grad B, as SPG's passes — not BGPO's
bound against the rollout policy, which would need every sample's old ELBO (the loop keeps one
[N, G] tensor of old log-probs).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dllm.algorithms.advantages.base import ADVANTAGES, Advantage
from dllm.algorithms.objectives.base import OBJECTIVES, Objective, Scored
from dllm.algorithms.tally import Tally
from dllm.errors import ConfigError


@OBJECTIVES.register("bgpo")
class BGPO(Objective):
    normalisation = "token"

    def check_advantage(self, advantage: Advantage) -> None:
        if advantage.weights_for is not None:
            name = ADVANTAGES.name_of(advantage) or type(advantage).__name__
            raise ConfigError(
                f"objective bgpo weighs bounds by advantages, but advantage {name} gives objective "
                f"{advantage.weights_for}'s loss weights: set algorithm/advantage=group"
            )

    def per_token_loss(self, scored: Scored, tally: Tally) -> Tensor:
        rollout = scored.rollout
        advantages = rollout.advantages
        advantages = advantages[:, None] if advantages.dim() == 1 else advantages
        share = scored.extras.get("share", torch.ones((), device=scored.log_probs.device))
        # the part's term of each row: the mean of its per-token values over the row's scored tokens
        length = rollout.scored.sum(1, keepdim=True).clamp(min=1)
        term = (scored.log_probs * scored.covered).sum(1, keepdim=True) / length
        change = term - term.detach()  # share x (l_k - l_k_old), 0 in value on-policy
        positive = share + change
        negative = share * torch.exp(change / share)
        return -advantages * torch.where(advantages > 0, positive, negative)
