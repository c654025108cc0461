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
"""

from __future__ import annotations

import itertools
from typing import Literal

import torch
from torch import Tensor

from dllm.errors import ConfigError
from dllm.models.cache import KVCache
from dllm.samplers.base import SAMPLERS, Decoding, Sampler
from dllm.samplers.policies import (
    dynamic_selection,
    entropy_bounded_selection,
    select_top_k,
    sequential_selection,
    transfer_schedule,
)

Strategy = Literal["sequential", "low_confidence_static", "low_confidence_dynamic", "entropy_bounded"]


def sample_tokens(
    logits: Tensor, temperature: float, top_k: int, top_p: float, generator: torch.Generator | None, mask_id: int
) -> tuple[Tensor, Tensor, Tensor]:
    """(tokens, probability of each sampled token, probabilities) from [B, L, V] logits: greedy
    at temperature 0, else softmax(logits / T) sampled after top-k / top-p filtering. The mask
    token is never sampled."""
    logits = logits.float().clone()
    logits[..., mask_id] = -torch.inf
    if temperature > 0:
        logits = logits / temperature
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, -torch.inf)
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop_sorted = cumulative - sorted_logits.softmax(-1) > top_p  # keep the token that crosses top_p
        logits = logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), -torch.inf)
    probs = logits.softmax(-1)
    if temperature > 0:
        flat = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator)
        tokens = flat.view(probs.shape[:-1])
    else:
        tokens = probs.argmax(-1)
    return tokens, probs.gather(-1, tokens[..., None]).squeeze(-1), probs


@SAMPLERS.register("sdar")
class SDARSampler(Sampler):
    """SDAR's decoder with its argument names. `block_length` None = the model's block size.
    `use_cache=False` recomputes the prefix every step (same tokens, for checking the cache)."""

    def __init__(
        self,
        block_length: int | None = None,
        denoising_steps: int = 4,
        remasking_strategy: Strategy = "low_confidence_dynamic",
        confidence_threshold: float = 0.85,
        eb_threshold: float = 0.35,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        use_cache: bool = True,
        stop_at_eos: bool = True,
    ) -> None:
        strategies = ("sequential", "low_confidence_static", "low_confidence_dynamic", "entropy_bounded")
        if remasking_strategy not in strategies:
            raise ConfigError(f"remasking_strategy must be one of {', '.join(strategies)}, got {remasking_strategy!r}")
        for name, value in (("confidence_threshold", confidence_threshold), ("top_p", top_p)):
            if not 0 < value <= 1:
                raise ConfigError(f"{name} must be in (0, 1], got {value}")
        if eb_threshold <= 0 or denoising_steps < 1 or temperature < 0 or top_k < 0:
            raise ConfigError(
                "eb_threshold must be > 0, denoising_steps >= 1, temperature >= 0 and top_k >= 0 "
                f"(got {eb_threshold}, {denoising_steps}, {temperature}, {top_k})"
            )
        self.block_length = block_length
        self.denoising_steps = denoising_steps
        self.remasking_strategy = remasking_strategy
        self.confidence_threshold = confidence_threshold
        self.eb_threshold = eb_threshold
        self.temperature = temperature
        self.top_k = top_k
        self.top_p = top_p
        self.use_cache = use_cache
        self.stop_at_eos = stop_at_eos

    def check_gen_length(self, gen_length: int, model_block_size: int | None = None) -> None:
        super().check_gen_length(gen_length)
        if model_block_size is None:
            raise ConfigError("the sdar sampler decodes block diffusion models; this model has no blocks (use llada)")
        block_length = self.block_length or model_block_size
        if block_length != model_block_size:
            raise ConfigError(
                f"block_length ({block_length}) must equal the model's block_size ({model_block_size}): the exact "
                f"cache commits whole model blocks; leave sampler.block_length null"
            )
        if gen_length % block_length:
            raise ConfigError(f"gen_length ({gen_length}) must be a multiple of block_length ({block_length})")
        if self.denoising_steps > block_length:
            raise ConfigError(
                f"denoising_steps ({self.denoising_steps}) must not exceed block_length ({block_length}): "
                f"every step reveals at least one token"
            )

    def select(self, masked: Tensor, confidence: Tensor, probs: Tensor, quota: int) -> Tensor:
        """[B, L] positions to reveal this step among `masked`, by the remasking strategy."""
        quotas = torch.minimum(torch.full_like(masked.sum(1), quota), masked.sum(1))
        if self.remasking_strategy == "sequential":
            return sequential_selection(masked, quotas)
        if self.remasking_strategy == "low_confidence_dynamic":
            return dynamic_selection(confidence, masked, quotas, self.confidence_threshold)
        if self.remasking_strategy == "entropy_bounded":
            return entropy_bounded_selection(probs, masked, self.eb_threshold)
        return select_top_k(torch.where(masked, confidence, -torch.inf), quotas) & masked

    def decode(
        self, model: torch.nn.Module, state: Decoding, gen_length: int, generator: torch.Generator | None
    ) -> None:
        x, prompt_length, block = state.x, state.prompt_length, model.block_size
        quotas = transfer_schedule(torch.tensor([block]), self.denoising_steps)[0].tolist()
        cache = KVCache(model.config.num_hidden_layers) if self.use_cache else None
        if cache is not None:
            prefill = x[:, :prompt_length]
            model(prefill, attention_mask=state.key_mask[:, :prompt_length], past_key_values=cache, use_cache=True)
        for start in range(prompt_length, prompt_length + gen_length, block):
            end = start + block
            # Quotas per the schedule; a strategy that reveals fewer (entropy_bounded) keeps
            # stepping until the block is complete, so no mask is ever left behind.
            for step in itertools.count():
                masked = state.block_masked(start, end)
                if not masked.any():
                    break
                logits = self._block_logits(model, x, state.key_mask, start, end, cache)
                state.nfe += 1
                tokens, confidence, probs = sample_tokens(
                    logits, self.temperature, self.top_k, self.top_p, generator, state.mask_id
                )
                quota = quotas[min(step, len(quotas) - 1)]
                state.reveal(start, end, tokens, self.select(masked, confidence, probs, quota))
            if cache is not None:
                model(x[:, start:end], attention_mask=state.key_mask[:, :end], past_key_values=cache, use_cache=True)
                state.nfe += 1
            if state.all_stopped(end):
                break

    @staticmethod
    def _block_logits(model, x: Tensor, key_mask: Tensor, start: int, end: int, cache: KVCache | None) -> Tensor:
        if cache is None:
            return model(x[:, :end], attention_mask=key_mask[:, :end]).logits[:, start:end]
        return model(x[:, start:end], attention_mask=key_mask[:, :end], past_key_values=cache).logits
