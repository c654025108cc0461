"""Objectives: the per-token policy loss (ppo, sequence_ppo, wd1)."""

from dllm.algorithms.objectives import ppo, sequence_ppo, wd1  # noqa: F401  (register them)
from dllm.algorithms.objectives.base import OBJECTIVES, Objective

__all__ = ["OBJECTIVES", "Objective"]
