"""`sequence_ppo` (ESPO, Ou et al. 2025, arXiv 2512.03759; ML-GSAI/ESPO): the whole completion is
one action. Its log-likelihood is the sum S of its tokens' estimates (with the `elbo` estimator,
an ELBO estimate), and the clipped ratio and the KL term are the sequence's:

    r = exp((S - S_old) / L),   loss = -min(r A, clip(r, 1 - clip_low, 1 + clip_high) A) + beta KL,
    KL = L x k(S / L, S_ref / L)   (k2: (S - S_ref)^2 / (2 L), ESPO's "robust" quadratic KL),

L = the completion's scored tokens (ESPO's per-token normalised ratio; the reference divides by
the generation length G, every one of its rows being G tokens long, EOS padding included).
The loss is the mean over sequences (`sequence` normalisation): each token of a row carries the
row's loss. Estimators that deliver a sequence's estimate in several parts (`trace`) are refused.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from dllm.algorithms.advantages.base import ADVANTAGES, Advantage, GroupRelative
from dllm.algorithms.estimators.base import ESTIMATORS, Estimator
from dllm.algorithms.objectives.base import OBJECTIVES, Scored
from dllm.algorithms.objectives.ppo import PPO, KLEstimator, clipped_surrogate, kl_penalty
from dllm.algorithms.tally import Tally
from dllm.errors import ConfigError


@OBJECTIVES.register("sequence_ppo")
class SequencePPO(PPO):
    def __init__(
        self,
        clip_low: float = 0.2,
        clip_high: float = 0.2,
        log_ratio_clamp: float | None = None,
        beta: float = 0.0,
        kl_estimator: KLEstimator = "k2",
        kl_target: Literal["reference", "old"] = "reference",
    ) -> None:
        super().__init__(clip_low, clip_high, log_ratio_clamp, beta, kl_estimator, kl_target, "sequence")

    def check_advantage(self, advantage: Advantage) -> None:
        super().check_advantage(advantage)
        if not isinstance(advantage, GroupRelative):
            name = ADVANTAGES.name_of(advantage) or type(advantage).__name__
            raise ConfigError(
                f"objective sequence_ppo needs one advantage per completion, but advantage {name} gives one per "
                f"token: set algorithm/advantage=loo (or group, mean)"
            )

    def check_estimator(self, estimator: Estimator) -> None:
        # The ratio is not linear in the token estimates: a sequence's tokens must come in one part.
        if type(estimator).chunks is not Estimator.chunks:
            name = ESTIMATORS.name_of(estimator) or type(estimator).__name__
            raise ConfigError(
                f"objective sequence_ppo needs each sequence's log-likelihood whole, but estimator {name} scores "
                f"it in parts (one per replayed step): set algorithm/estimator=elbo (or coupled, one_step, random_mask)"
            )

    def per_token_loss(self, scored: Scored, tally: Tally) -> Tensor:
        rollout, iteration, covered = scored.rollout, scored.iteration, scored.covered
        lengths = rollout.scored.sum(1).clamp(min=1).float()

        def per_token(log_probs: Tensor) -> Tensor:  # [N] a sequence's log-likelihood / L
            return (log_probs * covered).sum(1) / lengths

        sequence = per_token(scored.log_probs)
        old = per_token(rollout.old_log_probs[iteration]) if rollout.old_log_probs else sequence.detach()
        surrogate, ratio = clipped_surrogate(
            sequence[:, None], old[:, None], rollout.advantages, self.clip_low, self.clip_high, self.log_ratio_clamp
        )
        surrogate, ratio = surrogate[:, 0], ratio[:, 0]
        rows = torch.ones_like(ratio)
        tally.mean("ratio", ratio.detach(), rows)
        tally.mean("clip_fraction", ((ratio < 1 - self.clip_low) | (ratio > 1 + self.clip_high)).float(), rows)
        per_sequence = -surrogate
        if self.beta > 0:
            targets = rollout.ref_log_probs if self.kl_target == "reference" else rollout.old_log_probs
            kl = lengths * kl_penalty(sequence, per_token(targets[iteration]), self.kl_estimator)
            tally.mean("kl", kl.detach(), rows)
            per_sequence = per_sequence + self.beta * kl
        return per_sequence[:, None].expand_as(scored.log_probs)
