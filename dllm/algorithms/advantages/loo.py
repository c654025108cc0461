"""`loo` (DiffuCoder's coupled-GRPO): leave-one-out, r - the mean of the group's other completions."""

from __future__ import annotations

from torch import Tensor

from dllm.algorithms.advantages.base import ADVANTAGES, GroupRelative


@ADVANTAGES.register("loo")
class LeaveOneOut(GroupRelative):
    def of_groups(self, rewards: Tensor) -> Tensor:
        others = (rewards.sum(1, keepdim=True) - rewards) / (rewards.shape[1] - 1)
        return rewards - others
