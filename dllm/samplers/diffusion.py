"""`diffusion`: the composable decoder — block schedule x tokens-per-step schedule x unmasking
policy x cache strategy, each chosen independently. The reference presets (`llada`,
`fast_dllm`, `sdar`) are this engine with their own argument names.

- blocks: semi-autoregressive blocks of `block_length` (None: the model's block size, or the
  whole completion for full-attention models), decoded left to right; a block diffusion model's
  blocks count from each row's position 0, so a prompt ending inside a block shares it with the
  first generated tokens and the last block may run past `gen_length` (`Decoding`);
- steps: `steps` in all (None: `gen_length`), split evenly over the blocks; in a block the
  masked count is spread over its steps as evenly as possible, earlier steps taking the
  remainder (LLaDA's linear schedule) — the quota of `top_k`, `dynamic` and `sequential`;
  `threshold`, `factor` and `entropy_bounded` decide their own count and step until the
  block is done;
- proposal: `sampling="gumbel"` (Gumbel-max in float64, LLaDA / Fast-dLLM) or `"categorical"`
  (softmax(logits / T) with `top_k` / `top_p`, SDAR); greedy at temperature 0;
- policy: `score` x `selection` (`dllm.samplers.policies.UnmaskingPolicy`);
- cache: `none`, `prefix`, `dual` (full attention, approximate) or `block` (block diffusion
  models, exact) — `dllm.samplers.cache_strategies`.
"""

from __future__ import annotations

import itertools
from typing import ClassVar, Literal

import torch
from torch import Tensor

from dllm.errors import ConfigError
from dllm.samplers.base import SAMPLERS, Decoding, Sampler
from dllm.samplers.cache_strategies import CacheName, CacheStrategy, NoCache, cache_strategy_class
from dllm.samplers.policies import Score, Selection, UnmaskingPolicy, transfer_schedule
from dllm.samplers.tokens import categorical_sample, filter_top_k_top_p, gumbel_max_sample

Sampling = Literal["gumbel", "categorical"]


@SAMPLERS.register("diffusion")
class DiffusionSampler(Sampler):
    # Presets that reproduce a reference draw their noise as it does: over the whole output of
    # the step's forward, cut to the block (so seeded runs match token for token).
    noise_over_forward: ClassVar[bool] = False
    # Gumbel sampling scores confidence with a float64 softmax (Fast-dLLM); LLaDA uses the logits' dtype.
    confidence_in_float64: ClassVar[bool] = True
    # The step quotas split the whole block (SDAR), not the masks in it: they differ in the block a
    # prompt's tail shares with the first generated tokens. A step never reveals more than is masked.
    quota_of_whole_block: ClassVar[bool] = False

    def __init__(
        self,
        block_length: int | None = None,
        steps: int | None = None,
        temperature: float = 0.0,
        top_k: int | None = 0,
        top_p: float | None = 1.0,
        sampling: Sampling = "categorical",
        score: Score = "confidence",
        selection: Selection = "top_k",
        threshold: float | None = 0.9,
        factor: float | None = 1.0,
        eb_threshold: float | None = 0.35,
        cache: CacheName = "none",
        cfg_scale: float = 0.0,
        stop_at_eos: bool = True,
    ) -> None:
        """`top_k` / `top_p` None: no limit (as 0 / 1); `threshold`, `factor`, `eb_threshold`
        may be None where `selection` does not use them."""
        top_k, top_p = top_k or 0, 1.0 if top_p is None else top_p
        if temperature is None or cfg_scale is None:
            raise ConfigError(
                f"temperature ({temperature}) and cfg_scale ({cfg_scale}) must be numbers >= 0 (0: greedy, none)"
            )
        if (steps is not None and steps < 1) or (block_length is not None and block_length < 1):
            raise ConfigError(f"steps ({steps}) and block_length ({block_length}) must be positive (or null)")
        if temperature < 0 or cfg_scale < 0 or top_k < 0:
            raise ConfigError(f"temperature ({temperature}), cfg_scale ({cfg_scale}) and top_k ({top_k}) must be >= 0")
        if not 0 < top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {top_p}")
        if sampling not in ("gumbel", "categorical"):
            raise ConfigError(f"sampling must be 'gumbel' or 'categorical', got {sampling!r}")
        self.cache_class = cache_strategy_class(cache)
        if cfg_scale > 0 and cache != "none":
            raise ConfigError(f"cfg_scale > 0 (classifier-free guidance) needs cache none, got cache {cache!r}")
        self.policy = UnmaskingPolicy(score, selection, threshold, factor, eb_threshold)
        self.block_length = block_length
        self.steps = steps
        self.temperature = temperature
        self.top_k = top_k
        self.top_p = top_p
        self.sampling = sampling
        self.cache = cache
        self.cfg_scale = cfg_scale
        self.stop_at_eos = stop_at_eos

    def steps_per_block(self, gen_length: int, block_length: int) -> int:
        num_blocks = gen_length // block_length
        steps = self.steps or gen_length
        if steps % num_blocks:
            raise ConfigError(
                f"steps ({steps}) must be a multiple of the number of blocks (gen_length / block_length = "
                f"{num_blocks}); set steps to a multiple of {num_blocks}"
            )
        return steps // num_blocks

    def layout(self, gen_length: int, model_block_size: int | None = None) -> tuple[int, int]:
        """(block_length, steps per block) for `gen_length`; refuses lengths that do not split."""
        super().check_gen_length(gen_length)
        block_length = self.block_length or model_block_size or gen_length
        if gen_length % block_length:
            raise ConfigError(
                f"gen_length ({gen_length}) must be a multiple of block_length ({block_length}); set "
                f"block_length to a divisor of gen_length"
            )
        return block_length, self.steps_per_block(gen_length, block_length)

    def check_gen_length(self, gen_length: int, model_block_size: int | None = None) -> None:
        self.layout(gen_length, model_block_size)
        self.cache_class.check_model(model_block_size)

    def decoding_block_size(self, model: torch.nn.Module) -> int | None:
        """A block diffusion model decodes blocks of `block_length` (its own when unset), its
        attention block-causal over them in this decoding — another size than the checkpoint's
        is block-size adaptation (TraceRL)."""
        return (self.block_length or model.block_size) if model.block_size is not None else None

    def make_cache(self, model: torch.nn.Module) -> CacheStrategy:
        """A fresh cache strategy for one decoding of `model`."""
        return NoCache(self.cfg_scale) if self.cache == "none" else self.cache_class()

    def decode(
        self, model: torch.nn.Module, state: Decoding, gen_length: int, generator: torch.Generator | None
    ) -> None:
        block_length, steps_per_block = self.layout(gen_length, model.block_size)
        cache = self.make_cache(model)
        cache.start(model, state)
        for start in range(state.prompt_length, state.x.shape[1], block_length):
            end = start + block_length
            counts = state.block_masked(start, end).sum(1)
            if self.quota_of_whole_block:
                counts = torch.full_like(counts, block_length)
            quotas = transfer_schedule(counts, steps_per_block)
            for step in itertools.count():
                masked = state.block_masked(start, end)
                if not masked.any():
                    break
                logits, offset = cache.block_logits(model, state, start, end, step)
                window = slice(offset, offset + block_length)
                tokens, probs = self.propose(logits, window, generator, state.mask_id, step)
                noise = None
                if self.policy.score == "random":
                    noise = self.uniform(logits.shape[:2], window, generator, logits.device)
                quota = quotas[:, min(step, steps_per_block - 1)]
                candidates = cache.candidates(masked, step)
                state.reveal(start, end, tokens, self.policy.choose(probs, tokens, candidates, quota, generator, noise))
                if state.all_stopped():
                    return
            cache.finish_block(model, state, start, end)

    def uniform(
        self, forward_shape: torch.Size, window: slice, generator, device: torch.device, dtype=torch.float32
    ) -> Tensor:
        """Uniform noise for the block: drawn over the whole forward's output and cut to the
        block when reproducing a reference (`noise_over_forward`), else over the block alone."""
        length = window.stop - window.start
        shape = forward_shape if self.noise_over_forward else (forward_shape[0], length) + tuple(forward_shape[2:])
        noise = torch.rand(shape, dtype=dtype, device=device, generator=generator)
        return noise[:, window] if self.noise_over_forward else noise

    def propose(self, logits: Tensor, window: slice, generator, mask_id: int, step: int) -> tuple[Tensor, Tensor]:
        """(tokens [B, L], probabilities [B, L, V] scoring them) for the block `window` of a forward's
        logits, at `step` (from 0 within the block)."""
        block = logits[:, window]
        if self.sampling == "categorical":
            return categorical_sample(block, self.temperature, self.top_k, self.top_p, generator, mask_id)
        filtered = filter_top_k_top_p(block, self.top_k, self.top_p)
        noise = None
        if self.temperature > 0:
            noise = self.uniform(logits.shape, window, generator, logits.device, torch.float64)
        tokens = gumbel_max_sample(filtered, self.temperature, generator, mask_id, noise)
        probs = torch.softmax(block.to(torch.float64) if self.confidence_in_float64 else block, dim=-1)
        return tokens, probs
