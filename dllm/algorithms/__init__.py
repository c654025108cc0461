"""Training algorithms: SFT, and the RL loop with its estimators, advantages and objectives."""

from dllm.algorithms import estimators, rl, sft  # noqa: F401  (registers the built-in algorithms)
from dllm.algorithms.base import ALGORITHMS, Algorithm, LossOutput, TrainContext
from dllm.algorithms.estimators import ESTIMATORS, Estimator

__all__ = ["ALGORITHMS", "ESTIMATORS", "Algorithm", "Estimator", "LossOutput", "TrainContext"]
