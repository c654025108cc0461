"""`acme_left_to_right`: reveal one token per step, strictly left to right."""

from __future__ import annotations

from dllm.models.base import denoiser_logits
from dllm.samplers.base import Decoding, Sampler
from dllm.samplers.tokens import gumbel_max_sample


class LeftToRightSampler(Sampler):
    def __init__(self, temperature: float = 0.0) -> None:
        self.temperature = temperature

    def decode(self, model, state: Decoding, gen_length: int, generator=None) -> None:
        # every masked column: on a block model the canvas runs to the end of each row's last block,
        # and a prompt's tail shares the first decoded block (those columns are not masked)
        for position in range(state.prompt_length, state.x.shape[1]):
            masked = state.block_masked(position, position + 1)
            if not bool(masked.any()):
                continue
            logits = denoiser_logits(model, state.x, state.key_mask, state.position_ids)
            state.nfe += 1
            token = gumbel_max_sample(logits[:, position : position + 1], self.temperature, generator, state.mask_id)
            state.reveal(position, position + 1, token, masked)
