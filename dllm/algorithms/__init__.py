"""Training algorithms: SFT, the RL loop with its parts (estimators, advantages, objectives, filters), and
preference optimisation (VRPO, DPO)."""

from dllm.algorithms import advantages, estimators, filters, objectives, rl, sft, vrpo  # noqa: F401  (register them)
from dllm.algorithms.advantages import ADVANTAGES, Advantage
from dllm.algorithms.base import ALGORITHMS, Algorithm, LossOutput, TrainContext
from dllm.algorithms.estimators import ESTIMATORS, Estimator
from dllm.algorithms.filters import FILTERS, Filter
from dllm.algorithms.objectives import OBJECTIVES, Objective

__all__ = [
    "ADVANTAGES",
    "ALGORITHMS",
    "ESTIMATORS",
    "FILTERS",
    "OBJECTIVES",
    "Advantage",
    "Algorithm",
    "Estimator",
    "Filter",
    "LossOutput",
    "Objective",
    "TrainContext",
]
