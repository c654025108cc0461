"""`mean` (d1's diffu-GRPO): r - group mean, no std."""

from __future__ import annotations

from torch import Tensor

from dllm.algorithms.advantages.base import ADVANTAGES, GroupRelative


@ADVANTAGES.register("mean")
class MeanAdvantage(GroupRelative):
    def of_groups(self, rewards: Tensor) -> Tensor:
        return rewards - rewards.mean(1, keepdim=True)
