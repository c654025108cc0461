"""`accuracy_band` (TraceRL): keep a group whose share of fully correct completions (reward >= 1)
lies in [low, high]; TraceRL keeps 0.2 <= accuracy <= 0.8."""

from __future__ import annotations

from torch import Tensor

from dllm.algorithms.filters.base import FILTERS, Filter
from dllm.errors import ConfigError


@FILTERS.register("accuracy_band")
class AccuracyBand(Filter):
    def __init__(self, low: float = 0.2, high: float = 0.8) -> None:
        if not 0 <= low <= high <= 1:
            raise ConfigError(f"algorithm.filters.accuracy_band: need 0 <= low <= high <= 1, got [{low}, {high}]")
        self.low, self.high = low, high

    def keep(self, rewards: Tensor) -> Tensor:
        accuracy = (rewards >= 1.0).float().mean(1)
        return (accuracy >= self.low) & (accuracy <= self.high)
