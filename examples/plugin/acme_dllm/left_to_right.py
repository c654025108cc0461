"""`acme_left_to_right`: reveal one token per step, strictly left to right."""

from __future__ import annotations

import torch

from dllm.models.base import denoiser_logits
from dllm.samplers.base import GenerationOutput, Sampler, check_prompts, fill_after_eos
from dllm.samplers.llada import gumbel_max_sample


class LeftToRightSampler(Sampler):
    def __init__(self, temperature: float = 0.0) -> None:
        self.temperature = temperature

    @torch.no_grad()
    def generate(self, model, prompt_ids, attention_mask=None, gen_length=32, generator=None) -> GenerationOutput:
        self.check_gen_length(gen_length)
        prompt_mask = check_prompts(model, prompt_ids, attention_mask, gen_length)
        batch, prompt_length = prompt_ids.shape
        masks = torch.full((batch, gen_length), model.mask_token_id, dtype=torch.long, device=prompt_ids.device)
        x = torch.cat([prompt_ids, masks], dim=1)
        full_mask = torch.cat([prompt_mask, torch.ones_like(masks)], dim=1)
        for step in range(gen_length):
            logits = denoiser_logits(model, x, full_mask)
            position = prompt_length + step
            x[:, position] = gumbel_max_sample(logits[:, position], self.temperature, generator)
        steps = torch.arange(gen_length, device=x.device).expand(batch, gen_length)
        completion, step_map = fill_after_eos(
            x[:, prompt_length:], steps, model.config.eos_token_id, model.mask_token_id
        )
        return GenerationOutput(torch.cat([prompt_ids, completion], dim=1), step_map, nfe=gen_length)
