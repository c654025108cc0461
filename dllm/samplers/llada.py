"""`llada`: the LLaDA reference decoder (`generate` in ML-GSAI/LLaDA), batched.

Semi-autoregressive blocks of `block_length`; `steps` split evenly over the blocks; in each
block the masked count is spread over its steps as evenly as possible (earlier steps take
the remainder); at each step the `k` most confident masked positions of the current block
are revealed. Temperature sampling is Gumbel-max in float64, drawn over the whole sequence
as the reference does, so a seeded run reproduces the reference token for token (the
reference as of its October 2025 version, with `attention_mask`; `stop_at_eos=False` for
the tokens after EOS too).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from dllm.errors import ConfigError
from dllm.models.base import denoiser_logits
from dllm.samplers.base import SAMPLERS, Decoding, Sampler
from dllm.samplers.policies import select_top_k, transfer_schedule


def gumbel_max_sample(
    logits: Tensor, temperature: float, generator: torch.Generator | None, forbidden_token: int | None = None
) -> Tensor:
    """argmax of exp(logits) / (-log u)^temperature in float64; greedy at temperature 0.

    `forbidden_token` (the mask token) is never chosen: a decoder that "reveals" a mask
    would leave it masked. Trained models never predict it, so this changes nothing there.
    """
    if temperature == 0:
        scores = logits
    else:
        logits = logits.to(torch.float64)
        noise = torch.rand(logits.shape, dtype=torch.float64, device=logits.device, generator=generator)
        scores = logits.exp() / (-torch.log(noise)) ** temperature
    if forbidden_token is not None:
        scores = scores.clone()
        scores[..., forbidden_token] = -torch.inf
    return scores.argmax(-1)


@SAMPLERS.register("llada")
class LLaDASampler(Sampler):
    """LLaDA `generate`, with its argument names.

    `steps` or `block_length` None means `gen_length` (one token per step; one block).
    `stop_at_eos`: stop once every row has revealed an EOS with nothing masked before it;
    tokens after a row's EOS become EOS. Tokens up to the EOS equal the reference's.
    """

    def __init__(
        self,
        steps: int | None = 128,
        block_length: int | None = 128,
        temperature: float = 0.0,
        cfg_scale: float = 0.0,
        remasking: Literal["low_confidence", "random"] = "low_confidence",
        stop_at_eos: bool = True,
    ) -> None:
        if (steps is not None and steps < 1) or (block_length is not None and block_length < 1):
            raise ConfigError(f"steps ({steps}) and block_length ({block_length}) must be positive")
        if remasking not in ("low_confidence", "random"):
            raise ConfigError(f"remasking must be 'low_confidence' or 'random', got {remasking!r}")
        if temperature < 0 or cfg_scale < 0:
            raise ConfigError(f"temperature ({temperature}) and cfg_scale ({cfg_scale}) must be >= 0")
        self.steps = steps
        self.block_length = block_length
        self.temperature = temperature
        self.cfg_scale = cfg_scale
        self.remasking = remasking
        self.stop_at_eos = stop_at_eos

    def schedule(self, gen_length: int, model_block_size: int | None = None) -> tuple[int, int]:
        """(block_length, steps per block) for `gen_length`; refuses lengths that do not split.
        A block diffusion model decodes its own blocks unless `block_length` is set."""
        super().check_gen_length(gen_length)
        block_length = self.block_length or model_block_size or gen_length
        steps = self.steps or gen_length
        if gen_length % block_length:
            raise ConfigError(
                f"gen_length ({gen_length}) must be a multiple of block_length "
                f"({block_length}); set block_length to a divisor of gen_length"
            )
        num_blocks = gen_length // block_length
        if steps % num_blocks:
            raise ConfigError(
                f"steps ({steps}) must be a multiple of the number of blocks "
                f"(gen_length / block_length = {num_blocks}); set steps to a multiple of {num_blocks}"
            )
        return block_length, steps // num_blocks

    def check_gen_length(self, gen_length: int, model_block_size: int | None = None) -> None:
        block_length, _ = self.schedule(gen_length, model_block_size)
        if model_block_size is not None and block_length % model_block_size:
            raise ConfigError(
                f"block_length ({block_length}) must be a multiple of the model's block_size "
                f"({model_block_size}); leave sampler.block_length null to decode the model's own blocks"
            )

    def decode(
        self, model: torch.nn.Module, state: Decoding, gen_length: int, generator: torch.Generator | None
    ) -> None:
        block_length, steps_per_block = self.schedule(gen_length, model.block_size)
        x, prompt_length = state.x, state.prompt_length
        for start in range(prompt_length, prompt_length + gen_length, block_length):
            end = start + block_length
            schedule = transfer_schedule(state.block_masked(start, end).sum(1), steps_per_block)
            for i in range(steps_per_block):
                logits = self._guided_logits(model, x, state.key_mask, prompt_length)
                state.nfe += 2 if self.cfg_scale > 0 else 1
                x0 = gumbel_max_sample(logits, self.temperature, generator, state.mask_id)[:, start:end]
                if self.remasking == "low_confidence":
                    probs = torch.softmax(logits[:, start:end], dim=-1)  # the logits' dtype, as the reference
                    x0_p = probs.gather(-1, x0[..., None]).squeeze(-1)
                else:
                    x0_p = torch.rand(x.shape, device=x.device, generator=generator)[:, start:end]
                masked = state.block_masked(start, end)
                reveal = select_top_k(torch.where(masked, x0_p, -torch.inf), schedule[:, i]) & masked
                state.reveal(start, end, x0, reveal)
                if state.all_stopped():
                    return

    def _guided_logits(self, model, x: Tensor, full_mask: Tensor, prompt_length: int) -> Tensor:
        if self.cfg_scale <= 0:
            return denoiser_logits(model, x, full_mask)
        unconditional = x.clone()
        unconditional[:, :prompt_length] = model.mask_token_id
        logits = denoiser_logits(model, torch.cat([x, unconditional]), torch.cat([full_mask, full_mask]))
        conditional, unconditional_logits = logits.chunk(2)
        return unconditional_logits + (self.cfg_scale + 1) * (conditional - unconditional_logits)
