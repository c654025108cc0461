"""Attention backends behind one interface: `fn(q, k, v, mask) -> out`.

q [B, H, Lq, D], k/v [B, H_kv, Lk, D] (grouped-query heads are repeated), `mask` a bool
[B|1, 1, Lq, Lk] (True = may attend) from `dllm.models.masks`, or None for no restriction.

- `sdpa` (default): PyTorch's scaled_dot_product_attention; CPU and GPU, training and inference.
- `flex`: FlexAttention with a BlockMask made from the same mask (once per forward, shared by
  every layer); compiled on the GPU. It has no backward on the CPU: train there with `sdpa`.
- `flash_attn`: the optional flash-attn package (`pip install dllm[gpu]`), GPU only, for
  unrestricted attention (no padding, no block structure); anything else is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import torch
import torch.nn.functional as F
from torch import Tensor

from dllm.errors import ConfigError, did_you_mean

AttentionFn = Callable[[Tensor, Tensor, Tensor, "Tensor | None"], Tensor]


def sdpa_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
    # Grouped-query heads are shared inside the kernel: repeating them would copy the whole
    # KV cache at every forward.
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=k.shape[1] != q.shape[1])


class FlexAttention:
    """FlexAttention over a dense bool mask, converted to a BlockMask once per mask tensor."""

    def __init__(self) -> None:
        self._mask: Tensor | None = None
        self._block_mask = None

    def _block_mask_for(self, mask: Tensor, q_len: int, kv_len: int):
        from torch.nn.attention.flex_attention import create_block_mask

        if mask is not self._mask:
            dense = mask[:, 0].expand(mask.shape[0], q_len, kv_len)
            batch = dense.shape[0]

            def mask_mod(b, h, q_idx, kv_idx):
                return dense[b if batch > 1 else 0, q_idx, kv_idx]

            self._block_mask = create_block_mask(
                mask_mod, B=batch, H=None, Q_LEN=q_len, KV_LEN=kv_len, device=mask.device
            )
            self._mask = mask
        return self._block_mask

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        if q.device.type == "cpu" and torch.is_grad_enabled() and q.requires_grad:
            raise ConfigError(
                "the flex attention backend has no backward on the CPU; train there with attn_backend=sdpa"
            )
        block_mask = None if mask is None else self._block_mask_for(mask, q.shape[2], k.shape[2])
        return _flex_kernel(q.device.type)(q, k, v, block_mask=block_mask, enable_gqa=k.shape[1] != q.shape[1])


@cache
def _flex_kernel(device_type: str):
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention) if device_type == "cuda" else flex_attention


def flash_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
    try:
        from flash_attn import flash_attn_func
    except ImportError:
        raise ConfigError("attn_backend=flash_attn needs the flash-attn package: pip install 'dllm[gpu]'") from None
    if mask is not None:
        raise ConfigError(
            "attn_backend=flash_attn handles unrestricted attention only; this forward has padding or "
            "block structure — use attn_backend=sdpa or flex"
        )
    out = flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), causal=False)
    return out.transpose(1, 2)


# One FlexAttention for all layers: they share each forward's mask, so its BlockMask is built once.
ATTENTION_BACKENDS: dict[str, AttentionFn] = {
    "sdpa": sdpa_attention,
    "flex": FlexAttention(),
    "flash_attn": flash_attention,
}


def attention_backend(name: str) -> AttentionFn:
    try:
        return ATTENTION_BACKENDS[name]
    except KeyError:
        known = sorted(ATTENTION_BACKENDS)
        raise ConfigError(
            f"unknown attention backend {name!r}{did_you_mean(name, known)} known: {', '.join(known)}"
        ) from None
