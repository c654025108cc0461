"""`group` (TraceRL, GRPO): (r - group mean) / group std, the population std; a group whose
rewards are all equal gets 0 (no epsilon: no signal, no gradient)."""

from __future__ import annotations

import torch
from torch import Tensor

from dllm.algorithms.advantages.base import ADVANTAGES, GroupRelative


@ADVANTAGES.register("group")
class GroupAdvantage(GroupRelative):
    def of_groups(self, rewards: Tensor) -> Tensor:
        mean = rewards.mean(1, keepdim=True)
        std = rewards.std(1, unbiased=False, keepdim=True)
        return torch.where(std > 0, (rewards - mean) / std.clamp_min(1e-12), torch.zeros_like(rewards))
