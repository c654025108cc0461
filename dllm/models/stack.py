"""The forward every backbone runs: positions, rotary tables, the mask, then the layers."""

from __future__ import annotations

from torch import Tensor, nn

from dllm.models.cache import KVCache, query_positions, query_start
from dllm.models.layers import RotaryEmbedding
from dllm.models.masks import forward_mask


def run_stack(
    embed: nn.Embedding,
    layers: nn.ModuleList,
    final_norm: nn.Module,
    rotary: RotaryEmbedding,
    block_size: int | None,
    input_ids: Tensor,
    attention_mask: Tensor | None,
    position_ids: Tensor | None,
    cache: KVCache | None,
    commit: bool,
    replace_position: int | None,
) -> Tensor:
    """Hidden states [B, L, D] after the final norm. Queries sit after the cache (or at
    `replace_position`); each layer is called as `layer(x, cos, sin, mask, cache, index, commit,
    replace_position)`."""
    start, length = query_start(cache, replace_position), input_ids.shape[1]
    cos, sin = rotary(
        query_positions(length, cache, replace_position, input_ids.device) if position_ids is None else position_ids
    )
    key_length = max(cache.length if cache is not None else 0, start + length)
    if getattr(cache, "caller_masks", False):  # rows at different positions: only the caller knows what each reads
        mask = attention_mask
    else:
        mask = forward_mask(attention_mask, start, length, key_length, block_size, input_ids.device)
    x = embed(input_ids)
    for index, layer in enumerate(layers):
        x = layer(x, cos, sin, mask, cache, index, commit, replace_position)
    return final_norm(x)
