"""Log-probs of chosen tokens from hidden states, in chunks over positions, so that the float32
logits [K, V] over a large vocabulary, their log-softmax and their gradient never exist whole: each
chunk's logits are computed, reduced to one number per position and dropped; the backward
recomputes them one chunk at a time (activation checkpointing), so it holds one chunk's too.
Exact to float32 rounding against the whole computation (the same head, the same reduction)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

CHUNK = 1024  # positions per chunk: [CHUNK, V] float32 is 0.5 GB at 126k vocabulary


def _chunk_log_probs(head: Callable[[Tensor], Tensor], hidden: Tensor, targets: Tensor) -> Tensor:
    logits = head(hidden).float()
    return logits.gather(-1, targets[:, None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def chosen_log_probs(
    head: Callable[[Tensor], Tensor], hidden: Tensor, targets: Tensor, chunk: int | None = None
) -> Tensor:
    """[...] float32 log softmax(head(hidden))[target] for hidden [..., H] and targets [...],
    `chunk` positions (default `CHUNK`) at a time."""
    chunk = chunk or CHUNK
    flat_hidden, flat_targets = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)
    recompute = torch.is_grad_enabled() and flat_hidden.requires_grad
    parts = []
    for start in range(0, flat_targets.shape[0], chunk):
        args = (head, flat_hidden[start : start + chunk], flat_targets[start : start + chunk])
        parts.append(checkpoint(_chunk_log_probs, *args, use_reentrant=False) if recompute else _chunk_log_probs(*args))
    if not parts:
        return torch.zeros(targets.shape, device=hidden.device)
    return torch.cat(parts).view(targets.shape)
