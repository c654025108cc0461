"""An advantage from a plugin: each completion's rank among its group, centred, in [-1/2, 1/2].

Only the order of the rewards counts (not their scale); tied completions share their mean
rank, so a group of equal rewards gets 0 everywhere, as the group z-score does.
"""

from __future__ import annotations

from torch import Tensor

from dllm.algorithms.advantages.base import GroupRelative


class RankAdvantage(GroupRelative):
    def of_groups(self, rewards: Tensor) -> Tensor:
        below = (rewards[:, None, :] < rewards[:, :, None]).sum(-1)  # [groups, i]: rewards below r_i
        ties = (rewards[:, None, :] == rewards[:, :, None]).sum(-1) - 1  # others equal to r_i
        rank = below + ties / 2  # 0 .. group_size - 1
        return (rank - (rewards.shape[1] - 1) / 2) / (rewards.shape[1] - 1)
