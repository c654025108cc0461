"""`ppo`: PPO's clipped surrogate with a KL penalty (TraceRL, d1's diffu-GRPO, DiffuCoder).

Per token: -min(r A, clip(r, 1 - clip_low, 1 + clip_high) A) + beta KL, r = pi / pi_old, the
log-ratio optionally clamped to +-log_ratio_clamp before exponentiation (TraceRL clamps at 10);
KL(pi || target) by Schulman's k1, k2 or k3 estimator, target = a frozen copy of the policy at
the stage's start (`reference`) or the rollout policy (`old`).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from dllm.algorithms.advantages.base import ADVANTAGES, Advantage
from dllm.algorithms.objectives.base import OBJECTIVES, Normalisation, Objective, Scored
from dllm.algorithms.tally import Tally
from dllm.errors import ConfigError

KLEstimator = Literal["k1", "k2", "k3"]


@OBJECTIVES.register("ppo")
class PPO(Objective):
    def __init__(
        self,
        clip_low: float = 0.2,
        clip_high: float = 0.2,
        log_ratio_clamp: float | None = None,
        beta: float = 0.0,
        kl_estimator: KLEstimator = "k3",
        kl_target: Literal["reference", "old"] = "reference",
        normalisation: Normalisation = "token",
    ) -> None:
        if clip_low < 0 or clip_high < 0 or beta < 0:
            raise ConfigError(
                f"algorithm.objective: clip_low ({clip_low}), clip_high ({clip_high}) and beta ({beta}) must be >= 0"
            )
        if log_ratio_clamp is not None and log_ratio_clamp <= 0:
            raise ConfigError(f"algorithm.objective.log_ratio_clamp must be > 0 (or null), got {log_ratio_clamp}")
        self.clip_low, self.clip_high, self.log_ratio_clamp = clip_low, clip_high, log_ratio_clamp
        self.beta, self.kl_estimator, self.kl_target = beta, kl_estimator, kl_target
        self.normalisation = normalisation

    def needs_old_log_probs(self, num_iterations: int, steps_per_pass: int) -> bool:
        # With one update per rollout the ratio is 1 and pi_old is the live policy, detached.
        return num_iterations > 1 or steps_per_pass > 1 or (self.beta > 0 and self.kl_target == "old")

    @property
    def needs_reference(self) -> bool:
        return self.beta > 0 and self.kl_target == "reference"

    def check_advantage(self, advantage: Advantage) -> None:
        if advantage.weights_for is not None:
            name = ADVANTAGES.name_of(advantage) or type(advantage).__name__
            raise ConfigError(
                f"objective ppo maximises advantages, but advantage {name} gives the loss weights of "
                f"objective {advantage.weights_for}: set algorithm/objective={advantage.weights_for}, or another "
                f"algorithm/advantage"
            )

    def per_token_loss(self, scored: Scored, tally: Tally) -> Tensor:
        rollout, iteration, covered = scored.rollout, scored.iteration, scored.covered
        log_probs = scored.log_probs
        old = rollout.old_log_probs[iteration] if rollout.old_log_probs else log_probs.detach()
        surrogate, ratio = clipped_surrogate(
            log_probs, old, rollout.advantages, self.clip_low, self.clip_high, self.log_ratio_clamp
        )
        clipped = (ratio < 1 - self.clip_low) | (ratio > 1 + self.clip_high)
        tally.mean("ratio", ratio.detach(), covered)
        tally.mean("clip_fraction", clipped.float(), covered)
        per_token = -surrogate
        if self.beta > 0:
            target = rollout.ref_log_probs[iteration] if self.kl_target == "reference" else old
            kl = kl_penalty(log_probs, target, self.kl_estimator)
            tally.mean("kl", kl.detach(), covered)
            per_token = per_token + self.beta * kl
        return per_token


def clipped_surrogate(
    log_probs: Tensor,
    old_log_probs: Tensor,
    advantages: Tensor,
    eps_low: float,
    eps_high: float,
    log_ratio_clamp: float | None = None,
) -> tuple[Tensor, Tensor]:
    """(surrogate to maximise [N, G], ratio [N, G]); `advantages` [N] or [N, G]."""
    log_ratio = log_probs - old_log_probs
    if log_ratio_clamp is not None:
        log_ratio = log_ratio.clamp(-log_ratio_clamp, log_ratio_clamp)
    ratio = torch.exp(log_ratio)
    if advantages.dim() == 1:
        advantages = advantages[:, None]
    clipped = torch.clamp(ratio, 1 - eps_low, 1 + eps_high)
    return torch.minimum(ratio * advantages, clipped * advantages), ratio


def kl_penalty(log_probs: Tensor, target_log_probs: Tensor, estimator: KLEstimator = "k3") -> Tensor:
    """[N, G] per-token estimate of KL(pi || target) from log pi and log target of the sampled
    tokens: k1 = log(pi/target), k2 = (log(pi/target))^2 / 2, k3 = target/pi - log(target/pi) - 1."""
    log_ratio = log_probs - target_log_probs
    if estimator == "k1":
        return log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio**2
    return torch.exp(-log_ratio) + log_ratio - 1
