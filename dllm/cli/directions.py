"""Which way each logged metric improves, and which are shares in [0, 1] — for `dllm-compare`'s
"best" columns and plot axes.

A name is looked up whole (`eval/accuracy`), then by its last part (`accuracy`); `pass@k` and
reward terms (`reward/NAME`, `eval/reward/NAME`) are matched by form. A name found nowhere
follows RULE: lower is better when it contains one of LOWER_WORDS, else higher.
"""

from __future__ import annotations

import re
from typing import Literal

Better = Literal["lower", "higher"]

LOWER_WORDS = ("loss", "time", "nfe", "fail", "error", "seconds")
RULE = f"names containing {', '.join(LOWER_WORDS)} are better lower, other names higher"

# None: a setting or a size, not a score — its "best" would mean nothing, so it has no best column
DIRECTIONS: dict[str, Better | None] = {
    "loss": "lower",
    "value_loss": "lower",
    "nfe": "lower",
    "nfe_per_token": "lower",
    "rollout_nfe": "lower",
    "rollout_time": "lower",
    "step_time": "lower",
    "elapsed": "lower",
    "seconds": "lower",
    "wall time (s)": "lower",
    "reward_failures": "lower",
    "truncated": "lower",
    "skipped_steps": "lower",
    "nonfinite_in_a_row": "lower",
    "rollout_tries": "lower",
    "dropped_groups": "lower",
    "overlong_penalty": "higher",
    "accuracy": "higher",
    "reward": "higher",
    "mean_reward": "higher",
    "tokens_per_s": "higher",
    "kept_fraction": "higher",
    "lr": None,
    "grad_norm": None,
    "reward_std": None,
    "mean_length": None,
    "response_length": None,
    "num_samples": None,
    "num_prompts": None,
    "samples_per_prompt": None,
    "step": None,
    "steps": None,
}

# shares: plotted on a [0, 1] axis, so runs' curves compare at a glance and on one scale
UNIT_INTERVAL = {"accuracy", "truncated", "kept_fraction"}
PASS_AT_K = re.compile(r"pass@\d+")
REWARD_TERM = re.compile(r"(^|/)reward/[^/]+$")


def better(metric: str) -> Better | None:
    """The direction `metric` improves in ("lower" or "higher"), or None for a setting or a size."""
    last = metric.rsplit("/", 1)[-1]
    for name in (metric, last):
        if name in DIRECTIONS:
            return DIRECTIONS[name]
    if PASS_AT_K.fullmatch(last) or REWARD_TERM.search(metric):
        return "higher"
    return "lower" if any(word in metric.lower() for word in LOWER_WORDS) else "higher"


def is_share(metric: str) -> bool:
    """True for a metric that is a share (accuracy, pass@k, ...): always within [0, 1]."""
    last = metric.rsplit("/", 1)[-1]
    return last in UNIT_INTERVAL or PASS_AT_K.fullmatch(last) is not None


def best(values: list[float], metric: str) -> float | None:
    """The best of `values` by `metric`'s direction; None when it has none (or no values)."""
    direction = better(metric)
    if not values or direction is None:
        return None
    return min(values) if direction == "lower" else max(values)
