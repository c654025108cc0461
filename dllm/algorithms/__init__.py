"""Training algorithms: SFT now; RL estimators, advantages and objectives plug in here."""

from dllm.algorithms import sft  # noqa: F401  (registers the built-in algorithms)
from dllm.algorithms.base import ALGORITHMS, Algorithm, LossOutput, TrainContext

__all__ = ["ALGORITHMS", "Algorithm", "LossOutput", "TrainContext"]
