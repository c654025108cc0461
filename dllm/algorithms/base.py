"""The algorithm interface and its registry.

The trainer owns the optimizer, scheduler, accumulation, clipping, logging and
checkpoints; an algorithm supplies, for each optimizer step, the micro-batches and the loss
of each. SFT draws fresh examples; RL algorithms roll out, score and estimate.
"""

from __future__ import annotations

import contextlib
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor

from dllm.data.base import Task
from dllm.registry import Registry


@dataclass
class LossOutput:
    """A scalar `loss` to back-propagate and `metrics` to log (averaged over micro-batches):
    floats or detached 0-dim tensors, which the trainer brings to the host once per step."""

    loss: Tensor
    metrics: dict[str, float | Tensor] = field(default_factory=dict)


class MicroBatch(Protocol):
    """What `Algorithm.micro_batches` yields: anything with a `share`, the fraction of the
    global optimizer step it carries. The trainer back-propagates `loss * share` (times the
    number of processes, whose gradients are averaged), so a micro-batch's loss is a mean over
    its own units (sequences, tokens) and shares sum to 1 over a step of all processes."""

    share: float


@dataclass
class TrainContext:
    """What an algorithm may use to make batches: the live model, tokenizer, task, sampler,
    reward, and the trainer's random state (`rng` for data, `generator` for noise)."""

    model: torch.nn.Module
    tokenizer: Any
    task: Task
    sampler: Any
    reward: Any
    micro_batch_size: int
    rng: random.Random
    generator: torch.Generator
    device: torch.device
    batch_size: int = 0  # sequences per optimizer step (0: micro_batch_size)
    autocast_dtype: torch.dtype | None = None  # what the trainer runs `loss` under (bf16 on a GPU)
    step: int = 0  # optimizer steps done in this stage (for schedules)
    # Distribution (dllm.distributed): `rng` and `generator` are alike on every process, which
    # draws the global batch and keeps its share; `local_generator` is this process's own
    # stream (for what it decodes alone); `collective` sums, gathers and shards across processes.
    rank: int = 0
    world_size: int = 1
    collective: Any = None
    local_generator: torch.Generator | None = None
    show_progress: bool = False  # bars of the algorithm's own loops (rollouts): main process, trainer.progress
    max_batch_rows: int | None = None  # rows a rollout decodes at once (continuous batching; None: all)
    step_applied: bool = True  # whether the last optimizer step updated the policy (False: a non-finite step skipped)

    def __post_init__(self) -> None:
        if self.collective is None:
            from dllm.distributed import Collective

            self.collective = Collective()
        if self.local_generator is None:
            self.local_generator = self.generator

    def autocast(self):
        """The autocast context the trainer runs `loss` in, for forwards that must match it."""
        enabled = self.autocast_dtype is not None
        return torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=enabled)


class Algorithm(ABC):
    # True when every process runs the same number of forward passes per step whatever its
    # data (SFT); ZeRO-3, whose forwards are collectives, trains only such algorithms.
    uniform_forwards: ClassVar[bool] = False

    @abstractmethod
    def micro_batches(self, ctx: TrainContext, num_micro_batches: int) -> Iterator[MicroBatch]:
        """The micro-batches of one optimizer step (`num_micro_batches` of `ctx.micro_batch_size`
        sequences, unless the algorithm's own batches split otherwise)."""

    @abstractmethod
    def loss(self, model: torch.nn.Module, batch: Any, generator: torch.Generator) -> LossOutput:
        """The loss of one micro-batch; random masking draws from `generator` only."""

    def loss_and_backward(
        self,
        model: torch.nn.Module,
        batch: Any,
        generator: torch.Generator,
        scale: float,
        autocast: Callable[[], AbstractContextManager] = contextlib.nullcontext,
    ) -> LossOutput:
        """Back-propagate `scale` x the micro-batch's loss and return it (detached); forwards
        run under `autocast()`, backwards outside it. Algorithms whose loss is a sum of
        independent parts (one per replayed decoding step) override this to back-propagate
        part by part, holding one part's activations at a time."""
        with autocast():
            out = self.loss(model, batch, generator)
        (out.loss * scale).backward()
        return LossOutput(out.loss.detach(), out.metrics)

    def check_run(self, task: Task, sampler: Any, model_block_size: int | None) -> None:
        """Refuse, before any model is built, a combination this algorithm cannot train (e.g. a
        rollout block size that does not divide the generation length)."""

    def start(self, ctx: TrainContext) -> None:
        """Before the first step of the stage this algorithm trains (e.g. freeze a reference model)."""

    def after_step(self, ctx: TrainContext) -> dict[str, float]:
        """After each optimizer step of the policy (e.g. step a value model); metrics to log."""
        return {}

    def trained_rollout(self) -> tuple[int, dict[str, float]] | None:
        """The rollout the last optimizer step trained on: its number in the stage (1, 2, ...) and
        its metrics (`reward`, `accuracy`, ...), which every log line covering such a step reports
        (`dllm.metric_window`); None for an algorithm without rollouts."""
        return None

    def counters(self) -> dict[str, float]:
        """Running totals of the stage's work so far (RL: `completions_seen`), logged with every
        evaluation so that runs are compared at equal work; none by default."""
        return {}

    def parts(self) -> str:
        """The parts it is composed of, for the start-up line (e.g. `estimator trace, advantage
        group, ...`); none by default."""
        return ""

    def samples(self) -> list[dict[str, Any]]:
        """Recent completions with their rewards (`prompt`, `completion`, `reward`) for the run's
        `samples.jsonl`; none by default."""
        return []

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps of the algorithm (pending rollouts, extra optimizers...)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()`; called after `start`."""

    def save_models(self, directory: Path) -> None:
        """Write the algorithm's own models (reference, value) into a checkpoint directory."""

    def load_models(self, directory: Path) -> None:
        """Load what `save_models` wrote; called after `start`."""


ALGORITHMS = Registry("algorithm", interface=Algorithm)
