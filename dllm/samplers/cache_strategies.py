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

Rows progress on their own (`dllm.samplers.lanes`): one forward serves every slot, each at its
own block. Caches keep one preallocated buffer per slot (`RowSlotCache`), written at each row's
own columns; a row that starts a block under `prefix` / `dual` refreshes its slot with a full
forward of its own, so each row sees exactly the keys it would see decoded alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor

from dllm.errors import ConfigError
from dllm.models.base import logit_shift, run_model
from dllm.models.cache import KVCache, RowSlotCache
from dllm.samplers.base import Decoding
from dllm.samplers.lanes import Lanes

CacheName = Literal["none", "prefix", "dual", "block"]


@dataclass
class BlockLogits:
    """One step's logits for every slot's block: `logits` [S, block, V] (row i, token j: the
    logits that predict token j of slot i's block). Slot i's own forward, decoded alone, outputs
    `forward_lengths[i]` positions, its block's logits from `offsets[i]` on: where a reference
    cuts the noise it draws over that whole output."""

    logits: Tensor
    forward_lengths: list[int]
    offsets: list[int]


class CacheStrategy:
    """One decoding's cache: `admit` rows placed in slots, `block_logits` every step, `keep` the
    slots still decoding when rows leave with none waiting."""

    name: ClassVar[str]
    exact: ClassVar[bool] = True
    needs_blocks: ClassVar[bool | None] = None  # True: block diffusion models only; False: full attention only
    # A finished block is committed by one more forward of it (its slot's next forward).
    commits: ClassVar[bool] = False

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

    def admit(self, model: torch.nn.Module, state: Decoding, lanes: Lanes, slots: list[int]) -> None:
        """Rows were just placed in `slots` (at their first block)."""

    def keep(self, slots: list[int]) -> None:
        """Only `slots` (in that order) go on decoding."""

    def block_logits(self, model: torch.nn.Module, state: Decoding, lanes: Lanes) -> BlockLogits:
        """One forward (or two) for this step of every slot."""
        raise NotImplementedError

    def candidates(self, masked: Tensor, block_steps: list[int]) -> Tensor:
        """[S, L] bool: which of each block's `masked` positions this step may reveal (all of them;
        a strategy whose forward is trusted for part of the block only narrows them).
        `block_steps`: each slot's step within its block."""
        return masked


class NoCache(CacheStrategy):
    """Recompute everything each step (a block diffusion model: up to the end of the furthest
    slot's block; block-causal attention keeps each row's block from seeing later ones);
    `cfg_scale` > 0 adds LLaDA's classifier-free guidance (a second pass with the prompt
    masked: `un + (cfg_scale + 1)(cond - un)`)."""

    name = "none"

    def __init__(self, cfg_scale: float = 0.0) -> None:
        self.cfg_scale = cfg_scale

    def block_logits(self, model, state, lanes):
        rows, shift = lanes.row_tensor(state.x.device), logit_shift(model)
        if model.block_size is not None:
            forward_lengths = [start + lanes.block_length for start in lanes.starts]
        else:
            forward_lengths = [state.x.shape[1]] * len(lanes)
        stop = max(forward_lengths)
        x = state.x[rows, :stop]
        keys = state.key_mask[rows, :stop] if state.padded else None  # None: no mask, and no check of one
        positions = state.position_ids[rows, :stop] if state.position_ids is not None else None
        common = lanes.common_start()
        if common is not None:  # one slice of every row
            read = slice(common - shift, common - shift + lanes.block_length)
        else:
            read = lanes.columns(state.x.device, -shift)
        offsets = [start - shift for start in lanes.starts]
        if self.cfg_scale <= 0:
            state.count_forward(lanes.rows)
            logits = run_model(model, read, x, attention_mask=keys, position_ids=positions, block_size=state.block_size)
            return BlockLogits(logits, forward_lengths, offsets)
        unconditional = x.clone()
        unconditional[:, : state.prompt_length] = state.mask_id
        both_positions = torch.cat([positions, positions]) if positions is not None else None
        logits = run_model(
            model, read if isinstance(read, slice) else torch.cat([read, read]), torch.cat([x, unconditional]),
            attention_mask=None if keys is None else torch.cat([keys, keys]), position_ids=both_positions,
            block_size=state.block_size,
        )  # fmt: skip
        state.count_forward(lanes.rows)
        state.count_forward(lanes.rows)
        conditional, unconditional_logits = logits.chunk(2)
        guided = unconditional_logits + (self.cfg_scale + 1) * (conditional - unconditional_logits)
        return BlockLogits(guided, forward_lengths, offsets)


class SlotCache(CacheStrategy):
    """A strategy that keeps every slot's keys and values in a `RowSlotCache` over the canvas."""

    slots: RowSlotCache | None = None
    _key_mask: tuple[Tensor, Tensor] | None = None  # (the slots' rows, their key mask)

    def slot_cache(self, model: torch.nn.Module, state: Decoding) -> RowSlotCache:
        if self.slots is None:
            self.slots = RowSlotCache(model.config.num_hidden_layers, state.x.shape[1])
        return self.slots

    def keep(self, slots):
        if self.slots is not None:
            self.slots.keep(slots)

    def fill(self, model, state, lanes: Lanes, slots: list[int], end: int, logits_slice) -> Tensor:
        """Run canvas columns [0, end) of the rows in `slots` through the model into a fresh cache,
        copied into those slots (their keys and values from column 0); their logits at `logits_slice`."""
        rows = [lanes.rows[slot] for slot in slots]
        index = torch.tensor(rows, device=state.x.device)
        fresh = KVCache(model.config.num_hidden_layers)
        positions = state.position_ids[index, :end] if state.position_ids is not None else None
        keys = state.key_mask[index, :end] if state.padded else None
        logits = run_model(
            model, logits_slice, state.x[index, :end], attention_mask=keys, position_ids=positions,
            past_key_values=fresh, use_cache=True, block_size=state.block_size,
        )  # fmt: skip
        self.slot_cache(model, state).place(torch.tensor(slots, device=state.x.device), fresh, len(lanes))
        state.count_forward(rows)
        return logits

    def slot_forward(
        self, model, state, lanes: Lanes, columns: Tensor | slice, writes: Tensor | slice, read, mask
    ) -> Tensor:
        """One forward of every slot's query tokens at canvas `columns` [S, Lq] over its slot,
        their keys written at `writes` [S, Lq] (the canvas width: nowhere); logits at `read`.
        Slices instead: every slot's row at the same columns (rows in lockstep)."""
        cache = self.slot_cache(model, state)
        cache.write_columns = writes
        if isinstance(columns, slice):
            rows = lanes.row_index(state.x.device)
            ids = state.x[rows, columns]
            if state.position_ids is not None:
                positions = state.position_ids[rows, columns]
            else:
                positions = torch.arange(columns.start, columns.stop, device=ids.device).expand(ids.shape[0], -1)
        else:
            at = lanes.row_tensor(state.x.device)[:, None] * state.x.shape[1] + columns
            ids = state.x.view(-1).take(at)
            positions = state.position_ids.reshape(-1).take(at) if state.position_ids is not None else columns
        return run_model(
            model, read, ids, attention_mask=mask, position_ids=positions,
            past_key_values=cache, use_cache=True, block_size=state.block_size,
        )  # fmt: skip

    def key_mask(self, state: Decoding, lanes: Lanes) -> Tensor | None:
        """[S, 1, 1, C] each slot's row's key mask over the canvas (None: no padding), built when the slots change."""
        if not state.padded:
            return None
        rows = lanes.row_tensor(state.x.device)
        if self._key_mask is None or self._key_mask[0] is not rows:
            self._key_mask = (rows, state.key_mask[rows].bool()[:, None, None, :])
        return self._key_mask[1]


class ApproximateCache(SlotCache):
    """Fast-dLLM's caches: each block's first forward runs the row's whole sequence into its slot;
    later steps recompute a window from `window_start` over it. A block's token j is read from
    window position j - `lag` (at least 0)."""

    exact = False
    needs_blocks = False
    lag: ClassVar[int] = 0

    def window_start(self, model: torch.nn.Module, start: int) -> int:
        """First position that the later steps of the block starting at `start` recompute: the one
        whose logits predict the block's first token."""
        return start - logit_shift(model)

    def window(self, state: Decoding, lanes: Lanes, starts: list[int]) -> tuple[Tensor, Tensor, Tensor, list[int]]:
        """(query columns [S, Lq], write columns [S, Lq], block rows read [S, block] of the window
        forward, each slot's window length alone) for windows from `starts` (the canvas width:
        a slot that takes no part)."""
        raise NotImplementedError

    def block_logits(self, model, state, lanes):
        device, width = state.x.device, state.x.shape[1]
        forward_lengths, offsets = [width] * len(lanes), [0] * len(lanes)
        fresh = [slot for slot, steps in enumerate(lanes.block_steps) if steps == 0]
        later = [slot for slot, steps in enumerate(lanes.block_steps) if steps > 0]
        logits = None
        if fresh:
            read = lanes.columns(device, -logit_shift(model))[fresh]
            fresh_logits = self.fill(model, state, lanes, fresh, width, read)
            logits = fresh_logits.new_empty((len(lanes),) + fresh_logits.shape[1:])
            logits[fresh] = fresh_logits
            for slot in fresh:
                offsets[slot] = lanes.starts[slot] - logit_shift(model)
        if later:
            # a slot that refreshed this step takes no part (the canvas width: no window)
            starts = [
                self.window_start(model, start) if steps else width
                for start, steps in zip(lanes.starts, lanes.block_steps, strict=True)
            ]
            columns, writes, read, lengths = self.window(state, lanes, starts)
            window_logits = self.slot_forward(model, state, lanes, columns, writes, read, self.key_mask(state, lanes))
            state.count_forward([lanes.rows[slot] for slot in later])
            if logits is None:
                logits = window_logits
            else:
                logits[later] = window_logits[later]
            for slot in later:
                forward_lengths[slot] = lengths[slot] + self.lag
        return BlockLogits(logits, forward_lengths, offsets)

    def _reads(self, first: Tensor, block: int) -> Tensor:
        """[S, block] window rows holding each block token's logits, from each slot's `first` [S]."""
        lagged = (torch.arange(block, device=first.device) - self.lag).clamp(min=0)
        return first[:, None] + lagged

    def _shared_window(self, state: Decoding, lanes: Lanes, start: int, stop: int):
        """`window`'s answer when every slot recomputes canvas columns [start, stop): slices."""
        block = lanes.block_length
        read = slice(0, block) if self.lag == 0 else self._reads(state.x.new_zeros(len(lanes)), block)
        return slice(start, stop), slice(start, stop), read, [stop - start] * len(lanes)


class PrefixCache(ApproximateCache):
    """Later steps recompute each row's block and everything after it over its cached prefix
    (its slot keeps the keys before the window)."""

    name = "prefix"

    def window(self, state, lanes, starts):
        width, device = state.x.shape[1], state.x.device
        first = min(starts)
        if max(starts) == first < width:
            return self._shared_window(state, lanes, first, width)
        columns = torch.arange(first, width, device=device).expand(len(lanes), -1)
        begin = torch.tensor(starts, device=device)
        writes = torch.where(columns >= begin[:, None], columns, width)
        read = self._reads((begin - first).clamp(max=width - first - lanes.block_length), lanes.block_length)
        return columns, writes, read, [width - start for start in starts]


class DualCache(ApproximateCache):
    """Later steps recompute each row's block alone, written in place over its cached prefix and suffix."""

    name = "dual"

    def window(self, state, lanes, starts):
        width, device, block = state.x.shape[1], state.x.device, lanes.block_length
        if min(starts) == max(starts) < width:
            begin = min(starts[0], width - block)
            return self._shared_window(state, lanes, begin, begin + block)
        begin = torch.tensor(starts, device=device).clamp(max=width - block)
        columns = begin[:, None] + torch.arange(block, device=device)
        taking_part = torch.tensor(starts, device=device)[:, None] < width
        writes = torch.where(taking_part, columns, width)
        return columns, writes, self._reads(torch.zeros_like(begin), block), [block] * len(lanes)


class BlockCache(SlotCache):
    """The exact cache of a block diffusion model: each row's whole prompt blocks, then each of its
    finished blocks, committed once into its slot; each step runs every slot's block over it."""

    name = "block"
    needs_blocks = True
    commits = True

    def admit(self, model, state, lanes, slots):
        if state.prompt_length == 0:
            self.slot_cache(model, state)
            return
        # a row alone prefills only when it has a whole prompt block (its last prefix column is real)
        with_prompt_block = state.key_mask[:, state.prompt_length - 1].tolist()
        self.fill(model, state, lanes, slots, state.prompt_length, slice(0, 0))
        for slot in slots:
            if not with_prompt_block[lanes.rows[slot]]:
                state.row_nfe[lanes.rows[slot]] -= 1

    def block_logits(self, model, state, lanes):
        device, block = state.x.device, lanes.block_length
        ends = [start + block for start in lanes.starts]
        common = lanes.common_start()
        shared = common is not None  # every slot at the same columns: slices
        columns = slice(common, common + block) if shared else lanes.columns(device)
        cache = self.slot_cache(model, state)
        cache.read_length = max(ends)
        mask = None
        if state.padded or not shared:
            keys = state.key_mask[lanes.row_index(device), : cache.read_length].bool()
            if not shared:
                within = torch.arange(cache.read_length, device=device) < torch.tensor(ends, device=device)[:, None]
                keys = keys & within
            mask = keys[:, None, None, :]
        stepping = not all(lanes.committing)
        logits = self.slot_forward(model, state, lanes, columns, columns, None if stepping else slice(0, 0), mask)
        state.count_forward(lanes.rows)
        return BlockLogits(logits, [block] * len(lanes), [0] * len(lanes))


CACHE_STRATEGIES: dict[str, type[CacheStrategy]] = {
    strategy.name: strategy for strategy in (NoCache, PrefixCache, DualCache, BlockCache)
}


def cache_strategy_class(name: str) -> type[CacheStrategy]:
    if name not in CACHE_STRATEGIES:
        raise ConfigError(f"unknown cache {name!r}; choose one of {', '.join(CACHE_STRATEGIES)}")
    return CACHE_STRATEGIES[name]
