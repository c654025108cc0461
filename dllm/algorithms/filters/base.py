"""The group filter interface, its registry, and `Filters`, the set of filters a run applies.

A filter looks at each group's rewards (the `group_size` completions of one prompt) and says
which groups are worth training on. `algorithm.filters` names any number of them, each a
filter node under its own name; a group is trained on when every filter keeps it:

    algorithm.filters.accuracy_band.low=0.3                       # change a preset's filter
    +algorithm/filter@algorithm.filters.drop_equal_groups=drop_equal_groups   # add one
    algorithm.filters.accuracy_band=null                          # drop one
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from dllm.algorithms.advantages.base import grouped
from dllm.errors import ConfigError
from dllm.registry import Registry


class Filter(ABC):
    @abstractmethod
    def keep(self, rewards: Tensor) -> Tensor:
        """[groups] bool: the groups of `rewards` [groups, group_size] worth training on."""


FILTERS = Registry("filter", interface=Filter, config_group="algorithm/filter")


class Filters:
    """Every filter given (by name; a null one is left out) applies: a group is kept when each keeps it."""

    def __init__(self, **filters: Filter | None) -> None:
        for name, item in filters.items():
            if item is not None and not isinstance(item, Filter):
                raise ConfigError(
                    f"algorithm.filters.{name} must be a filter node (e.g. +algorithm/filter@algorithm.filters."
                    f"{name}={name}) or null, got {item!r}"
                )
        self.filters = {name: item for name, item in filters.items() if item is not None}

    def keep(self, rewards: Tensor, group_size: int) -> Tensor:
        """[N] bool: the rows of the groups every filter keeps."""
        groups = grouped(rewards.float(), group_size)
        keep = torch.ones(groups.shape[0], dtype=torch.bool, device=rewards.device)
        for item in self.filters.values():
            keep &= item.keep(groups)
        return keep.repeat_interleave(group_size)
