"""`elbo` (ESPO, Ou et al. 2025, arXiv 2512.03759; ML-GSAI/ESPO): each completion token's term
of a Monte Carlo estimate of the sequence ELBO, so that their sum over a row's actions is an
unbiased estimate of its ELBO (the sum of the actions' terms in it).

Per sample, a row masks exactly x of its G completion positions (chosen uniformly at random),
x uniform on {0, ..., G}; a masked token's term is log p(token | masked state) x (G + 1) / x,
unbiased because it is masked with probability x / G. The counts are stratified across the
rollout's rows (one uniform offset u per sample, row i at (u + i / N) mod 1 of the way through
{0..G}), as the reference spreads one draw over a batch. With `coupled` (the reference's
`reduce_var`), the complement of the mask is scored too, weighted (G + 1) / (G - x), and the
two views averaged: every token is scored exactly once per sample. `num_mc` samples are averaged.

The prompt is never masked. Tokens after a row's EOS are masked or not like any other position
but carry no term (the actions end at the EOS). Block diffusion models (the reference has none):
the same mask, each noisy block seeing the clean blocks before it, so a token's term estimates its
block's ELBO term at a mask ratio the blocks share — approximately: one count over the whole
completion leaves each block's own count hypergeometric, not binomial.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dllm.algorithms.estimators.base import ESTIMATORS, Estimator, Plan, masked_completion_log_probs
from dllm.algorithms.rollout import Rollout
from dllm.errors import ConfigError


@ESTIMATORS.register("elbo")
class ELBOEstimator(Estimator):
    def __init__(self, num_mc: int = 2, coupled: bool = True) -> None:
        if num_mc < 1:
            raise ConfigError(f"elbo.num_mc must be >= 1 (Monte Carlo samples of the ELBO), got {num_mc}")
        self.num_mc = num_mc
        self.coupled = coupled

    def plan(self, rollout: Rollout, generator: torch.Generator) -> Plan:
        rows, length = rollout.completions.shape
        device = generator.device
        offsets = torch.rand(1, self.num_mc, generator=generator, device=device)
        strata = ((offsets + torch.arange(rows, device=device)[:, None] / rows) % 1.0) * (length + 1)
        counts = strata.floor().long().clamp(max=length)  # [N, num_mc], uniform on {0..G} for every row
        # x positions chosen uniformly: the x smallest of G uniform draws
        order = torch.rand(rows, self.num_mc, length, generator=generator, device=device).argsort(-1).argsort(-1)
        masked = order < counts[..., None]
        return {"counts": counts.to(rollout.sequences.device), "masked": masked.to(rollout.sequences.device)}

    def log_probs(self, model: torch.nn.Module, rollout: Rollout, plan: Plan) -> tuple[Tensor, Tensor]:
        completion, mask_id = rollout.completions_as_read(), rollout.mask_id
        levels = completion.shape[1] + 1  # G + 1 mask counts
        total = torch.zeros(completion.shape, device=completion.device)
        for sample in range(plan["masked"].shape[1]):
            masked, count = plan["masked"][:, sample], plan["counts"][:, sample, None].float()
            in_mask = masked_completion_log_probs(
                model, rollout, completion.masked_fill(masked, mask_id), scored=masked & rollout.scored
            )
            term = torch.where(masked, in_mask * levels / count.clamp(min=1), 0.0)
            if self.coupled:
                in_complement = masked_completion_log_probs(
                    model, rollout, completion.masked_fill(~masked, mask_id), scored=~masked & rollout.scored
                )
                rest = in_complement * levels / (levels - 1 - count).clamp(min=1)
                term = torch.where(masked, term, rest) / 2
            total = total + term
        return total / plan["masked"].shape[1], rollout.scored
