"""`one_step` (d1 / diffu-GRPO): the completion fully masked, each real prompt token masked
with probability `p_mask_prompt`, one forward. Each inner iteration draws a fresh prompt
mask (from the trainer's generator; the global RNG is never reseeded), shared by that
iteration's old, reference and current passes.

Block diffusion models: every completion block fully masked, seeing the (partly masked)
prompt and the clean blocks before it — the block-wise reading of the same estimator.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dllm.algorithms.estimators.base import ESTIMATORS, Estimator, Plan, masked_completion_log_probs
from dllm.algorithms.rollout import Rollout
from dllm.errors import ConfigError


@ESTIMATORS.register("one_step")
class OneStepEstimator(Estimator):
    def __init__(self, p_mask_prompt: float = 0.15) -> None:
        if not 0 <= p_mask_prompt < 1:
            raise ConfigError(f"one_step.p_mask_prompt must be in [0, 1), got {p_mask_prompt}")
        self.p_mask_prompt = p_mask_prompt

    def plan(self, rollout: Rollout, generator: torch.Generator) -> Plan:
        prompt_mask = rollout.attention_mask[:, : rollout.prompt_length].bool()
        draws = torch.rand(prompt_mask.shape, generator=generator, device=generator.device).to(prompt_mask.device)
        return {"prompt_masked": prompt_mask & (draws < self.p_mask_prompt)}

    def log_probs(self, model: torch.nn.Module, rollout: Rollout, plan: Plan) -> tuple[Tensor, Tensor]:
        prompt = rollout.sequences[:, : rollout.prompt_length].masked_fill(plan["prompt_masked"], rollout.mask_id)
        masked = torch.full_like(rollout.completions, rollout.mask_id)
        return masked_completion_log_probs(model, rollout, masked, prompt, rollout.scored), rollout.scored
