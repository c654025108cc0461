"""`acme_left_to_right`: reveal one token per step, strictly left to right."""

from __future__ import annotations

import torch

from dllm.models.base import denoiser_logits
from dllm.samplers.base import Decoding, Sampler
from dllm.samplers.tokens import gumbel_max_sample


class LeftToRightSampler(Sampler):
    def __init__(self, temperature: float = 0.0) -> None:
        self.temperature = temperature

    def decode(self, model, state: Decoding, gen_length: int, generator=None) -> None:
        for position in range(state.prompt_length, state.prompt_length + gen_length):
            logits = denoiser_logits(model, state.x, state.key_mask)
            state.nfe += 1
            token = gumbel_max_sample(logits[:, position : position + 1], self.temperature, generator, state.mask_id)
            state.reveal(position, position + 1, token, torch.ones_like(token, dtype=torch.bool))
