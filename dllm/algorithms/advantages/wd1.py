"""`wd1`: wd1's per-sequence loss weights softmax(-A) - softmax(A) over each group, A = r - group
mean (the softmax does not see the mean). Minimising sum_i w_i log pi(o_i) (objective `wd1`)
raises the likelihood of the better completions and lowers that of the worse; equal rewards
weigh 0. These are loss weights, not advantages: objective `ppo` refuses them."""

from __future__ import annotations

import torch
from torch import Tensor

from dllm.algorithms.advantages.base import ADVANTAGES, GroupRelative


@ADVANTAGES.register("wd1")
class WD1Weights(GroupRelative):
    weights_for = "wd1"

    def of_groups(self, rewards: Tensor) -> Tensor:
        return torch.softmax(-rewards, dim=1) - torch.softmax(rewards, dim=1)
