"""Building blocks shared by the model families: RMSNorm, rotary embeddings, SwiGLU."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers.models.llama.modeling_llama import LlamaRMSNorm as RMSNorm

__all__ = ["RMSNorm", "RotaryEmbedding", "apply_rotary", "swiglu"]


class RotaryEmbedding(nn.Module):
    """Rotary position embedding, half-split ("rotate_half") layout, computed in float32."""

    def __init__(self, head_dim: int, theta: float) -> None:
        super().__init__()
        self.head_dim, self.theta = head_dim, theta
        # (cos, sin) [N, head_dim] for positions 0..N-1, per device: decoding runs a forward every
        # step, and rebuilding the tables there cost more than the lookup. A plain attribute, not
        # a buffer: a buffer would be left uninitialised by transformers' meta-device loading.
        self._tables: dict[torch.device, tuple[Tensor, Tensor]] = {}

    def forward(self, position_ids: Tensor) -> tuple[Tensor, Tensor]:
        """position_ids [B, L] (or [L]) -> cos, sin of shape [B, 1, L, head_dim], float32 (each
        entry the same float32 cos / sin of position x frequency as computed directly)."""
        if position_ids.dim() == 1:
            position_ids = position_ids[None]
        cos, sin = self._table(position_ids.device, position_ids.shape[-1] and int(position_ids.max()) + 1)
        return cos[position_ids][:, None], sin[position_ids][:, None]

    def _table(self, device: torch.device, needed: int) -> tuple[Tensor, Tensor]:
        cos, sin = self._tables.get(device, (None, None))
        if cos is None or cos.shape[0] < needed:
            length = max(needed, 2 * (0 if cos is None else cos.shape[0]), 256)  # doubling: O(1) amortised
            with torch.autocast(device.type, enabled=False):
                exponents = torch.arange(0, self.head_dim, 2, dtype=torch.float32, device=device) / self.head_dim
                inv_freq = 1.0 / (self.theta**exponents)
                freqs = torch.arange(length, dtype=torch.float32, device=device)[:, None] * inv_freq
                angles = torch.cat([freqs, freqs], dim=-1)
                cos, sin = angles.cos(), angles.sin()
            self._tables[device] = cos, sin
        return cos, sin


def _rotate_half(x: Tensor) -> Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rotary(q: Tensor, k: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor]:
    """Rotate q, k [B, H, L, D] in float32 and return them in their own dtype."""
    q32, k32 = q.float(), k.float()
    q_rot = q32 * cos + _rotate_half(q32) * sin
    k_rot = k32 * cos + _rotate_half(k32) * sin
    return q_rot.to(q.dtype), k_rot.to(k.dtype)


def swiglu(x: Tensor, gate: nn.Module, up: nn.Module, down: nn.Module) -> Tensor:
    """down(silu(gate(x)) * up(x)), the feed-forward of every supported family."""
    return down(F.silu(gate(x)) * up(x))
