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

Shifted (Dream-style) models with a cache follow Fast-dLLM's Dream decoder
(`dream/model/generation_utils_block.py`, `_sample`): a block's first forward reveals its first
token alone, and later steps recompute from the block itself (see `BlockStartCache`). Seeded
runs reproduce the reference's draws, including the unused one of its prefix cache (`propose`).
"""

from __future__ import annotations

from typing import Literal

import torch

from dllm.errors import ConfigError
from dllm.samplers.base import SAMPLERS
from dllm.samplers.cache_strategies import ApproximateCache, CacheStrategy, DualCache, PrefixCache
from dllm.samplers.diffusion import DiffusionSampler
from dllm.samplers.llada import Remasking, remasking_score

CacheMode = Literal["none", "prefix", "dual"]


class BlockStartCache(ApproximateCache):
    """Fast-dLLM's Dream decoder's caches, for shifted models (`_sample` in
    dream/model/generation_utils_block.py, l. 456-494 at 24cc59e): each block's first, full forward
    reveals only the block's first token (read from the position before it, whatever the selection
    rule), then later steps recompute from the block itself (the prefix cache keeps everything
    before it; the dual cache replaces the block's slots) and shift logits inside that window:
    window row i predicts the block's token i + 1, and row 0 stands in for token 0 (revealed by
    then), as the reference's shift does (`lag` 1)."""

    lag = 1

    def window_start(self, model, start):
        return start

    def candidates(self, masked, block_steps):
        if all(block_steps):
            return masked
        first = torch.zeros_like(masked)
        first[:, 0] = True
        later = torch.tensor(block_steps, device=masked.device) > 0
        return masked & (first | later[:, None])


class BlockStartPrefixCache(BlockStartCache, PrefixCache):
    """The prefix cache, cut at the block."""


class BlockStartDualCache(BlockStartCache, DualCache):
    """The dual cache, recomputing the block's own slots."""


SHIFTED_CACHES: dict[str, type[CacheStrategy]] = {"prefix": BlockStartPrefixCache, "dual": BlockStartDualCache}


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
            threshold=threshold,
            factor=factor,
            cache=use_cache,
            stop_at_eos=stop_at_eos,
        )
        self.remasking = remasking
        self.threshold = threshold
        self.factor = factor
        self.use_cache = use_cache

    def make_cache(self, model: torch.nn.Module) -> CacheStrategy:
        if getattr(model, "shift_logits", False) and self.cache in SHIFTED_CACHES:
            return SHIFTED_CACHES[self.cache]()
        return super().make_cache(model)

    def propose(self, logits, noise, block_steps, generators, mask_id):
        if self.cache == "prefix" and self.temperature > 0:
            # The reference's prefix cache draws Gumbel noise over the window twice per cached step and
            # samples with the second (an unused argmax first: generate_with_prefix_cache in
            # llada/generate.py, l. 161-162 at 24cc59e); drawing the first too keeps seeded runs equal.
            later = [i for i, steps in enumerate(block_steps) if steps > 0]
            noise.discard_whole_forward(later, (logits.shape[-1],), torch.float64)
        return super().propose(logits, noise, block_steps, generators, mask_id)

    def check_gen_length(self, gen_length: int, model_block_size: int | None = None) -> None:
        if model_block_size is not None:
            raise ConfigError(
                "fast_dllm decodes full-attention models; this is a block diffusion model — use sampler=sdar "
                "(its exact block cache)"
            )
        super().check_gen_length(gen_length, model_block_size)
