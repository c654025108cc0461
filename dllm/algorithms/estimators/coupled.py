"""`coupled` (DiffuCoder's coupled-GRPO): a mask M of the completion with ratio t ~ U(t_min,
t_max) and its complement; every completion token is scored exactly once, in the view where
it is masked, weighted 1/t (masked in M) or 1/(1 - t) (masked in the complement). With
`full_mask_term` (DiffuCoder's code) the estimate is averaged with the log-prob under the
fully masked completion: s = (l_full + l_coupled) / 2.

t is drawn per row (DiffuCoder draws one t per call; per row does not depend on how rows are
batched). The prompt is never masked.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dllm.algorithms.estimators.base import ESTIMATORS, Estimator, Plan, masked_completion_log_probs
from dllm.algorithms.rollout import Rollout
from dllm.errors import ConfigError


@ESTIMATORS.register("coupled")
class CoupledEstimator(Estimator):
    def __init__(self, t_min: float = 0.2, t_max: float = 0.8, full_mask_term: bool = True) -> None:
        if not 0 < t_min <= t_max < 1:
            raise ConfigError(f"coupled: need 0 < t_min ({t_min}) <= t_max ({t_max}) < 1")
        self.t_min = t_min
        self.t_max = t_max
        self.full_mask_term = full_mask_term

    def plan(self, rollout: Rollout, generator: torch.Generator) -> Plan:
        rows, length = rollout.completions.shape
        device = rollout.sequences.device
        t = self.t_min + (self.t_max - self.t_min) * torch.rand(rows, generator=generator, device=generator.device)
        draws = torch.rand(rows, length, generator=generator, device=generator.device)
        return {"t": t.to(device), "masked": (draws < t[:, None]).to(device)}

    def log_probs(self, model: torch.nn.Module, rollout: Rollout, plan: Plan) -> tuple[Tensor, Tensor]:
        completion, mask_id = rollout.completions_as_read(), rollout.mask_id
        masked, t = plan["masked"], plan["t"][:, None]
        scored = rollout.scored
        in_mask = masked_completion_log_probs(
            model, rollout, completion.masked_fill(masked, mask_id), scored=masked & scored
        )
        in_complement = masked_completion_log_probs(
            model, rollout, completion.masked_fill(~masked, mask_id), scored=~masked & scored
        )
        coupled = torch.where(masked, in_mask / t, in_complement / (1 - t))
        if self.full_mask_term:
            full = masked_completion_log_probs(model, rollout, torch.full_like(completion, mask_id), scored=scored)
            coupled = (full + coupled) / 2
        return coupled, rollout.scored
