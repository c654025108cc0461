"""Policy objectives: small pure functions over per-token tensors [N, G].

- `clipped_surrogate`: PPO's min(ratio * A, clip(ratio, 1 - eps_low, 1 + eps_high) * A), the
  log-ratio optionally clamped before exponentiation;
- `kl_penalty`: KL(pi || target) per token by the k1, k2 or k3 estimator, target = the frozen
  reference model or the rollout's (old) policy;
- `reduce_tokens`: token-level (every scored token of the batch weighs the same) or
  sequence-level (each sequence's mean, then the mean over sequences) normalisation — one
  explicit choice, identical for every model family.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

KLEstimator = Literal["k1", "k2", "k3"]
Normalisation = Literal["token", "sequence"]


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


def normalising_units(scored: Tensor, normalisation: Normalisation) -> float:
    """How much of an optimizer step a micro-batch with `scored` tokens carries, in the units
    `reduce_tokens` averages over (scored tokens, or sequences)."""
    return float(scored.sum()) if normalisation == "token" else float(scored.shape[0])
