"""Unmasking policies every decoder shares: how many tokens a step reveals, and which.

Each selection returns a [B, L] bool mask of positions to reveal, always inside `masked`.
"""

from __future__ import annotations

import torch
from torch import Tensor


def transfer_schedule(masked_counts: Tensor, steps: int) -> Tensor:
    """[B, steps] tokens to reveal per step: `count // steps` each, the first `count % steps`
    steps one more (LLaDA's linear schedule)."""
    base = masked_counts[:, None] // steps
    remainder = masked_counts[:, None] % steps
    step_index = torch.arange(steps, device=masked_counts.device)[None, :]
    return base + (step_index < remainder).long()


def select_top_k(confidence: Tensor, k: Tensor) -> Tensor:
    """[B, L] bool: the `k[b]` highest-confidence positions of each row."""
    k_max = int(k.max())
    selected = torch.zeros_like(confidence, dtype=torch.bool)
    if k_max == 0:
        return selected
    top = torch.topk(confidence, k=k_max, dim=-1).indices
    keep = torch.arange(k_max, device=k.device)[None, :] < k[:, None]
    return selected.scatter(1, top, keep)


def threshold_selection(confidence: Tensor, masked: Tensor, threshold: float) -> Tensor:
    """The most confident masked token of each row, plus every masked one >= `threshold`."""
    scores = torch.where(masked, confidence, -torch.inf)
    top = select_top_k(scores, masked.any(1).long())
    return masked & (top | (confidence >= threshold))


def factor_selection(confidence: Tensor, masked: Tensor, factor: float) -> Tensor:
    """The n most confident masked tokens, n the longest run with the k-th >= 1 - factor/(k+1) (n >= 1)."""
    scores = torch.where(masked, confidence, -torch.inf)
    ordered = scores.sort(dim=1, descending=True).values
    rank = torch.arange(1, scores.shape[1] + 1, device=scores.device)
    meets = ordered >= 1 - factor / (rank + 1)
    meets[:, 0] = True
    run = torch.cumprod(meets.long(), dim=1).sum(1)
    counts = torch.minimum(run, masked.sum(1))
    return select_top_k(scores, counts) & masked


def sequential_selection(masked: Tensor, counts: Tensor) -> Tensor:
    """The leftmost `counts[b]` masked positions of each row."""
    return masked & (torch.cumsum(masked.long(), dim=1) <= counts[:, None])


def dynamic_selection(confidence: Tensor, masked: Tensor, counts: Tensor, threshold: float) -> Tensor:
    """Every masked position above `threshold` when there are at least `counts[b]` of them,
    else the `counts[b]` most confident (SDAR's low_confidence_dynamic)."""
    above = masked & (confidence > threshold)
    counts = torch.where(above.sum(1) >= counts, above.sum(1), counts)
    return select_top_k(torch.where(masked, confidence, -torch.inf), counts) & masked


def entropy_bounded_selection(probs: Tensor, masked: Tensor, budget: float) -> Tensor:
    """The lowest-entropy masked positions whose entropies sum to at most `budget`, at least one."""
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1)
    entropy = torch.where(masked, entropy, torch.inf)
    within = (entropy.sort(dim=1).values.cumsum(1) <= budget).sum(1)
    counts = torch.minimum(within.clamp(min=1), masked.sum(1))
    return select_top_k(-entropy, counts) & masked
