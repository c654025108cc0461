"""Attention masks and attention backends: the one place both are built.

Masks are boolean, `True` where a query may attend a key, broadcastable to
[B, heads, Lq, Lk]; `None` means every query sees every key.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor

from dllm.errors import ConfigError, did_you_mean

AttentionFn = Callable[[Tensor, Tensor, Tensor, "Tensor | None"], Tensor]


def sdpa_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
    """q [B, H, Lq, D], k/v [B, H_kv, Lk, D] -> [B, H, Lq, D]; grouped-query heads repeat."""
    if k.shape[1] != q.shape[1]:
        repeat = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(repeat, dim=1), v.repeat_interleave(repeat, dim=1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


ATTENTION_BACKENDS: dict[str, AttentionFn] = {"sdpa": sdpa_attention}


def attention_backend(name: str) -> AttentionFn:
    try:
        return ATTENTION_BACKENDS[name]
    except KeyError:
        known = sorted(ATTENTION_BACKENDS)
        raise ConfigError(
            f"unknown attention backend {name!r}{did_you_mean(name, known)} known: {', '.join(known)}"
        ) from None
