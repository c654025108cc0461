"""The estimator interface and its registry.

An estimator says which masked states score a rollout's actions (its completion tokens) and
returns a per-token log-probability estimate. Its random choices for one inner iteration
(`plan`) are drawn once, from the trainer's generator, and shared by that iteration's old,
reference and current passes, so their ratio compares like with like.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import ClassVar

import torch
from torch import Tensor

from dllm.algorithms.rollout import Rollout
from dllm.registry import Registry

Plan = dict[str, Tensor]


class Estimator(ABC):
    # Whether each inner iteration draws new random masks (one_step, coupled, random_mask);
    # the trace estimator replays the rollout itself, the same every iteration.
    fresh_each_iteration: ClassVar[bool] = True
    # Whether the estimate replays the decoding trajectory from `step_map` (trace): the loop then
    # refuses a sampler that masks revealed tokens again (`Sampler.remasks`).
    replays_trajectory: ClassVar[bool] = False

    def plan(self, rollout: Rollout, generator: torch.Generator) -> Plan:
        """The random choices of one inner iteration, per row (tensors with the rows first)."""
        return {}

    @abstractmethod
    def log_probs(self, model: torch.nn.Module, rollout: Rollout, plan: Plan) -> tuple[Tensor, Tensor]:
        """(log-prob estimate [N, G] of each completion token under `model`, scored [N, G] bool:
        the tokens the estimate covers — a subset of `rollout.scored`; 0 elsewhere)."""

    def chunks(self, model: torch.nn.Module, rollout: Rollout, plan: Plan) -> Iterator[tuple[Tensor, ...]]:
        """The estimate in independent parts, each (log-probs [N, G], covered [N, G]) over
        disjoint tokens — or (log-probs, covered, extras: dict of further terms, see `Scored`),
        whose parts' log-probs add up to the whole estimate; a loss linear in per-token values (or
        in each part's own terms) can be back-propagated part by part. One part unless an
        estimator runs several forwards that need not be held together."""
        yield self.log_probs(model, rollout, plan)

    def check_model(self, model: torch.nn.Module) -> None:
        """Refuse a model this estimator cannot score (called once, before training)."""


ESTIMATORS = Registry("estimator", interface=Estimator, config_group="algorithm/estimator")


def masked_completion_log_probs(
    model: torch.nn.Module,
    rollout: Rollout,
    noisy_completion: Tensor,
    prompt: Tensor | None = None,
    scored: Tensor | None = None,
) -> Tensor:
    """[N, G] log p(completion token | noisy completion [N, G], prompt) in one training forward,
    computed only where `scored` [N, G] (0 elsewhere: the head runs at those positions only; None: all);
    `prompt` [N, P] replaces the rollout's (e.g. partly masked). Block models: one
    `[x_t[P:] ; x_0]` forward in which each noisy block sees the clean blocks before it."""
    from dllm.algorithms.denoise import denoising_log_probs

    prompt = rollout.sequences[:, : rollout.prompt_length] if prompt is None else prompt
    context = torch.cat([prompt, rollout.completions_as_read()], dim=1)
    noisy = torch.cat([prompt, noisy_completion], dim=1)
    start = rollout.prompt_length
    return denoising_log_probs(model, noisy, context, rollout.attention_mask, rollout.block_size, start, scored)
