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

CHUNK_BYTES = 2**26  # float32 logits per chunk: 132 positions at 126k vocabulary, a few times this live at once


def _chunk_log_probs(head: Callable[[Tensor], Tensor], hidden: Tensor, targets: Tensor) -> Tensor:
    logits = head(hidden).float()
    return logits.gather(-1, targets[:, None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def chosen_log_probs(
    head: Callable[[Tensor], Tensor], hidden: Tensor, targets: Tensor, vocab_size: int, chunk: int | None = None
) -> Tensor:
    """[...] float32 log softmax(head(hidden))[target] for hidden [..., H] and targets [...],
    `chunk` positions at a time (default: `CHUNK_BYTES` of float32 logits over `vocab_size`)."""
    chunk = chunk or max(1, CHUNK_BYTES // (4 * vocab_size))
    flat_hidden, flat_targets = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)
    recompute = torch.is_grad_enabled() and flat_hidden.requires_grad
    parts = []
    for start in range(0, flat_targets.shape[0], chunk):
        args = (head, flat_hidden[start : start + chunk], flat_targets[start : start + chunk])
        parts.append(checkpoint(_chunk_log_probs, *args, use_reentrant=False) if recompute else _chunk_log_probs(*args))
    if not parts:
        return torch.zeros(targets.shape, device=hidden.device)
    return torch.cat(parts).view(targets.shape)
