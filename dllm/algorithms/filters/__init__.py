"""Group filters: which groups of a rollout are trained on (drop_equal_groups, accuracy_band)."""

from dllm.algorithms.filters import accuracy_band, drop_equal_groups  # noqa: F401  (register them)
from dllm.algorithms.filters.base import FILTERS, Filter, Filters

__all__ = ["FILTERS", "Filter", "Filters"]
