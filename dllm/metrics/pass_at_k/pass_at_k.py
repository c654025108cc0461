"""pass@k, the unbiased estimator of Chen et al. (2021), as an `evaluate` metric.

Load it from this directory (no hub): `evaluate.load(dllm.metrics.path("pass_at_k"))`.
"""

from __future__ import annotations

import datasets
import evaluate

from dllm.evaluation import CORRECT, pass_at_k

_DESCRIPTION = """The probability that at least one of k samples, drawn without replacement from the n
samples of a prompt, is correct: 1 - C(n-c, k) / C(n, k) for c correct samples, averaged
over prompts. Unbiased, unlike 1 - (1 - c/n)^k."""

_CITATION = """@article{chen2021codex,
  title={Evaluating Large Language Models Trained on Code},
  author={Chen, Mark and others},
  journal={arXiv preprint arXiv:2107.03374},
  year={2021}
}"""

_INPUTS = """
Args:
    predictions: one list per prompt: the rewards (or 0/1 verdicts) of its samples.
    k: the k values (each at most the samples of every prompt); default [1].
    threshold: a sample is correct when its reward is >= threshold; default 1.0.
Returns:
    {"pass@k": value} for each k.
Example:
    >>> metric.compute(predictions=[[1, 0, 1, 0, 0]], k=[1, 2])
    {'pass@1': 0.4, 'pass@2': 0.7}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS)
class PassAtK(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("float64"))}),
            reference_urls=["https://arxiv.org/abs/2107.03374"],
        )

    def _compute(self, predictions, k=(1,), threshold: float = CORRECT) -> dict[str, float]:
        if not predictions:
            raise ValueError("pass_at_k: no predictions")
        counts = [(len(rewards), sum(float(r) >= threshold for r in rewards)) for rewards in predictions]
        return {f"pass@{kk}": sum(pass_at_k(n, c, int(kk)) for n, c in counts) / len(counts) for kk in sorted(set(k))}
