"""`drop_equal_groups` (DAPO's dynamic-sampling filter): drop a group whose rewards are all equal —
its group-relative advantages are all 0, so it carries no signal. With `algorithm.dynamic_sampling`
the loop draws again until `prompts_per_rollout` groups pass (`algorithm=dapo`)."""

from __future__ import annotations

from torch import Tensor

from dllm.algorithms.filters.base import FILTERS, Filter


@FILTERS.register("drop_equal_groups")
class DropEqualGroups(Filter):
    def keep(self, rewards: Tensor) -> Tensor:
        return (rewards != rewards[:, :1]).any(1)
