"""The KV cache every family shares, and the attention step that reads and writes it.

Semantics of a forward with `past_key_values=cache`:
- the current tokens attend the cached keys and their own;
- `use_cache=True` commits the current tokens' keys/values (append), `False` leaves the
  cache as it was (a block diffusion model's noisy block, re-decoded every step);
- `replace_position=s` places the current tokens at slots [s, s+L) of the cache instead of
  after it (Fast-dLLM's dual cache: prefix and suffix cached, the block recomputed).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dllm.models.layers import apply_rotary


class KVCache:
    """Keys and values per layer, each [B, H_kv, T, D]."""

    def __init__(self, num_layers: int) -> None:
        self.keys: list[Tensor | None] = [None] * num_layers
        self.values: list[Tensor | None] = [None] * num_layers

    @property
    def length(self) -> int:
        return 0 if self.keys[0] is None else self.keys[0].shape[2]

    def crop(self, length: int) -> None:
        """Forget everything from position `length` on."""
        for i, (k, v) in enumerate(zip(self.keys, self.values)):
            if k is not None:
                self.keys[i], self.values[i] = k[:, :, :length], v[:, :, :length]

    def extend(
        self, layer: int, k: Tensor, v: Tensor, commit: bool, replace_position: int | None
    ) -> tuple[Tensor, Tensor]:
        """All keys/values the current tokens attend: the cache with `k`/`v` appended (or
        written at `replace_position`). Stored only when `commit`."""
        cached_k, cached_v = self.keys[layer], self.values[layer]
        if cached_k is None:
            all_k, all_v = k, v
        elif replace_position is None:
            all_k, all_v = torch.cat([cached_k, k], dim=2), torch.cat([cached_v, v], dim=2)
        else:
            end = replace_position + k.shape[2]
            all_k = torch.cat([cached_k[:, :, :replace_position], k, cached_k[:, :, end:]], dim=2)
            all_v = torch.cat([cached_v[:, :, :replace_position], v, cached_v[:, :, end:]], dim=2)
        if commit:
            self.keys[layer], self.values[layer] = all_k, all_v
        return all_k, all_v


def start_cache(past_key_values: KVCache | None, use_cache: bool, num_layers: int) -> KVCache | None:
    """The cache a forward reads: the given one, a new one when asked to cache, else None."""
    if past_key_values is not None:
        return past_key_values
    return KVCache(num_layers) if use_cache else None


def query_positions(length: int, cache: KVCache | None, replace_position: int | None, device) -> Tensor:
    """Absolute positions of the current tokens: after the cache, or at `replace_position`."""
    start = replace_position if replace_position is not None else (cache.length if cache is not None else 0)
    return torch.arange(start, start + length, device=device)


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
