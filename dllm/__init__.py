"""dllm: post-train diffusion language models with SFT and RL.

The public API (stable): `train` (a whole run from a composed config: `dllm.run`),
`load_model`, `load_tokenizer`, `build_sampler`, `build`, the registries `MODELS`,
`SAMPLERS`, `ALGORITHMS` (and the RL loop's parts: `ESTIMATORS`, `ADVANTAGES`, `OBJECTIVES`,
`FILTERS`), `REWARDS`, `TASKS`, and `metrics` (the `evaluate` modules:
`evaluate.load(dllm.metrics.path("pass_at_k"))`).
"""

from __future__ import annotations

from typing import Any

from dllm import metrics  # reachable after `import dllm` alone; it imports nothing heavy (evaluate on use)
from dllm.algorithms import ADVANTAGES, ALGORITHMS, ESTIMATORS, FILTERS, OBJECTIVES
from dllm.config import build
from dllm.data import TASKS
from dllm.errors import ConfigError, DllmError
from dllm.models import MODELS, load_model
from dllm.registry import Registry, load_plugins
from dllm.rewards import REWARDS
from dllm.samplers import SAMPLERS, GenerationOutput, Sampler
from dllm.tokenizer import load_tokenizer

__version__ = "0.1.0"


def build_sampler(name: str, **kwargs: Any) -> Sampler:
    """A registered sampler: `build_sampler("llada", steps=16, block_length=8)`."""
    return build("sampler", name, **kwargs)


def __getattr__(name: str) -> Any:
    if name == "train":  # the run (trainer, Hydra) loads on first use, not with `import dllm`
        from dllm.run import train

        return train
    raise AttributeError(f"module 'dllm' has no attribute {name!r}")


__all__ = [
    "ADVANTAGES",
    "ALGORITHMS",
    "ESTIMATORS",
    "FILTERS",
    "MODELS",
    "OBJECTIVES",
    "REWARDS",
    "SAMPLERS",
    "TASKS",
    "ConfigError",
    "DllmError",
    "GenerationOutput",
    "Registry",
    "Sampler",
    "build",
    "build_sampler",
    "load_model",
    "load_plugins",
    "load_tokenizer",
    "metrics",
    "train",
]
