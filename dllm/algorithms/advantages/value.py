"""`value` (TraceRL with its diffusion value model): token advantages by step-level GAE
(`dllm.algorithms.value`) on the values of the critic it owns (`dllm.algorithms.critic`),
which it trains beside the policy with its own learning rate and clipped loss.

As TraceRL, the value model learns group-normalised returns: the outcome is centred on its
group's mean total and every reward (outcome and step-level) scaled by the group's std, so a
completion's rewards sum to its z-score whatever step carries them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from dllm.algorithms.advantages.base import ADVANTAGES, Advantage
from dllm.algorithms.critic import Critic
from dllm.algorithms.rollout import Rollout
from dllm.algorithms.tally import Tally
from dllm.algorithms.value import step_gae, step_token_rewards
from dllm.errors import ConfigError

if TYPE_CHECKING:
    from dllm.algorithms.base import TrainContext
    from dllm.algorithms.estimators.base import Estimator


@ADVANTAGES.register("value")
class ValueAdvantage(Advantage):
    replays_trajectory = True  # the critic reads the states the trace replay rebuilds from step_map

    def __init__(
        self,
        value_lr: float = 5e-6,
        value_clip: float = 0.2,
        value_max_grad_norm: float = 1.0,
        gamma: float = 1.0,
        lam: float = 1.0,
        value_model: str | None = None,
    ) -> None:
        if not (0 <= gamma <= 1 and 0 <= lam <= 1):
            raise ConfigError(f"algorithm.advantage: gamma ({gamma}) and lam ({lam}) must be in [0, 1]")
        self.gamma, self.lam = gamma, lam
        self.critic = Critic(value_lr, value_clip, value_max_grad_norm, value_model)

    def start(self, ctx: TrainContext, estimator: Estimator) -> None:
        self.critic.start(ctx.model, getattr(estimator, "shrinkage", 1))

    def compute(self, rollout: Rollout, group_size: int, ctx: TrainContext) -> None:
        if len(rollout) == 0:  # no rows here this time (filtered out): nothing to value
            rollout.advantages = rollout.rewards
            return
        values = self.critic.values(rollout, ctx)
        steps = self.critic.decoding_steps(rollout)
        grouped = rollout.rewards.view(-1, group_size)
        mean = grouped.mean(1).repeat_interleave(group_size)
        std = grouped.std(1, unbiased=False).repeat_interleave(group_size)
        std = torch.where(std > 0, std, torch.ones_like(std))
        process = rollout.process_rewards if rollout.process_rewards is not None else torch.zeros_like(values)
        outcome = rollout.rewards - process.sum(1) - mean
        token_rewards = step_token_rewards(steps, rollout.scored, outcome / std, process / std[:, None])
        rollout.advantages, rollout.returns = step_gae(
            steps, token_rewards, values, rollout.scored, self.gamma, self.lam
        )
        rollout.old_values = values

    def extra_losses(
        self, rollout: Rollout, weights: Tensor, autocast: Callable[[], AbstractContextManager], tally: Tally
    ) -> Iterator[Tensor]:
        return self.critic.losses(rollout, weights, autocast, tally)

    def after_step(self, ctx: TrainContext) -> dict[str, float]:
        self.critic.step(ctx)
        return {}

    def state_dict(self) -> dict[str, Any]:
        return self.critic.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.critic.load_state_dict(state)

    def save_models(self, directory: Path) -> None:
        self.critic.save(directory)

    def load_models(self, directory: Path) -> None:
        self.critic.load(directory)
