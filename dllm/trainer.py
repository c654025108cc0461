"""The training loop: optimizer, schedule, accumulation, clipping, logging, checkpoints.

The algorithm supplies micro-batches and losses (`dllm.algorithms.base`); everything else
about a run — including resuming from its checkpoint — lives here, once.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from dllm.algorithms.base import Algorithm, TrainContext
from dllm.checkpoint import CHECKPOINT_DIR, load_model_weights, load_trainer_state, save_checkpoint
from dllm.errors import ConfigError
from dllm.evaluation import evaluate

logger = logging.getLogger(__name__)


@dataclass
class TrainerConfig:
    """How to train: `batch_size` sequences per optimizer step, split into `grad_accum`
    micro-batches; AdamW with linear warmup then cosine decay to `min_lr_ratio * lr`."""

    max_steps: int = 600
    batch_size: int = 64
    grad_accum: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1
    max_grad_norm: float = 1.0
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    device: str = "auto"
    log_every: int = 10
    save_every: int = 0
    eval_every: int = 0
    eval_batch_size: int = 100
    resume: bool = True

    def __post_init__(self) -> None:
        if self.max_steps < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise ConfigError("trainer.max_steps, trainer.batch_size and trainer.grad_accum must be positive")
        if self.batch_size % self.grad_accum:
            raise ConfigError(
                f"trainer.batch_size ({self.batch_size}) must be a multiple of trainer.grad_accum ({self.grad_accum})"
            )
        if self.lr <= 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"trainer.lr ({self.lr}) must be > 0 and min_lr_ratio ({self.min_lr_ratio}) in [0, 1]")

    def resolve_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def autocast_dtype(self, device: torch.device) -> torch.dtype | None:
        """bf16 autocast where asked, or with `auto` on a GPU that supports it; else None."""
        if self.precision == "bf16":
            return torch.bfloat16
        if self.precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return None


def lr_factor(step: int, warmup_steps: int, max_steps: int, min_lr_ratio: float) -> float:
    """Linear warmup over `warmup_steps`, then cosine from 1 down to `min_lr_ratio`."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


class MetricsLog:
    """Appends one JSON object per line to `metrics.jsonl`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")


@dataclass
class Components:
    model: torch.nn.Module
    tokenizer: Any
    task: Any
    sampler: Any
    reward: Any
    algorithm: Algorithm


@dataclass
class Stage:
    """One phase of a run: an algorithm trained with its own optimizer and schedule (e.g. an
    SFT `warmup` before the `main` RL stage). Stages run in order on the same model."""

    name: str
    config: TrainerConfig
    algorithm: Algorithm


class Trainer:
    """Runs `stages` in order on `components.model`; checkpoints and resumes mid-stage."""

    def __init__(self, components: Components, stages: list[Stage], run_dir: Path, seed: int) -> None:
        self.c = components
        self.stages = stages
        self.run_dir = run_dir
        self.device = stages[-1].config.resolve_device()
        self.model = components.model.to(self.device)
        self.rng = random.Random(seed)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.metrics = MetricsLog(run_dir / "metrics.jsonl")
        self.begin_stage(0)

    @property
    def stage(self) -> Stage:
        return self.stages[self.stage_index]

    @property
    def config(self) -> TrainerConfig:
        return self.stage.config

    def begin_stage(self, index: int) -> None:
        """A fresh optimizer and schedule for stage `index`, at its step 0."""
        self.stage_index, self.step = index, 0
        cfg = self.config
        self.autocast_dtype = cfg.autocast_dtype(self.device)
        self.optimizer = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad],
            lr=cfg.lr,
            betas=(cfg.beta1, cfg.beta2),
            weight_decay=cfg.weight_decay,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, cfg.warmup_steps, cfg.max_steps, cfg.min_lr_ratio)
        )
        self.context = TrainContext(
            self.model,
            self.c.tokenizer,
            self.c.task,
            self.c.sampler,
            self.c.reward,
            cfg.batch_size // cfg.grad_accum,
            self.rng,
            self.generator,
            self.device,
            cfg.batch_size,
            self.autocast_dtype,
        )
        self.stage.algorithm.start(self.context)

    def state(self) -> dict[str, Any]:
        return {
            "stage": self.stage_index,
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "algorithm": self.stage.algorithm.state_dict(),
            "data_rng": self.rng.getstate(),
            "noise_generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": np.random.get_state(),
            "python_rng": random.getstate(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's state: its stage (models already loaded), step and random states."""
        self.begin_stage(state.get("stage", 0))
        self.stage.algorithm.load_models(self.run_dir / CHECKPOINT_DIR)
        self.step = state["step"]
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.stage.algorithm.load_state_dict(state.get("algorithm", {}))
        self.rng.setstate(state["data_rng"])
        self.generator.set_state(state["noise_generator"])
        torch.set_rng_state(state["torch_rng"])
        np.random.set_state(state["numpy_rng"])
        random.setstate(state["python_rng"])

    def save(self) -> Path:
        return save_checkpoint(
            self.run_dir, self.model, self.c.tokenizer, self.state(), self.stage.algorithm.save_models
        )

    def resume_if_possible(self) -> None:
        state = load_trainer_state(self.run_dir) if self.config.resume else None
        if state is not None:
            load_model_weights(self.model, self.run_dir / CHECKPOINT_DIR)
            self.restore(state)
            logger.info(
                "resumed from %s: stage %s, step %d", self.run_dir / CHECKPOINT_DIR, self.stage.name, self.step
            )

    def train(self) -> dict[str, float]:
        """Run every stage to its `max_steps`, checkpoint, evaluate after each stage; return the
        final evaluation metrics."""
        while True:
            self.run_stage()
            result = self.evaluate()
            self.log({**result.metrics()})
            if self.stage_index == len(self.stages) - 1:
                break
            self.begin_stage(self.stage_index + 1)
            self.save()
        self.save()
        (self.run_dir / "eval.json").write_text(json.dumps(result.__dict__, indent=2))
        return result.metrics()

    def log(self, record: dict[str, Any]) -> None:
        prefix = {"stage": self.stage.name} if len(self.stages) > 1 else {}
        self.metrics.write({**prefix, "step": self.step, **record})

    def run_stage(self) -> None:
        cfg = self.config
        self.model.train()
        desc = self.stage.name if len(self.stages) > 1 else "train"
        progress = tqdm(total=cfg.max_steps, initial=self.step, desc=desc, dynamic_ncols=True)
        while self.step < cfg.max_steps:
            began = time.perf_counter()
            record = self._optimizer_step()
            record.update(lr=self.scheduler.get_last_lr()[0], step_time=time.perf_counter() - began)
            self.scheduler.step()
            self.step += 1
            progress.update(1)
            progress.set_postfix(loss=f"{record['loss']:.4f}")
            if self.step % cfg.log_every == 0 or self.step == cfg.max_steps:
                self.log(record)
            if cfg.save_every and self.step % cfg.save_every == 0:
                self.save()
            if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.max_steps:
                self.log(self.evaluate().metrics())
                self.model.train()
        progress.close()

    def _optimizer_step(self) -> dict[str, float]:
        cfg = self.config
        algorithm = self.stage.algorithm
        totals: dict[str, float] = {}
        self.context.step = self.step
        self.optimizer.zero_grad(set_to_none=True)
        for batch in algorithm.micro_batches(self.context, cfg.grad_accum):
            out = algorithm.loss_and_backward(self.model, batch, self.generator, batch.share, self.context.autocast)
            for key, value in {"loss": out.loss.item(), **out.metrics}.items():
                totals[key] = totals.get(key, 0.0) + value * batch.share
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
        self.optimizer.step()
        totals.update(algorithm.after_step(self.context))
        return {**totals, "grad_norm": float(grad_norm)}

    def evaluate(self):
        return evaluate(
            self.model,
            self.c.tokenizer,
            self.c.sampler,
            self.c.task,
            self.c.reward,
            batch_size=self.config.eval_batch_size,
        )
