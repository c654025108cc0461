"""Objectives: the per-token policy loss (ppo, sequence_ppo, wd1, spg, bgpo)."""

from dllm.algorithms.objectives import bgpo, ppo, sequence_ppo, spg, wd1  # noqa: F401  (register them)
from dllm.algorithms.objectives.base import OBJECTIVES, Objective

__all__ = ["OBJECTIVES", "Objective"]
