"""TraceRL's critic: a value model, its own AdamW, the replay that reads its values, and its
clipped value loss, saved and restored with the run's checkpoints. Owned by the `value`
advantage (`dllm.algorithms.advantages.value`); the GAE arithmetic is in `dllm.algorithms.value`.

The value model is the policy's backbone with a zero-initialised scalar head. It reads the
states the trace estimator replays (with the policy estimator's shrinkage, whatever estimator
trains the policy): V_j is its value at token j's masked position just before j was revealed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from dllm.algorithms.estimators.trace import TraceEstimator
from dllm.algorithms.rollout import Rollout
from dllm.algorithms.tally import Tally, weighted_parts
from dllm.algorithms.value import clipped_value_loss, decoding_steps, value_model_for
from dllm.checkpoint import load_model_weights
from dllm.errors import ConfigError
from dllm.run_files import VALUE_DIR

if TYPE_CHECKING:
    from dllm.algorithms.base import TrainContext


class Critic:
    def __init__(self, lr: float, clip: float, max_grad_norm: float, checkpoint: str | None = None) -> None:
        if lr <= 0 or clip <= 0 or max_grad_norm <= 0:
            raise ConfigError(
                f"algorithm.advantage: value_lr ({lr}), value_clip ({clip}) and value_max_grad_norm "
                f"({max_grad_norm}) must be > 0"
            )
        self.lr, self.clip, self.max_grad_norm, self.checkpoint = lr, clip, max_grad_norm, checkpoint
        self.model: torch.nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None

    def start(self, policy: torch.nn.Module, shrinkage: int) -> None:
        self.model = value_model_for(policy, self.checkpoint).train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.lr, weight_decay=0.0)
        self.replay = TraceEstimator(shrinkage=shrinkage)

    def values(self, rollout: Rollout, ctx: TrainContext) -> Tensor:
        """[N, G] the value of each action's state (0 elsewhere), micro-batch by micro-batch."""
        values = torch.zeros(rollout.step_map.shape, device=ctx.device)
        with torch.no_grad(), ctx.autocast():
            for rows in torch.arange(len(rollout), device=ctx.device).split(ctx.micro_batch_size):
                values[rows] = self.replay.gather(self.model, rollout.select(rows), "values").float()
        return values

    def decoding_steps(self, rollout: Rollout) -> Tensor:
        """[N, G] each scored token's merged decoding step, as the replay merges them."""
        return decoding_steps(self.replay.rounds(rollout), rollout.completion_blocks(), rollout.scored)

    def losses(
        self, rollout: Rollout, weights: Tensor, autocast: Callable[[], AbstractContextManager], tally: Tally
    ) -> Iterator[Tensor]:
        """The clipped value loss against `rollout.returns`, one part per replayed step."""

        def value_loss(values: Tensor, covered: Tensor) -> Tensor:
            return clipped_value_loss(values.float(), rollout.old_values, rollout.returns, self.clip)

        replay = self.replay.chunks(self.model, rollout, None, "values")
        yield from weighted_parts(replay, value_loss, weights, autocast, tally, "value_loss")

    def step(self, ctx: TrainContext) -> None:
        """Update with the step's gradients, unless the trainer skipped the policy's step (a
        non-finite loss, the value loss included): then they are dropped, as the policy's are."""
        if ctx.step_applied:
            ctx.collective.mean_gradients(self.model.parameters())  # the replicas stay equal
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("optimizer") is not None:
            self.optimizer.load_state_dict(state["optimizer"])

    def save(self, directory: Path) -> None:
        self.model.save_pretrained(directory / VALUE_DIR)

    def load(self, directory: Path) -> None:
        load_model_weights(self.model, directory / VALUE_DIR)
