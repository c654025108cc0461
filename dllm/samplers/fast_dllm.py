"""`fast_dllm`: Fast-dLLM's parallel decoding with prefix or dual KV caching (NVlabs/Fast-dLLM
`generate`, `generate_with_prefix_cache`, `generate_with_dual_cache`), batched, for
full-attention models (LLaDA- and Dream-style; shifted logits handled).

Semi-autoregressive blocks as in LLaDA. Each block starts with one full forward (which, with a
cache, also fills it); later steps recompute only:
- `use_cache="none"`: the whole sequence;
- `"prefix"`: the block and everything after it, over the cached prefix;
- `"dual"`: the block alone, over the cached prefix and suffix (its own slots replaced).
Both caches are approximate (the cached keys saw an older state), refreshed every block.

Tokens revealed per step: the LLaDA schedule; or with `threshold`, the most confident masked
token plus every other one whose confidence reaches `threshold`; or with `factor`, the largest
n such that the k-th most confident token (k = 1..n) reaches 1 - factor / (k + 1). It is the
`diffusion` engine with Gumbel sampling (confidence in float64) and the chosen cache.
"""

from __future__ import annotations

from typing import Literal

from dllm.errors import ConfigError
from dllm.samplers.base import SAMPLERS
from dllm.samplers.diffusion import DiffusionSampler
from dllm.samplers.llada import Remasking, remasking_score

CacheMode = Literal["none", "prefix", "dual"]


@SAMPLERS.register("fast_dllm")
class FastDLLMSampler(DiffusionSampler):
    noise_over_forward = True

    def __init__(
        self,
        steps: int | None = None,
        block_length: int = 32,
        temperature: float = 0.0,
        remasking: Remasking = "low_confidence",
        threshold: float | None = 0.9,
        factor: float | None = None,
        use_cache: CacheMode = "dual",
        stop_at_eos: bool = True,
    ) -> None:
        if threshold is not None and factor is not None:
            raise ConfigError("fast_dllm: set threshold or factor, not both (null the other)")
        if threshold is not None and not 0 < threshold <= 1:
            raise ConfigError(f"fast_dllm: threshold must be in (0, 1], got {threshold}")
        if factor is not None and factor <= 0:
            raise ConfigError(f"fast_dllm: factor must be > 0, got {factor}")
        if use_cache not in ("none", "prefix", "dual"):
            raise ConfigError(f"fast_dllm: use_cache must be none, prefix or dual, got {use_cache!r}")
        if block_length is None or block_length < 1:
            raise ConfigError(f"fast_dllm: block_length must be a positive number of tokens, got {block_length}")
        selection = "threshold" if threshold is not None else "factor" if factor is not None else "top_k"
        super().__init__(
            block_length=block_length,
            steps=steps,
            temperature=temperature,
            sampling="gumbel",
            score=remasking_score(remasking, "fast_dllm"),
            selection=selection,
            threshold=threshold or 0.9,
            factor=factor or 1.0,
            cache=use_cache,
            stop_at_eos=stop_at_eos,
        )
        self.remasking = remasking
        self.threshold = threshold
        self.factor = factor
        self.use_cache = use_cache

    def check_gen_length(self, gen_length: int, model_block_size: int | None = None) -> None:
        if model_block_size is not None:
            raise ConfigError(
                "fast_dllm decodes full-attention models; this is a block diffusion model — use sampler=sdar "
                "(its exact block cache)"
            )
        super().check_gen_length(gen_length, model_block_size)
