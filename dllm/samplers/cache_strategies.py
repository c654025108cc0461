"""Cache strategies: how a decoder gets the logits of the block it is decoding.

Every strategy returns the raw logits of the forward it ran and the offset of the block in
them: `logits[:, offset + i]` predicts the block's token i, for shifted (Dream-style) models
too (they read one position earlier). Each counts its forwards in `state.nfe`, and may narrow
the positions a step reveals (`candidates`).

- `none`: every step recomputes the whole sequence (a block diffusion model: up to the block's
  end, which is all its block-causal attention lets the block see);
- `prefix` (Fast-dLLM, approximate): each block starts with one full forward that caches the
  prefix; later steps recompute the block and everything after it over that cache;
- `dual` (Fast-dLLM, approximate): the first forward caches prefix and suffix; later steps
  recompute the block alone, written in place into the cache;
- `block` (exact, block diffusion models): the prompt's whole blocks and every finished block
  are committed once; each step runs the block alone over the cache, and one more forward
  commits it (a prompt's tail is decoded with the block it shares with the first masks).
The approximate caches see keys computed from an older state, refreshed every block; the
exact one gives the same tokens as recomputing.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torch import Tensor

from dllm.errors import ConfigError
from dllm.models.cache import KVCache
from dllm.samplers.base import Decoding

CacheName = Literal["none", "prefix", "dual", "block"]


def _shift(model: torch.nn.Module) -> int:
    return int(bool(getattr(model, "shift_logits", False)))


class CacheStrategy:
    """One decoding's cache: `start` once, `block_logits` every step, `finish_block` after each block."""

    name: ClassVar[str]
    exact: ClassVar[bool] = True
    needs_blocks: ClassVar[bool | None] = None  # True: block diffusion models only; False: full attention only

    @classmethod
    def check_model(cls, model_block_size: int | None) -> None:
        """Refuse a model this strategy cannot decode (from its block size alone: config time)."""
        if cls.needs_blocks and model_block_size is None:
            raise ConfigError(
                f"cache {cls.name!r} caches whole blocks of a block diffusion model; this model has full "
                f"attention: use cache none, prefix or dual"
            )
        if cls.needs_blocks is False and model_block_size is not None:
            raise ConfigError(
                f"cache {cls.name!r} is for full-attention models; a block diffusion model has an exact cache: "
                f"use cache block (or none)"
            )

    def start(self, model: torch.nn.Module, state: Decoding) -> None:
        """Before the first block."""

    def block_logits(
        self, model: torch.nn.Module, state: Decoding, start: int, end: int, step: int
    ) -> tuple[Tensor, int]:
        """(raw logits of this step's forward, offset of the block [start, end) in them); `step`
        counts from 0 within the block."""
        raise NotImplementedError

    def finish_block(self, model: torch.nn.Module, state: Decoding, start: int, end: int) -> None:
        """After the block [start, end) has no mask left."""

    def candidates(self, masked: Tensor, step: int) -> Tensor:
        """[B, L] bool: which of the block's `masked` positions step `step` may reveal (all of them;
        a strategy whose forward is trusted for part of the block only narrows them)."""
        return masked


class NoCache(CacheStrategy):
    """Recompute everything each step; `cfg_scale` > 0 adds LLaDA's classifier-free guidance
    (a second pass with the prompt masked: `un + (cfg_scale + 1)(cond - un)`)."""

    name = "none"

    def __init__(self, cfg_scale: float = 0.0) -> None:
        self.cfg_scale = cfg_scale

    def block_logits(self, model, state, start, end, step):
        stop = end if model.block_size is not None else state.x.shape[1]
        x, keys = state.x[:, :stop], state.key_mask[:, :stop]
        positions = state.position_ids[:, :stop] if state.position_ids is not None else None
        offset = start - _shift(model)
        if self.cfg_scale <= 0:
            state.nfe += 1
            return model(x, attention_mask=keys, position_ids=positions, block_size=state.block_size).logits, offset
        unconditional = x.clone()
        unconditional[:, : state.prompt_length] = state.mask_id
        both = torch.cat([x, unconditional])
        both_positions = torch.cat([positions, positions]) if positions is not None else None
        logits = model(
            both, attention_mask=torch.cat([keys, keys]), position_ids=both_positions, block_size=state.block_size
        ).logits
        state.nfe += 2
        conditional, unconditional_logits = logits.chunk(2)
        return unconditional_logits + (self.cfg_scale + 1) * (conditional - unconditional_logits), offset


class ApproximateCache(CacheStrategy):
    """Fast-dLLM's caches: each block's first forward runs the whole sequence into a fresh cache;
    later steps recompute a window starting at `window_start` over it (`window_logits`)."""

    exact = False
    needs_blocks = False

    def window_start(self, model: torch.nn.Module, start: int) -> int:
        """First position that the later steps of the block starting at `start` recompute: the one
        whose logits predict the block's first token."""
        return start - _shift(model)

    def window_logits(self, model: torch.nn.Module, state: Decoding, query: int, length: int) -> Tensor:
        """Logits of a later step's forward over the window from `query`: row i predicts the block's
        token i (`length`: the block's)."""
        raise NotImplementedError

    def block_logits(self, model, state, start, end, step):
        state.nfe += 1
        if step == 0:
            self.cache = KVCache(model.config.num_hidden_layers)
            logits = model(state.x, attention_mask=state.key_mask, past_key_values=self.cache, use_cache=True).logits
            return logits, start - _shift(model)
        return self.window_logits(model, state, self.window_start(model, start), end - start), 0


class PrefixCache(ApproximateCache):
    name = "prefix"

    def window_logits(self, model, state, query, length):
        self.cache.crop(query)  # the prefix stays cached; the window and everything after it is recomputed
        return model(state.x[:, query:], attention_mask=state.key_mask, past_key_values=self.cache).logits


class DualCache(ApproximateCache):
    name = "dual"

    def window_logits(self, model, state, query, length):
        window = state.x[:, query : query + length]
        return model(window, attention_mask=state.key_mask, past_key_values=self.cache, replace_position=query).logits


class BlockCache(CacheStrategy):
    name = "block"
    needs_blocks = True

    def start(self, model, state):
        self.cache = KVCache(model.config.num_hidden_layers)
        if state.prompt_length > 0:  # no whole prompt block: nothing to prefill
            self._forward(model, state, 0, state.prompt_length, commit=True)

    def block_logits(self, model, state, start, end, step):
        return self._forward(model, state, start, end, commit=False).logits, 0

    def finish_block(self, model, state, start, end):
        self._forward(model, state, start, end, commit=True)

    def _forward(self, model, state, start: int, end: int, commit: bool):
        """Positions [start, end) over the committed cache (stored when `commit`, which reads no
        logits), one forward."""
        state.nfe += 1
        keys = state.key_mask[:, :end]
        return model(
            state.x[:, start:end], attention_mask=keys, position_ids=state.position_ids[:, start:end],
            past_key_values=self.cache, use_cache=commit, block_size=state.block_size,
            logits_slice=slice(0, 0) if commit else None,
        )  # fmt: skip


CACHE_STRATEGIES: dict[str, type[CacheStrategy]] = {
    strategy.name: strategy for strategy in (NoCache, PrefixCache, DualCache, BlockCache)
}


def cache_strategy_class(name: str) -> type[CacheStrategy]:
    if name not in CACHE_STRATEGIES:
        raise ConfigError(f"unknown cache {name!r}; choose one of {', '.join(CACHE_STRATEGIES)}")
    return CACHE_STRATEGIES[name]
