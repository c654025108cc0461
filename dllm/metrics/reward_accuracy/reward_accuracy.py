"""Accuracy and mean reward of scored completions, as `dllm-eval` reports them, as an
`evaluate` metric. Load it from this directory (no hub):
`evaluate.load(dllm.metrics.path("reward_accuracy"))`.
"""

from __future__ import annotations

import datasets
import evaluate

from dllm.evaluation import CORRECT

_DESCRIPTION = """The share of completions whose reward is at least `threshold` (1.0: fully correct under a
reward whose best score is 1), and the mean reward."""

_INPUTS = """
Args:
    predictions: one reward per completion.
    threshold: a completion is correct when its reward is >= threshold; default 1.0.
Returns:
    {"accuracy": share correct, "mean_reward": mean of the rewards}.
Example:
    >>> metric.compute(predictions=[1.0, 0.1, 0.0, 1.0])
    {'accuracy': 0.5, 'mean_reward': 0.525}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS)
class RewardAccuracy(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features({"predictions": datasets.Value("float64")}),
        )

    def _compute(self, predictions, threshold: float = CORRECT) -> dict[str, float]:
        if not predictions:
            raise ValueError("reward_accuracy: no predictions")
        rewards = [float(r) for r in predictions]
        return {
            "accuracy": sum(r >= threshold for r in rewards) / len(rewards),
            "mean_reward": sum(rewards) / len(rewards),
        }
