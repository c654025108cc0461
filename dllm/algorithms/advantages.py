"""Advantages from a rollout's rewards, and which groups to keep. Pure functions over tensors.

Rows come in contiguous groups of `group_size` completions of one prompt.
- `group`: (r - group mean) / group std, population std (TraceRL); a group whose rewards
  are all equal gets 0 (no epsilon);
- `mean`: r - group mean (d1, wd1);
- `loo`: leave-one-out, r - mean of the other completions of the group (DiffuCoder);
- `value`: a value model and step-level GAE (`dllm.algorithms.value`).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from dllm.errors import ConfigError

AdvantageName = Literal["group", "mean", "loo", "value"]
GROUP_ADVANTAGES = ("group", "mean", "loo")


def _grouped(rewards: Tensor, group_size: int) -> Tensor:
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not form groups of {group_size}")
    return rewards.view(-1, group_size)


def group_advantages(rewards: Tensor, group_size: int, kind: str) -> Tensor:
    """[N] advantages of [N] rewards in contiguous groups of `group_size`, by `kind`."""
    if kind not in GROUP_ADVANTAGES:
        raise ConfigError(f"unknown group advantage {kind!r}; choose one of {', '.join(GROUP_ADVANTAGES)}")
    if group_size < 2:
        raise ConfigError(
            f"a group-relative advantage ({kind!r}) needs at least 2 completions per prompt; got group_size "
            f"{group_size}: raise algorithm.group_size, or use algorithm.advantage=value"
        )
    grouped = _grouped(rewards.float(), group_size)
    mean = grouped.mean(1, keepdim=True)
    if kind == "mean":
        return (grouped - mean).flatten()
    if kind == "loo":
        others = (grouped.sum(1, keepdim=True) - grouped) / (group_size - 1)
        return (grouped - others).flatten()
    std = grouped.std(1, unbiased=False, keepdim=True)
    return torch.where(std > 0, (grouped - mean) / std.clamp_min(1e-12), torch.zeros_like(grouped)).flatten()


def groups_to_keep(
    rewards: Tensor, group_size: int, drop_equal: bool, accuracy_band: tuple[float, float] | None
) -> Tensor:
    """[N] bool: rows of the groups worth training on. `drop_equal` drops groups whose
    rewards are all equal (no signal); `accuracy_band` (low, high) keeps groups whose share of
    fully correct completions (reward >= 1) lies in [low, high] (TraceRL keeps 0.2..0.8)."""
    grouped = _grouped(rewards.float(), group_size)
    keep = torch.ones(grouped.shape[0], dtype=torch.bool, device=rewards.device)
    if drop_equal:
        keep &= (grouped != grouped[:, :1]).any(1)
    if accuracy_band is not None:
        accuracy = (grouped >= 1.0).float().mean(1)
        keep &= (accuracy >= accuracy_band[0]) & (accuracy <= accuracy_band[1])
    return keep.repeat_interleave(group_size)


def wd1_weights(rewards: Tensor, group_size: int) -> Tensor:
    """[N] wd1's per-sequence weights softmax(-A) - softmax(A) over each group (A = r - group
    mean; the softmax does not see the mean). Minimising sum_i w_i log pi(o_i) raises the
    likelihood of the better completions and lowers that of the worse."""
    grouped = _grouped(rewards.float(), group_size)
    return (torch.softmax(-grouped, dim=1) - torch.softmax(grouped, dim=1)).flatten()
