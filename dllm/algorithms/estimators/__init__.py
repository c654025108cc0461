"""Estimators: which masked states score a rollout's actions (trace, one_step, coupled, random_mask,
elbo, block_mask)."""

from dllm.algorithms.estimators import block_mask, coupled, elbo, one_step, random_mask, trace  # noqa: F401  (register them)
from dllm.algorithms.estimators.base import ESTIMATORS, Estimator

__all__ = ["ESTIMATORS", "Estimator"]
