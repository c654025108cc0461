"""Advantages: what each completion (or token) is credited from the rewards (group, mean, loo, ebpo,
tree, value, wd1)."""

from dllm.algorithms.advantages import ebpo, group, loo, mean, tree, value, wd1  # noqa: F401  (register them)
from dllm.algorithms.advantages.base import ADVANTAGES, Advantage

__all__ = ["ADVANTAGES", "Advantage"]
