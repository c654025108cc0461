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
n such that the k-th most confident token (k = 1..n) reaches 1 - factor / (k + 1).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from dllm.errors import ConfigError
from dllm.models.cache import KVCache
from dllm.samplers.base import SAMPLERS, Decoding, Sampler
from dllm.samplers.llada import gumbel_max_sample
from dllm.samplers.policies import factor_selection, select_top_k, threshold_selection, transfer_schedule

CacheMode = Literal["none", "prefix", "dual"]


@SAMPLERS.register("fast_dllm")
class FastDLLMSampler(Sampler):
    def __init__(
        self,
        steps: int | None = None,
        block_length: int = 32,
        temperature: float = 0.0,
        remasking: Literal["low_confidence", "random"] = "low_confidence",
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
        if remasking not in ("low_confidence", "random") or block_length < 1 or temperature < 0:
            raise ConfigError(
                f"fast_dllm: remasking must be low_confidence or random ({remasking!r}), block_length >= 1 "
                f"({block_length}), temperature >= 0 ({temperature})"
            )
        self.steps = steps
        self.block_length = block_length
        self.temperature = temperature
        self.remasking = remasking
        self.threshold = threshold
        self.factor = factor
        self.use_cache = use_cache
        self.stop_at_eos = stop_at_eos

    def check_gen_length(self, gen_length: int, model_block_size: int | None = None) -> None:
        super().check_gen_length(gen_length)
        if model_block_size is not None:
            raise ConfigError(
                "fast_dllm decodes full-attention models; this is a block diffusion model — use sampler=sdar "
                "(its exact block cache)"
            )
        if gen_length % self.block_length:
            raise ConfigError(f"gen_length ({gen_length}) must be a multiple of block_length ({self.block_length})")
        steps = self.steps or gen_length
        if steps % (gen_length // self.block_length):
            raise ConfigError(
                f"steps ({steps}) must be a multiple of the number of blocks ({gen_length // self.block_length})"
            )

    def select(self, logits: Tensor, masked: Tensor, quota: Tensor, mask_id: int, generator) -> tuple[Tensor, Tensor]:
        """(proposed tokens, positions to reveal) from the block's [B, L, V] logits."""
        tokens = gumbel_max_sample(logits, self.temperature, generator, mask_id)
        if self.remasking == "low_confidence":
            confidence = torch.softmax(logits.to(torch.float64), dim=-1).gather(-1, tokens[..., None]).squeeze(-1)
        else:
            confidence = torch.rand(tokens.shape, device=tokens.device, generator=generator)
        if self.threshold is not None:
            reveal = threshold_selection(confidence, masked, self.threshold)
        elif self.factor is not None:
            reveal = factor_selection(confidence, masked, self.factor)
        else:
            reveal = select_top_k(torch.where(masked, confidence, -torch.inf), quota) & masked
        return tokens, reveal

    def decode(
        self, model: torch.nn.Module, state: Decoding, gen_length: int, generator: torch.Generator | None
    ) -> None:
        x, key_mask, prompt_length = state.x, state.key_mask, state.prompt_length
        steps_per_block = (self.steps or gen_length) // (gen_length // self.block_length)
        shift = int(bool(model.shift_logits))  # shifted models read block logits one position earlier
        for start in range(prompt_length, prompt_length + gen_length, self.block_length):
            end = start + self.block_length
            schedule = transfer_schedule(state.block_masked(start, end).sum(1), steps_per_block)
            query = start - shift
            cache = None
            for step in range(gen_length + 1):
                masked = state.block_masked(start, end)
                if not masked.any():
                    break
                if step == 0 or self.use_cache == "none":
                    cache = KVCache(model.config.num_hidden_layers) if self.use_cache != "none" else None
                    out = model(x, attention_mask=key_mask, past_key_values=cache, use_cache=cache is not None)
                    logits = out.logits[:, query : query + self.block_length]
                    if self.use_cache == "prefix":
                        cache.crop(query)
                elif self.use_cache == "prefix":
                    logits = model(x[:, query:], attention_mask=key_mask, past_key_values=cache).logits
                    logits = logits[:, : self.block_length]
                else:
                    block_input = x[:, query : end - shift]
                    logits = model(
                        block_input, attention_mask=key_mask, past_key_values=cache, replace_position=query
                    ).logits
                state.nfe += 1
                quota = schedule[:, min(step, steps_per_block - 1)]
                tokens, reveal = self.select(logits, masked, quota, state.mask_id, generator)
                state.reveal(start, end, tokens, reveal)
            if state.all_stopped(end):
                break
