"""The KV cache every family shares, and the attention step that reads and writes it.

Semantics of a forward with `past_key_values=cache`:
- the current tokens attend the cached keys and their own;
- `use_cache=True` commits the current tokens' keys/values (append), `False` leaves the
  cache as it was (a block diffusion model's noisy block, re-decoded every step);
- `replace_position=s` writes the current tokens at slots [s, s+L) of the cache, in place,
  instead of after it (Fast-dLLM's dual cache: prefix and suffix cached, the block recomputed).

`RowSlotCache` is the per-row layout a decoder with per-row progress uses: every row owns a
preallocated buffer of the whole canvas, each forward writes each row's tokens at that row's own
columns (`write_columns`), and the caller's [B, 1, Lq, Lk] mask says which columns each row reads.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dllm.models.layers import apply_rotary


class KVCache:
    """Keys and values per layer, [B, H_kv, T, D], in buffers that grow by doubling: appending
    or attending to a few more tokens never copies the cache (inference only: buffers are
    written in place)."""

    def __init__(self, num_layers: int) -> None:
        self.keys: list[Tensor | None] = [None] * num_layers
        self.values: list[Tensor | None] = [None] * num_layers
        self.lengths = [0] * num_layers

    @property
    def length(self) -> int:
        return self.lengths[0]

    def layer(self, layer: int) -> tuple[Tensor, Tensor]:
        """The committed keys and values of `layer` (views)."""
        n = self.lengths[layer]
        return self.keys[layer][:, :, :n], self.values[layer][:, :, :n]

    def crop(self, length: int) -> None:
        """Forget everything from position `length` on."""
        self.lengths = [min(n, length) for n in self.lengths]

    def _reserve(self, layer: int, k: Tensor, v: Tensor, needed: int) -> None:
        """Make room for `needed` positions, doubling the buffers (so appends cost O(1) amortised)."""
        keys, values = self.keys[layer], self.values[layer]
        if keys is not None and keys.shape[2] >= needed:
            return
        capacity = max(needed, 2 * keys.shape[2] if keys is not None else 0)
        new_keys = k.new_empty(k.shape[:2] + (capacity, k.shape[3]))
        new_values = v.new_empty(v.shape[:2] + (capacity, v.shape[3]))
        if keys is not None:
            n = self.lengths[layer]
            new_keys[:, :, :n], new_values[:, :, :n] = keys[:, :, :n], values[:, :, :n]
        self.keys[layer], self.values[layer] = new_keys, new_values

    def extend(
        self, layer: int, k: Tensor, v: Tensor, commit: bool, replace_position: int | None
    ) -> tuple[Tensor, Tensor]:
        """All keys/values the current tokens attend: the cache with `k`/`v` after it (stored only
        when `commit`), or written at `replace_position` (in place, as Fast-dLLM's dual cache)."""
        n, added = self.lengths[layer], k.shape[2]
        if replace_position is not None:
            end = replace_position + added
            self.keys[layer][:, :, replace_position:end] = k
            self.values[layer][:, :, replace_position:end] = v
            return self.layer(layer)
        self._reserve(layer, k, v, n + added)
        self.keys[layer][:, :, n : n + added] = k
        self.values[layer][:, :, n : n + added] = v
        if commit:
            self.lengths[layer] = n + added
        return self.keys[layer][:, :, : n + added], self.values[layer][:, :, : n + added]


class RowSlotCache:
    """Keys and values per layer, [S, H_kv, C + 1, D]: one slot per decoding row, a preallocated
    buffer over the row's whole canvas of C columns (column C takes writes to be discarded). A
    forward runs one query row per slot; before it the decoder sets `write_columns` [S, Lq]: the
    column each query token's keys go to (C: nowhere), or a slice when every slot writes the same
    columns (a batch in lockstep, one row: a plain copy instead of a scatter). The forward attends every column
    [S, H, `read_length`, D]; its mask (given by the decoder) decides which columns each row reads, so rows at
    different positions share one forward and memory is bounded by the slots, not the prompts."""

    # a forward over this cache takes its mask from the caller (None: every column it reads)
    caller_masks = True

    def __init__(self, num_layers: int, columns: int) -> None:
        self.columns = columns
        self.keys: list[Tensor | None] = [None] * num_layers
        self.values: list[Tensor | None] = [None] * num_layers
        self.write_columns: Tensor | slice | None = None
        self.read_length = columns  # the forward attends columns [0, read_length)
        self._index: tuple[Tensor, Tensor] | None = None  # (write_columns, its expansion), shared by the layers

    @property
    def length(self) -> int:
        return self.columns

    def _allocate(self, layer: int, slots: int, like: Tensor) -> None:
        if self.keys[layer] is None or self.keys[layer].shape[0] != slots:
            shape = (slots, like.shape[1], self.columns + 1, like.shape[3])
            self.keys[layer], self.values[layer] = like.new_zeros(shape), like.new_zeros(shape)

    def extend(
        self, layer: int, k: Tensor, v: Tensor, commit: bool, replace_position: int | None
    ) -> tuple[Tensor, Tensor]:
        self._allocate(layer, k.shape[0], k)
        if isinstance(self.write_columns, slice):
            self.keys[layer][:, :, self.write_columns] = k
            self.values[layer][:, :, self.write_columns] = v
        else:
            self._scatter(layer, k, v)
        return self.keys[layer][:, :, : self.read_length], self.values[layer][:, :, : self.read_length]

    def _scatter(self, layer: int, k: Tensor, v: Tensor) -> None:
        if self._index is None or self._index[0] is not self.write_columns:
            expanded = self.write_columns[:, None, :, None].expand(-1, k.shape[1], -1, k.shape[3])
            self._index = (self.write_columns, expanded)
        index = self._index[1]
        self.keys[layer].scatter_(2, index, k)
        self.values[layer].scatter_(2, index, v)

    def place(self, slots: Tensor, cache: KVCache, slot_count: int) -> None:
        """Copy a plain cache's keys and values of rows decoded apart (one per entry of `slots`)
        into those slots, from column 0."""
        for layer in range(len(self.keys)):
            keys, values = cache.layer(layer)
            self._allocate(layer, slot_count, keys)
            self.keys[layer][slots, :, : keys.shape[2]] = keys
            self.values[layer][slots, :, : values.shape[2]] = values

    def keep(self, slots: list[int]) -> None:
        """Keep only `slots` (in that order): the rows still decoding when no prompt is left to admit."""
        for layer, keys in enumerate(self.keys):
            if keys is not None:
                self.keys[layer], self.values[layer] = keys[slots], self.values[layer][slots]


def start_cache(past_key_values: KVCache | None, use_cache: bool, num_layers: int) -> KVCache | None:
    """The cache a forward reads: the given one, a new one when asked to cache, else None."""
    if past_key_values is not None:
        return past_key_values
    return KVCache(num_layers) if use_cache else None


def query_positions(length: int, cache: KVCache | None, replace_position: int | None, device) -> Tensor:
    """Absolute positions of the current tokens: after the cache, or at `replace_position`."""
    start = query_start(cache, replace_position)
    return torch.arange(start, start + length, device=device)


def query_start(cache: KVCache | None, replace_position: int | None) -> int:
    """Absolute position of the first current token (known on the host: no device sync)."""
    return replace_position if replace_position is not None else (cache.length if cache is not None else 0)


def rotate_and_cache(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    cos: Tensor,
    sin: Tensor,
    cache: KVCache | None,
    layer: int,
    commit: bool,
    replace_position: int | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Apply RoPE to q/k, then join k/v with the cache: the shared middle of every attention."""
    q, k = apply_rotary(q, k, cos, sin)
    if cache is not None:
        k, v = cache.extend(layer, k, v, commit, replace_position)
    return q, k, v
