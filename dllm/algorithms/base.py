"""The algorithm interface and its registry.

The trainer owns the optimizer, scheduler, accumulation, clipping, logging and
checkpoints; an algorithm supplies, for each optimizer step, the micro-batches and the loss
of each. SFT draws fresh examples; RL algorithms roll out, score and estimate.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from dllm.data.base import Task
from dllm.registry import Registry


@dataclass
class LossOutput:
    """A scalar `loss` to back-propagate and float `metrics` to log (averaged over micro-batches)."""

    loss: Tensor
    metrics: dict[str, float] = field(default_factory=dict)


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


class Algorithm(ABC):
    @abstractmethod
    def micro_batches(self, ctx: TrainContext, num_micro_batches: int) -> Iterator[Any]:
        """The micro-batches of one optimizer step."""

    @abstractmethod
    def loss(self, model: torch.nn.Module, batch: Any, generator: torch.Generator) -> LossOutput:
        """The loss of one micro-batch; random masking draws from `generator` only."""


ALGORITHMS = Registry("algorithm", interface=Algorithm)
