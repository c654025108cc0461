"""`tree` (d-TreeRPO, arXiv 2512.09675; THU-BPM/d-TreeRPO): step-level credit from a tree rollout
(`algorithm.tree_branches`, `dllm.algorithms.tree_rollout`).

As the reference computes it bottom-up: a leaf's value is its reward, a node's the mean of its
children's values; each node's local advantage is its value minus the mean of its siblings'
values (no sibling: minus 0, as the reference's single-tree root child). A group of `group_size`
rows is one prompt's tree: `group_size / branches` first-level nodes of `branches` contiguous
leaves. Tokens a row revealed before its `branch_step` are its node's transition and get the
node's advantage; later ones its own. A node's tokens appear in each of its `branches` leaf rows,
so each copy carries 1/branches of it: the node's transition counts once, as the reference's
one training segment per tree edge does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor

from dllm.algorithms.advantages.base import ADVANTAGES, Advantage
from dllm.algorithms.rollout import Rollout
from dllm.errors import ConfigError

if TYPE_CHECKING:
    from dllm.algorithms.base import TrainContext


def sibling_advantages(values: Tensor) -> Tensor:
    """[..., K] each value minus the mean of the other K - 1 along the last dim (K = 1: minus 0)."""
    count = values.shape[-1]
    if count == 1:
        return values
    return values - (values.sum(-1, keepdim=True) - values) / (count - 1)


@ADVANTAGES.register("tree")
class TreeAdvantage(Advantage):
    needs_branches: ClassVar[bool] = True

    def compute(self, rollout: Rollout, group_size: int, ctx: TrainContext) -> None:
        if rollout.branch_step is None or rollout.branches is None:
            raise ConfigError(
                "algorithm/advantage=tree credits the steps of a tree rollout: set algorithm.tree_branches"
            )
        branches = rollout.branches
        leaves = rollout.rewards.float().view(-1, group_size // branches, branches)  # [prompts, nodes, leaves]
        leaf = sibling_advantages(leaves).flatten()
        node = sibling_advantages(leaves.mean(-1)).repeat_interleave(branches, -1).flatten() / branches
        shared = rollout.step_map < rollout.branch_step[:, None]
        rollout.advantages = torch.where(shared, node[:, None], leaf[:, None])
