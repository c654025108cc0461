"""What a training run says on the console, beside its progress bar: the run directory and its
resolved key settings at start, and one line of metrics per logging interval (as HF Trainer and
Lightning print them), written through `logging` so the progress bar stays intact."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import torch

# The console line's metrics, in order, where a record has them; every key is in metrics.jsonl.
SHOWN = ("loss", "reward", "accuracy", "kept_fraction", "grad_norm")


def component_name(kind: str, obj: Any, choices: dict[str, str] | None) -> str:
    """The name a run chose for a component (its config group's option, e.g. `diffu_grpo`), else
    the name it is registered under, else its class name."""
    if choices and choices.get(kind):
        return str(choices[kind])
    from dllm.registry import registry

    try:
        name = registry(kind).name_of(obj)
    except Exception:  # a kind without a registry here, or a plugin that fails to load: name the class
        name = None
    return name or type(obj).__name__


def run_summary(
    run_dir: Path,
    components: Any,
    stages: list[Any],
    seed: int,
    device: torch.device,
    autocast_dtype: torch.dtype | None,
    choices: dict[str, str] | None = None,
) -> list[str]:
    """A few lines: where the run writes, what it trains with what, and how (per stage)."""
    model = components.model
    parameters = sum(p.numel() for p in model.parameters())
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    autocast = str(autocast_dtype).removeprefix("torch.") if autocast_dtype is not None else "off"
    names = {kind: component_name(kind, getattr(components, kind), choices) for kind in ("task", "sampler", "reward")}
    lines = [
        f"run directory: {Path(run_dir).resolve()}"
        + (f" (experiment {choices['experiment']})" if choices and choices.get("experiment") else ""),
        f"model {component_name('model', model, choices)} ({parameters / 1e6:.2f}M parameters, {dtype}, "
        f"autocast {autocast}) on {device}; task {names['task']}, sampler {names['sampler']}, "
        f"reward {names['reward']}; seed {seed}",
    ]
    for stage in stages:
        cfg = stage.config
        chosen = choices if stage is stages[-1] else None  # the group choice names the main stage's
        parts = stage.algorithm.parts()
        algorithm = component_name("algorithm", stage.algorithm, chosen) + (f" ({parts})" if parts else "")
        lines.append(
            f"{stage.name}: algorithm {algorithm}, {cfg.max_steps} steps "
            f"x batch {cfg.batch_size} (grad_accum {cfg.grad_accum}), lr {cfg.lr:g} (warmup {cfg.warmup} steps, "
            f"{schedule(cfg.min_lr_ratio)}), betas ({cfg.beta1:g}, {cfg.beta2:g}), "
            f"weight decay {cfg.weight_decay:g} (matrices), clip {cfg.max_grad_norm:g}, "
            f"log every {cfg.log_every}"
        )
    return lines


def schedule(min_lr_ratio: float) -> str:
    """The learning-rate schedule after warmup, in words."""
    return "then constant" if min_lr_ratio == 1 else f"cosine to {min_lr_ratio:g}x"


def metrics_line(record: dict[str, Any], max_steps: int, stage: str | None = None) -> str:
    """`[stage] step N/M | loss ... | reward ... | lr ... | s/step | elapsed` from one log line."""
    parts = [f"{stage + ' ' if stage else ''}step {record['step']}/{max_steps}"]
    parts += [f"{key} {record[key]:.4g}" for key in SHOWN if key in record]
    if "lr" in record:
        parts.append(f"lr {record['lr']:.3g}")
    if "step_time" in record:
        parts.append(f"{record['step_time']:.3g} s/step")
    if "rollouts_covered" in record and record["rollouts_covered"]:
        parts.append(f"{record['rollouts_covered']} rollout{'s' if record['rollouts_covered'] > 1 else ''}")
    if "elapsed" in record:
        parts.append(f"elapsed {datetime.timedelta(seconds=round(record['elapsed']))}")
    return " | ".join(parts)
