"""`sdar`: SDAR's block diffusion decoder (JetAstra/SDAR `block_diffusion_generate`), batched,
with the exact KV cache of committed blocks.

The prompt is left-padded to whole blocks and run once into the cache; then each block of
`block_length` masks is denoised in `denoising_steps` steps — every step one forward of the
block alone over the cache (nothing stored) — and, once no mask is left, one more forward
commits the block's keys and values. Per step `block_length // denoising_steps` tokens are
revealed (the first `block_length % denoising_steps` steps one more), chosen by
`remasking_strategy`:

- `sequential`: the leftmost masked positions;
- `low_confidence_static`: the most probable sampled tokens;
- `low_confidence_dynamic`: every token above `confidence_threshold`, or the static choice
  when fewer are;
- `entropy_bounded`: the lowest-entropy positions whose entropies sum to at most
  `eb_threshold` (at least one; steps continue past `denoising_steps` until the block is done).

It is the `diffusion` engine with categorical sampling (top-k / top-p) and the `block` cache.
"""

from __future__ import annotations

from typing import Literal

from dllm.errors import ConfigError
from dllm.samplers.base import SAMPLERS
from dllm.samplers.diffusion import DiffusionSampler

Strategy = Literal["sequential", "low_confidence_static", "low_confidence_dynamic", "entropy_bounded"]
STRATEGY_SELECTIONS = {
    "sequential": "sequential",
    "low_confidence_static": "top_k",
    "low_confidence_dynamic": "dynamic",
    "entropy_bounded": "entropy_bounded",
}


@SAMPLERS.register("sdar")
class SDARSampler(DiffusionSampler):
    """SDAR's decoder with its argument names. `block_length` None = the model's block size;
    another size decodes (and attends) in blocks of that size (block-size adaptation).
    `use_cache=False` recomputes the prefix every step (same tokens, for checking the cache).
    As in the reference, `eb_threshold` (None there) is needed by `entropy_bounded` only and
    `confidence_threshold` by `low_confidence_dynamic` only; `top_k` / `top_p` None: no limit."""

    def __init__(
        self,
        block_length: int | None = None,
        denoising_steps: int = 4,
        remasking_strategy: Strategy = "low_confidence_dynamic",
        confidence_threshold: float | None = 0.85,
        eb_threshold: float | None = 0.35,
        temperature: float = 0.0,
        top_k: int | None = 0,
        top_p: float | None = 1.0,
        use_cache: bool = True,
        stop_at_eos: bool = True,
    ) -> None:
        if remasking_strategy not in STRATEGY_SELECTIONS:
            raise ConfigError(
                f"remasking_strategy must be one of {', '.join(STRATEGY_SELECTIONS)}, got {remasking_strategy!r}"
            )
        needed = {"low_confidence_dynamic": "confidence_threshold", "entropy_bounded": "eb_threshold"}
        values = {"confidence_threshold": confidence_threshold, "eb_threshold": eb_threshold}
        name = needed.get(remasking_strategy)
        if name is not None and values[name] is None:
            raise ConfigError(f"sdar: remasking_strategy {remasking_strategy} needs {name}, got null")
        if confidence_threshold is not None and not 0 < confidence_threshold <= 1:
            raise ConfigError(f"confidence_threshold must be in (0, 1], got {confidence_threshold}")
        if denoising_steps < 1:
            raise ConfigError(f"denoising_steps must be >= 1, got {denoising_steps}")
        super().__init__(
            block_length=block_length,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            sampling="categorical",
            score="confidence",
            selection=STRATEGY_SELECTIONS[remasking_strategy],
            threshold=confidence_threshold,
            eb_threshold=eb_threshold,
            cache="block" if use_cache else "none",
            stop_at_eos=stop_at_eos,
        )
        self.denoising_steps = denoising_steps
        self.remasking_strategy = remasking_strategy
        self.use_cache = use_cache

    def steps_per_block(self, gen_length: int, block_length: int) -> int:
        return self.denoising_steps

    def check_gen_length(self, gen_length: int, model_block_size: int | None = None) -> None:
        if model_block_size is None:
            raise ConfigError("the sdar sampler decodes block diffusion models; this model has no blocks (use llada)")
        block_length = self.block_length or model_block_size
        super().check_gen_length(gen_length, model_block_size)
        if self.denoising_steps > block_length:
            raise ConfigError(
                f"denoising_steps ({self.denoising_steps}) must not exceed block_length ({block_length}): "
                f"every step reveals at least one token"
            )
