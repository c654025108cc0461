"""Training algorithms: SFT, and the RL loop with its estimators, advantages and objectives."""

from dllm.algorithms import advantages, estimators, filters, objectives, rl, sft  # noqa: F401  (register them)
from dllm.algorithms.base import ALGORITHMS, Algorithm, LossOutput, TrainContext
from dllm.algorithms.estimators import ESTIMATORS, Estimator

__all__ = ["ALGORITHMS", "ESTIMATORS", "Algorithm", "Estimator", "LossOutput", "TrainContext"]
