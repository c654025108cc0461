"""`llada`: the LLaDA reference decoder (`generate` in ML-GSAI/LLaDA), batched.

Semi-autoregressive blocks of `block_length`; `steps` split evenly over the blocks; in each
block the masked count is spread over its steps as evenly as possible (earlier steps take
the remainder); at each step the `k` most confident masked positions of the current block
are revealed. Temperature sampling is Gumbel-max in float64, drawn over the whole sequence
as the reference does, so a seeded run reproduces the reference token for token (the
reference as of its October 2025 version, with `attention_mask`; `stop_at_eos=False` for
the tokens after EOS too). It is the `diffusion` engine with Gumbel sampling, top-k
selection and no cache.
"""

from __future__ import annotations

from typing import Literal

from dllm.errors import ConfigError
from dllm.samplers.base import SAMPLERS
from dllm.samplers.diffusion import DiffusionSampler

Remasking = Literal["low_confidence", "random"]
REMASKING_SCORES = {"low_confidence": "confidence", "random": "random"}


def remasking_score(remasking: str, sampler: str) -> str:
    """The engine's score for LLaDA's / Fast-dLLM's `remasking` argument."""
    if remasking not in REMASKING_SCORES:
        raise ConfigError(f"{sampler}: remasking must be 'low_confidence' or 'random', got {remasking!r}")
    return REMASKING_SCORES[remasking]


@SAMPLERS.register("llada")
class LLaDASampler(DiffusionSampler):
    """LLaDA `generate`, with its argument names.

    `steps` or `block_length` None means `gen_length` (one token per step; one block); a block
    diffusion model decodes its own blocks unless `block_length` is set. `stop_at_eos`: stop
    once every row has revealed an EOS with nothing masked before it; in `sequences` tokens after
    a row's EOS become EOS (`raw_completions` keeps what was revealed there). Tokens up to the
    EOS equal the reference's.
    """

    noise_over_forward = True
    confidence_in_float64 = False  # the reference's softmax runs in the logits' dtype

    def __init__(
        self,
        steps: int | None = 128,
        block_length: int | None = 128,
        temperature: float = 0.0,
        cfg_scale: float = 0.0,
        remasking: Remasking = "low_confidence",
        stop_at_eos: bool = True,
    ) -> None:
        super().__init__(
            block_length=block_length,
            steps=steps,
            temperature=temperature,
            sampling="gumbel",
            score=remasking_score(remasking, "llada"),
            selection="top_k",
            cache="none",
            cfg_scale=cfg_scale,
            stop_at_eos=stop_at_eos,
        )
        self.remasking = remasking
