"""How a run trains, in two parts: `RunSettings` (whole-run: distribution, precision, device,
loggers, resuming, checkpoints kept, non-finite steps) and `StageSettings` (per stage: optimizer,
schedule, steps, batch, logging and evaluation cadence). The main stage's `trainer` node holds
both (`TrainerConfig`); another stage's own trainer node (`warmup.trainer`) holds a
`StageSettings` only. Each is validated when it is built; `lr_factor` is the schedule."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import torch

from dllm.distributed import STRATEGIES
from dllm.errors import ConfigError
from dllm.loggers import check_logger_names


@dataclass
class StageSettings:
    """How one stage trains: `batch_size` sequences per optimizer step (over all processes),
    split on each process into `grad_accum` micro-batches; AdamW with linear warmup
    (`warmup_steps`, or when null `warmup_ratio` of `max_steps`: a short run still reaches its
    learning rate) then cosine decay to `min_lr_ratio * lr`; logs, checkpoints and evaluates
    every `log_every`, `save_every`, `eval_every` steps (0: only at the stage's end)."""

    max_steps: int = 600
    batch_size: int = 64
    grad_accum: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.98
    warmup_steps: int | None = None
    warmup_ratio: float = 0.025
    min_lr_ratio: float = 0.1
    max_grad_norm: float = 1.0
    log_every: int = 10
    save_every: int = 0
    eval_every: int = 0
    eval_batch_size: int = 100
    max_batch_rows: int | None = 64

    def __post_init__(self) -> None:
        self.check_stage()

    def check_stage(self) -> None:
        if self.max_steps < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise ConfigError("trainer.max_steps, trainer.batch_size and trainer.grad_accum must be positive")
        if self.batch_size % self.grad_accum:
            raise ConfigError(
                f"trainer.batch_size ({self.batch_size}) must be a multiple of trainer.grad_accum ({self.grad_accum})"
            )
        for key in ("lr", "weight_decay", "beta1", "beta2", "min_lr_ratio"):
            if not math.isfinite(getattr(self, key)):
                raise ConfigError(f"trainer.{key}={getattr(self, key)} is not a finite number; give one, e.g. 1e-4")
        if (self.warmup_steps is not None and self.warmup_steps < 0) or not 0 <= self.warmup_ratio < 1:
            raise ConfigError(
                f"trainer.warmup_steps ({self.warmup_steps}) must be >= 0 or null, and trainer.warmup_ratio "
                f"({self.warmup_ratio}) in [0, 1)"
            )
        if self.max_batch_rows is not None and self.max_batch_rows < 1:
            raise ConfigError(
                f"trainer.max_batch_rows ({self.max_batch_rows}) must be a positive number of rows, or null (all "
                "at once)"
            )
        if self.lr <= 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"trainer.lr ({self.lr}) must be > 0 and min_lr_ratio ({self.min_lr_ratio}) in [0, 1]")

    def check_world(self, world_size: int) -> None:
        """Each process takes an equal share of every micro-batch."""
        if self.batch_size % (self.grad_accum * world_size):
            raise ConfigError(
                f"trainer.batch_size ({self.batch_size}) must be a multiple of trainer.grad_accum "
                f"({self.grad_accum}) x the number of processes ({world_size}): each process takes an equal share "
                f"of every micro-batch"
            )

    @property
    def warmup(self) -> int:
        """Warmup steps: `warmup_steps` where given, else `warmup_ratio` of `max_steps`."""
        return self.warmup_steps if self.warmup_steps is not None else round(self.warmup_ratio * self.max_steps)


@dataclass
class RunSettings:
    """What holds for every stage of a run, set once under `trainer.*`: `strategy` (`none`,
    `ddp`, `deepspeed`) over `num_processes`, `zero_stage` and `deepspeed` (extra DeepSpeed
    config); `device`; `precision` (run-level: the stages train one model, and DeepSpeed's
    engine, built once, fixes its numerics); `resume`; `on_nonfinite` and
    `max_nonfinite_in_a_row`; `keep_checkpoints`; `loggers`, `wandb_project`, `wandb_mode`;
    `sample_every`; `progress`."""

    precision: Literal["auto", "fp32", "bf16"] = "auto"
    device: str = "auto"
    resume: bool = True
    on_nonfinite: Literal["stop", "skip"] = "stop"
    max_nonfinite_in_a_row: int = 5
    strategy: Literal["none", "ddp", "deepspeed"] = "none"
    num_processes: int = 1
    zero_stage: int = 2
    deepspeed: dict[str, Any] | None = None
    keep_checkpoints: int = 1
    loggers: list[str] = field(default_factory=lambda: ["jsonl"])
    wandb_project: str = "dllm"
    wandb_mode: Literal["offline", "online", "disabled"] = "offline"
    sample_every: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        self.check_run()

    def check_run(self) -> None:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(self.loggers, ListConfig):
            self.loggers = list(OmegaConf.to_container(self.loggers, resolve=True))
        if isinstance(self.deepspeed, DictConfig):
            self.deepspeed = OmegaConf.to_container(self.deepspeed, resolve=True)
        if self.on_nonfinite not in ("stop", "skip") or self.max_nonfinite_in_a_row < 1:
            raise ConfigError(
                f"trainer.on_nonfinite must be stop or skip (got {self.on_nonfinite!r}) and "
                f"trainer.max_nonfinite_in_a_row >= 1 (got {self.max_nonfinite_in_a_row})"
            )
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"trainer.strategy={self.strategy!r} is not one of {', '.join(STRATEGIES)}")
        if self.num_processes < 1 or self.keep_checkpoints < 1 or self.sample_every < 0:
            raise ConfigError(
                "trainer.num_processes and trainer.keep_checkpoints must be >= 1, trainer.sample_every >= 0"
            )
        if self.num_processes > 1 and self.strategy == "none":
            raise ConfigError(
                f"trainer.num_processes={self.num_processes} needs a distributed strategy: use trainer=ddp, "
                f"trainer=zero2 or trainer=zero3 (or set trainer.strategy=ddp)"
            )
        if self.zero_stage not in (1, 2, 3):
            raise ConfigError(f"trainer.zero_stage must be 1, 2 or 3, got {self.zero_stage}")
        check_logger_names(list(self.loggers))
        self.check_device()

    def check_device(self) -> None:
        """Refuse a device this machine does not have, before any model is built."""
        try:
            device = torch.device(self.device) if self.device != "auto" else None
        except RuntimeError:
            raise ConfigError(
                f"trainer.device={self.device!r} is not a device; use auto, cpu, cuda or cuda:N"
            ) from None
        if device is None or device.type != "cuda":
            return
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(
                f"trainer.device={self.device} but this machine has no CUDA GPU (or torch was built without CUDA); "
                f"use trainer.device=auto or trainer.device=cpu"
            )
        if device.index is not None and device.index >= count:
            raise ConfigError(
                f"trainer.device={self.device} but this machine has {count} CUDA GPU(s): cuda:0..{count - 1}"
            )

    @property
    def zero(self) -> int | None:
        """The ZeRO stage when DeepSpeed runs, else None."""
        return self.zero_stage if self.strategy == "deepspeed" else None

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


RUN_KEYS = tuple(f.name for f in fields(RunSettings))


@dataclass
class TrainerConfig(StageSettings, RunSettings):
    """The main stage's `trainer` node: the whole run's settings and the main stage's own."""

    def __post_init__(self) -> None:
        self.check_stage()
        self.check_run()
        self.check_world(self.num_processes)


def lr_factor(step: int, warmup_steps: int, max_steps: int, min_lr_ratio: float) -> float:
    """Linear warmup over `warmup_steps`, then cosine from 1 down to `min_lr_ratio`."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
