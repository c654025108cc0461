"""dllm's evaluation metrics as Hugging Face `evaluate` modules, loaded from a local path —
never from the hub:

    import dllm
    import evaluate

    pass_at = evaluate.load(dllm.metrics.path("pass_at_k"))
    pass_at.compute(predictions=[[1, 0, 1, 0, 0]], k=[1, 2])  # {"pass@1": 0.4, "pass@2": 0.7}

- `pass_at_k`: `predictions` holds, per prompt, the rewards (or 0/1 verdicts) of its n
  samples; a sample is correct when its reward is >= `threshold` (1.0). Returns the unbiased
  pass@k of Chen et al. 2021 for each k, averaged over prompts (n may differ between prompts).
- `reward_accuracy`: `predictions` holds one reward per completion; returns `accuracy` (the
  share >= `threshold`) and `mean_reward`, as `dllm-eval` reports them.

The estimators themselves live in `dllm.evaluation`; these modules adapt them to `evaluate`'s
interface. `evaluate` is an optional dependency: `pip install "dllm[metrics]"`. Importing this
package does not import it.
"""

from __future__ import annotations

from pathlib import Path

METRICS = ("pass_at_k", "reward_accuracy")


def path(name: str) -> str:
    """The local directory of metric `name`, for `evaluate.load(path(name))`."""
    if name not in METRICS:
        from dllm.errors import UnknownNameError, did_you_mean

        raise UnknownNameError(f"unknown metric {name!r}{did_you_mean(name, METRICS)} known: {', '.join(METRICS)}")
    return str(Path(__file__).parent / name)
