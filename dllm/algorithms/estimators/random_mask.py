"""`random_mask` (MMaDA / TraceRL's random masking): `num_masks` views of the completion, each
masking every token with its own ratio ~ U(ratio_min, ratio_max); a token's log-prob is the
mean over the views that mask it. Tokens no view masks carry no estimate (not scored). The
reference (Gen-Verse/dLLM-RL's random_masking, MMaDA's UniGRPO) scores each view as a row of its
own: `num_masks` 1 with one fresh view per inner iteration, as the `unigrpo` preset does."""

from __future__ import annotations

import torch
from torch import Tensor

from dllm.algorithms.estimators.base import ESTIMATORS, Estimator, Plan, masked_completion_log_probs
from dllm.algorithms.rollout import Rollout
from dllm.errors import ConfigError


@ESTIMATORS.register("random_mask")
class RandomMaskEstimator(Estimator):
    def __init__(self, num_masks: int = 2, ratio_min: float = 0.1, ratio_max: float = 0.9) -> None:
        if num_masks < 1 or not 0 < ratio_min <= ratio_max <= 1:
            raise ConfigError(
                f"random_mask: need num_masks >= 1 ({num_masks}) and 0 < ratio_min ({ratio_min}) <= ratio_max "
                f"({ratio_max}) <= 1"
            )
        self.num_masks = num_masks
        self.ratio_min = ratio_min
        self.ratio_max = ratio_max

    def plan(self, rollout: Rollout, generator: torch.Generator) -> Plan:
        rows, length = rollout.completions.shape
        spread = self.ratio_max - self.ratio_min
        device = generator.device
        ratios = self.ratio_min + spread * torch.rand(rows, self.num_masks, 1, generator=generator, device=device)
        draws = torch.rand(rows, self.num_masks, length, generator=generator, device=device)
        return {"masked": (draws < ratios).to(rollout.sequences.device)}

    def log_probs(self, model: torch.nn.Module, rollout: Rollout, plan: Plan) -> tuple[Tensor, Tensor]:
        masks = plan["masked"]
        total = torch.zeros(rollout.completions.shape, device=rollout.sequences.device)
        for view in range(masks.shape[1]):
            noisy = rollout.completions_as_read().masked_fill(masks[:, view], rollout.mask_id)
            read = masked_completion_log_probs(model, rollout, noisy, scored=masks[:, view] & rollout.scored)
            total = total + torch.where(masks[:, view], read, 0.0)
        count = masks.sum(1)
        return total / count.clamp(min=1), rollout.scored & (count > 0)
